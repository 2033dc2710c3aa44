//! OSCORE (RFC 8613) end to end on the simulated network: requests protected as they go out
//! and verified as they arrive, answers protected, block-wise and Observe inside OSCORE,
//! replays and forgeries refused without reaching the application, and the Echo recovery
//! of a server that lost its replay window (Appendix B.1.2).

use std::time::Duration;

use super::sim::{Answer, Link, Outcome, Sim};
use crate::message::{Code, Message, MessageRef, OptionNumber, Type};
use crate::oscore::{ContextParams, SecurityContext};
use crate::proto::{Config, Failure, Request, SecurityId};

const SECRET: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const SALT: [u8; 8] = [0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40];

/// The RFC 8613 Appendix C.1 pair: the client's Sender ID is empty, the server's is 01.
fn context(server: bool) -> SecurityContext {
    let (me, peer) = (vec![], vec![1]);
    let (sender, recipient) = if server { (peer, me) } else { (me, peer) };
    let mut p = ContextParams::new(sender, recipient, SECRET.to_vec());
    p.master_salt = SALT.to_vec();
    SecurityContext::new(p).expect("context")
}

/// A client and a server sharing a context; returns (sim, client, server, client's context).
fn pair(seed: u64) -> (Sim, usize, usize, SecurityId) {
    let mut sim = Sim::new(seed, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let id = sim.nodes[c].ep.add_oscore_context(context(false), None);
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    (sim, c, s, id)
}

fn response(
    sim: &Sim,
    c: usize,
    id: crate::proto::RequestId,
) -> Result<crate::proto::Response, Failure> {
    match sim.nodes[c].outcomes.get(&id).map(Vec::as_slice) {
        Some([Outcome::Response(_, r)]) => Ok(r.clone()),
        Some([Outcome::Failed(_, f)]) => Err(f.clone()),
        other => panic!("not exactly one outcome: {other:?}"),
    }
}

/// Every datagram between the two, decoded.
fn wire(sim: &Sim) -> Vec<Message> {
    sim.tap
        .iter()
        .filter_map(|t| MessageRef::decode(&t.bytes).ok().map(|m| m.to_owned()))
        .collect()
}

#[test]
fn protected_requests_and_answers_carry_nothing_in_the_clear() {
    let (mut sim, c, s, ctx) = pair(1);
    let secret = b"the secret payload".to_vec();
    let id = sim.request(
        c,
        s,
        Request::put("/private/thing", secret.clone()).with_oscore(ctx),
    );
    sim.run(Duration::from_secs(60));
    let r = response(&sim, c, id).expect("a verified response");
    assert_eq!(
        (r.code, &r.payload),
        (Code::CONTENT, &secret),
        "the echo, decrypted"
    );
    assert!(!r.options.contains(OptionNumber::OSCORE));
    assert_eq!(sim.nodes[s].protected_requests, 1);
    for m in wire(&sim).iter().filter(|m| !m.code.is_empty()) {
        assert!(m.options.contains(OptionNumber::OSCORE), "{m:?}");
        assert!(
            !m.options.contains(OptionNumber::URI_PATH),
            "Uri-Path is inner"
        );
        assert!(
            !m.payload.windows(secret.len()).any(|w| w == secret),
            "payload in the clear"
        );
        assert!(
            matches!(m.code, Code::POST | Code::CHANGED),
            "outer code {}",
            m.code
        );
    }
}

#[test]
fn blockwise_inside_oscore_both_ways() {
    let (mut sim, c, s, ctx) = pair(2);
    // An upload of 5000 bytes (inner Block1) echoed back (inner Block2).
    let body: Vec<u8> = (0..5000).map(|i| (i * 7 % 256) as u8).collect();
    let id = sim.request(c, s, Request::post("/echo", body.clone()).with_oscore(ctx));
    sim.run(Duration::from_secs(600));
    let r = response(&sim, c, id).expect("response");
    assert_eq!(r.payload, body);
    assert_eq!(
        sim.nodes[s].handler_runs[&body], 1,
        "one whole request, once"
    );
    let messages = wire(&sim);
    assert!(
        messages.len() > 10,
        "block-wise: {} messages",
        messages.len()
    );
    for m in messages.iter().filter(|m| !m.code.is_empty()) {
        assert!(m.options.contains(OptionNumber::OSCORE));
        assert!(
            !m.options.contains(OptionNumber::BLOCK1) && !m.options.contains(OptionNumber::BLOCK2)
        );
    }
    // A large representation fetched with GET.
    sim.nodes[s].reply_size = Some(3000);
    let id = sim.request(c, s, Request::get("/large").with_oscore(ctx));
    sim.run(sim.elapsed_plus(Duration::from_secs(600)));
    let r = response(&sim, c, id).expect("response");
    assert_eq!(
        r.payload,
        (0..3000).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
}

#[test]
fn observe_inside_oscore() {
    let (mut sim, c, s, ctx) = pair(3);
    sim.nodes[s].observable = true;
    let mut req = Request::get("/obs").with_oscore(ctx);
    req.options.set_uint(OptionNumber::OBSERVE, 0);
    let id = sim.request(c, s, req);
    sim.run(Duration::from_secs(10));
    for i in 0..5u64 {
        let now = sim.now;
        assert_eq!(sim.nodes[s].ep.notify(now, "/obs"), 1);
        sim.run(sim.elapsed_plus(Duration::from_secs(10 + i)));
    }
    let got = sim.nodes[c]
        .notifications
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let bodies: Vec<_> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    assert_eq!(
        bodies,
        ["n1", "n2", "n3", "n4", "n5", "n6"],
        "registration and 5 notifications"
    );
    // Each notification has a Partial IV of its own: no two outer OSCORE options alike.
    let options: Vec<Vec<u8>> = wire(&sim)
        .iter()
        .filter(|m| m.code == Code::CONTENT)
        .filter_map(|m| m.options.get(OptionNumber::OSCORE).map(<[u8]>::to_vec))
        .collect();
    let mut unique = options.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), options.len(), "{options:?}");
    assert_eq!(sim.nodes[s].ep.stats().observers, 1);
}

