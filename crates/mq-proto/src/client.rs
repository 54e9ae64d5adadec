//! Client side: request builders and response decoders.
//!
//! The builders turn an operation into a complete, signed [`http::Request`] (absolute URI,
//! every header, XML body); the decoders turn a status, headers and body into typed results.
//! The XML bodies themselves are encoded and read by [`crate::wire`], shared with the server:
//! this module holds the HTTP around them (method, URI, query, headers, signature; status,
//! `x-mq-request-id`, `Date`, and which document a status carries).
//! No I/O and no clock: the wall-clock time for the `Date` header is part of the
//! [`RequestContext`].
//!
//! Building a publish request:
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use mq_proto::client::{self, Endpoint, RequestContext};
//! use mq_proto::sign::{self, Credentials};
//! use mq_proto::{InstanceId, Tag, TopicMessage, TopicName};
//!
//! let endpoint: Endpoint = "http://123.mqrest.cn-hangzhou.aliyuncs.com".parse()?;
//! let credentials = Credentials::new("LTAI5tExampleAKID", "ExampleSecretKey1234567890abcd");
//! let instance = InstanceId::new("MQ_INST_1234567890_BXhFbQyM")?;
//! let ctx = RequestContext {
//!     endpoint: &endpoint,
//!     credentials: &credentials,
//!     instance: Some(&instance),
//!     date: UNIX_EPOCH + Duration::from_secs(1_709_837_398),
//!     user_agent: "mq-rust-sdk/0.1",
//! };
//! let message = TopicMessage::new("hello")?.with_tag(Tag::new("TagA")?);
//! let req = client::publish_request(&ctx, &TopicName::new("TopicA")?, &message);
//!
//! assert_eq!(req.method(), http::Method::POST);
//! assert_eq!(req.uri().to_string(),
//!     "http://123.mqrest.cn-hangzhou.aliyuncs.com/topics/TopicA/messages?ns=MQ_INST_1234567890_BXhFbQyM");
//! assert_eq!(req.headers()["date"], "Thu, 07 Mar 2024 18:49:58 GMT");
//! // What was signed, for debugging `SignatureDoesNotMatch`:
//! let sts = sign::request_string_to_sign(&req);
//! assert!(sts.starts_with("POST\n\ntext/xml;charset=utf-8\nThu, 07 Mar 2024 18:49:58 GMT\n"));
//! assert!(std::str::from_utf8(req.body())?.contains("<MessageBody>hello</MessageBody>"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Decoding a consume response:
//!
//! ```
//! use http::{HeaderMap, StatusCode};
//! use mq_proto::client;
//!
//! let body = br#"<?xml version="1.0" encoding="UTF-8"?>
//! <Messages xmlns="http://mq.aliyuncs.com/doc/v1/"><Message>
//!   <MessageId>1E05791C117818B4AAC23B1BB0CE0000</MessageId>
//!   <ReceiptHandle>1E05791C117818B4AAC23B1BB0CE0000-MTcwOTgzODU5ODAwMCAzMDAwMDA=</ReceiptHandle>
//!   <MessageBodyMD5>5D41402ABC4B2A76B9719D911017C592</MessageBodyMD5>
//!   <MessageBody>hello</MessageBody>
//!   <PublishTime>1709837398000</PublishTime><NextConsumeTime>1709838898000</NextConsumeTime>
//!   <FirstConsumeTime>1709838598000</FirstConsumeTime><ConsumedTimes>1</ConsumedTimes>
//!   <MessageTag>TagA</MessageTag><Properties>KEYS:k1|a:1|</Properties>
//! </Message></Messages>"#;
//! let messages = client::decode_consume_response(StatusCode::OK, &HeaderMap::new(), body)?;
//! assert_eq!(messages.len(), 1);
//! assert_eq!(messages[0].body, "hello");
//! assert_eq!(messages[0].key(), Some("k1"));
//! assert!(messages[0].body_md5_matches());
//!
//! // "Nothing to consume" is an empty batch, not an error.
//! let empty = br#"<Error xmlns="http://mq.aliyuncs.com/doc/v1"><Code>MessageNotExist</Code><Message>Message not exist.</Message><RequestId>5DAEF2B9463541AD6E04490F</RequestId><HostId>h</HostId></Error>"#;
//! assert!(client::decode_consume_response(StatusCode::NOT_FOUND, &HeaderMap::new(), empty)?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::message::{Message, TopicMessage};
use crate::ops::{AckKind, ConsumeKind, ErrorCode, HandleFailure};
use crate::sign::{self, Credentials, PROTOCOL_VERSION, SECURITY_TOKEN_HEADER, VERSION_HEADER};
use crate::types::{
    BatchSize, GroupId, HandleBatch, InstanceId, InvalidValue, NamesTooLong, ReceiptHandle,
    TagFilter, TopicName, WaitSeconds, check_subscription_names,
};
use crate::wire::{ack, consume, error, publish};
use crate::xml::{Document, Elem, XmlReader};

