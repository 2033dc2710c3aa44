//! Option numbers and the registry of known options (RFC 7252 §5.4, §5.10, §12.2 and the
//! options of RFC 7641, 7959, 7967, 8613, 8768, 9175 and 9177).
//!
//! The properties every option has by its number alone (critical, unsafe, no-cache-key) are
//! methods of [`OptionNumber`]; what the registry adds (name, value format, length bounds,
//! repeatability) is an [`OptionInfo`], found with [`OptionNumber::info`].

use std::fmt;

/// The number of an option, as carried (delta-coded) in a message.
///
/// ```
/// use coapio::message::OptionNumber;
/// assert!(OptionNumber::URI_PATH.is_critical());
/// assert!(OptionNumber::SIZE1.is_no_cache_key());
/// assert_eq!(OptionNumber::BLOCK2.info().unwrap().name, "Block2");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionNumber(pub u16);

impl OptionNumber {
    /// If-Match (RFC 7252)
    pub const IF_MATCH: Self = Self(1);
    /// Uri-Host (RFC 7252)
    pub const URI_HOST: Self = Self(3);
    /// ETag (RFC 7252)
    pub const ETAG: Self = Self(4);
    /// If-None-Match (RFC 7252)
    pub const IF_NONE_MATCH: Self = Self(5);
    /// Observe (RFC 7641)
    pub const OBSERVE: Self = Self(6);
    /// Uri-Port (RFC 7252)
    pub const URI_PORT: Self = Self(7);
    /// Location-Path (RFC 7252)
    pub const LOCATION_PATH: Self = Self(8);
    /// OSCORE (RFC 8613)
    pub const OSCORE: Self = Self(9);
    /// Uri-Path (RFC 7252)
    pub const URI_PATH: Self = Self(11);
    /// Content-Format (RFC 7252)
    pub const CONTENT_FORMAT: Self = Self(12);
    /// Max-Age (RFC 7252)
    pub const MAX_AGE: Self = Self(14);
    /// Uri-Query (RFC 7252)
    pub const URI_QUERY: Self = Self(15);
    /// Hop-Limit (RFC 8768)
    pub const HOP_LIMIT: Self = Self(16);
    /// Accept (RFC 7252)
    pub const ACCEPT: Self = Self(17);
    /// Q-Block1 (RFC 9177)
    pub const Q_BLOCK1: Self = Self(19);
    /// Location-Query (RFC 7252)
    pub const LOCATION_QUERY: Self = Self(20);
    /// Block2 (RFC 7959)
    pub const BLOCK2: Self = Self(23);
    /// Block1 (RFC 7959)
    pub const BLOCK1: Self = Self(27);
    /// Size2 (RFC 7959)
    pub const SIZE2: Self = Self(28);
    /// Q-Block2 (RFC 9177)
    pub const Q_BLOCK2: Self = Self(31);
    /// Proxy-Uri (RFC 7252)
    pub const PROXY_URI: Self = Self(35);
    /// Proxy-Scheme (RFC 7252)
    pub const PROXY_SCHEME: Self = Self(39);
    /// Size1 (RFC 7252)
    pub const SIZE1: Self = Self(60);
    /// Echo (RFC 9175)
    pub const ECHO: Self = Self(252);
    /// No-Response (RFC 7967)
    pub const NO_RESPONSE: Self = Self(258);
    /// Request-Tag (RFC 9175)
    pub const REQUEST_TAG: Self = Self(292);

    /// Whether a recipient that does not understand the option must reject the message
    /// (odd numbers; <https://www.rfc-editor.org/rfc/rfc7252#section-5.4.1>).
    pub const fn is_critical(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// Whether the option is elective (not critical).
    pub const fn is_elective(self) -> bool {
        !self.is_critical()
    }

    /// Whether a proxy that does not understand the option must not forward it
    /// (<https://www.rfc-editor.org/rfc/rfc7252#section-5.4.2>).
    pub const fn is_unsafe(self) -> bool {
        self.0 & 0x02 != 0
    }

    /// Whether the option is not part of the cache key (safe-to-forward options whose bits
    /// 1–4 are `1110`; <https://www.rfc-editor.org/rfc/rfc7252#section-5.4.6>).
    pub const fn is_no_cache_key(self) -> bool {
        self.0 & 0x1e == 0x1c
    }

    /// The registry entry of a known option.
    pub fn info(self) -> Option<&'static OptionInfo> {
        REGISTRY
            .binary_search_by_key(&self.0, |i| i.number.0)
            .ok()
            .map(|i| &REGISTRY[i])
    }
}

