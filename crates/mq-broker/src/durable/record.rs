//! Journal records: one per call that reached the core, in the order the core applied them,
//! each with the effective time of the call (the core's clock after it). Replaying them
//! into a core restored from the snapshot they follow rebuilds the exact state (the core is
//! deterministic: see [`crate::core`]).
//!
//! Names are stored as text and messages in their wire form (body, tag, encoded
//! properties), and checked again on replay, so a damaged record is a typed error.

use std::borrow::Cow;

use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, InstanceId, Properties, TopicMessage, TopicName,
    WaitSeconds,
};
use serde::{Deserialize, Serialize};

use super::engine::StorageError;
use crate::core::{BrokerCore, Call};

/// One state-changing call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record<'a> {
    /// A publish the core accepted.
    Publish {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        body: Cow<'a, str>,
        tag: Option<Cow<'a, str>>,
        /// All properties, system keys included, in wire form.
        properties: String,
    },
    /// A consume (whatever it returned: even an empty one may register a group or skip
    /// filtered messages).
    Consume {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        group: Cow<'a, str>,
        kind: u8,
        /// The filter's text form (`*` or `A||B`).
        filter: String,
        batch: u8,
    },
    /// An ack, commit or rollback (whatever its per-handle results).
    Ack {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        group: Option<Cow<'a, str>>,
        kind: u8,
        handles: Vec<Cow<'a, str>>,
    },
    /// A topic declaration.
    Declare {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
    },
    /// Housekeeping.
    Maintain { at: u64 },
    /// A call refused as a whole, whose only effect was to move the core's clock.
    Clock { at: u64 },
    /// A topic purge (admin API). New variants go last: records already on disk keep their
    /// tags.
    Purge {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
    },
    /// A reset of all state (admin API).
    Reset { at: u64 },
}

fn name<'a>(s: &'a str) -> Cow<'a, str> {
    Cow::Borrowed(s)
}

fn instance_name(instance: Option<&InstanceId>) -> Option<Cow<'_, str>> {
    instance.map(|i| name(i.as_str()))
}

fn consume_kind_code(kind: ConsumeKind) -> u8 {
    match kind {
        ConsumeKind::Normal => 0,
        ConsumeKind::Orderly => 1,
        ConsumeKind::Half => 2,
    }
}

fn ack_kind_code(kind: AckKind) -> u8 {
    match kind {
        AckKind::Ack => 0,
        AckKind::Commit => 1,
        AckKind::Rollback => 2,
    }
}

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

impl<'a> Record<'a> {
    /// The record of `call` applied at `at` (borrowing its names and message).
    pub(crate) fn of(at: u64, call: &'a Call) -> Self {
        match call {
            Call::Publish {
                instance,
                topic,
                message,
            } => Self::Publish {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                body: name(message.body()),
                tag: message.tag().map(|t| name(t.as_str())),
                properties: message.all_properties().encode(),
            },
            Call::Consume {
                instance,
                topic,
                group,
                kind,
                filter,
                batch,
                wait: _,
            } => Self::Consume {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                group: name(group.as_str()),
                kind: consume_kind_code(*kind),
                filter: filter.to_string(),
                batch: batch.get(),
            },
            Call::Ack {
                instance,
                topic,
                group,
                kind,
                handles,
            } => Self::Ack {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                group: group.as_ref().map(|g| name(g.as_str())),
                kind: ack_kind_code(*kind),
                handles: handles.iter().map(|h| name(h.as_str())).collect(),
            },
            Call::DeclareTopic { instance, topic } => Self::Declare {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
            },
            Call::Maintain => Self::Maintain { at },
            Call::Purge { instance, topic } => Self::Purge {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
            },
            Call::Reset => Self::Reset { at },
        }
    }

    /// The record's bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StorageError> {
        postcard::to_allocvec(self).map_err(|e| StorageError::Engine(format!("encoding: {e}")))
    }
}

