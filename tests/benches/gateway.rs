//! The gateway against the same workload sent straight to the engine: one RocketMQ engine
//! (rocketmq-rust 1.0.0, [`RocketMqEngine`]) and one gateway (`mq-broker` with the `rocketmq`
//! backend, in-process), measured side by side in one run so that the figure that counts is
//! the ratio gateway / direct.
//!
//! * **Direct** (the limit): a minimal v2 client in this file, a tonic `MessagingServiceClient`
//!   on one HTTP/2 channel to the proxy with one client id, as the gateway has, sending what
//!   the gateway sends: one message per `SendMessage` (message id, born time, NORMAL, 1 KiB
//!   body, the gateway's message-id user property), `ReceiveMessage` of one message +
//!   `AckMessage`, with the gateway's metadata headers.
//! * **Gateway**: `mq_client` (tokio) → HTTP/1.1 → gateway → the same proxy.
//!
//! Rows, each with its own topics (created through the gateway, so both paths find them
//! routed) and 1 or 8 concurrent clients per path:
//!
//! * publish: N messages of 1024 bytes per round; once more with 8 direct clients that each
//!   have their own channel and client id, like 8 independent producers (the engine's proxy
//!   runs the sends of one client id one at a time);
//! * consume + ack: M messages published beforehand (unmeasured), drained by receive (HTTP:
//!   batch 16; the gateway pops one message per engine call, as this engine refuses batched
//!   pops; direct: batch 1) and an ack of what arrived, until every message id was seen.
//!
//! Rounds alternate which path goes first; rates are medians over rounds, latencies are
//! pooled over rounds. Engine quirks the drain handles (docs/rocketmq-engine.md): an empty
//! long poll ends with `50000 Serialization failed` (read as "nothing"), and a message may be
//! delivered again before its ack, so the drain counts distinct message ids.
//!
//! Modes: `cargo bench -p mq-tests --bench gateway` measures (release, about a minute);
//! under `cargo test` (no `--bench` argument) or with `MQ_BENCH_QUICK=1` it is a smoke run
//! with tiny sizes. The Markdown table is printed and written to `$MQ_BENCH_OUT/gateway.md`
//! when that is set (`cargo xtask bench` splices it into BENCHMARKS.md). Nothing is asserted
//! about speed.

use mq_broker::{Credential, ServerConfig};
use mq_client::{
    BatchSize, Client, Consumer, GroupId, Producer, ReceiptHandle, TopicMessage, TopicName,
    WaitSeconds,
};
use mq_tests::engine::RocketMqEngine;
use mq_tests::{TEST_AK, TEST_SK, TestBroker, client_builder, unique};
use mq_tokio::TokioRuntime;
use rocketmq_proxy_core::proto::v2 as pb;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tonic::transport::{Channel, Endpoint};

type Result<T, E = String> = std::result::Result<T, E>;
type Grpc = pb::messaging_service_client::MessagingServiceClient<Channel>;

const BODY_BYTES: usize = 1024;
/// Long poll of every receive, on both paths.
const POLL: Duration = Duration::from_secs(1);
/// Invisible duration of a delivery, on both paths.
const INVISIBLE: Duration = Duration::from_secs(30);
/// Deadline of one direct call (besides its long poll).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What one row of the table measures.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Publish,
    ConsumeAck,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::ConsumeAck => "consume + ack",
        }
    }
}

/// One row: a workload with `concurrency` clients per path, `messages` per path and round.
struct Row {
    workload: Workload,
    concurrency: usize,
    messages: usize,
    /// Client ids (and channels) of the direct path: 1, as the gateway, or one per client.
    direct_ids: usize,
}

