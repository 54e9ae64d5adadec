//! What the server's tasks share: the core behind its mutex, the accepted credentials, the
//! broker's clock, the per-topic change channels that wake long polls, and the counters of
//! open connections and waiting polls.

use super::Credential;
use super::Limits;
use crate::core::BrokerCore;
use crate::durable::JournaledCore;
use mq_proto::server::request_id;
use mq_proto::{InstanceId, TopicName};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};

pub(super) type TopicKey = (Option<InstanceId>, TopicName);

pub(super) struct Shared {
    pub(super) core: Mutex<JournaledCore>,
    pub(super) credentials: HashMap<String, Credential>,
    pub(super) host_id: String,
    pub(super) limits: Limits,
    /// One change channel per topic that has had a waiting poll. Only topics the core knows
    /// get one (a poll subscribes after its consume succeeded), so the map is bounded by the
    /// core's topics. Lock order: `core`, then `topic_watches`.
    pub(super) topic_watches: Mutex<HashMap<TopicKey, watch::Sender<u64>>>,
    pub(super) reschedule: Notify,
    /// When the timer task will wake next (epoch ms), written under the core lock. Requests
    /// wake it early only when the core's next wake-up comes before this: waking it on every
    /// request cost a task switch and a second core lock per request.
    pub(super) timer_armed_at: AtomicU64,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) requests: AtomicU64,
    pub(super) seed: u64,
    pub(super) tls: Option<crate::tls::TlsConfig>,
    pub(super) clock: Clock,
    pub(super) waiting_polls: AtomicUsize,
    pub(super) connections: AtomicUsize,
}

pub(super) fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// The broker's clock: the system clock shifted by [`ServerConfig::clock_offset_ms`](super::ServerConfig::clock_offset_ms).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    pub(super) offset_ms: i64,
}

impl Clock {
    pub(super) fn now(self) -> SystemTime {
        let system = SystemTime::now();
        let shift = Duration::from_millis(self.offset_ms.unsigned_abs());
        let shifted = if self.offset_ms >= 0 {
            system.checked_add(shift)
        } else {
            system.checked_sub(shift)
        };
        shifted.unwrap_or(system)
    }

    /// Milliseconds since the Unix epoch, as the core takes them.
    pub(super) fn now_ms(self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Moves a topic's channel to `version`, waking its receivers if that is news.
fn advance_watch(tx: &watch::Sender<u64>, version: u64) {
    tx.send_if_modified(|old| {
        if *old != version {
            *old = version;
            true
        } else {
            false
        }
    });
}

impl Shared {
    pub(super) fn lock_core(&self) -> MutexGuard<'_, JournaledCore> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock_watches(&self) -> MutexGuard<'_, HashMap<TopicKey, watch::Sender<u64>>> {
        self.topic_watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn next_request_id(&self) -> String {
        request_id(self.requests.fetch_add(1, Ordering::Relaxed) ^ self.seed)
    }

    /// Subscribes to the change counter of a topic. Must be called with the core locked
    /// (`core` is the guarded value), right after a consume found nothing: no change can
    /// slip in between, and the channel is first brought up to the core's current version so
    /// that only later changes wake the receiver.
    pub(super) fn subscribe(&self, core: &BrokerCore, key: &TopicKey) -> watch::Receiver<u64> {
        let version = core.topic_version(key.0.as_ref(), &key.1);
        let mut watches = self.lock_watches();
        let tx = watches
            .entry(key.clone())
            .or_insert_with(|| watch::channel(version).0);
        advance_watch(tx, version);
        tx.subscribe()
    }

    /// Wakes the waiters of every topic whose change counter moved.
    pub(super) fn publish_versions(&self, core: &BrokerCore) {
        let watches = self.lock_watches();
        for ((instance, topic), tx) in watches.iter() {
            advance_watch(tx, core.topic_version(instance.as_ref(), topic));
        }
    }

    /// Wakes the waiters of one topic if its counter moved, and re-arms the timer task.
    pub(super) fn changed(&self, core: &BrokerCore, key: &TopicKey) {
        let version = core.topic_version(key.0.as_ref(), &key.1);
        if let Some(tx) = self.lock_watches().get(key) {
            advance_watch(tx, version);
        }
        self.rearm_timer(core);
    }

    /// Wakes the timer task if the core's next wake-up is earlier than the one it sleeps
    /// until. Must be called with the core locked (`core` is the guarded value).
    pub(super) fn rearm_timer(&self, core: &BrokerCore) {
        if core
            .next_wakeup()
            .is_some_and(|at| at < self.timer_armed_at.load(Ordering::Acquire))
        {
            self.reschedule.notify_one();
        }
    }
}

/// A place among the waiting long polls; given back on drop, including when hyper drops
/// the request future because the client went away.
pub(super) struct PollSlot<'a>(&'a Shared);

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
