//! The consume response document (PROTOCOL §3.4): `Messages` in
//! `http://mq.aliyuncs.com/doc/v1/`, one `Message` child per [`Message`] (`MessageId`,
//! `ReceiptHandle`, `MessageBodyMD5`, `MessageBody`, the times and the count, `MessageTag`,
//! `Properties` in the §4 format). A consume request has no body.

use std::borrow::Cow;
use std::str::FromStr;

use bytes::Bytes;

use crate::message::Message;
use crate::properties::Properties;
use crate::types::Tag;
use crate::wire::{DecodeError, message_id, receipt_handle};
use crate::xml::{self, Elem, NS_MESSAGE, XmlError, XmlReader, XmlWriter};

/// Encodes a consume response (PROTOCOL §3.4): `Messages` with one `Message` per message,
/// every field in the documented order, `MessageTag` only when the message has a tag and
/// `Properties` only when there are some (with the trailing `|`).
///
/// Do not send an empty list with status 200 (SDKs break on it): answer 404
/// `MessageNotExist` instead.
pub fn encode_response(messages: &[Message]) -> Bytes {
    let capacity: usize = messages
        .iter()
        .map(|m| {
            420 + m.message_id.as_str().len()
                + m.receipt_handle.as_str().len()
                + m.body_md5.len()
                + xml::text_capacity(&m.body)
                + m.tag.as_ref().map_or(0, |t| xml::text_capacity(t.as_str()))
                + m.properties.encoded_len()
        })
        .sum();
    let mut w = XmlWriter::with_capacity(64 + capacity);
    w.open_root("Messages", NS_MESSAGE);
    let mut props = String::new();
    for m in messages {
        w.open("Message");
        w.text("MessageId", m.message_id.as_str());
        w.text("ReceiptHandle", m.receipt_handle.as_str());
        w.text("MessageBodyMD5", &m.body_md5);
        w.text("MessageBody", &m.body);
        w.number("PublishTime", m.publish_time);
        w.number("NextConsumeTime", m.next_consume_time);
        w.number("FirstConsumeTime", m.first_consume_time);
        w.number("ConsumedTimes", u64::from(m.consumed_times));
        if let Some(tag) = &m.tag {
            w.text("MessageTag", tag.as_str());
        }
        if !m.properties.is_empty() {
            props.clear();
            m.properties.encode_into(&mut props);
            w.text("Properties", &props);
        }
        w.close("Message");
    }
    w.close("Messages");
    w.finish()
}

/// Reads the children of a `Messages` root (already entered) to the end of the document.
///
/// Lenient where SDKs are: `Properties` segments that are not a valid `key:value` pair are
/// skipped (like the Python and Go SDKs), a `MessageTag` that is not a valid [`Tag`] is
/// dropped, and a missing `MessageBodyMD5` leaves `body_md5` empty. A message without id,
/// handle, body or times is an error.
pub(crate) fn decode_response(r: &mut XmlReader<'_>) -> Result<Vec<Message>, DecodeError> {
    let mut messages = Vec::new();
    r.children(|r, e| {
        if e == Elem::Message {
            messages.push(read_message(r)?);
            Ok::<(), DecodeError>(())
        } else {
            Ok(r.skip()?)
        }
    })?;
    r.finish().map_err(DecodeError::from)?;
    Ok(messages)
}

/// Reads one `Message` element (already entered).
fn read_message(r: &mut XmlReader<'_>) -> Result<Message, DecodeError> {
    let mut id = None;
    let mut handle = None;
    let mut md5 = None;
    let mut body = None;
    let mut publish = None;
    let mut next = None;
    let mut first = None;
    let mut times = None;
    let mut tag = None;
    let mut props = None;
    r.children(|r, e| {
        let slot = match e {
            Elem::MessageId => &mut id,
            Elem::ReceiptHandle => &mut handle,
            Elem::MessageBodyMd5 => &mut md5,
            Elem::MessageBody => &mut body,
            Elem::PublishTime => &mut publish,
            Elem::NextConsumeTime => &mut next,
            Elem::FirstConsumeTime => &mut first,
            Elem::ConsumedTimes => &mut times,
            Elem::MessageTag => &mut tag,
            Elem::Properties => &mut props,
            _ => return r.skip(),
        };
        *slot = Some(r.read_text()?);
        Ok::<(), XmlError>(())
    })?;
    let handle = handle.ok_or(DecodeError::MissingElement("ReceiptHandle"))?;
    Ok(Message {
        message_id: message_id(id)?,
        receipt_handle: receipt_handle(handle.trim())?,
        body_md5: md5.map(|m| m.trim().to_owned()).unwrap_or_default(),
        body: body
            .ok_or(DecodeError::MissingElement("MessageBody"))?
            .into_owned(),
        publish_time: number(publish, "PublishTime")?,
        next_consume_time: number(next, "NextConsumeTime")?,
        first_consume_time: number(first, "FirstConsumeTime")?,
        consumed_times: number(times, "ConsumedTimes")?,
        tag: tag.and_then(|t| Tag::new(t.trim()).ok()),
        properties: props.map(|p| lenient_properties(&p)).unwrap_or_default(),
    })
}

/// A required numeric element's (trimmed) text as a number.
fn number<T: FromStr>(text: Option<Cow<'_, str>>, element: &'static str) -> Result<T, DecodeError> {
    let text = text.ok_or(DecodeError::MissingElement(element))?;
    text.trim().parse().map_err(|_| DecodeError::BadNumber {
        element,
        value: text.into_owned(),
    })
}

/// Properties as the SDKs read them: invalid segments are skipped.
fn lenient_properties(s: &str) -> Properties {
    let mut props = Properties::new();
    for segment in s.split('|') {
        if let Some((k, v)) = segment.split_once(':') {
            // Invalid pairs are skipped on purpose (see `decode_response`).
            let _ = props.insert(k, v);
        }
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{MessageId, ReceiptHandle};

    #[test]
    fn response_roundtrip() {
        let message = |n: u64, tag: Option<&str>, props: &[(&str, &str)]| {
            let mut properties = Properties::new();
            for &(k, v) in props {
                properties.insert(k, v).unwrap();
            }
            Message {
                message_id: MessageId::new(format!("1E05791C117818B4AAC23B1BB0CE000{n}")).unwrap(),
                receipt_handle: ReceiptHandle::new(format!("1E05-{n}-MTcw")).unwrap(),
                body_md5: crate::message::body_md5(" a < b & c "),
                body: " a < b & c ".into(),
                publish_time: 1_709_837_398_000 + n,
                next_consume_time: 1_709_838_898_000,
                first_consume_time: 1_709_838_598_000,
                consumed_times: 3,
                tag: tag.map(|t| Tag::new(t).unwrap()),
                properties,
            }
        };
        let messages = vec![
            message(1, Some("TagA"), &[("KEYS", "k1"), ("color", "red")]),
            message(2, None, &[]),
        ];
        let body = encode_response(&messages);
        let mut r = XmlReader::new(&body);
        assert_eq!(r.root(), Ok(Elem::Messages));
        assert_eq!(decode_response(&mut r), Ok(messages));
    }
}
