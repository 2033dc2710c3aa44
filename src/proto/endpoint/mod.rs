//! The sans-IO CoAP endpoint: the message layer of RFC 7252 §4 and the request/response
//! matching of §5.3, driven entirely by its caller.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

use crate::message::{Code, OptionNumber, Token, Type};
use crate::net::RecvMeta;

use super::blockwise::{
    block_of, cut_block2, representation_key, request_key, upload_key, BlockCache, ClientTransfer,
    Step, UploadStep, Uploads,
};
use super::config::Config;
use super::dedup::{Dedup, Lifetime, Replay};
use super::echo::Freshness;
use super::mids::MidLog;
use super::observers::Observers;
use super::rng::Rng;
use super::timers::{TimerKey, Timers};
use super::types::{Event, IncomingId, Request, RequestId, Response};
use super::IdMap;

mod client;
mod fresh;
mod messaging;
mod multicast;
mod observe;
mod secure;
mod server;

pub use secure::PersistHook;
pub(crate) use secure::Security;

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
///    gives, and handle every [`poll_event`](Self::poll_event); a transport that keeps state
///    per remote also takes [`poll_remote_use`](Self::poll_remote_use).
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
    /// message IDs are not reused, at most `max_idle_remotes` of them.
    idle: VecDeque<(SocketAddr, Instant)>,
    /// Peers with `users > 0`.
    active_peers: usize,
    requests: IdMap<RequestId, OutRequest>,
    by_token: HashMap<(SocketAddr, Token), RequestId>,
    outgoing: HashMap<(SocketAddr, u16), Outgoing>,
    incoming: IdMap<IncomingId, Incoming>,
    dedup: Dedup,
    timers: Timers,
    transmits: VecDeque<Queued>,
    events: VecDeque<Event>,
    /// The caller's requests carried by a message exchange other than their first (the
    /// later blocks of a block-wise transfer, or the observation an upload turned into), by
    /// the caller's ID: the exchange in flight for it and the transfer's state. Each
    /// exchange knows its caller ([`OutRequest::caller`]), so the two point at each other and
    /// a cancellation or an event costs O(1).
    calls: IdMap<RequestId, Call>,
    uploads: Uploads,
    /// Protected requests a proxy cut into outer Block1 blocks, put together before they can
    /// be verified (RFC 8613 §4.1.3.4.2): a budget of their own (an eighth of the uploads'),
    /// so that strangers' blocks push out only each other, not verified uploads.
    outer_uploads: Uploads,
    block_cache: BlockCache,
    observers: Observers,
    /// Responses to multicast requests waiting for their leisure to pass.
    delayed: IdMap<u64, Queued>,
    /// Requests sent to a multicast group, by token: responses come from any server.
    group_requests: HashMap<Token, RequestId>,
    /// Messages waiting for a free message ID, in all peers' `waiting` queues.
    waiting_for_mids: usize,
    /// Remotes whose use changed since the caller last asked ([`Endpoint::poll_remote_use`]):
    /// one pending state per remote, so a change and its undoing cancel out and this is
    /// bounded by the number of remotes, whether or not the caller asks.
    remote_use: BTreeMap<SocketAddr, bool>,
    /// Echo values given and remotes verified (RFC 9175 §2).
    freshness: Freshness,
    /// OSCORE security contexts (RFC 8613).
    oscore: secure::Contexts,
    /// What the endpoint has done since it was made.
    counters: Counters,
}

