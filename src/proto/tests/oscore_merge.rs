//! Second review of the merge of Echo (RFC 9175) and OSCORE (RFC 8613): where one line of
//! work's assumptions met the other's.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::sim::{Answer, Link, Sim};
use crate::message::{BlockValue, Code, Message, MessageRef, OptionNumber, Options, Token, Type};
use crate::oscore::{ContextParams, SecurityContext};
use crate::proto::{Config, Request, Response, SecurityId};

const SECRET: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

fn context(server: bool) -> SecurityContext {
    let (me, peer) = (vec![], vec![1]);
    let (sender, recipient) = if server { (peer, me) } else { (me, peer) };
    SecurityContext::new(ContextParams::new(sender, recipient, SECRET.to_vec())).unwrap()
}

fn pair(seed: u64) -> (Sim, usize, usize, SecurityId) {
    let mut sim = Sim::new(seed, Link::perfect());
    let c = sim.add(Config::default().with_seed(1), Answer::Never);
    let s = sim.add(
        Config::default().with_seed(2),
        Answer::After(Duration::ZERO),
    );
    let id = sim.nodes[c].ep.add_oscore_context(context(false), None);
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    (sim, c, s, id)
}

/// A body of `n` bytes that starts with the number `k` and goes on with `fill`.
fn numbered(k: u32, n: usize, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; n];
    b[..4].copy_from_slice(&k.to_be_bytes());
    b
}

/// An observable resource of 2000-byte representations: protected requests get `S…`,
/// unprotected ones `P…`, each numbered by the handler's runs.
fn observable(sim: &mut Sim, s: usize) -> Rc<RefCell<u32>> {
    let runs = Rc::new(RefCell::new(0u32));
    let r2 = runs.clone();
    sim.nodes[s].handler = Some(Box::new(move |req: &Request| {
        *r2.borrow_mut() += 1;
        let fill = if req.oscore.is_some() { b'S' } else { b'P' };
        let mut r = Response::new(Code::CONTENT).with_payload(numbered(*r2.borrow(), 2000, fill));
        if req.options.contains(OptionNumber::OBSERVE) {
            r.options.set_uint(OptionNumber::OBSERVE, 0);
        }
        r
    }));
    runs
}

/// Large notifications of a protected observation come whole: their later blocks are
/// fetched (protected) from the notification's own cached representation, which is kept
/// under the key the protected fetch is looked up by (the registration's answer, cut into
/// blocks too, is not what the fetch finds).
#[test]
fn large_notifications_of_a_protected_observation_come_whole() {
    let (mut sim, c, s, ctx) = pair(51);
    let runs = observable(&mut sim, s);
    let id = sim.request(c, s, Request::get("/obs").observe().with_oscore(ctx));
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.nodes[s].ep.stats().observers, 1);
    // The registration's answer is the first notification.
    for k in 2..=3 {
        let now = sim.now;
        assert_eq!(sim.nodes[s].ep.notify(now, "/obs"), 1);
        sim.run(sim.elapsed_plus(Duration::from_secs(10)));
        let notes = sim.nodes[c].notifications.get(&id).map_or(0, Vec::len);
        assert_eq!(notes, k, "notification {k}");
    }
    let last = sim.nodes[c].notifications[&id].last().unwrap().clone();
    let number = u32::from_be_bytes(last.payload[..4].try_into().unwrap());
    assert_eq!(last.payload, numbered(number, 2000, b'S'));
    // Each notification ran the handler once; no block fetch went to the application.
    assert!(*runs.borrow() <= 4, "{} runs", runs.borrow());
    for n in &sim.nodes[c].notifications[&id] {
        assert!(
            n.payload[4..].iter().all(|&b| b == b'S'),
            "rendered as protected"
        );
    }
    assert!(
        sim.nodes[c].outcomes.is_empty(),
        "{:?}",
        sim.nodes[c].outcomes
    );
}

/// The cached representation of a protected notification is not served in the clear to an
/// unprotected request for a later block from the observer's address.
#[test]
fn a_protected_notification_is_not_served_in_the_clear_from_the_block_cache() {
    let (mut sim, c, s, ctx) = pair(52);
    observable(&mut sim, s);
    let _id = sim.request(c, s, Request::get("/obs").observe().with_oscore(ctx));
    sim.run(Duration::from_secs(10));
    let now = sim.now;
    assert_eq!(sim.nodes[s].ep.notify(now, "/obs"), 1);
    sim.run(sim.elapsed_plus(Duration::from_secs(10)));
    // The attacker (spoofing the observer's address) asks in the clear for block 1.
    let (from, to) = (sim.nodes[c].addr, sim.nodes[s].addr);
    let mut o = Options::new();
    o.push(OptionNumber::URI_PATH, "obs");
    o.set_uint(
        OptionNumber::BLOCK2,
        BlockValue::new(1, false, 6).unwrap().to_uint(),
    );
    let evil = Message {
        ty: Type::Con,
        code: Code::GET,
        message_id: 0x7777,
        token: Token::from_slice(&[0x77]).unwrap(),
        options: o,
        payload: vec![0; 400], // room for a full answer within 3x
    }
    .to_bytes()
    .unwrap();
    sim.tap.clear();
    sim.inject(from, to, evil);
    sim.run(sim.elapsed_plus(Duration::from_secs(10)));
    let leaked = sim.tap.iter().filter(|t| t.from == to).any(|t| {
        let m = MessageRef::decode(&t.bytes).unwrap();
        m.options.get(OptionNumber::OSCORE).is_none()
            && m.payload.windows(16).any(|w| w == [b'S'; 16])
    });
    assert!(!leaked, "a protected notification served in the clear");
}

