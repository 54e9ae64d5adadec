//! [`Client`] and its builder: endpoint, credentials, instance, timeouts, retries, TLS roots.

use crate::credentials::{
    CredentialsProvider, StaticCredentials, check_credentials, credentials_from_env,
};
use crate::error::{ConfigError, Error};
use crate::proxy::Proxy;
use crate::runtime::{DynRuntime, Runtime, default_runtime};
use crate::telemetry;
use crate::tls::TlsRoots;
use crate::transport::{PoolConfig, Transport};
use crate::{Consumer, Producer, TransactionProducer};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use mq_proto::client::{Endpoint, RequestContext, ResponseError};
use mq_proto::machine::{FailureKind, Idempotency, RetryConfig, RetryDecision, RetryState};
use mq_proto::sign::Credentials;
use mq_proto::trace::TraceContext;
use mq_proto::{GroupId, InstanceId, TopicName, WaitSeconds};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// SDK name and version sent in `User-Agent`.
pub const USER_AGENT: &str = concat!("mq-rust-sdk/", env!("CARGO_PKG_VERSION"));

/// Timeouts. The read timeout of a long poll is its wait seconds plus `long_poll_margin`.
///
/// ```
/// use mq_client::{TimeoutConfig, WaitSeconds};
/// use std::time::Duration;
///
/// let timeouts = TimeoutConfig {
///     request: Duration::from_secs(3),
///     ..TimeoutConfig::default()
/// };
/// assert_eq!(timeouts.for_wait(WaitSeconds::new(0)?), Duration::from_secs(3));
/// assert_eq!(timeouts.for_wait(WaitSeconds::new(30)?), Duration::from_secs(35));
/// // Client::builder().timeouts(timeouts)
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// Whole request (send and complete response) for publish, ack, commit, rollback and
    /// short polls.
    pub request: Duration,
    /// Added to the wait seconds of a long poll to get its timeout.
    pub long_poll_margin: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(10),
            long_poll_margin: Duration::from_secs(5),
        }
    }
}

impl TimeoutConfig {
    /// The timeout of a consume with this wait (saturating: a margin of `Duration::MAX`
    /// means no timeout, not a panic).
    pub fn for_wait(&self, wait: WaitSeconds) -> Duration {
        if wait.get() == 0 {
            self.request
        } else {
            Duration::from_secs(u64::from(wait.get())).saturating_add(self.long_poll_margin)
        }
    }
}

/// Builds a [`Client`]: endpoint and credentials are required; instance, timeouts, retries,
/// TLS roots and the transport are optional.
///
/// The endpoint is checked where it is given:
///
/// ```
/// use mq_client::{Client, ConfigError, Credentials, Error, RetryConfig};
/// use std::time::Duration;
///
/// let refused = Client::builder().endpoint("http://example.com/path");
/// assert!(matches!(refused, Err(Error::Config(ConfigError::InvalidEndpoint { .. }))));
///
/// let builder = Client::builder()
///     .endpoint("https://1234.mqrest.cn-hangzhou.aliyuncs.com")?
///     .credentials(Credentials::new("AK", "SK"))
///     .instance_id("MQ_INST_1234_abcd".parse()?)
///     .request_timeout(Duration::from_secs(5))
///     .retry(RetryConfig::default().with_max_attempts(5));
/// // `build()` needs a runtime: depend on `mq-tokio` or `mq-async-std` (or pass your own
/// // with `ClientBuilder::with_runtime`).
/// # drop(builder);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClientBuilder {
    runtime: Option<Arc<dyn DynRuntime>>,
    endpoint: Option<Endpoint>,
    credentials: Option<CredentialsSetting>,
    instance: Option<InstanceId>,
    timeouts: TimeoutConfig,
    retry: RetryConfig,
    user_agent_suffix: Option<String>,
    roots: TlsRoots,
    transport: Option<Arc<dyn Transport>>,
    pool: PoolConfig,
    proxy: ProxySetting,
    trace_context: Option<TraceContextSource>,
}

/// The credentials given to the builder: fixed ones are checked by `build()`, a
/// provider's before each request.
#[derive(Debug)]
enum CredentialsSetting {
    /// [`ClientBuilder::credentials`] or [`ClientBuilder::credentials_from_env`].
    Fixed(Credentials),
    /// [`ClientBuilder::credentials_provider`].
    Provider(Arc<dyn CredentialsProvider>),
}

/// Where the client's proxy comes from.
#[derive(Clone, Debug)]
enum ProxySetting {
    /// [`Proxy::from_env`] at build time (the default).
    FromEnv,
    /// No proxy, whatever the environment says.
    Off,
    /// This one.
    Use(Proxy),
}

