//! The system benchmark suite: the SDK client and the broker, each measured side by side
//! with its limit in the same run, so that every figure is a ratio.
//!
//! 1. Client vs raw transport: `mq` client publishes vs a raw hyper client sending pre-built,
//!    pre-signed requests, to the same (fresh, in-process) broker, 1/16/64 in flight.
//! 2. Broker vs bare server: the raw load generator against the broker and against a bare
//!    hyper server answering canned responses: publish, and consume + ack.
//! 3. Publish → delivery latency with a waiting long poll.
//! 4. Memory of idle long polls: the `mq-broker` binary as a child process, RSS from /proc.
//! 5. Client CPU per publish (`client-cpu`): `mq bench` (the Rust SDK) and the official Python
//!    SDK (`python_publish.py`, run with `$MQ_INTEROP_PYTHON`) as child processes publishing
//!    a fixed count to one `mq-broker` child; each reports its own process CPU time (user +
//!    system) over the publishes after its warm-up.
//!
//! Modes: `cargo bench -p mq-cli --bench suite` (full, release), `… -- --quick` (tiny sizes),
//! and under `cargo test` a smoke run (tiny sizes). Each mode writes its Markdown tables to
//! `$MQ_BENCH_OUT/suite.md` (sections 1–4) and `$MQ_BENCH_OUT/client-cpu.md` (section 5;
//! default directory `target/bench`), spliced into BENCHMARKS.md by `cargo xtask bench`.
//! Options: `--broker-bin PATH` (default: `mq-broker` next to `mq`),
//! `--only client|broker|latency|memory|client-cpu` (repeatable; one section alone). A full
//! run without the Python SDK (`MQ_INTEROP_PYTHON`) fails; the quick and smoke runs measure
//! the Rust side and say in the table that the Python side was not measured.
//!
//! The suite runs on mimalloc, the allocator of the `mq-broker` and `mq` binaries, so the
//! in-process broker (and the bare server beside it) allocate as the shipped broker does.

use bytes::Bytes;
use http::StatusCode;
use indicatif::ProgressBar;
use mq_broker::{Broker, CoreConfig, Credential, ServerConfig};
use mq_cli::bench::bare::{BareServer, Canned};
use mq_cli::bench::raw::{
    self, AckSigner, LoadResult, Prepared, RawConnection, Stop, consume_ack_load,
};
use mq_cli::bench::{self as load, BenchConfig, Latency, Workload};
use mq_tokio::mq_proto::client::{Endpoint, RequestContext, consume_request, publish_request};
use mq_tokio::mq_proto::server::{encode_messages, encode_publish_response};
use mq_tokio::mq_proto::{self, ConsumeKind};
use mq_tokio::{
    BatchSize, Credentials, GroupId, Message, MessageId, PublishReceipt, ReceiptHandle, TagFilter,
    TopicMessage, TopicName, WaitSeconds,
};
use std::fmt::Write as _;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AK: &str = "bench-ak";
const SK: &str = "bench-sk";
const SIZE: usize = 1024;

type Result<T, E = String> = std::result::Result<T, E>;

/// Locating and checking the official Python SDK's interpreter, shared with the interop
/// tests.
#[path = "../../mq-broker/tests/support/python.rs"]
mod python;

/// Sizes of one run.
#[derive(Clone, Debug)]
struct Plan {
    name: &'static str,
    /// Measuring time of one side of one round.
    round: Duration,
    /// Interleaved rounds (A B A B …); the median of each side is reported.
    rounds: usize,
    in_flight: Vec<usize>,
    broker_in_flight: Vec<usize>,
    consume_in_flight: usize,
    prefill: u64,
    latency_samples: usize,
    idle_polls: usize,
    /// Client CPU: successful publishes measured per row of the `mq` client.
    cpu_rust_publishes: u64,
    /// Client CPU: successful publishes measured per row of the Python SDK (≈ 15× the CPU
    /// per publish of the Rust client: a smaller count for a similar time).
    cpu_python_publishes: u64,
    /// Client CPU: publishes before measuring, per row (all threads together).
    cpu_warmup: u64,
    /// Client CPU: the time limit of one row (a child still publishing then is an error).
    cpu_row_limit: Duration,
    /// A missing Python SDK is an error (full run) rather than a note in the table.
    require_python: bool,
}

impl Plan {
    fn full() -> Self {
        Self {
            name: "full",
            round: Duration::from_secs(2),
            // Five, not three: on two shared cores one build's ratio moved by up to 19
            // points between runs of three rounds (BENCHMARKS.md, "Targets").
            rounds: 5,
            in_flight: vec![1, 16, 64],
            broker_in_flight: vec![16, 64],
            consume_in_flight: 16,
            prefill: 300_000,
            latency_samples: 2_000,
            idle_polls: 10_000,
            cpu_rust_publishes: 50_000,
            cpu_python_publishes: 10_000,
            cpu_warmup: 500,
            cpu_row_limit: Duration::from_secs(120),
            require_python: true,
        }
    }

    fn quick() -> Self {
        Self {
            name: "quick",
            round: Duration::from_millis(200),
            rounds: 1,
            in_flight: vec![1, 16, 64],
            broker_in_flight: vec![16],
            consume_in_flight: 4,
            prefill: 400,
            latency_samples: 20,
            idle_polls: 200,
            cpu_rust_publishes: 200,
            cpu_python_publishes: 32,
            cpu_warmup: 16,
            cpu_row_limit: Duration::from_secs(60),
            require_python: false,
        }
    }
}

/// The sections whose tables go to `suite.md` (`client-cpu` writes `client-cpu.md`).
const SUITE_SECTIONS: [&str; 4] = ["client", "broker", "latency", "memory"];

struct Args {
    plan: Plan,
    broker_bin: Option<PathBuf>,
    out_dir: PathBuf,
    /// Sections to run (`client`, `broker`, `latency`, `memory`, `client-cpu`); empty = all.
    only: Vec<String>,
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn parse_args() -> Result<Args> {
    let mut measuring = false;
    let mut quick = false;
    let mut broker_bin = std::env::var_os("MQ_BROKER_BIN").map(PathBuf::from);
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => measuring = true,
            "--quick" => quick = true,
            "--broker-bin" => {
                broker_bin = Some(args.next().ok_or("--broker-bin needs a path")?.into())
            }
            "--only" => {
                let section = args.next().ok_or("--only needs a section")?;
                if section != "client-cpu" && !SUITE_SECTIONS.contains(&section.as_str()) {
                    return Err(format!(
                        "unknown section {section:?}: --only {}|client-cpu",
                        SUITE_SECTIONS.join("|")
                    ));
                }
                only.push(section);
            }
            // Flags cargo passes to every harness.
            s if s.starts_with("--") => {}
            // A name filter from `cargo bench NAME`: run everything anyway.
            _ => {}
        }
    }
    let plan = if measuring && !quick {
        Plan::full()
    } else {
        let mut p = Plan::quick();
        if !measuring {
            p.name = "smoke";
        }
        p
    };
    let out_dir = std::env::var_os("MQ_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"));
    Ok(Args {
        plan,
        broker_bin,
        out_dir,
        only,
    })
}