impl Record<'static> {
    /// Reads a record written by [`Record::encode`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        postcard::from_bytes(bytes).map_err(|e| corrupt(format!("undecodable record: {e}")))
    }

    /// The call this record journaled and its time; `None` for a call refused as a whole,
    /// whose only effect was to move the clock. A consume's wait is not journaled (the core
    /// ignores it): it comes back as 0.
    pub(crate) fn into_call(self) -> Result<(u64, Option<Call>), StorageError> {
        Ok(match self {
            Self::Publish {
                at,
                instance,
                topic,
                body,
                tag,
                properties,
            } => {
                let properties = Properties::decode(&properties).map_err(corrupt)?;
                let message =
                    TopicMessage::from_wire(body.into_owned(), tag.as_deref(), properties)
                        .map_err(corrupt)?;
                let call = Call::Publish {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    message,
                };
                (at, Some(call))
            }
            Self::Consume {
                at,
                instance,
                topic,
                group,
                kind,
                filter,
                batch,
            } => {
                let kind = match kind {
                    0 => ConsumeKind::Normal,
                    1 => ConsumeKind::Orderly,
                    2 => ConsumeKind::Half,
                    other => return Err(corrupt(format!("consume kind {other}"))),
                };
                let call = Call::Consume {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    group: GroupId::new(group.into_owned()).map_err(corrupt)?,
                    kind,
                    filter: filter.parse().map_err(corrupt)?,
                    batch: BatchSize::new(batch).map_err(corrupt)?,
                    wait: WaitSeconds::default(),
                };
                (at, Some(call))
            }
            Self::Ack {
                at,
                instance,
                topic,
                group,
                kind,
                handles,
            } => {
                let kind = match kind {
                    0 => AckKind::Ack,
                    1 => AckKind::Commit,
                    2 => AckKind::Rollback,
                    other => return Err(corrupt(format!("ack kind {other}"))),
                };
                let call = Call::Ack {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    group: group
                        .map(|g| GroupId::new(g.into_owned()).map_err(corrupt))
                        .transpose()?,
                    kind,
                    handles: handles.into_iter().map(Cow::into_owned).collect(),
                };
                (at, Some(call))
            }
            Self::Declare {
                at,
                instance,
                topic,
            } => {
                let call = Call::DeclareTopic {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                };
                (at, Some(call))
            }
            Self::Maintain { at } => (at, Some(Call::Maintain)),
            Self::Clock { at } => (at, None),
            Self::Purge {
                at,
                instance,
                topic,
            } => {
                let call = Call::Purge {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                };
                (at, Some(call))
            }
            Self::Reset { at } => (at, Some(Call::Reset)),
        })
    }

    /// Applies the record to `core`, as the original call did. The call's own result is
    /// not needed: the core is deterministic, so it is the one the original call had.
    pub(crate) fn apply(self, core: &mut BrokerCore) -> Result<(), StorageError> {
        match self.into_call()? {
            (at, Some(call)) => {
                let _ = core.apply(at, call);
            }
            (at, None) => core.advance_clock(at),
        }
        Ok(())
    }
}

fn parse_instance(instance: Option<Cow<'_, str>>) -> Result<Option<InstanceId>, StorageError> {
    instance
        .map(|i| InstanceId::new(i.into_owned()).map_err(corrupt))
        .transpose()
}

fn parse_topic(topic: &str) -> Result<TopicName, StorageError> {
    TopicName::new(topic).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mq_proto::{Tag, TransCheckImmunity};

    #[test]
    fn records_round_trip_and_replay_like_the_original_call() {
        let instance = InstanceId::new("MQ_INST_1").unwrap();
        let topic = TopicName::new("T").unwrap();
        let message = TopicMessage::new("body with <xml> & unicode é")
            .unwrap()
            .with_tag(Tag::new("tagA").unwrap())
            .with_key("k1")
            .unwrap()
            .with_property("color", "red")
            .unwrap()
            .with_sharding_key("shard")
            .unwrap()
            .with_start_deliver_time(5_000)
            .with_trans_check_immunity(TransCheckImmunity::new(10).unwrap());
        let call = Call::Publish {
            instance: Some(instance),
            topic,
            message,
        };
        let record = Record::of(1_000, &call);
        let bytes = record.encode().unwrap();
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, record);
        assert_eq!(
            back.clone().into_call().unwrap(),
            (1_000, Some(call.clone()))
        );

        let mut original = BrokerCore::new(crate::core::CoreConfig::default());
        let mut replayed = original.clone();
        original.apply(1_000, call).unwrap();
        back.apply(&mut replayed).unwrap();
        assert_eq!(original, replayed);
    }

    #[test]
    fn damaged_records_are_typed_errors() {
        assert!(matches!(
            Record::decode(&[0xFF, 0x01]),
            Err(StorageError::Corrupt(_))
        ));
        let bad_topic = Record::Declare {
            at: 1,
            instance: None,
            topic: Cow::Borrowed("no spaces allowed here"),
        };
        let mut core = BrokerCore::new(crate::core::CoreConfig::default());
        assert!(matches!(
            bad_topic.apply(&mut core),
            Err(StorageError::Corrupt(_))
        ));
        let bad_kind = Record::Consume {
            at: 1,
            instance: None,
            topic: Cow::Borrowed("T"),
            group: Cow::Borrowed("G"),
            kind: 9,
            filter: "*".into(),
            batch: 1,
        };
        assert!(matches!(
            bad_kind.apply(&mut core),
            Err(StorageError::Corrupt(_))
        ));
    }
}
