//! Orphaned-transaction checks: the engine asks a producer about an undecided half message
//! over the v2 `Telemetry` stream (`RecoverOrphanedTransactionCommand`); the HTTP protocol
//! lets producers poll for such checks (`trans=pop`). The gateway keeps one Telemetry stream
//! per namespace in which it publishes transactional messages or polls for checks, declares
//! itself a producer of those topics (`Settings.publishing`), heartbeats as a producer,
//! queues each check per (namespace, topic) and hands the checks to half-message polls.
//!
//! Nothing here must survive a restart: an engine asks again about a transaction that is
//! still undecided (Apache RocketMQ 5: every `transactionCheckInterval`, up to
//! `transactionCheckMax` times).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_proxy_core::proto::v2 as pb;
use tokio::sync::{Notify, mpsc, watch};

use super::Caller;
use super::convert;

/// Most checks kept per topic; older ones give way (the engine asks again).
const MAX_PENDING_PER_TOPIC: usize = 10_000;
/// Most bytes of checks kept over all topics (see `size_of`): a check holds
/// a half message of up to 64 KB, so the count alone would allow 640 MB per topic. At the
/// limit a topic's oldest checks give way to its new one; a topic with none kept drops the
/// new one (the engine asks again).
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// Most transactions whose offer count is remembered.
const MAX_OFFERS: usize = 100_000;
/// How often the gateway tells the engine its producer session is alive (the v2 clients'
/// heartbeat; a proxy forgets a client, and the transactions it should be asked about, when
/// heartbeats stop).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// A check the engine sent: the half message and its transaction id.
pub(super) struct Check {
    pub(super) message: pb::Message,
    pub(super) transaction_id: String,
    /// How many times the gateway has offered this transaction (this one included).
    pub(super) offered: u32,
}

/// A queued check: the half message and its transaction id.
type Pending = (pb::Message, String);

/// The queued checks per (namespace, topic), within [`MAX_PENDING_PER_TOPIC`] per topic and
/// `max_bytes` over all.
struct PendingChecks {
    queues: HashMap<(String, String), VecDeque<Pending>>,
    bytes: usize,
    max_bytes: usize,
}

/// What a queued check holds, in bytes: body, user properties and ids (system properties
/// counted as a flat 256 bytes).
fn size_of((message, transaction_id): &Pending) -> usize {
    let properties: usize = message
        .user_properties
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    message.body.len() + properties + transaction_id.len() + 256
}

