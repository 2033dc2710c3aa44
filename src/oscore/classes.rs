//! Which options are encrypted (Class E, inner) and which stay visible (Class U, outer), and
//! the plaintext they are encrypted in
//! (<https://www.rfc-editor.org/rfc/rfc8613#section-4.1>,
//! [§5.3](https://www.rfc-editor.org/rfc/rfc8613#section-5.3)).
//!
//! The rules are summed up in the module documentation of [`super`].

use crate::message::uri::{Uri, UriError};
use crate::message::{decode_uint, Code, MessageRef, OptionNumber, Options};

use super::OscoreError;

/// The largest option value CoAP's option header can express.
const MAX_OPTION_LEN: usize = 269 + 0xffff;

/// No-Response's "suppress all" value (RFC 7967).
const NO_RESPONSE_ALL: u32 = 26;

/// Whether an option is only ever outer (Class U and not E).
fn is_outer_only(n: OptionNumber) -> bool {
    matches!(
        n,
        OptionNumber::URI_HOST
            | OptionNumber::URI_PORT
            | OptionNumber::PROXY_URI
            | OptionNumber::PROXY_SCHEME
            | OptionNumber::OSCORE
    )
}

/// A message's options split for sending.
#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) outer: Options,
    pub(crate) inner: Options,
    /// The Observe value, when the message has one.
    pub(crate) observe: Option<u32>,
}

/// Splits the options of a message to protect into outer and inner ones.
pub(crate) fn split(options: &Options, request: bool) -> Result<Split, OscoreError> {
    let mut outer = Options::new();
    let mut inner = Options::new();
    let mut observe = None;
    let mut proxy_uri = None;
    for (n, v) in options.iter() {
        match n {
            OptionNumber::OSCORE => return Err(OscoreError::NestedOscore),
            OptionNumber::PROXY_URI => {
                if proxy_uri.replace(v).is_some() {
                    return Err(OscoreError::ProxyUriConflict);
                }
            }
            OptionNumber::OBSERVE => {
                observe = Some(decode_uint(v).unwrap_or(u32::MAX));
                if request {
                    inner.push(n, v);
                } else {
                    inner.push(n, []);
                }
                outer.push(n, v);
            }
            OptionNumber::NO_RESPONSE => {
                inner.push(n, v);
                if request && decode_uint(v) == Some(NO_RESPONSE_ALL) {
                    outer.push(n, v);
                }
            }
            n if is_outer_only(n) => outer.push(n, v),
            n => inner.push(n, v),
        }
    }
    if let Some(value) = proxy_uri {
        let clash = [
            OptionNumber::URI_HOST,
            OptionNumber::URI_PORT,
            OptionNumber::URI_PATH,
            OptionNumber::URI_QUERY,
            OptionNumber::PROXY_SCHEME,
        ];
        if clash.iter().any(|&c| options.contains(c)) {
            return Err(OscoreError::ProxyUriConflict);
        }
        let text = std::str::from_utf8(value).map_err(|_| {
            OscoreError::ProxyUri(UriError::InvalidUtf8 {
                component: "Proxy-Uri option",
            })
        })?;
        let uri = Uri::parse(text).map_err(OscoreError::ProxyUri)?;
        for segment in &uri.path {
            inner.push(OptionNumber::URI_PATH, segment);
        }
        for item in &uri.query {
            inner.push(OptionNumber::URI_QUERY, item);
        }
        let mut base = format!("{}://{}", uri.scheme, uri.host);
        if uri.port != uri.scheme.default_port() {
            base.push_str(&format!(":{}", uri.port));
        }
        outer.push(OptionNumber::PROXY_URI, base);
    }
    Ok(Split {
        outer,
        inner,
        observe,
    })
}

/// The decrypted message with the outer Class U options that stay.
pub(crate) fn merge(outer: &Options, mut inner: Options) -> Options {
    let keep: Vec<_> = outer
        .iter()
        .filter(|&(n, _)| is_outer_only(n) && n != OptionNumber::OSCORE && !inner.contains(n))
        .map(|(n, v)| (n, v.to_vec()))
        .collect();
    for (n, v) in keep {
        inner.push(n, v);
    }
    inner
}

