//! Drives one `Endpoint` with a sequence of operations read from the input: datagrams (raw
//! bytes, mutated valid messages, or a peer's answer to what the endpoint sent) from one of four
//! remotes, clock advances with `handle_timeout`, new requests, cancellations, answers with any
//! code (invalid ones included) and transport errors.
//!
//! After every operation all transmits and events are drained and checked: every datagram sent
//! decodes and re-encodes unchanged, each request ends with exactly one event, `respond` and
//! `request` fail exactly when they must, and `stats()` agree with the harness's books and stay
//! within the configuration (dedup_memory 16 KiB, max_pending_requests 16,
//! max_queued_per_remote 8). At the end every pending request is answered, the clock runs out,
//! and nothing may be left.

#![no_main]

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};
use coapio::proto::{
    Config, Endpoint, Error, Event, IncomingId, RecvMeta, Request, RequestId, Response,
    TransportError, TransportErrorKind,
};
use libfuzzer_sys::fuzz_target;

/// Reads the input front to back; past its end, every read gives zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// A length-prefixed slice (at most 255 bytes, at most what is left).
    fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8()).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn remotes() -> [SocketAddr; 4] {
    [
        SocketAddr::from(([192, 0, 2, 1], 5683)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 5683)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2], 40000)),
        SocketAddr::from(([0, 0, 0, 0, 0, 0xffff, 0xc633, 0x6407], 61616)),
    ]
}

/// A few valid messages to mutate.
fn templates() -> &'static [Vec<u8>] {
    static T: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = Vec::new();
        let mut add = |m: Message| out.push(m.to_bytes().expect("template encodes"));
        let mut m = Message::new(Type::Con, Code::GET, 0x1234);
        m.token = Token::from_slice(&[1, 2, 3, 4]).unwrap();
        m.options.push(OptionNumber::URI_PATH, "sensors");
        m.options.push(OptionNumber::URI_QUERY, "unit=C");
        m.options.push_uint(OptionNumber::OBSERVE, 0);
        m.options.push_uint(OptionNumber::BLOCK2, 0x12);
        add(m);
        let mut m = Message::new(Type::Non, Code::POST, 0x2345);
        m.options.push_uint(OptionNumber::CONTENT_FORMAT, 50);
        m.options.push(OptionNumber::ETAG, [0xaa, 0xbb]);
        m.options.push(OptionNumber(2000), vec![b'v'; 270]);
        m.payload = b"{\"a\":1}".to_vec();
        add(m);
        let mut m = Message::new(Type::Ack, Code::CONTENT, 0x1234);
        m.token = Token::from_slice(&[1, 2, 3, 4]).unwrap();
        m.options.push_uint(OptionNumber::CONTENT_FORMAT, 0);
        m.payload = b"22.5".to_vec();
        add(m);
        let mut m = Message::new(Type::Con, Code::CONTENT, 0x3456);
        m.token = Token::from_slice(&[9; 8]).unwrap();
        m.options.push_uint(OptionNumber::OBSERVE, 7);
        m.options.push(OptionNumber(2049), "critical");
        add(m);
        for ty in [Type::Ack, Type::Rst, Type::Con] {
            add(Message::new(ty, Code::EMPTY, 0x1234));
        }
        out
    })
}

/// Applies mutations read from the input to `d`.
fn mutate(input: &mut Input<'_>, d: &mut Vec<u8>) {
    for _ in 0..(input.u8() % 4) {
        let op = input.u8();
        let pos = usize::from(input.u16());
        let value = input.u8();
        let len = d.len();
        match op % 8 {
            0 if len > 0 => d[pos % len] ^= 1 << (value % 8),
            1 if len > 0 => d[pos % len] = value,
            2 => d.truncate(pos % (len + 1)),
            3 => d.insert(pos % (len + 1), value),
            4 if len > 0 => {
                // Duplicate a run of bytes (a repeated or torn option).
                let start = pos % len;
                let end = (start + 1 + usize::from(value % 8)).min(len);
                let run = d[start..end].to_vec();
                d.splice(end..end, run);
            }
            5 if len > 0 => d[0] = (d[0] & 0xf0) | (value & 0x0f),
            6 if len > 1 => d[1] = value,
            7 if len > 0 => {
                d.remove(pos % len);
            }
            _ => {}
        }
    }
}