/// Sizes of one run.
struct Plan {
    name: &'static str,
    rows: Vec<Row>,
    rounds: usize,
    /// Unmeasured publishes per path before a publish row (connections).
    warm_up: usize,
    /// Longest a path may take for one round of a row; what was done by then is counted.
    budget: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let measuring = std::env::args().any(|a| a == "--bench");
        let quick = std::env::var_os("MQ_BENCH_QUICK").is_some_and(|v| v == "1");
        let full = measuring && !quick;
        let rows = |publish: [usize; 2], consume: [usize; 2]| {
            let row = |workload, concurrency, messages, direct_ids| Row {
                workload,
                concurrency,
                messages,
                direct_ids,
            };
            vec![
                row(Workload::Publish, 1, publish[0], 1),
                row(Workload::Publish, 8, publish[1], 1),
                // The engine's proxy runs the sends of one client id one at a time: the
                // direct path as 8 independent producers shows what that costs the gateway.
                row(Workload::Publish, 8, publish[1], 8),
                row(Workload::ConsumeAck, 1, consume[0], 1),
                row(Workload::ConsumeAck, 8, consume[1], 1),
            ]
        };
        // The engine takes ≈ 2 ms per send, one at a time, and ≈ 43 ms per receive that finds a
        // message (BENCHMARKS.md): a full run takes about a minute.
        if full {
            Self {
                name: "full",
                rows: rows([500, 1_000], [30, 30]),
                rounds: 3,
                warm_up: 64,
                budget: Duration::from_secs(8),
            }
        } else {
            Self {
                name: if measuring { "quick" } else { "smoke" },
                rows: rows([50, 200], [10, 10]),
                rounds: 1,
                warm_up: 16,
                budget: Duration::from_secs(5),
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let plan = Plan::from_env();
    eprintln!("gateway bench: {} run", plan.name);
    let started = Instant::now();
    let engine = RocketMqEngine::start().map_err(|e| format!("starting the engine: {e}"))?;
    // Topics of one queue: the direct client polls one queue, as a minimal v2 client does,
    // so both paths see the same messages in the same place.
    let backend = engine.gateway_backend_with_queues(b"gateway-test-handle-key-32-bytes", 1);
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: vec![Credential::new(TEST_AK, TEST_SK)],
        backend,
        ..ServerConfig::default()
    };
    config.core.invisibility_ms = INVISIBLE.as_millis() as u64;
    // The gateway serves on its own thread and runtime (2 workers); the load runs here on
    // another with 2 workers, like two processes.
    let gateway = TestBroker::start_with(config);
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let table = load.block_on(measure(&plan, &engine, &gateway))?;
    drop(gateway);
    drop(engine);
    println!("{table}");
    if let Some(dir) = std::env::var_os("MQ_BENCH_OUT") {
        let path = std::path::Path::new(&dir).join("gateway.md");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, &table))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("gateway bench: table written to {}", path.display());
    }
    eprintln!(
        "gateway bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure(plan: &Plan, engine: &RocketMqEngine, gateway: &TestBroker) -> Result<String> {
    let http = client_builder::<TokioRuntime>(&gateway.endpoint())
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let direct = Direct::connect(engine.proxy_endpoint())?;
    let message = TopicMessage::new(body()).map_err(|e| format!("message: {e}"))?;
    let mut measured = Vec::new();
    for (n, row) in plan.rows.iter().enumerate() {
        let row_started = Instant::now();
        // A topic per path, with the group that consumes it registered (its first poll)
        // before anything is published. In each pair below index 0 is the direct path, 1 the
        // gateway.
        let group = GroupId::new(unique("GID_bench")).map_err(|e| e.to_string())?;
        let topics = [
            created(&http, &format!("bench_direct_{n}"), &group).await?,
            created(&http, &format!("bench_gw_{n}"), &group).await?,
        ];
        let directs = match row.direct_ids {
            1 => vec![direct.clone()],
            n => (0..n)
                .map(|_| Direct::connect(engine.proxy_endpoint()))
                .collect::<Result<_>>()?,
        };
        let publishers = [
            Arc::new(Publisher::Direct(directs, topics[0].to_string())),
            Arc::new(Publisher::Gateway(
                http.producer(topics[1].clone()),
                message.clone(),
            )),
        ];
        let mut sides = [Side::default(), Side::default()];
        match row.workload {
            Workload::Publish => {
                for p in &publishers {
                    publish_n(p, row.concurrency, plan.warm_up, plan.budget).await?;
                }
                for round in 0..plan.rounds {
                    for i in order(round) {
                        let run =
                            publish_n(&publishers[i], row.concurrency, row.messages, plan.budget)
                                .await?;
                        sides[i].add(run, row.messages, round);
                    }
                }
            }
            Workload::ConsumeAck => {
                let drainers = [
                    Arc::new(Drainer::Direct {
                        queue: direct.route(topics[0].as_str()).await?,
                        direct: Box::new(direct.clone()),
                        group: group.as_str().to_owned(),
                    }),
                    Arc::new(Drainer::Gateway(http.consumer(topics[1].clone(), group))),
                ];
                for round in 0..plan.rounds {
                    for p in &publishers {
                        prefill(p, row, plan.budget).await?;
                    }
                    for i in order(round) {
                        let run =
                            drain(&drainers[i], row.concurrency, row.messages, plan.budget).await?;
                        sides[i].add(run, row.messages, round);
                    }
                }
            }
        }
        eprintln!(
            "gateway bench: {} × {} ({} direct ids): direct {:.0} msg/s, gateway {:.0} msg/s ({:.1} s)",
            row.workload.name(),
            row.concurrency,
            row.direct_ids,
            sides[0].median_rate(),
            sides[1].median_rate(),
            row_started.elapsed().as_secs_f64()
        );
        measured.push(sides);
    }
    Ok(table(plan, &measured))
}

