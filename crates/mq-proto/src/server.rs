//! Server side: request parsing, authentication and response encoding.
//!
//! A broker hands every request to [`authenticate`] (signature, date, key; PROTOCOL §2.5) and
//! [`parse_request`] (path, query, body; PROTOCOL §1, §3), acts on the resulting
//! [`ParsedRequest`], and answers with the document encoders of [`crate::wire`]
//! ([`crate::wire::consume::encode_response`], [`publish::encode_response`],
//! [`error::encode_errors`], [`error::encode_error`]) wrapped by [`response`] or
//! [`error_response`]. The request bodies are read by the same modules
//! ([`crate::wire::publish`], [`crate::wire::ack`]); this module holds the HTTP around them.
//! Nothing here does I/O or reads the clock.
//!
//! Choices where the protocol leaves room (PROTOCOL §8 and the items marked "unknown"):
//!
//! * a method other than `POST`, `GET` or `DELETE` → `InvalidRequestURL`;
//! * a `GET` request-target longer than [`MAX_GET_TARGET_LEN`] bytes → `InvalidRequestURL`;
//! * a query item that cannot be decoded (bad `%XX`, not UTF-8) or a known parameter given
//!   twice → `InvalidQueryString`; unknown parameters are ignored;
//! * a known parameter with a bad value (`consumer`, `ns`, `numOfMessages`, `waitseconds`,
//!   `tag`, `trans`) → `InvalidArgument`; `waitseconds` ≤ 0 (PHP sends −1) or empty means 0;
//! * `tag` is parsed for every consume kind, including half consumes (SDKs never send it
//!   there; the broker decides what it means);
//! * empty `<ReceiptHandle>` elements are skipped; a body without any handle →
//!   `MissingReceiptHandle`;
//! * a well-formed body with the wrong root or a repeated publish field → `InvalidArgument`;
//! * a consume, ack, commit or rollback whose group id, topic and instance id are together
//!   longer than [`MAX_SUBSCRIPTION_NAMES_LEN`](crate::MAX_SUBSCRIPTION_NAMES_LEN) → 400
//!   `NotSupport` (PROTOCOL §6.9; the service's status for it is not documented).
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use http::{HeaderMap, HeaderValue, Method};
//! use mq_proto::server::{self, Operation};
//! use mq_proto::sign;
//!
//! let target = "/topics/T1/messages?consumer=GID_1&numOfMessages=3&ns=MQ_INST_test&waitseconds=3";
//! let now = UNIX_EPOCH + Duration::from_secs(1_709_837_398);
//! let mut headers = HeaderMap::new();
//! headers.insert("x-mq-version", HeaderValue::from_static("2015-06-06"));
//! headers.insert("date", sign::format_http_date(now).parse()?);
//! let sig = sign::signature("testSK", &sign::string_to_sign(&Method::GET, &headers, target));
//! headers.insert("authorization", sign::authorization("testAK", &sig).parse()?);
//!
//! let key = server::authenticate(&Method::GET, target, &headers, now,
//!     |id| (id == "testAK").then(|| "testSK".to_owned()))?;
//! assert_eq!(key, "testAK");
//! let req = server::parse_request(&Method::GET, target, &headers, b"")?;
//! assert_eq!(req.topic.as_str(), "T1");
//! assert!(matches!(req.operation, Operation::Consume { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::message::TopicMessage;
use crate::ops::{AckKind, ConsumeKind, ErrorCode};
use crate::sign::{self, MAX_CLOCK_SKEW, PROTOCOL_VERSION};
use crate::types::{
    BatchSize, GroupId, InstanceId, TagFilter, TopicName, WaitSeconds, check_subscription_names,
};
use crate::wire::error::{self, invalid_argument};
use crate::wire::{ack, publish};

// The documents' encoders and error type, kept at their former paths.
pub use crate::wire::consume::encode_response as encode_messages;
pub use crate::wire::error::{RequestError, encode_error, encode_errors};
pub use crate::wire::publish::encode_response as encode_publish_response;

