//! Test support shared by the cross-crate suites: a real `mq-broker` on 127.0.0.1 running on
//! its own tokio thread (so clients on any runtime can use it), fault-injecting TCP helpers,
//! a TLS front with a throw-away CA, the client scenario suite written once over
//! [`mq_client::Runtime`], the proxy and connection-cap scenarios with a real `tinyproxy`
//! ([`proxy`]), and a real RocketMQ 5 engine for the gateway ([`engine`]).

pub mod chaos;
pub mod engine;
pub mod faults;
pub mod proxy;
pub mod scenarios;
pub mod sim;
pub mod tls;

use mq_broker::{Credential, EmbeddedBroker, ServerConfig};
use mq_client::{ClientBuilder, Credentials, RetryConfig, Runtime};
use std::net::SocketAddr;
use std::time::Duration;

/// Key id every test broker accepts.
pub const TEST_AK: &str = "test-ak";
/// Secret of [`TEST_AK`].
pub const TEST_SK: &str = "test-sk";

/// A broker running on its own thread and tokio runtime ([`EmbeddedBroker`]); stopped on
/// drop.
pub struct TestBroker(EmbeddedBroker);

impl TestBroker {
    /// Starts a broker with the test credential and fast timings suitable for tests:
    /// invisibility 2 s (orderly 2 s), half-message checks every 1 s.
    pub fn start() -> Self {
        let mut config = Self::config();
        config.core.invisibility_ms = 2_000;
        config.core.order_invisibility_ms = 2_000;
        config.core.half_check_interval_ms = 1_000;
        Self::start_with(config)
    }

    /// The default configuration on a free local port with the test credential (for
    /// [`start_with`](Self::start_with) after changing what a test needs).
    pub fn config() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: vec![Credential::new(TEST_AK, TEST_SK)],
            ..ServerConfig::default()
        }
    }

    /// Starts a broker with this configuration.
    pub fn start_with(config: ServerConfig) -> Self {
        Self(EmbeddedBroker::start(config).expect("start broker"))
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.0.endpoint().to_owned()
    }

    /// The broker's counters.
    pub fn stats(&self) -> mq_broker::Stats {
        self.0.stats().expect("broker stats")
    }

    /// An admin call (`/admin/…`) with the broker's admin token; the status and the JSON
    /// answer.
    pub fn admin(&self, method: &str, path_and_query: &str) -> (u16, serde_json::Value) {
        let token = self.0.admin_token().expect("the admin API is on");
        let (status, body) = self.call(method, path_and_query, &format!("Bearer {token}"));
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// An unauthenticated `GET` (`/health`, `/ready`, `/stats`); the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, "")
    }

    /// One request on its own connection, `authorization` sent when not empty.
    fn call(&self, method: &str, path_and_query: &str, authorization: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(self.addr()).expect("connect");
        let authorization = if authorization.is_empty() {
            String::new()
        } else {
            format!("authorization: {authorization}\r\n")
        };
        let request = format!(
            "{method} {path_and_query} HTTP/1.1\r\nhost: x\r\n{authorization}content-length: 0\r\nconnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("read");
        let status = answer
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"));
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }
}

/// A client builder for `endpoint` with the test credentials and quick retries, connecting
/// directly whatever the proxy environment variables say (the proxy tests set theirs).
pub fn client_builder<R: Runtime + Default>(endpoint: &str) -> ClientBuilder {
    ClientBuilder::with_runtime(R::default())
        .endpoint(endpoint)
        .expect("endpoint")
        .no_proxy()
        .credentials(Credentials::new(TEST_AK, TEST_SK))
        .retry(
            RetryConfig::default()
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(200)),
        )
}

/// A unique name for a test resource (topic or group), so tests never share state.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `f` to completion on a fresh multi-threaded tokio runtime with two workers.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Publishes one transactional message with `tx` (check immunity 10 s, so the broker asks
/// its checker), runs `tx`'s checker deciding `Commit` for every check, and receives with
/// `consumer` (whose group must be registered) until the message is delivered or 30 s
/// pass. Returns what was delivered and the checker's report.
pub async fn commit_through_the_checker(
    tx: &mq_client::TransactionProducer,
    consumer: &mq_client::Consumer,
) -> (Vec<mq_client::Message>, mq_client::CheckerReport) {
    use mq_client::{BatchSize, Decision, Message, TopicMessage, TransCheckImmunity, WaitSeconds};
    tx.publish(
        &TopicMessage::new("decide me")
            .expect("message")
            .with_trans_check_immunity(TransCheckImmunity::new(10).expect("immunity")),
    )
    .await
    .expect("publish half");
    let checker = tx.spawn_checker(|_m: Message| async { Decision::Commit });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut delivered = Vec::new();
    while delivered.is_empty() && std::time::Instant::now() < deadline {
        delivered = consumer
            .receive(BatchSize::MAX, WaitSeconds::new(1).expect("wait"))
            .await
            .expect("receive")
            .into_messages();
    }
    let report = checker.shutdown().await.expect("checker stops");
    (delivered, report)
}
