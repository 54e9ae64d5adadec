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

use crate::runtime::{BoxFuture, ConnectTarget, Runtime, timeout};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use std::collections::HashMap;
use std::fmt;
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
    /// The response was not valid HTTP or its body was too large.
    Protocol,
}

/// A transport-level failure.
#[derive(Clone, Debug, thiserror::Error)]
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
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(50),
            max_idle_per_host: 64,
        }
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    https: bool,
    host: String,
    port: u16,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

impl Pool {
    fn take(&self, key: &PoolKey, idle_timeout: Duration) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < idle_timeout
                && !entry.sender.is_closed()
                && entry.sender.is_ready()
            {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, key: PoolKey, sender: Sender, max: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        list.retain(|e| !e.sender.is_closed());
        if list.len() < max {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// The default transport: pooled HTTP/1.1 keep-alive connections, TCP_NODELAY, TLS through
/// rustls, transparent resend on pooled connections closed by the server.
pub struct PooledTransport<R: Runtime> {
    runtime: R,
    tls: Arc<rustls::ClientConfig>,
    config: PoolConfig,
    pool: Arc<Pool>,
}

impl<R: Runtime> fmt::Debug for PooledTransport<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledTransport")
            .field("config", &self.config)
            .field("idle_connections", &self.pool.idle_count())
            .finish()
    }
}

impl<R: Runtime> PooledTransport<R> {
    /// A pool on `runtime` using `tls` for `https` endpoints.
    pub fn new(runtime: R, tls: Arc<rustls::ClientConfig>, config: PoolConfig) -> Self {
        Self {
            runtime,
            tls,
            config,
            pool: Arc::new(Pool::default()),
        }
    }

    /// Number of idle pooled connections (for diagnostics and tests).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

fn pool_key(request: &Request<Bytes>) -> Result<PoolKey, TransportError> {
    let uri = request.uri();
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
    Ok(PoolKey { https, host, port })
}

struct Parts {
    method: Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Parts {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        // hyper's HTTP/1 client writes the request-target as given: use origin-form.
        *req.uri_mut() = self
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_default();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

impl<R: Runtime> PooledTransport<R> {
    async fn connect(&self, key: &PoolKey) -> Result<Sender, TransportError> {
        let target = ConnectTarget {
            host: key.host.clone(),
            port: key.port,
            tls: key.https.then(|| self.tls.clone()),
        };
        let connect = self.runtime.connect(target);
        let io = timeout(&self.runtime, self.config.connect_timeout, connect)
            .await
            .ok_or_else(|| {
                TransportError::new(
                    TransportErrorKind::Connect,
                    format!(
                        "connecting to {}:{} timed out after {:?}",
                        key.host, key.port, self.config.connect_timeout
                    ),
                )
            })?
            .map_err(|e| {
                let kind = if key.https && crate::tls::is_permanent_tls_failure(&e) {
                    TransportErrorKind::Tls
                } else {
                    TransportErrorKind::Connect
                };
                TransportError::new(
                    kind,
                    format!("connecting to {}:{}: {e}", key.host, key.port),
                )
            })?;
        let (sender, connection) = http1::Builder::new()
            .handshake::<_, Full<Bytes>>(io)
            .await
            .map_err(|e| {
                TransportError::new(TransportErrorKind::Connect, format!("HTTP handshake: {e}"))
            })?;
        let open = crate::telemetry::Counted::pool_connection();
        self.runtime.spawn(Box::pin(async move {
            let _open = open;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with error");
            }
        }));
        Ok(sender)
    }

    async fn send_inner(&self, parts: Parts) -> Result<Response<Bytes>, TransportError> {
        let key = pool_key_from(&parts)?;
        let idempotent = parts.method == Method::GET || parts.method == Method::DELETE;
        let mut resent_after_loss = false;
        loop {
            let (mut sender, reused) = match self.pool.take(&key, self.config.idle_timeout) {
                Some(s) => (s, true),
                None => (self.connect(&key).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(TransportError::new(
                    TransportErrorKind::NotSent,
                    "new connection closed before the request was sent",
                ));
            }
            let result = sender.try_send_request(parts.request()).await;
            let response = match result {
                Ok(r) => r,
                Err(mut e) => {
                    if e.take_message().is_some() {
                        // Never written: safe to send again on a fresh connection.
                        if reused {
                            tracing::debug!("pooled connection was closed; resending");
                            continue;
                        }
                        return Err(TransportError::new(
                            TransportErrorKind::NotSent,
                            format!("request not sent: {}", e.error()),
                        ));
                    }
                    let err = e.into_error();
                    if reused && idempotent && !resent_after_loss && stale_connection(&err) {
                        tracing::debug!(error = %err, "reused connection lost; resending idempotent request");
                        resent_after_loss = true;
                        continue;
                    }
                    return Err(TransportError {
                        kind: TransportErrorKind::ConnectionLost,
                        message: format!("connection lost: {err}"),
                        reused_connection: reused,
                    });
                }
            };
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
                    message: format!("reading response body: {e}"),
                    reused_connection: reused,
                })?
                .to_bytes();
            let keep_alive = !head
                .headers
                .get(http::header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if keep_alive && !sender.is_closed() {
                self.pool.put(key, sender, self.config.max_idle_per_host);
            }
            return Ok(Response::from_parts(head, body));
        }
    }
}

fn pool_key_from(parts: &Parts) -> Result<PoolKey, TransportError> {
    let mut probe = Request::new(Bytes::new());
    *probe.uri_mut() = parts.uri.clone();
    pool_key(&probe)
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
        let this = Self {
            runtime: self.runtime.clone(),
            tls: self.tls.clone(),
            config: self.config.clone(),
            pool: self.pool.clone(),
        };
        let (head, body) = request.into_parts();
        let parts = Parts {
            method: head.method,
            uri: head.uri,
            headers: head.headers,
            body,
        };
        Box::pin(async move {
            let runtime = this.runtime.clone();
            crate::runtime::timeout(&runtime, timeout, this.send_inner(parts))
                .await
                .unwrap_or_else(|| {
                    Err(TransportError::new(
                        TransportErrorKind::Timeout,
                        format!("no complete response within {timeout:?}"),
                    ))
                })
        })
    }
}
