//! A non-destructive look at what a topic holds: [`BrokerCore::peek`] reads the store, a
//! group's entries, the half pool or the dead letters, and changes nothing (it takes
//! `&self`: no delivery, no receipt handle, no counter, not even the clock).

use std::collections::BTreeMap;

use mq_proto::{GroupId, InstanceId, TopicName};
use serde::Serialize;

use super::group::{DeadLetter, Entry, EntryState};
use super::store::StoredMessage;
use super::topic::Topic;
use super::{BrokerCore, CoreError, TraceKind};

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
    /// Deliveries to the group (half: transaction checks handed out; a message no group
    /// holds any more: the `ConsumedTimes` of its last delivery, as its trace shows).
    pub consumed_times: u32,
    /// When it becomes (or became) visible to the group (half: when it is next offered to
    /// a check); `None` for a dead letter.
    pub next_visible_time: Option<u64>,
    /// When it was dead-lettered (dead letters only).
    pub dead_lettered_at: Option<u64>,
}

/// The `ConsumedTimes` of `m`'s last delivery (to `group` only, when given) its trace
/// shows, 0 for none: what a message no group holds any more says about its consumption,
/// as a delivery said it (a resent dead letter or an offset reset counts from 1 again).
fn traced_deliveries(m: &StoredMessage, group: Option<&GroupId>) -> u32 {
    m.trace
        .events
        .iter()
        .rev()
        .filter(|e| e.event == TraceKind::Delivered)
        .find(|e| group.is_none_or(|g| e.group.as_deref() == Some(g.as_str())))
        .and_then(|e| e.consumed_times)
        .unwrap_or(0)
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
            BodyView::Full => &m.content.body[..],
            BodyView::Preview => {
                &m.content.body[..m.content.body.floor_char_boundary(BODY_PREVIEW_BYTES)]
            }
        };
        Self {
            message_id: m.content.id.as_str().to_owned(),
            state,
            body: Some(shown.to_owned()),
            body_size: Some(m.content.body.len()),
            body_truncated: shown.len() < m.content.body.len(),
            body_md5: Some(m.content.body_md5.as_str().to_owned()),
            tag: m.content.tag.as_ref().map(|t| t.as_str().to_owned()),
            properties: m
                .content
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

    fn id(&self) -> &str {
        &self.message_id
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

/// One page of a listing: [`within_budget`] of `listed`, with the `next` the caller passes
/// as `after` to go on (the last listed message's id, when any was left out).
fn listing<T>(
    listed: impl Iterator<Item = T>,
    limit: usize,
    copied: impl Fn(&T) -> usize,
    id: impl Fn(&T) -> &str,
) -> Listing<T> {
    let (messages, more) = within_budget(listed, limit, copied);
    let next = more
        .then(|| messages.last().map(|m| id(m).to_owned()))
        .flatten();
    Listing { messages, next }
}

/// The items of `ordered` after the one whose id is `after` (all of them without `after`).
///
/// # Errors
///
/// `InvalidArgument` when no item has that id (it left the listed state since the previous
/// page: list again from the start).
fn skip_through<T>(
    ordered: Vec<T>,
    after: Option<&str>,
    id: impl Fn(&T) -> &str,
) -> Result<impl Iterator<Item = T>, CoreError> {
    let start = match after {
        None => 0,
        Some(after) => {
            ordered
                .iter()
                .position(|item| id(item) == after)
                .ok_or_else(|| {
                    CoreError::invalid(format!(
                        "message {after} is no longer in this listing (its state changed since the previous page); list again without after"
                    ))
                })?
                + 1
        }
    };
    Ok(ordered.into_iter().skip(start))
}

/// The sequence number in a message id `after` (ids are the id prefix and the sequence
/// number in hex, so they sort in publish order).
///
/// # Errors
///
/// `InvalidArgument` when `after` is not a message id.
fn seq_of(after: Option<&str>) -> Result<Option<u64>, CoreError> {
    after
        .map(|id| {
            id.get(16..)
                .filter(|_| id.len() == 32)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| CoreError::invalid(format!("{id:?} is not a message id")))
        })
        .transpose()
}

impl BrokerCore {
    /// A page of at most `limit` messages of `topic` in `state`, as of the core's latest time
    /// ([`now_ms`](Self::now_ms)), starting after the message `after` (the `next` of the
    /// previous page), without changing anything.
    ///
    /// Ordered by when each becomes visible (ready, in flight, delayed), by check time (half)
    /// or by when it was dead-lettered (dead). `group` is required for every state but
    /// [`PeekState::Half`] (and ignored for it). Bodies are previews ([`BODY_PREVIEW_BYTES`]);
    /// a page stops at [`LISTING_BUDGET_BYTES`] of bodies and properties.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic; `InvalidArgument` when `group` is missing for a
    /// group state, or when no message of the listing has the id `after` (it changed state
    /// since the previous page); `SubscriptionNotExist` when the group is not registered on
    /// the topic (as a dead-letter resend answers).
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig, PeekState};
    /// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// core.consume(0, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)?;
    /// core.publish(1_000, None, &t, TopicMessage::new("hello")?)?;
    /// core.publish(1_000, None, &t, TopicMessage::new("world")?)?;
    /// let ready = core.peek(None, &t, Some(&g), PeekState::Ready, None, 1)?;
    /// assert_eq!(ready.messages[0].body.as_deref(), Some("hello"));
    /// let rest = core.peek(None, &t, Some(&g), PeekState::Ready, ready.next.as_deref(), 1)?;
    /// assert_eq!(rest.messages[0].body.as_deref(), Some("world"));
    /// assert_eq!(rest.next, None, "nothing more is ready");
    /// // Peeking again shows the same: nothing was delivered.
    /// assert_eq!(core.peek(None, &t, Some(&g), PeekState::Ready, None, 1)?, ready);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: Option<&GroupId>,
        state: PeekState,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listing<PeekedMessage>, CoreError> {
        let t = self.topic_for_peek(instance, topic)?;
        if state == PeekState::Half {
            let mut half: Vec<_> = t.half.entries.values().collect();
            half.sort_by_key(|h| (h.check_at, h.message.seq));
            let listed = skip_through(half, after, |h| h.message.content.id.as_str())?.map(|h| {
                PeekedMessage::stored(&h.message, state, h.pops, h.check_at, BodyView::Preview)
            });
            return Ok(listing(
                listed,
                limit,
                PeekedMessage::copied_bytes,
                PeekedMessage::id,
            ));
        }
        let group =
            group.ok_or_else(|| CoreError::invalid("a consumer group is required to peek"))?;
        let g = t
            .groups
            .get(group)
            .ok_or_else(|| CoreError::subscription_not_exist(group, topic))?;
        if state == PeekState::Dead {
            let dead: Vec<_> = g.dead_letters.iter().collect();
            let listed = skip_through(dead, after, |d| d.message_id.as_str())?
                .map(|d| PeekedMessage::dead(d, t.store.messages.get(&d.seq), BodyView::Preview));
            return Ok(listing(
                listed,
                limit,
                PeekedMessage::copied_bytes,
                PeekedMessage::id,
            ));
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
        let held = entries
            .into_iter()
            .map(|(seq, e)| {
                t.store.messages.get(seq).map(|m| (m, e)).ok_or_else(|| {
                    CoreError::internal("a group's message is missing from the store")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listed = skip_through(held, after, |(m, _)| m.content.id.as_str())?.map(|(m, e)| {
            PeekedMessage::stored(m, state, e.consumed_times, e.visible_at, BodyView::Preview)
        });
        Ok(listing(
            listed,
            limit,
            PeekedMessage::copied_bytes,
            PeekedMessage::id,
        ))
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
    /// The message's state in the group: [`PeekState::Half`] while its transaction is
    /// undecided (the group gets it once committed); `None` when the group holds it no more
    /// (acked, skipped by its tag filter, or the group was registered after the message
    /// arrived).
    pub state: Option<PeekState>,
    /// Deliveries to the group (once it holds the message no more: the `ConsumedTimes` of
    /// its last delivery to the group, as the message's trace shows).
    pub consumed_times: u32,
    /// When it becomes (or became) visible to the group again.
    pub next_visible_time: Option<u64>,
}

/// A page of a listing ([`BrokerCore::peek`], [`BrokerCore::find`], [`BrokerCore::page`]):
/// serialised as `{"messages": [...], "next": ID | null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing<T> {
    /// The messages, in the listing's order.
    pub messages: Vec<T>,
    /// The `after` of the next page: the last message's id when more messages remain (the
    /// limit or [`LISTING_BUDGET_BYTES`] ended the page); `None` on the last page.
    pub next: Option<String>,
}

/// A page of [`BrokerCore::page`] or [`BrokerCore::find`], in publish order.
pub type Page = Listing<FoundMessage>;

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

    fn id(&self) -> &str {
        &self.message.message_id
    }
}

impl BrokerCore {
    /// A page of the messages of `topic` the lookup names (at most `limit`, in publish order,
    /// starting after the message `after`: the `next` of the previous page), wherever they
    /// are: in the store (held by at least one group), among the half messages, or as a dead
    /// letter; with each group's position. Changes nothing. Found by id, a message carries its
    /// whole body; found by key, a preview ([`BODY_PREVIEW_BYTES`]), and a page stops at
    /// [`LISTING_BUDGET_BYTES`] of bodies and properties.
    ///
    /// A message every group has consumed is found (state [`PeekState::Consumed`]) while
    /// the topic keeps it ([`CoreConfig::consumed_retention_ms`](super::CoreConfig::consumed_retention_ms)),
    /// not after.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic; `InvalidArgument` when `after` is not a message
    /// id, or is given to a lookup by id (which finds one message).
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig, Lookup, PeekState};
    /// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// core.consume(0, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)?;
    /// core.publish(1_000, None, &t, TopicMessage::new("hello")?.with_key("order-7")?)?;
    /// let found = core.find(None, &t, Lookup::Key("order-7"), None, 10)?;
    /// assert_eq!(found.messages[0].groups[0].state, Some(PeekState::Ready));
    /// assert_eq!(found.next, None, "no other message has the key");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn find(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        lookup: Lookup<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, CoreError> {
        let t = self.topic_for_peek(instance, topic)?;
        if after.is_some() && matches!(lookup, Lookup::Id(_)) {
            return Err(CoreError::invalid(
                "after pages a lookup by key or a listing; a lookup by id finds one message",
            ));
        }
        let after_seq = seq_of(after)?;
        let matches = |m: &StoredMessage| match lookup {
            Lookup::Id(id) => m.content.id.as_str() == id,
            Lookup::Key(key) => m
                .content
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
            .filter(|m| after_seq.is_none_or(|a| m.seq > a))
            .collect();
        stored.sort_by_key(|m| m.seq);
        let view = match lookup {
            Lookup::Id(_) => BodyView::Full,
            Lookup::Key(_) => BodyView::Preview,
        };
        let listed = stored.into_iter().map(|m| self.found(t, m, view));
        let mut out = listing(listed, limit, FoundMessage::copied_bytes, FoundMessage::id);
        if out.messages.is_empty()
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
                out.messages.push(FoundMessage { message, groups });
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
        let after_seq = seq_of(after)?;
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
        Ok(listing(
            listed,
            limit,
            FoundMessage::copied_bytes,
            FoundMessage::id,
        ))
    }

    /// A kept message with every group's position.
    fn found(&self, t: &Topic, m: &StoredMessage, view: BodyView) -> FoundMessage {
        let half = t.half.entries.get(&m.seq);
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
                        (None, None) => half.map(|_| PeekState::Half),
                    },
                    consumed_times: match (entry, dead) {
                        (Some(e), _) => e.consumed_times,
                        (None, Some(d)) => d.consumed_times,
                        (None, None) => traced_deliveries(m, Some(id)),
                    },
                    next_visible_time: entry.map(|e| e.visible_at),
                }
            })
            .collect();
        let held = groups
            .iter()
            .find_map(|g| Some((g.state?, g.consumed_times, g.next_visible_time?)));
        let message = match (half, held, dead_letter) {
            (Some(h), _, _) => PeekedMessage::stored(m, PeekState::Half, h.pops, h.check_at, view),
            (None, Some((state, consumed, next)), _) => {
                PeekedMessage::stored(m, state, consumed, next, view)
            }
            (None, None, Some(d)) => PeekedMessage::dead(d, Some(m), view),
            // No group holds it: its last delivery's count, as its trace shows.
            (None, None, None) => PeekedMessage {
                next_visible_time: None,
                ..PeekedMessage::stored(
                    m,
                    if m.rolled_back {
                        PeekState::RolledBack
                    } else {
                        PeekState::Consumed
                    },
                    traced_deliveries(m, None),
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
