//! Message properties and their wire codec (PROTOCOL §4).
//!
//! On the wire, properties are one string `k1:v1|k2:v2|`. Keys and values must not contain
//! `:` `|` `"` `'` `&` `<` `>` and must not be empty. Decoding accepts the form with and without
//! the trailing `|`; encoding always emits it (the C++ SDK drops a final pair without it).

use std::fmt;

use bytestring::ByteString;

use crate::text::Text;

/// Property key of the message key (business index).
pub const KEY_KEYS: &str = "KEYS";
/// Property key of the scheduled delivery time (epoch milliseconds).
pub const KEY_START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
/// Property key of the transaction check immunity (seconds); marks a transactional message.
pub const KEY_TRANS_CHECK_IMMUNITY: &str = "__TransCheckT";
/// Property key of the ordered-message partition key.
pub const KEY_SHARDING_KEY: &str = "__SHARDINGKEY";

/// Every system property key; custom properties may not use these names.
pub const SYSTEM_KEYS: [&str; 4] = [
    KEY_KEYS,
    KEY_START_DELIVER_TIME,
    KEY_TRANS_CHECK_IMMUNITY,
    KEY_SHARDING_KEY,
];

/// Maximum encoded size of the properties string in bytes (PROTOCOL §6.9: 16 KB).
pub const MAX_PROPERTIES_LEN: usize = 16 * 1024;

/// Characters forbidden in property keys and values.
pub const FORBIDDEN_CHARS: [char; 7] = [':', '|', '"', '\'', '&', '<', '>'];

/// A property key or value was rejected, or the wire string was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyError {
    /// A key was empty.
    #[error("property key must not be empty")]
    EmptyKey,
    /// A value was empty.
    #[error("value of property {key:?} must not be empty")]
    EmptyValue {
        /// The key whose value is empty.
        key: String,
    },
    /// A key or value contained one of [`FORBIDDEN_CHARS`], a control character or a
    /// character XML cannot carry (U+FFFE, U+FFFF: the XML writer would replace it).
    #[error(
        "property {key:?} contains forbidden character {ch:?} (not allowed: : | \" ' & < >, control characters and U+FFFE, U+FFFF)"
    )]
    ForbiddenChar {
        /// The key concerned.
        key: String,
        /// The offending character.
        ch: char,
    },
    /// A wire segment had no `:`.
    #[error("property segment {segment:?} has no ':'")]
    MissingColon {
        /// The segment as received.
        segment: String,
    },
    /// The encoded properties exceed [`MAX_PROPERTIES_LEN`].
    #[error("properties are {len} bytes, at most {MAX_PROPERTIES_LEN} allowed")]
    TooLarge {
        /// Encoded length in bytes.
        len: usize,
    },
    /// A system property held a value of the wrong form (for example a non-numeric time).
    #[error("system property {key} has invalid value {value:?}")]
    InvalidSystemValue {
        /// The system key.
        key: &'static str,
        /// The value as received.
        value: String,
    },
    /// A custom property used a reserved system key.
    #[error("{key} is a system property; use the dedicated setter")]
    ReservedKey {
        /// The reserved key.
        key: String,
    },
}

/// The bytes a key or value may hold without a closer look: printable ASCII other than the
/// bytes of [`FORBIDDEN_CHARS`]. Forbidden characters and ASCII controls are ASCII bytes;
/// other controls (U+0080..U+009F) are not, so text with other characters takes the
/// character path of [`check_part`].
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b' ';
    while b < 0x7f {
        t[b as usize] = !matches!(b, b':' | b'|' | b'"' | b'\'' | b'&' | b'<' | b'>');
        b += 1;
    }
    t
};

/// Whether `c` may not be in a key or value: one of [`FORBIDDEN_CHARS`], a control
/// character, or a character XML cannot carry (U+FFFE, U+FFFF), which the XML writer would
/// silently replace with U+FFFD.
fn forbidden(c: char) -> bool {
    FORBIDDEN_CHARS.contains(&c) || c.is_control() || !crate::is_xml_char(c)
}

