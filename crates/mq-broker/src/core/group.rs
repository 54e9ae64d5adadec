//! Consumption state of one consumer group on one topic, and normal consumption.
//!
//! Every message the group still has to consume has an [`Entry`] and sits in exactly one of
//! two time indexes: `by_time` (waiting to become visible, or visible now) or `final_flight`
//! (its last allowed delivery is in flight; when that expires the message is dead-lettered).
//! The ordered-consumption indexes (partitions) are kept in step by the same primitives
//! while they exist: an orderly consume builds them, and they go when their last partition
//! empties, so a group only consumed normally never pays for them; see `orderly.rs`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use mq_proto::{ErrorCode, GroupId, MessageId, TagFilter};
use serde::{Deserialize, Serialize};

use super::SeqMap;
use super::config::CoreError;
use super::delivery::{Delivery, DeliveryHandle};
use super::handle::Token;
use super::orderly::Partition;
use super::persist;
use super::store::Store;
use super::time_index::TimeIndex;
use super::trace::{Event, TraceKind};

/// Per-message consumption state in one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// When the message is (or becomes again) visible to this group.
    pub(crate) visible_at: u64,
    /// Deliveries so far (0 = never delivered).
    pub(crate) consumed_times: u32,
    /// Time of the first delivery (meaningful once `consumed_times > 0`).
    pub(crate) first_consume_time: u64,
    /// Whether the current delivery is the last allowed one (entry is in `final_flight`).
    pub(crate) last_chance: bool,
    /// Ordered-consumption partition.
    pub(crate) partition: Arc<str>,
}

/// Where a group's entry stands at a time: the one classification `/stats` and peeks share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryState {
    /// Visible now (new, or due for redelivery).
    Ready,
    /// Delivered, not acked, still invisible.
    InFlight,
    /// Never delivered, scheduled later.
    Delayed,
    /// Its last allowed delivery expired: the next sweep dead-letters it.
    Expiring,
}

impl Entry {
    /// The entry's state at `now`.
    pub(crate) fn state(&self, now: u64) -> EntryState {
        if self.visible_at <= now {
            if self.last_chance {
                EntryState::Expiring
            } else {
                EntryState::Ready
            }
        } else if self.consumed_times > 0 {
            EntryState::InFlight
        } else {
            EntryState::Delayed
        }
    }
}

/// A message a group gave up on after the maximum number of deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Id of the message.
    #[serde(with = "persist::message_id")]
    pub message_id: MessageId,
    /// Its publish time (epoch ms).
    pub publish_time: u64,
    /// When it was dead-lettered (epoch ms).
    pub dead_lettered_at: u64,
    /// How often it had been delivered.
    pub consumed_times: u32,
    /// Its sequence number in the topic's store (which keeps the body while this record
    /// lives, within retention).
    #[serde(default)]
    pub(crate) seq: u64,
}

/// What [`BrokerCore::take_dead_letters`](super::BrokerCore::take_dead_letters) does with the dead letters it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Hand them to their group again, as new messages.
    Resend,
    /// Drop them.
    Delete,
}

/// Running totals of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupCounters {
    /// Deliveries (first and repeated).
    pub(crate) delivered: u64,
    /// Repeated deliveries (the second and later of a message).
    pub(crate) redelivered: u64,
    /// Successful acks.
    pub(crate) acked: u64,
    /// Messages skipped by a tag filter.
    pub(crate) filtered: u64,
    /// Messages moved to the dead-letter list.
    pub(crate) dead_lettered: u64,
    /// Pending messages removed by retention.
    pub(crate) trimmed: u64,
}

/// One consumer group on one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Group {
    /// Scope id written into this group's receipt handles.
    pub(crate) scope: u64,
    /// When the group was first seen.
    pub(crate) registered_at: u64,
    /// Messages still to be consumed, by sequence number.
    pub(crate) entries: SeqMap<Entry>,
    /// `(visible_at, seq)` of entries not on their last delivery.
    pub(crate) by_time: TimeIndex,
    /// `(expiry, seq)` of entries whose last allowed delivery is in flight.
    pub(crate) final_flight: TimeIndex,
    /// Ordered-consumption partitions with pending messages: every entry's partition while
    /// the index exists (non-empty), nothing otherwise (see `orderly.rs`).
    pub(crate) partitions: HashMap<Arc<str>, Partition>,
    /// `(ready_at, partition)`: when each partition may deliver again.
    pub(crate) order_ready: BTreeSet<(u64, Arc<str>)>,
    /// Dead-lettered messages, oldest first (trimmed by retention).
    pub(crate) dead_letters: VecDeque<DeadLetter>,
    /// Running totals.
    pub(crate) counters: GroupCounters,
    /// Time of the latest delivery.
    pub(crate) last_consumed_at: Option<u64>,
}

