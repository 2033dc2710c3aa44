//! The server side of the endpoint: received requests, the application's answers
//! (piggybacked, separate or Non-confirmable) and server block-wise transfers (RFC 7959).

use std::net::SocketAddr;
use std::time::Instant;

use log::debug;

use crate::message::{Code, Message, MessageRef, OptionNumber, Type};
use crate::net::RecvMeta;
use crate::proto::Error;

use super::secure::Received;
use super::*;

/// What the endpoint knows of a received request beyond its (inner) message: the size of
/// its datagram and, for one protected with OSCORE, what protects its answer.
pub(super) struct Rx {
    len: usize,
    security: Option<Security>,
    /// For a protected request that asked for the first outer block of its answer (a
    /// proxy's Block2, RFC 8613 §4.1.3.4.2): that block, and the key its sealed answer is
    /// kept under for the later ones.
    outer_block2: Option<(crate::message::BlockValue, u64)>,
}

impl Rx {
    fn plain(m: &MessageRef<'_>) -> Self {
        Self {
            len: m.wire_len(),
            security: None,
            outer_block2: None,
        }
    }
}

/// What identifies a sealed request, whatever its outer Block2 option: the block cache keeps
/// its sealed answer under this for the later outer blocks.
fn outer_key(m: &MessageRef<'_>) -> u64 {
    hashed((
        "outer block2",
        request_key(m.code, m.options.iter(), &[]),
        m.payload,
    ))
}

/// A 64-bit key for `value` (the keys of the block cache and the uploads).
fn hashed(value: impl std::hash::Hash) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What outer Block1 options make of a protected request ([`Endpoint::outer_blocks`]).
type OuterBlocks = Result<Option<Vec<u8>>, ()>;

/// The most OSCORE adds to an answer: the OSCORE option with a Partial IV of its own (up to
/// 8 bytes with its header), the inner code byte, the payload marker and a 16-byte tag, and
/// a few bytes of option deltas that move inside.
const OSCORE_OVERHEAD: usize = 32;

/// The size of an empty ACK.
const EMPTY_LEN: usize = 4;

impl Endpoint {
    /// Answers a request of an [`Event::Request`]. Call [`poll_transmit`](Self::poll_transmit)
    /// afterwards.
    ///
    /// A Confirmable request answered before its empty ACK went out gets the response
    /// piggybacked on the ACK; later, the response is a separate one (type from
    /// [`Config::separate_response_type`]). A Non-confirmable request gets a Non-confirmable
    /// response. To a multicast request, error responses are not sent
    /// (<https://www.rfc-editor.org/rfc/rfc7252#section-8.2>).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownExchange`] if `id` is not awaiting an answer, [`Error::WrongCode`] for a
    /// code that is not a response code, [`Error::Encode`] if the response cannot be encoded;
    /// the request still awaits its answer after the last two.
    pub fn respond(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
    ) -> Result<(), Error> {
        let result = self.answer(now, id, response);
        // The exchange's timer (its empty ACK) is stale now.
        self.compact_timers();
        result
    }

