//! The async facade: an [`Endpoint`] handle for sending requests and a [`Driver`] future that
//! does all the work, on whatever executor runs it.
//!
//! The driver owns the sans-IO core, the transport (wrapped in `async_io::Async` for
//! readiness) and one `async_io::Timer` set to the core's next deadline; it runs the server's
//! handlers too. Nothing here spawns a task or needs a particular runtime: run the driver with
//! `smol::spawn(driver).detach()`, `tokio::spawn(driver)`, `async_std::task::spawn(driver)` or
//! `async_io::block_on(driver)`.
//!
//! ```
//! # async_io::block_on(async {
//! use coapio::server::{get, Site};
//! use coapio::proto::Response;
//! use coapio::Endpoint;
//!
//! let site = Site::new().resource("/hello", get(|_req| async { Response::content("Hello, world!") }));
//! let (server, server_driver) = Endpoint::server("[::1]:0", site)?;
//! let (client, client_driver) = Endpoint::client()?;
//! let uri = format!("coap://[::1]:{}/hello", server.local_addr()?.port());
//! let drivers = futures::future::join(server_driver, client_driver);
//! let request = async {
//!     let response = client.get(&uri).await.unwrap();
//!     assert_eq!(response.payload, b"Hello, world!");
//!     server.shutdown();
//!     client.shutdown();
//! };
//! let (io_results, ()) = futures::future::join(drivers, request).await;
//! io_results.0?;
//! # std::io::Result::Ok(()) }).unwrap();
//! ```

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_io::{Async, Timer};
use futures::stream::{FuturesUnordered, StreamExt};
use log::debug;

use crate::error::RequestError;
use crate::message::uri::{Host, Uri};
use crate::message::{Code, OptionNumber};
use crate::proto::{self, Config, Event, IncomingId, Request, RequestId, Response};
use crate::server::{ServerRequest, Site};
use crate::transport::Transport;

/// Which transport an endpoint uses (see [`crate::transport`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// One dual-stack socket with PKTINFO and ICMP errors (Linux; the default there).
    Udp6,
    /// A connected socket per remote; client only (the default client elsewhere).
    Simple6,
    /// A server bound to one concrete address (the default server elsewhere).
    SimpleSocketServer,
}

impl TransportKind {
    /// The kind named by `COAPIO_TRANSPORT` (`udp6`, `simple6`, `simplesocketserver`), if set.
    fn from_env() -> Option<Self> {
        match std::env::var("COAPIO_TRANSPORT").ok()?.as_str() {
            "udp6" => Some(Self::Udp6),
            "simple6" => Some(Self::Simple6),
            "simplesocketserver" => Some(Self::SimpleSocketServer),
            other => {
                log::warn!(
                    "coapio: COAPIO_TRANSPORT={other:?} is not a transport; using the default"
                );
                None
            }
        }
    }

    fn default_for(server: bool) -> Self {
        if cfg!(target_os = "linux") {
            Self::Udp6
        } else if server {
            Self::SimpleSocketServer
        } else {
            Self::Simple6
        }
    }
}

/// Sets up an [`Endpoint`]: transport, bind address, configuration, resources.
#[derive(Debug)]
pub struct Builder {
    transport: Option<TransportKind>,
    custom: Option<Box<dyn Transport>>,
    bind: Option<SocketAddr>,
    config: Option<Config>,
    site: Option<Site>,
    reuse_port: bool,
    groups: Vec<(std::net::IpAddr, u32)>,
}

impl Builder {
    /// A client on the platform's default transport, with the default configuration.
    pub fn new() -> Self {
        Self {
            transport: None,
            custom: None,
            bind: None,
            config: None,
            site: None,
            reuse_port: false,
            groups: Vec::new(),
        }
    }

    /// Joins a multicast group on the interface with index `ifindex` (0: the system's
    /// choice) when the endpoint is built (udp6 only); see
    /// [`crate::transport::ALL_COAP_NODES`] and [`crate::transport::interface_index`].
    pub fn join_multicast(mut self, group: std::net::IpAddr, ifindex: u32) -> Self {
        self.groups.push((group, ifindex));
        self
    }

