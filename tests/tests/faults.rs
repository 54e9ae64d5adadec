//! The tokio client through a fault-injecting proxy ([`ChaosProxy`]) in front of the real
//! broker (issue 9): retries, timeouts and errors behave as documented in `mq-client` and
//! `mq_proto::machine::retry`, redirects are not followed, and the consumer stream loses no
//! message and acks none twice while resets, stalls, truncated bodies, 5xx answers and
//! dropped keep-alive connections hit its receives and acks.
//!
//! Documented policy under test (`RetryConfig::default()`: 3 attempts):
//! * consume and ack are idempotent: transient failures (connection lost, timeout, 5xx) are
//!   retried up to the attempt limit;
//! * publish is at-most-once by default: it is retried only when the request provably was
//!   not sent or was refused by a throttling answer (nothing stored), so a reset, a timeout
//!   or another 5xx after sending is reported, even when the broker
//!   did store the message; `with_publish_at_least_once(true)` retries them, at the price of
//!   a possible duplicate;
//! * a pooled keep-alive connection the server dropped is replaced transparently;
//! * a 3xx answer is an error (`DecodeError::BadStatus`): redirects are never followed.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mq_client::mq_proto::client::DecodeError;
use mq_tests::chaos::{ChaosProxy, Fault, Schedule, Seen};
use mq_tests::faults::Background;
use mq_tests::{TestBroker, block_on, client_builder, unique};
use mq_tokio::{
    BatchSize, Client, ConsumerConfig, Error, ErrorCode, GroupId, RetryConfig, StreamItem,
    TimeoutConfig, TokioRuntime, TopicMessage, TopicName, WaitSeconds,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The broker's own fault injection (`--faults`, `POST /admin/faults`) seen by the client:
/// the protocol's real error documents are retried where the policy says so — two 500s on
/// consume and two `Throttling` refusals of a publish are retried away; a rule of more
/// failures than attempts surfaces the service's code and status; a closed connection on
/// consume is retried too.
#[test]
fn injected_service_errors_are_retried_as_documented() {
    let broker = TestBroker::start_with(mq_broker::ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        credentials: vec![mq_broker::Credential::new(
            mq_tests::TEST_AK,
            mq_tests::TEST_SK,
        )],
        faults: true,
        ..mq_broker::ServerConfig::default()
    });
    let c = client(&broker.endpoint(), Duration::from_secs(5), false);
    let (t, g) = (topic("injected"), group("GID_injected"));
    let consumer = c.consumer(t.clone(), g);
    let producer = c.producer(t.clone());
    let add = |rule: &str| {
        let (status, json) = broker.admin("POST", &format!("/admin/faults?{rule}"));
        assert_eq!(status, 200, "{rule}: {json}");
    };
    block_on(async {
        consumer.receive(one(), no_wait()).await.expect("register");
        add("operation=consume&error=InternalError&count=2");
        consumer
            .receive(one(), no_wait())
            .await
            .expect("two 500s are retried away (3 attempts)");
        add("operation=publish&error=Throttling&count=2");
        producer
            .publish(&TopicMessage::new("throttled").expect("message"))
            .await
            .expect("a throttled publish was refused, not stored: retried");
        assert_eq!(stored(&broker, &t), 1, "stored once");
        add("operation=consume&error=Throttling&count=5");
        let err = consumer
            .receive(one(), no_wait())
            .await
            .expect_err("more failures than attempts");
        assert_eq!(err.service_code(), Some(&ErrorCode::Throttling), "{err:?}");
        assert_eq!(service_status(&err), Some(503));
        assert!(err.is_retryable());
        broker.admin("DELETE", "/admin/faults");
        add("operation=consume&reset=true&count=1");
        let got = consumer
            .receive(one(), no_wait())
            .await
            .expect("a closed connection on consume is retried");
        assert_eq!(got.len(), 1);
    });
    let (_, rules) = broker.admin("GET", "/admin/faults");
    assert_eq!(rules["rules"].as_array().map(Vec::len), Some(0), "{rules}");
}

/// Seed of the random fault schedule of the stream test.
const SEED: u64 = 0x5EED_C4A0_5000_0009;

fn topic(prefix: &str) -> TopicName {
    TopicName::new(unique(prefix)).expect("topic")
}

fn group(prefix: &str) -> GroupId {
    GroupId::new(unique(prefix)).expect("group")
}

