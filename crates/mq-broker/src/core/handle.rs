//! Message ids and receipt handles.
//!
//! A message id is 32 upper-case hex characters: 16 derived from the configured seed, then
//! 16 holding the core-wide message sequence number. A receipt handle is
//! `{MessageId}-{base64 token}` where the token packs, big-endian, a version byte, the scope
//! (which group or half-message pool issued it), the message sequence number, the delivery
//! attempt (1 = first delivery; 0 = the publish handle of a transactional message) and the
//! expiry. The handle therefore only uses `[0-9A-F]`, `-` and the standard base64 alphabet
//! `[A-Za-z0-9+/=]`, is unique per delivery, and leads straight to the delivery it names.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mq_proto::{MessageId, ReceiptHandle};

use super::config::CoreError;

/// Version byte at the start of every token.
const TOKEN_VERSION: u8 = 1;
/// Characters of a message id.
const ID_LEN: usize = 32;
/// Longest handle text worth decoding (ours are 73 bytes).
const MAX_HANDLE_LEN: usize = 128;
/// Bytes of a token: version, scope, sequence number, attempt, expiry.
const TOKEN_LEN: usize = 1 + 8 + 8 + 4 + 8;
/// Characters of a token in padded base64.
const TOKEN_TEXT_LEN: usize = TOKEN_LEN.div_ceil(3) * 4;

/// The id prefix derived from a seed (SplitMix64 finalizer: well spread, deterministic).
pub(crate) fn id_prefix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The message id of sequence number `seq`: the id prefix, then the sequence number, in
/// hexadecimal.
pub(crate) fn message_id(prefix: u64, seq: u64) -> MessageId {
    MessageId::from_halves(prefix, seq)
}

/// The sequence number in a message id issued by a core with this id prefix; `None` for
/// any other text.
pub(crate) fn message_seq(id: &str, prefix: u64) -> Option<u64> {
    MessageId::halves(id)
        .filter(|&(high, _)| high == prefix)
        .map(|(_, seq)| seq)
}

/// The decoded content of a receipt handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// The group or half pool that issued the handle.
    pub(crate) scope: u64,
    /// Message sequence number.
    pub(crate) seq: u64,
    /// Delivery attempt (consumed times at delivery; 0 for a publish handle).
    pub(crate) attempt: u32,
    /// Epoch ms from which the handle is no longer valid.
    pub(crate) expiry: u64,
}

/// A receipt handle's text as this core issues it, inline (`{MessageId}-{base64 token}`,
/// 73 bytes): a delivery carries it without an allocation, a reference count or a check of
/// its characters, and it is built from the token alone, so the core's lock need not be
/// held for it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandleText([u8; HANDLE_LEN]);

/// Bytes of a handle this core issues.
const HANDLE_LEN: usize = ID_LEN + 1 + TOKEN_TEXT_LEN;

impl HandleText {
    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII: an id's hex digits, `-` and base64 (`Token::render`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text for a consume response: plain (one vectorised check), so written as it
    /// is, without `as_str`'s UTF-8 check or the writer's escape scan.
    pub(crate) fn view(&self) -> mq_proto::TextView<'_> {
        // Always ASCII (see `as_str`): never the empty default.
        mq_proto::TextView::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text as a [`ReceiptHandle`] of its own (one allocation, with its count of
    /// clones: `Bytes::from_owner`).
    ///
    /// # Errors
    ///
    /// An internal error if `mq_proto` refuses the text (it never does: see `as_str`).
    pub(crate) fn to_receipt_handle(self) -> Result<ReceiptHandle, CoreError> {
        ReceiptHandle::from_bytes(bytes::Bytes::from_owner(self.0))
            .map_err(|e| CoreError::internal(format!("generated receipt handle rejected: {e}")))
    }
}

impl std::fmt::Debug for HandleText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Token {
    /// The handle text for this token; `id` is the id of message `seq` (its stored
    /// content's, [`message_id`] of the core's prefix and `seq`).
    ///
    /// # Errors
    ///
    /// An internal error for an id of another length than the 32 digits every id this core
    /// issues has ([`decode`](Self::decode) reads the id as the first 32 bytes).
    pub(crate) fn render(&self, id: &MessageId) -> Result<HandleText, CoreError> {
        let id = id.as_str().as_bytes();
        if id.len() != ID_LEN {
            return Err(CoreError::internal(format!(
                "receipt handle for a message id of {} bytes",
                id.len()
            )));
        }
        let token = self
            .text()
            .ok_or_else(|| CoreError::internal("receipt handle token of an unexpected length"))?;
        let mut text = [0u8; HANDLE_LEN];
        text[..ID_LEN].copy_from_slice(id);
        text[ID_LEN] = b'-';
        text[ID_LEN + 1..].copy_from_slice(&token);
        Ok(HandleText(text))
    }

