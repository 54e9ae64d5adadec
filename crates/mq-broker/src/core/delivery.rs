//! One delivery of a message, as a consume answers it: the stored message's shared content
//! (id, body, MD5, tag, properties: one `Arc`, no copy) and this delivery's receipt handle
//! and times. The server encodes it straight into the consume response
//! ([`mq_proto::wire::consume::encode_response`] through [`AsMessageView`]).

use std::sync::Arc;

use bytestring::ByteString;
use mq_proto::wire::consume::{AsMessageView, MessageView, PropertiesView};
use mq_proto::{Message, MessageBody, Properties, ReceiptHandle, Tag, TextView};

use super::handle::HandleText;
use super::store::MessageContent;

/// One message delivered by a consume (normal, orderly or half; PROTOCOL §3.4): what
/// [`Outcome::Delivered`](super::Outcome::Delivered) holds. The id, body, MD5, tag and
/// properties are shared with the broker's store (cloning a delivery copies no text); the
/// receipt handle and times are this delivery's. Times are epoch milliseconds.
///
/// [`into_message`](Self::into_message) gives the protocol's owned [`Message`], equal to
/// what a client decodes from the response.
///
/// ```
/// use mq_broker::core::{BrokerCore, Call, CoreConfig, Outcome};
/// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName, WaitSeconds};
///
/// let mut core = BrokerCore::new(CoreConfig::default());
/// let topic = TopicName::new("orders")?;
/// let group = GroupId::new("GID_billing")?;
/// let consume = Call::Consume {
///     instance: None,
///     topic: topic.clone(),
///     group: group.clone(),
///     kind: ConsumeKind::Normal,
///     filter: TagFilter::All,
///     batch: BatchSize::new(16)?,
///     wait: WaitSeconds::new(0)?,
/// };
/// core.apply(1_000, consume.clone())?; // registers the group
/// let message = TopicMessage::new("order 42")?;
/// core.apply(1_000, Call::Publish { instance: None, topic, message, producer: None })?;
/// let Outcome::Delivered(got) = core.apply(2_000, consume)? else { unreachable!() };
/// assert_eq!(got[0].body(), "order 42");
/// assert_eq!(got[0].consumed_times(), 1);
/// let owned = got[0].clone().into_message();
/// assert_eq!(owned.receipt_handle.as_str(), got[0].receipt_handle());
/// assert!(owned.body_md5_matches());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub(crate) content: Arc<MessageContent>,
    pub(crate) publish_time: u64,
    pub(crate) receipt_handle: DeliveryHandle,
    pub(crate) next_consume_time: u64,
    pub(crate) first_consume_time: u64,
    pub(crate) consumed_times: u32,
}

/// A delivery's receipt handle: one this core issued, inline (no allocation), or one
/// received with the message (the gateway's, from the engine). Compared and shown by its
/// text alone: a delivery turned into a [`Message`] and back equals the one the core gave.
#[derive(Clone)]
pub(crate) enum DeliveryHandle {
    /// Issued by this core.
    Issued(HandleText),
    /// Received with the message.
    Received(ReceiptHandle),
}

impl DeliveryHandle {
    fn as_str(&self) -> &str {
        match self {
            Self::Issued(text) => text.as_str(),
            Self::Received(handle) => handle.as_str(),
        }
    }

    /// The text as a consume response writes it (plain: no UTF-8 check, no escape scan).
    fn view(&self) -> TextView<'_> {
        match self {
            Self::Issued(text) => text.view(),
            Self::Received(handle) => TextView::from(handle),
        }
    }
}

impl PartialEq for DeliveryHandle {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for DeliveryHandle {}

impl std::fmt::Debug for DeliveryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Delivery {
    /// The message id.
    pub fn message_id(&self) -> &str {
        self.content.id.as_str()
    }

    /// This delivery's receipt handle.
    pub fn receipt_handle(&self) -> &str {
        self.receipt_handle.as_str()
    }

    /// Upper-case hex MD5 of the body (PROTOCOL §3.8).
    pub fn body_md5(&self) -> &str {
        self.content.body_md5.as_str()
    }

    /// The body text.
    pub fn body(&self) -> &str {
        &self.content.body
    }

