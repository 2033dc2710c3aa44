//! `coapio_context`: one endpoint with its transport, driven either by the library
//! (`coapio_context_run`, mode A) or by the application's own event loop (mode B: one file
//! descriptor, a timeout, and `coapio_context_process`).
//!
//! The descriptor is a `polling::Poller` (epoll on Linux, kqueue on macOS and the BSDs)
//! holding the transport's descriptor and a timer armed to the protocol core's next deadline
//! (a timerfd, or a kqueue timer), so it becomes readable when there is I/O or a deadline has
//! passed, as libcoap's `coap_context_get_coap_fd` does. On Windows it is the transport's
//! socket, which deadlines do not make readable ([`readiness`](super::readiness)).

use std::collections::VecDeque;
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd};
#[cfg(windows)]
use std::os::windows::io::AsRawSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use polling::{Event as PollEvent, Events, PollMode, Poller};

use super::base::coapio_result::{self, *};
use super::base::{fail, guard, guard_void};
use super::client::{coapio_response, coapio_response_callback};
use super::config::coapio_config;
use super::readiness::DeadlineTimer;
use super::server::{CResource, Dispatch};
use crate::endpoint::TransportKind;
use crate::error::Error;
use crate::message::Code;
use crate::proto::{self, Event, IdMap, IncomingId, Request, RequestId, Response};
use crate::server::{ServerRequest, Site};
use crate::transport::Transport;

/// A pointer the application passes through unchanged (`void *userdata`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct UserData(pub(crate) *mut std::ffi::c_void);

// SAFETY: the library never dereferences the pointer; it only hands it back to the
// application's callbacks, which run on the thread that calls run/process.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// Where a request's outcome goes.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A C callback.
    Callback(coapio_response_callback, UserData),
    /// `coapio_request_sync`'s slot.
    Sync(Arc<Mutex<Option<Result<Response, Failure>>>>),
}

/// Why a request ended without a response: the code its callback gets and the words
/// `coapio_last_error` gives during the callback (or after `coapio_request_sync`).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: coapio_result,
    pub(crate) message: String,
    /// Where the request went and how long after it failed (`coapio_last_failure`).
    pub(crate) sent: Option<(std::net::SocketAddr, Duration)>,
}

impl Failure {
    pub(crate) fn of(e: &Error, sent: Option<(std::net::SocketAddr, Duration)>) -> Self {
        Self {
            code: result_of(e),
            message: crate::Report(e).to_string(),
            sent,
        }
    }

    /// Records the failure as this thread's last (`coapio_last_error`,
    /// `coapio_last_failure`) and returns its code.
    pub(crate) fn record(self) -> coapio_result {
        super::base::fail_request(self.code, self.message, self.sent)
    }
}

type HandlerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = (IncomingId, Response)> + Send>>;

pub(crate) struct Core {
    pub(crate) ep: proto::Endpoint,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) site: Option<Site>,
    pub(crate) resources: Vec<CResource>,
    handlers: FuturesUnordered<HandlerFuture>,
    /// The remotes reached over DTLS (`coaps://`), when the context has DTLS.
    #[cfg(feature = "dtls")]
    pub(crate) secure: Option<crate::dtls::SecureRemotes>,
    /// The open requests: where each one's outcome goes, where it went and when. (Which
    /// remotes are in use, for [`Transport::set_in_use`], the core says: `crate::step`
    /// passes it on.)
    outcomes: IdMap<RequestId, (Outcome, std::net::SocketAddr, Instant)>,
    bufs: crate::step::Buffers,
    /// The URI patterns of the OSCORE contexts that protect requests.
    oscore: Vec<(String, proto::SecurityId)>,
}

/// A response callback due, with its userdata and what to pass it.
type DueCallback = (
    extern "C" fn(*mut std::ffi::c_void, coapio_result, *const coapio_response),
    UserData,
    Result<Response, Failure>,
);

impl Core {
    /// Makes `remote` one reached over DTLS for a `coaps://` request (`secure`: the name it is
    /// known by, `None` for an IP literal), or says why not.
    /// Protects `request` with the OSCORE context whose pattern matches `uri`, if any.
    pub(crate) fn secure_for(&self, uri: &str, mut request: Request) -> Request {
        if request.oscore.is_none() {
            request.oscore = crate::endpoint::oscore_for(&self.oscore, uri);
        }
        request
    }

