//! Pure state machines: retry/backoff and the consumer loop, which is also the transaction
//! checker (a consumer of half messages whose settlement is commit or rollback).
//!
//! The machines speak in operation terms ("receive 16 messages", "ack these handles"); they
//! know nothing of HTTP. A runtime driver turns each transmit into a request with the
//! [`client`](crate::client) builders, sends it, and feeds the decoded result (or a
//! [`FailureKind`]) back. No machine reads a clock: the monotonic `now: Instant` drives every
//! timer. No machine looks at the local wall clock either: how long a receipt handle stays
//! valid is the server's `NextConsumeTime` minus the server's `Date` of the answer that
//! brought it ([`Received::server_time_ms`]), counted down on `now` — so a client whose clock
//! is minutes off still sends every decision while the server holds the handle.
//!
//! # One machine, one shape
//!
//! [`ConsumerMachine`] drives both the message stream ([`ConsumerConfig::normal`] /
//! [`ConsumerConfig::orderly`]) and the transaction checker ([`ConsumerConfig::half`], or a
//! [`CheckerConfig`] converted into it):
//!
//! * **getters** on `&self` (`in_hand()`, `is_drained()`, ...);
//! * **inputs**: `handle_poll(now, id, result)` and `handle_settle(now, id, result)` for
//!   each answered [`ConsumerTransmit`], and `handle_timeout(now)` when the timer fires;
//! * **commands** that only queue work (`settle` — ack, commit or rollback —, `ack`,
//!   `release`, `release_all`, `shutdown`);
//! * **outputs**, all `#[must_use]`: `poll_transmit(now)` (the next request to
//!   send), `poll_event()` (the next [`ConsumerEvent`] to tell the user) and `poll_timeout()`
//!   (when to call `handle_timeout`).
//!
//! The failure events ([`ConsumerEvent::PollFailed`], [`ConsumerEvent::SettleFailed`]) quote
//! the request id, so a driver that kept the request's full error reports that error, not
//! just its [`FailureKind`]. [`ConsumerTransmit`] is exhaustive: drivers match it without a
//! catch-all arm.
//!
//! **Drain rule:** after any input or command, call `poll_transmit` until it returns `None`,
//! then `poll_event` until it returns `None`, then sleep until `poll_timeout()` (or until a
//! request completes or the user issues a command, whichever comes first). Requests may be
//! in flight concurrently; each carries an `id` that its answer must quote. Answers with an
//! unknown id are ignored.
//!
//! # A tiny run loop
//!
//! A consumer driven against a fake server that has two messages, then nothing:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mq_proto::{Message, MessageId, Properties, ReceiptHandle};
//! use mq_proto::machine::{
//!     ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit, Received,
//! };
//!
//! fn message(n: u32, server_ms: u64) -> Message {
//!     Message {
//!         message_id: MessageId::new(format!("M{n}")).unwrap(),
//!         receipt_handle: ReceiptHandle::new(format!("M{n}-h")).unwrap(),
//!         body_md5: mq_proto::body_md5("hi").into(),
//!         body: "hi".into(),
//!         publish_time: server_ms,
//!         next_consume_time: server_ms + 300_000,
//!         first_consume_time: server_ms,
//!         consumed_times: 1,
//!         tag: None,
//!         properties: Properties::new(),
//!     }
//! }
//!
//! let start = Instant::now(); // the driver owns the clocks
//! let (mut now, mut server_ms) = (start, 1_700_000_000_000u64); // the fake server's clock
//! let mut machine = ConsumerMachine::new(ConsumerConfig::default(), 42);
//! let mut inbox = vec![message(1, server_ms), message(2, server_ms)];
//! let mut acked = Vec::new();
//! let mut drained = false;
//!
//! while !drained {
//!     // 1. Send everything that is due (here: answer it at once).
//!     while let Some(t) = machine.poll_transmit(now) {
//!         match t {
//!             ConsumerTransmit::Poll { id, .. } => {
//!                 let batch = std::mem::take(&mut inbox);
//!                 machine.handle_poll(now, id, Ok(Received::new(batch, Some(server_ms))));
//!             }
//!             ConsumerTransmit::Settle { id, handles, .. } => {
//!                 acked.extend(handles);
//!                 machine.handle_settle(now, id, Ok(vec![]));
//!             }
//!         }
//!     }
//!     // 2. Tell the user (here: ack every message; stop once the inbox is empty).
//!     while let Some(e) = machine.poll_event() {
//!         match e {
//!             ConsumerEvent::Message(m) => {
//!                 machine.ack(now, &m.receipt_handle).unwrap();
//!                 if inbox.is_empty() {
//!                     machine.shutdown(now);
//!                 }
//!             }
//!             ConsumerEvent::Drained => drained = true,
//!             _ => {}
//!         }
//!     }
//!     // 3. Sleep until the next timer (simulated), then tell the machine.
//!     if let Some(at) = machine.poll_timeout() {
//!         let dt = at.saturating_duration_since(now);
//!         now += dt;
//!         server_ms += dt.as_millis() as u64;
//!         machine.handle_timeout(now);
//!     }
//! }
//! assert_eq!(acked.len(), 2);
//! assert!(now - start < Duration::from_secs(1));
//! ```

pub mod checker;
pub mod consumer;
mod poll;
pub mod retry;

pub use checker::{CheckerConfig, Decision};
pub use consumer::{AckRefused, ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit};
pub use retry::{
    Backoff, FailureKind, Idempotency, Jitter, MIN_BACKOFF, RetryConfig, RetryDecision, RetryState,
};

