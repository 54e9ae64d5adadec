//! The client's error type.

use crate::transport::{TransportError, TransportErrorKind};
use mq_proto::client::{DecodeError, EncodeError, ServiceError};
use mq_proto::machine::{AckRefused, FailureKind};
use mq_proto::{AckKind, ErrorCode, HandleFailure, ReceiptHandle};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong when calling the service.
///
/// Whether a repeat can succeed is one classification, [`FailureKind`]: the client's own
/// retries and [`Error::is_retryable`] both use [`Error::failure_kind`]. Every variant that
/// wraps a cause keeps it typed and returns it from [`std::error::Error::source`].
///
/// ```
/// use mq_client::{ConfigError, Error, TopicMessage};
/// use mq_client::mq_proto::machine::FailureKind;
/// use std::error::Error as _;
///
/// let e = Error::Timeout { after: std::time::Duration::from_secs(3) };
/// assert!(e.is_retryable());
/// assert_eq!(e.failure_kind(), FailureKind::Timeout);
/// assert!(e.service_code().is_none());
///
/// // Invalid input keeps the typed cause.
/// let e = Error::from(TopicMessage::new("").unwrap_err());
/// assert!(matches!(e, Error::InvalidInput(_)));
/// assert!(!e.is_retryable());
/// assert!(e.source().is_some());
///
/// // So does a configuration error.
/// let e = mq_client::Client::builder().endpoint("ftp://example.com").unwrap_err();
/// assert!(matches!(e, Error::Config(ConfigError::InvalidEndpoint { .. })));
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was invalid (caught before anything was sent).
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// The client was configured incorrectly (endpoint, credentials, TLS roots, runtime).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// No complete response arrived in time.
    #[error("request timed out after {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The request could not be delivered or the connection failed.
    #[error("network error: {0}")]
    Network(#[source] TransportError),
    /// The response could not be understood.
    #[error("undecodable response: {0}")]
    Response(#[source] DecodeError),
    /// The service answered with an error.
    #[error("service error: {0}")]
    Service(#[source] ServiceError),
    /// The body MD5 reported by the service does not match the body sent.
    #[error("body MD5 mismatch: sent {expected}, service reported {reported}")]
    Md5Mismatch {
        /// MD5 computed locally.
        expected: String,
        /// MD5 reported by the service.
        reported: String,
    },
    /// A [`CredentialsProvider`](crate::CredentialsProvider) failed; the provider's own error
    /// is the source.
    #[error("credentials unavailable: {0}")]
    Credentials(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The operation was stopped by a shutdown: the user's, or its runtime's (a background
    /// task — a consumer stream, a checker, a handler loop — stopped with its runtime).
    #[error("shut down (the client's background task was stopped, or its runtime shut down)")]
    Shutdown,
}

impl Error {
    /// Whether repeating the same request may succeed: [`Error::failure_kind`] is transient
    /// ([`FailureKind::is_transient`]: connection trouble other than a refused TLS handshake,
    /// timeouts, throttling, server faults).
    ///
    /// A request that was retryable may still have been given up on by the client: a
    /// publish that may have reached the server is not resent unless at-least-once is on.
    pub fn is_retryable(&self) -> bool {
        self.failure_kind().is_transient()
    }

    /// This error as the retry machine classifies it (the one mapping from errors to
    /// [`FailureKind`]).
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::InvalidInput(_) | Self::Config(_) | Self::Credentials(_) => FailureKind::Other,
            Self::Timeout { .. } => FailureKind::Timeout,
            Self::Network(e) => match e.kind {
                TransportErrorKind::Connect => FailureKind::Connect,
                TransportErrorKind::Tls => FailureKind::Tls,
                TransportErrorKind::NotSent => FailureKind::NotSent,
                TransportErrorKind::ConnectionLost => FailureKind::ConnectionLost,
                TransportErrorKind::Timeout => FailureKind::Timeout,
                TransportErrorKind::Protocol => FailureKind::InvalidResponse,
                // Waited the pool's `max_connection_wait` for a free connection: not sent.
                TransportErrorKind::PoolTimeout => FailureKind::NotSent,
                // The proxy could not reach the endpoint (502, 503, 504): nothing was sent
                // and a later attempt may get through, as with a refused connection.
                TransportErrorKind::ProxyRefused { status } if status >= 500 => {
                    FailureKind::Connect
                }
                // 407 (proxy authentication) and 403 (proxy policy): a refusal, as a 4xx
                // from the service is; the same request is refused again until the
                // configuration changes, so it is final.
                TransportErrorKind::ProxyRefused { status } => FailureKind::status(status, None),
            },
            Self::Response(_) | Self::Md5Mismatch { .. } => FailureKind::InvalidResponse,
            Self::Service(e) => FailureKind::status(e.status, Some(e.code.clone())),
            Self::Shutdown => FailureKind::Cancelled,
        }
    }

    /// The service error code, if the service answered with an error.
    pub fn service_code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The service's request id, if known.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Service(e) => e.request_id.as_deref(),
            _ => None,
        }
    }

    /// The status with which an HTTP proxy refused the request (a `CONNECT` answered
    /// 407, 403, 502, …, or a 407 to a request forwarded through the proxy), if it did.
    pub fn proxy_status(&self) -> Option<u16> {
        match self {
            Self::Network(TransportError {
                kind: TransportErrorKind::ProxyRefused { status },
                ..
            }) => Some(*status),
            _ => None,
        }
    }

    /// A failed credentials provider's error, for [`CredentialsProvider`] implementations.
    ///
    /// [`CredentialsProvider`]: crate::CredentialsProvider
    pub fn credentials(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Credentials(Arc::new(error))
    }

    /// The error of a failed [`crate::Transport::send`] with this timeout.
    pub(crate) fn from_transport(e: TransportError, timeout: Duration) -> Self {
        if e.kind == TransportErrorKind::Timeout {
            Self::Timeout { after: timeout }
        } else {
            Self::Network(e)
        }
    }
}

