//! The transports on real loopback sockets: udp6's dual stack, PKTINFO and error queue;
//! simple6's connected sockets; simplesocketserver's refusal of any-addresses.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coapio::net::{RecvMeta, Transmit, TransportErrorKind};
use coapio::transport::{Simple6, SimpleServer, Transport, Udp6};

/// Polls `f` until it yields something or a second has passed.
fn within_a_second<T>(mut f: impl FnMut() -> io::Result<Option<T>>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f().expect("transport error") {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "nothing arrived within a second"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn recv(t: &dyn Transport) -> (Vec<u8>, RecvMeta) {
    let mut buf = [0u8; 2048];
    within_a_second(|| match t.try_recv(&mut buf) {
        Ok((n, meta)) => Ok(Some((buf[..n].to_vec(), meta))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    })
}

fn transmit(
    to: SocketAddr,
    source: Option<std::net::IpAddr>,
    ifindex: Option<u32>,
    len: usize,
) -> Transmit {
    let mut t = Transmit::new(to, len);
    t.source = source;
    t.ifindex = ifindex;
    t
}

#[test]
fn udp6_serves_ipv4_and_ipv6_and_replies_from_the_arrival_address() {
    let server = Udp6::bind("[::]:0".parse().unwrap()).unwrap();
    let port = server.local_addr().unwrap().port();
    for dest in ["127.0.0.1", "::1", "127.0.0.2"] {
        let dest: SocketAddr = (dest.parse::<std::net::IpAddr>().unwrap(), port).into();
        // A connected client socket accepts only replies from exactly `dest`.
        let local: SocketAddr = if dest.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap();
        let client = UdpSocket::bind(local).unwrap();
        client.connect(dest).unwrap();
        client.send(b"ping").unwrap();
        let (data, meta) = recv(&server);
        assert_eq!(data, b"ping");
        assert_eq!(
            meta.remote,
            client.local_addr().unwrap(),
            "IPv4 peers appear as plain IPv4"
        );
        assert_eq!(
            meta.local,
            Some(dest.ip()),
            "PKTINFO names the arrival address"
        );
        assert!(meta.ifindex.is_some());
        let t = transmit(meta.remote, meta.local, meta.ifindex, 4);
        server.try_send(&t, b"pong").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 16];
        let n = client
            .recv(&mut buf)
            .expect("reply from the address the request went to");
        assert_eq!(&buf[..n], b"pong");
    }
}

#[test]
fn udp6_reports_a_closed_port_at_once() {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_v6 = UdpSocket::bind("[::1]:0").unwrap();
    let targets = [
        closed.local_addr().unwrap(),
        closed_v6.local_addr().unwrap(),
    ];
    drop((closed, closed_v6));
    let client = Udp6::bind("[::]:0".parse().unwrap()).unwrap();
    for target in targets {
        let start = Instant::now();
        client
            .try_send(&transmit(target, None, None, 1), b"x")
            .unwrap();
        // As a driver does when the descriptor becomes readable: receive, which notes the
        // error the ICMP message left pending, then read the error queue.
        let err = within_a_second(|| {
            let _ = client.try_recv(&mut [0u8; 64]);
            client.try_recv_error()
        });
        assert_eq!(err.remote, target);
        assert_eq!(err.kind, TransportErrorKind::PortUnreachable);
        assert!(start.elapsed() < Duration::from_millis(500));
    }
    assert!(client.try_recv_error().unwrap().is_none());
}

#[test]
fn udp6_drops_truncated_datagrams() {
    let server = Udp6::bind("[::1]:0".parse().unwrap()).unwrap();
    let to = server.local_addr().unwrap();
    let client = UdpSocket::bind("[::1]:0").unwrap();
    client.send_to(&[7u8; 300], to).unwrap();
    client.send_to(b"small", to).unwrap();
    let mut buf = [0u8; 100];
    let got = within_a_second(|| match server.try_recv(&mut buf) {
        Ok((n, _)) => Ok(Some(buf[..n].to_vec())),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    });
    assert_eq!(got, b"small");
}

#[test]
fn simple6_talks_to_ipv4_and_ipv6_and_reports_refusal() {
    let t = Simple6::new().unwrap();
    assert!(t.local_addr().is_err());
    for server in ["127.0.0.1:0", "[::1]:0"] {
        let server = UdpSocket::bind(server).unwrap();
        let addr = server.local_addr().unwrap();
        t.try_send(&transmit(addr, None, None, 5), b"hello")
            .unwrap();
        let mut buf = [0u8; 16];
        server
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        server.send_to(b"back", from).unwrap();
        let (data, meta) = recv(&t);
        assert_eq!((data.as_slice(), meta.remote), (&b"back"[..], addr));
        drop(server);
        t.try_send(&transmit(addr, None, None, 5), b"again")
            .unwrap();
        let mut buf = [0u8; 16];
        let err = within_a_second(|| {
            let _ = t.try_recv(&mut buf);
            t.try_recv_error()
        });
        assert_eq!(
            (err.remote, err.kind),
            (addr, TransportErrorKind::PortUnreachable)
        );
    }
}

#[test]
fn simple_server_refuses_any_address_and_serves_a_concrete_one() {
    for any in ["0.0.0.0:5683", "[::]:0"] {
        let err = SimpleServer::bind(any.parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("can not be bound to any-address"),
            "{err}"
        );
    }
    let server = SimpleServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(addr).unwrap();
    client.send(b"q").unwrap();
    let (data, meta) = recv(&server);
    assert_eq!(
        (data.as_slice(), meta.remote),
        (&b"q"[..], client.local_addr().unwrap())
    );
    server
        .try_send(&transmit(meta.remote, None, None, 1), b"a")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(client.recv(&mut buf).unwrap(), 1);
}

/// A peer of simple6: a socket on `[::1]` and the address of the simple6 socket that sent
/// to it (known after `greet`).
struct Peer {
    sock: UdpSocket,
    client: Option<SocketAddr>,
}

impl Peer {
    fn new() -> Self {
        let sock = UdpSocket::bind("[::1]:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Self { sock, client: None }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Sends a datagram from `t` to this peer, and learns which socket sent it.
    fn greet(&mut self, t: &Simple6) {
        t.try_send(&transmit(self.addr(), None, None, 2), b"hi")
            .unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = self.sock.recv_from(&mut buf).unwrap();
        self.client = Some(from);
    }

    /// Answers late, to the socket that sent the greeting.
    fn answer(&self) {
        self.sock.send_to(b"late", self.client.unwrap()).unwrap();
    }
}

/// The remotes whose datagrams `t` delivers within 300 ms.
fn delivered(t: &Simple6) -> Vec<SocketAddr> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let mut from = Vec::new();
    while start.elapsed() < Duration::from_millis(300) {
        match t.try_recv(&mut buf) {
            Ok((_, meta)) => from.push(meta.remote),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    from.sort();
    from
}

fn sorted(mut v: Vec<SocketAddr>) -> Vec<SocketAddr> {
    v.sort();
    v
}

#[test]
fn simple6_keeps_a_quiet_socket_in_use_past_its_idle_time() {
    let idle = Duration::from_millis(100);
    let t = Simple6::with_limits(16, idle).unwrap();
    let (mut observed, mut done) = (Peer::new(), Peer::new());
    t.set_in_use(observed.addr(), true);
    observed.greet(&t);
    done.greet(&t);
    // Both stay quiet for longer than the idle time; the next send sweeps.
    std::thread::sleep(idle * 3);
    Peer::new().greet(&t);
    observed.answer();
    done.answer();
    assert_eq!(
        delivered(&t),
        [observed.addr()],
        "the remote in use kept its socket; the idle one lost it"
    );
    // Once not in use, it is idle from then on: closed after the idle time.
    t.set_in_use(observed.addr(), false);
    std::thread::sleep(idle * 3);
    Peer::new().greet(&t);
    observed.answer();
    assert_eq!(delivered(&t), []);
}

#[test]
fn simple6_caps_its_sockets_least_recently_used_first() {
    let t = Simple6::with_limits(2, Duration::from_secs(60)).unwrap();
    let (mut a, mut b, mut c) = (Peer::new(), Peer::new(), Peer::new());
    a.greet(&t);
    std::thread::sleep(Duration::from_millis(5));
    b.greet(&t);
    std::thread::sleep(Duration::from_millis(5));
    a.greet(&t);
    std::thread::sleep(Duration::from_millis(5));
    // A third remote: b, the least recently used, makes room.
    c.greet(&t);
    for p in [&a, &b, &c] {
        p.answer();
    }
    assert_eq!(delivered(&t), sorted(vec![a.addr(), c.addr()]));
}

#[test]
fn simple6_refuses_a_new_remote_when_every_socket_is_in_use() {
    let t = Simple6::with_limits(2, Duration::from_secs(60)).unwrap();
    let (mut a, mut b, mut c) = (Peer::new(), Peer::new(), Peer::new());
    for p in [&mut a, &mut b] {
        t.set_in_use(p.addr(), true);
        p.greet(&t);
    }
    let err = t
        .try_send(&transmit(c.addr(), None, None, 2), b"hi")
        .unwrap_err();
    assert!(err.to_string().contains("every one is in use"), "{err}");
    let reported = t
        .try_recv_error()
        .unwrap()
        .expect("the refusal is reported");
    assert_eq!(reported.remote, c.addr());
    a.answer();
    b.answer();
    assert_eq!(delivered(&t), sorted(vec![a.addr(), b.addr()]));
    // One ends: the new remote takes its socket.
    t.set_in_use(a.addr(), false);
    c.greet(&t);
    a.answer();
    b.answer();
    c.answer();
    assert_eq!(delivered(&t), sorted(vec![b.addr(), c.addr()]));
}

/// One busy remote does not hold back another's datagram on simple6: readable sockets are
/// read in turn, one datagram each.
#[test]
fn simple6_reads_its_remotes_in_turn() {
    let peer = || {
        let s = UdpSocket::bind("[::1]:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let a = s.local_addr().unwrap();
        (s, a)
    };
    let greet = |t: &Simple6, peer: &UdpSocket, addr: SocketAddr| {
        t.try_send(&Transmit::new(addr, 1), b"h").unwrap();
        let mut b = [0u8; 8];
        peer.recv_from(&mut b).unwrap().1
    };
    let t = Simple6::new().unwrap();
    let (a, a_addr) = peer();
    let (b, b_addr) = peer();
    let to_a = greet(&t, &a, a_addr);
    let to_b = greet(&t, &b, b_addr);
    for _ in 0..200 {
        a.send_to(b"A", to_a).unwrap();
    }
    b.send_to(b"B", to_b).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut buf = [0u8; 64];
    let position = (0..1000)
        .position(|_| matches!(t.try_recv(&mut buf), Ok((_, meta)) if meta.remote == b_addr));
    let position = position.expect("B's datagram arrives");
    assert!(
        position < 4,
        "B's one datagram came only after {position} of A's"
    );
}

/// udp6 takes datagrams in batches (one `recvmmsg`) and sends them in batches (one
/// `sendmmsg`): more than a batch arrive whole, in order, each with its sender and arrival
/// address, and a batch sent from a given source arrives from there.
#[test]
fn udp6_receives_and_sends_in_batches() {
    use coapio::transport::{RecvBatch, SendBatch, BATCH};
    let server = Udp6::bind("[::]:0".parse().unwrap()).unwrap();
    let port = server.local_addr().unwrap().port();
    let to: SocketAddr = ("127.0.0.2".parse::<std::net::IpAddr>().unwrap(), port).into();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let total = BATCH + BATCH / 2;
    for i in 0..total {
        client.send_to(&vec![i as u8; 1 + i * 37], to).unwrap();
    }
    let mut batch = RecvBatch::new();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < total && start.elapsed() < Duration::from_secs(1) {
        match server.try_recv_batch(&mut batch) {
            Ok(n) => {
                assert!(n <= BATCH && batch.len() == n, "nothing is dropped here");
                for i in 0..batch.len() {
                    let (bytes, meta) = batch.get(i).unwrap();
                    assert_eq!(meta.remote, client.local_addr().unwrap());
                    assert_eq!(meta.local, Some(to.ip()));
                    got.push(bytes.to_vec());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{e}"),
        }
    }
    let expected: Vec<Vec<u8>> = (0..total).map(|i| vec![i as u8; 1 + i * 37]).collect();
    assert_eq!(got, expected);
    assert!(batch.get(batch.len()).is_none());

    // The replies, one batch, from the address the datagrams arrived at.
    let mut out = SendBatch::new();
    let dest = client.local_addr().unwrap();
    for i in 0..BATCH {
        let added = out.push_with(|buf| {
            buf.clear();
            buf.extend_from_slice(&[i as u8; 3]);
            Some(transmit(dest, Some(to.ip()), None, 3))
        });
        assert_eq!(added, Some(true));
    }
    assert!(out.is_full());
    assert_eq!(out.push_with(|_| unreachable!()), None);
    let mut sent = 0;
    while sent < out.len() {
        sent += server.try_send_batch(&out, sent).unwrap();
    }
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    for i in 0..BATCH {
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[i as u8; 3][..], to));
    }
}

/// An ICMP error about a datagram sent in a batch surfaces at the next receive and is then
/// read with its remote.
#[test]
fn udp6_batch_errors_are_noted_and_read() {
    use coapio::transport::{RecvBatch, SendBatch};
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = closed.local_addr().unwrap();
    drop(closed);
    let client = Udp6::bind("[::]:0".parse().unwrap()).unwrap();
    assert!(client.try_recv_error().unwrap().is_none());
    let mut out = SendBatch::new();
    out.push_with(|buf| {
        buf.clear();
        buf.push(1);
        Some(transmit(target, None, None, 1))
    });
    assert_eq!(client.try_send_batch(&out, 0).unwrap(), 1);
    let mut batch = RecvBatch::new();
    let err = within_a_second(|| {
        let _ = client.try_recv_batch(&mut batch);
        client.try_recv_error()
    });
    assert_eq!(
        (err.remote, err.kind),
        (target, TransportErrorKind::PortUnreachable)
    );
    assert!(client.try_recv_error().unwrap().is_none());
}

/// A batch whose first datagram draws an ICMP error: the kernel can stop `sendmmsg` after the
/// first datagram and drop that error, which still sits on the error queue (and keeps the
/// descriptor signalling). The transport reads the queue after such a partial batch.
#[test]
fn udp6_partial_batch_errors_are_not_lost() {
    use coapio::transport::{RecvBatch, SendBatch};
    let closed = UdpSocket::bind("[::1]:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let live = UdpSocket::bind("[::1]:0").unwrap();
    let client = Udp6::bind("[::]:0".parse().unwrap()).unwrap();
    let mut out = SendBatch::new();
    for to in [dead, live.local_addr().unwrap(), live.local_addr().unwrap()] {
        out.push_with(|buf| {
            buf.clear();
            buf.push(1);
            Some(transmit(to, None, None, 1))
        });
    }
    let mut sent = 0;
    let mut errors = Vec::new();
    while sent < out.len() {
        match client.try_send_batch(&out, sent) {
            Ok(n) => sent += n,
            Err(_) => sent += 1,
        }
        errors.extend(client.try_recv_error().unwrap());
    }
    let mut batch = RecvBatch::new();
    let start = Instant::now();
    while errors.is_empty() && start.elapsed() < Duration::from_secs(1) {
        let _ = client.try_recv_batch(&mut batch);
        errors.extend(client.try_recv_error().unwrap());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].remote, errors[0].kind),
        (dead, TransportErrorKind::PortUnreachable)
    );
}