/// The first request, resent as a new message (a new message ID, so deduplication does not
/// catch it): OSCORE's replay window must.
#[test]
fn a_replayed_request_is_refused_and_never_served() {
    let (mut sim, c, s, ctx) = pair(4);
    let id = sim.request(c, s, Request::post("/once", "pay 10").with_oscore(ctx));
    sim.run(Duration::from_secs(30));
    assert!(response(&sim, c, id).is_ok());
    let first = sim
        .tap
        .iter()
        .find(|t| t.from == sim.nodes[c].addr)
        .unwrap()
        .clone();
    let mut replay = first.bytes.clone();
    replay[2] ^= 0x55; // another message ID
    let (from, to) = (first.from, first.to);
    sim.tap.clear();
    sim.inject(from, to, replay);
    sim.run(sim.elapsed_plus(Duration::from_secs(30)));
    assert_eq!(
        sim.nodes[s].handler_runs[b"pay 10".as_slice()],
        1,
        "served once"
    );
    let answer = wire(&sim)
        .into_iter()
        .find(|m| m.ty == Type::Ack && !m.code.is_empty())
        .expect("answered");
    assert_eq!(answer.code, Code::UNAUTHORIZED);
    assert_eq!(answer.payload, b"Replay detected");
    assert!(
        !answer.options.contains(OptionNumber::OSCORE),
        "an unprotected error"
    );
    // A tampered ciphertext: 4.00 Decryption failed, not served.
    let mut tampered = first.bytes.clone();
    tampered[2] ^= 0x66;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    sim.tap.clear();
    sim.inject(from, to, tampered);
    sim.run(sim.elapsed_plus(Duration::from_secs(30)));
    let answer = wire(&sim)
        .into_iter()
        .find(|m| m.ty == Type::Ack && !m.code.is_empty())
        .expect("answered");
    assert_eq!(
        (answer.code, answer.payload.as_slice()),
        (Code::BAD_REQUEST, b"Decryption failed".as_slice())
    );
    assert_eq!(sim.nodes[s].protected_requests, 1);
}