/// Publishes a consume round's messages (not measured).
async fn prefill(publisher: &Arc<Publisher>, row: &Row, budget: Duration) -> Result<()> {
    let filled = publish_n(publisher, row.concurrency, row.messages, budget).await?;
    if filled.done < row.messages {
        return Err(format!(
            "{} prefill: {} of {} messages published in {budget:?}",
            publisher.name(),
            filled.done,
            row.messages,
        ));
    }
    Ok(())
}

/// Which path goes first in `round`: 0 = direct, 1 = gateway.
fn order(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// A 1024-byte body of plain text.
fn body() -> String {
    "0123456789abcdef".repeat(BODY_BYTES / 16)
}

/// A fresh topic, created (and routed) by the gateway through an empty poll of `group`.
async fn created(http: &Client, prefix: &str, group: &GroupId) -> Result<TopicName> {
    let topic = TopicName::new(unique(prefix)).map_err(|e| e.to_string())?;
    http.consumer(topic.clone(), group.clone())
        .receive(
            BatchSize::MIN,
            WaitSeconds::new(0).map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| format!("creating topic {topic} through the gateway: {e}"))?;
    Ok(topic)
}

/// One path's publisher.
enum Publisher {
    /// The clients (client `i` sends for task `i`, modulo their number) and the topic.
    Direct(Vec<Direct>, String),
    /// The producer and the message it sends.
    Gateway(Producer, TopicMessage),
}

impl Publisher {
    /// Publishes one message for load task `task`.
    async fn publish(&self, task: usize) -> Result<()> {
        match self {
            Self::Direct(directs, topic) => directs[task % directs.len()].send(topic).await,
            Self::Gateway(producer, message) => producer
                .publish(message)
                .await
                .map(drop)
                .map_err(|e| format!("gateway publish: {e}")),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Direct(..) => "direct",
            Self::Gateway(..) => "gateway",
        }
    }
}

/// One path's consumer: one receive and the ack of what it delivered.
enum Drainer {
    Direct {
        direct: Box<Direct>,
        group: String,
        queue: pb::MessageQueue,
    },
    Gateway(Consumer),
}

/// What one receive + ack did.
#[derive(Default)]
struct Cycle {
    /// Ids of the messages delivered.
    ids: Vec<String>,
    /// Acks the engine refused for a handle (the message stays to be delivered again).
    refused: usize,
    /// The receive ran past its deadline (read as nothing, as the gateway reads it).
    late: bool,
}

impl Drainer {
    async fn cycle(&self) -> Result<Cycle> {
        match self {
            Self::Direct {
                direct,
                group,
                queue,
            } => {
                let Some(messages) = direct.receive(group, queue).await? else {
                    return Ok(Cycle {
                        late: true,
                        ..Cycle::default()
                    });
                };
                if messages.is_empty() {
                    return Ok(Cycle::default());
                }
                let refused = direct.ack(group, queue, &messages).await?;
                let ids = messages
                    .into_iter()
                    .map(|m| m.system_properties.unwrap_or_default().message_id)
                    .collect();
                Ok(Cycle {
                    ids,
                    refused,
                    late: false,
                })
            }
            Self::Gateway(consumer) => {
                let batch = BatchSize::MAX;
                let wait = WaitSeconds::new(POLL.as_secs() as u8).map_err(|e| e.to_string())?;
                let messages = consumer
                    .receive(batch, wait)
                    .await
                    .map_err(|e| format!("gateway receive: {e}"))?;
                if messages.is_empty() {
                    return Ok(Cycle::default());
                }
                let handles: Vec<ReceiptHandle> =
                    messages.iter().map(|m| m.receipt_handle.clone()).collect();
                let refused = match consumer.ack(&handles).await {
                    Ok(()) => 0,
                    Err(e) if e.request_error().is_none() => e.failures().len(),
                    Err(e) => return Err(format!("gateway ack: {e}")),
                };
                let ids = messages
                    .into_iter()
                    .map(|m| m.message_id.as_str().to_owned())
                    .collect();
                Ok(Cycle {
                    ids,
                    refused,
                    late: false,
                })
            }
        }
    }
}

/// One path's measurement in one round.
struct Run {
    /// Messages published, or distinct messages drained.
    done: usize,
    elapsed: Duration,
    /// Per request (publish) or per delivering cycle (receive + ack).
    latencies: Vec<Duration>,
    /// Deliveries of a message already seen, acks refused (consume only).
    redelivered: usize,
    refused: usize,
    /// Receives that ran past their deadline (consume only).
    late: usize,
}

/// Publishes `n` messages with `concurrency` tasks, or as many as `budget` allows.
async fn publish_n(
    publisher: &Arc<Publisher>,
    concurrency: usize,
    n: usize,
    budget: Duration,
) -> Result<Run> {
    let claimed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + budget;
    let tasks = (0..concurrency).map(|task| {
        let (publisher, claimed) = (publisher.clone(), claimed.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while claimed.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                let sent = Instant::now();
                publisher.publish(task).await?;
                latencies.push(sent.elapsed());
            }
            Ok(latencies)
        })
    });
    let latencies = joined(tasks).await?;
    Ok(Run {
        done: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
        redelivered: 0,
        refused: 0,
        late: 0,
    })
}

