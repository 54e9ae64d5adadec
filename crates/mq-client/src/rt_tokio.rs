//! [`TokioRuntime`]: the tokio implementation of [`Runtime`].

use crate::runtime::{BoxFuture, ConnectTarget, Runtime};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// Runs the client on tokio.
///
/// `Default` spawns the client's tasks (connections, background work) on the runtime current
/// when each is spawned, so a client keeps working when the runtime it was built on is gone
/// (a `static` client shared by `#[tokio::test]`s, each on its own runtime); a task spawned
/// outside any runtime goes to the runtime that was current at `default()`, if any.
/// [`with_handle`](Self::with_handle) pins every task to one runtime.
#[derive(Clone, Debug)]
pub struct TokioRuntime {
    handle: Option<Handle>,
    /// Every task on `handle`, even from inside another runtime.
    pinned: bool,
}

impl Default for TokioRuntime {
    fn default() -> Self {
        Self {
            handle: Handle::try_current().ok(),
            pinned: false,
        }
    }
}

impl TokioRuntime {
    /// Runs client tasks on this runtime (only: its shutdown ends the client's connections
    /// and fails its later requests).
    pub fn with_handle(handle: Handle) -> Self {
        Self {
            handle: Some(handle),
            pinned: true,
        }
    }
}

/// A plain or TLS connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The connection type hyper drives on tokio.
pub type TokioIo = hyper_util::rt::TokioIo<Stream>;

impl Runtime for TokioRuntime {
    type Io = TokioIo;

    fn connect(&self, target: ConnectTarget) -> BoxFuture<io::Result<Self::Io>> {
        Box::pin(async move {
            // A host that is no valid TLS name fails before any connection is made.
            let tls = match &target.tls {
                None => None,
                Some(config) => Some((config.clone(), target.server_name()?)),
            };
            let tcp = TcpStream::connect(target.tcp_address()).await?;
            tcp.set_nodelay(true)?;
            let mut io = hyper_util::rt::TokioIo::new(tcp);
            target.establish_tunnel(&mut io).await?;
            let tcp = io.into_inner();
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some((config, name)) => {
                    // A failed handshake is an `io::Error` wrapping the `rustls::Error`: the
                    // transport tells a refused certificate (final) from an I/O failure by it.
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await?;
                    Stream::Tls(Box::new(tls))
                }
            };
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }

    fn spawn(&self, future: BoxFuture<()>) {
        let current = (!self.pinned).then(|| Handle::try_current().ok()).flatten();
        match current.as_ref().or(self.handle.as_ref()) {
            Some(h) => {
                h.spawn(future);
            }
            None => {
                tokio::spawn(future);
            }
        }
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }
}
