//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) carried in message properties.
//!
//! A producer puts the context of the span it publishes from into two custom properties, and
//! a consumer reads them back to parent (or link) its processing span to the producer's
//! trace. This is the same convention as the OpenTelemetry messaging instrumentations of other
//! SDKs (the W3C header names as property keys):
//!
//! | property | value |
//! |---|---|
//! | [`KEY_TRACEPARENT`] `traceparent` | the W3C `traceparent` header, always version `00`: `00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>`, lower-case |
//! | [`KEY_TRACESTATE`] `tracestate` | the W3C `tracestate` header (`key=value,…`), with `%` and the characters message properties cannot carry (`:` `\|` `"` `'` `&` `<` `>`, PROTOCOL §4.1) percent-encoded as `%XX`; absent when the trace state is empty |
//!
//! A `traceparent` only holds lower-case hex digits and `-`, so it needs no encoding. The
//! keys of a `tracestate` cannot hold any of those characters, but its values may (W3C:
//! printable ASCII but `,` and `=`), hence the encoding.
//!
//! ```
//! use mq_proto::trace::{TraceContext, TraceParent, TraceState};
//! use mq_proto::TopicMessage;
//!
//! let parent: TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse()?;
//! assert!(parent.is_sampled());
//! let state: TraceState = "congo=t61rcWkgMzE,rojo=a:b|c".parse()?;
//! let msg = TopicMessage::new("hello")?.with_trace_context(&TraceContext::new(parent, state));
//! assert_eq!(msg.properties().get("tracestate"), Some("congo=t61rcWkgMzE,rojo=a%3Ab%7Cc"));
//! let back = msg.trace_context()?.expect("a context was set");
//! assert_eq!(back.parent(), &parent);
//! assert_eq!(back.state().get("rojo"), Some("a:b|c"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::properties::Properties;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::fmt;
use std::str::FromStr;

/// Property key of the W3C `traceparent` (see the [module docs](self)).
pub const KEY_TRACEPARENT: &str = "traceparent";
/// Property key of the W3C `tracestate`, percent-encoded (see the [module docs](self)).
pub const KEY_TRACESTATE: &str = "tracestate";
/// The trace context keys; [`TopicMessage::with_property`](crate::TopicMessage::with_property)
/// refuses them (use [`TopicMessage::with_trace_context`](crate::TopicMessage::with_trace_context)).
pub const TRACE_KEYS: [&str; 2] = [KEY_TRACEPARENT, KEY_TRACESTATE];

/// Most list members of a `tracestate` (W3C Trace Context §3.3.1.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Length of a version-00 `traceparent` (W3C §3.2.2).
const TRACEPARENT_LEN: usize = 55;

/// What is percent-encoded in the `tracestate` property: `%` itself (so decoding is exact),
/// the characters PROTOCOL §4.1 forbids in property values, and controls (none are valid in a
/// `tracestate`; encoding them keeps the encoder total).
const TRACESTATE_ENCODE: &AsciiSet = &CONTROLS
    .add(b'%')
    .add(b':')
    .add(b'|')
    .add(b'"')
    .add(b'\'')
    .add(b'&')
    .add(b'<')
    .add(b'>');

/// A `traceparent` or `tracestate` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceContextError {
    /// Not a valid W3C `traceparent`.
    #[error("invalid traceparent {value:?}: {reason}")]
    InvalidTraceParent {
        /// The value given (at most its first 64 characters).
        value: String,
        /// Which rule of W3C Trace Context §3.2 it breaks.
        reason: &'static str,
    },
    /// Not a valid W3C `tracestate` (or its property encoding).
    #[error("invalid tracestate: {reason}")]
    InvalidTraceState {
        /// Which rule of W3C Trace Context §3.3 it breaks.
        reason: String,
    },
}

fn invalid_parent(value: &str, reason: &'static str) -> TraceContextError {
    TraceContextError::InvalidTraceParent {
        value: value.chars().take(64).collect(),
        reason,
    }
}

fn invalid_state(reason: impl Into<String>) -> TraceContextError {
    TraceContextError::InvalidTraceState {
        reason: reason.into(),
    }
}

