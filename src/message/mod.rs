//! The CoAP message and its wire format (RFC 7252 §3, §5.4, §5.10, §12), block option values
//! (RFC 7959) and URIs (RFC 7252 §6).
//!
//! This layer is pure: no I/O, no clock, no randomness. Two message types share one codec:
//!
//! - [`MessageRef`] borrows options and payload from the datagram it was decoded from; decoding
//!   validates the whole datagram and allocates nothing.
//! - [`Message`] owns its parts and is what one builds to send.
//!
//! ```
//! use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};
//! let mut msg = Message::new(Type::Con, Code::GET, 0x1234);
//! msg.token = Token::from_slice(&[1, 2, 3, 4]).unwrap();
//! msg.options.push(OptionNumber::URI_PATH, "hello");
//! let bytes = msg.to_bytes().unwrap();
//! let back = MessageRef::decode(&bytes).unwrap();
//! assert_eq!(back.options.get(OptionNumber::URI_PATH), Some(&b"hello"[..]));
//! assert_eq!(back.to_owned(), msg);
//! ```

#![forbid(unsafe_code)]

use std::fmt;

mod block;
mod code;
mod codec;
mod content_format;
mod option;
mod options;
pub mod uri;

pub use block::{BlockError, BlockValue};
pub use code::Code;
pub use codec::{peek_header, DecodeError, EncodeError};
pub use content_format::ContentFormat;
pub use option::{decode_uint, encode_uint, OptionFormat, OptionInfo, OptionNumber, REGISTRY};
pub use options::{Options, OptionsIter, OptionsRef};

/// The message type of <https://www.rfc-editor.org/rfc/rfc7252#section-4>.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Type {
    /// Confirmable: retransmitted until acknowledged.
    Con = 0,
    /// Non-confirmable: sent once.
    Non = 1,
    /// Acknowledgement of a Confirmable message, possibly carrying the response.
    Ack = 2,
    /// Reset: the recipient could not process the message.
    Rst = 3,
}

impl Type {
    /// The type from the two low bits of `bits`.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0x03 {
            0 => Self::Con,
            1 => Self::Non,
            2 => Self::Ack,
            _ => Self::Rst,
        }
    }
}

/// A token: 0 to 8 bytes that match a response to its request
/// (<https://www.rfc-editor.org/rfc/rfc7252#section-5.3.1>). Stored inline; `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    /// The zero-length token.
    pub const EMPTY: Self = Self {
        len: 0,
        bytes: [0; 8],
    };

    /// The token with the given bytes, or `None` if there are more than 8.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        (bytes.len() <= 8).then(|| Self::from_slice_truncating(bytes))
    }

    pub(crate) fn from_slice_truncating(bytes: &[u8]) -> Self {
        let len = bytes.len().min(8);
        let mut t = Self {
            len: len as u8,
            bytes: [0; 8],
        };
        t.bytes[..len].copy_from_slice(&bytes[..len]);
        t
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The token's length in bytes.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the token has no bytes.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A decoded message that borrows its options and payload from the datagram.
///
/// Made by [`MessageRef::decode`]; [`MessageRef::to_owned`] copies it into a [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// The message type.
    pub ty: Type,
    /// The method or response code.
    pub code: Code,
    /// The message ID.
    pub message_id: u16,
    /// The token.
    pub token: Token,
    /// The options, still in wire form.
    pub options: OptionsRef<'a>,
    /// The payload (empty when there is none).
    pub payload: &'a [u8],
}

impl MessageRef<'_> {
    /// The size of the datagram the message was decoded from.
    pub fn wire_len(&self) -> usize {
        let payload = if self.payload.is_empty() {
            0
        } else {
            1 + self.payload.len()
        };
        4 + self.token.len() + self.options.as_bytes().len() + payload
    }

    /// Copies the message into an owned [`Message`].
    pub fn to_owned(&self) -> Message {
        Message {
            ty: self.ty,
            code: self.code,
            message_id: self.message_id,
            token: self.token,
            options: self.options.to_owned(),
            payload: self.payload.to_vec(),
        }
    }
}

/// A CoAP message that owns its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message type.
    pub ty: Type,
    /// The method or response code.
    pub code: Code,
    /// The message ID.
    pub message_id: u16,
    /// The token.
    pub token: Token,
    /// The options.
    pub options: Options,
    /// The payload (empty when there is none).
    pub payload: Vec<u8>,
}

