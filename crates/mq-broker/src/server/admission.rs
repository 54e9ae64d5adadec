//! Admission: routing (`/health`, `/stats`, `/metrics`, the API), authentication before the body is
//! read, the body size and time limits, the instance scope of a key; an admitted request
//! goes to [`dispatch`](super::dispatch).

use super::dispatch::{dispatch, error, full};
use super::faults::Fail;
use super::state::Shared;
use super::{admin, console, metrics};
use crate::core::Stats;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use mq_proto::ErrorCode;
use mq_proto::server::{authenticate_key, parse_request_bytes, response};
use mq_proto::wire::error::RequestError;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest time a request refused by authentication may take to deliver the rest of its
/// body (capped by [`Limits::body_read_timeout`](super::Limits::body_read_timeout)). A body that arrives within it is read and
/// dropped and the connection stays usable; otherwise the refusal is answered with
/// `Connection: close` and the connection ends. An unauthenticated client thus holds a
/// connection for seconds, not for the body timeout.
pub const PRE_AUTH_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The server-side counters added to `GET /stats` (its `server` object; every field is
/// in the README's `/stats` table).
#[derive(Serialize)]
struct ServerStats {
    /// Connections open now.
    connections: usize,
    /// The most connections open at once since start.
    connections_peak: usize,
    /// Long polls waiting now.
    waiting_polls: usize,
    /// Requests received before this one, on every path.
    requests: u64,
}

/// The `GET /stats` document: the core's [`Stats`] plus a `server` object.
#[derive(Serialize)]
struct StatsDocument {
    #[serde(flatten)]
    core: Stats,
    server: ServerStats,
}

/// The `/stats` document (also `GET /admin/stats`): the backend's [`Stats`] and the
/// server's counters, without what the backend does not count.
///
/// # Errors
///
/// The document cannot be serialised.
pub(super) fn stats_value(shared: &Shared) -> Result<serde_json::Value, serde_json::Error> {
    let doc = StatsDocument {
        core: shared.backend.stats(),
        server: ServerStats {
            connections: shared.connections.load(Ordering::Acquire),
            connections_peak: shared.connections_peak.load(Ordering::Acquire),
            waiting_polls: shared.waiting_polls.load(Ordering::Acquire),
            requests: shared.requests.load(Ordering::Relaxed).saturating_sub(1),
        },
    };
    let mut doc = serde_json::to_value(&doc)?;
    shared.backend.counted().filter_stats(&mut doc);
    Ok(doc)
}

fn metrics_document(shared: &Shared) -> Result<String, std::fmt::Error> {
    metrics::render(
        &shared.request_metrics,
        &shared.backend.stats(),
        &shared.backend.counted(),
        shared.backend.commit_metrics(),
        &metrics::ServerGauges {
            connections: shared.connections.load(Ordering::Acquire),
            waiting_polls: shared.waiting_polls.load(Ordering::Acquire),
        },
    )
}

/// A non-XML answer (`/health`, `/stats`, `/metrics`, `/admin/…`) with the protocol headers
/// all responses carry.
pub(super) fn plain(
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

/// The connection is closed without an answer (an injected `reset` fault).
#[derive(Debug)]
pub(super) struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by an injected fault")
    }
}

