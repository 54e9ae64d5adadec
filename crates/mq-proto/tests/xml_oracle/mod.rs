//! The differential oracle of the XML reader, shared by `tests/xml_wellformed.rs` and the fuzz
//! target `fuzz/fuzz_targets/xml_differential.rs` (which includes this file by path).
//!
//! A document goes through every public entry point that reads XML — the server's request
//! parser (publish, ack) and the client's response decoders (publish, consume, ack, error) —
//! and through roxmltree, a strict, independent XML 1.0 parser. Two rules:
//!
//! 1. no entry point accepts a document the reference rejects;
//! 2. where both accept, every text the entry point decoded equals the reference's text of
//!    that element (its text and CDATA children, concatenated).
//!
//! roxmltree also applies Namespaces in XML (unbound prefixes, names with two colons...),
//! which our reader deliberately does not (elements are matched by local name). A document
//! the reference rejects only for that — it accepts the same document with every `:`
//! replaced by `_` — is not counted against us. Where roxmltree is lenient (the values in the
//! XML declaration, the `xml` processing-instruction target, character references to
//! surrogates), the unit tests of `xml_wellformed.rs` pin our behaviour.

use http::{HeaderMap, Method, StatusCode};
use mq_proto::ErrorCode;
use mq_proto::client::{self, ResponseError};
use mq_proto::server::{self, Operation};
use roxmltree::{Document, Node};

/// How the reference judged a document.
#[derive(Debug)]
pub(crate) enum Reference<'a> {
    /// Well-formed (and namespace-well-formed).
    Accepts(Document<'a>),
    /// Not well-formed XML 1.0 (or not UTF-8).
    Rejects(String),
    /// Well-formed XML 1.0, but not namespace-well-formed.
    NamespaceOnly,
}

impl Reference<'_> {
    /// Whether the reference accepts the document.
    pub(crate) fn accepts(&self) -> bool {
        matches!(self, Self::Accepts(_))
    }
}

/// The reference's verdict on `doc`.
pub(crate) fn reference(doc: &[u8]) -> Reference<'_> {
    let Ok(text) = std::str::from_utf8(doc) else {
        return Reference::Rejects("not UTF-8".into());
    };
    match Document::parse(text) {
        Ok(d) => Reference::Accepts(d),
        Err(_) if Document::parse(&text.replace(':', "_")).is_ok() => Reference::NamespaceOnly,
        Err(e) => Reference::Rejects(e.to_string()),
    }
}

/// What one run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Whether some entry point accepted the document.
    pub(crate) ours: bool,
    /// Whether the reference accepted it.
    pub(crate) reference: bool,
}

/// XML 1.0 §2.11: every `\r\n` and every `\r` not followed by `\n` becomes `\n` before
/// parsing. roxmltree (0.21) misses a literal `\r` directly before a reference (`\r&amp;`
/// reads as `\r&`), so the oracle normalises the input itself; a `&#13;` reference is not a
/// literal `\r` and is untouched.
fn normalize_line_ends(doc: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !doc.contains(&b'\r') {
        return doc.into();
    }
    let mut out = Vec::with_capacity(doc.len());
    let mut bytes = doc.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b == b'\r' {
            if bytes.peek() == Some(&b'\n') {
                bytes.next();
            }
            out.push(b'\n');
        } else {
            out.push(b);
        }
    }
    out.into()
}

/// Runs `doc` through every entry point and the reference; `Err` describes a disagreement.
pub(crate) fn check(doc: &[u8]) -> Result<Outcome, String> {
    let normalized = normalize_line_ends(doc);
    let reference = reference(&normalized);
    let mut ours = false;
    for entry in ENTRY_POINTS {
        let Some(fields) = entry.run(doc) else {
            continue;
        };
        ours = true;
        let root = match &reference {
            Reference::Accepts(d) => d.root_element(),
            Reference::Rejects(why) => {
                return Err(format!(
                    "{} accepted a document the reference rejects: {why}",
                    entry.name
                ));
            }
            Reference::NamespaceOnly => continue,
        };
        let expected = entry.expected(root);
        if fields != expected {
            return Err(format!(
                "{} decoded {fields:?}, the reference reads {expected:?}",
                entry.name
            ));
        }
    }
    Ok(Outcome {
        ours,
        reference: reference.accepts(),
    })
}

/// One public entry point that reads XML: how to call it, and which texts it returns.
struct Entry {
    name: &'static str,
    /// The decoded texts, `None` when the entry point refused the document.
    run: fn(&[u8]) -> Option<Vec<String>>,
    /// The same texts read from the reference's tree.
    expected: fn(Node<'_, '_>) -> Vec<String>,
}

impl Entry {
    fn run(&self, doc: &[u8]) -> Option<Vec<String>> {
        (self.run)(doc)
    }

