//! CBOR in diagnostic notation (RFC 8949 §8), indented where a value does not fit one line,
//! over minicbor's tokenizer. Malformed input is an error, never a panic: nesting is
//! bounded, and no length read from the input allocates ahead of the items themselves.

use minicbor::data::Token;
use minicbor::decode::Tokenizer;

/// How deep containers and tags may nest.
const MAX_DEPTH: usize = 128;
/// Values whose one-line form is at most this long stay on one line.
const LINE: usize = 72;

/// The CBOR item in `b` (or, for a sequence, each item on a line of its own) in diagnostic
/// notation.
///
/// # Errors
///
/// A message saying what is wrong with the bytes: malformed, truncated, nested too deeply,
/// or (for a single item) followed by more bytes.
pub(crate) fn diagnostic(b: &[u8], sequence: bool) -> Result<String, String> {
    let mut t = Tokenizer::new(b);
    use std::fmt::Write;
    let mut out = Bounded::new(MAX_OUTPUT);
    loop {
        let item = item(&mut t, 0)?;
        let Some(item) = item else {
            if out.text.is_empty() && !sequence {
                return Err("empty".into());
            }
            break;
        };
        let Item::Value(node) = item else {
            return Err("a break outside of an indefinite-length item".into());
        };
        let separated = out.text.is_empty() || out.write_str("\n").is_ok();
        if !separated || node.show(0, &mut out).is_err() {
            out.text.push_str(TRUNCATED);
            return Ok(out.text);
        }
        if !sequence {
            if t.next().is_some() {
                return Err("more bytes after the first item (a CBOR sequence?)".into());
            }
            break;
        }
    }
    Ok(out.text)
}

/// What ends a rendering cut at [`MAX_OUTPUT`].
const TRUNCATED: &str = "\n… (cut: the rest is not shown; --raw or -o FILE gives it all)";

#[derive(Debug)]
enum Node {
    Atom(String),
    Array(bool, Vec<Self>),
    Map(bool, Vec<(Self, Self)>),
    Tag(u64, Box<Self>),
    /// An indefinite-length byte or text string: its chunks.
    Chunks(Vec<String>),
}

enum Item {
    Value(Node),
    Break,
}

fn item(t: &mut Tokenizer<'_, '_>, depth: usize) -> Result<Option<Item>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested more than {MAX_DEPTH} deep"));
    }
    let Some(token) = t.next() else {
        return Ok(None);
    };
    let token = token.map_err(|e| e.to_string())?;
    let need = |t: &mut Tokenizer<'_, '_>| -> Result<Item, String> {
        item(t, depth + 1)?.ok_or_else(|| "truncated".to_owned())
    };
    let value = |t: &mut Tokenizer<'_, '_>| -> Result<Node, String> {
        match need(t)? {
            Item::Value(n) => Ok(n),
            Item::Break => Err("a break where a value belongs".into()),
        }
    };
    let node = match token {
        Token::Bool(b) => Node::Atom(b.to_string()),
        Token::U8(n) => Node::Atom(n.to_string()),
        Token::U16(n) => Node::Atom(n.to_string()),
        Token::U32(n) => Node::Atom(n.to_string()),
        Token::U64(n) => Node::Atom(n.to_string()),
        Token::I8(n) => Node::Atom(n.to_string()),
        Token::I16(n) => Node::Atom(n.to_string()),
        Token::I32(n) => Node::Atom(n.to_string()),
        Token::I64(n) => Node::Atom(n.to_string()),
        Token::Int(n) => Node::Atom(n.to_string()),
        Token::F16(f) | Token::F32(f) => Node::Atom(float(f64::from(f))),
        Token::F64(f) => Node::Atom(float(f)),
        Token::Bytes(b) => Node::Atom(format!("h'{}'", crate::options::to_hex(b))),
        Token::String(s) => Node::Atom(format!("{s:?}")),
        Token::Null => Node::Atom("null".into()),
        Token::Undefined => Node::Atom("undefined".into()),
        Token::Simple(n) => Node::Atom(format!("simple({n})")),
        Token::Break => return Ok(Some(Item::Break)),
        Token::Tag(tag) => Node::Tag(tag.as_u64(), Box::new(value(t)?)),
        Token::Array(n) => {
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(value(t)?);
            }
            Node::Array(false, items)
        }
        Token::Map(n) => {
            let mut pairs = Vec::new();
            for _ in 0..n {
                pairs.push((value(t)?, value(t)?));
            }
            Node::Map(false, pairs)
        }
        Token::BeginArray => {
            let mut items = Vec::new();
            while let Item::Value(v) = need(t)? {
                items.push(v);
            }
            Node::Array(true, items)
        }
        Token::BeginMap => {
            let mut pairs = Vec::new();
            while let Item::Value(k) = need(t)? {
                pairs.push((k, value(t)?));
            }
            Node::Map(true, pairs)
        }
        Token::BeginBytes | Token::BeginString => {
            let mut chunks = Vec::new();
            while let Item::Value(Node::Atom(c)) = need(t)? {
                chunks.push(c);
            }
            Node::Chunks(chunks)
        }
    };
    Ok(Some(Item::Value(node)))
}

/// A float as diagnostic notation writes it (`1.5`, `NaN`, `Infinity`).
fn float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{f:?}")
    }
}

/// Where a rendering stops: past this many bytes of output, the rest is left out.
pub(crate) const MAX_OUTPUT: usize = 1 << 20;

