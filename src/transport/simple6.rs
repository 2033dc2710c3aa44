//! simple6: a client transport with one connected UDP socket per remote, for any Unix.
//!
//! Connecting a socket to its remote lets the kernel filter what arrives and report ICMP errors
//! as `ECONNREFUSED` on that socket, with no `recvmsg` and no ancillary data; responses
//! therefore come from exactly the address that was asked. Sockets are created on first use
//! and closed after [`IDLE`] without traffic. One internal poller over all of them is the
//! transport's readiness descriptor. It cannot serve: it has no port of its own.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::debug;
use polling::{Event, PollMode, Poller};
use socket2::{MaybeUninitSlice, SockRef};

use super::{error_kind, Capabilities, Transport};
use crate::net::{RecvMeta, Transmit, TransportError};

/// How long a remote's socket stays open without traffic.
pub(crate) const IDLE: Duration = Duration::from_secs(120);

/// The simple6 transport (see the module documentation).
#[derive(Debug)]
pub struct Simple6 {
    poller: Poller,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_remote: HashMap<SocketAddr, usize>,
    sockets: HashMap<usize, Conn>,
    next_key: usize,
    errors: VecDeque<TransportError>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Conn {
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
    /// Creates the transport; sockets are opened as requests go out.
    ///
    /// # Errors
    ///
    /// The error of creating the internal poller.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            poller: Poller::new()?,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self, inner: &mut Inner, key: usize) {
        if let Some(conn) = inner.sockets.remove(&key) {
            inner.by_remote.remove(&conn.remote);
            let _ = self.poller.delete(&conn.socket);
            debug!("coapio: simple6 closed the socket for {}", conn.remote);
        }
    }

    fn sweep(&self, inner: &mut Inner, now: Instant) {
        if inner
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < IDLE / 4)
        {
            return;
        }
        inner.last_sweep = Some(now);
        let idle: Vec<usize> = inner
            .sockets
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_used) > IDLE)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.close(inner, key);
        }
    }

    fn open(&self, inner: &mut Inner, remote: SocketAddr) -> io::Result<usize> {
        let local: SocketAddr = if remote.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(remote)?;
        socket.set_nonblocking(true)?;
        let key = inner.next_key;
        inner.next_key += 1;
        // SAFETY: the socket is deleted from the poller (in `close` or `Drop`) before it is
        // closed.
        unsafe {
            self.poller
                .add_with_mode(&socket, Event::readable(key), PollMode::Level)?
        };
        debug!(
            "coapio: simple6 opened {} for {remote}",
            socket.local_addr()?
        );
        inner.by_remote.insert(remote, key);
        inner.sockets.insert(
            key,
            Conn {
                socket,
                remote,
                last_used: Instant::now(),
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

impl AsFd for Simple6 {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

impl Transport for Simple6 {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            icmp_errors: true,
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

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
        let mut inner = self.lock();
        let now = Instant::now();
        let keys: Vec<usize> = inner.sockets.keys().copied().collect();
        for key in keys {
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
        self.sweep(&mut inner, now);
        let remote = transmit.destination;
        let key = match inner.by_remote.get(&remote) {
            Some(&k) => k,
            None => self.open(&mut inner, remote)?,
        };
        let Some(conn) = inner.sockets.get_mut(&key) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        conn.last_used = now;
        match conn.socket.send(contents) {
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
}
