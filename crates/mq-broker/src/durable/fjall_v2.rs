//! The fjall 2 database of an earlier build (`DIR/fjall`, on-disk format V2, which fjall 3
//! does not open), read once to migrate it into fjall 3 ([`FjallEngine::open`]). Same layout
//! as the engine that wrote it: a `meta` partition holding the snapshot's [`Meta`], one
//! partition per snapshot (its chunks) and one per journal segment (records keyed by their
//! big-endian index).
//!
//! [`FjallEngine::open`]: super::FjallEngine::open

use std::collections::BTreeMap;
use std::path::Path;

use fjall2::{Keyspace, PartitionCreateOptions, PartitionHandle};

use super::engine::{
    Meta, RecordVisitor, SEGMENT, SNAPSHOT_KEY, StorageError, assemble_snapshot, engine, index_of,
    parse_name,
};

/// A fjall 2 database, open for reading its snapshot and records.
pub(super) struct Reader {
    keyspace: Keyspace,
    segments: BTreeMap<u64, PartitionHandle>,
    /// Snapshot partitions by generation.
    snapshots: BTreeMap<u64, PartitionHandle>,
    meta: Option<PartitionHandle>,
}

impl Reader {
    /// Opens the fjall 2 database at `path` (fjall replays its journal: a crash before the
    /// migration leaves what was durable). The caller holds the data directory's lock.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] when fjall 2 cannot open it.
    pub(super) fn open(path: &Path) -> Result<Self, StorageError> {
        let keyspace = fjall2::Config::new(path).open().map_err(|e| {
            StorageError::Engine(format!("fjall 2 database {}: {e}", path.display()))
        })?;
        let mut this = Self {
            keyspace,
            segments: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            meta: None,
        };
        for name in this.keyspace.list_partitions() {
            let handle = || {
                this.keyspace
                    .open_partition(&name, PartitionCreateOptions::default())
                    .map_err(engine)
            };
            if &*name == "meta" {
                this.meta = Some(handle()?);
            } else if let Some(n) = parse_name(&name, "log_") {
                let h = handle()?;
                this.segments.insert(n, h);
            } else if let Some(generation) = parse_name(&name, "snapshot_") {
                let h = handle()?;
                this.snapshots.insert(generation, h);
            }
        }
        Ok(this)
    }

    fn snapshot_meta(&self) -> Result<Option<Meta>, StorageError> {
        let Some(meta) = &self.meta else {
            return Ok(None);
        };
        match meta.get(SNAPSHOT_KEY).map_err(engine)? {
            None => Ok(None),
            Some(bytes) => Meta::decode(&bytes)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt("snapshot metadata".into())),
        }
    }

    /// As [`LogEngine::load_snapshot`](super::LogEngine::load_snapshot).
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] for a read failure, [`StorageError::Corrupt`] for a snapshot
    /// that cannot be assembled.
    pub(super) fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let Some(meta) = self.snapshot_meta()? else {
            return Ok(None);
        };
        let Some(partition) = self.snapshots.get(&meta.generation) else {
            return Err(StorageError::Corrupt(format!(
                "snapshot {} is missing",
                meta.generation
            )));
        };
        let chunks = partition.iter().map(|kv| kv.map_err(engine));
        assemble_snapshot(meta, chunks).map(Some)
    }

    /// As [`LogEngine::read_records`](super::LogEngine::read_records).
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] for a read failure, or the error `visit` returned.
    pub(super) fn read_records(
        &self,
        after: u64,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), StorageError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(());
        };
        for segment in self.segments.range(start / SEGMENT..).map(|(_, h)| h) {
            for kv in segment.range(start.to_be_bytes()..) {
                let (key, value) = kv.map_err(engine)?;
                visit(index_of(&key)?, &value)?;
            }
        }
        Ok(())
    }
}

/// The engine of the builds that used fjall 2, as it wrote (test only: it makes the
/// directories the migration is tested on).
#[cfg(test)]
pub(super) mod writer {
    use super::super::engine::{CHUNK, LogEngine, segment_name, snapshot_name};
    use super::*;
    use fjall2::PersistMode;

    /// The old engine: the reader plus its writes.
    pub(in super::super) struct V2Engine(Reader);

    impl V2Engine {
        /// Opens (creates) a fjall 2 database at `path` (`DIR/fjall`).
        pub(in super::super) fn open(path: &Path) -> Self {
            let mut reader = Reader::open(path).unwrap();
            if reader.meta.is_none() {
                reader.meta = Some(reader.partition("meta"));
            }
            Self(reader)
        }
    }

