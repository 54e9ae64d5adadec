//! XML reading and writing helpers shared by the client and server codecs.
//!
//! Reading is a thin layer over quick-xml's borrowing slice reader: elements are reported by
//! *local name* (namespaces and prefixes are ignored), the text of a leaf element is the
//! concatenation of its text and CDATA pieces with line ends normalised and entity and
//! character references resolved. The reader accepts only well-formed XML 1.0 (see
//! [`XmlReader`] for each constraint and where it is checked) and, for safety, refuses what
//! the protocol documents never need: a `DOCTYPE` (so no entity expansion) and nesting deeper
//! than [`MAX_DEPTH`]. Writing produces compact XML with a declaration, a default namespace on
//! the root only, and escaped single text nodes (PROTOCOL §3.1).

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use memchr::{memchr, memchr_iter, memchr2, memchr2_iter, memchr3, memmem};
use quick_xml::Reader;
use quick_xml::escape::unescape;
use quick_xml::events::{BytesDecl, BytesPI, BytesStart, Event};

use crate::text::{BodyView, TextRepr, TextView, shared_slice};

/// Deepest element nesting accepted in any document (the protocol needs 3).
pub(crate) const MAX_DEPTH: usize = 16;

/// The XML declaration written in front of every document.
pub(crate) const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Namespace of `Message`, `Messages` and `ReceiptHandles` documents (trailing slash).
pub(crate) const NS_MESSAGE: &str = "http://mq.aliyuncs.com/doc/v1/";

