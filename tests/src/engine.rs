//! A real RocketMQ 5 engine for the gateway's tests: `rocketmq-rust` 1.0.0's name server,
//! broker and gRPC proxy in cluster mode, every listener on 127.0.0.1 and on ports picked
//! free, state in a private directory removed on drop.
//!
//! What the engine needs and does here is in `docs/rocketmq-engine.md`; the points this
//! harness relies on:
//!
//! * Binaries: `rocketmq-namesrv-rust`, `rocketmq-broker-rust`, `rocketmq-proxy-rust` in the
//!   directory named by [`ENGINE_BIN_ENV`], by default `$HOME/.cache/mq-http-rs/engine/bin`
//!   (`cargo xtask engine-install` puts them there). Missing binaries are an error that says
//!   so; nothing is skipped.
//! * Order: the proxy exits at start (`broker.lookup.not_found`) unless a broker is already
//!   registered, so the name server, then the broker, then the proxy are started, each once
//!   the previous one is ready. The broker is ready when its log says
//!   `RocketMQ Broker(…) started successfully` (printed after its first registration with the
//!   name server) and its three ports accept connections.
//! * The broker listens on `listenPort` L, on L − 2 (the "fast" port, not configurable) and on
//!   its HA port; all three are checked free before it starts.
//! * Logs: at the default level the broker floods its log (56 MB in 5 minutes, a timer warning
//!   of `rocketmq_broker::util::hook_utils` repeated); here every process runs at `warn`, that
//!   module at `error`, and the two broker modules the readiness checks read at `info`.
//!   Output goes to `<dir>/{namesrv,broker,proxy}.log` (appended to on restart).
//! * The store refuses writes (and the broker refuses to start) when its file system is more
//!   than 90 % full (`diskSpaceWarningLevelRatio`, clamped to 0.90 by `rocketmq-store`). The
//!   directory is therefore made under [`ENGINE_TMPDIR_ENV`] if set, else under `/dev/shm`
//!   (memory-backed, independent of how full the disk is) if it has room, else under the
//!   system temp directory; a directory on a file system too full for the store is an error
//!   naming it. The store's preallocated files are made small (64 MiB commit log, small
//!   index and consume-queue files): about 70 MB after the first message instead of 1.3 GB.
//! * Stopping: the broker ignores SIGTERM, so components are stopped with SIGKILL.
//!
//! One engine per test process at a time is expected; engines in different processes are
//! safe together: distinct directories, and ports are picked and bound under a lock file
//! shared by every harness on the machine.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable naming the directory that holds the engine binaries.
pub const ENGINE_BIN_ENV: &str = "MQ_ROCKETMQ_ENGINE_BIN";
/// Environment variable naming the directory under which each engine's own directory is made.
pub const ENGINE_TMPDIR_ENV: &str = "MQ_ROCKETMQ_ENGINE_TMPDIR";

/// How long one component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is checked.
const POLL: Duration = Duration::from_millis(50);
/// Space the store may take (preallocated files, timer log, logs), with margin.
const STORE_ROOM: u64 = 1 << 30;
/// The engine's store write-protects its file system above this fill ratio.
const STORE_FULL_RATIO: f64 = 0.90;
/// Log lines quoted in an error.
const ERROR_LOG_LINES: usize = 30;

const BROKER_NAME: &str = "broker-a";
const CLUSTER_NAME: &str = "DefaultCluster";
const BROKER_READY_LINE: &str = "started successfully";
const BROKER_REGISTERED_LINE: &str = "Register broker to name remoting_server success";
/// The broker's remoting client logs these when its name-server availability scan changes
/// its mind. rocketmq-rust 1.0.0 sends a new topic's registration (admin code 17) only to
/// name servers that scan found available, dropping it silently otherwise, and scans every
/// 30 s: a topic created before the first successful scan is routed only at the broker's next
/// full registration. So a broker is ready once its name server is available to it.
const NAMESRV_AVAILABLE_LINE: &str = "Nameserver is now available";
const NAMESRV_UNAVAILABLE_LINE: &str = "Nameserver is now unavailable";

/// One process of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The name server (`rocketmq-namesrv-rust`).
    Namesrv,
    /// The broker (`rocketmq-broker-rust`), remoting protocol.
    Broker,
    /// The gRPC v2 proxy (`rocketmq-proxy-rust`, cluster mode).
    Proxy,
}

