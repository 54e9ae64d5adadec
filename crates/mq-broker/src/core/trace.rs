//! Message trace: what happened to one message, kept with the message itself (so it lives
//! as long as the topic keeps the message: held by a group, a dead letter, half, or kept
//! after every group consumed it) and bounded per message.

use std::sync::Arc;

use mq_proto::{GroupId, InvalidValue, ReceiptHandle};
use serde::{Deserialize, Serialize, Serializer};

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

/// One event as a message keeps it: a [`TraceEvent`] whose group and receipt handle share
/// their text with the group and the delivery (a reference count each, not a copy per
/// event). Snapshots write it as the [`TraceEvent`] it reads as (borrowing its text), so
/// their form is unchanged. The group's text is kept as stored, unchecked: a trace may name
/// a group whose name this version refuses (a `%` an earlier version took), and that must
/// not keep a data directory from opening.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TraceEvent")]
pub(crate) struct Event {
    /// What happened.
    pub(crate) event: TraceKind,
    /// When (epoch ms).
    pub(crate) time_ms: u64,
    /// The consumer group's id, for group events.
    pub(crate) group: Option<Arc<str>>,
    /// The AccessKey id that published the message (`published` only), shared with the
    /// server's credential.
    pub(crate) producer: Option<Arc<str>>,
    /// The receipt handle issued (`delivered`, `checked`).
    pub(crate) receipt_handle: Option<ReceiptHandle>,
    /// `NextConsumeTime` of the delivery or check.
    pub(crate) next_consume_time: Option<u64>,
    /// The delivery's `ConsumedTimes` (`delivered`, `checked`).
    pub(crate) consumed_times: Option<u32>,
}

impl Event {
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
    pub(crate) fn of_group(event: TraceKind, time_ms: u64, group: &GroupId) -> Self {
        Self {
            group: Some(Arc::from(group)),
            ..Self::at(event, time_ms)
        }
    }
}

/// [`TraceEvent`]'s serde form over borrowed text: what [`Event`] writes.
#[derive(Serialize)]
#[serde(rename = "TraceEvent")]
struct EventForm<'a> {
    event: TraceKind,
    time_ms: u64,
    group: Option<&'a str>,
    producer: Option<&'a str>,
    receipt_handle: Option<&'a str>,
    next_consume_time: Option<u64>,
    consumed_times: Option<u32>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventForm {
            event: self.event,
            time_ms: self.time_ms,
            group: self.group.as_deref(),
            producer: self.producer.as_deref(),
            receipt_handle: self.receipt_handle.as_ref().map(ReceiptHandle::as_str),
            next_consume_time: self.next_consume_time,
            consumed_times: self.consumed_times,
        }
        .serialize(s)
    }
}

impl From<&Event> for TraceEvent {
    fn from(e: &Event) -> Self {
        Self {
            event: e.event,
            time_ms: e.time_ms,
            group: e.group.as_deref().map(str::to_owned),
            producer: e.producer.as_deref().map(str::to_owned),
            receipt_handle: e.receipt_handle.as_ref().map(|h| h.as_str().to_owned()),
            next_consume_time: e.next_consume_time,
            consumed_times: e.consumed_times,
        }
    }
}

impl TryFrom<TraceEvent> for Event {
    type Error = InvalidValue;

    fn try_from(e: TraceEvent) -> Result<Self, InvalidValue> {
        Ok(Self {
            event: e.event,
            time_ms: e.time_ms,
            group: e.group.map(Arc::from),
            producer: e.producer.map(Arc::from),
            receipt_handle: e.receipt_handle.map(ReceiptHandle::new).transpose()?,
            next_consume_time: e.next_consume_time,
            consumed_times: e.consumed_times,
        })
    }
}

/// A message's trace, bounded to [`MAX_TRACE_EVENTS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trace {
    /// The events kept, oldest first.
    pub(crate) events: Vec<Event>,
    /// Events dropped from the middle to stay within the bound.
    pub(crate) dropped: u32,
}

impl Trace {
    /// A trace of one event, with room for just that one: most messages are published and
    /// consumed at most once, and a stored message's trace is a good part of what it costs
    /// beyond its text (a vector's first growth makes room for 4 events, 384 bytes).
    pub(crate) fn starting_with(first: Event) -> Self {
        Self {
            events: vec![first],
            dropped: 0,
        }
    }

    /// Appends an event, dropping the oldest after the first when full.
    pub(crate) fn push(&mut self, event: Event) {
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
                events: m.trace.events.iter().map(TraceEvent::from).collect(),
                dropped_events: m.trace.dropped,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Trace` as snapshots wrote it when it held `TraceEvent`s.
    #[derive(Serialize)]
    struct PublicTrace {
        events: Vec<TraceEvent>,
        dropped: u32,
    }

    #[test]
    fn snapshots_keep_the_trace_event_form() {
        let group = GroupId::new("GID_a").expect("group");
        let handle = ReceiptHandle::new("0123456789ABCDEF0000000000000007-AQ==").expect("handle");
        let mut trace = Trace::default();
        trace.push(Event {
            producer: Some("AK1".into()),
            ..Event::at(TraceKind::Published, 1)
        });
        trace.push(Event {
            receipt_handle: Some(handle.clone()),
            next_consume_time: Some(30_002),
            consumed_times: Some(1),
            ..Event::of_group(TraceKind::Delivered, 2, &group)
        });
        trace.push(Event::of_group(TraceKind::Acked, 3, &group));
        let public = PublicTrace {
            events: trace.events.iter().map(TraceEvent::from).collect(),
            dropped: 0,
        };
        assert_eq!(public.events[1].group.as_deref(), Some("GID_a"));
        assert_eq!(
            public.events[1].receipt_handle.as_deref(),
            Some(handle.as_str())
        );
        let bytes = postcard::to_allocvec(&public).expect("encode");
        assert_eq!(postcard::to_allocvec(&trace).expect("encode"), bytes);
        let read: Trace = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(read, trace);

        // A group name this version refuses (an earlier one took `%`) still reads: the
        // trace keeps the text it stored.
        let old = PublicTrace {
            events: vec![TraceEvent {
                group: Some("GID_%25".to_owned()),
                ..TraceEvent::from(&Event::at(TraceKind::Acked, 4))
            }],
            dropped: 0,
        };
        let bytes = postcard::to_allocvec(&old).expect("encode");
        let read: Trace = postcard::from_bytes(&bytes).expect("a refused group name reads");
        assert_eq!(read.events[0].group.as_deref(), Some("GID_%25"));
        assert_eq!(postcard::to_allocvec(&read).expect("encode"), bytes);
    }

    #[test]
    fn a_full_trace_keeps_its_first_and_latest_events() {
        let mut trace = Trace::default();
        for t in 0..100 {
            trace.push(Event::at(TraceKind::Delivered, t));
        }
        assert_eq!(trace.events.len(), MAX_TRACE_EVENTS);
        assert_eq!(trace.events[0].time_ms, 0);
        assert_eq!(trace.events[1].time_ms, 100 - (MAX_TRACE_EVENTS as u64 - 1));
        assert_eq!(trace.events.last().map(|e| e.time_ms), Some(99));
        assert_eq!(trace.dropped, 100 - MAX_TRACE_EVENTS as u32);
    }
}
