//! What the commands print: one tab-separated line per receipt, a two-part block per message
//! (metadata line, then the body indented), or one JSON object per line with `--json`.

use crate::args::format_rfc3339_ms;
use mq_tokio::{Message, PublishReceipt};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Text from a message (a body, in a table cell) made safe to print on a terminal: line
/// breaks, tabs, other control characters (C0, DEL, C1 such as U+0085 NEL), Unicode line
/// and paragraph separators, and invisible format characters — bidirectional controls
/// (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C), zero-width characters,
/// U+FEFF — are shown escaped (`\n`, `\r`, `\t`, `\u{85}`, `\u{202e}`), so they can
/// neither break the table nor reorder or hide what is printed; everything else as is
/// (borrowed: text with nothing to escape is not copied).
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    escape_unsafe(text, Tabs::Escape)
}

/// [`printable`] for one line of a message body printed on its own line (`mq consume`): the
/// same escapes, except that a tab is printed as is (it can neither break a line nor hide
/// text, and tab-separated bodies stay as they were sent).
pub(crate) fn printable_line(text: &str) -> Cow<'_, str> {
    escape_unsafe(text, Tabs::Keep)
}

/// Whether [`escape_unsafe`] escapes tabs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tabs {
    Escape,
    Keep,
}

/// The one escaping behind [`printable`] and [`printable_line`].
fn escape_unsafe(text: &str, tabs: Tabs) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| (c.is_control() && !(c == '\t' && tabs == Tabs::Keep)) || is_invisible_format(c);
    let Some(first) = text.find(unsafe_char) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' if tabs == Tabs::Escape => out.push_str("\\t"),
            c if unsafe_char(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Unicode line and paragraph separators and the format characters (category Cf) that
/// change how text around them is shown without being seen: bidirectional controls,
/// zero-width characters, invisible operators, the soft hyphen, the BOM, annotation
/// controls.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// How a [`Table`] column's cells line up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table printed with each column as wide as its widest cell, header included (names
/// longer than a fixed width, such as instance-qualified topics, kept the columns after
/// them out of line), two spaces between columns, the last column unpadded.
pub(crate) struct Table {
    columns: Vec<Align>,
    lines: Vec<Line>,
}

enum Line {
    Row(Vec<String>),
    /// Printed as is, after the first column's width when `indented`.
    Text {
        indented: bool,
        text: String,
    },
}

impl Table {
    /// A table with these headers and alignments.
    pub(crate) fn new(header: &[(&str, Align)]) -> Self {
        Self {
            columns: header.iter().map(|(_, a)| *a).collect(),
            lines: vec![Line::Row(
                header.iter().map(|(h, _)| (*h).to_owned()).collect(),
            )],
        }
    }

    /// A row: one cell per column, from the first (a row may end before the last column).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.lines.push(Line::Row(cells));
    }

    /// A line between rows, after the first column's width when `indented`.
    pub(crate) fn text(&mut self, indented: bool, text: String) {
        self.lines.push(Line::Text { indented, text });
    }

    /// Writes the table.
    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths = vec![0; self.columns.len()];
        for line in &self.lines {
            if let Line::Row(cells) = line {
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        for line in &self.lines {
            let mut text = String::new();
            match line {
                Line::Row(cells) => {
                    // A row ends with its last cell: no padding after it.
                    let count = cells.len().min(self.columns.len());
                    for (i, ((align, width), cell)) in
                        self.columns.iter().zip(&widths).zip(cells).enumerate()
                    {
                        let last = i + 1 == count;
                        if i > 0 {
                            text.push_str("  ");
                        }
                        match align {
                            Align::Left if last => text.push_str(cell),
                            Align::Left => text.push_str(&format!("{cell:<width$}")),
                            Align::Right => text.push_str(&format!("{cell:>width$}")),
                        }
                    }
                }
                Line::Text { indented, text: t } => {
                    if *indented {
                        text.push_str(&" ".repeat(widths.first().map_or(0, |w| w + 2)));
                    }
                    text.push_str(t);
                }
            }
            writeln!(out, "{text}")?;
        }
        Ok(())
    }
}

/// A publish receipt as printed with `--json`.
#[derive(Serialize)]
struct ReceiptJson<'a> {
    message_id: &'a str,
    body_md5: &'a str,
    receipt_handle: Option<&'a str>,
}

/// `ID<TAB>MD5[<TAB>HANDLE]`, or a JSON line.
pub(crate) fn receipt(out: &mut impl Write, r: &PublishReceipt, json: bool) -> io::Result<()> {
    let handle = r.receipt_handle.as_ref().map(|h| h.as_str());
    if json {
        let doc = ReceiptJson {
            message_id: r.message_id.as_str(),
            body_md5: &r.body_md5,
            receipt_handle: handle,
        };
        serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
        writeln!(out)
    } else {
        match handle {
            Some(h) => writeln!(out, "{}\t{}\t{h}", r.message_id, r.body_md5),
            None => writeln!(out, "{}\t{}", r.message_id, r.body_md5),
        }
    }
}

/// A received message as printed with `--json`.
#[derive(Serialize)]
struct MessageJson<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    body_md5: &'a str,
    tag: Option<&'a str>,
    key: Option<&'a str>,
    properties: BTreeMap<&'a str, &'a str>,
    publish_time: u64,
    first_consume_time: u64,
    next_consume_time: u64,
    consumed_times: u32,
    acked: bool,
}

