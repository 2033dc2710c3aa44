//! The security context (<https://www.rfc-editor.org/rfc/rfc8613#section-3>) and the four
//! operations of [§8](https://www.rfc-editor.org/rfc/rfc8613#section-8): protecting and
//! verifying requests and responses.

use std::fmt;

use crate::message::{decode_uint, Code, OptionNumber, Options};

use super::classes::{decode_plaintext, encode_plaintext, merge, split};
use super::cose::{aad, decode_piv, encode_piv, info, nonce, Output};
use super::replay::{ReplayWindow, MAX_WINDOW};
use super::sequence::SenderSequence;
use super::NonceUsed;
use super::{
    Algorithm, Hkdf, OscoreError, OscoreOption, Plain, Protected, RequestBinding, Unverified,
};

/// The low 24 bits of a Partial IV, as the Observe value of a decrypted notification
/// (RFC 8613 §4.1.3.5.2).
const OBSERVE_MASK: u64 = 0xff_ffff;

/// The input parameters a security context is derived from (RFC 8613 §3.2).
///
/// [`ContextParams::new`] takes the three that must be agreed on and sets the defaults of
/// §3.2 for the rest; change the public fields for anything else.
#[derive(Clone, PartialEq, Eq)]
pub struct ContextParams {
    /// This endpoint's Sender ID (the 'kid' of its requests).
    pub sender_id: Vec<u8>,
    /// The peer's Sender ID.
    pub recipient_id: Vec<u8>,
    /// The Master Secret.
    pub master_secret: Vec<u8>,
    /// The Master Salt; empty by default.
    pub master_salt: Vec<u8>,
    /// The ID Context, if any.
    pub id_context: Option<Vec<u8>>,
    /// The AEAD algorithm; AES-CCM-16-64-128 by default.
    pub algorithm: Algorithm,
    /// The HKDF; HKDF SHA-256 by default.
    pub hkdf: Hkdf,
    /// The replay window size, 1 to 4096; 32 by default.
    pub replay_window: u32,
    /// Whether requests carry the ID Context as 'kid context' (when there is one); true by
    /// default.
    pub send_kid_context: bool,
    /// The step `K` of sequence number persistence (RFC 8613 Appendix B.1.1): 0 (the
    /// default) disables it, so numbers are used freely, which is only right for contexts
    /// that never outlive the process (or are never restored after a crash). With a step, a
    /// new context asks for its first bound at once and protects nothing before that bound
    /// is confirmed; see [`SecurityContext::take_persist_request`].
    pub persist_step: u64,
}

impl ContextParams {
    /// Parameters with the defaults of RFC 8613 §3.2: no Master Salt, no ID Context,
    /// AES-CCM-16-64-128, HKDF SHA-256, a replay window of 32, no persistence.
    pub fn new(
        sender_id: impl Into<Vec<u8>>,
        recipient_id: impl Into<Vec<u8>>,
        master_secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            sender_id: sender_id.into(),
            recipient_id: recipient_id.into(),
            master_secret: master_secret.into(),
            master_salt: Vec::new(),
            id_context: None,
            algorithm: Algorithm::default(),
            hkdf: Hkdf::default(),
            replay_window: 32,
            send_kid_context: true,
            persist_step: 0,
        }
    }
}

/// Leaves the Master Secret out.
impl fmt::Debug for ContextParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextParams")
            .field("sender_id", &Hex(&self.sender_id))
            .field("recipient_id", &Hex(&self.recipient_id))
            .field(
                "master_secret",
                &format_args!("<{} bytes>", self.master_secret.len()),
            )
            .field("master_salt", &Hex(&self.master_salt))
            .field("id_context", &self.id_context.as_deref().map(Hex))
            .field("algorithm", &self.algorithm)
            .field("hkdf", &self.hkdf)
            .field("replay_window", &self.replay_window)
            .field("send_kid_context", &self.send_kid_context)
            .field("persist_step", &self.persist_step)
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("h'")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str("'")
    }
}

