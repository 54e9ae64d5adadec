//! The durable broker: a [`BrokerCore`] whose every state change is journaled to disk, so
//! that nothing acknowledged is lost when the process dies (`mq-broker --data-dir DIR`).
//!
//! # Design
//!
//! The core is deterministic: the same calls with the same times produce the same state,
//! ids and receipt handles (its only hash maps are looked up by key, never iterated into an
//! output). So the journal stores *calls*, not state: one record per call that
//! reached the core (publish with the message in wire form, consume, ack / commit /
//! rollback, topic declaration, housekeeping, and refused calls that only moved the clock),
//! each with its effective time, in the order the core applied them. Replaying them into the
//! core they started from rebuilds the exact state: messages and their visibility times,
//! in-flight deliveries with their handles, `NextConsumeTime` and delivery counts, delayed
//! messages, half messages with their check schedule, dead letters and counters.
//!
//! * **Group commit.** [`JournaledCore`]'s calls hand their record to a writer thread while
//!   the caller still holds the core (so records are in application order) and return at
//!   once; the caller releases the core and then waits on [`JournaledCore::sync_point`],
//!   which resolves when the writer's commit containing the record is durable. The writer
//!   takes every waiting record into one commit, so concurrent requests share fsyncs.
//! * **Snapshots.** A snapshot is the serde form of the core (postcard). One is written at
//!   every start (after recovery), when the journal since the last one has grown to at
//!   least [`DurableOptions::snapshot_min_bytes`] and to at least the last snapshot's size
//!   (so rewriting costs at most as much again as the journal it replaces), and when the last
//!   one is older than [`DurableOptions::snapshot_interval_ms`]. Installing a snapshot
//!   deletes the records it covers, in the same commit. Together with the core's retention
//!   (messages leave the state 3 days after they became deliverable, configurable), this is
//!   what trims old data from the disk.
//! * **Recovery.** Open the engine, decode the snapshot, replay the records after it, apply
//!   the configuration given now (the id seed stays the stored one, so old handles stay
//!   valid and new ids unique), write a fresh snapshot. The clock is not touched: the first
//!   call after a restart brings it to the present, and everything that fell due meanwhile
//!   (in-flight messages past their `NextConsumeTime`, delayed messages, half-message
//!   checks) is due then. The recovered core holds the latest time it saw and the test
//!   clock's recorded advance ([`BrokerCore::clock_advance_ms`]); the server starts its
//!   clock from them, so that it never runs behind the times the state holds.
//! * **Failures.** If a write fails, the writer stops; every later sync point fails, so the
//!   broker answers 500 and acknowledges nothing any more. The state on disk is the last
//!   durable commit; restarting recovers from it.
//!
//! The storage engine is fjall ([`FjallEngine`]), chosen over redb by the benchmark in
//! `benches/storage_engines.rs` (see ARCHITECTURE.md, "Durability", and BENCHMARKS.md).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mq_broker::core::{Call, CoreConfig, Outcome};
//! use mq_broker::durable::JournaledCore;
//! use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
//!
//! let dir = std::env::temp_dir().join(format!("mq-durable-doc-{}", std::process::id()));
//! let _ = std::fs::remove_dir_all(&dir);
//! let topic = TopicName::new("T")?;
//! let consume = Call::Consume {
//!     instance: None,
//!     topic: topic.clone(),
//!     group: GroupId::new("GID")?,
//!     kind: ConsumeKind::Normal,
//!     filter: TagFilter::All,
//!     batch: BatchSize::new(1)?,
//!     wait: Default::default(),
//! };
//! {
//!     let mut core = JournaledCore::open(CoreConfig::default(), Some(&dir))?;
//!     core.apply(0, consume.clone())?; // registers the group
//!     let message = TopicMessage::new("kept")?;
//!     core.apply(1_000, Call::Publish { instance: None, topic, message, producer: None })?;
//!     core.sync_point().wait().await?; // durable: a server may now answer 201
//!     core.close().await;
//! }
//! let mut core = JournaledCore::open(CoreConfig::default(), Some(&dir))?;
//! let Outcome::Delivered(got) = core.apply(2_000, consume)? else { unreachable!() };
//! assert_eq!(got[0].body(), "kept");
//! core.close().await;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

