//! Domain types that cannot hold invalid values ("parse, don't validate").
//!
//! Every type here is checked once, when it is built (`new` / [`FromStr`]), and can then be
//! used anywhere without re-validation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytestring::ByteString;

/// A value was rejected when building one of the domain types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
#[non_exhaustive]
pub struct InvalidValue {
    /// Which kind of value was rejected (for example `"topic name"`).
    pub what: &'static str,
    /// Why it was rejected.
    pub reason: String,
}

impl InvalidValue {
    pub(crate) fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}

/// The characters of a topic name, group id or instance id: `[A-Za-z0-9]` and
/// `_`, `-`, as the real service allows (PROTOCOL §1.2, §6.9), and `.` (which names
/// written before this check may hold; `.` and `..` alone are refused). Not `%`, which
/// RocketMQ reserves (`%RETRY%`, `%DLQ%`, its namespace separator `INSTANCE%TOPIC`) and which
/// a URL path decodes (`%2E%2E` is `..`, `a%2Fb` is `a/b`).
const NAME_CHARS: Charset = Charset::new(b"_-.");

/// The characters of a message id: `[A-Za-z0-9]` and `_-.%`.
const MESSAGE_ID_CHARS: Charset = Charset::new(b"_-.%");

/// `[A-Za-z0-9]` and some punctuation, as a table with one lookup per byte.
struct Charset {
    punctuation: &'static [u8],
    allowed: [bool; 256],
}

impl Charset {
    const fn new(punctuation: &'static [u8]) -> Self {
        let mut allowed = [false; 256];
        let mut b = 0;
        while b < 256 {
            allowed[b] = (b as u8).is_ascii_alphanumeric();
            b += 1;
        }
        let mut i = 0;
        while i < punctuation.len() {
            allowed[punctuation[i] as usize] = true;
            i += 1;
        }
        Self {
            punctuation,
            allowed,
        }
    }
}

/// Checks a resource name or message id: 1..=`max` bytes of `charset`; `.` and `..` are
/// never one (URLs normalise them away as path segments).
fn check_resource_name(
    what: &'static str,
    s: &str,
    max: usize,
    charset: &Charset,
) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue::new(what, "must not be empty"));
    }
    if s.len() > max {
        return Err(InvalidValue::new(
            what,
            format!("{} bytes, at most {max} allowed", s.len()),
        ));
    }
    if s == "." || s == ".." {
        // As a path segment (`/topics/{topic}/…`, `/admin/groups/{group}`) it means "this"
        // or "the parent": URL normalisation (RFC 3986 §5.2.4) removes it.
        return Err(InvalidValue::new(
            what,
            format!("{s:?} is not a name: URLs normalise it away as a path segment"),
        ));
    }
    // Every allowed character is ASCII: a byte scan, and the character only for the error.
    let allowed = |b: u8| charset.allowed[usize::from(b)];
    // A fold, not `all`: no early exit, so the scan vectorises.
    if !s.bytes().fold(true, |ok, b| ok & allowed(b))
        && let Some(c) = s.chars().find(|&c| !u8::try_from(c).is_ok_and(allowed))
    {
        let extra: Vec<String> = charset
            .punctuation
            .iter()
            .map(|&b| format!("'{}'", char::from(b)))
            .collect();
        return Err(InvalidValue::new(
            what,
            format!(
                "character {c:?} is not allowed (use A-Z, a-z, 0-9, {})",
                extra.join(", ")
            ),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        ///
        /// Cloning shares the text (a reference-count increment), so a server can key its
        /// maps and records by the name without copying it.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps a name.
            ///
            /// # Errors
            ///
            /// [`InvalidValue`] when `s` is empty, too long, or holds a character outside the
            /// allowed set (see the type's documentation).
            pub fn new(s: impl AsRef<str>) -> Result<Self, InvalidValue> {
                let s = s.as_ref();
                check_resource_name($what, s, $max, &NAME_CHARS)?;
                Ok(Self(Arc::from(s)))
            }

            /// The name as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<&$name> for Arc<str> {
            /// The name's shared text (a reference-count increment, no copy).
            fn from(name: &$name) -> Self {
                name.0.clone()
            }
        }
    };
}

