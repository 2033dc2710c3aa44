//! The sans-IO CoAP protocol core: the message layer (RFC 7252 §4) and request/response
//! matching (§5.3) in one [`Endpoint`] state machine.
//!
//! An [`Endpoint`] owns message IDs per remote, the retransmission of Confirmable messages with
//! randomized exponential back-off, deduplication of received messages with replay of the
//! stored answer, tokens, NSTART, piggybacked and separate responses, and the rules for
//! malformed input. It never touches a socket, a thread or the clock: the caller passes `now`
//! into every call, and randomness comes from [`Config::seed`], but for the secret key of
//! its Echo values (RFC 9175), which comes from the OS. Its behaviour is
//! tested on a simulated lossy network in `src/proto/tests/`.

#![forbid(unsafe_code)]

mod blockwise;
mod config;
mod dedup;
mod echo;
mod endpoint;
mod error;
mod ids;
mod mids;
mod observers;
mod rng;
mod timers;
mod types;

pub(crate) use ids::IdMap;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use endpoint::{Counters, Endpoint, PersistHook, Stats};
pub use types::{Event, IncomingId, Received, Request, RequestId, Response, SecurityId};

pub use crate::net::{RecvMeta, Transmit, TransportError, TransportErrorKind};
pub use error::{Error, Failure};
