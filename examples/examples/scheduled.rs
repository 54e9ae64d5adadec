//! Scheduled messages: delivered at an absolute point in time.
//!
//! `__STARTDELIVERTIME` (`TopicMessage::with_start_deliver_time`) is a wall-clock time in
//! epoch milliseconds: the broker holds the message until then (at most 40 days ahead). This
//! example schedules three messages for the same instant, the next wall-clock time whose
//! seconds are a multiple of 10 and at least 5 s away, prints it in RFC 3339, and checks that
//! none arrives before it (nor more than 10 s after it). A program would rather take such a
//! time from its input: `humantime::parse_rfc3339("2030-01-01T09:00:00Z")?` gives a
//! `SystemTime` to convert the same way.
//!
//! ```sh
//! cargo run --example scheduled
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` (a topic for scheduled/delayed messages) and `MQ_GROUP_ID`.
//!
//! Last line: `summary: scheduled=3 received=3 on_time=3 ok`, or `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, TopicMessage, TopicName, WaitSeconds};
use std::collections::HashSet;
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The service may deliver a little late; more than this counts as a failure.
const MAX_LATE: Duration = Duration::from_secs(10);
/// Tolerated difference between this machine's clock and the service's.
const CLOCK_SKEW: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (client, topic, group, _broker) = connect("example-scheduled")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;

    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let at_ms = (now_ms + 5_000).next_multiple_of(10_000);
    let at = UNIX_EPOCH + Duration::from_millis(at_ms);
    println!(
        "scheduling for {} ({at_ms} ms since the epoch)",
        humantime::format_rfc3339_seconds(at)
    );
    let mut scheduled = HashSet::new();
    for i in 0..3 {
        let message =
            TopicMessage::new(format!("scheduled message {i}"))?.with_start_deliver_time(at_ms);
        let receipt = producer.publish(&message).await?;
        println!("published {}", receipt.message_id);
        scheduled.insert(receipt.message_id);
    }

    let (published, mut received, mut on_time) = (scheduled.len(), 0, 0);
    let deadline = Instant::now()
        + at.duration_since(SystemTime::now()).unwrap_or_default()
        + MAX_LATE
        + Duration::from_secs(5);
    let wait = WaitSeconds::new(3)?; // long polling
    while received < published && Instant::now() < deadline {
        let messages = consumer.receive(BatchSize::MAX, wait).await?;
        let arrived = SystemTime::now();
        for m in &messages {
            if !scheduled.remove(&m.message_id) {
                continue; // not one of ours, or delivered again
            }
            received += 1;
            let early = arrived + CLOCK_SKEW < at;
            let late = arrived > at + MAX_LATE;
            on_time += usize::from(!early && !late);
            let verdict = if early {
                "EARLY"
            } else if late {
                "LATE"
            } else {
                "on time"
            };
            println!(
                "received {:?} at {}: {verdict}",
                m.body,
                humantime::format_rfc3339_millis(arrived)
            );
        }
        let handles = messages.iter().map(|m| &m.receipt_handle);
        consumer.ack(handles).await?; // none: no request
    }

    let ok = received == published && on_time == published;
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("summary: scheduled={published} received={received} on_time={on_time} {verdict}");
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}

/// A client, the topic and group to use, and the embedded broker if there is one.
type Connection = (Client, TopicName, GroupId, Option<EmbeddedBroker>);

/// The instance named by `MQ_ENDPOINT` and the README's other variables, or else a broker
/// embedded in this process (it stops when dropped).
fn connect(topic: &str) -> Result<Connection, Box<dyn Error>> {
    let Some(endpoint) = var("MQ_ENDPOINT")? else {
        let broker = Broker::start_embedded()?;
        let (at, credentials) = (broker.endpoint(), broker.credentials());
        println!("no MQ_ENDPOINT set: using an embedded mq-broker at {at}");
        let client = Client::builder().endpoint(at)?.credentials(credentials);
        let (topic, group) = (topic.parse()?, "GID_example".parse()?);
        return Ok((client.build()?, topic, group, Some(broker)));
    };
    let client = Client::builder().endpoint(endpoint)?;
    let mut client = client.credentials_from_env()?; // ALIBABA_CLOUD_ACCESS_KEY_ID, _SECRET
    if let Some(instance) = var("MQ_INSTANCE_ID")? {
        client = client.instance_id(instance.parse()?);
    }
    let required = |name| var(name)?.ok_or_else(|| format!("MQ_ENDPOINT is set but {name} is not"));
    let (topic, group) = (
        required("MQ_TOPIC")?.parse()?,
        required("MQ_GROUP_ID")?.parse()?,
    );
    Ok((client.build()?, topic, group, None))
}

/// The environment variable `name`, `None` when it is unset or empty; an error when it is
/// not valid UTF-8 (rather than taking it for unset).
fn var(name: &str) -> Result<Option<String>, String> {
    match env::var(name) {
        Ok(value) => Ok(Some(value).filter(|value| !value.is_empty())),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}
