//! The gateway when the engine dies: the engine's broker process (where messages live) and
//! its proxy are killed with SIGKILL under publish + consume load and started again, the
//! broker on its store.
//!
//! Asserted: while it is down the gateway answers retryable errors (5xx with the protocol's
//! `<Error>` document), never a hang past the call timeout and never a 4xx; it recovers by
//! itself once the engine is back; every publish that got a 201 is delivered; nothing first
//! delivered after the restart comes back once its ack got a 204. Engine gap (named in the
//! output and in ARCHITECTURE.md): rocketmq-rust 1.0.0 loses the acks given before its
//! broker's SIGKILL, so those messages come back.

use mq_broker::config::BackendConfig;
use mq_broker::{Credential, ServerConfig};
use mq_client::{
    BatchSize, Error, ReceiptHandle, RetryConfig, TopicMessage, TopicName, WaitSeconds,
};
use mq_tests::engine::{Component, RocketMqEngine};
use mq_tests::{TEST_AK, TEST_SK, TestBroker, client_builder, unique};
use mq_tokio::TokioRuntime;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Ledger {
    /// Bodies whose publish got a 201.
    stored: BTreeSet<String>,
    /// Bodies whose ack got a 204.
    acked: BTreeSet<String>,
    /// Bodies delivered at least once.
    delivered: BTreeSet<String>,
    /// Deliveries of a body already acked.
    delivered_after_ack: Vec<String>,
    /// HTTP status and error code of refused calls.
    refusals: Vec<(u16, String)>,
    /// Calls that got no answer at all (transport errors, timeouts).
    unanswered: usize,
    /// The text of the last refusal.
    last_message: String,
    /// 5xx refusals whose message is not their code's standard one (it would carry the
    /// gateway's internals: engine addresses, gRPC statuses).
    detailed_faults: Vec<String>,
    /// Consume calls answered, and the messages they brought.
    polls: usize,
    polled_messages: usize,
}

fn note_error(ledger: &Mutex<Ledger>, e: &Error) {
    let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
    match e {
        Error::Service(s) => {
            l.refusals.push((s.status, s.code.as_str().to_owned()));
            l.last_message = s.message.clone();
            if s.status >= 500 && s.message != s.code.default_message() {
                l.detailed_faults.push(s.message.clone());
            }
        }
        _ => l.unanswered += 1,
    }
}

