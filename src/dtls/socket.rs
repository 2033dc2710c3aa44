//! [`DtlsTransport`]: any [`Transport`] with the DTLS layer in front, so that the drivers (the
//! async facade's and the C ABI's, which share `crate::step`) run `coaps://` unchanged: they
//! receive and send plaintext CoAP datagrams, and arm a timer for the layer's deadline too
//! ([`Transport::poll_timeout`]).
//!
//! One socket can carry both: a datagram whose first byte is a DTLS content type (20–25) goes
//! to the DTLS layer, one that starts like a CoAP message (version 1: 0x40–0x7f) is plain
//! (RFC 7983's demultiplexing), if plain CoAP is allowed (a client's socket; a server's DTLS
//! socket takes DTLS only, as libcoap's does). A datagram to a remote goes in its DTLS session
//! when the remote was marked secure (a `coaps://` request) or has a session (a peer that
//! opened one).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use log::{debug, warn};

use super::{Dtls, DtlsEvent};
use crate::net::{RecvMeta, SecurityError, Transmit, TransportError, TransportErrorKind};
use crate::transport::{Capabilities, Transport};

/// The remotes that are reached over DTLS (`coaps://`), shared with whoever makes requests,
/// each with the name it is known by (the URI's host: its certificate must carry it; `None`
/// for an IP literal, whose address must be in the certificate).
pub type SecureRemotes = Arc<Mutex<HashMap<SocketAddr, Option<String>>>>;

#[derive(Debug)]
struct State {
    dtls: Dtls,
    errors: VecDeque<TransportError>,
}

/// A transport whose datagrams to and from some remotes go through DTLS.
#[derive(Debug)]
pub struct DtlsTransport {
    inner: Box<dyn Transport>,
    state: Mutex<State>,
    secure: SecureRemotes,
    plain: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a datagram is a DTLS record (RFC 7983: first byte 20 to 63; DTLS 1.2 uses 20–25).
fn is_dtls(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (20..=63).contains(b))
}

impl DtlsTransport {
    /// Puts `dtls` in front of `inner`; `plain`: plain CoAP datagrams pass too (a client's
    /// socket), else they are dropped (a server's `coaps` socket).
    pub fn new(inner: Box<dyn Transport>, dtls: Dtls, plain: bool) -> Self {
        Self {
            inner,
            state: Mutex::new(State {
                dtls,
                errors: VecDeque::new(),
            }),
            secure: SecureRemotes::default(),
            plain,
        }
    }

    /// The set of remotes reached over DTLS, to mark the remote of a `coaps://` request.
    pub fn secure_remotes(&self) -> SecureRemotes {
        self.secure.clone()
    }

    /// Sends what the layer has to send, and turns its failures into transport errors for
    /// the core (which fails the requests to that remote at once).
    fn flush(&self, st: &mut State) {
        while let Some((to, d)) = st.dtls.poll_transmit() {
            if let Err(e) = self.inner.try_send(&Transmit::new(to, d.len()), &d) {
                debug!("coapio: sending a DTLS record to {to} failed: {e}");
            }
        }
        while let Some(ev) = st.dtls.poll_event() {
            match ev {
                DtlsEvent::Failed {
                    remote,
                    error,
                    reason,
                } => {
                    warn!("coapio: DTLS with {remote} failed: {reason}");
                    let kind = TransportErrorKind::Security(error);
                    st.errors.push_back(TransportError::new(remote, kind));
                }
                DtlsEvent::Connected(remote) => debug!("coapio: DTLS session with {remote}"),
                DtlsEvent::Closed(remote) => debug!("coapio: DTLS session with {remote} closed"),
            }
        }
    }
}

crate::transport::forward_readiness!(DtlsTransport, inner);

impl Transport for DtlsTransport {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
        // Bounded: at most this many datagrams are taken off the socket for the DTLS layer
        // (handshakes, records that yield nothing) before returning, so that a flood cannot
        // keep the driver here: `Interrupted` says "call again", and the socket stays ready.
        for _ in 0..64 {
            {
                let mut st = lock(&self.state);
                if let Some((from, plain)) = st.dtls.poll_plaintext() {
                    if plain.len() > buf.len() {
                        continue; // never delivered cut short
                    }
                    buf[..plain.len()].copy_from_slice(&plain);
                    return Ok((plain.len(), RecvMeta::new(from)));
                }
            }
            let (n, meta) = self.inner.try_recv(buf)?;
            if is_dtls(&buf[..n]) {
                let mut st = lock(&self.state);
                st.dtls
                    .handle_datagram(Instant::now(), meta.remote, &buf[..n]);
                self.flush(&mut st);
                continue;
            }
            if self.plain && !lock(&self.secure).contains_key(&meta.remote) {
                return Ok((n, meta));
            }
            // Plain CoAP where only DTLS is taken: dropped.
        }
        // What the last datagrams decrypted is handed out before saying "call again": the
        // socket's readiness does not show it, so a caller that takes `Interrupted` for
        // "nothing more" must find the queue empty.
        let mut st = lock(&self.state);
        while let Some((from, plain)) = st.dtls.poll_plaintext() {
            if plain.len() <= buf.len() {
                buf[..plain.len()].copy_from_slice(&plain);
                return Ok((plain.len(), RecvMeta::new(from)));
            }
        }
        Err(io::ErrorKind::Interrupted.into())
    }

    fn try_send(&self, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
        let to = transmit.destination;
        let secure = lock(&self.secure).get(&to).cloned();
        let mut st = lock(&self.state);
        if secure.is_none() && !st.dtls.has_session(to) {
            if !self.plain {
                // Nothing plain leaves a DTLS-only socket: the request fails at once.
                warn!("coapio: {to} is not reached over DTLS, and this socket takes DTLS only");
                let kind = TransportErrorKind::Security(SecurityError::PlainRefused);
                st.errors.push_back(TransportError::new(to, kind));
                return Ok(());
            }
            drop(st);
            return self.inner.try_send(transmit, contents);
        }
        let name = secure.flatten();
        if let Err(e) = st
            .dtls
            .send_to(Instant::now(), to, name.as_deref(), contents)
        {
            warn!("coapio: cannot send to {to} over DTLS: {e}");
            let kind = TransportErrorKind::Security(e.security());
            st.errors.push_back(TransportError::new(to, kind));
        }
        self.flush(&mut st);
        Ok(())
    }

    fn try_recv_error(&self) -> io::Result<Option<TransportError>> {
        if let Some(e) = lock(&self.state).errors.pop_front() {
            return Ok(Some(e));
        }
        self.inner.try_recv_error()
    }

    fn set_in_use(&self, remote: SocketAddr, in_use: bool) {
        // A remote marked for DTLS by a coaps:// request is unmarked when its last request
        // ends (its session, if any, goes on until it idles out), so the set stays bounded
        // by the remotes in use.
        if !in_use {
            lock(&self.secure).remove(&remote);
        }
        self.inner.set_in_use(remote, in_use);
    }

    fn join_multicast(&self, group: std::net::IpAddr, ifindex: u32) -> io::Result<()> {
        self.inner.join_multicast(group, ifindex)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = lock(&self.state).dtls.poll_timeout();
        match (own, self.inner.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&self, now: Instant) {
        {
            let mut st = lock(&self.state);
            if st.dtls.poll_timeout().is_some_and(|t| t <= now) {
                st.dtls.handle_timeout(now);
                self.flush(&mut st);
            }
        }
        self.inner.handle_timeout(now);
    }
}