/// The plaintext: code, inner options in CoAP's encoding, and the payload after 0xFF
/// (RFC 8613 §5.3).
pub(crate) fn encode_plaintext(
    code: Code,
    inner: &Options,
    payload: &[u8],
) -> Result<Vec<u8>, OscoreError> {
    let mut out = Vec::with_capacity(1 + inner.len() * 4 + 1 + payload.len());
    out.push(code.0);
    let mut last = 0u16;
    for (n, v) in inner.iter() {
        if v.len() > MAX_OPTION_LEN {
            return Err(OscoreError::MessageTooLong);
        }
        write_option_header(&mut out, u32::from(n.0 - last), v.len() as u32);
        out.extend_from_slice(v);
        last = n.0;
    }
    if !payload.is_empty() {
        out.push(0xff);
        out.extend_from_slice(payload);
    }
    Ok(out)
}

fn write_option_header(buf: &mut Vec<u8>, delta: u32, len: u32) {
    fn ext(v: u32) -> (u8, Vec<u8>) {
        if v < 13 {
            (v as u8, Vec::new())
        } else if v < 269 {
            (13, vec![(v - 13) as u8])
        } else {
            (14, ((v - 269) as u16).to_be_bytes().to_vec())
        }
    }
    let (dn, dext) = ext(delta);
    let (ln, lext) = ext(len);
    buf.push((dn << 4) | ln);
    buf.extend_from_slice(&dext);
    buf.extend_from_slice(&lext);
}

