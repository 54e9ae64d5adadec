//! [`Text`]: the text of a message field, shared with the buffer it was decoded from.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// Immutable UTF-8 text in a shared [`Bytes`] buffer: the type of [`Message`](crate::Message)'s
/// body and body MD5. A decoder hands out slices of the response it read (no copy per
/// field); cloning is a reference-count increment.
///
/// It reads like a `&str` (`Deref<Target = str>`): `&m.body` where a `&str` is expected,
/// `m.body.len()`, `m.body.lines()`, `m.body.as_str()`, and comparisons with `str`, `&str`
/// and `String` either way round. `String::from(text)` gives an owned string (a copy unless
/// the buffer is unshared), [`to_bytes`](Self::to_bytes) the shared buffer.
///
/// ```
/// use mq_proto::Text;
/// let t = Text::from("héllo");
/// assert_eq!(t, "héllo");
/// assert!("héllo" == t && t == String::from("héllo"));
/// assert_eq!(t.as_str().len(), 6);
/// assert_eq!(&t.to_bytes()[..], "héllo".as_bytes());
/// let owned: String = t.into();
/// assert_eq!(owned, "héllo");
/// ```
#[derive(Clone, Default, PartialOrd, Ord, Hash)]
pub struct Text(ByteString);

impl Text {
    /// Empty text.
    pub const fn new() -> Self {
        Self(ByteString::new())
    }

