//! [`ChaosProxy`]: an HTTP/1.1 proxy between a client and the broker that injects one fault
//! per request, chosen by a [`Schedule`] (a scripted prefix, then a seeded random draw):
//! connection resets before or after the broker saw the request, stalled answers, truncated
//! bodies, 5xx answers that never reached the broker or replaced the broker's answer, and
//! keep-alive connections dropped right after an answer.
//!
//! The proxy understands just enough HTTP for the clients under test (`Content-Length`
//! bodies, no `Expect`), keeps one upstream connection per client connection, and records
//! every request it saw ([`ChaosProxy::log`]) with its fault and the broker's answer, so a
//! test can check exactly what reached the broker and what the client was told.

use crate::faults::Background;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the proxy does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Forward the request and the answer unchanged.
    Pass,
    /// Reset the client connection (RST) before forwarding: the broker never sees it.
    ResetBeforeForward,
    /// Forward; the broker acts on it; then reset the client connection instead of
    /// answering.
    ResetAfterForward,
    /// Forward; the broker acts on it; hold the answer for the stall time, then close.
    Stall,
    /// Forward; then send the answer's head and only half of its body, and close.
    TruncateBody,
    /// Answer `502 Bad Gateway` with an HTML body without forwarding; keep the connection.
    Gateway502,
    /// Forward; the broker acts on it; answer `500 InternalError` (XML) instead of its
    /// answer; keep the connection.
    Internal500AfterForward,
    /// Forward and answer normally, then close the connection without warning (no
    /// `Connection: close`), as an idle-timeout on a load balancer does.
    DropKeepAlive,
    /// Answer without forwarding (the broker never settles anything) what the real service
    /// has been seen to answer a refused ack: `404` with an `Errors` entry whose
    /// `ReceiptHandle` is empty ([`REFUSAL_EMPTY_HANDLE`]); keep the connection.
    RefuseWithEmptyHandle,
    /// Like [`Fault::RefuseWithEmptyHandle`], with no `ReceiptHandle` element at all
    /// ([`REFUSAL_NO_HANDLE`]).
    RefuseWithoutHandle,
    /// Answer `403 AccessDenied` (an `Error` document, [`ACCESS_DENIED`]) without forwarding;
    /// keep the connection.
    Deny403,
    /// Forward and answer, with the `MessageBodyMD5` of every message whose body starts
    /// with [`POISON_PREFIX`] replaced by 32 zeros (same length): the client cannot trust
    /// that message, every other one decodes. Keep the connection.
    PoisonMd5,
}

/// Bodies starting with this get a wrong `MessageBodyMD5` under [`Fault::PoisonMd5`].
pub const POISON_PREFIX: &str = "poison";

/// `body` (a consume answer) with the MD5 of every message whose body starts with
/// [`POISON_PREFIX`] zeroed.
fn poison_md5(body: &mut [u8]) {
    const MD5_OPEN: &[u8] = b"<MessageBodyMD5>";
    let marker = format!("<MessageBody>{POISON_PREFIX}").into_bytes();
    let mut from = 0;
    while let Some(at) = body[from..]
        .windows(marker.len())
        .position(|w| w == marker.as_slice())
        .map(|i| from + i)
    {
        if let Some(open) = body[..at]
            .windows(MD5_OPEN.len())
            .rposition(|w| w == MD5_OPEN)
            && let Some(md5) = body.get_mut(open + MD5_OPEN.len()..open + MD5_OPEN.len() + 32)
        {
            md5.fill(b'0');
        }
        from = at + marker.len();
    }
}

/// A `403 Error` body refusing the request (request id `CHAOS403`).
pub const ACCESS_DENIED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error xmlns=\"http://mq.aliyuncs.com/doc/v1\"><Code>AccessDenied</Code><Message>The access key is not allowed to do this.</Message><RequestId>CHAOS403</RequestId><HostId>chaos</HostId></Error>";

/// A `404 Errors` body refusing an ack without naming the handle (seen from the real service).
pub const REFUSAL_EMPTY_HANDLE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Errors xmlns=\"http://mq.aliyuncs.com/doc/v1\"><Error><ErrorCode>ReceiptHandleError</ErrorCode><ErrorMessage>The receipt handle you provide is not valid.</ErrorMessage><ReceiptHandle></ReceiptHandle></Error></Errors>";

/// A `404 Errors` body refusing an ack with no `ReceiptHandle` element.
pub const REFUSAL_NO_HANDLE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Errors xmlns=\"http://mq.aliyuncs.com/doc/v1\"><Error><ErrorCode>ReceiptHandleError</ErrorCode><ErrorMessage>The receipt handle you provide is not valid.</ErrorMessage></Error></Errors>";

impl Fault {
    /// Every fault, [`Fault::Pass`] first.
    pub const ALL: [Fault; 8] = [
        Fault::Pass,
        Fault::ResetBeforeForward,
        Fault::ResetAfterForward,
        Fault::Stall,
        Fault::TruncateBody,
        Fault::Gateway502,
        Fault::Internal500AfterForward,
        Fault::DropKeepAlive,
    ];

