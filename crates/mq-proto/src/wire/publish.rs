//! The publish documents, both rooted at `Message` in `http://mq.aliyuncs.com/doc/v1/`: the
//! request body (PROTOCOL §3.2: `MessageBody`, `MessageTag`, `Properties`) and the response
//! body (§3.3: `MessageId`, `MessageBodyMD5`, `ReceiptHandle`), with [`PublishReceipt`].

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;

use crate::message::{MessageError, TopicMessage};
use crate::properties::{MAX_PROPERTIES_LEN, Properties, PropertyError};
use crate::text::MessageBody;
use crate::types::{MessageId, ReceiptHandle};
use crate::wire::error::{RequestError, invalid_argument, malformed_xml, schema_error, text_error};
use crate::wire::{
    DecodeError, for_each_child, message_id, receipt_handle, rest_is_well_formed, trimmed,
};
use crate::xml::{self, Document, Elem, NS_MESSAGE, XmlError, XmlReader, XmlWriter};

/// The result of a successful publish (PROTOCOL §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReceipt {
    /// Id assigned to the message.
    pub message_id: MessageId,
    /// Upper-case hex MD5 of the body as computed by the server.
    pub body_md5: String,
    /// For transactional messages: the handle to commit or roll back with.
    pub receipt_handle: Option<ReceiptHandle>,
}

/// Encodes a publish request body (PROTOCOL §3.2): `MessageBody`, then `MessageTag` and
/// `Properties` when present.
pub(crate) fn encode_request(message: &TopicMessage) -> Bytes {
    let props = message.all_properties();
    let tag_len = message.tag().map_or(0, |t| t.as_str().len() + 26);
    let props_len = if props.is_empty() {
        0
    } else {
        props.encoded_len() + 26
    };
    let mut w = XmlWriter::with_capacity(
        80 + NS_MESSAGE.len()
            + xml::body_capacity(message.message_body().view())
            + tag_len
            + props_len,
    );
    w.open_root("Message", NS_MESSAGE);
    w.open("MessageBody");
    w.body(message.message_body().view());
    w.close("MessageBody");
    if let Some(tag) = message.tag() {
        w.text("MessageTag", tag.as_str());
    }
    if !props.is_empty() {
        w.text("Properties", &props.encode());
    }
    w.close("Message");
    w.finish()
}

/// Decodes a publish request body (PROTOCOL §3.2) into the message to store; the message is
/// checked against the limits (§6.9). Its body, tag and property keys and values share one
/// buffer of exactly their size ([`message`]), never `body`'s: a stored message keeps no
/// part of its request alive.
///
/// # Errors
///
/// `MalformedXML` for a body that is not well-formed; `InvalidArgument` for another root, a
/// repeated or missing `MessageBody`, or an invalid message (tag, properties, size).
pub(crate) fn decode_request(body: &Bytes) -> Result<TopicMessage, RequestError> {
    let doc = Document::new(body);
    // The shape every SDK writes, read without the general reader when the document has it.
    decode_flat(&doc).unwrap_or_else(|| decode_general(&doc))
}

/// [`decode_request`] of a document of the shape [`Document::flat_children`] reads; `None`
/// for any other (nothing decided).
fn decode_flat(doc: &Document) -> Option<Result<TopicMessage, RequestError>> {
    let (mut text, mut tag, mut props) = (None, None, None);
    let flat = doc.flat_children(Elem::Message, |e, piece, cdata| {
        let slot = match e {
            Elem::MessageBody => &mut text,
            Elem::MessageTag => &mut tag,
            Elem::Properties => &mut props,
            // Skipped by the general reader; not flat here.
            _ => return false,
        };
        // Twice: the general reader's schema error.
        slot.replace((piece, cdata)).is_none()
    });
    if !flat {
        return None;
    }
    let Some((text, cdata)) = text else {
        return Some(Err(schema_error("MessageBody", "the element is missing.")));
    };
    // As `XmlReader::is_verbatim` marks it: plain text (it follows a `>`) without a `>`.
    let verbatim = !cdata && !text.is_empty() && memchr::memchr(b'>', text.as_bytes()).is_none();
    Some(message(
        (Cow::Borrowed(text), verbatim),
        tag.map(|(t, _)| Cow::Borrowed(t)),
        props.map(|(p, _)| Cow::Borrowed(p)),
    ))
}

