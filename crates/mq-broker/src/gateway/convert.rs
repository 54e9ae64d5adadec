//! Between the HTTP protocol's values and the gRPC v2 messages: messages both ways, times,
//! and the engine's status codes as the protocol's errors.

use mq_proto::wire::error::RequestError;
use mq_proto::{
    ErrorCode, GroupId, InstanceId, Message, MessageId, Properties, ReceiptHandle, Tag,
    TopicMessage, TopicName,
};
use rocketmq_proxy_core::proto::v2 as pb;

use super::MESSAGE_ID_PROPERTY;

/// The engine's name of a topic or group of an instance: `{namespace}%{name}` (the
/// convention of Apache RocketMQ 5 namespaces, also `ResourceIdentity`'s `Display` in
/// rocketmq-proxy-core 1.0.0 `identity.rs`).
pub(super) fn engine_topic_name(instance: Option<&InstanceId>, topic: &TopicName) -> String {
    qualified(instance, topic.as_str())
}

/// See [`engine_topic_name`].
pub(super) fn engine_group_name(instance: Option<&InstanceId>, group: &GroupId) -> String {
    qualified(instance, group.as_str())
}

/// The instance and name of an engine topic or group name, the inverse of
/// [`engine_topic_name`]: `I%N` → (`Some(I)`, `N`), `N` → (`None`, `N`). `None` for a name
/// the protocol cannot address: the engine's retry and dead-letter topics (`%RETRY%…`,
/// `%DLQ%…`), names with a second `%`, invalid instance ids or names.
pub(super) fn split_engine_name(engine_name: &str) -> Option<(Option<InstanceId>, String)> {
    let (instance, name) = match engine_name.split_once('%') {
        Some((instance, name)) => (Some(InstanceId::new(instance).ok()?), name),
        None => (None, engine_name),
    };
    (!name.contains('%') && TopicName::new(name).is_ok()).then(|| (instance, name.to_owned()))
}

fn qualified(instance: Option<&InstanceId>, name: &str) -> String {
    match instance {
        Some(ns) => format!("{}%{name}", ns.as_str()),
        None => name.to_owned(),
    }
}

