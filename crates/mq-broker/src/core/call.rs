//! One broker call in, one outcome out: the shape every layer shares.
//!
//! The server parses a request into a [`Call`] (`From<ParsedRequest>`), hands it to its
//! backend (the built-in core, in memory or journaled, or the RocketMQ gateway), and encodes
//! the [`Outcome`]. The durable broker journals the call and replays it into
//! [`BrokerCore::apply`](super::BrokerCore::apply).

use std::sync::Arc;

use mq_proto::server::{Operation, ParsedRequest};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, HandleFailure, InstanceId, TagFilter, TopicMessage,
    TopicName, WaitSeconds,
};

use super::{
    DeadLetterAction, Delivery, GroupSettings, OffsetReset, PublishOutcome, TopicMessageType,
    TransactionResolution,
};

/// A call into a broker backend.
///
/// ```
/// use mq_broker::core::{BrokerCore, Call, CoreConfig, Outcome};
/// use mq_proto::{TopicMessage, TopicName};
///
/// let mut core = BrokerCore::new(CoreConfig::default());
/// let call = Call::Publish {
///     instance: None,
///     topic: TopicName::new("orders")?,
///     message: TopicMessage::new("order 42")?,
///     producer: None,
/// };
/// let Outcome::Published(receipt) = core.apply(1_000, call)? else { unreachable!() };
/// assert_eq!(receipt.message_id.as_str().len(), 32);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Publish one message (PROTOCOL §6.6, §6.7, §6.9) → [`Outcome::Published`].
    Publish {
        /// The instance (`ns`); `None` = the default instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The message, system properties included.
        message: TopicMessage,
        /// The AccessKey id that signed the request, recorded in the message's trace
        /// (`None` for a publish that did not come from a signed request). Shared: the
        /// server hands over the one copy it keeps per credential, so a publish copies no
        /// key id.
        producer: Option<Arc<str>>,
    },
    /// Consume normal, ordered or half messages → [`Outcome::Delivered`] (empty when
    /// nothing is visible now).
    Consume {
        /// The instance (`ns`).
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The consumer group (`consumer`).
        group: GroupId,
        /// Normal, orderly (`trans=order`) or half messages (`trans=pop`).
        kind: ConsumeKind,
        /// The tag filter (`tag`).
        filter: TagFilter,
        /// At most this many messages (`numOfMessages`, 1..=16).
        batch: BatchSize,
        /// The long-polling wait (`waitseconds`). The core never waits and ignores it (the
        /// server re-asks it, see [`crate::core`]); a backend that waits itself uses it.
        wait: WaitSeconds,
    },
    /// Ack deliveries, or commit / roll back half messages by receipt handle →
    /// [`Outcome::Settled`].
    Ack {
        /// The instance (`ns`).
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The group (`consumer`); required for an ack, ignored for commit / rollback.
        group: Option<GroupId>,
        /// Ack, commit or rollback.
        kind: AckKind,
        /// The receipt handles as received (1..=16 of them, not validated).
        handles: Vec<String>,
    },
    /// Declare a topic (`--topic`): it exists even when topics are not auto-created →
    /// [`Outcome::Done`].
    DeclareTopic {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
    },
    /// Housekeeping due by now (see [`BrokerCore::maintain`](super::BrokerCore::maintain))
    /// → [`Outcome::Done`].
    Maintain,
    /// Drop every message of a topic (admin API; see
    /// [`BrokerCore::purge`](super::BrokerCore::purge)) → [`Outcome::Purged`].
    Purge {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
    },
    /// Forget all state (admin API; see [`BrokerCore::reset`](super::BrokerCore::reset))
    /// → [`Outcome::Done`].
    Reset,
    /// Create a topic with a message type (admin API; see
    /// [`BrokerCore::create_topic`](super::BrokerCore::create_topic)) → [`Outcome::Done`].
    CreateTopic {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The messages it takes.
        message_type: TopicMessageType,
    },
    /// Delete a topic with its messages (admin API; see
    /// [`BrokerCore::delete_topic`](super::BrokerCore::delete_topic)) →
    /// [`Outcome::Deleted`].
    DeleteTopic {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
    },
    /// Create or update a consumer group with its settings, subscribed to topics (admin
    /// API, `--group`; see [`BrokerCore::create_group`](super::BrokerCore::create_group))
    /// → [`Outcome::Done`].
    CreateGroup {
        /// The instance.
        instance: Option<InstanceId>,
        /// The group.
        group: GroupId,
        /// The topics it is registered on at once.
        topics: Vec<TopicName>,
        /// Its own invisibility and maximum deliveries.
        settings: GroupSettings,
    },
    /// Resend or delete a group's dead letters (all, or one) (admin API; see
    /// [`BrokerCore::take_dead_letters`](super::BrokerCore::take_dead_letters)) →
    /// [`Outcome::Resent`] / [`Outcome::Deleted`].
    DeadLetters {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupId,
        /// Only the dead letter of this message id.
        message_id: Option<String>,
        /// Resend or delete.
        action: DeadLetterAction,
    },
    /// Reset a group's consumer offset on a topic to a time (admin API; see
    /// [`BrokerCore::reset_offset`](super::BrokerCore::reset_offset)) →
    /// [`Outcome::OffsetReset`].
    ResetOffset {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupId,
        /// Messages published at or after this time (epoch ms) are delivered again.
        since_ms: u64,
    },
    /// Commit or roll back a waiting half message by its message id (admin API; see
    /// [`BrokerCore::decide_half`](super::BrokerCore::decide_half)) → [`Outcome::Done`].
    DecideHalf {
        /// The instance.
        instance: Option<InstanceId>,
        /// The topic.
        topic: TopicName,
        /// The half message's id.
        message_id: String,
        /// Commit or roll back.
        resolution: TransactionResolution,
    },
    /// Delete a consumer group (admin API; see
    /// [`BrokerCore::delete_group`](super::BrokerCore::delete_group)) →
    /// [`Outcome::Deleted`].
    DeleteGroup {
        /// The instance.
        instance: Option<InstanceId>,
        /// The group.
        group: GroupId,
    },
}

