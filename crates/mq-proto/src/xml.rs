//! XML reading and writing helpers shared by the client and server codecs.
//!
//! Reading is a thin layer over quick-xml's borrowing slice reader: elements are reported by
//! *local name* (namespaces and prefixes are ignored), the text of a leaf element is the
//! concatenation of its text and CDATA pieces with entity and character references resolved,
//! and the layer enforces what the protocol documents need for safety: no `DOCTYPE` (so no
//! entity expansion), a nesting cap, one root element. Writing produces compact XML with a
//! declaration, a default namespace on the root only, and escaped single text nodes
//! (PROTOCOL §3.1).

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use quick_xml::Reader;
use quick_xml::events::Event;

/// Deepest element nesting accepted in any document (the protocol needs 3).
pub(crate) const MAX_DEPTH: usize = 16;

/// The XML declaration written in front of every document.
pub(crate) const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Namespace of `Message`, `Messages` and `ReceiptHandles` documents (trailing slash).
pub(crate) const NS_MESSAGE: &str = "http://mq.aliyuncs.com/doc/v1/";

/// Namespace of `Error` and `Errors` documents (no trailing slash; the Java SDK needs it).
pub(crate) const NS_ERROR: &str = "http://mq.aliyuncs.com/doc/v1";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum XmlError {
    /// The XML tokenizer reported an error (syntax, mismatched end tag, bad UTF-8, unknown
    /// entity...).
    #[error("{0}")]
    Syntax(String),
    /// The document has a `DOCTYPE` declaration.
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    /// Elements are nested too deeply.
    #[error("elements are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The document has no root element.
    #[error("the document has no root element")]
    NoRoot,
    /// The document ends inside an element.
    #[error("unexpected end of document inside an element")]
    UnexpectedEof,
    /// Text or elements follow the root element, or non-blank text precedes it.
    #[error("content outside the root element")]
    OutsideRoot,
}

fn syntax(e: impl std::fmt::Display) -> XmlError {
    XmlError::Syntax(e.to_string())
}

/// Element names of the protocol, matched by local name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    Messages,
    Message,
    MessageId,
    ReceiptHandles,
    ReceiptHandle,
    MessageBodyMd5,
    MessageBody,
    PublishTime,
    NextConsumeTime,
    FirstConsumeTime,
    ConsumedTimes,
    MessageTag,
    Properties,
    Errors,
    Error,
    Code,
    RequestId,
    HostId,
    ErrorCode,
    ErrorMessage,
    /// Any element the protocol does not define.
    Other,
}

impl Elem {
    fn from_local(name: &[u8]) -> Self {
        match name {
            b"Messages" => Self::Messages,
            b"Message" => Self::Message,
            b"MessageId" => Self::MessageId,
            b"ReceiptHandles" => Self::ReceiptHandles,
            b"ReceiptHandle" => Self::ReceiptHandle,
            b"MessageBodyMD5" => Self::MessageBodyMd5,
            b"MessageBody" => Self::MessageBody,
            b"PublishTime" => Self::PublishTime,
            b"NextConsumeTime" => Self::NextConsumeTime,
            b"FirstConsumeTime" => Self::FirstConsumeTime,
            b"ConsumedTimes" => Self::ConsumedTimes,
            b"MessageTag" => Self::MessageTag,
            b"Properties" => Self::Properties,
            b"Errors" => Self::Errors,
            b"Error" => Self::Error,
            b"Code" => Self::Code,
            b"RequestId" => Self::RequestId,
            b"HostId" => Self::HostId,
            b"ErrorCode" => Self::ErrorCode,
            b"ErrorMessage" => Self::ErrorMessage,
            _ => Self::Other,
        }
    }

    /// The element's name as written on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "Messages",
            Self::Message => "Message",
            Self::MessageId => "MessageId",
            Self::ReceiptHandles => "ReceiptHandles",
            Self::ReceiptHandle => "ReceiptHandle",
            Self::MessageBodyMd5 => "MessageBodyMD5",
            Self::MessageBody => "MessageBody",
            Self::PublishTime => "PublishTime",
            Self::NextConsumeTime => "NextConsumeTime",
            Self::FirstConsumeTime => "FirstConsumeTime",
            Self::ConsumedTimes => "ConsumedTimes",
            Self::MessageTag => "MessageTag",
            Self::Properties => "Properties",
            Self::Errors => "Errors",
            Self::Error => "Error",
            Self::Code => "Code",
            Self::RequestId => "RequestId",
            Self::HostId => "HostId",
            Self::ErrorCode => "ErrorCode",
            Self::ErrorMessage => "ErrorMessage",
            Self::Other => "(other)",
        }
    }
}

