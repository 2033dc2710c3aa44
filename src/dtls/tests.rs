//! The DTLS layer between two in-memory endpoints: handshakes with cookies, data both ways,
//! failures, bounds, and garbage.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 5684))
}

fn server() -> Dtls {
    Dtls::new(DtlsConfig::psk_server(|id: &[u8]| {
        (id == b"client1").then(|| b"secret-key-1".to_vec())
    }))
    .unwrap()
}

/// Moves datagrams between `a` (at `aa`) and `b` (at `ba`) until both are quiet; returns
/// how many went each way.
fn pump(
    now: Instant,
    a: &mut Dtls,
    aa: SocketAddr,
    b: &mut Dtls,
    ba: SocketAddr,
) -> (usize, usize) {
    let (mut ab, mut ba_n) = (0, 0);
    for _ in 0..50 {
        let mut quiet = true;
        while let Some((to, d)) = a.poll_transmit() {
            assert_eq!(to, ba);
            b.handle_datagram(now, aa, &d);
            ab += 1;
            quiet = false;
        }
        while let Some((to, d)) = b.poll_transmit() {
            assert_eq!(to, aa);
            a.handle_datagram(now, ba, &d);
            ba_n += 1;
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    (ab, ba_n)
}

#[test]
fn psk_handshake_with_a_cookie_and_data_both_ways() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
    let mut s = server();
    c.send(now, sa, b"GET /hello").unwrap();
    // The first ClientHello gets a HelloVerifyRequest and leaves nothing on the server.
    let (_, hello) = c.poll_transmit().unwrap();
    s.handle_datagram(now, ca, &hello);
    assert_eq!(s.stats(), DtlsStats::default());
    let (_, hvr) = s.poll_transmit().unwrap();
    assert_eq!(hvr[13], 3, "HelloVerifyRequest");
    c.handle_datagram(now, sa, &hvr);
    pump(now, &mut c, ca, &mut s, sa);
    assert_eq!(s.poll_event(), Some(DtlsEvent::Connected(ca)));
    assert_eq!(c.poll_event(), Some(DtlsEvent::Connected(sa)));
    assert_eq!(s.poll_plaintext(), Some((ca, b"GET /hello".to_vec())));
    s.send(now, ca, b"2.05 hello").unwrap();
    pump(now, &mut c, ca, &mut s, sa);
    assert_eq!(c.poll_plaintext(), Some((sa, b"2.05 hello".to_vec())));
    assert_eq!(s.stats().established, 1);
    assert_eq!(c.stats().established, 1);
}

#[test]
fn a_wrong_key_or_identity_fails_the_handshake() {
    for (id, key, expected) in [
        ("client1", "wrong", SecurityError::HandshakeTimeout),
        ("nobody", "secret-key-1", SecurityError::UnknownIdentity),
    ] {
        let now = Instant::now();
        let (ca, sa) = (addr(1), addr(2));
        let mut c = Dtls::new(DtlsConfig::psk_client(id, key)).unwrap();
        let mut s = server();
        c.send(now, sa, b"x").unwrap();
        pump(now, &mut c, ca, &mut s, sa);
        // An unknown identity gets an alert; with a wrong key the Finished does not decrypt,
        // which DTLS drops silently: the handshake times out.
        let mut t = now;
        let mut failed = None;
        while failed.is_none() && t < now + Duration::from_secs(120) {
            t += Duration::from_secs(1);
            c.handle_timeout(t);
            s.handle_timeout(t);
            pump(t, &mut c, ca, &mut s, sa);
            failed = std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
                DtlsEvent::Failed { error, .. } => Some(error),
                _ => None,
            });
        }
        assert_eq!(failed, Some(expected), "{id}/{key}");
        assert_eq!(s.stats().established, 0);
        assert!(s.poll_plaintext().is_none());
    }
}

#[test]
fn garbage_and_client_hello_floods_leave_no_state() {
    let now = Instant::now();
    let mut s = server();
    let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
    c.send(now, addr(2), b"x").unwrap();
    let (_, hello) = c.poll_transmit().unwrap();
    for i in 0..10_000u16 {
        s.handle_datagram(now, addr(100 + i), &hello);
        s.handle_datagram(now, addr(100 + i), &[22, 254, 253, 0, 0, 1, 2, 3]);
        s.handle_datagram(now, addr(100 + i), &[0x40, 1, 0, 1]);
    }
    assert_eq!(s.stats(), DtlsStats::default());
    // Every ClientHello got a HelloVerifyRequest, nothing else went out.
    assert_eq!(std::iter::from_fn(|| s.poll_transmit()).count(), 10_000);
    assert!(s.poll_timeout().is_none());
}

