//! simple6: a client transport with one connected UDP socket per remote, for any Unix.
//!
//! Connecting a socket to its remote lets the kernel filter what arrives and report ICMP errors
//! as `ECONNREFUSED` on that socket, with no `recvmsg` and no ancillary data; responses
//! therefore come from exactly the address that was asked. One internal poller over all of
//! them is the transport's readiness descriptor.
//!
//! # Role reversal
//!
//! simple6 has no port of its own that others could find, but a remote it has a socket for
//! may send requests back over that socket: a device that registered with a CoRE Resource
//! Directory or an LwM2M server is asked by that server, at the address it registered from.
//! Such requests are delivered like any datagram, and an endpoint with a site serves them and
//! answers over the same socket. A socket only ever receives from its own remote (the kernel
//! drops the rest), so nobody else reaches the site. The socket stays open while the remote is
//! in use or for the idle time after its last datagram (see below), received requests
//! counting as datagrams: a server that keeps asking keeps it open, but a quiet one finds it
//! closed after the idle time (as it would find a NAT's mapping gone, often sooner). A device
//! that relies on role reversal talks to its server more often than that, as the `server`
//! example's `--register` does (a registration update every minute).
//!
//! Remotes are reported by address: a remote named by a host name in a URI is the address
//! the name resolved to (the one the socket is connected to), in [`RecvMeta::remote`] as in
//! every other transport.
//!
//! # Socket lifetime
//!
//! A remote's socket is created when the first datagram goes to it. Closing it loses whatever
//! the remote sends later (a separate response, a notification), so it stays open
//!
//! - while the driver says the remote is in use ([`Transport::set_in_use`]: it has open
//!   requests or observations), however quiet it is, and
//! - for an idle time after the last datagram sent or received (default
//!   [`Simple6::DEFAULT_IDLE`], RFC 7252's EXCHANGE_LIFETIME, the longest a late answer to an
//!   exchange can come).
//!
//! The number of sockets is capped ([`Simple6::DEFAULT_MAX_SOCKETS`]; see [`Simple6::with_limits`]),
//! so that many peers cannot exhaust the process's file descriptors. Opening one more
//! closes the least recently used socket that is not in use; when every socket is in use,
//! sending to a new remote fails with an error that says so (and the requests to that
//! remote fail, as for an ICMP error) rather than cutting off a live exchange.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
#[cfg(unix)]
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::debug;
#[cfg(unix)]
use polling::{Event, PollMode, Poller};
use socket2::{MaybeUninitSlice, SockRef};

use super::{error_kind, Capabilities, Transport};
use crate::net::{RecvMeta, Transmit, TransportError};

/// The simple6 transport (see the module documentation).
#[derive(Debug)]
pub struct Simple6 {
    /// The internal poller over the remotes' connected sockets: the readiness descriptor.
    #[cfg(unix)]
    poller: Poller,
    /// Windows: the one socket, for every remote (see the module documentation).
    #[cfg(windows)]
    shared: windows::Shared,
    inner: Mutex<Inner>,
    max_sockets: usize,
    idle: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    by_remote: HashMap<SocketAddr, usize>,
    sockets: HashMap<usize, Conn>,
    /// The remotes the driver marked in use; their sockets are never closed.
    in_use: HashSet<SocketAddr>,
    next_key: usize,
    errors: VecDeque<TransportError>,
    last_sweep: Option<Instant>,
    /// Sockets the internal poller found readable, to be read in turn: one datagram from
    /// each before any is asked again, so one busy remote cannot hold the others back.
    #[cfg(unix)]
    ready: VecDeque<usize>,
}

/// A remote simple6 talks to: its socket (Unix), and when it was last used.
#[derive(Debug)]
struct Conn {
    #[cfg(unix)]
    socket: UdpSocket,
    remote: SocketAddr,
    last_used: Instant,
}

