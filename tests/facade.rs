//! The async facade end to end on loopback: our client and our server (udp6, simple6,
//! simplesocketserver) over real sockets, and raw `UdpSocket`s where the wire itself is checked
//! (empty ACK then separate response, reply source address, no retransmission after a drop).

mod common;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::future::{self, Either};

use coapio::message::{Code, ContentFormat, Message, OptionNumber, Token, Type};
use coapio::net::TransportErrorKind;
use coapio::proto::{Config, Request, Response};
use coapio::server::{get, Site};
use coapio::{Endpoint, Error, TransportKind};

use common::{
    block_on_within, example_site, free_port, text, udp6_client, udp6_server, Running, SLOW,
};

/// The bound on any single wait in these tests.
const LIMIT: Duration = Duration::from_secs(5);

fn run<F: std::future::IntoFuture>(fut: F) -> F::Output {
    block_on_within(LIMIT, fut)
}

/// The resources every server here serves: the example server's, and `/info` (what the
/// request carried), `/panic` and `/error` (handlers that fail).
fn test_site() -> Site {
    example_site()
        .resource(
            "/info",
            get(|req| async move {
                Response::content(format!(
                    "{}|{}|{}",
                    req.path(),
                    req.query().join("&"),
                    req.remote()
                ))
            }),
        )
        .resource("/panic", get(|_req| async { panics() }))
        .resource(
            "/error",
            get(|_req| async { Err::<Response, _>("disk full") }),
        )
}

/// A handler's body that fails the hard way.
fn panics() -> Response {
    panic!("this handler panics on purpose")
}

/// The exchanges every client/server pair here must manage: all four methods, Confirmable and
/// Non-confirmable, payloads both ways, a separate response, 4.04.
async fn basic_exchanges(client: &Endpoint, base: &str) {
    for confirmable in [true, false] {
        let req = |r: Request| if confirmable { r } else { r.non_confirmable() };
        let what = if confirmable { "CON" } else { "NON" };

        let r = client
            .request(&format!("{base}/hello"), req(Request::new(Code::GET)))
            .await
            .unwrap();
        assert_eq!(
            (r.code, text(&r).as_str()),
            (Code::CONTENT, "Hello, world!"),
            "{what} GET"
        );
        assert_eq!(r.content_format(), Some(ContentFormat::TEXT_PLAIN));

        let r = client
            .request(
                &format!("{base}/echo"),
                req(Request::new(Code::POST).with_payload("ping")),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.code, text(&r).as_str()),
            (Code::CHANGED, "ping"),
            "{what} POST"
        );

        let r = client
            .request(
                &format!("{base}/echo"),
                req(Request::new(Code::PUT).with_payload(vec![0u8, 1, 2, 255])),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.code, r.payload.as_slice()),
            (Code::CHANGED, &[0u8, 1, 2, 255][..]),
            "{what} PUT"
        );

        let item = format!("{base}/item");
        let r = client
            .request(&item, req(Request::new(Code::PUT).with_payload(what)))
            .await
            .unwrap();
        assert_eq!(r.code, Code::CREATED, "{what} PUT of a new item");
        let r = client
            .request(&item, req(Request::new(Code::GET)))
            .await
            .unwrap();
        assert_eq!(
            (r.code, text(&r).as_str()),
            (Code::CONTENT, what),
            "{what} GET of the item"
        );
        let r = client
            .request(&item, req(Request::new(Code::DELETE)))
            .await
            .unwrap();
        assert_eq!(r.code, Code::DELETED, "{what} DELETE");
        let r = client
            .request(&item, req(Request::new(Code::GET)))
            .await
            .unwrap();
        assert_eq!(r.code, Code::NOT_FOUND, "{what} GET after DELETE");

        let start = Instant::now();
        let r = client
            .request(&format!("{base}/slow"), req(Request::new(Code::GET)))
            .await
            .unwrap();
        assert_eq!(
            (r.code, text(&r).as_str()),
            (Code::CONTENT, "sorry for the wait"),
            "{what} slow"
        );
        assert!(start.elapsed() >= SLOW);

        let r = client
            .request(
                &format!("{base}/nothing-here"),
                req(Request::new(Code::GET)),
            )
            .await
            .unwrap();
        assert_eq!(r.code, Code::NOT_FOUND, "{what} unknown path");
    }
}

#[test]
fn udp6_client_and_server_exchange_all_methods() {
    let server = udp6_server("[::1]:0", test_site());
    let client = udp6_client();
    let base = format!("coap://[::1]:{}", server.port());
    run(basic_exchanges(&client.ep, &base));
    client.stop();
    server.stop();
}

