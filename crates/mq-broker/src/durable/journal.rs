//! The writer thread: it owns the [`LogEngine`] and commits records with group commit.
//!
//! Callers hand records over in order (the core's application order) through an unbounded
//! channel, which costs no I/O and never blocks, so it is done while holding the core lock.
//! The thread takes every record that is waiting, appends them in one durable commit, then
//! publishes the new durable index. A caller that must wait puts a waiter (a oneshot) into
//! the channel behind its record and waits on the [`SyncPoint`]; the thread completes the
//! waiters of a batch once the batch is durable, so each caller is woken once. While one
//! commit is being fsynced the next batch accumulates, so commits are shared and throughput
//! grows with the number of concurrent callers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use tokio::sync::{oneshot, watch};

use super::engine::{LogEngine, StorageError};

/// Most record bytes in one commit (a larger backlog is committed in several).
const MAX_BATCH_BYTES: usize = 16 << 20;

/// What the writer thread is asked to do.
pub(crate) enum Item {
    /// Append one record.
    Record { index: u64, bytes: Vec<u8> },
    /// Install a snapshot covering records `..=upto`.
    Snapshot { upto: u64, bytes: Vec<u8> },
    /// Complete this once everything handed over before it is durable.
    Waiter(oneshot::Sender<()>),
    /// Commit what is pending, close the engine and stop.
    Close,
}

/// How far the journal is durable, and whether it stopped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// Every record up to this index is durable.
    pub(crate) durable: u64,
    /// Set when a write failed; nothing after `durable` will ever be durable.
    pub(crate) failed: Option<Arc<str>>,
    /// The thread stopped and the engine is closed.
    pub(crate) closed: bool,
}

/// What the writer thread did, for `/metrics`: commits (each one durable write: fsync or
/// the engine's equivalent), the records they carried, and how long each commit took.
/// Clones share the counts.
#[derive(Clone, Debug)]
pub(crate) struct CommitMetrics {
    /// Durable commits.
    pub(crate) commits: Counter,
    /// Records written (a commit carries every record waiting when it starts).
    pub(crate) records: Counter,
    /// Seconds per commit, from handing the batch to the engine to its durable answer.
    pub(crate) seconds: Histogram,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        Self {
            commits: Counter::default(),
            records: Counter::default(),
            // 50 µs .. ~1.6 s.
            seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

/// Whether the journal still makes changes durable, read without the core's lock (by
/// `GET /ready`). Clones watch the same journal.
#[derive(Clone, Debug)]
pub(crate) struct JournalHealth(watch::Receiver<Progress>);

impl JournalHealth {
    /// Why the journal stopped after a storage failure (nothing is acknowledged from then
    /// on, until a restart); `None` while it works.
    pub(crate) fn failure(&self) -> Option<Arc<str>> {
        self.0.borrow().failed.clone()
    }
}

/// The handle on the writer thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Item>,
    progress: watch::Receiver<Progress>,
    thread: Option<thread::JoinHandle<()>>,
    metrics: CommitMetrics,
}

impl Writer {
    /// Starts the thread; `durable` is the index of the last record already stored.
    /// `snapshot_busy` is cleared once a snapshot handed over is installed (or dropped).
    pub(crate) fn start<E: LogEngine>(
        engine: E,
        durable: u64,
        snapshot_busy: Arc<AtomicBool>,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel();
        let (progress_tx, progress) = watch::channel(Progress {
            durable,
            ..Progress::default()
        });
        let metrics = CommitMetrics::default();
        let counted = metrics.clone();
        let thread = thread::Builder::new()
            .name("mq-journal".into())
            .spawn(move || run(engine, &rx, &progress_tx, &snapshot_busy, &counted))
            .map_err(|e| StorageError::Engine(format!("cannot start the journal thread: {e}")))?;
        Ok(Self {
            tx,
            progress,
            thread: Some(thread),
            metrics,
        })
    }

    /// Whether the thread still makes changes durable.
    pub(crate) fn health(&self) -> JournalHealth {
        JournalHealth(self.progress.clone())
    }

    /// The thread's commit counts (shared: they keep counting).
    pub(crate) fn metrics(&self) -> CommitMetrics {
        self.metrics.clone()
    }

    /// Hands an item over (never blocks). Items sent after the thread stopped are dropped;
    /// their sync points report why it stopped.
    pub(crate) fn send(&self, item: Item) {
        let _ = self.tx.send(item);
    }

    /// A sender for the snapshot thread.
    pub(crate) fn sender(&self) -> mpsc::Sender<Item> {
        self.tx.clone()
    }