impl PendingChecks {
    fn new(max_bytes: usize) -> Self {
        Self {
            queues: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Queues a check unless its transaction is queued already; `false` when it was not
    /// queued (a duplicate, or no room).
    fn push(&mut self, key: (String, String), check: Pending) -> bool {
        let size = size_of(&check);
        let queue = self.queues.entry(key.clone()).or_default();
        if queue.iter().any(|(_, id)| *id == check.1) {
            return false;
        }
        while queue.len() >= MAX_PENDING_PER_TOPIC
            || (self.bytes + size > self.max_bytes && !queue.is_empty())
        {
            if let Some(old) = queue.pop_front() {
                self.bytes -= size_of(&old);
            }
        }
        if self.bytes + size > self.max_bytes {
            if queue.is_empty() {
                self.queues.remove(&key);
            }
            return false;
        }
        self.bytes += size;
        queue.push_back(check);
        true
    }

    /// Up to `n` checks of a topic, oldest first.
    fn take(&mut self, key: &(String, String), n: usize) -> Vec<Pending> {
        let Some(queue) = self.queues.get_mut(key) else {
            return Vec::new();
        };
        let n = n.min(queue.len());
        let taken: Vec<Pending> = queue.drain(..n).collect();
        if queue.is_empty() {
            self.queues.remove(key);
        }
        self.bytes -= taken.iter().map(size_of).sum::<usize>();
        taken
    }

    /// Forgets a transaction's checks.
    fn remove(&mut self, transaction_id: &str) {
        let mut freed = 0;
        self.queues.retain(|_, queue| {
            queue.retain(|check| {
                let keep = check.1 != transaction_id;
                if !keep {
                    freed += size_of(check);
                }
                keep
            });
            !queue.is_empty()
        });
        self.bytes -= freed;
    }
}

/// The checks of every namespace; one Telemetry stream per namespace.
pub(super) struct Checks {
    inner: Arc<Inner>,
}

struct Inner {
    caller: Caller,
    proxy: String,
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<PendingChecks>,
    offers: Mutex<HashMap<String, u32>>,
    arrived: Notify,
}

struct Session {
    topics: watch::Sender<BTreeSet<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        let sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for s in sessions.values() {
            s.task.abort();
        }
    }
}

impl Checks {
    pub(super) fn new(caller: Caller, proxy: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                caller,
                proxy,
                sessions: Mutex::new(HashMap::new()),
                pending: Mutex::new(PendingChecks::new(MAX_PENDING_BYTES)),
                offers: Mutex::new(HashMap::new()),
                arrived: Notify::new(),
            }),
        }
    }

    /// Makes sure the engine sends the checks of `topic` in `namespace` to this gateway:
    /// opens the namespace's Telemetry stream, or adds the topic to its settings.
    pub(super) fn watch(&self, namespace: &str, topic: &str) {
        let mut sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match sessions.get(namespace) {
            Some(s) => {
                s.topics.send_if_modified(|t| t.insert(topic.to_owned()));
            }
            None => {
                let (tx, rx) = watch::channel(BTreeSet::from([topic.to_owned()]));
                let task = tokio::spawn(session(
                    Arc::downgrade(&self.inner),
                    namespace.to_owned(),
                    rx,
                ));
                sessions.insert(namespace.to_owned(), Session { topics: tx, task });
            }
        }
    }

    /// Up to `n` pending checks of a topic, oldest first.
    pub(super) fn take(&self, namespace: &str, topic: &str, n: usize) -> Vec<Check> {
        let taken = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(&(namespace.to_owned(), topic.to_owned()), n);
        if taken.is_empty() {
            return Vec::new();
        }
        let mut offers = self.inner.offers.lock().unwrap_or_else(|e| e.into_inner());
        if offers.len() > MAX_OFFERS {
            offers.clear();
        }
        taken
            .into_iter()
            .map(|(message, transaction_id)| {
                let offered = offers.entry(transaction_id.clone()).or_insert(0);
                *offered += 1;
                Check {
                    message,
                    transaction_id,
                    offered: *offered,
                }
            })
            .collect()
    }

    /// A transaction was decided: it is not offered again.
    pub(super) fn decided(&self, transaction_id: &str) {
        self.inner
            .offers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(transaction_id);
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(transaction_id);
    }

    /// Resolves when a check arrives (for any topic). Create it before looking at the
    /// queue, so an arrival in between is not missed.
    pub(super) fn arrival(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.arrived.notified()
    }
}

impl Inner {
    fn settings(&self, namespace: &str, topics: &BTreeSet<String>) -> pb::TelemetryCommand {
        pb::TelemetryCommand {
            status: None,
            command: Some(pb::telemetry_command::Command::Settings(pb::Settings {
                client_type: Some(pb::ClientType::Producer as i32),
                access_point: Some(convert::endpoints(&self.proxy)),
                backoff_policy: None,
                request_timeout: Some(convert::duration(5_000)),
                user_agent: Some(pb::Ua {
                    language: pb::Language::Rust as i32,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    platform: std::env::consts::OS.to_owned(),
                    hostname: String::new(),
                }),
                metric: None,
                pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                    topics: topics
                        .iter()
                        .map(|t| pb::Resource {
                            resource_namespace: namespace.to_owned(),
                            name: t.clone(),
                        })
                        .collect(),
                    max_body_size: i32::try_from(mq_proto::MAX_BODY_LEN).unwrap_or(i32::MAX),
                    validate_message_type: false,
                })),
            })),
        }
    }

    async fn heartbeat(&self, namespace: &str) {
        let request = self.caller.request(
            pb::HeartbeatRequest {
                group: None,
                client_type: pb::ClientType::Producer as i32,
            },
            namespace,
            Some(Duration::from_secs(3)),
        );
        if let Err(status) = self.caller.client.clone().heartbeat(request).await {
            tracing::debug!(%status, "heartbeat to the engine failed");
        }
    }

    fn queue(&self, namespace: &str, check: pb::RecoverOrphanedTransactionCommand) {
        let Some(message) = check.message else {
            return;
        };
        let topic = message
            .topic
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let queued = self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(
            (namespace.to_owned(), topic),
            (message, check.transaction_id),
        );
        if queued {
            self.arrived.notify_waiters();
        }
    }
}

