//! The client scenario suite, and the proxy and connection-cap scenarios, on tokio (`mq-tokio`).

fn block_on<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f);
}

mq_tests::scenario_tests!(mq_tokio::TokioRuntime, block_on);
mq_tests::network_tests!(mq_tokio::TokioRuntime, block_on);

/// A client built inside one tokio runtime keeps working on another once the first is gone
/// (a `static` client shared by `#[tokio::test]`s, each on its own runtime): its tasks go to
/// the runtime current when they are spawned, not to the one current at `build()`.
#[test]
fn a_client_outlives_the_runtime_it_was_built_on() {
    let broker = mq_tests::TestBroker::start();
    let topic: mq_tokio::TopicName = "outlives".parse().expect("topic");
    let message = mq_tokio::TopicMessage::new("hello").expect("message");
    let runtime = || tokio::runtime::Runtime::new().expect("tokio runtime");
    let first = runtime();
    let client = first.block_on(async {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        client
            .producer(topic.clone())
            .publish(&message)
            .await
            .expect("publish on the runtime the client was built on");
        client
    });
    drop(first);
    runtime().block_on(async {
        client
            .producer(topic)
            .publish(&message)
            .await
            .expect("publish on a second runtime after the first ended");
    });
}

/// Fresh-eyes finding: a client on `TokioRuntime` awaited from another executor
/// (`futures::executor::block_on`, async-std, smol) panicked with "there is no reactor
/// running", even while the runtime it was built on ran. Its timers and connections now run
/// on that runtime; once no runtime is left a call fails with an error saying so, and a
/// client that never had one fails the same way: never a panic.
#[test]
fn a_client_works_from_another_executor_and_never_panics() {
    use mq_tests::scenarios::{batch, group, topic, wait};
    let broker = mq_tests::TestBroker::start();
    let (topic, group) = (topic("foreign"), group("GID_foreign"));
    let message = mq_tokio::TopicMessage::new("hello").expect("message");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client =
        runtime.block_on(async { mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker) });
    futures::executor::block_on(async {
        let consumer = client.consumer(topic.clone(), group);
        mq_tests::scenarios::register(&consumer).await;
        client
            .producer(topic.clone())
            .publish(&message)
            .await
            .expect("publish from another executor");
        let got = consumer.receive(batch(16), wait(3)).await.expect("receive");
        assert_eq!(got.len(), 1, "{got:?}");
        consumer.ack([&got[0].receipt_handle]).await.expect("ack");
    });
    // A stream started on the runtime: it ends with an error when the runtime goes (it
    // just ended).
    let mut early = runtime.block_on(async {
        client
            .consumer(
                topic.clone(),
                mq_tests::scenarios::group("GID_foreign_early"),
            )
            .stream()
    });
    drop(runtime);
    match futures::executor::block_on(futures::StreamExt::next(&mut early)) {
        Some(Err(mq_tokio::Error::Shutdown)) => {}
        other => panic!("expected Err(Shutdown) from a stream whose runtime went, got {other:?}"),
    }
    let failed = futures::executor::block_on(client.producer(topic.clone()).publish(&message))
        .expect_err("no tokio runtime left");
    assert!(failed.to_string().contains("has shut down"), "{failed}");
    // A consumer stream started then says so too (its task was dropped unrun by the dead
    // runtime: the stream just ended).
    let consumer = client.consumer(
        topic.clone(),
        mq_tests::scenarios::group("GID_foreign_stream"),
    );
    let mut stream = consumer.stream();
    let first = futures::executor::block_on(futures::StreamExt::next(&mut stream));
    match first {
        Some(Err(e)) => assert!(e.to_string().contains("has shut down"), "{e}"),
        other => panic!("expected the stream's error, got {other:?}"),
    }
    drop(stream);

    let never = mq_tests::client_builder::<mq_tokio::TokioRuntime>(&broker.endpoint())
        .build()
        .expect("client");
    let failed = futures::executor::block_on(never.producer(topic).publish(&message))
        .expect_err("no tokio runtime at all");
    assert!(failed.to_string().contains("no tokio runtime"), "{failed}");
}

