//! The sans-IO CoAP endpoint: the message layer of RFC 7252 §4 and the request/response
//! matching of §5.3, driven entirely by its caller.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};

use crate::error::{Error, RequestError};
use crate::message::{
    encode_empty, peek_header, Code, Message, MessageRef, OptionNumber, OptionsRef, Token, Type,
};
use crate::net::{RecvMeta, Transmit, TransportError};

use super::blockwise::{
    block_of, cut_block2, request_key, BlockCache, ClientTransfer, Step, UploadStep, Uploads,
};
use super::config::Config;
use super::dedup::{Dedup, Replay};
use super::rng::Rng;
use super::timers::{TimerKey, Timers};
use super::types::{Event, IncomingId, Request, RequestId, Response};

/// A CoAP endpoint with no I/O of its own: datagrams and the time go in; datagrams to send,
/// events and the next deadline come out.
///
/// One endpoint is both client and server. The caller's loop is:
///
/// 1. feed received datagrams to [`handle_datagram`](Self::handle_datagram), network errors to
///    [`handle_transport_error`](Self::handle_transport_error), and call
///    [`handle_timeout`](Self::handle_timeout) once the instant of
///    [`poll_timeout`](Self::poll_timeout) has come;
/// 2. after any call (those, [`request`](Self::request), [`respond`](Self::respond),
///    [`cancel`](Self::cancel)), send every datagram [`poll_transmit`](Self::poll_transmit)
///    gives, and handle every [`poll_event`](Self::poll_event).
///
/// Nothing here blocks, reads a clock or does I/O, so the whole protocol runs the same on a
/// real socket and on a simulated network.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    rng: Rng,
    next_id: u64,
    peers: HashMap<SocketAddr, Peer>,
    /// Peers nothing uses any more, oldest first: kept for EXCHANGE_LIFETIME so that their
    /// message IDs are not reused, at most `dedup_capacity` of them.
    idle: VecDeque<(SocketAddr, Instant)>,
    /// Peers with `users > 0`.
    active_peers: usize,
    requests: HashMap<RequestId, OutRequest>,
    by_token: HashMap<(SocketAddr, Token), RequestId>,
    outgoing: HashMap<(SocketAddr, u16), Outgoing>,
    incoming: HashMap<IncomingId, Incoming>,
    dedup: Dedup,
    timers: Timers,
    transmits: VecDeque<Queued>,
    events: VecDeque<Event>,
    /// Block-wise transfers by the caller's request ID, with the ID of the exchange in flight.
    transfers: HashMap<RequestId, (ClientTransfer, RequestId)>,
    /// Exchanges after the first of a transfer, to the caller's request ID.
    wire_to_user: HashMap<RequestId, RequestId>,
    uploads: Uploads,
    block_cache: BlockCache,
    observers: HashMap<(SocketAddr, Token), Observer>,
    /// Responses to multicast requests waiting for their leisure to pass.
    delayed: HashMap<u64, Queued>,
    /// Requests sent to a multicast group, by token: responses come from any server.
    group_requests: HashMap<Token, RequestId>,
    /// Exchanges fetching the rest of a block-wise notification, with their observation.
    notification_fetches: HashMap<RequestId, (RequestId, ClientTransfer)>,
    /// Non-confirmable notifications lately sent, so that a Reset to one removes its observer;
    /// oldest first, at most a few per observer.
    non_notifications: VecDeque<((SocketAddr, u16), Token)>,
}

/// Per-remote state, kept while anything refers to the remote and for EXCHANGE_LIFETIME after.
#[derive(Debug)]
struct Peer {
    next_mid: u16,
    /// Interactions counted against NSTART.
    outstanding: usize,
    /// Requests waiting for an NSTART slot.
    queue: VecDeque<RequestId>,
    /// Open requests and outgoing messages that use this peer's message IDs.
    users: usize,
    /// Since when nothing has used the peer.
    idle_since: Option<Instant>,
}

#[derive(Debug)]
struct OutRequest {
    remote: SocketAddr,
    token: Token,
    request: Request,
    state: ReqState,
    /// The message ID of the request once sent.
    mid: Option<u16>,
    deadline: Option<Instant>,
    /// The caller's own limit ([`Request::timeout`]).
    overall: Option<Instant>,
    /// For an observation: the Observe value and arrival time of the freshest notification.
    last_notification: Option<(u32, Instant)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    /// Waiting for an NSTART slot.
    Queued,
    /// Sent; counts against NSTART until acknowledged or answered.
    Outstanding,
    /// Acknowledged (empty ACK); waiting for the separate response.
    Acknowledged,
    /// An observation (RFC 7641) that has had notifications; waiting for more.
    Observing,
}

/// A message this endpoint sent that an ACK or RST may refer to.
#[derive(Debug)]
struct Outgoing {
    wire: Vec<u8>,
    source: Option<IpAddr>,
    ifindex: Option<u32>,
    owner: Owner,
    /// Retransmission state, for Confirmable messages.
    retransmit: Option<Retransmit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Request(RequestId),
    Response,
    /// A Confirmable notification to the observer with this token.
    Notification(Token),
}

#[derive(Debug, Clone, Copy)]
struct Retransmit {
    count: u32,
    timeout: Duration,
    next_at: Instant,
}

/// A received request that awaits the application's answer.
#[derive(Debug)]
struct Incoming {
    meta: RecvMeta,
    ty: Type,
    mid: u16,
    token: Token,
    /// When its timer fires next: for the empty ACK, then to give up on the answer.
    timer_at: Instant,
    /// When the application's answer is no longer of use (EXCHANGE_LIFETIME or NON_LIFETIME).
    expires: Instant,
    empty_ack_sent: bool,
    /// What identifies the requested representation (for the block cache).
    key: u64,
    /// The Block2 option of the request, if any (which block, of what size).
    block2: Option<crate::message::BlockValue>,
    /// The last Block1 of a completed upload, echoed in the response.
    block1: Option<crate::message::BlockValue>,
    /// The request's Observe option (0 registers, 1 deregisters; RFC 7641).
    observe: Option<u32>,
    /// Set when this "request" is the re-rendering of an observed resource for a notification.
    notification: bool,
    /// The type the notification must have, if the caller of `notify_as` chose one.
    notification_type: Option<Type>,
    /// A copy of a registering request (Observe 0), kept to render later notifications.
    registration: Option<Request>,
}

/// A client observing a resource of this endpoint (RFC 7641 §4).
#[derive(Debug)]
struct Observer {
    /// The path observed, as `Endpoint::notify` names it.
    path: String,
    /// The registration, replayed to the application to render each notification.
    request: Request,
    meta: RecvMeta,
    /// The Observe value of the last notification.
    seq: u32,
    notifications_since_con: u32,
    last_con: Instant,
    /// The message ID of a Confirmable notification not yet acknowledged: a newer
    /// notification replaces it (RFC 7641 §4.5.2).
    inflight_con: Option<u16>,
}

