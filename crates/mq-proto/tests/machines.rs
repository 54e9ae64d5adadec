//! Tests of the pure state machines (consumer loop, transaction checker) through their public
//! API: scenario tests, plus randomized simulations in virtual time (no sockets, no sleeping).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mq_proto::machine::{
    AckRefused, CheckerConfig, ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit,
    Decision, FailureKind, Jitter, MIN_BACKOFF, Received, RetryConfig,
};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, Entry, ErrorCode, HandleFailure, Message, MessageId,
    PoisonMessage, PoisonReason, Properties, ReceiptHandle, WaitSeconds,
};
use proptest::prelude::*;

const WALL0: u64 = 1_700_000_000_000;

/// The tests own the clock; the machines never read it.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn handle(s: &str) -> ReceiptHandle {
    ReceiptHandle::new(s).unwrap()
}

fn msg(n: u64, next_consume_time: u64) -> Message {
    Message {
        message_id: MessageId::new(format!("M{n:08X}")).unwrap(),
        receipt_handle: handle(&format!("M{n:08X}-h{n}")),
        body_md5: mq_proto::body_md5("body").into(),
        body: "body".into(),
        publish_time: WALL0,
        next_consume_time,
        first_consume_time: WALL0,
        consumed_times: 1,
        tag: None,
        properties: Properties::new(),
    }
}

fn msgs(range: std::ops::Range<u64>, nct: u64) -> Vec<Message> {
    range.map(|n| msg(n, nct)).collect()
}

fn events(m: &mut ConsumerMachine) -> Vec<ConsumerEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// The transaction checker: the consumer machine on half messages.
fn checker(config: CheckerConfig, seed: u64) -> ConsumerMachine {
    ConsumerMachine::new(config.into(), seed)
}

/// The checker's verdict: commit or rollback is a settlement, `Unknown` a release.
fn decide(
    m: &mut ConsumerMachine,
    now: Instant,
    handle: &ReceiptHandle,
    decision: Decision,
) -> Result<(), AckRefused> {
    match decision.ack_kind() {
        Some(kind) => m.settle(now, handle, kind),
        None => m.release(handle),
    }
}

fn expect_receive(m: &mut ConsumerMachine, now: Instant) -> (u64, u8) {
    match m.poll_transmit(now) {
        Some(ConsumerTransmit::Poll { id, batch, .. }) => (id, batch.get()),
        other => panic!("expected a receive, got {other:?}"),
    }
}

fn expect_ack(m: &mut ConsumerMachine, now: Instant) -> (u64, Vec<ReceiptHandle>) {
    match m.poll_transmit(now) {
        Some(ConsumerTransmit::Settle { id, handles, .. }) => (id, handles),
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn no_jitter() -> RetryConfig {
    RetryConfig::default().with_jitter(Jitter::None)
}

// ----- poison messages -----

fn poison(n: u64, with_handle: bool) -> PoisonMessage {
    PoisonMessage {
        message_id: Some(MessageId::new(format!("P{n}")).unwrap()),
        receipt_handle: with_handle.then(|| handle(&format!("P{n}-h"))),
        next_consume_time: Some(WALL0 + 300_000),
        consumed_times: Some(2),
        raw: bytes::Bytes::from_static(b"<Message>...</Message>"),
        reason: PoisonReason::Md5Mismatch {
            reported: "00".into(),
            computed: mq_proto::body_md5("body"),
        },
    }
}

#[test]
fn poison_messages_come_out_in_order_and_in_hand_when_they_have_a_handle() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default().with_max_in_hand(3), 1);
    let (id, _) = expect_receive(&mut m, now);
    let entries = vec![
        Entry::Message(msg(0, WALL0 + 300_000)),
        Entry::Poison(poison(1, true)),
        Entry::Poison(poison(2, false)),
        Entry::Message(msg(3, WALL0 + 300_000)),
    ];
    m.handle_poll(now, id, Ok(Received::with_entries(entries, Some(WALL0))));
    let got = events(&mut m);
    assert!(
        matches!(
            got.as_slice(),
            [
                ConsumerEvent::Message(a),
                ConsumerEvent::Poison(p),
                ConsumerEvent::Poison(q),
                ConsumerEvent::Message(b),
            ] if a.message_id.as_str() == "M00000000" && p.receipt_handle.is_some()
                && q.receipt_handle.is_none() && b.message_id.as_str() == "M00000003"
        ),
        "{got:?}"
    );
    // Two messages and the poison one with a handle are in hand; the room is used up.
    assert_eq!(m.in_hand(), 3);
    assert!(m.is_in_hand(&handle("P1-h")));
    assert_eq!(m.poll_transmit(now), None);
    // Acking the poison message drops it like any message; releasing the others frees room.
    m.ack(now, &handle("P1-h")).unwrap();
    let (ack, sent) = expect_ack(&mut m, now + ms(100));
    assert_eq!(sent, vec![handle("P1-h")]);
    m.handle_settle(now + ms(100), ack, Ok(vec![]));
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Settled {
            kind: AckKind::Ack,
            handles: vec![handle("P1-h")]
        }]
    );
    assert_eq!(m.release_all(), 2);
    let (_, batch) = expect_receive(&mut m, now + ms(100));
    assert_eq!(batch, 3);
}

#[test]
fn a_released_poison_message_is_left_for_redelivery() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    let entries = vec![Entry::Poison(poison(1, true))];
    m.handle_poll(now, id, Ok(Received::with_entries(entries, Some(WALL0))));
    let _ = events(&mut m);
    m.release(&handle("P1-h")).unwrap();
    assert_eq!(m.in_hand(), 0);
    assert_eq!(m.pending_acks(), 0);
    m.shutdown(now);
    assert_eq!(events(&mut m), vec![ConsumerEvent::Drained]);
}

// ----- refusals that name no handle (issue: refused acks reported as success) -----

/// The two bodies the real service has been seen to send (or may send) for a refused ack,
/// as the client decodes them: an `Errors` entry whose `ReceiptHandle` is empty, and one
/// without the element.
fn anonymous_refusals() -> Vec<Vec<HandleFailure>> {
    use http::{HeaderMap, StatusCode};
    let bodies: [&[u8]; 2] = [
        b"<Errors><Error><ErrorCode>ReceiptHandleError</ErrorCode><ErrorMessage>The receipt handle you provide is not valid.</ErrorMessage><ReceiptHandle></ReceiptHandle></Error></Errors>",
        b"<Errors><Error><ErrorCode>ReceiptHandleError</ErrorCode><ErrorMessage>The receipt handle you provide is not valid.</ErrorMessage></Error></Errors>",
    ];
    bodies
        .iter()
        .map(|b| {
            mq_proto::client::decode_ack_response(StatusCode::NOT_FOUND, &HeaderMap::new(), b)
                .unwrap()
        })
        .collect()
}