// The documents' types, kept at their former paths.
pub use crate::wire::DecodeError;
pub use crate::wire::publish::PublishReceipt;

/// The `Content-Type` the client sends on every request (and signs).
pub const REQUEST_CONTENT_TYPE: &str = "text/xml;charset=utf-8";

/// Query values keep `A-Za-z0-9-._~` (RFC 3986 unreserved); everything else becomes `%XX`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

// ---------------------------------------------------------------------------------------------
// Endpoint and context

/// A service endpoint: `http://host[:port]` or `https://host[:port]`.
///
/// A trailing `/` is dropped; a path, query, fragment, user info or another scheme is
/// rejected (PROTOCOL §1.1).
///
/// ```
/// use mq_proto::client::Endpoint;
/// let e: Endpoint = "https://123.mqrest.cn-hangzhou.aliyuncs.com/".parse()?;
/// assert!(e.is_https());
/// assert_eq!(e.authority(), "123.mqrest.cn-hangzhou.aliyuncs.com");
/// assert_eq!(e.to_string(), "https://123.mqrest.cn-hangzhou.aliyuncs.com");
/// assert!("http://h/path".parse::<Endpoint>().is_err());
/// assert!("ftp://h".parse::<Endpoint>().is_err());
/// # Ok::<(), mq_proto::InvalidValue>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    https: bool,
    authority: Authority,
}

impl Endpoint {
    /// Parses and validates an endpoint.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when `s` is not `http://host[:port]` or `https://host[:port]`: another
    /// scheme, a path, query, fragment or user info, no host, or a bad port.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        let err = |reason: &str| InvalidValue::new("endpoint", reason);
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err("expected http://host[:port] or https://host[:port]"))?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(err("the scheme must be http or https"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(err("must not have a path, query or fragment"));
        }
        if rest.contains('@') {
            return Err(err("must not contain user info"));
        }
        let authority = Authority::from_str(rest).map_err(|e| err(&e.to_string()))?;
        if authority.host().is_empty() {
            return Err(err("the host is missing"));
        }
        let port_ok = match rest.strip_prefix(authority.host()) {
            Some("") => true,
            Some(p) => p
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()),
            None => false,
        };
        if !port_ok {
            return Err(err("the port must be a number from 0 to 65535"));
        }
        Ok(Self { https, authority })
    }

    /// `"http"` or `"https"`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// `host[:port]` as configured (this is also the `Host` header).
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// Whether the endpoint uses TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        self.authority.host()
    }

    /// The port: the explicit one, else 443 for https and 80 for http.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.https { 443 } else { 80 })
    }
}

impl FromStr for Endpoint {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority)
    }
}

/// Everything a request builder needs besides the operation itself.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    /// Where the request goes.
    pub endpoint: &'a Endpoint,
    /// Who signs it.
    pub credentials: &'a Credentials,
    /// The instance (`ns`); `None` for the default instance.
    pub instance: Option<&'a InstanceId>,
    /// Wall-clock time written into `Date` (must be within 15 minutes of the server's).
    pub date: SystemTime,
    /// The `User-Agent` header value.
    pub user_agent: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Request builders