/// A datagram waiting for [`Endpoint::poll_transmit`].
#[derive(Debug)]
enum Queued {
    /// An empty ACK or RST.
    Empty {
        to: SocketAddr,
        ty: Type,
        mid: u16,
        source: Option<IpAddr>,
        ifindex: Option<u32>,
    },
    /// The stored wire form of an outgoing message.
    Outgoing((SocketAddr, u16)),
    /// A reply to a received message; once sent it is kept in the deduplication cache under
    /// `dedup_key` (when given) for replay.
    Reply {
        to: SocketAddr,
        wire: Vec<u8>,
        source: Option<IpAddr>,
        ifindex: Option<u32>,
        dedup_key: Option<(SocketAddr, u16)>,
    },
}

/// The first critical option that must be treated as unrecognized: unknown, of a length
/// outside its bounds (§5.4.3), or a repetition of an option that is not repeatable (§5.4.5).
fn critical_problem(options: OptionsRef<'_>) -> Option<OptionNumber> {
    let mut previous = None;
    options.iter().find_map(|(n, v)| {
        let repeated = previous == Some(n);
        previous = Some(n);
        let unrecognized = match n.info() {
            None => true,
            Some(i) => !i.len_ok(v.len()) || (repeated && !i.repeatable),
        };
        (n.is_critical() && unrecognized).then_some(n)
    })
}

/// The source address to answer from: the local address the message arrived on, unless that
/// was a multicast group.
fn reply_source(meta: &RecvMeta) -> Option<IpAddr> {
    if meta.is_multicast() {
        None
    } else {
        meta.local
    }
}

