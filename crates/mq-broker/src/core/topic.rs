//! One topic: its message store, its consumer groups, its half-message pool, and the
//! time-driven housekeeping ("sweep") that every operation on the topic runs first.

use std::collections::BTreeMap;

use mq_proto::{GroupId, InstanceId, TopicName};
use serde::{Deserialize, Serialize};

use super::config::{CoreConfig, TopicMessageType};
use super::group::{EntryState, Group, min_opt};
use super::half::HalfPool;
use super::stats::{GroupStats, TopicStats};
use super::store::{Store, StoredMessage};
use super::topics::Filed;

/// A topic's key in the core: its instance (`None` = the default instance) and name.
pub(crate) type TopicKey = (Option<InstanceId>, TopicName);

/// One topic of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Topic {
    /// Declared with `declare_topic` or created with `create_topic` (as opposed to
    /// auto-created).
    pub(crate) declared: bool,
    /// The messages the topic takes ([`TopicMessageType::Mixed`] unless created with a type).
    pub(crate) message_type: TopicMessageType,
    /// Messages some group still holds.
    pub(crate) store: Store,
    /// Consumer groups, by id.
    #[serde(with = "super::group::serde_by_id")]
    pub(crate) groups: BTreeMap<GroupId, Group>,
    /// Half messages.
    pub(crate) half: HalfPool,
    /// Time of the last sweep: every event up to it has been processed and announced.
    pub(crate) swept_at: u64,
    /// Change counter for long-poll wake-ups.
    pub(crate) version: u64,
    /// Messages published (all kinds).
    pub(crate) published: u64,
    /// Where the core's index of next events has this topic ([`super::topics`]).
    #[serde(skip)]
    pub(crate) filed: Filed,
}

impl Topic {
    /// An empty topic created at `now`; `half_scope` is the scope id of its half pool.
    pub(crate) fn new(declared: bool, half_scope: u64, now: u64) -> Self {
        Self {
            declared,
            message_type: TopicMessageType::Mixed,
            store: Store::default(),
            groups: BTreeMap::new(),
            half: HalfPool::new(half_scope),
            swept_at: now,
            version: 0,
            published: 0,
            filed: Filed::default(),
        }
    }

    /// Processes everything due at `now` (retention, horizon drops, dead-lettering) and bumps
    /// the version if anything happened or became visible since the last sweep.
    pub(crate) fn sweep(&mut self, now: u64, config: &CoreConfig) {
        let mut changed = false;
        for seq in self.store.take_expired(now) {
            // Only a message a group still had to consume changes what consumers see.
            for group in self.groups.values_mut() {
                if group.remove(seq).is_some() {
                    group.counters.trimmed += 1;
                    changed = true;
                }
            }
        }
        changed |= self.half.sweep(now);
        changed |= self.half.became_visible(self.swept_at, now);
        for (id, group) in &mut self.groups {
            changed |= group.sweep_final(&mut self.store, now, id);
            group.trim_dead_letters(&mut self.store, now, config.retention_ms);
            changed |= group.became_visible(self.swept_at, now);
        }
        // Not a change a consumer can see: no version bump.
        self.store.trim_unheld(
            now,
            config.consumed_retention_ms,
            config.consumed_retention_bytes,
        );
        self.swept_at = self.swept_at.max(now);
        if changed {
            self.version += 1;
        }
    }

    /// Takes a half message just committed or rolled back (by handle or by id): a
    /// committed one goes to every registered group (visible now, or at its scheduled
    /// time); a rolled-back one is kept unheld for its trace, never delivered.
    pub(crate) fn take_resolved(&mut self, message: StoredMessage, now: u64, config: &CoreConfig) {
        if message.rolled_back {
            let expire_at = now.saturating_add(config.retention_ms);
            self.store.insert(message, 0, expire_at, now);
            return;
        }
        let visible_at = message.visible_from(now);
        let receivers = self.fan_out(message, now, visible_at, config);
        if receivers > 0 && visible_at <= now {
            self.version += 1;
        }
    }

