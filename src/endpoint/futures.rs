//! The futures and streams a request gives: [`ResponseFuture`], [`Observation`] and
//! [`GroupResponses`]. Dropping one cancels its exchange.
//!
//! Each waits on its request's slot in the shared state. When no [`Driver`](super::Driver)
//! is attached, a waiting future runs the endpoint's engine itself (one bounded step per
//! poll, see [`wait`]), so a client needs no spawned task.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use log::debug;

use super::handle::Endpoint;
use super::shared::{Shared, Slot, State};
use crate::error::Error;
use crate::message::uri::Uri;
use crate::proto::{Request, RequestId, Response};

/// Polls the slot of request `id` with `check` (under the state lock); when it yields
/// nothing, leaves the task's waker in the slot and, if no driver is attached, runs one
/// step of the engine and checks once more.
///
/// `check` sees the slot (`None` once it is gone) and whether the endpoint is shut down.
fn wait<T>(
    shared: &Shared,
    id: RequestId,
    cx: &mut Context<'_>,
    mut check: impl FnMut(&mut State, Option<&mut Slot>, bool) -> Option<T>,
) -> Poll<T> {
    let mut drove = false;
    loop {
        let drive = {
            let mut st = shared.lock();
            let stopped = st.stopped;
            let slot = st.slots.remove(&id);
            let mut slot = slot;
            let out = check(&mut st, slot.as_mut(), stopped);
            if let Some(mut slot) = slot {
                if out.is_none() {
                    slot.waker = Some(cx.waker().clone());
                }
                st.slots.insert(id, slot);
            }
            if let Some(out) = out {
                return Poll::Ready(out);
            }
            !st.driver_attached && !stopped
        };
        if drove || !drive {
            return Poll::Pending;
        }
        drove = true;
        // No driver task: this future drives. If another party is stepping right now, its
        // step registers the engine's waker, which wakes this task's slot.
        shared.try_drive();
    }
}

/// Where a request goes: a URI to parse (and maybe resolve), or an address.
#[derive(Debug)]
pub(super) enum Target {
    Uri(String),
    Addr(SocketAddr),
}

/// What a request is for: one answer, an observation, or the answers of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Unicast,
    Observe,
    Group,
}

/// A request not yet started: it is made when its future is first polled.
#[derive(Debug)]
pub(super) struct Unsent {
    pub(super) target: Target,
    pub(super) request: Request,
    pub(super) kind: Kind,
}

/// A request waiting for its host name to be resolved (on the `blocking` pool).
#[derive(Debug)]
pub(super) struct Resolving {
    pub(super) lookup: blocking::Task<Result<SocketAddr, Error>>,
    pub(super) uri: String,
    pub(super) parsed: Uri,
    pub(super) request: Request,
    pub(super) kind: Kind,
}

/// How [`Endpoint::begin`] started a request.
pub(super) enum Begun {
    Sent(RequestId),
    Resolving(Box<Resolving>),
    Failed(Error),
}

impl From<Result<(RequestId, SocketAddr), Error>> for Begun {
    fn from(r: Result<(RequestId, SocketAddr), Error>) -> Self {
        match r {
            Ok((id, _)) => Self::Sent(id),
            Err(e) => Self::Failed(e),
        }
    }
}

/// The unsent request is kept inline, not boxed: a box would be an allocation per request.
#[derive(Debug)]
pub(super) enum FutState {
    /// Not polled yet (the endpoint handle it will be sent through, and what).
    Unsent(Endpoint, Unsent),
    /// Its host name is being resolved.
    Resolving(Endpoint, Box<Resolving>),
    Waiting(RequestId),
    Done,
}

/// The response to a request, as a future. Nothing is sent before it is first polled;
/// dropping it before it completes cancels the request: nothing more is sent for it.
///
/// While no [`Driver`](super::Driver) runs, polling this future runs the endpoint.
#[must_use = "futures do nothing unless polled; a request is cancelled when its future is dropped"]
#[derive(Debug)]
pub struct ResponseFuture {
    pub(super) shared: Arc<Shared>,
    pub(super) state: FutState,
}

impl ResponseFuture {
    /// How many items a stream on this request dropped so far (`taken`: the count last
    /// taken, which is all there is once the request has ended).
    fn slot_dropped(&self, taken: u64) -> u64 {
        let FutState::Waiting(id) = self.state else {
            return taken;
        };
        let st = self.shared.lock();
        st.slots.get(&id).map_or(taken, |s| s.dropped)
    }

