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
    /// How long a message no group holds any more (acked or skipped by every group,
    /// published while its topic had no group) is kept, for a reset of a consumer offset
    /// and for lookups; never beyond [`retention_ms`](Self::retention_ms). 0 drops such
    /// messages at the topic's next call. Default 1 hour.
    pub consumed_retention_ms: u64,
    /// At most this many bytes (bodies and properties) of such messages per topic; the
    /// oldest released go first. Default 16 MiB.
    pub consumed_retention_bytes: u64,
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
            consumed_retention_ms: 3_600_000,
            consumed_retention_bytes: 16 * 1024 * 1024,
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

    /// `TopicNotExist` for `topic`, with the service's message.
    pub(crate) fn topic_not_exist(topic: &mq_proto::TopicName) -> Self {
        Self::new(
            ErrorCode::TopicNotExist,
            format!("The topic you provided does not exist: {topic}"),
        )
    }

    /// `SubscriptionNotExist` for a group not registered (created or consuming) on `topic`.
    pub(crate) fn subscription_not_exist(
        group: &mq_proto::GroupId,
        topic: &mq_proto::TopicName,
    ) -> Self {
        Self::new(
            ErrorCode::SubscriptionNotExist,
            format!("The consumer group {group} is not registered on {topic}"),
        )
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

/// The message type of a topic: Apache RocketMQ 5's `message.type` topic attribute and the
/// ApsaraMQ console's / ONS API's topic `MessageType` (`ORDER` is accepted for `FIFO`, the
/// ONS 1.x name of ordered topics).
///
/// A topic of the built-in broker that was auto-created or declared with `--topic` is
/// [`Mixed`](Self::Mixed) and takes every kind of message; a topic created with a type
/// through the admin API takes only messages of that type ([`accepts`](Self::accepts)), as
/// RocketMQ 5 brokers checking message types do.
///
/// ```
/// use mq_broker::core::TopicMessageType;
/// use mq_proto::TopicMessage;
/// let order: TopicMessageType = "order".parse()?;
/// assert_eq!(order, TopicMessageType::Fifo);
/// let sharded = TopicMessage::new("x")?.with_sharding_key("user-1")?;
/// assert_eq!(TopicMessageType::of_message(&sharded), TopicMessageType::Fifo);
/// assert!(order.accepts(&sharded));
/// assert!(!TopicMessageType::Normal.accepts(&sharded));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicMessageType {
    /// Normal messages.
    Normal,
    /// Ordered (FIFO) messages with a sharding key (`__SHARDINGKEY`, RocketMQ's message
    /// group).
    Fifo,
    /// Delayed and scheduled messages (`__STARTDELIVERTIME`).
    Delay,
    /// Transactional (half) messages (`__TransCheckT`).
    Transaction,
    /// Any of the above (a RocketMQ broker must enable mixed message types,
    /// `enableMixedMessageType`).
    Mixed,
}

impl TopicMessageType {
    /// The attribute value: `NORMAL`, `FIFO`, `DELAY`, `TRANSACTION` or `MIXED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Fifo => "FIFO",
            Self::Delay => "DELAY",
            Self::Transaction => "TRANSACTION",
            Self::Mixed => "MIXED",
        }
    }

    /// The type of one message, by its system properties: `__TransCheckT` → transaction,
    /// else `__SHARDINGKEY` → FIFO, else `__STARTDELIVERTIME` → delay, else normal (never
    /// [`Mixed`](Self::Mixed)).
    pub fn of_message(message: &mq_proto::TopicMessage) -> Self {
        if message.trans_check_immunity().is_some() {
            Self::Transaction
        } else if message.sharding_key().is_some() {
            Self::Fifo
        } else if message.start_deliver_time().is_some() {
            Self::Delay
        } else {
            Self::Normal
        }
    }

    /// Whether a topic of this type takes `message`: a mixed topic takes every message,
    /// another only messages of its own type.
    pub fn accepts(self, message: &mq_proto::TopicMessage) -> bool {
        self == Self::Mixed || self == Self::of_message(message)
    }
}

impl std::str::FromStr for TopicMessageType {
    type Err = String;

    /// The attribute value in any case; `ORDER` (the ONS name) for `FIFO`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("ORDER") {
            return Ok(Self::Fifo);
        }
        [
            Self::Normal,
            Self::Fifo,
            Self::Delay,
            Self::Transaction,
            Self::Mixed,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!(
                "{s:?} is not a topic message type (mixed, normal, fifo or order, delay, transaction)"
            )
        })
    }
}

/// The longest invisibility a group or the broker may have, ms: 12 hours, the longest
/// invisible time Apache RocketMQ 5 accepts (its proxy's `maxInvisibleTimeMills`; the HTTP
/// protocol documents only its 300 s / 60 s defaults, PROTOCOL §6.3). It keeps
/// `NextConsumeTime` far inside the signed 64-bit range SDKs parse it into.
pub const MAX_INVISIBILITY_MS: u64 = 12 * 3_600_000;

/// A consumer group's own delivery settings, replacing the broker-wide
/// [`CoreConfig::invisibility_ms`] / [`CoreConfig::order_invisibility_ms`] and
/// [`CoreConfig::max_deliveries`] for that group on every topic of its instance (`None`:
/// the broker-wide value). Set when a group is created (admin API, `--group`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Invisibility after a normal or orderly delivery of this group, ms (1 to
    /// [`MAX_INVISIBILITY_MS`]).
    pub invisibility_ms: Option<u64>,
    /// Deliveries after which this group dead-letters an unacknowledged message (at least 1).
    pub max_deliveries: Option<u32>,
}