fn runtime(threads: usize, name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// The broker and bare servers run on their own runtime; the load generators on another
/// (2 worker threads each, like two processes on this 2-core machine).
struct Harness {
    server: tokio::runtime::Runtime,
    load: tokio::runtime::Runtime,
}

impl Harness {
    fn start_broker(&self) -> Result<Broker> {
        self.start_broker_with(CoreConfig::default())
    }

    fn start_broker_with(&self, core: CoreConfig) -> Result<Broker> {
        self.server
            .block_on(Broker::start(ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                credentials: vec![Credential::new(AK, SK)],
                core,
                ..Default::default()
            }))
            .map_err(|e| format!("start broker: {e}"))
    }

    fn stop_broker(&self, b: Broker) {
        self.server.block_on(b.shutdown());
    }
}

fn endpoint(addr: SocketAddr) -> Result<Endpoint> {
    format!("http://{addr}")
        .parse()
        .map_err(|e| format!("endpoint: {e}"))
}

fn credentials() -> Credentials {
    Credentials::new(AK, SK)
}

fn name<T: std::str::FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{s}: {e}"))
}

fn body() -> String {
    "x".repeat(SIZE)
}

fn ctx<'a>(endpoint: &'a Endpoint, credentials: &'a Credentials) -> RequestContext<'a> {
    RequestContext {
        endpoint,
        credentials,
        instance: None,
        date: SystemTime::now(),
        user_agent: "mq-bench-raw",
    }
}

fn prepared_publish(addr: SocketAddr, topic: &TopicName) -> Result<Arc<Prepared>> {
    let (e, c) = (endpoint(addr)?, credentials());
    let msg = TopicMessage::new(body()).map_err(|e| e.to_string())?;
    Ok(Arc::new(Prepared::new(publish_request(
        &ctx(&e, &c),
        topic,
        &msg,
    ))))
}

fn prepared_consume(
    addr: SocketAddr,
    topic: &TopicName,
    group: &GroupId,
    batch: u8,
    wait: u8,
) -> Result<Arc<Prepared>> {
    let (e, c) = (endpoint(addr)?, credentials());
    let batch = BatchSize::new(batch).map_err(|e| e.to_string())?;
    let wait = WaitSeconds::new(wait).map_err(|e| e.to_string())?;
    Ok(Arc::new(Prepared::new(
        consume_request(
            &ctx(&e, &c),
            topic,
            group,
            ConsumeKind::Normal,
            batch,
            wait,
            &TagFilter::All,
        )
        .expect("consume request"),
    )))
}

