//! `mq admin …`: the admin API of this project's broker (`/admin/…`, see the README, "Seeing
//! what the broker holds"), with the endpoint and credentials of the other commands; or the
//! broker's admin token (`--admin-token`, `MQ_ADMIN_TOKEN`) instead of the credentials.

use crate::CliError;
use crate::args::{InstanceArgs, ServiceArgs, format_rfc3339_ms, parse_duration, parse_rfc3339_ms};
use crate::commands::{MessageFlags, build_message, now_ms, trans_check_immunity};
use crate::output::{Align, Table, printable};
use bytes::Bytes;
use clap::Subcommand;
use http::{HeaderValue, Method};
use mq_proto::client::{Endpoint, RequestContext, admin_request};
use mq_tokio::{PoolConfig, PooledTransport, TlsRoots, TokioRuntime, Transport};
use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// How long one admin call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Flags every `mq admin` call takes: endpoint and credentials (or the admin token), and
/// the output format.
#[derive(Clone, Default, clap::Args)]
pub(crate) struct AdminConn {
    #[command(flatten)]
    service: ServiceArgs,
    /// The broker's admin token (printed by the broker at start); used instead of signing
    /// with the AccessKey.
    #[arg(
        long,
        env = "MQ_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// Print the broker's JSON answer as is.
    #[arg(long)]
    json: bool,
}

impl fmt::Debug for AdminConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConn")
            .field("service", &self.service)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("json", &self.json)
            .finish()
    }
}

/// The flags of a call about an instance's topics, groups or messages: those of every call
/// and the instance (`--instance-id`, `MQ_INSTANCE_ID`: the `ns` parameter). Calls about
/// the whole broker (clock, reset, faults) and by message id alone (trace) do not take it.
#[derive(Debug, clap::Args)]
pub(crate) struct ScopedConn {
    #[command(flatten)]
    admin: AdminConn,
    #[command(flatten)]
    scope: InstanceArgs,
}

impl ScopedConn {
    /// `target` with the instance (`ns=`), if one is set.
    fn target(&self, target: &str) -> Result<String, CliError> {
        Ok(match self.scope.instance()? {
            Some(ns) => {
                let sep = if target.contains('?') { '&' } else { '?' };
                format!("{target}{sep}ns={ns}")
            }
            None => target.to_owned(),
        })
    }
}

/// `mq admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show the broker's clock; with --advance, move a test clock (`--test-clock`) forward.
    Clock(ClockArgs),
    /// List messages of a topic without consuming them (ready, in_flight, delayed, dead,
    /// half), find them by id or key, or page them by publish time.
    Peek(PeekArgs),
    /// Publish a test message through the admin API (as the console's Publish page does);
    /// --delay counts on the broker's clock (a test clock's moves included).
    Publish(AdminPublishArgs),
    /// Drop every message of a topic (groups stay).
    Purge(PurgeArgs),
    /// Forget every message, group position and counter of the broker and take a test
    /// clock back to the system clock (declared and created topics stay, empty; groups
    /// created with `admin groups create` or `--group` stay, with their settings).
    Reset(ResetArgs),
    /// Topics: list (with each group's ready / in flight / delayed / dead / backlog / last
    /// consume), create with a message type, delete.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Consumer groups: list, create with their own invisibility and max deliveries,
    /// delete.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// A group's dead letters on a topic: list, resend (all or one), delete (all or one).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Reset a group's consumer offset on a topic to a time: messages published since are
    /// delivered again, earlier ones it holds are skipped.
    #[command(name = "reset-offset")]
    ResetOffset(ResetOffsetArgs),
    /// Decide a half (transactional) message waiting for its producer, by its id: commit
    /// (delivered to the topic's groups) or roll back (never delivered).
    #[command(subcommand)]
    Half(HalfCommand),
    /// What happened to a message: published, each delivery, ack, expiry, dead letter,
    /// transaction check, commit, rollback.
    Trace(TraceArgs),
    /// Fault injection (a broker started with `--faults`): list the rules in force, add
    /// one, clear them all.
    #[command(subcommand)]
    Faults(FaultsCommand),
}

/// `mq admin half …` (list the waiting ones with `mq admin peek --state half`).
#[derive(Debug, Subcommand)]
pub enum HalfCommand {
    /// Commit it: the message becomes deliverable, as its producer's commit would make it.
    Commit(HalfArgs),
    /// Roll it back: the message is never delivered.
    Rollback(HalfArgs),
}

/// Flags of `mq admin half …`.
#[derive(Debug, clap::Args)]
pub struct HalfArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// The topic of the half message.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// The half message's id.
    #[arg(long)]
    id: String,
}

/// `mq admin dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// The group's dead letters, oldest first, with their bodies.
    List(DeadLetterListArgs),
    /// Hand them (all, or --id) to the group again as new messages.
    Resend(DeadLetterArgs),
    /// Drop them (all, or --id).
    Delete(DeadLetterArgs),
}

/// Flags of `mq admin dead-letters list`.
#[derive(Debug, clap::Args)]
pub struct DeadLetterListArgs {
    #[command(flatten)]
    on: GroupOnTopic,
    /// Most dead letters listed (1..=1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// The next page: after this message id (the `more: --after` of the previous page).
    #[arg(long, value_name = "ID")]
    after: Option<String>,
}