impl std::error::Error for ConnectionReset {}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let started = Instant::now();
    let rid = shared.next_request_id();
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    // The request-target as received (origin form), which is what clients sign: shared
    // with the request's URI, not copied (an authority-form target has no path: "").
    let target = parts.uri.path_and_query().cloned();
    let target = target.as_ref().map_or("", http::uri::PathAndQuery::as_str);
    // What the request was, for `mq_requests_total` (set by `serve_api` once parsed).
    let mut operation = "refused";
    // The unsigned endpoints answer whatever their query (load balancers' probes add one).
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    // `HEAD` on these endpoints and the console's pages is answered as `GET` (RFC 9110
    // §9.3.2): the same status and header fields, `Content-Length` the length a `GET` would
    // carry; hyper sends no content in the answer to a `HEAD`.
    let resp = match (&method, path) {
        (_, "/health" | "/ready" | "/stats" | "/metrics") => {
            let resp = status_endpoint(&shared, &rid, &method, path, &mut operation).await;
            without_body(&shared, &parts.headers, body, resp).await
        }
        (m, p) if console::serves(m, p) => {
            let req = Request::from_parts(parts, body);
            console::handle(&shared, &rid, req, target, &mut operation).await
        }
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            let has_body = !hyper::body::Body::is_end_stream(&body);
            admin::handle(
                &shared,
                &rid,
                &method,
                target,
                &parts.headers,
                has_body,
                &mut operation,
            )
            .await
        }
        _ => match serve_api(
            &shared,
            &rid,
            Request::from_parts(parts, body),
            &method,
            target,
            &mut operation,
        )
        .await
        {
            Ok(r) => r,
            Err(Refusal { reset: true, .. }) => {
                shared
                    .request_metrics
                    .observe(operation, 0, started.elapsed());
                tracing::debug!(request_id = %rid, operation, "injected fault: connection reset");
                return Err(ConnectionReset);
            }
            Err(Refusal {
                error: e, close, ..
            }) => {
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
    if let Some(date) = shared.clock.http_date() {
        resp.headers_mut().insert(http::header::DATE, date);
    }
    shared
        .request_metrics
        .observe(operation, resp.status().as_u16(), started.elapsed());
    tracing::debug!(
        request_id = %rid,
        %method,
        target = %target,
        operation,
        status = resp.status().as_u16(),
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    Ok(resp)
}

/// The answer of a read-only endpoint (`/health`, `/ready`, `/stats`, `/metrics`).
async fn status_endpoint(
    shared: &Shared,
    rid: &str,
    method: &Method,
    path: &str,
    operation: &mut &'static str,
) -> Response<Full<Bytes>> {
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/health") => {
            *operation = "health";
            plain(
                StatusCode::OK,
                "text/plain;charset=utf-8",
                Bytes::from_static(b"ok\n"),
                rid,
            )
        }
        (&Method::GET | &Method::HEAD, "/ready") => {
            *operation = "ready";
            // Readiness for a load balancer: 503 while the backend cannot serve (the
            // gateway's engine does not answer, the journal stopped after a storage
            // failure); `/health` says only that this process runs.
            let (status, text): (_, &'static [u8]) = match shared.backend.ready().await {
                Ok(()) => (StatusCode::OK, b"ready\n"),
                Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why.as_bytes()),
            };
            plain(
                status,
                "text/plain;charset=utf-8",
                Bytes::from_static(text),
                rid,
            )
        }
        (&Method::GET | &Method::HEAD, "/stats") => {
            *operation = "stats";
            match stats_value(shared).and_then(|doc| serde_json::to_vec_pretty(&doc)) {
                Ok(json) => plain(StatusCode::OK, "application/json", json.into(), rid),
                Err(e) => error(
                    shared,
                    rid,
                    RequestError::new(ErrorCode::InternalError, e.to_string()),
                ),
            }
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            *operation = "metrics";
            match metrics_document(shared) {
                Ok(text) => plain(StatusCode::OK, metrics::CONTENT_TYPE, text.into(), rid),
                Err(e) => error(
                    shared,
                    rid,
                    RequestError::new(ErrorCode::InternalError, e.to_string()),
                ),
            }
        }
        _ => {
            // Read-only: any other method is 405 with the methods that work (RFC 9110
            // §15.5.6), not an API error about a missing signature.
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain;charset=utf-8",
                Bytes::from(format!("{path} answers GET and HEAD only\n")),
                rid,
            );
            resp.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            resp
        }
    }
}

