//! Delayed messages: delivered a chosen delay after they are published.
//!
//! A message carries the time it may be delivered, in epoch milliseconds
//! (`__STARTDELIVERTIME`, set with `TopicMessage::with_start_deliver_time`); for a delay, that
//! is the current time plus the delay. This example publishes four messages with a delay of
//! 10 s, consumes them and prints how long each took to arrive. It fails when one arrives
//! before its time (or more than 10 s late). The `scheduled` example picks an absolute time.
//!
//! ```sh
//! cargo run --example delayed
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` (a topic for scheduled/delayed messages) and `MQ_GROUP_ID`.
//!
//! Last line: `summary: delayed=4 received=4 on_time=4 ok`, or `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, TopicMessage, TopicName, WaitSeconds};
use std::collections::HashMap;
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DELAY: Duration = Duration::from_secs(10);
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
    let (client, topic, group, _broker) = connect("example-delayed")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;

    // Each message is due DELAY after it is sent: remember when, by message id.
    let mut due = HashMap::new();
    for i in 0..4 {
        let sent = SystemTime::now();
        let deliver_at = sent + DELAY;
        let message = TopicMessage::new(format!("delayed message {i}"))?
            .with_start_deliver_time(epoch_ms(deliver_at));
        let receipt = producer.publish(&message).await?;
        println!(
            "published {}, due in {} s",
            receipt.message_id,
            DELAY.as_secs()
        );
        due.insert(receipt.message_id, (sent, deliver_at));
    }

    let (published, mut received, mut on_time) = (due.len(), 0, 0);
    let deadline = Instant::now() + DELAY + MAX_LATE + Duration::from_secs(5);
    let wait = WaitSeconds::new(3)?; // long polling
    while received < published && Instant::now() < deadline {
        let messages = consumer.receive(BatchSize::MAX, wait).await?;
        let arrived = SystemTime::now();
        for m in &messages {
            let Some((sent, deliver_at)) = due.remove(&m.message_id) else {
                continue; // not one of ours, or delivered again
            };
            let early = arrived + CLOCK_SKEW < deliver_at;
            let late = arrived > deliver_at + MAX_LATE;
            received += 1;
            on_time += usize::from(!early && !late);
            let took = arrived
                .duration_since(sent)
                .unwrap_or_default()
                .as_secs_f64();
            let verdict = if early {
                "EARLY"
            } else if late {
                "LATE"
            } else {
                "on time"
            };
            println!("received {:?} after {took:.3} s: {verdict}", m.body);
        }
        let handles = messages.iter().map(|m| &m.receipt_handle);
        consumer.ack(handles).await?; // none: no request
    }

    let ok = received == published && on_time == published;
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("summary: delayed={published} received={received} on_time={on_time} {verdict}");
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}

fn epoch_ms(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
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