fn one() -> BatchSize {
    BatchSize::new(1).expect("batch")
}

fn no_wait() -> WaitSeconds {
    WaitSeconds::new(0).expect("wait")
}

fn client(endpoint: &str, request_timeout: Duration, at_least_once: bool) -> Client {
    client_builder::<TokioRuntime>(endpoint)
        .timeouts(TimeoutConfig {
            connect: Duration::from_secs(1),
            request: request_timeout,
            long_poll_margin: Duration::from_secs(1),
        })
        .retry(
            RetryConfig::default()
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(200))
                .with_publish_at_least_once(at_least_once),
        )
        .build()
        .expect("client")
}

/// Messages the broker stored on `topic` so far.
fn stored(broker: &TestBroker, topic: &TopicName) -> u64 {
    broker
        .stats()
        .topics
        .iter()
        .find(|t| t.topic == topic.as_str())
        .map_or(0, |t| t.published)
}

fn faults(proxy: &ChaosProxy) -> Vec<(String, Fault)> {
    proxy
        .log()
        .into_iter()
        .map(|s| (s.method, s.fault))
        .collect()
}

fn service_status(e: &Error) -> Option<u16> {
    match e {
        Error::Service(s) => Some(s.status),
        _ => None,
    }
}

const STALL: Duration = Duration::from_millis(2_500);

#[test]
fn idempotent_requests_are_retried_up_to_the_attempt_limit() {
    let broker = TestBroker::start();
    block_on(async {
        let t = topic("retry");
        let g = group("GID_retry");
        // Two 502s, then the broker: the third attempt answers.
        let proxy = ChaosProxy::start(
            broker.addr(),
            Schedule::scripted([Fault::Gateway502, Fault::Gateway502]),
            STALL,
        );
        let c = client(&proxy.endpoint(), Duration::from_secs(1), false);
        let got = c
            .consumer(t.clone(), g.clone())
            .receive(one(), no_wait())
            .await
            .expect("third attempt succeeds");
        assert!(got.is_empty());
        let log = proxy.log();
        assert_eq!(log.len(), 3, "{:?}", faults(&proxy));
        assert_eq!(
            log[2].upstream_status,
            Some(404),
            "MessageNotExist from the broker"
        );

        // Three 502s: the error of the last attempt is reported, and it says "retryable".
        let proxy = ChaosProxy::start(
            broker.addr(),
            Schedule::scripted([Fault::Gateway502; 3]),
            STALL,
        );
        let c = client(&proxy.endpoint(), Duration::from_secs(1), false);
        let e = c
            .consumer(t.clone(), g.clone())
            .receive(one(), no_wait())
            .await
            .expect_err("every attempt fails");
        assert_eq!(service_status(&e), Some(502), "{e:?}");
        assert_eq!(e.service_code(), Some(&ErrorCode::InternalError), "{e:?}");
        assert!(e.is_retryable());
        assert_eq!(proxy.log().len(), 3);

        // A reset after the broker answered, a truncated body, a 500 from the broker's side:
        // all retried for an ack, which the broker then settles once.
        let producer =
            client(&broker.endpoint(), Duration::from_secs(1), false).producer(t.clone());
        producer
            .publish(&TopicMessage::new("ack me").expect("message"))
            .await
            .expect("publish");
        let direct = client(&broker.endpoint(), Duration::from_secs(1), false);
        let m = direct
            .consumer(t.clone(), g.clone())
            .receive(one(), no_wait())
            .await
            .expect("receive")
            .pop()
            .expect("a message");
        let proxy = ChaosProxy::start(
            broker.addr(),
            Schedule::scripted([Fault::ResetBeforeForward, Fault::TruncateBody]),
            STALL,
        );
        let c = client(&proxy.endpoint(), Duration::from_secs(1), false);
        c.consumer(t.clone(), g.clone())
            .ack(std::slice::from_ref(&m.receipt_handle))
            .await
            .expect("ack through the faults");
        let log = proxy.log();
        assert_eq!(log.len(), 3, "{:?}", faults(&proxy));
        assert_eq!(
            log.iter()
                .filter_map(|s| s.upstream_status)
                .collect::<Vec<_>>(),
            [204, 404],
            "settled by the truncated attempt, reported as gone to the resend"
        );
        let g_stats = broker
            .stats()
            .topics
            .into_iter()
            .find(|x| x.topic == t.as_str())
            .expect("topic")
            .groups
            .into_iter()
            .find(|x| x.group == g.as_str())
            .expect("group");
        assert_eq!((g_stats.acked, g_stats.in_flight), (1, 0));
    });
}

