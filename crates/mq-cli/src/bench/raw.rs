//! A raw HTTP/1.1 load generator: one hyper connection per worker, sending requests built
//! and signed once ([`Prepared`]). It has none of the SDK's per-request work (signing, XML
//! encoding, retries, pooling), so it is the transport limit the client is compared with,
//! and the load generator that compares the broker with a bare server.

use super::{histogram, merge, record};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mq_tokio::mq_proto::client::{Endpoint, RequestContext, ack_request, decode_consume_response};
use mq_tokio::mq_proto::{AckKind, GroupId, TopicName};
use mq_tokio::{Credentials, InstanceId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;

/// A request built (and signed) once, sent many times. The `Date` it carries stays valid
/// for 15 minutes.
#[derive(Clone, Debug)]
pub struct Prepared {
    method: Method,
    target: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Prepared {
    /// Takes a request from the `mq_proto::client` builders; its URI is sent in origin form
    /// (`/path?query`), as clients do.
    pub fn new(req: Request<Bytes>) -> Self {
        let (parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| Uri::from(pq.clone()))
            .unwrap_or(parts.uri);
        Self {
            method: parts.method,
            target,
            headers: parts.headers,
            body,
        }
    }

    /// A fresh copy to send (headers cloned, body shared).
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.target.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// One HTTP/1.1 connection (keep-alive), driven by a background task.
pub struct RawConnection {
    sender: SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawConnection").finish_non_exhaustive()
    }
}

impl RawConnection {
    /// Connects (TCP_NODELAY, like the SDK's transport).
    ///
    /// # Errors
    ///
    /// The connect or HTTP/1.1 handshake failure, as text.
    pub async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// Sends a request and reads the whole response.
    ///
    /// # Errors
    ///
    /// The connection's failure to send or to read the response, as text.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// What a raw load run did.
#[derive(Debug)]
pub struct LoadResult {
    /// Successful requests.
    pub requests: u64,
    /// Messages published or consumed.
    pub messages: u64,
    /// Failed requests (transport errors or unexpected status).
    pub errors: u64,
    /// First failure.
    pub first_error: Option<String>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Request latencies (ns).
    pub latency: Histogram<u64>,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Messages per second.
    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Tally {
    requests: u64,
    messages: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            messages: 0,
            errors: 0,
            first_error: None,
            latency: histogram(),
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

async fn gather(
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
) -> Result<LoadResult, String> {
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await.map_err(|e| format!("load worker: {e}"))?);
    }
    let elapsed = started.elapsed();
    let mut result = LoadResult {
        requests: 0,
        messages: 0,
        errors: 0,
        first_error: None,
        elapsed,
        latency: histogram(),
    };
    let mut hists = Vec::with_capacity(tallies.len());
    for t in tallies {
        result.requests += t.requests;
        result.messages += t.messages;
        result.errors += t.errors;
        if result.first_error.is_none() {
            result.first_error = t.first_error;
        }
        hists.push(t.latency);
    }
    result.latency = merge(hists)?;
    Ok(result)
}

/// When a [`repeat_load`] stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long (requests in flight then finish).
    After(Duration),
    /// After this many successful requests in total.
    Count(u64),
}

/// `concurrency` connections send `request` back to back until `stop`; a response with
/// status `expect` counts as one message, anything else as an error.
///
/// # Errors
///
/// A worker task that failed to finish (it panicked), as text.
pub async fn repeat_load(
    addr: SocketAddr,
    request: Arc<Prepared>,
    expect: StatusCode,
    concurrency: usize,
    stop: Stop,
) -> Result<LoadResult, String> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(RawConnection::connect(addr).await?);
    }
    let started = Instant::now();
    let (deadline, budget) = match stop {
        Stop::After(d) => (Some(started + d), None),
        Stop::Count(n) => (None, Some(Arc::new(AtomicU64::new(n)))),
    };
    let tasks = connections
        .into_iter()
        .map(|mut conn| {
            let (request, budget) = (request.clone(), budget.clone());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    if let Some(b) = &budget {
                        let took = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            n.checked_sub(1)
                        });
                        if took.is_err() {
                            break;
                        }
                    }
                    let t = Instant::now();
                    match conn.send(request.request()).await {
                        Ok((status, _)) if status == expect => {
                            record(&mut tally.latency, t.elapsed());
                            tally.requests += 1;
                            tally.messages += 1;
                        }
                        Ok((status, body)) => {
                            tally.error(format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&body)
                            ));
                        }
                        Err(e) => {
                            tally.error(e);
                            break;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    gather(started, tasks).await
}

/// Signs ack requests for the handles a consume returned.
#[derive(Clone, Debug)]
pub struct AckSigner {
    /// Endpoint written into `Host`.
    pub endpoint: Endpoint,
    /// Signing keys.
    pub credentials: Credentials,
    /// Instance, if any.
    pub instance: Option<InstanceId>,
    /// Topic.
    pub topic: TopicName,
    /// Group.
    pub group: GroupId,
}

