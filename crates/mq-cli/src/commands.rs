//! The subcommands of `mq`.

use crate::args::{ConnectionArgs, parse_duration, parse_property, parse_rfc3339_ms};
use crate::bench::{self, BenchConfig, Workload};
use crate::{CliError, output};
use clap::{Parser, Subcommand};
use mq_tokio::{
    BatchSize, Client, Consumer, Error, GroupId, Message, ReceiptHandle, ReceivedMessages, Tag,
    TagFilter, TopicMessage, TopicName, TransCheckImmunity, WaitSeconds,
};
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime};

/// `mq`: publish, consume and benchmark ApsaraMQ for RocketMQ over its HTTP protocol, or serve
/// a local broker.
#[derive(Debug, Parser)]
#[command(name = "mq", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local broker (same flags and output as `mq-broker`).
    #[command(allow_negative_numbers = true)]
    Serve(ServeArgs),
    /// Publish one message (--body) or one message per line of stdin.
    Publish(PublishArgs),
    /// Receive messages, print them and acknowledge them.
    Consume(ConsumeArgs),
    /// Transactional messages: list half messages, commit or roll back.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Measure throughput and latency against an endpoint, or an embedded broker when no
    /// endpoint is set.
    Bench(BenchArgs),
    /// The admin API of an mq-broker, one subcommand per call: its clock (and test clock),
    /// peeks at what it holds, test publishes, topics, consumer groups, dead letters, offset
    /// resets, half messages, traces, fault rules.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
}

/// Flags of `mq serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    broker: mq_broker::BrokerArgs,
}

/// Flags of `mq publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Topic to publish to.
    #[arg(long)]
    topic: TopicName,
    #[command(flatten)]
    message: MessageFlags,
    /// Message body; without it every non-empty line of stdin is published as one message.
    /// It may start with `-` (`--body -x`), but not be one of this command's flags.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::args::BodyParser)]
    body: Option<String>,
    /// Print one JSON object per message instead of `ID<TAB>MD5[<TAB>HANDLE]`.
    #[arg(long)]
    json: bool,
}

/// The message flags `mq publish` and `mq admin publish` share.
#[derive(Debug, clap::Args)]
pub(crate) struct MessageFlags {
    /// Message tag.
    #[arg(long)]
    pub(crate) tag: Option<Tag>,
    /// Message key (`KEYS`; spaces separate keys, each found on its own by
    /// `mq admin peek --key`).
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Partition key of an ordered message (required by a FIFO topic).
    #[arg(long)]
    pub(crate) sharding_key: Option<String>,
    /// Custom property (repeatable).
    #[arg(long = "prop", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub(crate) props: Vec<(String, String)>,
    /// Deliver after this delay (10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, conflicts_with = "at")]
    pub(crate) delay: Option<Duration>,
    /// Deliver at this time (RFC 3339, e.g. 2026-12-01T10:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms)]
    pub(crate) at: Option<u64>,
    /// Publish a transactional (half) message; prints its handle for `mq tx commit|rollback`.
    #[arg(long)]
    pub(crate) transactional: bool,
    /// Time before the first transaction check, 10s..300s (default 10s).
    #[arg(long, value_parser = parse_duration, requires = "transactional")]
    pub(crate) immunity: Option<Duration>,
}

impl MessageFlags {
    /// Says on stderr when `--at` is not after `now_ms`: the service takes such a message
    /// and delivers it at once (PROTOCOL §6.7), which a mistyped date would otherwise hide.
    pub(crate) fn note_past_delivery(&self, now_ms: u64) {
        if let Some(at) = self.at
            && at <= now_ms
        {
            crate::stderr_line(format_args!(
                "note: --at {} is not in the future: the message is delivered at once",
                crate::args::format_rfc3339_ms(at)
            ));
        }
    }
}

