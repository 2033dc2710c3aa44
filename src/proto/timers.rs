//! The endpoint's timers: one heap of deadlines, each naming what it is for.
//!
//! Timers are not removed from the heap when their owner stops waiting (an answer sent, an ACK
//! received); each owner keeps the deadline it is waiting for, and a timer that fires for a
//! deadline its owner no longer has is simply dropped. [`super::Endpoint::poll_timeout`] drops
//! such stale timers from the top of the heap before it answers ([`Timers::next_live`]), so a
//! request answered at once leaves no wake-up behind; deeper stale timers go when they reach
//! the top.

use std::cell::RefCell;
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

/// The heap is in a `RefCell` so that [`Timers::next_live`] can drop stale timers from behind
/// the shared reference of [`super::Endpoint::poll_timeout`]; no borrow outlives a method.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: RefCell<BinaryHeap<Reverse<(Instant, TimerKey)>>>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, key: TimerKey) {
        self.heap.get_mut().push(Reverse((at, key)));
    }

    /// The earliest deadline for which `live` says yes, after dropping the stale timers
    /// before it (those for which it says no).
    pub(crate) fn next_live(&self, live: impl Fn(Instant, TimerKey) -> bool) -> Option<Instant> {
        let mut heap = self.heap.borrow_mut();
        while let Some(&Reverse((at, key))) = heap.peek() {
            if live(at, key) {
                return Some(at);
            }
            heap.pop();
        }
        None
    }

    /// The earliest timer due at `now`, removed from the heap.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        let heap = self.heap.get_mut();
        if heap.peek()?.0 .0 <= now {
            heap.pop().map(|Reverse(t)| t)
        } else {
            None
        }
    }

    /// Keeps only the timers for which `live` says yes.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Instant, TimerKey) -> bool) {
        self.heap
            .get_mut()
            .retain(|Reverse((at, key))| live(*at, *key));
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.borrow().len()
    }
}