/// An OSCORE security context: the derived keys and Common IV, the Sender Sequence Number
/// and the replay window (RFC 8613 §3.1), and the operations that protect and verify
/// messages with them.
///
/// A client calls [`protect_request`](Self::protect_request) and, with the
/// [`RequestBinding`] it returns, [`unprotect_response`](Self::unprotect_response); a server
/// calls [`unprotect_request`](Self::unprotect_request) and
/// [`protect_response`](Self::protect_response). An endpoint may do both with one context.
///
/// # Restarts
///
/// Two parts change and must survive a restart (RFC 8613 §7.5, Appendix B.1):
///
/// - The Sender Sequence Number, with [`ContextParams::persist_step`] > 0: store each bound
///   [`take_persist_request`](Self::take_persist_request) hands out, confirm it with
///   [`confirm_persisted`](Self::confirm_persisted), and after a restart derive the context
///   again and call [`set_sender_sequence`](Self::set_sender_sequence) with the last stored
///   bound.
/// - The replay window, which is not persisted: after a restart call
///   [`replay_window_uninitialized`](Self::replay_window_uninitialized); the first requests
///   then come back as [`OscoreError::ReplayWindowUninitialized`] until one proves fresh
///   with Echo (see [`accept_fresh`](Self::accept_fresh)).
///
/// A context is deliberately not `Clone`: two copies would hand out the same sequence
/// numbers, and so reuse nonces.
pub struct SecurityContext {
    algorithm: Algorithm,
    sender_id: Vec<u8>,
    recipient_id: Vec<u8>,
    id_context: Option<Vec<u8>>,
    send_kid_context: bool,
    sender_key: Vec<u8>,
    recipient_key: Vec<u8>,
    common_iv: Vec<u8>,
    sequence: SenderSequence,
    window: ReplayWindow,
}

/// Leaves the keys and the Common IV out.
impl fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityContext")
            .field("algorithm", &self.algorithm)
            .field("sender_id", &Hex(&self.sender_id))
            .field("recipient_id", &Hex(&self.recipient_id))
            .field("id_context", &self.id_context.as_deref().map(Hex))
            .field("sender_sequence", &self.sequence.next())
            .field("replay_window_initialized", &self.window.is_initialized())
            .finish_non_exhaustive()
    }
}

impl SecurityContext {
    /// Derives a security context: Sender Key, Recipient Key and Common IV from the Master
    /// Secret, Master Salt and ID Context with the HKDF (RFC 8613 §3.2.1). The Sender
    /// Sequence Number starts at 0 and the replay window empty (§3.2.2).
    ///
    /// # Errors
    ///
    /// [`OscoreError::IdTooLong`] for a Sender or Recipient ID longer than the nonce length
    /// minus 6 (7 bytes for AES-CCM, 6 for AES-GCM); [`OscoreError::InvalidParams`] for
    /// equal Sender and Recipient IDs (they would share keys and nonces), an empty Master
    /// Secret, a replay window of 0 or over 4096, or an ID Context over 255 bytes that is to
    /// be sent as 'kid context'.
    pub fn new(params: ContextParams) -> Result<Self, OscoreError> {
        let alg = params.algorithm;
        for id in [&params.sender_id, &params.recipient_id] {
            if id.len() > alg.max_id_len() {
                return Err(OscoreError::IdTooLong {
                    len: id.len(),
                    max: alg.max_id_len(),
                });
            }
        }
        if params.sender_id == params.recipient_id {
            return Err(OscoreError::InvalidParams(
                "the Sender ID and the Recipient ID must differ",
            ));
        }
        if params.master_secret.is_empty() {
            return Err(OscoreError::InvalidParams("the Master Secret is empty"));
        }
        if params.replay_window == 0 || params.replay_window > MAX_WINDOW {
            return Err(OscoreError::InvalidParams(
                "the replay window must hold 1 to 4096 sequence numbers",
            ));
        }
        if params.send_kid_context && params.id_context.as_ref().is_some_and(|c| c.len() > 255) {
            return Err(OscoreError::InvalidParams(
                "an ID Context sent as 'kid context' can have at most 255 bytes",
            ));
        }
        let ctx = params.id_context.as_deref();
        let derive = |id: &[u8], output: Output, len: usize| {
            params
                .hkdf
                .derive(
                    &params.master_salt,
                    &params.master_secret,
                    &info(id, ctx, alg, output),
                    len,
                )
                .ok_or(OscoreError::InvalidParams(
                    "the HKDF cannot derive this length",
                ))
        };
        let sender_key = derive(&params.sender_id, Output::Key, alg.key_len())?;
        let recipient_key = derive(&params.recipient_id, Output::Key, alg.key_len())?;
        let common_iv = derive(&[], Output::Iv, alg.nonce_len())?;
        Ok(Self {
            algorithm: alg,
            sender_key,
            recipient_key,
            common_iv,
            sequence: SenderSequence::new(params.persist_step),
            window: ReplayWindow::new(params.replay_window),
            send_kid_context: params.send_kid_context,
            sender_id: params.sender_id,
            recipient_id: params.recipient_id,
            id_context: params.id_context,
        })
    }

