//! The gateway backend (feature `rocketmq`): the broker keeps its HTTP front (signatures,
//! limits, XML, long-poll budget, `/health`, `/stats`) and stores nothing itself; every call
//! goes to an Apache RocketMQ 5 cluster through its proxy, the gRPC v2 `MessagingService`
//! (bindings from the `rocketmq-proxy-core` crate).
//!
//! | HTTP call | engine call |
//! | --- | --- |
//! | publish | `SendMessage`: tag, keys, user properties; `__STARTDELIVERTIME` → delivery timestamp (DELAY); `__SHARDINGKEY` → message group (FIFO); `__TransCheckT` → TRANSACTION with that orphaned-transaction recovery duration |
//! | consume (normal, `trans=order`) | `ReceiveMessage` from one readable queue of the topic's route (round robin): batch, long-polling timeout = `waitseconds`, invisible duration = the broker's (ordered) invisibility, TAG filter |
//! | ack | `AckMessage`, per-handle results → `<Errors>` |
//! | commit / rollback | `EndTransaction` with the message id and transaction id the publish handle carries, under the client id that sent the half message (also sealed in the handle) |
//! | consume `trans=pop` | the engine's orphaned-transaction checks (`RecoverOrphanedTransactionCommand` on the Telemetry stream, see `telemetry.rs`), queued per (namespace, topic) |
//!
//! NORMAL and DELAY sends rotate over 8 client ids, each with its own connection (the
//! engine's proxy runs one client id's sends one at a time); FIFO and transactional sends
//! keep the process's own client id.
//!
//! The instance (`ns`) is the engine's resource namespace. Receipt handles are sealed by
//! `handle.rs`: the engine's receipt handle (or transaction id) under a MAC, so a client cannot
//! forge one and any gateway process with the same key can settle it. The gateway keeps no
//! message state: it answers 201 only after the engine stored the message and 204 only
//! after the engine took the ack; an engine that is down or slow gets a retryable 500 with
//! the protocol's `<Error>` document, never a hang.
//!
//! # Gaps
//!
//! * The engine this project tests with (rocketmq-rust 1.0.0) asks about an undecided
//!   transaction once per producer session (`docs/rocketmq-engine.md`); repeated checks are
//!   tested against a fake engine (`tests/gateway_checks.rs`).
//! * `FirstConsumeTime`: the v2 protocol does not report it; the gateway gives the time of
//!   the delivery at hand.

pub(crate) mod admin;
mod catalog;
mod convert;
mod handle;
mod telemetry;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mq_proto::wire::error::RequestError;
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, ErrorCode, GroupId, HandleFailure, InstanceId, Message,
    MessageId, ReceiptHandle, TagFilter, TopicMessage, TopicName, WaitSeconds,
};
use rocketmq_proxy_core::proto::v2 as pb;
use tonic::transport::{Channel, Endpoint};

use self::handle::{Handle, Kind};
use crate::config::{HandleKey, RocketMqConfig};
use crate::core::{
    Call, CoreConfig, Delivery, GroupStats, Outcome, PublishOutcome, Stats, TopicStats,
};
use crate::server::{Clock, Waiting};

type Client = pb::messaging_service_client::MessagingServiceClient<Channel>;

/// Client ids (each with its own connection) the gateway's NORMAL and DELAY sends rotate
/// over. The proxy of rocketmq-rust 1.0.0 runs the sends of one client id one at a time (its
/// execution lane is keyed by the producer group `PROXY_SEND-<client id>`), which capped the
/// gateway at one send per engine round trip; and the proxy's sockets lack `TCP_NODELAY`, so
/// answers to concurrent calls on one connection wait for delayed ACKs (BENCHMARKS.md,
/// "Gateway vs direct gRPC").
const SEND_CLIENTS: usize = 8;

/// The longest long poll asked of the engine: an HTTP long poll waits in slices of it, each
/// on the next queue of the topic, so a message arriving on any queue is delivered within
/// the wait (after at most one slice per queue). One engine call per slice per waiting poll.
const ENGINE_POLL_SLICE: Duration = Duration::from_secs(1);

/// A long poll the engine ended with this much or more of its wait left is asked again
/// (after this long, if the engine answered at once).
const MIN_REPOLL: Duration = Duration::from_millis(200);

/// The shortest long poll an engine may run a receive for, whatever wait it was asked
/// for: the proxy's `minLongPollingTimeoutMs`, 5 s by default (Apache RocketMQ 5 and
/// rocketmq-rust 1.0.0).
const ENGINE_MIN_LONG_POLL: Duration = Duration::from_secs(5);

/// Connections the gateway's receives (long polls) take turns on.
const RECEIVE_CONNECTIONS: usize = 4;

/// How long a topic's route is used before it is asked for again (queues and brokers
/// change: a topic updated with more queues, a broker added).
const ROUTE_TTL: Duration = Duration::from_secs(30);

/// How long the gateway's start waits for the proxy to route a declared topic it created:
/// a broker registers a new topic with the name servers at once, but rocketmq-rust 1.0.0
/// drops that registration while its name-server availability scan (every 30 s) has not
/// found one, and the topic is routed only at the broker's next full registration
/// (`registerNameServerPeriod`, 30 s by default).
const REGISTRATION_WAIT: Duration = Duration::from_secs(40);

/// Most (namespace, topic, group) rotations remembered; beyond it they start over.
const MAX_ROTATIONS: usize = 100_000;

/// How long receives ask for one message per call after the engine refused a batch
/// ([`SingleMessagePops`]); then a batch is tried again.
const SINGLE_POPS_FOR: Duration = Duration::from_secs(60);

/// Whether receives ask the engine for one message per call. rocketmq-rust 1.0.0 refuses
/// every pop that would return two or more messages (`40000 Argument is invalid`); an
/// Apache RocketMQ proxy answers the same code while it cannot reach a broker. So a refusal
/// switches to single pops for [`SINGLE_POPS_FOR`], not for good: a cluster's blip cost
/// the gateway its batched receives until it restarted. Against an engine that always
/// refuses, one batched pop per period is refused (one extra round trip a minute).
#[derive(Debug)]
struct SingleMessagePops {
    /// When the gateway started: `until_ms` counts from it.
    start: tokio::time::Instant,
    /// Milliseconds after `start` until which pops ask for one message (0: none yet).
    until_ms: AtomicU64,
    /// Whether the first refusal was logged (later ones are at debug level).
    warned: AtomicBool,
}

