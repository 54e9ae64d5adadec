//! Message trace: what happened to one message, kept with the message itself (so it lives
//! as long as the topic keeps the message: held by a group, a dead letter, half, or kept
//! after every group consumed it) and bounded per message.

use std::sync::Arc;

use mq_proto::{GroupId, InvalidValue, MessageId, ReceiptHandle};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

use super::BrokerCore;
use super::handle::{HandleText, Token};

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

/// One event as a message keeps it: a [`TraceEvent`] whose group shares its text with the
/// group (a reference count, not a copy per event) and whose receipt handle, when this core
/// issued it, is kept as the scope that issued it: the rest of the handle's token is the
/// message's sequence number and the event's `consumed_times` and `next_consume_time`, so
/// the text is rendered when the trace is shown or written ([`Event::public`],
/// [`TraceForm`]), not built and kept (an allocation, under the core's lock) at every
/// delivery. Snapshots write it as the [`TraceEvent`] it reads as, so their form is
/// unchanged. The group's text is kept as stored, unchecked: a trace may name a group
/// whose name this version refuses (a `%` an earlier version took), and that must not keep
/// a data directory from opening.
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
    pub(crate) receipt_handle: Option<TraceHandle>,
    /// `NextConsumeTime` of the delivery or check.
    pub(crate) next_consume_time: Option<u64>,
    /// The delivery's `ConsumedTimes` (`delivered`, `checked`).
    pub(crate) consumed_times: Option<u32>,
}

/// The receipt handle of a trace event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TraceHandle {
    /// Issued by this core with a token of this scope, the message's sequence number, the
    /// event's `consumed_times` (the attempt) and `next_consume_time` (the expiry).
    Issued {
        /// The group's or half pool's scope.
        scope: u64,
    },
    /// As a snapshot holds it, when it is not the text [`Issued`](Self::Issued) renders
    /// for its message and event ([`Trace::settle_handles`]); boxed, so that this rare
    /// case does not make every event larger (an event is 88 bytes; 112 unboxed).
    Text(Box<ReceiptHandle>),
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

/// [`TraceEvent`]'s serde form over borrowed text: what [`TraceForm`] writes per event.
#[derive(Serialize)]
#[serde(rename = "TraceEvent")]
struct EventForm<'a> {
    event: TraceKind,
    time_ms: u64,
    group: Option<&'a str>,
    producer: Option<&'a str>,
    receipt_handle: Option<HandleOrText<'a>>,
    next_consume_time: Option<u64>,
    consumed_times: Option<u32>,
}

impl Event {
    /// A delivery's or check's event: `group` handed the message the `attempt`-th time,
    /// with the handle of `scope`'s token, invisible until `next_consume_time`.
    pub(crate) fn issued(
        event: TraceKind,
        time_ms: u64,
        group: &GroupId,
        scope: u64,
        attempt: u32,
        next_consume_time: u64,
    ) -> Self {
        Self {
            receipt_handle: Some(TraceHandle::Issued { scope }),
            next_consume_time: Some(next_consume_time),
            consumed_times: Some(attempt),
            ..Self::of_group(event, time_ms, group)
        }
    }

    /// The text of the event's receipt handle, for the message `id` (sequence number
    /// `seq`); `None` when the event has none, or for an issued handle whose token cannot
    /// be rendered (an id of another length than this core's: never for its own messages).
    fn handle_text(&self, id: &MessageId, seq: u64) -> Option<HandleOrText<'_>> {
        match self.receipt_handle.as_ref()? {
            TraceHandle::Text(h) => Some(HandleOrText::Text(h.as_str())),
            &TraceHandle::Issued { scope } => Token {
                scope,
                seq,
                attempt: self.consumed_times.unwrap_or_default(),
                expiry: self.next_consume_time.unwrap_or_default(),
            }
            .render(id)
            .ok()
            .map(HandleOrText::Rendered),
        }
    }

    /// The event as the admin API shows it, for the message `id` (sequence number `seq`).
    pub(crate) fn public(&self, id: &MessageId, seq: u64) -> TraceEvent {
        TraceEvent {
            event: self.event,
            time_ms: self.time_ms,
            group: self.group.as_deref().map(str::to_owned),
            producer: self.producer.as_deref().map(str::to_owned),
            receipt_handle: self.handle_text(id, seq).map(|h| h.as_str().to_owned()),
            next_consume_time: self.next_consume_time,
            consumed_times: self.consumed_times,
        }
    }
}

/// A handle's text: rendered inline, or borrowed from a stored handle.
enum HandleOrText<'a> {
    Rendered(HandleText),
    Text(&'a str),
}

impl HandleOrText<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Rendered(h) => h.as_str(),
            Self::Text(t) => t,
        }
    }
}

impl Serialize for HandleOrText<'_> {
    /// As the text.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
            receipt_handle: e
                .receipt_handle
                .map(ReceiptHandle::new)
                .transpose()?
                .map(|h| TraceHandle::Text(Box::new(h))),
            next_consume_time: e.next_consume_time,
            consumed_times: e.consumed_times,
        })
    }
}