/// A request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An ack, commit or rollback needs at least one receipt handle.
    #[error("at least one receipt handle is required")]
    NoReceiptHandles,
    /// More handles than one request may carry.
    #[error(
        "{count} receipt handles given, at most {} per request",
        HandleBatch::MAX
    )]
    TooManyReceiptHandles {
        /// How many were given.
        count: usize,
    },
    /// Group id, topic and instance id together are longer than the service accepts
    /// (PROTOCOL §6.9).
    #[error(transparent)]
    NamesTooLong(#[from] NamesTooLong),
}

/// Builds the `?a=b&c=d` part once; the same bytes go on the request line and into the
/// signature.
struct QueryBuilder {
    s: String,
}

impl QueryBuilder {
    fn new() -> Self {
        Self {
            s: String::with_capacity(128),
        }
    }

    fn push(&mut self, name: &str, value: &str) {
        self.s.push(if self.s.is_empty() { '?' } else { '&' });
        self.s.push_str(name);
        self.s.push('=');
        self.s.extend(utf8_percent_encode(value, QUERY_VALUE));
    }

    fn push_instance(&mut self, instance: Option<&InstanceId>) {
        if let Some(ns) = instance {
            self.push("ns", ns.as_str());
        }
    }
}

/// Keeps only the bytes a header value may hold (drops control characters).
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let clean: Vec<u8> = s
            .bytes()
            .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            .collect();
        HeaderValue::from_bytes(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

fn build(
    ctx: &RequestContext<'_>,
    method: Method,
    topic: &TopicName,
    query: QueryBuilder,
    body: Bytes,
) -> http::Request<Bytes> {
    let mut target = String::with_capacity(18 + topic.as_str().len() + query.s.len());
    target.push_str("/topics/");
    target.push_str(topic.as_str());
    target.push_str("/messages");
    target.push_str(&query.s);
    signed(ctx, method, target, body)
}

/// A signed request to the admin API of this project's broker (`/admin/…`, JSON answers;
/// not part of the service's protocol): `path_and_query` is sent as given (percent-encode
/// query values), with an empty body, and signed like a protocol call (PROTOCOL §2.5).
///
/// ```
/// use std::time::UNIX_EPOCH;
/// use mq_proto::client::{self, Endpoint, RequestContext};
/// use mq_proto::sign::Credentials;
/// let endpoint: Endpoint = "http://localhost:8080".parse()?;
/// let credentials = Credentials::new("id", "secret");
/// let ctx = RequestContext { endpoint: &endpoint, credentials: &credentials, instance: None,
///     date: UNIX_EPOCH, user_agent: "ua" };
/// let req = client::admin_request(&ctx, http::Method::POST, "/admin/clock?advance_ms=1000");
/// assert_eq!(req.uri(), "http://localhost:8080/admin/clock?advance_ms=1000");
/// assert!(req.headers()["authorization"].to_str()?.starts_with("MQ id:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn admin_request(
    ctx: &RequestContext<'_>,
    method: Method,
    path_and_query: &str,
) -> http::Request<Bytes> {
    signed(ctx, method, path_and_query.to_owned(), Bytes::new())
}

/// The request `method target` with `body`, the protocol headers and its signature.
fn signed(
    ctx: &RequestContext<'_>,
    method: Method,
    target: String,
    body: Bytes,
) -> http::Request<Bytes> {
    let mut headers = HeaderMap::with_capacity(8);
    if let Ok(host) = HeaderValue::from_str(ctx.endpoint.authority()) {
        headers.insert(HOST, host);
    }
    headers.insert(DATE, header_value(&sign::format_http_date(ctx.date)));
    headers.insert(
        HeaderName::from_static(VERSION_HEADER),
        HeaderValue::from_static(PROTOCOL_VERSION),
    );
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(REQUEST_CONTENT_TYPE));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(USER_AGENT, header_value(ctx.user_agent));
    if let Some(token) = ctx.credentials.security_token() {
        headers.insert(
            HeaderName::from_static(SECURITY_TOKEN_HEADER),
            header_value(token),
        );
    }
    let signed = sign::sign_request(ctx.credentials, &method, &headers, &target);
    headers.insert(AUTHORIZATION, header_value(&signed.authorization));

    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = absolute_uri(ctx.endpoint, target);
    *req.headers_mut() = headers;
    req
}

