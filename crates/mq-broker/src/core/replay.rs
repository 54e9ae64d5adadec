//! Giving a group messages again: dead letters resent (or deleted), and a consumer offset
//! reset to a time (RocketMQ's `resetOffsetByTime`, the ONS API's `ResetConsumerOffset`).
//! Both work on what the topic's store still keeps: held messages, dead letters' messages,
//! and messages kept after every group consumed them
//! ([`CoreConfig::consumed_retention_ms`](super::CoreConfig::consumed_retention_ms)).

use mq_proto::{ErrorCode, GroupId, InstanceId, TopicName};
use serde::Serialize;

use super::group::{DeadLetterAction, Group};
use super::topic::Topic;
use super::topics::TopicMut;
use super::trace::{Event, TraceKind};
use super::{BrokerCore, CoreError};

/// What [`BrokerCore::reset_offset`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OffsetReset {
    /// Messages published at or after the time the group gets again (new deliveries, count
    /// 0), including ones it had acked, skipped, dead-lettered, or never seen.
    pub redelivered: u64,
    /// Messages published before the time the group still held (ready, in flight or
    /// delayed): skipped, as moving an offset past them does.
    pub skipped: u64,
}

impl BrokerCore {
    /// The topic and group a dead-letter or offset call is about, swept to `now`.
    fn topic_and_group(
        &mut self,
        now: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: &GroupId,
    ) -> Result<(TopicMut<'_>, GroupId), CoreError> {
        let mut t = self
            .topics
            .get_mut(&(instance.cloned(), topic.clone()), &self.config)
            .ok_or_else(|| CoreError::topic_not_exist(topic))?;
        t.sweep(now, &self.config);
        if !t.groups.contains_key(group) {
            return Err(CoreError::subscription_not_exist(group, topic));
        }
        Ok((t, group.clone()))
    }

    /// Takes a group's dead letters on a topic (all, or the one of `message_id`) and, by
    /// `action`, hands them to the group again as new messages — visible now (or at their
    /// scheduled time), delivery count 0; a dead letter whose body retention already
    /// dropped is removed without a delivery — or deletes them. Returns how many dead
    /// letters were taken.
    ///
    /// # Errors
    ///
    /// `TopicNotExist`, `SubscriptionNotExist` (the group is not on the topic),
    /// `MessageNotExist` (no dead letter of that id).
    pub fn take_dead_letters(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: &GroupId,
        message_id: Option<&str>,
        action: DeadLetterAction,
    ) -> Result<u64, CoreError> {
        let now = self.advance(now_ms);
        let (mut t, group) = self.topic_and_group(now, instance, topic, group)?;
        let t: &mut Topic = &mut t;
        let Some(g) = t.groups.get_mut(&group) else {
            return Ok(0);
        };
        let taken = g.take_dead_letters(&mut t.store, message_id, action, now, &group);
        if let (0, Some(id)) = (taken, message_id) {
            return Err(CoreError::new(
                ErrorCode::MessageNotExist,
                format!("{group} has no dead letter {id} on {topic}"),
            ));
        }
        if taken > 0 && action == DeadLetterAction::Resend {
            t.version += 1;
        }
        Ok(taken)
    }

    /// Resets a group's consumer offset on a topic to `since_ms` (epoch ms): every message
    /// the topic keeps that was published at or after it is given to the group again as a
    /// new message (acked, filtered and dead-lettered ones included; those it holds already
    /// stay as they are), and the messages published before it that the group still holds
    /// are skipped. Messages the topic no longer keeps cannot come back.
    ///
    /// # Errors
    ///
    /// `TopicNotExist`, `SubscriptionNotExist` (the group is not on the topic).
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig};
    /// use mq_proto::{AckKind, BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// let consume = |core: &mut BrokerCore, now| {
    ///     core.consume(now, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)
    /// };
    /// consume(&mut core, 0)?;
    /// core.publish(1_000, None, &t, TopicMessage::new("once")?)?;
    /// let got = consume(&mut core, 2_000)?;
    /// core.ack(3_000, None, &t, Some(&g), AckKind::Ack, &[got[0].receipt_handle.to_string()])?;
    /// assert!(consume(&mut core, 4_000)?.is_empty());
    ///
    /// let reset = core.reset_offset(5_000, None, &t, &g, 1_000)?;
    /// assert_eq!(reset.redelivered, 1);
    /// assert_eq!(consume(&mut core, 6_000)?[0].body, "once");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset_offset(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: &GroupId,
        since_ms: u64,
    ) -> Result<OffsetReset, CoreError> {
        let now = self.advance(now_ms);
        let (mut t, group) = self.topic_and_group(now, instance, topic, group)?;
        let t: &mut Topic = &mut t;
        let Topic {
            store,
            groups,
            version,
            ..
        } = t;
        let Some(g) = groups.get_mut(&group) else {
            return Ok(OffsetReset::default());
        };
        let published = |seq: &u64| store.messages.get(seq).map(|m| m.publish_time);
        let mut before: Vec<u64> = g
            .entries
            .keys()
            .copied()
            .filter(|seq| published(seq).is_some_and(|p| p < since_ms))
            .collect();
        before.sort_unstable();
        let mut again: Vec<u64> = store
            .messages
            .values()
            .filter(|m| {
                m.publish_time >= since_ms && !m.rolled_back && !g.entries.contains_key(&m.seq)
            })
            .map(|m| m.seq)
            .collect();
        again.sort_unstable();
        let mut reset = OffsetReset::default();
        for seq in before {
            g.remove(seq);
            store.release(seq, now);
            reset.skipped += 1;
        }
        for seq in again {
            if !take_over_dead_letter(g, seq) && !store.hold(seq) {
                continue;
            }
            if let Some(m) = store.messages.get_mut(&seq) {
                m.trace
                    .push(Event::of_group(TraceKind::OffsetReset, now, &group));
                g.enqueue(seq, m.visible_from(now), m.partition.clone());
                reset.redelivered += 1;
            }
        }
        *version += 1;
        Ok(reset)
    }
}

/// Removes the group's dead letter of `seq`, if any: its hold on the message passes to the
/// caller. Whether there was one.
fn take_over_dead_letter(g: &mut Group, seq: u64) -> bool {
    match g.dead_letters.iter().position(|d| d.seq == seq) {
        Some(i) => {
            g.dead_letters.remove(i);
            true
        }
        None => false,
    }
}