#[test]
fn errors_without_a_context_and_unprotected_answers() {
    let mut sim = Sim::new(5, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let ctx = sim.nodes[c].ep.add_oscore_context(context(false), None);
    // The server knows another client only.
    let mut other = ContextParams::new(vec![1], vec![7], SECRET.to_vec());
    other.master_salt = SALT.to_vec();
    sim.nodes[s]
        .ep
        .add_oscore_context(SecurityContext::new(other).unwrap(), None);
    sim.nodes[s].ep.require_oscore(true);
    let id = sim.request(c, s, Request::get("/x").with_oscore(ctx));
    let plain = sim.request(c, s, Request::get("/x"));
    sim.run(Duration::from_secs(60));
    assert_eq!(
        response(&sim, c, id),
        Err(Failure::Unprotected(Code::UNAUTHORIZED))
    );
    let r = response(&sim, c, plain).expect("an answer");
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::UNAUTHORIZED, b"OSCORE required".as_slice())
    );
    assert!(
        sim.nodes[s].handler_runs.is_empty(),
        "the application saw neither"
    );
    // A request naming a context the endpoint does not have is refused at once.
    let now = sim.now;
    let remote = sim.nodes[s].addr;
    assert!(sim.nodes[c]
        .ep
        .request(now, remote, Request::get("/x").with_oscore(SecurityId(9)))
        .is_err());
}

/// A server restarted without its replay window (RFC 8613 Appendix B.1.2) answers the first
/// request with a protected 4.01 and Echo; the client repeats it with the Echo, and the
/// application sees only the repetition.
#[test]
fn a_restarted_server_recovers_its_replay_window_with_echo() {
    let mut sim = Sim::new(6, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let ctx = sim.nodes[c].ep.add_oscore_context(context(false), None);
    let mut restarted = context(true);
    restarted.replay_window_uninitialized();
    sim.nodes[s].ep.add_oscore_context(restarted, None);
    let id = sim.request(c, s, Request::put("/door", "open").with_oscore(ctx));
    sim.run(Duration::from_secs(60));
    let r = response(&sim, c, id).expect("the final answer");
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CONTENT, b"open".as_slice())
    );
    assert_eq!(
        sim.nodes[s].handler_runs[b"open".as_slice()],
        1,
        "served once, when fresh"
    );
    let requests = wire(&sim).iter().filter(|m| m.code.is_request()).count();
    assert_eq!(requests, 2, "the request and its repetition with Echo");
    assert!(wire(&sim)
        .iter()
        .all(|m| m.code.is_empty() || m.options.contains(OptionNumber::OSCORE)));
    // The first request, replayed now, is refused: the window starts at the repetition.
    let first = sim
        .tap
        .iter()
        .find(|t| t.from == sim.nodes[c].addr)
        .unwrap()
        .clone();
    let mut replay = first.bytes.clone();
    replay[2] ^= 0x55;
    sim.tap.clear();
    sim.inject(first.from, first.to, replay);
    sim.run(sim.elapsed_plus(Duration::from_secs(30)));
    assert_eq!(sim.nodes[s].handler_runs[b"open".as_slice()], 1);
}

#[test]
fn a_group_request_cannot_be_protected() {
    let (mut sim, c, _s, ctx) = pair(7);
    let group: std::net::SocketAddr = "[ff02::fd]:5683".parse().unwrap();
    let now = sim.now;
    let r = sim.nodes[c]
        .ep
        .request(now, group, Request::get("/x").with_oscore(ctx));
    assert_eq!(r, Err(crate::proto::Error::OscoreGroup));
}

