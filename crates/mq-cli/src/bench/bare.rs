//! A bare hyper server on the broker's stack (tokio, hyper HTTP/1.1 keep-alive, TCP_NODELAY)
//! that reads each request body and answers a canned response: the server limit the broker
//! is compared with. It verifies nothing and stores nothing.
//!
//! Started with [`BareServer::start_floor`] it also does, per request, part of what the
//! protocol requires of any server (with `mq_proto`'s functions, as the broker does): the
//! signature check (PROTOCOL §2.5), the parse of the request, and for a publish the body's
//! MD5 its answer carries (`MessageBodyMD5`, §3.8) — and still answers the canned bytes (no
//! message id, receipt handle or response document built) and stores nothing. A server
//! does all that and more, so the floor's rate bounds what any server of this protocol on
//! this stack can answer.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mq_tokio::mq_proto::server::{Operation, authenticate, parse_request_bytes, response};
use mq_tokio::mq_proto::sign::SigningKey;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// The canned answers, by method.
#[derive(Clone, Debug)]
pub struct Canned {
    /// `POST` (publish) → `201 Created` with this body.
    pub publish: Bytes,
    /// `GET` (consume) → `200 OK` with this body.
    pub consume: Bytes,
}

/// A running bare server; [`BareServer::shutdown`] stops it.
#[derive(Debug)]
pub struct BareServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl BareServer {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The I/O error of binding the listener.
    pub async fn start(canned: Canned) -> std::io::Result<Self> {
        Self::serve(Answers {
            canned,
            floor: None,
        })
        .await
    }

    /// Binds 127.0.0.1:0 and serves on the current tokio runtime, checking each request's
    /// signature against the access key `access_key_id` / `access_key_secret`, parsing it,
    /// and computing a published body's MD5 before answering (see the [module
    /// documentation](self)). A request that fails the check or the parse is answered `400`.
    ///
    /// # Errors
    ///
    /// The I/O error of binding the listener.
    pub async fn start_floor(
        canned: Canned,
        access_key_id: &str,
        access_key_secret: &str,
    ) -> std::io::Result<Self> {
        Self::serve(Answers {
            canned,
            floor: Some((access_key_id.to_owned(), SigningKey::new(access_key_secret))),
        })
        .await
    }

    async fn serve(answers: Answers) -> std::io::Result<Self> {
        // The broker's listening socket (same accept queue), so only the answers differ.
        let listener = mq_broker::server::listen(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            mq_broker::Limits::default().listen_backlog,
        )?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let canned = Arc::new(answers);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                    _ = stopped.wait_for(|s| *s) => break,
                };
                let _ = stream.set_nodelay(true);
                let canned = canned.clone();
                let service = hyper::service::service_fn(move |req| {
                    let canned = canned.clone();
                    async move { Ok::<_, Infallible>(answer(&canned, req).await) }
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        });
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the server answers, and whether it does the protocol's required work first.
struct Answers {
    canned: Canned,
    /// The access key requests are checked against ([`BareServer::start_floor`]).
    floor: Option<(String, SigningKey)>,
}

async fn answer(answers: &Answers, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let canned = &answers.canned;
    let (parts, body) = req.into_parts();
    // Read the whole body, as the broker does.
    let body = body.collect().await.map(|b| b.to_bytes());
    if let Some((id, key)) = &answers.floor {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let checked = authenticate(
            &parts.method,
            target,
            &parts.headers,
            SystemTime::now(),
            |got| (got == id).then(|| key.clone()),
        );
        let parsed = match (checked, &body) {
            (Ok(_), Ok(body)) => {
                parse_request_bytes(&parts.method, target, &parts.headers, body).ok()
            }
            _ => None,
        };
        match parsed.map(|p| p.operation) {
            Some(Operation::Publish(message)) => {
                std::hint::black_box(message.body_md5());
            }
            Some(_) => {}
            None => {
                return response(StatusCode::BAD_REQUEST, Bytes::new(), "bare").map(Full::new);
            }
        }
    }
    let (status, body) = match parts.method {
        Method::POST => (StatusCode::CREATED, canned.publish.clone()),
        Method::GET => (StatusCode::OK, canned.consume.clone()),
        _ => (StatusCode::NO_CONTENT, Bytes::new()),
    };
    response(status, body, "bare").map(Full::new)
}
