//! Errors of the async facade: [`RequestError`] for requests that ended without a response —
//! the core's [`Failure`]s, and what only the facade can produce (a bad URI, a name that does
//! not resolve, a stopped endpoint). [`Error`] (calls that cannot be carried out) is the
//! core's.

use crate::net::TransportErrorKind;
pub use crate::proto::Error;
use crate::proto::Failure;

/// Why a request ended without a response.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
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
    /// The server answered an OSCORE-protected request without OSCORE protection (an error
    /// such as 4.01 "Replay detected", which anyone on the path could have sent).
    #[error("the server answered {0} without OSCORE protection")]
    Unprotected(crate::message::Code),
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

impl From<Failure> for RequestError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Timeout => Self::Timeout,
            Failure::Reset => Self::Reset,
            Failure::Transport(kind) => Self::Transport(kind),
            Failure::BadResponse(why) => Self::BadResponse(why),
            Failure::Unprotected(code) => Self::Unprotected(code),
            Failure::Refused(e) => Self::Refused(e),
        }
    }
}

/// Errors cross threads (and `anyhow`, `Box<dyn Error + Send + Sync>`).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<RequestError>();
    send_sync::<Error>();
};