    /// Text of a `'static` string (no allocation).
    pub const fn from_static(s: &'static str) -> Self {
        Self(ByteString::from_static(s))
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text's UTF-8 bytes: the shared buffer itself (a cheap clone, no copy).
    pub fn to_bytes(&self) -> Bytes {
        self.0.as_bytes().clone()
    }

    /// The text's UTF-8 bytes, without a clone.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

/// A message body as a server keeps it: the text, and whether that text is known to be
/// verbatim — escaped for XML element content it is itself (no `&`, `<`, `>` or CR, only
/// characters XML allows), so a consume response copies it without the escape scan
/// ([`BodyView`], [`encode_response`](crate::wire::consume::encode_response)). The mark
/// never changes the bytes written, only the work of writing them.
///
/// The request parser ([`server::parse_request`](crate::server::parse_request)) marks a body
/// verbatim as it reads it (a body that was one piece of character data, without `>`);
/// [`scanned`](Self::scanned) marks one by a scan of its text (a server's snapshot or
/// journal); a body built from a `String`, `&str` or [`Text`] is not marked and is escaped
/// when written. It compares and reads (`Deref<Target = str>`, `AsRef<str>`, `Display`) as
/// its text.
///
/// ```
/// use mq_proto::{MessageBody, Text};
/// let body = MessageBody::from("a < b");
/// assert_eq!(body, "a < b");
/// assert!(!body.is_verbatim());
/// assert_eq!(body, MessageBody::from(Text::from("a < b")));
/// ```
#[derive(Clone, Default)]
pub struct MessageBody {
    text: Text,
    verbatim: bool,
}

impl MessageBody {
    /// A body with the mark as the caller found it: the XML reader from where the text
    /// lay in the request, [`scanned`](Self::scanned) by a scan.
    pub(crate) fn marked(text: Text, verbatim: bool) -> Self {
        Self { text, verbatim }
    }

    /// A body marked verbatim when escaping leaves its text as it is (no `&`, `<`, `>` or
    /// CR, only characters XML allows): one scan of the text, for a body not read from a
    /// request (a server's snapshot or journal). Marks exactly the bodies the request
    /// parser would have marked, and those it reads from other forms (references, CDATA)
    /// whose text needs no escaping.
    ///
    /// ```
    /// use mq_proto::MessageBody;
    /// assert!(MessageBody::scanned("{\"qty\": 3}, \u{ff0c}").is_verbatim());
    /// assert!(!MessageBody::scanned("a < b").is_verbatim());
    /// assert!(!MessageBody::scanned("a > b").is_verbatim());
    /// ```
    pub fn scanned(text: impl Into<Text>) -> Self {
        let text = text.into();
        let verbatim = crate::xml::escapes_to_itself(&text);
        Self::marked(text, verbatim)
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text, shared (a cheap clone: no copy).
    pub fn text(&self) -> &Text {
        &self.text
    }

    /// Whether the text is its own XML element content (see the type's description).
    pub fn is_verbatim(&self) -> bool {
        self.verbatim
    }

    /// The view an encoder writes.
    pub fn view(&self) -> BodyView<'_> {
        BodyView {
            text: &self.text,
            verbatim: self.verbatim,
        }
    }
}

impl Deref for MessageBody {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl AsRef<str> for MessageBody {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<T: AsRef<str> + ?Sized> PartialEq<T> for MessageBody {
    /// As the text (the mark is not part of the value).
    fn eq(&self, other: &T) -> bool {
        *self.text == *other.as_ref()
    }
}

impl Eq for MessageBody {}

impl From<Text> for MessageBody {
    /// A body to escape when written.
    fn from(text: Text) -> Self {
        Self {
            text,
            verbatim: false,
        }
    }
}

impl From<String> for MessageBody {
    /// A body to escape when written.
    fn from(text: String) -> Self {
        Self::from(Text::from(text))
    }
}

impl From<&str> for MessageBody {
    /// A body to escape when written.
    fn from(text: &str) -> Self {
        Self::from(Text::from(text))
    }
}

impl From<MessageBody> for Text {
    fn from(body: MessageBody) -> Self {
        body.text
    }
}

/// The `MessageBody` of a [`MessageView`](crate::wire::consume::MessageView): the text, and
/// whether it is written as it is ([`MessageBody::is_verbatim`]) or escaped. Made from a
/// `&str` or `&Text` (escaped) or a [`MessageBody`] (as it is marked); compares as its text.
///
/// ```
/// use mq_proto::BodyView;
/// let view = BodyView::from("hello");
/// assert_eq!(view.as_str(), "hello");
/// assert!(!view.is_verbatim());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BodyView<'a> {
    text: &'a str,
    verbatim: bool,
}

impl<'a> BodyView<'a> {
    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Whether the text is written as it is (see [`MessageBody::is_verbatim`]).
    pub fn is_verbatim(&self) -> bool {
        self.verbatim
    }
}

impl PartialEq for BodyView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for BodyView<'_> {}

impl<'a> From<&'a str> for BodyView<'a> {
    /// A body to escape when written.
    fn from(text: &'a str) -> Self {
        Self {
            text,
            verbatim: false,
        }
    }
}

impl<'a> From<&'a Text> for BodyView<'a> {
    /// A body to escape when written.
    fn from(text: &'a Text) -> Self {
        Self::from(text.as_str())
    }
}

impl<'a> From<&'a MessageBody> for BodyView<'a> {
    fn from(body: &'a MessageBody) -> Self {
        body.view()
    }
}

/// A text field of a [`MessageView`](crate::wire::consume::MessageView) (`MessageId`,
/// `ReceiptHandle`, `MessageBodyMD5`): text escaped when written, or bytes known to be
/// *plain* — printable ASCII other than space, `<`, `>` and `&` (`!` to `~`), which escape
/// to themselves — written as they are, without the escape scan and without a UTF-8 check
/// of bytes a server keeps inline. Message ids are plain by their type's rule; receipt
/// handles are when ASCII (their rule refuses whitespace, controls and `<>&`; one
/// `is_ascii` pass tells); a server's inline digits are by [`TextView::plain`]'s check. It compares, prints and reads as its
/// text whichever way it was made.
///
/// ```
/// use mq_proto::{MessageId, TextView};
/// let id = MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010")?;
/// assert!(TextView::from(&id).is_plain());
/// // A server's inline digits: plain when they pass the check, escaped text otherwise.
/// let digits: [u8; 4] = *b"5D41";
/// let view = TextView::from_utf8(&digits)?;
/// assert!(view.is_plain());
/// assert_eq!(view, TextView::from("5D41"));
/// assert!(!TextView::from_utf8(b"a < b")?.is_plain());
/// assert_eq!(TextView::plain(b"a b"), None);
/// assert_eq!(TextView::from("a < b").as_str(), "a < b");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct TextView<'a>(TextRepr<'a>);

