//! The state an [`Endpoint`](super::Endpoint), its futures and its driver share, and the two
//! locks around it.
//!
//! [`State`] (the protocol core, one [`Slot`] per open request, the flags) is behind the
//! *state lock*. It is held only for short calls into the core and never while user code
//! runs: no handler, no link-format callback, no waker is called under it (wakers are
//! collected in [`State::wake`] and woken by [`Locked`]'s `Drop`, after the unlock). So any
//! handle method may be called from anywhere — a handler, its future, a `Site` callback,
//! another thread — without deadlock.
//!
//! The I/O side ([`Engine`]: the transport, the timer, the handlers' futures) is behind the
//! *drive lock*, which is taken with `try_lock` (but to set the engine up, and to close it
//! when neither a driver nor a handle is left): whoever gets it (the [`Driver`], or a
//! waiting future when no driver runs) does one bounded step of work; whoever does not get
//! it returns `Pending` and is woken through its slot.
//!
//! [`Driver`]: super::Driver

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::task::{Wake, Waker};
use std::time::Instant;

use super::driver::Engine;
use crate::error::Error;
use crate::proto::{self, RequestId, Response};

/// The most notifications of an observation kept for a consumer that has not taken them
/// yet; when another arrives, the oldest is dropped (only the newest representation
/// matters, RFC 7641 §3.2).
pub(crate) const NOTIFICATION_QUEUE: usize = 4;

/// The most answers of a group request kept for a consumer that has not taken them yet;
/// further answers are dropped and counted ([`GroupResponses::dropped`]).
///
/// [`GroupResponses::dropped`]: super::GroupResponses::dropped
pub(crate) const GROUP_QUEUE: usize = 256;

/// Marks the live [`Endpoint`](super::Endpoint) handles of the application (the driver
/// holds a `Weak`). When the last one goes, the driver is woken, so that a client's driver
/// with nothing left to do ends; and a server whose driver is gone too is abandoned (see
/// [`Shared::abandon`]). The handles that handlers get (`ServerRequest::endpoint`) carry
/// tokens of their own (`user: false`), which count for nothing.
#[derive(Debug)]
pub(super) struct HandleToken {
    pub(super) shared: Weak<Shared>,
    pub(super) user: bool,
}

impl Drop for HandleToken {
    fn drop(&mut self) {
        if !self.user {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let orphaned = {
            let mut st = shared.lock();
            st.wake_engine();
            st.driver_dropped && !st.stopped && st.slots.is_empty()
        };
        if orphaned {
            shared.abandon();
        }
    }
}

/// What an endpoint's handles, futures and driver share.
pub(crate) struct Shared {
    state: Mutex<State>,
    engine: Mutex<Engine>,
    /// Someone wanted to step the engine while another party held the drive lock: the
    /// holder steps once more after releasing it, so that work queued meanwhile (a request
    /// sent by another thread) is not left waiting for a wake-up nobody registered.
    missed: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The endpoint's protocol state.
#[derive(Debug)]
pub(super) struct State {
    pub(super) ep: proto::Endpoint,
    pub(super) slots: HashMap<RequestId, Slot>,
    /// The [`Driver`](super::Driver) task's waker, while a driver is attached.
    pub(super) driver_waker: Option<Waker>,
    /// A `Driver` has been polled and has neither ended nor been dropped: it does the work,
    /// and waiting futures only wait.
    pub(super) driver_attached: bool,
    /// [`Endpoint::shutdown`](super::Endpoint::shutdown) was called.
    pub(super) stopped: bool,
    /// A server's driver was dropped (see [`Shared::abandon`]).
    pub(super) driver_dropped: bool,
    /// A waker to wake once the state lock is released (most locks wake one or none, so it
    /// needs no allocation), and any further ones.
    wake_first: Option<Waker>,
    wakes: Vec<Waker>,
}

/// One open request's results, waiting for its future or stream.
#[derive(Debug)]
pub(super) struct Slot {
    /// Where the request went, and when: what its errors say.
    pub(super) remote: SocketAddr,
    pub(super) sent: Instant,
    pub(super) waker: Option<Waker>,
    pub(super) result: Option<Result<Response, Error>>,
    /// Notifications of an observation not yet taken (at most [`NOTIFICATION_QUEUE`]).
    pub(super) notifications: VecDeque<Response>,
    /// Responses to a request sent to a multicast group, with their servers, not yet taken
    /// (at most [`GROUP_QUEUE`]).
    pub(super) group: VecDeque<(SocketAddr, Response)>,
    /// The group request stopped collecting responses.
    pub(super) group_done: bool,
    /// Notifications or group answers dropped because the consumer had not taken the
    /// earlier ones.
    pub(super) dropped: u64,
}

impl Slot {
    /// The slot of a request sent to `remote` at `sent`.
    pub(super) fn new(remote: SocketAddr, sent: Instant) -> Self {
        Self {
            remote,
            sent,
            waker: None,
            result: None,
            notifications: VecDeque::new(),
            group: VecDeque::new(),
            group_done: false,
            dropped: 0,
        }
    }
}

impl Shared {
    /// Creates the shared state around `ep`; `engine` gets the waker that wakes whoever
    /// drives (see [`State::wake_engine`]).
    pub(super) fn new(ep: proto::Endpoint, engine: impl FnOnce(Waker) -> Engine) -> Arc<Self> {
        Arc::new_cyclic(|weak: &Weak<Self>| {
            let waker = Waker::from(Arc::new(EngineWaker(weak.clone())));
            Self {
                state: Mutex::new(State {
                    ep,
                    slots: HashMap::new(),
                    driver_waker: None,
                    driver_attached: false,
                    stopped: false,
                    driver_dropped: false,
                    wake_first: None,
                    wakes: Vec::new(),
                }),
                engine: Mutex::new(engine(waker)),
                missed: AtomicBool::new(false),
            }
        })
    }

