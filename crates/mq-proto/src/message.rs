//! Messages: [`TopicMessage`] (what a producer publishes) and [`Message`] (what a consumer
//! receives), plus the body checksum of PROTOCOL §3.8.

use crate::properties::{
    KEY_KEYS, KEY_SHARDING_KEY, KEY_START_DELIVER_TIME, KEY_TRANS_CHECK_IMMUNITY, Properties,
    PropertyError, SYSTEM_KEYS, validate_pair,
};
use crate::text::{MessageBody, Text};
use crate::trace::{TRACE_KEYS, TraceContext, TraceContextError};
use crate::types::{MessageId, ReceiptHandle, Tag, TransCheckImmunity};
use bytes::Bytes;
use bytestring::ByteString;
use std::fmt;

/// Largest body of a normal or ordered message (PROTOCOL §6.9: 4 MB).
pub const MAX_BODY_LEN: usize = 4 * 1024 * 1024;
/// Largest body of a transactional, scheduled or delayed message (PROTOCOL §6.9: 64 KB).
pub const MAX_SPECIAL_BODY_LEN: usize = 64 * 1024;
/// How far ahead `__STARTDELIVERTIME` may be, in milliseconds (PROTOCOL §6.7, §6.9: 40 days).
pub const MAX_SCHEDULE_AHEAD_MS: u64 = 40 * 24 * 60 * 60 * 1000;

/// A [`TopicMessage`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The body was empty.
    #[error("message body must not be empty")]
    EmptyBody,
    /// The body contains a character XML 1.0 cannot carry (a control character other than
    /// tab, line feed and carriage return, or U+FFFE/U+FFFF).
    #[error(
        "message body contains {ch:?}, which XML cannot carry; encode binary data (for example base64) first"
    )]
    InvalidBodyChar {
        /// The offending character.
        ch: char,
    },
    /// The body exceeds the limit for its kind of message.
    #[error("message body is {len} bytes, at most {max} allowed for this kind of message")]
    BodyTooLarge {
        /// Body length in bytes.
        len: usize,
        /// The applicable limit.
        max: usize,
    },
    /// A property (custom or system) was invalid.
    #[error(transparent)]
    Property(#[from] PropertyError),
    /// A tag was invalid.
    #[error(transparent)]
    Tag(#[from] crate::types::InvalidValue),
    /// `__STARTDELIVERTIME` is more than [`MAX_SCHEDULE_AHEAD_MS`] after the time it was
    /// checked against (PROTOCOL §6.7: the service refuses it).
    #[error(
        "delivery time {} is more than 40 days ({max_ahead_ms} ms) after {}",
        epoch_ms_and_date(*.at_ms),
        epoch_ms_and_date(*.now_ms)
    )]
    ScheduledTooFar {
        /// The requested delivery time, epoch milliseconds.
        at_ms: u64,
        /// The time it was checked against, epoch milliseconds.
        now_ms: u64,
        /// The allowed distance, [`MAX_SCHEDULE_AHEAD_MS`].
        max_ahead_ms: u64,
    },
}

/// `1796226259954 ms (Wed, 02 Dec 2026 15:44:19 GMT)`: an epoch time as the protocol carries
/// it and as a reader reads it.
fn epoch_ms_and_date(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    format!("{ms} ms ({})", crate::sign::format_http_date(at))
}

/// Upper-case hexadecimal MD5 of the body's UTF-8 bytes (PROTOCOL §3.8).
///
/// ```
/// assert_eq!(mq_proto::body_md5("hello"), "5D41402ABC4B2A76B9719D911017C592");
/// ```
pub fn body_md5(body: &str) -> String {
    let mut hex = String::with_capacity(32);
    crate::text::push_ascii(&mut hex, &body_md5_hex(body));
    hex
}

/// The MD5 digest of `bytes` (md5-simd's single-stream kernel: the one MD5 of this crate,
/// for `MessageBodyMD5` and `Content-MD5`).
pub(crate) fn md5(bytes: &[u8]) -> [u8; 16] {
    md5_simd::digest(bytes)
}

/// [`body_md5`] as ASCII bytes, without an allocation.
fn body_md5_hex(body: &str) -> [u8; 32] {
    digest_hex(&md5(body.as_bytes()))
}

/// A digest as 32 upper-case hexadecimal ASCII digits.
fn digest_hex(digest: &[u8; 16]) -> [u8; 32] {
    let mut out = [0; 32];
    crate::text::hex_bytes_into(digest, &mut out);
    out
}

