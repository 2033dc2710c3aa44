//! Messages of ours that need a message ID of their own (separate and Non-confirmable
//! responses, notifications): the ID is taken when the message goes out, and when every ID to
//! the remote was used within EXCHANGE_LIFETIME the message waits for one (RFC 7252 §4.4)
//! instead of reusing an ID.

use std::net::SocketAddr;
use std::time::Instant;

use log::debug;

use super::*;

impl Endpoint {
    /// Sends `fresh` with a new message ID, or queues it until one is free.
    pub(super) fn send_fresh(&mut self, now: Instant, fresh: Fresh) {
        let remote = fresh.to;
        let waiting = self
            .peers
            .get(&remote)
            .is_some_and(|p| !p.waiting.is_empty());
        let mid = if waiting {
            None // keep the order: behind those already waiting
        } else {
            self.alloc_mid(now, remote)
        };
        match mid {
            Some(mid) => self.emit_fresh(now, mid, fresh),
            None => {
                if self.waiting_for_mids >= self.config.max_pending_requests {
                    debug!(
                        "coapio: too many messages wait for message IDs; one to {remote} dropped"
                    );
                    return;
                }
                self.waiting_for_mids += 1;
                self.acquire_peer(now, remote).waiting.push_back(fresh);
                self.wait_for_mid(now, remote);
            }
        }
    }

    /// Sends, in order, what waits for a message ID to `remote` and what can be sent now, then
    /// the requests that wait for one (`TimerKey::MidsFree`).
    pub(super) fn on_mids_free(&mut self, now: Instant, remote: SocketAddr) {
        while self
            .peers
            .get(&remote)
            .is_some_and(|p| !p.waiting.is_empty())
        {
            let Some(mid) = self.alloc_mid(now, remote) else {
                self.wait_for_mid(now, remote);
                return;
            };
            let Some(fresh) = self
                .peers
                .get_mut(&remote)
                .and_then(|p| p.waiting.pop_front())
            else {
                break;
            };
            self.waiting_for_mids -= 1;
            self.emit_fresh(now, mid, fresh);
            self.release_peer(now, remote);
        }
        self.start_queued(now, remote);
    }

    /// Starts the requests queued for `remote` while NSTART allows.
    pub(super) fn start_queued(&mut self, now: Instant, remote: SocketAddr) {
        let nstart = self.config.nstart;
        loop {
            let Some(p) = self.peers.get_mut(&remote) else {
                return;
            };
            if p.outstanding >= nstart {
                return;
            }
            let Some(next) = p.queue.pop_front() else {
                return;
            };
            if !self.start_request(now, next) {
                return; // no message ID: it went back to the queue's front
            }
        }
    }

    fn emit_fresh(&mut self, now: Instant, mid: u16, fresh: Fresh) {
        let Fresh {
            to,
            mut wire,
            source,
            ifindex,
            kind,
            budget,
        } = fresh;
        if let FreshKind::Notification { token, .. } = kind {
            if !self.observers.contains(&(to, token)) {
                return; // the observer left while this waited for a message ID
            }
        }
        wire[2..4].copy_from_slice(&mid.to_be_bytes());
        let owner = match kind {
            FreshKind::Once { dedup_key, leisure } => {
                let reply = Queued::Reply {
                    to,
                    wire,
                    source,
                    ifindex,
                    dedup_key,
                };
                if leisure {
                    // RFC 7252 §8.2: spread the group's answers over the leisure period.
                    let at = now + self.config.leisure.mul_f64(self.rng.next_f64());
                    let key = self.next_id;
                    self.next_id += 1;
                    self.delayed.insert(key, reply);
                    self.timers.schedule(at, TimerKey::Leisure(key));
                } else {
                    self.transmits.push_back(reply);
                }
                return;
            }
            FreshKind::Notification { token, con } => {
                self.record_notification(now, to, mid, token);
                if !con {
                    self.transmits.push_back(Queued::Reply {
                        to,
                        wire,
                        source,
                        ifindex,
                        dedup_key: None,
                    });
                    return;
                }
                Owner::Notification(token)
            }
            FreshKind::Confirmable(owner) => owner,
        };
        // A Confirmable notification takes over the retransmission state of the one still in
        // flight to the same observer (RFC 7641 §4.5.2): the counter keeps running, so an
        // observer that vanished is dropped after MAX_RETRANSMIT however often it is notified.
        let inherited = match owner {
            Owner::Notification(token) => self.take_inflight_notification(now, to, token, mid),
            _ => None,
        };
        let retransmit = inherited.unwrap_or_else(|| {
            let initial = self.initial_timeout();
            Retransmit {
                count: 0,
                timeout: initial,
                next_at: now + initial,
            }
        });
        self.timers
            .schedule(retransmit.next_at, TimerKey::Retransmit(to, mid));
        self.insert_outgoing(
            now,
            (to, mid),
            Outgoing {
                wire,
                source,
                ifindex,
                owner,
                retransmit: Some(retransmit),
                budget,
            },
        );
        self.transmits.push_back(Queued::Outgoing((to, mid)));
    }
}
