//! [`TimeIndex`]: `(time, seq)` pairs in order, for the core's time-ordered queues.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq as _, Serializer};
use serde::{Deserialize, Serialize};

/// A set of `(time, seq)` pairs ordered as a `BTreeSet<(u64, u64)>` orders them, grouped by
/// time: the sequence numbers of one time are one value under that time's key (inline when
/// there is one, a sorted deque when there are a few, a set when there are more).
///
/// The core's queues are keyed by times that mostly grow (a release, an expiry, a message's
/// next visibility is "now" plus a constant), and under load many pairs share a time (the
/// acks of one request, the publishes of one millisecond): a pair for the latest time goes
/// into its group, found along the tree's right edge without a search — about a fifth of a
/// `BTreeSet<(u64, u64)>` insert (BENCHMARKS.md, "Broker instructions per request (tenth
/// session)"). Within a time, sequence numbers mostly arrive in order and leave in order (a
/// queue is consumed from its head, deliveries are acked in the order they went out), so a
/// group of up to [`FEW_MAX`] is a sorted deque — adding at its back and taking from its
/// front cost a comparison — and only a larger one a set, where no change moves more than
/// a few KiB whatever the order. A pair with a time of its own costs a map insert, as the
/// set's insert does, and no allocation beyond the map's (24 bytes per pair in the tree's
/// nodes against the set's 16: little beside the message each pair stands for); the
/// answers and the worst cases are the set's (logarithmic in the times, at most
/// [`FEW_MAX`] / 2 moves within one, whatever the order).
///
/// Serialized as the `BTreeSet<(u64, u64)>` it replaces (the pairs in order), so
/// snapshots read and write the same bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    /// Sequence numbers by time; no entry is empty.
    by_time: BTreeMap<u64, Seqs>,
    /// Pairs held.
    len: usize,
}

/// Most sequence numbers one time keeps in a sorted deque; beyond, a set.
const FEW_MAX: usize = 512;

/// The sequence numbers of one time: one inline (the usual case on a quiet queue), a sorted
/// deque of two to [`FEW_MAX`], or a set (boxed: an entry stays two words). Equal when they
/// hold the same numbers, whichever form: a set that shrank stays a set.
#[derive(Clone, Debug)]
#[allow(
    clippy::box_collection,
    reason = "boxed on purpose: the common lone pair stays two words instead of four"
)]
enum Seqs {
    One(u64),
    Few(Box<VecDeque<u64>>),
    Many(Box<BTreeSet<u64>>),
}

impl PartialEq for Seqs {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Seqs {}

impl Seqs {
    /// Adds `seq`; `false` if it was there.
    fn insert(&mut self, seq: u64) -> bool {
        match self {
            Self::One(one) if *one == seq => false,
            Self::One(one) => {
                let (a, b) = if *one < seq { (*one, seq) } else { (seq, *one) };
                *self = Self::Few(Box::new(VecDeque::from([a, b])));
                true
            }
            Self::Few(few) => {
                // In order, the usual case: at the back without a search.
                if few.back().is_some_and(|&last| last < seq) {
                    few.push_back(seq);
                } else {
                    match few.binary_search(&seq) {
                        Ok(_) => return false,
                        Err(at) => few.insert(at, seq),
                    }
                }
                if few.len() > FEW_MAX {
                    *self = Self::Many(Box::new(few.iter().copied().collect()));
                }
                true
            }
            Self::Many(set) => set.insert(seq),
        }
    }

    /// Removes `seq`; `(removed, now empty)`.
    fn remove(&mut self, seq: u64) -> (bool, bool) {
        let removed = match self {
            Self::One(one) => return (*one == seq, *one == seq),
            Self::Few(few) => {
                // In order, the usual case: the front without a search.
                if few.front() == Some(&seq) {
                    few.pop_front();
                    true
                } else if let Ok(at) = few.binary_search(&seq) {
                    few.remove(at);
                    true
                } else {
                    false
                }
            }
            Self::Many(set) => set.remove(&seq),
        };
        // Two or more stay grouped; one goes back inline.
        if let Some(last) = self.lone() {
            *self = Self::One(last);
        }
        (removed, false)
    }

    /// The number held by a group that has come down to one.
    fn lone(&self) -> Option<u64> {
        match self {
            Self::One(_) => None,
            Self::Few(few) => (few.len() == 1).then(|| few.front().copied()).flatten(),
            Self::Many(set) => (set.len() == 1).then(|| set.first().copied()).flatten(),
        }
    }

