//! Request/response exchanges: piggybacked and separate responses, deduplication and replay,
//! tokens, NSTART and cancellation.

use std::time::Duration;

use super::sim::{exactly_one_outcome, Answer, Link, Outcome, Sim};
use crate::message::{Code, Message, Type};
use crate::proto::{Config, Endpoint, Error, RecvMeta, Request};

#[test]
fn piggybacked_response() {
    let mut sim = Sim::new(1, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_millis(50)));
    let id = sim.request(c, s, Request::post("/echo", "ping"));
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    let req = &sim.sent(c, s)[0].1;
    let back = sim.sent(s, c);
    assert_eq!(back.len(), 1);
    let ack = &back[0].1;
    assert_eq!(
        (ack.ty, ack.code, ack.message_id),
        (Type::Ack, Code::CONTENT, req.message_id)
    );
    assert_eq!((ack.token, &ack.payload[..]), (req.token, &b"ping"[..]));
}

#[test]
fn slow_answer_becomes_separate_response() {
    let mut sim = Sim::new(2, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(5)));
    let id = sim.request(c, s, Request::post("/slow", "x"));
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    let req = &sim.sent(c, s)[0].1;
    let back = sim.sent(s, c);
    assert_eq!(back.len(), 2, "{back:?}");
    let (t_ack, ack) = &back[0];
    assert_eq!(
        (ack.ty, ack.code, ack.message_id),
        (Type::Ack, Code::EMPTY, req.message_id)
    );
    assert_eq!(
        *t_ack,
        Duration::from_millis(110),
        "empty ACK after EMPTY_ACK_DELAY"
    );
    let (t_resp, resp) = &back[1];
    assert_eq!(
        (resp.ty, resp.code, resp.token),
        (Type::Con, Code::CONTENT, req.token)
    );
    assert_eq!(*t_resp, Duration::from_millis(5010));
    // The client acknowledged the separate response, and the server stopped retransmitting.
    let acks: Vec<_> = sim.sent(c, s)[1..]
        .iter()
        .map(|(_, m)| (m.ty, m.message_id))
        .collect();
    assert_eq!(acks, [(Type::Ack, resp.message_id)]);
    assert_eq!(sim.nodes[s].ep.stats().remotes, 0, "server state released");
}

#[test]
fn separate_response_may_be_non_confirmable() {
    let mut sim = Sim::new(3, Link::perfect());
    let server = Config {
        separate_response_type: Type::Non,
        ..Config::default()
    };
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(server, Answer::After(Duration::from_secs(1)));
    let id = sim.request(c, s, Request::get("/slow"));
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    let types: Vec<_> = sim.sent(s, c).iter().map(|(_, m)| m.ty).collect();
    assert_eq!(types, [Type::Ack, Type::Non]);
    assert_eq!(
        sim.sent(c, s).len(),
        1,
        "a NON response is not acknowledged"
    );
}

#[test]
fn duplicate_con_response_is_acknowledged_again_without_second_event() {
    let mut sim = Sim::new(4, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(2)));
    let id = sim.request(c, s, Request::get("/slow"));
    sim.run(Duration::from_secs(10));
    let resp = sim
        .tap
        .iter()
        .find(|d| Message::decode(&d.bytes).unwrap().ty == Type::Con && d.to == sim.nodes[c].addr)
        .unwrap()
        .clone();
    for _ in 0..3 {
        sim.inject(resp.from, resp.to, resp.bytes.clone());
    }
    sim.run(Duration::from_secs(20));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    let mid = Message::decode(&resp.bytes).unwrap().message_id;
    let acks = sim
        .sent(c, s)
        .iter()
        .filter(|(_, m)| m.ty == Type::Ack)
        .count();
    assert_eq!(acks, 4, "the original ACK and one for each duplicate");
    assert!(sim.sent(c, s).iter().all(|(_, m)| m.ty != Type::Rst));
    assert!(sim.sent(c, s)[1..].iter().all(|(_, m)| m.message_id == mid));
}

#[test]
fn duplicate_request_replays_the_piggybacked_response() {
    let mut sim = Sim::new(5, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let id = sim.request(c, s, Request::post("/once", "body"));
    sim.run(Duration::from_secs(1));
    let req = sim.tap[0].clone();
    for _ in 0..5 {
        sim.inject(req.from, req.to, req.bytes.clone());
    }
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    assert_eq!(sim.nodes[s].handler_runs[&b"body".to_vec()], 1);
    let back = sim.sent(s, c);
    assert_eq!(back.len(), 6);
    assert!(
        back.iter().all(|(_, m)| *m == back[0].1),
        "identical replays"
    );
}

#[test]
fn duplicate_before_the_answer_gets_nothing_then_the_empty_ack() {
    let mut sim = Sim::new(6, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(30)));
    let id = sim.request(c, s, Request::post("/slow", "b"));
    sim.run(Duration::from_millis(50));
    let req = sim.tap[0].clone();
    sim.inject(req.from, req.to, req.bytes.clone()); // arrives at 60 ms, before the empty ACK
    sim.run(Duration::from_millis(100));
    assert!(sim.sent(s, c).is_empty());
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.sent(s, c).len(), 1, "the empty ACK");
    sim.inject(req.from, req.to, req.bytes.clone());
    sim.run(Duration::from_secs(2));
    let back: Vec<_> = sim.sent(s, c).iter().map(|(_, m)| (m.ty, m.code)).collect();
    assert_eq!(back, [(Type::Ack, Code::EMPTY), (Type::Ack, Code::EMPTY)]);
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    assert_eq!(sim.nodes[s].handler_runs[&b"b".to_vec()], 1);
}

