//! The built-in backend: the core (in memory or journaled) behind a mutex, the per-topic
//! change channels that wake long polls, and the timer task that runs the core's
//! housekeeping when it falls due.

use super::backend::Waiting;
use super::state::{Clock, TopicKey};
use crate::core::{BrokerCore, Call, CoreError, Outcome, Stats};
use crate::durable::{CommitMetrics, JournalHealth, JournaledCore, StorageError};
use mq_proto::ErrorCode;
use mq_proto::wire::error::RequestError;
use std::collections::HashMap;
use std::ops::{ControlFlow, Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

pub(super) struct LocalBackend {
    core: Mutex<JournaledCore>,
    /// One change channel per topic that has had a waiting poll. Only topics the core knows
    /// get one (a poll subscribes after its consume succeeded), so the map is bounded by the
    /// core's topics. Lock order: `core`, then `topic_watches`.
    topic_watches: Mutex<HashMap<TopicKey, watch::Sender<u64>>>,
    reschedule: Notify,
    /// When the timer task will wake next (epoch ms), written under the core lock. Requests
    /// wake it early only when the core's next wake-up comes before this: waking it on every
    /// request cost a task switch and a second core lock per request.
    timer_armed_at: AtomicU64,
    clock: Clock,
    /// The journal's commit counts (`--data-dir`), read by `/metrics` without the core lock.
    commit_metrics: Option<CommitMetrics>,
    /// Whether the journal (`--data-dir`) still works, read by `/ready` without the core lock.
    journal_health: Option<JournalHealth>,
}

/// The core, locked. Unlocking (dropping it) first lets go of the lock, then drops the
/// messages the core removed meanwhile ([`JournaledCore::take_retired`]): the other
/// workers do not wait for their memory to be freed.
struct CoreLock<'a>(Option<MutexGuard<'a, JournaledCore>>);

impl Deref for CoreLock<'_> {
    type Target = JournaledCore;

    fn deref(&self) -> &JournaledCore {
        self.0.as_ref().expect("locked until dropped")
    }
}

impl DerefMut for CoreLock<'_> {
    fn deref_mut(&mut self) -> &mut JournaledCore {
        self.0.as_mut().expect("locked until dropped")
    }
}

impl Drop for CoreLock<'_> {
    fn drop(&mut self) {
        if let Some(mut core) = self.0.take() {
            let retired = core.take_retired();
            drop(core);
            drop(retired);
        }
    }
}

fn core_error(e: CoreError) -> RequestError {
    RequestError::new(e.code, e.message)
}

/// The change could not be made durable: nothing is acknowledged.
fn storage_error(e: StorageError) -> RequestError {
    RequestError::new(ErrorCode::InternalError, format!("storage: {e}"))
}

/// Which waiting polls a change wakes besides those whose topic's counter moved.
#[derive(Clone, Copy)]
enum Wake {
    /// None.
    IfChanged,
    /// Those of the call's topic.
    Topic,
    /// All.
    All,
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

impl LocalBackend {
    pub(super) fn new(core: JournaledCore, clock: Clock) -> Self {
        Self {
            commit_metrics: core.commit_metrics(),
            journal_health: core.journal_health(),
            core: Mutex::new(core),
            topic_watches: Mutex::new(HashMap::new()),
            reschedule: Notify::new(),
            timer_armed_at: AtomicU64::new(0),
            clock,
        }
    }

    fn lock_core(&self) -> CoreLock<'_> {
        CoreLock(Some(self.core.lock().unwrap_or_else(|e| e.into_inner())))
    }

    fn lock_watches(&self) -> MutexGuard<'_, HashMap<TopicKey, watch::Sender<u64>>> {
        self.topic_watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stats(&self) -> Stats {
        self.lock_core().stats()
    }

    /// Whether calls can be served: not once the journal stopped after a storage failure
    /// (every change would answer 500 until a restart).
    pub(super) fn ready(&self) -> bool {
        self.journal_health
            .as_ref()
            .is_none_or(|h| h.failure().is_none())
    }

    pub(super) fn commit_metrics(&self) -> Option<&CommitMetrics> {
        self.commit_metrics.as_ref()
    }

    /// Commits what is pending and releases the data directory.
    pub(super) async fn close(&self) {
        let closing = self.lock_core().close();
        closing.await;
    }

