//! Value types that the protocol core and the transports both speak of: where a datagram came
//! from and arrived at, where one goes, and the errors the network reports.
//!
//! This module is the neutral ground between [`proto`](crate::proto) (no sockets) and the transports
//! (no protocol): neither imports the other, both import this.

use std::net::{IpAddr, SocketAddr};

/// What is known about a received datagram besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecvMeta {
    /// The address the datagram came from.
    pub remote: SocketAddr,
    /// The local address it was sent to, where the transport can tell (IPv6 PKTINFO).
    pub local: Option<IpAddr>,
    /// The interface it arrived on, where the transport can tell.
    pub ifindex: Option<u32>,
}

impl RecvMeta {
    /// Metadata naming only the sender.
    pub const fn new(remote: SocketAddr) -> Self {
        Self {
            remote,
            local: None,
            ifindex: None,
        }
    }

    /// Adds the local address and interface the datagram arrived on.
    pub const fn with_local(mut self, local: IpAddr, ifindex: Option<u32>) -> Self {
        self.local = Some(local);
        self.ifindex = ifindex;
        self
    }

    /// Whether the datagram was sent to a multicast group.
    pub fn is_multicast(&self) -> bool {
        self.local.is_some_and(|a| match a {
            IpAddr::V4(a) => a.is_multicast(),
            IpAddr::V6(a) => {
                a.is_multicast() || a.to_ipv4_mapped().is_some_and(|a| a.is_multicast())
            }
        })
    }
}

/// Where a datagram that the protocol core hands out is to go, and how long it is.
///
/// The bytes themselves are in the buffer the caller passed to
/// [`Endpoint::poll_transmit`](crate::proto::Endpoint::poll_transmit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a transmit describes a datagram that has to be sent"]
#[non_exhaustive]
pub struct Transmit {
    /// The address to send to.
    pub destination: SocketAddr,
    /// The local address to send from (the one the request arrived on), where known. A
    /// multicast group is never given here: replies to a multicast request leave from a
    /// unicast address.
    pub source: Option<IpAddr>,
    /// The interface to send on, where known.
    pub ifindex: Option<u32>,
    /// The datagram's length in bytes.
    pub size: usize,
}

impl Transmit {
    /// A datagram of `size` bytes to `destination`, from whatever address the system picks.
    pub const fn new(destination: SocketAddr, size: usize) -> Self {
        Self {
            destination,
            source: None,
            ifindex: None,
            size,
        }
    }
}

/// A network error that concerns one remote, such as an ICMP message from the error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportError {
    /// The remote the failed datagram was sent to.
    pub remote: SocketAddr,
    /// What went wrong.
    pub kind: TransportErrorKind,
}

impl TransportError {
    /// An error about `remote`.
    pub const fn new(remote: SocketAddr, kind: TransportErrorKind) -> Self {
        Self { remote, kind }
    }
}

/// What went wrong with a DTLS session ([`TransportErrorKind::Security`]).
///
/// The texts (`reason`) are mostly OpenSSL's: its words for a certificate verification
/// result (`"unable to get local issuer certificate"`, `"hostname mismatch"`) or for an
/// alert (`"sslv3 alert handshake failure"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The peer's certificate did not verify against the trusted CAs or does not name the
    /// host or address asked for.
    #[error("the peer's certificate was not accepted: {reason}")]
    CertificateRejected {
        /// Why, as OpenSSL's certificate verification says.
        reason: &'static str,
    },
    /// The server does not know the PSK identity presented (it said so with the
    /// `unknown_psk_identity` alert).
    #[error("the server does not know this PSK identity")]
    UnknownIdentity,
    /// The handshake did not complete in time (with a pre-shared key, a wrong key looks like
    /// this: DTLS drops what it cannot decrypt).
    #[error("the handshake timed out (a wrong key, or no DTLS server there)")]
    HandshakeTimeout,
    /// The handshake or the session failed otherwise: the peer sent a fatal alert (a server
    /// that wanted a client certificate and got none sends handshake_failure), no cipher
    /// suite in common, no certificate from a client that had to send one, a protocol
    /// violation.
    #[error("the handshake failed: {reason}")]
    HandshakeFailed {
        /// The TLS alert the peer sent (RFC 5246 §7.2: 40 handshake_failure, 42
        /// bad_certificate, 48 unknown_ca, 51 decrypt_error, ...), if it sent one.
        alert: Option<u8>,
        /// What failed, in OpenSSL's words.
        reason: &'static str,
    },
    /// This endpoint has no credentials for a session with the remote, or cannot use them.
    #[error("no usable DTLS credentials for this remote")]
    NoCredentials,
    /// A plain `coap://` request from an endpoint whose socket takes DTLS only (a DTLS
    /// server's).
    #[error("this endpoint's socket takes DTLS only; send coap:// from another endpoint")]
    PlainRefused,
}

/// The kinds of [`TransportError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// ICMP port unreachable, or `ECONNREFUSED`: nothing listens there.
    #[error("port unreachable (nothing listens there)")]
    PortUnreachable,
    /// ICMP host unreachable.
    #[error("host unreachable")]
    HostUnreachable,
    /// ICMP network unreachable.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// ICMP administratively prohibited.
    #[error("communication administratively prohibited")]
    Prohibited,
    /// The datagram was larger than the path allows.
    #[error("message too large for the path")]
    MessageTooLarge,
    /// The remote's DTLS session failed or could not be made.
    #[error("DTLS: {0}")]
    Security(SecurityError),
    /// Any other error, with its OS error number where known.
    #[error("network error (OS error {0})")]
    Other(i32),
}
