//! The value of the OSCORE option: the compressed COSE header
//! (<https://www.rfc-editor.org/rfc/rfc8613#section-6.1>).
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+----------------+---+-------------+-----+
//! |0 0 0|h|k|  n  | Partial IV (n) | s | kid context | kid |
//! +-+-+-+-+-+-+-+-+----------------+---+-------------+-----+
//! ```

use super::OscoreError;

const FLAG_K: u8 = 0x08;
const FLAG_H: u8 = 0x10;
const RESERVED: u8 = 0xe0;
const N_MASK: u8 = 0x07;

/// The parameters the OSCORE option carries: Partial IV, 'kid context' and 'kid'.
///
/// ```
/// use coapio::oscore::OscoreOption;
/// let opt = OscoreOption::parse(&[0x19, 0x05, 0x05, b'D', b'a', b'l', b'e', b'k']).unwrap();
/// assert_eq!(opt.partial_iv.as_deref(), Some(&[5u8][..]));
/// assert_eq!(opt.kid_context.as_deref(), Some(&b"Dalek"[..]));
/// assert_eq!(opt.kid.as_deref(), Some(&[][..]));
/// assert_eq!(opt.encode().unwrap(), [0x19, 0x05, 0x05, b'D', b'a', b'l', b'e', b'k']);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OscoreOption {
    /// The Partial IV: 1 to 5 bytes, absent in most responses.
    pub partial_iv: Option<Vec<u8>>,
    /// The 'kid context' (the ID Context), at most 255 bytes.
    pub kid_context: Option<Vec<u8>>,
    /// The 'kid' (the sender's Sender ID), which may be present and empty.
    pub kid: Option<Vec<u8>>,
}

impl OscoreOption {
    /// Decodes an option value.
    ///
    /// # Errors
    ///
    /// [`OscoreError::MalformedOption`] when a reserved flag bit is set, the Partial IV
    /// length is 6 or 7, the value ends inside the Partial IV or the 'kid context', bytes
    /// follow without the 'kid' flag, or the value is a lone flag byte of zero (which
    /// §6.1 says is sent as an empty value).
    pub fn parse(value: &[u8]) -> Result<Self, OscoreError> {
        let Some((&flags, mut rest)) = value.split_first() else {
            return Ok(Self::default());
        };
        if flags & RESERVED != 0 || flags == 0 {
            return Err(OscoreError::MalformedOption);
        }
        let n = usize::from(flags & N_MASK);
        if n > 5 || rest.len() < n {
            return Err(OscoreError::MalformedOption);
        }
        let partial_iv = if n > 0 {
            let (piv, r) = rest.split_at(n);
            rest = r;
            Some(piv.to_vec())
        } else {
            None
        };
        let kid_context = if flags & FLAG_H != 0 {
            let Some((&s, r)) = rest.split_first() else {
                return Err(OscoreError::MalformedOption);
            };
            let s = usize::from(s);
            if r.len() < s {
                return Err(OscoreError::MalformedOption);
            }
            let (ctx, r) = r.split_at(s);
            rest = r;
            Some(ctx.to_vec())
        } else {
            None
        };
        let kid = if flags & FLAG_K != 0 {
            Some(rest.to_vec())
        } else if !rest.is_empty() {
            return Err(OscoreError::MalformedOption);
        } else {
            None
        };
        Ok(Self {
            partial_iv,
            kid_context,
            kid,
        })
    }

    /// Encodes the option value; empty when no parameter is present.
    ///
    /// # Errors
    ///
    /// [`OscoreError::MalformedOption`] when the Partial IV is empty or longer than 5 bytes,
    /// or the 'kid context' is longer than 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, OscoreError> {
        let mut flags = 0u8;
        let mut out = vec![0];
        if let Some(piv) = &self.partial_iv {
            if piv.is_empty() || piv.len() > 5 {
                return Err(OscoreError::MalformedOption);
            }
            flags |= piv.len() as u8;
            out.extend_from_slice(piv);
        }
        if let Some(ctx) = &self.kid_context {
            let s = u8::try_from(ctx.len()).map_err(|_| OscoreError::MalformedOption)?;
            flags |= FLAG_H;
            out.push(s);
            out.extend_from_slice(ctx);
        }
        if let Some(kid) = &self.kid {
            flags |= FLAG_K;
            out.extend_from_slice(kid);
        }
        if flags == 0 {
            return Ok(Vec::new());
        }
        out[0] = flags;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(piv: Option<&[u8]>, ctx: Option<&[u8]>, kid: Option<&[u8]>) -> OscoreOption {
        OscoreOption {
            partial_iv: piv.map(<[u8]>::to_vec),
            kid_context: ctx.map(<[u8]>::to_vec),
            kid: kid.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn rfc8613_section_6_3_examples() {
        let cases: [(&[u8], OscoreOption); 5] = [
            (&[0x09, 0x05, 0x25], opt(Some(&[5]), None, Some(&[0x25]))),
            (&[0x09, 0x00], opt(Some(&[0]), None, Some(&[]))),
            (
                &[0x19, 0x05, 0x05, 0x44, 0x61, 0x6c, 0x65, 0x6b],
                opt(Some(&[5]), Some(b"Dalek"), Some(&[])),
            ),
            (&[], opt(None, None, None)),
            (&[0x01, 0x07], opt(Some(&[7]), None, None)),
        ];
        for (wire, value) in cases {
            assert_eq!(OscoreOption::parse(wire).unwrap(), value, "{wire:02x?}");
            assert_eq!(value.encode().unwrap(), wire);
        }
    }

    #[test]
    fn malformed_values() {
        for wire in [
            &[0x00][..],               // flags all zero must be sent empty
            &[0x20],                   // reserved bit
            &[0x80, 0x01],             // reserved bit
            &[0x06, 1, 2, 3, 4, 5, 6], // n = 6
            &[0x07, 1, 2, 3, 4, 5, 6, 7],
            &[0x02, 0x01],       // truncated Partial IV
            &[0x10],             // h without s
            &[0x11, 0x01],       // h without s after the Partial IV
            &[0x10, 0x03, 0xaa], // kid context truncated
            &[0x01, 0x01, 0x02], // trailing byte without k
        ] {
            assert_eq!(
                OscoreOption::parse(wire),
                Err(OscoreError::MalformedOption),
                "{wire:02x?}"
            );
        }
        assert!(opt(Some(&[]), None, None).encode().is_err());
        assert!(opt(Some(&[0; 6]), None, None).encode().is_err());
        assert!(opt(None, Some(&[0; 256]), None).encode().is_err());
        assert_eq!(opt(None, Some(&[]), None).encode().unwrap(), [0x10, 0x00]);
    }
}