/// A context made with a persistence step but added without a hook goes on (unpersisted)
/// rather than stopping when its first bound is not stored.
#[test]
fn a_persistence_step_without_a_hook_does_not_stop_the_context() {
    let mut sim = Sim::new(8, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let mut p = ContextParams::new(vec![], vec![1], SECRET.to_vec());
    p.master_salt = SALT.to_vec();
    p.persist_step = 10;
    let ctx = sim.nodes[c]
        .ep
        .add_oscore_context(SecurityContext::new(p).unwrap(), None);
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    let ids: Vec<_> = (0..40)
        .map(|i| sim.request(c, s, Request::put("/n", format!("{i}")).with_oscore(ctx)))
        .collect();
    sim.run(Duration::from_secs(600));
    for id in ids {
        assert!(response(&sim, c, id).is_ok());
    }
}

/// An answer cut to fit the amplification limit spends one sequence number (the one it is
/// sent with), however many sizes were tried.
#[test]
fn fitting_an_answer_spends_one_sequence_number() {
    let (mut sim, c, s, ctx) = pair(9);
    sim.nodes[s].reply_size = Some(3000);
    let id = sim.request(c, s, Request::get("/large").with_oscore(ctx));
    sim.run(Duration::from_secs(5));
    let _ = id;
    let first_answer = wire(&sim)
        .into_iter()
        .find(|m| m.code == Code::CHANGED || m.code == Code::CONTENT)
        .expect("an answer");
    let option = first_answer
        .options
        .get(OptionNumber::OSCORE)
        .unwrap()
        .to_vec();
    // Flag byte, then a one-byte Partial IV of the server's first number, 0 (or none at all
    // when it reused the request's nonce).
    assert!(option.is_empty() || option == [0x01, 0x00], "{option:02x?}");
}

/// A proxy may cut a protected request into outer Block1 blocks (RFC 8613 §4.1.3.4.2): the
/// server puts them together (2.31 Continue for each, unprotected, as a proxy's blocks are),
/// then verifies the whole and answers it protected.
#[test]
fn a_protected_request_a_proxy_cut_into_outer_blocks_is_put_together() {
    use crate::message::{BlockValue, Options, Token};
    let mut sim = Sim::new(10, Link::perfect());
    let server = Config {
        amplification_mitigation: false,
        ..Config::default()
    };
    let s = sim.add(server, Answer::After(Duration::ZERO));
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    let mut client = context(false);
    let body: Vec<u8> = (0..900).map(|i| (i % 253) as u8).collect();
    let mut options = Options::new();
    options.push(OptionNumber::URI_PATH, "upload");
    let (p, binding) = client.protect_request(Code::PUT, &options, &body).unwrap();
    let (proxy, to) = (super::sim::addr(50), sim.nodes[s].addr);
    let chunks: Vec<&[u8]> = p.payload.chunks(256).collect();
    assert!(chunks.len() >= 4);
    for (i, chunk) in chunks.iter().enumerate() {
        let more = i + 1 < chunks.len();
        let mut outer = p.options.clone();
        let block = BlockValue::new(i as u32, more, 4).unwrap();
        outer.push_uint(OptionNumber::BLOCK1, block.to_uint());
        let msg = Message {
            ty: Type::Con,
            code: p.code,
            message_id: 100 + i as u16,
            token: Token::from_slice(&[7, i as u8]).unwrap(),
            options: outer,
            payload: chunk.to_vec(),
        };
        sim.tap.clear();
        sim.inject(proxy, to, msg.to_bytes().unwrap());
        sim.run(sim.elapsed_plus(Duration::from_secs(5)));
        let answer = wire(&sim)
            .into_iter()
            .find(|m| m.ty == Type::Ack)
            .expect("answered");
        if more {
            assert_eq!(answer.code, Code::CONTINUE, "block {i}");
            assert!(!answer.options.contains(OptionNumber::OSCORE));
        } else {
            let plain = client
                .unprotect_response(&binding, answer.code, &answer.options, &answer.payload)
                .expect("a protected answer that verifies");
            assert_eq!((plain.code, &plain.payload), (Code::CONTENT, &body));
        }
    }
    assert_eq!(sim.nodes[s].handler_runs[&body], 1);
    assert_eq!(sim.nodes[s].protected_requests, 1);
    assert_eq!(sim.nodes[s].ep.stats().uploads, 0, "nothing kept");
}

/// A client that sent a protected GET of `/big` to a "proxy" (an address with no node: the
/// test answers for it), with the server's context, the request as sent and its binding.
struct BehindProxy {
    sim: Sim,
    c: usize,
    id: crate::proto::RequestId,
    proxy: std::net::SocketAddr,
    server: SecurityContext,
    first: Message,
    binding: crate::oscore::RequestBinding,
}

fn behind_a_proxy(seed: u64, proxy: u16) -> BehindProxy {
    let mut sim = Sim::new(seed, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let ctx = sim.nodes[c].ep.add_oscore_context(context(false), None);
    let proxy = super::sim::addr(proxy);
    let mut server = context(true);
    let now = sim.now;
    let id = sim.nodes[c]
        .ep
        .request(now, proxy, Request::get("/big").with_oscore(ctx))
        .unwrap();
    sim.run(sim.elapsed_plus(Duration::from_millis(100)));
    let first = Message::decode(&sim.tap.last().unwrap().bytes).unwrap();
    let (plain, binding) = server
        .unprotect_request(first.code, &first.options, &first.payload)
        .expect("the client's request verifies");
    assert_eq!(plain.code, Code::GET);
    BehindProxy {
        sim,
        c,
        id,
        proxy,
        server,
        first,
        binding,
    }
}

/// A proxy may cut a protected response into outer Block2 blocks (RFC 8613 §4.1.3.4.2): the
/// client asks for each later block with its sealed request again (the same OSCORE option and
/// ciphertext, so that the proxy finds its cached response), puts the blocks together, and
/// only then verifies and decrypts.
#[test]
fn a_protected_response_a_proxy_cut_into_outer_blocks_is_put_together() {
    use crate::message::{BlockValue, Options};
    let BehindProxy {
        mut sim,
        c,
        id,
        proxy,
        mut server,
        first,
        binding,
    } = behind_a_proxy(11, 60);
    let body: Vec<u8> = (0..1500).map(|i| (i % 241) as u8).collect();
    let sealed = server
        .protect_response(&binding, Code::CONTENT, &Options::new(), &body, false)
        .unwrap();
    let chunks: Vec<&[u8]> = sealed.payload.chunks(512).collect();
    assert!(chunks.len() >= 3);
    let mut request = first.clone();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            // The client asks again with its sealed request and Block2 for block i.
            sim.run(sim.elapsed_plus(Duration::from_millis(100)));
            request = Message::decode(&sim.tap.last().unwrap().bytes).unwrap();
            assert_eq!(request.payload, first.payload, "the same ciphertext");
            assert_eq!(
                request.options.get(OptionNumber::OSCORE),
                first.options.get(OptionNumber::OSCORE),
                "the same OSCORE option"
            );
            let b = BlockValue::from_bytes(request.options.get(OptionNumber::BLOCK2).unwrap());
            assert_eq!(b.unwrap().num(), i as u32);
        }
        let more = i + 1 < chunks.len();
        let answer = outer_block2(&sealed, &request, i, more, 5, chunk);
        sim.inject(proxy, sim.nodes[c].addr, answer);
    }
    sim.run(sim.elapsed_plus(Duration::from_secs(1)));
    let r = response(&sim, c, id).expect("the whole response, verified");
    assert_eq!((r.code, &r.payload), (Code::CONTENT, &body));
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
}

