//! Interoperability with aiocoap, the Python reference implementation and this project's
//! origin, on loopback, both ways: aiocoap's command-line client against our server, and our
//! client against a small aiocoap server (`tests/peers/aiocoap_server.py`). GET, PUT, POST and
//! DELETE, Confirmable and Non-confirmable, and separate responses.
//!
//! Without aiocoap (`python3 -m pip install aiocoap`) these tests say they are skipped and
//! pass, unless `COAPIO_REQUIRE_PEERS=1`, as CI sets it, turns the skip into a failure.
//!
//! The client is run as `python -m aiocoap.cli.client` (the `aiocoap-client` program) with the
//! interpreter's real path: a version manager's `python3` or `aiocoap-client` may be a shell
//! script that forks the interpreter, which killing by PID would leave running. With `-vvv`
//! aiocoap logs every message it sends or receives to stderr, as
//! `Sending message <aiocoap.Message: EMPTY to …, empty token, ACK, MID 0x1ddf>` or
//! `Incoming message <aiocoap.Message: 2.05 Content from …, token f7a4, CON, MID 0x2cc6>`;
//! the payload goes to stdout, and an error response makes it exit 1.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use coapio::message::Code;
use coapio::proto::Request;

use common::{free_port, text, udp6_client, Running};
use peers::{
    example_server, last_response, logged, run, separate_response_acked, skip_or_fail, Logged, Proc,
};

// ---- peers: presence ----------------------------------------------------------------------

/// The real path of the Python interpreter that has aiocoap, if there is one.
fn python_with_aiocoap() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let mut probe = Proc::try_spawn(
                Command::new("python3").args(["-c", "import sys, aiocoap; print(sys.executable)"]),
            )
            .ok()?;
            let status = probe.finish(Duration::from_secs(20));
            let path = probe.stdout().trim().to_owned();
            (status.success() && !path.is_empty()).then(|| PathBuf::from(path))
        })
        .clone()
}

/// The interpreter that has aiocoap; if there is none, says the test is skipped (or fails,
/// with `COAPIO_REQUIRE_PEERS=1`).
fn aiocoap_present() -> Option<PathBuf> {
    let python = python_with_aiocoap();
    if python.is_none() {
        skip_or_fail(
            "skipped: aiocoap not installed (install with `python3 -m pip install aiocoap`)",
        );
    }
    python
}

// ---- our side -----------------------------------------------------------------------------

/// Our udp6 server on `[::1]`.
fn our_server() -> (Running, u16) {
    example_server("[::1]:0")
}

// ---- aiocoap's log --------------------------------------------------------------------------

/// The messages in an aiocoap debug log.
fn parse_log(log: &str) -> Vec<Logged> {
    let mut msgs = Vec::new();
    for line in log.lines() {
        let (incoming, rest) =
            if let Some((_, rest)) = line.split_once("Incoming message <aiocoap.Message: ") {
                (true, rest)
            } else if let Some((_, rest)) = line.split_once("Sending message <aiocoap.Message: ") {
                (false, rest)
            } else {
                continue;
            };
        let code = match rest.split_whitespace().next().unwrap_or_default() {
            "EMPTY" => "0.00",
            c => c,
        };
        let ty = ["CON", "NON", "ACK", "RST"]
            .into_iter()
            .find(|t| rest.contains(&format!(", {t}, MID")))
            .unwrap_or("?");
        msgs.push(logged(incoming, ty, code));
    }
    msgs
}

// ---- aiocoap-client against our server ----------------------------------------------------

/// What one run of aiocoap-client gave.
#[derive(Debug)]
struct ClientRun {
    success: bool,
    received: Vec<Logged>,
    sent: Vec<Logged>,
    payload: String,
    log: String,
}

impl ClientRun {
    /// The response: the last message received that is not an empty ACK.
    fn response(&self) -> &Logged {
        last_response(&self.received, "aiocoap-client", &self.log)
    }
}

fn aiocoap_client(python: &PathBuf, args: &[&str], uri: &str) -> ClientRun {
    let mut proc = Proc::spawn(
        Command::new(python)
            .args([
                "-m",
                "aiocoap.cli.client",
                "-vvv",
                "--no-color",
                "--no-pretty-print",
            ])
            .args(args)
            .arg(uri),
    );
    let status = proc.finish(Duration::from_secs(20));
    let log = proc.stderr();
    let (received, sent) = parse_log(&log).into_iter().partition(|m| m.incoming);
    ClientRun {
        success: status.success(),
        received,
        sent,
        payload: proc.stdout(),
        log,
    }
}