impl Component {
    const ALL: [Self; 3] = [Self::Namesrv, Self::Broker, Self::Proxy];

    fn binary(self) -> &'static str {
        match self {
            Self::Namesrv => "rocketmq-namesrv-rust",
            Self::Broker => "rocketmq-broker-rust",
            Self::Proxy => "rocketmq-proxy-rust",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Namesrv => "namesrv",
            Self::Broker => "broker",
            Self::Proxy => "proxy",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Namesrv => 0,
            Self::Broker => 1,
            Self::Proxy => 2,
        }
    }

    fn log_filter(self) -> &'static str {
        match self {
            Self::Namesrv | Self::Proxy => "warn",
            Self::Broker => {
                "warn,rocketmq_broker::util::hook_utils=error,\
                 rocketmq_broker::broker_runtime::lifecycle=info,\
                 rocketmq_broker::out_api::broker_outer_api=info,\
                 rocketmq_transport::clients::rocketmq_tokio_client::nameserver=info"
            }
        }
    }
}

/// The ports an engine listens on (all on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
struct Ports {
    namesrv: u16,
    /// The broker's `listenPort`; it also listens on `broker - 2`.
    broker: u16,
    broker_ha: u16,
    proxy: u16,
}

/// A running engine; every process is killed and the directory removed on drop.
#[derive(Debug)]
pub struct RocketMqEngine {
    bin: PathBuf,
    dir: PathBuf,
    ports: Ports,
    children: [Option<Child>; 3],
}

impl RocketMqEngine {
    /// Starts name server, broker and proxy with the binaries of [`bin_dir`] and waits until
    /// each is ready (blocking, about a second on an idle machine).
    ///
    /// # Errors
    ///
    /// Missing binaries (the message says to run `cargo xtask engine-install`), no directory
    /// with room for the store, a process that exits or is not ready within 60 s (the message
    /// quotes the end of its log).
    pub fn start() -> io::Result<Self> {
        Self::start_with_bin_dir(&bin_dir()?)
    }

