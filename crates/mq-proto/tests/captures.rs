//! Requests captured from the official Python and Node SDKs (`tests/data/captures/*.json`)
//! go through the server side, and the canned responses (`responses/*.xml`) through the
//! client side.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use mq_proto::client::{self, PublishReceipt};
use mq_proto::server::{self, Operation};
use mq_proto::{AckKind, ConsumeKind, ErrorCode, Message, TagFilter, sign};
use serde_json::Value;

const SECRET: &str = "testSK";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/captures")
}

struct Capture {
    file: String,
    operation: String,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: String,
    string_to_sign: String,
    date: SystemTime,
    response_status: u16,
    response_file: Option<String>,
}

fn captures() -> Vec<Capture> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("captures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            let mut headers = HeaderMap::new();
            let mut date = None;
            for (k, v) in json["headers"].as_object().expect("headers") {
                let v = v.as_str().expect("header value");
                if k.eq_ignore_ascii_case("date") {
                    date = sign::parse_http_date(v);
                }
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                );
            }
            let s = |k: &str| json[k].as_str().unwrap_or_else(|| panic!("{k}")).to_owned();
            Capture {
                file: path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                operation: s("operation"),
                method: Method::from_bytes(s("method").as_bytes()).expect("method"),
                target: s("target"),
                headers,
                body: s("body"),
                string_to_sign: s("string_to_sign"),
                date: date.expect("Date header"),
                response_status: json["response"]["status"].as_u64().expect("status") as u16,
                response_file: json["response"]["file"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

const CONSUME_HANDLES: [&str; 2] = [
    "0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAxNzAwMDAwMDAxMDAwIDMwMDAwMCAzIDAgYnJva2VyLWEgNSAxMjM16",
    "0BC1EF3E1A9C18B4AAC2558D1E4F0011-MCAxNzAwMDAwMDAxMDAwIDMwMDAwMCAzIDAgYnJva2VyLWEgNSAxMjM17",
];
const HALF_HANDLES: [&str; 2] = [
    "0BC1EF3E1A9C18B4AAC2558D1E4F0030-MCAxNzAwMDAwMDAxMDAwIDMwMDAwMCAzIDAgYnJva2VyLWEgNSAxMjM48",
    "0BC1EF3E1A9C18B4AAC2558D1E4F0031-MCAxNzAwMDAwMDAxMDAwIDMwMDAwMCAzIDAgYnJva2VyLWEgNSAxMjM49",
];

#[test]
fn all_twenty_two_captures_are_present() {
    assert_eq!(captures().len(), 22);
}

#[test]
fn the_string_to_sign_matches_the_capture() {
    for c in captures() {
        let got = sign::string_to_sign(&c.method, &c.headers, &c.target);
        assert_eq!(got, c.string_to_sign, "{}", c.file);
    }
}

#[test]
fn parse_request_yields_the_sdk_operation() {
    for c in captures() {
        let parsed = server::parse_request(&c.method, &c.target, &c.headers, c.body.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", c.file));
        assert_eq!(parsed.topic.as_str(), "T1", "{}", c.file);
        assert_eq!(
            parsed.instance.as_ref().map(|i| i.as_str()),
            Some("MQ_INST_test"),
            "{}",
            c.file
        );
        let f = c.file.as_str();
        match (c.operation.as_str(), parsed.operation) {
            ("publish", Operation::Publish(m)) => {
                assert_eq!(m.body(), "hello mq", "{f}");
                assert_eq!(m.tag(), None, "{f}");
                assert_eq!(m.key(), None, "{f}");
                assert!(m.properties().is_empty(), "{f}");
                assert!(!m.is_transactional() && m.start_deliver_time().is_none());
            }
            ("publish-tagged", Operation::Publish(m)) => {
                assert_eq!(m.body(), "tagged <body> & \"quotes\" héllo 中文", "{f}");
                assert_eq!(m.tag().map(|t| t.as_str()), Some("TagA"), "{f}");
                assert_eq!(m.key(), Some("key-1"), "{f}");
                let props: Vec<_> = m.properties().iter().collect();
                assert_eq!(props, vec![("a", "1"), ("color", "red")], "{f}");
            }
            ("publish-delayed", Operation::Publish(m)) => {
                assert_eq!(m.body(), "delayed hello", "{f}");
                assert_eq!(m.tag().map(|t| t.as_str()), Some("tag1"), "{f}");
                assert_eq!(m.key(), Some("key-2"), "{f}");
                // now + 10 s at capture time.
                let at = m.start_deliver_time().expect("start deliver time");
                let date_ms = c
                    .date
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("after epoch")
                    .as_millis() as u64;
                assert!(
                    at > date_ms && at < date_ms + 20_000,
                    "{f}: {at} vs {date_ms}"
                );
                assert!(m.properties().is_empty(), "{f}");
            }
            ("publish-transactional", Operation::Publish(m)) => {
                assert_eq!(m.body(), "I am test message 1.", "{f}");
                assert_eq!(m.tag().map(|t| t.as_str()), Some("tagA"), "{f}");
                assert_eq!(m.key(), Some("MessageKey"), "{f}");
                assert_eq!(m.trans_check_immunity().map(|i| i.get()), Some(10), "{f}");
                let props: Vec<_> = m.properties().iter().collect();
                assert_eq!(props, vec![("a", "1")], "{f}");
            }
            (
                op,
                Operation::Consume {
                    group,
                    kind,
                    batch,
                    wait,
                    filter,
                },
            ) => {
                assert_eq!(group.as_str(), "GID_1", "{f}");
                assert_eq!(wait.get(), 3, "{f}");
                let (want_kind, want_batch, want_filter) = match op {
                    "consume" => (ConsumeKind::Normal, 3, TagFilter::All),
                    "consume-tag" => (
                        ConsumeKind::Normal,
                        16,
                        "TagA||TagB".parse().expect("filter"),
                    ),
                    "consume-orderly" => (ConsumeKind::Orderly, 16, TagFilter::All),
                    "consume-half" => (ConsumeKind::Half, 1, TagFilter::All),
                    other => panic!("{f}: unexpected consume operation {other}"),
                };
                assert_eq!(kind, want_kind, "{f}");
                assert_eq!(batch.get(), want_batch, "{f}");
                assert_eq!(filter, want_filter, "{f}");
            }
            (
                op,
                Operation::Ack {
                    group,
                    kind,
                    handles,
                },
            ) => {
                assert_eq!(group.as_ref().map(|g| g.as_str()), Some("GID_1"), "{f}");
                let (want_kind, want_handles): (_, &[&str]) = match op {
                    "ack" => (AckKind::Ack, &CONSUME_HANDLES),
                    "commit" => (AckKind::Commit, &HALF_HANDLES[..1]),
                    "rollback" => (AckKind::Rollback, &HALF_HANDLES[1..]),
                    other => panic!("{f}: unexpected ack operation {other}"),
                };
                assert_eq!(kind, want_kind, "{f}");
                assert_eq!(handles, want_handles, "{f}");
            }
            (op, other) => panic!("{f}: operation {op} parsed as {other:?}"),
        }
    }
}

fn secret_for(id: &str) -> Option<String> {
    (id == "testAK").then(|| SECRET.to_owned())
}

#[test]
fn authenticate_accepts_captures_at_their_own_date() {
    for c in captures() {
        let id = server::authenticate(&c.method, &c.target, &c.headers, c.date, secret_for)
            .unwrap_or_else(|e| panic!("{}: {e}", c.file));
        assert_eq!(id, "testAK");
        // Still fine 15 minutes either way, not beyond.
        let skew = Duration::from_secs(15 * 60);
        for now in [c.date + skew, c.date - skew] {
            assert!(
                server::authenticate(&c.method, &c.target, &c.headers, now, secret_for).is_ok()
            );
        }
        let late = c.date + skew + Duration::from_secs(1);
        let err = server::authenticate(&c.method, &c.target, &c.headers, late, secret_for)
            .expect_err("expired");
        assert_eq!(err.code, ErrorCode::TimeExpired, "{}", c.file);
        assert_eq!(err.status().as_u16(), 408);
    }
}

#[test]
fn authenticate_rejects_tampered_captures() {
    for c in captures() {
        let f = &c.file;
        let auth = c.headers["authorization"]
            .to_str()
            .expect("ascii")
            .to_owned();
        // One signature character changed.
        let (prefix, sig) = auth.split_once(':').expect("MQ id:sig");
        let mut sig = sig.to_owned().into_bytes();
        sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{prefix}:{}", String::from_utf8(sig).expect("ascii"));
        let mut headers = c.headers.clone();
        headers.insert("authorization", tampered.parse().expect("value"));
        let err = server::authenticate(&c.method, &c.target, &headers, c.date, secret_for)
            .expect_err("tampered signature");
        assert_eq!(err.code, ErrorCode::SignatureDoesNotMatch, "{f}");

        // The target changed (a different topic).
        let other_target = c.target.replacen("/T1/", "/T2/", 1);
        let err = server::authenticate(&c.method, &other_target, &c.headers, c.date, secret_for)
            .expect_err("tampered target");
        assert_eq!(err.code, ErrorCode::SignatureDoesNotMatch, "{f}");

        // Wrong key, wrong secret, no Authorization, no Date, bad Date.
        let err =
            server::authenticate(&c.method, &c.target, &c.headers, c.date, |_| None::<String>)
                .expect_err("unknown key");
        assert_eq!(err.code, ErrorCode::InvalidAccessKeyId, "{f}");
        let err = server::authenticate(&c.method, &c.target, &c.headers, c.date, |_| Some("other"))
            .expect_err("wrong secret");
        assert_eq!(err.code, ErrorCode::SignatureDoesNotMatch, "{f}");
        let mut h = c.headers.clone();
        h.remove("authorization");
        let err = server::authenticate(&c.method, &c.target, &h, c.date, secret_for).expect_err("");
        assert_eq!(err.code, ErrorCode::MissingAuthorizationHeader, "{f}");
        let mut h = c.headers.clone();
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        let err = server::authenticate(&c.method, &c.target, &h, c.date, secret_for).expect_err("");
        assert_eq!(err.code, ErrorCode::InvalidAuthorizationHeader, "{f}");
        let mut h = c.headers.clone();
        h.remove("date");
        let err = server::authenticate(&c.method, &c.target, &h, c.date, secret_for).expect_err("");
        assert_eq!(err.code, ErrorCode::MissingDateHeader, "{f}");
        let mut h = c.headers.clone();
        h.insert("date", HeaderValue::from_static("22/11/2026"));
        let err = server::authenticate(&c.method, &c.target, &h, c.date, secret_for).expect_err("");
        assert_eq!(err.code, ErrorCode::InvalidDateHeader, "{f}");
        // A repeated `Authorization` or `Date` is refused, whichever copy is right.
        for name in ["authorization", "date"] {
            let mut h = c.headers.clone();
            let value = h.get(name).expect("signed header").clone();
            h.append(name, value);
            let err =
                server::authenticate(&c.method, &c.target, &h, c.date, secret_for).expect_err("");
            let expected = match name {
                "authorization" => ErrorCode::InvalidAuthorizationHeader,
                _ => ErrorCode::InvalidDateHeader,
            };
            assert_eq!(err.code, expected, "{f}: {name} twice");
        }
    }
}

fn response(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).expect("response file")
}

fn check_full_message(m: &Message) {
    assert_eq!(m.message_id.as_str().len(), 32);
    assert!(m.receipt_handle.as_str().starts_with(m.message_id.as_str()));
    assert!(m.body_md5_matches(), "{m:?}");
    assert_eq!(m.publish_time, 1_700_000_000_000);
    assert_eq!(m.first_consume_time, 1_700_000_001_000);
    assert_eq!(m.next_consume_time, 1_700_000_301_000);
    assert!(m.tag.is_some());
    assert!(!m.properties.is_empty());
}

#[test]
fn consume_responses_decode_into_two_full_messages() {
    for name in [
        "responses/consume.xml",
        "responses/consume-orderly.xml",
        "responses/consume-half.xml",
    ] {
        let msgs =
            client::decode_consume_response(StatusCode::OK, &HeaderMap::new(), &response(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msgs.len(), 2, "{name}");
        msgs.iter().for_each(check_full_message);
    }

    let msgs = client::decode_consume_response(
        StatusCode::OK,
        &HeaderMap::new(),
        &response("responses/consume.xml"),
    )
    .expect("decode");
    let (a, b) = (&msgs[0], &msgs[1]);
    assert_eq!(a.message_id.as_str(), "0BC1EF3E1A9C18B4AAC2558D1E4F0010");
    assert_eq!(a.receipt_handle.as_str(), CONSUME_HANDLES[0]);
    assert_eq!(a.body, "hello mq");
    assert_eq!(a.body_md5, "68B154101D0D46E4114AE2E0A11B9291");
    assert_eq!(a.consumed_times, 1);
    assert_eq!(a.tag.as_ref().map(|t| t.as_str()), Some("TagA"));
    assert_eq!(a.key(), Some("key-1"));
    assert_eq!(a.property("a"), Some("1"));
    assert_eq!(b.receipt_handle.as_str(), CONSUME_HANDLES[1]);
    assert_eq!(b.body, "second <message> & more");
    assert_eq!(b.tag.as_ref().map(|t| t.as_str()), Some("TagB"));
    assert_eq!(b.key(), Some("key-2"));

    let half = client::decode_consume_response(
        StatusCode::OK,
        &HeaderMap::new(),
        &response("responses/consume-half.xml"),
    )
    .expect("decode");
    assert_eq!(half[0].receipt_handle.as_str(), HALF_HANDLES[0]);
    assert_eq!(half[1].consumed_times, 2);
    assert_eq!(half[0].trans_check_immunity().map(|i| i.get()), Some(10));
    let orderly = client::decode_consume_response(
        StatusCode::OK,
        &HeaderMap::new(),
        &response("responses/consume-orderly.xml"),
    )
    .expect("decode");
    assert_eq!(orderly[1].sharding_key(), Some("k0"));
    assert_eq!(orderly[1].property("seq"), Some("1"));
}

#[test]
fn publish_responses_decode_into_receipts() {
    let r = client::decode_publish_response(
        StatusCode::CREATED,
        &HeaderMap::new(),
        &response("responses/publish.xml"),
    )
    .expect("decode");
    assert_eq!(
        r,
        PublishReceipt {
            message_id: "0BC1EF3E1A9C18B4AAC2558D1E4F0001".parse().expect("id"),
            body_md5: "68B154101D0D46E4114AE2E0A11B9291".into(),
            receipt_handle: None,
        }
    );
    let r = client::decode_publish_response(
        StatusCode::CREATED,
        &HeaderMap::new(),
        &response("responses/publish-transactional.xml"),
    )
    .expect("decode");
    assert_eq!(r.message_id.as_str(), "0BC1EF3E1A9C18B4AAC2558D1E4F0002");
    assert_eq!(
        r.receipt_handle.as_ref().map(|h| h.as_str()),
        Some(
            "0BC1EF3E1A9C18B4AAC2558D1E4F0002-MCAxNzAwMDAwMDAwMDAwIDEwMDAwIDMgMSBicm9rZXItYSA1IDEyMzQ1"
        )
    );
}

#[test]
fn every_capture_response_decodes_with_its_operation() {
    for c in captures() {
        let status = StatusCode::from_u16(c.response_status).expect("status");
        let body = c.response_file.as_deref().map(response).unwrap_or_default();
        let f = &c.file;
        match c.method {
            Method::POST => {
                client::decode_publish_response(status, &HeaderMap::new(), &body)
                    .unwrap_or_else(|e| panic!("{f}: {e}"));
            }
            Method::GET => {
                let msgs = client::decode_consume_response(status, &HeaderMap::new(), &body)
                    .unwrap_or_else(|e| panic!("{f}: {e}"));
                assert_eq!(msgs.len(), 2, "{f}");
            }
            _ => {
                let failures = client::decode_ack_response(status, &HeaderMap::new(), &body)
                    .unwrap_or_else(|e| panic!("{f}: {e}"));
                assert!(failures.is_empty(), "{f}");
            }
        }
    }
}
