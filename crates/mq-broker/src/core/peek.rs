//! A non-destructive look at what a topic holds: [`BrokerCore::peek`] reads the store, a
//! group's entries, the half pool or the dead letters, and changes nothing (it takes
//! `&self`: no delivery, no receipt handle, no counter, not even the clock).

use std::collections::BTreeMap;

use mq_proto::{GroupId, InstanceId, TopicName};
use serde::Serialize;

use super::group::{DeadLetter, Entry, EntryState};
use super::store::StoredMessage;
use super::topic::Topic;
use super::{BrokerCore, CoreError};

/// The most bytes of a body a listing (peek by state, page by time, find by key) shows: the
/// body is cut there, at a UTF-8 character boundary, and the message says so
/// ([`PeekedMessage::body_truncated`]); a lookup by id shows the whole body.
pub const BODY_PREVIEW_BYTES: usize = 4096;

/// The most bytes of bodies and properties one listing copies out of the core (while the
/// core is locked): a listing stops before the message that would pass it (the first
/// message is always listed). With at most 1000 messages of [`BODY_PREVIEW_BYTES`] each, a
/// listing could otherwise copy 4 MiB plus properties.
pub const LISTING_BUDGET_BYTES: usize = 1024 * 1024;

/// How much of a body a listed message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyView {
    /// The first [`BODY_PREVIEW_BYTES`].
    Preview,
    /// All of it (a lookup by id).
    Full,
}

/// Which messages a peek lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeekState {
    /// Visible to the group now (new, or due for redelivery); oldest visibility first.
    Ready,
    /// Delivered to the group and not acked, still invisible; earliest `NextConsumeTime`
    /// first.
    InFlight,
    /// Never delivered, scheduled later (`__STARTDELIVERTIME`); earliest first.
    Delayed,
    /// Dead letters of the group, oldest first (with the body while the topic keeps it,
    /// within retention).
    Dead,
    /// Half (transactional) messages awaiting commit or rollback; no group. By check time.
    Half,
    /// Held by no group any more, kept for a while (see
    /// [`CoreConfig::consumed_retention_ms`](super::CoreConfig::consumed_retention_ms)):
    /// every group acked it, or its groups were deleted, or it was published while the
    /// topic had no group — "held by no group", not "delivered" (the trace tells which).
    /// Only as the state of a message found by id, key or publish time, not a peek.
    Consumed,
    /// A transactional message rolled back, kept like a consumed one for its trace: only
    /// as the state of a message found by id, key or publish time.
    RolledBack,
}

impl std::str::FromStr for PeekState {
    type Err = CoreError;

    /// `ready`, `in_flight`, `delayed`, `dead` or `half`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ready" => Self::Ready,
            "in_flight" => Self::InFlight,
            "delayed" => Self::Delayed,
            "dead" => Self::Dead,
            "half" => Self::Half,
            // `consumed` is a state of found messages only.
            other => {
                return Err(CoreError::invalid(format!(
                    "unknown message state {other:?} (ready, in_flight, delayed, dead, half)"
                )));
            }
        })
    }
}

/// A message as a peek shows it (JSON field names as below; times are epoch ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeekedMessage {
    /// The message id.
    pub message_id: String,
    /// The state it was listed under.
    pub state: PeekState,
    /// Body text — in a listing, its first [`BODY_PREVIEW_BYTES`] (see `body_truncated`);
    /// `None` for a dead letter whose body is no longer kept.
    pub body: Option<String>,
    /// The whole body's length in bytes; `None` when the body is not kept.
    pub body_size: Option<usize>,
    /// Whether `body` is only the body's beginning (look the message up by id for all of it).
    pub body_truncated: bool,
    /// Upper-case hex MD5 of the body; `None` when the body is not kept.
    pub body_md5: Option<String>,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Properties as published (system keys included).
    pub properties: BTreeMap<String, String>,
    /// Publish time.
    pub publish_time: u64,
    /// `__STARTDELIVERTIME`, if any.
    pub start_deliver_time: Option<u64>,
    /// Deliveries to the group (half: transaction checks handed out).
    pub consumed_times: u32,
    /// When it becomes (or became) visible to the group (half: when it is next offered to
    /// a check); `None` for a dead letter.
    pub next_visible_time: Option<u64>,
    /// When it was dead-lettered (dead letters only).
    pub dead_lettered_at: Option<u64>,
}