    fn answer(&mut self, now: Instant, id: IncomingId, response: Response) -> Result<(), Error> {
        if !response.code.is_response() {
            return Err(Error::WrongCode(response.code));
        }
        if !self.incoming.contains_key(&id) {
            return Err(Error::UnknownExchange);
        }
        let response = self.fill_echo_challenge(now, id, response);
        let Some(ex) = self.incoming.get(&id) else {
            return Err(Error::UnknownExchange);
        };
        if ex.notification {
            if let Some(ex) = self.incoming.remove(&id) {
                self.send_notification(now, ex, response);
            }
            return Ok(());
        }
        let response = self.observe_registration(now, id, response);
        // Amplification mitigation (RFC 9175 §2.4): the whole answer is kept aside while its
        // size is not known to be within the limit.
        let limit = self.amplification_limit(now, id);
        // Kept (copied) only when the answer might not fit: most answers are far below.
        let bound = self
            .incoming
            .get(&id)
            .filter(|ex| ex.security.is_none())
            .map_or(usize::MAX, |ex| size_bound(&response, ex.token.len()));
        let original = limit
            .filter(|&limit| bound > limit)
            .map(|_| response.clone());
        let response = self.shape(now, id, 6, response)?;
        // Told from the answer before OSCORE seals it: a protected 4.01 + Echo is a 2.04
        // from outside, its Echo inside.
        let mut challenge = is_challenge(&response);
        let (mut msg, mut wire) = self.encode_answer(now, id, response)?;
        if let Some(limit) = limit.filter(|&limit| wire.len() > limit) {
            // `size_bound` is above any answer's encoded size, so the original was kept. Were
            // it not, a bare 4.01 challenge rather than an answer over the limit (marked as a
            // registration when it was one, so that the observer is not kept either).
            if original.is_none() {
                debug!("coapio: an answer outgrew size_bound; 4.01 instead (a coapio bug)");
            }
            let original = original.unwrap_or_else(|| {
                let mut challenge = Response::new(Code::UNAUTHORIZED);
                if msg.options.contains(OptionNumber::OBSERVE) {
                    challenge.options.set_uint(OptionNumber::OBSERVE, 0);
                }
                challenge
            });
            (msg, wire, challenge) = self.fit_answer(now, id, limit, original)?;
        }
        // What retransmissions of a separate response may still send within the limit.
        let budget = limit.map(|limit| limit.saturating_sub(wire.len()));
        let ty = msg.ty;
        let Some(ex) = self.incoming.remove(&id) else {
            return Err(Error::UnknownExchange);
        };
        let remote = ex.meta.remote;
        if let Some(upload) = ex.upload.filter(|_| !challenge) {
            self.uploads.finish(remote, upload);
        }
        let source = reply_source(&ex.meta);
        if ex.meta.is_multicast() && msg.code.is_error() {
            debug!(
                "coapio: not sending {} to multicast request from {remote}",
                msg.code
            );
            return Ok(());
        }
        debug!(
            "coapio: responding {} to {remote} as {ty:?} ({:?})",
            msg.code, ex.token
        );
        self.counters.responses_sent += 1;
        if ty == Type::Ack {
            self.transmits.push_back(Queued::Reply {
                to: remote,
                wire,
                source,
                ifindex: ex.meta.ifindex,
                dedup_key: Some((remote, ex.mid)),
            });
            return Ok(());
        }
        // A separate or NON response: it needs a message ID of its own. One that registered an
        // observer counts as its first notification (a Reset to it ends the observation).
        let registered = msg.code.is_success()
            && msg.options.contains(OptionNumber::OBSERVE)
            && self.observers.contains(&(remote, ex.token));
        let kind = match (ty, registered) {
            (Type::Con, true) => FreshKind::Notification {
                token: ex.token,
                con: true,
            },
            (Type::Con, false) => FreshKind::Confirmable(Owner::Response),
            (_, true) if !ex.meta.is_multicast() => FreshKind::Notification {
                token: ex.token,
                con: false,
            },
            _ => FreshKind::Once {
                dedup_key: (ex.ty == Type::Non).then_some((remote, ex.mid)),
                leisure: ex.meta.is_multicast()
                    && !self.config.leisure.is_zero()
                    && self.delayed.len() < self.config.max_pending_requests,
            },
        };
        self.send_fresh(
            now,
            Fresh {
                to: remote,
                wire,
                source,
                ifindex: ex.meta.ifindex,
                kind,
                budget,
            },
        );
        self.purge_idle_peers(now);
        Ok(())
    }

    /// Fills in the Echo value of [`Response::echo_challenge`].
    fn fill_echo_challenge(
        &mut self,
        now: Instant,
        id: IncomingId,
        mut response: Response,
    ) -> Response {
        if response.code == Code::UNAUTHORIZED
            && response.options.get(OptionNumber::ECHO) == Some(&[])
        {
            if let Some(ex) = self.incoming.get(&id) {
                let echo = self.freshness.issue(now, ex.meta.remote);
                response.options.set(OptionNumber::ECHO, echo);
            }
        }
        response
    }

    /// The largest answer the request `id` may get: three times its size when its remote is
    /// not verified (RFC 9175 §2.4) and the limit applies, less the empty ACK already sent
    /// for it.
    fn amplification_limit(&mut self, now: Instant, id: IncomingId) -> Option<usize> {
        let ex = self.incoming.get(&id)?;
        let (remote, len) = (ex.meta.remote, ex.request_len);
        if !self.config.amplification_mitigation || ex.meta.is_multicast() || len == 0 {
            return None;
        }
        let sent = if ex.empty_ack_sent { EMPTY_LEN } else { 0 };
        let limit = (crate::proto::echo::AMPLIFICATION_FACTOR * len).saturating_sub(sent);
        (!self.freshness.is_verified(now, remote)).then_some(limit)
    }

    /// Whether what goes to `remote` is limited to three times what came from it (RFC 9175
    /// §2.4): amplification mitigation is on and the remote is not verified.
    pub(super) fn is_limited(&mut self, now: Instant, remote: SocketAddr) -> bool {
        self.config.amplification_mitigation && !self.freshness.is_verified(now, remote)
    }

