//! The consume response document (PROTOCOL §3.4): `Messages` in
//! `http://mq.aliyuncs.com/doc/v1/`, one `Message` child per [`Message`] (`MessageId`,
//! `ReceiptHandle`, `MessageBodyMD5`, `MessageBody`, the times and the count, `MessageTag`,
//! `Properties` in the §4 format). A consume request has no body.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use smallvec::SmallVec;

use crate::message::Message;
use crate::properties::{
    KEY_START_DELIVER_TIME, KEY_TRANS_CHECK_IMMUNITY, Properties, PropertyError, segments,
};
use crate::text::{BodyView, Text, TextView, parse_u64, trim};
use crate::types::{MessageId, ReceiptHandle, Tag, TransCheckImmunity};
use crate::wire::{DecodeError, message_id, receipt_handle, trimmed};
use crate::xml::{
    self, Document, Elem, FlatStep, NS_MESSAGE, Sharer, XmlError, XmlReader, XmlWriter,
};

/// One message of a consume response as [`encode_response`] writes it: borrowed text and
/// numbers, so that a server can encode what it stores without building an owned
/// [`Message`] per delivery (PROTOCOL §3.4; times are epoch milliseconds).
///
/// ```
/// use mq_proto::TextView;
/// use mq_proto::wire::consume::{MessageView, PropertiesView, encode_response};
/// let id = mq_proto::MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010")?;
/// let md5 = "5D41402ABC4B2A76B9719D911017C592";
/// let view = MessageView {
///     message_id: TextView::from(&id),
///     receipt_handle: "0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx".into(),
///     // Plain when it passes the check, escaped text otherwise.
///     body_md5: TextView::from_utf8(md5.as_bytes())?,
///     body: "hello".into(),
///     publish_time: 1_000,
///     next_consume_time: 31_000,
///     first_consume_time: 1_000,
///     consumed_times: 1,
///     tag: Some("TagA"),
///     properties: PropertiesView::Encoded("KEYS:k1|"),
/// };
/// let xml = encode_response(&[view]);
/// let xml = std::str::from_utf8(&xml)?;
/// assert!(xml.contains("<MessageBody>hello</MessageBody>"));
/// assert!(xml.contains("<Properties>KEYS:k1|</Properties>"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// `MessageId` (plain when made from a [`MessageId`]).
    pub message_id: TextView<'a>,
    /// `ReceiptHandle` of this delivery.
    pub receipt_handle: TextView<'a>,
    /// `MessageBodyMD5`: upper-case hex MD5 of the body (PROTOCOL §3.8).
    pub body_md5: TextView<'a>,
    /// `MessageBody`: the text, escaped when written unless it is verbatim ([`BodyView`],
    /// [`MessageBody`](crate::MessageBody)).
    pub body: BodyView<'a>,
    /// `PublishTime`.
    pub publish_time: u64,
    /// `NextConsumeTime`.
    pub next_consume_time: u64,
    /// `FirstConsumeTime`.
    pub first_consume_time: u64,
    /// `ConsumedTimes`.
    pub consumed_times: u32,
    /// `MessageTag`, written only when present.
    pub tag: Option<&'a str>,
    /// `Properties`, written only when there are some.
    pub properties: PropertiesView<'a>,
}

/// The `Properties` of a [`MessageView`]: a map, or its §4 wire form already encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertiesView<'a> {
    /// Properties as a map (encoded when written).
    Map(&'a Properties),
    /// Properties in their wire form (`k:v|k:v|`, PROTOCOL §4), as
    /// [`Properties::encode`] writes them; `""` for none.
    Encoded(&'a str),
}

impl PropertiesView<'_> {
    /// Bytes of the wire form.
    fn encoded_len(&self) -> usize {
        match self {
            Self::Map(p) => p.encoded_len(),
            Self::Encoded(s) => s.len(),
        }
    }
}

/// What [`encode_response`] encodes: anything that can lend a [`MessageView`] of itself
/// (an owned [`Message`], a view, or a server's own delivery type).
pub trait AsMessageView {
    /// The view of this message.
    fn view(&self) -> MessageView<'_>;
}

impl AsMessageView for MessageView<'_> {
    fn view(&self) -> MessageView<'_> {
        *self
    }
}

impl AsMessageView for Message {
    fn view(&self) -> MessageView<'_> {
        MessageView {
            message_id: TextView::from(&self.message_id),
            receipt_handle: TextView::from(&self.receipt_handle),
            body_md5: TextView::from(self.body_md5.as_str()),
            body: BodyView::from(&self.body),
            publish_time: self.publish_time,
            next_consume_time: self.next_consume_time,
            first_consume_time: self.first_consume_time,
            consumed_times: self.consumed_times,
            tag: self.tag.as_ref().map(Tag::as_str),
            properties: PropertiesView::Map(&self.properties),
        }
    }
}

/// Encodes a consume response (PROTOCOL §3.4): `Messages` with one `Message` per message,
/// every field in the documented order, `MessageTag` only when the message has a tag and
/// `Properties` only when there are some (with the trailing `|`).
///
/// Takes owned [`Message`]s or anything else that lends a [`MessageView`]: the one encoder of
/// this document, for the client's tests and the broker alike.
///
/// Do not send an empty list with status 200 (SDKs break on it): answer 404
/// `MessageNotExist` instead.
pub fn encode_response<M: AsMessageView>(messages: &[M]) -> Bytes {
    // Each message's view taken once (a view may do work: the broker's checks its inline
    // receipt handle's text), for the capacity and the writing.
    let views: Vec<MessageView<'_>> = messages.iter().map(AsMessageView::view).collect();
    let capacity: usize = views
        .iter()
        .map(|m| {
            420 + m.message_id.len()
                + m.receipt_handle.len()
                + m.body_md5.len()
                + xml::body_capacity(m.body)
                + m.tag.map_or(0, xml::text_capacity)
                + m.properties.encoded_len()
        })
        .sum();
    let mut w = XmlWriter::with_capacity(64 + capacity);
    w.open_root("Messages", NS_MESSAGE);
    let mut props = String::new();
    // The four numbers of the previous message: in one response they mostly repeat.
    let mut last: [xml::LastDigits; 4] = Default::default();
    for m in &views {
        // The tags between two values in one piece each (their order is the documented one).
        for (markup, text) in [
            ("<Message><MessageId>", m.message_id),
            ("</MessageId><ReceiptHandle>", m.receipt_handle),
            ("</ReceiptHandle><MessageBodyMD5>", m.body_md5),
        ] {
            w.markup(markup);
            w.field(text);
        }
        w.markup("</MessageBodyMD5><MessageBody>");
        w.body(m.body);
        for ((markup, n), last) in [
            ("</MessageBody><PublishTime>", m.publish_time),
            ("</PublishTime><NextConsumeTime>", m.next_consume_time),
            ("</NextConsumeTime><FirstConsumeTime>", m.first_consume_time),
            (
                "</FirstConsumeTime><ConsumedTimes>",
                u64::from(m.consumed_times),
            ),
        ]
        .into_iter()
        .zip(&mut last)
        {
            w.markup(markup);
            w.repeated_digits(n, last);
        }
        w.markup("</ConsumedTimes>");
        // A tag when there is one, properties when there are some.
        let properties = Some(encoded_properties(m, &mut props)).filter(|p| !p.is_empty());
        for (open, text, close) in [
            ("<MessageTag>", m.tag, "</MessageTag>"),
            ("<Properties>", properties, "</Properties>"),
        ] {
            if let Some(text) = text {
                w.markup(open);
                w.escaped(text);
                w.markup(close);
            }
        }
        w.markup("</Message>");
    }
    w.close("Messages");
    w.finish()
}