/// A proxy may ask for a protected answer in outer Block2 blocks (RFC 8613 §4.1.3.4.2): the
/// server answers the sealed request with the first block of its sealed answer, and each
/// repetition of the sealed request with a later Block2 with that block, from the answer it
/// kept (the request is not verified, nor served, again).
#[test]
fn a_server_serves_its_sealed_answer_in_outer_blocks() {
    use crate::message::{BlockValue, Options, Token};
    let mut sim = Sim::new(12, Link::perfect());
    let server = Config {
        amplification_mitigation: false,
        ..Config::default()
    };
    let s = sim.add(server, Answer::After(Duration::ZERO));
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    sim.nodes[s].reply_size = Some(700);
    let mut client = context(false);
    let mut options = Options::new();
    options.push(OptionNumber::URI_PATH, "big");
    let (p, binding) = client.protect_request(Code::GET, &options, b"").unwrap();
    let (proxy, to) = (super::sim::addr(61), sim.nodes[s].addr);
    let mut sealed = Vec::new();
    let mut answer_options = None;
    for num in 0..10u32 {
        let mut outer = p.options.clone();
        outer.push_uint(
            OptionNumber::BLOCK2,
            BlockValue::new(num, false, 4).unwrap().to_uint(),
        );
        let msg = Message {
            ty: Type::Con,
            code: p.code,
            message_id: 200 + num as u16,
            token: Token::from_slice(&[9, num as u8]).unwrap(),
            options: outer,
            payload: p.payload.clone(),
        };
        sim.tap.clear();
        sim.inject(proxy, to, msg.to_bytes().unwrap());
        sim.run(sim.elapsed_plus(Duration::from_secs(5)));
        let answer = wire(&sim)
            .into_iter()
            .find(|m| m.ty == Type::Ack)
            .expect("answered");
        let block =
            BlockValue::from_bytes(answer.options.get(OptionNumber::BLOCK2).unwrap()).unwrap();
        assert_eq!((block.num(), block.size()), (num, 256));
        assert!(answer.payload.len() <= 256);
        sealed.extend_from_slice(&answer.payload);
        let mut o = answer.options.clone();
        o.remove(OptionNumber::BLOCK2);
        o.remove(OptionNumber::SIZE2);
        answer_options.get_or_insert((answer.code, o));
        if !block.more() {
            break;
        }
    }
    let (code, o) = answer_options.unwrap();
    let plain = client
        .unprotect_response(&binding, code, &o, &sealed)
        .expect("the blocks make the sealed answer");
    assert_eq!(
        plain.payload,
        (0..700).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    assert_eq!(sim.nodes[s].protected_requests, 1, "served once");
}

/// The answer a proxy cut into outer blocks may itself be the first inner block of a larger
/// representation (the server's own block-wise, inside OSCORE): once put together and
/// verified, the client asks for the next inner block with a newly protected request, as it
/// does for any answer, and the caller gets the whole representation.
#[test]
fn an_inner_block_in_outer_blocks_goes_on_with_the_callers_request() {
    use crate::message::{BlockValue, Options};
    let BehindProxy {
        mut sim,
        c,
        id,
        proxy,
        mut server,
        first,
        binding,
    } = behind_a_proxy(13, 62);
    let body: Vec<u8> = (0..1500).map(|i| (i % 239) as u8).collect();
    // Inner block 0 of 1024 bytes; the proxy cuts its sealed form into 256-byte blocks.
    let mut inner = Options::new();
    inner.push_uint(
        OptionNumber::BLOCK2,
        BlockValue::new(0, true, 6).unwrap().to_uint(),
    );
    let sealed = server
        .protect_response(&binding, Code::CONTENT, &inner, &body[..1024], false)
        .unwrap();
    let chunks: Vec<&[u8]> = sealed.payload.chunks(256).collect();
    let mut request = first.clone();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            sim.run(sim.elapsed_plus(Duration::from_millis(100)));
            request = Message::decode(&sim.tap.last().unwrap().bytes).unwrap();
        }
        let more = i + 1 < chunks.len();
        let answer = outer_block2(&sealed, &request, i, more, 4, chunk);
        sim.inject(proxy, sim.nodes[c].addr, answer);
    }
    sim.run(sim.elapsed_plus(Duration::from_millis(100)));
    // The next inner block, asked for with a request protected anew.
    let next = Message::decode(&sim.tap.last().unwrap().bytes).unwrap();
    assert_ne!(
        next.payload, first.payload,
        "a new request, not the sealed one again"
    );
    let (plain, binding) = server
        .unprotect_request(next.code, &next.options, &next.payload)
        .expect("the request for the next inner block verifies");
    let b = BlockValue::from_bytes(plain.options.get(OptionNumber::BLOCK2).unwrap()).unwrap();
    assert_eq!(b.num(), 1);
    let mut inner = Options::new();
    inner.push_uint(
        OptionNumber::BLOCK2,
        BlockValue::new(1, false, 6).unwrap().to_uint(),
    );
    let sealed = server
        .protect_response(&binding, Code::CONTENT, &inner, &body[1024..], false)
        .unwrap();
    let answer = Message {
        ty: Type::Ack,
        code: sealed.code,
        message_id: next.message_id,
        token: next.token,
        options: sealed.options,
        payload: sealed.payload,
    };
    sim.inject(proxy, sim.nodes[c].addr, answer.to_bytes().unwrap());
    sim.run(sim.elapsed_plus(Duration::from_secs(1)));
    let r = response(&sim, c, id).expect("the whole representation");
    assert_eq!((r.code, &r.payload), (Code::CONTENT, &body));
    assert_eq!(sim.nodes[c].ep.stats().open_requests, 0);
}

