//! The HTTP server around [`BrokerCore`]: hyper 1.x over tokio, HTTP/1.1 keep-alive,
//! `Expect: 100-continue`, signature verification, long polling without polling loops, and
//! graceful shutdown.
//!
//! Requests: the signature and `Date` are checked, and an oversize `Content-Length` refused,
//! before the body is read (so a client waiting for `100 Continue` never sends a body that
//! is refused). A refused request's body that is on its way anyway is read and dropped, so
//! keep-alive clients (which reuse the connection for their next request) keep it — for at
//! most [`PRE_AUTH_DRAIN_TIMEOUT`], so an unauthenticated sender cannot hold a connection for
//! the whole body timeout; when part of a body stays unread the answer says
//! `Connection: close`. Every response carries `x-mq-request-id` and `x-mq-version`;
//! `GET /health` and `GET /stats` (JSON: the core's [`Stats`] plus a `server` object with
//! `connections`, `waiting_polls` and `requests`) need no signature.
//!
//! Long polling: a consume that finds nothing subscribes, under the core lock, to its topic's
//! change counter ([`BrokerCore::topic_version`]) and sleeps until the counter moves (publish,
//! commit, ack of an ordered partition, or a timer-driven change) or its wait ends. One timer
//! task sleeps until [`BrokerCore::next_wakeup`] and runs [`BrokerCore::maintain`]; it is
//! re-armed whenever a request changes the core. Waiting requests cost no CPU, and the core's
//! `std` mutex is never held across an `.await`.

use crate::core::{BrokerCore, CoreConfig, CoreError, Stats};
use crate::durable::{JournaledCore, StorageError};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mq_proto::server::{
    Operation, ParsedRequest, RequestError, authenticate, encode_errors, encode_messages,
    encode_publish_response, error_response, parse_request, request_id, response,
};
use mq_proto::sign::format_http_date;
use mq_proto::{ErrorCode, InstanceId, TopicName};
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// An access key the broker accepts, optionally limited to one instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// AccessKey id.
    pub access_key_id: String,
    /// AccessKey secret.
    pub access_key_secret: String,
    /// When set, the key may only address this instance (`ns`); `None` = every instance.
    pub instance: Option<InstanceId>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("instance", &self.instance)
            .finish()
    }
}

impl Credential {
    /// A key valid for every instance.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            instance: None,
        }
    }

    /// Parses `AK:SK` or `AK:SK@INSTANCE`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (keys, instance) = match s.rsplit_once('@') {
            Some((keys, inst)) => (keys, Some(inst)),
            None => (s, None),
        };
        let (id, secret) = keys
            .split_once(':')
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
            .ok_or_else(|| "expected AK:SK or AK:SK@INSTANCE".to_owned())?;
        let instance = instance
            .map(|i| InstanceId::new(i).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(Self {
            access_key_id: id.to_owned(),
            access_key_secret: secret.to_owned(),
            instance,
        })
    }
}

/// The development key pair used when no credential is configured (printed at start).
pub const DEV_ACCESS_KEY_ID: &str = "mq-dev-access-key";
/// The development secret used when no credential is configured (printed at start).
pub const DEV_ACCESS_KEY_SECRET: &str = "mq-dev-secret";

