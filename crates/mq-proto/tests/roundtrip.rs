//! Property tests: client encode → server decode, and server encode → client decode, are the
//! identity for arbitrary valid values (unicode and XML-special characters included).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use mq_proto::client::{self, Endpoint, PublishReceipt, RequestContext, ResponseError};
use mq_proto::server::{self, Operation, ParsedRequest};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, Credentials, Entry, ErrorCode, GroupId, HandleFailure,
    InstanceId, Message, MessageId, PoisonReason, Properties, ReceiptHandle, SYSTEM_KEYS, Tag,
    TagFilter, TopicMessage, TopicName, TransCheckImmunity, WaitSeconds,
};
use proptest::prelude::*;

// ---- strategies -----------------------------------------------------------------------------

/// Characters a message body may hold: XML specials, whitespace, ASCII, and any other
/// character XML 1.0 can carry.
fn body_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec!['<', '>', '&', '"', '\'', '\r', '\n', '\t', ' ', ';', '#', ']']),
        4 => prop::char::range('a', 'z'),
        // Exactly the characters a body may hold (`TopicMessage::new` decides).
        3 => any::<char>().prop_filter("XML char", |&c| TopicMessage::new(c.to_string()).is_ok()),
    ]
}

fn body() -> impl Strategy<Value = String> {
    prop::collection::vec(body_char(), 1..200).prop_map(|v| v.into_iter().collect())
}

fn tag() -> impl Strategy<Value = Tag> {
    "[A-Za-z0-9<>&\"'_ .*中é-]{1,20}".prop_filter_map("valid tag", |s| Tag::new(s).ok())
}

fn prop_part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 _.,;=+/中é-]{1,12}"
}

fn properties() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((prop_part(), prop_part()), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .filter(|(k, _)| !SYSTEM_KEYS.contains(&k.as_str()))
            .collect()
    })
}

prop_compose! {
    fn topic_message()(
        body in body(),
        tag in prop::option::of(tag()),
        key in prop::option::of(prop_part()),
        props in properties(),
        start in prop::option::of(any::<u64>()),
        immunity in prop::option::of(10u32..=300),
        sharding in prop::option::of(prop_part()),
    ) -> TopicMessage {
        let mut m = TopicMessage::new(body).expect("valid body");
        if let Some(t) = tag { m = m.with_tag(t); }
        if let Some(k) = key { m = m.with_key(k).expect("key"); }
        for (k, v) in props { m = m.with_property(k, v).expect("property"); }
        if let Some(s) = start { m = m.with_start_deliver_time(s); }
        if let Some(i) = immunity {
            m = m.with_trans_check_immunity(TransCheckImmunity::new(i).expect("immunity"));
        }
        if let Some(s) = sharding { m = m.with_sharding_key(s).expect("sharding"); }
        m
    }
}

/// A valid resource name: `[A-Za-z0-9_.-]`, 1..=64 (`.` and `..` are not names: URLs
/// normalise them away).
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,64}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn handle() -> impl Strategy<Value = ReceiptHandle> {
    "[A-Za-z0-9+/=_.:-]{1,120}".prop_map(|s| ReceiptHandle::new(s).expect("handle"))
}

fn message_id() -> impl Strategy<Value = MessageId> {
    "[A-Z0-9]{32}".prop_map(|s| MessageId::new(s).expect("id"))
}

fn filter() -> impl Strategy<Value = TagFilter> {
    // A lone `*` means "every tag" on the wire, so it is not a tag of a filter.
    let tag = tag().prop_filter("not *", |t| t.as_str() != "*");
    prop::collection::vec(tag, 0..4).prop_map(TagFilter::tags)
}

fn consume_kind() -> impl Strategy<Value = ConsumeKind> {
    prop::sample::select(vec![
        ConsumeKind::Normal,
        ConsumeKind::Orderly,
        ConsumeKind::Half,
    ])
}

fn ack_kind() -> impl Strategy<Value = AckKind> {
    prop::sample::select(vec![AckKind::Ack, AckKind::Commit, AckKind::Rollback])
}

prop_compose! {
    fn message()(
        message_id in message_id(),
        receipt_handle in handle(),
        body in body(),
        random_md5 in prop::option::of("[0-9A-F]{32}"),
        publish_time in any::<u64>(),
        next_consume_time in any::<u64>(),
        first_consume_time in any::<u64>(),
        consumed_times in any::<u32>(),
        tag in prop::option::of(tag()),
        props in properties(),
        system in prop::option::of((prop_part(), any::<u64>())),
    ) -> Message {
        let mut properties = Properties::new();
        for (k, v) in props { properties.insert(k, v).expect("property"); }
        if let Some((key, start)) = system {
            properties.insert("KEYS", key).expect("key");
            properties.insert("__STARTDELIVERTIME", start.to_string()).expect("start");
        }
        Message {
            message_id,
            receipt_handle,
            body_md5: random_md5.unwrap_or_else(|| mq_proto::body_md5(&body)).into(),
            body: body.into(),
            publish_time,
            next_consume_time,
            first_consume_time,
            consumed_times,
            tag,
            properties,
        }
    }
}

