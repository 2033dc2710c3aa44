//! Review tests: mixing protected and unprotected messages of one block-wise operation.

use std::time::Duration;

use super::sim::{Answer, Link, Sim};
use crate::message::{BlockValue, Code, Message, MessageRef, OptionNumber, Options, Token, Type};
use crate::oscore::{ContextParams, SecurityContext};
use crate::proto::Config;

const SECRET: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

fn context(server: bool) -> SecurityContext {
    let (me, peer) = (vec![], vec![1]);
    let (sender, recipient) = if server { (peer, me) } else { (me, peer) };
    SecurityContext::new(ContextParams::new(sender, recipient, SECRET.to_vec())).unwrap()
}

fn datagram(
    ty: Type,
    code: Code,
    mid: u16,
    tok: u8,
    options: Options,
    payload: Vec<u8>,
) -> Vec<u8> {
    Message {
        ty,
        code,
        message_id: mid,
        token: Token::from_slice(&[tok]).unwrap(),
        options,
        payload,
    }
    .to_bytes()
    .unwrap()
}

fn protect(
    ctx: &mut SecurityContext,
    mid: u16,
    tok: u8,
    code: Code,
    o: &Options,
    p: &[u8],
) -> Vec<u8> {
    let (pr, _) = ctx.protect_request(code, o, p).unwrap();
    datagram(Type::Con, pr.code, mid, tok, pr.options, pr.payload)
}

fn block1(path: &str, num: u32, more: bool) -> Options {
    let mut o = Options::new();
    o.push(OptionNumber::URI_PATH, path);
    o.set_uint(
        OptionNumber::BLOCK1,
        BlockValue::new(num, more, 0).unwrap().to_uint(),
    );
    o
}

