//! The listening socket and the accept loop: connection limit, hyper connections, graceful
//! shutdown.

use super::admission::handle;
use super::state::{ConnectionSlot, Shared};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

/// Binds a listening TCP socket on `addr` whose accept queue holds `backlog` connections
/// (the kernel caps it: `net.core.somaxconn` on Linux, 4096 by default since 5.4).
///
/// `TcpListener::bind` of std and tokio asks for 128: a burst of clients connecting at once
/// (a fleet reconnecting after a restart, a load test) overflows such a queue before the
/// accept loop drains it, and the kernel drops their SYNs; each waits for its
/// retransmission (1 s, then 3 s, 7 s…) before it is even connected. The address is
/// reusable at once after a restart (`SO_REUSEADDR`, as std sets it on Unix).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = mq_broker::server::listen("127.0.0.1:0".parse().unwrap(), 4096)?;
/// assert!(listener.local_addr()?.port() > 0);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The `io::Error` of creating, binding or listening on the socket (e.g. the address is in
/// use). Must be called within a tokio runtime.
pub fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

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