impl fmt::Display for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(i) => f.write_str(i.name),
            None => write!(f, "Option {}", self.0),
        }
    }
}

impl fmt::Debug for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OptionNumber({}, {self})", self.0)
    }
}

/// How an option's value is to be read (<https://www.rfc-editor.org/rfc/rfc7252#section-3.2>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionFormat {
    /// A zero-length value.
    Empty,
    /// Bytes with no meaning to CoAP.
    Opaque,
    /// A big-endian unsigned integer in as few bytes as possible (0 is the empty value).
    Uint,
    /// UTF-8 text (Net-Unicode, RFC 5198).
    String,
}

/// What the registry knows of one option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OptionInfo {
    /// The option's number.
    pub number: OptionNumber,
    /// Its registered name.
    pub name: &'static str,
    /// How its value is read.
    pub format: OptionFormat,
    /// The shortest valid value, in bytes.
    pub min_len: u16,
    /// The longest valid value, in bytes.
    pub max_len: u16,
    /// Whether it may occur more than once in a message.
    pub repeatable: bool,
}

impl OptionInfo {
    /// Whether `len` is within the option's length bounds; an option outside them is to be
    /// treated as unrecognized (<https://www.rfc-editor.org/rfc/rfc7252#section-5.4.3>).
    pub const fn len_ok(&self, len: usize) -> bool {
        len >= self.min_len as usize && len <= self.max_len as usize
    }
}

const fn entry(
    number: OptionNumber,
    name: &'static str,
    format: OptionFormat,
    min_len: u16,
    max_len: u16,
    repeatable: bool,
) -> OptionInfo {
    OptionInfo {
        number,
        name,
        format,
        min_len,
        max_len,
        repeatable,
    }
}

use OptionFormat::{Empty, Opaque, String as Str, Uint};

/// Every option coapio knows, sorted by number.
pub static REGISTRY: &[OptionInfo] = &[
    entry(OptionNumber::IF_MATCH, "If-Match", Opaque, 0, 8, true),
    entry(OptionNumber::URI_HOST, "Uri-Host", Str, 1, 255, false),
    entry(OptionNumber::ETAG, "ETag", Opaque, 1, 8, true),
    entry(
        OptionNumber::IF_NONE_MATCH,
        "If-None-Match",
        Empty,
        0,
        0,
        false,
    ),
    entry(OptionNumber::OBSERVE, "Observe", Uint, 0, 3, false),
    entry(OptionNumber::URI_PORT, "Uri-Port", Uint, 0, 2, false),
    entry(
        OptionNumber::LOCATION_PATH,
        "Location-Path",
        Str,
        0,
        255,
        true,
    ),
    entry(OptionNumber::OSCORE, "OSCORE", Opaque, 0, 255, false),
    entry(OptionNumber::URI_PATH, "Uri-Path", Str, 0, 255, true),
    entry(
        OptionNumber::CONTENT_FORMAT,
        "Content-Format",
        Uint,
        0,
        2,
        false,
    ),
    entry(OptionNumber::MAX_AGE, "Max-Age", Uint, 0, 4, false),
    entry(OptionNumber::URI_QUERY, "Uri-Query", Str, 0, 255, true),
    entry(OptionNumber::HOP_LIMIT, "Hop-Limit", Uint, 1, 1, false),
    entry(OptionNumber::ACCEPT, "Accept", Uint, 0, 2, false),
    entry(OptionNumber::Q_BLOCK1, "Q-Block1", Uint, 0, 3, false),
    entry(
        OptionNumber::LOCATION_QUERY,
        "Location-Query",
        Str,
        0,
        255,
        true,
    ),
    entry(OptionNumber::BLOCK2, "Block2", Uint, 0, 3, false),
    entry(OptionNumber::BLOCK1, "Block1", Uint, 0, 3, false),
    entry(OptionNumber::SIZE2, "Size2", Uint, 0, 4, false),
    entry(OptionNumber::Q_BLOCK2, "Q-Block2", Uint, 0, 3, false),
    entry(OptionNumber::PROXY_URI, "Proxy-Uri", Str, 1, 1034, false),
    entry(
        OptionNumber::PROXY_SCHEME,
        "Proxy-Scheme",
        Str,
        1,
        255,
        false,
    ),
    entry(OptionNumber::SIZE1, "Size1", Uint, 0, 4, false),
    entry(OptionNumber::ECHO, "Echo", Opaque, 1, 40, false),
    entry(OptionNumber::NO_RESPONSE, "No-Response", Uint, 0, 1, false),
    entry(OptionNumber::REQUEST_TAG, "Request-Tag", Opaque, 0, 8, true),
];

