//! The client's error type.

use crate::transport::{TransportError, TransportErrorKind};
use mq_proto::client::{DecodeError, ServiceError};
use mq_proto::machine::FailureKind;
use mq_proto::{ErrorCode, HandleFailure};
use std::time::Duration;

/// Everything that can go wrong when calling the service.
///
/// Whether a repeat can succeed is one classification, [`FailureKind`]: the client's own
/// retries and [`Error::is_retryable`] both use [`Error::failure_kind`].
///
/// ```
/// use mq_client::Error;
/// use mq_client::mq_proto::machine::FailureKind;
/// let e = Error::Timeout { after: std::time::Duration::from_secs(3) };
/// assert!(e.is_retryable());
/// assert_eq!(e.failure_kind(), FailureKind::Timeout);
/// assert!(e.service_code().is_none());
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was invalid (caught before anything was sent).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The client was configured incorrectly (endpoint, credentials, TLS roots).
    #[error("invalid configuration: {0}")]
    Config(String),
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
    /// The credentials provider failed.
    #[error("credentials unavailable: {0}")]
    Credentials(String),
    /// The operation was stopped by a shutdown.
    #[error("shut down")]
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

    /// The error of a failed [`crate::Transport::send`] with this timeout.
    pub(crate) fn from_transport(e: TransportError, timeout: Duration) -> Self {
        if e.kind == TransportErrorKind::Timeout {
            Self::Timeout { after: timeout }
        } else {
            Self::Network(e)
        }
    }
}

impl From<mq_proto::InvalidValue> for Error {
    fn from(e: mq_proto::InvalidValue) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

impl From<mq_proto::MessageError> for Error {
    fn from(e: mq_proto::MessageError) -> Self {
        Self::InvalidInput(e.to_string())
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

/// An ack (or commit/rollback) that did not fully succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The request went through but some handles failed; the others were acknowledged.
    #[error("{} receipt handle(s) failed, first: {}", .0.len(), .0.first().map(|f| f.code.as_str()).unwrap_or("-"))]
    Partial(Vec<HandleFailure>),
    /// The request itself failed; no handle is known to be acknowledged.
    #[error(transparent)]
    Request(#[from] Error),
}

impl AckError {
    /// The per-handle failures (empty for a failed request).
    pub fn failures(&self) -> &[HandleFailure] {
        match self {
            Self::Partial(f) => f,
            Self::Request(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: ErrorCode) -> Error {
        Error::Service(ServiceError {
            status,
            code,
            message: String::new(),
            request_id: None,
            host_id: None,
        })
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
            (Error::InvalidInput("x".into()), FailureKind::Other, false),
            (Error::Config("x".into()), FailureKind::Other, false),
            (Error::Credentials("x".into()), FailureKind::Other, false),
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
        ] {
            let f = network(kind).failure_kind();
            assert_eq!(f.request_may_have_reached_server(), reached, "{kind:?}");
        }
    }
}