/// Flags of `mq consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Topic to consume.
    #[arg(long)]
    topic: TopicName,
    /// Consumer group.
    #[arg(long)]
    group: GroupId,
    /// Tag filter, e.g. 'TagA||TagB'.
    #[arg(long)]
    tag: Option<TagFilter>,
    /// Ordered consumption (messages of one sharding key in order).
    #[arg(long)]
    orderly: bool,
    /// Messages per request, 1..=16.
    #[arg(long, default_value_t = 16)]
    batch: u8,
    /// Long-poll wait per request, 0s..30s [default: 3s, or 30s with --follow].
    #[arg(long, value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Do not acknowledge (the messages come back after their invisibility time).
    #[arg(long)]
    no_ack: bool,
    /// Keep polling after the topic is drained (until --max or Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// Stop after this many messages (a poison message, reported on stderr, counts; 1 or
    /// more).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// Print one JSON object per message.
    #[arg(long)]
    json: bool,
}

/// `mq tx …`.
#[derive(Debug, Subcommand)]
pub enum TxCommand {
    /// Receive the half messages whose transaction check is due (prints their handles).
    Half(TxHalfArgs),
    /// Commit half messages: they become visible to consumers.
    Commit(TxDecideArgs),
    /// Roll back half messages: they are dropped.
    Rollback(TxDecideArgs),
}

/// Flags of `mq tx half`.
#[derive(Debug, clap::Args)]
pub struct TxHalfArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Topic of the transactional messages.
    #[arg(long)]
    topic: TopicName,
    /// Group that checks the transactions.
    #[arg(long)]
    group: GroupId,
    /// Messages per request, 1..=16.
    #[arg(long, default_value_t = 16)]
    batch: u8,
    /// Long-poll wait per request, 0s..30s [default: 3s, or 30s with --follow].
    #[arg(long, value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Keep polling after nothing is due (until --max or Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// Stop after this many messages (1 or more).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// Print one JSON object per message.
    #[arg(long)]
    json: bool,
}

/// Flags of `mq tx commit` and `mq tx rollback`.
#[derive(Debug, clap::Args)]
pub struct TxDecideArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Topic of the transactional message.
    #[arg(long)]
    topic: TopicName,
    /// Group that checks the transactions.
    #[arg(long)]
    group: GroupId,
    /// Receipt handle from `mq publish --transactional` or `mq tx half` (repeatable).
    #[arg(long = "handle", required = true)]
    handles: Vec<ReceiptHandle>,
}

/// Flags of `mq bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// What to measure: publish, consume (receive + ack of a prefilled backlog) or roundtrip
    /// (publish → delivery).
    #[arg(value_enum)]
    workload: Workload,
    /// Requests in flight, 1..=4096 (one task each; roundtrip runs this many publishers and
    /// consumers).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// How long to measure (5, 10s, 1m).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Messages per consume request, 1..=16.
    #[arg(long, default_value_t = 16)]
    batch: u8,
    /// consume: messages published before measuring (not limited by --duration).
    #[arg(long, default_value_t = 20_000)]
    prefill: u64,
    /// publish: stop after this many successful publishes (--duration stays the time limit).
    #[arg(long)]
    count: Option<u64>,
    /// publish: messages published before measuring (not counted, their CPU time excluded,
    /// not limited by --duration).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Topic [default: a fresh name; must exist on a real endpoint].
    #[arg(long)]
    topic: Option<TopicName>,
    /// Consumer group [default: a fresh name].
    #[arg(long)]
    group: Option<GroupId>,
    /// Print the result as one JSON object (and no progress bar).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(a) => {
            // A configuration the broker refuses is a usage error (exit 2), as everywhere
            // in `mq`; one that cannot start (address in use, …) a failure.
            let (config, source) = mq_broker::load_config(&a.broker).map_err(CliError::usage)?;
            mq_broker::run::run_config_until_signal(config, source, "mq")
                .await
                .map_err(CliError::failed)
        }
        Command::Publish(a) => publish(a).await,
        Command::Consume(a) => consume(a).await,
        Command::Tx(TxCommand::Half(a)) => tx_half(a).await,
        Command::Tx(TxCommand::Commit(a)) => tx_decide(a, true).await,
        Command::Tx(TxCommand::Rollback(a)) => tx_decide(a, false).await,
        Command::Bench(a) => bench_command(a).await,
        Command::Admin(a) => crate::admin::run(a).await,
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn usage(flag: &str) -> impl Fn(mq_tokio::mq_proto::MessageError) -> CliError + '_ {
    move |e| CliError::usage(format!("{flag}: {e}"))
}

