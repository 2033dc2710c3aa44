//! [RFC 8613](https://www.rfc-editor.org/rfc/rfc8613) protects CoAP requests and responses
//! end to end with a pre-shared security context; this module does it as a sans-IO layer.
//! A [`SecurityContext`](crate::oscore::SecurityContext) turns a request's code, options
//! and payload into the OSCORE message's (POST or FETCH, the outer options with the OSCORE
//! option, the ciphertext), and back; the caller keeps header, token and message ID, and
//! which context a token belongs to. Nothing but [`fs`](crate::oscore::fs) touches storage, and nothing the
//! network or the clock: the sequence number bounds that must survive a restart are handed
//! to the caller to store ([`fs::ContextDir`](crate::oscore::fs::ContextDir) stores them the way aiocoap does). The
//! [`Endpoint`](crate::proto::Endpoint) uses contexts for the requests that name one
//! ([`Request::oscore`](crate::proto::Request::oscore)) and for received requests whose OSCORE option names
//! one.
//!
//! ```text
//!   client                                        server
//!   protect_request ─▶ (Protected, RequestBinding)
//!                       POST/FETCH + OSCORE ─────▶ unprotect_request ─▶ (Plain, binding)
//!                                                  protect_response(binding) ─┐
//!   unprotect_response(binding) ◀─ 2.04/2.05 + OSCORE ◀───────────────────────┘
//! ```
//!
//! ```
//! use coapio::message::{Code, OptionNumber, Options};
//! use coapio::oscore::{ContextParams, SecurityContext};
//!
//! let secret = [0x0b; 16];
//! let mut client = SecurityContext::new(ContextParams::new([], [1], secret)).unwrap();
//! let mut server = SecurityContext::new(ContextParams::new([1], [], secret)).unwrap();
//!
//! let mut options = Options::new();
//! options.push(OptionNumber::URI_PATH, "temperature");
//! let (request, binding) = client.protect_request(Code::GET, &options, b"").unwrap();
//! assert_eq!(request.code, Code::POST);                     // the method is encrypted
//! assert!(!request.options.contains(OptionNumber::URI_PATH)); // so is the path
//!
//! let (plain, theirs) = server
//!     .unprotect_request(request.code, &request.options, &request.payload)
//!     .unwrap();
//! assert_eq!((plain.code, plain.options), (Code::GET, options));
//! let response = server
//!     .protect_response(&theirs, Code::CONTENT, &Options::new(), b"22.5 C", false)
//!     .unwrap();
//!
//! let plain = client
//!     .unprotect_response(&binding, response.code, &response.options, &response.payload)
//!     .unwrap();
//! assert_eq!((plain.code, &plain.payload[..]), (Code::CONTENT, &b"22.5 C"[..]));
//! ```
//!
//! # Option classes
//!
//! Which options are encrypted (inner) and which stay visible (outer) follows RFC 8613
//! [§4.1](https://www.rfc-editor.org/rfc/rfc8613#section-4.1). Protecting:
//!
//! - Uri-Host, Uri-Port and Proxy-Scheme stay outer; a Proxy-Uri is split into an outer
//!   Proxy-Uri of scheme, host and port and inner Uri-Path and Uri-Query options
//!   (§4.1.3.3); one that cannot be split (not `coap`/`coaps`) is refused.
//! - Observe goes both ways: a request carries the same value inside and outside (and is
//!   sent as FETCH); a response carries an empty inner Observe and the given value outside
//!   (and is sent as 2.05 Content) (§4.1.3.5).
//! - No-Response is inner; an inner 26 is copied outside for proxies (§4.1.3.6).
//! - Everything else is inner: Block1, Block2, Size1 and Size2 (the application's
//!   block-wise transfer is end to end, §4.1.3.4), Max-Age, Echo and Request-Tag (Class E
//!   when the endpoints use them, RFC 9175), and every unknown option.
//!
//! Verifying discards the outer code and every outer option of Class E, Observe, Block,
//! Max-Age and No-Response included (§8.2 and §8.4, step 1): the decrypted ones are
//! authoritative. Outer Block options are a proxy's fragmentation of the OSCORE message and
//! must be reassembled before verifying (§8.2.1, §8.4.1).
//!
//! # Implementation
//!
//! AEAD (AES-CCM, AES-GCM) and HKDF are RustCrypto's; the CBOR of the key derivation's
//! `info` and of the AAD is written with minicbor. Not implemented: Group OSCORE, the
//! context re-derivation of Appendix B.2, Class I options (none are defined) and
//! signaling messages.

