//! What can go wrong protecting or verifying a message, and how a server answers it
//! (<https://www.rfc-editor.org/rfc/rfc8613#section-8.2>).

use thiserror::Error;

use crate::message::uri::UriError;
use crate::message::Code;

use super::{Plain, RequestBinding};

/// Why a message could not be protected or verified.
///
/// Errors from verifying a received message say what to answer in
/// [`response`](Self::response); the others are the local caller's to handle.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OscoreError {
    /// The message to verify has no OSCORE option: it is not OSCORE-protected. (A server's
    /// unprotected error response to an OSCORE request looks like this.)
    #[error("the message has no OSCORE option, so it is not OSCORE-protected")]
    NotProtected,
    /// The OSCORE option value cannot be decoded (RFC 8613 §6.1), or occurs twice.
    #[error("the OSCORE option value is malformed")]
    MalformedOption,
    /// The 'kid' or 'kid context' does not name this security context.
    #[error("the message's 'kid' or 'kid context' does not match this security context")]
    UnknownContext,
    /// The COSE object is incomplete (a request without 'kid' or Partial IV, a ciphertext
    /// shorter than a tag) or its decrypted content is not a well-formed CoAP message of the
    /// right kind.
    #[error("the COSE object or its decrypted content cannot be decoded")]
    DecodeFailed,
    /// The ciphertext does not verify: wrong key, tampered message or wrong request binding.
    #[error("decryption failed: the ciphertext does not verify")]
    DecryptionFailed,
    /// The request's Partial IV was seen before or is below the replay window.
    #[error("replay detected: the request's sequence number was already received")]
    Replay,
    /// The request verified, but the replay window is uninitialized (after a restart,
    /// RFC 8613 Appendix B.1.2), so it may be a replay. The decrypted request is inside:
    /// answer with an Echo challenge, or initialise the window if its Echo option proves
    /// it fresh (see [`SecurityContext::accept_fresh`](super::SecurityContext::accept_fresh)).
    #[error("the replay window is uninitialized: freshness must be established with Echo")]
    ReplayWindowUninitialized(Box<Unverified>),
    /// A response carries an inner Observe option but the request was no Observe
    /// registration (RFC 8613 §4.1.3.5.2).
    #[error("the response carries Observe but the request was no Observe registration")]
    UnexpectedObserve,
    /// Every sequence number (up to 2^40 − 1) is used: the context must be replaced
    /// (RFC 8613 §7.2.1).
    #[error("the sender sequence numbers are exhausted; a new security context is needed")]
    SequenceExhausted,
    /// No sequence number may be used until the bound from
    /// [`take_persist_request`](super::SecurityContext::take_persist_request) is stored and
    /// confirmed with [`confirm_persisted`](super::SecurityContext::confirm_persisted).
    #[error("sequence numbers wait for a persisted bound: store it and call confirm_persisted")]
    SequencePersistPending,
    /// A Sender or Recipient ID is longer than the algorithm allows (the nonce length
    /// minus 6).
    #[error("an ID of {len} bytes is too long: this algorithm allows at most {max}")]
    IdTooLong {
        /// The ID's length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// The context parameters are unusable; the text says which.
    #[error("invalid security context parameters: {0}")]
    InvalidParams(&'static str),
    /// The message to protect already has an OSCORE option (nesting is not supported,
    /// RFC 8613 §4.1.3.7).
    #[error("the message already has an OSCORE option; OSCORE cannot be nested")]
    NestedOscore,
    /// The code is not a request code for a request, or not a response code for a
    /// response.
    #[error("code {0} is not of the kind (request or response) this call protects")]
    CodeMismatch(Code),
    /// The request binding belongs to another security context or the other direction.
    #[error("the request binding does not belong to this security context")]
    WrongBinding,
    /// The Proxy-Uri option cannot be split into Proxy-Scheme, Uri-Host, Uri-Port,
    /// Uri-Path and Uri-Query as RFC 8613 §4.1.3.3 requires (only coap and coaps URIs
    /// can), or comes with Uri-* options.
    #[error("the Proxy-Uri option cannot be decomposed for OSCORE: {0}")]
    ProxyUri(UriError),
    /// A Proxy-Uri option comes twice, or together with Proxy-Scheme or Uri-* options
    /// (RFC 7252 §5.10.2 makes them exclusive).
    #[error(
        "a Proxy-Uri option cannot be repeated or combined with Proxy-Scheme or Uri-* options"
    )]
    ProxyUriConflict,
    /// The message is too long for the AEAD algorithm (AES-CCM with a 13-byte nonce takes
    /// at most 65535 bytes) or an option value too long for CoAP.
    #[error("the message is too long to protect")]
    MessageTooLong,
}

impl OscoreError {
    /// The unprotected error response a server may send when verifying a request failed
    /// (RFC 8613 §8.2 and §7.4), as code and diagnostic payload; `None` for errors that have
    /// none (local errors, and [`OscoreError::ReplayWindowUninitialized`], which is answered
    /// with a *protected* 4.01 carrying Echo).
    ///
    /// The response is sent without OSCORE; the server may add an Outer Max-Age of 0 to
    /// keep proxies from caching it (§4.1.3.1). A client never answers a response.
    pub fn response(&self) -> Option<(Code, &'static str)> {
        Some(match self {
            Self::MalformedOption | Self::DecodeFailed => {
                (Code::BAD_OPTION, "Failed to decode COSE")
            }
            Self::UnknownContext => (Code::UNAUTHORIZED, "Security context not found"),
            Self::DecryptionFailed => (Code::BAD_REQUEST, "Decryption failed"),
            Self::Replay => (Code::UNAUTHORIZED, "Replay detected"),
            _ => return None,
        })
    }
}

/// A request that decrypted and verified but whose freshness is unknown, because the replay
/// window is uninitialized (RFC 8613 Appendix B.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    /// The decrypted request; its Echo option is what may prove it fresh.
    pub plain: Plain,
    /// The binding to protect the answer with. It forbids reusing the request's nonce, so
    /// the 4.01 Echo response carries a Partial IV of its own, as Appendix B.1.2 requires.
    pub binding: RequestBinding,
    /// The request's sequence number (its Partial IV).
    pub sequence: u64,
}