#[test]
fn a_stream_ack_refused_without_a_handle_is_never_an_ack() {
    for refusal in anonymous_refusals() {
        for n in [1u64, 3] {
            let now = t0();
            let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
            let (id, _) = expect_receive(&mut m, now);
            let batch = msgs(0..n, WALL0 + 300_000);
            m.handle_poll(now, id, Ok(Received::new(batch.clone(), Some(WALL0))));
            let _ = events(&mut m);
            for msg in &batch {
                m.ack(now, &msg.receipt_handle).unwrap();
            }
            let (ack, sent) = expect_ack(&mut m, now + ms(100));
            assert_eq!(sent.len() as u64, n);
            m.handle_settle(now + ms(100), ack, Ok(refusal.clone()));
            let got = events(&mut m);
            // Every handle of the request is refused, with the service's code and message.
            assert_eq!(got.len() as u64, n, "{got:?}");
            for (e, h) in got.iter().zip(&sent) {
                match e {
                    ConsumerEvent::Refused { failure: f, .. } => {
                        assert_eq!(f.receipt_handle, h.as_str());
                        assert_eq!(f.code, ErrorCode::ReceiptHandleError);
                        assert_eq!(f.message, "The receipt handle you provide is not valid.");
                    }
                    other => panic!("expected a refusal, got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn a_refusal_naming_one_handle_of_a_batch_refuses_only_that_one() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..3, WALL0 + 300_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    for n in 0..3 {
        m.ack(now, &msg(n, 0).receipt_handle).unwrap();
    }
    let (ack, sent) = expect_ack(&mut m, now + ms(100));
    let refused = HandleFailure::new(sent[1].as_str(), ErrorCode::MessageNotExist);
    m.handle_settle(now + ms(100), ack, Ok(vec![refused.clone()]));
    assert_eq!(
        events(&mut m),
        vec![
            ConsumerEvent::Refused {
                kind: AckKind::Ack,
                failure: refused
            },
            ConsumerEvent::Settled {
                kind: AckKind::Ack,
                handles: vec![sent[0].clone(), sent[2].clone()]
            },
        ]
    );
}

#[test]
fn a_commit_or_rollback_refused_without_a_handle_is_never_decided() {
    for refusal in anonymous_refusals() {
        for decision in [Decision::Commit, Decision::Rollback] {
            let now = t0();
            let mut m = checker(CheckerConfig::default(), 3);
            let (p, _) = expect_poll(&mut m, now);
            m.handle_poll(
                now,
                p,
                Ok(Received::new(msgs(0..1, WALL0 + 10_000), Some(WALL0))),
            );
            let _ = events(&mut m);
            let h = msg(0, 0).receipt_handle;
            decide(&mut m, now, &h, decision).unwrap();
            let (d, sent, kind) = expect_decide(&mut m, now);
            assert_eq!(sent, h);
            m.handle_settle(now, d, Ok(refusal.clone()));
            let expected = HandleFailure {
                receipt_handle: h.to_string(),
                code: ErrorCode::ReceiptHandleError,
                message: "The receipt handle you provide is not valid.".into(),
            };
            assert_eq!(
                events(&mut m),
                vec![ConsumerEvent::Refused {
                    kind,
                    failure: expected,
                }]
            );
        }
    }
}

// ----- expiry is the server's (issue: clock skew drops every decision) -----

/// Server clocks far from any local clock: the machines never see the local wall clock, so a
/// handle valid for 20 s by the server's own `Date` is acked and decided whatever the
/// server's absolute time is (a client 30 s or 10 min ahead or behind).
#[test]
fn handle_validity_is_measured_on_the_server_clock() {
    for skew_ms in [-600_000i64, -30_000, 30_000, 600_000] {
        let server_now = WALL0.checked_add_signed(skew_ms).unwrap();
        let now = t0();
        // Consumer: invisibility 20 s, ack 19 s later.
        let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
        let (id, _) = expect_receive(&mut m, now);
        m.handle_poll(
            now,
            id,
            Ok(Received::new(
                msgs(0..1, server_now + 20_000),
                Some(server_now),
            )),
        );
        let _ = events(&mut m);
        let later = now + ms(19_000);
        m.ack(later, &msg(0, 0).receipt_handle).unwrap();
        let (ack, _) = expect_ack(&mut m, later + ms(100));
        m.handle_settle(later + ms(100), ack, Ok(vec![]));
        assert_eq!(
            events(&mut m),
            vec![ConsumerEvent::Settled {
                kind: AckKind::Ack,
                handles: vec![msg(0, 0).receipt_handle]
            }]
        );
        // Past the server's validity (by its own clock) the ack is dropped locally.
        let (id, _) = expect_receive(&mut m, now);
        m.handle_poll(
            now,
            id,
            Ok(Received::new(
                msgs(1..2, server_now + 20_000),
                Some(server_now),
            )),
        );
        let _ = events(&mut m);
        m.ack(now + ms(20_000), &msg(1, 0).receipt_handle).unwrap();
        assert_eq!(
            events(&mut m),
            vec![ConsumerEvent::Expired {
                kind: AckKind::Ack,
                handle: msg(1, 0).receipt_handle
            }]
        );
        // Checker: check handle valid for 10 s, decided after 9 s.
        let mut c = checker(CheckerConfig::default(), 3);
        let (p, _) = expect_poll(&mut c, now);
        c.handle_poll(
            now,
            p,
            Ok(Received::new(
                msgs(0..1, server_now + 10_000),
                Some(server_now),
            )),
        );
        let _ = events(&mut c);
        let at = now + ms(9_000);
        decide(&mut c, at, &msg(0, 0).receipt_handle, Decision::Commit).unwrap();
        let (d, _, _) = expect_decide(&mut c, at);
        c.handle_settle(at, d, Ok(vec![]));
        assert!(matches!(
            events(&mut c)[..],
            [ConsumerEvent::Settled { .. }]
        ));
    }
}

#[test]
fn without_a_server_date_expiry_is_left_to_the_server() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    // A NextConsumeTime long "past" by any clock, and no Date: the ack is still sent.
    m.handle_poll(now, id, Ok(Received::new(msgs(0..1, 5), None)));
    let _ = events(&mut m);
    assert_eq!(
        m.settle_by(now, &msg(0, 0).receipt_handle),
        None,
        "unknown lease"
    );
    let later = now + ms(3_600_000);
    m.ack(later, &msg(0, 0).receipt_handle).unwrap();
    let (ack, _) = expect_ack(&mut m, later + ms(100));
    m.handle_settle(later + ms(100), ack, Ok(vec![]));
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Settled {
            kind: AckKind::Ack,
            handles: vec![msg(0, 0).receipt_handle]
        }]
    );
}

// ----- consumer scenarios -----

#[test]
fn one_receive_at_a_time_and_backpressure() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default().with_max_in_hand(3), 1);
    let (id, batch) = expect_receive(&mut m, now);
    assert_eq!(batch, 3, "never asks for more than the room left");
    assert_eq!(m.poll_transmit(now), None);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..3, WALL0 + 300_000), Some(WALL0))),
    );
    assert_eq!(m.in_hand(), 3);
    assert_eq!(events(&mut m).len(), 3);
    assert_eq!(m.poll_transmit(now), None, "full: no receive");
    m.release(&msg(0, 0).receipt_handle).unwrap();
    let (_, batch) = expect_receive(&mut m, now);
    assert_eq!(batch, 1);
    assert_eq!(m.poll_transmit(now), None);
}

#[test]
fn orderly_kind_and_wait_are_sent() {
    let now = t0();
    let c = ConsumerConfig::orderly()
        .with_batch(BatchSize::new(4).unwrap())
        .with_wait(WaitSeconds::new(5).unwrap());
    let mut m = ConsumerMachine::new(c, 1);
    assert_eq!(
        m.poll_transmit(now),
        Some(ConsumerTransmit::Poll {
            id: 1,
            kind: ConsumeKind::Orderly,
            batch: BatchSize::new(4).unwrap(),
            wait: WaitSeconds::new(5).unwrap(),
        })
    );
}

