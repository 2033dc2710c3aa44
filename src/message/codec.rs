//! The wire format of RFC 7252 §3: decoding a datagram into a [`MessageRef`] and encoding
//! messages into a caller's buffer.
//!
//! Decoding checks everything §3 requires in one pass and allocates nothing: options and
//! payload stay borrowed from the datagram. Encoding writes option deltas and lengths in their
//! shortest form, which is the only form that exists, so a well-formed datagram that is decoded
//! and encoded again comes out byte for byte the same.

use thiserror::Error;

use super::options::{read_option, write_option_header, OptionError, OptionsRef, MAX_EXT};
use super::{Code, MessageRef, OptionNumber, Token, Type};

/// Why a datagram is not a well-formed CoAP message.
///
/// Each variant names the rule of <https://www.rfc-editor.org/rfc/rfc7252#section-3> that the
/// datagram breaks, and where.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer than the 4 bytes of the fixed header.
    #[error("datagram of {0} bytes is shorter than the 4-byte CoAP header")]
    TooShort(usize),
    /// The version field is not 1.
    #[error("CoAP version {0} is not supported (only version 1 is)")]
    Version(u8),
    /// Token length 9 to 15, which are reserved.
    #[error("token length {0} is reserved (a token has 0 to 8 bytes)")]
    TokenLength(u8),
    /// The datagram ends inside the token.
    #[error("datagram ends inside the {0}-byte token")]
    TruncatedToken(u8),
    /// An option's delta or length nibble is 15 without being the payload marker 0xFF.
    #[error("option at byte {0} has the reserved value 15 in its delta or length nibble")]
    ReservedNibble(usize),
    /// The datagram ends inside an option's extended header or value.
    #[error("datagram ends inside the option that starts at byte {0}")]
    TruncatedOption(usize),
    /// Option deltas add up past 65535.
    #[error("option at byte {0} has a number greater than 65535")]
    OptionNumberTooLarge(usize),
    /// The payload marker 0xFF is the last byte.
    #[error("payload marker at the end of the datagram is not followed by a payload")]
    EmptyPayload,
    /// A message with code 0.00 carries a token, options or payload.
    #[error("an empty message (code 0.00) carries {0} bytes after its message ID")]
    EmptyNotEmpty(usize),
}

/// Why a message cannot be encoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// An option value is longer than the wire format can express (65804 bytes).
    #[error("value of option {number} is {len} bytes long; CoAP carries at most 65804")]
    OptionTooLong {
        /// The option.
        number: OptionNumber,
        /// The value's length.
        len: usize,
    },
}

/// Reads the type and message ID of anything that has a 4-byte version-1 header, even if the
/// rest is malformed: enough to reject a malformed Confirmable message with a Reset
/// (<https://www.rfc-editor.org/rfc/rfc7252#section-4.2>).
pub fn peek_header(data: &[u8]) -> Option<(Type, u16)> {
    match data {
        [b0, _, m0, m1, ..] if b0 >> 6 == 1 => {
            Some((Type::from_bits(b0 >> 4), u16::from_be_bytes([*m0, *m1])))
        }
        _ => None,
    }
}

