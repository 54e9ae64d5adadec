//! The per-topic message store: one copy of every deliverable message, shared by all groups
//! (groups hold only sequence numbers), reference-counted and trimmed by retention.
//!
//! A message no group holds any more (acked or skipped by every group, or published while
//! the topic had no group) is not dropped at once: it stays, *unheld*, for
//! [`CoreConfig::consumed_retention_ms`] within at most
//! [`CoreConfig::consumed_retention_bytes`] of bodies per topic (the oldest release goes
//! first), so that a consumer offset can be reset to an earlier time and the message found
//! by id, key or publish time. Dead letters hold their message like a group does.

use std::sync::Arc;

use mq_proto::{MessageBody, MessageId, Properties, Tag, TopicMessage};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

use super::SeqMap;
use super::delivery::{Delivery, DeliveryHandle};
use super::persist;
use super::time_index::TimeIndex;
use super::trace::{Event, Trace, TraceForm, TraceKind};

/// What never changes about a stored message once published: shared (`Arc`) by the store
/// and every [`Delivery`] of it, so a delivery copies no text.
///
/// Snapshots keep the fields where `StoredMessage` had them inline before (postcard writes
/// a nested struct as its fields in order, with no framing), so data directories written
/// before the split read unchanged.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "ContentFields")]
pub(crate) struct MessageContent {
    /// Message id.
    pub(crate) id: MessageId,
    /// Body text, with its verbatim mark when it came from a request as it is.
    pub(crate) body: MessageBody,
    /// Upper-case hex MD5 of the body.
    pub(crate) body_md5: Md5Hex,
    /// Tag, if any.
    pub(crate) tag: Option<Tag>,
    /// All properties as published, system keys included.
    pub(crate) properties: Properties,
    /// `properties` in their wire form (PROTOCOL §4), encoded once at publish: what a
    /// consume response and the retention byte count use.
    pub(crate) properties_wire: Box<str>,
}

/// The serde form of [`MessageContent`] (the wire form of the properties is derived).
#[derive(Deserialize)]
struct ContentFields {
    #[serde(with = "persist::message_id")]
    id: MessageId,
    body: String,
    body_md5: String,
    #[serde(deserialize_with = "persist::opt_tag::deserialize")]
    tag: Option<Tag>,
    #[serde(deserialize_with = "persist::properties::deserialize")]
    properties: Properties,
}

impl From<ContentFields> for MessageContent {
    fn from(f: ContentFields) -> Self {
        Self::new(
            f.id,
            // Snapshots keep no verbatim mark: found again by a scan, once per load.
            MessageBody::scanned(f.body),
            &f.body_md5,
            f.tag,
            f.properties,
        )
    }
}

impl Serialize for MessageContent {
    /// As [`ContentFields`]: id, body, MD5, tag and properties as text, in that order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("MessageContent", 5)?;
        st.serialize_field("id", self.id.as_str())?;
        st.serialize_field("body", &*self.body)?;
        st.serialize_field("body_md5", self.body_md5.as_str())?;
        st.serialize_field("tag", &self.tag.as_ref().map(Tag::as_str))?;
        st.serialize_field("properties", &*self.properties_wire)?;
        st.end()
    }
}

impl MessageContent {
    /// The content of a message; encodes the properties' wire form.
    pub(crate) fn new(
        id: MessageId,
        body: MessageBody,
        body_md5: &str,
        tag: Option<Tag>,
        properties: Properties,
    ) -> Self {
        let properties_wire = properties.encode().into_boxed_str();
        Self {
            body_md5: Md5Hex::new(body_md5, &body),
            id,
            body,
            tag,
            properties,
            properties_wire,
        }
    }
}

/// A body's MD5 as the protocol writes it (32 upper-case hex digits, PROTOCOL §3.8), kept
/// inline: a `String` would be one more allocation per stored message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Md5Hex([u8; 32]);

impl Md5Hex {
    /// `hex` as it is when it has the MD5's form (32 ASCII characters); otherwise the MD5 of
    /// `body` computed again (a damaged snapshot must not keep its messages from loading).
    pub(crate) fn new(hex: &str, body: &str) -> Self {
        let digits = |hex: &str| {
            <[u8; 32]>::try_from(hex.as_bytes())
                .ok()
                .filter(|d| d.is_ascii())
        };
        // `body_md5` always has the form.
        Self(
            digits(hex)
                .or_else(|| digits(&mq_proto::body_md5(body)))
                .unwrap_or([b'0'; 32]),
        )
    }

