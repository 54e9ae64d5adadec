//! The core's maps keyed by the sequence numbers it assigns.

/// A map keyed by sequence numbers the core assigns (never by a client's choice), hashed by
/// [`SeqHasher`]: neighbouring sequence numbers sit in neighbouring slots.
pub(crate) type SeqMap<V> = std::collections::HashMap<u64, V, SeqHasher>;

/// The hasher of [`SeqMap`]: a sequence number is its own slot index, so a backlog published
/// in order lies in the table in order and is consumed, acked and trimmed in a sweep through
/// memory rather than at scattered slots (with a scattering hash, each of those lookups was
/// a cache miss once the backlog outgrew the caches: a perf profile of consume + ack over a
/// 500,000-message backlog spent ≈ 25% of the broker's time on them). Safe only for keys a
/// client cannot choose: chosen keys could all land in one slot.
///
/// The hash is `seq ^ (seq << 57)`: the low bits (the slot, in hashbrown's layout) are the
/// sequence number's, the top seven (hashbrown's per-slot tag) its low seven, so that the
/// 16 slots a probe compares at once carry different tags.
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
        self.0 ^ (self.0 << 57)
    }

    fn write_u64(&mut self, seq: u64) {
        self.0 = seq;
    }

    /// Not used by `u64` keys; folds any other input in, so the hasher stays correct (if
    /// not sequential) for them.
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
    fn a_sequence_number_is_its_own_slot_and_tags_neighbours_apart() {
        for seq in [0, 1, 2, 127, 128, 4095, 1 << 40, (1 << 57) - 1] {
            let h = hash(seq);
            // hashbrown's slot: the low bits; its tag: the top seven bits.
            assert_eq!(h & ((1 << 57) - 1), seq, "{seq}");
            assert_eq!(h >> 57, seq & 0x7f, "{seq}");
        }
        let tags: std::collections::BTreeSet<u64> = (1000..1016).map(|s| hash(s) >> 57).collect();
        assert_eq!(tags.len(), 16, "16 neighbours, 16 different tags");
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