    /// Block-wise shaping of the answer to `id`, cut to blocks of at most `16 << szx_cap` bytes.
    fn shape(
        &mut self,
        now: Instant,
        id: IncomingId,
        szx_cap: u8,
        response: Response,
    ) -> Result<Response, Error> {
        let Some(ex) = self.incoming.get(&id) else {
            return Err(Error::UnknownExchange);
        };
        let (remote, key, block1, block2) = (ex.meta.remote, ex.key, ex.block1, ex.block2);
        Ok(self.shape_blockwise(now, remote, key, block1, block2, szx_cap, response))
    }

    /// The message that carries the answer to `id`, and its encoding.
    fn encode_answer(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
    ) -> Result<(Message, Vec<u8>), Error> {
        self.encode_answer_with(now, id, response, true)
    }

    /// [`encode_answer`](Self::encode_answer), sealed with OSCORE or (`seal` false, to size
    /// it without spending a sequence number) not.
    fn encode_answer_with(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
        seal: bool,
    ) -> Result<(Message, Vec<u8>), Error> {
        let Some(ex) = self.incoming.get(&id) else {
            return Err(Error::UnknownExchange);
        };
        let (ty, mid) = if ex.ty == Type::Con && !ex.empty_ack_sent {
            (Type::Ack, ex.mid)
        } else if ex.ty == Type::Con {
            (self.config.separate_response_type, 0)
        } else {
            (Type::Non, 0)
        };
        let token = ex.token;
        // The answer to a protected request is protected (RFC 8613 §8.3).
        let (remote, outer_block2) = (ex.meta.remote, ex.outer_block2);
        let mut response = match &ex.security {
            Some(security) if seal => self.oscore.seal_response(security, response, false)?,
            _ => response,
        };
        // A proxy asked for the sealed answer in outer blocks: the first now, the whole kept
        // for the others.
        if let Some((block, key)) = outer_block2.filter(|_| seal) {
            if response.payload.len() > block.size() {
                let first = crate::message::BlockValue::new(0, false, block.szx()).ok();
                if let Some(part) = first.and_then(|b| cut_block2(&response, b)) {
                    self.block_cache.insert(now, (remote, key), response);
                    response = part;
                }
            }
        }
        let msg = Message {
            ty,
            code: response.code,
            message_id: mid,
            token,
            options: response.options,
            payload: response.payload,
        };
        let mut wire = Vec::with_capacity(msg.encoded_len());
        msg.encode(&mut wire)?;
        Ok((msg, wire))
    }

    /// An answer to an unverified remote within `limit` bytes (RFC 9175 §2.4): `whole` cut
    /// into smaller blocks (RFC 7959 lets a server choose a block smaller than asked for, and
    /// every block-wise client follows), with an Echo value the client may send back to be
    /// verified; if even the smallest block is too large, 4.01 Unauthorized with an Echo value
    /// instead, which the client repeats in its request to prove that it receives what is sent
    /// to its address. The flag says whether the answer is that challenge.
    fn fit_answer(
        &mut self,
        now: Instant,
        id: IncomingId,
        limit: usize,
        mut whole: Response,
    ) -> Result<(Message, Vec<u8>, bool), Error> {
        let Some(ex) = self.incoming.get(&id) else {
            return Err(Error::UnknownExchange);
        };
        let remote = ex.meta.remote;
        let echo = self.freshness.issue(now, remote);
        // An Observe registration is not cut: its observer would then get every later
        // notification in full, however small the request was (a spoofed registration
        // would draw a stream of them to its victim). It gets 4.01 with Echo instead, and
        // registers once the client proves its address.
        let registration = whole.options.contains(OptionNumber::OBSERVE);
        if !whole.payload.is_empty()
            && !whole.options.contains(OptionNumber::BLOCK2)
            && !registration
        {
            // With an Echo value when there is room for it; else without: the 14 bytes of the
            // option are what keeps a 16-byte block from fitting the answer to a short
            // request (aiocoap's GET of a short path with a 2-byte token: 12 bytes), and a
            // client that does not follow Echo can still follow smaller blocks.
            let plain = whole.clone();
            whole.options.set(OptionNumber::ECHO, echo);
            // Sized unsealed, with room for what OSCORE adds (its option, the code byte and
            // a tag of up to 16 bytes), so that only the answer sent spends a sequence number.
            let sealing = self
                .incoming
                .get(&id)
                .is_some_and(|ex| ex.security.is_some());
            let room = if sealing { OSCORE_OVERHEAD } else { 0 };
            for candidate in [whole.clone(), plain] {
                for szx in (0..self.block_szx(remote)).rev() {
                    let response = self.shape(now, id, szx, candidate.clone())?;
                    let (msg, wire) = self.encode_answer_with(now, id, response.clone(), false)?;
                    if wire.len() + room <= limit {
                        debug!(
                            "coapio: answer to unverified {remote} cut to {}-byte blocks",
                            16 << szx
                        );
                        if !sealing {
                            return Ok((msg, wire, false));
                        }
                        let (msg, wire) = self.encode_answer(now, id, response)?;
                        return Ok((msg, wire, false));
                    }
                }
            }
        }
        debug!("coapio: answer too large for unverified {remote}; 4.01 with Echo instead");
        if let Some(ex) = self.incoming.get(&id) {
            let key = (remote, ex.token);
            if whole.options.contains(OptionNumber::OBSERVE) {
                if let Some(o) = self.observers.remove(&key) {
                    self.end_inflight_notification(now, key, o.inflight_con);
                }
            }
        }
        let mut challenge = Response::new(Code::UNAUTHORIZED);
        challenge.options.set(OptionNumber::ECHO, echo);
        let (msg, wire) = self.encode_answer(now, id, challenge)?;
        if wire.len() <= limit {
            return Ok((msg, wire, true));
        }
        // A request of a few bytes (a bare header and a short token) leaves no room even for
        // the Echo option: a plain 4.01, no larger than the request, says no.
        debug!("coapio: no room for an Echo value in the answer to {remote}; plain 4.01");
        let (msg, wire) = self.encode_answer(now, id, Response::new(Code::UNAUTHORIZED))?;
        Ok((msg, wire, false))
    }