/// Prints a message. Plain form:
///
/// ```text
/// 1E05791C117818B4AAC23B1BB0CE0000 tag=TagA key=k1 consumed=1 published=2026-…Z handle=…
///   body line 1
///   body line 2
/// ```
///
/// The body is cut into lines at `\n` (and `\r\n`); what else in it is not safe on a
/// terminal (control characters, a lone `\r`, bidirectional and other invisible characters)
/// is escaped by [`printable_line`], and so are the tag, key and properties; a body
/// with none of those is printed byte for byte. `--json` prints the body as sent (JSON
/// escapes only its C0 control characters).
pub(crate) fn message(
    out: &mut impl Write,
    m: &Message,
    acked: bool,
    json: bool,
) -> io::Result<()> {
    if json {
        let doc = MessageJson {
            message_id: m.message_id.as_str(),
            receipt_handle: m.receipt_handle.as_str(),
            body: &m.body,
            body_md5: &m.body_md5,
            tag: m.tag.as_ref().map(|t| t.as_str()),
            key: m.key(),
            properties: m.properties.iter().collect(),
            publish_time: m.publish_time,
            first_consume_time: m.first_consume_time,
            next_consume_time: m.next_consume_time,
            consumed_times: m.consumed_times,
            acked,
        };
        serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
        return writeln!(out);
    }
    write!(out, "{}", m.message_id)?;
    if let Some(tag) = &m.tag {
        write!(out, " tag={}", printable(tag.as_str()))?;
    }
    if let Some(key) = m.key() {
        write!(out, " key={}", printable(key))?;
    }
    for (k, v) in m.properties.iter() {
        if !k.starts_with("__") && k != mq_tokio::mq_proto::KEY_KEYS {
            write!(out, " {}={}", printable(k), printable(v))?;
        }
    }
    write!(
        out,
        " consumed={} published={}",
        m.consumed_times,
        format_rfc3339_ms(m.publish_time)
    )?;
    if !acked {
        write!(out, " handle={}", m.receipt_handle)?;
    }
    writeln!(out)?;
    for line in m.body.lines() {
        writeln!(out, "  {}", printable_line(line))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mq_tokio::{MessageId, Properties, ReceiptHandle, Tag};

    fn sample() -> Message {
        Message {
            message_id: MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010").unwrap(),
            receipt_handle: ReceiptHandle::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx").unwrap(),
            body_md5: mq_tokio::mq_proto::body_md5("a\nb").into(),
            body: "a\nb".into(),
            publish_time: 1_796_119_200_000,
            next_consume_time: 1_796_119_500_000,
            first_consume_time: 1_796_119_201_000,
            consumed_times: 1,
            tag: Some(Tag::new("TagA").unwrap()),
            properties: Properties::decode("KEYS:k1|color:red|").unwrap(),
        }
    }

    #[test]
    fn plain_and_json_messages() {
        let m = sample();
        let mut out = Vec::new();
        message(&mut out, &m, false, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "0BC1EF3E1A9C18B4AAC2558D1E4F0010 tag=TagA key=k1 color=red consumed=1 \
             published=2026-12-01T10:00:00.000Z handle=0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx\n  a\n  b\n"
        );
        let mut out = Vec::new();
        message(&mut out, &m, true, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["body"], "a\nb");
        assert_eq!(v["key"], "k1");
        assert_eq!(v["properties"]["color"], "red");
        assert_eq!(v["acked"], true);
        assert_eq!(v["publish_time"], 1_796_119_200_000u64);
    }

    #[test]
    fn printable_escapes_what_would_break_or_disguise_a_table_row() {
        assert_eq!(
            printable("plain {\"json\": 1} é 中文"),
            "plain {\"json\": 1} é 中文"
        );
        assert_eq!(printable("a\nb\r\tc"), "a\\nb\\r\\tc");
        // NEL (a C1 line break), RLO (reverses what follows), an isolate, a zero-width
        // space, ESC (terminal sequences), the line separator.
        assert_eq!(
            printable("x\u{85}y\u{202e}cba\u{2067}\u{200b}\u{1b}[31m\u{2028}"),
            "x\\u{85}y\\u{202e}cba\\u{2067}\\u{200b}\\u{1b}[31m\\u{2028}"
        );
        // Combining marks stay: they are text.
        assert_eq!(printable("e\u{301}"), "e\u{301}");
    }

    #[test]
    fn consumed_bodies_escape_what_is_unsafe_and_keep_plain_text_as_is() {
        let mut m = sample();
        m.body = "tab\tseparated é 中文\r\nline two\r\n".into();
        m.properties = mq_tokio::Properties::decode("KEYS:k\u{202e}1|color:re\u{200b}d|").unwrap();
        let mut out = Vec::new();
        message(&mut out, &m, true, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (meta, body) = text.split_once('\n').unwrap();
        assert!(
            meta.contains(r" key=k\u{202e}1 color=re\u{200b}d "),
            "{meta}"
        );
        // Plain text (a tab, CRLF line ends) prints as before: byte for byte.
        assert_eq!(body, "  tab\tseparated é 中文\n  line two\n");

        m.body = "ok\u{9b}2J\u{202e}txt.exe\rover\u{85}".into();
        let mut out = Vec::new();
        message(&mut out, &m, true, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\n  ok\\u{9b}2J\\u{202e}txt.exe\\rover\\u{85}\n"),
            "{text:?}"
        );
        // JSON keeps the body as sent.
        let mut out = Vec::new();
        message(&mut out, &m, true, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["body"], "ok\u{9b}2J\u{202e}txt.exe\rover\u{85}");
    }

    #[test]
    fn receipts() {
        let r = PublishReceipt {
            message_id: MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010").unwrap(),
            body_md5: "X".into(),
            receipt_handle: None,
        };
        let mut out = Vec::new();
        receipt(&mut out, &r, false).unwrap();
        assert_eq!(out, b"0BC1EF3E1A9C18B4AAC2558D1E4F0010\tX\n");
        let mut out = Vec::new();
        receipt(&mut out, &r, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["receipt_handle"].is_null());
    }
}