mod engine;
mod fjall_v2;
mod journal;
mod record;

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mq_proto::ErrorCode;

use crate::core::{BrokerCore, Call, CoreConfig, CoreError, Outcome};

pub use engine::{FjallEngine, LogEngine, RecordVisitor, StorageError};
pub use journal::SyncPoint;

pub(crate) use journal::{CommitMetrics, JournalHealth};
use journal::{Item, Writer};
use record::Record;

/// Version of the on-disk format (records and snapshots) this build writes.
///
/// 3: as 2, but a group consumed only normally stores no ordered-consumption index (it is
/// built on the first orderly consume): a build of format 2 would read such a group as
/// having nothing to deliver in order, so it must refuse the directory, and does.
pub const FORMAT: u32 = 3;

/// Formats this build reads: [`FORMAT`], and 2, whose snapshots have the same form (their
/// groups always carry the ordered-consumption index, which this build takes as built).
const READABLE_FORMATS: [u32; 2] = [2, FORMAT];

/// When snapshots are taken (see the [module documentation](self)).
///
/// ```
/// use mq_broker::durable::DurableOptions;
/// let options = DurableOptions { snapshot_min_bytes: 1 << 20, ..DurableOptions::default() };
/// assert_eq!(options.snapshot_interval_ms, 3_600_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableOptions {
    /// Journal bytes since the last snapshot that trigger the next one (when also at least
    /// the last snapshot's size). Default 64 MiB.
    pub snapshot_min_bytes: u64,
    /// Core time after which a journal with any record since the last snapshot is
    /// snapshotted anyway, so retention reaches the disk. Default one hour.
    pub snapshot_interval_ms: u64,
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            snapshot_min_bytes: 64 << 20,
            snapshot_interval_ms: 3_600_000,
        }
    }
}

/// A [`BrokerCore`] that journals every state change when it has a data directory (and is
/// the plain core otherwise).
///
/// Its mutating calls are [`apply`](Self::apply) and
/// [`record_clock_advance`](Self::record_clock_advance); read-only calls go to the core
/// through `Deref`. After a mutating call, a server takes [`sync_point`](Self::sync_point) while
/// still holding the core, releases it, and waits on the point before answering. See the
/// [module documentation](self) for the design and an example.
pub struct JournaledCore {
    core: BrokerCore,
    journal: Option<Journal>,
}

impl fmt::Debug for JournaledCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournaledCore")
            .field("core", &self.core)
            .field("journal", &self.journal)
            .finish()
    }
}

impl Deref for JournaledCore {
    type Target = BrokerCore;

    fn deref(&self) -> &BrokerCore {
        &self.core
    }
}

struct Journal {
    writer: Writer,
    /// Index of the last record handed to the writer.
    last: u64,
    options: DurableOptions,
    /// Record bytes handed over since the last snapshot was taken.
    since_snapshot: u64,
    /// Core time of the last snapshot.
    snapshot_at_ms: u64,
    /// Size of the last snapshot.
    snapshot_len: Arc<AtomicU64>,
    /// A snapshot is being encoded or installed.
    snapshot_busy: Arc<AtomicBool>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("last", &self.last)
            .field("since_snapshot", &self.since_snapshot)
            .finish_non_exhaustive()
    }
}

fn journal_error(e: StorageError) -> CoreError {
    CoreError::new(ErrorCode::InternalError, format!("journal: {e}"))
}

impl JournaledCore {
    /// A core kept in memory only (no journal).
    pub fn in_memory(config: CoreConfig) -> Self {
        Self {
            core: BrokerCore::new(config),
            journal: None,
        }
    }

    /// With a directory: recovers the state stored there (or starts empty) with the fjall
    /// engine and journals from now on. Without one: [`in_memory`](Self::in_memory).
    ///
    /// # Errors
    ///
    /// As [`open_with`](Self::open_with), and [`StorageError::Engine`] when the fjall engine
    /// cannot open the directory.
    pub fn open(config: CoreConfig, data_dir: Option<&Path>) -> Result<Self, StorageError> {
        match data_dir {
            None => Ok(Self::in_memory(config)),
            Some(dir) => {
                Self::open_with(FjallEngine::open(dir)?, config, DurableOptions::default()).map_err(
                    |e| match e {
                        StorageError::RefusedName {
                            place,
                            what,
                            value,
                            reason,
                        } => StorageError::RefusedName {
                            place: format!("{place} in {}", dir.display()),
                            what,
                            value,
                            reason,
                        },
                        other => other,
                    },
                )
            }
        }
    }