/// Registers `group` on `topic` (a group receives what is published after its first
/// consume).
async fn register(addr: SocketAddr, topic: &TopicName, group: &GroupId) -> Result<()> {
    let req = prepared_consume(addr, topic, group, 1, 0)?;
    let mut conn = RawConnection::connect(addr).await?;
    let (status, body) = conn.send(req.request()).await?;
    if status == StatusCode::NOT_FOUND || status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "register: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

/// CPU time (ns) of this process's threads named `name` (a runtime's workers and blocking
/// threads), from `/proc/self/task/*/schedstat` (Linux; `None` elsewhere). Threads that ended
/// are not counted, so callers sample around a load whose runtime outlives it.
fn threads_cpu_ns(name: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU per request of the server runtime's and the load runtime's threads over one load.
#[derive(Clone, Copy, Debug, Default)]
struct CpuPerRequest {
    /// Server threads (broker or bare), µs per request.
    server_us: f64,
    /// Load-generator threads, µs per request.
    load_us: f64,
}

/// Runs `load` on the load runtime and measures the CPU both runtimes spent on it.
fn measured<T>(
    h: &Harness,
    load: impl std::future::Future<Output = Result<T>>,
    requests: impl Fn(&T) -> u64,
) -> (Result<T>, Option<CpuPerRequest>) {
    let before = (threads_cpu_ns("server"), threads_cpu_ns("load"));
    let r = h.load.block_on(load);
    let after = (threads_cpu_ns("server"), threads_cpu_ns("load"));
    let Ok(done) = &r else {
        return (r, None);
    };
    let n = requests(done).max(1) as f64;
    let cpu = match (before, after) {
        ((Some(s0), Some(l0)), (Some(s1), Some(l1))) => Some(CpuPerRequest {
            server_us: s1.saturating_sub(s0) as f64 / 1_000.0 / n,
            load_us: l1.saturating_sub(l0) as f64 / 1_000.0 / n,
        }),
        _ => None,
    };
    (r, cpu)
}

/// Median of each field of the samples measured; `None` when none was.
fn median_cpu(v: &[Option<CpuPerRequest>]) -> Option<CpuPerRequest> {
    let v: Vec<CpuPerRequest> = v.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    Some(CpuPerRequest {
        server_us: median(v.iter().map(|c| c.server_us).collect()),
        load_us: median(v.iter().map(|c| c.load_us).collect()),
    })
}

/// Two table cells: server CPU µs per request `bare / broker`, and the load generator's.
/// The CPU cells of a row: the server's per request (bare / floor / broker) and the load
/// generator's (bare / broker).
fn cpu_cells(
    bare: Option<CpuPerRequest>,
    floor: Option<CpuPerRequest>,
    broker: Option<CpuPerRequest>,
) -> String {
    let server = match (bare, floor, broker) {
        (Some(a), Some(f), Some(b)) => {
            format!(
                "{:.1} / {:.1} / {:.1}",
                a.server_us, f.server_us, b.server_us
            )
        }
        _ => "—".to_owned(),
    };
    let load = match (bare, broker) {
        (Some(a), Some(b)) => format!("{:.1} / {:.1}", a.load_us, b.load_us),
        _ => "—".to_owned(),
    };
    format!("{server} | {load}")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn check(r: &LoadResult, what: &str) -> Result<()> {
    if r.messages == 0 {
        return Err(format!(
            "{what}: nothing succeeded ({} errors, first: {})",
            r.errors,
            r.first_error.as_deref().unwrap_or("-")
        ));
    }
    if r.errors > 0 {
        eprintln!(
            "suite: {what}: {} errors, first: {}",
            r.errors,
            r.first_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn pct(ours: f64, limit: f64) -> String {
    if limit > 0.0 {
        format!("{:.0}%", 100.0 * ours / limit)
    } else {
        "—".into()
    }
}

fn verdict(ours: f64, limit: f64, target: f64) -> &'static str {
    if limit > 0.0 && ours / limit >= target {
        "met"
    } else {
        "**not met**"
    }
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

// ---------------------------------------------------------------------------------------------
// 1. Client vs raw transport

fn client_vs_raw(h: &Harness, plan: &Plan, out: &mut String) -> Result<()> {
    writeln!(
        out,
        "### Client vs raw transport (publish, {SIZE}-byte bodies)\n"
    )
    .ok();
    writeln!(
        out,
        "| In flight | Raw hyper client, msg/s | `mq` client, msg/s | Client / raw | Client p50 ms | Client p99 ms | Raw p50 ms | Raw p99 ms | Target ≥ 70% |"
    )
    .ok();
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---|").ok();
    for &n in &plan.in_flight {
        let (mut raw_rates, mut client_rates) = (Vec::new(), Vec::new());
        let (mut raw_lat, mut client_lat) = (Latency::default(), Latency::default());
        for round in 0..plan.rounds {
            let topic: TopicName = name(&format!("raw{n}r{round}"))?;
            // Raw, on a fresh broker.
            let broker = h.start_broker()?;
            let addr = broker.local_addr();
            let req = prepared_publish(addr, &topic)?;
            let r = h.load.block_on(raw::repeat_load(
                addr,
                req,
                StatusCode::CREATED,
                n,
                Stop::After(plan.round),
            ));
            h.stop_broker(broker);
            let r = r?;
            check(&r, "raw publish")?;
            raw_rates.push(r.messages_per_sec());
            raw_lat = Latency::from_histogram(&r.latency);
            // Client, on a fresh broker.
            let broker = h.start_broker()?;
            let endpoint = broker.endpoint();
            let report = h.load.block_on(async {
                let client = mq_cli::args::client_for(&endpoint, credentials(), None)
                    .map_err(|e| e.to_string())?;
                let config = BenchConfig::new(Workload::Publish, topic.clone(), name("GID_b")?)
                    .concurrency(n)
                    .size(SIZE)
                    .duration(plan.round);
                load::run(&client, &config, &ProgressBar::hidden()).await
            });
            h.stop_broker(broker);
            let report = report?;
            if report.errors > 0 {
                eprintln!(
                    "suite: client publish: {} errors, first: {}",
                    report.errors,
                    report.first_error.as_deref().unwrap_or("-")
                );
            }
            client_rates.push(report.messages_per_sec);
            client_lat = report.latency;
        }
        let (raw, client) = (median(raw_rates), median(client_rates));
        eprintln!("suite: publish {n} in flight: raw {raw:.0}/s, client {client:.0}/s");
        writeln!(
            out,
            "| {n} | {raw:.0} | {client:.0} | {} | {} | {} | {} | {} | {} |",
            pct(client, raw),
            ms(client_lat.p50_us),
            ms(client_lat.p99_us),
            ms(raw_lat.p50_us),
            ms(raw_lat.p99_us),
            verdict(client, raw, 0.7)
        )
        .ok();
    }
    writeln!(out).ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Broker vs bare server

fn canned() -> Result<Canned> {
    let id: MessageId = name("0BC1EF3E1A9C18B4AAC2558D1E4F0000")?;
    let publish = encode_publish_response(&PublishReceipt {
        message_id: id.clone(),
        body_md5: mq_proto::body_md5(&body()),
        receipt_handle: None,
    });
    let messages: Vec<Message> = (0..16u64)
        .map(|i| {
            Ok(Message {
                message_id: name(&format!("0BC1EF3E1A9C18B4AAC2558D1E4F{i:04X}"))?,
                receipt_handle: name::<ReceiptHandle>(&format!(
                    "0BC1EF3E1A9C18B4AAC2558D1E4F{i:04X}-MTcwOTgzODU5ODAwMCAzMDAwMDA="
                ))?,
                body_md5: mq_proto::body_md5(&body()).into(),
                body: body().into(),
                publish_time: 1_709_837_398_000 + i,
                next_consume_time: 1_709_838_898_000,
                first_consume_time: 1_709_838_598_000,
                consumed_times: 1,
                tag: None,
                properties: Default::default(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Canned {
        publish,
        consume: encode_messages(&messages),
    })
}

/// Runs one measured `load` (as [`measured`] returns it) against a bare server on the server
/// runtime — the protocol floor when `floor` — and stops the server.
fn on_bare<T>(
    h: &Harness,
    canned: &Canned,
    floor: bool,
    load: impl Fn(SocketAddr) -> Result<(Result<T>, Option<CpuPerRequest>)>,
) -> Result<(T, Option<CpuPerRequest>)> {
    let server = h
        .server
        .block_on(async {
            if floor {
                BareServer::start_floor(canned.clone(), AK, SK).await
            } else {
                BareServer::start(canned.clone()).await
            }
        })
        .map_err(|e| format!("bare server: {e}"))?;
    let measured = load(server.addr());
    h.server.block_on(server.shutdown());
    let (r, cpu) = measured?;
    Ok((r?, cpu))
}

fn broker_vs_bare(h: &Harness, plan: &Plan, out: &mut String) -> Result<()> {
    let canned = canned()?;
    writeln!(
        out,
        "### Broker vs bare hyper server (same raw load generator, {SIZE}-byte bodies)\n"
    )
    .ok();
    writeln!(
        out,
        "| Workload | In flight | Bare server, req/s | Protocol floor, req/s | Broker, req/s | Floor / bare | Broker / bare | Server CPU µs/req, bare / floor / broker | Load generator CPU µs/req, bare / broker | Broker msg/s | Broker p50 ms | Broker p99 ms | Target: publish ≥ 80%, consume + ack ≥ 70% (issue 18) |"
    )
    .ok();
    writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    .ok();
    for &n in &plan.broker_in_flight {
        let (mut bare_rates, mut broker_rates) = (Vec::new(), Vec::new());
        let (mut bare_cpu, mut broker_cpu) = (Vec::new(), Vec::new());
        let (mut floor_rates, mut floor_cpu) = (Vec::new(), Vec::new());
        let mut lat = Latency::default();
        for round in 0..plan.rounds {
            let topic: TopicName = name(&format!("bare{n}r{round}"))?;
            // One measured publish load against `addr` (its server is stopped by the caller).
            let publish = |addr| -> Result<_> {
                let prepared = prepared_publish(addr, &topic)?;
                Ok(measured(
                    h,
                    raw::repeat_load(
                        addr,
                        prepared,
                        StatusCode::CREATED,
                        n,
                        Stop::After(plan.round),
                    ),
                    |r| r.requests,
                ))
            };
            let (r, cpu) = on_bare(h, &canned, false, publish)?;
            check(&r, "bare publish")?;
            bare_rates.push(r.requests_per_sec());
            bare_cpu.push(cpu);

            let (r, cpu) = on_bare(h, &canned, true, publish)?;
            check(&r, "floor publish")?;
            floor_rates.push(r.requests_per_sec());
            floor_cpu.push(cpu);

            let broker = h.start_broker()?;
            let measured_broker = publish(broker.local_addr());
            h.stop_broker(broker);
            let (r, cpu) = measured_broker?;
            let r = r?;
            check(&r, "broker publish")?;
            broker_rates.push(r.requests_per_sec());
            broker_cpu.push(cpu);
            lat = Latency::from_histogram(&r.latency);
        }
        let (bare, floor, broker) = (
            median(bare_rates),
            median(floor_rates),
            median(broker_rates),
        );
        eprintln!(
            "suite: broker publish {n} in flight: bare {bare:.0}/s, floor {floor:.0}/s, broker {broker:.0}/s"
        );
        writeln!(
            out,
            "| publish | {n} | {bare:.0} | {floor:.0} | {broker:.0} | {} | {} | {} | {broker:.0} | {} | {} | {} |",
            pct(floor, bare),
            pct(broker, bare),
            cpu_cells(
                median_cpu(&bare_cpu),
                median_cpu(&floor_cpu),
                median_cpu(&broker_cpu)
            ),
            ms(lat.p50_us),
            ms(lat.p99_us),
            verdict(broker, bare, 0.8)
        )
        .ok();
    }

    // Consume (16 per request) + ack of the 16 handles, from a prefilled backlog.
    let n = plan.consume_in_flight;
    let (mut bare_rates, mut broker_rates, mut broker_msgs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bare_cpu, mut broker_cpu) = (Vec::new(), Vec::new());
    let (mut floor_rates, mut floor_cpu) = (Vec::new(), Vec::new());
    let mut lat = Latency::default();
    let mut drained_early = false;
    for round in 0..plan.rounds {
        let topic: TopicName = name(&format!("cons{round}"))?;
        let group: GroupId = name("GID_cons")?;
        let signer = |addr| -> Result<Arc<AckSigner>> {
            Ok(Arc::new(AckSigner {
                endpoint: endpoint(addr)?,
                credentials: credentials(),
                instance: None,
                topic: topic.clone(),
                group: group.clone(),
            }))
        };
        // One measured consume + ack load against `addr` (its server is stopped by the caller).
        let consume_ack = |addr| -> Result<_> {
            let (prepared, signer) = (
                prepared_consume(addr, &topic, &group, 16, 0)?,
                signer(addr)?,
            );
            Ok(measured(
                h,
                consume_ack_load(addr, prepared, signer, n, plan.round),
                |(r, _)| r.requests,
            ))
        };
        let ((r, _), cpu) = on_bare(h, &canned, false, consume_ack)?;
        check(&r, "bare consume+ack")?;
        bare_rates.push(r.requests_per_sec());
        bare_cpu.push(cpu);

        let ((r, _), cpu) = on_bare(h, &canned, true, consume_ack)?;
        check(&r, "floor consume+ack")?;
        floor_rates.push(r.requests_per_sec());
        floor_cpu.push(cpu);

        let broker = h.start_broker()?;
        let addr = broker.local_addr();
        let filled = h.load.block_on(async {
            register(addr, &topic, &group).await?;
            let fill = raw::repeat_load(
                addr,
                prepared_publish(addr, &topic)?,
                StatusCode::CREATED,
                64,
                Stop::Count(plan.prefill),
            )
            .await?;
            check(&fill, "prefill")
        });
        let measured_broker = filled.and_then(|()| consume_ack(addr));
        h.stop_broker(broker);
        let (result, cpu) = measured_broker?;
        let (r, drained) = result?;
        check(&r, "broker consume+ack")?;
        drained_early |= drained;
        broker_rates.push(r.requests_per_sec());
        broker_msgs.push(r.messages_per_sec());
        broker_cpu.push(cpu);
        lat = Latency::from_histogram(&r.latency);
    }
    let (bare, floor, broker, msgs) = (
        median(bare_rates),
        median(floor_rates),
        median(broker_rates),
        median(broker_msgs),
    );
    eprintln!(
        "suite: consume+ack: bare {bare:.0} req/s, floor {floor:.0} req/s, broker {broker:.0} req/s"
    );
    writeln!(
        out,
        "| consume 16 + ack 16 | {n} | {bare:.0} | {floor:.0} | {broker:.0} | {} | {} | {} | {msgs:.0} | {} | {} | {} |",
        pct(floor, bare),
        pct(broker, bare),
        cpu_cells(
            median_cpu(&bare_cpu),
            median_cpu(&floor_cpu),
            median_cpu(&broker_cpu)
        ),
        ms(lat.p50_us),
        ms(lat.p99_us),
        verdict(broker, bare, 0.7)
    )
    .ok();
    writeln!(
        out,
        "\nLatency of consume + ack is one receive and its ack (a cycle); req/s counts both. \
         CPU per request is the on-CPU time of the server runtime's threads (broker or bare \
         server) and of the load generator's, over the round (`/proc/self/task/*/schedstat`). \
         The protocol floor is the bare server doing, per request, part of what every server \
         of the protocol must do (signature check, request parse, a published body's MD5; \
         `mq_cli::bench::bare`) and answering the canned bytes (no ids, handles or response \
         document built), storing nothing: no server of this protocol on this stack answers \
         faster.{}\n",
        if drained_early {
            " The broker's backlog ran out before the end of a round; its rate is over the time it lasted."
        } else {
            ""
        }
    )
    .ok();
    Ok(())
}

/// Topics holding a message in the many-topics rows.
const MANY_TOPICS: usize = 10_000;

/// How long the many-topics brokers keep a message no group holds (`consumed_retention_ms`).
const MANY_TOPICS_KEEP_MS: u64 = 1_000;

/// Publish at 16 in flight to one topic of a broker whose other topics each hold a message
/// (so each has a timed event pending: its message's retention), against a broker with that
/// one topic: what a request costs must not grow with the topics the broker keeps. Both
/// brokers keep a message no group holds for [`MANY_TOPICS_KEEP_MS`], so the other topics'
/// messages go while the load runs: the broker's housekeeping wakes up for them, which must
/// not cost a pass over every topic either.
fn many_topics(h: &Harness, plan: &Plan, out: &mut String) -> Result<()> {
    const IN_FLIGHT: usize = 16;
    let (mut one_rates, mut many_rates) = (Vec::new(), Vec::new());
    let (mut one_cpu, mut many_cpu) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        let topic: TopicName = name(&format!("many{round}"))?;
        for others in [0, MANY_TOPICS] {
            let broker = h.start_broker_with(CoreConfig {
                consumed_retention_ms: MANY_TOPICS_KEEP_MS,
                ..CoreConfig::default()
            })?;
            let addr = broker.local_addr();
            let filled = h.load.block_on(async {
                let mut connection = RawConnection::connect(addr).await?;
                for i in 0..others {
                    let other = prepared_publish(addr, &name(&format!("other{i:05}"))?)?;
                    let (status, _) = connection.send(other.request()).await?;
                    if status != StatusCode::CREATED {
                        return Err(format!("publish to topic {i} answered {status}"));
                    }
                }
                Ok(())
            });
            let measured_broker = filled.and_then(|()| {
                let load = raw::repeat_load(
                    addr,
                    prepared_publish(addr, &topic)?,
                    StatusCode::CREATED,
                    IN_FLIGHT,
                    Stop::After(plan.round),
                );
                Ok(measured(h, load, |r| r.requests))
            });
            h.stop_broker(broker);
            let (r, cpu) = measured_broker?;
            let r = r?;
            check(&r, "many-topics publish")?;
            let (rates, cpus) = if others == 0 {
                (&mut one_rates, &mut one_cpu)
            } else {
                (&mut many_rates, &mut many_cpu)
            };
            rates.push(r.requests_per_sec());
            cpus.push(cpu);
        }
    }
    let (one, many) = (median(one_rates), median(many_rates));
    eprintln!("suite: publish with {MANY_TOPICS} topics: {many:.0}/s, with one: {one:.0}/s");
    let server_us = |v: &[Option<CpuPerRequest>]| {
        median_cpu(v).map_or("—".to_owned(), |c| format!("{:.1}", c.server_us))
    };
    writeln!(
        out,
        "### Publish with many topics ({IN_FLIGHT} in flight, {SIZE}-byte bodies)\n\n\
         | Other topics holding a message | Broker, req/s | Server CPU µs/req | vs one topic | Target ≥ 90% |\n\
         |---:|---:|---:|---:|---|\n\
         | 0 | {one:.0} | {} | 100% | — |\n\
         | {MANY_TOPICS} | {many:.0} | {} | {} | {} |\n",
        server_us(&one_cpu),
        server_us(&many_cpu),
        pct(many, one),
        verdict(many, one, 0.9)
    )
    .ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Publish → delivery latency

fn delivery_latency(h: &Harness, plan: &Plan, out: &mut String) -> Result<()> {
    let broker = h.start_broker()?;
    let addr = broker.local_addr();
    let topic: TopicName = name("latency")?;
    let group: GroupId = name("GID_latency")?;
    let result = h.load.block_on(async {
        register(addr, &topic, &group).await?;
        raw::delivery_latency(
            addr,
            prepared_publish(addr, &topic)?,
            prepared_consume(addr, &topic, &group, 1, 5)?,
            plan.latency_samples,
            Duration::from_millis(2),
        )
        .await
    });
    h.stop_broker(broker);
    let r = result?;
    check(&r, "delivery latency")?;
    let l = Latency::from_histogram(&r.latency);
    eprintln!(
        "suite: publish→delivery p50 {:.0} µs p99 {:.0} µs",
        l.p50_us, l.p99_us
    );
    writeln!(
        out,
        "### Publish → delivery with a waiting long poll ({SIZE}-byte body)\n"
    )
    .ok();
    writeln!(
        out,
        "| Samples | p50 ms | p99 ms | p99.9 ms | max ms | Target p99 ≤ 2 ms |"
    )
    .ok();
    writeln!(out, "|---:|---:|---:|---:|---:|---|").ok();
    writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} |\n",
        l.samples,
        ms(l.p50_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.max_us),
        if l.p99_us <= 2_000.0 {
            "met"
        } else {
            "**not met**"
        }
    )
    .ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Memory of idle long polls

/// Resident set size of a process, bytes (Linux /proc).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn broker_command(explicit: Option<&Path>) -> (Command, String) {
    if let Some(p) = explicit {
        return (Command::new(p), p.display().to_string());
    }
    let mq = Path::new(env!("CARGO_BIN_EXE_mq"));
    let sibling = mq.with_file_name(format!("mq-broker{}", std::env::consts::EXE_SUFFIX));
    if sibling.exists() {
        return (Command::new(&sibling), "mq-broker".into());
    }
    // Same serving code (`mq_broker::run`), when mq-broker has not been built in this profile.
    let mut c = Command::new(mq);
    c.arg("serve");
    (c, "mq serve (mq-broker not built)".into())
}

/// An `mq-broker` process on 127.0.0.1 (port chosen by the OS, in-memory, credentials
/// `AK:SK`), killed when dropped.
struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    /// What runs (for the tables).
    what: String,
}

impl BrokerProcess {
    /// Starts the broker (`explicit`, else `mq-broker` next to `mq`) and reads its address
    /// from the first line it prints.
    fn start(explicit: Option<&Path>) -> Result<Self> {
        let (mut cmd, what) = broker_command(explicit);
        let mut child = cmd
            .args([
                "--listen",
                "127.0.0.1:0",
                "--credential",
                &format!("{AK}:{SK}"),
            ])
            .env("MQ_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {what}: {e}"))?;
        let addr = (|| -> Result<SocketAddr> {
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut first = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut first)
                .map_err(|e| format!("reading {what}: {e}"))?;
            first
                .trim()
                .strip_prefix("listening on http://")
                .ok_or_else(|| format!("{what} said {first:?}"))?
                .parse()
                .map_err(|e| format!("{what} address: {e}"))
        })();
        match addr {
            Ok(addr) => Ok(Self { child, addr, what }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker's `GET /stats` document.
async fn broker_stats(conn: &mut RawConnection, addr: SocketAddr) -> Result<serde_json::Value> {
    let req = http::Request::get("/stats")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (_, body) = conn.send(req).await?;
    serde_json::from_slice(&body).map_err(|e| format!("/stats: {e}"))
}

/// Waits until the broker reports `want` waiting long polls (`GET /stats`).
async fn wait_for_polls(addr: SocketAddr, want: usize, within: Duration) -> Result<usize> {
    let deadline = Instant::now() + within;
    let mut conn = RawConnection::connect(addr).await?;
    loop {
        let v = broker_stats(&mut conn, addr).await?;
        let waiting = v["server"]["waiting_polls"].as_u64().unwrap_or(0) as usize;
        if waiting >= want || Instant::now() > deadline {
            return Ok(waiting);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn idle_polls(h: &Harness, plan: &Plan, broker_bin: Option<&Path>, out: &mut String) -> Result<()> {
    let broker = BrokerProcess::start(broker_bin)?;
    let (pid, addr) = (broker.pid(), broker.addr);
    let result = (|| -> Result<(usize, usize, u64, u64, usize, Option<String>)> {
        let topic: TopicName = name("idle")?;
        let group: GroupId = name("GID_idle")?;
        h.load.block_on(async {
            register(addr, &topic, &group).await?;
            let before = rss(pid).ok_or("cannot read the broker's RSS from /proc")?;
            let polls = raw::open_idle_polls(
                addr,
                prepared_consume(addr, &topic, &group, 16, 30)?,
                plan.idle_polls,
            )
            .await;
            let waiting = wait_for_polls(addr, polls.opened, Duration::from_secs(20)).await?;
            // Let the allocator settle, then read.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = rss(pid).ok_or("cannot read the broker's RSS from /proc")?;
            let (opened, failed, first_error) =
                (polls.opened, polls.failed, polls.first_error.clone());
            polls.close().await;
            if failed > 0 {
                eprintln!(
                    "suite: {failed} of {} connections could not be opened: {}",
                    plan.idle_polls,
                    first_error.as_deref().unwrap_or("-")
                );
            }
            Ok((opened, waiting, before, after, failed, first_error))
        })
    })();
    let what = broker.what.clone();
    drop(broker);
    let (opened, waiting, before, after, failed, first_error) = result?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per_poll = after.saturating_sub(before) as f64 / waiting.max(1) as f64;
    let at_10k = before as f64 + per_poll * 10_000.0;
    eprintln!(
        "suite: {waiting} idle polls: RSS {:.1} → {:.1} MiB ({:.1} KiB each)",
        mib(before),
        mib(after),
        per_poll / 1024.0
    );
    writeln!(
        out,
        "### Memory of idle long polls (broker process: {what})\n"
    )
    .ok();
    writeln!(
        out,
        "| Polls waiting | RSS before, MiB | RSS with polls, MiB | Per poll, KiB | At 10,000 polls, MiB | Target ≤ 300 MB |"
    )
    .ok();
    writeln!(out, "|---:|---:|---:|---:|---:|---|").ok();
    writeln!(
        out,
        "| {waiting} | {:.1} | {:.1} | {:.1} | {:.1}{} | {} |\n",
        mib(before),
        mib(after),
        per_poll / 1024.0,
        at_10k / (1024.0 * 1024.0),
        if waiting >= 10_000 {
            ""
        } else {
            " (extrapolated)"
        },
        if at_10k <= 300e6 {
            "met"
        } else {
            "**not met**"
        }
    )
    .ok();
    if failed > 0 || waiting < opened {
        writeln!(
            out,
            "{opened} connections opened, {waiting} polls waiting, {failed} not opened ({}).\n",
            first_error.as_deref().unwrap_or("-")
        )
        .ok();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Client CPU per publish: the Rust SDK vs the official Python SDK

/// One client's measured publishes (after its warm-up) and the CPU time its process reported
/// for them.
struct CpuRow {
    publishes: u64,
    errors: u64,
    /// User + system CPU time of the client process over the measured publishes, seconds.
    cpu_secs: f64,
    wall_secs: f64,
}

impl CpuRow {
    fn us_per_publish(&self) -> f64 {
        self.cpu_secs * 1e6 / self.publishes.max(1) as f64
    }
}

/// Runs `cmd` to its end within `limit` (killed after it) and returns its stdout; fails with
/// its stderr when it fails.
fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {what}: {e}"))?;
    let deadline = Instant::now() + limit;
    while child
        .try_wait()
        .map_err(|e| format!("{what}: {e}"))?
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        ))
    }
}

/// A JSON number field of a client's report.
fn number(v: &serde_json::Value, field: &str, what: &str) -> Result<f64> {
    v[field]
        .as_f64()
        .ok_or_else(|| format!("{what} reported no {field}: {v}"))
}

/// The Rust SDK: `mq bench publish` as a child process (its own runtime, the `mq` client as
/// a user builds it), `n` in flight.
fn rust_cpu_row(addr: SocketAddr, plan: &Plan, n: usize) -> Result<CpuRow> {
    let what = format!("mq bench publish ({n} in flight)");
    let stdout = output_within(
        Command::new(env!("CARGO_BIN_EXE_mq"))
            .args(["bench", "publish", "--json", "--size"])
            .arg(SIZE.to_string())
            .arg("--concurrency")
            .arg(n.to_string())
            .arg("--count")
            .arg(plan.cpu_rust_publishes.to_string())
            .arg("--warmup")
            .arg(plan.cpu_warmup.to_string())
            .arg("--duration")
            .arg(format!("{}s", plan.cpu_row_limit.as_secs()))
            .arg("--topic")
            .arg(format!("cpu_rust_{n}"))
            .env("MQ_ENDPOINT", format!("http://{addr}"))
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("MQ_INSTANCE_ID")
            .env("MQ_LOG", "error"),
        plan.cpu_row_limit + Duration::from_secs(30),
        &what,
    )?;
    bench_json_row(&stdout, &what)
}

/// The row of a client that prints `mq bench --json`'s `messages`, `errors`, `cpu_secs` and
/// `duration_secs` (`mq bench` itself and [`raw_publish_child`]).
fn bench_json_row(stdout: &str, what: &str) -> Result<CpuRow> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| format!("{what}: {e}: {stdout}"))?;
    Ok(CpuRow {
        publishes: v["messages"].as_u64().unwrap_or(0),
        errors: v["errors"].as_u64().unwrap_or(0),
        cpu_secs: number(&v, "cpu_secs", what)?,
        wall_secs: number(&v, "duration_secs", what)?,
    })
}

/// The argument that makes the suite binary the raw transport's client process of section
/// 5: `RAW_CHILD ADDR IN_FLIGHT WARMUP COUNT TOPIC`.
const RAW_CHILD: &str = "--raw-publish-child";

/// Section 5's floor: the raw load generator (one pre-built, pre-signed request sent again
/// and again, none of the SDK's work) in a client process of its own, on a tokio runtime
/// with the default worker threads as `mq` has; prints `{"messages", "errors",
/// "cpu_secs", "duration_secs"}` over the measured publishes, as `mq bench --json` does.
fn raw_publish_child() -> Result<()> {
    let mut args = std::env::args().skip(2);
    let mut next = |what: &str| args.next().ok_or(format!("{RAW_CHILD}: missing {what}"));
    let addr: SocketAddr = next("address")?.parse().map_err(|e| format!("{e}"))?;
    let parse = |v: String| v.parse::<u64>().map_err(|e| format!("{RAW_CHILD}: {e}"));
    let in_flight = usize::try_from(parse(next("in flight")?)?).map_err(|e| e.to_string())?;
    let (warmup, count) = (parse(next("warm-up")?)?, parse(next("count")?)?);
    let topic: TopicName = name(&next("topic")?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let request = prepared_publish(addr, &topic)?;
    let load = |n| {
        raw::repeat_load(
            addr,
            request.clone(),
            StatusCode::CREATED,
            in_flight,
            Stop::Count(n),
        )
    };
    let warm = runtime.block_on(load(warmup))?;
    check(&warm, "raw publish warm-up")?;
    let cpu = || load::process_cpu_time().ok_or("no process CPU clock");
    let before = cpu()?;
    let r = runtime.block_on(load(count))?;
    let used = cpu()?.saturating_sub(before);
    println!(
        "{}",
        serde_json::json!({
            "messages": r.messages,
            "errors": r.errors,
            "cpu_secs": used.as_secs_f64(),
            "duration_secs": r.elapsed.as_secs_f64(),
        })
    );
    Ok(())
}

/// The raw transport's row: this binary as a child process ([`raw_publish_child`]).
fn raw_cpu_row(addr: SocketAddr, plan: &Plan, n: usize) -> Result<CpuRow> {
    let what = format!("raw transport ({n} in flight)");
    let exe = std::env::current_exe().map_err(|e| format!("{what}: {e}"))?;
    let stdout = output_within(
        Command::new(exe)
            .arg(RAW_CHILD)
            .arg(addr.to_string())
            .arg(n.to_string())
            .arg(plan.cpu_warmup.to_string())
            .arg(plan.cpu_rust_publishes.to_string())
            .arg(format!("cpu_raw_{n}")),
        plan.cpu_row_limit + Duration::from_secs(30),
        &what,
    )?;
    let row = bench_json_row(&stdout, &what)?;
    if row.errors > 0 || row.publishes < plan.cpu_rust_publishes {
        return Err(format!(
            "{what}: {} of {} publishes, {} errors",
            row.publishes, plan.cpu_rust_publishes, row.errors
        ));
    }
    Ok(row)
}

/// The official Python SDK: `python_publish.py` with `n` threads, each with its own client
/// and producer. Returns the row and the SDK's version.
fn python_cpu_row(
    python: &Path,
    addr: SocketAddr,
    plan: &Plan,
    n: usize,
) -> Result<(CpuRow, String)> {
    let what = format!("the Python SDK ({n} threads)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_publish.py");
    let stdout = output_within(
        Command::new(python)
            .arg("-B")
            .arg(&script)
            .arg(n.to_string())
            .arg(plan.cpu_python_publishes.to_string())
            .arg(plan.cpu_warmup.to_string())
            .arg(SIZE.to_string())
            .arg(plan.cpu_row_limit.as_secs().to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("MQ_ENDPOINT", format!("http://{addr}"))
            .env("MQ_AK", AK)
            .env("MQ_SK", SK)
            .env("MQ_TOPIC", format!("cpu_python_{n}")),
        plan.cpu_row_limit + Duration::from_secs(30),
        &what,
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| format!("{what}: {e}: {stdout}"))?;
    let row = CpuRow {
        publishes: v["published"].as_u64().unwrap_or(0),
        errors: v["errors"].as_u64().unwrap_or(0),
        cpu_secs: number(&v, "cpu_secs", &what)?,
        wall_secs: number(&v, "wall_secs", &what)?,
    };
    Ok((row, v["sdk_version"].as_str().unwrap_or("?").to_owned()))
}

/// Checks a row against the broker: all `want` publishes succeeded, and the broker counted
/// exactly the warm-up and the measured publishes on the row's topic (with no failed
/// publish, whose outcome the client cannot know).
fn check_cpu_row(
    h: &Harness,
    addr: SocketAddr,
    topic: &str,
    row: &CpuRow,
    want: u64,
    warmup: u64,
    what: &str,
) -> Result<()> {
    if row.publishes != want {
        return Err(format!(
            "{what}: {} of {want} publishes succeeded",
            row.publishes
        ));
    }
    let stats = h.load.block_on(async {
        let mut conn = RawConnection::connect(addr).await?;
        broker_stats(&mut conn, addr).await
    })?;
    let counted = stats["topics"]
        .as_array()
        .and_then(|topics| topics.iter().find(|t| t["topic"] == topic))
        .and_then(|t| t["published"].as_u64())
        .unwrap_or(0);
    if row.errors > 0 {
        eprintln!(
            "suite: {what}: {} failed publishes (made again); the broker counted {counted} on {topic}",
            row.errors
        );
    } else if counted != want + warmup {
        return Err(format!(
            "{what}: the broker counted {counted} publishes on {topic}, the client {want} after a warm-up of {warmup}"
        ));
    }
    Ok(())
}

/// The Python SDK's interpreter (`MQ_INTEROP_PYTHON`, checked as the interop tests check
/// it), or why there is none.
fn python_sdk() -> std::result::Result<PathBuf, String> {
    match std::env::var_os("MQ_INTEROP_PYTHON") {
        Some(p) if !p.is_empty() => python::interop_python()
            .ok_or_else(|| "MQ_INTEROP_PYTHON names no usable interpreter".to_owned()),
        _ => Err(
            "MQ_INTEROP_PYTHON is not set (`cargo xtask interop-env` creates the \
                  virtualenv with the official SDK; `cargo xtask bench` sets it)"
                .into(),
        ),
    }
}

fn client_cpu(h: &Harness, plan: &Plan, broker_bin: Option<&Path>, out: &mut String) -> Result<()> {
    let python = python_sdk();
    if let Err(why) = &python {
        if plan.require_python {
            return Err(format!(
                "client-cpu: the official Python SDK is required in a full run: {why}"
            ));
        }
        eprintln!("suite: client-cpu: the Python SDK is NOT measured: {why}");
    }
    let broker = BrokerProcess::start(broker_bin)?;
    let addr = broker.addr;
    let in_flight = [1usize, 16];
    let mut rows = Vec::new();
    let mut sdk_version = None;
    for n in in_flight {
        let what = format!("mq client, {n} in flight");
        let rust = rust_cpu_row(addr, plan, n)?;
        check_cpu_row(
            h,
            addr,
            &format!("cpu_rust_{n}"),
            &rust,
            plan.cpu_rust_publishes,
            plan.cpu_warmup,
            &what,
        )?;
        eprintln!(
            "suite: client CPU, {what}: {:.1} µs per publish",
            rust.us_per_publish()
        );
        let raw = raw_cpu_row(addr, plan, n)?;
        eprintln!(
            "suite: client CPU, raw transport, {n} in flight: {:.1} µs per publish",
            raw.us_per_publish()
        );
        let py = match &python {
            Ok(python) => {
                let what = format!("Python SDK, {n} thread{}", if n == 1 { "" } else { "s" });
                let (row, version) = python_cpu_row(python, addr, plan, n)?;
                check_cpu_row(
                    h,
                    addr,
                    &format!("cpu_python_{n}"),
                    &row,
                    plan.cpu_python_publishes,
                    plan.cpu_warmup,
                    &what,
                )?;
                eprintln!(
                    "suite: client CPU, {what}: {:.1} µs per publish",
                    row.us_per_publish()
                );
                sdk_version = Some(version);
                Some(row)
            }
            Err(_) => None,
        };
        rows.push((n, rust, raw, py));
    }
    let what = broker.what.clone();
    drop(broker);

    writeln!(
        out,
        "Mode `{}`; broker: {what}, one process for every row; {SIZE}-byte bodies; per row {} publishes of warm-up (not measured), then {} (`mq`) or {} (Python SDK) measured.\n",
        plan.name, plan.cpu_warmup, plan.cpu_rust_publishes, plan.cpu_python_publishes
    )
    .ok();
    writeln!(
        out,
        "### Client CPU per publish: `mq` client (Rust SDK) vs the official Python SDK{}\n",
        sdk_version
            .as_deref()
            .map(|v| format!(" (mq-http-sdk {v})"))
            .unwrap_or_default()
    )
    .ok();
    writeln!(
        out,
        "| In flight | `mq` client, CPU µs per publish | Python SDK, CPU µs per publish | Rust / Python | Target ≤ 1/40 at 16 in flight | Raw transport, CPU µs per publish | Raw / Python |"
    )
    .ok();
    writeln!(out, "|---:|---:|---:|---:|---|---:|---:|").ok();
    for (n, rust, raw, py) in &rows {
        let ours = rust.us_per_publish();
        let floor = raw.us_per_publish();
        let floor_ratio = py.as_ref().map_or_else(
            || "—".to_owned(),
            |py| format!("1/{:.1}", py.us_per_publish() / floor),
        );
        let (theirs, ratio, verdict) = match py {
            Some(py) => {
                let theirs = py.us_per_publish();
                let ratio = ours / theirs;
                (
                    format!("{theirs:.1}"),
                    format!("1/{:.1}", 1.0 / ratio),
                    if *n != 16 {
                        "—"
                    } else if ratio <= 1.0 / 40.0 {
                        "met"
                    } else {
                        "**not met**"
                    },
                )
            }
            None => (
                "not measured".into(),
                "—".into(),
                if *n == 16 { "not measured" } else { "—" },
            ),
        };
        writeln!(
            out,
            "| {n} | {ours:.1} | {theirs} | {ratio} | {verdict} | {floor:.1} | {floor_ratio} |"
        )
        .ok();
    }
    writeln!(
        out,
        "\n| Client | In flight | Publishes measured | Failed (made again) | CPU s | Wall s | Publishes/s |"
    )
    .ok();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|").ok();
    for (n, rust, raw, py) in &rows {
        let mut line = |client: String, r: &CpuRow| {
            writeln!(
                out,
                "| {client} | {n} | {} | {} | {:.3} | {:.2} | {:.0} |",
                r.publishes,
                r.errors,
                r.cpu_secs,
                r.wall_secs,
                r.publishes as f64 / r.wall_secs.max(1e-9)
            )
            .ok();
        };
        line(format!("`mq bench publish --concurrency {n}`"), rust);
        line(
            "raw transport (pre-built, pre-signed requests; the suite as a child)".into(),
            raw,
        );
        if let Some(py) = py {
            line(
                format!("Python SDK, {n} thread{}", if *n == 1 { "" } else { "s" }),
                py,
            );
        }
    }
    if let Err(why) = &python {
        writeln!(
            out,
            "\nThe official Python SDK was not measured in this run: {why}."
        )
        .ok();
    }
    writeln!(out).ok();
    Ok(())
}

fn main() -> std::process::ExitCode {
    let outcome = if std::env::args().nth(1).as_deref() == Some(RAW_CHILD) {
        raw_publish_child()
    } else {
        run()
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suite: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let plan = &args.plan;
    eprintln!("suite: {} run", plan.name);
    let h = Harness {
        server: runtime(2, "server")?,
        load: runtime(2, "load")?,
    };
    let started = Instant::now();
    let mut out = String::new();
    writeln!(
        out,
        "Mode `{}`: rounds of {:?} per side, {} interleaved round(s), medians.\n",
        plan.name, plan.round, plan.rounds
    )
    .ok();
    if args.runs("client") {
        client_vs_raw(&h, plan, &mut out)?;
    }
    if args.runs("broker") {
        broker_vs_bare(&h, plan, &mut out)?;
        many_topics(&h, plan, &mut out)?;
    }
    if args.runs("latency") {
        delivery_latency(&h, plan, &mut out)?;
    }
    if args.runs("memory") {
        idle_polls(&h, plan, args.broker_bin.as_deref(), &mut out)?;
    }
    let mut tables = Vec::new();
    if SUITE_SECTIONS.iter().any(|s| args.runs(s)) {
        tables.push(("suite.md", out));
    }
    if args.runs("client-cpu") {
        let mut out = String::new();
        client_cpu(&h, plan, args.broker_bin.as_deref(), &mut out)?;
        tables.push(("client-cpu.md", out));
    }
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("creating {}: {e}", args.out_dir.display()))?;
    for (file, text) in &tables {
        let path = args.out_dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("{text}");
    }
    eprintln!(
        "suite: done in {:.1} s; tables written to {} ({})",
        started.elapsed().as_secs_f64(),
        args.out_dir.display(),
        tables
            .iter()
            .map(|(file, _)| *file)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
