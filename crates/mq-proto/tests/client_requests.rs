//! Requests built by the client are accepted by the server side (client encode → server
//! decode is the identity), carry exactly the documented headers, and error bodies decode.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mq_proto::client::{self, DecodeError, EncodeError, Endpoint, RequestContext, ResponseError};
use mq_proto::server::{self, Operation, ParsedRequest};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, Credentials, ErrorCode, GroupId, HandleFailure, InstanceId,
    ReceiptHandle, Tag, TagFilter, TopicMessage, TopicName, TransCheckImmunity, WaitSeconds, sign,
};

fn date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_709_837_398)
}

struct Fixture {
    endpoint: Endpoint,
    credentials: Credentials,
    instance: InstanceId,
}

impl Fixture {
    fn new() -> Self {
        Self {
            endpoint: "http://127.0.0.1:8080".parse().expect("endpoint"),
            credentials: Credentials::new("testAK", "testSK"),
            instance: InstanceId::new("MQ_INST_test").expect("instance"),
        }
    }

    fn ctx(&self, with_instance: bool) -> RequestContext<'_> {
        RequestContext {
            endpoint: &self.endpoint,
            credentials: &self.credentials,
            instance: with_instance.then_some(&self.instance),
            date: date(),
            user_agent: "mq-rust-test/0.1",
        }
    }
}

fn topic() -> TopicName {
    TopicName::new("T1").expect("topic")
}

fn group() -> GroupId {
    GroupId::new("GID_1").expect("group")
}

fn target(req: &http::Request<Bytes>) -> &str {
    req.uri().path_and_query().expect("path and query").as_str()
}

/// Authenticates and parses a built request as the broker would.
fn serve(req: &http::Request<Bytes>) -> ParsedRequest {
    let id = server::authenticate(req.method(), target(req), req.headers(), date(), |id| {
        (id == "testAK").then(|| "testSK".to_owned())
    })
    .expect("authenticate");
    assert_eq!(id, "testAK");
    server::parse_request(req.method(), target(req), req.headers(), req.body()).expect("parse")
}

#[test]
fn publish_roundtrips_through_the_server() {
    let f = Fixture::new();
    let message = TopicMessage::new("tagged <body> & \"quotes\" héllo 中文\r\n\tend")
        .expect("body")
        .with_tag(Tag::new("TagA").expect("tag"))
        .with_key("key-1")
        .expect("key")
        .with_property("color", "red")
        .expect("prop")
        .with_trans_check_immunity(TransCheckImmunity::new(10).expect("immunity"))
        .with_start_deliver_time(1_709_838_598_000)
        .with_sharding_key("shard")
        .expect("shard");
    for with_instance in [true, false] {
        let req = client::publish_request(&f.ctx(with_instance), &topic(), &message);
        assert_eq!(req.method(), Method::POST);
        let parsed = serve(&req);
        assert_eq!(parsed.topic, topic());
        assert_eq!(parsed.instance.is_some(), with_instance);
        assert_eq!(parsed.operation, Operation::Publish(message.clone()));
    }
    let req = client::publish_request(&f.ctx(true), &topic(), &message);
    assert_eq!(
        req.uri().to_string(),
        "http://127.0.0.1:8080/topics/T1/messages?ns=MQ_INST_test"
    );
    let body = std::str::from_utf8(req.body()).expect("utf8");
    assert!(body.starts_with(
        r#"<?xml version="1.0" encoding="UTF-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/"><MessageBody>tagged &lt;body&gt; &amp; "quotes" héllo 中文&#13;"#
    ));
    assert!(body.ends_with("<MessageTag>TagA</MessageTag><Properties>KEYS:key-1|__SHARDINGKEY:shard|__STARTDELIVERTIME:1709838598000|__TransCheckT:10|color:red|</Properties></Message>"), "{body}");
}

