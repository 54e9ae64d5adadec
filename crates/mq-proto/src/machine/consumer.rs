//! The one consumer machine: long polls, backpressure, batched settlements (ack, or commit /
//! rollback for the transaction checker, which is a consumer of half messages) with expiry
//! checks.
//!
//! See the [module docs](super) for the call order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::poll::PollSlot;
use super::retry::{Backoff, FailureKind, Idempotency, RetryConfig, RetryDecision, RetryState};
use super::{Lease, Received, is_gone};
use crate::message::Message;
use crate::ops::{AckKind, ConsumeKind, HandleFailure, attribute_failures};
use crate::types::{BatchSize, ReceiptHandle, WaitSeconds};
use crate::wire::consume::{Entry, PoisonMessage};

/// Settings of a [`ConsumerMachine`].
///
/// ```
/// use std::time::Duration;
/// use mq_proto::{BatchSize, ConsumeKind, WaitSeconds};
/// use mq_proto::machine::ConsumerConfig;
///
/// let c = ConsumerConfig::orderly()
///     .with_batch(BatchSize::new(8)?)
///     .with_wait(WaitSeconds::new(10)?)
///     .with_max_in_hand(32)
///     .with_ack_flush_delay(Duration::from_millis(50));
/// assert_eq!(c.kind(), ConsumeKind::Orderly);
/// assert_eq!(ConsumerConfig::default().kind(), ConsumeKind::Normal);
/// # Ok::<(), mq_proto::InvalidValue>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerConfig {
    kind: ConsumeKind,
    batch: BatchSize,
    wait: WaitSeconds,
    max_in_hand: usize,
    settle_batch: BatchSize,
    ack_flush_delay: Duration,
    ack_margin: Duration,
    min_empty_poll_interval: Duration,
    retry: RetryConfig,
}

impl Default for ConsumerConfig {
    /// Normal consumption, batches of 16, 30 s long poll, at most 64 messages in hand, up to
    /// 16 handles per ack flushed after 100 ms, 200 ms ack margin, empty polls at most once
    /// per second.
    fn default() -> Self {
        Self {
            kind: ConsumeKind::Normal,
            batch: BatchSize::MAX,
            wait: WaitSeconds::MAX,
            max_in_hand: 64,
            settle_batch: BatchSize::MAX,
            ack_flush_delay: Duration::from_millis(100),
            ack_margin: Duration::from_millis(200),
            min_empty_poll_interval: Duration::from_secs(1),
            retry: RetryConfig::default(),
        }
    }
}

impl ConsumerConfig {
    /// Defaults for normal (unordered) consumption.
    pub fn normal() -> Self {
        Self::default()
    }

    /// Defaults for orderly consumption (`trans=order`).
    pub fn orderly() -> Self {
        Self {
            kind: ConsumeKind::Orderly,
            ..Self::default()
        }
    }

