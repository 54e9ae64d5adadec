//! The admin API (`/admin/…`) over real HTTP: signed by a configured, unscoped key and
//! refused otherwise; the test clock drives a delayed message and a transaction check to
//! completion in well under a second; peeks show what the broker holds without changing it.

mod support;

use http::Method;
use mq_broker::{Broker, Credential, ServerConfig};
use mq_proto::{ConsumeKind, GroupId, TopicMessage, TopicName, TransCheckImmunity};
use std::time::{Duration, Instant};
use support::{AK, Client, SK, TempDir};

async fn start(test_clock: bool) -> Broker {
    start_with(test_clock, false).await
}

async fn start_with(test_clock: bool, faults: bool) -> Broker {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![
            Credential::new(AK, SK),
            Credential::parse("scoped:scoped-sk@MQ_INST_a").expect("credential"),
        ],
        test_clock,
        faults,
        ..ServerConfig::default()
    };
    Broker::start(config).await.expect("broker starts")
}

/// `GET /admin/clock` with this `Authorization` (or none), written by hand; the whole answer.
async fn raw_get(addr: std::net::SocketAddr, auth: Option<&str>) -> String {
    raw_call(addr, "GET", "/admin/clock", auth).await
}

/// An admin call written by hand, with this `Authorization` (or none); the whole answer,
/// status line and headers included.
async fn raw_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
    raw.write_all(req.as_bytes()).await.expect("write");
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.expect("read");
    answer
}

/// An admin call's status and error code.
async fn refusal(
    c: &mut Client,
    method: Method,
    target: &str,
    key: Option<(&str, &str)>,
) -> (u16, String) {
    let (status, json) = c.admin(method, target, key).await.expect("call");
    (status, json["code"].as_str().unwrap_or("<none>").to_owned())
}

/// A broker keeping its state in `dir` (`--data-dir`), on a real clock.
fn durable_config(dir: &TempDir) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![Credential::new(AK, SK)],
        data_dir: Some(dir.path().to_owned()),
        ..ServerConfig::default()
    }
}

/// Registers `g` on `t` (its first consume), then publishes one message per body.
async fn register_and_publish(c: &mut Client, t: &TopicName, g: &GroupId, bodies: &[&str]) {
    c.consume(t, g, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("register");
    for body in bodies {
        let m = TopicMessage::new(*body).expect("message");
        c.publish(t, &m).await.expect("io").expect("publish");
    }
}

/// A broker (no test clock) with group `g` registered on topic `t` and one message there.
async fn with_one_message(t: &str, g: &str) -> (Broker, Client) {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group(t, g);
    register_and_publish(&mut c, &t, &g, &["a"]).await;
    (broker, c)
}

fn topic_group(t: &str, g: &str) -> (TopicName, GroupId) {
    (
        TopicName::new(t).expect("topic"),
        GroupId::new(g).expect("group"),
    )
}

fn names(json: &serde_json::Value) -> Vec<&str> {
    json["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or("<none>"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_are_signed_by_an_unscoped_key() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (status, json) = c
        .admin(Method::GET, "/admin/clock", None)
        .await
        .expect("call");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["test_clock"], false);
    assert!(
        json["now_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000),
        "{json}"
    );

    let (status, json) = c
        .admin(Method::GET, "/admin/clock", Some((AK, "not-the-secret")))
        .await
        .expect("call");
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("SignatureDoesNotMatch"))
    );
    assert_eq!(
        refusal(
            &mut c,
            Method::GET,
            "/admin/clock",
            Some(("scoped", "scoped-sk"))
        )
        .await,
        (403, "AccessDenied".to_owned())
    );

    // Unsigned: refused with the protocol's code, as JSON.
    let answer = raw_get(broker.local_addr(), None).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("\"MissingAuthorizationHeader\""),
        "{answer}"
    );

    // The clock moves only with --test-clock; unknown calls are 404.
    assert_eq!(
        refusal(&mut c, Method::POST, "/admin/clock?advance_ms=1000", None).await,
        (501, "NotSupported".to_owned())
    );
    assert_eq!(
        refusal(&mut c, Method::GET, "/admin/nothing", None).await,
        (404, "NotFound".to_owned())
    );
    // A GET never changes state: advancing needs POST, and GET takes no advance_ms.
    let (status, _) = c
        .admin(Method::GET, "/admin/clock?advance_ms=1000", None)
        .await
        .expect("call");
    assert_eq!(status, 400);
    broker.shutdown().await;
}