/// Whether `md5` is the MD5 of `body` in hexadecimal, in either case (PROTOCOL §3.8): what
/// a client checks `MessageBodyMD5` with.
pub(crate) fn body_md5_matches(body: &str, md5: &str) -> bool {
    md5.as_bytes().eq_ignore_ascii_case(&body_md5_hex(body))
}

/// How many bodies [`body_md5s_match`] hashes in one call: a consume batch at most
/// (`BatchSize`), the widest multi-buffer kernel's lanes (AVX-512).
const MD5_BATCH: usize = 16;

/// [`body_md5_matches`] for each `(body, md5)` pair, in order: `matches[i]` for `pairs[i]`
/// (`matches` is at least as long as `pairs`). The bodies are hashed together, so that
/// bodies of equal length share md5-simd's multi-buffer kernels (8 or 16 lanes on x86_64
/// with AVX2 / AVX-512, 4 or 8 with NEON) — a consume response of same-size bodies is
/// verified several times faster than one body after another; bodies of different lengths
/// take the single-stream kernel, as [`body_md5_matches`] does.
pub(crate) fn body_md5s_match(pairs: &[(&str, &str)], matches: &mut [bool]) {
    for (pairs, matches) in pairs.chunks(MD5_BATCH).zip(matches.chunks_mut(MD5_BATCH)) {
        let mut inputs: [&[u8]; MD5_BATCH] = [&[]; MD5_BATCH];
        for (input, (body, _)) in inputs.iter_mut().zip(pairs) {
            *input = body.as_bytes();
        }
        let mut digests = [[0; 16]; MD5_BATCH];
        md5_simd::Md5Engine::new().hash_many_grouped(&inputs[..pairs.len()], &mut digests);
        for ((ok, (_, md5)), digest) in matches.iter_mut().zip(pairs).zip(&digests) {
            *ok = md5.as_bytes().eq_ignore_ascii_case(&digest_hex(digest));
        }
    }
}

fn check_body(body: &str) -> Result<(), MessageError> {
    if body.is_empty() {
        return Err(MessageError::EmptyBody);
    }
    // XML's `Char` production (no C0 controls but tab, LF and CR; no U+FFFE/U+FFFF), with
    // the XML reader's vectorised scan, which runs over every body on both sides of the wire;
    // the offending character is looked for only when there is one.
    if crate::xml::check_xml_chars(body).is_err() {
        let ch = body
            .chars()
            .find(|&c| !crate::xml::is_xml_char(c))
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        return Err(MessageError::InvalidBodyChar { ch });
    }
    Ok(())
}

/// A message to publish: body, optional tag, key, custom properties, scheduled delivery time,
/// transaction check immunity and sharding key.
///
/// ```
/// use mq_proto::{TopicMessage, Tag, TransCheckImmunity};
/// let msg = TopicMessage::new("order 42 created")?
///     .with_tag(Tag::new("created")?)
///     .with_key("order-42")?
///     .with_property("region", "eu")?
///     .with_start_deliver_time(1_709_838_598_000);
/// assert_eq!(msg.properties().get("region"), Some("eu"));
/// assert_eq!(msg.all_properties().encode(),
///     "KEYS:order-42|__STARTDELIVERTIME:1709838598000|region:eu|");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMessage {
    body: MessageBody,
    tag: Option<Tag>,
    key: Option<Text>,
    properties: Properties,
    start_deliver_time: Option<u64>,
    trans_check_immunity: Option<TransCheckImmunity>,
    sharding_key: Option<Text>,
    body_md5: BodyDigest,
}

/// The body's MD5 once computed ([`TopicMessage::body_md5`]): computed at most once per
/// message, where the caller chooses (the broker computes it before it takes its core's
/// lock). Not part of the message's value: equal messages stay equal whether or not it was
/// computed, and `Debug` shows it only when it was.
#[derive(Clone, Default)]
struct BodyDigest(std::sync::OnceLock<Box<str>>);

impl PartialEq for BodyDigest {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for BodyDigest {}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.get(), f)
    }
}

