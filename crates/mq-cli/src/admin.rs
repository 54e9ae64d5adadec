//! `mq admin …`: the admin API of this project's broker (`/admin/…`, see the README, "Seeing
//! what the broker holds"), with the endpoint and credentials of the other commands; or the
//! broker's admin token (`--admin-token`, `MQ_ADMIN_TOKEN`) instead of the credentials.

use crate::CliError;
use crate::args::{ConnectionArgs, format_rfc3339_ms, parse_duration};
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
            let selector = match (&a.id, &a.key) {
                (Some(id), _) => format!("id={}", encode(id)),
                (None, Some(key)) => format!("key={}", encode(key)),
                (None, None) => format!("state={}", encode(&a.state)),
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
        }
    };
    written.map_err(|e| CliError::failed(format!("writing the answer: {e}")))
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
    writeln!(out, "{} message(s)", messages.len())
}
