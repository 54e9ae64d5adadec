//! The client on smol (`mq-async-std`, built on async-io like smol itself): publish four
//! messages with keys, consume them with the consumer stream and await each ack.
//!
//! Nothing in the client is tied to tokio: `Client::builder()` outside a tokio runtime runs on
//! async-io, so `smol::block_on` is all the set-up there is. The stream keeps a long poll
//! outstanding in the background (on smol's executor); `Delivery::ack` queues an ack that the
//! stream sends in a batch, and the returned future tells how it went.
//!
//! ```sh
//! cargo run --example smol
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker (on a thread of its own with its own
//! runtime). Against ApsaraMQ set `MQ_ENDPOINT`, `ALIBABA_CLOUD_ACCESS_KEY_ID`,
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional), `MQ_TOPIC` and `MQ_GROUP_ID`.
//!
//! Last line: `summary: published=4 received=4 acked=4 ok`, or `… FAILED` (exit status 1).

use futures::StreamExt;
use mq_async_std::{BatchSize, Client, GroupId, StreamItem, TopicMessage, TopicName, WaitSeconds};
use mq_broker::{Broker, EmbeddedBroker};
use std::collections::HashMap;
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    smol::block_on(run()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (client, topic, group, _broker) = connect("example-smol")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;

    let mut keys = HashMap::new(); // message id -> key, for our messages not yet received
    for i in 0..4 {
        let key = format!("invoice-{i}");
        let message = TopicMessage::new(format!("invoice {i} paid"))?.with_key(key.clone())?;
        let receipt = producer.publish(&message).await?;
        println!("published {} with key {key}", receipt.message_id);
        keys.insert(receipt.message_id, key);
    }

    let published = keys.len();
    let (mut received, mut acked) = (0, 0);
    let mut stream = consumer.stream();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received < published {
        // The next delivery, or `None` once the deadline passes.
        let timeout = async {
            smol::Timer::at(deadline).await;
            None
        };
        match smol::future::or(stream.next(), timeout).await {
            None => break,
            Some(Err(e)) => println!("receive failed (retrying): {e}"),
            // A message the client cannot decode: dropping it leaves it for redelivery.
            Some(Ok(StreamItem::Poison(poison))) => {
                println!("cannot decode {:?}: {}", poison.message_id, poison.reason);
            }
            Some(Ok(StreamItem::Message(delivery))) => {
                let ours = keys.remove(&delivery.message_id).is_some();
                println!("received {:?} with key {:?}", delivery.body, delivery.key());
                received += usize::from(ours);
                match delivery.ack().await {
                    Ok(()) => acked += usize::from(ours),
                    Err(e) => println!("ack failed: {e}"),
                }
            }
        }
    }
    stream.shutdown().await;

    let ok = received == published && acked == published;
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("summary: published={published} received={received} acked={acked} {verdict}");
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
