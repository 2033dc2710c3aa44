//! The [`Driver`] and the engine it runs: one bounded step moves datagrams between the
//! transport and the protocol core, fires timers, starts the server's handlers for new
//! requests, polls their futures and sends their answers.
//!
//! The engine's step is the same whoever runs it — the driver task, or a request future
//! when no driver is attached (see the module docs of [`Endpoint`](crate::Endpoint)'s module). It
//! registers the transport's readiness, the timer and the handlers' futures with one waker
//! of the endpoint's own, which wakes whoever drives at the moment.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};
use log::debug;

use super::handle::EndpointRef;
use super::shared::{HandleToken, Locked, Shared, State};
use crate::error::Error;
use crate::message::Code;
use crate::proto::{Event, IncomingId, Response};
use crate::server::{ServerRequest, Site};
use crate::transport::Io;

/// Datagrams, events and new handlers taken in one step before it yields to the executor
/// (wakes itself and returns `Pending`), so that a flood cannot starve other tasks.
pub(crate) const BUDGET: usize = 128;

/// Rounds (receive, dispatch, poll handlers) in one step before it yields.
const ROUNDS: usize = 8;

type HandlerFuture = Pin<Box<dyn Future<Output = (IncomingId, Response)> + Send>>;

/// Hands the handlers' answers to the core (emptying `answered`).
fn respond_all(st: &mut State, now: Instant, answered: &mut Vec<(IncomingId, Response)>) {
    for (id, response) in answered.drain(..) {
        if let Err(e) = st.ep.respond(now, id, response) {
            debug!("coapio: a handler's response could not be sent: {e}");
        }
    }
}

/// How a step of the engine ended.
#[derive(Debug)]
pub(super) enum Step {
    /// Everything is registered for wake-up; nothing to do until then.
    Idle,
    /// The budget ran out with work left; the engine's waker was woken.
    Yielded,
    /// The endpoint was shut down; the transport is closed.
    Stopped,
    /// The transport's readiness failed.
    Failed(io::Error),
}

/// The endpoint's I/O side, behind the drive lock.
pub(super) struct Engine {
    /// `None` once the endpoint is shut down (the socket is closed then).
    io: Option<Async<Io>>,
    timer: Timer,
    /// What `timer` is set for (never later than the next deadline), so that it is set again
    /// only when the deadline comes earlier (setting it wakes the reactor).
    armed: Option<Instant>,
    site: Option<Site>,
    handlers: FuturesUnordered<Abortable<HandlerFuture>>,
    /// The running handlers' abort handles, by exchange.
    running: crate::proto::IdMap<IncomingId, AbortHandle>,
    /// When each handler's exchange is forgotten by the core (CON and NON, each in order of
    /// arrival and so of deadline); entries of finished handlers are skipped and compacted.
    expiry: [VecDeque<(Instant, IncomingId)>; 2],
    /// EXCHANGE_LIFETIME and NON_LIFETIME of the configuration.
    lifetimes: [Duration; 2],
    waker: Waker,
    bufs: crate::step::Buffers,
    /// Handlers' answers and new requests of a round (empty between rounds; kept for their
    /// room).
    answered: Vec<(IncomingId, Response)>,
    requests: Vec<(IncomingId, crate::net::RecvMeta, crate::proto::Request)>,
    /// The endpoint, for its handlers' requests (set once the handle exists).
    pub(super) me: Option<Arc<EndpointRef>>,
}

impl Engine {
    pub(super) fn new(
        io: Async<Io>,
        site: Option<Site>,
        lifetimes: [Duration; 2],
        waker: Waker,
    ) -> Self {
        Self {
            io: Some(io),
            timer: Timer::never(),
            armed: None,
            site,
            handlers: FuturesUnordered::new(),
            running: crate::proto::IdMap::default(),
            expiry: [VecDeque::new(), VecDeque::new()],
            lifetimes,
            waker,
            bufs: crate::step::Buffers::default(),
            answered: Vec::new(),
            requests: Vec::new(),
            me: None,
        }
    }

    /// Drops the futures of handlers whose exchange the core has forgotten by `now` (their
    /// answer could not be sent any more) or whose [`handler_timeout`] passed; returns their
    /// exchanges, to be answered 5.03 if the core still knows them.
    ///
    /// [`handler_timeout`]: super::Builder::handler_timeout
    fn expire_handlers(&mut self, now: Instant) -> Vec<IncomingId> {
        let mut expired = Vec::new();
        for queue in &mut self.expiry {
            while let Some(&(at, id)) = queue.front() {
                if at > now {
                    break;
                }
                queue.pop_front();
                if let Some(handle) = self.running.remove(&id) {
                    debug!("coapio: the handler of {id:?} did not answer in time; dropped");
                    // Wakes the aborted future's task inside `handlers`, which wakes the
                    // engine's waker; no lock is held here.
                    handle.abort();
                    expired.push(id);
                }
            }
        }
        let live = self.running.len();
        if self.expiry.iter().map(VecDeque::len).sum::<usize>() > 2 * live + 64 {
            let running = &self.running;
            for queue in &mut self.expiry {
                queue.retain(|(_, id)| running.contains_key(id));
            }
        }
        expired
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.expiry
            .iter()
            .filter_map(|q| q.front().map(|e| e.0))
            .min()
    }

