//! Counters reported by [`BrokerCore::stats`](super::BrokerCore::stats).

use serde::Serialize;

/// A snapshot of the whole core.
///
/// ```
/// use mq_broker::core::{BrokerCore, CoreConfig};
/// use mq_proto::{TopicName, TopicMessage};
/// let mut core = BrokerCore::new(CoreConfig::default());
/// let topic = TopicName::new("T")?;
/// core.publish(1_000, None, &topic, TopicMessage::new("hi")?)?;
/// let stats = core.stats();
/// assert_eq!(stats.published, 1);
/// assert_eq!(stats.topics[0].topic, "T");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// The time the snapshot describes (the latest time passed to the core), epoch ms.
    pub at_ms: u64,
    /// Messages published on all topics (normal, scheduled, ordered and transactional).
    pub published: u64,
    /// Successful acks over all groups.
    pub acked: u64,
    /// Per topic, ordered by instance then name.
    pub topics: Vec<TopicStats>,
}

/// Counters of one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TopicStats {
    /// Instance id (`ns`); `None` for the default instance.
    pub instance: Option<String>,
    /// Topic name.
    pub topic: String,
    /// Whether the topic was declared (rather than auto-created).
    pub declared: bool,
    /// The messages it takes: `NORMAL`, `FIFO`, `DELAY`, `TRANSACTION` or `MIXED` (see
    /// [`TopicMessageType`](super::TopicMessageType)).
    pub message_type: &'static str,
    /// Messages published to this topic.
    pub published: u64,
    /// Messages currently stored for at least one group (or dead letter).
    pub stored: u64,
    /// Messages no group holds any more, kept for a while for a reset of a consumer offset
    /// and lookups ([`CoreConfig::consumed_retention_ms`](super::CoreConfig::consumed_retention_ms)).
    pub consumed_kept: u64,
    /// Unresolved half messages.
    pub half: u64,
    /// Half messages committed.
    pub half_committed: u64,
    /// Half messages rolled back.
    pub half_rolled_back: u64,
    /// Half messages dropped after the check horizon without a decision.
    pub half_dropped_unresolved: u64,
    /// Transaction-check pops handed out.
    pub half_popped: u64,
    /// Per group, ordered by name.
    pub groups: Vec<GroupStats>,
}

/// Counters of one consumer group on one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// Group id.
    pub group: String,
    /// When the group was first seen, epoch ms.
    pub registered_at_ms: u64,
    /// Messages visible now (new or due for redelivery).
    pub ready: u64,
    /// Messages delivered and not yet acked, still invisible.
    pub in_flight: u64,
    /// Messages never delivered whose scheduled time has not come.
    pub delayed: u64,
    /// Messages moved to the dead-letter list (total).
    pub dead_lettered: u64,
    /// Dead-letter records currently kept.
    pub dead_letters_kept: u64,
    /// The backlog ("accumulation" in the ApsaraMQ console): messages the group has not
    /// acked yet, ready, in flight or delayed.
    pub accumulation: u64,
    /// When the group last received a message (its latest delivery), epoch ms; `None`
    /// before its first.
    pub last_consume_time_ms: Option<u64>,
    /// Deliveries (first and repeated).
    pub delivered: u64,
    /// Repeated deliveries (the second and later of a message).
    pub redelivered: u64,
    /// Successful acks.
    pub acked: u64,
    /// Messages skipped by a tag filter.
    pub filtered: u64,
    /// Messages removed by retention before being consumed.
    pub trimmed: u64,
}
