//! Expiry is the server's: a client whose clock is off by seconds or minutes (the service
//! accepts a `Date` up to 15 minutes away) still sends every ack and transaction decision
//! while the server holds the handle.
//!
//! The broker runs with its clock shifted ([`mq_broker::ServerConfig::clock_offset_ms`]):
//! its `NextConsumeTime`, its `Date` header and its 15-minute window all follow the shifted
//! clock, exactly as a real server whose clock differs from the client's. A broker 30 s
//! behind is a client 30 s ahead. Invisibility is 2 s and transaction checks come every
//! second, so a client that compared `NextConsumeTime` with its own wall clock would judge
//! every handle expired (ahead) or valid for too long (behind).

use futures::StreamExt;
use mq_broker::{Credential, ServerConfig};
use mq_tests::{
    TEST_AK, TEST_SK, TestBroker, block_on, client_builder, commit_through_the_checker, unique,
};
use mq_tokio::{
    BatchSize, Client, ConsumerConfig, GroupId, TokioRuntime, TopicMessage, TopicName, WaitSeconds,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Broker clock minus client clock: the client 30 s and 10 min ahead, then behind.
const SKEWS_MS: [i64; 4] = [-30_000, -600_000, 30_000, 600_000];

fn skewed_broker(offset_ms: i64) -> TestBroker {
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: vec![Credential::new(TEST_AK, TEST_SK)],
        clock_offset_ms: offset_ms,
        ..ServerConfig::default()
    };
    config.core.invisibility_ms = 2_000;
    config.core.order_invisibility_ms = 2_000;
    config.core.half_check_interval_ms = 1_000;
    TestBroker::start_with(config)
}

fn client(broker: &TestBroker) -> Client {
    client_builder::<TokioRuntime>(&broker.endpoint())
        .build()
        .expect("client")
}

fn topic() -> TopicName {
    TopicName::new(unique("skew")).expect("topic")
}

fn group(prefix: &str) -> GroupId {
    GroupId::new(unique(prefix)).expect("group")
}

fn wait(s: u8) -> WaitSeconds {
    WaitSeconds::new(s).expect("wait")
}

/// The broker's acked counter.
fn acked(broker: &TestBroker) -> u64 {
    broker.stats().acked
}

/// Publishes one message (with a sharding key when `key` is set) and acks it through a
/// stream of `config`; the ack must reach the broker and succeed.
async fn stream_ack(broker: &TestBroker, config: ConsumerConfig, key: Option<&str>) {
    let client = client(broker);
    let t = topic();
    let consumer = client.consumer(t.clone(), group("GID_skew"));
    let mut stream = consumer.stream_with_config(config.with_wait(wait(1)));
    let mut message = TopicMessage::new("skewed").expect("message");
    if let Some(key) = key {
        message = message.with_sharding_key(key).expect("sharding key");
    }
    // The stream's first poll registers the group; publish once it is waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.producer(t).publish(&message).await.expect("publish");
    let before = acked(broker);
    let delivery = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
        .expect("delivery")
        .into_delivery()
        .expect("a message that decodes");
    delivery
        .ack()
        .await
        .expect("the ack reaches the server and succeeds");
    assert_eq!(acked(broker), before + 1, "the broker took the ack");
    stream.shutdown().await;
}

#[test]
fn stream_acks_reach_the_server_whatever_the_client_clock() {
    block_on(async {
        for skew in SKEWS_MS {
            let broker = skewed_broker(skew);
            stream_ack(&broker, ConsumerConfig::normal(), None).await;
        }
    });
}

#[test]
fn orderly_stream_acks_reach_the_server_whatever_the_client_clock() {
    block_on(async {
        for skew in SKEWS_MS {
            let broker = skewed_broker(skew);
            stream_ack(&broker, ConsumerConfig::orderly(), Some("key-1")).await;
        }
    });
}

#[test]
fn checker_decisions_reach_the_server_whatever_the_client_clock() {
    block_on(async {
        // One broker per skew, all at once: each waits out the 10 s check immunity.
        let runs = SKEWS_MS.map(|skew| async move {
            let broker = skewed_broker(skew);
            let client = client(&broker);
            let t = topic();
            let consumer = client.consumer(t.clone(), group("GID_skew_after"));
            assert!(
                consumer
                    .receive(BatchSize::MAX, wait(0))
                    .await
                    .expect("register")
                    .is_empty()
            );
            let tx = client.transaction_producer(t, group("GID_skew_tx"));
            let (delivered, report) = commit_through_the_checker(&tx, &consumer).await;
            assert_eq!(delivered.len(), 1, "skew {skew} ms: committed: {report:?}");
            assert_eq!(report.committed, 1, "skew {skew} ms: {report:?}");
            assert_eq!(report.failed, 0, "skew {skew} ms: {report:?}");
        });
        futures::future::join_all(runs).await;
    });
}

#[test]
fn the_broker_answers_with_its_own_clock() {
    // The `Date` the broker sends comes from the clock its `NextConsumeTime` comes from:
    // clients derive a handle's remaining validity from the two.
    block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let broker = skewed_broker(-600_000);
        let mut stream = tokio::net::TcpStream::connect(broker.addr())
            .await
            .expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        let date = answer
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("date"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .expect("a Date header");
        let server = mq_client::mq_proto::sign::parse_http_date(&date).expect("an HTTP date");
        let behind = std::time::SystemTime::now()
            .duration_since(server)
            .expect("the broker's clock is behind");
        assert!(
            (Duration::from_secs(595)..=Duration::from_secs(605)).contains(&behind),
            "the broker's Date is 10 min behind: {behind:?}"
        );
    });
}