#[test]
fn consume_roundtrips_through_the_server() {
    let f = Fixture::new();
    let filter: TagFilter = "TagA||TagB".parse().expect("filter");
    for kind in [ConsumeKind::Normal, ConsumeKind::Orderly, ConsumeKind::Half] {
        for wait in [0, 1, 30] {
            for batch in [1, 16] {
                let req = client::consume_request(
                    &f.ctx(true),
                    &topic(),
                    &group(),
                    kind,
                    BatchSize::new(batch).expect("batch"),
                    WaitSeconds::new(wait).expect("wait"),
                    &filter,
                )
                .expect("consume request");
                assert_eq!(req.method(), Method::GET);
                assert!(req.body().is_empty());
                let parsed = serve(&req);
                let want_filter = if kind == ConsumeKind::Half {
                    TagFilter::All
                } else {
                    filter.clone()
                };
                assert_eq!(
                    parsed.operation,
                    Operation::Consume {
                        group: group(),
                        kind,
                        batch: BatchSize::new(batch).expect("batch"),
                        wait: WaitSeconds::new(wait).expect("wait"),
                        filter: want_filter,
                    }
                );
            }
        }
    }
}

#[test]
fn consume_query_is_encoded_once_and_in_order() {
    let f = Fixture::new();
    let filter: TagFilter = "TagA||TagB".parse().expect("filter");
    let build = |kind, wait, filter: &TagFilter| {
        client::consume_request(
            &f.ctx(true),
            &topic(),
            &group(),
            kind,
            BatchSize::new(16).expect("batch"),
            WaitSeconds::new(wait).expect("wait"),
            filter,
        )
        .expect("consume request")
    };
    let req = build(ConsumeKind::Normal, 30, &filter);
    assert_eq!(
        target(&req),
        "/topics/T1/messages?consumer=GID_1&ns=MQ_INST_test&numOfMessages=16&waitseconds=30&tag=TagA%7C%7CTagB"
    );
    assert_eq!(
        req.uri().to_string(),
        format!("http://127.0.0.1:8080{}", target(&req))
    );
    // The signed resource is the request-target, byte for byte.
    assert!(sign::request_string_to_sign(&req).ends_with(target(&req)));

    let req = build(ConsumeKind::Orderly, 0, &TagFilter::All);
    assert_eq!(
        target(&req),
        "/topics/T1/messages?consumer=GID_1&ns=MQ_INST_test&numOfMessages=16&trans=order"
    );
    let req = build(ConsumeKind::Half, 3, &filter);
    assert_eq!(
        target(&req),
        "/topics/T1/messages?consumer=GID_1&ns=MQ_INST_test&numOfMessages=16&waitseconds=3&trans=pop"
    );
    // Tags with characters outside the unreserved set are percent-encoded (space as %20).
    let odd: TagFilter = "a b||c+d||中".parse().expect("filter");
    let req = build(ConsumeKind::Normal, 0, &odd);
    assert!(
        target(&req).ends_with("&tag=a%20b%7C%7Cc%2Bd%7C%7C%E4%B8%AD"),
        "{}",
        target(&req)
    );
    match serve(&req).operation {
        Operation::Consume { filter, .. } => assert_eq!(filter, odd),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ack_commit_rollback_roundtrip_through_the_server() {
    let f = Fixture::new();
    let handles: Vec<ReceiptHandle> = (0..16)
        .map(|i| {
            ReceiptHandle::new(format!("0BC1EF3E1A9C18B4AAC2558D1E4F00{i:02}-MCAx+/="))
                .expect("handle")
        })
        .collect();
    for kind in [AckKind::Ack, AckKind::Commit, AckKind::Rollback] {
        for n in [1, 2, 16] {
            let req = client::ack_request(&f.ctx(false), &topic(), &group(), kind, &handles[..n])
                .expect("request");
            assert_eq!(req.method(), Method::DELETE);
            let parsed = serve(&req);
            assert_eq!(parsed.instance, None);
            assert_eq!(
                parsed.operation,
                Operation::Ack {
                    group: Some(group()),
                    kind,
                    handles: handles[..n].iter().map(|h| h.as_str().to_owned()).collect(),
                }
            );
        }
    }
    let req = client::ack_request(
        &f.ctx(true),
        &topic(),
        &group(),
        AckKind::Commit,
        &handles[..1],
    )
    .expect("request");
    assert_eq!(
        target(&req),
        "/topics/T1/messages?consumer=GID_1&ns=MQ_INST_test&trans=commit"
    );
    assert_eq!(
        client::ack_request(&f.ctx(true), &topic(), &group(), AckKind::Ack, &[]).unwrap_err(),
        EncodeError::NoReceiptHandles
    );
    let seventeen: Vec<ReceiptHandle> = handles.iter().chain(&handles[..1]).cloned().collect();
    assert_eq!(
        client::ack_request(&f.ctx(true), &topic(), &group(), AckKind::Ack, &seventeen)
            .unwrap_err(),
        EncodeError::TooManyReceiptHandles { count: 17 }
    );
}

#[test]
fn requests_carry_exactly_the_documented_headers() {
    let f = Fixture::new();
    let message = TopicMessage::new("hello").expect("body");
    let req = client::publish_request(&f.ctx(true), &topic(), &message);
    let mut names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "authorization",
            "content-length",
            "content-type",
            "date",
            "host",
            "user-agent",
            "x-mq-version"
        ]
    );
    let h = req.headers();
    assert_eq!(h["host"], "127.0.0.1:8080");
    assert_eq!(h["date"], "Thu, 07 Mar 2024 18:49:58 GMT");
    assert_eq!(h["x-mq-version"], "2015-06-06");
    assert_eq!(h["content-type"], "text/xml;charset=utf-8");
    assert_eq!(h["content-length"], req.body().len().to_string().as_str());
    assert_eq!(h["user-agent"], "mq-rust-test/0.1");
    let sts = sign::request_string_to_sign(&req);
    assert_eq!(
        sts,
        "POST\n\ntext/xml;charset=utf-8\nThu, 07 Mar 2024 18:49:58 GMT\nx-mq-version:2015-06-06\n/topics/T1/messages?ns=MQ_INST_test"
    );
    assert_eq!(
        h["authorization"],
        sign::authorization("testAK", &sign::signature("testSK", &sts)).as_str()
    );

    // GET: same set, Content-Length 0, Content-Type still sent and signed.
    let req = client::consume_request(
        &f.ctx(true),
        &topic(),
        &group(),
        ConsumeKind::Normal,
        BatchSize::new(1).expect("batch"),
        WaitSeconds::default(),
        &TagFilter::All,
    )
    .expect("consume request");
    assert_eq!(req.headers().len(), 7);
    assert_eq!(req.headers()["content-length"], "0");
    assert!(sign::request_string_to_sign(&req).starts_with("GET\n\ntext/xml;charset=utf-8\n"));

    // STS: security-token is sent, not signed.
    let sts_creds = Credentials::new("testAK", "testSK").with_security_token("STS.token");
    let ctx = RequestContext {
        credentials: &sts_creds,
        ..f.ctx(true)
    };
    let with_token = client::publish_request(&ctx, &topic(), &message);
    assert_eq!(with_token.headers()["security-token"], "STS.token");
    assert_eq!(with_token.headers().len(), 8);
    assert_eq!(
        with_token.headers()["authorization"],
        req_auth(&client::publish_request(&f.ctx(true), &topic(), &message))
    );
    serve(&with_token);
}