name_type!(
    /// A topic name: 1..=64 characters of `[A-Za-z0-9_.-]` (PROTOCOL §1.2, §6.9; no `%`:
    /// RocketMQ reserves it, and a URL path would decode it).
    ///
    /// ```
    /// use mq_proto::TopicName;
    /// let t: TopicName = "orders".parse().unwrap();
    /// assert_eq!(t.as_str(), "orders");
    /// assert!(TopicName::new("a/b").is_err());
    /// assert!(TopicName::new("..").is_err(), "a path segment URLs normalise away");
    /// assert!(TopicName::new("%2E%2E").is_err(), "a URL path decodes it to ..");
    /// ```
    TopicName,
    "topic name",
    64
);

name_type!(
    /// A consumer group id (`GID_…`): 1..=64 characters of `[A-Za-z0-9_.-]`.
    GroupId,
    "group id",
    64
);

name_type!(
    /// An instance id (`MQ_INST_…`), sent as the `ns` query parameter. The default
    /// instance has no id: use `Option<InstanceId>` = `None` for it.
    InstanceId,
    "instance id",
    128
);

/// The most characters a group id, topic name and instance id may have together in one
/// consume, ack, commit or rollback (PROTOCOL §6.9: 119; the service answers longer ones with
/// `NotSupport`).
pub const MAX_SUBSCRIPTION_NAMES_LEN: usize = 119;

/// A group id, topic name and instance id that are together longer than
/// [`MAX_SUBSCRIPTION_NAMES_LEN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "group id, topic name and instance id are {len} characters together; the service refuses more than {max}",
    max = MAX_SUBSCRIPTION_NAMES_LEN
)]
pub struct NamesTooLong {
    /// Their length together, in characters.
    pub len: usize,
}

/// Checks the length of a subscription's names together (PROTOCOL §6.9): group id + topic
/// name + instance id (none for the default instance) ≤ [`MAX_SUBSCRIPTION_NAMES_LEN`].
///
/// ```
/// use mq_proto::{GroupId, InstanceId, TopicName, check_subscription_names};
/// let group = GroupId::new("G".repeat(64))?;
/// let topic = TopicName::new("T".repeat(55))?;
/// assert!(check_subscription_names(None, &topic, &group).is_ok());
/// let instance = InstanceId::new("MQ_INST_1")?;
/// assert_eq!(check_subscription_names(Some(&instance), &topic, &group).unwrap_err().len, 128);
/// # Ok::<(), mq_proto::InvalidValue>(())
/// ```
///
/// # Errors
///
/// [`NamesTooLong`] with their length together.
pub fn check_subscription_names(
    instance: Option<&InstanceId>,
    topic: &TopicName,
    group: &GroupId,
) -> Result<(), NamesTooLong> {
    // The names are ASCII by construction: bytes are characters.
    let len =
        group.as_str().len() + topic.as_str().len() + instance.map_or(0, |i| i.as_str().len());
    if len > MAX_SUBSCRIPTION_NAMES_LEN {
        Err(NamesTooLong { len })
    } else {
        Ok(())
    }
}

/// Maximum length of a tag in bytes (PROTOCOL §6.9).
pub const MAX_TAG_LEN: usize = 64;

/// A message tag: 1..=64 bytes, no `|` (it separates tags in filters), no control characters,
/// no U+FFFE or U+FFFF (XML cannot carry them), no leading or trailing whitespace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(ByteString);

