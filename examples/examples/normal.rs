//! Publish, consume and acknowledge: the basic guide.
//!
//! Publishes four messages (with a tag, a key and a property), receives them with long polls
//! (a receive waits up to 3 s for messages to arrive) and acknowledges each batch with the
//! receipt handles it came with. A message received but not acknowledged is delivered again
//! after its invisibility time (300 s).
//!
//! ```sh
//! cargo run --example normal
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` (a normal topic) and `MQ_GROUP_ID`.
//!
//! Last line: `summary: published=4 received=4 acked=4 ok`, or `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, Tag, TopicMessage, TopicName, WaitSeconds};
use std::collections::HashSet;
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const COUNT: usize = 4;

#[tokio::main]
async fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (client, topic, group, _broker) = connect("example-normal")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;

    let mut published = HashSet::new();
    for i in 0..COUNT {
        let message = TopicMessage::new(format!("order {i} created"))?
            .with_tag(Tag::new("TagA")?)
            .with_key(format!("order-{i}"))?
            .with_property("index", i.to_string())?;
        let receipt = producer.publish(&message).await?;
        println!(
            "published {} (body MD5 {})",
            receipt.message_id, receipt.body_md5
        );
        published.insert(receipt.message_id);
    }

    // Receive until all four arrived (or 30 s passed), acknowledging each batch.
    let (mut received, mut acked) = (HashSet::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let wait = WaitSeconds::new(3)?; // long polling
    while received.len() < COUNT && Instant::now() < deadline {
        let messages = consumer.receive(BatchSize::MAX, wait).await?;
        if messages.is_empty() {
            continue;
        }
        let mut ours = 0; // first deliveries of messages published above
        for m in &messages {
            println!(
                "received {} key={:?} index={:?} body={:?} (delivery {})",
                m.message_id,
                m.key(),
                m.property("index"),
                m.body,
                m.consumed_times
            );
            let new = published.contains(&m.message_id) && received.insert(m.message_id.clone());
            ours += usize::from(new);
        }
        let handles = messages.iter().map(|m| &m.receipt_handle);
        consumer.ack(handles).await?;
        acked += ours;
        println!("acked {} receipt handle(s)", messages.len());
    }

    let ok = received.len() == COUNT && acked == COUNT;
    let verdict = if ok { "ok" } else { "FAILED" };
    println!(
        "summary: published={} received={} acked={acked} {verdict}",
        published.len(),
        received.len()
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
