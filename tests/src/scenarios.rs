//! The client scenario suite, written once over [`Runtime`] and run on every runtime crate
//! (tokio, async-std, smol) against the real broker on 127.0.0.1.
//!
//! Each scenario panics with a message when the behaviour a user relies on is missing.

use crate::chaos::{ChaosProxy, Fault, POISON_PREFIX, Schedule};
use crate::faults::{IdleDroppingProxy, SilentServer};
use crate::tls::TlsFront;
use crate::{TestBroker, client_builder, unique};
use futures::StreamExt;
use mq_client::{
    BatchSize, Client, ConsumerConfig, Decision, Error, ErrorCode, GroupId, Message, RetryConfig,
    Runtime, Tag, TopicMessage, TopicName, TransCheckImmunity, WaitSeconds,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

async fn sleep<R: Runtime + Default>(d: Duration) {
    R::default().sleep(d).await;
}

/// A topic with a unique name starting with `prefix`.
pub fn topic(prefix: &str) -> TopicName {
    TopicName::new(unique(prefix)).expect("topic name")
}

/// A group with a unique name starting with `prefix`.
pub fn group(prefix: &str) -> GroupId {
    GroupId::new(unique(prefix)).expect("group id")
}

/// `s` seconds of long polling.
pub fn wait(s: u8) -> WaitSeconds {
    WaitSeconds::new(s).expect("wait seconds")
}

/// `n` messages per request.
pub fn batch(n: u8) -> BatchSize {
    BatchSize::new(n).expect("batch size")
}

/// Registers `consumer`'s group on its topic (a group gets the messages published after
/// its first consume): one empty receive that must find nothing.
pub async fn register(consumer: &mq_client::Consumer) {
    let found = consumer.receive(batch(1), wait(0)).await.expect("register");
    assert!(found.is_empty(), "a new group found {found:?}");
}

/// Wall-clock epoch milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A client of `broker` with the test credentials, on runtime `R`.
pub fn client<R: Runtime + Default>(broker: &TestBroker) -> Client {
    client_builder::<R>(&broker.endpoint())
        .build()
        .expect("client")
}

/// Receives until `n` messages arrived or `within` passed; acks nothing.
async fn receive_n(consumer: &mq_client::Consumer, n: usize, within: Duration) -> Vec<Message> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(consumer.receive(batch(16), wait(1)).await.expect("receive"));
    }
    got
}

/// Publish tagged/keyed messages with properties, receive them with every field intact, ack,
/// and see nothing more.
pub async fn publish_consume_ack<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let (t, g) = (topic("pca"), group("GID_pca"));
    let consumer = client.consumer(t.clone(), g);
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t);
    let bodies = ["plain", "xml <&> \"quoted\" 'single'", "中文 ünïcödé ✓"];
    let mut sent = BTreeMap::new();
    for (i, body) in bodies.iter().enumerate() {
        let msg = TopicMessage::new(*body)
            .and_then(|m| m.with_key(format!("key-{i}")))
            .and_then(|m| m.with_property("seq", i.to_string()))
            .expect("message")
            .with_tag(Tag::new("TagA").expect("tag"));
        let receipt = producer.publish(&msg).await.expect("publish");
        assert_eq!(receipt.body_md5, mq_proto::body_md5(body));
        assert!(
            receipt.receipt_handle.is_none(),
            "only transactional publishes get a handle"
        );
        sent.insert(receipt.message_id.clone(), (*body, i));
    }
    let got = receive_n(&consumer, 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "all published messages arrive");
    for m in &got {
        let (body, i) = sent.get(&m.message_id).expect("known message id");
        assert_eq!(m.body, *body);
        assert_eq!(m.key(), Some(format!("key-{i}").as_str()));
        assert_eq!(m.property("seq"), Some(i.to_string().as_str()));
        assert_eq!(m.tag.as_ref().map(Tag::as_str), Some("TagA"));
        assert_eq!(m.consumed_times, 1);
        assert!(m.body_md5_matches());
        assert!(m.next_consume_time > m.publish_time);
    }
    let handles: Vec<_> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    consumer.ack(&handles).await.expect("ack all");
    // After the invisibility time (2 s on the test broker) nothing comes back.
    sleep::<R>(Duration::from_millis(2_300)).await;
    assert!(
        consumer
            .receive(batch(16), wait(1))
            .await
            .expect("receive")
            .is_empty(),
        "acked messages are not delivered again"
    );
}

/// Tag filters deliver only matching messages.
pub async fn tag_filter<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let t = topic("tags");
    let consumer = client
        .consumer(t.clone(), group("GID_tags"))
        .with_tag_filter("TagA||TagB".parse().expect("filter"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t);
    for tag in ["TagA", "TagC", "TagB"] {
        let msg = TopicMessage::new(format!("tagged {tag}"))
            .expect("message")
            .with_tag(Tag::new(tag).expect("tag"));
        producer.publish(&msg).await.expect("publish");
    }
    producer
        .publish(&TopicMessage::new("untagged").expect("message"))
        .await
        .expect("publish");
    let got = receive_n(&consumer, 2, Duration::from_secs(5)).await;
    let tags: BTreeSet<_> = got
        .iter()
        .map(|m| m.tag.as_ref().map(|t| t.as_str().to_owned()))
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from([Some("TagA".to_owned()), Some("TagB".to_owned())])
    );
    assert!(
        consumer
            .receive(batch(16), wait(1))
            .await
            .expect("receive")
            .is_empty()
    );
}

