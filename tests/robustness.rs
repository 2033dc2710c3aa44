//! Robustness of the codec and the sans-IO endpoint against hostile input.
//!
//! Over a million datagrams go through the decoder and into a few [`Endpoint`]s with small
//! bounds, running on a virtual clock: purely random bytes (mostly short), and mutations (bit
//! flips, byte replacements, truncations, insertions, duplicated option bytes, token-length,
//! type and code changes) of valid messages built with the public API and of the endpoints' own
//! traffic. Simulated peers answer what the endpoints send (piggybacked and separate responses,
//! empty ACKs, resets), so matching, retransmission, deduplication and timeouts all run.
//!
//! What must hold:
//!
//! - nothing panics;
//! - every datagram that decodes encodes back to the same bytes, through [`MessageRef`] and
//!   through [`Message`], and [`Message::decode`] agrees with [`MessageRef::decode`];
//! - every datagram an endpoint sends decodes, and is a sensible combination of type and code;
//! - each request ends with exactly one event, and none after it was cancelled;
//! - [`Endpoint::stats`] stay within the configured bounds throughout, and drop to zero once
//!   the traffic stops and every timer has run.
//!
//! A fixed-seed xorshift generator makes every run identical; a failure message carries the
//! datagram's bytes.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use coapio::message::{
    encode_empty, peek_header, BlockValue, Code, ContentFormat, Message, MessageRef, OptionNumber,
    Token, Type,
};
use coapio::proto::{
    Config, Endpoint, Error, Event, IncomingId, RecvMeta, Request, RequestId, Response,
    TransportError, TransportErrorKind,
};

/// How many datagrams go through the decoder and into an endpoint.
const DATAGRAMS: u64 = 1_000_000;

/// Most requests an endpoint keeps open at once (they are not bounded by the config: a request
/// acknowledged with an empty ACK waits for its separate response without holding NSTART).
const MAX_OPEN: usize = 40;

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// A length in `0..=max`, mostly short.
    fn short_len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(5.min(max + 1)),
            1 => self.below(17.min(max + 1)),
            2 => self.below(65.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
}

/// Bytes that sit on the boundaries of the wire format: nibbles 12/13/14/15, the payload
/// marker, version bits, class bits.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x40, 0x48, 0x49, 0x60, 0x70, 0x7f, 0x80, 0xc0, 0xcc,
    0xd0, 0xdd, 0xde, 0xe0, 0xed, 0xee, 0xf0, 0xfe, 0xff,
];

const RESPONSE_CODES: &[Code] = &[
    Code::CONTENT,
    Code::CHANGED,
    Code::CREATED,
    Code::DELETED,
    Code::VALID,
    Code::CONTINUE,
    Code::BAD_REQUEST,
    Code::NOT_FOUND,
    Code::BAD_OPTION,
    Code::REQUEST_ENTITY_INCOMPLETE,
    Code::new(5, 0),
    Code::new(5, 3),
];

const METHODS: &[Code] = &[
    Code::GET,
    Code::POST,
    Code::PUT,
    Code::DELETE,
    Code::FETCH,
    Code::PATCH,
    Code::IPATCH,
];

fn message(ty: Type, code: Code, mid: u16, token: &[u8]) -> Message {
    let mut m = Message::new(ty, code, mid);
    m.token = Token::from_slice(token).expect("token of at most 8 bytes");
    m
}

fn block(num: u32, more: bool, szx: u8) -> u32 {
    BlockValue::new(num, more, szx)
        .expect("valid block value")
        .to_uint()
}