impl Endpoint {
    /// Creates an endpoint; fields of `config` out of range are clamped into it (see
    /// [`Config::validate`]).
    pub fn new(config: Arc<Config>) -> Self {
        if let Err(e) = config.validate() {
            debug!("coapio: {e}; using the nearest valid value");
        }
        let config = config.sanitized();
        let uploads = Uploads::new(
            config.max_body_size,
            config.max_uploads,
            config.exchange_lifetime(),
        );
        let block_cache = BlockCache::new(config.block_cache, config.exchange_lifetime());
        Self {
            rng: Rng::new(config.seed),
            dedup: Dedup::new(config.dedup_capacity),
            config,
            next_id: 0,
            peers: HashMap::new(),
            idle: VecDeque::new(),
            active_peers: 0,
            requests: HashMap::new(),
            by_token: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            transfers: HashMap::new(),
            wire_to_user: HashMap::new(),
            uploads,
            block_cache,
            observers: HashMap::new(),
            notification_fetches: HashMap::new(),
            delayed: HashMap::new(),
            group_requests: HashMap::new(),
            non_notifications: VecDeque::new(),
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---------------------------------------------------------------- client side

    /// Starts a request to `remote`; its outcome comes as [`Event::Response`] or
    /// [`Event::Failed`] with the returned ID. Call [`poll_transmit`](Self::poll_transmit)
    /// afterwards.
    ///
    /// The request goes out at once if fewer than NSTART interactions with `remote` are
    /// outstanding, else when one ends.
    ///
    /// # Errors
    ///
    /// [`Error::WrongCode`] if the method is not a request code, [`Error::QueueFull`] when too
    /// many requests wait for `remote`, [`Error::NoToken`] when no unused token is left,
    /// [`Error::Encode`] when the request cannot be encoded. Nothing is sent then.
    pub fn request(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        request: Request,
    ) -> Result<RequestId, Error> {
        if !request.method.is_request() {
            return Err(Error::WrongCode(request.method));
        }
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
        if remote.ip().is_multicast() {
            return self.group_request(now, remote, request);
        }
        if request.payload.len() > self.config.block_size
            && !request.options.contains(OptionNumber::BLOCK1)
        {
            let (transfer, first) = ClientTransfer::upload(
                remote,
                request,
                self.config.block_size,
                self.config.max_body_size,
            );
            let id = self.start_wire(now, remote, first)?;
            self.transfers.insert(id, (transfer, id));
            return Ok(id);
        }
        self.start_wire(now, remote, request)
    }

    /// A request to a multicast group: sent Non-confirmable (RFC 7252 §8.1), it collects the
    /// responses of every server until `Config::multicast_timeout` (or its own timeout).
    fn group_request(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        mut request: Request,
    ) -> Result<RequestId, Error> {
        request.confirmable = false;
        let limit = request.timeout.unwrap_or(self.config.multicast_timeout);
        request.timeout = Some(limit);
        let id = self.start_wire(now, remote, request)?;
        if let Some(req) = self.requests.get(&id) {
            self.group_requests.insert(req.token, id);
        }
        Ok(id)
    }

    /// A response to a request sent to a multicast group, from one of the servers.
    fn group_response(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>, id: RequestId) {
        let (lifetime, replay) = if m.ty == Type::Con {
            self.transmits.push_back(Queued::Empty {
                to: meta.remote,
                ty: Type::Ack,
                mid: m.message_id,
                source: reply_source(meta),
                ifindex: meta.ifindex,
            });
            (self.config.exchange_lifetime(), Replay::EmptyAck)
        } else {
            (self.config.non_lifetime(), Replay::Nothing)
        };
        self.dedup.insert(
            (meta.remote, m.message_id),
            now + lifetime,
            replay,
            reply_source(meta),
            meta.ifindex,
        );
        self.events.push_back(Event::GroupResponse {
            id,
            from: meta.remote,
            response: Response {
                code: m.code,
                options: m.options.to_owned(),
                payload: m.payload.to_vec(),
            },
        });
    }

    /// Makes one request message exchange (a whole request, or one block of a transfer).
    fn start_wire(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        request: Request,
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
        let token = self.new_token(remote, token_length)?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        // A timeout too large to add to `now` is no timeout.
        let overall = request.timeout.and_then(|t| now.checked_add(t));
        let peer = self.acquire_peer(now, remote);
        let start = peer.outstanding < nstart;
        if !start {
            peer.queue.push_back(id);
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
        let mut fetches: Vec<RequestId> = self
            .notification_fetches
            .iter()
            .filter(|(_, (obs, _))| *obs == id)
            .map(|(wire, _)| *wire)
            .collect();
        fetches.sort_unstable();
        for wire in fetches {
            self.finish_request(now, wire, None);
        }
        if let Some((_, wire)) = self.transfers.remove(&id) {
            self.wire_to_user.remove(&wire);
            debug!("coapio: block-wise request {id:?} cancelled");
            self.finish_request(now, wire, None);
            return;
        }
        let id = if self.requests.contains_key(&id) {
            id
        } else {
            // An observation that began as a block-wise upload lives on under its last
            // exchange's ID.
            let wire = self
                .wire_to_user
                .iter()
                .find(|(_, u)| **u == id)
                .map(|(w, _)| *w);
            match wire {
                Some(w) => {
                    self.wire_to_user.remove(&w);
                    w
                }
                None => id,
            }
        };
        if self.requests.contains_key(&id) {
            debug!("coapio: request {id:?} cancelled");
            self.finish_request(now, id, None);
        }
    }

    fn new_token(&mut self, remote: SocketAddr, len: usize) -> Result<Token, Error> {
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

    /// The peer's state, created (idle) if there is none.
    fn peer(&mut self, now: Instant, remote: SocketAddr) -> &mut Peer {
        let rng = &mut self.rng;
        let idle = &mut self.idle;
        self.peers.entry(remote).or_insert_with(|| {
            idle.push_back((remote, now));
            Peer {
                next_mid: rng.next_u64() as u16,
                outstanding: 0,
                queue: VecDeque::new(),
                users: 0,
                idle_since: Some(now),
            }
        })
    }

    /// The peer's state, counted as used until [`Self::release_peer`].
    fn acquire_peer(&mut self, now: Instant, remote: SocketAddr) -> &mut Peer {
        if self.peer(now, remote).users == 0 {
            self.active_peers += 1;
        }
        let p = self.peer(now, remote);
        p.users += 1;
        p.idle_since = None;
        p
    }

    fn next_mid(&mut self, now: Instant, remote: SocketAddr) -> u16 {
        // Never a message ID still in flight to this remote (after 65536 others).
        for _ in 0..=u16::MAX as u32 {
            let peer = self.peer(now, remote);
            let mid = peer.next_mid;
            peer.next_mid = mid.wrapping_add(1);
            if !self.outgoing.contains_key(&(remote, mid)) {
                return mid;
            }
        }
        self.peer(now, remote).next_mid
    }

    fn release_peer(&mut self, now: Instant, remote: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&remote) {
            if p.users == 1 {
                self.active_peers -= 1;
            }
            p.users = p.users.saturating_sub(1);
            if p.users == 0 && p.idle_since.is_none() {
                p.idle_since = Some(now);
                self.idle.push_back((remote, now));
            }
        }
        self.purge_idle_peers(now);
    }

    /// Forgets peers idle for EXCHANGE_LIFETIME, and the oldest idle ones beyond the bound.
    fn purge_idle_peers(&mut self, now: Instant) {
        let lifetime = self.config.exchange_lifetime();
        let cap = self.config.dedup_capacity;
        while let Some(&(remote, since)) = self.idle.front() {
            if since + lifetime > now && self.idle.len() <= cap {
                break;
            }
            self.idle.pop_front();
            if self
                .peers
                .get(&remote)
                .is_some_and(|p| p.idle_since == Some(since))
            {
                self.peers.remove(&remote);
            }
        }
    }

    /// The first retransmission timeout, drawn from [ACK_TIMEOUT, ACK_TIMEOUT × factor].
    fn initial_timeout(&mut self) -> Duration {
        let c = &self.config;
        let spread = c.ack_random_factor - 1.0;
        c.ack_timeout.mul_f64(1.0 + spread * self.rng.next_f64())
    }

    /// Sends a queued request: gives it a message ID, encodes it and arms its timer.
    fn start_request(&mut self, now: Instant, id: RequestId) {
        let Some(remote) = self.requests.get(&id).map(|r| r.remote) else {
            return;
        };
        let mid = self.next_mid(now, remote);
        let initial = self.initial_timeout();
        let non_timeout = self.config.non_timeout;
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let ty = if req.request.confirmable {
            Type::Con
        } else {
            Type::Non
        };
        let msg = Message {
            ty,
            code: req.request.method,
            message_id: mid,
            token: req.token,
            options: req.request.options.clone(),
            payload: req.request.payload.clone(),
        };
        let mut wire = Vec::new();
        if msg.encode(&mut wire).is_err() {
            // `request` checked the option lengths; nothing else can fail.
            return;
        }
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
        debug!(
            "coapio: sending {ty:?} {} request {id:?} to {remote} (MID {mid}, {:?})",
            msg.code, msg.token
        );
        self.acquire_peer(now, remote).outstanding += 1; // and the outgoing entry uses it
        self.outgoing.insert(
            (remote, mid),
            Outgoing {
                wire,
                source: None,
                ifindex: None,
                owner: Owner::Request(id),
                retransmit,
            },
        );
        self.transmits.push_back(Queued::Outgoing((remote, mid)));
    }

    /// Removes a request with all its state and, when `outcome` is given, reports it.
    fn finish_request(
        &mut self,
        now: Instant,
        id: RequestId,
        outcome: Option<Result<Response, RequestError>>,
    ) {
        let outcome = match outcome {
            Some(Ok(response)) if self.is_notification(id, &response) => {
                self.on_notification(now, id, response);
                return;
            }
            other => other,
        };
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
            Some(Err(RequestError::Timeout)) if group => {
                self.events.push_back(Event::GroupDone { id });
                None
            }
            other => other,
        };
        if let Some(mid) = req.mid {
            if self.outgoing.remove(&(req.remote, mid)).is_some() {
                self.release_peer(now, req.remote);
            }
        }
        let mut start_next = None;
        if let Some(p) = self.peers.get_mut(&req.remote) {
            match req.state {
                ReqState::Queued => p.queue.retain(|q| *q != id),
                ReqState::Outstanding => {
                    p.outstanding = p.outstanding.saturating_sub(1);
                    start_next = p.queue.pop_front();
                }
                ReqState::Acknowledged | ReqState::Observing => {}
            }
        }
        self.release_peer(now, req.remote);
        if let Some((observation, transfer)) = self.notification_fetches.remove(&id) {
            self.continue_notification_fetch(now, observation, transfer, outcome);
        } else {
            self.deliver(now, id, req, outcome);
        }
        if let Some(next) = start_next {
            self.start_request(now, next);
        }
    }

    /// Reports the outcome of a finished exchange to the caller (or continues its transfer).
    fn deliver(
        &mut self,
        now: Instant,
        id: RequestId,
        req: OutRequest,
        outcome: Option<Result<Response, RequestError>>,
    ) {
        let user = self.wire_to_user.remove(&id).unwrap_or(id);
        match outcome {
            Some(Ok(response)) => {
                self.on_wire_response(now, user, req.remote, req.request, req.overall, response)
            }
            Some(Err(error)) => {
                debug!("coapio: request {user:?} to {} failed: {error}", req.remote);
                self.transfers.remove(&user);
                self.events.push_back(Event::Failed { id: user, error });
            }
            None => {
                self.transfers.remove(&user);
            }
        }
    }

    /// The next step of fetching the rest of a block-wise notification: another block, or
    /// the whole notification for the observation (if it is still open).
    fn continue_notification_fetch(
        &mut self,
        now: Instant,
        observation: RequestId,
        mut transfer: ClientTransfer,
        outcome: Option<Result<Response, RequestError>>,
    ) {
        match outcome {
            Some(Ok(response)) => match transfer.on_response(response) {
                Step::Send(next) => match self.start_wire(now, transfer.remote, next) {
                    Ok(wire) => {
                        self.notification_fetches
                            .insert(wire, (observation, transfer));
                    }
                    Err(e) => debug!("coapio: cannot fetch the rest of a notification: {e}"),
                },
                Step::Done(Ok(whole)) => {
                    if self.requests.contains_key(&observation) {
                        self.events.push_back(Event::Notification {
                            id: observation,
                            response: whole,
                        });
                    }
                }
                Step::Done(Err(e)) => debug!("coapio: fetching a notification failed: {e}"),
            },
            Some(Err(e)) => debug!("coapio: fetching a notification failed: {e}"),
            None => {}
        }
    }

    /// Whether `response` to request `id` continues an observation (RFC 7641): the request
    /// registered (Observe 0) and the answer is a success that carries Observe.
    fn is_notification(&self, id: RequestId, response: &Response) -> bool {
        response.code.is_success()
            && response.options.contains(OptionNumber::OBSERVE)
            && self
                .requests
                .get(&id)
                .is_some_and(|r| r.request.options.get_uint(OptionNumber::OBSERVE) == Some(0))
    }

    /// A notification: delivered if it is fresher than the last one (RFC 7641 §3.4); the
    /// observation stays open and re-registers if Max-Age passes without one.
    fn on_notification(&mut self, now: Instant, id: RequestId, response: Response) {
        let seq = response
            .options
            .get_uint(OptionNumber::OBSERVE)
            .unwrap_or(0);
        let max_age = response
            .options
            .get_uint(OptionNumber::MAX_AGE)
            .unwrap_or(60);
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let (remote, mid, state) = (req.remote, req.mid, req.state);
        let fresh = match req.last_notification {
            None => true,
            Some((v1, t1)) => {
                let (v1, v2) = (v1 & 0xff_ffff, seq & 0xff_ffff);
                (v1 < v2 && v2 - v1 < 1 << 23)
                    || (v1 > v2 && v1 - v2 > 1 << 23)
                    || now > t1 + Duration::from_secs(128)
            }
        };
        req.state = ReqState::Observing;
        // Give the server Max-Age plus a margin before asking again.
        let deadline = now + Duration::from_secs(u64::from(max_age) + 2);
        req.deadline = Some(deadline);
        if fresh {
            req.last_notification = Some((seq, now));
        }
        // The caller's own timeout covered the wait for the first answer; an observation
        // lives until it is cancelled.
        req.overall = None;
        self.timers.schedule(deadline, TimerKey::Deadline(id));
        if let Some(mid) = mid {
            if self.outgoing.remove(&(remote, mid)).is_some() {
                self.release_peer(now, remote);
            }
        }
        if state == ReqState::Outstanding {
            let mut next = None;
            if let Some(p) = self.peers.get_mut(&remote) {
                p.outstanding = p.outstanding.saturating_sub(1);
                next = p.queue.pop_front();
            }
            if let Some(next) = next {
                self.start_request(now, next);
            }
        }
        let first_of_many = response
            .options
            .get(OptionNumber::BLOCK2)
            .and_then(|v| crate::message::BlockValue::from_bytes(v).ok())
            .is_some_and(|b| b.num() == 0 && b.more());
        if fresh && first_of_many {
            // A large notification: fetch the rest (without Observe) before delivering it.
            let mut original = self.requests.get(&id).map(|r| r.request.clone());
            if let Some(req) = original.as_mut() {
                req.options.remove(OptionNumber::OBSERVE);
                let mut t =
                    ClientTransfer::download(remote, req.clone(), self.config.max_body_size);
                if let Step::Send(next) = t.on_response(response) {
                    match self.start_wire(now, remote, next) {
                        Ok(wire) => {
                            self.notification_fetches.insert(wire, (id, t));
                        }
                        Err(e) => debug!("coapio: cannot fetch the rest of a notification: {e}"),
                    }
                }
            }
        } else if fresh {
            // The observation may have been the last exchange of a Block1 upload: the caller
            // knows it by the transfer's ID, and the transfer is over.
            let user = self.wire_to_user.get(&id).copied().unwrap_or(id);
            self.transfers.remove(&user);
            self.events
                .push_back(Event::Notification { id: user, response });
        } else {
            debug!("coapio: notification {seq} for {id:?} is older than the last one; dropped");
        }
    }

    /// Registers an observation again after Max-Age passed without a notification.
    fn reregister(&mut self, now: Instant, id: RequestId) {
        if let Some(req) = self.requests.get_mut(&id) {
            debug!("coapio: observation {id:?} heard nothing for Max-Age; registering again");
            req.state = ReqState::Queued;
            req.deadline = None;
            let (remote, nstart) = (req.remote, self.config.nstart);
            let peer = self.peer(now, remote);
            if peer.outstanding < nstart {
                self.start_request(now, id);
            } else {
                peer.queue.push_back(id);
            }
        }
    }

    /// A response to one message exchange: the caller's response, or the next step of a
    /// block-wise transfer (RFC 7959).
    fn on_wire_response(
        &mut self,
        now: Instant,
        user: RequestId,
        remote: SocketAddr,
        request: Request,
        overall: Option<Instant>,
        response: Response,
    ) {
        let transfer = match self.transfers.remove(&user) {
            Some((t, _)) => Some(t),
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
                    error: RequestError::Timeout,
                });
            }
            Step::Send(mut next) => {
                next.timeout = overall.map(|o| o - now);
                match self.start_wire(now, transfer.remote, next) {
                    Ok(wire) => {
                        trace!("coapio: block-wise request {user:?} continues as {wire:?}");
                        self.wire_to_user.insert(wire, user);
                        self.transfers.insert(user, (transfer, wire));
                    }
                    Err(e) => self.events.push_back(Event::Failed {
                        id: user,
                        error: RequestError::Refused(e),
                    }),
                }
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

    /// Marks an outstanding request as acknowledged: it no longer counts against NSTART.
    fn acknowledge_request(&mut self, now: Instant, id: RequestId) {
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
        let mut next = None;
        if let Some(p) = self.peers.get_mut(&remote) {
            p.outstanding = p.outstanding.saturating_sub(1);
            next = p.queue.pop_front();
        }
        if let Some(next) = next {
            self.start_request(now, next);
        }
    }

    // ---------------------------------------------------------------- server side

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
        if !response.code.is_response() {
            return Err(Error::WrongCode(response.code));
        }
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
        let Some(ex) = self.incoming.get(&id) else {
            return Err(Error::UnknownExchange);
        };
        let response =
            self.shape_blockwise(now, ex.meta.remote, ex.key, ex.block1, ex.block2, response);
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
        let msg = Message {
            ty,
            code: response.code,
            message_id: mid,
            token: ex.token,
            options: response.options,
            payload: response.payload,
        };
        let mut wire = Vec::with_capacity(16 + msg.payload.len());
        msg.encode(&mut wire)?;
        let Some(ex) = self.incoming.remove(&id) else {
            return Err(Error::UnknownExchange);
        };
        let remote = ex.meta.remote;
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
        // A separate or NON response: it needs a message ID of its own.
        let new_mid = self.next_mid(now, remote);
        wire[2..4].copy_from_slice(&new_mid.to_be_bytes());
        if ty == Type::Con {
            let initial = self.initial_timeout();
            self.timers
                .schedule(now + initial, TimerKey::Retransmit(remote, new_mid));
            self.acquire_peer(now, remote);
            self.outgoing.insert(
                (remote, new_mid),
                Outgoing {
                    wire,
                    source,
                    ifindex: ex.meta.ifindex,
                    owner: Owner::Response,
                    retransmit: Some(Retransmit {
                        count: 0,
                        timeout: initial,
                        next_at: now + initial,
                    }),
                },
            );
            self.transmits
                .push_back(Queued::Outgoing((remote, new_mid)));
        } else {
            let dedup_key = (ex.ty == Type::Non).then_some((remote, ex.mid));
            let reply = Queued::Reply {
                to: remote,
                wire,
                source,
                ifindex: ex.meta.ifindex,
                dedup_key,
            };
            let leisure = self.config.leisure;
            if ex.meta.is_multicast()
                && !leisure.is_zero()
                && self.delayed.len() < self.config.max_pending_requests
            {
                // RFC 7252 §8.2: spread the group's answers over the leisure period.
                let at = now + leisure.mul_f64(self.rng.next_f64());
                let key = self.next_id;
                self.next_id += 1;
                self.delayed.insert(key, reply);
                self.timers.schedule(at, TimerKey::Leisure(key));
            } else {
                self.transmits.push_back(reply);
            }
        }
        self.purge_idle_peers(now);
        Ok(())
    }

    /// Answers a request at once, without involving the application (bad options, overload).
    fn reject_request(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>, code: Code) {
        self.answer_directly(now, meta, m, Response::new(code));
    }

    /// Applies RFC 7641 §4.1 to the answer of a request: a registration (Observe 0) answered
    /// with a success that carries Observe (the application's consent) adds or refreshes the
    /// observer and numbers the answer; Observe 1 removes the observer; other answers carry
    /// no Observe option.
    fn observe_registration(
        &mut self,
        now: Instant,
        id: IncomingId,
        mut response: Response,
    ) -> Response {
        let Some(ex) = self.incoming.get_mut(&id) else {
            return response;
        };
        let key = (ex.meta.remote, ex.token);
        let consent =
            response.code.is_success() && response.options.contains(OptionNumber::OBSERVE);
        match (ex.observe, ex.registration.take()) {
            (Some(0), Some(request)) if consent => {
                let path = request.path();
                let on_path = self.observers.values().filter(|o| o.path == path).count();
                let full = self.observers.len() >= self.config.max_observers
                    || on_path >= self.config.max_observers_per_resource;
                if !self.observers.contains_key(&key) && full {
                    debug!(
                        "coapio: no room for another observer; {} not registered",
                        key.0
                    );
                    response.options.remove(OptionNumber::OBSERVE);
                    return response;
                }
                let seq = self
                    .observers
                    .get(&key)
                    .map_or(2, |o| (o.seq + 1) & 0xff_ffff);
                debug!("coapio: {} observes {}", key.0, request.path());
                self.observers.insert(
                    key,
                    Observer {
                        path,
                        request,
                        meta: ex.meta,
                        seq,
                        notifications_since_con: 0,
                        last_con: now,
                        inflight_con: None,
                    },
                );
                response.options.set_uint(OptionNumber::OBSERVE, seq);
            }
            (Some(1), _) => {
                if self.observers.remove(&key).is_some() {
                    debug!("coapio: {} no longer observes", key.0);
                }
                response.options.remove(OptionNumber::OBSERVE);
            }
            _ => {
                response.options.remove(OptionNumber::OBSERVE);
            }
        }
        response
    }

    /// Asks the application for the current representation of `path` for each of its
    /// observers: one [`Event::Request`] each (the registration again); answering it with
    /// [`respond`](Self::respond) sends the notification (RFC 7641 §4.2). Returns how many
    /// observers there are.
    pub fn notify(&mut self, now: Instant, path: &str) -> usize {
        self.notify_as(now, path, None)
    }

    /// As [`notify`](Self::notify), with the notifications' type chosen for this change
    /// (`Some(Type::Con)`: every observer must acknowledge it) instead of
    /// [`Config::notification_type`].
    pub fn notify_as(&mut self, now: Instant, path: &str, ty: Option<Type>) -> usize {
        let mut keys: Vec<(SocketAddr, Token)> = self
            .observers
            .iter()
            .filter(|(_, o)| o.path == path)
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable_by_key(|(a, t)| (*a, t.as_bytes().to_vec()));
        let lifetime = self.config.non_lifetime();
        for key in &keys {
            let Some(o) = self.observers.get(key) else {
                continue;
            };
            let (meta, request) = (o.meta, o.request.clone());
            let id = IncomingId(self.next_id);
            self.next_id += 1;
            self.incoming.insert(
                id,
                Incoming {
                    meta,
                    ty: Type::Non,
                    mid: 0,
                    token: key.1,
                    timer_at: now + lifetime,
                    expires: now + lifetime,
                    empty_ack_sent: true,
                    key: request_key(request.method, request.options.iter()),
                    block2: None,
                    block1: None,
                    observe: None,
                    notification: true,
                    notification_type: ty,
                    registration: None,
                },
            );
            self.timers.schedule(now + lifetime, TimerKey::Incoming(id));
            self.events.push_back(Event::Request { id, meta, request });
        }
        keys.len()
    }

    /// Sends a notification: NON (or `Config::notification_type`), and CON every
    /// `Config::notification_con_every` notifications and at least once a day; an error
    /// response ends the observation (RFC 7641 §4.2, §4.5).
    fn send_notification(&mut self, now: Instant, ex: Incoming, response: Response) {
        let key = (ex.meta.remote, ex.token);
        let con_every = self.config.notification_con_every;
        let always_con = ex
            .notification_type
            .unwrap_or(self.config.notification_type)
            == Type::Con;
        let Some(o) = self.observers.get_mut(&key) else {
            return; // the observer left meanwhile
        };
        let success = response.code.is_success();
        let mut response = response;
        if success {
            o.seq = (o.seq + 1) & 0xff_ffff;
            response.options.set_uint(OptionNumber::OBSERVE, o.seq);
        } else {
            response.options.remove(OptionNumber::OBSERVE);
        }
        let con = always_con
            || !success
            || o.notifications_since_con + 1 >= con_every
            || now >= o.last_con + Duration::from_secs(24 * 3600);
        if con {
            o.notifications_since_con = 0;
            o.last_con = now;
        } else {
            o.notifications_since_con += 1;
        }
        if !success {
            debug!(
                "coapio: {} answered {}: the observation ends",
                key.0, response.code
            );
            self.observers.remove(&key);
        }
        let remote = key.0;
        let response = self.shape_blockwise(now, remote, ex.key, None, None, response);
        let mid = self.next_mid(now, remote);
        let msg = Message {
            ty: if con { Type::Con } else { Type::Non },
            code: response.code,
            message_id: mid,
            token: key.1,
            options: response.options,
            payload: response.payload,
        };
        let mut wire = Vec::with_capacity(16 + msg.payload.len());
        if msg.encode(&mut wire).is_err() {
            return;
        }
        let source = reply_source(&ex.meta);
        if con {
            // At most one Confirmable notification in flight per observer: the new one
            // replaces the old (RFC 7641 §4.5.2).
            let old = self
                .observers
                .get_mut(&key)
                .and_then(|o| o.inflight_con.replace(mid));
            if let Some(old) = old {
                if self.outgoing.remove(&(remote, old)).is_some() {
                    self.release_peer(now, remote);
                }
            }
            let initial = self.initial_timeout();
            self.timers
                .schedule(now + initial, TimerKey::Retransmit(remote, mid));
            self.acquire_peer(now, remote);
            self.outgoing.insert(
                (remote, mid),
                Outgoing {
                    wire,
                    source,
                    ifindex: ex.meta.ifindex,
                    owner: Owner::Notification(key.1),
                    retransmit: Some(Retransmit {
                        count: 0,
                        timeout: initial,
                        next_at: now + initial,
                    }),
                },
            );
            self.transmits.push_back(Queued::Outgoing((remote, mid)));
        } else {
            self.non_notifications.push_back(((remote, mid), key.1));
            while self.non_notifications.len() > 4 * self.config.max_observers + 64 {
                self.non_notifications.pop_front();
            }
            self.transmits.push_back(Queued::Reply {
                to: remote,
                wire,
                source,
                ifindex: ex.meta.ifindex,
                dedup_key: None,
            });
        }
        self.purge_idle_peers(now);
    }

    /// Forgets the observer a Reset or an unacknowledged notification speaks of.
    fn drop_observer(&mut self, remote: SocketAddr, token: Token, why: &str) {
        if self.observers.remove(&(remote, token)).is_some() {
            debug!("coapio: observer {remote} {token:?} removed: {why}");
        }
    }

    /// Fits a response to block-wise rules: echoes the Block1 of a completed upload, and cuts a
    /// representation larger than the block size (the client's, if smaller) into Block2
    /// blocks, keeping the whole for the later blocks.
    fn shape_blockwise(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        key: u64,
        block1: Option<crate::message::BlockValue>,
        block2: Option<crate::message::BlockValue>,
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
        let preferred = BlockValue::szx_for_size(self.config.block_size);
        let szx = block2.map_or(preferred, |b| b.szx().min(preferred));
        let size = 1usize << (szx + 4);
        let num = block2.map_or(0, |b| b.num());
        if response.payload.len() <= size && num == 0 {
            return response;
        }
        let Ok(block) = BlockValue::new(num, false, szx) else {
            return Response::new(Code::BAD_OPTION);
        };
        // One ETag for all blocks, computed once (the cached whole carries it).
        if !response.options.contains(OptionNumber::ETAG) {
            let etag = super::blockwise::content_etag(&response.payload);
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
    fn answer_directly(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
        response: Response,
    ) {
        let id = self.register_incoming(now, meta, m);
        if self.respond(now, id, response).is_err() {
            self.incoming.remove(&id);
        }
    }

    fn register_incoming(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
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
        self.dedup.insert(
            (meta.remote, m.message_id),
            now + lifetime,
            Replay::Nothing,
            reply_source(meta),
            meta.ifindex,
        );
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
            },
        );
        id
    }

    // ---------------------------------------------------------------- input

    /// Processes one received datagram.
    ///
    /// Malformed datagrams change nothing: a malformed Confirmable message is answered with a
    /// Reset (<https://www.rfc-editor.org/rfc/rfc7252#section-4.2>), anything else is dropped.
    pub fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, data: &[u8]) {
        self.dedup.purge(now);
        self.purge_idle_peers(now);
        self.datagram(now, meta, data);
        self.compact_timers();
    }