    pub(crate) fn use_scheme(
        &mut self,
        remote: std::net::SocketAddr,
        secure: Option<&Option<String>>,
    ) -> Result<(), coapio_result> {
        let Some(name) = secure else {
            return Ok(());
        };
        #[cfg(feature = "dtls")]
        if let Some(s) = &self.secure {
            lock(s).insert(remote, name.clone());
            return Ok(());
        }
        let _ = (remote, name);
        Err(fail(
            COAPIO_RESULT_INVALID_URI,
            if cfg!(feature = "dtls") {
                "coaps:// needs DTLS credentials: coapio_config_set_psk or _set_certificate"
            } else {
                "coaps:// needs the library built with the `dtls` feature"
            },
        ))
    }

    /// Registers an open request and where its outcome goes.
    pub(crate) fn open_request(
        &mut self,
        id: RequestId,
        remote: std::net::SocketAddr,
        outcome: Outcome,
    ) {
        self.outcomes.insert(id, (outcome, remote, Instant::now()));
    }

    /// Whether request `id` is open (its outcome not yet delivered).
    pub(crate) fn is_open(&self, id: RequestId) -> bool {
        self.outcomes.contains_key(&id)
    }

    /// Ends an open request: its outcome, if it was open.
    pub(crate) fn close_request(&mut self, id: RequestId) -> Option<Outcome> {
        self.outcomes.remove(&id).map(|(outcome, ..)| outcome)
    }

    /// Polls the handler futures and sends the answers that are ready.
    fn answer_handlers(&mut self, cx: &mut Context<'_>, now: Instant) {
        let mut answered = Vec::new();
        while let Poll::Ready(Some(a)) = self.handlers.poll_next_unpin(cx) {
            answered.push(a);
        }
        for (id, response) in answered {
            let _ = self.ep.respond(now, id, response);
        }
    }

    /// Takes events from the core until one ends or answers a request: `None` when there
    /// are no more, `Some(Some(..))` for a response callback to call, `Some(None)` for an
    /// outcome handled here (a synchronous request's slot, a request without a callback).
    /// Events of requests that are no longer open (cancelled) are dropped.
    fn next_callback(&mut self, now: Instant) -> Option<Option<DueCallback>> {
        loop {
            let (id, result, last) = match self.ep.poll_event()? {
                Event::Response { id, response } => (id, Ok(response), true),
                // A notification goes to the request's callback, which is called again for
                // the next; a synchronous request takes the first and ends the observation.
                // So does each server's answer to a group request, which then ends once
                // with COAPIO_RESULT_TIMEOUT and NULL when the time for answers is over.
                Event::Notification { id, response }
                | Event::GroupResponse { id, response, .. } => (id, Ok(response), false),
                Event::GroupDone { id } => {
                    let sent = self
                        .outcomes
                        .get(&id)
                        .map(|&(_, remote, at)| (remote, at.elapsed()));
                    let over = Failure {
                        code: COAPIO_RESULT_TIMEOUT,
                        message: "the time for answers to the group request is over".into(),
                        sent,
                    };
                    (id, Err(over), true)
                }
                Event::Failed { id, error } => {
                    let Some(&(_, remote, sent)) = self.outcomes.get(&id) else {
                        continue;
                    };
                    let after = sent.elapsed();
                    let error = Error::of_failure(error, remote, after);
                    (id, Err(Failure::of(&error, Some((remote, after)))), true)
                }
                Event::Request { id, meta, request } => {
                    match &self.site {
                        Some(site) => {
                            let fut = site.handle(ServerRequest::new(request, meta));
                            self.handlers.push(Box::pin(async move { (id, fut.await) }));
                        }
                        None => {
                            let _ = self.ep.respond(now, id, Response::new(Code::NOT_FOUND));
                        }
                    }
                    continue;
                }
            };
            let outcome = match self.outcomes.get(&id).map(|(o, ..)| o) {
                None => continue,
                Some(Outcome::Callback(cb, ud)) if !last => Outcome::Callback(*cb, *ud),
                Some(Outcome::Sync(_)) if !last => {
                    self.ep.cancel(now, id);
                    self.close_request(id)?
                }
                Some(_) => self.close_request(id)?,
            };
            return Some(match outcome {
                Outcome::Callback(Some(cb), ud) => Some((cb, ud, result)),
                Outcome::Callback(None, _) => None,
                Outcome::Sync(slot) => {
                    *lock(&slot) = Some(result);
                    None
                }
            });
        }
    }
}