/// All four methods from aiocoap-client, Confirmable or Non-confirmable.
fn aiocoap_client_uses_every_method(non: bool) {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (server, port) = our_server();
    let base = format!("coap://[::1]:{port}");
    let flags: &[&'static str] = if non { &["--non"] } else { &[] };
    let reply_type = if non { "NON" } else { "ACK" };
    let with = |more: &[&'static str]| [flags, more].concat();
    let check = |run: &ClientRun, code: &str, payload: &str| {
        assert_eq!(
            run.response(),
            &logged(true, reply_type, code),
            "{}",
            run.log
        );
        assert_eq!(run.payload.trim_end_matches('\n'), payload, "{}", run.log);
        assert!(run.success, "{}", run.log);
    };

    let r = aiocoap_client(&python, &with(&[]), &format!("{base}/hello"));
    check(&r, "2.05", "Hello, world!");
    let r = aiocoap_client(
        &python,
        &with(&["-m", "PUT", "--payload", "put-data"]),
        &format!("{base}/echo"),
    );
    check(&r, "2.04", "put-data");
    let r = aiocoap_client(
        &python,
        &with(&["-m", "POST", "--payload", "post-data"]),
        &format!("{base}/echo"),
    );
    check(&r, "2.04", "post-data");
    let r = aiocoap_client(
        &python,
        &with(&["-m", "PUT", "--payload", "stored"]),
        &format!("{base}/item"),
    );
    check(&r, "2.01", "");
    let r = aiocoap_client(&python, &with(&["-m", "DELETE"]), &format!("{base}/item"));
    check(&r, "2.02", "");
    let r = aiocoap_client(&python, &with(&[]), &format!("{base}/item"));
    assert_eq!(r.response(), &logged(true, reply_type, "4.04"), "{}", r.log);
    assert!(
        !r.success,
        "an error response makes aiocoap-client fail:\n{}",
        r.log
    );
    server.stop();
}

#[test]
fn aiocoap_client_uses_every_method_on_our_server_con() {
    aiocoap_client_uses_every_method(false);
}

#[test]
fn aiocoap_client_uses_every_method_on_our_server_non() {
    aiocoap_client_uses_every_method(true);
}

#[test]
fn aiocoap_client_gets_separate_responses_from_our_server() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (server, port) = our_server();
    let uri = format!("coap://[::1]:{port}/slow");

    let r = aiocoap_client(&python, &[], &uri);
    assert_eq!(
        r.received,
        [logged(true, "ACK", "0.00"), logged(true, "CON", "2.05")],
        "an empty ACK, then the response in a CON:\n{}",
        r.log
    );
    assert_eq!(
        r.sent,
        [logged(false, "CON", "GET"), logged(false, "ACK", "0.00")],
        "aiocoap acknowledges the separate response:\n{}",
        r.log
    );
    assert_eq!(r.payload.trim_end_matches('\n'), "sorry for the wait");

    let r = aiocoap_client(&python, &["--non"], &uri);
    assert_eq!(r.received, [logged(true, "NON", "2.05")], "{}", r.log);
    assert_eq!(r.payload.trim_end_matches('\n'), "sorry for the wait");
    server.stop();
}

#[test]
fn aiocoap_client_sees_our_errors_and_well_known_core() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (server, port) = our_server();
    let base = format!("coap://[::1]:{port}");
    let r = aiocoap_client(&python, &[], &format!("{base}/nothing-here"));
    assert_eq!(r.response(), &logged(true, "ACK", "4.04"), "{}", r.log);
    assert!(!r.success);
    let r = aiocoap_client(&python, &["-m", "DELETE"], &format!("{base}/hello"));
    assert_eq!(r.response(), &logged(true, "ACK", "4.05"), "{}", r.log);
    let r = aiocoap_client(&python, &[], &format!("{base}/.well-known/core"));
    assert_eq!(r.response(), &logged(true, "ACK", "2.05"), "{}", r.log);
    for path in ["</hello>", "</time>", "</slow>", "</echo>"] {
        assert!(
            r.payload.contains(path),
            "{path} missing from {:?}",
            r.payload
        );
    }
    server.stop();
}

// ---- our client against the aiocoap server ------------------------------------------------

/// `tests/peers/aiocoap_server.py` on `[::1]`, with its message log; returns it once it
/// says it is ready.
fn aiocoap_server(python: &PathBuf) -> (Proc, String) {
    let port = free_port("::1");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiocoap_server.py");
    let server = Proc::spawn(
        Command::new(python)
            .arg(&script)
            .args(["::1", &port.to_string(), "-v"])
            .env("PYTHONUNBUFFERED", "1"),
    );
    let ready = server.wait_for_output(Duration::from_secs(20), |out| {
        out.lines().any(|l| l == "ready")
    });
    assert!(
        ready,
        "the aiocoap server did not get ready:\n{}{}",
        server.stdout(),
        server.stderr()
    );
    (server, format!("coap://[::1]:{port}"))
}

