//! Showing responses: the code line first, then the payload rendered by its Content-Format
//! (JSON pretty-printed, CBOR in diagnostic notation, link format one link per line, text as
//! text, binary as a hex dump), or one JSON object per response with `--json`.
//!
//! Where things go: the payload goes to stdout (or `-o FILE`); the code line, and with `-v`
//! the options and timing, go to stdout when it is a terminal and to stderr when it is not,
//! so that `coapio get URI | jq .` or `> file` gets exactly the payload. Rendering happens on
//! a terminal (or with `--pretty`); a pipe gets the payload's bytes as they came (or with
//! `--raw` always). Discovery is the exception: each answer's server and code line go to
//! stdout, followed by its payload rendered and indented (unless `--raw`).

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use coapio::message::{Code, ContentFormat, OptionNumber};

use crate::client::Reply;
use crate::options::{json_value, show_value};

/// How responses are shown.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) verbose: bool,
    /// Render payloads (a terminal, or `--pretty`), or write their bytes.
    pub(crate) render: bool,
    /// Whether stdout is a terminal (where the code line goes, and colours).
    pub(crate) tty: bool,
    /// `-o FILE`: the payload of a success goes there.
    pub(crate) file: Option<PathBuf>,
    /// Label responses with their server (discovery).
    pub(crate) label_source: bool,
    /// End each payload with a newline also when its bytes are written as they came, so
    /// that the responses of an observation or a discovery stay apart in a pipe.
    pub(crate) separate: bool,
}

impl Output {
    pub(crate) fn new(json: bool, verbose: bool, raw: bool, pretty: bool) -> Self {
        let tty = io::stdout().is_terminal();
        Self {
            json,
            verbose,
            render: !raw && (pretty || tty),
            tty,
            file: None,
            label_source: false,
            separate: false,
        }
    }

    /// Shows one response.
    ///
    /// # Errors
    ///
    /// Writing to stdout, stderr or the output file.
    pub(crate) fn show(&self, reply: &Reply) -> io::Result<()> {
        if self.json {
            let mut out = io::stdout().lock();
            serde_json::to_writer(&mut out, &json_object(reply))?;
            writeln!(out)?;
            return out.flush();
        }
        let mut head = String::new();
        if self.label_source {
            if let Some(s) = reply.source {
                head.push_str(&format!("{s} "));
            }
        }
        head.push_str(&self.code(reply.code));
        if self.verbose {
            head.push_str(&format!(
                "  ({} ms",
                (reply.elapsed.as_secs_f64() * 1e4).round() / 10.0
            ));
            if let Some(s) = reply.source.filter(|_| !self.label_source) {
                head.push_str(&format!(", from {s}"));
            }
            head.push_str(&format!(", {} bytes)", reply.payload.len()));
            for (n, v) in reply.options.iter() {
                head.push_str(&format!("\n  {n}: {}", show_value(n, v)));
            }
        }
        head.push('\n');
        // A discovery's answers are told apart by their servers: the labels stay with the
        // payloads on stdout.
        if self.tty || self.label_source {
            let mut out = io::stdout().lock();
            out.write_all(head.as_bytes())?;
            out.flush()?;
        } else {
            let mut err = io::stderr().lock();
            err.write_all(head.as_bytes())?;
        }
        // Only a success's payload replaces the file (an error's diagnostic goes to stdout),
        // and through a temporary file in the same directory, renamed over it.
        if let Some(path) = self.file.as_ref().filter(|_| reply.code.is_success()) {
            return write_file(path, &reply.payload)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())));
        }
        let mut out = io::stdout().lock();
        if reply.payload.is_empty() {
            return out.flush();
        }
        if self.render {
            let text = render(reply.content_format(), &reply.payload, self.tty);
            let indent = if self.label_source { "  " } else { "" };
            for line in text.lines() {
                writeln!(out, "{indent}{line}")?;
            }
        } else {
            out.write_all(&reply.payload)?;
            if self.separate && !reply.payload.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
        out.flush()
    }

    /// The code line: `2.05 Content`, coloured on a terminal (green for success, red for
    /// errors) unless `NO_COLOR` is set.
    fn code(&self, code: Code) -> String {
        let text = code.to_string();
        if !self.tty || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return text;
        }
        let colour = if code.is_success() { "32" } else { "31" };
        format!("\x1b[1;{colour}m{text}\x1b[0m")
    }

    /// Says `message` as [`Self::failure`] does, and returns `status`.
    pub(crate) fn fail(&self, status: u8, message: &str) -> std::process::ExitCode {
        self.failure(message);
        std::process::ExitCode::from(status)
    }

    /// Says that a request failed, on stderr (and on stdout as `{"error": …}` with
    /// `--json`).
    pub(crate) fn failure(&self, message: &str) {
        if self.json {
            let object = serde_json::json!({ "error": message });
            let _ = writeln!(io::stdout(), "{object}");
        }
        let _ = writeln!(io::stderr(), "coapio: {message}");
    }
}

