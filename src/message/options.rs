//! The options of a message: [`Options`], an owned, sorted list, and [`OptionsRef`], a
//! borrowed view of options still in their wire form.
//!
//! Options are kept in number order; options with the same number keep the order they were
//! added in, which is what gives repeated options such as Uri-Path their meaning
//! (<https://www.rfc-editor.org/rfc/rfc7252#section-5.4.5>).

use std::fmt;

use super::option::{decode_uint, encode_uint, OptionNumber};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    number: u16,
    start: u32,
    len: u32,
}

/// An owned list of options, sorted by number; values are stored verbatim.
///
/// All values live in one buffer, so building a message costs two allocations however many
/// options it has.
///
/// ```
/// use coapio::message::{Options, OptionNumber};
/// let mut opts = Options::new();
/// opts.push(OptionNumber::URI_PATH, "sensors");
/// opts.push_uint(OptionNumber::CONTENT_FORMAT, 0);
/// opts.push(OptionNumber::URI_PATH, "temp");
/// let path: Vec<_> = opts.get_all(OptionNumber::URI_PATH).collect();
/// assert_eq!(path, [b"sensors".as_slice(), b"temp"]);
/// assert_eq!(opts.get_uint(OptionNumber::CONTENT_FORMAT), Some(0));
/// ```
#[derive(Clone, Default)]
pub struct Options {
    entries: Vec<Entry>,
    data: Vec<u8>,
}

impl Options {
    /// Creates an empty list.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            data: Vec::new(),
        }
    }

    /// The number of options (repeated ones counted each time).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no options.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes these options take in an encoded message (option headers included).
    pub fn encoded_len(&self) -> usize {
        let mut previous = 0u32;
        self.iter()
            .map(|(n, v)| {
                let delta = u32::from(n.0).saturating_sub(previous);
                previous = u32::from(n.0);
                1 + ext(delta).2 + ext(v.len() as u32).2 + v.len()
            })
            .sum()
    }

    /// Removes every option.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.data.clear();
    }

    /// Adds an option after any others with the same number.
    pub fn push(&mut self, number: OptionNumber, value: impl AsRef<[u8]>) {
        let value = value.as_ref();
        let entry = Entry {
            number: number.0,
            start: self.data.len() as u32,
            len: value.len() as u32,
        };
        self.data.extend_from_slice(value);
        let at = self
            .entries
            .iter()
            .rposition(|e| e.number <= number.0)
            .map_or(0, |i| i + 1);
        self.entries.insert(at, entry);
    }

    /// Adds an option with an unsigned integer value in its minimal encoding.
    pub fn push_uint(&mut self, number: OptionNumber, value: u32) {
        let mut buf = [0; 4];
        self.push(number, encode_uint(value, &mut buf));
    }

    /// Replaces every option `number` with one of the given value.
    pub fn set(&mut self, number: OptionNumber, value: impl AsRef<[u8]>) {
        self.remove(number);
        self.push(number, value);
    }

    /// Replaces every option `number` with one unsigned integer value.
    pub fn set_uint(&mut self, number: OptionNumber, value: u32) {
        self.remove(number);
        self.push_uint(number, value);
    }

    /// Removes every option `number`; returns whether there was one.
    pub fn remove(&mut self, number: OptionNumber) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.number != number.0);
        if self.entries.is_empty() {
            self.data.clear();
        }
        before != self.entries.len()
    }

    /// Whether the option occurs at least once.
    pub fn contains(&self, number: OptionNumber) -> bool {
        self.entries.iter().any(|e| e.number == number.0)
    }

    /// The value of the first option `number`.
    pub fn get(&self, number: OptionNumber) -> Option<&[u8]> {
        self.get_all(number).next()
    }

    /// The values of every option `number`, in order.
    pub fn get_all(&self, number: OptionNumber) -> impl Iterator<Item = &[u8]> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.number == number.0)
            .map(|e| self.value(e))
    }

    /// The first option `number` read as an unsigned integer; `None` when absent or longer
    /// than 4 bytes.
    pub fn get_uint(&self, number: OptionNumber) -> Option<u32> {
        self.get(number).and_then(decode_uint)
    }

    /// The first option `number` read as UTF-8; `None` when absent or not UTF-8.
    pub fn get_str(&self, number: OptionNumber) -> Option<&str> {
        self.get(number).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every option as `(number, value)`, in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (OptionNumber, &[u8])> + Clone + '_ {
        self.entries
            .iter()
            .map(|e| (OptionNumber(e.number), self.value(e)))
    }

    fn value(&self, e: &Entry) -> &[u8] {
        let start = e.start as usize;
        &self.data[start..start + e.len as usize]
    }
}

