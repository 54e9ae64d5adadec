//! Operation kinds and error codes shared by the client side, the server side and the state
//! machines.

use std::fmt;

/// Which variant of consume a `GET /topics/{topic}/messages` is (selected by `trans`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsumeKind {
    /// Normal consume (no `trans`).
    Normal,
    /// Orderly consume (`trans=order`).
    Orderly,
    /// Half-message consume for transaction checks (`trans=pop`).
    Half,
}

impl ConsumeKind {
    /// The `trans` query value, if any.
    pub fn trans(self) -> Option<&'static str> {
        match self {
            Self::Normal => None,
            Self::Orderly => Some("order"),
            Self::Half => Some("pop"),
        }
    }
}

/// Which variant of `DELETE /topics/{topic}/messages` a request is (selected by `trans`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Acknowledge consumed messages (no `trans`).
    Ack,
    /// Commit a transactional message (`trans=commit`).
    Commit,
    /// Roll back a transactional message (`trans=rollback`).
    Rollback,
}

impl AckKind {
    /// The `trans` query value, if any.
    pub fn trans(self) -> Option<&'static str> {
        match self {
            Self::Ack => None,
            Self::Commit => Some("commit"),
            Self::Rollback => Some("rollback"),
        }
    }
}

/// Error codes of the protocol (PROTOCOL §5.3), with their HTTP status and standard message.
///
/// ```
/// use mq_proto::ErrorCode;
/// assert_eq!(ErrorCode::MessageNotExist.status(), 404);
/// assert_eq!(ErrorCode::parse("SignatureDoesNotMatch"), ErrorCode::SignatureDoesNotMatch);
/// assert_eq!(ErrorCode::parse("Whatever").as_str(), "Whatever");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 403: the key may not do this.
    AccessDenied,
    /// 403: unknown AccessKey id.
    InvalidAccessKeyId,
    /// 403: signature mismatch.
    SignatureDoesNotMatch,
    /// 400: malformed `Authorization`.
    InvalidAuthorizationHeader,
    /// 400: no `Authorization`.
    MissingAuthorizationHeader,
    /// 400: unparsable `Date`.
    InvalidDateHeader,
    /// 400: no `Date`.
    MissingDateHeader,
    /// 408: `Date` more than 15 minutes away from server time.
    TimeExpired,
    /// 400: wrong `Content-MD5`.
    InvalidDigest,
    /// 400: a value is out of range or invalid.
    InvalidArgument,
    /// 400: the XML body is not well-formed.
    MalformedXml,
    /// 400: bad request path.
    InvalidRequestUrl,
    /// 400: bad query item.
    InvalidQueryString,
    /// 400: an ack body without handles.
    MissingReceiptHandle,
    /// Malformed or unknown receipt handle (404 inside `Errors`).
    ReceiptHandleError,
    /// 404: nothing to consume, or an expired handle.
    MessageNotExist,
    /// 404: unknown topic.
    TopicNotExist,
    /// 404: unknown subscription.
    SubscriptionNotExist,
    /// 400: throttled.
    QpsLimitExceeded,
    /// 400/503: throttled (name used by some SDKs).
    Throttling,
    /// 400: a request the service does not support (group id, topic and instance id
    /// together longer than 119 characters, PROTOCOL §6.9; the status is not documented).
    NotSupport,
    /// 500: server fault.
    InternalError,
    /// 500: server fault (alternative name).
    InternalServerError,
    /// Any other code, kept verbatim.
    Other(String),
}

