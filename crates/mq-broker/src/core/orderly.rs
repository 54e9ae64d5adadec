//! Ordered consumption (`trans=order`, PROTOCOL §6.8).
//!
//! A group's pending messages are partitioned by `__SHARDINGKEY` ("" without one). Within a
//! partition, messages go out strictly in publish (sequence) order. A partition is *ready* at
//!
//! `ready_at = max(visible_at of its oldest pending message,
//!                 latest visible_at of its delivered-but-unacked messages)`
//!
//! so it is blocked while any delivered message of it is in flight, and also while its oldest
//! message is not yet visible (a scheduled message holds back the ones behind it). Ready
//! partitions are kept in `Group::order_ready`, so an orderly consume touches only the
//! partitions it delivers from.
//!
//! Normal and orderly consumption of one group share the same queue: a normal consume hands
//! out visible messages without regard to partitions, and a message delivered that way blocks
//! its partition for orderly consumers until it is acked or its invisibility ends.
//!
//! The partition indexes exist only while some partition has a pending message after an
//! orderly consume: the first orderly consume of a group (or the first after its partitions
//! all emptied) builds them from the group's entries, every change keeps them in step while
//! they are non-empty, and they go with their last pending message. A group only consumed
//! normally never builds them (they cost a few tree operations per message). Either way the
//! state follows from the entries alone, so snapshots keep the same form.

use std::collections::BTreeSet;
use std::sync::Arc;

use mq_proto::TagFilter;
use serde::{Deserialize, Serialize};

use super::config::CoreError;
use super::delivery::Delivery;
use super::group::{DeliverParams, Group};
use super::store::Store;

/// One partition of a group's pending messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Partition {
    /// Pending sequence numbers, in order.
    pub(crate) pending: BTreeSet<u64>,
    /// `(visible_at, seq)` of pending messages delivered at least once.
    pub(crate) delivered: BTreeSet<(u64, u64)>,
    /// The partition's key in `Group::order_ready` (`None` once it has no pending message).
    pub(crate) ready_at: Option<u64>,
}

impl Group {
    /// Adds pending entry `seq` to the index of `partition`.
    pub(crate) fn index_partition(&mut self, seq: u64, partition: Arc<str>) {
        let part = self.partitions.entry(partition.clone()).or_default();
        part.pending.insert(seq);
        if let Some(entry) = self.entries.get(&seq)
            && entry.consumed_times > 0
        {
            part.delivered.insert((entry.visible_at, seq));
        }
        self.refresh_partition(&partition);
    }

    /// Builds the partition indexes from the entries when they do not exist (no orderly
    /// consume since the group's partitions last emptied).
    fn build_partitions(&mut self) {
        if !self.partitions.is_empty() {
            return;
        }
        let seqs: Vec<(u64, Arc<str>)> = self
            .entries
            .iter()
            .map(|(&seq, e)| (seq, e.partition.clone()))
            .collect();
        for (seq, partition) in seqs {
            self.index_partition(seq, partition);
        }
    }

    /// Recomputes a partition's ready time after a change, and forgets empty partitions.
    pub(crate) fn refresh_partition(&mut self, key: &Arc<str>) {
        let Some(part) = self.partitions.get_mut(key) else {
            return;
        };
        let ready = part.pending.first().map(|head| {
            let head_visible = self.entries.get(head).map_or(0, |e| e.visible_at);
            let in_flight = part.delivered.last().map_or(0, |&(t, _)| t);
            head_visible.max(in_flight)
        });
        if ready != part.ready_at {
            if let Some(old) = part.ready_at {
                self.order_ready.remove(&(old, key.clone()));
            }
            if let Some(new) = ready {
                self.order_ready.insert((new, key.clone()));
            }
            part.ready_at = ready;
        }
        if part.pending.is_empty() {
            self.partitions.remove(key);
        }
    }

    /// Orderly consumption: takes ready partitions in `(ready_at, key)` order and delivers
    /// from each its visible messages in sequence order, until `batch` messages are out.
    /// Visible messages the filter rejects are skipped for good, as in normal consumption.
    pub(crate) fn consume_orderly(
        &mut self,
        store: &mut Store,
        filter: &TagFilter,
        batch: usize,
        params: DeliverParams<'_>,
    ) -> Result<Vec<Delivery>, CoreError> {
        self.build_partitions();
        let mut out = Vec::new();
        while out.len() < batch {
            let Some((ready_at, key)) = self.order_ready.first().cloned() else {
                break;
            };
            if ready_at > params.now {
                break;
            }
            // The partition is ready, so none of its messages is in flight: walk it from the
            // head while messages are visible. Delivering any message pushes `ready_at` past
            // `now`; skipping removes it; so the partition leaves the ready range.
            let mut cursor = 0;
            while out.len() < batch {
                let Some(seq) = self
                    .partitions
                    .get(&key)
                    .and_then(|p| p.pending.range(cursor..).next().copied())
                else {
                    break;
                };
                cursor = seq.saturating_add(1);
                let visible = self
                    .entries
                    .get(&seq)
                    .is_some_and(|e| e.visible_at <= params.now);
                if !visible {
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
            if self
                .partitions
                .get(&key)
                .and_then(|p| p.ready_at)
                .is_some_and(|r| r <= params.now)
                && out.len() < batch
            {
                // Cannot happen (see above); stop rather than spin if an invariant broke.
                return Err(CoreError::internal("ordered partition did not advance"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mq_proto::{GroupId, TagFilter};

    use super::super::group::{DeliverParams, Group};
    use super::super::store::{Store, StoredMessage};

    fn publish(group: &mut Group, store: &mut Store, seq: u64, key: &str) {
        let message = mq_proto::TopicMessage::new(format!("m{seq}"))
            .and_then(|m| m.with_sharding_key(key))
            .expect("message");
        let id = super::super::handle::message_id(1, seq);
        store.insert(
            StoredMessage::new(seq, id, &message, 0, None),
            1,
            u64::MAX,
            0,
        );
        group.enqueue(seq, 0, Arc::from(key));
    }

    fn params(group: &GroupId, now: u64) -> DeliverParams<'_> {
        DeliverParams {
            group,
            now,
            invisibility_ms: 1_000,
            max_deliveries: 16,
        }
    }

    #[test]
    fn partition_indexes_exist_only_for_orderly_consumption() {
        let (mut group, mut store) = (Group::new(1, 0), Store::default());
        let id = GroupId::new("G").expect("group id");
        for (seq, key) in [(0, "A"), (1, "A"), (2, "B")] {
            publish(&mut group, &mut store, seq, key);
        }
        let normal = group
            .consume_normal(&mut store, &TagFilter::All, 1, params(&id, 0))
            .expect("consume");
        assert_eq!(normal.len(), 1);
        assert!(group.partitions.is_empty() && group.order_ready.is_empty());
        // The first orderly consume builds them: A is blocked by its in-flight head.
        let orderly = group
            .consume_orderly(&mut store, &TagFilter::All, 16, params(&id, 0))
            .expect("consume");
        assert_eq!(orderly.iter().map(|d| d.body()).collect::<Vec<_>>(), ["m2"]);
        assert_eq!(group.partitions.len(), 2);
        // Kept in step while they exist, gone with the last pending message.
        publish(&mut group, &mut store, 3, "C");
        assert_eq!(group.partitions.len(), 3);
        for seq in 0..4 {
            group.remove(seq);
        }
        assert!(group.partitions.is_empty() && group.order_ready.is_empty());
        publish(&mut group, &mut store, 4, "A");
        assert!(group.partitions.is_empty());
    }
}
