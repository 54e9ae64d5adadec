//! Consuming with the stream API: long polling, batched acks, clean stop on Ctrl-C.
//!
//! `Consumer::stream()` keeps one long poll (up to 30 s) outstanding in the background and
//! yields each message as a `Delivery`; `Delivery::ack` queues its ack, and the stream sends
//! queued acks in batches (up to 16 handles per request). A delivery dropped without an ack
//! is released and delivered again after its invisibility time. `MessageStream::shutdown`
//! stops receiving and flushes the queued acks.
//!
//! So that it finishes on its own, the example first publishes 8 messages and stops once
//! they are all received and acked (or after 30 s, or on Ctrl-C). With `--follow` it
//! publishes nothing and consumes (and acks) everything until Ctrl-C:
//!
//! ```sh
//! cargo run --example consume
//! cargo run --example consume -- --follow
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded `mq-broker`. Against the real service set
//! `MQ_ENDPOINT`, `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//! `MQ_INSTANCE_ID`, `MQ_TOPIC` and `MQ_GROUP_ID`.
//!
//! Last line: `summary: published=8 received=8 acked=8 ok`, or `… FAILED`.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mq_examples::{BoxError, Origin, Setup, Summary, describe, finish};
use mq_tokio::{Tag, TokioRuntime, TopicMessage};
use std::process::ExitCode;
use std::time::Duration;

/// Messages published before consuming.
const COUNT: usize = 8;
/// The example gives up after this long (unless `--follow`).
const TIME_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    finish(run().await)
}

async fn run() -> Result<Summary, BoxError> {
    let follow = std::env::args().skip(1).any(|arg| arg == "--follow");
    let setup = Setup::from_env("consume")?;
    let client = setup.client::<TokioRuntime>()?;
    let consumer = client.consumer(setup.topic().clone(), setup.group().clone());
    setup.register(&consumer).await?;

    let mut published = 0;
    if !follow {
        let producer = client.producer(setup.topic().clone());
        for i in 0..COUNT {
            let message = TopicMessage::new(format!("I am test message {i}."))?
                .with_tag(Tag::new("TagA")?)
                .with_key(format!("key-{i}"))?;
            let receipt = producer.publish(&setup.mark(message)?).await?;
            println!(
                "Publish Message Succeed. MessageID:{}, BodyMD5:{}",
                receipt.message_id, receipt.body_md5
            );
            published += 1;
        }
        println!(
            "consuming until the {COUNT} messages are in (at most {} s; Ctrl-C stops)",
            TIME_LIMIT.as_secs()
        );
    } else {
        println!("consuming until Ctrl-C");
    }

    let mut stream = consumer.stream();
    // Outcomes of queued acks: (counted in the summary?, handle, result).
    let mut acks = FuturesUnordered::new();
    let (mut received, mut acked, mut failed) = (0, 0, 0);
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    let time_limit = tokio::time::sleep(TIME_LIMIT);
    tokio::pin!(ctrl_c, time_limit);
    while follow || received < published {
        tokio::select! {
            _ = &mut ctrl_c => {
                println!("Ctrl-C: stopping");
                interrupted = true;
                break;
            }
            () = &mut time_limit, if !follow => {
                println!("time limit reached: stopping");
                break;
            }
            Some((counted, handle, result)) = acks.next(), if !acks.is_empty() => {
                match result {
                    Ok(()) => {
                        println!("Ack Succeed. ReceiptHandle:{handle}");
                        acked += usize::from(counted);
                    }
                    Err(e) => {
                        println!("Ack Fail. ReceiptHandle:{handle}: {e}");
                        failed += 1;
                    }
                }
            }
            item = stream.next() => match item {
                None => break,
                // The stream reports a failed long poll and retries after a backoff.
                Some(Err(e)) => println!("receive failed (retrying): {e}"),
                Some(Ok(delivery)) => {
                    let counted = match setup.origin(&delivery) {
                        Origin::ThisRun => true,
                        Origin::Foreign if follow => true,
                        // A leftover of an earlier run: acknowledge it, don't count it.
                        Origin::EarlierRun => false,
                        // Someone else's message: give it back untouched.
                        Origin::Foreign => {
                            delivery.release();
                            continue;
                        }
                    };
                    if counted {
                        println!("Receive, {}", describe(&delivery));
                        received += 1;
                    }
                    let handle = delivery.receipt_handle.clone();
                    // `ack` queues the ack now; the future tells how it went.
                    let ack = delivery.ack();
                    acks.push(async move { (counted, handle, ack.await) });
                }
            }
        }
    }
    // Wait for the queued acks, then stop the stream (nothing is left in hand).
    while let Some((counted, handle, result)) = acks.next().await {
        match result {
            Ok(()) => {
                println!("Ack Succeed. ReceiptHandle:{handle}");
                acked += usize::from(counted);
            }
            Err(e) => {
                println!("Ack Fail. ReceiptHandle:{handle}: {e}");
                failed += 1;
            }
        }
    }
    stream.shutdown().await;

    let ok = if follow {
        failed == 0
    } else {
        !interrupted && received == published && acked == published && failed == 0
    };
    Ok(Summary::new(
        format!("published={published} received={received} acked={acked}"),
        ok,
    ))
}