/// A verbatim human-readable text: non-blank, may contain XML specials.
fn text() -> impl Strategy<Value = String> {
    body().prop_filter("not blank", |s| !s.trim().is_empty())
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        prop::sample::select(vec![
            "MessageNotExist",
            "ReceiptHandleError",
            "TopicNotExist",
            "SignatureDoesNotMatch",
            "InvalidArgument",
            "MalformedXML",
            "InternalError",
        ])
        .prop_map(ErrorCode::parse),
        "[A-Za-z][A-Za-z0-9.]{0,30}".prop_map(|s| ErrorCode::parse(&s)),
    ]
}

// ---- helpers ----------------------------------------------------------------------------------

fn date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_709_837_398)
}

fn serve(req: &http::Request<Bytes>) -> ParsedRequest {
    let target = req.uri().path_and_query().expect("target").as_str();
    server::authenticate(req.method(), target, req.headers(), date(), |id| {
        (id == "AK").then(|| "SK".to_owned())
    })
    .expect("authenticate");
    server::parse_request(req.method(), target, req.headers(), req.body()).expect("parse")
}

fn with_ctx<T>(instance: Option<&str>, f: impl FnOnce(&RequestContext<'_>) -> T) -> T {
    let endpoint: Endpoint = "http://localhost:9876".parse().expect("endpoint");
    let credentials = Credentials::new("AK", "SK");
    let instance = instance.map(|i| InstanceId::new(i).expect("instance"));
    let ctx = RequestContext {
        endpoint: &endpoint,
        credentials: &credentials,
        instance: instance.as_ref(),
        date: date(),
        user_agent: "proptest",
    };
    f(&ctx)
}

/// The request when the names fit together (PROTOCOL §6.9: 119 characters); `None` when they
/// do not and the builder refused them for that reason (checked), whatever else happens.
fn built_unless_too_long(
    built: Result<http::Request<Bytes>, client::EncodeError>,
    topic: &TopicName,
    group: &GroupId,
    instance: Option<&str>,
) -> Result<Option<http::Request<Bytes>>, TestCaseError> {
    let len = topic.as_str().len() + group.as_str().len() + instance.map_or(0, str::len);
    match built {
        Ok(req) => {
            prop_assert!(
                len <= mq_proto::MAX_SUBSCRIPTION_NAMES_LEN,
                "{len} characters sent"
            );
            Ok(Some(req))
        }
        Err(client::EncodeError::NamesTooLong(e)) => {
            prop_assert_eq!(e.len, len);
            prop_assert!(len > mq_proto::MAX_SUBSCRIPTION_NAMES_LEN);
            Ok(None)
        }
        Err(e) => Err(TestCaseError::fail(format!("refused: {e}"))),
    }
}

// ---- properties -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn publish_request_roundtrips(
        msg in topic_message(),
        topic in name(),
        instance in prop::option::of(name()),
    ) {
        let topic = TopicName::new(topic).expect("topic");
        let req = with_ctx(instance.as_deref(), |ctx| client::publish_request(ctx, &topic, &msg));
        let parsed = serve(&req);
        prop_assert_eq!(parsed.topic, topic);
        prop_assert_eq!(parsed.instance.map(|i| i.as_str().to_owned()), instance);
        prop_assert_eq!(parsed.operation, Operation::Publish(msg));
    }

    #[test]
    fn consume_request_roundtrips(
        topic in name(),
        group in name(),
        instance in prop::option::of(name()),
        kind in consume_kind(),
        batch in 1u8..=16,
        wait in 0u8..=30,
        filter in filter(),
    ) {
        let topic = TopicName::new(topic).expect("topic");
        let group = GroupId::new(group).expect("group");
        let batch = BatchSize::new(batch).expect("batch");
        let wait = WaitSeconds::new(wait).expect("wait");
        let built = with_ctx(instance.as_deref(), |ctx| {
            client::consume_request(ctx, &topic, &group, kind, batch, wait, &filter)
        });
        let Some(req) = built_unless_too_long(built, &topic, &group, instance.as_deref())? else {
            return Ok(());
        };
        let parsed = serve(&req);
        let filter = if kind == ConsumeKind::Half { TagFilter::All } else { filter };
        prop_assert_eq!(parsed.topic, topic);
        prop_assert_eq!(parsed.instance.map(|i| i.as_str().to_owned()), instance);
        prop_assert_eq!(parsed.operation, Operation::Consume { group, kind, batch, wait, filter });
    }

    #[test]
    fn ack_request_roundtrips(
        topic in name(),
        group in name(),
        instance in prop::option::of(name()),
        kind in ack_kind(),
        handles in prop::collection::vec(handle(), 1..=16),
    ) {
        let topic = TopicName::new(topic).expect("topic");
        let group = GroupId::new(group).expect("group");
        let built = with_ctx(instance.as_deref(), |ctx| {
            client::ack_request(ctx, &topic, &group, kind, &handles)
        });
        let Some(req) = built_unless_too_long(built, &topic, &group, instance.as_deref())? else {
            return Ok(());
        };
        let parsed = serve(&req);
        prop_assert_eq!(parsed.topic, topic);
        prop_assert_eq!(
            parsed.operation,
            Operation::Ack {
                group: Some(group),
                kind,
                handles: handles.iter().map(|h| h.as_str().to_owned()).collect(),
            }
        );
    }

    #[test]
    fn messages_roundtrip(messages in prop::collection::vec(message(), 1..=16)) {
        let body = server::encode_messages(&messages);
        let response = server::response(StatusCode::OK, body, &server::request_id(1));
        let decoded = client::decode_consume_entries(
            response.status(), response.headers(), response.body(),
        ).expect("decode");
        prop_assert_eq!(decoded.len(), messages.len());
        // A message whose MD5 is not its body's comes back as poison, with what it holds.
        for (entry, m) in decoded.into_iter().zip(messages) {
            match entry {
                Entry::Message(got) => {
                    prop_assert!(m.body_md5_matches());
                    prop_assert_eq!(got, m);
                }
                Entry::Poison(p) => {
                    prop_assert!(!m.body_md5_matches());
                    prop_assert_eq!(p.message_id, Some(m.message_id));
                    prop_assert_eq!(p.receipt_handle, Some(m.receipt_handle));
                    prop_assert_eq!(p.consumed_times, Some(m.consumed_times));
                    prop_assert_eq!(p.next_consume_time, Some(m.next_consume_time));
                    let is_md5 = matches!(p.reason, PoisonReason::Md5Mismatch { .. });
                    prop_assert!(is_md5, "{:?}", p.reason);
                }
            }
        }
    }

    #[test]
    fn publish_receipt_roundtrips(
        message_id in message_id(),
        body_md5 in "[0-9A-F]{32}",
        receipt_handle in prop::option::of(handle()),
    ) {
        let receipt = PublishReceipt { message_id, body_md5, receipt_handle };
        let body = server::encode_publish_response(&receipt);
        let decoded = client::decode_publish_response(StatusCode::CREATED, &HeaderMap::new(), &body)
            .expect("decode");
        prop_assert_eq!(decoded, receipt);
    }

    #[test]
    fn error_roundtrips(
        code in error_code(),
        message in text(),
        request_id in any::<u64>().prop_map(server::request_id),
        host_id in "https?://[a-z0-9.]{1,30}(:[0-9]{1,5})?",
    ) {
        let err = server::RequestError::new(code.clone(), message.clone());
        let response = server::error_response(&err, &request_id, &host_id);
        let status = response.status();
        prop_assert_eq!(status.as_u16(), code.status());
        // On publish every error is a service error; on consume MessageNotExist is empty.
        let decoded = client::decode_publish_response(status, response.headers(), response.body());
        let Err(ResponseError::Service(e)) = decoded else {
            return Err(TestCaseError::fail(format!("{decoded:?}")));
        };
        prop_assert_eq!(e.status, code.status());
        prop_assert_eq!(&e.code, &code);
        prop_assert_eq!(e.message, message);
        prop_assert_eq!(e.request_id, Some(request_id));
        prop_assert_eq!(e.host_id, Some(host_id));
        let consumed = client::decode_consume_response(status, response.headers(), response.body());
        prop_assert_eq!(consumed.is_ok(), code == ErrorCode::MessageNotExist);
    }

    #[test]
    fn handle_failures_roundtrip(
        failures in prop::collection::vec(
            (
                "[!-~]{1,100}".prop_filter("no blank", |s: &String| !s.trim().is_empty()),
                error_code(),
                text(),
            ).prop_map(|(h, code, message)| HandleFailure {
                receipt_handle: h.trim().to_owned(),
                code,
                message,
            }),
            1..=16,
        ),
    ) {
        let body = server::encode_errors(&failures);
        let response = server::response(StatusCode::NOT_FOUND, body, &server::request_id(9));
        let decoded = client::decode_ack_response(
            response.status(), response.headers(), response.body(),
        ).expect("failures");
        prop_assert_eq!(decoded, failures);
    }
}
