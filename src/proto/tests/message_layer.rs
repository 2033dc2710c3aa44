//! The message layer: retransmission and its timing, Reset, pings, malformed input.

use std::time::Duration;

use super::sim::{addr, exactly_one_outcome, Answer, Link, Outcome, Sim};
use crate::message::{encode_empty, Code, Message, OptionNumber, Token, Type};
use crate::proto::{Config, Failure, Request, TransportError, TransportErrorKind};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn retransmissions_double_and_failure_matches_max_transmit_wait() {
    let config = Config::default();
    let mut spans = Vec::new();
    for seed in 0..40 {
        let mut sim = Sim::new(
            seed,
            Link {
                loss: 1.0,
                ..Link::perfect()
            },
        );
        let c = sim.add(config.clone().with_seed(seed), Answer::Never);
        let s = sim.add(config.clone(), Answer::Never);
        let id = sim.request(c, s, Request::get("/x"));
        sim.run(Duration::from_secs(600));
        let sent = sim.sent(c, s);
        assert_eq!(
            sent.len(),
            5,
            "one transmission and MAX_RETRANSMIT=4 retransmissions"
        );
        let t = secs(sent[1].0);
        assert!(
            (2.0..=3.0).contains(&t),
            "first timeout {t} outside [ACK_TIMEOUT, ×1.5]"
        );
        for (k, (at, m)) in sent.iter().enumerate() {
            let expect = t * ((1u32 << k) - 1) as f64;
            assert!(
                (secs(*at) - expect).abs() < 1e-6,
                "transmission {k} at {at:?}"
            );
            assert_eq!((m.ty, m.message_id), (Type::Con, sent[0].1.message_id));
        }
        let outcomes = &sim.nodes[c].outcomes[&id];
        let Outcome::Failed(at, Failure::Timeout) = &outcomes[0] else {
            panic!("{outcomes:?}")
        };
        let span = secs(*at - sim.start);
        assert!(
            (span - 31.0 * t).abs() < 1e-6,
            "gave up at {span}, expected {}",
            31.0 * t
        );
        spans.push(span);
    }
    let wait = secs(config.max_transmit_wait());
    let (min, max) = spans
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &s| (a.min(s), b.max(s)));
    assert!(
        min >= wait / 1.5 - 1e-6 && max <= wait + 1e-6,
        "{min}..{max}"
    );
    assert!(
        max - min > 10.0,
        "timeouts are not randomized: {min}..{max}"
    );
}