/// Valid messages of every kind, built with the public API.
fn corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut add = |m: Message| {
        let bytes = m.to_bytes().expect("corpus message encodes");
        assert!(MessageRef::decode(&bytes).is_ok(), "corpus: {m:?}");
        out.push(bytes);
    };

    // Requests.
    let mut m = message(Type::Con, Code::GET, 0x1234, &[1, 2, 3, 4]);
    m.options.push(OptionNumber::URI_PATH, "sensors");
    m.options.push(OptionNumber::URI_PATH, "temp");
    m.options.push(OptionNumber::URI_QUERY, "unit=C");
    m.options.push(OptionNumber::URI_QUERY, "limit=10");
    add(m);

    let mut m = message(Type::Con, Code::GET, 0x2001, &[0xaa; 8]);
    m.options.push_uint(OptionNumber::OBSERVE, 0);
    m.options.push(OptionNumber::ETAG, [1, 2, 3, 4, 5, 6, 7, 8]);
    m.options.push(OptionNumber::ETAG, [9]);
    m.options.push(OptionNumber::URI_PATH, "clock");
    m.options
        .push_uint(OptionNumber::ACCEPT, u32::from(ContentFormat::CBOR.0));
    m.options
        .push_uint(OptionNumber::BLOCK2, block(3, false, 2));
    add(m);

    let mut m = message(Type::Con, Code::POST, 0x3001, &[7]);
    m.options.push(OptionNumber::URI_PATH, "upload");
    m.options.push_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(ContentFormat::JSON.0),
    );
    m.options.push_uint(OptionNumber::BLOCK1, block(0, true, 6));
    m.options.push_uint(OptionNumber::SIZE1, 4096);
    m.payload = br#"{"temperature": 22.5, "unit": "C"}"#.to_vec();
    add(m);

    let mut m = message(Type::Con, Code::PUT, 0x3002, &[8, 9]);
    m.options.push(OptionNumber::IF_MATCH, [0xee, 0xff]);
    m.options.push(OptionNumber::IF_NONE_MATCH, []);
    m.options.push(OptionNumber::URI_PATH, "config");
    m.options.push_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(ContentFormat::TEXT_PLAIN.0),
    );
    m.payload = b"on".to_vec();
    add(m);

    let mut m = message(Type::Non, Code::GET, 0x4001, &[]);
    m.options.push(OptionNumber::URI_HOST, "example.invalid");
    m.options.push_uint(OptionNumber::URI_PORT, 5683);
    m.options.push(OptionNumber::URI_PATH, ".well-known");
    m.options.push(OptionNumber::URI_PATH, "core");
    add(m);

    for (i, code) in [Code::DELETE, Code::FETCH, Code::PATCH, Code::IPATCH]
        .into_iter()
        .enumerate()
    {
        let mut m = message(Type::Con, code, 0x5000 + i as u16, &[i as u8; 3]);
        m.options.push(OptionNumber::URI_PATH, "r");
        if code != Code::DELETE {
            m.payload = vec![0xa1, 0x01, 0x02];
        }
        add(m);
    }

    let mut m = message(Type::Con, Code::GET, 0x5100, &[1]);
    m.options.push(OptionNumber::PROXY_URI, vec![b'p'; 270]);
    add(m);

    // Responses.
    let mut m = message(Type::Ack, Code::CONTENT, 0x1234, &[1, 2, 3, 4]);
    m.options.push_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(ContentFormat::TEXT_PLAIN.0),
    );
    m.options.push_uint(OptionNumber::MAX_AGE, 60);
    m.options.push(OptionNumber::ETAG, [0x12, 0x34]);
    m.options.push_uint(OptionNumber::BLOCK2, block(0, true, 2));
    m.options.push_uint(OptionNumber::SIZE2, 200);
    m.payload = vec![b'x'; 64];
    add(m);

    let mut m = message(Type::Con, Code::CONTENT, 0x6001, &[0xaa; 8]);
    m.options.push_uint(OptionNumber::OBSERVE, 0x00ab_cdef);
    m.options.push_uint(OptionNumber::CONTENT_FORMAT, 0);
    m.payload = b"12:00:00".to_vec();
    add(m);

    let mut m = message(Type::Non, Code::CONTENT, 0x6002, &[0xaa; 8]);
    m.options.push_uint(OptionNumber::OBSERVE, 17);
    m.payload = b"12:00:01".to_vec();
    add(m);

    let mut m = message(Type::Ack, Code::NOT_FOUND, 0x1234, &[1, 2, 3, 4]);
    m.payload = b"no such resource".to_vec();
    add(m);

    let mut m = message(Type::Ack, Code::new(5, 3), 0x7001, &[5]);
    m.options.push_uint(OptionNumber::MAX_AGE, 30);
    add(m);

    let mut m = message(Type::Ack, Code::CONTINUE, 0x3001, &[7]);
    m.options.push_uint(OptionNumber::BLOCK1, block(0, true, 6));
    add(m);

    add(message(Type::Ack, Code::CHANGED, 0x3002, &[8, 9]));

    // Empty messages: empty ACK, Reset, CON ping, and an (ignored) empty NON.
    for ty in [Type::Ack, Type::Rst, Type::Con, Type::Non] {
        let mut bytes = Vec::new();
        encode_empty(ty, 0x1234, &mut bytes);
        let m = Message::new(ty, Code::EMPTY, 0x1234);
        assert_eq!(m.to_bytes().as_ref(), Ok(&bytes));
        add(m);
    }

    // Option numbers around the extended-delta boundaries, one option each.
    for number in [12u16, 13, 14, 268, 269, 270, 281, 282, 65535] {
        let mut m = message(Type::Con, Code::GET, number, &[0x42]);
        m.options.push(OptionNumber(number), [1]);
        add(m);
    }
    // Deltas that cross each boundary in one message.
    let mut m = message(Type::Non, Code::POST, 0x8001, &[1, 2]);
    for number in [1u16, 13, 26, 294, 563, 65535] {
        m.options.push(OptionNumber(number), []);
    }
    m.payload = vec![0xff; 3];
    add(m);
    // Value lengths around the extended-length boundaries.
    for len in [0usize, 1, 12, 13, 14, 268, 269, 270] {
        let mut m = message(Type::Con, Code::PUT, 0x9000 + len as u16, &[3]);
        m.options.push(OptionNumber(2000), vec![b'v'; len]);
        m.options
            .push(OptionNumber::URI_PATH, vec![b'p'; len.min(255)]);
        add(m);
    }

    // Critical and elective options nobody knows, and a long payload.
    let mut m = message(Type::Con, Code::GET, 0xa001, &[9, 9]);
    m.options.push(OptionNumber(2049), "critical");
    m.options.push(OptionNumber(2050), "elective");
    add(m);
    let mut m = message(Type::Ack, Code::CONTENT, 0xa002, &[9, 9]);
    m.payload = (0..=255).collect();
    add(m);

    out
}