fn request_error(what: &str, e: &Error) -> CliError {
    let usage = matches!(e, Error::Config(_) | Error::InvalidInput(_));
    let message = format!("{what}: {e}");
    if usage {
        CliError::usage(message)
    } else {
        CliError::failed(message)
    }
}

/// The `--immunity` of a transactional publish: whole seconds, 10s..300s.
pub(crate) fn trans_check_immunity(d: Duration) -> Result<TransCheckImmunity, CliError> {
    if d.subsec_nanos() != 0 {
        return Err(CliError::usage("--immunity must be whole seconds"));
    }
    u32::try_from(d.as_secs())
        .ok()
        .and_then(|s| TransCheckImmunity::new(s).ok())
        .ok_or_else(|| CliError::usage("--immunity must be between 10s and 300s"))
}

/// Builds the message for one body from the publish flags (`mq publish`; `mq admin
/// publish` checks its flags with it). A flag the message refuses is a usage error.
pub(crate) fn build_message(
    a: &MessageFlags,
    body: String,
    now_ms: u64,
) -> Result<TopicMessage, CliError> {
    let mut m = TopicMessage::new(body).map_err(usage("body"))?;
    if let Some(tag) = &a.tag {
        m = m.with_tag(tag.clone());
    }
    if let Some(key) = &a.key {
        m = m.with_key(key.clone()).map_err(usage("--key"))?;
    }
    for (i, (k, _)) in a.props.iter().enumerate() {
        if a.props[..i].iter().any(|(earlier, _)| earlier == k) {
            return Err(CliError::usage(format!("--prop: {k} is given twice")));
        }
    }
    for (k, v) in &a.props {
        m = m
            .with_property(k.clone(), v.clone())
            .map_err(usage("--prop"))?;
    }
    if let Some(delay) = a.delay {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        m = m.with_start_deliver_time(now_ms.saturating_add(ms));
    }
    if let Some(at) = a.at {
        m = m.with_start_deliver_time(at);
    }
    if let Some(s) = &a.sharding_key {
        m = m
            .with_sharding_key(s.clone())
            .map_err(usage("--sharding-key"))?;
    }
    if a.transactional {
        let immunity = match a.immunity {
            None => TransCheckImmunity::default(),
            Some(d) => trans_check_immunity(d)?,
        };
        m = m.with_trans_check_immunity(immunity);
    }
    m.check_limits().map_err(usage("message"))?;
    Ok(m)
}

async fn publish(a: PublishArgs) -> Result<(), CliError> {
    a.message.note_past_delivery(now_ms());
    let client = a.conn.client()?;
    let producer = client.producer(a.topic.clone());
    let send = async |body: String, what: &str| -> Result<(), CliError> {
        let message = build_message(&a.message, body, now_ms())?;
        let receipt = producer
            .publish(&message)
            .await
            .map_err(|e| request_error(&format!("publish {what}"), &e))?;
        if a.message.transactional && receipt.receipt_handle.is_none() {
            return Err(CliError::failed(format!(
                "publish {what}: the service returned no receipt handle for a transactional message"
            )));
        }
        let mut out = std::io::stdout().lock();
        output::receipt(&mut out, &receipt, a.json)
            .and_then(|()| out.flush())
            .map_err(|e| CliError::output(&e))
    };
    if let Some(body) = a.body.clone() {
        return send(body, "failed").await;
    }
    // One message per stdin line (blank lines are skipped). Read on a blocking thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                return;
            }
        }
    });
    let mut number = 0u64;
    let mut published = 0u64;
    // A failure names its line and what was published before it, so that the rest can be
    // sent again from there (`tail -n +LINE`).
    let at_line = |number: u64, published: u64| {
        move |e: CliError| CliError {
            message: format!(
                "line {number} of stdin: {} ({published} message(s) published before it, none \
                 after)",
                e.message
            ),
            ..e
        }
    };
    while let Some(line) = rx.recv().await {
        number += 1;
        // `lines()` has taken the line's end off (`\n` or `\r\n`): any other CR is the
        // body's own. A line that is not UTF-8 is bad input, as a bad body is.
        let line = line
            .map_err(|e| CliError::usage(format!("reading it: {e}")))
            .map_err(at_line(number, published))?;
        if line.trim().is_empty() {
            continue;
        }
        send(line, "failed")
            .await
            .map_err(at_line(number, published))?;
        published += 1;
    }
    if published == 0 {
        return Err(CliError::usage(
            "nothing to publish: pass --body TEXT or pipe one message per line on stdin",
        ));
    }
    Ok(())
}