use std::time::{Duration, Instant};

use crate::message::Message;
use crate::ops::ErrorCode;
use crate::wire::consume::Entry;

/// A successful answer to a receive or half-message poll: the messages (and poison messages,
/// see [`Entry`]), and the server's clock when it answered.
///
/// `server_time_ms` is the response's `Date` header in epoch milliseconds (second
/// resolution; [`client::response_date_ms`](crate::client::response_date_ms) reads it). The
/// machines derive each handle's remaining validity from it — `NextConsumeTime` minus
/// `Date`, counted down on the monotonic clock from when the answer arrived — and never
/// compare a server timestamp with the local wall clock (PROTOCOL §6.10, client item 6).
/// Without it (`None`) a handle is never judged expired locally: the server decides.
///
/// ```
/// use mq_proto::machine::Received;
/// let r = Received::new(Vec::new(), Some(1_709_837_398_000));
/// assert!(r.entries.is_empty());
/// assert_eq!(Received::default().server_time_ms, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The messages and poison messages in the order received (empty = none arrived in
    /// time).
    pub entries: Vec<Entry>,
    /// The response's `Date` in epoch milliseconds, if it had a valid one.
    pub server_time_ms: Option<u64>,
}

impl Received {
    /// An answer with these messages (all decoded) and this server time.
    pub fn new(messages: Vec<Message>, server_time_ms: Option<u64>) -> Self {
        Self::with_entries(
            messages.into_iter().map(Entry::Message).collect(),
            server_time_ms,
        )
    }

    /// An answer with these entries (messages and poison messages) and this server time.
    pub fn with_entries(entries: Vec<Entry>, server_time_ms: Option<u64>) -> Self {
        Self {
            entries,
            server_time_ms,
        }
    }
}

/// How long a receipt handle stays valid, on the local monotonic clock.
///
/// Built from the server's own clock: the handle is valid for `NextConsumeTime − Date` after
/// the answer arrived. Both come from the server, so the local wall clock's skew does not
/// matter. The estimate errs on the long side (the `Date` is truncated to the second and the
/// answer took time to arrive): a decision sent a little late is answered by the server
/// (`MessageNotExist`), while one dropped too early would cost a needless redelivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    /// `None`: the server's time is unknown, so expiry is left to the server.
    until: Option<Instant>,
}

impl Lease {
    fn new(received_at: Instant, next_consume_time: u64, server_time_ms: Option<u64>) -> Self {
        let until = server_time_ms.and_then(|date| {
            received_at.checked_add(Duration::from_millis(
                next_consume_time.saturating_sub(date),
            ))
        });
        Self { until }
    }

    /// Whether the handle should no longer be used at `now`, keeping `margin` for the request
    /// to reach the server. An unknown lease never expires here.
    fn is_expired(self, now: Instant, margin: Duration) -> bool {
        match (self.until, now.checked_add(margin)) {
            (Some(until), Some(limit)) => until < limit,
            // A margin beyond the clock's range outlasts any known lease.
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The retry budget of a decision about this handle: until it expires (less the margin),
    /// or `fallback` when the lease is unknown.
    fn retry_budget(self, now: Instant, margin: Duration, fallback: Duration) -> Duration {
        match self.until {
            Some(until) => until.saturating_duration_since(now).saturating_sub(margin),
            None => fallback,
        }
    }
}

/// Per-handle codes meaning "this handle is no longer valid", which for a resent request are
/// most likely the effect of the earlier attempt.
fn is_gone(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::MessageNotExist | ErrorCode::ReceiptHandleError
    )
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// The tests own the clock; the machines never read it.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn validity_comes_from_the_server_clock_only() {
        let t0 = t0();
        // The server says: now is 1_000_000, the handle is valid until 1_020_000.
        let lease = Lease::new(t0, 1_020_000, Some(1_000_000));
        assert!(!lease.is_expired(t0, Duration::ZERO));
        assert!(!lease.is_expired(t0 + 19 * SEC, Duration::from_millis(200)));
        assert!(lease.is_expired(t0 + 20 * SEC, Duration::from_millis(200)));
        assert!(lease.is_expired(t0 + 21 * SEC, Duration::ZERO));
        assert_eq!(
            lease.retry_budget(t0, 200 * Duration::from_millis(1), SEC),
            Duration::from_millis(19_800)
        );
    }

    #[test]
    fn an_unknown_server_time_leaves_expiry_to_the_server() {
        let t0 = t0();
        let lease = Lease::new(t0, 5, None);
        assert!(!lease.is_expired(t0 + 3600 * SEC, SEC));
        assert_eq!(lease.retry_budget(t0, SEC, 7 * SEC), 7 * SEC);
    }

    #[test]
    fn a_next_consume_time_before_the_date_is_expired_at_once() {
        let t0 = t0();
        let lease = Lease::new(t0, 1_000, Some(2_000));
        assert!(lease.is_expired(t0, Duration::from_millis(1)));
        assert_eq!(lease.retry_budget(t0, Duration::ZERO, SEC), Duration::ZERO);
        // A margin beyond the clock's range outlasts any known lease (it was taken for
        // none: every ack was sent); an unknown lease is still left to the server.
        let lease = Lease::new(t0, 1_020_000, Some(1_000_000));
        assert!(lease.is_expired(t0, Duration::MAX));
        assert!(!Lease::new(t0, 0, None).is_expired(t0, Duration::MAX));
    }
}