    /// [`render`](Self::render) as a [`ReceiptHandle`] of its own (one allocation, with
    /// its count of clones: `Bytes::from_owner`): for a handle kept or answered apart from
    /// a delivery (a transactional publish's, a trace's).
    ///
    /// # Errors
    ///
    /// As [`render`](Self::render).
    pub(crate) fn encode(&self, id: &MessageId) -> Result<ReceiptHandle, CoreError> {
        self.render(id)?.to_receipt_handle()
    }

    /// The token of `text` if it is a handle of message `seq` whose id is `id` (as
    /// [`decode`](Self::decode), with the id given instead of the core's prefix).
    pub(crate) fn decode_for(text: &str, id: &str, seq: u64) -> Option<Self> {
        let token = Self::decode_token(text)?;
        (text.get(..ID_LEN) == Some(id) && token.seq == seq).then_some(token)
    }

    /// Decodes a handle issued by a core with this id prefix; `None` for anything else.
    pub(crate) fn decode(text: &str, prefix: u64) -> Option<Self> {
        Self::decode_expecting(text, prefix, |_| None)
    }

    /// [`decode`](Self::decode), told the token the handle most likely holds: `expected`
    /// gives, for the message sequence number in the handle's id, the token of that
    /// message's current delivery (`None` if there is none). When the text is that token's
    /// rendering the token is returned without decoding — the usual ack names the current
    /// delivery — and the text is decoded otherwise. The answer is `decode`'s either way:
    /// a token has one text ([`render`](Self::render); padded base64 decodes canonical
    /// text only), and that text decodes to it.
    pub(crate) fn decode_expecting(
        text: &str,
        prefix: u64,
        expected: impl FnOnce(u64) -> Option<Self>,
    ) -> Option<Self> {
        let seq = message_seq(text.get(..ID_LEN)?, prefix)?;
        if let Some(token) = expected(seq).filter(|t| t.seq == seq && t.is_token_of(text)) {
            return Some(token);
        }
        Self::decode_token(text).filter(|token| token.seq == seq)
    }

    /// Whether the token part of `text` (after its 32-byte id and `-`) is this token as
    /// [`render`](Self::render) writes it: an encoding and a comparison, no decoding.
    fn is_token_of(&self, text: &str) -> bool {
        text.len() == HANDLE_LEN
            && text.as_bytes()[ID_LEN] == b'-'
            && self
                .text()
                .is_some_and(|token| text.as_bytes()[ID_LEN + 1..] == token)
    }

    /// The token's text: the padded base64 of its bytes, `TOKEN_TEXT_LEN` characters (the
    /// rest of a handle after its id and `-`); `None` if the encoder wrote another length
    /// (it never does).
    fn text(&self) -> Option<[u8; TOKEN_TEXT_LEN]> {
        let mut text = [0u8; TOKEN_TEXT_LEN];
        (STANDARD.encode_slice(self.raw(), &mut text) == Ok(TOKEN_TEXT_LEN)).then_some(text)
    }

    /// The token's bytes: version, scope, sequence number, attempt, expiry, big-endian.
    fn raw(&self) -> [u8; TOKEN_LEN] {
        let mut raw = [0u8; TOKEN_LEN];
        raw[0] = TOKEN_VERSION;
        raw[1..9].copy_from_slice(&self.scope.to_be_bytes());
        raw[9..17].copy_from_slice(&self.seq.to_be_bytes());
        raw[17..21].copy_from_slice(&self.attempt.to_be_bytes());
        raw[21..].copy_from_slice(&self.expiry.to_be_bytes());
        raw
    }