/// The wire form of `m`'s properties: the encoded text as it is, or a map encoded into
/// `buf`.
fn encoded_properties<'a>(m: &MessageView<'a>, buf: &'a mut String) -> &'a str {
    match m.properties {
        PropertiesView::Map(p) => {
            buf.clear();
            p.encode_into(buf);
            buf.as_str()
        }
        PropertiesView::Encoded(s) => s,
    }
}

/// One `Message` element of a consume response: a message, or a poison message the client
/// could not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A message that decoded and passed every check.
    Message(Message),
    /// A message that did not (see [`PoisonMessage`]).
    Poison(PoisonMessage),
}

/// A message of a consume response that the client cannot decode (a "poison message"): the
/// rest of the batch is delivered, and this one is reported with what could be read of it.
///
/// When its receipt handle could be read it is in hand like any delivery: ack it to drop it,
/// or leave it (release) to have it delivered again after its `NextConsumeTime`. Without a
/// handle it cannot be acked; the broker delivers it again and, past its retry limit, moves
/// it to the dead-letter queue (PROTOCOL §6.3).
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use mq_proto::wire::consume::{Entry, PoisonReason};
/// // The second message's MessageBodyMD5 does not match its body.
/// let body = br#"<Messages>
/// <Message><MessageId>A1</MessageId><ReceiptHandle>A1-h</ReceiptHandle><MessageBodyMD5>5D41402ABC4B2A76B9719D911017C592</MessageBodyMD5><MessageBody>hello</MessageBody><PublishTime>1</PublishTime><NextConsumeTime>2</NextConsumeTime><FirstConsumeTime>1</FirstConsumeTime><ConsumedTimes>1</ConsumedTimes></Message>
/// <Message><MessageId>A2</MessageId><ReceiptHandle>A2-h</ReceiptHandle><MessageBodyMD5>5D41402ABC4B2A76B9719D911017C592</MessageBodyMD5><MessageBody>hellO</MessageBody><PublishTime>1</PublishTime><NextConsumeTime>2</NextConsumeTime><FirstConsumeTime>1</FirstConsumeTime><ConsumedTimes>3</ConsumedTimes></Message>
/// </Messages>"#;
/// let entries = mq_proto::client::decode_consume_entries(StatusCode::OK, &HeaderMap::new(), body)?;
/// assert!(matches!(&entries[0], Entry::Message(m) if m.body == "hello"));
/// let Entry::Poison(p) = &entries[1] else { panic!() };
/// assert_eq!(p.message_id.as_ref().map(|id| id.as_str()), Some("A2"));
/// assert_eq!(p.consumed_times, Some(3));
/// assert!(matches!(p.reason, PoisonReason::Md5Mismatch { .. }));
/// assert!(p.raw.starts_with(b"<Message><MessageId>A2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoisonMessage {
    /// The message id, when its element was present and valid.
    pub message_id: Option<MessageId>,
    /// The receipt handle of this delivery, when its element was present and valid.
    pub receipt_handle: Option<ReceiptHandle>,
    /// `NextConsumeTime` (epoch ms), when it could be read: how long the handle is valid.
    pub next_consume_time: Option<u64>,
    /// `ConsumedTimes`, when it could be read.
    pub consumed_times: Option<u32>,
    /// The raw bytes of the `Message` element as received, from its `<` to the end of its
    /// end tag (not necessarily UTF-8).
    pub raw: Bytes,
    /// Why it could not be decoded.
    pub reason: PoisonReason,
}

/// Why a [`PoisonMessage`] could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoisonReason {
    /// Bytes inside the element are not UTF-8 (PROTOCOL §3.1), or encode a character XML 1.0
    /// does not allow.
    #[error("invalid UTF-8 or a character XML does not allow at byte {offset} of the message{}", element.map(|e| format!(", in <{e}>")).unwrap_or_default())]
    InvalidText {
        /// The child element holding the first such byte, if it is a known one.
        element: Option<&'static str>,
        /// Offset of that byte from the start of [`PoisonMessage::raw`].
        offset: usize,
    },
    /// `MessageBodyMD5` is not the MD5 of the body (PROTOCOL §3.8; compared
    /// case-insensitively, and only when the element is present and non-empty).
    #[error("MessageBodyMD5 {reported} does not match the body (its MD5 is {computed})")]
    Md5Mismatch {
        /// The MD5 the response reported.
        reported: String,
        /// The MD5 of the body received.
        computed: String,
    },
    /// `Properties` holds a pair no SDK can publish (a key or value with a character §4
    /// forbids: `"` `'` `&` `<` `>` or a control character), or a system property with a
    /// value of the wrong form (`__STARTDELIVERTIME` not a number, `__TransCheckT` not a
    /// number of seconds in 10..=300). Segments the SDKs skip (empty, without `:`, more
    /// than one `:`, an empty key or value) are skipped, not poison.
    #[error("bad Properties: {0}")]
    Properties(#[from] PropertyError),
    /// A required element is missing or does not hold a valid value (id, handle, body,
    /// times).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<PoisonReason> for DecodeError {
    /// How a caller that wants every message whole reports a poison message.
    fn from(reason: PoisonReason) -> Self {
        match reason {
            PoisonReason::Decode(e) => e,
            PoisonReason::InvalidText { .. } => DecodeError::Xml(reason.to_string()),
            PoisonReason::Md5Mismatch { .. } => DecodeError::InvalidValue {
                element: "MessageBodyMD5",
                reason: reason.to_string(),
            },
            PoisonReason::Properties(e) => DecodeError::InvalidValue {
                element: "Properties",
                reason: e.to_string(),
            },
        }
    }
}

/// Reads the children of a `Messages` root (already entered) to the end of the document,
/// every `Message` into an [`Entry`].
///
/// `raw` is the body as received (poison messages keep slices of it) and `bad` the byte
/// ranges of it that
/// [`substitute_invalid_chars`](crate::xml::substitute_invalid_chars) replaced in the
/// document `r` reads (empty for a clean body). Message text is shared with the document
/// `r` reads ([`XmlReader::share`]). A damaged range inside a `Message` makes
/// that message poison; one anywhere else fails the whole document (the caller reports the
/// body's own character error then).
///
/// Lenient where SDKs are: `Properties` segments the SDKs skip are skipped, a `MessageTag`
/// that is not a valid [`Tag`] is dropped, and a missing `MessageBodyMD5` leaves `body_md5`
/// empty (and unchecked). Everything else wrong with one message makes it an
/// [`Entry::Poison`]; a document that is not well-formed XML is an error.
pub(crate) fn decode_entries(
    r: &mut XmlReader<'_>,
    raw: &Bytes,
    bad: &[Range<usize>],
) -> Result<Vec<Entry>, DecodeError> {
    // A batch holds at most 16 messages (`BatchSize`): one allocation in the usual case.
    let mut entries = Vec::with_capacity(usize::from(crate::types::BatchSize::MAX.get()));
    let mut spans: SmallVec<[Range<usize>; 16]> = SmallVec::new();
    let mut covered = 0;
    r.children(|r, e| {
        if e == Elem::Message {
            let start = r.event_start();
            // Spans serve only to place damaged bytes: none to place in a clean body.
            let fields = read_fields(r, !bad.is_empty())?;
            let span = start..r.position();
            let damaged: Vec<&Range<usize>> = bad
                .iter()
                .filter(|b| b.start < span.end && span.start < b.end)
                .collect();
            covered += damaged.len();
            entries.push(entry(fields, r.sharer(), raw, span.clone(), &damaged));
            spans.push(span);
            Ok::<(), DecodeError>(())
        } else {
            Ok(r.skip()?)
        }
    })?;
    r.finish().map_err(DecodeError::from)?;
    if covered < bad.len() {
        return Err(DecodeError::Xml(
            "invalid UTF-8 or a character XML does not allow outside every message".into(),
        ));
    }
    verify_md5s(&mut entries, &spans, raw);
    Ok(entries)
}

