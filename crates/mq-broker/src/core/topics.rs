//! The core's topics, with an index of when each next needs its housekeeping, so that
//! finding the core's next wake-up and running what came due cost O(log topics) and the
//! topics due, not a pass over every topic.
//!
//! Every change to a topic goes through [`TopicMut`], which files the topic again under its
//! [`Topic::next_event`] when it is dropped: the index cannot miss a change because no other
//! way to change a topic exists. A core read from a snapshot starts without the index
//! (it depends on the configuration, which the snapshot's reader supplies later) and
//! answers by a pass over every topic until [`Topics::reindex`] builds it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::config::CoreConfig;
use super::group::min_opt;
use super::store::StoredMessage;
use super::topic::{Topic, TopicKey};

/// At most this many removed messages wait in [`Topics`]' bin for
/// [`take_retired`](Topics::take_retired); beyond, they are dropped at once (a caller that
/// never takes them holds a bounded number, a large trim does not pile up).
const RETIRED_MAX: usize = 256;

/// Where a topic is filed in [`Topics`]' index: the time of its next event, `None` when
/// nothing is pending (or the index is not built). Derived state: never compared, never
/// saved.
#[derive(Clone, Copy, Default)]
pub(crate) struct Filed(Option<u64>);

impl PartialEq for Filed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Filed {}

impl fmt::Debug for Filed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The topics by key, and the index `(time of next event, key)` over those with one.
#[derive(Clone)]
pub(crate) struct Topics {
    map: BTreeMap<TopicKey, Topic>,
    due: BTreeSet<(u64, TopicKey)>,
    /// Whether `due` holds every topic's next event (false after deserializing, until
    /// [`reindex`](Self::reindex)).
    indexed: bool,
    /// Messages removed from the topics' stores, to be dropped by whoever takes them
    /// ([`take_retired`](Self::take_retired)); derived state, never compared or saved.
    retired: Vec<StoredMessage>,
}

impl Default for Topics {
    /// No topics: the (empty) index is exact.
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            due: BTreeSet::new(),
            indexed: true,
            retired: Vec::new(),
        }
    }
}

impl PartialEq for Topics {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl Eq for Topics {}

impl Serialize for Topics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        super::persist::by_instance_name::serialize(&self.map, s)
    }
}

impl<'de> Deserialize<'de> for Topics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self {
            map: super::persist::by_instance_name::deserialize(d)?,
            due: BTreeSet::new(),
            indexed: false,
            retired: Vec::new(),
        })
    }
}

/// A topic borrowed for a change; dropping it settles the topic: its unheld messages
/// within their byte bound, filed under its next event.
pub(crate) struct TopicMut<'a> {
    key: &'a TopicKey,
    topic: &'a mut Topic,
    /// Where the topic was filed when borrowed (a change may replace the whole topic).
    was: Filed,
    due: &'a mut BTreeSet<(u64, TopicKey)>,
    indexed: bool,
    retired: &'a mut Vec<StoredMessage>,
    config: &'a CoreConfig,
}

impl Deref for TopicMut<'_> {
    type Target = Topic;

    fn deref(&self) -> &Topic {
        self.topic
    }
}

impl DerefMut for TopicMut<'_> {
    fn deref_mut(&mut self) -> &mut Topic {
        self.topic
    }
}

impl Drop for TopicMut<'_> {
    fn drop(&mut self) {
        self.topic.filed = self.was;
        settle(
            self.due,
            self.indexed,
            self.retired,
            self.key,
            self.topic,
            self.config,
        );
    }
}

/// After a change to `topic`: brings its unheld messages back within their byte bound
/// (the one bound that is not a time, so it must hold between calls for the index to be
/// complete), moves what its store removed to the `retired` bin, then, when the index is
/// kept, moves the topic's entry in `due` to its next event (one comparison when it did
/// not move).
fn settle(
    due: &mut BTreeSet<(u64, TopicKey)>,
    indexed: bool,
    retired: &mut Vec<StoredMessage>,
    key: &TopicKey,
    topic: &mut Topic,
    config: &CoreConfig,
) {
    topic
        .store
        .trim_unheld_bytes(config.consumed_retention_bytes);
    retire(retired, &mut topic.store.retired);
    if !indexed {
        return;
    }
    let next = topic.next_event(config);
    if next == topic.filed.0 {
        return;
    }
    if let Some(at) = topic.filed.0 {
        due.remove(&(at, key.clone()));
    }
    if let Some(at) = next {
        due.insert((at, key.clone()));
    }
    topic.filed = Filed(next);
}