impl Call {
    /// The topic the call is about (`None` for [`Call::Maintain`], [`Call::Reset`] and the
    /// group calls, which may touch every topic of an instance).
    pub fn topic(&self) -> Option<(Option<&InstanceId>, &TopicName)> {
        match self {
            Self::Publish {
                instance, topic, ..
            }
            | Self::Consume {
                instance, topic, ..
            }
            | Self::Ack {
                instance, topic, ..
            }
            | Self::DeclareTopic { instance, topic }
            | Self::Purge { instance, topic }
            | Self::CreateTopic {
                instance, topic, ..
            }
            | Self::DeleteTopic { instance, topic }
            | Self::DeadLetters {
                instance, topic, ..
            }
            | Self::ResetOffset {
                instance, topic, ..
            }
            | Self::DecideHalf {
                instance, topic, ..
            } => Some((instance.as_ref(), topic)),
            Self::Maintain | Self::Reset | Self::CreateGroup { .. } | Self::DeleteGroup { .. } => {
                None
            }
        }
    }
}

impl From<ParsedRequest> for Call {
    fn from(req: ParsedRequest) -> Self {
        let ParsedRequest {
            instance,
            topic,
            operation,
        } = req;
        match operation {
            Operation::Publish(message) => Self::Publish {
                instance,
                topic,
                message,
                producer: None,
            },
            Operation::Consume {
                group,
                kind,
                batch,
                wait,
                filter,
            } => Self::Consume {
                instance,
                topic,
                group,
                kind,
                filter,
                batch,
                wait,
            },
            Operation::Ack {
                group,
                kind,
                handles,
            } => Self::Ack {
                instance,
                topic,
                group,
                kind,
                handles,
            },
        }
    }
}

/// What a [`Call`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The publish was stored: its id, body MD5 and (transactional) publish handle.
    Published(PublishOutcome),
    /// The consumed messages, oldest first; empty when nothing is visible now.
    Delivered(Vec<Delivery>),
    /// The handles that could not be settled, each with its error (empty: all settled).
    Settled(Vec<HandleFailure>),
    /// A declaration, housekeeping, reset or half-message decision ran.
    Done,
    /// A topic was purged: this many messages (stored and half) were dropped.
    Purged {
        /// Messages dropped.
        messages: u64,
    },
    /// Dead letters were handed to their group again: this many.
    Resent {
        /// Dead letters resent.
        messages: u64,
    },
    /// A consumer offset was reset.
    OffsetReset(OffsetReset),
    /// A topic, group or dead letters were deleted: this many messages (a topic's stored and half
    /// messages, a group's pending ones) were dropped with it.
    Deleted {
        /// Messages dropped.
        messages: u64,
    },
}

impl Outcome {
    /// The publish receipt, if this is [`Outcome::Published`].
    pub fn into_published(self) -> Option<PublishOutcome> {
        match self {
            Self::Published(p) => Some(p),
            _ => None,
        }
    }

    /// The messages, if this is [`Outcome::Delivered`].
    pub fn into_delivered(self) -> Option<Vec<Delivery>> {
        match self {
            Self::Delivered(m) => Some(m),
            _ => None,
        }
    }

    /// The per-handle failures, if this is [`Outcome::Settled`].
    pub fn into_settled(self) -> Option<Vec<HandleFailure>> {
        match self {
            Self::Settled(f) => Some(f),
            _ => None,
        }
    }
}