pub(crate) struct Inner {
    pub(crate) core: Mutex<Core>,
    pub(crate) dispatch: Arc<Mutex<VecDeque<Dispatch>>>,
    pub(crate) poller: Poller,
    timer: DeadlineTimer,
    /// Windows: what wakes a mode-B loop ([`Bell`](super::readiness::Bell)).
    #[cfg(windows)]
    bell: super::readiness::Bell,
    /// What the timer is set for (never later than the next deadline), so that it is set
    /// again only when the deadline comes earlier.
    armed: Mutex<Option<Instant>>,
    /// Whether the poller was notified since its notifications were last consumed.
    notified: AtomicBool,
    stop: AtomicBool,
    /// Set by `coapio_context_free`: a `run` in progress (the context was freed from a
    /// callback) returns at once.
    pub(crate) freed: AtomicBool,
    /// Set when a panic unwound through a call working on this context (see [`CtxRef`]):
    /// every later call returns `COAPIO_RESULT_FAILED` and no callback runs again.
    failed: AtomicBool,
    in_callback: AtomicBool,
    local: Option<std::net::SocketAddr>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let core = self.core.get_mut().unwrap_or_else(|e| e.into_inner());
        #[cfg(unix)]
        let _ = self.poller.delete(core.transport.as_fd());
        #[cfg(windows)]
        let _ = self.poller.delete(core.transport.as_socket());
        self.timer.remove(&self.poller);
    }
}

pub(crate) use crate::step::lock;

/// Wakes the context's loop (through the poller) when a handler future can make progress.
struct NotifyWaker(Weak<Inner>);

impl Wake for NotifyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(inner) = self.0.upgrade() {
            inner.notify();
        }
    }
}

/// A CoAP endpoint for C. Methods: `coapio_context_new`, `coapio_context_free`,
/// `coapio_context_run`, `coapio_context_stop`, `coapio_context_wake`,
/// `coapio_context_get_fd`, `coapio_context_get_socket`, `coapio_context_next_timeout_ms`,
/// `coapio_context_process`, `coapio_context_local_port`, `coapio_context_send`,
/// `coapio_context_cancel`, `coapio_request_sync`, `coapio_context_add_resource`,
/// `coapio_context_set_resource_attr`, `coapio_context_notify`,
/// `coapio_context_end_observations`.
///
/// A context is used from one thread; only `coapio_context_stop`, `coapio_context_notify`,
/// `coapio_context_wake` and answering a `coapio_responder` may come from others.
pub struct coapio_context {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for coapio_context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("coapio_context")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Makes the poller's descriptor readable: there is work for `process`.
    pub(crate) fn notify(&self) {
        let _ = self.poller.notify();
        #[cfg(windows)]
        self.bell.ring();
        // After the notification, so that whoever sees the flag finds it to consume.
        self.notified.store(true, Ordering::SeqCst);
    }

    /// Arms the timer for `deadline` when that is earlier than what it is armed for (or it
    /// is not armed). One armed for earlier than needed makes the descriptor readable once
    /// for nothing, and `process` then arms it for the real deadline: cheaper than a system
    /// call at every change of the deadline (a client's every request changes it).
    fn arm(&self, deadline: Option<Instant>) {
        let Some(at) = deadline else {
            return;
        };
        // Held until the timer is set, so that `armed` and the timer always agree.
        let mut armed = lock(&self.armed);
        if armed.is_some_and(|armed| armed <= at) {
            return;
        }
        // Not set (the kernel refused): tried again at the next deadline.
        let set = self
            .timer
            .set(&self.poller, at.saturating_duration_since(Instant::now()));
        *armed = set.then_some(at);
        drop(armed);
    }

    /// Consumes the readiness of the timer (when its deadline has come) and the poller's
    /// notifications (when there were any): no system call when neither.
    fn clear_readiness(&self) {
        #[cfg(windows)]
        self.bell.reset();
        let now = Instant::now();
        let mut armed = lock(&self.armed);
        if armed.is_some_and(|at| at <= now) && self.timer.consume(&self.poller) {
            // It fired and is disarmed now.
            *armed = None;
        }
        drop(armed);
        if self.notified.swap(false, Ordering::SeqCst) {
            let mut events = Events::new();
            let _ = self.poller.wait(&mut events, Some(Duration::ZERO));
            self.note_timer(&events);
        }
    }

    /// After a wait on the poller: if it took the timer's firing (a kqueue timer), the timer
    /// is disarmed, and `arm` must set it again.
    fn note_timer(&self, events: &Events) {
        if self.timer.collected(events) {
            *lock(&self.armed) = None;
        }
    }

    fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::new(NotifyWaker(Arc::downgrade(self))))
    }

    /// Flushes what the core has to send and re-arms the timer; for calls made outside
    /// `process` (send, cancel).
    pub(crate) fn after_call(&self, core: &mut Core) {
        let now = Instant::now();
        let Core {
            ep,
            transport,
            bufs,
            ..
        } = core;
        crate::step::flush(ep, transport.as_ref(), now, bufs);
        self.arm(crate::step::next_deadline(ep, transport.as_ref()));
        // Sending can end a request at once (an ICMP error read while flushing): make the
        // descriptor readable so that mode B's loop calls process and sees it now.
        if ep.has_events() {
            self.notify();
        }
    }

    /// Whether callbacks may still run: not once the context was freed or has failed.
    fn callbacks_allowed(&self) -> bool {
        !self.freed.load(Ordering::SeqCst) && !self.failed.load(Ordering::SeqCst)
    }

    /// One round of work: I/O, timers and handler futures under the lock, then the callbacks
    /// outside it, one at a time. Returns whether a request ended or a callback ran (so
    /// answers given in callbacks should be flushed by another round).
    ///
    /// Each callback may cancel requests, send new ones or free the context, so nothing is
    /// collected ahead: the next event is taken from the core, and its request looked up,
    /// only after the previous callback returned, and no callback runs once the context was
    /// freed or has failed.
    fn round(self: &Arc<Self>, waker: &Waker) -> bool {
        let mut cx = Context::from_waker(waker);
        {
            let mut core = lock(&self.core);
            let core = &mut *core;
            let now = Instant::now();
            core.answer_handlers(&mut cx, now);
            crate::step::process(&mut core.ep, core.transport.as_ref(), now, &mut core.bufs);
        }
        let mut worked = false;
        while self.callbacks_allowed() {
            let next = lock(&self.core).next_callback(Instant::now());
            let Some(next) = next else { break };
            worked = true;
            if let Some((cb, ud, result)) = next {
                self.in_callback.store(true, Ordering::SeqCst);
                match result {
                    Ok(response) => {
                        let r = coapio_response::new(response);
                        cb(ud.0, COAPIO_RESULT_OK, &r);
                    }
                    Err(f) => {
                        // coapio_last_error says what failed, during the callback.
                        let code = f.record();
                        cb(ud.0, code, std::ptr::null());
                    }
                }
                self.in_callback.store(false, Ordering::SeqCst);
            }
        }
        {
            let mut core = lock(&self.core);
            let core = &mut *core;
            let now = Instant::now();
            core.answer_handlers(&mut cx, now);
            crate::step::flush(&mut core.ep, core.transport.as_ref(), now, &mut core.bufs);
            self.arm(crate::step::next_deadline(
                &core.ep,
                core.transport.as_ref(),
            ));
            // Sending can end requests (an error about their remote): their callbacks are
            // due, so the descriptor must wake the caller even if this was the last round.
            if core.ep.has_events() {
                self.notify();
            }
        }
        while self.callbacks_allowed() {
            let Some(d) = lock(&self.dispatch).pop_front() else {
                break;
            };
            worked = true;
            self.in_callback.store(true, Ordering::SeqCst);
            d.call();
            self.in_callback.store(false, Ordering::SeqCst);
        }
        worked
    }

    /// `coapio_context_process`: everything that is due, without blocking.
    pub(crate) fn process(self: &Arc<Self>) -> Result<(), coapio_result> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(failed());
        }
        if self.in_callback.load(Ordering::SeqCst) {
            return Err(fail(
                COAPIO_RESULT_REENTRANT,
                "run/process/request_sync called from inside a callback",
            ));
        }
        self.clear_readiness();
        let waker = self.waker();
        // Answers given inside callbacks are sent in the next round; a few rounds suffice.
        for _ in 0..8 {
            if !self.round(&waker) {
                break;
            }
        }
        #[cfg(windows)]
        self.bell.ring_again_if_rung();
        if self.failed.load(Ordering::SeqCst) {
            return Err(failed());
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let core = lock(&self.core);
        crate::step::next_deadline(&core.ep, core.transport.as_ref())
    }

    /// Waits until there is work, `limit` passes or the loop is notified.
    pub(crate) fn wait(&self, limit: Option<Instant>) {
        let deadline = match (self.next_deadline(), limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut events = Events::new();
        let _ = self.poller.wait(&mut events, timeout);
        self.note_timer(&events);
    }

    /// Runs until stopped, `limit` passes, or `done` says so.
    ///
    /// When `stoppable`, it also ends at `coapio_context_stop` (consuming the request); it
    /// always ends once the context is freed.
    pub(crate) fn run_until(
        self: &Arc<Self>,
        limit: Option<Instant>,
        stoppable: bool,
        done: impl Fn() -> bool,
    ) -> Result<(), coapio_result> {
        let mut waited = false;
        let result = loop {
            if let Err(e) = self.process() {
                break Err(e);
            }
            if done() || self.freed.load(Ordering::SeqCst) {
                break Ok(());
            }
            if stoppable && self.stop.swap(false, Ordering::SeqCst) {
                break Ok(());
            }
            if limit.is_some_and(|l| Instant::now() >= l) {
                break Ok(());
            }
            self.wait(limit);
            waited = true;
        };
        if waited {
            // The poller's own timer for the last wait's timeout may still fire (the wait can
            // end early) and make its descriptor readable after this returns; the next
            // `process` consumes it as it does notifications, so that a mode-B loop polling
            // the descriptor does not spin. (Within this loop each wait resets that timer.)
            self.notified.store(true, Ordering::SeqCst);
        }
        result
    }

    pub(crate) fn in_callback(&self) -> bool {
        self.in_callback.load(Ordering::SeqCst)
    }
}