/// Longest request-target (path and query) accepted on a `GET` (PROTOCOL §1.3, §6.9).
pub const MAX_GET_TARGET_LEN: usize = 1024;

/// Largest request body [`parse_request`] looks at: the 4 MB body limit with room for XML
/// escaping. A broker should stop reading a body beyond this size.
pub const MAX_REQUEST_BODY_LEN: usize = 8 * crate::message::MAX_BODY_LEN;

/// The `Content-Type` of every XML response body.
pub const XML_CONTENT_TYPE: &str = "text/xml;charset=utf-8";

/// Name of the response header carrying the request id (always lower case on the wire).
pub const REQUEST_ID_HEADER: &str = "x-mq-request-id";

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `POST`: publish one message.
    Publish(TopicMessage),
    /// `GET`: consume (normal, orderly or half messages).
    Consume {
        /// The consumer group (`consumer`).
        group: GroupId,
        /// Which consume (`trans` absent, `order` or `pop`).
        kind: ConsumeKind,
        /// `numOfMessages`.
        batch: BatchSize,
        /// `waitseconds` (0 when absent or ≤ 0).
        wait: WaitSeconds,
        /// `tag` (all messages when absent).
        filter: TagFilter,
    },
    /// `DELETE`: ack, commit or rollback.
    Ack {
        /// The group (`consumer`); `None` only for a commit/rollback sent with `consumer=`
        /// empty (a Go SDK bug when no instance is set).
        group: Option<GroupId>,
        /// Which operation (`trans` absent, `commit` or `rollback`).
        kind: AckKind,
        /// The handles as received (1..=16, non-empty, not validated: the broker answers
        /// malformed ones with a per-handle `ReceiptHandleError`).
        handles: Vec<String>,
    },
}

impl Operation {
    /// A short, stable name of the operation, for metrics and logs: `publish`, `consume`,
    /// `consume_orderly` (`trans=order`), `consume_half` (`trans=pop`), `ack`, `commit`,
    /// `rollback`.
    ///
    /// ```
    /// use mq_proto::server::Operation;
    /// use mq_proto::{AckKind, GroupId};
    /// let op = Operation::Ack { group: Some(GroupId::new("GID_a")?), kind: AckKind::Commit, handles: vec!["h".into()] };
    /// assert_eq!(op.name(), "commit");
    /// # Ok::<(), mq_proto::InvalidValue>(())
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Self::Publish(_) => "publish",
            Self::Consume { kind, .. } => match kind {
                ConsumeKind::Normal => "consume",
                ConsumeKind::Orderly => "consume_orderly",
                ConsumeKind::Half => "consume_half",
            },
            Self::Ack { kind, .. } => match kind {
                AckKind::Ack => "ack",
                AckKind::Commit => "commit",
                AckKind::Rollback => "rollback",
            },
        }
    }
}

/// A parsed request: which instance, which topic, what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The instance (`ns`); `None` = the default instance (absent or empty `ns`).
    pub instance: Option<InstanceId>,
    /// The topic from the path.
    pub topic: TopicName,
    /// The operation and its parameters.
    pub operation: Operation,
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Checks a request's `Authorization` and `Date` headers (PROTOCOL §2.5) and returns the
/// AccessKey id.
///
/// In order: `Authorization` missing → `MissingAuthorizationHeader`; repeated or not
/// `MQ id:signature` → `InvalidAuthorizationHeader`; `Date` missing → `MissingDateHeader`;
/// repeated or unparsable → `InvalidDateHeader`; more than 15 minutes away from `now` → `TimeExpired` (408);
/// `secret_for(id)` is `None` → `InvalidAccessKeyId`; signature mismatch (compared in constant
/// time over the string to sign rebuilt from `method`, `headers` and the raw `target`) →
/// `SignatureDoesNotMatch`.
///
/// `secret_for` gives the secret of a key id as text (`String`, `&str`) or, cheaper per
/// request, as a [`SigningKey`](crate::sign::SigningKey) prepared once (`&SigningKey`).
///
/// `target` must be the request-target exactly as received (`path?query`, percent-encoding
/// kept), e.g. `uri.path_and_query().as_str()` in hyper.
///
/// # Errors
///
/// A [`RequestError`] with the service's code and status, as listed above.
pub fn authenticate<K: Into<sign::SigningKey>>(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    now: SystemTime,
    secret_for: impl FnOnce(&str) -> Option<K>,
) -> Result<String, RequestError> {
    let (id, _) = check_signature(method, target, headers, now, |id| {
        secret_for(id).map(Into::<sign::SigningKey>::into)
    })?;
    Ok(id.to_owned())
}