/// Applies one to three mutations to `d`.
fn mutate(rng: &mut Rng, d: &mut Vec<u8>) {
    let rounds = if rng.chance(60) { 1 } else { 2 + rng.below(2) };
    for _ in 0..rounds {
        let len = d.len();
        // Where the options start, as far as the header tells.
        let body = len.min(4 + usize::from(d.first().map_or(0, |b| b & 0x0f)));
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = if rng.chance(50) {
                    *rng.pick(INTERESTING)
                } else {
                    rng.byte()
                };
            }
            2 => d.truncate(rng.below(len + 1)),
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(4);
                for _ in 0..n {
                    let b = if rng.chance(50) {
                        *rng.pick(INTERESTING)
                    } else {
                        rng.byte()
                    };
                    d.insert(at, b);
                }
            }
            4 if len > body => {
                // Duplicate a run of option bytes in place (a repeated option, or a torn one).
                let start = body + rng.below(len - body);
                let end = (start + 1 + rng.below(8)).min(len);
                let run = d[start..end].to_vec();
                let at = if rng.chance(50) { end } else { start };
                d.splice(at..at, run);
            }
            5 if len > 0 => d[0] = (d[0] & 0xf0) | rng.below(16) as u8,
            6 if len > 0 => d[0] = (d[0] & 0xcf) | ((rng.below(4) as u8) << 4),
            7 if len > 1 => {
                d[1] = match rng.below(4) {
                    0 => Code::EMPTY,
                    1 => *rng.pick(METHODS),
                    2 => *rng.pick(RESPONSE_CODES),
                    _ => Code(rng.byte()),
                }
                .0;
            }
            8 if len > 0 => {
                d.remove(rng.below(len));
            }
            9 => {
                // A payload marker somewhere in the options, or at the end.
                let at = if len > body && rng.chance(70) {
                    body + rng.below(len - body)
                } else {
                    len
                };
                d.insert(at, 0xff);
            }
            10 => {
                let n = 1 + rng.below(8);
                let tail = rng.bytes(n);
                d.extend_from_slice(&tail);
            }
            _ => {
                if len > 0 {
                    let i = rng.below(len);
                    d[i] = d[i].wrapping_add(1);
                }
            }
        }
    }
}

/// Random bytes, 0 to 300 of them, mostly short; a third start with version 1.
fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let len = rng.short_len(300);
    let mut d = rng.bytes(len);
    if !d.is_empty() && rng.chance(33) {
        d[0] = 0x40 | (d[0] & 0x3f);
    }
    d
}

/// Tallies of what the decoder saw.
#[derive(Default, Debug)]
struct Counts {
    decoded: u64,
    rejected: u64,
}

/// Decodes `d` both ways; when it decodes, both encoders must give back exactly `d`.
fn check_codec(d: &[u8], buf: &mut Vec<u8>, counts: &mut Counts) {
    let _ = peek_header(d);
    match MessageRef::decode(d) {
        Ok(m) => {
            counts.decoded += 1;
            buf.clear();
            m.encode(buf);
            assert_eq!(buf[..], d[..], "MessageRef re-encoding differs: {d:02x?}");
            let owned = m.to_owned();
            buf.clear();
            owned
                .encode(buf)
                .unwrap_or_else(|e| panic!("decoded message does not encode ({e}): {d:02x?}"));
            assert_eq!(buf[..], d[..], "Message re-encoding differs: {d:02x?}");
            assert_eq!(
                Message::decode(d).as_ref(),
                Ok(&owned),
                "Message::decode disagrees: {d:02x?}"
            );
            assert!(
                owned.options.iter().eq(m.options.iter()),
                "owned options differ: {d:02x?}"
            );
        }
        Err(e) => {
            counts.rejected += 1;
            assert_eq!(
                Message::decode(d),
                Err(e),
                "Message::decode disagrees: {d:02x?}"
            );
        }
    }
}

fn remotes() -> Vec<SocketAddr> {
    [
        "192.0.2.1:5683",
        "[2001:db8::1]:5683",
        "[2001:db8::2]:40000",
        "[::ffff:198.51.100.7]:61616",
    ]
    .iter()
    .map(|s| s.parse().expect("address"))
    .collect()
}