fn req_auth(req: &http::Request<Bytes>) -> HeaderValue {
    req.headers()["authorization"].clone()
}

#[test]
fn https_endpoints_build_https_uris() {
    let mut f = Fixture::new();
    f.endpoint = "https://123.mqrest.cn-hangzhou.aliyuncs.com/"
        .parse()
        .expect("endpoint");
    let req = client::publish_request(&f.ctx(false), &topic(), &TopicMessage::new("x").expect("m"));
    assert_eq!(
        req.uri().to_string(),
        "https://123.mqrest.cn-hangzhou.aliyuncs.com/topics/T1/messages"
    );
    assert_eq!(req.headers()["host"], "123.mqrest.cn-hangzhou.aliyuncs.com");
}

fn headers_with_request_id(id: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-mq-request-id", HeaderValue::from_static(id));
    h
}

#[test]
fn error_documents_become_service_errors() {
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error xmlns="http://mq.aliyuncs.com/doc/v1"><Code>TopicNotExist</Code><Message>The topic you provided does not exist.</Message><RequestId>5DAEF2B9463541AD6E04490F</RequestId><HostId>http://123.mqrest.cn-hangzhou.aliyuncs.com</HostId></Error>"#;
    let h = headers_with_request_id("HEADERID");
    let err = client::decode_publish_response(StatusCode::NOT_FOUND, &h, body).unwrap_err();
    let ResponseError::Service(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.status, 404);
    assert_eq!(e.code, ErrorCode::TopicNotExist);
    assert_eq!(e.message, "The topic you provided does not exist.");
    assert_eq!(e.request_id.as_deref(), Some("5DAEF2B9463541AD6E04490F"));
    assert_eq!(
        e.host_id.as_deref(),
        Some("http://123.mqrest.cn-hangzhou.aliyuncs.com")
    );
    assert!(e.to_string().contains("TopicNotExist"));

    // The same document on consume and ack is a service error too.
    assert!(matches!(
        client::decode_consume_response(StatusCode::NOT_FOUND, &h, body),
        Err(ResponseError::Service(_))
    ));
    assert!(matches!(
        client::decode_ack_response(StatusCode::NOT_FOUND, &h, body),
        Err(ResponseError::Service(_))
    ));

    // Request id falls back to the header; empty elements are tolerated.
    let body =
        br#"<Error><Code>AccessDenied</Code><Message/><RequestId></RequestId><HostId/></Error>"#;
    let err = client::decode_publish_response(StatusCode::FORBIDDEN, &h, body).unwrap_err();
    let ResponseError::Service(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, ErrorCode::AccessDenied);
    assert_eq!(e.request_id.as_deref(), Some("HEADERID"));
    assert_eq!(e.host_id, None);
}