impl TopicMessage {
    /// A message with this body (non-empty text that XML can carry).
    ///
    /// # Errors
    ///
    /// [`MessageError::EmptyBody`] for an empty body, [`MessageError::InvalidBodyChar`] for
    /// a character XML 1.0 cannot carry.
    pub fn new(body: impl Into<String>) -> Result<Self, MessageError> {
        let body = body.into();
        check_body(&body)?;
        Ok(Self::with_checked_body(body.into()))
    }

    /// A message around a body already known to pass [`check_body`].
    fn with_checked_body(body: MessageBody) -> Self {
        Self {
            body,
            tag: None,
            key: None,
            properties: Properties::new(),
            start_deliver_time: None,
            trans_check_immunity: None,
            sharding_key: None,
            body_md5: BodyDigest::default(),
        }
    }

    /// Sets the tag.
    #[must_use]
    pub fn with_tag(mut self, tag: Tag) -> Self {
        self.tag = Some(tag);
        self
    }

    /// Sets the message key (`KEYS`).
    ///
    /// # Errors
    ///
    /// [`MessageError::Property`] when the key is empty or holds a character the properties
    /// wire form cannot carry (`:`, `|`, `'`, `"`, `&`, `<`, `>`, control characters, U+FFFE,
    /// U+FFFF).
    pub fn with_key(mut self, key: impl Into<String>) -> Result<Self, MessageError> {
        let key = key.into();
        validate_pair(KEY_KEYS, &key)?;
        self.key = Some(key.into());
        Ok(self)
    }

    /// Adds a custom property; system keys and the trace context keys (`traceparent`,
    /// `tracestate`) are refused (use the dedicated setters).
    ///
    /// # Errors
    ///
    /// [`MessageError::Property`] when the key is a system or trace context key, or the key
    /// or value is empty or holds a character the wire form cannot carry.
    pub fn with_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MessageError> {
        let key = key.into();
        if SYSTEM_KEYS.contains(&key.as_str()) || TRACE_KEYS.contains(&key.as_str()) {
            return Err(PropertyError::ReservedKey { key }.into());
        }
        self.properties.insert(key, value)?;
        Ok(self)
    }

    /// Carries this W3C trace context, in the custom properties `traceparent` and
    /// `tracestate` (encoding in [`crate::trace`]); replaces an earlier one.
    #[must_use]
    pub fn with_trace_context(mut self, context: &TraceContext) -> Self {
        context.insert_into(&mut self.properties);
        self
    }

    /// The W3C trace context the message carries, if any (see [`TraceContext::from_properties`]).
    ///
    /// # Errors
    ///
    /// [`TraceContextError::InvalidTraceParent`] when its `traceparent` property is invalid.
    pub fn trace_context(&self) -> Result<Option<TraceContext>, TraceContextError> {
        TraceContext::from_properties(&self.properties)
    }

    /// Schedules delivery at this absolute time (epoch milliseconds; `__STARTDELIVERTIME`).
    #[must_use]
    pub fn with_start_deliver_time(mut self, epoch_ms: u64) -> Self {
        self.start_deliver_time = Some(epoch_ms);
        self
    }

    /// Makes the message transactional with this first-check delay (`__TransCheckT`).
    #[must_use]
    pub fn with_trans_check_immunity(mut self, immunity: TransCheckImmunity) -> Self {
        self.trans_check_immunity = Some(immunity);
        self
    }

    /// Sets the partition key of an ordered message (`__SHARDINGKEY`).
    ///
    /// # Errors
    ///
    /// As [`with_key`](Self::with_key).
    pub fn with_sharding_key(mut self, key: impl Into<String>) -> Result<Self, MessageError> {
        let key = key.into();
        validate_pair(KEY_SHARDING_KEY, &key)?;
        self.sharding_key = Some(key.into());
        Ok(self)
    }

    /// Builds a message from its wire parts (body, tag, all properties including system keys),
    /// as a server receives it. The body is a `String`, `&str` or a [`Text`] (kept as it
    /// is, not copied).
    ///
    /// # Errors
    ///
    /// [`MessageError`] for an empty body or one with a character XML cannot carry, an
    /// invalid tag ([`MessageError::Tag`]), or properties breaking the wire rules.
    pub fn from_wire(
        body: impl Into<Text>,
        tag: Option<&str>,
        properties: Properties,
    ) -> Result<Self, MessageError> {
        let body = body.into();
        check_body(&body)?;
        // Scanned for the verbatim mark: a server rebuilding a stored message from its parts
        // (a journal) then writes the body without a scan per delivery.
        Self::from_xml_parts(
            MessageBody::scanned(body),
            tag.map(ByteString::from),
            properties,
            None,
        )
    }

