//! Non-blocking UDP transports behind one trait: [`Transport`].
//!
//! A transport moves datagrams and nothing else: it knows sockets, not CoAP. Every call returns
//! at once, with [`std::io::ErrorKind::WouldBlock`] when it cannot proceed, and each transport
//! has one file descriptor that becomes readable when there is something to receive, which is
//! what the async facade and the C ABI wait on.
//!
//! | transport | platforms | client | server | reply from the arrival address | ICMP errors |
//! |---|---|---|---|---|---|
//! | [`Udp6`] | Linux | yes | yes | yes (PKTINFO) | yes (error queue) |
//! | [`Udp6`] | macOS, FreeBSD | yes | yes | IPv6 yes (PKTINFO); IPv4: routing's choice | no |
//! | [`Simple6`] | Unix | yes | only the remotes it talks to (role reversal) | n/a | yes (`ECONNREFUSED` on the remote's socket) |
//! | [`Simple6`] | Windows | yes | only the remotes it talks to | n/a | no (one shared socket) |
//! | [`SimpleServer`] | Unix, Windows | yes | yes, one address | yes (bound there) | no |
//!
//! The default is udp6 on Linux and, elsewhere, simple6 for a client and simplesocketserver
//! for a server, as in aiocoap ([`TransportKind`](crate::TransportKind) and `COAPIO_TRANSPORT` choose
//! another). Only Linux runs the tests; the other platforms are type-checked (`.ci/xcheck`).
//!
//! This module and the C ABI are the only places with `unsafe` code.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::net::{RecvMeta, Transmit, TransportError};

#[cfg(any(
    target_os = "linux",
    target_vendor = "apple",
    target_os = "freebsd",
    windows
))]
mod addr;
mod batch;
#[cfg(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd"))]
mod cmsg;
mod simple6;
mod simple_server;
#[cfg(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd"))]
mod udp6;

pub use batch::{RecvBatch, SendBatch, BATCH};

pub use simple6::Simple6;
pub use simple_server::{SimpleServer, ANY_ADDRESS_REFUSED};
/// What a transport's readiness is: a descriptor on Unix ([`std::os::fd::AsFd`]), a socket
/// on Windows (`std::os::windows::io::AsSocket`), as `async-io` and `polling` wait on them.
#[cfg(unix)]
pub use std::os::fd::AsFd as AsSource;
/// What a transport's readiness is: a descriptor on Unix ([`std::os::fd::AsFd`]), a socket
/// on Windows (`std::os::windows::io::AsSocket`), as `async-io` and `polling` wait on them.
#[cfg(windows)]
pub use std::os::windows::io::AsSocket as AsSource;
#[cfg(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd"))]
pub use udp6::{Udp6, Udp6Options};

/// Opens udp6 bound to `bind` (with `SO_REUSEPORT` when `reuse_port`), where the platform
/// has it (Linux, macOS, FreeBSD).
///
/// # Errors
///
/// Udp6's errors of binding; [`io::ErrorKind::Unsupported`] on other platforms.
pub(crate) fn open_udp6(bind: SocketAddr, reuse_port: bool) -> io::Result<Box<dyn Transport>> {
    #[cfg(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd"))]
    return Ok(Box::new(Udp6::bind_with(
        bind,
        &Udp6Options { reuse_port },
    )?));
    #[cfg(not(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd")))]
    {
        let _ = (bind, reuse_port);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the udp6 transport needs Linux, macOS or FreeBSD; use simple6 or simplesocketserver",
        ))
    }
}

/// What a transport can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// It can receive requests (it has a port others can send to).
    pub server: bool,
    /// It can join multicast groups.
    pub multicast: bool,
    /// It reports the local address and interface each datagram arrived on, and can send from
    /// a given one (udp6 on macOS and FreeBSD: for IPv6 remotes; replies to IPv4 ones leave
    /// from the address routing picks).
    pub local_addr_info: bool,
    /// It reports ICMP errors (unreachable ports and hosts) for the remote they concern.
    pub icmp_errors: bool,
}

