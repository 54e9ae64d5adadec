//! End to end: every example of `mq-examples` runs against its embedded broker (no
//! `MQ_ENDPOINT`), finishes on its own, exits successfully and ends with the expected
//! `summary:` line.
//!
//! The examples are built once with `cargo build --examples -p mq-examples` (the paths of the
//! binaries come from cargo's JSON messages) and then run concurrently as child processes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Longest an example may run before it is killed and the test fails.
const EXAMPLE_TIME_LIMIT: Duration = Duration::from_secs(90);

/// Environment variables that would point an example at a real endpoint.
const ENDPOINT_VARS: [&str; 4] = ["MQ_ENDPOINT", "MQ_INSTANCE_ID", "MQ_TOPIC", "MQ_GROUP_ID"];

/// Each example and the last line it must print.
const EXPECTED: [(&str, &str); 10] = [
    ("normal", "summary: published=4 received=4 acked=4 ok"),
    (
        "tag_filter",
        "summary: published=6 received=4 unwanted=0 ok",
    ),
    ("delayed", "summary: delayed=4 received=4 on_time=4 ok"),
    ("scheduled", "summary: scheduled=3 received=3 on_time=3 ok"),
    (
        "transactional",
        "summary: committed=3 rolled_back=1 received=[0,1,2] ok",
    ),
    ("ordered", "summary: keys=2 received=8 fifo=true ok"),
    ("consume", "summary: published=8 received=8 acked=8 ok"),
    ("handler", "summary: published=6 handled=6 acked=6 ok"),
    (
        "async_std_transactional",
        "summary: committed=3 rolled_back=1 received=[0,1,2] ok",
    ),
    ("smol", "summary: published=4 received=4 acked=4 ok"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// Whether `cargo test` set `var` for this test process only (package metadata and paths of
/// the package under test). Such variables must not reach the nested `cargo build`: build
/// scripts that watch them (ring's does) would rebuild on every run.
fn set_by_cargo_for_this_test(var: &str) -> bool {
    const EXACT: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    EXACT.contains(&var) || var.starts_with("CARGO_PKG_") || var.starts_with("CARGO_BIN_EXE_")
}

/// `cargo` at the workspace root, without this test's own cargo variables.
fn cargo() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(set_by_cargo_for_this_test) {
            cargo.env_remove(var);
        }
    }
    cargo.current_dir(workspace_root());
    cargo
}

