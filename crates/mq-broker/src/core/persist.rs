//! Serde forms of the protocol types the core stores, for snapshots of its state
//! ([`crate::durable`]). `mq_proto`'s types carry no serde support, so each field of such a
//! type names one of these modules with `#[serde(with = "…")]`. Every value is written in
//! its text form and checked again when read: a damaged snapshot gives a typed error, never
//! an invalid id, tag or name inside the core. The adapters for the core's own maps sit
//! beside their owners (`group::serde_by_id`, `topic::serde_by_key`); this module imports
//! nothing from the core, so the core's modules form no import cycle.

use mq_proto::Tag;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// [`mq_proto::MessageId`] as its text.
pub(crate) mod message_id {
    use super::*;
    use mq_proto::MessageId;

    pub(crate) fn serialize<S: Serializer>(id: &MessageId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MessageId, D::Error> {
        MessageId::new(String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `Option<Tag>` as optional text.
pub(crate) mod opt_tag {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(tag: &Option<Tag>, s: S) -> Result<S::Ok, S::Error> {
        tag.as_ref().map(Tag::as_str).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tag>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| Tag::new(t).map_err(D::Error::custom))
            .transpose()
    }
}

/// [`mq_proto::Properties`] in its wire form (`k:v|k:v|`).
pub(crate) mod properties {
    use super::*;
    use mq_proto::Properties;

    pub(crate) fn serialize<S: Serializer>(p: &Properties, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.encode())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
        Properties::decode(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}
