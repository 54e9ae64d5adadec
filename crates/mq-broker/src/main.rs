//! `mq-broker`: the local ApsaraMQ for RocketMQ HTTP broker.
//!
//! The first line on stdout is exactly `listening on http://IP:PORT`.

use clap::Parser;
use mq_broker::config::CredentialSource;
use mq_broker::{Broker, BrokerArgs, DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET, load_config};
use std::io::Write;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "mq-broker",
    version,
    about = "Local ApsaraMQ for RocketMQ HTTP broker (emulator)"
)]
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    // Install the signal handlers before announcing the address: a supervisor may send
    // SIGTERM as soon as it has read the first line, and must then see a graceful exit.
    let mut signals =
        Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
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
            let _ = writeln!(
                out,
                "topics: {topics} declared; others answer TopicNotExist"
            );
        }
        let _ = out.flush();
    }
    signals.recv().await;
    eprintln!("mq-broker: shutting down");
    tokio::select! {
        () = broker.shutdown() => {}
        () = signals.recv() => eprintln!("mq-broker: second signal, stopping now"),
    }
    Ok(())
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
