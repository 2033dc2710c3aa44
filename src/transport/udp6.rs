//! udp6: one dual-stack UDP socket for client and server, with the local address of every
//! datagram (PKTINFO) and, on Linux, ICMP errors from the error queue.
//!
//! The socket is bound to an IPv6 address (normally `[::]`) with `IPV6_V6ONLY` off, so IPv4
//! peers arrive as IPv4-mapped addresses; the transport hands them to the core as plain IPv4
//! and maps them back when sending. `IPV6_RECVPKTINFO` tells which local address and interface
//! a datagram arrived on, and `IPV6_PKTINFO` on send makes the reply leave from there (on a
//! multi-homed host, from `127.0.0.2`, from a link-local address). `IPV6_RECVERR` and
//! `IP_RECVERR` queue ICMP errors on the socket's error queue, where
//! [`Transport::try_recv_error`] reads them; a pending error makes the descriptor readable, so
//! callers drain errors before data.
//!
//! On macOS and FreeBSD udp6 has what those kernels offer (RFC 3542's `IPV6_RECVPKTINFO` and
//! `IPV6_PKTINFO`): the local address of every datagram, and replies to IPv6 remotes sent
//! from it. It has no error queue there (ICMP errors on an unconnected socket are not
//! reported: requests to a closed port time out), receives and sends one datagram per call
//! (no `recvmmsg`/`sendmmsg`), and replies to IPv4 remotes leave from the address routing
//! picks (an IPv4-mapped `IPV6_PKTINFO` is Linux's). It is not the default there (simple6
//! and simplesocketserver are, as in aiocoap), and it has been type-checked, not run.
//!
//! Where IPv6 is switched off altogether on Linux (the kernel refuses `AF_INET6` sockets with
//! `EAFNOSUPPORT`, as with `ipv6.disable=1`), udp6 opens an IPv4 socket instead, with the same
//! features on IPv4 (`IP_PKTINFO`, `IP_RECVERR`), says so in a warning, and binds `[::]` as
//! `0.0.0.0`. IPv6 remotes are then unreachable: a send to one fails with `EAFNOSUPPORT`,
//! which fails the requests to it at once as "network unreachable"; binding or joining an
//! IPv6 address fails with [`io::ErrorKind::AddrNotAvailable`].

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, trace};
use socket2::{Domain, Protocol, Socket, Type};

use super::addr::{canonical, canonical_ip, ip_to_v6, to_v6};
use super::cmsg::{self, CmsgBuf, SmallCmsgBuf};
#[cfg(target_os = "linux")]
use super::{error_kind, RecvBatch, SendBatch, BATCH};
use super::{Capabilities, Transport};
#[cfg(target_os = "linux")]
use crate::net::TransportError;
use crate::net::{RecvMeta, Transmit};

/// Options for [`Udp6::bind_with`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Udp6Options {
    /// Sets `SO_REUSEPORT` (`SO_REUSEPORT_LB` on FreeBSD), so that several sockets
    /// (threads, processes) can share the port; Linux and FreeBSD spread remotes over them
    /// and keep each remote on one socket. macOS does not spread them: one socket gets the
    /// unicast datagrams.
    pub reuse_port: bool,
}

/// The udp6 transport (see the module documentation).
#[derive(Debug)]
pub struct Udp6 {
    socket: Socket,
    /// Whether the socket is an IPv4 one, because the system has no IPv6.
    ipv4_only: bool,
    /// (Linux) Whether the error queue may hold something: set when a receive or send failed with an
    /// error (a queued ICMP error also makes the next receive or send fail, once), cleared
    /// when reading the queue found it empty. The queue is read only when this is set.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    errors: AtomicBool,
    /// Receives that found nothing since the error queue was last looked at for them (see
    /// `try_recv_batch`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    empty_receives: std::sync::atomic::AtomicU8,
}

fn setsockopt_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is a live socket we own; the option value is a c_int of the
    // length we pass.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for the local address and interface of every datagram received (on the IPv4 socket
