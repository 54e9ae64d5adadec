//! Ordered messages: sharding keys and orderly consumption.
//!
//! Messages published with the same sharding key (`TopicMessage::with_sharding_key`) form a
//! partition that `Consumer::receive_orderly` delivers first in, first out. A partition with
//! delivered, unacknowledged messages is blocked until they are acknowledged (unacknowledged,
//! they come again in the same order after 60 s). This example publishes eight messages
//! alternating between sharding keys `0` and `1`, consumes them orderly three at a time,
//! acks each batch, and checks that each key's messages arrived in publishing order.
//!
//! ```sh
//! cargo run --example ordered
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` (an ordered topic: ordering holds only there) and `MQ_GROUP_ID`.
//!
//! Last line: `summary: keys=2 received=8 fifo=true ok`, or `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, MessageId, TopicMessage, TopicName, WaitSeconds};
use std::collections::{BTreeMap, HashMap};
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const COUNT: usize = 8;

#[tokio::main]
async fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (client, topic, group, _broker) = connect("example-ordered")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer
        .receive_orderly(BatchSize::MIN, WaitSeconds::MIN)
        .await?;

    // Per sharding key, the message numbers in publishing order.
    let mut published: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut number: HashMap<MessageId, usize> = HashMap::new();
    for i in 0..COUNT {
        let key = (i % 2).to_string();
        let message = TopicMessage::new(format!("step {i}"))?.with_sharding_key(key.clone())?;
        let receipt = producer.publish(&message).await?;
        println!(
            "published step {i} with sharding key {key}: {}",
            receipt.message_id
        );
        published.entry(key).or_default().push(i);
        number.insert(receipt.message_id, i);
    }

    let mut arrived: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived.values().map(Vec::len).sum::<usize>() < COUNT && Instant::now() < deadline {
        let batch = consumer
            .receive_orderly(BatchSize::new(3)?, WaitSeconds::new(3)?)
            .await?;
        for m in &batch {
            let key = m.sharding_key().unwrap_or("").to_owned();
            println!(
                "received {:?} (sharding key {key}, delivery {})",
                m.body, m.consumed_times
            );
            // `remove`: a message delivered again is counted once.
            if let Some(i) = number.remove(&m.message_id) {
                arrived.entry(key).or_default().push(i);
            }
        }
        // Acking the batch unblocks its partitions: their next messages can come.
        let handles = batch.iter().map(|m| &m.receipt_handle);
        consumer.ack(handles).await?; // none: no request
    }

    for (key, order) in &arrived {
        println!(
            "sharding key {key}: arrived {order:?}, published {:?}",
            published[key]
        );
    }
    let received: usize = arrived.values().map(Vec::len).sum();
    let fifo = arrived == published;
    let ok = fifo && received == COUNT;
    let verdict = if ok { "ok" } else { "FAILED" };
    println!(
        "summary: keys={} received={received} fifo={fifo} {verdict}",
        arrived.len()
    );
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