/// [`decode_entries`] of a clean document (`raw` as a [`Document`]) read by the flat scan
/// ([`Document::flat`]): the `Messages` root, `Message` children whose own children are
/// the fields [`read_fields`] reads, each holding plain text or one CDATA section, and
/// whitespace between elements — the shape the service and the broker write. The same
/// entries as the general reading, each judged by the same code; `None` when the document
/// has another shape (the caller reads it with the general reader then). A property test
/// compares the two readings.
pub(crate) fn decode_flat(doc: &Document, raw: &Bytes) -> Option<Vec<Entry>> {
    let mut flat = doc.flat(Elem::Messages)?;
    let mut entries = Vec::with_capacity(usize::from(crate::types::BatchSize::MAX.get()));
    let mut spans: SmallVec<[Range<usize>; 16]> = SmallVec::new();
    loop {
        let start = match flat.next(Elem::Messages, Some(Elem::Message))? {
            FlatStep::Enter(Elem::Message, start) => start,
            FlatStep::End(_) => break,
            // Another child of the root: the general reader skips it (and checks that the
            // root is closed after it).
            _ => return None,
        };
        let mut f = Fields::default();
        let end = loop {
            match flat.next(Elem::Message, None)? {
                FlatStep::Text(e, text, _) => *f.slot(e)? = Some(text),
                FlatStep::End(end) => break end,
                FlatStep::Enter(..) => return None,
            }
        };
        entries.push(entry(f, doc.sharer(), raw, start..end, &[]));
        spans.push(start..end);
    }
    if !flat.finish() {
        return None;
    }
    verify_md5s(&mut entries, &spans, raw);
    Some(entries)
}

/// The text of each child of one `Message`, with where it lies in the body.
#[derive(Default)]
struct Fields<'a> {
    id: Option<Cow<'a, str>>,
    handle: Option<Cow<'a, str>>,
    md5: Option<Cow<'a, str>>,
    body: Option<Cow<'a, str>>,
    publish: Option<Cow<'a, str>>,
    next: Option<Cow<'a, str>>,
    first: Option<Cow<'a, str>>,
    times: Option<Cow<'a, str>>,
    tag: Option<Cow<'a, str>>,
    props: Option<Cow<'a, str>>,
    /// Byte range of every known child element, for placing damaged bytes (when asked
    /// for).
    spans: Vec<(&'static str, Range<usize>)>,
}

impl<'a> Fields<'a> {
    /// Where the text of a child `e` of `Message` goes; `None` for a child that is not a
    /// field.
    fn slot(&mut self, e: Elem) -> Option<&mut Option<Cow<'a, str>>> {
        Some(match e {
            Elem::MessageId => &mut self.id,
            Elem::ReceiptHandle => &mut self.handle,
            Elem::MessageBodyMd5 => &mut self.md5,
            Elem::MessageBody => &mut self.body,
            Elem::PublishTime => &mut self.publish,
            Elem::NextConsumeTime => &mut self.next,
            Elem::FirstConsumeTime => &mut self.first,
            Elem::ConsumedTimes => &mut self.times,
            Elem::MessageTag => &mut self.tag,
            Elem::Properties => &mut self.props,
            _ => return None,
        })
    }
}

/// How many kinds of child of `Message` [`read_fields`] reads.
const KNOWN_CHILDREN: usize = 10;

/// Reads one `Message` element (already entered), up to its end tag, and the spans of its
/// children if `spans`.
fn read_fields<'a>(r: &mut XmlReader<'a>, spans: bool) -> Result<Fields<'a>, XmlError> {
    let mut f = Fields {
        // Every known child once: one allocation per message.
        spans: Vec::with_capacity(if spans { KNOWN_CHILDREN } else { 0 }),
        ..Fields::default()
    };
    r.children(|r, e| {
        let start = r.event_start();
        let Some(slot) = f.slot(e) else {
            return r.skip();
        };
        *slot = Some(r.read_text()?);
        if spans {
            f.spans.push((e.as_str(), start..r.position()));
        }
        Ok::<(), XmlError>(())
    })?;
    Ok(f)
}

/// Judges one `Message` read by [`read_fields`] (or the flat scan) from the document
/// `share` shares, that spans `span` of `raw`; `damaged` are the replaced byte ranges
/// inside it.
fn entry<'a>(
    mut f: Fields<'a>,
    share: Sharer<'a>,
    raw: &Bytes,
    span: Range<usize>,
    damaged: &[&Range<usize>],
) -> Entry {
    let hit = |s: &Range<usize>| damaged.iter().any(|b| b.start < s.end && s.start < b.end);
    // The text of an element holding a replaced byte is not what was sent: not used.
    let spans = std::mem::take(&mut f.spans);
    let intact = |name: &str| !spans.iter().any(|(n, s)| *n == name && hit(s));
    // Each field is read once: a poison message reports the ones that are valid.
    let known = Known {
        handle: f.handle.take().map(|t| share.share(t)),
        message_id: message_id(f.id.take().map(|t| share.share(t)).as_ref()),
        next_consume_time: number(f.next.take(), "NextConsumeTime"),
        consumed_times: number(f.times.take(), "ConsumedTimes"),
    };
    let receipt_handle = known.handle.as_ref().map(receipt_handle);
    let poison = |reason: PoisonReason| {
        Entry::Poison(PoisonMessage {
            message_id: (known.message_id.clone().ok()).filter(|_| intact("MessageId")),
            receipt_handle: (receipt_handle.clone())
                .and_then(Result::ok)
                .filter(|_| intact("ReceiptHandle")),
            next_consume_time: (known.next_consume_time.clone().ok())
                .filter(|_| intact("NextConsumeTime")),
            consumed_times: (known.consumed_times.clone().ok()).filter(|_| intact("ConsumedTimes")),
            raw: raw
                .get(span.clone())
                .map_or_else(Bytes::new, |element| raw.slice_ref(element)),
            reason,
        })
    };
    if let Some(first) = damaged.iter().map(|b| b.start).min() {
        let element = spans
            .iter()
            .find(|(_, s)| s.contains(&first))
            .map(|(n, _)| *n);
        return poison(PoisonReason::InvalidText {
            element,
            offset: first - span.start,
        });
    }
    match message(f, share, &known, receipt_handle.clone()) {
        Ok(m) => Entry::Message(m),
        Err(reason) => poison(reason),
    }
}