/// The seed guide's transactional flow: four half messages, message 0 committed with the
/// publish handle, the checker commits `a=1` and `a=2` on their second checks (the first
/// panics: in the closure for `a=1`, in its future for `a=2`), rolls back `a=3`; a consumer
/// sees exactly 0, 1 and 2.
pub async fn transactional_with_checker<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let t = topic("tx");
    let consumer = client.consumer(t.clone(), group("GID_tx_consumer"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.transaction_producer(t, group("GID_tx"));
    let immunity = TransCheckImmunity::new(10).expect("immunity");
    let mut first_handle = None;
    for a in 0..4 {
        let msg = TopicMessage::new(format!("transaction {a}"))
            .and_then(|m| m.with_property("a", a.to_string()))
            .expect("message")
            .with_trans_check_immunity(immunity);
        let receipt = producer.publish(&msg).await.expect("publish half");
        let handle = receipt.receipt_handle;
        if a == 0 {
            first_handle = Some(handle);
        }
    }
    let first_handle = first_handle.expect("handle of message 0");
    producer
        .commit(&first_handle)
        .await
        .expect("commit with the publish handle");
    // A second decision is refused, and its error says what was not done.
    let again = producer.rollback(&first_handle).await.expect_err("decided");
    assert_eq!(again.kind(), mq_client::AckKind::Rollback);
    assert!(
        again
            .to_string()
            .starts_with("1 of 1 receipt handle(s) not rolled back"),
        "{again}"
    );
    let checks: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let seen = checks.clone();
    let checker = producer.spawn_checker(move |m: Message| {
        let a = m.property("a").unwrap_or("").to_owned();
        let n = {
            let mut map = seen.lock().expect("checks");
            let n = map.entry(a.clone()).or_insert(0);
            *n += 1;
            *n
        };
        // A panic, in the closure or in its future, is that check's `Unknown`: the
        // checker goes on and checks the message again.
        assert!(
            (a.as_str(), n) != ("1", 1),
            "the decision closure panics at a=1's first check"
        );
        async move {
            match (a.as_str(), n) {
                ("1", _) => Decision::Commit,
                ("2", 1) => panic!("the decision's future panics at a=2's first check"),
                ("2", _) => Decision::Commit,
                ("3", _) => Decision::Rollback,
                _ => Decision::Unknown,
            }
        }
    });
    // Collect (and ack) until the three committed messages are in, or 40 s pass.
    let mut values = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while values.len() < 3 && Instant::now() < deadline {
        let got = consumer.receive(batch(16), wait(1)).await.expect("receive");
        let handles: Vec<_> = got.iter().map(|m| m.receipt_handle.clone()).collect();
        consumer.ack(&handles).await.expect("ack");
        values.extend(
            got.iter()
                .filter_map(|m| m.property("a").map(str::to_owned)),
        );
    }
    let report = checker.shutdown().await.expect("checker stops cleanly");
    assert_eq!(
        values,
        BTreeSet::from(["0".to_owned(), "1".to_owned(), "2".to_owned()]),
        "exactly the committed messages arrive"
    );
    let checks = checks.lock().expect("checks").clone();
    assert_eq!(
        checks.get("0"),
        None,
        "message 0 was committed before any check"
    );
    for a in ["1", "2"] {
        assert!(
            checks.get(a).copied().unwrap_or(0) >= 2,
            "a={a} needed a second check after its first panicked"
        );
    }
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(report.rolled_back, 1, "{report:?}");
    assert!(
        report.unknown >= 2,
        "the two panics count as unknown: {report:?}"
    );
    // The rolled-back message never arrives.
    assert!(
        receive_n(&consumer, 1, Duration::from_secs(2))
            .await
            .iter()
            .all(|m| m.property("a") != Some("3"))
    );
}

/// A delayed message is invisible until its start-deliver time, then arrives promptly.
pub async fn delayed<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let t = topic("delay");
    let consumer = client.consumer(t.clone(), group("GID_delay"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let sent_at = now_ms();
    let msg = TopicMessage::new("later")
        .expect("message")
        .with_start_deliver_time(sent_at + 1_500);
    client.producer(t).publish(&msg).await.expect("publish");
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("receive")
            .is_empty(),
        "not visible before its time"
    );
    let got = receive_n(&consumer, 1, Duration::from_secs(6)).await;
    let arrived = now_ms();
    assert_eq!(got.len(), 1, "delivered after its time");
    assert_eq!(got[0].start_deliver_time(), Some(sent_at + 1_500));
    let delay = arrived - sent_at;
    assert!((1_400..4_000).contains(&delay), "delay {delay} ms");
}

/// Ordered consumption: FIFO per sharding key, a key blocked until its messages are acked.
pub async fn orderly<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let t = topic("order");
    let consumer = client.consumer(t.clone(), group("GID_order"));
    assert!(
        consumer
            .receive_orderly(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t);
    for i in 0..3 {
        for key in ["k1", "k2"] {
            let msg = TopicMessage::new(format!("{key}-{i}"))
                .and_then(|m| m.with_sharding_key(key))
                .expect("message");
            producer.publish(&msg).await.expect("publish");
        }
    }
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while order.values().map(Vec::len).sum::<usize>() < 6 && Instant::now() < deadline {
        let got = consumer
            .receive_orderly(batch(16), wait(1))
            .await
            .expect("receive");
        if got.is_empty() {
            continue;
        }
        // While unacked, every key with messages in hand is blocked.
        let blocked = consumer
            .receive_orderly(batch(16), wait(0))
            .await
            .expect("receive");
        let keys_in_hand: BTreeSet<_> = got.iter().filter_map(|m| m.sharding_key()).collect();
        assert!(
            blocked
                .iter()
                .all(|m| !keys_in_hand.contains(m.sharding_key().unwrap_or(""))),
            "a key with unacked messages must be blocked"
        );
        for m in got.iter().chain(&blocked) {
            let key = m.sharding_key().expect("sharding key").to_owned();
            order.entry(key).or_default().push(m.body.to_string());
        }
        let handles: Vec<_> = got
            .iter()
            .chain(&blocked)
            .map(|m| m.receipt_handle.clone())
            .collect();
        consumer.ack(&handles).await.expect("ack");
    }
    assert_eq!(order["k1"], ["k1-0", "k1-1", "k1-2"]);
    assert_eq!(order["k2"], ["k2-0", "k2-1", "k2-2"]);
}

/// An ack mixing a good and a bad handle reports the bad one and applies the good one.
pub async fn partial_ack_failure<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let t = topic("partial");
    let consumer = client.consumer(t.clone(), group("GID_partial"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t);
    for i in 0..2 {
        producer
            .publish(&TopicMessage::new(format!("m{i}")).expect("message"))
            .await
            .expect("publish");
    }
    let got = receive_n(&consumer, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    let bogus = mq_client::ReceiptHandle::new("bogus-handle").expect("handle");
    let err = consumer
        .ack(&[got[0].receipt_handle.clone(), bogus.clone()])
        .await
        .expect_err("the bogus handle fails");
    assert!(err.request_error().is_none(), "{err:?}");
    assert_eq!(err.acked(), [got[0].receipt_handle.clone()]);
    assert_eq!(err.unacknowledged().collect::<Vec<_>>(), [&bogus]);
    let failures = err.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].receipt_handle, bogus.as_str());
    assert_eq!(failures[0].code, ErrorCode::ReceiptHandleError);
    sleep::<R>(Duration::from_millis(2_300)).await;
    let again = receive_n(&consumer, 1, Duration::from_secs(3)).await;
    assert_eq!(again.len(), 1, "only the unacked message comes back");
    assert_eq!(again[0].message_id, got[1].message_id);
    assert_eq!(again[0].consumed_times, 2);
    assert_ne!(
        again[0].receipt_handle, got[1].receipt_handle,
        "redelivery has a new handle"
    );
}