    /// One bounded step of work; never blocks.
    pub(super) fn step(&mut self, shared: &Shared) -> Step {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let mut budget = BUDGET;
        for _ in 0..ROUNDS {
            let now = Instant::now();
            let expired = self.expire_handlers(now);
            let mut answered = std::mem::take(&mut self.answered);
            while let Poll::Ready(Some(done)) = self.handlers.poll_next_unpin(&mut cx) {
                if let Ok((id, response)) = done {
                    self.running.remove(&id);
                    answered.push((id, response));
                }
            }
            let now = Instant::now();
            let mut requests = std::mem::take(&mut self.requests);
            let mut events_left;
            let (more, deadline) = {
                let Some(mut st) = self.lock_running(shared) else {
                    return Step::Stopped;
                };
                let Some(io) = self.io.as_ref() else {
                    return Step::Stopped;
                };
                for id in expired {
                    let unavailable = Response::new(Code::SERVICE_UNAVAILABLE);
                    if st.ep.respond(now, id, unavailable).is_ok() {
                        debug!("coapio: answered {id:?} 5.03: its handler took too long");
                    }
                }
                respond_all(&mut st, now, &mut answered);
                let (handled, more) = crate::step::process_with_budget(
                    &mut st.ep,
                    &**io.get_ref(),
                    now,
                    &mut self.bufs,
                    budget,
                );
                budget = budget.saturating_sub(handled);
                while let Some(event) = st.ep.poll_event() {
                    budget = budget.saturating_sub(1);
                    match event {
                        Event::Response { id, response } => st.complete(id, response),
                        Event::Notification { id, response } => st.notify(id, response),
                        Event::GroupResponse { id, from, response } => {
                            st.group_response(id, from, response)
                        }
                        Event::GroupDone { id } => st.group_done(id),
                        Event::Failed { id, error } => st.fail(id, error),
                        Event::Request { id, meta, request } if self.site.is_some() => {
                            requests.push((id, meta, request));
                        }
                        Event::Request { id, .. } => {
                            let _ = st.ep.respond(now, id, Response::new(Code::NOT_FOUND));
                        }
                    }
                }
                crate::step::flush(&mut st.ep, &**io.get_ref(), now, &mut self.bufs);
                // Sending can end requests (a send error): their events are for this step.
                events_left = st.ep.has_events();
                (more, crate::step::next_deadline(&st.ep, &**io.get_ref()))
            };
            // The handlers are user code: they run with no lock held, so they may call any
            // method of the endpoint. Each is polled once at once; one that answers then is
            // answered in this round, the others join the running handlers.
            if let Some(site) = &self.site {
                for (id, meta, request) in requests.drain(..) {
                    let lifetime = usize::from(!request.confirmable);
                    let mut request = ServerRequest::new(request, meta);
                    request.endpoint.clone_from(&self.me);
                    let mut fut = site.handle(request);
                    if let Poll::Ready(response) = fut.as_mut().poll(&mut cx) {
                        answered.push((id, response));
                        continue;
                    }
                    let (handle, registration) = AbortHandle::new_pair();
                    let fut: HandlerFuture = Box::pin(async move { (id, fut.await) });
                    self.handlers.push(Abortable::new(fut, registration));
                    self.running.insert(id, handle);
                    let at = now
                        .checked_add(self.lifetimes[lifetime])
                        .unwrap_or(now + Duration::from_secs(86_400 * 365));
                    self.expiry[lifetime].push_back((at, id));
                }
            }
            // Kept for the next round, with their room (no allocation per round).
            requests.clear();
            self.requests = requests;
            let deadline = if answered.is_empty() {
                deadline
            } else {
                let Some(mut st) = self.lock_running(shared) else {
                    return Step::Stopped;
                };
                let Some(io) = self.io.as_ref() else {
                    return Step::Stopped;
                };
                let now = Instant::now();
                respond_all(&mut st, now, &mut answered);
                crate::step::flush(&mut st.ep, &**io.get_ref(), now, &mut self.bufs);
                events_left = st.ep.has_events();
                crate::step::next_deadline(&st.ep, &**io.get_ref())
            };
            self.answered = answered;
            if budget == 0 || more {
                break;
            }
            if events_left {
                continue;
            }
            let Some(io) = self.io.as_ref() else {
                return Step::Stopped;
            };
            // The socket was drained this round (`more` is false): a readiness reported now is
            // most often the one that woke this step, already consumed. Asked again, the
            // reactor registers the waker and answers Pending unless something new came (a
            // datagram that came meanwhile still wakes the step: re-registering re-arms the
            // descriptor), which saves a receive that would find nothing.
            let mut readable = io.poll_readable(&mut cx);
            if matches!(readable, Poll::Ready(Ok(()))) {
                readable = io.poll_readable(&mut cx);
            }
            match readable {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Step::Failed(e),
                Poll::Pending => {}
            }
            let deadline = match (deadline, self.next_expiry()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // The timer is set again only when the deadline comes earlier than what it is set
            // for. One set for earlier than needed (the deadline moved later: a response
            // came, a request was answered) wakes this step once for nothing and is then set
            // for the real deadline; that costs less than setting it at every change, which
            // a client's every request makes (each setting wakes the reactor).
            if let Some(at) = deadline.filter(|&at| self.armed.is_none_or(|armed| at < armed)) {
                self.timer.set_at(at);
                self.armed = Some(at);
            }
            if self.armed.is_some() && Pin::new(&mut self.timer).poll(&mut cx).is_ready() {
                self.armed = None;
                continue;
            }
            return Step::Idle;
        }
        // Out of budget with work left: come back after the executor ran other tasks.
        self.waker.wake_by_ref();
        Step::Yielded
    }

    /// Takes the state lock while the endpoint runs; after a shutdown, closes the engine
    /// and returns `None`.
    fn lock_running<'s>(&mut self, shared: &'s Shared) -> Option<Locked<'s>> {
        let st = shared.lock();
        if self.io.is_some() && !st.stopped {
            return Some(st);
        }
        drop(st);
        self.close();
        None
    }

    /// Closes the transport and drops the handlers (after a shutdown).
    fn close(&mut self) {
        if self.io.take().is_some() {
            debug!("coapio: endpoint shut down");
        }
        self.handlers = FuturesUnordered::new();
        self.running.clear();
        self.expiry = [VecDeque::new(), VecDeque::new()];
        self.timer = Timer::never();
        self.armed = None;
    }
}