    /// [`from_wire`](Self::from_wire) for a body the XML reader produced: the reader refuses
    /// every character [`check_body`] refuses (XML's `Char`), so only emptiness is left to
    /// check and the body is not scanned a second time. `key` is the value of
    /// [`KEY_KEYS`] when the caller took it out of `properties` already
    /// ([`Properties::decode_text_without_keys`]).
    pub(crate) fn from_xml_parts(
        body: MessageBody,
        tag: Option<ByteString>,
        mut properties: Properties,
        key: Option<ByteString>,
    ) -> Result<Self, MessageError> {
        if body.is_empty() {
            return Err(MessageError::EmptyBody);
        }
        let mut msg = Self::with_checked_body(body);
        if let Some(tag) = tag.filter(|t| !t.is_empty()) {
            msg.tag = Some(Tag::from_text(tag)?);
        }
        msg.key = match key {
            Some(key) => Some(key.into()),
            None => properties.remove(KEY_KEYS),
        };
        // The other system keys start with `__`: looked up only when such a key is there.
        if properties.iter().any(|(k, _)| k.starts_with("__")) {
            msg.sharding_key = properties.remove(KEY_SHARDING_KEY);
            if let Some(v) = properties.remove(KEY_START_DELIVER_TIME) {
                msg.start_deliver_time =
                    Some(v.parse().map_err(|_| PropertyError::InvalidSystemValue {
                        key: KEY_START_DELIVER_TIME,
                        value: v.to_string(),
                    })?);
            }
            if let Some(v) = properties.remove(KEY_TRANS_CHECK_IMMUNITY) {
                let secs: u32 = v.parse().map_err(|_| PropertyError::InvalidSystemValue {
                    key: KEY_TRANS_CHECK_IMMUNITY,
                    value: v.to_string(),
                })?;
                msg.trans_check_immunity = Some(TransCheckImmunity::new(secs)?);
            }
        }
        msg.properties = properties;
        Ok(msg)
    }