/// The result code for a request that ended without a response.
pub(crate) fn result_of(e: &Error) -> coapio_result {
    match e {
        Error::Timeout { .. } => COAPIO_RESULT_TIMEOUT,
        Error::Reset { .. } => COAPIO_RESULT_RESET,
        Error::Network {
            kind: crate::net::TransportErrorKind::Security(_),
            ..
        } => COAPIO_RESULT_SECURITY,
        Error::Network { .. } => COAPIO_RESULT_UNREACHABLE,
        // An unprotected answer to an OSCORE request is an end-to-end security failure.
        Error::Unprotected { .. } => COAPIO_RESULT_SECURITY,
        Error::BadResponse { .. } => COAPIO_RESULT_BAD_RESPONSE,
        Error::InvalidUri { .. } | Error::Resolve { .. } | Error::Unsupported(_) => {
            COAPIO_RESULT_INVALID_URI
        }
        Error::InvalidRequest(_) => COAPIO_RESULT_INVALID_ARGUMENT,
        Error::Refused(_) => COAPIO_RESULT_REFUSED,
        Error::Bind { .. } | Error::Io(_) => COAPIO_RESULT_IO,
        #[cfg(feature = "dtls")]
        Error::Credentials(_) => COAPIO_RESULT_INVALID_ARGUMENT,
        Error::Stopped => COAPIO_RESULT_CANCELLED,
    }
}

pub(crate) use crate::step::os_seed;

/// Creates a context from `config` (NULL: the defaults, a client on an ephemeral port) and
/// binds its socket.
#[no_mangle]
pub extern "C" fn coapio_context_new(
    config: *const coapio_config,
    out: *mut *mut coapio_context,
) -> coapio_result {
    guard(|| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        let config = if config.is_null() {
            None
        } else {
            // SAFETY: a live config from coapio_config_new (caller's contract).
            Some(unsafe { &*config }.clone())
        };
        let server = config
            .as_ref()
            .is_some_and(|c| c.bind.is_some_and(|b| b.port() != 0));
        let bind = config
            .as_ref()
            .and_then(|c| c.bind)
            .unwrap_or_else(|| std::net::SocketAddr::from(([0u16; 8], 0)));
        let kind = config
            .as_ref()
            .and_then(|c| c.transport)
            .unwrap_or(TransportKind::default_for(server));
        let reuse_port = config.as_ref().is_some_and(|c| c.reuse_port);
        if kind == TransportKind::Simple6 && config.as_ref().is_some_and(|c| c.bind.is_some()) {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "simple6 opens one socket per remote, on a port of the system's choosing: it has no bind address; use udp6 or simplesocketserver to serve on a known address",
            );
        }
        let transport = match crate::endpoint::open_transport(kind, bind, reuse_port) {
            Ok(t) => t,
            Err(e) => {
                return fail(
                    COAPIO_RESULT_IO,
                    format!("cannot open the transport on {bind}: {e}"),
                )
            }
        };
        // DTLS in front of the socket when credentials are set: a context with a bind
        // address serves DTLS (only) on it; one without sends coaps:// requests over DTLS
        // and coap:// ones plain.
        #[cfg(feature = "dtls")]
        let (transport, secure) = match config.as_ref().filter(|c| c.has_dtls()) {
            Some(c) => match crate::dtls::Dtls::new(c.dtls(c.bind.is_some())) {
                Ok(d) => {
                    let t = crate::dtls::DtlsTransport::new(transport, d, c.bind.is_none());
                    let secure = t.secure_remotes();
                    (Box::new(t) as Box<dyn Transport>, Some(secure))
                }
                Err(e) => {
                    return fail(
                        COAPIO_RESULT_INVALID_ARGUMENT,
                        format!("the DTLS credentials were refused: {e}"),
                    )
                }
            },
            None => (transport, None),
        };
        let mut proto_config = config.as_ref().map(|c| c.proto.clone()).unwrap_or_default();
        // DTLS verifies the remote's address in its handshake (RFC 9175 §2.4 asks no more).
        #[cfg(feature = "dtls")]
        if secure.is_some() {
            proto_config.amplification_mitigation = false;
        }
        if proto_config.seed == 0 {
            proto_config.seed = os_seed();
        }
        let (poller, timer) = match Poller::new().and_then(|p| {
            let timer = DeadlineTimer::new(&p)?;
            Ok((p, timer))
        }) {
            Ok(x) => x,
            Err(e) => return fail(COAPIO_RESULT_IO, format!("cannot create the poller: {e}")),
        };
        // SAFETY: the transport's descriptor is deleted from the poller in Inner::drop, before
        // it is closed (the transport is a field of Inner).
        #[cfg(unix)]
        let source = transport.as_fd().as_raw_fd();
        #[cfg(windows)]
        let source = transport.as_socket().as_raw_socket();
        let added =
            unsafe { poller.add_with_mode(source, PollEvent::readable(0), PollMode::Level) };
        if let Err(e) = added {
            timer.remove(&poller);
            return fail(COAPIO_RESULT_IO, format!("cannot watch the socket: {e}"));
        }
        #[cfg(windows)]
        let bell = match super::readiness::Bell::new(transport.as_socket()) {
            Ok(b) => b,
            Err(e) => {
                let _ = poller.delete(transport.as_socket());
                return fail(
                    COAPIO_RESULT_IO,
                    format!("cannot make the wake-up socket: {e}"),
                );
            }
        };
        let local = transport.local_addr().ok();
        let mut ep = proto::Endpoint::new(Arc::new(proto_config));
        let oscore = match &config {
            Some(c) => match super::oscore::install(c, &mut ep) {
                Ok(patterns) => patterns,
                Err(e) => return e,
            },
            None => Vec::new(),
        };
        let inner = Arc::new(Inner {
            core: Mutex::new(Core {
                ep,
                oscore,
                transport,
                site: None,
                resources: Vec::new(),
                handlers: FuturesUnordered::new(),
                outcomes: IdMap::default(),
                #[cfg(feature = "dtls")]
                secure,
                bufs: crate::step::Buffers::default(),
            }),
            dispatch: Arc::new(Mutex::new(VecDeque::new())),
            poller,
            timer,
            #[cfg(windows)]
            bell,
            armed: Mutex::new(None),
            notified: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            in_callback: AtomicBool::new(false),
            local,
        });
        // SAFETY: out is non-NULL and writable (caller's contract).
        unsafe { *out = Box::into_raw(Box::new(coapio_context { inner })) };
        COAPIO_RESULT_OK
    })
}

