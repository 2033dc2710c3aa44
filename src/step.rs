//! The one `process` step that joins the protocol core to a transport, shared by the async
//! driver and the C ABI's modes: drain ICMP errors, drain datagrams, fire timers, flush
//! transmits. It never blocks.

use std::io;
use std::time::Instant;

use log::{debug, trace};

use crate::proto::Endpoint;
use crate::transport::{error_kind, RecvBatch, SendBatch, Transport};

/// Datagrams handled per call before returning, so that one busy socket cannot starve the
/// caller's other work; the descriptor stays readable and the caller comes back.
pub(crate) const MAX_PER_STEP: usize = 256;

/// The buffers a driver keeps from step to step: the datagrams received and to be sent, a
/// batch of each (allocated once).
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    recv: RecvBatch,
    send: SendBatch,
}

/// Feeds everything the transport has into the endpoint, fires due timers and sends what the
/// endpoint has to send. Returns whether the batch limit cut receiving short (call again).
#[cfg(feature = "capi")]
pub(crate) fn process(
    ep: &mut Endpoint,
    transport: &dyn Transport,
    now: Instant,
    bufs: &mut Buffers,
) -> bool {
    process_with_budget(ep, transport, now, bufs, MAX_PER_STEP).1
}

/// As [`process`], receiving at most `budget` datagrams (at most [`MAX_PER_STEP`], give or take a
/// batch); returns how many it received and whether it stopped because of the limit (call
/// again).
pub(crate) fn process_with_budget(
    ep: &mut Endpoint,
    transport: &dyn Transport,
    now: Instant,
    bufs: &mut Buffers,
    budget: usize,
) -> (usize, bool) {
    if transport.poll_timeout().is_some_and(|t| t <= now) {
        transport.handle_timeout(now);
    }
    drain_errors(ep, transport, now);
    let mut more = true;
    let mut received = 0;
    let budget = budget.min(MAX_PER_STEP);
    // Bounded in calls too: a socket that keeps failing cannot hold the step.
    for _ in 0..MAX_PER_STEP {
        if received >= budget {
            break;
        }
        match transport.try_recv_batch(&mut bufs.recv) {
            Ok(n) => {
                received += n;
                for i in 0..bufs.recv.len() {
                    if let Some((datagram, meta)) = bufs.recv.get(i) {
                        ep.handle_datagram(now, meta, datagram);
                    }
                }
                if n < bufs.recv.capacity() {
                    // A short batch: nothing more was waiting.
                    more = false;
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                more = false;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A socket error (an ICMP error surfacing on receive): the transport noted it,
                // and its details are on the error queue.
                trace!("coapio: receive error {e}");
                drain_errors(ep, transport, now);
            }
        }
    }
    // Receiving can surface errors (simple6 reads ECONNREFUSED from its sockets): take them
    // now, not at the next wake-up.
    drain_errors(ep, transport, now);
    if ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    flush(ep, transport, now, bufs);
    (received, more)
}

fn drain_errors(ep: &mut Endpoint, transport: &dyn Transport, now: Instant) {
    for _ in 0..MAX_PER_STEP {
        match transport.try_recv_error() {
            Ok(Some(err)) => ep.handle_transport_error(now, &err),
            Ok(None) => return,
            Err(e) => {
                debug!("coapio: reading the error queue failed: {e}");
                return;
            }
        }
    }
}

/// Sends everything the endpoint has queued. A send that fails with a network error fails
/// the requests to that remote at once (one too large to send fails only its own message); a full socket buffer drops the datagram (a
/// Confirmable message is retransmitted anyway).
pub(crate) fn flush(
    ep: &mut Endpoint,
    transport: &dyn Transport,
    now: Instant,
    bufs: &mut Buffers,
) {
    send_all(ep, transport, now, &mut bufs.send);
    // Sending can surface errors too (simple6 sees an earlier ICMP error on send); failing
    // requests for them may queue nothing new, but take them at once.
    drain_errors(ep, transport, now);
    send_all(ep, transport, now, &mut bufs.send);
}

fn send_all(ep: &mut Endpoint, transport: &dyn Transport, now: Instant, batch: &mut SendBatch) {
    while let Some((remote, in_use)) = ep.poll_remote_use() {
        transport.set_in_use(remote, in_use);
    }
    loop {
        batch.clear();
        while let Some(true) = batch.push_with(|buf| ep.poll_transmit(now, buf)) {}
        if batch.is_empty() {
            return;
        }
        let mut i = 0;
        while i < batch.len() {
            match transport.try_send_batch(batch, i) {
                Ok(n) => {
                    trace!("coapio: sent {n} datagrams");
                    // At least one, unless the transport breaks its contract.
                    i += n.max(1);
                }
                Err(e) => {
                    let Some((t, datagram)) = batch.get(i) else {
                        break;
                    };
                    if e.kind() == io::ErrorKind::WouldBlock {
                        debug!(
                            "coapio: socket buffer full; dropped a datagram to {}",
                            t.destination
                        );
                    } else {
                        debug!("coapio: sending to {} failed: {e}", t.destination);
                        if let Some(errno) = e.raw_os_error() {
                            ep.handle_send_error(now, t.destination, datagram, error_kind(errno));
                        }
                    }
                    i += 1;
                }
            }
        }
    }
}

/// The earlier of the core's and the transport's next deadline: what a driver's timer is
/// armed for.
pub(crate) fn next_deadline(ep: &Endpoint, transport: &dyn Transport) -> Option<Instant> {
    match (ep.poll_timeout(), transport.poll_timeout()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A seed from the OS's randomness (through the standard library's hash keys), for
/// [`Config::seed`](crate::proto::Config::seed); never 0.
pub(crate) fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x636f_6170_696f);
    h.finish() | 1
}