    /// Chooses the transport (else `COAPIO_TRANSPORT`, else the platform's default).
    pub fn transport(mut self, kind: TransportKind) -> Self {
        self.transport = Some(kind);
        self
    }

    /// Uses a transport of the caller's own (an in-memory one for tests, for instance).
    pub fn custom_transport(mut self, transport: Box<dyn Transport>) -> Self {
        self.custom = Some(transport);
        self
    }

    /// The address to bind (default `[::]:0`, or `[::]:5683` with a site).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// The protocol configuration. Its seed is replaced by one from the OS unless it is set
    /// (non-zero).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Serves these resources.
    pub fn site(mut self, site: Site) -> Self {
        self.site = Some(site);
        self
    }

    /// Sets `SO_REUSEPORT` (udp6), so that several endpoints can share the port.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Creates the endpoint and its driver.
    ///
    /// # Errors
    ///
    /// The transport's errors of binding; [`io::ErrorKind::InvalidInput`] for simple6 with a
    /// site (it cannot serve) and for simplesocketserver on an any-address.
    pub fn build(self) -> io::Result<(Endpoint, Driver)> {
        let server = self.site.is_some();
        let transport: Box<dyn Transport> = match self.custom {
            Some(t) => t,
            None => {
                let kind = self
                    .transport
                    .or_else(TransportKind::from_env)
                    .unwrap_or_else(|| TransportKind::default_for(server));
                let default_port = if server { 5683 } else { 0 };
                let bind = self
                    .bind
                    .unwrap_or_else(|| SocketAddr::from(([0u16; 8], default_port)));
                open_transport(kind, bind, server, self.reuse_port)?
            }
        };
        for (group, ifindex) in &self.groups {
            transport.join_multicast(*group, *ifindex).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot join {group} on interface {ifindex}: {e}"),
                )
            })?;
        }
        let mut config = self.config.unwrap_or_default();
        if config.seed == 0 {
            config.seed = os_seed();
        }
        let handle = Arc::new(HandleToken);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ep: proto::Endpoint::new(Arc::new(config)),
                slots: HashMap::new(),
                driver_waker: None,
                stopped: false,
                driver_gone: false,
            }),
        });
        let local = transport.local_addr().ok();
        let driver = Driver {
            shared: shared.clone(),
            handles: Arc::downgrade(&handle),
            io: Async::new(transport)?,
            timer: Timer::never(),
            site: self.site,
            handlers: FuturesUnordered::new(),
            out: Vec::with_capacity(2048),
            inbuf: vec![0; crate::io::RECV_BUF].into_boxed_slice(),
        };
        Ok((
            Endpoint {
                shared,
                _handle: handle,
                local,
            },
            driver,
        ))
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn open_transport(
    kind: TransportKind,
    bind: SocketAddr,
    server: bool,
    reuse_port: bool,
) -> io::Result<Box<dyn Transport>> {
    Ok(match kind {
        #[cfg(target_os = "linux")]
        TransportKind::Udp6 => {
            let options = crate::transport::Udp6Options { reuse_port };
            Box::new(crate::transport::Udp6::bind_with(bind, &options)?)
        }
        #[cfg(not(target_os = "linux"))]
        TransportKind::Udp6 => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the udp6 transport needs Linux; use simple6 or simplesocketserver",
            ))
        }
        TransportKind::Simple6 if server => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "simple6 is a client transport and cannot serve resources; use udp6 or simplesocketserver",
            ))
        }
        TransportKind::Simple6 => Box::new(crate::transport::Simple6::new()?),
        TransportKind::SimpleSocketServer => Box::new(crate::transport::SimpleServer::bind(bind)?),
    })
}

/// A seed from the OS's randomness (through the standard library's hash keys).
fn os_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x636f_6170_696f);
    h.finish() | 1
}

#[derive(Debug)]
struct HandleToken;

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    ep: proto::Endpoint,
    slots: HashMap<RequestId, Slot>,
    driver_waker: Option<Waker>,
    stopped: bool,
    driver_gone: bool,
}