/// `Authorization: Bearer <token>` (for curl): the broker's token is accepted, another is
/// refused; with `--admin off` there is no admin API at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_and_admin_off() {
    let broker = start(false).await;
    let (token, generated) = broker.admin_token().expect("admin on by default");
    assert!(generated && token.len() >= 16, "{token}");
    let ok = raw_get(broker.local_addr(), Some(&format!("Bearer {token}"))).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"now_ms\""), "{ok}");
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let lower = raw_get(broker.local_addr(), Some(&format!("bearer {token}"))).await;
    assert!(lower.starts_with("HTTP/1.1 200"), "{lower}");
    let wrong = raw_get(
        broker.local_addr(),
        Some("Bearer not-the-token-of-this-broker"),
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    assert!(wrong.contains("InvalidAdminToken"), "{wrong}");
    // Two `Authorization` headers are refused in either order (the first one counted: the
    // right token first let a call through, the wrong one first refused it).
    for twice in [
        format!("Bearer {token}\r\nauthorization: Bearer not-the-token"),
        format!("Bearer not-the-token\r\nauthorization: Bearer {token}"),
    ] {
        let answer = raw_get(broker.local_addr(), Some(&twice)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("InvalidAuthorizationHeader"), "{answer}");
    }
    assert!(
        !wrong.contains(token),
        "the answer must not reveal the token"
    );
    broker.shutdown().await;

    let configured: mq_broker::config::AdminToken =
        "configured-admin-token".parse().expect("token");
    let broker = Broker::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![Credential::new(AK, SK)],
        admin: mq_broker::config::AdminAccess::On(Some(configured)),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    assert_eq!(
        broker.admin_token(),
        Some(("configured-admin-token", false))
    );
    let ok = raw_get(broker.local_addr(), Some("Bearer configured-admin-token")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    broker.shutdown().await;

    let broker = Broker::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![Credential::new(AK, SK)],
        admin: mq_broker::config::AdminAccess::Off,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    assert_eq!(broker.admin_token(), None);
    let mut c = Client::new(broker.local_addr());
    assert_eq!(
        refusal(&mut c, Method::GET, "/admin/clock", None).await,
        (404, "NotFound".to_owned())
    );
    broker.shutdown().await;
}

/// A message scheduled a minute ahead and a transaction with a 60 s check immunity, both
/// brought to completion by moving the test clock: the waiting long poll is answered as soon
/// as the clock moves, and the whole test takes well under a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clock_drives_delays_and_transaction_checks() {
    let started = Instant::now();
    let broker = start(true).await;
    let addr = broker.local_addr();
    let mut c = Client::new(addr);
    let (t, g) = topic_group("Clocked", "GID_clock");
    // Register the group, then schedule a message a minute ahead of the broker's clock.
    c.consume(&t, &g, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("consume");
    // A GET never moves the clock: its query is refused.
    invalid_argument(&mut c, Method::GET, "/admin/clock?advance_ms=100000").await;
    let clock = read_clock(&mut c).await;
    assert_eq!(clock["offset_ms"], 0, "{clock}");
    let now = clock["now_ms"].as_u64().expect("now");
    let delayed = TopicMessage::new("a minute later")
        .expect("message")
        .with_start_deliver_time(now + 60_000);
    c.publish(&t, &delayed).await.expect("io").expect("publish");
    let half = TopicMessage::new("undecided")
        .expect("message")
        .with_trans_check_immunity(TransCheckImmunity::new(60).expect("immunity"));
    c.publish(&t, &half)
        .await
        .expect("io")
        .expect("publish half");
    let (_, peeked) = c
        .admin(
            Method::GET,
            "/admin/topics/Clocked/messages?state=delayed&group=GID_clock",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(names(&peeked), ["a minute later"]);

    // A long poll of 10 s waits; the clock moves by a minute; the poll is answered at once.
    let waiting = tokio::spawn({
        let (t, g) = (t.clone(), g.clone());
        async move {
            let mut c = Client::new(addr);
            let polled = Instant::now();
            let got = c.consume(&t, &g, ConsumeKind::Normal, 16, 10).await;
            (got, polled.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, clock) = c
        .admin(Method::POST, "/admin/clock?advance_ms=60001", None)
        .await
        .expect("advance");
    assert_eq!(status, 200, "{clock}");
    assert!(clock["offset_ms"].as_i64() >= Some(60_001), "{clock}");
    let (got, took) = waiting.await.expect("poll task");
    let got = got.expect("io").expect("consume");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "a minute later");
    assert!(
        took < Duration::from_secs(2),
        "the long poll waited {took:?}"
    );

    // The transaction's check immunity has passed too: a half-message poll gets it.
    let checks = c
        .consume(&t, &g, ConsumeKind::Half, 16, 0)
        .await
        .expect("io")
        .expect("pop");
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].body, "undecided");
    // Far beyond the 15-minute Date window: clients sign with their own clocks, which the
    // test clock does not move, so signed calls keep working.
    let (status, clock) = c
        .admin(Method::POST, "/admin/clock?advance_ms=7200000", None)
        .await
        .expect("advance two hours");
    assert_eq!(status, 200, "{clock}");
    c.publish(&t, &TopicMessage::new("later still").expect("message"))
        .await
        .expect("io")
        .expect("a signed publish after a two-hour move");
    assert_eq!(
        refusal(
            &mut c,
            Method::POST,
            "/admin/clock?advance_ms=999999999999999",
            None
        )
        .await,
        (400, "InvalidArgument".to_owned()),
        "beyond 400 days in one move"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    broker.shutdown().await;
}

/// Milliseconds since the epoch by the system clock (what clients schedule by).
fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Fresh-eyes finding (issue 14): `POST /admin/reset` kept a test clock's advance, so
/// after a 61 s move and a reset, a message published with a 60 s delay was ready at once.
/// A reset drops every timed thing with the state, so it takes the clock back to the
/// system clock and the core's time with it; durably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_takes_the_test_clock_back_to_the_system_clock() {
    let dir = TempDir::new("admin-reset-clock");
    let config = || ServerConfig {
        test_clock: true,
        ..durable_config(&dir)
    };
    let broker = Broker::start(config()).await.expect("start");
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("ResetClock", "GID_reset_clock");
    register_and_publish(&mut c, &t, &g, &["before"]).await;
    advance(&mut c, 61_000).await;
    let (status, _) = c
        .admin(Method::POST, "/admin/reset", None)
        .await
        .expect("reset");
    assert_eq!(status, 200);
    let clock = read_clock(&mut c).await;
    assert_eq!(clock["offset_ms"], 0, "{clock}");

    let published_from = system_ms();
    let delayed = TopicMessage::new("a minute later")
        .expect("message")
        .with_start_deliver_time(published_from + 60_000);
    register_and_publish(&mut c, &t, &g, &["now"]).await;
    c.publish(&t, &delayed).await.expect("io").expect("publish");
    let got = c
        .consume(&t, &g, ConsumeKind::Normal, 16, 0)
        .await
        .expect("io")
        .expect("consume");
    assert_eq!(bodies(&got), ["now"], "the delayed message is not due yet");
    // Times in answers follow the system clock again, not the time reached before.
    assert!(
        (published_from..=system_ms()).contains(&got[0].publish_time),
        "published at {} (system clock from {published_from})",
        got[0].publish_time
    );
    broker.shutdown().await;

    // After a restart the clock is still the system clock; the delay still counts from it.
    let broker = Broker::start(config()).await.expect("restart");
    let mut c = Client::new(broker.local_addr());
    let clock = read_clock(&mut c).await;
    assert_eq!(clock["offset_ms"], 0, "{clock}");
    let (_, peeked) = c
        .admin(
            Method::GET,
            "/admin/topics/ResetClock/messages?state=delayed&group=GID_reset_clock",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(names(&peeked), ["a minute later"]);
    advance(&mut c, 60_001).await;
    assert_eq!(
        bodies(&consume_all(&mut c, &t, &g).await),
        ["a minute later"]
    );
    broker.shutdown().await;
}

/// Peeks list what each state holds and change nothing: the messages are then consumed as
/// if nobody had looked (first delivery, same ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_is_non_destructive() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Peeked", "GID_peek");
    register_and_publish(&mut c, &t, &g, &["first", "second", "third"]).await;
    let half = TopicMessage::new("half")
        .expect("message")
        .with_trans_check_immunity(TransCheckImmunity::new(60).expect("immunity"));
    c.publish(&t, &half).await.expect("io").expect("publish");
    let peek = |state: &str| format!("/admin/topics/Peeked/messages?state={state}&group=GID_peek");
    for _ in 0..2 {
        let (status, ready) = c
            .admin(Method::GET, &peek("ready"), None)
            .await
            .expect("peek");
        assert_eq!(status, 200, "{ready}");
        assert_eq!(names(&ready), ["first", "second", "third"]);
        assert_eq!(ready["messages"][0]["consumed_times"], 0);
        assert_eq!(ready["messages"][0]["state"], "ready");
    }
    // A percent-encoded topic name in the path is decoded.
    let (status, encoded) = c
        .admin(
            Method::GET,
            "/admin/topics/Pe%65ked/messages?state=ready&group=GID_peek",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(status, 200, "{encoded}");
    assert_eq!(names(&encoded).len(), 3);
    let (_, limited) = c
        .admin(Method::GET, &format!("{}&limit=1", peek("ready")), None)
        .await
        .expect("peek");
    assert_eq!(names(&limited), ["first"]);
    let (_, half) = c
        .admin(
            Method::GET,
            "/admin/topics/Peeked/messages?state=half",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(names(&half), ["half"]);

    let got = c
        .consume(&t, &g, ConsumeKind::Normal, 2, 0)
        .await
        .expect("io")
        .expect("consume");
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert!(
        got.iter().all(|m| m.consumed_times == 1),
        "peeks are not deliveries"
    );
    let (_, in_flight) = c
        .admin(Method::GET, &peek("in_flight"), None)
        .await
        .expect("peek");
    assert_eq!(names(&in_flight), ["first", "second"]);
    assert_eq!(in_flight["messages"][0]["consumed_times"], 1);
    let (_, ready) = c
        .admin(Method::GET, &peek("ready"), None)
        .await
        .expect("peek");
    assert_eq!(names(&ready), ["third"]);

    // Bad arguments are 400; an unknown topic 404; a missing group for a group state 400.
    for (target, status, code) in [
        (
            "/admin/topics/Peeked/messages?state=sideways&group=GID_peek",
            400,
            "InvalidArgument",
        ),
        (
            "/admin/topics/Peeked/messages?state=ready",
            400,
            "InvalidArgument",
        ),
        (
            "/admin/topics/Peeked/messages?state=ready&group=GID_peek&limit=0",
            400,
            "InvalidArgument",
        ),
        (
            "/admin/topics/Nowhere/messages?state=half",
            404,
            "TopicNotExist",
        ),
    ] {
        let (got, json) = c.admin(Method::GET, target, None).await.expect("call");
        assert_eq!(
            (got, json["code"].as_str()),
            (status, Some(code)),
            "{target}: {json}"
        );
    }
    broker.shutdown().await;
}

/// Fault rules: a protocol error for a number of calls, latency, a connection closed without
/// an answer; the rules are listed with their hits and removed; invalid rules are refused,
/// and without `--faults` nothing can be injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_fail_calls_as_the_service_can() {
    let broker = start_with(false, true).await;
    let mut c = Client::new(broker.local_addr());
    let t = TopicName::new("Faulty").expect("topic");
    let g = GroupId::new("GID_faulty").expect("group");
    let m = TopicMessage::new("x").expect("message");
    let (status, json) = c
        .admin(
            Method::POST,
            "/admin/faults?operation=publish&error=Throttling&count=2",
            None,
        )
        .await
        .expect("add");
    assert_eq!(status, 200, "{json}");
    for _ in 0..2 {
        let err = c.publish(&t, &m).await.expect("io").expect_err("throttled");
        let mq_proto::client::ResponseError::Service(e) = err else {
            panic!("not a service error: {err:?}");
        };
        assert_eq!((e.status, e.code), (503, mq_proto::ErrorCode::Throttling));
        assert!(e.message.contains("injected"), "{}", e.message);
    }
    c.publish(&t, &m)
        .await
        .expect("io")
        .expect("the rule is used up");

    c.admin(
        Method::POST,
        "/admin/faults?operation=consume&latency_ms=300&count=1",
        None,
    )
    .await
    .expect("add");
    let asked = Instant::now();
    c.consume(&t, &g, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("consume");
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "{:?}",
        asked.elapsed()
    );

    c.admin(
        Method::POST,
        "/admin/faults?operation=any&reset=true&count=1",
        None,
    )
    .await
    .expect("add");
    let cut = c.publish(&t, &m).await;
    assert!(
        cut.is_err(),
        "the connection is closed without an answer: {cut:?}"
    );
    c.publish(&t, &m)
        .await
        .expect("io")
        .expect("answered again");

    c.admin(
        Method::POST,
        "/admin/faults?operation=ack&error=InternalError&probability=0",
        None,
    )
    .await
    .expect("add");
    let (_, listed) = c
        .admin(Method::GET, "/admin/faults", None)
        .await
        .expect("list");
    assert_eq!(listed["enabled"], true);
    assert_eq!(
        listed["rules"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["rules"][0]["action"]["code"], "InternalError");
    let (_, cleared) = c
        .admin(Method::DELETE, "/admin/faults", None)
        .await
        .expect("clear");
    assert_eq!(cleared["rules"].as_array().map(Vec::len), Some(0));

    for target in [
        "/admin/faults?operation=publish&error=NoSuchCode",
        "/admin/faults?operation=teleport&error=Throttling",
        "/admin/faults?operation=publish",
        "/admin/faults?operation=publish&error=Throttling&probability=2",
        "/admin/faults?operation=publish&error=Throttling&reset=true",
        "/admin/faults?operation=publish&error=Throttling&count=0",
    ] {
        assert_eq!(
            refusal(&mut c, Method::POST, target, None).await,
            (400, "InvalidArgument".to_owned()),
            "{target}"
        );
    }
    assert_eq!(
        refusal(&mut c, Method::DELETE, "/admin/faults?id=0", None).await,
        (400, "InvalidArgument".to_owned()),
        "DELETE removes all rules and takes no parameters"
    );
    broker.shutdown().await;

    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    assert_eq!(
        refusal(&mut c, Method::POST, "/admin/faults?error=Throttling", None).await,
        (501, "NotSupported".to_owned())
    );
    broker.shutdown().await;
}

/// "Why did my message not arrive?": a message found by id or key shows where each group
/// stands with it — ready for one, in flight for another, consumed by a third — and a half
/// message is found as `half`; an id the broker no longer keeps is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_by_id_and_key_show_each_group() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let t = TopicName::new("Traced").expect("topic");
    let groups = ["GID_a", "GID_b", "GID_c"].map(|g| GroupId::new(g).expect("group"));
    for g in &groups {
        c.consume(&t, g, ConsumeKind::Normal, 1, 0)
            .await
            .expect("io")
            .expect("register");
    }
    let m = TopicMessage::new("order 7")
        .expect("message")
        .with_key("order-7")
        .expect("key");
    let id = c
        .publish(&t, &m)
        .await
        .expect("io")
        .expect("publish")
        .message_id;
    // b has it in flight; c consumed and acked it; a has not asked yet.
    c.consume(&t, &groups[1], ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("b");
    let got = c
        .consume(&t, &groups[2], ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("c");
    c.ack(
        &t,
        &groups[2],
        mq_proto::AckKind::Ack,
        &[got[0].receipt_handle.clone()],
    )
    .await
    .expect("io")
    .expect("ack");
    let half = TopicMessage::new("undecided")
        .expect("message")
        .with_key("order-8")
        .expect("key")
        .with_trans_check_immunity(TransCheckImmunity::new(60).expect("immunity"));
    c.publish(&t, &half).await.expect("io").expect("half");

    let (status, by_id) = c
        .admin(
            Method::GET,
            &format!("/admin/topics/Traced/messages?id={id}"),
            None,
        )
        .await
        .expect("find");
    assert_eq!(status, 200, "{by_id}");
    let found = &by_id["messages"][0];
    assert_eq!(found["message_id"], id.as_str());
    assert_eq!(found["body"], "order 7");
    let states: Vec<(&str, &serde_json::Value)> = found["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["group"].as_str().unwrap_or("?"), &g["state"]))
        .collect();
    assert_eq!(
        states,
        [
            ("GID_a", &serde_json::json!("ready")),
            ("GID_b", &serde_json::json!("in_flight")),
            ("GID_c", &serde_json::Value::Null),
        ],
        "{by_id}"
    );
    let (_, by_key) = c
        .admin(
            Method::GET,
            "/admin/topics/Traced/messages?key=order-8",
            None,
        )
        .await
        .expect("find");
    assert_eq!(names(&by_key), ["undecided"]);
    assert_eq!(by_key["messages"][0]["state"], "half");
    // No group holds an undecided transaction yet: each waits for it (not "consumed").
    let positions = by_key["messages"][0]["groups"].as_array().expect("groups");
    assert_eq!(positions.len(), groups.len(), "{by_key}");
    assert!(positions.iter().all(|p| p["state"] == "half"), "{by_key}");
    let (_, none) = c
        .admin(
            Method::GET,
            "/admin/topics/Traced/messages?key=nobody",
            None,
        )
        .await
        .expect("find");
    assert_eq!(names(&none), Vec::<&str>::new());
    // A key with a space would find nothing (a message's KEYS holds keys separated by
    // spaces): refused, not an empty page.
    let (status, spaced) = c
        .admin(
            Method::GET,
            "/admin/topics/Traced/messages?key=order-8%20order-9",
            None,
        )
        .await
        .expect("find");
    assert_eq!(status, 400, "{spaced}");
    assert!(
        spaced["message"]
            .as_str()
            .is_some_and(|m| m.contains("one key")),
        "{spaced}"
    );
    assert_eq!(
        refusal(
            &mut c,
            Method::GET,
            "/admin/topics/Traced/messages?id=0123456789ABCDEF0123456789ABCDEF",
            None
        )
        .await,
        (404, "MessageNotExist".to_owned())
    );
    // The lookup changed nothing: a still gets it as a first delivery.
    let got = c
        .consume(&t, &groups[0], ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("a");
    assert_eq!(got[0].consumed_times, 1);
    broker.shutdown().await;
}

/// Purge drops every message of a topic, in flight ones included (their handles settle
/// nothing afterwards), and keeps the groups; reset forgets everything; with `--data-dir`
/// both survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_reset_are_durable() {
    let dir = TempDir::new("admin-purge");
    let config = || durable_config(&dir);
    let broker = Broker::start(config()).await.expect("start");
    let mut c = Client::new(broker.local_addr());
    let t = TopicName::new("Purged").expect("topic");
    let g = GroupId::new("GID_purged").expect("group");
    register_and_publish(&mut c, &t, &g, &["one", "two", "three"]).await;
    let in_flight = c
        .consume(&t, &g, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("consume");
    let (status, purged) = c
        .admin(Method::POST, "/admin/topics/Purged/purge", None)
        .await
        .expect("purge");
    assert_eq!(
        (status, &purged["purged"]),
        (200, &serde_json::json!(3)),
        "{purged}"
    );
    let failures = c
        .ack(
            &t,
            &g,
            mq_proto::AckKind::Ack,
            &[in_flight[0].receipt_handle.clone()],
        )
        .await
        .expect("io")
        .expect("answered");
    assert_eq!(
        failures.len(),
        1,
        "a purged delivery's handle settles nothing"
    );
    assert!(
        c.consume(&t, &g, ConsumeKind::Normal, 16, 0)
            .await
            .expect("io")
            .expect("consume")
            .is_empty()
    );
    assert_eq!(
        refusal(&mut c, Method::POST, "/admin/topics/Nowhere/purge", None).await,
        (404, "TopicNotExist".to_owned())
    );
    broker.shutdown().await;

    // After a restart: still purged, and the group still registered.
    let broker = Broker::start(config()).await.expect("restart");
    let mut c = Client::new(broker.local_addr());
    assert!(
        c.consume(&t, &g, ConsumeKind::Normal, 16, 0)
            .await
            .expect("io")
            .expect("consume")
            .is_empty()
    );
    let m = TopicMessage::new("after").expect("message");
    c.publish(&t, &m).await.expect("io").expect("publish");
    let got = c
        .consume(&t, &g, ConsumeKind::Normal, 16, 0)
        .await
        .expect("io")
        .expect("consume");
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["after"]
    );

    let (status, _) = c
        .admin(Method::POST, "/admin/reset", None)
        .await
        .expect("reset");
    assert_eq!(status, 200);
    assert!(broker.stats().topics.is_empty(), "{:?}", broker.stats());
    broker.shutdown().await;
    let broker = Broker::start(config()).await.expect("restart");
    assert!(broker.stats().topics.is_empty(), "reset survives a restart");
    broker.shutdown().await;
}

/// The group `g` of the `GET /admin/groups` answer (`None` when not listed).
fn listed_group<'a>(groups: &'a serde_json::Value, g: &str) -> Option<&'a serde_json::Value> {
    groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|x| x["group"] == g)
}

/// Where group `g` stands on topic `t` in the `GET /admin/topics` answer.
fn group_on<'a>(topics: &'a serde_json::Value, t: &str, g: &str) -> &'a serde_json::Value {
    topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|x| x["topic"] == t)
        .and_then(|x| x["groups"].as_array())
        .and_then(|gs| gs.iter().find(|x| x["group"] == g))
        .unwrap_or_else(|| panic!("{g} on {t} in {topics}"))
}

