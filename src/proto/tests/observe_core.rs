//! Observe (RFC 7641) kept exact over long times and high rates: the regressions of issue 9,
//! item 4 (a vanished observer, Resets to old notifications, re-registration behind NSTART,
//! bounded renderings, a reset separate response) and item 13 (many observers).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::message::{encode_empty, Code, Message, OptionNumber, Token, Type};
use crate::proto::{Config, Endpoint, Event, RecvMeta, Request, Response};

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from(([10, 2, (i >> 8) as u8, i as u8], 5683))
}

/// A CON `GET /clock` with Observe 0 and a 4-byte token.
fn register(mid: u16, token: u32) -> Vec<u8> {
    let mut m = Message::new(Type::Con, Code::GET, mid);
    m.token = Token::from_slice(&token.to_be_bytes()).unwrap();
    m.options.push_uint(OptionNumber::OBSERVE, 0);
    m.options.push(OptionNumber::URI_PATH, "clock");
    m.to_bytes().unwrap()
}

/// Answers every pending request as an observable resource does.
fn answer_all(ep: &mut Endpoint, now: Instant) -> usize {
    let mut n = 0;
    while let Some(ev) = ep.poll_event() {
        if let Event::Request { id, .. } = ev {
            let mut r = Response::new(Code::CONTENT).with_payload("tick");
            r.options.set_uint(OptionNumber::OBSERVE, 0);
            ep.respond(now, id, r).unwrap();
            n += 1;
        }
    }
    n
}

fn sent(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Message)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        out.push((t.destination, Message::decode(&buf).unwrap()));
    }
    out
}

fn registered(ep: &mut Endpoint, now: Instant, from: SocketAddr, mid: u16, token: u32) {
    ep.handle_datagram(now, &RecvMeta::new(from), &register(mid, token));
    assert_eq!(answer_all(ep, now), 1);
    let out = sent(ep, now);
    assert!(out[0].1.options.contains(OptionNumber::OBSERVE), "{out:?}");
}

/// An observer that vanished (no ACK, no RST, no ICMP) is removed after MAX_RETRANSMIT
/// retransmissions even when the resource changes every 100 ms: each new CON notification
/// takes over the retransmission counter of the one in flight (RFC 7641 §4.5.2).
#[test]
fn a_vanished_observer_is_removed_however_fast_the_resource_changes() {
    let mut ep = Endpoint::new(Config::default().into());
    let t0 = Instant::now();
    registered(&mut ep, t0, peer(1), 1, 1);
    let mut removed_at = None;
    for step in 1..=3000u32 {
        let now = t0 + Duration::from_millis(100) * step;
        ep.handle_timeout(now);
        ep.notify(now, "/clock");
        answer_all(&mut ep, now);
        let _ = sent(&mut ep, now); // lost: the observer is gone
        if ep.stats().observers == 0 {
            removed_at = Some(now - t0);
            break;
        }
    }
    // The first CON goes out with the 20th notification (2 s); the last retransmission of
    // its state times out within MAX_TRANSMIT_WAIT (93 s) after that.
    let removed_at = removed_at.expect("the vanished observer was never removed");
    assert!(removed_at <= Duration::from_secs(2 + 93), "{removed_at:?}");
    assert_eq!(ep.stats().remotes, 0, "{:?}", ep.stats());
}