/// [`decode_request`] by the general reader: any well-formed document, every error.
fn decode_general(doc: &Document) -> Result<TopicMessage, RequestError> {
    let mut r = doc.reader().text_only();
    let root = r.root().map_err(|e| malformed_xml(&e))?;
    if root != Elem::Message {
        let found = format!("root element <{}> is not <Message>", r.root_name());
        return Err(rest_is_well_formed(&mut r, schema_error("Message", found)));
    }
    let mut text: Option<Cow<'_, str>> = None;
    let mut tag: Option<Cow<'_, str>> = None;
    let mut props: Option<Cow<'_, str>> = None;
    for_each_child(&mut r, |r, e| {
        let slot = match e {
            Elem::MessageBody => &mut text,
            Elem::MessageTag => &mut tag,
            Elem::Properties => &mut props,
            _ => return r.skip().map_err(|e| malformed_xml(&e)),
        };
        if slot.is_some() {
            return Err(schema_error(e.as_str(), "the element appears twice."));
        }
        *slot = Some(r.read_text().map_err(|err| text_error(e.as_str(), &err))?);
        Ok(())
    })?;

    let text = text.ok_or_else(|| schema_error("MessageBody", "the element is missing."))?;
    // Marked verbatim when it is: a consume response then carries it without the escape scan.
    let verbatim = r.is_verbatim(&text);
    message((text, verbatim), tag, props)
}

/// The message of a publish request from the texts of its `MessageBody` (with its verbatim
/// mark), `MessageTag` and `MessageProperties` elements as read. The texts are copied into
/// one buffer of exactly their size and shared from it: a stored message then keeps its
/// texts and nothing else — not the request document, nor the connection's read buffer it
/// lies in (5.2 KB per stored 1 KiB message that way), nor an allocation rounded up to hold
/// the document's markup too. Text resolved from references is already a copy of its own.
fn message(
    (text, verbatim): (Cow<'_, str>, bool),
    tag: Option<Cow<'_, str>>,
    props: Option<Cow<'_, str>>,
) -> Result<TopicMessage, RequestError> {
    let borrowed = || {
        [Some(&text), tag.as_ref(), props.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|t| match t {
                Cow::Borrowed(s) => Some(*s),
                Cow::Owned(_) => None,
            })
    };
    // Exactly their size: a buffer grown piece by piece would keep its spare capacity.
    let mut packed = String::with_capacity(borrowed().map(str::len).sum());
    borrowed().for_each(|s| packed.push_str(s));
    let packed = ByteString::from(packed);
    // Taken in the order they were packed: body, tag, properties.
    let mut next = 0;
    let mut keep = |piece: Cow<'_, str>| match piece {
        Cow::Borrowed(s) => {
            let kept = packed.slice_ref(&packed[next..next + s.len()]);
            next += s.len();
            kept
        }
        Cow::Owned(mut s) => {
            // Without the spare capacity, which a stored message would keep.
            s.shrink_to_fit();
            ByteString::from(s)
        }
    };
    let body = MessageBody::marked(keep(text).into(), verbatim);
    let tag = tag.map(&mut keep);
    let props = props.map(&mut keep);
    // Not trimmed: spaces are legal at the edges of property keys and values.
    let (properties, key) = match props {
        None => (Properties::new(), None),
        Some(p) if p.is_empty() => (Properties::new(), None),
        Some(p) => Properties::decode_text_without_keys(&p).map_err(|e| message_error(e.into()))?,
    };
    let tag = tag.map(|t| trimmed(&t));
    let message =
        TopicMessage::from_xml_parts(body, tag, properties, key).map_err(message_error)?;
    message.check_limits().map_err(message_error)?;
    Ok(message)
}

