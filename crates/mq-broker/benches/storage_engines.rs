//! Storage-engine comparison for the durable broker: fjall (shipped, `FjallEngine`) against
//! redb (implemented here), both behind the same [`LogEngine`] trait and the same journal
//! (group commit in one writer thread, one durable commit per batch: `PersistMode::SyncData`
//! for fjall, `Durability::Immediate` for redb). Both keep the journal in segments that a
//! snapshot drops whole.
//!
//! Measured per engine:
//!
//! * durable publishes per second through [`JournaledCore`] (the broker's write path
//!   without HTTP) with 1, 16 and 64 concurrent publishers, each waiting for its publish to
//!   be durable before the next;
//! * appending 50,000 records, reading them back (recovery), and deleting them by range
//!   (what installing a snapshot does);
//! * the bytes written to storage per durable publish (from `/proc/self/io`);
//! * the size of the data directory after that.
//!
//! `cargo bench -p mq-broker --bench storage_engines` (or, without a release build,
//! `cargo test -p mq-broker --bench storage_engines -- --bench`) prints a Markdown table.
//! Without `--bench` (as under `cargo test`) it runs a tiny smoke version.

use mq_broker::core::{Call, CoreConfig};
use mq_broker::durable::{
    DurableOptions, FjallEngine, JournaledCore, LogEngine, RecordVisitor, StorageError,
};
use mq_proto::{TopicMessage, TopicName};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

/// The engine it was compared with: one redb file. Every commit is durable
/// (`Durability::Immediate`: checksummed copy-on-write pages, then fsync).
///
/// The journal is split into segments of 8,192 records, one table each, and every snapshot
/// is a table of its own: installing a snapshot deletes whole tables (cheap in a B-tree
/// store, where deleting records one by one costs a rebalancing each and grows the file;
/// measured in an earlier version of this benchmark). Records of a segment only partly covered by the snapshot stay until
/// a later snapshot covers the whole segment; [`LogEngine::read_records`] skips them.
struct RedbEngine {
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
    const FILE: &'static str = "broker.redb";