#[test]
fn acks_flush_at_sixteen_or_after_the_delay() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..16, WALL0 + 300_000), Some(WALL0))),
    );
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(16..20, WALL0 + 300_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    let (_receive, _) = expect_receive(&mut m, now);
    for n in 0..15 {
        m.ack(now, &msg(n, 0).receipt_handle).unwrap();
    }
    assert_eq!(m.poll_transmit(now), None, "15 queued: wait");
    assert_eq!(m.poll_timeout(), Some(now + ms(100)));
    m.ack(now, &msg(15, 0).receipt_handle).unwrap();
    let (_, handles) = expect_ack(&mut m, now);
    assert_eq!(handles.len(), 16);
    // A partial batch goes after the delay counted from its first ack.
    let t1 = now + ms(10);
    m.ack(t1, &msg(16, 0).receipt_handle).unwrap();
    m.ack(t1 + ms(50), &msg(17, 0).receipt_handle).unwrap();
    assert_eq!(m.poll_timeout(), Some(t1 + ms(100)));
    assert_eq!(m.poll_transmit(t1 + ms(99)), None);
    m.handle_timeout(t1 + ms(100));
    let (ack_id, handles) = expect_ack(&mut m, t1 + ms(100));
    assert_eq!(
        handles,
        vec![msg(16, 0).receipt_handle, msg(17, 0).receipt_handle]
    );
    assert_eq!(m.acks_in_flight(), 2);
    m.handle_settle(t1 + ms(120), ack_id, Ok(vec![]));
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Settled {
            kind: AckKind::Ack,
            handles
        }],
    );
    assert_eq!(m.pending_acks(), 16);
}

#[test]
fn more_than_sixteen_acks_split_into_batches() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    for chunk in 0..3u64 {
        let (id, _) = expect_receive(&mut m, now);
        m.handle_poll(
            now,
            id,
            Ok(Received::new(
                msgs(chunk * 16..chunk * 16 + 16, WALL0 + 300_000),
                Some(WALL0),
            )),
        );
    }
    let _ = events(&mut m);
    for n in 0..40 {
        m.ack(now, &msg(n, 0).receipt_handle).unwrap();
    }
    m.shutdown(now);
    let mut sizes = Vec::new();
    while let Some(t) = m.poll_transmit(now) {
        match t {
            ConsumerTransmit::Settle { handles, .. } => sizes.push(handles.len()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sizes, vec![16, 16, 8]);
}

#[test]
fn ack_refuses_unknown_and_repeated_handles() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..2, WALL0 + 300_000), Some(WALL0))),
    );
    let h0 = msg(0, 0).receipt_handle;
    let h1 = msg(1, 0).receipt_handle;
    assert_eq!(m.ack(now, &handle("nope")), Err(AckRefused::UnknownHandle));
    m.ack(now, &h0).unwrap();
    assert_eq!(m.ack(now, &h0), Err(AckRefused::AlreadyAcked));
    assert_eq!(m.release(&h0), Err(AckRefused::AlreadyAcked));
    m.release(&h1).unwrap();
    assert_eq!(m.ack(now, &h1), Err(AckRefused::UnknownHandle));
    m.shutdown(now);
    let (ack, handles) = expect_ack(&mut m, now);
    assert_eq!(
        handles,
        vec![h0.clone()],
        "sent once, released one never sent"
    );
    m.handle_settle(now, ack, Ok(vec![]));
    assert_eq!(m.ack(now, &h0), Err(AckRefused::UnknownHandle));
}

#[test]
fn expired_acks_are_dropped_and_reported() {
    let now = t0();
    let c = ConsumerConfig::default().with_ack_margin(Duration::from_millis(200));
    let mut m = ConsumerMachine::new(c, 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(
            vec![
                msg(0, WALL0 + 100),
                msg(1, WALL0 + 1_000),
                msg(2, WALL0 + 10_000),
            ],
            Some(WALL0),
        )),
    );
    let _ = events(&mut m);
    // Already within the margin at ack time: dropped at once.
    m.ack(now, &msg(0, 0).receipt_handle).unwrap();
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Expired {
            kind: AckKind::Ack,
            handle: msg(0, 0).receipt_handle
        }]
    );
    // What a handler loop asks before starting a message: the last instant its ack can be
    // sent (the lease on the local clock less the margin), and no answer once it is not in
    // hand.
    assert_eq!(
        m.settle_by(now, &msg(1, 0).receipt_handle),
        Some(now + ms(800))
    );
    assert_eq!(
        m.settle_by(now, &msg(2, 0).receipt_handle),
        Some(now + ms(9_800))
    );
    assert_eq!(m.settle_by(now, &msg(0, 0).receipt_handle), None);
    m.ack(now, &msg(1, 0).receipt_handle).unwrap();
    m.ack(now, &msg(2, 0).receipt_handle).unwrap();
    // The flush comes late (the driver was slow): handle 1 has expired by then.
    let late = now + ms(900);
    let (_, handles) = expect_ack(&mut m, late);
    assert_eq!(handles, vec![msg(2, 0).receipt_handle]);
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Expired {
            kind: AckKind::Ack,
            handle: msg(1, 0).receipt_handle
        }]
    );
}

#[test]
fn ack_partial_failures_become_events() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..2, WALL0 + 300_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    m.ack(now, &msg(0, 0).receipt_handle).unwrap();
    m.ack(now, &msg(1, 0).receipt_handle).unwrap();
    m.shutdown(now);
    let (ack, _) = expect_ack(&mut m, now);
    let failure = HandleFailure::new(
        msg(1, 0).receipt_handle.as_str(),
        ErrorCode::MessageNotExist,
    );
    m.handle_settle(now, ack, Ok(vec![failure.clone()]));
    assert_eq!(
        events(&mut m),
        vec![
            ConsumerEvent::Refused {
                kind: AckKind::Ack,
                failure
            },
            ConsumerEvent::Settled {
                kind: AckKind::Ack,
                handles: vec![msg(0, 0).receipt_handle]
            },
            ConsumerEvent::Drained,
        ]
    );
}

/// A throttled or refused first attempt did nothing at the server: a resend answered
/// "gone" is the server's refusal of that handle, never an ack.
#[test]
fn a_resend_after_a_refused_attempt_reports_gone_handles_as_refused() {
    for first in [
        FailureKind::status(503, Some(ErrorCode::Throttling)),
        FailureKind::status(429, None),
        FailureKind::status(400, Some(ErrorCode::QpsLimitExceeded)),
    ] {
        let now = t0();
        let mut m = ConsumerMachine::new(ConsumerConfig::default().with_retry(no_jitter()), 1);
        let (id, _) = expect_receive(&mut m, now);
        m.handle_poll(
            now,
            id,
            Ok(Received::new(msgs(0..1, WALL0 + 300_000), Some(WALL0))),
        );
        let _ = events(&mut m);
        m.ack(now, &msg(0, 0).receipt_handle).unwrap();
        m.shutdown(now);
        let (a1, h1) = expect_ack(&mut m, now);
        m.handle_settle(now, a1, Err(first.clone()));
        let t1 = m.poll_timeout().expect("a retry is scheduled");
        m.handle_timeout(t1);
        let (a2, _) = expect_ack(&mut m, t1);
        let gone = HandleFailure::new(h1[0].as_str(), ErrorCode::ReceiptHandleError);
        m.handle_settle(t1, a2, Ok(vec![gone.clone()]));
        assert_eq!(
            events(&mut m),
            vec![
                ConsumerEvent::Refused {
                    kind: AckKind::Ack,
                    failure: gone
                },
                ConsumerEvent::Drained
            ],
            "first attempt {first:?}"
        );
    }
}

