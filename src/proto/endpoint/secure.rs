//! OSCORE (RFC 8613) in the endpoint: the security contexts it holds, requests protected as
//! they are encoded and their responses verified as they arrive, received requests verified
//! before anything else sees them and their answers (notifications included) protected.
//!
//! Protection wraps the message layer's view of a request or response: block-wise transfer,
//! Observe, Echo and the amplification limit all work on the inner (decrypted) message, so
//! Block options are Inner ones (RFC 8613 §4.1.3.4.1) and each block is a message of its
//! own with its own sequence number. Without the `oscore` feature the endpoint has no
//! contexts: a request naming one is refused, and a received OSCORE message is answered as
//! one with an unrecognized critical option.

use std::time::Instant;

use log::debug;

use crate::message::{Code, Message, MessageRef, OptionNumber, Type};
use crate::net::RecvMeta;
use crate::proto::{Error, Failure, Request, Response, SecurityId};

use super::Endpoint;

/// What binds a response to the request it answers (the request's 'kid' and Partial IV).
#[cfg(feature = "oscore")]
pub(crate) use crate::oscore::RequestBinding as Binding;

/// What binds a response to the request it answers (nothing without the `oscore` feature).
#[cfg(not(feature = "oscore"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Binding {}

/// A protected exchange: the context and the binding.
pub(crate) type Security = (SecurityId, Binding);

/// Stores the first sequence number a context may use after a restart (RFC 8613 Appendix
/// B.1.1); the endpoint calls it, under its own lock, before using numbers beyond the last
/// bound stored.
pub type PersistHook = Box<dyn FnMut(u64) -> std::io::Result<()> + Send>;

/// The endpoint's OSCORE contexts.
#[derive(Default)]
pub(super) struct Contexts {
    #[cfg(feature = "oscore")]
    slots: Vec<Slot>,
    /// Whether every received request must be protected (unprotected ones get 4.01).
    pub(super) required: bool,
}

#[cfg(feature = "oscore")]
struct Slot {
    ctx: crate::oscore::SecurityContext,
    persist: Option<PersistHook>,
}

impl std::fmt::Debug for Contexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Contexts");
        #[cfg(feature = "oscore")]
        d.field("count", &self.slots.len());
        d.field("required", &self.required).finish()
    }
}

/// What became of a received request as far as OSCORE is concerned.
#[cfg_attr(not(feature = "oscore"), allow(dead_code))]
pub(super) enum Received {
    /// Not protected: served as it is.
    Plain,
    /// Protected and verified: the inner request as a datagram of its own (the outer
    /// header, the inner code, options and payload), and the exchange's security.
    Inner(Vec<u8>, Security),
    /// Protected and decrypted, but its freshness unknown (the replay window is not
    /// initialized, RFC 8613 Appendix B.1.2): answer it with a protected 4.01 and Echo.
    Challenge(Vec<u8>, Security),
    /// Refused: the answer (unprotected) is given, if any.
    Refused(Option<Response>),
}

#[cfg(feature = "oscore")]
impl Endpoint {
    /// Adds an OSCORE security context (RFC 8613): requests that name the returned ID
    /// ([`Request::oscore`]) are protected with it, and received requests whose OSCORE
    /// option names its Recipient ID are verified with it and their answers protected.
    ///
    /// With `persist`, the context's sequence numbers are stored ahead of use (RFC 8613
    /// Appendix B.1.1, every [`ContextParams::persist_step`](crate::oscore::ContextParams::persist_step) numbers): the
    /// hook gets the first number that may be used after a restart; until it succeeds,
    /// protecting beyond the last stored bound fails. The hook runs while the endpoint is
    /// being called (in the facade and the C ABI, under its lock): it must not call back
    /// into the endpoint. Without a hook nothing is persisted.
    pub fn add_oscore_context(
        &mut self,
        ctx: crate::oscore::SecurityContext,
        persist: Option<PersistHook>,
    ) -> SecurityId {
        let id = SecurityId(self.oscore.slots.len() as u32);
        self.oscore.slots.push(Slot { ctx, persist });
        self.oscore.persist_sequence(id);
        id
    }

    /// Requires OSCORE for every received request: an unprotected one is answered 4.01
    /// Unauthorized ("OSCORE required") without reaching the application.
    pub fn require_oscore(&mut self, on: bool) {
        self.oscore.required = on;
    }

