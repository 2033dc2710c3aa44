//! DTLS with pre-shared keys against libcoap (`coap-client-openssl`, `coap-client-gnutls`,
//! `coap-server-openssl`): the sans-IO DTLS layer and the protocol core joined by a small
//! loop over one UDP socket on loopback — the facade and the C ABI do not use DTLS yet.
#![cfg(feature = "dtls")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coapio::dtls::{Dtls, DtlsConfig};
use coapio::message::Code;
use coapio::proto::{Config, Endpoint, Event, RecvMeta, Request, Response};
use peers::{skip_or_fail, Proc};

const IDENTITY: &str = "coapio";
const KEY: &str = "sesame-0123456789";

fn have(tool: &str) -> bool {
    if Command::new(tool).arg("-h").output().is_ok() {
        return true;
    }
    skip_or_fail(&format!(
        "skipped: {tool} not installed (install with `apt-get install libcoap3-bin`)"
    ));
    false
}

/// One CoAP-over-DTLS endpoint on a UDP socket, run by a loop on its own thread until
/// `stop` is set: datagrams → DTLS → core → answers → DTLS → datagrams.
struct Node {
    socket: UdpSocket,
    dtls: Dtls,
    ep: Endpoint,
}

impl Node {
    fn new(bind: &str, dtls: DtlsConfig) -> Self {
        let socket = UdpSocket::bind(bind).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Self {
            socket,
            dtls: Dtls::new(dtls).unwrap(),
            ep: Endpoint::new(Config::default().with_seed(7).into()),
        }
    }

    /// One turn of the loop: what arrived, what is due, what is to send. Requests are
    /// answered with `answer`; responses and failures go to `events`.
    fn turn(&mut self, answer: &dyn Fn(&Request) -> Response, events: &mut Vec<Event>) {
        let mut buf = [0u8; 2048];
        let now = Instant::now();
        if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            self.dtls.handle_datagram(now, from, &buf[..n]);
        }
        let now = Instant::now();
        if self.dtls.poll_timeout().is_some_and(|t| t <= now) {
            self.dtls.handle_timeout(now);
        }
        while let Some((from, plain)) = self.dtls.poll_plaintext() {
            self.ep.handle_datagram(now, &RecvMeta::new(from), &plain);
        }
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Request { id, request, .. } => {
                    self.ep.respond(now, id, answer(&request)).unwrap();
                }
                other => events.push(other),
            }
        }
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit(now, &mut out) {
            self.dtls.send(now, t.destination, &out[..t.size]).unwrap();
        }
        while let Some((to, d)) = self.dtls.poll_transmit() {
            let _ = self.socket.send_to(&d, to);
        }
    }
}

fn hello(req: &Request) -> Response {
    Response::content(format!("hello over DTLS {}", req.path()))
}

/// Our DTLS server (the pre-shared key) answering [`hello`] on a thread until `stop` is set:
/// its port, `stop`, and the thread, which gives the node back.
fn serve_hello() -> (u16, Arc<AtomicBool>, std::thread::JoinHandle<Node>) {
    let mut node = Node::new(
        "127.0.0.1:0",
        DtlsConfig::psk_server(|id: &[u8]| (id == IDENTITY.as_bytes()).then(|| KEY.into())),
    );
    let port = node.socket.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let server = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut events = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                node.turn(&hello, &mut events);
            }
            node
        }
    });
    (port, stop, server)
}

#[test]
fn libcoap_clients_get_from_our_dtls_server() {
    for tool in ["coap-client-openssl", "coap-client-gnutls"] {
        if !have(tool) {
            return;
        }
        let (port, stop, server) = serve_hello();
        let mut client = Proc::spawn(Command::new(tool).args([
            "-B",
            "10",
            "-u",
            IDENTITY,
            "-k",
            KEY,
            "-m",
            "get",
            &format!("coaps://127.0.0.1:{port}/dtls/hello"),
        ]));
        let status = client.finish(Duration::from_secs(15));
        stop.store(true, Ordering::SeqCst);
        let node = server.join().unwrap();
        assert!(status.success(), "{tool}: {}", client.stderr());
        assert!(
            client.stdout().contains("hello over DTLS /dtls/hello"),
            "{tool}: {} / {}",
            client.stdout(),
            client.stderr()
        );
        // libcoap's client closes its session (close_notify) as it ends: nothing is left.
        assert_eq!(node.dtls.stats().handshaking, 0, "{tool}");
        // A wrong key gets nothing.
        let mut node = node;
        let stop = Arc::new(AtomicBool::new(false));
        let server = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut events = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    node.turn(&hello, &mut events);
                }
            }
        });
        let mut wrong = Proc::spawn(Command::new(tool).args([
            "-B",
            "3",
            "-u",
            "stranger",
            "-k",
            "not-the-key",
            "-m",
            "get",
            &format!("coaps://127.0.0.1:{port}/x"),
        ]));
        wrong.finish(Duration::from_secs(10));
        stop.store(true, Ordering::SeqCst);
        server.join().unwrap();
        assert!(!wrong.stdout().contains("hello over DTLS"), "{tool}");
    }
}

