//! A raw HTTP/1.1 client for the hostile-input and load tests: requests are plain bytes
//! (signed with `mq_proto::sign` where they should be valid, hand-written where they must
//! not be), written to a `TcpStream`, and responses parsed just enough to check status, error
//! code and connection handling. Every byte on the wire is under the test's control.
//! Also: a guard for a spawned `mq-broker` process and its memory use.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mq_proto::client::{self, Endpoint, RequestContext};
use mq_proto::sign::{self, Credentials};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, InstanceId, ReceiptHandle, TagFilter, TopicMessage,
    TopicName, WaitSeconds,
};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Header names exactly as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an `<Error>` body or the first `<ErrorCode>` of an `<Errors>` body.
    pub fn code(&self) -> Option<String> {
        let text = self.text();
        ["Code", "ErrorCode"].iter().find_map(|tag| {
            let open = format!("<{tag}>");
            let start = text.find(&open)? + open.len();
            let end = text[start..].find('<')? + start;
            Some(text[start..end].to_owned())
        })
    }

    /// [`Resp::code`], panicking when the body has none.
    pub fn expect_code(&self) -> String {
        self.code()
            .unwrap_or_else(|| panic!("no error code in {:?}", self.text()))
    }

    /// Asserts an error answer: `status` with the error code `code` (see [`Resp::code`]).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.expect_code().as_str()), (status, code));
    }

    /// Whether the server announced that it closes the connection.
    pub fn close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Whether this is a protocol answer (not one of hyper's own bare error responses):
    /// lower-case `x-mq-request-id` of 24 upper-case hex digits and `x-mq-version`.
    pub fn is_protocol_answer(&self) -> bool {
        let id_ok = self
            .headers
            .iter()
            .any(|(n, v)| n == "x-mq-request-id" && is_request_id(v));
        let version_ok = self
            .headers
            .iter()
            .any(|(n, v)| n == "x-mq-version" && v == "2015-06-06");
        id_ok && version_ok
    }

    /// Asserts the headers every protocol response carries (PROTOCOL §5.2, §6.10 item 6).
    pub fn assert_protocol_headers(&self) {
        let id = self
            .headers
            .iter()
            .find(|(n, _)| n == "x-mq-request-id")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no lower-case x-mq-request-id in {:?}", self.headers));
        assert!(is_request_id(id), "request id {id:?}");
        assert!(
            self.headers
                .iter()
                .any(|(n, v)| n == "x-mq-version" && v == "2015-06-06"),
            "{:?}",
            self.headers
        );
        if self.status == 204 {
            // RFC 9110 §8.6: no Content-Length on a 204 (hyper drops it).
            assert!(matches!(self.header("content-length"), None | Some("0")));
        } else {
            assert_eq!(
                self.header("content-length"),
                Some(self.body.len().to_string().as_str())
            );
        }
        if !self.body.is_empty() && self.header("content-type") != Some("application/json") {
            let ct = self.header("content-type");
            assert!(
                ct == Some("text/xml;charset=utf-8")
                    || ct == Some("text/plain;charset=utf-8")
                    || ct == Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                "content type {ct:?}"
            );
        }
        if self.status >= 400 {
            let text = self.text();
            assert!(
                text.contains("<Error xmlns=\"http://mq.aliyuncs.com/doc/v1\">")
                    || text.contains("<Errors xmlns=\"http://mq.aliyuncs.com/doc/v1\">"),
                "{text}"
            );
        }
    }
}

/// 24 upper-case hex digits.
fn is_request_id(id: &str) -> bool {
    id.len() == 24
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

/// Why reading a response stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The connection closed (cleanly or by reset) before a complete response.
    Closed,
    /// Bytes that are not an HTTP/1.1 response.
    Garbage(String),
}

