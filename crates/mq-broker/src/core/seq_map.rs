//! The core's maps keyed by the sequence numbers it assigns.

/// A map keyed by sequence numbers the core assigns (never by a client's choice), hashed by
/// [`SeqHasher`]: runs of neighbouring sequence numbers sit in neighbouring slots.
pub(crate) type SeqMap<V> = std::collections::HashMap<u64, V, SeqHasher>;

/// Sequence numbers per run: a run's keys take consecutive slots.
const RUN: u64 = 64;

/// The hasher of [`SeqMap`]: the 64 sequence numbers of a run (`seq / 64`) take 64
/// consecutive slots, at a place FxHash picks for the run. A backlog published in order
/// thus lies in the table in runs, and is consumed, acked and trimmed with one jump per 64
/// messages rather than one per message (with FxHash of the whole number each lookup in a
/// backlog larger than the caches was a cache miss: a perf profile of consume + ack over a
/// 500,000-message backlog spent ≈ 25% of the broker's time on them). The run's place is
/// hashed, not taken from its number, because one topic's sequence numbers need not be
/// consecutive (the counter is the core's, shared by every topic): publishes spread over
/// 2ᵏ topics give each topic numbers 2ᵏ apart, which a slot taken from the low bits would
/// pile into one probe chain.
///
/// The hash is `FxHash(seq / 64) + seq mod 64`, its top seven bits XORed with the low seven
/// of `seq`: hashbrown takes the slot from the low bits (the run's place, plus the offset in
/// the run) and a tag from the top seven (different for neighbours, so that a probe compares
/// few keys).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeqHasher(u64);

impl std::hash::BuildHasher for SeqHasher {
    type Hasher = SeqHasher;

    fn build_hasher(&self) -> SeqHasher {
        SeqHasher(0)
    }
}

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        let run = std::hash::BuildHasher::hash_one(&rustc_hash::FxBuildHasher, self.0 / RUN);
        run.wrapping_add(self.0 % RUN) ^ (self.0 << 57)
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(23) ^ n;
    }

    /// Not used by `u64` keys; folds any other input in, so the hasher stays correct (if
    /// not in runs) for them.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash, Hasher};

    fn hash(seq: u64) -> u64 {
        SeqHasher::default().hash_one(seq)
    }

    #[test]
    fn a_run_takes_consecutive_slots_and_runs_spread() {
        let slot = |seq: u64| hash(seq) & ((1 << 57) - 1);
        let base = slot(64 * 1000);
        for i in 0..64 {
            assert_eq!(
                slot(64 * 1000 + i),
                base + i,
                "the run's slots are consecutive"
            );
        }
        // Neighbouring runs land apart, with different tags.
        let tags: std::collections::BTreeSet<u64> =
            (0..16).map(|r| hash(64 * (5000 + r)) >> 57).collect();
        assert!(tags.len() >= 12, "{tags:?}");
    }

    /// One topic's sequence numbers are those the core gave it between other topics'
    /// publishes: at any spacing they spread over the table (with the slot taken from the
    /// low bits, numbers 4096 apart all fell into one probe chain).
    #[test]
    fn spaced_sequence_numbers_spread_over_the_slots() {
        const KEYS: u64 = 10_000;
        const SLOTS: u64 = 16_384;
        for stride in [1, 2, 3, 7, 64, 100, 128, 1024, 4096, 262_144, 1 << 30] {
            let mut per_slot = std::collections::HashMap::new();
            let mut per_group = std::collections::HashMap::new();
            for k in 0..KEYS {
                let slot = hash(12_345 + k * stride) % SLOTS;
                *per_slot.entry(slot).or_insert(0u32) += 1;
                *per_group.entry(slot / 16).or_insert(0u32) += 1;
            }
            let worst = per_slot.values().max().copied().unwrap_or(0);
            let worst_group = per_group.values().max().copied().unwrap_or(0);
            // Random keys: at most ≈ 7 per slot, ≈ 25 per 16-slot group.
            assert!(
                worst <= 8 && worst_group <= 40,
                "stride {stride}: {worst} per slot, {worst_group} per group"
            );
        }
    }

    #[test]
    fn other_keys_still_hash_by_their_bytes() {
        let mut a = SeqHasher::default();
        "abc".hash(&mut a);
        let mut b = SeqHasher::default();
        "abd".hash(&mut b);
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn the_map_finds_what_it_holds_across_growth_and_removal() {
        let mut map: SeqMap<u64> = SeqMap::default();
        let mut model = std::collections::BTreeMap::new();
        // A sliding window, acks out of order, a far-away key: every slot pattern the core
        // makes.
        for seq in 0..20_000u64 {
            map.insert(seq, seq * 3);
            model.insert(seq, seq * 3);
            if seq >= 500 {
                let gone = seq - 500 + (seq % 7);
                assert_eq!(map.remove(&gone), model.remove(&gone));
            }
        }
        map.insert(u64::MAX - 3, 1);
        model.insert(u64::MAX - 3, 1);
        assert_eq!(map.len(), model.len());
        for (k, v) in &model {
            assert_eq!(map.get(k), Some(v));
        }
    }
}
