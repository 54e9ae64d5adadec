//! HTTP transport: a pluggable [`Transport`] trait and the default [`PooledTransport`], an
//! HTTP/1.1 keep-alive connection pool on hyper's connection API, generic over the runtime.
//!
//! The pool knows whether a request went out on a reused connection and whether it was
//! written at all, which is what makes retries safe:
//! - a request that was never written (the pooled connection was found closed) is resent on a
//!   fresh connection, always;
//! - a `GET`/`DELETE` that failed on a *reused* connection before any response byte (the
//!   server closed an idle keep-alive connection as we sent) is resent once on a fresh
//!   connection; a `POST` (publish) is not, because it may have reached the server — the
//!   caller's retry policy decides.
//!
//! With [`PoolConfig::max_connections_per_endpoint`] set, at most that many connections to
//! one endpoint (through one proxy) are open at once, idle or busy: a request that finds
//! none free waits for one to come back (a long poll holds its connection for its whole
//! wait) up to [`PoolConfig::max_connection_wait`], then fails with
//! [`TransportErrorKind::PoolTimeout`] (not sent; retryable). The request timeout starts once
//! the request has a connection.
//!
//! Requests go through an HTTP proxy when [`PooledTransport::with_proxy`] names one for
//! their endpoint (see [`Proxy`]); connections through different proxies are pooled apart.

use crate::proxy::{self, Proxy, ProxyRoute, Tunnel};
use crate::runtime::{BoxFuture, ConnectTarget, Runtime, timeout};
use bytes::Bytes;
use futures::channel::oneshot;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest response body accepted (16 messages of 4 MB plus XML overhead).
pub const MAX_RESPONSE_BODY: usize = 80 * 1024 * 1024;

/// Why a request failed below the HTTP status level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not connect (DNS, refused, connect timeout, an I/O failure or reset during the
    /// TLS handshake): nothing was sent; a later attempt may connect.
    Connect,
    /// The TLS handshake was refused for a reason no new connection changes: the server's
    /// certificate failed verification (unknown issuer, wrong host name, expired, bad
    /// signature), the host is no valid TLS server name, the peer is incompatible or broke
    /// the protocol, or it sent a fatal alert blaming us. Nothing was sent; not retried.
    Tls,
    /// The request was provably not written to any connection.
    NotSent,
    /// The connection failed after the request may have been written.
    ConnectionLost,
    /// No complete response within the request timeout.
    Timeout,
    /// The response was not valid HTTP or its body was too large, or an HTTP proxy's answer
    /// to `CONNECT` was not HTTP.
    Protocol,
    /// No pooled connection became free within [`PoolConfig::max_connection_wait`] while
    /// the endpoint had [`PoolConfig::max_connections_per_endpoint`] connections open. The
    /// request was not sent; retryable.
    PoolTimeout,
    /// An HTTP proxy refused the request: its answer to `CONNECT` (for an `https` endpoint)
    /// was not 2xx, or it answered a forwarded request (an `http` endpoint) itself with 407,
    /// or with 401 without the service's `x-mq-request-id` (tinyproxy's answer to wrong
    /// credentials). Nothing reached the endpoint. 407 and 401 (proxy credentials missing or
    /// wrong) and 403 (the proxy's policy) are final; 502, 503 and 504 (the proxy could not
    /// reach the endpoint) are retried like a refused connection
    /// ([`crate::Error::failure_kind`]).
    ProxyRefused {
        /// The proxy's status code.
        status: u16,
    },
}

/// A transport-level failure: built with [`TransportError::new`] (a custom [`Transport`]
/// says with its [`kind`](Self::kind) how far the request got).
///
/// ```
/// use mq_client::{TransportError, TransportErrorKind};
///
/// let e = TransportError::new(TransportErrorKind::NotSent, "no route to the endpoint");
/// assert_eq!(e.to_string(), "NotSent: no route to the endpoint");
/// assert!(!e.reused_connection);
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{kind:?}: {message}")]
pub struct TransportError {
    /// What kind of failure this is.
    pub kind: TransportErrorKind,
    /// Human-readable detail (never contains credentials).
    pub message: String,
    /// Whether the request went out on a connection that had served earlier requests.
    pub reused_connection: bool,
}

impl TransportError {
    /// Creates an error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            reused_connection: false,
        }
    }
}

