//! Configuration, errors and the publish result of the core.

use mq_proto::{ErrorCode, MessageId, ReceiptHandle};
use serde::{Deserialize, Serialize};

/// One day in milliseconds.
const DAY_MS: u64 = 86_400_000;

/// Timing and policy knobs of [`BrokerCore`](super::BrokerCore). All durations are in
/// milliseconds; the defaults are the service's documented values (PROTOCOL §6).
///
/// Durations of zero are treated as one millisecond and `max_deliveries` of zero as one, so
/// that every delivery makes a message invisible for a non-empty time.
///
/// ```
/// use mq_broker::core::CoreConfig;
/// let config = CoreConfig { invisibility_ms: 5_000, id_seed: 7, ..CoreConfig::default() };
/// assert_eq!(config.order_invisibility_ms, 60_000);
/// assert_eq!(config.max_deliveries, 288);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreConfig {
    /// Invisibility after a normal delivery (`NextConsumeTime` - now). Default 300 s.
    pub invisibility_ms: u64,
    /// Invisibility after an orderly delivery. Default 60 s.
    pub order_invisibility_ms: u64,
    /// Invisibility of a half message after a transaction-check pop. Default 10 s.
    pub half_check_interval_ms: u64,
    /// Time from publish after which an unresolved half message is dropped. Default 24 h.
    pub half_check_horizon_ms: u64,
    /// Deliveries per group after which an unacknowledged message is dead-lettered instead of
    /// being delivered again. Default 288.
    pub max_deliveries: u32,
    /// How long a stored message is kept, counted from the time it became deliverable.
    /// Default 3 days.
    pub retention_ms: u64,
    /// How far ahead `__STARTDELIVERTIME` may lie. Default 40 days.
    pub max_schedule_ahead_ms: u64,
    /// Whether a topic that was never declared is created on first use (publish, consume,
    /// ack). When `false`, only topics passed to
    /// [`declare_topic`](super::BrokerCore::declare_topic) exist and others answer
    /// `TopicNotExist`. Default `true`.
    pub auto_create_topics: bool,
    /// Seed of the message-id generator: ids are `hash(seed)` followed by a counter, so a core
    /// built with the same seed and fed the same calls assigns the same ids. Default 0.
    pub id_seed: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            invisibility_ms: 300_000,
            order_invisibility_ms: 60_000,
            half_check_interval_ms: 10_000,
            half_check_horizon_ms: DAY_MS,
            max_deliveries: 288,
            retention_ms: 3 * DAY_MS,
            max_schedule_ahead_ms: mq_proto::MAX_SCHEDULE_AHEAD_MS,
            auto_create_topics: true,
            id_seed: 0,
        }
    }
}

impl CoreConfig {
    /// The configuration with zero durations and counts raised to one.
    pub(crate) fn normalized(mut self) -> Self {
        self.invisibility_ms = self.invisibility_ms.max(1);
        self.order_invisibility_ms = self.order_invisibility_ms.max(1);
        self.half_check_interval_ms = self.half_check_interval_ms.max(1);
        self.half_check_horizon_ms = self.half_check_horizon_ms.max(1);
        self.max_deliveries = self.max_deliveries.max(1);
        self.retention_ms = self.retention_ms.max(1);
        self
    }
}

/// A request the core refused as a whole; maps one-to-one onto an `Error` response
/// (PROTOCOL §3.7) with `code.status()` as HTTP status.
///
/// ```
/// use mq_broker::core::CoreError;
/// use mq_proto::ErrorCode;
/// let e = CoreError::new(ErrorCode::TopicNotExist, "no such topic");
/// assert_eq!(e.code.status(), 404);
/// assert_eq!(e.to_string(), "TopicNotExist: no such topic");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CoreError {
    /// Protocol error code.
    pub code: ErrorCode,
    /// Human-readable message for the `Message` element.
    pub message: String,
}

impl CoreError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An error with the code's standard message.
    pub fn from_code(code: ErrorCode) -> Self {
        let message = code.default_message().to_owned();
        Self { code, message }
    }

    /// `InvalidArgument` with this message.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// An internal fault (an invariant of the core did not hold).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }
}

/// What [`BrokerCore::publish`](super::BrokerCore::publish) reports back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The id assigned to the message.
    pub message_id: MessageId,
    /// Upper-case hex MD5 of the body (PROTOCOL §3.8).
    pub body_md5: String,
    /// For a transactional message: the handle that commits or rolls it back until
    /// publish time + `__TransCheckT`. `None` otherwise.
    pub receipt_handle: Option<ReceiptHandle>,
    /// Whether the message became consumable right now for at least one group (a normal or
    /// past-scheduled message on a topic with registered groups). A server wakes the
    /// long-poll waiters of the topic when this is `true`.
    pub visible_now: bool,
}