    /// The AEAD algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The Sender ID.
    pub fn sender_id(&self) -> &[u8] {
        &self.sender_id
    }

    /// The Recipient ID.
    pub fn recipient_id(&self) -> &[u8] {
        &self.recipient_id
    }

    /// The ID Context, if any.
    pub fn id_context(&self) -> Option<&[u8]> {
        self.id_context.as_deref()
    }

    /// The derived Sender Key (secret).
    pub fn sender_key(&self) -> &[u8] {
        &self.sender_key
    }

    /// The derived Recipient Key (secret).
    pub fn recipient_key(&self) -> &[u8] {
        &self.recipient_key
    }

    /// The derived Common IV (secret).
    pub fn common_iv(&self) -> &[u8] {
        &self.common_iv
    }

    /// Whether a request's OSCORE option names this context: its 'kid' is the Recipient ID
    /// and its 'kid context', if present, the ID Context (RFC 8613 §8.2 step 2). A server
    /// with several contexts picks the one this is true for.
    pub fn matches_request(&self, option: &OscoreOption) -> bool {
        option.kid.as_deref() == Some(&self.recipient_id[..])
            && option
                .kid_context
                .as_deref()
                .is_none_or(|c| self.id_context.as_deref() == Some(c))
    }

    // ---- Sequence numbers ------------------------------------------------------------

    /// The Sender Sequence Number the next Partial IV will carry.
    pub fn sender_sequence(&self) -> u64 {
        self.sequence.next()
    }

    /// Moves the Sender Sequence Number to `seq`, as after a restart with the bound last
    /// persisted. It never goes backwards: a lower value is ignored, so no number once used
    /// is used again.
    pub fn set_sender_sequence(&mut self, seq: u64) {
        self.sequence.set_next(seq);
    }

    /// A new bound to store, if there is one: the first sequence number this context may use
    /// after a restart (RFC 8613 Appendix B.1.1, with `K` =
    /// [`ContextParams::persist_step`]).
    ///
    /// Call it after each protect call (and after [`new`](Self::new) and
    /// [`set_sender_sequence`](Self::set_sender_sequence)); store the value in non-volatile
    /// memory, then call [`confirm_persisted`](Self::confirm_persisted) with it. Bounds are
    /// requested half a step ahead, so a prompt caller never waits; numbers at or above the
    /// last confirmed bound are never used, and protecting fails with
    /// [`OscoreError::SequencePersistPending`] until a new bound is confirmed. After a
    /// crash, restoring with the last stored bound therefore never reuses a number.
    ///
    /// Each bound is handed out once; [`pending_persist`](Self::pending_persist) gives it
    /// again for a retry. Always `None` without persistence.
    pub fn take_persist_request(&mut self) -> Option<u64> {
        self.sequence.take_request()
    }