/// What one normal or orderly delivery needs from the caller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeliverParams<'a> {
    /// The group's id (for the message trace).
    pub(crate) group: &'a GroupId,
    /// Current time.
    pub(crate) now: u64,
    /// Invisibility after this delivery.
    pub(crate) invisibility_ms: u64,
    /// Maximum deliveries per message.
    pub(crate) max_deliveries: u32,
}

impl Group {
    /// A group first seen at `now`.
    pub(crate) fn new(scope: u64, now: u64) -> Self {
        Self {
            scope,
            registered_at: now,
            entries: SeqMap::default(),
            by_time: TimeIndex::default(),
            final_flight: TimeIndex::default(),
            partitions: HashMap::new(),
            order_ready: BTreeSet::new(),
            dead_letters: VecDeque::new(),
            counters: GroupCounters::default(),
            last_consumed_at: None,
        }
    }

    /// Drops every message the group holds (pending, in flight, dead letters); keeps its
    /// scope, registration and counters. The number of pending messages dropped.
    pub(crate) fn clear_messages(&mut self) -> usize {
        let dropped = self.entries.len();
        self.entries.clear();
        self.by_time.clear();
        self.final_flight.clear();
        self.partitions.clear();
        self.order_ready.clear();
        self.dead_letters.clear();
        dropped
    }

    /// Adds a message the group has to consume, visible from `visible_at`.
    pub(crate) fn enqueue(&mut self, seq: u64, visible_at: u64, partition: Arc<str>) {
        let entry = Entry {
            visible_at,
            consumed_times: 0,
            first_consume_time: 0,
            last_chance: false,
            partition: partition.clone(),
        };
        self.index_insert(seq, &entry);
        self.entries.insert(seq, entry);
        if !self.partitions.is_empty() {
            self.index_partition(seq, partition);
        }
    }