/// The errors inside an `io::Error`, outermost first: the one it wraps, that one's sources,
/// and so on, looking inside wrapped `io::Error`s too (`io::Error::source` skips the error it
/// wraps). How the transport finds a typed cause (a refused certificate, a refusing proxy) in
/// what a runtime's `connect` returned.
pub(crate) fn io_causes(
    error: &std::io::Error,
) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(wrapped(error), |e| {
        match e.downcast_ref::<std::io::Error>() {
            Some(io) => wrapped(io),
            None => e.source(),
        }
    })
}

/// The error an `io::Error` wraps, if any.
fn wrapped(io: &std::io::Error) -> Option<&(dyn std::error::Error + 'static)> {
    io.get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static))
}

impl From<mq_proto::InvalidValue> for Error {
    fn from(e: mq_proto::InvalidValue) -> Self {
        Self::InvalidInput(e.into())
    }
}

impl From<mq_proto::MessageError> for Error {
    fn from(e: mq_proto::MessageError) -> Self {
        Self::InvalidInput(e.into())
    }
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        Self::InvalidInput(e.into())
    }
}

impl From<mq_proto::client::ResponseError> for Error {
    fn from(e: mq_proto::client::ResponseError) -> Self {
        match e {
            mq_proto::client::ResponseError::Service(s) => Self::Service(s),
            mq_proto::client::ResponseError::Decode(d) => Self::Response(d),
        }
    }
}

