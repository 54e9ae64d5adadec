//! `mq-broker`: the local ApsaraMQ for RocketMQ HTTP broker.
//!
//! The first line on stdout is exactly `listening on http://IP:PORT`.

use clap::Parser;
use mq_broker::config::CredentialSource;
use mq_broker::{Broker, BrokerArgs, DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET, load_config};
use std::io::Write;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "mq-broker", version, about = "Local ApsaraMQ for RocketMQ HTTP broker (emulator)")]
struct Cli {
    #[command(flatten)]
    args: BrokerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MQ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mq-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: BrokerArgs) -> Result<(), String> {
    let (config, source) = load_config(&args)?;
    let listen = config.listen;
    let topics = config.topics.len();
    let broker = Broker::start(config)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", broker.endpoint());
        match source {
            CredentialSource::Development => {
                let _ = writeln!(
                    out,
                    "credentials: development pair {DEV_ACCESS_KEY_ID}:{DEV_ACCESS_KEY_SECRET} (set --credential AK:SK to choose your own)"
                );
            }
            CredentialSource::Environment => {
                let _ = writeln!(out, "credentials: from ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET");
            }
            CredentialSource::Configured => {
                let _ = writeln!(out, "credentials: as configured");
            }
        }
        if topics == 0 {
            let _ = writeln!(out, "topics: created on first use");
        } else {
            let _ = writeln!(out, "topics: {topics} declared; others answer TopicNotExist");
        }
        let _ = out.flush();
    }
    shutdown_signal().await;
    eprintln!("mq-broker: shutting down");
    broker.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
