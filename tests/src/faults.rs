//! Misbehaving network peers for client tests, each on its own tokio thread:
//! [`IdleDroppingProxy`] (closes keep-alive connections once idle, without warning) and
//! [`SilentServer`] (accepts and never answers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A tokio runtime on a thread of its own, running one server future until dropped.
pub struct Background {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Background {
    /// Binds 127.0.0.1:0 and runs `serve(listener)` until dropped.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                tokio::select! {
                    _ = stop_rx => {}
                    () = serve(listener) => {}
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server did not start");
        Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards to an upstream server but closes each client connection after `idle` without
/// traffic — as servers and load balancers do with idle keep-alive connections — with no
/// `Connection: close` warning.
pub struct IdleDroppingProxy {
    server: Background,
    connections: Arc<AtomicUsize>,
}

impl IdleDroppingProxy {
    /// Starts the proxy in front of `upstream`.
    pub fn start(upstream: SocketAddr, idle: Duration) -> Self {
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let server = Background::spawn(move |listener| async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(proxy_connection(client, upstream, idle));
            }
        });
        Self {
            server,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// How many client connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn proxy_connection(mut client: TcpStream, upstream: SocketAddr, idle: Duration) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut a = vec![0u8; 64 * 1024];
    let mut b = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = client.read(&mut a) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&a[..n]).await.is_err() { return },
            },
            r = server.read(&mut b) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&b[..n]).await.is_err() { return },
            },
            () = tokio::time::sleep(idle) => return,
        }
    }
}

/// Accepts connections and reads requests but never answers.
pub struct SilentServer {
    server: Background,
}

impl SilentServer {
    /// Starts the server.
    pub fn start() -> Self {
        let server = Background::spawn(|listener| async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        Self { server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}
