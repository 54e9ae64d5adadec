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
        Self::start_with(false)
    }

    /// With a test clock, and fault injection if `faults`.
    fn start_with(faults: bool) -> Self {
        let broker = EmbeddedBroker::start(ServerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            credentials: vec![Credential::new(AK, SK)],
            test_clock: true,
            faults,
            ..Default::default()
        });
        Self(broker.expect("broker"))
    }

    /// Creates group `g` on topic `t` with one delivery of 1 s: a message it does not ack
    /// is dead-lettered once the (test) clock moves 1 s on.
    fn dead_lettering_group(&self, t: &str, g: &str) {
        ok(self.mq(&[
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
    }

    /// `mq admin dead-letters ACTION --topic t --group g EXTRA…` on this broker.
    fn dead_letters(&self, action: &str, t: &str, g: &str, extra: &[&str]) -> Command {
        let mut args = vec!["admin", "dead-letters", action, "--topic", t, "--group", g];
        args.extend_from_slice(extra);
        self.mq(&args)
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

/// Runs `cmd`, which must fail with exit code 1 (a failed call) naming `code` on stderr.
fn failed_with(cmd: Command, code: &str) {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(code), "{stderr}");
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
fn a_bad_stdin_line_is_named_with_what_was_published_before_it() {
    let b = TestBroker::start();
    let input = format!("first\n\n{}\nlast\n", "a".repeat(5_000_000));
    let out = run_with(
        b.mq(&["publish", "--topic", "CliStdinBad"]),
        Some(&input),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an oversized body is bad input: {err}"
    );
    assert!(
        err.starts_with("mq: line 3 of stdin: ")
            && err.contains("(1 message(s) published before it, none after)"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
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
        // A CR before the line's `\r\n` is the body's own (it was taken off twice).
        Some("line one\n\nline two\r\nline three\n  \nline four\r\r\n"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipts = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(receipts.len(), 4, "blank lines are skipped");
    assert_eq!(receipts[1]["body_md5"], md5("line two"));
    assert_eq!(receipts[3]["body_md5"], md5("line four\r"));
    assert!(receipts.iter().all(|r| r["receipt_handle"].is_null()));

    let out = ok(b.mq(&[
        "consume", "--topic", "CliT", "--group", "GID_cli", "--max", "5", "--wait", "1", "--json",
    ]));
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 5, "{out}");
    let mut bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["hello", "line four\r", "line one", "line three", "line two"]
    );
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

    // A body that would reorder or rewrite the terminal is printed escaped, as `mq admin`'s
    // tables print it; a tab stays.
    ok(b.mq(&[
        "publish",
        "--topic",
        "CliP",
        "--body",
        "a\tb \u{202e}cba\u{9b}2J\u{2066}",
    ]));
    let out = ok(b.mq(&[
        "consume", "--topic", "CliP", "--group", "GID_p", "--wait", "1",
    ]));
    let body = out.lines().nth(1).unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(body, "  a\tb \\u{202e}cba\\u{9b}2J\\u{2066}", "{out:?}");
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

    // Unresolved half messages are not visible to consumers; nothing on stdout, and a
    // note on stderr for whoever runs it by hand.
    let out = run(b.mq(&["consume", "--topic", t, "--group", g, "--wait", "0"]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no message for the group now"), "{err}");
    // Nor are they due for a status check before their immunity (10 s) is over.
    let out = run(b.mq(&["tx", "half", "--topic", t, "--group", g, "--wait", "0"]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no half message due"), "{err}");
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

/// With stderr a pipe nobody reads (`mq … 2>&1 | head -1` once `head` exited), the error
/// line cannot be written: `mq` still exits with its code, not a panic's 101.
#[test]
fn an_error_with_stderr_closed_keeps_its_exit_code() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = mq(&["publish", "--topic", "T", "--body", "x"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer));
    let status = cmd.status().expect("run mq");
    assert_eq!(status.code(), Some(2));
}

/// `--max 0` is a usage error (it exited 0 having done nothing, as if nothing were there).
#[test]
fn max_zero_is_a_usage_error() {
    for args in [
        &["consume", "--topic", "T", "--group", "GID_x", "--max", "0"][..],
        &[
            "tx", "half", "--topic", "T", "--group", "GID_x", "--max", "0",
        ],
    ] {
        let out = run(mq(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("--max") && err.contains('0'), "{err}");
    }
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
    // An endpoint without credentials, and empty (or blank) keys, which count as unset: a
    // usage error, no request.
    let no_keys: &[&str] = &[];
    for keys in [
        no_keys,
        &["--access-key-id", "", "--access-key-secret", " "],
    ] {
        let mut args = vec!["publish", "--endpoint", "http://127.0.0.1:1"];
        args.extend_from_slice(keys);
        args.extend_from_slice(&["--topic", "T", "--body", "x"]);
        let out = run(mq(&args));
        assert_eq!(out.status.code(), Some(2), "{keys:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no credentials set"),
            "{keys:?}"
        );
    }
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

    // A tag filter with an empty alternative says which part is empty.
    let out = run(b.mq(&[
        "consume", "--topic", "T", "--group", "GID_x", "--tag", "A||",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"invalid tag filter: "A||" has an empty tag after its last `||`"#),
        "{err}"
    );

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
    // A FIFO topic takes only messages with a sharding key: mq admin publish passes one.
    ok(b.mq(&[
        "admin", "topics", "create", "--topic", "CliFifo", "--type", "order",
    ]));
    let admin_publish = |extra: &[&str]| {
        let mut args = vec![
            "admin", "publish", "--topic", "CliFifo", "--body", "in order",
        ];
        args.extend_from_slice(extra);
        b.mq(&args)
    };
    assert!(
        !run(admin_publish(&[])).status.success(),
        "a FIFO topic refuses no sharding key"
    );
    let published = ok(admin_publish(&["--sharding-key", "order-1"]));
    let id = published
        .lines()
        .nth(1)
        .and_then(|r| r.split_whitespace().next());
    let id = id.unwrap_or_else(|| panic!("{published}")).to_owned();
    let found = ok(b.mq(&["admin", "peek", "--topic", "CliFifo", "--id", &id, "--json"]));
    assert!(
        found.contains("order-1"),
        "the sharding key is kept: {found}"
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
    let shown = ok(b.mq(&["admin", "topics", "show", "--topic", "CliTyped"]));
    assert_eq!(
        shown.lines().nth(1),
        Some(row),
        "one topic as the listing shows it"
    );
    failed_with(
        b.mq(&["admin", "topics", "show", "--topic", "CliNone"]),
        "404 TopicNotExist",
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
    failed_with(
        b.mq(&["admin", "topics", "delete", "--topic", "CliTyped"]),
        "404 TopicNotExist",
    );
}

/// `mq admin dead-letters|reset-offset|trace` and `peek --begin`: a message dead-lettered
/// by a group with one delivery, listed, resent, consumed, traced, replayed by an offset
/// reset and found by publish time.
#[test]
fn admin_dead_letters_reset_offset_and_trace() {
    let b = TestBroker::start();
    let (t, g) = ("CliDead", "GID_dead");
    b.dead_lettering_group(t, g);
    ok(b.mq(&["publish", "--topic", t, "--body", "doomed"]));
    let got = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "0", "--no-ack", "--json",
    ]));
    let id = json_lines(&got).remove(0)["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    ok(b.mq(&["admin", "clock", "--advance", "2s"]));
    let dead = ok(b.dead_letters("list", t, g, &[]));
    assert!(dead.contains("doomed") && dead.contains("dead"), "{dead}");
    let resent = ok(b.dead_letters("resend", t, g, &["--id", &id]));
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
fn bench_publish_count_and_warmup_with_cpu_time() {
    let b = TestBroker::start();
    let out = ok(b.mq(&[
        "bench",
        "publish",
        "--topic",
        "CliBenchCount",
        "--count",
        "300",
        "--warmup",
        "50",
        "--concurrency",
        "4",
        "--size",
        "100",
        "--duration",
        "20s",
        "--json",
    ]));
    let v = check_bench_json(&out, "publish");
    // Exactly the count is measured; the warm-up is published but not counted.
    assert_eq!(v["messages"], 300, "{v}");
    assert_eq!(v["requests"], 300, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["latency"]["samples"], 300, "{v}");
    let stats = b.0.stats().expect("stats");
    let topic = stats
        .topics
        .iter()
        .find(|t| t.topic == "CliBenchCount")
        .expect("the topic");
    assert_eq!(topic.published, 350, "warm-up + count reach the broker");
    // The process's CPU time over the measured publishes, and per publish.
    let cpu = v["cpu_secs"].as_f64().expect("cpu_secs on Linux");
    let per = v["cpu_us_per_message"]
        .as_f64()
        .expect("cpu_us_per_message");
    assert!(cpu > 0.0, "{v}");
    assert!((per - cpu * 1e6 / 300.0).abs() < 1e-6 * per.max(1.0), "{v}");
    // The human-readable summary shows it.
    let out = ok(b.mq(&[
        "bench",
        "publish",
        "--count",
        "20",
        "--concurrency",
        "1",
        "--size",
        "10",
    ]));
    let messages = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("messages"))
        .and_then(|rest| rest.split_whitespace().next());
    assert_eq!(messages, Some("20"), "{out}");
    assert!(out.contains("µs per message"), "{out}");
    // Count and warm-up are publish settings; a count of 0 measures nothing.
    for args in [
        &["bench", "publish", "--count", "0"][..],
        &["bench", "consume", "--count", "10"],
        &["bench", "roundtrip", "--warmup", "10"],
    ] {
        let out = run(b.mq(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--count") || err.contains("--warmup"), "{err}");
    }
    // Requests in flight are bounded (each is a task with its own histogram: a million
    // took 17 GB before the bound).
    for n in ["0", "4097", "100000000000"] {
        let out = run(b.mq(&["bench", "publish", "--concurrency", n, "--duration", "1s"]));
        assert_eq!(out.status.code(), Some(2), "{n}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--concurrency must be between 1 and 4096"),
            "{err}"
        );
    }
    // Names too long to consume with (PROTOCOL §6.9): a usage error, as in `mq consume`.
    let (topic, group) = ("T".repeat(64), format!("GID_{}", "g".repeat(60)));
    for workload in ["consume", "roundtrip"] {
        let args = ["bench", workload, "--topic", &topic, "--group", &group];
        let out = run(b.mq(&args));
        assert_eq!(out.status.code(), Some(2), "{workload}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("128 characters together"), "{err}");
        // Without an endpoint, refused before an embedded broker starts.
        let out = run(mq(&args));
        assert_eq!(out.status.code(), Some(2), "{workload}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("128 characters together") && !err.contains("embedded"),
            "{err}"
        );
    }
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
    // The banner gives the web console's address (issue 15).
    let console = (&mut stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("console: ").map(str::to_owned))
        .expect("a console line");
    assert!(
        console.starts_with(&format!("{endpoint}/console/ ")),
        "{console:?}"
    );
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

#[test]
fn serve_refuses_a_bad_configuration_as_a_usage_error() {
    // README: every `mq` command exits 2 for a usage or configuration error.
    for args in [
        &["serve", "--retention-secs", "0"][..],
        &["serve", "--credential", "no-colon"],
        &["serve", "--config", "/nonexistent/broker.toml"],
    ] {
        let err = usage_error(mq(args));
        assert!(
            err.starts_with("mq: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let err = usage_error(mq(&["serve", "--retention-secs", "-5"]));
    assert!(
        err.contains("invalid value '-5' for '--retention-secs <SECS>'"),
        "{err}"
    );
}

/// An environment variable an argument is read from that is not UTF-8 is named (clap said
/// "invalid UTF-8 was detected in one or more arguments").
#[cfg(unix)]
#[test]
fn a_variable_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStringExt;
    for (var, args) in [
        (
            "MQ_ENDPOINT",
            &["publish", "--topic", "t", "--body", "x"][..],
        ),
        (
            "ALIBABA_CLOUD_SECURITY_TOKEN",
            &["publish", "--topic", "t", "--body", "x"],
        ),
        ("MQ_ADMIN_TOKEN", &["admin", "clock"]),
    ] {
        let mut command = mq(args);
        command.env(var, std::ffi::OsString::from_vec(vec![b'x', 0xff]));
        let err = usage_error(command);
        assert_eq!(err, format!("mq: {var} is not valid UTF-8\n"), "{args:?}");
    }
}

/// Runs and expects a usage error (exit code 2, clap's or the command's); returns stderr.
fn usage_error(cmd: Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    err
}

/// Fresh-eyes finding (issue 14): `dead-letters list --id X` listed every dead letter and
/// `dead-letters resend --limit 1` resent all 3. Every flag of `mq admin` now does what
/// its help says or is not accepted: the limit lists, the id resends one, and flags an
/// admin call has no parameter for are usage errors.
#[test]
fn admin_flags_do_what_their_help_says_or_are_refused() {
    let b = TestBroker::start();
    let (t, g) = ("CliFlags", "GID_flags");
    b.dead_lettering_group(t, g);
    for body in ["d1", "d2", "d3"] {
        ok(b.mq(&["publish", "--topic", t, "--body", body]));
    }
    let got = ok(b.mq(&[
        "consume", "--topic", t, "--group", g, "--wait", "0", "--no-ack", "--json",
    ]));
    let ids: Vec<String> = json_lines(&got)
        .iter()
        .map(|m| m["message_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    ok(b.mq(&["admin", "clock", "--advance", "2s"]));
    let dead = |extra: &[&str]| ok(b.dead_letters("list", t, g, extra));
    assert!(dead(&[]).trim_end().ends_with("3 message(s)"));
    let one = dead(&["--limit", "1"]);
    assert!(one.contains("1 message(s)"), "{one}");
    assert!(one.contains("d1"), "oldest first: {one}");
    // A listing that stopped before the end says how to go on, and going on lists the rest.
    let more = format!("more: --after {}", ids[0]);
    assert!(one.trim_end().ends_with(&more), "{one}");
    let second = dead(&["--limit", "1", "--after", &ids[0]]);
    assert!(second.contains("d2") && !second.contains("d1"), "{second}");
    let last = dead(&["--limit", "2", "--after", &ids[1]]);
    assert!(last.contains("d3"), "{last}");
    assert!(!last.contains("more:"), "the last page: {last}");
    let ready = ok(b.mq(&[
        "admin", "peek", "--topic", t, "--state", "dead", "--group", g, "--limit", "2",
    ]));
    assert!(
        ready.contains(&format!("more: --after {}", ids[1])),
        "{ready}"
    );

    // Flags the call has no parameter for are refused, not ignored.
    let list_by_id = b.dead_letters("list", t, g, &["--id", &ids[0]]);
    assert!(usage_error(list_by_id).contains("--id"));
    let resend_limit = b.dead_letters("resend", t, g, &["--limit", "1"]);
    assert!(usage_error(resend_limit).contains("--limit"));
    assert!(
        dead(&[]).trim_end().ends_with("3 message(s)"),
        "nothing resent"
    );
    let resent = ok(b.dead_letters("resend", t, g, &["--id", &ids[1]]));
    assert_eq!(resent.trim_end(), "resent 1 dead letter(s)");
    let left = dead(&["--json"]);
    let left: Value = serde_json::from_str(&left).expect("JSON");
    let left: Vec<&str> = left["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(left, ["d1", "d3"]);
    let deleted = ok(b.dead_letters("delete", t, g, &["--id", &ids[0]]));
    assert_eq!(deleted.trim_end(), "deleted 1 dead letter(s)");
    usage_error(b.dead_letters("list", t, g, &["--limit", "1001"]));

    // The whole broker's calls take no instance; the environment's is not read for them.
    usage_error(b.mq(&["admin", "clock", "--instance-id", "MQ_INST_1"]));
    usage_error(b.mq(&["admin", "reset", "--instance-id", "MQ_INST_1"]));
    usage_error(b.mq(&[
        "admin",
        "trace",
        "--id",
        &ids[2],
        "--instance-id",
        "MQ_INST_1",
    ]));
    let mut clock = b.mq(&["admin", "clock"]);
    clock.env("MQ_INSTANCE_ID", "not an instance!");
    assert!(ok(clock).starts_with("now "));
    let mut scoped = b.mq(&["admin", "topics", "list"]);
    scoped.env("MQ_INSTANCE_ID", "not an instance!");
    assert!(usage_error(scoped).contains("--instance-id"));

    // A peek selects by state (with its group), id, key or time range: not two of them.
    let peek = |extra: &[&str]| {
        let mut args = vec!["admin", "peek", "--topic", t];
        args.extend_from_slice(extra);
        b.mq(&args)
    };
    usage_error(peek(&["--id", &ids[2], "--group", g]));
    usage_error(peek(&["--key", "k", "--state", "dead", "--group", g]));
    usage_error(peek(&[
        "--begin",
        "1970-01-01T00:00:00Z",
        "--state",
        "dead",
    ]));
    usage_error(peek(&["--end", "2100-01-01T00:00:00Z", "--group", g]));
    usage_error(peek(&["--id", &ids[1], "--after", &ids[0]]));
    usage_error(peek(&["--state", "nonsense", "--group", g]));
    assert!(usage_error(peek(&["--state", "half", "--group", g])).contains("half"));
    assert!(usage_error(peek(&["--state", "ready"])).contains("--group"));
    // Nothing selected: the message says what is missing and the choices, and does not
    // blame a --state that was not passed.
    let nothing = usage_error(peek(&[]));
    for choice in [
        "--group G",
        "ready|in_flight|delayed|dead",
        "--state half",
        "--id",
        "--key",
        "--begin/--end",
    ] {
        assert!(nothing.contains(choice), "{choice}: {nothing}");
    }
    assert!(!nothing.contains("--state ready lists"), "{nothing}");
    // --end alone is a time range, as the API takes it.
    let page = ok(peek(&["--end", "2100-01-01T00:00:00Z", "--json"]));
    let page: Value = serde_json::from_str(&page).expect("JSON");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(3), "{page}");
    let page = ok(peek(&["--end", "1970-01-01T00:00:01Z", "--json"]));
    let page: Value = serde_json::from_str(&page).expect("JSON");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(0), "{page}");
}

/// `mq admin publish` (the admin API's test publish, as the console's) and `mq admin
/// faults`; the peek table escapes control and bidirectional characters of bodies.
#[test]
fn admin_publish_faults_and_escaped_bodies() {
    let b = TestBroker::start_with(true);
    let (t, g) = ("CliAdminPublish", "GID_admin_publish");
    ok(b.mq(&["consume", "--topic", t, "--group", g, "--wait", "0"]));
    let body = "next\u{85}line \u{202e}desrever\u{2066} tab\tend";
    let published = ok(b.mq(&[
        "admin",
        "publish",
        "--topic",
        t,
        "--body",
        body,
        "--key",
        "k-cli",
        "--prop",
        "color=red",
        "--tag",
        "TagA",
    ]));
    let row = published
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{published}"));
    let id = row.split_whitespace().next().expect("id").to_owned();
    assert_eq!(
        row.split_whitespace().nth(1),
        Some(md5(body).as_str()),
        "{published}"
    );
    let found = ok(b.mq(&["admin", "peek", "--topic", t, "--key", "k-cli", "--json"]));
    let found: Value = serde_json::from_str(&found).expect("JSON");
    let m = &found["messages"][0];
    assert_eq!(
        (
            &m["message_id"],
            &m["body"],
            &m["tag"],
            &m["properties"]["color"]
        ),
        (&json!(id), &json!(body), &json!("TagA"), &json!("red")),
        "{found}"
    );
    let table = ok(b.mq(&["admin", "peek", "--topic", t, "--group", g]));
    assert!(
        table.contains(r"next\u{85}line \u{202e}desrever\u{2066} tab\tend"),
        "{table}"
    );
    for raw in ['\u{85}', '\u{202e}', '\u{2066}', '\t'] {
        assert!(!table.contains(raw), "{raw:?} printed as is: {table:?}");
    }

    // A delay beyond the protocol's 40 days is a usage error, as with `mq publish`.
    let out = run(b.mq(&[
        "admin", "publish", "--topic", t, "--body", "never", "--delay", "41d",
    ]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--delay is at most 40 days"));
    // So are the flags `mq publish` refuses (they were the broker's 400, exit 1), and
    // nothing is published.
    for (flags, says) in [
        (&["--key", ""][..], "--key"),
        (&["--prop", "__STARTDELIVERTIME=1"], "--prop"),
        (&["--sharding-key", "a|b"], "--sharding-key"),
    ] {
        let mut args = vec!["admin", "publish", "--topic", t, "--body", "refused"];
        args.extend_from_slice(flags);
        let out = run(b.mq(&args));
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    let peeked = ok(b.mq(&["admin", "peek", "--topic", t, "--group", g]));
    assert!(!peeked.contains("refused"), "{peeked}");

    // Delayed by the broker's (test) clock; transactional with its handle.
    let delayed: Value = serde_json::from_str(&ok(b.mq(&[
        "admin", "publish", "--topic", t, "--body", "later", "--delay", "60s", "--json",
    ])))
    .expect("JSON");
    assert!(delayed["receipt_handle"].is_null(), "{delayed}");
    let peeked = ok(b.mq(&[
        "admin", "peek", "--topic", t, "--group", g, "--state", "delayed",
    ]));
    assert!(peeked.contains("later"), "{peeked}");
    let half: Value = serde_json::from_str(&ok(b.mq(&[
        "admin",
        "publish",
        "--topic",
        t,
        "--body",
        "undecided",
        "--transactional",
        "--immunity",
        "20s",
        "--json",
    ])))
    .expect("JSON");
    assert!(half["receipt_handle"].is_string(), "{half}");
    let waiting = ok(b.mq(&["admin", "peek", "--topic", t, "--state", "half"]));
    assert!(waiting.contains("undecided"), "{waiting}");
    usage_error(b.mq(&[
        "admin",
        "publish",
        "--topic",
        t,
        "--body",
        "x",
        "--immunity",
        "20s",
    ]));
    let out = run(b.mq(&[
        "admin",
        "publish",
        "--topic",
        t,
        "--body",
        "x",
        "--transactional",
        "--immunity",
        "5s",
    ]));
    assert_eq!(out.status.code(), Some(2));

    // Fault rules: listed, added, cleared.
    let listed = ok(b.mq(&["admin", "faults", "list"]));
    assert!(listed.starts_with("fault injection on"), "{listed}");
    assert!(listed.trim_end().ends_with("0 rule(s)"), "{listed}");
    let added = ok(b.mq(&[
        "admin",
        "faults",
        "add",
        "--operation",
        "publish",
        "--error",
        "Throttling",
        "--count",
        "2",
        "--probability",
        "0.5",
        "--latency",
        "10ms",
    ]));
    let row = added
        .lines()
        .find(|l| l.starts_with("publish"))
        .unwrap_or_else(|| panic!("{added}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "publish",
            "error",
            "Throttling",
            "0.5",
            "10",
            "ms",
            "2",
            "0"
        ],
        "{added}"
    );
    ok(b.mq(&["admin", "faults", "add", "--operation", "ack", "--reset"]));
    let rules: Value =
        serde_json::from_str(&ok(b.mq(&["admin", "faults", "list", "--json"]))).expect("JSON");
    assert_eq!(rules["rules"][1]["action"]["kind"], "reset", "{rules}");
    assert!(rules["rules"][1]["remaining"].is_null(), "{rules}");
    usage_error(b.mq(&["admin", "faults", "add", "--operation", "publish"]));
    usage_error(b.mq(&["admin", "faults", "add", "--error", "Throttling", "--reset"]));
    let out = run(b.mq(&["admin", "faults", "add", "--operation", "nap", "--reset"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("400 InvalidArgument") && err.contains("consume_half"),
        "{err}"
    );
    let cleared = ok(b.mq(&["admin", "faults", "clear"]));
    assert!(cleared.trim_end().ends_with("0 rule(s)"), "{cleared}");

    // Without --faults the broker says so.
    let plain = TestBroker::start();
    let out = run(plain.mq(&["admin", "faults", "add", "--reset"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("501 NotSupported"), "{err}");
    assert!(ok(plain.mq(&["admin", "faults", "list"])).starts_with("fault injection off"));
}

/// The trace table names the message's instance with its topic, and the group of a
/// transaction check (the checker's).
#[test]
fn admin_trace_shows_the_instance_and_the_checking_group() {
    let b = TestBroker::start();
    let scoped = |args: &[&str]| {
        let mut cmd = b.mq(args);
        cmd.env("MQ_INSTANCE_ID", "MQ_INST_1");
        cmd
    };
    let receipt: Value = serde_json::from_str(&ok(scoped(&[
        "publish",
        "--topic",
        "nst",
        "--transactional",
        "--body",
        "undecided",
        "--json",
    ])))
    .expect("JSON");
    let id = receipt["message_id"].as_str().expect("id");
    ok(b.mq(&["admin", "clock", "--advance", "11s"]));
    let checks = ok(scoped(&[
        "tx",
        "half",
        "--topic",
        "nst",
        "--group",
        "GID_checker",
        "--wait",
        "0",
        "--json",
    ]));
    assert_eq!(json_lines(&checks).len(), 1, "{checks}");
    let trace = ok(b.mq(&["admin", "trace", "--id", id]));
    assert!(
        trace.starts_with(&format!("message {id} on MQ_INST_1/nst\n")),
        "{trace}"
    );
    let checked = trace
        .lines()
        .find(|l| l.contains("checked"))
        .unwrap_or_else(|| panic!("{trace}"));
    assert_eq!(
        checked.split_whitespace().nth(2),
        Some("GID_checker"),
        "{trace}"
    );
}

/// A stand-in for the service on 127.0.0.1 that answers the first consume with `body` (a
/// crafted `Messages` document), acks with 204 and later consumes with 404
/// `MessageNotExist`, one request per connection; each request it served (its request line,
/// a space, its body) goes to the returned list. Its thread serves until the test process ends.
fn crafted_service(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    crafted_service_answering(body, 1)
}

/// [`crafted_service`] answering the first `times` consumes with `body`.
fn crafted_service_answering(
    body: Vec<u8>,
    times: usize,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let served = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            let mut length = 0usize;
            let mut line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut request_body = vec![0; length];
            let _ = reader.read_exact(&mut request_body);
            let consumes_before = {
                let mut log = log.lock().expect("lock");
                log.push(format!(
                    "{} {}",
                    request_line.trim_end(),
                    String::from_utf8_lossy(&request_body)
                ));
                log.iter().filter(|l| l.starts_with("GET")).count() - 1
            };
            let (status, document): (&str, &[u8]) = if request_line.starts_with("DELETE") {
                ("204 No Content", b"")
            } else if consumes_before < times {
                ("200 OK", &body)
            } else {
                (
                    "404 Not Found",
                    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error xmlns=\"http://mq.aliyuncs.com/doc/v1\"><Code>MessageNotExist</Code><Message>Message not exist.</Message><RequestId>CRAFTED</RequestId><HostId>crafted</HostId></Error>",
                )
            };
            let mut stream = reader.into_inner();
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=utf-8\r\nContent-Length: {}\r\nx-mq-request-id: CRAFTED\r\nConnection: close\r\n\r\n",
                document.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(document);
        }
    });
    (endpoint, served)
}

/// A delivered message for a crafted consume answer: id `id`, handle `{id}-H`, body `body`
/// with its right `MessageBodyMD5`.
fn crafted_message(id: &str, body: &str) -> mq_tokio::Message {
    use mq_tokio::{Message, MessageId, Properties, ReceiptHandle};
    Message {
        message_id: MessageId::new(id).expect("id"),
        receipt_handle: ReceiptHandle::new(format!("{id}-H")).expect("handle"),
        body_md5: md5(body).into(),
        body: body.into(),
        publish_time: 1_796_119_200_000,
        next_consume_time: 1_796_119_500_000,
        first_consume_time: 1_796_119_201_000,
        consumed_times: 1,
        tag: None,
        properties: Properties::default(),
    }
}

/// `--max` counts poison messages: a service answering every consume with the same poison
/// message does not keep `mq consume --max 2` polling (it stops after two reports).
#[test]
fn consume_max_counts_poison_messages() {
    use mq_tokio::mq_proto::wire::consume::encode_response;
    let mut poison = crafted_message("0BC1EF3E1A9C18B4AAC2558D1E4F0003", "tampered");
    poison.body_md5 = md5("original").into();
    let (endpoint, served) =
        crafted_service_answering(encode_response(&[poison]).to_vec(), usize::MAX);
    let mut cmd = mq(&[
        "consume", "--topic", "T", "--group", "GID_p", "--wait", "0", "--max", "2",
    ]);
    cmd.env("MQ_ENDPOINT", &endpoint)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK);
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.matches("poison message").count(), 2, "{stderr}");
    let served = served.lock().expect("lock").clone();
    assert_eq!(served.len(), 2, "two consumes, no ack: {served:?}");
}

/// A message the client cannot trust (its `MessageBodyMD5` is not its body's) is one line on
/// stderr naming its id and why, is not acked (it is left to come back), and does not stop
/// the good message of its batch, which is printed and acked.
#[test]
fn consume_reports_a_poison_message_and_goes_on() {
    use mq_tokio::mq_proto::wire::consume::encode_response;
    let good = crafted_message("0BC1EF3E1A9C18B4AAC2558D1E4F0001", "good");
    let mut bad = crafted_message("0BC1EF3E1A9C18B4AAC2558D1E4F0002", "tampered");
    bad.body_md5 = md5("original").into();
    let document = encode_response(&[good, bad]).to_vec();
    let (endpoint, served) = crafted_service(document);

    let mut cmd = mq(&[
        "consume",
        "--topic",
        "T",
        "--group",
        "GID_poison",
        "--wait",
        "0",
    ]);
    cmd.env("MQ_ENDPOINT", &endpoint)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK);
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    let mut lines = stdout.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("0BC1EF3E1A9C18B4AAC2558D1E4F0001 consumed=1")),
        "{stdout}"
    );
    assert_eq!(lines.next(), Some("  good"), "{stdout}");
    assert_eq!(lines.next(), None, "{stdout}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours on a pipe: {stderr:?}"
    );
    // Only the CLI's line: the client's own warning about it (`mq_client::poison`) is off
    // unless MQ_LOG asks for it.
    assert_eq!(
        stderr,
        format!(
            "poison message 0BC1EF3E1A9C18B4AAC2558D1E4F0002 not decoded, left: MessageBodyMD5 {} does not match the body (its MD5 is {})\n",
            md5("original"),
            md5("tampered")
        ),
    );
    let served = served.lock().expect("lock").clone();
    assert_eq!(served.len(), 3, "consume, ack, consume: {served:?}");
    assert!(
        served[1].starts_with("DELETE /topics/T/messages?consumer=GID_poison ")
            && served[1]
                .contains("<ReceiptHandle>0BC1EF3E1A9C18B4AAC2558D1E4F0001-H</ReceiptHandle>")
            && !served[1].contains("0BC1EF3E1A9C18B4AAC2558D1E4F0002"),
        "only the good message is acked: {served:?}"
    );
}

#[test]
fn a_body_may_start_with_a_dash_and_a_past_delivery_time_is_noted() {
    let b = TestBroker::start();
    ok(b.mq(&[
        "consume", "--topic", "CliDash", "--group", "GID_d", "--wait", "0",
    ]));
    let out = run(b.mq(&[
        "publish",
        "--topic",
        "CliDash",
        "--body",
        "-x",
        "--at",
        "2000-01-01T00:00:00Z",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: --at 2000-01-01T00:00:00.000Z is not in the future"),
        "{stderr}"
    );
    // The admin path takes such a body too; a future time is not noted.
    let out = run(b.mq(&[
        "admin", "publish", "--topic", "CliDash", "--body", "-y", "--delay", "0s",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    let got = ok(b.mq(&[
        "consume", "--topic", "CliDash", "--group", "GID_d", "--wait", "1",
    ]));
    let bodies: Vec<&str> = got.lines().filter_map(|l| l.strip_prefix("  ")).collect();
    assert_eq!(bodies, ["-x", "-y"], "{got}");
    // A forgotten body is not published as the name of the flag that follows it.
    for args in [
        &[
            "publish", "--topic", "CliDash", "--tag", "X", "--body", "--key",
        ][..],
        &["publish", "--topic", "CliDash", "--body", "--json"],
        &["admin", "publish", "--topic", "CliDash", "--body", "--tag"],
    ] {
        let out = run(b.mq(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("not a body"), "{args:?}: {stderr}");
    }
    let got = ok(b.mq(&[
        "consume", "--topic", "CliDash", "--group", "GID_d", "--wait", "0",
    ]));
    assert!(got.is_empty(), "nothing more was published: {got}");
}

/// A reader that closed stdout (`mq … | head -1`) ends the command quietly with the status a
/// shell gives a writer into a closed pipe, not with an error message.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let b = TestBroker::start();
    for args in [
        &["publish", "--topic", "CliPipe", "--body", "x"][..],
        &[
            "admin",
            "peek",
            "--topic",
            "CliPipe",
            "--begin",
            "2000-01-01T00:00:00Z",
        ],
    ] {
        let mut cmd = b.mq(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mq");
        // Closed before mq writes (it first connects and makes its call).
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// `mq tx half` without `--follow` lists what is due and ends, even when the broker offers
/// the same half messages again within the wait (a check interval shorter than the wait):
/// it polled on forever, printing them again each round (fresh-eyes finding).
#[test]
fn tx_half_ends_when_the_messages_come_round_again() {
    let core = mq_broker::CoreConfig {
        half_check_interval_ms: 500,
        ..Default::default()
    };
    let b = TestBroker(
        EmbeddedBroker::start(ServerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            credentials: vec![Credential::new(AK, SK)],
            core,
            ..Default::default()
        })
        .expect("broker"),
    );
    let (t, g) = ("TxHalfRound", "GID_tx_half_round");
    ok(b.mq(&[
        "publish",
        "--topic",
        t,
        "--transactional",
        "--body",
        "undecided",
    ]));
    // Due once its immunity (10 s) is over; offered again every 0.5 s after that.
    std::thread::sleep(Duration::from_secs(11));
    let out = run_with(
        b.mq(&[
            "tx", "half", "--topic", t, "--group", g, "--wait", "3", "--json",
        ]),
        None,
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let half = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(half.len(), 1, "listed once: {half:?}");
    assert_eq!(half[0]["body"], "undecided");
}