#[test]
fn uri_path_and_query_reach_the_handler() {
    let server = udp6_server("[::1]:0", test_site());
    let client = udp6_client();
    let base = format!("coap://[::1]:{}", server.port());
    let r = run(client.ep.get(&format!("{base}/info?a=1&b=two"))).unwrap();
    let body = text(&r);
    let mut parts = body.splitn(3, '|');
    assert_eq!(parts.next(), Some("/info"));
    assert_eq!(parts.next(), Some("a=1&b=two"));
    let remote: SocketAddr = parts
        .next()
        .unwrap()
        .parse()
        .expect("remote() is a socket address");
    assert_eq!(remote.port(), client.port());
    client.stop();
    server.stop();
}

#[test]
fn error_codes_404_405_500() {
    let server = udp6_server("[::1]:0", test_site());
    let client = udp6_client();
    let base = format!("coap://[::1]:{}", server.port());
    run(async {
        let r = client
            .ep
            .get(&format!("{base}/no/such/thing"))
            .await
            .unwrap();
        assert_eq!(r.code, Code::NOT_FOUND);

        // /echo handles POST and PUT only.
        let r = client.ep.get(&format!("{base}/echo")).await.unwrap();
        assert_eq!(r.code, Code::METHOD_NOT_ALLOWED);
        assert!(
            r.payload.is_empty(),
            "4.05 came with a payload: {:?}",
            text(&r)
        );
        let r = client.ep.delete(&format!("{base}/hello")).await.unwrap();
        assert_eq!(r.code, Code::METHOD_NOT_ALLOWED);

        let r = client.ep.get(&format!("{base}/panic")).await.unwrap();
        assert_eq!(r.code, Code::INTERNAL_SERVER_ERROR);
        assert!(
            r.payload.is_empty(),
            "a panic's 5.00 came with a payload: {:?}",
            text(&r)
        );
        let r = client.ep.get(&format!("{base}/error")).await.unwrap();
        assert_eq!(
            (r.code, text(&r).as_str()),
            (Code::INTERNAL_SERVER_ERROR, "disk full")
        );

        // The server still serves after a handler failed.
        let r = client.ep.get(&format!("{base}/hello")).await.unwrap();
        assert_eq!(r.code, Code::CONTENT);
    });
    client.stop();
    server.stop();
}

#[test]
fn well_known_core_lists_resources_and_filters_by_rt() {
    let server = udp6_server("[::1]:0", test_site());
    let client = udp6_client();
    let base = format!("coap://[::1]:{}", server.port());
    run(async {
        let r = client
            .ep
            .get(&format!("{base}/.well-known/core"))
            .await
            .unwrap();
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(r.content_format(), Some(ContentFormat::LINK_FORMAT));
        let links = text(&r);
        for path in ["</hello>", "</time>", "</slow>", "</echo>", "</item>"] {
            assert!(links.contains(path), "{path} missing from {links:?}");
        }
        assert!(
            links.contains("rt=\"clock\"") || links.contains("rt=clock"),
            "{links:?}"
        );
        assert!(links.contains("title=\"Greeting\""), "{links:?}");

        let r = client
            .ep
            .get(&format!("{base}/.well-known/core?rt=clock"))
            .await
            .unwrap();
        assert_eq!(r.code, Code::CONTENT);
        let links = text(&r);
        assert!(links.contains("</time>"), "{links:?}");
        assert!(
            !links.contains("</hello>"),
            "rt=clock should filter out /hello: {links:?}"
        );

        let r = client
            .ep
            .get(&format!("{base}/.well-known/core?rt=nothing-has-this"))
            .await
            .unwrap();
        assert!(!text(&r).contains("</"), "{:?}", text(&r));
    });
    client.stop();
    server.stop();
}

/// A raw CoAP peer: a `UdpSocket` and the messages it builds and reads.
struct Raw {
    sock: UdpSocket,
}

impl Raw {
    fn connected(to: SocketAddr) -> Self {
        let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let sock = UdpSocket::bind(local).unwrap();
        sock.connect(to).unwrap();
        Self { sock }
    }

    fn request(ty: Type, method: Code, mid: u16, token: &[u8], path: &str) -> Message {
        let mut m = Message::new(ty, method, mid);
        m.token = Token::from_slice(token).unwrap();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            m.options.push(OptionNumber::URI_PATH, seg);
        }
        m
    }

    fn send(&self, m: &Message) {
        self.sock.send(&m.to_bytes().unwrap()).unwrap();
    }

    /// The next message within `within`, if one comes.
    fn recv(&self, within: Duration) -> Option<Message> {
        self.sock.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 1500];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(Message::decode(&buf[..n]).expect("undecodable reply")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    fn expect(&self, within: Duration) -> Message {
        self.recv(within)
            .unwrap_or_else(|| panic!("no reply within {within:?}"))
    }
}

