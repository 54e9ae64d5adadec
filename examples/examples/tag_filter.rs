//! Tag filtering: a consumer that receives only the tags it asks for.
//!
//! Publishes six messages tagged `TagA`, `TagB` and `TagC` in turn; a consumer with the tag
//! filter `TagA||TagB` receives the four tagged `TagA` or `TagB`, never the two `TagC` ones
//! (for that group the broker skips them for good). A filter is a tag, or several joined by
//! `||`; without one a consumer receives every message.
//!
//! ```sh
//! cargo run --example tag_filter
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker. Against ApsaraMQ set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID` (optional),
//! `MQ_TOPIC` (a normal topic) and `MQ_GROUP_ID`.
//!
//! Last line: `summary: published=6 received=4 unwanted=0 ok`, or `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, GroupId, Tag, TopicMessage, TopicName, WaitSeconds};
use std::collections::HashSet;
use std::env;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const TAGS: [&str; 3] = ["TagA", "TagB", "TagC"];

#[tokio::main]
async fn main() -> ExitCode {
    // An error ends the example with its message (`error: …`) and exit status 1.
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    let (client, topic, group, _broker) = connect("example-tag-filter")?;
    let producer = client.producer(topic.clone());
    let consumer = client
        .consumer(topic, group)
        .with_tag_filter("TagA||TagB".parse()?);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;

    // Which of our messages the filter lets through, and which it holds back.
    let (mut wanted, mut others) = (HashSet::new(), HashSet::new());
    for i in 0..6 {
        let tag = TAGS[i % TAGS.len()];
        let message = TopicMessage::new(format!("message {i}"))?.with_tag(Tag::new(tag)?);
        let receipt = producer.publish(&message).await?;
        println!("published {} with tag {tag}", receipt.message_id);
        let set = if tag == "TagC" {
            &mut others
        } else {
            &mut wanted
        };
        set.insert(receipt.message_id);
    }

    // Receive until the four arrived (or 30 s passed), then look once more for strays.
    let (mut received, mut unwanted) = (HashSet::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_look = false;
    let wait = WaitSeconds::new(2)?; // long polling
    while !last_look {
        last_look = received.len() == wanted.len() || Instant::now() > deadline;
        let messages = consumer.receive(BatchSize::MAX, wait).await?;
        for m in &messages {
            let tag = m.tag.as_ref().map_or("(none)", Tag::as_str);
            println!("received {} with tag {tag}: {:?}", m.message_id, m.body);
            if wanted.contains(&m.message_id) {
                received.insert(m.message_id.clone());
            }
            unwanted += usize::from(others.contains(&m.message_id));
        }
        let handles = messages.iter().map(|m| &m.receipt_handle);
        consumer.ack(handles).await?; // none: no request
    }

    let ok = received == wanted && unwanted == 0;
    let verdict = if ok { "ok" } else { "FAILED" };
    let published = wanted.len() + others.len();
    println!(
        "summary: published={published} received={} unwanted={unwanted} {verdict}",
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
