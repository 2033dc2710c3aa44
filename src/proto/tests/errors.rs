//! A send error fails only what it concerns (issue 9, item 7): `EMSGSIZE` for one datagram
//! fails that message, a Packet Too Big lowers the block size used with the peer, and other
//! network errors fail the requests to that one remote.

use std::net::SocketAddr;
use std::time::Instant;

use crate::message::{BlockValue, Code, Message, OptionNumber, Type};
use crate::proto::{Config, Endpoint, Event, Failure, Request, TransportError, TransportErrorKind};

fn server(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 3, 0, i], 5683))
}

fn sent(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        out.push((t.destination, buf.clone()));
    }
    out
}

#[test]
fn a_datagram_too_large_to_send_fails_only_its_own_request() {
    let config = Config {
        nstart: 2,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = Instant::now();
    let big = ep
        .request(now, server(1), Request::post("/x", vec![0; 1000]))
        .unwrap();
    let small = ep.request(now, server(1), Request::get("/y")).unwrap();
    let out = sent(&mut ep, now);
    assert_eq!(out.len(), 2);
    ep.handle_send_error(
        now,
        server(1),
        &out[0].1,
        TransportErrorKind::MessageTooLarge,
    );
    match ep.poll_event() {
        Some(Event::Failed { id, error }) => {
            assert_eq!(id, big);
            assert_eq!(
                error,
                Failure::Transport(TransportErrorKind::MessageTooLarge)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.stats().open_requests, 1);
    // The other request is still there and is answered.
    let get = Message::decode(&out[1].1).unwrap();
    let mut ack = Message::new(Type::Ack, Code::CONTENT, get.message_id);
    ack.token = get.token;
    ep.handle_datagram(
        now,
        &crate::proto::RecvMeta::new(server(1)),
        &ack.to_bytes().unwrap(),
    );
    assert!(matches!(ep.poll_event(), Some(Event::Response { id, .. }) if id == small));
}

#[test]
fn packet_too_big_lowers_the_block_size_and_fails_nothing() {
    let mut ep = Endpoint::new(Config::default().into());
    let now = Instant::now();
    let open = ep.request(now, server(1), Request::get("/y")).unwrap();
    let _ = sent(&mut ep, now);
    ep.handle_transport_error(
        now,
        &TransportError::new(server(1), TransportErrorKind::MessageTooLarge),
    );
    assert!(ep.poll_event().is_none(), "nothing fails");
    assert_eq!(ep.stats().open_requests, 1);
    ep.cancel(now, open);
    // A large upload to that peer now goes in 512-byte blocks; to another peer in 1024.
    for (peer, szx) in [(server(1), 5), (server(2), 6)] {
        ep.request(now, peer, Request::put("/up", vec![1; 3000]))
            .unwrap();
        let out = sent(&mut ep, now);
        let m = Message::decode(&out.last().unwrap().1).unwrap();
        let b = BlockValue::from_bytes(m.options.get(OptionNumber::BLOCK1).unwrap()).unwrap();
        assert_eq!(b.szx(), szx, "{peer}");
    }
}

#[test]
fn a_network_error_fails_the_requests_to_that_remote_only() {
    let mut ep = Endpoint::new(Config::default().into());
    let now = Instant::now();
    let mut to_one = Vec::new();
    for i in 0..5 {
        to_one.push(
            ep.request(now, server(1), Request::get(&format!("/{i}")))
                .unwrap(),
        );
    }
    let other = ep.request(now, server(2), Request::get("/z")).unwrap();
    let _ = sent(&mut ep, now);
    ep.handle_send_error(now, server(1), &[], TransportErrorKind::PortUnreachable);
    let mut failed = Vec::new();
    while let Some(ev) = ep.poll_event() {
        let Event::Failed { id, .. } = ev else {
            panic!("{ev:?}")
        };
        failed.push(id);
    }
    failed.sort_unstable();
    assert_eq!(failed, to_one);
    assert_eq!(ep.stats().open_requests, 1);
    assert!(!failed.contains(&other));
}