    /// Recovers the state stored in `engine` (or starts empty), applies `config` (keeping a
    /// stored id seed), writes a fresh snapshot, and starts the writer thread.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover), and [`StorageError::Engine`] when the fresh snapshot
    /// cannot be written.
    pub fn open_with<E: LogEngine>(
        mut engine: E,
        config: CoreConfig,
        options: DurableOptions,
    ) -> Result<Self, StorageError> {
        let (core, last) = match Self::recover(&engine)? {
            Some((mut core, last)) => {
                core.reconfigure(config);
                (core, last)
            }
            None => (BrokerCore::new(config), 0),
        };
        let snapshot = encode_snapshot(&core)?;
        engine.install_snapshot(last, &snapshot)?;
        let snapshot_busy = Arc::new(AtomicBool::new(false));
        let writer = Writer::start(engine, last, snapshot_busy.clone())?;
        let snapshot_at_ms = core.now_ms();
        Ok(Self {
            core,
            journal: Some(Journal {
                writer,
                last,
                options,
                since_snapshot: 0,
                snapshot_at_ms,
                snapshot_len: Arc::new(AtomicU64::new(snapshot.len() as u64)),
                snapshot_busy,
            }),
        })
    }

    /// The state an engine holds: its snapshot with the records after it replayed, and the
    /// index of the last record; `None` for an empty engine. Reads only.
    ///
    /// # Errors
    ///
    /// [`StorageError::Engine`] for a read failure, [`StorageError::Corrupt`] for records
    /// that do not decode or a gap in the journal, [`StorageError::Format`] for data of
    /// another format version.
    pub fn recover<E: LogEngine>(engine: &E) -> Result<Option<(BrokerCore, u64)>, StorageError> {
        let Some((upto, bytes)) = engine.load_snapshot()? else {
            engine.read_records(0, &mut |index, _| {
                Err(StorageError::Corrupt(format!(
                    "record {index} without a snapshot before it"
                )))
            })?;
            return Ok(None);
        };
        let mut core = decode_snapshot(&bytes)?;
        let mut last = upto;
        engine.read_records(upto, &mut |index, bytes| {
            if Some(index) != last.checked_add(1) {
                return Err(StorageError::Corrupt(format!(
                    "record {index} follows record {last}"
                )));
            }
            Record::decode(bytes)?.apply(&mut core)?;
            last = index;
            Ok(())
        })?;
        Ok(Some((core, last)))
    }

    /// The core.
    pub fn core(&self) -> &BrokerCore {
        &self.core
    }

    /// [`BrokerCore::take_retired`].
    pub fn take_retired(&mut self) -> crate::core::Retired {
        self.core.take_retired()
    }

    /// Whether changes are journaled (a data directory is in use).
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// The journal's commit counts for `/metrics`; `None` without a journal.
    pub(crate) fn commit_metrics(&self) -> Option<CommitMetrics> {
        self.journal.as_ref().map(|j| j.writer.metrics())
    }

    /// Whether the journal still makes changes durable, for `GET /ready`; `None` without
    /// a journal.
    pub(crate) fn journal_health(&self) -> Option<JournalHealth> {
        self.journal.as_ref().map(|j| j.writer.health())
    }

    /// Why the journal stopped, if a storage failure stopped it: from then on nothing is
    /// made durable and every sync point fails, until the broker is restarted. `None`
    /// while it works, and without a journal.
    pub fn journal_failure(&self) -> Option<StorageError> {
        let failure = self.journal.as_ref()?.writer.health().failure()?;
        Some(StorageError::Failed(failure))
    }

    /// A point reached once every change made so far is durable (at once without a
    /// journal). Take it while holding the core, wait on it after releasing the core.
    pub fn sync_point(&self) -> SyncPoint {
        match &self.journal {
            Some(j) => j.writer.sync_point(j.last),
            None => SyncPoint::reached(),
        }
    }