    /// The bound requested but not yet confirmed, if any.
    pub fn pending_persist(&self) -> Option<u64> {
        self.sequence.pending()
    }

    /// Confirms that `bound` is stored: sequence numbers below it may now be used. A bound
    /// lower than one confirmed before changes nothing.
    pub fn confirm_persisted(&mut self, bound: u64) {
        self.sequence.confirm(bound);
    }

    // ---- Replay window ---------------------------------------------------------------

    /// Forgets the replay window: after a restart without its state, no request is accepted
    /// as fresh until [`init_replay_window`](Self::init_replay_window) or
    /// [`accept_fresh`](Self::accept_fresh) (RFC 8613 Appendix B.1.2).
    pub fn replay_window_uninitialized(&mut self) {
        self.window.uninitialize();
    }

    /// Whether the replay window is initialized, so requests are checked against it.
    pub fn replay_window_initialized(&self) -> bool {
        self.window.is_initialized()
    }

    /// Initializes an uninitialized replay window from a request verified fresh (by Echo):
    /// `seq` counts as received and becomes the lower limit, so it and every lower number
    /// are rejected from now on (RFC 8613 Appendix B.1.2). On an initialized window this
    /// only marks `seq` as received, as lowering its limit could let replays in.
    pub fn init_replay_window(&mut self, seq: u64) {
        if self.window.is_initialized() {
            self.window.check_and_accept(seq);
        } else {
            self.window.init_from(seq);
        }
    }

    /// Accepts a request that came back as [`OscoreError::ReplayWindowUninitialized`] once
    /// the caller has verified it fresh (its Echo option carries the value the server sent
    /// in its challenge, RFC 9175 §2.4): initializes the replay window from its sequence
    /// number and returns it for processing, with a binding whose response may reuse the
    /// request's nonce.
    ///
    /// # Errors
    ///
    /// [`OscoreError::Replay`] when the window was initialized meanwhile and has seen the
    /// sequence number or moved past it.
    pub fn accept_fresh(
        &mut self,
        unverified: Unverified,
    ) -> Result<(Plain, RequestBinding), OscoreError> {
        if self.window.is_initialized() {
            if !self.window.check_and_accept(unverified.sequence) {
                return Err(OscoreError::Replay);
            }
        } else {
            self.window.init_from(unverified.sequence);
        }
        let mut binding = unverified.binding;
        binding.nonce_reusable = true;
        Ok((unverified.plain, binding))
    }

    // ---- Protecting and verifying -----------------------------------------------------

    /// Protects a request (RFC 8613 §8.1): `code`, `options` and `payload` are the original
    /// request's. Returns the OSCORE message's code (POST, or FETCH with Observe), outer
    /// options (with the OSCORE option) and payload, and the binding to verify the
    /// response with. Header, token and message ID are the caller's.
    ///
    /// # Errors
    ///
    /// [`OscoreError::CodeMismatch`] for a code that is not a request method,
    /// [`OscoreError::NestedOscore`] when `options` has an OSCORE option,
    /// [`OscoreError::ProxyUri`] / [`OscoreError::ProxyUriConflict`] for a Proxy-Uri that
    /// cannot be decomposed, [`OscoreError::MessageTooLong`],
    /// [`OscoreError::SequencePersistPending`] and [`OscoreError::SequenceExhausted`].
    pub fn protect_request(
        &mut self,
        code: Code,
        options: &Options,
        payload: &[u8],
    ) -> Result<(Protected, RequestBinding), OscoreError> {
        if !code.is_request() {
            return Err(OscoreError::CodeMismatch(code));
        }
        let split = split(options, true)?;
        let plaintext = self.plaintext(code, &split.inner, payload)?;
        let seq = self.sequence.allocate()?;
        let piv = encode_piv(seq);
        let nonce =
            nonce(&self.common_iv, &self.sender_id, &piv).ok_or(OscoreError::DecodeFailed)?;
        let ciphertext = self.seal(&self.sender_key, &nonce, &self.sender_id, &piv, &plaintext)?;
        let option = OscoreOption {
            partial_iv: Some(piv.clone()),
            kid_context: self.id_context.clone().filter(|_| self.send_kid_context),
            kid: Some(self.sender_id.clone()),
        };
        let mut outer = split.outer;
        outer.push(OptionNumber::OSCORE, option.encode()?);
        let outer_code = if split.observe.is_some() {
            Code::FETCH
        } else {
            Code::POST
        };
        let binding = RequestBinding {
            kid: self.sender_id.clone(),
            piv,
            nonce_reusable: true,
            nonce_used: NonceUsed::default(),
            observe: split.observe == Some(0),
        };
        Ok((
            Protected {
                code: outer_code,
                options: outer,
                payload: ciphertext,
            },
            binding,
        ))
    }