fn service_code(err: mq_proto::client::ResponseError) -> (u16, mq_proto::ErrorCode) {
    let mq_proto::client::ResponseError::Service(e) = err else {
        panic!("not a service error: {err:?}");
    };
    (e.status, e.code)
}

/// A topic created with a message type takes only that type; a group created with its own
/// invisibility and maximum deliveries keeps the topic's messages before its first consume,
/// hides them for its own time and dead-letters after its own count; the listings show
/// ready / in flight / dead / accumulation / last consume time; both are deleted; a wrong
/// method is 405 with `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_groups_are_created_listed_and_deleted() {
    let broker = start(true).await;
    let addr = broker.local_addr();
    let mut c = Client::new(addr);
    let (status, created) = c
        .admin(
            Method::POST,
            "/admin/topics?topic=Orders&message_type=ORDER",
            None,
        )
        .await
        .expect("create topic");
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["topic"]["message_type"], "FIFO", "{created}");
    assert_eq!(created["topic"]["declared"], true, "{created}");
    let t = TopicName::new("Orders").expect("topic");
    let g = GroupId::new("GID_fast").expect("group");
    let normal = TopicMessage::new("no sharding key").expect("message");
    let refused = c
        .publish(&t, &normal)
        .await
        .expect("io")
        .expect_err("refused");
    assert_eq!(
        service_code(refused),
        (400, mq_proto::ErrorCode::InvalidArgument),
        "a FIFO topic takes ordered messages only"
    );

    let (status, group) = c
        .admin(
            Method::POST,
            "/admin/groups?group=GID_fast&topic=Orders&invisibility_ms=1000&max_deliveries=2",
            None,
        )
        .await
        .expect("create group");
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["group"]["declared"], true, "{group}");
    assert_eq!(group["group"]["invisibility_ms"], 1000, "{group}");
    assert_eq!(group["group"]["max_deliveries"], 2, "{group}");
    assert_eq!(group["group"]["topics"][0]["topic"], "Orders", "{group}");

    // Published before the group's first consume: the created group keeps it.
    let sharded = TopicMessage::new("order 1")
        .expect("message")
        .with_sharding_key("user-1")
        .expect("sharding key");
    c.publish(&t, &sharded).await.expect("io").expect("publish");
    let (_, topics) = c
        .admin(Method::GET, "/admin/topics", None)
        .await
        .expect("list");
    let pos = group_on(&topics, "Orders", "GID_fast");
    assert_eq!(
        (&pos["ready"], &pos["accumulation"]),
        (&1.into(), &1.into()),
        "{topics}"
    );
    assert_eq!(
        pos["last_consume_time_ms"],
        serde_json::Value::Null,
        "{topics}"
    );

    let clock = |json: serde_json::Value| json["now_ms"].as_u64().expect("now");
    let before = clock(
        c.admin(Method::GET, "/admin/clock", None)
            .await
            .expect("clock")
            .1,
    );
    let got = c
        .consume(&t, &g, ConsumeKind::Orderly, 16, 0)
        .await
        .expect("io")
        .expect("consume");
    let after = clock(
        c.admin(Method::GET, "/admin/clock", None)
            .await
            .expect("clock")
            .1,
    );
    assert_eq!(got.len(), 1);
    assert!(
        (before + 1_000..=after + 1_000).contains(&got[0].next_consume_time),
        "the group's own invisibility: {} not within [{before}, {after}] + 1000",
        got[0].next_consume_time
    );
    let (_, topics) = c
        .admin(Method::GET, "/admin/topics", None)
        .await
        .expect("list");
    let pos = group_on(&topics, "Orders", "GID_fast");
    assert_eq!(
        (&pos["in_flight"], &pos["accumulation"]),
        (&1.into(), &1.into()),
        "{topics}"
    );
    assert!(
        pos["last_consume_time_ms"].as_u64() >= Some(before),
        "{topics}"
    );

    // Second delivery after 1 s; after its expiry the group's second delivery was its last.
    for _ in 0..2 {
        let (status, _) = c
            .admin(Method::POST, "/admin/clock?advance_ms=1001", None)
            .await
            .expect("advance");
        assert_eq!(status, 200);
        let _ = c
            .consume(&t, &g, ConsumeKind::Orderly, 16, 0)
            .await
            .expect("io")
            .expect("consume");
    }
    let (_, topics) = c
        .admin(Method::GET, "/admin/topics?ns=", None)
        .await
        .expect("list");
    let pos = group_on(&topics, "Orders", "GID_fast");
    assert_eq!(
        (
            &pos["dead_letters_kept"],
            &pos["accumulation"],
            &pos["delivered"]
        ),
        (&1.into(), &0.into(), &2.into()),
        "dead-lettered after max_deliveries=2: {topics}"
    );
    let (_, none) = c
        .admin(Method::GET, "/admin/topics?ns=MQ_INST_other", None)
        .await
        .expect("list");
    assert_eq!(
        none["topics"],
        serde_json::json!([]),
        "another instance's topics only"
    );

    // A consume registers an undeclared group, listed as such; a GET creates nothing.
    let other = GroupId::new("GID_casual").expect("group");
    c.consume(&t, &other, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("consume");
    invalid_argument(
        &mut c,
        Method::GET,
        "/admin/groups?group=GID_ghost&topic=Orders",
    )
    .await;
    let (_, groups) = c
        .admin(Method::GET, "/admin/groups", None)
        .await
        .expect("groups");
    assert_eq!(
        listed_group(&groups, "GID_casual").expect("casual")["declared"],
        false
    );
    assert!(listed_group(&groups, "GID_ghost").is_none(), "{groups}");
    assert_eq!(
        listed_group(&groups, "GID_fast").expect("fast")["topics"][0]["dead_letters_kept"],
        1
    );

    // A wrong method on an admin path: 405 with the methods it takes.
    let (token, _) = broker.admin_token().expect("token");
    let bearer = format!("Bearer {token}");
    for (method, path, allow) in [
        ("DELETE", "/admin/clock", "GET, POST"),
        ("PUT", "/admin/topics", "GET, POST"),
        ("POST", "/admin/topics/Orders", "GET, DELETE"),
        ("GET", "/admin/reset", "POST"),
        ("GET", "/admin/groups/GID_fast", "DELETE"),
    ] {
        let answer = raw_call(addr, method, path, Some(&bearer)).await;
        assert!(
            answer.starts_with("HTTP/1.1 405"),
            "{method} {path}: {answer}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("\r\nallow: {}\r\n", allow.to_ascii_lowercase())),
            "{method} {path}: {answer}"
        );
        assert!(answer.contains("\"MethodNotAllowed\""), "{answer}");
    }
    for (target, why) in [
        ("/admin/topics", "no topic"),
        (
            "/admin/topics?topic=X&message_type=SOMETIMES",
            "unknown type",
        ),
        ("/admin/groups?topic=Orders", "no group"),
        (
            "/admin/groups?group=GID_x&max_deliveries=0",
            "zero deliveries",
        ),
        (
            "/admin/groups?group=GID_x&invisibility_ms=soon",
            "not a number",
        ),
    ] {
        assert_eq!(
            refusal(&mut c, Method::POST, target, None).await,
            (400, "InvalidArgument".to_owned()),
            "{why}"
        );
    }

    // Deleting the group drops its position (and its receipt handles' meaning).
    let (status, deleted) = c
        .admin(Method::DELETE, "/admin/groups/GID_fast", None)
        .await
        .expect("delete group");
    assert_eq!(status, 200, "{deleted}");
    let (_, groups) = c
        .admin(Method::GET, "/admin/groups", None)
        .await
        .expect("groups");
    assert!(listed_group(&groups, "GID_fast").is_none(), "{groups}");
    assert_eq!(
        refusal(&mut c, Method::DELETE, "/admin/groups/GID_fast", None).await,
        (404, "SubscriptionNotExist".to_owned())
    );

    // Deleting the topic drops what it kept (the dead letter's message, kept a while after
    // its group went, and one published with no group); it is gone from the listing.
    c.publish(&t, &sharded).await.expect("io").expect("publish");
    let (status, deleted) = c
        .admin(Method::DELETE, "/admin/topics/Orders", None)
        .await
        .expect("delete topic");
    assert_eq!(
        (status, &deleted["messages"]),
        (200, &2.into()),
        "{deleted}"
    );
    assert_eq!(
        refusal(&mut c, Method::GET, "/admin/topics/Orders", None).await,
        (404, "TopicNotExist".to_owned())
    );
    assert_eq!(
        refusal(&mut c, Method::DELETE, "/admin/topics/Orders", None).await,
        (404, "TopicNotExist".to_owned())
    );
    broker.shutdown().await;
}

