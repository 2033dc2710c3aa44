//! The message layer (RFC 7252 §4): datagrams in, deduplication, ACK and RST, retransmission
//! timers, network errors, and datagrams out.

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, trace};

use crate::message::{encode_empty, peek_header, MessageRef, Type};
use crate::net::{RecvMeta, Transmit, TransportError, TransportErrorKind};
use crate::proto::Failure;

use super::client::Opened;
use super::*;

impl Endpoint {
    /// Processes one received datagram.
    ///
    /// Malformed datagrams change nothing: a malformed Confirmable message is answered with a
    /// Reset (<https://www.rfc-editor.org/rfc/rfc7252#section-4.2>), anything else is dropped.
    pub fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, data: &[u8]) {
        self.counters.datagrams_received += 1;
        self.counters.bytes_received += data.len() as u64;
        self.dedup.purge(now);
        self.purge_idle_peers(now);
        self.datagram(now, meta, data);
        self.compact_timers();
    }

    pub(super) fn datagram(&mut self, now: Instant, meta: &RecvMeta, data: &[u8]) {
        let m = match MessageRef::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed += 1;
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
                    self.counters.requests_received += 1;
                    self.handle_request(now, meta, &m);
                } else {
                    self.handle_response(now, meta, &m);
                }
            }
        }
    }

    /// Takes a response that came in a CON or NON message of its own: acknowledges a CON one
    /// and remembers it, so that a retransmission is acknowledged again and not delivered
    /// twice.
    pub(super) fn accept_response(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
        let (lifetime, replay) = if m.ty == Type::Con {
            self.transmits.push_back(Queued::Empty {
                to: meta.remote,
                ty: Type::Ack,
                mid: m.message_id,
                source: reply_source(meta),
                ifindex: meta.ifindex,
            });
            (Lifetime::Exchange, Replay::EmptyAck)
        } else {
            (Lifetime::Non, Replay::Nothing)
        };
        self.dedup.insert(
            now,
            (meta.remote, m.message_id),
            lifetime,
            replay,
            0,
            reply_source(meta),
            meta.ifindex,
        );
    }

    pub(super) fn send_rst(&mut self, meta: &RecvMeta, mid: u16) {
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
    pub(super) fn replay_duplicate(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
    ) -> bool {
        let Some(entry) = self.dedup.get(now, &(meta.remote, m.message_id)) else {
            return false;
        };
        self.counters.duplicates += 1;
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
                wire: wire.to_vec(),
                source,
                ifindex,
                dedup_key: None,
            }),
        };
        self.transmits.extend(queued);
        true
    }

    pub(super) fn handle_ack(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
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
            Owner::Response => {
                self.remove_outgoing(now, key);
            }
            Owner::Notification(token) => {
                self.remove_outgoing(now, key);
                if let Some(o) = self.observers.get_mut(&(meta.remote, token)) {
                    if o.inflight_con == Some(m.message_id) {
                        o.inflight_con = None;
                    }
                }
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
                self.drop_request_wire(now, id);
                if m.code.is_empty() || !token_matches {
                    if !token_matches && !m.code.is_empty() {
                        debug!("coapio: piggybacked response with a wrong token ignored");
                    }
                    self.acknowledge_request(now, id);
                    return;
                }
                match self.open_protected(now, meta.remote, id, m) {
                    Opened::Plain => {}
                    // Dropped: the request waits on as acknowledged.
                    Opened::Dropped => return self.acknowledge_request(now, id),
                    Opened::Outcome(outcome) => {
                        return self.finish_request(now, id, Some(outcome));
                    }
                    Opened::Continue(next, state) => {
                        return self.continue_outer(now, id, next, state);
                    }
                }
                // The response carries the token sent to the remote's address, so the remote
                // receives what is sent there (RFC 9175 §2.4).
                self.freshness.verify(now, meta.remote);
                let outcome = if critical_problem(m.options.iter()).is_some() {
                    Err(Failure::BadResponse(
                        "unrecognized critical option in the response",
                    ))
                } else {
                    Ok(Response::of_message(meta.remote, m))
                };
                self.finish_request(now, id, Some(outcome));
            }
        }
    }

    pub(super) fn handle_rst(&mut self, now: Instant, meta: &RecvMeta, m: &MessageRef<'_>) {
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
                self.finish_request(now, id, Some(Err(Failure::Reset)));
            }
            Some(Owner::Response) => {
                debug!("coapio: separate response to {} was reset", meta.remote);
                self.remove_outgoing(now, key);
            }
            Some(Owner::Notification(token)) => {
                self.remove_outgoing(now, key);
                self.drop_observer(now, meta.remote, token, "the client reset a notification");
            }
            None => match self.notified_observer(now, meta.remote, m.message_id) {
                Some(token) => {
                    self.drop_observer(now, meta.remote, token, "the client reset a notification")
                }
                None => trace!("coapio: RST MID {} matches nothing", m.message_id),
            },
        }
    }

    /// Processes an error the network reported for a remote (an ICMP error): every request
    /// sent to that remote fails with [`Failure::Transport`], and separate responses to
    /// it are no longer retransmitted. A message too large for the path (ICMPv6 Packet Too
    /// Big, `EMSGSIZE` from the error queue) fails nothing: later block-wise transfers with
    /// that remote use smaller blocks. The work is proportional to what the endpoint holds
    /// for that remote, not to all its state.
    pub fn handle_transport_error(&mut self, now: Instant, err: &TransportError) {
        if err.kind == TransportErrorKind::MessageTooLarge {
            self.lower_block_size(now, err.remote);
            return;
        }
        let Some(p) = self.peers.get(&err.remote) else {
            return;
        };
        // Queued requests fail first, so that failing the outstanding ones starts nothing new;
        // IDs in order, so that the outcome does not depend on hash-map order.
        let (mut queued, mut sent): (Vec<RequestId>, Vec<RequestId>) =
            p.open.iter().partition(|id| {
                self.requests
                    .get(id)
                    .is_some_and(|r| r.state == ReqState::Queued)
            });
        let responses: Vec<u16> = p.outgoing.iter().copied().collect();
        debug!(
            "coapio: {} from {}: failing {} requests",
            err.kind,
            err.remote,
            queued.len() + sent.len()
        );
        queued.append(&mut sent);
        for id in queued {
            self.finish_request(now, id, Some(Err(Failure::Transport(err.kind))));
        }
        for mid in responses {
            let key = (err.remote, mid);
            if self
                .outgoing
                .get(&key)
                .is_some_and(|o| !matches!(o.owner, Owner::Request(_)))
            {
                self.remove_outgoing(now, key);
            }
        }
        for key in self.observers.at(err.remote) {
            self.observers.remove(&key);
        }
        // Messages waiting for a message ID to that remote are not worth sending either.
        if let Some(p) = self.peers.get_mut(&err.remote) {
            let dropped = p.waiting.len();
            p.waiting.clear();
            self.waiting_for_mids -= dropped;
            for _ in 0..dropped {
                self.release_peer(now, err.remote);
            }
        }
    }

    /// Processes the failure to send `datagram` (as [`Endpoint::poll_transmit`] gave it) to
    /// `destination`: a datagram too large to send (`EMSGSIZE`) fails only the message it
    /// carries (its request with [`Failure::Transport`]) and makes later block-wise
    /// transfers with that remote use smaller blocks; any other error is taken as
    /// [`Endpoint::handle_transport_error`] takes it.
    pub fn handle_send_error(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        datagram: &[u8],
        kind: TransportErrorKind,
    ) {
        if kind != TransportErrorKind::MessageTooLarge {
            return self.handle_transport_error(now, &TransportError::new(destination, kind));
        }
        self.lower_block_size(now, destination);
        let Some((ty, mid)) = peek_header(datagram) else {
            return;
        };
        if !matches!(ty, Type::Con | Type::Non) {
            return; // an ACK or RST: nothing of ours waits for it
        }
        let key = (destination, mid);
        match self.outgoing.get(&key).map(|o| o.owner) {
            Some(Owner::Request(id)) => {
                debug!("coapio: request {id:?} to {destination} is too large to send");
                self.finish_request(now, id, Some(Err(Failure::Transport(kind))));
            }
            Some(_) => {
                debug!("coapio: message {mid} to {destination} is too large to send; dropped");
                self.remove_outgoing(now, key);
            }
            None => {}
        }
    }

    /// Halves the block size used with `remote` (down to 16 bytes).
    fn lower_block_size(&mut self, now: Instant, remote: SocketAddr) {
        let szx = self.block_szx(remote);
        let p = self.peer(now, remote);
        p.block_szx = szx.saturating_sub(1);
        debug!(
            "coapio: messages to {remote} are too large for the path; blocks of {} bytes from now",
            16 << p.block_szx
        );
    }

    /// Whether the timer `key` at `at` is live: firing it would do something (the checks of
    /// [`handle_timeout`](Self::handle_timeout) and its callees); a stale one (a request
    /// answered, a message acknowledged, a deadline moved) would do nothing.
    fn timer_is_live(&self, at: Instant, key: TimerKey) -> bool {
        match key {
            TimerKey::Retransmit(remote, mid) => self
                .outgoing
                .get(&(remote, mid))
                .and_then(|o| o.retransmit)
                .is_some_and(|rt| rt.next_at == at),
            TimerKey::Deadline(id) => self
                .requests
                .get(&id)
                .is_some_and(|r| r.deadline == Some(at) || r.overall == Some(at)),
            TimerKey::Incoming(id) => self.incoming.get(&id).is_some_and(|e| e.timer_at == at),
            TimerKey::Leisure(key) => self.delayed.contains_key(&key),
            TimerKey::MidsFree(remote) => self
                .peers
                .get(&remote)
                .is_some_and(|p| p.mid_timer == Some(at)),
        }
    }

    /// Drops stale timers: from the top of the heap always, so that
    /// [`poll_timeout`](Self::poll_timeout) names a deadline that is still wanted (a request
    /// answered at once leaves no wake-up behind); all of them once they outnumber the live
    /// ones, so that a flood of requests answered at once cannot grow the heap beyond a
    /// multiple of the live state. Called at the end of the calls that end work.
    pub(super) fn compact_timers(&mut self) {
        let mut timers = std::mem::take(&mut self.timers);
        timers.pop_while(|at, key| !self.timer_is_live(at, key));
        let live =
            self.outgoing.len() + self.requests.len() + self.incoming.len() + self.delayed.len();
        if timers.len() > 2 * live + 1024 {
            timers.retain(|at, key| self.timer_is_live(at, key));
        }
        self.timers = timers;
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work, if any.
    /// It may be early (then the call does nothing), never late: stale timers are dropped
    /// from the top of the heap by the calls that end work, so after an answer, an ACK or a
    /// cancellation it is the next deadline still wanted.
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
                        self.finish_request(now, id, Some(Err(Failure::Timeout)));
                    }
                }
                TimerKey::Incoming(id) => self.on_incoming_timer(now, at, id),
                TimerKey::Leisure(key) => {
                    if let Some(reply) = self.delayed.remove(&key) {
                        self.transmits.push_back(reply);
                    }
                }
                TimerKey::MidsFree(remote) => {
                    let due = self.peers.get_mut(&remote).is_some_and(|p| {
                        let due = p.mid_timer == Some(at);
                        if due {
                            p.mid_timer = None;
                        }
                        due
                    });
                    if due {
                        self.on_mids_free(now, remote);
                    }
                }
            }
        }
        self.compact_timers();
    }

    pub(super) fn on_retransmit(
        &mut self,
        now: Instant,
        at: Instant,
        remote: SocketAddr,
        mid: u16,
    ) {
        let max = self.config.max_retransmit;
        let key = (remote, mid);
        let Some(out) = self.outgoing.get(&key) else {
            return;
        };
        if out.retransmit.is_none_or(|rt| rt.next_at != at) {
            return;
        }
        // An answer to a remote not verified is retransmitted only while everything sent in
        // answer stays within three times the request (RFC 9175 §2.4): the address may not
        // be the requester's.
        let limited = out.budget.is_some() && self.is_limited(now, remote);
        let Some(out) = self.outgoing.get_mut(&key) else {
            return;
        };
        if let (true, Some(budget)) = (limited, out.budget) {
            if budget < out.wire.len() {
                debug!("coapio: answer MID {mid} to unverified {remote}: no retransmission");
                self.remove_outgoing(now, key);
                return;
            }
            out.budget = Some(budget - out.wire.len());
        }
        let Some(rt) = out.retransmit.as_mut() else {
            return;
        };
        if rt.count < max {
            rt.count += 1;
            rt.timeout *= 2;
            rt.next_at = now + rt.timeout;
            debug!(
                "coapio: retransmission {} of MID {mid} to {remote}, next in {:?}",
                rt.count, rt.timeout
            );
            let next_at = rt.next_at;
            self.counters.retransmissions += 1;
            self.timers
                .schedule(next_at, TimerKey::Retransmit(remote, mid));
            self.transmits.push_back(Queued::Outgoing(key));
            return;
        }
        match out.owner {
            Owner::Request(id) => {
                self.finish_request(now, id, Some(Err(Failure::Timeout)));
            }
            Owner::Response => {
                debug!("coapio: separate response MID {mid} to {remote} was never acknowledged");
                self.remove_outgoing(now, key);
            }
            Owner::Notification(token) => {
                self.remove_outgoing(now, key);
                self.drop_observer(now, remote, token, "a notification was never acknowledged");
            }
        }
    }

    pub(super) fn on_incoming_timer(&mut self, now: Instant, at: Instant, id: IncomingId) {
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
        self.dedup.set_replay(now, &(remote, mid), Replay::EmptyAck);
    }

    /// The next datagram to send: its bytes replace the contents of `buf`, and the returned
    /// [`Transmit`] says where they go. `None` when there is nothing to send.
    ///
    /// Call it until it returns `None` after every other call into the endpoint.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        loop {
            buf.clear();
            let Some(queued) = self.transmits.pop_front() else {
                // Everything is out: whatever ended since (a cancellation, an answer) leaves
                // no stale timer at the top for `poll_timeout`.
                self.compact_timers();
                return None;
            };
            let (destination, source, ifindex) = match queued {
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
                    if let Some(key) = dedup_key {
                        self.dedup.set_replay(now, &key, Replay::Bytes(wire));
                    }
                    (to, source, ifindex)
                }
            };
            trace!("coapio: sending {} bytes to {destination}", buf.len());
            self.counters.datagrams_sent += 1;
            self.counters.bytes_sent += buf.len() as u64;
            return Some(Transmit {
                destination,
                source,
                ifindex,
                size: buf.len(),
            });
        }
    }
}
