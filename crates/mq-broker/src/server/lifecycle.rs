//! The accept loop: connection limit, hyper connections, graceful shutdown.

use super::admission::handle;
use super::state::{ConnectionSlot, Shared};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
            async move { handle(shared, req).await }
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
        let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
        shared.connections_peak.fetch_max(open, Ordering::AcqRel);
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
