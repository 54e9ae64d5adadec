//! [`TimeIndex`]: `(time, seq)` pairs in order, for the core's time-ordered queues.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq as _, Serializer};
use serde::{Deserialize, Serialize};

/// A set of `(time, seq)` pairs ordered as a `BTreeSet<(u64, u64)>` orders them, grouped by
/// time: the sequence numbers of one time are one value under that time's key (inline when
/// there is one, a set when there are more).
///
/// The core's queues are keyed by times that mostly grow (a release, an expiry, a message's
/// next visibility is "now" plus a constant), and under load many pairs share a time (the
/// acks of one request, the publishes of one millisecond): a pair for the latest time goes
/// into its set, found along the tree's right edge without a search — about a fifth of a
/// `BTreeSet<(u64, u64)>` insert (BENCHMARKS.md, "Broker instructions per request (tenth
/// session)"). A pair with a time of its own costs a map insert, as the set's insert does,
/// and no allocation beyond the map's (24 bytes per pair in the tree's nodes against the
/// set's 16: little beside the message each pair stands for); the answers and the worst
/// cases are the set's (logarithmic, whatever the order of the times).
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

/// The sequence numbers of one time: one inline (the usual case on a quiet queue), or a set
/// of two or more (boxed: an entry stays two words).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::box_collection,
    reason = "boxed on purpose: the common lone pair stays two words instead of four"
)]
enum Seqs {
    One(u64),
    Many(Box<BTreeSet<u64>>),
}

impl Seqs {
    /// Adds `seq`; `false` if it was there.
    fn insert(&mut self, seq: u64) -> bool {
        match self {
            Self::One(one) if *one == seq => false,
            Self::One(one) => {
                *self = Self::Many(Box::new(BTreeSet::from([*one, seq])));
                true
            }
            Self::Many(set) => set.insert(seq),
        }
    }

    /// Removes `seq`; `(removed, now empty)`.
    fn remove(&mut self, seq: u64) -> (bool, bool) {
        match self {
            Self::One(one) => (*one == seq, *one == seq),
            Self::Many(set) => {
                let removed = set.remove(&seq);
                if let Some(&last) = set.first()
                    && set.len() == 1
                {
                    *self = Self::One(last);
                }
                (removed, false)
            }
        }
    }

    /// The smallest.
    fn first(&self) -> u64 {
        match self {
            Self::One(one) => *one,
            Self::Many(set) => set.first().copied().unwrap_or_default(),
        }
    }

    /// Every one, in order.
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (one, many) = match self {
            Self::One(one) => (Some(*one), None),
            Self::Many(set) => (None, Some(set.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
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
    pub(crate) fn remove(&mut self, &(time, seq): &(u64, u64)) -> bool {
        let Some(seqs) = self.by_time.get_mut(&time) else {
            return false;
        };
        let (removed, empty) = seqs.remove(seq);
        if empty {
            self.by_time.remove(&time);
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

    #[test]
    fn an_entry_is_two_words() {
        // What the type's description promises for a quiet queue (a lone pair per time).
        assert_eq!(std::mem::size_of::<Seqs>(), 16);
    }

    proptest! {
        /// Every answer is the `BTreeSet<(u64, u64)>`'s, after any sequence of changes, and
        /// the serialized form is the set's (snapshots keep their bytes).
        #[test]
        fn answers_as_a_btreeset_of_pairs(ops in proptest::collection::vec(op(), 0..60), from in 0u64..7) {
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
                // Canonical: a set only for two or more (so equal indexes compare equal).
                let canonical = index.by_time.values().all(|s| match s {
                    Seqs::One(_) => true,
                    Seqs::Many(set) => set.len() >= 2,
                });
                prop_assert!(canonical, "a set of fewer than two");
            }
            prop_assert_eq!(index.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(
                index.first_time_from(from),
                model.range((from, 0)..).next().map(|&(t, _)| t)
            );
            let bytes = postcard::to_allocvec(&index).expect("encode");
            prop_assert_eq!(&bytes, &postcard::to_allocvec(&model).expect("encode the set"));
            let read: TimeIndex = postcard::from_bytes(&bytes).expect("decode");
            prop_assert_eq!(read, index);
        }
    }
}
