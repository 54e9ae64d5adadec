//! Pure state machines: retry/backoff, consumer loop, transaction checker.
//!
//! The machines speak in operation terms ("receive 16 messages", "ack these handles"); they
//! know nothing of HTTP. A runtime driver turns each transmit into a request with the
//! [`client`](crate::client) builders, sends it, and feeds the decoded result (or a
//! [`FailureKind`]) back. No machine reads a clock: the monotonic `now: Instant` drives timers
//! and `wall_ms` (milliseconds since the Unix epoch) is compared with a message's
//! `NextConsumeTime`.
//!
//! # One shape for every machine
//!
//! * **getters** on `&self` (`in_hand()`, `is_drained()`, ...);
//! * **inputs**: `handle_*(now, wall_ms, id, result)` for each answered request and
//!   `handle_timeout(now, wall_ms)` when the timer fires;
//! * **commands** that only queue work (`ack`, `release`, `decide`, `shutdown`);
//! * **outputs**, all `#[must_use]`: `poll_transmit(now, wall_ms)` (the next request to
//!   send), `poll_event()` (the next thing to tell the user) and `poll_timeout()` (when to
//!   call `handle_timeout`).
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
//! use mq_proto::machine::{ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit};
//!
//! fn message(n: u32, wall_ms: u64) -> Message {
//!     Message {
//!         message_id: MessageId::new(format!("M{n}")).unwrap(),
//!         receipt_handle: ReceiptHandle::new(format!("M{n}-h")).unwrap(),
//!         body_md5: mq_proto::body_md5("hi"),
//!         body: "hi".into(),
//!         publish_time: wall_ms,
//!         next_consume_time: wall_ms + 300_000,
//!         first_consume_time: wall_ms,
//!         consumed_times: 1,
//!         tag: None,
//!         properties: Properties::new(),
//!     }
//! }
//!
//! let start = Instant::now(); // the driver owns the clocks
//! let (mut now, mut wall_ms) = (start, 1_700_000_000_000u64);
//! let mut machine = ConsumerMachine::new(ConsumerConfig::default(), 42);
//! let mut inbox = vec![message(1, wall_ms), message(2, wall_ms)];
//! let mut acked = Vec::new();
//! let mut drained = false;
//!
//! while !drained {
//!     // 1. Send everything that is due (here: answer it at once).
//!     while let Some(t) = machine.poll_transmit(now, wall_ms) {
//!         match t {
//!             ConsumerTransmit::Receive { id, .. } => {
//!                 let batch = std::mem::take(&mut inbox);
//!                 machine.handle_receive(now, wall_ms, id, Ok(batch));
//!             }
//!             ConsumerTransmit::Ack { id, handles } => {
//!                 acked.extend(handles);
//!                 machine.handle_ack(now, wall_ms, id, Ok(vec![]));
//!             }
//!         }
//!     }
//!     // 2. Tell the user (here: ack every message; stop once the inbox is empty).
//!     while let Some(e) = machine.poll_event() {
//!         match e {
//!             ConsumerEvent::Message(m) => {
//!                 machine.ack(now, wall_ms, &m.receipt_handle).unwrap();
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
//!         wall_ms += dt.as_millis() as u64;
//!         machine.handle_timeout(now, wall_ms);
//!     }
//! }
//! assert_eq!(acked.len(), 2);
//! assert!(now - start < Duration::from_secs(1));
//! ```

pub mod checker;
pub mod consumer;
mod poll;
pub mod retry;

pub use checker::{
    CheckerConfig, CheckerEvent, CheckerMachine, CheckerTransmit, DecideError, DecideRefused,
    Decision,
};
pub use consumer::{AckRefused, ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit};
pub use retry::{
    Backoff, FailureKind, Idempotency, Jitter, MIN_BACKOFF, RetryConfig, RetryDecision, RetryState,
};

use crate::ops::ErrorCode;

/// Most receipt handles in one ack request (PROTOCOL §6.9).
pub const MAX_ACK_HANDLES: usize = 16;

/// Whether a handle valid until `next_consume_time` (epoch ms) should no longer be used at
/// `wall_ms`, keeping `margin_ms` for the request to reach the server.
fn is_expired(next_consume_time: u64, wall_ms: u64, margin_ms: u64) -> bool {
    next_consume_time < wall_ms.saturating_add(margin_ms)
}

/// Per-handle codes meaning "this handle is no longer valid", which for a resent request are
/// most likely the effect of the earlier attempt.
fn is_gone(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::MessageNotExist | ErrorCode::ReceiptHandleError
    )
}