/// A later outer block asked for by a proxy no longer verified (RFC 9175 §2.4) gets 4.01 with
/// an Echo value; the proxy's repetition with that value verifies it and gets the block.
#[test]
fn a_later_outer_block_follows_the_echo_of_the_amplification_limit() {
    use crate::message::{BlockValue, Options, Token};
    let mut sim = Sim::new(14, Link::perfect());
    let server = Config {
        verified_lifetime: Duration::from_secs(5),
        ..Config::default()
    };
    let s = sim.add(server, Answer::After(Duration::ZERO));
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    sim.nodes[s].reply_size = Some(700);
    let (proxy, to) = (super::sim::addr(63), sim.nodes[s].addr);
    let mut mid = 300u16;
    let mut ask = |sim: &mut Sim, code: Code, options: Options, payload: Vec<u8>| {
        mid += 1;
        let msg = Message {
            ty: Type::Con,
            code,
            message_id: mid,
            token: Token::from_slice(&[5, mid as u8]).unwrap(),
            options,
            payload,
        };
        sim.tap.clear();
        sim.inject(proxy, to, msg.to_bytes().unwrap());
        sim.run(sim.elapsed_plus(Duration::from_millis(100)));
        wire(sim)
            .into_iter()
            .find(|m| m.ty == Type::Ack)
            .expect("answered")
    };
    // The proxy proves its address (an unprotected request repeated with its Echo value).
    let mut plain = Options::new();
    plain.push(OptionNumber::URI_PATH, "big");
    let challenge = ask(&mut sim, Code::GET, plain.clone(), Vec::new());
    let echo = challenge
        .options
        .get(OptionNumber::ECHO)
        .expect("Echo")
        .to_vec();
    plain.set(OptionNumber::ECHO, echo);
    assert_eq!(
        ask(&mut sim, Code::GET, plain, Vec::new()).code,
        Code::CONTENT
    );
    // Block 0 of the sealed answer while it is verified; block 1 after that has passed.
    let mut client = context(false);
    let mut options = Options::new();
    options.push(OptionNumber::URI_PATH, "big");
    let (p, _) = client.protect_request(Code::GET, &options, b"").unwrap();
    let block = |num| {
        let mut o = p.options.clone();
        o.push_uint(
            OptionNumber::BLOCK2,
            BlockValue::new(num, false, 4).unwrap().to_uint(),
        );
        o
    };
    let first = ask(&mut sim, p.code, block(0), p.payload.clone());
    assert!(first.options.contains(OptionNumber::BLOCK2), "{first:?}");
    sim.now += Duration::from_secs(10);
    let limited = ask(&mut sim, p.code, block(1), p.payload.clone());
    assert_eq!(limited.code, Code::UNAUTHORIZED);
    let mut again = block(1);
    let echo = limited.options.get(OptionNumber::ECHO).expect("Echo");
    again.set(OptionNumber::ECHO, echo);
    let answer = ask(&mut sim, p.code, again, p.payload.clone());
    let b = BlockValue::from_bytes(answer.options.get(OptionNumber::BLOCK2).expect("a block"));
    assert_eq!(b.unwrap().num(), 1);
}