/// Per-remote state, kept while anything refers to the remote and for EXCHANGE_LIFETIME after
/// its last message ID was used.
#[derive(Debug)]
struct Peer {
    next_mid: u16,
    /// The message IDs used within EXCHANGE_LIFETIME (RFC 7252 §4.4).
    mids: MidLog,
    /// Messages (responses, notifications) waiting for a message ID to become free.
    waiting: VecDeque<Fresh>,
    /// Notifications sent within their lifetime, as runs of consecutive message IDs to one
    /// observer, so that a Reset to any of them removes the observer (RFC 7641 §4.5).
    notified: VecDeque<NotifiedRun>,
    /// When the `TimerKey::MidsFree` timer armed for this remote fires, if one is.
    mid_timer: Option<Instant>,
    /// The open requests to this remote (so that an error about it costs O(its state)).
    open: BTreeSet<RequestId>,
    /// The message IDs of this endpoint's messages to it that an ACK or RST may refer to.
    outgoing: BTreeSet<u16>,
    /// The largest block size to use with this remote, as an SZX (lowered when the path
    /// says a message was too large).
    block_szx: u8,
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
    /// The caller's request this exchange carries: its own ID, or the ID of the block-wise
    /// transfer it is a later block of ([`Endpoint::calls`]).
    caller: RequestId,
    /// For an exchange that fetches the rest of a block-wise notification: the observation
    /// and the transfer's state. Such an exchange is nobody's request.
    fetch: Option<(RequestId, ClientTransfer)>,
    /// For an observation: the exchanges fetching the rest of its notifications.
    fetches: Vec<RequestId>,
    /// For a request protected with OSCORE, once sent: what verifies its responses.
    security: Option<Security>,
    /// For an observation protected with OSCORE: the highest Partial IV of a verified
    /// notification (its Notification Number, RFC 8613 §7.4.1).
    notification_piv: Option<u64>,
    /// For a protected request: its sealed form (code, outer options, payload), which asks a
    /// proxy again for the later blocks of a response it cut into outer Block2 blocks.
    sealed: Option<Box<Sealed>>,
    /// For an exchange that fetches such a block: what came before it.
    outer: Option<Box<OuterDownload>>,
}

/// A request as OSCORE sealed it: code, outer options, payload.
#[derive(Debug, Clone)]
struct Sealed {
    code: Code,
    options: crate::message::Options,
    payload: Vec<u8>,
}

/// A protected response a proxy cut into outer Block2 blocks (RFC 8613 §4.1.3.4.2), being
/// put together before it is verified.
#[derive(Debug)]
struct OuterDownload {
    sealed: Box<Sealed>,
    /// The request the exchanges carry for the caller (unsealed): the whole response is
    /// its answer (an inner Block2 in it goes on from it, an Echo repeats it).
    original: Request,
    /// The response's code and outer options (those of its first block, without Block2).
    code: Code,
    options: crate::message::Options,
    body: Vec<u8>,
    /// The block asked for next.
    next: u32,
    szx: u8,
}

/// A caller's request in a later exchange than its first (see [`Endpoint::calls`]).
#[derive(Debug)]
struct Call {
    /// The exchange in flight for it.
    wire: RequestId,
    /// The block-wise transfer, while it goes on.
    transfer: Option<ClientTransfer>,
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
    /// For an answer to a remote not verified: the bytes its retransmissions may still take
    /// within three times the request (RFC 9175 §2.4).
    budget: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Request(RequestId),
    Response,
    /// A Confirmable notification (or separate response to a registration) to the observer
    /// with this token.
    Notification(Token),
}

/// A message of ours that needs a message ID of its own: a separate or Non-confirmable
/// response, or a notification. When every ID to its remote is in use it waits in the
/// remote's queue until one is free.
#[derive(Debug)]
struct Fresh {
    to: SocketAddr,
    /// The encoded message; its message ID is set when it gets one.
    wire: Vec<u8>,
    source: Option<IpAddr>,
    ifindex: Option<u32>,
    kind: FreshKind,
    /// What [`Outgoing::budget`] starts from.
    budget: Option<usize>,
}

#[derive(Debug)]
enum FreshKind {
    /// Sent once (a NON response); kept for replay under `dedup_key` once sent; spread over
    /// the leisure period when it answers a multicast request.
    Once {
        dedup_key: Option<(SocketAddr, u16)>,
        leisure: bool,
    },
    /// Confirmable: retransmitted until acknowledged.
    Confirmable(Owner),
    /// A notification, NON or CON, to the observer with this token.
    Notification { token: Token, con: bool },
}

