//! Echo (RFC 9175 §2) and the amplification limit on real sockets, on loopback: what a raw
//! UDP socket gets back from our server for a small request; libcoap's `coap-client-notls`
//! (which answers 4.01 + Echo by repeating its request) and aiocoap's plain client (which
//! does not, but follows smaller blocks) against our server; and our client against
//! `tests/peers/echo_server.py`, an aiocoap server that challenges with 4.01 + Echo.
//!
//! Without libcoap (Debian: `libcoap3-bin`) or aiocoap (`python3 -m pip install aiocoap`) the
//! tests that need them say they are skipped and pass, unless `COAPIO_REQUIRE_PEERS=1`, as CI
//! sets it, turns the skip into a failure.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coapio::message::{BlockValue, Code, Message, OptionNumber, Token, Type};
use coapio::proto::{Request, Response};
use coapio::server::{get, Resource, ServerRequest, Site};

use common::{example_site, free_port, text, udp6_client, udp6_server, Running};
use peers::{run, skip_or_fail, Proc};

/// RFC 9175 §2.4: what an unverified remote may get back, as a multiple of what it sent.
const FACTOR: usize = 3;

/// The body of `/large`: 3000 bytes of text.
fn large() -> String {
    (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// What the handler of `/door` saw: whether each request was fresh, and its payload size.
type Seen = Arc<Mutex<Vec<(bool, usize)>>>;

/// The example server's resources, `/large` (GET: 3000 bytes) and `/door`, which takes PUT
/// and POST only when they are fresh (else [`Response::echo_challenge`]) and answers 2.04
/// with the size of the body it got.
fn site(seen: Seen) -> Site {
    let door = move |req: ServerRequest| {
        let seen = seen.clone();
        async move {
            let fresh = req.request.is_fresh();
            seen.lock().unwrap().push((fresh, req.payload().len()));
            if !fresh {
                return Response::echo_challenge();
            }
            Response::new(Code::CHANGED).with_payload(format!("{} bytes", req.payload().len()))
        }
    };
    example_site()
        .resource("/large", get(|_req| async { Response::content(large()) }))
        .resource("/door", Resource::new().put(door.clone()).post(door))
}

/// Our udp6 server on `[::1]` with [`site`]; its port, and what `/door` saw.
fn our_server() -> (Running, u16, Seen) {
    let seen = Seen::default();
    let server = udp6_server("[::1]:0", site(seen.clone()));
    let port = server.port();
    (server, port, seen)
}

// ---- a raw socket --------------------------------------------------------------------------

/// A Confirmable GET of `path` with no token and `block2` (num, szx), as bytes.
fn raw_get(mid: u16, path: &[&str], block2: Option<(u32, u8)>) -> Vec<u8> {
    let mut m = Message::new(Type::Con, Code::GET, mid);
    m.token = Token::from_slice(&[]).unwrap();
    for segment in path {
        m.options.push(OptionNumber::URI_PATH, segment);
    }
    if let Some((num, szx)) = block2 {
        let b = BlockValue::new(num, false, szx).unwrap();
        m.options.push_uint(OptionNumber::BLOCK2, b.to_uint());
    }
    m.to_bytes().unwrap()
}

/// Sends `request` and returns every datagram that comes back within `wait` after the first.
fn ask(sock: &UdpSocket, to: SocketAddr, request: &[u8], wait: Duration) -> Vec<Vec<u8>> {
    sock.send_to(request, to).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        assert_eq!(from, to);
        out.push(buf[..n].to_vec());
        sock.set_read_timeout(Some(wait)).unwrap();
    }
    out
}

#[test]
fn a_raw_21_byte_well_known_core_request_gets_at_most_63_bytes() {
    let (server, port, _) = our_server();
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    let wk = [".well-known", "core"];
    let request = raw_get(0x1001, &wk, None);
    assert_eq!(request.len(), 21, "as coap-client sends it, with no token");
    let got = ask(&sock, to, &request, Duration::from_millis(500));
    let total: usize = got.iter().map(Vec::len).sum();
    assert!(total <= 63, "{total} bytes back for 21: {got:?}");
    assert_eq!(got.len(), 1, "one piggybacked answer, nothing after it");
    let first = Message::decode(&got[0]).unwrap();
    assert_eq!(
        (first.ty, first.code),
        (Type::Ack, Code::CONTENT),
        "{first:?}"
    );
    assert!(first.options.contains(OptionNumber::ECHO), "{first:?}");
    // The rest of the document, block by block, each answer within the limit too.
    let mut doc = first.payload.clone();
    let mut block = BlockValue::from_bytes(first.options.get(OptionNumber::BLOCK2).unwrap())
        .expect("cut into blocks");
    let mut mid = 0x1002;
    while block.more() {
        let request = raw_get(mid, &wk, Some((block.num() + 1, block.szx())));
        mid += 1;
        let got = ask(&sock, to, &request, Duration::from_millis(50));
        let total: usize = got.iter().map(Vec::len).sum();
        assert!(
            total <= FACTOR * request.len(),
            "{total} for {}",
            request.len()
        );
        let m = Message::decode(&got[0]).unwrap();
        assert_eq!(m.code, Code::CONTENT, "{m:?}");
        block = BlockValue::from_bytes(m.options.get(OptionNumber::BLOCK2).unwrap()).unwrap();
        doc.extend_from_slice(&m.payload);
    }
    let doc = String::from_utf8(doc).unwrap();
    assert!(doc.len() > 63, "{doc}");
    // The same document as a client gets it whole.
    let client = udp6_client();
    let whole = run(client
        .ep
        .get(&format!("coap://[::1]:{port}/.well-known/core")))
    .unwrap();
    assert_eq!(doc, text(&whole));
    for link in ["</hello>", "</large>", "</door>"] {
        assert!(doc.contains(link), "{doc}");
    }
    // A bare header (GET /, no token, 4 bytes) gets at most 12 bytes.
    let got = ask(
        &sock,
        to,
        &[0x40, 0x01, 0x20, 0x00],
        Duration::from_millis(300),
    );
    let total: usize = got.iter().map(Vec::len).sum();
    assert!(total <= 12, "{total} bytes back for 4: {got:?}");
    client.stop();
    server.stop();
}

/// A slow resource: an empty ACK, then a separate response; together, and with whatever
/// retransmission of the response the limit allows, within three times the request.
#[test]
fn a_raw_request_for_a_slow_resource_gets_at_most_three_times_its_size() {
    let (server, port, _) = our_server();
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    let mut m = Message::new(Type::Con, Code::GET, 0x2001);
    m.token = Token::from_slice(&[0xca, 0xfe, 0x42]).unwrap();
    m.options.push(OptionNumber::URI_PATH, "slow");
    let request = m.to_bytes().unwrap();
    // Past the first retransmission timeout (2 to 3 s) of the separate response.
    let got = ask(&sock, to, &request, Duration::from_millis(3500));
    let total: usize = got.iter().map(Vec::len).sum();
    assert!(
        total <= FACTOR * request.len(),
        "{total} bytes back for {}: {got:?}",
        request.len()
    );
    let msgs: Vec<Message> = got.iter().map(|d| Message::decode(d).unwrap()).collect();
    assert_eq!(
        (msgs[0].ty, msgs[0].code),
        (Type::Ack, Code::EMPTY),
        "{msgs:?}"
    );
    assert_eq!(
        (msgs[1].ty, msgs[1].code),
        (Type::Con, Code::CONTENT),
        "{msgs:?}"
    );
    assert_eq!(msgs[1].payload, b"sorry for the wait");
    server.stop();
}

// ---- libcoap's client ------------------------------------------------------------------------

const COAP_CLIENT: &str = "coap-client-notls";

fn libcoap_present() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join(COAP_CLIENT).is_file())
    });
    if !found {
        skip_or_fail(&format!(
            "skipped: libcoap ({COAP_CLIENT}) not installed (install with `apt-get install libcoap3-bin`)"
        ));
    }
    found
}