#[test]
fn our_dtls_client_gets_from_libcoap_servers() {
    for tool in ["coap-server-openssl", "coap-server-gnutls"] {
        if !have(tool) {
            return;
        }
        get_time_from(tool);
    }
}

fn get_time_from(tool: &str) {
    let port = common::free_port("127.0.0.1");
    // libcoap's server listens for DTLS on its port + 1.
    let _server = Proc::spawn(Command::new(tool).args([
        "-A",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-k",
        KEY,
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let server: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let mut node = Node::new("127.0.0.1:0", DtlsConfig::psk_client(IDENTITY, KEY));
    let id = node
        .ep
        .request(Instant::now(), server, Request::get("/time"))
        .unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && events.is_empty() {
        node.turn(&hello, &mut events);
    }
    match events.as_slice() {
        [Event::Response { id: got, response }] => {
            assert_eq!(*got, id);
            assert_eq!(response.code, Code::CONTENT, "{tool}: {response:?}");
        }
        other => panic!("{tool}: {other:?}"),
    }
    assert_eq!(node.dtls.stats().established, 1, "{tool}");
}

/// The Python interpreter that has aiocoap with its DTLS transport (DTLSSocket), if any.
fn aiocoap_dtls() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, aiocoap, DTLSSocket; print(sys.executable)",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn need_aiocoap_dtls() -> Option<String> {
    let py = aiocoap_dtls();
    if py.is_none() {
        skip_or_fail(
            "skipped: aiocoap's DTLS transport not installed (apt-get install autoconf automake \
             libtool, then python3 -m pip install aiocoap DTLSSocket)",
        );
    }
    py
}

#[test]
fn aiocoap_client_gets_from_our_dtls_server() {
    let Some(python) = need_aiocoap_dtls() else {
        return;
    };
    let (port, stop, server) = serve_hello();
    let dir = std::env::temp_dir().join(format!("coapio-aiocoap-dtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("credentials.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"coaps://127.0.0.1:{port}/*": {{"dtls": {{"psk": {{"ascii": "{KEY}"}}, "client-identity": {{"ascii": "{IDENTITY}"}}}}}}}}"#
        ),
    )
    .unwrap();
    let mut client = Proc::spawn(Command::new(&python).args([
        "-m",
        "aiocoap.cli.client",
        "--credentials",
        creds.to_str().unwrap(),
        &format!("coaps://127.0.0.1:{port}/dtls/hello"),
    ]));
    let status = client.finish(Duration::from_secs(20));
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{}", client.stderr());
    assert!(
        client.stdout().contains("hello over DTLS /dtls/hello"),
        "{} / {}",
        client.stdout(),
        client.stderr()
    );
}

#[test]
fn our_dtls_client_gets_from_aiocoap_server() {
    let Some(python) = need_aiocoap_dtls() else {
        return;
    };
    let port = common::free_port("127.0.0.1");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/aiocoap_dtls_server.py"
    );
    let server = Proc::spawn(Command::new(&python).args([
        script,
        "127.0.0.1",
        &port.to_string(),
        IDENTITY,
        KEY,
    ]));
    assert!(
        server.wait_for_output(Duration::from_secs(10), |o| o.contains("ready")),
        "{}",
        server.stderr()
    );
    // aiocoap's DTLS server listens on the port after the one it was given.
    let target: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let mut node = Node::new("127.0.0.1:0", DtlsConfig::psk_client(IDENTITY, KEY));
    let id = node
        .ep
        .request(Instant::now(), target, Request::get("/hello"))
        .unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && events.is_empty() {
        node.turn(&hello, &mut events);
    }
    match events.as_slice() {
        [Event::Response { id: got, response }] => {
            assert_eq!(*got, id);
            assert_eq!(response.payload, b"Hello from aiocoap over DTLS");
        }
        other => panic!("{other:?} / {}", server.stderr()),
    }
}