#[test]
fn transmission_parameters_are_configurable() {
    let config = Config {
        ack_timeout: Duration::from_secs(1),
        ack_random_factor: 1.0,
        max_retransmit: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(
        1,
        Link {
            loss: 1.0,
            ..Link::perfect()
        },
    );
    let c = sim.add(config.clone(), Answer::Never);
    let s = sim.add(config, Answer::Never);
    let id = sim.request(c, s, Request::get("/x"));
    sim.run(Duration::from_secs(600));
    let times: Vec<f64> = sim.sent(c, s).iter().map(|(t, _)| secs(*t)).collect();
    assert_eq!(times, [0.0, 1.0, 3.0]);
    assert_eq!(
        sim.nodes[c].outcomes[&id],
        [Outcome::Failed(
            sim.start + Duration::from_secs(7),
            Failure::Timeout
        )]
    );
}

#[test]
fn non_request_is_sent_once_and_times_out() {
    let config = Config {
        non_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let mut sim = Sim::new(
        2,
        Link {
            loss: 1.0,
            ..Link::perfect()
        },
    );
    let c = sim.add(config.clone(), Answer::Never);
    let s = sim.add(config, Answer::Never);
    let id = sim.request(c, s, Request::get("/x").non_confirmable());
    sim.run(Duration::from_secs(600));
    let sent = sim.sent(c, s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.ty, Type::Non);
    assert_eq!(
        sim.nodes[c].outcomes[&id],
        [Outcome::Failed(
            sim.start + Duration::from_secs(30),
            Failure::Timeout
        )]
    );
}

#[test]
fn non_request_gets_non_response() {
    let mut sim = Sim::new(3, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(1)));
    let id = sim.request(c, s, Request::post("/x", "hi").non_confirmable());
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    let back = sim.sent(s, c);
    assert_eq!(back.len(), 1, "no ACK for a NON request: {back:?}");
    assert_eq!((back[0].1.ty, back[0].1.code), (Type::Non, Code::CONTENT));
    assert_eq!(back[0].1.payload, b"hi");
}

#[test]
fn reset_fails_the_request() {
    let mut sim = Sim::new(4, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let id = sim.nodes[c]
        .ep
        .request(sim.now, addr(99), Request::get("/x"))
        .unwrap();
    sim.run(Duration::from_millis(1));
    let req = Message::decode(&sim.tap[0].bytes).unwrap();
    let mut rst = Vec::new();
    encode_empty(Type::Rst, req.message_id, &mut rst);
    sim.inject(addr(99), sim.nodes[c].addr, rst);
    sim.run(Duration::from_secs(600));
    let outcomes = &sim.nodes[c].outcomes[&id];
    assert!(matches!(outcomes[..], [Outcome::Failed(_, Failure::Reset)]));
    assert_eq!(sim.tap.len(), 2, "no retransmission after the RST");
}

#[test]
fn reset_with_other_message_id_changes_nothing() {
    let mut sim = Sim::new(5, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(1)));
    let id = sim.request(c, s, Request::get("/x"));
    sim.run(Duration::from_millis(1));
    let req = Message::decode(&sim.tap[0].bytes).unwrap();
    let mut rst = Vec::new();
    encode_empty(Type::Rst, req.message_id.wrapping_add(1), &mut rst);
    let (from, to) = (sim.nodes[s].addr, sim.nodes[c].addr);
    sim.inject(from, to, rst);
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
}

#[test]
fn ping_gets_reset() {
    let mut sim = Sim::new(6, Link::perfect());
    let s = sim.add(Config::default(), Answer::Never);
    let mut ping = Vec::new();
    encode_empty(Type::Con, 0x4242, &mut ping);
    sim.inject(addr(99), sim.nodes[s].addr, ping);
    sim.run(Duration::from_secs(1));
    let reply = Message::decode(&sim.tap[1].bytes).unwrap();
    assert_eq!(
        (reply.ty, reply.code, reply.message_id),
        (Type::Rst, Code::EMPTY, 0x4242)
    );
    assert!(sim.nodes[s].handler_runs.is_empty());
}

fn response(ty: Type, mid: u16, token: &[u8]) -> Vec<u8> {
    let mut m = Message::new(ty, Code::CONTENT, mid);
    m.token = Token::from_slice(token).unwrap();
    m.payload = b"stray".to_vec();
    m.to_bytes().unwrap()
}

#[test]
fn unmatched_responses_con_gets_reset_non_is_dropped() {
    let mut sim = Sim::new(7, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let to = sim.nodes[c].addr;
    sim.inject(addr(99), to, response(Type::Con, 10, b"zz"));
    sim.inject(addr(99), to, response(Type::Non, 11, b"zz"));
    sim.run(Duration::from_secs(1));
    let replies: Vec<_> = sim.tap[2..]
        .iter()
        .map(|d| Message::decode(&d.bytes).unwrap())
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!((replies[0].ty, replies[0].message_id), (Type::Rst, 10));
    assert!(sim.nodes[c].outcomes.is_empty());
}

#[test]
fn malformed_datagrams_change_nothing() {
    let mut sim = Sim::new(8, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(3)));
    let id = sim.request(c, s, Request::get("/x"));
    sim.run(Duration::from_millis(500));
    let (before_c, before_s) = (sim.nodes[c].ep.stats(), sim.nodes[s].ep.stats());
    let tapped = sim.tap.len();
    let (sa, ca) = (sim.nodes[s].addr, sim.nodes[c].addr);
    // CON with a reserved nibble: RST. NON with a truncated option, an ACK with a bad token
    // length, garbage, a version-2 CON: dropped.
    sim.inject(sa, ca, vec![0x40, 0x45, 0x01, 0x02, 0xf0]);
    sim.inject(sa, ca, vec![0x50, 0x45, 0x01, 0x03, 0xb5, b'a']);
    sim.inject(sa, ca, vec![0x6c, 0x45, 0x01, 0x04]);
    sim.inject(sa, ca, vec![0xff; 3]);
    sim.inject(sa, ca, vec![0x80, 0x01, 0x01, 0x05]);
    sim.inject(ca, sa, vec![0x41, 0x01, 0x01, 0x06, 0x01, 0xff]);
    sim.run(Duration::from_millis(600));
    assert_eq!(sim.nodes[c].ep.stats(), before_c);
    assert_eq!(sim.nodes[s].ep.stats(), before_s);
    let replies: Vec<_> = sim.tap[tapped + 6..]
        .iter()
        .map(|d| (d.to, Message::decode(&d.bytes).unwrap()))
        .collect();
    let rsts: Vec<_> = replies
        .iter()
        .map(|(to, m)| (*to, m.ty, m.message_id))
        .collect();
    assert_eq!(rsts, [(sa, Type::Rst, 0x0102), (ca, Type::Rst, 0x0106)]);
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    assert_eq!(sim.nodes[s].handler_runs.len(), 1);
}

#[test]
fn unrecognized_critical_option_gets_bad_option() {
    let mut sim = Sim::new(9, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let mut req = Request::get("/x");
    req.options.push(OptionNumber(9999), "?");
    let bad = sim.request(c, s, req);
    let mut req = Request::get("/x").with_payload("elective");
    req.options.push(OptionNumber(10000), "ignored");
    let fine = sim.request(c, s, req);
    // Uri-Host is critical and must be 1-255 bytes: an empty one counts as unrecognized.
    let mut req = Request::get("/x");
    req.options.push(OptionNumber::URI_HOST, "");
    let empty_host = sim.request(c, s, req);
    // Uri-Host is not repeatable: the second one is an unrecognized critical option (§5.4.5).
    let mut req = Request::get("/x");
    req.options.push(OptionNumber::URI_HOST, "a.example");
    req.options.push(OptionNumber::URI_HOST, "b.example");
    let two_hosts = sim.request(c, s, req);
    sim.run(Duration::from_secs(600));
    let code = |id| match &sim.nodes[c].outcomes[&id][..] {
        [Outcome::Response(_, r)] => r.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(bad), Code::BAD_OPTION);
    assert_eq!(code(fine), Code::CONTENT);
    assert_eq!(code(empty_host), Code::BAD_OPTION);
    assert_eq!(code(two_hosts), Code::BAD_OPTION);
    let runs: Vec<_> = sim.nodes[s].handler_runs.keys().cloned().collect();
    assert_eq!(
        runs,
        [b"elective".to_vec()],
        "the handler saw only the acceptable request"
    );
}

#[test]
fn transport_error_fails_requests_to_that_remote_only() {
    let mut sim = Sim::new(
        10,
        Link {
            loss: 1.0,
            ..Link::perfect()
        },
    );
    let config = Config {
        nstart: 4,
        ..Config::default()
    };
    let c = sim.add(config, Answer::Never);
    let s1 = sim.add(Config::default(), Answer::Never);
    let s2 = sim.add(Config::default(), Answer::Never);
    let a = sim.request(c, s1, Request::get("/a"));
    let b = sim.request(c, s1, Request::get("/b"));
    let other = sim.request(c, s2, Request::get("/c"));
    sim.run(Duration::from_secs(1));
    let remote = sim.nodes[s1].addr;
    let now = sim.now;
    sim.nodes[c].ep.handle_transport_error(
        now,
        &TransportError::new(remote, TransportErrorKind::PortUnreachable),
    );
    sim.run(Duration::from_secs(2));
    for id in [a, b] {
        assert!(matches!(
            sim.nodes[c].outcomes[&id][..],
            [Outcome::Failed(
                _,
                Failure::Transport(TransportErrorKind::PortUnreachable)
            )]
        ));
    }
    assert!(!sim.nodes[c].outcomes.contains_key(&other));
    let retransmitted_to_s1 = sim
        .sent(c, s1)
        .iter()
        .filter(|(t, _)| t.as_secs() >= 1)
        .count();
    assert_eq!(retransmitted_to_s1, 0);
}

#[test]
fn transport_errors_fail_requests_deterministically() {
    use crate::message::MessageRef;
    use crate::proto::{Endpoint, Event, RecvMeta};
    let now = std::time::Instant::now();
    let remote = "192.0.2.1:5683".parse().unwrap();
    let run = || {
        let mut ep = Endpoint::new(Config::default().with_seed(7).into());
        let mut buf = Vec::new();
        for _ in 0..8 {
            ep.request(now, remote, Request::get("/x")).unwrap();
        }
        while ep.poll_transmit(now, &mut buf).is_some() {}
        let err = TransportError::new(remote, TransportErrorKind::PortUnreachable);
        ep.handle_transport_error(now, &err);
        let mut ids = Vec::new();
        while let Some(e) = ep.poll_event() {
            if let Event::Failed { id, .. } = e {
                ids.push(id)
            }
        }
        assert!(
            ep.poll_transmit(now, &mut buf).is_none(),
            "no queued request was started"
        );
        ep.request(now, remote, Request::get("/y")).unwrap();
        let _ = ep.poll_transmit(now, &mut buf).unwrap();
        let token = MessageRef::decode(&buf).unwrap().token;
        let _ = RecvMeta::new(remote);
        (ids, token)
    };
    let (a, b) = (run(), run());
    assert_eq!(a.0.len(), 8);
    assert_eq!(a, b, "same seed, same calls, same outcome");
}

#[test]
fn reserved_class_3_response_is_ignored() {
    use crate::message::MessageRef;
    use crate::proto::{Endpoint, RecvMeta};
    let now = std::time::Instant::now();
    let remote = "192.0.2.1:5683".parse().unwrap();
    let mut ep = Endpoint::new(Config::default().into());
    let mut buf = Vec::new();
    ep.request(now, remote, Request::get("/x")).unwrap();
    let _ = ep.poll_transmit(now, &mut buf).unwrap();
    let req = MessageRef::decode(&buf).unwrap();
    let mut ack = Message::new(Type::Ack, Code::new(3, 18), req.message_id);
    ack.token = req.token;
    ep.handle_datagram(now, &RecvMeta::new(remote), &ack.to_bytes().unwrap());
    assert!(ep.poll_event().is_none());
    assert_eq!(
        ep.stats().open_requests,
        1,
        "still waiting for a real answer"
    );
}

#[test]
fn multicast_requests_are_answered_after_leisure_from_unicast_and_errors_are_suppressed() {
    use crate::proto::{Endpoint, Event, RecvMeta, Response};
    let config = Config {
        leisure: Duration::from_secs(2),
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let start = std::time::Instant::now();
    let group: std::net::IpAddr = "ff02::fd".parse().unwrap();
    let mut times = Vec::new();
    for i in 0..20u16 {
        let mut m = Message::new(Type::Con, Code::GET, i);
        m.token = Token::from_slice(&[i as u8]).unwrap();
        m.options.push(
            OptionNumber::URI_PATH,
            if i % 2 == 0 { "here" } else { "missing" },
        );
        let meta = RecvMeta::new(addr(i + 1)).with_local(group, Some(3));
        ep.handle_datagram(start, &meta, &m.to_bytes().unwrap());
        let Some(Event::Request { id, request, .. }) = ep.poll_event() else {
            panic!()
        };
        assert!(!request.confirmable, "a multicast CON is treated as NON");
        let code = if i % 2 == 0 {
            Code::CONTENT
        } else {
            Code::NOT_FOUND
        };
        ep.respond(start, id, Response::new(code)).unwrap();
    }
    let mut buf = Vec::new();
    assert!(
        ep.poll_transmit(start, &mut buf).is_none(),
        "nothing before the leisure"
    );
    while let Some(now) = ep.poll_timeout() {
        ep.handle_timeout(now);
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            let m = Message::decode(&buf).unwrap();
            assert_eq!(
                (m.ty, m.code),
                (Type::Non, Code::CONTENT),
                "no ACK, no error response"
            );
            assert_eq!(t.source, None, "from a unicast address the system picks");
            times.push(now - start);
        }
        if now - start > Duration::from_secs(3) {
            break;
        }
    }
    assert_eq!(times.len(), 10, "the ten successes, and no 4.04");
    assert!(times.iter().all(|t| *t <= Duration::from_secs(2)));
    let spread = times
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*times.iter().min().unwrap());
    assert!(
        spread > Duration::from_millis(500),
        "answers spread over the leisure: {times:?}"
    );
}

#[test]
fn a_group_request_collects_every_servers_answer_then_ends() {
    let mut sim = Sim::new(20, Link::perfect());
    let client = Config {
        multicast_timeout: Duration::from_secs(4),
        ..Config::default()
    };
    let server = |seed| Config {
        leisure: Duration::from_secs(2),
        ..Config::default().with_seed(seed)
    };
    let c = sim.add(client, Answer::Never);
    let s1 = sim.add(server(21), Answer::After(Duration::ZERO));
    let s2 = sim.add(server(22), Answer::After(Duration::ZERO));
    let group: std::net::SocketAddr = "[ff02::fd]:5683".parse().unwrap();
    sim.join(s1, group);
    sim.join(s2, group);
    let now = sim.now;
    let id = sim.nodes[c]
        .ep
        .request(now, group, Request::get("/.well-known/core"))
        .unwrap();
    sim.run(Duration::from_secs(60));
    let sent = sim.sent_to(c, group);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].ty,
        Type::Non,
        "a request to a group is Non-confirmable"
    );
    let answers = &sim.nodes[c].group_responses[&id];
    let mut from: Vec<_> = answers.iter().map(|(_, f, _)| *f).collect();
    from.sort();
    assert_eq!(
        from,
        [sim.nodes[s1].addr, sim.nodes[s2].addr],
        "each server's unicast address"
    );
    assert!(answers
        .iter()
        .all(|(t, _, r)| r.code == Code::CONTENT && *t - sim.start <= Duration::from_millis(2100)));
    assert_eq!(
        sim.nodes[c].group_done[&id] - sim.start,
        Duration::from_secs(4)
    );
    assert!(
        sim.nodes[c].outcomes.is_empty(),
        "no Response or Failed event for a group request"
    );
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
}