/// Encodes a publish response (PROTOCOL §3.3): `Message` with `MessageId`, `MessageBodyMD5`
/// and, for transactional messages, `ReceiptHandle`.
///
/// ```
/// use mq_proto::MessageId;
/// use mq_proto::wire::publish::{self, PublishReceipt};
/// let r = PublishReceipt {
///     message_id: MessageId::new("1E05791C117818B4AAC23B1BB0CE0000")?,
///     body_md5: "10395A1196110F8C03A53B916B206703".into(),
///     receipt_handle: None,
/// };
/// assert_eq!(&publish::encode_response(&r)[..],
///     br#"<?xml version="1.0" encoding="UTF-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/"><MessageId>1E05791C117818B4AAC23B1BB0CE0000</MessageId><MessageBodyMD5>10395A1196110F8C03A53B916B206703</MessageBodyMD5></Message>"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_response(receipt: &PublishReceipt) -> Bytes {
    let handle_len = receipt
        .receipt_handle
        .as_ref()
        .map_or(0, |h| h.as_str().len() + 32);
    let mut w = XmlWriter::with_capacity(
        128 + NS_MESSAGE.len() + receipt.message_id.as_str().len() + 64 + handle_len,
    );
    w.open_root("Message", NS_MESSAGE);
    w.text("MessageId", receipt.message_id.as_str());
    w.text("MessageBodyMD5", &receipt.body_md5);
    if let Some(h) = &receipt.receipt_handle {
        w.text("ReceiptHandle", h.as_str());
    }
    w.close("Message");
    w.finish()
}

/// Reads the children of a publish response's `Message` root (already entered) to the end of
/// the document (PROTOCOL §3.3). `MessageId` and `MessageBodyMD5` are required; a blank
/// `ReceiptHandle` is none.
pub(crate) fn decode_response(r: &mut XmlReader<'_>) -> Result<PublishReceipt, DecodeError> {
    let mut id = None;
    let mut md5 = None;
    let mut handle = None;
    r.children(|r, e| {
        let slot = match e {
            Elem::MessageId => &mut id,
            Elem::MessageBodyMd5 => &mut md5,
            Elem::ReceiptHandle => &mut handle,
            _ => return r.skip(),
        };
        *slot = Some(r.read_shared()?);
        Ok::<(), XmlError>(())
    })
    .and_then(|()| r.finish())
    .map_err(DecodeError::from)?;

    let message_id = message_id(id.as_ref())?;
    let body_md5 = md5
        .ok_or(DecodeError::MissingElement("MessageBodyMD5"))?
        .trim()
        .to_owned();
    let receipt_handle = match handle {
        Some(h) if !h.trim().is_empty() => Some(receipt_handle(&h)?),
        _ => None,
    };
    Ok(PublishReceipt {
        message_id,
        body_md5,
        receipt_handle,
    })
}