#[test]
fn broker_killed_under_load() {
    let mut engine = RocketMqEngine::start().unwrap_or_else(|e| panic!("{e}"));
    let t = unique("gw_kill");
    let mut backend = engine.gateway_backend(b"gateway-kill-handle-key-32-bytes");
    if let BackendConfig::RocketMq(r) = &mut backend {
        r.call_timeout = Duration::from_secs(3);
    }
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: vec![Credential::new(TEST_AK, TEST_SK)],
        topics: vec![(None, TopicName::new(t.as_str()).expect("topic"))],
        backend,
        ..ServerConfig::default()
    };
    config.core.invisibility_ms = 2_000;
    let gateway = TestBroker::start_with(config);
    let client = client_builder::<TokioRuntime>(&gateway.endpoint())
        .retry(RetryConfig::disabled())
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let topic = TopicName::new(t.as_str()).expect("topic");
    let consumer = client.consumer(
        topic.clone(),
        mq_client::GroupId::new("GID_kill").expect("group"),
    );
    let producer = client.producer(topic);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let one = BatchSize::new(1).expect("batch");
    let wait = WaitSeconds::new(1).expect("wait");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        assert!(
            consumer
                .receive(one, WaitSeconds::new(0).expect("wait"))
                .await
                .expect("register")
                .is_empty()
        );
    });

    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (producer, ledger, stop) = (producer.clone(), ledger.clone(), stop_load.clone());
        rt.spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = format!("m{i}");
                i += 1;
                let msg = TopicMessage::new(body.as_str()).expect("message");
                let started = Instant::now();
                match producer.publish(&msg).await {
                    Ok(_) => {
                        ledger
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .stored
                            .insert(body);
                    }
                    Err(e) => {
                        assert!(
                            started.elapsed() < Duration::from_secs(10),
                            "a publish hung"
                        );
                        note_error(&ledger, &e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let consume_loop = |consumer: mq_client::Consumer,
                        ledger: Arc<Mutex<Ledger>>,
                        until: Arc<std::sync::atomic::AtomicBool>| async move {
        while !until.load(std::sync::atomic::Ordering::Relaxed) {
            let got = match consumer.receive(one, wait).await {
                Ok(got) => {
                    let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
                    l.polls += 1;
                    l.polled_messages += got.len();
                    got
                }
                Err(e) => {
                    note_error(&ledger, &e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for m in got {
                {
                    let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
                    l.delivered.insert(m.body.to_string());
                    if l.acked.contains(m.body.as_str()) {
                        // Acked again below, so the engine moves on past it.
                        l.delivered_after_ack.push(m.body.to_string());
                    }
                }
                let handle: ReceiptHandle = m.receipt_handle.clone();
                match consumer.ack(&[handle]).await {
                    Ok(()) => {
                        ledger
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .acked
                            .insert(String::from(m.body));
                    }
                    Err(e) => match e.request_error() {
                        Some(request) if e.failures().is_empty() => note_error(&ledger, request),
                        _ => panic!("an ack was refused per handle: {e:?}"),
                    },
                }
            }
        }
    };
    let stop_consume = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consuming = rt.spawn(consume_loop(
        consumer.clone(),
        ledger.clone(),
        stop_consume.clone(),
    ));

    std::thread::sleep(Duration::from_secs(3));
    let before_kill = ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stored
        .len();
    assert!(before_kill > 0, "publishes succeed before the kill");
    assert_eq!(gateway.get("/ready"), (200, "ready\n".to_owned()));
    // The whole engine dies: the broker (where messages live) and its proxy.
    engine.kill(Component::Broker).expect("kill the broker");
    engine.kill(Component::Proxy).expect("kill the proxy");
    // Nothing is delivered or acked from here until the restart.
    let delivered_before_kill = ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .delivered
        .clone();
    std::thread::sleep(Duration::from_secs(4));
    // A load balancer sees this gateway is not ready, while it is alive.
    assert_eq!(gateway.get("/ready").0, 503);
    assert_eq!(gateway.get("/health").0, 200);
    let (refused_while_down, unanswered_while_down) = {
        let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        (l.refusals.clone(), l.unanswered)
    };
    let polls_at_restart = {
        let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        (l.polls, l.polled_messages)
    };
    let recovered_from = Instant::now();
    for component in [Component::Broker, Component::Proxy] {
        engine
            .restart(component)
            .unwrap_or_else(|e| panic!("restart: {e}\n{}", engine.log_tail(component, 30)));
    }
    // Recovers by itself: new publishes succeed again.
    let recovered = loop {
        let stored = ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stored
            .len();
        if stored > before_kill + 5 {
            break Some(recovered_from.elapsed());
        }
        if recovered_from.elapsed() > Duration::from_secs(40) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(publisher).expect("publisher");
    if recovered.is_some() {
        // Ready again (the last answer is reused for at most a second).
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(gateway.get("/ready").0, 200);
    }
    // Drain: every stored message must arrive.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (missing, _) = {
            let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            (l.stored.difference(&l.acked).count(), ())
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A last look for acked messages coming back.
    std::thread::sleep(Duration::from_secs(3));
    stop_consume.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(consuming).expect("consumer");

    let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&String> = l.stored.difference(&l.acked).collect();
    eprintln!(
        "consume calls answered: {} ({} messages) before the restart, {} ({}) in all; last refusal: {}",
        polls_at_restart.0, polls_at_restart.1, l.polls, l.polled_messages, l.last_message
    );
    eprintln!(
        "stored {} (before the kill {before_kill}), acked {}, refusals while down {:?} (+{} unanswered), recovered after {:?}",
        l.stored.len(),
        l.acked.len(),
        refused_while_down.iter().collect::<BTreeSet<_>>(),
        unanswered_while_down,
        recovered
    );
    assert!(
        !refused_while_down.is_empty() || unanswered_while_down > 0,
        "the outage was noticed"
    );
    let kinds: BTreeSet<&(u16, String)> = l.refusals.iter().collect();
    assert!(
        l.detailed_faults.is_empty(),
        "5xx answers say only the standard message: {:?}",
        l.detailed_faults
    );
    assert!(
        l.refusals.iter().all(|(s, _)| *s >= 500),
        "only retryable (5xx) refusals: {kinds:?}"
    );
    assert!(
        recovered.is_some(),
        "publishing recovered after the restart"
    );
    assert!(
        missing.is_empty(),
        "stored but never delivered: {missing:?}"
    );
    // Engine gap: rocketmq-rust 1.0.0 does not make pop acks durable (its broker logs
    // `put ack msg error:WheelTimerMsgIllegal`), so messages delivered and acked before the
    // broker's SIGKILL come back after its restart. What it does offer, and what the gateway
    // must not break: a message first delivered after the restart and acked (204) stays
    // settled.
    let again: BTreeSet<&String> = l.delivered_after_ack.iter().collect();
    eprintln!(
        "engine gap (acks not durable across a broker SIGKILL): {} acked message(s) delivered again",
        again.len()
    );
    let after_restart: Vec<&&String> = again
        .iter()
        .filter(|b| !delivered_before_kill.contains(**b))
        .collect();
    assert!(
        after_restart.is_empty(),
        "first delivered after the restart, acked, and delivered again: {after_restart:?}"
    );
}