#[derive(Debug, Default)]
struct Slot {
    waker: Option<Waker>,
    result: Option<Result<Response, RequestError>>,
    /// Notifications of an observation not yet taken.
    notifications: std::collections::VecDeque<Response>,
    /// Responses to a request sent to a multicast group, with their servers, not yet taken.
    group: std::collections::VecDeque<(SocketAddr, Response)>,
    /// The group request stopped collecting responses.
    group_done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn wake_driver(&mut self) {
        if let Some(w) = self.driver_waker.take() {
            w.wake();
        }
    }

    fn notify(&mut self, id: RequestId, response: Response) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.notifications.push_back(response);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    fn group_response(&mut self, id: RequestId, from: SocketAddr, response: Response) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.group.push_back((from, response));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    fn group_done(&mut self, id: RequestId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.group_done = true;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    fn complete(&mut self, id: RequestId, result: Result<Response, RequestError>) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.result = Some(result);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }
}

/// A handle for sending requests through a running [`Driver`]; cheap to clone.
///
/// Requests are futures ([`ResponseFuture`]); dropping one cancels the exchange.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
    _handle: Arc<HandleToken>,
    local: Option<SocketAddr>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A client on the platform's default transport (udp6 on Linux), bound to an ephemeral
    /// port. Run the returned driver on any executor.
    ///
    /// # Errors
    ///
    /// The transport's errors of binding.
    pub fn client() -> io::Result<(Self, Driver)> {
        Builder::new().build()
    }

    /// A server for `site` bound to `bind` (`"[::]:5683"`, `"127.0.0.1:0"`, …), which is
    /// also a client. Run the returned driver on any executor.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] when `bind` is not a socket address; the transport's
    /// errors of binding.
    pub fn server(bind: &str, site: Site) -> io::Result<(Self, Driver)> {
        let addr: SocketAddr = bind.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{bind:?} is not a socket address: {e}"),
            )
        })?;
        Builder::new().bind(addr).site(site).build()
    }

    /// A [`Builder`] for other transports and configurations.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The local address of the transport.
    ///
    /// # Errors
    ///
    /// For transports without one address of their own (simple6).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this transport has no single local address",
            )
        })
    }

    /// Sends `request` to the resource named by `uri` (`coap://host:port/path?query`): the
    /// URI gives the destination and the Uri-* options, `request` the method, other options,
    /// payload and message type. Host names are resolved by the system (this blocks while it
    /// does; IP literals do not).
    pub fn request(&self, uri: &str, mut request: Request) -> ResponseFuture {
        match resolve(uri) {
            Ok((remote, parsed)) => {
                for n in [
                    OptionNumber::URI_HOST,
                    OptionNumber::URI_PORT,
                    OptionNumber::URI_PATH,
                    OptionNumber::URI_QUERY,
                ] {
                    request.options.remove(n);
                }
                parsed.to_options_for(remote, &mut request.options);
                self.send(remote, request)
            }
            Err(e) => ResponseFuture::failed(&self.shared, e),
        }
    }

    /// Sends `request` (with its Uri-Path and Uri-Query options as they are) to `remote`.
    pub fn send(&self, remote: SocketAddr, request: Request) -> ResponseFuture {
        let mut st = self.shared.lock();
        if st.stopped || st.driver_gone {
            drop(st);
            return ResponseFuture::failed(&self.shared, RequestError::Stopped);
        }
        match st.ep.request(Instant::now(), remote, request) {
            Ok(id) => {
                st.slots.insert(id, Slot::default());
                st.wake_driver();
                ResponseFuture {
                    shared: self.shared.clone(),
                    state: FutState::Waiting(id),
                }
            }
            Err(e) => {
                drop(st);
                ResponseFuture::failed(&self.shared, RequestError::Refused(e))
            }
        }
    }

    /// Observes `uri` (GET with Observe 0, RFC 7641): a stream of the resource's
    /// representations, the first response included, until the server ends the observation
    /// (a final response, the stream's last item) or the request fails (an error, then the
    /// end). Dropping the stream cancels the observation.
    pub fn observe(&self, uri: &str) -> Observation {
        Observation {
            inner: self.request(uri, Request::new(Code::GET).observe()),
            ended: false,
        }
    }

    /// Sends `request` to the multicast group of `uri` (such as
    /// `coap://[ff02::fd%eth0]/.well-known/core`; RFC 7252 §8.2): a stream of every server's
    /// answer, with the server's address, until `Config::multicast_timeout` (or the request's
    /// own timeout) passes; then the stream ends. Dropping it stops collecting.
    pub fn multicast(&self, uri: &str, request: Request) -> GroupResponses {
        GroupResponses {
            inner: self.request(uri, request),
            ended: false,
        }
    }

    /// GETs `uri`.
    pub fn get(&self, uri: &str) -> ResponseFuture {
        self.request(uri, Request::new(Code::GET))
    }

    /// PUTs `payload` to `uri`.
    pub fn put(&self, uri: &str, payload: impl Into<Vec<u8>>) -> ResponseFuture {
        self.request(uri, Request::new(Code::PUT).with_payload(payload))
    }

    /// POSTs `payload` to `uri`.
    pub fn post(&self, uri: &str, payload: impl Into<Vec<u8>>) -> ResponseFuture {
        self.request(uri, Request::new(Code::POST).with_payload(payload))
    }

    /// DELETEs `uri`.
    pub fn delete(&self, uri: &str) -> ResponseFuture {
        self.request(uri, Request::new(Code::DELETE))
    }

    /// Tells the observers of `path` (RFC 7641) that its representation changed: the
    /// resource's handler runs again for each observer and its answer goes out as a
    /// notification. Returns how many observers there are. The resource must be marked
    /// observable ([`crate::server::Resource::obs`]).
    pub fn notify(&self, path: &str) -> usize {
        let mut st = self.shared.lock();
        let n = st.ep.notify(Instant::now(), path);
        st.wake_driver();
        n
    }

    /// As [`notify`](Self::notify), but every observer gets this change as a Confirmable
    /// notification (it must acknowledge it, or it is removed).
    pub fn notify_confirmable(&self, path: &str) -> usize {
        let mut st = self.shared.lock();
        let n = st
            .ep
            .notify_as(Instant::now(), path, Some(crate::message::Type::Con));
        st.wake_driver();
        n
    }

    /// Stops the driver: it returns `Ok(())` at its next poll, and open requests fail with
    /// [`RequestError::Stopped`].
    pub fn shutdown(&self) {
        let mut st = self.shared.lock();
        st.stopped = true;
        st.wake_driver();
    }
}