/// What one run of coap-client gave: the codes of the messages it sent and received (in its
/// `-v 7` log, a line `v:1 t:CON c:GET i:7c51 …` after a line that says `sent` or `received`),
/// the payload (`-o`), and the log.
struct ClientRun {
    sent: Vec<String>,
    received: Vec<String>,
    payload: Vec<u8>,
    log: String,
}

fn coap_client(args: &[&str], uri: &str) -> ClientRun {
    static N: AtomicUsize = AtomicUsize::new(0);
    let out: PathBuf = std::env::temp_dir().join(format!(
        "coapio-echo-{}-{}.out",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&out);
    let mut proc = Proc::spawn(
        Command::new(COAP_CLIENT)
            .args(["-B", "10", "-v", "7", "-o"])
            .arg(&out)
            .args(args)
            .arg(uri),
    );
    proc.finish(Duration::from_secs(20));
    let log = format!("{}\n{}", proc.stdout(), proc.stderr());
    let payload = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let (mut sent, mut received) = (Vec::new(), Vec::new());
    let mut incoming = None;
    for line in proc.stdout().lines() {
        if line.contains(": received ") {
            incoming = Some(true);
        } else if line.contains(": sent ") {
            incoming = Some(false);
        } else if let Some(rest) = line.strip_prefix("v:1 t:") {
            let code = rest
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.strip_prefix("c:"))
                .unwrap_or_default()
                .to_string();
            if incoming.take() == Some(true) {
                received.push(code);
            } else {
                sent.push(code);
            }
        }
    }
    ClientRun {
        sent,
        received,
        payload,
        log,
    }
}