    /// For a `protected` request (one with an OSCORE option, to an endpoint with contexts) with
    /// an outer Block1 option (a proxy's blocks): `Ok(None)` when there is none, `Err(())` when the block was answered here (2.31 Continue, 4.08, 4.13,
    /// 4.02), or the whole outer message once its last block came.
    fn outer_blocks(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
        protected: bool,
    ) -> OuterBlocks {
        if !protected {
            return Ok(None);
        }
        let block = match block_of(m.options, OptionNumber::BLOCK1) {
            None => return Ok(None),
            Some(Err(())) => {
                if m.ty == Type::Con && !meta.is_multicast() {
                    self.reject_request(now, meta, m, Rx::plain(m), Code::BAD_OPTION);
                }
                return Err(());
            }
            Some(Ok(b)) => b,
        };
        // The blocks share their outer options, the OSCORE option (its Partial IV) among them;
        // `outer_uploads` holds only such uploads.
        let key = upload_key(request_key(m.code, m.options.iter(), &[]), m.options);
        let request = Request {
            method: m.code,
            options: m.options.to_owned(),
            payload: m.payload.to_vec(),
            confirmable: m.ty == Type::Con,
            timeout: None,
            token_length: Some(m.token.len() as u8),
            oscore: None,
        };
        let preferred = self.block_szx(meta.remote);
        match self
            .outer_uploads
            .on_block(now, meta.remote, key, request, block, preferred)
        {
            UploadStep::Answer(response) => {
                self.answer_directly(now, meta, m, Rx::plain(m), response);
                Err(())
            }
            UploadStep::Complete(mut whole, _) => {
                self.outer_uploads.finish(meta.remote, key);
                whole.options.remove(OptionNumber::BLOCK1);
                whole.options.remove(OptionNumber::SIZE1);
                let message = Message {
                    ty: m.ty,
                    code: m.code,
                    message_id: m.message_id,
                    token: m.token,
                    options: whole.options,
                    payload: whole.payload,
                };
                // Blocks that do not make a message (options too long) are dropped.
                message.to_bytes().map(Some).map_err(|_| ())
            }
        }
    }

    /// Answers a request at once, without involving the application (bad options, overload).
    pub(super) fn reject_request(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
        rx: Rx,
        code: Code,
    ) {
        self.answer_directly(now, meta, m, rx, Response::new(code));
    }

