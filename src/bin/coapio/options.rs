//! Reading what the user types into CoAP values: Content-Format names and numbers, `-O`
//! options (`NUMBER=VALUE` or `Name=VALUE`), hex; and writing option values back for people.

use coapio::message::{BlockValue, ContentFormat, OptionFormat, OptionNumber};

/// Short names for the common Content-Formats, beside the full media types.
const SHORT_NAMES: &[(&str, u16)] = &[
    ("text", 0),
    ("link", 40),
    ("link-format", 40),
    ("xml", 41),
    ("octet-stream", 42),
    ("binary", 42),
    ("exi", 47),
    ("json", 50),
    ("json-patch", 51),
    ("merge-patch", 52),
    ("cbor", 60),
    ("cwt", 61),
    ("cbor-seq", 63),
    ("senml+json", 110),
    ("senml+cbor", 112),
];

/// A Content-Format from a number (`50`), a short name (`json`, `cbor`, `text`,
/// `link-format`) or a media type (`application/json`, `text/plain;charset=utf-8`).
pub(crate) fn content_format(s: &str) -> Result<ContentFormat, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u16>() {
        return Ok(ContentFormat(n));
    }
    let lower = t.to_ascii_lowercase();
    if let Some((_, n)) = SHORT_NAMES.iter().find(|(name, _)| *name == lower) {
        return Ok(ContentFormat(*n));
    }
    if lower == "text/plain" {
        return Ok(ContentFormat::TEXT_PLAIN);
    }
    if let Some(cf) = ContentFormat::from_media_type(&lower) {
        return Ok(cf);
    }
    Err(format!(
        "{s:?} is not a Content-Format: give a number (0-65535), a media type \
         (application/json) or one of {}",
        SHORT_NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// An option number from a number (`11`) or a registered name (`Uri-Query`, any case).
fn option_number(s: &str) -> Result<OptionNumber, String> {
    if let Ok(n) = s.parse::<u16>() {
        return Ok(OptionNumber(n));
    }
    coapio::message::REGISTRY
        .iter()
        .find(|i| i.name.eq_ignore_ascii_case(s))
        .map(|i| i.number)
        .ok_or_else(|| format!("{s:?} is not an option number (0-65535) or a registered name"))
}

/// `-O NUMBER=VALUE`: the value as the option's registered format reads it (a number for a
/// uint option, text for a string option), `0x…` as hex bytes for any option, and for an
/// option coapio does not know, a number as a uint and anything else as text. `NUMBER` and
/// `NUMBER=` give an empty value.
pub(crate) fn option(s: &str) -> Result<(OptionNumber, Vec<u8>), String> {
    let (name, value) = s.split_once('=').unwrap_or((s, ""));
    let number = option_number(name.trim())?;
    // RFC 7252 §12.2: 0 and 128, 132, 136, 140 are reserved (the last four were the early
    // drafts' Uri-Host-like options; a server takes them for unrecognized critical ones).
    if matches!(number.0, 0 | 128 | 132 | 136 | 140) {
        return Err(format!("-O {s}: option number {} is reserved", number.0));
    }
    let format = number.info().map(|i| i.format);
    let value = if let Some(h) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        hex(h).ok_or_else(|| format!("-O {s}: {value:?} is not hex"))?
    } else {
        match (format, value.parse::<u32>()) {
            (Some(OptionFormat::Uint) | None, Ok(n)) => uint(n),
            (Some(OptionFormat::Uint), Err(_)) if !value.is_empty() => {
                return Err(format!("-O {s}: {number} takes a number (or 0x-hex bytes)"))
            }
            (Some(OptionFormat::Empty), _) if !value.is_empty() => {
                return Err(format!("-O {s}: {number} takes no value"))
            }
            _ => value.as_bytes().to_vec(),
        }
    };
    if let Some(info) = number.info() {
        if !info.len_ok(value.len()) {
            return Err(format!(
                "-O {s}: {number} takes {}-{} bytes, not {}",
                info.min_len,
                info.max_len,
                value.len()
            ));
        }
    }
    Ok((number, value))
}

/// Refuses `-O` options that the URI gives (Uri-Host, Uri-Port, Uri-Path, Uri-Query).
pub(crate) fn check_not_uri(options: &[(OptionNumber, Vec<u8>)]) -> Result<(), String> {
    let uri = [
        OptionNumber::URI_HOST,
        OptionNumber::URI_PORT,
        OptionNumber::URI_PATH,
        OptionNumber::URI_QUERY,
    ];
    match options.iter().find(|(n, _)| uri.contains(n)) {
        Some((n, _)) => Err(format!(
            "-O {n}: the URI gives Uri-Host, Uri-Port, Uri-Path and Uri-Query"
        )),
        None => Ok(()),
    }
}

/// The minimal big-endian bytes of `n` (0 is empty).
pub(crate) fn uint(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = (n.leading_zeros() / 8) as usize;
    b[skip..].to_vec()
}

/// Bytes from hex digits (an even number of them).
pub(crate) fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Bytes as lower-case hex.
pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An option's value, for people: numbers as numbers (Content-Formats with their media
/// type, block options as `NUM/MORE/SIZE`), text as quoted text, the rest as 0x-hex.
pub(crate) fn show_value(number: OptionNumber, value: &[u8]) -> String {
    let format = number.info().map(|i| i.format);
    match format {
        Some(OptionFormat::Uint) => {
            let Some(n) = coapio::message::decode_uint(value) else {
                return format!("0x{}", to_hex(value));
            };
            if number == OptionNumber::CONTENT_FORMAT || number == OptionNumber::ACCEPT {
                let cf = u16::try_from(n).map(ContentFormat);
                match cf.ok().and_then(ContentFormat::media_type) {
                    Some(m) => format!("{m} ({n})"),
                    None => n.to_string(),
                }
            } else if number == OptionNumber::BLOCK1 || number == OptionNumber::BLOCK2 {
                match BlockValue::from_uint(n) {
                    Ok(b) => format!("{}/{}/{}", b.num(), u8::from(b.more()), b.size()),
                    Err(_) => n.to_string(),
                }
            } else {
                n.to_string()
            }
        }
        Some(OptionFormat::String) => match std::str::from_utf8(value) {
            Ok(s) => format!("{s:?}"),
            Err(_) => format!("0x{}", to_hex(value)),
        },
        Some(OptionFormat::Empty) if value.is_empty() => String::new(),
        _ if value.is_empty() => "(empty)".into(),
        _ => format!("0x{}", to_hex(value)),
    }
}

/// An option's value for `--json`: a number for uint options, a string for text, else
/// `"0x…"`.
pub(crate) fn json_value(number: OptionNumber, value: &[u8]) -> serde_json::Value {
    match number.info().map(|i| i.format) {
        Some(OptionFormat::Uint) => match coapio::message::decode_uint(value) {
            Some(n) => n.into(),
            None => format!("0x{}", to_hex(value)).into(),
        },
        Some(OptionFormat::String) => match std::str::from_utf8(value) {
            Ok(s) => s.into(),
            Err(_) => format!("0x{}", to_hex(value)).into(),
        },
        _ => format!("0x{}", to_hex(value)).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_formats_by_number_name_and_media_type() {
        assert_eq!(content_format("50"), Ok(ContentFormat::JSON));
        assert_eq!(content_format("json"), Ok(ContentFormat::JSON));
        assert_eq!(content_format("application/cbor"), Ok(ContentFormat::CBOR));
        assert_eq!(content_format("text/plain"), Ok(ContentFormat::TEXT_PLAIN));
        assert!(content_format("nonsense").is_err());
    }

    #[test]
    fn options_by_format() {
        assert_eq!(option("14=60"), Ok((OptionNumber::MAX_AGE, vec![60])));
        assert_eq!(
            option("Uri-Query=42"),
            Ok((OptionNumber::URI_QUERY, b"42".to_vec()))
        );
        assert_eq!(
            option("etag=0x0a0B"),
            Ok((OptionNumber::ETAG, vec![10, 11]))
        );
        assert_eq!(option("65000=7"), Ok((OptionNumber(65000), vec![7])));
        assert_eq!(option("65000=x"), Ok((OptionNumber(65000), b"x".to_vec())));
        assert_eq!(option("5"), Ok((OptionNumber::IF_NONE_MATCH, vec![])));
        assert!(option("14=soon").is_err());
        assert!(
            option("4=0x123456789abcdef012").is_err(),
            "ETag is 1-8 bytes"
        );
        assert!(option("nope=1").is_err());
        assert!(option("4=0xzz").is_err());
        assert!(option("4=0xé").is_err());
    }

    #[test]
    fn values_for_people() {
        assert_eq!(
            show_value(OptionNumber::CONTENT_FORMAT, &[50]),
            "application/json (50)"
        );
        assert_eq!(show_value(OptionNumber::ETAG, &[1, 2]), "0x0102");
        assert_eq!(show_value(OptionNumber::URI_PATH, b"a"), "\"a\"");
        assert_eq!(show_value(OptionNumber::BLOCK2, &[0x1e]), "1/1/1024");
    }
}
