//! The CBOR structures and the nonce of OSCORE's COSE_Encrypt0 objects: the HKDF `info`
//! (<https://www.rfc-editor.org/rfc/rfc8613#section-3.2.1>), the AEAD nonce
//! ([§5.2](https://www.rfc-editor.org/rfc/rfc8613#section-5.2)) and the AAD
//! ([§5.4](https://www.rfc-editor.org/rfc/rfc8613#section-5.4)).
//!
//! The CBOR is written with minicbor's encoder. Writing into a `Vec` cannot fail, so the
//! encoder's `Result` (there because it is generic over writers) is only checked in debug
//! builds.

use std::convert::Infallible;

use minicbor::encode::Error;
use minicbor::Encoder;

use super::Algorithm;

/// The largest Partial IV: 2^40 − 1, five bytes (RFC 8613 §7.2.1).
pub(crate) const MAX_SEQUENCE: u64 = (1 << 40) - 1;

type CborResult = Result<(), Error<Infallible>>;

fn cbor(f: impl FnOnce(&mut Encoder<&mut Vec<u8>>) -> CborResult) -> Vec<u8> {
    let mut out = Vec::new();
    let r = f(&mut Encoder::new(&mut out));
    debug_assert!(r.is_ok(), "CBOR into a Vec cannot fail");
    out
}

/// What an HKDF output is for: the `type` and `L` of the `info` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Key,
    Iv,
}

/// `info = [id, id_context / nil, alg_aead, type, L]`, serialized.
pub(crate) fn info(
    id: &[u8],
    id_context: Option<&[u8]>,
    alg: Algorithm,
    output: Output,
) -> Vec<u8> {
    let (label, len) = match output {
        Output::Key => ("Key", alg.key_len()),
        Output::Iv => ("IV", alg.nonce_len()),
    };
    cbor(|e| {
        e.array(5)?.bytes(id)?;
        match id_context {
            Some(c) => e.bytes(c)?,
            None => e.null()?,
        };
        e.i64(alg.cose_id())?.str(label)?.u64(len as u64)?;
        Ok(())
    })
}

/// `Enc_structure = ["Encrypt0", h'', external_aad]` with
/// `external_aad = bstr .cbor [1, [alg_aead], request_kid, request_piv, h'']` (no Class I
/// options are defined).
pub(crate) fn aad(alg: Algorithm, request_kid: &[u8], request_piv: &[u8]) -> Vec<u8> {
    let external = cbor(|e| {
        e.array(5)?
            .u8(1)?
            .array(1)?
            .i64(alg.cose_id())?
            .bytes(request_kid)?
            .bytes(request_piv)?
            .bytes(&[])?;
        Ok(())
    });
    cbor(|e| {
        e.array(3)?.str("Encrypt0")?.bytes(&[])?.bytes(&external)?;
        Ok(())
    })
}

/// The AEAD nonce: the length of `id_piv`, `id_piv` left-padded to the nonce length minus 6,
/// `piv` left-padded to 5 bytes, XORed with the Common IV. `None` when `id_piv` or `piv` is
/// too long to fit, which the callers have already ruled out.
pub(crate) fn nonce(common_iv: &[u8], id_piv: &[u8], piv: &[u8]) -> Option<Vec<u8>> {
    let n = common_iv.len();
    if n < 7 || id_piv.len() > n - 6 || piv.len() > 5 {
        return None;
    }
    let mut out = vec![0u8; n];
    out[0] = id_piv.len() as u8;
    out[n - 5 - id_piv.len()..n - 5].copy_from_slice(id_piv);
    out[n - piv.len()..].copy_from_slice(piv);
    for (o, c) in out.iter_mut().zip(common_iv) {
        *o ^= c;
    }
    Some(out)
}

/// A sequence number as a Partial IV: big-endian without leading zero bytes, except that 0
/// is `[0]` (RFC 8613 §5).
pub(crate) fn encode_piv(seq: u64) -> Vec<u8> {
    let bytes = seq.to_be_bytes();
    let skip = (seq.leading_zeros() / 8).min(7) as usize;
    bytes[skip..].to_vec()
}

/// A Partial IV (at most 5 bytes, as the option parser ensures) as a sequence number.
pub(crate) fn decode_piv(piv: &[u8]) -> u64 {
    piv.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn info_matches_rfc8613_appendix_c() {
        let alg = Algorithm::AesCcm16_64_128;
        // C.1.1
        assert_eq!(info(&[], None, alg, Output::Key), h("8540f60a634b657910"));
        assert_eq!(
            info(&[1], None, alg, Output::Key),
            h("854101f60a634b657910")
        );
        assert_eq!(info(&[], None, alg, Output::Iv), h("8540f60a6249560d"));
        // C.3.1
        let ctx = h("37cbf3210017a2d3");
        assert_eq!(
            info(&[1], Some(&ctx), alg, Output::Key),
            h("8541014837cbf3210017a2d30a634b657910")
        );
        assert_eq!(
            info(&[], Some(&ctx), alg, Output::Iv),
            h("85404837cbf3210017a2d30a6249560d")
        );
    }

    #[test]
    fn aad_matches_rfc8613() {
        let alg = Algorithm::AesCcm16_64_128;
        // §5.4 example and C.4.
        assert_eq!(
            aad(alg, &[0x00], &[0x25]),
            h("8368456e63727970743040498501810a4100412540")
        );
        assert_eq!(
            aad(alg, &[], &[0x14]),
            h("8368456e63727970743040488501810a40411440")
        );
    }

    #[test]
    fn nonce_and_piv() {
        let iv = h("4622d4dd6d944168eefb54987c");
        assert_eq!(nonce(&iv, &[], &[0]).unwrap(), iv);
        assert_eq!(
            nonce(&iv, &[1], &[0]).unwrap(),
            h("4722d4dd6d944169eefb54987c")
        );
        assert_eq!(
            nonce(&iv, &[], &[0x14]).unwrap(),
            h("4622d4dd6d944168eefb549868")
        );
        assert!(nonce(&iv, &[0; 8], &[0]).is_none());
        assert!(nonce(&iv, &[], &[0; 6]).is_none());
        assert!(nonce(&iv[..6], &[], &[0]).is_none());
        assert_eq!(encode_piv(0), [0]);
        assert_eq!(encode_piv(20), [0x14]);
        assert_eq!(encode_piv(256), [1, 0]);
        assert_eq!(encode_piv(MAX_SEQUENCE), [0xff; 5]);
        assert_eq!(decode_piv(&[0xff; 5]), MAX_SEQUENCE);
        assert_eq!(decode_piv(&[0, 0, 5]), 5);
    }
}