/// Longest time a request refused by authentication may take to deliver the rest of its
/// body (capped by [`Limits::body_read_timeout`]). A body that arrives within it is read and
/// dropped and the connection stays usable; otherwise the refusal is answered with
/// `Connection: close` and the connection ends. An unauthenticated client thus holds a
/// connection for seconds, not for the body timeout.
pub const PRE_AUTH_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Resource limits of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body read (bigger `Content-Length` is refused before reading).
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers, counted from the connection's start or
    /// the end of the previous answer: it is also the idle timeout of keep-alive connections
    /// and bounds a TLS handshake.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request's body (for a request refused by authentication,
    /// at most [`PRE_AUTH_DRAIN_TIMEOUT`]).
    pub body_read_timeout: Duration,
    /// Most open connections; further ones are closed at once.
    pub max_connections: usize,
    /// Most long polls waiting at once; further ones are answered at once.
    pub max_waiting_polls: usize,
    /// Largest request head (request line and headers) in bytes; a bigger one is answered
    /// `431` and the connection closed. At most 100 header lines are accepted either way.
    pub max_header_bytes: usize,
    /// How long [`Broker::shutdown`] waits for in-flight requests before closing the
    /// remaining connections.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: mq_proto::server::MAX_REQUEST_BODY_LEN,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 20_000,
            max_waiting_polls: 20_000,
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Accepted keys. Empty = the development pair.
    pub credentials: Vec<Credential>,
    /// Declared topics; when any is declared, unknown topics answer `TopicNotExist`.
    pub topics: Vec<(Option<InstanceId>, TopicName)>,
    /// Queue semantics.
    pub core: CoreConfig,
    /// Resource limits.
    pub limits: Limits,
    /// Keep the state in this directory and recover it at start (durable broker, see
    /// [`crate::durable`]); `None` keeps everything in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`); `None` serves
    /// plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Shifts the broker's clock by this many milliseconds from the system clock (positive =
    /// ahead). Everything the broker reads the time for follows it: message times and
    /// `NextConsumeTime`, the 15-minute `Date` window it accepts (PROTOCOL §2.5) and the
    /// `Date` header it answers with. For testing clients against a server whose clock is
    /// not theirs, as the real service's never is. Default 0.
    pub clock_offset_ms: i64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            credentials: Vec::new(),
            topics: Vec::new(),
            core: CoreConfig::default(),
            limits: Limits::default(),
            data_dir: None,
            tls: None,
            clock_offset_ms: 0,
        }
    }
}

type TopicKey = (Option<InstanceId>, TopicName);

struct Shared {
    core: Mutex<JournaledCore>,
    credentials: HashMap<String, Credential>,
    host_id: String,
    limits: Limits,
    /// One change channel per topic that has had a waiting poll. Only topics the core knows
    /// get one (a poll subscribes after its consume succeeded), so the map is bounded by the
    /// core's topics. Lock order: `core`, then `topic_watches`.
    topic_watches: Mutex<HashMap<TopicKey, watch::Sender<u64>>>,
    reschedule: Notify,
    /// When the timer task will wake next (epoch ms), written under the core lock. Requests
    /// wake it early only when the core's next wake-up comes before this: waking it on every
    /// request cost a task switch and a second core lock per request.
    timer_armed_at: AtomicU64,
    shutdown: watch::Sender<bool>,
    requests: AtomicU64,
    seed: u64,
    tls: Option<crate::tls::TlsConfig>,
    clock: Clock,
    waiting_polls: AtomicUsize,
    connections: AtomicUsize,
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// The broker's clock: the system clock shifted by [`ServerConfig::clock_offset_ms`].
#[derive(Clone, Copy, Debug)]
struct Clock {
    offset_ms: i64,
}

impl Clock {
    fn now(self) -> SystemTime {
        let system = SystemTime::now();
        let shift = Duration::from_millis(self.offset_ms.unsigned_abs());
        let shifted = if self.offset_ms >= 0 {
            system.checked_add(shift)
        } else {
            system.checked_sub(shift)
        };
        shifted.unwrap_or(system)
    }