#[test]
fn slow_handler_gives_empty_ack_then_confirmable_separate_response() {
    // A short ACK_TIMEOUT on the server, so that its retransmission of the separate response
    // shows within a test's patience. Without the amplification limit: the raw socket is not
    // verified, and to such a remote a separate response is retransmitted only within three
    // times the request (tests/echo.rs).
    let mut config = Config::default();
    config.ack_timeout = Duration::from_millis(200);
    config.ack_random_factor = 1.0;
    config.amplification_mitigation = false;
    let server = Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .bind("[::1]:0".parse().unwrap())
            .config(config)
            .site(test_site())
            .build()
            .unwrap(),
    );
    let raw = Raw::connected(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], server.port())));
    let token = [0xca, 0xfe, 0x42];
    raw.send(&Raw::request(Type::Con, Code::GET, 0x1234, &token, "/slow"));

    let start = Instant::now();
    let ack = raw.expect(Duration::from_secs(2));
    let ack_at = start.elapsed();
    assert_eq!(
        (ack.ty, ack.code, ack.message_id),
        (Type::Ack, Code::EMPTY, 0x1234),
        "first an empty ACK: {ack:?}"
    );
    assert!(ack.token.is_empty() && ack.payload.is_empty());
    assert!(
        ack_at < SLOW,
        "the empty ACK came after {ack_at:?}, not before the handler finished"
    );

    let resp = raw.expect(Duration::from_secs(2));
    assert!(start.elapsed() >= SLOW - Duration::from_millis(20));
    assert_eq!(
        (resp.ty, resp.code),
        (Type::Con, Code::CONTENT),
        "then a CON response: {resp:?}"
    );
    assert_eq!(resp.token.as_bytes(), token);
    assert_eq!(resp.payload, b"sorry for the wait");

    // Unacknowledged, it is retransmitted with the same message ID …
    let again = raw.expect(Duration::from_secs(1));
    assert_eq!(
        (again.ty, again.message_id, again.token),
        (Type::Con, resp.message_id, resp.token)
    );
    // … and once acknowledged, no more.
    raw.send(&Message::new(Type::Ack, Code::EMPTY, resp.message_id));
    if let Some(m) = raw.recv(Duration::from_millis(1000)) {
        panic!("the server sent {m:?} after its separate response was acknowledged");
    }

    // A quick resource is answered piggybacked.
    raw.send(&Raw::request(Type::Con, Code::GET, 0x1235, &[7], "/hello"));
    let r = raw.expect(Duration::from_secs(1));
    assert_eq!(
        (r.ty, r.code, r.message_id, r.token.as_bytes()),
        (Type::Ack, Code::CONTENT, 0x1235, &[7u8][..])
    );
    server.stop();
}

#[test]
fn non_requests_get_non_responses() {
    let server = udp6_server("[::1]:0", test_site());
    let raw = Raw::connected(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], server.port())));
    raw.send(&Raw::request(
        Type::Non,
        Code::GET,
        0x0100,
        &[1, 2],
        "/hello",
    ));
    let r = raw.expect(Duration::from_secs(1));
    assert_eq!(
        (r.ty, r.code, r.token.as_bytes()),
        (Type::Non, Code::CONTENT, &[1u8, 2][..])
    );
    assert_eq!(r.payload, b"Hello, world!");

    // A slow NON request: no empty ACK, just the NON response when it is ready.
    let start = Instant::now();
    raw.send(&Raw::request(Type::Non, Code::GET, 0x0101, &[3], "/slow"));
    let r = raw.expect(Duration::from_secs(2));
    assert!(start.elapsed() >= SLOW - Duration::from_millis(20));
    assert_eq!(
        (r.ty, r.code, r.token.as_bytes()),
        (Type::Non, Code::CONTENT, &[3u8][..])
    );
    assert!(raw.recv(Duration::from_millis(300)).is_none());
    server.stop();
}