fn batch_size(n: u8) -> Result<BatchSize, CliError> {
    BatchSize::new(n).map_err(|_| CliError::usage("--batch must be between 1 and 16"))
}

fn wait_seconds(wait: Option<Duration>, follow: bool) -> Result<WaitSeconds, CliError> {
    let d = wait.unwrap_or(Duration::from_secs(if follow { 30 } else { 3 }));
    let err = || CliError::usage("--wait must be whole seconds between 0s and 30s");
    if d.subsec_nanos() != 0 {
        return Err(err());
    }
    u8::try_from(d.as_secs())
        .ok()
        .and_then(|s| WaitSeconds::new(s).ok())
        .ok_or_else(err)
}

/// How a polling loop goes on: until `max` messages (poison messages included: a service
/// that keeps answering one must not keep the loop going), and without `follow` until a
/// poll comes back empty; Ctrl-C stops it between requests.
struct PollPlan {
    batch: BatchSize,
    wait: WaitSeconds,
    follow: bool,
    max: Option<u64>,
    json: bool,
    /// Said on stderr when the first poll finds nothing (stdout stays empty for scripts).
    none_found: &'static str,
}

impl PollPlan {
    /// The batch for the next request (never more than what `max` still allows), or `None`
    /// when done.
    fn next_batch(&self, received: u64) -> Option<BatchSize> {
        match self.max {
            Some(max) if received >= max => None,
            Some(max) => {
                let left = u8::try_from(max - received).unwrap_or(u8::MAX);
                Some(BatchSize::new(left.min(self.batch.get())).unwrap_or(self.batch))
            }
            None => Some(self.batch),
        }
    }
}

/// Runs `poll` until the plan says stop; prints every message (and a line on stderr for each
/// poison message, which is left to be delivered again); `settle` acks a batch (or does
/// nothing) and returns whether the messages were acked.
async fn poll_loop<P, S>(plan: &PollPlan, mut poll: P, mut settle: S) -> Result<(), CliError>
where
    P: AsyncFnMut(BatchSize) -> Result<ReceivedMessages, CliError>,
    S: AsyncFnMut(&[Message]) -> Result<bool, CliError>,
{
    let mut received = 0u64;
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    while let Some(batch) = plan.next_batch(received) {
        let messages = tokio::select! {
            r = poll(batch) => r?,
            _ = &mut interrupted => return Ok(()),
        };
        for p in &messages.poison {
            let id = p
                .message_id
                .as_ref()
                .map_or("(unreadable id)", |id| id.as_str());
            // The reason quotes what the answer held (a reported MD5): escaped like a body.
            let reason = p.reason.to_string();
            let reason = output::printable(&reason);
            crate::stderr_line(format_args!(
                "poison message {id} not decoded, left: {reason}"
            ));
        }
        if messages.is_empty() && messages.poison.is_empty() {
            if plan.follow {
                continue;
            }
            if received == 0 {
                crate::stderr_line(format_args!("{}", plan.none_found));
            }
            return Ok(());
        }
        received += (messages.len() + messages.poison.len()) as u64;
        // Print even when the ack failed (as not acked), then report the failure.
        let settled = settle(&messages).await;
        let acked = matches!(settled, Ok(true));
        let mut out = std::io::stdout().lock();
        for m in &messages {
            output::message(&mut out, m, acked, plan.json).map_err(|e| CliError::output(&e))?;
        }
        out.flush().map_err(|e| CliError::output(&e))?;
        settled?;
    }
    Ok(())
}