#[test]
fn nstart_limits_outstanding_requests_and_queues_the_rest() {
    for nstart in [1usize, 3] {
        let mut sim = Sim::new(7, Link::perfect());
        let config = Config {
            nstart,
            ..Config::default()
        };
        let c = sim.add(config, Answer::Never);
        let s = sim.add(Config::default(), Answer::After(Duration::from_millis(20)));
        let ids: Vec<_> = (0..7)
            .map(|i| sim.request(c, s, Request::post("/q", vec![i])))
            .collect();
        sim.run(Duration::from_secs(600));
        assert_eq!(exactly_one_outcome(&sim.nodes[c], &ids), (7, 0));
        // Replay the wire: at no time were more than NSTART requests unanswered.
        let (ca, sa) = (sim.nodes[c].addr, sim.nodes[s].addr);
        let mut open = 0usize;
        let mut max_open = 0;
        for d in &sim.tap {
            let m = Message::decode(&d.bytes).unwrap();
            if d.from == ca && d.to == sa && m.code.is_request() {
                open += 1;
            } else if d.from == sa && m.code.is_response() {
                open -= 1;
            }
            max_open = max_open.max(open);
        }
        assert_eq!(max_open, nstart);
        // Requests went out in the order they were made.
        let order: Vec<u8> = sim.sent(c, s).iter().map(|(_, m)| m.payload[0]).collect();
        assert_eq!(order, (0..7).collect::<Vec<u8>>());
    }
}

#[test]
fn empty_ack_frees_the_nstart_slot() {
    let mut sim = Sim::new(8, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(10)));
    let ids: Vec<_> = (0..3)
        .map(|i| sim.request(c, s, Request::post("/slow", vec![i])))
        .collect();
    sim.run(Duration::from_secs(1));
    assert_eq!(
        sim.sent(c, s).len(),
        3,
        "each empty ACK lets the next request go"
    );
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &ids), (3, 0));
}

#[test]
fn cancel_stops_everything_and_starts_the_next() {
    let mut sim = Sim::new(
        9,
        Link {
            loss: 1.0,
            ..Link::perfect()
        },
    );
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::Never);
    let first = sim.request(c, s, Request::post("/a", "first"));
    let queued = sim.request(c, s, Request::post("/a", "queued"));
    let third = sim.request(c, s, Request::post("/a", "third"));
    sim.run(Duration::from_millis(100));
    let now = sim.now;
    sim.nodes[c].ep.cancel(now, queued);
    sim.nodes[c].ep.cancel(now, first);
    sim.nodes[c].ep.cancel(now, first); // twice: ignored
    sim.run(Duration::from_secs(600));
    let payloads: Vec<Vec<u8>> = sim
        .sent(c, s)
        .iter()
        .map(|(_, m)| m.payload.clone())
        .collect();
    assert_eq!(payloads[0], b"first");
    assert!(payloads[1..].iter().all(|p| p == b"third"), "{payloads:?}");
    assert_eq!(
        payloads.len(),
        6,
        "first once, third with 4 retransmissions"
    );
    assert!(!sim.nodes[c].outcomes.contains_key(&first));
    assert!(!sim.nodes[c].outcomes.contains_key(&queued));
    assert!(matches!(
        sim.nodes[c].outcomes[&third][..],
        [Outcome::Failed(..)]
    ));
    assert_eq!(sim.nodes[c].ep.stats().remotes, 0);
}

#[test]
fn tokens_are_seeded_random_and_unique_per_remote() {
    let remote = "[::1]:5683".parse().unwrap();
    let tokens = |seed: u64, len: usize, n: usize| {
        let config = Config {
            token_length: len,
            nstart: 100_000,
            ..Config::default().with_seed(seed)
        };
        let mut ep = Endpoint::new(config.into());
        let now = std::time::Instant::now();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for _ in 0..n {
            match ep.request(now, remote, Request::get("/")) {
                Ok(_) => {
                    let _ = ep.poll_transmit(now, &mut buf).unwrap();
                    out.push(Message::decode(&buf).unwrap().token);
                }
                Err(e) => {
                    assert_eq!(e, Error::NoToken);
                    break;
                }
            }
        }
        out
    };
    let a = tokens(1, 8, 1000);
    assert_eq!(a, tokens(1, 8, 1000), "same seed, same tokens");
    assert_ne!(a, tokens(2, 8, 1000));
    let unique: std::collections::HashSet<_> = a.iter().collect();
    assert_eq!(unique.len(), 1000);
    assert!(a.iter().all(|t| t.len() == 8));
    // One-byte tokens: never a duplicate among open requests, and a clear error when full.
    let short = tokens(3, 1, 300);
    let unique: std::collections::HashSet<_> = short.iter().collect();
    assert_eq!(unique.len(), short.len());
    assert!(short.len() < 257);
    // Zero-length tokens: one open request per remote.
    assert_eq!(tokens(4, 0, 5).len(), 1);
}

