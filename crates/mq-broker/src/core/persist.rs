//! Serde forms of the protocol types the core stores, for snapshots of its state
//! ([`crate::durable`]). `mq_proto`'s types carry no serde support, so each field of such a
//! type names one of these modules with `#[serde(with = "…")]`. Every value is written in
//! its text form and checked again when read: a damaged snapshot gives a typed error, never
//! an invalid id, tag or name inside the core.

use std::collections::BTreeMap;

use mq_proto::{GroupId, InstanceId, Tag, TopicName};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TopicKey;
use super::group::Group;
use super::topic::Topic;

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

/// A topic's groups as a sequence of `(group id, group)`.
pub(crate) mod groups {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        groups: &BTreeMap<GroupId, Group>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(groups.iter().map(|(id, g)| (id.as_str(), g)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<GroupId, Group>, D::Error> {
        Vec::<(String, Group)>::deserialize(d)?
            .into_iter()
            .map(|(id, g)| Ok((GroupId::new(id).map_err(D::Error::custom)?, g)))
            .collect()
    }
}

/// The core's topics as a sequence of `(instance, topic, state)`.
pub(crate) mod topics {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        topics: &BTreeMap<TopicKey, Topic>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            topics
                .iter()
                .map(|((i, t), topic)| (i.as_ref().map(InstanceId::as_str), t.as_str(), topic)),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<TopicKey, Topic>, D::Error> {
        Vec::<(Option<String>, String, Topic)>::deserialize(d)?
            .into_iter()
            .map(|(instance, name, topic)| {
                let instance = instance
                    .map(|i| InstanceId::new(i).map_err(D::Error::custom))
                    .transpose()?;
                let name = TopicName::new(name).map_err(D::Error::custom)?;
                Ok(((instance, name), topic))
            })
            .collect()
    }
}
