//! Load generators: the SDK client workloads of `mq bench` ([`run`]), and for the benchmark
//! suite a raw HTTP load generator with pre-signed requests ([`raw`]) and a bare server that
//! answers canned responses ([`bare`]).
//!
//! Latencies go into HDR histograms (nanoseconds, 3 significant digits), one per worker,
//! merged at the end; [`Latency`] reports p50, p99 and p99.9. The process's CPU time (user +
//! system, all threads: [`process_cpu_time`]) over the measured part is reported too, as a
//! user of the SDK would measure it: [`BenchReport::cpu_us_per_message`].
//!
//! ```no_run
//! # async fn demo(client: mq_tokio::Client) -> Result<(), String> {
//! use mq_cli::bench::{self, BenchConfig, Workload};
//! use std::time::Duration;
//! let config = BenchConfig::new(Workload::Publish, "T".parse().unwrap(), "GID".parse().unwrap())
//!     .concurrency(16)
//!     .size(1024)
//!     .duration(Duration::from_secs(5));
//! let report = bench::run(&client, &config, &indicatif::ProgressBar::hidden()).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

pub mod bare;
pub mod raw;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mq_tokio::{BatchSize, Client, GroupId, Message, TopicMessage, TopicName, WaitSeconds};
use serde::Serialize;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What `mq bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Publish requests; latency = one publish request.
    Publish,
    /// Receive + ack of a prefilled backlog; latency = one receive and its ack.
    Consume,
    /// Publishers and long-polling consumers at once; latency = publish start to delivery.
    Roundtrip,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Publish => "publish",
            Self::Consume => "consume",
            Self::Roundtrip => "roundtrip",
        })
    }
}

/// The most requests in flight a benchmark runs: each is a task with its own latency
/// histogram and, at best, its own connection (a million took 17 GB).
pub const MAX_CONCURRENCY: usize = 4096;

/// Settings of a client benchmark.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// What to measure.
    pub workload: Workload,
    /// Requests in flight (tasks; roundtrip runs this many publishers and as many consumers).
    pub concurrency: usize,
    /// Body size in bytes.
    pub size: usize,
    /// Measuring time.
    pub duration: Duration,
    /// Messages per consume request.
    pub batch: BatchSize,
    /// `consume`: messages published before measuring.
    pub prefill: u64,
    /// `publish`: stop after this many successful publishes (or at [`duration`](Self::duration),
    /// whichever comes first); `None`: publish until the duration is up.
    pub count: Option<u64>,
    /// `publish`: messages published before measuring (same concurrency; not counted, not
    /// timed, their CPU time excluded): connections opened, caches and allocator warm.
    pub warmup: u64,
    /// Topic.
    pub topic: TopicName,
    /// Group (consume and roundtrip).
    pub group: GroupId,
}

impl BenchConfig {
    /// Defaults: 16 in flight, 1 KiB bodies, 10 s, batches of 16, 20,000 prefilled messages,
    /// no publish count, no warm-up.
    pub fn new(workload: Workload, topic: TopicName, group: GroupId) -> Self {
        Self {
            workload,
            concurrency: 16,
            size: 1024,
            duration: Duration::from_secs(10),
            batch: BatchSize::MAX,
            prefill: 20_000,
            count: None,
            warmup: 0,
            topic,
            group,
        }
    }

    /// `publish`: stops after `n` successful publishes (the duration stays the time limit).
    #[must_use]
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// `publish`: publishes `n` messages before measuring.
    #[must_use]
    pub fn warmup(mut self, n: u64) -> Self {
        self.warmup = n;
        self
    }

    /// Sets the concurrency.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the body size.
    #[must_use]
    pub fn size(mut self, bytes: usize) -> Self {
        self.size = bytes;
        self
    }

    /// Sets the measuring time.
    #[must_use]
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// Sets the number of prefilled messages (`consume`).
    #[must_use]
    pub fn prefill(mut self, n: u64) -> Self {
        self.prefill = n;
        self
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub samples: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl Latency {
    /// Summarises a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1_000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            samples: h.len(),
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// A histogram of nanoseconds (auto-resizing, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    match Histogram::new(3) {
        Ok(h) => h,
        // `new` only rejects more than 5 significant digits.
        Err(e) => unreachable!("3 significant digits are always valid: {e:?}"),
    }
}

/// Records a duration in nanoseconds (saturating).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    // The histogram grows as needed; only values beyond its largest possible range clamp.
    if h.record(ns).is_err() {
        h.saturating_record(ns);
    }
}

/// Merges per-worker histograms.
///
/// # Errors
///
/// hdrhistogram's refusal to add one histogram to another, as text.
pub fn merge(parts: impl IntoIterator<Item = Histogram<u64>>) -> Result<Histogram<u64>, String> {
    let mut all = histogram();
    for h in parts {
        all.add(&h)
            .map_err(|e| format!("merging histograms: {e:?}"))?;
    }
    Ok(all)
}

/// The outcome of a client benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// What was measured.
    pub workload: Workload,
    /// Requests in flight.
    pub concurrency: usize,
    /// Body size in bytes.
    pub size: usize,
    /// Measured wall-clock time, seconds.
    pub duration_secs: f64,
    /// Requests that succeeded (a consume cycle counts its receive and its ack).
    pub requests: u64,
    /// Messages published (publish), consumed and acked (consume) or delivered (roundtrip).
    pub messages: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second.
    pub requests_per_sec: f64,
    /// Messages per second.
    pub messages_per_sec: f64,
    /// Body bytes per second, MiB.
    pub mib_per_sec: f64,
    /// What one latency sample is.
    pub latency_of: &'static str,
    /// Latency percentiles.
    pub latency: Latency,
    /// `consume`: the backlog ran out before the time was up.
    pub drained: bool,
    /// CPU time of this process over the measured part, seconds: user + system, all threads
    /// (`CLOCK_PROCESS_CPUTIME_ID`, [`process_cpu_time`]); `None` where the platform has no
    /// such clock. On a remote endpoint that is the client's alone.
    pub cpu_secs: Option<f64>,
    /// [`cpu_secs`](Self::cpu_secs) per message, microseconds.
    pub cpu_us_per_message: Option<f64>,
    /// The first error, if any.
    pub first_error: Option<String>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: f64| us / 1_000.0;
        writeln!(
            f,
            "{}: {} in flight, {}-byte bodies, {:.1} s{}",
            self.workload,
            self.concurrency,
            self.size,
            self.duration_secs,
            if self.drained {
                " (backlog drained early)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  messages  {:>10}  {:>10.1}/s  {:.2} MiB/s",
            self.messages, self.messages_per_sec, self.mib_per_sec
        )?;
        writeln!(
            f,
            "  requests  {:>10}  {:>10.1}/s  errors {}",
            self.requests, self.requests_per_sec, self.errors
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency   p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  ({}, {} samples)",
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            self.latency_of,
            l.samples
        )?;
        if let (Some(cpu), Some(per)) = (self.cpu_secs, self.cpu_us_per_message) {
            writeln!(
                f,
                "  cpu       {cpu:.3} s (user + system, this process)  {per:.1} µs per message"
            )?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

/// A progress bar over `duration` on stderr; hidden when stderr is not a terminal or `quiet`.
pub fn progress_bar(duration: Duration, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(
            u64::try_from(duration.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {elapsed:>4} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// A name suffix unlikely to repeat (process id and time).
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// CPU time this process has used so far: user + system, all its threads
/// (`CLOCK_PROCESS_CPUTIME_ID`, nanosecond resolution; the clock Python's
/// `time.process_time()` reads on Linux). `None` on platforms without it.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Some(Duration::new(
            u64::try_from(t.tv_sec).ok()?,
            u32::try_from(t.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    )))]
    {
        None
    }
}

/// Counters shared by the workers.
#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    drained: AtomicBool,
}

impl Shared {
    fn error(&self, e: &dyn fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

/// Pause after a failed request, so that a dead endpoint does not turn into a busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Runs one client benchmark and reports throughput and latency.
///
/// # Errors
///
/// When nothing succeeded (the first error, as text), or on invalid settings.
pub async fn run(
    client: &Client,
    config: &BenchConfig,
    progress: &ProgressBar,
) -> Result<BenchReport, String> {
    if !(1..=MAX_CONCURRENCY).contains(&config.concurrency) {
        return Err(format!(
            "concurrency must be between 1 and {MAX_CONCURRENCY}"
        ));
    }
    if config.workload != Workload::Publish && (config.count.is_some() || config.warmup > 0) {
        return Err(format!(
            "a publish count and a warm-up apply to the publish workload, not {}",
            config.workload
        ));
    }
    let shared = Arc::new(Shared::default());
    let cpu_before;
    let (started, hist) = match config.workload {
        Workload::Publish => {
            if config.warmup > 0 {
                publish_n(client, config, config.warmup, progress, "warming up").await?;
            }
            cpu_before = process_cpu_time();
            let started = Instant::now();
            let ticker = spawn_ticker(progress, &shared, started, "published");
            let hists = publish_workers(client, config, &shared, started + config.duration).await;
            ticker.abort();
            (started, hists)
        }
        Workload::Consume => {
            register(client, config).await?;
            publish_n(client, config, config.prefill, progress, "prefilling").await?;
            cpu_before = process_cpu_time();
            let started = Instant::now();
            let ticker = spawn_ticker(progress, &shared, started, "consumed");
            let hists = consume_workers(client, config, &shared, started + config.duration).await;
            ticker.abort();
            (started, hists)
        }
        Workload::Roundtrip => {
            register(client, config).await?;
            cpu_before = process_cpu_time();
            let started = Instant::now();
            let ticker = spawn_ticker(progress, &shared, started, "delivered");
            let hists = roundtrip(client, config, &shared, started).await;
            ticker.abort();
            (started, hists)
        }
    };
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let cpu_secs = cpu_before
        .zip(process_cpu_time())
        .map(|(before, after)| after.saturating_sub(before).as_secs_f64());
    let hist = merge(hist)?;
    let requests = shared.requests.load(Ordering::Relaxed);
    let messages = shared.messages.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if messages == 0 && errors > 0 {
        return Err(format!(
            "{} benchmark failed: {}",
            config.workload,
            first_error.unwrap_or_default()
        ));
    }
    Ok(BenchReport {
        workload: config.workload,
        concurrency: config.concurrency,
        size: config.size,
        duration_secs: elapsed,
        requests,
        messages,
        errors,
        requests_per_sec: requests as f64 / elapsed,
        messages_per_sec: messages as f64 / elapsed,
        mib_per_sec: (messages as f64 * config.size as f64) / elapsed / (1024.0 * 1024.0),
        latency_of: match config.workload {
            Workload::Publish => "publish request",
            Workload::Consume => "receive + ack",
            Workload::Roundtrip => "publish start to delivery",
        },
        latency: Latency::from_histogram(&hist),
        drained: shared.drained.load(Ordering::Relaxed),
        cpu_secs,
        cpu_us_per_message: cpu_secs
            .filter(|_| messages > 0)
            .map(|cpu| cpu * 1e6 / messages as f64),
        first_error,
    })
}

fn spawn_ticker(
    progress: &ProgressBar,
    shared: &Arc<Shared>,
    started: Instant,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    let (progress, shared) = (progress.clone(), shared.clone());
    tokio::spawn(async move {
        loop {
            let elapsed = started.elapsed();
            let n = shared.messages.load(Ordering::Relaxed);
            progress.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            progress.set_message(format!(
                "{n} {what} ({:.0}/s), {} errors",
                n as f64 / elapsed.as_secs_f64().max(1e-3),
                shared.errors.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A body of exactly `size` bytes (at least 1).
fn body_of(size: usize) -> String {
    "x".repeat(size.max(1))
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Histogram<u64>>>) -> Vec<Histogram<u64>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(h) = t.await {
            out.push(h);
        }
    }
    out
}

async fn publish_workers(
    client: &Client,
    config: &BenchConfig,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Vec<Histogram<u64>> {
    let message = match TopicMessage::new(body_of(config.size)) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            shared.error(&e);
            return Vec::new();
        }
    };
    let producer = client.producer(config.topic.clone());
    let quota = Arc::new(Quota::new(config.count));
    let tasks = (0..config.concurrency)
        .map(|_| {
            let (producer, message, shared, quota) = (
                producer.clone(),
                message.clone(),
                shared.clone(),
                quota.clone(),
            );
            tokio::spawn(async move {
                let mut h = histogram();
                while Instant::now() < deadline && quota.take() {
                    let t = Instant::now();
                    match producer.publish(&message).await {
                        Ok(_) => {
                            record(&mut h, t.elapsed());
                            shared.requests.fetch_add(1, Ordering::Relaxed);
                            shared.messages.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // Only successful publishes count towards the quota.
                            quota.give_back();
                            shared.error(&e);
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                h
            })
        })
        .collect();
    join_all(tasks).await
}

/// The publishes left to make, shared by the workers; unlimited without a count.
struct Quota(Option<AtomicU64>);

impl Quota {
    fn new(count: Option<u64>) -> Self {
        Self(count.map(AtomicU64::new))
    }

    /// Takes one publish from the quota; `false` when none is left.
    fn take(&self) -> bool {
        self.0.as_ref().is_none_or(|left| {
            left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }

    /// Returns a publish that failed.
    fn give_back(&self) {
        if let Some(left) = &self.0 {
            left.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the quota (nothing more is taken).
    fn close(&self) {
        if let Some(left) = &self.0 {
            left.store(0, Ordering::Relaxed);
        }
    }
}

/// Makes the group known to the broker (a group sees messages published after its first
/// consume).
async fn register(client: &Client, config: &BenchConfig) -> Result<(), String> {
    let consumer = client.consumer(config.topic.clone(), config.group.clone());
    consumer
        .receive(BatchSize::MIN, WaitSeconds::MIN)
        .await
        .map(drop)
        .map_err(|e| format!("registering group {}: {e}", config.group))
}

/// Publishes `n` messages of the configured size at the configured concurrency, before
/// measuring (`what`: "prefilling", "warming up"); the first failure ends it with an error.
async fn publish_n(
    client: &Client,
    config: &BenchConfig,
    n: u64,
    progress: &ProgressBar,
    what: &str,
) -> Result<(), String> {
    progress.set_message(format!("{what}: {n} messages"));
    let message = Arc::new(TopicMessage::new(body_of(config.size)).map_err(|e| e.to_string())?);
    let producer = client.producer(config.topic.clone());
    let quota = Arc::new(Quota::new(Some(n)));
    let failure = Arc::new(Mutex::new(None::<String>));
    let tasks: Vec<_> = (0..config.concurrency)
        .map(|_| {
            let (producer, message, quota, failure) = (
                producer.clone(),
                message.clone(),
                quota.clone(),
                failure.clone(),
            );
            let what = what.to_owned();
            tokio::spawn(async move {
                while quota.take() {
                    if let Err(e) = producer.publish(&message).await {
                        *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(format!("{what} failed: {e}"));
                        quota.close();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    match failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn consume_workers(
    client: &Client,
    config: &BenchConfig,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Vec<Histogram<u64>> {
    let consumer = client.consumer(config.topic.clone(), config.group.clone());
    let batch = config.batch;
    let tasks = (0..config.concurrency)
        .map(|_| {
            let (consumer, shared) = (consumer.clone(), shared.clone());
            tokio::spawn(async move {
                let mut h = histogram();
                while Instant::now() < deadline && !shared.drained.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let messages = match consumer.receive(batch, WaitSeconds::MIN).await {
                        Ok(m) => m,
                        Err(e) => {
                            shared.error(&e);
                            tokio::time::sleep(ERROR_PAUSE).await;
                            continue;
                        }
                    };
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    if messages.is_empty() {
                        shared.drained.store(true, Ordering::Relaxed);
                        break;
                    }
                    let handles: Vec<_> =
                        messages.iter().map(|m| m.receipt_handle.clone()).collect();
                    match consumer.ack(&handles).await {
                        Ok(()) => {
                            record(&mut h, t.elapsed());
                            shared.requests.fetch_add(1, Ordering::Relaxed);
                            shared
                                .messages
                                .fetch_add(messages.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => shared.error(&e),
                    }
                }
                h
            })
        })
        .collect();
    join_all(tasks).await
}

/// Width of the send-time stamp at the start of every roundtrip body.
const STAMP_LEN: usize = 20;

fn stamped_body(started: Instant, size: usize) -> String {
    let nanos = started.elapsed().as_nanos();
    let mut body = format!("{nanos:0STAMP_LEN$}");
    if body.len() < size {
        body.extend(std::iter::repeat_n('x', size - body.len()));
    }
    body
}

fn sent_at(started: Instant, m: &Message) -> Option<Instant> {
    let stamp = m.body.get(..STAMP_LEN)?.parse::<u64>().ok()?;
    started.checked_add(Duration::from_nanos(stamp))
}

/// How long consumers keep going after the publishers stopped, to collect what is in flight.
const ROUNDTRIP_GRACE: Duration = Duration::from_secs(5);

async fn roundtrip(
    client: &Client,
    config: &BenchConfig,
    shared: &Arc<Shared>,
    started: Instant,
) -> Vec<Histogram<u64>> {
    let deadline = started + config.duration;
    let published = Arc::new(AtomicU64::new(0));
    let publishing = Arc::new(AtomicBool::new(true));
    let producer = client.producer(config.topic.clone());
    let consumer = client.consumer(config.topic.clone(), config.group.clone());
    let wait = WaitSeconds::new(1).unwrap_or(WaitSeconds::MIN);
    let consumers: Vec<_> = (0..config.concurrency)
        .map(|_| {
            let (consumer, shared, published, publishing) = (
                consumer.clone(),
                shared.clone(),
                published.clone(),
                publishing.clone(),
            );
            let batch = config.batch;
            tokio::spawn(async move {
                let mut h = histogram();
                loop {
                    let done = !publishing.load(Ordering::Acquire)
                        && shared.messages.load(Ordering::Relaxed)
                            >= published.load(Ordering::Relaxed);
                    if done || Instant::now() > deadline + ROUNDTRIP_GRACE {
                        break;
                    }
                    let messages = match consumer.receive(batch, wait).await {
                        Ok(m) => m,
                        Err(e) => {
                            shared.error(&e);
                            tokio::time::sleep(ERROR_PAUSE).await;
                            continue;
                        }
                    };
                    let now = Instant::now();
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    if messages.is_empty() {
                        continue;
                    }
                    for m in &messages {
                        if let Some(sent) = sent_at(started, m) {
                            record(&mut h, now.saturating_duration_since(sent));
                        }
                    }
                    shared
                        .messages
                        .fetch_add(messages.len() as u64, Ordering::Relaxed);
                    let handles: Vec<_> =
                        messages.iter().map(|m| m.receipt_handle.clone()).collect();
                    match consumer.ack(&handles).await {
                        Ok(()) => {
                            shared.requests.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => shared.error(&e),
                    }
                }
                h
            })
        })
        .collect();
    let publishers: Vec<_> = (0..config.concurrency)
        .map(|_| {
            let (producer, shared, published) =
                (producer.clone(), shared.clone(), published.clone());
            let size = config.size;
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let message = match TopicMessage::new(stamped_body(started, size)) {
                        Ok(m) => m,
                        Err(e) => {
                            shared.error(&e);
                            break;
                        }
                    };
                    match producer.publish(&message).await {
                        Ok(_) => {
                            shared.requests.fetch_add(1, Ordering::Relaxed);
                            published.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            shared.error(&e);
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                histogram()
            })
        })
        .collect();
    let _ = join_all(publishers).await;
    publishing.store(false, Ordering::Release);
    let hists = join_all(consumers).await;
    let lost = published
        .load(Ordering::Relaxed)
        .saturating_sub(shared.messages.load(Ordering::Relaxed));
    if lost > 0 {
        shared.error(&format_args!(
            "{lost} published message(s) not delivered within {ROUNDTRIP_GRACE:?} after the end"
        ));
    }
    hists
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary() {
        let mut h = histogram();
        assert_eq!(Latency::from_histogram(&h), Latency::default());
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.samples, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.p999_us - 999.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
        let merged = merge([h.clone(), h]).unwrap();
        assert_eq!(merged.len(), 2000);
    }

    #[test]
    fn stamps_round_trip() {
        let started = Instant::now();
        let body = stamped_body(started, 100);
        assert_eq!(body.len(), 100);
        let m = Message {
            message_id: "0BC1EF3E1A9C18B4AAC2558D1E4F0010".parse().unwrap(),
            receipt_handle: "h-1".parse().unwrap(),
            body_md5: Default::default(),
            body: body.into(),
            publish_time: 0,
            next_consume_time: 0,
            first_consume_time: 0,
            consumed_times: 1,
            tag: None,
            properties: Default::default(),
        };
        let sent = sent_at(started, &m).unwrap();
        assert!(sent >= started && sent <= Instant::now());
        assert_eq!(stamped_body(started, 1).len(), STAMP_LEN);
    }
}