    /// The security context `id`, to read its state (its sequence number, say).
    pub fn oscore_context(&self, id: SecurityId) -> Option<&crate::oscore::SecurityContext> {
        self.oscore.slots.get(id.0 as usize).map(|s| &s.ctx)
    }
}

#[cfg(feature = "oscore")]
impl Contexts {
    /// Runs the persistence hook when the context asks for a new bound.
    fn persist_sequence(&mut self, id: SecurityId) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        let Some(bound) = slot
            .ctx
            .take_persist_request()
            .or(slot.ctx.pending_persist())
        else {
            return;
        };
        let Some(hook) = slot.persist.as_mut() else {
            // Nothing to store it in: the context goes on without persistence (a context made
            // with a persistence step but added without a hook would stop otherwise).
            slot.ctx.confirm_persisted(bound);
            return;
        };
        match hook(bound) {
            Ok(()) => slot.ctx.confirm_persisted(bound),
            Err(e) => debug!("coapio: OSCORE sequence number {bound} not stored: {e}"),
        }
    }
}

impl Contexts {
    /// Whether there is any context (so that OSCORE requests are verified at all).
    pub(super) fn has_contexts(&self) -> bool {
        #[cfg(feature = "oscore")]
        return !self.slots.is_empty();
        #[cfg(not(feature = "oscore"))]
        false
    }

    /// Checks that a request's security context exists.
    pub(super) fn check(&self, request: &Request) -> Result<(), Error> {
        match request.oscore {
            #[cfg(feature = "oscore")]
            Some(id) if (id.0 as usize) < self.slots.len() => Ok(()),
            Some(id) => Err(Error::NoSecurityContext(id)),
            None => Ok(()),
        }
    }

    /// The message that carries `request` (protected when it names a context), and its
    /// security.
    pub(super) fn request_message(
        &mut self,
        request: &Request,
        ty: Type,
        mid: u16,
        token: crate::message::Token,
    ) -> Result<(Message, Option<Security>), Error> {
        let Some(id) = request.oscore else {
            let msg = Message {
                ty,
                code: request.method,
                message_id: mid,
                token,
                options: request.options.clone(),
                payload: request.payload.clone(),
            };
            return Ok((msg, None));
        };
        #[cfg(feature = "oscore")]
        {
            let Some(slot) = self.slots.get_mut(id.0 as usize) else {
                return Err(Error::NoSecurityContext(id));
            };
            let result =
                slot.ctx
                    .protect_request(request.method, &request.options, &request.payload);
            self.persist_sequence(id);
            let (protected, binding) = result?;
            let msg = Message {
                ty,
                code: protected.code,
                message_id: mid,
                token,
                options: protected.options,
                payload: protected.payload,
            };
            Ok((msg, Some((id, binding))))
        }
        #[cfg(not(feature = "oscore"))]
        Err(Error::NoSecurityContext(id))
    }

    /// The response to a protected request, verified and decrypted (RFC 8613 §8.4), and the
    /// sequence number of its Partial IV if it has one (notifications do).
    pub(super) fn open_response(
        &mut self,
        security: &Security,
        m: &MessageRef<'_>,
    ) -> Result<(Response, Option<u64>), Failure> {
        #[cfg(feature = "oscore")]
        {
            let (id, binding) = security;
            if m.options.get(OptionNumber::OSCORE).is_none() {
                return Err(Failure::Unprotected(m.code));
            }
            let Some(slot) = self.slots.get_mut(id.0 as usize) else {
                return Err(Failure::BadResponse("its OSCORE context is gone"));
            };
            let options = m.options.to_owned();
            match slot
                .ctx
                .unprotect_response(binding, m.code, &options, m.payload)
            {
                Ok(plain) => Ok((
                    Response {
                        code: plain.code,
                        options: plain.options,
                        payload: plain.payload,
                        received: None,
                    },
                    plain.partial_iv_seq,
                )),
                Err(e) => {
                    debug!("coapio: OSCORE response failed verification: {e}");
                    Err(Failure::BadResponse(
                        "the OSCORE response failed verification",
                    ))
                }
            }
        }
        #[cfg(not(feature = "oscore"))]
        {
            let _ = m;
            match security.1 {}
        }
    }

