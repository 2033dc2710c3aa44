//! Serving resources: a [`Site`] maps paths to [`Resource`]s, a resource maps methods to
//! async handlers, and the built-in `/.well-known/core` lists them in the CoRE Link Format
//! ([RFC 6690](https://www.rfc-editor.org/rfc/rfc6690)).
//!
//! This module does no I/O. [`Site::handle`] turns one [`ServerRequest`] into a future of
//! the [`Response`](crate::proto::Response); the endpoint's driver calls it for every
//! request it receives and runs the futures, so handlers may await timers, channels or
//! other requests. A handler returns anything that is [`IntoResponse`]: a response, a bare
//! [`Code`](crate::message::Code), or a `Result` whose error becomes
//! `5.00 Internal Server Error`. Unknown paths are answered `4.04 Not Found`, methods
//! without a handler `4.05 Method Not Allowed`, and a handler that panics
//! `5.00 Internal Server Error` without any detail; a panic never leaves
//! [`Site::handle`].
//!
//! ```
//! use coapio::message::Code;
//! use coapio::proto::Response;
//! use coapio::server::{get, Resource, ServerRequest, Site};
//!
//! let site = Site::new()
//!     .resource("/hello", get(|_req| async { Response::content("Hello, world!") }))
//!     .resource(
//!         "/sensors/temp",
//!         Resource::new()
//!             .get(|_req| async { Response::content("22.5") })
//!             .rt("temperature-c")
//!             .if_("sensor")
//!             .obs(),
//!     )
//!     .subtree("/files", get(|req: ServerRequest| async move {
//!         match req.path_segments().get(1).map(String::as_str) {
//!             Some("readme") => Ok(Response::content("read me")),
//!             Some(_) => Ok(Response::new(Code::NOT_FOUND)),
//!             None => Err("listing files is not implemented"),
//!         }
//!     }));
//! ```
//!
//! See [`Site`] for the routing rules and the resource directory.

mod link_format;
mod request;
mod resource;
mod site;

pub use request::ServerRequest;
pub use resource::{delete, get, post, put, IntoResponse, Resource};
pub use site::Site;
