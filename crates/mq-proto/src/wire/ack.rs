//! The ack / commit / rollback request document (PROTOCOL §3.5): `ReceiptHandles` in
//! `http://mq.aliyuncs.com/doc/v1/`, one `ReceiptHandle` per handle (1..=[`HandleBatch::MAX`]).
//! The answer is empty on success, else an `Errors` document ([`super::error`], §3.6).

use bytes::Bytes;

use crate::ops::ErrorCode;
use crate::types::{HandleBatch, ReceiptHandle};
use crate::wire::error::{RequestError, invalid_argument, malformed_xml, schema_error, text_error};
use crate::wire::{for_each_child, rest_is_well_formed};
use crate::xml::{Document, Elem, NS_MESSAGE, XmlWriter};

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
pub(crate) fn decode_request(body: &Bytes) -> Result<Vec<String>, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::from_code(ErrorCode::MissingReceiptHandle));
    }
    let doc = Document::new(body);
    // The shape every SDK writes, read without the general reader when the document has it.
    let handles = decode_flat(&doc).map_or_else(|| decode_general(&doc), Ok)?;
    if handles.is_empty() {
        return Err(RequestError::from_code(ErrorCode::MissingReceiptHandle));
    }
    Ok(handles)
}

/// The handles of a document of the shape [`Document::flat_children`] reads, with at most
/// [`HandleBatch::MAX`] of them; `None` for any other document.
fn decode_flat(doc: &Document) -> Option<Vec<String>> {
    // One allocation for any batch (not 4, 8, 16 as it grows).
    let mut handles = Vec::with_capacity(HandleBatch::MAX);
    let flat = doc.flat_children(Elem::ReceiptHandles, |e, text, _| {
        let handle = crate::text::trim(text);
        if e != Elem::ReceiptHandle || (!handle.is_empty() && handles.len() == HandleBatch::MAX) {
            // Another element (skipped) or one handle too many: the general reader's.
            return false;
        }
        if !handle.is_empty() {
            handles.push(handle.to_owned());
        }
        true
    });
    flat.then_some(handles)
}

/// The handles of any document, by the general reader, with every error but a missing
/// handle.
fn decode_general(doc: &Document) -> Result<Vec<String>, RequestError> {
    let mut r = doc.reader().text_only();
    let root = r.root().map_err(|e| malformed_xml(&e))?;
    if root != Elem::ReceiptHandles {
        let found = format!("root element <{}> is not <ReceiptHandles>", r.root_name());
        return Err(rest_is_well_formed(
            &mut r,
            schema_error("ReceiptHandles", found),
        ));
    }
    let mut handles = Vec::with_capacity(HandleBatch::MAX);
    for_each_child(&mut r, |r, e| {
        if e != Elem::ReceiptHandle {
            return r.skip().map_err(|e| malformed_xml(&e));
        }
        let text = r
            .read_text()
            .map_err(|err| text_error(Elem::ReceiptHandle.as_str(), &err))?;
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
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flat reading's answer, when it gives one, is the general reader's.
    fn same_as_general(body: &str) -> Option<Vec<String>> {
        let doc = Document::new(&Bytes::copy_from_slice(body.as_bytes()));
        let flat = decode_flat(&doc)?;
        assert_eq!(Ok(&flat), decode_general(&doc).as_ref(), "{body}");
        Some(flat)
    }

    #[test]
    fn the_sdks_documents_are_read_flat() {
        let node = r#"<?xml version="1.0" encoding="UTF-8"?><ReceiptHandles xmlns="http://mq.aliyuncs.com/doc/v1/"><ReceiptHandle><![CDATA[0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx]]></ReceiptHandle><ReceiptHandle><![CDATA[0BC1EF3E1A9C18B4AAC2558D1E4F0011-MCAx]]></ReceiptHandle></ReceiptHandles>"#;
        let python = r#"<?xml version="1.0" encoding="utf-8"?><ReceiptHandles xmlns="http://mq.aliyuncs.com/doc/v1/"><ReceiptHandle>0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx</ReceiptHandle><ReceiptHandle>0BC1EF3E1A9C18B4AAC2558D1E4F0011-MCAx</ReceiptHandle></ReceiptHandles>"#;
        let want = [
            "0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx",
            "0BC1EF3E1A9C18B4AAC2558D1E4F0011-MCAx",
        ];
        for doc in [node, python] {
            assert_eq!(
                same_as_general(doc).as_deref(),
                Some(&want.map(String::from)[..])
            );
        }
        let ours = encode_request(&[ReceiptHandle::new(want[0]).unwrap()]);
        let ours = std::str::from_utf8(&ours).unwrap();
        assert_eq!(
            same_as_general(ours).as_deref(),
            Some(&[want[0].to_owned()][..])
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Wherever the flat reading answers, it answers as the general reader does
        /// (17 handles included: the general reader's error, not a 17th handle).
        #[test]
        fn the_flat_reading_agrees_with_the_general_reader(
            root in proptest::sample::select(vec![
                "<ReceiptHandles>", "<ReceiptHandles xmlns=\"http://mq.aliyuncs.com/doc/v1/\">",
                "<ReceiptHandle>", "<ReceiptHandles a=\"1\">",
            ]),
            children in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["ReceiptHandle", "MessageId", "ReceiptHandle "]),
                    proptest::sample::select(vec![
                        "h-1", " h-2 ", "", "  ", "<![CDATA[h-3]]>", "h&amp;4", "h]]>5", "<x/>",
                        "h\r\n6",
                    ]),
                ),
                0..20,
            ),
        ) {
            let mut doc = String::from(root);
            for (name, text) in children {
                doc.push_str(&format!("<{name}>{text}</{}>", name.trim_end()));
            }
            let end = root.trim_start_matches('<').split([' ', '>']).next().unwrap_or_default();
            doc.push_str(&format!("</{end}>"));
            same_as_general(&doc);
        }
    }

    #[test]
    fn an_element_inside_a_handle_is_refused_not_dropped() {
        // Dropping it would settle another handle than was sent (`H`).
        for doc in [
            "<ReceiptHandles><ReceiptHandle>H<x/></ReceiptHandle></ReceiptHandles>",
            "<ReceiptHandles><ReceiptHandle>H<x>1</x></ReceiptHandle></ReceiptHandles>",
        ] {
            let e = decode_request(&Bytes::from(doc)).expect_err(doc);
            assert_eq!(e.code, crate::ErrorCode::InvalidArgument, "{doc}");
            assert!(e.message.contains("ReceiptHandle"), "{doc}: {}", e.message);
        }
    }

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