/// An unprotected block spliced into a protected Block1 upload from the same address: the
/// application must not see it as part of an OSCORE-protected request.
#[test]
fn unprotected_block_is_not_spliced_into_a_protected_upload() {
    let mut sim = Sim::new(11, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    let (from, to) = (sim.nodes[c].addr, sim.nodes[s].addr);
    let mut cc = context(false);
    let b0 = protect(
        &mut cc,
        1,
        1,
        Code::POST,
        &block1("up", 0, true),
        &[b'A'; 16],
    );
    sim.inject(from, to, b0);
    sim.run(Duration::from_secs(5));
    let evil = datagram(
        Type::Con,
        Code::POST,
        2,
        2,
        block1("up", 1, true),
        vec![b'E'; 16],
    );
    sim.inject(from, to, evil);
    sim.run(sim.elapsed_plus(Duration::from_secs(5)));
    let b2 = protect(&mut cc, 3, 3, Code::POST, &block1("up", 2, false), b"CCCC");
    sim.inject(from, to, b2);
    sim.run(sim.elapsed_plus(Duration::from_secs(5)));
    let spliced = sim.nodes[s]
        .handler_runs
        .keys()
        .any(|k| k.windows(4).any(|w| w == b"EEEE"));
    assert!(
        !(spliced && sim.nodes[s].protected_requests > 0),
        "application got an OSCORE request containing an unprotected block: {:?}",
        sim.nodes[s]
            .handler_runs
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    );
}

/// A later block of a representation served to an OSCORE request must not be served from
/// the block cache to an unprotected request from the same address.
#[test]
fn protected_representation_is_not_served_in_the_clear_from_the_block_cache() {
    let mut sim = Sim::new(12, Link::perfect());
    let c = sim.add(Config::default(), Answer::Never);
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    sim.nodes[s].ep.add_oscore_context(context(true), None);
    sim.nodes[s].reply_size = Some(3000);
    let (from, to) = (sim.nodes[c].addr, sim.nodes[s].addr);
    let mut cc = context(false);
    let mut o = Options::new();
    o.push(OptionNumber::URI_PATH, "large");
    let first = protect(&mut cc, 1, 1, Code::GET, &o, &[]);
    sim.inject(from, to, first);
    sim.run(Duration::from_secs(5));
    let representation: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    // The attacker (on path, spoofing the client's address) asks in the clear for block 1.
    o.set_uint(
        OptionNumber::BLOCK2,
        BlockValue::new(1, false, 0).unwrap().to_uint(),
    );
    sim.tap.clear();
    let evil = datagram(Type::Con, Code::GET, 2, 2, o, vec![0; 100]); // big enough for 3x
    sim.inject(from, to, evil);
    sim.run(sim.elapsed_plus(Duration::from_secs(5)));
    // The cached block of the protected answer must not be what answers it: the request
    // goes to the application, which sees it came unprotected (and may refuse it).
    let from_cache = sim.tap.iter().filter(|t| t.from == to).any(|t| {
        let m = MessageRef::decode(&t.bytes).unwrap();
        m.options.get(OptionNumber::OSCORE).is_none()
            && m.payload.len() >= 16
            && representation.windows(16).any(|w| m.payload.starts_with(w))
            && !sim.nodes[s].handler_runs.contains_key(&vec![0u8; 100])
    });
    assert!(
        !from_cache,
        "protected representation served in the clear from the block cache"
    );
}

mod notifications {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::context;
    use crate::message::{Code, Message, MessageRef, OptionNumber, Options, Type};
    use crate::oscore::RequestBinding;
    use crate::proto::{Config, Endpoint, Event, RecvMeta, Request};

    struct Setup {
        now: Instant,
        client: Endpoint,
        server: crate::oscore::SecurityContext,
        binding: RequestBinding,
        token: crate::message::Token,
        from: std::net::SocketAddr,
        mid: u16,
    }

    fn setup(server_seq: u64) -> Setup {
        let now = Instant::now();
        let mut client = Endpoint::new(Arc::new(Config::default()));
        let id = client.add_oscore_context(context(false), None);
        let from = super::super::sim::addr(9);
        client
            .request(now, from, Request::get("/obs").observe().with_oscore(id))
            .unwrap();
        let mut buf = Vec::new();
        let _ = client.poll_transmit(now, &mut buf).unwrap();
        let m = MessageRef::decode(&buf).unwrap().to_owned();
        let mut server = context(true);
        server.set_sender_sequence(server_seq);
        let (_, binding) = server
            .unprotect_request(m.code, &m.options, &m.payload)
            .unwrap();
        let mut s = Setup {
            now,
            client,
            server,
            binding,
            token: m.token,
            from,
            mid: 100,
        };
        // The registration's answer: the request's nonce, no Partial IV.
        let ack = s.answer(Type::Ack, m.message_id, 0, b"v0", false);
        s.feed(&ack);
        s
    }

    impl Setup {
        fn answer(&mut self, ty: Type, mid: u16, observe: u32, body: &[u8], piv: bool) -> Vec<u8> {
            let mut o = Options::new();
            o.set_uint(OptionNumber::OBSERVE, observe);
            o.set_uint(OptionNumber::MAX_AGE, 3600);
            let p = self
                .server
                .protect_response(&self.binding, Code::CONTENT, &o, body, piv)
                .unwrap();
            Message {
                ty,
                code: p.code,
                message_id: mid,
                token: self.token,
                options: p.options,
                payload: p.payload,
            }
            .to_bytes()
            .unwrap()
        }

        fn notification(&mut self, observe: u32, body: &[u8]) -> Vec<u8> {
            self.mid += 1;
            self.answer(Type::Non, self.mid, observe, body, true)
        }

        fn feed(&mut self, bytes: &[u8]) {
            self.client
                .handle_datagram(self.now, &RecvMeta::new(self.from), bytes);
        }

        fn delivered(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            while let Some(ev) = self.client.poll_event() {
                match ev {
                    Event::Response { response, .. } | Event::Notification { response, .. } => {
                        out.push(String::from_utf8_lossy(&response.payload).into_owned())
                    }
                    _ => {}
                }
            }
            out
        }
    }

    /// RFC 8613 §7.4.1: a notification whose Partial IV is not above the observation's
    /// Notification Number is a replay, however long ago the last one came (no 128-second
    /// rule for OSCORE notifications).
    #[test]
    fn a_replayed_notification_is_not_delivered_after_128_seconds() {
        let mut s = setup(0);
        let n1 = s.notification(2, b"v1");
        s.feed(&n1);
        let n2 = s.notification(3, b"v2");
        s.feed(&n2);
        assert_eq!(s.delivered(), ["v0", "v1", "v2"]);
        // 200 s later an attacker replays the first notification (new message ID).
        s.now += Duration::from_secs(200);
        s.client.handle_timeout(s.now);
        let mut replay = n1.clone();
        replay[2] ^= 0x77;
        s.feed(&replay);
        assert_eq!(
            s.delivered(),
            Vec::<String>::new(),
            "replayed notification delivered"
        );
    }

    /// A server whose sequence number is in the upper half of the 24-bit Observe space: its
    /// notifications must not be taken as older than the registration's answer.
    #[test]
    fn notifications_of_a_server_with_a_large_sequence_number_are_delivered() {
        let mut s = setup(0x90_0000);
        s.now += Duration::from_secs(1);
        let n1 = s.notification(2, b"v1");
        s.feed(&n1);
        assert_eq!(s.delivered(), ["v0", "v1"]);
    }
}

/// RFC 9175 §2.4: an unverified remote gets at most three times what it sent. A spoofed
/// Observe registration must not turn into a stream of full-size notifications.
#[test]
fn notifications_to_an_unverified_remote_are_limited() {
    let mut sim = Sim::new(13, Link::perfect());
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    sim.nodes[s].observable = true;
    sim.nodes[s].reply_size = Some(1000);
    let victim = super::sim::addr(50);
    let to = sim.nodes[s].addr;
    let mut o = Options::new();
    o.push(OptionNumber::URI_PATH, "obs");
    o.set_uint(OptionNumber::OBSERVE, 0);
    let reg = datagram(Type::Non, Code::GET, 1, 1, o, vec![0; 60]);
    let sent = reg.len();
    sim.inject(victim, to, reg);
    sim.run(Duration::from_secs(5));
    for i in 0..5u64 {
        let now = sim.now;
        sim.nodes[s].ep.notify(now, "/obs");
        sim.run(sim.elapsed_plus(Duration::from_secs(1 + i)));
    }
    let to_victim: usize = sim
        .tap
        .iter()
        .filter(|t| t.to == victim)
        .map(|t| t.bytes.len())
        .sum();
    let biggest = sim
        .tap
        .iter()
        .filter(|t| t.to == victim)
        .map(|t| t.bytes.len())
        .max()
        .unwrap_or(0);
    assert!(
        biggest <= 3 * sent,
        "a {sent}-byte spoofed registration drew {to_victim} bytes to the victim (largest datagram {biggest})"
    );
}
