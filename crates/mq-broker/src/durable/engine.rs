//! Where the journal lives: the [`LogEngine`] trait and the engine the broker ships,
//! [`FjallEngine`] (fjall 3, an embedded log-structured merge tree: every commit is one
//! sequential append to its journal, then fdatasync). A data directory written by an earlier
//! build (fjall 2, whose format fjall 3 does not open) is migrated at its first open (see
//! [`FjallEngine::open`]). The benchmark
//! `benches/storage_engines.rs` implements the trait for redb as well and compares the two
//! (ARCHITECTURE.md, "Durability").

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// The journal's storage failed or holds something this broker cannot read.
///
/// ```
/// use mq_broker::durable::StorageError;
/// let e = StorageError::Corrupt("record 7 is missing".into());
/// assert_eq!(
///     e.to_string(),
///     "corrupt journal: record 7 is missing (restore the data directory from a backup, or \
///      move it aside to start with an empty one)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The storage engine reported an error (I/O, full disk, locked database, …).
    #[error("storage engine: {0}")]
    Engine(String),
    /// Stored data that does not decode, or a gap in the journal.
    #[error(
        "corrupt journal: {0} (restore the data directory from a backup, or move it aside to \
         start with an empty one)"
    )]
    Corrupt(String),
    /// The stored data decodes but holds a name this version refuses: a topic name, group
    /// id or instance id with a character an earlier version took (`%`, refused since
    /// RocketMQ reserves it and a URL path decodes it). Nothing is damaged; the data must be
    /// changed by the version that wrote it.
    #[error(
        "{place} holds the {what} {value:?}, which this version refuses: {reason}; open \
         it with the previous version and delete the topics and groups with such names \
         (mq admin topics delete, mq admin groups delete), or start with an empty \
         --data-dir"
    )]
    RefusedName {
        /// Where: `the snapshot` or `a journal record`, and the data directory (`… in DIR`)
        /// when it was opened by path.
        place: String,
        /// `topic name`, `group id` or `instance id`.
        what: &'static str,
        /// The stored name.
        value: String,
        /// The rule it breaks (see [`mq_proto::InvalidValue`]).
        reason: String,
    },
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
/// use mq_broker::durable::{FjallEngine, LogEngine};
/// # let dir = std::env::temp_dir().join(format!("mq-engine-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let mut engine = FjallEngine::open(&dir)?;
/// engine.append(&[(1, b"one".to_vec()), (2, b"two".to_vec())])?;
/// engine.install_snapshot(1, b"state after 1")?;
/// let mut seen = Vec::new();
/// engine.read_records(1, &mut |index, bytes| {
///     seen.push((index, bytes.to_vec()));
///     Ok(())
/// })?;
/// assert_eq!(seen, vec![(2, b"two".to_vec())]);
/// assert_eq!(engine.load_snapshot()?, Some((1, b"state after 1".to_vec())));
/// # drop(engine);
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), mq_broker::durable::StorageError>(())
/// ```
pub trait LogEngine: Send + 'static {
    /// Appends records (ascending indexes) in one durable commit.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] when the commit failed; the records may then be absent.
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError>;

    /// Replaces the snapshot with one covering records `..=upto` (and lets go of those
    /// records), in one durable commit.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] when the commit failed; the previous snapshot stays.
    fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError>;

    /// The current snapshot and the index it covers, if one was ever installed.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] for a read failure, [`StorageError::Corrupt`] for a snapshot
    /// that cannot be assembled.
    fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError>;

    /// Visits the records with an index greater than `after`, in index order.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] for a read failure, or the error `visit` returned (reading
    /// stops there).
    fn read_records(&self, after: u64, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError>;
}

/// Snapshot chunk size (keeps values moderate in the memtable and the journal).
pub(super) const CHUNK: usize = 1 << 20;
/// Records per journal segment (one keyspace each).
pub(super) const SEGMENT: u64 = 65_536;
/// Key of the current snapshot's [`Meta`] in the `meta` keyspace.
pub(super) const SNAPSHOT_KEY: &str = "snapshot";