/// Sends one HTTP request and returns the complete response.
///
/// The default is [`PooledTransport`]; tests and custom stacks can provide their own.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` and reads the whole response within `timeout`. An HTTP error status
    /// is a response, not an error.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] whose [`kind`](TransportError::kind) says how far the request
    /// got: the client's retries depend on it ([`TransportErrorKind::NotSent`] and
    /// [`TransportErrorKind::Connect`] mean it was surely not sent; `ConnectionLost`,
    /// `Timeout` and `Protocol` that it may have reached the server).
    fn send(
        &self,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<Result<Response<Bytes>, TransportError>>;
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// How long to wait for a TCP connection (and TLS handshake).
    pub connect_timeout: Duration,
    /// Idle connections older than this are not reused.
    pub idle_timeout: Duration,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// Most connections open at once to one endpoint through one proxy (or directly),
    /// counting idle ones and those waiting in a long poll; `None` (the default) for no
    /// limit. See README "Sizing the connection cap".
    pub max_connections_per_endpoint: Option<NonZeroUsize>,
    /// Longest a request waits for a free connection when the endpoint is at
    /// `max_connections_per_endpoint` (default 10 s); past it the request fails with
    /// [`TransportErrorKind::PoolTimeout`]. Not counted in the request timeout.
    pub max_connection_wait: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(50),
            max_idle_per_host: 64,
            max_connections_per_endpoint: None,
            max_connection_wait: Duration::from_secs(10),
        }
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

/// Where a pooled connection goes: the endpoint, and the proxy it goes through.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    https: bool,
    host: String,
    port: u16,
    proxy: Option<ProxyRoute>,
}

impl PoolKey {
    /// `host:port`, and the proxy's address when there is one (never its credentials).
    fn describe(&self) -> String {
        let endpoint = authority(&self.host, self.port);
        match &self.proxy {
            Some(p) => format!("{endpoint} through proxy {}", authority(&p.host, p.port)),
            None => endpoint,
        }
    }
}

/// `host:port`, an IPv6 address in brackets (`[::1]:8080`, not `::1:8080`): in errors and
/// in a `CONNECT` request.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// One endpoint's connections: the idle ones, how many are open (idle or busy), and the
/// requests waiting for one.
#[derive(Default)]
struct Host {
    idle: Vec<Idle>,
    open: usize,
    waiters: VecDeque<oneshot::Sender<()>>,
}

impl Host {
    /// Tells the longest-waiting request still waiting that a connection came free.
    fn wake_one(&mut self) {
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.send(()).is_ok() {
                return;
            }
        }
    }
}

#[derive(Default)]
struct Pool {
    hosts: Mutex<HashMap<PoolKey, Host>>,
}

/// What a request gets from the pool.
enum Checkout {
    /// A pooled connection, ready.
    Idle(Sender),
    /// Room for a new connection, counted while the slot lives.
    Connect(Slot),
    /// Wait for a connection to come free.
    Wait(Waiter),
}

/// A connection for one request: a pooled one, or room to open one.
enum Acquired {
    Idle(Sender),
    New(Slot),
}

/// One open connection counted against the cap; released when dropped (the connection's
/// task ends, or connecting failed).
struct Slot {
    pool: Arc<Pool>,
    key: PoolKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut hosts = self.pool.lock();
        if let Some(host) = hosts.get_mut(&self.key) {
            host.open = host.open.saturating_sub(1);
            host.wake_one();
            if host.open == 0 && host.idle.is_empty() && host.waiters.is_empty() {
                hosts.remove(&self.key);
            }
        }
    }
}

/// A request waiting for a connection. Dropped after being woken but before using the wake
/// (it timed out, or its future was dropped), it passes the wake on.
struct Waiter {
    rx: oneshot::Receiver<()>,
    pool: Arc<Pool>,
    key: PoolKey,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(Some(())) = self.rx.try_recv()
            && let Some(host) = self.pool.lock().get_mut(&self.key)
        {
            host.wake_one();
        }
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Host>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout(self: &Arc<Self>, key: &PoolKey, config: &PoolConfig) -> Checkout {
        let mut stale = Vec::new();
        let checkout = {
            let mut hosts = self.lock();
            let host = hosts.entry(key.clone()).or_default();
            let mut found = None;
            while let Some(entry) = host.idle.pop() {
                // Not `is_ready()`: a connection just put back may not be ready until its
                // task has run once more; dropping it would close a good connection (and,
                // under a cap, open another while the server still counts the first). The
                // request waits for readiness and resends if it turns out closed.
                if entry.since.elapsed() < config.idle_timeout && !entry.sender.is_closed() {
                    found = Some(entry.sender);
                    break;
                }
                // Closing it ends its task, which frees its slot (outside this lock).
                stale.push(entry.sender);
            }
            match found {
                Some(sender) => Checkout::Idle(sender),
                None if config
                    .max_connections_per_endpoint
                    .is_none_or(|max| host.open < max.get()) =>
                {
                    host.open += 1;
                    Checkout::Connect(Slot {
                        pool: self.clone(),
                        key: key.clone(),
                    })
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    host.waiters.push_back(tx);
                    Checkout::Wait(Waiter {
                        rx,
                        pool: self.clone(),
                        key: key.clone(),
                    })
                }
            }
        };
        drop(stale);
        checkout
    }

