//! A small signed HTTP/1.1 client for the broker's tests and benchmarks: requests are built
//! with `mq_proto::client`, sent over a keep-alive `TcpStream` (reconnecting after an
//! error or a `Connection: close`), and responses decoded with `mq_proto::client`'s
//! decoders. Every call is bounded by a timeout, so a killed broker never hangs a test.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use mq_proto::client::{self, Endpoint, PublishReceipt, RequestContext, ResponseError};
use mq_proto::sign::Credentials;
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, HandleFailure, Message, ReceiptHandle, TagFilter,
    TopicMessage, TopicName, WaitSeconds,
};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Test credentials (pass `--credential AK:SK` or `Credential::new(AK, SK)` to the broker).
pub const AK: &str = "durable-test-ak";
/// Test secret.
pub const SK: &str = "durable-test-sk";

/// An HTTP response: status, whether the server closes the connection, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub close: bool,
    pub body: Vec<u8>,
}

/// A keep-alive client for one broker address.
pub struct Client {
    addr: SocketAddr,
    endpoint: Endpoint,
    credentials: Credentials,
    conn: Option<BufReader<TcpStream>>,
    /// Bound on one request (connect, send, receive).
    pub timeout: Duration,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            endpoint: Endpoint::new(&format!("http://{addr}")).expect("endpoint"),
            credentials: Credentials::new(AK, SK),
            conn: None,
            timeout: Duration::from_secs(40),
        }
    }

    /// Sends one request and reads its response; on any error the connection is dropped
    /// (the next request opens a new one).
    pub async fn send(&mut self, req: http::Request<Bytes>) -> io::Result<Resp> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(Ok(resp)) => {
                if resp.close {
                    self.conn = None;
                }
                Ok(resp)
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
            }
        }
    }

    async fn exchange(&mut self, req: http::Request<Bytes>) -> io::Result<Resp> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected");
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let mut head = format!("{} {target} HTTP/1.1\r\n", req.method());
        for (name, value) in req.headers() {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(value.to_str().unwrap_or(""));
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(req.body());
        conn.get_mut().write_all(&bytes).await?;

        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated headers",
                ));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value
                        .parse()
                        .map_err(|_| io::Error::other("bad content-length"))?;
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;
        Ok(Resp {
            status,
            close,
            body,
        })
    }

    fn ctx(&self) -> RequestContext<'_> {
        RequestContext {
            endpoint: &self.endpoint,
            credentials: &self.credentials,
            instance: None,
            date: SystemTime::now(),
            user_agent: "mq-broker-durable-test",
        }
    }

    /// Publishes; the outer error is transport, the inner one the broker's answer.
    pub async fn publish(
        &mut self,
        topic: &TopicName,
        message: &TopicMessage,
    ) -> io::Result<Result<PublishReceipt, ResponseError>> {
        let req = client::publish_request(&self.ctx(), topic, message);
        let resp = self.send(req).await?;
        Ok(decode(resp, client::decode_publish_response))
    }

    /// Consumes (an empty list for `MessageNotExist`).
    pub async fn consume(
        &mut self,
        topic: &TopicName,
        group: &GroupId,
        kind: ConsumeKind,
        batch: u8,
        wait: u8,
    ) -> io::Result<Result<Vec<Message>, ResponseError>> {
        let req = client::consume_request(
            &self.ctx(),
            topic,
            group,
            kind,
            BatchSize::new(batch).expect("batch"),
            WaitSeconds::new(wait).expect("wait"),
            &TagFilter::All,
        )
        .expect("consume request");
        let resp = self.send(req).await?;
        Ok(decode(resp, client::decode_consume_response))
    }

    /// Acks, commits or rolls back; `Ok(Ok(failures))` lists the handles that failed
    /// (empty = 204).
    pub async fn ack(
        &mut self,
        topic: &TopicName,
        group: &GroupId,
        kind: AckKind,
        handles: &[ReceiptHandle],
    ) -> io::Result<Result<Vec<HandleFailure>, ResponseError>> {
        let req = client::ack_request(&self.ctx(), topic, group, kind, handles).expect("handles");
        let resp = self.send(req).await?;
        Ok(decode(resp, client::decode_ack_response))
    }
}

impl Client {
    /// Any request `method path_and_query` with an empty body, signed with this client's key
    /// as a protocol call is (PROTOCOL §2.5) and sent as written: for targets the typed
    /// builders cannot express (a name no `TopicName` holds).
    pub async fn signed(&mut self, method: http::Method, path_and_query: &str) -> io::Result<Resp> {
        let req = client::admin_request(&self.ctx(), method, path_and_query);
        self.send(req).await
    }

    /// An admin call (`/admin/…`) signed with this client's key, or with `key` = (id,
    /// secret); the status and the JSON answer.
    pub async fn admin(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        key: Option<(&str, &str)>,
    ) -> io::Result<(u16, serde_json::Value)> {
        let credentials = key.map(|(id, secret)| Credentials::new(id, secret));
        let ctx = RequestContext {
            credentials: credentials.as_ref().unwrap_or(&self.credentials),
            ..self.ctx()
        };
        let req = client::admin_request(&ctx, method, path_and_query);
        let resp = self.send(req).await?;
        let json = serde_json::from_slice(&resp.body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((resp.status, json))
    }
}

fn decode<T>(
    resp: Resp,
    decoder: impl FnOnce(http::StatusCode, &http::HeaderMap, &[u8]) -> Result<T, ResponseError>,
) -> Result<T, ResponseError> {
    let status = http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    decoder(status, &http::HeaderMap::new(), &resp.body)
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("mq-broker-{name}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