impl SingleMessagePops {
    fn new(now: tokio::time::Instant) -> Self {
        Self {
            start: now,
            until_ms: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    fn ms(&self, now: tokio::time::Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a receive at `now` asks for one message.
    fn active(&self, now: tokio::time::Instant) -> bool {
        self.ms(now) < self.until_ms.load(Ordering::Relaxed)
    }

    /// The engine refused a batched receive at `now`.
    fn refused(&self, now: tokio::time::Instant) {
        let until = self
            .ms(now)
            .saturating_add(SINGLE_POPS_FOR.as_millis() as u64);
        self.until_ms.store(until, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the RocketMQ engine refuses batched receives; receiving one message per call, trying a batch again every {} s",
                SINGLE_POPS_FOR.as_secs()
            );
        } else {
            tracing::debug!("the RocketMQ engine refused a batched receive again");
        }
    }
}

/// The engine's gRPC client and the metadata every call carries.
#[derive(Clone)]
pub(super) struct Caller {
    client: Client,
    client_id: String,
}

/// The user property in which the gateway keeps the message id it answered the publish
/// with. An engine that reports another id on delivery (rocketmq-rust 1.0.0 reports the
/// broker's offset id, not the id the send answered) still gives HTTP consumers the id the
/// publisher saw; the engine's own id stays in the receipt handle for the ack. Removed from
/// the properties delivered over HTTP (as every `__…__` key); a native RocketMQ consumer of
/// the same topic finds the HTTP message id here.
pub const MESSAGE_ID_PROPERTY: &str = "__MQ_HTTP_MESSAGE_ID__";

/// Largest engine answer the gateway decodes: a 4 MB body (the protocol's limit) with its
/// properties (16 KB) and the message's framing; tonic's default, exactly 4 MiB, refused a
/// delivery of a 4 MB message, which then blocked its queue for the group.
const MAX_ENGINE_MESSAGE: usize = 8 * 1024 * 1024;

/// How long `GET /ready` waits for the engine's answer.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a readiness answer is reused.
const READY_PROBE_TTL: Duration = Duration::from_secs(1);

/// A client on its own connection to the engine's proxy.
fn engine_client(endpoint: &Endpoint) -> Client {
    Client::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_ENGINE_MESSAGE)
        .max_encoding_message_size(MAX_ENGINE_MESSAGE)
}

/// A request to the engine's v2 `MessagingService` as the gateway sends it: `message` with
/// the v2 metadata headers (`x-mq-client-id` = `client_id`, language `RUST`, protocol `v2`,
/// client version, `x-mq-namespace` = `namespace`, empty for the default one) and, for a
/// unary call, the deadline `timeout`. A header value that is not valid ASCII metadata is
/// left out (client ids and namespaces are the gateway's own or protocol-checked names).
///
/// ```
/// # use std::time::Duration;
/// let req = mq_broker::gateway::engine_request("client-1", (), "MQ_INST_1", Some(Duration::from_secs(3)));
/// assert_eq!(req.metadata().get("x-mq-client-id").unwrap(), "client-1");
/// assert_eq!(req.metadata().get("x-mq-namespace").unwrap(), "MQ_INST_1");
/// ```
pub fn engine_request<T>(
    client_id: &str,
    message: T,
    namespace: &str,
    timeout: Option<Duration>,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(timeout) = timeout {
        req.set_timeout(timeout);
    }
    let meta = req.metadata_mut();
    let pairs = [
        ("x-mq-client-id", client_id),
        ("x-mq-language", "RUST"),
        ("x-mq-protocol", "v2"),
        ("x-mq-client-version", env!("CARGO_PKG_VERSION")),
        ("x-mq-namespace", namespace),
    ];
    for (name, value) in pairs {
        if let Ok(v) = value.parse() {
            meta.insert(name, v);
        }
    }
    req
}

impl Caller {
    /// [`engine_request`] under this caller's client id.
    fn request<T>(
        &self,
        message: T,
        namespace: &str,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        engine_request(&self.client_id, message, namespace, timeout)
    }
}

/// A topic's cached route: when it was asked for, and its queues.
type Route = (std::time::Instant, Vec<pb::MessageQueue>);

/// A started gateway.
pub(crate) struct Gateway {
    client: Client,
    caller: Caller,
    /// `caller` and `SEND_CLIENTS - 1` more, for NORMAL and DELAY sends.
    send_callers: Vec<Caller>,
    /// Connections for receives (long polls), used in turn, so that thousands of waiting
    /// polls do not fill the stream limit of the connection everything else uses.
    receivers: Vec<Client>,
    next_receiver: AtomicUsize,
    next_send_client: AtomicUsize,
    checks: telemetry::Checks,
    config: RocketMqConfig,
    key: HandleKey,
    /// Invisibility of normal and ordered deliveries, ms.
    invisibility_ms: u64,
    order_invisibility_ms: u64,
    queues: u16,
    half_check_interval_ms: u64,
    /// No topic was declared: unknown topics are created on first use (with admin).
    auto_create: bool,
    clock: Clock,
    /// Message ids: a random per-process prefix and a counter.
    id_prefix: u64,
    next_id: AtomicU64,
    /// Readable queues per (namespace, topic), and when they were asked for.
    routes: Mutex<HashMap<(String, String), Route>>,
    /// Receives so far per (namespace, topic, group): the broker a receive polls next.
    next_queue: Mutex<HashMap<(String, String, String), usize>>,
    /// The engine refused a batched receive lately: ask for one message per call.
    single_message_pops: SingleMessagePops,
    /// Topics this process has routed or published to.
    known_topics: Mutex<HashSet<(String, String)>>,
    /// Consumer groups created as orderly on the engine.
    orderly_groups: Mutex<HashSet<(String, String)>>,
    counters: Mutex<BTreeMap<(Option<String>, String), TopicCounters>>,
    /// The last readiness probe: when, and whether the engine answered.
    ready_probe: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

#[derive(Default)]
struct TopicCounters {
    declared: bool,
    published: u64,
    groups: BTreeMap<String, GroupCounters>,
}

#[derive(Default)]
struct GroupCounters {
    delivered: u64,
    acked: u64,
    filtered: u64,
}

pub(crate) use crate::server::GatewayStarted as Started;

fn engine_unavailable(what: &str, e: impl std::fmt::Display) -> RequestError {
    RequestError::new(
        ErrorCode::InternalError,
        format!("the RocketMQ engine did not answer the {what}: {e}"),
    )
}

impl Gateway {
    /// Connects and, where admin addresses are configured, creates the declared topics the
    /// cluster does not have yet (existing ones are left unchanged). Without declared
    /// topics the connection is lazy: a cluster that is down at start is reached when it
    /// comes up.
    ///
    /// # Errors
    ///
    /// An invalid proxy address, no randomness for a generated key, a cluster that cannot be
    /// asked about a declared topic, or a declared topic the engine refused to create.
    pub(crate) async fn start(
        config: RocketMqConfig,
        core: &CoreConfig,
        topics: &[(Option<InstanceId>, TopicName)],
        clock: Clock,
    ) -> Result<(Self, Started), String> {
        let mut seed = [0u8; 40];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness for the gateway: {e}"))?;
        let (key, generated_key) = match &config.handle_key {
            Some(k) => (k.clone(), false),
            None => (HandleKey::from_bytes(seed[..32].to_vec())?, true),
        };
        let id_prefix = u64::from_be_bytes(seed[32..40].try_into().unwrap_or_default());
        let endpoint = Endpoint::from_shared(format!("http://{}", config.proxy))
            .map_err(|e| format!("proxy address {:?}: {e}", config.proxy))?
            .connect_timeout(config.call_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let client = engine_client(&endpoint);
        let caller = Caller {
            client: client.clone(),
            client_id: format!("mq-gateway@{}@{id_prefix:016x}", std::process::id()),
        };
        let send_callers = (0..SEND_CLIENTS)
            .map(|i| match i {
                0 => caller.clone(),
                i => Caller {
                    client: engine_client(&endpoint),
                    client_id: format!("{}-{i}", caller.client_id),
                },
            })
            .collect();
        let receivers = (0..RECEIVE_CONNECTIONS)
            .map(|_| engine_client(&endpoint))
            .collect();
        let gateway = Self {
            receivers,
            next_receiver: AtomicUsize::new(0),
            send_callers,
            next_send_client: AtomicUsize::new(0),
            checks: telemetry::Checks::new(caller.clone(), config.proxy.clone()),
            caller,
            client,
            key,
            invisibility_ms: core.invisibility_ms,
            order_invisibility_ms: core.order_invisibility_ms,
            queues: config.queues,
            half_check_interval_ms: core.half_check_interval_ms,
            auto_create: topics.is_empty(),
            clock,
            id_prefix,
            next_id: AtomicU64::new(0),
            routes: Mutex::new(HashMap::new()),
            ready_probe: tokio::sync::Mutex::new(None),
            next_queue: Mutex::new(HashMap::new()),
            single_message_pops: SingleMessagePops::new(tokio::time::Instant::now()),
            known_topics: Mutex::new(HashSet::new()),
            orderly_groups: Mutex::new(HashSet::new()),
            counters: Mutex::new(BTreeMap::new()),
            config,
        };
        let mut created_topics = 0;
        for (instance, topic) in topics {
            gateway.count(instance.as_ref(), topic, |c| c.declared = true);
            if gateway.config.admin.is_empty() {
                continue;
            }
            // A topic the cluster has is left as it is: creating it again (code 17 creates
            // or updates) would change its queue count and type, and messages in queues
            // beyond the new count could no longer be read.
            let target = Target {
                instance: instance.as_ref(),
                topic,
            };
            match gateway.route(target).await {
                Ok(_) => continue,
                Err(e) if e.code == ErrorCode::TopicNotExist => {}
                Err(e) => {
                    return Err(format!(
                        "cannot reach the RocketMQ cluster to check the declared topic {topic}: {}",
                        e.message
                    ));
                }
            }
            let spec = admin::TopicSpec {
                name: convert::engine_topic_name(instance.as_ref(), topic),
                queues: gateway.queues,
                message_type: gateway.config.topic_type,
            };
            for addr in &gateway.config.admin {
                admin::create_topic(addr, &spec, gateway.config.call_timeout)
                    .await
                    .map_err(|e| format!("creating topic {} on {addr}: {e}", spec.name))?;
            }
            // Serving before the proxy routes a declared topic would answer TopicNotExist
            // for a topic this process just created.
            if let Err(e) = gateway.await_route(target, REGISTRATION_WAIT).await {
                tracing::warn!(
                    topic = %spec.name,
                    error = %e.message,
                    "created topic not routed yet; requests to it answer TopicNotExist until \
                     the broker registers it with the name servers"
                );
            }
            created_topics += 1;
        }
        Ok((
            gateway,
            Started {
                generated_key,
                created_topics,
            },
        ))
    }

    /// Serves one call.
    pub(crate) async fn serve(
        &self,
        call: Call,
        waiting: Waiting<'_>,
    ) -> Result<Outcome, RequestError> {
        match call {
            Call::Publish {
                instance,
                topic,
                message,
                producer: _,
            } => self
                .publish(instance.as_ref(), &topic, message)
                .await
                .map(Outcome::Published),
            Call::Consume {
                instance,
                topic,
                group,
                kind,
                filter,
                batch,
                wait,
            } => {
                let target = Target {
                    instance: instance.as_ref(),
                    topic: &topic,
                };
                self.consume(target, &group, kind, &filter, batch, wait, waiting)
                    .await
                    .map(|found| {
                        Outcome::Delivered(found.into_iter().map(Delivery::from).collect())
                    })
            }
            Call::Ack {
                instance,
                topic,
                group,
                kind,
                handles,
            } => {
                let target = Target {
                    instance: instance.as_ref(),
                    topic: &topic,
                };
                self.settle(target, group.as_ref(), kind, &handles)
                    .await
                    .map(Outcome::Settled)
            }
            Call::DeclareTopic { .. } | Call::Maintain => Ok(Outcome::Done),
            // Topics and groups are created and deleted on the engine (`catalog.rs`).
            Call::CreateTopic {
                instance,
                topic,
                message_type,
            } => {
                self.admin_create_topic(instance.as_ref(), &topic, message_type)
                    .await
            }
            Call::DeleteTopic { instance, topic } => {
                self.admin_delete_topic(instance.as_ref(), &topic).await
            }
            Call::CreateGroup {
                instance,
                group,
                topics,
                settings,
            } => {
                self.admin_create_group(instance.as_ref(), &group, &topics, settings)
                    .await
            }
            Call::DeleteGroup { instance, group } => {
                self.admin_delete_group(instance.as_ref(), &group).await
            }
            // The cluster keeps the messages: dropping or replaying them is its tools' job.
            Call::Purge { .. } => Err(crate::server::not_supported(
                "purge a topic on the RocketMQ cluster by deleting and creating it again, or with its console",
            )),
            Call::Reset => Err(crate::server::not_supported(
                "the gateway keeps no state to reset; the RocketMQ cluster's messages are managed with its console or mqadmin",
            )),
            Call::DeadLetters { .. } => Err(crate::server::not_supported(
                "dead letters are the RocketMQ cluster's %DLQ% topics: resend or delete them with its console or mqadmin",
            )),
            Call::ResetOffset { .. } => Err(crate::server::not_supported(
                "reset a consumer offset with the RocketMQ cluster's console or mqadmin resetOffsetByTime",
            )),
            // The cluster asks the producer's transaction checker; the gateway has no
            // decision of its own to give.
            Call::DecideHalf { .. } => Err(crate::server::not_supported(
                "half messages are committed or rolled back by their producer (its transaction checker) through the gateway, not by message id; use the RocketMQ cluster's console",
            )),
        }
    }

    /// The gateway's own counters (the cluster keeps the messages; `stored`, `ready` and
    /// the like are the cluster's to report).
    pub(crate) fn stats(&self) -> Stats {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats = Stats {
            at_ms: self.clock.now_ms(),
            ..Stats::default()
        };
        for ((instance, topic), c) in counters.iter() {
            let groups: Vec<GroupStats> = c
                .groups
                .iter()
                .map(|(group, g)| GroupStats {
                    group: group.clone(),
                    delivered: g.delivered,
                    acked: g.acked,
                    filtered: g.filtered,
                    ..GroupStats::default()
                })
                .collect();
            stats.published += c.published;
            stats.acked += groups.iter().map(|g| g.acked).sum::<u64>();
            stats.topics.push(TopicStats {
                instance: instance.clone(),
                topic: topic.clone(),
                declared: c.declared,
                published: c.published,
                groups,
                ..TopicStats::default()
            });
        }
        stats
    }

    /// Whether the engine's proxy answers: a producer heartbeat within [`READY_PROBE_TIMEOUT`].
    /// One probe at a time, its answer kept for [`READY_PROBE_TTL`] (an unauthenticated
    /// `GET /ready` flood costs the engine at most one call per second).
    pub(crate) async fn ready(&self) -> bool {
        let mut last = self.ready_probe.lock().await;
        if let Some((at, ready)) = *last
            && at.elapsed() < READY_PROBE_TTL
        {
            return ready;
        }
        let request = self.request(
            pb::HeartbeatRequest {
                group: None,
                client_type: pb::ClientType::Producer as i32,
            },
            "",
            READY_PROBE_TIMEOUT,
        );
        let ready = match self.client.clone().heartbeat(request).await {
            Ok(_) => true,
            Err(status) => {
                tracing::warn!(%status, "readiness: the RocketMQ engine does not answer");
                false
            }
        };
        *last = Some((std::time::Instant::now(), ready));
        ready
    }

    /// Nothing to flush: every answer was given after the engine took the call.
    pub(crate) async fn close(&self) {}

    fn count(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        f: impl FnOnce(&mut TopicCounters),
    ) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let key = (
            instance.map(|i| i.as_str().to_owned()),
            topic.as_str().to_owned(),
        );
        f(counters.entry(key).or_default());
    }