/// A message's trace, bounded to [`MAX_TRACE_EVENTS`]. Written with its message's id and
/// sequence number ([`TraceForm`]), which its issued handles need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
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

    /// Takes each handle read as text (from a snapshot) that is the one this core issues
    /// for message `seq` with id `id` and the event's attempt and expiry as
    /// [`TraceHandle::Issued`]: a trace read back equals the one written.
    pub(crate) fn settle_handles(&mut self, id: &MessageId, seq: u64) {
        for e in &mut self.events {
            let Some(TraceHandle::Text(h)) = &e.receipt_handle else {
                continue;
            };
            let Some(token) = Token::decode_for(h.as_str(), id.as_str(), seq) else {
                continue;
            };
            if e.consumed_times == Some(token.attempt)
                && e.next_consume_time == Some(token.expiry)
                && token.render(id).is_ok_and(|t| t.as_str() == h.as_str())
            {
                e.receipt_handle = Some(TraceHandle::Issued { scope: token.scope });
            }
        }
    }

    /// Appends an event, dropping the oldest after the first when full.
    pub(crate) fn push(&mut self, event: Event) {
        if self.events.len() >= MAX_TRACE_EVENTS {
            self.events.remove(1);
            self.dropped = self.dropped.saturating_add(1);
        }
        if self.events.len() == 1 && self.events.capacity() == 1 {
            // Room for the usual life after the publish, one delivery and its ack: 3 events
            // (264 bytes), not the 4 of a vector's first growth; a later growth doubles.
            self.events.reserve_exact(2);
        }
        self.events.push(event);
    }
}

/// A [`Trace`] as snapshots write it: the events in their [`TraceEvent`] form (issued
/// handles rendered with the message's id and sequence number), then the dropped count, as
/// a `Trace` of `TraceEvent`s was written before handles were kept as scopes.
pub(crate) struct TraceForm<'a> {
    /// The trace.
    pub(crate) trace: &'a Trace,
    /// Its message's id.
    pub(crate) id: &'a MessageId,
    /// Its message's sequence number.
    pub(crate) seq: u64,
}

