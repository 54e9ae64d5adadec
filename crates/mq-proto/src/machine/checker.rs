//! The transaction checker: polls half messages and sends the user's commit/rollback
//! decisions.
//!
//! See the [module docs](super) for the call order every machine follows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::poll::PollSlot;
use super::retry::{Backoff, FailureKind, Idempotency, RetryConfig, RetryDecision, RetryState};
use super::{Lease, Received, is_gone};
use crate::message::Message;
use crate::ops::{AckKind, HandleFailure, attribute_failures};
use crate::types::{BatchSize, ReceiptHandle, WaitSeconds};

/// Settings of a [`CheckerMachine`].
///
/// ```
/// use mq_proto::{BatchSize, WaitSeconds};
/// use mq_proto::machine::CheckerConfig;
///
/// let c = CheckerConfig::default().with_wait(WaitSeconds::new(10)?);
/// assert_eq!(c.wait().get(), 10);
/// assert_eq!(c.batch(), BatchSize::MAX);
/// # Ok::<(), mq_proto::InvalidValue>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CheckerConfig {
    batch: BatchSize,
    wait: WaitSeconds,
    max_in_hand: usize,
    margin_ms: u64,
    min_empty_poll_interval: Duration,
    retry: RetryConfig,
}

impl Default for CheckerConfig {
    /// Batches of 16, 3 s long poll (as the official SDK samples; keeps shutdown prompt),
    /// at most 64 undecided checks in hand, 200 ms expiry margin, empty polls at most once
    /// per second.
    fn default() -> Self {
        Self {
            batch: BatchSize::MAX,
            wait: WaitSeconds::new(3).unwrap_or(WaitSeconds::MAX),
            max_in_hand: 64,
            margin_ms: 200,
            min_empty_poll_interval: Duration::from_secs(1),
            retry: RetryConfig::default(),
        }
    }
}

impl CheckerConfig {
    /// Half messages asked for per poll (fewer when close to the in-hand bound).
    #[must_use]
    pub fn with_batch(mut self, batch: BatchSize) -> Self {
        self.batch = batch;
        self
    }

    /// Long-poll seconds per poll.
    #[must_use]
    pub fn with_wait(mut self, wait: WaitSeconds) -> Self {
        self.wait = wait;
        self
    }

    /// Most checks handed out and not yet decided (0 is treated as 1).
    #[must_use]
    pub fn with_max_in_hand(mut self, n: usize) -> Self {
        self.max_in_hand = n.max(1);
        self
    }

    /// A decision is dropped (reported as [`CheckerEvent::DecideExpired`]) instead of sent
    /// when its handle has less than this margin (ms) of validity left, by the server's clock
    /// (`NextConsumeTime` minus the answer's `Date`, counted down locally; see [`Received`]).
    #[must_use]
    pub fn with_margin_ms(mut self, ms: u64) -> Self {
        self.margin_ms = ms;
        self
    }

    /// After an empty poll, the next starts no earlier than this long after the empty one
    /// was sent.
    #[must_use]
    pub fn with_min_empty_poll_interval(mut self, d: Duration) -> Self {
        self.min_empty_poll_interval = d;
        self
    }

    /// Retry policy of decisions; its backoff also paces polls after failures.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Half messages per poll.
    pub fn batch(&self) -> BatchSize {
        self.batch
    }

    /// Long-poll seconds.
    pub fn wait(&self) -> WaitSeconds {
        self.wait
    }

    /// Bound on undecided checks in hand.
    pub fn max_in_hand(&self) -> usize {
        self.max_in_hand
    }

    /// Expiry margin (ms).
    pub fn margin_ms(&self) -> u64 {
        self.margin_ms
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

/// The user's verdict on a half message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Deliver the message to consumers.
    Commit,
    /// Discard the message.
    Rollback,
    /// Not known yet: send nothing; the broker offers the message again later.
    Unknown,
}

impl Decision {
    /// The request this decision needs, if any.
    pub fn ack_kind(self) -> Option<AckKind> {
        match self {
            Self::Commit => Some(AckKind::Commit),
            Self::Rollback => Some(AckKind::Rollback),
            Self::Unknown => None,
        }
    }
}

/// A request the driver should send for a [`CheckerMachine`] (deliberately exhaustive: a
/// driver must handle every kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckerTransmit {
    /// Consume half messages (`trans=pop`); answer with [`CheckerMachine::handle_poll`].
    ConsumeHalf {
        /// Request id to pass back.
        id: u64,
        /// `numOfMessages`.
        batch: BatchSize,
        /// `waitseconds`.
        wait: WaitSeconds,
    },
    /// Commit or roll back one handle; answer with [`CheckerMachine::handle_decide`].
    Decide {
        /// Request id to pass back.
        id: u64,
        /// The half message's handle.
        handle: ReceiptHandle,
        /// [`AckKind::Commit`] or [`AckKind::Rollback`].
        kind: AckKind,
    },
}