    fn request<T>(&self, message: T, namespace: &str, timeout: Duration) -> tonic::Request<T> {
        self.caller.request(message, namespace, Some(timeout))
    }

    fn next_message_id(&self) -> MessageId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        MessageId::from_halves(self.id_prefix, n)
    }

    async fn publish(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message: TopicMessage,
    ) -> Result<PublishOutcome, RequestError> {
        message
            .check_limits()
            .map_err(|e| RequestError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        let namespace = instance.map_or("", InstanceId::as_str);
        let body_md5 = message.body_md5().to_owned();
        let transactional = message.trans_check_immunity().is_some();
        // The id HTTP consumers will see (see `convert::MESSAGE_ID_PROPERTY`).
        let message_id = self.next_message_id();
        let id = message_id.as_str().to_owned();
        let published_at = self.clock.now_ms();
        let mut wire = convert::to_engine(&message, instance, topic, id, published_at);
        let target = Target { instance, topic };
        if let Some(group) = message.sharding_key() {
            let queue = self.fifo_queue(target, group).await?;
            if let Some(system) = wire.system_properties.as_mut() {
                system.queue_id = Some(queue);
            }
        }
        let sender = self.sender(&wire);
        let entry = match self
            .send(target, sender, wire.clone())
            .await
            .map_err(|e| self.lost(target, e))
        {
            Err(e) if e.code == ErrorCode::TopicNotExist && self.creates_topics() => {
                self.create_topic(target).await?;
                self.send(target, sender, wire).await?
            }
            other => other?,
        };
        self.mark_known(target);
        if transactional {
            // The engine asks this gateway about the transaction if nobody decides it.
            self.checks.watch(namespace, topic.as_str());
        }
        let receipt_handle = if let Some(immunity) = message.trans_check_immunity() {
            let handle = Handle {
                kind: Kind::Transaction,
                instance: namespace.to_owned(),
                topic: topic.as_str().to_owned(),
                owner: sender.client_id.clone(),
                message_id: entry.message_id,
                engine_token: entry.transaction_id,
                // Valid during the check immunity (PROTOCOL §6.6); then through a check.
                valid_until_ms: published_at.saturating_add(u64::from(immunity.get()) * 1000),
            };
            Some(self.seal(&handle)?)
        } else {
            None
        };
        self.count(instance, topic, |c| c.published += 1);
        Ok(PublishOutcome {
            message_id,
            body_md5,
            receipt_handle,
            visible_now: !transactional,
        })
    }

    /// Who sends `wire`: NORMAL and DELAY sends rotate over `send_callers`; FIFO and
    /// transactional ones go through `caller`, so the proxy keeps one message group's sends
    /// in the order they arrive, and the checks of a transaction come on this process's
    /// Telemetry stream (opened under the caller's client id).
    fn sender(&self, wire: &pb::Message) -> &Caller {
        if convert::any_sender(wire) {
            let i = self.next_send_client.fetch_add(1, Ordering::Relaxed);
            &self.send_callers[i % self.send_callers.len()]
        } else {
            &self.caller
        }
    }

    /// Sends one message through `sender`; the engine's send result.
    async fn send(
        &self,
        target: Target<'_>,
        sender: &Caller,
        wire: pb::Message,
    ) -> Result<pb::SendResultEntry, RequestError> {
        let req = sender.request(
            pb::SendMessageRequest {
                messages: vec![wire],
            },
            target.namespace(),
            Some(self.config.call_timeout),
        );
        let resp = sender
            .client
            .clone()
            .send_message(req)
            .await
            .map_err(|s| convert::rpc_error("publish", &s))?
            .into_inner();
        convert::check_status(resp.status.as_ref(), "publish")?;
        let entry = resp.entries.into_iter().next().ok_or_else(|| {
            RequestError::new(
                ErrorCode::InternalError,
                "the engine answered no send result",
            )
        })?;
        convert::check_status(entry.status.as_ref(), "publish")?;
        Ok(entry)
    }

    /// The queue the messages of `group` (a sharding key) are sent to, the same on every
    /// gateway process ([`convert::fifo_queue`]): rocketmq-rust 1.0.0's proxy picks a queue
    /// per send and ignores the message group, which spread one group over several queues
    /// and broke its order.
    async fn fifo_queue(&self, target: Target<'_>, group: &str) -> Result<i32, RequestError> {
        let queues = match self.route(target).await.map_err(|e| self.lost(target, e)) {
            Err(e) if e.code == ErrorCode::TopicNotExist && self.creates_topics() => {
                self.create_topic(target).await?;
                self.route(target).await?
            }
            other => other?,
        };
        let ids: Vec<i32> = queues
            .iter()
            .filter(|q| convert::is_writable(q))
            .map(|q| q.id)
            .collect();
        convert::fifo_queue(group, &ids).ok_or_else(|| {
            RequestError::new(
                ErrorCode::InternalError,
                format!("the topic {} has no writable queue", target.topic),
            )
        })
    }

    /// Whether unknown topics are created on first use: as on the built-in broker, when no
    /// topic is declared, and only where the engine's admin API is reachable.
    fn creates_topics(&self) -> bool {
        self.auto_create && !self.config.admin.is_empty()
    }

    /// Creates a topic on every admin address, then waits (up to the call timeout) until the
    /// proxy routes it.
    async fn create_topic(&self, target: Target<'_>) -> Result<(), RequestError> {
        let spec = admin::TopicSpec {
            name: convert::engine_topic_name(target.instance, target.topic),
            queues: self.queues,
            message_type: self.config.topic_type,
        };
        for addr in &self.config.admin {
            admin::create_topic(addr, &spec, self.config.call_timeout)
                .await
                .map_err(|e| engine_unavailable("topic creation", e))?;
        }
        tracing::info!(topic = %spec.name, "created topic on the RocketMQ cluster");
        self.await_route(target, self.config.call_timeout).await
    }

    /// Waits (up to `within`) until the proxy routes a topic just created.
    async fn await_route(&self, target: Target<'_>, within: Duration) -> Result<(), RequestError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.route(target).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code == ErrorCode::TopicNotExist => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn seal(&self, handle: &Handle) -> Result<ReceiptHandle, RequestError> {
        handle
            .seal(&self.key)
            .and_then(|text| ReceiptHandle::new(text).ok())
            .ok_or_else(|| {
                RequestError::new(
                    ErrorCode::InternalError,
                    "the engine's receipt handle does not fit in a protocol receipt handle",
                )
            })
    }

    /// The queue to poll next for a topic: the readable queues of its route, round robin.
    /// The queue a receive of `group` polls next: the topic's readable queues in turn, per
    /// topic and group (a process-wide turn made a consumer of two topics poll only some
    /// queues of each). An HTTP long poll waits in slices ([`ENGINE_POLL_SLICE`]), each on
    /// the next queue, so a message that arrives on any queue is delivered within the wait.
    /// (rocketmq-rust 1.0.0 can pop all queues of a broker at once, queue id -1, but that
    /// pop found nothing in topics whose messages a pop of their queue found, in the
    /// gateway benchmark.) Ordered consumption keeps its order: a message group is sent to
    /// one queue ([`Gateway::fifo_queue`]) and the broker keeps order and blocking per
    /// queue.
    /// [`queue`](Self::queue) for the next slice of a long poll that answers by
    /// `answer_by`: `None` when the lookup (a route query, a topic creation) is not done by
    /// then — the poll then answers with what it has, at its time, rather than after the
    /// engine's call timeout.
    async fn queue_by(
        &self,
        target: Target<'_>,
        group: &str,
        answer_by: tokio::time::Instant,
    ) -> Result<Option<pb::MessageQueue>, RequestError> {
        match tokio::time::timeout_at(answer_by, self.queue(target, group)).await {
            Ok(queue) => queue.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn queue(
        &self,
        target: Target<'_>,
        group: &str,
    ) -> Result<pb::MessageQueue, RequestError> {
        let queues = match self.route(target).await {
            Err(e) if e.code == ErrorCode::TopicNotExist && self.creates_topics() => {
                self.create_topic(target).await?;
                self.route(target).await?
            }
            other => other?,
        };
        let readable: Vec<&pb::MessageQueue> =
            queues.iter().filter(|q| convert::is_readable(q)).collect();
        let turn = {
            let mut turns = self.next_queue.lock().unwrap_or_else(|e| e.into_inner());
            let key = (
                target.namespace().to_owned(),
                target.topic.as_str().to_owned(),
                group.to_owned(),
            );
            if turns.len() > MAX_ROTATIONS {
                turns.clear();
            }
            let turn = turns.entry(key).or_insert(0);
            *turn = turn.wrapping_add(1);
            *turn
        };
        Ok(readable[turn % readable.len()].clone())
    }

    /// The queues of a topic's route that can be read or written (master brokers), cached
    /// for [`ROUTE_TTL`]; `TopicNotExist` when none is readable.
    async fn route(&self, target: Target<'_>) -> Result<Vec<pb::MessageQueue>, RequestError> {
        let key = target.key();
        let cached = {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes
                .get(&key)
                .filter(|(at, _)| at.elapsed() < ROUTE_TTL)
                .map(|(_, queues)| queues.clone())
        };
        if let Some(queues) = cached {
            return Ok(queues);
        }
        let req = self.request(
            pb::QueryRouteRequest {
                topic: Some(target.resource()),
                endpoints: Some(convert::endpoints(&self.config.proxy)),
            },
            target.namespace(),
            self.config.call_timeout,
        );
        let resp = self
            .client
            .clone()
            .query_route(req)
            .await
            .map_err(|s| convert::rpc_error("route query", &s))?
            .into_inner();
        convert::check_status(resp.status.as_ref(), "route query")
            .map_err(|e| self.lost(target, e))?;
        let queues: Vec<pb::MessageQueue> = resp
            .message_queues
            .into_iter()
            .filter(|q| convert::is_readable(q) || convert::is_writable(q))
            .collect();
        if !queues.iter().any(convert::is_readable) {
            return Err(self.lost(
                target,
                RequestError::new(
                    ErrorCode::TopicNotExist,
                    format!("The topic you provided does not exist: {}", target.topic),
                ),
            ));
        }
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (std::time::Instant::now(), queues.clone()));
        self.mark_known(target);
        Ok(queues)
    }

    fn mark_known(&self, target: Target<'_>) {
        let key = target.key();
        self.known_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }

    /// A topic this process has routed or published to does not vanish: an engine that
    /// answers "topic not found" for it has lost its route (its broker is down or
    /// re-registering), which is a retryable 500, not the client's `TopicNotExist`.
    fn lost(&self, target: Target<'_>, e: RequestError) -> RequestError {
        if e.code != ErrorCode::TopicNotExist {
            return e;
        }
        let key = target.key();
        if !self
            .known_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return e;
        }
        RequestError::new(
            ErrorCode::InternalError,
            format!(
                "the RocketMQ cluster has no route to topic {} right now (a broker may be down); retry",
                target.topic
            ),
        )
    }

    fn forget_route(&self, target: Target<'_>) {
        let key = target.key();
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// Creates `group` as an orderly consumer group on the engine (once per process), so
    /// that the engine blocks each message group until its delivery is acked.
    async fn ensure_orderly_group(
        &self,
        target: Target<'_>,
        group: &GroupId,
    ) -> Result<(), RequestError> {
        if self.config.admin.is_empty() {
            return Ok(());
        }
        let name = convert::engine_group_name(target.instance, group);
        let key = (target.namespace().to_owned(), name.clone());
        if self
            .orderly_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        for addr in &self.config.admin {
            admin::create_group(addr, &name, true, self.config.call_timeout)
                .await
                .map_err(|e| engine_unavailable("orderly group creation", e))?;
        }
        self.orderly_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn consume(
        &self,
        target: Target<'_>,
        group: &GroupId,
        kind: ConsumeKind,
        filter: &TagFilter,
        batch: BatchSize,
        wait: WaitSeconds,
        mut waiting: Waiting<'_>,
    ) -> Result<Vec<Message>, RequestError> {
        let invisibility_ms = match kind {
            ConsumeKind::Half => {
                self.queue(target, group.as_str()).await?;
                return self.checks_for(target, batch, waiting).await;
            }
            ConsumeKind::Normal => self.invisibility_ms,
            ConsumeKind::Orderly => {
                self.ensure_orderly_group(target, group).await?;
                self.order_invisibility_ms
            }
        };
        let queue = self.queue(target, group.as_str()).await?;
        // A poll that may wait holds a slot; without one it asks for what is there now.
        let slot = if wait.get() > 0 { waiting.slot() } else { None };
        let wait = if slot.is_some() {
            Duration::from_secs(u64::from(wait.get()))
        } else {
            Duration::ZERO
        };
        let mut request = pb::ReceiveMessageRequest {
            group: Some(pb::Resource {
                resource_namespace: target.namespace().to_owned(),
                name: group.as_str().to_owned(),
            }),
            message_queue: Some(queue),
            filter_expression: Some(pb::FilterExpression {
                r#type: pb::FilterType::Tag as i32,
                expression: filter.to_string(),
            }),
            batch_size: if self.single_message_pops.active(tokio::time::Instant::now()) {
                1
            } else {
                i32::from(batch.get())
            },
            invisible_duration: Some(convert::duration(invisibility_ms)),
            auto_renew: false,
            long_polling_timeout: Some(convert::duration(
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            )),
            attempt_id: None,
        };
        let deadline = tokio::time::Instant::now() + wait;
        // The whole poll answers by then, however late the engine runs its receives: each
        // slice may take the engine's minimum long poll plus the margin
        // (`Gateway::RECEIVE_MARGIN`), but the last one of a long wait must not push the
        // answer past the SDKs' socket timeout.
        let answer_by =
            deadline.max(tokio::time::Instant::now() + ENGINE_MIN_LONG_POLL) + Self::RECEIVE_MARGIN;
        let mut this_wait = wait.min(ENGINE_POLL_SLICE);
        request.long_polling_timeout = Some(convert::duration(
            u64::try_from(this_wait.as_millis()).unwrap_or(u64::MAX),
        ));
        loop {
            let asked = tokio::time::Instant::now();
            let (messages, status) = tokio::select! {
                r = self.receive_batch(target, &mut request, this_wait, answer_by) => r?,
                () = waiting.until_stopped() => return Ok(Vec::new()),
            };
            if messages.is_empty() {
                match convert::receive_status(status.as_ref()) {
                    convert::Received::Nothing => {}
                    convert::Received::TopicGone(e) => {
                        self.forget_route(target);
                        return Err(self.lost(target, e));
                    }
                    convert::Received::Failed(e) => return Err(e),
                }
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                if remaining < MIN_REPOLL {
                    return Ok(Vec::new());
                }
                // Poll again for the rest of the wait, in slices: rocketmq-rust 1.0.0 ends a
                // poll of all queues early without a message, or misses an arrival and
                // holds it to its end. Pause briefly if the answer came back at once, so
                // that such an engine is not polled in a tight loop.
                if asked.elapsed() < this_wait / 2 {
                    tokio::select! {
                        () = tokio::time::sleep(MIN_REPOLL.min(remaining)) => {}
                        () = waiting.until_stopped() => return Ok(Vec::new()),
                    }
                }
                this_wait = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(ENGINE_POLL_SLICE);
                let Some(queue) = self.queue_by(target, group.as_str(), answer_by).await? else {
                    return Ok(Vec::new());
                };
                request.message_queue = Some(queue);
                request.long_polling_timeout = Some(convert::duration(
                    u64::try_from(this_wait.as_millis()).unwrap_or(u64::MAX),
                ));
                continue;
            }
            let now = self.clock.now_ms();
            let mut out = Vec::with_capacity(messages.len());
            let mut skipped = Vec::new();
            for m in messages {
                // A message the protocol cannot carry (a native producer's, say) is left to
                // the engine, which delivers it again and dead-letters it after its maximum
                // deliveries; the others of the batch are delivered.
                let delivered = match convert::from_engine(m, now, invisibility_ms) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(topic = %target.topic, error = %e.message, "an undeliverable message was skipped");
                        continue;
                    }
                };
                if !filter.matches(delivered.message.tag.as_ref()) {
                    skipped.push(delivered);
                    continue;
                }
                let Some(engine_token) = delivered.engine_receipt_handle else {
                    tracing::warn!(topic = %target.topic, "the engine delivered a message without a receipt handle; skipped");
                    continue;
                };
                let handle = Handle {
                    kind: Kind::Delivery,
                    instance: target.namespace().to_owned(),
                    topic: target.topic.as_str().to_owned(),
                    owner: group.as_str().to_owned(),
                    message_id: delivered.engine_message_id,
                    engine_token,
                    // Valid until its `NextConsumeTime`, as the protocol says, also on an
                    // engine that does not keep the invisibility it was asked for.
                    valid_until_ms: delivered.message.next_consume_time,
                };
                let mut message = delivered.message;
                let Ok(sealed) = self.seal(&handle) else {
                    tracing::warn!(topic = %target.topic, "an engine receipt handle too long to seal; skipped");
                    continue;
                };
                message.receipt_handle = sealed;
                out.push(message);
            }
            let filtered = skipped.len() as u64;
            // Bounded by the poll's answer time too: a skip left unfinished is the engine's
            // to deliver again, and skipped again then.
            if !skipped.is_empty()
                && tokio::time::timeout_at(answer_by, self.skip(target, group, skipped))
                    .await
                    .is_err()
            {
                tracing::warn!(topic = %target.topic, "skipping filtered messages outlasted the poll's answer time; the engine delivers them again");
            }
            let delivered = out.len() as u64;
            self.count(target.instance, target.topic, |c| {
                let g = c.groups.entry(group.as_str().to_owned()).or_default();
                g.delivered += delivered;
                g.filtered += filtered;
            });
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !out.is_empty() || remaining.is_zero() {
                return Ok(out);
            }
            // Everything received was filtered out: wait on for a matching message.
            this_wait = remaining.min(ENGINE_POLL_SLICE);
            let Some(queue) = self.queue_by(target, group.as_str(), answer_by).await? else {
                return Ok(out);
            };
            request.message_queue = Some(queue);
            request.long_polling_timeout = Some(convert::duration(
                u64::try_from(this_wait.as_millis()).unwrap_or(u64::MAX),
            ));
        }
    }

    /// Receives once; when the engine refuses a batch, asks again for one message (and
    /// for one at a time for [`SINGLE_POPS_FOR`]).
    async fn receive_batch(
        &self,
        target: Target<'_>,
        request: &mut pb::ReceiveMessageRequest,
        wait: Duration,
        answer_by: tokio::time::Instant,
    ) -> Result<(Vec<pb::Message>, Option<pb::Status>), RequestError> {
        loop {
            let (messages, status) = self
                .receive(target, request.clone(), wait, answer_by)
                .await?;
            if messages.is_empty()
                && request.batch_size > 1
                && convert::refuses_batches(status.as_ref())
            {
                // rocketmq-rust 1.0.0 refuses every pop that would return two or more
                // messages (`40000 Argument is invalid`): one at a time for a while.
                self.single_message_pops
                    .refused(tokio::time::Instant::now());
                request.batch_size = 1;
                continue;
            }
            return Ok((messages, status));
        }
    }

    /// Skips messages a tag filter does not match: they count as consumed for `group`
    /// (PROTOCOL §6.5), so they are acked on the engine (an engine that filters by tag
    /// itself never delivers them; rocketmq-rust 1.0.0 ignores the filter). A failed skip
    /// is logged: the engine delivers the message again and the gateway skips it again.
    async fn skip(&self, target: Target<'_>, group: &GroupId, skipped: Vec<convert::Delivered>) {
        let req = self.request(
            pb::AckMessageRequest {
                group: Some(pb::Resource {
                    resource_namespace: target.namespace().to_owned(),
                    name: group.as_str().to_owned(),
                }),
                topic: Some(target.resource()),
                entries: skipped
                    .into_iter()
                    .filter_map(|d| {
                        Some(pb::AckMessageEntry {
                            message_id: d.engine_message_id,
                            receipt_handle: d.engine_receipt_handle?,
                            lite_topic: None,
                        })
                    })
                    .collect(),
            },
            target.namespace(),
            self.config.call_timeout,
        );
        match self.client.clone().ack_message(req).await {
            Ok(resp) => {
                if let Err(e) = convert::check_status(resp.get_ref().status.as_ref(), "skip") {
                    tracing::warn!(error = %e.message, "skipping filtered messages failed");
                }
            }
            Err(s) => tracing::warn!(error = %s, "skipping filtered messages failed"),
        }
    }

    /// A half-message poll: the transactions the engine asked about (over the Telemetry
    /// stream, see `telemetry.rs`), waiting for one within the poll's wait. Each comes with a
    /// transaction handle and `ConsumedTimes` = how often this gateway offered it;
    /// `NextConsumeTime` = now + the half-message check interval.
    async fn checks_for(
        &self,
        target: Target<'_>,
        batch: BatchSize,
        mut waiting: Waiting<'_>,
    ) -> Result<Vec<Message>, RequestError> {
        self.checks.watch(target.namespace(), target.topic.as_str());
        let mut slot = None;
        loop {
            let arrival = self.checks.arrival();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let checks = self.checks.take(
                target.namespace(),
                target.topic.as_str(),
                usize::from(batch.get()),
            );
            if !checks.is_empty() {
                let now = self.clock.now_ms();
                let mut out = Vec::with_capacity(checks.len());
                for check in checks {
                    let delivered =
                        convert::from_engine(check.message, now, self.half_check_interval_ms)?;
                    let handle = Handle {
                        kind: Kind::Transaction,
                        instance: target.namespace().to_owned(),
                        topic: target.topic.as_str().to_owned(),
                        // The check came on this process's Telemetry stream.
                        owner: self.caller.client_id.clone(),
                        message_id: delivered.engine_message_id,
                        engine_token: check.transaction_id,
                        valid_until_ms: 0,
                    };
                    let mut message = delivered.message;
                    message.consumed_times = check.offered;
                    message.receipt_handle = self.seal(&handle)?;
                    out.push(message);
                }
                return Ok(out);
            }
            if waiting.is_over() {
                return Ok(Vec::new());
            }
            if slot.is_none() {
                match waiting.slot() {
                    Some(s) => slot = Some(s),
                    None => return Ok(Vec::new()),
                }
            }
            tokio::select! {
                () = arrival => {}
                () = waiting.until_over() => {}
            }
        }
    }

    /// One `ReceiveMessage` call: the messages and the status that ended the stream.
    /// A receive that outlives its wait by more than this ends as "nothing" (the engine ran
    /// it late: the proxy runs one receive at a time per group and queue). With the
    /// engine's 5 s minimum long poll it keeps a 30 s poll's answer under 33 s, the socket
    /// timeout of the official Java and Node SDKs (PROTOCOL §6.2).
    const RECEIVE_MARGIN: Duration = Duration::from_secs(2);

    /// One receive of `wait`, ended as "nothing" when it runs past `wait` (at least the
    /// engine's minimum long poll) plus [`Self::RECEIVE_MARGIN`], and at `answer_by`, when
    /// the HTTP poll it serves must be answered: a 30 s poll's slices, each of which an
    /// engine that does not answer held 7 s, answered after 35 s.
    async fn receive(
        &self,
        target: Target<'_>,
        request: pb::ReceiveMessageRequest,
        wait: Duration,
        answer_by: tokio::time::Instant,
    ) -> Result<(Vec<pb::Message>, Option<pb::Status>), RequestError> {
        // The engine may clamp short polls up to its minimum long poll (5 s by default).
        let deadline = (wait.max(ENGINE_MIN_LONG_POLL) + Self::RECEIVE_MARGIN)
            .min(answer_by.saturating_duration_since(tokio::time::Instant::now()));
        let req = self.request(request, target.namespace(), deadline);
        let receiver = {
            let i = self.next_receiver.fetch_add(1, Ordering::Relaxed);
            self.receivers[i % self.receivers.len()].clone()
        };
        let started = tokio::time::Instant::now();
        let late = |s: &tonic::Status| {
            s.code() == tonic::Code::DeadlineExceeded
                || (s.code() == tonic::Code::Cancelled && started.elapsed() >= deadline)
        };
        let mut stream = match receiver.clone().receive_message(req).await {
            Ok(stream) => stream.into_inner(),
            Err(s) if late(&s) => return Ok((Vec::new(), None)),
            Err(s) => return Err(convert::rpc_error("consume", &s)),
        };
        let mut messages = Vec::new();
        let mut status = None;
        loop {
            let item = match stream.message().await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                // Messages already received are delivered; the engine's invisibility keeps
                // any it popped after the deadline for a later receive.
                Err(s) if late(&s) => break,
                Err(s) => return Err(convert::rpc_error("consume", &s)),
            };
            match item.content {
                Some(pb::receive_message_response::Content::Message(m)) => messages.push(m),
                Some(pb::receive_message_response::Content::Status(s)) => status = Some(s),
                Some(pb::receive_message_response::Content::DeliveryTimestamp(_)) | None => {}
            }
        }
        Ok((messages, status))
    }