/// Reads responses from the reading half of a connection.
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.inner.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response (a `1xx` or `204` has no body; one without `Content-Length` has
    /// none either).
    pub async fn read_response(&mut self) -> Result<Resp, ReadError> {
        self.read(false).await
    }

    /// [`Reader::read_response`] that also takes as [`ReadError::Garbage`] what a well-formed
    /// answer never is: a head that is not UTF-8, a body without `Content-Length`, and a
    /// connection that closes inside a body.
    pub async fn read_strict_response(&mut self) -> Result<Resp, ReadError> {
        self.read(true).await
    }

    async fn read(&mut self, strict: bool) -> Result<Resp, ReadError> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                return Err(ReadError::Closed);
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        if strict && std::str::from_utf8(&self.buf[..head_end]).is_err() {
            return Err(ReadError::Garbage(format!("head not UTF-8: {head:?}")));
        }
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Garbage(status_line.to_owned()))?;
        let mut headers = Vec::new();
        for line in lines {
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Garbage(line.to_owned()))?;
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        let len: usize = match resp.header("content-length") {
            Some(v) => v
                .parse()
                .map_err(|_| ReadError::Garbage(format!("content-length {v}")))?,
            None if strict => return Err(ReadError::Garbage("no content-length".to_owned())),
            None => 0,
        };
        while self.buf.len() < len {
            if !self.fill().await {
                return Err(if strict {
                    ReadError::Garbage("connection closed inside a body".to_owned())
                } else {
                    ReadError::Closed
                });
            }
        }
        resp.body = self.buf.drain(..len).collect();
        Ok(resp)
    }

    /// [`Reader::read_response`] bounded by `within` (`None` on timeout).
    pub async fn response_within(&mut self, within: Duration) -> Option<Result<Resp, ReadError>> {
        tokio::time::timeout(within, self.read_response())
            .await
            .ok()
    }

    /// Whether the server closes the connection within `within` (reading and discarding
    /// whatever arrives first).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.fill().await {} })
            .await
            .is_ok()
    }
}

/// One client connection.
pub struct Conn {
    pub reader: Reader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        Self::try_open(addr).await.expect("connect")
    }

    pub async fn try_open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(Self::from_stream(stream))
    }

    /// [`Conn::open`] with Nagle's algorithm left on (no `TCP_NODELAY`), as a client that
    /// does not set it.
    pub async fn open_nagle(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    fn from_stream(stream: TcpStream) -> Self {
        let (r, w) = stream.into_split();
        Self {
            reader: Reader::new(r),
            writer: w,
        }
    }

    /// Writes bytes; `false` if the connection is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).await.is_ok()
    }

    /// Writes bytes, panicking if the connection is gone.
    pub async fn expect_send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Reads one response ([`Reader::read_strict_response`]); `None` if the connection closes
    /// first, a panic on anything else that is not a well-formed response.
    pub async fn try_response(&mut self) -> Option<Resp> {
        match self.reader.read_strict_response().await {
            Ok(resp) => Some(resp),
            Err(ReadError::Closed) => None,
            Err(ReadError::Garbage(what)) => panic!("not a well-formed response: {what}"),
        }
    }

    /// Writes a request and reads its response ([`Conn::try_response`]); `None` if the server
    /// closed the connection.
    pub async fn try_roundtrip(&mut self, request: &[u8]) -> Option<Resp> {
        if !self.send(request).await {
            return None;
        }
        self.try_response().await
    }

    /// [`Conn::try_response`] within 40 s (longer than the longest poll), panicking on a
    /// timeout or a closed connection.
    pub async fn expect_response(&mut self) -> Resp {
        tokio::time::timeout(Duration::from_secs(40), self.try_response())
            .await
            .expect("response in time")
            .expect("a response before the connection closed")
    }

    /// Writes a request, reads its response ([`Conn::expect_response`]) and asserts the
    /// headers of a protocol answer ([`Resp::assert_protocol_headers`]).
    pub async fn protocol_roundtrip(&mut self, request: &[u8]) -> Resp {
        self.expect_send(request).await;
        let resp = self.expect_response().await;
        resp.assert_protocol_headers();
        resp
    }

    /// [`Reader::closed_within`].
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        self.reader.closed_within(within).await
    }

    /// Writes a request and reads its response (bounded by 10 s).
    pub async fn roundtrip(&mut self, request: &[u8]) -> Result<Resp, ReadError> {
        self.roundtrip_within(request, Duration::from_secs(10))
            .await
    }

    /// Writes a request and reads its response, bounded by `within`.
    pub async fn roundtrip_within(
        &mut self,
        request: &[u8],
        within: Duration,
    ) -> Result<Resp, ReadError> {
        if !self.send(request).await {
            return Err(ReadError::Closed);
        }
        self.reader
            .response_within(within)
            .await
            .unwrap_or(Err(ReadError::Garbage(format!(
                "no response within {within:?}"
            ))))
    }
}

/// Serialises a built request (origin-form target, headers as given).
pub fn wire(req: &http::Request<Bytes>) -> Vec<u8> {
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method(), target).into_bytes();
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body());
    out
}