/// Groups declared at start (`--group`) keep messages published before their first
/// consume; created topics' types and groups' settings survive a restart with
/// `--data-dir`, and a reset keeps created groups subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_topics_and_groups_are_durable() {
    let dir = TempDir::new("admin-groups");
    let config = || ServerConfig {
        groups: vec![
            "GID_declared,topic=Declared,max_deliveries=1"
                .parse()
                .expect("declaration"),
        ],
        ..durable_config(&dir)
    };
    let broker = Broker::start(config()).await.expect("start");
    let mut c = Client::new(broker.local_addr());
    let declared = TopicName::new("Declared").expect("topic");
    let g = GroupId::new("GID_declared").expect("group");
    c.publish(&declared, &TopicMessage::new("early").expect("message"))
        .await
        .expect("io")
        .expect("publish");
    let (status, _) = c
        .admin(
            Method::POST,
            "/admin/topics?topic=Txn&message_type=transaction",
            None,
        )
        .await
        .expect("create");
    assert_eq!(status, 200);
    let (status, _) = c
        .admin(
            Method::POST,
            "/admin/groups?group=GID_slow&topic=Txn&invisibility_ms=5000",
            None,
        )
        .await
        .expect("create");
    assert_eq!(status, 200);
    broker.shutdown().await;

    let broker = Broker::start(config()).await.expect("restart");
    let mut c = Client::new(broker.local_addr());
    let got = c
        .consume(&declared, &g, ConsumeKind::Normal, 16, 0)
        .await
        .expect("io")
        .expect("consume");
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["early"],
        "published before the declared group's first consume"
    );
    let txn = TopicName::new("Txn").expect("topic");
    let refused = c
        .publish(&txn, &TopicMessage::new("plain").expect("message"))
        .await
        .expect("io")
        .expect_err("a TRANSACTION topic refuses a normal message after a restart");
    assert_eq!(service_code(refused).0, 400);
    let (_, groups) = c
        .admin(Method::GET, "/admin/groups", None)
        .await
        .expect("groups");
    let slow = listed_group(&groups, "GID_slow").expect("GID_slow survives");
    assert_eq!(
        (&slow["invisibility_ms"], &slow["declared"]),
        (&5000.into(), &true.into())
    );
    assert_eq!(
        listed_group(&groups, "GID_declared").expect("declared")["max_deliveries"],
        1
    );

    // After a reset the created group is subscribed again and keeps new messages.
    let (status, _) = c
        .admin(Method::POST, "/admin/reset", None)
        .await
        .expect("reset");
    assert_eq!(status, 200);
    c.publish(
        &declared,
        &TopicMessage::new("after reset").expect("message"),
    )
    .await
    .expect("io")
    .expect("publish");
    let (_, peeked) = c
        .admin(
            Method::GET,
            "/admin/topics/Declared/messages?state=ready&group=GID_declared",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(names(&peeked), ["after reset"]);
    broker.shutdown().await;
}

/// Moves the test clock forward by `ms`.
async fn advance(c: &mut Client, ms: u64) {
    let (status, json) = c
        .admin(Method::POST, &format!("/admin/clock?advance_ms={ms}"), None)
        .await
        .expect("advance");
    assert_eq!(status, 200, "{json}");
}

async fn consume_all(c: &mut Client, t: &TopicName, g: &GroupId) -> Vec<mq_proto::Message> {
    c.consume(t, g, ConsumeKind::Normal, 16, 0)
        .await
        .expect("io")
        .expect("consume")
}

async fn ack_all(c: &mut Client, t: &TopicName, g: &GroupId, got: &[mq_proto::Message]) {
    let handles: Vec<_> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    let failures = c
        .ack(t, g, mq_proto::AckKind::Ack, &handles)
        .await
        .expect("io")
        .expect("ack");
    assert!(failures.is_empty(), "{failures:?}");
}

fn bodies(got: &[mq_proto::Message]) -> Vec<&str> {
    got.iter().map(|m| m.body.as_str()).collect()
}

/// Publishes a half message first checked `immunity_s` after its publish.
async fn publish_half(
    c: &mut Client,
    t: &TopicName,
    body: &str,
    immunity_s: u32,
) -> mq_proto::client::PublishReceipt {
    let m = TopicMessage::new(body)
        .expect("message")
        .with_trans_check_immunity(TransCheckImmunity::new(immunity_s).expect("immunity"));
    c.publish(t, &m).await.expect("io").expect("half")
}

/// A message's trace (`GET /admin/messages/{id}/trace`).
async fn trace(c: &mut Client, id: &mq_proto::MessageId) -> serde_json::Value {
    let target = format!("/admin/messages/{}/trace", id.as_str());
    let (status, json) = c.admin(Method::GET, &target, None).await.expect("trace");
    assert_eq!(status, 200, "{json}");
    json
}