    pub(super) fn unsent(
        endpoint: &Endpoint,
        target: Target,
        request: Request,
        kind: Kind,
    ) -> Self {
        Self {
            shared: endpoint.shared.clone(),
            state: FutState::Unsent(
                endpoint.clone(),
                Unsent {
                    target,
                    request,
                    kind,
                },
            ),
        }
    }

    /// Starts the request if it has not started: resolves, then sends. Ready with its ID
    /// once it is sent, or with the error that kept it from being sent (the future is done
    /// then).
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<Result<RequestId, Error>> {
        loop {
            let sent = match std::mem::replace(&mut self.state, FutState::Done) {
                FutState::Waiting(id) => {
                    self.state = FutState::Waiting(id);
                    return Poll::Ready(Ok(id));
                }
                FutState::Done => return Poll::Ready(Err(Error::Stopped)),
                FutState::Unsent(endpoint, unsent) => match endpoint.begin(unsent) {
                    Begun::Sent(id) => Ok(id),
                    Begun::Failed(e) => Err(e),
                    Begun::Resolving(r) => {
                        self.state = FutState::Resolving(endpoint, r);
                        continue;
                    }
                },
                FutState::Resolving(endpoint, mut r) => match Pin::new(&mut r.lookup).poll(cx) {
                    Poll::Pending => {
                        self.state = FutState::Resolving(endpoint, r);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Ready(Ok(remote)) => {
                        let Resolving {
                            uri,
                            parsed,
                            request,
                            kind,
                            ..
                        } = *r;
                        endpoint
                            .begin_at(remote, Some((&uri, &parsed)), request, kind)
                            .map(|(id, _)| id)
                    }
                },
            };
            match sent {
                Ok(id) => self.state = FutState::Waiting(id),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = match self.poll_start(cx) {
            Poll::Ready(Ok(id)) => id,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let ready = wait(&self.shared, id, cx, |st, slot, stopped| {
            let Some(slot) = slot else {
                return Some(Err(Error::Stopped));
            };
            if let Some(r) = slot.result.take() {
                return Some(r);
            }
            // A request to a multicast group: the first server's answer is the answer, and
            // the request ends with the future.
            if let Some((_, first)) = slot.group.pop_front() {
                st.ep.cancel(Instant::now(), id);
                st.wake_engine();
                return Some(Ok(first));
            }
            if slot.group_done {
                let (remote, after) = (slot.remote, slot.sent.elapsed());
                return Some(Err(Error::Timeout { remote, after }));
            }
            // A request made with Observe: its first notification is the answer, and the
            // observation ends with the future.
            if let Some(first) = slot.notifications.pop_front() {
                st.ep.cancel(Instant::now(), id);
                st.wake_engine();
                return Some(Ok(first));
            }
            stopped.then_some(Err(Error::Stopped))
        });
        if ready.is_ready() {
            self.finish();
        }
        ready
    }
}

impl ResponseFuture {
    /// The exchange ended: forgets its slot.
    fn finish(&mut self) {
        if let FutState::Waiting(id) = self.state {
            let mut st = self.shared.lock();
            st.slots.remove(&id);
            // The last open request ended: a client's driver may be done.
            if st.slots.is_empty() && st.driver_attached {
                let w = st.driver_waker.take();
                st.wake(w);
            }
        }
        self.state = FutState::Done;
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if let FutState::Waiting(id) = self.state {
            let mut st = self.shared.lock();
            st.slots.remove(&id);
            st.ep.cancel(Instant::now(), id);
            st.wake_engine();
            debug!("coapio: request {id:?} dropped before its response; cancelled");
        }
    }
}

/// The notifications of an observation, as a stream (see
/// [`Endpoint::observe`](super::Endpoint::observe)).
///
/// A consumer slower than the notifications does not make them pile up: at most a few
/// (4) are kept, the oldest dropped first, so the newest representation is always
/// delivered; [`Observation::dropped`] counts the ones skipped.
#[must_use = "an observation is cancelled when its stream is dropped"]
#[derive(Debug)]
pub struct Observation {
    pub(super) inner: ResponseFuture,
    pub(super) ended: bool,
    pub(super) dropped: u64,
}

impl Observation {
    pub(super) const fn new(inner: ResponseFuture) -> Self {
        Self {
            inner,
            ended: false,
            dropped: 0,
        }
    }

    /// Ends the observation and tells the server: the registration goes out again with
    /// Observe 1 (RFC 7641 §3.6, as libcoap's `coap_cancel_observe` does), and this waits
    /// for the server's answer, which is returned (`None`: there was nothing to tell, as
    /// the server had not confirmed the observation or had ended it). Notifications that
    /// arrive meanwhile are dropped.
    ///
    /// Dropping the stream instead ends the observation here only; the server learns of it
    /// from the Reset to its next notification.
    ///
    /// ```
    /// # async fn run(client: coapio::Endpoint, uri: &str) -> Result<(), coapio::Error> {
    /// use futures::StreamExt;
    /// let mut temperature = client.observe(uri);
    /// while let Some(reading) = temperature.next().await {
    ///     if reading?.payload == b"100" {
    ///         break;
    ///     }
    /// }
    /// temperature.cancel().await?; // the server forgets this observer at once
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The deregistration's failure: no answer ([`Error::Timeout`]), a Reset, a network
    /// error.
    pub async fn cancel(mut self) -> Result<Option<Response>, Error> {
        let FutState::Waiting(id) = self.inner.state else {
            return Ok(None);
        };
        let told = {
            let mut st = self.inner.shared.lock();
            let told = st.ep.cancel_observation(Instant::now(), id);
            st.wake_engine();
            told
        };
        if !matches!(told, Ok(true)) {
            return Ok(None);
        }
        let mut last = None;
        while let Some(item) = futures::StreamExt::next(&mut self).await {
            last = Some(item?);
        }
        Ok(last)
    }

    /// How many notifications were dropped, unseen, because newer ones arrived while the
    /// consumer had not taken them.
    pub fn dropped(&self) -> u64 {
        self.inner.slot_dropped(self.dropped)
    }
}

impl futures::Stream for Observation {
    type Item = Result<Response, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let id = match this.inner.poll_start(cx) {
            Poll::Ready(Ok(id)) => id,
            Poll::Ready(Err(e)) => {
                this.ended = true;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Pending => return Poll::Pending,
        };
        let mut dropped = this.dropped;
        let ready = wait(&this.inner.shared, id, cx, |_, slot, stopped| {
            let Some(slot) = slot else {
                return Some((Err(Error::Stopped), true));
            };
            dropped = slot.dropped;
            if let Some(n) = slot.notifications.pop_front() {
                return Some((Ok(n), false));
            }
            if let Some(last) = slot.result.take() {
                return Some((last, true));
            }
            stopped.then_some((Err(Error::Stopped), true))
        });
        this.dropped = dropped;
        match ready {
            Poll::Ready((item, last)) => {
                if last {
                    this.ended = true;
                    this.inner.finish();
                }
                Poll::Ready(Some(item))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The answers to a request sent to a multicast group, as a stream of the servers' addresses
/// and responses (see [`Endpoint::multicast`](super::Endpoint::multicast)).
///
/// At most 256 answers not yet taken are kept; answers beyond them are dropped and counted
/// ([`GroupResponses::dropped`]).
#[must_use = "a group request stops collecting answers when its stream is dropped"]
#[derive(Debug)]
pub struct GroupResponses {
    pub(super) inner: ResponseFuture,
    pub(super) ended: bool,
    pub(super) dropped: u64,
}

impl GroupResponses {
    pub(super) const fn new(inner: ResponseFuture) -> Self {
        Self {
            inner,
            ended: false,
            dropped: 0,
        }
    }

    /// How many answers were dropped because 256 earlier ones had not been taken yet.
    pub fn dropped(&self) -> u64 {
        self.inner.slot_dropped(self.dropped)
    }
}

impl futures::Stream for GroupResponses {
    type Item = Result<(SocketAddr, Response), Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let id = match this.inner.poll_start(cx) {
            Poll::Ready(Ok(id)) => id,
            Poll::Ready(Err(e)) => {
                this.ended = true;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Pending => return Poll::Pending,
        };
        let mut dropped = this.dropped;
        let ready = wait(&this.inner.shared, id, cx, |_, slot, stopped| {
            let Some(slot) = slot else {
                return Some(None);
            };
            dropped = slot.dropped;
            if let Some(answer) = slot.group.pop_front() {
                return Some(Some(Ok(answer)));
            }
            if slot.group_done {
                return Some(None);
            }
            if let Some(Err(e)) = slot.result.take() {
                return Some(Some(Err(e)));
            }
            stopped.then_some(Some(Err(Error::Stopped)))
        });
        this.dropped = dropped;
        match ready {
            Poll::Ready(Some(Ok(answer))) => Poll::Ready(Some(Ok(answer))),
            Poll::Ready(end) => {
                this.ended = true;
                this.inner.finish();
                Poll::Ready(end)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