/// A handler that demands fresh requests (an Echo value it gave, RFC 9175 §2.3), and what it
/// saw: freshness, protection and payload size.
fn demanding(seen: Rc<RefCell<Vec<(bool, bool, usize)>>>) -> super::sim::Handler {
    Box::new(move |req: &Request| {
        let len = req.payload.len();
        seen.borrow_mut()
            .push((req.is_fresh(), req.oscore.is_some(), len));
        if !req.is_fresh() {
            return Response::echo_challenge();
        }
        Response::new(Code::CHANGED).with_payload(format!("{len} bytes"))
    })
}

/// A protected request that the application challenges for freshness (a protected 4.01 with
/// the Echo inside) is repeated, protected again with the Echo inside, and served; for a
/// block-wise upload the challenge keeps the upload, so that its last block, repeated with
/// the Echo, completes it.
#[test]
fn a_protected_request_challenged_for_freshness_is_repeated_and_served() {
    for (i, size) in [4usize, 3000].into_iter().enumerate() {
        let (mut sim, c, s, ctx) = pair(60 + i as u64);
        let seen = Rc::new(RefCell::new(Vec::new()));
        sim.nodes[s].handler = Some(demanding(seen.clone()));
        let id = sim.request(
            c,
            s,
            Request::put("/door", vec![b'x'; size]).with_oscore(ctx),
        );
        sim.run(Duration::from_secs(60));
        let outcomes = &sim.nodes[c].outcomes[&id];
        let Some(super::sim::Outcome::Response(_, r)) = outcomes.first() else {
            panic!("{size}: {outcomes:?}");
        };
        assert_eq!(
            (r.code, r.payload.as_slice()),
            (Code::CHANGED, format!("{size} bytes").as_bytes()),
            "{size}"
        );
        assert_eq!(
            *seen.borrow(),
            [(false, true, size), (true, true, size)],
            "{size}"
        );
        // Nothing went in the clear; no upload is left behind.
        for t in &sim.tap {
            let m = MessageRef::decode(&t.bytes).unwrap();
            assert!(m.code.is_empty() || m.options.get(OptionNumber::OSCORE).is_some());
        }
        assert_eq!(sim.nodes[s].ep.stats().uploads, 0, "{size}");
        assert_eq!(sim.nodes[s].ep.stats().verified_remotes, 1, "{size}");
    }
}

/// A response to a protected request that fails verification (forged by anyone who saw the
/// token) is dropped and the request waits for the real one (RFC 8613 §8.4), whether it
/// comes piggybacked on an ACK or as a separate response.
#[test]
fn a_forged_response_to_a_protected_request_is_dropped_and_the_request_waits() {
    for piggybacked in [true, false] {
        let mut sim = Sim::new(70, Link::perfect());
        let c = sim.add(Config::default().with_seed(1), Answer::Never);
        let s = sim.add(
            Config::default().with_seed(2),
            Answer::After(Duration::from_secs(3)),
        );
        let ctx = sim.nodes[c].ep.add_oscore_context(context(false), None);
        sim.nodes[s].ep.add_oscore_context(context(true), None);
        let id = sim.request(c, s, Request::put("/door", "open").with_oscore(ctx));
        sim.run(Duration::from_millis(5));
        let first = MessageRef::decode(&sim.tap[0].bytes).unwrap().to_owned();
        let mut o = Options::new();
        o.push(OptionNumber::OSCORE, Vec::new());
        let forged = Message {
            ty: if piggybacked { Type::Ack } else { Type::Con },
            code: Code::CHANGED,
            message_id: if piggybacked {
                first.message_id
            } else {
                0x4242
            },
            token: first.token,
            options: o,
            payload: vec![0xa5; 24],
        }
        .to_bytes()
        .unwrap();
        let (from, to) = (sim.nodes[s].addr, sim.nodes[c].addr);
        sim.inject(from, to, forged);
        sim.run(Duration::from_secs(60));
        let outcomes = &sim.nodes[c].outcomes[&id];
        assert!(
            matches!(
                outcomes.as_slice(),
                [super::sim::Outcome::Response(_, r)] if r.payload == b"open"
            ),
            "piggybacked {piggybacked}: {outcomes:?}"
        );
    }
}