/// The names of a trace's events, oldest first.
fn event_names(trace: &serde_json::Value) -> Vec<String> {
    trace["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Dead letters keep their bodies: listed with them, resent one by id (delivered again as a
/// new message, same id), the rest deleted; unknown ids and groups are refused.
/// `GET /admin/clock`'s answer.
async fn read_clock(c: &mut Client) -> serde_json::Value {
    let (status, clock) = c
        .admin(Method::GET, "/admin/clock", None)
        .await
        .expect("clock");
    assert_eq!(status, 200, "{clock}");
    clock
}

/// Creates `g` on `t` with a 1 s invisibility and one delivery: a message it does not ack
/// within 1 s of its delivery is dead-lettered.
async fn dead_lettering_group(c: &mut Client, t: &TopicName, g: &GroupId) {
    let target = format!(
        "/admin/groups?group={}&topic={}&invisibility_ms=1000&max_deliveries=1",
        g.as_str(),
        t.as_str()
    );
    let (status, json) = c
        .admin(Method::POST, &target, None)
        .await
        .expect("create group");
    assert_eq!(status, 200, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_resent_and_deleted() {
    let broker = start(true).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Letters", "GID_once");
    dead_lettering_group(&mut c, &t, &g).await;
    for body in ["first", "second"] {
        let m = TopicMessage::new(body).expect("message");
        c.publish(&t, &m).await.expect("io").expect("publish");
    }
    let got = consume_all(&mut c, &t, &g).await;
    assert_eq!(bodies(&got), ["first", "second"]);
    advance(&mut c, 1_001).await;
    let path = "/admin/topics/Letters/groups/GID_once/dead_letters";
    let (status, dead) = c.admin(Method::GET, path, None).await.expect("list");
    assert_eq!(status, 200, "{dead}");
    assert_eq!(names(&dead), ["first", "second"], "{dead}");
    assert!(
        dead["messages"][0]["dead_lettered_at"].as_u64().is_some(),
        "{dead}"
    );

    let first = got[0].message_id.as_str();
    let (status, resent) = c
        .admin(Method::POST, &format!("{path}/resend?id={first}"), None)
        .await
        .expect("resend");
    assert_eq!((status, &resent["resent"]), (200, &1.into()), "{resent}");
    let again = consume_all(&mut c, &t, &g).await;
    assert_eq!(bodies(&again), ["first"]);
    assert_eq!(again[0].message_id, got[0].message_id);
    assert_eq!(
        again[0].consumed_times, 1,
        "a resent dead letter counts from 1"
    );
    ack_all(&mut c, &t, &g, &again).await;

    assert_eq!(
        refusal(
            &mut c,
            Method::POST,
            &format!("{path}/resend?id={first}"),
            None
        )
        .await,
        (404, "MessageNotExist".to_owned()),
        "no longer a dead letter"
    );
    let (status, deleted) = c.admin(Method::DELETE, path, None).await.expect("delete");
    assert_eq!((status, &deleted["deleted"]), (200, &1.into()), "{deleted}");
    let (_, dead) = c.admin(Method::GET, path, None).await.expect("list");
    assert_eq!(names(&dead), Vec::<&str>::new());
    assert_eq!(
        refusal(
            &mut c,
            Method::POST,
            "/admin/topics/Letters/groups/GID_nobody/dead_letters/resend",
            None
        )
        .await,
        (404, "SubscriptionNotExist".to_owned())
    );
    broker.shutdown().await;
}

/// A consumer offset reset to a time delivers again what was published since (acked
/// messages included) and skips what the group still holds from before; the trace shows
/// each step with the producer's AccessKey; paging by publish time walks every kept
/// message, consumed ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offset_trace_and_paging() {
    let broker = start(true).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Replayed", "GID_replay");
    register_and_publish(&mut c, &t, &g, &["a"]).await;
    let first = consume_all(&mut c, &t, &g).await;
    ack_all(&mut c, &t, &g, &first).await;
    advance(&mut c, 1_000).await;
    let b = c
        .publish(&t, &TopicMessage::new("b").expect("message"))
        .await
        .expect("io")
        .expect("publish");
    let got = consume_all(&mut c, &t, &g).await;
    assert_eq!(bodies(&got), ["b"]);
    let since = got[0].publish_time;
    ack_all(&mut c, &t, &g, &got).await;
    advance(&mut c, 1_000).await;
    c.publish(&t, &TopicMessage::new("c").expect("message"))
        .await
        .expect("io")
        .expect("publish");

    let reset = format!("/admin/topics/Replayed/groups/GID_replay/reset_offset?time_ms={since}");
    let (status, json) = c.admin(Method::POST, &reset, None).await.expect("reset");
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        (&json["redelivered"], &json["skipped"]),
        (&1.into(), &0.into()),
        "{json}"
    );
    let again = consume_all(&mut c, &t, &g).await;
    let mut got_again = bodies(&again);
    got_again.sort_unstable();
    assert_eq!(got_again, ["b", "c"], "c was pending; b comes back");
    ack_all(&mut c, &t, &g, &again).await;

    // The trace of b: published by the test's key, delivered, acked, reset, delivered, acked.
    let (status, trace) = c
        .admin(
            Method::GET,
            &format!("/admin/messages/{}/trace", b.message_id.as_str()),
            None,
        )
        .await
        .expect("trace");
    assert_eq!(status, 200, "{trace}");
    let events: Vec<&str> = trace["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        events,
        [
            "published",
            "delivered",
            "acked",
            "offset_reset",
            "delivered",
            "acked"
        ],
        "{trace}"
    );
    assert_eq!(trace["events"][0]["producer"], AK, "{trace}");
    assert_eq!(trace["events"][1]["group"], "GID_replay", "{trace}");
    assert_eq!(
        trace["events"][1]["receipt_handle"],
        got[0].receipt_handle.as_str(),
        "{trace}"
    );
    assert_eq!(
        trace["events"][1]["next_consume_time"], got[0].next_consume_time,
        "{trace}"
    );
    assert_eq!(
        refusal(
            &mut c,
            Method::GET,
            "/admin/messages/0123456789ABCDEF0123456789ABCDEF/trace",
            None
        )
        .await,
        (404, "MessageNotExist".to_owned())
    );

    // Pages of two by publish time: a, b, then c; all consumed by the only group.
    let page = |after: Option<&str>| {
        let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
        format!("/admin/topics/Replayed/messages?begin_ms=0&limit=2{after}")
    };
    let (status, first) = c.admin(Method::GET, &page(None), None).await.expect("page");
    assert_eq!(status, 200, "{first}");
    assert_eq!(names(&first), ["a", "b"], "{first}");
    assert_eq!(first["messages"][0]["state"], "consumed", "{first}");
    // No group holds it any more: its deliveries still show (from its trace).
    assert_eq!(first["messages"][0]["consumed_times"], 1, "{first}");
    assert_eq!(
        first["messages"][0]["groups"][0]["consumed_times"], 1,
        "{first}"
    );
    let next = first["next"].as_str().expect("a next page");
    let (_, second) = c
        .admin(Method::GET, &page(Some(next)), None)
        .await
        .expect("page");
    assert_eq!(names(&second), ["c"], "{second}");
    assert_eq!(second["next"], serde_json::Value::Null, "{second}");
    let (_, none) = c
        .admin(
            Method::GET,
            &format!("/admin/topics/Replayed/messages?begin_ms=0&end_ms={since}"),
            None,
        )
        .await
        .expect("page");
    assert_eq!(names(&none), ["a"], "end_ms is exclusive");

    // A reset to a later time skips what the group holds from before it.
    c.publish(&t, &TopicMessage::new("d").expect("message"))
        .await
        .expect("io")
        .expect("publish");
    let clock = read_clock(&mut c).await;
    let later = clock["now_ms"].as_u64().expect("now") + 1;
    let (_, json) = c
        .admin(
            Method::POST,
            &format!("/admin/topics/Replayed/groups/GID_replay/reset_offset?time_ms={later}"),
            None,
        )
        .await
        .expect("reset");
    assert_eq!(
        (&json["redelivered"], &json["skipped"]),
        (&0.into(), &1.into()),
        "{json}"
    );
    assert!(consume_all(&mut c, &t, &g).await.is_empty());
    broker.shutdown().await;
}

/// A transaction's trace: checked (with the check's handle), then committed; a rolled-back
/// one stays findable, in state `rolled_back`, and is never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_trace_shows_checks_commit_and_rollback() {
    let broker = start(true).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Txns", "GID_txn");
    register_and_publish(&mut c, &t, &g, &[]).await;
    let kept = publish_half(&mut c, &t, "kept", 10).await;
    let dropped = publish_half(&mut c, &t, "dropped", 10).await;
    advance(&mut c, 10_001).await;
    let checks = c
        .consume(&t, &g, ConsumeKind::Half, 16, 0)
        .await
        .expect("io")
        .expect("pop");
    assert_eq!(checks.len(), 2);
    for (m, kind) in checks
        .iter()
        .zip([mq_proto::AckKind::Commit, mq_proto::AckKind::Rollback])
    {
        let failures = c
            .ack(&t, &g, kind, std::slice::from_ref(&m.receipt_handle))
            .await
            .expect("io")
            .expect("settle");
        assert!(failures.is_empty(), "{failures:?}");
    }
    let committed = trace(&mut c, &kept.message_id).await;
    assert_eq!(
        event_names(&committed),
        ["published", "checked", "committed"],
        "{committed}"
    );
    assert_eq!(
        committed["events"][1]["receipt_handle"],
        checks[0].receipt_handle.as_str(),
        "{committed}"
    );
    let rolled = trace(&mut c, &dropped.message_id).await;
    assert_eq!(
        event_names(&rolled),
        ["published", "checked", "rolled_back"],
        "{rolled}"
    );
    let (_, found) = c
        .admin(
            Method::GET,
            &format!(
                "/admin/topics/Txns/messages?id={}",
                dropped.message_id.as_str()
            ),
            None,
        )
        .await
        .expect("find");
    assert_eq!(found["messages"][0]["state"], "rolled_back", "{found}");
    let got = consume_all(&mut c, &t, &g).await;
    assert_eq!(
        bodies(&got),
        ["kept"],
        "only the committed message is delivered"
    );
    broker.shutdown().await;
}

/// `POST /admin/topics/{t}/half/{id}/commit|rollback`: a committed half message is
/// delivered to the topic's group (its producer's handle decides nothing afterwards); a
/// rolled-back one is never delivered and no longer listed; both traces record the
/// decision; an id that is not a waiting half message is 404 `MessageNotExist`; a GET is
/// 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_messages_are_committed_and_rolled_back_by_id() {
    let broker = start(true).await;
    let addr = broker.local_addr();
    let mut c = Client::new(addr);
    let (t, g) = topic_group("Decided", "GID_decided");
    register_and_publish(&mut c, &t, &g, &[]).await;
    let kept = publish_half(&mut c, &t, "to commit", 60).await;
    let dropped = publish_half(&mut c, &t, "to roll back", 60).await;
    let decide = |id: &str, action: &str| format!("/admin/topics/Decided/half/{id}/{action}");
    assert!(consume_all(&mut c, &t, &g).await.is_empty());

    let (status, json) = c
        .admin(
            Method::POST,
            &decide(kept.message_id.as_str(), "commit"),
            None,
        )
        .await
        .expect("commit");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["message_id"], kept.message_id.as_str());
    assert_eq!(json["resolution"], "commit");
    let got = consume_all(&mut c, &t, &g).await;
    assert_eq!(bodies(&got), ["to commit"]);
    assert_eq!(got[0].message_id, kept.message_id);
    ack_all(&mut c, &t, &g, &got).await;
    // The producer's own handle decides nothing any more.
    let late = c
        .ack(
            &t,
            &g,
            mq_proto::AckKind::Rollback,
            &[kept.receipt_handle.clone().expect("publish handle")],
        )
        .await
        .expect("io")
        .expect("answered");
    assert_eq!(late.len(), 1, "{late:?}");

    let (status, json) = c
        .admin(
            Method::POST,
            &decide(dropped.message_id.as_str(), "rollback"),
            None,
        )
        .await
        .expect("rollback");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["resolution"], "rollback");
    let (_, listed) = c
        .admin(
            Method::GET,
            "/admin/topics/Decided/messages?state=half",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(names(&listed), Vec::<&str>::new(), "{listed}");
    // Past its check time: a rolled-back message is never delivered nor checked.
    advance(&mut c, 600_000).await;
    assert!(consume_all(&mut c, &t, &g).await.is_empty());
    assert!(
        c.consume(&t, &g, ConsumeKind::Half, 16, 0)
            .await
            .expect("io")
            .expect("checks")
            .is_empty()
    );

    assert_eq!(
        event_names(&trace(&mut c, &kept.message_id).await),
        ["published", "committed", "delivered", "acked"]
    );
    assert_eq!(
        event_names(&trace(&mut c, &dropped.message_id).await),
        ["published", "rolled_back"]
    );

    // Not a waiting half message: decided already, a normal message, unknown, elsewhere.
    let normal = c
        .publish(&t, &TopicMessage::new("normal").expect("message"))
        .await
        .expect("io")
        .expect("publish");
    for (target, code) in [
        (
            decide(kept.message_id.as_str(), "rollback"),
            "MessageNotExist",
        ),
        (
            decide(dropped.message_id.as_str(), "commit"),
            "MessageNotExist",
        ),
        (
            decide(normal.message_id.as_str(), "commit"),
            "MessageNotExist",
        ),
        (
            decide("0123456789ABCDEF0123456789ABCDEF", "commit"),
            "MessageNotExist",
        ),
        (decide("not-an-id", "rollback"), "MessageNotExist"),
        (
            format!(
                "/admin/topics/Nowhere/half/{}/commit",
                kept.message_id.as_str()
            ),
            "TopicNotExist",
        ),
    ] {
        assert_eq!(
            refusal(&mut c, Method::POST, &target, None).await,
            (404, code.to_owned()),
            "{target}"
        );
    }
    assert_eq!(
        refusal(&mut c, Method::POST, &decide("X", "maybe"), None).await,
        (404, "NotFound".to_owned())
    );
    let (token, _) = broker.admin_token().expect("token");
    let answer = raw_call(
        addr,
        "GET",
        &decide(kept.message_id.as_str(), "commit"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nallow: post\r\n"),
        "{answer}"
    );
    assert!(
        consume_all(&mut c, &t, &g)
            .await
            .iter()
            .all(|m| m.body == "normal"),
        "a refused decision delivered something"
    );
    broker.shutdown().await;
}

/// With `--data-dir`, a decision by id survives a restart: the committed message is still
/// delivered, the rolled-back one still never, neither waits any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_message_decisions_are_durable() {
    let dir = TempDir::new("admin-half");
    let config = || durable_config(&dir);
    let broker = Broker::start(config()).await.expect("start");
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("DurableHalf", "GID_durable_half");
    register_and_publish(&mut c, &t, &g, &[]).await;
    let mut ids = Vec::new();
    for body in ["commit me", "roll me back", "undecided"] {
        ids.push(publish_half(&mut c, &t, body, 300).await.message_id);
    }
    for (id, action) in ids.iter().zip(["commit", "rollback"]) {
        let target = format!("/admin/topics/DurableHalf/half/{}/{action}", id.as_str());
        let (status, json) = c.admin(Method::POST, &target, None).await.expect("decide");
        assert_eq!(status, 200, "{json}");
    }
    broker.shutdown().await;

    let broker = Broker::start(config()).await.expect("restart");
    let mut c = Client::new(broker.local_addr());
    let (_, listed) = c
        .admin(
            Method::GET,
            "/admin/topics/DurableHalf/messages?state=half",
            None,
        )
        .await
        .expect("peek");
    assert_eq!(names(&listed), ["undecided"], "{listed}");
    let got = consume_all(&mut c, &t, &g).await;
    assert_eq!(bodies(&got), ["commit me"]);
    for (id, code) in [(&ids[0], "MessageNotExist"), (&ids[1], "MessageNotExist")] {
        let target = format!("/admin/topics/DurableHalf/half/{}/commit", id.as_str());
        assert_eq!(
            refusal(&mut c, Method::POST, &target, None).await,
            (404, code.to_owned())
        );
    }
    broker.shutdown().await;
}