/// Keeps one namespace's Telemetry stream open (reconnecting with backoff), re-sends the
/// settings when the topics change, and queues the checks it brings.
async fn session(
    inner: std::sync::Weak<Inner>,
    namespace: String,
    mut topics: watch::Receiver<BTreeSet<String>>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (tx, rx) = mpsc::channel::<pb::TelemetryCommand>(8);
        let first = strong.settings(&namespace, &topics.borrow_and_update());
        if tx.send(first).await.is_err() {
            return;
        }
        let outbound = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|command| (command, rx))
        });
        let request = strong.caller.request(outbound, &namespace, None);
        let opened = strong.caller.client.clone().telemetry(request).await;
        drop(strong);
        match opened {
            Ok(response) => {
                backoff = Duration::from_millis(200);
                let mut inbound = response.into_inner();
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                loop {
                    tokio::select! {
                        _ = heartbeat.tick() => {
                            let Some(strong) = inner.upgrade() else { return };
                            strong.heartbeat(&namespace).await;
                        }
                        next = inbound.message() => match next {
                            Ok(Some(command)) => {
                                let Some(strong) = inner.upgrade() else { return };
                                if let Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(check)) = command.command {
                                    strong.queue(&namespace, check);
                                }
                            }
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(%status, "the engine's telemetry stream ended");
                                break;
                            }
                        },
                        changed = topics.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let Some(strong) = inner.upgrade() else { return };
                            let settings = strong.settings(&namespace, &topics.borrow_and_update());
                            if tx.send(settings).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            Err(status) => {
                tracing::debug!(%status, "cannot open the engine's telemetry stream");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(topic: &str, id: &str, body: usize) -> ((String, String), Pending) {
        let message = pb::Message {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: topic.to_owned(),
            }),
            body: vec![b'x'; body].into(),
            ..pb::Message::default()
        };
        ((String::new(), topic.to_owned()), (message, id.to_owned()))
    }

    fn ids(taken: &[Pending]) -> Vec<&str> {
        taken.iter().map(|(_, id)| id.as_str()).collect()
    }

    #[test]
    fn pending_checks_stay_within_their_byte_budget() {
        let one = size_of(&check("A", "a1", 1000).1);
        let mut p = PendingChecks::new(3 * one);
        for id in ["a1", "a2", "a3"] {
            let (key, c) = check("A", id, 1000);
            assert!(p.push(key, c));
        }
        // A duplicate transaction is not queued twice.
        let (key, c) = check("A", "a2", 1000);
        assert!(!p.push(key, c));
        assert_eq!(p.bytes, 3 * one);
        // Full: topic B has nothing to give way, so its check is dropped ...
        let (key, c) = check("B", "b1", 1000);
        assert!(!p.push(key.clone(), c));
        assert!(p.take(&key, 16).is_empty());
        // ... and a new check of A evicts A's oldest.
        let (key_a, c) = check("A", "a4", 1000);
        assert!(p.push(key_a.clone(), c));
        assert_eq!(p.bytes, 3 * one);
        // Decided and taken checks give their bytes back.
        p.remove("a3");
        assert_eq!(p.bytes, 2 * one);
        let (key, c) = check("B", "b1", 1000);
        assert!(p.push(key.clone(), c));
        assert_eq!(ids(&p.take(&key_a, 16)), ["a2", "a4"]);
        assert_eq!(ids(&p.take(&key, 16)), ["b1"]);
        assert_eq!(p.bytes, 0);
        assert!(p.queues.is_empty());
        // A check larger than the whole budget is never kept.
        let (key, c) = check("C", "c1", 4 * one);
        assert!(!p.push(key, c));
        assert_eq!(p.bytes, 0);
        assert!(p.queues.is_empty());
    }
}
