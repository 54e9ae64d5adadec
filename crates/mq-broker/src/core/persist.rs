//! Serde forms of the protocol types the core stores, for snapshots of its state
//! ([`crate::durable`]). `mq_proto`'s types carry no serde support, so each field of such a
//! type names one of these modules with `#[serde(with = "…")]`. Every value is written in
//! its text form and checked again when read: a damaged snapshot gives a typed error, never
//! an invalid id, tag or name inside the core. The core's maps keyed by instance and name
//! (topics, created groups) use `by_instance_name`; the one of a topic's groups sits beside
//! its owner (`group::serde_by_id`). This module imports nothing from the core, so the
//! core's modules form no import cycle.

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

/// `Option<Tag>` read from optional text (written as `Option<&str>`).
pub(crate) mod opt_tag {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tag>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| Tag::new(t).map_err(D::Error::custom))
            .transpose()
    }
}

/// [`mq_proto::Properties`] read from its wire form (`k:v|k:v|`; written as that text).
pub(crate) mod properties {
    use super::*;
    use mq_proto::Properties;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
        Properties::decode(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A set of [`mq_proto::TopicName`]s as a sequence of text.
pub(crate) mod topic_names {
    use super::*;
    use mq_proto::TopicName;
    use std::collections::BTreeSet;

    pub(crate) fn serialize<S: Serializer>(
        names: &BTreeSet<TopicName>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(names.iter().map(TopicName::as_str))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeSet<TopicName>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|n| TopicName::new(n).map_err(D::Error::custom))
            .collect()
    }
}

/// A name the core keys its maps by, with its instance: [`mq_proto::TopicName`] or
/// [`mq_proto::GroupId`].
pub(crate) trait Name: Sized + Ord {
    fn text(&self) -> &str;
    fn parse(text: String) -> Result<Self, String>;
}

impl Name for mq_proto::TopicName {
    fn text(&self) -> &str {
        self.as_str()
    }
    fn parse(text: String) -> Result<Self, String> {
        Self::new(text).map_err(|e| e.to_string())
    }
}

impl Name for mq_proto::GroupId {
    fn text(&self) -> &str {
        self.as_str()
    }
    fn parse(text: String) -> Result<Self, String> {
        Self::new(text).map_err(|e| e.to_string())
    }
}

/// A map keyed by `(instance, name)` as a sequence of `(instance, name, value)`: the core's
/// topics and its created groups.
pub(crate) mod by_instance_name {
    use super::*;
    use mq_proto::InstanceId;
    use std::collections::BTreeMap;

    /// A map keyed by instance and name.
    type Map<K, V> = BTreeMap<(Option<InstanceId>, K), V>;

    pub(crate) fn serialize<S: Serializer, K: Name, V: Serialize>(
        map: &Map<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            map.iter()
                .map(|((i, k), v)| (i.as_ref().map(InstanceId::as_str), k.text(), v)),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, K: Name, V: Deserialize<'de>>(
        d: D,
    ) -> Result<Map<K, V>, D::Error> {
        Vec::<(Option<String>, String, V)>::deserialize(d)?
            .into_iter()
            .map(|(instance, name, value)| {
                let instance = instance
                    .map(|i| InstanceId::new(i).map_err(D::Error::custom))
                    .transpose()?;
                let name = K::parse(name).map_err(D::Error::custom)?;
                Ok(((instance, name), value))
            })
            .collect()
    }
}