/// Where publishes take the trace context to inject from ([`ClientBuilder::trace_context_source`]).
type TraceContextSource = Arc<dyn Fn() -> Option<TraceContext> + Send + Sync>;

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint.as_ref().map(Endpoint::to_string))
            .field("credentials", &self.credentials)
            .field("instance", &self.instance)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("pool", &self.pool)
            .field("proxy", &self.proxy)
            .field("trace_context_propagation", &self.trace_context.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder on this runtime (any [`Runtime`]; the client keeps it as `Arc<dyn …>`).
    pub fn with_runtime(runtime: impl Runtime) -> Self {
        Self::new(Some(Arc::new(runtime)))
    }

    fn new(runtime: Option<Arc<dyn DynRuntime>>) -> Self {
        Self {
            runtime,
            endpoint: None,
            credentials: None,
            instance: None,
            timeouts: TimeoutConfig::default(),
            retry: RetryConfig::default(),
            user_agent_suffix: None,
            roots: TlsRoots::default(),
            transport: None,
            pool: PoolConfig::default(),
            proxy: ProxySetting::FromEnv,
            trace_context: None,
        }
    }

    /// The service endpoint, `http://host[:port]` or `https://host[:port]`, parsed here.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with [`ConfigError::InvalidEndpoint`] (its source the
    /// [`InvalidValue`](mq_proto::InvalidValue) saying why) when `endpoint` is not such a URL:
    /// another scheme, a path, query or user info, no host, a bad port.
    pub fn endpoint(mut self, endpoint: impl AsRef<str>) -> Result<Self, Error> {
        let text = endpoint.as_ref();
        let parsed = text
            .parse()
            .map_err(|source| ConfigError::InvalidEndpoint {
                endpoint: crate::proxy::redacted(text),
                source,
            })?;
        self.endpoint = Some(parsed);
        Ok(self)
    }

    /// Fixed credentials; an empty AccessKey id or secret fails [`build`](Self::build) with
    /// [`ConfigError::EmptyCredentials`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(CredentialsSetting::Fixed(credentials));
        self
    }

    /// Credentials from `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and
    /// the optional `ALIBABA_CLOUD_SECURITY_TOKEN`, read now.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with [`ConfigError::MissingEnvVar`] when the id or the secret is
    /// unset or empty, [`ConfigError::EnvVarNotUnicode`] when one of the three variables is
    /// not valid UTF-8.
    pub fn credentials_from_env(mut self) -> Result<Self, Error> {
        self.credentials = Some(CredentialsSetting::Fixed(credentials_from_env()?));
        Ok(self)
    }

    /// A provider asked for credentials before every request (for refreshing STS tokens).
    /// Credentials it gives with an empty AccessKey id or secret fail that request with
    /// [`ConfigError::EmptyCredentials`], unsent.
    pub fn credentials_provider(mut self, provider: impl CredentialsProvider) -> Self {
        self.credentials = Some(CredentialsSetting::Provider(Arc::new(provider)));
        self
    }

    /// The instance id (`ns`); leave unset for the default instance.
    pub fn instance_id(mut self, instance: InstanceId) -> Self {
        self.instance = Some(instance);
        self
    }

    /// All timeouts at once.
    pub fn timeouts(mut self, timeouts: TimeoutConfig) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// TCP connect (plus TLS handshake) timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// Timeout of publish, ack, commit, rollback and short polls.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.request = timeout;
        self
    }

    /// Retry policy.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Appended to the `User-Agent` header.
    pub fn user_agent_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.user_agent_suffix = Some(suffix.into());
        self
    }

    /// Trusts the certificates of a PEM bundle in addition to the webpki roots.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] as [`TlsRoots::add_pem`]: [`ConfigError::InvalidPem`] for
    /// unreadable PEM, [`ConfigError::NoCertificateInPem`] when it holds no certificate.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        self.roots.add_pem(pem)?;
        Ok(self)
    }

    /// Whether to trust the webpki (Mozilla) roots; on by default.
    pub fn webpki_roots(mut self, enabled: bool) -> Self {
        self.roots.set_webpki_roots(enabled);
        self
    }

    /// How long idle pooled connections are kept.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool.idle_timeout = timeout;
        self
    }

    /// Caps the connections open at once to the endpoint (idle ones and those held by long
    /// polls included) at `max`; a request that finds all `max` busy waits up to `max_wait`
    /// for one, then fails with a retryable
    /// [`TransportErrorKind::PoolTimeout`](crate::TransportErrorKind::PoolTimeout). Each
    /// running [`MessageStream`](crate::MessageStream) or checker keeps one long poll
    /// outstanding: size `max` above their number (README "Sizing the connection cap").
    pub fn max_connections(mut self, max: NonZeroUsize, max_wait: Duration) -> Self {
        self.pool.max_connections_per_endpoint = Some(max);
        self.pool.max_connection_wait = max_wait;
        self
    }

    /// All pool settings at once (the connect timeout is still taken from
    /// [`connect_timeout`](Self::connect_timeout)).
    pub fn pool_config(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Sends every request through this HTTP proxy (`CONNECT` tunnel for an `https`
    /// endpoint, absolute-form requests for an `http` one), unless its no-proxy list
    /// excludes the endpoint. Without this call the proxy comes from the environment
    /// ([`Proxy::from_env`]: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxySetting::Use(proxy);
        self
    }

    /// Connects directly, ignoring the proxy environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Off;
        self
    }

    /// Turns on trace context propagation (off by default): every publish asks `source` for
    /// the current W3C trace context and, when it gives one and the message carries none,
    /// publishes the message with it in the properties `traceparent` and `tracestate`
    /// ([`TopicMessage::with_trace_context`](mq_proto::TopicMessage::with_trace_context);
    /// names and encoding in [`mq_proto::trace`]). Consumers read it back with
    /// [`Message::trace_context`](mq_proto::Message::trace_context).
    ///
    /// With the `otel` feature, `mq_client::otel::current_trace_context` is the source that
    /// reads the OpenTelemetry context of the current `tracing` span.
    ///
    /// ```
    /// use mq_client::Client;
    /// use mq_client::mq_proto::trace::{TraceContext, TraceParent, TraceState};
    ///
    /// // A fixed context, for illustration; a tracer would give the current span's.
    /// let builder = Client::builder().trace_context_source(|| {
    ///     let parent = TraceParent::new([7; 16], [9; 8], TraceParent::FLAG_SAMPLED).ok()?;
    ///     Some(TraceContext::new(parent, TraceState::new()))
    /// });
    /// # drop(builder);
    /// ```
    pub fn trace_context_source(
        mut self,
        source: impl Fn() -> Option<TraceContext> + Send + Sync + 'static,
    ) -> Self {
        self.trace_context = Some(Arc::new(source));
        self
    }

    /// Replaces the HTTP transport (for tests or custom stacks).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Validates the configuration and builds the client. Nothing is sent: the first
    /// connection is made by the first request.
    ///
    /// # Errors
    ///
    /// [`Error::Config`]: [`ConfigError::NoRuntime`] when [`Client::builder`] found no
    /// runtime crate, [`ConfigError::MissingEndpoint`], [`ConfigError::ZeroTimeout`] (a
    /// connect or request timeout or long-poll margin of zero), [`ConfigError::MissingCredentials`],
    /// [`ConfigError::EmptyCredentials`] (fixed credentials with an empty id or secret, or a
    /// blank security token),
    /// or (without a custom [`transport`](Self::transport)) a TLS root or configuration
    /// refused by rustls ([`ConfigError::InvalidRootCertificate`], [`ConfigError::Tls`]), or
    /// a proxy environment variable that is no `http://` proxy URL
    /// ([`ConfigError::InvalidProxy`]).
    pub fn build(self) -> Result<Client, Error> {
        let runtime = self.runtime.ok_or(ConfigError::NoRuntime)?;
        let endpoint = self.endpoint.ok_or(ConfigError::MissingEndpoint)?;
        for (timeout, setting) in [
            (self.timeouts.connect, "connect"),
            (self.timeouts.request, "request"),
            (self.timeouts.long_poll_margin, "long-poll margin"),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::ZeroTimeout { setting }.into());
            }
        }
        let credentials: Arc<dyn CredentialsProvider> =
            match self.credentials.ok_or(ConfigError::MissingCredentials)? {
                CredentialsSetting::Fixed(c) => {
                    check_credentials(&c)?;
                    Arc::new(StaticCredentials::new(c))
                }
                CredentialsSetting::Provider(p) => p,
            };
        let transport = match self.transport {
            Some(t) => t,
            None => {
                let tls = self.roots.client_config()?;
                let pool = PoolConfig {
                    connect_timeout: self.timeouts.connect,
                    ..self.pool
                };
                let proxy = match self.proxy {
                    ProxySetting::FromEnv => Proxy::from_env()?,
                    ProxySetting::Off => None,
                    ProxySetting::Use(p) => Some(p),
                };
                let endpoint_uri = endpoint.to_string().parse::<http::Uri>().ok();
                if let Some(route) = proxy
                    .as_ref()
                    .zip(endpoint_uri)
                    .and_then(|(p, uri)| p.route(&uri))
                {
                    // The proxy's address only: its credentials never go to a log.
                    tracing::debug!(proxy_host = %route.host, proxy_port = route.port, "requests go through an HTTP proxy");
                }
                runtime.pooled_transport(tls, pool, proxy)
            }
        };
        let user_agent = match self.user_agent_suffix {
            Some(s) => format!("{USER_AGENT} {s}"),
            None => USER_AGENT.to_owned(),
        };
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Ok(Client {
            inner: Arc::new(Inner {
                runtime,
                endpoint,
                credentials,
                instance: self.instance,
                transport,
                timeouts: self.timeouts,
                retry: self.retry,
                user_agent,
                seed: AtomicU64::new(seed),
                trace_context: self.trace_context,
            }),
        })
    }
}