    /// A point that is reached once record `index` (the last one handed over) is durable.
    pub(crate) fn sync_point(&self, index: u64) -> SyncPoint {
        if self.progress.borrow().durable >= index {
            return SyncPoint::reached();
        }
        let (tx, rx) = oneshot::channel();
        self.send(Item::Waiter(tx));
        SyncPoint(Some(Pending {
            target: index,
            done: rx,
            progress: self.progress.clone(),
        }))
    }

    /// Asks the thread to commit what is pending and stop; resolves once the engine is
    /// closed (its files can then be opened again).
    pub(crate) fn close(&mut self) -> impl Future<Output = ()> + Send + 'static {
        self.send(Item::Close);
        let mut progress = self.progress.clone();
        async move {
            // An error means the thread is gone, which is what we wait for.
            let _ = progress.wait_for(|p| p.closed).await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.send(Item::Close);
        if let Some(thread) = self.thread.take() {
            // Bounded by the commit in progress; releases the engine's files before returning.
            let _ = thread.join();
        }
    }
}

/// Waits until everything the core did up to some call is durable.
///
/// Obtained from [`JournaledCore::sync_point`](super::JournaledCore::sync_point); for a
/// core without a journal it is reached at once.
#[derive(Debug)]
#[must_use = "a sync point does nothing unless waited on"]
pub struct SyncPoint(Option<Pending>);

#[derive(Debug)]
struct Pending {
    target: u64,
    done: oneshot::Receiver<()>,
    progress: watch::Receiver<Progress>,
}

impl SyncPoint {
    /// A point that is already reached.
    pub fn reached() -> Self {
        Self(None)
    }

    /// Resolves when the records are durable; fails if the journal stopped first.
    ///
    /// # Errors
    ///
    /// [`StorageError::Failed`] when a write failed before these records were durable,
    /// [`StorageError::Closed`] when the journal was closed first.
    pub async fn wait(self) -> Result<(), StorageError> {
        let Some(Pending {
            target,
            done,
            progress,
        }) = self.0
        else {
            return Ok(());
        };
        if done.await.is_ok() {
            return Ok(());
        }
        // The waiter was dropped: the writer stopped (failure or close) before completing
        // it. Its last word says whether the record made it anyway.
        let p = progress.borrow();
        if p.durable >= target {
            Ok(())
        } else if let Some(why) = &p.failed {
            Err(StorageError::Failed(why.clone()))
        } else {
            Err(StorageError::Closed)
        }
    }
}

fn run<E: LogEngine>(
    mut engine: E,
    rx: &mpsc::Receiver<Item>,
    progress: &watch::Sender<Progress>,
    snapshot_busy: &AtomicBool,
    metrics: &CommitMetrics,
) {
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut snapshots: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut close = false;
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Record { index, bytes: b } => {
                    bytes += b.len();
                    records.push((index, b));
                }
                Item::Snapshot { upto, bytes: b } => {
                    bytes += b.len();
                    snapshots.push((upto, b));
                }
                Item::Waiter(tx) => waiters.push(tx),
                Item::Close => {
                    close = true;
                    break;
                }
            }
            if bytes < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        // Records first: a snapshot covers only records handed over before it.
        let had_snapshot = !snapshots.is_empty();
        let writes = records.len();
        let started = Instant::now();
        let result = commit(&mut engine, &mut records, &mut snapshots, progress);
        if result.is_ok() && (writes > 0 || had_snapshot) {
            metrics.commits.inc();
            metrics.records.inc_by(writes as u64);
            metrics.seconds.observe(started.elapsed().as_secs_f64());
        }
        if had_snapshot {
            // Installed or failed: either way the next one may be taken.
            snapshot_busy.store(false, Ordering::Release);
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "journal write failed; the broker acknowledges nothing from now on");
            progress.send_modify(|p| p.failed = Some(Arc::from(e.to_string())));
            break;
        }
        // Everything handed over before these waiters is in this batch or an earlier one.
        for waiter in waiters.drain(..) {
            let _ = waiter.send(());
        }
        if close {
            break;
        }
    }
    drop(engine);
    progress.send_modify(|p| p.closed = true);
}

fn commit<E: LogEngine>(
    engine: &mut E,
    records: &mut Vec<(u64, Vec<u8>)>,
    snapshots: &mut Vec<(u64, Vec<u8>)>,
    progress: &watch::Sender<Progress>,
) -> Result<(), StorageError> {
    if let Some(&(last, _)) = records.last() {
        engine.append(records)?;
        records.clear();
        progress.send_modify(|p| p.durable = p.durable.max(last));
    }
    for (upto, bytes) in snapshots.drain(..) {
        engine.install_snapshot(upto, &bytes)?;
    }
    Ok(())
}
