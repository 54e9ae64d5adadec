//! Running the broker as a program: start from [`BrokerArgs`], announce the address, serve
//! until SIGINT/SIGTERM (Ctrl-C), then shut down gracefully. Shared by the `mq-broker` binary
//! and `mq serve`, so both behave and print exactly the same.

use crate::Broker;
use crate::config::{BrokerArgs, CredentialSource, ServerConfig, load_config};
use crate::config::{DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET};
use std::io::Write;

/// Loads the configuration, starts the broker on the current tokio runtime, prints the
/// banner on stdout (the first line is exactly `listening on http://IP:PORT`), serves until
/// the first SIGINT or SIGTERM, then shuts down gracefully; a second signal stops at once.
///
/// `program` prefixes the messages written to stderr (`mq-broker: shutting down`). Errors
/// are one line, ready to print after `program: `.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), String> {
/// use mq_broker::BrokerArgs;
/// let args = BrokerArgs { listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
/// mq_broker::run::run_until_signal(&args, "my-broker").await
/// # }
/// ```
///
/// # Errors
///
/// A one-line message when the configuration is refused ([`load_config`]),
/// a signal handler cannot be installed, or the broker cannot start ([`Broker::start`](crate::Broker::start)).
pub async fn run_until_signal(args: &BrokerArgs, program: &str) -> Result<(), String> {
    let (config, source) = load_config(args)?;
    run_config_until_signal(config, source, program).await
}

/// [`run_until_signal`] for a configuration already loaded with [`load_config`] (a caller
/// that tells a refused configuration from a broker that cannot start, as `mq serve` does
/// for its exit code).
///
/// # Errors
///
/// A one-line message when a signal handler cannot be installed or the broker cannot start
/// ([`Broker::start`](crate::Broker::start)).
pub async fn run_config_until_signal(
    config: ServerConfig,
    source: CredentialSource,
    program: &str,
) -> Result<(), String> {
    // Install the signal handlers before announcing the address: a supervisor may send
    // SIGTERM as soon as it has read the first line, and must then see a graceful exit.
    let mut signals =
        Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let listen = config.listen;
    let topics = config.topics.len();
    let data_dir = config.data_dir.clone();
    let test_clock = config.test_clock;
    let faults = config.faults;
    let cluster = match &config.backend {
        crate::config::BackendConfig::RocketMq(r) => Some((r.proxy.clone(), !r.admin.is_empty())),
        crate::config::BackendConfig::BuiltIn => None,
    };
    let broker = Broker::start(config)
        .await
        .map_err(|e| format!("cannot start on {listen}: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", broker.endpoint());
        let _ = writeln!(out, "{}", credentials_line(source));
        let _ = writeln!(out, "{}", admin_line(broker.admin_token()));
        if let Some(url) = broker.console_url() {
            let _ = writeln!(
                out,
                "console: {url} (log in with the admin token or an AccessKey pair)"
            );
        }
        match (&cluster, broker.gateway_started()) {
            (Some((proxy, admin)), Some(started)) => {
                let _ = writeln!(
                    out,
                    "state: kept by the RocketMQ cluster at {proxy} (gateway; nothing is stored here)"
                );
                let _ = if topics == 0 && *admin {
                    writeln!(
                        out,
                        "topics: created on the cluster on first use (declaring any --topic turns this off)"
                    )
                } else {
                    writeln!(
                        out,
                        "topics: {topics} declared, {} created on the cluster; others as the cluster has them",
                        started.created_topics
                    )
                };
                let _ = if started.generated_key {
                    writeln!(
                        out,
                        "handle key: generated at start; receipt handles are valid for this process only (set --handle-key, the same on every gateway process)"
                    )
                } else {
                    writeln!(out, "handle key: as configured")
                };
            }
            _ => {
                if topics == 0 {
                    let _ = writeln!(out, "topics: created on first use");
                } else {
                    let _ = writeln!(
                        out,
                        "topics: {topics} declared; others answer TopicNotExist"
                    );
                }
                let _ = match &data_dir {
                    Some(dir) => {
                        writeln!(out, "state: kept in {} (survives restarts)", dir.display())
                    }
                    None => writeln!(out, "state: in memory (--data-dir DIR keeps it)"),
                };
                if faults {
                    let _ = writeln!(out, "fault injection: on (POST /admin/faults)");
                }
                if test_clock {
                    let _ = writeln!(
                        out,
                        "test clock: on (POST /admin/clock?advance_ms=N moves it forward)"
                    );
                }
            }
        }
        let _ = out.flush();
    }
    signals.recv().await;
    eprintln!("{program}: shutting down");
    tokio::select! {
        () = broker.shutdown() => {}
        () = signals.recv() => eprintln!("{program}: second signal, stopping now"),
    }
    Ok(())
}

/// The banner line that says where the credentials in effect came from.
/// The admin API's line of the banner: a generated token is shown (the one way to learn
/// it); a configured one never is.
fn admin_line(token: Option<(&str, bool)>) -> String {
    match token {
        None => "admin: off".to_owned(),
        Some((token, true)) => format!(
            "admin: /admin/ with signed requests or \"Authorization: Bearer {token}\" (generated; set --admin-token to choose)"
        ),
        Some((_, false)) => {
            "admin: /admin/ with signed requests or the configured bearer token".to_owned()
        }
    }
}

fn credentials_line(source: CredentialSource) -> String {
    match source {
        CredentialSource::Development => format!(
            "credentials: development pair {DEV_ACCESS_KEY_ID}:{DEV_ACCESS_KEY_SECRET} (set --credential AK:SK to choose your own)"
        ),
        CredentialSource::Environment => {
            "credentials: from ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET".to_owned()
        }
        CredentialSource::Configured => "credentials: as configured".to_owned(),
    }
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), registered when created.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(windows)]
        {
            Ok(Self {
                ctrl_c: tokio::signal::windows::ctrl_c()?,
            })
        }
    }

    /// Waits for the next signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(windows)]
        {
            let _ = self.ctrl_c.recv().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_line_shows_a_generated_token_only() {
        assert!(
            admin_line(Some(("generated-token-123", true))).contains("Bearer generated-token-123")
        );
        assert!(!admin_line(Some(("configured-token-1", false))).contains("configured-token-1"));
        assert_eq!(admin_line(None), "admin: off");
    }

    #[test]
    fn credentials_line_names_the_source_and_never_a_configured_secret() {
        assert!(credentials_line(CredentialSource::Development).contains(DEV_ACCESS_KEY_ID));
        assert_eq!(
            credentials_line(CredentialSource::Configured),
            "credentials: as configured"
        );
        assert!(credentials_line(CredentialSource::Environment).contains("ALIBABA_CLOUD"));
    }

    #[tokio::test]
    async fn bad_configuration_is_one_line_error() {
        let args = BrokerArgs {
            credentials: vec!["nocolon".into()],
            ..Default::default()
        };
        let e = run_until_signal(&args, "t").await.unwrap_err();
        // Without `:` nothing tells the id from a secret: the value is not shown.
        assert!(
            e.contains("credential \"<redacted>\"") && !e.contains("nocolon") && !e.contains('\n'),
            "{e}"
        );
    }
}
