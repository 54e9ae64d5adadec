//! What the server's tasks share: the backend, the accepted credentials, the broker's
//! clock, and the counters of open connections and waiting polls.

use super::Credential;
use super::Limits;
use super::backend::Backend;
use mq_proto::server::request_id;
use mq_proto::{InstanceId, TopicName};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub(super) type TopicKey = (Option<InstanceId>, TopicName);

pub(crate) struct Shared {
    /// The admin API's bearer token and whether it was generated; `None` = no admin API.
    pub(super) admin: Option<(crate::config::AdminToken, bool)>,
    pub(super) backend: Backend,
    pub(super) credentials: HashMap<String, Credential>,
    pub(super) host_id: String,
    pub(super) limits: Limits,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) requests: AtomicU64,
    pub(super) seed: u64,
    pub(super) tls: Option<crate::tls::TlsConfig>,
    pub(super) clock: Clock,
    pub(super) waiting_polls: AtomicUsize,
    pub(super) connections: AtomicUsize,
    /// The most connections open at once since the start.
    pub(super) connections_peak: AtomicUsize,
    pub(super) request_metrics: super::metrics::RequestMetrics,
    pub(super) faults: super::faults::Faults,
}

pub(super) fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// The broker's clock: the system clock shifted by
/// [`ServerConfig::clock_offset_ms`](super::ServerConfig::clock_offset_ms), and, with
/// [`ServerConfig::test_clock`](super::ServerConfig::test_clock), moved forward on request
/// (`POST /admin/clock`). Clones share the shift.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    /// The configured shift from the system clock (`clock_offset_ms`), ms.
    skew_ms: i64,
    /// How far a test clock has been moved forward (`POST /admin/clock`), ms.
    advanced_ms: Arc<AtomicI64>,
    test_clock: bool,
}

/// The longest single move of a test clock: 400 days (the protocol's longest delay is 40
/// days; its check horizon and retention are shorter).
pub(crate) const MAX_ADVANCE_MS: u64 = 400 * 24 * 3600 * 1000;

impl Clock {
    pub(crate) fn new(skew_ms: i64, test_clock: bool) -> Self {
        Self {
            skew_ms,
            advanced_ms: Arc::new(AtomicI64::new(0)),
            test_clock,
        }
    }

    /// Whether [`advance`](Self::advance) may move it.
    pub(crate) fn is_test_clock(&self) -> bool {
        self.test_clock
    }

    /// The current shift from the system clock (configured skew plus test-clock moves), ms.
    pub(crate) fn offset_ms(&self) -> i64 {
        self.skew_ms
            .saturating_add(self.advanced_ms.load(Ordering::Acquire))
    }

    /// Moves a test clock forward by `ms` (at most [`MAX_ADVANCE_MS`]; the caller checks);
    /// `false` (and no change) for a clock that is not a test clock.
    pub(crate) fn advance(&self, ms: u64) -> bool {
        if self.test_clock {
            let ms = i64::try_from(ms.min(MAX_ADVANCE_MS)).unwrap_or(0);
            let _ = self
                .advanced_ms
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                    Some(o.saturating_add(ms))
                });
        }
        self.test_clock
    }

    /// The broker's time: what messages, `NextConsumeTime` and the `Date` header follow.
    pub(crate) fn now(&self) -> SystemTime {
        shifted(self.offset_ms())
    }

    /// The time signed requests are checked against (PROTOCOL §2.5, the 15-minute `Date`
    /// window): the system clock with the configured skew, without test-clock moves —
    /// clients sign with their own clocks, which a test clock does not move.
    pub(crate) fn signing_now(&self) -> SystemTime {
        shifted(self.skew_ms)
    }

    /// Milliseconds since the Unix epoch, as the core takes them.
    pub(crate) fn now_ms(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock shifted by `offset_ms`.
fn shifted(offset_ms: i64) -> SystemTime {
    let system = SystemTime::now();
    let shift = Duration::from_millis(offset_ms.unsigned_abs());
    let shifted = if offset_ms >= 0 {
        system.checked_add(shift)
    } else {
        system.checked_sub(shift)
    };
    shifted.unwrap_or(system)
}

impl Shared {
    pub(super) fn next_request_id(&self) -> String {
        request_id(self.requests.fetch_add(1, Ordering::Relaxed) ^ self.seed)
    }
}

/// A place among the waiting long polls; given back on drop, including when hyper drops
/// the request future because the client went away.
pub(crate) struct PollSlot<'a>(&'a Shared);

impl<'a> PollSlot<'a> {
    pub(super) fn acquire(shared: &'a Shared) -> Option<Self> {
        let before = shared.waiting_polls.fetch_add(1, Ordering::AcqRel);
        if before >= shared.limits.max_waiting_polls {
            shared.waiting_polls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(shared))
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        self.0.waiting_polls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts an open connection for as long as it lives (also when its task is aborted).
pub(super) struct ConnectionSlot(pub(super) Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