/// Receives one datagram from a connected socket; `Ok(None)` for one that was truncated.
pub(super) fn recv_checked(
    socket: SockRef<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Option<SocketAddr>)>> {
    // SAFETY: viewing initialized bytes as MaybeUninit is always sound; recv only writes
    // initialized bytes into the buffer.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    let (n, flags, from) = socket.recv_from_vectored(&mut [MaybeUninitSlice::new(uninit)])?;
    if flags.is_truncated() {
        debug!("coapio: dropped a datagram larger than {} bytes", buf.len());
        return Ok(None);
    }
    Ok(Some((n, from.as_socket())))
}

impl Simple6 {
    /// How long a socket that is not in use stays open after its last datagram, by default:
    /// RFC 7252's default EXCHANGE_LIFETIME (247 s), after which no answer to an exchange
    /// can come.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(247);

    /// How many sockets (one per remote) it keeps open at most, by default.
    pub const DEFAULT_MAX_SOCKETS: usize = 1024;

    /// Creates the transport; sockets are opened as requests go out. At most
    /// [`Simple6::DEFAULT_MAX_SOCKETS`] are open at once, and one not in use is closed
    /// [`Simple6::DEFAULT_IDLE`] after its last datagram.
    ///
    /// # Errors
    ///
    /// The error of creating the internal poller.
    pub fn new() -> io::Result<Self> {
        Self::with_limits(Self::DEFAULT_MAX_SOCKETS, Self::DEFAULT_IDLE)
    }

    /// Creates the transport with at most `max_sockets` sockets open at once (at least 1),
    /// closing one that is not in use `idle` after its last datagram (see the module
    /// documentation). An `idle` shorter than the EXCHANGE_LIFETIME of the endpoint's
    /// configuration can lose late answers to requests the driver no longer tracks.
    ///
    /// # Errors
    ///
    /// The error of creating the internal poller.
    pub fn with_limits(max_sockets: usize, idle: Duration) -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            poller: Poller::new()?,
            #[cfg(windows)]
            shared: windows::Shared::new()?,
            inner: Mutex::new(Inner::default()),
            max_sockets: max_sockets.max(1),
            idle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self, inner: &mut Inner, key: usize) {
        if let Some(conn) = inner.sockets.remove(&key) {
            inner.by_remote.remove(&conn.remote);
            #[cfg(unix)]
            let _ = self.poller.delete(&conn.socket);
            debug!("coapio: simple6 closed the socket for {}", conn.remote);
        }
    }

    /// Closes the sockets that are not in use and idle for longer than `self.idle`; at most
    /// every quarter of that time unless `force`d.
    fn sweep(&self, inner: &mut Inner, now: Instant, force: bool) {
        if !force
            && inner
                .last_sweep
                .is_some_and(|t| now.saturating_duration_since(t) < self.idle / 4)
        {
            return;
        }
        inner.last_sweep = Some(now);
        let idle: Vec<usize> = inner
            .sockets
            .iter()
            .filter(|(_, c)| {
                !inner.in_use.contains(&c.remote)
                    && now.saturating_duration_since(c.last_used) > self.idle
            })
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.close(inner, key);
        }
    }

    /// Makes room for one more socket: closes idle ones, then the least recently used one
    /// that is not in use.
    ///
    /// # Errors
    ///
    /// When all `max_sockets` sockets are in use.
    fn make_room(&self, inner: &mut Inner, now: Instant) -> io::Result<()> {
        if inner.sockets.len() < self.max_sockets {
            return Ok(());
        }
        self.sweep(inner, now, true);
        while inner.sockets.len() >= self.max_sockets {
            let lru = inner
                .sockets
                .iter()
                .filter(|(_, c)| !inner.in_use.contains(&c.remote))
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| *k);
            match lru {
                Some(key) => self.close(inner, key),
                None => {
                    return Err(io::Error::other(format!(
                        "simple6 has {} sockets open, the most it may, and every one is in use by \
                         an open request or observation; end some, or make the transport with \
                         a higher limit (Simple6::with_limits)",
                        inner.sockets.len()
                    )))
                }
            }
        }
        Ok(())
    }

    fn open(&self, inner: &mut Inner, remote: SocketAddr, now: Instant) -> io::Result<usize> {
        self.make_room(inner, now)?;
        let key = inner.next_key;
        #[cfg(unix)]
        let socket = {
            let local: SocketAddr = if remote.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(remote)?;
            socket.set_nonblocking(true)?;
            // SAFETY: the socket is deleted from the poller (in `close` or `Drop`) before it
            // is closed.
            unsafe {
                self.poller
                    .add_with_mode(&socket, Event::readable(key), PollMode::Level)?
            };
            debug!(
                "coapio: simple6 opened {} for {remote}",
                socket.local_addr()?
            );
            socket
        };
        inner.next_key += 1;
        inner.by_remote.insert(remote, key);
        inner.sockets.insert(
            key,
            Conn {
                #[cfg(unix)]
                socket,
                remote,
                last_used: now,
            },
        );
        Ok(key)
    }
}

