//! OSCORE (RFC 8613) against aiocoap on loopback, both ways, with the security contexts in
//! aiocoap's directory format (`tests/peers/oscore-ctx/`, copied to a temporary directory
//! per test because both sides write `sequence.json` into them):
//!
//! - aiocoap's client (`tests/peers/oscore_client.py`) against our server built with
//!   `Builder::oscore_dir` and `require_oscore`: GET, PUT, block-wise POST, Observe, a replayed
//!   request refused (`tests/peers/oscore_replay.py`), an unprotected request refused, and a
//!   restart of our server recovered with Echo (RFC 8613 Appendix B.1.2);
//! - our client against an aiocoap server whose site is wrapped for OSCORE
//!   (`tests/peers/oscore_server.py`): GET, PUT, a block-wise GET, Observe, a resource that
//!   asks for freshness with an inner Echo, a restarted server, and aiocoap's client
//!   continuing from the sequence number our client persisted in the same directory.
//!
//! Without aiocoap's OSCORE support (`python3 -m pip install 'aiocoap[oscore]'`) these tests
//! say they are skipped and pass, unless `COAPIO_REQUIRE_PEERS=1`, as CI sets it.
#![cfg(feature = "oscore")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coapio::message::Code;
use coapio::proto::Response;
use coapio::server::get;
use coapio::Endpoint;

use common::{example_site, free_port, text, tick, Running};
use peers::{run, Proc};

/// The Python interpreter that has aiocoap with OSCORE, if there is one.
fn python() -> Option<PathBuf> {
    peers::python_with(
        "aiocoap.oscore, cbor2, cryptography",
        "python3 -m pip install 'aiocoap[oscore]'",
    )
}

fn peer(script: &str) -> String {
    format!("{}/tests/peers/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// A fresh copy of the sample context directories (`client/`, `server/`), removed when
/// dropped.
struct Contexts(PathBuf);

impl Contexts {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "coapio-oscore-{name}-{}-{}",
            std::process::id(),
            free_port("127.0.0.1")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for side in ["client", "server"] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/peers/oscore-ctx")
                .join(side);
            std::fs::create_dir_all(dir.join(side)).unwrap();
            for f in ["settings.json", "secret.json"] {
                std::fs::copy(from.join(f), dir.join(side).join(f)).unwrap();
            }
        }
        Self(dir)
    }

    fn side(&self, side: &str) -> String {
        self.0.join(side).display().to_string()
    }
}

impl Drop for Contexts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our server on 127.0.0.1 that serves only OSCORE-protected requests, with the context in
/// `dir`: the example site and an observable `/clock` ticking `ticks` times.
fn our_server(dir: &str, ticks: usize) -> (Running, u16, std::thread::JoinHandle<()>) {
    let counter = Arc::new(AtomicU32::new(0));
    let c = counter.clone();
    let site = example_site().resource(
        "/clock",
        get(move |_req| {
            let n = c.load(Ordering::SeqCst);
            async move { Response::content(format!("tick {n}")) }
        })
        .obs(),
    );
    let built = Endpoint::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .site(site)
        .oscore_dir(None, dir)
        .expect("the context directory")
        .require_oscore()
        .build()
        .expect("server");
    let running = Running::spawn(built);
    let port = running.port();
    let ticker = tick(running.ep.clone(), counter, ticks);
    (running, port, ticker)
}

/// Runs aiocoap's OSCORE client; returns (exit status success, stdout).
fn aiocoap_client(python: &Path, ctx: &str, args: &[&str]) -> (bool, String) {
    let mut p = Proc::spawn(
        Command::new(python)
            .arg(peer("oscore_client.py"))
            .arg(ctx)
            .args(args),
    );
    let ok = p.finish(Duration::from_secs(30)).success();
    let out = p.stdout();
    eprintln!("aiocoap client {args:?}: {out}{}", p.stderr());
    (ok, out)
}

