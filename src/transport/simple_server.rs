//! simplesocketserver: a server bound to one concrete address, with plain `recvfrom` and
//! `sendto`, for any Unix and Windows.
//!
//! Because the socket is bound to one address, replies leave from the address requests were
//! sent to without any ancillary data. Binding it to an any-address (`0.0.0.0`, `[::]`) is
//! refused: replies could then leave from another address than the request arrived on, which
//! clients reject. Use [`super::Udp6`] to serve every address.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::SockRef;

use super::simple6::recv_checked;
use super::{error_kind, Capabilities, Transport};
use crate::net::{RecvMeta, Transmit};

/// The message users of aiocoap know, followed by what to do instead.
pub const ANY_ADDRESS_REFUSED: &str = "The transport can not be bound to any-address. \
    Bind simplesocketserver to a concrete address (such as 127.0.0.1:5683 or [::1]:5683), \
    or use the udp6 transport to serve every address.";

/// The simplesocketserver transport (see the module documentation).
#[derive(Debug)]
pub struct SimpleServer {
    socket: UdpSocket,
    local: SocketAddr,
}

impl SimpleServer {
    /// Binds to one concrete address (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] with [`ANY_ADDRESS_REFUSED`] for an any-address; the
    /// socket errors of binding.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        if addr.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                ANY_ADDRESS_REFUSED,
            ));
        }
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        log::debug!("coapio: simplesocketserver bound to {local}");
        Ok(Self { socket, local })
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for SimpleServer {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for SimpleServer {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.socket.as_socket()
    }
}

impl Transport for SimpleServer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            server: true,
            ..Capabilities::default()
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
        loop {
            match recv_checked(SockRef::from(&self.socket), buf) {
                Ok(Some((n, Some(from)))) => {
                    return Ok((n, RecvMeta::new(from).with_local(self.local.ip(), None)))
                }
                Ok(_) => continue,
                // An ICMP error from an earlier send (ECONNREFUSED; WSAECONNRESET or
                // WSAENETRESET on Windows): this transport cannot say for whom.
                Err(e)
                    if e.raw_os_error().is_some_and(|c| {
                        !matches!(error_kind(c), crate::net::TransportErrorKind::Other(_))
                    }) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_send(&self, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
        self.socket
            .send_to(contents, transmit.destination)
            .map(|_| ())
    }
}
