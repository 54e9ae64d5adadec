//! The system benchmark suite: the SDK client and the broker, each measured side by side
//! with its limit in the same run, so that every figure is a ratio.
//!
//! 1. Client vs raw transport: `mq` client publishes vs a raw hyper client sending pre-built,
//!    pre-signed requests, to the same (fresh, in-process) broker, 1/16/64 in flight.
//! 2. Broker vs bare server: the raw load generator against the broker and against a bare
//!    hyper server answering canned responses: publish, and consume + ack.
//! 3. Publish → delivery latency with a waiting long poll.
//! 4. Memory of idle long polls: the `mq-broker` binary as a child process, RSS from /proc.
//!
//! Modes: `cargo bench -p mq-cli --bench suite` (full, release), `… -- --quick` (tiny sizes),
//! and under `cargo test` a smoke run (tiny sizes). Each mode writes its Markdown tables to
//! `$MQ_BENCH_OUT/suite.md` (default `target/bench`), spliced into BENCHMARKS.md by
//! `cargo xtask bench`. Options: `--broker-bin PATH` (default: `mq-broker` next to `mq`),
//! `--only client|broker|latency|memory` (repeatable; for profiling one section).

use bytes::Bytes;
use http::StatusCode;
use indicatif::ProgressBar;
use mq_broker::{Broker, Credential, ServerConfig};
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
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const AK: &str = "bench-ak";
const SK: &str = "bench-sk";
const SIZE: usize = 1024;

type Result<T, E = String> = std::result::Result<T, E>;

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
}

impl Plan {
    fn full() -> Self {
        Self {
            name: "full",
            round: Duration::from_secs(2),
            rounds: 3,
            in_flight: vec![1, 16, 64],
            broker_in_flight: vec![16, 64],
            consume_in_flight: 16,
            prefill: 120_000,
            latency_samples: 2_000,
            idle_polls: 10_000,
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
        }
    }
}