/// The keyspace of journal segment `n` (records `n * SEGMENT ..= (n + 1) * SEGMENT - 1`).
pub(super) fn segment_name(n: u64) -> String {
    format!("log_{n:016x}")
}

/// The keyspace holding snapshot number `generation`.
pub(super) fn snapshot_name(generation: u64) -> String {
    format!("snapshot_{generation:016x}")
}

/// Where the current snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    /// Number of the snapshot (names its keyspace; each install takes the next one).
    pub(super) generation: u64,
    /// The last record it covers.
    pub(super) upto: u64,
    /// Chunks and bytes.
    pub(super) chunks: u64,
    pub(super) len: u64,
}

impl Meta {
    pub(super) fn encode(&self) -> [u8; 32] {
        let mut out = [0; 32];
        for (slot, v) in
            out.chunks_exact_mut(8)
                .zip([self.generation, self.upto, self.chunks, self.len])
        {
            slot.copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        let mut v = bytes
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes));
        Some(Self {
            generation: v.next()?,
            upto: v.next()?,
            chunks: v.next()?,
            len: v.next()?,
        })
    }
}

pub(super) fn parse_name(name: &str, prefix: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix(prefix)?, 16).ok()
}

pub(super) fn engine(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(e.to_string())
}

pub(super) fn index_of(key: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt(format!("journal key of {} bytes", key.len())))
}

/// Subdirectory of the data directory holding the fjall 3 database.
const DATABASE_DIR: &str = "fjall3";
/// Where a migration from fjall 2 builds the fjall 3 database before it is complete
/// (renamed to [`DATABASE_DIR`] once durable; removed by the next open if left over).
const MIGRATING_DIR: &str = "fjall3.migrating";
/// Where builds with fjall 2 kept their database (format V2).
const V2_DIR: &str = "fjall";
/// Where a migrated fjall 2 database is set aside (a number is added if taken).
const V2_MIGRATED_DIR: &str = "fjall.v2-migrated";
/// Most record bytes per commit while migrating.
const MIGRATION_BATCH_BYTES: usize = 16 << 20;

/// The shipped engine: a fjall 3 database in `DIR/fjall3`. Every commit is one batch
/// appended to fjall's journal and made durable with fdatasync (`PersistMode::SyncData`);
/// fjall replays its journal after a crash. A journal write or sync that fails (a full
/// disk) fails the commit and poisons the database: nothing more is written until it is
/// opened again (fjall 2 ignored a failed journal write and answered the commit as durable,
/// leaving a torn batch that ended its recovery: fjall-rs/fjall#304, #308).
///
/// The journal is split into segments of 65,536 records, one keyspace each, and each
/// snapshot is a keyspace of its own: once a snapshot is durable, the keyspaces it covers
/// are dropped whole (no tombstone per record). Records of a segment only partly covered
/// stay until a later snapshot covers the whole segment; [`LogEngine::read_records`] skips
/// them. A crash between the two steps leaves covered keyspaces behind, which the next
/// [`open`](Self::open) drops.
///
/// The engine holds an exclusive lock on `DIR/LOCK` while open: a second broker on the same
/// directory is refused.
pub struct FjallEngine {
    db: Database,
    meta: Keyspace,
    segments: BTreeMap<u64, Keyspace>,
    /// Held (locked) for as long as the engine is open; dropped last. `None` for the
    /// database a migration builds (its data directory's lock is held by the caller).
    _lock: Option<File>,
}

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallEngine")
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

