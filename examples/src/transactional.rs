//! The transactional-message guide, written once over [`Runtime`] and run by the
//! `transactional` (tokio) and `async_std_transactional` (async-std) examples.
//!
//! 1. Publish four half messages with property `a` = 0..3 and a check immunity of 10 s. Each
//!    publish returns a receipt handle; message 0 is committed with it right away.
//! 2. The others stay invisible to consumers. From 10 s after publishing, the broker offers
//!    them to the transaction checker, every check interval until they are resolved. The
//!    checker (one call: [`mq_client::TransactionProducer::spawn_checker`]) decides: `a=1` commit,
//!    `a=2` commit only from its second check (`ConsumedTimes > 1`), `a=3` roll back,
//!    anything else unknown (asked again later).
//! 3. Meanwhile a consumer of the topic receives and acks: exactly 0, 1 and 2 arrive.
//!
//! Messages not published by this run (on a shared real topic) are left alone: the checker
//! answers unknown for them and the consumer does not count them.

use crate::{BoxError, Origin, Setup, Summary, describe};
use mq_client::{
    BatchSize, Consumer, Decision, Message, ReceiptHandle, Runtime, TopicMessage,
    TransCheckImmunity, WaitSeconds,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Number of half messages published.
pub const MESSAGE_COUNT: u32 = 4;

/// The checker's decisions so far, per value of property `a` (this run's messages only).
type Decisions = Arc<Mutex<BTreeMap<u32, Vec<Decision>>>>;

/// The guide's decision for a half message with property `a` on its `check`-th check
/// (`ConsumedTimes`, 1 on the first check).
pub fn decide(a: Option<u32>, check: u32) -> Decision {
    match a {
        Some(1) => Decision::Commit,
        Some(2) if check > 1 => Decision::Commit,
        Some(3) => Decision::Rollback,
        _ => Decision::Unknown,
    }
}

/// Runs the guide on runtime `R` and returns its summary,
/// `committed=3 rolled_back=1 received=[0,1,2]` when everything happened as described.
pub async fn run<R: Runtime + Default>(setup: &Setup) -> Result<Summary, BoxError> {
    let client = setup.client::<R>()?;
    let (topic, group) = (setup.topic().clone(), setup.group().clone());
    // The transactional producer's group also consumes here (the guides use one group id).
    let producer = client.transaction_producer(topic.clone(), group.clone());
    let consumer = client.consumer(topic.clone(), group.clone());
    setup.register(&consumer).await?;
    println!(
        "half-message check immunity 10 s, then a check about every {} s",
        setup.half_check_interval().as_secs()
    );

    // 1. Publish the half messages; commit message 0 with the handle the publish returned.
    println!(
        "==========Publish Transaction Message==========\nTopicName:{topic}\nMQConsumer:{group}\nMessageCount:{MESSAGE_COUNT}"
    );
    let immunity = TransCheckImmunity::new(10)?;
    let mut committed_directly = 0;
    for a in 0..MESSAGE_COUNT {
        let message = TopicMessage::new(format!("I am test message {a}."))?
            .with_property("a", a.to_string())?
            .with_key("MessageKey")?
            .with_trans_check_immunity(immunity);
        let receipt = producer.publish(&setup.mark(message)?).await?;
        let handle = receipt.receipt_handle;
        println!(
            "Publish Transaction Message Succeed. MessageID:{}, BodyMD5:{}, Handle:{handle}",
            receipt.message_id, receipt.body_md5
        );
        if a == 0 {
            // Within the immunity time the publish handle can commit or roll back directly.
            producer.commit(&handle).await?;
            println!("Commit Succeed. ReceiptHandle:{handle}");
            committed_directly += 1;
        }
    }

    // 2. The checker: the broker asks about each unresolved half message; the closure
    //    answers, the checker sends the commit or rollback.
    let decisions: Decisions = Arc::default();
    let checker = producer.spawn_checker({
        let (decisions, run) = (decisions.clone(), setup.run_id().clone());
        move |message: Message| {
            println!("Receive Half Message, {}", describe(&message));
            let ours = run.origin(&message) == Origin::ThisRun;
            let a = parse_a(&message);
            let decision = if ours {
                decide(a, message.consumed_times)
            } else {
                Decision::Unknown
            };
            let handle = &message.receipt_handle;
            match decision {
                Decision::Commit => println!("Checker decides Commit. ReceiptHandle:{handle}"),
                Decision::Rollback => println!("Checker decides Rollback. ReceiptHandle:{handle}"),
                Decision::Unknown => println!("Checker decides Unknown (check again later)"),
            }
            if let (true, Some(a)) = (ours, a) {
                lock(&decisions).entry(a).or_default().push(decision);
            }
            async move { decision }
        }
    });

    // 3. Consume until 0, 1 and 2 arrived and 3 was rolled back (or the time is up).
    let deadline = Instant::now()
        + Duration::from_secs(u64::from(immunity.get()))
        + setup.half_check_interval() * 4
        + Duration::from_secs(20);
    let mut received = BTreeSet::new();
    let done = |received: &BTreeSet<u32>| {
        (0..3).all(|a| received.contains(&a)) && rolled_back(&decisions, 3)
    };
    while !done(&received) && Instant::now() < deadline {
        received.extend(receive_and_ack(setup, &consumer, 3).await?);
    }
    let report = checker.shutdown().await?;
    println!(
        "Checker stopped: checked={} committed={} rolled_back={} unknown={} failed={}",
        report.checked, report.committed, report.rolled_back, report.unknown, report.failed
    );
    // The rolled-back message must never arrive: one last look.
    received.extend(receive_and_ack(setup, &consumer, 2).await?);

    let committed = committed_directly + report.committed;
    let a2 = lock(&decisions).get(&2).cloned().unwrap_or_default();
    let ok = received == BTreeSet::from([0, 1, 2])
        && committed == 3
        && report.rolled_back == 1
        && report.failed == 0
        && a2.first() == Some(&Decision::Unknown)
        && a2.last() == Some(&Decision::Commit);
    let received: Vec<String> = received.iter().map(u32::to_string).collect();
    Ok(Summary::new(
        format!(
            "committed={committed} rolled_back={} received=[{}]",
            report.rolled_back,
            received.join(",")
        ),
        ok,
    ))
}

fn lock(decisions: &Decisions) -> MutexGuard<'_, BTreeMap<u32, Vec<Decision>>> {
    decisions.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parse_a(message: &Message) -> Option<u32> {
    message.property("a").and_then(|a| a.parse().ok())
}

fn rolled_back(decisions: &Decisions, a: u32) -> bool {
    lock(decisions)
        .get(&a)
        .is_some_and(|d| d.contains(&Decision::Rollback))
}

/// One long poll of up to `wait` seconds; prints and acks what arrives, returns the `a` values
/// of this run's messages.
async fn receive_and_ack(
    setup: &Setup,
    consumer: &Consumer,
    wait: u8,
) -> Result<Vec<u32>, BoxError> {
    let messages = consumer
        .receive(BatchSize::MAX, WaitSeconds::new(wait)?)
        .await?;
    let mut values = Vec::new();
    let mut handles: Vec<ReceiptHandle> = Vec::new();
    for message in &messages {
        match setup.origin(message) {
            Origin::ThisRun => {
                println!("Receive, {}", describe(message));
                values.extend(parse_a(message));
                handles.push(message.receipt_handle.clone());
            }
            Origin::EarlierRun => {
                println!(
                    "(acking a leftover of an earlier run: {})",
                    message.message_id
                );
                handles.push(message.receipt_handle.clone());
            }
            Origin::Foreign => println!(
                "(leaving a message of someone else: {})",
                message.message_id
            ),
        }
    }
    if !handles.is_empty() {
        consumer.ack(&handles).await?;
        println!("Ack Succeed. {} ReceiptHandle(s)", handles.len());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_guide() {
        assert_eq!(decide(Some(1), 1), Decision::Commit);
        assert_eq!(decide(Some(2), 1), Decision::Unknown);
        assert_eq!(decide(Some(2), 2), Decision::Commit);
        assert_eq!(decide(Some(3), 1), Decision::Rollback);
        assert_eq!(decide(Some(0), 5), Decision::Unknown);
        assert_eq!(decide(None, 1), Decision::Unknown);
    }
}
