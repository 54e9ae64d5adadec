//! A bare hyper server on the broker's stack (tokio, hyper HTTP/1.1 keep-alive, TCP_NODELAY)
//! that reads each request body and answers a canned response: the server limit the broker
//! is compared with. It verifies nothing and stores nothing.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mq_tokio::mq_proto::server::response;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
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
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let canned = Arc::new(canned);
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

async fn answer(canned: &Canned, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    // Read the whole body, as the broker does.
    let _ = req.into_body().collect().await;
    let (status, body) = match method {
        Method::POST => (StatusCode::CREATED, canned.publish.clone()),
        Method::GET => (StatusCode::OK, canned.consume.clone()),
        _ => (StatusCode::NO_CONTENT, Bytes::new()),
    };
    response(status, body, "bare").map(Full::new)
}