/// What the tasks of one drain share.
#[derive(Default)]
struct Drained {
    seen: Mutex<HashSet<String>>,
    /// When the last missing message was seen.
    completed: Mutex<Option<Instant>>,
    redelivered: AtomicUsize,
    refused: AtomicUsize,
    late: AtomicUsize,
}

impl Drained {
    fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn record(&self, cycle: Cycle, n: usize) {
        self.refused.fetch_add(cycle.refused, Ordering::Relaxed);
        self.late
            .fetch_add(usize::from(cycle.late), Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for id in cycle.ids {
            if !seen.insert(id) {
                self.redelivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if seen.len() >= n {
            self.completed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Instant::now);
        }
    }
}

/// Receives and acks with `concurrency` tasks until `n` distinct messages arrived or
/// `budget` passed; the time is up to the cycle that completed the set.
async fn drain(
    drainer: &Arc<Drainer>,
    concurrency: usize,
    n: usize,
    budget: Duration,
) -> Result<Run> {
    let drained = Arc::new(Drained::default());
    let started = Instant::now();
    let deadline = started + budget;
    let tasks = (0..concurrency).map(|_| {
        let (drainer, drained) = (drainer.clone(), drained.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while drained.count() < n && Instant::now() < deadline {
                let sent = Instant::now();
                let cycle = drainer.cycle().await?;
                if !cycle.ids.is_empty() {
                    latencies.push(sent.elapsed());
                }
                drained.record(cycle, n);
            }
            Ok(latencies)
        })
    });
    let latencies = joined(tasks).await?;
    let end = drained
        .completed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(deadline);
    Ok(Run {
        done: drained.count(),
        elapsed: end - started,
        latencies,
        redelivered: drained.redelivered.load(Ordering::Relaxed),
        refused: drained.refused.load(Ordering::Relaxed),
        late: drained.late.load(Ordering::Relaxed),
    })
}

/// The latencies of every task, or the first failure.
async fn joined(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<Result<Vec<Duration>>>>,
) -> Result<Vec<Duration>> {
    let mut all = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        all.extend(t.await.map_err(|e| format!("load task: {e}"))??);
    }
    Ok(all)
}

