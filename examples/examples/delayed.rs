//! The delayed-message guide: messages that become visible only at a chosen time.
//!
//! A message carries its delivery time as an absolute epoch-milliseconds value
//! (`__STARTDELIVERTIME`, set with `TopicMessage::with_start_deliver_time`). This example
//! publishes four messages to be delivered 10 s after sending ("delayed") and one scheduled
//! for an absolute time 12 s ahead ("scheduled"), then consumes and prints how long each took
//! to arrive. It fails when a message arrives before its time (or more than 10 s late).
//!
//! ```sh
//! cargo run --example delayed
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded `mq-broker`. Against the real service set
//! `MQ_ENDPOINT`, `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//! `MQ_INSTANCE_ID`, `MQ_TOPIC` (a topic for scheduled/delayed messages) and `MQ_GROUP_ID`.
//!
//! Last line: `summary: delayed=4 scheduled=1 received=5 on_time=5 ok`, or `… FAILED`.

use mq_examples::{BoxError, Origin, Setup, Summary, describe, finish, now_ms};
use mq_tokio::{BatchSize, MessageId, TokioRuntime, TopicMessage, WaitSeconds};
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Delay of the four delayed messages.
const DELAY: Duration = Duration::from_secs(10);
/// The scheduled message is due this long after the start.
const SCHEDULE_AHEAD: Duration = Duration::from_secs(12);
/// The real service may deliver 1–2 s late; more than this counts as a failure.
const MAX_LATENESS_MS: u64 = 10_000;
/// Tolerated clock difference between this machine and the service (none on the embedded
/// broker, which shares our clock; a little for a remote service).
const CLOCK_SKEW_MS: u64 = 1_000;

/// What we expect of each published message.
struct Expected {
    label: String,
    sent_at: u64,
    deliver_at: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    finish(run().await)
}

async fn run() -> Result<Summary, BoxError> {
    let setup = Setup::from_env("delayed")?;
    let client = setup.client::<TokioRuntime>()?;
    let consumer = client.consumer(setup.topic().clone(), setup.group().clone());
    setup.register(&consumer).await?;
    let producer = client.producer(setup.topic().clone());

    println!(
        "==========Publish Delayed Messages==========\nTopicName:{}\nMessageCount:5",
        setup.topic()
    );
    let mut expected: HashMap<MessageId, Expected> = HashMap::new();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // Four delayed messages: each is due DELAY after it is sent.
    for i in 0..4 {
        let sent_at = now_ms();
        let deliver_at = sent_at + ms(DELAY);
        let message = TopicMessage::new(format!("I am delayed message {i}."))?
            .with_property("a", i.to_string())?
            .with_start_deliver_time(deliver_at);
        let receipt = producer.publish(&setup.mark(message)?).await?;
        println!(
            "Publish Message Succeed. MessageID:{}, BodyMD5:{}, StartDeliverTime:{deliver_at} (in {} s)",
            receipt.message_id,
            receipt.body_md5,
            DELAY.as_secs()
        );
        let label = format!("delayed {i}");
        expected.insert(
            receipt.message_id,
            Expected {
                label,
                sent_at,
                deliver_at,
            },
        );
    }
    // One scheduled message: due at an absolute point in time (epoch ms).
    let sent_at = now_ms();
    let deliver_at = sent_at + ms(SCHEDULE_AHEAD);
    let message =
        TopicMessage::new("I am a scheduled message.")?.with_start_deliver_time(deliver_at);
    let receipt = producer.publish(&setup.mark(message)?).await?;
    println!(
        "Publish Message Succeed. MessageID:{}, BodyMD5:{}, StartDeliverTime:{deliver_at} (absolute epoch ms)",
        receipt.message_id, receipt.body_md5
    );
    let label = "scheduled".to_owned();
    expected.insert(
        receipt.message_id,
        Expected {
            label,
            sent_at,
            deliver_at,
        },
    );

    // Consume until all five arrived (or well past their time), measuring each delay.
    println!("==========Consume==========");
    let deadline = Instant::now() + SCHEDULE_AHEAD + Duration::from_millis(MAX_LATENESS_MS + 5_000);
    let (mut received, mut on_time) = (0, 0);
    let mut seen = HashSet::new();
    while received < expected.len() && Instant::now() < deadline {
        let messages = consumer
            .receive(BatchSize::MAX, WaitSeconds::new(3)?)
            .await?;
        let arrived = now_ms();
        let mut handles = Vec::new();
        for message in &messages {
            match setup.origin(message) {
                Origin::ThisRun => {}
                Origin::EarlierRun => {
                    handles.push(message.receipt_handle.clone());
                    continue;
                }
                Origin::Foreign => continue,
            }
            println!("Receive, {}", describe(message));
            handles.push(message.receipt_handle.clone());
            let Some(e) = expected.get(&message.message_id) else {
                continue;
            };
            if !seen.insert(message.message_id.clone()) {
                continue; // delivered again (at-least-once); counted already
            }
            received += 1;
            let early = arrived + CLOCK_SKEW_MS < e.deliver_at;
            let late = arrived > e.deliver_at + MAX_LATENESS_MS;
            if !early && !late {
                on_time += 1;
            }
            println!(
                "  {}: measured delay {:.3} s (due {:.3} s after sending){}",
                e.label,
                arrived.saturating_sub(e.sent_at) as f64 / 1000.0,
                e.deliver_at.saturating_sub(e.sent_at) as f64 / 1000.0,
                if early {
                    " — EARLY"
                } else if late {
                    " — LATE"
                } else {
                    ""
                }
            );
        }
        if !handles.is_empty() {
            consumer.ack(&handles).await?;
        }
    }
    Ok(Summary::new(
        format!("delayed=4 scheduled=1 received={received} on_time={on_time}"),
        received == 5 && on_time == 5,
    ))
}