    /// Removes a message from every index; the caller releases it in the store.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.index_remove(seq, &entry);
        if let Some(p) = self.partitions.get_mut(&entry.partition) {
            p.pending.remove(&seq);
        }
        self.refresh_partition(&entry.partition);
        Some(entry)
    }

    /// Records a delivery of `seq` at `params.now` and returns the message to send.
    pub(crate) fn deliver(
        &mut self,
        store: &mut Store,
        seq: u64,
        params: DeliverParams<'_>,
    ) -> Result<Delivery, CoreError> {
        let stored = store
            .messages
            .get_mut(&seq)
            .ok_or_else(|| CoreError::internal("queued message missing from the store"))?;
        // The entry is changed in place (no clone, no second insert).
        let entry = self
            .entries
            .get_mut(&seq)
            .ok_or_else(|| CoreError::internal("delivered message has no entry"))?;
        let next = params.now.saturating_add(params.invisibility_ms);
        let attempt = entry.consumed_times.saturating_add(1);
        let handle = Token {
            scope: self.scope,
            seq,
            attempt,
            expiry: next,
        }
        .render(&stored.content.id)?;
        let before = Slot::of(entry);
        // A redelivery: the previous delivery's invisibility ended unacked.
        let expired_at = (entry.consumed_times > 0).then_some(entry.visible_at);
        if attempt == 1 {
            entry.first_consume_time = params.now;
        }
        entry.consumed_times = attempt;
        entry.visible_at = next;
        entry.last_chance = attempt >= params.max_deliveries;
        let (after, first_consume_time) = (Slot::of(entry), entry.first_consume_time);
        // Only an orderly group's partitions need the message's partition.
        let partition = (!self.partitions.is_empty()).then(|| entry.partition.clone());
        self.index_remove_at(seq, before, partition.as_ref());
        self.index_insert_at(seq, after, partition.as_ref());
        if let Some(at) = expired_at {
            stored
                .trace
                .push(Event::of_group(TraceKind::Expired, at, params.group));
        }
        stored.trace.push(Event::issued(
            TraceKind::Delivered,
            params.now,
            params.group,
            self.scope,
            attempt,
            next,
        ));
        let message = stored.delivery(
            DeliveryHandle::Issued(handle),
            next,
            first_consume_time,
            attempt,
        );
        if let Some(partition) = &partition {
            self.refresh_partition(partition);
        }
        self.counters.delivered += 1;
        self.last_consumed_at = Some(params.now);
        if attempt > 1 {
            self.counters.redelivered += 1;
        }
        Ok(message)
    }

    /// Normal consumption: up to `batch` visible messages in `(visible_at, seq)` order;
    /// visible messages the filter rejects are skipped for good (PROTOCOL §6.5).
    pub(crate) fn consume_normal(
        &mut self,
        store: &mut Store,
        filter: &TagFilter,
        batch: usize,
        params: DeliverParams<'_>,
    ) -> Result<Vec<Delivery>, CoreError> {
        let mut out = Vec::new();
        while out.len() < batch {
            let Some((visible_at, seq)) = self.by_time.first() else {
                break;
            };
            if visible_at > params.now {
                break;
            }
            if !self.take_or_skip(store, seq, filter, params) {
                continue;
            }
            if out.is_empty() {
                // One allocation for the batch (not 4, 8, 16), and none for an empty consume.
                out.reserve_exact(batch);
            }
            out.push(self.deliver(store, seq, params)?);
        }
        Ok(out)
    }

    /// For a visible message met while consuming: `true` if it passes the filter; otherwise
    /// it is skipped (removed as consumed) and `false` is returned.
    pub(crate) fn take_or_skip(
        &mut self,
        store: &mut Store,
        seq: u64,
        filter: &TagFilter,
        params: DeliverParams<'_>,
    ) -> bool {
        let passes = match store.messages.get_mut(&seq) {
            Some(m) if filter.matches(m.content.tag.as_ref()) => true,
            Some(m) => {
                m.trace.push(Event::of_group(
                    TraceKind::Filtered,
                    params.now,
                    params.group,
                ));
                false
            }
            None => {
                // Defensive: a queued message the store no longer has cannot be delivered.
                self.remove(seq);
                return false;
            }
        };
        if !passes {
            self.remove(seq);
            store.release(seq, params.now);
            self.counters.filtered += 1;
        }
        passes
    }

    /// Acknowledges the delivery named by `token`.
    pub(crate) fn ack(
        &mut self,
        store: &mut Store,
        token: Token,
        now: u64,
        group: &GroupId,
    ) -> Result<(), ErrorCode> {
        let entry = self
            .entries
            .get(&token.seq)
            .ok_or(ErrorCode::MessageNotExist)?;
        check_attempt(token, entry.consumed_times, entry.visible_at, now)?;
        self.remove(token.seq);
        if let Some(m) = store.messages.get_mut(&token.seq) {
            m.trace.push(Event::of_group(TraceKind::Acked, now, group));
        }
        store.release(token.seq, now);
        self.counters.acked += 1;
        Ok(())
    }

    /// Whether the partition of a message is deliverable at `now` (used after an ack to
    /// decide whether orderly waiters should be woken).
    pub(crate) fn partition_ready(&self, partition: &Arc<str>, now: u64) -> bool {
        self.partitions
            .get(partition)
            .and_then(|p| p.ready_at)
            .is_some_and(|r| r <= now)
    }

    /// Dead-letters every message whose last allowed delivery expired at `now`; returns
    /// whether anything changed.
    pub(crate) fn sweep_final(&mut self, store: &mut Store, now: u64, group: &GroupId) -> bool {
        let mut changed = false;
        while let Some((expiry, seq)) = self.final_flight.first() {
            if expiry > now {
                break;
            }
            changed = true;
            let Some(entry) = self.remove(seq) else {
                self.final_flight.pop_first();
                continue;
            };
            // The dead letter takes over the entry's hold on the message: its body stays
            // (for a resend) until the record goes.
            if let Some(m) = store.messages.get_mut(&seq) {
                m.trace
                    .push(Event::of_group(TraceKind::DeadLettered, expiry, group));
                self.dead_letters.push_back(DeadLetter {
                    message_id: m.content.id.clone(),
                    publish_time: m.publish_time,
                    dead_lettered_at: expiry,
                    consumed_times: entry.consumed_times,
                    seq,
                });
            }
            self.counters.dead_lettered += 1;
        }
        changed
    }

    /// Drops dead-letter records older than the retention.
    pub(crate) fn trim_dead_letters(&mut self, store: &mut Store, now: u64, retention_ms: u64) {
        while self
            .dead_letters
            .front()
            .is_some_and(|d| d.dead_lettered_at.saturating_add(retention_ms) <= now)
        {
            if let Some(d) = self.dead_letters.pop_front() {
                store.release(d.seq, now);
            }
        }
    }

    /// Removes the dead letters `pick` selects (all, or the one of a message id) and lets
    /// go of their messages, or hands them to the group again ([`DeadLetterAction`]); the
    /// number of dead letters taken.
    pub(crate) fn take_dead_letters(
        &mut self,
        store: &mut Store,
        id: Option<&str>,
        action: DeadLetterAction,
        now: u64,
        group: &GroupId,
    ) -> u64 {
        let (taken, kept): (VecDeque<DeadLetter>, VecDeque<DeadLetter>) =
            std::mem::take(&mut self.dead_letters)
                .into_iter()
                .partition(|d| id.is_none_or(|id| d.message_id.as_str() == id));
        self.dead_letters = kept;
        let mut count = 0;
        for d in taken {
            count += 1;
            let resend = action == DeadLetterAction::Resend
                && !self.entries.contains_key(&d.seq)
                && store.messages.contains_key(&d.seq);
            match store.messages.get_mut(&d.seq) {
                // The dead letter's hold passes to the new entry.
                Some(m) if resend => {
                    m.trace.push(Event::of_group(TraceKind::Resent, now, group));
                    let (visible_at, partition) = (m.visible_from(now), m.partition.clone());
                    self.enqueue(d.seq, visible_at, partition);
                }
                _ => {
                    store.release(d.seq, now);
                }
            }
        }
        count
    }

    /// The earliest time-index entry after `after`, i.e. the next moment a message of this
    /// group becomes visible (or a last delivery expires).
    pub(crate) fn next_visibility_after(&self, after: u64) -> Option<u64> {
        let a = self.by_time.first_time_from(after.saturating_add(1));
        let b = self.final_flight.first().map(|(t, _)| t);
        min_opt(a, b)
    }

    /// Whether some entry became visible in `(after, now]`.
    pub(crate) fn became_visible(&self, after: u64, now: u64) -> bool {
        after < now
            && self
                .by_time
                .first_time_from(after.saturating_add(1))
                .is_some_and(|t| t <= now)
    }

    fn index_insert(&mut self, seq: u64, entry: &Entry) {
        self.index_insert_at(seq, Slot::of(entry), Some(&entry.partition));
    }

    fn index_remove(&mut self, seq: u64, entry: &Entry) {
        self.index_remove_at(seq, Slot::of(entry), Some(&entry.partition));
    }

    /// Indexes message `seq` at `slot` (and in its partition, if it has one in `partitions`).
    fn index_insert_at(&mut self, seq: u64, slot: Slot, partition: Option<&Arc<str>>) {
        if slot.last_chance {
            self.final_flight.insert((slot.visible_at, seq));
        } else {
            self.by_time.insert((slot.visible_at, seq));
        }
        if slot.delivered
            && let Some(p) = partition.and_then(|k| self.partitions.get_mut(k))
        {
            p.delivered.insert((slot.visible_at, seq));
        }
    }

    /// Removes message `seq` from where `slot` indexed it.
    fn index_remove_at(&mut self, seq: u64, slot: Slot, partition: Option<&Arc<str>>) {
        if slot.last_chance {
            self.final_flight.remove(&(slot.visible_at, seq));
        } else {
            self.by_time.remove(&(slot.visible_at, seq));
        }
        if let Some(p) = partition.and_then(|k| self.partitions.get_mut(k)) {
            p.delivered.remove(&(slot.visible_at, seq));
        }
    }
}

