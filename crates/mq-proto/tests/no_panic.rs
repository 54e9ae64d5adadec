//! Property tests: arbitrary input never panics the decoders, the request parser or the
//! authenticator.

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use mq_proto::{client, server};
use proptest::prelude::*;

/// Fragments that steer random documents into the interesting parts of the decoders.
const XML_PIECES: &[&str] = &[
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "\u{feff}",
    "<Messages xmlns=\"http://mq.aliyuncs.com/doc/v1/\">",
    "</Messages>",
    "<Message>",
    "</Message>",
    "<m:Message xmlns:m=\"x\">",
    "</m:Message>",
    "<MessageId>",
    "</MessageId>",
    "0BC1EF3E1A9C18B4AAC2558D1E4F0010",
    "<ReceiptHandle>",
    "</ReceiptHandle>",
    "<ReceiptHandles>",
    "</ReceiptHandles>",
    "<MessageBody>",
    "</MessageBody>",
    "<MessageBodyMD5>",
    "</MessageBodyMD5>",
    "<PublishTime>",
    "</PublishTime>",
    "<NextConsumeTime>",
    "</NextConsumeTime>",
    "<FirstConsumeTime>",
    "</FirstConsumeTime>",
    "<ConsumedTimes>",
    "</ConsumedTimes>",
    "<MessageTag>",
    "</MessageTag>",
    "<Properties>",
    "</Properties>",
    "KEYS:k|a:1|",
    "__TransCheckT:10|",
    "__STARTDELIVERTIME:99999999999999999999|",
    "<Error>",
    "</Error>",
    "<Errors>",
    "</Errors>",
    "<Code>",
    "</Code>",
    "MessageNotExist",
    "<ErrorCode>",
    "</ErrorCode>",
    "<ErrorMessage>",
    "</ErrorMessage>",
    "<RequestId>",
    "</RequestId>",
    "<HostId>",
    "</HostId>",
    "<Empty/>",
    "<![CDATA[",
    "]]>",
    "&lt;",
    "&amp;",
    "&#x4E2D;",
    "&#0;",
    "&#xFFFFFFFF;",
    "&bogus;",
    "&",
    "<!-- c -->",
    "<?pi x?>",
    "<!DOCTYPE x>",
    "12345",
    "-1",
    " ",
    "\n\t",
    "中",
    "<",
    ">",
];

fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(prop::sample::select(XML_PIECES), 0..60)
            .prop_map(|pieces| pieces.concat().into_bytes()),
    ]
}

fn status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        prop::sample::select(vec![
            200u16, 201, 204, 302, 400, 403, 404, 408, 500, 502, 503
        ]),
        100u16..1000,
    ]
    .prop_map(|s| StatusCode::from_u16(s).expect("100..1000 is valid"))
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        prop::sample::select(vec![
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::HEAD,
            Method::OPTIONS,
        ]),
        "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).expect("token")),
    ]
}

const TARGET_PIECES: &[&str] = &[
    "/topics/",
    "T1",
    "/messages",
    "?",
    "&",
    "=",
    "consumer",
    "GID_1",
    "ns",
    "MQ_INST_test",
    "numOfMessages",
    "waitseconds",
    "tag",
    "trans",
    "pop",
    "order",
    "commit",
    "rollback",
    "16",
    "-1",
    "99999999999999999999",
    "%7C%7C",
    "%",
    "%zz",
    "%E4%B8",
    "+",
    "*",
    "/",
];

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(TARGET_PIECES), 0..30)
            .prop_map(|pieces| pieces.concat()),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "authorization",
            "date",
            "content-md5",
            "content-type",
            "x-mq-version",
            "x-mq-other",
            "security-token",
        ])
        .prop_map(str::to_owned),
        "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "MQ testAK:KGyWEA6TCPh2zEjd/2fCZhLVInc=",
            "MQ :",
            "MQ a:",
            "Sun, 22 Nov 2026 22:07:39 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U=",
            "2015-06-06",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..60),
    ];
    prop::collection::vec((name, value), 0..8).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_bytes(&v),
            ) {
                h.append(n, v);
            }
        }
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_decoders_never_panic(status in status(), headers in headers(), body in xmlish()) {
        let _ = client::decode_publish_response(status, &headers, &body);
        let _ = client::decode_consume_response(status, &headers, &body);
        let _ = client::decode_ack_response(status, &headers, &body);
    }

    #[test]
    fn parse_request_never_panics(
        method in method(),
        target in target(),
        headers in headers(),
        body in xmlish(),
    ) {
        let _ = server::parse_request(&method, &target, &headers, &body);
    }

    #[test]
    fn authenticate_never_panics(
        method in method(),
        target in target(),
        headers in headers(),
        now_secs in any::<u64>(),
        secret in prop::option::of(any::<String>()),
    ) {
        // `checked_add` keeps the test itself from overflowing `SystemTime`.
        let now = UNIX_EPOCH
            .checked_add(Duration::from_secs(now_secs))
            .unwrap_or(UNIX_EPOCH);
        let _ = server::authenticate(&method, &target, &headers, now, |_| secret);
    }

    #[test]
    fn encoders_never_panic(code in any::<String>(), text in any::<String>()) {
        let code = mq_proto::ErrorCode::parse(&code);
        let body = server::encode_error(&code, &text, &text, &text);
        let resp = server::response(StatusCode::BAD_REQUEST, body, &text);
        // Whatever went in, the client can read it back as an error.
        let decoded = client::decode_publish_response(resp.status(), resp.headers(), resp.body());
        prop_assert!(matches!(decoded, Err(client::ResponseError::Service(_))));
    }
}