fn absolute_uri(endpoint: &Endpoint, target: String) -> Uri {
    let scheme = if endpoint.https {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    // Every part is validated: names are `[A-Za-z0-9_.-]` and query values are
    // percent-encoded, so the build cannot fail; the fallback only keeps this panic-free.
    PathAndQuery::try_from(target)
        .ok()
        .and_then(|pq| {
            Uri::builder()
                .scheme(scheme)
                .authority(endpoint.authority.clone())
                .path_and_query(pq)
                .build()
                .ok()
        })
        .unwrap_or_default()
}

/// Builds a publish request: `POST /topics/{topic}/messages[?ns=…]` with a `Message` body.
pub fn publish_request(
    ctx: &RequestContext<'_>,
    topic: &TopicName,
    message: &TopicMessage,
) -> http::Request<Bytes> {
    let mut query = QueryBuilder::new();
    query.push_instance(ctx.instance);
    build(
        ctx,
        Method::POST,
        topic,
        query,
        publish::encode_request(message),
    )
}

/// Builds a consume request: `GET /topics/{topic}/messages?consumer=…&ns=…&numOfMessages=…
/// &waitseconds=…&tag=…&trans=…`.
///
/// `waitseconds` is omitted when 0; `tag` is omitted for [`TagFilter::All`] and for half
/// consumes (which do not filter).
///
/// # Errors
///
/// [`EncodeError::NamesTooLong`] when group id, topic and instance id are together longer
/// than [`MAX_SUBSCRIPTION_NAMES_LEN`](crate::MAX_SUBSCRIPTION_NAMES_LEN).
///
/// ```
/// use std::time::UNIX_EPOCH;
/// use mq_proto::client::{self, Endpoint, RequestContext};
/// use mq_proto::sign::Credentials;
/// use mq_proto::{BatchSize, ConsumeKind, GroupId, TopicName, WaitSeconds};
/// let endpoint: Endpoint = "http://localhost:8080".parse()?;
/// let credentials = Credentials::new("id", "secret");
/// let ctx = RequestContext { endpoint: &endpoint, credentials: &credentials, instance: None,
///     date: UNIX_EPOCH, user_agent: "ua" };
/// let req = client::consume_request(&ctx, &TopicName::new("T")?, &GroupId::new("GID_a")?,
///     ConsumeKind::Normal, BatchSize::new(16)?, WaitSeconds::new(30)?, &"TagA||TagB".parse()?)?;
/// assert_eq!(req.uri().path_and_query().unwrap().as_str(),
///     "/topics/T/messages?consumer=GID_a&numOfMessages=16&waitseconds=30&tag=TagA%7C%7CTagB");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn consume_request(
    ctx: &RequestContext<'_>,
    topic: &TopicName,
    group: &GroupId,
    kind: ConsumeKind,
    batch: BatchSize,
    wait: WaitSeconds,
    filter: &TagFilter,
) -> Result<http::Request<Bytes>, EncodeError> {
    check_subscription_names(ctx.instance, topic, group)?;
    let mut query = QueryBuilder::new();
    query.push("consumer", group.as_str());
    query.push_instance(ctx.instance);
    let mut num = itoa_u8(batch.get());
    query.push("numOfMessages", num.as_str());
    if wait.get() > 0 {
        num = itoa_u8(wait.get());
        query.push("waitseconds", num.as_str());
    }
    if kind != ConsumeKind::Half
        && let TagFilter::Tags(_) = filter
    {
        query.push("tag", &filter.to_string());
    }
    if let Some(trans) = kind.trans() {
        query.push("trans", trans);
    }
    Ok(build(ctx, Method::GET, topic, query, Bytes::new()))
}

/// Decimal digits of a small number without allocating.
struct SmallNum {
    buf: [u8; 3],
    len: usize,
}

impl SmallNum {
    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("0")
    }
}