/// A signed admin call written by hand: `Content-MD5` (signed) is the digest of `md5_of`,
/// the body sent is `body`; the whole answer.
async fn signed_with_digest(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    md5_of: &str,
    body: &str,
) -> String {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hex = TopicMessage::new(md5_of)
        .expect("digest source")
        .body_md5()
        .to_lowercase();
    let digest = base64::engine::general_purpose::STANDARD.encode(hex);
    let date = mq_proto::sign::format_http_date(std::time::SystemTime::now());
    let mut headers = http::HeaderMap::new();
    headers.insert("content-md5", digest.parse().expect("header"));
    headers.insert("content-type", "application/json".parse().expect("header"));
    headers.insert("date", date.parse().expect("header"));
    let http_method: Method = method.parse().expect("method");
    let to_sign = mq_proto::sign::string_to_sign(&http_method, &headers, target);
    let signature = mq_proto::sign::signature(SK, &to_sign);
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-md5: {digest}\r\ncontent-type: application/json\r\ndate: {date}\r\nauthorization: MQ {AK}:{signature}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(req.as_bytes()).await.expect("write");
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.expect("read");
    answer
}

/// Asserts that a raw answer has this status and carries this code.
fn answered(answer: &str, status: u16, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")) && answer.contains(code),
        "not {status} {code}: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_body_must_match_its_signed_content_md5() {
    let broker = start(false).await;
    let addr = broker.local_addr();
    let mut c = Client::new(addr);
    let target = "/admin/topics/plain/messages";
    let good = r#"{"body":"good"}"#;
    let swapped = signed_with_digest(addr, "POST", target, good, r#"{"body":"evil2"}"#).await;
    answered(&swapped, 400, "InvalidDigest");
    let ok = signed_with_digest(addr, "POST", target, good, good).await;
    answered(&ok, 200, "message_id");
    // Every other admin call takes no body: one sent is refused, and a Content-MD5 must be
    // the empty body's.
    let purge = "/admin/topics/plain/purge";
    let with_body = signed_with_digest(addr, "POST", purge, good, good).await;
    answered(&with_body, 400, "InvalidArgument");
    let digest_of_other = signed_with_digest(addr, "POST", purge, good, "").await;
    answered(&digest_of_other, 400, "InvalidDigest");
    let (status, json) = c
        .admin(Method::GET, "/admin/topics/plain/messages?begin_ms=0", None)
        .await
        .expect("page");
    assert_eq!(status, 200, "{json}");
    assert_eq!(names(&json), ["good"], "the swapped body was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_rule_counts_only_the_calls_it_answered() {
    let broker = start_with(false, true).await;
    let mut c = Client::new(broker.local_addr());
    let t = TopicName::new("Faulty2").expect("topic");
    let m = TopicMessage::new("x").expect("message");
    for rule in ["error=AccessDenied", "error=InternalError"] {
        let target = format!("/admin/faults?operation=publish&{rule}&count=1");
        let (status, json) = c.admin(Method::POST, &target, None).await.expect("add");
        assert_eq!(status, 200, "{json}");
    }
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(match c.publish(&t, &m).await.expect("io") {
            Ok(_) => (201, None),
            Err(err) => {
                let (status, code) = service_code(err);
                (status, Some(code))
            }
        });
    }
    use mq_proto::ErrorCode::{AccessDenied, InternalError};
    assert_eq!(
        codes,
        [
            (403, Some(AccessDenied)),
            (500, Some(InternalError)),
            (201, None)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_group_is_not_an_empty_one() {
    let (_broker, mut c) = with_one_message("Known", "GID_known").await;
    let mut answers = Vec::new();
    for target in [
        "/admin/topics/Known/messages?state=ready&group=GID_nosuch",
        "/admin/topics/Known/messages?state=dead&group=GID_nosuch",
        "/admin/topics/Known/groups/GID_nosuch/dead_letters",
    ] {
        answers.push(refusal(&mut c, Method::GET, target, None).await);
    }
    let not_there = (404, "SubscriptionNotExist".to_owned());
    assert_eq!(answers, [not_there.clone(), not_there.clone(), not_there]);
    let (status, json) = c
        .admin(
            Method::GET,
            "/admin/topics/Known/messages?state=ready&group=GID_known",
            None,
        )
        .await
        .expect("peek");
    assert_eq!((status, names(&json)), (200, vec!["a"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_carry_body_previews_within_a_budget() {
    use mq_broker::core::{BODY_PREVIEW_BYTES, LISTING_BUDGET_BYTES};
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Big", "GID_big");
    // Two-byte characters: a cut at an odd byte would split one.
    let body = "é".repeat(BODY_PREVIEW_BYTES);
    let count = LISTING_BUDGET_BYTES / BODY_PREVIEW_BYTES + 10;
    let bodies = vec![body.as_str(); count];
    register_and_publish(&mut c, &t, &g, &bodies).await;

    let preview_of = |m: &serde_json::Value| {
        let shown = m["body"].as_str().expect("a preview");
        assert!(shown.len() <= BODY_PREVIEW_BYTES && shown.len() > BODY_PREVIEW_BYTES - 2);
        assert!(body.starts_with(shown));
        assert_eq!(m["body_size"], body.len());
        assert_eq!(m["body_truncated"], true);
    };
    // Pages stop at the budget, and following `next` lists every message once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let target = format!("/admin/topics/Big/messages?begin_ms=0&limit=1000{after}");
        let (status, json) = c.admin(Method::GET, &target, None).await.expect("page");
        assert_eq!(status, 200, "{json}");
        let page = json["messages"].as_array().expect("messages");
        assert!(page.len() < count, "a page copies at most the budget");
        page.iter().for_each(preview_of);
        seen.extend(
            page.iter()
                .map(|m| m["message_id"].as_str().expect("id").to_owned()),
        );
        match json["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), count);
    let (_, peeked) = c
        .admin(
            Method::GET,
            "/admin/topics/Big/messages?state=ready&group=GID_big&limit=1000",
            None,
        )
        .await
        .expect("peek");
    let peeked = peeked["messages"].as_array().expect("messages");
    assert!(!peeked.is_empty() && peeked.len() < count);
    peeked.iter().for_each(preview_of);
    // By id: the whole body.
    let (status, found) = c
        .admin(
            Method::GET,
            &format!("/admin/topics/Big/messages?id={}", seen[0]),
            None,
        )
        .await
        .expect("by id");
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["messages"][0]["body"], body.as_str());
    assert_eq!(found["messages"][0]["body_truncated"], false);
}

/// Asserts that an admin call is refused with 400 `InvalidArgument`; its message.
async fn invalid_argument(c: &mut Client, method: Method, target: &str) -> String {
    let (status, json) = c.admin(method, target, None).await.expect("call");
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("InvalidArgument")),
        "{target}: {json}"
    );
    json["message"].as_str().unwrap_or_default().to_owned()
}

/// Each call is refused with 400 `InvalidArgument`.
async fn all_invalid(c: &mut Client, calls: &[(Method, &str)]) {
    for (method, target) in calls {
        invalid_argument(c, method.clone(), target).await;
    }
}

/// The group `g` as `GET /admin/groups` lists it.
async fn group_settings(c: &mut Client, g: &str) -> (serde_json::Value, serde_json::Value) {
    let (_, groups) = c
        .admin(Method::GET, "/admin/groups", None)
        .await
        .expect("groups");
    let listed = listed_group(&groups, g).expect("listed");
    (
        listed["invisibility_ms"].clone(),
        listed["max_deliveries"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_update_changes_only_what_it_passes() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let call = |q: &str| format!("/admin/groups?group=GID_upd&topic=Upd{q}");
    for (query, want) in [
        ("&invisibility_ms=30000&max_deliveries=5", (30_000, 5)),
        ("&max_deliveries=9", (30_000, 9)),
        ("&invisibility_ms=45000", (45_000, 9)),
        ("", (45_000, 9)),
    ] {
        let (status, json) = c
            .admin(Method::POST, &call(query), None)
            .await
            .expect("update");
        assert_eq!(status, 200, "{json}");
        let (inv, max) = group_settings(&mut c, "GID_upd").await;
        assert_eq!(
            (inv, max),
            (want.0.into(), want.1.into()),
            "after {query:?}"
        );
    }
    // An empty value returns the setting to the broker's.
    c.admin(Method::POST, &call("&invisibility_ms="), None)
        .await
        .expect("update");
    assert_eq!(
        group_settings(&mut c, "GID_upd").await,
        (serde_json::Value::Null, 9.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_invisibility_is_at_most_12_hours() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let max = mq_broker::core::MAX_INVISIBILITY_MS;
    for too_long in [max + 1, u64::MAX] {
        let target = format!("/admin/groups?group=GID_long&invisibility_ms={too_long}");
        let message = invalid_argument(&mut c, Method::POST, &target).await;
        assert!(message.contains("43200000"), "{message}");
    }
    let target = format!("/admin/groups?group=GID_long&invisibility_ms={max}");
    let (status, json) = c.admin(Method::POST, &target, None).await.expect("call");
    assert_eq!(status, 200, "{json}");
    // Consumed with it, the NextConsumeTime is 12 h ahead (well within a signed 64-bit).
    let (t, g) = topic_group("Long", "GID_long");
    register_and_publish(&mut c, &t, &g, &["a"]).await;
    let got = consume_all(&mut c, &t, &g).await;
    assert_eq!(got[0].next_consume_time - got[0].first_consume_time, max);
    assert!(i64::try_from(got[0].next_consume_time).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_counts_only_the_messages_it_alone_held() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, a) = topic_group("Shared", "GID_a");
    let b = GroupId::new("GID_b").expect("group");
    c.consume(&t, &b, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("register b");
    register_and_publish(&mut c, &t, &a, &["1", "2", "3"]).await;
    let (status, json) = c
        .admin(Method::DELETE, "/admin/groups/GID_a", None)
        .await
        .expect("delete");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["messages"], 0, "GID_b still holds all three: {json}");
    let (_, json) = c
        .admin(Method::DELETE, "/admin/groups/GID_b", None)
        .await
        .expect("delete");
    assert_eq!(json["messages"], 3, "GID_b held them last: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_are_given_once_and_with_a_value() {
    let (_broker, mut c) = with_one_message("Q", "GID_q").await;
    for target in [
        "/admin/topics/Q/messages?id=",
        "/admin/topics/Q/messages?key=",
        "/admin/topics/Q/groups/GID_q/dead_letters/resend?id=",
        "/admin/topics/Q/messages?state=ready&state=dead&group=GID_q",
        "/admin/topics/Q/messages?state=ready&group=GID_q&group=GID_q",
        "/admin/topics?topic=A&topic=B",
        "/admin/faults?operation=publish&error=NoSuchCode",
    ] {
        let method = if target.contains("resend")
            || target.starts_with("/admin/topics?")
            || target.contains("faults")
        {
            Method::POST
        } else {
            Method::GET
        };
        invalid_argument(&mut c, method, target).await;
    }
    // An unknown fault code's refusal lists the codes there are (with --faults off too:
    // the rule is checked first).
    let message = invalid_argument(
        &mut c,
        Method::POST,
        "/admin/faults?operation=publish&error=NoSuchCode",
    )
    .await;
    assert!(
        message.contains("Throttling") && message.contains("InternalError"),
        "{message}"
    );
    // Groups take several topics.
    let (status, json) = c
        .admin(
            Method::POST,
            "/admin/groups?group=GID_two&topic=A&topic=B",
            None,
        )
        .await
        .expect("call");
    assert_eq!(status, 200, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_exhausts_the_range_has_no_next() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Pages", "GID_p");
    register_and_publish(&mut c, &t, &g, &["1", "2", "3", "4"]).await;
    let (_, first) = c
        .admin(
            Method::GET,
            "/admin/topics/Pages/messages?begin_ms=0&limit=2",
            None,
        )
        .await
        .expect("page");
    assert_eq!(names(&first), ["1", "2"]);
    let next = first["next"].as_str().expect("more to come");
    let (_, last) = c
        .admin(
            Method::GET,
            &format!("/admin/topics/Pages/messages?begin_ms=0&limit=2&after={next}"),
            None,
        )
        .await
        .expect("page");
    assert_eq!(names(&last), ["3", "4"]);
    assert_eq!(last["next"], serde_json::Value::Null, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_refused_as_names() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    for target in [
        "/admin/topics?topic=..",
        "/admin/topics?topic=.",
        "/admin/groups?group=..",
        "/admin/groups?group=GID_x&topic=.",
    ] {
        invalid_argument(&mut c, Method::POST, target).await;
    }
    invalid_argument(
        &mut c,
        Method::GET,
        "/admin/topics/%2E%2E/messages?state=half",
    )
    .await;
}

/// A name holding `%` — `%2E%2E` (`..` once a URL path is decoded), `a%2Fb` (`a/b`), a
/// literal `%` (RocketMQ's namespace separator) — is refused by the one name check on the
/// protocol's paths (the protocol's error document, 400 `InvalidRequestURL` for the path,
/// `InvalidArgument` for a query parameter) and in the admin API (400 `InvalidArgument`),
/// and creates nothing. So is a message id no message can have (empty, a space, `..`, `<`)
/// wherever the admin API takes one: 400, not the 404 "not kept" of a well-formed unknown id;
/// and a time range that ends before it begins (400, not an empty page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_names_and_message_ids_are_refused() {
    let (_broker, mut c) = with_one_message("Ids", "GID_ids").await;
    let refused = |resp: support::Resp, code: &str, target: &str| {
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status, 400, "{target}: {body}");
        assert!(
            body.contains(&format!("<Code>{code}</Code>")),
            "{target}: {body}"
        );
    };
    for topic in ["%2E%2E", "a%2Fb", "a%25b", "MQ_INST_x%T"] {
        for (method, target) in [
            (
                Method::GET,
                format!("/topics/{topic}/messages?consumer=GID_a&numOfMessages=1"),
            ),
            (Method::POST, format!("/topics/{topic}/messages")),
        ] {
            let resp = c.signed(method, &target).await.expect("answer");
            refused(resp, "InvalidRequestURL", &target);
        }
    }
    for target in [
        "/topics/T/messages?consumer=GID%25a&numOfMessages=1",
        "/topics/T/messages?consumer=GID_a&numOfMessages=1&ns=MQ_INST%25x",
    ] {
        let resp = c.signed(Method::GET, target).await.expect("answer");
        refused(resp, "InvalidArgument", target);
    }
    all_invalid(
        &mut c,
        &[
            (Method::GET, "/admin/topics/a%252Fb/messages?state=half"),
            (Method::GET, "/admin/topics/%252E%252E"),
            (Method::POST, "/admin/topics?topic=a%25b"),
            (Method::POST, "/admin/topics?topic=T&ns=MQ_INST%25x"),
            (Method::POST, "/admin/groups?group=GID%25a"),
            (Method::POST, "/admin/groups?group=GID_a&topic=%252E%252E"),
            (Method::DELETE, "/admin/groups/GID%2525a"),
            (Method::GET, "/admin/messages//trace"),
            (Method::GET, "/admin/messages/a%20b/trace"),
            (Method::GET, "/admin/topics/Ids/messages?id=a%20b"),
            (
                Method::GET,
                "/admin/topics/Ids/messages?begin_ms=10&end_ms=5",
            ),
            (Method::POST, "/admin/topics/Ids/half/%2E%2E/commit"),
            (Method::POST, "/admin/topics/Ids/half/a%3Cb/rollback"),
            (
                Method::POST,
                "/admin/topics/Ids/groups/GID_ids/dead_letters/resend?id=a%3Cb",
            ),
            (
                Method::DELETE,
                "/admin/topics/Ids/groups/GID_ids/dead_letters?id=a%20b",
            ),
        ],
    )
    .await;
    let (_, topics) = c
        .admin(Method::GET, "/admin/topics", None)
        .await
        .expect("topics");
    let listed: Vec<&str> = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert_eq!(listed, ["Ids"], "nothing created");
    // A well-formed id that is not kept stays a 404.
    let (status, code) = refusal(
        &mut c,
        Method::GET,
        "/admin/messages/0123456789ABCDEF0123456789ABCDEF/trace",
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "MessageNotExist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_admin_calls_are_counted_as_refused() {
    let broker = start(false).await;
    let addr = broker.local_addr();
    let mut c = Client::new(addr);
    let none = raw_get(addr, None).await;
    assert!(!none.starts_with("HTTP/1.1 200"), "{none}");
    let wrong = raw_get(addr, Some("Bearer not-the-token")).await;
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    let (status, _) = c
        .admin(Method::GET, "/admin/clock", None)
        .await
        .expect("call");
    assert_eq!(status, 200);
    let metrics = raw_call(addr, "GET", "/metrics", None).await;
    let count = |operation: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("mq_requests_total{")
                    && l.contains(&format!("operation=\"{operation}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("admin"), 1.0, "{metrics}");
    assert_eq!(count("refused"), 2.0, "{metrics}");
}

/// Every message id of a listing, following `next` from page to page (each page a 200 that
/// copied less than everything); the pages taken.
async fn every_page(c: &mut Client, target: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut after = String::new();
    loop {
        let (status, json) = c
            .admin(Method::GET, &format!("{target}{after}"), None)
            .await
            .expect("listing");
        assert_eq!(status, 200, "{target}{after}: {json}");
        pages += 1;
        let page = json["messages"].as_array().expect("messages");
        seen.extend(
            page.iter()
                .map(|m| m["message_id"].as_str().expect("id").to_owned()),
        );
        match json["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return (seen, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_pages_past_the_budget() {
    use mq_broker::core::{BODY_PREVIEW_BYTES, LISTING_BUDGET_BYTES};
    let broker = start(true).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Paged", "GID_paged");
    dead_lettering_group(&mut c, &t, &g).await;
    let body = "x".repeat(BODY_PREVIEW_BYTES + 1);
    let count = LISTING_BUDGET_BYTES / BODY_PREVIEW_BYTES + 10;
    let mut published = Vec::new();
    for _ in 0..count {
        let m = TopicMessage::new(body.as_str())
            .expect("message")
            .with_key("bigkey")
            .expect("key");
        let receipt = c.publish(&t, &m).await.expect("io").expect("publish");
        published.push(receipt.message_id.as_str().to_owned());
    }
    let once = |(seen, pages): (Vec<String>, usize), what: &str| {
        assert!(pages > 1, "{what}: the budget ends the first page");
        let mut sorted = seen.clone();
        sorted.sort();
        let mut want = published.clone();
        want.sort();
        assert_eq!(sorted, want, "{what}: every message exactly once");
    };
    let base = "/admin/topics/Paged/messages?limit=1000";
    once(
        every_page(&mut c, &format!("{base}&state=ready&group=GID_paged")).await,
        "ready",
    );
    once(
        every_page(&mut c, &format!("{base}&key=bigkey")).await,
        "key",
    );
    once(
        every_page(&mut c, &format!("{base}&begin_ms=0")).await,
        "range",
    );

    // In flight, then dead letters once their only delivery expired.
    let mut delivered = 0;
    while delivered < count {
        let got = consume_all(&mut c, &t, &g).await;
        assert!(!got.is_empty());
        delivered += got.len();
    }
    once(
        every_page(&mut c, &format!("{base}&state=in_flight&group=GID_paged")).await,
        "in flight",
    );
    advance(&mut c, 1_001).await;
    once(
        every_page(
            &mut c,
            "/admin/topics/Paged/groups/GID_paged/dead_letters?limit=1000",
        )
        .await,
        "dead letters",
    );
    once(
        every_page(&mut c, &format!("{base}&state=dead&group=GID_paged")).await,
        "dead",
    );

    // An `after` the listing does not hold, or a lookup by id does not take, is refused.
    let gone = "0".repeat(32);
    invalid_argument(
        &mut c,
        Method::GET,
        &format!("{base}&state=ready&group=GID_paged&after={gone}"),
    )
    .await;
    invalid_argument(
        &mut c,
        Method::GET,
        &format!("{base}&id={}&after={}", published[0], published[1]),
    )
    .await;
    invalid_argument(
        &mut c,
        Method::GET,
        &format!("{base}&key=bigkey&after=nope"),
    )
    .await;
}

/// Fresh-eyes finding (issue 14): `POST /admin/groups?group=G&invisiblity_ms=1000` (a typo)
/// answered 200 and changed nothing; `state=ready&group=G&id=X` became a lookup by id;
/// `invisibility_ms=+5000` was taken. Unknown parameters, contradictory selections and
/// numbers that are not plain digits are 400, naming what is wrong, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_contradictions_and_signed_numbers_are_refused() {
    let broker = start(true).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("Strict", "GID_strict");
    register_and_publish(&mut c, &t, &g, &["a"]).await;
    let (_, found) = c
        .admin(
            Method::GET,
            "/admin/topics/Strict/messages?state=ready&group=GID_strict",
            None,
        )
        .await
        .expect("peek");
    let id = found["messages"][0]["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = group_settings(&mut c, "GID_strict").await;
    let named = |message: &str, what: &str| assert!(message.contains(what), "{what}: {message}");
    let typo = invalid_argument(
        &mut c,
        Method::POST,
        "/admin/groups?group=GID_strict&invisiblity_ms=1000",
    )
    .await;
    named(&typo, "invisiblity_ms");
    named(&typo, "invisibility_ms");
    for (method, target, what) in [
        (
            Method::GET,
            format!("/admin/topics/Strict/messages?state=ready&group=GID_strict&id={id}"),
            "id=",
        ),
        (
            Method::GET,
            format!("/admin/topics/Strict/messages?key=k&id={id}"),
            "key=",
        ),
        (
            Method::GET,
            "/admin/topics/Strict/messages?key=k&begin_ms=0".to_owned(),
            "time range",
        ),
        (
            Method::GET,
            format!("/admin/topics/Strict/messages?id={id}&group=GID_strict"),
            "group=",
        ),
        (
            Method::GET,
            "/admin/topics/Strict/messages?state=half&group=GID_strict".to_owned(),
            "group=",
        ),
        (
            Method::GET,
            "/admin/topics/Strict/messages?state=ready&group=GID_strict&sort=asc".to_owned(),
            "sort",
        ),
        (Method::GET, "/admin/clock?now=1".to_owned(), "now"),
        (Method::POST, "/admin/reset?all=true".to_owned(), "all"),
        (Method::DELETE, "/admin/faults?id=0".to_owned(), "id"),
        (
            Method::POST,
            "/admin/topics/Strict/purge?group=GID_strict".to_owned(),
            "group",
        ),
        (
            Method::POST,
            "/admin/groups?group=GID_strict&invisibility_ms=+5000".to_owned(),
            "invisibility_ms",
        ),
        (
            Method::POST,
            "/admin/groups?group=GID_strict&max_deliveries=%205".to_owned(),
            "max_deliveries",
        ),
        (
            Method::POST,
            "/admin/clock?advance_ms=+10".to_owned(),
            "advance_ms",
        ),
        (
            Method::GET,
            "/admin/topics/Strict/messages?state=ready&group=GID_strict&limit=+5".to_owned(),
            "limit",
        ),
        (
            Method::GET,
            "/admin/topics/Strict/messages?begin_ms=-0".to_owned(),
            "begin_ms",
        ),
        (
            Method::POST,
            "/admin/faults?operation=publish&error=Throttling&probability=+0.5".to_owned(),
            "probability",
        ),
    ] {
        let message = invalid_argument(&mut c, method, &target).await;
        named(&message, what);
    }
    assert_eq!(
        group_settings(&mut c, "GID_strict").await,
        before,
        "nothing refused changed the group"
    );
    let clock = read_clock(&mut c).await;
    assert_eq!(clock["offset_ms"], 0, "{clock}");
    // The same calls, spelt right, are taken.
    let (status, json) = c
        .admin(
            Method::POST,
            "/admin/groups?group=GID_strict&invisibility_ms=5000",
            None,
        )
        .await
        .expect("update");
    assert_eq!(status, 200, "{json}");
    assert_ne!(group_settings(&mut c, "GID_strict").await, before);
}

/// The fields of a `/stats` document as paths: `at_ms`, `topics`, `topics.half`,
/// `groups.ready` (the groups of every topic), `server.requests`.
fn stats_fields(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    let Some(object) = v.as_object() else { return };
    for (key, value) in object {
        let field = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        out.insert(field.clone());
        let inner = if key == "groups" {
            key.as_str()
        } else {
            &field
        };
        match value {
            serde_json::Value::Array(items) => {
                items.iter().for_each(|i| stats_fields(i, inner, out));
            }
            serde_json::Value::Object(_) => stats_fields(value, inner, out),
            _ => {}
        }
    }
}

/// The fields the README's `/stats` table documents, as [`stats_fields`] names them: each
/// row's first cell names fields in backticks, the first with its place (`topics[].`,
/// `groups[].`, `server.`), which the others in the cell share.
fn readme_stats_fields() -> std::collections::BTreeSet<String> {
    let readme = include_str!("../../../README.md");
    let (_, rest) = readme
        .split_once("| field | what |\n|---|---|\n")
        .expect("the README's /stats table");
    let mut fields = std::collections::BTreeSet::new();
    for row in rest.lines().take_while(|l| l.starts_with('|')) {
        let cell = row.split(" | ").next().unwrap_or_default();
        let names: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
        let place = names
            .first()
            .and_then(|n| n.rsplit_once('.'))
            .map_or("", |(place, _)| place);
        for name in names {
            let name = name.rsplit_once('.').map_or(name, |(_, n)| n);
            let field = match place.trim_end_matches("[]") {
                "" => name.to_owned(),
                place => format!("{place}.{name}"),
            };
            fields.insert(field);
        }
    }
    fields
}

/// `GET /admin/stats` answers the `/stats` document (what the console reads, so the console
/// uses the admin API alone), to authenticated callers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stats_is_the_stats_document_for_authenticated_callers() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = topic_group("stats_topic", "GID_stats");
    register_and_publish(&mut c, &t, &g, &["one", "two"]).await;
    let (status, json) = c
        .admin(Method::GET, "/admin/stats", None)
        .await
        .expect("call");
    assert_eq!(status, 200, "{json}");
    let core = broker.stats();
    assert_eq!(json["published"], core.published, "{json}");
    assert_eq!(json["topics"][0]["topic"], "stats_topic", "{json}");
    assert_eq!(
        json["topics"][0]["groups"][0]["ready"], core.topics[0].groups[0].ready,
        "{json}"
    );
    assert!(json["server"]["connections"].as_u64() >= Some(1), "{json}");
    // Every field is documented in the README's `/stats` table, and nothing else is.
    let mut fields = std::collections::BTreeSet::new();
    stats_fields(&json, "", &mut fields);
    assert!(fields.contains("at_ms"), "{fields:?}");
    assert_eq!(fields, readme_stats_fields());
    let unauthenticated = raw_call(broker.local_addr(), "GET", "/admin/stats", None).await;
    assert!(
        unauthenticated.starts_with("HTTP/1.1 400")
            && unauthenticated.contains("\"MissingAuthorizationHeader\""),
        "{unauthenticated}"
    );
    assert_eq!(
        refusal(&mut c, Method::POST, "/admin/stats", None).await,
        (405, "MethodNotAllowed".to_owned())
    );
    broker.shutdown().await;
}

/// Deleting a topic or a group, or a reset, wakes the long polls waiting on it: they consume
/// again at once and so register their group again, and a message published right after
/// reaches it. (They slept until their wait ended; a publish meanwhile re-created the topic
/// without the group, and the message went to nobody.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_or_group_wakes_its_waiting_polls() {
    let broker = start(false).await;
    let addr = broker.local_addr();
    let mut c = Client::new(addr);
    // A fresh topic each time: an empty topic's change counter is 0, as a deleted one's.
    for (topic, method, deleted) in [
        ("Deleted", Method::DELETE, "/admin/topics/Deleted"),
        ("GroupDeleted", Method::DELETE, "/admin/groups/GID_deleted"),
        ("Reset", Method::POST, "/admin/reset"),
    ] {
        let (t, g) = topic_group(topic, "GID_deleted");
        register_and_publish(&mut c, &t, &g, &[]).await;
        let waiter = tokio::spawn({
            let (t, g) = (t.clone(), g.clone());
            async move {
                let mut w = Client::new(addr);
                w.consume(&t, &g, ConsumeKind::Normal, 1, 20).await
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !waiting(&mut c).await {
            assert!(Instant::now() < deadline, "the poll never waited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, json) = c.admin(method, deleted, None).await.expect("delete");
        assert_eq!(status, 200, "{deleted}: {json}");
        // The woken poll registers its group again (and waits again).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, topics) = c
                .admin(Method::GET, "/admin/topics", None)
                .await
                .expect("topics");
            let registered = topics["topics"].as_array().is_some_and(|ts| {
                ts.iter().any(|x| {
                    x["topic"] == topic
                        && x["groups"]
                            .as_array()
                            .is_some_and(|gs| gs.iter().any(|y| y["group"] == "GID_deleted"))
                })
            });
            if registered && waiting(&mut c).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after deleting {deleted}, the waiting poll did not register its group again: {topics}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = TopicMessage::new("after the delete").expect("message");
        c.publish(&t, &m).await.expect("io").expect("publish");
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the poll is answered by the publish")
            .expect("task")
            .expect("io")
            .expect("consume");
        assert_eq!(bodies(&got), ["after the delete"], "{deleted}");
        ack_all(&mut c, &t, &g, &got).await;
    }
}

/// Whether one long poll is waiting (`GET /stats`).
async fn waiting(c: &mut Client) -> bool {
    let r = c.signed(Method::GET, "/stats").await.expect("stats");
    let stats: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    stats["server"]["waiting_polls"] == 1
}