/// A random response: code, options and payload.
fn random_response(rng: &mut Rng, code: Code) -> Response {
    let mut r = Response::new(code);
    if rng.chance(40) {
        r = r.with_content_format(*rng.pick(&[
            ContentFormat::TEXT_PLAIN,
            ContentFormat::JSON,
            ContentFormat::CBOR,
        ]));
    }
    if rng.chance(20) {
        r.options
            .push_uint(OptionNumber::OBSERVE, rng.byte().into());
    }
    if rng.chance(20) {
        let v = block(rng.below(4) as u32, rng.chance(50), rng.below(7) as u8);
        r.options.push_uint(OptionNumber::BLOCK2, v);
    }
    if rng.chance(15) {
        let n = 1 + rng.below(8);
        r.options.push(OptionNumber::ETAG, rng.bytes(n));
    }
    if rng.chance(50) {
        let n = rng.short_len(200);
        r.payload = rng.bytes(n);
    }
    r
}

/// A random request, sometimes with a method that is not one.
fn random_request(rng: &mut Rng) -> Request {
    let method = if rng.chance(90) {
        *rng.pick(METHODS)
    } else {
        Code(rng.byte())
    };
    let path = *rng.pick(&[
        "/",
        "/hello",
        "/sensors/temp?unit=C",
        "/a/b/c?x=1&y=2",
        "/%ff",
    ]);
    let mut r = Request::get(path);
    r.method = method;
    if rng.chance(25) {
        r.options.push_uint(OptionNumber::OBSERVE, 0);
    }
    if rng.chance(20) {
        let v = block(rng.below(8) as u32, false, rng.below(7) as u8);
        r.options.push_uint(OptionNumber::BLOCK2, v);
    }
    if rng.chance(10) {
        r.options.push(OptionNumber::ETAG, [1, 2, 3]);
    }
    if rng.chance(30) {
        let n = rng.short_len(100);
        r = r
            .with_payload(rng.bytes(n))
            .with_content_format(ContentFormat::JSON);
    }
    if rng.chance(25) {
        r = r.non_confirmable();
    }
    r
}

/// One endpoint, its simulated peers, and what the test knows it must hold.
struct Harness {
    name: &'static str,
    ep: Endpoint,
    config: Config,
    now: Instant,
    remotes: Vec<SocketAddr>,
    /// Requests that have had no event yet, with the index of their remote.
    open: BTreeMap<RequestId, usize>,
    /// Received requests that await an answer, with the instant the endpoint forgets them
    /// (EXCHANGE_LIFETIME or NON_LIFETIME after they came).
    pending: Vec<(IncomingId, Instant)>,
    /// Some answered ones, to answer again.
    answered: VecDeque<IncomingId>,
    /// When each recent successful `respond` happened (a separate response lives at most
    /// MAX_TRANSMIT_WAIT), for the bound on timers.
    responded: VecDeque<Instant>,
    /// What the peers will send back: (remote index, datagram).
    replies: VecDeque<(usize, Vec<u8>)>,
    /// What the endpoint sent lately, as material for mutations.
    sent: VecDeque<(usize, Vec<u8>)>,
    /// Whether the peers stay silent (while draining at the end).
    silent: bool,
    transmits: u64,
    started: u64,
    incoming: u64,
    responses: u64,
    failures: u64,
    max_timers: usize,
    max_dedup: usize,
}

impl Harness {
    fn new(name: &'static str, config: Config, start: Instant) -> Self {
        let ep = Endpoint::new(config.into());
        Self {
            name,
            config: ep.config().clone(),
            ep,
            now: start,
            remotes: remotes(),
            open: BTreeMap::new(),
            pending: Vec::new(),
            answered: VecDeque::new(),
            responded: VecDeque::new(),
            replies: VecDeque::new(),
            sent: VecDeque::new(),
            silent: false,
            transmits: 0,
            started: 0,
            incoming: 0,
            responses: 0,
            failures: 0,
            max_timers: 0,
            max_dedup: 0,
        }
    }