    /// Defaults for the transaction checker: half messages (`trans=pop`), a 3 s long poll (as
    /// the official SDK samples; keeps shutdown prompt), every commit / rollback sent at once
    /// as its own request. [`CheckerConfig`](super::CheckerConfig) converts into this.
    pub fn half() -> Self {
        Self {
            kind: ConsumeKind::Half,
            wait: WaitSeconds::new(3).unwrap_or(WaitSeconds::MAX),
            settle_batch: BatchSize::MIN,
            ack_flush_delay: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Most handles per settlement request (one ack, commit or rollback request carries
    /// handles of one kind only).
    #[must_use]
    pub fn with_settle_batch(mut self, n: BatchSize) -> Self {
        self.settle_batch = n;
        self
    }

    /// Messages asked for per receive (fewer when close to the in-hand bound).
    #[must_use]
    pub fn with_batch(mut self, batch: BatchSize) -> Self {
        self.batch = batch;
        self
    }

    /// Long-poll seconds per receive.
    #[must_use]
    pub fn with_wait(mut self, wait: WaitSeconds) -> Self {
        self.wait = wait;
        self
    }

    /// Most messages handed out and neither acked nor released (0 is treated as 1).
    #[must_use]
    pub fn with_max_in_hand(mut self, n: usize) -> Self {
        self.max_in_hand = n.max(1);
        self
    }

    /// How long the first queued ack waits for more before a partial batch is sent.
    #[must_use]
    pub fn with_ack_flush_delay(mut self, d: Duration) -> Self {
        self.ack_flush_delay = d;
        self
    }

    /// A settlement is dropped (reported as [`ConsumerEvent::Expired`]) instead of sent when its
    /// handle has less than this margin of validity left. Validity is the server's
    /// `NextConsumeTime` minus the server's `Date` of the answer that brought the message,
    /// counted down on the monotonic clock (see [`Received`]); the local wall clock plays no
    /// part.
    #[must_use]
    pub fn with_ack_margin(mut self, margin: Duration) -> Self {
        self.ack_margin = margin;
        self
    }

    /// After a receive that came back empty, the next one starts no earlier than this long
    /// after the empty one was sent (guards against a hot loop with a 0 s wait).
    #[must_use]
    pub fn with_min_empty_poll_interval(mut self, d: Duration) -> Self {
        self.min_empty_poll_interval = d;
        self
    }

    /// Retry policy of acks; its backoff also paces receives after failures.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Normal or orderly.
    pub fn kind(&self) -> ConsumeKind {
        self.kind
    }

    /// Messages asked for per receive.
    pub fn batch(&self) -> BatchSize {
        self.batch
    }

    /// Long-poll seconds.
    pub fn wait(&self) -> WaitSeconds {
        self.wait
    }

    /// Bound on messages in hand.
    pub fn max_in_hand(&self) -> usize {
        self.max_in_hand
    }

    /// Most handles per settlement request.
    pub fn settle_batch(&self) -> BatchSize {
        self.settle_batch
    }

    /// Partial ack batch delay.
    pub fn ack_flush_delay(&self) -> Duration {
        self.ack_flush_delay
    }

    /// Ack expiry margin.
    pub fn ack_margin(&self) -> Duration {
        self.ack_margin
    }

    /// Pace of empty polls.
    pub fn min_empty_poll_interval(&self) -> Duration {
        self.min_empty_poll_interval
    }

    /// Retry policy.
    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }
}

/// A request the driver should send for a [`ConsumerMachine`]. Exhaustive on purpose: a
/// driver matches every kind without a catch-all arm, so a new kind fails to compile there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerTransmit {
    /// Consume messages (normal, orderly, or half messages for the checker); answer with
    /// [`ConsumerMachine::handle_poll`].
    Poll {
        /// Request id to pass back.
        id: u64,
        /// Normal, orderly or half.
        kind: ConsumeKind,
        /// `numOfMessages`.
        batch: BatchSize,
        /// `waitseconds`.
        wait: WaitSeconds,
    },
    /// Settle these handles (1..=16, one kind); answer with
    /// [`ConsumerMachine::handle_settle`].
    Settle {
        /// Request id to pass back.
        id: u64,
        /// Ack, commit or rollback.
        kind: AckKind,
        /// The handles, in the order to send them.
        handles: Vec<ReceiptHandle>,
    },
}

/// Something the user of a [`ConsumerMachine`] should know about.
///
/// The failure events quote the `id` of the request whose answer they report, so a driver
/// that kept the request's full error can attach it. Exhaustive on purpose, like
/// [`ConsumerTransmit`]: a driver matches every event without a catch-all arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// A received message, now in hand: settle it with [`ConsumerMachine::settle`] (or
    /// [`ack`](ConsumerMachine::ack)) or give it back with [`ConsumerMachine::release`].
    Message(Message),
    /// A message the client could not decode (see [`PoisonMessage`]). With a receipt handle
    /// it is in hand like a [`Message`](Self::Message): [`settle`](ConsumerMachine::settle)
    /// (ack) drops it, [`release`](ConsumerMachine::release) leaves it for redelivery.
    /// Without one it is not in hand (nothing can settle it).
    Poison(PoisonMessage),
    /// The server settled these handles.
    Settled {
        /// Ack, commit or rollback.
        kind: AckKind,
        /// The handles settled.
        handles: Vec<ReceiptHandle>,
    },
    /// The server refused to settle one handle (usually expired or superseded).
    Refused {
        /// Ack, commit or rollback.
        kind: AckKind,
        /// The server's per-handle answer.
        failure: HandleFailure,
    },
    /// A settlement was dropped locally: by the server's own clock the handle had expired
    /// (less than the margin left), so the message will be delivered again.
    Expired {
        /// Ack, commit or rollback.
        kind: AckKind,
        /// The handle.
        handle: ReceiptHandle,
    },
    /// Poll `id` failed; polling resumes after a backoff.
    PollFailed {
        /// The request that failed.
        id: u64,
        /// How it failed.
        failure: FailureKind,
    },
    /// Settlement request `id` failed for good; these handles were not (provably) settled.
    SettleFailed {
        /// The last attempt's request.
        id: u64,
        /// Ack, commit or rollback.
        kind: AckKind,
        /// How it failed.
        failure: FailureKind,
        /// The handles of the request.
        handles: Vec<ReceiptHandle>,
    },
    /// After [`ConsumerMachine::shutdown`]: nothing is outstanding any more. Emitted once.
    Drained,
}