/// The stream delivers every message once; acks are batched and all succeed.
pub async fn stream<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let t = topic("stream");
    let consumer = client.consumer(t.clone(), group("GID_stream"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t);
    for i in 0..40 {
        producer
            .publish(&TopicMessage::new(format!("s{i}")).expect("message"))
            .await
            .expect("publish");
    }
    let config = ConsumerConfig::normal()
        .with_wait(wait(1))
        .with_max_in_hand(8)
        .with_ack_flush_delay(Duration::from_millis(20));
    let mut stream = consumer.stream_with_config(config);
    let mut seen = BTreeSet::new();
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 40 && Instant::now() < deadline {
        let next = futures::future::select(
            stream.next(),
            Box::pin(R::default().sleep(Duration::from_secs(2))),
        )
        .await;
        let futures::future::Either::Left((Some(item), _)) = next else {
            continue;
        };
        let delivery = item
            .expect("delivery")
            .into_delivery()
            .expect("a message that decodes");
        assert!(seen.insert(delivery.message_id.clone()), "no duplicates");
        acks.push(delivery.ack());
    }
    assert_eq!(seen.len(), 40, "every message delivered");
    for ack in acks {
        ack.await.expect("ack succeeded");
    }
    stream.shutdown().await;
    sleep::<R>(Duration::from_millis(2_300)).await;
    assert!(
        consumer
            .receive(batch(16), wait(0))
            .await
            .expect("receive")
            .is_empty(),
        "every message was acked"
    );
}

/// A server that silently drops idle keep-alive connections: no error reaches the user.
pub async fn dropped_keep_alive<R: Runtime + Default>(broker: &TestBroker) {
    let proxy = IdleDroppingProxy::start(broker.addr(), Duration::from_millis(100));
    let client = client_builder::<R>(&proxy.endpoint())
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let t = topic("keepalive");
    let consumer = client.consumer(t.clone(), group("GID_keepalive"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t);
    for i in 0..8 {
        producer
            .publish(&TopicMessage::new(format!("k{i}")).expect("message"))
            .await
            .expect("publish over a dropped keep-alive connection");
        sleep::<R>(Duration::from_millis(150)).await;
    }
    let got = receive_n(&consumer, 8, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 8);
    sleep::<R>(Duration::from_millis(150)).await;
    let handles: Vec<_> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    consumer.ack(&handles).await.expect("ack");
    assert!(proxy.connections() > 2, "the proxy did drop connections");
}

/// A server that never answers: the request times out, and publish is not retried.
pub async fn timeout<R: Runtime + Default>(_broker: &TestBroker) {
    let silent = SilentServer::start();
    let client = client_builder::<R>(&silent.endpoint())
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client
        .producer(topic("silent"))
        .publish(&TopicMessage::new("x").expect("message"))
        .await
        .expect_err("no answer");
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        elapsed < Duration::from_millis(900),
        "a publish that may have arrived is not retried ({elapsed:?})"
    );
    // An idempotent consume is retried (3 attempts by default).
    let started = Instant::now();
    let err = client
        .consumer(topic("silent"), group("GID_silent"))
        .receive(batch(1), wait(0))
        .await
        .expect_err("no answer");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "consume was retried"
    );
}

/// Timeouts of `Duration::MAX` (no timeout) work: the request deadline and the long-poll
/// timeout (wait + margin) saturate instead of panicking on overflow.
pub async fn unbounded_timeouts<R: Runtime + Default>(broker: &TestBroker) {
    let client = client_builder::<R>(&broker.endpoint())
        .timeouts(mq_client::TimeoutConfig {
            connect: Duration::MAX,
            request: Duration::MAX,
            long_poll_margin: Duration::MAX,
        })
        .build()
        .expect("client");
    let (t, g) = (topic("unbounded"), group("GID_unbounded"));
    let consumer = client.consumer(t.clone(), g);
    register(&consumer).await;
    client
        .producer(t)
        .publish(&TopicMessage::new("x").expect("message"))
        .await
        .expect("publish");
    let got = consumer.receive(batch(16), wait(1)).await.expect("receive");
    assert_eq!(got.len(), 1);
    consumer
        .ack(got.iter().map(|m| &m.receipt_handle))
        .await
        .expect("ack");
}

