//! A refusal that names no handle is never a success (every settlement path).
//!
//! The real service has been seen to refuse an ack with `404` and an `Errors` entry whose
//! `ReceiptHandle` is empty, and an entry without the element is possible too. A chaos proxy
//! in front of the real broker answers the first `DELETE` (ack, commit or rollback) with one
//! of those bodies, without forwarding it: the broker settles nothing, so the client must
//! report every handle of that request as not acknowledged, with the service's code and
//! message, and the message must come back (or stay undecided).

use futures::StreamExt;
use mq_tests::chaos::{ChaosProxy, Fault, Schedule};
use mq_tests::{TestBroker, block_on, client_builder, commit_through_the_checker, unique};
use mq_tokio::{
    AckError, BatchSize, Client, ConsumerConfig, Decision, Error, ErrorCode, GroupId,
    HandleFailure, Message, ReceiptHandle, TokioRuntime, TopicMessage, TopicName, WaitSeconds,
};
use std::time::{Duration, Instant};

const REFUSALS: [Fault; 2] = [Fault::RefuseWithEmptyHandle, Fault::RefuseWithoutHandle];

fn client(endpoint: &str) -> Client {
    client_builder::<TokioRuntime>(endpoint)
        .build()
        .expect("client")
}

/// A proxy whose first `DELETE` gets `refusal`; everything else passes.
fn proxy(broker: &TestBroker, refusal: Fault) -> ChaosProxy {
    ChaosProxy::start(
        broker.addr(),
        Schedule::pass().with_script_for("DELETE", [refusal]),
        Duration::from_secs(5),
    )
}

fn topic() -> TopicName {
    TopicName::new(unique("refusals")).expect("topic")
}

fn group(prefix: &str) -> GroupId {
    GroupId::new(unique(prefix)).expect("group")
}

fn wait(s: u8) -> WaitSeconds {
    WaitSeconds::new(s).expect("wait")
}

/// Asserts `error` says the service refused exactly `handles` (in order) with its code and
/// message, acknowledged none of them and had no failed request.
fn assert_refuses(error: &AckError, handles: &[ReceiptHandle]) {
    assert!(error.acked().is_empty(), "{error:?}");
    assert!(error.request_error().is_none(), "{error:?}");
    let unacknowledged: Vec<&ReceiptHandle> = error.unacknowledged().collect();
    assert_eq!(unacknowledged, handles.iter().collect::<Vec<_>>());
    assert_failures(error.failures(), handles);
}

/// Asserts `failures` refuse exactly `handles` (in order) with the service's code and message.
fn assert_failures(failures: &[HandleFailure], handles: &[ReceiptHandle]) {
    let named: Vec<&str> = failures.iter().map(|f| f.receipt_handle.as_str()).collect();
    let expected: Vec<&str> = handles.iter().map(ReceiptHandle::as_str).collect();
    assert_eq!(named, expected, "every handle of the request is refused");
    for f in failures {
        assert_eq!(f.code, ErrorCode::ReceiptHandleError);
        assert_eq!(f.message, "The receipt handle you provide is not valid.");
    }
}

/// Publishes `n` messages to a fresh topic whose group is registered; returns both.
async fn published(client: &Client, n: usize) -> (TopicName, GroupId) {
    let t = topic();
    let g = group("GID_refusals");
    let consumer = client.consumer(t.clone(), g.clone());
    assert!(
        consumer
            .receive(BatchSize::MAX, wait(0))
            .await
            .expect("register")
            .is_empty()
    );
    let producer = client.producer(t.clone());
    for i in 0..n {
        producer
            .publish(&TopicMessage::new(format!("m{i}")).expect("message"))
            .await
            .expect("publish");
    }
    (t, g)
}

/// Receives until `n` messages are in hand (or 10 s pass).
async fn receive(client: &Client, t: &TopicName, g: &GroupId, n: usize) -> Vec<Message> {
    let consumer = client.consumer(t.clone(), g.clone());
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n && Instant::now() < deadline {
        got.extend(
            consumer
                .receive(BatchSize::MAX, wait(1))
                .await
                .expect("receive"),
        );
    }
    assert_eq!(got.len(), n);
    got
}

