//! Topic and consumer-group administration over RocketMQ's remoting protocol.
//!
//! The gRPC v2 protocol the gateway speaks has no call that creates, lists or deletes a topic
//! or a consumer group; a RocketMQ 5 broker takes them as remoting requests on its remoting
//! port (10911 by default), a name server on its own (9876). This module sends these, one
//! request per TCP connection, and nothing else of the remoting protocol:
//!
//! | code | request | to | answer body |
//! | --- | --- | --- | --- |
//! | 17 | `UPDATE_AND_CREATE_TOPIC` | broker | none |
//! | 21 | `GET_ALL_TOPIC_CONFIG` | broker | `TopicConfigAndMappingSerializeWrapper` (JSON, `topicConfigTable`) |
//! | 200 | `UPDATE_AND_CREATE_SUBSCRIPTIONGROUP` | broker | none |
//! | 201 | `GET_ALL_SUBSCRIPTIONGROUP_CONFIG` | broker | `SubscriptionGroupWrapper` (JSON, `subscriptionGroupTable`) |
//! | 207 | `DELETE_SUBSCRIPTIONGROUP` | broker | none |
//! | 215 | `DELETE_TOPIC_IN_BROKER` | broker | none |
//! | 216 | `DELETE_TOPIC_IN_NAMESRV` | name server | none |
//! | 305 | `GET_SYSTEM_TOPIC_LIST_FROM_BROKER` | broker | `TopicList` (JSON, `topicList`) |
//!
//! Codes: `rocketmq-protocol-1.0.0/src/code/request_code.rs`. Every delete answers success
//! for a name the engine does not have (tried against rocketmq-rust 1.0.0), so the callers
//! list first where "not found" matters.
//!
//! # Where the protocol facts come from
//!
//! `docs/rocketmq-engine.md` (§2 "How topics are created", with a working Python client in
//! `docs/rocketmq-engine/remoting.py`) and the sources of the engine `rocketmq-rust` 1.0.0:
//!
//! * frame: `rocketmq-protocol-1.0.0/src/protocol/remoting_command/decode.rs` — a big-endian
//!   `u32` length of everything after it, a `u32` whose top byte is the serialisation type
//!   (0 = JSON) and whose low 24 bits are the header length, the header, then the body; the
//!   engine refuses frames over 16 MiB (+ 4) and so does [`MAX_FRAME`] here;
//! * header fields and the response flag (bit 0 of `flag`):
//!   `rocketmq-protocol-1.0.0/src/protocol/remoting_command/decode/json.rs` and
//!   `…/remoting_command/flags.rs`; `version` 474 is the engine's `CURRENT_VERSION`
//!   (`V5_3_1_SNAPSHOT` in `rocketmq-model-1.0.0/src/version.rs`, the same ordinal as Apache's
//!   `MQVersion`);
//! * code 17's fields: `CreateTopicRequestHeader`
//!   (`rocketmq-protocol-1.0.0/src/protocol/header/create_topic_request_header.rs`), handled by
//!   `update_and_create_topic` in
//!   `rocketmq-broker-1.0.0/src/processor/admin_broker_processor/topic_request_handler.rs`
//!   (a `MIXED` topic is refused unless the broker sets `enableMixedMessageType`);
//! * code 200's body: `SubscriptionGroupConfig`
//!   (`rocketmq-protocol-1.0.0/src/protocol/subscription/subscription_group_config.rs`, camelCase
//!   JSON), handled by `update_and_create_subscription_group` in
//!   `rocketmq-broker-1.0.0/src/processor/admin_broker_processor/subscription_group_handler.rs`.
//!
//! * codes 21, 215 and 305: `get_all_topic_config`, `delete_topic` and
//!   `get_system_topic_list_from_broker` in
//!   `rocketmq-broker-1.0.0/src/processor/admin_broker_processor/topic_request_handler.rs`
//!   (`DeleteTopicRequestHeader`: `topic`; 305 lists the broker's system topics, which 21
//!   includes: `TBW102`, `SCHEDULE_TOPIC_XXXX`, the cluster's and the broker's own names, …);
//!   a topic deleted on the brokers keeps its route on the name servers (their
//!   `deleteTopicWithBrokerRegistration` is off by default,
//!   `rocketmq-namesrv-1.0.0/src/route/route_info_manager.rs`) until code 216 removes it
//!   (`delete_topic_in_name_srv` in
//!   `rocketmq-namesrv-1.0.0/src/processor/default_request_processor.rs`);
//! * codes 201 and 207: `subscription_group_handler.rs` beside code 200
//!   (`DeleteSubscriptionGroupRequestHeader`: `groupName`, `cleanOffset`); the broker's own
//!   groups (`TOOLS_CONSUMER`, `CID_ONSAPI_PULL`, …) are those its
//!   `subscription/manager/subscription_group_manager.rs` creates at start, named in
//!   `rocketmq-model-1.0.0/src/common/mix_all.rs`.
//!
//! Every step (connect, write, read) is bounded by the caller's timeout, the answer's size is
//! capped before anything is allocated for it, and every failure is an [`AdminError`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request code `UPDATE_AND_CREATE_TOPIC`.
pub(crate) const UPDATE_AND_CREATE_TOPIC: i32 = 17;
/// Request code `UPDATE_AND_CREATE_SUBSCRIPTIONGROUP`.
pub(crate) const UPDATE_AND_CREATE_SUBSCRIPTION_GROUP: i32 = 200;
/// Request code `GET_ALL_TOPIC_CONFIG`.
pub(crate) const GET_ALL_TOPIC_CONFIG: i32 = 21;
/// Request code `GET_ALL_SUBSCRIPTIONGROUP_CONFIG`.
pub(crate) const GET_ALL_SUBSCRIPTION_GROUP_CONFIG: i32 = 201;
/// Request code `DELETE_SUBSCRIPTIONGROUP`.
pub(crate) const DELETE_SUBSCRIPTION_GROUP: i32 = 207;
/// Request code `DELETE_TOPIC_IN_BROKER`.
pub(crate) const DELETE_TOPIC_IN_BROKER: i32 = 215;
/// Request code `DELETE_TOPIC_IN_NAMESRV`.
pub(crate) const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
/// Request code `GET_SYSTEM_TOPIC_LIST_FROM_BROKER`.
pub(crate) const GET_SYSTEM_TOPIC_LIST_FROM_BROKER: i32 = 305;
/// The consumer groups a broker creates for itself at start (`mix_all.rs`, see the module
/// docs); never listed as the user's.
const SYSTEM_GROUPS: [&str; 8] = [
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_RMQ_SYS_TRANS",
];
/// The prefix of the engine's system topics beyond its fixed set
/// (`TopicValidator::SYSTEM_TOPIC_PREFIX`, `rocketmq-model-1.0.0/src/common/topic.rs`).
const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// The largest answer frame accepted (what follows the length word), as the engine's own
/// decoder: 16 MiB.
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The topic a new topic's defaults are taken from (the broker's auto-create template).
const DEFAULT_TOPIC: &str = "TBW102";
/// Read and write permission (`PermName.PERM_READ | PERM_WRITE`).
const PERM_READ_WRITE: &str = "6";
/// Serialisation type 0 in the header-length word: a JSON header.
const SERIALIZE_JSON: u8 = 0;
/// Bit 0 of `flag`: the command is a response.
const FLAG_RESPONSE: i32 = 1;
/// The header's `version`: the engine's `CURRENT_VERSION` ordinal (see the module docs).
const PROTOCOL_VERSION: i32 = 474;
/// The header's `language`. `JAVA` is the one every broker implementation knows.
const LANGUAGE: &str = "JAVA";
/// The answer's `code` for success.
const SUCCESS: i32 = 0;