/// of a system without IPv6, IPv4's `IP_PKTINFO`).
fn enable_pktinfo(socket: &Socket, ipv4_only: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if ipv4_only {
        return setsockopt_int(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
    }
    debug_assert!(!ipv4_only);
    setsockopt_int(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
}

/// Has ICMP errors queued on the socket's error queue (Linux). They are a capability, not a
/// requirement: a kernel without them still works.
#[cfg(target_os = "linux")]
fn enable_error_queue(socket: &Socket, ipv4_only: bool) {
    let mut levels = vec![(libc::IPPROTO_IP, libc::IP_RECVERR)];
    if !ipv4_only {
        levels.insert(0, (libc::IPPROTO_IPV6, libc::IPV6_RECVERR));
    }
    for (level, name) in levels {
        if let Err(e) = setsockopt_int(socket, level, name, 1) {
            debug!("coapio: udp6 cannot enable ICMP error reports ({name}): {e}");
        }
    }
}

/// A `sockaddr_in6` as a socket address (IPv4-mapped made plain IPv4).
fn from_in6(a: &libc::sockaddr_in6) -> SocketAddr {
    canonical(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(a.sin6_addr.s6_addr),
        u16::from_be(a.sin6_port),
        a.sin6_flowinfo,
        a.sin6_scope_id,
    )))
}

/// A `sockaddr_storage` read back into a socket address (IPv4-mapped made plain IPv4).
fn from_storage(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this is a sockaddr_in6, and it is long enough;
            // sockaddr_storage is aligned for every sockaddr type.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(from_in6(a))
        }
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: as above, for sockaddr_in.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        _ => None,
    }
}

fn to_sockaddr_in6(addr: SocketAddrV6) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is a plain C struct for which all-zero bytes are valid.
    let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = addr.port().to_be();
    sa.sin6_flowinfo = addr.flowinfo();
    sa.sin6_addr = libc::in6_addr {
        s6_addr: addr.ip().octets(),
    };
    sa.sin6_scope_id = addr.scope_id();
    sa
}

impl Udp6 {
    /// Binds a udp6 transport to `addr` (`[::]:5683` for a server on every address,
    /// `[::]:0` for a client). An IPv4 address is bound as its IPv4-mapped form, which
    /// receives only IPv4 (on FreeBSD such a socket reports no arrival address: bind `[::]`
    /// there, or use simplesocketserver for one IPv4 address).
    ///
    /// # Errors
    ///
    /// The socket errors of creating and binding it (`AddrInUse`, …).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::bind_with(addr, &Udp6Options::default())
    }

    /// Binds with [`Udp6Options`].
    ///
    /// # Errors
    ///
    /// As [`Udp6::bind`]; `SO_REUSEPORT` errors too when it was asked for.
    pub fn bind_with(addr: SocketAddr, options: &Udp6Options) -> io::Result<Self> {
        let (socket, ipv4_only) = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
        {
            Ok(socket) => (socket, false),
            #[cfg(target_os = "linux")]
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                log::warn!(
                    "coapio: udp6: this system has no IPv6 ({e}); using an IPv4 socket, so \
                     only IPv4 remotes can be reached"
                );
                let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                (socket, true)
            }
            Err(e) => return Err(e),
        };
        let local = if ipv4_only {
            SocketAddr::V4(ipv4_bind_address(addr)?)
        } else {
            socket.set_only_v6(false)?;
            SocketAddr::V6(to_v6(addr))
        };
        socket.set_nonblocking(true)?;
        if options.reuse_port {
            // FreeBSD spreads remotes over the sockets only with its load-balancing variant.
            #[cfg(target_os = "freebsd")]
            socket.set_reuse_port_lb(true)?;
            #[cfg(not(target_os = "freebsd"))]
            socket.set_reuse_port(true)?;
        }
        enable_pktinfo(&socket, ipv4_only)?;
        #[cfg(target_os = "linux")]
        enable_error_queue(&socket, ipv4_only);
        socket.bind(&local.into())?;
        debug!(
            "coapio: udp6 bound to {}",
            socket
                .local_addr()?
                .as_socket()
                .map_or_else(|| "?".into(), |a| a.to_string())
        );
        Ok(Self {
            socket,
            ipv4_only,
            errors: AtomicBool::new(false),
            empty_receives: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// Whether this transport fell back to an IPv4 socket because the system has no IPv6
    /// (see the module documentation).
    pub fn is_ipv4_only(&self) -> bool {
        self.ipv4_only
    }

    /// Notes that the error queue may hold something (see [`Udp6::errors`]).
    fn note_error(&self, e: &io::Error) {
        if !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) {
            self.errors.store(true, Ordering::Relaxed);
        }
    }

    fn join(&self, group: IpAddr, ifindex: u32) -> io::Result<()> {
        match canonical_ip(group) {
            IpAddr::V6(_) if self.ipv4_only => Err(no_ipv6(group)),
            IpAddr::V6(g) => self.socket.join_multicast_v6(&g, ifindex),
            // The BSDs refuse IPv4 socket options on an IPv6 socket (EINVAL).
            IpAddr::V4(_) if !cfg!(target_os = "linux") => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "udp6 on this system cannot join the IPv4 group {group} (its socket is IPv6, \
                     and the BSD kernels take no IPv4 options on one): join IPv6 groups only"
                ),
            )),
            IpAddr::V4(g) => self
                .socket
                .join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex)),
        }
    }

    /// Receives one datagram, or (Linux, `errqueue`) one entry of the error queue.
    fn recvmsg(
        &self,
        buf: &mut [u8],
        errqueue: bool,
        ctrl: &mut CmsgBuf,
    ) -> io::Result<(usize, libc::msghdr, libc::sockaddr_storage)> {
        #[cfg(target_os = "linux")]
        let flags = if errqueue { libc::MSG_ERRQUEUE } else { 0 };
        #[cfg(not(target_os = "linux"))]
        let flags = 0;
        // SAFETY: sockaddr_storage is a plain C struct for which all-zero bytes are valid.
        let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut hdr = cmsg::unsafe_zeroed_msghdr();
        hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = ctrl.0.as_mut_ptr().cast();
        hdr.msg_controllen = ctrl.0.len() as _;
        // SAFETY: every pointer in hdr points at a live buffer of the stated length for the
        // duration of the call.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut hdr, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if !errqueue {
                self.note_error(&e);
            }
            return Err(e);
        }
        // The returned header refers to `name`, which moves with the return value: callers
        // only read the lengths and flags from it, and the name from the returned copy.
        hdr.msg_name = std::ptr::null_mut();
        Ok((n as usize, hdr, name))
    }
}