#[test]
fn our_client_uses_every_method_on_aiocoap_server_con_and_non() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (server, base) = aiocoap_server(&python);
    let client = udp6_client();
    run(async {
        for confirmable in [true, false] {
            let what = if confirmable { "CON" } else { "NON" };
            let send = |path: &str, req: Request| {
                client.ep.request(
                    &format!("{base}{path}"),
                    if confirmable {
                        req
                    } else {
                        req.non_confirmable()
                    },
                )
            };
            let r = send("/hello", Request::new(Code::GET)).await.unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CONTENT, "Hello from aiocoap"),
                "{what}"
            );
            let r = send("/echo", Request::new(Code::PUT).with_payload("put-data"))
                .await
                .unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CHANGED, "put-data"),
                "{what}"
            );
            let r = send("/echo", Request::new(Code::POST).with_payload("post-data"))
                .await
                .unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CHANGED, "post-data"),
                "{what}"
            );
            let r = send("/item", Request::new(Code::DELETE)).await.unwrap();
            assert_eq!(r.code, Code::DELETED, "{what}");
            let r = send("/nothing-here", Request::new(Code::GET))
                .await
                .unwrap();
            assert_eq!(r.code, Code::NOT_FOUND, "{what}");
            let r = send("/item", Request::new(Code::GET)).await.unwrap();
            assert_eq!(r.code, Code::METHOD_NOT_ALLOWED, "{what}");
        }
    });
    // Every response matched the request's type: ACKs for CON, NON for NON.
    let msgs = parse_log(&server.stderr());
    let sent: Vec<&Logged> = msgs.iter().filter(|m| !m.incoming).collect();
    assert_eq!(sent.len(), 12, "{msgs:?}");
    assert!(
        sent[..6].iter().all(|m| m.ty == "ACK") && sent[6..].iter().all(|m| m.ty == "NON"),
        "{msgs:?}"
    );
    client.stop();
    drop(server);
}

#[test]
fn our_client_gets_separate_responses_from_aiocoap_server() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (server, base) = aiocoap_server(&python);
    let client = udp6_client();
    let start = Instant::now();
    let r = run(client.ep.get(&format!("{base}/slow"))).unwrap();
    assert_eq!(
        (r.code, text(&r).as_str()),
        (Code::CONTENT, "slow and steady")
    );
    assert!(start.elapsed() >= Duration::from_millis(500));
    // The server's log: the empty ACK it sent, the CON response, and our ACK of it.
    let acked = server.wait_for_output(Duration::from_secs(2), |log| {
        separate_response_acked(&parse_log(log))
    });
    assert!(
        acked,
        "expected empty ACK, CON 2.05 and our ACK in the server's log:\n{}",
        server.stderr()
    );

    let r = run(client.ep.request(
        &format!("{base}/slow"),
        Request::new(Code::GET).non_confirmable(),
    ))
    .unwrap();
    assert_eq!(
        (r.code, text(&r).as_str()),
        (Code::CONTENT, "slow and steady")
    );
    let msgs = parse_log(&server.stderr());
    assert_eq!(msgs.last(), Some(&logged(false, "NON", "2.05")), "{msgs:?}");
    client.stop();
    drop(server);
}

// ---- observe (RFC 7641), both ways ----------------------------------------------------------

#[test]
fn our_client_observes_the_aiocoap_server() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    let (_server, base) = aiocoap_server(&python);
    let client = udp6_client();
    let uri = format!("{base}/clock");
    let ticks = common::block_on_within(Duration::from_secs(10), async {
        use futures::StreamExt;
        let mut stream = client.ep.observe(&uri);
        let mut ticks = Vec::new();
        while ticks.len() < 4 {
            match stream.next().await {
                Some(Ok(r)) => {
                    let text = String::from_utf8_lossy(&r.payload).to_string();
                    ticks.push(
                        text.trim_start_matches("tick ")
                            .parse::<u32>()
                            .expect(&text),
                    );
                }
                other => panic!("the observation ended: {other:?}"),
            }
        }
        ticks
    });
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "fresh and in order: {ticks:?}"
    );
    client.stop();
}

#[test]
fn aiocoap_observes_our_server() {
    let Some(python) = aiocoap_present() else {
        return;
    };
    // Notified ten times a second, 50 times.
    let (server, ticker) = common::ticking_clock("[::1]:0", 50);
    let port = server.port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiocoap_observe.py");
    let mut observer = Proc::spawn(
        Command::new(&python)
            .arg(&script)
            .args([&format!("coap://[::1]:{port}/clock"), "4"])
            .env("PYTHONWARNINGS", "ignore"),
    );
    let status = observer.finish(Duration::from_secs(15));
    let out = observer.stdout();
    assert!(
        status.success(),
        "aiocoap's observer failed:\n{out}{}",
        observer.stderr()
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let seqs: Vec<u32> = lines
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "increasing Observe numbers: {out}"
    );
    assert!(lines.iter().all(|l| l.starts_with("2.05 Content")));
    let _ = ticker.join();
    server.stop();
}
