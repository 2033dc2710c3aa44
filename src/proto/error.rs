//! The protocol core's own errors: [`Error`] for calls into an [`Endpoint`](super::Endpoint) that cannot
//! be carried out, [`Failure`] for requests that ended without a response. The async facade
//! and the C ABI wrap them ([`Error`](crate::Error) adds what only they can produce: URIs,
//! name resolution, a stopped driver).

use thiserror::Error;

use crate::message::EncodeError;
use crate::net::TransportErrorKind;

/// Why a call into an endpoint was refused. Nothing changed in the endpoint.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request ID names no open request (it completed, failed or was cancelled).
    #[error("no open request has this ID (it has completed, failed or been cancelled)")]
    UnknownRequest,
    /// The incoming-request ID names no request that awaits an answer (it was answered
    /// already, or it was never handed out by this endpoint).
    #[error("no received request with this ID awaits an answer (answered already?)")]
    UnknownExchange,
    /// A request's code is not a method, or a response's code is not a response code.
    #[error("code {0} cannot be used here: requests need a method (0.01-0.31), responses a class 2, 4 or 5 code")]
    WrongCode(crate::message::Code),
    /// The message cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Too many requests already wait for this remote (see `Config::max_queued_per_remote`).
    #[error("{0} requests already wait for this remote; wait for some to finish")]
    QueueFull(usize),
    /// A request's payload is larger than `Config::max_body_size`, or than block-wise
    /// transfer can number (2^20 blocks).
    #[error("the payload of {len} bytes is larger than the {max} bytes a request may carry")]
    BodyTooLarge {
        /// The payload's length.
        len: usize,
        /// The most it may be.
        max: usize,
    },
    /// No unused token could be found for this remote (tokens too short for the number of
    /// open requests: raise `Config::token_length`).
    #[error("no unused token of the configured length is left for this remote; use longer tokens")]
    NoToken,
    /// The request names an OSCORE security context this endpoint does not have (or the
    /// library was built without the `oscore` feature).
    #[error("no OSCORE security context {0:?} in this endpoint")]
    NoSecurityContext(super::SecurityId),
    /// A request to a multicast group cannot be protected with OSCORE (Group OSCORE is not
    /// implemented).
    #[error(
        "OSCORE cannot protect a request to a multicast group (Group OSCORE is not implemented)"
    )]
    OscoreGroup,
    /// OSCORE could not protect the message (RFC 8613).
    #[cfg(feature = "oscore")]
    #[error("OSCORE: {0}")]
    Oscore(#[from] crate::oscore::OscoreError),
}

/// Why a request of the core ended without a response ([`Event::Failed`](super::Event::Failed)).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No response came in time: all retransmissions of a Confirmable request went
    /// unacknowledged, or the response to a Non-confirmable or acknowledged request did not
    /// come before its deadline.
    #[error("request timed out")]
    Timeout,
    /// The server answered with a Reset: it could not process the request.
    #[error("request was reset by the server")]
    Reset,
    /// The network reported an error for the remote (an ICMP error, for instance).
    #[error("network error: {0}")]
    Transport(TransportErrorKind),
    /// The response could not be accepted (for instance, it had an unrecognized critical
    /// option).
    #[error("bad response: {0}")]
    BadResponse(&'static str),
    /// The server answered an OSCORE-protected request without OSCORE (an error such as 4.01
    /// "Security context not found" or "Replay detected", which anybody on the path could
    /// have sent); the code is as received.
    #[error("the server answered {0} without OSCORE protection")]
    Unprotected(crate::message::Code),
    /// The endpoint refused to send a request it needed (the next block of a transfer).
    #[error("the endpoint refused a request the transfer needed")]
    Refused(#[from] Error),
}