    /// [`start`](Self::start) with the binaries in `bin`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with_bin_dir(bin: &Path) -> io::Result<Self> {
        check_binaries(bin)?;
        let base = engine_base_dir()?;
        let lock = PortLock::acquire(&base)?;
        let ports = pick_ports()?;
        let dir = unique_dir(&base)?;
        // From here on, Drop cleans up whatever was started.
        let mut engine = Self {
            bin: bin.to_owned(),
            dir,
            ports,
            children: [None, None, None],
        };
        engine.write_configs()?;
        for component in Component::ALL {
            engine.launch(component)?;
        }
        drop(lock);
        engine.await_new_topics_routed()?;
        Ok(engine)
    }

    /// Waits until a topic created now is routed by the proxy: a gateway creates a probe
    /// topic on first use (admin code 17 on the broker), which the broker registers with the
    /// name server, from which the proxy routes it. Right after start that chain has failed
    /// on a loaded machine for tens of seconds (CI: `TopicNotExist` 5 s after creating a
    /// topic, for the first minute of the engine), so every test starts after it works.
    fn await_new_topics_routed(&self) -> io::Result<()> {
        use mq_tokio::TokioRuntime;
        let config = mq_broker::ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: vec![mq_broker::Credential::new(crate::TEST_AK, crate::TEST_SK)],
            backend: self.gateway_backend(b"engine-readiness-probe-key-32-by"),
            ..mq_broker::ServerConfig::default()
        };
        let gateway = crate::TestBroker::start_with(config);
        let client = crate::client_builder::<TokioRuntime>(&gateway.endpoint())
            .retry(mq_client::RetryConfig::disabled())
            .build()
            .map_err(io::Error::other)?;
        let topic =
            mq_client::TopicName::new(crate::unique("mq_probe")).map_err(io::Error::other)?;
        let group = mq_client::GroupId::new("GID_mq_probe").map_err(io::Error::other)?;
        let consumer = client.consumer(topic, group);
        let (one, now) = (
            mq_client::BatchSize::new(1).map_err(io::Error::other)?,
            mq_client::WaitSeconds::new(0).map_err(io::Error::other)?,
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let result = crate::block_on(consumer.receive(one, now));
            match result {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "RocketMQ engine: a new topic is not routed within {}s: {e}\n{}",
                            READY_TIMEOUT.as_secs(),
                            self.all_log_tails()
                        ),
                    ));
                }
                Err(_) => thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// The proxy's gRPC endpoint (`MessagingService`).
    pub fn proxy_endpoint(&self) -> SocketAddr {
        loopback(self.ports.proxy)
    }

    /// The broker's remoting address (admin requests: create topic, create group).
    pub fn broker_addr(&self) -> SocketAddr {
        loopback(self.ports.broker)
    }

    /// The gateway backend onto this engine: its proxy, its broker as the admin address (so
    /// the gateway creates topics, and the admin API manages topics and groups), its name
    /// server (for topic deletion), topics of one queue (this engine pops one queue per
    /// call, so a poll of one queue sees the whole topic; `queues` in `tests/gateway.rs`
    /// runs topics of 8), and the receipt-handle key `key` (at least 16 bytes).
    pub fn gateway_backend(&self, key: &[u8]) -> mq_broker::config::BackendConfig {
        self.gateway_backend_with_queues(key, 1)
    }

    /// [`gateway_backend`](Self::gateway_backend) creating topics of `queues` queues.
    pub fn gateway_backend_with_queues(
        &self,
        key: &[u8],
        queues: u16,
    ) -> mq_broker::config::BackendConfig {
        let mut rocketmq: mq_broker::config::RocketMqConfig = format!(
            "rocketmq://{}?admin={}&namesrv={}&queues={queues}",
            self.proxy_endpoint(),
            self.broker_addr(),
            self.namesrv_addr()
        )
        .parse()
        .expect("the engine's backend URL");
        rocketmq.handle_key =
            Some(mq_broker::config::HandleKey::from_bytes(key.to_vec()).expect("handle key"));
        mq_broker::config::BackendConfig::RocketMq(rocketmq)
    }

    /// The name server's address.
    pub fn namesrv_addr(&self) -> SocketAddr {
        loopback(self.ports.namesrv)
    }

    /// The engine's directory: configuration, `store/`, and the three logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills `component` with SIGKILL and waits for it to exit; nothing if it is not running.
    ///
    /// # Errors
    ///
    /// Killing or reaping the process failed.
    pub fn kill(&mut self, component: Component) -> io::Result<()> {
        match self.children[component.index()].take() {
            Some(mut child) => stop(&mut child),
            None => Ok(()),
        }
    }

    /// Starts `component` again (killing it first if it runs) with the same configuration,
    /// ports and store, and waits until it is ready. A restarted name server is ready once
    /// the running broker has registered with it again (within the broker's 10 s
    /// registration period).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); a port taken by another process meanwhile is reported as
    /// the component exiting.
    pub fn restart(&mut self, component: Component) -> io::Result<()> {
        self.kill(component)?;
        let lock = PortLock::acquire(self.dir.parent().unwrap_or(&self.dir))?;
        self.launch(component)?;
        drop(lock);
        Ok(())
    }

    /// The last `lines` lines of `component`'s log (without terminal colour codes), for
    /// diagnostics; a note instead if the log cannot be read.
    pub fn log_tail(&self, component: Component, lines: usize) -> String {
        let path = self.log_path(component);
        match read_tail(&path, 1 << 20) {
            Ok(text) => {
                let text = strip_ansi(&text);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("({} unreadable: {e})", path.display()),
        }
    }

    fn log_path(&self, component: Component) -> PathBuf {
        self.dir.join(format!("{}.log", component.name()))
    }

    fn write_configs(&self) -> io::Result<()> {
        let Ports {
            namesrv,
            broker,
            broker_ha,
            proxy,
        } = self.ports;
        // Paths are relative to the processes' working directory, the engine directory.
        let broker_toml = format!(
            r#"[broker]
brokerIp1 = "127.0.0.1"
listenPort = {broker}
storePathRootDir = "./store"
# MIXED topics are refused without it; NORMAL/FIFO/DELAY/TRANSACTION need nothing else.
enableMixedMessageType = true
# Topics exist only when created (the gateway creates them with code 17): a send to a
# deleted topic does not create it again from TBW102.
autoCreateTopicEnable = false
# Orphaned-transaction checks every 2 s (default 30 s), so check tests run in seconds.
transactionCheckInterval = 2000
# The shortest period the broker accepts (10 s): a restarted name server learns the broker soon.
registerNameServerPeriod = 10000

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "{BROKER_NAME}"
brokerClusterName = "{CLUSTER_NAME}"
brokerId = 0

[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
storePathRootDir = "./store"
haListenAddress = "127.0.0.1"
haListenPort = {broker_ha}
# Small preallocated files: 64 MiB commit log (default 1 GiB), 60,000-entry consume-queue
# files (default 300,000), a 4 MB index (default 420 MB).
mappedFileSizeCommitLog = 67108864
mappedFileSizeConsumeQueue = 1200000
maxHashSlotNum = 50000
maxIndexNum = 200000
"#
        );
        let proxy_toml = format!(
            r#"mode = "cluster"

[grpc]
listenAddr = "127.0.0.1:{proxy}"

[cluster]
namesrvAddr = "127.0.0.1:{namesrv}"
brokerClusterName = "{CLUSTER_NAME}"

# An empty poll waits its own time, not the proxy's 5-s minimum long poll. The proxy's
# housekeeping, which sends due orphaned-transaction checks, runs every clientTtlMs / 2.
[session]
minLongPollingTimeoutMs = 100
clientTtlMs = 20000
"#
        );
        fs::write(self.dir.join("broker.toml"), broker_toml)?;
        fs::write(self.dir.join("proxy.toml"), proxy_toml)
    }

    /// Spawns `component` and waits until it is ready.
    fn launch(&mut self, component: Component) -> io::Result<()> {
        let log_path = self.log_path(component);
        let log = File::options().create(true).append(true).open(&log_path)?;
        let log_start = log.metadata()?.len();
        let broker_log_start = fs::metadata(self.log_path(Component::Broker))
            .map(|m| m.len())
            .unwrap_or(0);
        let mut cmd = Command::new(self.bin.join(component.binary()));
        let namesrv = self.namesrv_addr().to_string();
        match component {
            Component::Namesrv => cmd
                .args(["--bindAddress", "127.0.0.1", "--listenPort"])
                .arg(self.ports.namesrv.to_string())
                .arg("--kvConfigPath")
                .arg(self.dir.join("namesrv").join("kvConfig.json")),
            Component::Broker => cmd.args(["-c", "broker.toml", "-n", &namesrv]),
            Component::Proxy => cmd.args(["-c", "proxy.toml"]),
        };
        cmd.args(["--log-filter", component.log_filter()])
            .current_dir(&self.dir)
            // The name server keeps state under $HOME; the broker requires ROCKETMQ_HOME.
            .env("HOME", &self.dir)
            .env("ROCKETMQ_HOME", &self.dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "starting {}: {e}",
                    self.bin.join(component.binary()).display()
                ),
            )
        })?;
        self.children[component.index()] = Some(child);
        self.wait_ready(component, log_start, broker_log_start)
    }

    fn wait_ready(
        &mut self,
        component: Component,
        log_start: u64,
        broker_log_start: u64,
    ) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let broker_running = self.children[Component::Broker.index()].is_some();
        loop {
            self.check_alive(component)?;
            let (ready, waiting_for) = match component {
                Component::Namesrv => {
                    let up = accepts(self.ports.namesrv);
                    // A restarted name server knows no broker until the broker registers again.
                    if up && broker_running {
                        let registered =
                            log_since(&self.log_path(Component::Broker), broker_log_start)
                                .contains(BROKER_REGISTERED_LINE);
                        (
                            registered,
                            "the broker to register with the name server again",
                        )
                    } else {
                        (up, "its port to accept connections")
                    }
                }
                Component::Broker => {
                    let log = log_since(&self.log_path(component), log_start);
                    let started = log.contains(BROKER_READY_LINE);
                    let ports = [
                        self.ports.broker,
                        self.ports.broker - 2,
                        self.ports.broker_ha,
                    ];
                    (
                        started && namesrv_available(&log) && ports.into_iter().all(accepts),
                        "`started successfully` and `Nameserver is now available` in its log \
                         and ports L, L-2 and HA to accept connections",
                    )
                }
                Component::Proxy => (accepts(self.ports.proxy), "its port to accept connections"),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "RocketMQ engine: {} not ready within {}s (waiting for {waiting_for})\n{}",
                        component.name(),
                        READY_TIMEOUT.as_secs(),
                        self.all_log_tails()
                    ),
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// An error if `component`'s process has exited.
    fn check_alive(&mut self, component: Component) -> io::Result<()> {
        let Some(child) = self.children[component.index()].as_mut() else {
            return Err(io::Error::other(format!(
                "RocketMQ engine: {} is not running",
                component.name()
            )));
        };
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                self.children[component.index()] = None;
                Err(io::Error::other(format!(
                    "RocketMQ engine: {} exited ({status}) while starting\n{}",
                    component.name(),
                    self.all_log_tails()
                )))
            }
        }
    }

    fn all_log_tails(&self) -> String {
        Component::ALL
            .iter()
            .map(|&c| {
                format!(
                    "--- {} (last {ERROR_LOG_LINES} lines) ---\n{}",
                    self.log_path(c).display(),
                    self.log_tail(c, ERROR_LOG_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RocketMqEngine {
    fn drop(&mut self) {
        // A test that fails while the engine runs shows what the engine said.
        if thread::panicking() {
            eprintln!("RocketMQ engine logs:\n{}", self.all_log_tails());
        }
        for child in self.children.iter_mut().rev().filter_map(Option::take) {
            let mut child = child;
            let _ = stop(&mut child);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding the engine binaries: [`ENGINE_BIN_ENV`] if set, else
/// `$HOME/.cache/mq-http-rs/engine/bin`.
///
/// # Errors
///
/// Neither the variable nor `HOME` is set.
pub fn bin_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENGINE_BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("neither {ENGINE_BIN_ENV} nor HOME is set: cannot find the RocketMQ engine"),
        )
    })?;
    Ok(Path::new(&home).join(".cache/mq-http-rs/engine/bin"))
}

fn check_binaries(bin: &Path) -> io::Result<()> {
    let missing: Vec<&str> = Component::ALL
        .iter()
        .map(|c| c.binary())
        .filter(|b| !bin.join(b).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "RocketMQ engine binaries missing in {}: {}. Run `cargo xtask engine-install` \
             (installs rocketmq-rust 1.0.0 there) or set {ENGINE_BIN_ENV} to a directory \
             holding them.",
            bin.display(),
            missing.join(", ")
        ),
    ))
}

/// Where engine directories are made: [`ENGINE_TMPDIR_ENV`], else `/dev/shm`, else the temp
/// directory — the first with room for the store.
fn engine_base_dir() -> io::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os(ENGINE_TMPDIR_ENV) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => [PathBuf::from("/dev/shm"), std::env::temp_dir()]
            .into_iter()
            .filter(|p| p.is_dir())
            .collect(),
    };
    let mut refusals = Vec::new();
    for dir in candidates {
        match room_for_store(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => refusals.push(format!("{}: {why}", dir.display())),
        }
    }
    Err(io::Error::other(format!(
        "no directory for the RocketMQ engine's store: {}. The store refuses to write when its \
         file system is more than {:.0}% full; free space or set {ENGINE_TMPDIR_ENV}.",
        refusals.join("; "),
        STORE_FULL_RATIO * 100.0
    )))
}