/// `dir` made durable: its entries (a rename, a new subdirectory) survive a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FjallEngine {
    /// Name of the lock file inside the data directory.
    pub const LOCK_FILE: &'static str = "LOCK";

    /// Opens (or creates) the engine in `dir`, creating the directory if needed, and drops
    /// what an interrupted snapshot left behind. Fails if another engine has it open.
    ///
    /// A directory written by an earlier build (a fjall 2 database in `DIR/fjall`) is
    /// migrated first: its snapshot and records are copied into a new fjall 3 database
    /// (built in `DIR/fjall3.migrating`, made durable, then renamed to `DIR/fjall3`), and
    /// only then is the old database renamed to `DIR/fjall.v2-migrated` (logged as a
    /// warning: it may be deleted). A crash at any point leaves either the old database
    /// alone, which the next open migrates again, or the complete new one.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] when the directory cannot be created or opened, another
    /// engine holds its lock, a fjall 2 database in it cannot be migrated (it is then
    /// left as it was), or it holds both a fjall 3 database and a fjall 2 one written after
    /// the migration (by an earlier build: both are left as they are); [`StorageError::Corrupt`] for a fjall 2 database that cannot be read.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let context = |e: &dyn std::fmt::Display| {
            StorageError::Engine(format!("data directory {}: {e}", dir.display()))
        };
        // A file in its place: create_dir_all's own answer is "File exists".
        if dir.exists() && !dir.is_dir() {
            return Err(context(&"it exists and is not a directory"));
        }
        std::fs::create_dir_all(dir).map_err(|e| context(&e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(Self::LOCK_FILE))
            .map_err(|e| context(&e))?;
        fs4::FileExt::try_lock(&lock)
            .map_err(|e| context(&format!("in use by another broker? ({e})")))?;
        Self::migrate_v2(dir)?;
        Self::open_database(&dir.join(DATABASE_DIR), Some(lock))
    }

    /// Opens the fjall 3 database at `path`, drops what an interrupted snapshot left.
    fn open_database(path: &Path, lock: Option<File>) -> Result<Self, StorageError> {
        let context = |e: &dyn std::fmt::Display| {
            StorageError::Engine(format!("database {}: {e}", path.display()))
        };
        // A database that does not open (checksum, version, damaged files) says what to do.
        let db = Database::builder(path).open().map_err(|e| {
            context(&format_args!(
                "{e} (if it is damaged: restore the data directory from a backup, or move it \
                 aside to start with an empty one)"
            ))
        })?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(engine)?;
        let mut this = Self {
            db,
            meta,
            segments: BTreeMap::new(),
            _lock: lock,
        };
        let current = this.snapshot_meta()?;
        for name in this.db.list_keyspace_names() {
            if let Some(n) = parse_name(&name, "log_") {
                let handle = this.keyspace(&name)?;
                this.segments.insert(n, handle);
            } else if let Some(generation) = parse_name(&name, "snapshot_")
                && Some(generation) != current.map(|m| m.generation)
            {
                let handle = this.keyspace(&name)?;
                this.db.delete_keyspace(handle).map_err(engine)?;
            }
        }
        if let Some(meta) = current {
            this.drop_covered(meta.upto)?;
        }
        Ok(this)
    }

    /// Migrates the fjall 2 database of an earlier build (`DIR/fjall`), if there is one,
    /// into `DIR/fjall3` (see [`open`](Self::open)). The caller holds the directory's lock.
    fn migrate_v2(dir: &Path) -> Result<(), StorageError> {
        let old = dir.join(V2_DIR);
        let io = |what: &str, e: std::io::Error| {
            StorageError::Engine(format!(
                "migrating the fjall 2 database {} to fjall 3: {what}: {e}",
                old.display()
            ))
        };
        if !old.try_exists().map_err(|e| io("cannot look for it", e))? {
            return Ok(());
        }
        let new = dir.join(DATABASE_DIR);
        if new
            .try_exists()
            .map_err(|e| io("cannot look for fjall3", e))?
        {
            // A complete fjall 3 database is there (made before the old one was set aside;
            // renamed into place only once durable): the copy was done, only the renaming
            // aside of the old database is left — if the old one is still what was copied.
            // A fjall 2 database that differs was written after the migration (an earlier
            // build run on this directory creates an empty one and acknowledges messages
            // into it): setting it aside as "migrated" would lose them.
            if !Self::v2_is_migrated_copy(&old, &new)? {
                return Err(StorageError::Engine(format!(
                    "data directory {}: both a fjall 2 database (fjall) and a fjall 3 one \
                     (fjall3), and the fjall 2 one is not what was migrated: it was written \
                     after the migration, probably by an earlier build of the broker run on \
                     this directory, and what it holds is not in fjall3. Neither is used: \
                     move one of them out of the directory (the fjall 2 one is migrated \
                     again if it stays alone), then start again",
                    dir.display()
                )));
            }
            tracing::warn!(
                dir = %dir.display(),
                "both a fjall 2 and a fjall 3 database in the data directory; the fjall 3 one is used"
            );
        } else {
            let building = dir.join(MIGRATING_DIR);
            if building
                .try_exists()
                .map_err(|e| io("cannot look for an interrupted migration", e))?
            {
                std::fs::remove_dir_all(&building)
                    .map_err(|e| io("cannot remove an interrupted migration", e))?;
            }
            let copied = Self::copy_v2(&old, &building).map_err(|e| match e {
                StorageError::Engine(m) => StorageError::Engine(format!(
                    "migrating the fjall 2 database {} to fjall 3: {m}",
                    old.display()
                )),
                other => other,
            })?;
            sync_dir(dir).map_err(|e| io("cannot sync the data directory", e))?;
            std::fs::rename(&building, &new)
                .map_err(|e| io("cannot rename the new database", e))?;
            sync_dir(dir).map_err(|e| io("cannot sync the data directory", e))?;
            tracing::info!(
                dir = %dir.display(),
                records = copied.0,
                snapshot_bytes = copied.1,
                "migrated the data directory's fjall 2 database to fjall 3"
            );
        }
        let mut aside = dir.join(V2_MIGRATED_DIR);
        let mut n = 1u32;
        while aside
            .try_exists()
            .map_err(|e| io("cannot look for a name to set it aside", e))?
        {
            aside = dir.join(format!("{V2_MIGRATED_DIR}.{n}"));
            n += 1;
        }
        std::fs::rename(&old, &aside).map_err(|e| io("cannot set it aside", e))?;
        sync_dir(dir).map_err(|e| io("cannot sync the data directory", e))?;
        tracing::warn!(
            old = %aside.display(),
            "the data directory's fjall 2 database was migrated to fjall 3 and set aside; it is no longer used and may be deleted"
        );
        Ok(())
    }

    /// Whether the fjall 2 database `old` holds what the fjall 3 database `new` was copied
    /// from (same snapshot, same last record): true after a migration interrupted before
    /// the old database was set aside, false for one written after the migration.
    fn v2_is_migrated_copy(old: &Path, new: &Path) -> Result<bool, StorageError> {
        let reader = super::fjall_v2::Reader::open(old)?;
        let current = Self::open_database(new, None)?;
        let old_snapshot = reader.load_snapshot()?;
        if old_snapshot != current.load_snapshot()? {
            return Ok(false);
        }
        let after = old_snapshot.map_or(0, |(upto, _)| upto);
        let last = |visit: &dyn Fn(u64, &mut RecordVisitor<'_>) -> Result<(), StorageError>| {
            let mut last = None;
            visit(after, &mut |index, bytes| {
                last = Some((index, bytes.to_vec()));
                Ok(())
            })
            .map(|()| last)
        };
        let old_last = last(&|after, visit| reader.read_records(after, visit))?;
        let new_last = last(&|after, visit| current.read_records(after, visit))?;
        Ok(old_last == new_last)
    }

    /// Copies the snapshot and the records after it from the fjall 2 database `old` into
    /// a new fjall 3 database at `new`, durably; answers the records and snapshot bytes
    /// copied.
    fn copy_v2(old: &Path, new: &Path) -> Result<(u64, u64), StorageError> {
        let reader = super::fjall_v2::Reader::open(old)?;
        let mut target = Self::open_database(new, None)?;
        let mut after = 0;
        let mut snapshot_bytes = 0;
        if let Some((upto, bytes)) = reader.load_snapshot()? {
            target.install_snapshot(upto, &bytes)?;
            after = upto;
            snapshot_bytes = bytes.len() as u64;
        }
        let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut pending_bytes = 0;
        let mut records = 0u64;
        reader.read_records(after, &mut |index, bytes| {
            pending.push((index, bytes.to_vec()));
            pending_bytes += bytes.len();
            records += 1;
            if pending_bytes >= MIGRATION_BATCH_BYTES {
                target.append(&pending)?;
                pending.clear();
                pending_bytes = 0;
            }
            Ok(())
        })?;
        if !pending.is_empty() {
            target.append(&pending)?;
        }
        target.db.persist(PersistMode::SyncAll).map_err(engine)?;
        Ok((records, snapshot_bytes))
    }

    fn keyspace(&self, name: &str) -> Result<Keyspace, StorageError> {
        self.db
            .keyspace(name, KeyspaceCreateOptions::default)
            .map_err(engine)
    }

    fn snapshot_meta(&self) -> Result<Option<Meta>, StorageError> {
        match self.meta.get(SNAPSHOT_KEY).map_err(engine)? {
            None => Ok(None),
            Some(bytes) => Meta::decode(&bytes)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt("snapshot metadata".into())),
        }
    }

    /// Drops the segments whose records are all covered by a snapshot up to `upto`.
    fn drop_covered(&mut self, upto: u64) -> Result<(), StorageError> {
        let covered: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|&n| n.saturating_add(1).saturating_mul(SEGMENT) <= upto.saturating_add(1))
            .collect();
        for n in covered {
            if let Some(handle) = self.segments.remove(&n) {
                self.db.delete_keyspace(handle).map_err(engine)?;
            }
        }
        Ok(())
    }
}