    /// Verifies a request (RFC 8613 §8.2): `code`, `options` and `payload` are the received
    /// OSCORE message's. Returns the decrypted request and the binding to protect its
    /// responses with.
    ///
    /// The request is decrypted first and checked against the replay window afterwards, so
    /// only authentic requests are reported as replays; the window records a sequence number
    /// only once its request has decrypted.
    ///
    /// # Errors
    ///
    /// [`OscoreError::NotProtected`], [`OscoreError::MalformedOption`],
    /// [`OscoreError::UnknownContext`], [`OscoreError::DecodeFailed`],
    /// [`OscoreError::DecryptionFailed`] and [`OscoreError::Replay`], each with its
    /// [`response`](OscoreError::response); and, while the replay window is uninitialized,
    /// [`OscoreError::ReplayWindowUninitialized`] with the decrypted request in it.
    pub fn unprotect_request(
        &mut self,
        code: Code,
        options: &Options,
        payload: &[u8],
    ) -> Result<(Plain, RequestBinding), OscoreError> {
        // The outer code is discarded (§8.2 step 1); the inner one is what counts.
        let _ = code;
        let option = parse_option(options)?;
        let (Some(kid), Some(piv)) = (&option.kid, &option.partial_iv) else {
            return Err(OscoreError::DecodeFailed);
        };
        if !self.matches_request(&option) {
            return Err(OscoreError::UnknownContext);
        }
        let nonce = nonce(&self.common_iv, kid, piv).ok_or(OscoreError::DecodeFailed)?;
        let plaintext = self.open(&self.recipient_key, &nonce, kid, piv, payload)?;
        let seq = decode_piv(piv);
        let mut binding = RequestBinding {
            kid: kid.clone(),
            piv: piv.clone(),
            nonce_reusable: true,
            nonce_used: NonceUsed::default(),
            observe: false,
        };
        if self.window.is_initialized() && !self.window.check_and_accept(seq) {
            return Err(OscoreError::Replay);
        }
        let (inner_code, inner, payload) =
            decode_plaintext(&plaintext).ok_or(OscoreError::DecodeFailed)?;
        if !inner_code.is_request() || inner.contains(OptionNumber::OSCORE) {
            return Err(OscoreError::DecodeFailed);
        }
        binding.observe = inner.get(OptionNumber::OBSERVE).and_then(decode_uint) == Some(0);
        let plain = Plain {
            code: inner_code,
            options: merge(options, inner),
            payload,
            partial_iv_seq: Some(seq),
        };
        if !self.window.is_initialized() {
            binding.nonce_reusable = false;
            return Err(OscoreError::ReplayWindowUninitialized(Box::new(
                Unverified {
                    plain,
                    binding,
                    sequence: seq,
                },
            )));
        }
        Ok((plain, binding))
    }