/// [`authenticate`] for a broker that keeps its credentials in a table: `credential_for`
/// gives the credential of a key id (anything holding its
/// [`SigningKey`](crate::sign::SigningKey), such as `&SigningKey` or a reference to the
/// table's entry), and that credential is what a request signed with it returns — no copy of
/// the key id is made. Checks, their order and their answers are those of [`authenticate`].
///
/// ```
/// use std::collections::HashMap;
/// use std::time::{Duration, UNIX_EPOCH};
/// use http::{HeaderMap, Method};
/// use mq_proto::{server, sign};
///
/// let keys = HashMap::from([("testAK", sign::SigningKey::new("testSK"))]);
/// let target = "/topics/T1/messages";
/// let now = UNIX_EPOCH + Duration::from_secs(1_709_837_398);
/// let mut headers = HeaderMap::new();
/// headers.insert("date", sign::format_http_date(now).parse()?);
/// let sig = sign::signature("testSK", &sign::string_to_sign(&Method::POST, &headers, target));
/// headers.insert("authorization", sign::authorization("testAK", &sig).parse()?);
///
/// let key = server::authenticate_key(&Method::POST, target, &headers, now, |id| keys.get(id))?;
/// assert!(std::ptr::eq(key, &keys["testAK"]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`authenticate`].
pub fn authenticate_key<C: AsRef<sign::SigningKey>>(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    now: SystemTime,
    credential_for: impl FnOnce(&str) -> Option<C>,
) -> Result<C, RequestError> {
    check_signature(method, target, headers, now, credential_for).map(|(_, credential)| credential)
}

/// What [`authenticate`] and [`authenticate_key`] check: the key id (borrowed from the
/// `Authorization` header) and the credential `credential_for` gave for it.
fn check_signature<'h, C: AsRef<sign::SigningKey>>(
    method: &Method,
    target: &str,
    headers: &'h HeaderMap,
    now: SystemTime,
    credential_for: impl FnOnce(&str) -> Option<C>,
) -> Result<(&'h str, C), RequestError> {
    let auth = authorization_header(headers)?;
    let (id, provided) = parse_authorization(auth)
        .ok_or_else(|| RequestError::from_code(ErrorCode::InvalidAuthorizationHeader))?;

    let date = single(headers, http::header::DATE)
        .map_err(|()| RequestError::from_code(ErrorCode::InvalidDateHeader))?
        .ok_or_else(|| RequestError::from_code(ErrorCode::MissingDateHeader))?;
    let date = date
        .to_str()
        .ok()
        .and_then(sign::parse_http_date)
        .ok_or_else(|| RequestError::from_code(ErrorCode::InvalidDateHeader))?;
    if sign::abs_diff(now, date) > MAX_CLOCK_SKEW {
        return Err(RequestError::from_code(ErrorCode::TimeExpired));
    }

    let credential =
        credential_for(id).ok_or_else(|| RequestError::from_code(ErrorCode::InvalidAccessKeyId))?;
    let string_to_sign = sign::string_to_sign(method, headers, target);
    if !credential.as_ref().verify(&string_to_sign, provided) {
        return Err(RequestError::from_code(ErrorCode::SignatureDoesNotMatch));
    }
    Ok((id, credential))
}

