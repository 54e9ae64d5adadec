//! Interoperability with the official Python SDK (`mq-http-sdk==1.0.3`).
//!
//! Starts the real `mq-broker` binary with declared topics, a credential scoped to an
//! instance and short timings, then runs the scenarios under `tests/python/` against it,
//! concurrently, with the interpreter named by `MQ_INTEROP_PYTHON` (the virtualenv that
//! `cargo xtask interop-env` creates). Each scenario asserts real behaviour and exits non-zero
//! on failure.
//!
//! Without `MQ_INTEROP_PYTHON` the test is skipped, unless `MQ_REQUIRE_INTEROP=1` (as in
//! `cargo xtask ci`), which makes it fail.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const AK: &str = "interop-ak";
const SK: &str = "interop-sk";
const SCOPED_AK: &str = "interop-scoped-ak";
const SCOPED_SK: &str = "interop-scoped-sk";
const INSTANCE: &str = "MQ_INST_interop_py";

/// Topics the broker declares (`[INSTANCE/]NAME`); any other topic answers TopicNotExist.
const TOPICS: &[&str] = &[
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
const SCENARIOS: &[&str] = &[
    "transactional", // the longest (≥ 10 s of check immunity): started first
    "basic",
    "tags",
    "delayed",
    "orderly",
    "ack_errors",
    "errors",
];

fn interop_python() -> Option<PathBuf> {
    match std::env::var_os("MQ_INTEROP_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
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
            None
        }
    }
}

/// The `mq-broker` binary, killed on drop (also when the test fails).
struct BrokerProcess {
    child: Child,
    endpoint: String,
    stderr: Arc<Mutex<String>>,
}

impl BrokerProcess {
    fn start() -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mq-broker"));
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(["--credential", &format!("{AK}:{SK}")])
            .args([
                "--credential",
                &format!("{SCOPED_AK}:{SCOPED_SK}@{INSTANCE}"),
            ])
            .args(["--invisibility-secs", "2"])
            .args(["--order-invisibility-secs", "5"])
            .args(["--half-check-interval-secs", "1"])
            .env("MQ_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for topic in TOPICS {
            cmd.args(["--topic", topic]);
        }
        let mut child = cmd.spawn().expect("spawn mq-broker");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr_pipe).read_to_string(&mut text);
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&text);
        });
        // Keep draining stdout so the broker never blocks on a full pipe.
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = line_tx.send(line);
            }
        });
        let mut broker = Self {
            child,
            endpoint: String::new(),
            stderr,
        };
        let first = line_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| {
                panic!(
                    "mq-broker printed no first line ({e}); stderr: {}",
                    broker.stderr()
                )
            });
        let endpoint = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{first:?}");
        broker.endpoint = endpoint.to_owned();
        broker
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Outcome {
    name: &'static str,
    success: bool,
    elapsed: Duration,
    output: String,
}

fn run_scenario(python: &Path, broker: &BrokerProcess, name: &'static str) -> Outcome {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python");
    let started = Instant::now();
    let result = Command::new(python)
        .arg("-B") // no __pycache__ in the source tree
        .arg(dir.join(format!("{name}.py")))
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("MQ_ENDPOINT", &broker.endpoint)
        .env("MQ_AK", AK)
        .env("MQ_SK", SK)
        .env("MQ_SCOPED_AK", SCOPED_AK)
        .env("MQ_SCOPED_SK", SCOPED_SK)
        .env("MQ_INSTANCE", INSTANCE)
        .env("MQ_SCENARIO_TIMEOUT", "50")
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

#[test]
fn official_python_sdk_scenarios() {
    let Some(python) = interop_python() else {
        return;
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

    let broker = Arc::new(BrokerProcess::start());
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    for &name in SCENARIOS {
        let (tx, python, broker) = (tx.clone(), python.clone(), broker.clone());
        thread::spawn(move || {
            let _ = tx.send(run_scenario(&python, &broker, name));
        });
    }
    drop(tx);
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while outcomes.len() < SCENARIOS.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => break,
        }
    }
    let total = started.elapsed();
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
    for &name in SCENARIOS {
        if !outcomes.iter().any(|o| o.name == name) {
            failures.push(format!("=== {name} === did not finish within 90 s"));
        }
    }
    eprintln!("all scenarios: {:.2}s", total.as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} Python SDK scenarios failed:\n{}\n=== broker stderr ===\n{}",
        failures.len(),
        SCENARIOS.len(),
        failures.join("\n"),
        broker.stderr()
    );
}