/// Flags of `mq admin dead-letters resend|delete`.
#[derive(Debug, clap::Args)]
pub struct DeadLetterArgs {
    #[command(flatten)]
    on: GroupOnTopic,
    /// Only the dead letter of this message id (default: all of the group's).
    #[arg(long)]
    id: Option<String>,
}

/// The connection flags and the group and topic of a dead-letter or offset call.
#[derive(Debug, clap::Args)]
pub(crate) struct GroupOnTopic {
    #[command(flatten)]
    conn: ScopedConn,
    /// The topic.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// The consumer group.
    #[arg(long)]
    group: mq_tokio::GroupId,
}

impl GroupOnTopic {
    /// `/admin/topics/{topic}/groups/{group}/{rest}`, with the instance.
    fn target(&self, rest: &str) -> Result<String, CliError> {
        self.conn.target(&format!(
            "/admin/topics/{}/groups/{}/{rest}",
            self.topic, self.group
        ))
    }
}

/// Flags of `mq admin reset-offset`.
#[derive(Debug, clap::Args)]
pub struct ResetOffsetArgs {
    #[command(flatten)]
    on: GroupOnTopic,
    /// Messages published at or after this time (RFC 3339) are delivered again.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms)]
    time: u64,
}

/// Flags of `mq admin trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    #[command(flatten)]
    admin: AdminConn,
    /// The message id.
    #[arg(long)]
    id: String,
}

/// `mq admin topics …`.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Every topic with its message type and its groups' positions.
    List(ListArgs),
    /// One topic with its message type and its groups' positions (404 `TopicNotExist` for
    /// an unknown one).
    Show(TopicArgs),
    /// Create a topic that takes one message type (normal, order, delay, transaction) or
    /// all (mixed).
    Create(TopicCreateArgs),
    /// Delete a topic with every message it holds.
    Delete(TopicArgs),
}

/// `mq admin groups …`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Every consumer group with its settings and its position on each topic.
    List(ListArgs),
    /// Create (or update) a group: it keeps the messages of its topics from now on, before
    /// its first consume.
    Create(GroupCreateArgs),
    /// Delete a group with its positions.
    Delete(GroupArgs),
}

/// Flags of a listing of topics or groups (of the instance, if one is set; else of all).
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    conn: ScopedConn,
}

/// Flags of `mq admin topics create`.
#[derive(Debug, clap::Args)]
pub struct TopicCreateArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// Topic to create.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// The messages it takes: normal, order (fifo), delay, transaction or mixed (all).
    #[arg(long = "type", default_value = "mixed")]
    message_type: String,
}

/// Flags naming one topic.
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// The topic.
    #[arg(long)]
    topic: mq_tokio::TopicName,
}

/// Flags of `mq admin groups create`.
#[derive(Debug, clap::Args)]
pub struct GroupCreateArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// Group to create.
    #[arg(long)]
    group: mq_tokio::GroupId,
    /// A topic it keeps messages of from now on (repeatable).
    #[arg(long = "topic")]
    topics: Vec<mq_tokio::TopicName>,
    /// Its invisibility after a delivery (30s, 500ms); default: the broker's.
    #[arg(long, value_parser = parse_duration)]
    invisibility: Option<Duration>,
    /// Deliveries after which it dead-letters a message; default: the broker's.
    #[arg(long)]
    max_deliveries: Option<u32>,
}

/// Flags naming one group.
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// The group.
    #[arg(long)]
    group: mq_tokio::GroupId,
}

/// Flags of `mq admin purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// Topic to empty.
    #[arg(long)]
    topic: mq_tokio::TopicName,
}

/// Flags of `mq admin reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    admin: AdminConn,
}

/// Flags of `mq admin clock`.
#[derive(Debug, clap::Args)]
pub struct ClockArgs {
    #[command(flatten)]
    admin: AdminConn,
    /// Move the broker's test clock forward by this much (10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    advance: Option<Duration>,
}

/// The states a peek lists (`state=` of the admin API).
const PEEK_STATES: [&str; 5] = ["ready", "in_flight", "delayed", "dead", "half"];

/// Flags of `mq admin peek`: a state (the default), an id, a key, or a time range.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("range").args(["begin", "end"]).multiple(true)))]
pub struct PeekArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// Topic to look at.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// Consumer group whose messages are listed (required by every state but half).
    #[arg(long, conflicts_with_all = ["id", "key", "range"])]
    group: Option<mq_tokio::GroupId>,
    /// The state listed: ready (the default with --group), in_flight, delayed, dead (all
    /// with --group), or half (without).
    #[arg(long, value_parser = PEEK_STATES, conflicts_with_all = ["id", "key", "range"])]
    state: Option<String>,
    /// Find the message with this id (and where each group stands with it) instead.
    #[arg(long, conflicts_with_all = ["key", "range"])]
    id: Option<String>,
    /// Find the messages with this key instead (one word: `KEYS` holds a message's keys
    /// separated by spaces).
    #[arg(long, conflicts_with = "range")]
    key: Option<String>,
    /// List the messages published at or after this time (RFC 3339) instead, in publish
    /// order, consumed ones included.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms)]
    begin: Option<u64>,
    /// List the messages published before this time (RFC 3339) instead, in publish order;
    /// with --begin, those in between.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms)]
    end: Option<u64>,
    /// The next page: after this message id (the `more: --after` of the previous page);
    /// not with --id.
    #[arg(long, value_name = "ID", conflicts_with = "id")]
    after: Option<String>,
    /// Most messages listed (1..=1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
}