#[test]
fn publish_is_at_most_once_unless_asked_otherwise() {
    let broker = TestBroker::start();
    block_on(async {
        // Default: a publish that may have reached the broker is not resent; the error says
        // so, and the broker may or may not have stored the message.
        for (fault, stored_after) in [
            (Fault::ResetBeforeForward, 0),
            (Fault::ResetAfterForward, 1),
            (Fault::TruncateBody, 1),
            (Fault::Gateway502, 0),
            (Fault::Internal500AfterForward, 1),
        ] {
            let t = topic("amo");
            let proxy = ChaosProxy::start(broker.addr(), Schedule::scripted([fault]), STALL);
            let c = client(&proxy.endpoint(), Duration::from_secs(1), false);
            let e = c
                .producer(t.clone())
                .publish(&TopicMessage::new("once").expect("message"))
                .await
                .expect_err("not resent");
            match fault {
                Fault::Gateway502 => assert_eq!(service_status(&e), Some(502), "{e:?}"),
                Fault::Internal500AfterForward => {
                    assert_eq!(e.service_code(), Some(&ErrorCode::InternalError), "{e:?}")
                }
                _ => assert!(matches!(e, Error::Network(_)), "{fault:?}: {e:?}"),
            }
            assert!(e.is_retryable(), "{fault:?}: {e:?}");
            assert_eq!(proxy.log().len(), 1, "{fault:?}: one attempt");
            assert_eq!(stored(&broker, &t), stored_after, "{fault:?}");
        }

        // A stalled answer: a timeout after the request timeout, not resent.
        let t = topic("amo_stall");
        let proxy = ChaosProxy::start(broker.addr(), Schedule::scripted([Fault::Stall]), STALL);
        let c = client(&proxy.endpoint(), Duration::from_millis(400), false);
        let started = Instant::now();
        let e = c
            .producer(t.clone())
            .publish(&TopicMessage::new("stalled").expect("message"))
            .await
            .expect_err("timeout");
        let took = started.elapsed();
        assert!(
            matches!(e, Error::Timeout { after } if after == Duration::from_millis(400)),
            "{e:?}"
        );
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1_500),
            "{took:?}"
        );
        assert_eq!(proxy.log().len(), 1);
        assert_eq!(stored(&broker, &t), 1, "the broker did store it");

        // A stalled idempotent consume is retried: three timeouts.
        let proxy = ChaosProxy::start(broker.addr(), Schedule::scripted([Fault::Stall; 3]), STALL);
        let c = client(&proxy.endpoint(), Duration::from_millis(400), false);
        let started = Instant::now();
        let e = c
            .consumer(t.clone(), group("GID_stall"))
            .receive(one(), no_wait())
            .await
            .expect_err("timeouts");
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(1_200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(proxy.log().len(), 3);

        // At-least-once: resent, and the broker may then hold a duplicate.
        for (fault, stored_after) in [
            (Fault::ResetAfterForward, 2),
            (Fault::Gateway502, 1),
            (Fault::Internal500AfterForward, 2),
            (Fault::ResetBeforeForward, 1),
        ] {
            let t = topic("alo");
            let proxy = ChaosProxy::start(broker.addr(), Schedule::scripted([fault]), STALL);
            let c = client(&proxy.endpoint(), Duration::from_secs(1), true);
            c.producer(t.clone())
                .publish(&TopicMessage::new("at least once").expect("message"))
                .await
                .expect("resent");
            assert_eq!(proxy.log().len(), 2, "{fault:?}");
            assert_eq!(stored(&broker, &t), stored_after, "{fault:?}");
        }
    });
}

