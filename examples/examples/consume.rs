//! The consumer stream: long polling, batched acks, a clean stop on Ctrl-C.
//!
//! `Consumer::stream()` keeps one long poll outstanding in the background and yields each
//! message as a `Delivery`; `Delivery::ack` queues its ack, and the stream sends queued acks
//! in batches (up to 16 receipt handles a request). A delivery dropped without an ack is
//! released: it comes again after its invisibility time. `MessageStream::shutdown` stops
//! receiving and sends the queued acks.
//!
//! So that it ends on its own, the example publishes eight messages and stops once it has
//! received and acked them (or after 30 s, or on Ctrl-C). With `--follow` it publishes
//! nothing and consumes everything until Ctrl-C:
//!
//! ```sh
//! cargo run --example consume
//! cargo run --example consume -- --follow
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` and `MQ_GROUP_ID`.
//!
//! Last line: `summary: published=8 received=8 acked=8 ok`, or `… FAILED` (exit status 1).

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, StreamItem, TopicMessage, TopicName, WaitSeconds};
use std::collections::HashSet;
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let follow = env::args().any(|arg| arg == "--follow");
    let (client, topic, group, _broker) = connect("example-consume")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    let mut published = HashSet::new();
    if !follow {
        // A group gets what is published after its first request: make one first.
        consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;
        for i in 0..8 {
            let message = TopicMessage::new(format!("message {i}"))?;
            published.insert(producer.publish(&message).await?.message_id);
        }
    }
    println!(
        "consuming {} published message(s), or until Ctrl-C",
        published.len()
    );

    let mut stream = consumer.stream();
    let mut acks = FuturesUnordered::new(); // outcomes of the queued acks
    let (mut received, mut acked, mut interrupted) = (0, 0, false);
    let ctrl_c = tokio::signal::ctrl_c();
    let time_limit = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(ctrl_c, time_limit);
    while follow || received < published.len() {
        tokio::select! {
            _ = &mut ctrl_c => { interrupted = true; break; }
            () = &mut time_limit, if !follow => break,
            Some(result) = acks.next() => acked += usize::from(acked_ok(result)),
            item = stream.next() => match item {
                None => break,
                // A failed long poll is reported, then retried after a backoff.
                Some(Err(e)) => println!("receive failed (retrying): {e}"),
                // A message the client cannot decode: left for redelivery (dropped).
                Some(Ok(StreamItem::Poison(poison))) => {
                    println!("cannot decode {:?}: {}", poison.message_id, poison.reason);
                }
                Some(Ok(StreamItem::Message(delivery))) => {
                    println!("received {} {:?}", delivery.message_id, delivery.body);
                    let ours = follow || published.contains(&delivery.message_id);
                    received += usize::from(ours);
                    let ack = delivery.ack(); // queued now, sent in a batch
                    acks.push(async move { ack.await.map(|()| ours) });
                }
            }
        }
    }
    while let Some(result) = acks.next().await {
        acked += usize::from(acked_ok(result));
    }
    stream.shutdown().await;

    // With --follow, Ctrl-C is the normal end.
    let ok = acked == received && (follow || (!interrupted && received == published.len()));
    let (verdict, published) = (if ok { "ok" } else { "FAILED" }, published.len());
    println!("summary: published={published} received={received} acked={acked} {verdict}");
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}

/// Prints an ack's outcome; whether it acked one of the messages counted.
fn acked_ok(result: Result<bool, mq_tokio::AckError>) -> bool {
    result.unwrap_or_else(|e| {
        println!("ack failed: {e}");
        false
    })
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