    /// Acks, commits or rolls back; the failures name the handles that were not settled.
    async fn settle(
        &self,
        target: Target<'_>,
        group: Option<&GroupId>,
        kind: AckKind,
        texts: &[String],
    ) -> Result<Vec<HandleFailure>, RequestError> {
        if texts.is_empty() {
            return Err(RequestError::from_code(ErrorCode::MissingReceiptHandle));
        }
        if texts.len() > mq_proto::HandleBatch::MAX {
            return Err(RequestError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "at most {} receipt handles per request, got {}",
                    mq_proto::HandleBatch::MAX,
                    texts.len()
                ),
            ));
        }
        let want = match kind {
            AckKind::Ack => Kind::Delivery,
            AckKind::Commit | AckKind::Rollback => Kind::Transaction,
        };
        let group_name = match (kind, group) {
            (AckKind::Ack, None) => {
                return Err(RequestError::new(
                    ErrorCode::InvalidArgument,
                    "a consumer group is required to ack",
                ));
            }
            (AckKind::Ack, Some(g)) => g.as_str(),
            _ => "",
        };
        let mut failures = Vec::new();
        let mut valid = Vec::new();
        let now = self.clock.now_ms();
        for text in texts {
            match Handle::open(text, &self.key) {
                // Not this call's (another kind, instance, topic or group) before anything
                // else: a handle is judged by what it is for, then by its age.
                Some(h)
                    if h.kind == want
                        && h.instance == target.namespace()
                        && h.topic == target.topic.as_str()
                        && (h.kind == Kind::Transaction || h.owner == group_name) =>
                {
                    // Past its validity (a delivery after its NextConsumeTime, a publish
                    // handle after the check immunity): gone.
                    if h.valid_until_ms != 0 && now > h.valid_until_ms {
                        failures.push(HandleFailure::new(
                            text.as_str(),
                            ErrorCode::MessageNotExist,
                        ));
                    } else {
                        valid.push((text, h));
                    }
                }
                _ => failures.push(HandleFailure::new(
                    text.as_str(),
                    ErrorCode::ReceiptHandleError,
                )),
            }
        }
        if valid.is_empty() {
            return Ok(failures);
        }
        let settled = if kind == AckKind::Ack {
            self.ack(target, group_name, &valid, &mut failures).await?
        } else {
            self.end_transactions(target, kind, &valid, &mut failures)
                .await?
        };
        if kind == AckKind::Ack && settled > 0 {
            self.count(target.instance, target.topic, |c| {
                c.groups.entry(group_name.to_owned()).or_default().acked += settled;
            });
        }
        Ok(failures)
    }

    async fn ack(
        &self,
        target: Target<'_>,
        group: &str,
        valid: &[(&String, Handle)],
        failures: &mut Vec<HandleFailure>,
    ) -> Result<u64, RequestError> {
        let req = self.request(
            pb::AckMessageRequest {
                group: Some(pb::Resource {
                    resource_namespace: target.namespace().to_owned(),
                    name: group.to_owned(),
                }),
                topic: Some(target.resource()),
                entries: valid
                    .iter()
                    .map(|(_, h)| pb::AckMessageEntry {
                        message_id: h.message_id.clone(),
                        receipt_handle: h.engine_token.clone(),
                        lite_topic: None,
                    })
                    .collect(),
            },
            target.namespace(),
            self.config.call_timeout,
        );
        let resp = self
            .client
            .clone()
            .ack_message(req)
            .await
            .map_err(|s| convert::rpc_error("ack", &s))?
            .into_inner();
        let mut settled = 0;
        for (text, h) in valid {
            let entry = resp
                .entries
                .iter()
                .find(|e| e.receipt_handle == h.engine_token)
                .or_else(|| resp.entries.iter().find(|e| e.message_id == h.message_id));
            // Without an entry of its own, a handle gets the answer's overall status.
            let status = entry
                .and_then(|e| e.status.as_ref())
                .or(resp.status.as_ref());
            match convert::settle_status(status, "ack")? {
                None => settled += 1,
                Some(code) => failures.push(HandleFailure::new(text.as_str(), code)),
            }
        }
        Ok(settled)
    }

    async fn end_transactions(
        &self,
        target: Target<'_>,
        kind: AckKind,
        valid: &[(&String, Handle)],
        failures: &mut Vec<HandleFailure>,
    ) -> Result<u64, RequestError> {
        let resolution = if kind == AckKind::Commit {
            pb::TransactionResolution::Commit
        } else {
            pb::TransactionResolution::Rollback
        };
        let mut settled = 0;
        for (text, h) in valid {
            // Under the client id that sent it: the proxy keeps a half message's state per
            // client id (rocketmq-proxy 1.0.0, `enrich_end_transaction_request`), so a
            // transaction published through another gateway process is ended as that
            // process's client.
            let req = engine_request(
                &h.owner,
                pb::EndTransactionRequest {
                    topic: Some(target.resource()),
                    message_id: h.message_id.clone(),
                    transaction_id: h.engine_token.clone(),
                    resolution: resolution as i32,
                    source: pb::TransactionSource::SourceClient as i32,
                    trace_context: String::new(),
                },
                target.namespace(),
                Some(self.config.call_timeout),
            );
            let resp = self
                .client
                .clone()
                .end_transaction(req)
                .await
                .map_err(|s| convert::rpc_error("transaction decision", &s))?
                .into_inner();
            match convert::decision_status(resp.status.as_ref())? {
                None => {
                    self.checks.decided(&h.engine_token);
                    settled += 1;
                }
                Some(code) => failures.push(HandleFailure::new(text.as_str(), code)),
            }
        }
        Ok(settled)
    }
}