#[test]
fn dual_stack_server_answers_ipv4_ipv6_and_other_loopback_addresses() {
    let server = udp6_server("[::]:0", test_site());
    let port = server.port();
    let client = udp6_client();
    run(async {
        for host in ["127.0.0.1", "[::1]", "127.0.0.2"] {
            let r = client
                .ep
                .get(&format!("coap://{host}:{port}/info"))
                .await
                .unwrap();
            assert_eq!(r.code, Code::CONTENT, "via {host}");
            let body = text(&r);
            let remote: SocketAddr = body.rsplit('|').next().unwrap().parse().unwrap();
            assert_eq!(remote.port(), client.port(), "via {host}");
            if host.starts_with("127.") {
                assert!(
                    remote.is_ipv4(),
                    "an IPv4 peer appears as IPv4, not v4-mapped: {remote}"
                );
            }
        }
    });
    // A connected socket takes the reply only if it comes from the address it asked.
    for (i, ip) in ["127.0.0.2", "127.0.0.1", "::1"].into_iter().enumerate() {
        let to = SocketAddr::new(ip.parse().unwrap(), port);
        let raw = Raw::connected(to);
        let mid = 0x2000 + i as u16;
        raw.send(&Raw::request(Type::Con, Code::GET, mid, &[9], "/hello"));
        let r = raw
            .recv(Duration::from_secs(1))
            .unwrap_or_else(|| panic!("no reply from {to} (did it leave from another address?)"));
        assert_eq!(
            (r.ty, r.code, r.message_id),
            (Type::Ack, Code::CONTENT, mid),
            "via {to}"
        );
    }
    client.stop();
    server.stop();
}

#[test]
fn closed_port_fails_at_once_with_port_unreachable() {
    let client = udp6_client();
    for ip in ["127.0.0.1", "::1"] {
        let port = free_port(ip);
        let uri = match ip {
            "::1" => format!("coap://[::1]:{port}/hello"),
            _ => format!("coap://{ip}:{port}/hello"),
        };
        let start = Instant::now();
        let r = run(client.ep.get(&uri));
        let took = start.elapsed();
        assert!(
            matches!(
                r.unwrap_err(),
                Error::Network {
                    kind: TransportErrorKind::PortUnreachable,
                    ..
                }
            ),
            "{uri}"
        );
        assert!(took < Duration::from_millis(500), "{uri}: took {took:?}");
    }
    client.stop();
}

/// The same when the request to the closed port goes out in one batch with another (one
/// `sendmmsg`, which the ICMP error can cut short and lose its error): it still fails at
/// once, not at its first retransmission seconds later.
#[test]
fn closed_port_fails_at_once_in_a_batch_too() {
    let (ep, driver) = Endpoint::builder()
        .transport(TransportKind::Udp6)
        .build()
        .unwrap();
    let live = UdpSocket::bind("[::1]:0").unwrap();
    let dead = free_port("::1");
    let start = Instant::now();
    // Both are in the core before the driver's first step, which sends them in one batch.
    let first = ep.send(
        format!("[::1]:{dead}").parse().unwrap(),
        Request::get("/hello"),
    );
    let second = ep.send(live.local_addr().unwrap(), Request::get("/x"));
    let client = Running::spawn((ep, driver));
    let r = run(first);
    let took = start.elapsed();
    assert!(matches!(
        r.unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::PortUnreachable,
            ..
        }
    ));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    drop(second);
    client.stop();
}

#[test]
fn dropping_the_response_future_stops_retransmission() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = silent.local_addr().unwrap();
    let mut config = Config::default();
    config.ack_timeout = Duration::from_millis(100);
    config.ack_random_factor = 1.0;
    let client = Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .config(config)
            .build()
            .unwrap(),
    );
    // Transmissions at 0, 100 and 300 ms; dropped at 350 ms, before the one due at 700 ms.
    async_io::block_on(async {
        let fut = client.ep.get(&format!("coap://{to}/hello"));
        match future::select(fut, Timer::after(Duration::from_millis(350))).await {
            Either::Left((r, _)) => panic!("a silent peer answered: {r:?}"),
            Either::Right((_, fut)) => drop(fut),
        }
    });
    let recv_all = |within: Duration| {
        let mut mids = Vec::new();
        silent.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 1500];
        let end = Instant::now() + within;
        while Instant::now() < end {
            match silent.recv(&mut buf) {
                Ok(n) => mids.push(Message::decode(&buf[..n]).unwrap().message_id),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => panic!("{e}"),
            }
        }
        mids
    };
    let before = recv_all(Duration::from_millis(20));
    assert!(
        before.len() >= 2,
        "expected the request and a retransmission, got {before:?}"
    );
    assert!(
        before.iter().all(|m| *m == before[0]),
        "retransmissions keep the message ID: {before:?}"
    );
    let after = recv_all(Duration::from_millis(1200));
    assert!(
        after.is_empty(),
        "sent after the future was dropped: {after:?}"
    );
    client.stop();
}

