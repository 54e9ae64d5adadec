//! Journal records: one per call that reached the core, in the order the core applied them,
//! each with the effective time of the call (the core's clock after it). Replaying them
//! into a core restored from the snapshot they follow rebuilds the exact state (the core is
//! deterministic: see [`crate::core`]).
//!
//! Names are stored as text and messages in their wire form (body, tag, encoded
//! properties), and checked again on replay, so a damaged record is a typed error.

use std::borrow::Cow;
use std::sync::Arc;

use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, InstanceId, Properties, TopicMessage, TopicName,
    WaitSeconds,
};
use serde::{Deserialize, Serialize};

use super::engine::StorageError;
use crate::core::{BrokerCore, Call, DeadLetterAction, GroupSettings, TransactionResolution};

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
        /// The AccessKey id that signed it, for the message's trace (none: the admin token,
        /// or a core driven directly).
        producer: Option<Cow<'a, str>>,
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
    /// A topic created with a message type (admin API).
    CreateTopic {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        /// The type's attribute value (`NORMAL`, `FIFO`, …).
        message_type: Cow<'a, str>,
    },
    /// A topic deleted (admin API).
    DeleteTopic {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
    },
    /// A group created or updated (admin API, `--group`).
    CreateGroup {
        at: u64,
        instance: Option<Cow<'a, str>>,
        group: Cow<'a, str>,
        topics: Vec<Cow<'a, str>>,
        invisibility_ms: Option<u64>,
        max_deliveries: Option<u32>,
    },
    /// A group deleted (admin API).
    DeleteGroup {
        at: u64,
        instance: Option<Cow<'a, str>>,
        group: Cow<'a, str>,
    },
    /// Dead letters resent (`resend`) or deleted (admin API).
    DeadLetters {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        group: Cow<'a, str>,
        message_id: Option<Cow<'a, str>>,
        resend: bool,
    },
    /// A consumer offset reset to a time (admin API).
    ResetOffset {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        group: Cow<'a, str>,
        since_ms: u64,
    },
    /// A half message committed (`commit`) or rolled back by its id (admin API).
    DecideHalf {
        at: u64,
        instance: Option<Cow<'a, str>>,
        topic: Cow<'a, str>,
        message_id: Cow<'a, str>,
        commit: bool,
    },
    /// The server's test clock moved (admin API): it runs `advance_ms` ahead of its
    /// configured clock from `at` on ([`BrokerCore::record_clock_advance`]).
    ClockAdvance { at: u64, advance_ms: i64 },
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
                producer,
            } => Self::Publish {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                body: name(message.body()),
                tag: message.tag().map(|t| name(t.as_str())),
                properties: message.all_properties().encode(),
                producer: producer.as_deref().map(name),
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
            Call::CreateTopic {
                instance,
                topic,
                message_type,
            } => Self::CreateTopic {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                message_type: name(message_type.as_str()),
            },
            Call::DeleteTopic { instance, topic } => Self::DeleteTopic {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
            },
            Call::CreateGroup {
                instance,
                group,
                topics,
                settings,
            } => Self::CreateGroup {
                at,
                instance: instance_name(instance.as_ref()),
                group: name(group.as_str()),
                topics: topics.iter().map(|t| name(t.as_str())).collect(),
                invisibility_ms: settings.invisibility_ms,
                max_deliveries: settings.max_deliveries,
            },
            Call::DeleteGroup { instance, group } => Self::DeleteGroup {
                at,
                instance: instance_name(instance.as_ref()),
                group: name(group.as_str()),
            },
            Call::DeadLetters {
                instance,
                topic,
                group,
                message_id,
                action,
            } => Self::DeadLetters {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                group: name(group.as_str()),
                message_id: message_id.as_deref().map(name),
                resend: *action == DeadLetterAction::Resend,
            },
            Call::ResetOffset {
                instance,
                topic,
                group,
                since_ms,
            } => Self::ResetOffset {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                group: name(group.as_str()),
                since_ms: *since_ms,
            },
            Call::DecideHalf {
                instance,
                topic,
                message_id,
                resolution,
            } => Self::DecideHalf {
                at,
                instance: instance_name(instance.as_ref()),
                topic: name(topic.as_str()),
                message_id: name(message_id),
                commit: *resolution == TransactionResolution::Commit,
            },
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
    /// whose only effect was to move the clock, and for a clock advance (no call: see
    /// [`apply`](Self::apply)). A consume's wait is not journaled (the core
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
                producer,
            } => {
                let producer = producer.as_deref().map(Arc::from);
                let call = publish_call(instance, &topic, body, tag, &properties, producer)?;
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
                    group: parse_group(group)?,
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
                    group: group.map(parse_group).transpose()?,
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
            // A clock advance also records the advance (`apply` does that).
            Self::Clock { at } | Self::ClockAdvance { at, .. } => (at, None),
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
            Self::CreateTopic {
                at,
                instance,
                topic,
                message_type,
            } => {
                let call = Call::CreateTopic {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    message_type: message_type.parse().map_err(corrupt)?,
                };
                (at, Some(call))
            }
            Self::DeleteTopic {
                at,
                instance,
                topic,
            } => {
                let call = Call::DeleteTopic {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                };
                (at, Some(call))
            }
            Self::CreateGroup {
                at,
                instance,
                group,
                topics,
                invisibility_ms,
                max_deliveries,
            } => {
                let call = Call::CreateGroup {
                    instance: parse_instance(instance)?,
                    group: parse_group(group)?,
                    topics: topics
                        .iter()
                        .map(|t| parse_topic(t))
                        .collect::<Result<_, _>>()?,
                    settings: GroupSettings {
                        invisibility_ms,
                        max_deliveries,
                    },
                };
                (at, Some(call))
            }
            Self::DeleteGroup {
                at,
                instance,
                group,
            } => {
                let call = Call::DeleteGroup {
                    instance: parse_instance(instance)?,
                    group: parse_group(group)?,
                };
                (at, Some(call))
            }
            Self::DeadLetters {
                at,
                instance,
                topic,
                group,
                message_id,
                resend,
            } => {
                let call = Call::DeadLetters {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    group: parse_group(group)?,
                    message_id: message_id.map(Cow::into_owned),
                    action: if resend {
                        DeadLetterAction::Resend
                    } else {
                        DeadLetterAction::Delete
                    },
                };
                (at, Some(call))
            }
            Self::ResetOffset {
                at,
                instance,
                topic,
                group,
                since_ms,
            } => {
                let call = Call::ResetOffset {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    group: parse_group(group)?,
                    since_ms,
                };
                (at, Some(call))
            }
            Self::DecideHalf {
                at,
                instance,
                topic,
                message_id,
                commit,
            } => {
                let call = Call::DecideHalf {
                    instance: parse_instance(instance)?,
                    topic: parse_topic(&topic)?,
                    message_id: message_id.into_owned(),
                    resolution: if commit {
                        TransactionResolution::Commit
                    } else {
                        TransactionResolution::Rollback
                    },
                };
                (at, Some(call))
            }
        })
    }

    /// Applies the record to `core`, as the original call did. The call's own result is
    /// not needed: the core is deterministic, so it is the one the original call had.
    pub(crate) fn apply(self, core: &mut BrokerCore) -> Result<(), StorageError> {
        if let Self::ClockAdvance { at, advance_ms } = self {
            core.record_clock_advance(at, advance_ms);
            return Ok(());
        }
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
        .map(|i| InstanceId::new(i.as_ref()).map_err(|e| refused_name(&i, e)))
        .transpose()
}

