//! Echo (RFC 9175 §2) in the core: what a remote whose address is not verified gets back stays
//! within three times its request (answers cut into smaller blocks, or 4.01 Unauthorized with
//! an Echo value); a client repeats a challenged request once, with the Echo it was given;
//! Echo values are good only for their remote and their lifetime; and a flood of spoofed
//! requests leaves bounded state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::sim::{Answer, Handler, Link, Outcome, Sim};
use crate::message::{BlockValue, Code, ContentFormat, Message, OptionNumber, Token, Type};
use crate::proto::{Config, Endpoint, Event, RecvMeta, Request, RequestId, Response};

/// RFC 9175 §2.4: what an unverified remote may get back, as a multiple of what it sent.
const FACTOR: usize = 3;

/// An elective option (even number) no one knows: answers carry it to make their options
/// large.
const BULKY: OptionNumber = OptionNumber(65000);

/// A spoofed source address: the victim the answers to its requests would go to.
fn victim(i: u32) -> SocketAddr {
    let [a, b, c, d] = i.to_be_bytes();
    SocketAddr::from((
        [
            0x2001,
            0xdb8,
            0xdead,
            0,
            0,
            0,
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
        ],
        1024 + (i % 60_000) as u16,
    ))
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A 600-byte link-format document, as `/.well-known/core` of a server with a dozen
/// resources.
fn links() -> Vec<u8> {
    let mut doc = String::new();
    let mut i = 0;
    while doc.len() < 600 {
        doc.push_str(&format!(
            "</sensors/temperature-{i}>;rt=\"temperature-c\";if=\"sensor\";ct=0,"
        ));
        i += 1;
    }
    doc.truncate(600);
    doc.into_bytes()
}

/// A request datagram: GET (or `code`) with Uri-Path `path` (no option for `""`), and
/// `extra` options.
fn datagram(
    ty: Type,
    mid: u16,
    token: &[u8],
    path: &str,
    extra: &[(OptionNumber, Vec<u8>)],
) -> Vec<u8> {
    let mut m = Message::new(ty, Code::GET, mid);
    m.token = Token::from_slice(token).unwrap();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        m.options.push(OptionNumber::URI_PATH, segment);
    }
    for (n, v) in extra {
        m.options.push(*n, v);
    }
    m.to_bytes().unwrap()
}

fn block2(num: u32, szx: u8) -> (OptionNumber, Vec<u8>) {
    let v = BlockValue::new(num, false, szx).unwrap().to_uint();
    let mut buf = [0u8; 4];
    let bytes = crate::message::encode_uint(v, &mut buf).to_vec();
    (OptionNumber::BLOCK2, bytes)
}

/// What the application answers.
#[derive(Clone, Copy, Debug)]
enum App {
    /// 2.05 with this many bytes (`/.well-known/core`: the link document).
    Content(usize),
    /// 2.05 with this many bytes and options of about 100 bytes.
    Bulky(usize),
    /// 4.04 with a diagnostic payload.
    NotFound,
    /// [`Response::echo_challenge`] unless the request is fresh.
    Fresh,
}

impl App {
    fn answer(self, request: &Request) -> Response {
        match self {
            Self::Content(_) if request.path() == "/.well-known/core" => {
                Response::new(Code::CONTENT)
                    .with_payload(links())
                    .with_content_format(ContentFormat::LINK_FORMAT)
            }
            Self::Content(n) => Response::new(Code::CONTENT)
                .with_payload(body(n))
                .with_content_format(ContentFormat::TEXT_PLAIN),
            Self::Bulky(n) => {
                let mut r = Response::new(Code::CONTENT).with_payload(body(n));
                r.options.push(OptionNumber::ETAG, [7; 8]);
                r.options.push(BULKY, [b'x'; 100]);
                r
            }
            Self::NotFound => Response::new(Code::NOT_FOUND).with_payload("no such resource"),
            Self::Fresh if request.is_fresh() => Response::new(Code::CHANGED),
            Self::Fresh => Response::echo_challenge(),
        }
    }
}

/// A server endpoint fed raw datagrams, with a virtual clock.
struct Server {
    ep: Endpoint,
    now: Instant,
    app: App,
    /// Consent to observations: answers carry Observe.
    observable: bool,
}

impl Server {
    fn new(config: Config, app: App) -> Self {
        Self {
            ep: Endpoint::new(config.into()),
            now: Instant::now(),
            app,
            observable: false,
        }
    }