/// Whether the store's files fit on `dir`'s file system without passing the store's limit.
fn room_for_store(dir: &Path) -> Result<(), String> {
    let stats = fs4::statvfs(dir).map_err(|e| format!("cannot read its file system: {e}"))?;
    let (total, available) = (stats.total_space(), stats.available_space());
    if total == 0 {
        return Err("file system reports no size".into());
    }
    let used_after = total.saturating_sub(available) + STORE_ROOM;
    let ratio = used_after as f64 / total as f64;
    if available < STORE_ROOM || ratio > STORE_FULL_RATIO {
        return Err(format!(
            "{} MiB available of {} MiB ({:.1}% full with the store's {} MiB)",
            available >> 20,
            total >> 20,
            ratio * 100.0,
            STORE_ROOM >> 20
        ));
    }
    Ok(())
}

fn unique_dir(base: &Path) -> io::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!(
        "mq-rocketmq-engine-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir)?;
    fs::create_dir(dir.join("namesrv"))?;
    Ok(dir)
}

/// An exclusive lock shared by every harness on the machine, held while ports are picked and
/// bound, so two harnesses never pick the same free port.
struct PortLock(File);

impl PortLock {
    fn acquire(base: &Path) -> io::Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join("mq-rocketmq-engine.ports.lock"))?;
        fs4::FileExt::lock(&file)?;
        Ok(Self(file))
    }
}

