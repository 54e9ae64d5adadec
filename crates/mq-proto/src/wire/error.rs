//! The error documents, both in `http://mq.aliyuncs.com/doc/v1` (no trailing `/`): `Error`
//! (PROTOCOL §3.7, any 4xx/5xx) with its content [`RequestError`], and `Errors` (§3.6, the
//! ack / commit / rollback partial-failure response, one entry per refused handle).
//!
//! The decoders read the document only: the HTTP status (which gives the code of a document
//! without one) and the `x-mq-request-id` header are the client's part
//! ([`crate::client::ServiceError`]).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::StatusCode;

use crate::ops::{ErrorCode, HandleFailure};
use crate::wire::DecodeError;
use crate::xml::{self, Elem, NS_ERROR, XmlError, XmlReader, XmlWriter};

/// A request was rejected: the error code (which fixes the HTTP status) and a message, the
/// `Code` and `Message` of the `Error` document answered.
///
/// ```
/// use mq_proto::ErrorCode;
/// use mq_proto::wire::error::RequestError;
/// let e = RequestError::from_code(ErrorCode::MissingReceiptHandle);
/// assert_eq!(e.message, "ReceiptHandle is required.");
/// assert_eq!(e.status().as_u16(), 400);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// Human-readable message sent in `<Message>`.
    pub message: String,
}

impl RequestError {
    /// An error with a specific message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An error with the code's standard message.
    pub fn from_code(code: ErrorCode) -> Self {
        let message = code.default_message().to_owned();
        Self { code, message }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::BAD_REQUEST)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RequestError {}

impl From<XmlError> for RequestError {
    fn from(e: XmlError) -> Self {
        malformed_xml(&e)
    }
}

/// Encodes an error document (PROTOCOL §3.7): `Error` in `http://mq.aliyuncs.com/doc/v1`
/// with `Code`, `Message`, `RequestId` and `HostId`, all four always present.
///
/// ```
/// use mq_proto::ErrorCode;
/// use mq_proto::wire::error;
/// let body = error::encode_error(&ErrorCode::MessageNotExist, "Message not exist.",
///     "5DAEF2B9463541AD6E04490F", "http://127.0.0.1:8080");
/// assert_eq!(&body[..], br#"<?xml version="1.0" encoding="UTF-8"?><Error xmlns="http://mq.aliyuncs.com/doc/v1"><Code>MessageNotExist</Code><Message>Message not exist.</Message><RequestId>5DAEF2B9463541AD6E04490F</RequestId><HostId>http://127.0.0.1:8080</HostId></Error>"#);
/// ```
pub fn encode_error(code: &ErrorCode, message: &str, request_id: &str, host_id: &str) -> Bytes {
    let mut w = XmlWriter::with_capacity(
        160 + code.as_str().len()
            + xml::text_capacity(message)
            + request_id.len()
            + xml::text_capacity(host_id),
    );
    w.open_root("Error", NS_ERROR);
    w.text("Code", code.as_str());
    w.text("Message", message);
    w.text("RequestId", request_id);
    w.text("HostId", host_id);
    w.close("Error");
    w.finish()
}

/// An `Error` document as read: blank elements are absent, a missing code is the caller's
/// (from the status), a missing message the code's standard one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ErrorDocument {
    /// `Code`.
    pub(crate) code: ErrorCode,
    /// `Message`, verbatim.
    pub(crate) message: String,
    /// `RequestId`.
    pub(crate) request_id: Option<String>,
    /// `HostId`.
    pub(crate) host_id: Option<String>,
}

/// Reads the children of an `Error` root (already entered) to the end of the document;
/// `missing_code` gives the code when the document has none.
pub(crate) fn decode_error(
    r: &mut XmlReader<'_>,
    missing_code: impl FnOnce() -> ErrorCode,
) -> Result<ErrorDocument, DecodeError> {
    let (mut code, mut message, mut request_id, mut host_id) = (None, None, None, None);
    r.children(|r, e| {
        let (slot, keep): (_, Keep) = match e {
            Elem::Code => (&mut code, non_empty),
            Elem::Message => (&mut message, verbatim),
            Elem::RequestId => (&mut request_id, non_empty),
            Elem::HostId => (&mut host_id, non_empty),
            _ => return r.skip(),
        };
        *slot = keep(r.read_text()?);
        Ok::<(), XmlError>(())
    })?;
    r.finish()?;
    let code = code.as_deref().map_or_else(missing_code, ErrorCode::parse);
    let message = message.unwrap_or_else(|| code.default_message().to_owned());
    Ok(ErrorDocument {
        code,
        message,
        request_id,
        host_id,
    })
}

/// Encodes a per-handle ack failure document (PROTOCOL §3.6): `Errors` in
/// `http://mq.aliyuncs.com/doc/v1` with one `Error` (`ErrorCode`, `ErrorMessage`,
/// `ReceiptHandle`) per failed handle. Send it with status 404.
pub fn encode_errors(failures: &[HandleFailure]) -> Bytes {
    let capacity: usize = failures
        .iter()
        .map(|f| {
            120 + f.code.as_str().len()
                + xml::text_capacity(&f.message)
                + xml::text_capacity(&f.receipt_handle)
        })
        .sum();
    let mut w = XmlWriter::with_capacity(64 + capacity);
    w.open_root("Errors", NS_ERROR);
    for f in failures {
        w.open("Error");
        w.text("ErrorCode", f.code.as_str());
        w.text("ErrorMessage", &f.message);
        w.text("ReceiptHandle", &f.receipt_handle);
        w.close("Error");
    }
    w.close("Errors");
    w.finish()
}