    /// Fits a response to block-wise rules: echoes the Block1 of a completed upload, and cuts a
    /// representation larger than the block size (the client's, or that of the exponent
    /// `szx_cap`, if smaller; 6 for no cap)
    /// into Block2 blocks, keeping the whole for the later blocks.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn shape_blockwise(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        key: u64,
        block1: Option<crate::message::BlockValue>,
        block2: Option<crate::message::BlockValue>,
        szx_cap: u8,
        mut response: Response,
    ) -> Response {
        use crate::message::BlockValue;
        if let Some(b1) = block1.filter(|b| b.num() > 0 || b.more()) {
            if let Ok(last) = BlockValue::new(b1.num(), false, b1.szx()) {
                response
                    .options
                    .set_uint(OptionNumber::BLOCK1, last.to_uint());
            }
        }
        if response.options.contains(OptionNumber::BLOCK2) {
            return response; // the application does its own block-wise transfer
        }
        let preferred = self.block_szx(remote).min(szx_cap);
        // A block smaller than the one asked for starts at the same offset (RFC 7959 §2.4).
        let (szx, num) = match block2 {
            Some(b) => {
                let szx = b.szx().min(preferred);
                (szx, b.num() << (b.szx() - szx))
            }
            None => (preferred, 0),
        };
        let size = 1usize << (szx + 4);
        if response.payload.len() <= size && num == 0 {
            return response;
        }
        let Ok(block) = BlockValue::new(num, false, szx) else {
            return Response::new(Code::BAD_OPTION);
        };
        // One ETag for all blocks, computed once (the cached whole carries it).
        if !response.options.contains(OptionNumber::ETAG) {
            let etag = crate::proto::blockwise::content_etag(&response.payload);
            response.options.push(OptionNumber::ETAG, etag);
        }
        match cut_block2(&response, block) {
            Some(part) => {
                if response.payload.len() > size {
                    self.block_cache.insert(now, (remote, key), response);
                }
                part
            }
            None => Response::new(Code::BAD_OPTION),
        }
    }

    /// Answers a request without the application (errors, 2.31 Continue, cached blocks).
    pub(super) fn answer_directly(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
        rx: Rx,
        response: Response,
    ) {
        let id = self.register_incoming(now, meta, m, rx);
        if self.respond(now, id, response).is_err() {
            self.incoming.remove(&id);
        }
    }

    pub(super) fn register_incoming(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
        rx: Rx,
    ) -> IncomingId {
        let id = IncomingId(self.next_id);
        self.next_id += 1;
        // A multicast CON is treated as NON: no ACK, no RST (RFC 7252 §8.1).
        let ty = if meta.is_multicast() { Type::Non } else { m.ty };
        let lifetime = if ty == Type::Con {
            self.config.exchange_lifetime()
        } else {
            self.config.non_lifetime()
        };
        let expires = now + lifetime;
        let timer_at = if ty == Type::Con {
            now + self.config.empty_ack_delay
        } else {
            expires
        };
        self.timers.schedule(timer_at, TimerKey::Incoming(id));
        self.incoming.insert(
            id,
            Incoming {
                meta: *meta,
                ty,
                mid: m.message_id,
                token: m.token,
                timer_at,
                expires,
                empty_ack_sent: false,
                key: 0,
                block2: None,
                block1: None,
                observe: m.options.get_uint(OptionNumber::OBSERVE),
                notification: false,
                notification_type: None,
                registration: None,
                request_len: rx.len,
                security: rx.security,
                outer_block2: rx.outer_block2,
                upload: None,
            },
        );
        id
    }

    /// What the deduplication cache sets aside for the answer to a request until it is
    /// known: a block of the configured size plus room for the header and options, what a
    /// replayed response takes at most unless the application sends large options.
    fn reply_reserve(&self) -> usize {
        self.config.block_size + 128
    }

    pub(super) fn handle_request(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        // Remembered for its whole lifetime before anything runs, so that a retransmission
        // gets the same answer and never runs the request again (RFC 7252 §4.5).
        let lifetime = if m.ty == Type::Con && !meta.is_multicast() {
            Lifetime::Exchange
        } else {
            Lifetime::Non
        };
        let reserve = self.reply_reserve();
        let remembered = self.dedup.insert(
            now,
            (meta.remote, m.message_id),
            lifetime,
            Replay::Nothing,
            reserve,
            reply_source(meta),
            meta.ifindex,
        );
        // An OSCORE request looks like a POST from outside, but its replay window (RFC 8613
        // §7.4) already keeps it from running twice: it is served unremembered too (a
        // retransmission of it whose answer was lost then gets 4.01 "Replay detected").
        // (Looked up once: the outer block-wise steps below need it too.)
        let protected = self.oscore.has_contexts() && m.options.get(OptionNumber::OSCORE).is_some();
        if !remembered && !is_idempotent(m.code) && !protected {
            // No room to remember it: decline rather than forget older work. §4.5 lets an
            // idempotent request be served unremembered (it may run twice harmlessly).
            let retry = self
                .dedup
                .room_at(now, reserve)
                .saturating_duration_since(now);
            debug!(
                "coapio: deduplication cache full; 5.03 to {} {} (retry in {retry:?})",
                meta.remote, m.code
            );
            let mut response = Response::new(Code::SERVICE_UNAVAILABLE);
            let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
            response
                .options
                .set_uint(OptionNumber::MAX_AGE, secs.min(u64::from(u32::MAX)) as u32);
            return self.answer_directly(now, meta, m, Rx::plain(m), response);
        }
        // The datagram answered is this one, whatever it turns out to be part of.
        let len = m.wire_len();
        // Outer Block1 (RFC 8613 §4.1.3.4.2): a protected request that a proxy cut into blocks
        // is put together before it is verified (its blocks are not protected one by one).
        let whole_outer;
        let outer;
        let m = match self.outer_blocks(now, meta, m, protected) {
            Err(()) => return,
            Ok(None) => m,
            Ok(Some(wire)) => {
                whole_outer = wire;
                match MessageRef::decode(&whole_outer) {
                    Ok(decoded) => {
                        outer = decoded;
                        &outer
                    }
                    Err(_) => return,
                }
            }
        };
        // Outer Block2 (RFC 8613 §4.1.3.4.2): a proxy asks for the blocks of a sealed answer
        // with the sealed request again. Block 0 is served with the request; a later block
        // comes from the answer kept then (the request cannot be verified twice: its sequence
        // number is spent).
        let mut outer_block2 = None;
        if protected {
            match block_of(m.options, OptionNumber::BLOCK2) {
                None => {}
                Some(Err(())) => {
                    if m.ty == Type::Con && !meta.is_multicast() {
                        self.reject_request(now, meta, m, Rx::plain(m), Code::BAD_OPTION);
                    }
                    return;
                }
                Some(Ok(b)) if b.num() == 0 => outer_block2 = Some((b, outer_key(m))),
                Some(Ok(b)) => {
                    // An Echo value this endpoint gave (the amplification limit's 4.01 to an
                    // earlier try) verifies the proxy's address, as for any request.
                    let echo = m.options.get(OptionNumber::ECHO);
                    if echo.is_some_and(|v| self.freshness.check(now, meta.remote, v).is_some()) {
                        self.freshness.verify(now, meta.remote);
                    }
                    let kept = self
                        .block_cache
                        .get(now, &(meta.remote, outer_key(m)))
                        .map(|whole| cut_block2(whole, b));
                    let response = match kept {
                        Some(Some(part)) => part,
                        Some(None) => Response::new(Code::BAD_OPTION),
                        None => Response::new(Code::REQUEST_ENTITY_INCOMPLETE),
                    };
                    return self.answer_directly(now, meta, m, Rx::plain(m), response);
                }
            }
        }
        // OSCORE (RFC 8613 §8.2): a protected request is verified before anything else looks
        // at it, and served as its inner request; nothing unverified reaches the application.
        let (wire, security, challenge) = match self.open_request(now, meta, m) {
            Received::Plain => (None, None, false),
            Received::Inner(wire, security) => (Some(wire), Some(security), false),
            Received::Challenge(wire, security) => (Some(wire), Some(security), true),
            Received::Refused(answer) => {
                if let Some(response) = answer.filter(|_| m.ty == Type::Con) {
                    if !meta.is_multicast() {
                        self.answer_directly(now, meta, m, Rx::plain(m), response);
                    }
                }
                return;
            }
        };
        let inner;
        let m = match &wire {
            Some(wire) => match MessageRef::decode(wire) {
                Ok(decoded) => {
                    inner = decoded;
                    &inner
                }
                Err(_) => return,
            },
            None => m,
        };
        let rx = Rx {
            len,
            security,
            outer_block2,
        };
        if challenge {
            // Its freshness unknown after a restart (RFC 8613 Appendix B.1.2): a protected
            // 4.01 with an Echo value the client repeats.
            return self.answer_directly(now, meta, m, rx, Response::echo_challenge());
        }
        if let Some(bad) = critical_problem(m.options.iter()) {
            debug!(
                "coapio: request from {} has unrecognized critical option {bad:?}",
                meta.remote
            );
            // 4.02 in the ACK of a Confirmable request; a Non-confirmable (or multicast) one
            // is ignored (RFC 7252 §5.4.1).
            if m.ty == Type::Con && !meta.is_multicast() {
                self.reject_request(now, meta, m, rx, Code::BAD_OPTION);
            }
            return;
        }
        if !self.config.proxy
            && (m.options.get(OptionNumber::PROXY_URI).is_some()
                || m.options.get(OptionNumber::PROXY_SCHEME).is_some())
        {
            debug!("coapio: proxy request from {}; 5.05", meta.remote);
            self.reject_request(now, meta, m, rx, Code::PROXYING_NOT_SUPPORTED);
            return;
        }
        if self.incoming.len() >= self.config.max_pending_requests {
            self.counters.no_room += 1;
            debug!(
                "coapio: too many requests await answers; 5.03 to {}",
                meta.remote
            );
            self.reject_request(now, meta, m, rx, Code::SERVICE_UNAVAILABLE);
            return;
        }
        let mut request = Request {
            method: m.code,
            options: m.options.to_owned(),
            payload: m.payload.to_vec(),
            confirmable: m.ty == Type::Con && !meta.is_multicast(),
            timeout: None,
            token_length: Some(m.token.len() as u8),
            oscore: rx.security.as_ref().map(|s| s.0),
        };
        // Echo (RFC 9175 §2): a value this endpoint gave the remote verifies its address and
        // stays in the request, so that the application sees the request is fresh; any other
        // value (stale, forged, another server's) is taken out.
        if let Some(echo) = m.options.get(OptionNumber::ECHO) {
            if self.freshness.check(now, meta.remote, echo).is_some() {
                self.freshness.verify(now, meta.remote);
            } else {
                debug!("coapio: stale or unknown Echo from {}", meta.remote);
                request.options.remove(OptionNumber::ECHO);
            }
        }
        let preferred = self.block_szx(meta.remote);
        let block2 = match block_of(m.options, OptionNumber::BLOCK2) {
            Some(Err(())) => return self.reject_request(now, meta, m, rx, Code::BAD_OPTION),
            Some(Ok(b)) => Some(b),
            None => None,
        };
        let mut block1 = None;
        let mut completed_upload = None;
        match block_of(m.options, OptionNumber::BLOCK1) {
            Some(Err(())) => return self.reject_request(now, meta, m, rx, Code::BAD_OPTION),
            Some(Ok(b)) => {
                // The blocks of one upload share a key that leaves the body out (it is what
                // is being uploaded) and includes the Request-Tag.
                let upload = scoped_key(
                    upload_key(request_key(m.code, m.options.iter(), &[]), m.options),
                    rx.security.as_ref(),
                );
                match self
                    .uploads
                    .on_block(now, meta.remote, upload, request, b, preferred)
                {
                    UploadStep::Answer(response) => {
                        return self.answer_directly(now, meta, m, rx, response)
                    }
                    UploadStep::Complete(whole, last) => {
                        request = whole;
                        block1 = Some(last);
                        completed_upload = Some(upload);
                    }
                }
            }
            None => {}
        }
        // What identifies the representation asked for (a FETCH's whole body included), and
        // the block-wise operation it belongs to (its Request-Tag).
        let key = scoped_key(
            upload_key(
                request_key(m.code, m.options.iter(), &request.payload),
                m.options,
            ),
            rx.security.as_ref(),
        );
        // A later block of a representation served block-wise: from the cache if it is there.
        if let Some(b) = block2.filter(|b| b.num() > 0 && block1.is_none()) {
            let szx = b.szx().min(preferred);
            let num = b.num() << b.szx().saturating_sub(szx);
            let block = crate::message::BlockValue::new(num, false, szx).ok();
            let part = block.and_then(|block| {
                self.block_cache
                    .get(now, &(meta.remote, key))
                    .map(|whole| cut_block2(whole, block))
            });
            if let Some(part) = part {
                let response = part.unwrap_or_else(|| Response::new(Code::BAD_OPTION));
                return self.answer_directly(now, meta, m, rx, response);
            }
        }
        let id = self.register_incoming(now, meta, m, rx);
        if let Some(ex) = self.incoming.get_mut(&id) {
            ex.key = key;
            ex.block2 = block2;
            ex.block1 = block1;
            ex.upload = completed_upload;
            if ex.observe == Some(0) && matches!(request.method, Code::GET | Code::FETCH) {
                ex.registration = Some(request.clone());
            }
        }
        self.events.push_back(Event::Request {
            id,
            meta: *meta,
            request,
        });
    }
}