    /// Milliseconds since the Unix epoch, as the core takes them.
    fn now_ms(self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Moves a topic's channel to `version`, waking its receivers if that is news.
fn advance_watch(tx: &watch::Sender<u64>, version: u64) {
    tx.send_if_modified(|old| {
        if *old != version {
            *old = version;
            true
        } else {
            false
        }
    });
}

impl Shared {
    fn lock_core(&self) -> MutexGuard<'_, JournaledCore> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_watches(&self) -> MutexGuard<'_, HashMap<TopicKey, watch::Sender<u64>>> {
        self.topic_watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_request_id(&self) -> String {
        request_id(self.requests.fetch_add(1, Ordering::Relaxed) ^ self.seed)
    }

    /// Subscribes to the change counter of a topic. Must be called with the core locked
    /// (`core` is the guarded value), right after a consume found nothing: no change can
    /// slip in between, and the channel is first brought up to the core's current version so
    /// that only later changes wake the receiver.
    fn subscribe(&self, core: &BrokerCore, key: &TopicKey) -> watch::Receiver<u64> {
        let version = core.topic_version(key.0.as_ref(), &key.1);
        let mut watches = self.lock_watches();
        let tx = watches
            .entry(key.clone())
            .or_insert_with(|| watch::channel(version).0);
        advance_watch(tx, version);
        tx.subscribe()
    }

    /// Wakes the waiters of every topic whose change counter moved.
    fn publish_versions(&self, core: &BrokerCore) {
        let watches = self.lock_watches();
        for ((instance, topic), tx) in watches.iter() {
            advance_watch(tx, core.topic_version(instance.as_ref(), topic));
        }
    }

    /// Wakes the waiters of one topic if its counter moved, and re-arms the timer task.
    fn changed(&self, core: &BrokerCore, key: &TopicKey) {
        let version = core.topic_version(key.0.as_ref(), &key.1);
        if let Some(tx) = self.lock_watches().get(key) {
            advance_watch(tx, version);
        }
        self.rearm_timer(core);
    }

    /// Wakes the timer task if the core's next wake-up is earlier than the one it sleeps
    /// until. Must be called with the core locked (`core` is the guarded value).
    fn rearm_timer(&self, core: &BrokerCore) {
        if core
            .next_wakeup()
            .is_some_and(|at| at < self.timer_armed_at.load(Ordering::Acquire))
        {
            self.reschedule.notify_one();
        }
    }
}

/// A place among the waiting long polls; given back on drop, including when hyper drops
/// the request future because the client went away.
struct PollSlot<'a>(&'a Shared);

impl<'a> PollSlot<'a> {
    fn acquire(shared: &'a Shared) -> Option<Self> {
        let before = shared.waiting_polls.fetch_add(1, Ordering::AcqRel);
        if before >= shared.limits.max_waiting_polls {
            shared.waiting_polls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(shared))
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        self.0.waiting_polls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts an open connection for as long as it lives (also when its task is aborted).
struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running broker. Dropping it does not stop it; call [`Broker::shutdown`].
pub struct Broker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    done: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker").field("addr", &self.addr).finish()
    }
}

impl Broker {
    /// Binds the listener and starts serving in background tasks on the current tokio
    /// runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use mq_broker::{Broker, ServerConfig};
    /// let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    /// let broker = Broker::start(config).await?;
    /// assert!(broker.endpoint().starts_with("http://127.0.0.1:"));
    /// assert_eq!(broker.stats().published, 0);
    /// broker.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(config: ServerConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut credentials = HashMap::new();
        if config.credentials.is_empty() {
            credentials.insert(
                DEV_ACCESS_KEY_ID.to_owned(),
                Credential::new(DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET),
            );
        }
        for c in config.credentials {
            credentials.insert(c.access_key_id.clone(), c);
        }
        let clock = Clock {
            offset_ms: config.clock_offset_ms,
        };
        let seed = clock.now_ms() ^ u64::from(addr.port()).rotate_left(48);
        let mut core_config = config.core;
        if !config.topics.is_empty() {
            core_config.auto_create_topics = false;
        }
        if core_config.id_seed == 0 {
            core_config.id_seed = seed;
        }
        let mut core = JournaledCore::open(core_config, config.data_dir.as_deref())
            .map_err(io::Error::other)?;
        for (instance, topic) in &config.topics {
            core.declare_topic(instance.as_ref(), topic);
        }
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            credentials,
            host_id: format!("{}://{addr}", scheme(config.tls.is_some())),
            limits: config.limits,
            topic_watches: Mutex::new(HashMap::new()),
            reschedule: Notify::new(),
            timer_armed_at: AtomicU64::new(0),
            shutdown,
            requests: AtomicU64::new(1),
            seed,
            waiting_polls: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            tls: config.tls,
            clock,
        });
        tokio::spawn(timer_task(shared.clone()));
        let done = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, done })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, or `https://IP:PORT` when serving TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", scheme(self.shared.tls.is_some()), self.addr)
    }

    /// Counters per topic and group.
    pub fn stats(&self) -> Stats {
        self.shared.lock_core().stats()
    }

    /// Stops accepting, answers waiting long polls at once (`MessageNotExist`, or the
    /// messages that arrived), lets in-flight requests finish and returns when every
    /// connection is closed. Connections still busy after [`Limits::shutdown_grace`] (a
    /// client slowly sending a request) are closed.
    pub async fn shutdown(self) {
        // `send_replace`, not `send`: `send` drops the value when no task has subscribed
        // yet (a shutdown right after start on a current-thread runtime), which hung here.
        self.shared.shutdown.send_replace(true);
        let _ = self.done.await;
        // Commit what is pending and release the data directory.
        let closing = self.shared.lock_core().close();
        closing.await;
    }
}