/// `ms` milliseconds as a protobuf duration.
pub(super) fn duration(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// Epoch milliseconds of a timestamp (0 for none or one before the epoch).
fn epoch_ms(t: Option<&prost_types::Timestamp>) -> u64 {
    t.map_or(0, |t| {
        let secs = u64::try_from(t.seconds).unwrap_or(0);
        let millis = u64::try_from(t.nanos).unwrap_or(0) / 1_000_000;
        secs.saturating_mul(1000).saturating_add(millis)
    })
}

fn duration_ms(d: &prost_types::Duration) -> u64 {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let millis = u64::try_from(d.nanos).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

/// The proxy's address as the v2 `Endpoints` a route query names.
pub(super) fn endpoints(proxy: &str) -> pb::Endpoints {
    let (host, port) = proxy.rsplit_once(':').unwrap_or((proxy, "0"));
    let scheme = if host.parse::<std::net::Ipv4Addr>().is_ok() {
        pb::AddressScheme::IPv4
    } else if host
        .trim_matches(['[', ']'])
        .parse::<std::net::Ipv6Addr>()
        .is_ok()
    {
        pb::AddressScheme::IPv6
    } else {
        pb::AddressScheme::DomainName
    };
    pb::Endpoints {
        scheme: scheme as i32,
        addresses: vec![pb::Address {
            host: host.trim_matches(['[', ']']).to_owned(),
            port: port.parse().unwrap_or(0),
        }],
    }
}

/// A queue a consumer may receive from: readable, on a master broker.
pub(super) fn is_readable(q: &pb::MessageQueue) -> bool {
    let readable = matches!(
        pb::Permission::try_from(q.permission),
        Ok(pb::Permission::Read | pb::Permission::ReadWrite)
    );
    readable && q.broker.as_ref().is_none_or(|b| b.id == 0)
}

/// Whether a queue of a route takes sends (a master broker's, with write permission).
pub(super) fn is_writable(q: &pb::MessageQueue) -> bool {
    let writable = matches!(
        pb::Permission::try_from(q.permission),
        Ok(pb::Permission::Write | pb::Permission::ReadWrite)
    );
    writable && q.broker.as_ref().is_none_or(|b| b.id == 0)
}

/// The queue a message group is sent to: one of `queue_ids` chosen by a hash of the group
/// that every gateway process computes alike (the first 8 bytes of its SHA-1), so all
/// messages of one group share a queue and keep their order. `None` for no queues.
///
/// ```text
/// fifo_queue("order-42", &[0, 1, 2, 3]) == fifo_queue("order-42", &[3, 2, 1, 0])
/// ```
pub(super) fn fifo_queue(message_group: &str, queue_ids: &[i32]) -> Option<i32> {
    use sha1::Digest as _;
    let mut ids = queue_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let digest = sha1::Sha1::digest(message_group.as_bytes());
    let hash = u64::from_be_bytes(digest[..8].try_into().ok()?);
    let n = u64::try_from(ids.len()).ok().filter(|n| *n > 0)?;
    ids.get(usize::try_from(hash % n).ok()?).copied()
}

/// The v2 message for a publish. `message_id` is the gateway's (the v2 client names its
/// messages); `now_ms` is the born time.
pub(super) fn to_engine(
    message: &TopicMessage,
    instance: Option<&InstanceId>,
    topic: &TopicName,
    message_id: String,
    now_ms: u64,
) -> pb::Message {
    let delivery = message.start_deliver_time().filter(|&at| at > now_ms);
    let message_type = if message.trans_check_immunity().is_some() {
        pb::MessageType::Transaction
    } else if message.sharding_key().is_some() {
        pb::MessageType::Fifo
    } else if delivery.is_some() {
        pb::MessageType::Delay
    } else {
        pb::MessageType::Normal
    };
    let system = pb::SystemProperties {
        tag: message.tag().map(|t| t.as_str().to_owned()),
        keys: message
            .key()
            .map(|k| k.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        message_id: message_id.clone(),
        body_encoding: pb::Encoding::Identity as i32,
        message_type: message_type as i32,
        born_timestamp: Some(timestamp(now_ms)),
        born_host: "mq-gateway".to_owned(),
        delivery_timestamp: delivery.map(timestamp),
        message_group: message.sharding_key().map(str::to_owned),
        orphaned_transaction_recovery_duration: message
            .trans_check_immunity()
            .map(|i| duration(u64::from(i.get()) * 1000)),
        ..pb::SystemProperties::default()
    };
    pb::Message {
        topic: Some(pb::Resource {
            resource_namespace: instance.map_or("", InstanceId::as_str).to_owned(),
            name: topic.as_str().to_owned(),
        }),
        user_properties: message
            .properties()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain([(MESSAGE_ID_PROPERTY.to_owned(), message_id)])
            // Engines that do not report the delivery time (rocketmq-rust 1.0.0) still give
            // HTTP consumers the `__STARTDELIVERTIME` the publisher set.
            .chain(
                message
                    .start_deliver_time()
                    .map(|at| (mq_proto::KEY_START_DELIVER_TIME.to_owned(), at.to_string())),
            )
            // Likewise the check immunity, which a transaction check shows the producer.
            .chain(message.trans_check_immunity().map(|i| {
                (
                    mq_proto::KEY_TRANS_CHECK_IMMUNITY.to_owned(),
                    i.get().to_string(),
                )
            }))
            .collect(),
        system_properties: Some(system),
        body: bytes::Bytes::copy_from_slice(message.body().as_bytes()),
    }
}

/// Whether `wire` may go out with any of the gateway's client ids: NORMAL and DELAY
/// messages. FIFO messages keep one (their order is the order the proxy takes one
/// client's sends in), and so do transactional ones (ended by the producer group, i.e.
/// the client id, that sent them).
pub(super) fn any_sender(wire: &pb::Message) -> bool {
    let message_type = wire.system_properties.as_ref().map(|p| p.message_type);
    message_type == Some(pb::MessageType::Normal as i32)
        || message_type == Some(pb::MessageType::Delay as i32)
}

/// A message the engine delivered, before the gateway seals its receipt handle.
pub(super) struct Delivered {
    /// The message, with a placeholder receipt handle.
    pub(super) message: Message,
    pub(super) engine_message_id: String,
    /// The engine's receipt handle (none on a message sent for a transaction check).
    pub(super) engine_receipt_handle: Option<String>,
}

fn corrupt(what: impl std::fmt::Display) -> RequestError {
    RequestError::new(
        ErrorCode::InternalError,
        format!("the engine delivered a message the protocol cannot carry: {what}"),
    )
}

/// User properties the engine or the gateway add for their own use; not the publisher's.
fn is_engine_internal(key: &str) -> bool {
    key.starts_with("__") && key.ends_with("__")
}

/// The protocol's view of a delivered message: `ConsumedTimes` = delivery attempt,
/// `PublishTime` = born time, `NextConsumeTime` = `now_ms` + the invisible duration (the
/// message's own, else the requested one), `FirstConsumeTime` = `now_ms` (the v2 protocol
/// does not report the first).
///
/// A body that is not UTF-8 or holds characters XML cannot carry (published by another kind
/// of client) is delivered with those replaced by U+FFFD, and its `MessageBodyMD5` is that
/// of the text delivered.
///
/// # Errors
///
/// `InternalError` for a message without a usable id.
pub(super) fn from_engine(
    m: pb::Message,
    now_ms: u64,
    invisibility_ms: u64,
) -> Result<Delivered, RequestError> {
    tracing::trace!(system = ?m.system_properties, user = ?m.user_properties, "engine delivery");
    let system = m.system_properties.unwrap_or_default();
    let engine_receipt_handle = system.receipt_handle.clone().filter(|h| !h.is_empty());
    let published_id = m
        .user_properties
        .get(MESSAGE_ID_PROPERTY)
        .unwrap_or(&system.message_id);
    let message_id = MessageId::new(published_id.as_str()).map_err(corrupt)?;
    let text = String::from_utf8_lossy(&m.body);
    let body: String = text
        .chars()
        .map(|c| {
            if mq_proto::is_xml_char(c) {
                c
            } else {
                char::REPLACEMENT_CHARACTER
            }
        })
        .collect();
    let mut properties = Properties::new();
    let mut user: Vec<(&String, &String)> = m.user_properties.iter().collect();
    user.sort();
    for (k, v) in user {
        if is_engine_internal(k) {
            continue;
        }
        if properties.insert(k.as_str(), v.as_str()).is_err() {
            tracing::debug!(key = %k, "a user property the protocol cannot carry was left out");
        }
    }
    if !system.keys.is_empty() {
        let _ = properties.insert(mq_proto::KEY_KEYS, system.keys.join(" "));
    }
    if let Some(group) = system.message_group.as_deref().filter(|g| !g.is_empty()) {
        let _ = properties.insert(mq_proto::KEY_SHARDING_KEY, group);
    }
    if let Some(immunity) = system.orphaned_transaction_recovery_duration.as_ref() {
        let _ = properties.insert(
            mq_proto::KEY_TRANS_CHECK_IMMUNITY,
            (duration_ms(immunity) / 1000).to_string(),
        );
    }
    let delivery = epoch_ms(system.delivery_timestamp.as_ref());
    if delivery > 0 {
        let _ = properties.insert(mq_proto::KEY_START_DELIVER_TIME, delivery.to_string());
    }
    let invisible = system
        .invisible_duration
        .as_ref()
        .map_or(invisibility_ms, duration_ms);
    let publish_time = match epoch_ms(system.born_timestamp.as_ref()) {
        0 => epoch_ms(system.store_timestamp.as_ref()),
        t => t,
    };
    let message = Message {
        message_id,
        // Replaced by the sealed gateway handle before it leaves the gateway.
        receipt_handle: ReceiptHandle::new("pending").map_err(corrupt)?,
        body_md5: mq_proto::body_md5(&body).into(),
        body: body.into(),
        publish_time,
        next_consume_time: now_ms.saturating_add(invisible),
        first_consume_time: now_ms,
        consumed_times: system
            .delivery_attempt
            .and_then(|a| u32::try_from(a).ok())
            .filter(|&a| a > 0)
            .unwrap_or(1),
        tag: system
            .tag
            .as_deref()
            .filter(|t| !t.is_empty())
            .and_then(|t| Tag::new(t).ok()),
        properties,
    };
    Ok(Delivered {
        message,
        engine_message_id: system.message_id,
        engine_receipt_handle,
    })
}

fn code_of(status: Option<&pb::Status>) -> (pb::Code, &str) {
    match status {
        None => (pb::Code::Ok, ""),
        Some(s) => (
            pb::Code::try_from(s.code).unwrap_or(pb::Code::Unspecified),
            s.message.as_str(),
        ),
    }
}

/// The protocol's error for an engine status that refuses a whole call (HTTP status from
/// the code: 4xx for what the caller can fix, 500 — retryable — for the rest).
fn refusal(code: pb::Code, message: &str, what: &str) -> RequestError {
    use pb::Code as C;
    let ours = match code {
        // The engine's remoting failure, not the caller's argument: rocketmq-rust 1.0.0's
        // proxy answers it when it cannot reach a broker (one killed, its route not dropped
        // yet: a publish answered 400 for seconds, which clients do not retry). The
        // gateway has checked every argument the protocol takes.
        C::BadRequest if message == ENGINE_REMOTING_FAILURE => ErrorCode::InternalError,
        C::TopicNotFound => {
            return RequestError::new(
                ErrorCode::TopicNotExist,
                format!("The topic you provided does not exist ({message})"),
            );
        }
        C::MessageNotFound => ErrorCode::MessageNotExist,
        C::ConsumerGroupNotFound => ErrorCode::SubscriptionNotExist,
        C::TooManyRequests => ErrorCode::Throttling,
        C::InvalidReceiptHandle | C::InvalidTransactionId => ErrorCode::ReceiptHandleError,
        // The cluster's ACL refused the gateway's identity: not retryable, say so.
        C::Unauthorized | C::Forbidden => ErrorCode::AccessDenied,
        C::BadRequest
        | C::IllegalTopic
        | C::IllegalConsumerGroup
        | C::IllegalMessageTag
        | C::IllegalMessageKey
        | C::IllegalMessageGroup
        | C::IllegalMessagePropertyKey
        | C::IllegalMessageId
        | C::IllegalFilterExpression
        | C::IllegalInvisibleTime
        | C::IllegalDeliveryTime
        | C::MessagePropertyConflictWithType
        | C::PayloadTooLarge
        | C::MessageBodyTooLarge
        | C::MessageBodyEmpty
        | C::MessagePropertiesTooLarge
        | C::IllegalPollingTime => ErrorCode::InvalidArgument,
        _ => ErrorCode::InternalError,
    };
    RequestError::new(
        ours,
        format!("the RocketMQ engine refused the {what}: {code:?} {message}"),
    )
}

/// `Ok` for a success status (or none), else the protocol's error.
pub(super) fn check_status(status: Option<&pb::Status>, what: &str) -> Result<(), RequestError> {
    match code_of(status) {
        (pb::Code::Ok | pb::Code::MultipleResults, _) => Ok(()),
        (code, message) => Err(refusal(code, message, what)),
    }
}

/// A gRPC failure (engine unreachable, deadline passed, stream broken): a retryable 500.
pub(super) fn rpc_error(what: &str, status: &tonic::Status) -> RequestError {
    if status.code() == tonic::Code::NotFound {
        return RequestError::new(ErrorCode::TopicNotExist, status.message().to_owned());
    }
    RequestError::new(
        ErrorCode::InternalError,
        format!(
            "the RocketMQ engine did not answer the {what}: {:?} {}",
            status.code(),
            status.message()
        ),
    )
}

/// What a receive that returned no message means.
pub(super) enum Received {
    /// Nothing to deliver now.
    Nothing,
    /// The topic is unknown to the engine (its route may be stale).
    TopicGone(RequestError),
    /// Any other refusal.
    Failed(RequestError),
}

/// Reads the status that ends a receive stream with no message.
///
/// rocketmq-rust 1.0.0 answers every long poll that found nothing with `50000
/// Serialization failed`: its remoting client decodes a pop response header even for the
/// broker's "polling timed out" answer, which has none (`rocketmq-client-rust` 1.0.0,
/// `message_operations.rs`, `process_pop_response`). The gateway reads exactly that answer
/// as "nothing found", as Apache RocketMQ's `MESSAGE_NOT_FOUND`; `docs/rocketmq-engine.md`
/// has the evidence.
pub(super) fn receive_status(status: Option<&pb::Status>) -> Received {
    match code_of(status) {
        (pb::Code::Ok | pb::Code::MessageNotFound, _) => Received::Nothing,
        (pb::Code::InternalError, "Serialization failed") => Received::Nothing,
        (pb::Code::TopicNotFound, m) => {
            Received::TopicGone(refusal(pb::Code::TopicNotFound, m, "consume"))
        }
        (code, m) => Received::Failed(refusal(code, m, "consume")),
    }
}

/// Whether a receive that found nothing was refused because it asked for a batch:
/// rocketmq-rust 1.0.0 answers `40000 Argument is invalid` to every pop that would return two
/// or more messages (its proxy's remoting client fails to read the broker's answer); a pop of
/// one message works.
pub(super) fn refuses_batches(status: Option<&pb::Status>) -> bool {
    matches!(
        code_of(status),
        (pb::Code::BadRequest, ENGINE_REMOTING_FAILURE)
    )
}

/// The message of rocketmq-rust 1.0.0's `40000` when its proxy's remoting client failed: a
/// batched pop it cannot read ([`refuses_batches`]), or a broker it cannot reach.
const ENGINE_REMOTING_FAILURE: &str = "Argument is invalid";

/// One handle's settlement: `Ok(None)` settled, `Ok(Some(code))` refused for this handle
/// (`MessageNotExist` for a delivery or transaction that is gone or expired,
/// `ReceiptHandleError` for one the engine does not know), `Err` for an engine failure
/// (the request answers 500 and the client may retry).
pub(super) fn settle_status(
    status: Option<&pb::Status>,
    what: &str,
) -> Result<Option<ErrorCode>, RequestError> {
    use pb::Code as C;
    match code_of(status) {
        (C::Ok | C::MultipleResults, _) => Ok(None),
        (C::MessageNotFound | C::NotFound | C::PreconditionFailed, _) => {
            Ok(Some(ErrorCode::MessageNotExist))
        }
        (C::InvalidReceiptHandle | C::InvalidTransactionId | C::IllegalMessageId, _) => {
            Ok(Some(ErrorCode::ReceiptHandleError))
        }
        (code, message) => {
            let e = refusal(code, message, what);
            if e.code.status() >= 500 {
                Err(e)
            } else {
                Ok(Some(e.code))
            }
        }
    }
}

/// [`settle_status`] of a transaction decision (commit, rollback). Its handle's seal was
/// checked before it reached the engine, so an engine that does not know the transaction
/// (`InvalidTransactionId`, …) means it is over — decided already (a retried commit whose
/// 204 was lost) or expired: `MessageNotExist`, as the built-in broker and the service
/// answer a late or second decision (PROTOCOL §6.6), not `ReceiptHandleError` ("not a
/// valid handle").
pub(super) fn decision_status(
    status: Option<&pb::Status>,
) -> Result<Option<ErrorCode>, RequestError> {
    Ok(
        settle_status(status, "transaction decision")?.map(|code| match code {
            ErrorCode::ReceiptHandleError => ErrorCode::MessageNotExist,
            other => other,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::MESSAGE_ID_PROPERTY;
    use super::*;
    use mq_proto::TransCheckImmunity;

    #[test]
    fn engine_names_split_into_instance_and_name() {
        let ns = InstanceId::new("MQ_INST_1").unwrap();
        let topic = TopicName::new("orders").unwrap();
        let named = engine_topic_name(Some(&ns), &topic);
        assert_eq!(split_engine_name(&named), Some((Some(ns), "orders".into())));
        assert_eq!(split_engine_name("orders"), Some((None, "orders".into())));
        for not_addressable in ["%RETRY%GID_a", "%DLQ%GID_a", "a%b%c", "a%", "%", "a b"] {
            assert_eq!(
                split_engine_name(not_addressable),
                None,
                "{not_addressable}"
            );
        }
    }

    #[test]
    fn a_message_group_always_gets_the_same_queue() {
        let ids = [0, 1, 2, 3, 4, 5, 6, 7];
        let q = fifo_queue("order-42", &ids).unwrap();
        assert_eq!(fifo_queue("order-42", &[7, 6, 5, 4, 3, 2, 1, 0]), Some(q));
        assert_eq!(fifo_queue("order-42", &ids), Some(q));
        let spread: std::collections::BTreeSet<i32> = (0..64)
            .filter_map(|i| fifo_queue(&format!("g{i}"), &ids))
            .collect();
        assert!(
            spread.len() >= 6,
            "groups spread over the queues: {spread:?}"
        );
        assert_eq!(fifo_queue("g", &[]), None);
    }

    #[test]
    fn a_publish_maps_every_system_property() {
        let m = TopicMessage::new("hi")
            .unwrap()
            .with_tag(Tag::new("TagA").unwrap())
            .with_key("k1")
            .unwrap()
            .with_property("color", "red")
            .unwrap()
            .with_start_deliver_time(10_500);
        let ns = InstanceId::new("MQ_INST_1").unwrap();
        let t = TopicName::new("T").unwrap();
        let wire = to_engine(&m, Some(&ns), &t, "ID".into(), 1_000);
        let sys = wire.system_properties.as_ref().unwrap();
        assert!(any_sender(&wire), "a DELAY message may use any client id");
        assert_eq!(sys.tag.as_deref(), Some("TagA"));
        assert_eq!(sys.keys, vec!["k1".to_owned()]);
        assert_eq!(sys.message_type, pb::MessageType::Delay as i32);
        assert_eq!(
            sys.delivery_timestamp,
            Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            wire.user_properties.get("color").map(String::as_str),
            Some("red")
        );
        assert_eq!(
            wire.user_properties
                .get(MESSAGE_ID_PROPERTY)
                .map(String::as_str),
            Some("ID")
        );
        assert_eq!(wire.topic.as_ref().unwrap().resource_namespace, "MQ_INST_1");

        let past = TopicMessage::new("x").unwrap().with_start_deliver_time(500);
        let wire = to_engine(&past, None, &t, "ID".into(), 1_000);
        assert!(any_sender(&wire), "a NORMAL message may use any client id");
        let sys = wire.system_properties.unwrap();
        assert_eq!(sys.message_type, pb::MessageType::Normal as i32);
        assert_eq!(sys.delivery_timestamp, None);

        let fifo = TopicMessage::new("x")
            .unwrap()
            .with_sharding_key("s")
            .unwrap();
        let wire = to_engine(&fifo, None, &t, "ID".into(), 0);
        assert!(
            !any_sender(&wire),
            "a FIFO message keeps the gateway's client id"
        );
        let sys = wire.system_properties.unwrap();
        assert_eq!(sys.message_type, pb::MessageType::Fifo as i32);
        assert_eq!(sys.message_group.as_deref(), Some("s"));

        let tx = TopicMessage::new("x")
            .unwrap()
            .with_trans_check_immunity(TransCheckImmunity::new(20).unwrap());
        let wire = to_engine(&tx, None, &t, "ID".into(), 0);
        assert!(
            !any_sender(&wire),
            "a transactional message keeps the gateway's client id"
        );
        let sys = wire.system_properties.unwrap();
        assert_eq!(sys.message_type, pb::MessageType::Transaction as i32);
        assert_eq!(
            sys.orphaned_transaction_recovery_duration
                .map(|d| d.seconds),
            Some(20)
        );
    }

    #[test]
    fn a_delivery_carries_the_protocols_times_and_properties() {
        let mut user = std::collections::HashMap::new();
        user.insert("color".to_owned(), "red".to_owned());
        user.insert("__transactionId__".to_owned(), "x".to_owned());
        user.insert("bad|key".to_owned(), "v".to_owned());
        user.insert(
            MESSAGE_ID_PROPERTY.to_owned(),
            "ABCDEF0123456789ABCDEF0123456789".to_owned(),
        );
        let m = pb::Message {
            topic: None,
            user_properties: user,
            system_properties: Some(pb::SystemProperties {
                tag: Some("TagA".into()),
                keys: vec!["k1".into(), "k2".into()],
                message_id: "7F00000100002A9F0000000000000000".into(),
                born_timestamp: Some(timestamp(5_000)),
                receipt_handle: Some("engine-handle".into()),
                delivery_attempt: Some(3),
                invisible_duration: Some(duration(30_000)),
                message_group: Some("g1".into()),
                ..pb::SystemProperties::default()
            }),
            body: bytes::Bytes::from_static(b"caf\xc3\xa9 \x01 \xff"),
        };
        let d = from_engine(m, 100_000, 300_000).unwrap();
        assert_eq!(d.engine_receipt_handle.as_deref(), Some("engine-handle"));
        assert_eq!(d.engine_message_id, "7F00000100002A9F0000000000000000");
        assert_eq!(
            d.message.message_id.as_str(),
            "ABCDEF0123456789ABCDEF0123456789"
        );
        assert_eq!(d.message.properties.get(MESSAGE_ID_PROPERTY), None);
        let msg = d.message;
        assert_eq!(msg.body, "café \u{FFFD} \u{FFFD}");
        assert_eq!(msg.body_md5, mq_proto::body_md5(&msg.body));
        assert_eq!(msg.publish_time, 5_000);
        assert_eq!(msg.next_consume_time, 130_000);
        assert_eq!(msg.consumed_times, 3);
        assert_eq!(msg.tag.as_ref().map(Tag::as_str), Some("TagA"));
        assert_eq!(msg.properties.get("color"), Some("red"));
        assert_eq!(msg.properties.get("KEYS"), Some("k1 k2"));
        assert_eq!(msg.properties.get("__SHARDINGKEY"), Some("g1"));
        assert_eq!(msg.properties.get("__transactionId__"), None);
        assert_eq!(msg.properties.get("bad|key"), None);
    }

    #[test]
    fn engine_statuses_become_the_protocols_errors() {
        let st = |code: pb::Code, m: &str| pb::Status {
            code: code as i32,
            message: m.into(),
        };
        assert!(check_status(None, "x").is_ok());
        assert_eq!(
            check_status(Some(&st(pb::Code::TopicNotFound, "t")), "x")
                .unwrap_err()
                .code,
            ErrorCode::TopicNotExist
        );
        assert_eq!(
            check_status(Some(&st(pb::Code::InternalError, "boom")), "x")
                .unwrap_err()
                .code,
            ErrorCode::InternalError
        );
        assert!(matches!(
            receive_status(Some(&st(pb::Code::InternalError, "Serialization failed"))),
            Received::Nothing
        ));
        assert!(matches!(
            receive_status(Some(&st(pb::Code::InternalError, "Broker response failed"))),
            Received::Failed(_)
        ));
        assert_eq!(
            settle_status(Some(&st(pb::Code::InvalidReceiptHandle, "")), "ack").unwrap(),
            Some(ErrorCode::ReceiptHandleError)
        );
        assert!(settle_status(Some(&st(pb::Code::ProxyTimeout, "")), "ack").is_err());
        // A decision the engine no longer knows is over (a second commit): as the built-in
        // broker answers it.
        for gone in [
            pb::Code::InvalidTransactionId,
            pb::Code::InvalidReceiptHandle,
            pb::Code::NotFound,
        ] {
            assert_eq!(
                decision_status(Some(&st(gone, ""))).unwrap(),
                Some(ErrorCode::MessageNotExist),
                "{gone:?}"
            );
        }
        assert!(decision_status(Some(&st(pb::Code::ProxyTimeout, ""))).is_err());
        assert_eq!(decision_status(Some(&st(pb::Code::Ok, ""))).unwrap(), None);
        // The engine's remoting failure (a broker down) is retryable; another bad request
        // is the caller's.
        let remoting = st(pb::Code::BadRequest, "Argument is invalid");
        assert_eq!(
            check_status(Some(&remoting), "publish").unwrap_err().code,
            ErrorCode::InternalError
        );
        assert!(settle_status(Some(&remoting), "ack").is_err());
        assert_eq!(
            check_status(Some(&st(pb::Code::BadRequest, "bad tag")), "publish")
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            settle_status(Some(&st(pb::Code::Ok, "")), "ack").unwrap(),
            None
        );
    }
}
