//! Topics and consumer groups as the admin API manages them: topics created with a message
//! type and deleted; groups created with their own delivery settings on a list of topics
//! (subscribing them, so they keep messages published from then on) and deleted; and the
//! group listing. Everything here that changes state takes `now_ms`, like every core call.

use std::collections::{BTreeMap, BTreeSet};

use mq_proto::{ErrorCode, GroupId, InstanceId, TopicName};
use serde::{Deserialize, Serialize};

use super::config::{CoreError, GroupSettings, MAX_INVISIBILITY_MS, TopicMessageType};
use super::stats::GroupStats;
use super::{BrokerCore, use_group, use_topic};

/// A group's key in the core: its instance (`None` = the default instance) and id.
pub(crate) type GroupKey = (Option<InstanceId>, GroupId);

/// A group created through the admin API or `--group`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeclaredGroup {
    /// Its delivery settings.
    pub(crate) settings: GroupSettings,
    /// The topics it was created on (it is registered on them again after a reset).
    #[serde(with = "crate::core::persist::topic_names")]
    pub(crate) topics: BTreeSet<TopicName>,
    /// When it was (last) created, epoch ms.
    pub(crate) created_at: u64,
}

/// One consumer group as [`BrokerCore::groups`] lists it (JSON field names as below).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Instance id (`ns`); `None` for the default instance.
    pub instance: Option<String>,
    /// Group id.
    pub group: String,
    /// Whether it was created (admin API, `--group`) rather than registered by a consume.
    pub declared: bool,
    /// Its own invisibility, ms (`None`: the broker's).
    pub invisibility_ms: Option<u64>,
    /// Its own maximum deliveries (`None`: the broker's).
    pub max_deliveries: Option<u32>,
    /// Where it stands on each topic it is registered on, by topic name.
    pub topics: Vec<GroupOnTopic>,
}

/// A group's counters on one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupOnTopic {
    /// Topic name.
    pub topic: String,
    /// The counters (`ready`, `in_flight`, `delayed`, `dead_letters_kept`, `accumulation`,
    /// `last_consume_time_ms`, …), flattened into this object.
    #[serde(flatten)]
    pub stats: GroupStats,
}

impl BrokerCore {
    /// Creates a topic that takes messages of `message_type` (a publish of another type is
    /// refused with `InvalidArgument`; [`TopicMessageType::Mixed`] takes all). It exists from
    /// now on even when [`auto_create_topics`](super::CoreConfig::auto_create_topics) is
    /// off. Creating an existing topic marks it declared and sets its type; its messages
    /// stay.
    pub fn create_topic(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message_type: TopicMessageType,
    ) {
        self.advance(now_ms);
        self.declare_topic(instance, topic);
        if let Some(mut t) = self
            .topics
            .get_mut(&(instance.cloned(), topic.clone()), &self.config)
        {
            t.message_type = message_type;
        }
    }

    /// Deletes a topic with everything it holds (stored, pending, in flight, dead and half
    /// messages, its groups' positions); returns how many messages (stored and half) went.
    /// Receipt handles issued on it settle nothing afterwards, even if the topic comes back
    /// (auto-created by a later call, or created again). Created groups stay, without it.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic.
    pub fn delete_topic(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
    ) -> Result<u64, CoreError> {
        self.advance(now_ms);
        let t = self
            .topics
            .remove(&(instance.cloned(), topic.clone()))
            .ok_or_else(|| CoreError::topic_not_exist(topic))?;
        for ((i, _), g) in &mut self.groups {
            if i.as_ref() == instance {
                g.topics.remove(topic);
            }
        }
        Ok((t.store.messages.len() + t.half.entries.len()) as u64)
    }

    /// Creates (or updates) a consumer group of an instance with its own delivery
    /// settings, and registers it on each of `topics`: from now on it keeps every message
    /// those topics receive, whether or not it consumed yet. Its settings apply on every
    /// topic of the instance it consumes from.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a setting of zero or an invisibility over
    /// [`MAX_INVISIBILITY_MS`]; `TopicNotExist` for an unknown topic when
    /// topics are not created on first use (then nothing changed but the clock).
    pub fn create_group(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        group: &GroupId,
        topics: &[TopicName],
        settings: GroupSettings,
    ) -> Result<(), CoreError> {
        let now = self.advance(now_ms);
        if settings.invisibility_ms == Some(0) || settings.max_deliveries == Some(0) {
            return Err(CoreError::invalid(
                "invisibility and max deliveries of a group are at least 1",
            ));
        }
        if settings
            .invisibility_ms
            .is_some_and(|ms| ms > MAX_INVISIBILITY_MS)
        {
            return Err(CoreError::invalid(format!(
                "the invisibility of a group is at most {MAX_INVISIBILITY_MS} ms (12 h)"
            )));
        }
        if !self.config.auto_create_topics
            && let Some(missing) = topics.iter().find(|t| !self.topic_exists(instance, t))
        {
            return Err(CoreError::topic_not_exist(missing));
        }
        let key = (instance.cloned(), group.clone());
        let declared = self.groups.entry(key).or_insert_with(|| DeclaredGroup {
            settings,
            topics: BTreeSet::new(),
            created_at: now,
        });
        declared.settings = settings;
        declared.created_at = now;
        declared.topics.extend(topics.iter().cloned());
        for topic in topics {
            self.register(now, instance, topic, group)?;
        }
        Ok(())
    }