/// A structural event: text is not reported here (see [`XmlReader::read_text`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XmlEvent {
    /// An element starts (empty elements are reported as a start and an end).
    Start(Elem),
    /// The innermost open element ends.
    End,
    /// The document ended cleanly after its root element.
    Eof,
}

/// A pull reader over a borrowed document.
pub(crate) struct XmlReader<'a> {
    reader: Reader<&'a [u8]>,
    depth: usize,
    seen_root: bool,
    root_closed: bool,
    root_name: Option<String>,
}

impl<'a> XmlReader<'a> {
    /// A reader over `body`; a leading UTF-8 byte order mark is skipped.
    pub(crate) fn new(body: &'a [u8]) -> Self {
        let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
        let mut reader = Reader::from_reader(body);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        Self {
            reader,
            depth: 0,
            seen_root: false,
            root_closed: false,
            root_name: None,
        }
    }

    /// The local name of the root element, once seen (for error messages).
    pub(crate) fn root_name(&self) -> &str {
        self.root_name.as_deref().unwrap_or("")
    }

    fn enter(&mut self, local: &[u8]) -> Result<Elem, XmlError> {
        if self.root_closed {
            return Err(XmlError::OutsideRoot);
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(XmlError::TooDeep);
        }
        let elem = Elem::from_local(local);
        if !self.seen_root {
            self.seen_root = true;
            self.root_name = Some(String::from_utf8_lossy(local).into_owned());
        }
        Ok(elem)
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.root_closed = true;
        }
    }

    /// The next structural event; text between elements is skipped (text outside the root
    /// must be blank).
    pub(crate) fn next(&mut self) -> Result<XmlEvent, XmlError> {
        loop {
            match self.reader.read_event().map_err(syntax)? {
                Event::Start(e) => return self.enter(e.local_name().as_ref()).map(XmlEvent::Start),
                // Never produced: `expand_empty_elements` turns `<a/>` into a start and an end.
                Event::Empty(_) => {}
                Event::End(_) => {
                    self.leave();
                    return Ok(XmlEvent::End);
                }
                Event::Text(t) => {
                    if self.depth == 0 && !t.iter().all(u8::is_ascii_whitespace) {
                        return Err(XmlError::OutsideRoot);
                    }
                }
                Event::CData(_) => {
                    if self.depth == 0 {
                        return Err(XmlError::OutsideRoot);
                    }
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => {
                    return if self.depth > 0 {
                        Err(XmlError::UnexpectedEof)
                    } else if !self.seen_root {
                        Err(XmlError::NoRoot)
                    } else {
                        Ok(XmlEvent::Eof)
                    };
                }
            }
        }
    }

    /// Reads the first event, which must be the root element's start.
    pub(crate) fn root(&mut self) -> Result<Elem, XmlError> {
        match self.next()? {
            XmlEvent::Start(e) => Ok(e),
            XmlEvent::End | XmlEvent::Eof => Err(XmlError::NoRoot),
        }
    }

    /// Reads the text of the element that was just started, up to and including its end
    /// tag: text and CDATA pieces are concatenated, references resolved; child elements are
    /// skipped. Borrows from the input when the text is one piece without references.
    pub(crate) fn read_text(&mut self) -> Result<Cow<'a, str>, XmlError> {
        let mut acc: Option<Cow<'a, str>> = None;
        let target = self.depth.saturating_sub(1);
        loop {
            let piece = match self.reader.read_event().map_err(syntax)? {
                Event::Text(t) => t.unescape().map_err(syntax)?,
                Event::CData(c) => c.decode().map_err(syntax)?,
                Event::Start(e) => {
                    self.enter(e.local_name().as_ref())?;
                    self.skip()?;
                    continue;
                }
                Event::Empty(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
                Event::End(_) => {
                    self.leave();
                    if self.depth <= target {
                        return Ok(acc.unwrap_or(Cow::Borrowed("")));
                    }
                    continue;
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Eof => return Err(XmlError::UnexpectedEof),
            };
            if piece.is_empty() {
                continue;
            }
            match &mut acc {
                None => acc = Some(piece),
                Some(a) => a.to_mut().push_str(&piece),
            }
        }
    }

    /// Skips the rest of the element that was just started, including its end tag.
    pub(crate) fn skip(&mut self) -> Result<(), XmlError> {
        let target = self.depth.saturating_sub(1);
        loop {
            match self.next()? {
                XmlEvent::End if self.depth <= target => return Ok(()),
                XmlEvent::Eof => return Err(XmlError::UnexpectedEof),
                XmlEvent::Start(_) | XmlEvent::End => {}
            }
        }
    }

    /// Calls `child` for every direct child of the element that was just started, up to and
    /// including that element's end tag. `child` should consume the child (with
    /// [`read_text`](Self::read_text) or [`skip`](Self::skip)); deeper elements it leaves
    /// unread are skipped here.
    pub(crate) fn children<E: From<XmlError>>(
        &mut self,
        mut child: impl FnMut(&mut Self, Elem) -> Result<(), E>,
    ) -> Result<(), E> {
        let parent = self.depth;
        loop {
            match self.next()? {
                XmlEvent::Start(e) if self.depth == parent + 1 => child(self, e)?,
                XmlEvent::Start(_) => self.skip()?,
                XmlEvent::End if self.depth < parent => return Ok(()),
                XmlEvent::End => {}
                XmlEvent::Eof => return Err(XmlError::UnexpectedEof.into()),
            }
        }
    }

    /// After the root element closed: checks that only blanks, comments and processing
    /// instructions follow.
    pub(crate) fn finish(&mut self) -> Result<(), XmlError> {
        // `next` skips blanks, comments and processing instructions and rejects stray text.
        match self.next()? {
            XmlEvent::Eof => Ok(()),
            XmlEvent::Start(_) | XmlEvent::End => Err(XmlError::OutsideRoot),
        }
    }
}

/// Whether `c` may appear in an XML 1.0 document (as a character or a reference): the
/// definition [`escape_into`] implements byte-wise.
#[cfg(test)]
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// Bytes that start a character [`escape_into`] may have to replace: `&`, `<`, `>`, C0
/// controls other than tab and LF (CR included), and `0xEF` (the lead byte of U+FFFE and
/// U+FFFF; surrogates cannot occur in a `str`).
static ESCAPE_ATTENTION: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b != b'\t' as usize && b != b'\n' as usize;
        b += 1;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[0xef] = true;
    t
};

