//! The official Python SDK (`mq-http-sdk==1.0.3`) scenarios under `tests/python/` and how to
//! run them against an endpoint, concurrently, with the interpreter named by
//! `MQ_INTEROP_PYTHON` (the virtualenv `cargo xtask interop-env` creates). Each scenario
//! asserts real behaviour and exits non-zero on failure.
//!
//! Shared by `crates/mq-broker/tests/python_sdk.rs` (the built-in broker, as a binary) and
//! `tests/tests/python_gateway.rs` (the gateway in front of RocketMQ), which include it with
//! `#[path]`.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const AK: &str = "interop-ak";
pub const SK: &str = "interop-sk";
pub const SCOPED_AK: &str = "interop-scoped-ak";
pub const SCOPED_SK: &str = "interop-scoped-sk";
pub const INSTANCE: &str = "MQ_INST_interop_py";

/// Topics the broker declares (`[INSTANCE/]NAME`); any other topic answers TopicNotExist.
pub const TOPICS: &[&str] = &[
    "T_basic", // the default instance
    "MQ_INST_interop_py/T_basic",
    "MQ_INST_interop_py/T_tag",
    "MQ_INST_interop_py/T_tx",
    "MQ_INST_interop_py/T_delay",
    "MQ_INST_interop_py/T_order",
    "MQ_INST_interop_py/T_ack",
    "MQ_INST_interop_py/T_err",
];

/// One script per scenario in `tests/python/`.
pub const SCENARIOS: &[&str] = &[
    "transactional", // the longest (≥ 10 s of check immunity): started first
    "basic",
    "tags",
    "delayed",
    "orderly",
    "ack_errors",
    "errors",
];

/// The interpreter with the official SDK, checked to import `mq_http_sdk` 1.0.3.
///
/// Without `MQ_INTEROP_PYTHON` the caller is skipped (`None`, said on stderr), unless
/// `MQ_REQUIRE_INTEROP=1` (as in `cargo xtask ci`), which makes it fail.
pub fn interop_python() -> Option<PathBuf> {
    let python = match std::env::var_os("MQ_INTEROP_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            assert!(
                std::env::var("MQ_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "MQ_REQUIRE_INTEROP=1 but MQ_INTEROP_PYTHON is not set \
                 (create the venv with `cargo run -p xtask -- interop-env`)"
            );
            eprintln!(
                "skipping the Python SDK interop tests: MQ_INTEROP_PYTHON is not set \
                 (`cargo run -p xtask -- interop-env` creates target/interop-venv)"
            );
            return None;
        }
    };
    let version = Command::new(&python)
        .args(["-c", "import mq_http_sdk.pkg_info as p; print(p.version)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        version.status.success(),
        "{} cannot import mq_http_sdk: {}",
        python.display(),
        String::from_utf8_lossy(&version.stderr)
    );
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    assert_eq!(version, "1.0.3", "expected mq-http-sdk 1.0.3");
    Some(python)
}

struct Outcome {
    name: &'static str,
    success: bool,
    elapsed: Duration,
    output: String,
}

fn run_scenario(
    python: &Path,
    endpoint: &str,
    name: &'static str,
    env: &[(&str, &str)],
) -> Outcome {
    let dir = workspace_root()
        .join("crates")
        .join("mq-broker")
        .join("tests")
        .join("python");
    let started = Instant::now();
    let result = Command::new(python)
        .arg("-B") // no __pycache__ in the source tree
        .arg(dir.join(format!("{name}.py")))
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("MQ_ENDPOINT", endpoint)
        .env("MQ_AK", AK)
        .env("MQ_SK", SK)
        .env("MQ_SCOPED_AK", SCOPED_AK)
        .env("MQ_SCOPED_SK", SCOPED_SK)
        .env("MQ_INSTANCE", INSTANCE)
        .env("MQ_SCENARIO_TIMEOUT", "50")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output();
    let elapsed = started.elapsed();
    match result {
        Ok(out) => Outcome {
            name,
            success: out.status.success(),
            elapsed,
            output: format!(
                "exit: {}\n--- stdout\n{}--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        },
        Err(e) => Outcome {
            name,
            success: false,
            elapsed,
            output: format!("could not run {}: {e}", python.display()),
        },
    }
}

/// The workspace root.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Runs `scenarios` concurrently against `endpoint` (90 s at most), with `env` added to
/// each script's environment, and returns the failures, each with its output; prints one
/// line per scenario.
pub fn run_all(
    python: &Path,
    endpoint: &str,
    scenarios: &[&'static str],
    env: &[(&'static str, &'static str)],
) -> Vec<String> {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    for &name in scenarios {
        let (tx, python, endpoint) = (tx.clone(), python.to_path_buf(), endpoint.to_owned());
        let env = env.to_vec();
        thread::spawn(move || {
            let _ = tx.send(run_scenario(&python, &endpoint, name, &env));
        });
    }
    drop(tx);
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while outcomes.len() < scenarios.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => break,
        }
    }
    let mut failures = Vec::new();
    for o in &outcomes {
        eprintln!(
            "scenario {:<14} {:>6.2}s {}",
            o.name,
            o.elapsed.as_secs_f64(),
            if o.success { "ok" } else { "FAILED" }
        );
        if !o.success {
            failures.push(format!("=== {} ===\n{}", o.name, o.output));
        }
    }
    for &name in scenarios {
        if !outcomes.iter().any(|o| o.name == name) {
            failures.push(format!("=== {name} === did not finish within 90 s"));
        }
    }
    eprintln!("all scenarios: {:.2}s", started.elapsed().as_secs_f64());
    failures
}