/// A `String` that takes at most `limit` bytes: writing past it fails (and what was
/// written stays cut there), so that a test of whether something fits, or a rendering of a
/// hostile value, never builds more than `limit` bytes.
struct Bounded {
    text: String,
    limit: usize,
}

impl Bounded {
    fn new(limit: usize) -> Self {
        Self {
            text: String::new(),
            limit,
        }
    }
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.limit.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
        Err(std::fmt::Error)
    }
}

impl Node {
    /// Writes the value on one line; stops with an error when `out` is full.
    fn one_line(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        match self {
            Self::Atom(s) => out.write_str(s),
            Self::Array(indef, items) => {
                out.write_str(if *indef { "[_ " } else { "[" })?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    item.one_line(out)?;
                }
                out.write_str("]")
            }
            Self::Map(indef, pairs) => {
                out.write_str(if *indef { "{_ " } else { "{" })?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    k.one_line(out)?;
                    out.write_str(": ")?;
                    v.one_line(out)?;
                }
                out.write_str("}")
            }
            Self::Tag(n, v) => {
                write!(out, "{n}(")?;
                v.one_line(out)?;
                out.write_str(")")
            }
            Self::Chunks(c) => {
                out.write_str("(_ ")?;
                for (i, chunk) in c.iter().enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    out.write_str(chunk)?;
                }
                out.write_str(")")
            }
        }
    }

    /// The one-line form if it is at most `width` bytes long. Never builds more than
    /// `width` + 1 bytes.
    fn fits(&self, width: usize) -> Option<String> {
        let mut line = Bounded::new(width);
        self.one_line(&mut line).ok().map(|()| line.text)
    }

    /// Writes the value at `indent` spaces: on one line if it fits, else one item per
    /// line. Stops with an error when `out` is full.
    fn show(&self, indent: usize, out: &mut Bounded) -> std::fmt::Result {
        use std::fmt::Write;
        if let Some(line) = self.fits(LINE.saturating_sub(indent)) {
            return out.write_str(&line);
        }
        let pad = indent + 2;
        match self {
            Self::Array(indef, items) if !items.is_empty() => {
                out.write_str(if *indef { "[_\n" } else { "[\n" })?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_str(",\n")?;
                    }
                    write!(out, "{:pad$}", "")?;
                    item.show(pad, out)?;
                }
                write!(out, "\n{:indent$}]", "")
            }
            Self::Map(indef, pairs) if !pairs.is_empty() => {
                out.write_str(if *indef { "{_\n" } else { "{\n" })?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.write_str(",\n")?;
                    }
                    write!(out, "{:pad$}", "")?;
                    k.one_line(out)?;
                    out.write_str(": ")?;
                    v.show(pad, out)?;
                }
                write!(out, "\n{:indent$}}}", "")
            }
            Self::Tag(n, v) => {
                write!(out, "{n}(")?;
                v.show(indent, out)?;
                out.write_str(")")
            }
            _ => self.one_line(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_in_diagnostic_notation() {
        // {"a": [1, -2, 1.5], "b": h'0102', 1(1700000000): null}
        let b = [
            0xa3, 0x61, b'a', 0x83, 0x01, 0x21, 0xf9, 0x3e, 0x00, 0x61, b'b', 0x42, 1, 2, 0xc1,
            0x1a, 0x65, 0x53, 0xf1, 0x00, 0xf6,
        ];
        assert_eq!(
            diagnostic(&b, false).unwrap(),
            r#"{"a": [1, -2, 1.5], "b": h'0102', 1(1700000000): null}"#
        );
        // [_ "x"] and a sequence of two items
        assert_eq!(
            diagnostic(&[0x9f, 0x61, b'x', 0xff], false).unwrap(),
            r#"[_ "x"]"#
        );
        assert_eq!(diagnostic(&[0x01, 0x02], true).unwrap(), "1\n2");
    }

    #[test]
    fn long_values_are_indented() {
        let mut b = vec![0x98, 20];
        b.extend(std::iter::repeat_n(0x18, 20).flat_map(|x| [x, 100]));
        let s = diagnostic(&b, false).unwrap();
        assert!(s.starts_with("[\n  100,\n  100,"), "{s}");
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(diagnostic(&[0x82, 0x01], false).is_err(), "truncated");
        assert!(diagnostic(&[0x01, 0x02], false).is_err(), "trailing bytes");
        assert!(diagnostic(&[0xff], false).is_err(), "lone break");
        assert!(diagnostic(&[], false).is_err());
        assert!(diagnostic(&[0x81; 1000], false).is_err(), "too deep");
        assert!(diagnostic(
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            false
        )
        .is_err());
    }

    #[test]
    fn hostile_nesting_renders_bounded() {
        // 127 indefinite arrays around 200 000 `undefined`: every level is too long for a
        // line, and the indented form is some 50 MB.
        let mut b = vec![0x9f; 127];
        b.extend(std::iter::repeat_n(0xf7, 200_000));
        b.extend(std::iter::repeat_n(0xff, 127));
        let s = diagnostic(&b, false).unwrap();
        assert!(s.len() <= MAX_OUTPUT + TRUNCATED.len(), "{}", s.len());
        assert!(s.ends_with(TRUNCATED));
        assert!(s.starts_with("[_\n  [_\n"), "{}", &s[..40]);
    }
}
