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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET /admin/clock HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
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
    // A GET never changes state: advancing needs POST.
    let (status, _) = c
        .admin(Method::GET, "/admin/clock?advance_ms=1000", None)
        .await
        .expect("call");
    assert_eq!(status, 200);
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
    let (t, g) = (
        TopicName::new("Clocked").expect("topic"),
        GroupId::new("GID_clock").expect("group"),
    );
    // Register the group, then schedule a message a minute ahead of the broker's clock.
    c.consume(&t, &g, ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("consume");
    // A GET never moves the clock, whatever its query says.
    let (_, clock) = c
        .admin(Method::GET, "/admin/clock?advance_ms=100000", None)
        .await
        .expect("clock");
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

/// Peeks list what each state holds and change nothing: the messages are then consumed as
/// if nobody had looked (first delivery, same ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_is_non_destructive() {
    let broker = start(false).await;
    let mut c = Client::new(broker.local_addr());
    let (t, g) = (
        TopicName::new("Peeked").expect("topic"),
        GroupId::new("GID_peek").expect("group"),
    );
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
    let (_, none) = c
        .admin(
            Method::GET,
            "/admin/topics/Traced/messages?key=nobody",
            None,
        )
        .await
        .expect("find");
    assert_eq!(names(&none), Vec::<&str>::new());
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
    let config = || ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![Credential::new(AK, SK)],
        data_dir: Some(dir.path().to_owned()),
        ..ServerConfig::default()
    };
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