/// Why a decision did not take effect.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecideError {
    /// The server refused the handle (usually expired or superseded).
    Rejected(HandleFailure),
    /// The request failed for good.
    Failed(FailureKind),
}

/// Something the user of a [`CheckerMachine`] should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckerEvent {
    /// A half message to check: answer with [`CheckerMachine::decide`].
    Check(Message),
    /// The decision took effect.
    Decided {
        /// The handle decided.
        handle: ReceiptHandle,
        /// Commit or rollback.
        kind: AckKind,
    },
    /// The decision did not take effect; the broker will offer the message again.
    DecideFailed {
        /// The handle decided.
        handle: ReceiptHandle,
        /// Commit or rollback.
        kind: AckKind,
        /// What went wrong.
        error: DecideError,
    },
    /// The decision was dropped locally: by the server's own clock the handle had expired
    /// (less than the margin left). The broker will offer the message again.
    DecideExpired {
        /// The handle decided.
        handle: ReceiptHandle,
        /// Commit or rollback.
        kind: AckKind,
    },
    /// A poll failed; polling resumes after a backoff.
    PollError(FailureKind),
    /// After [`CheckerMachine::shutdown`]: nothing is outstanding any more. Emitted once.
    Drained,
}

/// Why [`CheckerMachine::decide`] refused a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecideRefused {
    /// The handle is not awaiting a decision (never offered, released, or settled).
    #[error("receipt handle is not awaiting a decision")]
    UnknownHandle,
    /// A decision for the handle is already being sent.
    #[error("a decision for this receipt handle is already being sent")]
    AlreadyDecided,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Ready,
    InFlight { id: u64 },
    Waiting { until: Instant },
}

#[derive(Clone, Debug)]
struct Pending {
    handle: ReceiptHandle,
    kind: AckKind,
    lease: Lease,
    retry: RetryState,
    phase: Phase,
}

/// The transaction checker as a pure state machine.
///
/// Polls half messages (one poll outstanding at a time, while fewer than
/// [`max_in_hand`](CheckerConfig::with_max_in_hand) checks await a decision), emits
/// [`CheckerEvent::Check`] for each, and sends each Commit/Rollback exactly once as its own
/// request (resent only after a transport failure, per the [`RetryConfig`]; a resend whose
/// earlier attempt may have reached the server counts `MessageNotExist`/`ReceiptHandleError`
/// as success). [`Decision::Unknown`] sends nothing. Decisions for handles that have expired
/// by the server's clock (see [`Received`]) are dropped and reported.
///
/// ```
/// use std::time::Instant;
/// use mq_proto::machine::{CheckerConfig, CheckerEvent, CheckerMachine, CheckerTransmit, Received};
///
/// let now = Instant::now();
/// let mut m = CheckerMachine::new(CheckerConfig::default(), 1);
/// let Some(CheckerTransmit::ConsumeHalf { id, .. }) = m.poll_transmit(now) else { panic!() };
/// m.shutdown(now);
/// m.handle_poll(now, id, Ok(Received::default()));
/// assert_eq!(m.poll_event(), Some(CheckerEvent::Drained));
/// ```
#[derive(Debug)]
pub struct CheckerMachine {
    config: CheckerConfig,
    rng: fastrand::Rng,
    next_id: u64,
    poll: PollSlot,
    offered: HashMap<ReceiptHandle, Lease>,
    deciding: HashSet<ReceiptHandle>,
    pending: Vec<Pending>,
    events: VecDeque<CheckerEvent>,
    shutting_down: bool,
    drained: bool,
}