/// Moves `removed` into the bin, or drops them at once where the bin would hold more than
/// [`RETIRED_MAX`].
fn retire(bin: &mut Vec<StoredMessage>, removed: &mut Vec<StoredMessage>) {
    if bin.len() + removed.len() > RETIRED_MAX {
        removed.clear();
    } else {
        bin.append(removed);
    }
}

impl Topics {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, key: &TopicKey) -> Option<&Topic> {
        self.map.get(key)
    }

    pub(crate) fn contains_key(&self, key: &TopicKey) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TopicKey, &Topic)> {
        self.map.iter()
    }

    /// The topic at `key`, to change.
    pub(crate) fn get_mut<'a>(
        &'a mut self,
        key: &TopicKey,
        config: &'a CoreConfig,
    ) -> Option<TopicMut<'a>> {
        let (key, topic) = self.map.range_mut(key..=key).next()?;
        Some(TopicMut {
            key,
            was: topic.filed,
            topic,
            due: &mut self.due,
            indexed: self.indexed,
            retired: &mut self.retired,
            config,
        })
    }

    /// The topic at `key`, created with `create` when absent (`Err` from `create` leaves
    /// the topics as they were).
    pub(crate) fn get_or_try_insert<'a, E>(
        &'a mut self,
        key: TopicKey,
        config: &'a CoreConfig,
        create: impl FnOnce() -> Result<Topic, E>,
    ) -> Result<TopicMut<'a>, E> {
        if !self.map.contains_key(&key) {
            let topic = create()?;
            self.map.insert(key.clone(), topic);
        }
        Ok(self
            .get_mut(&key, config)
            .expect("the topic was just found or inserted"))
    }

    /// Removes a topic.
    pub(crate) fn remove(&mut self, key: &TopicKey) -> Option<Topic> {
        let topic = self.map.remove(key)?;
        if let Some(at) = topic.filed.0 {
            self.due.remove(&(at, key.clone()));
        }
        Some(topic)
    }

    /// Keeps the topics for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&TopicKey, &Topic) -> bool) {
        let due = &mut self.due;
        self.map.retain(|key, topic| {
            let kept = keep(key, topic);
            if !kept && let Some(at) = topic.filed.0 {
                due.remove(&(at, key.clone()));
            }
            kept
        });
    }

    /// Runs `change` on every topic (in key order), filing each again after it.
    pub(crate) fn for_each_mut(
        &mut self,
        config: &CoreConfig,
        mut change: impl FnMut(&TopicKey, &mut Topic),
    ) {
        for (key, topic) in &mut self.map {
            let was = topic.filed;
            change(key, topic);
            topic.filed = was;
            settle(
                &mut self.due,
                self.indexed,
                &mut self.retired,
                key,
                topic,
                config,
            );
        }
    }

    /// The earliest next event of any topic (`None`: nothing is pending).
    pub(crate) fn next_event(&self, config: &CoreConfig) -> Option<u64> {
        if self.indexed {
            self.due.first().map(|(at, _)| *at)
        } else {
            self.map
                .values()
                .fold(None, |acc, t| min_opt(acc, t.next_event(config)))
        }
    }

    /// The topics whose next event is at or before `now` (every topic without the index).
    pub(crate) fn due_at(&self, now: u64) -> Vec<TopicKey> {
        if self.indexed {
            self.due
                .iter()
                .take_while(|(at, _)| *at <= now)
                .map(|(_, key)| key.clone())
                .collect()
        } else {
            self.map.keys().cloned().collect()
        }
    }

    /// Settles every topic with `config` — its unheld messages within their byte bound,
    /// filed under its next event — and rebuilds the index (after deserializing, and when
    /// the configuration changed: a lowered bound holds at once).
    pub(crate) fn reindex(&mut self, config: &CoreConfig) {
        self.due.clear();
        for (key, topic) in &mut self.map {
            topic
                .store
                .trim_unheld_bytes(config.consumed_retention_bytes);
            retire(&mut self.retired, &mut topic.store.retired);
            let next = topic.next_event(config);
            topic.filed = Filed(next);
            if let Some(at) = next {
                self.due.insert((at, key.clone()));
            }
        }
        self.indexed = true;
    }

    /// The messages removed from the topics' stores since the last take (at most
    /// [`RETIRED_MAX`]), for the caller to drop.
    pub(crate) fn take_retired(&mut self) -> Vec<StoredMessage> {
        std::mem::take(&mut self.retired)
    }

    /// Whether the index agrees with every topic's next event (for tests).
    #[cfg(test)]
    pub(crate) fn index_is_exact(&self, config: &CoreConfig) -> bool {
        let expected: BTreeSet<(u64, TopicKey)> = self
            .map
            .iter()
            .filter_map(|(k, t)| t.next_event(config).map(|at| (at, k.clone())))
            .collect();
        self.indexed && expected == self.due
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BrokerCore, CoreConfig};
    use mq_proto::{
        AckKind, BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName,
        TransCheckImmunity,
    };
    use proptest::prelude::*;

    const TOPICS: [&str; 3] = ["T0", "T1", "T2"];
    const GROUPS: [&str; 2] = ["G0", "G1"];

    fn config(consumed_retention_ms: u64) -> CoreConfig {
        CoreConfig {
            invisibility_ms: 3_000,
            order_invisibility_ms: 2_000,
            half_check_interval_ms: 2_000,
            half_check_horizon_ms: 40_000,
            max_deliveries: 2,
            retention_ms: 6_000,
            consumed_retention_ms,
            consumed_retention_bytes: 64,
            max_schedule_ahead_ms: 30_000,
            auto_create_topics: true,
            id_seed: 3,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Maintain,
        /// Topic, start-deliver delay (ms), transaction check immunity (s).
        Publish(usize, Option<u64>, Option<u32>),
        /// Topic, group, batch, half.
        Consume(usize, usize, u8, bool),
        /// Topic, group, which of the handles received so far; commit (for half handles).
        Ack(usize, usize, usize),
        Commit(usize, usize, bool),
        Purge(usize),
        /// Declared topics outlive a reset (emptied in place).
        Declare(usize),
        DeleteTopic(usize),
        DeleteGroup(usize),
        Reset,
        Reconfigure(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let t = 0..TOPICS.len();
        let g = 0..GROUPS.len();
        prop_oneof![
            4 => (0u64..9_000).prop_map(Op::Advance),
            2 => Just(Op::Maintain),
            6 => (t.clone(), prop::option::of(0u64..8_000), prop::option::of(10u32..13))
                .prop_map(|(t, d, i)| Op::Publish(t, d, i)),
            4 => (t.clone(), g.clone(), 1u8..4, any::<bool>())
                .prop_map(|(t, g, b, h)| Op::Consume(t, g, b, h)),
            3 => (t.clone(), g.clone(), 0usize..64).prop_map(|(t, g, i)| Op::Ack(t, g, i)),
            2 => (t.clone(), 0usize..64, any::<bool>()).prop_map(|(t, i, c)| Op::Commit(t, i, c)),
            1 => t.clone().prop_map(Op::Purge),
            1 => t.clone().prop_map(Op::Declare),
            1 => t.prop_map(Op::DeleteTopic),
            1 => g.prop_map(Op::DeleteGroup),
            1 => Just(Op::Reset),
            1 => prop_oneof![Just(1_000u64), Just(4_000), Just(u64::MAX / 4)].prop_map(Op::Reconfigure),
        ]
    }

    /// What one step answered, to compare the two cores with.
    type Answer = String;

    /// Runs `op` on `core`; `sweep_every_topic` makes `maintain` the reference that
    /// sweeps every topic instead of the ones the index says are due.
    fn step(
        core: &mut BrokerCore,
        now: &mut u64,
        handles: &mut Vec<(usize, usize, String)>,
        half_handles: &mut Vec<(usize, String)>,
        op: &Op,
        sweep_every_topic: bool,
    ) -> Answer {
        let topic = |i: usize| TopicName::new(TOPICS[i]).unwrap();
        let group = |i: usize| GroupId::new(GROUPS[i]).unwrap();
        let n = *now;
        match op {
            Op::Advance(ms) => {
                *now += ms;
                String::new()
            }
            Op::Maintain if sweep_every_topic => {
                let at = core.advance(n);
                let config = core.config.clone();
                core.topics
                    .for_each_mut(&config, |_, t| t.sweep(at, &config));
                String::new()
            }
            Op::Maintain => {
                core.maintain(n);
                String::new()
            }
            Op::Publish(t, delay, immunity) => {
                let mut m = TopicMessage::new(format!("m{n}")).unwrap();
                if let Some(d) = delay {
                    m = m.with_start_deliver_time(n + d);
                }
                if let Some(s) = immunity {
                    m = m.with_trans_check_immunity(TransCheckImmunity::new(*s).unwrap());
                }
                let r = core.publish(n, None, &topic(*t), m);
                if let Ok(Some(h)) = r.as_ref().map(|o| o.receipt_handle.clone()) {
                    half_handles.push((*t, h.to_string()));
                }
                format!("{:?}", r.map(|o| o.message_id))
            }
            Op::Consume(t, g, batch, half) => {
                let kind = if *half {
                    ConsumeKind::Half
                } else {
                    ConsumeKind::Normal
                };
                let filter: TagFilter = "*".parse().unwrap();
                let r = core.consume(
                    n,
                    None,
                    &topic(*t),
                    &group(*g),
                    kind,
                    &filter,
                    BatchSize::new(*batch).unwrap(),
                );
                let mut answer = String::new();
                for m in r.iter().flatten() {
                    let h = m.receipt_handle.as_str().to_owned();
                    answer.push_str(&format!("{} {} {};", m.message_id, h, m.consumed_times));
                    if *half {
                        half_handles.push((*t, h));
                    } else {
                        handles.push((*t, *g, h));
                    }
                }
                format!("{answer} {:?}", r.err().map(|e| e.code))
            }
            Op::Ack(t, g, i) => {
                let Some((_, _, h)) = handles.get(*i).cloned() else {
                    return String::new();
                };
                let r = core.ack(n, None, &topic(*t), Some(&group(*g)), AckKind::Ack, &[h]);
                format!("{r:?}")
            }
            Op::Commit(t, i, commit) => {
                let Some((_, h)) = half_handles.get(*i).cloned() else {
                    return String::new();
                };
                let kind = if *commit {
                    AckKind::Commit
                } else {
                    AckKind::Rollback
                };
                format!("{:?}", core.ack(n, None, &topic(*t), None, kind, &[h]))
            }
            Op::Purge(t) => format!("{:?}", core.purge(n, None, &topic(*t))),
            Op::Declare(t) => {
                core.declare_topic(None, &topic(*t));
                String::new()
            }
            Op::DeleteTopic(t) => format!("{:?}", core.delete_topic(n, None, &topic(*t))),
            Op::DeleteGroup(g) => format!("{:?}", core.delete_group(n, None, &group(*g))),
            Op::Reset => {
                core.reset(n);
                String::new()
            }
            Op::Reconfigure(ms) => {
                core.reconfigure(config(*ms));
                String::new()
            }
        }
    }

    /// Lowering the byte bound of unheld messages holds at once, not at the topic's next
    /// change (housekeeping sweeps only the topics with an event due).
    #[test]
    fn a_lowered_byte_bound_holds_at_once() {
        let mut core = BrokerCore::new(config(u64::MAX / 4));
        core.reconfigure(CoreConfig {
            consumed_retention_bytes: u64::MAX,
            ..config(u64::MAX / 4)
        });
        let t = TopicName::new("T0").unwrap();
        for i in 0..5 {
            core.publish(
                1_000 + i,
                None,
                &t,
                TopicMessage::new("0123456789").unwrap(),
            )
            .unwrap();
        }
        let kept = |core: &BrokerCore| core.stats().topics[0].consumed_kept;
        assert_eq!(kept(&core), 5);
        core.reconfigure(CoreConfig {
            consumed_retention_bytes: 1,
            ..config(u64::MAX / 4)
        });
        core.maintain(1_100);
        assert_eq!(kept(&core), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// After every call the index holds each topic's next event, and a core whose
        /// housekeeping sweeps only the topics the index says are due answers every call
        /// as one that sweeps every topic.
        #[test]
        fn the_index_is_exact_and_sweeping_the_due_topics_is_enough(
            ops in prop::collection::vec(op(), 1..80)
        ) {
            let mut indexed = BrokerCore::new(config(4_000));
            let mut reference = indexed.clone();
            let (mut now_a, mut now_b) = (1_000, 1_000);
            let (mut h_a, mut h_b, mut half_a, mut half_b) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for op in &ops {
                let a = step(&mut indexed, &mut now_a, &mut h_a, &mut half_a, op, false);
                let b = step(&mut reference, &mut now_b, &mut h_b, &mut half_b, op, true);
                prop_assert_eq!(a, b, "{:?}", op);
                prop_assert!(indexed.topics.index_is_exact(&indexed.config));
                prop_assert_eq!(indexed.next_wakeup(), reference.next_wakeup());
                // A sweep the index skipped would show here first: every event that makes
                // messages visible bumps its topic's version when swept.
                for name in TOPICS {
                    let name = TopicName::new(name).unwrap();
                    prop_assert_eq!(
                        indexed.topic_version(None, &name),
                        reference.topic_version(None, &name),
                        "{:?}", op
                    );
                }
                prop_assert_eq!(
                    serde_json::to_value(indexed.stats()).unwrap(),
                    serde_json::to_value(reference.stats()).unwrap()
                );
            }
            // A core read back from its snapshot form builds the same index.
            let bytes = postcard::to_allocvec(&indexed).unwrap();
            let mut read: BrokerCore = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(read.next_wakeup(), indexed.next_wakeup());
            read.reindex();
            prop_assert!(read.topics.index_is_exact(&read.config));
        }
    }
}