#[test]
fn aiocoap_client_against_our_oscore_server() {
    let Some(python) = python() else { return };
    let ctx = Contexts::new("ours");
    let (server, port, ticker) = our_server(&ctx.side("server"), 30);
    let client = ctx.side("client");
    let uri = |path: &str| format!("coap://127.0.0.1:{port}{path}");

    let (ok, out) = aiocoap_client(&python, &client, &["GET", &uri("/hello")]);
    assert!(ok && out.starts_with("2.05 Hello, world!"), "{out}");
    let (ok, out) = aiocoap_client(&python, &client, &["PUT", &uri("/echo"), "sealed"]);
    assert!(ok && out.starts_with("2.04 sealed"), "{out}");
    // Block-wise inside OSCORE both ways: 3000 bytes up, the same back.
    let big = "0123456789".repeat(300);
    let (ok, out) = aiocoap_client(&python, &client, &["POST", &uri("/echo"), &big]);
    assert!(ok && out.trim_end() == format!("2.04 {big}"), "{out}");
    // Observe: the registration's answer and notifications, each verified.
    let (ok, out) = aiocoap_client(&python, &client, &["GET", &uri("/clock"), "--observe", "3"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(ok && lines.len() == 3, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("2.05 ") && l.contains("tick")),
        "{out}"
    );

    // A protected request sent again with a new message ID: refused by the replay window.
    let mut replay = Proc::spawn(Command::new(&python).arg(peer("oscore_replay.py")).args([
        client.as_str(),
        "127.0.0.1",
        &port.to_string(),
        "hello",
    ]));
    replay.finish(Duration::from_secs(30));
    let out = replay.stdout();
    assert!(
        out.contains("first 2.05 Hello, world!"),
        "{out}{}",
        replay.stderr()
    );
    assert!(
        out.contains("4.01 Replay detected"),
        "{out}{}",
        replay.stderr()
    );

    // Unprotected: 4.01, and nothing served.
    let plain = run(async {
        let (c, _d) = Endpoint::client().unwrap();
        c.get(&uri("/hello")).await
    })
    .expect("an answer");
    assert_eq!(
        (plain.code, text(&plain).as_str()),
        (Code::UNAUTHORIZED, "OSCORE required")
    );
    ticker.join().unwrap();
    server.stop();

    // Our server restarts from the same directory: its replay window is unknown, so the
    // next request is answered with a protected 4.01 + Echo, which aiocoap repeats.
    let (server, port, ticker) = our_server(&ctx.side("server"), 0);
    let (ok, out) = aiocoap_client(
        &python,
        &client,
        &["GET", &format!("coap://127.0.0.1:{port}/hello")],
    );
    assert!(ok && out.starts_with("2.05 Hello, world!"), "{out}");
    ticker.join().unwrap();
    server.stop();
}

/// aiocoap's OSCORE server on 127.0.0.1 with the server context of `ctx`.
fn aiocoap_server(python: &Path, ctx: &Contexts) -> (Proc, u16) {
    let port = free_port("127.0.0.1");
    let p = Proc::spawn(Command::new(python).arg(peer("oscore_server.py")).args([
        "127.0.0.1",
        &port.to_string(),
        &ctx.side("server"),
    ]));
    assert!(
        p.wait_for_output(Duration::from_secs(30), |o| o.contains("ready")),
        "the aiocoap server did not start: {}{}",
        p.stdout(),
        p.stderr()
    );
    (p, port)
}

#[test]
fn our_client_against_an_aiocoap_oscore_server() {
    let Some(python) = python() else { return };
    let ctx = Contexts::new("theirs");
    let (mut server, port) = aiocoap_server(&python, &ctx);
    let uri = |path: &str| format!("coap://127.0.0.1:{port}{path}");
    let build = || {
        Endpoint::builder()
            .oscore_dir(
                Some(&format!("coap://127.0.0.1:{port}/*")),
                ctx.side("client"),
            )
            .expect("the context directory")
            .build()
            .expect("client")
    };
    {
        let (client, _driver) = build();
        run(async {
            let r = client.get(&uri("/hello")).await.expect("GET");
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CONTENT, "Hello, OSCORE")
            );
            let r = client
                .put(&uri("/store"), "kept secret")
                .await
                .expect("PUT");
            assert!(r.code.is_success(), "{}", r.code);
            let r = client.get(&uri("/store")).await.expect("GET");
            assert_eq!(text(&r), "kept secret");
            // 3000 bytes: inner block-wise.
            let r = client.get(&uri("/big")).await.expect("GET /big");
            let expected: String = (0..500).map(|i| format!("[{i:04}]")).collect();
            assert_eq!(text(&r), expected);
            // A resource that asks for freshness with a protected 4.01 + Echo: repeated
            // with the Echo, transparently.
            let r = client.get(&uri("/fresh")).await.expect("GET /fresh");
            assert!(r.code.is_success(), "{} {}", r.code, text(&r));
        });
        // Observe: three notifications, in order.
        let got = run(async {
            use futures::StreamExt;
            client
                .observe(&uri("/obs"))
                .take(3)
                .collect::<Vec<_>>()
                .await
        });
        let bodies: Vec<String> = got
            .into_iter()
            .map(|r| text(&r.expect("a notification")))
            .collect();
        assert_eq!(bodies.len(), 3, "{bodies:?}");
        assert!(bodies.iter().all(|b| b.starts_with("count ")), "{bodies:?}");
    }
    // aiocoap's client goes on with the same client directory: it must continue from the
    // sequence number ours stored, or the server would take its requests for replays.
    let (ok, out) = aiocoap_client(&python, &ctx.side("client"), &["GET", &uri("/hello")]);
    assert!(ok && out.starts_with("2.05 Hello, OSCORE"), "{out}");

    // The server restarts (its replay window is lost): it answers our next request with a
    // protected 4.01 + Echo, which our client repeats.
    drop(server);
    std::thread::sleep(Duration::from_millis(200));
    server = {
        let p = Proc::spawn(Command::new(&python).arg(peer("oscore_server.py")).args([
            "127.0.0.1",
            &port.to_string(),
            &ctx.side("server"),
        ]));
        assert!(p.wait_for_output(Duration::from_secs(30), |o| o.contains("ready")));
        p
    };
    let (client, _driver) = build();
    let r = run(client.get(&uri("/hello"))).expect("GET after the restart");
    assert_eq!(text(&r), "Hello, OSCORE");
    drop(server);
}