impl PeekArgs {
    /// The query selecting what is listed, with the page's `after`.
    fn selector(&self) -> Result<String, CliError> {
        let listed = self.listed()?;
        Ok(match &self.after {
            Some(after) => format!("{listed}&after={}", encode(after)),
            None => listed,
        })
    }

    /// The query selecting what is listed.
    fn listed(&self) -> Result<String, CliError> {
        if let Some(id) = &self.id {
            return Ok(format!("id={}", encode(id)));
        }
        if let Some(key) = &self.key {
            return Ok(format!("key={}", encode(key)));
        }
        if self.begin.is_some() || self.end.is_some() {
            let mut range = Vec::new();
            if let Some(begin) = self.begin {
                range.push(format!("begin_ms={begin}"));
            }
            if let Some(end) = self.end {
                range.push(format!("end_ms={end}"));
            }
            return Ok(range.join("&"));
        }
        match (&self.group, self.state.as_deref()) {
            (Some(_), Some("half")) => Err(CliError::usage(
                "--group does not apply to --state half: half messages belong to the topic",
            )),
            (Some(g), state) => Ok(format!("state={}&group={g}", state.unwrap_or("ready"))),
            (None, Some("half")) => Ok("state=half".to_owned()),
            (None, Some(state)) => Err(CliError::usage(format!(
                "--state {state} lists a group's messages: pass --group G \
                 (only --state half lists without a group)"
            ))),
            (None, None) => Err(CliError::usage(
                "say what to list: --group G [--state ready|in_flight|delayed|dead] (ready by \
                 default), --state half, --id ID, --key K, or --begin/--end TIME",
            )),
        }
    }
}

/// Flags of `mq admin publish`.
#[derive(Debug, clap::Args)]
pub struct AdminPublishArgs {
    #[command(flatten)]
    conn: ScopedConn,
    /// Topic to publish to.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// Message body (it may start with `-`, but not be one of this command's flags).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::args::BodyParser)]
    body: String,
    #[command(flatten)]
    message: MessageFlags,
}

impl AdminPublishArgs {
    /// The JSON body of `POST /admin/topics/{topic}/messages`.
    fn body(&self) -> Result<Vec<u8>, CliError> {
        let m = &self.message;
        // Checked as `mq publish` checks them (a usage error, exit 2), not left to the
        // broker's 400 (exit 1): an empty `--key`, a system property, a body over its limit.
        build_message(m, self.body.clone(), now_ms())?;
        let mut doc = serde_json::json!({ "body": self.body });
        if let Some(tag) = &m.tag {
            doc["tag"] = tag.as_str().into();
        }
        if let Some(key) = &m.key {
            doc["key"] = key.as_str().into();
        }
        if let Some(sharding_key) = &m.sharding_key {
            doc["sharding_key"] = sharding_key.as_str().into();
        }
        if !m.props.is_empty() {
            let props: serde_json::Map<String, serde_json::Value> = m
                .props
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().into()))
                .collect();
            doc["properties"] = props.into();
        }
        if let Some(delay) = m.delay {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            // Refused here, as `mq publish` does, whatever the broker's clock says (PROTOCOL
            // §6.7); an `--at` is checked by the broker, against its clock.
            if ms > mq_tokio::mq_proto::MAX_SCHEDULE_AHEAD_MS {
                return Err(CliError::usage("--delay is at most 40 days"));
            }
            doc["delay_ms"] = ms.into();
        }
        if let Some(at) = m.at {
            doc["deliver_at_ms"] = at.into();
        }
        if m.transactional {
            doc["transactional"] = true.into();
        }
        if let Some(immunity) = m.immunity {
            let seconds = trans_check_immunity(immunity)?.get();
            doc["check_immunity_s"] = seconds.into();
        }
        serde_json::to_vec(&doc).map_err(|e| CliError::failed(format!("encoding: {e}")))
    }
}

/// `mq admin faults …`.
#[derive(Debug, Subcommand)]
pub enum FaultsCommand {
    /// The rules in force, with their hits.
    List(FaultsArgs),
    /// Add a rule: calls of an operation are answered with a protocol error (--error), have
    /// their connection closed unanswered (--reset), or only wait (--latency).
    Add(FaultAddArgs),
    /// Remove every rule.
    Clear(FaultsArgs),
}

/// Flags of `mq admin faults list|clear`.
#[derive(Debug, clap::Args)]
pub struct FaultsArgs {
    #[command(flatten)]
    admin: AdminConn,
}