fn check_part(key: &str, part: &str) -> Result<(), PropertyError> {
    if part.bytes().all(|b| PLAIN[usize::from(b)]) {
        return Ok(());
    }
    if let Some(ch) = part.chars().find(|&c| forbidden(c)) {
        return Err(PropertyError::ForbiddenChar {
            key: key.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// Checks one key/value pair against the wire rules.
///
/// # Errors
///
/// [`PropertyError::EmptyKey`], [`PropertyError::EmptyValue`], or
/// [`PropertyError::ForbiddenChar`] for a character the wire form cannot carry.
pub fn validate_pair(key: &str, value: &str) -> Result<(), PropertyError> {
    if key.is_empty() {
        return Err(PropertyError::EmptyKey);
    }
    check_part(key, key)?;
    if value.is_empty() {
        return Err(PropertyError::EmptyValue {
            key: key.to_owned(),
        });
    }
    check_part(key, value)
}

/// A validated set of properties, ordered by key (pair order carries no meaning on the wire).
///
/// A decoded set shares the text of the document it came from (one buffer for all keys and
/// values) instead of allocating a string per key and value.
///
/// ```
/// use mq_proto::Properties;
/// let mut p = Properties::new();
/// p.insert("color", "red").unwrap();
/// assert_eq!(p.encode(), "color:red|");
/// let back = Properties::decode("color:red").unwrap();
/// assert_eq!(back, p);
/// assert!(p.insert("a|b", "x").is_err());
/// ```
///
/// Kept as a vector of pairs sorted by key (a decoded set takes exactly its pairs' room: a
/// broker keeps one per stored message, where a tree map's node took ≈ 700 bytes for one
/// pair).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(Vec<(ByteString, ByteString)>);

impl Properties {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a pair after validating it.
    ///
    /// # Errors
    ///
    /// As [`validate_pair`]; the set is unchanged then.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), PropertyError> {
        self.insert_text(key.into().into(), value.into().into())
    }

    /// [`insert`](Self::insert) for text that is already shared (slices of a document).
    pub(crate) fn insert_text(
        &mut self,
        key: ByteString,
        value: ByteString,
    ) -> Result<(), PropertyError> {
        validate_pair(&key, &value)?;
        self.put(key, value);
        Ok(())
    }

    /// Inserts or replaces a pair, keeping the pairs sorted by key.
    fn put(&mut self, key: ByteString, value: ByteString) {
        match self.find(&key) {
            Ok(at) => {
                if let Some(pair) = self.0.get_mut(at) {
                    pair.1 = value;
                }
            }
            Err(at) => self.0.insert(at, (key, value)),
        }
    }

    /// Where `key` is, or where it would go.
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        let at = self.find(key).ok()?;
        self.0.get(at).map(|(_, v)| &**v)
    }

    /// Removes a key, returning its value ([`Text`]: `&str` by deref, `String` by
    /// `String::from`).
    pub fn remove(&mut self, key: &str) -> Option<Text> {
        let at = self.find(key).ok()?;
        Some(Text::from(self.0.remove(at).1))
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.into_iter()
    }

    /// Length in bytes of [`Properties::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }

    /// Appends the wire form `k:v|k:v|` to `out`.
    pub fn encode_into(&self, out: &mut String) {
        for (k, v) in &self.0 {
            out.push_str(k);
            out.push(':');
            out.push_str(v);
            out.push('|');
        }
    }

    /// The wire form `k:v|k:v|` (empty string when there are no pairs).
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(self.encoded_len());
        self.encode_into(&mut s);
        s
    }

    /// Parses the wire form, with or without the trailing `|`; empty segments are skipped.
    /// A later duplicate key replaces an earlier one.
    ///
    /// # Errors
    ///
    /// [`PropertyError::MissingColon`] for a segment without `:`, or any error of
    /// [`validate_pair`] for a pair.
    pub fn decode(s: &str) -> Result<Self, PropertyError> {
        Self::decode_text(&ByteString::from(s))
    }

    /// [`decode`](Self::decode) of shared text: keys and values are slices of `s`.
    pub(crate) fn decode_text(s: &ByteString) -> Result<Self, PropertyError> {
        Self::decode_segments(s, false).map(|(properties, _)| properties)
    }

    /// [`decode_text`](Self::decode_text) with the value of [`KEY_KEYS`] (the last one, as
    /// a later duplicate replaces an earlier one) taken out of the set, where a message
    /// keeps it: the pair is checked like any other but never enters the set.
    pub(crate) fn decode_text_without_keys(
        s: &ByteString,
    ) -> Result<(Self, Option<ByteString>), PropertyError> {
        Self::decode_segments(s, true)
    }

    fn decode_segments(
        s: &ByteString,
        take_keys: bool,
    ) -> Result<(Self, Option<ByteString>), PropertyError> {
        // Room for one pair per segment (one to spare when `KEYS` is taken out): no growth,
        // no shrinking afterwards.
        let segments_in =
            memchr::memchr_iter(b'|', s.as_bytes()).count() + usize::from(!s.ends_with('|'));
        let mut set = Self(Vec::with_capacity(segments_in));
        let mut keys = None;
        for segment in segments(s) {
            if segment.text.is_empty() {
                continue;
            }
            let Some((k, v)) = segment.pair() else {
                return Err(PropertyError::MissingColon {
                    segment: segment.text.to_owned(),
                });
            };
            segment.validate_pair(k, v)?;
            if take_keys && k == KEY_KEYS {
                keys = Some(s.slice_ref(v));
            } else {
                set.put(s.slice_ref(k), s.slice_ref(v));
            }
        }
        Ok((set, keys))
    }

    /// [`insert_text`](Self::insert_text) of the pair of `segment`, a segment of the wire
    /// form `s`, as slices of `s` ([`Segment::validate_pair`]).
    pub(crate) fn insert_segment(
        &mut self,
        s: &ByteString,
        segment: &Segment<'_>,
        (key, value): (&str, &str),
    ) -> Result<(), PropertyError> {
        segment.validate_pair(key, value)?;
        self.put(s.slice_ref(key), s.slice_ref(value));
        Ok(())
    }
}

/// One `|`-separated segment of the wire form, with where its colons are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    /// The segment's text, without the `|`.
    pub(crate) text: &'a str,
    /// Byte offset in `text` of its first `:`.
    pub(crate) first_colon: Option<usize>,
    /// How many `:` `text` holds.
    pub(crate) colons: usize,
    /// Whether every byte of `text` other than its colons is [`PLAIN`].
    pub(crate) plain: bool,
}