/// The topic a call addresses.
#[derive(Clone, Copy)]
struct Target<'a> {
    instance: Option<&'a InstanceId>,
    topic: &'a TopicName,
}

impl Target<'_> {
    fn namespace(&self) -> &str {
        self.instance.map_or("", InstanceId::as_str)
    }

    /// The (namespace, topic) key of the gateway's per-topic tables.
    fn key(&self) -> (String, String) {
        (self.namespace().to_owned(), self.topic.as_str().to_owned())
    }

    fn resource(&self) -> pb::Resource {
        pb::Resource {
            resource_namespace: self.namespace().to_owned(),
            name: self.topic.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_switches_to_single_pops_for_a_while_not_for_good() {
        let t0 = tokio::time::Instant::now();
        let pops = SingleMessagePops::new(t0);
        assert!(!pops.active(t0), "batches until the engine refuses one");
        let refused_at = t0 + Duration::from_secs(5);
        pops.refused(refused_at);
        assert!(pops.active(refused_at));
        assert!(pops.active(refused_at + SINGLE_POPS_FOR - Duration::from_millis(1)));
        // Then a batch is tried again (a cluster's blip cost the batches for good).
        let later = refused_at + SINGLE_POPS_FOR;
        assert!(!pops.active(later));
        pops.refused(later);
        assert!(pops.active(later + Duration::from_secs(1)));
        assert!(!pops.active(later + SINGLE_POPS_FOR));
    }
}