/// Why [`ConsumerMachine::settle`] or [`ConsumerMachine::release`] refused a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckRefused {
    /// The handle is not in hand: never handed out, released, or its settlement finished.
    #[error("receipt handle is not in hand (unknown, released or already settled)")]
    UnknownHandle,
    /// A settlement of the handle is already queued or in flight.
    #[error("receipt handle is already being settled")]
    AlreadyAcked,
}

#[derive(Clone, Debug)]
struct Queued {
    handle: ReceiptHandle,
    kind: AckKind,
    lease: Lease,
    at: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    InFlight { id: u64 },
    Waiting { until: Instant },
}

#[derive(Clone, Debug)]
struct AckBatch {
    kind: AckKind,
    handles: Vec<(ReceiptHandle, Lease)>,
    retry: RetryState,
    phase: Phase,
}

/// The consumer loop as a pure state machine; the transaction checker is the same machine
/// on half messages ([`ConsumerConfig::half`]) whose settlements are commit or rollback.
///
/// * Keeps exactly one poll outstanding while running and while fewer than
///   [`max_in_hand`](ConsumerConfig::with_max_in_hand) messages are in hand (handed out and
///   neither acked nor released); a receive never asks for more than the remaining room.
/// * Queues settlements and sends them in batches of up to
///   [`settle_batch`](ConsumerConfig::with_settle_batch) handles of one kind, or after the
///   flush delay. A handle that has expired by the server's clock (`NextConsumeTime` − the answer's `Date`, counted
///   down locally; see [`Received`]) is dropped and reported instead.
/// * Retries failed settlement requests with the [`RetryConfig`]'s backoff for as long as their
///   handles are valid (its attempt limit does not apply: acks are idempotent; a resent batch
///   whose earlier attempt may have reached the server counts per-handle `MessageNotExist` /
///   `ReceiptHandleError` answers as success, since that attempt probably settled them).
///   Every answer's failures are assigned to handles by [`attribute_failures`].
/// * Backs off after failed polls (capped, jittered, never giving up) and reports each.
/// * [`shutdown`](Self::shutdown) stops polling, flushes settlements and emits
///   [`ConsumerEvent::Drained`] once no receive, no ack and no message in hand remains.
///
/// Request ids are unique per machine; answers with an unknown id are ignored.
///
/// ```
/// use std::time::Instant;
/// use mq_proto::machine::{
///     ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit, Received,
/// };
///
/// let now = Instant::now();
/// let mut m = ConsumerMachine::new(ConsumerConfig::default(), 1);
/// let Some(ConsumerTransmit::Poll { id, .. }) = m.poll_transmit(now) else { panic!() };
/// assert_eq!(m.poll_transmit(now), None); // only one poll at a time
/// m.handle_poll(now, id, Ok(Received::default()));
/// m.shutdown(now);
/// assert_eq!(m.poll_event(), Some(ConsumerEvent::Drained));
/// ```
#[derive(Debug)]
pub struct ConsumerMachine {
    config: ConsumerConfig,
    rng: fastrand::Rng,
    next_id: u64,
    receive: PollSlot,
    in_hand: HashMap<ReceiptHandle, Lease>,
    acking: HashSet<ReceiptHandle>,
    queue: VecDeque<Queued>,
    batches: Vec<AckBatch>,
    events: VecDeque<ConsumerEvent>,
    shutting_down: bool,
    drained: bool,
}