    /// The digits.
    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII (`new`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text for a consume response: plain (one vectorised check), so written as it
    /// is, without `as_str`'s UTF-8 check or the writer's escape scan.
    pub(crate) fn view(&self) -> mq_proto::TextView<'_> {
        // Always ASCII (see `as_str`): never the empty default.
        mq_proto::TextView::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Md5Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The partition of every message without a sharding key: one shared text, not one
/// allocation per message.
fn no_partition() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// A message as the core keeps it. Written field by field in this order (as a derived
/// `Serialize` would), its trace with the id and sequence number its issued handles need
/// ([`TraceForm`]); read as [`StoredFields`], whose trace's handles are then settled
/// ([`Trace::settle_handles`]), so that a message read back equals the one written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "StoredFields")]
pub(crate) struct StoredMessage {
    /// Core-wide sequence number (also the low half of the id).
    pub(crate) seq: u64,
    /// Id, body, MD5, tag and properties, shared with the deliveries.
    pub(crate) content: Arc<MessageContent>,
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

/// The serde form of [`StoredMessage`]: its fields, in order.
#[derive(Deserialize)]
struct StoredFields {
    seq: u64,
    content: Arc<MessageContent>,
    partition: Arc<str>,
    publish_time: u64,
    start_deliver_time: Option<u64>,
    expire_at: u64,
    refs: usize,
    released_at: u64,
    rolled_back: bool,
    trace: Trace,
}

impl From<StoredFields> for StoredMessage {
    fn from(f: StoredFields) -> Self {
        let mut trace = f.trace;
        trace.settle_handles(&f.content.id, f.seq);
        Self {
            seq: f.seq,
            content: f.content,
            partition: f.partition,
            publish_time: f.publish_time,
            start_deliver_time: f.start_deliver_time,
            expire_at: f.expire_at,
            refs: f.refs,
            released_at: f.released_at,
            rolled_back: f.rolled_back,
            trace,
        }
    }
}

impl Serialize for StoredMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("StoredMessage", 10)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("content", &self.content)?;
        st.serialize_field("partition", &self.partition)?;
        st.serialize_field("publish_time", &self.publish_time)?;
        st.serialize_field("start_deliver_time", &self.start_deliver_time)?;
        st.serialize_field("expire_at", &self.expire_at)?;
        st.serialize_field("refs", &self.refs)?;
        st.serialize_field("released_at", &self.released_at)?;
        st.serialize_field("rolled_back", &self.rolled_back)?;
        st.serialize_field(
            "trace",
            &TraceForm {
                trace: &self.trace,
                id: &self.content.id,
                seq: self.seq,
            },
        )?;
        st.end()
    }
}

impl StoredMessage {
    /// Builds the stored form of a message published at `now`, signed by `producer`.
    pub(crate) fn new(
        seq: u64,
        id: MessageId,
        message: &TopicMessage,
        now: u64,
        producer: Option<Arc<str>>,
    ) -> Self {
        let trace = Trace::starting_with(Event {
            producer,
            ..Event::at(TraceKind::Published, now)
        });
        Self {
            seq,
            content: Arc::new(MessageContent::new(
                id,
                message.message_body().clone(),
                message.body_md5(),
                message.tag().cloned(),
                message.all_properties(),
            )),
            partition: message.sharding_key().map_or_else(no_partition, Arc::from),
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
        (self.content.body.len() + self.content.properties_wire.len()) as u64
    }

    /// The time the message becomes deliverable when it enters the queues at `now`.
    pub(crate) fn visible_from(&self, now: u64) -> u64 {
        self.start_deliver_time.map_or(now, |t| t.max(now))
    }

    /// The consumer's view of one delivery: the shared content and this delivery's handle
    /// and times.
    pub(crate) fn delivery(
        &self,
        receipt_handle: DeliveryHandle,
        next_consume_time: u64,
        first_consume_time: u64,
        consumed_times: u32,
    ) -> Delivery {
        Delivery {
            content: self.content.clone(),
            publish_time: self.publish_time,
            receipt_handle,
            next_consume_time,
            first_consume_time,
            consumed_times,
        }
    }
}

/// Messages of one topic: those at least one group holds, and those kept unheld for a
/// while after their last holder let go (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Store {
    /// By sequence number (held and unheld).
    pub(crate) messages: SeqMap<StoredMessage>,
    /// `(expire_at, seq)` for retention.
    pub(crate) by_expiry: TimeIndex,
    /// `(released_at, seq)` of the unheld messages.
    pub(crate) unheld: TimeIndex,
    /// Bytes of the unheld messages ([`StoredMessage::kept_bytes`]).
    pub(crate) unheld_bytes: u64,
    /// Messages removed by the change in progress, not yet dropped: settling the topic
    /// moves them to the core's [`Retired`](super::Retired) bin (empty between calls).
    #[serde(skip)]
    pub(crate) retired: Vec<StoredMessage>,
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