/// Outer Block1 blocks are put together before they can be verified, so anyone can send them:
/// they have a budget of their own, and a flood of them from strangers leaves a verified
/// upload in progress alone.
#[test]
fn strangers_outer_blocks_do_not_push_out_other_uploads() {
    use crate::message::{BlockValue, Token};
    use crate::proto::{Endpoint, RecvMeta};
    use std::sync::Arc;
    let config = Config {
        upload_memory: 64 << 10,
        upload_memory_per_remote: 64 << 10,
        amplification_mitigation: false,
        ..Config::default()
    };
    let mut ep = Endpoint::new(Arc::new(config));
    ep.add_oscore_context(context(true), None);
    let t0 = std::time::Instant::now();
    let answer = |ep: &mut Endpoint, from: std::net::SocketAddr, msg: Message| {
        ep.handle_datagram(t0, &RecvMeta::new(from), &msg.to_bytes().unwrap());
        while let Some(ev) = ep.poll_event() {
            if let crate::proto::Event::Request { id, .. } = ev {
                ep.respond(t0, id, crate::proto::Response::new(Code::CHANGED))
                    .unwrap();
            }
        }
        let mut buf = Vec::new();
        let mut code = None;
        while ep.poll_transmit(t0, &mut buf).is_some() {
            code = Message::decode(&buf).ok().map(|m| m.code);
        }
        code
    };
    let block = |num, more, options: &crate::message::Options, mid: u16| {
        let mut options = options.clone();
        options.push_uint(
            OptionNumber::BLOCK1,
            BlockValue::new(num, more, 6).unwrap().to_uint(),
        );
        Message {
            ty: Type::Con,
            code: Code::PUT,
            message_id: mid,
            token: Token::from_slice(&[1]).unwrap(),
            options,
            payload: vec![7; 1024],
        }
    };
    // A plain upload in progress.
    let legit = super::sim::addr(1);
    let mut plain = crate::message::Options::new();
    plain.push(OptionNumber::URI_PATH, "file");
    assert_eq!(
        answer(&mut ep, legit, block(0, true, &plain, 1)),
        Some(Code::CONTINUE)
    );
    // 500 strangers each start an "outer" upload with a made-up OSCORE option.
    for i in 0..500u16 {
        let mut fake = crate::message::Options::new();
        fake.push(OptionNumber::OSCORE, [0x09, (i >> 8) as u8, i as u8, 0x01]);
        let stranger = super::sim::addr(1000 + i);
        answer(&mut ep, stranger, block(0, true, &fake, i));
    }
    assert!(ep.stats().upload_bytes <= (64 << 10) + (64 << 10) / 8 + 2048);
    // The plain upload goes on.
    assert_eq!(
        answer(&mut ep, legit, block(1, false, &plain, 2)),
        Some(Code::CHANGED)
    );
}