    /// Picks the next datagram and the remote it comes from.
    fn next_datagram(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> (usize, Vec<u8>) {
        let remote = rng.below(self.remotes.len());
        match rng.below(100) {
            0..=29 => (remote, random_datagram(rng)),
            30..=49 if !self.replies.is_empty() => {
                let (r, mut d) = self.replies.pop_front().expect("not empty");
                if rng.chance(25) {
                    mutate(rng, &mut d);
                }
                (r, d)
            }
            50..=57 if !self.sent.is_empty() => {
                // The endpoint's own traffic, reflected or mutated.
                let (r, mut d) = self.sent[rng.below(self.sent.len())].clone();
                if rng.chance(70) {
                    mutate(rng, &mut d);
                }
                (if rng.chance(50) { r } else { remote }, d)
            }
            _ => {
                let mut d = rng.pick(corpus).clone();
                if rng.chance(50) {
                    // A fresh message ID keeps deduplication from swallowing it.
                    d[2] = rng.byte();
                    d[3] = rng.byte();
                }
                if rng.chance(85) {
                    mutate(rng, &mut d);
                }
                (remote, d)
            }
        }
    }

    fn meta(&self, rng: &mut Rng, remote: usize) -> RecvMeta {
        let meta = RecvMeta::new(self.remotes[remote]);
        match rng.below(20) {
            0 => meta.with_local("ff02::fd".parse().expect("address"), Some(1)),
            1 => meta.with_local("224.0.1.187".parse().expect("address"), None),
            2 | 3 => meta.with_local(IpAddr::from([192, 0, 2, 100]), Some(2)),
            _ => meta,
        }
    }

    /// Runs the timers that are due, as a driver would before handling input.
    fn run_due_timers(&mut self) {
        if self.ep.poll_timeout().is_some_and(|t| t <= self.now) {
            self.ep.handle_timeout(self.now);
            self.after_timeout();
        }
    }

    fn after_timeout(&mut self) {
        let now = self.now;
        self.pending.retain(|&(_, expires)| expires > now);
        assert!(
            self.ep.poll_timeout().is_none_or(|t| t > self.now),
            "{}: a timer is still due after handle_timeout",
            self.name
        );
    }

    fn deliver(&mut self, rng: &mut Rng, remote: usize, d: &[u8]) {
        self.now += Duration::from_millis(rng.below(3) as u64);
        self.run_due_timers();
        let meta = self.meta(rng, remote);
        self.ep.handle_datagram(self.now, &meta, d);
    }

    fn advance(&mut self, rng: &mut Rng) {
        let ms = match rng.below(20) {
            0..=9 => rng.below(100),
            10..=15 => rng.below(5_000),
            16..=18 => rng.below(60_000),
            _ => rng.below(300_000),
        };
        self.now += Duration::from_millis(ms as u64);
        self.ep.handle_timeout(self.now);
        self.after_timeout();
        // A spurious call changes nothing.
        self.ep.handle_timeout(self.now);
    }

    fn request(&mut self, rng: &mut Rng) {
        if self.open.len() >= MAX_OPEN {
            return;
        }
        let remote = rng.below(self.remotes.len());
        let req = random_request(rng);
        let method = req.method;
        match self.ep.request(self.now, self.remotes[remote], req) {
            Ok(id) => {
                assert!(
                    method.is_request(),
                    "{}: accepted method {method}",
                    self.name
                );
                assert!(self.open.insert(id, remote).is_none(), "request ID reused");
                self.started += 1;
            }
            Err(Error::WrongCode(c)) => {
                assert!(!method.is_request() && c == method, "{}: {c}", self.name)
            }
            Err(Error::QueueFull(_)) => {
                let to_remote = self.open.values().filter(|&&r| r == remote).count();
                assert!(
                    to_remote >= self.config.nstart + self.config.max_queued_per_remote,
                    "{}: queue full with {to_remote} open requests to the remote",
                    self.name
                );
            }
            Err(Error::NoToken) => assert!(self.config.token_length <= 1, "{}", self.name),
            Err(e) => panic!("{}: request failed: {e}", self.name),
        }
    }

    fn cancel(&mut self, rng: &mut Rng) {
        if self.open.is_empty() {
            return;
        }
        let id = *self
            .open
            .keys()
            .nth(rng.below(self.open.len()))
            .expect("in range");
        self.open.remove(&id);
        self.ep.cancel(self.now, id);
        // Cancelling twice is harmless.
        self.ep.cancel(self.now, id);
    }

    fn respond(&mut self, rng: &mut Rng) {
        let code = if rng.chance(70) {
            *rng.pick(RESPONSE_CODES)
        } else {
            Code(rng.byte())
        };
        let response = random_response(rng, code);
        if !self.answered.is_empty() && (self.pending.is_empty() || rng.chance(10)) {
            let id = self.answered[rng.below(self.answered.len())];
            let expected = if code.is_response() {
                Error::UnknownExchange
            } else {
                Error::WrongCode(code)
            };
            assert_eq!(self.ep.respond(self.now, id, response), Err(expected));
            return;
        }
        if self.pending.is_empty() {
            return;
        }
        let i = rng.below(self.pending.len());
        let id = self.pending[i].0;
        let result = self.ep.respond(self.now, id, response);
        if code.is_response() {
            assert_eq!(result, Ok(()), "{}: respond {code}", self.name);
            self.pending.swap_remove(i);
            self.answered.push_back(id);
            if self.answered.len() > 8 {
                self.answered.pop_front();
            }
            self.responded.push_back(self.now);
        } else {
            assert_eq!(result, Err(Error::WrongCode(code)), "{}", self.name);
        }
    }

    fn transport_error(&mut self, rng: &mut Rng, buf: &mut Vec<u8>) {
        let remote = rng.below(self.remotes.len());
        // With several requests open to the remote, the order in which the endpoint fails them
        // (and so whether a queued one is started first) follows a HashMap's iteration order,
        // which differs from run to run; keep the run reproducible.
        if self.open.values().filter(|&&r| r == remote).count() > 1 {
            return;
        }
        let kind = *rng.pick(&[
            TransportErrorKind::PortUnreachable,
            TransportErrorKind::HostUnreachable,
            TransportErrorKind::NetworkUnreachable,
            TransportErrorKind::Prohibited,
            TransportErrorKind::MessageTooLarge,
            TransportErrorKind::Other(111),
        ]);
        let err = TransportError::new(self.remotes[remote], kind);
        let had_events = self.ep.has_events();
        self.ep.handle_transport_error(self.now, &err);
        if kind == TransportErrorKind::MessageTooLarge {
            // The path is narrower than thought: smaller blocks from now on, nothing fails.
            assert!(
                had_events || !self.ep.has_events(),
                "{}: a Packet Too Big failed a request",
                self.name
            );
            self.drain(rng, buf);
            return;
        }
        self.drain(rng, buf);
        assert!(
            !self.open.values().any(|&r| r == remote),
            "{}: a request to the failed remote is still open",
            self.name
        );
    }

    /// Takes every transmit and event, checks them, and lets the peers react.
    fn drain(&mut self, rng: &mut Rng, buf: &mut Vec<u8>) {
        while let Some(t) = self.ep.poll_transmit(self.now, buf) {
            self.transmits += 1;
            assert_eq!(t.size, buf.len());
            let remote = self
                .remotes
                .iter()
                .position(|a| *a == t.destination)
                .unwrap_or_else(|| panic!("{}: sent to unknown {}", self.name, t.destination));
            let m = MessageRef::decode(buf).unwrap_or_else(|e| {
                panic!(
                    "{}: sent an undecodable datagram ({e}): {buf:02x?}",
                    self.name
                )
            });
            let mut again = Vec::new();
            m.encode(&mut again);
            assert_eq!(again, *buf);
            let sensible = match m.ty {
                Type::Ack => m.code.is_empty() || m.code.is_response(),
                Type::Rst => m.code.is_empty(),
                Type::Con | Type::Non => m.code.is_request() || m.code.is_response(),
            };
            assert!(
                sensible,
                "{}: sent {:?} {}: {buf:02x?}",
                self.name, m.ty, m.code
            );
            if m.code.is_request() {
                assert_eq!(m.token.len(), self.config.token_length);
            }
            if !self.silent {
                self.react(rng, remote, &m);
            }
            if self.sent.len() >= 32 {
                self.sent.pop_front();
            }
            self.sent.push_back((remote, buf.clone()));
        }
        while let Some(event) = self.ep.poll_event() {
            match event {
                Event::Request { id, meta, request } => {
                    assert!(request.method.is_request(), "{}", self.name);
                    assert!(self.remotes.contains(&meta.remote), "{}", self.name);
                    assert!(
                        self.pending.iter().all(|p| p.0 != id),
                        "{}: {id:?} twice",
                        self.name
                    );
                    let lifetime = if request.confirmable {
                        self.config.exchange_lifetime()
                    } else {
                        self.config.non_lifetime()
                    };
                    self.pending.push((id, self.now + lifetime));
                    self.incoming += 1;
                }
                Event::Response { id, response } => {
                    assert!(
                        self.open.remove(&id).is_some(),
                        "{}: response for {id:?}, which is not open",
                        self.name
                    );
                    // Classes 2 to 5: class 3 has no response codes, but it lies in the
                    // response range of the registry (RFC 7252 §12.1) and is delivered.
                    assert!(
                        (2..=5).contains(&response.code.class()),
                        "{}: response {response:?}",
                        self.name
                    );
                    self.responses += 1;
                }
                Event::Failed { id, .. } => {
                    assert!(
                        self.open.remove(&id).is_some(),
                        "{}: failure of {id:?}, which is not open",
                        self.name
                    );
                    self.failures += 1;
                }
                // A request to a multicast group collects answers until GroupDone ends it.
                Event::GroupResponse { id, .. } => {
                    assert!(
                        self.open.contains_key(&id),
                        "{}: {id:?} not open",
                        self.name
                    );
                }
                Event::GroupDone { id } => {
                    assert!(
                        self.open.remove(&id).is_some(),
                        "{}: {id:?} not open",
                        self.name
                    );
                }
                // An observation (a request with Observe 0) stays open after a notification.
                Event::Notification { id, response } => {
                    assert!(
                        self.open.contains_key(&id),
                        "{}: notification for {id:?}, which is not open",
                        self.name
                    );
                    assert!(response.code.is_success(), "{}: {response:?}", self.name);
                }
                other => panic!("{}: unexpected event {other:?}", self.name),
            }
        }
    }

    /// What a peer sends back for a datagram it got from the endpoint.
    fn react(&mut self, rng: &mut Rng, remote: usize, m: &MessageRef<'_>) {
        let mut reply = |rng: &mut Rng, msg: Message| {
            if let Ok(bytes) = msg.to_bytes() {
                if self.replies.len() >= 64 {
                    self.replies.pop_front();
                }
                // Mostly in order; sometimes overtaking what is already queued.
                if rng.chance(80) {
                    self.replies.push_back((remote, bytes));
                } else {
                    self.replies.push_front((remote, bytes));
                }
            }
        };
        let token = m.token.as_bytes();
        let response = |rng: &mut Rng, ty: Type, mid: u16| {
            let code = if rng.chance(90) {
                *rng.pick(RESPONSE_CODES)
            } else {
                Code(rng.byte())
            };
            let r = random_response(rng, code);
            let mut msg = message(ty, r.code, mid, token);
            msg.options = r.options;
            msg.payload = r.payload;
            if rng.chance(5) {
                msg.options.push(OptionNumber(2049), "unknown critical");
            }
            msg
        };
        let mid = m.message_id;
        match (m.ty, m.code.is_request()) {
            (Type::Con, true) => match rng.below(10) {
                0..=2 => {
                    let msg = response(rng, Type::Ack, mid);
                    reply(rng, msg);
                }
                3 | 4 => {
                    reply(rng, message(Type::Ack, Code::EMPTY, mid, &[]));
                    let ty = if rng.chance(70) { Type::Con } else { Type::Non };
                    let separate_mid = rng.next() as u16;
                    let msg = response(rng, ty, separate_mid);
                    reply(rng, msg);
                }
                5 => reply(rng, message(Type::Rst, Code::EMPTY, mid, &[])),
                6 => {
                    // A piggybacked response with the wrong token.
                    let mut msg = response(rng, Type::Ack, mid);
                    msg.token = Token::from_slice(&[0xde, 0xad]).expect("short token");
                    reply(rng, msg);
                }
                _ => {}
            },
            (Type::Non, true) => match rng.below(10) {
                0..=4 => {
                    let non_mid = rng.next() as u16;
                    let msg = response(rng, Type::Non, non_mid);
                    reply(rng, msg);
                }
                5 => reply(rng, message(Type::Rst, Code::EMPTY, mid, &[])),
                _ => {}
            },
            (Type::Con, false) => match rng.below(10) {
                0..=5 => reply(rng, message(Type::Ack, Code::EMPTY, mid, &[])),
                6 => reply(rng, message(Type::Rst, Code::EMPTY, mid, &[])),
                _ => {}
            },
            _ => {}
        }
    }

    /// Checks the endpoint's state against the configuration and the test's own books.
    /// `compacted`: the last call was one that compacts timers.
    fn check_bounds(&mut self, compacted: bool) {
        let s = self.ep.stats();
        let c = &self.config;
        assert_eq!(s.queued_transmits, 0, "{}", self.name);
        assert_eq!(s.open_requests, self.open.len(), "{}", self.name);
        assert_eq!(s.pending_incoming, self.pending.len(), "{}", self.name);
        assert!(
            s.pending_incoming <= c.max_pending_requests,
            "{}",
            self.name
        );
        // Admission stops at the budget; replies admitted before may add their bytes.
        assert!(
            s.dedup_bytes <= c.dedup_memory + c.max_pending_requests * 1500,
            "{}",
            self.name
        );
        assert!(s.remotes <= self.remotes.len(), "{}", self.name);
        assert!(s.idle_remotes <= self.remotes.len(), "{}", self.name);
        // Idle remotes are trimmed to `max_idle_remotes` when a datagram or a timeout is
        // handled; answers sent in between (each may make a remote known) can add one each.
        assert!(
            s.idle_remotes <= c.max_idle_remotes + c.max_pending_requests + 1,
            "{}: {s:?}",
            self.name
        );
        self.max_timers = self.max_timers.max(s.timers);
        self.max_dedup = self.max_dedup.max(s.dedup_entries);
        if compacted {
            // Live timers: at most one per outgoing message (requests and separate responses
            // younger than MAX_TRANSMIT_WAIT), request deadline and pending request; stale
            // ones are dropped once they outnumber twice the live ones plus 1024.
            let horizon = c.max_transmit_wait() + Duration::from_secs(1);
            while self
                .responded
                .front()
                .is_some_and(|&t| t + horizon < self.now)
            {
                self.responded.pop_front();
            }
            let live = 2 * s.open_requests + s.pending_incoming + self.responded.len();
            assert!(
                s.timers <= 2 * live + 1024,
                "{}: {} timers for {live} live exchanges",
                self.name,
                s.timers
            );
        }
    }

    /// Answers everything, lets every timer run out with the peers silent, and checks that
    /// nothing is left.
    fn wind_down(&mut self, rng: &mut Rng, buf: &mut Vec<u8>) {
        self.silent = true;
        for (id, _) in std::mem::take(&mut self.pending) {
            assert_eq!(
                self.ep.respond(self.now, id, Response::new(Code::CONTENT)),
                Ok(())
            );
        }
        self.drain(rng, buf);
        for _ in 0..10_000 {
            let Some(at) = self.ep.poll_timeout() else {
                break;
            };
            self.now = self.now.max(at);
            self.ep.handle_timeout(self.now);
            self.drain(rng, buf);
        }
        self.now += self.config.exchange_lifetime() + Duration::from_secs(1);
        self.ep.handle_timeout(self.now);
        self.drain(rng, buf);
        assert!(
            self.open.is_empty(),
            "{}: requests without an outcome: {:?}",
            self.name,
            self.open
        );
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
            "{}: state left after winding down: {s:?}",
            self.name
        );
    }
}

