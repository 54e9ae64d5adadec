//! A broker embedded in a program or a test: [`Broker::start_embedded`] and
//! [`EmbeddedBroker`].
//!
//! The broker runs on a thread of its own with its own tokio runtime, so the program that
//! embeds it may run on tokio, async-std, smol, or no runtime at all. It serves exactly what
//! [`Broker::start`] serves (the same start code); only where it runs differs.

use crate::config::{Credential, DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET, ServerConfig};
use crate::core::Stats;
use crate::server::Broker;
use mq_proto::sign::Credentials;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use tokio::sync::{mpsc as async_mpsc, oneshot};

/// Worker threads of an embedded broker's runtime.
const WORKER_THREADS: usize = 2;

impl Broker {
    /// Starts an in-memory broker on a free port of 127.0.0.1 that accepts the development
    /// key pair ([`DEV_ACCESS_KEY_ID`], [`DEV_ACCESS_KEY_SECRET`]), with the service's
    /// timings (the defaults of [`ServerConfig`]). It runs on a thread of its own, so it can
    /// be called from any async runtime or from none; it returns once the broker listens.
    ///
    /// This is the way to embed the broker in a program or a test: the handle gives the
    /// endpoint and the credentials a client needs, and stops the broker when dropped (or
    /// with [`EmbeddedBroker::shutdown`], which does not block an async caller).
    ///
    /// ```
    /// use mq_broker::Broker;
    /// use mq_tokio::{BatchSize, Client, TopicMessage, WaitSeconds};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let broker = Broker::start_embedded()?;
    /// let client = Client::builder()
    ///     .endpoint(broker.endpoint())?
    ///     .credentials(broker.credentials())
    ///     .build()?;
    /// let consumer = client.consumer("orders".parse()?, "GID_orders".parse()?);
    /// // A group receives what is published after its first request.
    /// consumer.receive(BatchSize::MIN, WaitSeconds::new(0)?).await?;
    /// client.producer("orders".parse()?).publish(&TopicMessage::new("hello")?).await?;
    ///
    /// let received = consumer.receive(BatchSize::MAX, WaitSeconds::new(3)?).await?;
    /// assert_eq!(received[0].body, "hello");
    /// assert_eq!(broker.stats()?.published, 1);
    /// broker.shutdown().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EmbeddedBroker::start`]: the runtime or its thread cannot be created, or no port
    /// can be bound.
    pub fn start_embedded() -> io::Result<EmbeddedBroker> {
        EmbeddedBroker::start(ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerConfig::default()
        })
    }
}

/// A [`Broker`] running on a thread of its own with its own tokio runtime; started by
/// [`Broker::start_embedded`] or [`EmbeddedBroker::start`].
///
/// Dropping it stops the broker gracefully and waits for its thread (a moment: waiting long
/// polls are answered at once); [`EmbeddedBroker::shutdown`] does the same without blocking
/// an async caller.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    endpoint: String,
    credential: Credential,
    /// The admin API's bearer token (see [`Broker::admin_token`]).
    admin_token: Option<String>,
    /// Requests for the broker's counters; dropping it tells the broker thread to stop.
    stats: Option<async_mpsc::UnboundedSender<mpsc::Sender<Stats>>>,
    /// Completed by the broker thread once the broker has shut down.
    stopped: Option<oneshot::Receiver<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts a broker with this configuration (see [`Broker::start`]) on a thread of its
    /// own, and returns once it listens (or failed to start).
    ///
    /// ```
    /// use mq_broker::{Credential, EmbeddedBroker, ServerConfig};
    ///
    /// let mut config = ServerConfig {
    ///     listen: "127.0.0.1:0".parse()?,
    ///     credentials: vec![Credential::new("test-ak", "test-sk")],
    ///     ..ServerConfig::default()
    /// };
    /// config.core.half_check_interval_ms = 1_000; // quicker transaction checks for tests
    /// let broker = EmbeddedBroker::start(config)?;
    /// assert!(broker.endpoint().starts_with("http://127.0.0.1:"));
    /// assert_eq!(broker.credentials().access_key_id(), "test-ak");
    /// assert_eq!(broker.stats()?.published, 0);
    /// drop(broker); // stops it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The tokio runtime or the thread cannot be created, or [`Broker::start`] fails: the
    /// address cannot be bound, the data directory cannot be opened, a backend cannot be
    /// reached.
    pub fn start(config: ServerConfig) -> io::Result<Self> {
        let credential = config
            .credentials
            .first()
            .cloned()
            .unwrap_or_else(|| Credential::new(DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("embedded-mq-broker-worker")
            .enable_all()
            .build()?;
        let (started_tx, started_rx) = mpsc::channel();
        let (stats_tx, mut stats_rx) = async_mpsc::unbounded_channel::<mpsc::Sender<Stats>>();
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("embedded-mq-broker".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let broker = match Broker::start(config).await {
                        Ok(broker) => broker,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    let token = broker.admin_token().map(|(t, _)| t.to_owned());
                    let _ = started_tx.send(Ok((broker.local_addr(), broker.endpoint(), token)));
                    // Serve counters until the handle drops its sender.
                    while let Some(reply) = stats_rx.recv().await {
                        let _ = reply.send(broker.stats());
                    }
                    broker.shutdown().await;
                });
                drop(runtime);
                let _ = stopped_tx.send(());
            })?;
        let (addr, endpoint, admin_token) = match started_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other(
                    "the embedded broker's thread ended before the broker started",
                ));
            }
        };
        Ok(Self {
            addr,
            endpoint,
            credential,
            admin_token,
            stats: Some(stats_tx),
            stopped: Some(stopped_rx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://…` when the configuration serves TLS).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API's bearer token (`Authorization: Bearer …` on `/admin/…`); `None`
    /// with the admin API off.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// Credentials the broker accepts: the first configured [`Credential`], or the
    /// development key pair when none was configured. The client crates take this type
    /// (`mq_tokio::Credentials` is the same type).
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            self.credential.access_key_id.clone(),
            self.credential.access_key_secret.clone(),
        )
    }

    /// The broker's counters per topic and group (as `GET /stats` serves them).
    ///
    /// # Errors
    ///
    /// The broker's thread has ended (it panicked).
    pub fn stats(&self) -> io::Result<Stats> {
        let gone = || io::Error::other("the embedded broker's thread has ended");
        let (reply_tx, reply_rx) = mpsc::channel();
        self.stats
            .as_ref()
            .ok_or_else(gone)?
            .send(reply_tx)
            .map_err(|_| gone())?;
        reply_rx.recv().map_err(|_| gone())
    }

    /// Stops the broker as [`Broker::shutdown`] does (waiting long polls are answered at
    /// once, in-flight requests finish) and waits for its thread, without blocking the
    /// caller's executor: usable on any async runtime.
    pub async fn shutdown(mut self) {
        self.stats = None;
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
        self.join();
    }

    fn join(&mut self) {
        self.stats = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.join();
    }
}