/// A Reset to any notification sent within its lifetime removes its observer, however many
/// notifications went to other observers since (here 50 000, a minute earlier).
#[test]
fn a_reset_to_an_old_notification_removes_its_observer() {
    let config = Config {
        max_observers_per_resource: 2000,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let t0 = Instant::now();
    for i in 0..1000 {
        registered(&mut ep, t0, peer(i), 1, i);
    }
    let mut first_to_0 = None;
    for round in 0..50u32 {
        let now = t0 + Duration::from_millis(10) * round;
        ep.notify(now, "/clock");
        answer_all(&mut ep, now);
        for (to, m) in sent(&mut ep, now) {
            if to == peer(0) && m.ty == Type::Non && first_to_0.is_none() {
                first_to_0 = Some(m.message_id);
            }
        }
    }
    assert_eq!(ep.stats().observers, 1000);
    let mid = first_to_0.unwrap();
    let later = t0 + Duration::from_secs(60);
    let mut rst = Vec::new();
    encode_empty(Type::Rst, mid, &mut rst);
    ep.handle_datagram(later, &RecvMeta::new(peer(0)), &rst);
    assert_eq!(ep.stats().observers, 999, "the Reset was not matched");
    // A Reset with a message ID never sent to that peer removes nobody.
    encode_empty(Type::Rst, mid.wrapping_add(1000), &mut rst);
    ep.handle_datagram(later, &RecvMeta::new(peer(1)), &rst);
    assert_eq!(ep.stats().observers, 999);
}

/// A Reset to a separate CON response that carried a registration removes the observer.
#[test]
fn a_reset_separate_registration_response_removes_the_observer() {
    let mut ep = Endpoint::new(Config::default().into());
    let t0 = Instant::now();
    ep.handle_datagram(t0, &RecvMeta::new(peer(1)), &register(1, 1));
    let Some(Event::Request { id, .. }) = ep.poll_event() else {
        panic!()
    };
    let later = t0 + Duration::from_millis(300);
    ep.handle_timeout(later); // the empty ACK
    let mut r = Response::new(Code::CONTENT);
    r.options.set_uint(OptionNumber::OBSERVE, 0);
    ep.respond(later, id, r).unwrap();
    let out = sent(&mut ep, later);
    let sep = &out.last().unwrap().1;
    assert_eq!(sep.ty, Type::Con);
    assert!(sep.options.contains(OptionNumber::OBSERVE));
    assert_eq!(ep.stats().observers, 1);
    let mut rst = Vec::new();
    encode_empty(Type::Rst, sep.message_id, &mut rst);
    ep.handle_datagram(later, &RecvMeta::new(peer(1)), &rst);
    assert_eq!(ep.stats().observers, 0);
}

/// `notify` asks for no more renderings than `max_pending_requests` allows at once.
#[test]
fn notify_respects_max_pending_requests() {
    let config = Config {
        max_pending_requests: 10,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let t0 = Instant::now();
    for i in 0..50 {
        registered(&mut ep, t0, peer(i), 1, i);
    }
    assert_eq!(ep.stats().observers, 50);
    ep.notify(t0, "/clock");
    assert!(ep.stats().pending_incoming <= 10, "{:?}", ep.stats());
}

/// A re-registration (after Max-Age without a notification) that waits behind NSTART still
/// takes the notifications of its observation, instead of resetting them.
#[test]
fn a_reregistration_queued_behind_nstart_still_takes_its_notifications() {
    let mut c = Endpoint::new(Config::default().with_seed(3).into());
    let server = peer(9);
    let t0 = Instant::now();
    let obs = c
        .request(t0, server, Request::get("/clock").observe())
        .unwrap();
    let reg = sent(&mut c, t0).remove(0).1;
    let mut first = Message::new(Type::Ack, Code::CONTENT, reg.message_id);
    first.token = reg.token;
    first.options.push_uint(OptionNumber::OBSERVE, 2);
    first.options.push_uint(OptionNumber::MAX_AGE, 10);
    c.handle_datagram(t0, &RecvMeta::new(server), &first.to_bytes().unwrap());
    assert!(matches!(c.poll_event(), Some(Event::Notification { .. })));
    // A request the server never hears of holds the NSTART slot for its retransmissions.
    let _busy = c.request(t0, server, Request::get("/busy")).unwrap();
    let _ = sent(&mut c, t0);
    // Max-Age (10 s) + 2 s later the observation re-registers, but must wait for NSTART.
    let t1 = t0 + Duration::from_secs(13);
    c.handle_timeout(t1);
    let _ = sent(&mut c, t1);
    // Now the server's next notification arrives.
    let mut n = Message::new(Type::Non, Code::CONTENT, 500);
    n.token = reg.token;
    n.options.push_uint(OptionNumber::OBSERVE, 3);
    c.handle_datagram(t1, &RecvMeta::new(server), &n.to_bytes().unwrap());
    let out = sent(&mut c, t1);
    assert!(
        out.iter().all(|(_, m)| m.ty != Type::Rst),
        "the notification was reset: {out:?}"
    );
    match c.poll_event() {
        Some(Event::Notification { id, .. }) => assert_eq!(id, obs),
        other => panic!("{other:?}"),
    }
}

/// Tens of thousands of clients can observe one resource with the default configuration, at
/// a bounded cost per observer.
#[test]
fn twenty_thousand_observers_of_one_resource() {
    let mut ep = Endpoint::new(Config::default().into());
    let t0 = Instant::now();
    for i in 0..20_000 {
        registered(&mut ep, t0, peer(i), 1, i);
    }
    assert_eq!(ep.stats().observers, 20_000);
    assert!(
        ep.stats().observer_bytes <= 20_000 * 300,
        "{:?}",
        ep.stats()
    );
    assert_eq!(ep.notify(t0, "/clock"), 20_000);
}