/// Flags of `mq admin faults add`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").args(["error", "reset", "latency"]).multiple(true).required(true)))]
pub struct FaultAddArgs {
    #[command(flatten)]
    admin: AdminConn,
    /// The calls it applies to: any, publish, consume, consume_orderly, consume_half, ack,
    /// commit or rollback (the broker checks the name).
    #[arg(long, default_value = "any")]
    operation: String,
    /// Answer with this protocol error (Throttling → 503, InternalError → 500, …).
    #[arg(long, value_name = "CODE", conflicts_with = "reset")]
    error: Option<String>,
    /// Close the connection without an answer.
    #[arg(long)]
    reset: bool,
    /// Wait this long before answering (at most 60s); alone, the rule only delays.
    #[arg(long, value_parser = parse_duration)]
    latency: Option<Duration>,
    /// The chance that a matching call is hit, 0..=1 [default: 1].
    #[arg(long)]
    probability: Option<f64>,
    /// Hit this many calls, then remove the rule [default: until cleared].
    #[arg(long)]
    count: Option<u64>,
}

impl FaultAddArgs {
    /// `/admin/faults?…`.
    fn target(&self) -> String {
        let mut target = format!("/admin/faults?operation={}", encode(&self.operation));
        if let Some(code) = &self.error {
            target.push_str(&format!("&error={}", encode(code)));
        }
        if self.reset {
            target.push_str("&reset=true");
        }
        if let Some(latency) = self.latency {
            target.push_str(&format!("&latency_ms={}", latency.as_millis()));
        }
        if let Some(p) = self.probability {
            target.push_str(&format!("&probability={p}"));
        }
        if let Some(n) = self.count {
            target.push_str(&format!("&count={n}"));
        }
        target
    }
}

/// One admin call: who calls, the method, the request-target and the JSON body (if any).
struct AdminCall<'a> {
    admin: &'a AdminConn,
    method: Method,
    target: String,
    body: Option<Vec<u8>>,
}

impl<'a> AdminCall<'a> {
    fn new(admin: &'a AdminConn, method: Method, target: impl Into<String>) -> Self {
        Self {
            admin,
            method,
            target: target.into(),
            body: None,
        }
    }
}

/// The call a command makes.
fn admin_call(command: &AdminCommand) -> Result<AdminCall<'_>, CliError> {
    use Method as M;
    Ok(match command {
        AdminCommand::Clock(a) => match a.advance {
            Some(by) => AdminCall::new(
                &a.admin,
                M::POST,
                format!("/admin/clock?advance_ms={}", by.as_millis()),
            ),
            None => AdminCall::new(&a.admin, M::GET, "/admin/clock"),
        },
        AdminCommand::Peek(a) => {
            let target = format!(
                "/admin/topics/{}/messages?{}&limit={}",
                a.topic,
                a.selector()?,
                a.limit
            );
            AdminCall::new(&a.conn.admin, M::GET, a.conn.target(&target)?)
        }
        AdminCommand::Publish(a) => {
            let target = a
                .conn
                .target(&format!("/admin/topics/{}/messages", a.topic))?;
            AdminCall {
                body: Some(a.body()?),
                ..AdminCall::new(&a.conn.admin, M::POST, target)
            }
        }
        AdminCommand::Purge(a) => AdminCall::new(
            &a.conn.admin,
            M::POST,
            a.conn.target(&format!("/admin/topics/{}/purge", a.topic))?,
        ),
        AdminCommand::Reset(a) => AdminCall::new(&a.admin, M::POST, "/admin/reset"),
        AdminCommand::Topics(TopicsCommand::List(a)) => {
            AdminCall::new(&a.conn.admin, M::GET, a.conn.target("/admin/topics")?)
        }
        AdminCommand::Topics(TopicsCommand::Create(a)) => AdminCall::new(
            &a.conn.admin,
            M::POST,
            a.conn.target(&format!(
                "/admin/topics?topic={}&message_type={}",
                a.topic,
                encode(&a.message_type)
            ))?,
        ),
        AdminCommand::Topics(TopicsCommand::Show(a)) => AdminCall::new(
            &a.conn.admin,
            M::GET,
            a.conn.target(&format!("/admin/topics/{}", a.topic))?,
        ),
        AdminCommand::Topics(TopicsCommand::Delete(a)) => AdminCall::new(
            &a.conn.admin,
            M::DELETE,
            a.conn.target(&format!("/admin/topics/{}", a.topic))?,
        ),
        AdminCommand::Groups(GroupsCommand::List(a)) => {
            AdminCall::new(&a.conn.admin, M::GET, a.conn.target("/admin/groups")?)
        }
        AdminCommand::Groups(GroupsCommand::Create(a)) => {
            let mut target = format!("/admin/groups?group={}", a.group);
            for t in &a.topics {
                target.push_str(&format!("&topic={t}"));
            }
            if let Some(d) = a.invisibility {
                target.push_str(&format!("&invisibility_ms={}", d.as_millis()));
            }
            if let Some(n) = a.max_deliveries {
                target.push_str(&format!("&max_deliveries={n}"));
            }
            AdminCall::new(&a.conn.admin, M::POST, a.conn.target(&target)?)
        }
        AdminCommand::Groups(GroupsCommand::Delete(a)) => AdminCall::new(
            &a.conn.admin,
            M::DELETE,
            a.conn.target(&format!("/admin/groups/{}", a.group))?,
        ),
        AdminCommand::DeadLetters(DeadLettersCommand::List(a)) => AdminCall::new(
            &a.on.conn.admin,
            M::GET,
            a.on.target(&match &a.after {
                Some(after) => format!("dead_letters?limit={}&after={}", a.limit, encode(after)),
                None => format!("dead_letters?limit={}", a.limit),
            })?,
        ),
        AdminCommand::DeadLetters(
            DeadLettersCommand::Resend(a) | DeadLettersCommand::Delete(a),
        ) => {
            let (method, path) = match command {
                AdminCommand::DeadLetters(DeadLettersCommand::Resend(_)) => {
                    (M::POST, "dead_letters/resend")
                }
                _ => (M::DELETE, "dead_letters"),
            };
            let path = match &a.id {
                Some(id) => format!("{path}?id={}", encode(id)),
                None => path.to_owned(),
            };
            AdminCall::new(&a.on.conn.admin, method, a.on.target(&path)?)
        }
        AdminCommand::ResetOffset(a) => AdminCall::new(
            &a.on.conn.admin,
            M::POST,
            a.on.target(&format!("reset_offset?time_ms={}", a.time))?,
        ),
        AdminCommand::Half(h) => {
            let (a, action) = match h {
                HalfCommand::Commit(a) => (a, "commit"),
                HalfCommand::Rollback(a) => (a, "rollback"),
            };
            let target = format!("/admin/topics/{}/half/{}/{action}", a.topic, encode(&a.id));
            AdminCall::new(&a.conn.admin, M::POST, a.conn.target(&target)?)
        }
        AdminCommand::Trace(a) => AdminCall::new(
            &a.admin,
            M::GET,
            format!("/admin/messages/{}/trace", encode(&a.id)),
        ),
        AdminCommand::Faults(FaultsCommand::List(a)) => {
            AdminCall::new(&a.admin, M::GET, "/admin/faults")
        }
        AdminCommand::Faults(FaultsCommand::Add(a)) => {
            AdminCall::new(&a.admin, M::POST, a.target())
        }
        AdminCommand::Faults(FaultsCommand::Clear(a)) => {
            AdminCall::new(&a.admin, M::DELETE, "/admin/faults")
        }
    })
}