/// Equal when the same options come in the same order, however they were stored.
impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Options {}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_options(self.iter(), f)
    }
}

impl<'a> FromIterator<(OptionNumber, &'a [u8])> for Options {
    fn from_iter<I: IntoIterator<Item = (OptionNumber, &'a [u8])>>(iter: I) -> Self {
        let mut opts = Self::new();
        for (n, v) in iter {
            opts.push(n, v);
        }
        opts
    }
}

pub(super) fn debug_options<'a>(
    iter: impl Iterator<Item = (OptionNumber, &'a [u8])>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let mut list = f.debug_list();
    for (n, v) in iter {
        match std::str::from_utf8(v) {
            Ok(s)
                if n.info()
                    .is_some_and(|i| i.format == super::OptionFormat::String) =>
            {
                list.entry(&format_args!("{n}: {s:?}"))
            }
            _ => list.entry(&format_args!("{n}: {v:02x?}")),
        };
    }
    list.finish()
}

/// Options still in their wire form, borrowed from a decoded datagram.
///
/// The decoder has checked them, so iterating cannot fail.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionsRef<'a> {
    raw: &'a [u8],
}

impl<'a> OptionsRef<'a> {
    /// Wraps options that [`MessageRef::decode`](super::MessageRef::decode) has validated.
    pub(super) const fn new(raw: &'a [u8]) -> Self {
        Self { raw }
    }

    /// The options as they are on the wire.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether there are no options.
    pub const fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Every option as `(number, value)`, in wire order.
    pub fn iter(&self) -> OptionsIter<'a> {
        OptionsIter {
            rest: self.raw,
            number: 0,
        }
    }

    /// The value of the first option `number`.
    pub fn get(&self, number: OptionNumber) -> Option<&'a [u8]> {
        self.get_all(number).next()
    }

    /// The values of every option `number`, in order.
    pub fn get_all(&self, number: OptionNumber) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .skip_while(move |(n, _)| *n < number)
            .take_while(move |(n, _)| *n == number)
            .map(|(_, v)| v)
    }

    /// The first option `number` read as an unsigned integer.
    pub fn get_uint(&self, number: OptionNumber) -> Option<u32> {
        self.get(number).and_then(decode_uint)
    }

    /// Copies the options into an owned list.
    pub fn to_owned(&self) -> Options {
        let mut opts = Options::new();
        opts.data.reserve(self.raw.len());
        for (n, v) in self.iter() {
            // Already in order: append without searching.
            opts.entries.push(Entry {
                number: n.0,
                start: opts.data.len() as u32,
                len: v.len() as u32,
            });
            opts.data.extend_from_slice(v);
        }
        opts
    }
}

impl fmt::Debug for OptionsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_options(self.iter(), f)
    }
}

impl<'a> IntoIterator for OptionsRef<'a> {
    type Item = (OptionNumber, &'a [u8]);
    type IntoIter = OptionsIter<'a>;
    fn into_iter(self) -> OptionsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`OptionsRef`].
#[derive(Clone, Debug)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
    number: u32,
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = (OptionNumber, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match read_option(self.rest) {
            Ok(Some((delta, value, rest))) => {
                self.number += delta;
                self.rest = rest;
                Some((OptionNumber(self.number as u16), value))
            }
            // Validated input never errs; a view made otherwise simply ends.
            _ => {
                self.rest = &[];
                None
            }
        }
    }
}

