//! `mq admin …`: the admin API of this project's broker (`/admin/…`, see the README, "Seeing
//! what the broker holds"), with the endpoint and credentials of the other commands; or the
//! broker's admin token (`--admin-token`, `MQ_ADMIN_TOKEN`) instead of the credentials.

use crate::CliError;
use crate::args::{ConnectionArgs, format_rfc3339_ms, parse_duration, parse_rfc3339_ms};
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

/// Flags every `mq admin` call takes.
#[derive(Clone, Default, clap::Args)]
pub(crate) struct AdminConn {
    #[command(flatten)]
    conn: ConnectionArgs,
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
            .field("conn", &self.conn)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("json", &self.json)
            .finish()
    }
}

/// `mq admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show the broker's clock; with --advance, move a test clock (`--test-clock`) forward.
    Clock(ClockArgs),
    /// List messages of a topic without consuming them (ready, in_flight, delayed, dead,
    /// half).
    Peek(PeekArgs),
    /// Drop every message of a topic (groups stay).
    Purge(PurgeArgs),
    /// Forget every message, group and counter of the broker (declared topics stay).
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
    admin: AdminConn,
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
    /// The group's dead letters, with their bodies.
    List(DeadLetterArgs),
    /// Hand them (all, or --id) to the group again as new messages.
    Resend(DeadLetterArgs),
    /// Drop them (all, or --id).
    Delete(DeadLetterArgs),
}