    fn datagram(&mut self, now: Instant, meta: &RecvMeta, data: &[u8]) {
        let m = match MessageRef::decode(data) {
            Ok(m) => m,
            Err(e) => {
                debug!("coapio: malformed datagram from {}: {e}", meta.remote);
                if let Some((Type::Con, mid)) = peek_header(data) {
                    self.send_rst(meta, mid);
                }
                return;
            }
        };
        trace!(
            "coapio: received {:?} {} MID {} {:?} from {}",
            m.ty,
            m.code,
            m.message_id,
            m.token,
            meta.remote
        );
        match m.ty {
            Type::Ack => self.handle_ack(now, meta, &m),
            Type::Rst => self.handle_rst(now, meta, &m),
            Type::Con | Type::Non => {
                if m.code.is_empty() {
                    // A CON ping is answered with RST; an empty NON is meaningless (§4.3).
                    if m.ty == Type::Con {
                        self.send_rst(meta, m.message_id);
                    }
                    return;
                }
                if m.code.is_reserved() {
                    debug!(
                        "coapio: message with reserved code {} from {}",
                        m.code, meta.remote
                    );
                    if m.ty == Type::Con {
                        self.send_rst(meta, m.message_id);
                    }
                    return;
                }
                if self.replay_duplicate(now, meta, &m) {
                    return;
                }
                if m.code.is_request() {
                    self.handle_request(now, meta, &m);
                } else {
                    self.handle_response(now, meta, &m);
                }
            }
        }
    }