/// The request's one `Authorization` header (the signature's, or an admin bearer token).
///
/// # Errors
///
/// `MissingAuthorizationHeader` without one; `InvalidAuthorizationHeader` with more than
/// one (which one counts would be the server's guess: the first one used to).
pub fn authorization_header(headers: &HeaderMap) -> Result<&HeaderValue, RequestError> {
    single(headers, http::header::AUTHORIZATION)
        .map_err(|()| RequestError::from_code(ErrorCode::InvalidAuthorizationHeader))?
        .ok_or_else(|| RequestError::from_code(ErrorCode::MissingAuthorizationHeader))
}

/// The header `name` if it is given at most once; `Err` when it is repeated.
fn single(headers: &HeaderMap, name: http::header::HeaderName) -> Result<Option<&HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        _ => Err(()),
    }
}

/// Splits `MQ {id}:{signature}` (`^MQ ([^:]+):(.+)$` after trimming spaces and tabs).
fn parse_authorization(value: &HeaderValue) -> Option<(&str, &str)> {
    let value = value.to_str().ok()?.trim_matches([' ', '\t']);
    let (id, sig) = value.strip_prefix("MQ ")?.split_once(':')?;
    (!id.is_empty() && !sig.is_empty()).then_some((id, sig))
}

// ---------------------------------------------------------------------------------------------
// Request parsing

