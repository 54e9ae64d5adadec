//! The per-topic message store: one copy of every deliverable message, shared by all groups
//! (groups hold only sequence numbers), reference-counted and trimmed by retention.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mq_proto::{Message, MessageId, Properties, ReceiptHandle, Tag, TopicMessage};
use serde::{Deserialize, Serialize};

use super::persist;

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
    /// Groups that still hold the message.
    pub(crate) refs: usize,
}

impl StoredMessage {
    /// Builds the stored form of a published message.
    pub(crate) fn new(seq: u64, id: MessageId, message: &TopicMessage, now: u64) -> Self {
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
        }
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
            body_md5: self.body_md5.clone(),
            body: self.body.to_string(),
            publish_time: self.publish_time,
            next_consume_time,
            first_consume_time,
            consumed_times,
            tag: self.tag.clone(),
            properties: self.properties.clone(),
        }
    }
}

/// Messages of one topic that at least one group still holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Store {
    /// By sequence number.
    pub(crate) messages: HashMap<u64, StoredMessage>,
    /// `(expire_at, seq)` for retention.
    pub(crate) by_expiry: BTreeSet<(u64, u64)>,
}

impl Store {
    /// Stores a message held by `refs` groups (nothing is stored for zero groups).
    pub(crate) fn insert(&mut self, mut message: StoredMessage, refs: usize, expire_at: u64) {
        if refs == 0 {
            return;
        }
        message.refs = refs;
        message.expire_at = expire_at;
        self.by_expiry.insert((expire_at, message.seq));
        self.messages.insert(message.seq, message);
    }

    /// One group let go of a message; it is dropped when no group holds it any more.
    pub(crate) fn release(&mut self, seq: u64) {
        let gone = match self.messages.get_mut(&seq) {
            Some(m) => {
                m.refs = m.refs.saturating_sub(1);
                m.refs == 0
            }
            None => false,
        };
        if gone {
            self.remove(seq);
        }
    }

    /// Drops a message regardless of holders.
    pub(crate) fn remove(&mut self, seq: u64) {
        if let Some(m) = self.messages.remove(&seq) {
            self.by_expiry.remove(&(m.expire_at, seq));
        }
    }

    /// Removes and returns the sequence numbers of messages whose retention ended at `now`.
    pub(crate) fn take_expired(&mut self, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&(t, seq)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            self.by_expiry.pop_first();
            self.messages.remove(&seq);
            out.push(seq);
        }
        out
    }
}