#[test]
fn message_ids_increase_per_remote() {
    let config = Config {
        nstart: 10,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = std::time::Instant::now();
    let (r1, r2) = ("[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap());
    let mut buf = Vec::new();
    let mut mids = |ep: &mut Endpoint, r| {
        ep.request(now, r, Request::get("/")).unwrap();
        let _ = ep.poll_transmit(now, &mut buf).unwrap();
        Message::decode(&buf).unwrap().message_id
    };
    let a: Vec<u16> = (0..3).map(|_| mids(&mut ep, r1)).collect();
    let b: Vec<u16> = (0..3).map(|_| mids(&mut ep, r2)).collect();
    assert_eq!(a[1], a[0].wrapping_add(1));
    assert_eq!(a[2], a[0].wrapping_add(2));
    assert_eq!(b[1], b[0].wrapping_add(1));
}

#[test]
fn api_misuse_is_refused_without_changing_state() {
    let mut ep = Endpoint::new(Config::default().into());
    let now = std::time::Instant::now();
    let remote = "[::1]:5683".parse().unwrap();
    let err = ep
        .request(now, remote, Request::new(Code::CONTENT))
        .unwrap_err();
    assert_eq!(err, Error::WrongCode(Code::CONTENT));
    let mut buf = Vec::new();
    assert!(ep.poll_transmit(now, &mut buf).is_none());
    // A request arrives; answering with a method code or twice is refused.
    let mut m = Message::new(Type::Con, Code::GET, 1);
    m.options.push(crate::message::OptionNumber::URI_PATH, "x");
    ep.handle_datagram(now, &RecvMeta::new(remote), &m.to_bytes().unwrap());
    let Some(crate::proto::Event::Request { id, .. }) = ep.poll_event() else {
        panic!()
    };
    let resp = crate::proto::Response::new(Code::GET);
    assert_eq!(ep.respond(now, id, resp), Err(Error::WrongCode(Code::GET)));
    ep.respond(now, id, crate::proto::Response::new(Code::DELETED))
        .unwrap();
    assert_eq!(
        ep.respond(now, id, crate::proto::Response::new(Code::DELETED)),
        Err(Error::UnknownExchange)
    );
    let t = ep.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(t.destination, remote);
    assert!(ep.poll_transmit(now, &mut buf).is_none());
}

#[test]
fn message_ids_continue_after_a_remote_goes_idle() {
    // Separate responses need message IDs of the server's own; a remote that was idle for a
    // while keeps its counter (no random restart that could reuse a recent ID).
    let mut sim = Sim::new(11, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_secs(1)));
    let mut ids = Vec::new();
    for i in 0..3u8 {
        ids.push(sim.request(c, s, Request::post("/slow", vec![i])));
        sim.run(Duration::from_secs(10 * (u64::from(i) + 1)));
    }
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &ids), (3, 0));
    let mids: Vec<u16> = sim
        .sent(s, c)
        .iter()
        .filter(|(_, m)| m.ty == Type::Con)
        .map(|(_, m)| m.message_id)
        .collect();
    assert_eq!(mids.len(), 3);
    assert_eq!(mids[1], mids[0].wrapping_add(1));
    assert_eq!(mids[2], mids[0].wrapping_add(2));
    assert_eq!(sim.nodes[s].ep.stats().remotes, 0);
    assert_eq!(sim.nodes[s].ep.stats().idle_remotes, 1);
}

#[test]
fn per_request_timeout_and_token_length() {
    let mut sim = Sim::new(
        12,
        Link {
            loss: 1.0,
            ..Link::perfect()
        },
    );
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::Never);
    let short = sim.request(
        c,
        s,
        Request::get("/a").with_timeout(Duration::from_secs(10)),
    );
    // Queued behind `short` (NSTART 1): its own limit runs while it waits.
    let queued = sim.request(
        c,
        s,
        Request::get("/b").with_timeout(Duration::from_secs(5)),
    );
    let tiny = sim.request(c, s, Request::get("/c").with_token_length(2));
    sim.run(Duration::from_secs(600));
    let failed_at = |id| match sim.nodes[c].outcomes[&id][..] {
        [Outcome::Failed(at, crate::proto::Failure::Timeout)] => at - sim.start,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(failed_at(queued), Duration::from_secs(5));
    assert_eq!(failed_at(short), Duration::from_secs(10));
    assert!(
        failed_at(tiny) > Duration::from_secs(60),
        "the message layer's own timeout"
    );
    let sent = sim.sent(c, s);
    assert!(sent.iter().all(|(_, m)| m.payload.is_empty()));
    assert!(sent.iter().any(|(_, m)| m.token.len() == 2));
    assert!(!sent.iter().any(
        |(_, m)| m.options.get(crate::message::OptionNumber::URI_PATH) == Some(b"b".as_slice())
    ));
}
