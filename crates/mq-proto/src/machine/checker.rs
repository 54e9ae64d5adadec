//! The transaction checker's settings and the user's verdict. The checker itself is a
//! [`ConsumerMachine`](super::ConsumerMachine) on half messages: `CheckerConfig` converts
//! into [`ConsumerConfig::half`], and a [`Decision`] becomes a commit, a rollback or a
//! release.

use std::ops::Deref;
use std::time::Duration;

use super::ConsumerConfig;
use super::retry::RetryConfig;
use crate::ops::AckKind;
use crate::types::{BatchSize, WaitSeconds};

/// Settings of the transaction checker: a [`ConsumerConfig`] on half messages
/// ([`ConsumerConfig::half`]: every decision its own request, sent at once), with only the
/// settings that mean something to a checker. It derefs to that [`ConsumerConfig`] for
/// reading (`batch()`, `wait()`, `max_in_hand()`, `min_empty_poll_interval()`, `retry()`).
///
/// ```
/// use mq_proto::{BatchSize, ConsumeKind, WaitSeconds};
/// use mq_proto::machine::{CheckerConfig, ConsumerConfig};
/// use std::time::Duration;
///
/// let c = CheckerConfig::default()
///     .with_wait(WaitSeconds::new(10)?)
///     .with_margin(Duration::from_millis(500));
/// assert_eq!(c.wait().get(), 10);
/// assert_eq!(c.batch(), BatchSize::MAX);
/// let consumer = ConsumerConfig::from(c);
/// assert_eq!(consumer.kind(), ConsumeKind::Half);
/// assert_eq!(consumer.ack_margin(), Duration::from_millis(500));
/// assert_eq!(consumer.settle_batch(), BatchSize::MIN); // each decision its own request
/// # Ok::<(), mq_proto::InvalidValue>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CheckerConfig(ConsumerConfig);

impl Default for CheckerConfig {
    /// [`ConsumerConfig::half`]: batches of 16, 3 s long poll (as the official SDK samples;
    /// keeps shutdown prompt), at most 64 undecided checks in hand, 200 ms expiry margin,
    /// empty polls at most once per second.
    fn default() -> Self {
        Self(ConsumerConfig::half())
    }
}

impl CheckerConfig {
    /// Half messages asked for per poll (fewer when close to the in-hand bound).
    #[must_use]
    pub fn with_batch(self, batch: BatchSize) -> Self {
        Self(self.0.with_batch(batch))
    }

    /// Long-poll seconds per poll.
    #[must_use]
    pub fn with_wait(self, wait: WaitSeconds) -> Self {
        Self(self.0.with_wait(wait))
    }

    /// Most checks handed out and not yet decided (0 is treated as 1).
    #[must_use]
    pub fn with_max_in_hand(self, n: usize) -> Self {
        Self(self.0.with_max_in_hand(n))
    }

    /// A decision is dropped (reported as [`ConsumerEvent::Expired`](super::ConsumerEvent))
    /// instead of sent when its handle has less than this margin of validity left
    /// ([`ConsumerConfig::with_ack_margin`]).
    #[must_use]
    pub fn with_margin(self, margin: Duration) -> Self {
        Self(self.0.with_ack_margin(margin))
    }

    /// After an empty poll, the next starts no earlier than this long after the empty one
    /// was sent.
    #[must_use]
    pub fn with_min_empty_poll_interval(self, d: Duration) -> Self {
        Self(self.0.with_min_empty_poll_interval(d))
    }

    /// Retry policy of decisions; its backoff also paces polls after failures.
    #[must_use]
    pub fn with_retry(self, retry: RetryConfig) -> Self {
        Self(self.0.with_retry(retry))
    }

    /// Expiry margin ([`ConsumerConfig::ack_margin`]).
    pub fn margin(&self) -> Duration {
        self.0.ack_margin()
    }
}

impl Deref for CheckerConfig {
    type Target = ConsumerConfig;

    fn deref(&self) -> &ConsumerConfig {
        &self.0
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
    /// The [`ConsumerConfig::half`] these settings stand for.
    fn from(c: CheckerConfig) -> Self {
        c.0
    }
}
