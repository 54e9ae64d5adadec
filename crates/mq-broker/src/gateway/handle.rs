//! The gateway's receipt handles: opaque to clients, authenticated, and self-contained, so
//! any gateway process that shares the key can settle a handle another one issued, and the
//! gateway keeps no state that a restart would lose.
//!
//! Text form: `{MessageId}-{token}`, where `token` is unpadded standard base64 (no `-` in it) of
//! `payload ‖ tag`. `payload` = format version (1 byte), kind (1 byte: 0 delivery,
//! 1 transaction), the end of its validity (big-endian `u64` epoch ms, 0 = the engine
//! decides), then five fields, each a big-endian `u16` length and its UTF-8 bytes: instance
//! (empty = default), topic, owner (a delivery's consumer group; a transaction's producer
//! client id), the engine's message id, and
//! the engine's receipt handle (delivery) or transaction id (transaction). `tag` = the
//! first [`TAG_LEN`] bytes of HMAC-SHA1(key, payload). The leading message id is for people
//! reading logs; the one inside the payload is the one used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::config::HandleKey;

type HmacSha1 = Hmac<Sha1>;

/// Bytes of the MAC kept in a handle (128 bits).
pub(crate) const TAG_LEN: usize = 16;
const VERSION: u8 = 1;

/// What a handle settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A delivery to a consumer group: acked with the engine's receipt handle.
    Delivery,
    /// A transactional publish: committed or rolled back with the engine's transaction id.
    Transaction,
}

/// The content of a gateway receipt handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Handle {
    pub(crate) kind: Kind,
    /// The instance (`ns`), empty for the default one.
    pub(crate) instance: String,
    pub(crate) topic: String,
    /// Who settles it at the engine: the consumer group of a delivery; the client id that
    /// sent a transactional message (the engine's proxy ends a transaction only for the
    /// client id that sent it, so another gateway process settles it under that id).
    pub(crate) owner: String,
    /// The engine's message id.
    pub(crate) message_id: String,
    /// The engine's receipt handle (delivery) or transaction id (publish).
    pub(crate) engine_token: String,
    /// Epoch ms after which the gateway refuses the handle; 0 = no limit of its own. A
    /// transactional publish's handle is valid during the check immunity only (PROTOCOL
    /// §6.6); afterwards the transaction is decided through a check.
    pub(crate) valid_until_ms: u64,
}

fn mac(key: &HandleKey, payload: &[u8]) -> HmacSha1 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(key.bytes())
        .unwrap_or_else(|_| <HmacSha1 as hmac::digest::KeyInit>::new(&Default::default()));
    mac.update(payload);
    mac
}