impl ConsumerMachine {
    /// A machine with this configuration; `seed` drives the backoff jitter.
    pub fn new(config: ConsumerConfig, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let backoff = Backoff::new(&config.retry, rng.u64(..));
        let receive = PollSlot::new(backoff, config.min_empty_poll_interval);
        Self {
            config,
            rng,
            receive,
            next_id: 1,
            in_hand: HashMap::new(),
            acking: HashSet::new(),
            queue: VecDeque::new(),
            batches: Vec::new(),
            events: VecDeque::new(),
            shutting_down: false,
            drained: false,
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Messages handed out and neither acked nor released.
    pub fn in_hand(&self) -> usize {
        self.in_hand.len()
    }

    /// Whether this handle is in hand.
    pub fn is_in_hand(&self, handle: &ReceiptHandle) -> bool {
        self.in_hand.contains_key(handle)
    }

    /// The last instant a settlement of this handle in hand can still be sent: its lease
    /// (the message's `NextConsumeTime`, PROTOCOL §3.4, placed on the local clock by the
    /// server's `Date`) less the ack margin; `now` when the margin reaches back beyond the
    /// clock's range (the handle counts as expired, as for a settlement). `None` when the
    /// handle is not in hand or its lease is unknown (no server time: expiry is left to
    /// the server).
    pub fn settle_by(&self, now: Instant, handle: &ReceiptHandle) -> Option<Instant> {
        let until = self.in_hand.get(handle)?.until?;
        Some(until.checked_sub(self.margin()).unwrap_or(now))
    }

    /// Handles whose settlement is queued, in flight or waiting for a retry.
    pub fn pending_acks(&self) -> usize {
        self.acking.len()
    }

    /// Settlement requests sent and not yet answered.
    pub fn acks_in_flight(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| matches!(b.phase, Phase::InFlight { .. }))
            .count()
    }

    /// The id of the poll in flight, if any.
    pub fn poll_in_flight(&self) -> Option<u64> {
        self.receive.in_flight()
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether [`ConsumerEvent::Drained`] has been emitted.
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    // ----- inputs -----

    /// The answer to [`ConsumerTransmit::Poll`] `id`: the messages (empty = none) with the
    /// server's time, or why the request failed. A 404 `MessageNotExist` failure is treated
    /// as an empty answer; [`FailureKind::Cancelled`] is not reported as an error.
    pub fn handle_poll(&mut self, now: Instant, id: u64, result: Result<Received, FailureKind>) {
        let Some(result) = self.receive.finish(now, id, result, self.shutting_down) else {
            return;
        };
        match result {
            Ok(Received {
                entries,
                server_time_ms,
            }) => {
                for entry in entries {
                    let (handle, next_consume_time) = match &entry {
                        Entry::Message(m) => (Some(&m.receipt_handle), Some(m.next_consume_time)),
                        Entry::Poison(p) => (p.receipt_handle.as_ref(), p.next_consume_time),
                    };
                    if let Some(h) = handle {
                        if self.in_hand.contains_key(h) || self.acking.contains(h) {
                            continue; // the same delivery twice: hand it out once
                        }
                        // A poison message without its NextConsumeTime: expiry is left to
                        // the server, as without a server time.
                        let lease = match next_consume_time {
                            Some(t) => Lease::new(now, t, server_time_ms),
                            None => Lease::new(now, 0, None),
                        };
                        self.in_hand.insert(h.clone(), lease);
                    }
                    self.events.push_back(match entry {
                        Entry::Message(m) => ConsumerEvent::Message(m),
                        Entry::Poison(p) => ConsumerEvent::Poison(p),
                    });
                }
            }
            Err(failure) => {
                if failure != FailureKind::Cancelled {
                    self.events
                        .push_back(ConsumerEvent::PollFailed { id, failure });
                }
            }
        }
        self.sweep_expired(now);
        self.check_drained();
    }

    /// The answer to [`ConsumerTransmit::Settle`] `id`: the per-handle failures (empty = all
    /// settled), or why the request failed. Failures are assigned to the batch's handles by
    /// [`attribute_failures`]: one that names no handle of the batch refuses every handle it
    /// could mean, so a refusal never counts as a settlement.
    pub fn handle_settle(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<Vec<HandleFailure>, FailureKind>,
    ) {
        let Some(pos) = self
            .batches
            .iter()
            .position(|b| b.phase == Phase::InFlight { id })
        else {
            return;
        };
        let mut batch = self.batches.remove(pos);
        match result {
            Ok(failures) => self.finish_batch(batch, failures),
            Err(failure) => match batch.retry.on_failure(now, &failure) {
                RetryDecision::Retry { after } => {
                    batch.phase = Phase::Waiting {
                        until: now.checked_add(after).unwrap_or(now),
                    };
                    self.batches.push(batch);
                }
                RetryDecision::GiveUp => {
                    let handles: Vec<ReceiptHandle> =
                        batch.handles.into_iter().map(|(h, _)| h).collect();
                    for h in &handles {
                        self.acking.remove(h);
                    }
                    self.events.push_back(ConsumerEvent::SettleFailed {
                        id,
                        kind: batch.kind,
                        failure,
                        handles,
                    });
                }
            },
        }
        self.sweep_expired(now);
        self.check_drained();
    }

    /// Timers: call when [`poll_timeout`](Self::poll_timeout) is reached (calling it early or
    /// late is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.receive.on_timeout(now);
        self.sweep_expired(now);
        self.check_drained();
    }

    // ----- commands -----

    /// Queues an ack of a message in hand: [`settle`](Self::settle) with [`AckKind::Ack`].
    ///
    /// # Errors
    ///
    /// As [`settle`](Self::settle).
    pub fn ack(&mut self, now: Instant, handle: &ReceiptHandle) -> Result<(), AckRefused> {
        self.settle(now, handle, AckKind::Ack)
    }

    /// Queues the settlement (ack, commit or rollback) of a message in hand. If its handle
    /// has already expired by the server's clock (less than the margin left) nothing is
    /// queued and [`ConsumerEvent::Expired`] is emitted.
    ///
    /// # Errors
    ///
    /// [`AckRefused::UnknownHandle`] when the handle is not in hand (never handed out,
    /// released, or settled); [`AckRefused::AlreadyAcked`] when its settlement is already
    /// queued or in flight. Nothing changes then.
    pub fn settle(
        &mut self,
        now: Instant,
        handle: &ReceiptHandle,
        kind: AckKind,
    ) -> Result<(), AckRefused> {
        let Some(lease) = self.in_hand.remove(handle) else {
            return Err(if self.acking.contains(handle) {
                AckRefused::AlreadyAcked
            } else {
                AckRefused::UnknownHandle
            });
        };
        if lease.is_expired(now, self.margin()) {
            self.events.push_back(ConsumerEvent::Expired {
                kind,
                handle: handle.clone(),
            });
        } else {
            self.acking.insert(handle.clone());
            self.queue.push_back(Queued {
                handle: handle.clone(),
                kind,
                lease,
                at: now,
            });
        }
        self.check_drained();
        Ok(())
    }

    /// Gives a message back without settling it (for the checker: the decision is not known
    /// yet): it stops counting as in hand, and the broker delivers it again after its
    /// `NextConsumeTime`.
    ///
    /// # Errors
    ///
    /// [`AckRefused`] as for [`settle`](Self::settle): the handle is not in hand, or its
    /// settlement is under way (a release cannot take it back).
    pub fn release(&mut self, handle: &ReceiptHandle) -> Result<(), AckRefused> {
        if self.in_hand.remove(handle).is_some() {
            self.check_drained();
            Ok(())
        } else if self.acking.contains(handle) {
            Err(AckRefused::AlreadyAcked)
        } else {
            Err(AckRefused::UnknownHandle)
        }
    }

    /// Releases every message in hand; returns how many there were.
    pub fn release_all(&mut self) -> usize {
        let n = self.in_hand.len();
        self.in_hand.clear();
        self.check_drained();
        n
    }

    /// Stops issuing polls and flushes queued settlements at once. A poll in flight is still
    /// awaited (the driver may abort it and report [`FailureKind::Cancelled`]); messages it
    /// brings are handed out as usual. [`ConsumerEvent::Drained`] follows once nothing is
    /// outstanding, messages in hand included (see [`release_all`](Self::release_all)).
    pub fn shutdown(&mut self, _now: Instant) {
        self.shutting_down = true;
        self.receive.stop();
        self.check_drained();
    }

    // ----- outputs -----

    /// The next request to send, if any is due at `now`; settlements whose handles have
    /// expired (by the server's clock) are dropped and reported instead.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ConsumerTransmit> {
        let t = self
            .poll_ack_retry(now)
            .or_else(|| self.poll_ack_flush(now))
            .or_else(|| self.poll_receive(now));
        self.check_drained();
        t
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let receive = self.receive.wake_at(self.shutting_down);
        let flush = self.queue.front().map(|q| {
            if self.front_run() >= self.settle_batch() || self.shutting_down {
                q.at
            } else {
                q.at.checked_add(self.config.ack_flush_delay)
                    .unwrap_or(q.at)
            }
        });
        let retries = self.batches.iter().filter_map(|b| match b.phase {
            Phase::Waiting { until } => Some(until),
            Phase::InFlight { .. } => None,
        });
        receive.into_iter().chain(flush).chain(retries).min()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ConsumerEvent> {
        self.events.pop_front()
    }

    // ----- internals -----

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn margin(&self) -> Duration {
        self.config.ack_margin
    }

    fn settle_batch(&self) -> usize {
        usize::from(self.config.settle_batch.get())
    }

    /// How many queued settlements at the front share the front's kind (at most a batch).
    fn front_run(&self) -> usize {
        let kind = self.queue.front().map(|q| q.kind);
        self.queue
            .iter()
            .take(self.settle_batch())
            .take_while(|q| Some(q.kind) == kind)
            .count()
    }

    fn poll_ack_retry(&mut self, now: Instant) -> Option<ConsumerTransmit> {
        let margin = self.margin();
        while let Some(pos) = self
            .batches
            .iter()
            .position(|b| matches!(b.phase, Phase::Waiting { until } if until <= now))
        {
            let batch = &mut self.batches[pos];
            let mut expired = Vec::new();
            batch.handles.retain(|(h, lease)| {
                let gone = lease.is_expired(now, margin);
                if gone {
                    expired.push(h.clone());
                }
                !gone
            });
            let kind = batch.kind;
            for handle in expired {
                self.acking.remove(&handle);
                self.events
                    .push_back(ConsumerEvent::Expired { kind, handle });
            }
            if self.batches[pos].handles.is_empty() {
                self.batches.remove(pos);
                continue;
            }
            let id = self.take_id();
            let batch = &mut self.batches[pos];
            batch.phase = Phase::InFlight { id };
            let handles = batch.handles.iter().map(|(h, _)| h.clone()).collect();
            return Some(ConsumerTransmit::Settle {
                id,
                kind: batch.kind,
                handles,
            });
        }
        None
    }

    fn poll_ack_flush(&mut self, now: Instant) -> Option<ConsumerTransmit> {
        let margin = self.margin();
        loop {
            let front = self.queue.front()?;
            let kind = front.kind;
            let n = self.front_run();
            let due = n >= self.settle_batch()
                || self.shutting_down
                || front
                    .at
                    .checked_add(self.config.ack_flush_delay)
                    .is_none_or(|t| t <= now);
            if !due {
                return None;
            }
            let mut handles = Vec::with_capacity(n);
            for q in self.queue.drain(..n) {
                if q.lease.is_expired(now, margin) {
                    self.acking.remove(&q.handle);
                    self.events.push_back(ConsumerEvent::Expired {
                        kind,
                        handle: q.handle,
                    });
                } else {
                    handles.push((q.handle, q.lease));
                }
            }
            if handles.is_empty() {
                continue;
            }
            let id = self.take_id();
            let seed = self.rng.u64(..);
            // An ack is worth retrying for as long as its handles are valid: keep trying
            // (with backoff) until the last one expires; expired handles are swept out of
            // waiting batches one by one. A short outage then costs no redelivery.
            let fallback = self.config.retry.budget();
            let valid_for = handles
                .iter()
                .map(|(_, lease)| lease.retry_budget(now, margin, fallback))
                .max()
                .unwrap_or(Duration::ZERO);
            let retry_config = self
                .config
                .retry
                .clone()
                .with_max_attempts(u32::MAX)
                .with_budget(valid_for);
            let retry = RetryState::new(retry_config, Idempotency::Idempotent, seed, now);
            let list = handles.iter().map(|(h, _)| h.clone()).collect();
            self.batches.push(AckBatch {
                kind,
                handles,
                retry,
                phase: Phase::InFlight { id },
            });
            return Some(ConsumerTransmit::Settle {
                id,
                kind,
                handles: list,
            });
        }
    }

    fn poll_receive(&mut self, now: Instant) -> Option<ConsumerTransmit> {
        if self.shutting_down {
            return None;
        }
        let room = self.config.max_in_hand.saturating_sub(self.in_hand.len());
        let next_id = &mut self.next_id;
        let (id, batch) = self.receive.try_start(now, room, self.config.batch, || {
            let id = *next_id;
            *next_id = next_id.wrapping_add(1);
            id
        })?;
        Some(ConsumerTransmit::Poll {
            id,
            kind: self.config.kind,
            batch,
            wait: self.config.wait,
        })
    }

    /// Turns a successful settlement answer into events.
    fn finish_batch(&mut self, batch: AckBatch, failures: Vec<HandleFailure>) {
        let resent = batch.retry.earlier_attempt_may_have_taken_effect();
        let mut acked = Vec::with_capacity(batch.handles.len());
        let mut failures = attribute_failures(batch.handles.iter().map(|(h, _)| h), failures);
        for (h, _) in batch.handles {
            self.acking.remove(&h);
            let failure = failures
                .iter()
                .position(|f| f.receipt_handle == h.as_str())
                .map(|i| failures.swap_remove(i));
            match failure {
                Some(failure) if !(resent && is_gone(&failure.code)) => {
                    self.events.push_back(ConsumerEvent::Refused {
                        kind: batch.kind,
                        failure,
                    });
                }
                _ => acked.push(h),
            }
        }
        if !acked.is_empty() {
            self.events.push_back(ConsumerEvent::Settled {
                kind: batch.kind,
                handles: acked,
            });
        }
    }

    /// Drops queued acks and acks waiting for a retry whose handles have expired.
    fn sweep_expired(&mut self, now: Instant) {
        let margin = self.margin();
        let mut expired = Vec::new();
        self.queue.retain(|q| {
            let gone = q.lease.is_expired(now, margin);
            if gone {
                expired.push((q.kind, q.handle.clone()));
            }
            !gone
        });
        for b in &mut self.batches {
            if matches!(b.phase, Phase::Waiting { .. }) {
                let kind = b.kind;
                b.handles.retain(|(h, lease)| {
                    let gone = lease.is_expired(now, margin);
                    if gone {
                        expired.push((kind, h.clone()));
                    }
                    !gone
                });
            }
        }
        self.batches.retain(|b| !b.handles.is_empty());
        for (kind, handle) in expired {
            self.acking.remove(&handle);
            self.events
                .push_back(ConsumerEvent::Expired { kind, handle });
        }
    }

    fn check_drained(&mut self) {
        if self.shutting_down
            && !self.drained
            && self.receive.in_flight().is_none()
            && self.queue.is_empty()
            && self.batches.is_empty()
            && self.in_hand.is_empty()
        {
            self.drained = true;
            self.events.push_back(ConsumerEvent::Drained);
        }
    }
}