struct Inner {
    runtime: Arc<dyn DynRuntime>,
    endpoint: Endpoint,
    credentials: Arc<dyn CredentialsProvider>,
    instance: Option<InstanceId>,
    transport: Arc<dyn Transport>,
    timeouts: TimeoutConfig,
    retry: RetryConfig,
    user_agent: String,
    seed: AtomicU64,
    trace_context: Option<TraceContextSource>,
}

/// A client for one endpoint and instance. Cheap to clone; clones share the connection pool.
///
/// Get producers and consumers from it. See the runtime crates (`mq-tokio`, `mq-async-std`)
/// for complete examples.
///
/// ```no_run
/// use mq_client::{Client, Credentials, TopicMessage};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder()
///     .endpoint("http://127.0.0.1:8080")?
///     .credentials(Credentials::new("mq-dev-access-key", "mq-dev-secret"))
///     .build()?;
/// let producer = client.producer("orders".parse()?);
/// let consumer = client.consumer("orders".parse()?, "GID_orders".parse()?);
/// producer.publish(&TopicMessage::new("hello")?).await?;
/// println!("{} in {:?}", client.endpoint(), consumer.group());
/// # Ok(()) }
/// ```
pub struct Client {
    inner: Arc<Inner>,
}

impl Clone for Client {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint.to_string())
            .field("instance", &self.inner.instance)
            .field("credentials", &self.inner.credentials)
            .field("timeouts", &self.inner.timeouts)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder on the runtime of the runtime crate in use (`mq_tokio::Client::builder()`
    /// runs on tokio, `mq_async_std::Client::builder()` on async-io). With both linked, tokio
    /// is picked inside a tokio runtime and async-io elsewhere; pick explicitly with
    /// [`ClientBuilder::with_runtime`]. Without any runtime crate, `build` fails with
    /// [`Error::Config`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new(default_runtime())
    }
}