impl Handle {
    fn payload(&self) -> Option<Vec<u8>> {
        let fields = [
            &self.instance,
            &self.topic,
            &self.owner,
            &self.message_id,
            &self.engine_token,
        ];
        let mut out = Vec::with_capacity(2 + fields.iter().map(|f| 2 + f.len()).sum::<usize>());
        out.push(VERSION);
        out.push(match self.kind {
            Kind::Delivery => 0,
            Kind::Transaction => 1,
        });
        out.extend_from_slice(&self.valid_until_ms.to_be_bytes());
        for field in fields {
            let len = u16::try_from(field.len()).ok()?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        Some(out)
    }

    /// The handle's text, or `None` when a field is longer than 65 535 bytes.
    pub(crate) fn seal(&self, key: &HandleKey) -> Option<String> {
        let mut bytes = self.payload()?;
        let tag = mac(key, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        // The readable prefix is the message id when it is a plain token (engine ids are hex).
        let id = &self.message_id;
        let prefix =
            if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                id.as_str()
            } else {
                "M"
            };
        Some(format!("{prefix}-{}", BASE64.encode(bytes)))
    }

    /// Reads a handle this gateway (or one sharing its key) issued; `None` for any other
    /// text: malformed, forged, altered, or sealed with another key.
    pub(crate) fn open(text: &str, key: &HandleKey) -> Option<Self> {
        let (_, token) = text.rsplit_once('-')?;
        let bytes = BASE64.decode(token).ok()?;
        let split = bytes.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = bytes.split_at(split);
        mac(key, payload).verify_truncated_left(tag).ok()?;
        let mut rest = payload;
        let mut take = |n: usize| -> Option<&[u8]> {
            if rest.len() < n {
                return None;
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Some(head)
        };
        if take(1)? != [VERSION] {
            return None;
        }
        let kind = match take(1)? {
            [0] => Kind::Delivery,
            [1] => Kind::Transaction,
            _ => return None,
        };
        let valid_until_ms = u64::from_be_bytes(take(8)?.try_into().ok()?);
        let mut field = || -> Option<String> {
            let len = take(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            String::from_utf8(take(len)?.to_vec()).ok()
        };
        let handle = Self {
            kind,
            instance: field()?,
            topic: field()?,
            owner: field()?,
            message_id: field()?,
            engine_token: field()?,
            valid_until_ms,
        };
        rest.is_empty().then_some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A key of 32 distinct bytes starting at `byte`.
    fn key(byte: u8) -> HandleKey {
        HandleKey::from_bytes((0..32).map(|i| byte.wrapping_add(i)).collect()).unwrap()
    }

    fn sample() -> Handle {
        Handle {
            kind: Kind::Delivery,
            instance: "MQ_INST_1".into(),
            topic: "orders".into(),
            owner: "GID_billing".into(),
            message_id: "7F00000100002A9F0000000000000000".into(),
            engine_token: "checkpoint 1 2 3 broker-a 0 17".into(),
            valid_until_ms: 1_796_000_000_000,
        }
    }

    #[test]
    fn a_sealed_handle_opens_with_its_key_only() {
        let h = sample();
        let text = h.seal(&key(1)).unwrap();
        assert!(
            text.starts_with("7F00000100002A9F0000000000000000-"),
            "{text}"
        );
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-+/".contains(&b)),
            "{text}"
        );
        assert_eq!(Handle::open(&text, &key(1)), Some(h));
        assert_eq!(Handle::open(&text, &key(2)), None);
    }

    #[test]
    fn the_leading_message_id_is_not_trusted() {
        let text = sample().seal(&key(1)).unwrap();
        let (_, token) = text.rsplit_once('-').unwrap();
        let relabelled = format!("FFFF-{token}");
        assert_eq!(Handle::open(&relabelled, &key(1)).unwrap(), sample());
    }

    #[test]
    fn garbage_and_truncations_are_refused() {
        let text = sample().seal(&key(1)).unwrap();
        for cut in 0..text.len() {
            assert_eq!(Handle::open(&text[..cut], &key(1)), None, "cut at {cut}");
        }
        for junk in [
            "",
            "-",
            "abc",
            "A-B",
            "x-!!!!",
            "1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(Handle::open(junk, &key(1)), None, "{junk}");
        }
    }

    proptest! {
        #[test]
        fn any_altered_byte_is_refused(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let text = sample().seal(&key(7)).unwrap();
            let (id, token) = text.rsplit_once('-').unwrap();
            let mut bytes = BASE64.decode(token).unwrap();
            let i = pos.index(bytes.len());
            bytes[i] ^= flip;
            let altered = format!("{id}-{}", BASE64.encode(bytes));
            prop_assert_eq!(Handle::open(&altered, &key(7)), None);
        }

        #[test]
        fn any_handle_round_trips(
            kind in prop_oneof![Just(Kind::Delivery), Just(Kind::Transaction)],
            fields in prop::array::uniform5(".{0,40}"),
            valid_until_ms in any::<u64>(),
        ) {
            let [instance, topic, owner, message_id, engine_token] = fields;
            let h = Handle { kind, instance, topic, owner, message_id, engine_token, valid_until_ms };
            let text = h.seal(&key(3)).unwrap();
            prop_assert_eq!(Handle::open(&text, &key(3)), Some(h));
        }
    }
}
