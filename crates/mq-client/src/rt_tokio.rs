//! [`TokioRuntime`]: the tokio implementation of [`Runtime`].

use crate::runtime::{BoxFuture, ConnectTarget, Runtime};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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
///
/// Used from another executor (`futures::executor::block_on`, async-std, smol), its timers
/// and connections run on that runtime (the one current at `default()`, or the pinned one)
/// while it runs; with none left (it shut down, or there never was one) a connection
/// fails with an `io::Error` saying so, and a timer or a background task (a consumer
/// stream, a checker) runs on a thread: errors, never a panic or a silent end.
/// On async-std or smol prefer `mq-async-std`.
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
        let connect = async move {
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
        };
        if Handle::try_current().is_ok() {
            return Box::pin(connect);
        }
        // Outside any tokio runtime: tokio's sockets need one's I/O driver, so the
        // connection is made (and registered) on the fallback runtime.
        match &self.handle {
            Some(handle) => {
                let mut task = AbortOnDrop(handle.spawn(connect));
                Box::pin(async move {
                    (&mut task.0).await.unwrap_or_else(|_| {
                        Err(io::Error::other(
                            "the tokio runtime the client runs on has shut down \
                             (call it from inside a running tokio runtime)",
                        ))
                    })
                })
            }
            None => Box::pin(async {
                Err(io::Error::other(
                    "no tokio runtime: call the client from inside a tokio runtime \
                     (or use mq-async-std on async-std and smol)",
                ))
            }),
        }
    }

    fn spawn(&self, future: BoxFuture<()>) {
        let current = (!self.pinned).then(|| Handle::try_current().ok()).flatten();
        if let Some(h) = &current {
            h.spawn(future);
            return;
        }
        let Some(h) = &self.handle else {
            // No tokio runtime at all: a thread of its own runs it (its connections fail
            // with an error saying so, its timers are threads) rather than a panic.
            on_a_thread(future);
            return;
        };
        // The fallback runtime may have shut down: tokio then drops the task unrun (a
        // consumer stream would just end, a checker's report be lost). Such a task is
        // found at once (finished with its future still here) and run on a thread, where
        // its requests fail saying the runtime has shut down.
        let slot = Arc::new(Mutex::new(Some(future)));
        let task = {
            let slot = Arc::clone(&slot);
            h.spawn(async move {
                let future = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(future) = future {
                    future.await;
                }
            })
        };
        if task.is_finished()
            && let Some(future) = slot.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            on_a_thread(future);
        }
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        if Handle::try_current().is_ok() {
            return Box::pin(tokio::time::sleep(duration));
        }
        // Outside any tokio runtime: tokio's timers need one's time driver.
        match &self.handle {
            Some(handle) => {
                let sleep = async move { tokio::time::sleep(duration).await };
                let mut task = AbortOnDrop(handle.spawn(sleep));
                Box::pin(async move {
                    if (&mut task.0).await.is_err() {
                        // That runtime shut down: never a sleep that ends at once (a retry
                        // loop would spin).
                        thread_sleep(duration).await;
                    }
                })
            }
            None => Box::pin(thread_sleep(duration)),
        }
    }
}

/// A task on the fallback runtime that ends with the future awaiting it (a cancelled
/// request's timer or connection does not linger there).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `future` on a thread of its own, for when no tokio runtime can.
fn on_a_thread(future: BoxFuture<()>) {
    std::thread::spawn(move || futures::executor::block_on(future));
}

/// A sleep on a thread of its own, for when no tokio runtime can time it.
async fn thread_sleep(duration: Duration) {
    let (done, wait) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(duration);
        drop(done);
    });
    let _ = wait.await;
}