impl PeekedMessage {
    /// A dead letter: the stored message with the record's times, or the record alone
    /// when the body is no longer kept.
    fn dead(d: &DeadLetter, stored: Option<&StoredMessage>, view: BodyView) -> Self {
        if let Some(m) = stored {
            return Self {
                dead_lettered_at: Some(d.dead_lettered_at),
                next_visible_time: None,
                ..Self::stored(m, PeekState::Dead, d.consumed_times, 0, view)
            };
        }
        Self {
            message_id: d.message_id.as_str().to_owned(),
            state: PeekState::Dead,
            body: None,
            body_size: None,
            body_truncated: false,
            body_md5: None,
            tag: None,
            properties: BTreeMap::new(),
            publish_time: d.publish_time,
            start_deliver_time: None,
            consumed_times: d.consumed_times,
            next_visible_time: None,
            dead_lettered_at: Some(d.dead_lettered_at),
        }
    }

    fn stored(
        m: &StoredMessage,
        state: PeekState,
        consumed: u32,
        next: u64,
        view: BodyView,
    ) -> Self {
        let shown = match view {
            BodyView::Full => &m.body[..],
            BodyView::Preview => &m.body[..m.body.floor_char_boundary(BODY_PREVIEW_BYTES)],
        };
        Self {
            message_id: m.id.as_str().to_owned(),
            state,
            body: Some(shown.to_owned()),
            body_size: Some(m.body.len()),
            body_truncated: shown.len() < m.body.len(),
            body_md5: Some(m.body_md5.clone()),
            tag: m.tag.as_ref().map(|t| t.as_str().to_owned()),
            properties: m
                .properties
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            publish_time: m.publish_time,
            start_deliver_time: m.start_deliver_time,
            consumed_times: consumed,
            next_visible_time: Some(next),
            dead_lettered_at: None,
        }
    }