/// Fresh-eyes findings: `ack(msgs.iter().map(|m| &m.receipt_handle))`, the README's shape,
/// did not compile in a spawned task (the iterator and its closure were held across an
/// `await`, so the future was not `Send`); and a handle given twice in one call was
/// reported not acknowledged although the first copy acked it.
#[test]
fn ack_takes_any_iterator_in_a_spawned_task_and_a_repeated_handle_once() {
    use mq_tests::scenarios::{batch, group, topic, wait};
    let broker = mq_tests::TestBroker::start();
    block_on(async move {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        let consumer = client.consumer(topic("spawned_ack"), group("GID_spawned_ack"));
        mq_tests::scenarios::register(&consumer).await;
        let producer = client.producer(consumer.topic().clone());
        for body in ["a", "b"] {
            let message = mq_tokio::TopicMessage::new(body).expect("message");
            producer.publish(&message).await.expect("publish");
        }
        let spawned = tokio::spawn(async move {
            let mut msgs = Vec::new();
            while msgs.len() < 2 {
                msgs.extend(consumer.receive(batch(16), wait(3)).await.expect("receive"));
            }
            consumer
                .ack(msgs.iter().map(|m| &m.receipt_handle))
                .await
                .expect("ack of every message");
            (consumer, msgs)
        });
        let (consumer, msgs) = spawned.await.expect("the spawned task");
        let again = consumer
            .ack([&msgs[0].receipt_handle])
            .await
            .expect_err("acked already");
        assert_eq!(again.failures().len(), 1, "{again}");

        producer
            .publish(&mq_tokio::TopicMessage::new("c").expect("message"))
            .await
            .expect("publish");
        let got = consumer.receive(batch(16), wait(3)).await.expect("receive");
        let handle = &got[0].receipt_handle;
        consumer
            .ack([handle, handle])
            .await
            .expect("a repeated handle is acked once");
    });
}

/// Fresh-eyes findings: a half message offered again while its decision still ran (its
/// check interval passed) was decided again at once, several decisions of one transaction
/// running side by side, each settled with a stale handle: a decision longer than the
/// check interval never took effect. And a decision that ended just as the message was
/// offered again (a length that is a multiple of the interval) settled with the handle that
/// offer made stale, then was asked again, and again. Now each message is decided once and
/// its decision takes effect with the newest handle.
#[test]
fn a_half_message_offered_again_during_its_decision_is_decided_once() {
    use mq_tests::scenarios::{batch, group, topic, wait};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    let mut config = mq_tests::TestBroker::config();
    config.test_clock = true;
    config.core.half_check_interval_ms = 500;
    let broker = mq_tests::TestBroker::start_with(config);
    // Decisions of 2.5 s (5 intervals: it ends as the message is offered again), 1 s, 1.7 s
    // and 0.5 s.
    let lengths_ms = [2_500u64, 1_000, 1_700, 500];
    block_on(async move {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        let (t, g) = (topic("slow_decision"), group("GID_slow_decision"));
        let consumer = client.consumer(t.clone(), group("GID_slow_reader"));
        mq_tests::scenarios::register(&consumer).await;
        let producer = client.transaction_producer(t, g);
        for length in lengths_ms {
            let half = mq_tokio::TopicMessage::new(length.to_string())
                .expect("message")
                .with_trans_check_immunity(
                    mq_tokio::TransCheckImmunity::new(10).expect("immunity"),
                );
            producer.publish(&half).await.expect("publish half");
        }
        let decisions: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let counted = Arc::clone(&decisions);
        let checker = producer.spawn_checker(move |m| {
            *counted
                .lock()
                .unwrap()
                .entry(m.body.to_string())
                .or_default() += 1;
            let length = m.body.parse::<u64>().expect("a length");
            async move {
                tokio::time::sleep(Duration::from_millis(length)).await;
                mq_tokio::Decision::Commit
            }
        });
        let (status, _) = broker.admin("POST", "/admin/clock?advance_ms=11000");
        assert_eq!(status, 200);
        let mut got = Vec::new();
        for _ in 0..12 {
            got.extend(consumer.receive(batch(16), wait(1)).await.expect("receive"));
            if got.len() >= lengths_ms.len() {
                break;
            }
        }
        // Nothing more comes (no second commit of one message).
        got.extend(consumer.receive(batch(16), wait(1)).await.expect("receive"));
        let report = checker.shutdown().await.expect("the checker stops");
        let mut bodies: Vec<String> = got.iter().map(|m| m.body.to_string()).collect();
        bodies.sort();
        let mut expected: Vec<String> = lengths_ms.iter().map(u64::to_string).collect();
        expected.sort();
        assert_eq!(bodies, expected, "each committed message once: {report:?}");
        let decisions = decisions.lock().unwrap().clone();
        assert!(
            decisions.values().all(|&n| n == 1),
            "{decisions:?} {report:?}"
        );
        assert_eq!(
            (report.checked, report.committed, report.unknown),
            (4, 4, 0),
            "{report:?}"
        );
    });
}

/// Blocks this thread until two callers run at once (5 s at most), counting in `met` each
/// caller that saw the other one: 2 when they ran in parallel, 1 when one after the other.
fn meet_blocking(running: &std::sync::atomic::AtomicUsize, met: &std::sync::atomic::AtomicUsize) {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};
    running.fetch_add(1, SeqCst);
    let until = Instant::now() + Duration::from_secs(5);
    while running.load(SeqCst) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    if running.load(SeqCst) >= 2 {
        met.fetch_add(1, SeqCst);
    }
}