    fn put(&self, key: PoolKey, sender: Sender, max: usize) {
        let mut hosts = self.lock();
        let host = hosts.entry(key).or_default();
        host.idle.retain(|e| !e.sender.is_closed());
        if host.idle.len() < max {
            host.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
            host.wake_one();
        } else {
            drop(hosts);
            drop(sender);
        }
    }

    fn idle_count(&self) -> usize {
        self.lock().values().map(|h| h.idle.len()).sum()
    }
}

/// The default transport: pooled HTTP/1.1 keep-alive connections, TCP_NODELAY, TLS through
/// rustls, transparent resend on pooled connections closed by the server, an optional cap on
/// connections per endpoint, and HTTP proxies.
pub struct PooledTransport<R: Runtime> {
    runtime: R,
    tls: Arc<rustls::ClientConfig>,
    config: PoolConfig,
    proxy: Option<Proxy>,
    pool: Arc<Pool>,
}

impl<R: Runtime> Clone for PooledTransport<R> {
    fn clone(&self) -> Self {
        Self {
            runtime: self.runtime.clone(),
            tls: self.tls.clone(),
            config: self.config.clone(),
            proxy: self.proxy.clone(),
            pool: self.pool.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for PooledTransport<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledTransport")
            .field("config", &self.config)
            .field("proxy", &self.proxy)
            .field("idle_connections", &self.pool.idle_count())
            .finish()
    }
}

impl<R: Runtime> PooledTransport<R> {
    /// A pool on `runtime` using `tls` for `https` endpoints, connecting directly.
    pub fn new(runtime: R, tls: Arc<rustls::ClientConfig>, config: PoolConfig) -> Self {
        Self {
            runtime,
            tls,
            config,
            proxy: None,
            pool: Arc::new(Pool::default()),
        }
    }