#[test]
fn shutdown_ends_the_driver_and_fails_open_requests() {
    let silent = UdpSocket::bind("[::1]:0").unwrap();
    let to = silent.local_addr().unwrap();
    let client = udp6_client();
    let r = run(async {
        let (r, ()) = future::join(client.ep.get(&format!("coap://{to}/hello")), async {
            Timer::after(Duration::from_millis(100)).await;
            client.ep.shutdown();
        })
        .await;
        r
    });
    assert!(matches!(r.unwrap_err(), Error::Stopped));
    let ep = client.ep.clone();
    client.stop();
    assert!(matches!(
        run(ep.get(&format!("coap://{to}/hello"))).unwrap_err(),
        Error::Stopped
    ));

    // A server that is shut down releases its socket: its port is closed afterwards.
    let server = udp6_server("[::1]:0", test_site());
    let uri = format!("coap://[::1]:{}/hello", server.port());
    server.stop();
    let client = udp6_client();
    assert!(matches!(
        run(client.ep.get(&uri)).unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::PortUnreachable,
            ..
        }
    ));
    client.stop();
}

fn simple_server(bind: &str) -> Running {
    Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::SimpleSocketServer)
            .bind(bind.parse().unwrap())
            .site(test_site())
            .build()
            .expect("cannot start the simplesocketserver"),
    )
}

fn simple6_client() -> Running {
    Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Simple6)
            .build()
            .expect("cannot start the simple6 client"),
    )
}

#[test]
fn simple6_client_and_simplesocketserver_exchange_all_methods() {
    for (bind, host) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "[::1]")] {
        let server = simple_server(bind);
        let client = simple6_client();
        let base = format!("coap://{host}:{}", server.port());
        run(basic_exchanges(&client.ep, &base));
        client.stop();
        server.stop();
    }
}

#[test]
fn simple6_client_talks_to_udp6_server_and_back() {
    let server = udp6_server("[::]:0", test_site());
    let client = simple6_client();
    run(basic_exchanges(
        &client.ep,
        &format!("coap://127.0.0.1:{}", server.port()),
    ));
    client.stop();
    server.stop();

    let server = simple_server("[::1]:0");
    let client = udp6_client();
    run(basic_exchanges(
        &client.ep,
        &format!("coap://[::1]:{}", server.port()),
    ));
    client.stop();
    server.stop();
}

#[test]
fn simple6_closed_port_fails_at_once_with_port_unreachable() {
    let client = simple6_client();
    let port = free_port("127.0.0.1");
    let start = Instant::now();
    let r = run(client.ep.get(&format!("coap://127.0.0.1:{port}/hello")));
    assert!(matches!(
        r.unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::PortUnreachable,
            ..
        }
    ));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
    client.stop();
}

#[test]
fn simplesocketserver_refuses_any_address_and_simple6_refuses_to_serve() {
    for bind in ["[::]:0", "0.0.0.0:0"] {
        let err = Endpoint::builder()
            .transport(TransportKind::SimpleSocketServer)
            .bind(bind.parse().unwrap())
            .site(test_site())
            .build()
            .expect_err("simplesocketserver bound to an any-address");
        assert!(matches!(err, Error::Bind { .. }), "{bind}: {err:?}");
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            cause.is_some_and(|c| c.contains("can not be bound to any-address")),
            "{bind}: {err:?}"
        );
    }
    let err = Endpoint::builder()
        .transport(TransportKind::Simple6)
        .bind("[::1]:0".parse().unwrap())
        .site(test_site())
        .build()
        .expect_err("simple6 serving");
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
}

#[test]
fn bad_uris_are_refused_before_anything_is_sent() {
    let client = udp6_client();
    for uri in [
        "hello",
        "/hello",
        "coap:///hello",
        "coap://[::1]:99999/hello",
        "coap://[::1/hello",
        "coap://[::1]/hello#frag",
        "coap://user@[::1]/hello",
        "http://[::1]/hello",
    ] {
        match run(client.ep.get(uri)) {
            Err(Error::InvalidUri { .. }) => {}
            other => panic!("{uri:?}: expected InvalidUri, got {other:?}"),
        }
    }
    // A well-formed coaps URI is not a URI error, but it cannot be served without DTLS.
    match run(client.ep.get("coaps://[::1]/hello")) {
        Err(Error::Unsupported(_)) => {}
        other => panic!("coaps: expected Unsupported, got {other:?}"),
    }
    client.stop();
}