/// The destination and parsed form of a request URI.
pub(crate) fn resolve(uri: &str) -> Result<(SocketAddr, Uri), RequestError> {
    let parsed = Uri::parse(uri).map_err(RequestError::InvalidUri)?;
    if parsed.scheme != crate::message::uri::Scheme::Coap {
        return Err(RequestError::Resolve(format!(
            "{}: coapio speaks plain coap:// only (no DTLS yet)",
            parsed.scheme.as_str()
        )));
    }
    let remote = match &parsed.host {
        Host::Ip {
            zone: Some(zone), ..
        } if zone.parse::<u32>().is_err() => {
            let index = crate::transport::interface_index(zone).ok_or_else(|| {
                RequestError::Resolve(format!("no network interface named {zone:?}"))
            })?;
            parsed.socket_addr().map(|a| match a {
                SocketAddr::V6(mut v6) => {
                    v6.set_scope_id(index);
                    SocketAddr::V6(v6)
                }
                v4 => v4,
            })
        }
        Host::Ip { .. } => parsed.socket_addr(),
        Host::Name(name) => (name.as_str(), parsed.port)
            .to_socket_addrs()
            .map_err(|e| RequestError::Resolve(format!("{name}: {e}")))?
            .next(),
    };
    let remote = remote.ok_or_else(|| RequestError::Resolve(format!("{uri}: no address")))?;
    Ok((remote, parsed))
}

#[derive(Debug)]
enum FutState {
    Failed(Option<RequestError>),
    Waiting(RequestId),
    Done,
}

/// The response to a request, as a future. Dropping it before it completes cancels the
/// request: nothing more is sent for it.
#[must_use = "a request is cancelled when its future is dropped"]
#[derive(Debug)]
pub struct ResponseFuture {
    shared: Arc<Shared>,
    state: FutState,
}