    /// Takes the state lock (poison-tolerant); the returned guard wakes what was queued in
    /// [`State::wake`] after it unlocks.
    pub(super) fn lock(&self) -> Locked<'_> {
        Locked(Some(crate::step::lock(&self.state)))
    }

    /// The engine, waiting for a step in progress to end: only for setting it up (never
    /// under the state lock, never from inside a step).
    pub(super) fn engine(&self) -> MutexGuard<'_, Engine> {
        crate::step::lock(&self.engine)
    }

    /// Ends a server that nobody can drive or stop any more (its driver and every handle of
    /// the application are gone, and no request of its own waits): stopped, and closed by
    /// a step now, or by the step in progress if there is one (this may run inside it, when
    /// a handler drops the last driver). So a handler that keeps its endpoint
    /// (`ServerRequest::endpoint`) across an await does not keep the socket and the state
    /// alive in a cycle.
    pub(super) fn abandon(&self) {
        log::debug!("coapio: a server's driver and handles were all dropped; closing");
        {
            let mut st = self.lock();
            st.stopped = true;
            st.wake_all_slots();
        }
        let _ = self.try_drive();
    }

    /// Runs one bounded step of the engine unless someone else is running it right now;
    /// returns `None` then.
    pub(super) fn try_drive(&self) -> Option<super::driver::Step> {
        let take = || match self.engine.try_lock() {
            Ok(e) => Some(e),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let mut engine = match take() {
            Some(e) => e,
            None => {
                // Tell the holder to step again; it may have released the lock just now,
                // before it could see the flag: then try once more.
                self.missed.store(true, Ordering::SeqCst);
                take()?
            }
        };
        let mut step = engine.step(self);
        drop(engine);
        for _ in 0..8 {
            if !self.missed.swap(false, Ordering::SeqCst) {
                return Some(step);
            }
            let Some(mut engine) = take() else {
                // Whoever holds it now checks the flag after its step.
                self.missed.store(true, Ordering::SeqCst);
                return Some(step);
            };
            step = engine.step(self);
        }
        Some(step)
    }
}

/// The state lock's guard: wakes the wakers queued while it was held after unlocking.
pub(super) struct Locked<'a>(Option<MutexGuard<'a, State>>);

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.0.as_deref().expect("held until drop")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_deref_mut().expect("held until drop")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let (first, wakes) = match self.0.as_mut() {
            Some(st) => (st.wake_first.take(), std::mem::take(&mut st.wakes)),
            None => return,
        };
        drop(self.0.take());
        if let Some(w) = first {
            w.wake();
        }
        for w in wakes {
            w.wake();
        }
    }
}

/// The waker the engine registers with the reactor, the timer and the handlers' futures:
/// it wakes whoever drives now (see [`State::wake_engine`]), so no registration is lost
/// when the future that made it ends.
struct EngineWaker(Weak<Shared>);

impl Wake for EngineWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            shared.lock().wake_engine();
        }
    }
}

impl State {
    /// Wakes `waker` once the lock is released.
    pub(super) fn wake(&mut self, waker: Option<Waker>) {
        match (waker, &self.wake_first) {
            (Some(w), None) => self.wake_first = Some(w),
            (Some(w), Some(_)) => self.wakes.push(w),
            (None, _) => {}
        }
    }

    /// There is work for the engine: wakes the driver task if one is attached, else every
    /// waiting future (any of them may drive).
    pub(super) fn wake_engine(&mut self) {
        if self.driver_attached {
            let w = self.driver_waker.take();
            self.wake(w);
        } else {
            self.wake_all_slots();
        }
    }