    /// The body text.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body's UTF-8 bytes as a shared buffer (a cheap clone: no copy). A body parsed
    /// from a request shares the request's buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.body.text().to_bytes()
    }

    /// The body as shared [`Text`] (a cheap clone: no copy). A body parsed from a request
    /// shares the request's buffer.
    pub fn body_text(&self) -> Text {
        self.body.text().clone()
    }

    /// The body with its verbatim mark ([`MessageBody`]): what a server stores to encode
    /// consume responses from. Clone it to keep it (a cheap clone: no copy).
    pub fn message_body(&self) -> &MessageBody {
        &self.body
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The message key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Custom properties (without system keys).
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// Scheduled delivery time in epoch milliseconds, if any.
    pub fn start_deliver_time(&self) -> Option<u64> {
        self.start_deliver_time
    }

    /// Transaction check immunity, if this is a transactional message.
    pub fn trans_check_immunity(&self) -> Option<TransCheckImmunity> {
        self.trans_check_immunity
    }

    /// Sharding key of an ordered message, if any.
    pub fn sharding_key(&self) -> Option<&str> {
        self.sharding_key.as_deref()
    }

    /// Whether this is a transactional (half) message.
    pub fn is_transactional(&self) -> bool {
        self.trans_check_immunity.is_some()
    }

    /// The body size limit that applies to this message (PROTOCOL §6.9).
    pub fn body_limit(&self) -> usize {
        if self.trans_check_immunity.is_some() || self.start_deliver_time.is_some() {
            MAX_SPECIAL_BODY_LEN
        } else {
            MAX_BODY_LEN
        }
    }

    /// Checks the size limits of PROTOCOL §6.9 (body by kind, properties 16 KB).
    ///
    /// # Errors
    ///
    /// [`MessageError::BodyTooLarge`] for a body over its kind's limit,
    /// [`MessageError::Property`] ([`PropertyError::TooLarge`](crate::PropertyError::TooLarge))
    /// for properties over 16 KB.
    pub fn check_limits(&self) -> Result<(), MessageError> {
        let max = self.body_limit();
        if self.body.len() > max {
            return Err(MessageError::BodyTooLarge {
                len: self.body.len(),
                max,
            });
        }
        // The length of `all_properties()`'s encoding, without building it (system keys are
        // never custom keys, so no pair is counted twice).
        let len = self.properties.encoded_len()
            + (self.system_properties().iter().flatten())
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        if len > crate::properties::MAX_PROPERTIES_LEN {
            return Err(PropertyError::TooLarge { len }.into());
        }
        Ok(())
    }

    /// Checks that a delivery time, if any, is at most [`MAX_SCHEDULE_AHEAD_MS`] (40 days)
    /// after `now_ms` (epoch milliseconds; PROTOCOL §6.7). A time in the past is fine: the
    /// message is delivered at once.
    ///
    /// ```
    /// use mq_proto::{MAX_SCHEDULE_AHEAD_MS, TopicMessage};
    /// let now = 1_700_000_000_000;
    /// let ok = TopicMessage::new("hi")?.with_start_deliver_time(now + MAX_SCHEDULE_AHEAD_MS);
    /// assert!(ok.check_schedule(now).is_ok());
    /// let far = TopicMessage::new("hi")?.with_start_deliver_time(now + MAX_SCHEDULE_AHEAD_MS + 1);
    /// assert!(far.check_schedule(now).is_err());
    /// # Ok::<(), mq_proto::MessageError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`MessageError::ScheduledTooFar`] for a delivery time further ahead.
    pub fn check_schedule(&self, now_ms: u64) -> Result<(), MessageError> {
        match self.start_deliver_time {
            Some(at_ms) if at_ms > now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS) => {
                Err(MessageError::ScheduledTooFar {
                    at_ms,
                    now_ms,
                    max_ahead_ms: MAX_SCHEDULE_AHEAD_MS,
                })
            }
            _ => Ok(()),
        }
    }

    /// Custom and system properties together, as they go on the wire.
    pub fn all_properties(&self) -> Properties {
        let mut all = self.properties.clone();
        // Values were validated by the setters; system values are digits or validated strings,
        // so inserting cannot fail. Errors are ignored rather than unwrapped to stay panic-free.
        for (key, value) in self.system_properties().into_iter().flatten() {
            let _ = all.insert_text(ByteString::from_static(key), value.to_text().into());
        }
        all
    }

    /// The system properties the message carries, as wire pairs.
    /// Borrowed, so that [`check_limits`](Self::check_limits) measures them without a copy
    /// or a formatted number.
    fn system_properties(&self) -> [Option<(&'static str, SystemValue<'_>)>; 4] {
        [
            (self.key.as_ref()).map(|k| (KEY_KEYS, SystemValue::Text(k))),
            (self.start_deliver_time).map(|t| (KEY_START_DELIVER_TIME, SystemValue::Number(t))),
            (self.trans_check_immunity).map(|i| {
                (
                    KEY_TRANS_CHECK_IMMUNITY,
                    SystemValue::Number(u64::from(i.get())),
                )
            }),
            (self.sharding_key.as_ref()).map(|s| (KEY_SHARDING_KEY, SystemValue::Text(s))),
        ]
    }

    /// Body MD5 as the server will report it ([`body_md5`]): 32 upper-case hex digits,
    /// computed on the first call and kept with the message (clones share what was
    /// computed before they were made).
    ///
    /// ```
    /// let msg = mq_proto::TopicMessage::new("hello")?;
    /// assert_eq!(msg.body_md5(), "5D41402ABC4B2A76B9719D911017C592");
    /// # Ok::<(), mq_proto::MessageError>(())
    /// ```
    pub fn body_md5(&self) -> &str {
        self.body_md5.0.get_or_init(|| body_md5(&self.body).into())
    }
}

/// The value of one system property of a [`TopicMessage`], as its wire pair holds it.
enum SystemValue<'a> {
    /// A text value (message key, sharding key).
    Text(&'a Text),
    /// A number, written in decimal.
    Number(u64),
}

impl SystemValue<'_> {
    /// Bytes of the value on the wire.
    fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Number(n) => itoa::Buffer::new().format(*n).len(),
        }
    }

    /// The value as wire text (a shared clone for text).
    fn to_text(&self) -> Text {
        match self {
            Self::Text(t) => (*t).clone(),
            Self::Number(n) => Text::from(itoa::Buffer::new().format(*n)),
        }
    }
}