/// https through a TLS front whose certificate is signed by a custom CA.
pub async fn https<R: Runtime + Default>(broker: &TestBroker) {
    let front = TlsFront::start(broker.addr());
    let client = client_builder::<R>(&front.endpoint())
        .add_root_certificates_pem(front.ca_pem().as_bytes())
        .expect("CA")
        .build()
        .expect("client");
    let t = topic("tls");
    let consumer = client.consumer(t.clone(), group("GID_tls"));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    client
        .producer(t.clone())
        .publish(&TopicMessage::new("over tls").expect("message"))
        .await
        .expect("publish over https");
    let got = receive_n(&consumer, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].body, "over tls");
    // Without the CA the certificate is refused: no verification bypass.
    let untrusting = client_builder::<R>(&front.endpoint())
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let err = untrusting
        .producer(t)
        .publish(&TopicMessage::new("x").expect("message"))
        .await
        .expect_err("unknown CA");
    assert!(matches!(err, Error::Network(_)), "{err:?}");
}

// ----- the handler loop (`Consumer::handle`) -----

/// A fresh topic with its group registered (so messages published from now on are
/// delivered to it); the consumer and a producer.
async fn registered(client: &Client, prefix: &str) -> (mq_client::Consumer, mq_client::Producer) {
    let t = topic(prefix);
    let consumer = client.consumer(t.clone(), group(&format!("GID_{prefix}")));
    assert!(
        consumer
            .receive(batch(1), wait(0))
            .await
            .expect("register the group")
            .is_empty()
    );
    (consumer, client.producer(t))
}

async fn publish_tagged(producer: &mq_client::Producer, body: &str, tag: Option<&str>) {
    let mut message = TopicMessage::new(body).expect("message");
    if let Some(tag) = tag {
        message = message.with_tag(Tag::new(tag).expect("tag"));
    }
    producer.publish(&message).await.expect("publish");
}

/// Waits (polling every 20 ms, at most `within`) until `done` holds; whether it did.
async fn eventually<R: Runtime + Default>(
    within: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        sleep::<R>(Duration::from_millis(20)).await;
    }
    true
}

/// Receives directly from the broker for `within`; what arrives is not acked.
async fn nothing_comes_back(consumer: &mq_client::Consumer, within: Duration) -> Vec<String> {
    receive_n(consumer, 1, within)
        .await
        .into_iter()
        .map(|m| String::from(m.body))
        .collect()
}

/// Handlers per tag get their messages and the default handler the rest; never more than
/// the limit run at once, and every handled message is acked.
pub async fn handler_routes_by_tag_within_the_limit<R: Runtime + Default>(broker: &TestBroker) {
    let client = client::<R>(broker);
    let (consumer, producer) = registered(&client, "route").await;
    let mut expected = BTreeSet::new();
    for i in 0..4 {
        for (route, tag) in [
            ("A", Some("TagA")),
            ("B", Some("TagB")),
            ("default", Some("TagC")),
            ("default", None),
        ] {
            let body = format!("{route}-{tag:?}-{i}");
            publish_tagged(&producer, &body, tag).await;
            expected.insert((route, body));
        }
    }
    let seen: Arc<Mutex<BTreeSet<(&'static str, String)>>> = Arc::default();
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = |route: &'static str| {
        let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
        move |m: Message| {
            let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                sleep::<R>(Duration::from_millis(100)).await;
                running.fetch_sub(1, SeqCst);
                seen.lock()
                    .expect("lock")
                    .insert((route, String::from(m.body)));
                Ok(())
            }
        }
    };
    let handling = consumer
        .handle(handler("default"))
        .route(Tag::new("TagA").expect("tag"), handler("A"))
        .route(Tag::new("TagB").expect("tag"), handler("B"))
        .with_concurrency(3)
        .spawn();
    let all = eventually::<R>(Duration::from_secs(20), || {
        seen.lock().expect("lock").len() == 16
    })
    .await;
    let summary = handling.shutdown().await.expect("the loop stops");
    assert!(
        all,
        "every message handled: {:?}",
        seen.lock().expect("lock")
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        expected,
        "each message went to its tag's handler"
    );
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 3, "{most} handlers ran at once; the limit is 3");
    assert_eq!(
        most, 3,
        "the loop uses its concurrency (16 messages were waiting)"
    );
    assert_eq!(
        (summary.handled, summary.acked, summary.failed),
        (16, 16, 0),
        "{summary:?}"
    );
    // Acked for good: nothing is delivered again after the invisibility time (2 s).
    sleep::<R>(Duration::from_millis(2_100)).await;
    assert_eq!(
        nothing_comes_back(&consumer, Duration::from_secs(1)).await,
        Vec::<String>::new()
    );
}