impl<'a> Segment<'a> {
    /// The key before the first `:` and the value after it (which may hold more `:`).
    pub(crate) fn pair(&self) -> Option<(&'a str, &'a str)> {
        let colon = self.first_colon?;
        Some((self.text.get(..colon)?, self.text.get(colon + 1..)?))
    }

    /// [`validate_pair`] of `key` and `value`, this segment's [`pair`](Self::pair): not
    /// looked at again when the segment is plain with one `:` and neither side is empty
    /// (nothing there that `validate_pair` refuses).
    fn validate_pair(&self, key: &str, value: &str) -> Result<(), PropertyError> {
        if self.plain && self.colons == 1 && !key.is_empty() && !value.is_empty() {
            return Ok(());
        }
        validate_pair(key, value)
    }
}

/// The segments of the wire form `s`, as `s.split('|')` gives them (an empty one after a
/// trailing `|`), each with its colons counted: one pass over the bytes instead of a search
/// per segment and per colon.
pub(crate) fn segments(s: &str) -> impl Iterator<Item = Segment<'_>> {
    let bytes = s.as_bytes();
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let (mut first_colon, mut colons, mut plain, mut at) = (None, 0, true, from);
        while let Some(&b) = bytes.get(at) {
            match b {
                b'|' => break,
                b':' => {
                    first_colon = first_colon.or(Some(at - from));
                    colons += 1;
                }
                _ => plain &= PLAIN[usize::from(b)],
            }
            at += 1;
        }
        // `|` and `:` are ASCII: the cuts are character boundaries.
        let text = s.get(from..at).unwrap_or_default();
        start = (at < bytes.len()).then_some(at + 1);
        Some(Segment {
            text,
            first_colon,
            colons,
            plain,
        })
    })
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// One pair of [`Properties::iter`] as `&str`s.
type PairRefs<'a> = fn(&'a (ByteString, ByteString)) -> (&'a str, &'a str);