/// Lower-case hex digits only (W3C `HEXDIGLC`), decoded into `out`.
fn decode_hex_lc(text: &str, out: &mut [u8]) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 {
        return false;
    }
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// A W3C `traceparent`: trace id (16 bytes), parent span id (8 bytes) and trace flags.
///
/// Parsed by [`FromStr`] and written by [`Display`](fmt::Display) in the version-00 form.
/// Parsing follows W3C Trace Context §3.2 and §4.3 (versioning): lower-case hex only; version
/// `ff` is invalid; a version-00 value is exactly 55 characters; a higher version may be
/// longer, with a `-` after the 55th character, and is read as version 00 (its extra fields
/// dropped); all-zero trace or parent ids are invalid. The flags byte is kept as received
/// (bit 0 is `sampled`).
///
/// ```
/// use mq_proto::trace::TraceParent;
/// let p = TraceParent::new([0xab; 16], [0xcd; 8], TraceParent::FLAG_SAMPLED)?;
/// assert_eq!(p.to_string(), format!("00-{}-{}-01", "ab".repeat(16), "cd".repeat(8)));
/// assert!("00-00000000000000000000000000000000-cdcdcdcdcdcdcdcd-01".parse::<TraceParent>().is_err());
/// assert!("00-ABABABABABABABABABABABABABABABAB-cdcdcdcdcdcdcdcd-01".parse::<TraceParent>().is_err());
/// # Ok::<(), mq_proto::trace::TraceContextError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// The `sampled` trace flag (W3C §3.2.2.5).
    pub const FLAG_SAMPLED: u8 = 0x01;

    /// A `traceparent` from its parts.
    ///
    /// # Errors
    ///
    /// [`TraceContextError::InvalidTraceParent`] when the trace id or the parent id is all
    /// zeros (W3C: not a valid id).
    pub fn new(
        trace_id: [u8; 16],
        parent_id: [u8; 8],
        flags: u8,
    ) -> Result<Self, TraceContextError> {
        if trace_id == [0; 16] {
            return Err(invalid_parent("", "trace id is all zeros"));
        }
        if parent_id == [0; 8] {
            return Err(invalid_parent("", "parent id is all zeros"));
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id (16 bytes).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the span the message was published from (8 bytes).
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & Self::FLAG_SAMPLED != 0
    }
}

impl FromStr for TraceParent {
    type Err = TraceContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < TRACEPARENT_LEN || !s.is_ascii() {
            return Err(invalid_parent(s, "not 55 ASCII characters"));
        }
        let mut version = [0u8; 1];
        if !decode_hex_lc(&s[..2], &mut version) {
            return Err(invalid_parent(
                s,
                "version is not two lower-case hex digits",
            ));
        }
        match version[0] {
            0xff => return Err(invalid_parent(s, "version ff is invalid")),
            0x00 if s.len() != TRACEPARENT_LEN => {
                return Err(invalid_parent(s, "version 00 is exactly 55 characters"));
            }
            _ if s.len() > TRACEPARENT_LEN && s.as_bytes()[TRACEPARENT_LEN] != b'-' => {
                return Err(invalid_parent(
                    s,
                    "no '-' after the flags of a later version",
                ));
            }
            _ => {}
        }
        let bytes = s.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(invalid_parent(s, "fields not separated by '-'"));
        }
        let (mut trace_id, mut parent_id, mut flags) = ([0u8; 16], [0u8; 8], [0u8; 1]);
        if !decode_hex_lc(&s[3..35], &mut trace_id) {
            return Err(invalid_parent(
                s,
                "trace id is not 32 lower-case hex digits",
            ));
        }
        if !decode_hex_lc(&s[36..52], &mut parent_id) {
            return Err(invalid_parent(
                s,
                "parent id is not 16 lower-case hex digits",
            ));
        }
        if !decode_hex_lc(&s[53..55], &mut flags) {
            return Err(invalid_parent(s, "flags are not two lower-case hex digits"));
        }
        Self::new(trace_id, parent_id, flags[0]).map_err(|e| match e {
            TraceContextError::InvalidTraceParent { reason, .. } => invalid_parent(s, reason),
            other => other,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id)?;
        f.write_str("-")?;
        write_hex(f, &self.parent_id)?;
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// Whether `key` is a `tracestate` key (W3C §3.3.1.3.1): `simple-key` =
/// `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or `multi-tenant-key` =
/// `tenant-id "@" system-id`, tenant `(lcalpha / DIGIT) 0*240(…)`, system `lcalpha 0*13(…)`.
fn valid_key(key: &str) -> bool {
    fn rest_ok(s: &str, max: usize) -> bool {
        s.len() <= max
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/')
            })
    }
    match key.split_once('@') {
        None => {
            let b = key.as_bytes();
            !b.is_empty() && b[0].is_ascii_lowercase() && rest_ok(&key[1..], 255)
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && rest_ok(&tenant[1..], 240)
                && !s.is_empty()
                && s[0].is_ascii_lowercase()
                && rest_ok(&system[1..], 13)
        }
    }
}

