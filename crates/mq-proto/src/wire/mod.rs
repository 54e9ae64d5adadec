//! The XML documents of the protocol, shared by both sides: one module per document, each
//! holding the document's types and, side by side, its encoder and its decoder.
//!
//! | module | documents (PROTOCOL section) |
//! |---|---|
//! | [`publish`] | publish request `Message` (§3.2), publish response `Message` (§3.3) |
//! | [`consume`] | consume response `Messages` (§3.4) |
//! | [`ack`] | ack / commit / rollback request `ReceiptHandles` (§3.5) |
//! | [`error`] | ack partial-failure response `Errors` (§3.6), error response `Error` (§3.7) |
//!
//! Everything here works on body bytes only: no HTTP status, header, method or URI. The
//! client ([`crate::client`]) builds and signs requests around the request bodies and maps
//! statuses and headers around the response decoders; the server ([`crate::server`])
//! authenticates, parses the HTTP parts and wraps the response bodies into responses.
//!
//! Decoders of request bodies (the server's side) answer with a [`error::RequestError`], the
//! code and message of the error document to send back; decoders of response bodies (the
//! client's side) answer with a [`DecodeError`].

pub mod ack;
pub mod consume;
pub mod error;
pub mod publish;

use bytestring::ByteString;

use crate::types::{MessageId, ReceiptHandle};
use crate::xml::{Elem, XmlError, XmlReader};
use error::{RequestError, malformed_xml};

/// A response could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not well-formed XML, or is refused (`DOCTYPE`, nesting too deep).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The root element is not the expected one.
    #[error("unexpected root element <{found}>, expected <{expected}>")]
    UnexpectedRoot {
        /// The expected root element.
        expected: &'static str,
        /// The root element found.
        found: String,
    },
    /// A required element is missing.
    #[error("missing element <{0}>")]
    MissingElement(&'static str),
    /// A numeric element does not hold a number in range.
    #[error("element <{element}> is not a valid number: {value:?}")]
    BadNumber {
        /// The element.
        element: &'static str,
        /// Its text.
        value: String,
    },
    /// An element's value is not acceptable (for example a malformed message id).
    #[error("invalid <{element}>: {reason}")]
    InvalidValue {
        /// The element.
        element: &'static str,
        /// Why.
        reason: String,
    },
    /// The status is neither success nor error (1xx, 3xx).
    #[error("unexpected HTTP status {0}")]
    BadStatus(u16),
}

impl From<XmlError> for DecodeError {
    fn from(e: XmlError) -> Self {
        Self::Xml(e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the response decoders

/// A `MessageId` element's text as a [`MessageId`] (trimmed).
fn message_id(text: Option<&ByteString>) -> Result<MessageId, DecodeError> {
    let text = text.ok_or(DecodeError::MissingElement("MessageId"))?;
    MessageId::from_text(trimmed(text)).map_err(|e| DecodeError::InvalidValue {
        element: "MessageId",
        reason: e.reason,
    })
}

/// A `ReceiptHandle` element's (trimmed) text as a [`ReceiptHandle`].
fn receipt_handle(text: &ByteString) -> Result<ReceiptHandle, DecodeError> {
    ReceiptHandle::from_text(trimmed(text)).map_err(|e| DecodeError::InvalidValue {
        element: "ReceiptHandle",
        reason: e.reason,
    })
}

/// `text` without leading and trailing whitespace, sharing its buffer.
fn trimmed(text: &ByteString) -> ByteString {
    let t = crate::text::trim(text);
    if t.len() == text.len() {
        text.clone()
    } else {
        text.slice_ref(t)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the request decoders

/// Reads the children of the root element with `field`, then checks the end of the document.
fn for_each_child<'a>(
    r: &mut XmlReader<'a>,
    field: impl FnMut(&mut XmlReader<'a>, Elem) -> Result<(), RequestError>,
) -> Result<(), RequestError> {
    match r.children(field) {
        Ok(()) => Ok(r.finish()?),
        Err(e) => Err(rest_is_well_formed(r, e)),
    }
}

/// A schema error met before the end of the document stands only if the rest of the document
/// is well-formed: a document that is not is `MalformedXML`, whatever else is wrong with it.
fn rest_is_well_formed(r: &mut XmlReader<'_>, schema: RequestError) -> RequestError {
    if schema.code == crate::ops::ErrorCode::MalformedXml {
        return schema;
    }
    match r.drain() {
        Ok(()) => schema,
        Err(e) => malformed_xml(&e),
    }
}

/// Documents for the tests that compare the flat reading with the general reader.
#[cfg(test)]
pub(crate) mod near_flat {
    /// The name of the element whose start tag is `tag` (`<a:Name x="1">` → `a:Name`).
    pub(crate) fn name(tag: &str) -> &str {
        tag.trim_start_matches('<')
            .split([' ', '>'])
            .next()
            .unwrap_or_default()
    }

    /// Appends the child `name` holding `text` in `form`: `plain`, `space` (whitespace
    /// around it), `empty-tag` (`<name/>`, no text) or `unclosed` (no end tag). A `name`
    /// with a trailing space has it in its start tag only.
    pub(crate) fn push_child(doc: &mut String, name: &str, text: &str, form: &str) {
        let end = name.trim_end();
        match form {
            "empty-tag" => doc.push_str(&format!("<{end}/>")),
            "space" => doc.push_str(&format!("\n <{name}>{text}</{end}> ")),
            "unclosed" => doc.push_str(&format!("<{name}>{text}")),
            _ => doc.push_str(&format!("<{name}>{text}</{end}>")),
        }
    }
}