/// Parses a request into a [`ParsedRequest`] (PROTOCOL §1, §3.2, §3.5).
///
/// `target` is the raw request-target (`/topics/{topic}/messages?query`). Query values are
/// decoded with form rules (`%XX` in either case, `+` = space, UTF-8) and their order does not
/// matter. If a `Content-MD5` header is present it must be the base64 of the lower-case hex
/// MD5 of `body` (Go, Node) or of the raw digest, else `InvalidDigest`. See the module
/// documentation for the error chosen in each case.
///
/// # Errors
///
/// A [`RequestError`] with the service's code and status (unknown path or method, bad
/// query values, malformed or oversized body, bad `Content-MD5`, invalid message),
/// as the module documentation lists.
pub fn parse_request(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ParsedRequest, RequestError> {
    parse_request_bytes(method, target, headers, &Bytes::copy_from_slice(body))
}

/// [`parse_request`] over the request body's shared buffer (what the `&[u8]` form copies the
/// body into): a published message's body, tag and property keys and values are slices of
/// `body` where their text has no entity or character reference, CR or CDATA section, so
/// [`TopicMessage::body_bytes`](crate::TopicMessage::body_bytes) shares the request's
/// buffer. Checks and answers are those of [`parse_request`].
///
/// # Errors
///
/// As [`parse_request`].
pub fn parse_request_bytes(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<ParsedRequest, RequestError> {
    if *method == Method::GET && target.len() > MAX_GET_TARGET_LEN {
        return Err(invalid_url(format_args!(
            "the request line is longer than {MAX_GET_TARGET_LEN} characters."
        )));
    }
    // A byte search, not `split_once`: a target is short and `?` is ASCII.
    let (path, query) = match target.bytes().position(|b| b == b'?') {
        Some(at) => (
            target.get(..at).unwrap_or_default(),
            target.get(at + 1..).unwrap_or_default(),
        ),
        None => (target, ""),
    };
    let topic = parse_path(path)?;
    if !matches!(*method, Method::GET | Method::POST | Method::DELETE) {
        return Err(invalid_url(format_args!(
            "method {method} is not supported on {path}."
        )));
    }
    let q = Query::parse(query)?;
    let instance = match q.ns.as_deref() {
        None | Some("") => None,
        Some(ns) => Some(InstanceId::new(ns).map_err(|e| param_error("ns", &e))?),
    };
    check_content_md5(headers, body)?;
    if body.len() > MAX_REQUEST_BODY_LEN {
        return Err(invalid_argument(format!(
            "The value of MessageBody should between 1 and {} bytes.",
            crate::message::MAX_BODY_LEN
        )));
    }

    let operation = if *method == Method::POST {
        Operation::Publish(publish::decode_request(body)?)
    } else if *method == Method::GET {
        parse_consume(&q)?
    } else {
        parse_ack(&q, body)?
    };
    if let Operation::Consume { group, .. }
    | Operation::Ack {
        group: Some(group), ..
    } = &operation
    {
        check_subscription_names(instance.as_ref(), &topic, group)
            .map_err(|e| RequestError::new(ErrorCode::NotSupport, format!("{e}.")))?;
    }
    Ok(ParsedRequest {
        instance,
        topic,
        operation,
    })
}

fn parse_path(path: &str) -> Result<TopicName, RequestError> {
    let name = path
        .strip_prefix("/topics/")
        .and_then(|rest| rest.strip_suffix("/messages"))
        .filter(|name| !name.bytes().any(|b| b == b'/'))
        .ok_or_else(|| {
            invalid_url(format_args!(
                "{path:?} is not /topics/{{TopicName}}/messages."
            ))
        })?;
    TopicName::new(name).map_err(invalid_url)
}

fn param_error(name: &str, e: &dyn fmt::Display) -> RequestError {
    invalid_argument(format!("The value of {name} is invalid: {e}."))
}

/// The known query parameters, decoded.
#[derive(Default)]
struct Query<'a> {
    consumer: Option<Cow<'a, str>>,
    ns: Option<Cow<'a, str>>,
    num_of_messages: Option<Cow<'a, str>>,
    waitseconds: Option<Cow<'a, str>>,
    tag: Option<Cow<'a, str>>,
    trans: Option<Cow<'a, str>>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Result<Self, RequestError> {
        let mut q = Self::default();
        for item in query.split('&').filter(|s| !s.is_empty()) {
            let (raw_name, raw_value) = item.split_once('=').unwrap_or((item, ""));
            let name = form_decode(raw_name).ok_or_else(|| invalid_query(item))?;
            let slot = match &*name {
                "consumer" => &mut q.consumer,
                "ns" => &mut q.ns,
                "numOfMessages" => &mut q.num_of_messages,
                "waitseconds" => &mut q.waitseconds,
                "tag" => &mut q.tag,
                "trans" => &mut q.trans,
                _ => continue,
            };
            if slot.is_some() {
                return Err(invalid_query(item));
            }
            *slot = Some(form_decode(raw_value).ok_or_else(|| invalid_query(item))?);
        }
        Ok(q)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a query component with form rules; `None` for a bad escape or non-UTF-8 result.
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
                let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn required_group(q: &Query<'_>) -> Result<GroupId, RequestError> {
    match q.consumer.as_deref() {
        None | Some("") => Err(invalid_argument("The value of consumer is required.")),
        Some(c) => GroupId::new(c).map_err(|e| param_error("consumer", &e)),
    }
}

fn parse_consume(q: &Query<'_>) -> Result<Operation, RequestError> {
    let group = required_group(q)?;
    let kind = match q.trans.as_deref() {
        None | Some("") => ConsumeKind::Normal,
        Some("order") => ConsumeKind::Orderly,
        Some("pop") => ConsumeKind::Half,
        Some(other) => return Err(param_error("trans", &format_args!("{other:?}"))),
    };
    let batch = q
        .num_of_messages
        .as_deref()
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|n| u8::try_from(n).ok())
        .and_then(|n| BatchSize::new(n).ok())
        .ok_or_else(|| invalid_argument("The value of numOfMessages should between 1 and 16."))?;
    let wait_error =
        || invalid_argument("The value of waitseconds should between 0 and 30 seconds.");
    let wait = match q.waitseconds.as_deref() {
        None | Some("") => WaitSeconds::default(),
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| wait_error())?;
            let n = u8::try_from(n.max(0)).map_err(|_| wait_error())?;
            WaitSeconds::new(n).map_err(|_| wait_error())?
        }
    };
    let filter = match q.tag.as_deref() {
        None => TagFilter::All,
        Some(t) => t.parse().map_err(|e| param_error("tag", &e))?,
    };
    Ok(Operation::Consume {
        group,
        kind,
        batch,
        wait,
        filter,
    })
}