/// A non-blocking datagram transport with one readiness file descriptor (a socket on
/// Windows).
///
/// The descriptor ([`AsSource`]) becomes readable when [`try_recv`](Self::try_recv) or
/// [`try_recv_error`](Self::try_recv_error) has something. Callers take datagrams in batches
/// ([`try_recv_batch`](Self::try_recv_batch)) until a batch comes back short, and errors
/// whenever they ask: a transport notes the errors it sees while receiving and sending, so
/// that asking costs nothing (no system call) when there are none.
pub trait Transport: AsSource + Send + Sync + fmt::Debug + 'static {
    /// What this transport can do.
    fn capabilities(&self) -> Capabilities;

    /// The local address it is bound to.
    ///
    /// # Errors
    ///
    /// The socket's error, if it has none.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Receives one datagram into `buf`: its length and where it came from.
    ///
    /// Datagrams larger than `buf` are dropped, never delivered cut short.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] when nothing is waiting; other socket errors as they come.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)>;

    /// Sends one datagram as `transmit` says.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] when the socket buffer is full; other socket errors.
    fn try_send(&self, transmit: &Transmit, contents: &[u8]) -> io::Result<()>;

    /// Receives up to [`RecvBatch::capacity`] datagrams into `batch` (emptied first) and
    /// returns how many it took from the socket; [`RecvBatch::len`] of them are in the batch
    /// (fewer when some were dropped, as too large or from no address). A count below the
    /// capacity means nothing more was waiting.
    ///
    /// The default takes them one [`try_recv`](Self::try_recv) at a time; udp6 takes them with
    /// one `recvmmsg`. An error after some datagrams ends the batch early; it is for the
    /// transport to keep it for [`try_recv_error`](Self::try_recv_error) if it matters.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), when not even one datagram was received.
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        while let Some(slot) = batch.next_slot() {
            match self.try_recv(slot) {
                Ok((n, meta)) => batch.push(n, meta),
                Err(e) if batch.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(batch.len())
    }

    /// Sends the datagrams of `batch` from the `from`th on, in order, and returns how many it
    /// sent (at least one). The caller calls again for the rest: the first of them is the one
    /// whose error the next call reports.
    ///
    /// The default sends them one [`try_send`](Self::try_send) at a time; udp6 with one
    /// `sendmmsg`.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send), for the `from`th datagram: it was not sent.
    fn try_send_batch(&self, batch: &SendBatch, from: usize) -> io::Result<usize> {
        let mut sent = 0;
        while let Some((transmit, contents)) = batch.get(from + sent) {
            match self.try_send(transmit, contents) {
                Ok(()) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Takes one error the network reported for a remote (an ICMP error), if any.
    ///
    /// # Errors
    ///
    /// Socket errors other than "nothing waiting".
    fn try_recv_error(&self) -> io::Result<Option<TransportError>> {
        Ok(None)
    }

    /// Tells the transport whether `remote` is in use: it has open requests or observations,
    /// so datagrams from it are still expected however long it stays quiet. Transports that
    /// keep per-remote state ([`Simple6`]'s connected sockets) keep it while the remote is in
    /// use; the others ignore this (the default does nothing).
    ///
    /// Drivers call it with `true` when the first open request to a remote starts and with
    /// `false` when its last one ends (response, failure, cancellation); calling it again
    /// with the same value is harmless.
    fn set_in_use(&self, remote: SocketAddr, in_use: bool) {
        let _ = (remote, in_use);
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work, for transports with timers of
    /// their own (DTLS retransmissions and idle sessions); drivers arm their timer for the
    /// earlier of this and the core's. `None` by default.
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        None
    }

    /// Does what is due at `now` (see [`poll_timeout`](Self::poll_timeout)); spurious calls
    /// are harmless. Nothing by default.
    fn handle_timeout(&self, now: std::time::Instant) {
        let _ = now;
    }

    /// Joins a multicast group on the interface with index `ifindex` (0: the system's
    /// choice), for transports that can ([`Capabilities::multicast`]).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Unsupported`] for transports that cannot; the socket's errors.
    fn join_multicast(&self, group: std::net::IpAddr, ifindex: u32) -> io::Result<()> {
        let _ = (group, ifindex);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot join multicast groups; use udp6",
        ))
    }
}

/// The methods of a wrapper's `Transport` impl, each passed on to `**self`.
macro_rules! forward_transport {
    () => {
        fn capabilities(&self) -> Capabilities {
            (**self).capabilities()
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            (**self).local_addr()
        }
        fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
            (**self).try_recv(buf)
        }
        fn try_send(&self, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
            (**self).try_send(transmit, contents)
        }
        fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
            (**self).try_recv_batch(batch)
        }
        fn try_send_batch(&self, batch: &SendBatch, from: usize) -> io::Result<usize> {
            (**self).try_send_batch(batch, from)
        }
        fn try_recv_error(&self) -> io::Result<Option<TransportError>> {
            (**self).try_recv_error()
        }
        fn set_in_use(&self, remote: SocketAddr, in_use: bool) {
            (**self).set_in_use(remote, in_use);
        }
        fn join_multicast(&self, group: std::net::IpAddr, ifindex: u32) -> io::Result<()> {
            (**self).join_multicast(group, ifindex)
        }
        fn poll_timeout(&self) -> Option<std::time::Instant> {
            (**self).poll_timeout()
        }
        fn handle_timeout(&self, now: std::time::Instant) {
            (**self).handle_timeout(now);
        }
    };
}

