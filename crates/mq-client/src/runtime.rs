//! The small runtime abstraction the client is generic over (the quinn `Runtime` shape).
//!
//! A runtime (`TokioRuntime`, `AsyncIoRuntime`, or your own) implements [`Runtime`]: how to open a TCP (or
//! TLS) connection that hyper can drive, how to spawn a background task and how to sleep.
//! Everything else — pooling, signing, retries, the consumer and checker loops — lives once in
//! this crate.

use crate::proxy::Tunnel;
#[cfg(doc)]
use crate::proxy::TunnelRefused;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectTarget {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS configuration when the endpoint is `https`; `None` for plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// A `CONNECT` tunnel through an HTTP proxy to `host:port`: connect to the proxy, call
    /// [`ConnectTarget::establish_tunnel`], then do the TLS handshake with `host`'s name.
    /// `None` for a direct connection (a plain `http` endpoint reached through a proxy is a
    /// direct connection to the proxy: `host` and `port` are the proxy's then).
    pub tunnel: Option<Tunnel>,
}

impl std::fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("tunnel", &self.tunnel)
            .finish()
    }
}

impl ConnectTarget {
    /// Where to open the TCP connection: the proxy's address when tunnelling, else
    /// `host:port`.
    pub fn tcp_address(&self) -> (&str, u16) {
        match &self.tunnel {
            Some(t) => (t.proxy_host(), t.proxy_port()),
            None => (&self.host, self.port),
        }
    }

    /// When [`tunnel`](Self::tunnel) is set, asks the proxy on `io` (the fresh connection to
    /// [`tcp_address`](Self::tcp_address)) to open the tunnel to `host:port`, sending
    /// `Proxy-Authorization` when the proxy URL had user info; does nothing otherwise. Call
    /// it before the TLS handshake, on the same connection.
    ///
    /// # Errors
    ///
    /// The connection's `io::Error`; an `io::Error` holding [`TunnelRefused`] (the status)
    /// when the proxy answered other than 2xx; one of kind `InvalidData` when its answer was
    /// not HTTP; `UnexpectedEof` when it closed the connection without an answer.
    pub async fn establish_tunnel<I>(&self, io: &mut I) -> io::Result<()>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin,
    {
        match &self.tunnel {
            Some(tunnel) => tunnel.establish(io, &self.host, self.port).await,
            None => Ok(()),
        }
    }

    /// The TLS server name for certificate verification. Check it before connecting.
    ///
    /// # Errors
    ///
    /// An `io::Error` of kind `InvalidInput` holding
    /// [`rustls::pki_types::InvalidDnsNameError`] when the host cannot be a server name
    /// (such a host can never be verified: the transport classifies the error as final).
    pub fn server_name(&self) -> io::Result<rustls::pki_types::ServerName<'static>> {
        rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

/// What the client needs from an async runtime.
///
/// Implemented by `mq_tokio::TokioRuntime` and `mq_async_std::AsyncIoRuntime`; implement it
/// yourself to run the client on another executor.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected stream (TCP, or TLS over TCP) that hyper can drive.
    type Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static;

    /// Opens a connection with `TCP_NODELAY` set to [`ConnectTarget::tcp_address`], opens
    /// the proxy tunnel with [`ConnectTarget::establish_tunnel`], and performs the TLS
    /// handshake with `target.host`'s name when `target.tls` is set (with certificate
    /// verification; never bypassed).
    ///
    /// # Errors
    ///
    /// Errors decide about retries, so keep their cause: report a failed handshake as the
    /// `io::Error` whose inner error is the [`rustls::Error`] (tokio-rustls and futures-rustls
    /// do) and an invalid server name as the error of [`ConnectTarget::server_name`]. A
    /// refused certificate is then final ([`crate::TransportErrorKind::Tls`]); any other
    /// `io::Error` (refused, reset, DNS failure) is a transient connection failure. Return
    /// the error of [`ConnectTarget::establish_tunnel`] as it is: it tells a refusing proxy
    /// apart.
    fn connect(&self, target: ConnectTarget) -> BoxFuture<io::Result<Self::Io>>;

    /// Runs a future in the background.
    fn spawn(&self, future: BoxFuture<()>);

    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
}

/// The object-safe face of a [`Runtime`] that the client holds (`Arc<dyn DynRuntime>`): the
/// user-facing types carry no runtime parameter; only the pooled transport, built here, is
/// generic over the runtime's connection type.
pub(crate) trait DynRuntime: Send + Sync + 'static {
    /// [`Runtime::spawn`].
    fn spawn(&self, future: BoxFuture<()>);
    /// [`Runtime::sleep`].
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
    /// The default pooled transport on this runtime, through `proxy`.
    fn pooled_transport(
        &self,
        tls: Arc<rustls::ClientConfig>,
        config: crate::transport::PoolConfig,
        proxy: Option<crate::proxy::Proxy>,
    ) -> Arc<dyn crate::transport::Transport>;
}