impl Drop for PortLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.0);
    }
}

/// Free ports for every listener: the broker's L with L − 2 and L + 1 (HA) free too, and two
/// more. All are held at once while picking, so they are distinct.
fn pick_ports() -> io::Result<Ports> {
    let mut held = Vec::new();
    let mut bind = |port: u16| -> io::Result<u16> {
        let listener = TcpListener::bind(loopback(port))?;
        let port = listener.local_addr()?.port();
        held.push(listener);
        Ok(port)
    };
    let namesrv = bind(0)?;
    let proxy = bind(0)?;
    for _ in 0..100 {
        let candidate = TcpListener::bind(loopback(0))?;
        let l = candidate.local_addr()?.port();
        if !(1026..u16::MAX).contains(&l) {
            continue;
        }
        let fast = TcpListener::bind(loopback(l - 2));
        let ha = TcpListener::bind(loopback(l + 1));
        if let (Ok(fast), Ok(ha)) = (fast, ha) {
            held.extend([candidate, fast, ha]);
            return Ok(Ports {
                namesrv,
                broker: l,
                broker_ha: l + 1,
                proxy,
            });
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free port L on 127.0.0.1 with L-2 and L+1 free too (100 tries)",
    ))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500)).is_ok()
}

/// SIGKILL (what `Child::kill` sends on Unix), then reap.
fn stop(child: &mut Child) -> io::Result<()> {
    if child.try_wait()?.is_none() {
        // Fails only if it exited in between; the wait below reaps either way.
        let _ = child.kill();
    }
    child.wait().map(drop)
}