impl Tag {
    /// Validates and wraps a tag.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for an empty or too long tag, a `|`, a control character, or
    /// leading or trailing whitespace.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidValue> {
        Self::from_text(s.into().into())
    }

    /// [`new`](Self::new) for text that is already shared (a slice of a decoded document).
    pub(crate) fn from_text(s: ByteString) -> Result<Self, InvalidValue> {
        // Printable ASCII without `|` and without a space at either end, as every SDK's tags
        // are: of the checks of `check_tag`, only the length and `*` ones can fail.
        let plain = s.bytes().all(|b| (b' '..0x7f).contains(&b) && b != b'|')
            && !s.starts_with(' ')
            && !s.ends_with(' ');
        if plain && (1..=MAX_TAG_LEN).contains(&s.len()) && &*s != "*" {
            return Ok(Self(s));
        }
        check_tag(&s)?;
        Ok(Self(s))
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The checks of a tag, in the order their errors are reported.
fn check_tag(s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue::new("tag", "must not be empty"));
    }
    if s.len() > MAX_TAG_LEN {
        return Err(InvalidValue::new(
            "tag",
            format!("{} bytes, at most {MAX_TAG_LEN} allowed", s.len()),
        ));
    }
    if s.contains('|') {
        return Err(InvalidValue::new("tag", "must not contain '|'"));
    }
    if s == "*" {
        return Err(InvalidValue::new(
            "tag",
            "\"*\" means every tag in a filter and cannot be a message tag",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            "tag",
            "must not contain control characters",
        ));
    }
    if !s.chars().all(crate::is_xml_char) {
        // U+FFFE, U+FFFF: the XML writer would send U+FFFD instead.
        return Err(InvalidValue::new(
            "tag",
            "must not contain U+FFFE or U+FFFF (XML cannot carry them)",
        ));
    }
    if crate::text::trim(s) != s {
        return Err(InvalidValue::new(
            "tag",
            "must not start or end with whitespace",
        ));
    }
    Ok(())
}

impl FromStr for Tag {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A consume-side tag filter: every tag (`*` or no filter) or a set of tags joined by `||`
/// (PROTOCOL §6.5).
///
/// ```
/// use mq_proto::{Tag, TagFilter};
/// let f: TagFilter = "TagA||TagB".parse().unwrap();
/// assert!(f.matches(Some(&Tag::new("TagB").unwrap())));
/// assert!(!f.matches(None));
/// assert_eq!(f.to_string(), "TagA||TagB");
/// assert!(TagFilter::All.matches(None));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum TagFilter {
    /// Every message, tagged or not.
    #[default]
    All,
    /// Messages whose tag equals one of these (at least one tag, no duplicates).
    Tags(Vec<Tag>),
}

impl TagFilter {
    /// Builds a filter from tags; an empty list means [`TagFilter::All`].
    pub fn tags(tags: impl IntoIterator<Item = Tag>) -> Self {
        let mut v: Vec<Tag> = Vec::new();
        for t in tags {
            if !v.contains(&t) {
                v.push(t);
            }
        }
        if v.is_empty() {
            Self::All
        } else {
            Self::Tags(v)
        }
    }

    /// Whether a message with this tag passes the filter.
    pub fn matches(&self, tag: Option<&Tag>) -> bool {
        match self {
            Self::All => true,
            Self::Tags(tags) => tag.is_some_and(|t| tags.contains(t)),
        }
    }

    /// Whether this filter lets every message through.
    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

impl FromStr for TagFilter {
    type Err = InvalidValue;
    /// Parses `A||B`; an empty string or `*` is [`TagFilter::All`]. The one parse of a
    /// filter: the client's builders, the CLI's `--tag` and the server's `tag` query.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] (`what` = `"tag filter"`) quoting the filter and saying which part
    /// is wrong: an empty tag (before the first `||`, between two, or after the last), or a
    /// tag [`Tag::new`] refuses, with its reason.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "*" {
            return Ok(Self::All);
        }
        let parts = s.split("||").count();
        let mut tags = Vec::new();
        for (i, part) in s.split("||").enumerate() {
            let part = part.trim();
            if part == "*" {
                return Ok(Self::All);
            }
            if part.is_empty() {
                let place = match i {
                    0 => "before its first `||`",
                    i if i + 1 == parts => "after its last `||`",
                    _ => "between two `||`",
                };
                return Err(InvalidValue::new(
                    "tag filter",
                    format!("{s:?} has an empty tag {place}"),
                ));
            }
            let tag = Tag::new(part).map_err(|e| {
                let hint = if part.contains('|') {
                    " (tags in a filter are separated by `||`)"
                } else {
                    ""
                };
                InvalidValue::new(
                    "tag filter",
                    format!("tag {part:?} of {s:?}: {}{hint}", e.reason),
                )
            })?;
            tags.push(tag);
        }
        Ok(Self::tags(tags))
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Tags(tags) => {
                for (i, t) in tags.iter().enumerate() {
                    if i > 0 {
                        f.write_str("||")?;
                    }
                    f.write_str(t.as_str())?;
                }
                Ok(())
            }
        }
    }
}