#[test]
fn stream_acks_refused_without_a_handle_are_reported_and_the_messages_come_back() {
    block_on(async {
        let broker = TestBroker::start();
        let direct = client(&broker.endpoint());
        for refusal in REFUSALS {
            for n in [1usize, 3] {
                let proxy = proxy(&broker, refusal);
                let via_proxy = client(&proxy.endpoint());
                let (t, g) = published(&direct, n).await;
                let config = ConsumerConfig::normal()
                    .with_wait(wait(1))
                    .with_ack_flush_delay(Duration::from_millis(200));
                let mut stream = via_proxy
                    .consumer(t.clone(), g.clone())
                    .stream_with_config(config);
                let mut deliveries = Vec::new();
                while deliveries.len() < n {
                    let d = tokio::time::timeout(Duration::from_secs(10), stream.next())
                        .await
                        .expect("a delivery in time")
                        .expect("stream open")
                        .expect("delivery")
                        .into_delivery()
                        .expect("a message that decodes");
                    deliveries.push(d);
                }
                let handles: Vec<ReceiptHandle> = deliveries
                    .iter()
                    .map(|d| d.receipt_handle.clone())
                    .collect();
                let ids: Vec<String> = deliveries
                    .iter()
                    .map(|d| d.message_id.to_string())
                    .collect();
                // All acks queued together travel in one request, which is refused.
                let acks: Vec<_> = deliveries.into_iter().map(|d| d.ack()).collect();
                for (ack, h) in acks.into_iter().zip(&handles) {
                    match ack.await {
                        Err(e) => assert_refuses(&e, std::slice::from_ref(h)),
                        other => {
                            panic!("{refusal:?}, {n} handle(s): expected a refusal, got {other:?}")
                        }
                    }
                }
                stream.shutdown().await;
                assert_eq!(proxy.count(refusal), 1, "exactly one ack request was sent");
                // Nothing was settled: every message is delivered again after its invisibility.
                let again = receive(&direct, &t, &g, n).await;
                let mut again: Vec<String> =
                    again.iter().map(|m| m.message_id.to_string()).collect();
                let mut ids = ids;
                again.sort();
                ids.sort();
                assert_eq!(again, ids, "{refusal:?}: the refused messages come back");
            }
        }
    });
}

#[test]
fn consumer_acks_refused_without_a_handle_report_every_handle() {
    block_on(async {
        let broker = TestBroker::start();
        let direct = client(&broker.endpoint());
        for refusal in REFUSALS {
            for n in [1usize, 3] {
                let proxy = proxy(&broker, refusal);
                let via_proxy = client(&proxy.endpoint());
                let (t, g) = published(&direct, n).await;
                let got = receive(&direct, &t, &g, n).await;
                let handles: Vec<ReceiptHandle> =
                    got.iter().map(|m| m.receipt_handle.clone()).collect();
                let consumer = via_proxy.consumer(t.clone(), g.clone());
                match consumer.ack(&handles).await {
                    Err(e) => assert_refuses(&e, &handles),
                    other => {
                        panic!("{refusal:?}, {n} handle(s): expected a refusal, got {other:?}")
                    }
                }
                // The broker still holds every handle: acking directly now succeeds.
                direct
                    .consumer(t, g)
                    .ack(&handles)
                    .await
                    .expect("the handles were never settled");
            }
        }
    });
}

