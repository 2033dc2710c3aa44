//! Observing a resource (RFC 7641) as a client: notifications, freshness, ACKs, cancellation
//! by Reset, re-registration after Max-Age.

use std::time::Duration;

use super::sim::{addr, Answer, Link, Sim};
use crate::message::{Code, Message, OptionNumber, Type};
use crate::proto::{Config, Event, Request};

fn notification(
    ty: Type,
    mid: u16,
    token: crate::message::Token,
    seq: Option<u32>,
    body: &str,
) -> Vec<u8> {
    let mut m = Message::new(ty, Code::CONTENT, mid);
    m.token = token;
    if let Some(seq) = seq {
        m.options.push_uint(OptionNumber::OBSERVE, seq);
    }
    m.options.push_uint(OptionNumber::MAX_AGE, 30);
    m.payload = body.as_bytes().to_vec();
    m.to_bytes().unwrap()
}

#[test]
fn notifications_in_order_acked_and_cancelled_by_reset() {
    let mut sim = Sim::new(90, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let server = addr(99);
    let now = sim.now;
    let id = sim.nodes[c]
        .ep
        .request(now, server, Request::get("/clock").observe())
        .unwrap();
    sim.run(Duration::from_millis(1));
    let reg = Message::decode(&sim.tap[0].bytes).unwrap();
    assert_eq!(reg.options.get_uint(OptionNumber::OBSERVE), Some(0));
    let ca = sim.nodes[c].addr;
    // The first answer, piggybacked; then CON and NON notifications, one of them stale.
    let mut ack = Message::decode(&notification(
        Type::Ack,
        reg.message_id,
        reg.token,
        Some(5),
        "t5",
    ))
    .unwrap();
    ack.ty = Type::Ack;
    sim.inject(server, ca, ack.to_bytes().unwrap());
    sim.run(Duration::from_secs(1));
    sim.inject(
        server,
        ca,
        notification(Type::Con, 100, reg.token, Some(7), "t7"),
    );
    sim.run(Duration::from_secs(2));
    sim.inject(
        server,
        ca,
        notification(Type::Non, 101, reg.token, Some(6), "t6 (stale)"),
    );
    sim.run(Duration::from_secs(3));
    sim.inject(
        server,
        ca,
        notification(Type::Non, 102, reg.token, Some(8), "t8"),
    );
    sim.run(Duration::from_secs(4));
    let bodies: Vec<String> = sim.nodes[c]
        .outcomes
        .get(&id)
        .map(|v| v.iter().map(|o| format!("{o:?}")).collect())
        .unwrap_or_default();
    assert!(
        bodies.is_empty(),
        "notifications are not final outcomes: {bodies:?}"
    );
    let notes = sim.nodes[c]
        .notifications
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let texts: Vec<&[u8]> = notes.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(texts, [&b"t5"[..], b"t7", b"t8"]);
    let acks: Vec<u16> = sim
        .sent_to(c, server)
        .iter()
        .filter(|m| m.ty == Type::Ack)
        .map(|m| m.message_id)
        .collect();
    assert_eq!(acks, [100], "the CON notification was acknowledged");
    // Cancelled: the next notification, even NON, is reset.
    let now = sim.now;
    sim.nodes[c].ep.cancel(now, id);
    sim.inject(
        server,
        ca,
        notification(Type::Non, 103, reg.token, Some(9), "t9"),
    );
    sim.run(Duration::from_secs(5));
    let rst: Vec<u16> = sim
        .sent_to(c, server)
        .iter()
        .filter(|m| m.ty == Type::Rst)
        .map(|m| m.message_id)
        .collect();
    assert_eq!(rst, [103]);
    assert_eq!(sim.nodes[c].notifications[&id].len(), 3);
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
}

#[test]
fn silence_past_max_age_registers_again_and_a_plain_response_ends_it() {
    let mut sim = Sim::new(91, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let server = addr(99);
    let now = sim.now;
    let id = sim.nodes[c]
        .ep
        .request(now, server, Request::get("/clock").observe())
        .unwrap();
    sim.run(Duration::from_millis(1));
    let reg = Message::decode(&sim.tap[0].bytes).unwrap();
    let ca = sim.nodes[c].addr;
    let mut ack = Message::decode(&notification(
        Type::Ack,
        reg.message_id,
        reg.token,
        Some(1),
        "a",
    ))
    .unwrap();
    ack.ty = Type::Ack;
    sim.inject(server, ca, ack.to_bytes().unwrap());
    // Max-Age 30 s: by 35 s the client has asked again, with the same token.
    sim.run(Duration::from_secs(35));
    let mut regs: Vec<Message> = sim
        .sent_to(c, server)
        .into_iter()
        .filter(|m| m.code == Code::GET)
        .collect();
    regs.dedup_by_key(|m| m.message_id); // retransmissions of the second registration
    assert_eq!(regs.len(), 2, "{regs:?}");
    assert_eq!(regs[1].token, reg.token);
    assert_eq!(regs[1].options.get_uint(OptionNumber::OBSERVE), Some(0));
    // The server answers the re-registration without Observe: the observation ends.
    let plain = notification(Type::Ack, regs[1].message_id, reg.token, None, "no more");
    sim.inject(server, ca, plain);
    sim.run(Duration::from_secs(36));
    let outcomes = &sim.nodes[c].outcomes[&id];
    assert!(
        matches!(&outcomes[..], [super::sim::Outcome::Response(_, r)] if r.payload == b"no more")
    );
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
}

// ---- the server side -------------------------------------------------------------------

use crate::proto::{Endpoint, RecvMeta, Response};

fn numbers(sim: &Sim, c: usize, id: crate::proto::RequestId) -> Vec<u32> {
    sim.nodes[c]
        .notifications
        .get(&id)
        .map(|v| {
            v.iter()
                .map(|r| String::from_utf8_lossy(&r.payload)[1..].parse().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn observers_get_notifications_in_order_under_loss_and_reordering() {
    let mut sim = Sim::new(92, Link::lossy(0.2));
    let c = sim.add(Config::default().with_seed(92), Answer::Never);
    let s = sim.add(
        Config::default().with_seed(93),
        Answer::After(Duration::ZERO),
    );
    sim.nodes[s].observable = true;
    let id = sim.request(c, s, Request::get("/clock").observe());
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.nodes[s].ep.stats().observers, 1);
    for i in 1..=40u64 {
        let now = sim.start + Duration::from_secs(60 + i);
        sim.now = sim.now.max(now);
        let now = sim.now;
        assert_eq!(sim.nodes[s].ep.notify(now, "/clock"), 1);
        sim.run(Duration::from_secs(60 + i));
    }
    sim.run(Duration::from_secs(400));
    let got = numbers(&sim, c, id);
    assert!(got.len() > 20, "{got:?}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "never out of order: {got:?}"
    );
    // Every 20th notification was CON: the server knows the client is still there.
    let con = sim
        .sent(s, c)
        .iter()
        .filter(|(_, m)| m.ty == Type::Con && m.options.contains(OptionNumber::OBSERVE))
        .count();
    assert!(con >= 2, "{con} CON notifications");
    // Cancel: the next notification is reset and the server forgets the observer.
    let now = sim.now;
    sim.nodes[c].ep.cancel(now, id);
    for _ in 0..3 {
        let now = sim.now;
        sim.nodes[s].ep.notify(now, "/clock");
        sim.run(sim.elapsed_plus(Duration::from_secs(5)));
    }
    assert_eq!(sim.nodes[s].ep.stats().observers, 0);
}

#[test]
fn a_lost_con_notification_removes_the_observer() {
    let mut sim = Sim::new(94, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let server = Config {
        notification_type: Type::Con,
        ..Config::default()
    };
    let s = sim.add(server, Answer::After(Duration::ZERO));
    sim.nodes[s].observable = true;
    let _id = sim.request(c, s, Request::get("/clock").observe());
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.nodes[s].ep.stats().observers, 1);
    sim.link.loss = 1.0; // the client is gone
    let now = sim.now;
    sim.nodes[s].ep.notify(now, "/clock");
    sim.run(Duration::from_secs(200));
    let sent = sim
        .sent(s, c)
        .iter()
        .filter(|(_, m)| m.ty == Type::Con)
        .count();
    assert_eq!(
        sent, 5,
        "one notification and MAX_RETRANSMIT retransmissions"
    );
    assert_eq!(sim.nodes[s].ep.stats().observers, 0);
}

/// A request `GET /clock` from `remote` with `token` and an optional Observe value.
fn get(mid: u16, token: u8, observe: Option<u32>) -> Vec<u8> {
    let mut m = Message::new(Type::Con, Code::GET, mid);
    m.token = crate::message::Token::from_slice(&[token]).unwrap();
    if let Some(o) = observe {
        m.options.push_uint(OptionNumber::OBSERVE, o);
    }
    m.options.push(OptionNumber::URI_PATH, "clock");
    m.to_bytes().unwrap()
}

/// Feeds a request in and answers it as an observable resource would.
fn serve(
    ep: &mut Endpoint,
    now: std::time::Instant,
    from: std::net::SocketAddr,
    datagram: &[u8],
    code: Code,
) -> Vec<Message> {
    ep.handle_datagram(now, &RecvMeta::new(from), datagram);
    while let Some(ev) = ep.poll_event() {
        if let Event::Request { id, .. } = ev {
            let mut r = Response::new(code).with_payload("x");
            r.options.set_uint(OptionNumber::OBSERVE, 0);
            ep.respond(now, id, r).unwrap();
        }
    }
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while ep.poll_transmit(now, &mut buf).is_some() {
        out.push(Message::decode(&buf).unwrap());
    }
    out
}

#[test]
fn registration_rules_and_bounds() {
    let config = Config {
        // Room for one observer of /clock.
        observer_memory: 400,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = std::time::Instant::now();
    let (a, b) = (addr(1), addr(2));
    // Registered: the answer carries Observe.
    let out = serve(&mut ep, now, a, &get(1, 7, Some(0)), Code::CONTENT);
    assert!(out[0].options.get_uint(OptionNumber::OBSERVE).is_some());
    // No room for a second observer: answered without Observe.
    let out = serve(&mut ep, now, b, &get(2, 8, Some(0)), Code::CONTENT);
    assert!(!out[0].options.contains(OptionNumber::OBSERVE));
    assert_eq!(ep.stats().observers, 1);
    // A plain GET from the observer with another token leaves the observation alone.
    let out = serve(&mut ep, now, a, &get(3, 9, None), Code::CONTENT);
    assert!(!out[0].options.contains(OptionNumber::OBSERVE));
    assert_eq!(ep.stats().observers, 1);
    // GET with Observe 1 and its token: deregistered.
    let out = serve(&mut ep, now, a, &get(4, 7, Some(1)), Code::CONTENT);
    assert!(!out[0].options.contains(OptionNumber::OBSERVE));
    assert_eq!(ep.stats().observers, 0);
    // Registered again; an error notification ends the observation.
    serve(&mut ep, now, a, &get(5, 7, Some(0)), Code::CONTENT);
    assert_eq!(ep.notify(now, "/clock"), 1);
    let Some(Event::Request { id, .. }) = ep.poll_event() else {
        panic!()
    };
    ep.respond(now, id, Response::new(Code::NOT_FOUND)).unwrap();
    let mut buf = Vec::new();
    let _ = ep.poll_transmit(now, &mut buf).unwrap();
    let last = Message::decode(&buf).unwrap();
    assert_eq!((last.code, last.ty), (Code::NOT_FOUND, Type::Con));
    assert!(!last.options.contains(OptionNumber::OBSERVE));
    assert_eq!(ep.stats().observers, 0);
    assert_eq!(ep.notify(now, "/clock"), 0);
}

#[test]
fn large_notifications_are_fetched_whole_before_delivery() {
    let mut sim = Sim::new(95, Link::lossy(0.1));
    let c = sim.add(Config::default().with_seed(95), Answer::Never);
    let s = sim.add(
        Config::default().with_seed(96),
        Answer::After(Duration::ZERO),
    );
    sim.nodes[s].observable = true;
    sim.nodes[s].reply_size = Some(3000);
    let id = sim.request(c, s, Request::get("/big").observe());
    sim.run(Duration::from_secs(120));
    for i in 1..=3u64 {
        let now = sim.start + Duration::from_secs(120 * (i + 1));
        sim.now = sim.now.max(now);
        let now = sim.now;
        sim.nodes[s].ep.notify(now, "/big");
        sim.run(sim.elapsed_plus(Duration::from_secs(100)));
    }
    let notes = sim.nodes[c]
        .notifications
        .get(&id)
        .cloned()
        .unwrap_or_default();
    assert!(notes.len() >= 3, "{} notifications", notes.len());
    let whole: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    assert!(
        notes.iter().all(|r| r.payload == whole),
        "every notification whole"
    );
    assert!(notes
        .iter()
        .all(|r| !r.options.contains(OptionNumber::BLOCK2)));
    assert_eq!(sim.nodes[c].ep.stats().transfers, 0);
}

#[test]
fn observers_per_resource_are_bounded() {
    let config = Config {
        max_observers_per_resource: 1,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = std::time::Instant::now();
    let out = serve(&mut ep, now, addr(1), &get(1, 7, Some(0)), Code::CONTENT);
    assert!(out[0].options.contains(OptionNumber::OBSERVE));
    let out = serve(&mut ep, now, addr(2), &get(2, 8, Some(0)), Code::CONTENT);
    assert!(
        !out[0].options.contains(OptionNumber::OBSERVE),
        "one per resource"
    );
    assert_eq!(ep.stats().observers, 1);
}

#[test]
fn notify_as_chooses_the_type_of_one_change() {
    let mut ep = Endpoint::new(Config::default().into());
    let now = std::time::Instant::now();
    serve(&mut ep, now, addr(1), &get(1, 7, Some(0)), Code::CONTENT);
    let mut types = Vec::new();
    for ty in [None, Some(Type::Con), None] {
        assert_eq!(ep.notify_as(now, "/clock", ty), 1);
        let Some(Event::Request { id, .. }) = ep.poll_event() else {
            panic!()
        };
        ep.respond(now, id, Response::new(Code::CONTENT)).unwrap();
        let mut buf = Vec::new();
        let _ = ep.poll_transmit(now, &mut buf).unwrap();
        types.push(Message::decode(&buf).unwrap().ty);
    }
    assert_eq!(types, [Type::Non, Type::Con, Type::Non]);
}

/// A client (node 0 of a new simulation) whose observation of `registration` at the
/// scripted server `addr(99)` the server confirmed (a piggybacked "t5", Observe 5) at 1 s:
/// the simulation, the request's ID and the registration as sent.
fn confirmed_observation(
    seed: u64,
    registration: Request,
) -> (Sim, crate::proto::RequestId, Message) {
    let mut sim = Sim::new(seed, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let now = sim.now;
    let id = sim.nodes[c]
        .ep
        .request(now, addr(99), registration)
        .unwrap();
    sim.run(Duration::from_millis(1));
    let reg = Message::decode(&sim.tap[0].bytes).unwrap();
    let ca = sim.nodes[c].addr;
    let ack = notification(Type::Ack, reg.message_id, reg.token, Some(5), "t5");
    sim.inject(addr(99), ca, ack);
    sim.run(Duration::from_secs(1));
    (sim, id, reg)
}

#[test]
fn cancel_observation_tells_the_server_with_observe_1() {
    let mut registration = Request::get("/clock").observe();
    registration.options.push(OptionNumber::ACCEPT, [0]);
    registration.options.push(OptionNumber::ETAG, [7]);
    let (mut sim, id, reg) = confirmed_observation(92, registration);
    let (c, server, ca) = (0, addr(99), sim.nodes[0].addr);
    // Not confirmed yet: a plain cancellation, nothing is sent.
    let now = sim.now;
    let unconfirmed = sim.nodes[c]
        .ep
        .request(now, addr(98), Request::get("/x").observe())
        .unwrap();
    assert_eq!(
        sim.nodes[c].ep.cancel_observation(now, unconfirmed),
        Ok(false)
    );
    let now = sim.now;
    assert_eq!(sim.nodes[c].ep.cancel_observation(now, id), Ok(true));
    sim.run(Duration::from_secs(2));
    let dereg = sim.sent_to(c, server).last().cloned().unwrap();
    assert_eq!(
        (dereg.ty, dereg.code, dereg.token),
        (Type::Con, Code::GET, reg.token)
    );
    assert_ne!(dereg.message_id, reg.message_id);
    assert_eq!(dereg.options.get_uint(OptionNumber::OBSERVE), Some(1));
    assert_eq!(
        dereg.options.get(OptionNumber::ETAG),
        None,
        "ETags are left out"
    );
    let same = |n| dereg.options.get_all(n).eq(reg.options.get_all(n));
    assert!(same(OptionNumber::URI_PATH) && same(OptionNumber::ACCEPT));
    // A notification still in flight: acknowledged, not delivered.
    sim.inject(
        server,
        ca,
        notification(Type::Con, 200, reg.token, Some(6), "t6"),
    );
    sim.run(Duration::from_secs(3));
    let sent = sim.sent_to(c, server);
    assert!(
        sent.iter()
            .any(|m| m.ty == Type::Ack && m.message_id == 200),
        "{sent:?}"
    );
    assert_eq!(sim.nodes[c].notifications[&id].len(), 1);
    // The server's answer (no Observe) ends it.
    let answer = notification(Type::Ack, dereg.message_id, reg.token, None, "t6 final");
    sim.inject(server, ca, answer);
    sim.run(Duration::from_secs(4));
    let outcomes = &sim.nodes[c].outcomes[&id];
    assert!(
        matches!(&outcomes[..], [super::sim::Outcome::Response(_, r)] if r.payload == b"t6 final"),
        "{outcomes:?}"
    );
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
    assert_eq!(
        sim.nodes[c].ep.cancel_observation(sim.now, id),
        Err(crate::proto::Error::UnknownRequest)
    );
}

#[test]
fn cancel_observation_end_to_end_removes_the_observer() {
    let mut sim = Sim::new(93, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    sim.nodes[s].observable = true;
    let id = sim.request(c, s, Request::get("/obs").observe());
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.nodes[s].ep.stats().observers, 1);
    let now = sim.now;
    assert_eq!(sim.nodes[c].ep.cancel_observation(now, id), Ok(true));
    // Asked twice: the deregistration in flight goes on.
    assert_eq!(sim.nodes[c].ep.cancel_observation(now, id), Ok(true));
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.nodes[s].ep.stats().observers, 0);
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
    assert!(matches!(
        &sim.nodes[c].outcomes[&id][..],
        [super::sim::Outcome::Response(_, r)] if !r.options.contains(OptionNumber::OBSERVE)
    ));
}

#[test]
fn a_deregistration_asked_for_an_echo_keeps_its_token() {
    let (mut sim, id, reg) = confirmed_observation(94, Request::get("/clock").observe());
    let (c, server, ca) = (0, addr(99), sim.nodes[0].addr);
    let now = sim.now;
    assert_eq!(sim.nodes[c].ep.cancel_observation(now, id), Ok(true));
    sim.run(Duration::from_secs(2));
    let dereg = sim.sent_to(c, server).last().cloned().unwrap();
    // The server wants proof of the address first: 4.01 with an Echo value.
    let mut challenge = Message::new(Type::Ack, Code::UNAUTHORIZED, dereg.message_id);
    challenge.token = dereg.token;
    challenge.options.push(OptionNumber::ECHO, [1, 2, 3, 4]);
    sim.inject(server, ca, challenge.to_bytes().unwrap());
    sim.run(Duration::from_secs(3));
    let again = sim.sent_to(c, server).last().cloned().unwrap();
    assert_ne!(again.message_id, dereg.message_id);
    assert_eq!(
        again.token, reg.token,
        "the observation's token, so the server finds it"
    );
    assert_eq!(again.options.get_uint(OptionNumber::OBSERVE), Some(1));
    assert_eq!(
        again.options.get(OptionNumber::ECHO),
        Some(&[1, 2, 3, 4][..])
    );
}
