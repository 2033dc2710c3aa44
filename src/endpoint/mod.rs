//! The async facade: an [`Endpoint`] handle for sending requests and a [`Driver`] future that
//! does all the work, on whatever executor runs it.
//!
//! The endpoint's *engine* owns the transport (wrapped in `async_io::Async` for readiness),
//! one `async_io::Timer` set to the core's next deadline, and the server's handlers; one
//! bounded step of it receives datagrams, fires timers, runs handlers and sends. Nothing here
//! spawns a task or needs a particular runtime.
//!
//! # Who drives
//!
//! - **A server runs its [`Driver`]**: `smol::spawn(driver).detach()`, `tokio::spawn(driver)`,
//!   `async_std::task::spawn(driver)`, `async_io::block_on(driver)` or a thread of its own.
//!   While the driver is polled it does all the work, and every waiting future only waits.
//! - **A client needs no driver**: while no driver is attached (never polled, dropped, or
//!   ended), every waiting [`ResponseFuture`], [`Observation`] and [`GroupResponses`] runs
//!   the engine itself when polled, as `async-net` sockets need no spawned task. Only one
//!   party steps the engine at a time (a `try_lock`; the others just wait), and the engine
//!   registers its readiness, timer and handler wake-ups with a waker of its own that wakes
//!   the driver if one is attached, else every waiting future, so no wake-up is lost when
//!   the future that registered it completes. Many concurrent requests are cheaper with a
//!   driver (one task woken instead of all).
//! - A server's driver dropped before [`Endpoint::shutdown`] logs a warning: its resources
//!   are served only while one of its own requests waits.
//!
//! # Locks and user code
//!
//! No lock is held while user code runs (handlers, their futures, `Site` link-format
//! callbacks, wakers), so every method of the handle may be called from anywhere: a
//! handler may `notify` the observers of its own resource before its `async` block, send
//! requests, or shut the endpoint down.
//!
//! # Bounds
//!
//! An [`Observation`] keeps at most 4 notifications its consumer has not taken, dropping the
//! oldest (the newest is what matters); [`GroupResponses`] keeps at most 256 answers and
//! drops and counts the rest. A handler's future is dropped when its exchange can no longer
//! be answered (EXCHANGE_LIFETIME for a Confirmable request, NON_LIFETIME for a
//! Non-confirmable one) or after [`Builder::handler_timeout`]. A step of the engine yields to
//! the executor after a budget of 128 datagrams and events (it wakes itself and returns
//! `Pending`), so a flood cannot starve the executor's other tasks.
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
//!
//! The module's files: `builder.rs` (choosing and opening the transport), `handle.rs` (the
//! [`Endpoint`] handle), `shared.rs` (the state the handle, the futures and the driver
//! share), `futures.rs` (responses, observations, group answers) and `driver.rs` (the
//! [`Driver`]).

mod builder;
mod driver;
mod futures;
mod handle;
mod request;
mod shared;

#[cfg(feature = "capi")]
pub(crate) use builder::open_transport;
pub use builder::{Builder, TransportKind};
pub use driver::Driver;
pub use futures::{GroupResponses, Observation, ResponseFuture};
pub use handle::Endpoint;
pub(crate) use handle::EndpointRef;
#[cfg(feature = "capi")]
pub(crate) use handle::{oscore_for, resolve};
pub use request::RequestBuilder;
