//! Transactional messages: half messages, a commit, and the transaction checker, on tokio.
//!
//! 1. Four half messages with property `a` = 0..3 and a check immunity of 10 s. They stay
//!    invisible to consumers until committed. Message 0 is committed at once with the
//!    receipt handle its publish returned.
//! 2. From 10 s after publishing, and then about every 10 s, the broker asks the transaction
//!    checker about each unresolved half message. The checker (one call: `spawn_checker`)
//!    commits `a=1`, commits `a=2` from its second check on, rolls back `a=3`, and answers
//!    unknown (ask again later) otherwise.
//! 3. Meanwhile a consumer receives and acks: exactly 0, 1 and 2 arrive, never 3.
//!
//! ```sh
//! cargo run --example transactional
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded broker (about 25 s in all). Against ApsaraMQ set
//! `MQ_ENDPOINT`, `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//! `MQ_INSTANCE_ID` (optional), `MQ_TOPIC` (a transactional topic dedicated to this example) and
//! `MQ_GROUP_ID`: the group of the transactional producer (it receives the checks), also used as
//! the consumer group.
//!
//! Last line: `summary: committed=3 rolled_back=1 received=[0,1,2] ok` (exit status 0), or
//! `… FAILED` (exit status 1).

use mq_broker::{Broker, EmbeddedBroker};
use mq_tokio::{BatchSize, Client, Decision, GroupId, Message, TopicMessage, TopicName};
use mq_tokio::{TransCheckImmunity, WaitSeconds};
use std::collections::BTreeSet;
use std::env;
use std::error::Error;
use std::process::ExitCode;
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
    let (client, topic, group, _broker) = connect("example-transactional")?;
    let producer = client.transaction_producer(topic.clone(), group.clone());
    let consumer = client.consumer(topic, group);
    // A group gets what is published after its first request: make one first.
    consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;

    // 1. The half messages; within the immunity the publish's handle commits or rolls back.
    for a in 0..4 {
        let message = TopicMessage::new(format!("transaction {a}"))?
            .with_property("a", a.to_string())?
            .with_trans_check_immunity(TransCheckImmunity::new(10)?);
        let receipt = producer.publish(&message).await?;
        println!("published half message a={a}: {}", receipt.message_id);
        if a == 0 {
            producer.commit(&receipt.receipt_handle).await?;
            println!("committed a=0 directly");
        }
    }

    // 2. The checker: the closure decides, the checker sends the commit or rollback.
    let checker = producer.spawn_checker(|message: Message| {
        let check = message.consumed_times; // 1 on the first check
        let a = message.property("a").unwrap_or("?");
        let decision = match a {
            "1" => Decision::Commit,
            "2" if check > 1 => Decision::Commit,
            "3" => Decision::Rollback,
            _ => Decision::Unknown,
        };
        println!("check {check} of a={a}: {decision:?}");
        async move { decision }
    });

    // 3. Receive until 0, 1 and 2 arrived (or 60 s passed), then look once more for 3.
    let mut received = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_look = false;
    let wait = WaitSeconds::new(3)?; // long polling
    while !last_look {
        last_look = received.len() >= 3 || Instant::now() > deadline;
        let messages = consumer.receive(BatchSize::MAX, wait).await?;
        for m in &messages {
            let a = m.property("a").unwrap_or("?");
            println!("received {:?} (a={a})", m.body);
            received.insert(a.to_owned());
        }
        let handles = messages.iter().map(|m| &m.receipt_handle);
        consumer.ack(handles).await?; // none: no request
    }
    let report = checker.shutdown().await?; // sends what was decided, then stops
    println!("checker: {report:?}");

    let committed = 1 + report.committed;
    let received: Vec<String> = received.into_iter().collect();
    let ok = received == ["0", "1", "2"]
        && committed == 3
        && report.rolled_back == 1
        && report.unknown >= 1 // a=2 on its first check
        && report.failed == 0;
    let verdict = if ok { "ok" } else { "FAILED" };
    let (rolled_back, received) = (report.rolled_back, received.join(","));
    println!(
        "summary: committed={committed} rolled_back={rolled_back} received=[{received}] {verdict}"
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