impl ResponseFuture {
    fn failed(shared: &Arc<Shared>, e: RequestError) -> Self {
        Self {
            shared: shared.clone(),
            state: FutState::Failed(Some(e)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response, RequestError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            FutState::Failed(e) => {
                let e = e.take().unwrap_or(RequestError::Stopped);
                self.state = FutState::Done;
                Poll::Ready(Err(e))
            }
            FutState::Done => Poll::Ready(Err(RequestError::Stopped)),
            FutState::Waiting(id) => {
                let id = *id;
                let mut st = self.shared.lock();
                let stopped = st.stopped || st.driver_gone;
                let ready = match st.slots.get_mut(&id) {
                    Some(slot) => match slot.result.take() {
                        Some(r) => Some(r),
                        // A request to a multicast group: the first server's answer is the
                        // answer, and the request ends with the future.
                        None if !slot.group.is_empty() => {
                            let first = slot.group.pop_front().map(|(_, r)| Ok(r));
                            st.ep.cancel(Instant::now(), id);
                            st.wake_driver();
                            first
                        }
                        None if slot.group_done => Some(Err(RequestError::Timeout)),
                        // A request made with Observe: its first notification is the answer,
                        // and the observation ends with the future.
                        None if !slot.notifications.is_empty() => {
                            let first = slot.notifications.pop_front().map(Ok);
                            st.ep.cancel(Instant::now(), id);
                            st.wake_driver();
                            first
                        }
                        None if stopped => Some(Err(RequestError::Stopped)),
                        None => {
                            slot.waker = Some(cx.waker().clone());
                            None
                        }
                    },
                    None => Some(Err(RequestError::Stopped)),
                };
                match ready {
                    Some(r) => {
                        st.slots.remove(&id);
                        drop(st);
                        self.state = FutState::Done;
                        Poll::Ready(r)
                    }
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if let FutState::Waiting(id) = self.state {
            let mut st = self.shared.lock();
            st.slots.remove(&id);
            st.ep.cancel(Instant::now(), id);
            st.wake_driver();
            debug!("coapio: request {id:?} dropped before its response; cancelled");
        }
    }
}

/// The notifications of an observation, as a stream (see [`Endpoint::observe`]).
#[must_use = "an observation is cancelled when its stream is dropped"]
#[derive(Debug)]
pub struct Observation {
    inner: ResponseFuture,
    ended: bool,
}

impl futures::Stream for Observation {
    type Item = Result<Response, RequestError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let id = match &mut this.inner.state {
            FutState::Waiting(id) => *id,
            _ => {
                this.ended = true;
                return Pin::new(&mut this.inner).poll(cx).map(Some);
            }
        };
        let mut st = this.inner.shared.lock();
        let stopped = st.stopped || st.driver_gone;
        let Some(slot) = st.slots.get_mut(&id) else {
            drop(st);
            this.ended = true;
            this.inner.state = FutState::Done;
            return Poll::Ready(Some(Err(RequestError::Stopped)));
        };
        if let Some(n) = slot.notifications.pop_front() {
            return Poll::Ready(Some(Ok(n)));
        }
        if let Some(last) = slot.result.take() {
            st.slots.remove(&id);
            drop(st);
            this.ended = true;
            this.inner.state = FutState::Done;
            return Poll::Ready(Some(last));
        }
        if stopped {
            drop(st);
            this.ended = true;
            this.inner.state = FutState::Done;
            return Poll::Ready(Some(Err(RequestError::Stopped)));
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The answers to a request sent to a multicast group, as a stream of the servers' addresses
/// and responses (see [`Endpoint::multicast`]).
#[must_use = "a group request stops collecting answers when its stream is dropped"]
#[derive(Debug)]
pub struct GroupResponses {
    inner: ResponseFuture,
    ended: bool,
}

impl futures::Stream for GroupResponses {
    type Item = Result<(SocketAddr, Response), RequestError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let id = match &mut this.inner.state {
            FutState::Waiting(id) => *id,
            _ => {
                this.ended = true;
                return Pin::new(&mut this.inner).poll(cx).map(|r| r.err().map(Err));
            }
        };
        let mut st = this.inner.shared.lock();
        let stopped = st.stopped || st.driver_gone;
        let finished = |this: &mut Self| {
            this.ended = true;
            this.inner.state = FutState::Done;
        };
        let Some(slot) = st.slots.get_mut(&id) else {
            drop(st);
            finished(this);
            return Poll::Ready(None);
        };
        if let Some(answer) = slot.group.pop_front() {
            return Poll::Ready(Some(Ok(answer)));
        }
        if slot.group_done {
            st.slots.remove(&id);
            drop(st);
            finished(this);
            return Poll::Ready(None);
        }
        if let Some(Err(e)) = slot.result.take() {
            st.slots.remove(&id);
            drop(st);
            finished(this);
            return Poll::Ready(Some(Err(e)));
        }
        if stopped {
            drop(st);
            finished(this);
            return Poll::Ready(Some(Err(RequestError::Stopped)));
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = (IncomingId, Response)> + Send>>;

/// The future that runs an [`Endpoint`]: all I/O, timers and request handlers happen while it
/// is polled. It completes after [`Endpoint::shutdown`], or for a client-only endpoint once
/// every handle is dropped and no request is open; it fails only on an error of the
/// transport's readiness.
#[must_use = "the endpoint does nothing unless its driver is polled"]
pub struct Driver {
    shared: Arc<Shared>,
    handles: Weak<HandleToken>,
    io: Async<Box<dyn Transport>>,
    timer: Timer,
    site: Option<Site>,
    handlers: FuturesUnordered<HandlerFuture>,
    out: Vec<u8>,
    inbuf: Box<[u8]>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("transport", self.io.get_ref())
            .field("handlers", &self.handlers.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.driver_gone = true;
        for slot in st.slots.values_mut() {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }
}

impl Future for Driver {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let mut answered = Vec::new();
            while let Poll::Ready(Some(done)) = this.handlers.poll_next_unpin(cx) {
                answered.push(done);
            }
            let now = Instant::now();
            let mut st = this.shared.lock();
            st.driver_waker = Some(cx.waker().clone());
            for (id, response) in answered {
                if let Err(e) = st.ep.respond(now, id, response) {
                    debug!("coapio: a handler's response could not be sent: {e}");
                }
            }
            let more = crate::io::process(
                &mut st.ep,
                &**this.io.get_ref(),
                now,
                &mut this.out,
                &mut this.inbuf,
            );
            let mut spawned = false;
            while let Some(event) = st.ep.poll_event() {
                match event {
                    Event::Response { id, response } => st.complete(id, Ok(response)),
                    Event::Notification { id, response } => st.notify(id, response),
                    Event::GroupResponse { id, from, response } => {
                        st.group_response(id, from, response)
                    }
                    Event::GroupDone { id } => st.group_done(id),
                    Event::Failed { id, error } => st.complete(id, Err(error)),
                    Event::Request { id, meta, request } => match &this.site {
                        Some(site) => {
                            let fut = site.handle(ServerRequest::new(request, meta));
                            this.handlers.push(Box::pin(async move { (id, fut.await) }));
                            spawned = true;
                        }
                        None => {
                            let _ = st.ep.respond(now, id, Response::new(Code::NOT_FOUND));
                        }
                    },
                }
            }
            crate::io::flush(&mut st.ep, &**this.io.get_ref(), now, &mut this.out);
            if st.stopped {
                debug!("coapio: endpoint shut down");
                for slot in st.slots.values_mut() {
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            let idle_client = this.site.is_none()
                && this.handles.strong_count() == 0
                && st.slots.is_empty()
                && st.ep.stats().open_requests == 0;
            if idle_client {
                return Poll::Ready(Ok(()));
            }
            let deadline = st.ep.poll_timeout();
            drop(st);
            if spawned || more {
                continue;
            }
            match this.io.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            match deadline {
                Some(at) => {
                    this.timer.set_at(at);
                    if Pin::new(&mut this.timer).poll(cx).is_ready() {
                        continue;
                    }
                }
                None => this.timer = Timer::never(),
            }
            return Poll::Pending;
        }
    }
}