#[test]
fn dropped_keep_alive_connections_are_replaced_transparently() {
    let broker = TestBroker::start();
    block_on(async {
        let t = topic("ka");
        let g = group("GID_ka");
        let schedule = Schedule::scripted([Fault::DropKeepAlive; 4]);
        let proxy = ChaosProxy::start(broker.addr(), schedule, STALL);
        let c = client(&proxy.endpoint(), Duration::from_secs(1), false);
        let consumer = c.consumer(t.clone(), g);
        // Back to back: the next request may be written to the connection just closed; an
        // idempotent request is then resent on a new connection.
        for _ in 0..3 {
            consumer
                .receive(one(), no_wait())
                .await
                .expect("consume after a dropped connection");
        }
        // A publish is not resent after a loss on a reused connection, but a connection
        // closed while idle is never reused.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let producer = c.producer(t.clone());
        for i in 0..2 {
            producer
                .publish(&TopicMessage::new(format!("after drop {i}")).expect("message"))
                .await
                .expect("publish after a dropped connection");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(stored(&broker, &t), 2);
        assert!(
            proxy.connections() >= 5,
            "{} connections",
            proxy.connections()
        );
        assert_eq!(proxy.count(Fault::DropKeepAlive), 4);
    });
}

/// A server that answers every request with `status` and a `Location` to `to`.
fn redirector(status: u16, to: String, seen: Arc<AtomicUsize>) -> Background {
    Background::spawn(move |listener| async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let (to, seen) = (to.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    buf.drain(..end + 4 + len);
                    seen.fetch_add(1, Ordering::Relaxed);
                    let answer = format!(
                        "HTTP/1.1 {status} Moved\r\nlocation: {to}/topics/T/messages\r\ncontent-length: 0\r\n\r\n"
                    );
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

#[test]
fn redirects_are_errors_and_never_followed() {
    let broker = TestBroker::start();
    block_on(async {
        for status in [301u16, 302, 303, 307, 308] {
            let seen = Arc::new(AtomicUsize::new(0));
            let server = redirector(status, broker.endpoint(), seen.clone());
            let c = client(
                &format!("http://{}", server.addr()),
                Duration::from_secs(1),
                true,
            );
            let t = topic("redirect");
            let e = c
                .producer(t.clone())
                .publish(&TopicMessage::new("x").expect("message"))
                .await
                .expect_err("a redirect is an error");
            assert!(
                matches!(e, Error::Response(DecodeError::BadStatus(s)) if s == status),
                "{status}: {e:?}"
            );
            assert!(!e.is_retryable());
            let e = c
                .consumer(t.clone(), group("GID_redirect"))
                .receive(one(), no_wait())
                .await
                .expect_err("a redirect is an error");
            assert!(
                matches!(e, Error::Response(DecodeError::BadStatus(s)) if s == status),
                "{status}: {e:?}"
            );
            // One request each: not retried, and nothing went to the Location.
            assert_eq!(seen.load(Ordering::Relaxed), 2, "{status}");
            assert!(
                broker.stats().topics.iter().all(|x| x.topic != t.as_str()),
                "{status}: the broker was contacted"
            );
        }
    });
}

/// Whether `handle` was settled by the broker in this (forwarded, answered) ack request.
fn settled_by(seen: &Seen, handle: &str) -> bool {
    match seen.upstream_status {
        Some(204) => true,
        Some(404) => !String::from_utf8_lossy(&seen.upstream_body).contains(handle),
        _ => false,
    }
}

fn handles_in(seen: &Seen) -> Vec<String> {
    let body = String::from_utf8_lossy(&seen.body);
    body.split("<ReceiptHandle>")
        .skip(1)
        .filter_map(|s| s.split("</ReceiptHandle>").next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn consumer_stream_under_chaos_loses_nothing_and_acks_nothing_twice() {
    const N: usize = 150;
    // Invisibility 2 s: messages whose delivery or ack was lost come back quickly.
    let broker = TestBroker::start();
    block_on(async {
        let t = topic("chaos");
        let g = group("GID_chaos");
        let direct = client(&broker.endpoint(), Duration::from_secs(2), false);
        assert!(
            direct
                .consumer(t.clone(), g.clone())
                .receive(one(), no_wait())
                .await
                .expect("register")
                .is_empty()
        );
        let producer = direct.producer(t.clone());
        let mut bodies = HashSet::new();
        for i in 0..N {
            let body = format!("chaos-{i}");
            producer
                .publish(&TopicMessage::new(body.clone()).expect("message"))
                .await
                .expect("publish");
            bodies.insert(body);
        }

        // Every fault at least once on receives and on acks, then a seeded mix.
        let faulty = [
            Fault::ResetBeforeForward,
            Fault::ResetAfterForward,
            Fault::Stall,
            Fault::TruncateBody,
            Fault::Gateway502,
            Fault::Internal500AfterForward,
            Fault::DropKeepAlive,
        ];
        let mut weights = vec![(Fault::Pass, 24)];
        weights.extend(faulty.iter().map(|f| (*f, 1)));
        let schedule = Schedule::random(SEED, &weights)
            .with_script_for("GET", faulty)
            .with_script_for("DELETE", faulty);
        let proxy = ChaosProxy::start(broker.addr(), schedule, STALL);
        let c = client(&proxy.endpoint(), Duration::from_secs(1), false);
        let config = ConsumerConfig::default()
            .with_batch(BatchSize::new(8).expect("batch"))
            .with_wait(WaitSeconds::new(1).expect("wait"))
            .with_ack_flush_delay(Duration::from_millis(20))
            .with_min_empty_poll_interval(Duration::from_millis(100));
        let mut stream = c.consumer(t.clone(), g.clone()).stream_with_config(config);

        let mut handles_seen = HashSet::new();
        let mut deliveries: HashMap<String, Vec<u32>> = HashMap::new();
        let mut acked_ok: HashSet<String> = HashSet::new();
        let mut ack_failures = 0usize;
        let mut receive_errors = 0usize;
        let mut acks = FuturesUnordered::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let group_stats = |broker: &TestBroker| {
            broker
                .stats()
                .topics
                .into_iter()
                .find(|x| x.topic == t.as_str())
                .and_then(|x| x.groups.into_iter().find(|x| x.group == g.as_str()))
                .expect("group stats")
        };
        loop {
            if acked_ok.len() == N && acks.is_empty() {
                let s = group_stats(&broker);
                if s.ready == 0 && s.in_flight == 0 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "not done after 60 s: {} of {N} acked; broker: {:?}",
                acked_ok.len(),
                group_stats(&broker)
            );
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(StreamItem::Poison(p))) => panic!("the broker sent no poison: {p:?}"),
                    Some(Ok(StreamItem::Message(delivery))) => {
                        let handle = delivery.receipt_handle.to_string();
                        assert!(handles_seen.insert(handle), "the stream handed out a receipt handle twice");
                        assert!(bodies.contains(delivery.body.as_str()), "unknown body {:?}", delivery.body);
                        deliveries
                            .entry(delivery.body.to_string())
                            .or_default()
                            .push(delivery.consumed_times);
                        let body = delivery.body.to_string();
                        let ack = delivery.ack();
                        acks.push(async move { (body, ack.await) });
                    }
                    Some(Err(_)) => receive_errors += 1,
                    None => panic!("the stream ended"),
                },
                Some((body, result)) = acks.next(), if !acks.is_empty() => match result {
                    Ok(()) => { acked_ok.insert(body); }
                    Err(_) => ack_failures += 1,
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        stream.shutdown().await;

        // Nothing lost: every message reached the application and was acked, once, at the
        // broker; nothing is left there.
        assert_eq!(deliveries.len(), N);
        let s = group_stats(&broker);
        assert_eq!(
            (s.acked, s.ready, s.in_flight, s.dead_lettered),
            (N as u64, 0, 0, 0),
            "{s:?}"
        );
        // Deliveries lost on the way (reset, stall, truncated) came back after their
        // invisibility; a message the application saw twice is such a redelivery (its
        // delivery count grew), never the same delivery twice.
        assert!(
            s.delivered > N as u64,
            "no delivery was lost in transit: {s:?}"
        );
        let mut seen_again = 0;
        for (body, mut times) in deliveries {
            let n = times.len();
            times.sort_unstable();
            times.dedup();
            assert_eq!(times.len(), n, "{body}: the same delivery handed out twice");
            seen_again += n - 1;
        }
        // Acks: no handle is sent again once the client was told it is settled.
        let log = proxy.log();
        let mut settled_for_client: HashSet<String> = HashSet::new();
        for seen in log.iter().filter(|s| s.method == "DELETE") {
            for h in handles_in(seen) {
                assert!(
                    !settled_for_client.contains(&h),
                    "handle {h} acked again after the client saw it settled"
                );
                if seen.fault.delivers_answer() && settled_by(seen, &h) {
                    settled_for_client.insert(h);
                }
            }
        }
        for method in ["GET", "DELETE"] {
            for f in faulty {
                assert!(
                    log.iter().any(|s| s.method == method && s.fault == f),
                    "{f:?} never hit a {method}"
                );
            }
        }
        let injected = log.iter().filter(|s| s.fault != Fault::Pass).count();
        println!(
            "stream under chaos: {N} messages, {} requests ({injected} faulted); the broker \
             delivered {} times ({} redeliveries after lost answers or acks), the application \
             saw {seen_again} messages twice; {receive_errors} receive errors reported, \
             {ack_failures} ack futures failed (those messages came back and were acked)",
            log.len(),
            s.delivered,
            s.delivered - N as u64,
        );
    });
}

/// [`Consumer::ack`](mq_tokio::Consumer::ack) of 40 handles sends three requests (16, 16, 8)
/// in turn. When the second fails for good, the error says exactly which handles were
/// acknowledged (the first request's), which are unknown (the second's: the 500 arrives after
/// the broker applied it, the 403 before it saw it) and which were never sent (the third's);
/// the broker agrees: re-acking the acked ones is refused, the unsent ones are still in hand.
#[test]
fn a_failed_middle_ack_request_reports_earlier_handles_acked_and_later_not_sent() {
    let mut config = TestBroker::config();
    // Long enough that every handle is still valid when re-acked below.
    config.core.invisibility_ms = 120_000;
    let broker = TestBroker::start_with(config);
    block_on(async {
        let direct = client(&broker.endpoint(), Duration::from_secs(5), false);
        for (fault, status, applied) in [
            (Fault::Internal500AfterForward, 500, true),
            (Fault::Deny403, 403, false),
        ] {
            let t = topic("ack_chunks");
            let g = group("GID_ack_chunks");
            let consumer = direct.consumer(t.clone(), g.clone());
            assert!(
                consumer
                    .receive(one(), no_wait())
                    .await
                    .expect("register")
                    .is_empty()
            );
            let producer = direct.producer(t.clone());
            for i in 0..40 {
                let m = TopicMessage::new(format!("m{i}")).expect("message");
                producer.publish(&m).await.expect("publish");
            }
            let mut handles = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while handles.len() < 40 && Instant::now() < deadline {
                let got = consumer
                    .receive(BatchSize::MAX, WaitSeconds::new(1).expect("wait"))
                    .await
                    .expect("receive");
                handles.extend(got.into_iter().map(|m| m.receipt_handle));
            }
            assert_eq!(handles.len(), 40, "every message in hand");

            let proxy = ChaosProxy::start(
                broker.addr(),
                Schedule::pass().with_script_for("DELETE", [Fault::Pass, fault]),
                Duration::from_secs(5),
            );
            let via_proxy = client_builder::<TokioRuntime>(&proxy.endpoint())
                .retry(RetryConfig::disabled())
                .build()
                .expect("client");
            let err = via_proxy
                .consumer(t.clone(), g.clone())
                .ack(&handles)
                .await
                .expect_err("the second request fails");
            assert_eq!(err.acked(), &handles[..16], "{fault:?}: {err}");
            assert!(
                err.failures().is_empty() && err.expired().is_empty(),
                "{err:?}"
            );
            assert_eq!(err.unknown(), &handles[16..32], "{fault:?}: {err}");
            assert_eq!(err.not_sent(), &handles[32..], "{fault:?}: {err}");
            assert_eq!(err.unacknowledged().count(), 24);
            assert_eq!(
                service_status(err.request_error().expect("request error")),
                Some(status)
            );
            let source = std::error::Error::source(&err).expect("the request error is the source");
            assert_eq!(
                source.to_string(),
                err.request_error().expect("error").to_string()
            );
            assert!(err.to_string().contains("24 of 40"), "{err}");
            let deletes = proxy.log().iter().filter(|s| s.method == "DELETE").count();
            assert_eq!(deletes, 2, "the third request is never sent");

            // The broker's view: the acked handles are gone, the unsent ones still in hand.
            let again = consumer
                .ack(&handles[..16])
                .await
                .expect_err("already acked");
            assert_eq!(again.failures().len(), 16, "{again}");
            consumer
                .ack(&handles[32..])
                .await
                .expect("never sent, so still in hand");
            let middle = consumer.ack(&handles[16..32]).await;
            assert_eq!(middle.is_err(), applied, "{fault:?}: {middle:?}");
        }
    });
}
