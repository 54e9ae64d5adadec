//! The client's error type.

use crate::transport::{TransportError, TransportErrorKind};
use mq_proto::client::{DecodeError, ServiceError};
use mq_proto::{ErrorCode, HandleFailure};
use std::time::Duration;

/// Everything that can go wrong when calling the service.
///
/// ```
/// use mq_client::Error;
/// let e = Error::Timeout { after: std::time::Duration::from_secs(3) };
/// assert!(e.is_retryable());
/// assert!(e.service_code().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
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
    /// Whether retrying the same request later may succeed (network trouble, timeouts,
    /// 5xx, throttling).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Network(_) => true,
            Self::Service(e) => {
                e.status >= 500
                    || e.status == 429
                    || matches!(e.code, ErrorCode::Throttling | ErrorCode::QpsLimitExceeded)
            }
            _ => false,
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
