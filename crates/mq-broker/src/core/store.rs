//! The per-topic message store: one copy of every deliverable message, shared by all groups
//! (groups hold only sequence numbers), reference-counted and trimmed by retention.
//!
//! A message no group holds any more (acked or skipped by every group, or published while
//! the topic had no group) is not dropped at once: it stays, *unheld*, for
//! [`CoreConfig::consumed_retention_ms`] within at most
//! [`CoreConfig::consumed_retention_bytes`] of bodies per topic (the oldest release goes
//! first), so that a consumer offset can be reset to an earlier time and the message found
//! by id, key or publish time. Dead letters hold their message like a group does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mq_proto::{Message, MessageId, Properties, ReceiptHandle, Tag, TopicMessage};
use serde::{Deserialize, Serialize};

use super::persist;
use super::trace::{Trace, TraceEvent, TraceKind};

/// A message as the core keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMessage {
    /// Core-wide sequence number (also the low half of the id).
    pub(crate) seq: u64,
    /// Message id.
    #[serde(with = "persist::message_id")]
    pub(crate) id: MessageId,
    /// Body text.
    pub(crate) body: Box<str>,
    /// Upper-case hex MD5 of the body.
    pub(crate) body_md5: String,
    /// Tag, if any.
    #[serde(with = "persist::opt_tag")]
    pub(crate) tag: Option<Tag>,
    /// All properties as published, system keys included.
    #[serde(with = "persist::properties")]
    pub(crate) properties: Properties,
    /// Ordered-consumption partition (`__SHARDINGKEY`, "" when absent).
    pub(crate) partition: Arc<str>,
    /// Store time (epoch ms).
    pub(crate) publish_time: u64,
    /// `__STARTDELIVERTIME`, if any.
    pub(crate) start_deliver_time: Option<u64>,
    /// Time from which retention trims the message (set when it enters the store).
    pub(crate) expire_at: u64,
    /// Groups (and dead-letter records) that still hold the message.
    pub(crate) refs: usize,
    /// When the last holder let go (meaningful while `refs == 0`).
    pub(crate) released_at: u64,
    /// A rolled-back transactional message, kept (unheld) for its trace only: never
    /// delivered again.
    pub(crate) rolled_back: bool,
    /// What happened to it.
    pub(crate) trace: Trace,
}

impl StoredMessage {
    /// Builds the stored form of a message published at `now`, signed by `producer`.
    pub(crate) fn new(
        seq: u64,
        id: MessageId,
        message: &TopicMessage,
        now: u64,
        producer: Option<&str>,
    ) -> Self {
        let mut trace = Trace::default();
        trace.push(TraceEvent {
            producer: producer.map(str::to_owned),
            ..TraceEvent::at(TraceKind::Published, now)
        });
        Self {
            seq,
            id,
            body: message.body().into(),
            body_md5: message.body_md5(),
            tag: message.tag().cloned(),
            properties: message.all_properties(),
            partition: Arc::from(message.sharding_key().unwrap_or("")),
            publish_time: now,
            start_deliver_time: message.start_deliver_time(),
            expire_at: u64::MAX,
            refs: 0,
            released_at: 0,
            rolled_back: false,
            trace,
        }
    }

    /// What an unheld message counts against the per-topic byte bound: its body and
    /// properties.
    fn kept_bytes(&self) -> u64 {
        (self.body.len() + self.properties.encode().len()) as u64
    }

    /// The time the message becomes deliverable when it enters the queues at `now`.
    pub(crate) fn visible_from(&self, now: u64) -> u64 {
        self.start_deliver_time.map_or(now, |t| t.max(now))
    }

    /// The consumer's view of one delivery.
    pub(crate) fn delivery(
        &self,
        receipt_handle: ReceiptHandle,
        next_consume_time: u64,
        first_consume_time: u64,
        consumed_times: u32,
    ) -> Message {
        Message {
            message_id: self.id.clone(),
            receipt_handle,
            body_md5: self.body_md5.as_str().into(),
            body: self.body.as_ref().into(),
            publish_time: self.publish_time,
            next_consume_time,
            first_consume_time,
            consumed_times,
            tag: self.tag.clone(),
            properties: self.properties.clone(),
        }
    }
}