/// Decodes a response (status, headers, the body's shared buffer) into an attempt's value:
/// the `mq_proto::client` decoders, the consume ones in their `_bytes` form so that messages
/// share the response's buffer.
pub(crate) type DecodeFn<T> = fn(StatusCode, &HeaderMap, &Bytes) -> Result<T, ResponseError>;

/// What a request builder needs besides the signing context.
pub(crate) type BuildFn<'a> =
    dyn Fn(&RequestContext<'_>) -> Result<Request<Bytes>, Error> + Send + Sync + 'a;

impl Client {
    /// A producer for normal, tagged, keyed, delayed and ordered messages on `topic`.
    pub fn producer(&self, topic: TopicName) -> Producer {
        Producer::new(self.clone(), topic)
    }

    /// A producer of transactional messages on `topic`, checked by `group`.
    pub fn transaction_producer(&self, topic: TopicName, group: GroupId) -> TransactionProducer {
        TransactionProducer::new(self.clone(), topic, group)
    }

    /// A consumer of `topic` in `group` (all tags; narrow it with `with_tag_filter`).
    pub fn consumer(&self, topic: TopicName, group: GroupId) -> Consumer {
        Consumer::new(self.clone(), topic, group)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The instance id, `None` for the default instance.
    pub fn instance_id(&self) -> Option<&InstanceId> {
        self.inner.instance.as_ref()
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &TimeoutConfig {
        &self.inner.timeouts
    }

    /// The retry policy in force.
    pub fn retry_config(&self) -> &RetryConfig {
        &self.inner.retry
    }

    /// The trace context to inject into a publish, when propagation is on and there is one.
    pub(crate) fn current_trace_context(&self) -> Option<TraceContext> {
        self.inner
            .trace_context
            .as_ref()
            .and_then(|source| source())
    }

    pub(crate) fn runtime(&self) -> &Arc<dyn DynRuntime> {
        &self.inner.runtime
    }

    pub(crate) fn next_seed(&self) -> u64 {
        // splitmix64 step: distinct, well-mixed seeds per request.
        let mut z = self
            .inner
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Sends one attempt: signs with fresh credentials and the current date, sends, decodes.
    /// Returns the decoded value, or the failure classified for the retry machine (by
    /// [`Error::failure_kind`], the classification behind [`Error::is_retryable`] too).
    pub(crate) async fn attempt<T>(
        &self,
        operation: &'static str,
        topic: &TopicName,
        timeout: Duration,
        build: &BuildFn<'_>,
        decode: DecodeFn<T>,
    ) -> Result<T, (FailureKind, Error)> {
        // Sent requests have a latency; one that could not be made (credentials, build) not.
        let mut elapsed = None;
        let result: Result<T, Error> = async {
            let inner = &self.inner;
            let credentials = inner.credentials.credentials().await?;
            check_credentials(&credentials)?;
            let ctx = RequestContext {
                endpoint: &inner.endpoint,
                credentials: &credentials,
                instance: inner.instance.as_ref(),
                date: SystemTime::now(),
                user_agent: &inner.user_agent,
            };
            let request = build(&ctx)?;
            let span = tracing::debug_span!(
                "mq.request",
                operation,
                topic = %topic,
                request_id = tracing::field::Empty,
                status = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
            );
            let started = Instant::now();
            let result = inner
                .transport
                .send(request, timeout)
                .instrument(span.clone())
                .await;
            let took = started.elapsed();
            elapsed = Some(took);
            span.record("latency_ms", took.as_millis() as u64);
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    span.in_scope(|| tracing::debug!(error = %e, "request failed"));
                    return Err(Error::from_transport(e, timeout));
                }
            };
            let request_id = response
                .headers()
                .get("x-mq-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            span.record("request_id", request_id);
            span.record("status", response.status().as_u16());
            match decode(response.status(), response.headers(), response.body()) {
                Ok(v) => {
                    span.in_scope(|| tracing::debug!("request succeeded"));
                    Ok(v)
                }
                Err(ResponseError::Service(s)) => {
                    span.in_scope(|| tracing::debug!(code = %s.code, "service error"));
                    Err(Error::Service(s))
                }
                Err(ResponseError::Decode(d)) => {
                    span.in_scope(|| tracing::debug!(error = %d, "undecodable response"));
                    Err(Error::Response(d))
                }
            }
        }
        .await;
        telemetry::request(operation, &result, elapsed);
        result.map_err(classified)
    }

    /// Runs a request with the retry policy.
    pub(crate) async fn execute<T>(
        &self,
        operation: &'static str,
        topic: &TopicName,
        idempotency: Idempotency,
        timeout: Duration,
        build: &BuildFn<'_>,
        decode: DecodeFn<T>,
    ) -> Result<T, Error> {
        self.execute_tracked(operation, topic, idempotency, timeout, build, decode)
            .await
            .map(|(v, _)| v)
    }

    /// [`Client::execute`], also saying whether an earlier, failed attempt may have taken effect at
    /// the server ([`FailureKind::may_have_taken_effect`]: the answer may then reflect its effects).
    pub(crate) async fn execute_tracked<T>(
        &self,
        operation: &'static str,
        topic: &TopicName,
        idempotency: Idempotency,
        timeout: Duration,
        build: &BuildFn<'_>,
        decode: DecodeFn<T>,
    ) -> Result<(T, bool), Error> {
        let mut retry = RetryState::new(
            self.inner.retry.clone(),
            idempotency,
            self.next_seed(),
            Instant::now(),
        );
        loop {
            match self.attempt(operation, topic, timeout, build, decode).await {
                Ok(v) => return Ok((v, retry.earlier_attempt_may_have_taken_effect())),
                Err((kind, error)) => match retry.on_failure(Instant::now(), &kind) {
                    RetryDecision::Retry { after } => {
                        tracing::debug!(operation, ?kind, ?after, "retrying");
                        telemetry::retry(operation);
                        self.inner.runtime.sleep(after).await;
                    }
                    RetryDecision::GiveUp => return Err(error),
                },
            }
        }
    }
}

/// An attempt's error with its classification for the retry machine.
fn classified(error: Error) -> (FailureKind, Error) {
    (error.failure_kind(), error)
}