#[test]
fn commits_and_rollbacks_refused_without_a_handle_are_errors() {
    block_on(async {
        let broker = TestBroker::start();
        let direct = client(&broker.endpoint());
        for refusal in REFUSALS {
            for decision in [Decision::Commit, Decision::Rollback] {
                let proxy = proxy(&broker, refusal);
                let t = topic();
                let g = group("GID_refusals_tx");
                let tx = client(&proxy.endpoint()).transaction_producer(t.clone(), g.clone());
                let receipt = tx
                    .publish(&TopicMessage::new("half").expect("message"))
                    .await
                    .expect("publish half");
                let handle = receipt.receipt_handle;
                let result = match decision {
                    Decision::Commit => tx.commit(&handle).await,
                    _ => tx.rollback(&handle).await,
                };
                match result {
                    Err(e) => assert_refuses(&e, std::slice::from_ref(&handle)),
                    other => panic!("{refusal:?} {decision:?}: expected a refusal, got {other:?}"),
                }
                // Still undecided at the broker: the same decision now takes effect.
                let tx_direct = direct.transaction_producer(t, g);
                let direct_result = match decision {
                    Decision::Commit => tx_direct.commit(&handle).await,
                    _ => tx_direct.rollback(&handle).await,
                };
                direct_result.expect("the half message was never decided");
            }
        }
    });
}

#[test]
fn the_checker_counts_a_decision_refused_without_a_handle_as_failed_and_decides_again() {
    block_on(async {
        let broker = TestBroker::start();
        let direct = client(&broker.endpoint());
        let runs = REFUSALS.map(|refusal| {
            let direct = direct.clone();
            let proxy = proxy(&broker, refusal);
            async move {
                let t = topic();
                let consumer = direct.consumer(t.clone(), group("GID_refusals_after"));
                assert!(
                    consumer
                        .receive(BatchSize::MAX, wait(0))
                        .await
                        .expect("register")
                        .is_empty()
                );
                let tx =
                    client(&proxy.endpoint()).transaction_producer(t, group("GID_refusals_chk"));
                // The first commit is refused; the broker checks again and the next one lands.
                let (delivered, report) = commit_through_the_checker(&tx, &consumer).await;
                assert_eq!(proxy.count(refusal), 1);
                assert_eq!(
                    delivered.len(),
                    1,
                    "{refusal:?}: committed after the refusal"
                );
                assert_eq!(report.failed, 1, "{refusal:?}: {report:?}");
                assert_eq!(report.committed, 1, "{refusal:?}: {report:?}");
            }
        });
        futures::future::join_all(runs).await;
    });
}

/// A stream ack the service refuses as a whole (`403 AccessDenied`) resolves to that service
/// error — status, code and request id — not to a made-up network error: the shared driver
/// keeps each failed request's error under its id until the machine reports it.
#[test]
fn stream_ack_refused_with_403_reports_the_service_error() {
    block_on(async {
        let broker = TestBroker::start();
        let direct = client(&broker.endpoint());
        let proxy = ChaosProxy::start(
            broker.addr(),
            Schedule::pass().with_script_for("DELETE", [Fault::Deny403]),
            Duration::from_secs(5),
        );
        let via_proxy = client(&proxy.endpoint());
        let (t, g) = published(&direct, 1).await;
        let config = ConsumerConfig::normal().with_wait(wait(1));
        let mut stream = via_proxy.consumer(t, g).stream_with_config(config);
        let delivery = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a delivery in time")
            .expect("stream open")
            .expect("delivery")
            .into_delivery()
            .expect("a message that decodes");
        let handle = delivery.receipt_handle.clone();
        match delivery.ack().await {
            Err(ack) => {
                assert_eq!(ack.unknown(), std::slice::from_ref(&handle), "{ack:?}");
                let Some(Error::Service(e)) = ack.request_error() else {
                    panic!("expected the 403 service error, got {ack:?}");
                };
                assert_eq!(e.status, 403);
                assert_eq!(e.code, ErrorCode::AccessDenied);
                assert_eq!(e.request_id.as_deref(), Some("CHAOS403"));
            }
            Ok(()) => panic!("expected the 403 service error, got Ok"),
        }
        stream.shutdown().await;
        assert_eq!(proxy.count(Fault::Deny403), 1, "a 403 is not retried");
    });
}