struct Args {
    plan: Plan,
    broker_bin: Option<PathBuf>,
    out_dir: PathBuf,
    /// Sections to run (`client`, `broker`, `latency`, `memory`); empty = all.
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
            "--only" => only.push(args.next().ok_or("--only needs a section")?),
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
        self.server
            .block_on(Broker::start(ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                credentials: vec![Credential::new(AK, SK)],
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

fn broker_vs_bare(h: &Harness, plan: &Plan, out: &mut String) -> Result<()> {
    let canned = canned()?;
    writeln!(
        out,
        "### Broker vs bare hyper server (same raw load generator, {SIZE}-byte bodies)\n"
    )
    .ok();
    writeln!(
        out,
        "| Workload | In flight | Bare server, req/s | Broker, req/s | Broker / bare | Broker msg/s | Broker p50 ms | Broker p99 ms | Target ≥ 70% |"
    )
    .ok();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|").ok();
    for &n in &plan.broker_in_flight {
        let (mut bare_rates, mut broker_rates) = (Vec::new(), Vec::new());
        let mut lat = Latency::default();
        for round in 0..plan.rounds {
            let topic: TopicName = name(&format!("bare{n}r{round}"))?;
            let bare = h
                .server
                .block_on(BareServer::start(canned.clone()))
                .map_err(|e| format!("bare server: {e}"))?;
            let addr = bare.addr();
            let r = h.load.block_on(raw::repeat_load(
                addr,
                prepared_publish(addr, &topic)?,
                StatusCode::CREATED,
                n,
                Stop::After(plan.round),
            ));
            h.server.block_on(bare.shutdown());
            let r = r?;
            check(&r, "bare publish")?;
            bare_rates.push(r.requests_per_sec());

            let broker = h.start_broker()?;
            let addr = broker.local_addr();
            let r = h.load.block_on(raw::repeat_load(
                addr,
                prepared_publish(addr, &topic)?,
                StatusCode::CREATED,
                n,
                Stop::After(plan.round),
            ));
            h.stop_broker(broker);
            let r = r?;
            check(&r, "broker publish")?;
            broker_rates.push(r.requests_per_sec());
            lat = Latency::from_histogram(&r.latency);
        }
        let (bare, broker) = (median(bare_rates), median(broker_rates));
        eprintln!("suite: broker publish {n} in flight: bare {bare:.0}/s, broker {broker:.0}/s");
        writeln!(
            out,
            "| publish | {n} | {bare:.0} | {broker:.0} | {} | {broker:.0} | {} | {} | {} |",
            pct(broker, bare),
            ms(lat.p50_us),
            ms(lat.p99_us),
            verdict(broker, bare, 0.7)
        )
        .ok();
    }

    // Consume (16 per request) + ack of the 16 handles, from a prefilled backlog.
    let n = plan.consume_in_flight;
    let (mut bare_rates, mut broker_rates, mut broker_msgs) = (Vec::new(), Vec::new(), Vec::new());
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
        let bare = h
            .server
            .block_on(BareServer::start(canned.clone()))
            .map_err(|e| format!("bare server: {e}"))?;
        let addr = bare.addr();
        let r = h.load.block_on(consume_ack_load(
            addr,
            prepared_consume(addr, &topic, &group, 16, 0)?,
            signer(addr)?,
            n,
            plan.round,
        ));
        h.server.block_on(bare.shutdown());
        let (r, _) = r?;
        check(&r, "bare consume+ack")?;
        bare_rates.push(r.requests_per_sec());

        let broker = h.start_broker()?;
        let addr = broker.local_addr();
        let result = h.load.block_on(async {
            register(addr, &topic, &group).await?;
            let fill = raw::repeat_load(
                addr,
                prepared_publish(addr, &topic)?,
                StatusCode::CREATED,
                64,
                Stop::Count(plan.prefill),
            )
            .await?;
            check(&fill, "prefill")?;
            consume_ack_load(
                addr,
                prepared_consume(addr, &topic, &group, 16, 0)?,
                signer(addr)?,
                n,
                plan.round,
            )
            .await
        });
        h.stop_broker(broker);
        let (r, drained) = result?;
        check(&r, "broker consume+ack")?;
        drained_early |= drained;
        broker_rates.push(r.requests_per_sec());
        broker_msgs.push(r.messages_per_sec());
        lat = Latency::from_histogram(&r.latency);
    }
    let (bare, broker, msgs) = (
        median(bare_rates),
        median(broker_rates),
        median(broker_msgs),
    );
    eprintln!("suite: consume+ack: bare {bare:.0} req/s, broker {broker:.0} req/s");
    writeln!(
        out,
        "| consume 16 + ack 16 | {n} | {bare:.0} | {broker:.0} | {} | {msgs:.0} | {} | {} | {} |",
        pct(broker, bare),
        ms(lat.p50_us),
        ms(lat.p99_us),
        verdict(broker, bare, 0.7)
    )
    .ok();
    writeln!(
        out,
        "\nLatency of consume + ack is one receive and its ack (a cycle); req/s counts both.{}\n",
        if drained_early {
            " The broker's backlog ran out before the end of a round; its rate is over the time it lasted."
        } else {
            ""
        }
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

/// Waits until the broker reports `want` waiting long polls (`GET /stats`).
async fn wait_for_polls(addr: SocketAddr, want: usize, within: Duration) -> Result<usize> {
    let deadline = Instant::now() + within;
    let mut conn = RawConnection::connect(addr).await?;
    loop {
        let req = http::Request::get("/stats")
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (_, body) = conn.send(req).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("/stats: {e}"))?;
        let waiting = v["server"]["waiting_polls"].as_u64().unwrap_or(0) as usize;
        if waiting >= want || Instant::now() > deadline {
            return Ok(waiting);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn idle_polls(h: &Harness, plan: &Plan, broker_bin: Option<&Path>, out: &mut String) -> Result<()> {
    let (mut cmd, what) = broker_command(broker_bin);
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
    let pid = child.id();
    let result = (|| -> Result<(usize, usize, u64, u64, usize, Option<String>)> {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .map_err(|e| format!("reading {what}: {e}"))?;
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("listening on http://")
            .ok_or_else(|| format!("{what} said {first:?}"))?
            .parse()
            .map_err(|e| format!("{what} address: {e}"))?;
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
    let _ = child.kill();
    let _ = child.wait();
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

fn main() -> std::process::ExitCode {
    match run() {
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
    }
    if args.runs("latency") {
        delivery_latency(&h, plan, &mut out)?;
    }
    if args.runs("memory") {
        idle_polls(&h, plan, args.broker_bin.as_deref(), &mut out)?;
    }
    let path = args.out_dir.join("suite.md");
    std::fs::create_dir_all(&args.out_dir)
        .and_then(|()| std::fs::write(&path, &out))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("{out}");
    eprintln!(
        "suite: done in {:.1} s; tables written to {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}