impl<'a> IntoIterator for &'a Properties {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (ByteString, ByteString)>, PairRefs<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_forms_and_encodes_trailing_bar() {
        let a = Properties::decode("KEYS:k1|a:1|").unwrap();
        let b = Properties::decode("KEYS:k1|a:1").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.encode(), "KEYS:k1|a:1|");
        assert_eq!(Properties::decode("").unwrap().len(), 0);
        assert_eq!(Properties::decode("||a:1||").unwrap().get("a"), Some("1"));
    }

    proptest::proptest! {
        /// The sorted pairs answer as a map does: inserts (replacing), removals, lookups,
        /// order, length, the wire form.
        #[test]
        fn the_pairs_behave_as_a_map(
            ops in proptest::collection::vec((0u8..3, 0u8..12, "[a-c]{0,3}"), 0..60)
        ) {
            let mut set = Properties::new();
            let mut model = std::collections::BTreeMap::new();
            for (op, key, value) in ops {
                let key = format!("k{key}");
                match op {
                    0 if !value.is_empty() => {
                        set.insert(key.clone(), value.clone()).unwrap();
                        model.insert(key, value);
                    }
                    1 => {
                        proptest::prop_assert_eq!(
                            set.remove(&key).map(String::from),
                            model.remove(&key)
                        );
                    }
                    _ => proptest::prop_assert_eq!(set.get(&key), model.get(&key).map(String::as_str)),
                }
            }
            let pairs: Vec<(&str, &str)> = set.iter().collect();
            let want: Vec<(&str, &str)> = model.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            proptest::prop_assert_eq!(&pairs, &want);
            proptest::prop_assert_eq!(set.len(), model.len());
            proptest::prop_assert_eq!(Properties::decode(&set.encode()).unwrap(), set);
        }
    }

    proptest::proptest! {
        /// `segments` cuts as `split('|')` does, finds the colons `split(':')` finds and
        /// tells plain segments by the definition of `FORBIDDEN_CHARS`; checking a pair
        /// through its segment gives exactly what `validate_pair` gives.
        #[test]
        fn segments_match_split(s in "[a-z:|\u{4e2d}]{0,24}|[a-c:|\"'&<>\x00-\x1f\x7f\u{85}\u{e9} ]{0,24}") {
            let got: Vec<Segment<'_>> = segments(&s).collect();
            let want: Vec<Segment<'_>> = s
                .split('|')
                .map(|text| Segment {
                    text,
                    first_colon: text.find(':'),
                    colons: text.matches(':').count(),
                    plain: text.chars().all(|c| {
                        c == ':'
                            || (c.is_ascii() && !c.is_control() && !FORBIDDEN_CHARS.contains(&c))
                    }),
                })
                .collect();
            proptest::prop_assert_eq!(&got, &want);
            for segment in got {
                proptest::prop_assert_eq!(segment.pair(), segment.text.split_once(':'));
                if let Some((k, v)) = segment.pair() {
                    proptest::prop_assert_eq!(segment.validate_pair(k, v), validate_pair(k, v));
                }
            }
        }

        /// The byte scan of `check_part` refuses exactly what the character definition
        /// refuses, naming the same character.
        #[test]
        fn check_part_matches_the_char_definition(
            s in "(?s:.{1,24})|[\\x00-\\x21\\x7e-\\u{a0}:|\"'&<>a-z\\u{4e2d}\\u{fffd}-\\u{ffff}]{1,24}",
        ) {
            let reference = s
                .chars()
                .find(|&c| FORBIDDEN_CHARS.contains(&c) || c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}'));
            match (check_part("k", &s), reference) {
                (Ok(()), None) => {}
                (Err(PropertyError::ForbiddenChar { ch, .. }), Some(r)) => {
                    proptest::prop_assert_eq!(ch, r);
                }
                (got, want) => proptest::prop_assert!(false, "{:?} vs {:?}", got, want),
            }
        }
    }

    #[test]
    fn rejects_forbidden_characters_with_clear_errors() {
        for bad in [":", "|", "\"", "'", "&", "<", ">"] {
            let mut p = Properties::new();
            let err = p.insert("k", format!("x{bad}y")).unwrap_err();
            assert!(matches!(err, PropertyError::ForbiddenChar { .. }), "{bad}");
            assert!(err.to_string().contains("forbidden"));
        }
        assert_eq!(
            Properties::new().insert("", "v").unwrap_err(),
            PropertyError::EmptyKey
        );
        assert!(Properties::decode("novalue").is_err());
        assert!(Properties::decode("k:").is_err());
    }

    /// U+FFFE and U+FFFF are no XML characters: accepted, they were written as U+FFFD, so a
    /// property published with one arrived altered (and the admin API showed the original).
    #[test]
    fn rejects_characters_xml_cannot_carry() {
        for bad in ['\u{fffe}', '\u{ffff}'] {
            assert_eq!(
                validate_pair("k", &format!("x{bad}y")),
                Err(PropertyError::ForbiddenChar {
                    key: "k".to_owned(),
                    ch: bad
                })
            );
            assert_eq!(
                validate_pair(&format!("k{bad}"), "v"),
                Err(PropertyError::ForbiddenChar {
                    key: format!("k{bad}"),
                    ch: bad
                })
            );
        }
        assert_eq!(validate_pair("k", "x\u{fffd}\u{4e2d}y"), Ok(()));
    }
}