/// Handlers run in parallel on a multi-threaded runtime, up to the concurrency limit
/// (fresh-eyes finding: the loop drove every handler future itself, so a handler that
/// blocked its thread held every other one back and `with_concurrency(8)` ran one at a
/// time). Each handler here blocks its thread until the other one runs too (5 s at most).
#[test]
fn handlers_run_in_parallel_on_a_multi_threaded_runtime() {
    use mq_tests::scenarios::{group, topic};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};
    let broker = mq_tests::TestBroker::start();
    block_on(async {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        let (topic, group) = (topic("parallel"), group("GID_parallel"));
        let consumer = client.consumer(topic.clone(), group);
        mq_tests::scenarios::register(&consumer).await;
        for body in ["a", "b"] {
            let message = mq_tokio::TopicMessage::new(body).expect("message");
            client
                .producer(topic.clone())
                .publish(&message)
                .await
                .expect("publish");
        }
        let (running, met) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, m) = (running.clone(), met.clone());
        let handling = consumer
            .handle(move |_message| {
                let (running, met) = (r.clone(), m.clone());
                async move {
                    meet_blocking(&running, &met);
                    Ok(())
                }
            })
            .with_concurrency(2)
            .spawn();
        let until = Instant::now() + Duration::from_secs(30);
        while handling.summary().handled < 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let summary = handling.shutdown().await.expect("summary");
        assert_eq!((summary.handled, summary.acked), (2, 2), "{summary:?}");
        assert_eq!(met.load(SeqCst), 2, "both handlers ran at once");
    });
}

/// The transaction checker's decisions run in parallel on a multi-threaded runtime, as the
/// handlers do: each decision here blocks its thread (a synchronous lookup) until the other
/// one runs too (5 s at most). They ran inside the checker's driver, one at a time, and a
/// blocking one held the polls back as well.
#[test]
fn checker_decisions_run_in_parallel_on_a_multi_threaded_runtime() {
    use mq_tests::scenarios::{group, topic};
    use mq_tokio::{Decision, TopicMessage, TransCheckImmunity};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};
    let broker = mq_tests::TestBroker::start();
    block_on(async {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        let tx = client.transaction_producer(topic("parallel_tx"), group("GID_parallel_tx"));
        for body in ["a", "b"] {
            let immunity = TransCheckImmunity::new(10).expect("immunity");
            let half = TopicMessage::new(body)
                .expect("message")
                .with_trans_check_immunity(immunity);
            tx.publish(&half).await.expect("publish half");
        }
        let (running, met) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, m) = (running.clone(), met.clone());
        let checker = tx.spawn_checker(move |_message| {
            let (running, met) = (r.clone(), m.clone());
            async move {
                meet_blocking(&running, &met);
                Decision::Commit
            }
        });
        let until = Instant::now() + Duration::from_secs(40);
        while checker.report().committed < 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let report = checker.shutdown().await.expect("report");
        assert_eq!((report.checked, report.committed), (2, 2), "{report:?}");
        assert_eq!(met.load(SeqCst), 2, "both decisions ran at once");
    });
}

/// `shutdown()` stops receiving at once while the handlers in flight finish: a message
/// published meanwhile stays for other consumers (review finding: the stream kept
/// long-polling until the last handler ended, and what it took waited, unhandled, to be
/// released at the end — invisible to every consumer for the invisibility time).
#[test]
fn a_handler_shutdown_stops_receiving_while_handlers_finish() {
    use mq_tests::scenarios::{batch, group, topic, wait};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};
    let mut config = mq_tests::TestBroker::config();
    config.core.invisibility_ms = 10_000;
    let broker = mq_tests::TestBroker::start_with(config);
    block_on(async {
        let client = mq_tests::scenarios::client::<mq_tokio::TokioRuntime>(&broker);
        let t = topic("hstop");
        let consumer = client.consumer(t.clone(), group("GID_hstop"));
        mq_tests::scenarios::register(&consumer).await;
        let producer = client.producer(t);
        for body in ["slow", "quick"] {
            let message = mq_tokio::TopicMessage::new(body).expect("message");
            producer.publish(&message).await.expect("publish");
        }
        let started = std::sync::Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let handling = consumer
            .handle(move |m: mq_tokio::Message| {
                let s = s.clone();
                async move {
                    s.fetch_add(1, SeqCst);
                    if m.body == "slow" {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Ok(())
                }
            })
            .with_concurrency(2)
            .with_config(
                mq_tokio::ConsumerConfig::normal()
                    .with_wait(wait(1))
                    .with_max_in_hand(2),
            )
            .spawn();
        let until = Instant::now() + Duration::from_secs(10);
        while (handling.summary().handled < 1 || started.load(SeqCst) < 2) && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopping = tokio::spawn(handling.shutdown());
        // A long poll outstanding at the shutdown (1 s wait) would be over by now.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let late = mq_tokio::TopicMessage::new("late").expect("message");
        producer.publish(&late).await.expect("publish");
        let summary = stopping.await.expect("joined").expect("summary");
        assert_eq!(summary.handled, 2, "{summary:?}");
        let got = consumer.receive(batch(16), wait(0)).await.expect("receive");
        let bodies: Vec<String> = got.iter().map(|m| m.body.to_string()).collect();
        assert_eq!(bodies, ["late"], "not taken by the stopping loop");
    });
}