/// What a topic is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSpec {
    /// The topic's name on the cluster (already namespaced if the gateway namespaces).
    pub(crate) name: String,
    /// Read and write queue count.
    pub(crate) queues: u16,
    /// The message type the topic accepts.
    pub(crate) message_type: MessageType,
}

pub(crate) use crate::config::TopicMessageType as MessageType;

/// Which step of a request ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Resolving the address and opening the TCP connection.
    Connect,
    /// Writing the request.
    Write,
    /// Reading the answer.
    Read,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting",
            Self::Write => "writing the request",
            Self::Read => "reading the answer",
        })
    }
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AdminError {
    /// The connection could not be opened, or broke.
    #[error("remoting admin connection to {addr} failed: {source}")]
    Io {
        /// The broker's remoting address.
        addr: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A step took longer than the caller's timeout.
    #[error("remoting admin request to {addr} timed out {step} (limit {limit:?})")]
    Timeout {
        /// The broker's remoting address.
        addr: String,
        /// The step that ran out of time.
        step: Step,
        /// The caller's limit for one step.
        limit: Duration,
    },
    /// The answer is not a well-formed remoting response to this request.
    #[error("malformed remoting answer from {addr}: {reason}")]
    Malformed {
        /// The broker's remoting address.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker answered with a code other than success.
    #[error("the broker refused the request (code {code}): {}", remark.as_deref().unwrap_or("no remark"))]
    Refused {
        /// The answer's `code` (RocketMQ `ResponseCode`).
        code: i32,
        /// The answer's `remark`, the broker's explanation.
        remark: Option<String>,
    },
}

/// Creates `spec`'s topic, or updates it to `spec` if it exists, on the broker whose remoting
/// address is `addr` (`host:port`). Connecting, writing and reading are each bounded by
/// `timeout`.
pub(crate) async fn create_topic(
    addr: &str,
    spec: &TopicSpec,
    timeout: Duration,
) -> Result<(), AdminError> {
    let queues = spec.queues.to_string();
    let ext_fields = BTreeMap::from([
        ("topic", spec.name.clone()),
        ("defaultTopic", DEFAULT_TOPIC.to_owned()),
        ("readQueueNums", queues.clone()),
        ("writeQueueNums", queues),
        ("perm", PERM_READ_WRITE.to_owned()),
        ("topicFilterType", "SINGLE_TAG".to_owned()),
        ("topicSysFlag", "0".to_owned()),
        ("order", "false".to_owned()),
        (
            "attributes",
            format!("+message.type={}", spec.message_type.as_str()),
        ),
    ]);
    call_with(addr, UPDATE_AND_CREATE_TOPIC, ext_fields, timeout)
        .await
        .map(drop)
}

/// Creates consumer group `group`, or updates it, on the broker whose remoting address is
/// `addr` (`host:port`); `orderly` groups consume FIFO topics in order. Connecting, writing
/// and reading are each bounded by `timeout`.
pub(crate) async fn create_group(
    addr: &str,
    group: &str,
    orderly: bool,
    timeout: Duration,
) -> Result<(), AdminError> {
    let body = serde_json::to_vec(&SubscriptionGroupConfig::new(group, orderly))
        .map_err(|e| malformed(addr, format!("encoding the group: {e}")))?;
    let request = Request {
        code: UPDATE_AND_CREATE_SUBSCRIPTION_GROUP,
        ext_fields: BTreeMap::new(),
        body,
    };
    call(addr, &request, timeout).await.map(drop)
}

/// A topic as a broker keeps it (code 21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// Its name on the cluster (`INSTANCE%NAME` for a namespaced topic).
    pub(crate) name: String,
    /// Its read queue count.
    pub(crate) queues: u32,
    /// Its `message.type` attribute (`NORMAL`, `FIFO`, …); `None` for a topic created
    /// without one.
    pub(crate) message_type: Option<String>,
}

/// A consumer group as a broker keeps it (code 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupInfo {
    /// Its name on the cluster (`INSTANCE%NAME` for a namespaced group).
    pub(crate) name: String,
    /// `consumeMessageOrderly`: it consumes FIFO topics in order.
    pub(crate) orderly: bool,
    /// `retryMaxTimes`: redeliveries before a message goes to the group's dead letters.
    pub(crate) retry_max_times: i32,
}

