//! [`Error`]: the one error a user of the async facade handles — a request that ended
//! without a response, a URI or name that does not lead anywhere, an endpoint that could not
//! be opened or was stopped. The sans-IO core's own errors ([`proto::Error`],
//! [`proto::Failure`](crate::proto::Failure)) stay in `proto`; here they become a variant
//! that says where (the remote) and, for timeouts, after how long.
//!
//! Each variant's text says what went wrong at this level; the cause, when there is one (an
//! [`io::Error`] of the resolver or the socket, a [`UriError`], the core's refusal), is its
//! [`source`](std::error::Error::source) and is not repeated in the text, so that a report
//! that walks the chain (`anyhow`'s `{:#}`, the `coapio` tool) says each thing once.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::message::uri::UriError;
use crate::message::Code;
use crate::net::TransportErrorKind;
use crate::proto::{self, Failure};

/// What went wrong: why a request ended without a response, or why the endpoint could not
/// do what it was asked.
///
/// ```
/// # async_io::block_on(async {
/// let (client, _driver) = coapio::Endpoint::client()?;
/// // Nothing listens on port 9 of the loopback address: ICMP says so at once.
/// let err = client.get("coap://127.0.0.1:9/x").await.unwrap_err();
/// assert!(matches!(err, coapio::Error::Network { .. }));
/// assert_eq!(err.to_string(), "network error for 127.0.0.1:9: port unreachable (nothing listens there)");
/// # Ok::<_, coapio::Error>(()) }).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No response came in time: all retransmissions of a Confirmable request went
    /// unacknowledged, or the response to a Non-confirmable or acknowledged request (or its
    /// own timeout, [`RequestBuilder::timeout`](crate::RequestBuilder::timeout)) did not come before its deadline.
    #[error("no response from {remote} after {}", Secs(*.after))]
    Timeout {
        /// Where the request went.
        remote: SocketAddr,
        /// How long after it was sent the request was given up.
        after: Duration,
    },
    /// The server answered with a Reset: it could not process the request.
    #[error("{remote} answered with a Reset (it could not process the request)")]
    Reset {
        /// The server.
        remote: SocketAddr,
    },
    /// The network reported an error for the remote: an ICMP error (nothing listens
    /// there, no route), or a failed DTLS session.
    #[error("network error for {remote}: {kind}")]
    Network {
        /// The remote the error is about.
        remote: SocketAddr,
        /// What the network said.
        kind: TransportErrorKind,
    },
    /// The response could not be accepted (for instance, it had an unrecognized critical
    /// option).
    #[error("bad response from {remote}: {reason}")]
    BadResponse {
        /// The server.
        remote: SocketAddr,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The server answered an OSCORE-protected request without OSCORE protection (an error
    /// such as 4.01 "Replay detected", which anyone on the path could have sent).
    #[error("{remote} answered {code} without OSCORE protection")]
    Unprotected {
        /// The server.
        remote: SocketAddr,
        /// The code it answered with.
        code: Code,
    },
    /// The request URI could not be parsed.
    #[error("invalid URI {uri:?}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        source: UriError,
    },
    /// The URI's host name could not be resolved to an address (or names no interface, for
    /// an IPv6 zone).
    #[error("cannot resolve {host:?}")]
    Resolve {
        /// The host name (or zone) as the URI gives it.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// What was asked is not something this build or this endpoint can do: a `coaps://`
    /// URI in a build without DTLS support, or on an endpoint without DTLS credentials.
    #[error("{0}")]
    Unsupported(String),
    /// The request cannot be made as given: a path both in the URI and in the request's
    /// options, an observation of a multicast group, a group request to a unicast address.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The endpoint refused to send the request (a payload too large, too many requests
    /// waiting for the remote, an option that cannot be encoded, …).
    #[error("the endpoint refused the request")]
    Refused(#[source] proto::Error),
    /// The endpoint's socket could not be bound to this address.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's error.
        source: io::Error,
    },
    /// The DTLS credentials cannot be used (feature `dtls`): a key that does not match its
    /// certificate, no CA to verify with, PEM that does not parse.
    #[cfg(feature = "dtls")]
    #[error("the DTLS credentials cannot be used")]
    Credentials(#[source] crate::dtls::DtlsError),
    /// The endpoint's transport failed (opening or using its socket).
    #[error("the endpoint's transport failed")]
    Io(#[source] io::Error),
    /// The endpoint was shut down, or its driver dropped, before the response came.
    #[error("the endpoint was shut down before the response came")]
    Stopped,
}

impl Error {
    /// The error for a request to `remote`, sent `after` ago, that the core gave up on.
    pub(crate) fn of_failure(failure: Failure, remote: SocketAddr, after: Duration) -> Self {
        match failure {
            Failure::Timeout => Self::Timeout { remote, after },
            Failure::Reset => Self::Reset { remote },
            Failure::Transport(kind) => Self::Network { remote, kind },
            Failure::BadResponse(reason) => Self::BadResponse { remote, reason },
            Failure::Unprotected(code) => Self::Unprotected { remote, code },
            Failure::Refused(e) => Self::Refused(e),
        }
    }

    /// Whether no response came in time.
    pub const fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The remote the error is about, for the errors of a request that was sent.
    pub const fn remote(&self) -> Option<SocketAddr> {
        match self {
            Self::Timeout { remote, .. }
            | Self::Reset { remote }
            | Self::Network { remote, .. }
            | Self::BadResponse { remote, .. }
            | Self::Unprotected { remote, .. } => Some(*remote),
            _ => None,
        }
    }
}

/// An `io::Error` that carries a coapio `Error` (made by the conversion below) gives it
/// back; any other is [`Error::Io`].
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if !e.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            return Self::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Self>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Self::Io(io::Error::new(kind, other)),
            None => Self::Io(kind.into()),
        }
    }
}