/// Decodes a plaintext into code, options and payload with the CoAP codec; `None` when it is
/// not well-formed.
pub(crate) fn decode_plaintext(plaintext: &[u8]) -> Option<(Code, Options, Vec<u8>)> {
    let (&code, rest) = plaintext.split_first()?;
    // A 4-byte header (version 1, no token) in front makes it a CoAP message.
    let mut datagram = Vec::with_capacity(plaintext.len() + 3);
    datagram.extend_from_slice(&[0x40, code, 0, 0]);
    datagram.extend_from_slice(rest);
    let m = MessageRef::decode(&datagram).ok()?;
    Some((m.code, m.options.to_owned(), m.payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[(OptionNumber, &[u8])]) -> Options {
        list.iter().map(|&(n, v)| (n, v)).collect()
    }

    #[test]
    fn request_split() {
        let o = opts(&[
            (OptionNumber::URI_HOST, b"example.com"),
            (OptionNumber::OBSERVE, &[]),
            (OptionNumber::URI_PORT, &[0x16, 0x34]),
            (OptionNumber::URI_PATH, b"temp"),
            (OptionNumber::MAX_AGE, &[60]),
            (OptionNumber::BLOCK2, &[0x02]),
            (OptionNumber::ECHO, b"echo"),
            (OptionNumber::NO_RESPONSE, &[26]),
            (OptionNumber(65000), b"x"),
        ]);
        let s = split(&o, true).unwrap();
        assert_eq!(s.observe, Some(0));
        assert_eq!(
            s.outer,
            opts(&[
                (OptionNumber::URI_HOST, b"example.com"),
                (OptionNumber::OBSERVE, &[]),
                (OptionNumber::URI_PORT, &[0x16, 0x34]),
                (OptionNumber::NO_RESPONSE, &[26]),
            ])
        );
        assert_eq!(
            s.inner,
            opts(&[
                (OptionNumber::OBSERVE, &[]),
                (OptionNumber::URI_PATH, b"temp"),
                (OptionNumber::MAX_AGE, &[60]),
                (OptionNumber::BLOCK2, &[0x02]),
                (OptionNumber::ECHO, b"echo"),
                (OptionNumber::NO_RESPONSE, &[26]),
                (OptionNumber(65000), b"x"),
            ])
        );
        // No-Response other than 26 stays inside only.
        let s = split(&opts(&[(OptionNumber::NO_RESPONSE, &[2])]), true).unwrap();
        assert!(s.outer.is_empty());
    }

    #[test]
    fn notification_split() {
        let o = opts(&[
            (OptionNumber::OBSERVE, &[0x12, 0x34]),
            (OptionNumber::CONTENT_FORMAT, &[]),
        ]);
        let s = split(&o, false).unwrap();
        assert_eq!(s.observe, Some(0x1234));
        assert_eq!(s.outer, opts(&[(OptionNumber::OBSERVE, &[0x12, 0x34])]));
        assert_eq!(
            s.inner,
            opts(&[
                (OptionNumber::OBSERVE, &[]),
                (OptionNumber::CONTENT_FORMAT, &[])
            ])
        );
    }

    #[test]
    fn proxy_uri_is_decomposed() {
        let o = opts(&[(OptionNumber::PROXY_URI, b"coap://example.com/resource?q=1")]);
        let s = split(&o, true).unwrap();
        assert_eq!(
            s.outer,
            opts(&[(OptionNumber::PROXY_URI, b"coap://example.com")])
        );
        assert_eq!(
            s.inner,
            opts(&[
                (OptionNumber::URI_PATH, b"resource"),
                (OptionNumber::URI_QUERY, b"q=1")
            ])
        );
        let o = opts(&[(OptionNumber::PROXY_URI, b"coaps://[2001:db8::1]:7777")]);
        let s = split(&o, true).unwrap();
        assert_eq!(
            s.outer,
            opts(&[(OptionNumber::PROXY_URI, b"coaps://[2001:db8::1]:7777")])
        );
        assert!(s.inner.is_empty());
        for bad in [&b"http://example.com/x"[..], b"coap://", b"\xff"] {
            let o = opts(&[(OptionNumber::PROXY_URI, bad)]);
            assert!(matches!(split(&o, true), Err(OscoreError::ProxyUri(_))));
        }
        let o = opts(&[
            (OptionNumber::URI_PATH, b"a"),
            (OptionNumber::PROXY_URI, b"coap://example.com/b"),
        ]);
        assert_eq!(split(&o, true).unwrap_err(), OscoreError::ProxyUriConflict);
        let o = opts(&[(OptionNumber::OSCORE, b"")]);
        assert_eq!(split(&o, true).unwrap_err(), OscoreError::NestedOscore);
    }

    #[test]
    fn merge_keeps_class_u_and_drops_outer_class_e() {
        let outer = opts(&[
            (OptionNumber::URI_HOST, b"h"),
            (OptionNumber::OBSERVE, &[5]),
            (OptionNumber::OSCORE, &[0x09, 0x00]),
            (OptionNumber::MAX_AGE, &[0]),
            (OptionNumber::BLOCK2, &[0x0e]),
            (OptionNumber::PROXY_SCHEME, b"coap"),
        ]);
        let inner = opts(&[
            (OptionNumber::URI_PATH, b"p"),
            (OptionNumber::PROXY_SCHEME, b"coaps"),
        ]);
        assert_eq!(
            merge(&outer, inner),
            opts(&[
                (OptionNumber::URI_HOST, b"h"),
                (OptionNumber::URI_PATH, b"p"),
                (OptionNumber::PROXY_SCHEME, b"coaps"),
            ])
        );
    }

    #[test]
    fn plaintext_round_trip() {
        let inner = opts(&[
            (OptionNumber::URI_PATH, b"tv1"),
            (OptionNumber(300), &[1; 20]),
            (OptionNumber(2000), &[2; 300]),
        ]);
        let pt = encode_plaintext(Code::GET, &inner, b"payload").unwrap();
        let (code, o, p) = decode_plaintext(&pt).unwrap();
        assert_eq!((code, o, p), (Code::GET, inner, b"payload".to_vec()));
        assert_eq!(
            encode_plaintext(Code::GET, &opts(&[(OptionNumber::URI_PATH, b"tv1")]), b"").unwrap(),
            [0x01, 0xb3, b't', b'v', b'1']
        );
        assert!(decode_plaintext(&[]).is_none());
        assert!(decode_plaintext(&[0x45, 0xff]).is_none());
        assert!(decode_plaintext(&[0x45, 0xbf]).is_none());
        assert!(decode_plaintext(&[0x00, 0xb1, b'a']).is_none());
        assert_eq!(decode_plaintext(&[0x44]).unwrap().0, Code::CHANGED);
    }
}