    fn expected(&self, root: Node<'_, '_>) -> Vec<String> {
        (self.expected)(root)
    }
}

const ENTRY_POINTS: [Entry; 6] = [
    Entry {
        name: "server::parse_request (publish)",
        run: |doc| {
            let parsed =
                server::parse_request(&Method::POST, "/topics/T1/messages", &HeaderMap::new(), doc)
                    .ok()?;
            let Operation::Publish(m) = parsed.operation else {
                return None;
            };
            Some(vec![
                m.body().to_owned(),
                m.tag().map(|t| t.as_str().to_owned()).unwrap_or_default(),
            ])
        },
        expected: |root| {
            vec![
                last_text(root, "MessageBody").unwrap_or_default(),
                last_text(root, "MessageTag")
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ]
        },
    },
    Entry {
        name: "server::parse_request (ack)",
        run: |doc| {
            let parsed = server::parse_request(
                &Method::DELETE,
                "/topics/T1/messages?consumer=GID_1",
                &HeaderMap::new(),
                doc,
            )
            .ok()?;
            let Operation::Ack { handles, .. } = parsed.operation else {
                return None;
            };
            Some(handles)
        },
        expected: |root| {
            elements(root, "ReceiptHandle")
                .map(|h| text(h).trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect()
        },
    },
    Entry {
        name: "client::decode_publish_response",
        run: |doc| {
            let r = client::decode_publish_response(StatusCode::CREATED, &HeaderMap::new(), doc)
                .ok()?;
            Some(vec![
                r.message_id.as_str().to_owned(),
                r.body_md5,
                r.receipt_handle
                    .map(|h| h.as_str().to_owned())
                    .unwrap_or_default(),
            ])
        },
        expected: |root| {
            ["MessageId", "MessageBodyMD5", "ReceiptHandle"]
                .into_iter()
                .map(|name| last_text(root, name).unwrap_or_default().trim().to_owned())
                .collect()
        },
    },
    Entry {
        name: "client::decode_consume_response",
        run: |doc| {
            let messages =
                client::decode_consume_response(StatusCode::OK, &HeaderMap::new(), doc).ok()?;
            Some(
                messages
                    .into_iter()
                    .flat_map(|m| {
                        [
                            m.message_id.as_str().to_owned(),
                            m.receipt_handle.as_str().to_owned(),
                            m.body.into(),
                        ]
                    })
                    .collect(),
            )
        },
        expected: |root| {
            elements(root, "Message")
                .flat_map(|m| {
                    [
                        last_text(m, "MessageId")
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                        last_text(m, "ReceiptHandle")
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                        last_text(m, "MessageBody").unwrap_or_default(),
                    ]
                })
                .collect()
        },
    },
    Entry {
        name: "client::decode_ack_response",
        run: |doc| {
            let failures =
                client::decode_ack_response(StatusCode::NOT_FOUND, &HeaderMap::new(), doc).ok()?;
            Some(
                failures
                    .into_iter()
                    .flat_map(|f| [f.receipt_handle, f.code.as_str().to_owned()])
                    .collect(),
            )
        },
        expected: |root| {
            elements(root, "Error")
                .flat_map(|e| {
                    let code = last_text(e, "ErrorCode").unwrap_or_default();
                    let code = match code.trim() {
                        "" => "HTTP404".to_owned(),
                        c => ErrorCode::parse(c).as_str().to_owned(),
                    };
                    [
                        last_text(e, "ReceiptHandle")
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                        code,
                    ]
                })
                .collect()
        },
    },
    Entry {
        name: "client::decode_publish_response (error document)",
        run: |doc| {
            let Err(ResponseError::Service(e)) =
                client::decode_publish_response(StatusCode::BAD_REQUEST, &HeaderMap::new(), doc)
            else {
                return None;
            };
            // Without a readable `Error` document the code comes from the status.
            if e.code == ErrorCode::Other("HTTP400".into()) {
                return None;
            }
            Some(vec![
                e.code.as_str().to_owned(),
                e.message,
                e.request_id.unwrap_or_default(),
            ])
        },
        expected: |root| {
            let code = last_text(root, "Code").unwrap_or_default();
            let code = ErrorCode::parse(code.trim());
            let message = last_text(root, "Message")
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| code.default_message().to_owned());
            vec![
                code.as_str().to_owned(),
                message,
                last_text(root, "RequestId")
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ]
        },
    },
];

/// The element children of `parent` with local name `name`.
fn elements<'a, 'input: 'a>(
    parent: Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    parent
        .children()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// The text of `node`: its text and CDATA children, concatenated.
fn text(node: Node<'_, '_>) -> String {
    node.children()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

/// The text of the last child of `parent` named `name` (decoders keep the last one).
fn last_text(parent: Node<'_, '_>, name: &'static str) -> Option<String> {
    elements(parent, name).last().map(text)
}