/// Runs one `mq admin` command.
///
/// # Errors
///
/// A usage error (no endpoint, no credentials or token, flags that do not go together); a
/// failed call (the broker's error code and message, or the network error).
pub(crate) async fn run(command: AdminCommand) -> Result<(), CliError> {
    let request = admin_call(&command)?;
    if let AdminCommand::Publish(a) = &command {
        a.message.note_past_delivery(crate::commands::now_ms());
    }
    let json = request.admin.json;
    let answer = call(request).await?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        )
    } else {
        print_answer(&mut out, &command, &answer)
    };
    written.map_err(|e| CliError::output(&e))
}

/// The human form of a command's answer.
fn print_answer(
    out: &mut impl Write,
    command: &AdminCommand,
    answer: &serde_json::Value,
) -> std::io::Result<()> {
    let count = |name: &str| answer[name].as_u64().unwrap_or(0);
    match command {
        AdminCommand::Clock(_) => print_clock(out, answer),
        AdminCommand::Peek(_) | AdminCommand::DeadLetters(DeadLettersCommand::List(_)) => {
            print_messages(out, answer)
        }
        AdminCommand::Publish(_) => print_published(out, answer),
        AdminCommand::Purge(_) => writeln!(out, "purged {} message(s)", count("purged")),
        AdminCommand::Reset(_) => writeln!(out, "reset"),
        AdminCommand::Topics(TopicsCommand::List(_)) => {
            let topics = answer["topics"].as_array().cloned().unwrap_or_default();
            print_topics(out, &topics)
        }
        AdminCommand::Topics(TopicsCommand::Create(_) | TopicsCommand::Show(_)) => {
            print_topics(out, std::slice::from_ref(&answer["topic"]))
        }
        AdminCommand::Groups(GroupsCommand::List(_)) => {
            let groups = answer["groups"].as_array().cloned().unwrap_or_default();
            print_groups(out, &groups)
        }
        AdminCommand::Groups(GroupsCommand::Create(_)) => {
            print_groups(out, std::slice::from_ref(&answer["group"]))
        }
        AdminCommand::DeadLetters(DeadLettersCommand::Resend(_)) => {
            writeln!(out, "resent {} dead letter(s)", count("resent"))
        }
        AdminCommand::DeadLetters(DeadLettersCommand::Delete(_)) => {
            writeln!(out, "deleted {} dead letter(s)", count("deleted"))
        }
        AdminCommand::ResetOffset(_) => writeln!(
            out,
            "{} message(s) to be delivered again, {} skipped",
            count("redelivered"),
            count("skipped")
        ),
        AdminCommand::Trace(_) => print_trace(out, answer),
        AdminCommand::Half(h) => writeln!(
            out,
            "{} {}",
            match h {
                HalfCommand::Commit(_) => "committed",
                HalfCommand::Rollback(_) => "rolled back",
            },
            answer["message_id"].as_str().unwrap_or("?")
        ),
        AdminCommand::Topics(TopicsCommand::Delete(_))
        | AdminCommand::Groups(GroupsCommand::Delete(_)) => {
            let name = answer["deleted"].as_str().unwrap_or("?");
            // The gateway's engine does not say how many messages went: no count then.
            match answer["messages"].as_u64() {
                Some(n) => writeln!(out, "deleted {name} ({n} message(s))"),
                None => writeln!(out, "deleted {name}"),
            }
        }
        AdminCommand::Faults(_) => print_faults(out, answer),
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Makes one admin call; the JSON answer of a 200, or the broker's error as a failure.
async fn call(c: AdminCall<'_>) -> Result<serde_json::Value, CliError> {
    let AdminCall {
        admin,
        method,
        target,
        body,
    } = c;
    let endpoint: Endpoint = admin
        .service
        .require_endpoint()?
        .parse()
        .map_err(|e| CliError::usage(format!("--endpoint: {e}")))?;
    let token = admin
        .admin_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let credentials = match (token, admin.service.credentials()) {
        (Some(_), _) => mq_proto::sign::Credentials::new("admin-token", "unused"),
        (None, Some(c)) => c,
        (None, None) => {
            return Err(CliError::usage(
                "no admin token or credentials set: pass --admin-token (or set MQ_ADMIN_TOKEN), \
                 or --access-key-id and --access-key-secret",
            ));
        }
    };
    let ctx = RequestContext {
        endpoint: &endpoint,
        credentials: &credentials,
        instance: None,
        date: SystemTime::now(),
        user_agent: concat!("mq-cli/", env!("CARGO_PKG_VERSION")),
    };
    let mut request: http::Request<Bytes> = admin_request(&ctx, method, &target);
    if let Some(body) = body {
        // A JSON body: its type is part of the string to sign, so sign again.
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let signed = mq_proto::sign::sign_request(
            &credentials,
            request.method(),
            request.headers(),
            &target,
        );
        let authorization = HeaderValue::from_str(&signed.authorization)
            .map_err(|_| CliError::usage("--access-key-id: not a valid header value"))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, authorization);
        *request.body_mut() = Bytes::from(body);
    }
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| CliError::usage("--admin-token: not a valid header value"))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    let tls = TlsRoots::default()
        .client_config()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let transport = PooledTransport::new(TokioRuntime::default(), tls, PoolConfig::default());
    let response = transport
        .send(request, TIMEOUT)
        .await
        .map_err(|e| CliError::failed(format!("admin call failed: {e}")))?;
    let status = response.status();
    let answer: serde_json::Value = serde_json::from_slice(response.body()).map_err(|_| {
        CliError::failed(format!(
            "{status}: not an admin answer (is this an mq-broker, with its admin API on?)"
        ))
    })?;
    if status.is_success() {
        Ok(answer)
    } else {
        Err(CliError::failed(format!(
            "{} {}: {}",
            status.as_u16(),
            answer["code"].as_str().unwrap_or("?"),
            answer["message"].as_str().unwrap_or("")
        )))
    }
}