    impl Reader {
        fn partition(&self, name: &str) -> PartitionHandle {
            self.keyspace
                .open_partition(name, PartitionCreateOptions::default())
                .unwrap()
        }
    }

    impl LogEngine for V2Engine {
        fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
            let r = &mut self.0;
            let mut batch = r.keyspace.batch().durability(Some(PersistMode::SyncData));
            for (index, bytes) in records {
                let n = index / SEGMENT;
                if !r.segments.contains_key(&n) {
                    let handle = r.partition(&segment_name(n));
                    r.segments.insert(n, handle);
                }
                batch.insert(&r.segments[&n], index.to_be_bytes(), bytes.as_slice());
            }
            batch.commit().map_err(engine)
        }

        fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError> {
            let r = &mut self.0;
            let old = r.snapshot_meta()?;
            let generation = old.map_or(0, |m| m.generation.wrapping_add(1));
            let partition = r.partition(&snapshot_name(generation));
            let mut batch = r.keyspace.batch().durability(Some(PersistMode::SyncData));
            let mut chunks = 0u64;
            for chunk in snapshot.chunks(CHUNK) {
                batch.insert(&partition, chunks.to_be_bytes(), chunk);
                chunks += 1;
            }
            let meta = Meta {
                generation,
                upto,
                chunks,
                len: snapshot.len() as u64,
            };
            batch.insert(r.meta.as_ref().unwrap(), SNAPSHOT_KEY, meta.encode());
            batch.commit().map_err(engine)?;
            r.snapshots.insert(generation, partition);
            if let Some(old) = old
                && let Some(handle) = r.snapshots.remove(&old.generation)
            {
                r.keyspace.delete_partition(handle).map_err(engine)?;
            }
            let covered: Vec<u64> = r
                .segments
                .keys()
                .copied()
                .filter(|&n| (n + 1) * SEGMENT <= upto + 1)
                .collect();
            for n in covered {
                let handle = r.segments.remove(&n).unwrap();
                r.keyspace.delete_partition(handle).map_err(engine)?;
            }
            Ok(())
        }

        fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
            self.0.load_snapshot()
        }

        fn read_records(
            &self,
            after: u64,
            visit: &mut RecordVisitor<'_>,
        ) -> Result<(), StorageError> {
            self.0.read_records(after, visit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::{CHUNK, LogEngine};
    use super::super::{DurableOptions, FjallEngine, JournaledCore};
    use super::writer::V2Engine;
    use super::*;
    use crate::core::{Call, CoreConfig};
    use mq_proto::{
        BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName, WaitSeconds,
    };

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mq-fjall-v2-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn records(engine: &impl LogEngine, after: u64) -> Vec<(u64, Vec<u8>)> {
        let mut seen = Vec::new();
        engine
            .read_records(after, &mut |index, bytes| {
                seen.push((index, bytes.to_vec()));
                Ok(())
            })
            .unwrap();
        seen
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Records with their indexes.
    type Records = Vec<(u64, Vec<u8>)>;

    /// A data directory the fjall 2 engine wrote: a snapshot of several chunks, records in
    /// two segments, some before the snapshot (in a segment it covers only in part). Answers
    /// what the snapshot covers, its bytes, and the records after it.
    fn write_v2(dir: &Path) -> (u64, Vec<u8>, Records) {
        std::fs::create_dir_all(dir).unwrap();
        let mut old = V2Engine::open(&dir.join(V2_DIR_NAME));
        let total = SEGMENT + 100;
        let all: Vec<(u64, Vec<u8>)> = (1..=total)
            .map(|i| (i, format!("record {i}").into_bytes()))
            .collect();
        for batch in all.chunks(10_000) {
            old.append(batch).unwrap();
        }
        let snapshot: Vec<u8> = (0..CHUNK * 2 + 5).map(|i| (i % 251) as u8).collect();
        let upto = 70;
        old.install_snapshot(upto, &[1, 2, 3]).unwrap();
        old.install_snapshot(upto, &snapshot).unwrap();
        (
            upto,
            snapshot,
            all[usize::try_from(upto).unwrap()..].to_vec(),
        )
    }

    const V2_DIR_NAME: &str = "fjall";

    #[test]
    fn a_fjall_2_directory_is_migrated_with_its_snapshot_and_records() {
        let dir = temp_dir("engine");
        let (upto, snapshot, after) = write_v2(&dir);
        // Left by a migration that was interrupted: removed and done again.
        std::fs::create_dir_all(dir.join("fjall3.migrating/keyspaces")).unwrap();
        std::fs::write(dir.join("fjall3.migrating/junk"), b"half a copy").unwrap();
        {
            let engine = FjallEngine::open(&dir).unwrap();
            assert_eq!(
                engine.load_snapshot().unwrap(),
                Some((upto, snapshot.clone()))
            );
            assert_eq!(records(&engine, upto), after);
            assert_eq!(entries(&dir), ["LOCK", "fjall.v2-migrated", "fjall3"]);
        }
        // A crash after the new database was complete but before the old one was set
        // aside: the new one is used, the old one set aside under a free name.
        std::fs::rename(dir.join("fjall.v2-migrated"), dir.join("fjall")).unwrap();
        std::fs::create_dir_all(dir.join("fjall.v2-migrated")).unwrap();
        {
            let engine = FjallEngine::open(&dir).unwrap();
            assert_eq!(
                engine.load_snapshot().unwrap(),
                Some((upto, snapshot.clone()))
            );
            assert_eq!(records(&engine, upto), after);
            assert_eq!(
                entries(&dir),
                ["LOCK", "fjall.v2-migrated", "fjall.v2-migrated.1", "fjall3"]
            );
        }
        // Opened again: nothing left to migrate.
        {
            let mut engine = FjallEngine::open(&dir).unwrap();
            assert_eq!(records(&engine, upto), after);
            let next = after.last().unwrap().0 + 1;
            engine.append(&[(next, b"new".to_vec())]).unwrap();
        }
        // An earlier build run on the migrated directory: it finds no fjall 2 database,
        // creates an empty one and acknowledges messages into it. That database is not a
        // copy of the fjall 3 one: setting it aside as migrated would lose them, so the
        // directory is refused and left as it is.
        {
            let mut downgraded = V2Engine::open(&dir.join(V2_DIR_NAME));
            downgraded.install_snapshot(0, b"another core").unwrap();
            downgraded
                .append(&[(1, b"acknowledged by the earlier build".to_vec())])
                .unwrap();
        }
        let before = entries(&dir);
        let refused = FjallEngine::open(&dir).unwrap_err().to_string();
        assert!(
            refused.contains("not what was migrated") && refused.contains("earlier build"),
            "{refused}"
        );
        assert_eq!(entries(&dir), before, "nothing is set aside");
        assert!(dir.join("fjall").exists());
        // Once the operator moves it out, the fjall 3 database opens with what it had.
        std::fs::rename(dir.join("fjall"), dir.join("kept-aside")).unwrap();
        {
            let engine = FjallEngine::open(&dir).unwrap();
            assert_eq!(engine.load_snapshot().unwrap(), Some((upto, snapshot)));
            let seen = records(&engine, upto);
            assert_eq!(seen.len(), after.len() + 1);
            assert_eq!(seen.last().unwrap().1, b"new");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The whole way: a broker core journaled by the fjall 2 engine, then opened with the
    /// data directory as a build with fjall 3 does, recovers the same state.
    #[test]
    fn a_core_journaled_with_fjall_2_is_recovered_after_the_migration() {
        let dir = temp_dir("core");
        std::fs::create_dir_all(&dir).unwrap();
        let config = CoreConfig {
            id_seed: 5,
            ..CoreConfig::default()
        };
        let topic = TopicName::new("T").unwrap();
        let group = GroupId::new("GID_g").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let expected = {
            let mut core = JournaledCore::open_with(
                V2Engine::open(&dir.join(V2_DIR_NAME)),
                config.clone(),
                DurableOptions::default(),
            )
            .unwrap();
            for i in 0..20u64 {
                let call = Call::Publish {
                    instance: None,
                    topic: topic.clone(),
                    message: TopicMessage::new(format!("m{i}")).unwrap(),
                    producer: None,
                };
                core.apply(1_000 + i, call).unwrap();
            }
            let call = Call::Consume {
                instance: None,
                topic: topic.clone(),
                group: group.clone(),
                kind: ConsumeKind::Normal,
                filter: TagFilter::All,
                batch: BatchSize::new(3).unwrap(),
                wait: WaitSeconds::default(),
            };
            core.apply(2_000, call).unwrap();
            rt.block_on(core.sync_point().wait()).unwrap();
            rt.block_on(core.close());
            core.core().clone()
        };
        let core = JournaledCore::open(config, Some(&dir)).unwrap();
        assert!(core.is_durable());
        assert_eq!(core.core(), &expected);
        assert_eq!(core.stats().published, 20);
        drop(core);
        assert!(!dir.join("fjall").exists());
        assert!(dir.join("fjall.v2-migrated").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
