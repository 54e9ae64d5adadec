//! End-to-end tests of the `mq` binary against an in-process broker on 127.0.0.1.

use mq_broker::{Credential, EmbeddedBroker, ServerConfig};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const AK: &str = "cli-test-ak";
const SK: &str = "cli-test-sk";

/// A broker on its own thread and runtime (the test thread runs the binary synchronously);
/// stopped on drop.
struct TestBroker(EmbeddedBroker);

impl TestBroker {
    fn start() -> Self {
        let broker = EmbeddedBroker::start(ServerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            credentials: vec![Credential::new(AK, SK)],
            test_clock: true,
            ..Default::default()
        });
        Self(broker.expect("broker"))
    }

    /// `mq` with this broker's endpoint and credentials (and nothing from the environment).
    fn mq(&self, args: &[&str]) -> Command {
        let mut c = mq(args);
        c.env("MQ_ENDPOINT", self.0.endpoint())
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK);
        c
    }
}

/// `mq` with a clean environment (none of the variables it reads).
fn mq(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mq"));
    c.args(args);
    for var in [
        "MQ_ENDPOINT",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "MQ_INSTANCE_ID",
        "MQ_LOG",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs with `stdin` and a time limit; panics on timeout.
fn run_with(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mq");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "mq did not finish within {limit:?}; stdout: {}; stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(cmd: Command) -> Output {
    run_with(cmd, None, Duration::from_secs(30))
}

/// Runs and expects success; returns stdout.
fn ok(cmd: Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "mq failed: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn md5(body: &str) -> String {
    mq_tokio::mq_proto::body_md5(body)
}

#[test]
fn publish_body_and_stdin_then_consume_json() {
    let b = TestBroker::start();
    // Register the group first: it receives what is published after.
    let empty = ok(b.mq(&[
        "consume", "--topic", "CliT", "--group", "GID_cli", "--wait", "0",
    ]));
    assert_eq!(empty, "");

    let out = ok(b.mq(&[
        "publish",
        "--topic",
        "CliT",
        "--tag",
        "TagA",
        "--key",
        "k1",
        "--prop",
        "color=red",
        "--body",
        "hello",
    ]));
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 2, "{out:?}");
    assert_eq!(fields[0].len(), 32, "message id: {out:?}");
    assert_eq!(fields[1], md5("hello"));

    let out = run_with(
        b.mq(&["publish", "--topic", "CliT", "--json"]),
        Some("line one\n\nline two\r\nline three\n"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipts = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(receipts.len(), 3, "blank lines are skipped");
    assert_eq!(receipts[1]["body_md5"], md5("line two"));
    assert!(receipts.iter().all(|r| r["receipt_handle"].is_null()));

    let out = ok(b.mq(&[
        "consume", "--topic", "CliT", "--group", "GID_cli", "--max", "4", "--wait", "1", "--json",
    ]));
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 4, "{out}");
    let mut bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["hello", "line one", "line three", "line two"]);
    let hello = messages.iter().find(|m| m["body"] == "hello").unwrap();
    assert_eq!(hello["tag"], "TagA");
    assert_eq!(hello["key"], "k1");
    assert_eq!(hello["properties"]["color"], "red");
    assert_eq!(hello["body_md5"], md5("hello"));
    assert!(
        messages
            .iter()
            .all(|m| m["acked"] == true && m["consumed_times"] == 1)
    );
    // Acked: nothing left.
    let again = ok(b.mq(&[
        "consume", "--topic", "CliT", "--group", "GID_cli", "--wait", "0", "--json",
    ]));
    assert_eq!(again, "");
}

#[test]
fn consume_plain_no_ack_and_max() {
    let b = TestBroker::start();
    ok(b.mq(&[
        "consume", "--topic", "CliP", "--group", "GID_p", "--wait", "0",
    ]));
    ok(b.mq(&["publish", "--topic", "CliP", "--body", "multi\nline"]));
    ok(b.mq(&["publish", "--topic", "CliP", "--body", "second"]));
    let out = ok(b.mq(&[
        "consume", "--topic", "CliP", "--group", "GID_p", "--max", "1", "--no-ack", "--wait", "1",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("consumed=1") && lines[0].contains("handle="),
        "{out}"
    );
    assert_eq!(&lines[1..], ["  multi", "  line"]);
    // The other message is still there; the unacked one is invisible for now.
    let out = ok(b.mq(&[
        "consume", "--topic", "CliP", "--group", "GID_p", "--wait", "0", "--json",
    ]));
    let rest = json_lines(&out);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["body"], "second");
}

#[test]
fn transactional_half_commit_and_rollback() {
    let b = TestBroker::start();
    let (t, g) = ("CliTx", "GID_tx");
    ok(b.mq(&["consume", "--topic", t, "--group", g, "--wait", "0"]));
    let out = ok(b.mq(&[
        "publish",
        "--topic",
        t,
        "--transactional",
        "--immunity",
        "10s",
        "--body",
        "tx-committed",
        "--json",
    ]));
    let committed = json_lines(&out).remove(0);
    let handle = committed["receipt_handle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let out = ok(b.mq(&[
        "publish",
        "--topic",
        t,
        "--transactional",
        "--body",
        "tx-rolled-back",
    ]));
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(
        fields.len(),
        3,
        "transactional publish prints the handle: {out:?}"
    );

    // Unresolved half messages are not visible to consumers.
    assert_eq!(
        ok(b.mq(&["consume", "--topic", t, "--group", g, "--wait", "0"])),
        ""
    );
    let out = ok(b.mq(&[
        "tx", "rollback", "--topic", t, "--group", g, "--handle", fields[2],
    ]));
    assert_eq!(out.trim_end(), format!("rolled back {}", fields[2]));

    // The first one is offered to the checker once its immunity (10 s) is over.
    let out = run_with(
        b.mq(&[
            "tx", "half", "--topic", t, "--group", g, "--follow", "--wait", "2", "--max", "1",
            "--json",
        ]),
        None,
        Duration::from_secs(40),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let half = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(half.len(), 1);
    assert_eq!(half[0]["body"], "tx-committed");
    assert_eq!(half[0]["acked"], false);
    let check_handle = half[0]["receipt_handle"].as_str().unwrap();
    assert_ne!(check_handle, handle, "a check delivery has a fresh handle");

    let out = ok(b.mq(&[
        "tx",
        "commit",
        "--topic",
        t,
        "--group",
        g,
        "--handle",
        check_handle,
    ]));
    assert_eq!(out.trim_end(), format!("committed {check_handle}"));
    let out = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "2", "--max", "1", "--json",
    ]));
    let got = json_lines(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], "tx-committed");

    // Deciding again with a used handle fails with one line and exit code 1.
    let out = run(b.mq(&[
        "tx",
        "commit",
        "--topic",
        t,
        "--group",
        g,
        "--handle",
        check_handle,
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mq: commit"), "{err}");
}

#[test]
fn missing_endpoint_is_one_line_and_exit_code_2() {
    for args in [
        &["publish", "--topic", "T", "--body", "x"][..],
        &["consume", "--topic", "T", "--group", "GID_x"],
        &["tx", "half", "--topic", "T", "--group", "GID_x"],
        &[
            "tx", "commit", "--topic", "T", "--group", "GID_x", "--handle", "h-1",
        ],
    ] {
        let out = run(mq(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err, "mq: no endpoint set: pass --endpoint URL or set MQ_ENDPOINT\n",
            "{args:?}"
        );
        assert!(out.stdout.is_empty());
    }
    // An endpoint without credentials.
    let out = run(mq(&[
        "publish",
        "--endpoint",
        "http://127.0.0.1:1",
        "--topic",
        "T",
        "--body",
        "x",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials set"));
}

#[test]
fn service_and_usage_errors_are_one_line() {
    let b = TestBroker::start();
    let mut wrong = b.mq(&["publish", "--topic", "T", "--body", "x"]);
    wrong.env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong-secret");
    let out = run(wrong);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");

    let out = run(b.mq(&[
        "publish",
        "--topic",
        "T",
        "--transactional",
        "--immunity",
        "1s",
        "--body",
        "x",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--immunity"));

    let out = run_with(
        b.mq(&["publish", "--topic", "T"]),
        Some("\n\n"),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to publish"));

    // Nobody listening: a network error, exit code 1.
    let out = run(mq(&[
        "consume",
        "--endpoint",
        "http://127.0.0.1:1",
        "--access-key-id",
        "a",
        "--access-key-secret",
        "b",
        "--topic",
        "T",
        "--group",
        "GID_x",
        "--wait",
        "0",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// `mq admin`: the clock, a test clock moved forward, peeks in a table and as JSON, signed
/// with the AccessKey or carrying the broker's admin token.
#[test]
fn admin_clock_and_peek() {
    let b = TestBroker::start();
    let (t, g) = ("CliAdmin", "GID_admin");
    let clock = ok(b.mq(&["admin", "clock"]));
    assert!(
        clock.starts_with("now 20") && clock.contains("test clock"),
        "{clock}"
    );
    ok(b.mq(&["consume", "--topic", t, "--group", g, "--wait", "0"]));
    ok(b.mq(&[
        "publish",
        "--topic",
        t,
        "--delay",
        "60s",
        "--body",
        "a minute later",
    ]));
    let peek = |state: &str| {
        ok(b.mq(&[
            "admin", "peek", "--topic", t, "--group", g, "--state", state,
        ]))
    };
    let delayed = peek("delayed");
    assert!(
        delayed.contains("delayed") && delayed.contains("a minute later"),
        "{delayed}"
    );
    assert!(delayed.trim_end().ends_with("1 message(s)"), "{delayed}");
    assert!(peek("ready").trim_end().ends_with("0 message(s)"));

    let moved = ok(b.mq(&["admin", "clock", "--advance", "61s"]));
    assert!(moved.contains("offset 6"), "{moved}");
    let ready = ok(b.mq(&[
        "admin", "peek", "--topic", t, "--group", g, "--state", "ready", "--json",
    ]));
    let ready: Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(ready["messages"][0]["body"], "a minute later");
    let got = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "0", "--no-ack", "--json",
    ]));
    let got = json_lines(&got).remove(0);
    assert_eq!(got["body"], "a minute later");
    let id = got["message_id"].as_str().expect("id");
    let found = ok(b.mq(&["admin", "peek", "--topic", t, "--id", id]));
    assert!(found.contains("groups: GID_admin=in_flight"), "{found}");
    let purged = ok(b.mq(&["admin", "purge", "--topic", t]));
    assert_eq!(purged.trim_end(), "purged 1 message(s)");
    assert_eq!(ok(b.mq(&["admin", "reset"])).trim_end(), "reset");

    // The admin token instead of the AccessKey.
    let token = b.0.admin_token().expect("admin token");
    let mut by_token = mq(&["admin", "clock", "--json"]);
    by_token
        .env("MQ_ENDPOINT", b.0.endpoint())
        .env("MQ_ADMIN_TOKEN", token);
    let clock: Value = serde_json::from_str(&ok(by_token)).expect("JSON");
    assert_eq!(clock["test_clock"], true);
    let mut wrong = mq(&[
        "admin",
        "clock",
        "--admin-token",
        "not-the-token-of-this-broker",
    ]);
    wrong.env("MQ_ENDPOINT", b.0.endpoint());
    let out = run(wrong);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403 InvalidAdminToken"), "{err}");
    assert!(!err.contains(token), "{err}");
}

/// `mq admin topics|groups`: a typed topic and a group with its own settings created,
/// listed in tables and as JSON, deleted.
#[test]
fn admin_topics_and_groups() {
    let b = TestBroker::start();
    let created = ok(b.mq(&[
        "admin", "topics", "create", "--topic", "CliTyped", "--type", "order",
    ]));
    assert!(
        created.contains("CliTyped") && created.contains("FIFO"),
        "{created}"
    );
    let created = ok(b.mq(&[
        "admin",
        "groups",
        "create",
        "--group",
        "GID_cli",
        "--topic",
        "CliTyped",
        "--invisibility",
        "30s",
        "--max-deliveries",
        "3",
    ]));
    assert!(created.contains("30000 ms"), "{created}");
    ok(b.mq(&[
        "publish",
        "--topic",
        "CliTyped",
        "--sharding-key",
        "s1",
        "--body",
        "kept",
    ]));
    let topics = ok(b.mq(&["admin", "topics", "list"]));
    let row = topics
        .lines()
        .find(|l| l.starts_with("CliTyped"))
        .unwrap_or_else(|| panic!("{topics}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // TOPIC TYPE GROUP READY IN-FLIGHT DELAYED DEAD BACKLOG LAST-CONSUME
    assert_eq!(
        cells,
        ["CliTyped", "FIFO", "GID_cli", "1", "0", "0", "0", "1", "-"],
        "{topics}"
    );
    let groups: Value =
        serde_json::from_str(&ok(b.mq(&["admin", "groups", "list", "--json"]))).expect("JSON");
    let cli = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == "GID_cli")
        .expect("GID_cli listed");
    assert_eq!(
        (&cli["max_deliveries"], &cli["declared"]),
        (&json!(3), &json!(true))
    );
    let deleted = ok(b.mq(&["admin", "groups", "delete", "--group", "GID_cli"]));
    assert_eq!(deleted.trim_end(), "deleted GID_cli (1 message(s))");
    // The message the group held is still kept (for an offset reset) until the topic goes.
    let deleted = ok(b.mq(&["admin", "topics", "delete", "--topic", "CliTyped"]));
    assert_eq!(deleted.trim_end(), "deleted CliTyped (1 message(s))");
    let out = run(b.mq(&["admin", "topics", "delete", "--topic", "CliTyped"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404 TopicNotExist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mq admin dead-letters|reset-offset|trace` and `peek --begin`: a message dead-lettered
/// by a group with one delivery, listed, resent, consumed, traced, replayed by an offset
/// reset and found by publish time.
#[test]
fn admin_dead_letters_reset_offset_and_trace() {
    let b = TestBroker::start();
    let (t, g) = ("CliDead", "GID_dead");
    ok(b.mq(&[
        "admin",
        "groups",
        "create",
        "--group",
        g,
        "--topic",
        t,
        "--invisibility",
        "1s",
        "--max-deliveries",
        "1",
    ]));
    ok(b.mq(&["publish", "--topic", t, "--body", "doomed"]));
    let got = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "0", "--no-ack", "--json",
    ]));
    let id = json_lines(&got).remove(0)["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    ok(b.mq(&["admin", "clock", "--advance", "2s"]));
    let dead = ok(b.mq(&["admin", "dead-letters", "list", "--topic", t, "--group", g]));
    assert!(dead.contains("doomed") && dead.contains("dead"), "{dead}");
    let resent = ok(b.mq(&[
        "admin",
        "dead-letters",
        "resend",
        "--topic",
        t,
        "--group",
        g,
        "--id",
        &id,
    ]));
    assert_eq!(resent.trim_end(), "resent 1 dead letter(s)");
    let again = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "0", "--json",
    ]));
    assert_eq!(json_lines(&again)[0]["body"], "doomed");
    let trace = ok(b.mq(&["admin", "trace", "--id", &id]));
    for event in ["published", "delivered", "dead_lettered", "resent", "acked"] {
        assert!(trace.contains(event), "{event}: {trace}");
    }
    assert!(trace.contains(&format!("producer {AK}")), "{trace}");
    let reset = ok(b.mq(&[
        "admin",
        "reset-offset",
        "--topic",
        t,
        "--group",
        g,
        "--time",
        "1970-01-01T00:00:00Z",
    ]));
    assert_eq!(
        reset.trim_end(),
        "1 message(s) to be delivered again, 0 skipped"
    );
    let page = ok(b.mq(&[
        "admin",
        "peek",
        "--topic",
        t,
        "--begin",
        "1970-01-01T00:00:00Z",
        "--json",
    ]));
    let page: Value = serde_json::from_str(&page).expect("JSON");
    assert_eq!(page["messages"][0]["body"], "doomed", "{page}");
    assert_eq!(page["messages"][0]["groups"][0]["state"], "ready", "{page}");
}

/// `mq admin half commit|rollback`: a half message published with `mq publish
/// --transactional`, committed by id and consumed; another rolled back and never
/// delivered; a decided id is refused.
#[test]
fn admin_half_commit_and_rollback() {
    let b = TestBroker::start();
    let (t, g) = ("CliHalf", "GID_half");
    ok(b.mq(&["consume", "--topic", t, "--group", g, "--wait", "0"]));
    let half = |body: &str| {
        let out = ok(b.mq(&[
            "publish",
            "--topic",
            t,
            "--transactional",
            "--immunity",
            "60s",
            "--body",
            body,
            "--json",
        ]));
        let receipt: Value = serde_json::from_str(&out).expect("JSON");
        receipt["message_id"].as_str().expect("id").to_owned()
    };
    let (kept, dropped) = (half("to commit"), half("to roll back"));
    let committed = ok(b.mq(&["admin", "half", "commit", "--topic", t, "--id", &kept]));
    assert_eq!(committed.trim_end(), format!("committed {kept}"));
    let rolled: Value = serde_json::from_str(&ok(b.mq(&[
        "admin", "half", "rollback", "--topic", t, "--id", &dropped, "--json",
    ])))
    .expect("JSON");
    assert_eq!(rolled["resolution"], "rollback", "{rolled}");
    let got = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "0", "--json",
    ]));
    let got = json_lines(&got);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], "to commit");
    let out = run(b.mq(&["admin", "half", "commit", "--topic", t, "--id", &dropped]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404 MessageNotExist"), "{err}");
}

fn check_bench_json(text: &str, workload: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["workload"], workload, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    assert!(v["messages_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    let l = &v["latency"];
    let (p50, p99, p999, max) = (
        l["p50_us"].as_f64().unwrap(),
        l["p99_us"].as_f64().unwrap(),
        l["p999_us"].as_f64().unwrap(),
        l["max_us"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max, "{l}");
    assert!(l["samples"].as_u64().unwrap() > 0);
    v
}

#[test]
fn bench_embedded_broker_json() {
    let out = run(mq(&[
        "bench",
        "publish",
        "--duration",
        "1",
        "--concurrency",
        "2",
        "--size",
        "100",
        "--json",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = check_bench_json(&String::from_utf8(out.stdout).unwrap(), "publish");
    assert_eq!(v["size"], 100);
    assert_eq!(v["concurrency"], 2);
    assert_eq!(v["errors"], 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("embedded broker"));
}

#[test]
fn bench_consume_and_roundtrip_against_an_endpoint() {
    let b = TestBroker::start();
    let out = ok(b.mq(&[
        "bench",
        "consume",
        "--duration",
        "1s",
        "--concurrency",
        "2",
        "--size",
        "64",
        "--prefill",
        "100",
        "--json",
    ]));
    let v = check_bench_json(&out, "consume");
    assert!(v["messages"].as_u64().unwrap() <= 100);
    let out = ok(b.mq(&[
        "bench",
        "roundtrip",
        "--duration",
        "1",
        "--concurrency",
        "2",
        "--size",
        "64",
        "--json",
    ]));
    let v = check_bench_json(&out, "roundtrip");
    assert_eq!(v["errors"], 0, "{v}");
    // The human-readable summary.
    let out = ok(b.mq(&[
        "bench",
        "publish",
        "--duration",
        "500ms",
        "--concurrency",
        "1",
        "--size",
        "10",
    ]));
    assert!(
        out.contains("publish: 1 in flight") && out.contains("p99.9"),
        "{out}"
    );
}

#[test]
fn serve_announces_the_address_and_stops_on_sigterm() {
    let mut child: Child = mq(&["serve", "--listen", "127.0.0.1:0", "--credential", "sa:sb"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mq serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let endpoint = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let mut publish = mq(&["publish", "--topic", "S", "--body", "x"]);
    publish
        .env("MQ_ENDPOINT", &endpoint)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "sa")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sb");
    ok(publish);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "mq serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("mq: shutting down"), "{err}");
}