    /// Protects a response (RFC 8613 §8.3) to the request `binding` came from.
    ///
    /// Without `own_partial_iv` the response reuses the request's nonce and carries no
    /// Partial IV, which is right for the one response to a request; with it, it takes a new
    /// sequence number and carries it, which every Observe notification but the first must
    /// do (§4.1.3.5.2). A binding that is not known fresh (from
    /// [`OscoreError::ReplayWindowUninitialized`]) always gets a Partial IV of its own
    /// (Appendix B.1.2), and so does every response after the first that reused the
    /// request's nonce (see [`RequestBinding`]).
    ///
    /// The outer code is 2.04 (Changed), or 2.05 (Content) when the response has Observe;
    /// an Observe value goes outside, with an empty inner Observe.
    ///
    /// # Errors
    ///
    /// [`OscoreError::WrongBinding`] for a binding of another context or of this context's
    /// own requests, [`OscoreError::CodeMismatch`] for a code that is not a response,
    /// [`OscoreError::NestedOscore`], [`OscoreError::MessageTooLong`], and, with a Partial
    /// IV, [`OscoreError::SequencePersistPending`] and [`OscoreError::SequenceExhausted`].
    pub fn protect_response(
        &mut self,
        binding: &RequestBinding,
        code: Code,
        options: &Options,
        payload: &[u8],
        own_partial_iv: bool,
    ) -> Result<Protected, OscoreError> {
        if binding.kid != self.recipient_id {
            return Err(OscoreError::WrongBinding);
        }
        if !code.is_response() {
            return Err(OscoreError::CodeMismatch(code));
        }
        let split = split(options, false)?;
        let plaintext = self.plaintext(code, &split.inner, payload)?;
        let (nonce, partial_iv) =
            if own_partial_iv || !binding.nonce_reusable || binding.nonce_used.get() {
                let piv = encode_piv(self.sequence.allocate()?);
                (nonce(&self.common_iv, &self.sender_id, &piv), Some(piv))
            } else {
                binding.nonce_used.set();
                (nonce(&self.common_iv, &binding.kid, &binding.piv), None)
            };
        let nonce = nonce.ok_or(OscoreError::WrongBinding)?;
        let ciphertext = self.seal(
            &self.sender_key,
            &nonce,
            &binding.kid,
            &binding.piv,
            &plaintext,
        )?;
        let option = OscoreOption {
            partial_iv,
            kid_context: None,
            kid: None,
        };
        let mut outer = split.outer;
        outer.push(OptionNumber::OSCORE, option.encode()?);
        let outer_code = if split.observe.is_some() {
            Code::CONTENT
        } else {
            Code::CHANGED
        };
        Ok(Protected {
            code: outer_code,
            options: outer,
            payload: ciphertext,
        })
    }