/// Builds the examples once and returns the executable of each, by name.
fn examples() -> &'static HashMap<String, PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let output = cargo()
            .args([
                "build",
                "--examples",
                "-p",
                "mq-examples",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(
            output.status.success(),
            "building the examples failed: {}",
            output.status
        );
        let mut built = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let is_example = message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "example"));
            if let (true, Some(name), Some(exe)) = (
                is_example,
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            ) {
                built.insert(name.to_owned(), PathBuf::from(exe));
            }
        }
        built
    })
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs an example with `env` on top of the inherited environment minus [`ENDPOINT_VARS`];
/// kills it after [`EXAMPLE_TIME_LIMIT`].
fn run_example<V: AsRef<OsStr>>(name: &str, env: &[(&str, V)]) -> Run {
    let exe = examples()
        .get(name)
        .unwrap_or_else(|| panic!("cargo built no example named {name}"));
    let mut command = Command::new(exe);
    for var in ENDPOINT_VARS {
        command.env_remove(var);
    }
    command
        .envs(env.iter().map(|(var, value)| (var, value.as_ref())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break status;
        }
        if started.elapsed() > EXAMPLE_TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {EXAMPLE_TIME_LIMIT:?}; output so far:\n{}",
                stdout.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

#[test]
fn every_example_succeeds_on_the_embedded_broker() {
    let mut built: Vec<&str> = examples().keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = EXPECTED.iter().map(|&(name, _)| name).collect();
    built.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        built, expected,
        "every example, and only those, has an expected summary"
    );
    let runs: Vec<_> = EXPECTED
        .iter()
        .map(|&(name, summary)| {
            (
                name,
                summary,
                thread::spawn(move || run_example::<&str>(name, &[])),
            )
        })
        .collect();
    let mut failures = Vec::new();
    for (name, summary, handle) in runs {
        let run = handle
            .join()
            .unwrap_or_else(|_| panic!("{name}: runner panicked"));
        let lines: Vec<&str> = run.stdout.lines().collect();
        let first = lines.first().copied().unwrap_or("");
        let last = lines.last().copied().unwrap_or("");
        let problems: Vec<String> = [
            (!run.status.success()).then(|| format!("exit status {}", run.status)),
            (!first.starts_with(
                "no MQ_ENDPOINT set: using an embedded mq-broker at http://127.0.0.1:",
            ))
            .then(|| format!("first line {first:?}")),
            (last != summary).then(|| format!("last line {last:?}, expected {summary:?}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        eprintln!("{name}: {:.1} s, {last}", run.elapsed.as_secs_f64());
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n--- stdout\n{}\n--- stderr\n{}",
                problems.join("; "),
                run.stdout,
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn an_incomplete_real_endpoint_configuration_is_refused() {
    // MQ_ENDPOINT set but no MQ_TOPIC/MQ_GROUP_ID: every example must say so and fail, not
    // fall back to the embedded broker or hang.
    let env = [
        ("MQ_ENDPOINT", "http://127.0.0.1:9"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
    ];
    for (name, _) in EXPECTED {
        let run = run_example(name, &env);
        assert_eq!(run.status.code(), Some(1), "{name}: {}", run.stdout);
        assert_eq!(
            run.stderr, "error: MQ_ENDPOINT is set but MQ_TOPIC is not\n",
            "{name}: the error's message, not its Debug form"
        );
        assert!(!run.stdout.contains("embedded"), "{name}: {}", run.stdout);
    }
}

#[cfg(unix)]
#[test]
fn a_variable_that_is_not_utf8_is_an_error_not_unset() {
    // A non-UTF-8 MQ_ENDPOINT once counted as unset: the example ran on an embedded broker
    // as if nothing was configured; a non-UTF-8 MQ_INSTANCE_ID was ignored.
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let not_utf8 = OsString::from_vec(vec![b'h', 0xff, b'x']);
    let configured = [
        ("MQ_ENDPOINT", OsString::from("http://127.0.0.1:9")),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", OsString::from("id")),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OsString::from("secret")),
        ("MQ_TOPIC", OsString::from("T")),
        ("MQ_GROUP_ID", OsString::from("GID_T")),
    ];
    // The SDK's own variables too (`credentials_from_env`, the proxy variables): a
    // non-UTF-8 security token was ignored (requests went without it), a key id was
    // reported "not set or is empty", a proxy variable ignored (requests went direct).
    let sdk_vars = [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "HTTPS_PROXY",
    ];
    for (name, _) in EXPECTED {
        for var in ["MQ_ENDPOINT", "MQ_INSTANCE_ID"]
            .into_iter()
            .chain(sdk_vars)
        {
            let mut env = configured.to_vec();
            env.retain(|(set, _)| *set != var);
            env.push((var, not_utf8.clone()));
            let run = run_example(name, &env);
            assert_eq!(run.status.code(), Some(1), "{name} {var}: {}", run.stdout);
            let expected = match var {
                "MQ_ENDPOINT" | "MQ_INSTANCE_ID" => format!("error: {var} is not valid UTF-8\n"),
                _ => format!("error: invalid configuration: {var} is not valid UTF-8\n"),
            };
            assert_eq!(run.stderr, expected, "{name}");
            assert!(!run.stdout.contains("embedded"), "{name}: {}", run.stdout);
        }
    }
}

#[test]
fn an_empty_instance_id_counts_as_unset() {
    // `export MQ_INSTANCE_ID=` clears it, as the credentials' empty variables count as
    // missing: the example goes on to its first request (here: refused connection).
    let env = [
        ("MQ_ENDPOINT", "http://127.0.0.1:9"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
        ("MQ_INSTANCE_ID", ""),
        ("MQ_TOPIC", "T"),
        ("MQ_GROUP_ID", "GID_T"),
    ];
    let run = run_example("normal", &env);
    assert_eq!(run.status.code(), Some(1), "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with("error: network error: Connect: connecting to 127.0.0.1:9: "),
        "{:?}",
        run.stderr
    );
}

#[test]
fn an_unreachable_endpoint_ends_an_example_with_the_error_message() {
    // A port nothing listens on: the first request fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("MQ_ENDPOINT", endpoint.as_str()),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
        ("MQ_TOPIC", "T"),
        ("MQ_GROUP_ID", "GID_T"),
    ];
    for name in ["normal", "smol"] {
        let run = run_example(name, &env);
        assert_eq!(run.status.code(), Some(1), "{name}: {}", run.stdout);
        let expected = format!("error: network error: Connect: connecting to 127.0.0.1:{port}: ");
        assert!(
            run.stderr.starts_with(&expected) && run.stderr.lines().count() == 1,
            "{name}: one line starting {expected:?}, got {:?}",
            run.stderr
        );
    }
}

#[test]
fn the_readme_main_command_does_not_build_the_gateway() {
    // `cargo run --example transactional` at the root builds the workspace's default members
    // with their features unified: the gateway (`mq-broker/rocketmq`, which needs protoc and
    // a quarter of an hour of compiling) must not be among them.
    let output = cargo()
        .args([
            "tree",
            "--locked",
            "-e",
            "features",
            "-i",
            "rocketmq-proxy-core",
        ])
        .output()
        .expect("run cargo tree");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("did not match any packages"),
        "the default members depend on the gateway:\n{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
}