fn parse_ack(q: &Query<'_>, body: &Bytes) -> Result<Operation, RequestError> {
    let kind = match q.trans.as_deref() {
        None | Some("") => AckKind::Ack,
        Some("commit") => AckKind::Commit,
        Some("rollback") => AckKind::Rollback,
        Some(other) => return Err(param_error("trans", &format_args!("{other:?}"))),
    };
    let group = match (kind, q.consumer.as_deref()) {
        (AckKind::Commit | AckKind::Rollback, Some("")) => None,
        _ => Some(required_group(q)?),
    };
    let handles = ack::decode_request(body)?;
    Ok(Operation::Ack {
        group,
        kind,
        handles,
    })
}

/// Checks a request's `Content-MD5` header, if present, against `body`: it must be the base64
/// of the lower-case hex MD5 of `body` (Go, Node) or of the raw 16-byte digest (PROTOCOL
/// §2.5, §2.6: the signature covers the header, not the body, so only this check ties the body
/// to the signature). [`parse_request`] calls it; a server reading other signed bodies
/// calls it too.
///
/// # Errors
///
/// `InvalidDigest` (400) when the header is not base64 or does not match `body`.
pub fn check_content_md5(headers: &HeaderMap, body: &[u8]) -> Result<(), RequestError> {
    // A `HeaderName` rather than a `&str`: the name is not parsed again for each request.
    static CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");
    let Some(value) = headers.get(&CONTENT_MD5) else {
        return Ok(());
    };
    let invalid = || RequestError::from_code(ErrorCode::InvalidDigest);
    let decoded = BASE64
        .decode(value.as_bytes().trim_ascii())
        .map_err(|_| invalid())?;
    let digest = crate::message::md5(body);
    let ok = match decoded.len() {
        16 => decoded.as_slice() == digest.as_slice(),
        32 => decoded.chunks_exact(2).zip(digest.iter()).all(|(pair, b)| {
            let hex = [pair.first().copied(), pair.get(1).copied()];
            match hex {
                [Some(h), Some(l)] => {
                    hex_value(h).zip(hex_value(l)).map(|(h, l)| h << 4 | l) == Some(*b)
                }
                _ => false,
            }
        }),
        _ => false,
    };
    if ok { Ok(()) } else { Err(invalid()) }
}

fn invalid_url(detail: impl fmt::Display) -> RequestError {
    RequestError::new(
        ErrorCode::InvalidRequestUrl,
        format!("Http request URL format invalid: {detail}"),
    )
}