/// Locks `m`, also when a thread panicked while holding it: the state behind every lock here
/// stays consistent between calls, so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{RecvMeta, Transmit};
    use crate::proto::{Config, Request};
    use crate::transport::Capabilities;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::{AsFd, BorrowedFd};
    use std::sync::{Arc, Mutex};

    /// A transport that sends nothing and records what it is told about remotes in use.
    #[derive(Debug)]
    struct Recording {
        sock: UdpSocket,
        calls: Arc<Mutex<Vec<(SocketAddr, bool)>>>,
    }

    impl AsFd for Recording {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.sock.as_fd()
        }
    }

    impl Transport for Recording {
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.sock.local_addr()
        }
        fn try_recv(&self, _: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn try_send(&self, _: &Transmit, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn set_in_use(&self, remote: SocketAddr, in_use: bool) {
            lock(&self.calls).push((remote, in_use));
        }
    }

    /// The transport hears that a remote is in use from its first open request (an
    /// observation included) to its last, in both drivers (they share `flush`).
    #[test]
    fn a_remote_is_in_use_from_its_first_open_request_to_its_last() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let transport = Recording {
            sock: UdpSocket::bind("[::1]:0").unwrap(),
            calls: calls.clone(),
        };
        let mut ep = Endpoint::new(Arc::new(Config::default()));
        let mut bufs = Buffers::default();
        let now = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) =
            ("[::1]:5683".parse().unwrap(), "[::1]:5684".parse().unwrap());
        let r1 = ep.request(now, a, Request::get("/obs").observe()).unwrap();
        let r2 = ep.request(now, a, Request::get("/x")).unwrap();
        let r3 = ep.request(now, b, Request::get("/x")).unwrap();
        flush(&mut ep, &transport, now, &mut bufs);
        assert_eq!(*lock(&calls), [(a, true), (b, true)]);
        ep.cancel(now, r2);
        flush(&mut ep, &transport, now, &mut bufs);
        assert_eq!(lock(&calls).len(), 2, "a still has its observation");
        ep.cancel(now, r1);
        ep.cancel(now, r3);
        flush(&mut ep, &transport, now, &mut bufs);
        assert_eq!(lock(&calls)[2..], [(a, false), (b, false)]);
    }
}