impl ErrorCode {
    /// The code as written in XML.
    pub fn as_str(&self) -> &str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::InvalidAuthorizationHeader => "InvalidAuthorizationHeader",
            Self::MissingAuthorizationHeader => "MissingAuthorizationHeader",
            Self::InvalidDateHeader => "InvalidDateHeader",
            Self::MissingDateHeader => "MissingDateHeader",
            Self::TimeExpired => "TimeExpired",
            Self::InvalidDigest => "InvalidDigest",
            Self::InvalidArgument => "InvalidArgument",
            Self::MalformedXml => "MalformedXML",
            Self::InvalidRequestUrl => "InvalidRequestURL",
            Self::InvalidQueryString => "InvalidQueryString",
            Self::MissingReceiptHandle => "MissingReceiptHandle",
            Self::ReceiptHandleError => "ReceiptHandleError",
            Self::MessageNotExist => "MessageNotExist",
            Self::TopicNotExist => "TopicNotExist",
            Self::SubscriptionNotExist => "SubscriptionNotExist",
            Self::QpsLimitExceeded => "QpsLimitExceeded",
            Self::Throttling => "Throttling",
            Self::NotSupport => "NotSupport",
            Self::InternalError => "InternalError",
            Self::InternalServerError => "InternalServerError",
            Self::Other(s) => s,
        }
    }

    /// Every code the protocol documents (PROTOCOL §5.3), that is every variant but
    /// [`ErrorCode::Other`].
    ///
    /// ```
    /// use mq_proto::ErrorCode;
    /// assert!(ErrorCode::KNOWN.contains(&ErrorCode::Throttling));
    /// assert!(ErrorCode::KNOWN.iter().all(|c| ErrorCode::parse(c.as_str()) == *c));
    /// ```
    pub const KNOWN: [Self; 23] = [
        Self::AccessDenied,
        Self::InvalidAccessKeyId,
        Self::SignatureDoesNotMatch,
        Self::InvalidAuthorizationHeader,
        Self::MissingAuthorizationHeader,
        Self::InvalidDateHeader,
        Self::MissingDateHeader,
        Self::TimeExpired,
        Self::InvalidDigest,
        Self::InvalidArgument,
        Self::MalformedXml,
        Self::InvalidRequestUrl,
        Self::InvalidQueryString,
        Self::MissingReceiptHandle,
        Self::ReceiptHandleError,
        Self::MessageNotExist,
        Self::TopicNotExist,
        Self::SubscriptionNotExist,
        Self::QpsLimitExceeded,
        Self::Throttling,
        Self::NotSupport,
        Self::InternalError,
        Self::InternalServerError,
    ];

    /// Parses a code as received; unknown codes become [`ErrorCode::Other`].
    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|c| c.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self::Other(s.to_owned()))
    }

    /// HTTP status the server answers with for this code (PROTOCOL §5.3).
    pub fn status(&self) -> u16 {
        match self {
            Self::AccessDenied | Self::InvalidAccessKeyId | Self::SignatureDoesNotMatch => 403,
            Self::TimeExpired => 408,
            Self::MessageNotExist
            | Self::TopicNotExist
            | Self::SubscriptionNotExist
            | Self::ReceiptHandleError => 404,
            Self::InternalError | Self::InternalServerError => 500,
            Self::Throttling => 503,
            _ => 400,
        }
    }

    /// The standard message text for this code.
    pub fn default_message(&self) -> &'static str {
        match self {
            Self::AccessDenied => {
                "The OwnerId that your Access Key Id associated to is forbidden for this operation."
            }
            Self::InvalidAccessKeyId => "The AccessKey Id you provided is not exist.",
            Self::SignatureDoesNotMatch => {
                "The request signature we calculated does not match the signature you provided. Check your key and signing method."
            }
            Self::InvalidAuthorizationHeader => "The Authorization header format is invalid.",
            Self::MissingAuthorizationHeader => "Authorization header is required.",
            Self::InvalidDateHeader => "The Date header format is invalid.",
            Self::MissingDateHeader => "Date header is required.",
            Self::TimeExpired => "The http request you sent is expired.",
            Self::InvalidDigest => "The Content-MD5 you specified is invalid.",
            Self::InvalidArgument => {
                "The XML you provided did not validate against our published schema."
            }
            Self::MalformedXml => "The XML you provided was not well-formed.",
            Self::InvalidRequestUrl => "Http request URL format invalid.",
            Self::InvalidQueryString => "Http request URL contains invalid querystring item.",
            Self::MissingReceiptHandle => "ReceiptHandle is required.",
            Self::ReceiptHandleError => "The receipt handle you provide is not valid.",
            Self::MessageNotExist => "Message not exist.",
            Self::TopicNotExist => "The topic you provided does not exist.",
            Self::SubscriptionNotExist => "The subscription you provided does not exist.",
            Self::QpsLimitExceeded => "Qps limit exceeded.",
            Self::Throttling => "Request was denied due to request throttling.",
            Self::NotSupport => "The request is not supported.",
            Self::InternalError | Self::InternalServerError => "Interal error.",
            Self::Other(_) => "Unknown error.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One handle of an ack, commit or rollback that failed (an entry of an `Errors` document,
/// PROTOCOL §3.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleFailure {
    /// The handle exactly as sent (it may be malformed, so it is kept as text).
    pub receipt_handle: String,
    /// `MessageNotExist` (expired or superseded) or `ReceiptHandleError` (malformed/unknown).
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl HandleFailure {
    /// A failure with the code's standard message.
    pub fn new(receipt_handle: impl Into<String>, code: ErrorCode) -> Self {
        let message = code.default_message().to_owned();
        Self {
            receipt_handle: receipt_handle.into(),
            code,
            message,
        }
    }
}

/// Assigns the per-handle failures of one ack, commit or rollback answer to the handles that
/// request carried: the one place that decides which handles were refused (PROTOCOL §3.6).
///
/// Returns one failure per refused handle of `sent`, in `sent` order, each naming that handle
/// exactly; every handle of `sent` not in the result was acknowledged. The rules:
///
/// * an entry naming a handle of `sent` is that handle's failure (the first entry wins when
///   a handle is named twice);
/// * an entry naming no handle (an empty or missing `<ReceiptHandle>`, as the real service
///   has been seen to send) or a handle that is not in `sent` still belongs to this request:
///   with one handle in `sent` it is that handle's failure; with several, nobody can tell
///   which handle it meant, so **every handle not named by its own entry** is reported as
///   refused with that entry's code and message. A refusal is never turned into a success.
///
/// Duplicates in `sent` are reported once. Applying this to its own output changes nothing.
///
/// ```
/// use mq_proto::{ErrorCode, HandleFailure, ReceiptHandle, attribute_failures};
///
/// let sent = [ReceiptHandle::new("h1")?, ReceiptHandle::new("h2")?];
/// // The service named no handle: neither can be counted as acknowledged.
/// let anonymous = HandleFailure::new("", ErrorCode::ReceiptHandleError);
/// let failed = attribute_failures(&sent, vec![anonymous]);
/// assert_eq!(failed.len(), 2);
/// assert_eq!(failed[0].receipt_handle, "h1");
/// assert_eq!(failed[1].code, ErrorCode::ReceiptHandleError);
///
/// // A named failure refuses only its handle.
/// let named = HandleFailure::new("h2", ErrorCode::MessageNotExist);
/// let failed = attribute_failures(&sent, vec![named]);
/// assert_eq!(failed.len(), 1);
/// assert_eq!(failed[0].receipt_handle, "h2");
/// # Ok::<(), mq_proto::InvalidValue>(())
/// ```
pub fn attribute_failures<'a, I>(sent: I, failures: Vec<HandleFailure>) -> Vec<HandleFailure>
where
    I: IntoIterator<Item = &'a crate::types::ReceiptHandle>,
{
    if failures.is_empty() {
        return failures;
    }
    let handles: Vec<&str> = sent.into_iter().map(|h| h.as_str()).collect();
    let mut named: Vec<Option<HandleFailure>> = vec![None; handles.len()];
    let mut unmatched: Option<HandleFailure> = None;
    for f in failures {
        match handles.iter().position(|h| *h == f.receipt_handle) {
            Some(i) => {
                // The first entry for a handle wins; later ones for it add nothing.
                let slot = &mut named[i];
                if slot.is_none() {
                    *slot = Some(f);
                }
            }
            None => {
                if unmatched.is_none() {
                    unmatched = Some(f);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(handles.len());
    for (i, h) in handles.iter().enumerate() {
        if handles[..i].contains(h) {
            continue; // a handle sent twice is reported once
        }
        let failure = named[i].take().or_else(|| {
            unmatched.as_ref().map(|u| HandleFailure {
                receipt_handle: (*h).to_owned(),
                code: u.code.clone(),
                message: u.message.clone(),
            })
        });
        out.extend(failure);
    }
    out
}

#[cfg(test)]
mod attribution_tests {
    use super::*;
    use crate::types::ReceiptHandle;

    fn handles(names: &[&str]) -> Vec<ReceiptHandle> {
        names
            .iter()
            .map(|n| ReceiptHandle::new(*n).unwrap())
            .collect()
    }

    fn failure(handle: &str, code: ErrorCode) -> HandleFailure {
        HandleFailure::new(handle, code)
    }

    fn named(out: &[HandleFailure]) -> Vec<(&str, &ErrorCode)> {
        out.iter()
            .map(|f| (f.receipt_handle.as_str(), &f.code))
            .collect()
    }

    #[test]
    fn a_failure_naming_no_handle_refuses_the_only_handle() {
        let sent = handles(&["h1"]);
        let out = attribute_failures(&sent, vec![failure("", ErrorCode::ReceiptHandleError)]);
        assert_eq!(named(&out), [("h1", &ErrorCode::ReceiptHandleError)]);
        assert_eq!(
            out[0].message,
            "The receipt handle you provide is not valid."
        );
    }

    #[test]
    fn a_failure_naming_another_handle_refuses_the_only_handle() {
        let sent = handles(&["h1"]);
        let out = attribute_failures(&sent, vec![failure("zz", ErrorCode::MessageNotExist)]);
        assert_eq!(named(&out), [("h1", &ErrorCode::MessageNotExist)]);
    }

    #[test]
    fn an_unattributable_failure_refuses_every_handle_not_named() {
        let sent = handles(&["h1", "h2", "h3"]);
        let out = attribute_failures(
            &sent,
            vec![
                failure("h2", ErrorCode::MessageNotExist),
                failure("", ErrorCode::ReceiptHandleError),
            ],
        );
        assert_eq!(
            named(&out),
            [
                ("h1", &ErrorCode::ReceiptHandleError),
                ("h2", &ErrorCode::MessageNotExist),
                ("h3", &ErrorCode::ReceiptHandleError),
            ]
        );
    }

    #[test]
    fn named_failures_refuse_only_their_handles() {
        let sent = handles(&["h1", "h2", "h3"]);
        let out = attribute_failures(
            &sent,
            vec![
                failure("h3", ErrorCode::MessageNotExist),
                failure("h3", ErrorCode::ReceiptHandleError),
            ],
        );
        assert_eq!(named(&out), [("h3", &ErrorCode::MessageNotExist)]);
        assert!(attribute_failures(&sent, Vec::new()).is_empty());
    }

    #[test]
    fn duplicates_are_reported_once_and_the_result_is_a_fixed_point() {
        let sent = handles(&["h1", "h1", "h2"]);
        let out = attribute_failures(&sent, vec![failure("", ErrorCode::MessageNotExist)]);
        assert_eq!(
            named(&out),
            [
                ("h1", &ErrorCode::MessageNotExist),
                ("h2", &ErrorCode::MessageNotExist)
            ]
        );
        assert_eq!(attribute_failures(&sent, out.clone()), out);
    }
}