    /// The token of a handle's text, its id not checked beyond its place (the first 32
    /// bytes, then `-`); `None` for text of another form.
    fn decode_token(text: &str) -> Option<Self> {
        if text.len() > MAX_HANDLE_LEN {
            return None;
        }
        // The id is the first 32 bytes (`message_seq` refuses any other length): no search.
        if text.as_bytes().get(ID_LEN) != Some(&b'-') {
            return None;
        }
        let token = text.get(ID_LEN + 1..)?;
        // Decoded on the stack: at most 3/4 of the text's bytes.
        let mut buf = [0u8; MAX_HANDLE_LEN / 4 * 3];
        let len = STANDARD.decode_slice(token, &mut buf).ok()?;
        let (&version, rest) = buf.get(..len)?.split_first()?;
        if version != TOKEN_VERSION {
            return None;
        }
        let (scope, rest) = rest.split_first_chunk::<8>()?;
        let (seq, rest) = rest.split_first_chunk::<8>()?;
        let (attempt, rest) = rest.split_first_chunk::<4>()?;
        let (expiry, rest) = rest.split_first_chunk::<8>()?;
        if !rest.is_empty() {
            return None;
        }
        Some(Self {
            scope: u64::from_be_bytes(*scope),
            seq: u64::from_be_bytes(*seq),
            attempt: u32::from_be_bytes(*attempt),
            expiry: u64::from_be_bytes(*expiry),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_alphabet() {
        let prefix = id_prefix(42);
        let t = Token {
            scope: 3,
            seq: 0x1234,
            attempt: 7,
            expiry: 1_709_838_898_000,
        };
        let h = t.encode(&message_id(prefix, t.seq)).unwrap();
        assert!(
            h.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
        );
        let id = message_id(prefix, 0x1234);
        assert!(h.as_str().starts_with(&format!("{id}-")));
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(Token::decode(h.as_str(), prefix), Some(t));
        assert_eq!(Token::decode(h.as_str(), id_prefix(43)), None);
    }

    #[test]
    fn rejects_tampering() {
        let prefix = id_prefix(0);
        let t = Token {
            scope: 1,
            seq: 5,
            attempt: 1,
            expiry: 10,
        };
        let h = t
            .encode(&message_id(prefix, t.seq))
            .unwrap()
            .as_str()
            .to_owned();
        // Message id of another sequence number with the same token.
        let other = format!("{}{}", message_id(prefix, 6), &h[32..]);
        assert_eq!(Token::decode(&other, prefix), None);
        assert_eq!(Token::decode(&h[..h.len() - 2], prefix), None);
        assert_eq!(Token::decode(&h.to_lowercase(), prefix), None);
        assert_eq!(Token::decode("", prefix), None);
        assert_eq!(Token::decode("-", prefix), None);
        assert_eq!(Token::decode(&format!("{h}AAAA"), prefix), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            let _ = Token::decode(&s, id_prefix(0));
        }

        #[test]
        fn round_trips(scope: u64, seq: u64, attempt: u32, expiry: u64, seed: u64) {
            let t = Token { scope, seq, attempt, expiry };
            let prefix = id_prefix(seed);
            let h = t.encode(&message_id(prefix, t.seq)).unwrap();
            prop_assert_eq!(Token::decode(h.as_str(), prefix), Some(t));
        }

        /// Told a token, `decode_expecting` answers what decoding answers (`decode`, told
        /// none), whether the text is that token's rendering, another token's, or a
        /// rendering changed at one byte, cut or extended, and whether the token told is
        /// the handle's own or differs from it in one field.
        #[test]
        fn decode_expecting_answers_as_decoding(
            scope in 0u64..3,
            seq in prop_oneof![0u64..3, Just(u64::MAX)],
            attempt in 0u32..3,
            expiry: u64,
            seed in 0u64..2,
            field in 0usize..5,
            change in 0usize..4,
            at in 0usize..80,
            byte in proptest::sample::select(b"AZaz09+/=-_.\xff".to_vec()),
        ) {
            let t = Token { scope, seq, attempt, expiry };
            let prefix = id_prefix(seed);
            let rendered = t.render(&message_id(prefix, seq)).unwrap();
            let mut text = rendered.as_str().as_bytes().to_vec();
            match change {
                0 => {}
                1 => {
                    if let Some(b) = text.get_mut(at) {
                        *b = byte;
                    }
                }
                2 => text.truncate(at),
                _ => text.push(byte),
            }
            let text = String::from_utf8_lossy(&text);
            let mut told = t;
            match field {
                0 => {}
                1 => told.scope ^= 1,
                2 => told.seq ^= 1,
                3 => told.attempt ^= 1,
                _ => told.expiry ^= 1,
            }
            let slow = Token::decode(&text, prefix);
            prop_assert_eq!(Token::decode_expecting(&text, prefix, |_| Some(told)), slow);
            prop_assert_eq!(Token::decode_expecting(&text, prefix, |_| None), slow);
            if change == 0 {
                prop_assert_eq!(slow, Some(t));
            }
        }
    }
}
