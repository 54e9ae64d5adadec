//! The HTTP server around [`BrokerCore`]: hyper 1.x over tokio, HTTP/1.1 keep-alive,
//! `Expect: 100-continue`, signature verification, long polling without polling loops, and
//! graceful shutdown.
//!
//! Requests: the signature and `Date` are checked, and an oversize `Content-Length` refused,
//! before the body is read (so a client waiting for `100 Continue` never sends a body that
//! is refused). A refused request's body that is on its way anyway is read and dropped, so
//! keep-alive clients (which reuse the connection for their next request) keep it — for at
//! most [`PRE_AUTH_DRAIN_TIMEOUT`], so an unauthenticated sender cannot hold a connection for
//! the whole body timeout; when part of a body stays unread the answer says
//! `Connection: close`. Every response carries `x-mq-request-id` and `x-mq-version`;
//! `GET /health` and `GET /stats` (JSON: the core's [`Stats`] plus a `server` object with
//! `connections`, `connections_peak` (the most open at once since the start), `waiting_polls`
//! and `requests`) and `GET /metrics` (Prometheus text, module
//! `metrics`) need no signature.
//!
//! Long polling: a consume that finds nothing subscribes, under the core lock, to its topic's
//! change counter ([`BrokerCore::topic_version`]) and sleeps until the counter moves (publish,
//! commit, ack of an ordered partition, or a timer-driven change) or its wait ends. One timer
//! task sleeps until [`BrokerCore::next_wakeup`] and runs [`BrokerCore::maintain`]; it is
//! re-armed whenever a request changes the core. Waiting requests cost no CPU, and the core's
//! `std` mutex is never held across an `.await`.
//!
//! Modules, one job each: `state` (what the tasks share: the backend, credentials, the
//! clock, the connection and poll counters), `lifecycle` (the listening socket and the accept
//! loop), `admission`
//! (routing, authentication, limits, body reading), `admin` (the signed JSON API under
//! `/admin/`), `metrics` (`GET /metrics`), `dispatch` (a parsed request to a
//! [`crate::core::Call`] and its [`crate::core::Outcome`] back to a response),
//! `backend` (the backends and the long-poll budget they get) and `local` (the built-in
//! backend: the core, its topic watches and its timer task). The configuration types live in
//! [`crate::config`].
//!
//! [`BrokerCore`]: crate::BrokerCore
//! [`BrokerCore::topic_version`]: crate::BrokerCore::topic_version
//! [`BrokerCore::next_wakeup`]: crate::BrokerCore::next_wakeup
//! [`BrokerCore::maintain`]: crate::BrokerCore::maintain

mod admin;
mod admission;
mod backend;
mod console;
mod dispatch;
mod faults;
mod lifecycle;
mod local;
mod metrics;
mod state;

pub use self::admission::PRE_AUTH_DRAIN_TIMEOUT;
pub use self::lifecycle::listen;
use crate::config::{AdminAccess, BackendConfig};
pub use crate::config::{
    Credential, DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET, Limits, ServerConfig,
};

#[cfg(feature = "rocketmq")]
#[cfg(feature = "rocketmq")]
pub(crate) use self::admin::not_supported;
#[cfg(feature = "rocketmq")]
pub(crate) use self::backend::Waiting;
pub(crate) use self::state::Clock;

use self::backend::Backend;
use self::lifecycle::accept_loop;
use self::local::LocalBackend;
use self::state::{Shared, scheme};
use crate::core::{Call, Stats};
use crate::durable::JournaledCore;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use tokio::sync::watch;

/// A running broker. Dropping it does not stop it; call [`Broker::shutdown`].
pub struct Broker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    done: tokio::task::JoinHandle<()>,
    gateway_started: Option<GatewayStarted>,
}

/// How a gateway backend started (for the banner of [`crate::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayStarted {
    /// The receipt-handle key was generated at start (not configured): handles issued by
    /// this process are valid for it alone.
    pub generated_key: bool,
    /// Declared topics created on the engine through its admin API.
    pub created_topics: usize,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker").field("addr", &self.addr).finish()
    }
}