async fn timer_task(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let now = shared.clock.now_ms();
        let sleep = {
            let core = shared.lock_core();
            // Never spin: a wake-up in the past is handled by `maintain` below.
            let sleep_ms = match core.next_wakeup() {
                Some(at) => at.saturating_sub(now).clamp(1, 60_000),
                None => 60_000,
            };
            shared
                .timer_armed_at
                .store(now.saturating_add(sleep_ms), Ordering::Release);
            Duration::from_millis(sleep_ms)
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shared.reschedule.notified() => continue,
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let mut core = shared.lock_core();
        core.maintain(shared.clock.now_ms());
        shared.publish_versions(&core);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = shared.shutdown.subscribe();
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.connections.load(Ordering::Acquire) >= shared.limits.max_connections {
            tracing::warn!("connection limit reached; closing new connection");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        let service = hyper::service::service_fn(move |req| {
            let shared = conn_shared.clone();
            async move { Ok::<_, Infallible>(handle(shared, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(Some(shared.limits.header_read_timeout))
            .max_buf_size(64 * 1024)
            .max_header_size(shared.limits.max_header_bytes)
            .serve_connection(
                TokioIo::new(crate::tls::ServerIo::new(stream, shared.tls.as_ref())),
                service,
            );
        let conn = graceful.watch(conn);
        shared.connections.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(shared.clone());
        tasks.spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(shared.limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "connections still busy at the end of the shutdown grace period; closing them"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// The server-side counters added to `GET /stats`.
#[derive(Serialize)]
struct ServerStats {
    connections: usize,
    waiting_polls: usize,
    requests: u64,
}

/// The `GET /stats` document: the core's [`Stats`] plus a `server` object.
#[derive(Serialize)]
struct StatsDocument {
    #[serde(flatten)]
    core: Stats,
    server: ServerStats,
}

fn stats_document(shared: &Shared) -> Result<Vec<u8>, serde_json::Error> {
    let doc = StatsDocument {
        core: shared.lock_core().stats(),
        server: ServerStats {
            connections: shared.connections.load(Ordering::Acquire),
            waiting_polls: shared.waiting_polls.load(Ordering::Acquire),
            requests: shared.requests.load(Ordering::Relaxed).saturating_sub(1),
        },
    };
    serde_json::to_vec_pretty(&doc)
}

/// A non-XML answer (`/health`, `/stats`) with the protocol headers all responses carry.
fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    rid: &str,
) -> Response<Full<Bytes>> {
    let mut resp = response(status, body, rid);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    full(resp)
}

fn full(resp: Response<Bytes>) -> Response<Full<Bytes>> {
    resp.map(Full::new)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let rid = shared.next_request_id();
    let method = req.method().clone();
    // The request-target as received (origin form), which is what clients sign.
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let resp = match (&method, target.as_str()) {
        (&Method::GET, "/health") => plain(
            StatusCode::OK,
            "text/plain;charset=utf-8",
            Bytes::from_static(b"ok\n"),
            &rid,
        ),
        (&Method::GET, "/stats") => match stats_document(&shared) {
            Ok(json) => plain(StatusCode::OK, "application/json", json.into(), &rid),
            Err(e) => error(
                &shared,
                &rid,
                RequestError::new(ErrorCode::InternalError, e.to_string()),
            ),
        },
        _ => match serve_api(&shared, &rid, req, &method, &target).await {
            Ok(r) => r,
            Err(Refusal { error: e, close }) => {
                let mut resp = error(&shared, &rid, e);
                if close {
                    // Part of the request body was not read: say that the connection ends
                    // (hyper closes it after this response).
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            }
        },
    };
    // The server's own clock, which clients use to tell how long a receipt handle stays
    // valid (`NextConsumeTime` − `Date`): it must be the clock the core runs on.
    let mut resp = resp;
    if let Ok(date) = HeaderValue::from_str(&format_http_date(shared.clock.now())) {
        resp.headers_mut().insert(http::header::DATE, date);
    }
    tracing::debug!(
        request_id = %rid,
        %method,
        target = %target,
        status = resp.status().as_u16(),
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    resp
}

fn error(shared: &Shared, rid: &str, e: RequestError) -> Response<Full<Bytes>> {
    full(error_response(&e, rid, &shared.host_id))
}

fn core_error(e: CoreError) -> RequestError {
    RequestError::new(e.code, e.message)
}

/// The change could not be made durable: nothing is acknowledged.
fn storage_error(e: StorageError) -> RequestError {
    RequestError::new(ErrorCode::InternalError, format!("storage: {e}"))
}

/// A refused request, and whether its connection must close because part of the request
/// body was left unread.
struct Refusal {
    error: RequestError,
    close: bool,
}

impl From<RequestError> for Refusal {
    fn from(error: RequestError) -> Self {
        Self {
            error,
            close: false,
        }
    }
}

/// Reads and drops a request body (without buffering it); `false` if it is longer than
/// `max`, broken, or not received within `timeout`.
async fn drain(mut body: Incoming, max: usize, timeout: Duration) -> bool {
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > max {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(false)
}

async fn serve_api(
    shared: &Arc<Shared>,
    rid: &str,
    req: Request<Incoming>,
    method: &Method,
    target: &str,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let (parts, body) = req.into_parts();
    let max = shared.limits.max_body_bytes;
    let too_big = || {
        RequestError::new(
            ErrorCode::InvalidArgument,
            format!("The value of body should between 0 and {max} bytes."),
        )
    };
    let declared_len = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let oversize = declared_len.is_some_and(|l| l > max as u64);
    let expects_continue = parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));

    // Authenticate and check the declared length before reading the body: the signature
    // does not cover it, and a client sending `Expect: 100-continue` only sends it (after
    // hyper's `100 Continue`) once we start reading.
    let key_id = match authenticate(method, target, &parts.headers, shared.clock.now(), |id| {
        shared
            .credentials
            .get(id)
            .map(|c| c.access_key_secret.clone())
    }) {
        Ok(id) => id,
        Err(error) => {
            // Keep the connection usable: clients (the Python SDK writes headers and body
            // separately) reuse it for their next request, so read and drop a body that is
            // on its way — briefly: an unauthenticated sender gets no more than
            // `PRE_AUTH_DRAIN_TIMEOUT`. A client waiting for `100 Continue` sends none, and an
            // oversize body is not worth reading: then the connection closes after the answer.
            let has_body = !hyper::body::Body::is_end_stream(&body);
            let drain_for = shared.limits.body_read_timeout.min(PRE_AUTH_DRAIN_TIMEOUT);
            let close =
                has_body && (oversize || expects_continue || !drain(body, max, drain_for).await);
            return Err(Refusal { error, close });
        }
    };
    if oversize {
        return Err(Refusal {
            error: too_big(),
            close: true,
        });
    }
    let body = match tokio::time::timeout(
        shared.limits.body_read_timeout,
        Limited::new(body, max).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let error = if e.is::<LengthLimitError>() {
                too_big()
            } else {
                RequestError::new(
                    ErrorCode::InvalidArgument,
                    format!("could not read the request body: {e}"),
                )
            };
            return Err(Refusal { error, close: true });
        }
        Err(_) => {
            return Err(Refusal {
                error: RequestError::new(
                    ErrorCode::InvalidArgument,
                    "the request body was not received in time",
                ),
                close: true,
            });
        }
    };
    let parsed = parse_request(method, target, &parts.headers, &body)?;
    if let Some(scope) = shared
        .credentials
        .get(&key_id)
        .and_then(|c| c.instance.as_ref())
    {
        if parsed.instance.as_ref() != Some(scope) {
            return Err(RequestError::new(
                ErrorCode::AccessDenied,
                format!(
                    "{} The AccessKey {key_id} is limited to instance {scope}.",
                    ErrorCode::AccessDenied.default_message()
                ),
            )
            .into());
        }
    }
    Ok(dispatch(shared, rid, parsed).await?)
}

async fn dispatch(
    shared: &Arc<Shared>,
    rid: &str,
    req: ParsedRequest,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let ParsedRequest {
        instance,
        topic,
        operation,
    } = req;
    let key: TopicKey = (instance, topic);
    match operation {
        Operation::Publish(message) => {
            let (outcome, durable) = {
                let mut core = shared.lock_core();
                let outcome = core
                    .publish(shared.clock.now_ms(), key.0.as_ref(), &key.1, message)
                    .map_err(core_error)?;
                shared.changed(&core, &key);
                (outcome, core.sync_point())
            };
            durable.wait().await.map_err(storage_error)?;
            let receipt = mq_proto::client::PublishReceipt {
                message_id: outcome.message_id,
                body_md5: outcome.body_md5,
                receipt_handle: outcome.receipt_handle,
            };
            Ok(full(response(
                StatusCode::CREATED,
                encode_publish_response(&receipt),
                rid,
            )))
        }
        Operation::Consume {
            group,
            kind,
            batch,
            wait,
            filter,
        } => {
            let deadline = Instant::now() + Duration::from_secs(u64::from(wait.get()));
            let mut shutdown = shared.shutdown.subscribe();
            let mut slot = None;
            loop {
                let found_or_wait = {
                    let mut core = shared.lock_core();
                    let found = core
                        .consume(
                            shared.clock.now_ms(),
                            key.0.as_ref(),
                            &key.1,
                            &group,
                            kind,
                            &filter,
                            batch,
                        )
                        .map_err(core_error)?;
                    // The consume may have moved the next wake-up (new invisibility).
                    shared.rearm_timer(&core);
                    if !found.is_empty() {
                        ControlFlow::Break((found, core.sync_point()))
                    } else if Instant::now() >= deadline || *shutdown.borrow_and_update() {
                        return Err(RequestError::from_code(ErrorCode::MessageNotExist));
                    } else {
                        ControlFlow::Continue(shared.subscribe(&core, &key))
                    }
                };
                let mut changes = match found_or_wait {
                    ControlFlow::Break((found, durable)) => {
                        // Answer only once the deliveries (and all they saw) are durable.
                        durable.wait().await.map_err(storage_error)?;
                        return Ok(full(response(StatusCode::OK, encode_messages(&found), rid)));
                    }
                    ControlFlow::Continue(changes) => changes,
                };
                if slot.is_none() {
                    slot = Some(
                        PollSlot::acquire(shared)
                            .ok_or_else(|| RequestError::from_code(ErrorCode::MessageNotExist))?,
                    );
                }
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // Unreachable while `shared` lives; never spin on it.
                            tokio::select! {
                                () = tokio::time::sleep_until(deadline.into()) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                    }
                    () = tokio::time::sleep_until(deadline.into()) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        Operation::Ack {
            group,
            kind,
            handles,
        } => {
            let (failures, durable) = {
                let mut core = shared.lock_core();
                let failures = core
                    .ack(
                        shared.clock.now_ms(),
                        key.0.as_ref(),
                        &key.1,
                        group.as_ref(),
                        kind,
                        &handles,
                    )
                    .map_err(core_error)?;
                shared.changed(&core, &key);
                (failures, core.sync_point())
            };
            durable.wait().await.map_err(storage_error)?;
            if failures.is_empty() {
                Ok(full(response(StatusCode::NO_CONTENT, Bytes::new(), rid)))
            } else {
                Ok(full(response(
                    StatusCode::NOT_FOUND,
                    encode_errors(&failures),
                    rid,
                )))
            }
        }
    }
}