impl AsFd for Udp6 {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Transport for Udp6 {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            server: true,
            multicast: true,
            local_addr_info: true,
            icmp_errors: cfg!(target_os = "linux"),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .map(canonical)
            .ok_or_else(|| io::Error::other("udp6 socket has a non-IP address"))
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
        // Bounded, so that a flood of datagrams it drops cannot keep the caller here: it
        // hears `Interrupted` ("call again") and the socket stays readable.
        for _ in 0..64 {
            let mut ctrl = CmsgBuf::new();
            let (n, mut hdr, name) = self.recvmsg(buf, false, &mut ctrl)?;
            if hdr.msg_flags & libc::MSG_TRUNC != 0 {
                debug!(
                    "coapio: udp6 dropped a datagram larger than {} bytes",
                    buf.len()
                );
                continue;
            }
            let Some(remote) = from_storage(&name, hdr.msg_namelen) else {
                continue;
            };
            hdr.msg_control = ctrl.0.as_mut_ptr().cast();
            // SAFETY: hdr.msg_control points at `ctrl`, which recvmsg filled with
            // hdr.msg_controllen bytes and which lives until the end of this iteration.
            let meta = unsafe { meta_of(remote, &hdr) };
            trace!(
                "coapio: udp6 received {n} bytes from {remote} at {:?}",
                meta.local
            );
            return Ok((n, meta));
        }
        Err(io::ErrorKind::Interrupted.into())
    }

    fn try_send(&self, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
        let mut parts = SendParts::new();
        let hdr = parts.header(transmit, contents, self.ipv4_only)?;
        // With IP(V6)_RECVERR, an ICMP error about an earlier datagram (to another remote,
        // maybe) is also left pending on the socket, and the next sendmsg fails with it
        // without sending anything. That error is read, with its real remote, from the
        // error queue; so take such a failure as the pending error it is and send again
        // (reading it cleared it). ECONNREFUSED is never this datagram's own on an
        // unconnected socket; an unreachable host or network that persists is.
        let mut last = None;
        for _ in 0..4 {
            // SAFETY: every pointer in hdr points at a live buffer of the stated length for
            // the duration of the call; sendmsg does not write through msg_iov.
            let n = unsafe { libc::sendmsg(self.socket.as_raw_fd(), &hdr, 0) };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            self.note_error(&err);
            let errno = err.raw_os_error();
            let maybe_pending = matches!(
                errno,
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN)
            );
            if !maybe_pending || (errno != Some(libc::ECONNREFUSED) && last == errno) {
                return Err(err);
            }
            last = errno;
        }
        // Errors about other datagrams kept coming: this one was not sent; a full buffer is
        // what the caller makes of it (a Confirmable message is retransmitted anyway).
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn join_multicast(&self, group: IpAddr, ifindex: u32) -> io::Result<()> {
        self.join(group, ifindex)
    }