    /// The bytes of body and properties this listed message copied.
    fn copied_bytes(&self) -> usize {
        self.body.as_ref().map_or(0, String::len)
            + self
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// The first messages of `listed` (at most `limit`) whose bodies and properties fit in
/// [`LISTING_BUDGET_BYTES`] (the first always does), and whether any was left out.
fn within_budget<T>(
    listed: impl Iterator<Item = T>,
    limit: usize,
    copied: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut spent = 0usize;
    for item in listed {
        let bytes = copied(&item);
        if out.len() == limit
            || (!out.is_empty() && spent.saturating_add(bytes) > LISTING_BUDGET_BYTES)
        {
            return (out, true);
        }
        spent = spent.saturating_add(bytes);
        out.push(item);
    }
    (out, false)
}

impl BrokerCore {
    /// Up to `limit` messages of `topic` in `state`, as of the core's latest time
    /// ([`now_ms`](Self::now_ms)), without changing anything.
    ///
    /// `group` is required for every state but [`PeekState::Half`] (and ignored for it).
    /// Bodies are previews ([`BODY_PREVIEW_BYTES`]); the list stops at
    /// [`LISTING_BUDGET_BYTES`] of bodies and properties.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic; `InvalidArgument` when `group` is missing for a
    /// group state; `SubscriptionNotExist` when the group is not registered on the topic (as
    /// a dead-letter resend answers).
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig, PeekState};
    /// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// core.consume(0, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)?;
    /// core.publish(1_000, None, &t, TopicMessage::new("hello")?)?;
    /// let ready = core.peek(None, &t, Some(&g), PeekState::Ready, 10)?;
    /// assert_eq!(ready[0].body.as_deref(), Some("hello"));
    /// // Peeking again shows the same: nothing was delivered.
    /// assert_eq!(core.peek(None, &t, Some(&g), PeekState::Ready, 10)?, ready);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: Option<&GroupId>,
        state: PeekState,
        limit: usize,
    ) -> Result<Vec<PeekedMessage>, CoreError> {
        let t = self.topic_for_peek(instance, topic)?;
        if state == PeekState::Half {
            let mut half: Vec<_> = t.half.entries.values().collect();
            half.sort_by_key(|h| (h.check_at, h.message.seq));
            let listed = half.into_iter().map(|h| {
                PeekedMessage::stored(&h.message, state, h.pops, h.check_at, BodyView::Preview)
            });
            return Ok(within_budget(listed, limit, PeekedMessage::copied_bytes).0);
        }
        let group =
            group.ok_or_else(|| CoreError::invalid("a consumer group is required to peek"))?;
        let g = t
            .groups
            .get(group)
            .ok_or_else(|| CoreError::subscription_not_exist(group, topic))?;
        if state == PeekState::Dead {
            let listed = g
                .dead_letters
                .iter()
                .map(|d| PeekedMessage::dead(d, t.store.messages.get(&d.seq), BodyView::Preview));
            return Ok(within_budget(listed, limit, PeekedMessage::copied_bytes).0);
        }
        let wanted = match state {
            PeekState::Ready => EntryState::Ready,
            PeekState::InFlight => EntryState::InFlight,
            _ => EntryState::Delayed,
        };
        let mut entries: Vec<(&u64, &Entry)> = g
            .entries
            .iter()
            .filter(|(_, e)| e.state(self.now) == wanted)
            .collect();
        entries.sort_by_key(|(seq, e)| (e.visible_at, **seq));
        let listed = entries.into_iter().map(|(seq, e)| {
            let m = t.store.messages.get(seq).ok_or_else(|| {
                CoreError::internal("a group's message is missing from the store")
            })?;
            Ok(PeekedMessage::stored(
                m,
                state,
                e.consumed_times,
                e.visible_at,
                BodyView::Preview,
            ))
        });
        let copied = |r: &Result<PeekedMessage, CoreError>| {
            r.as_ref().map_or(0, PeekedMessage::copied_bytes)
        };
        within_budget(listed, limit, copied).0.into_iter().collect()
    }
}

/// Which messages [`BrokerCore::find`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The message with this id.
    Id(&'a str),
    /// Messages whose key (`KEYS`) is this.
    Key(&'a str),
}

/// Where one consumer group stands with a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPosition {
    /// The group.
    pub group: String,
    /// The message's state in the group; `None` when the group holds it no more (acked,
    /// skipped by its tag filter, or the group was registered after the message arrived).
    pub state: Option<PeekState>,
    /// Deliveries to the group.
    pub consumed_times: u32,
    /// When it becomes (or became) visible to the group again.
    pub next_visible_time: Option<u64>,
}

/// A page of [`BrokerCore::page`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page {
    /// The messages, in publish order.
    pub messages: Vec<FoundMessage>,
    /// The `after` of the next page: the last message's id when more messages of the range
    /// remain (the limit or [`LISTING_BUDGET_BYTES`] ended the page); `None` on the last page.
    pub next: Option<String>,
}

/// A message found by [`BrokerCore::find`]: the message, and where each group stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FoundMessage {
    /// The message (its `state` is `half` for an undecided transaction, else the state in
    /// its first group that holds it, or `ready` when none does).
    #[serde(flatten)]
    pub message: PeekedMessage,
    /// Every group of the topic, by name (for a message no longer stored: the groups that
    /// dead-lettered it).
    pub groups: Vec<GroupPosition>,
}

impl FoundMessage {
    fn copied_bytes(&self) -> usize {
        self.message.copied_bytes()
    }
}