#[test]
fn lost_handshake_flights_are_sent_again() {
    let start = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
    let mut s = server();
    c.send(start, sa, b"hi").unwrap();
    // The first ClientHello is lost.
    assert!(c.poll_transmit().is_some());
    let mut now = start;
    for _ in 0..20 {
        now += Duration::from_millis(500);
        c.handle_timeout(now);
        s.handle_timeout(now);
        pump(now, &mut c, ca, &mut s, sa);
        if c.stats().established == 1 {
            break;
        }
    }
    assert_eq!(
        c.stats().established,
        1,
        "the handshake completed after a loss"
    );
    assert_eq!(s.poll_plaintext(), Some((ca, b"hi".to_vec())));
}

#[test]
fn a_restarted_client_handshakes_again_at_once() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut s = server();
    for round in 0..2 {
        let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
        c.send(now, sa, format!("round {round}").as_bytes())
            .unwrap();
        pump(now, &mut c, ca, &mut s, sa);
        assert_eq!(
            s.poll_plaintext(),
            Some((ca, format!("round {round}").into_bytes()))
        );
    }
    assert_eq!(s.stats().established, 1);
}

#[test]
fn sessions_are_bounded_and_idle_ones_close() {
    let start = Instant::now();
    let sa = addr(2);
    let mut s = Dtls::new(DtlsConfig {
        max_sessions: 3,
        ..DtlsConfig::psk_server(|_: &[u8]| Some(b"k".to_vec()))
    })
    .unwrap();
    for i in 0..5u16 {
        let mut c = Dtls::new(DtlsConfig::psk_client("x", "k")).unwrap();
        c.send(start, sa, b"x").unwrap();
        pump(start, &mut c, addr(10 + i), &mut s, sa);
    }
    assert_eq!(s.stats().established, 3);
    let later = start + DtlsConfig::default().idle_timeout;
    s.handle_timeout(later);
    assert_eq!(s.stats(), DtlsStats::default());
}

/// Garbage, truncated and replayed records into an established session change nothing:
/// no panic, the session keeps working.
#[test]
fn garbage_into_a_session_is_dropped() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
    let mut s = server();
    c.send(now, sa, b"first").unwrap();
    pump(now, &mut c, ca, &mut s, sa);
    assert_eq!(s.poll_plaintext(), Some((ca, b"first".to_vec())));
    c.send(now, sa, b"second").unwrap();
    let (_, record) = c.poll_transmit().unwrap();
    let mut seed = 1u32;
    for i in 0..2000usize {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut d = record.clone();
        match i % 4 {
            0 => d.truncate(seed as usize % d.len()),
            1 => {
                let at = seed as usize % d.len();
                d[at] ^= 1 << (seed % 8);
            }
            2 => d = vec![(seed >> 8) as u8; 1 + seed as usize % 300],
            _ => {}
        }
        s.handle_datagram(now, ca, &d);
        assert_eq!(
            s.stats().established,
            1,
            "input {i} ended the session: {d:02x?}"
        );
    }
    // The record itself arrived once among them (i % 4 == 3 sent it unchanged): delivered
    // once, replays dropped.
    assert_eq!(s.poll_plaintext(), Some((ca, b"second".to_vec())));
    assert_eq!(s.poll_plaintext(), None);
    assert_eq!(s.stats().established, 1);
    c.send(now, sa, b"third").unwrap();
    pump(now, &mut c, ca, &mut s, sa);
    assert_eq!(s.poll_plaintext(), Some((ca, b"third".to_vec())));
}

/// A session established between `c` (at `ca`) and the test server (at `sa`).
fn established(now: Instant, ca: SocketAddr, sa: SocketAddr) -> (Dtls, Dtls) {
    let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
    let mut s = server();
    c.send(now, sa, b"first").unwrap();
    pump(now, &mut c, ca, &mut s, sa);
    assert_eq!(s.poll_plaintext(), Some((ca, b"first".to_vec())));
    (c, s)
}