#![forbid(unsafe_code)]

mod algorithm;
mod classes;
mod context;
mod cose;
mod error;
pub mod fs;
mod option;
mod replay;
mod sequence;
#[cfg(test)]
mod tests;

pub use algorithm::{Algorithm, Hkdf};
pub use context::{ContextParams, SecurityContext};
pub use error::{OscoreError, Unverified};
pub use option::OscoreOption;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::message::{Code, Options};

/// An OSCORE message's parts as protecting made them: the outer code, the outer options
/// (Class U options and the OSCORE option) and the ciphertext as payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    /// The outer code: POST or FETCH for a request, 2.04 (Changed) or 2.05 (Content) for a
    /// response (RFC 8613 §4.2).
    pub code: Code,
    /// The outer options, the OSCORE option among them.
    pub options: Options,
    /// The ciphertext.
    pub payload: Vec<u8>,
}

/// A verified message's parts: the decrypted code, options and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plain {
    /// The decrypted code.
    pub code: Code,
    /// The decrypted options with the outer Class U options that stay (Uri-Host, Uri-Port,
    /// Proxy-Uri, Proxy-Scheme, unless the plaintext has the same option), in option order;
    /// no OSCORE option. Outer options of Class E (Observe, Block, Max-Age, …) are
    /// discarded: the inner ones are authoritative (RFC 8613 §8.2 and §8.4, step 1).
    pub options: Options,
    /// The decrypted payload.
    pub payload: Vec<u8>,
    /// The sequence number of the message's Partial IV: always there for a request, there
    /// for a response only when it carries one (notifications do), which is what the client
    /// orders notifications by (RFC 8613 §7.4.1).
    pub partial_iv_seq: Option<u64>,
}

/// What a response is bound to: the request's 'kid' and Partial IV, which go into every
/// response's AAD and, unless the response has a Partial IV of its own, its nonce
/// (RFC 8613 §7.1).
///
/// A client gets one from [`SecurityContext::protect_request`] and keeps it with the
/// request's token (for as long as an observation lasts); a server gets one from
/// [`SecurityContext::unprotect_request`].
///
/// The request's nonce may protect only one response. The binding remembers when it did, so
/// later responses through it (or through clones made afterwards) get a Partial IV of their
/// own whatever the caller asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBinding {
    kid: Vec<u8>,
    piv: Vec<u8>,
    /// Whether a response may reuse the request's nonce: false while the request is not
    /// known to be fresh (RFC 8613 Appendix B.1.2).
    nonce_reusable: bool,
    /// Whether a response reused it already.
    nonce_used: NonceUsed,
    /// Whether the request was an Observe registration (Observe 0).
    observe: bool,
}

impl RequestBinding {
    /// The request's 'kid': the client's Sender ID.
    pub fn kid(&self) -> &[u8] {
        &self.kid
    }

    /// The request's Partial IV.
    pub fn partial_iv(&self) -> &[u8] {
        &self.piv
    }

    /// Whether the request was an Observe registration, so notifications may follow.
    pub fn is_observation(&self) -> bool {
        self.observe
    }
}

/// Whether a response reused a request's nonce: set once, shared by nothing (each clone of
/// a binding has its own), and `Sync` so that errors carrying a binding are.
#[derive(Debug, Default)]
pub(crate) struct NonceUsed(AtomicBool);

impl NonceUsed {
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Clone for NonceUsed {
    fn clone(&self) -> Self {
        Self(AtomicBool::new(self.get()))
    }
}

impl PartialEq for NonceUsed {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for NonceUsed {}
