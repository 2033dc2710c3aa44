//! Block-wise transfers (RFC 7959) end to end on the simulated network: uploads with Block1,
//! downloads with Block2, both at once, under loss and reordering.

use std::time::Duration;

use super::sim::{exactly_one_outcome, Answer, Link, Outcome, Sim};
use crate::message::{BlockValue, Code, OptionNumber};
use crate::proto::{Config, Request};

/// A server that does not limit its answers to unverified clients (RFC 9175 §2.4): these
/// tests are about the block sizes negotiated, which the limit would make smaller.
fn unlimited() -> Config {
    Config {
        amplification_mitigation: false,
        ..Config::default()
    }
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

fn blocks_of(sim: &Sim, from: usize, to: usize, number: OptionNumber) -> Vec<BlockValue> {
    sim.sent(from, to)
        .iter()
        .filter_map(|(_, m)| {
            m.options
                .get(number)
                .map(|v| BlockValue::from_bytes(v).unwrap())
        })
        .collect()
}

#[test]
fn a_mebibyte_both_ways_under_loss_and_reordering() {
    // 2 × 1024 exchanges: at 10 % loss each way, more retransmissions than the default
    // keep the chance that one exchange gives up negligible.
    let mut sim = Sim::new(70, Link::lossy(0.1));
    sim.tapping = false;
    let patient = |seed| Config {
        max_retransmit: 10,
        ..Config::default().with_seed(seed)
    };
    let c = sim.add(patient(70), Answer::Never);
    let s = sim.add(patient(71), Answer::After(Duration::from_millis(5)));
    let payload = body(1 << 20);
    let id = sim.request(c, s, Request::post("/echo", payload.clone()));
    sim.run(Duration::from_secs(7 * 24 * 3600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    let Outcome::Response(_, r) = &sim.nodes[c].outcomes[&id][0] else {
        unreachable!()
    };
    assert_eq!(r.code, Code::CONTENT);
    assert!(
        r.payload == payload,
        "the echo came back whole and in order"
    );
    assert!(!r.options.contains(OptionNumber::BLOCK2));
    // The handler saw one whole request, once.
    assert_eq!(sim.nodes[s].handler_runs.len(), 1);
    assert_eq!(sim.nodes[s].handler_runs[&payload], 1);
    let (cs, ss) = (sim.nodes[c].ep.stats(), sim.nodes[s].ep.stats());
    assert_eq!((cs.transfers, cs.open_requests), (0, 0), "{cs:?}");
    assert_eq!(ss.uploads, 0, "{ss:?}");
}

#[test]
fn late_negotiation_fetches_every_block_in_order() {
    let mut sim = Sim::new(72, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(unlimited(), Answer::After(Duration::ZERO));
    sim.nodes[s].reply_size = Some(5000);
    let id = sim.request(c, s, Request::get("/large"));
    sim.run(Duration::from_secs(600));
    let Outcome::Response(_, r) = &sim.nodes[c].outcomes[&id][0] else {
        panic!()
    };
    assert_eq!(
        r.payload,
        (0..5000).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    let served = blocks_of(&sim, s, c, OptionNumber::BLOCK2);
    let nums: Vec<u32> = served.iter().map(|b| b.num()).collect();
    assert_eq!(nums, [0, 1, 2, 3, 4], "every block once, in order");
    assert!(served.iter().all(|b| b.size() == 1024));
    assert!(served[..4].iter().all(|b| b.more()) && !served[4].more());
    // Size2 and an ETag on the first block; the application ran once: the later blocks came
    // from the server's cache.
    let first = &sim.sent(s, c)[0].1;
    assert_eq!(first.options.get_uint(OptionNumber::SIZE2), Some(5000));
    assert!(first.options.contains(OptionNumber::ETAG));
    assert_eq!(sim.nodes[s].handler_runs.values().sum::<u32>(), 1);
}

#[test]
fn early_negotiation_and_random_access() {
    let mut sim = Sim::new(73, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(unlimited(), Answer::After(Duration::ZERO));
    sim.nodes[s].reply_size = Some(300);
    let whole = sim.request(c, s, Request::get("/large").with_block_size(64));
    let mut one = Request::get("/large");
    one.options.push_uint(
        OptionNumber::BLOCK2,
        BlockValue::new(2, false, 1).unwrap().to_uint(),
    );
    let third = sim.request(c, s, one);
    sim.run(Duration::from_secs(600));
    let Outcome::Response(_, r) = &sim.nodes[c].outcomes[&whole][0] else {
        panic!()
    };
    assert_eq!(r.payload.len(), 300);
    let Outcome::Response(_, r) = &sim.nodes[c].outcomes[&third][0] else {
        panic!()
    };
    let b = BlockValue::from_bytes(r.options.get(OptionNumber::BLOCK2).unwrap()).unwrap();
    assert_eq!((b.num(), b.size(), b.more()), (2, 32, true));
    assert_eq!(
        r.payload,
        (64..96).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    let mut sizes: Vec<usize> = blocks_of(&sim, s, c, OptionNumber::BLOCK2)
        .iter()
        .map(|b| b.size())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [32, 64, 64, 64, 64, 64]);
}

#[test]
fn upload_follows_the_servers_smaller_block_size() {
    let mut sim = Sim::new(74, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let server = Config {
        block_size: 256,
        ..Config::default()
    };
    let s = sim.add(server, Answer::After(Duration::ZERO));
    sim.nodes[s].reply_size = Some(10);
    let payload = body(3000);
    let id = sim.request(c, s, Request::put("/big", payload.clone()));
    sim.run(Duration::from_secs(600));
    assert_eq!(exactly_one_outcome(&sim.nodes[c], &[id]), (1, 0));
    assert_eq!(sim.nodes[s].handler_runs[&payload], 1);
    let sent = blocks_of(&sim, c, s, OptionNumber::BLOCK1);
    assert_eq!(sent[0].size(), 1024, "the client starts with its own size");
    assert!(sent[1..].iter().all(|b| b.size() == 256), "{sent:?}");
    let total: usize = sim.sent(c, s).iter().map(|(_, m)| m.payload.len()).sum();
    assert_eq!(total, 3000, "no byte sent twice");
    let last = sim.sent(s, c).last().unwrap().1.clone();
    let echoed = BlockValue::from_bytes(last.options.get(OptionNumber::BLOCK1).unwrap()).unwrap();
    assert!(!echoed.more());
    assert_eq!(last.code, Code::CONTENT);
}

#[test]
fn oversized_upload_gets_4_13_and_state_is_freed() {
    let mut sim = Sim::new(75, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let server = Config {
        max_body_size: 2048,
        ..Config::default()
    };
    let s = sim.add(server, Answer::After(Duration::ZERO));
    let id = sim.request(c, s, Request::put("/big", body(5000)));
    sim.run(Duration::from_secs(600));
    let Outcome::Response(_, r) = &sim.nodes[c].outcomes[&id][0] else {
        panic!()
    };
    assert_eq!(r.code, Code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(r.options.get_uint(OptionNumber::SIZE1), Some(2048));
    assert!(sim.nodes[s].handler_runs.is_empty());
    assert_eq!(sim.nodes[s].ep.stats().uploads, 0);
}

#[test]
fn cancelling_a_transfer_stops_it() {
    let mut sim = Sim::new(76, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::from_millis(50)));
    sim.nodes[s].reply_size = Some(100_000);
    let id = sim.request(c, s, Request::get("/large"));
    sim.run(Duration::from_millis(500));
    let sent_before = sim.sent(c, s).len();
    assert!(sent_before > 1, "the transfer is under way");
    let now = sim.now;
    sim.nodes[c].ep.cancel(now, id);
    sim.run(Duration::from_secs(600));
    assert!(sim.sent(c, s).len() <= sent_before + 1);
    assert!(!sim.nodes[c].outcomes.contains_key(&id));
    assert_eq!(sim.nodes[c].ep.stats().transfers, 0);
}

/// A CON PUT /up block `num` (1024 bytes, SZX 6) from `from`.
fn put_block(
    ep: &mut crate::proto::Endpoint,
    from: std::net::SocketAddr,
    mid: u16,
    num: u32,
    more: bool,
    len: usize,
) -> crate::message::Message {
    use crate::message::{Message, Type};
    let now = std::time::Instant::now();
    let mut m = Message::new(Type::Con, Code::PUT, mid);
    m.token = crate::message::Token::from_slice(&mid.to_be_bytes()).unwrap();
    m.options.push(OptionNumber::URI_PATH, "up");
    m.options.push_uint(
        OptionNumber::BLOCK1,
        BlockValue::new(num, more, 6).unwrap().to_uint(),
    );
    m.payload = vec![num as u8; len];
    ep.handle_datagram(
        now,
        &crate::proto::RecvMeta::new(from),
        &m.to_bytes().unwrap(),
    );
    while let Some(ev) = ep.poll_event() {
        if let crate::proto::Event::Request { id, request, .. } = ev {
            assert_eq!(request.payload.len(), 1024 + 10);
            ep.respond(now, id, crate::proto::Response::new(Code::CHANGED))
                .unwrap();
        }
    }
    let mut buf = Vec::new();
    let t = ep.poll_transmit(now, &mut buf).expect("an answer");
    assert_eq!(t.destination, from);
    Message::decode(&buf).unwrap()
}

/// Strangers starting 20 000 uploads and never finishing them (16 used to lock everyone out
/// with 5.03 for minutes) do not keep a legitimate 2-block upload from succeeding.
#[test]
fn abandoned_uploads_do_not_lock_out_a_legitimate_one() {
    let mut ep = crate::proto::Endpoint::new(Config::default().into());
    for i in 0..20_000u32 {
        let stranger = std::net::SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 40000));
        let answer = put_block(&mut ep, stranger, 1, 0, true, 1024);
        assert_eq!(answer.code, Code::CONTINUE, "stranger {i}");
    }
    assert!(ep.stats().upload_bytes <= Config::default().upload_memory);
    let me = std::net::SocketAddr::from(([10, 8, 0, 1], 5683));
    assert_eq!(
        put_block(&mut ep, me, 1, 0, true, 1024).code,
        Code::CONTINUE
    );
    assert_eq!(put_block(&mut ep, me, 2, 1, false, 10).code, Code::CHANGED);
}

/// A block-wise FETCH carries its body on every follow-up request (RFC 8132 §2.3.2), and
/// the server keys the representation by that body.
#[test]
fn a_blockwise_fetch_keeps_its_body_on_every_block() {
    let mut sim = Sim::new(71, Link::perfect());
    let s = sim.add(unlimited(), Answer::After(Duration::ZERO));
    sim.nodes[s].reply_size = Some(3000);
    let c = sim.add(Config::default(), Answer::Never);
    let mut fetch = Request::new(Code::FETCH);
    fetch.options.push(OptionNumber::URI_PATH, "q");
    fetch.payload = b"query".to_vec();
    let id = sim.request(c, s, fetch);
    sim.run(Duration::from_secs(10));
    match sim.nodes[c].outcomes[&id].as_slice() {
        [Outcome::Response(_, r)] => assert_eq!(r.payload.len(), 3000),
        other => panic!("{other:?}"),
    }
    let requests: Vec<_> = sim.sent(c, s).into_iter().map(|(_, m)| m).collect();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|m| m.payload == b"query"),
        "{requests:?}"
    );
    // The server ran its handler once: later blocks came from its cache under the same key.
    assert_eq!(sim.nodes[s].handler_runs.values().sum::<u32>(), 1);
}

/// Two uploads from one client to the same resource at the same time are told apart
/// (Request-Tag, RFC 9175 §3.3): each reaches the server whole, neither mixed with the other.
#[test]
fn concurrent_uploads_to_one_resource_stay_apart() {
    let mut sim = Sim::new(72, Link::perfect());
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let c = sim.add(Config::default(), Answer::Never);
    let a = sim.request(c, s, Request::put("/x", vec![1u8; 3000]));
    let b = sim.request(c, s, Request::put("/x", vec![2u8; 3000]));
    sim.run(Duration::from_secs(60));
    for (id, byte) in [(a, 1u8), (b, 2u8)] {
        match sim.nodes[c].outcomes[&id].as_slice() {
            // The server echoes what it got.
            [Outcome::Response(_, r)] => {
                assert_eq!(r.code, Code::CONTENT);
                assert!(r.payload.len() == 3000 && r.payload.iter().all(|x| *x == byte));
            }
            other => panic!("{other:?}"),
        }
    }
}

/// An upload started while an earlier upload to the same resource is fetching its response's
/// blocks is told apart from it too (its own Request-Tag): each gets its own response.
#[test]
fn an_upload_during_anothers_block2_phase_stays_apart() {
    let mut sim = Sim::new(72, Link::perfect());
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let c = sim.add(Config::default(), Answer::Never);
    let a = sim.request(c, s, Request::put("/x", vec![1u8; 6000]));
    sim.run(Duration::from_millis(135));
    let b = sim.request(c, s, Request::put("/x", vec![2u8; 2000]));
    sim.run(Duration::from_secs(60));
    for (id, byte, len) in [(a, 1u8, 6000), (b, 2u8, 2000)] {
        match sim.nodes[c].outcomes[&id].as_slice() {
            [Outcome::Response(_, r)] => {
                assert_eq!(r.code, Code::CONTENT, "{id:?}");
                assert!(r.payload.len() == len && r.payload.iter().all(|x| *x == byte));
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
}