fn itoa_u8(n: u8) -> SmallNum {
    let mut buf = [0u8; 3];
    let digits = [n / 100, n / 10 % 10, n % 10];
    let skip = if n >= 100 {
        0
    } else if n >= 10 {
        1
    } else {
        2
    };
    let mut len = 0;
    for (slot, d) in buf.iter_mut().zip(digits.iter().skip(skip)) {
        *slot = b'0' + d;
        len += 1;
    }
    SmallNum { buf, len }
}

/// Builds an ack, commit or rollback request: `DELETE /topics/{topic}/messages?consumer=…
/// &ns=…[&trans=commit|rollback]` with a `ReceiptHandles` body.
///
/// Takes 1..=[`HandleBatch::MAX`] handles (commit and rollback are used with exactly one in
/// practice; [`HandleBatch::split`] cuts any number into requests).
///
/// # Errors
///
/// [`EncodeError::NoReceiptHandles`] for no handle, [`EncodeError::TooManyReceiptHandles`]
/// for more than [`HandleBatch::MAX`], [`EncodeError::NamesTooLong`] when group id, topic and
/// instance id are together longer than
/// [`MAX_SUBSCRIPTION_NAMES_LEN`](crate::MAX_SUBSCRIPTION_NAMES_LEN).
pub fn ack_request(
    ctx: &RequestContext<'_>,
    topic: &TopicName,
    group: &GroupId,
    kind: AckKind,
    handles: &[ReceiptHandle],
) -> Result<http::Request<Bytes>, EncodeError> {
    if handles.is_empty() {
        return Err(EncodeError::NoReceiptHandles);
    }
    if handles.len() > HandleBatch::MAX {
        return Err(EncodeError::TooManyReceiptHandles {
            count: handles.len(),
        });
    }
    check_subscription_names(ctx.instance, topic, group)?;
    let mut query = QueryBuilder::new();
    query.push("consumer", group.as_str());
    query.push_instance(ctx.instance);
    if let Some(trans) = kind.trans() {
        query.push("trans", trans);
    }
    let body = ack::encode_request(handles);
    Ok(build(ctx, Method::DELETE, topic, query, body))
}

// ---------------------------------------------------------------------------------------------
// Response types

/// An error reported by the service (an `Error` document, or an error status without one).
///
/// ```
/// use mq_proto::ErrorCode;
/// use mq_proto::client::ServiceError;
///
/// let e = ServiceError::new(404, ErrorCode::TopicNotExist, "topic orders does not exist")
///     .with_request_id("5F1A");
/// assert_eq!(e.to_string(), "TopicNotExist (HTTP 404): topic orders does not exist [request id 5F1A]");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// Error code (`Code`); derived from the status when the body has none: `InternalError`
    /// for 5xx, otherwise `HTTP{status}` as [`ErrorCode::Other`].
    pub code: ErrorCode,
    /// Error message (`Message`), or a description of the unexpected body.
    pub message: String,
    /// `RequestId`, else the `x-mq-request-id` header.
    pub request_id: Option<String>,
    /// `HostId`.
    pub host_id: Option<String>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServiceError {}

impl ServiceError {
    /// An error with this status, code and message, without request or host id (for
    /// transports and tests of your own; the decoders fill in every field).
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
            host_id: None,
        }
    }

    /// The same error with this request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

/// Why a response did not yield a result: the service said no, or the response was not
/// understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The service answered with an error.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The response could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

// ---------------------------------------------------------------------------------------------
// Response decoders

/// Decodes a publish response: 2xx with a `Message` document (PROTOCOL §3.3).
///
/// # Errors
///
/// [`ResponseError::Service`] for an error status (with the `Error` document's code,
/// message and request id when there is one); [`ResponseError::Decode`] for a 2xx whose
/// body is not a valid `Message` document.
pub fn decode_publish_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PublishReceipt, ResponseError> {
    if !status.is_success() {
        return Err(failure(status, headers, body));
    }
    let mut r = XmlReader::new(body);
    match r.root().map_err(DecodeError::from)? {
        Elem::Message => {}
        Elem::Error => return Err(read_error(&mut r, status, headers)?.into()),
        _ => return Err(unexpected_root(&r, "Message").into()),
    }
    Ok(publish::decode_response(&mut r)?)
}