/// The user topics of the broker at `addr`: every topic it keeps (code 21) but its system
/// topics (code 305, and names starting `rmq_sys_`), in name order. Each request's steps
/// are bounded by `timeout`.
pub(crate) async fn topics(addr: &str, timeout: Duration) -> Result<Vec<TopicInfo>, AdminError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(default)]
        read_queue_nums: u32,
        #[serde(default)]
        attributes: BTreeMap<String, String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AllTopics {
        #[serde(default)]
        topic_config_table: BTreeMap<String, Config>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TopicList {
        #[serde(default)]
        topic_list: Vec<String>,
    }
    let all: AllTopics = call_json(addr, GET_ALL_TOPIC_CONFIG, BTreeMap::new(), timeout).await?;
    let system: TopicList = call_json(
        addr,
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER,
        BTreeMap::new(),
        timeout,
    )
    .await?;
    Ok(all
        .topic_config_table
        .into_iter()
        .filter(|(name, _)| {
            !name.starts_with(SYSTEM_TOPIC_PREFIX) && !system.topic_list.contains(name)
        })
        .map(|(name, config)| TopicInfo {
            name,
            queues: config.read_queue_nums,
            message_type: config.attributes.get("message.type").cloned(),
        })
        .collect())
}

/// The consumer groups of the broker at `addr` (code 201) but its own (see the module docs),
/// in name order. The request's steps are bounded by `timeout`.
pub(crate) async fn groups(addr: &str, timeout: Duration) -> Result<Vec<GroupInfo>, AdminError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(default)]
        consume_message_orderly: bool,
        #[serde(default)]
        retry_max_times: i32,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AllGroups {
        #[serde(default)]
        subscription_group_table: BTreeMap<String, Config>,
    }
    let all: AllGroups = call_json(
        addr,
        GET_ALL_SUBSCRIPTION_GROUP_CONFIG,
        BTreeMap::new(),
        timeout,
    )
    .await?;
    Ok(all
        .subscription_group_table
        .into_iter()
        .filter(|(name, _)| !SYSTEM_GROUPS.contains(&name.as_str()))
        .map(|(name, config)| GroupInfo {
            name,
            orderly: config.consume_message_orderly,
            retry_max_times: config.retry_max_times,
        })
        .collect())
}

/// Who keeps a topic: a broker (its configuration, queues, offsets and pop retry topics)
/// or a name server (its route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A broker: `DELETE_TOPIC_IN_BROKER` (215).
    Broker,
    /// A name server: `DELETE_TOPIC_IN_NAMESRV` (216).
    NameServer,
}