    /// Protects an answer to a protected request (`own_partial_iv` for notifications).
    pub(super) fn seal_response(
        &mut self,
        security: &Security,
        response: Response,
        own_partial_iv: bool,
    ) -> Result<Response, Error> {
        #[cfg(feature = "oscore")]
        {
            let (id, binding) = security;
            let Some(slot) = self.slots.get_mut(id.0 as usize) else {
                return Err(Error::NoSecurityContext(*id));
            };
            let result = slot.ctx.protect_response(
                binding,
                response.code,
                &response.options,
                &response.payload,
                own_partial_iv,
            );
            self.persist_sequence(*id);
            let p = result?;
            Ok(Response {
                code: p.code,
                options: p.options,
                payload: p.payload,
                received: None,
            })
        }
        #[cfg(not(feature = "oscore"))]
        {
            let _ = (response, own_partial_iv);
            match security.1 {}
        }
    }
}

impl Endpoint {
    /// Verifies a received request that carries an OSCORE option, or refuses an unprotected
    /// one when OSCORE is required (RFC 8613 §8.2).
    pub(super) fn open_request(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
    ) -> Received {
        let protected = m.options.get(OptionNumber::OSCORE).is_some();
        if !protected {
            if self.oscore.required {
                debug!("coapio: unprotected request from {}; 4.01", meta.remote);
                let response = Response::new(Code::UNAUTHORIZED).with_payload("OSCORE required");
                return Received::Refused(Some(response));
            }
            return Received::Plain;
        }
        #[cfg(feature = "oscore")]
        {
            use crate::oscore::{OscoreError, OscoreOption};
            if self.oscore.slots.is_empty() {
                return Received::Plain; // answered as an unrecognized critical option
            }
            let refuse = |e: &OscoreError| {
                let (code, diagnostic) = e.response()?;
                let mut response = Response::new(code).with_payload(diagnostic);
                // Not to be cached by proxies (RFC 8613 §8.2).
                response.options.set_uint(OptionNumber::MAX_AGE, 0);
                Some(response)
            };
            let Some(Ok(option)) = m.options.get(OptionNumber::OSCORE).map(OscoreOption::parse)
            else {
                return Received::Refused(refuse(&OscoreError::MalformedOption));
            };
            let Some(index) = self
                .oscore
                .slots
                .iter()
                .position(|s| s.ctx.matches_request(&option))
            else {
                debug!("coapio: OSCORE request from {} for no context", meta.remote);
                return Received::Refused(refuse(&OscoreError::UnknownContext));
            };
            let id = SecurityId(index as u32);
            let options = m.options.to_owned();
            let slot = &mut self.oscore.slots[index];
            let (plain, binding, fresh) =
                match slot.ctx.unprotect_request(m.code, &options, m.payload) {
                    Ok((plain, binding)) => (plain, binding, true),
                    Err(OscoreError::ReplayWindowUninitialized(unverified)) => {
                        // Fresh if it repeats an Echo value this endpoint gave (RFC 8613
                        // Appendix B.1.2); the window then starts from it.
                        let echo = unverified.plain.options.get(OptionNumber::ECHO);
                        let fresh = echo
                            .is_some_and(|v| self.freshness.check(now, meta.remote, v).is_some());
                        let slot = &mut self.oscore.slots[index];
                        if fresh {
                            match slot.ctx.accept_fresh(*unverified) {
                                Ok((plain, binding)) => (plain, binding, true),
                                Err(e) => return Received::Refused(refuse(&e)),
                            }
                        } else {
                            (unverified.plain, unverified.binding, false)
                        }
                    }
                    Err(e) => {
                        debug!("coapio: OSCORE request from {}: {e}", meta.remote);
                        return Received::Refused(refuse(&e));
                    }
                };
            let inner = Message {
                ty: m.ty,
                code: plain.code,
                message_id: m.message_id,
                token: m.token,
                options: plain.options,
                payload: plain.payload,
            };
            match inner.to_bytes() {
                Ok(wire) if fresh => Received::Inner(wire, (id, binding)),
                Ok(wire) => Received::Challenge(wire, (id, binding)),
                Err(_) => Received::Refused(refuse(&OscoreError::DecryptionFailed)),
            }
        }
        #[cfg(not(feature = "oscore"))]
        {
            let _ = now;
            Received::Plain
        }
    }
}