    /// Whether the broker receives the request.
    pub fn forwards(self) -> bool {
        !matches!(
            self,
            Fault::ResetBeforeForward
                | Fault::Gateway502
                | Fault::RefuseWithEmptyHandle
                | Fault::RefuseWithoutHandle
                | Fault::Deny403
        )
    }

    /// Whether the client receives the broker's complete answer.
    pub fn delivers_answer(self) -> bool {
        matches!(self, Fault::Pass | Fault::DropKeepAlive)
    }
}

/// Which fault each request gets, in the order requests arrive at the proxy.
#[derive(Clone, Debug)]
pub struct Schedule {
    script: VecDeque<Fault>,
    method_scripts: Vec<(String, VecDeque<Fault>)>,
    weights: Vec<(Fault, u32)>,
    rng: fastrand::Rng,
    only: Option<String>,
}

impl Schedule {
    /// Every request passes.
    pub fn pass() -> Self {
        Self::scripted([])
    }

    /// These faults for the first requests, then [`Fault::Pass`].
    pub fn scripted(script: impl IntoIterator<Item = Fault>) -> Self {
        Self {
            script: script.into_iter().collect(),
            method_scripts: Vec::new(),
            weights: vec![(Fault::Pass, 1)],
            rng: fastrand::Rng::with_seed(0),
            only: None,
        }
    }

    /// After the script, faults drawn with these weights from a generator seeded by `seed`.
    pub fn random(seed: u64, weights: &[(Fault, u32)]) -> Self {
        Self {
            script: VecDeque::new(),
            method_scripts: Vec::new(),
            weights: weights.to_vec(),
            rng: fastrand::Rng::with_seed(seed),
            only: None,
        }
    }

    /// Starts with these faults (then the random draw).
    #[must_use]
    pub fn then_script(mut self, script: impl IntoIterator<Item = Fault>) -> Self {
        self.script = script.into_iter().collect();
        self
    }

    /// The first requests with this method get these faults (before the general script
    /// and the random draw).
    #[must_use]
    pub fn with_script_for(
        mut self,
        method: &str,
        script: impl IntoIterator<Item = Fault>,
    ) -> Self {
        self.method_scripts
            .push((method.to_owned(), script.into_iter().collect()));
        self
    }

    /// Injects faults only into requests with this method (`"GET"`, `"POST"`, `"DELETE"`);
    /// others pass untouched and do not consume the schedule.
    #[must_use]
    pub fn only(mut self, method: &str) -> Self {
        self.only = Some(method.to_owned());
        self
    }

    fn next(&mut self, method: &str) -> Fault {
        if let Some(only) = &self.only
            && only != method
        {
            return Fault::Pass;
        }
        if let Some(f) = self
            .method_scripts
            .iter_mut()
            .find(|(m, _)| m == method)
            .and_then(|(_, script)| script.pop_front())
        {
            return f;
        }
        if let Some(f) = self.script.pop_front() {
            return f;
        }
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Fault::Pass;
        }
        let mut pick = self.rng.u32(0..total);
        for (f, w) in &self.weights {
            if pick < *w {
                return *f;
            }
            pick -= w;
        }
        Fault::Pass
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Client connection number (0, 1, ... in accept order).
    pub connection: usize,
    /// Request method.
    pub method: String,
    /// Request-target.
    pub target: String,
    /// Request body.
    pub body: Vec<u8>,
    /// The fault applied.
    pub fault: Fault,
    /// The broker's status, when the request was forwarded and answered.
    pub upstream_status: Option<u16>,
    /// The broker's answer body, when the request was forwarded and answered.
    pub upstream_body: Vec<u8>,
}

struct Shared {
    upstream: SocketAddr,
    schedule: Mutex<Schedule>,
    stall: Duration,
    log: Mutex<Vec<Seen>>,
    connections: Mutex<usize>,
}

/// The fault-injecting proxy; stops when dropped.
pub struct ChaosProxy {
    server: Background,
    shared: Arc<Shared>,
}

