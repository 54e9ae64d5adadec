//! `mq`: the command line of the ApsaraMQ for RocketMQ HTTP SDK.
//!
//! ```text
//! mq serve     [--listen 127.0.0.1:8080] [--credential AK:SK]...     a local broker
//! mq publish   --topic T [--tag X] [--key K] [--prop k=v]... [--delay 10s | --at RFC3339]
//!              [--sharding-key S] [--transactional [--immunity 10s]] [--body TEXT] [--json]
//! mq consume   --topic T --group G [--tag 'A||B'] [--orderly] [--batch N] [--wait S]
//!              [--no-ack] [--follow] [--max N] [--json]
//! mq tx half|commit|rollback --topic T --group G [--handle H]...
//! mq bench     publish|consume|roundtrip [--concurrency N] [--size BYTES] [--duration S] [--json]
//! mq admin clock [--advance 60s] | reset | trace --id ID
//!              | faults list | faults clear | faults add [--operation OP] (--error CODE |
//!                --reset | --latency 2s) [--probability P] [--count N]
//!              | peek --topic T (--group G [--state S] | --state half | --id ID | --key K
//!                | [--begin RFC3339] [--end RFC3339] [--after ID]) [--limit N]
//!              | publish --topic T --body TEXT [--tag X] [--key K] [--prop k=v]...
//!                [--delay 10s | --at RFC3339] [--transactional [--immunity 10s]]
//!              | purge --topic T
//!              | topics list | topics create --topic T [--type order] | topics delete --topic T
//!              | groups list | groups create --group G [--topic T]... [--invisibility 30s]
//!                [--max-deliveries N] | groups delete --group G
//!              | dead-letters list --topic T --group G [--limit N]
//!              | dead-letters resend|delete --topic T --group G [--id ID]
//!              | reset-offset --topic T --group G --time RFC3339
//!              | half commit|rollback --topic T --id ID
//!              [--admin-token TOKEN] [--json]
//! ```
//!
//! The endpoint and credentials come from `--endpoint`, `--access-key-id`,
//! `--access-key-secret`, `--security-token` and `--instance-id`, or from `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//! `ALIBABA_CLOUD_SECURITY_TOKEN` and `MQ_INSTANCE_ID` (the instance only where a command
//! is about an instance's topics and groups: not `mq admin clock`, `reset`, `trace` or
//! `faults`, which are about the whole broker or a message id). Errors are one line on stderr and a
//! non-zero exit code: 2 for a usage or configuration problem (including "no endpoint set"),
//! 1 when the operation itself failed.
//!
//! The library half of this crate holds the pieces worth reusing: the argument parsers in
//! [`args`] and the load generators of [`bench`](mod@crate::bench) (shared by `mq bench` and
//! the benchmark suite, `cargo xtask bench`).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod admin;
pub mod args;
pub mod bench;
mod commands;
mod output;

use clap::Parser;
use std::fmt;
use std::process::ExitCode;

pub use commands::{Cli, Command};

/// A failure of a command: one line for stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// What went wrong, one line.
    pub message: String,
    /// The process exit code (never 0).
    pub code: u8,
}

impl CliError {
    /// Exit code of a usage or configuration error.
    pub const USAGE: u8 = 2;
    /// Exit code of a failed operation.
    pub const FAILED: u8 = 1;

    /// A usage or configuration error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: Self::USAGE,
        }
    }

    /// A failed operation (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: one_line(message.into()),
            code: Self::FAILED,
        }
    }

    /// Exit code when stdout was closed by its reader (`mq … | head -1`): 128 + SIGPIPE,
    /// what a shell reports for a command that wrote into a closed pipe.
    pub const CLOSED_STDOUT: u8 = 141;

    /// Writing the command's output failed. A reader that closed the pipe (`| head`) ends
    /// the command quietly (no message, [`CLOSED_STDOUT`](Self::CLOSED_STDOUT)): it is done
    /// reading, not a failure to report; the command makes no further call.
    pub fn output(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self {
                message: String::new(),
                code: Self::CLOSED_STDOUT,
            }
        } else {
            Self::failed(format!("writing to stdout: {e}"))
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Joins the lines of a message so that an error is always exactly one line.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    }
}

/// Parses the process arguments, runs the command and returns the exit code. This is the
/// whole `mq` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidUtf8 => {
            // clap blames "one or more arguments": name the environment variable if that
            // is where the value came from.
            match env_not_utf8(&<Cli as clap::CommandFactory>::command()) {
                Some(variable) => {
                    stderr_line(format_args!("mq: {variable} is not valid UTF-8"));
                    return ExitCode::from(CliError::USAGE);
                }
                None => e.exit(),
            }
        }
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                stderr_line(format_args!("mq: {e}"));
            }
            ExitCode::from(e.code)
        }
    }
}

/// The first environment variable an argument of `command` (or of its subcommands) is read
/// from that is set to a value that is not UTF-8.
fn env_not_utf8(command: &clap::Command) -> Option<String> {
    let own = command
        .get_arguments()
        .filter_map(clap::Arg::get_env)
        .find(|name| std::env::var_os(name).is_some_and(|value| value.to_str().is_none()));
    own.map(|name| name.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(env_not_utf8))
}

/// Writes one line to stderr, ignoring a failure (`eprintln!` panics when stderr is a closed
/// pipe, as in `mq … 2>&1 | head -1`; there is nowhere left to report it).
pub(crate) fn stderr_line(line: fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Runs a parsed command line on a new tokio runtime.
///
/// # Errors
///
/// The command's [`CliError`]: its one line for stderr and its exit code (2 for a usage or
/// configuration problem, 1 when the operation failed).
pub fn run(cli: Cli) -> Result<(), CliError> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(commands::dispatch(cli));
    // Do not wait for background tasks (idle pooled connections, a broker being served).
    runtime.shutdown_background();
    result
}

/// Log to stderr, filtered by `MQ_LOG` (default: warnings, but not the client's poison
/// event: `mq consume` and `mq tx half` print their own line per poison message);
/// coloured only on a terminal.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MQ_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!(
                    "warn,{}=off",
                    mq_tokio::POISON_LOG_TARGET
                ))
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line() {
        let e = CliError::failed("first\nsecond\r\n third ");
        assert_eq!(e.message, "first second third");
        assert_eq!(e.code, 1);
        assert_eq!(CliError::usage("x").code, 2);
    }
}