impl Broker {
    /// Binds the listener and starts serving in background tasks on the current tokio
    /// runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use mq_broker::{Broker, ServerConfig};
    /// let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    /// let broker = Broker::start(config).await?;
    /// assert!(broker.endpoint().starts_with("http://127.0.0.1:"));
    /// assert_eq!(broker.stats().published, 0);
    /// broker.shutdown().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The `io::Error` of binding the listen address; an [`io::ErrorKind::Other`] error for
    /// a data directory that cannot be opened or recovered, a declared topic that is
    /// refused, a gateway backend that cannot start, or a RocketMQ backend in a build
    /// without the `rocketmq` feature.
    pub async fn start(config: ServerConfig) -> io::Result<Self> {
        let listener = listen(config.listen, config.limits.listen_backlog)?;
        let addr = listener.local_addr()?;
        let mut credentials = HashMap::new();
        if config.credentials.is_empty() {
            credentials.insert(
                DEV_ACCESS_KEY_ID.to_owned(),
                Credential::new(DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET).into(),
            );
        }
        for c in config.credentials {
            credentials.insert(c.access_key_id.clone(), state::AccessKey::from(c));
        }
        let clock = Clock::new(config.clock_offset_ms, config.test_clock);
        let seed = clock.now_ms() ^ u64::from(addr.port()).rotate_left(48);
        #[allow(unused_mut)]
        let mut gateway_started = None;
        let mut core_config = config.core;
        if !config.topics.is_empty() {
            core_config.auto_create_topics = false;
        }
        if core_config.id_seed == 0 {
            core_config.id_seed = seed;
        }
        let (shutdown, _) = watch::channel(false);
        let backend = match config.backend {
            BackendConfig::BuiltIn => {
                let mut core = JournaledCore::open(core_config, config.data_dir.as_deref())
                    .map_err(io::Error::other)?;
                let caught_up = clock.resume(core.clock_advance_ms(), core.now_ms());
                if caught_up > 0 {
                    tracing::warn!(
                        caught_up_ms = caught_up,
                        "the data directory's time is ahead of the clock; the broker's clock goes on from it"
                    );
                }
                let declared_at = core.now_ms();
                for (instance, topic) in config.topics {
                    let call = Call::DeclareTopic { instance, topic };
                    core.apply(declared_at, call)
                        .map_err(|e| io::Error::other(e.message))?;
                }
                for g in config.groups {
                    let group = g.group.clone();
                    let call = Call::CreateGroup {
                        instance: g.instance,
                        group: g.group,
                        topics: g.topics,
                        settings: g.settings,
                    };
                    core.apply(declared_at, call)
                        .map_err(|e| io::Error::other(format!("group {group}: {}", e.message)))?;
                }
                let local = Arc::new(LocalBackend::new(core, clock.clone()));
                tokio::spawn(local.clone().timer_task(shutdown.subscribe()));
                Backend::Local(local)
            }
            #[cfg(feature = "rocketmq")]
            BackendConfig::RocketMq(rocketmq) => {
                if config.test_clock {
                    return Err(io::Error::other(
                        "a test clock applies to the built-in backend; the RocketMQ cluster keeps its own time",
                    ));
                }
                if !config.groups.is_empty() {
                    return Err(io::Error::other(
                        "groups are declared on the built-in backend; create them in the RocketMQ cluster (console, mqadmin updateSubGroup)",
                    ));
                }
                let (gateway, started) = crate::gateway::Gateway::start(
                    rocketmq,
                    &core_config,
                    &config.topics,
                    clock.clone(),
                )
                .await
                .map_err(io::Error::other)?;
                gateway_started = Some(started);
                Backend::RocketMq(Box::new(gateway))
            }
            #[cfg(not(feature = "rocketmq"))]
            BackendConfig::RocketMq(_) => {
                return Err(io::Error::other(
                    "this build has no RocketMQ backend (build mq-broker with --features rocketmq)",
                ));
            }
        };
        let admin = match config.admin {
            AdminAccess::Off => None,
            AdminAccess::On(Some(token)) => Some((token, false)),
            AdminAccess::On(None) => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(|e| {
                    io::Error::other(format!("no randomness for the admin token: {e}"))
                })?;
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                Some((hex.parse().map_err(io::Error::other)?, true))
            }
        };
        let shared = Arc::new(Shared {
            admin,
            backend,
            credentials,
            host_id: format!("{}://{addr}", scheme(config.tls.is_some())),
            limits: config.limits,
            shutdown,
            requests: AtomicU64::new(1),
            seed,
            waiting_polls: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            connections_peak: AtomicUsize::new(0),
            request_metrics: metrics::RequestMetrics::default(),
            faults: faults::Faults::new(config.faults, seed),
            tls: config.tls,
            clock,
        });
        let done = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            done,
            gateway_started,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, or `https://IP:PORT` when serving TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", scheme(self.shared.tls.is_some()), self.addr)
    }

    /// For a gateway (`--backend rocketmq://…`): how it started; `None` for the built-in
    /// backend.
    pub fn gateway_started(&self) -> Option<GatewayStarted> {
        self.gateway_started
    }

    /// The admin API's bearer token (`Authorization: Bearer …` on `/admin/…` calls) and
    /// whether it was generated at start; `None` with `--admin off`.
    pub fn admin_token(&self) -> Option<(&str, bool)> {
        self.shared
            .admin
            .as_ref()
            .map(|(token, generated)| (token.as_str(), *generated))
    }

    /// The web console's address (`http://IP:PORT/console/`), or `None` with `--admin off`
    /// (the console shows and steers the broker through the admin API only).
    pub fn console_url(&self) -> Option<String> {
        self.shared
            .admin
            .as_ref()
            .map(|_| format!("{}{}", self.endpoint(), console::CONSOLE_PATH))
    }

    /// Counters per topic and group.
    pub fn stats(&self) -> Stats {
        self.shared.backend.stats()
    }

    /// Stops accepting, answers waiting long polls at once (`MessageNotExist`, or the
    /// messages that arrived), lets in-flight requests finish and returns when every
    /// connection is closed. Connections still busy after [`Limits::shutdown_grace`] (a
    /// client slowly sending a request) are closed.
    pub async fn shutdown(self) {
        // `send_replace`, not `send`: `send` drops the value when no task has subscribed
        // yet (a shutdown right after start on a current-thread runtime), which hung here.
        self.shared.shutdown.send_replace(true);
        let _ = self.done.await;
        // Commit what is pending and release the data directory.
        self.shared.backend.close().await;
    }
}