/// The answer to a message the request body describes but the service refuses.
fn message_error(e: MessageError) -> RequestError {
    match e {
        MessageError::EmptyBody => {
            schema_error("MessageBody", "the message body must not be empty.")
        }
        MessageError::BodyTooLarge { max, .. } => invalid_argument(format!(
            "The value of MessageBody should between 1 and {max} bytes."
        )),
        MessageError::Property(PropertyError::TooLarge { .. }) => invalid_argument(format!(
            "The value of Properties should between 1 and {MAX_PROPERTIES_LEN} bytes."
        )),
        MessageError::Tag(v) if v.what == "tag" => schema_error("MessageTag", v),
        MessageError::InvalidBodyChar { .. } => schema_error("MessageBody", e),
        other => schema_error("Properties", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Tag;

    /// The flat reading's answer, when it gives one, is the general reader's, verbatim mark
    /// included.
    fn same_as_general(body: &[u8]) -> Option<bool> {
        let doc = Document::new(&Bytes::copy_from_slice(body));
        let flat = decode_flat(&doc)?;
        let general = decode_general(&doc);
        let mark = |r: &Result<TopicMessage, RequestError>| {
            r.as_ref().ok().map(|m| m.message_body().is_verbatim())
        };
        assert_eq!(
            (&flat, mark(&flat)),
            (&general, mark(&general)),
            "{}",
            String::from_utf8_lossy(body)
        );
        Some(flat.is_ok())
    }

    /// Whether `piece` lies inside `doc` (shares its buffer).
    fn inside(doc: &Bytes, piece: &[u8]) -> bool {
        let start = (piece.as_ptr() as usize).wrapping_sub(doc.as_ptr() as usize);
        start < doc.len()
    }

    #[test]
    fn a_message_keeps_its_texts_packed_and_no_part_of_its_document() {
        let body = "x".repeat(100);
        let pad = " ".repeat(50_000);
        for doc in [
            format!(
                "<Message><MessageBody>{body}</MessageBody><MessageTag>T</MessageTag><Properties>a:1|</Properties></Message>"
            ),
            // Read flat (whitespace between elements) and by the general reader (a comment).
            format!(
                "<Message><MessageBody>{body}</MessageBody>{pad}<MessageTag>T</MessageTag><Properties>a:1|</Properties></Message>"
            ),
            format!(
                "<Message><!--{pad}--><MessageBody>{body}</MessageBody><MessageTag>T</MessageTag><Properties>a:1|</Properties></Message>"
            ),
        ] {
            let doc = Bytes::from(doc);
            let m = decode_request(&doc).unwrap();
            assert_eq!(m.body(), body.as_str());
            let body_bytes = m.body_bytes();
            let tag = m.tag().unwrap().as_str().as_bytes();
            let value = m.properties().get("a").unwrap().as_bytes();
            for (what, piece) in [("body", &body_bytes[..]), ("tag", tag), ("property", value)] {
                assert!(
                    !inside(&doc, piece),
                    "the {what} is not a slice of the document"
                );
            }
            // One buffer of exactly the texts: the tag right after the body, the
            // properties' text after the tag.
            let end = body_bytes.as_ptr() as usize + body_bytes.len();
            assert_eq!(tag.as_ptr() as usize, end, "the tag follows the body");
            assert_eq!(value.as_ptr() as usize, end + 1 + 2, "then `a:1|`'s value");
        }
    }

    #[test]
    fn the_sdks_documents_are_read_flat() {
        let ours = encode_request(
            &TopicMessage::new("{\"k\": 1} a < b & c > d")
                .unwrap()
                .with_tag(Tag::new("TagA").unwrap())
                .with_property("color", "red")
                .unwrap(),
        );
        let python = r#"<?xml version="1.0" encoding="utf-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/"><MessageBody>hello mq</MessageBody><Properties>KEYS:key-1|a:1|color:red|</Properties><MessageTag>TagA</MessageTag></Message>"#;
        let node = r#"<?xml version="1.0" encoding="UTF-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/"><MessageBody><![CDATA[tagged <body> & "quotes" héllo 中文]]></MessageBody><MessageTag><![CDATA[TagA]]></MessageTag><Properties><![CDATA[KEYS:key-1|a:1|color:red]]></Properties></Message>"#;
        let plain = "<Message>\n  <MessageBody>x</MessageBody>\n</Message>\n";
        for doc in [python.as_bytes(), node.as_bytes(), plain.as_bytes()] {
            assert_eq!(
                same_as_general(doc),
                Some(true),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        // Ours escapes `<` and `&`: a reference, so the general reader's.
        assert_eq!(same_as_general(&ours), None);
        let ours = encode_request(&TopicMessage::new("{\"k\": 1}").unwrap());
        assert_eq!(same_as_general(&ours), Some(true));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Documents near the flat shape, of either kind: wherever the flat reading answers,
        /// it answers as the general reader does.
        #[test]
        fn the_flat_reading_agrees_with_the_general_reader(
            decl in proptest::sample::select(vec![
                "", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>", "<?xml version=\"1.0\"?>",
                "<?xml version=\"1.1\"?>", " <?xml version=\"1.0\"?>", "\u{feff}",
                "<?xml version=\"1.0\"?>\n", "<!--c-->",
            ]),
            root in proptest::sample::select(vec![
                "<Message>", "<Message xmlns=\"http://mq.aliyuncs.com/doc/v1/\">",
                "<Message xmlns=\"\">", "<Message xmlns='x'>", "<Message xmlns=\"a<b\">",
                "<Message xmlns=\"a&amp;b\">", "<Message xmlns=\"a>b\">",
                "<a:Message xmlns:a=\"x\">", "<Message  >", "<Messages>", "<Message a=\"1\">",
            ]),
            children in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "MessageBody", "MessageTag", "Properties", "MessageId", "Other",
                        "MessageBody ", "a:MessageBody",
                    ]),
                    proptest::sample::select(vec![
                        "", "x", " TagA ", "a > b", "a]]>b", "a]]b", "&amp;", "&lt;x&gt;",
                        "&#20013;", "a & b", "a\r\nb", "中文\t", "<![CDATA[a < & b]]>",
                        "<![CDATA[]]>", "<![CDATA[x]]>y", "a<!--c-->b", "<b/>", "<?p?>",
                        "KEYS:k|a:1", "a:1|", "|", "]]>",
                    ]),
                    proptest::sample::select(vec!["plain", "empty-tag", "space", "unclosed"]),
                ),
                0..4,
            ),
            tail in proptest::sample::select(vec!["", "\n", " \t", "x", "<!--c-->", "<Message/>"]),
        ) {
            let mut doc = format!("{decl}{root}");
            let root_name = crate::wire::near_flat::name(root);
            for (name, text, form) in children {
                crate::wire::near_flat::push_child(&mut doc, name, text, form);
            }
            doc.push_str(&format!("</{root_name}>{tail}"));
            same_as_general(doc.as_bytes());
        }
    }

    #[test]
    fn an_element_inside_a_text_field_is_refused_not_dropped() {
        // Dropping the element would store other text than was sent (`bc`, `x`, `k:v`).
        for (doc, field) in [
            (
                "<Message><MessageBody>b<i>x</i>c</MessageBody></Message>",
                "MessageBody",
            ),
            (
                "<Message><MessageBody><i/>x</MessageBody></Message>",
                "MessageBody",
            ),
            (
                "<Message><MessageBody>x</MessageBody><MessageTag>A<b>B</b></MessageTag></Message>",
                "MessageTag",
            ),
            (
                "<Message><MessageBody>x</MessageBody><Properties>k:v<p/>|</Properties></Message>",
                "Properties",
            ),
        ] {
            let e = decode_request(&Bytes::from(doc)).expect_err(doc);
            assert_eq!(e.code, crate::ErrorCode::InvalidArgument, "{doc}");
            assert!(e.message.contains(field), "{doc}: {}", e.message);
            assert!(
                e.message.contains("takes text only"),
                "{doc}: {}",
                e.message
            );
        }
        // Markup in a CDATA section or escaped is text, taken as it is.
        for (doc, body) in [
            (
                "<Message><MessageBody><![CDATA[b<i>x</i>c]]></MessageBody></Message>",
                "b<i>x</i>c",
            ),
            (
                "<Message><MessageBody>b&lt;i>x&lt;/i>c</MessageBody></Message>",
                "b<i>x</i>c",
            ),
        ] {
            assert_eq!(decode_request(&Bytes::from(doc)).expect(doc).body(), body);
        }
        // An unknown element beside the fields is still skipped.
        let doc = "<Message><Other>o</Other><MessageBody>x</MessageBody></Message>";
        assert_eq!(decode_request(&Bytes::from(doc)).expect(doc).body(), "x");
    }

    #[test]
    fn request_roundtrip() {
        let message = TopicMessage::new(" a < b & c ")
            .unwrap()
            .with_tag(Tag::new("TagA").unwrap())
            .with_property("color", "red")
            .unwrap();
        assert_eq!(decode_request(&encode_request(&message)), Ok(message));
        // Text without references is copied out of the request, which the message keeps
        // no part of.
        let plain = TopicMessage::new("plain body").unwrap();
        let request = encode_request(&plain);
        let decoded = decode_request(&request).unwrap();
        assert_eq!(decoded, plain);
        assert!(!inside(&request, &decoded.body_bytes()));
    }

    #[test]
    fn bodies_taken_as_they_are_are_marked_verbatim_and_encode_back_to_their_text() {
        use crate::wire::consume::{self, AsMessageView, Entry, MessageView};
        let wrap = |inner: &str| {
            Bytes::from(format!(
                "<Message><MessageBody>{inner}</MessageBody></Message>"
            ))
        };
        for (inner, text, verbatim) in [
            ("{\"k\": 1, \"n\": [2]}", "{\"k\": 1, \"n\": [2]}", true),
            ("a > b", "a > b", false),
            ("\u{4e2d}\u{ff0c}\t\n", "\u{4e2d}\u{ff0c}\t\n", true),
            ("a &lt; b", "a < b", false),
            ("a\r\nb", "a\nb", false),
            ("<![CDATA[a < b]]>", "a < b", false),
            ("a<!--c-->b", "ab", false),
        ] {
            let message = decode_request(&wrap(inner)).unwrap();
            let body = message.message_body();
            assert_eq!(
                (body.as_str(), body.is_verbatim()),
                (text, verbatim),
                "{inner}"
            );
            // A consume response written from the stored body reads back as the same text.
            let owned = crate::Message {
                message_id: MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0001").unwrap(),
                receipt_handle: ReceiptHandle::new("0BC1EF3E1A9C18B4AAC2558D1E4F0001-MTA=")
                    .unwrap(),
                body_md5: crate::body_md5(text).into(),
                body: text.into(),
                publish_time: 1,
                next_consume_time: 2,
                first_consume_time: 1,
                consumed_times: 1,
                tag: None,
                properties: Properties::new(),
            };
            let view = MessageView {
                body: body.view(),
                ..owned.view()
            };
            let doc = consume::encode_response(&[view]);
            // The mark changes no byte: the document is the one written from the text.
            assert_eq!(
                doc,
                consume::encode_response(std::slice::from_ref(&owned)),
                "{inner}"
            );
            // A strict XML parser reads the same text back.
            let text_of = |doc: &[u8]| -> Option<String> {
                let doc = roxmltree::Document::parse(std::str::from_utf8(doc).ok()?).ok()?;
                let body = doc.descendants().find(|n| n.has_tag_name("MessageBody"))?;
                Some(body.text().unwrap_or_default().to_owned())
            };
            assert_eq!(text_of(&doc).as_deref(), Some(text), "{inner}");
            let mut r = crate::xml::XmlReader::new(&doc);
            r.root().unwrap();
            let entries = consume::decode_entries(&mut r, &doc, &[]).unwrap();
            assert_eq!(entries, vec![Entry::Message(owned)], "{inner}");
        }
    }

    #[test]
    fn keys_taken_out_while_decoding_match_the_wire_form() {
        // The request parse takes `KEYS` out of the properties as it decodes them; the
        // message must be the one `from_wire` builds from the whole set.
        for props in [
            "KEYS:k1|color:red|",
            "color:red|KEYS:k1|KEYS:k2|",
            "KEYS:k1",
            "a:1|__SHARDINGKEY:s|KEYS:k|__STARTDELIVERTIME:5|",
            "color:red",
        ] {
            let body = format!(
                "<Message><MessageBody>b</MessageBody><Properties>{props}</Properties></Message>"
            );
            let expected =
                TopicMessage::from_wire("b", None, Properties::decode(props).unwrap()).unwrap();
            let decoded = decode_request(&Bytes::from(body)).unwrap();
            assert_eq!(decoded, expected, "{props}");
            assert_eq!(decoded.properties().get("KEYS"), None, "{props}");
        }
        assert_eq!(
            decode_request(&Bytes::from_static(
                b"<Message><MessageBody>b</MessageBody><Properties>KEYS:a|KEYS:b|</Properties></Message>"
            ))
            .unwrap()
            .key(),
            Some("b")
        );
    }

    #[test]
    fn response_roundtrip() {
        for handle in [None, Some(ReceiptHandle::new("1E05-MTcw").unwrap())] {
            let receipt = PublishReceipt {
                message_id: MessageId::new("1E05791C117818B4AAC23B1BB0CE0000").unwrap(),
                body_md5: "10395A1196110F8C03A53B916B206703".into(),
                receipt_handle: handle,
            };
            let body = encode_response(&receipt);
            let mut r = XmlReader::new(&body);
            assert_eq!(r.root(), Ok(Elem::Message));
            assert_eq!(decode_response(&mut r), Ok(receipt));
        }
    }
}