    /// The smallest.
    fn first(&self) -> u64 {
        match self {
            Self::One(one) => *one,
            Self::Few(few) => few.front().copied().unwrap_or_default(),
            Self::Many(set) => set.first().copied().unwrap_or_default(),
        }
    }

    /// Every one, in order.
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (one, few, many) = match self {
            Self::One(one) => (Some(*one), None, None),
            Self::Few(few) => (None, Some(few.iter().copied()), None),
            Self::Many(set) => (None, None, Some(set.iter().copied())),
        };
        one.into_iter()
            .chain(few.into_iter().flatten())
            .chain(many.into_iter().flatten())
    }
}

impl TimeIndex {
    /// Adds a pair; `false` if it was there.
    pub(crate) fn insert(&mut self, (time, seq): (u64, u64)) -> bool {
        let added = match self.by_time.last_entry() {
            Some(mut last) if *last.key() == time => last.get_mut().insert(seq),
            _ => match self.by_time.entry(time) {
                Entry::Occupied(mut at) => at.get_mut().insert(seq),
                Entry::Vacant(at) => {
                    at.insert(Seqs::One(seq));
                    true
                }
            },
        };
        self.len += usize::from(added);
        added
    }

    /// Removes a pair; `false` if it was not there.
    ///
    /// Most pairs leave from an end of the order — a queue's head is delivered, the
    /// latest deliveries are acked — so the first and last times are tried before a search
    /// (an edge of the tree is followed without comparing keys), and the time's entry is
    /// taken out where it was found.
    pub(crate) fn remove(&mut self, &(time, seq): &(u64, u64)) -> bool {
        let at = match self.by_time.first_entry() {
            Some(first) if *first.key() == time => Some(first),
            _ => match self.by_time.last_entry() {
                Some(last) if *last.key() == time => Some(last),
                _ => match self.by_time.entry(time) {
                    Entry::Occupied(at) => Some(at),
                    Entry::Vacant(_) => None,
                },
            },
        };
        let Some(mut at) = at else {
            return false;
        };
        let (removed, empty) = at.get_mut().remove(seq);
        if empty {
            at.remove();
        }
        self.len -= usize::from(removed);
        removed
    }

    /// The smallest pair.
    pub(crate) fn first(&self) -> Option<(u64, u64)> {
        let (&time, seqs) = self.by_time.first_key_value()?;
        Some((time, seqs.first()))
    }

    /// Removes and returns the smallest pair.
    pub(crate) fn pop_first(&mut self) -> Option<(u64, u64)> {
        let pair = self.first()?;
        self.remove(&pair);
        Some(pair)
    }

    /// The smallest time at or after `from` that has a pair.
    pub(crate) fn first_time_from(&self, from: u64) -> Option<u64> {
        self.by_time.range(from..).next().map(|(&time, _)| time)
    }

    /// Pairs held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Removes every pair.
    pub(crate) fn clear(&mut self) {
        self.by_time.clear();
        self.len = 0;
    }

    /// The pairs in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (self.by_time.iter()).flat_map(|(&time, seqs)| seqs.iter().map(move |seq| (time, seq)))
    }
}

