//! Production networks, on every runtime: the client through a real HTTP proxy (Debian's
//! `tinyproxy`, started on 127.0.0.1 with a generated configuration) and the connection cap,
//! counted at the broker.
//!
//! `tinyproxy` is installed by `cargo xtask ci`. Without it these tests are skipped (said on
//! stderr) unless `MQ_REQUIRE_PROXY=1` (as in `cargo xtask ci`), which makes them fail.

use crate::faults::IdleDroppingProxy;
use crate::scenarios::{batch, group, topic, wait};
use crate::tls::TlsFront;
use crate::{TestBroker, client_builder, unique};
use mq_client::{
    Client, ClientBuilder, Consumer, Error, Message, Proxy, RetryConfig, Runtime, TopicMessage,
    TopicName, TransportError, TransportErrorKind,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `tinyproxy` process on 127.0.0.1 with its own configuration and log; killed on drop.
pub struct Tinyproxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Tinyproxy {
    /// Starts `tinyproxy` on a free port: `BasicAuth user password` when `auth` is given,
    /// `CONNECT` allowed to `connect_ports` only (to any port when empty). `None` (skip) when `tinyproxy` is not
    /// installed, unless `MQ_REQUIRE_PROXY=1`, which makes it a failure.
    pub fn start(auth: Option<(&str, &str)>, connect_ports: &[u16]) -> Option<Self> {
        Self::start_with(auth, connect_ports, false)
    }

    /// A `tinyproxy` that refuses every forwarded request (`FilterDefaultDeny` with no
    /// allowed host: `403 Filtered`).
    pub fn start_denying_all() -> Option<Self> {
        Self::start_with(None, &[], true)
    }

    fn start_with(
        auth: Option<(&str, &str)>,
        connect_ports: &[u16],
        deny_all: bool,
    ) -> Option<Self> {
        if Command::new("tinyproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var("MQ_REQUIRE_PROXY").as_deref() != Ok("1"),
                "MQ_REQUIRE_PROXY=1 but tinyproxy is not installed \
                 (`cargo xtask ci` installs it; Debian: `apt-get install -y tinyproxy`)"
            );
            eprintln!(
                "skipping the proxy tests: tinyproxy is not installed \
                 (Debian: `apt-get install -y tinyproxy`)"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(unique("mq-tinyproxy"));
        std::fs::create_dir_all(&dir).expect("proxy directory");
        // Another process may take the free port before tinyproxy binds it: try again.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut config = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 120\nMaxClients 200\nLogLevel Connect\n\
                 LogFile \"{}\"\n",
                dir.join("tinyproxy.log").display()
            );
            for p in connect_ports {
                config.push_str(&format!("ConnectPort {p}\n"));
            }
            if let Some((user, password)) = auth {
                config.push_str(&format!("BasicAuth {user} {password}\n"));
            }
            if deny_all {
                let filter = dir.join("filter");
                std::fs::write(&filter, "").expect("proxy filter");
                config.push_str(&format!(
                    "Filter \"{}\"\nFilterDefaultDeny Yes\n",
                    filter.display()
                ));
            }
            let conf = dir.join("tinyproxy.conf");
            std::fs::write(&conf, config).expect("proxy configuration");
            let mut child = Command::new("tinyproxy")
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start tinyproxy");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Self { child, port, dir });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut last);
            }
        }
        panic!("tinyproxy did not start: {last}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The request lines the proxy logged (`CONNECT host:port HTTP/1.1`,
    /// `POST http://… HTTP/1.1`), oldest first.
    pub fn requests(&self) -> Vec<String> {
        let Ok(log) = std::fs::File::open(self.dir.join("tinyproxy.log")) else {
            return Vec::new();
        };
        BufReader::new(log)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.split_once("): ").map(|(_, r)| r.to_owned()))
            .filter(|r| r.ends_with(" HTTP/1.1") || r.ends_with(" HTTP/1.0"))
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The topic `consumer` reads gets `body` published by `client` while `consumer` waits in a
/// long poll of 3 s started first: the poll returns the message.
async fn long_poll_gets_a_message_published_meanwhile<R: Runtime + Default>(
    client: &Client,
    consumer: &Consumer,
    producer_topic: TopicName,
    body: &str,
) {
    let producer = client.producer(producer_topic);
    let started = Instant::now();
    let poll = consumer.receive(batch(16), wait(3));
    let publish = async {
        R::default().sleep(Duration::from_millis(700)).await;
        producer
            .publish(&TopicMessage::new(body).expect("message"))
            .await
            .expect("publish")
    };
    let (polled, _) = futures::join!(poll, publish);
    let polled: Vec<Message> = polled.expect("long poll").into();
    assert_eq!(
        polled.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        [body]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the poll waited for the publish"
    );
    consumer
        .ack(
            &polled
                .iter()
                .map(|m| m.receipt_handle.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .expect("ack");
}

/// A consumer of a new topic named after `prefix` in a new group, registered (a short poll
/// that finds nothing), and that topic.
async fn registered(client: &Client, prefix: &str) -> (TopicName, Consumer) {
    let t = topic(prefix);
    let consumer = client.consumer(t.clone(), group(&format!("GID_{prefix}")));
    let first = consumer.receive(batch(1), wait(0)).await.expect("register");
    assert!(first.is_empty(), "a new topic is empty");
    (t, consumer)
}

/// The error of publishing one message to `t` with the client `builder` builds.
async fn refused_publish(builder: ClientBuilder, t: TopicName) -> Error {
    builder
        .build()
        .expect("client")
        .producer(t)
        .publish(&TopicMessage::new("refused").expect("message"))
        .await
        .expect_err("the publish is refused")
}

/// `Error::Network` with `ProxyRefused { status }`, final (not retryable). tinyproxy answers
/// 407 when credentials are missing and 401 when they are wrong.
fn assert_refused_by_proxy(err: &Error, status: u16) {
    assert!(
        matches!(
            err,
            Error::Network(TransportError {
                kind: TransportErrorKind::ProxyRefused { status: s },
                ..
            }) if *s == status
        ),
        "{err:?}"
    );
    assert_eq!(err.proxy_status(), Some(status));
    assert!(!err.is_retryable(), "{err:?}");
}

/// An `http` endpoint through the proxy, with proxy authentication: absolute-form requests
/// the broker accepts (the signature covers the path, which the proxy forwards unchanged),
/// a long poll through the proxy, and missing or wrong credentials refused with a typed
/// error (407, 401) that is not retried.
pub async fn http_endpoint_through_proxy<R: Runtime + Default>(broker: &TestBroker) {
    let Some(proxy) = Tinyproxy::start(Some(("mq", "pr0xy-pass")), &[]) else {
        return;
    };
    let client = client_builder::<R>(&broker.endpoint())
        .proxy(Proxy::new(&proxy.url_with("mq", "pr0xy-pass")).expect("proxy"))
        .build()
        .expect("client");
    let shown = format!("{client:?}");
    assert!(!shown.contains("pr0xy-pass"), "{shown}");
    let (t, consumer) = registered(&client, "proxied").await;
    long_poll_gets_a_message_published_meanwhile::<R>(&client, &consumer, t.clone(), "via proxy")
        .await;
    let requests = proxy.requests();
    let endpoint = broker.endpoint();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("POST {endpoint}/topics/{t}/messages"))),
        "the publish went through the proxy in absolute form: {requests:?}"
    );
    assert!(
        requests.iter().any(
            |r| r.starts_with(&format!("GET {endpoint}/topics/{t}/messages?"))
                && r.contains("waitseconds=3")
        ),
        "the long poll went through the proxy: {requests:?}"
    );

    for (url, status) in [(proxy.url(), 407), (proxy.url_with("mq", "wrong"), 401)] {
        let before = proxy.requests().len();
        let refused = client_builder::<R>(&broker.endpoint())
            .proxy(Proxy::new(&url).expect("proxy"))
            .retry(RetryConfig::default().with_max_attempts(5));
        assert_refused_by_proxy(&refused_publish(refused, t.clone()).await, status);
        assert_eq!(
            proxy.requests().len(),
            before + 1,
            "a {status} is not retried: {:?}",
            proxy.requests()
        );
    }

    // A proxy that filters the request answers 403 itself: a typed refusal for a publish
    // and a receive alike, not the service's error nor a lost connection.
    let Some(denying) = Tinyproxy::start_denying_all() else {
        return;
    };
    let filtered = || {
        client_builder::<R>(&broker.endpoint())
            .proxy(Proxy::new(&denying.url()).expect("proxy"))
            .retry(RetryConfig::default().with_max_attempts(5))
    };
    assert_refused_by_proxy(&refused_publish(filtered(), t.clone()).await, 403);
    let receive = filtered()
        .build()
        .expect("client")
        .consumer(t.clone(), consumer.group().clone())
        .receive(
            mq_client::BatchSize::MAX,
            mq_client::WaitSeconds::new(0).expect("wait"),
        )
        .await
        .expect_err("the receive is refused");
    assert_refused_by_proxy(&receive, 403);
}

/// An `https` endpoint through a `CONNECT` tunnel: TLS verified end to end with the
/// endpoint's name (the proxy sees only `CONNECT`), with and without proxy authentication;
/// missing or wrong credentials are a typed 407 or 401, a port the proxy does not allow a
/// typed 403, none retried.
pub async fn https_endpoint_through_tunnel<R: Runtime + Default>(broker: &TestBroker) {
    let front = TlsFront::start(broker.addr());
    let front_port: u16 = front
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("front port");
    for auth in [None, Some(("mq", "tunnel-pass"))] {
        let Some(proxy) = Tinyproxy::start(auth, &[front_port]) else {
            return;
        };
        let url = match auth {
            Some((user, password)) => proxy.url_with(user, password),
            None => proxy.url(),
        };
        let client = client_builder::<R>(&front.endpoint())
            .add_root_certificates_pem(front.ca_pem().as_bytes())
            .expect("CA")
            .proxy(Proxy::new(&url).expect("proxy"))
            .build()
            .expect("client");
        let (t, consumer) = registered(&client, "tunnel").await;
        long_poll_gets_a_message_published_meanwhile::<R>(
            &client,
            &consumer,
            t.clone(),
            "tunnelled",
        )
        .await;
        let requests = proxy.requests();
        assert!(
            !requests.is_empty()
                && requests
                    .iter()
                    .all(|r| *r == format!("CONNECT localhost:{front_port} HTTP/1.1")),
            "only CONNECT to the endpoint's name: {requests:?}"
        );

        // Without the CA the endpoint's certificate is refused through the tunnel too.
        let untrusting = client_builder::<R>(&front.endpoint())
            .proxy(Proxy::new(&url).expect("proxy"))
            .retry(RetryConfig::disabled());
        let err = refused_publish(untrusting, t.clone()).await;
        assert!(
            matches!(&err, Error::Network(e) if e.kind == TransportErrorKind::Tls),
            "{err:?}"
        );

        if auth.is_some() {
            for (url, status) in [(proxy.url(), 407), (proxy.url_with("mq", "nope"), 401)] {
                let before = proxy.requests().len();
                let refused = client_builder::<R>(&front.endpoint())
                    .add_root_certificates_pem(front.ca_pem().as_bytes())
                    .expect("CA")
                    .proxy(Proxy::new(&url).expect("proxy"))
                    .retry(RetryConfig::default().with_max_attempts(5));
                assert_refused_by_proxy(&refused_publish(refused, t.clone()).await, status);
                assert_eq!(proxy.requests().len(), before + 1, "not retried");
            }
        }
    }
    // A proxy that does not allow CONNECT to the endpoint's port: 403, final.
    let Some(strict) = Tinyproxy::start(None, &[443]) else {
        return;
    };
    let client = client_builder::<R>(&front.endpoint())
        .add_root_certificates_pem(front.ca_pem().as_bytes())
        .expect("CA")
        .proxy(Proxy::new(&strict.url()).expect("proxy"))
        .retry(RetryConfig::default().with_max_attempts(5));
    assert_refused_by_proxy(&refused_publish(client, topic("forbidden")).await, 403);
    assert_eq!(strict.requests().len(), 1, "not retried");
}

/// `NO_PROXY` matching: an endpoint the list excludes goes direct (the proxy, which would
/// refuse this client, sees nothing); one it does not exclude goes through the proxy.
pub async fn no_proxy_goes_direct<R: Runtime + Default>(broker: &TestBroker) {
    let Some(proxy) = Tinyproxy::start(Some(("mq", "secret")), &[]) else {
        return;
    };
    // No credentials: the proxy answers 407 to anything it sees.
    let unauthenticated = Proxy::new(&proxy.url()).expect("proxy");
    let t = topic("noproxy");
    for list in ["127.0.0.1", "localhost, 127.0.0.0/8", "*"] {
        let direct = client_builder::<R>(&broker.endpoint())
            .proxy(unauthenticated.clone().with_no_proxy(list))
            .build()
            .expect("client");
        direct
            .producer(t.clone())
            .publish(&TopicMessage::new("direct").expect("message"))
            .await
            .unwrap_or_else(|e| panic!("NO_PROXY={list} goes direct: {e:?}"));
    }
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    let proxied = client_builder::<R>(&broker.endpoint())
        .proxy(unauthenticated.with_no_proxy("example.com, 10.0.0.0/8, 127.0.0.2"));
    assert_refused_by_proxy(&refused_publish(proxied, t).await, 407);
    assert_eq!(proxy.requests().len(), 1, "{:?}", proxy.requests());
}

/// Publishes from 4 concurrent producers through tinyproxy, which answers HTTP/1.1 without
/// `Connection: close` and closes the connection at once: every publish succeeds. (A
/// connection pooled after such an answer was taken by the next publish before its task saw
/// the close, and that publish failed with `ConnectionLost`, unsent: 15 % of them.)
pub async fn concurrent_publishes_through_a_proxy_that_closes<R: Runtime + Default>(
    broker: &TestBroker,
) {
    let Some(proxy) = Tinyproxy::start(None, &[]) else {
        return;
    };
    let client = client_builder::<R>(&broker.endpoint())
        .proxy(Proxy::new(&proxy.url()).expect("proxy"))
        .build()
        .expect("client");
    let producer = client.producer(topic("closing"));
    // Four producers on tasks of their own (on one task, each connection's task saw the
    // close before the next publish took the connection).
    let runtime = R::default();
    let results = (0..4).map(|w| {
        let producer = producer.clone();
        let (done, result) = futures::channel::oneshot::channel();
        runtime.spawn(Box::pin(async move {
            let mut failures = Vec::new();
            for i in 0..50 {
                let message = TopicMessage::new(format!("{w}-{i}")).expect("message");
                if let Err(e) = producer.publish(&message).await {
                    failures.push(e.to_string());
                }
            }
            let _ = done.send(failures);
        }));
        result
    });
    let failures = futures::future::join_all(results.collect::<Vec<_>>())
        .await
        .into_iter()
        .flat_map(|r| r.expect("a producer task ended"))
        .collect::<Vec<_>>();
    assert!(
        failures.is_empty(),
        "{} of 200 publishes failed: {:?}",
        failures.len(),
        failures.first()
    );
}

/// A keep-alive connection to the broker's `GET /stats`, opened before the client under
/// test, so that `connections_peak` − 1 is the most connections the client ever had open.
pub struct StatsConnection {
    conn: BufReader<TcpStream>,
}

impl StatsConnection {
    /// Connects to the broker at `addr`.
    pub fn open(addr: SocketAddr) -> Self {
        let conn = TcpStream::connect(addr).expect("connect to the broker");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        Self {
            conn: BufReader::new(conn),
        }
    }

    /// `GET /stats` on this same connection (fails if the broker closed it).
    pub fn get(&mut self) -> serde_json::Value {
        self.conn
            .get_mut()
            .write_all(b"GET /stats HTTP/1.1\r\nhost: x\r\n\r\n")
            .expect("send");
        let mut length = None;
        let mut status = String::new();
        self.conn.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
        loop {
            let mut line = String::new();
            self.conn.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.expect("content-length")];
        self.conn.read_exact(&mut body).expect("body");
        serde_json::from_slice(&body).expect("stats JSON")
    }
}

fn peak(stats: &serde_json::Value) -> u64 {
    stats["server"]["connections_peak"]
        .as_u64()
        .unwrap_or_else(|| panic!("no connections_peak in {stats}"))
}

/// Cap 4: 4 long polls and 32 concurrent publishes on one client never have more than 4
/// connections open at the broker, and everything completes (publishes wait for the polls'
/// connections).
pub async fn connection_cap<R: Runtime + Default>(broker: &TestBroker) {
    let mut stats = StatsConnection::open(broker.addr());
    assert_eq!(peak(&stats.get()), 1, "only the stats connection so far");
    let cap = NonZeroUsize::new(4).expect("non-zero");
    let client = client_builder::<R>(&broker.endpoint())
        .max_connections(cap, Duration::from_secs(30))
        .build()
        .expect("client");
    let (t, consumer) = registered(&client, "capped").await;
    let producer = client.producer(t);
    let polls = futures::future::join_all((0..4).map(|_| consumer.receive(batch(16), wait(2))));
    let publishes = futures::future::join_all((0..32).map(|i| {
        let producer = &producer;
        async move {
            producer
                .publish(&TopicMessage::new(format!("m{i}")).expect("message"))
                .await
        }
    }));
    let (polled, published) = futures::join!(polls, publishes);
    let mut bodies: Vec<String> = Vec::new();
    for p in polled {
        bodies.extend(
            p.expect("long poll")
                .into_iter()
                .map(|m| String::from(m.body)),
        );
    }
    for p in published {
        p.expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while bodies.len() < 32 && Instant::now() < deadline {
        let got = consumer.receive(batch(16), wait(1)).await.expect("receive");
        consumer
            .ack(
                &got.iter()
                    .map(|m| m.receipt_handle.clone())
                    .collect::<Vec<_>>(),
            )
            .await
            .expect("ack");
        bodies.extend(got.into_iter().map(|m| String::from(m.body)));
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 32, "every publish delivered");
    let s = stats.get();
    let client_peak = peak(&s) - 1;
    assert!(
        (1..=4).contains(&client_peak),
        "at most 4 client connections open at once at the broker: {s}"
    );
}

/// A client of `endpoint` with at most one connection, waiting `max_wait` for it, and no
/// retries (so a `PoolTimeout` reaches the caller).
fn single_connection_client<R: Runtime + Default>(endpoint: &str, max_wait: Duration) -> Client {
    client_builder::<R>(endpoint)
        .max_connections(NonZeroUsize::MIN, max_wait)
        .retry(RetryConfig::default().with_max_attempts(1))
        .build()
        .expect("client")
}

/// Cap 1 held by a long poll: a publish that cannot get a connection within the wait fails
/// with the typed, retryable `PoolTimeout` (nothing sent), and succeeds once the poll is over.
pub async fn connection_wait_timeout<R: Runtime + Default>(broker: &TestBroker) {
    let client = single_connection_client::<R>(&broker.endpoint(), Duration::from_millis(300));
    let (t, consumer) = registered(&client, "waited").await;
    let producer = client.producer(t);
    let poll = consumer.receive(batch(1), wait(2));
    let publish = async {
        R::default().sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let result = producer
            .publish(&TopicMessage::new("late").expect("message"))
            .await;
        (result, started.elapsed())
    };
    let (polled, (published, waited)) = futures::join!(poll, publish);
    assert!(polled.expect("long poll").is_empty());
    let err = published.expect_err("no free connection");
    assert!(
        matches!(&err, Error::Network(e) if e.kind == TransportErrorKind::PoolTimeout),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    producer
        .publish(&TopicMessage::new("now").expect("message"))
        .await
        .expect("a connection is free again");
}

/// Cap 1: a connection the server closed while idle no longer counts — the next request
/// connects at once instead of waiting for a slot that would never come back.
pub async fn connection_cap_frees_closed_connections<R: Runtime + Default>(broker: &TestBroker) {
    let dropping = IdleDroppingProxy::start(broker.addr(), Duration::from_millis(300));
    let client = single_connection_client::<R>(&dropping.endpoint(), Duration::from_millis(500));
    let producer = client.producer(topic("freed"));
    for i in 0..3 {
        producer
            .publish(&TopicMessage::new(format!("m{i}")).expect("message"))
            .await
            .unwrap_or_else(|e| panic!("publish {i} after an idle close: {e:?}"));
        R::default().sleep(Duration::from_millis(800)).await;
    }
    assert!(
        dropping.connections() >= 3,
        "the idle connections were closed"
    );
}

/// Expands to one `#[test]` per proxy and connection-cap scenario, each run by `$block_on`
/// on runtime `$rt` against a fresh broker.
#[macro_export]
macro_rules! network_tests {
    ($rt:ty, $block_on:expr) => {
        $crate::network_tests!(@each $rt, $block_on,
            http_endpoint_through_proxy, https_endpoint_through_tunnel, no_proxy_goes_direct,
            concurrent_publishes_through_a_proxy_that_closes,
            connection_cap, connection_wait_timeout, connection_cap_frees_closed_connections);
    };
    (@each $rt:ty, $block_on:expr, $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let broker = $crate::TestBroker::start();
                ($block_on)($crate::proxy::$name::<$rt>(&broker));
            }
        )*
    };
}
