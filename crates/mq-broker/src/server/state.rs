//! What the server's tasks share: the backend, the accepted credentials, the broker's
//! clock, and the counters of open connections and waiting polls.

use super::Credential;
use super::Limits;
use super::backend::Backend;
use mq_proto::server::request_id;
use mq_proto::sign::{SigningKey, format_http_date};
use mq_proto::{InstanceId, TopicName};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub(super) type TopicKey = (Option<InstanceId>, TopicName);

/// An access key the server accepts, as requests are checked against it.
pub(super) struct AccessKey {
    /// Its AccessKey id, shared by the calls it signs (a publish's trace records it) rather
    /// than copied per request.
    pub(super) id: Arc<str>,
    /// The only instance the key may address (`None`: every instance).
    pub(super) instance: Option<InstanceId>,
    /// Its secret, prepared for verifying signatures.
    pub(super) signing_key: SigningKey,
}

impl From<Credential> for AccessKey {
    fn from(c: Credential) -> Self {
        Self {
            id: Arc::from(c.access_key_id),
            signing_key: SigningKey::new(&c.access_key_secret),
            instance: c.instance,
        }
    }
}

impl AsRef<SigningKey> for AccessKey {
    fn as_ref(&self) -> &SigningKey {
        &self.signing_key
    }
}

pub(crate) struct Shared {
    /// The admin API's bearer token and whether it was generated; `None` = no admin API.
    pub(super) admin: Option<(crate::config::AdminToken, bool)>,
    pub(super) backend: Backend,
    /// The accepted access keys, by AccessKey id.
    pub(super) credentials: HashMap<String, AccessKey>,
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
/// [`ServerConfig::clock_offset_ms`](super::ServerConfig::clock_offset_ms), plus an advance:
/// with [`ServerConfig::test_clock`](super::ServerConfig::test_clock), the moves asked for
/// (`POST /admin/clock`), and, at start, what it takes not to run behind the time a
/// recovered state recorded ([`resume`](Self::resume)). `POST /admin/reset` takes the
/// advance back to 0 ([`reset`](Self::reset)). Clones share the advance.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    /// The configured shift from the system clock (`clock_offset_ms`), ms.
    skew_ms: i64,
    /// How far the clock runs ahead of the configured one, ms (never negative).
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

    /// The current shift from the system clock (configured skew plus the advance), ms.
    pub(crate) fn offset_ms(&self) -> i64 {
        self.skew_ms.saturating_add(self.advanced_ms())
    }

    /// How far the clock runs ahead of the configured one (test-clock moves, catching up
    /// at start), ms.
    pub(crate) fn advanced_ms(&self) -> i64 {
        self.advanced_ms.load(Ordering::Acquire)
    }

    /// Moves a test clock forward by `ms` (at most [`MAX_ADVANCE_MS`]; the caller checks);
    /// `false` (and no change) for a clock that is not a test clock.
    pub(crate) fn advance(&self, ms: u64) -> bool {
        if self.test_clock {
            self.add(ms.min(MAX_ADVANCE_MS));
        }
        self.test_clock
    }

    fn add(&self, ms: u64) {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        let _ = self
            .advanced_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                Some(o.saturating_add(ms))
            });
    }

    /// Takes the advance back to 0: the configured clock again (`POST /admin/reset`, which
    /// drops every timed thing with the state, so time may go back).
    pub(crate) fn reset(&self) {
        self.advanced_ms.store(0, Ordering::Release);
    }

    /// Starts the clock of a broker whose state was recovered, whose latest time was
    /// `recorded_now_ms` and whose test clock had been moved `recorded_advance_ms` ahead
    /// ([`BrokerCore::clock_advance_ms`](crate::core::BrokerCore::clock_advance_ms)): a test
    /// clock takes that advance back (it goes on from where it was, the time it was down
    /// included). Then any clock still behind `recorded_now_ms` — the system clock was set
    /// back, or the state was written with a test clock moved ahead and the broker now runs
    /// without `--test-clock` — is moved ahead to it and runs on from there, so the times
    /// it gives never fall behind the ones the state holds (publish times keep increasing,
    /// an invisibility lasts its length). Returns that catch-up, ms (0: none needed).
    pub(crate) fn resume(&self, recorded_advance_ms: i64, recorded_now_ms: u64) -> u64 {
        if self.test_clock {
            self.advanced_ms
                .store(recorded_advance_ms.max(0), Ordering::Release);
        }
        let behind = recorded_now_ms.saturating_sub(self.now_ms());
        self.add(behind);
        behind
    }

    /// The broker's time: what messages, `NextConsumeTime` and the `Date` header follow.
    pub(crate) fn now(&self) -> SystemTime {
        shifted(self.offset_ms())
    }

    /// The `Date` header of a response: [`now`](Self::now) in whole seconds (RFC 9110
    /// §5.6.7), formatted once per second and worker thread rather than per response.
    pub(crate) fn http_date(&self) -> Option<http::HeaderValue> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<(u64, http::HeaderValue)>> =
                const { std::cell::RefCell::new(None) };
        }
        let now = self.now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        LAST.with_borrow_mut(|last| match last {
            Some((at, value)) if *at == secs => Some(value.clone()),
            _ => {
                let value = http::HeaderValue::from_str(&format_http_date(now)).ok()?;
                *last = Some((secs, value.clone()));
                Some(value)
            }
        })
    }

    /// The time signed requests are checked against (PROTOCOL §2.5, the 15-minute `Date`
    /// window): the system clock with the configured skew, without the advance — clients
    /// sign with their own clocks, which a test clock does not move.
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn a_resumed_test_clock_goes_on_from_its_recorded_advance() {
        let clock = Clock::new(0, true);
        assert_eq!(
            clock.resume(3_600_000, 0),
            0,
            "already ahead of a past time"
        );
        assert_eq!(clock.offset_ms(), 3_600_000);
        let ahead = clock.now().duration_since(clock.signing_now());
        assert!(ahead.is_ok_and(|d| d >= Duration::from_millis(HOUR_MS - 1_000)));
        // Another clock of the same broker sees the advance; a reset drops it.
        let shared = clock.clone();
        clock.reset();
        assert_eq!((shared.advanced_ms(), shared.offset_ms()), (0, 0));
    }

    #[test]
    fn a_clock_behind_the_recorded_time_catches_up_with_it() {
        // Without --test-clock a recorded advance is not taken back, but the clock never
        // runs behind the state's time: it goes on from it.
        let clock = Clock::new(0, false);
        let recorded = clock.now_ms() + HOUR_MS;
        let caught_up = clock.resume(3_600_000, recorded);
        assert!(
            (HOUR_MS - 1_000..=HOUR_MS).contains(&caught_up),
            "{caught_up}"
        );
        assert!(clock.now_ms() >= recorded);
        assert!(!clock.advance(1), "not a test clock");
        // A test clock whose recorded advance is short of the recorded time (the system
        // clock was set back meanwhile) catches up too; a configured skew stays.
        let clock = Clock::new(-5_000, true);
        let recorded = clock.now_ms() + 2 * HOUR_MS;
        let caught_up = clock.resume(HOUR_MS as i64, recorded);
        assert!(
            caught_up > HOUR_MS - 1_000 && caught_up <= HOUR_MS,
            "{caught_up}"
        );
        assert!(clock.now_ms() >= recorded);
        assert_eq!(clock.offset_ms(), -5_000 + clock.advanced_ms());
    }
}