/// Flags of `mq admin dead-letters …`.
#[derive(Debug, clap::Args)]
pub struct DeadLetterArgs {
    #[command(flatten)]
    on: GroupOnTopic,
    /// Only the dead letter of this message id (resend, delete).
    #[arg(long)]
    id: Option<String>,
    /// Most dead letters listed (1..=1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// The connection flags and the group and topic of a dead-letter or offset call.
#[derive(Debug, clap::Args)]
pub(crate) struct GroupOnTopic {
    #[command(flatten)]
    admin: AdminConn,
    /// The topic.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// The consumer group.
    #[arg(long)]
    group: mq_tokio::GroupId,
}

impl GroupOnTopic {
    /// `/admin/topics/{topic}/groups/{group}/{rest}`.
    fn path(&self, rest: &str) -> String {
        format!("/admin/topics/{}/groups/{}/{rest}", self.topic, self.group)
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

/// Flags of a listing.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminConn,
}

/// Flags of `mq admin topics create`.
#[derive(Debug, clap::Args)]
pub struct TopicCreateArgs {
    #[command(flatten)]
    admin: AdminConn,
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
    admin: AdminConn,
    /// The topic.
    #[arg(long)]
    topic: mq_tokio::TopicName,
}

/// Flags of `mq admin groups create`.
#[derive(Debug, clap::Args)]
pub struct GroupCreateArgs {
    #[command(flatten)]
    admin: AdminConn,
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
    admin: AdminConn,
    /// The group.
    #[arg(long)]
    group: mq_tokio::GroupId,
}

/// Flags of `mq admin purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    admin: AdminConn,
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

/// Flags of `mq admin peek`.
#[derive(Debug, clap::Args)]
pub struct PeekArgs {
    #[command(flatten)]
    admin: AdminConn,
    /// Topic to look at.
    #[arg(long)]
    topic: mq_tokio::TopicName,
    /// Consumer group (all states but `half`).
    #[arg(long)]
    group: Option<mq_tokio::GroupId>,
    /// ready, in_flight, delayed, dead or half.
    #[arg(long, default_value = "ready", conflicts_with_all = ["id", "key"])]
    state: String,
    /// Find the message with this id (and where each group stands with it) instead.
    #[arg(long, conflicts_with = "key")]
    id: Option<String>,
    /// Find the messages with this key (KEYS) instead.
    #[arg(long)]
    key: Option<String>,
    /// List the messages published at or after this time (RFC 3339) instead, in publish
    /// order, consumed ones included.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms, conflicts_with_all = ["id", "key"])]
    begin: Option<u64>,
    /// With --begin: published before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms, requires = "begin")]
    end: Option<u64>,
    /// With --begin: after this message id (the `next` of the previous page).
    #[arg(long, value_name = "ID", requires = "begin")]
    after: Option<String>,
    /// Most messages listed (1..=1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// Runs one `mq admin` command.
///
/// # Errors
///
/// A usage error (no endpoint, no credentials or token); a failed call (the broker's error
/// code and message, or the network error).
pub(crate) async fn run(command: AdminCommand) -> Result<(), CliError> {
    let (admin, method, target) = match &command {
        AdminCommand::Clock(a) => match a.advance {
            Some(by) => (
                &a.admin,
                Method::POST,
                format!("/admin/clock?advance_ms={}", by.as_millis()),
            ),
            None => (&a.admin, Method::GET, "/admin/clock".to_owned()),
        },
        AdminCommand::Peek(a) => {
            let selector = match (&a.id, &a.key, a.begin) {
                (Some(id), _, _) => format!("id={}", encode(id)),
                (None, Some(key), _) => format!("key={}", encode(key)),
                (None, None, Some(begin)) => {
                    let mut range = format!("begin_ms={begin}");
                    if let Some(end) = a.end {
                        range.push_str(&format!("&end_ms={end}"));
                    }
                    if let Some(after) = &a.after {
                        range.push_str(&format!("&after={}", encode(after)));
                    }
                    range
                }
                (None, None, None) => format!("state={}", encode(&a.state)),
            };
            let mut target = format!(
                "/admin/topics/{}/messages?{selector}&limit={}",
                a.topic, a.limit
            );
            if let Some(g) = &a.group {
                target.push_str(&format!("&group={g}"));
            }
            if let Some(ns) = a.admin.conn.instance()? {
                target.push_str(&format!("&ns={ns}"));
            }
            (&a.admin, Method::GET, target)
        }
        AdminCommand::Purge(a) => {
            let mut target = format!("/admin/topics/{}/purge", a.topic);
            if let Some(ns) = a.admin.conn.instance()? {
                target.push_str(&format!("?ns={ns}"));
            }
            (&a.admin, Method::POST, target)
        }
        AdminCommand::Reset(a) => (&a.admin, Method::POST, "/admin/reset".to_owned()),
        AdminCommand::Topics(TopicsCommand::List(a)) => {
            (&a.admin, Method::GET, scoped(&a.admin, "/admin/topics")?)
        }
        AdminCommand::Topics(TopicsCommand::Create(a)) => (
            &a.admin,
            Method::POST,
            scoped(
                &a.admin,
                &format!(
                    "/admin/topics?topic={}&message_type={}",
                    a.topic,
                    encode(&a.message_type)
                ),
            )?,
        ),
        AdminCommand::Topics(TopicsCommand::Delete(a)) => (
            &a.admin,
            Method::DELETE,
            scoped(&a.admin, &format!("/admin/topics/{}", a.topic))?,
        ),
        AdminCommand::Groups(GroupsCommand::List(a)) => {
            (&a.admin, Method::GET, scoped(&a.admin, "/admin/groups")?)
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
            (&a.admin, Method::POST, scoped(&a.admin, &target)?)
        }
        AdminCommand::Groups(GroupsCommand::Delete(a)) => (
            &a.admin,
            Method::DELETE,
            scoped(&a.admin, &format!("/admin/groups/{}", a.group))?,
        ),
        AdminCommand::DeadLetters(d) => {
            let (a, method, tail) = match d {
                DeadLettersCommand::List(a) => (a, Method::GET, format!("?limit={}", a.limit)),
                DeadLettersCommand::Resend(a) => (a, Method::POST, "/resend".to_owned()),
                DeadLettersCommand::Delete(a) => (a, Method::DELETE, String::new()),
            };
            let mut target = a.on.path(&format!("dead_letters{tail}"));
            if let (Some(id), false) = (&a.id, method == Method::GET) {
                target.push_str(&format!("?id={}", encode(id)));
            }
            (&a.on.admin, method, scoped(&a.on.admin, &target)?)
        }
        AdminCommand::ResetOffset(a) => (
            &a.on.admin,
            Method::POST,
            scoped(
                &a.on.admin,
                &a.on.path(&format!("reset_offset?time_ms={}", a.time)),
            )?,
        ),
        AdminCommand::Half(h) => {
            let (a, action) = match h {
                HalfCommand::Commit(a) => (a, "commit"),
                HalfCommand::Rollback(a) => (a, "rollback"),
            };
            let target = format!("/admin/topics/{}/half/{}/{action}", a.topic, encode(&a.id));
            (&a.admin, Method::POST, scoped(&a.admin, &target)?)
        }
        AdminCommand::Trace(a) => (
            &a.admin,
            Method::GET,
            format!("/admin/messages/{}/trace", encode(&a.id)),
        ),
    };
    let answer = call(admin, method, &target).await?;
    let mut out = std::io::stdout().lock();
    let written = if admin.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        )
    } else {
        match command {
            AdminCommand::Clock(_) => print_clock(&mut out, &answer),
            AdminCommand::Peek(_) => print_messages(&mut out, &answer),
            AdminCommand::Purge(_) => writeln!(
                out,
                "purged {} message(s)",
                answer["purged"].as_u64().unwrap_or(0)
            ),
            AdminCommand::Reset(_) => writeln!(out, "reset"),
            AdminCommand::Topics(TopicsCommand::List(_)) => {
                let topics = answer["topics"].as_array().cloned().unwrap_or_default();
                print_topics(&mut out, &topics)
            }
            AdminCommand::Topics(TopicsCommand::Create(_)) => {
                print_topics(&mut out, std::slice::from_ref(&answer["topic"]))
            }
            AdminCommand::Groups(GroupsCommand::List(_)) => {
                let groups = answer["groups"].as_array().cloned().unwrap_or_default();
                print_groups(&mut out, &groups)
            }
            AdminCommand::Groups(GroupsCommand::Create(_)) => {
                print_groups(&mut out, std::slice::from_ref(&answer["group"]))
            }
            AdminCommand::DeadLetters(DeadLettersCommand::List(_)) => {
                print_messages(&mut out, &answer)
            }
            AdminCommand::DeadLetters(DeadLettersCommand::Resend(_)) => writeln!(
                out,
                "resent {} dead letter(s)",
                answer["resent"].as_u64().unwrap_or(0)
            ),
            AdminCommand::DeadLetters(DeadLettersCommand::Delete(_)) => writeln!(
                out,
                "deleted {} dead letter(s)",
                answer["deleted"].as_u64().unwrap_or(0)
            ),
            AdminCommand::ResetOffset(_) => writeln!(
                out,
                "{} message(s) to be delivered again, {} skipped",
                answer["redelivered"].as_u64().unwrap_or(0),
                answer["skipped"].as_u64().unwrap_or(0)
            ),
            AdminCommand::Trace(_) => print_trace(&mut out, &answer),
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
            | AdminCommand::Groups(GroupsCommand::Delete(_)) => writeln!(
                out,
                "deleted {} ({} message(s))",
                answer["deleted"].as_str().unwrap_or("?"),
                answer["messages"].as_u64().unwrap_or(0)
            ),
        }
    };
    written.map_err(|e| CliError::failed(format!("writing the answer: {e}")))
}

/// `target` with the instance of the connection flags (`ns=`), if one is set.
fn scoped(admin: &AdminConn, target: &str) -> Result<String, CliError> {
    Ok(match admin.conn.instance()? {
        Some(ns) => {
            let sep = if target.contains('?') { '&' } else { '?' };
            format!("{target}{sep}ns={ns}")
        }
        None => target.to_owned(),
    })
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One admin call; the JSON answer of a 200, or the broker's error as a failure.
async fn call(
    admin: &AdminConn,
    method: Method,
    target: &str,
) -> Result<serde_json::Value, CliError> {
    let endpoint: Endpoint = admin
        .conn
        .require_endpoint()?
        .parse()
        .map_err(|e| CliError::usage(format!("--endpoint: {e}")))?;
    let token = admin
        .admin_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let credentials = match (token, admin.conn.credentials()) {
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
    let mut request: http::Request<Bytes> = admin_request(&ctx, method, target);
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
    writeln!(
        out,
        "{:<32}  {:<9}  {:>5}  {:<24}  BODY",
        "MESSAGE ID", "STATE", "TIMES", "NEXT VISIBLE"
    )?;
    for m in &messages {
        let next = m["next_visible_time"]
            .as_u64()
            .map(format_rfc3339_ms)
            .unwrap_or_else(|| "-".to_owned());
        let body = m["body"].as_str().unwrap_or("-");
        let body: String = body.chars().take(60).collect();
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
        writeln!(
            out,
            "{:<32}  {:<9}  {:>5}  {:<24}  {}",
            m["message_id"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            m["consumed_times"].as_u64().unwrap_or(0),
            next,
            body.replace(['\n', '\r'], " ")
        )?;
        if !groups.is_empty() {
            writeln!(out, "{:<32}  groups: {}", "", groups.join(" "))?;
        }
    }
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
        answer["topic"].as_str().unwrap_or("?")
    )?;
    writeln!(
        out,
        "{:<24}  {:<13}  {:<24}  DETAILS",
        "TIME", "EVENT", "GROUP"
    )?;
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    for (i, e) in events.iter().enumerate() {
        if i == 1 && answer["dropped_events"].as_u64().unwrap_or(0) > 0 {
            writeln!(
                out,
                "({} event(s) not kept)",
                answer["dropped_events"].as_u64().unwrap_or(0)
            )?;
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
        writeln!(
            out,
            "{:<24}  {:<13}  {:<24}  {}",
            time_cell(&e["time_ms"]),
            e["event"].as_str().unwrap_or("?"),
            e["group"].as_str().unwrap_or("-"),
            details.join(", ")
        )?;
    }
    Ok(())
}

/// A time column: RFC 3339 with ms, or `-`.
fn time_cell(v: &serde_json::Value) -> String {
    v.as_u64()
        .map(format_rfc3339_ms)
        .unwrap_or_else(|| "-".to_owned())
}

/// The counters of one group on one topic, as table cells; `-` for a counter the backend
/// does not keep (the gateway leaves the cluster's counters out rather than show 0).
fn position_cells(p: &serde_json::Value) -> String {
    let n = |k: &str| {
        p[k].as_u64()
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    };
    format!(
        "{:>7}  {:>9}  {:>7}  {:>6}  {:>7}  {}",
        n("ready"),
        n("in_flight"),
        n("delayed"),
        n("dead_letters_kept"),
        n("accumulation"),
        time_cell(&p["last_consume_time_ms"])
    )
}

const POSITION_HEADER: &str = "  READY  IN FLIGHT  DELAYED    DEAD  BACKLOG  LAST CONSUME";

/// `instance/name` (or `name` for the default instance) of a listed topic or group.
fn qualified(item: &serde_json::Value, name: &str) -> String {
    let name = item[name].as_str().unwrap_or("?");
    match item["instance"].as_str() {
        Some(i) => format!("{i}/{name}"),
        None => name.to_owned(),
    }
}

/// One table row per position (`-` when there is none), each after `lead`.
fn print_positions(
    out: &mut impl Write,
    lead: &str,
    positions: &[serde_json::Value],
    name: &str,
) -> std::io::Result<()> {
    if positions.is_empty() {
        writeln!(out, "{lead}-")?;
    }
    for p in positions {
        writeln!(
            out,
            "{lead}{:<24}{}",
            p[name].as_str().unwrap_or("?"),
            position_cells(p)
        )?;
    }
    Ok(())
}

fn print_topics(out: &mut impl Write, topics: &[serde_json::Value]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<32}  {:<11}  {:<24}{POSITION_HEADER}",
        "TOPIC", "TYPE", "GROUP"
    )?;
    for t in topics {
        let lead = format!(
            "{:<32}  {:<11}  ",
            qualified(t, "topic"),
            t["message_type"].as_str().unwrap_or("-")
        );
        let groups = t["groups"].as_array().cloned().unwrap_or_default();
        print_positions(out, &lead, &groups, "group")?;
    }
    writeln!(out, "{} topic(s)", topics.len())
}

fn print_groups(out: &mut impl Write, groups: &[serde_json::Value]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<32}  {:>12}  {:>14}  {:<24}{POSITION_HEADER}",
        "GROUP", "INVISIBILITY", "MAX DELIVERIES", "TOPIC"
    )?;
    for g in groups {
        // `null`: the broker's value; absent: the backend has no such setting (gateway).
        let setting = |key: &str, unit: &str| match g.get(key) {
            None => "-".to_owned(),
            Some(v) => v
                .as_u64()
                .map_or_else(|| "broker's".to_owned(), |n| format!("{n}{unit}")),
        };
        let (invisibility, max) = (
            setting("invisibility_ms", " ms"),
            setting("max_deliveries", ""),
        );
        let lead = format!(
            "{:<32}  {invisibility:>12}  {max:>14}  ",
            qualified(g, "group")
        );
        let topics = g["topics"].as_array().cloned().unwrap_or_default();
        print_positions(out, &lead, &topics, "topic")?;
    }
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
        let cells: Vec<String> = position_cells(&gateway)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(cells, ["-", "-", "-", "-", "-", "-"]);
        let local = json!({"ready": 2, "in_flight": 0, "delayed": 0, "dead_letters_kept": 0,
            "accumulation": 2, "last_consume_time_ms": null});
        assert_eq!(
            position_cells(&local)
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["2", "0", "0", "0", "2", "-"]
        );

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
}