#[test]
fn failed_ack_is_resent_after_backoff_and_resend_not_exist_counts_as_success() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default().with_retry(no_jitter()), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..2, WALL0 + 300_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    for n in 0..2 {
        m.ack(now, &msg(n, 0).receipt_handle).unwrap();
    }
    m.shutdown(now);
    let (a1, h1) = expect_ack(&mut m, now);
    m.handle_settle(now, a1, Err(FailureKind::ConnectionLost));
    assert!(
        events(&mut m).is_empty(),
        "a retried failure is not reported"
    );
    assert_eq!(m.poll_transmit(now), None, "no resend before the backoff");
    assert_eq!(m.poll_timeout(), Some(now + ms(100)));
    let t1 = now + ms(100);
    m.handle_timeout(t1);
    let (a2, h2) = expect_ack(&mut m, t1);
    assert_ne!(a1, a2);
    assert_eq!(h1, h2, "the same batch is resent");
    // The first attempt did settle handle 0: the server now says it does not exist.
    let gone = HandleFailure::new(h1[0].as_str(), ErrorCode::MessageNotExist);
    m.handle_settle(t1, a2, Ok(vec![gone]));
    assert_eq!(
        events(&mut m),
        vec![
            ConsumerEvent::Settled {
                kind: AckKind::Ack,
                handles: h1
            },
            ConsumerEvent::Drained
        ]
    );
}

#[test]
fn ack_retries_while_the_handle_is_valid_and_gives_up_on_client_errors() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default().with_retry(no_jitter()), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..2, WALL0 + 300_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    m.ack(now, &msg(0, 0).receipt_handle).unwrap();
    m.shutdown(now);
    let mut t = now;
    let mut attempts = 0;
    let mut last_id = 0;
    loop {
        let Some(ConsumerTransmit::Settle { id, .. }) = m.poll_transmit(t) else {
            match m.poll_timeout() {
                Some(at) => {
                    t = at;
                    m.handle_timeout(t);
                    continue;
                }
                None => break,
            }
        };
        attempts += 1;
        last_id = id;
        m.handle_settle(t, id, Err(FailureKind::Timeout));
    }
    // Transient failures are retried (with backoff) for as long as the handle is valid —
    // far more than `max_attempts` — and given up once its NextConsumeTime (less the margin)
    // is reached.
    assert!(attempts > 3, "only {attempts} attempts");
    let budget = Duration::from_secs(300) - ConsumerConfig::default().ack_margin();
    assert!(
        t.duration_since(now) <= budget + Duration::from_secs(6),
        "{:?}",
        t.duration_since(now)
    );
    assert!(
        t.duration_since(now) >= budget - Duration::from_secs(6),
        "{:?}",
        t.duration_since(now)
    );
    let ev = events(&mut m);
    assert_eq!(
        ev[0],
        ConsumerEvent::SettleFailed {
            id: last_id,
            kind: AckKind::Ack,
            failure: FailureKind::Timeout,
            handles: vec![msg(0, 0).receipt_handle]
        }
    );
    // Client error: no retry at all.
    let h1 = msg(1, 0).receipt_handle;
    m.ack(t, &h1).unwrap();
    let (a, _) = expect_ack(&mut m, t);
    let denied = FailureKind::status(403, Some(ErrorCode::AccessDenied));
    m.handle_settle(t, a, Err(denied.clone()));
    assert_eq!(
        events(&mut m),
        vec![
            ConsumerEvent::SettleFailed {
                kind: AckKind::Ack,
                failure: denied,
                handles: vec![h1],
                id: a
            },
            ConsumerEvent::Drained
        ]
    );
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn receive_failures_back_off_without_giving_up() {
    let start = t0();
    let retry = no_jitter().with_max_backoff(Duration::from_secs(2));
    let mut m = ConsumerMachine::new(ConsumerConfig::default().with_retry(retry), 1);
    let mut now = start;
    let mut delays = Vec::new();
    for _ in 0..50 {
        let (id, _) = expect_receive(&mut m, now);
        m.handle_poll(now, id, Err(FailureKind::Connect));
        assert_eq!(
            events(&mut m),
            vec![ConsumerEvent::PollFailed {
                id,
                failure: FailureKind::Connect
            }]
        );
        assert_eq!(m.poll_transmit(now), None, "no hot loop");
        let at = m.poll_timeout().expect("a retry timer");
        assert!(at > now);
        delays.push((at - now).as_millis());
        now = at;
        m.handle_timeout(now);
    }
    assert_eq!(&delays[..6], &[100, 200, 400, 800, 1600, 2000]);
    assert!(delays.iter().all(|&d| d <= 2000));
    // A success resets the backoff.
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(msgs(0..1, WALL0 + 300_000), Some(WALL0))),
    );
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(now, id, Err(FailureKind::Timeout));
    assert_eq!(m.poll_timeout(), Some(now + ms(100)));
}

#[test]
fn message_not_exist_is_an_empty_receive_and_empty_polls_are_paced() {
    let now = t0();
    let c = ConsumerConfig::default().with_wait(WaitSeconds::new(0).unwrap());
    let mut m = ConsumerMachine::new(c, 1);
    let (id, _) = expect_receive(&mut m, now);
    let none = FailureKind::status(404, Some(ErrorCode::MessageNotExist));
    m.handle_poll(now + ms(20), id, Err(none));
    assert!(events(&mut m).is_empty());
    assert_eq!(m.poll_transmit(now + ms(20)), None);
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(1)));
    // A long poll that really waited: the next receive goes at once.
    let c = ConsumerConfig::default();
    let mut m = ConsumerMachine::new(c, 1);
    let (id, _) = expect_receive(&mut m, now);
    let later = now + Duration::from_secs(30);
    m.handle_poll(later, id, Ok(Received::new(vec![], Some(WALL0 + 30_000))));
    expect_receive(&mut m, later);
}

#[test]
fn stale_or_unknown_answers_are_ignored() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id + 100,
        Ok(Received::new(msgs(0..1, WALL0 + 300_000), Some(WALL0))),
    );
    m.handle_settle(now, id, Ok(vec![]));
    assert_eq!(m.in_hand(), 0);
    assert_eq!(m.poll_in_flight(), Some(id));
    assert!(events(&mut m).is_empty());
}

#[test]
fn duplicate_deliveries_in_one_batch_are_handed_out_once() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (id, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        id,
        Ok(Received::new(
            vec![msg(0, WALL0 + 1), msg(0, WALL0 + 1)],
            Some(WALL0),
        )),
    );
    assert_eq!(events(&mut m).len(), 1);
    assert_eq!(m.in_hand(), 1);
}