/// A ClientHello-looking record without a cookie, forged with the peer's address, does not
/// end its established session (RFC 6347 §4.2.8); from another address it leaves no error
/// behind that another session would take for its own.
#[test]
fn forged_client_hellos_end_no_session() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let (mut c, mut s) = established(now, ca, sa);
    let mut fake = vec![0u8; 26];
    fake[0] = 22;
    fake[13] = 1;
    s.handle_datagram(now, ca, &fake);
    s.handle_datagram(now, addr(666), &fake);
    assert_eq!(s.stats().established, 1);
    c.send(now, sa, b"second").unwrap();
    pump(now, &mut c, ca, &mut s, sa);
    assert_eq!(s.poll_plaintext(), Some((ca, b"second".to_vec())));
    assert_eq!(s.stats().established, 1, "{:?}", s.poll_event());
}

/// Handshakes that only got past the cookie (no key needed for that) never push out an
/// established session; they push out each other.
#[test]
fn keyless_handshakes_do_not_evict_sessions() {
    let now = Instant::now();
    let sa = addr(2);
    let mut s = Dtls::new(DtlsConfig {
        max_sessions: 3,
        max_handshakes: 2,
        ..DtlsConfig::psk_server(|id: &[u8]| (id == b"good").then(|| b"k".to_vec()))
    })
    .unwrap();
    for i in 0..3u16 {
        let mut c = Dtls::new(DtlsConfig::psk_client("good", "k")).unwrap();
        c.send(now, sa, b"x").unwrap();
        pump(now, &mut c, addr(10 + i), &mut s, sa);
    }
    assert_eq!(s.stats().established, 3);
    for i in 0..5u16 {
        let mut a = Dtls::new(DtlsConfig::psk_client("evil", "nokey")).unwrap();
        a.send(now, sa, b"x").unwrap();
        for _ in 0..2 {
            while let Some((_, d)) = a.poll_transmit() {
                s.handle_datagram(now, addr(100 + i), &d);
            }
            while let Some((_, d)) = s.poll_transmit() {
                a.handle_datagram(now, sa, &d);
            }
        }
    }
    assert_eq!(s.stats().established, 3, "{:?}", s.stats());
    assert!(s.stats().handshaking <= 2, "{:?}", s.stats());
}

/// The server's last flight (ChangeCipherSpec and Finished) is lost: the client's flight goes
/// again through OpenSSL (fresh record numbers), and the server answers it by repeating its
/// own. OpenSSL's timer runs on the system clock, so this test waits for real (about 1 s).
#[test]
fn a_lost_final_server_flight_is_recovered() {
    let start = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Dtls::new(DtlsConfig::psk_client("client1", "secret-key-1")).unwrap();
    let mut s = server();
    c.send(start, sa, b"hi").unwrap();
    for _ in 0..20 {
        while let Some((_, d)) = c.poll_transmit() {
            s.handle_datagram(start, ca, &d);
        }
        if s.stats().established == 1 {
            while s.poll_transmit().is_some() {} // the final flight: lost
            break;
        }
        while let Some((_, d)) = s.poll_transmit() {
            c.handle_datagram(start, sa, &d);
        }
    }
    assert_eq!((s.stats().established, c.stats().established), (1, 0));
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(600));
        let now = Instant::now();
        c.handle_timeout(now);
        pump(now, &mut c, ca, &mut s, sa);
        if c.stats().established == 1 {
            break;
        }
    }
    assert_eq!(c.stats().established, 1, "{:?}", c.poll_event());
}

/// A DTLS-looking flood cannot keep one `try_recv` of the DTLS transport busy: it returns
/// after a bounded number of datagrams.
#[test]
fn a_flood_does_not_hold_try_recv() {
    use crate::net::{RecvMeta, Transmit};
    use crate::transport::{Capabilities, Transport};
    use std::os::fd::{AsFd, BorrowedFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    #[derive(Debug)]
    struct Flood(std::net::UdpSocket, Arc<AtomicUsize>);
    impl AsFd for Flood {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }
    impl Transport for Flood {
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.0.local_addr()
        }
        fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, RecvMeta)> {
            self.1.fetch_add(1, Ordering::Relaxed);
            buf[..20].copy_from_slice(&[23u8; 20]);
            Ok((20, RecvMeta::new(addr(7))))
        }
        fn try_send(&self, _: &Transmit, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }
    let reads = Arc::new(AtomicUsize::new(0));
    let t = DtlsTransport::new(
        Box::new(Flood(
            std::net::UdpSocket::bind("[::1]:0").unwrap(),
            reads.clone(),
        )),
        server(),
        false,
    );
    let r = t.try_recv(&mut [0u8; 2048]);
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::Interrupted);
    assert!(reads.load(Ordering::Relaxed) <= 64);
}