/// What a [`TextView`] holds.
#[derive(Clone, Copy)]
pub(crate) enum TextRepr<'a> {
    /// Text escaped when written.
    Text(&'a str),
    /// Plain ASCII, written as it is.
    Plain(&'a [u8]),
}

impl<'a> TextView<'a> {
    /// `bytes` as plain text when every byte is printable ASCII other than space, `<`, `>`
    /// and `&`; `None` otherwise (one pass over the bytes, vectorised).
    pub fn plain(bytes: &'a [u8]) -> Option<Self> {
        // A fold, not `all`: no early exit, so the scan vectorises.
        let refused = bytes.iter().fold(false, |refused, &b| {
            refused | (b <= b' ') | (b >= 0x7f) | (b == b'<') | (b == b'>') | (b == b'&')
        });
        (!refused).then_some(Self(TextRepr::Plain(bytes)))
    }

    /// `bytes` as a view: plain when [`plain`](Self::plain) takes them, else their text
    /// (escaped when written) — what a server lends of text it keeps as bytes inline.
    ///
    /// # Errors
    ///
    /// [`std::str::Utf8Error`] for bytes that are neither plain nor UTF-8.
    pub fn from_utf8(bytes: &'a [u8]) -> Result<Self, std::str::Utf8Error> {
        match Self::plain(bytes) {
            Some(view) => Ok(view),
            None => std::str::from_utf8(bytes).map(Self::from),
        }
    }

    /// Whether the view was made plain: written without the escape scan (text made with
    /// `From<&str>` is scanned, even when escaping leaves it as it is).
    pub fn is_plain(&self) -> bool {
        matches!(self.0, TextRepr::Plain(_))
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self.0 {
            TextRepr::Text(text) => text.as_bytes(),
            TextRepr::Plain(bytes) => bytes,
        }
    }

    /// The text (plain bytes are checked as UTF-8 here: for reading, not for writing).
    pub fn as_str(&self) -> &'a str {
        match self.0 {
            TextRepr::Text(text) => text,
            // Plain bytes are ASCII (`plain`, `From<&MessageId>`, `From<&ReceiptHandle>`).
            TextRepr::Plain(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
        }
    }

    /// Bytes of the text.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the view holds (for the writer).
    pub(crate) fn repr(&self) -> TextRepr<'a> {
        self.0
    }
}

impl Default for TextView<'_> {
    /// Empty text.
    fn default() -> Self {
        Self(TextRepr::Plain(&[]))
    }
}

impl PartialEq for TextView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for TextView<'_> {}

impl fmt::Debug for TextView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<'a> From<&'a str> for TextView<'a> {
    /// Text to escape when written.
    fn from(text: &'a str) -> Self {
        Self(TextRepr::Text(text))
    }
}

impl<'a> From<&'a crate::MessageId> for TextView<'a> {
    /// Plain: a message id is `[A-Za-z0-9_.%-]` ([`MessageId::new`](crate::MessageId::new)).
    fn from(id: &'a crate::MessageId) -> Self {
        Self(TextRepr::Plain(id.as_str().as_bytes()))
    }
}

impl<'a> From<&'a crate::ReceiptHandle> for TextView<'a> {
    /// Plain when ASCII (the handle's rule refuses whitespace, controls and `<>&`); text
    /// to escape otherwise.
    fn from(handle: &'a crate::ReceiptHandle) -> Self {
        let text = handle.as_str();
        if text.is_ascii() {
            Self(TextRepr::Plain(text.as_bytes()))
        } else {
            Self(TextRepr::Text(text))
        }
    }
}

