//! The client side of the endpoint: requests, their message exchanges, NSTART, responses
//! matched by token, and block-wise transfers as the caller sees them (RFC 7252 §5.3, RFC 7959).

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, trace};

use crate::message::{Code, Message, MessageRef, OptionNumber, Token, Type};
use crate::net::RecvMeta;
use crate::proto::{Error, Failure};

use super::*;

/// What became of a response as far as OSCORE is concerned ([`Endpoint::open_protected`]).
pub(super) enum Opened {
    /// The request is not protected: the response is taken as it is.
    Plain,
    /// Dropped: the request goes on waiting.
    Dropped,
    /// The request's outcome.
    Outcome(Result<Response, Failure>),
    /// A block of a protected response a proxy cut into outer blocks: the exchange ends and
    /// a new one asks for the next block.
    Continue(Request, Box<OuterDownload>),
}

impl Endpoint {
    /// Starts a request to `remote`; its outcome comes as [`Event::Response`] or
    /// [`Event::Failed`] with the returned ID. Call [`poll_transmit`](Self::poll_transmit)
    /// afterwards.
    ///
    /// The request goes out at once if fewer than NSTART interactions with `remote` are
    /// outstanding, else when one ends.
    ///
    /// # Errors
    ///
    /// [`Error::WrongCode`] if the method is not a request code, [`Error::BodyTooLarge`] for
    /// a payload larger than `Config::max_body_size`, [`Error::QueueFull`] when too
    /// many requests wait for `remote`, [`Error::NoToken`] when no unused token is left,
    /// [`Error::Encode`] when the request cannot be encoded. Nothing is sent then.
    pub fn request(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        request: Request,
    ) -> Result<RequestId, Error> {
        let id = self.new_request(now, remote, request)?;
        self.counters.requests_sent += 1;
        Ok(id)
    }

    fn new_request(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        mut request: Request,
    ) -> Result<RequestId, Error> {
        if !request.method.is_request() {
            return Err(Error::WrongCode(request.method));
        }
        self.oscore.check(&request)?;
        // Check encodability now, so that a request never fails later for the caller's data.
        for (number, value) in request.options.iter() {
            if value.len() > 65804 {
                return Err(crate::message::EncodeError::OptionTooLong {
                    number,
                    len: value.len(),
                }
                .into());
            }
        }
        if remote.ip().is_multicast() && request.oscore.is_some() {
            // Its answers would come from servers sharing one pairwise context (reusing the
            // request's nonce), or from anyone, unverified.
            return Err(Error::OscoreGroup);
        }
        if remote.ip().is_multicast() {
            return self.group_request(now, remote, request);
        }
        let block_size = 16usize << self.block_szx(remote);
        let max = self.config.max_body_size.min(block_size << 20);
        if request.payload.len() > max {
            return Err(Error::BodyTooLarge {
                len: request.payload.len(),
                max,
            });
        }
        if request.payload.len() > block_size && !request.options.contains(OptionNumber::BLOCK1) {
            // Block-wise operations with one server at the same time must not be taken for
            // one another: an upload started while another transfer with that server goes
            // on (uploading, or fetching its response's blocks) gets a Request-Tag of its
            // own (RFC 9175 §3.3).
            let concurrent = self
                .calls
                .values()
                .any(|c| c.transfer.as_ref().is_some_and(|t| t.remote == remote));
            if concurrent && !request.options.contains(OptionNumber::REQUEST_TAG) {
                let tag = self.next_id.to_be_bytes();
                let skip = tag.iter().take_while(|b| **b == 0).count().min(7);
                request
                    .options
                    .push(OptionNumber::REQUEST_TAG, &tag[skip..]);
            }
            let (transfer, first) =
                ClientTransfer::upload(remote, request, block_size, self.config.max_body_size);
            let id = self.start_wire(now, remote, first)?;
            self.calls.insert(
                id,
                Call {
                    wire: id,
                    transfer: Some(transfer),
                },
            );
            return Ok(id);
        }
        self.start_wire(now, remote, request)
    }