    /// Removes a message regardless of holders (into [`retired`](Self::retired): dropped
    /// later, outside the lock a server holds the core with).
    pub(crate) fn remove(&mut self, seq: u64) {
        if let Some(m) = self.messages.remove(&seq) {
            self.by_expiry.remove(&(m.expire_at, seq));
            if self.unheld.remove(&(m.released_at, seq)) {
                self.unheld_bytes = self.unheld_bytes.saturating_sub(m.kept_bytes());
            }
            self.retired.push(m);
        }
    }

    /// Drops the unheld messages released more than `keep_ms` before `now`, then the oldest
    /// released until the unheld bytes are within `max_bytes`; whether any went.
    pub(crate) fn trim_unheld(&mut self, now: u64, keep_ms: u64, max_bytes: u64) -> bool {
        let mut changed = false;
        while let Some((released_at, seq)) = self.unheld.first() {
            if released_at.saturating_add(keep_ms) > now && self.unheld_bytes <= max_bytes {
                break;
            }
            self.remove(seq);
            changed = true;
        }
        changed
    }

    /// Drops the oldest unheld messages until the unheld bytes are within `max_bytes` (the
    /// byte bound of [`trim_unheld`](Self::trim_unheld), which is not a timed event: it is
    /// restored at the end of every change, see [`super::topics`]).
    pub(crate) fn trim_unheld_bytes(&mut self, max_bytes: u64) -> bool {
        self.trim_unheld(0, u64::MAX, max_bytes)
    }

    /// When the oldest unheld message is due to go (`None`: none is kept).
    pub(crate) fn next_unheld_expiry(&self, keep_ms: u64) -> Option<u64> {
        self.unheld
            .first()
            .map(|(released_at, _)| released_at.saturating_add(keep_ms))
    }