/// Frees a context and closes its socket; NULL is ignored. Requests still in flight are
/// dropped without their callbacks being called; responders still held answer nothing.
/// Freeing from inside a callback is allowed: no callback of the context runs after that
/// one, and the context's state goes away when the callback's `run`/`process` returns. A
/// context that failed (`COAPIO_RESULT_FAILED`) is freed like any other.
#[no_mangle]
pub extern "C" fn coapio_context_free(ctx: *mut coapio_context) {
    guard_void(|| {
        if !ctx.is_null() {
            // SAFETY: made by coapio_context_new and freed once (caller's contract).
            let ctx = unsafe { Box::from_raw(ctx) };
            ctx.inner.freed.store(true, Ordering::SeqCst);
            ctx.inner.notify();
            drop(ctx);
        }
    });
}

/// The error of a call on a failed context.
fn failed() -> coapio_result {
    fail(
        COAPIO_RESULT_FAILED,
        "the context failed after an internal error (a caught panic); free it",
    )
}

/// A context's state held by a call: it keeps the state alive for the whole call, even if
/// a callback frees the context, and marks the context failed if a panic unwinds through
/// the call, so that no later call runs on state the panic may have left half-updated.
pub(crate) struct CtxRef(Arc<Inner>);

impl std::ops::Deref for CtxRef {
    type Target = Arc<Inner>;
    fn deref(&self) -> &Arc<Inner> {
        &self.0
    }
}

impl Drop for CtxRef {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
            self.0.notify();
        }
    }
}

thread_local! {
    /// Set while an application's PSK lookup runs (inside a handshake, with a context's
    /// state held): calls on contexts are refused then.
    static IN_PSK_LOOKUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs an application's PSK lookup with calls on contexts refused meanwhile.
#[cfg(feature = "dtls")]
pub(crate) fn in_psk_lookup<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_PSK_LOOKUP.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_PSK_LOOKUP.with(|c| c.replace(true)));
    f()
}

/// Reads a context argument: NULL is refused, and so is a context that has failed
/// (`COAPIO_RESULT_FAILED`) and any call from inside a PSK lookup callback
/// (`COAPIO_RESULT_REENTRANT`: the context's state is held then).
pub(crate) fn ctx_arg(ctx: *const coapio_context) -> Result<CtxRef, coapio_result> {
    if ctx.is_null() {
        return Err(fail(COAPIO_RESULT_NULL_PARAMETER, "ctx is NULL"));
    }
    if IN_PSK_LOOKUP.with(std::cell::Cell::get) {
        return Err(fail(
            COAPIO_RESULT_REENTRANT,
            "called from inside a PSK lookup callback",
        ));
    }
    // SAFETY: a live context from coapio_context_new (caller's contract).
    let inner = unsafe { &*ctx }.inner.clone();
    if inner.failed.load(Ordering::SeqCst) {
        return Err(failed());
    }
    Ok(CtxRef(inner))
}