    /// Verifies a response (RFC 8613 §8.4) to the request `binding` came from, with or
    /// without a Partial IV of its own.
    ///
    /// A response with a Partial IV reports its sequence number in
    /// [`Plain::partial_iv_seq`]; ordering notifications and rejecting replayed ones by it is
    /// the caller's (§7.4.1), as is accepting at most one notification without one. A
    /// notification's Observe option is set to the low 24 bits of its Partial IV
    /// (§4.1.3.5.2). When this context's replay window is uninitialized, a verified Partial
    /// IV initializes it, as the response is known to be fresh.
    ///
    /// # Errors
    ///
    /// [`OscoreError::WrongBinding`], [`OscoreError::NotProtected`] (for example for a
    /// server's unprotected OSCORE error), [`OscoreError::MalformedOption`],
    /// [`OscoreError::UnknownContext`] for a 'kid' or 'kid context' of another context,
    /// [`OscoreError::DecodeFailed`], [`OscoreError::DecryptionFailed`] and
    /// [`OscoreError::UnexpectedObserve`]. A client drops such a response (§8.4 step 8).
    pub fn unprotect_response(
        &mut self,
        binding: &RequestBinding,
        code: Code,
        options: &Options,
        payload: &[u8],
    ) -> Result<Plain, OscoreError> {
        let _ = code;
        if binding.kid != self.sender_id {
            return Err(OscoreError::WrongBinding);
        }
        let option = parse_option(options)?;
        if option.kid.as_ref().is_some_and(|k| *k != self.recipient_id)
            || option
                .kid_context
                .as_ref()
                .is_some_and(|c| Some(c) != self.id_context.as_ref())
        {
            return Err(OscoreError::UnknownContext);
        }
        let nonce = match &option.partial_iv {
            Some(piv) => nonce(&self.common_iv, &self.recipient_id, piv),
            None => nonce(&self.common_iv, &binding.kid, &binding.piv),
        }
        .ok_or(OscoreError::DecodeFailed)?;
        let plaintext = self.open(
            &self.recipient_key,
            &nonce,
            &binding.kid,
            &binding.piv,
            payload,
        )?;
        let (inner_code, mut inner, payload) =
            decode_plaintext(&plaintext).ok_or(OscoreError::DecodeFailed)?;
        if !inner_code.is_response() || inner.contains(OptionNumber::OSCORE) {
            return Err(OscoreError::DecodeFailed);
        }
        let seq = option.partial_iv.as_deref().map(decode_piv);
        if inner.contains(OptionNumber::OBSERVE) {
            if !binding.observe {
                return Err(OscoreError::UnexpectedObserve);
            }
            // Notifications are ordered by their Partial IVs (the Outer Observe value is not
            // protected). The first answer reuses the request's nonce and has none: it
            // counts as older than any notification, one before 0 in Observe's 24-bit
            // serial numbers (RFC 7641 §3.4).
            let value = seq.map_or(OBSERVE_MASK, |seq| seq & OBSERVE_MASK);
            inner.set_uint(OptionNumber::OBSERVE, value as u32);
        }
        if let (Some(seq), false) = (seq, self.window.is_initialized()) {
            self.window.init_from(seq);
        }
        Ok(Plain {
            code: inner_code,
            options: merge(options, inner),
            payload,
            partial_iv_seq: seq,
        })
    }

    fn plaintext(
        &self,
        code: Code,
        inner: &Options,
        payload: &[u8],
    ) -> Result<Vec<u8>, OscoreError> {
        let plaintext = encode_plaintext(code, inner, payload)?;
        if plaintext.len() > self.algorithm.max_plaintext_len() {
            return Err(OscoreError::MessageTooLong);
        }
        // Fail before a sequence number is spent.
        Ok(plaintext)
    }

    fn seal(
        &self,
        key: &[u8],
        nonce: &[u8],
        request_kid: &[u8],
        request_piv: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, OscoreError> {
        let aad = aad(self.algorithm, request_kid, request_piv);
        self.algorithm
            .seal(key, nonce, &aad, plaintext)
            .ok_or(OscoreError::MessageTooLong)
    }

    fn open(
        &self,
        key: &[u8],
        nonce: &[u8],
        request_kid: &[u8],
        request_piv: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, OscoreError> {
        // At least the code byte and a tag (RFC 8613 §5.3).
        if ciphertext.len() < self.algorithm.tag_len() + 1 {
            return Err(OscoreError::DecodeFailed);
        }
        let aad = aad(self.algorithm, request_kid, request_piv);
        self.algorithm
            .open(key, nonce, &aad, ciphertext)
            .ok_or(OscoreError::DecryptionFailed)
    }
}

/// The one OSCORE option of a received message, decoded.
fn parse_option(options: &Options) -> Result<OscoreOption, OscoreError> {
    let mut values = options.get_all(OptionNumber::OSCORE);
    let value = values.next().ok_or(OscoreError::NotProtected)?;
    if values.next().is_some() {
        return Err(OscoreError::MalformedOption);
    }
    OscoreOption::parse(value)
}
