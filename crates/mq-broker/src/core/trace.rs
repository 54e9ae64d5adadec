//! Message trace: what happened to one message, kept with the message itself (so it lives
//! as long as the topic keeps the message: held by a group, a dead letter, half, or kept
//! after every group consumed it) and bounded per message.

use serde::{Deserialize, Serialize};

use super::BrokerCore;

/// Events kept per message: the first (its publish) and the latest `MAX_TRACE_EVENTS - 1`.
pub const MAX_TRACE_EVENTS: usize = 32;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    /// Published (`producer`: the AccessKey id that signed the publish).
    Published,
    /// Delivered to `group` with `receipt_handle`, invisible until `next_consume_time`
    /// (the `consumed_times`-th delivery).
    Delivered,
    /// The delivery's invisibility ended without an ack (at its `NextConsumeTime`): it is
    /// delivered again.
    Expired,
    /// Acknowledged by `group`.
    Acked,
    /// Skipped by `group`'s tag filter.
    Filtered,
    /// Dead-lettered by `group` (its last allowed delivery expired).
    DeadLettered,
    /// Handed to `group` again from its dead letters.
    Resent,
    /// Handed to `group` again by a reset of its consumer offset.
    OffsetReset,
    /// A half message handed to a transaction check: polled by `group` (the checker's),
    /// with `receipt_handle`, next check at `next_consume_time`.
    Checked,
    /// The transaction was committed: the message became deliverable.
    Committed,
    /// The transaction was rolled back.
    RolledBack,
}

/// One event of a message's trace (JSON field names as below; times are epoch ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// What happened.
    pub event: TraceKind,
    /// When.
    pub time_ms: u64,
    /// The consumer group, for group events.
    pub group: Option<String>,
    /// The AccessKey id that published the message (`published` only).
    pub producer: Option<String>,
    /// The receipt handle issued (`delivered`, `checked`).
    pub receipt_handle: Option<String>,
    /// `NextConsumeTime` of the delivery or check.
    pub next_consume_time: Option<u64>,
    /// The delivery's `ConsumedTimes` (`delivered`, `checked`).
    pub consumed_times: Option<u32>,
}

impl TraceEvent {
    /// An event with no details.
    pub(crate) fn at(event: TraceKind, time_ms: u64) -> Self {
        Self {
            event,
            time_ms,
            group: None,
            producer: None,
            receipt_handle: None,
            next_consume_time: None,
            consumed_times: None,
        }
    }

    /// An event of a group.
    pub(crate) fn of_group(event: TraceKind, time_ms: u64, group: &str) -> Self {
        Self {
            group: Some(group.to_owned()),
            ..Self::at(event, time_ms)
        }
    }
}

/// A message's trace, bounded to [`MAX_TRACE_EVENTS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trace {
    /// The events kept, oldest first.
    pub(crate) events: Vec<TraceEvent>,
    /// Events dropped from the middle to stay within the bound.
    pub(crate) dropped: u32,
}

impl Trace {
    /// Appends an event, dropping the oldest after the first when full.
    pub(crate) fn push(&mut self, event: TraceEvent) {
        if self.events.len() >= MAX_TRACE_EVENTS {
            self.events.remove(1);
            self.dropped = self.dropped.saturating_add(1);
        }
        self.events.push(event);
    }
}

/// The trace of one message, as `GET /admin/messages/{id}/trace` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageTrace {
    /// The message id.
    pub message_id: String,
    /// Its instance (`None`: the default instance).
    pub instance: Option<String>,
    /// Its topic.
    pub topic: String,
    /// The events, oldest first.
    pub events: Vec<TraceEvent>,
    /// Events dropped between the first and the kept ones (more than
    /// [`MAX_TRACE_EVENTS`] happened).
    pub dropped_events: u32,
}

impl BrokerCore {
    /// The trace of the message with id `message_id`, while its topic keeps the message
    /// (held by a group, a dead letter, half, or kept after every group consumed it or a
    /// rollback; see [`CoreConfig::consumed_retention_ms`](super::CoreConfig::consumed_retention_ms));
    /// `None` otherwise. Changes nothing.
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig, TraceKind};
    /// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// core.consume(0, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)?;
    /// let id = core.publish_by(1_000, None, &t, TopicMessage::new("hi")?, Some("AK1"))?.message_id;
    /// core.consume(2_000, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)?;
    /// let trace = core.trace(id.as_str()).expect("kept");
    /// let kinds: Vec<TraceKind> = trace.events.iter().map(|e| e.event).collect();
    /// assert_eq!(kinds, [TraceKind::Published, TraceKind::Delivered]);
    /// assert_eq!(trace.events[0].producer.as_deref(), Some("AK1"));
    /// assert_eq!(trace.events[1].next_consume_time, Some(2_000 + 300_000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trace(&self, message_id: &str) -> Option<MessageTrace> {
        let seq = super::handle::message_seq(message_id, self.id_prefix)?;
        self.topics.iter().find_map(|((instance, topic), t)| {
            let m = t
                .store
                .messages
                .get(&seq)
                .or_else(|| t.half.entries.get(&seq).map(|h| &h.message))?;
            Some(MessageTrace {
                message_id: m.content.id.as_str().to_owned(),
                instance: instance.as_ref().map(|i| i.as_str().to_owned()),
                topic: topic.as_str().to_owned(),
                events: m.trace.events.clone(),
                dropped_events: m.trace.dropped,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_trace_keeps_its_first_and_latest_events() {
        let mut trace = Trace::default();
        for t in 0..100 {
            trace.push(TraceEvent::at(TraceKind::Delivered, t));
        }
        assert_eq!(trace.events.len(), MAX_TRACE_EVENTS);
        assert_eq!(trace.events[0].time_ms, 0);
        assert_eq!(trace.events[1].time_ms, 100 - (MAX_TRACE_EVENTS as u64 - 1));
        assert_eq!(trace.events.last().map(|e| e.time_ms), Some(99));
        assert_eq!(trace.dropped, 100 - MAX_TRACE_EVENTS as u32);
    }
}