    /// Makes one request message exchange (a whole request, or one block of a transfer).
    pub(super) fn start_wire(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        request: Request,
    ) -> Result<RequestId, Error> {
        self.start_wire_with(now, remote, request, None)
    }

    /// As [`start_wire`](Self::start_wire), with `token` if it is free (a deregistration
    /// repeated with an Echo value must keep its observation's token, RFC 7641 §3.6).
    fn start_wire_with(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        request: Request,
        token: Option<Token>,
    ) -> Result<RequestId, Error> {
        let nstart = self.config.nstart;
        let max_queued = self.config.max_queued_per_remote;
        if let Some(p) = self.peers.get(&remote) {
            if p.outstanding >= nstart && p.queue.len() >= max_queued {
                return Err(Error::QueueFull(p.queue.len()));
            }
        }
        let token_length = request
            .token_length
            .map_or(self.config.token_length, |l| usize::from(l).min(8));
        let token = match token.filter(|t| !self.by_token.contains_key(&(remote, *t))) {
            Some(token) => token,
            None => self.new_token(remote, token_length)?,
        };
        let id = RequestId(self.next_id);
        self.next_id += 1;
        // A timeout too large to add to `now` is no timeout.
        let overall = request.timeout.and_then(|t| now.checked_add(t));
        let peer = self.acquire_peer(now, remote);
        peer.open.insert(id);
        let first = peer.open.len() == 1;
        let start = peer.outstanding < nstart && peer.queue.is_empty();
        if !start {
            peer.queue.push_back(id);
        }
        if first {
            self.note_remote_use(remote, true);
        }
        self.by_token.insert((remote, token), id);
        self.requests.insert(
            id,
            OutRequest {
                remote,
                token,
                request,
                state: ReqState::Queued,
                mid: None,
                deadline: None,
                overall,
                last_notification: None,
                caller: id,
                fetch: None,
                fetches: Vec::new(),
                security: None,
                notification_piv: None,
                sealed: None,
                outer: None,
            },
        );
        if let Some(at) = overall {
            self.timers.schedule(at, TimerKey::Deadline(id));
        }
        if start {
            self.start_request(now, id);
        } else {
            trace!("coapio: request {id:?} to {remote} waits for an NSTART slot");
        }
        Ok(id)
    }

    /// Abandons a request: no event will come for it and nothing more is sent for it. Unknown
    /// IDs are ignored.
    pub fn cancel(&mut self, now: Instant, id: RequestId) {
        // The exchange that carries the caller's request now (its first, or a later one).
        let wire = self.calls.remove(&id).map_or(id, |c| c.wire);
        let Some(req) = self.requests.get_mut(&wire).filter(|r| r.caller == id) else {
            return;
        };
        let fetches = std::mem::take(&mut req.fetches);
        for fetch in fetches {
            self.finish_request(now, fetch, None);
        }
        debug!("coapio: request {id:?} cancelled");
        self.finish_request(now, wire, None);
    }