    /// Serves one call. A consume that finds nothing waits on its topic's change channel
    /// until its wait ends (holding a poll slot while it waits).
    pub(super) async fn serve(
        &self,
        call: Call,
        mut waiting: Waiting<'_>,
    ) -> Result<Outcome, RequestError> {
        let Some((instance, topic)) = call.topic() else {
            return self.apply_and_sync(call).await;
        };
        let key: TopicKey = (instance.cloned(), topic.clone());
        if !matches!(call, Call::Consume { .. }) {
            return self.apply_and_sync(call).await;
        }
        let mut slot = None;
        loop {
            let found_or_wait = {
                let mut core = self.lock_core();
                let found = core.apply(self.clock.now_ms(), call.clone());
                // The consume may have moved the next wake-up (new invisibility), and its
                // sweep (done even when the call is then refused) may have made messages
                // visible to the topic's other groups, whose waiters the timer will not
                // wake: it only wakes those of topics still due.
                self.changed(&core, &key);
                match found.map_err(core_error)? {
                    Outcome::Delivered(found) if found.is_empty() => {
                        if waiting.is_over() {
                            return Ok(Outcome::Delivered(found));
                        }
                        ControlFlow::Continue(self.subscribe(&core, &key))
                    }
                    found => ControlFlow::Break((found, core.sync_point())),
                }
            };
            let mut changes = match found_or_wait {
                ControlFlow::Break((found, durable)) => {
                    // Answer only once the deliveries (and all they saw) are durable.
                    durable.wait().await.map_err(storage_error)?;
                    return Ok(found);
                }
                ControlFlow::Continue(changes) => changes,
            };
            if slot.is_none() {
                match waiting.slot() {
                    Some(s) => slot = Some(s),
                    None => return Ok(Outcome::Delivered(Vec::new())),
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // Unreachable while the backend lives; never spin on it.
                        waiting.until_over().await;
                    }
                }
                () = waiting.until_over() => {}
            }
        }
    }

    /// Applies a call that never waits, wakes the waiters of its topic, and returns once
    /// the change is durable.
    async fn apply_and_sync(&self, call: Call) -> Result<Outcome, RequestError> {
        if let Call::Publish { message, .. } = &call {
            // The body's MD5 (kept with the message) is computed here, outside the core's
            // lock, which the other workers may be waiting for; the core reads it back.
            message.body_md5();
        }
        let key = call.topic().map(|(i, t)| (i.cloned(), t.clone()));
        let reset = matches!(call, Call::Reset);
        // What a waiting poll was registered for is gone: it must consume again now, so
        // its group is registered again before the next publish (left asleep until its
        // wait ended, a publish meanwhile re-created the topic without the group, and the
        // message went to nobody). The counter alone may not move: it is 0 for an empty
        // topic and for a deleted one. (Deleting a group moves its topics' counters.)
        let wake = match &call {
            Call::DeleteTopic { .. } => Wake::Topic,
            Call::Reset => Wake::All,
            _ => Wake::IfChanged,
        };
        let (outcome, durable) = {
            let mut core = self.lock_core();
            if reset {
                // Every timed thing goes with the state: the clock goes back to the
                // configured one (a test clock's advance is dropped) and the core with it.
                self.clock.reset();
            }
            let outcome = core.apply(self.clock.now_ms(), call);
            // Even for a refused call: its topic may have been swept before the refusal.
            match &key {
                Some(key) => self.changed(&core, key),
                None => self.publish_versions(&core),
            }
            if outcome.is_ok() {
                self.wake(wake, key.as_ref());
            }
            (outcome.map_err(core_error)?, core.sync_point())
        };
        if reset {
            // The timer task's wake-up was computed on the old time.
            self.reschedule.notify_one();
        }
        durable.wait().await.map_err(storage_error)?;
        Ok(outcome)
    }

    /// Sleeps until the core's next wake-up, runs its housekeeping, wakes the waiters of
    /// every topic that changed; until shutdown.
    pub(super) async fn timer_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now_ms();
            let sleep = {
                let core = self.lock_core();
                // Never spin: a wake-up in the past is handled by `maintain` below.
                let sleep_ms = match core.next_wakeup() {
                    Some(at) => at.saturating_sub(now).clamp(1, 60_000),
                    None => 60_000,
                };
                self.timer_armed_at
                    .store(now.saturating_add(sleep_ms), Ordering::Release);
                Duration::from_millis(sleep_ms)
            };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                // A request moved the next wake-up before the one slept until, maybe to
                // now: run what is due, then sleep again. (Going straight back to sleep let
                // requests arriving less than 1 ms apart put housekeeping off for seconds,
                // and with it the waking of polls waiting for a delayed message.)
                () = self.reschedule.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            self.maintain_now();
        }
    }

    /// Runs the core's housekeeping at the clock's time and wakes the waiters of every
    /// topic that changed.
    fn maintain_now(&self) {
        let mut core = self.lock_core();
        self.maintain_locked(&mut core);
    }

    /// [`maintain_now`](Self::maintain_now) with the core locked (`core` is the guarded
    /// value).
    fn maintain_locked(&self, core: &mut JournaledCore) {
        let now = self.clock.now_ms();
        // Only the topics with something due change: their waiters are the ones to wake
        // (not a pass over every watched topic at each wake-up of the timer). With none,
        // there is nothing to do (nor to journal).
        let due = core.due_topics(now);
        if due.is_empty() {
            return;
        }
        if let Err(e) = core.apply(now, Call::Maintain) {
            tracing::error!(error = %e.message, "housekeeping failed");
        }
        let watches = self.lock_watches();
        for key in &due {
            if let Some(tx) = watches.get(key) {
                advance_watch(tx, core.topic_version(key.0.as_ref(), &key.1));
            }
        }
    }

    /// Moves the test clock forward by `ms` and records its advance in the core (journaled
    /// with `--data-dir`, so a restart goes on from there); what came due happens now, and
    /// the timer task re-reads the core's next wake-up against the new time. Returns once
    /// the move is durable. The caller checks that the clock is a test clock.
    pub(super) async fn advance_clock(&self, ms: u64) -> Result<(), RequestError> {
        let durable = {
            let mut core = self.lock_core();
            self.clock.advance(ms);
            core.record_clock_advance(self.clock.now_ms(), self.clock.advanced_ms())
                .map_err(core_error)?;
            self.maintain_locked(&mut core);
            core.sync_point()
        };
        self.reschedule.notify_one();
        durable.wait().await.map_err(storage_error)
    }

    /// See [`BrokerCore::find`].
    pub(super) fn find(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        topic: &mq_proto::TopicName,
        lookup: crate::core::Lookup<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::core::Page, RequestError> {
        self.lock_core()
            .find(instance, topic, lookup, after, limit)
            .map_err(core_error)
    }

    /// See [`BrokerCore::page`].
    pub(super) fn page(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        topic: &mq_proto::TopicName,
        range: std::ops::Range<u64>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::core::Page, RequestError> {
        self.lock_core()
            .page(instance, topic, range.start, range.end, after, limit)
            .map_err(core_error)
    }

    /// See [`BrokerCore::trace`].
    pub(super) fn trace(&self, message_id: &str) -> Option<crate::core::MessageTrace> {
        self.lock_core().trace(message_id)
    }

    /// See [`BrokerCore::groups`].
    pub(super) fn groups(&self) -> Vec<crate::core::GroupInfo> {
        self.lock_core().groups()
    }

    /// The settings a group consumes with (its own where it was created with some).
    pub(super) fn group_settings(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        group: &mq_proto::GroupId,
    ) -> crate::core::GroupSettings {
        self.lock_core().group_settings(instance, group)
    }

    /// See [`BrokerCore::peek`].
    pub(super) fn peek(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        topic: &mq_proto::TopicName,
        group: Option<&mq_proto::GroupId>,
        state: crate::core::PeekState,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::core::Listing<crate::core::PeekedMessage>, RequestError> {
        self.lock_core()
            .peek(instance, topic, group, state, after, limit)
            .map_err(core_error)
    }

    /// Subscribes to the change counter of a topic. Must be called with the core locked
    /// (`core` is the guarded value), right after a consume found nothing: no change can
    /// slip in between, and the channel is first brought up to the core's current version so
    /// that only later changes wake the receiver.
    fn subscribe(&self, core: &BrokerCore, key: &TopicKey) -> watch::Receiver<u64> {
        let version = core.topic_version(key.0.as_ref(), &key.1);
        let mut watches = self.lock_watches();
        let tx = watches
            .entry(key.clone())
            .or_insert_with(|| watch::channel(version).0);
        advance_watch(tx, version);
        tx.subscribe()
    }

    /// Wakes the waiters of every topic whose change counter moved.
    fn publish_versions(&self, core: &BrokerCore) {
        let watches = self.lock_watches();
        for ((instance, topic), tx) in watches.iter() {
            advance_watch(tx, core.topic_version(instance.as_ref(), topic));
        }
    }

    /// Wakes waiters whose counters may not have moved: those of `key` or of every topic.
    fn wake(&self, wake: Wake, key: Option<&TopicKey>) {
        let watches = self.lock_watches();
        let wake_one = |tx: &watch::Sender<u64>| tx.send_modify(|_| {});
        match (wake, key) {
            (Wake::IfChanged, _) | (Wake::Topic, None) => {}
            (Wake::Topic, Some(key)) => watches.get(key).into_iter().for_each(wake_one),
            (Wake::All, _) => watches.values().for_each(wake_one),
        }
    }

    /// Wakes the waiters of one topic if its counter moved, and re-arms the timer task.
    fn changed(&self, core: &BrokerCore, key: &TopicKey) {
        let version = core.topic_version(key.0.as_ref(), &key.1);
        if let Some(tx) = self.lock_watches().get(key) {
            advance_watch(tx, version);
        }
        self.rearm_timer(core);
    }

    /// Wakes the timer task if the core's next wake-up is earlier than the one it sleeps
    /// until. Must be called with the core locked (`core` is the guarded value).
    fn rearm_timer(&self, core: &BrokerCore) {
        if core
            .next_wakeup()
            .is_some_and(|at| at < self.timer_armed_at.load(Ordering::Acquire))
        {
            self.reschedule.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::CoreConfig;
    use crate::durable::{DurableOptions, LogEngine, RecordVisitor};
    use mq_proto::{TopicMessage, TopicName};
    use std::sync::atomic::AtomicBool;

    /// An engine whose appends fail once `full` is set (a full disk).
    struct Filling {
        full: Arc<AtomicBool>,
    }

    impl LogEngine for Filling {
        fn append(&mut self, _: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
            if self.full.load(Ordering::Relaxed) {
                return Err(StorageError::Engine("No space left on device".into()));
            }
            Ok(())
        }

        fn install_snapshot(&mut self, _: u64, _: &[u8]) -> Result<(), StorageError> {
            Ok(())
        }

        fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
            Ok(None)
        }

        fn read_records(&self, _: u64, _: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
            Ok(())
        }
    }

    fn publish(body: &str) -> Call {
        Call::Publish {
            instance: None,
            topic: TopicName::new("T").unwrap(),
            message: TopicMessage::new(body).unwrap(),
            producer: None,
        }
    }

    /// `GET /ready` answers 503 once the journal stopped after a storage failure: every
    /// change would answer 500 until a restart.
    #[tokio::test]
    async fn not_ready_once_the_journal_stopped_after_a_storage_failure() {
        let full = Arc::new(AtomicBool::new(false));
        let engine = Filling { full: full.clone() };
        let core =
            JournaledCore::open_with(engine, CoreConfig::default(), DurableOptions::default())
                .unwrap();
        let backend = LocalBackend::new(core, Clock::new(0, false));
        backend.apply_and_sync(publish("kept")).await.unwrap();
        assert!(backend.ready());
        assert!(backend.lock_core().journal_failure().is_none());

        full.store(true, Ordering::Relaxed);
        let e = backend.apply_and_sync(publish("lost")).await.unwrap_err();
        assert!(e.message.contains("storage failure"), "{e:?}");
        assert!(!backend.ready(), "ready after the journal stopped");
        assert!(matches!(
            backend.lock_core().journal_failure(),
            Some(StorageError::Failed(why)) if why.contains("No space left")
        ));
        // Still not ready when the disk has room again: nothing is journaled until a restart.
        full.store(false, Ordering::Relaxed);
        assert!(backend.apply_and_sync(publish("after")).await.is_err());
        assert!(!backend.ready());
        backend.close().await;

        let in_memory = LocalBackend::new(
            JournaledCore::in_memory(CoreConfig::default()),
            Clock::new(0, false),
        );
        assert!(in_memory.ready());
    }
}