#[test]
fn message_not_exist_is_an_empty_batch() {
    let body = server::encode_error(
        &ErrorCode::MessageNotExist,
        "Message not exist.",
        &server::request_id(1),
        "http://h",
    );
    let msgs = client::decode_consume_response(StatusCode::NOT_FOUND, &HeaderMap::new(), &body)
        .expect("empty batch");
    assert!(msgs.is_empty());
    // But not on publish.
    assert!(matches!(
        client::decode_publish_response(StatusCode::NOT_FOUND, &HeaderMap::new(), &body),
        Err(ResponseError::Service(e)) if e.code == ErrorCode::MessageNotExist
    ));
}

#[test]
fn errors_documents_are_per_handle_failures() {
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Errors xmlns="http://mq.aliyuncs.com/doc/v1"><Error><ErrorCode>ReceiptHandleError</ErrorCode><ErrorMessage>The receipt handle you provide is not valid.</ErrorMessage><ReceiptHandle>adfadfadf</ReceiptHandle></Error><Error><ErrorCode>MessageNotExist</ErrorCode><ErrorMessage>Message not exist.</ErrorMessage><ReceiptHandle>1E05791C117818B4AAC23B1BB0CE0002-MTcwOTgzODU5ODAwMSAzMDAwMDA=</ReceiptHandle></Error></Errors>"#;
    let failures =
        client::decode_ack_response(StatusCode::NOT_FOUND, &HeaderMap::new(), body).expect("ok");
    assert_eq!(
        failures,
        vec![
            HandleFailure {
                receipt_handle: "adfadfadf".into(),
                code: ErrorCode::ReceiptHandleError,
                message: "The receipt handle you provide is not valid.".into(),
            },
            HandleFailure {
                receipt_handle: "1E05791C117818B4AAC23B1BB0CE0002-MTcwOTgzODU5ODAwMSAzMDAwMDA="
                    .into(),
                code: ErrorCode::MessageNotExist,
                message: "Message not exist.".into(),
            },
        ]
    );
    // 204 with no body: everything acked.
    assert_eq!(
        client::decode_ack_response(StatusCode::NO_CONTENT, &HeaderMap::new(), b""),
        Ok(vec![])
    );
}

/// An entry naming two handles refuses both (not just the last one read).
#[test]
fn an_errors_entry_naming_several_handles_refuses_each() {
    let body = br#"<Errors><Error><ErrorCode>MessageNotExist</ErrorCode><ReceiptHandle>h1</ReceiptHandle><ReceiptHandle>h2</ReceiptHandle></Error></Errors>"#;
    let failures =
        client::decode_ack_response(StatusCode::NOT_FOUND, &HeaderMap::new(), body).expect("ok");
    let named: Vec<&str> = failures.iter().map(|f| f.receipt_handle.as_str()).collect();
    assert_eq!(named, ["h1", "h2"]);
    assert!(
        failures
            .iter()
            .all(|f| f.code == ErrorCode::MessageNotExist)
    );
    let sent: Vec<mq_proto::ReceiptHandle> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| mq_proto::ReceiptHandle::new(*h).unwrap())
        .collect();
    let refused = mq_proto::attribute_failures(&sent, failures);
    let refused: Vec<&str> = refused.iter().map(|f| f.receipt_handle.as_str()).collect();
    assert_eq!(refused, ["h1", "h2"], "h3 was acknowledged");
}