/// A request written header by header, so that any header can be left out, repeated or
/// broken, with an optional signature computed over the headers present at signing time.
#[derive(Clone)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// `Host`, `x-mq-version`, `Date` (now), `Content-Type` when there is a body, and
    /// `Content-Length`; not signed yet.
    pub fn new(method: &str, target: &str, body: &[u8]) -> Self {
        let mut r = Self {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: body.to_vec(),
        };
        r.set("host", "127.0.0.1");
        r.set("x-mq-version", "2015-06-06");
        r.set("date", &sign::format_http_date(SystemTime::now()));
        if !body.is_empty() {
            r.set("content-type", "text/xml;charset=UTF-8");
        }
        r.set("content-length", &body.len().to_string());
        r
    }

    /// Replaces (or adds) a header.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.set_bytes(name, value.as_bytes())
    }

    /// Replaces (or adds) a header with arbitrary bytes.
    pub fn set_bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.remove(name);
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    /// Adds a header even if one of that name exists.
    pub fn add(&mut self, name: &str, value: &str) -> &mut Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Signs the request as it is now with `(ak, sk)` and sets `Authorization`.
    pub fn sign(&mut self, ak: &str, sk: &str) -> &mut Self {
        let auth = self.authorization(ak, sk);
        self.set("authorization", &auth)
    }

    /// The `Authorization` value for the request as it is now.
    pub fn authorization(&self, ak: &str, sk: &str) -> String {
        let mut headers = HeaderMap::new();
        for (n, v) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                headers.append(n, v);
            }
        }
        let method = Method::from_bytes(self.method.as_bytes()).unwrap_or(Method::GET);
        sign::sign_request(&Credentials::new(ak, sk), &method, &headers, &self.target).authorization
    }

    /// The bytes on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Valid, signed protocol requests built with `mq_proto::client` (what a real client sends).
pub struct Api {
    endpoint: Endpoint,
    credentials: Credentials,
    instance: Option<InstanceId>,
}

impl Api {
    pub fn new(addr: SocketAddr, ak: &str, sk: &str, instance: Option<&str>) -> Self {
        Self {
            endpoint: Endpoint::new(&format!("http://{addr}")).expect("endpoint"),
            credentials: Credentials::new(ak, sk),
            instance: instance.map(|i| InstanceId::new(i).expect("instance")),
        }
    }

    fn ctx(&self) -> RequestContext<'_> {
        RequestContext {
            endpoint: &self.endpoint,
            credentials: &self.credentials,
            instance: self.instance.as_ref(),
            date: SystemTime::now(),
            user_agent: "mq-broker-raw-test",
        }
    }

    pub fn publish(&self, topic: &str, body: &str) -> Vec<u8> {
        self.publish_message(topic, &TopicMessage::new(body).expect("message"))
    }

    pub fn publish_message(&self, topic: &str, message: &TopicMessage) -> Vec<u8> {
        wire(&client::publish_request(
            &self.ctx(),
            &TopicName::new(topic).expect("topic"),
            message,
        ))
    }

    pub fn consume(&self, topic: &str, group: &str, batch: u8, wait: u8) -> Vec<u8> {
        wire(
            &client::consume_request(
                &self.ctx(),
                &TopicName::new(topic).expect("topic"),
                &GroupId::new(group).expect("group"),
                ConsumeKind::Normal,
                BatchSize::new(batch).expect("batch"),
                WaitSeconds::new(wait).expect("wait"),
                &TagFilter::All,
            )
            .expect("consume request"),
        )
    }

    pub fn ack(&self, topic: &str, group: &str, handles: &[&str]) -> Vec<u8> {
        let handles: Vec<ReceiptHandle> = handles
            .iter()
            .map(|h| ReceiptHandle::new(*h).expect("handle"))
            .collect();
        wire(
            &client::ack_request(
                &self.ctx(),
                &TopicName::new(topic).expect("topic"),
                &GroupId::new(group).expect("group"),
                AckKind::Ack,
                &handles,
            )
            .expect("ack request"),
        )
    }
}

/// The messages of a consume response (empty for 404 `MessageNotExist`).
pub fn messages(resp: &Resp) -> Vec<mq_proto::Message> {
    if resp.status == 404 {
        return Vec::new();
    }
    let status = http::StatusCode::from_u16(resp.status).expect("status");
    client::decode_consume_response(status, &HeaderMap::new(), &resp.body).expect("messages")
}

/// A spawned `mq-broker` process, killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mq-broker --listen 127.0.0.1:0 --credential AK:SK`, for more flags and [`spawn_broker`].
pub fn broker_command(ak: &str, sk: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mq-broker"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--credential",
        &format!("{ak}:{sk}"),
    ]);
    command
}

/// Spawns `command` (an `mq-broker` with its flags) with standard output piped and standard
/// error discarded, and reads the first line it prints (the listening address).
pub fn spawn_broker(command: &mut Command) -> (Running, String, BufReader<ChildStdout>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mq-broker");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let running = Running(child);
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    (running, line, stdout)
}

/// The resident set size of a process in bytes (`/proc/<pid>/status`, Linux only).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// The peak resident set size of a process in bytes (`VmHWM`, Linux only).
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmHWM:").map(|kb| kb * 1024)
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Percentile (0..=100) of a sample, by nearest rank; zero for an empty sample.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
