//! The transaction checker's settings and the user's verdict. The checker itself is a
//! [`ConsumerMachine`](super::ConsumerMachine) on half messages: `CheckerConfig` converts
//! into [`ConsumerConfig::half`], and a [`Decision`] becomes a commit, a rollback or a
//! release.

use std::time::Duration;

use super::ConsumerConfig;
use super::retry::RetryConfig;
use crate::ops::AckKind;
use crate::types::{BatchSize, WaitSeconds};

/// Settings of the transaction checker (a [`ConsumerMachine`](super::ConsumerMachine) on
/// half messages; see [`ConsumerConfig::half`]).
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
    margin: Duration,
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
            margin: Duration::from_millis(200),
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

    /// A decision is dropped (reported as [`ConsumerEvent::Expired`](super::ConsumerEvent))
    /// instead of sent
    /// when its handle has less than this margin of validity left, by the server's clock
    /// (`NextConsumeTime` minus the answer's `Date`, counted down locally; see
    /// [`Received`](super::Received)).
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
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

    /// Expiry margin.
    pub fn margin(&self) -> Duration {
        self.margin
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

impl From<CheckerConfig> for ConsumerConfig {
    /// [`ConsumerConfig::half`] with these settings: every decision its own request, sent at
    /// once.
    fn from(c: CheckerConfig) -> Self {
        ConsumerConfig::half()
            .with_batch(c.batch)
            .with_wait(c.wait)
            .with_max_in_hand(c.max_in_hand)
            .with_ack_margin(c.margin)
            .with_min_empty_poll_interval(c.min_empty_poll_interval)
            .with_retry(c.retry)
    }
}
