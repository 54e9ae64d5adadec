//! [`AsyncIoRuntime`]: the async-io implementation of [`Runtime`], usable from
//! async-std and smol alike (both run on async-io's reactor).

use crate::runtime::{BoxFuture, ConnectTarget, Runtime};
use async_net::TcpStream;
use futures_rustls::client::TlsStream;
use smol::io::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Runs the client on async-io: sockets and timers from `async-io`/`async-net`, background
/// tasks on smol's global executor (which needs no runtime set-up, so it works the same
/// inside async-std and smol programs).
#[derive(Clone, Debug, Default)]
pub struct AsyncIoRuntime {
    _private: (),
}

/// A plain or TLS connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
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

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_close(cx),
            Self::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// The connection type hyper drives on async-io.
pub type AsyncIo = smol_hyper::rt::FuturesIo<Stream>;

impl Runtime for AsyncIoRuntime {
    type Io = AsyncIo;

    fn connect(&self, target: ConnectTarget) -> BoxFuture<io::Result<Self::Io>> {
        Box::pin(async move {
            // A host that is no valid TLS name fails before any connection is made.
            let tls = match &target.tls {
                None => None,
                Some(config) => Some((config.clone(), target.server_name()?)),
            };
            let tcp = TcpStream::connect(target.tcp_address()).await?;
            tcp.set_nodelay(true)?;
            let mut io = smol_hyper::rt::FuturesIo::new(tcp);
            target.establish_tunnel(&mut io).await?;
            let tcp = io.into_inner();
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some((config, name)) => {
                    // A failed handshake is an `io::Error` wrapping the `rustls::Error`: the
                    // transport tells a refused certificate (final) from an I/O failure by it.
                    let tls = futures_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await?;
                    Stream::Tls(Box::new(tls))
                }
            };
            Ok(smol_hyper::rt::FuturesIo::new(stream))
        })
    }

    fn spawn(&self, future: BoxFuture<()>) {
        smol::spawn(future).detach();
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            async_io::Timer::after(duration).await;
        })
    }
}