async fn consume(a: ConsumeArgs) -> Result<(), CliError> {
    let client = a.conn.client()?;
    let mut consumer = client.consumer(a.topic.clone(), a.group.clone());
    if let Some(filter) = &a.tag {
        consumer = consumer.with_tag_filter(filter.clone());
    }
    let plan = PollPlan {
        batch: batch_size(a.batch)?,
        wait: wait_seconds(a.wait, a.follow)?,
        follow: a.follow,
        max: a.max,
        json: a.json,
        none_found: "no message for the group now (a group receives the messages published \
                     after its first consume)",
    };
    let orderly = a.orderly;
    let receive = async |batch: BatchSize| -> Result<ReceivedMessages, CliError> {
        let r = if orderly {
            consumer.receive_orderly(batch, plan.wait).await
        } else {
            consumer.receive(batch, plan.wait).await
        };
        r.map_err(|e| request_error("consume failed", &e))
    };
    let no_ack = a.no_ack;
    let settle = async |messages: &[Message]| -> Result<bool, CliError> {
        if no_ack {
            return Ok(false);
        }
        ack(&consumer, messages).await.map(|()| true)
    };
    poll_loop(&plan, receive, settle).await
}

async fn ack(consumer: &Consumer, messages: &[Message]) -> Result<(), CliError> {
    let handles = messages.iter().map(|m| &m.receipt_handle);
    let e = match consumer.ack(handles).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if let Some(request) = e.request_error() {
        return Err(request_error("ack failed", request));
    }
    let failures = e.failures();
    let first = failures
        .first()
        .map(|f| format!("{}: {} ({})", f.receipt_handle, f.code, f.message))
        .unwrap_or_default();
    Err(CliError::failed(format!(
        "ack failed for {} of {} message(s), first {first}",
        failures.len(),
        messages.len()
    )))
}

async fn tx_half(a: TxHalfArgs) -> Result<(), CliError> {
    let client = a.conn.client()?;
    let producer = client.transaction_producer(a.topic.clone(), a.group.clone());
    let plan = PollPlan {
        batch: batch_size(a.batch)?,
        wait: wait_seconds(a.wait, a.follow)?,
        follow: a.follow,
        max: a.max,
        json: a.json,
        none_found: "no half message due for a status check now",
    };
    // Half messages are not settled here, so the broker offers them again at each check
    // interval: without `--follow` one already printed ends the listing (with a check
    // interval shorter than the wait, it never ended: the same messages came round again).
    let mut seen = std::collections::HashSet::new();
    let receive = async |batch: BatchSize| -> Result<ReceivedMessages, CliError> {
        let mut got = producer
            .consume_half(batch, plan.wait)
            .await
            .map_err(|e| request_error("consume half messages failed", &e))?;
        if !plan.follow {
            got.messages.retain(|m| seen.insert(m.message_id.clone()));
            got.poison.retain(|p| {
                p.message_id
                    .as_ref()
                    .is_none_or(|id| seen.insert(id.clone()))
            });
        }
        Ok(got)
    };
    poll_loop(&plan, receive, async |_: &[Message]| Ok(false)).await
}

async fn tx_decide(a: TxDecideArgs, commit: bool) -> Result<(), CliError> {
    let client = a.conn.client()?;
    let producer = client.transaction_producer(a.topic.clone(), a.group.clone());
    let (verb, done) = if commit {
        ("commit", "committed")
    } else {
        ("rollback", "rolled back")
    };
    for handle in &a.handles {
        let r = if commit {
            producer.commit(handle).await
        } else {
            producer.rollback(handle).await
        };
        match r {
            Ok(()) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{done} {handle}")
                    .and_then(|()| out.flush())
                    .map_err(|e| CliError::output(&e))?;
            }
            Err(e) => {
                if let Some(request) = e.request_error() {
                    return Err(request_error(&format!("{verb} {handle} failed"), request));
                }
                let why = e
                    .failures()
                    .first()
                    .map(|f| format!("{} ({})", f.code, f.message))
                    .unwrap_or_else(|| e.to_string());
                return Err(CliError::failed(format!("{verb} {handle} failed: {why}")));
            }
        }
    }
    Ok(())
}

