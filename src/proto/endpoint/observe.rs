//! Observe (RFC 7641) on both sides: a client's notifications, freshness and re-registration;
//! a server's observers, their notifications and how they end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;

use crate::message::{Code, Message, OptionNumber, Token, Type};
use crate::proto::{Error, Failure};

use super::server::scoped_key;
use super::*;

impl Endpoint {
    /// The next step of fetching the rest of a block-wise notification: another block, or
    /// the whole notification for the observation (if it is still open).
    pub(super) fn continue_notification_fetch(
        &mut self,
        now: Instant,
        observation: RequestId,
        mut transfer: ClientTransfer,
        sent: Request,
        outcome: Option<Result<Response, Failure>>,
    ) {
        // A server that wants proof of our address before it sends a large block (RFC 9175
        // §2.4) answers 4.01 with an Echo value: the block is asked for again with it, once,
        // as any request is (`on_wire_response`).
        if let Some(Ok(response)) = &outcome {
            let echo = (response.code == Code::UNAUTHORIZED
                && !sent.options.contains(OptionNumber::ECHO))
            .then(|| response.options.get(OptionNumber::ECHO))
            .flatten()
            .filter(|v| (1..=40).contains(&v.len()));
            if let Some(echo) = echo {
                debug!("coapio: a block of a notification asked for again with the Echo given");
                let mut again = sent;
                again.options.set(OptionNumber::ECHO, echo);
                return self.fetch_notification(now, observation, transfer, again);
            }
        }
        match outcome {
            Some(Ok(response)) => match transfer.on_response(response) {
                Step::Send(next) => self.fetch_notification(now, observation, transfer, next),
                Step::Done(Ok(whole)) => {
                    if let Some(o) = self.requests.get(&observation) {
                        self.events.push_back(Event::Notification {
                            id: o.caller,
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

    /// Sends `next`, the next request for the rest of a notification of `observation`.
    fn fetch_notification(
        &mut self,
        now: Instant,
        observation: RequestId,
        transfer: ClientTransfer,
        next: Request,
    ) {
        if !self.requests.contains_key(&observation) {
            return; // the observation ended meanwhile
        }
        match self.start_wire(now, transfer.remote, next) {
            Ok(wire) => {
                if let Some(r) = self.requests.get_mut(&wire) {
                    r.fetch = Some((observation, transfer));
                }
                if let Some(o) = self.requests.get_mut(&observation) {
                    o.fetches.push(wire);
                }
            }
            Err(e) => debug!("coapio: cannot fetch the rest of a notification: {e}"),
        }
    }

    /// Whether `response` to request `id` continues an observation (RFC 7641): the request
    /// registered (Observe 0) and the answer is a success that carries Observe.
    pub(super) fn is_notification(&self, id: RequestId, response: &Response) -> bool {
        response.code.is_success()
            && response.options.contains(OptionNumber::OBSERVE)
            && self
                .requests
                .get(&id)
                .is_some_and(|r| r.request.options.get_uint(OptionNumber::OBSERVE) == Some(0))
    }

    /// A notification: delivered if it is fresher than the last one (RFC 7641 §3.4); the
    /// observation stays open and re-registers if Max-Age passes without one.
    pub(super) fn on_notification(&mut self, now: Instant, id: RequestId, response: Response) {
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
        let (remote, state) = (req.remote, req.state);
        let fresh = match req.last_notification {
            None => true,
            // Protected with OSCORE: ordered by Partial IV as it was verified (RFC 8613
            // §7.4.1), which took out the replayed and the late.
            Some(_) if req.security.is_some() => true,
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
        self.drop_request_wire(now, id);
        match state {
            ReqState::Outstanding => {
                if let Some(p) = self.peers.get_mut(&remote) {
                    p.outstanding = p.outstanding.saturating_sub(1);
                }
                self.start_queued(now, remote);
            }
            // A re-registration still waiting to go out: the server evidently still has us,
            // so it need not go out at all.
            ReqState::Queued => {
                if let Some(p) = self.peers.get_mut(&remote) {
                    p.queue.retain(|q| *q != id);
                }
            }
            ReqState::Acknowledged | ReqState::Observing => {}
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
                    self.fetch_notification(now, id, t, next);
                }
            }
        } else if fresh {
            // The observation may have been the last exchange of a Block1 upload: the caller
            // knows it by the transfer's ID, and the transfer is over.
            let user = self.requests.get(&id).map_or(id, |r| r.caller);
            if let Some(call) = self.calls.get_mut(&user) {
                call.transfer = None;
            }
            self.events
                .push_back(Event::Notification { id: user, response });
        } else {
            debug!("coapio: notification {seq} for {id:?} is older than the last one; dropped");
        }
    }

    /// Ends an observation by telling the server (RFC 7641 §3.6): the registration goes out
    /// again with the same token, Observe 1 and no ETag, and the server's answer to it (or
    /// the failure to get one) ends the request as an [`Event::Response`] (or
    /// [`Event::Failed`]); notifications still in flight meanwhile are acknowledged and
    /// dropped.
    ///
    /// Returns `Ok(true)` when the deregistration went out (or is queued, or was asked for
    /// already). An observation the server has not confirmed yet, one that a Block1 upload
    /// turned into, or a request that is not an observation, is cancelled as by
    /// [`cancel`](Self::cancel) instead (`Ok(false)`: no event comes for it; a late
    /// notification is answered with a Reset, which ends it at the server, RFC 7641 §3.6).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRequest`] if no request is open under `id`.
    pub fn cancel_observation(&mut self, now: Instant, id: RequestId) -> Result<bool, Error> {
        let wire = self.calls.get(&id).map_or(id, |c| c.wire);
        let Some(req) = self.requests.get(&wire).filter(|r| r.caller == id) else {
            return Err(Error::UnknownRequest);
        };
        let observe = req.request.options.get_uint(OptionNumber::OBSERVE);
        if observe == Some(1) {
            // Asked already: the deregistration in flight ends it.
            return Ok(true);
        }
        // An observation a Block1 upload turned into (a large FETCH) would need the upload
        // again, not its last block: it ends here, and the server learns of it from the
        // Reset to its next notification.
        let established = req.state == ReqState::Observing
            && req.fetch.is_none()
            && observe == Some(0)
            && !req.request.options.contains(OptionNumber::BLOCK1);
        if !established {
            self.cancel(now, id);
            return Ok(false);
        }
        let fetches = self
            .requests
            .get_mut(&wire)
            .map(|r| std::mem::take(&mut r.fetches))
            .unwrap_or_default();
        for fetch in fetches {
            self.finish_request(now, fetch, None);
        }
        let Some(req) = self.requests.get_mut(&wire) else {
            return Err(Error::UnknownRequest);
        };
        // All options as in the registration, but ETags (RFC 7641 §3.6) and an Echo value
        // of an earlier exchange (RFC 9175 §2.3: it would be stale).
        req.request.options.set_uint(OptionNumber::OBSERVE, 1);
        req.request.options.remove(OptionNumber::ETAG);
        req.request.options.remove(OptionNumber::ECHO);
        // Notifications taken in but not yet handed out are late ones too.
        self.events
            .retain(|e| !matches!(e, Event::Notification { id: n, .. } if *n == id));
        debug!("coapio: observation {id:?} deregisters (Observe 1)");
        // As a re-registration goes out, with the deadline of a request of its own.
        self.reregister(now, wire);
        Ok(true)
    }

    /// Whether `response` is a notification that came for observation `id` after it asked
    /// to be deregistered: acknowledged, and dropped (the answer to the deregistration is
    /// what ends it). A response piggybacked on the ACK of the deregistration is its answer,
    /// whatever it carries.
    pub(super) fn is_late_notification(&self, id: RequestId, response: &Response) -> bool {
        response.options.contains(OptionNumber::OBSERVE)
            && response.received().is_some_and(|r| r.ty != Type::Ack)
            && self
                .requests
                .get(&id)
                .is_some_and(|r| r.request.options.get_uint(OptionNumber::OBSERVE) == Some(1))
    }

    /// Registers an observation again after Max-Age passed without a notification.
    pub(super) fn reregister(&mut self, now: Instant, id: RequestId) {
        if let Some(req) = self.requests.get_mut(&id) {
            debug!("coapio: observation {id:?} sends its registration again");
            req.state = ReqState::Queued;
            req.deadline = None;
            let (remote, nstart) = (req.remote, self.config.nstart);
            let peer = self.peer(now, remote);
            if peer.outstanding < nstart && peer.queue.is_empty() {
                self.start_request(now, id);
            } else {
                peer.queue.push_back(id);
            }
        }
    }

    /// Applies RFC 7641 §4.1 to the answer of a request: a registration (Observe 0) answered
    /// with a success that carries Observe (the application's consent) adds or refreshes the
    /// observer and numbers the answer; Observe 1 removes the observer; other answers carry
    /// no Observe option.
    pub(super) fn observe_registration(
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
                let (budget, per_resource) = (
                    self.config.observer_memory,
                    self.config.max_observers_per_resource,
                );
                let (meta, security) = (ex.meta, ex.security.clone());
                match self.observers.register(
                    now,
                    key,
                    &request,
                    meta,
                    security,
                    (budget, per_resource),
                ) {
                    Ok(seq) => {
                        debug!("coapio: {} observes {}", key.0, request.path());
                        response.options.set_uint(OptionNumber::OBSERVE, seq);
                    }
                    Err((full, previous)) => {
                        debug!(
                            "coapio: no room for another observer ({full:?}); {} not registered",
                            key.0
                        );
                        self.end_inflight_notification(now, key, previous);
                        response.options.remove(OptionNumber::OBSERVE);
                    }
                }
            }
            (Some(1), _) => {
                if let Some(old) = self.observers.remove(&key) {
                    debug!("coapio: {} no longer observes", key.0);
                    self.end_inflight_notification(now, key, old.inflight_con);
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
    ///
    /// At most `Config::max_pending_requests` requests await the application at once: the
    /// observers beyond are skipped this time (they get the next change).
    pub fn notify(&mut self, now: Instant, path: &str) -> usize {
        self.notify_as(now, path, None)
    }

    /// As [`notify`](Self::notify), with the notifications' type chosen for this change
    /// (`Some(Type::Con)`: every observer must acknowledge it) instead of
    /// [`Config::notification_type`].
    pub fn notify_as(&mut self, now: Instant, path: &str, ty: Option<Type>) -> usize {
        let keys = self.observers.of(path);
        let lifetime = self.config.non_lifetime();
        let mut skipped = 0;
        for key in &keys {
            if self.incoming.len() >= self.config.max_pending_requests {
                skipped += 1;
                continue;
            }
            let Some(o) = self.observers.get(key) else {
                continue;
            };
            let (meta, mut request) = (o.meta, o.request());
            // Rendered again for an observer that registered under OSCORE: the application
            // sees the context that verified the registration (its notifications go out
            // protected by it), and the notification's later blocks are kept under the key a
            // protected fetch of them is looked up by, apart from unprotected ones.
            let security = o.security.as_deref();
            request.oscore = security.map(|s| s.0);
            let block_key = scoped_key(representation_key(&request), security);
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
                    key: block_key,
                    block2: None,
                    block1: None,
                    observe: None,
                    notification: true,
                    notification_type: ty,
                    registration: None,
                    request_len: 0,
                    security: None,
                    outer_block2: None,
                    upload: None,
                },
            );
            self.timers.schedule(now + lifetime, TimerKey::Incoming(id));
            self.events.push_back(Event::Request { id, meta, request });
        }
        if skipped > 0 {
            debug!("coapio: {skipped} observers of {path} skipped: too many requests pending");
        }
        keys.len()
    }

    /// Ends every observation of `path` with `response`, a final answer without Observe
    /// (RFC 7641 §3.2, §4.2): 4.04 after the resource was deleted, 4.06 when it can no longer
    /// be served in the Content-Format the observers asked for, 5.03 on shutdown, or a
    /// success that closes the observation. It goes out Confirmable, and the observers are
    /// forgotten at once. Returns how many there were.
    ///
    /// # Errors
    ///
    /// [`Error::WrongCode`] if `response.code` is not a response code;
    /// [`Error::Encode`] if it cannot be encoded. No observer is removed then.
    pub fn end_observations(
        &mut self,
        now: Instant,
        path: &str,
        mut response: Response,
    ) -> Result<usize, Error> {
        if !response.code.is_response() {
            return Err(Error::WrongCode(response.code));
        }
        response.options.remove(OptionNumber::OBSERVE);
        let keys = self.observers.of(path);
        // Check once that it encodes; each observer's copy then differs only in its token.
        Message {
            ty: Type::Con,
            code: response.code,
            message_id: 0,
            token: Token::default(),
            options: response.options.clone(),
            payload: Vec::new(),
        }
        .encode(&mut Vec::new())?;
        for key in &keys {
            let Some(o) = self.observers.remove(key) else {
                continue;
            };
            debug!(
                "coapio: observation of {path} by {} ended with {}",
                key.0, response.code
            );
            self.end_inflight_notification(now, *key, o.inflight_con);
            let request = o.request();
            let block_key = scoped_key(representation_key(&request), o.security.as_deref());
            let shaped =
                self.shape_blockwise(now, key.0, block_key, None, None, 6, response.clone());
            let security = o.security.map(|s| *s);
            self.send_to_observer(now, *key, &o.meta, security, shaped, true, false);
        }
        Ok(keys.len())
    }

    /// Sends a notification: NON (or `Config::notification_type`), and CON every
    /// `Config::notification_con_every` notifications and at least once a day; an error
    /// response ends the observation (RFC 7641 §4.2, §4.5).
    pub(super) fn send_notification(&mut self, now: Instant, ex: Incoming, response: Response) {
        let key = (ex.meta.remote, ex.token);
        let con_every = self.config.notification_con_every;
        let always_con = ex
            .notification_type
            .unwrap_or(self.config.notification_type)
            == Type::Con;
        let Some(o) = self.observers.get_mut(&key) else {
            return; // the observer left meanwhile
        };
        let security = o.security.as_deref().cloned();
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
            if let Some(o) = self.observers.remove(&key) {
                self.end_inflight_notification(now, key, o.inflight_con);
            }
        }
        let response = self.shape_blockwise(now, key.0, ex.key, None, None, 6, response);
        self.send_to_observer(now, key, &ex.meta, security, response, con, success);
        self.purge_idle_peers(now);
    }

    /// Encodes and sends a notification (`observing`: the observer stays) or a final answer,
    /// protected with a Partial IV of its own when the registration was (RFC 8613 §4.1.3.5).
    #[allow(clippy::too_many_arguments)]
    fn send_to_observer(
        &mut self,
        now: Instant,
        key: (SocketAddr, Token),
        meta: &RecvMeta,
        security: Option<Security>,
        response: Response,
        con: bool,
        observing: bool,
    ) {
        let response = match &security {
            Some(security) => match self.oscore.seal_response(security, response, true) {
                Ok(r) => r,
                Err(e) => {
                    debug!("coapio: notification to {} not protected: {e}", key.0);
                    return;
                }
            },
            None => response,
        };
        let msg = Message {
            ty: if con { Type::Con } else { Type::Non },
            code: response.code,
            message_id: 0,
            token: key.1,
            options: response.options,
            payload: response.payload,
        };
        let mut wire = Vec::with_capacity(msg.encoded_len());
        if msg.encode(&mut wire).is_err() {
            return;
        }
        let kind = if observing {
            FreshKind::Notification { token: key.1, con }
        } else {
            FreshKind::Confirmable(Owner::Response)
        };
        self.counters.notifications_sent += 1;
        self.send_fresh(
            now,
            Fresh {
                to: key.0,
                wire,
                source: reply_source(meta),
                ifindex: meta.ifindex,
                kind,
                budget: None,
            },
        );
    }

    /// Remembers that notification `mid` went to the observer `token` at `remote`, for as long
    /// as a Reset to it may come.
    pub(super) fn record_notification(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        mid: u16,
        token: Token,
    ) {
        let lifetime = self.config.exchange_lifetime();
        let Some(p) = self.peers.get_mut(&remote) else {
            return;
        };
        while p.notified.front().is_some_and(|r| r.last + lifetime <= now) {
            p.notified.pop_front();
        }
        match p.notified.back_mut() {
            Some(r)
                if r.token == token
                    && r.count < u16::MAX
                    && r.first_mid.wrapping_add(r.count) == mid =>
            {
                r.count += 1;
                r.last = now;
            }
            _ => p.notified.push_back(NotifiedRun {
                first_mid: mid,
                count: 1,
                token,
                last: now,
            }),
        }
    }

    /// The observer that notification `mid` to `remote` went to, if it went out within its
    /// lifetime.
    pub(super) fn notified_observer(
        &self,
        now: Instant,
        remote: SocketAddr,
        mid: u16,
    ) -> Option<Token> {
        let lifetime = self.config.exchange_lifetime();
        self.peers
            .get(&remote)?
            .notified
            .iter()
            .rev()
            .find_map(|r| {
                let fresh = r.last + lifetime > now;
                (fresh && mid.wrapping_sub(r.first_mid) < r.count).then_some(r.token)
            })
    }

    /// Ends the Confirmable notification still in flight to the observer `token` at `remote`,
    /// if any, and returns its retransmission state for the newer one, `new_mid`, to continue
    /// (RFC 7641 §4.5.2).
    pub(super) fn take_inflight_notification(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        token: Token,
        new_mid: u16,
    ) -> Option<Retransmit> {
        let o = self.observers.get_mut(&(remote, token))?;
        let old = o.inflight_con.replace(new_mid)?;
        let owned = self
            .outgoing
            .get(&(remote, old))
            .is_some_and(|out| out.owner == Owner::Notification(token));
        if !owned {
            return None;
        }
        self.remove_outgoing(now, (remote, old))?.retransmit
    }

    /// Forgets the observer a Reset or an unacknowledged notification speaks of.
    pub(super) fn drop_observer(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        token: Token,
        why: &str,
    ) {
        if let Some(o) = self.observers.remove(&(remote, token)) {
            debug!("coapio: observer {remote} {token:?} removed: {why}");
            self.end_inflight_notification(now, (remote, token), o.inflight_con);
        }
    }

    /// Stops retransmitting the Confirmable notification still in flight to an observer that
    /// is gone.
    pub(super) fn end_inflight_notification(
        &mut self,
        now: Instant,
        key: (SocketAddr, Token),
        inflight: Option<u16>,
    ) {
        let Some(mid) = inflight else {
            return;
        };
        let owned = self
            .outgoing
            .get(&(key.0, mid))
            .is_some_and(|out| out.owner == Owner::Notification(key.1));
        if owned {
            self.remove_outgoing(now, (key.0, mid));
        }
    }
}