fn invalid_query(item: &str) -> RequestError {
    RequestError::new(
        ErrorCode::InvalidQueryString,
        format!("Http request URL contains invalid querystring item \"{item}\"."),
    )
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Wraps a body into a response with the protocol headers (PROTOCOL §5.2): `x-mq-request-id`
/// (lower case), `x-mq-version: 2015-06-06`, `Content-Type: text/xml;charset=utf-8` when the
/// body is not empty, and `Content-Length`. The caller adds `Date` and `Connection` if wanted.
///
/// ```
/// use bytes::Bytes;
/// use http::StatusCode;
/// let r = mq_proto::server::response(StatusCode::NO_CONTENT, Bytes::new(), "00000000000000000000002A");
/// assert_eq!(r.headers()["x-mq-request-id"], "00000000000000000000002A");
/// assert_eq!(r.headers()["content-length"], "0");
/// assert!(r.headers().get("content-type").is_none());
/// ```
pub fn response(status: StatusCode, body: Bytes, request_id: &str) -> http::Response<Bytes> {
    let len = body.len();
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    let id = HeaderValue::from_str(request_id)
        .unwrap_or_else(|_| HeaderValue::from_static("000000000000000000000000"));
    headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
    headers.insert(
        HeaderName::from_static(sign::VERSION_HEADER),
        HeaderValue::from_static(PROTOCOL_VERSION),
    );
    if len > 0 {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// An error response: status from the code, `Error` body (see [`error::encode_error`]).
pub fn error_response(
    err: &RequestError,
    request_id: &str,
    host_id: &str,
) -> http::Response<Bytes> {
    let body = error::encode_error(&err.code, &err.message, request_id, host_id);
    response(err.status(), body, request_id)
}

/// A request id: 24 upper-case hexadecimal characters derived from `n` (PROTOCOL §5.2).
///
/// Deterministic and injective: distinct numbers give distinct ids. Feed it a counter mixed
/// with a per-process seed.
///
/// ```
/// let id = mq_proto::server::request_id(1);
/// assert_eq!(id.len(), 24);
/// assert!(id.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
/// assert_ne!(id, mq_proto::server::request_id(2));
/// ```
pub fn request_id(n: u64) -> String {
    // SplitMix64 finaliser: a bijection on u64, so the first 16 digits are unique per `n`.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let tail = crate::text::hex_u64(mix(n ^ 0xA5A5_5A5A_C3C3_3C3C));
    let mut id = String::with_capacity(24);
    crate::text::push_ascii(&mut id, &crate::text::hex_u64(mix(n)));
    // The high 32 bits: the first 8 digits.
    crate::text::push_ascii(&mut id, &tail[..8]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Result<ParsedRequest, RequestError> {
        parse_request(&Method::GET, target, &HeaderMap::new(), b"")
    }

    #[test]
    fn query_decoding_is_order_free_and_form_based() {
        let a =
            get("/topics/T/messages?numOfMessages=2&consumer=G&tag=A%7c%7CB+C%2Bd&x=%zz").unwrap();
        match a.operation {
            Operation::Consume { filter, .. } => assert_eq!(filter.to_string(), "A||B C+d"),
            other => panic!("{other:?}"),
        }
        let ok = get("/topics/T/messages?tag=A%7c%7CB&numOfMessages=2&consumer=G&waitseconds=-1")
            .unwrap();
        match ok.operation {
            Operation::Consume {
                filter,
                wait,
                batch,
                ..
            } => {
                assert_eq!(filter.to_string(), "A||B");
                assert_eq!(wait.get(), 0);
                assert_eq!(batch.get(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(form_decode("a+b%2B%e4%b8%ad").as_deref(), Some("a b+中"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%e4"), None);
    }

    #[test]
    fn consume_parameter_errors() {
        let code = |t: &str| get(t).unwrap_err().code;
        // A bad tag filter is answered with the filter parse's own words (one place).
        let e = get("/topics/T/messages?consumer=G&numOfMessages=1&tag=A%7C%7C").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::InvalidArgument,
                "The value of tag is invalid: invalid tag filter: \"A||\" has an empty tag after its last `||`."
            )
        );
        assert_eq!(
            code("/topics/T/messages?consumer=G"),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code("/topics/T/messages?consumer=G&numOfMessages=17"),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code("/topics/T/messages?consumer=G&numOfMessages=1&waitseconds=31"),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code("/topics/T/messages?consumer=G&numOfMessages=1&trans=commit"),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code("/topics/T/messages?consumer=G&consumer=G&numOfMessages=1"),
            ErrorCode::InvalidQueryString
        );
        assert_eq!(
            code("/topics/T/messages?consumer=&numOfMessages=1"),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code("/topics/T/message?consumer=G"),
            ErrorCode::InvalidRequestUrl
        );
        assert_eq!(code("/topics/a/b/messages"), ErrorCode::InvalidRequestUrl);
        let long = format!(
            "/topics/T/messages?consumer=G&numOfMessages=1&x={}",
            "a".repeat(1000)
        );
        assert_eq!(code(&long), ErrorCode::InvalidRequestUrl);
        let msg = get("/topics/T/messages?consumer=G&numOfMessages=0")
            .unwrap_err()
            .message;
        assert_eq!(msg, "The value of numOfMessages should between 1 and 16.");
    }

    #[test]
    fn ack_bodies() {
        let del = |target: &str, body: &str| {
            parse_request(&Method::DELETE, target, &HeaderMap::new(), body.as_bytes())
        };
        let t = "/topics/T/messages?consumer=G";
        assert_eq!(
            del(t, "").unwrap_err().code,
            ErrorCode::MissingReceiptHandle
        );
        assert_eq!(
            del(t, "<ReceiptHandles/>").unwrap_err().code,
            ErrorCode::MissingReceiptHandle
        );
        let many = format!(
            "<ReceiptHandles>{}</ReceiptHandles>",
            "<ReceiptHandle>h</ReceiptHandle>".repeat(17)
        );
        assert_eq!(del(t, &many).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(
            del(t, "<ReceiptHandles>").unwrap_err().code,
            ErrorCode::MalformedXml
        );
        let go_bug = del(
            "/topics/T/messages?consumer=&trans=commit",
            "<ReceiptHandles><ReceiptHandle> h-1 </ReceiptHandle></ReceiptHandles>",
        )
        .unwrap();
        assert_eq!(
            go_bug.operation,
            Operation::Ack {
                group: None,
                kind: AckKind::Commit,
                handles: vec!["h-1".into()]
            }
        );
        assert_eq!(
            del(
                "/topics/T/messages?consumer=",
                "<ReceiptHandles><ReceiptHandle>h</ReceiptHandle></ReceiptHandles>"
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn publish_bodies() {
        let post = |body: &str| {
            parse_request(
                &Method::POST,
                "/topics/T/messages",
                &HeaderMap::new(),
                body.as_bytes(),
            )
        };
        let m =
            post("<Message><Properties>a:1</Properties><MessageBody> x </MessageBody></Message>")
                .unwrap();
        match m.operation {
            Operation::Publish(msg) => {
                assert_eq!(msg.body(), " x ");
                assert_eq!(msg.properties().get("a"), Some("1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            post("<Message></Message>").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            post("<Message><MessageBody></MessageBody></Message>")
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            post("<Message><MessageBody>").unwrap_err().code,
            ErrorCode::MalformedXml
        );
        assert_eq!(post("").unwrap_err().code, ErrorCode::MalformedXml);
        let bad_props =
            post("<Message><MessageBody>x</MessageBody><Properties>novalue</Properties></Message>")
                .unwrap_err();
        assert_eq!(bad_props.code, ErrorCode::InvalidArgument);
        assert!(
            bad_props.message.contains("Properties"),
            "{}",
            bad_props.message
        );
        let big = format!(
            "<Message><MessageBody>{}</MessageBody><Properties>__TransCheckT:10</Properties></Message>",
            "x".repeat(64 * 1024 + 1)
        );
        assert_eq!(
            post(&big).unwrap_err().message,
            "The value of MessageBody should between 1 and 65536 bytes."
        );
    }

    #[test]
    fn content_md5_forms() {
        let body = b"<ReceiptHandles><ReceiptHandle>h</ReceiptHandle></ReceiptHandles>";
        let digest = crate::message::md5(body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        for value in [BASE64.encode(hex.as_bytes()), BASE64.encode(digest)] {
            let mut h = HeaderMap::new();
            h.insert("content-md5", value.parse().unwrap());
            parse_request(&Method::DELETE, "/topics/T/messages?consumer=G", &h, body).unwrap();
        }
        let mut h = HeaderMap::new();
        h.insert(
            "content-md5",
            BASE64.encode("0".repeat(32)).parse().unwrap(),
        );
        let err = parse_request(&Method::DELETE, "/topics/T/messages?consumer=G", &h, body);
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidDigest);
    }

    #[test]
    fn other_methods_are_rejected() {
        let err = parse_request(&Method::PUT, "/topics/T/messages", &HeaderMap::new(), b"");
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidRequestUrl);
    }

    #[test]
    fn responses_carry_protocol_headers() {
        let err = RequestError::from_code(ErrorCode::TimeExpired);
        let r = error_response(&err, &request_id(7), "http://h");
        assert_eq!(r.status().as_u16(), 408);
        assert_eq!(r.headers()["x-mq-version"], "2015-06-06");
        assert_eq!(r.headers()["content-type"], XML_CONTENT_TYPE);
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            r.body().len().to_string()
        );
    }
}