/// Notifications to one observer with consecutive message IDs.
#[derive(Debug)]
struct NotifiedRun {
    first_mid: u16,
    count: u16,
    token: Token,
    last: Instant,
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
    /// The size of the request's datagram: an answer to an unverified remote may be at most
    /// three times that (RFC 9175 §2.4).
    request_len: usize,
    /// For a request that came protected with OSCORE: what protects its answer.
    security: Option<Security>,
    /// For a protected request that asked for the first outer block of its answer: that
    /// block and the key of the sealed answer kept for the later ones.
    outer_block2: Option<(crate::message::BlockValue, u64)>,
    /// The key of the Block1 upload this request completed, kept until the answer is known
    /// ([`Uploads::finish`]).
    upload: Option<u64>,
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

/// Whether this endpoint (with [`Site`](crate::server::Site) or the application) acts on the
/// critical option `n` (RFC 7252 §5.4.1). The registry knows more critical options than are
/// implemented: OSCORE (RFC 8613), Q-Block1/Q-Block2 (RFC 9177) and EDHOC are not, so a
/// message that needs them is refused rather than served as if they were absent.
/// Proxy-Uri and Proxy-Scheme are recognized; a request with them gets 5.05 unless
/// `Config::proxy` is set. If-Match and If-None-Match reach
/// the application, which evaluates them ([`Request::precondition_failed`]).
fn implemented(n: OptionNumber) -> bool {
    matches!(
        n,
        OptionNumber::IF_MATCH
            | OptionNumber::URI_HOST
            | OptionNumber::IF_NONE_MATCH
            | OptionNumber::URI_PORT
            | OptionNumber::URI_PATH
            | OptionNumber::URI_QUERY
            | OptionNumber::ACCEPT
            | OptionNumber::BLOCK2
            | OptionNumber::BLOCK1
            | OptionNumber::PROXY_URI
            | OptionNumber::PROXY_SCHEME
    )
}

/// The first critical option that must be treated as unrecognized: unknown or not
/// implemented here, of a length outside its bounds (§5.4.3), or a repetition of an option
/// that is not repeatable (§5.4.5).
fn critical_problem<'a>(
    mut options: impl Iterator<Item = (OptionNumber, &'a [u8])>,
) -> Option<OptionNumber> {
    let mut previous = None;
    options.find_map(|(n, v)| {
        let repeated = previous == Some(n);
        previous = Some(n);
        let unrecognized = match n.info() {
            None => true,
            Some(i) => !implemented(n) || !i.len_ok(v.len()) || (repeated && !i.repeatable),
        };
        (n.is_critical() && unrecognized).then_some(n)
    })
}

/// Whether a request may be carried out more than once with the same effect (RFC 7252 §5.1,
/// RFC 8132 §2): such a request may be served without being remembered for deduplication.
fn is_idempotent(code: Code) -> bool {
    matches!(code, Code::GET | Code::PUT | Code::DELETE | Code::FETCH)
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
            config.upload_memory,
            config.upload_memory_per_remote,
            config.exchange_lifetime(),
        );
        let outer_uploads = Uploads::new(
            config.max_body_size,
            config.upload_memory / 8,
            config.upload_memory_per_remote / 8,
            config.exchange_lifetime(),
        );
        let block_cache = BlockCache::new(config.block_cache, config.exchange_lifetime());
        let rng = Rng::new(config.seed);
        // The key of Echo values must not follow from anything sent (tokens come from `rng`,
        // whose state its outputs reveal): it is the one thing taken from the OS.
        let os = std::hash::RandomState::new();
        let freshness = Freshness::new(
            [
                std::hash::BuildHasher::hash_one(&os, config.seed),
                std::hash::BuildHasher::hash_one(&os, !config.seed),
            ],
            config.echo_lifetime,
            config.verified_lifetime,
            config.max_verified_remotes,
        );
        Self {
            freshness,
            oscore: secure::Contexts::default(),
            rng,
            dedup: Dedup::new(
                config.dedup_memory,
                config.dedup_memory_per_remote,
                config.exchange_lifetime(),
                config.non_lifetime(),
            ),
            config,
            next_id: 0,
            peers: HashMap::new(),
            idle: VecDeque::new(),
            active_peers: 0,
            requests: IdMap::default(),
            by_token: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: IdMap::default(),
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            calls: IdMap::default(),
            uploads,
            outer_uploads,
            block_cache,
            observers: Observers::default(),
            delayed: IdMap::default(),
            group_requests: HashMap::new(),
            waiting_for_mids: 0,
            remote_use: BTreeMap::new(),
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peer's state, created (idle) if there is none.
    fn peer(&mut self, now: Instant, remote: SocketAddr) -> &mut Peer {
        let rng = &mut self.rng;
        let idle = &mut self.idle;
        self.peers.entry(remote).or_insert_with(|| {
            idle.push_back((remote, now));
            Peer {
                next_mid: rng.next_u64() as u16,
                mids: MidLog::default(),
                waiting: VecDeque::new(),
                notified: VecDeque::new(),
                mid_timer: None,
                open: BTreeSet::new(),
                outgoing: BTreeSet::new(),
                block_szx: 6,
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

    /// A message ID for a new message to `remote`: `None` when all of them were used within
    /// EXCHANGE_LIFETIME (RFC 7252 §4.4; unless `Config::strict_message_ids` is off) or are
    /// in flight; the caller waits then (see [`Self::wait_for_mid`]).
    fn alloc_mid(&mut self, now: Instant, remote: SocketAddr) -> Option<u16> {
        let lifetime = self.config.exchange_lifetime();
        let strict = self.config.strict_message_ids;
        let peer = self.peer(now, remote);
        if !peer.mids.take(now, lifetime) && strict {
            return None;
        }
        // The peer's state must outlive the ID's lifetime.
        if peer.users == 0
            && peer
                .idle_since
                .is_some_and(|t| t + Duration::from_secs(1) <= now)
        {
            peer.idle_since = Some(now);
            self.idle.push_back((remote, now));
            self.compact_idle();
        }
        // Never an ID still in flight (only possible with the rule relaxed, or with timeouts
        // configured longer than EXCHANGE_LIFETIME).
        for _ in 0..=u16::MAX as u32 {
            let peer = self.peer(now, remote);
            let mid = peer.next_mid;
            peer.next_mid = mid.wrapping_add(1);
            if !self.outgoing.contains_key(&(remote, mid)) {
                return Some(mid);
            }
        }
        None
    }

    /// The block size exponent to use with `remote`: the configured one, or smaller if the
    /// path said so.
    fn block_szx(&self, remote: SocketAddr) -> u8 {
        let configured = crate::message::BlockValue::szx_for_size(self.config.block_size);
        self.peers
            .get(&remote)
            .map_or(configured, |p| p.block_szx.min(configured))
    }

    /// Keeps a message this endpoint sent for the ACK or RST that may refer to it (and for
    /// its retransmission): the remote counts as used while it is there.
    fn insert_outgoing(&mut self, now: Instant, key: (SocketAddr, u16), out: Outgoing) {
        self.acquire_peer(now, key.0).outgoing.insert(key.1);
        if self.outgoing.insert(key, out).is_some() {
            // Only possible if an ID in flight were handed out again, which `alloc_mid`
            // rules out; keep the books straight anyway.
            self.release_peer(now, key.0);
        }
    }

    /// Forgets a message this endpoint sent (acknowledged, reset, given up or replaced).
    fn remove_outgoing(&mut self, now: Instant, key: (SocketAddr, u16)) -> Option<Outgoing> {
        let out = self.outgoing.remove(&key)?;
        if let Some(p) = self.peers.get_mut(&key.0) {
            p.outgoing.remove(&key.1);
        }
        self.release_peer(now, key.0);
        Some(out)
    }

    /// Arms the timer that retries what waits for a message ID to `remote`.
    fn wait_for_mid(&mut self, now: Instant, remote: SocketAddr) {
        let lifetime = self.config.exchange_lifetime();
        let at = self
            .peers
            .get(&remote)
            .and_then(|p| p.mids.next_release(lifetime))
            .unwrap_or(now)
            .max(now);
        let Some(p) = self.peers.get_mut(&remote) else {
            return;
        };
        if p.mid_timer != Some(at) {
            debug!("coapio: every message ID to {remote} is in use; waiting until {at:?}");
            p.mid_timer = Some(at);
            self.timers.schedule(at, TimerKey::MidsFree(remote));
        }
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

    /// Drops the idle records that no longer say when their peer became idle (it was used
    /// since), once they outnumber the idle peers: a peer that keeps getting message IDs
    /// while idle (NON notifications) adds a record a second.
    fn compact_idle(&mut self) {
        let idle_peers = self.peers.len() - self.active_peers;
        if self.idle.len() <= 2 * idle_peers + 64 {
            return;
        }
        let peers = &self.peers;
        self.idle.retain(|(remote, since)| {
            peers
                .get(remote)
                .is_some_and(|p| p.idle_since == Some(*since))
        });
    }

    /// Forgets peers idle for EXCHANGE_LIFETIME, and the oldest idle ones beyond the bound.
    fn purge_idle_peers(&mut self, now: Instant) {
        let lifetime = self.config.exchange_lifetime();
        let cap = self.config.max_idle_remotes;
        while let Some(&(remote, since)) = self.idle.front() {
            // A second of slack: `idle_since` follows the last ID's use at that granularity.
            // The bound counts the idle remotes, not the records (some are stale).
            let idle = self.peers.len() - self.active_peers;
            if since + lifetime + Duration::from_secs(1) > now && idle <= cap {
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

    /// The next change in which remotes are in use: `(remote, true)` when a remote gets its
    /// first open request (an observation counts while it lasts), `(remote, false)` when its
    /// last one ends. Drivers pass these to transports that keep state per remote
    /// ([`Transport::set_in_use`](crate::transport::Transport::set_in_use)), so that a quiet observation or a late
    /// separate response still finds its socket.
    pub fn poll_remote_use(&mut self) -> Option<(SocketAddr, bool)> {
        self.remote_use.pop_first()
    }

    /// Notes that `remote` is now in use or not; a change that undoes one not yet reported
    /// cancels it.
    fn note_remote_use(&mut self, remote: SocketAddr, in_use: bool) {
        match self.remote_use.get(&remote) {
            Some(&pending) if pending != in_use => {
                self.remote_use.remove(&remote);
            }
            _ => {
                self.remote_use.insert(remote, in_use);
            }
        }
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        match &event {
            Event::Response { .. } | Event::Notification { .. } | Event::GroupResponse { .. } => {
                self.counters.responses_received += 1;
            }
            Event::Failed {
                error: super::Failure::Timeout,
                ..
            } => self.counters.timeouts += 1,
            _ => {}
        }
        Some(event)
    }

    /// What the endpoint has done since it was made: counters that only grow (64 bits: a
    /// million a second for half a million years), kept always, at the cost of an addition
    /// each.
    pub fn counters(&self) -> Counters {
        Counters {
            no_room: self.counters.no_room + self.dedup.refused(),
            ..self.counters
        }
    }

    /// Whether [`poll_event`](Self::poll_event) has something: for callers that hand the
    /// events out elsewhere (the C ABI's `process`) and must know to wake up for them.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Counts of what the endpoint holds, for tests and monitoring.
    pub fn stats(&self) -> Stats {
        Stats {
            open_requests: self.requests.values().filter(|r| r.fetch.is_none()).count(),
            pending_incoming: self.incoming.len(),
            dedup_entries: self.dedup.len(),
            dedup_bytes: self.dedup.bytes(),
            dedup_refused: self.dedup.refused(),
            waiting_for_message_ids: self.waiting_for_mids
                + self
                    .peers
                    .values()
                    .filter(|p| p.mid_timer.is_some())
                    .map(|p| p.queue.len())
                    .sum::<usize>(),
            remotes: self.active_peers,
            idle_remotes: self.peers.len() - self.active_peers,
            timers: self.timers.len(),
            queued_transmits: self.transmits.len(),
            transfers: self.calls.values().filter(|c| c.transfer.is_some()).count(),
            uploads: self.uploads.len() + self.outer_uploads.len(),
            upload_bytes: self.uploads.bytes() + self.outer_uploads.bytes(),
            cached_representations: self.block_cache.len(),
            observers: self.observers.len(),
            observer_bytes: self.observers.bytes(),
            verified_remotes: self.freshness.verified_len(),
        }
    }
}

/// What an [`Endpoint`] has done since it was made ([`Endpoint::counters`]): numbers that
/// only grow. Next to [`Stats`] (what it holds now), they are what a monitoring system
/// samples: rates of requests, retransmissions, timeouts and drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Datagrams handed to [`Endpoint::handle_datagram`], and their bytes.
    pub datagrams_received: u64,
    /// Bytes of the datagrams received.
    pub bytes_received: u64,
    /// Datagrams handed out by [`Endpoint::poll_transmit`] (retransmissions, ACKs and
    /// Resets included).
    pub datagrams_sent: u64,
    /// Bytes of the datagrams sent.
    pub bytes_sent: u64,
    /// Requests the application made ([`Endpoint::request`]; one for a block-wise
    /// transfer, however many blocks it takes).
    pub requests_sent: u64,
    /// Responses, notifications and group answers delivered to the application.
    pub responses_received: u64,
    /// Request messages received from the network, duplicates not counted (each block of
    /// an upload counts).
    pub requests_received: u64,
    /// Answers the application gave ([`Endpoint::respond`]) that went out, notifications
    /// not counted.
    pub responses_sent: u64,
    /// Notifications rendered and sent to observers (RFC 7641), the final answers of
    /// [`end_observations`](Endpoint::end_observations) included (one that waited for a
    /// message ID is counted although its observer may leave before it goes).
    pub notifications_sent: u64,
    /// Retransmissions of Confirmable messages (RFC 7252 §4.2).
    pub retransmissions: u64,
    /// Requests given up for want of a response ([`Failure::Timeout`](super::Failure::Timeout)).
    pub timeouts: u64,
    /// Duplicate messages received: answered again from the cache, or ignored (RFC 7252
    /// §4.5).
    pub duplicates: u64,
    /// Datagrams dropped (or answered with a Reset) because they were not CoAP messages.
    pub malformed: u64,
    /// Messages turned away for lack of room: no room in the deduplication cache, too many
    /// requests awaiting answers (answered 5.03).
    pub no_room: u64,
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
    /// Bytes the deduplication cache uses (at most about `Config::dedup_memory`).
    pub dedup_bytes: usize,
    /// Received messages that found no room in the deduplication cache since the endpoint
    /// was made (non-idempotent requests among them were declined with 5.03).
    pub dedup_refused: u64,
    /// Messages (requests, responses, notifications) waiting because every message ID to
    /// their remote was used within EXCHANGE_LIFETIME (RFC 7252 §4.4).
    pub waiting_for_message_ids: usize,
    /// Remotes with requests or messages in flight.
    pub remotes: usize,
    /// Remotes remembered only for their message ID counter (for EXCHANGE_LIFETIME, and at
    /// most `Config::max_idle_remotes` of them).
    pub idle_remotes: usize,
    /// Armed timers (some may be stale).
    pub timers: usize,
    /// Datagrams waiting for `poll_transmit`.
    pub queued_transmits: usize,
    /// Block-wise transfers this endpoint makes as a client.
    pub transfers: usize,
    /// Block-wise uploads in progress to this endpoint as a server.
    pub uploads: usize,
    /// Bytes those uploads hold (at most about `Config::upload_memory`).
    pub upload_bytes: usize,
    /// Large representations kept for serving their later blocks.
    pub cached_representations: usize,
    /// Clients observing resources of this endpoint.
    pub observers: usize,
    /// Bytes the observers take (at most about `Config::observer_memory`).
    pub observer_bytes: usize,
    /// Remotes remembered as verified (RFC 9175 §2.4; at most
    /// `Config::max_verified_remotes`).
    pub verified_remotes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remotes that are idle but get a message ID every second (NON notifications, NON
    /// responses) do not pile up idle records for EXCHANGE_LIFETIME.
    #[test]
    fn idle_records_stay_bounded_by_the_idle_peers() {
        let mut ep = Endpoint::new(Config::default().with_seed(1).into());
        let t0 = Instant::now();
        for s in 0..300u64 {
            let now = t0 + Duration::from_secs(s);
            for i in 0..1000u16 {
                let r = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 5683));
                assert!(ep.alloc_mid(now, r).is_some());
            }
            ep.purge_idle_peers(now);
            assert!(ep.idle.len() <= 2 * ep.peers.len() + 64 + 1000);
        }
        assert_eq!(
            ep.peers.len(),
            1000,
            "none forgotten while in use for message IDs"
        );
    }
}