/// One path of one workload over all rounds.
#[derive(Default)]
struct Side {
    rates: Vec<f64>,
    latencies: Vec<Duration>,
    redelivered: usize,
    refused: usize,
    late: usize,
    /// Rounds in which the budget ran out first: (round, done).
    short: Vec<(usize, usize)>,
}

impl Side {
    fn add(&mut self, run: Run, wanted: usize, round: usize) {
        self.rates
            .push(run.done as f64 / run.elapsed.as_secs_f64().max(1e-9));
        self.latencies.extend(run.latencies);
        self.redelivered += run.redelivered;
        self.refused += run.refused;
        self.late += run.late;
        if run.done < wanted {
            self.short.push((round + 1, run.done));
        }
    }

    fn median_rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * q).round() as usize;
        l.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

fn table(plan: &Plan, measured: &[[Side; 2]]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Mode `{}`: {BODY_BYTES}-byte bodies, {} round(s) per row and path (which path goes \
         first alternates), median rates; latencies pooled over the rounds.\n",
        plan.name, plan.rounds
    );
    out.push_str(
        "| Workload | Clients per path | Direct client ids | Messages per round | Direct gRPC, msg/s \
         | Gateway, msg/s | Gateway / direct | Direct p50 ms | Direct p99 ms | Gateway p50 ms \
         | Gateway p99 ms | Target ≥ 80% |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut notes = Vec::new();
    for (row, [direct, gw]) in plan.rows.iter().zip(measured) {
        let name = row.workload.name();
        let ratio = gw.median_rate() / direct.median_rate().max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {:.0} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            row.concurrency,
            row.direct_ids,
            row.messages,
            direct.median_rate(),
            gw.median_rate(),
            ratio * 100.0,
            direct.quantile_ms(0.5),
            direct.quantile_ms(0.99),
            gw.quantile_ms(0.5),
            gw.quantile_ms(0.99),
            if ratio >= 0.8 { "met" } else { "**not met**" },
        );
        let row_name = format!(
            "{name} × {} ({} direct ids)",
            row.concurrency, row.direct_ids
        );
        for (path, side) in [("direct", direct), ("gateway", gw)] {
            for (round, done) in &side.short {
                notes.push(format!(
                    "{row_name}, {path}, round {round}: the {:?} budget ran out after {done} of {} messages; the rate is over the budget.",
                    plan.budget, row.messages
                ));
            }
            if side.redelivered > 0 || side.refused > 0 {
                notes.push(format!(
                    "{row_name}, {path}: {} deliveries of a message already delivered, {} acks refused by the engine.",
                    side.redelivered, side.refused
                ));
            }
            if side.late > 0 {
                notes.push(format!(
                    "{row_name}, {path}: {} receives ran past their deadline (long poll + {:?}) and were read as nothing, as the gateway reads its own.",
                    side.late, CALL_TIMEOUT
                ));
            }
        }
    }
    out.push_str(
        "\nLatency of publish is one request; of consume + ack one receive that delivered and \
         its ack (a cycle; empty polls at the end of a drain are not counted).\n",
    );
    for n in notes {
        let _ = writeln!(out, "\n{n}");
    }
    out
}