/// Mode A: runs the context (I/O, timers, callbacks) until `coapio_context_stop` is called
/// or `timeout_ms` milliseconds have passed (`-1`: no limit). A stop requested before the
/// call makes it return at once.
#[no_mangle]
pub extern "C" fn coapio_context_run(ctx: *mut coapio_context, timeout_ms: i32) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let limit =
            (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        match inner.run_until(limit, true, || false) {
            Ok(()) => COAPIO_RESULT_OK,
            Err(e) => e,
        }
    })
}

/// Makes `coapio_context_run` return (now, or at once when it is next called). Safe to call
/// from any thread, and more than once.
#[no_mangle]
pub extern "C" fn coapio_context_stop(ctx: *const coapio_context) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        inner.stop.store(true, Ordering::SeqCst);
        inner.notify();
        COAPIO_RESULT_OK
    })
}

/// Wakes the context's loop: a running `coapio_context_run` comes round once, and in mode B
/// the descriptor becomes readable (call `coapio_context_process`). For an application
/// whose other threads leave work for the loop's thread. Safe to call from any thread.
#[no_mangle]
pub extern "C" fn coapio_context_wake(ctx: *const coapio_context) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        inner.notify();
        COAPIO_RESULT_OK
    })
}

/// Mode B: the one descriptor to watch for readability in the application's event loop; it
/// becomes readable when there is I/O or a deadline has passed. Then call
/// `coapio_context_process`. Returns -1 for a NULL or failed context, and on Windows, where
/// the thing to watch is a socket: see `coapio_context_get_socket`.
#[no_mangle]
pub extern "C" fn coapio_context_get_fd(ctx: *const coapio_context) -> i32 {
    let mut fd = -1;
    #[cfg(unix)]
    guard_void(|| {
        if let Ok(inner) = ctx_arg(ctx) {
            fd = inner.poller.as_raw_fd();
        }
    });
    #[cfg(windows)]
    let _ = (ctx, &mut fd);
    fd
}

/// Mode B, on every platform: what to watch for readability, as an integer wide enough for
/// a Windows `SOCKET`; `UINTPTR_MAX` (Windows' `INVALID_SOCKET`) for a NULL or failed
/// context. On Unix it is the descriptor `coapio_context_get_fd` returns. On Windows it is
/// the transport's socket (for `select`, `WSAPoll`, libuv's `uv_poll_init_socket`, GLib's
/// socket sources): it becomes readable when there is I/O or another thread woke the
/// context, but not when a deadline passes, so wait at most
/// `coapio_context_next_timeout_ms` there; never read from it yourself.
#[no_mangle]
pub extern "C" fn coapio_context_get_socket(ctx: *const coapio_context) -> usize {
    let mut source = usize::MAX;
    guard_void(|| {
        if let Ok(inner) = ctx_arg(ctx) {
            #[cfg(unix)]
            {
                source = inner.poller.as_raw_fd() as usize;
            }
            #[cfg(windows)]
            {
                let core = lock(&inner.core);
                source = core.transport.as_socket().as_raw_socket() as usize;
            }
        }
    });
    source
}

/// Mode B, for loops with their own timers: milliseconds until `coapio_context_process`
/// has timed work (rounded up), 0 if it is due, -1 if there is none (or ctx is NULL or
/// failed).
#[no_mangle]
pub extern "C" fn coapio_context_next_timeout_ms(ctx: *const coapio_context) -> i64 {
    let mut ms = -1;
    guard_void(|| {
        if let Ok(inner) = ctx_arg(ctx) {
            if let Some(at) = inner.next_deadline() {
                let d = at.saturating_duration_since(Instant::now());
                ms = d.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
            }
        }
    });
    ms
}

/// Mode B: does everything that is due (reads datagrams, fires timers, sends, calls
/// callbacks) and returns; never blocks.
#[no_mangle]
pub extern "C" fn coapio_context_process(ctx: *mut coapio_context) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        match inner.process() {
            Ok(()) => COAPIO_RESULT_OK,
            Err(e) => e,
        }
    })
}