/// Whether `value` is a `tracestate` value (W3C §3.3.1.3.2): 1 to 256 printable ASCII
/// characters but `,` and `=`, the last one not a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// A W3C `tracestate`: up to 32 vendor `key=value` members, in order (W3C §3.3), no key twice.
///
/// Parsed by [`FromStr`] (empty members and optional white space around members are allowed,
/// as in the header) and written by [`Display`](fmt::Display) as `k=v,k=v`.
///
/// ```
/// use mq_proto::trace::TraceState;
/// let s: TraceState = " rojo=00f067aa0ba902b7 , , congo@t61=x ".parse()?;
/// assert_eq!(s.to_string(), "rojo=00f067aa0ba902b7,congo@t61=x");
/// assert!("Upper=x".parse::<TraceState>().is_err());
/// assert!("a=1,a=2".parse::<TraceState>().is_err());
/// # Ok::<(), mq_proto::trace::TraceContextError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState(Vec<(String, String)>);

impl TraceState {
    /// An empty trace state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A trace state of these members, in order.
    ///
    /// # Errors
    ///
    /// [`TraceContextError::InvalidTraceState`] for a key or value outside the W3C grammar,
    /// a key given twice, or more than [`MAX_TRACESTATE_MEMBERS`] members.
    pub fn from_members<K, V>(
        members: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, TraceContextError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut list: Vec<(String, String)> = Vec::new();
        for (k, v) in members {
            let (k, v) = (k.into(), v.into());
            if !valid_key(&k) {
                return Err(invalid_state(format!("invalid key {k:?}")));
            }
            if !valid_value(&v) {
                return Err(invalid_state(format!("invalid value of {k:?}")));
            }
            if list.iter().any(|(seen, _)| *seen == k) {
                return Err(invalid_state(format!("key {k:?} given twice")));
            }
            if list.len() == MAX_TRACESTATE_MEMBERS {
                return Err(invalid_state(format!(
                    "more than {MAX_TRACESTATE_MEMBERS} members"
                )));
            }
            list.push((k, v));
        }
        Ok(Self(list))
    }

    /// The value of a member.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The members, in order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The property value: the header form with `%` and the characters properties cannot carry
    /// percent-encoded (see the [module docs](self)).
    pub fn to_property_value(&self) -> String {
        utf8_percent_encode(&self.to_string(), TRACESTATE_ENCODE).to_string()
    }

    /// Reads a property value written by [`to_property_value`](Self::to_property_value).
    ///
    /// # Errors
    ///
    /// [`TraceContextError::InvalidTraceState`] when the decoded text is not a valid
    /// `tracestate` (as [`FromStr`]).
    pub fn from_property_value(value: &str) -> Result<Self, TraceContextError> {
        let decoded = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| invalid_state("percent-decoded value is not UTF-8"))?;
        decoded.parse()
    }
}

impl FromStr for TraceState {
    type Err = TraceContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let members = s
            .split(',')
            .map(|m| m.trim_matches([' ', '\t']))
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.split_once('=')
                    .ok_or_else(|| invalid_state(format!("member {m:?} has no '='")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_members(members)
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceState({:?})", self.to_string())
    }
}

/// The trace context a message carries: its [`TraceParent`] and [`TraceState`].
///
/// ```
/// use mq_proto::trace::{TraceContext, TraceParent, TraceState};
/// use mq_proto::Properties;
///
/// let ctx = TraceContext::new(TraceParent::new([1; 16], [2; 8], 1)?, TraceState::new());
/// let mut props = Properties::new();
/// ctx.insert_into(&mut props);
/// assert_eq!(props.encode(), format!("traceparent:00-{}-{}-01|", "01".repeat(16), "02".repeat(8)));
/// assert_eq!(TraceContext::from_properties(&props)?, Some(ctx));
/// # Ok::<(), mq_proto::trace::TraceContextError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    parent: TraceParent,
    state: TraceState,
}