impl Reply {
    /// The Content-Format option, if it is one.
    pub(crate) fn content_format(&self) -> Option<ContentFormat> {
        self.options
            .get_uint(OptionNumber::CONTENT_FORMAT)
            .and_then(|n| u16::try_from(n).ok())
            .map(ContentFormat)
    }
}

/// How a payload is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Cbor,
    CborSeq,
    Link,
    Text,
    Binary,
}

fn kind(format: Option<ContentFormat>, payload: &[u8]) -> Kind {
    let Some(cf) = format else {
        return if looks_like_text(payload) {
            Kind::Text
        } else {
            Kind::Binary
        };
    };
    if cf == ContentFormat::LINK_FORMAT {
        return Kind::Link;
    }
    if cf == ContentFormat::CBOR_SEQ {
        return Kind::CborSeq;
    }
    let media = cf.media_type().unwrap_or("");
    let base = media.split(';').next().unwrap_or("");
    if base.ends_with("json") {
        Kind::Json
    } else if base.ends_with("cbor") || base == "application/cwt" {
        Kind::Cbor
    } else if base.starts_with("text/") || base.ends_with("xml") {
        Kind::Text
    } else {
        Kind::Binary
    }
}

/// Whether bytes read as text: UTF-8 without control characters other than whitespace.
fn looks_like_text(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    })
}

/// Writes `payload` to `path` through a new temporary file next to it, renamed over it.
fn write_file(path: &std::path::Path, payload: &[u8]) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
        .to_string_lossy();
    crate::serve::replace(parent, &name, path, payload)
}

/// Payloads larger than this are not parsed for rendering (JSON, CBOR, link format): they
/// are shown as text or as a hex dump, so that a hostile payload cannot make a rendering
/// that takes much memory.
const RENDER_MAX: usize = 64 << 10;
/// A hex dump shows at most this many bytes.
const DUMP_MAX: usize = 1 << 20;

/// A payload rendered for a person. A payload that does not parse as its Content-Format
/// says is shown as text (or a hex dump), with a note. The rendering is bounded: payloads
/// over 64 KiB are not parsed, and what a rendering makes is cut at 1 MiB.
pub(crate) fn render(format: Option<ContentFormat>, payload: &[u8], tty: bool) -> String {
    let fallback = |why: &str| {
        let body = if looks_like_text(payload) {
            String::from_utf8_lossy(payload).into_owned()
        } else {
            hex_dump(payload)
        };
        format!("{body}\n({why})")
    };
    let kind = kind(format, payload);
    if payload.len() > RENDER_MAX
        && matches!(kind, Kind::Json | Kind::Cbor | Kind::CborSeq | Kind::Link)
    {
        return fallback(&format!(
            "{} bytes: too large to render; shown as it came",
            payload.len()
        ));
    }
    match kind {
        Kind::Json => match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(v) => printable(&pretty_json(&v), tty),
            Err(e) => fallback(&format!("not valid JSON: {e}")),
        },
        Kind::Cbor => match crate::cbor::diagnostic(payload, false) {
            Ok(s) => s,
            Err(e) => fallback(&format!("not valid CBOR: {e}")),
        },
        Kind::CborSeq => match crate::cbor::diagnostic(payload, true) {
            Ok(s) => s,
            Err(e) => fallback(&format!("not a valid CBOR sequence: {e}")),
        },
        Kind::Link => printable(&links(&String::from_utf8_lossy(payload)).join(",\n"), tty),
        Kind::Text => printable(&String::from_utf8_lossy(payload), tty),
        Kind::Binary if tty || !looks_like_text(payload) => hex_dump(payload),
        Kind::Binary => String::from_utf8_lossy(payload).into_owned(),
    }
}

