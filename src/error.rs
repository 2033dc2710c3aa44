//! Errors: [`Error`] for calls that cannot be carried out, [`RequestError`] for requests that
//! ended without a response.

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
    /// No unused token could be found for this remote (tokens too short for the number of
    /// open requests: raise `Config::token_length`).
    #[error("no unused token of the configured length is left for this remote; use longer tokens")]
    NoToken,
}

/// Why a request ended without a response.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
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
    /// The request URI could not be parsed.
    #[error("invalid URI: {0}")]
    InvalidUri(#[from] crate::message::uri::UriError),
    /// The URI's host could not be resolved to an address, or its scheme is not supported.
    #[error("cannot resolve the destination: {0}")]
    Resolve(String),
    /// The endpoint refused to send the request (see [`enum@Error`]).
    #[error("request refused: {0}")]
    Refused(#[from] Error),
    /// The endpoint was shut down, or its driver dropped, before the response came.
    #[error("the endpoint was shut down before the response came")]
    Stopped,
}