impl Drop for Simple6 {
    fn drop(&mut self) {
        let mut inner = self.lock();
        let keys: Vec<usize> = inner.sockets.keys().copied().collect();
        for key in keys {
            self.close(&mut inner, key);
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Simple6 {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for Simple6 {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.shared.as_socket()
    }
}

impl Transport for Simple6 {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Windows: one socket for every remote cannot tell whose an ICMP error is.
            icmp_errors: cfg!(unix),
            ..Capabilities::default()
        }
    }

    /// simple6 has no address of its own (each remote has its socket): this is an error.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "simple6 has one socket per remote and no local address of its own",
        ))
    }

    #[cfg(windows)]
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
        self.shared.recv(buf, |remote| {
            let mut inner = self.lock();
            let key = inner.by_remote.get(&remote).copied();
            let conn = key.and_then(|k| inner.sockets.get_mut(&k));
            conn.map(|c| c.last_used = Instant::now()).is_some()
        })
    }

    #[cfg(unix)]
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
        let mut inner = self.lock();
        let now = Instant::now();
        if inner.ready.is_empty() {
            // Which sockets have something (level-triggered: asking does not disarm them).
            let mut events = polling::Events::new();
            self.poller.wait(&mut events, Some(Duration::ZERO))?;
            inner.ready.extend(events.iter().map(|e| e.key));
        }
        while let Some(key) = inner.ready.pop_front() {
            while let Some(conn) = inner.sockets.get_mut(&key) {
                match recv_checked(SockRef::from(&conn.socket), buf) {
                    Ok(Some((n, _))) => {
                        conn.last_used = now;
                        return Ok((n, RecvMeta::new(conn.remote)));
                    }
                    Ok(None) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let remote = conn.remote;
                        let kind = error_kind(e.raw_os_error().unwrap_or(0));
                        debug!("coapio: simple6 error from {remote}: {e}");
                        inner.errors.push_back(TransportError::new(remote, kind));
                    }
                }
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn try_send(&self, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        let now = Instant::now();
        self.sweep(&mut inner, now, false);
        let remote = transmit.destination;
        let key = match inner.by_remote.get(&remote) {
            Some(&k) => k,
            None => match self.open(&mut inner, remote, now) {
                Ok(k) => k,
                Err(e) => {
                    // Fail the requests to this remote at once, as for an ICMP error, rather
                    // than retransmitting into the same refusal.
                    let errno = e.raw_os_error().unwrap_or(super::os_errors::EMFILE);
                    inner
                        .errors
                        .push_back(TransportError::new(remote, error_kind(errno)));
                    return Err(e);
                }
            },
        };
        let Some(conn) = inner.sockets.get_mut(&key) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        conn.last_used = now;
        #[cfg(unix)]
        let sent = conn.socket.send(contents);
        #[cfg(windows)]
        let sent = self.shared.send(contents, remote);
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // An earlier ICMP error surfaces here: report it for the remote, as a receive would.
            Err(e) if e.raw_os_error().is_some() && e.kind() != io::ErrorKind::InvalidInput => {
                let kind = error_kind(e.raw_os_error().unwrap_or(0));
                inner.errors.push_back(TransportError::new(remote, kind));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn try_recv_error(&self) -> io::Result<Option<TransportError>> {
        Ok(self.lock().errors.pop_front())
    }

    /// Keeps the remote's socket open, however quiet, while `in_use`; an idle time after
    /// its last datagram once it is not.
    fn set_in_use(&self, remote: SocketAddr, in_use: bool) {
        let mut inner = self.lock();
        if in_use {
            inner.in_use.insert(remote);
        } else if inner.in_use.remove(&remote) {
            // The idle time counts from now: the exchange may have ended just now.
            let now = Instant::now();
            if let Some(conn) = inner
                .by_remote
                .get(&remote)
                .copied()
                .and_then(|k| inner.sockets.get_mut(&k))
            {
                conn.last_used = conn.last_used.max(now);
            }
        }
    }
}

/// simple6 on Windows: one unconnected socket for every remote (dual-stack, or IPv4 where
/// the system has no IPv6). The poller of the Unix version cannot be waited on there
/// (`async-io` and C event loops wait on sockets), so the remotes share the one socket that
/// is the readiness source, and datagrams from anyone simple6 has not sent to are dropped,
/// as a connected socket would drop them. A UDP socket on Windows reports an ICMP port
/// unreachable as `WSAECONNRESET` on a later receive without saying for whom: those are
/// skipped, and requests to a closed port time out there instead of failing at once.
#[cfg(windows)]
mod windows {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::windows::io::{AsSocket, BorrowedSocket};

    use log::{debug, trace};
    use socket2::{Domain, Protocol, SockRef, Socket, Type};

    use super::recv_checked;
    use crate::net::RecvMeta;

    #[derive(Debug)]
    pub(super) struct Shared {
        socket: UdpSocket,
        /// Whether the socket is IPv6 (dual-stack): IPv4 remotes are then IPv4-mapped.
        v6: bool,
    }

    impl Shared {
        pub(super) fn new() -> io::Result<Self> {
            let dual = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
                s.set_only_v6(false)?;
                s.bind(&SocketAddr::from(([0u16; 8], 0)).into())?;
                Ok(s)
            });
            let (socket, v6) = match dual {
                Ok(s) => (s, true),
                Err(e) => {
                    debug!("coapio: simple6 has no IPv6 socket ({e}); IPv4 only");
                    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                    s.bind(&SocketAddr::from(([0u8; 4], 0)).into())?;
                    (s, false)
                }
            };
            socket.set_nonblocking(true)?;
            Ok(Self {
                socket: socket.into(),
                v6,
            })
        }

        /// Receives the next datagram from a remote that `known` accepts.
        pub(super) fn recv(
            &self,
            buf: &mut [u8],
            known: impl Fn(SocketAddr) -> bool,
        ) -> io::Result<(usize, RecvMeta)> {
            // Bounded, so that a flood from strangers cannot keep the caller here: it hears
            // `Interrupted` ("call again") and the socket stays readable.
            for _ in 0..64 {
                match recv_checked(SockRef::from(&self.socket), buf) {
                    Ok(Some((n, Some(from)))) => {
                        let from = super::super::addr::canonical(from);
                        if known(from) {
                            return Ok((n, RecvMeta::new(from)));
                        }
                        trace!("coapio: simple6 dropped a datagram from {from}, not a remote of its own");
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                    // An ICMP error about an earlier datagram, for an unknown remote.
                    Err(e)
                        if e.raw_os_error().is_some_and(|c| {
                            !matches!(
                                super::error_kind(c),
                                crate::net::TransportErrorKind::Other(_)
                            )
                        }) =>
                    {
                        trace!("coapio: simple6 skipped an ICMP error: {e}")
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(io::ErrorKind::Interrupted.into())
        }

        pub(super) fn send(&self, contents: &[u8], remote: SocketAddr) -> io::Result<usize> {
            let to = if self.v6 {
                SocketAddr::V6(super::super::addr::to_v6(remote))
            } else {
                remote
            };
            self.socket.send_to(contents, to)
        }

        pub(super) fn as_socket(&self) -> BorrowedSocket<'_> {
            self.socket.as_socket()
        }
    }
}