fn print_clock(out: &mut impl Write, answer: &serde_json::Value) -> std::io::Result<()> {
    let now = answer["now_ms"].as_u64().unwrap_or(0);
    writeln!(
        out,
        "now {} (offset {} ms{})",
        format_rfc3339_ms(now),
        answer["offset_ms"].as_i64().unwrap_or(0),
        if answer["test_clock"] == true {
            ", test clock"
        } else {
            ""
        }
    )
}

fn print_messages(out: &mut impl Write, answer: &serde_json::Value) -> std::io::Result<()> {
    let messages = answer["messages"].as_array().cloned().unwrap_or_default();
    let mut table = Table::new(&[
        ("MESSAGE ID", Align::Left),
        ("STATE", Align::Left),
        ("TIMES", Align::Right),
        ("NEXT VISIBLE", Align::Left),
        ("BODY", Align::Left),
    ]);
    for m in &messages {
        let next = m["next_visible_time"]
            .as_u64()
            .map(format_rfc3339_ms)
            .unwrap_or_else(|| "-".to_owned());
        let body = m["body"].as_str().unwrap_or("-");
        let preview: String = body.chars().take(60).collect();
        let body = printable(&preview);
        let groups: Vec<String> = m["groups"]
            .as_array()
            .map(|gs| {
                gs.iter()
                    .map(|g| {
                        format!(
                            "{}={}",
                            g["group"].as_str().unwrap_or("?"),
                            g["state"].as_str().unwrap_or("consumed")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        table.row(vec![
            m["message_id"].as_str().unwrap_or("?").to_owned(),
            m["state"].as_str().unwrap_or("?").to_owned(),
            m["consumed_times"].as_u64().unwrap_or(0).to_string(),
            next,
            body.into_owned(),
        ]);
        if !groups.is_empty() {
            table.text(true, format!("groups: {}", groups.join(" ")));
        }
    }
    table.write(out)?;
    writeln!(out, "{} message(s)", messages.len())?;
    match answer["next"].as_str() {
        Some(next) => writeln!(out, "more: --after {next}"),
        None => Ok(()),
    }
}

fn print_trace(out: &mut impl Write, answer: &serde_json::Value) -> std::io::Result<()> {
    writeln!(
        out,
        "message {} on {}",
        answer["message_id"].as_str().unwrap_or("?"),
        qualified(answer, "topic")
    )?;
    let mut table = Table::new(&[
        ("TIME", Align::Left),
        ("EVENT", Align::Left),
        ("GROUP", Align::Left),
        ("DETAILS", Align::Left),
    ]);
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    for (i, e) in events.iter().enumerate() {
        if i == 1 && answer["dropped_events"].as_u64().unwrap_or(0) > 0 {
            table.text(
                false,
                format!(
                    "({} event(s) not kept)",
                    answer["dropped_events"].as_u64().unwrap_or(0)
                ),
            );
        }
        let mut details = Vec::new();
        if let Some(p) = e["producer"].as_str() {
            details.push(format!("producer {p}"));
        }
        if let Some(n) = e["consumed_times"].as_u64() {
            details.push(format!("#{n}"));
        }
        if let Some(next) = e["next_consume_time"].as_u64() {
            details.push(format!("next {}", format_rfc3339_ms(next)));
        }
        if let Some(h) = e["receipt_handle"].as_str() {
            details.push(format!("handle {h}"));
        }
        table.row(vec![
            time_cell(&e["time_ms"]),
            e["event"].as_str().unwrap_or("?").to_owned(),
            e["group"].as_str().unwrap_or("-").to_owned(),
            details.join(", "),
        ]);
    }
    table.write(out)
}

/// `POST /admin/topics/{topic}/messages`'s answer: one row.
fn print_published(out: &mut impl Write, answer: &serde_json::Value) -> std::io::Result<()> {
    let mut table = Table::new(&[
        ("MESSAGE ID", Align::Left),
        ("BODY MD5", Align::Left),
        ("RECEIPT HANDLE", Align::Left),
    ]);
    table.row(
        ["message_id", "body_md5", "receipt_handle"]
            .map(|k| answer[k].as_str().unwrap_or("-").to_owned())
            .to_vec(),
    );
    table.write(out)
}

/// `GET /admin/faults`'s answer (and that of adding or clearing rules): whether fault
/// injection is on, and one row per rule.
fn print_faults(out: &mut impl Write, answer: &serde_json::Value) -> std::io::Result<()> {
    let enabled = answer["enabled"] == true;
    writeln!(
        out,
        "fault injection {}",
        if enabled {
            "on"
        } else {
            "off (start the broker with --faults)"
        }
    )?;
    let rules = answer["rules"].as_array().cloned().unwrap_or_default();
    let mut table = Table::new(&[
        ("OPERATION", Align::Left),
        ("ACTION", Align::Left),
        ("PROBABILITY", Align::Right),
        ("LATENCY", Align::Right),
        ("REMAINING", Align::Right),
        ("HITS", Align::Right),
    ]);
    for r in &rules {
        let action = match r["action"]["kind"].as_str() {
            Some("error") => format!("error {}", r["action"]["code"].as_str().unwrap_or("?")),
            Some("reset") => "reset connection".to_owned(),
            Some("delay") => "latency only".to_owned(),
            other => other.unwrap_or("?").to_owned(),
        };
        table.row(vec![
            r["operation"].as_str().unwrap_or("?").to_owned(),
            action,
            r["probability"].as_f64().unwrap_or(0.0).to_string(),
            format!("{} ms", r["latency_ms"].as_u64().unwrap_or(0)),
            r["remaining"]
                .as_u64()
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
            r["hits"].as_u64().unwrap_or(0).to_string(),
        ]);
    }
    table.write(out)?;
    writeln!(out, "{} rule(s)", rules.len())
}

/// A time column: RFC 3339 with ms, or `-`.
fn time_cell(v: &serde_json::Value) -> String {
    v.as_u64()
        .map(format_rfc3339_ms)
        .unwrap_or_else(|| "-".to_owned())
}

/// The counters of one group on one topic, as table cells; `-` for a counter the backend
/// does not keep (the gateway leaves the cluster's counters out rather than show 0).
fn position_cells(p: &serde_json::Value) -> Vec<String> {
    let n = |k: &str| {
        p[k].as_u64()
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    };
    vec![
        n("ready"),
        n("in_flight"),
        n("delayed"),
        n("dead_letters_kept"),
        n("accumulation"),
        time_cell(&p["last_consume_time_ms"]),
    ]
}

/// The columns of [`position_cells`].
const POSITION_COLUMNS: [(&str, Align); 6] = [
    ("READY", Align::Right),
    ("IN FLIGHT", Align::Right),
    ("DELAYED", Align::Right),
    ("DEAD", Align::Right),
    ("BACKLOG", Align::Right),
    ("LAST CONSUME", Align::Left),
];

/// `instance/name` (or `name` for the default instance) of a listed topic or group.
fn qualified(item: &serde_json::Value, name: &str) -> String {
    let name = item[name].as_str().unwrap_or("?");
    match item["instance"].as_str() {
        Some(i) => format!("{i}/{name}"),
        None => name.to_owned(),
    }
}

/// A table whose columns are `lead`'s, then the position's name and counters.
fn positions_table(lead: &[(&'static str, Align)], name: &'static str) -> Table {
    let mut header = lead.to_vec();
    header.push((name, Align::Left));
    header.extend(POSITION_COLUMNS);
    Table::new(&header)
}

/// One table row per position (a row of `-` when there is none), each after `lead`.
fn add_positions(table: &mut Table, lead: &[String], positions: &[serde_json::Value], name: &str) {
    if positions.is_empty() {
        let mut row = lead.to_vec();
        row.push("-".to_owned());
        table.row(row);
    }
    for p in positions {
        let mut row = lead.to_vec();
        row.push(p[name].as_str().unwrap_or("?").to_owned());
        row.extend(position_cells(p));
        table.row(row);
    }
}

fn print_topics(out: &mut impl Write, topics: &[serde_json::Value]) -> std::io::Result<()> {
    let mut table = positions_table(&[("TOPIC", Align::Left), ("TYPE", Align::Left)], "GROUP");
    for t in topics {
        let lead = [
            qualified(t, "topic"),
            t["message_type"].as_str().unwrap_or("-").to_owned(),
        ];
        let groups = t["groups"].as_array().cloned().unwrap_or_default();
        add_positions(&mut table, &lead, &groups, "group");
    }
    table.write(out)?;
    writeln!(out, "{} topic(s)", topics.len())
}

fn print_groups(out: &mut impl Write, groups: &[serde_json::Value]) -> std::io::Result<()> {
    let mut table = positions_table(
        &[
            ("GROUP", Align::Left),
            ("INVISIBILITY", Align::Right),
            ("MAX DELIVERIES", Align::Right),
        ],
        "TOPIC",
    );
    for g in groups {
        // `null`: the broker's value; absent: the backend has no such setting (gateway).
        let setting = |key: &str, unit: &str| match g.get(key) {
            None => "-".to_owned(),
            Some(v) => v
                .as_u64()
                .map_or_else(|| "broker's".to_owned(), |n| format!("{n}{unit}")),
        };
        let lead = [
            qualified(g, "group"),
            setting("invisibility_ms", " ms"),
            setting("max_deliveries", ""),
        ];
        let topics = g["topics"].as_array().cloned().unwrap_or_default();
        add_positions(&mut table, &lead, &topics, "topic");
    }
    table.write(out)?;
    writeln!(out, "{} group(s)", groups.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_a_backend_does_not_keep_are_dashes_not_zeros() {
        // A group's counters on a topic as the gateway lists them: only its own.
        let gateway = json!({"group": "GID_a", "delivered": 3, "acked": 3, "filtered": 0});
        assert_eq!(position_cells(&gateway), ["-", "-", "-", "-", "-", "-"]);
        let local = json!({"ready": 2, "in_flight": 0, "delayed": 0, "dead_letters_kept": 0,
            "accumulation": 2, "last_consume_time_ms": null});
        assert_eq!(position_cells(&local), ["2", "0", "0", "0", "2", "-"]);

        let mut out = Vec::new();
        let groups = [
            json!({"instance": null, "group": "GID_gw", "orderly": false, "topics": []}),
            json!({"instance": null, "group": "GID_local", "invisibility_ms": null,
                "max_deliveries": 5, "topics": []}),
        ];
        print_groups(&mut out, &groups).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = |name: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{text}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(row("GID_gw"), ["GID_gw", "-", "-", "-"]);
        assert_eq!(row("GID_local"), ["GID_local", "broker's", "5", "-"]);
    }

    /// Columns line up under their headers however long a name is (an instance-qualified
    /// topic is longer than the 32 characters the columns had: every column after it
    /// moved right on its rows and not on the header).
    #[test]
    fn table_columns_line_up_with_long_names() {
        let topics = [
            json!({"instance": "MQ_INST_1234567890123456_BXhkb1Yq", "topic": "orders",
                "message_type": "NORMAL", "groups": [{"group": "GID_a_rather_long_group_name_0123",
                "ready": 1234567, "in_flight": 0, "delayed": 0, "dead_letters_kept": 0,
                "accumulation": 1234567, "last_consume_time_ms": null}]}),
            json!({"instance": null, "topic": "T", "message_type": "FIFO", "groups": []}),
        ];
        let mut out = Vec::new();
        print_topics(&mut out, &topics).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let column = |line: &str, cell: &str| line.find(cell).unwrap_or_else(|| panic!("{text}"));
        let (header, long, short) = (lines[0], lines[1], lines[2]);
        assert_eq!(column(header, "TYPE"), column(long, "NORMAL"), "{text}");
        assert_eq!(column(header, "TYPE"), column(short, "FIFO"), "{text}");
        assert_eq!(column(header, "GROUP"), column(long, "GID_a"), "{text}");
        // Right-aligned counters end where their header ends.
        assert_eq!(
            column(header, "BACKLOG") + "BACKLOG".len(),
            long.rfind("1234567").unwrap() + "1234567".len(),
            "{text}"
        );
        assert!(long.ends_with("  -"), "{text}");
        assert!(
            short.ends_with("FIFO    -"),
            "no padding after a row's last cell: {text:?}"
        );
        assert_eq!(lines[3], "2 topic(s)");
    }

    #[test]
    fn a_deletion_without_a_message_count_prints_none() {
        #[derive(clap::Parser)]
        struct Admin {
            #[command(subcommand)]
            command: AdminCommand,
        }
        let parsed =
            <Admin as clap::Parser>::try_parse_from(["admin", "topics", "delete", "--topic", "T"])
                .expect("parses");
        let printed = |answer: serde_json::Value| {
            let mut out = Vec::new();
            print_answer(&mut out, &parsed.command, &answer).expect("printed");
            String::from_utf8(out).expect("UTF-8")
        };
        assert_eq!(
            printed(json!({"deleted": "T", "messages": 2})),
            "deleted T (2 message(s))\n"
        );
        // The gateway's answer: its engine does not say how many messages went.
        assert_eq!(printed(json!({"deleted": "T"})), "deleted T\n");
    }
}
