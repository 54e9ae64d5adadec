//! The client scenario suite, written once over [`Runtime`] and run on every runtime crate
//! (tokio, async-std, smol) against the real broker on 127.0.0.1.
//!
//! Each scenario panics with a message when the behaviour a user relies on is missing.

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
/// publish handle, the checker commits `a=1`, commits `a=2` on its second check, rolls back
/// `a=3`; a consumer sees exactly 0, 1 and 2.
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
    producer
        .commit(&first_handle.expect("handle of message 0"))
        .await
        .expect("commit with the publish handle");
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
        async move {
            match (a.as_str(), n) {
                ("1", _) => Decision::Commit,
                ("2", 1) => Decision::Unknown,
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
    assert!(
        checks.get("2").copied().unwrap_or(0) >= 2,
        "a=2 needed a second check"
    );
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(report.rolled_back, 1, "{report:?}");
    assert!(report.unknown >= 1, "{report:?}");
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
            order.entry(key).or_default().push(m.body.clone());
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
        let delivery = item.expect("delivery");
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

/// Expands to one `#[test]` per scenario, each run by `$block_on` on runtime `$rt`.
#[macro_export]
macro_rules! scenario_tests {
    ($rt:ty, $block_on:expr) => {
        $crate::scenario_tests!(@each $rt, $block_on,
            publish_consume_ack, tag_filter, transactional_with_checker, delayed, orderly,
            partial_ack_failure, stream, dropped_keep_alive, timeout, https);
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