    #[cfg(target_os = "linux")]
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        // SAFETY (for the zeroed values): sockaddr_in6, mmsghdr and iovec are plain C structs
        // for which all-zero bytes are valid.
        let mut names: [libc::sockaddr_in6; BATCH] = unsafe { mem::zeroed() };
        let mut ctrls = [const { SmallCmsgBuf::new() }; BATCH];
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let mut count = 0;
        for (((slot, iov), (name, ctrl)), msg) in batch
            .slots_mut()
            .zip(&mut iovs)
            .zip(names.iter_mut().zip(&mut ctrls))
            .zip(&mut msgs)
        {
            *iov = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let hdr = &mut msg.msg_hdr;
            hdr.msg_name = (name as *mut libc::sockaddr_in6).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = ctrl.0.as_mut_ptr().cast();
            hdr.msg_controllen = ctrl.0.len() as _;
            count += 1;
        }
        // SAFETY: each of the `count` headers points at a live name, iovec (itself at a slot
        // of `batch`) and control buffer of the stated lengths, all of which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock
                && self.empty_receives.fetch_add(1, Ordering::Relaxed) >= 1
            {
                // Every second receive that found nothing (the drivers rarely make one: they
                // stop at a short batch): if the descriptor keeps waking its caller for an
                // error-queue entry whose pending error was lost somewhere (as a partial
                // `sendmmsg` loses it, handled there), look at the queue.
                self.empty_receives.store(0, Ordering::Relaxed);
                self.errors.store(true, Ordering::Relaxed);
            }
            self.note_error(&e);
            return Err(e);
        }
        for (i, msg) in msgs.iter().enumerate().take(n as usize) {
            let hdr = &msg.msg_hdr;
            let len = msg.msg_len as usize;
            if hdr.msg_flags & libc::MSG_TRUNC != 0 {
                debug!("coapio: udp6 dropped a datagram larger than its buffer");
                continue;
            }
            let remote = from_name(&names[i], hdr.msg_namelen);
            let Some(remote) = remote else { continue };
            // SAFETY: hdr's control pointer is ctrls[i], which recvmmsg filled with
            // msg_controllen bytes and which lives until the end of this function.
            let meta = unsafe { meta_of(remote, hdr) };
            trace!("coapio: udp6 received {len} bytes from {remote}");
            batch.push_at(i, len, meta);
        }
        // What was received counts, dropped or not: a batch cut short by drops is not a sign
        // that nothing more is waiting.
        if batch.is_empty() {
            // Everything received was dropped: the caller sees nothing and comes back.
            return Err(io::ErrorKind::Interrupted.into());
        }
        Ok(n as usize)
    }

    #[cfg(target_os = "linux")]
    fn try_send_batch(&self, batch: &SendBatch, from: usize) -> io::Result<usize> {
        let mut parts = [const { SendParts::new() }; BATCH];
        // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are valid.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let mut count = 0;
        for (i, (p, msg)) in parts.iter_mut().zip(&mut msgs).enumerate() {
            let Some((transmit, contents)) = batch.get(from + i) else {
                break;
            };
            match p.header(transmit, contents, self.ipv4_only) {
                Ok(hdr) => msg.msg_hdr = hdr,
                // The first datagram's error is this call's; a later one's, the next call's.
                Err(e) if i == 0 => return Err(e),
                Err(_) => break,
            }
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: each of the `count` headers points at the name, iovec and control buffer in
        // `parts` (not moved since) and at datagram bytes in `batch`, all live for the call;
        // sendmmsg does not write through msg_iov.
        let n = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            if (n as usize) < count {
                // The kernel drops the error that stopped a partial `sendmmsg` (it keeps none
                // after the first datagram): if it was a pending ICMP error, its entry is on
                // the error queue, so look there.
                self.errors.store(true, Ordering::Relaxed);
            }
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        self.note_error(&err);
        let maybe_pending = matches!(
            err.raw_os_error(),
            Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN)
        );
        if !maybe_pending {
            return Err(err);
        }
        // The first datagram failed with what may be an error about some other datagram:
        // send it alone, which tells the two apart.
        let Some((transmit, contents)) = batch.get(from) else {
            return Err(err);
        };
        self.try_send(transmit, contents).map(|()| 1)
    }

    #[cfg(target_os = "linux")]
    fn try_recv_error(&self) -> io::Result<Option<TransportError>> {
        if !self.errors.swap(false, Ordering::Relaxed) {
            return Ok(None);
        }
        let found = self.read_error_queue();
        if !matches!(found, Ok(None)) {
            // An entry (there may be more), or the queue could not be read: look again next
            // time. Only an empty queue clears the flag.
            self.errors.store(true, Ordering::Relaxed);
        }
        found
    }
}