/// Writes the local UDP port of the context's socket to `out` (not for simple6, which has a
/// socket per remote: `COAPIO_RESULT_NOT_FOUND`).
#[no_mangle]
pub extern "C" fn coapio_context_local_port(
    ctx: *const coapio_context,
    out: *mut u16,
) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        match inner.local {
            // SAFETY: out is non-NULL and writable (caller's contract).
            Some(a) => unsafe { *out = a.port() },
            None => {
                return fail(
                    COAPIO_RESULT_NOT_FOUND,
                    "this transport has no single local port",
                )
            }
        }
        COAPIO_RESULT_OK
    })
}

/// What a context has done since it was created, and what it holds now: counters that only
/// grow, kept always at the cost of an addition each. Filled in by `coapio_context_counters`;
/// a monitoring loop samples them and looks at the rates.
///
/// Set `size` to `sizeof(coapio_counters)` before the call: a later version of the
/// library with more counters then fills in only the ones this program knows, and an older
/// one says with `size` how many bytes it filled in.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct coapio_counters {
    /// In: the size of the caller's struct. Out: the bytes the library filled in.
    pub size: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes of the datagrams received.
    pub bytes_received: u64,
    /// Datagrams sent (retransmissions, ACKs and Resets included).
    pub datagrams_sent: u64,
    /// Bytes of the datagrams sent.
    pub bytes_sent: u64,
    /// Requests the application sent (one for a block-wise transfer).
    pub requests_sent: u64,
    /// Responses, notifications and group answers delivered to the application.
    pub responses_received: u64,
    /// Request messages received, duplicates not counted (each block of an upload counts).
    pub requests_received: u64,
    /// Answers the application gave that went out, notifications not counted.
    pub responses_sent: u64,
    /// Notifications sent to observers (the final answers that end observations included).
    pub notifications_sent: u64,
    /// Retransmissions of Confirmable messages.
    pub retransmissions: u64,
    /// Requests given up for want of a response.
    pub timeouts: u64,
    /// Duplicate messages received (answered again from the cache, or ignored).
    pub duplicates: u64,
    /// Datagrams that were not CoAP messages.
    pub malformed: u64,
    /// Messages turned away for lack of room (deduplication cache full, too many requests
    /// awaiting answers).
    pub no_room: u64,
    /// Observers of this context's resources, now.
    pub observers: u64,
    /// Requests of this context that have not ended, now (observations included).
    pub open_requests: u64,
}

/// All zero, with `size` set to this struct's size (for Rust callers).
impl Default for coapio_counters {
    fn default() -> Self {
        Self {
            size: size_of::<Self>() as u64,
            datagrams_received: 0,
            bytes_received: 0,
            datagrams_sent: 0,
            bytes_sent: 0,
            requests_sent: 0,
            responses_received: 0,
            requests_received: 0,
            responses_sent: 0,
            notifications_sent: 0,
            retransmissions: 0,
            timeouts: 0,
            duplicates: 0,
            malformed: 0,
            no_room: 0,
            observers: 0,
            open_requests: 0,
        }
    }
}

/// Writes the context's counters to `*out`, whose `size` the caller has set to
/// `sizeof(coapio_counters)` (`COAPIO_RESULT_INVALID_ARGUMENT` when it is too small to
/// hold even `size`). Callable from any thread and from callbacks.
#[no_mangle]
pub extern "C" fn coapio_context_counters(
    ctx: *const coapio_context,
    out: *mut coapio_counters,
) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        // SAFETY: out is non-NULL and points to a struct whose size the caller set.
        let room = unsafe { std::ptr::addr_of!((*out).size).read_unaligned() };
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        if room < size_of::<u64>() {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "set out->size to sizeof(coapio_counters)",
            );
        }
        let (n, stats) = {
            let core = lock(&inner.core);
            (core.ep.counters(), core.ep.stats())
        };
        let written = room.min(size_of::<coapio_counters>());
        let counters = coapio_counters {
            size: written as u64,
            datagrams_received: n.datagrams_received,
            bytes_received: n.bytes_received,
            datagrams_sent: n.datagrams_sent,
            bytes_sent: n.bytes_sent,
            requests_sent: n.requests_sent,
            responses_received: n.responses_received,
            requests_received: n.requests_received,
            responses_sent: n.responses_sent,
            notifications_sent: n.notifications_sent,
            retransmissions: n.retransmissions,
            timeouts: n.timeouts,
            duplicates: n.duplicates,
            malformed: n.malformed,
            no_room: n.no_room,
            observers: stats.observers as u64,
            open_requests: stats.open_requests as u64,
        };
        // SAFETY: out holds `room` writable bytes (caller's contract) and `written` is at most
        // that; the struct is all u64, so it has no padding and every byte copied is set.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::addr_of!(counters).cast::<u8>(),
                out.cast::<u8>(),
                written,
            );
        }
        COAPIO_RESULT_OK
    })
}