macro_rules! bounded_int {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $what:literal, $min:expr, $max:expr, $default:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($ty);

        impl $name {
            /// Smallest allowed value.
            pub const MIN: Self = Self($min);
            /// Largest allowed value.
            pub const MAX: Self = Self($max);

            /// Validates the range.
///
/// # Errors
///
/// [`InvalidValue`] when `v` is outside [`MIN`](Self::MIN)..=[`MAX`](Self::MAX).
            pub fn new(v: $ty) -> Result<Self, InvalidValue> {
                if ($min..=$max).contains(&v) {
                    Ok(Self(v))
                } else {
                    Err(InvalidValue::new(
                        $what,
                        format!("{v} is outside {}..={}", $min, $max),
                    ))
                }
            }

            /// The value.
            pub fn get(self) -> $ty {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self($default)
            }
        }

        impl TryFrom<$ty> for $name {
            type Error = InvalidValue;
            fn try_from(v: $ty) -> Result<Self, Self::Error> {
                Self::new(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

bounded_int!(
    /// Messages per consume request (and handles per ack): 1..=16 (PROTOCOL §6.9).
    ///
    /// ```
    /// use mq_proto::BatchSize;
    /// assert_eq!(BatchSize::new(16).unwrap().get(), 16);
    /// assert!(BatchSize::new(0).is_err());
    /// assert!(BatchSize::new(17).is_err());
    /// ```
    BatchSize,
    u8,
    "batch size",
    1,
    16,
    16
);

bounded_int!(
    /// Long-poll seconds: 0..=30, 0 = answer at once (PROTOCOL §1.3, §6.2).
    ///
    /// ```
    /// use mq_proto::WaitSeconds;
    /// assert_eq!(WaitSeconds::new(30).unwrap().get(), 30);
    /// assert!(WaitSeconds::new(31).is_err());
    /// ```
    WaitSeconds,
    u8,
    "wait seconds",
    0,
    30,
    0
);

bounded_int!(
    /// Transaction check immunity (`__TransCheckT`): 10..=300 seconds (PROTOCOL §6.6).
    ///
    /// ```
    /// use mq_proto::TransCheckImmunity;
    /// assert!(TransCheckImmunity::new(10).is_ok());
    /// assert!(TransCheckImmunity::new(9).is_err());
    /// ```
    TransCheckImmunity,
    u32,
    "transaction check immunity seconds",
    10,
    300,
    10
);

/// The receipt handles of one ack, commit or rollback request: 1..=16 of them (PROTOCOL
/// §6.9). The one place that limit lives: clients split any number of handles with
/// [`HandleBatch::split`], and encoders and the broker check against [`HandleBatch::MAX`].
///
/// ```
/// use mq_proto::{HandleBatch, ReceiptHandle};
/// let handles: Vec<ReceiptHandle> =
///     (0..40).map(|i| ReceiptHandle::new(format!("h{i}")).unwrap()).collect();
/// let batches = HandleBatch::split(handles.clone());
/// assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), [16, 16, 8]);
/// assert_eq!(batches[2].as_slice(), &handles[32..]);
/// assert!(HandleBatch::new(Vec::new()).is_err());
/// assert!(HandleBatch::new(handles[..17].to_vec()).is_err());
/// assert_eq!(HandleBatch::one(handles[0].clone()).len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HandleBatch(Vec<ReceiptHandle>);

impl HandleBatch {
    /// Most receipt handles in one request.
    pub const MAX: usize = 16;

    /// A batch of these handles (1..=[`MAX`](Self::MAX), in order).
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for no handles or more than [`MAX`](Self::MAX).
    pub fn new(handles: Vec<ReceiptHandle>) -> Result<Self, InvalidValue> {
        match handles.len() {
            0 => Err(InvalidValue::new(
                "receipt handle batch",
                "must not be empty",
            )),
            n if n > Self::MAX => Err(InvalidValue::new(
                "receipt handle batch",
                format!("{n} receipt handles, at most {} per request", Self::MAX),
            )),
            _ => Ok(Self(handles)),
        }
    }

    /// A batch of one handle.
    pub fn one(handle: ReceiptHandle) -> Self {
        Self(vec![handle])
    }

    /// Any number of handles as batches of at most [`MAX`](Self::MAX), in order (none for
    /// no handles).
    pub fn split(handles: impl IntoIterator<Item = ReceiptHandle>) -> Vec<Self> {
        let mut batches: Vec<Self> = Vec::new();
        for h in handles {
            match batches.last_mut() {
                Some(b) if b.0.len() < Self::MAX => b.0.push(h),
                _ => batches.push(Self::one(h)),
            }
        }
        batches
    }

    /// The handles, in order.
    pub fn as_slice(&self) -> &[ReceiptHandle] {
        &self.0
    }

    /// How many handles (1..=16).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The handles, in order.
    pub fn into_vec(self) -> Vec<ReceiptHandle> {
        self.0
    }
}

/// Longest receipt handle accepted (bytes). Real handles are well under 200 bytes.
pub const MAX_RECEIPT_HANDLE_LEN: usize = 1024;

/// A receipt handle: an opaque token for one delivery (or one transactional publish).
///
/// Any non-empty printable string without whitespace, XML-special characters or characters
/// XML cannot carry, up to [`MAX_RECEIPT_HANDLE_LEN`] bytes; clients never look inside it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiptHandle(ByteString);

impl ReceiptHandle {
    /// Validates and wraps a handle.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for an empty or too long handle, whitespace, an XML-special
    /// character, or one XML cannot carry (U+FFFE, U+FFFF: a consume response or an ack
    /// request would carry U+FFFD instead, another handle).
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidValue> {
        Self::from_text(s.into().into())
    }

    /// [`new`](Self::new) for a handle already in a shared buffer: a server that builds
    /// its handles in a buffer of their own with their count of clones (`Bytes::from_owner`,
    /// as [`MessageId::from_halves`] does) takes one allocation per handle instead of a
    /// `String`'s and, at the first clone, its shared header's.
    ///
    /// ```
    /// let text: [u8; 6] = *b"ID1-h1";
    /// let handle = mq_proto::ReceiptHandle::from_bytes(bytes::Bytes::from_owner(text))?;
    /// assert_eq!(handle.as_str(), "ID1-h1");
    /// # Ok::<(), mq_proto::InvalidValue>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`InvalidValue`] for bytes that are not UTF-8.
    pub fn from_bytes(bytes: bytes::Bytes) -> Result<Self, InvalidValue> {
        let text = ByteString::try_from(bytes)
            .map_err(|_| InvalidValue::new("receipt handle", "not UTF-8"))?;
        Self::from_text(text)
    }

    /// [`new`](Self::new) for text that is already shared (a slice of a decoded document).
    pub(crate) fn from_text(s: ByteString) -> Result<Self, InvalidValue> {
        if s.is_empty() {
            return Err(InvalidValue::new("receipt handle", "must not be empty"));
        }
        if s.len() > MAX_RECEIPT_HANDLE_LEN {
            return Err(InvalidValue::new(
                "receipt handle",
                format!("{} bytes, at most {MAX_RECEIPT_HANDLE_LEN}", s.len()),
            ));
        }
        // ASCII handles (all real ones) by bytes: the whitespace and control characters of
        // ASCII are the bytes up to the space and DEL.
        let refused = if s.is_ascii() {
            // A fold, not `any`: no early exit, so the scan vectorises.
            s.bytes().fold(false, |refused, b| {
                refused | (b <= b' ') | (b == 0x7f) | (b == b'<') | (b == b'>') | (b == b'&')
            })
        } else {
            s.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || !crate::is_xml_char(c)
                    || matches!(c, '<' | '>' | '&')
            })
        };
        if refused {
            return Err(InvalidValue::new(
                "receipt handle",
                "contains whitespace, control, XML-special or non-XML characters",
            ));
        }
        Ok(Self(s))
    }

    /// The handle text as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ReceiptHandle {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for ReceiptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReceiptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A message id as assigned by the server (observed as 32 upper-case hex characters; any
/// non-empty token of `[A-Za-z0-9_.%-]` up to 128 bytes is accepted).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(ByteString);

impl MessageId {
    /// Validates and wraps a message id.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for an empty or too long id or a character outside
    /// `[A-Za-z0-9_.%-]`.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidValue> {
        Self::from_text(s.into().into())
    }

    /// [`new`](Self::new) for text that is already shared (a slice of a decoded document).
    pub(crate) fn from_text(s: ByteString) -> Result<Self, InvalidValue> {
        check_resource_name("message id", &s, 128, &MESSAGE_ID_CHARS)?;
        Ok(Self(s))
    }

    /// The id of 32 upper-case hexadecimal digits made of `high` then `low`, the shape of
    /// the service's ids (PROTOCOL §3.3): what a server assigning ids builds them with.
    ///
    /// ```
    /// let id = mq_proto::MessageId::from_halves(0x1E05_791C_1178_18B4, 0xAAC2_3B1B_B0CE_0001);
    /// assert_eq!(id.as_str(), "1E05791C117818B4AAC23B1BB0CE0001");
    /// ```
    pub fn from_halves(high: u64, low: u64) -> Self {
        let mut text = [0; 32];
        text[..16].copy_from_slice(&crate::text::hex_u64(high));
        text[16..].copy_from_slice(&crate::text::hex_u64(low));
        // One allocation, the digits and their count of clones together: a `String`'s
        // buffer would take a second one, its shared header, at the first clone (a server
        // clones every id it issues: one for the message, one for the answer).
        Self(ByteString::try_from(bytes::Bytes::from_owner(text)).unwrap_or_default())
    }

    /// The two halves of an id text made by [`from_halves`](Self::from_halves): `None` for
    /// anything but 32 upper-case hexadecimal digits.
    ///
    /// ```
    /// use mq_proto::MessageId;
    /// let id = MessageId::from_halves(7, 0xA0);
    /// assert_eq!(MessageId::halves(id.as_str()), Some((7, 0xA0)));
    /// assert_eq!(MessageId::halves(&id.as_str().to_lowercase()), None);
    /// assert_eq!(MessageId::halves("1E05"), None);
    /// ```
    pub fn halves(text: &str) -> Option<(u64, u64)> {
        let (high, low) = text.as_bytes().split_at_checked(16)?;
        Some((
            crate::text::parse_hex_u64(high)?,
            crate::text::parse_hex_u64(low)?,
        ))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MessageId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_bad_characters_and_lengths() {
        assert!(TopicName::new("T1").is_ok());
        assert!(TopicName::new("").is_err());
        assert!(TopicName::new("a".repeat(65)).is_err());
        assert!(TopicName::new("a b").is_err());
        assert!(GroupId::new("GID_1").is_ok());
        assert!(InstanceId::new("MQ_INST_1380156306793859_BAAy1Hac").is_ok());
    }

    #[test]
    fn dot_segments_are_not_names() {
        for dots in [".", ".."] {
            let err = TopicName::new(dots).expect_err(dots);
            assert!(err.to_string().contains("normalise"), "{err}");
            assert!(GroupId::new(dots).is_err());
            assert!(InstanceId::new(dots).is_err());
        }
    }

    #[test]
    fn names_hold_no_percent() {
        // A URL path decodes `%XX` (`%2E%2E` is `..`, `a%2Fb` is `a/b`) and RocketMQ reserves
        // `%` (`%RETRY%`, `%DLQ%`, `INSTANCE%TOPIC`); the real service does not allow it.
        for name in ["%2E%2E", "a%2Fb", "I%T", "%RETRY%G", "%"] {
            let err = TopicName::new(name).expect_err(name);
            assert!(err.reason.contains("not allowed"), "{err}");
            assert!(GroupId::new(name).is_err(), "{name}");
            assert!(InstanceId::new(name).is_err(), "{name}");
        }
        assert!(TopicName::new("Topic_a-1.v2").is_ok() && GroupId::new("GID-a_1.x").is_ok());
        assert!(
            TopicName::new("...").is_ok(),
            "only . and .. are dot segments"
        );
        assert!(
            MessageId::new("0A0B0C0D%1.2").is_ok(),
            "message ids keep theirs"
        );
    }

    #[test]
    fn tag_filter_parses_and_prints() {
        let f: TagFilter = "A||B||A".parse().unwrap();
        assert_eq!(f.to_string(), "A||B");
        assert_eq!("*".parse::<TagFilter>().unwrap(), TagFilter::All);
        assert_eq!("".parse::<TagFilter>().unwrap(), TagFilter::All);
        // Each error says which part is wrong, quoting the filter.
        let reason = |s: &str| s.parse::<TagFilter>().unwrap_err().to_string();
        assert_eq!(
            reason("A||"),
            r#"invalid tag filter: "A||" has an empty tag after its last `||`"#
        );
        assert_eq!(
            reason("||A"),
            r#"invalid tag filter: "||A" has an empty tag before its first `||`"#
        );
        assert_eq!(
            reason("A|| ||B"),
            r#"invalid tag filter: "A|| ||B" has an empty tag between two `||`"#
        );
        assert_eq!(
            reason("A|B"),
            r#"invalid tag filter: tag "A|B" of "A|B": must not contain '|' (tags in a filter are separated by `||`)"#
        );
        assert_eq!(
            reason("A||B\u{1}"),
            r#"invalid tag filter: tag "B\u{1}" of "A||B\u{1}": must not contain control characters"#
        );
    }

    /// U+FFFE and U+FFFF are no XML characters: a tag holding one was sent as U+FFFD.
    #[test]
    fn tags_refuse_characters_xml_cannot_carry() {
        for bad in ["a\u{fffe}", "\u{ffff}b"] {
            assert_eq!(
                Tag::new(bad).unwrap_err().to_string(),
                "invalid tag: must not contain U+FFFE or U+FFFF (XML cannot carry them)",
                "{bad:?}"
            );
        }
        assert!(Tag::new("a\u{fffd}").is_ok());
    }

    proptest::proptest! {
        /// A tag is accepted or refused, with the same error, whether or not it takes the
        /// plain-ASCII fast path of `Tag::from_text`.
        #[test]
        fn tag_fast_path_agrees_with_the_checks(
            s in "[a-zA-Z0-9_ ]{0,70}|[*| \t\x00\x7f\u{85}\u{a0}\u{3000}a\u{4e2d}\u{fffe}\u{ffff}]{0,6}",
        ) {
            let got = Tag::from_text(ByteString::from(s.as_str())).map(|t| t.as_str().to_owned());
            let want = check_tag(&s).map(|()| s.clone());
            proptest::prop_assert_eq!(got, want);
        }

        /// The byte scans of handles and names refuse exactly what their character
        /// definitions refuse, and name the same character.
        #[test]
        fn byte_scans_match_the_char_definitions(
            s in "(?s:.{1,24})|[\\x00-\\x21\\x7f-\\u{a0}<>&%._a-z0-9\\u{3000}\\u{4e2d}-]{1,24}",
        ) {
            let handle_ok = !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '&'));
            proptest::prop_assert_eq!(ReceiptHandle::new(s.as_str()).is_ok(), handle_ok);
            let bad = s
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
            let got = check_resource_name("name", &s, 128, &NAME_CHARS);
            if s != "." && s != ".." {
                match bad {
                    None => proptest::prop_assert!(got.is_ok()),
                    Some(c) => {
                        let named = format!("{c:?}");
                        proptest::prop_assert!(got.is_err_and(|e| e.reason.contains(&named)));
                    }
                }
            }
        }
    }

    #[test]
    fn receipt_handles_are_opaque_but_safe() {
        assert!(ReceiptHandle::new("0BC1-MCAx+/=").is_ok());
        assert!(ReceiptHandle::new("a b").is_err());
        assert!(ReceiptHandle::new("a<b").is_err());
        // XML cannot carry U+FFFE or U+FFFF: the writer would send U+FFFD, another handle.
        assert!(ReceiptHandle::new("a\u{fffe}b").is_err());
        assert!(ReceiptHandle::new("a\u{ffff}").is_err());
        assert!(ReceiptHandle::new("a\u{fffd}\u{4e2d}").is_ok());
        assert!(ReceiptHandle::new("").is_err());
    }
}