/// A protected observation kept for a day of virtual time, a notification every two minutes
/// over a lossy link, beside protected polls: every notification that arrives is verified and
/// in order, none twice, the state of both endpoints stays what one observation needs, and the
/// observation is still there at the end.
#[test]
fn a_protected_observation_lasts_a_day() {
    let mut sim = Sim::new(14, Link::lossy(0.05));
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    let ctx = sim.nodes[c].ep.add_oscore_context(context(false), None);
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    sim.nodes[s].observable = true;
    let id = sim.request(c, s, Request::get("/obs").with_oscore(ctx).observe());
    sim.run(Duration::from_secs(60));
    let rounds = 24 * 30;
    for round in 0..rounds {
        let now = sim.now;
        sim.nodes[s].ep.notify(now, "/obs");
        if round % 10 == 0 {
            sim.request(c, s, Request::get("/poll").with_oscore(ctx));
        }
        sim.run(sim.elapsed_plus(Duration::from_secs(120)));
    }
    let got = &sim.nodes[c].notifications[&id];
    let numbers: Vec<u32> = got
        .iter()
        .map(|r| {
            String::from_utf8_lossy(&r.payload)
                .trim_start_matches('n')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice"
    );
    assert!(
        numbers.len() > rounds * 8 / 10,
        "{} of {rounds}",
        numbers.len()
    );
    let (cs, ss) = (sim.nodes[c].ep.stats(), sim.nodes[s].ep.stats());
    assert_eq!((cs.open_requests, ss.observers), (1, 1), "{cs:?} {ss:?}");
    assert!(
        ss.pending_incoming == 0 && cs.transfers == 0,
        "{cs:?} {ss:?}"
    );
}

/// A proxy's ACK to `request` carrying outer Block2 number `num` (SZX `szx`, `more` to
/// follow) of the `sealed` answer: `chunk` of its payload (RFC 8613 §4.1.3.4.2).
fn outer_block2(
    sealed: &crate::oscore::Protected,
    request: &Message,
    num: usize,
    more: bool,
    szx: u8,
    chunk: &[u8],
) -> Vec<u8> {
    let mut options = sealed.options.clone();
    let block = crate::message::BlockValue::new(num as u32, more, szx).unwrap();
    options.push_uint(OptionNumber::BLOCK2, block.to_uint());
    let answer = Message {
        ty: Type::Ack,
        code: sealed.code,
        message_id: request.message_id,
        token: request.token,
        options,
        payload: chunk.to_vec(),
    };
    answer.to_bytes().unwrap()
}