    /// Registers `group` on `topic` (created on first use where allowed).
    pub(super) fn register(
        &mut self,
        now: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: &GroupId,
    ) -> Result<(), CoreError> {
        let mut t = use_topic(
            &mut self.topics,
            &mut self.next_scope,
            &self.config,
            now,
            instance,
            topic,
        )?;
        t.sweep(now, &self.config);
        use_group(&mut t.groups, &mut self.next_scope, now, group);
        Ok(())
    }

    /// Deletes a consumer group of an instance: its settings, and its position on every
    /// topic with the messages only it still held; returns how many messages it dropped:
    /// its pending messages and dead letters that no other group holds (those others still
    /// hold stay and are not counted). A later consume by the same id registers a new group
    /// (its old receipt handles settle nothing).
    ///
    /// # Errors
    ///
    /// `SubscriptionNotExist` when the group was neither created nor registered anywhere.
    pub fn delete_group(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        group: &GroupId,
    ) -> Result<u64, CoreError> {
        let now = self.advance(now_ms);
        let mut found = self
            .groups
            .remove(&(instance.cloned(), group.clone()))
            .is_some();
        let mut dropped = 0;
        let config = &self.config;
        self.topics.for_each_mut(config, |(i, _), t| {
            if i.as_ref() != instance {
                return;
            }
            t.sweep(now, config);
            if let Some(n) = t.remove_group(group, now) {
                found = true;
                dropped += n;
            }
        });
        if found {
            Ok(dropped)
        } else {
            Err(CoreError::new(
                ErrorCode::SubscriptionNotExist,
                format!("The consumer group {group} does not exist"),
            ))
        }
    }

    /// The settings a group consumes with (its own where it was created with some).
    pub(crate) fn group_settings(
        &self,
        instance: Option<&InstanceId>,
        group: &GroupId,
    ) -> GroupSettings {
        if self.groups.is_empty() {
            return GroupSettings::default();
        }
        self.groups
            .get(&(instance.cloned(), group.clone()))
            .map(|g| g.settings)
            .unwrap_or_default()
    }

    /// Registers every created group again on the topics it was created on (after a
    /// reset; an auto-created topic among them is created again).
    pub(super) fn register_declared_groups(&mut self, now: u64) {
        let declared: Vec<(GroupKey, Vec<TopicName>)> = self
            .groups
            .iter()
            .map(|(k, g)| (k.clone(), g.topics.iter().cloned().collect()))
            .collect();
        for ((instance, group), topics) in declared {
            for topic in topics {
                // A topic the reset removed comes back where topics are created on first
                // use; elsewhere (`TopicNotExist`) the group waits for it to be created.
                let _ = self.register(now, instance.as_ref(), &topic, &group);
            }
        }
    }

    /// Every consumer group, created or registered by a consume, ordered by instance then
    /// id, with where it stands on each topic as of [`now_ms`](Self::now_ms). Changes
    /// nothing. Costs O(pending messages).
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut out: BTreeMap<GroupKey, GroupInfo> = BTreeMap::new();
        let info = |(instance, group): &GroupKey| GroupInfo {
            instance: instance.as_ref().map(|i| i.as_str().to_owned()),
            group: group.as_str().to_owned(),
            declared: false,
            invisibility_ms: None,
            max_deliveries: None,
            topics: Vec::new(),
        };
        for (key, declared) in &self.groups {
            let entry = out.entry(key.clone()).or_insert_with(|| info(key));
            entry.declared = true;
            entry.invisibility_ms = declared.settings.invisibility_ms;
            entry.max_deliveries = declared.settings.max_deliveries;
        }
        for ((instance, name), t) in self.topics.iter() {
            let stats = t.stats(None, String::new(), self.now);
            for s in stats.groups {
                let Ok(id) = GroupId::new(s.group.as_str()) else {
                    continue;
                };
                let key = (instance.clone(), id);
                let entry = out.entry(key.clone()).or_insert_with(|| info(&key));
                entry.topics.push(GroupOnTopic {
                    topic: name.as_str().to_owned(),
                    stats: s,
                });
            }
        }
        out.into_values().collect()
    }
}