/// For `?` in functions that return `io::Result`: the kind of the underlying `io::Error`
/// where there is one (a bind's `AddrInUse` stays `AddrInUse`), with this error as the
/// payload.
impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Bind { source, .. } | Error::Io(source) | Error::Resolve { source, .. } => {
                source.kind()
            }
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::InvalidUri { .. } | Error::InvalidRequest(_) => io::ErrorKind::InvalidInput,
            Error::Unsupported(_) => io::ErrorKind::Unsupported,
            Error::Network {
                kind: TransportErrorKind::PortUnreachable,
                ..
            } => io::ErrorKind::ConnectionRefused,
            Error::Reset { .. } => io::ErrorKind::ConnectionReset,
            Error::Stopped => io::ErrorKind::ConnectionAborted,
            _ => io::ErrorKind::Other,
        };
        Self::new(kind, e)
    }
}

/// Shows an error and its causes, one after the other: `cannot bind [::]:5683: Address
/// already in use (os error 98)`. coapio's errors say what failed and leave the cause to
/// [`source`](std::error::Error::source); this is how a program that prints errors
/// itself (rather than through `anyhow` or `eyre`) says it all.
///
/// ```
/// # async_io::block_on(async {
/// let (client, _driver) = coapio::Endpoint::client()?;
/// let e = client.get("coap://name.invalid/x").await.unwrap_err();
/// let text = coapio::Report(&e).to_string();
/// assert!(text.starts_with("cannot resolve \"name.invalid\": "), "{text}");
/// # Ok::<_, coapio::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Report<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// A duration as a person reads it: "250 ms", "2.5 s", "93 s".
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms < 1000 {
            write!(f, "{ms} ms")
        } else if ms < 10_000 {
            write!(f, "{:.1} s", self.0.as_secs_f64())
        } else {
            write!(f, "{} s", self.0.as_secs_f64().round())
        }
    }
}

/// Errors cross threads (and `anyhow`, `Box<dyn Error + Send + Sync>`).
const _: () = {
    const fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Error>();
    send_sync::<proto::Error>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn texts_say_where_and_how_long_and_sources_are_not_repeated() {
        let remote: SocketAddr = "[::1]:5683".parse().unwrap();
        let e = Error::of_failure(Failure::Timeout, remote, Duration::from_millis(93_400));
        assert_eq!(e.to_string(), "no response from [::1]:5683 after 93 s");
        assert!(e.is_timeout() && e.source().is_none());
        let e = Error::of_failure(Failure::Timeout, remote, Duration::from_millis(2_450));
        assert_eq!(e.to_string(), "no response from [::1]:5683 after 2.5 s");
        assert_eq!(e.remote(), Some(remote));

        let refused = Error::of_failure(
            Failure::Refused(proto::Error::QueueFull(4)),
            remote,
            Duration::ZERO,
        );
        let cause = refused.source().expect("the core's error is the source");
        assert!(!refused.to_string().contains(&cause.to_string()));

        let e = Error::Resolve {
            host: "nowhere.invalid".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such host"),
        };
        assert_eq!(e.to_string(), "cannot resolve \"nowhere.invalid\"");
        assert_eq!(e.source().unwrap().to_string(), "no such host");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);

        let e = Error::Bind {
            addr: remote,
            source: io::ErrorKind::AddrInUse.into(),
        };
        assert_eq!(e.to_string(), "cannot bind [::1]:5683");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AddrInUse);

        // Through io::Error and back: the same error, not an I/O failure.
        let timeout = Error::of_failure(Failure::Timeout, remote, Duration::from_secs(1));
        let back = Error::from(io::Error::from(timeout));
        assert!(back.is_timeout(), "{back:?}");
        assert!(matches!(Error::from(io::Error::other("x")), Error::Io(_)));
    }
}