impl<'a> MessageRef<'a> {
    /// Decodes a datagram, borrowing options and payload from it.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] that says which rule of RFC 7252 §3 the datagram breaks.
    ///
    /// ```
    /// use coapio::message::{MessageRef, Code, Type, OptionNumber};
    /// let datagram = [0x41, 0x01, 0x12, 0x34, 0xaa, 0xb5, b'h', b'e', b'l', b'l', b'o'];
    /// let msg = MessageRef::decode(&datagram).unwrap();
    /// assert_eq!((msg.ty, msg.code, msg.message_id), (Type::Con, Code::GET, 0x1234));
    /// assert_eq!(msg.token.as_bytes(), [0xaa]);
    /// assert_eq!(msg.options.get(OptionNumber::URI_PATH), Some(&b"hello"[..]));
    /// ```
    pub fn decode(data: &'a [u8]) -> Result<Self, DecodeError> {
        let [b0, code, m0, m1, rest @ ..] = data else {
            return Err(DecodeError::TooShort(data.len()));
        };
        let version = b0 >> 6;
        if version != 1 {
            return Err(DecodeError::Version(version));
        }
        let tkl = b0 & 0x0f;
        if tkl > 8 {
            return Err(DecodeError::TokenLength(tkl));
        }
        let code = Code(*code);
        if code.is_empty() && !rest.is_empty() {
            return Err(DecodeError::EmptyNotEmpty(rest.len()));
        }
        if rest.len() < usize::from(tkl) {
            return Err(DecodeError::TruncatedToken(tkl));
        }
        let (token, mut cursor) = rest.split_at(usize::from(tkl));
        let options_start = cursor;
        let mut number = 0u32;
        loop {
            let offset = data.len() - cursor.len();
            match read_option(cursor) {
                Ok(Some((delta, _, after))) => {
                    number += delta;
                    if number > 0xffff {
                        return Err(DecodeError::OptionNumberTooLarge(offset));
                    }
                    cursor = after;
                }
                Ok(None) => break,
                Err(OptionError::ReservedNibble) => {
                    return Err(DecodeError::ReservedNibble(offset))
                }
                Err(OptionError::Truncated) => return Err(DecodeError::TruncatedOption(offset)),
            }
        }
        let options = &options_start[..options_start.len() - cursor.len()];
        let payload = match cursor {
            [] => &[][..],
            [0xff] => return Err(DecodeError::EmptyPayload),
            [_marker, payload @ ..] => payload,
        };
        Ok(Self {
            ty: Type::from_bits(b0 >> 4),
            code,
            message_id: u16::from_be_bytes([*m0, *m1]),
            token: Token::from_slice_truncating(token),
            options: OptionsRef::new(options),
            payload,
        })
    }

    /// Appends the message's wire form to `buf`; the options are copied as they are.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        write_header(buf, self.ty, self.code, self.message_id, &self.token);
        buf.extend_from_slice(self.options.as_bytes());
        write_payload(buf, self.payload);
    }
}

pub(super) fn write_header(buf: &mut Vec<u8>, ty: Type, code: Code, mid: u16, token: &Token) {
    let t = token.as_bytes();
    let mid = mid.to_be_bytes();
    buf.extend_from_slice(&[
        0x40 | ((ty as u8) << 4) | t.len() as u8,
        code.0,
        mid[0],
        mid[1],
    ]);
    buf.extend_from_slice(t);
}

pub(super) fn write_payload(buf: &mut Vec<u8>, payload: &[u8]) {
    if !payload.is_empty() {
        buf.push(0xff);
        buf.extend_from_slice(payload);
    }
}