/// What was invalid in an [`Error::InvalidInput`]; the typed error of the layer that refused
/// it is the source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A value (name, tag, handle, size, …) was refused by its type.
    #[error("{0}")]
    Value(#[from] mq_proto::InvalidValue),
    /// A message could not be built or is over a limit.
    #[error("{0}")]
    Message(#[from] mq_proto::MessageError),
    /// A request could not be built from the arguments.
    #[error("{0}")]
    Request(#[from] EncodeError),
    /// A settlement (ack, commit, rollback) of a handle that is not in hand, or whose
    /// settlement is already under way.
    #[error("{0}")]
    Settlement(#[from] AckRefused),
}

/// What is wrong with the configuration in an [`Error::Config`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No runtime: `Client::builder()` was used without a runtime crate.
    #[error("no runtime: use mq_tokio or mq_async_std, or ClientBuilder::with_runtime")]
    NoRuntime,
    /// [`ClientBuilder::endpoint`](crate::ClientBuilder::endpoint) was never called.
    #[error("no endpoint set")]
    MissingEndpoint,
    /// The endpoint is not `http(s)://host[:port]`.
    #[error("endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        /// The text given, a password in it shown as `***`.
        endpoint: String,
        /// Why it was refused.
        #[source]
        source: mq_proto::InvalidValue,
    },
    /// A timeout of the [`TimeoutConfig`](crate::TimeoutConfig) is zero: every request
    /// would time out before its answer.
    #[error(
        "the {setting} timeout is zero: every request would time out (give a positive duration)"
    )]
    ZeroTimeout {
        /// `connect`, `request` or `long-poll margin`.
        setting: &'static str,
    },
    /// No credentials were set.
    #[error("no credentials set")]
    MissingCredentials,
    /// The AccessKey id or secret of the credentials given (to
    /// [`ClientBuilder::credentials`](crate::ClientBuilder::credentials), checked by
    /// `build()`, or by a [`CredentialsProvider`](crate::CredentialsProvider) before each
    /// request) is empty, or their security token is given but blank: no request signed
    /// with it can be accepted.
    #[error("the {what} of the credentials is empty")]
    EmptyCredentials {
        /// `AccessKey id`, `AccessKey secret` or `security token` (never the value).
        what: &'static str,
    },
    /// The AccessKey id or the security token of the credentials given (checked where
    /// [`EmptyCredentials`](Self::EmptyCredentials) is) holds a character its request
    /// header (`Authorization: MQ {id}:{signature}`, `security-token`) cannot carry as
    /// given: a control character, a space or tab at either end (a value copied with a
    /// stray space), or in the id a `:` (the header's separator). Sent, it would be refused
    /// as another, unknown key.
    #[error(
        "the {what} of the credentials contains {character:?}, which a request header cannot carry"
    )]
    UnsendableCredentials {
        /// `AccessKey id` or `security token`.
        what: &'static str,
        /// The first such character found.
        character: char,
    },
    /// An environment variable the credentials are read from is unset or empty.
    #[error("{variable} is not set or is empty")]
    MissingEnvVar {
        /// The variable.
        variable: &'static str,
    },
    /// An environment variable the client reads (credentials, proxies) is set to a value
    /// that is not valid UTF-8: refused rather than taken for unset (which would send
    /// requests without a security token, or go direct instead of through a proxy).
    #[error("{variable} is not valid UTF-8")]
    EnvVarNotUnicode {
        /// The variable.
        variable: &'static str,
    },
    /// A PEM bundle could not be read.
    #[error("invalid PEM certificate: {0}")]
    InvalidPem(#[source] Arc<std::io::Error>),
    /// A PEM bundle held no certificate.
    #[error("no certificate found in PEM data")]
    NoCertificateInPem,
    /// A root certificate was refused by rustls.
    #[error("invalid root certificate: {0}")]
    InvalidRootCertificate(#[source] rustls::Error),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// A proxy URL (given to [`Proxy::new`](crate::Proxy::new) or read from an environment
    /// variable by [`Proxy::from_env`](crate::Proxy::from_env)) is not
    /// `http://[user[:password]@]host[:port]`.
    #[error("{what} {url:?}: {reason}")]
    InvalidProxy {
        /// Where the URL came from: `the proxy URL` or the environment variable's name.
        what: String,
        /// The URL with its password replaced by `***`.
        url: String,
        /// Which part is wrong and how (the scheme, the host, the port, a path or query,
        /// quoting that part; never the user info).
        reason: String,
    },
}

/// An ack, commit or rollback that did not acknowledge every handle, saying exactly which
/// handles were and were not acknowledged.
///
/// [`Consumer::ack`](crate::Consumer::ack) sends its handles in requests of at most
/// [`HandleBatch::MAX`](mq_proto::HandleBatch::MAX), one after another. When request *k*
/// fails, the handles of the requests before it are acknowledged (less those the service
/// refused), the handles of request *k* are [`unknown`](Self::unknown) (the request may or may
/// not have been applied), and the later handles were [`not_sent`](Self::not_sent). Every
/// handle given is in exactly one of [`acked`](Self::acked), [`failures`](Self::failures),
/// [`expired`](Self::expired), [`unknown`](Self::unknown) and [`not_sent`](Self::not_sent).
///
/// ```no_run
/// # async fn example(consumer: mq_client::Consumer, handles: Vec<mq_client::ReceiptHandle>) {
/// match consumer.ack(&handles).await {
///     Ok(()) => println!("all {} acknowledged", handles.len()),
///     Err(e) => {
///         println!("{} acknowledged", e.acked().len());
///         for f in e.failures() {
///             println!("refused {}: {}", f.receipt_handle, f.code); // delivered again later
///         }
///         if let Some(error) = e.request_error() {
///             // `unknown()` may or may not be acked; `not_sent()` surely are not: ack again.
///             println!("{error}; {} unknown, {} not sent", e.unknown().len(), e.not_sent().len());
///         }
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AckError(Box<Settlement>);

/// What [`AckError`] holds (boxed: errors stay small).
#[derive(Clone, Debug)]
struct Settlement {
    /// Ack, commit or rollback: what the message says was not done.
    kind: AckKind,
    acked: Vec<ReceiptHandle>,
    failures: Vec<HandleFailure>,
    refused: Vec<ReceiptHandle>,
    expired: Vec<ReceiptHandle>,
    unknown: Vec<ReceiptHandle>,
    not_sent: Vec<ReceiptHandle>,
    request_error: Option<Error>,
}

impl AckError {
    /// The handles that were acknowledged (committed, rolled back).
    pub fn acked(&self) -> &[ReceiptHandle] {
        &self.0.acked
    }

    /// The handles the service refused, with its code and message (expired, already used,
    /// unknown handle). These messages are not acknowledged.
    pub fn failures(&self) -> &[HandleFailure] {
        &self.0.failures
    }

    /// The handles not sent because, by the server's clock, they had expired before the
    /// settlement (only the message stream and the checker know this); the messages are
    /// delivered again.
    pub fn expired(&self) -> &[ReceiptHandle] {
        &self.0.expired
    }

    /// The handles of the request that failed with [`request_error`](Self::request_error):
    /// the service may or may not have applied it.
    pub fn unknown(&self) -> &[ReceiptHandle] {
        &self.0.unknown
    }

    /// The handles never sent: those after a failed request, or refused by the client
    /// before sending (a handle not in hand: [`request_error`](Self::request_error) is
    /// [`Error::InvalidInput`]).
    pub fn not_sent(&self) -> &[ReceiptHandle] {
        &self.0.not_sent
    }

    /// Every handle not known to be acknowledged: refused, expired, unknown and not sent.
    pub fn unacknowledged(&self) -> impl Iterator<Item = &ReceiptHandle> {
        self.0
            .refused
            .iter()
            .chain(&self.0.expired)
            .chain(&self.0.unknown)
            .chain(&self.0.not_sent)
    }

    /// The error that stopped the settlement: the failed request's (its handles are
    /// [`unknown`](Self::unknown)) or the client's refusal to send. `None` when every
    /// request was answered.
    pub fn request_error(&self) -> Option<&Error> {
        self.0.request_error.as_ref()
    }

    /// Takes the request error out (see [`request_error`](Self::request_error)).
    pub fn into_request_error(self) -> Option<Error> {
        self.0.request_error
    }

    /// What was asked for the handles: an ack, a commit or a rollback.
    pub fn kind(&self) -> AckKind {
        self.0.kind
    }

    /// The same outcome of a settlement of `kind` (an ack until this is called).
    pub(crate) fn for_kind(mut self, kind: AckKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// No handle yet.
    pub(crate) fn empty() -> Self {
        Self(Box::new(Settlement {
            kind: AckKind::Ack,
            acked: Vec::new(),
            failures: Vec::new(),
            refused: Vec::new(),
            expired: Vec::new(),
            unknown: Vec::new(),
            not_sent: Vec::new(),
            request_error: None,
        }))
    }

    /// Records the answer to one request of `sent`: the refused handles (attributed with
    /// [`mq_proto::attribute_failures`]) fail, the others are acknowledged.
    pub(crate) fn answered(&mut self, sent: &[ReceiptHandle], failures: Vec<HandleFailure>) {
        for h in sent {
            match failures.iter().find(|f| f.receipt_handle == h.as_str()) {
                Some(_) => self.0.refused.push(h.clone()),
                None => self.0.acked.push(h.clone()),
            }
        }
        self.0.failures.extend(failures);
    }

    /// Records a request of `sent` that failed with `error`, and the handles never sent.
    pub(crate) fn failed(
        &mut self,
        sent: Vec<ReceiptHandle>,
        error: Error,
        not_sent: impl IntoIterator<Item = ReceiptHandle>,
    ) {
        self.0.unknown.extend(sent);
        self.0.not_sent.extend(not_sent);
        self.0.request_error = Some(error);
    }

    /// One handle refused by the service.
    pub(crate) fn refused(handle: ReceiptHandle, failure: HandleFailure) -> Self {
        let mut e = Self::empty();
        e.answered(std::slice::from_ref(&handle), vec![failure]);
        e
    }

    /// One handle not sent because it expired by the server's clock.
    pub(crate) fn expired_handle(handle: ReceiptHandle) -> Self {
        let mut e = Self::empty();
        e.0.expired.push(handle);
        e
    }

    /// One handle in a request that failed with `error`.
    pub(crate) fn request_failed(handle: ReceiptHandle, error: Error) -> Self {
        let mut e = Self::empty();
        e.failed(vec![handle], error, []);
        e
    }

    /// Handles the client refused to send, for `error`.
    pub(crate) fn not_sent_for(
        handles: impl IntoIterator<Item = ReceiptHandle>,
        error: Error,
    ) -> Self {
        let mut e = Self::empty();
        e.0.not_sent.extend(handles);
        e.0.request_error = Some(error);
        e
    }

    /// `Ok` when every handle was acknowledged.
    pub(crate) fn into_result(self) -> Result<(), Self> {
        if self.0.failures.is_empty()
            && self.0.expired.is_empty()
            && self.0.unknown.is_empty()
            && self.0.not_sent.is_empty()
            && self.0.request_error.is_none()
        {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not_acked = self.0.refused.len() + self.0.expired.len() + self.0.unknown.len();
        let total = self.0.acked.len() + not_acked + self.0.not_sent.len();
        let not_done = match self.0.kind {
            AckKind::Commit => "not committed",
            AckKind::Rollback => "not rolled back",
            AckKind::Ack => "not acknowledged",
        };
        write!(
            f,
            "{} of {total} receipt handle(s) {not_done}",
            not_acked + self.0.not_sent.len()
        )?;
        if let Some(first) = self.0.failures.first() {
            write!(
                f,
                "; {} refused (first: {})",
                self.0.failures.len(),
                first.code
            )?;
        }
        if !self.0.expired.is_empty() {
            write!(f, "; {} expired, not sent", self.0.expired.len())?;
        }
        if let Some(error) = &self.0.request_error {
            write!(
                f,
                "; {} unknown and {} not sent after: {error}",
                self.0.unknown.len(),
                self.0.not_sent.len()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for AckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .request_error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `credentials_from_env` gives it for an empty variable too (`VAR=""`): the text must
    /// not claim the variable is unset.
    #[test]
    fn a_missing_variable_may_be_empty() {
        let e = Error::Config(ConfigError::MissingEnvVar {
            variable: "ALIBABA_CLOUD_ACCESS_KEY_ID",
        });
        assert_eq!(
            e.to_string(),
            "invalid configuration: ALIBABA_CLOUD_ACCESS_KEY_ID is not set or is empty"
        );
    }

    /// An endpoint refused for its user info: the error (shown and logged) keeps the user
    /// and hides the password, as the proxy errors do.
    #[test]
    fn an_endpoint_error_never_shows_a_password() {
        let Err(e) = crate::Client::builder().endpoint("http://alice:s3cret@127.0.0.1:8080") else {
            panic!("an endpoint with user info is refused");
        };
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("http://alice:***@127.0.0.1:8080"), "{text}");
        }
        // User info that is not `user:password` may be the secret itself (fresh-eyes
        // finding: it was shown, with `:***` appended).
        for (endpoint, shown) in [
            ("http://hunter2@h", "http://***@h"),
            ("http://u@hunter2@h", "http://***@h"),
            ("http://u;hunter2@h", "http://***@h"),
            ("http://u%3Ahunter2@h", "http://***@h"),
            ("http://hunter2@x:pw@h", "http://***@h"),
            ("http://:hunter2@h", "http://***@h"),
            ("http://hunter2:@h", "http://***@h"),
        ] {
            let Err(e) = crate::Client::builder().endpoint(endpoint) else {
                panic!("{endpoint}: an endpoint with user info is refused");
            };
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(!text.contains("hunter2"), "{text}");
                assert!(text.contains(shown), "{endpoint}: {text}");
            }
        }
    }

    /// Fresh-eyes finding: zero timeouts built a client whose every request failed.
    // `build` needs a runtime before it looks at the timeouts: without a runtime feature
    // (`cargo test -p mq-client`) it is `NoRuntime`.
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    #[test]
    fn a_zero_timeout_is_refused_at_build() {
        use std::time::Duration;
        let builder = || {
            crate::Client::builder()
                .endpoint("http://127.0.0.1:9")
                .expect("endpoint")
                .credentials(crate::Credentials::new("id", "secret"))
        };
        let zero = Duration::ZERO;
        for (builder, setting) in [
            (builder().connect_timeout(zero), "connect"),
            (builder().request_timeout(zero), "request"),
            (
                builder().timeouts(crate::TimeoutConfig {
                    long_poll_margin: zero,
                    ..Default::default()
                }),
                "long-poll margin",
            ),
        ] {
            match builder.build() {
                Err(Error::Config(ConfigError::ZeroTimeout { setting: s })) => {
                    assert_eq!(s, setting);
                }
                other => panic!("{setting}: {other:?}"),
            }
        }
        assert!(
            builder()
                .request_timeout(Duration::from_millis(1))
                .build()
                .is_ok()
        );
    }

    fn service(status: u16, code: ErrorCode) -> Error {
        Error::Service(ServiceError::new(status, code, ""))
    }

    fn network(kind: TransportErrorKind) -> Error {
        Error::Network(TransportError::new(kind, "test"))
    }

    /// Every variant: its [`FailureKind`], and `is_retryable` is that kind's `is_transient`
    /// (one classification for the client's retries and for callers).
    #[test]
    fn is_retryable_is_the_failure_kinds_classification() {
        let other = |c: &str| ErrorCode::Other(c.into());
        let table: Vec<(Error, FailureKind, bool)> = vec![
            (
                Error::from(mq_proto::MessageError::EmptyBody),
                FailureKind::Other,
                false,
            ),
            (
                Error::Config(ConfigError::MissingEndpoint),
                FailureKind::Other,
                false,
            ),
            (
                Error::credentials(std::io::Error::other("x")),
                FailureKind::Other,
                false,
            ),
            (
                Error::Timeout {
                    after: Duration::from_secs(1),
                },
                FailureKind::Timeout,
                true,
            ),
            (
                network(TransportErrorKind::Connect),
                FailureKind::Connect,
                true,
            ),
            (network(TransportErrorKind::Tls), FailureKind::Tls, false),
            (
                network(TransportErrorKind::NotSent),
                FailureKind::NotSent,
                true,
            ),
            (
                network(TransportErrorKind::ConnectionLost),
                FailureKind::ConnectionLost,
                true,
            ),
            (
                network(TransportErrorKind::Timeout),
                FailureKind::Timeout,
                true,
            ),
            (
                network(TransportErrorKind::Protocol),
                FailureKind::InvalidResponse,
                false,
            ),
            (
                network(TransportErrorKind::PoolTimeout),
                FailureKind::NotSent,
                true,
            ),
            (
                network(TransportErrorKind::ProxyRefused { status: 407 }),
                FailureKind::status(407, None),
                false,
            ),
            (
                network(TransportErrorKind::ProxyRefused { status: 403 }),
                FailureKind::status(403, None),
                false,
            ),
            (
                network(TransportErrorKind::ProxyRefused { status: 502 }),
                FailureKind::Connect,
                true,
            ),
            (
                Error::Response(DecodeError::MissingElement("MessageId")),
                FailureKind::InvalidResponse,
                false,
            ),
            (
                Error::Response(DecodeError::BadStatus(302)),
                FailureKind::InvalidResponse,
                false,
            ),
            (
                Error::Md5Mismatch {
                    expected: "A".into(),
                    reported: "B".into(),
                },
                FailureKind::InvalidResponse,
                false,
            ),
            (Error::Shutdown, FailureKind::Cancelled, false),
        ];
        let services: Vec<(u16, ErrorCode, bool)> = vec![
            (500, ErrorCode::InternalError, true),
            (502, ErrorCode::InternalError, true),
            (503, ErrorCode::InternalError, true),
            (504, ErrorCode::InternalError, true),
            (501, ErrorCode::InternalError, false),
            (505, ErrorCode::InternalError, false),
            (429, other("HTTP429"), true),
            (400, ErrorCode::QpsLimitExceeded, true),
            (503, ErrorCode::Throttling, true),
            // Disagreed before: `is_retryable` said no, the retry machine retried.
            (400, other("RequestTimeout"), true),
            (408, other("HTTP408"), true),
            (408, ErrorCode::TimeExpired, false),
            (403, ErrorCode::SignatureDoesNotMatch, false),
            (403, ErrorCode::InvalidAccessKeyId, false),
            (403, ErrorCode::AccessDenied, false),
            (404, ErrorCode::TopicNotExist, false),
            (404, ErrorCode::MessageNotExist, false),
            (413, other("HTTP413"), false),
            (400, ErrorCode::InvalidArgument, false),
        ];
        let mut all = table;
        for (status, code, retryable) in services {
            let kind = FailureKind::status(status, Some(code.clone()));
            all.push((service(status, code), kind, retryable));
        }
        for (error, kind, retryable) in all {
            assert_eq!(error.failure_kind(), kind, "{error:?}");
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
            assert_eq!(error.is_retryable(), kind.is_transient(), "{error:?}");
        }
    }

    #[test]
    fn only_connection_failures_before_sending_are_provably_not_sent() {
        for (kind, reached) in [
            (TransportErrorKind::Connect, false),
            (TransportErrorKind::Tls, false),
            (TransportErrorKind::NotSent, false),
            (TransportErrorKind::ConnectionLost, true),
            (TransportErrorKind::Timeout, true),
            (TransportErrorKind::Protocol, true),
            (TransportErrorKind::PoolTimeout, false),
            (TransportErrorKind::ProxyRefused { status: 502 }, false),
        ] {
            let f = network(kind).failure_kind();
            assert_eq!(f.request_may_have_reached_server(), reached, "{kind:?}");
        }
    }
}