#[test]
fn non_xml_error_bodies_become_service_errors() {
    let html = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
    let h = headers_with_request_id("PROXYID");
    for result in [
        client::decode_publish_response(StatusCode::BAD_GATEWAY, &h, html).map(|_| ()),
        client::decode_consume_response(StatusCode::BAD_GATEWAY, &h, html).map(|_| ()),
        client::decode_ack_response(StatusCode::BAD_GATEWAY, &h, html).map(|_| ()),
    ] {
        let Err(ResponseError::Service(e)) = result else {
            panic!("{result:?}")
        };
        assert_eq!(e.status, 502);
        assert_eq!(e.code, ErrorCode::InternalError);
        assert_eq!(e.request_id.as_deref(), Some("PROXYID"));
        assert!(e.message.contains("502"), "{}", e.message);
    }
    // A 4xx with an empty body keeps the status in the code.
    let err = client::decode_consume_response(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"")
        .unwrap_err();
    let ResponseError::Service(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, ErrorCode::Other("HTTP401".into()));
}

#[test]
fn success_bodies_that_do_not_decode_are_decode_errors() {
    let h = HeaderMap::new();
    type Check = fn(&DecodeError) -> bool;
    let cases: [(&[u8], Check); 5] = [
        (b"not xml", |e| matches!(e, DecodeError::Xml(_))),
        (b"<Messages><Message>", |e| matches!(e, DecodeError::Xml(_))),
        (b"<Foo/>", |e| matches!(e, DecodeError::UnexpectedRoot { .. })),
        (
            b"<!DOCTYPE lolz [<!ENTITY lol \"lol\">]><Messages/>",
            |e| matches!(e, DecodeError::Xml(m) if m.contains("DOCTYPE")),
        ),
        (
            b"<Messages><Message><MessageId>A1</MessageId><ReceiptHandle>h</ReceiptHandle><MessageBody>b</MessageBody><PublishTime>x</PublishTime><NextConsumeTime>1</NextConsumeTime><FirstConsumeTime>1</FirstConsumeTime><ConsumedTimes>1</ConsumedTimes></Message></Messages>",
            |e| matches!(e, DecodeError::BadNumber { element: "PublishTime", .. }),
        ),
    ];
    for (body, check) in cases {
        match client::decode_consume_response(StatusCode::OK, &h, body) {
            Err(ResponseError::Decode(e)) => assert!(check(&e), "{e:?}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
    assert!(matches!(
        client::decode_publish_response(
            StatusCode::CREATED,
            &h,
            b"<Message><MessageId>A</MessageId></Message>"
        ),
        Err(ResponseError::Decode(DecodeError::MissingElement(
            "MessageBodyMD5"
        )))
    ));
}

#[test]
fn consume_decoding_is_lenient_like_the_sdks() {
    // Go-style (no namespace), prefixes, CDATA, odd order, unknown elements, properties
    // without the trailing bar and with junk segments.
    let body = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<m:Messages xmlns:m=\"urn:x\">\n\t<m:Message>\n\t\t<m:Properties>KEYS:k|junk|a:1</m:Properties><m:Extra><x>1</x></m:Extra>\n\t\t<m:ConsumedTimes> 2 </m:ConsumedTimes><m:MessageBody><![CDATA[<raw>]]>&amp;&#x4E2D;</m:MessageBody>\n\t\t<m:FirstConsumeTime>3</m:FirstConsumeTime><m:NextConsumeTime>4</m:NextConsumeTime><m:PublishTime>5</m:PublishTime>\n\t\t<m:ReceiptHandle>h-1</m:ReceiptHandle><m:MessageId>ID1</m:MessageId><m:MessageTag></m:MessageTag>\n\t</m:Message>\n</m:Messages>\n";
    let msgs = client::decode_consume_response(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
        .expect("decode");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.body, "<raw>&中");
    assert_eq!(m.consumed_times, 2);
    assert_eq!(
        (m.publish_time, m.next_consume_time, m.first_consume_time),
        (5, 4, 3)
    );
    assert_eq!(m.tag, None);
    assert_eq!(m.key(), Some("k"));
    assert_eq!(m.property("a"), Some("1"));
    assert_eq!(m.properties.len(), 2);
    assert_eq!(m.body_md5, "");
}