/// `resp`, given without reading the request's body: a body on its way is read and dropped
/// (within the body limit and [`PRE_AUTH_DRAIN_TIMEOUT`]) so that the connection goes on;
/// one that is not — or one its client waits to send until told `100 Continue` (`expects`
/// it: reading would ask for a body nobody needs) — is answered with `Connection: close`
/// (hyper then closes the connection, which the client is told instead of finding it
/// closed under its next request).
pub(super) async fn without_body(
    shared: &Shared,
    headers: &http::HeaderMap,
    body: Incoming,
    mut resp: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    if hyper::body::Body::is_end_stream(&body) {
        return resp;
    }
    let drain_for = shared.limits.body_read_timeout.min(PRE_AUTH_DRAIN_TIMEOUT);
    if expects_continue(headers) || !drain(body, shared.limits.max_body_bytes, drain_for).await {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Whether the client waits for `100 Continue` before sending the body.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// A refused request, and whether its connection must close because part of the request
/// body was left unread, or be closed without an answer (an injected fault).
struct Refusal {
    error: RequestError,
    close: bool,
    reset: bool,
}

impl From<RequestError> for Refusal {
    fn from(error: RequestError) -> Self {
        Self {
            error,
            close: false,
            reset: false,
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

/// The refusal of a body longer than `max` bytes (the service's message).
fn too_big(max: usize) -> RequestError {
    RequestError::new(
        ErrorCode::InvalidArgument,
        format!("The value of body should between 0 and {max} bytes."),
    )
}

/// Reads a request body of at most [`Limits::max_body_bytes`](super::Limits::max_body_bytes)
/// within [`Limits::body_read_timeout`](super::Limits::body_read_timeout).
///
/// # Errors
///
/// `InvalidArgument`: the body is longer, broken, or not received in time (the caller
/// closes the connection: part of the body may be left unread).
pub(super) async fn read_body(shared: &Shared, body: Incoming) -> Result<Bytes, RequestError> {
    let max = shared.limits.max_body_bytes;
    match within(
        shared.limits.body_read_timeout,
        Limited::new(body, max).collect(),
    )
    .await
    {
        Some(Ok(b)) => Ok(b.to_bytes()),
        Some(Err(e)) if e.is::<LengthLimitError>() => Err(too_big(max)),
        Some(Err(e)) => Err(RequestError::new(
            ErrorCode::InvalidArgument,
            format!("could not read the request body: {e}"),
        )),
        None => Err(RequestError::new(
            ErrorCode::InvalidArgument,
            "the request body was not received in time",
        )),
    }
}

/// `fut`'s output if it finishes within `limit` (`None` otherwise). The timer is armed only
/// when `fut` is not ready at its first poll: a small body arrives with its request's
/// header, and most requests never need one (arming and clearing it was ≈ 1% of the
/// broker's time per publish).
async fn within<F: std::future::Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(out) = first {
        return Some(out);
    }
    tokio::time::timeout(limit, fut).await.ok()
}

async fn serve_api(
    shared: &Arc<Shared>,
    rid: &str,
    req: Request<Incoming>,
    method: &Method,
    target: &str,
    operation: &mut &'static str,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let (parts, body) = req.into_parts();
    let max = shared.limits.max_body_bytes;
    let declared_len = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let oversize = declared_len.is_some_and(|l| l > max as u64);
    let expects_continue = expects_continue(&parts.headers);

    // Authenticate and check the declared length before reading the body: the signature
    // does not cover it, and a client sending `Expect: 100-continue` only sends it (after
    // hyper's `100 Continue`) once we start reading.
    let key = match authenticate_key(
        method,
        target,
        &parts.headers,
        shared.clock.signing_now(),
        |id| shared.credentials.get(id),
    ) {
        Ok(key) => key,
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
            return Err(Refusal {
                error,
                close,
                reset: false,
            });
        }
    };
    if oversize {
        return Err(Refusal {
            error: too_big(max),
            close: true,
            reset: false,
        });
    }
    // Read as one piece, the document is often a slice of hyper's read buffer: a published
    // message keeps none of it (the parse packs its texts into a buffer of their own).
    let body = read_body(shared, body).await.map_err(|error| Refusal {
        error,
        close: true,
        reset: false,
    })?;
    let parsed = parse_request_bytes(method, target, &parts.headers, &body)?;
    *operation = parsed.operation.name();
    if let Some(scope) = &key.instance
        && parsed.instance.as_ref() != Some(scope)
    {
        return Err(RequestError::new(
            ErrorCode::AccessDenied,
            format!(
                "{} The AccessKey {} is limited to instance {scope}.",
                ErrorCode::AccessDenied.default_message(),
                key.id
            ),
        )
        .into());
    }
    let injected = shared.faults.draw(parsed.operation.name());
    if !injected.delay.is_zero() {
        tokio::time::sleep(injected.delay).await;
    }
    match injected.fail {
        None => {}
        Some(Fail::Error(code)) => {
            let message = format!("{} (injected fault)", code.default_message());
            return Err(RequestError::new(code, message).into());
        }
        Some(Fail::Reset) => {
            return Err(Refusal {
                error: RequestError::from_code(ErrorCode::InternalError),
                close: true,
                reset: true,
            });
        }
    }
    Ok(dispatch(shared, rid, parsed, &key.id).await?)
}