#[test]
fn counters_count_what_happened() {
    // Lost: one transmission, four retransmissions, one timeout.
    let lossy = Link {
        loss: 1.0,
        ..Link::perfect()
    };
    let mut sim = Sim::new(3, lossy);
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::Never);
    sim.request(c, s, Request::get("/x"));
    sim.run(Duration::from_secs(600));
    let n = sim.nodes[c].ep.counters();
    assert_eq!(
        (n.requests_sent, n.datagrams_sent, n.retransmissions),
        (1, 5, 4)
    );
    assert_eq!((n.timeouts, n.responses_received), (1, 0));
    assert_eq!(sim.nodes[s].ep.counters().datagrams_received, 0);

    // Answered, then the request again (a duplicate) and garbage.
    let mut sim = Sim::new(4, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    sim.request(c, s, Request::get("/x"));
    sim.run(Duration::from_secs(10));
    let (cn, sn) = (sim.nodes[c].ep.counters(), sim.nodes[s].ep.counters());
    assert_eq!(
        (
            cn.requests_sent,
            cn.responses_received,
            cn.datagrams_sent,
            cn.datagrams_received
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (
            sn.requests_received,
            sn.responses_sent,
            sn.datagrams_received,
            sn.datagrams_sent
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (cn.bytes_sent, sn.bytes_sent),
        (sn.bytes_received, cn.bytes_received)
    );
    let (ca, sa) = (sim.nodes[c].addr, sim.nodes[s].addr);
    let request = sim.tap[0].bytes.clone();
    sim.inject(ca, sa, request);
    sim.inject(ca, sa, vec![0xff; 3]);
    sim.run(Duration::from_secs(1));
    let sn = sim.nodes[s].ep.counters();
    assert_eq!((sn.duplicates, sn.malformed), (1, 1));
    assert_eq!(
        (sn.requests_received, sn.responses_sent, sn.datagrams_sent),
        (1, 1, 2)
    );
    assert_eq!(sn.retransmissions + sn.timeouts + sn.no_room, 0);
}
