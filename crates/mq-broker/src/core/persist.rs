//! Serde forms of the protocol types the core stores, for snapshots of its state
//! ([`crate::durable`]). `mq_proto`'s types carry no serde support, so each field of such a
//! type names one of these modules with `#[serde(with = "…")]`. Every value is written in
//! its text form and checked again when read: a damaged snapshot gives a typed error, never
//! an invalid id, tag or name inside the core. The core's maps keyed by instance and name
//! (topics, created groups) use `by_instance_name`; the one of a topic's groups sits beside
//! its owner (`group::serde_by_id`). This module imports nothing from the core, so the
//! core's modules form no import cycle.

use mq_proto::{InvalidValue, Tag};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;

/// A stored value this build refuses (a name with a character an earlier version took).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    /// What the value is: `topic name`, `group id`, `instance id`, `message id`, `tag`,
    /// `properties`.
    pub(crate) what: &'static str,
    /// The stored text, for the names (the rest are not worth a copy on every read).
    pub(crate) value: Option<String>,
    /// Why this build refuses it.
    pub(crate) reason: String,
}

thread_local! {
    /// The last [`Refused`] value of this thread: postcard's error drops serde's custom
    /// message, so whoever decodes a snapshot takes the reason from here.
    static REFUSED: RefCell<Option<Refused>> = const { RefCell::new(None) };
}

/// The serde error for a stored value refused by `error`, remembered for [`take_refused`].
pub(crate) fn refuse<E: serde::de::Error>(value: Option<String>, error: InvalidValue) -> E {
    refuse_as(error.what, value, error.reason)
}

/// [`refuse`] with the parts given apart.
fn refuse_as<E: serde::de::Error>(what: &'static str, value: Option<String>, reason: String) -> E {
    let e = match &value {
        Some(v) => E::custom(format_args!("{what} {v:?}: {reason}")),
        None => E::custom(format_args!("{what}: {reason}")),
    };
    REFUSED.with(|r| {
        *r.borrow_mut() = Some(Refused {
            what,
            value,
            reason,
        });
    });
    e
}

/// The value refused last on this thread, if any since the previous call (which it clears).
pub(crate) fn take_refused() -> Option<Refused> {
    REFUSED.with(|r| r.borrow_mut().take())
}

/// [`mq_proto::MessageId`] as its text.
pub(crate) mod message_id {
    use super::*;
    use mq_proto::MessageId;

    pub(crate) fn serialize<S: Serializer>(id: &MessageId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MessageId, D::Error> {
        MessageId::new(String::deserialize(d)?).map_err(|e| refuse(None, e))
    }
}

/// `Option<Tag>` read from optional text (written as `Option<&str>`).
pub(crate) mod opt_tag {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tag>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| Tag::new(t).map_err(|e| refuse(None, e)))
            .transpose()
    }
}

/// [`mq_proto::Properties`] read from its wire form (`k:v|k:v|`; written as that text).
pub(crate) mod properties {
    use super::*;
    use mq_proto::Properties;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
        Properties::decode(&String::deserialize(d)?)
            .map_err(|e| refuse_as("properties", None, e.to_string()))
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
            .map(|n| TopicName::new(n.as_str()).map_err(|e| refuse(Some(n), e)))
            .collect()
    }
}

/// A name the core keys its maps by, with its instance: [`mq_proto::TopicName`] or
/// [`mq_proto::GroupId`].
pub(crate) trait Name: Sized + Ord {
    fn text(&self) -> &str;
    fn parse(text: String) -> Result<Self, InvalidValue>;
}

impl Name for mq_proto::TopicName {
    fn text(&self) -> &str {
        self.as_str()
    }
    fn parse(text: String) -> Result<Self, InvalidValue> {
        Self::new(text)
    }
}

impl Name for mq_proto::GroupId {
    fn text(&self) -> &str {
        self.as_str()
    }
    fn parse(text: String) -> Result<Self, InvalidValue> {
        Self::new(text)
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
                    .map(|i| InstanceId::new(i.as_str()).map_err(|e| refuse(Some(i), e)))
                    .transpose()?;
                let name = K::parse(name.clone()).map_err(|e| refuse(Some(name), e))?;
                Ok(((instance, name), value))
            })
            .collect()
    }
}