/// Appends options, which must come in number order, to `buf`.
pub(super) fn write_options<'o>(
    buf: &mut Vec<u8>,
    options: impl Iterator<Item = (OptionNumber, &'o [u8])>,
) -> Result<(), EncodeError> {
    let mut last = 0u16;
    for (number, value) in options {
        if value.len() > MAX_EXT as usize {
            return Err(EncodeError::OptionTooLong {
                number,
                len: value.len(),
            });
        }
        debug_assert!(number.0 >= last, "options out of order");
        write_option_header(buf, u32::from(number.0 - last), value.len() as u32);
        buf.extend_from_slice(value);
        last = number.0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn rfc_examples() {
        // RFC 7252 Appendix A-style GET with Uri-Path "temperature", token 0x71.
        let mut d = vec![0x41, 0x01, 0x7d, 0x34, 0x71, 0xbb];
        d.extend_from_slice(b"temperature");
        let m = MessageRef::decode(&d).unwrap();
        assert_eq!(m.ty, Type::Con);
        assert_eq!(m.code, Code::GET);
        assert_eq!(m.message_id, 0x7d34);
        assert_eq!(m.options.iter().count(), 1);
        assert!(m.payload.is_empty());
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(out, d);
    }

    #[test]
    fn header_errors() {
        use DecodeError::*;
        assert_eq!(MessageRef::decode(&[0x40, 1, 0]), Err(TooShort(3)));
        assert_eq!(MessageRef::decode(&[0x80, 1, 0, 0]), Err(Version(2)));
        assert_eq!(MessageRef::decode(&[0x00, 1, 0, 0]), Err(Version(0)));
        assert_eq!(MessageRef::decode(&[0x49, 1, 0, 0]), Err(TokenLength(9)));
        assert_eq!(MessageRef::decode(&[0x4f, 1, 0, 0]), Err(TokenLength(15)));
        assert_eq!(
            MessageRef::decode(&[0x42, 1, 0, 0, 1]),
            Err(TruncatedToken(2))
        );
        assert_eq!(
            MessageRef::decode(&[0x41, 0, 0, 0, 1]),
            Err(EmptyNotEmpty(1))
        );
        assert_eq!(
            MessageRef::decode(&[0x40, 0, 0, 0, 0xff]),
            Err(EmptyNotEmpty(1))
        );
        assert!(MessageRef::decode(&[0x40, 0, 0, 0]).is_ok());
    }

    #[test]
    fn option_errors() {
        use DecodeError::*;
        // delta nibble 15 with length nibble 0
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xf0]),
            Err(ReservedNibble(4))
        );
        // length nibble 15
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xbf]),
            Err(ReservedNibble(4))
        );
        // after a valid option
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xb1, b'a', 0x1f]),
            Err(ReservedNibble(6))
        );
        // value runs past the end
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xb3, b'a']),
            Err(TruncatedOption(4))
        );
        // missing extended delta bytes
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xd0]),
            Err(TruncatedOption(4))
        );
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xe0, 1]),
            Err(TruncatedOption(4))
        );
        // missing extended length bytes
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0x1e, 0]),
            Err(TruncatedOption(4))
        );
        // payload marker with nothing after it
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xff]),
            Err(EmptyPayload)
        );
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0x10, 0xff]),
            Err(EmptyPayload)
        );
        // numbers past 65535
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xe0, 0xff, 0xff]),
            Err(OptionNumberTooLarge(4))
        );
        assert_eq!(
            MessageRef::decode(&[0x40, 1, 0, 0, 0xe0, 0xfc, 0xdb, 0xe0, 0x01, 0x0b]),
            Err(OptionNumberTooLarge(7))
        );
    }

    #[test]
    fn peek() {
        assert_eq!(
            peek_header(&[0x40, 1, 0x12, 0x34, 0xff]),
            Some((Type::Con, 0x1234))
        );
        assert_eq!(peek_header(&[0x5f, 1, 0, 9]), Some((Type::Non, 9)));
        assert_eq!(peek_header(&[0x80, 1, 0, 0]), None);
        assert_eq!(peek_header(&[0x40, 1, 0]), None);
    }

    #[test]
    fn extended_options_round_trip() {
        let mut m = Message::new(Type::Non, Code::POST, 7);
        m.options.push(OptionNumber(2000), vec![7u8; 300]);
        m.options.push(OptionNumber::URI_PATH, vec![b'x'; 20]);
        m.options.push(OptionNumber::IF_NONE_MATCH, []);
        m.payload = b"payload".to_vec();
        let bytes = m.to_bytes().unwrap();
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn too_long_option() {
        let mut m = Message::new(Type::Non, Code::POST, 7);
        m.options
            .push(OptionNumber(2000), vec![0u8; MAX_EXT as usize + 1]);
        assert!(matches!(
            m.to_bytes(),
            Err(EncodeError::OptionTooLong { len: 65805, .. })
        ));
    }
}