    /// Sends requests through the proxy `proxy` names for their endpoint (`None`: direct).
    pub fn with_proxy(mut self, proxy: Option<Proxy>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Number of idle pooled connections (for diagnostics and tests).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

fn pool_key(uri: &http::Uri, proxy: Option<&Proxy>) -> Result<PoolKey, TransportError> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => {
            return Err(TransportError::new(
                TransportErrorKind::NotSent,
                format!("unsupported URI scheme {other:?}"),
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| TransportError::new(TransportErrorKind::NotSent, "URI has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(PoolKey {
        https,
        host,
        port,
        proxy: proxy.and_then(|p| p.route(uri)),
    })
}

struct Parts {
    method: Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Parts {
    /// The request to write on a connection for `key`: origin-form (`/path?query`), or
    /// absolute-form with `Proxy-Authorization` when it goes to an HTTP proxy unencrypted.
    fn request(&self, key: &PoolKey) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = self.headers.clone();
        match &key.proxy {
            Some(route) if !key.https => {
                // hyper's HTTP/1 client writes the request-target as given.
                *req.uri_mut() = self.uri.clone();
                route.authorize(req.headers_mut());
            }
            _ => {
                *req.uri_mut() = self
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str())
                    .unwrap_or("/")
                    .parse()
                    .unwrap_or_default();
            }
        }
        req
    }
}

impl<R: Runtime> PooledTransport<R> {
    /// A connection for `key`: an idle one, a new one, or one that comes free within
    /// `max_connection_wait`.
    async fn acquire(&self, key: &PoolKey) -> Result<Acquired, TransportError> {
        let started = Instant::now();
        loop {
            match self.pool.checkout(key, &self.config) {
                Checkout::Idle(sender) => return Ok(Acquired::Idle(sender)),
                Checkout::Connect(slot) => return Ok(Acquired::New(slot)),
                Checkout::Wait(mut waiter) => {
                    let left = self
                        .config
                        .max_connection_wait
                        .saturating_sub(started.elapsed());
                    if timeout(&self.runtime, left, &mut waiter.rx).await.is_none() {
                        return Err(TransportError::new(
                            TransportErrorKind::PoolTimeout,
                            format!(
                                "no free connection to {} within {:?} ({} open, the cap)",
                                key.describe(),
                                self.config.max_connection_wait,
                                self.config
                                    .max_connections_per_endpoint
                                    .map_or(0, NonZeroUsize::get),
                            ),
                        ));
                    }
                }
            }
        }
    }

    async fn connect(&self, key: &PoolKey, slot: Slot) -> Result<Sender, TransportError> {
        let target = match &key.proxy {
            // Plain HTTP through a proxy: the connection is to the proxy.
            Some(route) if !key.https => ConnectTarget {
                host: route.host.clone(),
                port: route.port,
                tls: None,
                tunnel: None,
            },
            route => ConnectTarget {
                host: key.host.clone(),
                port: key.port,
                tls: key.https.then(|| self.tls.clone()),
                tunnel: route.as_ref().map(Tunnel::from),
            },
        };
        let connect = self.runtime.connect(target);
        let io = timeout(&self.runtime, self.config.connect_timeout, connect)
            .await
            .ok_or_else(|| {
                TransportError::new(
                    TransportErrorKind::Connect,
                    format!(
                        "connecting to {} timed out after {:?}",
                        key.describe(),
                        self.config.connect_timeout
                    ),
                )
            })?
            .map_err(|e| {
                let kind = if let Some(status) = proxy::refused_status(&e) {
                    TransportErrorKind::ProxyRefused { status }
                } else if proxy::invalid_answer(&e) {
                    TransportErrorKind::Protocol
                } else if key.https && crate::tls::is_permanent_tls_failure(&e) {
                    TransportErrorKind::Tls
                } else {
                    TransportErrorKind::Connect
                };
                TransportError::new(kind, format!("connecting to {}: {e}", key.describe()))
            })?;
        let (sender, connection) = http1::Builder::new()
            .handshake::<_, Full<Bytes>>(io)
            .await
            .map_err(|e| {
                TransportError::new(TransportErrorKind::Connect, format!("HTTP handshake: {e}"))
            })?;
        let open = crate::telemetry::Counted::pool_connection();
        self.runtime.spawn(Box::pin(async move {
            // The connection counts against the cap (and the gauge) until it ends.
            let _slot = slot;
            let _open = open;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with error");
            }
        }));
        Ok(sender)
    }

    async fn send_inner(
        &self,
        parts: Parts,
        request_timeout: Duration,
    ) -> Result<Response<Bytes>, TransportError> {
        let key = pool_key(&parts.uri, self.proxy.as_ref())?;
        let mut resent_after_loss = false;
        // The request timeout runs from when the request first has a connection.
        let mut deadline = None;
        loop {
            let acquired = self.acquire(&key).await?;
            // `None`: a timeout too long for the clock (`Duration::MAX`), that is none.
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now().checked_add(request_timeout));
            let left = deadline.map_or(request_timeout, |d| {
                d.saturating_duration_since(Instant::now())
            });
            let exchange = self.exchange(&key, acquired, &parts, &mut resent_after_loss);
            match timeout(&self.runtime, left, exchange).await {
                Some(Ok(Some(response))) => return Ok(response),
                Some(Ok(None)) => continue,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(TransportError::new(
                        TransportErrorKind::Timeout,
                        format!("no complete response within {request_timeout:?}"),
                    ));
                }
            }
        }
    }

    /// One try on one connection: the response, `None` to send again on another
    /// connection, or the error.
    async fn exchange(
        &self,
        key: &PoolKey,
        acquired: Acquired,
        parts: &Parts,
        resent_after_loss: &mut bool,
    ) -> Result<Option<Response<Bytes>>, TransportError> {
        let idempotent = parts.method == Method::GET || parts.method == Method::DELETE;
        let (mut sender, reused) = match acquired {
            Acquired::Idle(sender) => (sender, true),
            Acquired::New(slot) => (self.connect(key, slot).await?, false),
        };
        if sender.ready().await.is_err() {
            if reused {
                return Ok(None);
            }
            return Err(TransportError::new(
                TransportErrorKind::NotSent,
                "new connection closed before the request was sent",
            ));
        }
        let response = match sender.try_send_request(parts.request(key)).await {
            Ok(r) => r,
            Err(mut e) => {
                if e.take_message().is_some() {
                    // Never written: safe to send again on a fresh connection.
                    if reused {
                        tracing::debug!("pooled connection was closed; resending");
                        return Ok(None);
                    }
                    return Err(TransportError::new(
                        TransportErrorKind::NotSent,
                        format!("request not sent: {}", e.error()),
                    ));
                }
                let err = e.into_error();
                if reused && idempotent && !*resent_after_loss && stale_connection(&err) {
                    tracing::debug!(error = %err, "reused connection lost; resending idempotent request");
                    *resent_after_loss = true;
                    return Ok(None);
                }
                return Err(TransportError {
                    kind: TransportErrorKind::ConnectionLost,
                    message: format!("connection lost: {err}"),
                    reused_connection: reused,
                });
            }
        };
        if key.proxy.is_some()
            && !key.https
            && proxy::is_proxy_refusal(response.status(), response.headers())
        {
            // The proxy's own answer: the request never reached the endpoint.
            let status = response.status().as_u16();
            return Err(TransportError {
                kind: TransportErrorKind::ProxyRefused { status },
                message: format!("{} answered {status}", key.describe()),
                reused_connection: reused,
            });
        }
        let (head, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| TransportError {
                kind: if e.is::<http_body_util::LengthLimitError>() {
                    TransportErrorKind::Protocol
                } else {
                    TransportErrorKind::ConnectionLost
                },
                message: format!("reading response body: {}", with_sources(&*e)),
                reused_connection: reused,
            })?
            .to_bytes();
        let keep_alive = reusable(&head.headers, key.proxy.is_some() && !key.https);
        if keep_alive && !sender.is_closed() {
            self.pool
                .put(key.clone(), sender, self.config.max_idle_per_host);
        }
        Ok(Some(Response::from_parts(head, body)))
    }
}