impl Serialize for TraceForm<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let events: Vec<EventForm<'_>> = self
            .trace
            .events
            .iter()
            .map(|e| EventForm {
                event: e.event,
                time_ms: e.time_ms,
                group: e.group.as_deref(),
                producer: e.producer.as_deref(),
                receipt_handle: e.handle_text(self.id, self.seq),
                next_consume_time: e.next_consume_time,
                consumed_times: e.consumed_times,
            })
            .collect();
        let mut st = s.serialize_struct("Trace", 2)?;
        st.serialize_field("events", &events)?;
        st.serialize_field("dropped", &self.trace.dropped)?;
        st.end()
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
                events: m
                    .trace
                    .events
                    .iter()
                    .map(|e| e.public(&m.content.id, m.seq))
                    .collect(),
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
        let (seq, scope) = (7, 3);
        let id = super::super::handle::message_id(super::super::handle::id_prefix(1), seq);
        let mut trace = Trace::default();
        trace.push(Event {
            producer: Some("AK1".into()),
            ..Event::at(TraceKind::Published, 1)
        });
        trace.push(Event::issued(
            TraceKind::Delivered,
            2,
            &group,
            scope,
            1,
            30_002,
        ));
        trace.push(Event::of_group(TraceKind::Acked, 3, &group));
        // The handle the delivery answered, rendered again from the event.
        let issued = Token {
            scope,
            seq,
            attempt: 1,
            expiry: 30_002,
        }
        .encode(&id)
        .expect("handle");
        let public = PublicTrace {
            events: trace.events.iter().map(|e| e.public(&id, seq)).collect(),
            dropped: 0,
        };
        assert_eq!(public.events[1].group.as_deref(), Some("GID_a"));
        assert_eq!(
            public.events[1].receipt_handle.as_deref(),
            Some(issued.as_str())
        );
        let bytes = postcard::to_allocvec(&public).expect("encode");
        let form = |trace| TraceForm {
            trace,
            id: &id,
            seq,
        };
        assert_eq!(postcard::to_allocvec(&form(&trace)).expect("encode"), bytes);
        // Read back, the handle is text until settled as the message's.
        let mut read: Trace = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(
            read.events[1].receipt_handle,
            Some(TraceHandle::Text(Box::new(issued.clone())))
        );
        read.settle_handles(&id, seq);
        assert_eq!(read, trace);

        // A handle that is not the one the event's fields render (another message's id, a
        // foreign text) stays text, and is written as it was read.
        let mut foreign = trace.clone();
        let other = ReceiptHandle::new("0123456789ABCDEF0000000000000008-AQ==").expect("handle");
        foreign.events[1].receipt_handle = Some(TraceHandle::Text(Box::new(other.clone())));
        let bytes = postcard::to_allocvec(&form(&foreign)).expect("encode");
        let mut read: Trace = postcard::from_bytes(&bytes).expect("decode");
        read.settle_handles(&id, seq);
        assert_eq!(read, foreign);
        let mut late = trace.clone();
        late.events[1].next_consume_time = Some(30_003);
        late.events[1].receipt_handle = Some(TraceHandle::Text(Box::new(issued.clone())));
        let mut read: Trace =
            postcard::from_bytes(&postcard::to_allocvec(&form(&late)).expect("encode"))
                .expect("decode");
        read.settle_handles(&id, seq);
        assert_eq!(
            read, late,
            "an expiry other than the token's keeps the text"
        );

        // A group name this version refuses (an earlier one took `%`) still reads: the
        // trace keeps the text it stored.
        let old = PublicTrace {
            events: vec![TraceEvent {
                group: Some("GID_%25".to_owned()),
                ..Event::at(TraceKind::Acked, 4).public(&id, seq)
            }],
            dropped: 0,
        };
        let bytes = postcard::to_allocvec(&old).expect("encode");
        let read: Trace = postcard::from_bytes(&bytes).expect("a refused group name reads");
        assert_eq!(read.events[0].group.as_deref(), Some("GID_%25"));
        assert_eq!(postcard::to_allocvec(&form(&read)).expect("encode"), bytes);
    }

    /// Every handle a consumer or a transaction checker is given is the one the message's
    /// trace shows for that delivery (rendered from the event's scope, attempt and expiry),
    /// first deliveries, redeliveries, orderly ones and checks alike, and so after a
    /// snapshot round trip (its handles read back as text, then settled as issued).
    #[test]
    fn every_handle_given_is_the_one_its_trace_shows_before_and_after_a_snapshot() {
        use crate::core::CoreConfig;
        use mq_proto::{BatchSize, ConsumeKind, TagFilter, TopicMessage, TopicName};
        use mq_proto::{Message, TransCheckImmunity};
        let mut core = BrokerCore::new(CoreConfig::default());
        let (t, o) = (TopicName::new("T").unwrap(), TopicName::new("O").unwrap());
        let (g, c) = (
            GroupId::new("GID_a").unwrap(),
            GroupId::new("GID_checker").unwrap(),
        );
        let consume = |core: &mut BrokerCore, now, topic: &TopicName, group, kind| {
            core.consume(
                now,
                None,
                topic,
                group,
                kind,
                &TagFilter::All,
                BatchSize::MAX,
            )
            .unwrap()
        };
        for topic in [&t, &o] {
            consume(&mut core, 0, topic, &g, ConsumeKind::Normal);
        }
        for i in 0..3 {
            let m = TopicMessage::new(format!("m{i}")).unwrap();
            core.publish_by(1_000, None, &t, m, Some("AK1")).unwrap();
            let m = TopicMessage::new(format!("o{i}"))
                .and_then(|m| m.with_sharding_key("k"))
                .unwrap();
            core.publish_by(1_000, None, &o, m, None).unwrap();
        }
        let half = TopicMessage::new("h")
            .unwrap()
            .with_trans_check_immunity(TransCheckImmunity::new(10).unwrap());
        core.publish_by(1_000, None, &t, half, None).unwrap();
        let mut given: Vec<Message> = consume(&mut core, 2_000, &t, &g, ConsumeKind::Normal);
        // Their invisibility (300 s by default) ends unacked: delivered again.
        given.extend(consume(&mut core, 400_000, &t, &g, ConsumeKind::Normal));
        given.extend(consume(&mut core, 400_000, &o, &g, ConsumeKind::Orderly));
        given.extend(consume(&mut core, 400_000, &t, &c, ConsumeKind::Half));
        assert_eq!(given.len(), 3 + 3 + 3 + 1, "{given:?}");
        let shows = |core: &BrokerCore, m: &Message| {
            let trace = core.trace(m.message_id.as_str()).expect("kept");
            trace.events.iter().any(|e| {
                e.receipt_handle.as_deref() == Some(m.receipt_handle.as_str())
                    && e.next_consume_time == Some(m.next_consume_time)
                    && e.consumed_times == Some(m.consumed_times)
            })
        };
        for m in &given {
            assert!(
                shows(&core, m),
                "{m:?}: {:?}",
                core.trace(m.message_id.as_str())
            );
        }
        let bytes = postcard::to_allocvec(&core).expect("encode");
        let read: BrokerCore = postcard::from_bytes(&bytes).expect("decode");
        assert!(read == core, "a core read back differs");
        for m in &given {
            assert!(shows(&read, m), "{m:?}");
            assert_eq!(
                read.trace(m.message_id.as_str()),
                core.trace(m.message_id.as_str())
            );
        }
    }

    #[test]
    fn a_stored_message_s_trace_stays_small() {
        // Kept with every stored message (one event for a published one, three for one
        // consumed once): its size is memory traffic on every publish and ack.
        assert!(
            std::mem::size_of::<Event>() <= 88,
            "{}",
            std::mem::size_of::<Event>()
        );
        let group = GroupId::new("GID_a").expect("group");
        let mut trace = Trace::starting_with(Event::at(TraceKind::Published, 1));
        assert_eq!(trace.events.capacity(), 1);
        trace.push(Event::issued(TraceKind::Delivered, 2, &group, 3, 1, 30_002));
        trace.push(Event::of_group(TraceKind::Acked, 3, &group));
        assert_eq!(trace.events.capacity(), 3);
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