/// Messages of one topic: those at least one group holds, and those kept unheld for a
/// while after their last holder let go (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Store {
    /// By sequence number (held and unheld).
    pub(crate) messages: HashMap<u64, StoredMessage>,
    /// `(expire_at, seq)` for retention.
    pub(crate) by_expiry: BTreeSet<(u64, u64)>,
    /// `(released_at, seq)` of the unheld messages.
    pub(crate) unheld: BTreeSet<(u64, u64)>,
    /// Bytes of the unheld messages ([`StoredMessage::kept_bytes`]).
    pub(crate) unheld_bytes: u64,
}

impl Store {
    /// Stores a message held by `refs` groups at `now` (unheld from `now` for zero groups).
    pub(crate) fn insert(
        &mut self,
        mut message: StoredMessage,
        refs: usize,
        expire_at: u64,
        now: u64,
    ) {
        let seq = message.seq;
        message.refs = refs;
        message.expire_at = expire_at;
        message.released_at = now;
        self.by_expiry.insert((expire_at, seq));
        if refs == 0 {
            self.unheld.insert((message.released_at, seq));
            self.unheld_bytes += message.kept_bytes();
        }
        self.messages.insert(seq, message);
    }

    /// Messages some group or dead letter holds.
    pub(crate) fn held(&self) -> usize {
        self.messages.len() - self.unheld.len()
    }

    /// One more holder of a stored message (a group it is handed to again, a dead letter);
    /// `false` if the store no longer has it.
    pub(crate) fn hold(&mut self, seq: u64) -> bool {
        let Some(m) = self.messages.get_mut(&seq) else {
            return false;
        };
        if m.refs == 0 {
            self.unheld.remove(&(m.released_at, seq));
            self.unheld_bytes = self.unheld_bytes.saturating_sub(m.kept_bytes());
        }
        m.refs += 1;
        true
    }

    /// One holder let go of a message at `now`; with no holder left it becomes unheld
    /// (then `true`).
    pub(crate) fn release(&mut self, seq: u64, now: u64) -> bool {
        if let Some(m) = self.messages.get_mut(&seq)
            && m.refs > 0
        {
            m.refs -= 1;
            if m.refs == 0 {
                m.released_at = now;
                self.unheld.insert((now, seq));
                self.unheld_bytes += m.kept_bytes();
                return true;
            }
        }
        false
    }

    /// Drops a message regardless of holders.
    pub(crate) fn remove(&mut self, seq: u64) {
        if let Some(m) = self.messages.remove(&seq) {
            self.by_expiry.remove(&(m.expire_at, seq));
            if self.unheld.remove(&(m.released_at, seq)) {
                self.unheld_bytes = self.unheld_bytes.saturating_sub(m.kept_bytes());
            }
        }
    }

    /// Drops the unheld messages released more than `keep_ms` before `now`, then the oldest
    /// released until the unheld bytes are within `max_bytes`; whether any went.
    pub(crate) fn trim_unheld(&mut self, now: u64, keep_ms: u64, max_bytes: u64) -> bool {
        let mut changed = false;
        while let Some(&(released_at, seq)) = self.unheld.first() {
            if released_at.saturating_add(keep_ms) > now && self.unheld_bytes <= max_bytes {
                break;
            }
            self.remove(seq);
            changed = true;
        }
        changed
    }

    /// When the oldest unheld message is due to go (`None`: none is kept).
    pub(crate) fn next_unheld_expiry(&self, keep_ms: u64) -> Option<u64> {
        self.unheld
            .first()
            .map(|&(released_at, _)| released_at.saturating_add(keep_ms))
    }

    /// Removes and returns the sequence numbers of messages whose retention ended at `now`.
    pub(crate) fn take_expired(&mut self, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&(t, seq)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            self.remove(seq);
            out.push(seq);
        }
        out
    }
}
