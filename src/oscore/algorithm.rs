//! The AEAD algorithms and the HKDF a security context can use, and the two operations
//! OSCORE asks of them: sealing or opening one COSE_Encrypt0 ciphertext, and deriving keys
//! (<https://www.rfc-editor.org/rfc/rfc8613#section-3.2.1>). Both come from RustCrypto;
//! nothing here is written by hand.

use aes::Aes128;
use aes_gcm::Aes128Gcm;
use ccm::aead::generic_array::typenum::Unsigned;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadCore, AeadInPlace, KeyInit};
use ccm::consts::{U13, U16, U8};
use ccm::Ccm;
use hkdf::Hkdf as RustHkdf;
use sha2::Sha256;

type Ccm16_64_128 = Ccm<Aes128, U8, U13>;
type Ccm16_128_128 = Ccm<Aes128, U16, U13>;

/// The AEAD algorithm of a security context (RFC 8613 §3.1, COSE algorithms of RFC 9053).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-CCM-16-64-128 (COSE 10): 16-byte key, 13-byte nonce, 8-byte tag. The default and
    /// mandatory to implement (RFC 8613 §5).
    #[default]
    AesCcm16_64_128,
    /// AES-CCM-16-128-128 (COSE 30): 16-byte key, 13-byte nonce, 16-byte tag.
    AesCcm16_128_128,
    /// AES-GCM with a 128-bit key (COSE 1): 16-byte key, 12-byte nonce, 16-byte tag.
    A128Gcm,
}

impl Algorithm {
    /// The algorithm with COSE identifier `id`, if it is one of those supported.
    pub const fn from_cose(id: i64) -> Option<Self> {
        match id {
            10 => Some(Self::AesCcm16_64_128),
            30 => Some(Self::AesCcm16_128_128),
            1 => Some(Self::A128Gcm),
            _ => None,
        }
    }

    /// The algorithm's COSE identifier, which goes into the key derivation and the AAD.
    pub const fn cose_id(self) -> i64 {
        match self {
            Self::AesCcm16_64_128 => 10,
            Self::AesCcm16_128_128 => 30,
            Self::A128Gcm => 1,
        }
    }

    /// The algorithm by the name aiocoap's `settings.json` uses (`"AES-CCM-16-64-128"`,
    /// `"AES-CCM-16-128-128"`, `"A128GCM"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "AES-CCM-16-64-128" => Some(Self::AesCcm16_64_128),
            "AES-CCM-16-128-128" => Some(Self::AesCcm16_128_128),
            "A128GCM" => Some(Self::A128Gcm),
            _ => None,
        }
    }

    /// The name [`from_name`](Self::from_name) reads.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AesCcm16_64_128 => "AES-CCM-16-64-128",
            Self::AesCcm16_128_128 => "AES-CCM-16-128-128",
            Self::A128Gcm => "A128GCM",
        }
    }

    /// The key length in bytes.
    pub const fn key_len(self) -> usize {
        16
    }

    /// The nonce length in bytes, which is also the Common IV's.
    pub const fn nonce_len(self) -> usize {
        match self {
            Self::AesCcm16_64_128 | Self::AesCcm16_128_128 => 13,
            Self::A128Gcm => 12,
        }
    }

    /// The authentication tag length in bytes, which a ciphertext is longer than its
    /// plaintext.
    pub const fn tag_len(self) -> usize {
        match self {
            Self::AesCcm16_64_128 => 8,
            Self::AesCcm16_128_128 | Self::A128Gcm => 16,
        }
    }

    /// The longest Sender or Recipient ID: the nonce length minus 6
    /// (<https://www.rfc-editor.org/rfc/rfc8613#section-3.3>).
    pub const fn max_id_len(self) -> usize {
        self.nonce_len() - 6
    }

    /// The longest plaintext the algorithm can encrypt: CCM with a 13-byte nonce has 2
    /// bytes left for the length (RFC 3610 §2), GCM far more than CoAP carries.
    pub(crate) const fn max_plaintext_len(self) -> usize {
        match self {
            Self::AesCcm16_64_128 | Self::AesCcm16_128_128 => 0xffff,
            Self::A128Gcm => usize::MAX,
        }
    }

    /// Encrypts `plaintext` and appends the tag; `None` when the key or nonce has the wrong
    /// length or the plaintext is too long.
    pub(crate) fn seal(
        self,
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Option<Vec<u8>> {
        match self {
            Self::AesCcm16_64_128 => seal::<Ccm16_64_128>(key, nonce, aad, plaintext),
            Self::AesCcm16_128_128 => seal::<Ccm16_128_128>(key, nonce, aad, plaintext),
            Self::A128Gcm => seal::<Aes128Gcm>(key, nonce, aad, plaintext),
        }
    }

    /// Checks the tag at the end of `ciphertext` and decrypts the rest; `None` when the tag
    /// does not verify or any length is wrong.
    pub(crate) fn open(
        self,
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Option<Vec<u8>> {
        match self {
            Self::AesCcm16_64_128 => open::<Ccm16_64_128>(key, nonce, aad, ciphertext),
            Self::AesCcm16_128_128 => open::<Ccm16_128_128>(key, nonce, aad, ciphertext),
            Self::A128Gcm => open::<Aes128Gcm>(key, nonce, aad, ciphertext),
        }
    }
}

fn seal<A: AeadInPlace + KeyInit>(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let cipher = A::new_from_slice(key).ok()?;
    if nonce.len() != <A as AeadCore>::NonceSize::to_usize() {
        return None;
    }
    let nonce = GenericArray::from_slice(nonce);
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(nonce, aad, &mut buf)
        .ok()?;
    buf.extend_from_slice(&tag);
    Some(buf)
}

fn open<A: AeadInPlace + KeyInit>(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    let cipher = A::new_from_slice(key).ok()?;
    let tag_len = <A as AeadCore>::TagSize::to_usize();
    if nonce.len() != <A as AeadCore>::NonceSize::to_usize() || ciphertext.len() < tag_len {
        return None;
    }
    let nonce = GenericArray::from_slice(nonce);
    let (body, tag) = ciphertext.split_at(ciphertext.len() - tag_len);
    let mut buf = body.to_vec();
    cipher
        .decrypt_in_place_detached(nonce, aad, &mut buf, GenericArray::from_slice(tag))
        .ok()?;
    Some(buf)
}

/// The HKDF of a security context (RFC 8613 §3.2.1; the HMAC-based HKDFs of RFC 9053 §5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hkdf {
    /// HKDF with SHA-256, the default and mandatory to implement.
    #[default]
    Sha256,
}