impl Message {
    /// The size of its encoding in bytes, for a buffer of exactly that size.
    pub fn encoded_len(&self) -> usize {
        let payload = if self.payload.is_empty() {
            0
        } else {
            1 + self.payload.len()
        };
        4 + self.token.len() + self.options.encoded_len() + payload
    }

    /// A message with no token, options or payload.
    pub const fn new(ty: Type, code: Code, message_id: u16) -> Self {
        Self {
            ty,
            code,
            message_id,
            token: Token::EMPTY,
            options: Options::new(),
            payload: Vec::new(),
        }
    }

    /// Decodes a datagram into an owned message.
    ///
    /// # Errors
    ///
    /// As [`MessageRef::decode`].
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        MessageRef::decode(data).map(|m| m.to_owned())
    }

    /// Appends the message's wire form to `buf`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::OptionTooLong`] when an option value exceeds what CoAP can carry; `buf`
    /// then holds a partial message.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        codec::write_header(buf, self.ty, self.code, self.message_id, &self.token);
        codec::write_options(buf, self.options.iter())?;
        codec::write_payload(buf, &self.payload);
        Ok(())
    }

    /// The message's wire form in a new buffer.
    ///
    /// # Errors
    ///
    /// As [`Message::encode`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(16 + self.payload.len() + self.options.len() * 8);
        self.encode(&mut buf)?;
        Ok(buf)
    }
}

/// Encodes a message from borrowed parts into `buf` (what [`Message::encode`] writes, with no
/// [`Message`] built), with room made for exactly its size first.
///
/// # Errors
///
/// As [`Message::encode`].
pub(crate) fn encode_parts(
    (ty, code, message_id, token): (Type, Code, u16, &Token),
    options: &Options,
    payload: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let payload_len = if payload.is_empty() {
        0
    } else {
        1 + payload.len()
    };
    buf.reserve(4 + token.len() + options.encoded_len() + payload_len);
    codec::write_header(buf, ty, code, message_id, token);
    codec::write_options(buf, options.iter())?;
    codec::write_payload(buf, payload);
    Ok(())
}

/// Encodes an empty message (an empty ACK, a Reset or a ping) in 4 bytes.
pub fn encode_empty(ty: Type, message_id: u16, buf: &mut Vec<u8>) {
    codec::write_header(buf, ty, Code::EMPTY, message_id, &Token::EMPTY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_len_and_encoded_len_match_the_encoding() {
        let mut options = Options::new();
        options.push(OptionNumber::URI_PATH, "a");
        options.push(OptionNumber::URI_PATH, vec![b'x'; 300]);
        options.push(OptionNumber::ECHO, [1u8; 12]);
        options.push(OptionNumber::REQUEST_TAG, [2u8; 3]);
        for payload in [Vec::new(), b"hello".to_vec()] {
            let msg = Message {
                ty: Type::Con,
                code: Code::GET,
                message_id: 7,
                token: Token::from_slice(&[1, 2, 3]).unwrap(),
                options: options.clone(),
                payload,
            };
            let wire = msg.to_bytes().unwrap();
            let m = MessageRef::decode(&wire).unwrap();
            assert_eq!(m.wire_len(), wire.len());
            assert_eq!(msg.encoded_len(), wire.len());
            assert_eq!(m.options.as_bytes().len(), options.encoded_len());
        }
    }

    #[test]
    fn token() {
        assert!(Token::from_slice(&[0; 9]).is_none());
        let t = Token::from_slice(&[0xde, 0xad]).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(format!("{t:?}"), "Token(dead)");
        assert_ne!(t, Token::from_slice(&[0xde, 0xad, 0]).unwrap());
        assert!(Token::EMPTY.is_empty());
    }

    #[test]
    fn empty_messages() {
        let mut buf = Vec::new();
        encode_empty(Type::Rst, 0xbeef, &mut buf);
        assert_eq!(buf, [0x70, 0, 0xbe, 0xef]);
        let m = MessageRef::decode(&buf).unwrap();
        assert_eq!(
            (m.ty, m.code, m.message_id),
            (Type::Rst, Code::EMPTY, 0xbeef)
        );
    }
}