/// A JSON value pretty-printed, cut at [`crate::cbor::MAX_OUTPUT`] bytes (deeply nested
/// arrays indent every element).
fn pretty_json(v: &serde_json::Value) -> String {
    /// Takes bytes until it is full, then fails.
    struct Limited(Vec<u8>);
    impl Write for Limited {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let room = crate::cbor::MAX_OUTPUT.saturating_sub(self.0.len());
            if room == 0 {
                return Err(io::Error::other("full"));
            }
            let n = b.len().min(room);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut out = Limited(Vec::new());
    let complete = serde_json::to_writer_pretty(&mut out, v).is_ok();
    let mut text = String::from_utf8_lossy(&out.0).into_owned();
    if !complete {
        text.push_str("\n… (cut: the rest is not shown; --raw or -o FILE gives it all)");
    }
    text
}

/// Text for a terminal: line ends as newlines, other control characters than newline and
/// tab written as `\x1b` and the like, so that a server cannot send escape sequences to the user's terminal.
fn printable(text: &str, tty: bool) -> String {
    if !tty {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.replace("\r\n", "\n").chars() {
        if c.is_control() && !matches!(c, '\n' | '\t') {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The links of a link-format document (RFC 6690), split at the commas between links (not
/// those inside quoted attribute values or `<…>`).
pub(crate) fn links(doc: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for c in doc.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' && !angle {
            quoted = !quoted;
        } else if c == '<' && !quoted {
            angle = true;
        } else if c == '>' && !quoted {
            angle = false;
        } else if c == ',' && !quoted && !angle {
            out.push(std::mem::take(&mut cur).trim().to_owned());
            continue;
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// A hex dump as `xxd` writes it: offset, 16 bytes in hex, and the printable ones.
/// At most [`DUMP_MAX`] bytes are shown, then a note says how many were left out.
pub(crate) fn hex_dump(all: &[u8]) -> String {
    let b = &all[..all.len().min(DUMP_MAX)];
    let mut s = String::new();
    for (i, chunk) in b.chunks(16).enumerate() {
        s.push_str(&format!("{:08x}: ", i * 16));
        for j in 0..16 {
            match chunk.get(j) {
                Some(x) => s.push_str(&format!("{x:02x}")),
                None => s.push_str("  "),
            }
            if j % 2 == 1 {
                s.push(' ');
            }
        }
        s.push(' ');
        s.extend(chunk.iter().map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '.'
            }
        }));
        s.push('\n');
    }
    if all.len() > b.len() {
        s.push_str(&format!(
            "… ({} more bytes; --raw or -o FILE gives them all)\n",
            all.len() - b.len()
        ));
    }
    s
}

/// One response as a JSON object: code, its name, source, elapsed time, options, the
/// Content-Format, and the payload as text (`payload`) when it is UTF-8, else as base64
/// (`payload_base64`).
fn json_object(reply: &Reply) -> serde_json::Value {
    let options: Vec<serde_json::Value> = reply
        .options
        .iter()
        .map(|(n, v)| {
            serde_json::json!({
                "number": n.0,
                "name": n.info().map(|i| i.name),
                "value": json_value(n, v),
            })
        })
        .collect();
    let mut o = serde_json::json!({
        "code": format!("{}.{:02}", reply.code.class(), reply.code.detail()),
        "name": reply.code.name(),
        "source": reply.source.map(|s| s.to_string()),
        "elapsed_ms": (reply.elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "options": options,
        "content_format": reply.content_format().map(|c| c.0),
    });
    match std::str::from_utf8(&reply.payload) {
        Ok(text) => o["payload"] = text.into(),
        Err(_) => o["payload_base64"] = base64(&reply.payload).into(),
    }
    o
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(b: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_one_per_line() {
        assert_eq!(
            links(r#"</a>;rt="x,y",</b>;title="q\"," , </c,d>"#),
            [r#"</a>;rt="x,y""#, r#"</b>;title="q\",""#, "</c,d>"]
        );
    }

    #[test]
    fn renders_by_format() {
        assert_eq!(
            render(Some(ContentFormat::JSON), br#"{"b":1,"a":[true]}"#, true),
            "{\n  \"b\": 1,\n  \"a\": [\n    true\n  ]\n}"
        );
        assert!(render(Some(ContentFormat::JSON), b"{", true).contains("not valid JSON"));
        assert_eq!(
            render(Some(ContentFormat::CBOR), &[0x82, 0x01, 0x61, 0x61], true),
            "[1, \"a\"]"
        );
        assert_eq!(render(None, b"plain", true), "plain");
        assert_eq!(
            render(Some(ContentFormat::TEXT_PLAIN), b"a\x1b[2Jb", true),
            "a\\x1b[2Jb",
            "no escape sequences reach a terminal"
        );
        assert_eq!(
            render(Some(ContentFormat::TEXT_PLAIN), b"a\x1bb", false),
            "a\x1bb"
        );
        assert!(render(None, &[0, 1, 2], true).starts_with("00000000: 0001 02"));
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0xfc]), "//79/A==");
    }

    #[test]
    fn json_reaches_a_terminal_printable() {
        // U+009B (CSI) and DEL are not escaped by JSON.
        let s = render(
            Some(ContentFormat::JSON),
            "[\"a\u{9b}2J\u{7f}\"]".as_bytes(),
            true,
        );
        assert!(s.contains("a\\x9b2J\\x7f"), "{s}");
        assert!(!s.contains('\u{9b}'));
    }

    #[test]
    fn hostile_payloads_render_bounded() {
        // JSON: 127 nested arrays around 30 000 numbers, each indented 256 spaces when
        // pretty-printed (some 8 MB).
        let mut j = "[".repeat(127);
        j.push_str(&vec!["1"; 30_000].join(","));
        j.push_str(&"]".repeat(127));
        assert!(j.len() <= RENDER_MAX);
        let s = render(Some(ContentFormat::JSON), j.as_bytes(), false);
        assert!(s.len() < crate::cbor::MAX_OUTPUT + 200, "{}", s.len());
        assert!(s.contains("(cut:"));
        // Larger than 64 KiB: not parsed, shown as it came.
        let mut c = vec![0x9f; 127];
        c.extend(std::iter::repeat_n(0xf7, 4 << 20));
        let s = render(Some(ContentFormat::CBOR), &c, false);
        assert!(s.len() < 5 * DUMP_MAX, "{}", s.len());
        assert!(s.contains("too large to render"), "{}", &s[s.len() - 200..]);
        let s = render(
            Some(ContentFormat::JSON),
            &vec![b' '; RENDER_MAX + 1],
            false,
        );
        assert!(s.contains("too large to render"));
    }
}