    /// Everything sent since the last call, all to `to`; requests that reached the
    /// application go to `pending`.
    fn drain(
        &mut self,
        to: SocketAddr,
        pending: &mut Vec<(crate::proto::IncomingId, Request)>,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(t) = self.ep.poll_transmit(self.now, &mut buf) {
            assert_eq!(t.destination, to, "sent to someone else");
            out.push(buf.clone());
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Request { id, request, .. } => pending.push((id, request)),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    /// Feeds `request` from `from` and returns what was sent to `from` in answer, with the
    /// requests as the application saw them: the application answers at once (piggybacked
    /// on the ACK), or `late`, after the empty ACK went out (a separate response).
    fn feed(
        &mut self,
        from: SocketAddr,
        request: &[u8],
        late: bool,
    ) -> (Vec<Vec<u8>>, Vec<Request>) {
        let mut pending = Vec::new();
        self.ep
            .handle_datagram(self.now, &RecvMeta::new(from), request);
        let mut out = self.drain(from, &mut pending);
        if late {
            self.now += Duration::from_millis(150);
            self.ep.handle_timeout(self.now);
            out.extend(self.drain(from, &mut pending));
        }
        let mut seen = Vec::new();
        for (id, req) in pending.drain(..) {
            let mut answer = self.app.answer(&req);
            if self.observable {
                answer.options.set_uint(OptionNumber::OBSERVE, 0);
            }
            self.ep.respond(self.now, id, answer).unwrap();
            seen.push(req);
        }
        out.extend(self.drain(from, &mut pending));
        assert!(pending.is_empty());
        (out, seen)
    }

    /// Lets 100 s pass (MAX_TRANSMIT_WAIT, 93 s, covers every retransmission) and returns
    /// what was sent to `to` meanwhile.
    fn settle(&mut self, to: SocketAddr) -> Vec<Vec<u8>> {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let end = self.now + Duration::from_secs(100);
        let mut steps = 0;
        while let Some(t) = self.ep.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.ep.handle_timeout(self.now);
            out.extend(self.drain(to, &mut pending));
            steps += 1;
            assert!(steps < 1000, "timers do not settle");
        }
        assert!(pending.is_empty(), "a request reached the application late");
        self.now = end;
        out
    }

    /// [`Self::feed`], then [`Self::settle`]: everything sent in answer, retransmissions
    /// included (a spoofed source acknowledges nothing).
    fn exchange(
        &mut self,
        from: SocketAddr,
        request: &[u8],
        late: bool,
    ) -> (Vec<Vec<u8>>, Vec<Request>) {
        let (mut out, seen) = self.feed(from, request, late);
        out.extend(self.settle(from));
        (out, seen)
    }
}

fn total(datagrams: &[Vec<u8>]) -> usize {
    datagrams.iter().map(Vec::len).sum()
}

/// The datagrams of an answer, decoded, in a form that says what they were.
fn describe(datagrams: &[Vec<u8>]) -> Vec<String> {
    datagrams
        .iter()
        .map(|d| match Message::decode(d) {
            Ok(m) => format!(
                "{:?} {} {} bytes (Block2 {:?}, Echo {})",
                m.ty,
                m.code,
                d.len(),
                m.options
                    .get(OptionNumber::BLOCK2)
                    .and_then(|v| BlockValue::from_bytes(v).ok()),
                m.options.contains(OptionNumber::ECHO)
            ),
            Err(e) => format!("undecodable ({e})"),
        })
        .collect()
}

/// Checks that `answer` to `request` (both as sent) is within the limit, and returns its
/// messages.
#[track_caller]
fn within_limit(what: &str, request: &[u8], answer: &[Vec<u8>]) -> Vec<Message> {
    let limit = FACTOR * request.len();
    assert!(
        total(answer) <= limit,
        "{what}: a {}-byte request got {} bytes back (limit {limit}): {:?}",
        request.len(),
        total(answer),
        describe(answer)
    );
    answer.iter().map(|d| Message::decode(d).unwrap()).collect()
}

// ---- a. spoofed sources ------------------------------------------------------------------

/// `GET /.well-known/core` as coap-client sends it (21 bytes with no token) and with every
/// token length, Confirmable and not, answered at once or late: whatever goes back is within
/// three times the request, and it is the first block of the document (with an Echo value),
/// not an error.
#[test]
fn well_known_core_to_a_spoofed_source_stays_within_three_times_the_request() {
    for tkl in 0..=8usize {
        for ty in [Type::Con, Type::Non] {
            for late in [false, true] {
                let mut s = Server::new(Config::default(), App::Content(0));
                let token: Vec<u8> = (1..=tkl as u8).collect();
                let request = datagram(ty, 0x1234, &token, "/.well-known/core", &[]);
                assert_eq!(request.len(), 21 + tkl);
                let (answer, _) = s.exchange(victim(1), &request, late);
                let what = format!("tkl {tkl} {ty:?} late {late}");
                let msgs = within_limit(&what, &request, &answer);
                let content: Vec<&Message> = msgs.iter().filter(|m| !m.code.is_empty()).collect();
                assert_eq!(content.len(), 1, "{what}: {:?}", describe(&answer));
                let m = content[0];
                assert!(
                    m.code == Code::CONTENT || m.code == Code::UNAUTHORIZED,
                    "{what}: {m:?}"
                );
                assert!(m.options.get(OptionNumber::ECHO).is_some(), "{what}: {m:?}");
                if m.code == Code::CONTENT {
                    let b = BlockValue::from_bytes(m.options.get(OptionNumber::BLOCK2).unwrap())
                        .unwrap();
                    assert!(b.num() == 0 && b.more(), "{what}: {b:?}");
                    assert_eq!(m.payload, links()[..b.size()], "{what}");
                }
                if !late && ty == Type::Con {
                    // Piggybacked: the answer is one ACK, the first block of the document.
                    assert_eq!(msgs.len(), 1, "{what}");
                    assert_eq!((m.ty, m.code), (Type::Ack, Code::CONTENT), "{what}");
                }
                assert_eq!(s.ep.stats().verified_remotes, 0);
            }
        }
    }
}

/// Requests of every size from 4 bytes (a bare header) up, to paths whose answers are empty,
/// small, large, with large options, errors and Echo challenges; Confirmable and not, answered
/// at once or late: the bytes sent back never exceed three times the request.
#[test]
fn no_answer_to_a_spoofed_source_exceeds_three_times_its_request() {
    let paths = [
        "",
        "a",
        "abc",
        "sensors/temp",
        "a/rather/long/path/to/some/resource",
    ];
    let apps = [
        App::Content(0),
        App::Content(1),
        App::Content(5),
        App::Content(12),
        App::Content(30),
        App::Content(60),
        App::Content(100),
        App::Content(300),
        App::Content(600),
        App::Content(1100),
        App::Content(3000),
        App::Bulky(0),
        App::Bulky(20),
        App::Bulky(3000),
        App::NotFound,
        App::Fresh,
    ];
    let mut cases = 0;
    let mut i = 0;
    for app in apps {
        for path in paths {
            for tkl in 0..=8usize {
                for ty in [Type::Con, Type::Non] {
                    for late in [false, true] {
                        i += 1;
                        let mut s = Server::new(Config::default().with_seed(i.into()), app);
                        let token: Vec<u8> = (0..tkl as u8).map(|b| b ^ 0x5a).collect();
                        let request = datagram(ty, i as u16, &token, path, &[]);
                        let (answer, seen) = s.exchange(victim(i), &request, late);
                        let what = format!("{app:?} /{path} tkl {tkl} {ty:?} late {late}");
                        let msgs = within_limit(&what, &request, &answer);
                        assert_eq!(seen.len(), 1, "{what}");
                        if ty == Type::Con {
                            assert!(!msgs.is_empty(), "{what}: no answer at all");
                        }
                        assert_eq!(s.ep.stats().verified_remotes, 0, "{what}");
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 16 * 5 * 9 * 4);
}

/// Block2 requests: for block 1 of size 1024 (SZX 6) of a representation the server has in
/// its block cache for that remote (from an earlier request for block 0), and of one it has
/// not; and for later blocks at every size: the answer stays within the limit.
#[test]
fn block2_requests_from_a_spoofed_source_stay_within_the_limit() {
    let mut i = 1000;
    for tkl in [0usize, 2, 4, 8] {
        for szx in 0..=6u8 {
            for cached in [false, true] {
                for late in [false, true] {
                    i += 1;
                    let mut s = Server::new(Config::default(), App::Content(5000));
                    let from = victim(i);
                    let token: Vec<u8> = (0..tkl as u8).collect();
                    let what = format!("tkl {tkl} szx {szx} cached {cached} late {late}");
                    if cached {
                        let first = datagram(Type::Con, 1, &token, "/large", &[block2(0, 6)]);
                        let (answer, _) = s.exchange(from, &first, false);
                        within_limit(&what, &first, &answer);
                        assert_eq!(s.ep.stats().cached_representations, 1, "{what}");
                    }
                    let request = datagram(Type::Con, 2, &token, "/large", &[block2(1, szx)]);
                    let (answer, seen) = s.exchange(from, &request, late);
                    let msgs = within_limit(&what, &request, &answer);
                    // From the cache, the application is not asked again.
                    assert_eq!(seen.len(), usize::from(!cached), "{what}");
                    let m = msgs.iter().find(|m| !m.code.is_empty()).expect("an answer");
                    if m.code == Code::CONTENT {
                        // A block at the offset asked for, of the size asked for or smaller.
                        let b =
                            BlockValue::from_bytes(m.options.get(OptionNumber::BLOCK2).unwrap())
                                .unwrap();
                        assert!(b.szx() <= szx, "{what}: {b:?}");
                        assert_eq!(b.offset(), 16 << szx, "{what}: {b:?}");
                        assert_eq!(m.payload, body(5000)[b.offset()..][..b.size()], "{what}");
                    } else {
                        assert_eq!(m.code, Code::UNAUTHORIZED, "{what}");
                        assert!(m.options.contains(OptionNumber::ECHO), "{what}");
                    }
                }
            }
        }
    }
}

/// aiocoap's GET of a short path (a 2-byte token: 12 bytes) leaves 36 bytes: a 16-byte block
/// fits only without the optional Echo value, and aiocoap's plain client follows blocks but
/// not Echo, so the block goes without it rather than a 4.01 in its place.
#[test]
fn a_short_request_gets_a_block_without_echo_rather_than_4_01() {
    let mut s = Server::new(Config::default(), App::Content(3000));
    let from = victim(7);
    let request = datagram(Type::Con, 1, &[0xdb, 0x0b], "/large", &[]);
    assert_eq!(request.len(), 12);
    let (answer, _) = s.exchange(from, &request, false);
    let msgs = within_limit("block 0", &request, &answer);
    let m = &msgs[0];
    assert_eq!(m.code, Code::CONTENT, "{m:?}");
    assert!(!m.options.contains(OptionNumber::ECHO), "{m:?}");
    let b = BlockValue::from_bytes(m.options.get(OptionNumber::BLOCK2).unwrap()).unwrap();
    assert_eq!((b.num(), b.szx(), b.more()), (0, 0, true));
    // The later blocks, from the block cache, fit as well.
    for num in [1, 2, 100, 187] {
        let request = datagram(
            Type::Con,
            1 + num as u16,
            &[0xdb, 0x0b],
            "/large",
            &[block2(num, 0)],
        );
        let (answer, seen) = s.feed(from, &request, false);
        assert!(seen.is_empty(), "from the cache");
        let m = &within_limit("later block", &request, &answer)[0];
        assert_eq!(m.code, Code::CONTENT, "{m:?}");
        assert_eq!(
            m.payload,
            body(3000)[num as usize * 16..][..16.min(3000 - num as usize * 16)]
        );
    }
}

// ---- b. a coapio client through the limit ------------------------------------------------

/// The final response to request `id` of node `c` (which must have ended in exactly one).
fn response_of(sim: &Sim, c: usize, id: RequestId) -> Response {
    let outcomes = sim.nodes[c].outcomes.get(&id).map(Vec::as_slice);
    assert_eq!(outcomes.map(<[_]>::len), Some(1), "{outcomes:?}");
    match &sim.nodes[c].outcomes[&id][0] {
        Outcome::Response(_, r) => r.clone(),
        Outcome::Failed(_, e) => panic!("request failed: {e:?}"),
    }
}

/// Each answer (not an empty message) node `s` sent to node `c`, with the size of the request
/// it answers (the last one `c` sent to `s` with its token) and its own size.
fn answers(sim: &Sim, c: usize, s: usize) -> Vec<(usize, usize, Message)> {
    let (ca, sa) = (sim.nodes[c].addr, sim.nodes[s].addr);
    let mut last: HashMap<Token, usize> = HashMap::new();
    let mut out = Vec::new();
    for d in &sim.tap {
        let m = Message::decode(&d.bytes).unwrap();
        if d.from == ca && d.to == sa && m.code.is_request() {
            last.insert(m.token, d.bytes.len());
        } else if d.from == sa && d.to == ca && !m.code.is_empty() {
            let q = *last.get(&m.token).expect("an answer to no request");
            out.push((q, d.bytes.len(), m));
        }
    }
    out
}

fn block_of(m: &Message) -> Option<BlockValue> {
    m.options
        .get(OptionNumber::BLOCK2)
        .map(|v| BlockValue::from_bytes(v).unwrap())
}

/// The requests node `c` sent to node `s`.
fn requests(sim: &Sim, c: usize, s: usize) -> Vec<Message> {
    sim.sent(c, s)
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.code.is_request())
        .collect()
}

#[test]
fn a_coapio_client_gets_a_large_body_whole_through_cut_blocks() {
    let mut sim = Sim::new(1, Link::perfect());
    let c = sim.add(Config::default().with_seed(1), Answer::Never);
    let s = sim.add(
        Config::default().with_seed(2),
        Answer::After(Duration::ZERO),
    );
    sim.nodes[s].reply_size = Some(2000);
    let id = sim.request(c, s, Request::get("/large"));
    sim.run(Duration::from_secs(60));
    let r = response_of(&sim, c, id);
    assert_eq!(r.code, Code::CONTENT);
    assert!(r.payload == body(2000), "the body came whole and in order");
    let answered = answers(&sim, c, s);
    for (q, a, m) in &answered {
        assert!(*a <= FACTOR * q, "{a} bytes in answer to {q}: {m:?}");
        let b = block_of(m).expect("block-wise");
        assert!(b.size() < 1024, "cut smaller than the server's 1024: {b:?}");
    }
    assert!(answered.len() > 2000 / 64, "{} blocks", answered.len());
    // The application ran once; the later blocks came from the block cache.
    assert_eq!(sim.nodes[s].handler_runs.values().sum::<u32>(), 1);
    let cs = sim.nodes[c].ep.stats();
    assert_eq!((cs.open_requests, cs.transfers), (0, 0), "{cs:?}");
    // The client verified the server (it answered), not the other way round.
    assert_eq!(cs.verified_remotes, 1);
    assert_eq!(sim.nodes[s].ep.stats().verified_remotes, 0);
}

/// A handler that demands fresh requests, and what it saw: freshness and payload size.
fn demanding(seen: Rc<RefCell<Vec<(bool, usize)>>>) -> Handler {
    Box::new(move |req: &Request| {
        seen.borrow_mut().push((req.is_fresh(), req.payload.len()));
        if !req.is_fresh() {
            return Response::echo_challenge();
        }
        match req.method {
            Code::GET => Response::new(Code::CONTENT).with_payload("closed"),
            _ => Response::new(Code::CHANGED).with_payload(format!("{} bytes", req.payload.len())),
        }
    })
}

#[test]
fn a_freshness_challenge_is_answered_transparently() {
    let cases = [
        (
            "PUT",
            Request::put("/door", "open"),
            Code::CHANGED,
            "4 bytes",
        ),
        ("GET", Request::get("/door"), Code::CONTENT, "closed"),
        (
            "NON POST",
            Request::post("/door", "open").non_confirmable(),
            Code::CHANGED,
            "4 bytes",
        ),
        (
            "block-wise PUT",
            Request::put("/door", body(3000)),
            Code::CHANGED,
            "3000 bytes",
        ),
    ];
    for (i, (what, request, code, payload)) in cases.into_iter().enumerate() {
        let size = request.payload.len();
        let mut sim = Sim::new(10 + i as u64, Link::perfect());
        let c = sim.add(Config::default().with_seed(1), Answer::Never);
        let s = sim.add(
            Config::default().with_seed(2),
            Answer::After(Duration::ZERO),
        );
        let seen = Rc::new(RefCell::new(Vec::new()));
        sim.nodes[s].handler = Some(demanding(seen.clone()));
        let id = sim.request(c, s, request);
        sim.run(Duration::from_secs(60));
        let r = response_of(&sim, c, id);
        assert_eq!(
            (r.code, &r.payload[..]),
            (code, payload.as_bytes()),
            "{what}"
        );
        assert_eq!(*seen.borrow(), [(false, size), (true, size)], "{what}");
        // The 4.01 carried an Echo value, and the request went again with it, once.
        let challenges: Vec<Message> = answers(&sim, c, s)
            .into_iter()
            .map(|(_, _, m)| m)
            .filter(|m| m.code == Code::UNAUTHORIZED)
            .collect();
        assert_eq!(challenges.len(), 1, "{what}");
        let echo = challenges[0].options.get(OptionNumber::ECHO).unwrap();
        assert_eq!(echo.len(), 12, "{what}");
        let with_echo: Vec<Message> = requests(&sim, c, s)
            .into_iter()
            .filter(|m| m.options.get(OptionNumber::ECHO) == Some(echo))
            .collect();
        assert_eq!(
            with_echo.len(),
            1,
            "{what}: one request repeated with the Echo"
        );
        assert_eq!(sim.nodes[s].ep.stats().verified_remotes, 1, "{what}");
        let cs = sim.nodes[c].ep.stats();
        assert_eq!((cs.open_requests, cs.transfers), (0, 0), "{what}: {cs:?}");
        assert_eq!(sim.nodes[s].ep.stats().uploads, 0, "{what}");
    }
}

// ---- c. options alone over the limit -----------------------------------------------------

#[test]
fn options_over_the_limit_get_4_01_and_the_verified_client_then_full_blocks() {
    let mut sim = Sim::new(20, Link::perfect());
    let c = sim.add(Config::default().with_seed(1), Answer::Never);
    let s = sim.add(
        Config::default().with_seed(2),
        Answer::After(Duration::ZERO),
    );
    let runs = Rc::new(RefCell::new(Vec::new()));
    let r2 = runs.clone();
    sim.nodes[s].handler = Some(Box::new(move |req: &Request| {
        r2.borrow_mut().push((req.path(), req.is_fresh()));
        App::Bulky(3000).answer(req)
    }));
    let id = sim.request(c, s, Request::get("/big"));
    sim.run(Duration::from_secs(60));
    let r = response_of(&sim, c, id);
    assert_eq!(r.code, Code::CONTENT);
    assert!(r.payload == body(3000));
    assert_eq!(r.options.get(BULKY), Some(&[b'x'; 100][..]));
    let answered = answers(&sim, c, s);
    let (q, a, first) = &answered[0];
    assert_eq!(first.code, Code::UNAUTHORIZED, "{first:?}");
    assert!(a <= &(FACTOR * q), "{a} bytes in answer to {q}");
    let echo = first.options.get(OptionNumber::ECHO).unwrap().to_vec();
    let sent = requests(&sim, c, s);
    assert_eq!(sent[1].options.get(OptionNumber::ECHO), Some(&echo[..]));
    assert_eq!(sim.nodes[s].ep.stats().verified_remotes, 1);
    // Verified: the repeated request's answer and the rest come in blocks of 1024 bytes.
    let sizes: Vec<usize> = answered[1..]
        .iter()
        .map(|(_, _, m)| block_of(m).unwrap().size())
        .collect();
    assert_eq!(sizes, [1024, 1024, 1024]);
    // The next large answer: full-size blocks at once, no challenge.
    let before = answered.len();
    let id = sim.request(c, s, Request::get("/big2"));
    sim.run(sim.elapsed_plus(Duration::from_secs(60)));
    assert!(response_of(&sim, c, id).payload == body(3000));
    let answered = answers(&sim, c, s);
    let later: Vec<(Code, usize)> = answered[before..]
        .iter()
        .map(|(_, _, m)| (m.code, block_of(m).unwrap().size()))
        .collect();
    assert_eq!(later, [(Code::CONTENT, 1024); 3]);
    assert_eq!(
        *runs.borrow(),
        [
            ("/big".to_string(), false),
            ("/big".to_string(), true),
            ("/big2".to_string(), false)
        ]
    );
}

// ---- d. forged and stale Echo values -----------------------------------------------------

/// The Echo value of an answer.
fn echo_of(answer: &[Vec<u8>]) -> Vec<u8> {
    answer
        .iter()
        .find_map(|d| {
            let m = Message::decode(d).unwrap();
            m.options.get(OptionNumber::ECHO).map(<[u8]>::to_vec)
        })
        .expect("an answer with an Echo value")
}

#[test]
fn forged_and_stale_echo_values_are_removed_and_verify_nothing() {
    let mut s = Server::new(Config::default(), App::Fresh);
    let (v, other) = (victim(1), victim(2));
    let token = [1, 2, 3, 4];
    let ask = |mid: u16, echo: Option<&[u8]>| {
        let extra: Vec<(OptionNumber, Vec<u8>)> = echo
            .map(|e| (OptionNumber::ECHO, e.to_vec()))
            .into_iter()
            .collect();
        datagram(Type::Con, mid, &token, "/fresh", &extra)
    };
    let (answer, seen) = s.feed(v, &ask(1, None), false);
    assert!(!seen[0].is_fresh());
    let good = echo_of(&answer);
    assert_eq!(good.len(), 12);
    let mut forged: Vec<(String, SocketAddr, Vec<u8>)> = Vec::new();
    for i in 0..good.len() {
        for bit in [0x01, 0x80] {
            let mut f = good.clone();
            f[i] ^= bit;
            forged.push((format!("byte {i} ^ {bit:#x}"), v, f));
        }
    }
    forged.push(("another remote's".into(), other, good.clone()));
    forged.push(("too short".into(), v, good[..11].to_vec()));
    forged.push(("too long".into(), v, [&good[..], &[0]].concat()));
    forged.push(("zeros".into(), v, vec![0; 12]));
    forged.push(("empty".into(), v, Vec::new()));
    let mut mid = 10;
    for (what, from, value) in &forged {
        mid += 1;
        let (answer, seen) = s.feed(*from, &ask(mid, Some(value)), false);
        assert_eq!(seen.len(), 1, "{what}");
        assert!(!seen[0].is_fresh(), "{what}");
        assert_eq!(seen[0].options.get(OptionNumber::ECHO), None, "{what}");
        // Challenged again, with a new value.
        let m = Message::decode(&answer[0]).unwrap();
        assert_eq!(m.code, Code::UNAUTHORIZED, "{what}");
        assert_eq!(s.ep.stats().verified_remotes, 0, "{what}");
    }
    // Stale: older than echo_lifetime (30 s) in virtual time.
    s.now += Duration::from_secs(31);
    let (_, seen) = s.feed(v, &ask(100, Some(&good)), false);
    assert!(!seen[0].is_fresh(), "stale");
    assert_eq!(s.ep.stats().verified_remotes, 0, "stale");
    // The control: a value just given, from its remote, within its lifetime.
    let (answer, _) = s.feed(v, &ask(101, None), false);
    let fresh = echo_of(&answer);
    s.now += Duration::from_secs(29);
    let (answer, seen) = s.feed(v, &ask(102, Some(&fresh)), false);
    assert!(seen[0].is_fresh());
    assert_eq!(seen[0].options.get(OptionNumber::ECHO), Some(&fresh[..]));
    assert_eq!(Message::decode(&answer[0]).unwrap().code, Code::CHANGED);
    assert_eq!(s.ep.stats().verified_remotes, 1);
}

/// A forged Echo value does not lift the limit either; a good one does.
#[test]
fn only_a_good_echo_value_lifts_the_limit() {
    let mut s = Server::new(Config::default(), App::Content(600));
    let v = victim(3);
    let token = [9, 9];
    let get = |mid: u16, echo: Option<&[u8]>| {
        let extra: Vec<(OptionNumber, Vec<u8>)> = echo
            .map(|e| (OptionNumber::ECHO, e.to_vec()))
            .into_iter()
            .collect();
        datagram(Type::Con, mid, &token, "/doc", &extra)
    };
    let request = get(1, None);
    let (answer, _) = s.feed(v, &request, false);
    within_limit("first", &request, &answer);
    let good = echo_of(&answer);
    let mut forged = good.clone();
    forged[5] ^= 0x10;
    let request = get(2, Some(&forged));
    let (answer, _) = s.feed(v, &request, false);
    within_limit("forged", &request, &answer);
    let request = get(3, Some(&good));
    let (answer, seen) = s.feed(v, &request, false);
    assert!(seen[0].is_fresh());
    let m = Message::decode(&answer[0]).unwrap();
    assert_eq!(
        (m.code, m.payload.len()),
        (Code::CONTENT, 600),
        "whole once verified"
    );
    assert!(block_of(&m).is_none());
}

// ---- e. the client repeats once ----------------------------------------------------------

#[test]
fn a_client_repeats_a_challenged_request_only_once() {
    for non in [false, true] {
        let mut sim = Sim::new(30, Link::perfect());
        let c = sim.add(Config::default().with_seed(1), Answer::Never);
        let s = sim.add(
            Config::default().with_seed(2),
            Answer::After(Duration::ZERO),
        );
        let runs = Rc::new(RefCell::new(Vec::new()));
        let r2 = runs.clone();
        sim.nodes[s].handler = Some(Box::new(move |req: &Request| {
            r2.borrow_mut().push(req.is_fresh());
            Response::echo_challenge()
        }));
        let mut request = Request::put("/always", "x");
        if non {
            request = request.non_confirmable();
        }
        let id = sim.request(c, s, request);
        sim.run(Duration::from_secs(300));
        let r = response_of(&sim, c, id);
        assert_eq!(r.code, Code::UNAUTHORIZED, "non {non}");
        assert!(r.options.contains(OptionNumber::ECHO));
        assert_eq!(*runs.borrow(), [false, true], "non {non}");
        assert_eq!(requests(&sim, c, s).len(), 2, "non {non}");
        assert_eq!(sim.sent(s, c).len(), 2, "non {non}");
        assert_eq!(sim.sent(c, s).len(), 2, "non {non}");
        let cs = sim.nodes[c].ep.stats();
        assert_eq!(cs.open_requests, 0, "{cs:?}");
    }
}

// ---- f. observations ---------------------------------------------------------------------

/// A body of `n` bytes that starts with the number `k`.
fn numbered(k: u32, n: usize) -> Vec<u8> {
    let mut b = body(n);
    b[..4].copy_from_slice(&k.to_be_bytes());
    b
}

/// A registration whose first answer (2000 bytes) is too large for the unverified client: cut
/// into small blocks (with an Echo value when the request leaves room for one); the observation
/// works, its large notifications included (their later blocks come
/// from the notification's own cached representation, and when one is too large for the
/// unverified client the fetch follows the 4.01 + Echo it gets). Without the limit, as the
/// control.
#[test]
fn a_registration_too_large_for_an_unverified_client_still_observes() {
    let long = "/sensors/observable/temperature-in-the-living-room";
    for (path, with_echo, limited) in [
        (long, true, false),
        (long, true, true),
        ("/obs", false, true),
    ] {
        let mut sim = Sim::new(40, Link::perfect());
        let c = sim.add(Config::default().with_seed(1), Answer::Never);
        let server = Config {
            amplification_mitigation: limited,
            ..Config::default().with_seed(2)
        };
        let s = sim.add(server, Answer::After(Duration::ZERO));
        let runs = Rc::new(RefCell::new(0u32));
        let r2 = runs.clone();
        sim.nodes[s].handler = Some(Box::new(move |_req: &Request| {
            *r2.borrow_mut() += 1;
            let mut r = Response::new(Code::CONTENT).with_payload(numbered(*r2.borrow(), 2000));
            r.options.set_uint(OptionNumber::OBSERVE, 0);
            r
        }));
        let id = sim.request(c, s, Request::get(path).observe());
        sim.run(Duration::from_secs(10));
        let (q, a, first) = &answers(&sim, c, s)[0];
        if limited {
            // Not cut (its observer would get every later notification in full): 4.01 with
            // Echo, which the client repeats; then it registers.
            assert!(*a <= FACTOR * q, "{path}: {a} bytes in answer to {q}");
            assert_eq!(first.code, Code::UNAUTHORIZED, "{path}");
            assert!(first.options.contains(OptionNumber::ECHO), "{path}");
            let _ = with_echo;
        }
        assert_eq!(sim.nodes[s].ep.stats().observers, 1, "{path}");
        for k in 2..=3 {
            let now = sim.now;
            assert_eq!(sim.nodes[s].ep.notify(now, path), 1, "{path}");
            sim.run(sim.elapsed_plus(Duration::from_secs(10)));
            let notes = sim.nodes[c].notifications.get(&id).map_or(0, Vec::len);
            assert_eq!(notes, k, "{path}: notification {k}");
        }
        // The handler ran once more when limited: for the challenged registration.
        let first_run = if limited { 2 } else { 1 };
        for (k, n) in sim.nodes[c].notifications[&id].iter().enumerate() {
            let number = first_run + k as u32;
            assert!(
                n.payload == numbered(number, 2000),
                "{path}: notification {number}"
            );
        }
        assert_eq!(sim.nodes[s].ep.stats().observers, 1, "{path}");
        assert!(
            sim.nodes[c].outcomes.is_empty(),
            "{:?}",
            sim.nodes[c].outcomes
        );
    }
}

#[test]
fn a_challenged_registration_leaves_no_observer_and_observes_after_the_retry() {
    let mut sim = Sim::new(41, Link::perfect());
    let c = sim.add(Config::default().with_seed(1), Answer::Never);
    let s = sim.add(
        Config::default().with_seed(2),
        Answer::After(Duration::ZERO),
    );
    let runs = Rc::new(RefCell::new(0u32));
    let r2 = runs.clone();
    sim.nodes[s].handler = Some(Box::new(move |req: &Request| {
        *r2.borrow_mut() += 1;
        let mut r = App::Bulky(10).answer(req);
        r.payload = numbered(*r2.borrow(), 10);
        r.options.set_uint(OptionNumber::OBSERVE, 0);
        r
    }));
    let id = sim.request(c, s, Request::get("/obs").observe());
    sim.run(Duration::from_secs(10));
    let answered = answers(&sim, c, s);
    assert_eq!(answered[0].2.code, Code::UNAUTHORIZED);
    assert_eq!(answered[1].2.code, Code::CONTENT);
    assert_eq!(sim.nodes[s].ep.stats().observers, 1, "only the retry's");
    assert_eq!(sim.nodes[s].ep.stats().verified_remotes, 1);
    let now = sim.now;
    assert_eq!(sim.nodes[s].ep.notify(now, "/obs"), 1);
    sim.run(sim.elapsed_plus(Duration::from_secs(10)));
    let notes = &sim.nodes[c].notifications[&id];
    let numbers: Vec<u8> = notes.iter().map(|n| n.payload[3]).collect();
    assert_eq!(
        numbers,
        [2, 3],
        "the challenged run (1) was never a notification"
    );
    assert_eq!(sim.nodes[s].ep.stats().observers, 1);
    // Cancelled: the server forgets it at the next notification (Reset).
    let now = sim.now;
    sim.nodes[c].ep.cancel(now, id);
    sim.nodes[s].ep.notify(now, "/obs");
    sim.run(sim.elapsed_plus(Duration::from_secs(10)));
    assert_eq!(sim.nodes[s].ep.stats().observers, 0);
}

#[test]
fn a_spoofed_registration_that_is_challenged_registers_nobody() {
    let mut s = Server::new(Config::default(), App::Bulky(10));
    s.observable = true;
    for i in 0..50 {
        let request = datagram(
            Type::Con,
            i as u16,
            &[i as u8, 1],
            "/obs",
            &[(OptionNumber::OBSERVE, Vec::new())],
        );
        let (answer, seen) = s.exchange(victim(100 + i), &request, i % 2 == 1);
        assert_eq!(seen.len(), 1);
        let msgs = within_limit("registration", &request, &answer);
        assert!(msgs.iter().any(|m| m.code == Code::UNAUTHORIZED));
        assert_eq!(s.ep.stats().observers, 0, "registration {i}");
    }
}

// ---- g. a flood of spoofed requests ------------------------------------------------------

/// 100 000 requests from as many spoofed remotes: every answer within the limit, and the
/// endpoint's state bounded by its configuration. Every other remote returns the Echo value it
/// was given (an attacker that receives at many addresses), so the verified remotes overflow
/// their bound; every tenth request registers an observer.
#[test]
fn a_flood_from_a_hundred_thousand_spoofed_remotes_leaves_bounded_state() {
    const REMOTES: u32 = 100_000;
    let config = Config {
        max_verified_remotes: 1000,
        max_idle_remotes: 1000,
        observer_memory: 64 << 10,
        dedup_memory: 8 << 20,
        dedup_memory_per_remote: 64 << 10,
        ..Config::default().with_seed(7)
    };
    let mut s = Server::new(config.clone(), App::Content(600));
    let mut max_verified = 0;
    for i in 0..REMOTES {
        s.now += Duration::from_micros(500);
        let from = victim(i);
        let token = i.to_be_bytes();
        let observe: Vec<(OptionNumber, Vec<u8>)> = if i % 10 == 0 {
            vec![(OptionNumber::OBSERVE, Vec::new())]
        } else {
            Vec::new()
        };
        s.observable = i % 10 == 0;
        let request = datagram(Type::Con, i as u16, &token, "/.well-known/core", &observe);
        let (answer, seen) = s.feed(from, &request, false);
        assert_eq!(seen.len(), 1);
        within_limit(&format!("request {i}"), &request, &answer);
        if i % 2 == 0 {
            let echo = echo_of(&answer);
            // A registration repeats its Observe with the Echo (it was challenged, not
            // registered: RFC 9175 §2.4).
            let mut options = observe.clone();
            options.push((OptionNumber::ECHO, echo));
            let again = datagram(
                Type::Con,
                i as u16 ^ 0x8000,
                &token,
                "/.well-known/core",
                &options,
            );
            let (answer, seen) = s.feed(from, &again, false);
            assert!(seen[0].is_fresh(), "request {i}");
            // Verified: the whole document at once.
            let m = Message::decode(&answer[0]).unwrap();
            assert_eq!(m.payload.len(), 600, "request {i}");
        }
        let st = s.ep.stats();
        max_verified = max_verified.max(st.verified_remotes);
        if i % 1000 == 999 {
            assert!(st.verified_remotes <= 1000, "{st:?}");
            assert!(st.idle_remotes <= 1000, "{st:?}");
            assert!(st.observer_bytes <= 64 << 10, "{st:?}");
            assert!(st.dedup_bytes <= 8 << 20, "{st:?}");
            assert!(st.cached_representations <= config.block_cache, "{st:?}");
            assert_eq!((st.pending_incoming, st.queued_transmits), (0, 0), "{st:?}");
            assert_eq!(
                (st.open_requests, st.uploads, st.transfers),
                (0, 0, 0),
                "{st:?}"
            );
            assert!(st.timers <= 2 * (st.remotes + 1) + 1024 + 10, "{st:?}");
        }
    }
    assert_eq!(max_verified, 1000, "the bound was reached and held");
    let st = s.ep.stats();
    assert!(st.observers > 0, "{st:?}");
}
