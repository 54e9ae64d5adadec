//! Where the journal lives: the [`LogEngine`] trait and the engine the broker ships,
//! [`RedbEngine`] (redb, an embedded copy-on-write B-tree with checksummed, fsynced commits).
//! The benchmark `benches/storage_engines.rs` implements the trait for fjall as well and
//! compares the two (ARCHITECTURE.md, "Durability").

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

/// The journal's storage failed or holds something this broker cannot read.
///
/// ```
/// use mq_broker::durable::StorageError;
/// let e = StorageError::Corrupt("record 7 is missing".into());
/// assert_eq!(e.to_string(), "corrupt journal: record 7 is missing");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The storage engine reported an error (I/O, full disk, locked database, …).
    #[error("storage engine: {0}")]
    Engine(String),
    /// Stored data that does not decode, or a gap in the journal.
    #[error("corrupt journal: {0}")]
    Corrupt(String),
    /// The data directory was written by an incompatible version of the broker.
    #[error("data written in format {found}; this broker reads format {expected}")]
    Format {
        /// The format found on disk.
        found: u32,
        /// The format this build reads and writes.
        expected: u32,
    },
    /// An earlier write failed; nothing is made durable any more (restart the broker).
    #[error("the journal stopped after a storage failure: {0}")]
    Failed(Arc<str>),
    /// The journal was closed (the broker is shutting down).
    #[error("the journal is closed")]
    Closed,
}

/// What [`LogEngine::read_records`] calls for each record: `(index, bytes)`.
pub type RecordVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<(), StorageError> + 'a;

/// A durable, ordered store of journal records plus one snapshot.
///
/// Records carry consecutive indexes starting at 1. A snapshot "covers" every record up to
/// its index: once it is installed those records are not needed any more, and the engine
/// deletes them at once or when convenient (e.g. a whole segment at a time; recovery reads
/// only the records after the snapshot). Each method that writes returns only once its change is durable
/// (fsync or the engine's equivalent) and is atomic: after a crash either all of it or
/// none of it is there.
///
/// ```
/// use mq_broker::durable::{LogEngine, RedbEngine};
/// let mut engine = RedbEngine::in_memory()?;
/// engine.append(&[(1, b"one".to_vec()), (2, b"two".to_vec())])?;
/// engine.install_snapshot(1, b"state after 1")?;
/// let mut seen = Vec::new();
/// engine.read_records(1, &mut |index, bytes| {
///     seen.push((index, bytes.to_vec()));
///     Ok(())
/// })?;
/// assert_eq!(seen, vec![(2, b"two".to_vec())]);
/// assert_eq!(engine.load_snapshot()?, Some((1, b"state after 1".to_vec())));
/// # Ok::<(), mq_broker::durable::StorageError>(())
/// ```
pub trait LogEngine: Send + 'static {
    /// Appends records (ascending indexes) in one durable commit.
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError>;

    /// Replaces the snapshot with one covering records `..=upto` (and lets go of those
    /// records), in one durable commit.
    fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError>;

    /// The current snapshot and the index it covers, if one was ever installed.
    fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError>;

    /// Visits the records with an index greater than `after`, in index order.
    fn read_records(&self, after: u64, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError>;
}

/// `"snapshot"` → `(upto, chunks, length)` of the current snapshot.
const META: TableDefinition<'_, &str, (u64, u64, u64)> = TableDefinition::new("meta");
/// Snapshot chunk size (keeps every value far below redb's limits).
const CHUNK: usize = 1 << 20;
/// Records per journal segment (one redb table each).
const SEGMENT: u64 = 8_192;

/// The table of journal segment `n` (records `n * SEGMENT ..= (n + 1) * SEGMENT - 1`).
fn segment_name(n: u64) -> String {
    format!("log.{n:016x}")
}

/// The table holding the snapshot that covers `..=upto`.
fn snapshot_name(upto: u64) -> String {
    format!("snapshot.{upto:016x}")
}