/// Whether an answer is a 4.01 with an Echo value (RFC 9175 §2.2): the client is to repeat
/// its request with it, so a Block1 upload it ends is kept for the repetition.
fn is_challenge(response: &Response) -> bool {
    response.code == Code::UNAUTHORIZED && response.options.contains(OptionNumber::ECHO)
}

/// The block-wise key of a request, kept apart per OSCORE context: the blocks of a protected
/// upload and the cached representation of a protected answer are keyed by the context that
/// verified the request, so an unprotected request from the same address (anyone who can
/// send from it) can neither add a block to a protected upload nor be served a block of a
/// protected representation in the clear.
pub(super) fn scoped_key(key: u64, security: Option<&Security>) -> u64 {
    match security {
        None => key,
        Some((id, _)) => hashed((key, "oscore", id)),
    }
}

/// At least the encoded size of any unprotected answer made of `response` with a token of
/// `token_len` bytes: header, token, options, payload marker and payload, and room for the
/// options block-wise serving may add, each with its option header: a Block1 echo (at most
/// 5 bytes) whatever the payload; Block2 (5), ETag (5) and Size2 (6) too when the payload is
/// longer than the smallest block and may be cut (cutting only shortens the payload).
/// Adding options shortens the headers of the options after them, never lengthens them.
fn size_bound(response: &Response, token_len: usize) -> usize {
    let added = if response.payload.len() > 16 { 21 } else { 15 };
    4 + token_len + response.options.encoded_len() + 1 + response.payload.len() + added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BlockValue;
    use crate::proto::Config;
    use std::sync::Arc;

    /// `size_bound` is at least the encoded size of every unprotected answer, whatever
    /// block-wise serving adds (Block1 echo, Block2, ETag, Size2) for requests with and
    /// without Block1/Block2 of every size, and payloads around every block size.
    #[test]
    fn size_bound_is_above_every_answer() {
        let remote: SocketAddr = "[2001:db8::1]:5683".parse().unwrap();
        let now = Instant::now();
        let mut ep = Endpoint::new(Arc::new(Config::default()));
        let mut mid = 0u16;
        let block = |szx: u8, num: u32, more: bool| BlockValue::new(num, more, szx).unwrap();
        let mut cases = 0;
        // (Block1 or Block2, SZX, block number) of the request; a Block1 upload of two blocks
        // (its last one answered, with the Block1 echo), Block2 requests for the first block
        // and for blocks whose numbers take two and three bytes.
        let shapes = [
            None,
            Some((true, 0u8, 1u32)),
            Some((false, 0, 0)),
            Some((false, 6, 0)),
            Some((false, 0, 300)),
            Some((false, 0, 70_000)),
        ];
        for token_len in [0usize, 8] {
            for request_blocks in shapes {
                for size in [0usize, 5, 16, 17, 64, 1023, 1024, 1025, 3000] {
                    let token = Token::from_slice(&[7u8; 8][..token_len]).unwrap();
                    let mut m = Message::new(Type::Con, Code::PUT, 0);
                    m.token = token;
                    // A path of its own, so that no representation cached for an earlier
                    // case answers it.
                    m.options.push(OptionNumber::URI_PATH, format!("r{cases}"));
                    let mut datagrams = Vec::new();
                    match request_blocks {
                        Some((true, szx, last)) => {
                            for num in 0..=last {
                                let mut b = m.clone();
                                let value = block(szx, num, num < last);
                                b.options.push_uint(OptionNumber::BLOCK1, value.to_uint());
                                b.payload = vec![1; 16];
                                datagrams.push(b);
                            }
                        }
                        Some((false, szx, num)) => {
                            m.code = Code::GET;
                            let value = block(szx, num, false).to_uint();
                            m.options.push_uint(OptionNumber::BLOCK2, value);
                            datagrams.push(m);
                        }
                        None => datagrams.push(m),
                    }
                    let mut request = None;
                    for mut d in datagrams {
                        mid = mid.wrapping_add(1);
                        d.message_id = mid;
                        ep.handle_datagram(now, &RecvMeta::new(remote), &d.to_bytes().unwrap());
                        while let Some(e) = ep.poll_event() {
                            if let Event::Request { id, .. } = e {
                                request = Some(id);
                            }
                        }
                        let mut buf = Vec::new();
                        while ep.poll_transmit(now, &mut buf).is_some() {}
                    }
                    let Some(id) = request else {
                        panic!("no request for {request_blocks:?}");
                    };
                    let mut response = Response::content(vec![b'x'; size]);
                    response.options.set_uint(OptionNumber::MAX_AGE, 60);
                    let bound = size_bound(&response, token_len);
                    let shaped = ep.shape(now, id, 6, response).unwrap();
                    let (_, wire) = ep.encode_answer(now, id, shaped).unwrap();
                    assert!(
                        wire.len() <= bound,
                        "{} > {bound} for {request_blocks:?}, payload {size}, token {token_len}",
                        wire.len()
                    );
                    ep.incoming.remove(&id);
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 108);
    }
}