impl LogEngine for FjallEngine {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for (index, bytes) in records {
            let n = index / SEGMENT;
            let segment = match self.segments.get(&n) {
                Some(handle) => handle.clone(),
                None => {
                    let handle = self.keyspace(&segment_name(n))?;
                    self.segments.insert(n, handle.clone());
                    handle
                }
            };
            batch.insert(&segment, index.to_be_bytes(), bytes.as_slice());
        }
        batch.commit().map_err(engine)
    }

    fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError> {
        let old = self.snapshot_meta()?;
        let generation = old.map_or(0, |m| m.generation.wrapping_add(1));
        let keyspace = self.keyspace(&snapshot_name(generation))?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut chunks = 0u64;
        for chunk in snapshot.chunks(CHUNK) {
            batch.insert(&keyspace, chunks.to_be_bytes(), chunk);
            chunks += 1;
        }
        let meta = Meta {
            generation,
            upto,
            chunks,
            len: snapshot.len() as u64,
        };
        batch.insert(&self.meta, SNAPSHOT_KEY, meta.encode());
        // The switch to the new snapshot is this one atomic, durable batch; what it makes
        // unnecessary is dropped afterwards (or by the next `open` after a crash).
        batch.commit().map_err(engine)?;
        if let Some(old) = old {
            let handle = self.keyspace(&snapshot_name(old.generation))?;
            self.db.delete_keyspace(handle).map_err(engine)?;
        }
        self.drop_covered(upto)
    }

    fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let Some(meta) = self.snapshot_meta()? else {
            return Ok(None);
        };
        let keyspace = self.keyspace(&snapshot_name(meta.generation))?;
        let chunks = keyspace.iter().map(|kv| kv.into_inner().map_err(engine));
        assemble_snapshot(meta, chunks).map(Some)
    }

    fn read_records(&self, after: u64, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(());
        };
        for segment in self.segments.range(start / SEGMENT..).map(|(_, h)| h) {
            for kv in segment.range(start.to_be_bytes()..) {
                let (key, value) = kv.into_inner().map_err(engine)?;
                visit(index_of(&key)?, &value)?;
            }
        }
        Ok(())
    }
}