/// The fields of one `Message` that a poison message reports too, each read once.
struct Known {
    /// `ReceiptHandle`'s text, shared.
    handle: Option<ByteString>,
    message_id: Result<MessageId, DecodeError>,
    next_consume_time: Result<u64, DecodeError>,
    consumed_times: Result<u32, DecodeError>,
}

/// A message from its (undamaged) fields, with the checks that make it poison otherwise;
/// `known` holds the fields already read and `handle` the receipt handle read from
/// `known.handle`. The checks run in the order of the elements in the document.
fn message<'a>(
    f: Fields<'a>,
    share: Sharer<'a>,
    known: &Known,
    handle: Option<Result<ReceiptHandle, DecodeError>>,
) -> Result<Message, PoisonReason> {
    let handle = handle.ok_or(DecodeError::MissingElement("ReceiptHandle"))?;
    let body = Text::from(share.share(f.body.ok_or(DecodeError::MissingElement("MessageBody"))?));
    let body_md5 = Text::from(f.md5.map(|m| trimmed(&share.share(m))).unwrap_or_default());
    // The checks after the MD5's, each read once.
    let rest = (|| {
        Ok::<_, PoisonReason>((
            known.message_id.clone()?,
            handle?,
            number(f.publish, "PublishTime")?,
            known.next_consume_time.clone()?,
            number(f.first, "FirstConsumeTime")?,
            known.consumed_times.clone()?,
            match f.props {
                Some(p) => received_properties(&share.share(p))?,
                None => Properties::new(),
            },
        ))
    })();
    // A message that decodes has its MD5 checked with the others' ([`verify_md5s`]); one
    // that fails a later check is reported for its MD5 first, as if checked one by one.
    let (message_id, receipt_handle, publish_time, next, first, consumed_times, properties) =
        match rest {
            Ok(fields) => fields,
            Err(_) if md5_mismatch(&body, &body_md5) => return Err(mismatch(&body, body_md5)),
            Err(reason) => return Err(reason),
        };
    Ok(Message {
        message_id,
        receipt_handle,
        body_md5,
        body,
        publish_time,
        next_consume_time: next,
        first_consume_time: first,
        consumed_times,
        tag: f
            .tag
            .and_then(|t| Tag::from_text(trimmed(&share.share(t))).ok()),
        properties,
    })
}

/// Whether a message's `MessageBodyMD5` is present and not its body's MD5 (PROTOCOL §3.8).
fn md5_mismatch(body: &str, body_md5: &str) -> bool {
    !body_md5.is_empty() && !crate::message::body_md5_matches(body, body_md5)
}

/// The poison reason of a body whose `MessageBodyMD5` does not match it.
fn mismatch(body: &str, reported: Text) -> PoisonReason {
    PoisonReason::Md5Mismatch {
        reported: reported.into(),
        computed: crate::message::body_md5(body),
    }
}

/// Checks the `MessageBodyMD5` of every decoded message of `entries` against its body, all
/// in one batch ([`body_md5s_match`](crate::message::body_md5s_match): bodies of equal
/// length share the multi-buffer kernels), and makes each one that does not match poison;
/// `spans[i]` is where `entries[i]` lies in `raw`.
fn verify_md5s(entries: &mut [Entry], spans: &[Range<usize>], raw: &Bytes) {
    let mut pairs: SmallVec<[(&str, &str); 16]> = SmallVec::new();
    let mut at: SmallVec<[usize; 16]> = SmallVec::new();
    for (i, e) in entries.iter().enumerate() {
        if let Entry::Message(m) = e
            && !m.body_md5.is_empty()
        {
            pairs.push((&m.body, &m.body_md5));
            at.push(i);
        }
    }
    let mut matches: SmallVec<[bool; 16]> = smallvec::smallvec![true; pairs.len()];
    crate::message::body_md5s_match(&pairs, &mut matches);
    drop(pairs);
    for (i, ok) in at.into_iter().zip(matches) {
        if ok {
            continue;
        }
        let span = spans.get(i).cloned().unwrap_or_default();
        if let Some(Entry::Message(m)) = entries.get(i) {
            let poison = PoisonMessage {
                reason: mismatch(&m.body, m.body_md5.clone()),
                message_id: Some(m.message_id.clone()),
                receipt_handle: Some(m.receipt_handle.clone()),
                next_consume_time: Some(m.next_consume_time),
                consumed_times: Some(m.consumed_times),
                raw: raw.get(span).map_or_else(Bytes::new, |e| raw.slice_ref(e)),
            };
            entries[i] = Entry::Poison(poison);
        }
    }
}

/// A required numeric element's (trimmed) text as a number: `T`'s range of `u64`.
fn number<T: TryFrom<u64>>(
    text: Option<Cow<'_, str>>,
    element: &'static str,
) -> Result<T, DecodeError> {
    let text = text.ok_or(DecodeError::MissingElement(element))?;
    parse_u64(trim(&text))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| DecodeError::BadNumber {
            element,
            value: text.into_owned(),
        })
}

/// Properties as the SDKs read them (PROTOCOL §4.3): segments that do not split into
/// exactly one non-empty key and one non-empty value are skipped, as the Python, Go and
/// Node SDKs do; a pair with a character §4 forbids, or a system property whose value has
/// the wrong form, is an error (the message is poison).
fn received_properties(s: &ByteString) -> Result<Properties, PropertyError> {
    let mut props = Properties::new();
    let mut system = false;
    for segment in segments(s) {
        let Some((k, v)) = segment.pair().filter(|_| segment.colons == 1) else {
            continue;
        };
        if k.is_empty() || v.is_empty() {
            continue;
        }
        props.insert_segment(s, &segment, (k, v))?;
        system |= k.starts_with("__");
    }
    // Only the system properties' values are checked further (their keys start with `__`).
    if system {
        check_system_values(&props)?;
    }
    Ok(props)
}