    /// Removes and returns the sequence numbers of messages whose retention ended at `now`.
    pub(crate) fn take_expired(&mut self, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((t, seq)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            self.remove(seq);
            out.push(seq);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mq_proto::ReceiptHandle;

    /// `StoredMessage` as snapshots of format 2 wrote it before its content moved behind an
    /// `Arc` (the same field types and order, inline).
    #[derive(Serialize)]
    struct FlatStoredMessage<'a> {
        seq: u64,
        id: String,
        body: Box<str>,
        body_md5: String,
        tag: Option<String>,
        properties: String,
        partition: Arc<str>,
        publish_time: u64,
        start_deliver_time: Option<u64>,
        expire_at: u64,
        refs: usize,
        released_at: u64,
        rolled_back: bool,
        trace: TraceForm<'a>,
    }

    fn stored() -> StoredMessage {
        let message = TopicMessage::new("a < b & \u{e9}")
            .and_then(|m| m.with_key("k1"))
            .map(|m| m.with_tag(Tag::new("TagA").expect("tag")))
            .map(|m| m.with_start_deliver_time(9_000))
            .expect("message");
        let id = MessageId::new("0123456789ABCDEF0000000000000007").expect("id");
        let mut m = StoredMessage::new(7, id, &message, 1_000, Some("LTAI-key".into()));
        m.expire_at = 50_000;
        m.refs = 2;
        // A delivery's event: its handle is written as text and settled when read back.
        let group = mq_proto::GroupId::new("GID_a").expect("group");
        m.trace.push(Event::issued(
            TraceKind::Delivered,
            2_000,
            &group,
            3,
            1,
            32_000,
        ));
        m
    }

    #[test]
    fn snapshot_form_is_the_flat_one_of_earlier_data_dirs() {
        let m = stored();
        let flat = FlatStoredMessage {
            seq: m.seq,
            id: m.content.id.as_str().to_owned(),
            body: m.content.body.to_string().into_boxed_str(),
            body_md5: m.content.body_md5.as_str().to_owned(),
            tag: m.content.tag.as_ref().map(|t| t.as_str().to_owned()),
            properties: m.content.properties.encode(),
            partition: m.partition.clone(),
            publish_time: m.publish_time,
            start_deliver_time: m.start_deliver_time,
            expire_at: m.expire_at,
            refs: m.refs,
            released_at: m.released_at,
            rolled_back: m.rolled_back,
            trace: TraceForm {
                trace: &m.trace,
                id: &m.content.id,
                seq: m.seq,
            },
        };
        let old = postcard::to_allocvec(&flat).expect("encode the old form");
        assert_eq!(postcard::to_allocvec(&m).expect("encode"), old);
        let read: StoredMessage = postcard::from_bytes(&old).expect("read the old form");
        assert_eq!(read, m);
        assert_eq!(
            &*read.content.properties_wire,
            m.content.properties.encode()
        );
    }

    #[test]
    fn a_stored_md5_of_another_form_is_computed_again() {
        let md5 = mq_proto::body_md5("body");
        assert_eq!(Md5Hex::new(&md5, "body").as_str(), md5);
        for damaged in ["", "abc", &"é".repeat(16)] {
            assert_eq!(Md5Hex::new(damaged, "body").as_str(), md5);
        }
    }

    #[test]
    fn deliveries_share_the_stored_content() {
        let m = stored();
        let handle = ReceiptHandle::new("0123456789ABCDEF0000000000000007-AQ==").expect("handle");
        let d = m.delivery(DeliveryHandle::Received(handle), 31_000, 2_000, 1);
        assert_eq!(d.body(), "a < b & \u{e9}");
        assert!(std::ptr::eq(d.body().as_ptr(), m.content.body.as_ptr()));
        let owned = d.into_message();
        assert_eq!(owned.body_md5, mq_proto::body_md5(&owned.body));
        assert_eq!(owned.properties, m.content.properties);
        assert_eq!(owned.tag, m.content.tag);
    }

    #[test]
    fn a_body_published_as_plain_text_is_stored_verbatim_and_stays_so_in_deliveries() {
        use mq_proto::server::{Operation, parse_request};
        let body = b"<Message><MessageBody>{\"qty\": 3, \"n\": [2]}</MessageBody></Message>";
        let Ok(Operation::Publish(message)) = parse_request(
            &http::Method::POST,
            "/topics/T/messages",
            &http::HeaderMap::new(),
            body,
        )
        .map(|p| p.operation) else {
            panic!("not a publish");
        };
        let id = MessageId::new("0123456789ABCDEF0000000000000007").expect("id");
        let m = StoredMessage::new(7, id, &message, 1_000, None);
        assert!(m.content.body.is_verbatim());
        let handle = ReceiptHandle::new("0123456789ABCDEF0000000000000007-AQ==").expect("handle");
        let d = m.delivery(DeliveryHandle::Received(handle), 31_000, 2_000, 1);
        assert!(
            mq_proto::wire::consume::AsMessageView::view(&d)
                .body
                .is_verbatim()
        );
        // A snapshot keeps no mark: a body read back is scanned, and marked again when its
        // text escapes to itself (this one), not when it does not (`>`, `<`, `&`).
        let reload = |m: &StoredMessage| -> StoredMessage {
            postcard::from_bytes(&postcard::to_allocvec(m).expect("encode")).expect("decode")
        };
        let read = reload(&m);
        assert_eq!(read.content.body.as_str(), "{\"qty\": 3, \"n\": [2]}");
        assert!(read.content.body.is_verbatim());
        let angled = TopicMessage::new("3 > 2").expect("message");
        let id = MessageId::new("0123456789ABCDEF0000000000000009").expect("id");
        let angled = StoredMessage::new(9, id, &angled, 1_000, None);
        assert!(!reload(&angled).content.body.is_verbatim());
        let plain = TopicMessage::new("{\"qty\": 3}").expect("message");
        let id = MessageId::new("0123456789ABCDEF0000000000000008").expect("id");
        let plain = StoredMessage::new(8, id, &plain, 1_000, None);
        assert!(!plain.content.body.is_verbatim());
        assert!(reload(&plain).content.body.is_verbatim());
        // `stored()`'s body (`<`, `&`) is never verbatim.
        assert!(!reload(&stored()).content.body.is_verbatim());
    }
}