/// Reads the children of an `Errors` root (already entered) to the end of the document: one
/// failure per handle named (an entry naming none gives one with an empty handle, see
/// [`crate::attribute_failures`]); `missing_code` gives the code of an entry without one.
pub(crate) fn decode_errors(
    r: &mut XmlReader<'_>,
    missing_code: impl Fn() -> ErrorCode,
) -> Result<Vec<HandleFailure>, XmlError> {
    let mut failures = Vec::new();
    r.children(|r, e| {
        if e != Elem::Error {
            return r.skip();
        }
        let (mut code, mut message) = (None, None);
        // An entry may name several handles (or none, or an empty one: it then names no
        // handle, see `attribute_failures`); each named handle is refused.
        let mut handles: Vec<String> = Vec::new();
        r.children(|r, e| {
            let (slot, keep): (_, Keep) = match e {
                Elem::ErrorCode => (&mut code, non_empty),
                Elem::ErrorMessage => (&mut message, verbatim),
                Elem::ReceiptHandle => {
                    handles.push(non_empty(r.read_text()?).unwrap_or_default());
                    return Ok(());
                }
                _ => return r.skip(),
            };
            *slot = keep(r.read_text()?);
            Ok::<(), XmlError>(())
        })?;
        let code = code.as_deref().map_or_else(&missing_code, ErrorCode::parse);
        let message = message.unwrap_or_else(|| code.default_message().to_owned());
        if handles.is_empty() {
            handles.push(String::new());
        }
        for receipt_handle in handles {
            failures.push(HandleFailure {
                receipt_handle,
                code: code.clone(),
                message: message.clone(),
            });
        }
        Ok(())
    })?;
    r.finish()?;
    Ok(failures)
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `InvalidArgument` with `message`.
pub(crate) fn invalid_argument(message: impl Into<String>) -> RequestError {
    RequestError::new(ErrorCode::InvalidArgument, message)
}

/// `InvalidArgument` for a body that does not follow the schema at `element`.
pub(crate) fn schema_error(element: &str, detail: impl fmt::Display) -> RequestError {
    invalid_argument(format!(
        "The XML you provided did not validate against our published schema, cause by {element}: {detail}"
    ))
}

/// The refusal of a request whose `element` could not be read as text: `InvalidArgument`
/// (the service's schema message) for an element inside it, `MalformedXML` otherwise.
pub(crate) fn text_error(element: &str, e: &XmlError) -> RequestError {
    match e {
        XmlError::ElementInText => schema_error(
            element,
            "it holds an element; the element takes text only (escape `<` as `&lt;`).",
        ),
        _ => malformed_xml(e),
    }
}

/// `MalformedXML` for a body that is not well-formed.
pub(crate) fn malformed_xml(e: &XmlError) -> RequestError {
    RequestError::new(
        ErrorCode::MalformedXml,
        format!("The XML you provided was not well-formed: {e}."),
    )
}

/// How an element's text is kept: [`non_empty`] or [`verbatim`].
type Keep = fn(Cow<'_, str>) -> Option<String>;

/// Trimmed text, `None` when blank (codes, ids, handles).
fn non_empty(s: Cow<'_, str>) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Verbatim text, `None` when blank (human-readable messages).
fn verbatim(s: Cow<'_, str>) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_roundtrip() {
        let body = encode_error(
            &ErrorCode::InvalidArgument,
            " a < b & \"c\" ",
            "5DAEF2B9463541AD6E04490F",
            "http://h:1",
        );
        let mut r = XmlReader::new(&body);
        assert_eq!(r.root(), Ok(Elem::Error));
        let doc = decode_error(&mut r, || ErrorCode::InternalError).unwrap();
        assert_eq!(
            doc,
            ErrorDocument {
                code: ErrorCode::InvalidArgument,
                message: " a < b & \"c\" ".into(),
                request_id: Some("5DAEF2B9463541AD6E04490F".into()),
                host_id: Some("http://h:1".into()),
            }
        );
    }

    #[test]
    fn errors_roundtrip() {
        let failures = vec![
            HandleFailure {
                receipt_handle: "h-1".into(),
                code: ErrorCode::ReceiptHandleError,
                message: "The receipt handle you provided is not valid.".into(),
            },
            HandleFailure {
                receipt_handle: "h-2".into(),
                code: ErrorCode::MessageNotExist,
                message: "Message not exist.".into(),
            },
        ];
        let body = encode_errors(&failures);
        let mut r = XmlReader::new(&body);
        assert_eq!(r.root(), Ok(Elem::Errors));
        assert_eq!(
            decode_errors(&mut r, || ErrorCode::InternalError),
            Ok(failures)
        );
    }
}