/// The response's `Date` header in milliseconds since the Unix epoch (second resolution), or
/// `None` when it is missing or unparsable. This is the server's clock: together with a
/// message's `NextConsumeTime` it tells how long a receipt handle stays valid without
/// consulting the local wall clock (PROTOCOL §6.10, client item 6).
///
/// ```
/// use http::HeaderMap;
/// let mut h = HeaderMap::new();
/// h.insert(http::header::DATE, "Thu, 07 Mar 2024 18:49:58 GMT".parse()?);
/// assert_eq!(mq_proto::client::response_date_ms(&h), Some(1_709_837_398_000));
/// assert_eq!(mq_proto::client::response_date_ms(&HeaderMap::new()), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn response_date_ms(headers: &HeaderMap) -> Option<u64> {
    let date = headers.get(DATE)?.to_str().ok()?;
    let t = sign::parse_http_date(date)?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

/// Decodes a receive or half-message poll answer for the state machines: the entries
/// (messages and poison messages) as [`decode_consume_entries`] gives them, with the server's time from the `Date` header
/// ([`response_date_ms`]).
///
/// # Errors
/// As [`decode_consume_response`].
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// let mut h = HeaderMap::new();
/// h.insert(http::header::DATE, "Thu, 07 Mar 2024 18:49:58 GMT".parse()?);
/// let empty = br#"<Error><Code>MessageNotExist</Code><Message>m</Message></Error>"#;
/// let r = mq_proto::client::decode_received(StatusCode::NOT_FOUND, &h, empty)?;
/// assert!(r.entries.is_empty());
/// assert_eq!(r.server_time_ms, Some(1_709_837_398_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_received(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<crate::machine::Received, ResponseError> {
    decode_received_bytes(status, headers, &Bytes::copy_from_slice(body))
}