/// A stored name this build refuses (see [`StorageError::RefusedName`]).
fn refused_name(name: &str, e: mq_proto::InvalidValue) -> StorageError {
    super::refused_value(
        "a journal record",
        crate::core::Refused {
            what: e.what,
            value: Some(name.to_owned()),
            reason: e.reason,
        },
    )
}

/// The publish call of a [`Record::Publish`].
fn publish_call(
    instance: Option<Cow<'_, str>>,
    topic: &str,
    body: Cow<'_, str>,
    tag: Option<Cow<'_, str>>,
    properties: &str,
    producer: Option<Arc<str>>,
) -> Result<Call, StorageError> {
    let properties = Properties::decode(properties).map_err(corrupt)?;
    let message =
        TopicMessage::from_wire(body.into_owned(), tag.as_deref(), properties).map_err(corrupt)?;
    Ok(Call::Publish {
        instance: parse_instance(instance)?,
        topic: parse_topic(topic)?,
        message,
        producer,
    })
}

fn parse_group(group: Cow<'_, str>) -> Result<GroupId, StorageError> {
    GroupId::new(group.as_ref()).map_err(|e| refused_name(&group, e))
}

fn parse_topic(topic: &str) -> Result<TopicName, StorageError> {
    TopicName::new(topic).map_err(|e| refused_name(topic, e))
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
            producer: Some("AK_producer".into()),
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
    fn topic_and_group_records_replay_like_the_original_calls() {
        let instance = Some(InstanceId::new("MQ_INST_1").unwrap());
        let topic = TopicName::new("T").unwrap();
        let group = GroupId::new("GID_g").unwrap();
        let calls = [
            Call::CreateTopic {
                instance: instance.clone(),
                topic: topic.clone(),
                message_type: crate::core::TopicMessageType::Fifo,
            },
            Call::CreateGroup {
                instance: instance.clone(),
                group: group.clone(),
                topics: vec![topic.clone()],
                settings: GroupSettings {
                    invisibility_ms: Some(1_500),
                    max_deliveries: Some(3),
                },
            },
            Call::ResetOffset {
                instance: instance.clone(),
                topic: topic.clone(),
                group: group.clone(),
                since_ms: 500,
            },
            Call::DeadLetters {
                instance: instance.clone(),
                topic: topic.clone(),
                group: group.clone(),
                message_id: None,
                action: DeadLetterAction::Resend,
            },
            Call::DeadLetters {
                instance: instance.clone(),
                topic: topic.clone(),
                group: group.clone(),
                message_id: Some("0123456789ABCDEF0123456789ABCDEF".into()),
                action: DeadLetterAction::Delete,
            },
            Call::DecideHalf {
                instance: instance.clone(),
                topic: topic.clone(),
                message_id: "0123456789ABCDEF0123456789ABCDEF".into(),
                resolution: TransactionResolution::Commit,
            },
            Call::DecideHalf {
                instance: instance.clone(),
                topic: topic.clone(),
                message_id: "0123456789ABCDEF0123456789ABCDEF".into(),
                resolution: TransactionResolution::Rollback,
            },
            Call::DeleteGroup {
                instance: instance.clone(),
                group,
            },
            Call::DeleteTopic { instance, topic },
        ];
        let mut original = BrokerCore::new(crate::core::CoreConfig::default());
        let mut replayed = original.clone();
        for (at, call) in (1_000..).zip(calls) {
            let bytes = Record::of(at, &call).encode().unwrap();
            let back = Record::decode(&bytes).unwrap();
            assert_eq!(back.clone().into_call().unwrap(), (at, Some(call.clone())));
            // Refusals replay as refusals (a dead letter that does not exist).
            let _ = original.apply(at, call);
            back.apply(&mut replayed).unwrap();
            assert_eq!(original, replayed);
        }
    }

    #[test]
    fn a_clock_advance_replays_as_recorded_and_a_reset_takes_it_back() {
        let mut original = BrokerCore::new(crate::core::CoreConfig::default());
        let mut replayed = original.clone();
        original.record_clock_advance(3_601_000, 3_600_000);
        let advance = Record::ClockAdvance {
            at: 3_601_000,
            advance_ms: 3_600_000,
        };
        let back = Record::decode(&advance.encode().unwrap()).unwrap();
        assert_eq!(back, advance);
        back.apply(&mut replayed).unwrap();
        assert_eq!(replayed, original);
        assert_eq!(
            (replayed.now_ms(), replayed.clock_advance_ms()),
            (3_601_000, 3_600_000)
        );
        // A reset journaled at an earlier time (the test clock back at the system clock)
        // replays to that earlier time.
        original.apply(2_000, Call::Reset).unwrap();
        Record::of(2_000, &Call::Reset)
            .apply(&mut replayed)
            .unwrap();
        assert_eq!(replayed, original);
        assert_eq!((replayed.now_ms(), replayed.clock_advance_ms()), (2_000, 0));
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
        // A name that decodes but breaks this build's rules is named, with its rule.
        assert!(matches!(
            bad_topic.apply(&mut core),
            Err(StorageError::RefusedName { place, what: "topic name", value, reason })
                if place == "a journal record"
                    && value == "no spaces allowed here"
                    && reason.contains("' ' is not allowed")
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
