//! Critical options the core does not implement are not "recognized" (RFC 7252 §5.4.1):
//! OSCORE and Q-Block requests get 4.02 instead of being served as plaintext or whole
//! bodies, proxy requests get 5.05 unless the application proxies.

use std::net::SocketAddr;
use std::time::Instant;

use crate::message::{Code, Message, OptionNumber, Type};
use crate::proto::{Config, Endpoint, Event, Failure, RecvMeta, Request};

fn client() -> SocketAddr {
    "[2001:db8::1]:40000".parse().unwrap()
}

/// Feeds a CON GET /x with `option` and returns the answer's code, or `None` when the
/// request reached the application.
fn answer_to(config: Config, option: OptionNumber, value: &[u8]) -> Option<Code> {
    let mut ep = Endpoint::new(config.into());
    let now = Instant::now();
    let mut m = Message::new(Type::Con, Code::GET, 7);
    m.options.push(OptionNumber::URI_PATH, "x");
    m.options.push(option, value);
    ep.handle_datagram(now, &RecvMeta::new(client()), &m.to_bytes().unwrap());
    if matches!(ep.poll_event(), Some(Event::Request { .. })) {
        return None;
    }
    let mut buf = Vec::new();
    let t = ep.poll_transmit(now, &mut buf).expect("an answer");
    assert_eq!(t.destination, client());
    let answer = Message::decode(&buf).unwrap();
    assert_eq!((answer.ty, answer.message_id), (Type::Ack, 7));
    Some(answer.code)
}

#[test]
fn unimplemented_critical_options_get_4_02() {
    for (option, value) in [
        (OptionNumber::OSCORE, &[0x09, 0x01][..]),
        (OptionNumber::Q_BLOCK1, &[0x08][..]),
        (OptionNumber::Q_BLOCK2, &[0x00][..]),
    ] {
        assert_eq!(
            answer_to(Config::default(), option, value),
            Some(Code::BAD_OPTION),
            "{option:?}"
        );
    }
    // Implemented critical options and elective ones pass.
    assert_eq!(
        answer_to(Config::default(), OptionNumber::ACCEPT, &[0]),
        None
    );
    assert_eq!(
        answer_to(Config::default(), OptionNumber::IF_NONE_MATCH, &[]),
        None
    );
    assert_eq!(
        answer_to(Config::default(), OptionNumber::ECHO, &[1, 2]),
        None
    );
}

#[test]
fn a_non_request_with_an_unimplemented_critical_option_is_ignored() {
    let mut ep = Endpoint::new(Config::default().into());
    let now = Instant::now();
    let mut m = Message::new(Type::Non, Code::GET, 7);
    m.options.push(OptionNumber::URI_PATH, "x");
    m.options.push(OptionNumber::OSCORE, [9]);
    ep.handle_datagram(now, &RecvMeta::new(client()), &m.to_bytes().unwrap());
    assert!(ep.poll_event().is_none());
    assert!(ep.poll_transmit(now, &mut Vec::new()).is_none());
}

#[test]
fn proxy_requests_get_5_05_unless_the_application_proxies() {
    let uri = b"coap://[2001:db8::9]/x";
    assert_eq!(
        answer_to(Config::default(), OptionNumber::PROXY_URI, uri),
        Some(Code::PROXYING_NOT_SUPPORTED)
    );
    assert_eq!(
        answer_to(Config::default(), OptionNumber::PROXY_SCHEME, b"coap"),
        Some(Code::PROXYING_NOT_SUPPORTED)
    );
    let proxy = Config {
        proxy: true,
        ..Config::default()
    };
    assert_eq!(answer_to(proxy, OptionNumber::PROXY_URI, uri), None);
}

#[test]
fn a_response_with_an_oscore_option_is_not_taken_as_plaintext() {
    let mut ep = Endpoint::new(Config::default().into());
    let now = Instant::now();
    let server: SocketAddr = "[2001:db8::9]:5683".parse().unwrap();
    let id = ep.request(now, server, Request::get("/x")).unwrap();
    let mut buf = Vec::new();
    assert_eq!(ep.poll_transmit(now, &mut buf).unwrap().destination, server);
    let req = Message::decode(&buf).unwrap();
    let mut resp = Message::new(Type::Ack, Code::CONTENT, req.message_id);
    resp.token = req.token;
    resp.options.push(OptionNumber::OSCORE, [0x09, 0x01]);
    ep.handle_datagram(now, &RecvMeta::new(server), &resp.to_bytes().unwrap());
    match ep.poll_event() {
        Some(Event::Failed {
            id: failed,
            error: Failure::BadResponse(_),
        }) => assert_eq!(failed, id),
        other => panic!("{other:?}"),
    }
}