async fn bench_command(a: BenchArgs) -> Result<(), CliError> {
    if !(1..=bench::MAX_CONCURRENCY).contains(&a.concurrency) {
        return Err(CliError::usage(format!(
            "--concurrency must be between 1 and {}",
            bench::MAX_CONCURRENCY
        )));
    }
    if a.size == 0 || a.size > mq_tokio::mq_proto::MAX_BODY_LEN {
        return Err(CliError::usage(format!(
            "--size must be between 1 and {} bytes",
            mq_tokio::mq_proto::MAX_BODY_LEN
        )));
    }
    if a.count == Some(0) {
        return Err(CliError::usage("--count must be at least 1"));
    }
    if a.workload != Workload::Publish && (a.count.is_some() || a.warmup > 0) {
        return Err(CliError::usage(
            "--count and --warmup apply to the publish workload",
        ));
    }
    let suffix = bench::unique_suffix();
    let config = BenchConfig {
        workload: a.workload,
        concurrency: a.concurrency,
        size: a.size,
        duration: a.duration,
        batch: batch_size(a.batch)?,
        prefill: a.prefill,
        count: a.count,
        warmup: a.warmup,
        topic: match a.topic {
            Some(t) => t,
            None => TopicName::new(format!("mqbench_{suffix}"))
                .map_err(|e| CliError::failed(e.to_string()))?,
        },
        group: match a.group {
            Some(g) => g,
            None => GroupId::new(format!("GID_mqbench_{suffix}"))
                .map_err(|e| CliError::failed(e.to_string()))?,
        },
    };
    // The endpoint's client, built (not connected) before any broker starts: names too long
    // to consume with are a usage error, as in `mq consume`, with nothing started.
    let remote = match a.conn.endpoint() {
        Some(_) => Some(a.conn.client()?),
        None => None,
    };
    if config.workload != Workload::Publish {
        mq_tokio::mq_proto::check_subscription_names(
            remote.as_ref().and_then(Client::instance_id),
            &config.topic,
            &config.group,
        )
        .map_err(|e| CliError::usage(e.to_string()))?;
    }
    let mut embedded = None;
    let client: Client = match remote {
        Some(client) => client,
        None => {
            let credentials = a.conn.credentials().unwrap_or_else(|| {
                mq_tokio::Credentials::new(
                    mq_broker::DEV_ACCESS_KEY_ID,
                    mq_broker::DEV_ACCESS_KEY_SECRET,
                )
            });
            let broker = mq_broker::Broker::start(mq_broker::ServerConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                credentials: vec![mq_broker::Credential::new(
                    credentials.access_key_id(),
                    credentials.access_key_secret(),
                )],
                ..Default::default()
            })
            .await
            .map_err(|e| CliError::failed(format!("cannot start the embedded broker: {e}")))?;
            crate::stderr_line(format_args!(
                "mq: no endpoint set; benchmarking an embedded broker on {}",
                broker.endpoint()
            ));
            let client = crate::args::client_for(&broker.endpoint(), credentials, None)?;
            embedded = Some(broker);
            client
        }
    };
    let progress = bench::progress_bar(config.duration, a.json);
    let result = bench::run(&client, &config, &progress).await;
    progress.finish_and_clear();
    if let Some(broker) = embedded {
        broker.shutdown().await;
    }
    let report = result.map_err(CliError::failed)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        write!(out, "{report}")
    }
    .and_then(|()| out.flush())
    .map_err(|e| CliError::output(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mq").chain(args.iter().copied()))
    }

    fn publish_args(args: &[&str]) -> PublishArgs {
        match parse(&[&["publish", "--topic", "T"], args].concat())
            .unwrap()
            .command
        {
            Command::Publish(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn publish_flags_build_the_message() {
        let a = publish_args(&[
            "--tag",
            "TagA",
            "--key",
            "k",
            "--prop",
            "a=1",
            "--delay",
            "10s",
            "--sharding-key",
            "s",
            "--transactional",
            "--immunity",
            "20s",
        ]);
        let m = build_message(&a.message, "hi".into(), 1_000).unwrap();
        assert_eq!(m.tag().unwrap().as_str(), "TagA");
        assert_eq!(m.key(), Some("k"));
        assert_eq!(m.properties().get("a"), Some("1"));
        assert_eq!(m.start_deliver_time(), Some(11_000));
        assert_eq!(m.sharding_key(), Some("s"));
        assert_eq!(m.trans_check_immunity().unwrap().get(), 20);

        let a = publish_args(&["--at", "2026-12-01T10:00:00Z"]);
        let m = build_message(&a.message, "hi".into(), 1_000).unwrap();
        assert_eq!(m.start_deliver_time(), Some(1_796_119_200_000));

        let a = publish_args(&["--transactional"]);
        let m = build_message(&a.message, "hi".into(), 0).unwrap();
        assert_eq!(
            m.trans_check_immunity(),
            Some(TransCheckImmunity::default())
        );
    }

    #[test]
    fn publish_flag_errors() {
        for bad in [
            &["--transactional", "--immunity", "5s"][..],
            &["--transactional", "--immunity", "10500ms"],
            &["--prop", "__STARTDELIVERTIME=1"],
            &["--key", "a|b"],
            &["--prop", "a=1", "--prop", "a=2"],
        ] {
            let a = publish_args(bad);
            let e = build_message(&a.message, "hi".into(), 0).unwrap_err();
            assert_eq!(e.code, CliError::USAGE, "{bad:?}: {e}");
        }
        let a = publish_args(&[]);
        assert!(build_message(&a.message, String::new(), 0).is_err());
        // Parse-time errors.
        assert!(
            parse(&[
                "publish",
                "--topic",
                "T",
                "--delay",
                "1s",
                "--at",
                "2026-01-01T00:00:00Z"
            ])
            .is_err()
        );
        assert!(parse(&["publish", "--topic", "T", "--immunity", "10s"]).is_err());
        assert!(parse(&["publish", "--topic", "bad topic"]).is_err());
        assert!(parse(&["publish", "--topic", "T", "--delay", "soon"]).is_err());
        assert!(parse(&["publish", "--topic", "T", "--prop", "novalue"]).is_err());
    }

    #[test]
    fn poll_plan_and_waits() {
        assert_eq!(wait_seconds(None, false).unwrap().get(), 3);
        assert_eq!(wait_seconds(None, true).unwrap().get(), 30);
        assert_eq!(
            wait_seconds(Some(Duration::from_secs(0)), false)
                .unwrap()
                .get(),
            0
        );
        assert!(wait_seconds(Some(Duration::from_secs(31)), false).is_err());
        assert!(wait_seconds(Some(Duration::from_millis(1500)), false).is_err());
        assert!(batch_size(0).is_err() && batch_size(17).is_err());
        let plan = PollPlan {
            batch: BatchSize::new(16).unwrap(),
            wait: WaitSeconds::new(0).unwrap(),
            follow: false,
            max: Some(20),
            json: false,
            none_found: "",
        };
        assert_eq!(plan.next_batch(0).unwrap().get(), 16);
        assert_eq!(plan.next_batch(16).unwrap().get(), 4);
        assert!(plan.next_batch(20).is_none());
    }

    #[test]
    fn serve_takes_the_broker_flags() {
        let cli = parse(&["serve", "--listen", "127.0.0.1:0", "--topic", "T"]).unwrap();
        match cli.command {
            Command::Serve(s) => {
                assert_eq!(s.broker.listen, Some("127.0.0.1:0".parse().unwrap()));
                assert_eq!(s.broker.topics, vec!["T".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
    }
}