/// Appends `s` escaped for element text: `&` `<` `>` become entities, `\r` becomes `&#13;`
/// (so it survives line-end normalisation), and characters XML cannot carry become U+FFFD.
///
/// Scans bytes against a table and copies plain runs in one piece: every character that
/// needs attention starts with a byte of [`ESCAPE_ATTENTION`].
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // `last`: start of the plain run not yet copied; `from`: where the scan goes on.
    let (mut last, mut from) = (0, 0);
    while let Some(i) = bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| ESCAPE_ATTENTION[usize::from(b)]))
        .map(|p| from + p)
    {
        from = i + 1;
        let (rep, len) = match bytes.get(i) {
            Some(b'&') => ("&amp;", 1),
            Some(b'<') => ("&lt;", 1),
            Some(b'>') => ("&gt;", 1),
            Some(b'\r') => ("&#13;", 1),
            Some(0xef) => {
                if matches!(bytes.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) {
                    ("\u{fffd}", 3)
                } else {
                    continue;
                }
            }
            _ => ("\u{fffd}", 1),
        };
        out.push_str(s.get(last..i).unwrap_or_default());
        out.push_str(rep);
        last = i + len;
        from = last;
    }
    out.push_str(s.get(last..).unwrap_or_default());
}

/// Builds one compact XML document.
pub(crate) struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    /// A writer whose buffer holds `capacity` bytes plus the declaration up front.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut buf = String::with_capacity(DECLARATION.len() + capacity);
        buf.push_str(DECLARATION);
        Self { buf }
    }

    /// Opens the root element with a default namespace.
    pub(crate) fn open_root(&mut self, name: &str, namespace: &str) {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push_str(" xmlns=\"");
        self.buf.push_str(namespace);
        self.buf.push_str("\">");
    }

    /// Opens an element.
    pub(crate) fn open(&mut self, name: &str) {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Closes an element.
    pub(crate) fn close(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Writes `<name>escaped text</name>` (never self-closing).
    pub(crate) fn text(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_into(&mut self.buf, text);
        self.close(name);
    }

    /// Writes `<name>digits</name>`.
    pub(crate) fn number(&mut self, name: &str, n: u64) {
        self.open(name);
        // Writing into a String cannot fail.
        let _ = write!(self.buf, "{n}");
        self.close(name);
    }

    /// The finished document.
    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.buf.into_bytes())
    }
}

