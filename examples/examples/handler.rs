//! The handler loop: handlers per tag, a concurrency limit, graceful shutdown.
//!
//! `Consumer::handle(..)` runs the consume loop for you on top of the consumer stream: each
//! message goes to the handler of its tag (`.route(tag, ..)`) or to the default one; `Ok(())`
//! acks it, `Err` leaves it to be delivered again (logged with its id and `ConsumedTimes`);
//! at most `with_concurrency(n)` handlers run at once. Messages the client cannot decode
//! ("poison") follow `with_poison_policy` (left by default). `shutdown()` stops taking
//! messages, lets running handlers finish, sends their acks and returns a summary.
//!
//! The example publishes six messages (three `created`, two `paid`, one untagged), handles
//! them with two routes and the default handler, four at a time, and stops once all six
//! were handled (or after 30 s, or on Ctrl-C):
//!
//! ```sh
//! cargo run --example handler
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` and `MQ_GROUP_ID`.
//!
//! Last line: `summary: published=6 handled=6 acked=6 ok`, or `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, Message, Tag, TopicMessage, TopicName, WaitSeconds};
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (client, topic, group, _broker) = connect("example-handler")?;
    let producer = client.producer(topic.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;
    let mut published = 0;
    for (body, tag) in [
        ("order 1", Some("created")),
        ("order 2", Some("created")),
        ("order 3", Some("created")),
        ("order 1", Some("paid")),
        ("order 2", Some("paid")),
        ("hello", None),
    ] {
        let mut message = TopicMessage::new(body)?;
        if let Some(tag) = tag {
            message = message.with_tag(Tag::new(tag)?);
        }
        producer.publish(&message).await?;
        published += 1;
    }
    println!("published {published} messages; handling them, 4 at a time");

    let handled = Arc::new(AtomicUsize::new(0));
    let counted = |what: &'static str| {
        let handled = handled.clone();
        move |message: Message| {
            let handled = handled.clone();
            async move {
                // Real work goes here; `?` on any error leaves the message for redelivery.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let (body, n) = (&message.body, message.consumed_times);
                println!("{what}: {body} (delivered {n} times)");
                handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let handling = consumer
        .handle(counted("other"))
        .route(Tag::new("created")?, counted("created"))
        .route(Tag::new("paid")?, counted("paid"))
        .with_concurrency(4)
        .spawn();

    let deadline = Instant::now() + Duration::from_secs(30);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while handled.load(Ordering::SeqCst) < published && Instant::now() < deadline {
        tokio::select! {
            _ = &mut ctrl_c => break,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    // Running handlers finish, their acks are sent and answered.
    let summary = handling.shutdown().await?;
    println!("{summary:?}");

    let ok = summary.handled == published as u64 && summary.acked == summary.handled;
    let verdict = if ok { "ok" } else { "FAILED" };
    let (handled, acked) = (summary.handled, summary.acked);
    println!("summary: published={published} handled={handled} acked={acked} {verdict}");
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
