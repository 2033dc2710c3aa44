//! The endpoint's timers: one heap of deadlines, each naming what it is for.
//!
//! Timers are not removed from the heap when their owner stops waiting (an answer sent, an ACK
//! received); each owner keeps the deadline it is waiting for, and a timer that fires for a
//! deadline its owner no longer has is simply dropped. The calls that end work drop such stale
//! timers from the top of the heap ([`Timers::pop_while`]), so that
//! [`Endpoint::poll_timeout`](super::Endpoint::poll_timeout) names a deadline still wanted and a request answered at
//! once leaves no wake-up behind; deeper stale timers go when they reach the top.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;

use super::types::{IncomingId, RequestId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// Retransmit (or give up on) the Confirmable message with this ID to this remote.
    Retransmit(SocketAddr, u16),
    /// A request's response deadline.
    Deadline(RequestId),
    /// A received request the application has not answered yet: send its empty ACK, or, once
    /// that is done, forget it.
    Incoming(IncomingId),
    /// Send a response to a multicast request whose leisure has passed.
    Leisure(u64),
    /// A message ID to this remote may have become free: send what waits for one.
    MidsFree(SocketAddr),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, key: TimerKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Drops timers from the top of the heap while `stale` says so.
    pub(crate) fn pop_while(&mut self, mut stale: impl FnMut(Instant, TimerKey) -> bool) {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if !stale(at, key) {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest timer due at `now`, removed from the heap.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(t)| t)
        } else {
            None
        }
    }

    /// Keeps only the timers for which `live` says yes.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Instant, TimerKey) -> bool) {
        self.heap.retain(|Reverse((at, key))| live(*at, *key));
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