/// The system properties with a typed value hold one of the right form.
fn check_system_values(props: &Properties) -> Result<(), PropertyError> {
    let invalid = |key: &'static str, value: &str| PropertyError::InvalidSystemValue {
        key,
        value: value.to_owned(),
    };
    if let Some(v) = props.get(KEY_START_DELIVER_TIME)
        && v.parse::<u64>().is_err()
    {
        return Err(invalid(KEY_START_DELIVER_TIME, v));
    }
    if let Some(v) = props.get(KEY_TRANS_CHECK_IMMUNITY)
        && v.parse::<u32>()
            .ok()
            .and_then(|s| TransCheckImmunity::new(s).ok())
            .is_none()
    {
        return Err(invalid(KEY_TRANS_CHECK_IMMUNITY, v));
    }
    Ok(())
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
                body_md5: crate::message::body_md5(" a < b & c ").into(),
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
        let entries = decode_entries(&mut r, &body, &[]);
        assert_eq!(
            entries,
            Ok(messages.clone().into_iter().map(Entry::Message).collect())
        );
        // A server's borrowed views with the properties already in wire form encode to the
        // same document as the owned messages.
        let wire: Vec<String> = messages.iter().map(|m| m.properties.encode()).collect();
        let views: Vec<MessageView<'_>> = messages
            .iter()
            .zip(&wire)
            .map(|(m, p)| MessageView {
                properties: PropertiesView::Encoded(p),
                ..m.view()
            })
            .collect();
        assert_eq!(encode_response(&views), body);
    }

    proptest::proptest! {
        /// Every message's numbers read back as written, whether they repeat from one
        /// message to the next (their digits copied) or not (formatted), at the ends of
        /// their ranges too.
        #[test]
        fn numbers_read_back_as_written(
            numbers in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just(0u64),
                        proptest::strategy::Just(1_709_838_898_000),
                        proptest::strategy::Just(u64::MAX),
                        proptest::num::u64::ANY,
                    ],
                    proptest::prop_oneof![
                        proptest::strategy::Just(1_709_838_898_000u64),
                        proptest::strategy::Just(99),
                        proptest::num::u64::ANY,
                    ],
                    proptest::prop_oneof![
                        proptest::strategy::Just(1_709_838_598_000u64),
                        proptest::strategy::Just(100),
                        proptest::num::u64::ANY,
                    ],
                    proptest::prop_oneof![
                        proptest::strategy::Just(1u32),
                        proptest::strategy::Just(10),
                        proptest::strategy::Just(u32::MAX),
                    ],
                ),
                1..8,
            ),
        ) {
            let messages: Vec<Message> = numbers
                .iter()
                .enumerate()
                .map(|(n, &(publish_time, next_consume_time, first_consume_time, consumed_times))| Message {
                    message_id: MessageId::new(format!("1E05791C117818B4AAC23B1BB0CE{n:04}")).unwrap(),
                    receipt_handle: ReceiptHandle::new(format!("1E05-{n}-MTcw")).unwrap(),
                    body_md5: crate::message::body_md5("b").into(),
                    body: "b".into(),
                    publish_time,
                    next_consume_time,
                    first_consume_time,
                    consumed_times,
                    tag: None,
                    properties: Properties::new(),
                })
                .collect();
            let body = encode_response(&messages);
            let mut r = XmlReader::new(&body);
            proptest::prop_assert_eq!(r.root(), Ok(Elem::Messages));
            proptest::prop_assert_eq!(
                decode_entries(&mut r, &body, &[]),
                Ok(messages.into_iter().map(Entry::Message).collect())
            );
        }
    }

    /// One `Message` element with these children (`None` leaves one out).
    fn element(id: &str, handle: Option<&str>, md5: &str, body: &[u8], props: &str) -> Vec<u8> {
        let mut e = format!("<Message><MessageId>{id}</MessageId>").into_bytes();
        if let Some(h) = handle {
            e.extend_from_slice(format!("<ReceiptHandle>{h}</ReceiptHandle>").as_bytes());
        }
        e.extend_from_slice(
            format!("<MessageBodyMD5>{md5}</MessageBodyMD5><MessageBody>").as_bytes(),
        );
        e.extend_from_slice(body);
        e.extend_from_slice(b"</MessageBody><PublishTime>1</PublishTime><NextConsumeTime>300000</NextConsumeTime><FirstConsumeTime>2</FirstConsumeTime><ConsumedTimes>4</ConsumedTimes>");
        if !props.is_empty() {
            e.extend_from_slice(format!("<Properties>{props}</Properties>").as_bytes());
        }
        e.extend_from_slice(b"</Message>");
        e
    }

    fn good(n: u32) -> Vec<u8> {
        let body = format!("body {n}");
        element(
            &format!("ID{n}"),
            Some(&format!("ID{n}-h")),
            &crate::message::body_md5(&body),
            body.as_bytes(),
            "KEYS:k|",
        )
    }

    fn document(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut d = br#"<?xml version="1.0" encoding="UTF-8"?><Messages xmlns="http://mq.aliyuncs.com/doc/v1/">"#.to_vec();
        for e in elements {
            d.extend_from_slice(e);
        }
        d.extend_from_slice(b"</Messages>");
        d
    }

    fn entries(doc: &[u8]) -> Result<Vec<Entry>, crate::client::ResponseError> {
        crate::client::decode_consume_entries(http::StatusCode::OK, &http::HeaderMap::new(), doc)
    }

    /// The batch decodes around the poison message at index 1: the others are messages in
    /// their places, the poison one carries what could be read, its raw element and why.
    fn poison_between_good_ones(bad: &[u8]) -> PoisonMessage {
        let doc = document(&[good(1), bad.to_vec(), good(3)]);
        let mut got = entries(&doc).expect("the batch decodes");
        assert_eq!(got.len(), 3);
        let Entry::Poison(p) = got.remove(1) else {
            panic!("not poison: {:?}", got)
        };
        for (e, n) in got.iter().zip([1, 3]) {
            let Entry::Message(m) = e else {
                panic!("{e:?}")
            };
            assert_eq!(m.body, format!("body {n}"));
            assert_eq!(m.key(), Some("k"));
        }
        assert_eq!(p.raw.as_ref(), bad, "raw element bytes as received");
        // Strict decoding refuses the whole batch.
        assert!(
            crate::client::decode_consume_response(
                http::StatusCode::OK,
                &http::HeaderMap::new(),
                &doc
            )
            .is_err()
        );
        p
    }

    #[test]
    fn md5_mismatch_is_poison_and_a_missing_md5_is_not_checked() {
        let bad = element(
            "ID2",
            Some("ID2-h"),
            &crate::message::body_md5("other"),
            b"body 2",
            "",
        );
        let p = poison_between_good_ones(&bad);
        assert_eq!(p.message_id, Some(MessageId::new("ID2").unwrap()));
        assert_eq!(p.receipt_handle, Some(ReceiptHandle::new("ID2-h").unwrap()));
        assert_eq!(
            (p.consumed_times, p.next_consume_time),
            (Some(4), Some(300_000))
        );
        assert_eq!(
            p.reason,
            PoisonReason::Md5Mismatch {
                reported: crate::message::body_md5("other"),
                computed: crate::message::body_md5("body 2"),
            }
        );
        // Lower-case hex is the same digest; an empty one is not checked.
        let lower = crate::message::body_md5("x").to_lowercase();
        for md5 in [lower.as_str(), ""] {
            let doc = document(&[element("A", Some("A-h"), md5, b"x", "")]);
            assert!(
                matches!(entries(&doc).unwrap().as_slice(), [Entry::Message(_)]),
                "{md5:?}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_does_not_shift_where_a_message_lies() {
        // quick-xml counts positions after a leading BOM: the spans of the messages were 3
        // bytes short of the body's offsets, so a poison message's raw bytes were cut
        // wrong, damaged text was placed 3 bytes off (a bad byte just before a message was
        // taken for one in it, an offset of a damaged byte before it underflowed: a panic
        // in debug builds; fuzz target decode_consume_response).
        let bom = |doc: Vec<u8>| [b"\xEF\xBB\xBF".as_slice(), &doc].concat();
        let wrong = element("A", Some("A-h"), &crate::message::body_md5("y"), b"x", "");
        let got = entries(&bom(document(&[good(1), wrong.clone()]))).expect("decodes");
        let Entry::Poison(p) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(
            p.raw.as_ref(),
            wrong.as_slice(),
            "raw element bytes as received"
        );
        let damaged = element("A", Some("A-h"), "", b"x\x01y", "");
        for doc in [
            document(std::slice::from_ref(&damaged)),
            bom(document(std::slice::from_ref(&damaged))),
        ] {
            let got = entries(&doc).expect("decodes");
            let Entry::Poison(p) = &got[0] else {
                panic!("{got:?}")
            };
            let offset = damaged.iter().position(|&b| b == 1).unwrap();
            assert_eq!(
                p.reason,
                PoisonReason::InvalidText {
                    element: Some("MessageBody"),
                    offset
                }
            );
            assert_eq!(p.raw.as_ref(), damaged.as_slice());
        }
        // A damaged byte just before a message is outside every message: the document
        // fails, BOM or not.
        let mut before = document(&[]);
        let at = before.len() - b"</Messages>".len();
        before.splice(at..at, [b"\x04".as_slice(), &damaged].concat());
        assert!(entries(&before).is_err());
        assert!(entries(&bom(before)).is_err());
    }

    #[test]
    fn md5s_checked_together_judge_each_message_as_one_by_one() {
        // 20 bodies of one length (two batches of the multi-buffer kernels, ≥ 32 bytes so
        // that they use them), wrong digests in both batches, one in lower case.
        let body = |n: usize| format!("{n:02}{}", "x".repeat(62));
        let wrong = [3, 16, 19];
        let elements: Vec<Vec<u8>> = (0..20)
            .map(|n| {
                let md5 = match n {
                    _ if wrong.contains(&n) => crate::message::body_md5(&body(n + 1)),
                    7 => crate::message::body_md5(&body(n)).to_lowercase(),
                    _ => crate::message::body_md5(&body(n)),
                };
                let (id, handle) = (format!("ID{n}"), format!("ID{n}-h"));
                element(&id, Some(&handle), &md5, body(n).as_bytes(), "")
            })
            .collect();
        let got = entries(&document(&elements)).unwrap();
        assert_eq!(got.len(), 20);
        for (n, e) in got.iter().enumerate() {
            match e {
                Entry::Poison(p) if wrong.contains(&n) => {
                    assert_eq!(
                        p.reason,
                        PoisonReason::Md5Mismatch {
                            reported: crate::message::body_md5(&body(n + 1)),
                            computed: crate::message::body_md5(&body(n)),
                        }
                    );
                    assert_eq!(
                        p.message_id,
                        Some(MessageId::new(format!("ID{n}")).unwrap())
                    );
                    let handle = ReceiptHandle::new(format!("ID{n}-h")).unwrap();
                    assert_eq!(p.receipt_handle, Some(handle));
                    assert_eq!(
                        (p.next_consume_time, p.consumed_times),
                        (Some(300_000), Some(4))
                    );
                    assert_eq!(p.raw.as_ref(), elements[n].as_slice());
                }
                Entry::Message(m) if !wrong.contains(&n) => assert_eq!(m.body, body(n)),
                other => panic!("message {n}: {other:?}"),
            }
        }
        // A message that fails a later check is reported for its MD5 first.
        let mut bad = element("A", Some("A-h"), &crate::message::body_md5("y"), b"x", "");
        let at = bad.windows(13).position(|w| w == b"<PublishTime>").unwrap() + 13;
        bad[at] = b'z';
        let p = poison_between_good_ones(&bad);
        assert!(
            matches!(p.reason, PoisonReason::Md5Mismatch { .. }),
            "{p:?}"
        );
        let mut bad = element("A", Some("A-h"), &crate::message::body_md5("x"), b"x", "");
        bad[at] = b'z';
        let p = poison_between_good_ones(&bad);
        assert!(
            matches!(
                p.reason,
                PoisonReason::Decode(DecodeError::BadNumber {
                    element: "PublishTime",
                    ..
                })
            ),
            "{p:?}"
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_or_not_xml_text_is_poison() {
        for body in [
            &b"caf\xe9 latin-1"[..],
            b"bell \x07",
            b"\xef\xbf\xbe",
            b"cut \xe4\xb8",
        ] {
            let bad = element("ID2", Some("ID2-h"), "00", body, "");
            let p = poison_between_good_ones(&bad);
            assert_eq!(
                p.message_id,
                Some(MessageId::new("ID2").unwrap()),
                "{body:?}"
            );
            assert_eq!(p.receipt_handle, Some(ReceiptHandle::new("ID2-h").unwrap()));
            let at = bad.windows(body.len()).position(|w| w == body).unwrap();
            let PoisonReason::InvalidText { element, offset } = p.reason else {
                panic!("{:?}", p.reason)
            };
            assert_eq!(element, Some("MessageBody"));
            assert!(
                offset >= at && offset < at + body.len(),
                "{offset} in {at}+{}",
                body.len()
            );
        }
    }

    #[test]
    fn damaged_id_or_handle_is_not_reported() {
        let mut bad = element("IDx", Some("ID2-h"), "00", b"b", "");
        let at = bad.windows(3).position(|w| w == b"IDx").unwrap() + 2;
        bad[at] = 0xff;
        let p = poison_between_good_ones(&bad);
        assert_eq!(p.message_id, None);
        assert_eq!(p.receipt_handle, Some(ReceiptHandle::new("ID2-h").unwrap()));
        let mut bad = element("ID2", Some("h"), "00", b"b", "");
        let at = bad.windows(3).position(|w| w == b">h<").unwrap() + 1;
        bad[at] = 0x80;
        let p = poison_between_good_ones(&bad);
        assert_eq!(p.message_id, Some(MessageId::new("ID2").unwrap()));
        assert_eq!(p.receipt_handle, None);
        assert!(matches!(
            p.reason,
            PoisonReason::InvalidText {
                element: Some("ReceiptHandle"),
                ..
            }
        ));
    }

    #[test]
    fn bad_properties_are_poison_and_sdk_junk_is_skipped() {
        let with_props = |props: &str| {
            element(
                "ID2",
                Some("ID2-h"),
                &crate::message::body_md5("b"),
                b"b",
                props,
            )
        };
        for (props, key) in [("a:x&quot;y|", "a"), ("KEYS:k|b:1&lt;2|", "b")] {
            let p = poison_between_good_ones(&with_props(props));
            assert!(
                matches!(&p.reason, PoisonReason::Properties(PropertyError::ForbiddenChar { key: k, .. }) if k == key),
                "{props}: {:?}",
                p.reason
            );
        }
        for (props, key) in [
            ("__STARTDELIVERTIME:soon|", KEY_START_DELIVER_TIME),
            ("__TransCheckT:5|", KEY_TRANS_CHECK_IMMUNITY),
        ] {
            let p = poison_between_good_ones(&with_props(props));
            assert!(
                matches!(p.reason, PoisonReason::Properties(PropertyError::InvalidSystemValue { key: k, .. }) if k == key),
                "{props}: {:?}",
                p.reason
            );
        }
        // What the SDKs skip is skipped: no colon, two colons, empty key or value.
        let doc = document(&[with_props("junk|a:b:c|:v|k:|x:1")]);
        let got = entries(&doc).unwrap();
        let [Entry::Message(m)] = got.as_slice() else {
            panic!("{got:?}")
        };
        assert_eq!(m.properties.iter().collect::<Vec<_>>(), vec![("x", "1")]);
    }

    #[test]
    fn a_message_missing_a_required_element_is_poison() {
        let p = poison_between_good_ones(&element("ID2", None, "00", b"b", ""));
        assert_eq!(
            p.reason,
            PoisonReason::Decode(DecodeError::MissingElement("ReceiptHandle"))
        );
        assert_eq!((p.message_id.is_some(), p.receipt_handle), (true, None));
        let bad = String::from_utf8(good(2))
            .unwrap()
            .replace("<PublishTime>1<", "<PublishTime>x<");
        let p = poison_between_good_ones(bad.as_bytes());
        assert!(matches!(
            p.reason,
            PoisonReason::Decode(DecodeError::BadNumber {
                element: "PublishTime",
                ..
            })
        ));
    }

    #[test]
    fn a_broken_document_still_fails_as_a_whole() {
        // Bad bytes outside every Message, a truncated document, a mismatched end tag.
        let mut between = document(&[good(1), good(2)]);
        let at = between.windows(2).position(|w| w == b"><").unwrap() + 1;
        between.splice(at..at, [0xffu8]);
        let mut truncated = document(&[good(1)]);
        truncated.truncate(truncated.len() - 5);
        let mismatched = String::from_utf8(document(&[good(1)]))
            .unwrap()
            .replace("</Message>", "</Massage>");
        let mut damaged_and_broken = document(&[good(1)]);
        damaged_and_broken.splice(60..60, *b"\xff<");
        for doc in [
            between,
            truncated,
            mismatched.into_bytes(),
            damaged_and_broken,
            b"not xml \xff".to_vec(),
        ] {
            match entries(&doc) {
                Err(crate::client::ResponseError::Decode(_)) => {}
                other => panic!("{}: {other:?}", String::from_utf8_lossy(&doc)),
            }
        }
    }

    /// `text` as element content, each character written as `forms` says (cycled): literal
    /// where XML allows it, a decimal or hexadecimal character reference, or a CDATA section
    /// (a CR is always a reference: line-end normalisation would turn it into a LF).
    fn write_text(text: &str, forms: &[u8]) -> String {
        let mut out = String::new();
        for (i, c) in text.chars().enumerate() {
            let form = forms.get(i % forms.len().max(1)).copied().unwrap_or(0);
            match (form, c) {
                (0, '<' | '&' | '>' | '\r') | (3, '\r') => {
                    out.push_str(&format!("&#{};", u32::from(c)));
                }
                (0, c) => out.push(c),
                (1, c) => out.push_str(&format!("&#{};", u32::from(c))),
                (2, c) => out.push_str(&format!("&#x{:X};", u32::from(c))),
                (_, c) => out.push_str(&format!("<![CDATA[{c}]]>")),
            }
        }
        out
    }

    /// Whether `text`'s bytes lie inside `doc`'s buffer.
    fn shares(doc: &Bytes, text: &str) -> bool {
        let (start, at) = (doc.as_ptr() as usize, text.as_ptr() as usize);
        at >= start && at + text.len() <= start + doc.len()
    }

    proptest::proptest! {
        /// Decoding from the response's buffer gives every field exactly as sent, whichever
        /// way its characters were written (literal, character references, CDATA); a field
        /// written without any of those is a slice of the response, not a copy.
        #[test]
        fn shared_fields_decode_as_sent_and_plain_ones_are_slices(
            body in "[a-z0-9 <>&\"'\r\u{e9}\u{4e2d}]{1,24}",
            tag in "[A-Za-z0-9]{1,8}",
            value in "[a-z0-9\u{e9}\u{4e2d} ]{0,6}[a-z]",
            id in "[A-F0-9]{8}",
            forms in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![6 => proptest::strategy::Just(0u8), 1 => 1u8..4], 0..8),
                5,
            ),
        ) {
            let handle = format!("{id}-h");
            let md5 = crate::message::body_md5(&body);
            let written: Vec<String> = [id.as_str(), handle.as_str(), body.as_str(), tag.as_str(), value.as_str()]
                .iter()
                .zip(&forms)
                .map(|(text, forms)| write_text(text, forms))
                .collect();
            let [w_id, w_handle, w_body, w_tag, w_value] = written.as_slice() else {
                unreachable!()
            };
            let element = format!(
                "<Message><MessageId>{w_id}</MessageId><ReceiptHandle>{w_handle}</ReceiptHandle>\
                 <MessageBodyMD5>{md5}</MessageBodyMD5><MessageBody>{w_body}</MessageBody>\
                 <PublishTime>1</PublishTime><NextConsumeTime>2</NextConsumeTime>\
                 <FirstConsumeTime>1</FirstConsumeTime><ConsumedTimes>1</ConsumedTimes>\
                 <MessageTag>{w_tag}</MessageTag><Properties>KEYS:k|color:{w_value}|</Properties></Message>"
            );
            let doc = Bytes::from(document(&[element.into_bytes()]));
            let got = crate::client::decode_consume_response_bytes(
                http::StatusCode::OK,
                &http::HeaderMap::new(),
                &doc,
            );
            let Ok(messages) = got else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("{got:?}")));
            };
            let [m] = messages.as_slice() else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("{messages:?}")));
            };
            proptest::prop_assert_eq!(m.message_id.as_str(), id.as_str());
            proptest::prop_assert_eq!(m.receipt_handle.as_str(), handle.as_str());
            proptest::prop_assert_eq!(&m.body, &body);
            proptest::prop_assert_eq!(&m.body_md5, &md5);
            proptest::prop_assert_eq!(m.tag.as_ref().map(Tag::as_str), Some(tag.as_str()));
            proptest::prop_assert_eq!(m.property("color"), Some(value.as_str()));
            proptest::prop_assert_eq!(m.key(), Some("k"));
            proptest::prop_assert!(shares(&doc, &m.body_md5));
            for (text, wire, field) in [
                (&id, w_id, m.message_id.as_str()),
                (&handle, w_handle, m.receipt_handle.as_str()),
                (&body, w_body, &m.body),
                (&tag, w_tag, m.tag.as_ref().map(Tag::as_str).unwrap_or_default()),
            ] {
                if text == wire {
                    proptest::prop_assert!(shares(&doc, field), "{:?} was copied", text);
                }
            }
            if *w_value == value {
                // One Properties text, every key and value a slice of it.
                proptest::prop_assert!(shares(&doc, m.property("color").unwrap_or_default()));
                proptest::prop_assert!(shares(&doc, m.key().unwrap_or_default()));
            }
        }
    }

    /// The flat reading's entries, when it reads `body`, are the general reader's.
    fn flat_same_as_general(body: &[u8]) -> Option<Vec<Entry>> {
        let raw = Bytes::copy_from_slice(body);
        let doc = Document::new(&raw);
        let flat = decode_flat(&doc, &raw)?;
        let mut r = doc.reader();
        let general = match r.root() {
            Ok(Elem::Messages) => decode_entries(&mut r, &raw, &[]),
            other => panic!("read flat, but the root is {other:?}"),
        };
        assert_eq!(
            Ok(&flat),
            general.as_ref(),
            "{}",
            String::from_utf8_lossy(body)
        );
        Some(flat)
    }

    #[test]
    fn the_service_and_broker_documents_are_read_flat() {
        // The service's indented form (PROTOCOL §3.4's capture).
        let capture = br#"<?xml version="1.0" encoding="UTF-8"?>
<Messages xmlns="http://mq.aliyuncs.com/doc/v1/">
  <Message>
    <MessageId>0BC1EF3E1A9C18B4AAC2558D1E4F0010</MessageId>
    <ReceiptHandle>0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx</ReceiptHandle>
    <MessageBodyMD5>68B154101D0D46E4114AE2E0A11B9291</MessageBodyMD5>
    <MessageBody>hello mq</MessageBody>
    <PublishTime>1700000000000</PublishTime>
    <FirstConsumeTime>1700000001000</FirstConsumeTime>
    <NextConsumeTime>1700000301000</NextConsumeTime>
    <ConsumedTimes>1</ConsumedTimes>
    <MessageTag>TagA</MessageTag>
    <Properties>KEYS:key-1|a:1|</Properties>
  </Message>
</Messages>
"#;
        let entries = flat_same_as_general(capture).expect("read flat");
        assert!(matches!(&entries[..], [Entry::Message(m)] if m.body == "hello mq"));
        // References are resolved as the general reader resolves them; a bad one is the
        // general reader's to report.
        let escaped = String::from_utf8_lossy(capture).replace("hello mq", "a &amp; b&#x4E2D;");
        let entries = flat_same_as_general(escaped.as_bytes()).expect("read flat");
        assert!(
            matches!(&entries[..], [Entry::Poison(p)] if matches!(p.reason, PoisonReason::Md5Mismatch { .. }))
        );
        let bad = String::from_utf8_lossy(capture).replace("hello mq", "a &bad; b");
        assert_eq!(flat_same_as_general(bad.as_bytes()), None);
        // The broker's compact form, poison included (a wrong MessageBodyMD5).
        let doc = document(&[
            good(1),
            element("ID2", Some("ID2-h"), "00", b"x", ""),
            good(3),
        ]);
        let entries = flat_same_as_general(&doc).expect("read flat");
        assert!(
            matches!(&entries[1], Entry::Poison(p) if matches!(p.reason, PoisonReason::Md5Mismatch { .. }))
        );
        // A document that ends before its root does fails as a whole, whatever the last
        // child of the root was (a review found one read flat when that was not a Message).
        for unterminated in [
            "<Messages><MessageId>x</MessageId>",
            "<Messages><MessageTag>t</MessageTag>\n",
            "<Messages><Messages></Messages>",
            "<Messages><Message><MessageId>x</MessageId></Message>",
        ] {
            let mut doc = unterminated.as_bytes().to_vec();
            assert_eq!(flat_same_as_general(&doc), None, "{unterminated}");
            assert!(super::tests::entries(&doc).is_err(), "{unterminated}");
            doc.extend_from_slice(&good(1));
            assert!(
                super::tests::entries(&doc).is_err(),
                "{unterminated} + a message"
            );
        }
    }

    /// Mostly one of `good`, now and then one of `bad`.
    fn near(
        good: &[&'static str],
        bad: &[&'static str],
    ) -> impl proptest::strategy::Strategy<Value = &'static str> {
        proptest::prop_oneof![
            12 => proptest::sample::select(good.to_vec()),
            1 => proptest::sample::select(bad.to_vec()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Consume documents near the flat shape (each part mostly as the service and the
        /// broker write it, now and then not), of either kind: wherever the flat reading
        /// answers, it answers as the general reader does (messages, poison messages with
        /// their raw elements and reasons).
        #[test]
        fn the_flat_reading_agrees_with_the_general_reader(
            decl in near(
                &["", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<?xml version=\"1.0\"?>\n"],
                &["<?xml version=\"1.1\"?>", "\u{feff}", "<!--c-->", " <?xml version=\"1.0\"?>"],
            ),
            root in near(
                &["<Messages xmlns=\"http://mq.aliyuncs.com/doc/v1/\">", "<Messages>"],
                &[
                    "<Messages xmlns=\"a&amp;b\">", "<Messages a=\"1\">",
                    "<a:Messages xmlns:a=\"x\">", "<Message>", "<Messages xmlns=\"\">",
                ],
            ),
            messages in proptest::collection::vec(
                (
                    near(&["", "\n  "], &[" x ", "<!--c-->", "<Other/>", "&amp;"]),
                    near(&["<Message>"], &["<Message >", "<Message a=\"1\">", "<Other>", "<Code>", "<MessageId>"]),
                    proptest::bool::ANY,
                    proptest::collection::vec(
                        (
                            near(
                                &[
                                    "MessageId", "ReceiptHandle", "MessageBodyMD5", "MessageBody",
                                    "PublishTime", "NextConsumeTime", "FirstConsumeTime",
                                    "ConsumedTimes", "MessageTag", "Properties",
                                ],
                                &["Other", "Code", "Message", "MessageBody ", "a:MessageBody"],
                            ),
                            near(
                                &[
                                    "", "0BC1EF3E1A9C18B4AAC2558D1E4F0010", "h-1",
                                    "5D41402ABC4B2A76B9719D911017C592", "hello", "12", " 7 ",
                                    "a > b", "\u{4e2d}\u{6587}", "<![CDATA[hello]]>",
                                    "<![CDATA[a < & b]]>", "KEYS:k|a:1|", "a:1|",
                                    "__STARTDELIVERTIME:x|", "a:b:c|", "18446744073709551616",
                                    "-1", "TagA", "bad tag", "x\ty", "&amp;", "a &lt;b&gt;",
                                    "&#x4E2D;&#20013;", "&#13;", "&quot;&apos;",
                                ],
                                &[
                                    "a]]>b", "a & b", "a\r\nb", "<![CDATA[a]]>y", "&#1;", "&bad;",
                                    "<b/>", "<!--c-->", "<?p?>",
                                ],
                            ),
                            near(&["plain", "space"], &["empty-tag", "unclosed"]),
                        ),
                        0..5,
                    ),
                    near(&["</Message>"], &["</Message >", "", "</Other>", "</Messages>"]),
                ),
                0..4,
            ),
            tail in near(&["", "\n"], &["x", "<!--c-->", "<Message/>", "\r\n"]),
            closed in near(&["yes"], &["no", "after a child"]),
        ) {
            let mut doc = format!("{decl}{root}");
            let root_name = crate::wire::near_flat::name(root);
            for (between, open, full, children, close) in messages {
                doc.push_str(between);
                doc.push_str(open);
                if full {
                    doc.push_str(
                        "<MessageId>ID1</MessageId><ReceiptHandle>ID1-h</ReceiptHandle>\
                         <MessageBodyMD5>5D41402ABC4B2A76B9719D911017C592</MessageBodyMD5>\
                         <MessageBody>hello</MessageBody><PublishTime>1</PublishTime>\
                         <NextConsumeTime>2</NextConsumeTime><FirstConsumeTime>1</FirstConsumeTime>\
                         <ConsumedTimes>1</ConsumedTimes>",
                    );
                }
                for (name, text, form) in children {
                    crate::wire::near_flat::push_child(&mut doc, name, text, form);
                }
                doc.push_str(close);
            }
            match closed {
                "yes" => doc.push_str(&format!("</{root_name}>{tail}")),
                "no" => doc.push_str(tail),
                _ => doc.push_str(&format!("<MessageTag>t</MessageTag>{tail}")),
            }
            flat_same_as_general(doc.as_bytes());
        }
    }
}