fn configs() -> Vec<(&'static str, Config)> {
    // The fuzz target's bounds, RFC timings.
    let mut a = Config::default().with_seed(1);
    a.dedup_memory = 16 << 10;
    a.max_idle_remotes = 64;
    a.max_pending_requests = 16;
    a.max_queued_per_remote = 8;

    // Fast timers, NSTART 2, NON separate responses, an immediate empty ACK, 1-byte tokens.
    let mut b = Config::default().with_seed(2);
    b.dedup_memory = 4 << 10;
    b.max_idle_remotes = 16;
    b.max_pending_requests = 4;
    b.max_queued_per_remote = 2;
    b.nstart = 2;
    b.ack_timeout = Duration::from_millis(100);
    b.max_retransmit = 2;
    b.separate_response_type = Type::Non;
    b.empty_ack_delay = Duration::ZERO;
    b.token_length = 1;

    // Everything at its minimum.
    let mut c = Config::default().with_seed(3);
    c.dedup_memory = 1;
    c.max_idle_remotes = 1;
    c.max_pending_requests = 1;
    c.max_queued_per_remote = 0;
    c.token_length = 0;
    c.ack_random_factor = 1.0;
    c.max_retransmit = 0;
    c.non_timeout = Duration::from_secs(2);
    c.separate_timeout = Duration::from_secs(5);

    vec![("A", a), ("B", b), ("C", c)]
}

