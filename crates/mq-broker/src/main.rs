//! `mq-broker`: the local ApsaraMQ for RocketMQ HTTP broker.
//!
//! The first line on stdout is exactly `listening on http://IP:PORT`; SIGINT or SIGTERM stops
//! it gracefully (exit status 0), a second signal at once. See [`mq_broker::run`].

use clap::Parser;

/// mimalloc, not glibc's malloc: with a backlog held, glibc's allocator spends up to half
/// of the broker's CPU sorting its free lists (BENCHMARKS.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mq_broker::BrokerArgs;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "mq-broker",
    version,
    about = "Local ApsaraMQ for RocketMQ HTTP broker (emulator)",
    // `--retention-secs -5` is the number's error, not "unexpected argument '-5'".
    allow_negative_numbers = true
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
    // A refused configuration is a usage error (exit status 2, as clap's own and `mq
    // serve`'s); a broker that cannot start (address in use, …) a failure (1).
    let (config, source) = match mq_broker::load_config(&cli.args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("mq-broker: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(mq_broker::run::run_config_until_signal(
        config,
        source,
        "mq-broker",
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