#[cfg(target_os = "linux")]
impl Udp6 {
    /// Takes one entry of the socket's error queue, if any.
    fn read_error_queue(&self) -> io::Result<Option<TransportError>> {
        loop {
            let mut ctrl = CmsgBuf::new();
            let mut scratch = [0u8; 64];
            let (_, mut hdr, name) = match self.recvmsg(&mut scratch, true, &mut ctrl) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            let remote = from_storage(&name, hdr.msg_namelen);
            hdr.msg_control = ctrl.0.as_mut_ptr().cast();
            // SAFETY: as in try_recv.
            let mut errors = unsafe { cmsg::received(&hdr) };
            let ee = errors.find_map(|c| match (c.level, c.ty) {
                (libc::IPPROTO_IPV6, libc::IPV6_RECVERR) | (libc::IPPROTO_IP, libc::IP_RECVERR) => {
                    c.read::<libc::sock_extended_err>()
                }
                _ => None,
            });
            match (remote, ee) {
                (Some(remote), Some(ee)) => {
                    let kind = error_kind(ee.ee_errno as i32);
                    debug!(
                        "coapio: udp6 error for {remote}: {kind} (origin {}, type {}, code {})",
                        ee.ee_origin, ee.ee_type, ee.ee_code
                    );
                    return Ok(Some(TransportError::new(remote, kind)));
                }
                _ => trace!("coapio: udp6 skipped an error-queue entry it could not read"),
            }
        }
    }
}

/// The metadata of a datagram from `remote`: its local address and interface from the
/// `IPV6_PKTINFO` control message, when there is one.
///
/// # Safety
///
/// As [`cmsg::received`]: `hdr`'s control buffer is one `recvmsg` filled and still live.
unsafe fn meta_of(remote: SocketAddr, hdr: &libc::msghdr) -> RecvMeta {
    let mut meta = RecvMeta::new(remote);
    // SAFETY: the caller's contract.
    for c in unsafe { cmsg::received(hdr) } {
        match (c.level, c.ty) {
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                if let Some(info) = c.read::<libc::in6_pktinfo>() {
                    let local = canonical_ip(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    meta = meta.with_local(local, Some(info.ipi6_ifindex));
                }
            }
            // The IPv4 socket's (see the module documentation): ipi_addr is where the
            // datagram was sent to.
            #[cfg(target_os = "linux")]
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                if let Some(info) = c.read::<libc::in_pktinfo>() {
                    let local = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                    let ifindex = u32::try_from(info.ipi_ifindex).ok();
                    meta = meta.with_local(IpAddr::V4(local), ifindex);
                }
            }
            _ => {}
        }
    }
    meta
}

/// A received name (in a `sockaddr_in6`'s room) as a socket address (IPv4-mapped made plain
/// IPv4): a `sockaddr_in6` from the IPv6 socket, a `sockaddr_in` from the IPv4 one.
#[cfg(target_os = "linux")]
fn from_name(a: &libc::sockaddr_in6, len: libc::socklen_t) -> Option<SocketAddr> {
    match libc::c_int::from(a.sin6_family) {
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => Some(from_in6(a)),
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, which is smaller than
            // a sockaddr_in6 and needs no stricter alignment.
            let a = unsafe { &*(a as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        _ => None,
    }
}

/// Where an IPv4 socket binds for `addr`: itself, `0.0.0.0` for `[::]`, the IPv4 address of
/// an IPv4-mapped one; an IPv6 address cannot be bound without IPv6.
fn ipv4_bind_address(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match canonical(addr) {
        SocketAddr::V4(v4) => Ok(v4),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            Ok(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, v6.port()))
        }
        SocketAddr::V6(v6) => Err(no_ipv6(IpAddr::V6(*v6.ip()))),
    }
}