    /// The body as shared bytes (a reference count, no copy).
    pub fn body_bytes(&self) -> ByteString {
        self.content.body.text().clone().into()
    }

    /// When the message was stored (epoch ms).
    pub fn publish_time(&self) -> u64 {
        self.publish_time
    }

    /// When this delivery's invisibility ends and its handle expires (epoch ms).
    pub fn next_consume_time(&self) -> u64 {
        self.next_consume_time
    }

    /// When the message was first delivered (epoch ms).
    pub fn first_consume_time(&self) -> u64 {
        self.first_consume_time
    }

    /// Deliveries of the message so far, this one included (1 for the first).
    pub fn consumed_times(&self) -> u32 {
        self.consumed_times
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&Tag> {
        self.content.tag.as_ref()
    }

    /// Every property as published, system keys included.
    pub fn properties(&self) -> &Properties {
        &self.content.properties
    }

    /// The protocol's owned [`Message`] of this delivery (copies the text).
    pub fn into_message(self) -> Message {
        let c = &*self.content;
        Message {
            message_id: c.id.clone(),
            receipt_handle: match self.receipt_handle {
                DeliveryHandle::Received(handle) => handle,
                DeliveryHandle::Issued(text) => text
                    .to_receipt_handle()
                    .expect("an issued handle is a valid receipt handle"),
            },
            body_md5: c.body_md5.as_str().into(),
            body: c.body.text().clone(),
            publish_time: self.publish_time,
            next_consume_time: self.next_consume_time,
            first_consume_time: self.first_consume_time,
            consumed_times: self.consumed_times,
            tag: c.tag.clone(),
            properties: c.properties.clone(),
        }
    }
}

impl From<Message> for Delivery {
    /// A delivery of a message the broker does not store itself (the gateway's, received
    /// from the engine): its text moves into the delivery.
    fn from(m: Message) -> Self {
        let content = MessageContent::new(
            m.message_id,
            MessageBody::from(m.body),
            &m.body_md5,
            m.tag,
            m.properties,
        );
        Self {
            content: Arc::new(content),
            publish_time: m.publish_time,
            receipt_handle: DeliveryHandle::Received(m.receipt_handle),
            next_consume_time: m.next_consume_time,
            first_consume_time: m.first_consume_time,
            consumed_times: m.consumed_times,
        }
    }
}

impl AsMessageView for Delivery {
    fn view(&self) -> MessageView<'_> {
        let c = &*self.content;
        MessageView {
            message_id: TextView::from(&c.id),
            receipt_handle: self.receipt_handle.view(),
            body_md5: c.body_md5.view(),
            body: c.body.view(),
            publish_time: self.publish_time,
            next_consume_time: self.next_consume_time,
            first_consume_time: self.first_consume_time,
            consumed_times: self.consumed_times,
            tag: c.tag.as_ref().map(Tag::as_str),
            properties: PropertiesView::Encoded(&c.properties_wire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{BrokerCore, CoreConfig};
    use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};

    /// An issued handle and the same text received compare (and print) alike: a delivery
    /// turned into the protocol's `Message` and back (as the gateway builds its own) equals
    /// the one the core gave.
    #[test]
    fn a_delivery_round_tripped_through_message_is_equal() {
        let mut core = BrokerCore::new(CoreConfig::default());
        let (t, g) = (TopicName::new("T").unwrap(), GroupId::new("GID_a").unwrap());
        let consume = |core: &mut BrokerCore, now| {
            core.deliver(
                now,
                (None, &t, &g),
                ConsumeKind::Normal,
                &TagFilter::All,
                BatchSize::MAX,
            )
            .unwrap()
        };
        consume(&mut core, 0);
        core.publish_by(1_000, None, &t, TopicMessage::new("hi").unwrap(), None)
            .unwrap();
        let d = consume(&mut core, 2_000).remove(0);
        assert!(matches!(d.receipt_handle, DeliveryHandle::Issued(_)));
        let back = Delivery::from(d.clone().into_message());
        assert!(matches!(back.receipt_handle, DeliveryHandle::Received(_)));
        assert_eq!(back, d);
        assert_eq!(format!("{back:?}"), format!("{d:?}"));
        assert!(format!("{d:?}").contains(&format!("receipt_handle: {:?}", d.receipt_handle())));
    }
}