/// Namespace of `Error` and `Errors` documents (no trailing slash; the Java SDK needs it).
pub(crate) const NS_ERROR: &str = "http://mq.aliyuncs.com/doc/v1";

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum XmlError {
    /// The document is not well-formed XML 1.0: reported by the XML tokenizer (syntax,
    /// mismatched end tag, unknown entity, duplicate attribute...) or by the checks of this
    /// module (characters, names, `]]>` in text, the XML declaration...).
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
    /// An element inside a text field, read by a [text-only](XmlReader::text_only) reader:
    /// well-formed, but dropping it would store other text than was sent.
    #[error("an element inside a text field")]
    ElementInText,
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
        // By length first, then one fixed-size comparison per candidate of that length.
        fn is<const N: usize>(name: &[u8], candidate: &[u8; N]) -> bool {
            <&[u8; N]>::try_from(name).is_ok_and(|name| name == candidate)
        }
        match name.len() {
            4 if is(name, b"Code") => Self::Code,
            5 if is(name, b"Error") => Self::Error,
            6 if is(name, b"Errors") => Self::Errors,
            6 if is(name, b"HostId") => Self::HostId,
            7 if is(name, b"Message") => Self::Message,
            8 if is(name, b"Messages") => Self::Messages,
            9 if is(name, b"MessageId") => Self::MessageId,
            9 if is(name, b"RequestId") => Self::RequestId,
            9 if is(name, b"ErrorCode") => Self::ErrorCode,
            10 if is(name, b"MessageTag") => Self::MessageTag,
            10 if is(name, b"Properties") => Self::Properties,
            11 if is(name, b"MessageBody") => Self::MessageBody,
            11 if is(name, b"PublishTime") => Self::PublishTime,
            12 if is(name, b"ErrorMessage") => Self::ErrorMessage,
            13 if is(name, b"ReceiptHandle") => Self::ReceiptHandle,
            13 if is(name, b"ConsumedTimes") => Self::ConsumedTimes,
            14 if is(name, b"ReceiptHandles") => Self::ReceiptHandles,
            14 if is(name, b"MessageBodyMD5") => Self::MessageBodyMd5,
            15 if is(name, b"NextConsumeTime") => Self::NextConsumeTime,
            16 if is(name, b"FirstConsumeTime") => Self::FirstConsumeTime,
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
///
/// # Well-formedness
///
/// A document is accepted once [`finish`](Self::finish) has read it to its end; every read
/// before that refuses the first violation of XML 1.0 (5th edition) it meets, and every later
/// read repeats that error (quick-xml itself would go on after some). Checked by quick-xml, as configured in [`new`](Self::new): markup syntax, end tags
/// matching start tags (`check_end_names`), `--` inside comments and comments ending in
/// `--->` (`check_comments`), attributes written `name="value"` or `name='value'`, unique
/// attribute names (`Attributes::with_checks`), references to the five predefined entities
/// only, character reference syntax (decimal or `x` hexadecimal digits, no sign) and no
/// `&#0;`, surrogate or out-of-range code point. Checked here:
///
/// - the whole input is UTF-8 and every character matches `Char` (§2.2), in text, CDATA,
///   names, attribute values, comments and processing instructions: [`check_chars`], once
///   over the document;
/// - element and attribute names and processing-instruction targets match `Name` (§2.3);
///   end tags need no check of their own since they must equal their start tag;
/// - attributes are separated by whitespace, their values hold no `<` and only well-formed
///   references (§3.1, WFC "No < in Attribute Values");
/// - character data holds no `]]>` (§2.4) and only well-formed references, even where it is
///   skipped;
/// - character references resolve to a `Char` (WFC "Legal Character": `&#1;`, `&#xFFFE;`);
/// - the processing-instruction target `xml` is reserved in any case (§2.6);
/// - the XML declaration comes first (after an optional byte order mark) and follows §2.8:
///   `version="1.x"`, then optionally `encoding` (an `EncName`) and `standalone` (`yes` or
///   `no`), in that order, each after whitespace;
/// - one root element, with only comments, processing instructions and whitespace around it
///   (§2.1, §2.8).
///
/// Line ends in text are normalised as §2.11 asks (`\r\n` and a lone `\r` become `\n`; a
/// `&#13;` reference stays a CR).
pub(crate) struct XmlReader<'a> {
    reader: Reader<&'a [u8]>,
    /// The document as text (empty when it failed [`check_chars`]).
    doc: &'a str,
    /// `doc` as a shared buffer, when the reader reads a [`Document`]: text read from it is
    /// handed out as slices of it ([`share`](Self::share)).
    shared: Option<&'a ByteString>,
    /// The first error met; every later read repeats it.
    failed: Option<XmlError>,
    /// Which rare characters the document holds.
    found: Found,
    /// No event was read yet: the only place for an XML declaration.
    at_start: bool,
    depth: usize,
    seen_root: bool,
    root_closed: bool,
    /// Where the local name of the root element lies in `doc`, once seen.
    root_name: Option<Range<usize>>,
    /// Byte offset in the body where the last event read began.
    event_start: usize,
    /// An element inside a text field is an error ([`text_only`](Self::text_only)) rather
    /// than skipped.
    text_only: bool,
}

impl<'a> XmlReader<'a> {
    /// This reader with [`read_text`](Self::read_text) refusing an element inside the text
    /// ([`XmlError::ElementInText`]) instead of skipping it: for requests, whose text a
    /// server stores (PROTOCOL §6.10 (4): leniency silently alters bodies). Responses are
    /// read leniently (a newer service may add markup a client does not know).
    pub(crate) fn text_only(mut self) -> Self {
        self.text_only = true;
        self
    }

    /// A reader over `body`; quick-xml skips one leading UTF-8 byte order mark. The characters
    /// of the whole document are checked here, and a failure is reported by the first read.
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self::checked(check_chars(body), None)
    }

    /// A reader over a document whose characters were checked ([`check_chars`]), with its
    /// shared buffer when there is one.
    fn checked(
        checked: Result<(&'a str, Found), XmlError>,
        shared: Option<&'a ByteString>,
    ) -> Self {
        let (doc, failed, found) = match checked {
            Ok((doc, found)) => (doc, None, found),
            Err(e) => ("", Some(e), Found::default()),
        };
        let mut reader = Reader::from_str(doc);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.trim_text(false);
        Self {
            reader,
            doc,
            shared,
            failed,
            found,
            at_start: true,
            depth: 0,
            seen_root: false,
            root_closed: false,
            root_name: None,
            event_start: 0,
            text_only: false,
        }
    }

    /// Byte offset in the body just past the last event read (after an element's end tag
    /// once [`read_text`](Self::read_text), [`skip`](Self::skip) or
    /// [`children`](Self::children) returned).
    pub(crate) fn position(&self) -> usize {
        // quick-xml skips a leading byte order mark and counts its positions after it.
        let bom = if self.doc.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        usize::try_from(self.reader.buffer_position()).map_or(usize::MAX, |p| p.saturating_add(bom))
    }

    /// Byte offset in the body where the last event read began (the `<` of an element that
    /// was just started).
    pub(crate) fn event_start(&self) -> usize {
        self.event_start
    }

    /// The local name of the root element, once seen (for error messages).
    pub(crate) fn root_name(&self) -> &str {
        (self.root_name.clone())
            .and_then(|name| self.doc.get(name))
            .unwrap_or_default()
    }

    /// The next event from quick-xml, with the checks that do not depend on where the reader
    /// is (start tags are checked by [`enter`](Self::enter)).
    #[inline(always)]
    fn read(&mut self) -> Result<Event<'a>, XmlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let at_start = std::mem::replace(&mut self.at_start, false);
        self.event_start = self.position();
        let event = match self.reader.read_event() {
            Ok(event) => event,
            Err(e) => return Err(self.fail(syntax(e))),
        };
        let checked = match &event {
            Event::Text(t) if self.found.cdata_end && has_cdata_end(t) => {
                Err(XmlError::Syntax("`]]>` in character data".into()))
            }
            Event::PI(pi) => check_pi(pi),
            Event::Decl(decl) => check_declaration(decl, at_start),
            _ => Ok(()),
        };
        match checked {
            Ok(()) => Ok(event),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Records `e` as the reader's final state: every later read repeats it.
    fn fail(&mut self, e: XmlError) -> XmlError {
        self.failed = Some(e.clone());
        e
    }

    /// Checks a start tag and goes one level down.
    #[inline(always)]
    fn enter(&mut self, tag: &BytesStart<'_>) -> Result<Elem, XmlError> {
        if self.root_closed {
            return Err(XmlError::OutsideRoot);
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(XmlError::TooDeep);
        }
        let name = tag.name();
        // The protocol's own names have no prefix and are valid `Name`s: a whole name that is
        // one of them needs neither splitting at a `:` nor a check. Other or prefixed names
        // are matched by their local part and checked.
        let (mut elem, mut local) = (Elem::from_local(name.as_ref()), name.into_inner());
        if elem == Elem::Other {
            local = name.local_name().into_inner();
            elem = Elem::from_local(local);
            if !is_name(name.as_ref()) {
                return Err(self.fail(invalid_name("element", name.as_ref())));
            }
        }
        if let Err(e) = check_attributes(tag) {
            return Err(self.fail(e));
        }
        if !self.seen_root {
            self.seen_root = true;
            self.root_name = self.doc_range(local);
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
    /// must be blank) but still checked.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Result<XmlEvent, XmlError> {
        loop {
            match self.read()? {
                Event::Start(e) => return self.enter(&e).map(XmlEvent::Start),
                // Never produced: `expand_empty_elements` turns `<a/>` into a start and an end.
                Event::Empty(_) => {}
                Event::End(_) => {
                    self.leave();
                    return Ok(XmlEvent::End);
                }
                Event::Text(t) => {
                    if self.depth == 0 {
                        if !t.iter().all(|&b| is_space(b)) {
                            return Err(XmlError::OutsideRoot);
                        }
                    } else if self.found.amp
                        && memchr(b'&', &t).is_some()
                        && let Err(e) = self.char_data(t.into_inner(), true)
                    {
                        return Err(self.fail(e));
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
    /// tag: text and CDATA pieces are concatenated, line ends normalised, references
    /// resolved; child elements are skipped (refused by a [text-only](Self::text_only)
    /// reader). Borrows from the input when the text is one
    /// piece without references or CRs.
    #[inline(always)]
    pub(crate) fn read_text(&mut self) -> Result<Cow<'a, str>, XmlError> {
        let mut acc: Option<Cow<'a, str>> = None;
        // Whether an element was met (and skipped) inside the text.
        let mut element = false;
        let target = self.depth.saturating_sub(1);
        loop {
            let piece = match self.read()? {
                Event::Text(t) => self.char_data(t.into_inner(), true),
                Event::CData(c) => self.char_data(c.into_inner(), false),
                Event::Start(e) => {
                    self.enter(&e)?;
                    self.skip()?;
                    element = true;
                    continue;
                }
                Event::Empty(_) => {
                    element = true;
                    continue;
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
                Event::End(_) => {
                    self.leave();
                    if self.depth <= target {
                        // Read to its end either way: the rest of the document can be read
                        // (and checked) after the refusal.
                        if element && self.text_only {
                            return Err(XmlError::ElementInText);
                        }
                        return Ok(acc.unwrap_or(Cow::Borrowed("")));
                    }
                    continue;
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Eof => return Err(XmlError::UnexpectedEof),
            };
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => return Err(self.fail(e)),
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

    /// Whether `text`, returned by [`read_text`](Self::read_text), is verbatim: written
    /// escaped ([`escape_into`]) it is itself, so an encoder may copy it without the scan
    /// (see [`MessageBody`](crate::MessageBody)).
    ///
    /// Text that lies in the document is one piece of it (two pieces are joined into an
    /// owned string) without reference or CR (resolving either gives an owned string); it
    /// is character data, not a CDATA section's content, when the byte before it closes
    /// markup (`>`): CDATA content follows `<![CDATA[`. Such text holds no `<`, `&` or CR,
    /// and only characters XML allows (the document was checked); it escapes to itself
    /// unless it holds a `>` (which [`escape_into`] writes as `&gt;`, as the official SDKs
    /// do): one `memchr`.
    pub(crate) fn is_verbatim(&self, text: &str) -> bool {
        !text.is_empty()
            && self
                .doc_range(text.as_bytes())
                .and_then(|range| range.start.checked_sub(1))
                .and_then(|before| self.doc.as_bytes().get(before))
                == Some(&b'>')
            && memchr(b'>', text.as_bytes()).is_none()
    }

    /// Text returned by [`read_text`](Self::read_text) as a [`ByteString`]: a slice of the
    /// document's shared buffer when the text is a piece of it (no reference, CR or CDATA
    /// boundary in it), else the resolved text itself (moved, not copied). Copies only for a
    /// reader without a shared buffer.
    pub(crate) fn share(&self, text: Cow<'a, str>) -> ByteString {
        self.sharer().share(text)
    }

    /// What [`share`](Self::share)s text of this reader's document, apart from the reader.
    pub(crate) fn sharer(&self) -> Sharer<'a> {
        Sharer(self.shared)
    }

    /// [`read_text`](Self::read_text) as a [`ByteString`] ([`share`](Self::share)).
    pub(crate) fn read_shared(&mut self) -> Result<ByteString, XmlError> {
        let text = self.read_text()?;
        Ok(self.share(text))
    }

    /// A text (`references`) or CDATA piece as a string: line ends normalised, references
    /// resolved and checked.
    #[inline(always)]
    fn char_data(&self, raw: Cow<'a, [u8]>, references: bool) -> Result<Cow<'a, str>, XmlError> {
        let mut text = match raw {
            Cow::Borrowed(b) => self.doc_str(b).map(Cow::Borrowed)?,
            Cow::Owned(v) => String::from_utf8(v).map(Cow::Owned).map_err(syntax)?,
        };
        if self.found.cr {
            text = normalize_line_ends(text);
        }
        if references && self.found.amp {
            text = resolve_references(text)?;
        }
        Ok(text)
    }

    /// `piece`, a slice of the document, as a `str` without decoding it again: the whole
    /// document is valid UTF-8 ([`check_chars`]) and quick-xml cuts it only next to ASCII
    /// delimiters. A slice from anywhere else is decoded.
    fn doc_str(&self, piece: &'a [u8]) -> Result<&'a str, XmlError> {
        match self.doc_range(piece).and_then(|range| self.doc.get(range)) {
            Some(s) => Ok(s),
            None => std::str::from_utf8(piece).map_err(syntax),
        }
    }

    /// Where `piece` lies in the document, if it is a slice of it.
    fn doc_range(&self, piece: &[u8]) -> Option<Range<usize>> {
        let start = (piece.as_ptr() as usize).checked_sub(self.doc.as_ptr() as usize)?;
        let end = start.checked_add(piece.len())?;
        (end <= self.doc.len()).then_some(start..end)
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

    /// Reads the rest of the document, checking it, wherever the reader stands: for a caller
    /// that found a schema error early and must still tell a malformed document apart
    /// (malformed XML is reported before any schema error).
    pub(crate) fn drain(&mut self) -> Result<(), XmlError> {
        loop {
            if self.next()? == XmlEvent::Eof {
                return Ok(());
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

// ---------------------------------------------------------------------------------------------
// Well-formedness checks quick-xml does not make

/// `S` (§2.3): space, tab, CR, LF.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The bytes that may start a character XML does not allow — C0 controls (tab, LF and CR
/// are allowed) and `0xEF`, the lead byte of U+FFFE and U+FFFF (surrogates cannot occur in
/// UTF-8) — and `0xF0..=0xFF` (4-byte characters, rare) are those this wrapping add moves to
/// `0x00..=ATTENTION_MAX`. A block holds one of them when the minimum of the moved bytes is at
/// most [`ATTENTION_MAX`]: a fold that vectorises into one add and one minimum per 16 bytes.
#[inline(always)]
fn attention_key(b: u8) -> u8 {
    b.wrapping_add(0x11)
}

/// See [`attention_key`].
const ATTENTION_MAX: u8 = 0x30;

/// The bytes of [`attention_key`] without tab and LF, for blocks that have one of those
/// (CR stays, so that [`check_block`] notes it); 1 for such a byte.
#[inline(always)]
fn close_attention(b: u8) -> u8 {
    (u8::from(b < 0x20) & u8::from(b != b'\t') & u8::from(b != b'\n')) | u8::from(b == 0xef)
}

/// What [`check_chars`] found besides errors: which rare characters the document holds, so
/// that the per-piece work for them is skipped when it does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Found {
    /// A CR: text needs line-end normalisation.
    cr: bool,
    /// An `&`: text may hold references.
    amp: bool,
    /// `]]>` somewhere (legal only as the end of a CDATA section).
    cdata_end: bool,
}

/// Checks that `bytes` is UTF-8 and that every character matches `Char` (§2.2): no C0
/// control other than tab, LF and CR, no U+FFFE or U+FFFF; returns the text and what rare
/// characters it holds.
///
/// After the UTF-8 check, 128-byte blocks are tested with a branch-free fold of [`attention_key`]
/// (vectorised by the compiler); a block with such a byte is tested again without tab and LF
/// (indented documents have them in many blocks), and looked at byte by byte only if that
/// finds one.
fn check_chars(bytes: &[u8]) -> Result<(&str, Found), XmlError> {
    let text = std::str::from_utf8(bytes).map_err(utf8_error)?;
    Ok((text, check_text(text)?))
}

fn utf8_error(e: std::str::Utf8Error) -> XmlError {
    XmlError::Syntax(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
}

/// [`check_chars`] after the UTF-8 check.
fn check_text(text: &str) -> Result<Found, XmlError> {
    let bytes = text.as_bytes();
    let mut found = Found {
        cr: check_xml_chars(text)?,
        ..Found::default()
    };
    for i in memchr2_iter(b'&', b']', bytes) {
        if bytes.get(i) == Some(&b'&') {
            found.amp = true;
        } else if bytes.get(i..i + 3) == Some(b"]]>".as_slice()) {
            found.cdata_end = true;
        }
        if found.amp && found.cdata_end {
            break;
        }
    }
    Ok(found)
}

/// Hands out text read from a document as a [`ByteString`]: a slice of the document's
/// shared buffer (when there is one) for text that is a piece of it, else the text itself.
#[derive(Clone, Copy)]
pub(crate) struct Sharer<'a>(Option<&'a ByteString>);

impl<'a> Sharer<'a> {
    /// See [`XmlReader::share`].
    pub(crate) fn share(self, text: Cow<'a, str>) -> ByteString {
        match text {
            // Resolved text is shorter than what was read (references): without the spare
            // capacity, which a stored message would keep.
            Cow::Owned(mut s) => {
                s.shrink_to_fit();
                ByteString::from(s)
            }
            Cow::Borrowed("") => ByteString::new(),
            Cow::Borrowed(s) => self
                .0
                .and_then(|doc| shared_slice(doc, s))
                .unwrap_or_else(|| ByteString::from(s)),
        }
    }
}

/// A body to read, held as shared text: the characters are checked once here, as
/// [`XmlReader::new`] checks them, and the text a reader of it reads is handed out as slices
/// of the body ([`XmlReader::share`]) rather than copies.
pub(crate) struct Document {
    text: Result<(ByteString, Found), XmlError>,
}

impl Document {
    /// The body as a document (a cheap clone of `body`, no copy).
    pub(crate) fn new(body: &Bytes) -> Self {
        let text = ByteString::try_from(body.clone())
            .map_err(utf8_error)
            .and_then(|text| check_text(&text).map(|found| (text, found)));
        Self { text }
    }

    /// Whether the body failed the character check (not UTF-8, or a character XML does not
    /// allow): every read of a reader over it reports that error.
    pub(crate) fn chars_failed(&self) -> bool {
        self.text.is_err()
    }

    /// Reads a document of the shape the SDKs write, without the general reader: an
    /// optional XML declaration of a usual form, the root element `root` (with no attribute
    /// but an optional `xmlns`), child elements of the protocol each holding plain text or
    /// one CDATA section (as the Node SDK writes them), whitespace between them, nothing
    /// after the root but whitespace. Hands each child's element, text and whether it was a
    /// CDATA section to `each`, in order, and returns `true` when the whole document had
    /// that shape and `each` accepted every child.
    ///
    /// `false` as soon as anything else is met (see [`flat`](Self::flat)) or `each`
    /// refuses a child: the caller then reads the document with [`reader`](Self::reader),
    /// which accepts or refuses it with every check of XML 1.0 (what `each` collected is to
    /// be dropped). A document this accepts is one that reader accepts, with the same texts
    /// (`read_text` gives each child's text as one piece of the document); a property test
    /// compares the two on generated documents of both kinds.
    pub(crate) fn flat_children<'d>(
        &'d self,
        root: Elem,
        mut each: impl FnMut(Elem, &'d str, bool) -> bool,
    ) -> bool {
        let Some(mut flat) = self.flat(root) else {
            return false;
        };
        // Text with a reference is the general reader's here: the publish parse marks a
        // body by where it lies.
        flat.references = false;
        loop {
            match flat.next(root, None) {
                Some(FlatStep::Text(elem, Cow::Borrowed(text), cdata))
                    if each(elem, text, cdata) => {}
                Some(FlatStep::End(_)) => return flat.finish(),
                _ => return false,
            }
        }
    }

    /// The flat scan of a document of the shape the SDKs and the service write, started:
    /// an optional XML declaration of a usual form and the start tag of the root element
    /// `root` (with no attribute but an optional `xmlns`) were read. [`Flat::next`] reads
    /// the elements in it, [`Flat::finish`] what follows its end.
    ///
    /// `None` (and `None` from the cursor's steps) as soon as anything else is met — a
    /// reference that does not resolve, `]]>` in text, a CR, a comment, a processing instruction, an
    /// attribute, a prefix, an empty-element tag, an element the caller does not expect, a
    /// byte order mark, whitespace inside a tag, text other than whitespace between
    /// elements: the caller then reads the document with [`reader`](Self::reader), which
    /// accepts or refuses it with every check of XML 1.0. A document the scan reads to its
    /// end is one that reader accepts, with the same texts and element spans.
    pub(crate) fn flat(&self, root: Elem) -> Option<Flat<'_>> {
        /// The declarations the SDKs write (Node, Java, Go and ours: the first; Python: the
        /// second).
        const DECLARATIONS: [&[u8]; 3] = [
            br#"<?xml version="1.0" encoding="UTF-8"?>"#,
            br#"<?xml version="1.0" encoding="utf-8"?>"#,
            br#"<?xml version="1.0"?>"#,
        ];
        let Ok((text, found)) = &self.text else {
            return None;
        };
        // Line-end normalisation is the general reader's.
        if found.cr {
            return None;
        }
        let b = text.as_bytes();
        let mut at = 0;
        if b.starts_with(b"<?") {
            at = DECLARATIONS.iter().find(|d| b.starts_with(d))?.len();
        }
        at = blanks(b, at);
        let root_name = root.as_str().as_bytes();
        let rest = b.get(at..)?.strip_prefix(b"<")?.strip_prefix(root_name)?;
        at += 1 + root_name.len();
        if rest.starts_with(b">") {
            at += 1;
        } else {
            let value = rest.strip_prefix(br#" xmlns=""#)?;
            let quote = memchr(b'"', value)?;
            // No `<` in an attribute value; an `&` would be a reference.
            if memchr2(b'<', b'&', value.get(..quote).unwrap_or_default()).is_some()
                || value.get(quote + 1) != Some(&b'>')
            {
                return None;
            }
            at += 8 + quote + 2;
        }
        Some(Flat {
            text,
            found: *found,
            at,
            references: true,
        })
    }

    /// What shares text of this document ([`XmlReader::share`]).
    pub(crate) fn sharer(&self) -> Sharer<'_> {
        Sharer(self.text.as_ref().ok().map(|(text, _)| text))
    }

    /// A reader over the document.
    pub(crate) fn reader(&self) -> XmlReader<'_> {
        match &self.text {
            Ok((text, found)) => XmlReader::checked(Ok((text, *found)), Some(text)),
            Err(e) => XmlReader::checked(Err(e.clone()), None),
        }
    }
}

/// The cursor of [`Document::flat`]: where the scan stands in the document.
pub(crate) struct Flat<'d> {
    text: &'d str,
    found: Found,
    at: usize,
    /// Whether text with references is resolved (else the scan ends there).
    references: bool,
}

/// One step of a [`Flat`] scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FlatStep<'d> {
    /// A child element holding text (or one CDATA section), read up to its end tag: the
    /// element, its text (a piece of the document, or resolved as the general reader
    /// resolves it when it holds references), whether that was a CDATA section.
    Text(Elem, Cow<'d, str>, bool),
    /// The start tag of a child element that holds elements, read: the element and where
    /// its `<` lies.
    Enter(Elem, usize),
    /// The end tag of the element whose children were being read: where it ends.
    End(usize),
}

impl<'d> Flat<'d> {
    /// The next child of `parent` (the element whose start tag was read last and not yet
    /// ended), after any whitespace: its end tag, a child `container` entered, or another
    /// child of the protocol holding text. `None` when the document leaves the flat shape
    /// here (see [`Document::flat`]).
    pub(crate) fn next(&mut self, parent: Elem, container: Option<Elem>) -> Option<FlatStep<'d>> {
        const CDATA: &[u8] = b"<![CDATA[";
        let (text, b) = (self.text, self.text.as_bytes());
        let at = blanks(b, self.at);
        let tag = b.get(at..)?.strip_prefix(b"<")?;
        if tag.starts_with(b"/") {
            self.at = end_tag(b, at, parent.as_str().as_bytes())?;
            return Some(FlatStep::End(self.at));
        }
        // The child's name is all up to `>`: one of the protocol's names, else not flat.
        let gt = memchr(b'>', tag)?;
        let name = tag.get(..gt)?;
        let elem = Elem::from_local(name);
        let content = at + 1 + gt + 1;
        if elem == Elem::Other {
            return None;
        }
        if Some(elem) == container {
            self.at = content;
            return Some(FlatStep::Enter(elem, at));
        }
        let (piece, cdata, after) = if b.get(content..)?.starts_with(CDATA) {
            // One CDATA section: its text ends at the first `]]>`.
            let inner = content + CDATA.len();
            let len = memmem::find(b.get(inner..)?, b"]]>")?;
            (inner..inner + len, true, end_tag(b, inner + len + 3, name)?)
        } else {
            let len = memchr(b'<', b.get(content..)?)?;
            (
                content..content + len,
                false,
                end_tag(b, content + len, name)?,
            )
        };
        let mut piece = Cow::Borrowed(text.get(piece)?);
        if !cdata {
            // The `]]>` character data may not hold is the general reader's to report.
            if self.found.cdata_end && memmem::find(piece.as_bytes(), b"]]>").is_some() {
                return None;
            }
            // References resolved and checked as the general reader does (which reports a
            // bad one).
            if self.found.amp && memchr(b'&', piece.as_bytes()).is_some() {
                if !self.references {
                    return None;
                }
                piece = resolve_references(piece).ok()?;
            }
        }
        self.at = after;
        Some(FlatStep::Text(elem, piece, cdata))
    }

    /// After the root's end tag: whether only whitespace follows.
    pub(crate) fn finish(&self) -> bool {
        blanks(self.text.as_bytes(), self.at) == self.text.len()
    }
}

/// The position of the first byte at or after `at` that is not whitespace.
fn blanks(b: &[u8], mut at: usize) -> usize {
    while b.get(at).is_some_and(|&c| is_space(c)) {
        at += 1;
    }
    at
}

/// `</name>` at `at`: the position after it.
fn end_tag(b: &[u8], at: usize, name: &[u8]) -> Option<usize> {
    let rest = b.get(at..)?.strip_prefix(b"</")?.strip_prefix(name)?;
    rest.starts_with(b">").then_some(at + 3 + name.len())
}

/// For a body that fails [`check_chars`]: a copy in which every byte of an invalid UTF-8
/// sequence and of a character XML does not allow is replaced by `?` (so offsets stay those
/// of the body), and the replaced byte ranges in order. `None` when the body passes.
///
/// Lets a decoder read the structure of a document whose text is damaged in places and
/// judge each damaged place by where it lies (see `wire::consume`).
pub(crate) fn substitute_invalid_chars(body: &[u8]) -> Option<(Vec<u8>, Vec<Range<usize>>)> {
    if check_chars(body).is_ok() {
        return None;
    }
    let mut out = body.to_vec();
    let mut bad: Vec<Range<usize>> = Vec::new();
    let mut mark = |range: Range<usize>, out: &mut Vec<u8>| {
        if let Some(bytes) = out.get_mut(range.clone()) {
            bytes.fill(b'?');
        }
        match bad.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => bad.push(range),
        }
    };
    let mut at = 0;
    while at < body.len() {
        let rest = body.get(at..).unwrap_or_default();
        let (valid, invalid_len) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let valid = rest
                    .get(..e.valid_up_to())
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .unwrap_or_default();
                (valid, e.error_len().unwrap_or(rest.len() - e.valid_up_to()))
            }
        };
        for (i, c) in valid.char_indices() {
            if !is_xml_char(c) {
                mark(at + i..at + i + c.len_utf8(), &mut out);
            }
        }
        at += valid.len();
        if invalid_len > 0 {
            mark(at..at + invalid_len, &mut out);
            at += invalid_len;
        }
    }
    Some((out, bad))
}

/// The error [`XmlReader::new`] reports for `body` (the first read's), if its characters
/// fail the check.
pub(crate) fn char_error(body: &[u8]) -> Option<XmlError> {
    check_chars(body).err()
}

/// The `Char` check of [`check_chars`]; returns whether `text` holds a CR.
pub(crate) fn check_xml_chars(text: &str) -> Result<bool, XmlError> {
    const BLOCK: usize = 128;
    /// Whether a block needs the byte-by-byte look: the cheap fold first, then the one
    /// without tab and LF.
    fn suspect(block: &[u8; BLOCK]) -> bool {
        block
            .iter()
            .fold(u8::MAX, |min, &b| min.min(attention_key(b)))
            <= ATTENTION_MAX
            && block.iter().fold(0, |acc, &b| acc | close_attention(b)) != 0
    }
    let bytes = text.as_bytes();
    let mut cr = false;
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut start = 0;
    for block in &mut blocks {
        if let Ok(block) = <&[u8; BLOCK]>::try_from(block)
            && suspect(block)
        {
            cr |= check_block(text, start, BLOCK)?;
        }
        start += BLOCK;
    }
    // The last partial block, padded with spaces to a whole one (a fixed-size fold vectorises).
    let rest = blocks.remainder();
    let mut padded = [b' '; BLOCK];
    if let Some(head) = padded.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    if suspect(&padded) {
        cr |= check_block(text, start, rest.len())?;
    }
    Ok(cr)
}

/// The byte-by-byte check of `len` bytes of `text` from `start`; returns whether they hold a
/// CR.
#[inline(never)]
fn check_block(text: &str, start: usize, len: usize) -> Result<bool, XmlError> {
    let bytes = text.as_bytes();
    let mut cr = false;
    for at in start..start + len {
        match bytes.get(at) {
            Some(b'\r') => cr = true,
            Some(0xef) if !matches!(bytes.get(at + 1..at + 3), Some([0xbf, 0xbe | 0xbf])) => {}
            Some(&b) if close_attention(b) != 0 => {
                let c = text
                    .get(at..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('\0');
                return Err(XmlError::Syntax(format!(
                    "character U+{:04X} at byte {at} is not allowed in XML",
                    u32::from(c)
                )));
            }
            _ => {}
        }
    }
    Ok(cr)
}

/// Whether `text` holds `]]>`, which character data must not (§2.4).
fn has_cdata_end(text: &[u8]) -> bool {
    memchr_iter(b'>', text).any(|i| i >= 2 && text.get(i - 2..i) == Some(b"]]".as_slice()))
}

/// `\r\n` and lone `\r` become `\n` (§2.11).
fn normalize_line_ends(text: Cow<'_, str>) -> Cow<'_, str> {
    if memchr(b'\r', text.as_bytes()).is_none() {
        return text;
    }
    Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Resolves the entity and character references of `text` (quick-xml checks their syntax
/// and that entities are predefined) and checks that the characters they give are `Char`s.
fn resolve_references(text: Cow<'_, str>) -> Result<Cow<'_, str>, XmlError> {
    if memchr(b'&', text.as_bytes()).is_none() {
        return Ok(text);
    }
    let resolved = unescape(&text).map_err(syntax)?.into_owned();
    check_xml_chars(&resolved).map_err(|_| {
        XmlError::Syntax("a character reference to a character XML does not allow".into())
    })?;
    Ok(Cow::Owned(resolved))
}

/// Whether `name` matches `Name` (§2.3). Names are short: ASCII ones take a fast path.
fn is_name(name: &[u8]) -> bool {
    fn ascii_start(b: u8) -> bool {
        b.is_ascii_alphabetic() || b == b'_' || b == b':'
    }
    match name.split_first() {
        None => false,
        Some((&first, rest)) if name.is_ascii() => {
            ascii_start(first)
                && rest
                    .iter()
                    .all(|&b| ascii_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.')
        }
        Some(_) => std::str::from_utf8(name).is_ok_and(|s| {
            let mut chars = s.chars();
            chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
        }),
    }
}

/// `NameStartChar` (§2.3).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` (§2.3).
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

fn invalid_name(what: &str, name: &[u8]) -> XmlError {
    const SHOWN: usize = 40;
    let shown = String::from_utf8_lossy(name.get(..SHOWN).unwrap_or(name)).into_owned();
    XmlError::Syntax(format!("invalid {what} name {shown:?}"))
}

/// The attributes of a start tag: quick-xml parses them (quotes, `=`, duplicates); names,
/// values and the whitespace between them are checked here (§3.1).
fn check_attributes(tag: &BytesStart<'_>) -> Result<(), XmlError> {
    let raw = tag.attributes_raw();
    if raw.iter().all(|&b| is_space(b)) {
        return Ok(());
    }
    // The one attribute most roots have: a single valid attribute, nothing to look into
    // (compared whole for the protocol's own namespaces, which hold none of `"` `<` `&`).
    if let Some(value) = raw
        .strip_prefix(b" xmlns=\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
        && (value == NS_MESSAGE.as_bytes()
            || value == NS_ERROR.as_bytes()
            || memchr3(b'"', b'<', b'&', value).is_none())
    {
        return Ok(());
    }
    let mut count = 0;
    for attribute in tag.attributes().with_checks(false) {
        let attribute = attribute.map_err(syntax)?;
        count += 1;
        if !is_name(attribute.key.as_ref()) {
            return Err(invalid_name("attribute", attribute.key.as_ref()));
        }
        let value = attribute.value.as_ref();
        if memchr(b'<', value).is_some() {
            return Err(XmlError::Syntax("`<` in an attribute value".into()));
        }
        if memchr(b'&', value).is_some() {
            let value = std::str::from_utf8(value).map_err(syntax)?;
            resolve_references(Cow::Borrowed(value))?;
        }
    }
    if count > 1 {
        // Unique attribute names: quick-xml's check (it allocates, so only where it can fail).
        for attribute in tag.attributes().with_checks(true) {
            attribute.map_err(syntax)?;
        }
    }
    // With valid names, quotes in `raw` only delimit values: after each closing quote comes
    // whitespace or the end of the tag.
    let mut rest = raw;
    while let Some((open, &quote)) = rest
        .iter()
        .enumerate()
        .find(|(_, b)| **b == b'"' || **b == b'\'')
    {
        let after_value = rest
            .get(open + 1..)
            .and_then(|value| memchr(quote, value))
            .map_or(rest.len(), |len| open + 1 + len + 1);
        rest = rest.get(after_value..).unwrap_or_default();
        if rest.first().is_some_and(|&b| !is_space(b)) {
            return Err(XmlError::Syntax(
                "attributes must be separated by whitespace".into(),
            ));
        }
    }
    Ok(())
}

/// A processing instruction's target must be a `Name` other than `xml` in any case (§2.6);
/// quick-xml ends the target at the first whitespace, so target and data are separated.
fn check_pi(pi: &BytesPI<'_>) -> Result<(), XmlError> {
    let target = pi.target();
    if target.eq_ignore_ascii_case(b"xml") {
        return Err(XmlError::Syntax(
            "the processing instruction target `xml` is reserved (an XML declaration must come first)"
                .into(),
        ));
    }
    if !is_name(target) {
        return Err(invalid_name("processing instruction target", target));
    }
    Ok(())
}

/// The XML declaration (§2.8): only at the start of the document, then
/// `S 'version' Eq VersionNum (S 'encoding' Eq EncName)? (S 'standalone' Eq ('yes'|'no'))? S?`
/// with quoted values.
fn check_declaration(decl: &BytesDecl<'_>, at_start: bool) -> Result<(), XmlError> {
    if !at_start {
        return Err(XmlError::Syntax(
            "the XML declaration is only allowed at the start of the document".into(),
        ));
    }
    // quick-xml reports `<?xml` followed by whitespace or `?>` as a declaration; `decl` holds
    // what is between `<?` and `?>`.
    if COMMON_DECLARATIONS.contains(&&**decl) {
        return Ok(());
    }
    let pseudo_attributes = decl.get(3..).unwrap_or_default();
    let encoding = declaration_syntax(pseudo_attributes)
        .map_err(|reason| XmlError::Syntax(format!("invalid XML declaration: {reason}")))?;
    // The document is read as UTF-8 (what every SDK sends and declares). A document that
    // declares another encoding would be read differently by a conforming parser, so it is
    // refused rather than silently read as UTF-8 (XML 1.0 §4.3.3).
    match encoding {
        Some(name) if !name.eq_ignore_ascii_case(b"UTF-8") => Err(XmlError::Syntax(format!(
            "unsupported encoding {:?}: only UTF-8 documents are accepted",
            String::from_utf8_lossy(name)
        ))),
        _ => Ok(()),
    }
}

/// Declarations the SDKs send (between `<?` and `?>`), accepted without parsing them.
const COMMON_DECLARATIONS: [&[u8]; 4] = [
    br#"xml version="1.0" encoding="UTF-8""#,
    br#"xml version="1.0" encoding="utf-8""#,
    br#"xml version="1.0" encoding="UTF-8" standalone="no""#,
    br#"xml version="1.0""#,
];

/// Checks the pseudo-attributes of an XML declaration (§2.8); returns the declared encoding.
fn declaration_syntax(mut rest: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    const NAMES: [&[u8]; 3] = [b"version", b"encoding", b"standalone"];
    // Index in `NAMES` of the first pseudo-attribute still allowed.
    let mut next = 0;
    let mut encoding = None;
    loop {
        let after_space = trim_space(rest);
        if after_space.is_empty() {
            break;
        }
        if after_space.len() == rest.len() {
            return Err("whitespace must precede each pseudo-attribute");
        }
        let name_len = after_space
            .iter()
            .position(|&b| b == b'=' || is_space(b))
            .unwrap_or(after_space.len());
        let (name, tail) = after_space.split_at(name_len);
        let index = NAMES
            .iter()
            .position(|n| *n == name)
            .filter(|&i| if next == 0 { i == 0 } else { i >= next })
            .ok_or("expected version, then encoding, then standalone")?;
        next = index + 1;
        let tail = trim_space(tail).strip_prefix(b"=").ok_or("expected `=`")?;
        let (quote, tail) = match trim_space(tail).split_first() {
            Some((&q, tail)) if q == b'"' || q == b'\'' => (q, tail),
            _ => return Err("values must be quoted"),
        };
        let end = memchr(quote, tail).ok_or("unterminated value")?;
        let (value, tail) = tail.split_at(end);
        let valid = match index {
            0 => value
                .strip_prefix(b"1.")
                .is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit)),
            1 => value.split_first().is_some_and(|(first, rest)| {
                first.is_ascii_alphabetic()
                    && rest
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            }),
            _ => value == b"yes" || value == b"no",
        };
        if !valid {
            return Err(match index {
                0 => "the version must be 1.x",
                1 => "invalid encoding name",
                _ => "standalone must be yes or no",
            });
        }
        if index == 1 {
            encoding = Some(value);
        }
        rest = tail.get(1..).unwrap_or_default();
    }
    if next == 0 {
        return Err("the version is missing");
    }
    Ok(encoding)
}

fn trim_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// Whether `c` may appear in an XML 1.0 document (XML 1.0 §2.2 `Char`): what a message body
/// may hold. The reader and writer implement the same definition byte-wise.
///
/// ```
/// assert!(mq_proto::is_xml_char('é'));
/// assert!(!mq_proto::is_xml_char('\u{1}'));
/// ```
pub fn is_xml_char(c: char) -> bool {
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

/// Whether no byte of `bytes` is in [`ESCAPE_ATTENTION`]: the text goes into an element as
/// it is. The same predicate as the table, written as comparisons over 32-byte blocks so the
/// compiler vectorises it (the table scan below handles one byte per step; most bodies have
/// nothing to escape).
fn is_plain_text(bytes: &[u8]) -> bool {
    fn attention(b: u8) -> bool {
        (b < 0x20) & (b != b'\t') & (b != b'\n')
            | (b == b'&')
            | (b == b'<')
            | (b == b'>')
            | (b == 0xef)
    }
    const BLOCK: usize = 32;
    fn any_attention(block: &[u8; BLOCK]) -> bool {
        block.iter().fold(false, |any, &b| any | attention(b))
    }
    let mut blocks = bytes.chunks_exact(BLOCK);
    for block in &mut blocks {
        if <&[u8; BLOCK]>::try_from(block).is_ok_and(any_attention) {
            return false;
        }
    }
    // The last partial block (all of an id, handle, MD5 or tag), padded with plain bytes to
    // a whole one: one vectorised fold rather than a byte-by-byte loop.
    let rest = blocks.remainder();
    let mut padded = [b' '; BLOCK];
    if let Some(head) = padded.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    !any_attention(&padded)
}

/// Whether [`escape_into`] writes `text` unchanged: no `&`, `<`, `>` or CR, and only
/// characters XML allows. [`is_plain_text`] first (one vectorised pass), then, for text it
/// refuses (a `0xEF` lead byte: U+F000–U+FFFF, common full-width forms among them), the
/// exact test.
pub(crate) fn escapes_to_itself(text: &str) -> bool {
    is_plain_text(text.as_bytes())
        || (memchr3(b'&', b'<', b'>', text.as_bytes()).is_none()
            && check_xml_chars(text) == Ok(false))
}

/// Appends `s` escaped for element text: `&` `<` `>` become entities, `\r` becomes `&#13;`
/// (so it survives line-end normalisation), and characters XML cannot carry become U+FFFD.
///
/// Scans bytes against a table and copies plain runs in one piece: every character that
/// needs attention starts with a byte of [`ESCAPE_ATTENTION`].
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if is_plain_text(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
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
        out.extend_from_slice(bytes.get(last..i).unwrap_or_default());
        out.extend_from_slice(rep.as_bytes());
        last = i + len;
        from = last;
    }
    out.extend_from_slice(bytes.get(last..).unwrap_or_default());
}

/// Builds one compact XML document: UTF-8 bytes (every piece written is a `&str`, or
/// plain ASCII: [`TextView`]).
pub(crate) struct XmlWriter {
    buf: Vec<u8>,
}

impl XmlWriter {
    /// A writer whose buffer holds `capacity` bytes plus the declaration up front.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(DECLARATION.len() + capacity);
        buf.extend_from_slice(DECLARATION.as_bytes());
        Self { buf }
    }

    /// Opens the root element with a default namespace.
    pub(crate) fn open_root(&mut self, name: &str, namespace: &str) {
        for piece in ["<", name, " xmlns=\"", namespace, "\">"] {
            self.markup(piece);
        }
    }

    /// Opens an element.
    pub(crate) fn open(&mut self, name: &str) {
        for piece in ["<", name, ">"] {
            self.markup(piece);
        }
    }

    /// Closes an element.
    pub(crate) fn close(&mut self, name: &str) {
        for piece in ["</", name, ">"] {
            self.markup(piece);
        }
    }

    /// Writes markup as it is (tags the caller spells out: one push for the text between
    /// two values rather than three per tag).
    pub(crate) fn markup(&mut self, markup: &str) {
        self.buf.extend_from_slice(markup.as_bytes());
    }

    /// Writes `text` escaped for element content.
    pub(crate) fn escaped(&mut self, text: &str) {
        escape_into(&mut self.buf, text);
    }

    /// Writes a field's text: plain bytes as they are, any other text escaped.
    pub(crate) fn field(&mut self, text: TextView<'_>) {
        match text.repr() {
            TextRepr::Plain(plain) => self.buf.extend_from_slice(plain),
            TextRepr::Text(text) => escape_into(&mut self.buf, text),
        }
    }

    /// Writes a body: a verbatim one as it is, any other escaped.
    pub(crate) fn body(&mut self, body: BodyView<'_>) {
        if body.is_verbatim() {
            self.markup(body.as_str());
        } else {
            escape_into(&mut self.buf, body.as_str());
        }
    }

    /// Writes the decimal digits of `n`, copied from `last` when `n` is the number last
    /// written through it (then formatted once for a run of equal numbers).
    pub(crate) fn repeated_digits(&mut self, n: u64, last: &mut LastDigits) {
        if last.value != Some(n) {
            let mut formatted = itoa::Buffer::new();
            let digits = formatted.format(n).as_bytes();
            last.len = digits.len();
            last.digits[..last.len].copy_from_slice(digits);
            last.value = Some(n);
        }
        self.buf.extend_from_slice(&last.digits[..last.len]);
    }

    /// Writes `<name>escaped text</name>` (never self-closing).
    pub(crate) fn text(&mut self, name: &str, text: &str) {
        self.open(name);
        self.escaped(text);
        self.close(name);
    }

    /// The finished document.
    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.buf)
    }
}

/// The decimal digits of the number last written through
/// [`XmlWriter::repeated_digits`]: for a field whose value often repeats from one element to
/// the next (a consume response's times: one delivery's `NextConsumeTime` and
/// `FirstConsumeTime` are its messages' all, and a burst's messages share a `PublishTime`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LastDigits {
    /// The number; `None` before the first.
    value: Option<u64>,
    /// Its digits (a `u64` has at most 20).
    digits: [u8; 20],
    /// How many of `digits` are its.
    len: usize,
}

/// Rough upper bound of the escaped size of `s` for buffer pre-sizing (exact for text without
/// special characters).
pub(crate) fn text_capacity(s: &str) -> usize {
    s.len() + s.len() / 8
}

/// [`text_capacity`] of a body: its length when it is written verbatim.
pub(crate) fn body_capacity(body: BodyView<'_>) -> usize {
    if body.is_verbatim() {
        body.as_str().len()
    } else {
        text_capacity(body.as_str())
    }
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

    #[test]
    fn normalises_line_ends_but_not_character_references() {
        let doc = "<a><b>x\r\ny\rz<![CDATA[\r\n]]>&#13;\n&#xD;&#10;</b></a>";
        assert_eq!(
            texts(doc),
            Ok(vec![(Elem::Other, "x\ny\nz\n\r\n\r\n".into())])
        );
        // No CR: the text is borrowed from the input.
        let mut r = XmlReader::new(b"<a>plain text</a>");
        r.root().unwrap();
        assert!(matches!(r.read_text(), Ok(Cow::Borrowed("plain text"))));
    }

    #[test]
    fn errors_are_sticky() {
        let mut r = XmlReader::new(b"<a><b></c><d/></a>");
        assert_eq!(r.root(), Ok(Elem::Other));
        assert_eq!(r.next(), Ok(XmlEvent::Start(Elem::Other)));
        let first = r.next().unwrap_err();
        assert!(matches!(first, XmlError::Syntax(_)), "{first:?}");
        assert_eq!(r.next(), Err(first.clone()));
        assert_eq!(r.finish(), Err(first));
        // Characters are checked up front, reported by the first read.
        let mut r = XmlReader::new(b"<a>\x01</a>");
        assert!(matches!(r.root(), Err(XmlError::Syntax(_))));
    }

    #[test]
    fn only_one_byte_order_mark() {
        assert!(texts("\u{feff}<a><b>x</b></a>").is_ok());
        assert_eq!(texts("\u{feff}\u{feff}<a/>"), Err(XmlError::OutsideRoot));
        assert_eq!(texts(" \u{feff}<a/>"), Err(XmlError::OutsideRoot));
    }

    #[test]
    fn element_names_match_their_wire_names() {
        use Elem::Other;
        // Every element of the protocol by its wire name.
        let names = "Messages Message MessageId ReceiptHandles ReceiptHandle MessageBodyMD5 \
            MessageBody PublishTime NextConsumeTime FirstConsumeTime ConsumedTimes MessageTag \
            Properties Errors Error Code RequestId HostId ErrorCode ErrorMessage";
        let all: Vec<Elem> = names
            .split_whitespace()
            .map(|n| Elem::from_local(n.as_bytes()))
            .collect();
        let distinct: std::collections::HashSet<&str> = all.iter().map(|e| e.as_str()).collect();
        assert_eq!(distinct.len(), 20);
        assert!(!all.contains(&Other));
        // The definition: the element whose wire name is `name`, else `Other`.
        let reference = |name: &[u8]| {
            (all.iter().copied())
                .find(|e| e.as_str().as_bytes() == name)
                .unwrap_or(Other)
        };
        for &elem in &all {
            let name = elem.as_str().as_bytes();
            assert_eq!(Elem::from_local(name), elem);
            // Same length, one byte off; one byte shorter or longer; another case.
            let mut off = name.to_vec();
            if let Some(last) = off.last_mut() {
                *last ^= 0x20;
            }
            let longer = [name, b"s"].concat();
            let lower = name.to_ascii_lowercase();
            for other in [&off[..], &name[..name.len() - 1], &longer, &lower] {
                assert_eq!(Elem::from_local(other), reference(other), "{other:?}");
            }
        }
        assert_eq!(Elem::from_local(b""), Other);
        assert_eq!(Elem::from_local(b"MessageBodyMD5x"), Other);
        assert_eq!(Elem::from_local(b"Message"), Elem::Message);
    }

    #[test]
    fn names() {
        for ok in [
            "a",
            "_",
            ":",
            "a:b",
            "A-1.b_c",
            "x\u{b7}",
            "\u{c0}",
            "中文",
            "\u{10000}x",
        ] {
            assert!(is_name(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            ".a",
            "\u{b7}",
            "a b",
            "a\"",
            "a/",
            "a=",
            "\u{d7}",
            "a\u{3000}",
        ] {
            assert!(!is_name(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn declaration_grammar() {
        for ok in [
            r#" version="1.0""#,
            r#" version='1.0'"#,
            r#" version="1.1" "#,
            r#" version = "1.10" encoding='utf-8'"#,
            r#" version="1.0" standalone="yes""#,
            "\tversion=\"1.0\"\nencoding=\"ISO-8859-1\"\rstandalone='no'\t",
            r#" version="1.0" encoding="a._-1""#,
        ] {
            assert!(declaration_syntax(ok.as_bytes()).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            " ",
            r#" encoding="UTF-8""#,
            r#" version="1.0" version="1.0""#,
            r#" version="1.0" standalone="no" encoding="UTF-8""#,
            r#" version="2.0""#,
            r#" version="1.""#,
            r#" version="1.0a""#,
            r#" version=1.0"#,
            r#" version="1.0'"#,
            r#" version="1.0"encoding="UTF-8""#,
            r#" version"1.0""#,
            r#" version="1.0" encoding="""#,
            r#" version="1.0" encoding="8bit""#,
            r#" version="1.0" encoding="UTF 8""#,
            r#" version="1.0" standalone="maybe""#,
            r#" version="1.0" standalone="YES""#,
            r#" version="1.0" foo="bar""#,
            r#" Version="1.0""#,
        ] {
            assert!(declaration_syntax(bad.as_bytes()).is_err(), "{bad:?}");
        }
        for common in COMMON_DECLARATIONS {
            assert!(declaration_syntax(common.get(3..).unwrap()).is_ok());
        }
    }

    /// What `check_chars` must find, character by character.
    fn chars_reference(bytes: &[u8]) -> Option<Found> {
        let text = std::str::from_utf8(bytes).ok()?;
        text.chars().all(is_xml_char).then(|| Found {
            cr: text.contains('\r'),
            amp: text.contains('&'),
            cdata_end: text.contains("]]>"),
        })
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn check_chars_matches_the_char_definition(
            pieces in proptest::collection::vec(proptest::prop_oneof![
                "[a-z<>/ ]{0,40}",
                "[\\x00-\\x20\\t\\n\\r&\\]>]",
                proptest::sample::select(vec![
                    "\u{fffe}", "\u{ffff}", "\u{fffd}", "\u{feff}", "\u{ff0c}", "\u{efff}",
                    "\u{10ffff}", "\u{1f600}", "中", "]]>", "]]", "\r\n", "\u{7f}", "\u{85}",
                ]).prop_map(str::to_owned),
            ], 0..24),
            cut in proptest::option::of(0usize..400),
        ) {
            let mut bytes = pieces.concat().into_bytes();
            // Cutting may split a character: invalid UTF-8 must be refused too.
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            let got = check_chars(&bytes).map(|(_, found)| found).ok();
            proptest::prop_assert_eq!(got, chars_reference(&bytes));
        }
    }

    /// Every text of `doc`'s root's children, read the way the decoders read before text was
    /// shared ([`XmlReader::read_text`] over the bytes) and the way they read now
    /// ([`XmlReader::read_shared`] over a [`Document`]), with whether each shared text lies in
    /// the document's buffer.
    #[allow(clippy::type_complexity)]
    fn both_ways(
        doc: &Bytes,
    ) -> (
        Result<Vec<Cow<'_, str>>, XmlError>,
        Result<Vec<(ByteString, bool)>, XmlError>,
    ) {
        fn each<'a, T>(
            mut r: XmlReader<'a>,
            mut read: impl FnMut(&mut XmlReader<'a>) -> Result<T, XmlError>,
        ) -> Result<Vec<T>, XmlError> {
            let mut out = Vec::new();
            r.root()?;
            r.children(|r, _| {
                out.push(read(r)?);
                Ok::<(), XmlError>(())
            })?;
            r.finish()?;
            Ok(out)
        }
        let old = each(XmlReader::new(doc), XmlReader::read_text);
        let shared = Document::new(doc);
        let new = each(shared.reader(), |r| {
            let text = r.read_shared()?;
            let (start, at) = (doc.as_ptr() as usize, text.as_ptr() as usize);
            let inside = text.is_empty() || (at >= start && at + text.len() <= start + doc.len());
            Ok((text, inside))
        });
        (old, new)
    }

    proptest::proptest! {
        /// Shared reading gives exactly the text (or the error) the owned reading gave, on
        /// documents mixing plain text, entity and character references (valid and not), CRs,
        /// CDATA sections, comments and nested elements; text that is one plain piece of the
        /// document is a slice of its buffer, not a copy.
        #[test]
        fn shared_text_equals_owned_text(
            children in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![
                    "[a-z \u{e9}\u{4e2d}]{1,12}",
                    proptest::sample::select(vec![
                        "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#65;", "&#x4E2D;",
                        "&#13;", "\r\n", "\r", "<![CDATA[<&]]>", "<![CDATA[]]>",
                        "<!--c-->", "<x>skipped</x>", "&bogus;", "&#1;", "&", "]]>", "\u{1}",
                    ]).prop_map(str::to_owned),
                ], 0..6),
                1..5,
            ),
        ) {
            let mut doc = String::from("<r>");
            for pieces in &children {
                doc.push_str("<b>");
                doc.push_str(&pieces.concat());
                doc.push_str("</b>");
            }
            doc.push_str("</r>");
            let doc = Bytes::from(doc);
            let (old, new) = both_ways(&doc);
            match (old, new) {
                (Ok(old), Ok(new)) => {
                    proptest::prop_assert_eq!(old.len(), new.len());
                    for (old, (new, inside)) in old.iter().zip(&new) {
                        proptest::prop_assert_eq!(&**old, &**new);
                        if matches!(old, Cow::Borrowed(_)) {
                            proptest::prop_assert!(inside, "{:?} was copied", old);
                        }
                    }
                }
                (Err(old), Err(new)) => proptest::prop_assert_eq!(old, new),
                (old, new) => proptest::prop_assert!(false, "{:?} vs {:?}", old, new),
            }
        }
    }

    proptest::proptest! {
        /// A text read as verbatim, written into an element as it is, reads back as the
        /// same text (the promise [`MessageBody`](crate::MessageBody) makes to the encoder);
        /// on documents mixing plain text, `>`, `]]`, references, CRs, CDATA sections,
        /// comments and nested elements.
        #[test]
        fn verbatim_text_is_its_own_element_content(
            pieces in proptest::collection::vec(proptest::prop_oneof![
                "[a-z >\\]\t\n\u{e9}\u{4e2d}\u{ff0c}]{1,12}",
                proptest::sample::select(vec![
                    "&amp;", "&lt;", "&gt;", "&#13;", "\r\n", "\r", "<![CDATA[<&]]>",
                    "<![CDATA[]]>", "<![CDATA[x]]>", "<!--c-->", "<x>skipped</x>", "]]>",
                ]).prop_map(str::to_owned),
            ], 0..5),
        ) {
            let doc = format!("<r><b>{}</b></r>", pieces.concat());
            if let Ok((text, true)) = read_marked(&doc) {
                proptest::prop_assert_eq!(&escaped(&text), &text, "{:?}", doc);
                let again = format!("<r><b>{text}</b></r>");
                proptest::prop_assert_eq!(read_marked(&again), Ok((text.clone(), true)), "{:?}", doc);
            }
        }
    }

    /// The text of the first child of `doc`'s root, and whether it is verbatim.
    fn read_marked(doc: &str) -> Result<(String, bool), XmlError> {
        let mut r = XmlReader::new(doc.as_bytes());
        r.root()?;
        r.next()?;
        let text = r.read_text()?;
        let verbatim = r.is_verbatim(&text);
        Ok((text.into_owned(), verbatim))
    }

    #[test]
    fn one_plain_piece_is_verbatim_and_others_are_not() {
        let read = read_marked;
        assert_eq!(read("<r><b>a = b</b></r>"), Ok(("a = b".into(), true)));
        assert_eq!(
            read("<r><b>\u{4e2d}\u{ff0c}\t\n</b></r>"),
            Ok(("\u{4e2d}\u{ff0c}\t\n".into(), true))
        );
        for doc in [
            "<r><b>a > b</b></r>",
            "<r><b>a &amp; b</b></r>",
            "<r><b>a\r\nb</b></r>",
            "<r><b><![CDATA[a]]></b></r>",
            "<r><b>a<!--c-->b</b></r>",
            "<r><b>a<x/>b</b></r>",
            "<r><b></b></r>",
        ] {
            assert!(!read(doc).expect(doc).1, "{doc}");
        }
    }

    /// `s` as [`escape_into`] writes it.
    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, s);
        String::from_utf8(out).expect("escape_into writes UTF-8")
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
        /// `escapes_to_itself` is "escaping changes nothing".
        #[test]
        fn escapes_to_itself_is_escape_without_change(s in "(?s:.{0,40})|[\t\n\r &<>a-z\u{ef}\u{f000}\u{ff0c}\u{fffd}\u{fffe}\u{ffff}\u{1}]{0,40}") {
            proptest::prop_assert_eq!(escapes_to_itself(&s), escaped(&s) == s);
        }

        #[test]
        fn escape_matches_the_char_definition(s in "(?s:.{0,64})|[\\x00-\\x20&<>\u{fffd}-\u{ffff}\u{e000}a-z中]{0,64}") {
            proptest::prop_assert_eq!(escaped(&s), escape_reference(&s));
        }

        /// The vectorised fast path agrees with the table on every byte, in blocks of 32
        /// and in the remainder (one special byte placed anywhere in plain text).
        #[test]
        fn plain_text_check_matches_the_table(len in 0usize..100, at in 0usize..100, b in 0u8..=255) {
            let mut bytes = vec![b'a'; len];
            if let Some(slot) = bytes.get_mut(at) {
                *slot = b;
            }
            let expected = !bytes.iter().any(|&b| ESCAPE_ATTENTION[usize::from(b)]);
            proptest::prop_assert_eq!(is_plain_text(&bytes), expected);
        }
    }

    #[test]
    fn escapes_specials_and_unrepresentable_chars() {
        let s = escaped("a&b<c>d\re\u{1}f\"'\u{ffff}中");
        assert_eq!(s, "a&amp;b&lt;c&gt;d&#13;e\u{fffd}f\"'\u{fffd}中");
    }
}