fn parse_segment(table: &str) -> Option<u64> {
    u64::from_str_radix(table.strip_prefix("log.")?, 16).ok()
}

fn records(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

/// The shipped engine: one redb file (`broker.redb` in the data directory). Every commit
/// is durable (`Durability::Immediate`: checksummed pages, then fsync).
///
/// The journal is split into segments of 8,192 records, one table each, and every snapshot
/// is a table of its own: installing a snapshot deletes whole tables (cheap in a B-tree
/// store, where deleting records one by one costs a rebalancing each and grows the file;
/// see the benchmark). Records of a segment only partly covered by the snapshot stay until
/// a later snapshot covers the whole segment; [`LogEngine::read_records`] skips them.
pub struct RedbEngine {
    db: Database,
    /// Segments that exist, by number.
    segments: BTreeSet<u64>,
}

impl std::fmt::Debug for RedbEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbEngine")
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

fn engine<E: Into<redb::Error>>(e: E) -> StorageError {
    StorageError::Engine(e.into().to_string())
}

impl RedbEngine {
    /// Name of the database file inside the data directory.
    pub const FILE: &'static str = "broker.redb";

    /// Opens (or creates) the engine in `dir`, creating the directory if needed. A database
    /// left by a crash is repaired by redb on open. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Engine(format!("creating data directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(Self::FILE);
        let db = Database::create(&path)
            .map_err(|e| StorageError::Engine(format!("{}: {e}", path.display())))?;
        Self::init(db)
    }

    /// An engine in memory (nothing survives the process; for tests).
    pub fn in_memory() -> Result<Self, StorageError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(engine)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(engine)?;
        txn.open_table(META).map_err(engine)?;
        let segments = txn
            .list_tables()
            .map_err(engine)?
            .filter_map(|t| parse_segment(t.name()))
            .collect();
        txn.commit().map_err(engine)?;
        Ok(Self { db, segments })
    }
}

impl LogEngine for RedbEngine {
    fn append(&mut self, records_in: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(engine)?;
        let mut rest = records_in;
        while let Some(&(first, _)) = rest.first() {
            let segment = first / SEGMENT;
            let len = rest
                .iter()
                .position(|(index, _)| index / SEGMENT != segment)
                .unwrap_or(rest.len());
            let (these, after) = rest.split_at(len);
            let name = segment_name(segment);
            let mut table = txn.open_table(records(&name)).map_err(engine)?;
            for (index, bytes) in these {
                table.insert(*index, bytes.as_slice()).map_err(engine)?;
            }
            rest = after;
        }
        txn.commit().map_err(engine)?;
        for (index, _) in records_in {
            self.segments.insert(index / SEGMENT);
        }
        Ok(())
    }

    fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(engine)?;
        let covered: Vec<u64> = self
            .segments
            .iter()
            .copied()
            .filter(|&n| n.saturating_add(1).saturating_mul(SEGMENT) <= upto.saturating_add(1))
            .collect();
        {
            let mut meta = txn.open_table(META).map_err(engine)?;
            let old = meta.get("snapshot").map_err(engine)?.map(|g| g.value().0);
            let name = snapshot_name(upto);
            if old != Some(upto) {
                txn.delete_table(records(&name)).map_err(engine)?;
            }
            let mut chunks = txn.open_table(records(&name)).map_err(engine)?;
            chunks.retain(|_, _| false).map_err(engine)?;
            let mut count = 0u64;
            for chunk in snapshot.chunks(CHUNK) {
                chunks.insert(count, chunk).map_err(engine)?;
                count += 1;
            }
            meta.insert("snapshot", (upto, count, snapshot.len() as u64))
                .map_err(engine)?;
            if let Some(old) = old.filter(|&old| old != upto) {
                txn.delete_table(records(&snapshot_name(old)))
                    .map_err(engine)?;
            }
            for &n in &covered {
                txn.delete_table(records(&segment_name(n)))
                    .map_err(engine)?;
            }
        }
        txn.commit().map_err(engine)?;
        for n in covered {
            self.segments.remove(&n);
        }
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let meta = txn.open_table(META).map_err(engine)?;
        let Some((upto, count, len)) = meta.get("snapshot").map_err(engine)?.map(|g| g.value())
        else {
            return Ok(None);
        };
        let name = snapshot_name(upto);
        let chunks = txn.open_table(records(&name)).map_err(engine)?;
        let stored = chunks.len().map_err(engine)?;
        if stored != count {
            return Err(StorageError::Corrupt(format!(
                "snapshot has {stored} chunks, expected {count}"
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for (expected, entry) in chunks.iter().map_err(engine)?.enumerate() {
            let (number, chunk) = entry.map_err(engine)?;
            if number.value() != expected as u64 {
                return Err(StorageError::Corrupt(format!(
                    "snapshot chunk {expected} is missing"
                )));
            }
            bytes.extend_from_slice(chunk.value());
        }
        if bytes.len() as u64 != len {
            return Err(StorageError::Corrupt(format!(
                "snapshot is {} bytes, expected {len}",
                bytes.len()
            )));
        }
        Ok(Some((upto, bytes)))
    }

    fn read_records(&self, after: u64, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(());
        };
        let txn = self.db.begin_read().map_err(engine)?;
        for &n in self.segments.range(start / SEGMENT..) {
            let name = segment_name(n);
            let table = txn.open_table(records(&name)).map_err(engine)?;
            for entry in table.range(start..).map_err(engine)? {
                let (index, bytes) = entry.map_err(engine)?;
                visit(index.value(), bytes.value())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(engine: &RedbEngine, after: u64) -> Vec<u64> {
        let mut seen = Vec::new();
        engine
            .read_records(after, &mut |index, bytes| {
                assert_eq!(bytes, index.to_be_bytes());
                seen.push(index);
                Ok(())
            })
            .unwrap();
        seen
    }

    #[test]
    fn segments_are_dropped_whole_and_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("mq-redb-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let total = 3 * SEGMENT + 10;
        {
            let mut engine = RedbEngine::open(&dir).unwrap();
            assert_eq!(engine.load_snapshot().unwrap(), None);
            let all: Vec<(u64, Vec<u8>)> =
                (1..=total).map(|i| (i, i.to_be_bytes().to_vec())).collect();
            for batch in all.chunks(1_000) {
                engine.append(batch).unwrap();
            }
            assert_eq!(engine.segments.len(), 4);
            // Covers segments 0 and 1 entirely and part of segment 2.
            let upto = 2 * SEGMENT + 5;
            engine.install_snapshot(upto, &[1, 2, 3]).unwrap();
            assert_eq!(engine.segments.iter().copied().collect::<Vec<_>>(), [2, 3]);
            assert_eq!(
                collect(&engine, upto),
                (upto + 1..=total).collect::<Vec<_>>()
            );
            // A bigger snapshot (several chunks) replaces the first one.
            let big = vec![9u8; CHUNK * 2 + 7];
            engine.install_snapshot(total, &big).unwrap();
            assert_eq!(engine.load_snapshot().unwrap(), Some((total, big)));
            assert!(collect(&engine, total).is_empty());
            engine
                .append(&[(total + 1, (total + 1).to_be_bytes().to_vec())])
                .unwrap();
        }
        let engine = RedbEngine::open(&dir).unwrap();
        assert_eq!(collect(&engine, total), [total + 1]);
        assert_eq!(
            engine.load_snapshot().unwrap().unwrap().1.len(),
            CHUNK * 2 + 7
        );
        let txn = engine.db.begin_read().unwrap();
        let snapshots = txn
            .list_tables()
            .unwrap()
            .filter(|t| t.name().starts_with("snapshot."))
            .count();
        assert_eq!(snapshots, 1, "old snapshots are deleted");
        drop(txn);
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