#[test]
fn a_million_hostile_datagrams() {
    let started = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let corpus = corpus();
    let clock = Instant::now();
    let mut harnesses: Vec<Harness> = configs()
        .into_iter()
        .map(|(name, config)| Harness::new(name, config, clock))
        .collect();
    let mut counts = Counts::default();
    let mut buf = Vec::new();
    let mut check_buf = Vec::new();
    let mut fed = 0u64;
    while fed < DATAGRAMS {
        let i = rng.below(harnesses.len());
        let h = &mut harnesses[i];
        let compacted = match rng.below(100) {
            0..=87 => {
                let (remote, d) = h.next_datagram(&mut rng, &corpus);
                check_codec(&d, &mut check_buf, &mut counts);
                h.deliver(&mut rng, remote, &d);
                fed += 1;
                true
            }
            88..=89 => {
                h.advance(&mut rng);
                true
            }
            90..=93 => {
                h.request(&mut rng);
                false
            }
            94 => {
                h.cancel(&mut rng);
                false
            }
            95..=98 => {
                h.respond(&mut rng);
                false
            }
            _ => {
                h.transport_error(&mut rng, &mut buf);
                false
            }
        };
        h.drain(&mut rng, &mut buf);
        h.check_bounds(compacted);
    }
    for h in &mut harnesses {
        h.wind_down(&mut rng, &mut buf);
        eprintln!(
            "endpoint {}: {} transmits, {} requests received, {} sent ({} answered, {} failed), \
             at most {} timers and {} dedup entries",
            h.name,
            h.transmits,
            h.incoming,
            h.started,
            h.responses,
            h.failures,
            h.max_timers,
            h.max_dedup
        );
        // The exchanges really ran, in both directions.
        assert!(
            h.incoming > 1000 && h.responses > 100 && h.failures > 100,
            "{}",
            h.name
        );
    }
    let total = counts.decoded + counts.rejected;
    eprintln!(
        "{total} datagrams: {} decoded ({:.1}%), {} rejected; {:.1?}",
        counts.decoded,
        100.0 * counts.decoded as f64 / total as f64,
        counts.rejected,
        started.elapsed()
    );
    assert!(total >= DATAGRAMS);
    assert!(
        counts.decoded >= total / 5,
        "too few datagrams decoded: {counts:?}"
    );
    assert!(
        counts.rejected >= total / 5,
        "too few datagrams rejected: {counts:?}"
    );
}