    /// Hands a message to every registered group at `now`, visible from `visible_at`;
    /// returns how many groups received it.
    pub(crate) fn fan_out(
        &mut self,
        message: StoredMessage,
        now: u64,
        visible_at: u64,
        config: &CoreConfig,
    ) -> usize {
        let refs = self.groups.len();
        for group in self.groups.values_mut() {
            group.enqueue(message.seq, visible_at, message.partition.clone());
        }
        let expire_at = visible_at.saturating_add(config.retention_ms);
        self.store.insert(message, refs, expire_at, now);
        refs
    }

    /// The next time something happens in this topic after its last sweep: a message
    /// becomes visible or due for a check, or housekeeping is due.
    pub(crate) fn next_event(&self, config: &CoreConfig) -> Option<u64> {
        let after = self.swept_at;
        let mut next = min_opt(
            self.store.by_expiry.first().map(|(t, _)| t),
            self.half.next_event_after(after),
        );
        next = min_opt(
            next,
            self.store.next_unheld_expiry(config.consumed_retention_ms),
        );
        for group in self.groups.values() {
            next = min_opt(next, group.next_visibility_after(after));
            let dead = group
                .dead_letters
                .front()
                .map(|d| d.dead_lettered_at.saturating_add(config.retention_ms));
            next = min_opt(next, dead);
        }
        next
    }

    /// Drops every message of the topic: stored, pending in each group, in flight, dead
    /// letters, half messages. Groups stay registered. The number of messages dropped
    /// (stored and half).
    pub(crate) fn purge(&mut self) -> u64 {
        let dropped = self.store.messages.len() + self.half.clear();
        self.store = Store::default();
        for g in self.groups.values_mut() {
            g.clear_messages();
        }
        self.version += 1;
        dropped as u64
    }

    /// Removes a group and lets go of every message it held; the number of its pending
    /// messages and dead letters no other group holds (no longer deliverable to anyone),
    /// `None` if it was not registered here.
    pub(crate) fn remove_group(&mut self, group: &GroupId, now: u64) -> Option<u64> {
        let g = self.groups.remove(group)?;
        let mut only_its = 0;
        for seq in g
            .entries
            .keys()
            .chain(g.dead_letters.iter().map(|d| &d.seq))
        {
            if self.store.release(*seq, now) {
                only_its += 1;
            }
        }
        self.version += 1;
        Some(only_its)
    }

    /// Counters of this topic as of `now`.
    pub(crate) fn stats(&self, instance: Option<String>, topic: String, now: u64) -> TopicStats {
        let groups = self
            .groups
            .iter()
            .map(|(id, g)| {
                let mut s = GroupStats {
                    group: id.as_str().to_owned(),
                    registered_at_ms: g.registered_at,
                    dead_lettered: g.counters.dead_lettered,
                    dead_letters_kept: g.dead_letters.len() as u64,
                    delivered: g.counters.delivered,
                    redelivered: g.counters.redelivered,
                    acked: g.counters.acked,
                    filtered: g.counters.filtered,
                    trimmed: g.counters.trimmed,
                    accumulation: g.entries.len() as u64,
                    last_consume_time_ms: g.last_consumed_at,
                    ..GroupStats::default()
                };
                for e in g.entries.values() {
                    match e.state(now) {
                        EntryState::Ready => s.ready += 1,
                        EntryState::InFlight => s.in_flight += 1,
                        EntryState::Delayed => s.delayed += 1,
                        // The next sweep dead-letters it.
                        EntryState::Expiring => s.dead_lettered += 1,
                    }
                }
                s
            })
            .collect();
        TopicStats {
            instance,
            topic,
            declared: self.declared,
            message_type: self.message_type.as_str(),
            published: self.published,
            stored: self.store.held() as u64,
            consumed_kept: self.store.unheld.len() as u64,
            half: self.half.entries.len() as u64,
            half_committed: self.half.counters.committed,
            half_rolled_back: self.half.counters.rolled_back,
            half_dropped_unresolved: self.half.counters.dropped_unresolved,
            half_popped: self.half.counters.popped,
            groups,
        }
    }
}