/// The snapshot `meta` describes, from its chunks in key order; checks that none is missing.
pub(super) fn assemble_snapshot<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    meta: Meta,
    chunks: impl Iterator<Item = Result<(K, V), StorageError>>,
) -> Result<(u64, Vec<u8>), StorageError> {
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len).unwrap_or(0));
    let mut expected = 0u64;
    for kv in chunks {
        let (key, chunk) = kv?;
        if index_of(key.as_ref())? != expected {
            return Err(StorageError::Corrupt(format!(
                "snapshot chunk {expected} is missing"
            )));
        }
        bytes.extend_from_slice(chunk.as_ref());
        expected += 1;
    }
    if expected != meta.chunks || bytes.len() as u64 != meta.len {
        return Err(StorageError::Corrupt(format!(
            "snapshot has {expected} chunks and {} bytes, expected {} and {}",
            bytes.len(),
            meta.chunks,
            meta.len
        )));
    }
    Ok((meta.upto, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(engine: &FjallEngine, after: u64) -> Vec<u64> {
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

    fn partitions(engine: &FjallEngine, prefix: &str) -> usize {
        engine
            .db
            .list_keyspace_names()
            .iter()
            .filter(|n| n.starts_with(prefix))
            .count()
    }

    #[test]
    fn segments_are_dropped_whole_locked_and_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("mq-fjall-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let total = 3 * SEGMENT + 10;
        {
            let mut engine = FjallEngine::open(&dir).unwrap();
            assert!(FjallEngine::open(&dir).is_err(), "a second open is refused");
            assert_eq!(engine.load_snapshot().unwrap(), None);
            let all: Vec<(u64, Vec<u8>)> =
                (1..=total).map(|i| (i, i.to_be_bytes().to_vec())).collect();
            for batch in all.chunks(20_000) {
                engine.append(batch).unwrap();
            }
            assert_eq!(engine.segments.len(), 4);
            // Covers segments 0 and 1 entirely and part of segment 2.
            let upto = 2 * SEGMENT + 5;
            engine.install_snapshot(upto, &[1, 2, 3]).unwrap();
            assert_eq!(engine.segments.keys().copied().collect::<Vec<_>>(), [2, 3]);
            assert_eq!(
                collect(&engine, upto),
                (upto + 1..=total).collect::<Vec<_>>()
            );
            // A bigger snapshot (several chunks) replaces the first one; re-installing
            // the same coverage replaces it too.
            let big = vec![9u8; CHUNK * 2 + 7];
            engine.install_snapshot(total, &[0; 10]).unwrap();
            engine.install_snapshot(total, &big).unwrap();
            assert_eq!(engine.load_snapshot().unwrap(), Some((total, big)));
            assert!(collect(&engine, total).is_empty());
            assert_eq!(
                partitions(&engine, "snapshot_"),
                1,
                "old snapshots are dropped"
            );
            engine
                .append(&[(total + 1, (total + 1).to_be_bytes().to_vec())])
                .unwrap();
        }
        let engine = FjallEngine::open(&dir).unwrap();
        assert_eq!(collect(&engine, total), [total + 1]);
        assert_eq!(
            engine.load_snapshot().unwrap().unwrap().1.len(),
            CHUNK * 2 + 7
        );
        assert_eq!(partitions(&engine, "snapshot_"), 1);
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A data directory given as a file says so (it said "File exists (os error 17)").
    #[test]
    fn a_file_in_place_of_the_directory_is_named() {
        let file = std::env::temp_dir().join(format!("mq-fjall-file-{}", std::process::id()));
        std::fs::write(&file, b"not a directory").unwrap();
        let Err(e) = FjallEngine::open(&file) else {
            panic!("a file opened as a data directory");
        };
        let e = e.to_string();
        assert!(
            e.contains(&format!(
                "data directory {}: it exists and is not a directory",
                file.display()
            )),
            "{e}"
        );
        std::fs::remove_file(&file).unwrap();
    }
}