/// Encodes `value` as a minimal big-endian unsigned integer (0 is the empty slice) into the
/// front of `buf` and returns the used part
/// (<https://www.rfc-editor.org/rfc/rfc7252#section-3.2>).
pub fn encode_uint(value: u32, buf: &mut [u8; 4]) -> &[u8] {
    *buf = value.to_be_bytes();
    let skip = (value.leading_zeros() / 8) as usize;
    &buf[skip..]
}

/// Reads a big-endian unsigned integer of at most 4 bytes; leading zero bytes are accepted.
/// Returns `None` for a longer value.
pub fn decode_uint(value: &[u8]) -> Option<u32> {
    if value.len() > 4 {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_sorted_and_consistent() {
        for w in REGISTRY.windows(2) {
            assert!(w[0].number < w[1].number, "{:?}", w[1].number);
        }
        for i in REGISTRY {
            assert_eq!(i.number.info(), Some(i));
            assert!(i.min_len <= i.max_len);
            if i.format == Uint {
                assert!(i.max_len <= 4);
            }
        }
        assert!(OptionNumber(2).info().is_none());
    }

    #[test]
    fn properties_from_number() {
        // RFC 7252 Table 4 and RFC 7959 Table 4.
        let critical = [1, 3, 5, 7, 9, 11, 15, 17, 19, 23, 27, 31, 35, 39];
        let unsafe_ = [3, 6, 7, 11, 14, 15, 19, 23, 27, 31, 35, 39, 258];
        let no_cache_key = [28, 60, 252, 284];
        for i in REGISTRY {
            let n = i.number;
            assert_eq!(n.is_critical(), critical.contains(&n.0), "{n:?}");
            assert_eq!(n.is_unsafe(), unsafe_.contains(&n.0), "{n:?}");
        }
        for n in 0..300u16 {
            let n = OptionNumber(n);
            if no_cache_key.contains(&n.0) {
                assert!(n.is_no_cache_key(), "{n:?}");
            }
        }
        assert!(!OptionNumber::URI_PATH.is_no_cache_key());
        assert!(!OptionNumber::ETAG.is_no_cache_key());
    }

    #[test]
    fn uint_coding() {
        let mut b = [0; 4];
        assert_eq!(encode_uint(0, &mut b), &[] as &[u8]);
        assert_eq!(encode_uint(1, &mut b), &[1]);
        assert_eq!(encode_uint(256, &mut b), &[1, 0]);
        assert_eq!(encode_uint(0x01_00_00_00, &mut b), &[1, 0, 0, 0]);
        assert_eq!(decode_uint(&[]), Some(0));
        assert_eq!(decode_uint(&[0, 0, 1]), Some(1));
        assert_eq!(decode_uint(&[1, 2, 3, 4, 5]), None);
        for v in [0u32, 1, 255, 256, 65535, 65536, u32::MAX] {
            assert_eq!(decode_uint(encode_uint(v, &mut b)), Some(v));
        }
    }
}