impl CheckerMachine {
    /// A machine with this configuration; `seed` drives the backoff jitter.
    pub fn new(config: CheckerConfig, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let backoff = Backoff::new(&config.retry, rng.u64(..));
        let poll = PollSlot::new(backoff, config.min_empty_poll_interval);
        Self {
            config,
            rng,
            poll,
            next_id: 1,
            offered: HashMap::new(),
            deciding: HashSet::new(),
            pending: Vec::new(),
            events: VecDeque::new(),
            shutting_down: false,
            drained: false,
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &CheckerConfig {
        &self.config
    }

    /// Checks handed out and not yet decided.
    pub fn in_hand(&self) -> usize {
        self.offered.len()
    }

    /// Decisions queued, in flight or waiting for a retry.
    pub fn pending_decisions(&self) -> usize {
        self.pending.len()
    }

    /// The id of the poll in flight, if any.
    pub fn poll_in_flight(&self) -> Option<u64> {
        self.poll.in_flight()
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether [`CheckerEvent::Drained`] has been emitted.
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    // ----- inputs -----

    /// The answer to [`CheckerTransmit::ConsumeHalf`] `id`: the half messages with the
    /// server's time, or why the poll failed. A 404 `MessageNotExist` failure is an empty
    /// answer; [`FailureKind::Cancelled`] is not reported as an error.
    pub fn handle_poll(&mut self, now: Instant, id: u64, result: Result<Received, FailureKind>) {
        let Some(result) = self.poll.finish(now, id, result, self.shutting_down) else {
            return;
        };
        match result {
            Ok(Received {
                messages,
                server_time_ms,
            }) => {
                for m in messages {
                    let h = &m.receipt_handle;
                    if self.offered.contains_key(h) || self.deciding.contains(h) {
                        continue;
                    }
                    let lease = Lease::new(now, m.next_consume_time, server_time_ms);
                    self.offered.insert(h.clone(), lease);
                    self.events.push_back(CheckerEvent::Check(m));
                }
            }
            Err(failure) => {
                if failure != FailureKind::Cancelled {
                    self.events.push_back(CheckerEvent::PollError(failure));
                }
            }
        }
        self.sweep_expired(now);
        self.check_drained();
    }

    /// The answer to [`CheckerTransmit::Decide`] `id`: per-handle failures (empty =
    /// success), or why the request failed. Any failure in the answer, whichever handle it
    /// names (or none), refuses the decision ([`attribute_failures`]).
    pub fn handle_decide(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<Vec<HandleFailure>, FailureKind>,
    ) {
        let Some(pos) = self
            .pending
            .iter()
            .position(|p| p.phase == Phase::InFlight { id })
        else {
            return;
        };
        let mut p = self.pending.remove(pos);
        match result {
            Ok(failures) => {
                let resent = p.retry.earlier_attempt_may_have_reached_server();
                let failure = attribute_failures([&p.handle], failures).pop();
                self.deciding.remove(&p.handle);
                let event = match failure {
                    Some(f) if !(resent && is_gone(&f.code)) => CheckerEvent::DecideFailed {
                        handle: p.handle,
                        kind: p.kind,
                        error: DecideError::Rejected(f),
                    },
                    _ => CheckerEvent::Decided {
                        handle: p.handle,
                        kind: p.kind,
                    },
                };
                self.events.push_back(event);
            }
            Err(failure) => match p.retry.on_failure(now, &failure) {
                RetryDecision::Retry { after } => {
                    p.phase = Phase::Waiting {
                        until: now.checked_add(after).unwrap_or(now),
                    };
                    self.pending.push(p);
                }
                RetryDecision::GiveUp => {
                    self.deciding.remove(&p.handle);
                    self.events.push_back(CheckerEvent::DecideFailed {
                        handle: p.handle,
                        kind: p.kind,
                        error: DecideError::Failed(failure),
                    });
                }
            },
        }
        self.sweep_expired(now);
        self.check_drained();
    }

    /// Timers: call when [`poll_timeout`](Self::poll_timeout) is reached (early or late is
    /// harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.poll.on_timeout(now);
        self.sweep_expired(now);
        self.check_drained();
    }

    // ----- commands -----

    /// Records the user's decision for an offered half message. Commit/Rollback queue one
    /// request (or [`CheckerEvent::DecideExpired`] if the handle has already expired by the
    /// server's clock); Unknown just forgets the message.
    pub fn decide(
        &mut self,
        now: Instant,
        handle: &ReceiptHandle,
        decision: Decision,
    ) -> Result<(), DecideRefused> {
        let Some(lease) = self.offered.remove(handle) else {
            return Err(if self.deciding.contains(handle) {
                DecideRefused::AlreadyDecided
            } else {
                DecideRefused::UnknownHandle
            });
        };
        if let Some(kind) = decision.ack_kind() {
            if lease.is_expired(now, self.margin()) {
                self.events.push_back(CheckerEvent::DecideExpired {
                    handle: handle.clone(),
                    kind,
                });
            } else {
                let seed = self.rng.u64(..);
                self.deciding.insert(handle.clone());
                // Worth retrying for as long as the handle is valid (as for consumer acks).
                let valid_for = lease.retry_budget(now, self.margin(), self.config.retry.budget());
                let retry_config = self
                    .config
                    .retry
                    .clone()
                    .with_max_attempts(u32::MAX)
                    .with_budget(valid_for);
                self.pending.push(Pending {
                    handle: handle.clone(),
                    kind,
                    lease,
                    retry: RetryState::new(retry_config, Idempotency::Idempotent, seed, now),
                    phase: Phase::Ready,
                });
            }
        }
        self.check_drained();
        Ok(())
    }

    /// Forgets every undecided check (as if each were decided Unknown); returns how many.
    pub fn release_all(&mut self) -> usize {
        let n = self.offered.len();
        self.offered.clear();
        self.check_drained();
        n
    }

    /// Stops polling. A poll in flight is still awaited (the driver may abort it and report
    /// [`FailureKind::Cancelled`]); decisions are still sent. [`CheckerEvent::Drained`]
    /// follows once no poll, no decision and no undecided check remains (see
    /// [`release_all`](Self::release_all)).
    pub fn shutdown(&mut self, _now: Instant) {
        self.shutting_down = true;
        self.poll.stop();
        self.check_drained();
    }

    // ----- outputs -----

    /// The next request to send, if any is due at `now`; decisions whose handles have
    /// expired (by the server's clock) are dropped and reported instead.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<CheckerTransmit> {
        let t = self.poll_decision(now).or_else(|| self.poll_half(now));
        self.check_drained();
        t
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let poll = self.poll.wake_at(self.shutting_down);
        let retries = self.pending.iter().filter_map(|p| match p.phase {
            Phase::Waiting { until } => Some(until),
            Phase::Ready | Phase::InFlight { .. } => None,
        });
        poll.into_iter().chain(retries).min()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<CheckerEvent> {
        self.events.pop_front()
    }

    // ----- internals -----

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn margin(&self) -> Duration {
        Duration::from_millis(self.config.margin_ms)
    }

    fn poll_decision(&mut self, now: Instant) -> Option<CheckerTransmit> {
        let margin = self.margin();
        while let Some(pos) = self.pending.iter().position(|p| match p.phase {
            Phase::Ready => true,
            Phase::Waiting { until } => until <= now,
            Phase::InFlight { .. } => false,
        }) {
            if self.pending[pos].lease.is_expired(now, margin) {
                let p = self.pending.remove(pos);
                self.deciding.remove(&p.handle);
                self.events.push_back(CheckerEvent::DecideExpired {
                    handle: p.handle,
                    kind: p.kind,
                });
                continue;
            }
            let id = self.take_id();
            let p = &mut self.pending[pos];
            p.phase = Phase::InFlight { id };
            return Some(CheckerTransmit::Decide {
                id,
                handle: p.handle.clone(),
                kind: p.kind,
            });
        }
        None
    }

    fn poll_half(&mut self, now: Instant) -> Option<CheckerTransmit> {
        if self.shutting_down {
            return None;
        }
        let room = self.config.max_in_hand.saturating_sub(self.offered.len());
        let next_id = &mut self.next_id;
        let (id, batch) = self.poll.try_start(now, room, self.config.batch, || {
            let id = *next_id;
            *next_id = next_id.wrapping_add(1);
            id
        })?;
        Some(CheckerTransmit::ConsumeHalf {
            id,
            batch,
            wait: self.config.wait,
        })
    }

    fn sweep_expired(&mut self, now: Instant) {
        let margin = self.margin();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if !matches!(p.phase, Phase::InFlight { .. }) && p.lease.is_expired(now, margin) {
                let p = self.pending.remove(i);
                self.deciding.remove(&p.handle);
                self.events.push_back(CheckerEvent::DecideExpired {
                    handle: p.handle,
                    kind: p.kind,
                });
            } else {
                i += 1;
            }
        }
    }

    fn check_drained(&mut self) {
        if self.shutting_down
            && !self.drained
            && self.poll.in_flight().is_none()
            && self.pending.is_empty()
            && self.offered.is_empty()
        {
            self.drained = true;
            self.events.push_back(CheckerEvent::Drained);
        }
    }
}