struct Harness {
    ep: Endpoint,
    config: Config,
    now: Instant,
    remotes: [SocketAddr; 4],
    open: BTreeMap<RequestId, usize>,
    pending: Vec<(IncomingId, Instant)>,
    answered: Vec<IncomingId>,
    responded: VecDeque<Instant>,
    sent: VecDeque<(usize, Vec<u8>)>,
    buf: Vec<u8>,
}

impl Harness {
    fn deliver(&mut self, remote: usize, local: u8, d: &[u8]) {
        if self.ep.poll_timeout().is_some_and(|t| t <= self.now) {
            self.handle_timeout();
        }
        let meta = RecvMeta::new(self.remotes[remote]);
        let meta = match local % 8 {
            0 => meta.with_local(IpAddr::from([0xff02, 0, 0, 0, 0, 0, 0, 0xfd]), Some(1)),
            1 => meta.with_local(IpAddr::from([224, 0, 1, 187]), None),
            2 => meta.with_local(IpAddr::from([192, 0, 2, 100]), Some(2)),
            _ => meta,
        };
        self.ep.handle_datagram(self.now, &meta, d);
    }

    fn handle_timeout(&mut self) {
        self.ep.handle_timeout(self.now);
        let now = self.now;
        self.pending.retain(|&(_, expires)| expires > now);
        assert!(self.ep.poll_timeout().is_none_or(|t| t > now));
    }

    /// A peer's answer to something the endpoint sent.
    fn reply(&mut self, input: &mut Input<'_>) -> Option<(usize, Vec<u8>)> {
        if self.sent.is_empty() {
            return None;
        }
        let (remote, sent) = &self.sent[usize::from(input.u8()) % self.sent.len()];
        let m = MessageRef::decode(sent).expect("checked when sent");
        let how = input.u8();
        let code = Code(input.u8());
        let (ty, mid, code) = match how % 6 {
            0 => (Type::Ack, m.message_id, code),
            1 => (Type::Ack, m.message_id, Code::EMPTY),
            2 => (Type::Rst, m.message_id, Code::EMPTY),
            3 => (Type::Con, input.u16(), code),
            4 => (Type::Non, input.u16(), code),
            _ => (Type::from_bits(how >> 4), input.u16(), code),
        };
        let mut r = Message::new(ty, code, mid);
        if !code.is_empty() {
            r.token = m.token;
            for _ in 0..(input.u8() % 3) {
                let number = OptionNumber(u16::from(input.u8()));
                let value = input.bytes().to_vec();
                r.options.push(number, value);
            }
            r.payload = input.bytes().to_vec();
        }
        Some((*remote, r.to_bytes().ok()?))
    }