/// Path B: a minimal v2 client straight to the proxy, with the gateway's metadata headers.
#[derive(Clone)]
struct Direct {
    client: Grpc,
    proxy: SocketAddr,
    client_id: String,
    id_prefix: u64,
    next_id: Arc<AtomicU64>,
    body: bytes::Bytes,
}

impl Direct {
    fn connect(proxy: SocketAddr) -> Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{proxy}"))
            .map_err(|e| format!("proxy address {proxy}: {e}"))?
            .connect_timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        let id_prefix = fastrand::u64(..);
        Ok(Self {
            client: Grpc::new(channel),
            proxy,
            client_id: format!("mq-bench@{}@{id_prefix:016x}", std::process::id()),
            id_prefix,
            next_id: Arc::new(AtomicU64::new(0)),
            body: body().into(),
        })
    }

    /// One call on the channel: `message` with a deadline of `timeout` and the headers the
    /// gateway sends (empty namespace); the answer, or the call's failure named `what`.
    async fn call<T, F, R>(
        &self,
        what: &str,
        message: T,
        timeout: Duration,
        call: impl FnOnce(Grpc, tonic::Request<T>) -> F,
    ) -> Result<R>
    where
        F: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        self.rpc(message, timeout, call)
            .await
            .map_err(|s| format!("{what}: {s}"))
    }

    /// [`Self::call`] with the call's own status on failure.
    async fn rpc<T, F, R>(
        &self,
        message: T,
        timeout: Duration,
        call: impl FnOnce(Grpc, tonic::Request<T>) -> F,
    ) -> Result<R, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let req = mq_broker::gateway::engine_request(&self.client_id, message, "", Some(timeout));
        call(self.client.clone(), req)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn send(&self, topic: &str) -> Result<()> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016X}{n:016X}", self.id_prefix);
        let message = pb::Message {
            topic: Some(resource(topic)),
            user_properties: [(
                mq_broker::gateway::MESSAGE_ID_PROPERTY.to_owned(),
                id.clone(),
            )]
            .into(),
            system_properties: Some(pb::SystemProperties {
                message_id: id,
                body_encoding: pb::Encoding::Identity as i32,
                message_type: pb::MessageType::Normal as i32,
                born_timestamp: Some(SystemTime::now().into()),
                born_host: "mq-bench".to_owned(),
                ..pb::SystemProperties::default()
            }),
            body: self.body.clone(),
        };
        let messages = vec![message];
        let what = "direct send";
        let resp = self
            .call(
                what,
                pb::SendMessageRequest { messages },
                CALL_TIMEOUT,
                |mut c, r| async move { c.send_message(r).await },
            )
            .await?;
        ok(resp.status.as_ref(), what)?;
        let entry = resp.entries.first().ok_or("direct send: no result entry")?;
        ok(entry.status.as_ref(), what)
    }

    /// The topic's (one) queue.
    async fn route(&self, topic: &str) -> Result<pb::MessageQueue> {
        let endpoints = pb::Endpoints {
            scheme: pb::AddressScheme::IPv4 as i32,
            addresses: vec![pb::Address {
                host: self.proxy.ip().to_string(),
                port: i32::from(self.proxy.port()),
            }],
        };
        let query = pb::QueryRouteRequest {
            topic: Some(resource(topic)),
            endpoints: Some(endpoints),
        };
        let resp = self
            .call("direct route", query, CALL_TIMEOUT, |mut c, r| async move {
                c.query_route(r).await
            })
            .await?;
        ok(resp.status.as_ref(), "direct route")?;
        resp.message_queues
            .into_iter()
            .next()
            .ok_or_else(|| format!("direct route: no queue for {topic}"))
    }

    /// One `ReceiveMessage` of at most one message (this engine refuses batched pops);
    /// `None` when the engine did not end it by its deadline (the gateway reads that as
    /// nothing too, `gateway::Engine::receive`; messages it popped stay invisible until
    /// redelivered).
    async fn receive(
        &self,
        group: &str,
        queue: &pb::MessageQueue,
    ) -> Result<Option<Vec<pb::Message>>> {
        let receive = pb::ReceiveMessageRequest {
            group: Some(resource(group)),
            message_queue: Some(queue.clone()),
            filter_expression: Some(pb::FilterExpression {
                r#type: pb::FilterType::Tag as i32,
                expression: "*".to_owned(),
            }),
            batch_size: 1,
            invisible_duration: prost_types::Duration::try_from(INVISIBLE).ok(),
            auto_renew: false,
            long_polling_timeout: prost_types::Duration::try_from(POLL).ok(),
            attempt_id: None,
        };
        let deadline = POLL + CALL_TIMEOUT;
        let started = Instant::now();
        // tonic ends a call past its timeout as `Cancelled` ("Timeout expired").
        let late = |s: &tonic::Status| {
            s.code() == tonic::Code::DeadlineExceeded
                || (s.code() == tonic::Code::Cancelled && started.elapsed() >= deadline)
        };
        let mut stream = match self
            .rpc(receive, deadline, |mut c, r| async move {
                c.receive_message(r).await
            })
            .await
        {
            Ok(stream) => stream,
            Err(s) if late(&s) => return Ok(None),
            Err(s) => return Err(format!("direct receive: {s}")),
        };
        let (mut messages, mut status) = (Vec::new(), None);
        loop {
            use pb::receive_message_response::Content;
            match stream.message().await {
                Ok(Some(pb::ReceiveMessageResponse { content })) => match content {
                    Some(Content::Message(m)) => messages.push(m),
                    Some(Content::Status(s)) => status = Some(s),
                    Some(Content::DeliveryTimestamp(_)) | None => {}
                },
                Ok(None) => break,
                Err(s) if late(&s) && messages.is_empty() => return Ok(None),
                Err(s) if late(&s) => return Ok(Some(messages)),
                Err(s) => return Err(format!("direct receive: {s}")),
            }
        }
        match status {
            // This engine ends every empty long poll with `50000 Serialization failed`.
            Some(s) if messages.is_empty() && s.message == "Serialization failed" => {
                Ok(Some(messages))
            }
            Some(s) if messages.is_empty() && s.code == pb::Code::MessageNotFound as i32 => {
                Ok(Some(messages))
            }
            s => ok(s.as_ref(), "direct receive").map(|()| Some(messages)),
        }
    }

    /// Acks `messages`; how many acks the engine refused.
    async fn ack(
        &self,
        group: &str,
        queue: &pb::MessageQueue,
        messages: &[pb::Message],
    ) -> Result<usize> {
        let entries = messages
            .iter()
            .filter_map(|m| m.system_properties.as_ref())
            .map(|p| pb::AckMessageEntry {
                message_id: p.message_id.clone(),
                receipt_handle: p.receipt_handle.clone().unwrap_or_default(),
                lite_topic: None,
            })
            .collect();
        let ack = pb::AckMessageRequest {
            group: Some(resource(group)),
            topic: queue.topic.clone(),
            entries,
        };
        let resp = self
            .call("direct ack", ack, CALL_TIMEOUT, |mut c, r| async move {
                c.ack_message(r).await
            })
            .await?;
        ok(resp.status.as_ref(), "direct ack")?;
        Ok(resp
            .entries
            .iter()
            .filter(|e| ok(e.status.as_ref(), "").is_err())
            .count())
    }
}

/// A topic or group without namespace.
fn resource(name: &str) -> pb::Resource {
    pb::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

/// `Ok` for no status or a success.
fn ok(status: Option<&pb::Status>, what: &str) -> Result<()> {
    match status {
        None => Ok(()),
        Some(s) if s.code == pb::Code::Ok as i32 || s.code == pb::Code::MultipleResults as i32 => {
            Ok(())
        }
        Some(s) => Err(format!("{what}: engine status {} {}", s.code, s.message)),
    }
}