/// Deletes topic `name` on the broker or name server at `addr`. A topic deleted on the
/// brokers keeps its route on the name servers until it is deleted there too. Each step is
/// bounded by `timeout`.
pub(crate) async fn delete_topic(
    addr: &str,
    name: &str,
    holder: Holder,
    timeout: Duration,
) -> Result<(), AdminError> {
    let code = match holder {
        Holder::Broker => DELETE_TOPIC_IN_BROKER,
        Holder::NameServer => DELETE_TOPIC_IN_NAMESRV,
    };
    let fields = BTreeMap::from([("topic", name.to_owned())]);
    call_with(addr, code, fields, timeout).await.map(drop)
}

/// Deletes consumer group `name` and its consumer offsets on the broker at `addr` (code
/// 207). Each step is bounded by `timeout`.
pub(crate) async fn delete_group(
    addr: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), AdminError> {
    let fields = BTreeMap::from([
        ("groupName", name.to_owned()),
        ("cleanOffset", "true".to_owned()),
    ]);
    call_with(addr, DELETE_SUBSCRIPTION_GROUP, fields, timeout)
        .await
        .map(drop)
}

/// Sends a request of `code` with header fields and no body.
async fn call_with(
    addr: &str,
    code: i32,
    ext_fields: BTreeMap<&'static str, String>,
    timeout: Duration,
) -> Result<Response, AdminError> {
    let request = Request {
        code,
        ext_fields,
        body: Vec::new(),
    };
    call(addr, &request, timeout).await
}

/// [`call_with`], decoding the answer's body as JSON of type `T`.
async fn call_json<T: serde::de::DeserializeOwned>(
    addr: &str,
    code: i32,
    ext_fields: BTreeMap<&'static str, String>,
    timeout: Duration,
) -> Result<T, AdminError> {
    let response = call_with(addr, code, ext_fields, timeout).await?;
    serde_json::from_slice(&response.body).map_err(|e| {
        malformed(
            addr,
            format!("the answer to code {code} is not its JSON: {e}"),
        )
    })
}

/// The body of code 200: the fields the engine's `SubscriptionGroupConfig` deserialises, with
/// the values of a clustering consumer group (not broadcast).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionGroupConfig<'a> {
    group_name: &'a str,
    consume_enable: bool,
    consume_from_min_enable: bool,
    consume_broadcast_enable: bool,
    consume_message_orderly: bool,
    retry_queue_nums: i32,
    retry_max_times: i32,
    broker_id: u64,
    which_broker_when_consume_slowly: u64,
    notify_consumer_ids_changed_enable: bool,
}

impl<'a> SubscriptionGroupConfig<'a> {
    fn new(group_name: &'a str, orderly: bool) -> Self {
        Self {
            group_name,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: false,
            consume_message_orderly: orderly,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
        }
    }
}

/// One remoting request before framing.
#[derive(Debug)]
struct Request {
    code: i32,
    ext_fields: BTreeMap<&'static str, String>,
    body: Vec<u8>,
}

/// The JSON header of a request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestHeader<'a> {
    code: i32,
    language: &'static str,
    version: i32,
    opaque: i32,
    flag: i32,
    remark: Option<&'a str>,
    ext_fields: &'a BTreeMap<&'static str, String>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type_current_rpc: &'static str,
}

/// The JSON header of an answer (fields the client needs; others are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseHeader {
    code: i32,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    flag: i32,
    #[serde(default)]
    remark: Option<String>,
}

/// A decoded answer.
#[derive(Debug)]
struct Response {
    header: ResponseHeader,
    body: Vec<u8>,
}

/// Sends `request` on a new connection and returns the broker's successful answer.
async fn call(addr: &str, request: &Request, timeout: Duration) -> Result<Response, AdminError> {
    static OPAQUE: AtomicI32 = AtomicI32::new(1);
    let opaque = OPAQUE.fetch_add(1, Ordering::Relaxed);
    let frame = encode_request(request, opaque).map_err(|e| malformed(addr, e))?;
    let io = |source| AdminError::Io {
        addr: addr.to_owned(),
        source,
    };
    let mut stream = bounded(addr, Step::Connect, timeout, TcpStream::connect(addr))
        .await?
        .map_err(io)?;
    bounded(addr, Step::Write, timeout, stream.write_all(&frame))
        .await?
        .map_err(io)?;
    let answer = bounded(addr, Step::Read, timeout, read_frame(&mut stream))
        .await?
        .map_err(|e| match e {
            FrameError::Io(e) => io(e),
            FrameError::Malformed(reason) => malformed(addr, reason),
        })?;
    let response = decode_response(&answer).map_err(|reason| malformed(addr, reason))?;
    if response.header.flag & FLAG_RESPONSE == 0 {
        return Err(malformed(addr, "the answer is not flagged as a response"));
    }
    if response.header.opaque != opaque {
        return Err(malformed(
            addr,
            format!(
                "the answer is for request {} (sent {opaque})",
                response.header.opaque
            ),
        ));
    }
    if response.header.code != SUCCESS {
        return Err(AdminError::Refused {
            code: response.header.code,
            remark: response.header.remark,
        });
    }
    Ok(response)
}