    fn drain(&mut self) {
        while let Some(t) = self.ep.poll_transmit(self.now, &mut self.buf) {
            assert_eq!(t.size, self.buf.len());
            let remote = self
                .remotes
                .iter()
                .position(|a| *a == t.destination)
                .expect("sent to a remote that never spoke");
            let m = MessageRef::decode(&self.buf).expect("sent datagram decodes");
            let mut again = Vec::new();
            m.encode(&mut again);
            assert_eq!(again, self.buf);
            let sensible = match m.ty {
                Type::Ack => m.code.is_empty() || m.code.is_response(),
                Type::Rst => m.code.is_empty(),
                Type::Con | Type::Non => m.code.is_request() || m.code.is_response(),
            };
            assert!(sensible, "sent {:?} {}", m.ty, m.code);
            if m.code.is_request() {
                assert_eq!(m.token.len(), self.config.token_length);
            }
            if self.sent.len() >= 16 {
                self.sent.pop_front();
            }
            self.sent.push_back((remote, self.buf.clone()));
        }
        while let Some(event) = self.ep.poll_event() {
            match event {
                Event::Request { id, meta, request } => {
                    assert!(request.method.is_request());
                    assert!(self.remotes.contains(&meta.remote));
                    assert!(self.pending.iter().all(|p| p.0 != id));
                    let lifetime = if request.confirmable {
                        self.config.exchange_lifetime()
                    } else {
                        self.config.non_lifetime()
                    };
                    self.pending.push((id, self.now + lifetime));
                }
                Event::Response { id, response } => {
                    assert!(self.open.remove(&id).is_some(), "response for {id:?}");
                    assert!((2..=5).contains(&response.code.class()));
                }
                Event::Failed { id, .. } => {
                    assert!(self.open.remove(&id).is_some(), "failure of {id:?}");
                }
                // A request to a multicast group collects answers until GroupDone ends it.
                Event::GroupResponse { id, .. } => {
                    assert!(self.open.contains_key(&id), "group answer for {id:?}");
                }
                Event::GroupDone { id } => {
                    assert!(self.open.remove(&id).is_some(), "group end for {id:?}");
                }
                // An observation stays open after a notification.
                Event::Notification { id, response } => {
                    assert!(self.open.contains_key(&id), "notification for {id:?}");
                    assert!(response.code.is_success());
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    fn check(&mut self, compacted: bool) {
        let s = self.ep.stats();
        let c = &self.config;
        assert_eq!(s.queued_transmits, 0);
        assert_eq!(s.open_requests, self.open.len());
        assert_eq!(s.pending_incoming, self.pending.len());
        assert!(s.pending_incoming <= c.max_pending_requests);
        // Admission stops at the budget; replies admitted before may add their bytes.
        assert!(s.dedup_bytes <= c.dedup_memory + 16 * 1500);
        assert!(s.remotes <= self.remotes.len());
        assert!(s.idle_remotes <= self.remotes.len());
        if compacted {
            let horizon = c.max_transmit_wait() + Duration::from_secs(1);
            while self
                .responded
                .front()
                .is_some_and(|&t| t + horizon < self.now)
            {
                self.responded.pop_front();
            }
            let live = 2 * s.open_requests + s.pending_incoming + self.responded.len();
            assert!(s.timers <= 2 * live + 1024, "{s:?}");
        }
    }

    fn wind_down(&mut self) {
        for (id, _) in std::mem::take(&mut self.pending) {
            assert_eq!(
                self.ep.respond(self.now, id, Response::new(Code::CONTENT)),
                Ok(())
            );
        }
        self.drain();
        for _ in 0..100_000 {
            let Some(at) = self.ep.poll_timeout() else {
                break;
            };
            self.now = self.now.max(at);
            self.handle_timeout();
            self.drain();
        }
        self.now += self.config.exchange_lifetime() + Duration::from_secs(1);
        self.handle_timeout();
        self.drain();
        assert!(self.open.is_empty(), "requests without an outcome");
        let s = self.ep.stats();
        assert_eq!(
            (
                s.open_requests,
                s.pending_incoming,
                s.dedup_entries,
                s.remotes,
                s.idle_remotes,
                s.timers,
                s.queued_transmits
            ),
            (0, 0, 0, 0, 0, 0, 0),
            "state left: {s:?}"
        );
    }
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let mut config = Config::default().with_seed(u64::from(input.u16()));
    config.dedup_memory = 16 << 10;
    config.max_pending_requests = 16;
    config.max_queued_per_remote = 8;
    config.nstart = 1 + usize::from(flags & 1);
    config.token_length = [8, 4, 1, 0][usize::from((flags >> 1) & 3)];
    if flags & 0x08 != 0 {
        config.separate_response_type = Type::Non;
    }
    if flags & 0x10 != 0 {
        config.empty_ack_delay = Duration::ZERO;
    }
    if flags & 0x20 != 0 {
        config.ack_timeout = Duration::from_millis(100);
        config.max_retransmit = 1;
    }
    let ep = Endpoint::new(config.into());
    let mut h = Harness {
        config: ep.config().clone(),
        ep,
        now: start(),
        remotes: remotes(),
        open: BTreeMap::new(),
        pending: Vec::new(),
        answered: Vec::new(),
        responded: VecDeque::new(),
        sent: VecDeque::new(),
        buf: Vec::new(),
    };

    let mut ops = 0;
    while !input.is_empty() && ops < 512 {
        ops += 1;
        let op = input.u8();
        let compacted = match op % 10 {
            // Raw bytes.
            0 | 1 => {
                let remote = usize::from(input.u8() % 4);
                let local = input.u8();
                let d = input.bytes();
                h.deliver(remote, local, d);
                true
            }
            // A mutated template, or a mutated datagram the endpoint sent, reflected.
            2 | 3 => {
                let remote = usize::from(input.u8() % 4);
                let local = input.u8();
                let pick = usize::from(input.u8());
                let mut d = if op & 0x80 != 0 && !h.sent.is_empty() {
                    h.sent[pick % h.sent.len()].1.clone()
                } else {
                    templates()[pick % templates().len()].clone()
                };
                if d.len() >= 4 && op & 0x40 != 0 {
                    d[2..4].copy_from_slice(&input.u16().to_be_bytes());
                }
                mutate(&mut input, &mut d);
                h.deliver(remote, local, &d);
                true
            }
            // A peer's answer to what the endpoint sent, possibly mutated.
            4 => {
                let local = input.u8();
                match h.reply(&mut input) {
                    Some((remote, mut d)) => {
                        if op & 0x80 != 0 {
                            mutate(&mut input, &mut d);
                        }
                        h.deliver(remote, local, &d);
                        true
                    }
                    None => false,
                }
            }
            5 => {
                let step = u64::from(input.u16());
                let ms = match op >> 6 {
                    0 => step,
                    1 => step * 10,
                    2 => step * 100,
                    _ => step * 1000,
                };
                h.now += Duration::from_millis(ms);
                h.handle_timeout();
                true
            }
            6 => {
                let remote = usize::from(input.u8() % 4);
                let method = Code(input.u8() % 10);
                let mut req = Request::get(["/", "/a/b?c=d", "/%zz"][usize::from(op >> 6) % 3]);
                req.method = method;
                if op & 0x20 != 0 {
                    req = req.non_confirmable();
                }
                if op & 0x10 != 0 {
                    req.options.push_uint(OptionNumber::OBSERVE, 0);
                }
                req.payload = input.bytes().to_vec();
                if h.open.len() < 64 {
                    match h.ep.request(h.now, h.remotes[remote], req) {
                        Ok(id) => {
                            assert!(method.is_request());
                            assert!(h.open.insert(id, remote).is_none());
                        }
                        Err(Error::WrongCode(c)) => assert!(c == method && !method.is_request()),
                        Err(Error::QueueFull(_)) => {
                            let n = h.open.values().filter(|&&r| r == remote).count();
                            assert!(n >= h.config.nstart + h.config.max_queued_per_remote);
                        }
                        Err(Error::NoToken) => assert!(h.config.token_length <= 1),
                        Err(e) => panic!("request failed: {e}"),
                    }
                }
                false
            }
            7 => {
                if !h.open.is_empty() {
                    let i = usize::from(input.u8()) % h.open.len();
                    let id = *h.open.keys().nth(i).expect("in range");
                    h.open.remove(&id);
                    h.ep.cancel(h.now, id);
                }
                false
            }
            8 => {
                let code = Code(input.u8());
                let pick = usize::from(input.u8());
                let mut resp = Response::new(code).with_payload(input.bytes());
                if op & 0x80 != 0 {
                    resp.options.push_uint(OptionNumber::OBSERVE, u32::from(op));
                }
                if op & 0x40 != 0 && !h.answered.is_empty() {
                    let id = h.answered[pick % h.answered.len()];
                    let expected = if code.is_response() {
                        Error::UnknownExchange
                    } else {
                        Error::WrongCode(code)
                    };
                    assert_eq!(h.ep.respond(h.now, id, resp), Err(expected));
                } else if !h.pending.is_empty() {
                    let i = pick % h.pending.len();
                    let id = h.pending[i].0;
                    let result = h.ep.respond(h.now, id, resp);
                    if code.is_response() {
                        assert_eq!(result, Ok(()));
                        h.pending.swap_remove(i);
                        h.answered.push(id);
                        h.responded.push_back(h.now);
                    } else {
                        assert_eq!(result, Err(Error::WrongCode(code)));
                    }
                }
                false
            }
            _ => {
                let remote = usize::from(input.u8() % 4);
                let kind = match op >> 5 {
                    0 => TransportErrorKind::PortUnreachable,
                    1 => TransportErrorKind::HostUnreachable,
                    2 => TransportErrorKind::NetworkUnreachable,
                    3 => TransportErrorKind::Prohibited,
                    4 => TransportErrorKind::MessageTooLarge,
                    _ => TransportErrorKind::Other(i32::from(op)),
                };
                h.ep.handle_transport_error(h.now, &TransportError::new(h.remotes[remote], kind));
                h.drain();
                // A message too large for the path fails nothing (smaller blocks from now on).
                if kind != TransportErrorKind::MessageTooLarge {
                    assert!(!h.open.values().any(|&r| r == remote));
                }
                false
            }
        };
        h.drain();
        h.check(compacted);
    }
    h.wind_down();
});