impl ChaosProxy {
    /// Starts a proxy in front of `upstream`. A [`Fault::Stall`] holds its answer for
    /// `stall` (choose more than the client's timeout).
    pub fn start(upstream: SocketAddr, schedule: Schedule, stall: Duration) -> Self {
        let shared = Arc::new(Shared {
            upstream,
            schedule: Mutex::new(schedule),
            stall,
            log: Mutex::new(Vec::new()),
            connections: Mutex::new(0),
        });
        let accept_shared = shared.clone();
        let server = Background::spawn(move |listener| async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let number = {
                    let mut n = lock(&accept_shared.connections);
                    *n += 1;
                    *n - 1
                };
                tokio::spawn(serve(client, number, accept_shared.clone()));
            }
        });
        Self { server, shared }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every request seen so far, in arrival order.
    pub fn log(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    /// How many requests got `fault`.
    pub fn count(&self, fault: Fault) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.fault == fault)
            .count()
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> usize {
        *lock(&self.shared.connections)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One HTTP message read from a stream: head bytes (with the final CRLFCRLF), body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Message {
    fn start_line(&self) -> String {
        let end = self
            .head
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(self.head.len());
        String::from_utf8_lossy(&self.head[..end]).into_owned()
    }

    fn status(&self) -> Option<u16> {
        self.start_line().get(9..12)?.parse().ok()
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        v.extend_from_slice(&self.body);
        v
    }
}

/// A buffered reader of HTTP messages.
struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads one message; `None` at end of stream or on anything unexpected. `response`:
    /// no body for 1xx/204/304 answers.
    async fn message(&mut self, response: bool) -> Option<Message> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status: Option<u16> = text.get(9..12).and_then(|s| s.parse().ok());
        let no_body = response && status.is_some_and(|s| s < 200 || s == 204 || s == 304);
        let len = if no_body {
            0
        } else {
            text.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        while self.buf.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        let body = self.buf.drain(..len).collect();
        Some(Message { head, body })
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
}

/// Closes with a TCP reset instead of an orderly shutdown.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn error_answer(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(client: TcpStream, number: usize, shared: Arc<Shared>) {
    let (client_read, mut client_write) = client.into_split();
    let mut requests = Reader {
        inner: client_read,
        buf: Vec::new(),
    };
    let mut upstream: Option<(
        Reader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    )> = None;
    while let Some(request) = requests.message(false).await {
        let start = request.start_line();
        let mut parts = start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let fault = lock(&shared.schedule).next(&method);
        let mut seen = Seen {
            connection: number,
            method,
            target,
            body: request.body.clone(),
            fault,
            upstream_status: None,
            upstream_body: Vec::new(),
        };
        let reunite = |w: tokio::net::tcp::OwnedWriteHalf,
                       r: Reader<tokio::net::tcp::OwnedReadHalf>| {
            w.reunite(r.inner).ok()
        };
        if !fault.forwards() {
            lock(&shared.log).push(seen);
            if fault == Fault::ResetBeforeForward {
                if let Some(stream) = reunite(client_write, requests) {
                    reset(stream);
                }
                return;
            }
            let answer = match fault {
                Fault::RefuseWithEmptyHandle => error_answer(
                    "404 Not Found",
                    "text/xml;charset=utf-8",
                    REFUSAL_EMPTY_HANDLE,
                ),
                Fault::RefuseWithoutHandle => {
                    error_answer("404 Not Found", "text/xml;charset=utf-8", REFUSAL_NO_HANDLE)
                }
                Fault::Deny403 => {
                    error_answer("403 Forbidden", "text/xml;charset=utf-8", ACCESS_DENIED)
                }
                _ => error_answer(
                    "502 Bad Gateway",
                    "text/html",
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                ),
            };
            if client_write.write_all(&answer).await.is_err() {
                return;
            }
            continue;
        }
        // Forward on the connection's upstream connection (opened on first use).
        if upstream.is_none() {
            let Ok(stream) = TcpStream::connect(shared.upstream).await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            upstream = Some((
                Reader {
                    inner: r,
                    buf: Vec::new(),
                },
                w,
            ));
        }
        let Some((up_read, up_write)) = upstream.as_mut() else {
            return;
        };
        if up_write.write_all(&request.bytes()).await.is_err() {
            return;
        }
        let Some(answer) = up_read.message(true).await else {
            return;
        };
        seen.upstream_status = answer.status();
        seen.upstream_body = answer.body.clone();
        lock(&shared.log).push(seen);
        match fault {
            Fault::PoisonMd5 => {
                let mut answer = answer;
                poison_md5(&mut answer.body);
                if client_write.write_all(&answer.bytes()).await.is_err() {
                    return;
                }
            }
            Fault::Pass | Fault::DropKeepAlive => {
                if client_write.write_all(&answer.bytes()).await.is_err() {
                    return;
                }
                if fault == Fault::DropKeepAlive {
                    let _ = client_write.shutdown().await;
                    return;
                }
            }
            Fault::ResetAfterForward => {
                if let Some(stream) = reunite(client_write, requests) {
                    reset(stream);
                }
                return;
            }
            Fault::Stall => {
                tokio::time::sleep(shared.stall).await;
                return;
            }
            Fault::TruncateBody => {
                // The head promises the whole body: send half of it, or, for an answer
                // without a body, half of the head.
                let partial = if answer.body.is_empty() {
                    answer.head[..answer.head.len() / 2].to_vec()
                } else {
                    let mut partial = answer.head.clone();
                    partial.extend_from_slice(&answer.body[..answer.body.len() / 2]);
                    partial
                };
                let _ = client_write.write_all(&partial).await;
                let _ = client_write.shutdown().await;
                return;
            }
            Fault::Internal500AfterForward => {
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error xmlns=\"http://mq.aliyuncs.com/doc/v1\"><Code>InternalError</Code><Message>injected by the chaos proxy</Message><RequestId>000000000000000000000000</RequestId><HostId>chaos</HostId></Error>";
                if client_write
                    .write_all(&error_answer(
                        "500 Internal Server Error",
                        "text/xml;charset=utf-8",
                        body,
                    ))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Fault::ResetBeforeForward
            | Fault::Gateway502
            | Fault::RefuseWithEmptyHandle
            | Fault::RefuseWithoutHandle
            | Fault::Deny403 => return,
        }
    }
}