impl Serialize for TimeIndex {
    /// As a `BTreeSet<(u64, u64)>`: the pairs in order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The length up front (postcard writes it first; a flattened iterator cannot tell).
        let mut seq = s.serialize_seq(Some(self.len))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TimeIndex {
    /// From a `BTreeSet<(u64, u64)>`'s form (any order; a repeated pair counts once).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = TimeIndex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of (time, seq) pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TimeIndex, A::Error> {
                let mut index = TimeIndex::default();
                while let Some(pair) = seq.next_element::<(u64, u64)>()? {
                    index.insert(pair);
                }
                Ok(index)
            }
        }
        d.deserialize_seq(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        Remove(u64, u64),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct times and sequence numbers, so that pairs meet and repeat.
        prop_oneof![
            4 => (0u64..6, 0u64..8).prop_map(|(t, s)| Op::Insert(t, s)),
            2 => (0u64..6, 0u64..8).prop_map(|(t, s)| Op::Remove(t, s)),
            1 => Just(Op::PopFirst),
        ]
    }

    /// Every group holds two or more; a deque holds at most [`FEW_MAX`], in order.
    fn well_formed(index: &TimeIndex) -> bool {
        index.by_time.values().all(|s| match s {
            Seqs::One(_) => true,
            Seqs::Few(few) => {
                (2..=FEW_MAX).contains(&few.len())
                    && few.iter().zip(few.iter().skip(1)).all(|(a, b)| a < b)
            }
            Seqs::Many(set) => set.len() >= 2,
        })
    }

    #[test]
    fn groups_of_one_time_compare_by_what_they_hold() {
        // A group that grew past the deque's bound stays a set as it shrinks: it still
        // equals a deque of the same numbers (equal cores compare equal whatever their past).
        let (mut grown, mut built) = (TimeIndex::default(), TimeIndex::default());
        for seq in 0..=FEW_MAX as u64 {
            grown.insert((7, seq));
        }
        assert!(matches!(grown.by_time.get(&7), Some(Seqs::Many(_))));
        for seq in 3..=FEW_MAX as u64 {
            grown.remove(&(7, seq));
        }
        for seq in [2, 0, 1] {
            built.insert((7, seq));
        }
        assert!(matches!(built.by_time.get(&7), Some(Seqs::Few(_))));
        assert_eq!(grown, built);
        built.insert((7, 3));
        assert_ne!(grown, built);
    }

    #[test]
    fn an_entry_is_two_words() {
        // What the type's description promises for a quiet queue (a lone pair per time).
        assert_eq!(std::mem::size_of::<Seqs>(), 16);
    }

    /// Changes within few times and many sequence numbers: groups past [`FEW_MAX`], added
    /// and taken out of order as well as in order.
    fn large_op() -> impl Strategy<Value = Op> {
        let seq = 0u64..(FEW_MAX as u64 * 3);
        prop_oneof![
            6 => (0u64..2, seq.clone()).prop_map(|(t, s)| Op::Insert(t, s)),
            3 => (0u64..2, seq).prop_map(|(t, s)| Op::Remove(t, s)),
            1 => Just(Op::PopFirst),
        ]
    }

    /// Inserts in order (runs of sequence numbers), the core's usual pattern, between
    /// arbitrary changes.
    fn run_op() -> impl Strategy<Value = Vec<Op>> {
        prop_oneof![
            (0u64..2, 0u64..(FEW_MAX as u64 * 2), 1u64..(FEW_MAX as u64))
                .prop_map(|(t, from, n)| (from..from + n).map(|s| Op::Insert(t, s)).collect()),
            (0u64..2, 0u64..(FEW_MAX as u64 * 2), 1u64..(FEW_MAX as u64))
                .prop_map(|(t, from, n)| (from..from + n).map(|s| Op::Remove(t, s)).collect()),
            large_op().prop_map(|op| vec![op]),
        ]
    }

    /// Applies `ops` to an index and to the `BTreeSet<(u64, u64)>` it stands for, checking
    /// every answer, the length, the first pair and the form after each change; then the
    /// order and the serialized form (the set's: snapshots keep their bytes). The index.
    fn run_against_the_set(
        ops: impl IntoIterator<Item = Op>,
    ) -> Result<(TimeIndex, BTreeSet<(u64, u64)>), TestCaseError> {
        let mut index = TimeIndex::default();
        let mut model = BTreeSet::new();
        for op in ops {
            match op {
                Op::Insert(t, s) => prop_assert_eq!(index.insert((t, s)), model.insert((t, s))),
                Op::Remove(t, s) => prop_assert_eq!(index.remove(&(t, s)), model.remove(&(t, s))),
                Op::PopFirst => prop_assert_eq!(index.pop_first(), model.pop_first()),
            }
            prop_assert_eq!(index.len(), model.len());
            prop_assert_eq!(index.first(), model.first().copied());
            prop_assert!(
                well_formed(&index),
                "a group of fewer than two, or out of order"
            );
        }
        prop_assert_eq!(
            index.iter().collect::<Vec<_>>(),
            model.iter().copied().collect::<Vec<_>>()
        );
        let bytes = postcard::to_allocvec(&index).expect("encode");
        prop_assert_eq!(
            &bytes,
            &postcard::to_allocvec(&model).expect("encode the set")
        );
        let read: TimeIndex = postcard::from_bytes(&bytes).expect("decode");
        prop_assert_eq!(&read, &index);
        Ok((index, model))
    }

    proptest! {
        /// Every answer is the `BTreeSet<(u64, u64)>`'s, after any sequence of changes.
        #[test]
        fn answers_as_a_btreeset_of_pairs(ops in proptest::collection::vec(op(), 0..60), from in 0u64..7) {
            let (index, model) = run_against_the_set(ops)?;
            prop_assert_eq!(
                index.first_time_from(from),
                model.range((from, 0)..).next().map(|&(t, _)| t)
            );
        }

        /// The same with groups that cross [`FEW_MAX`].
        #[test]
        fn large_groups_answer_as_a_btreeset_of_pairs(
            runs in proptest::collection::vec(run_op(), 0..40),
        ) {
            run_against_the_set(runs.into_iter().flatten())?;
        }
    }
}
