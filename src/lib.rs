//! coapio: CoAP ([RFC 7252](https://www.rfc-editor.org/rfc/rfc7252)) for any event loop.
//!
//! A server and a client on any executor (smol, async-std, tokio, or none: `block_on`):
//!
//! ```
//! use coapio::server::{get, Site};
//! use coapio::{Endpoint, Response};
//!
//! # fn main() -> Result<(), coapio::Error> {
//! let site = Site::new().resource("/hello", get(|_req| async { Response::content("Hello, world!") }));
//! let (server, driver) = Endpoint::server("[::1]:0", site)?;
//! // A server's driver must run: spawn it on your executor (smol::spawn(driver).detach(),
//! // tokio::spawn(driver), …) or give it a thread.
//! std::thread::spawn(move || async_io::block_on(driver));
//!
//! // A client needs no driver: while none runs, its requests drive it.
//! let (client, _driver) = Endpoint::client()?;
//! let uri = format!("coap://[::1]:{}/hello", server.local_addr()?.port());
//! let response = async_io::block_on(client.get(&uri))?;
//! assert_eq!(response.payload, b"Hello, world!");
//! server.shutdown();
//! # Ok(()) }
//! ```
//!
//! Where to go from here:
//!
//! - **Requests**: [`Endpoint::get`] and its siblings give a [`RequestBuilder`] (timeout,
//!   message type, options, payload), a future of the [`Response`];
//!   [`Endpoint::observe`] an [`Observation`] stream; [`Endpoint::multicast`] every
//!   server's answer. Every failure is an [`Error`] that says where and why.
//! - **Serving**: a [`server::Site`] of [`server::Resource`]s, each a set of async handlers;
//!   [`Endpoint::notify`] tells observers of a change, from anywhere, handlers included
//!   ([`server::ServerRequest::endpoint`]).
//! - **Setting up**: [`Builder`] for transports (udp6, simple6, simplesocketserver),
//!   multicast groups, DTLS (`dtls` feature) and OSCORE (`oscore` feature), timeouts.
//! - **Watching**: [`Endpoint::counters`] and [`Endpoint::stats`]; the `log` crate's
//!   `debug` level shows retransmissions and give-ups, `trace` every datagram.
//! - **C and foreign event loops**: the `capi` feature (module `ffi`, header
//!   `include/coapio.h`).
//! - **No I/O at all**: [`proto::Endpoint`], below.
//!
//! # Threads and re-entrancy
//!
//! [`Endpoint`] is `Clone + Send + Sync`; every method may be called from any thread and from
//! inside handlers and their futures (no lock is held while user code runs), and none
//! blocks on the endpoint's work. Request futures and streams are `Send` and `'static`
//! ([`RequestBuilder::send`] names the type). Host names are resolved on the `blocking`
//! crate's thread pool, never on the executor's thread. Handlers run on whichever thread
//! polls the [`Driver`] (or, for a driverless client, a waiting request future).
//!
//! # Layers
//!
//! ```text
//!   Rust on any executor                         C programs, foreign event loops
//!   Endpoint + Driver (async-io readiness)       ffi (feature "capi"): run, or fd + process
//!                     └──────────────┬──────────────┘
//!                                    ▼
//!   transport   udp6 · simple6 · simplesocketserver   sync, non-blocking, one fd each
//!                                    │  datagrams, ICMP errors
//!                                    ▼
//!   proto::Endpoint   sans-IO CoAP: message layer, tokens, block-wise, observe
//!                                    │  now, datagrams in; transmits, events, deadline out
//!                                    ▼
//!   message     RFC 7252 codec: header, options, codes, URIs         pure functions
//! ```
//!
//! The two lowest layers are pure: they never touch a socket, a thread, the clock or OS
//! randomness. The caller passes the time into every call, and the random number generator is
//! seeded from the configuration, so every protocol behaviour can be replayed exactly.
//!
//! # Sending a request and serving it, by hand (sans-IO)
//!
//! ```
//! use std::time::Instant;
//! use coapio::message::Code;
//! use coapio::proto::{Config, Endpoint, Event, RecvMeta, Request, Response};
//!
//! let now = Instant::now();
//! let (client_addr, server_addr) = ("[::1]:40000".parse().unwrap(), "[::1]:5683".parse().unwrap());
//! let mut client = Endpoint::new(Config::default().with_seed(1).into());
//! let mut server = Endpoint::new(Config::default().with_seed(2).into());
//!
//! let id = client.request(now, server_addr, Request::get("/hello")).unwrap();
//! let mut buf = Vec::new();
//! let t = client.poll_transmit(now, &mut buf).unwrap();       // the CON request
//! server.handle_datagram(now, &RecvMeta::new(client_addr), &buf[..t.size]);
//! let Some(Event::Request { id: incoming, request, .. }) = server.poll_event() else { panic!() };
//! assert_eq!(request.path(), "/hello");
//! server.respond(now, incoming, Response::content("Hello, world!")).unwrap();
//!
//! buf.clear();
//! let t = server.poll_transmit(now, &mut buf).unwrap();       // the piggybacked ACK
//! client.handle_datagram(now, &RecvMeta::new(server_addr), &buf[..t.size]);
//! let Some(Event::Response { id: done, response }) = client.poll_event() else { panic!() };
//! assert_eq!((done, response.code), (id, Code::CONTENT));
//! assert_eq!(response.payload, b"Hello, world!");
//! ```
//!
//! # Driving I/O and timers
//!
//! After any call into a [`proto::Endpoint`], the caller sends what
//! [`proto::Endpoint::poll_transmit`] hands out, takes the events of
//! [`proto::Endpoint::poll_event`], and arranges to call
//! [`proto::Endpoint::handle_timeout`] at [`proto::Endpoint::poll_timeout`]. [`Endpoint`]
//! and its [`Driver`] do this on a [`transport`] for you, on any executor (see
//! [`Endpoint`]'s example); the C ABI does it in `coapio_context_run` or, inside a foreign
//! event loop, in `coapio_context_process` when its one file descriptor is readable. A server's
//! [`Driver`] must run on an executor; a client's request futures drive the endpoint
//! themselves while no driver runs.
//!
//! # Implementation
//!
//! The async facade gets readiness from `async-io`'s reactor, which runs on the thread that
//! polls it under `async_io::block_on` and on a thread of its own ("async-io") otherwise; this
//! is what lets the same driver run under smol, async-std, tokio or plain `block_on`. The C
//! ABI does not use that reactor (its descriptor cannot be exported): it has a
//! `polling::Poller` of its own with the socket and a timerfd in it.

#![warn(missing_docs)]

#[cfg(feature = "dtls")]
pub mod dtls;
mod endpoint;
mod error;
#[cfg(feature = "capi")]
pub mod ffi;
pub mod message;
pub mod net;
/// OSCORE (RFC 8613): end-to-end protection of requests and responses, sans-IO.
#[cfg(feature = "oscore")]
pub mod oscore;
pub mod proto;
pub mod server;
mod step;
pub mod transport;

pub use endpoint::{
    Builder, Driver, Endpoint, GroupResponses, Observation, RequestBuilder, ResponseFuture,
    TransportKind,
};
pub use error::{Error, Report};
pub use message::{Code, ContentFormat, OptionNumber, Options, Type};
pub use proto::{Request, Response};