/// A handler's `Err`, or a panic (even in the closure itself, before it returns its
/// future), leaves the message for redelivery with a higher `ConsumedTimes`; shutdown lets
/// a running handler finish and its ack reach the broker.
pub async fn handler_redelivers_on_err_and_shuts_down_gracefully<R: Runtime + Default>(
    broker: &TestBroker,
) {
    let client = client::<R>(broker);
    let (consumer, producer) = registered(&client, "hdl").await;
    publish_tagged(&producer, "fail once", None).await;
    let attempts: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let (started_tx, started_rx) = futures::channel::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handling = {
        let (attempts, finished) = (attempts.clone(), finished.clone());
        consumer
            .handle(move |m: Message| {
                let (attempts, started_tx, finished) =
                    (attempts.clone(), started_tx.clone(), finished.clone());
                if m.body == "panic once" && m.consumed_times == 1 {
                    // In the closure, not its future: this stopped the whole loop.
                    attempts
                        .lock()
                        .expect("lock")
                        .push((m.body.to_string(), m.consumed_times));
                    panic!("the handler's closure panics before returning its future");
                }
                async move {
                    attempts
                        .lock()
                        .expect("lock")
                        .push((m.body.to_string(), m.consumed_times));
                    if m.body == "fail once" && m.consumed_times == 1 {
                        return Err("not yet".into());
                    }
                    if m.body == "slow" {
                        if let Some(tx) = started_tx.lock().expect("lock").take() {
                            let _ = tx.send(());
                        }
                        sleep::<R>(Duration::from_millis(600)).await;
                        finished.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(())
                }
            })
            .spawn()
    };
    let redelivered = eventually::<R>(Duration::from_secs(15), || {
        attempts.lock().expect("lock").len() >= 2
    })
    .await;
    assert!(
        redelivered,
        "the failed message comes back: {:?}",
        attempts.lock().expect("lock")
    );
    assert_eq!(
        *attempts.lock().expect("lock"),
        vec![("fail once".to_owned(), 1), ("fail once".to_owned(), 2)],
        "redelivered after Err, with ConsumedTimes one higher"
    );
    publish_tagged(&producer, "panic once", None).await;
    let redelivered = eventually::<R>(Duration::from_secs(15), || {
        attempts.lock().expect("lock").len() >= 4
    })
    .await;
    assert!(
        redelivered,
        "the message whose handler panicked comes back, and the loop goes on: {:?}",
        attempts.lock().expect("lock")
    );
    assert_eq!(
        attempts.lock().expect("lock")[2..],
        [("panic once".to_owned(), 1), ("panic once".to_owned(), 2)],
        "redelivered after the panic"
    );
    publish_tagged(&producer, "slow", None).await;
    started_rx.await.expect("the slow handler starts");
    // Shut down while the slow handler runs: it finishes, and its ack is sent and answered.
    let summary = handling.shutdown().await.expect("the loop stops");
    assert!(
        finished.load(std::sync::atomic::Ordering::SeqCst),
        "the running handler finished"
    );
    assert_eq!(
        (
            summary.handled,
            summary.acked,
            summary.failed,
            summary.ack_failed
        ),
        (3, 3, 2, 0),
        "{summary:?}"
    );
    // Its ack arrived: it is not delivered again after the invisibility time (2 s).
    sleep::<R>(Duration::from_millis(2_100)).await;
    assert_eq!(
        nothing_comes_back(&consumer, Duration::from_secs(1)).await,
        Vec::<String>::new()
    );
}

/// A registered group, its consumer directly and through a proxy that corrupts the
/// `MessageBodyMD5` of messages whose body starts with [`POISON_PREFIX`], and a producer.
struct Poisoning {
    proxy: ChaosProxy,
    consumer: mq_client::Consumer,
    consumer_via_proxy: mq_client::Consumer,
    producer: mq_client::Producer,
}

async fn poisoning<R: Runtime + Default>(broker: &TestBroker, prefix: &str) -> Poisoning {
    let proxy = ChaosProxy::start(
        broker.addr(),
        Schedule::random(0, &[(Fault::PoisonMd5, 1)]).only("GET"),
        Duration::from_secs(5),
    );
    let (consumer, producer) = registered(&client::<R>(broker), prefix).await;
    let via_proxy = client_builder::<R>(&proxy.endpoint())
        .build()
        .expect("client");
    let consumer_via_proxy = via_proxy.consumer(consumer.topic().clone(), consumer.group().clone());
    Poisoning {
        proxy,
        consumer,
        consumer_via_proxy,
        producer,
    }
}

/// Poison messages (here: a `MessageBodyMD5` a proxy corrupts) never reach a handler and do
/// not stop the others. By default they are left (and come back); with
/// [`PoisonPolicy::Ack`](mq_client::PoisonPolicy::Ack) they are acked and gone for good.
pub async fn handler_poison_policy<R: Runtime + Default>(broker: &TestBroker) {
    let Poisoning {
        proxy,
        consumer,
        consumer_via_proxy,
        producer,
    } = poisoning::<R>(broker, "poison").await;
    let poison_body = format!("{POISON_PREFIX} pill");
    publish_tagged(&producer, &poison_body, None).await;
    publish_tagged(&producer, "good", None).await;
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = |handled: Arc<Mutex<Vec<String>>>| {
        move |m: Message| {
            let handled = handled.clone();
            async move {
                handled.lock().expect("lock").push(String::from(m.body));
                Ok(())
            }
        }
    };
    let deliveries_of_poison = || {
        proxy
            .log()
            .iter()
            .filter(|s| s.method == "GET")
            .filter(|s| {
                s.upstream_body
                    .windows(poison_body.len())
                    .any(|w| w == poison_body.as_bytes())
            })
            .count()
    };
    // Default policy: left, so the broker delivers it again after its invisibility time.
    let handling = consumer_via_proxy.handle(record(handled.clone())).spawn();
    let came_back = eventually::<R>(Duration::from_secs(15), || deliveries_of_poison() >= 2).await;
    let summary = handling.shutdown().await.expect("the loop stops");
    assert!(came_back, "a poison message left is delivered again");
    assert_eq!(
        *handled.lock().expect("lock"),
        vec!["good".to_owned()],
        "handlers get only good messages"
    );
    // The redelivery may still be on its way to the loop when it stops (then it is released
    // unseen): at least the first delivery was left.
    assert!(
        summary.poison_left >= 1 && summary.poison_acked == 0,
        "{summary:?}"
    );
    assert_eq!((summary.handled, summary.acked), (1, 1), "{summary:?}");
    // Ack policy: acked (dropped) on its next delivery.
    let acks_before = proxy.log().iter().filter(|s| s.method == "DELETE").count();
    let handling = consumer_via_proxy
        .handle(record(handled.clone()))
        .with_poison_policy(mq_client::PoisonPolicy::Ack)
        .spawn();
    let acked = eventually::<R>(Duration::from_secs(15), || {
        proxy.log().iter().filter(|s| s.method == "DELETE").count() > acks_before
    })
    .await;
    let summary = handling.shutdown().await.expect("the loop stops");
    assert!(acked, "the poison message is acked");
    assert_eq!(
        (summary.poison_acked, summary.handled),
        (1, 0),
        "{summary:?}"
    );
    // Gone for good: the broker does not deliver it again.
    sleep::<R>(Duration::from_millis(2_100)).await;
    assert_eq!(
        nothing_comes_back(&consumer, Duration::from_secs(1)).await,
        Vec::<String>::new()
    );
}

/// A message the client cannot decode (here: a `MessageBodyMD5` a proxy corrupts) does not
/// fail [`Consumer::receive`](mq_client::Consumer::receive): the others of the answer arrive
/// as messages, it arrives apart in `poison` with its receipt handle and reason, and acking
/// that handle drops it for good.
pub async fn receive_keeps_poison_apart<R: Runtime + Default>(broker: &TestBroker) {
    // The proxy lives until the end of the test.
    let p = poisoning::<R>(broker, "rpoison").await;
    let poison_body = format!("{POISON_PREFIX} pill");
    for body in ["good 1", &poison_body, "good 2"] {
        publish_tagged(&p.producer, body, None).await;
    }
    let (mut good, mut poison) = (BTreeSet::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while (good.len() < 2 || poison.is_empty()) && Instant::now() < deadline {
        let received = p
            .consumer_via_proxy
            .receive(batch(16), wait(1))
            .await
            .expect("a poison message does not fail the receive");
        let poison_handles = received.poison.iter().map(|poison| {
            poison
                .receipt_handle
                .clone()
                .expect("the poison message's handle")
        });
        let handles: Vec<_> = received
            .iter()
            .map(|m| m.receipt_handle.clone())
            .chain(poison_handles)
            .collect();
        good.extend(received.iter().map(|m| m.body.to_string()));
        poison.extend(received.poison);
        p.consumer_via_proxy
            .ack(&handles)
            .await
            .expect("messages and poison messages are acked");
    }
    assert_eq!(
        good,
        BTreeSet::from(["good 1".to_owned(), "good 2".to_owned()])
    );
    assert_eq!(poison.len(), 1, "{poison:?}");
    assert!(
        matches!(
            poison[0].reason,
            mq_client::PoisonReason::Md5Mismatch { .. }
        ),
        "{:?}",
        poison[0].reason
    );
    assert!(
        poison[0]
            .raw
            .windows(poison_body.len())
            .any(|w| w == poison_body.as_bytes()),
        "the raw element is kept"
    );
    // Acked, so gone for good: nothing comes back after the invisibility time (2 s).
    sleep::<R>(Duration::from_millis(2_100)).await;
    assert_eq!(
        nothing_comes_back(&p.consumer, Duration::from_secs(1)).await,
        Vec::<String>::new()
    );
}

/// [`spawn_checker_with_config`](mq_client::TransactionProducer::spawn_checker_with_config)
/// polls half messages with the configured batch and long-poll wait (the default checker
/// asks for 16 with a 3 s wait).
pub async fn checker_with_config<R: Runtime + Default>(broker: &TestBroker) {
    let proxy = ChaosProxy::start(broker.addr(), Schedule::pass(), Duration::from_secs(5));
    let client = client_builder::<R>(&proxy.endpoint())
        .build()
        .expect("client");
    let producer = client.transaction_producer(topic("txcfg"), group("GID_txcfg"));
    let config = mq_client::CheckerConfig::default()
        .with_batch(batch(2))
        .with_wait(wait(1));
    let checker =
        producer.spawn_checker_with_config(config, |_m: Message| async { Decision::Unknown });
    let half_polls = || -> Vec<String> {
        proxy
            .log()
            .into_iter()
            .filter(|s| s.method == "GET" && s.target.contains("trans=pop"))
            .map(|s| s.target)
            .collect()
    };
    let polled = eventually::<R>(Duration::from_secs(10), || !half_polls().is_empty()).await;
    checker.shutdown().await.expect("the checker stops");
    assert!(polled, "the checker polls half messages");
    for target in half_polls() {
        assert!(
            target.contains("numOfMessages=2") && target.contains("waitseconds=1"),
            "{target}"
        );
    }

    // Polls that fail (here: a wrong secret, 403) are counted in the report: a checker
    // that can check nothing says so (fresh-eyes finding: its report was all zeros).
    let refused = client_builder::<R>(&broker.endpoint())
        .credentials(mq_client::Credentials::new(
            crate::TEST_AK,
            "not-the-secret",
        ))
        .build()
        .expect("client");
    let checker = refused
        .transaction_producer(topic("txcfg_refused"), group("GID_txcfg_refused"))
        .spawn_checker(|_m: Message| async { Decision::Commit });
    // ... and the handler loop's summary; both while they run, with the error's code.
    let handling = refused
        .consumer(topic("txcfg_refused"), group("GID_txcfg_refused"))
        .handle(|_m| async { Ok(()) })
        .spawn();
    let seen = eventually::<R>(Duration::from_secs(10), || {
        checker.report().receive_errors >= 1 && handling.summary().receive_errors >= 1
    })
    .await;
    let (live_report, live_summary) = (checker.report(), handling.summary());
    assert!(seen, "{live_report:?} {live_summary:?}");
    for last in [
        &live_report.last_receive_error,
        &live_summary.last_receive_error,
    ] {
        let last = last.as_deref().unwrap_or_default();
        assert!(last.contains("SignatureDoesNotMatch"), "{last}");
    }
    let report = checker.shutdown().await.expect("the checker stops");
    assert!(
        report.receive_errors >= live_report.receive_errors,
        "{report:?}"
    );
    assert_eq!(report.checked, 0, "{report:?}");
    assert_eq!(report.last_receive_error, live_report.last_receive_error);
    let summary = handling.shutdown().await.expect("the handler stops");
    assert!(
        summary.receive_errors >= live_summary.receive_errors,
        "{summary:?}"
    );
    assert_eq!(summary.handled, 0, "{summary:?}");
}

/// The handler loop with an orderly config keeps each partition in order: one message of a
/// sharding key at a time, in delivery order, the partitions in parallel; a failed message
/// has its partition delivered again from it, in order (fresh-eyes finding: the loop ran the
/// messages of a batch at once, so one key's messages were handled together and out of
/// order).
pub async fn handler_orderly<R: Runtime + Default>(broker: &TestBroker) {
    #[derive(Default)]
    struct Seen {
        running: BTreeSet<String>,
        overlaps: Vec<String>,
        attempts: BTreeMap<String, Vec<String>>,
        handled: BTreeMap<String, Vec<String>>,
        failed_once: bool,
    }
    let client = client::<R>(broker);
    let t = topic("horder");
    let consumer = client.consumer(t.clone(), group("GID_horder"));
    consumer
        .receive_orderly(batch(1), wait(0))
        .await
        .expect("register");
    let producer = client.producer(t);
    for i in 0..5 {
        for key in ["k1", "k2"] {
            let msg = TopicMessage::new(format!("{key}-{i}"))
                .and_then(|m| m.with_sharding_key(key))
                .expect("message");
            producer.publish(&msg).await.expect("publish");
        }
    }
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    let config = mq_client::ConsumerConfig::orderly()
        .with_batch(batch(16))
        .with_wait(wait(1))
        .with_max_in_hand(16);
    let handling = consumer
        .handle(move |m: Message| {
            let seen = record.clone();
            async move {
                let key = m.sharding_key().unwrap_or_default().to_owned();
                let body = m.body.to_string();
                {
                    let mut s = seen.lock().expect("lock");
                    if !s.running.insert(key.clone()) {
                        s.overlaps.push(body.clone());
                    }
                    s.attempts
                        .entry(key.clone())
                        .or_default()
                        .push(body.clone());
                }
                sleep::<R>(Duration::from_millis(20)).await;
                let mut s = seen.lock().expect("lock");
                s.running.remove(&key);
                if body == "k1-2" && !s.failed_once {
                    s.failed_once = true;
                    return Err("fails once".into());
                }
                s.handled.entry(key).or_default().push(body);
                Ok(())
            }
        })
        .with_concurrency(4)
        .with_config(config)
        .spawn();
    let done = eventually::<R>(Duration::from_secs(30), || {
        let s = seen.lock().expect("lock");
        s.handled.values().map(Vec::len).sum::<usize>() >= 10
    })
    .await;
    let summary = handling.shutdown().await.expect("the handler stops");
    let s = seen.lock().expect("lock");
    assert!(done, "{summary:?} {:?}", s.handled);
    assert!(
        s.overlaps.is_empty(),
        "one key's messages ran at once: {:?}",
        s.overlaps
    );
    for key in ["k1", "k2"] {
        let expected: Vec<String> = (0..5).map(|i| format!("{key}-{i}")).collect();
        assert_eq!(s.handled[key], expected, "{key} handled in order");
    }
    assert_eq!(
        s.attempts["k1"],
        ["k1-0", "k1-1", "k1-2", "k1-2", "k1-3", "k1-4"],
        "after the failure the partition comes again from the failed message"
    );
    assert_eq!((summary.failed, summary.handled), (1, 10), "{summary:?}");
}

/// Publishes `n` messages `{key}-{i}` with sharding key `key` to `topic`, registering
/// `group` as an orderly consumer first; gives the consumer.
async fn orderly_backlog<R: Runtime + Default>(
    broker: &TestBroker,
    name: &str,
    key: &str,
    n: usize,
) -> mq_client::Consumer {
    let client = client::<R>(broker);
    let t = topic(name);
    let consumer = client.consumer(t.clone(), group(&format!("GID_{name}")));
    consumer
        .receive_orderly(batch(1), wait(0))
        .await
        .expect("register");
    let producer = client.producer(t);
    for i in 0..n {
        let msg = TopicMessage::new(format!("{key}-{i}"))
            .and_then(|m| m.with_sharding_key(key))
            .expect("message");
        producer.publish(&msg).await.expect("publish");
    }
    consumer
}

/// Orderly, one handler at a time: when a message fails, the rest of its partition
/// received with it — those still in the stream too, not only those waiting in the loop —
/// is released, so the partition comes again from the failed message (review finding: with
/// a concurrency of 1 the later messages were still in the stream, were handled and acked,
/// and the failed one came back after them).
pub async fn handler_orderly_failure_stops_its_partition<R: Runtime + Default>(
    broker: &TestBroker,
) {
    let consumer = orderly_backlog::<R>(broker, "hostop", "k1", 5).await;
    let attempts: Arc<Mutex<Vec<String>>> = Arc::default();
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let (a, h) = (attempts.clone(), handled.clone());
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let config = mq_client::ConsumerConfig::orderly()
        .with_batch(batch(16))
        .with_wait(wait(1));
    let handling = consumer
        .handle(move |m: Message| {
            let (a, h, f) = (a.clone(), h.clone(), failed_once.clone());
            async move {
                let body = m.body.to_string();
                a.lock().expect("lock").push(body.clone());
                sleep::<R>(Duration::from_millis(20)).await;
                if body == "k1-1" && !f.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return Err("fails once".into());
                }
                h.lock().expect("lock").push(body);
                Ok(())
            }
        })
        .with_concurrency(1)
        .with_config(config)
        .spawn();
    let done = eventually::<R>(Duration::from_secs(20), || {
        handled.lock().expect("lock").len() >= 5
    })
    .await;
    let summary = handling.shutdown().await.expect("the handler stops");
    let (attempts, handled) = (
        attempts.lock().expect("lock").clone(),
        handled.lock().expect("lock").clone(),
    );
    assert!(done, "{summary:?} {attempts:?}");
    assert_eq!(
        handled,
        ["k1-0", "k1-1", "k1-2", "k1-3", "k1-4"],
        "handled in order: {attempts:?}"
    );
    assert_eq!(
        attempts,
        ["k1-0", "k1-1", "k1-1", "k1-2", "k1-3", "k1-4"],
        "after the failure the partition comes again from the failed message"
    );
    assert_eq!((summary.failed, summary.acked), (1, 5), "{summary:?}");
}

/// Orderly, each handler well within the invisibility (600 ms of the test broker's 2 s)
/// but a partition's batch waiting in the loop longer than that: messages whose lease ran
/// out before their turn are released with their partition's later ones, not handled and
/// then refused one after another (review finding: 25 handled, 2 acked in 15 s; the copies
/// delivered again queued behind the stale ones, which ran first and failed their acks).
pub async fn handler_orderly_releases_what_waited_past_its_invisibility<R: Runtime + Default>(
    broker: &TestBroker,
) {
    let consumer = orderly_backlog::<R>(broker, "hoexp", "k1", 6).await;
    let attempts: Arc<Mutex<Vec<String>>> = Arc::default();
    let a = attempts.clone();
    let config = mq_client::ConsumerConfig::orderly().with_wait(wait(1));
    let handling = consumer
        .handle(move |m: Message| {
            let a = a.clone();
            async move {
                a.lock()
                    .expect("lock")
                    .push(format!("{}#{}", m.body, m.consumed_times));
                sleep::<R>(Duration::from_millis(600)).await;
                Ok(())
            }
        })
        .with_concurrency(4)
        .with_config(config)
        .spawn();
    let done = eventually::<R>(Duration::from_secs(20), || handling.summary().acked >= 6).await;
    let summary = handling.shutdown().await.expect("the handler stops");
    let attempts = attempts.lock().expect("lock").clone();
    assert!(done, "{summary:?} {attempts:?}");
    assert_eq!(summary.acked, 6, "{summary:?} {attempts:?}");
    // At most the message running when its lease ran out is handled in vain each round
    // (its ack cannot be sent): never a queue of stale copies.
    assert!(summary.ack_failed <= 2, "{summary:?} {attempts:?}");
    let bodies: Vec<&str> = attempts
        .iter()
        .map(|a| a.split('#').next().unwrap_or_default())
        .collect();
    let mut sorted = bodies.clone();
    sorted.sort_unstable();
    assert_eq!(
        bodies, sorted,
        "handled in order, again from where it stopped: {attempts:?}"
    );
}

/// Normal consumption with more in hand than handlers run: a message whose invisibility ran
/// out while it waited for a free handler is released, not handled in vain (its ack could
/// not be sent, and its copy delivered again would queue behind the stale ones: the same
/// fault as the orderly loop's, found there by review).
pub async fn handler_releases_what_waited_past_its_invisibility<R: Runtime + Default>(
    broker: &TestBroker,
) {
    let client = client::<R>(broker);
    let t = topic("hnexp");
    let consumer = client.consumer(t.clone(), group("GID_hnexp"));
    register(&consumer).await;
    let producer = client.producer(t);
    for i in 0..6 {
        let message = TopicMessage::new(format!("m{i}")).expect("message");
        producer.publish(&message).await.expect("publish");
    }
    let config = mq_client::ConsumerConfig::normal()
        .with_batch(batch(16))
        .with_wait(wait(1))
        .with_max_in_hand(6);
    let handling = consumer
        .handle(move |_m: Message| async move {
            sleep::<R>(Duration::from_millis(600)).await;
            Ok(())
        })
        .with_concurrency(1)
        .with_config(config)
        .spawn();
    let done = eventually::<R>(Duration::from_secs(20), || handling.summary().acked >= 6).await;
    let summary = handling.shutdown().await.expect("the handler stops");
    assert!(done, "{summary:?}");
    // With a 2 s invisibility and 600 ms per message, about one message a round is handled
    // in vain (the one running when the lease runs out, and one started in the last second
    // of it: the lease is known to the `Date` header's whole second), never the stale rest
    // of the batch round after round (32 of 34 acks failed before).
    assert!(summary.ack_failed <= 6, "{summary:?}");
}

/// Expands to one `#[test]` per scenario, each run by `$block_on` on runtime `$rt`.
#[macro_export]
macro_rules! scenario_tests {
    ($rt:ty, $block_on:expr) => {
        $crate::scenario_tests!(@each $rt, $block_on,
            publish_consume_ack, tag_filter, transactional_with_checker, delayed, orderly,
            handler_orderly, handler_orderly_failure_stops_its_partition,
            handler_orderly_releases_what_waited_past_its_invisibility,
            handler_releases_what_waited_past_its_invisibility,
            partial_ack_failure, stream, dropped_keep_alive, timeout, unbounded_timeouts, https,
            handler_routes_by_tag_within_the_limit,
            handler_redelivers_on_err_and_shuts_down_gracefully, handler_poison_policy,
            receive_keeps_poison_apart, checker_with_config);
    };
    (@each $rt:ty, $block_on:expr, $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let broker = $crate::TestBroker::start();
                ($block_on)($crate::scenarios::$name::<$rt>(&broker));
            }
        )*
    };
}