    /// Commits what is pending and closes the storage (its files can be opened again once
    /// the returned future resolves). Later changes are not journaled: their sync points
    /// fail with [`StorageError::Closed`]. Dropping the core closes it too, blocking until
    /// the writer thread has finished.
    pub fn close(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let closing = self.journal.as_mut().map(|j| j.writer.close());
        async move {
            if let Some(closing) = closing {
                closing.await;
            }
        }
    }

    /// [`BrokerCore::apply`], journaled: the call's record is handed to the writer (in the
    /// order the core applied the calls) before this returns; take
    /// [`sync_point`](Self::sync_point) before answering. A publish refused as a whole
    /// journals only the clock (its message is not stored); every other call journals its
    /// record whatever its result (an empty consume may register a group or skip filtered
    /// messages).
    ///
    /// # Errors
    ///
    /// The core's [`CoreError`]; `InternalError` if the record cannot be encoded (then the
    /// call was not applied).
    pub fn apply(&mut self, now_ms: u64, call: Call) -> Result<Outcome, CoreError> {
        let Self { core, journal } = self;
        let Some(journal) = journal else {
            return core.apply(now_ms, call);
        };
        let before = core.now_ms();
        // A reset takes the clock where it is told, even back (see `BrokerCore::reset`).
        let at = if matches!(call, Call::Reset) {
            now_ms
        } else {
            before.max(now_ms)
        };
        let record = Record::of(at, &call).encode().map_err(journal_error)?;
        let refusal_journals_only_the_clock = matches!(call, Call::Publish { .. });
        let result = core.apply(at, call);
        if result.is_ok() || !refusal_journals_only_the_clock {
            // Applied first: a snapshot taken by `append` must include it.
            journal.append(record, core);
        } else if core.now_ms() != before {
            let clock = Record::Clock { at }.encode().map_err(journal_error)?;
            journal.append(clock, core);
        }
        result
    }

    /// [`BrokerCore::record_clock_advance`], journaled like [`apply`](Self::apply) (take
    /// [`sync_point`](Self::sync_point) before answering): a restart recovers the advance,
    /// so a test clock goes on from where it was.
    ///
    /// # Errors
    ///
    /// `InternalError` if the record cannot be encoded (then nothing was recorded).
    pub fn record_clock_advance(&mut self, now_ms: u64, advance_ms: i64) -> Result<(), CoreError> {
        let Self { core, journal } = self;
        let at = core.now_ms().max(now_ms);
        let Some(journal) = journal else {
            core.record_clock_advance(at, advance_ms);
            return Ok(());
        };
        let record = Record::ClockAdvance { at, advance_ms }
            .encode()
            .map_err(journal_error)?;
        core.record_clock_advance(at, advance_ms);
        journal.append(record, core);
        Ok(())
    }
}

impl Journal {
    /// Hands the record of a call just applied to `core` to the writer, and starts a
    /// snapshot if one is due.
    fn append(&mut self, bytes: Vec<u8>, core: &BrokerCore) {
        self.last += 1;
        self.since_snapshot = self.since_snapshot.saturating_add(bytes.len() as u64);
        self.writer.send(Item::Record {
            index: self.last,
            bytes,
        });
        self.maybe_snapshot(core);
    }