    /// Opens (or creates) the engine in `dir`, creating the directory if needed. A database
    /// left by a crash is repaired by redb on open. Fails if another process has it open.
    fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Engine(format!("creating data directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(Self::FILE);
        let db = Database::create(&path)
            .map_err(|e| StorageError::Engine(format!("{}: {e}", path.display())))?;
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

struct Scale {
    publish_for: Duration,
    records: u64,
}

fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("mq-bench-{name}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Durable publishes per second with `publishers` concurrent publishers.
fn publish_rate<E: LogEngine>(engine: E, publishers: usize, duration: Duration) -> f64 {
    let options = DurableOptions {
        snapshot_min_bytes: u64::MAX,
        snapshot_interval_ms: u64::MAX,
    };
    let core = JournaledCore::open_with(engine, CoreConfig::default(), options).expect("open");
    let core = Arc::new(Mutex::new(core));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let topic = TopicName::new("bench").expect("topic");
    let body = "x".repeat(200);
    let started = Instant::now();
    let deadline = started + duration;
    let done: u64 = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..publishers {
            let (core, topic, body) = (core.clone(), topic.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let message = TopicMessage::new(body.as_str()).expect("message");
                    let durable = {
                        let mut core = core.lock().expect("lock");
                        let call = Call::Publish {
                            instance: None,
                            topic: topic.clone(),
                            message,
                            producer: None,
                        };
                        core.apply(now_ms(), call).expect("publish");
                        core.sync_point()
                    };
                    durable.wait().await.expect("durable");
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        total
    });
    let rate = done as f64 / started.elapsed().as_secs_f64();
    runtime.block_on(async {
        let closing = core.lock().expect("lock").close();
        closing.await;
    });
    rate
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `(append, read, delete)` durations for `count` records of 200 bytes, appended in
/// commits of 500.
fn bulk<E: LogEngine>(engine: &mut E, count: u64) -> (Duration, Duration, Duration) {
    let record = vec![7u8; 200];
    let started = Instant::now();
    let mut next = 1;
    while next <= count {
        let end = (next + 500).min(count + 1);
        let batch: Vec<(u64, Vec<u8>)> = (next..end).map(|i| (i, record.clone())).collect();
        engine.append(&batch).expect("append");
        next = end;
    }
    let append = started.elapsed();
    let started = Instant::now();
    let mut seen = 0u64;
    engine
        .read_records(0, &mut |_, _| {
            seen += 1;
            Ok(())
        })
        .expect("read");
    assert_eq!(seen, count);
    let read = started.elapsed();
    let started = Instant::now();
    engine
        .install_snapshot(count, b"snapshot")
        .expect("snapshot");
    let delete = started.elapsed();
    let mut left = 0u64;
    engine
        .read_records(count, &mut |_, _| {
            left += 1;
            Ok(())
        })
        .expect("read");
    assert_eq!(left, 0, "records survived the range delete");
    (append, read, delete)
}

/// Bytes this process has caused to be written to storage (`/proc/self/io`), if known.
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

const ENGINES: [&str; 2] = ["redb", "fjall"];

/// `(publishes/s, storage bytes written per publish)` of one measurement.
fn measure(name: &str, publishers: usize, duration: Duration) -> (f64, f64) {
    let dir = scratch(name);
    let before = written_bytes();
    let started = Instant::now();
    let rate = match name {
        "redb" => publish_rate(RedbEngine::open(&dir).expect("redb"), publishers, duration),
        _ => publish_rate(
            FjallEngine::open(&dir).expect("fjall"),
            publishers,
            duration,
        ),
    };
    let publishes = rate * started.elapsed().as_secs_f64().min(duration.as_secs_f64());
    let per_publish = match (before, written_bytes()) {
        (Some(b), Some(a)) if publishes > 0.0 => a.saturating_sub(b) as f64 / publishes,
        _ => f64::NAN,
    };
    let _ = std::fs::remove_dir_all(&dir);
    (rate, per_publish)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (scale, rounds) = if full {
        (
            Scale {
                publish_for: Duration::from_secs(2),
                records: 50_000,
            },
            3,
        )
    } else {
        (
            Scale {
                publish_for: Duration::from_millis(150),
                records: 2_000,
            },
            1,
        )
    };
    // Rounds alternate the engines (A B A B A B) so that a change in the machine's load
    // hits both; the table shows medians.
    let mut rates = vec![vec![Vec::new(); 3]; ENGINES.len()];
    let mut written = vec![Vec::new(); ENGINES.len()];
    for (p, publishers) in [1, 16, 64].into_iter().enumerate() {
        for _ in 0..rounds {
            for (e, name) in ENGINES.iter().enumerate() {
                let (rate, per_publish) = measure(name, publishers, scale.publish_for);
                eprintln!(
                    "{name}: {publishers} publishers: {rate:.0} durable publishes/s, {per_publish:.0} B written each"
                );
                rates[e][p].push(rate);
                if publishers == 64 {
                    written[e].push(per_publish);
                }
            }
        }
    }
    let mut bulks = vec![Vec::new(); ENGINES.len()];
    for _ in 0..rounds {
        for (e, name) in ENGINES.iter().enumerate() {
            let dir = scratch(name);
            let (append, read, delete) = match *name {
                "redb" => bulk(&mut RedbEngine::open(&dir).expect("redb"), scale.records),
                _ => bulk(&mut FjallEngine::open(&dir).expect("fjall"), scale.records),
            };
            bulks[e].push((append, read, delete, dir_size(&dir)));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let mut table = String::from(
        "| engine | durable publishes/s, 1 publisher | 16 publishers | 64 publishers | bytes written per publish (64) | append N records (commits of 500) | read N back | delete N by range | data dir after |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (e, name) in ENGINES.iter().enumerate() {
        let ms = |f: fn(&(Duration, Duration, Duration, u64)) -> Duration| {
            median(bulks[e].iter().map(|b| f(b).as_secs_f64() * 1e3).collect())
        };
        let size = median(bulks[e].iter().map(|b| b.3 as f64).collect());
        table.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} MiB |\n",
            median(rates[e][0].clone()),
            median(rates[e][1].clone()),
            median(rates[e][2].clone()),
            median(written[e].clone()),
            ms(|b| b.0),
            ms(|b| b.1),
            ms(|b| b.2),
            size / f64::from(1u32 << 20),
        ));
    }
    println!(
        "Medians of {rounds} alternating rounds; N = {} records of 200 bytes\n\n{table}",
        scale.records
    );
}