/// A message as delivered by a consume, orderly consume or half-message consume (PROTOCOL §3.4).
///
/// Times are epoch milliseconds. `properties` holds every property as received, system keys
/// included; the typed accessors read the system keys.
///
/// The body and its MD5 are [`Text`] (`Deref<Target = str>`, cheap to clone): a decoded
/// message shares the response's buffer rather than owning a copy of each field (so do its
/// id, receipt handle, tag and properties), and `&m.body`, `m.body == "hello"`,
/// `m.body.as_str()` work as on a `String`; `String::from(m.body)` gives an owned string.
///
/// ```
/// use mq_proto::{Message, MessageId, ReceiptHandle, Properties};
/// let m = Message {
///     message_id: MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010")?,
///     receipt_handle: ReceiptHandle::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx")?,
///     body_md5: mq_proto::body_md5("hello").into(),
///     body: "hello".into(),
///     publish_time: 1_700_000_000_000,
///     next_consume_time: 1_700_000_301_000,
///     first_consume_time: 1_700_000_001_000,
///     consumed_times: 1,
///     tag: None,
///     properties: Properties::decode("KEYS:k1|__SHARDINGKEY:s|")?,
/// };
/// assert_eq!(m.key(), Some("k1"));
/// assert_eq!(m.sharding_key(), Some("s"));
/// assert!(m.body == "hello" && m.body_md5_matches());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message id (same on every delivery).
    pub message_id: MessageId,
    /// Handle of this delivery; ack with it before `next_consume_time`.
    pub receipt_handle: ReceiptHandle,
    /// Upper-case hex MD5 of the body as reported by the server.
    pub body_md5: Text,
    /// Body text.
    pub body: Text,
    /// Store time, epoch ms.
    pub publish_time: u64,
    /// When the message becomes visible again if not acked, epoch ms.
    pub next_consume_time: u64,
    /// Time of the first delivery to this group, epoch ms.
    pub first_consume_time: u64,
    /// Delivery count, 1 on the first delivery.
    pub consumed_times: u32,
    /// Tag, if the message has one.
    pub tag: Option<Tag>,
    /// All properties, system keys included.
    pub properties: Properties,
}

impl Message {
    /// The message key (`KEYS`).
    pub fn key(&self) -> Option<&str> {
        self.properties.get(KEY_KEYS)
    }

    /// Scheduled delivery time (`__STARTDELIVERTIME`), epoch ms.
    pub fn start_deliver_time(&self) -> Option<u64> {
        self.properties
            .get(KEY_START_DELIVER_TIME)
            .and_then(|v| v.parse().ok())
    }

    /// Transaction check immunity (`__TransCheckT`), seconds.
    pub fn trans_check_immunity(&self) -> Option<TransCheckImmunity> {
        self.properties
            .get(KEY_TRANS_CHECK_IMMUNITY)
            .and_then(|v| v.parse().ok())
            .and_then(|v| TransCheckImmunity::new(v).ok())
    }

    /// Partition key of an ordered message (`__SHARDINGKEY`).
    pub fn sharding_key(&self) -> Option<&str> {
        self.properties.get(KEY_SHARDING_KEY)
    }

    /// A custom or system property by key.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key)
    }

    /// The W3C trace context the producer put in the message, if any (the properties
    /// `traceparent` and `tracestate`, see [`crate::trace`]): parent or link the span that
    /// processes the message to it. An invalid `tracestate` is dropped
    /// ([`TraceContext::from_properties`]).
    ///
    /// # Errors
    ///
    /// [`TraceContextError::InvalidTraceParent`] when its `traceparent` property is invalid
    /// (W3C: the receiver then starts a new trace).
    pub fn trace_context(&self) -> Result<Option<TraceContext>, TraceContextError> {
        TraceContext::from_properties(&self.properties)
    }

    /// Whether the reported body MD5 matches the body (case-insensitive).
    pub fn body_md5_matches(&self) -> bool {
        body_md5_matches(&self.body, &self.body_md5)
    }
}

#[cfg(test)]
mod body_check_tests {
    use super::*;

