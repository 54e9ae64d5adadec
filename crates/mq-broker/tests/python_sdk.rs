//! Interoperability with the official Python SDK (`mq-http-sdk==1.0.3`): the real
//! `mq-broker` binary with declared topics, a credential scoped to an instance and short
//! timings, and every scenario of `tests/python/` against it (see `support/python.rs`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[path = "support/python.rs"]
mod python;

use python::*;
/// The `mq-broker` binary, killed on drop (also when the test fails).
struct BrokerProcess {
    child: Child,
    endpoint: String,
    stderr: Arc<Mutex<String>>,
}

impl BrokerProcess {
    /// The broker with the scenarios' topics, credentials and timings, plus `extra` flags.
    fn start(extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mq-broker"));
        cmd.args(extra);
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

#[test]
fn official_python_sdk_scenarios() {
    let Some(python) = interop_python() else {
        return;
    };
    let broker = BrokerProcess::start(&[]);
    let failures = run_all(&python, &broker.endpoint, SCENARIOS, &[]);
    assert!(
        failures.is_empty(),
        "{} of {} Python SDK scenarios failed:\n{}\n=== broker stderr ===\n{}",
        failures.len(),
        SCENARIOS.len(),
        failures.join("\n"),
        broker.stderr()
    );
}

/// The broker's fault injection (`--faults`) seen through the official SDK: its exception
/// types and codes for injected errors and for a connection closed unanswered
/// (`tests/python/faults.py`).
#[test]
fn official_python_sdk_sees_injected_faults() {
    const TOKEN: &str = "interop-admin-token";
    let Some(python) = interop_python() else {
        return;
    };
    let broker = BrokerProcess::start(&[
        "--faults",
        "--admin-token",
        TOKEN,
        "--topic",
        "MQ_INST_interop_py/T_fault",
    ]);
    let failures = run_all(
        &python,
        &broker.endpoint,
        &["faults"],
        &[("MQ_ADMIN_TOKEN", TOKEN)],
    );
    assert!(
        failures.is_empty(),
        "{}\n=== broker stderr ===\n{}",
        failures.join("\n"),
        broker.stderr()
    );
}