/// Runs `step` within `limit`.
async fn bounded<T>(
    addr: &str,
    step: Step,
    limit: Duration,
    work: impl Future<Output = T>,
) -> Result<T, AdminError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| AdminError::Timeout {
            addr: addr.to_owned(),
            step,
            limit,
        })
}

fn malformed(addr: &str, reason: impl Into<String>) -> AdminError {
    AdminError::Malformed {
        addr: addr.to_owned(),
        reason: reason.into(),
    }
}

/// The whole frame of `request` with a JSON header: length word, header-length word, header,
/// body.
fn encode_request(request: &Request, opaque: i32) -> Result<Vec<u8>, String> {
    let header = serde_json::to_vec(&RequestHeader {
        code: request.code,
        language: LANGUAGE,
        version: PROTOCOL_VERSION,
        opaque,
        flag: 0,
        remark: None,
        ext_fields: &request.ext_fields,
        serialize_type_current_rpc: "JSON",
    })
    .map_err(|e| format!("encoding the header: {e}"))?;
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|&n| n <= 0x00FF_FFFF)
        .ok_or_else(|| format!("header of {} bytes exceeds 16 MiB", header.len()))?;
    let total = 4 + header.len() + request.body.len();
    let total_word = u32::try_from(total)
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| format!("request of {total} bytes exceeds {MAX_FRAME} bytes"))?;
    let mut frame = Vec::with_capacity(4 + total);
    frame.extend_from_slice(&total_word.to_be_bytes());
    frame.extend_from_slice(&((u32::from(SERIALIZE_JSON) << 24) | header_len).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&request.body);
    Ok(frame)
}

/// Why a frame could not be read.
#[derive(Debug)]
enum FrameError {
    Io(io::Error),
    Malformed(String),
}

/// Reads one frame and returns what follows its length word. The announced length is checked
/// against [`MAX_FRAME`] first, and the buffer grows only with bytes actually received.
async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>, FrameError> {
    let mut word = [0u8; 4];
    let mut got = 0;
    while got < word.len() {
        match stream
            .read(&mut word[got..])
            .await
            .map_err(FrameError::Io)?
        {
            0 => {
                return Err(FrameError::Malformed(format!(
                    "connection closed after {got} of the 4 length bytes"
                )));
            }
            n => got += n,
        }
    }
    let announced = u32::from_be_bytes(word) as usize;
    if !(4..=MAX_FRAME).contains(&announced) {
        return Err(FrameError::Malformed(format!(
            "announced frame length {announced} is outside 4..={MAX_FRAME}"
        )));
    }
    let mut frame = Vec::with_capacity(announced.min(64 * 1024));
    let read = (&mut *stream)
        .take(announced as u64)
        .read_to_end(&mut frame)
        .await
        .map_err(FrameError::Io)?;
    if read < announced {
        return Err(FrameError::Malformed(format!(
            "connection closed after {read} of {announced} frame bytes"
        )));
    }
    Ok(frame)
}