/// What was appended to `path` after byte `offset` (lossy UTF-8; empty if unreadable).
/// Whether the broker's log (since its start) says its name server is available to it: the
/// last availability change it logged is "available".
fn namesrv_available(broker_log: &str) -> bool {
    match (
        broker_log.rfind(NAMESRV_AVAILABLE_LINE),
        broker_log.rfind(NAMESRV_UNAVAILABLE_LINE),
    ) {
        (Some(up), Some(down)) => up > down,
        (up, _) => up.is_some(),
    }
}

fn log_since(path: &Path, offset: u64) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

/// The last `max` bytes of `path`.
fn read_tail(path: &Path, max: u64) -> io::Result<String> {
    let len = fs::metadata(path)?.len();
    Ok(log_since(path, len.saturating_sub(max)))
}

/// `text` without ANSI escape sequences (`ESC [ … letter`), which the engine writes to its logs.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_is_ready_once_its_name_server_is_available_to_it() {
        assert!(!namesrv_available("started successfully"));
        assert!(namesrv_available("x Nameserver is now available\ny"));
        assert!(!namesrv_available(
            "Nameserver is now available\nNameserver is now unavailable"
        ));
        assert!(namesrv_available(
            "Nameserver is now unavailable\nNameserver is now available"
        ));
    }

    #[test]
    fn colour_codes_are_stripped() {
        let line = "\u{1b}[2m2026-12-01\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m broker";
        assert_eq!(strip_ansi(line), "2026-12-01  WARN broker");
        assert_eq!(strip_ansi("plain"), "plain");
        assert_eq!(strip_ansi("cut \u{1b}"), "cut ");
    }

    #[test]
    fn broker_ports_leave_room_for_the_fast_and_ha_listeners() {
        let ports = pick_ports().unwrap();
        let all = [
            ports.namesrv,
            ports.proxy,
            ports.broker - 2,
            ports.broker,
            ports.broker_ha,
        ];
        let mut distinct = all.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len(), "{ports:?}");
    }

    #[test]
    fn missing_binaries_name_the_install_command() {
        let err =
            RocketMqEngine::start_with_bin_dir(Path::new("/nonexistent/engine/bin")).unwrap_err();
        let message = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(message.contains("cargo xtask engine-install"), "{message}");
        assert!(message.contains("rocketmq-broker-rust"), "{message}");
    }
}