/// Whether a connection may serve another request after an answer with these headers:
/// not when `Connection` or `Proxy-Connection` says `close`; through a forwarding proxy
/// (an `http` endpoint), only when one of them says `keep-alive`. tinyproxy answers
/// HTTP/1.1 without `Connection: close` and closes at once, so a request that took the
/// connection before its task saw the close was lost unsent — for a publish, an ambiguous
/// `ConnectionLost` (15 % of a 4-worker producer's publishes). The cost: through a proxy
/// that keeps connections without saying so, each request opens one (half the publishes
/// per second of a proxy that says `Proxy-Connection: keep-alive`, in a test proxy).
fn reusable(headers: &http::HeaderMap, through_forwarding_proxy: bool) -> bool {
    let says = |token| {
        has_token(headers, http::header::CONNECTION.as_str(), token)
            || has_token(headers, "proxy-connection", token)
    };
    !says("close") && (!through_forwarding_proxy || says("keep-alive"))
}

/// Whether header `name` lists `token` (case-insensitive, comma-separated values).
fn has_token(headers: &http::HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `error` and its sources, `: `-separated (hyper's errors say what failed, their sources why).
fn with_sources(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Whether an error after sending looks like a keep-alive connection the server had closed.
fn stale_connection(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

impl<R: Runtime> Transport for PooledTransport<R> {
    fn send(
        &self,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<Result<Response<Bytes>, TransportError>> {
        let this = self.clone();
        let (head, body) = request.into_parts();
        let parts = Parts {
            method: head.method,
            uri: head.uri,
            headers: head.headers,
            body,
        };
        Box::pin(async move { this.send_inner(parts, timeout).await })
    }
}

#[cfg(test)]
mod tests {
    use super::{authority, reusable};

    #[test]
    fn a_connection_is_reused_unless_an_answer_or_a_silent_proxy_says_otherwise() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, http::HeaderValue::from_static(value));
            }
            h
        };
        // Direct (or through a CONNECT tunnel): HTTP/1.1 keeps it unless told to close.
        assert!(reusable(&headers(&[]), false));
        assert!(!reusable(&headers(&[("connection", "Close")]), false));
        assert!(!reusable(&headers(&[("connection", "x, close")]), false));
        // Through a forwarding proxy: only when it says keep-alive, and never with a close.
        assert!(!reusable(&headers(&[]), true));
        assert!(reusable(&headers(&[("connection", "keep-alive")]), true));
        assert!(reusable(
            &headers(&[("proxy-connection", "Keep-Alive")]),
            true
        ));
        assert!(!reusable(
            &headers(&[("connection", "keep-alive"), ("proxy-connection", "close")]),
            true
        ));
        assert!(!reusable(&headers(&[("proxy-connection", "close")]), false));
    }

    /// Errors name an IPv6 endpoint or proxy as `[::1]:8080` (it read `::1:8080`).
    #[test]
    fn an_ipv6_host_is_bracketed() {
        assert_eq!(authority("::1", 8080), "[::1]:8080");
        assert_eq!(authority("[::1]", 8080), "[::1]:8080");
        assert_eq!(authority("127.0.0.1", 80), "127.0.0.1:80");
        assert_eq!(authority("proxy.example", 3128), "proxy.example:3128");
    }
}