impl TraceContext {
    /// A context of a parent and a (possibly empty) trace state.
    pub fn new(parent: TraceParent, state: TraceState) -> Self {
        Self { parent, state }
    }

    /// The `traceparent`.
    pub fn parent(&self) -> &TraceParent {
        &self.parent
    }

    /// The `tracestate` (empty when the message carried none, or an invalid one).
    pub fn state(&self) -> &TraceState {
        &self.state
    }

    /// Writes [`KEY_TRACEPARENT`] and, when the state is not empty, [`KEY_TRACESTATE`] into
    /// `properties`, replacing (or, for an empty state, removing) earlier values.
    pub fn insert_into(&self, properties: &mut Properties) {
        // Both values consist of characters the properties wire form carries (lower-case
        // hex and '-'; the percent-encoded state), so the inserts cannot be refused; the
        // results are ignored rather than unwrapped to stay panic-free.
        let _ = properties.insert(KEY_TRACEPARENT, self.parent.to_string());
        if self.state.is_empty() {
            properties.remove(KEY_TRACESTATE);
        } else {
            let _ = properties.insert(KEY_TRACESTATE, self.state.to_property_value());
        }
    }

    /// Reads the context from message properties: `None` without a [`KEY_TRACEPARENT`]
    /// (a `tracestate` alone is ignored, W3C §3.3). An invalid `tracestate` is dropped and the
    /// context kept with an empty state (W3C §3.3.1.1 lets a receiver discard it; the
    /// `traceparent` alone still links the traces).
    ///
    /// # Errors
    ///
    /// [`TraceContextError::InvalidTraceParent`] when the `traceparent` property is not a
    /// valid W3C `traceparent`.
    pub fn from_properties(properties: &Properties) -> Result<Option<Self>, TraceContextError> {
        let Some(parent) = properties.get(KEY_TRACEPARENT) else {
            return Ok(None);
        };
        let parent = parent.parse()?;
        let state = properties
            .get(KEY_TRACESTATE)
            .and_then(|v| TraceState::from_property_value(v).ok())
            .unwrap_or_default();
        Ok(Some(Self { parent, state }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::validate_pair;
    use proptest::prelude::*;

    fn parent() -> impl Strategy<Value = TraceParent> {
        (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>())
            .prop_filter_map("non-zero ids", |(t, p, f)| TraceParent::new(t, p, f).ok())
    }

    fn member() -> impl Strategy<Value = (String, String)> {
        (
            "[a-z][a-z0-9_*/-]{0,20}(@[a-z][a-z0-9_*/-]{0,13})?",
            // Printable ASCII but ',' and '=', the last not a space: every character the
            // property form must encode is in this range.
            "[ -+\\--<>-~]{0,30}[!-+\\--<>-~]",
        )
    }

    fn state() -> impl Strategy<Value = TraceState> {
        proptest::collection::vec(member(), 0..=MAX_TRACESTATE_MEMBERS).prop_map(|m| {
            let mut seen = std::collections::HashSet::new();
            let unique = m.into_iter().filter(|(k, _)| seen.insert(k.clone()));
            TraceState::from_members(unique).expect("generated members are valid")
        })
    }

    proptest! {
        #[test]
        fn traceparent_round_trips(p in parent()) {
            let text = p.to_string();
            prop_assert_eq!(text.len(), TRACEPARENT_LEN);
            prop_assert_eq!(text.parse::<TraceParent>(), Ok(p));
        }

        /// Changing any one character of a valid value to something outside its field's
        /// alphabet is refused: upper-case or non-hex digits, another separator.
        #[test]
        fn traceparent_with_one_bad_character_is_refused(
            p in parent(),
            at in 0..TRACEPARENT_LEN,
            bad in "[A-Fg-z_ .:G-Z-]",
        ) {
            let mut text = p.to_string().into_bytes();
            let is_separator = matches!(at, 2 | 35 | 52);
            let bad = bad.as_bytes()[0];
            prop_assume!(if is_separator { bad != b'-' } else { true });
            text[at] = bad;
            let text = String::from_utf8(text).unwrap();
            prop_assert!(text.parse::<TraceParent>().is_err(), "{}", text);
        }

        /// A later version may carry more fields after a '-': read as version 00.
        #[test]
        fn later_versions_are_read_and_written_as_00(
            p in parent(),
            version in 1u8..0xff,
            extra in "(-[a-z0-9]{0,16})?",
        ) {
            let text = format!("{version:02x}{}{extra}", &p.to_string()[2..]);
            prop_assert_eq!(text.parse::<TraceParent>(), Ok(p));
        }

        #[test]
        fn tracestate_round_trips_through_header_and_property(s in state()) {
            prop_assert_eq!(s.to_string().parse::<TraceState>(), Ok(s.clone()));
            let value = s.to_property_value();
            if !s.is_empty() {
                prop_assert_eq!(validate_pair(KEY_TRACESTATE, &value), Ok(()));
            }
            prop_assert_eq!(TraceState::from_property_value(&value), Ok(s));
        }

        #[test]
        fn context_round_trips_through_properties(p in parent(), s in state()) {
            let ctx = TraceContext::new(p, s);
            let mut props = Properties::new();
            ctx.insert_into(&mut props);
            let wire = Properties::decode(&props.encode()).unwrap();
            prop_assert_eq!(TraceContext::from_properties(&wire), Ok(Some(ctx)));
        }
    }

    #[test]
    fn traceparent_version_and_length_rules() {
        let ok = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(ok.parse::<TraceParent>().is_ok());
        for bad in [
            // version ff is invalid, whatever follows
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            // version 00 has no extra fields
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-00",
            // a later version's extra fields follow a '-'
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            // too short
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            // zero ids
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            // non-ASCII of the right byte length
            "00-0af7651916cd43dd8448eb211c8031é-b7ad6b7169203331-01",
            "",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad}");
        }
        let flags = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
            .parse::<TraceParent>()
            .unwrap();
        assert!(!flags.is_sampled());
    }

    #[test]
    fn tracestate_grammar() {
        for bad in [
            "a",                   // no '='
            "A=1",                 // upper-case key
            "1a=1",                // simple key starts with a letter
            "a=",                  // empty value
            "a=x=y",               // '=' in a value
            "a@=1",                // empty system id
            "a@1b=1",              // system id starts with a letter
            "a@bcdefghijklmnop=1", // system id over 14 characters
            "a=é",                 // non-ASCII value
        ] {
            assert!(bad.parse::<TraceState>().is_err(), "{bad}");
        }
        let many = (0..=MAX_TRACESTATE_MEMBERS)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(many.parse::<TraceState>().is_err());
        // Around members, spaces are optional white space; inside a value, not last.
        assert!(TraceState::from_members([("a", "x ")]).is_err());
        assert_eq!(
            "a=x y ".parse::<TraceState>().unwrap().get("a"),
            Some("x y")
        );
        assert!("1a@b=1,a b=1".parse::<TraceState>().is_err());
        assert_eq!(
            "1a@b=1".parse::<TraceState>().unwrap().get("1a@b"),
            Some("1")
        );
    }

    #[test]
    fn invalid_properties_are_refused_or_dropped() {
        let props = Properties::decode(
            "traceparent:00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01|tracestate:A%3D1|",
        )
        .unwrap();
        let ctx = TraceContext::from_properties(&props).unwrap().unwrap();
        assert!(ctx.state().is_empty(), "an invalid tracestate is dropped");
        let bad = Properties::decode(
            "traceparent:00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01|",
        )
        .unwrap();
        assert!(matches!(
            TraceContext::from_properties(&bad),
            Err(TraceContextError::InvalidTraceParent { .. })
        ));
        let state_only = Properties::decode("tracestate:a%3D1|").unwrap();
        assert_eq!(TraceContext::from_properties(&state_only), Ok(None));
    }
}