/// Decodes what follows a frame's length word: header-length word, JSON header, body.
fn decode_response(frame: &[u8]) -> Result<Response, String> {
    let (word, rest) = frame
        .split_first_chunk::<4>()
        .ok_or_else(|| format!("frame of {} bytes has no header-length word", frame.len()))?;
    let word = u32::from_be_bytes(*word);
    let serialize_type = (word >> 24) as u8;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if serialize_type != SERIALIZE_JSON {
        return Err(format!(
            "header serialisation type {serialize_type} (only JSON, 0, was requested)"
        ));
    }
    if header_len > rest.len() {
        return Err(format!(
            "header length {header_len} exceeds the {} bytes that follow",
            rest.len()
        ));
    }
    let (header, body) = rest.split_at(header_len);
    let header = serde_json::from_slice::<ResponseHeader>(header)
        .map_err(|e| format!("header is not a remoting JSON header: {e}"))?;
    Ok(Response {
        header,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const LIMIT: Duration = Duration::from_secs(5);

    fn topic(message_type: MessageType) -> TopicSpec {
        TopicSpec {
            name: "orders".into(),
            queues: 4,
            message_type,
        }
    }

    /// Splits a frame written by `encode_request` into its header JSON and body.
    fn split_request(frame: &[u8]) -> (serde_json::Value, Vec<u8>) {
        let total = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(total, frame.len() - 4, "length word counts what follows it");
        let word = u32::from_be_bytes(frame[4..8].try_into().unwrap());
        assert_eq!(word >> 24, 0, "JSON serialisation type");
        let header_len = (word & 0x00FF_FFFF) as usize;
        let header = serde_json::from_slice(&frame[8..8 + header_len]).unwrap();
        (header, frame[8 + header_len..].to_vec())
    }

    /// A response frame as the broker writes it.
    fn response_frame(header: &serde_json::Value, body: &[u8]) -> Vec<u8> {
        let header = serde_json::to_vec(header).unwrap();
        let mut frame = Vec::new();
        frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(body);
        frame
    }

    /// What the engine answered in docs/rocketmq-engine.md, for request `opaque`.
    fn success(opaque: i64) -> serde_json::Value {
        serde_json::json!({"code": 0, "language": "RUST", "version": 474, "opaque": opaque,
            "flag": 1, "remark": null, "extFields": null, "serializeTypeCurrentRPC": "JSON"})
    }

    /// A fake broker on 127.0.0.1 that accepts one connection, reads one request, writes what
    /// `answer` makes of the request's opaque and closes its side; returns its address and
    /// the request it saw.
    async fn fake_broker<F>(
        answer: F,
    ) -> (
        String,
        tokio::task::JoinHandle<(serde_json::Value, Vec<u8>)>,
    )
    where
        F: FnOnce(i64) -> Vec<u8> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (header, body) = read_request(&mut socket).await;
            let reply = answer(header["opaque"].as_i64().unwrap());
            socket.write_all(&reply).await.unwrap();
            // End of answer (a truncated one stays truncated), then wait for the client to go.
            socket.shutdown().await.unwrap();
            let mut sink = Vec::new();
            let _ = socket.read_to_end(&mut sink).await;
            (header, body)
        });
        (addr, task)
    }

    /// Reads one request frame from `socket`: its header JSON and body.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> (serde_json::Value, Vec<u8>) {
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).await.unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
        socket.read_exact(&mut rest).await.unwrap();
        let mut frame = len.to_vec();
        frame.extend_from_slice(&rest);
        split_request(&frame)
    }

    /// A fake broker on 127.0.0.1 that answers `n` connections, one request each, with
    /// `answer(code, opaque)`; returns its address and the (header, body) of each request.
    async fn fake_broker_for<F>(
        n: usize,
        answer: F,
    ) -> (
        String,
        tokio::task::JoinHandle<Vec<(serde_json::Value, Vec<u8>)>>,
    )
    where
        F: Fn(i64, i64) -> Vec<u8> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (header, body) = read_request(&mut socket).await;
                let reply = answer(
                    header["code"].as_i64().unwrap(),
                    header["opaque"].as_i64().unwrap(),
                );
                socket.write_all(&reply).await.unwrap();
                seen.push((header, body));
            }
            seen
        });
        (addr, task)
    }

    #[tokio::test]
    async fn topics_are_the_broker_topics_but_its_system_topics() {
        let (addr, broker) = fake_broker_for(2, |code, opaque| {
            let body = match code {
                // As rocketmq-rust 1.0.0 answered (trimmed).
                21 => serde_json::json!({
                    "topicQueueMappingInfoMap": {}, "dataVersion": {"timestamp": 1, "counter": 2},
                    "topicConfigTable": {
                        "TBW102": {"topicName": "TBW102", "readQueueNums": 8, "writeQueueNums": 8,
                            "perm": 7, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0,
                            "order": false, "attributes": {}},
                        "broker-a": {"topicName": "broker-a", "readQueueNums": 1, "attributes": {}},
                        "rmq_sys_wheel_timer": {"topicName": "rmq_sys_wheel_timer", "readQueueNums": 1},
                        "MQ_INST_1%orders": {"topicName": "MQ_INST_1%orders", "readQueueNums": 4,
                            "writeQueueNums": 4, "attributes": {"message.type": "FIFO"}},
                        "plain": {"topicName": "plain", "readQueueNums": 2, "attributes": {}}
                    }
                }),
                305 => serde_json::json!({"topicList": ["TBW102", "broker-a"], "brokerAddr": null}),
                other => panic!("unexpected code {other}"),
            };
            response_frame(&success(opaque), &serde_json::to_vec(&body).unwrap())
        })
        .await;
        let topics = topics(&addr, LIMIT).await.unwrap();
        assert_eq!(
            topics,
            [
                TopicInfo {
                    name: "MQ_INST_1%orders".into(),
                    queues: 4,
                    message_type: Some("FIFO".into())
                },
                TopicInfo {
                    name: "plain".into(),
                    queues: 2,
                    message_type: None
                },
            ]
        );
        let seen = broker.await.unwrap();
        let codes: Vec<_> = seen.iter().map(|(h, _)| h["code"].clone()).collect();
        assert_eq!(codes, [21, 305]);
    }

    #[tokio::test]
    async fn groups_are_the_broker_groups_but_its_own() {
        let (addr, _broker) = fake_broker_for(1, |_, opaque| {
            let body = serde_json::json!({
                "subscriptionGroupTable": {
                    "TOOLS_CONSUMER": {"groupName": "TOOLS_CONSUMER", "retryMaxTimes": 16},
                    "CID_RMQ_SYS_TRANS": {"groupName": "CID_RMQ_SYS_TRANS"},
                    "GID_a": {"groupName": "GID_a", "consumeMessageOrderly": true, "retryMaxTimes": 16},
                    "MQ_INST_1%GID_b": {"groupName": "MQ_INST_1%GID_b", "retryMaxTimes": 3}
                },
                "forbiddenTable": {}, "dataVersion": {"timestamp": 1, "counter": 1}
            });
            response_frame(&success(opaque), &serde_json::to_vec(&body).unwrap())
        })
        .await;
        assert_eq!(
            groups(&addr, LIMIT).await.unwrap(),
            [
                GroupInfo {
                    name: "GID_a".into(),
                    orderly: true,
                    retry_max_times: 16
                },
                GroupInfo {
                    name: "MQ_INST_1%GID_b".into(),
                    orderly: false,
                    retry_max_times: 3
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_listing_that_is_not_its_json_is_malformed() {
        let (addr, _broker) =
            fake_broker_for(1, |_, opaque| response_frame(&success(opaque), b"not json")).await;
        assert_malformed(&groups(&addr, LIMIT).await.unwrap_err(), "is not its JSON");
    }

    #[tokio::test]
    async fn deletes_send_their_codes_and_fields() {
        let (addr, broker) =
            fake_broker_for(3, |_, opaque| response_frame(&success(opaque), b"")).await;
        for holder in [Holder::Broker, Holder::NameServer] {
            delete_topic(&addr, "MQ_INST_1%orders", holder, LIMIT)
                .await
                .unwrap();
        }
        delete_group(&addr, "GID_a", LIMIT).await.unwrap();
        let seen = broker.await.unwrap();
        assert_eq!(seen[0].0["code"], 215);
        assert_eq!(
            seen[0].0["extFields"],
            serde_json::json!({"topic": "MQ_INST_1%orders"})
        );
        assert_eq!(seen[1].0["code"], 216);
        assert_eq!(
            seen[1].0["extFields"],
            serde_json::json!({"topic": "MQ_INST_1%orders"})
        );
        assert_eq!(seen[2].0["code"], 207);
        assert_eq!(
            seen[2].0["extFields"],
            serde_json::json!({"groupName": "GID_a", "cleanOffset": "true"})
        );
        assert!(seen.iter().all(|(_, body)| body.is_empty()));
    }

    #[test]
    fn request_frame_round_trips() {
        let request = Request {
            code: UPDATE_AND_CREATE_SUBSCRIPTION_GROUP,
            ext_fields: BTreeMap::from([("topic", "t".to_owned())]),
            body: b"{\"groupName\":\"g\"}".to_vec(),
        };
        let frame = encode_request(&request, 7).unwrap();
        let (header, body) = split_request(&frame);
        assert_eq!(header["code"], 200);
        assert_eq!(header["opaque"], 7);
        assert_eq!(header["flag"], 0);
        assert_eq!(header["language"], "JAVA");
        assert_eq!(header["version"], 474);
        assert_eq!(header["remark"], serde_json::Value::Null);
        assert_eq!(header["extFields"]["topic"], "t");
        assert_eq!(header["serializeTypeCurrentRPC"], "JSON");
        assert_eq!(body, request.body);
    }

    #[test]
    fn response_frame_round_trips() {
        let frame = response_frame(&success(9), b"payload");
        let response = decode_response(&frame[4..]).unwrap();
        assert_eq!(response.header.code, 0);
        assert_eq!(response.header.opaque, 9);
        assert_eq!(response.header.flag, 1);
        assert_eq!(response.header.remark, None);
        assert_eq!(response.body, b"payload");
    }

    #[test]
    fn undecodable_responses_are_reasons_not_panics() {
        let cases: [&[u8]; 6] = [
            b"",
            b"\x00\x00",
            // Header length beyond the frame.
            b"\x00\x00\x00\x10{}",
            // Binary (ROCKETMQ) serialisation was not requested.
            b"\x01\x00\x00\x02{}",
            // Not JSON.
            b"\x00\x00\x00\x03abc",
            // JSON without a code.
            b"\x00\x00\x00\x02{}",
        ];
        for case in cases {
            assert!(decode_response(case).is_err(), "{case:?}");
        }
    }

    #[tokio::test]
    async fn create_topic_sends_code_17_with_the_documented_fields() {
        let (addr, broker) = fake_broker(|opaque| response_frame(&success(opaque), b"")).await;
        create_topic(&addr, &topic(MessageType::Fifo), LIMIT)
            .await
            .unwrap();
        let (header, body) = broker.await.unwrap();
        assert_eq!(header["code"], 17);
        let ext = &header["extFields"];
        assert_eq!(ext["topic"], "orders");
        assert_eq!(ext["defaultTopic"], "TBW102");
        assert_eq!(ext["readQueueNums"], "4");
        assert_eq!(ext["writeQueueNums"], "4");
        assert_eq!(ext["perm"], "6");
        assert_eq!(ext["topicFilterType"], "SINGLE_TAG");
        assert_eq!(ext["topicSysFlag"], "0");
        assert_eq!(ext["order"], "false");
        assert_eq!(ext["attributes"], "+message.type=FIFO");
        assert!(body.is_empty());
    }

    #[test]
    fn message_types_are_the_engine_attribute_values() {
        let all = [
            (MessageType::Normal, "NORMAL"),
            (MessageType::Fifo, "FIFO"),
            (MessageType::Delay, "DELAY"),
            (MessageType::Transaction, "TRANSACTION"),
            (MessageType::Mixed, "MIXED"),
        ];
        for (t, s) in all {
            assert_eq!(t.as_str(), s);
        }
    }

    #[tokio::test]
    async fn create_group_sends_code_200_with_a_subscription_group_body() {
        let (addr, broker) = fake_broker(|opaque| response_frame(&success(opaque), b"")).await;
        create_group(&addr, "GID_orders", true, LIMIT)
            .await
            .unwrap();
        let (header, body) = broker.await.unwrap();
        assert_eq!(header["code"], 200);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "groupName": "GID_orders", "consumeEnable": true, "consumeFromMinEnable": true,
                "consumeBroadcastEnable": false, "consumeMessageOrderly": true,
                "retryQueueNums": 1, "retryMaxTimes": 16, "brokerId": 0,
                "whichBrokerWhenConsumeSlowly": 1, "notifyConsumerIdsChangedEnable": true,
            })
        );
    }

    #[tokio::test]
    async fn a_refusal_carries_the_code_and_remark() {
        let (addr, _broker) = fake_broker(|opaque| {
            let mut header = success(opaque);
            header["code"] = 1.into();
            header["remark"] = "MIXED message type is not supported.".into();
            response_frame(&header, b"")
        })
        .await;
        let err = create_topic(&addr, &topic(MessageType::Mixed), LIMIT)
            .await
            .unwrap_err();
        match err {
            AdminError::Refused { code, remark } => {
                assert_eq!(code, 1);
                assert_eq!(
                    remark.as_deref(),
                    Some("MIXED message type is not supported.")
                );
            }
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    async fn answer_error(reply: Vec<u8>) -> AdminError {
        let (addr, _broker) = fake_broker(move |_| reply).await;
        create_group(&addr, "g", false, LIMIT).await.unwrap_err()
    }

    fn assert_malformed(err: &AdminError, needle: &str) {
        match err {
            AdminError::Malformed { reason, .. } => {
                assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
            }
            other => panic!("expected Malformed ({needle}), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_oversized_announcement_is_refused_before_reading_it() {
        // 4 GiB - 1 announced, nothing sent: refused on the length word alone.
        let err = answer_error(u32::MAX.to_be_bytes().to_vec()).await;
        assert_malformed(&err, "outside 4..=16777216");
        let just_over = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        assert_malformed(&answer_error(just_over).await, "outside");
    }

    #[tokio::test]
    async fn garbage_and_truncated_answers_are_malformed() {
        assert_malformed(&answer_error(b"\x00\x00".to_vec()).await, "length bytes");
        assert_malformed(
            &answer_error(b"\x00\x00\x00\x02\x00".to_vec()).await,
            "outside",
        );
        let mut truncated = response_frame(&success(1), b"");
        truncated.truncate(truncated.len() - 3);
        assert_malformed(&answer_error(truncated).await, "frame bytes");
        assert_malformed(
            &answer_error(response_frame(&serde_json::json!({"x": 1}), b"")).await,
            "not a remoting JSON header",
        );
    }

    #[tokio::test]
    async fn an_answer_to_another_request_or_a_request_is_malformed() {
        let (addr, _broker) = fake_broker(|opaque| response_frame(&success(opaque + 1), b"")).await;
        let err = create_group(&addr, "g", false, LIMIT).await.unwrap_err();
        assert_malformed(&err, "is for request");

        let (addr, _broker) = fake_broker(|opaque| {
            let mut header = success(opaque);
            header["flag"] = 0.into();
            response_frame(&header, b"")
        })
        .await;
        let err = create_group(&addr, "g", false, LIMIT).await.unwrap_err();
        assert_malformed(&err, "not flagged as a response");
    }

    #[tokio::test]
    async fn a_silent_broker_times_out_reading() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let started = std::time::Instant::now();
        let err = create_topic(
            &addr,
            &topic(MessageType::Normal),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                AdminError::Timeout {
                    step: Step::Read,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_broker_that_hangs_up_or_is_absent_is_an_error() {
        // Accepts and closes at once: the answer never comes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        });
        let err = create_group(&addr, "g", false, LIMIT).await.unwrap_err();
        assert!(
            matches!(err, AdminError::Malformed { .. } | AdminError::Io { .. }),
            "{err:?}"
        );

        // Nobody listens: connection refused.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let err = create_group(&closed, "g", false, LIMIT).await.unwrap_err();
        assert!(matches!(err, AdminError::Io { .. }), "{err:?}");
    }
}