    pub(super) fn new_token(&mut self, remote: SocketAddr, len: usize) -> Result<Token, Error> {
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            self.rng.fill(&mut bytes[..len]);
            let token = Token::from_slice_truncating(&bytes[..len]);
            if !self.by_token.contains_key(&(remote, token)) {
                return Ok(token);
            }
        }
        Err(Error::NoToken)
    }

    /// Sends a queued request: gives it a message ID, encodes it and arms its timer. Returns
    /// `false` when no message ID is free: the request then waits at the front of its
    /// remote's queue until one is (`TimerKey::MidsFree`).
    pub(super) fn start_request(&mut self, now: Instant, id: RequestId) -> bool {
        let Some(remote) = self.requests.get(&id).map(|r| r.remote) else {
            return true;
        };
        let Some(mid) = self.alloc_mid(now, remote) else {
            if let Some(req) = self.requests.get_mut(&id) {
                req.state = ReqState::Queued;
            }
            self.peer(now, remote).queue.push_front(id);
            self.wait_for_mid(now, remote);
            return false;
        };
        let initial = self.initial_timeout();
        let non_timeout = self.config.non_timeout;
        let Some(req) = self.requests.get_mut(&id) else {
            return true;
        };
        let ty = if req.request.confirmable {
            Type::Con
        } else {
            Type::Non
        };
        let mut wire = Vec::new();
        let (mut code, token) = (req.request.method, req.token);
        if req.request.oscore.is_none() {
            // Encoded straight from the request (no copy of its options and payload).
            let r = &req.request;
            let header = (ty, r.method, mid, &req.token);
            if crate::message::encode_parts(header, &r.options, &r.payload, &mut wire).is_err() {
                // `request` checked the option lengths; nothing else can fail.
                return true;
            }
        } else {
            // Protected (OSCORE) as it goes out: each message with a sequence number of its
            // own.
            let (msg, security) =
                match self
                    .oscore
                    .request_message(&req.request, ty, mid, req.token)
                {
                    Ok(x) => x,
                    Err(e) => {
                        debug!("coapio: request {id:?} cannot be sent: {e}");
                        self.finish_request(now, id, Some(Err(Failure::Refused(e))));
                        return true;
                    }
                };
            if msg.encode(&mut wire).is_err() {
                return true;
            }
            code = msg.code;
            let Some(req) = self.requests.get_mut(&id) else {
                return true;
            };
            if security.is_some() {
                // Kept (moved, not copied) for a proxy's outer blocks of the answer.
                req.sealed = Some(Box::new(Sealed {
                    code: msg.code,
                    options: msg.options,
                    payload: msg.payload,
                }));
                req.security = security;
            }
        }
        let Some(req) = self.requests.get_mut(&id) else {
            return true;
        };
        req.state = ReqState::Outstanding;
        req.mid = Some(mid);
        let retransmit = if ty == Type::Con {
            self.timers
                .schedule(now + initial, TimerKey::Retransmit(remote, mid));
            Some(Retransmit {
                count: 0,
                timeout: initial,
                next_at: now + initial,
            })
        } else {
            let deadline = now + non_timeout;
            req.deadline = Some(deadline);
            self.timers.schedule(deadline, TimerKey::Deadline(id));
            None
        };
        debug!("coapio: sending {ty:?} {code} request {id:?} to {remote} (MID {mid}, {token:?})");
        self.peer(now, remote).outstanding += 1;
        self.insert_outgoing(
            now,
            (remote, mid),
            Outgoing {
                wire,
                source: None,
                ifindex: None,
                owner: Owner::Request(id),
                retransmit,
                budget: None,
            },
        );
        self.transmits.push_back(Queued::Outgoing((remote, mid)));
        true
    }

    /// Ends the message exchange a request has on the wire (its message was acknowledged,
    /// answered or abandoned): the request holds no message ID any more, so nothing it does
    /// later can touch a newer message that reuses the ID.
    pub(super) fn drop_request_wire(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let (remote, Some(mid)) = (req.remote, req.mid.take()) else {
            return;
        };
        let key = (remote, mid);
        if self
            .outgoing
            .get(&key)
            .is_some_and(|o| o.owner == Owner::Request(id))
        {
            self.remove_outgoing(now, key);
        }
    }

    /// Removes a request with all its state and, when `outcome` is given, reports it.
    pub(super) fn finish_request(
        &mut self,
        now: Instant,
        id: RequestId,
        outcome: Option<Result<Response, Failure>>,
    ) {
        let outcome = match outcome {
            Some(Ok(response)) if self.is_notification(id, &response) => {
                self.on_notification(now, id, response);
                return;
            }
            Some(Ok(response)) if self.is_late_notification(id, &response) => {
                debug!("coapio: a notification for {id:?} after its deregistration; dropped");
                return;
            }
            other => other,
        };
        self.drop_request_wire(now, id);
        let Some(req) = self.requests.remove(&id) else {
            return;
        };
        self.by_token.remove(&(req.remote, req.token));
        let group = self.group_requests.get(&req.token) == Some(&id);
        if group {
            self.group_requests.remove(&req.token);
        }
        let outcome = match outcome {
            // The normal end of a group request: the time for answers is over.
            Some(Err(Failure::Timeout)) if group => {
                self.events.push_back(Event::GroupDone { id });
                None
            }
            other => other,
        };
        let remote = req.remote;
        let mut start_next = false;
        let mut unused = false;
        if let Some(p) = self.peers.get_mut(&req.remote) {
            unused = p.open.remove(&id) && p.open.is_empty();
            match req.state {
                ReqState::Queued => p.queue.retain(|q| *q != id),
                ReqState::Outstanding => {
                    p.outstanding = p.outstanding.saturating_sub(1);
                    start_next = true;
                }
                ReqState::Acknowledged | ReqState::Observing => {}
            }
        }
        if unused {
            self.note_remote_use(remote, false);
        }
        self.release_peer(now, req.remote);
        let mut req = req;
        if let Some((observation, transfer)) = req.fetch.take() {
            if let Some(o) = self.requests.get_mut(&observation) {
                o.fetches.retain(|f| *f != id);
            }
            self.continue_notification_fetch(now, observation, transfer, req.request, outcome);
        } else {
            self.deliver(now, id, req, outcome);
        }
        if start_next {
            self.start_queued(now, remote);
        }
    }

    /// Reports the outcome of a finished exchange to the caller (or continues its transfer).
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        id: RequestId,
        req: OutRequest,
        outcome: Option<Result<Response, Failure>>,
    ) {
        let user = req.caller;
        // The caller's request is no longer carried by this exchange; a transfer's state
        // goes on to its next exchange in `on_wire_response`.
        let call = match self.calls.get(&user) {
            Some(c) if c.wire == id => self.calls.remove(&user),
            _ => None,
        };
        match outcome {
            Some(Ok(response)) => {
                let transfer = call.and_then(|c| c.transfer);
                self.on_wire_response(now, user, req, transfer, response)
            }
            Some(Err(error)) => {
                debug!("coapio: request {user:?} to {} failed: {error}", req.remote);
                self.events.push_back(Event::Failed { id: user, error });
            }
            None => {}
        }
    }

    /// A response to one message exchange: the caller's response, or the next step of a
    /// block-wise transfer (RFC 7959).
    pub(super) fn on_wire_response(
        &mut self,
        now: Instant,
        user: RequestId,
        req: OutRequest,
        transfer: Option<ClientTransfer>,
        response: Response,
    ) {
        let (remote, request, overall, token) = (req.remote, req.request, req.overall, req.token);
        // A server that wants proof of our address or of the request's freshness answers
        // 4.01 with an Echo value; the request goes again with it, once (RFC 9175 §2.3).
        let echo = (response.code == Code::UNAUTHORIZED
            && !request.options.contains(OptionNumber::ECHO))
        .then(|| response.options.get(OptionNumber::ECHO))
        .flatten()
        .filter(|v| (1..=40).contains(&v.len()));
        if let Some(echo) = echo {
            if overall.is_some_and(|o| o <= now) {
                self.events.push_back(Event::Failed {
                    id: user,
                    error: Failure::Timeout,
                });
                return;
            }
            debug!("coapio: request {user:?} to {remote} repeated with the Echo it was given");
            let mut again = request;
            again.options.set(OptionNumber::ECHO, echo);
            again.timeout = overall.map(|o| o - now);
            let deregistration = again.options.get_uint(OptionNumber::OBSERVE) == Some(1);
            let keep = deregistration.then_some(token);
            self.continue_call(now, user, remote, again, transfer, keep);
            return;
        }
        let transfer = match transfer {
            Some(t) => Some(t),
            // Late (or early) negotiation: the response is the first block of a larger
            // representation. A caller who asked for a later block gets just that block.
            None if request
                .options
                .get(OptionNumber::BLOCK2)
                .and_then(|v| crate::message::BlockValue::from_bytes(v).ok())
                .is_none_or(|b| b.num() == 0)
                && response
                    .options
                    .get(OptionNumber::BLOCK2)
                    .and_then(|v| crate::message::BlockValue::from_bytes(v).ok())
                    .is_some_and(|b| b.more() && b.num() == 0) =>
            {
                Some(ClientTransfer::download(
                    remote,
                    request,
                    self.config.max_body_size,
                ))
            }
            None => None,
        };
        let Some(mut transfer) = transfer else {
            self.events
                .push_back(Event::Response { id: user, response });
            return;
        };
        match transfer.on_response(response) {
            // The caller's timeout covers the whole transfer, not each block.
            Step::Send(_) if overall.is_some_and(|o| o <= now) => {
                self.events.push_back(Event::Failed {
                    id: user,
                    error: Failure::Timeout,
                });
            }
            Step::Send(mut next) => {
                next.timeout = overall.map(|o| o - now);
                let remote = transfer.remote;
                self.continue_call(now, user, remote, next, Some(transfer), None);
            }
            Step::Done(Ok(response)) => self
                .events
                .push_back(Event::Response { id: user, response }),
            Step::Done(Err(error)) => {
                debug!("coapio: block-wise request {user:?} failed: {error}");
                self.events.push_back(Event::Failed { id: user, error });
            }
        }
    }

    /// Orders the notifications of an OSCORE observation by their Partial IVs (RFC 8613
    /// §4.1.3.5.2, §7.4.1): one whose Partial IV is not above the highest verified so far is
    /// a replay (or came late), and is dropped (`None`). Observe's own ordering (24-bit
    /// values, and anything after 128 seconds) would let a replay through.
    /// A response to a protected request, verified and decrypted first (RFC 8613 §8.4): its
    /// outcome for the request, or `Dropped` for one that fails verification (the request
    /// goes on waiting: anyone who knows the token could end it otherwise) or is a replayed
    /// or reordered notification. An unprotected answer (an error of the server's OSCORE
    /// layer) ends the request.
    pub(super) fn open_protected(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        id: RequestId,
        m: &MessageRef<'_>,
    ) -> Opened {
        let Some(req) = self.requests.get(&id).filter(|r| r.security.is_some()) else {
            return Opened::Plain;
        };
        // Outer Block2 (RFC 8613 §4.1.3.4.2): a proxy's blocks of the sealed response (a
        // Block2 option outside is never the server's, whose Block options are inner).
        let block2 = m.options.get(OptionNumber::BLOCK2);
        let whole;
        let decoded;
        let m = if block2.is_some() || req.outer.is_some() {
            match self.outer_block(id, m) {
                Ok(Ok(wire)) => {
                    whole = wire;
                    match MessageRef::decode(&whole) {
                        Ok(d) => {
                            decoded = d;
                            &decoded
                        }
                        Err(_) => {
                            return Opened::Outcome(Err(Failure::BadResponse(
                                "the blocks of an OSCORE response do not make a message",
                            )))
                        }
                    }
                }
                Ok(Err((next, state))) => return Opened::Continue(next, state),
                Err(why) => return Opened::Outcome(Err(Failure::BadResponse(why))),
            }
        } else {
            m
        };
        let Some(opened) = self
            .requests
            .get(&id)
            .and_then(|r| r.security.as_ref())
            .map(|security| {
                self.oscore.open_response(security, m).map(|(mut r, piv)| {
                    r.received = Some(crate::proto::Received::of(remote, m));
                    (r, piv)
                })
            })
        else {
            return Opened::Plain;
        };
        let Some(opened) = self.oscore_in_order(id, opened) else {
            debug!("coapio: replayed or reordered OSCORE notification from {remote} dropped");
            return Opened::Dropped;
        };
        match &opened {
            Ok(_) => self.freshness.verify(now, remote),
            Err(Failure::BadResponse(why)) => {
                debug!("coapio: response from {remote} dropped: {why}");
                return Opened::Dropped;
            }
            Err(_) => {}
        }
        Opened::Outcome(opened.and_then(|response| {
            match critical_problem(response.options.iter()) {
                Some(_) => Err(Failure::BadResponse(
                    "unrecognized critical option in the response",
                )),
                None => Ok(response),
            }
        }))
    }

    /// Takes a block of a protected response cut into outer Block2 blocks: the whole
    /// response (as a datagram) once its last block came, or the request for the next block
    /// and the state to go on with.
    #[allow(clippy::type_complexity)]
    fn outer_block(
        &mut self,
        id: RequestId,
        m: &MessageRef<'_>,
    ) -> Result<Result<Vec<u8>, (Request, Box<OuterDownload>)>, &'static str> {
        let max = self.config.max_body_size;
        let Some(req) = self.requests.get_mut(&id) else {
            return Err("no request");
        };
        let Some(block) = m
            .options
            .get(OptionNumber::BLOCK2)
            .and_then(|v| crate::message::BlockValue::from_bytes(v).ok())
        else {
            return Err("a later block of an OSCORE response without a valid Block2 option");
        };
        let mut state = match req.outer.take() {
            Some(state) => state,
            None if block.num() == 0 => {
                let Some(sealed) = req.sealed.clone() else {
                    return Err("an OSCORE response in blocks to a request not sealed");
                };
                let mut options = m.options.to_owned();
                options.remove(OptionNumber::BLOCK2);
                options.remove(OptionNumber::SIZE2);
                Box::new(OuterDownload {
                    sealed,
                    original: req.request.clone(),
                    code: m.code,
                    options,
                    body: Vec::new(),
                    next: 0,
                    szx: block.szx(),
                })
            }
            None => return Err("an OSCORE response's first block was not block 0"),
        };
        if block.num() != state.next
            || block.szx() != state.szx
            || block.offset() != state.body.len()
        {
            return Err("an OSCORE response's blocks came out of order");
        }
        if state.body.len() + m.payload.len() > max {
            return Err("an OSCORE response in blocks is larger than max_body_size");
        }
        state.body.extend_from_slice(m.payload);
        if !block.more() {
            // The exchange's own request is the sealed one asked again: the response answers
            // the caller's.
            let state = *state;
            req.request = state.original;
            let message = Message {
                ty: m.ty,
                code: state.code,
                message_id: m.message_id,
                token: m.token,
                options: state.options,
                payload: state.body,
            };
            return message
                .to_bytes()
                .map(Ok)
                .map_err(|_| "the blocks of an OSCORE response do not make a message");
        }
        let Ok(next) = crate::message::BlockValue::new(block.num() + 1, false, block.szx()) else {
            return Err("an OSCORE response in more blocks than can be numbered");
        };
        state.next = next.num();
        let mut request = Request::new(state.sealed.code);
        request.options = state.sealed.options.clone();
        request
            .options
            .set_uint(OptionNumber::BLOCK2, next.to_uint());
        request.payload = state.sealed.payload.clone();
        request.confirmable = req.request.confirmable;
        request.token_length = req.request.token_length;
        Ok(Err((request, state)))
    }

    /// Ends the exchange `id`, which brought a block of an OSCORE response cut into outer
    /// blocks, and asks for the next block in a new one that carries on the caller's request.
    pub(super) fn continue_outer(
        &mut self,
        now: Instant,
        id: RequestId,
        mut request: Request,
        state: Box<OuterDownload>,
    ) {
        let Some(old) = self.requests.get(&id) else {
            return;
        };
        let (user, remote, overall) = (old.caller, old.remote, old.overall);
        let security = old.security.clone();
        if overall.is_some_and(|o| o <= now) {
            return self.finish_request(now, id, Some(Err(Failure::Timeout)));
        }
        request.timeout = overall.map(|o| o - now);
        // A block-wise transfer (inner) that the caller's request is part of goes on.
        let transfer = self
            .calls
            .get_mut(&user)
            .filter(|c| c.wire == id)
            .and_then(|c| c.transfer.take());
        self.finish_request(now, id, None);
        if let Some(r) = self
            .continue_call(now, user, remote, request, transfer, None)
            .and_then(|wire| self.requests.get_mut(&wire))
        {
            r.security = security;
            r.outer = Some(state);
        }
    }

    pub(super) fn oscore_in_order(
        &mut self,
        id: RequestId,
        opened: Result<(Response, Option<u64>), Failure>,
    ) -> Option<Result<Response, Failure>> {
        let (response, piv) = match opened {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        if let (Some(piv), Some(req)) = (piv, self.requests.get_mut(&id)) {
            if response.options.contains(OptionNumber::OBSERVE) {
                if req.notification_piv.is_some_and(|last| piv <= last) {
                    return None;
                }
                req.notification_piv = Some(piv);
            }
        }
        Some(Ok(response))
    }

    /// Carries the caller's request `user` on in a new message exchange (the next block of a
    /// transfer, the request again with an Echo value, a proxy's next outer block); returns
    /// the new exchange.
    fn continue_call(
        &mut self,
        now: Instant,
        user: RequestId,
        remote: SocketAddr,
        request: Request,
        transfer: Option<ClientTransfer>,
        token: Option<Token>,
    ) -> Option<RequestId> {
        match self.start_wire_with(now, remote, request, token) {
            Ok(wire) => {
                trace!("coapio: request {user:?} continues as {wire:?}");
                if let Some(r) = self.requests.get_mut(&wire) {
                    r.caller = user;
                }
                self.calls.insert(user, Call { wire, transfer });
                Some(wire)
            }
            Err(e) => {
                self.events.push_back(Event::Failed {
                    id: user,
                    error: Failure::Refused(e),
                });
                None
            }
        }
    }

    /// Marks an outstanding request as acknowledged: it no longer counts against NSTART.
    pub(super) fn acknowledge_request(&mut self, now: Instant, id: RequestId) {
        let separate_timeout = self.config.separate_timeout;
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        if req.state != ReqState::Outstanding {
            return;
        }
        req.state = ReqState::Acknowledged;
        let deadline = now + separate_timeout;
        req.deadline = Some(deadline);
        self.timers.schedule(deadline, TimerKey::Deadline(id));
        let remote = req.remote;
        if let Some(p) = self.peers.get_mut(&remote) {
            p.outstanding = p.outstanding.saturating_sub(1);
        }
        self.start_queued(now, remote);
    }

    /// A separate (CON or NON) response.
    pub(super) fn handle_response(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        let remote = meta.remote;
        // A request still queued has sent nothing to answer, unless it is an observation
        // waiting to register again: its notifications still come (RFC 7641 §3.3.1).
        let id = self.by_token.get(&(remote, m.token)).copied().filter(|id| {
            self.requests
                .get(id)
                .is_some_and(|r| r.state != ReqState::Queued || r.last_notification.is_some())
        });
        if id.is_none() {
            if let Some(&gid) = self.group_requests.get(&m.token) {
                if self.requests.contains_key(&gid) {
                    return self.group_response(now, meta, m, gid);
                }
            }
        }
        let Some(id) = id else {
            debug!(
                "coapio: {:?} response {:?} from {remote} matches no request",
                m.ty, m.token
            );
            // A notification nobody wants any more is reset, NON too, so that the server
            // forgets the observer (RFC 7641 §3.6).
            if m.ty == Type::Con || m.options.get(OptionNumber::OBSERVE).is_some() {
                self.send_rst(meta, m.message_id);
            }
            return;
        };
        match self.open_protected(now, remote, id, m) {
            Opened::Plain => {}
            Opened::Dropped => return self.accept_response(now, meta, m),
            Opened::Outcome(outcome) => {
                self.accept_response(now, meta, m);
                return self.finish_request(now, id, Some(outcome));
            }
            Opened::Continue(next, state) => {
                self.accept_response(now, meta, m);
                return self.continue_outer(now, id, next, state);
            }
        }
        if let Some(bad) = critical_problem(m.options.iter()) {
            debug!("coapio: response from {remote} has unrecognized critical option {bad:?}");
            if m.ty == Type::Con {
                self.send_rst(meta, m.message_id);
                self.finish_request(
                    now,
                    id,
                    Some(Err(Failure::BadResponse(
                        "unrecognized critical option in the response",
                    ))),
                );
            }
            return;
        }
        self.accept_response(now, meta, m);
        self.freshness.verify(now, remote);
        let response = Response::of_message(remote, m);
        self.finish_request(now, id, Some(Ok(response)));
    }
}