#[test]
fn libcoap_client_answers_a_freshness_challenge_from_our_server() {
    if !libcoap_present() {
        return;
    }
    let (server, port, seen) = our_server();
    let uri = format!("coap://[::1]:{port}/door");
    for (size, blockwise) in [(4usize, false), (3000, true)] {
        seen.lock().unwrap().clear();
        let body = "x".repeat(size);
        let r = coap_client(&["-m", "put", "-e", &body], &uri);
        let expected = format!("{size} bytes");
        assert_eq!(String::from_utf8_lossy(&r.payload), expected, "{}", r.log);
        assert!(r.received.iter().any(|c| c == "4.01"), "{}", r.log);
        assert_eq!(
            r.received.last().map(String::as_str),
            Some("2.04"),
            "{}",
            r.log
        );
        // The handler saw the whole body twice: not fresh, then fresh (the last block sent
        // again with the Echo value, for a block-wise upload).
        assert_eq!(
            *seen.lock().unwrap(),
            [(false, size), (true, size)],
            "{}",
            r.log
        );
        let puts = r.sent.iter().filter(|c| *c == "PUT").count();
        if blockwise {
            assert!(puts > 2, "{puts} PUTs:\n{}", r.log);
        } else {
            assert_eq!(puts, 2, "{}", r.log);
        }
    }
    server.stop();
}

#[test]
fn libcoap_client_gets_a_large_resource_whole_from_cut_blocks() {
    if !libcoap_present() {
        return;
    }
    let (server, port, _) = our_server();
    let r = coap_client(&[], &format!("coap://[::1]:{port}/large"));
    assert_eq!(String::from_utf8_lossy(&r.payload), large(), "{}", r.log);
    assert!(
        r.received.iter().all(|c| c == "2.05"),
        "{:?}\n{}",
        r.received,
        r.log
    );
    // Cut: more blocks than 3000 bytes take at the 1024 bytes libcoap asks for.
    assert!(r.received.len() > 3, "{:?}", r.received);
    server.stop();
}

// ---- aiocoap: its client against our server, our client against its challenger ----------

fn aiocoap_present() -> Option<PathBuf> {
    peers::python_with("aiocoap", "python3 -m pip install aiocoap")
}

#[test]
fn aiocoap_client_gets_a_large_resource_whole_from_cut_blocks() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (server, port, _) = our_server();
    let mut proc = Proc::spawn(Command::new(&python).args([
        "-m",
        "aiocoap.cli.client",
        "-vvv",
        "--no-color",
        "--no-pretty-print",
        &format!("coap://[::1]:{port}/large"),
    ]));
    let status = proc.finish(Duration::from_secs(30));
    let log = proc.stderr();
    assert!(status.success(), "{log}");
    assert_eq!(proc.stdout().trim_end(), large(), "{log}");
    let incoming: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Incoming message <aiocoap.Message: "))
        .collect();
    assert!(incoming.iter().all(|l| l.contains("2.05 Content")), "{log}");
    assert!(incoming.len() > 3, "cut into more than 3 blocks:\n{log}");
    server.stop();
}

/// `tests/peers/echo_server.py` on `[::1]` with `args`; returns it once it says it is ready,
/// and its base URI.
fn echo_server(python: &PathBuf, args: &[&str]) -> (Proc, String) {
    let port = free_port("::1");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/echo_server.py");
    let server = Proc::spawn(
        Command::new(python)
            .arg(&script)
            .args(["::1", &port.to_string()])
            .args(args)
            .env("PYTHONUNBUFFERED", "1"),
    );
    let ready = server.wait_for_output(Duration::from_secs(20), |out| {
        out.lines().any(|l| l == "ready")
    });
    assert!(
        ready,
        "the echo server did not get ready:\n{}{}",
        server.stdout(),
        server.stderr()
    );
    (server, format!("coap://[::1]:{port}"))
}

#[test]
fn our_client_answers_the_challenges_of_an_aiocoap_server() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    for echo_len in ["8", "1", "40"] {
        let (server, base) = echo_server(&python, &["--echo-len", echo_len]);
        let client = udp6_client();
        let what = format!("Echo values of {echo_len} bytes");
        run(async {
            let get = |path: &str| client.ep.get(&format!("{base}{path}"));
            let r = get("/fresh").await.unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CONTENT, "fresh"),
                "{what}"
            );
            let r = client
                .ep
                .put(&format!("{base}/fresh"), "put-data")
                .await
                .unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CHANGED, "put-data"),
                "{what}"
            );
            let big = large();
            let r = client
                .ep
                .request(&format!("{base}/fresh"), Request::post("", big.clone()))
                .await
                .unwrap();
            assert_eq!(
                (r.code, text(&r)),
                (Code::CHANGED, big),
                "{what}: block-wise POST"
            );
            let r = get("/verified").await.unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CONTENT, "verified"),
                "{what}"
            );
            // Verified now: no challenge the second time.
            let r = get("/verified").await.unwrap();
            assert_eq!(text(&r), "verified", "{what}");
            let r = get("/stats").await.unwrap();
            assert_eq!(text(&r), "challenges=4 accepted=4", "{what}");
        });
        client.stop();
        drop(server);
    }
}