/// One option as read: delta, value, and the bytes after it.
pub(super) type RawOption<'a> = (u32, &'a [u8], &'a [u8]);

/// What went wrong reading one option; the offset is filled in by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OptionError {
    ReservedNibble,
    Truncated,
}

/// Reads one option header and value from `data`.
///
/// Returns `Ok(None)` at the end of the options (empty input or the payload marker), else the
/// delta, the value and what follows.
#[inline]
pub(super) fn read_option(data: &[u8]) -> Result<Option<RawOption<'_>>, OptionError> {
    let Some((&first, mut rest)) = data.split_first() else {
        return Ok(None);
    };
    if first == 0xff {
        return Ok(None);
    }
    let delta = read_ext(first >> 4, &mut rest)?;
    let len = read_ext(first & 0x0f, &mut rest)? as usize;
    if rest.len() < len {
        return Err(OptionError::Truncated);
    }
    let (value, rest) = rest.split_at(len);
    Ok(Some((delta, value, rest)))
}

#[inline]
fn read_ext(nibble: u8, rest: &mut &[u8]) -> Result<u32, OptionError> {
    match nibble {
        0..=12 => Ok(u32::from(nibble)),
        13 => match rest.split_first() {
            Some((&b, r)) => {
                *rest = r;
                Ok(13 + u32::from(b))
            }
            None => Err(OptionError::Truncated),
        },
        14 => match rest {
            [a, b, r @ ..] => {
                *rest = r;
                Ok(269 + u32::from(u16::from_be_bytes([*a, *b])))
            }
            _ => Err(OptionError::Truncated),
        },
        _ => Err(OptionError::ReservedNibble),
    }
}

/// Appends one option header (delta and length, extended as needed) to `buf`.
#[inline]
pub(super) fn write_option_header(buf: &mut Vec<u8>, delta: u32, len: u32) {
    let (dn, dext, dlen) = ext(delta);
    let (ln, lext, llen) = ext(len);
    buf.push((dn << 4) | ln);
    buf.extend_from_slice(&dext[..dlen]);
    buf.extend_from_slice(&lext[..llen]);
}

#[inline]
fn ext(v: u32) -> (u8, [u8; 2], usize) {
    if v < 13 {
        (v as u8, [0, 0], 0)
    } else if v < 269 {
        (13, [(v - 13) as u8, 0], 1)
    } else {
        (14, ((v - 269) as u16).to_be_bytes(), 2)
    }
}

/// The largest value (option delta or length) the extended encoding can carry.
pub(super) const MAX_EXT: u32 = 269 + 0xffff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_keeps_number_order_and_insertion_order() {
        let mut o = Options::new();
        o.push(OptionNumber::URI_QUERY, "q");
        o.push(OptionNumber::URI_PATH, "a");
        o.push(OptionNumber::URI_HOST, "h");
        o.push(OptionNumber::URI_PATH, "b");
        let v: Vec<_> = o.iter().map(|(n, v)| (n.0, v.to_vec())).collect();
        assert_eq!(
            v,
            [
                (3, b"h".to_vec()),
                (11, b"a".to_vec()),
                (11, b"b".to_vec()),
                (15, b"q".to_vec())
            ]
        );
        assert!(o.remove(OptionNumber::URI_PATH));
        assert!(!o.remove(OptionNumber::URI_PATH));
        assert_eq!(o.len(), 2);
        o.set_uint(OptionNumber::URI_HOST, 7);
        assert_eq!(o.get_uint(OptionNumber::URI_HOST), Some(7));
        assert_eq!(o.get_str(OptionNumber::URI_QUERY), Some("q"));
    }

    #[test]
    fn header_extension_boundaries() {
        for (v, expect_len) in [(0, 1), (12, 1), (13, 2), (268, 2), (269, 3), (MAX_EXT, 3)] {
            let mut buf = Vec::new();
            write_option_header(&mut buf, v, 0);
            assert_eq!(buf.len(), expect_len, "{v}");
            let mut rest = &buf[1..];
            assert_eq!(read_ext(buf[0] >> 4, &mut rest), Ok(v));
        }
    }
}