/// The error for an IPv6 address given to udp6 on a system without IPv6.
fn no_ipv6(addr: IpAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("{addr} is an IPv6 address, and this system has no IPv6 (udp6 uses IPv4)"),
    )
}

/// What a `msghdr` for sending one datagram points at: the destination, the iovec and the
/// `IPV6_PKTINFO` that chooses the source. It must stay where it is while the header is used.
struct SendParts {
    name: libc::sockaddr_in6,
    iov: libc::iovec,
    ctrl: SmallCmsgBuf,
}

impl SendParts {
    const fn new() -> Self {
        Self {
            // SAFETY: sockaddr_in6 is a plain C struct for which all-zero bytes are valid.
            name: unsafe { mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            ctrl: SmallCmsgBuf::new(),
        }
    }

    /// Fills the parts for `transmit` and returns the header that points at them and at
    /// `contents`; on the IPv4 socket of a system without IPv6 (`ipv4_only`), an IPv6
    /// destination is an error (`EAFNOSUPPORT`).
    fn header(
        &mut self,
        transmit: &Transmit,
        contents: &[u8],
        ipv4_only: bool,
    ) -> io::Result<libc::msghdr> {
        let mut hdr = cmsg::unsafe_zeroed_msghdr();
        let destination = canonical(transmit.destination);
        let dest_is_v4 = destination.is_ipv4();
        // A source is only usable when it has the destination's family.
        let source = transmit
            .source
            .map(canonical_ip)
            .filter(|s| s.is_ipv4() == dest_is_v4);
        #[cfg(target_os = "linux")]
        if ipv4_only {
            let SocketAddr::V4(dest) = destination else {
                // What the kernel says of an IPv6 destination on an IPv4 socket: the core
                // fails the remote's requests at once ("network unreachable").
                trace!("coapio: udp6 has no IPv6 to send to {destination}");
                return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
            };
            // SAFETY: a sockaddr_in fits in the sockaddr_in6's room and needs no stricter
            // alignment; all-zero bytes are a valid sockaddr_in.
            let name = unsafe {
                &mut *(&mut self.name as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>()
            };
            // SAFETY: as above.
            *name = unsafe { mem::zeroed() };
            name.sin_family = libc::AF_INET as libc::sa_family_t;
            name.sin_port = dest.port().to_be();
            name.sin_addr.s_addr = u32::from(*dest.ip()).to_be();
            hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if let Some(IpAddr::V4(source)) = source {
                let len = cmsg::pktinfo4(&mut self.ctrl, source);
                hdr.msg_control = self.ctrl.0.as_mut_ptr().cast();
                hdr.msg_controllen = len as _;
            }
            return Ok(self.finish(hdr, contents));
        }
        debug_assert!(!ipv4_only);
        self.name = to_sockaddr_in6(to_v6(destination));
        hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // Linux takes an IPv4-mapped IPV6_PKTINFO for IPv4 destinations; the BSDs do not
        // (there, routing picks the source of a reply to an IPv4 remote).
        let pktinfo = cfg!(target_os = "linux") || !dest_is_v4;
        if pktinfo && (source.is_some() || (transmit.ifindex.is_some() && !dest_is_v4)) {
            let addr = source.map_or(Ipv6Addr::UNSPECIFIED, ip_to_v6);
            let ifindex = if dest_is_v4 {
                0
            } else {
                transmit.ifindex.unwrap_or(0)
            };
            let len = cmsg::pktinfo6(&mut self.ctrl, addr, ifindex);
            hdr.msg_control = self.ctrl.0.as_mut_ptr().cast();
            hdr.msg_controllen = len as _;
        }
        Ok(self.finish(hdr, contents))
    }

    /// Points `hdr` at the name, the iovec (for `contents`) and nothing else of `self`.
    fn finish(&mut self, mut hdr: libc::msghdr, contents: &[u8]) -> libc::msghdr {
        self.iov = libc::iovec {
            iov_base: contents.as_ptr() as *mut libc::c_void,
            iov_len: contents.len(),
        };
        hdr.msg_name = (&mut self.name as *mut libc::sockaddr_in6).cast();
        hdr.msg_iov = &mut self.iov;
        hdr.msg_iovlen = 1;
        hdr
    }
}
