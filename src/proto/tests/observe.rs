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
    let _ = Event::Notification {
        id,
        response: crate::proto::Response::new(Code::CONTENT),
    };
}