// Boxed transports are transports (a `Box<dyn Transport>` on Unix; on Windows std makes only
// a box of a sized socket type a socket).
#[cfg(unix)]
impl<T: Transport + ?Sized> Transport for Box<T> {
    forward_transport!();
}

#[cfg(windows)]
impl<T: Transport> Transport for Box<T> {
    forward_transport!();
}

/// Implements the platform's readiness trait ([`AsSource`]) for `$ty` by passing it on to
/// the transport in its field `$field`: for wrappers of transports.
macro_rules! forward_readiness {
    ($ty:ty, $field:tt) => {
        #[cfg(unix)]
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.$field.as_fd()
            }
        }

        #[cfg(windows)]
        impl std::os::windows::io::AsSocket for $ty {
            fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
                self.$field.as_socket()
            }
        }
    };
}
#[cfg_attr(not(feature = "dtls"), allow(unused_imports))]
pub(crate) use forward_readiness;

/// A boxed transport that `async-io` can wait on (`Async<Io>`): std implements the readiness
/// traits for `Box<T: ?Sized>` on Unix only.
#[derive(Debug)]
pub(crate) struct Io(pub(crate) Box<dyn Transport>);

impl std::ops::Deref for Io {
    type Target = dyn Transport;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

forward_readiness!(Io, 0);

/// The All-CoAP-Nodes groups (RFC 7252 §12.8): link-local and site-local IPv6, and IPv4.
pub const ALL_COAP_NODES: [std::net::IpAddr; 3] = [
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd)),
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xfd)),
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(224, 0, 1, 187)),
];

/// The index of the network interface named `name` (`eth0`), for IPv6 zones.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    #[cfg(unix)]
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    // SAFETY: as above.
    #[cfg(windows)]
    let index = unsafe {
        windows_sys::Win32::NetworkManagement::IpHelper::if_nametoindex(name.as_ptr().cast())
    };
    (index != 0).then_some(index)
}

/// Maps an OS error number (`errno`, or a Winsock error code on Windows) to the kind of a
/// [`TransportError`].
pub(crate) fn error_kind(errno: i32) -> crate::net::TransportErrorKind {
    use crate::net::TransportErrorKind as K;
    use os_errors::*;
    let is = |codes: &[i32]| codes.contains(&errno);
    if is(PORT_UNREACHABLE) {
        K::PortUnreachable
    } else if is(HOST_UNREACHABLE) {
        K::HostUnreachable
    } else if is(NETWORK_UNREACHABLE) {
        K::NetworkUnreachable
    } else if is(PROHIBITED) {
        K::Prohibited
    } else if is(TOO_LARGE) {
        K::MessageTooLarge
    } else {
        K::Other(errno)
    }
}

/// The OS error numbers the transports tell apart.
#[cfg(unix)]
pub(crate) mod os_errors {
    pub(crate) const PORT_UNREACHABLE: &[i32] = &[libc::ECONNREFUSED];
    pub(crate) const HOST_UNREACHABLE: &[i32] = &[libc::EHOSTUNREACH, libc::EHOSTDOWN];
    /// EAFNOSUPPORT: an IPv6 destination where the system has no IPv6 (udp6's fallback).
    pub(crate) const NETWORK_UNREACHABLE: &[i32] =
        &[libc::ENETUNREACH, libc::ENETDOWN, libc::EAFNOSUPPORT];
    pub(crate) const PROHIBITED: &[i32] = &[libc::EACCES, libc::EPERM];
    pub(crate) const TOO_LARGE: &[i32] = &[libc::EMSGSIZE];
    /// Out of descriptors.
    pub(crate) const EMFILE: i32 = libc::EMFILE;
}

/// The OS error numbers the transports tell apart: Winsock's codes, which are what
/// `raw_os_error` gives for socket errors on Windows. A UDP socket reports an ICMP port
/// unreachable as WSAECONNRESET, and a time exceeded (TTL) as WSAENETRESET.
#[cfg(windows)]
pub(crate) mod os_errors {
    use windows_sys::Win32::Networking::WinSock as ws;
    pub(crate) const PORT_UNREACHABLE: &[i32] = &[ws::WSAECONNRESET, ws::WSAECONNREFUSED];
    pub(crate) const HOST_UNREACHABLE: &[i32] =
        &[ws::WSAEHOSTUNREACH, ws::WSAEHOSTDOWN, ws::WSAENETRESET];
    pub(crate) const NETWORK_UNREACHABLE: &[i32] =
        &[ws::WSAENETUNREACH, ws::WSAENETDOWN, ws::WSAEAFNOSUPPORT];
    pub(crate) const PROHIBITED: &[i32] = &[ws::WSAEACCES];
    pub(crate) const TOO_LARGE: &[i32] = &[ws::WSAEMSGSIZE];
    /// Out of sockets.
    pub(crate) const EMFILE: i32 = ws::WSAEMFILE;
}