impl BrokerCore {
    /// The messages of `topic` the lookup names (at most `limit`), wherever they are: in
    /// the store (held by at least one group), among the half messages, or as a dead
    /// letter; with each group's position. Changes nothing. Found by id, a message carries its
    /// whole body; found by key, a preview ([`BODY_PREVIEW_BYTES`]), and the list stops at
    /// [`LISTING_BUDGET_BYTES`] of bodies and properties.
    ///
    /// A message every group has consumed is found (state [`PeekState::Consumed`]) while
    /// the topic keeps it ([`CoreConfig::consumed_retention_ms`](super::CoreConfig::consumed_retention_ms)),
    /// not after.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic.
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig, Lookup, PeekState};
    /// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// core.consume(0, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)?;
    /// core.publish(1_000, None, &t, TopicMessage::new("hello")?.with_key("order-7")?)?;
    /// let found = core.find(None, &t, Lookup::Key("order-7"), 10)?;
    /// assert_eq!(found[0].groups[0].state, Some(PeekState::Ready));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn find(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        lookup: Lookup<'_>,
        limit: usize,
    ) -> Result<Vec<FoundMessage>, CoreError> {
        let t = self.topic_for_peek(instance, topic)?;
        let matches = |m: &StoredMessage| match lookup {
            Lookup::Id(id) => m.id.as_str() == id,
            Lookup::Key(key) => m
                .properties
                .get(mq_proto::KEY_KEYS)
                .is_some_and(|keys| keys.split_whitespace().any(|k| k == key)),
        };
        let mut stored: Vec<&StoredMessage> = t
            .store
            .messages
            .values()
            .chain(t.half.entries.values().map(|h| &h.message))
            .filter(|m| matches(m))
            .collect();
        stored.sort_by_key(|m| m.seq);
        let view = match lookup {
            Lookup::Id(_) => BodyView::Full,
            Lookup::Key(_) => BodyView::Preview,
        };
        let listed = stored.into_iter().map(|m| self.found(t, m, view));
        let (mut out, _) = within_budget(listed, limit, FoundMessage::copied_bytes);
        if out.is_empty()
            && let Lookup::Id(id) = lookup
        {
            // Gone from the store: a dead letter keeps its record (in each group that
            // dead-lettered it).
            let mut message = None;
            let mut groups = Vec::new();
            for (gid, g) in &t.groups {
                if let Some(d) = g.dead_letters.iter().find(|d| d.message_id.as_str() == id) {
                    message.get_or_insert_with(|| PeekedMessage::dead(d, None, view));
                    groups.push(GroupPosition {
                        group: gid.as_str().to_owned(),
                        state: Some(PeekState::Dead),
                        consumed_times: d.consumed_times,
                        next_visible_time: None,
                    });
                }
            }
            if let Some(message) = message {
                out.push(FoundMessage { message, groups });
            }
        }
        Ok(out)
    }

    /// A page of the messages of `topic` published in `[begin_ms, end_ms)` — held by a group,
    /// dead letters, half messages and messages kept after every group consumed them — in
    /// publish order, each with every group's position; at most `limit`, starting after the
    /// message `after` (the last id of the previous page). Bodies are previews
    /// ([`BODY_PREVIEW_BYTES`]); a page copies at most [`LISTING_BUDGET_BYTES`] of bodies and
    /// properties. Changes nothing.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic; `InvalidArgument` when `after` is not a
    /// message id.
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig};
    /// use mq_proto::{TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let t = TopicName::new("T")?;
    /// for (at, body) in [(1_000, "a"), (2_000, "b"), (3_000, "c")] {
    ///     core.publish(at, None, &t, TopicMessage::new(body)?)?;
    /// }
    /// let page = core.page(None, &t, 1_500, 4_000, None, 1)?;
    /// assert_eq!(page.messages[0].message.body.as_deref(), Some("b"));
    /// let next = core.page(None, &t, 1_500, 4_000, page.next.as_deref(), 1)?;
    /// assert_eq!(next.messages[0].message.body.as_deref(), Some("c"));
    /// assert_eq!(next.next, None, "the range is exhausted");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn page(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        begin_ms: u64,
        end_ms: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, CoreError> {
        let t = self.topic_for_peek(instance, topic)?;
        // Ids are the id prefix and the sequence number in hex: publish order.
        let after_seq = after
            .map(|id| {
                id.get(16..)
                    .filter(|_| id.len() == 32)
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| CoreError::invalid(format!("{id:?} is not a message id")))
            })
            .transpose()?;
        let mut stored: Vec<&StoredMessage> = t
            .store
            .messages
            .values()
            .chain(t.half.entries.values().map(|h| &h.message))
            .filter(|m| (begin_ms..end_ms).contains(&m.publish_time))
            .filter(|m| after_seq.is_none_or(|a| m.seq > a))
            .collect();
        stored.sort_by_key(|m| m.seq);
        let listed = stored
            .into_iter()
            .map(|m| self.found(t, m, BodyView::Preview));
        let (messages, more) = within_budget(listed, limit, FoundMessage::copied_bytes);
        let next = more
            .then(|| messages.last().map(|m| m.message.message_id.clone()))
            .flatten();
        Ok(Page { messages, next })
    }

    /// A kept message with every group's position.
    fn found(&self, t: &Topic, m: &StoredMessage, view: BodyView) -> FoundMessage {
        let mut dead_letter = None;
        let groups: Vec<GroupPosition> = t
            .groups
            .iter()
            .map(|(id, g)| {
                let entry = g.entries.get(&m.seq);
                let dead = g.dead_letters.iter().find(|d| d.seq == m.seq);
                if entry.is_none() && dead_letter.is_none() {
                    dead_letter = dead;
                }
                GroupPosition {
                    group: id.as_str().to_owned(),
                    state: match (entry, dead) {
                        (Some(e), _) => Some(peek_state(e.state(self.now))),
                        (None, Some(_)) => Some(PeekState::Dead),
                        (None, None) => None,
                    },
                    consumed_times: match (entry, dead) {
                        (Some(e), _) => e.consumed_times,
                        (None, Some(d)) => d.consumed_times,
                        (None, None) => 0,
                    },
                    next_visible_time: entry.map(|e| e.visible_at),
                }
            })
            .collect();
        let held = groups
            .iter()
            .find_map(|g| Some((g.state?, g.consumed_times, g.next_visible_time?)));
        let message = match (t.half.entries.get(&m.seq), held, dead_letter) {
            (Some(h), _, _) => PeekedMessage::stored(m, PeekState::Half, h.pops, h.check_at, view),
            (None, Some((state, consumed, next)), _) => {
                PeekedMessage::stored(m, state, consumed, next, view)
            }
            (None, None, Some(d)) => PeekedMessage::dead(d, Some(m), view),
            (None, None, None) => PeekedMessage {
                next_visible_time: None,
                ..PeekedMessage::stored(
                    m,
                    if m.rolled_back {
                        PeekState::RolledBack
                    } else {
                        PeekState::Consumed
                    },
                    0,
                    0,
                    view,
                )
            },
        };
        FoundMessage { message, groups }
    }

    fn topic_for_peek(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
    ) -> Result<&Topic, CoreError> {
        self.topics
            .get(&(instance.cloned(), topic.clone()))
            .ok_or_else(|| CoreError::topic_not_exist(topic))
    }
}

/// The peek state of a group entry in state `s`; an entry whose last delivery expired is
/// as good as dead (the next sweep dead-letters it).
fn peek_state(s: EntryState) -> PeekState {
    match s {
        EntryState::Ready => PeekState::Ready,
        EntryState::InFlight => PeekState::InFlight,
        EntryState::Delayed => PeekState::Delayed,
        EntryState::Expiring => PeekState::Dead,
    }
}
