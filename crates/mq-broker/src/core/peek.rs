//! A non-destructive look at what a topic holds: [`BrokerCore::peek`] reads the store, a
//! group's entries, the half pool or the dead letters, and changes nothing (it takes
//! `&self`: no delivery, no receipt handle, no counter, not even the clock).

use std::collections::BTreeMap;

use mq_proto::{GroupId, InstanceId, TopicName};
use serde::Serialize;

use super::group::{Entry, EntryState};
use super::store::StoredMessage;
use super::{BrokerCore, CoreError};

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
    /// Dead letters of the group (the message's record; the body is gone), oldest first.
    Dead,
    /// Half (transactional) messages awaiting commit or rollback; no group. By check time.
    Half,
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
    /// Body text; `None` for a dead letter (its body is no longer kept).
    pub body: Option<String>,
    /// Upper-case hex MD5 of the body; `None` for a dead letter.
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
    fn stored(m: &StoredMessage, state: PeekState, consumed: u32, next: u64) -> Self {
        Self {
            message_id: m.id.as_str().to_owned(),
            state,
            body: Some(m.body.to_string()),
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
}

impl BrokerCore {
    /// Up to `limit` messages of `topic` in `state`, as of the core's latest time
    /// ([`now_ms`](Self::now_ms)), without changing anything.
    ///
    /// `group` is required for every state but [`PeekState::Half`] (and ignored for it). An
    /// unknown group lists nothing.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic; `InvalidArgument` when `group` is missing for a
    /// group state.
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
        let t = self
            .topics
            .get(&(instance.cloned(), topic.clone()))
            .ok_or_else(|| {
                CoreError::new(
                    mq_proto::ErrorCode::TopicNotExist,
                    format!("The topic you provided does not exist: {topic}"),
                )
            })?;
        if state == PeekState::Half {
            let mut half: Vec<_> = t.half.entries.values().collect();
            half.sort_by_key(|h| (h.check_at, h.message.seq));
            return Ok(half
                .into_iter()
                .take(limit)
                .map(|h| PeekedMessage::stored(&h.message, state, h.pops, h.check_at))
                .collect());
        }
        let group =
            group.ok_or_else(|| CoreError::invalid("a consumer group is required to peek"))?;
        let Some(g) = t.groups.get(group) else {
            return Ok(Vec::new());
        };
        if state == PeekState::Dead {
            return Ok(g
                .dead_letters
                .iter()
                .take(limit)
                .map(|d| PeekedMessage {
                    message_id: d.message_id.as_str().to_owned(),
                    state,
                    body: None,
                    body_md5: None,
                    tag: None,
                    properties: BTreeMap::new(),
                    publish_time: d.publish_time,
                    start_deliver_time: None,
                    consumed_times: d.consumed_times,
                    next_visible_time: None,
                    dead_lettered_at: Some(d.dead_lettered_at),
                })
                .collect());
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
        let mut out = Vec::new();
        for (seq, e) in entries.into_iter().take(limit) {
            let m = t.store.messages.get(seq).ok_or_else(|| {
                CoreError::internal("a group's message is missing from the store")
            })?;
            out.push(PeekedMessage::stored(
                m,
                state,
                e.consumed_times,
                e.visible_at,
            ));
        }
        Ok(out)
    }
}