    fn send_rst(&mut self, meta: &RecvMeta, mid: u16) {
        if meta.is_multicast() {
            return;
        }
        self.transmits.push_back(Queued::Empty {
            to: meta.remote,
            ty: Type::Rst,
            mid,
            source: reply_source(meta),
            ifindex: meta.ifindex,
        });
    }

    /// Handles a message seen before; returns whether it was one.
    fn replay_duplicate(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) -> bool {
        let Some(entry) = self.dedup.get_mut(now, &(meta.remote, m.message_id)) else {
            return false;
        };
        debug!(
            "coapio: duplicate {:?} MID {} from {}",
            m.ty, m.message_id, meta.remote
        );
        let (source, ifindex) = (entry.source, entry.ifindex);
        let queued = match &entry.replay {
            Replay::Nothing => None,
            Replay::EmptyAck => Some(Queued::Empty {
                to: meta.remote,
                ty: Type::Ack,
                mid: m.message_id,
                source,
                ifindex,
            }),
            Replay::Bytes(wire) => Some(Queued::Reply {
                to: meta.remote,
                wire: wire.clone(),
                source,
                ifindex,
                dedup_key: None,
            }),
        };
        self.transmits.extend(queued);
        true
    }

    fn handle_request(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        if let Some(bad) = critical_problem(m.options) {
            debug!(
                "coapio: request from {} has unrecognized critical option {bad:?}",
                meta.remote
            );
            self.reject_request(now, meta, m, Code::BAD_OPTION);
            return;
        }
        if self.incoming.len() >= self.config.max_pending_requests {
            debug!(
                "coapio: too many requests await answers; 5.03 to {}",
                meta.remote
            );
            self.reject_request(now, meta, m, Code::SERVICE_UNAVAILABLE);
            return;
        }
        let key = request_key(m.code, m.options.iter());
        let mut request = Request {
            method: m.code,
            options: m.options.to_owned(),
            payload: m.payload.to_vec(),
            confirmable: m.ty == Type::Con && !meta.is_multicast(),
            timeout: None,
            token_length: Some(m.token.len() as u8),
        };
        let preferred = crate::message::BlockValue::szx_for_size(self.config.block_size);
        let block2 = match block_of(m.options, OptionNumber::BLOCK2) {
            Some(Err(())) => return self.reject_request(now, meta, m, Code::BAD_OPTION),
            Some(Ok(b)) => Some(b),
            None => None,
        };
        let mut block1 = None;
        match block_of(m.options, OptionNumber::BLOCK1) {
            Some(Err(())) => return self.reject_request(now, meta, m, Code::BAD_OPTION),
            Some(Ok(b)) => match self
                .uploads
                .on_block(now, meta.remote, key, request, b, preferred)
            {
                UploadStep::Answer(response) => {
                    return self.answer_directly(now, meta, m, response)
                }
                UploadStep::Complete(whole, last) => {
                    request = whole;
                    block1 = Some(last);
                }
            },
            None => {}
        }
        // A later block of a representation served block-wise: from the cache if it is there.
        if let Some(b) = block2.filter(|b| b.num() > 0 && block1.is_none()) {
            let szx = b.szx().min(preferred);
            let block = crate::message::BlockValue::new(b.num(), false, szx).ok();
            let part = block.and_then(|block| {
                self.block_cache
                    .get(now, &(meta.remote, key))
                    .map(|whole| cut_block2(whole, block))
            });
            if let Some(part) = part {
                let response = part.unwrap_or_else(|| Response::new(Code::BAD_OPTION));
                return self.answer_directly(now, meta, m, response);
            }
        }
        let id = self.register_incoming(now, meta, m);
        if let Some(ex) = self.incoming.get_mut(&id) {
            ex.key = key;
            ex.block2 = block2;
            ex.block1 = block1;
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

    /// A separate (CON or NON) response.
    fn handle_response(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        let remote = meta.remote;
        let id = self.by_token.get(&(remote, m.token)).copied().filter(|id| {
            self.requests
                .get(id)
                .is_some_and(|r| r.state != ReqState::Queued)
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
        if let Some(bad) = critical_problem(m.options) {
            debug!("coapio: response from {remote} has unrecognized critical option {bad:?}");
            if m.ty == Type::Con {
                self.send_rst(meta, m.message_id);
                self.finish_request(
                    now,
                    id,
                    Some(Err(RequestError::BadResponse(
                        "unrecognized critical option in the response",
                    ))),
                );
            }
            return;
        }
        let (lifetime, replay) = if m.ty == Type::Con {
            self.transmits.push_back(Queued::Empty {
                to: remote,
                ty: Type::Ack,
                mid: m.message_id,
                source: reply_source(meta),
                ifindex: meta.ifindex,
            });
            (self.config.exchange_lifetime(), Replay::EmptyAck)
        } else {
            (self.config.non_lifetime(), Replay::Nothing)
        };
        self.dedup.insert(
            (remote, m.message_id),
            now + lifetime,
            replay,
            reply_source(meta),
            meta.ifindex,
        );
        let response = Response {
            code: m.code,
            options: m.options.to_owned(),
            payload: m.payload.to_vec(),
        };
        self.finish_request(now, id, Some(Ok(response)));
    }

    fn handle_ack(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        if m.code.is_request() || m.code.is_reserved() {
            debug!(
                "coapio: ACK with code {} from {} ignored",
                m.code, meta.remote
            );
            return;
        }
        let key = (meta.remote, m.message_id);
        let Some(owner) = self.outgoing.get(&key).map(|o| o.owner) else {
            trace!(
                "coapio: ACK MID {} from {} matches nothing",
                m.message_id,
                meta.remote
            );
            return;
        };
        match owner {
            Owner::Response | Owner::Notification(_) => {
                self.outgoing.remove(&key);
                self.release_peer(now, meta.remote);
            }
            Owner::Request(id) => {
                let Some(req) = self.requests.get(&id) else {
                    return;
                };
                if self
                    .outgoing
                    .get(&key)
                    .is_some_and(|o| o.retransmit.is_none())
                {
                    // An ACK to a NON request is meaningless.
                    return;
                }
                let token_matches = req.token == m.token;
                self.outgoing.remove(&key);
                self.release_peer(now, meta.remote);
                if m.code.is_empty() || !token_matches {
                    if !token_matches && !m.code.is_empty() {
                        debug!("coapio: piggybacked response with a wrong token ignored");
                    }
                    self.acknowledge_request(now, id);
                    return;
                }
                let outcome = if critical_problem(m.options).is_some() {
                    Err(RequestError::BadResponse(
                        "unrecognized critical option in the response",
                    ))
                } else {
                    Ok(Response {
                        code: m.code,
                        options: m.options.to_owned(),
                        payload: m.payload.to_vec(),
                    })
                };
                self.finish_request(now, id, Some(outcome));
            }
        }
    }

    fn handle_rst(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        if !m.code.is_empty() {
            debug!(
                "coapio: RST with code {} from {} ignored",
                m.code, meta.remote
            );
            return;
        }
        let key = (meta.remote, m.message_id);
        match self.outgoing.get(&key).map(|o| o.owner) {
            Some(Owner::Request(id)) => {
                self.finish_request(now, id, Some(Err(RequestError::Reset)));
            }
            Some(Owner::Response) => {
                debug!("coapio: separate response to {} was reset", meta.remote);
                self.outgoing.remove(&key);
                self.release_peer(now, meta.remote);
            }
            Some(Owner::Notification(token)) => {
                self.outgoing.remove(&key);
                self.release_peer(now, meta.remote);
                self.drop_observer(meta.remote, token, "the client reset a notification");
            }
            None => {
                let non = self
                    .non_notifications
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, t)| *t);
                match non {
                    Some(token) => {
                        self.drop_observer(meta.remote, token, "the client reset a notification")
                    }
                    None => trace!("coapio: RST MID {} matches nothing", m.message_id),
                }
            }
        }
    }

    /// Processes an error the network reported for a remote (an ICMP error): every request
    /// sent to that remote fails with [`RequestError::Transport`], and separate responses to
    /// it are no longer retransmitted.
    pub fn handle_transport_error(&mut self, now: Instant, err: &TransportError) {
        // Queued requests fail first, so that failing the outstanding ones starts nothing new;
        // IDs in order, so that the outcome does not depend on hash-map order.
        let mut failed: Vec<(bool, RequestId)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.remote == err.remote)
            .map(|(id, r)| (r.state != ReqState::Queued, *id))
            .collect();
        failed.sort_unstable();
        debug!(
            "coapio: {} from {}: failing {} requests",
            err.kind,
            err.remote,
            failed.len()
        );
        for (_, id) in failed {
            self.finish_request(now, id, Some(Err(RequestError::Transport(err.kind))));
        }
        let mut responses: Vec<_> = self
            .outgoing
            .iter()
            .filter(|(k, o)| k.0 == err.remote && !matches!(o.owner, Owner::Request(_)))
            .map(|(k, _)| *k)
            .collect();
        responses.sort_unstable();
        for key in responses {
            self.outgoing.remove(&key);
            self.release_peer(now, err.remote);
        }
        self.observers
            .retain(|(remote, _), _| *remote != err.remote);
    }

    // ---------------------------------------------------------------- timers

    /// Drops stale timers once they outnumber the live ones, so that a flood of requests
    /// answered at once cannot grow the heap beyond a multiple of the live state.
    fn compact_timers(&mut self) {
        let live =
            self.outgoing.len() + self.requests.len() + self.incoming.len() + self.delayed.len();
        if self.timers.len() <= 2 * live + 1024 {
            return;
        }
        let (outgoing, requests, incoming, delayed) = (
            &self.outgoing,
            &self.requests,
            &self.incoming,
            &self.delayed,
        );
        self.timers.retain(|at, key| match key {
            TimerKey::Retransmit(remote, mid) => outgoing
                .get(&(remote, mid))
                .and_then(|o| o.retransmit)
                .is_some_and(|rt| rt.next_at == at),
            TimerKey::Deadline(id) => requests
                .get(&id)
                .is_some_and(|r| r.deadline == Some(at) || r.overall == Some(at)),
            TimerKey::Incoming(id) => incoming.get(&id).is_some_and(|e| e.timer_at == at),
            TimerKey::Leisure(key) => delayed.contains_key(&key),
        });
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work, if any.
    /// It may be early (then the call does nothing), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Does what is due at `now`: retransmissions, giving up on requests, empty ACKs.
    /// Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dedup.purge(now);
        self.purge_idle_peers(now);
        while let Some((at, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Retransmit(remote, mid) => self.on_retransmit(now, at, remote, mid),
                TimerKey::Deadline(id) => {
                    let due = |r: &OutRequest| r.deadline == Some(at) || r.overall == Some(at);
                    let reregister = self.requests.get(&id).is_some_and(|r| {
                        r.state == ReqState::Observing
                            && r.deadline == Some(at)
                            && r.overall != Some(at)
                    });
                    if reregister {
                        self.reregister(now, id);
                    } else if self.requests.get(&id).is_some_and(due) {
                        self.finish_request(now, id, Some(Err(RequestError::Timeout)));
                    }
                }
                TimerKey::Incoming(id) => self.on_incoming_timer(now, at, id),
                TimerKey::Leisure(key) => {
                    if let Some(reply) = self.delayed.remove(&key) {
                        self.transmits.push_back(reply);
                    }
                }
            }
        }
        self.compact_timers();
    }

    fn on_retransmit(&mut self, now: Instant, at: Instant, remote: SocketAddr, mid: u16) {
        let max = self.config.max_retransmit;
        let key = (remote, mid);
        let Some(out) = self.outgoing.get_mut(&key) else {
            return;
        };
        let Some(rt) = out.retransmit.as_mut().filter(|rt| rt.next_at == at) else {
            return;
        };
        if rt.count < max {
            rt.count += 1;
            rt.timeout *= 2;
            rt.next_at = now + rt.timeout;
            trace!(
                "coapio: retransmission {} of MID {mid} to {remote}, next in {:?}",
                rt.count,
                rt.timeout
            );
            let next_at = rt.next_at;
            self.timers
                .schedule(next_at, TimerKey::Retransmit(remote, mid));
            self.transmits.push_back(Queued::Outgoing(key));
            return;
        }
        match out.owner {
            Owner::Request(id) => {
                self.finish_request(now, id, Some(Err(RequestError::Timeout)));
            }
            Owner::Response => {
                debug!("coapio: separate response MID {mid} to {remote} was never acknowledged");
                self.outgoing.remove(&key);
                self.release_peer(now, remote);
            }
            Owner::Notification(token) => {
                self.outgoing.remove(&key);
                self.release_peer(now, remote);
                self.drop_observer(remote, token, "a notification was never acknowledged");
            }
        }
    }

    fn on_incoming_timer(&mut self, now: Instant, at: Instant, id: IncomingId) {
        let Some(ex) = self.incoming.get_mut(&id) else {
            return;
        };
        if ex.timer_at != at {
            return;
        }
        if ex.ty != Type::Con || ex.empty_ack_sent {
            debug!(
                "coapio: request MID {} from {} was never answered; forgetting it",
                ex.mid, ex.meta.remote
            );
            self.incoming.remove(&id);
            return;
        }
        ex.empty_ack_sent = true;
        ex.timer_at = ex.expires;
        let (remote, mid) = (ex.meta.remote, ex.mid);
        let queued = Queued::Empty {
            to: remote,
            ty: Type::Ack,
            mid,
            source: reply_source(&ex.meta),
            ifindex: ex.meta.ifindex,
        };
        self.timers.schedule(ex.expires, TimerKey::Incoming(id));
        trace!("coapio: empty ACK for MID {mid} to {remote}; the response will be separate");
        self.transmits.push_back(queued);
        if let Some(entry) = self.dedup.get_mut(now, &(remote, mid)) {
            entry.replay = Replay::EmptyAck;
        }
    }

    // ---------------------------------------------------------------- output

    /// The next datagram to send: its bytes replace the contents of `buf`, and the returned
    /// [`Transmit`] says where they go. `None` when there is nothing to send.
    ///
    /// Call it until it returns `None` after every other call into the endpoint.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        loop {
            buf.clear();
            let (destination, source, ifindex) = match self.transmits.pop_front()? {
                Queued::Empty {
                    to,
                    ty,
                    mid,
                    source,
                    ifindex,
                } => {
                    encode_empty(ty, mid, buf);
                    (to, source, ifindex)
                }
                Queued::Outgoing(key) => {
                    // Cancelled or completed meanwhile: nothing to send.
                    let Some(out) = self.outgoing.get(&key) else {
                        continue;
                    };
                    buf.extend_from_slice(&out.wire);
                    (key.0, out.source, out.ifindex)
                }
                Queued::Reply {
                    to,
                    wire,
                    source,
                    ifindex,
                    dedup_key,
                } => {
                    buf.extend_from_slice(&wire);
                    if let Some(entry) = dedup_key.and_then(|k| self.dedup.get_mut(now, &k)) {
                        entry.replay = Replay::Bytes(wire);
                    }
                    (to, source, ifindex)
                }
            };
            trace!("coapio: sending {} bytes to {destination}", buf.len());
            return Some(Transmit {
                destination,
                source,
                ifindex,
                size: buf.len(),
            });
        }
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`poll_event`](Self::poll_event) has something: for callers that hand the
    /// events out elsewhere (the C ABI's `process`) and must know to wake up for them.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Counts of what the endpoint holds, for tests and monitoring.
    pub fn stats(&self) -> Stats {
        Stats {
            open_requests: self.requests.len() - self.notification_fetches.len(),
            pending_incoming: self.incoming.len(),
            dedup_entries: self.dedup.len(),
            remotes: self.active_peers,
            idle_remotes: self.peers.len() - self.active_peers,
            timers: self.timers.len(),
            queued_transmits: self.transmits.len(),
            transfers: self.transfers.len(),
            uploads: self.uploads.len(),
            cached_representations: self.block_cache.len(),
            observers: self.observers.len(),
        }
    }
}

/// How much state an [`Endpoint`] holds; every number is bounded by its [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Requests sent or queued that have not ended (observations included; the exchanges
    /// that fetch the rest of a block-wise notification are not counted).
    pub open_requests: usize,
    /// Received requests awaiting the application's answer.
    pub pending_incoming: usize,
    /// Entries in the deduplication cache.
    pub dedup_entries: usize,
    /// Remotes with requests or messages in flight.
    pub remotes: usize,
    /// Remotes remembered only for their message ID counter (for EXCHANGE_LIFETIME, and at
    /// most `Config::dedup_capacity` of them).
    pub idle_remotes: usize,
    /// Armed timers (some may be stale).
    pub timers: usize,
    /// Datagrams waiting for `poll_transmit`.
    pub queued_transmits: usize,
    /// Block-wise transfers this endpoint makes as a client.
    pub transfers: usize,
    /// Block-wise uploads in progress to this endpoint as a server.
    pub uploads: usize,
    /// Large representations kept for serving their later blocks.
    pub cached_representations: usize,
    /// Clients observing resources of this endpoint.
    pub observers: usize,
}