/// `concurrency` connections each loop: send the pre-built `consume`, decode the messages,
/// sign and send an ack of their handles. Stops at `duration`, or when a consume finds
/// nothing (404 `MessageNotExist`: the backlog is drained). One latency sample per
/// consume + ack cycle.
///
/// # Errors
///
/// A worker task that failed to finish (it panicked), as text.
pub async fn consume_ack_load(
    addr: SocketAddr,
    consume: Arc<Prepared>,
    signer: Arc<AckSigner>,
    concurrency: usize,
    duration: Duration,
) -> Result<(LoadResult, bool), String> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(RawConnection::connect(addr).await?);
    }
    let drained = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = connections
        .into_iter()
        .map(|mut conn| {
            let (consume, signer, drained) = (consume.clone(), signer.clone(), drained.clone());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline && !drained.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (status, body) = match conn.send(consume.request()).await {
                        Ok(r) => r,
                        Err(e) => {
                            tally.error(e);
                            break;
                        }
                    };
                    let messages = match decode_consume_response(status, &HeaderMap::new(), &body) {
                        Ok(m) => m,
                        Err(e) => {
                            tally.error(format!("consume: {e}"));
                            continue;
                        }
                    };
                    tally.requests += 1;
                    if messages.is_empty() {
                        drained.store(true, Ordering::Relaxed);
                        break;
                    }
                    let handles: Vec<_> =
                        messages.iter().map(|m| m.receipt_handle.clone()).collect();
                    let ctx = RequestContext {
                        endpoint: &signer.endpoint,
                        credentials: &signer.credentials,
                        instance: signer.instance.as_ref(),
                        date: SystemTime::now(),
                        user_agent: "mq-bench-raw",
                    };
                    let ack = match ack_request(
                        &ctx,
                        &signer.topic,
                        &signer.group,
                        AckKind::Ack,
                        &handles,
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            tally.error(format!("ack: {e}"));
                            continue;
                        }
                    };
                    match conn.send(Prepared::new(ack).request()).await {
                        Ok((status, _)) if status.is_success() => {
                            record(&mut tally.latency, t.elapsed());
                            tally.requests += 1;
                            tally.messages += messages.len() as u64;
                        }
                        Ok((status, body)) => tally.error(format!(
                            "ack: HTTP {status}: {}",
                            String::from_utf8_lossy(&body)
                        )),
                        Err(e) => {
                            tally.error(e);
                            break;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let result = gather(started, tasks).await?;
    Ok((result, drained.load(Ordering::Relaxed)))
}

/// Publish → delivery latency with a waiting long poll: for each sample a consume (which
/// must carry `waitseconds`) is sent on one connection and left waiting for `pause`, then a
/// publish is sent on another; the sample is the time from sending the publish to receiving
/// the consume response with the message.
///
/// # Errors
///
/// A connection that cannot be opened or fails, an answer that is not the expected one, or
/// the long-poll task failing, as text.
pub async fn delivery_latency(
    addr: SocketAddr,
    publish: Arc<Prepared>,
    long_poll: Arc<Prepared>,
    samples: usize,
    pause: Duration,
) -> Result<LoadResult, String> {
    let mut consumer = Some(RawConnection::connect(addr).await?);
    let mut publisher = RawConnection::connect(addr).await?;
    let mut tally = Tally::new();
    let started = Instant::now();
    for _ in 0..samples {
        let Some(mut conn) = consumer.take() else {
            break;
        };
        let poll = long_poll.request();
        let waiting = tokio::spawn(async move {
            let r = conn.send(poll).await;
            (conn, r, Instant::now())
        });
        tokio::time::sleep(pause).await;
        let sent = Instant::now();
        let published = publisher.send(publish.request()).await;
        let (conn, polled, received) = waiting.await.map_err(|e| format!("long poll task: {e}"))?;
        consumer = Some(conn);
        match (published, polled) {
            (Ok((StatusCode::CREATED, _)), Ok((StatusCode::OK, _))) => {
                record(&mut tally.latency, received.saturating_duration_since(sent));
                tally.requests += 2;
                tally.messages += 1;
            }
            (p, c) => tally.error(format!(
                "publish {:?} / long poll {:?}",
                p.map(|r| r.0),
                c.map(|r| r.0)
            )),
        }
    }
    let elapsed = started.elapsed();
    Ok(LoadResult {
        requests: tally.requests,
        messages: tally.messages,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed,
        latency: tally.latency,
    })
}

/// Long polls held open by [`open_idle_polls`]; dropped or [`IdlePolls::close`]d to end them.
#[derive(Debug)]
pub struct IdlePolls {
    tasks: tokio::task::JoinSet<()>,
    /// Connections opened with their poll sent.
    pub opened: usize,
    /// Connections that could not be opened (for example: out of file descriptors).
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
}

impl IdlePolls {
    /// Closes every connection.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Opens `count` connections, each sending `long_poll` (a consume with `waitseconds`) and
/// waiting for its answer in a background task. Connection failures are counted, not fatal;
/// after the first one no more connections are attempted.
pub async fn open_idle_polls(
    addr: SocketAddr,
    long_poll: Arc<Prepared>,
    count: usize,
) -> IdlePolls {
    let mut polls = IdlePolls {
        tasks: tokio::task::JoinSet::new(),
        opened: 0,
        failed: 0,
        first_error: None,
    };
    for _ in 0..count {
        match RawConnection::connect(addr).await {
            Ok(mut conn) => {
                let req = long_poll.request();
                polls.tasks.spawn(async move {
                    let _ = conn.send(req).await;
                    // Keep the connection open until closed.
                    std::future::pending::<()>().await;
                });
                polls.opened += 1;
            }
            Err(e) => {
                polls.failed = count - polls.opened;
                polls.first_error = Some(e);
                break;
            }
        }
    }
    polls
}