/// The future that runs an [`Endpoint`](super::Endpoint): all I/O, timers and request
/// handlers happen while it is polled (see the module docs for what happens when it is not).
/// It completes after [`Endpoint::shutdown`](super::Endpoint::shutdown), or for a client-only
/// endpoint once every handle is dropped and no request is open; it fails only on an error of
/// the transport's readiness.
///
/// After a bounded amount of work (a budget of datagrams and events) it wakes itself and
/// returns `Pending`, so a flood of datagrams cannot starve the other tasks of its executor.
#[must_use = "a server's endpoint does not serve unless its driver is polled"]
pub struct Driver {
    pub(super) shared: Arc<Shared>,
    pub(super) handles: Weak<HandleToken>,
    pub(super) server: bool,
    pub(super) polled: bool,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Detaches the driver: waiting futures drive the endpoint themselves from now on.
    fn detach(&mut self) {
        let mut st = self.shared.lock();
        if st.driver_attached {
            st.driver_attached = false;
            st.driver_waker = None;
            st.wake_all_slots();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let (stopped, idle) = {
            let mut st = self.shared.lock();
            if self.server {
                st.driver_dropped = true;
            }
            (st.stopped, st.slots.is_empty())
        };
        if self.server && !stopped && idle && self.handles.strong_count() == 0 {
            self.shared.abandon();
        } else if self.server && !stopped {
            log::warn!(
                "coapio: the driver of a server was dropped {}; its resources are served only while one of its own requests waits. Run the driver on an executor (smol::spawn(driver).detach(), tokio::spawn(driver), async_io::block_on(driver))",
                if self.polled { "before shutdown" } else { "without ever running" }
            );
        }
        self.detach();
    }
}

impl Future for Driver {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        this.polled = true;
        {
            let mut st = this.shared.lock();
            st.driver_attached = true;
            st.driver_waker = Some(cx.waker().clone());
        }
        let step = this.shared.try_drive();
        let idle_client = |st: &State| {
            !this.server
                && this.handles.strong_count() == 0
                && st.slots.is_empty()
                && st.ep.stats().open_requests == 0
        };
        let done = match step {
            // Someone else is in the middle of a step; the engine's waker wakes this task
            // when there is more to do.
            None | Some(Step::Idle | Step::Yielded) => {
                let st = this.shared.lock();
                if st.stopped {
                    // The step that saw the shutdown closed the transport; end too.
                    Some(Ok(()))
                } else if idle_client(&st) {
                    Some(Ok(()))
                } else {
                    None
                }
            }
            Some(Step::Stopped) => Some(Ok(())),
            Some(Step::Failed(e)) => Some(Err(e.into())),
        };
        match done {
            Some(result) => {
                this.detach();
                Poll::Ready(result)
            }
            None => Poll::Pending,
        }
    }
}