impl Hkdf {
    /// The HKDF by the name aiocoap's `settings.json` uses for `kdf-hashfun` (`"sha256"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// HKDF-Extract and -Expand to `len` bytes; `None` only when `len` exceeds what the hash
    /// can expand to (255 × 32 bytes), which no key or IV does.
    pub(crate) fn derive(
        self,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Option<Vec<u8>> {
        match self {
            Self::Sha256 => {
                // An empty salt and no salt are the same: HMAC pads its key with zeros
                // (RFC 8613 §3.2.1's closing note).
                let hk = RustHkdf::<Sha256>::new(Some(salt), ikm);
                let mut out = vec![0; len];
                hk.expand(info, &mut out).ok()?;
                Some(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip() {
        for alg in [
            Algorithm::AesCcm16_64_128,
            Algorithm::AesCcm16_128_128,
            Algorithm::A128Gcm,
        ] {
            assert_eq!(Algorithm::from_cose(alg.cose_id()), Some(alg));
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Algorithm::from_cose(11), None);
        assert_eq!(Algorithm::from_name("aes-ccm-16-64-128"), None);
        assert_eq!(Hkdf::from_name("sha256"), Some(Hkdf::Sha256));
        assert_eq!(Hkdf::from_name("sha512"), None);
        assert_eq!(Algorithm::default().max_id_len(), 7);
        assert_eq!(Algorithm::A128Gcm.max_id_len(), 6);
    }

    #[test]
    fn seal_and_open_reject_bad_lengths() {
        let alg = Algorithm::AesCcm16_64_128;
        let key = [7u8; 16];
        let nonce = [1u8; 13];
        let ct = alg.seal(&key, &nonce, b"aad", b"hello").unwrap();
        assert_eq!(ct.len(), 5 + 8);
        assert_eq!(alg.open(&key, &nonce, b"aad", &ct).unwrap(), b"hello");
        assert!(alg.open(&key, &nonce, b"aaX", &ct).is_none());
        assert!(alg.open(&key, &nonce[..12], b"aad", &ct).is_none());
        assert!(alg.open(&key[..15], &nonce, b"aad", &ct).is_none());
        assert!(alg.open(&key, &nonce, b"aad", &ct[..7]).is_none());
        assert!(alg.seal(&key, &nonce[..12], b"", b"x").is_none());
        assert!(Algorithm::A128Gcm.seal(&key, &nonce, b"", b"x").is_none());
    }
}
