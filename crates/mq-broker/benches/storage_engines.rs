//! Storage-engine comparison for the durable broker: redb (shipped) against fjall, both
//! behind the same [`LogEngine`] trait and the same journal (group commit in one writer
//! thread, fsync per commit: `Durability::Immediate` for redb, `PersistMode::SyncData` for
//! fjall).
//!
//! Measured per engine:
//!
//! * durable publishes per second through [`JournaledCore`] (the broker's write path
//!   without HTTP) with 1, 16 and 64 concurrent publishers, each waiting for its publish to
//!   be durable before the next;
//! * appending 50,000 records, reading them back (recovery), and deleting them by range
//!   (what installing a snapshot does);
//! * the size of the data directory after that.
//!
//! `cargo bench -p mq-broker --bench storage_engines` (or, without a release build,
//! `cargo test -p mq-broker --bench storage_engines -- --bench`) prints a Markdown table.
//! Without `--bench` (as under `cargo test`) it runs a tiny smoke version.

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use mq_broker::core::CoreConfig;
use mq_broker::durable::{
    DurableOptions, JournaledCore, LogEngine, RecordVisitor, RedbEngine, StorageError,
};
use mq_proto::{TopicMessage, TopicName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The engine it was compared with.
struct FjallEngine {
    keyspace: Keyspace,
    log: PartitionHandle,
    snapshot: PartitionHandle,
}

fn fjall_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(e.to_string())
}

impl FjallEngine {
    fn open(dir: &Path) -> Result<Self, StorageError> {
        let keyspace = fjall::Config::new(dir).open().map_err(fjall_error)?;
        let log = keyspace
            .open_partition("log", PartitionCreateOptions::default())
            .map_err(fjall_error)?;
        let snapshot = keyspace
            .open_partition("snapshot", PartitionCreateOptions::default())
            .map_err(fjall_error)?;
        Ok(Self {
            keyspace,
            log,
            snapshot,
        })
    }
}

impl LogEngine for FjallEngine {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let mut batch = self
            .keyspace
            .batch()
            .durability(Some(PersistMode::SyncData));
        for (index, bytes) in records {
            batch.insert(&self.log, index.to_be_bytes(), bytes.as_slice());
        }
        batch.commit().map_err(fjall_error)
    }

    fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError> {
        let mut batch = self
            .keyspace
            .batch()
            .durability(Some(PersistMode::SyncData));
        // No range deletion in fjall 2: one tombstone per record.
        for key in self
            .log
            .range(..=upto.to_be_bytes())
            .map(|kv| kv.map(|(k, _)| k))
        {
            batch.remove(&self.log, key.map_err(fjall_error)?);
        }
        let mut value = upto.to_be_bytes().to_vec();
        value.extend_from_slice(snapshot);
        batch.insert(&self.snapshot, "snapshot", value);
        batch.commit().map_err(fjall_error)
    }

    fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let Some(value) = self.snapshot.get("snapshot").map_err(fjall_error)? else {
            return Ok(None);
        };
        let (upto, rest) = value
            .split_first_chunk::<8>()
            .ok_or_else(|| StorageError::Corrupt("short snapshot".into()))?;
        Ok(Some((u64::from_be_bytes(*upto), rest.to_vec())))
    }

    fn read_records(&self, after: u64, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(());
        };
        for kv in self.log.range(start.to_be_bytes()..) {
            let (key, value) = kv.map_err(fjall_error)?;
            let index = key
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::Corrupt("bad key".into()))?;
            visit(index, &value)?;
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
                        core.publish(now_ms(), None, &topic, message)
                            .expect("publish");
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