    proptest::proptest! {
        /// The byte scan refuses exactly what the char definition refuses, reporting the
        /// same first character.
        #[test]
        fn check_body_matches_the_char_definition(s in "(?s:.{1,48})|[\\x00-\\x20\\x7f-\\u{a0}\u{fffd}-\u{ffff}a-z中]{1,48}") {
            let reference = s.chars().find(|&c| {
                (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{7f}'..='\u{9f}'))
                    || matches!(c, '\u{fffe}' | '\u{ffff}')
            });
            match (check_body(&s), reference) {
                (Ok(()), None) => {}
                (Err(MessageError::InvalidBodyChar { ch }), Some(r)) => proptest::prop_assert_eq!(ch, r),
                (got, want) => proptest::prop_assert!(false, "{:?} vs {:?}", got, want),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_time_too_far_ahead_says_its_dates() {
        let e = MessageError::ScheduledTooFar {
            at_ms: 4_070_908_800_000,
            now_ms: 1_796_226_259_954,
            max_ahead_ms: MAX_SCHEDULE_AHEAD_MS,
        };
        assert_eq!(
            e.to_string(),
            "delivery time 4070908800000 ms (Thu, 01 Jan 2099 00:00:00 GMT) is more than 40 days \
             (3456000000 ms) after 1796226259954 ms (Wed, 02 Dec 2026 15:44:19 GMT)"
        );
    }

    #[test]
    fn md5_matches_protocol_examples() {
        assert_eq!(
            body_md5("订单已创建 order-42"),
            "10395A1196110F8C03A53B916B206703"
        );
        assert_eq!(body_md5("a"), "0CC175B9C0F1B6A831C399E269772661");
    }

    #[test]
    fn from_wire_extracts_system_keys() {
        let p = Properties::decode("KEYS:k|__TransCheckT:10|__STARTDELIVERTIME:5|a:1|").unwrap();
        let m = TopicMessage::from_wire("b", Some("T"), p).unwrap();
        assert_eq!(m.key(), Some("k"));
        assert_eq!(m.trans_check_immunity().map(|i| i.get()), Some(10));
        assert_eq!(m.start_deliver_time(), Some(5));
        assert_eq!(m.properties().len(), 1);
        let bad = Properties::decode("__TransCheckT:9|").unwrap();
        assert!(TopicMessage::from_wire("b", None, bad).is_err());
    }

    #[test]
    fn rejects_empty_and_unrepresentable_bodies() {
        assert_eq!(TopicMessage::new("").unwrap_err(), MessageError::EmptyBody);
        assert!(TopicMessage::new("a\u{1}b").is_err());
        assert!(TopicMessage::new("tab\tnewline\n").is_ok());
        assert!(
            TopicMessage::new("x")
                .unwrap()
                .with_property("KEYS", "v")
                .is_err()
        );
    }

    #[test]
    fn the_properties_limit_counts_system_properties() {
        // `v:xxxx…|` fills the limit to 10 bytes short; `KEYS:abcdefgh|` (14) goes over.
        let value = "x".repeat(crate::properties::MAX_PROPERTIES_LEN - 10 - 3);
        let m = TopicMessage::new("b")
            .unwrap()
            .with_property("v", value)
            .unwrap();
        assert_eq!(
            m.all_properties().encoded_len(),
            crate::properties::MAX_PROPERTIES_LEN - 10
        );
        assert!(m.check_limits().is_ok());
        let keyed = m.with_key("abcdefgh").unwrap().with_start_deliver_time(7);
        assert!(matches!(
            keyed.check_limits(),
            Err(MessageError::Property(PropertyError::TooLarge { len }))
                if len == keyed.all_properties().encoded_len()
        ));
    }

    #[test]
    fn limits_depend_on_kind() {
        let big = "x".repeat(MAX_SPECIAL_BODY_LEN + 1);
        assert!(
            TopicMessage::new(big.clone())
                .unwrap()
                .check_limits()
                .is_ok()
        );
        let delayed = TopicMessage::new(big).unwrap().with_start_deliver_time(1);
        assert!(matches!(
            delayed.check_limits(),
            Err(MessageError::BodyTooLarge { .. })
        ));
    }
}

#[cfg(test)]
mod body_digest_tests {
    use super::*;

    #[test]
    fn the_digest_is_computed_once_and_is_not_part_of_the_value() {
        let a = TopicMessage::new("order 42").unwrap();
        let b = a.clone();
        assert_eq!(a.body_md5(), body_md5("order 42"));
        // The first call computed it; the second reads the same text back.
        assert!(std::ptr::eq(a.body_md5(), a.body_md5()));
        // `b` was cloned before: equal, and its own digest is the same.
        assert_eq!(a, b);
        assert_eq!(b.body_md5(), a.body_md5());
        assert!(format!("{a:?}").contains(&body_md5("order 42")));
    }
}