impl<R: Runtime> DynRuntime for R {
    fn spawn(&self, future: BoxFuture<()>) {
        Runtime::spawn(self, future);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Runtime::sleep(self, duration)
    }

    fn pooled_transport(
        &self,
        tls: Arc<rustls::ClientConfig>,
        config: crate::transport::PoolConfig,
        proxy: Option<crate::proxy::Proxy>,
    ) -> Arc<dyn crate::transport::Transport> {
        Arc::new(
            crate::transport::PooledTransport::new(self.clone(), tls, config).with_proxy(proxy),
        )
    }
}

/// The runtime [`Client::builder`](crate::Client::builder) picks (quinn's `default_runtime`):
/// tokio when the `tokio` feature is on and a tokio runtime is current, else async-io when the
/// `async-io` feature is on, else tokio when its feature is on.
pub(crate) fn default_runtime() -> Option<Arc<dyn DynRuntime>> {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        return Some(Arc::new(crate::rt_tokio::TokioRuntime::default()));
    }
    #[cfg(feature = "async-io")]
    return Some(Arc::new(crate::rt_async_io::AsyncIoRuntime::default()));
    #[cfg(all(feature = "tokio", not(feature = "async-io")))]
    return Some(Arc::new(crate::rt_tokio::TokioRuntime::default()));
    #[allow(unreachable_code)]
    None
}

/// A run on the client's runtime that the user stops and whose result the user awaits (the
/// transaction checker's [`CheckerHandle`](crate::CheckerHandle), the message handler's
/// [`HandlerHandle`](crate::HandlerHandle)). Dropping it stops the run without waiting.
#[derive(Debug)]
pub(crate) struct Background<T> {
    stop: Option<futures::channel::oneshot::Sender<()>>,
    done: futures::channel::oneshot::Receiver<T>,
}

impl<T: Send + 'static> Background<T> {
    /// Spawns the run that `run` makes from the stop signal it is given (a future that
    /// completes when [`stop`](Self::stop) is called or this value is dropped).
    pub(crate) fn spawn(
        runtime: &Arc<dyn DynRuntime>,
        run: impl FnOnce(BoxFuture<()>) -> BoxFuture<T>,
    ) -> Self {
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        let (done_tx, done_rx) = futures::channel::oneshot::channel();
        let run = run(Box::pin(async move {
            let _ = stop_rx.await;
        }));
        runtime.spawn(Box::pin(async move {
            let _ = done_tx.send(run.await);
        }));
        Self {
            stop: Some(stop_tx),
            done: done_rx,
        }
    }

    /// Signals the run to stop and waits for its result; `None` when its task ended without
    /// one (the runtime dropped it, or it panicked).
    pub(crate) async fn stop(mut self) -> Option<T> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.done).await.ok()
    }
}

/// Runs `future` as a task of its own on `runtime` — in parallel with the caller's work on
/// a multi-threaded runtime, so a user's handler or decision that blocks its thread holds
/// only that thread — and gives the future of its output; `lost()` is the output when the
/// runtime drops the task unfinished (it shut down).
pub(crate) fn spawn_task<T: Send + 'static>(
    runtime: &Arc<dyn DynRuntime>,
    future: BoxFuture<T>,
    lost: impl FnOnce() -> T + Send + 'static,
) -> BoxFuture<T> {
    let (done, output) = futures::channel::oneshot::channel();
    runtime.spawn(Box::pin(async move {
        let _ = done.send(future.await);
    }));
    Box::pin(async move { output.await.unwrap_or_else(|_| lost()) })
}

/// What a background loop has done so far: the loop updates it as it goes, its handle reads
/// a copy while it runs ([`HandlerHandle::summary`](crate::HandlerHandle::summary),
/// [`CheckerHandle::report`](crate::CheckerHandle::report)).
#[derive(Debug, Default)]
pub(crate) struct Live<T>(Arc<std::sync::Mutex<T>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Clone> Live<T> {
    /// Applies `f` to the value (a panic elsewhere while it was held does not poison it:
    /// counters stay readable).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A copy of the value now.
    pub(crate) fn snapshot(&self) -> T {
        self.update(|v| v.clone())
    }
}

/// Runs `future` for at most `duration` on `runtime`'s timer; `None` on timeout.
pub(crate) async fn timeout<R: Runtime, T>(
    runtime: &R,
    duration: Duration,
    future: impl Future<Output = T>,
) -> Option<T> {
    let future = std::pin::pin!(future);
    match futures::future::select(future, runtime.sleep(duration)).await {
        futures::future::Either::Left((value, _)) => Some(value),
        futures::future::Either::Right(_) => None,
    }
}