#[test]
fn shutdown_waits_for_receive_acks_and_messages_in_hand() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (r1, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        r1,
        Ok(Received::new(msgs(0..2, WALL0 + 300_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    let (r2, _) = expect_receive(&mut m, now);
    m.ack(now, &msg(0, 0).receipt_handle).unwrap();
    m.shutdown(now);
    assert!(m.is_shutting_down());
    let (a, _) = expect_ack(&mut m, now);
    assert_eq!(m.poll_transmit(now), None, "no receive while shutting down");
    m.handle_settle(now, a, Ok(vec![]));
    // The receive in flight brings one more message; it is handed out.
    m.handle_poll(
        now,
        r2,
        Ok(Received::new(msgs(2..3, WALL0 + 300_000), Some(WALL0))),
    );
    let ev = events(&mut m);
    assert!(ev.iter().all(|e| *e != ConsumerEvent::Drained));
    assert_eq!(m.in_hand(), 2);
    m.release(&msg(1, 0).receipt_handle).unwrap();
    assert!(!m.is_drained());
    m.ack(now, &msg(2, 0).receipt_handle).unwrap();
    let (a, _) = expect_ack(&mut m, now);
    m.handle_settle(now, a, Ok(vec![]));
    let ev = events(&mut m);
    assert_eq!(ev.last(), Some(&ConsumerEvent::Drained));
    assert!(m.is_drained());
    m.shutdown(now);
    m.handle_timeout(now + Duration::from_secs(10));
    assert!(events(&mut m).is_empty(), "Drained only once");
    assert_eq!(m.poll_transmit(now), None);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn cancelled_receive_on_shutdown_is_silent() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (r, _) = expect_receive(&mut m, now);
    m.shutdown(now);
    assert!(events(&mut m).is_empty());
    m.handle_poll(now, r, Err(FailureKind::Cancelled));
    assert_eq!(events(&mut m), vec![ConsumerEvent::Drained]);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn release_all_unblocks_shutdown() {
    let now = t0();
    let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
    let (r, _) = expect_receive(&mut m, now);
    m.handle_poll(
        now,
        r,
        Ok(Received::new(msgs(0..3, WALL0 + 300_000), Some(WALL0))),
    );
    let (r, _) = expect_receive(&mut m, now);
    m.shutdown(now);
    m.handle_poll(now, r, Ok(Received::new(vec![], Some(WALL0))));
    assert!(!m.is_drained());
    assert_eq!(m.release_all(), 3);
    assert_eq!(events(&mut m).last(), Some(&ConsumerEvent::Drained));
}

// ----- checker scenarios -----

fn expect_poll(m: &mut ConsumerMachine, now: Instant) -> (u64, u8) {
    match m.poll_transmit(now) {
        Some(ConsumerTransmit::Poll { id, batch, .. }) => (id, batch.get()),
        other => panic!("expected a poll, got {other:?}"),
    }
}

fn expect_decide(m: &mut ConsumerMachine, now: Instant) -> (u64, ReceiptHandle, AckKind) {
    match m.poll_transmit(now) {
        Some(ConsumerTransmit::Settle { id, kind, handles }) if handles.len() == 1 => {
            (id, handles[0].clone(), kind)
        }
        other => panic!("expected a decision, got {other:?}"),
    }
}

#[test]
fn checker_sends_each_decision_once_and_none_for_unknown() {
    let now = t0();
    let mut m = checker(CheckerConfig::default(), 3);
    let (p, batch) = expect_poll(&mut m, now);
    assert_eq!(batch, 16);
    assert_eq!(CheckerConfig::default().wait().get(), 3);
    m.handle_poll(
        now,
        p,
        Ok(Received::new(msgs(0..3, WALL0 + 10_000), Some(WALL0))),
    );
    let ev = events(&mut m);
    assert_eq!(ev.len(), 3);
    assert!(matches!(&ev[0], ConsumerEvent::Message(m0) if m0.message_id == msg(0, 0).message_id));
    let (h0, h1, h2) = (
        msg(0, 0).receipt_handle,
        msg(1, 0).receipt_handle,
        msg(2, 0).receipt_handle,
    );
    decide(&mut m, now, &h0, Decision::Commit).unwrap();
    decide(&mut m, now, &h1, Decision::Rollback).unwrap();
    decide(&mut m, now, &h2, Decision::Unknown).unwrap();
    assert_eq!(
        decide(&mut m, now, &h0, Decision::Commit),
        Err(AckRefused::AlreadyAcked)
    );
    assert_eq!(
        decide(&mut m, now, &h2, Decision::Commit),
        Err(AckRefused::UnknownHandle)
    );
    let (d0, sent0, k0) = expect_decide(&mut m, now);
    let (d1, sent1, k1) = expect_decide(&mut m, now);
    assert_eq!((sent0.clone(), k0), (h0.clone(), AckKind::Commit));
    assert_eq!((sent1.clone(), k1), (h1.clone(), AckKind::Rollback));
    assert!(matches!(
        m.poll_transmit(now),
        Some(ConsumerTransmit::Poll { .. })
    ));
    assert_eq!(m.poll_transmit(now), None, "Unknown sends nothing");
    m.handle_settle(now, d1, Ok(vec![]));
    let refused = HandleFailure::new(h0.as_str(), ErrorCode::MessageNotExist);
    m.handle_settle(now, d0, Ok(vec![refused.clone()]));
    assert_eq!(
        events(&mut m),
        vec![
            ConsumerEvent::Settled {
                handles: vec![h1],
                kind: AckKind::Rollback
            },
            ConsumerEvent::Refused {
                kind: AckKind::Commit,
                failure: refused
            },
        ]
    );
    assert_eq!(m.pending_acks(), 0);
}

#[test]
fn checker_retries_decisions_after_transport_failures() {
    let now = t0();
    let mut m = checker(CheckerConfig::default().with_retry(no_jitter()), 3);
    let (p, _) = expect_poll(&mut m, now);
    m.handle_poll(
        now,
        p,
        Ok(Received::new(msgs(0..2, WALL0 + 10_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    let h0 = msg(0, 0).receipt_handle;
    let h1 = msg(1, 0).receipt_handle;
    decide(&mut m, now, &h0, Decision::Commit).unwrap();
    decide(&mut m, now, &h1, Decision::Rollback).unwrap();
    m.shutdown(now);
    let (d0, _, _) = expect_decide(&mut m, now);
    let (d1, _, _) = expect_decide(&mut m, now);
    m.handle_settle(now, d0, Err(FailureKind::Timeout));
    m.handle_settle(
        now,
        d1,
        Err(FailureKind::status(403, Some(ErrorCode::AccessDenied))),
    );
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::SettleFailed {
            id: d1,
            kind: AckKind::Rollback,
            failure: FailureKind::status(403, Some(ErrorCode::AccessDenied)),
            handles: vec![h1],
        }]
    );
    assert_eq!(m.poll_transmit(now), None);
    let at = m.poll_timeout().unwrap();
    assert_eq!(at, now + ms(100));
    m.handle_timeout(at);
    let (d2, again, kind) = expect_decide(&mut m, at);
    assert_eq!((again.clone(), kind), (h0.clone(), AckKind::Commit));
    m.handle_settle(
        at,
        d2,
        Ok(vec![HandleFailure::new(
            h0.as_str(),
            ErrorCode::MessageNotExist,
        )]),
    );
    assert_eq!(
        events(&mut m),
        vec![
            ConsumerEvent::Settled {
                handles: vec![h0],
                kind: AckKind::Commit
            },
            ConsumerEvent::Drained
        ]
    );
}

#[test]
fn checker_drops_expired_decisions() {
    let now = t0();
    let mut m = checker(CheckerConfig::default().with_retry(no_jitter()), 3);
    let (p, _) = expect_poll(&mut m, now);
    m.handle_poll(
        now,
        p,
        Ok(Received::new(
            vec![msg(0, WALL0 + 100), msg(1, WALL0 + 500)],
            Some(WALL0),
        )),
    );
    let _ = events(&mut m);
    let (h0, h1) = (msg(0, 0).receipt_handle, msg(1, 0).receipt_handle);
    decide(&mut m, now, &h0, Decision::Commit).unwrap();
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Expired {
            handle: h0,
            kind: AckKind::Commit
        }]
    );
    decide(&mut m, now, &h1, Decision::Rollback).unwrap();
    let (d, _, _) = expect_decide(&mut m, now);
    m.handle_settle(now, d, Err(FailureKind::ConnectionLost));
    // The driver comes back late for the retry (100 ms backoff, woken 300 ms after it): by
    // the server's clock the handle (valid for 500 ms, 200 ms margin) has expired.
    let at = m.poll_timeout().unwrap() + ms(300);
    m.handle_timeout(at);
    assert!(matches!(
        m.poll_transmit(at),
        Some(ConsumerTransmit::Poll { .. })
    ));
    assert_eq!(
        events(&mut m),
        vec![ConsumerEvent::Expired {
            handle: h1,
            kind: AckKind::Rollback
        }]
    );
}

#[test]
fn checker_poll_errors_back_off_and_shutdown_drains() {
    let start = t0();
    let mut m = checker(CheckerConfig::default().with_max_in_hand(2), 3);
    let mut now = start;
    for _ in 0..5 {
        let (p, _) = expect_poll(&mut m, now);
        m.handle_poll(now, p, Err(FailureKind::status(503, None)));
        assert_eq!(
            events(&mut m),
            vec![ConsumerEvent::PollFailed {
                id: p,
                failure: FailureKind::status(503, None)
            }]
        );
        assert_eq!(m.poll_transmit(now), None);
        let at = m.poll_timeout().unwrap();
        assert!(at >= now + MIN_BACKOFF);
        now = at;
        m.handle_timeout(now);
    }
    let (p, batch) = expect_poll(&mut m, now);
    assert_eq!(batch, 2, "bounded by max_in_hand");
    m.handle_poll(
        now,
        p,
        Ok(Received::new(msgs(0..2, WALL0 + 10_000), Some(WALL0))),
    );
    let _ = events(&mut m);
    assert_eq!(m.poll_transmit(now), None, "backpressure");
    m.shutdown(now);
    decide(&mut m, now, &msg(0, 0).receipt_handle, Decision::Commit).unwrap();
    let (d, _, _) = expect_decide(&mut m, now);
    decide(&mut m, now, &msg(1, 0).receipt_handle, Decision::Unknown).unwrap();
    assert!(events(&mut m).is_empty(), "a decision is still in flight");
    m.handle_settle(now, d, Ok(vec![]));
    assert_eq!(events(&mut m).last(), Some(&ConsumerEvent::Drained));
    assert_eq!(m.poll_transmit(now), None);
    assert_eq!(m.poll_timeout(), None);
}

// ----- randomized simulation of the consumer -----

/// How a simulated request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckOutcome {
    InFlight,
    Ok,
    Err,
}

#[derive(Debug)]
struct Req {
    done_at: Instant,
    transmit: ConsumerTransmit,
}

#[derive(Debug, Clone, Copy)]
enum UserAction {
    Ack,
    Release,
}

struct ConsumerSim {
    rng: fastrand::Rng,
    start: Instant,
    now: Instant,
    m: ConsumerMachine,
    max_in_hand: usize,
    fail_rate: f64,
    inflight: Vec<Req>,
    user: Vec<(Instant, ReceiptHandle, UserAction)>,
    next_msg: u64,
    shutdown_at: Instant,
    // Bookkeeping to check the invariants.
    nct: HashMap<ReceiptHandle, u64>,
    handed_out: HashSet<ReceiptHandle>,
    user_acked: HashSet<ReceiptHandle>,
    outcomes: HashMap<ReceiptHandle, Vec<&'static str>>,
    ack_sends: HashMap<ReceiptHandle, Vec<u64>>,
    ack_outcome: HashMap<u64, AckOutcome>,
    server_acked: HashSet<ReceiptHandle>,
    last_receive_failure: Option<Instant>,
    drained: u32,
    transmits_at_instant: (Instant, u32),
}

impl ConsumerSim {
    fn wall(&self, at: Instant) -> u64 {
        WALL0 + u64::try_from((at - self.start).as_millis()).unwrap()
    }

    fn random_failure(&mut self) -> FailureKind {
        match self.rng.u8(0..7) {
            0 => FailureKind::Connect,
            1 => FailureKind::NotSent,
            2 => FailureKind::ConnectionLost,
            3 => FailureKind::Timeout,
            4 => FailureKind::status(500, Some(ErrorCode::InternalError)),
            5 => FailureKind::status(400, Some(ErrorCode::QpsLimitExceeded)),
            _ => FailureKind::status(403, Some(ErrorCode::AccessDenied)),
        }
    }

    fn outcome(&mut self, h: &ReceiptHandle, what: &'static str) {
        self.outcomes.entry(h.clone()).or_default().push(what);
    }

    /// Drains transmits, then events, checking invariants along the way.
    fn drain(&mut self) {
        loop {
            let wall = self.wall(self.now);
            let mut progressed = false;
            while let Some(t) = self.m.poll_transmit(self.now) {
                progressed = true;
                self.on_transmit(t, wall);
            }
            while let Some(e) = self.m.poll_event() {
                progressed = true;
                self.on_event(e);
            }
            if !progressed {
                break;
            }
        }
        assert!(
            self.m.in_hand() <= self.max_in_hand,
            "backpressure violated"
        );
    }

    fn on_transmit(&mut self, t: ConsumerTransmit, wall: u64) {
        assert_eq!(self.drained, 0, "transmit after Drained: {t:?}");
        if self.transmits_at_instant.0 == self.now {
            self.transmits_at_instant.1 += 1;
            assert!(self.transmits_at_instant.1 < 200, "hot loop at one instant");
        } else {
            self.transmits_at_instant = (self.now, 1);
        }
        let latency = ms(self.rng.u64(0..80));
        match &t {
            ConsumerTransmit::Poll { batch, wait, .. } => {
                assert!(!self.m.is_shutting_down(), "receive during shutdown");
                let receives = self
                    .inflight
                    .iter()
                    .filter(|r| matches!(r.transmit, ConsumerTransmit::Poll { .. }))
                    .count();
                assert_eq!(receives, 0, "two receives outstanding");
                assert!(usize::from(batch.get()) <= self.max_in_hand - self.m.in_hand());
                if let Some(f) = self.last_receive_failure.take() {
                    assert!(
                        self.now >= f + MIN_BACKOFF,
                        "receive resent without backoff"
                    );
                }
                // An empty answer arrives after the long-poll wait.
                let long = Duration::from_secs(u64::from(wait.get()));
                let done_at = self.now + if self.rng.bool() { latency } else { long };
                self.inflight.push(Req {
                    done_at,
                    transmit: t,
                });
            }
            ConsumerTransmit::Settle { id, handles, .. } => {
                assert!(
                    !handles.is_empty() && handles.len() <= 16,
                    "ack of {} handles",
                    handles.len()
                );
                let mut seen = HashSet::new();
                for h in handles {
                    assert!(seen.insert(h.clone()), "handle twice in one batch");
                    assert!(
                        self.user_acked.contains(h),
                        "acked a handle the user did not ack"
                    );
                    assert!(
                        self.nct[h] >= wall + self.m.config().ack_margin().as_millis() as u64,
                        "expired handle sent"
                    );
                    for prev in self.ack_sends.get(h).into_iter().flatten() {
                        assert_eq!(
                            self.ack_outcome[prev],
                            AckOutcome::Err,
                            "handle resent although an earlier ack did not fail"
                        );
                    }
                    self.ack_sends.entry(h.clone()).or_default().push(*id);
                }
                self.ack_outcome.insert(*id, AckOutcome::InFlight);
                self.inflight.push(Req {
                    done_at: self.now + latency,
                    transmit: t,
                });
            }
        }
    }

    fn on_event(&mut self, e: ConsumerEvent) {
        match e {
            ConsumerEvent::Message(msg) => {
                let h = msg.receipt_handle.clone();
                assert!(
                    self.handed_out.insert(h.clone()),
                    "message handed out twice"
                );
                // Most users are quick; some are slow enough for the handle to expire.
                let delay = match self.rng.u8(0..10) {
                    0 => ms(self.rng.u64(2_000..8_000)),
                    _ => ms(self.rng.u64(0..300)),
                };
                let action = if self.rng.u8(0..10) == 0 {
                    UserAction::Release
                } else {
                    UserAction::Ack
                };
                self.user.push((self.now + delay, h, action));
            }
            ConsumerEvent::Settled { handles: hs, .. } => {
                for h in hs {
                    self.outcome(&h, "acked");
                }
            }
            ConsumerEvent::Refused { failure: f, .. } => {
                let h = handle(&f.receipt_handle);
                self.outcome(&h, "ack-failed");
            }
            ConsumerEvent::Expired { handle: h, .. } => self.outcome(&h, "expired"),
            ConsumerEvent::SettleFailed { handles: hs, .. } => {
                for h in hs {
                    self.outcome(&h, "ack-error");
                }
            }
            ConsumerEvent::PollFailed { .. } => {}
            ConsumerEvent::Poison(p) => panic!("the simulated server sends no poison: {p:?}"),
            ConsumerEvent::Drained => {
                self.drained += 1;
                assert_eq!(self.m.in_hand(), 0);
                assert_eq!(self.m.pending_acks(), 0);
                assert!(self.inflight.is_empty(), "Drained with requests in flight");
            }
        }
    }

    fn complete(&mut self, req: Req) {
        let wall = self.wall(self.now);
        let fail = self.rng.f64() < self.fail_rate;
        match req.transmit {
            ConsumerTransmit::Poll { id, batch, .. } => {
                let result = if self.m.is_shutting_down() && self.rng.u8(0..4) == 0 {
                    Err(FailureKind::Cancelled)
                } else if fail {
                    Err(self.random_failure())
                } else {
                    let n = self.rng.u64(0..=u64::from(batch.get()));
                    let mut out = Vec::new();
                    for _ in 0..n {
                        self.next_msg += 1;
                        let invisible = if self.rng.u8(0..8) == 0 {
                            self.rng.u64(0..3_000)
                        } else {
                            300_000
                        };
                        let m = msg(self.next_msg, wall + invisible);
                        self.nct
                            .insert(m.receipt_handle.clone(), m.next_consume_time);
                        out.push(m);
                    }
                    Ok(out)
                };
                if matches!(result, Err(ref f) if *f != FailureKind::Cancelled) {
                    self.last_receive_failure = Some(self.now);
                }
                self.m
                    .handle_poll(self.now, id, result.map(|m| Received::new(m, Some(wall))));
            }
            ConsumerTransmit::Settle { id, handles, .. } => {
                let result = if fail {
                    let f = self.random_failure();
                    // A lost answer may hide a processed request.
                    if f.request_may_have_reached_server() && self.rng.bool() {
                        for h in &handles {
                            if self.nct[h] >= wall {
                                self.server_acked.insert(h.clone());
                            }
                        }
                    }
                    Err(f)
                } else {
                    let mut failures = Vec::new();
                    for h in &handles {
                        if self.nct[h] < wall || self.server_acked.contains(h) {
                            failures
                                .push(HandleFailure::new(h.as_str(), ErrorCode::MessageNotExist));
                        } else if self.rng.u8(0..50) == 0 {
                            failures.push(HandleFailure::new(
                                h.as_str(),
                                ErrorCode::ReceiptHandleError,
                            ));
                        } else {
                            self.server_acked.insert(h.clone());
                        }
                    }
                    Ok(failures)
                };
                self.ack_outcome.insert(
                    id,
                    if result.is_ok() {
                        AckOutcome::Ok
                    } else {
                        AckOutcome::Err
                    },
                );
                self.m.handle_settle(self.now, id, result);
            }
        }
    }

    fn user_act(&mut self, h: ReceiptHandle, action: UserAction) {
        match action {
            UserAction::Ack => {
                self.m.ack(self.now, &h).unwrap();
                self.user_acked.insert(h.clone());
                // A second ack of the same handle is refused and never sent.
                assert!(self.m.ack(self.now, &h).is_err());
            }
            UserAction::Release => {
                self.m.release(&h).unwrap();
                self.outcome(&h, "released");
            }
        }
    }

    fn run(mut self) {
        self.drain();
        let mut steps = 0u32;
        while self.drained == 0 {
            steps += 1;
            assert!(steps < 200_000, "simulation did not finish");
            let next_req = self.inflight.iter().map(|r| r.done_at).min();
            let next_user = self.user.iter().map(|u| u.0).min();
            let shutdown = (!self.m.is_shutting_down()).then_some(self.shutdown_at);
            let Some(next) = [next_req, next_user, self.m.poll_timeout(), shutdown]
                .into_iter()
                .flatten()
                .min()
            else {
                panic!("stuck: nothing scheduled and not drained");
            };
            self.now = self.now.max(next);
            if let Some(pos) = self.inflight.iter().position(|r| r.done_at <= self.now) {
                let req = self.inflight.remove(pos);
                self.complete(req);
            } else if let Some(pos) = self.user.iter().position(|u| u.0 <= self.now) {
                let (_, h, a) = self.user.remove(pos);
                self.user_act(h, a);
            } else if shutdown.is_some_and(|s| s <= self.now) {
                self.m.shutdown(self.now);
            } else {
                self.m.handle_timeout(self.now);
            }
            self.drain();
        }
        // Drained exactly once, then silence.
        for _ in 0..3 {
            self.now += Duration::from_secs(1);
            self.m.handle_timeout(self.now);
            assert_eq!(self.m.poll_transmit(self.now), None);
            assert_eq!(self.m.poll_event(), None);
        }
        assert_eq!(self.drained, 1);
        assert_eq!(self.m.poll_timeout(), None);
        // Every handed-out message has exactly one outcome.
        for h in &self.handed_out {
            let o = self.outcomes.get(h).map(Vec::as_slice).unwrap_or(&[]);
            assert_eq!(o.len(), 1, "{h:?}: outcomes {o:?}");
        }
        assert_eq!(self.outcomes.len(), self.handed_out.len());
        // No handle was part of two successful ack requests.
        for (h, ids) in &self.ack_sends {
            let ok = ids
                .iter()
                .filter(|id| self.ack_outcome[id] == AckOutcome::Ok)
                .count();
            assert!(ok <= 1, "{h:?} acked successfully {ok} times");
        }
    }
}

fn run_consumer_sim(seed: u64, max_in_hand: usize, batch: u8, wait: u8, fail_rate: f64) {
    let start = t0();
    let mut rng = fastrand::Rng::with_seed(seed);
    let config = ConsumerConfig::default()
        .with_max_in_hand(max_in_hand)
        .with_batch(BatchSize::new(batch).unwrap())
        .with_wait(WaitSeconds::new(wait).unwrap())
        .with_retry(RetryConfig::default().with_max_attempts(4));
    let shutdown_at = start + ms(rng.u64(1_000..60_000));
    let sim = ConsumerSim {
        m: ConsumerMachine::new(config, rng.u64(..)),
        rng,
        start,
        now: start,
        max_in_hand,
        fail_rate,
        inflight: Vec::new(),
        user: Vec::new(),
        next_msg: 0,
        shutdown_at,
        nct: HashMap::new(),
        handed_out: HashSet::new(),
        user_acked: HashSet::new(),
        outcomes: HashMap::new(),
        ack_sends: HashMap::new(),
        ack_outcome: HashMap::new(),
        server_acked: HashSet::new(),
        last_receive_failure: None,
        drained: 0,
        transmits_at_instant: (start, 0),
    };
    sim.run();
}

#[test]
fn consumer_simulation_smoke() {
    run_consumer_sim(1, 64, 16, 2, 0.1);
    run_consumer_sim(2, 1, 16, 0, 0.3);
    run_consumer_sim(3, 40, 7, 30, 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn consumer_invariants_hold_under_random_failures(
        seed in any::<u64>(),
        max_in_hand in 1usize..80,
        batch in 1u8..=16,
        wait in 0u8..=5,
        fail_rate in 0.0f64..0.6,
    ) {
        run_consumer_sim(seed, max_in_hand, batch, wait, fail_rate);
    }

    #[test]
    fn checker_invariants_hold_under_random_failures(
        seed in any::<u64>(),
        max_in_hand in 1usize..40,
        fail_rate in 0.0f64..0.6,
    ) {
        run_checker_sim(seed, max_in_hand, fail_rate);
    }
}

// ----- randomized simulation of the checker -----

fn run_checker_sim(seed: u64, max_in_hand: usize, fail_rate: f64) {
    let start = t0();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut m = checker(
        CheckerConfig::default().with_max_in_hand(max_in_hand),
        rng.u64(..),
    );
    let wall_of = |at: Instant| WALL0 + u64::try_from((at - start).as_millis()).unwrap();
    let shutdown_at = start + ms(rng.u64(1_000..30_000));
    let mut now = start;
    let mut inflight: Vec<(Instant, ConsumerTransmit)> = Vec::new();
    let mut user: Vec<(Instant, ReceiptHandle)> = Vec::new();
    let mut nct: HashMap<ReceiptHandle, u64> = HashMap::new();
    let mut decided: HashMap<ReceiptHandle, AckKind> = HashMap::new();
    let mut sends: HashMap<ReceiptHandle, Vec<(u64, Option<bool>)>> = HashMap::new();
    let mut outcomes: HashMap<ReceiptHandle, u32> = HashMap::new();
    let mut offered = 0u64;
    let mut next_msg = 0u64;
    let mut drained = 0;
    let mut steps = 0;
    loop {
        // Drain.
        loop {
            let wall = wall_of(now);
            let mut progressed = false;
            while let Some(t) = m.poll_transmit(now) {
                progressed = true;
                assert_eq!(drained, 0);
                match &t {
                    ConsumerTransmit::Poll { batch, .. } => {
                        assert!(!m.is_shutting_down());
                        assert!(
                            !inflight
                                .iter()
                                .any(|(_, t)| matches!(t, ConsumerTransmit::Poll { .. }))
                        );
                        assert!(usize::from(batch.get()) + m.in_hand() <= max_in_hand);
                    }
                    ConsumerTransmit::Settle { id, handles, kind } => {
                        assert_eq!(handles.len(), 1, "one decision per request");
                        let handle = &handles[0];
                        assert_eq!(decided.get(handle), Some(kind), "decision not asked for");
                        assert!(nct[handle] >= wall + m.config().ack_margin().as_millis() as u64);
                        let prev = sends.entry(handle.clone()).or_default();
                        assert!(prev.iter().all(|(_, ok)| *ok == Some(false)), "sent twice");
                        prev.push((*id, None));
                    }
                }
                inflight.push((now + ms(rng.u64(0..100)), t));
            }
            while let Some(e) = m.poll_event() {
                progressed = true;
                match e {
                    ConsumerEvent::Message(msg) => {
                        offered += 1;
                        let delay = if rng.u8(0..8) == 0 {
                            rng.u64(5_000..15_000)
                        } else {
                            rng.u64(0..500)
                        };
                        user.push((now + ms(delay), msg.receipt_handle));
                    }
                    ConsumerEvent::Settled { handles, kind } => {
                        for handle in handles {
                            assert_eq!(decided.get(&handle), Some(&kind));
                            *outcomes.entry(handle).or_default() += 1;
                        }
                    }
                    ConsumerEvent::SettleFailed { handles, .. } => {
                        for handle in handles {
                            *outcomes.entry(handle).or_default() += 1;
                        }
                    }
                    ConsumerEvent::Refused { failure, .. } => {
                        *outcomes.entry(handle(&failure.receipt_handle)).or_default() += 1;
                    }
                    ConsumerEvent::Expired { handle, .. } => {
                        *outcomes.entry(handle).or_default() += 1;
                    }
                    ConsumerEvent::PollFailed { .. } => {}
                    ConsumerEvent::Poison(p) => {
                        panic!("the simulated server sends no poison: {p:?}")
                    }
                    ConsumerEvent::Drained => {
                        drained += 1;
                        assert!(inflight.is_empty());
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if drained > 0 {
            break;
        }
        steps += 1;
        assert!(steps < 100_000, "checker simulation did not finish");
        let next = [
            inflight.iter().map(|r| r.0).min(),
            user.iter().map(|u| u.0).min(),
            m.poll_timeout(),
            (!m.is_shutting_down()).then_some(shutdown_at),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("stuck");
        now = now.max(next);
        let wall = wall_of(now);
        if let Some(pos) = inflight.iter().position(|r| r.0 <= now) {
            let (_, t) = inflight.remove(pos);
            let fail = rng.f64() < fail_rate;
            match t {
                ConsumerTransmit::Poll { id, batch, .. } => {
                    let result = if fail {
                        Err(FailureKind::status(500, None))
                    } else {
                        let n = rng.u64(0..=u64::from(batch.get()));
                        Ok((0..n)
                            .map(|_| {
                                next_msg += 1;
                                let mm = msg(next_msg, wall + 10_000);
                                nct.insert(mm.receipt_handle.clone(), mm.next_consume_time);
                                mm
                            })
                            .collect())
                    };
                    m.handle_poll(now, id, result.map(|m| Received::new(m, Some(wall))));
                }
                ConsumerTransmit::Settle { id, handles, .. } => {
                    let handle = &handles[0];
                    let result = if fail {
                        Err(FailureKind::Timeout)
                    } else {
                        Ok(vec![])
                    };
                    for s in sends.get_mut(handle).into_iter().flatten() {
                        if s.0 == id {
                            s.1 = Some(result.is_ok());
                        }
                    }
                    m.handle_settle(now, id, result);
                }
            }
        } else if let Some(pos) = user.iter().position(|u| u.0 <= now) {
            let (_, h) = user.remove(pos);
            let decision = match rng.u8(0..3) {
                0 => Decision::Commit,
                1 => Decision::Rollback,
                _ => Decision::Unknown,
            };
            if let Some(kind) = decision.ack_kind() {
                decided.insert(h.clone(), kind);
            } else {
                *outcomes.entry(h.clone()).or_default() += 1;
            }
            decide(&mut m, now, &h, decision).unwrap();
            assert!(decide(&mut m, now, &h, Decision::Commit).is_err());
        } else if !m.is_shutting_down() && shutdown_at <= now {
            m.shutdown(now);
        } else {
            m.handle_timeout(now);
        }
    }
    assert_eq!(drained, 1);
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(outcomes.len() as u64, offered, "every check settled");
    assert!(outcomes.values().all(|&n| n == 1), "one outcome per check");
    // Unknown decisions never produced a request.
    for h in sends.keys() {
        assert!(decided.contains_key(h));
    }
}