    fn maybe_snapshot(&mut self, core: &BrokerCore) {
        // After a reset took the clock back, the interval counts from the new time.
        self.snapshot_at_ms = self.snapshot_at_ms.min(core.now_ms());
        if self.snapshot_busy.load(Ordering::Acquire) {
            return;
        }
        let threshold = self
            .options
            .snapshot_min_bytes
            .max(self.snapshot_len.load(Ordering::Relaxed));
        let stale = self.since_snapshot > 0
            && core.now_ms().saturating_sub(self.snapshot_at_ms)
                >= self.options.snapshot_interval_ms;
        if self.since_snapshot < threshold && !stale {
            return;
        }
        self.snapshot_busy.store(true, Ordering::Release);
        self.since_snapshot = 0;
        self.snapshot_at_ms = core.now_ms();
        // Copy under the caller's lock (a memory copy); encode and write elsewhere.
        let copy = core.clone();
        let upto = self.last;
        let tx = self.writer.sender();
        let len = self.snapshot_len.clone();
        let busy = self.snapshot_busy.clone();
        let busy_on_spawn_error = self.snapshot_busy.clone();
        let spawned = std::thread::Builder::new()
            .name("mq-snapshot".into())
            .spawn(move || match encode_snapshot(&copy) {
                Ok(bytes) => {
                    len.store(bytes.len() as u64, Ordering::Relaxed);
                    if tx.send(Item::Snapshot { upto, bytes }).is_err() {
                        busy.store(false, Ordering::Release);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot not taken");
                    busy.store(false, Ordering::Release);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "snapshot thread not started");
            busy_on_spawn_error.store(false, Ordering::Release);
        }
    }
}

/// The snapshot bytes of a core: the format version, then the core (postcard).
fn encode_snapshot(core: &BrokerCore) -> Result<Vec<u8>, StorageError> {
    let mut bytes = postcard::to_allocvec(&FORMAT)
        .map_err(|e| StorageError::Engine(format!("encoding a snapshot: {e}")))?;
    postcard::to_io(core, &mut bytes)
        .map_err(|e| StorageError::Engine(format!("encoding a snapshot: {e}")))?;
    Ok(bytes)
}

/// Reads [`encode_snapshot`]'s output.
fn decode_snapshot(bytes: &[u8]) -> Result<BrokerCore, StorageError> {
    let (format, rest) = postcard::take_from_bytes::<u32>(bytes)
        .map_err(|e| StorageError::Corrupt(format!("snapshot header: {e}")))?;
    if !READABLE_FORMATS.contains(&format) {
        return Err(StorageError::Format {
            found: format,
            expected: FORMAT,
        });
    }
    crate::core::take_refused();
    let mut core: BrokerCore =
        postcard::from_bytes(rest).map_err(|e| match crate::core::take_refused() {
            Some(refused) => refused_value("the snapshot", refused),
            None => StorageError::Corrupt(format!("snapshot: {e}")),
        })?;
    core.reindex();
    Ok(core)
}

/// The error for a stored value this build refuses, found in `place`: [`StorageError::RefusedName`]
/// for a name, [`StorageError::Corrupt`] saying what and why for the rest.
pub(crate) fn refused_value(place: &str, refused: crate::core::Refused) -> StorageError {
    let crate::core::Refused {
        what,
        value,
        reason,
    } = refused;
    match value {
        Some(value) => StorageError::RefusedName {
            place: place.to_owned(),
            what,
            value,
            reason,
        },
        None => StorageError::Corrupt(format!("{place}: {what}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};

    #[test]
    fn snapshots_round_trip_and_check_their_format() {
        let mut core = BrokerCore::new(CoreConfig {
            id_seed: 9,
            ..CoreConfig::default()
        });
        let topic = TopicName::new("T").unwrap();
        let group = GroupId::new("G").unwrap();
        let one = BatchSize::new(1).unwrap();
        core.consume(
            0,
            None,
            &topic,
            &group,
            ConsumeKind::Normal,
            &TagFilter::All,
            one,
        )
        .unwrap();
        core.publish(10, None, &topic, TopicMessage::new("a").unwrap())
            .unwrap();
        core.publish(10, None, &topic, TopicMessage::new("b").unwrap())
            .unwrap();
        core.consume(
            20,
            None,
            &topic,
            &group,
            ConsumeKind::Normal,
            &TagFilter::All,
            one,
        )
        .unwrap();
        let bytes = encode_snapshot(&core).unwrap();
        assert_eq!(decode_snapshot(&bytes).unwrap(), core);
        // Format 2 (the same form) still reads.
        let mut two = postcard::to_allocvec(&2u32).unwrap();
        two.extend_from_slice(&bytes[1..]);
        assert_eq!(decode_snapshot(&two).unwrap(), core);

        let mut other = postcard::to_allocvec(&(FORMAT + 1)).unwrap();
        other.extend_from_slice(&bytes[1..]);
        assert_eq!(
            decode_snapshot(&other),
            Err(StorageError::Format {
                found: FORMAT + 1,
                expected: FORMAT
            })
        );
        assert!(matches!(
            decode_snapshot(&bytes[..bytes.len() / 2]),
            Err(StorageError::Corrupt(_))
        ));
    }
}
