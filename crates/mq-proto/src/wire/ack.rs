//! The ack / commit / rollback request document (PROTOCOL §3.5): `ReceiptHandles` in
//! `http://mq.aliyuncs.com/doc/v1/`, one `ReceiptHandle` per handle (1..=[`HandleBatch::MAX`]).
//! The answer is empty on success, else an `Errors` document ([`super::error`], §3.6).

use bytes::Bytes;

use crate::ops::ErrorCode;
use crate::types::{HandleBatch, ReceiptHandle};
use crate::wire::error::{RequestError, invalid_argument, malformed_xml, schema_error};
use crate::wire::{for_each_child, rest_is_well_formed};
use crate::xml::{Elem, NS_MESSAGE, XmlReader, XmlWriter};

/// Encodes an ack request body (PROTOCOL §3.5): the handles in the order given. The caller
/// checks their number.
pub(crate) fn encode_request(handles: &[ReceiptHandle]) -> Bytes {
    let capacity: usize = handles.iter().map(|h| h.as_str().len() + 31).sum();
    let mut w = XmlWriter::with_capacity(40 + NS_MESSAGE.len() + capacity);
    w.open_root("ReceiptHandles", NS_MESSAGE);
    for h in handles {
        w.text("ReceiptHandle", h.as_str());
    }
    w.close("ReceiptHandles");
    w.finish()
}

/// Decodes an ack request body (PROTOCOL §3.5) into the handles as received (trimmed, not
/// validated); empty `ReceiptHandle` elements are skipped.
///
/// # Errors
///
/// `MissingReceiptHandle` for a blank body or one without any handle; `MalformedXML` for a
/// body that is not well-formed; `InvalidArgument` for another root or more than
/// [`HandleBatch::MAX`] handles.
pub(crate) fn decode_request(body: &[u8]) -> Result<Vec<String>, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::from_code(ErrorCode::MissingReceiptHandle));
    }
    let mut r = XmlReader::new(body);
    let root = r.root().map_err(|e| malformed_xml(&e))?;
    if root != Elem::ReceiptHandles {
        let found = format!("root element <{}> is not <ReceiptHandles>", r.root_name());
        return Err(rest_is_well_formed(
            &mut r,
            schema_error("ReceiptHandles", found),
        ));
    }
    // One allocation for any batch (not 4, 8, 16 as it grows).
    let mut handles = Vec::with_capacity(HandleBatch::MAX);
    for_each_child(&mut r, |r, e| {
        if e != Elem::ReceiptHandle {
            return r.skip().map_err(|e| malformed_xml(&e));
        }
        let text = r.read_text().map_err(|e| malformed_xml(&e))?;
        let handle = crate::text::trim(&text);
        if !handle.is_empty() {
            if handles.len() == HandleBatch::MAX {
                return Err(invalid_argument(format!(
                    "The count of ReceiptHandle should between 1 and {}.",
                    HandleBatch::MAX
                )));
            }
            handles.push(handle.to_owned());
        }
        Ok(())
    })?;
    if handles.is_empty() {
        return Err(RequestError::from_code(ErrorCode::MissingReceiptHandle));
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip() {
        let handles: Vec<ReceiptHandle> = (0..HandleBatch::MAX)
            .map(|n| ReceiptHandle::new(format!("1E05791C-{n}-MTcwOTgz=")).unwrap())
            .collect();
        let decoded = decode_request(&encode_request(&handles)).unwrap();
        let expected: Vec<&str> = handles.iter().map(ReceiptHandle::as_str).collect();
        assert_eq!(decoded, expected);
    }
}