/// [`decode_received`] over the response's shared buffer: the messages' text fields are
/// slices of `body`, not copies (see [`decode_consume_entries_bytes`]).
///
/// # Errors
/// As [`decode_consume_response`].
pub fn decode_received_bytes(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<crate::machine::Received, ResponseError> {
    let entries = decode_consume_entries_bytes(status, headers, body)?;
    Ok(crate::machine::Received::with_entries(
        entries,
        response_date_ms(headers),
    ))
}

/// Decodes a consume response: 2xx with a `Messages` document (PROTOCOL §3.4); 404
/// `MessageNotExist` means "no messages" and gives an empty list. Every message must decode:
/// a poison message ([`decode_consume_entries`]) fails the whole response here, with its
/// reason as the [`DecodeError`].
///
/// Decoding is lenient where SDKs are: `Properties` segments the SDKs skip are skipped, a
/// `MessageTag` that is not a valid [`Tag`](crate::Tag) is dropped, and a missing
/// `MessageBodyMD5` leaves `body_md5` empty.
///
/// # Errors
///
/// [`ResponseError::Service`] for an error status other than `MessageNotExist`;
/// [`ResponseError::Decode`] for a body that is not a valid `Messages` document or a
/// message that does not decode.
pub fn decode_consume_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Message>, ResponseError> {
    decode_consume_response_bytes(status, headers, &Bytes::copy_from_slice(body))
}

/// [`decode_consume_response`] over the response's shared buffer: the messages' text fields
/// are slices of `body`, not copies (see [`decode_consume_entries_bytes`]).
///
/// # Errors
///
/// As [`decode_consume_response`].
pub fn decode_consume_response_bytes(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<Message>, ResponseError> {
    decode_consume_entries_bytes(status, headers, body)?
        .into_iter()
        .map(|e| match e {
            consume::Entry::Message(m) => Ok(m),
            consume::Entry::Poison(p) => Err(ResponseError::Decode(p.reason.into())),
        })
        .collect()
}

/// Decodes a consume response like [`decode_consume_response`], keeping every message that
/// decodes when one does not: each `Message` element becomes a
/// [`consume::Entry`], in document order — [`Message`](consume::Entry::Message), or
/// [`Poison`](consume::Entry::Poison) for one the client cannot decode (text that is not
/// UTF-8 or not allowed in XML inside it, a `MessageBodyMD5` that does not match the body
/// (§3.8), bad `Properties` (§4), a missing or invalid required element), with the id,
/// handle, raw bytes and reason of [`PoisonMessage`](consume::PoisonMessage).
///
/// # Errors
///
/// [`ResponseError::Service`] for an error status other than `MessageNotExist`;
/// [`ResponseError::Decode`] for a body that is not a `Messages` document of well-formed XML
/// (bad bytes outside every `Message` element included).
pub fn decode_consume_entries(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<consume::Entry>, ResponseError> {
    decode_consume_entries_bytes(status, headers, &Bytes::copy_from_slice(body))
}

/// [`decode_consume_entries`] over the response's shared buffer (what the `&[u8]` forms copy
/// the body into): each message's body, id, receipt handle, `MessageBodyMD5`, tag and
/// property keys and values are slices of `body` where the text has no entity or character
/// reference, CR or CDATA section (text that has one is resolved into a buffer of its own),
/// and a poison message's `raw` is a slice too. The text is checked exactly as the `&[u8]`
/// form checks it.
///
/// # Errors
///
/// As [`decode_consume_entries`].
pub fn decode_consume_entries_bytes(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<consume::Entry>, ResponseError> {
    if !status.is_success() {
        return match failure(status, headers, body) {
            ResponseError::Service(e) if e.code == ErrorCode::MessageNotExist => Ok(Vec::new()),
            other => Err(other),
        };
    }
    // Damaged text is replaced (same length) so the structure can still be read; where the
    // damage lies decides between one poison message and a failed document.
    let clean = Document::new(body);
    // The shape the service and the broker write, read without the general reader.
    if let Some(entries) = consume::decode_flat(&clean, body) {
        return Ok(entries);
    }
    let substituted = if clean.chars_failed() {
        crate::xml::substitute_invalid_chars(body)
            .map(|(doc, bad)| (Document::new(&Bytes::from(doc)), bad))
    } else {
        None
    };
    let (doc, bad) = match &substituted {
        Some((doc, bad)) => (doc, bad.as_slice()),
        None => (&clean, [].as_slice()),
    };
    let mut r = doc.reader();
    let whole = || {
        crate::xml::char_error(body).map_or_else(
            || DecodeError::Xml("invalid characters".into()),
            DecodeError::from,
        )
    };
    let root = r
        .root()
        .map_err(|e| if bad.is_empty() { e.into() } else { whole() })?;
    match root {
        Elem::Messages => {}
        _ if !bad.is_empty() => return Err(whole().into()),
        Elem::Error => return Err(read_error(&mut r, status, headers)?.into()),
        _ => return Err(unexpected_root(&r, "Messages").into()),
    }
    consume::decode_entries(&mut r, body, bad)
        .map_err(|e| if bad.is_empty() { e } else { whole() }.into())
}

/// Decodes an ack, commit or rollback response (PROTOCOL §3.6): 2xx → no failures; an error
/// status with an `Errors` document → the per-handle failures (handles not listed
/// succeeded); an `Error` document or anything else → [`ResponseError::Service`].
///
/// # Errors
///
/// [`ResponseError::Service`] for an error status without an `Errors` document;
/// [`ResponseError::Decode`] for an `Errors` document that cannot be read.
pub fn decode_ack_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<HandleFailure>, ResponseError> {
    if status.is_success() {
        return Ok(Vec::new());
    }
    if status.is_client_error() || status.is_server_error() {
        let mut r = XmlReader::new(body);
        if let Ok(Elem::Errors) = r.root()
            && let Ok(failures) = error::decode_errors(&mut r, || code_for_status(status))
            && !failures.is_empty()
        {
            return Ok(failures);
        }
    }
    Err(failure(status, headers, body))
}

fn unexpected_root(r: &XmlReader<'_>, expected: &'static str) -> DecodeError {
    DecodeError::UnexpectedRoot {
        expected,
        found: r.root_name().to_owned(),
    }
}

fn request_id_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-mq-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Error code used when the response carries none.
fn code_for_status(status: StatusCode) -> ErrorCode {
    if status.is_server_error() {
        ErrorCode::InternalError
    } else {
        ErrorCode::Other(format!("HTTP{}", status.as_u16()))
    }
}

/// Reads the children of an `Error` root (already entered) into a [`ServiceError`]: the
/// code from the status when the document has none, the request id from the header when the
/// document has none.
fn read_error(
    r: &mut XmlReader<'_>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<ServiceError, DecodeError> {
    let doc = error::decode_error(r, || code_for_status(status))?;
    Ok(ServiceError {
        status: status.as_u16(),
        code: doc.code,
        message: doc.message,
        request_id: doc.request_id.or_else(|| request_id_header(headers)),
        host_id: doc.host_id,
    })
}

/// Longest excerpt of a non-XML error body kept in [`ServiceError::message`].
const BODY_EXCERPT_CHARS: usize = 200;

/// Turns a non-2xx response into an error; never fails and never panics.
fn failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ResponseError {
    if status.is_informational() || status.is_redirection() {
        return DecodeError::BadStatus(status.as_u16()).into();
    }
    let mut r = XmlReader::new(body);
    if let Ok(Elem::Error) = r.root()
        && let Ok(e) = read_error(&mut r, status, headers)
    {
        return e.into();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("");
    let message = if text.is_empty() {
        format!("HTTP {} {reason} with an empty body", status.as_u16())
    } else {
        let excerpt: String = text
            .chars()
            .take(BODY_EXCERPT_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!(
            "HTTP {} {reason} with an unexpected body: {excerpt}",
            status.as_u16()
        )
    };
    ServiceError {
        status: status.as_u16(),
        code: code_for_status(status),
        message,
        request_id: request_id_header(headers),
        host_id: None,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in [
            "http://h",
            "http://h/",
            "HTTPS://h:8443",
            "http://127.0.0.1:80",
            "http://[::1]:9",
        ] {
            assert!(Endpoint::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "h",
            "ftp://h",
            "http://",
            "http://h/p",
            "http://h?x",
            "http://u@h",
            "http://h:",
            "http://h:99999",
            "http://h//",
            "http://h#f",
            "http://a b",
        ] {
            assert!(Endpoint::new(bad).is_err(), "{bad}");
        }
        let e = Endpoint::new("https://h").unwrap();
        assert_eq!((e.scheme(), e.host(), e.port()), ("https", "h", 443));
    }

    #[test]
    fn every_valid_name_makes_a_valid_uri() {
        let endpoint = Endpoint::new("http://[::1]:8080").unwrap();
        for name in ["a", "a.b-c_d", "...", "MQ_INST_1", &"T".repeat(64)] {
            let topic = TopicName::new(name).unwrap();
            let target = format!("/topics/{name}/messages?ns=x");
            let uri = absolute_uri(&endpoint, target.clone());
            assert_eq!(
                uri.path_and_query().map(|p| p.as_str()),
                Some(target.as_str())
            );
            assert_eq!(uri.to_string(), format!("http://[::1]:8080{target}"));
            assert_eq!(topic.as_str(), name);
        }
    }

    #[test]
    fn small_numbers() {
        for n in [0u8, 1, 9, 10, 16, 30, 99, 100, 255] {
            assert_eq!(itoa_u8(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn non_xml_errors_are_service_errors() {
        let mut h = HeaderMap::new();
        h.insert("x-mq-request-id", HeaderValue::from_static("ABC"));
        let e = decode_publish_response(StatusCode::BAD_GATEWAY, &h, b"<html>bad gateway</html>");
        match e {
            Err(ResponseError::Service(s)) => {
                assert_eq!(s.code, ErrorCode::InternalError);
                assert_eq!(s.request_id.as_deref(), Some("ABC"));
                assert!(s.message.contains("bad gateway"));
            }
            other => panic!("{other:?}"),
        }
        let e = decode_ack_response(StatusCode::FOUND, &h, b"");
        assert_eq!(e, Err(ResponseError::Decode(DecodeError::BadStatus(302))));
    }
}