/// Upper-case hexadecimal digits.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The 16 upper-case hexadecimal digits of `value`, most significant first (what the
/// service's message ids and request ids are made of, PROTOCOL §3.3 and §5.2).
pub(crate) fn hex_u64(value: u64) -> [u8; 16] {
    let mut out = [0; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX_UPPER[((value >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The value of 16 upper-case hexadecimal digits (what [`hex_u64`] writes); `None` for any
/// other length or character.
pub(crate) fn parse_hex_u64(digits: &[u8]) -> Option<u64> {
    /// The value of each upper-case hexadecimal digit; `0xFF` for every other byte.
    static HEX_VALUE: [u8; 256] = {
        let mut t = [0xFF; 256];
        let mut i = 0;
        while i < 16 {
            t[HEX_UPPER[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    let digits: &[u8; 16] = digits.try_into().ok()?;
    // Branch-free over the 16 digits: any invalid byte leaves a high bit in `invalid`.
    let (mut value, mut invalid) = (0u64, 0u8);
    for &b in digits {
        let digit = HEX_VALUE[usize::from(b)];
        invalid |= digit;
        value = value << 4 | u64::from(digit & 0xf);
    }
    (invalid & 0xf0 == 0).then_some(value)
}

/// The upper-case hexadecimal digits of `bytes`, two per byte, into `out` (which holds
/// exactly twice as many bytes).
pub(crate) fn hex_bytes_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_UPPER[usize::from(b >> 4)];
        pair[1] = HEX_UPPER[usize::from(b & 0xf)];
    }
}

/// Appends ASCII bytes (hexadecimal digits) to `out`.
pub(crate) fn push_ascii(out: &mut String, ascii: &[u8]) {
    // Hexadecimal digits are ASCII: the conversion never fails.
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
}

/// `sub` as a slice of `text`'s buffer, when it lies within `text` (a `&str` taken from it).
pub(crate) fn shared_slice(text: &ByteString, sub: &str) -> Option<ByteString> {
    let start = text.as_ptr() as usize;
    let at = sub.as_ptr() as usize;
    let within = at >= start
        && at
            .checked_add(sub.len())
            .is_some_and(|end| end <= start + text.len());
    // `slice_ref` panics outside the buffer; an empty `sub` is always accepted.
    within.then(|| text.slice_ref(sub))
}

/// `s.trim()` (Unicode whitespace at both ends), without looking at characters when the
/// first and last bytes are ASCII and neither whitespace nor a control: ids, handles,
/// numbers and tags as every SDK sends them, with nothing to trim.
pub(crate) fn trim(s: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x80);
    if plain(s.as_bytes().first()) && plain(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// `s.parse::<u64>()` (decimal digits after an optional `+`): up to 19 plain digits, which
/// cannot overflow, are folded without the per-digit overflow checks; anything else is
/// left to `parse`.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    let digits = s.as_bytes();
    if !(1..=19).contains(&digits.len()) {
        return s.parse().ok();
    }
    let mut n: u64 = 0;
    for &d in digits {
        let digit = d.wrapping_sub(b'0');
        if digit > 9 {
            return s.parse().ok();
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ByteString> for Text {
    fn from(s: ByteString) -> Self {
        Self(s)
    }
}

impl From<Text> for ByteString {
    fn from(t: Text) -> Self {
        t.0
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Self(s.as_str().into())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0.into()
    }
}

impl<T: AsRef<str> + ?Sized> PartialEq<T> for Text {
    fn eq(&self, other: &T) -> bool {
        *self.0 == *other.as_ref()
    }
}

impl Eq for Text {}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == &*other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TextView::plain` takes exactly the printable ASCII other than space and `<>&`:
    /// every byte value at every place of texts of 1 to 69 bytes (across the vectorised
    /// blocks); and what it takes escapes to itself, so writing it as it is writes what
    /// escaping would.
    #[test]
    fn plain_text_is_printable_ascii_that_escapes_to_itself() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_graphic() && !b"<>&".contains(&b);
            for len in 1..70 {
                for at in 0..len {
                    let mut bytes = vec![b'A'; len];
                    bytes[at] = b;
                    let view = TextView::plain(&bytes);
                    assert_eq!(view.is_some(), expected, "{b:#x} at {at} of {len}");
                    if let Some(view) = view {
                        assert!(crate::xml::escapes_to_itself(view.as_str()));
                        assert_eq!(view, TextView::from(view.as_str()));
                    }
                }
            }
        }
        assert_eq!(TextView::plain(b""), Some(TextView::default()));
        // `from_utf8`: plain when `plain` takes the bytes, their text when UTF-8, else an
        // error (not an empty field).
        assert!(TextView::from_utf8(b"5D41").is_ok_and(|v| v.is_plain()));
        let text = TextView::from_utf8("\u{e9} < b".as_bytes()).unwrap();
        assert!(!text.is_plain());
        assert_eq!(text.as_str(), "\u{e9} < b");
        assert!(TextView::from_utf8(b"5D\xff").is_err());
    }

    proptest::proptest! {
        /// `trim` is `str::trim`, on text with ASCII and Unicode whitespace and controls at
        /// either end.
        #[test]
        fn trim_is_str_trim(s in "[ \t\n\r\x0b\x0c\x00\x7fa9\u{a0}\u{3000}\u{85}\u{e9}]{0,3}[a-z0-9\u{e9} ]{0,8}[ \t\n\r\x0b\x0c\x00\x7fa9\u{a0}\u{3000}\u{85}\u{e9}]{0,3}") {
            proptest::prop_assert_eq!(trim(&s), s.trim());
        }

        /// `parse_hex_u64` reads what `hex_u64` writes and refuses any other 16 bytes
        /// (lower case, other characters).
        #[test]
        fn parse_hex_u64_is_upper_case_from_str_radix(n: u64, s in "[0-9A-Fa-fG-]{16}|[0-9A-F]{15,17}") {
            proptest::prop_assert_eq!(parse_hex_u64(&hex_u64(n)), Some(n));
            let expected = (s.len() == 16 && s.bytes().all(|b| HEX_UPPER.contains(&b)))
                .then(|| u64::from_str_radix(&s, 16).ok())
                .flatten();
            proptest::prop_assert_eq!(parse_hex_u64(s.as_bytes()), expected);
        }

        /// `parse_hex_u64` against a digit-by-digit reading, on digits with up to two bytes
        /// replaced (by bytes at the edges of the digit ranges or with the high bit set,
        /// most often, or by any byte).
        #[test]
        fn parse_hex_u64_reads_digit_by_digit(
            n: u64,
            changes in proptest::collection::vec((0usize..16, proptest::prop_oneof![
                proptest::sample::select(
                    b"/09:@AFG`afo\x7f\x80\xb0\xb9\xc1\xc6\xff".to_vec()
                ),
                proptest::num::u8::ANY,
            ]), 0..3),
        ) {
            let mut bytes = hex_u64(n);
            for (at, b) in changes {
                bytes[at] = b;
            }
            let expected = bytes.iter().try_fold(0u64, |value, &b| {
                let digit = HEX_UPPER.iter().position(|&d| d == b)?;
                Some(value << 4 | digit as u64)
            });
            proptest::prop_assert_eq!(parse_hex_u64(&bytes), expected);
        }

        /// `parse_u64` is `str::parse::<u64>`, around the overflow edge and on signs, blanks
        /// and empty text.
        #[test]
        fn parse_u64_is_str_parse(s in "[+-]?[0-9]{0,21}|[0-9 +a]{0,4}|1844674407370955161[0-9]") {
            proptest::prop_assert_eq!(parse_u64(&s), s.parse::<u64>().ok());
        }
    }

    #[test]
    fn parse_u64_edges() {
        assert_eq!(
            parse_u64("9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64("+7"), Some(7));
        assert_eq!(parse_u64(""), None);
    }
}