/// Where an entry sits in its group's time indexes.
#[derive(Clone, Copy)]
struct Slot {
    visible_at: u64,
    last_chance: bool,
    /// Delivered at least once (then in its partition's in-flight set, if orderly).
    delivered: bool,
}

impl Slot {
    fn of(entry: &Entry) -> Self {
        Self {
            visible_at: entry.visible_at,
            last_chance: entry.last_chance,
            delivered: entry.consumed_times > 0,
        }
    }
}

/// Checks a handle's attempt and expiry against the current delivery of its message.
///
/// A later attempt than issued, or the current attempt with a different expiry, can only be
/// forged: `ReceiptHandleError`. An earlier attempt (superseded) or an expired one:
/// `MessageNotExist`.
pub(crate) fn check_attempt(
    token: Token,
    current_attempt: u32,
    current_expiry: u64,
    now: u64,
) -> Result<(), ErrorCode> {
    if token.attempt > current_attempt {
        return Err(ErrorCode::ReceiptHandleError);
    }
    if token.attempt < current_attempt {
        return Err(ErrorCode::MessageNotExist);
    }
    if token.expiry != current_expiry {
        return Err(ErrorCode::ReceiptHandleError);
    }
    if now >= token.expiry {
        return Err(ErrorCode::MessageNotExist);
    }
    Ok(())
}

/// The smaller of two optional times.
pub(crate) fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A topic's groups as a sequence of `(group id, group)`.
pub(crate) mod serde_by_id {
    use super::Group;
    use crate::core::persist;
    use mq_proto::GroupId;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

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
            .map(|(id, g)| {
                let group = GroupId::new(id.as_str()).map_err(|e| persist::refuse(Some(id), e))?;
                Ok((group, g))
            })
            .collect()
    }
}