    /// Wakes every waiting future.
    pub(super) fn wake_all_slots(&mut self) {
        let wakers: Vec<Waker> = self
            .slots
            .values_mut()
            .filter_map(|s| s.waker.take())
            .collect();
        self.wakes.extend(wakers);
    }

    fn wake_slot(&mut self, id: RequestId) {
        let w = self.slots.get_mut(&id).and_then(|s| s.waker.take());
        self.wake(w);
    }

    /// Queues a notification, dropping the oldest beyond [`NOTIFICATION_QUEUE`].
    pub(super) fn notify(&mut self, id: RequestId, response: Response) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.notifications.len() >= NOTIFICATION_QUEUE {
                slot.notifications.pop_front();
                slot.dropped += 1;
            }
            slot.notifications.push_back(response);
            self.wake_slot(id);
        }
    }

    /// Queues a group answer, or drops and counts it beyond [`GROUP_QUEUE`].
    pub(super) fn group_response(&mut self, id: RequestId, from: SocketAddr, response: Response) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.group.len() >= GROUP_QUEUE {
                slot.dropped += 1;
                log::debug!("coapio: group request {id:?}: answer from {from} dropped, {GROUP_QUEUE} not taken yet");
            } else {
                slot.group.push_back((from, response));
            }
            self.wake_slot(id);
        }
    }

    pub(super) fn group_done(&mut self, id: RequestId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.group_done = true;
            self.wake_slot(id);
        }
    }

    pub(super) fn complete(&mut self, id: RequestId, response: Response) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.result = Some(Ok(response));
            self.wake_slot(id);
        }
    }

    /// Request `id` ended without a response: its error says where it went and how long
    /// ago.
    pub(super) fn fail(&mut self, id: RequestId, failure: proto::Failure) {
        if let Some(slot) = self.slots.get_mut(&id) {
            let after = slot.sent.elapsed();
            slot.result = Some(Err(Error::of_failure(failure, slot.remote, after)));
            self.wake_slot(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Config;

    fn state_with_slot(id: RequestId) -> State {
        let mut st = State {
            ep: proto::Endpoint::new(Config::default().with_seed(1).into()),
            slots: HashMap::new(),
            driver_waker: None,
            driver_attached: false,
            stopped: false,
            driver_dropped: false,
            wake_first: None,
            wakes: Vec::new(),
        };
        st.slots
            .insert(id, Slot::new("[::1]:5683".parse().unwrap(), Instant::now()));
        st
    }

    #[test]
    fn group_answers_beyond_the_cap_are_dropped_and_counted() {
        let id = RequestId(7);
        let mut st = state_with_slot(id);
        let from: SocketAddr = "[::1]:5683".parse().unwrap();
        for i in 0..GROUP_QUEUE + 44 {
            st.group_response(id, from, Response::content(format!("{i}")));
        }
        let slot = &st.slots[&id];
        assert_eq!((slot.group.len(), slot.dropped), (GROUP_QUEUE, 44));
        // The first ones are kept: each is another server's answer.
        assert_eq!(slot.group.front().unwrap().1.payload, b"0");
    }

    #[test]
    fn notifications_keep_the_newest_and_drop_the_oldest() {
        let id = RequestId(7);
        let mut st = state_with_slot(id);
        for i in 0..100 {
            st.notify(id, Response::content(format!("{i}")));
        }
        let slot = &st.slots[&id];
        let kept: Vec<&[u8]> = slot.notifications.iter().map(|r| &r.payload[..]).collect();
        assert_eq!(kept, [&b"96"[..], b"97", b"98", b"99"]);
        assert_eq!(slot.dropped, 96);
    }
}

#[cfg(test)]
mod drive_tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::Duration;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A driverless client: future B is polled while another future (A) is in the middle of
    /// its step, holding the drive lock. B cannot step; A must step again for it once it is
    /// done, or B's request stays unsent (A may complete and never be polled again).
    #[test]
    fn a_request_sent_while_another_future_steps_goes_out() {
        let peer = std::net::UdpSocket::bind("[::1]:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let uri = format!("coap://[::1]:{}/x", peer.local_addr().unwrap().port());
        let (client, _driver) = crate::Endpoint::client().unwrap();
        let shared = client.shared.clone();
        let a_step = shared.engine.lock().unwrap();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut b = client.get(&uri).send();
        let polled = std::pin::Pin::new(&mut b).poll(&mut Context::from_waker(&waker));
        assert!(matches!(polled, Poll::Pending));
        assert!(
            shared.missed.load(Ordering::SeqCst),
            "B's wish to step is noted"
        );
        // A's step ends: what `try_drive` does after releasing the lock.
        drop(a_step);
        if shared.missed.swap(false, Ordering::SeqCst) {
            assert!(shared.try_drive().is_some());
        }
        let mut buf = [0u8; 64];
        assert!(peer.recv_from(&mut buf).is_ok(), "B's request went out");
    }
}
