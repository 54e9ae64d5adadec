//! Ordered messages: sharding keys and orderly consumption.
//!
//! Messages published with the same sharding key (`TopicMessage::with_sharding_key`) form a
//! partition that `Consumer::receive_orderly` delivers first-in first-out. A partition with
//! delivered but unacked messages is blocked until they are acked (or, unacked, they come
//! again in the same order after 60 s). This example publishes 8 messages alternating
//! between sharding keys `0` and `1`, consumes them orderly, acks each batch, and checks that
//! every key's messages arrived in publishing order.
//!
//! ```sh
//! cargo run --example ordered
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded `mq-broker`. Against the real service set
//! `MQ_ENDPOINT`, `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//! `MQ_INSTANCE_ID`, `MQ_TOPIC` (an ordered topic: ordering holds only there) and
//! `MQ_GROUP_ID`.
//!
//! Last line: `summary: keys=2 received=8 fifo=true ok`, or `… FAILED`.

use mq_examples::{BoxError, Origin, Setup, Summary, describe, finish};
use mq_tokio::{BatchSize, TokioRuntime, TopicMessage, WaitSeconds};
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Messages published.
const COUNT: u32 = 8;
/// Distinct sharding keys (message `i` gets key `i % KEYS`).
const KEYS: u32 = 2;
/// Messages per orderly receive: small, so the example takes several batches (each one's
/// partitions stay blocked until it is acked).
const BATCH: u8 = 3;
/// The example gives up after this long.
const TIME_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    finish(run().await)
}

async fn run() -> Result<Summary, BoxError> {
    let setup = Setup::from_env("ordered")?;
    let client = setup.client::<TokioRuntime>()?;
    let consumer = client.consumer(setup.topic().clone(), setup.group().clone());
    setup.register(&consumer).await?;
    let producer = client.producer(setup.topic().clone());

    println!(
        "==========Publish Ordered Messages==========\nTopicName:{}\nMessageCount:{COUNT}",
        setup.topic()
    );
    // What each key should deliver, in publishing order.
    let mut published: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for i in 0..COUNT {
        let key = (i % KEYS).to_string();
        let message = TopicMessage::new(format!("I am test message {i}."))?
            .with_property("a", i.to_string())?
            .with_sharding_key(key.clone())?;
        let receipt = producer.publish(&setup.mark(message)?).await?;
        println!(
            "Publish Message Succeed. MessageID:{}, BodyMD5:{}, ShardingKey:{key}",
            receipt.message_id, receipt.body_md5
        );
        published.entry(key).or_default().push(i);
    }

    println!("==========Consume Orderly==========");
    let mut arrived: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut received = 0;
    let deadline = Instant::now() + TIME_LIMIT;
    while received < COUNT && Instant::now() < deadline {
        let batch = consumer
            .receive_orderly(BatchSize::new(BATCH)?, WaitSeconds::new(3)?)
            .await?;
        if batch.is_empty() {
            continue;
        }
        println!("Batch of {} message(s):", batch.len());
        let mut handles = Vec::new();
        for message in &batch {
            match setup.origin(message) {
                Origin::ThisRun => {}
                // Leftovers of an earlier run would block their partition: ack them too.
                Origin::EarlierRun => {
                    handles.push(message.receipt_handle.clone());
                    continue;
                }
                Origin::Foreign => continue,
            }
            let key = message.sharding_key().unwrap_or("").to_owned();
            println!("Receive, ShardingKey:{key} {}", describe(message));
            handles.push(message.receipt_handle.clone());
            let a = message.property("a").and_then(|a| a.parse::<u32>().ok());
            if let (true, Some(a)) = (seen.insert(message.message_id.clone()), a) {
                arrived.entry(key).or_default().push(a);
                received += 1;
            }
        }
        // Acking the batch unblocks its partitions: their next messages can come.
        if !handles.is_empty() {
            consumer.ack(&handles).await?;
            println!("Ack Succeed. {} ReceiptHandle(s)", handles.len());
        }
    }

    let mut fifo = true;
    for (key, expected) in &published {
        let got = arrived.get(key).cloned().unwrap_or_default();
        let in_order = &got == expected;
        fifo &= in_order;
        println!(
            "ShardingKey {key}: arrived {got:?}, published {expected:?}{}",
            if in_order {
                " (in order)"
            } else {
                " (OUT OF ORDER)"
            }
        );
    }
    Ok(Summary::new(
        format!("keys={} received={received} fifo={fifo}", arrived.len()),
        fifo && received == COUNT && arrived.len() == published.len(),
    ))
}