/// Rough upper bound of the escaped size of `s` for buffer pre-sizing (exact for text without
/// special characters).
pub(crate) fn text_capacity(s: &str) -> usize {
    s.len() + s.len() / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(doc: &str) -> Result<Vec<(Elem, String)>, XmlError> {
        let mut r = XmlReader::new(doc.as_bytes());
        let mut out = Vec::new();
        r.root()?;
        loop {
            match r.next()? {
                XmlEvent::Start(e) => out.push((e, r.read_text()?.into_owned())),
                XmlEvent::End if r.depth == 0 => break,
                XmlEvent::End => {}
                XmlEvent::Eof => return Err(XmlError::UnexpectedEof),
            }
        }
        r.finish()?;
        Ok(out)
    }

    #[test]
    fn reads_namespaced_cdata_entities_and_bom() {
        let doc = "\u{feff}<?xml version=\"1.0\"?>\n<a:Message xmlns:a=\"x\">\n\t<a:MessageBody>x &lt;&#x4e2d;&#25991;<![CDATA[<&>]]>y</a:MessageBody>\n<Other/><MessageTag/></a:Message>\n";
        let got = texts(doc).unwrap();
        assert_eq!(
            got,
            vec![
                (Elem::MessageBody, "x <中文<&>y".to_owned()),
                (Elem::Other, String::new()),
                (Elem::MessageTag, String::new()),
            ]
        );
    }

    #[test]
    fn rejects_doctype_depth_and_garbage() {
        let bomb =
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><Message><MessageBody>&a;</MessageBody></Message>";
        assert_eq!(texts(bomb), Err(XmlError::Doctype));
        let deep = format!(
            "<Message>{}{}</Message>",
            "<a>".repeat(20),
            "</a>".repeat(20)
        );
        assert_eq!(texts(&deep), Err(XmlError::TooDeep));
        assert_eq!(texts(""), Err(XmlError::NoRoot));
        assert_eq!(texts("<a><b>x</b>"), Err(XmlError::UnexpectedEof));
        assert_eq!(texts("<a></a><b/>"), Err(XmlError::OutsideRoot));
        assert_eq!(texts("junk<a></a>"), Err(XmlError::OutsideRoot));
        assert!(matches!(
            texts("<a><b>&bogus;</b></a>"),
            Err(XmlError::Syntax(_))
        ));
        assert!(matches!(texts("<a><b></c></a>"), Err(XmlError::Syntax(_))));
    }

    /// The char-by-char definition `escape_into` must match.
    fn escape_reference(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '\r' => out.push_str("&#13;"),
                c if is_xml_char(c) => out.push(c),
                _ => out.push('\u{fffd}'),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn escape_matches_the_char_definition(s in "(?s:.{0,64})|[\\x00-\\x20&<>\u{fffd}-\u{ffff}\u{e000}a-z中]{0,64}") {
            let mut out = String::new();
            escape_into(&mut out, &s);
            proptest::prop_assert_eq!(out, escape_reference(&s));
        }
    }

    #[test]
    fn escapes_specials_and_unrepresentable_chars() {
        let mut s = String::new();
        escape_into(&mut s, "a&b<c>d\re\u{1}f\"'\u{ffff}中");
        assert_eq!(s, "a&amp;b&lt;c&gt;d&#13;e\u{fffd}f\"'\u{fffd}中");
    }
}
