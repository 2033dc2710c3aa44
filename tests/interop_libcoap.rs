//! Interoperability with libcoap, the C reference implementation, on loopback, both ways:
//! libcoap's `coap-client-notls` against our server, and our client against
//! `coap-server-notls`. GET, PUT, POST and DELETE, Confirmable and Non-confirmable, and
//! separate responses (an empty ACK first, the answer later in a CON that is acknowledged).
//!
//! Without libcoap (Debian: `libcoap3-bin`) these tests say they are skipped and pass, unless
//! `COAPIO_REQUIRE_PEERS=1`, as CI sets it, turns the skip into a failure.
//!
//! What the libcoap tools print with `-v 7`: every message sent or received, as a line
//! `v:1 t:CON c:GET i:7c51 {01} [ Uri-Path:time ] :: 'payload'`, after a log line that says
//! `sent N bytes` or `received N bytes`. The debug log goes to stdout, the response code of an
//! error response to stderr (`4.04 Not Found`); with `-o FILE` the payload goes to FILE.
//! coap-client exits 0 whatever happened, so its output is what is checked.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coapio::message::Code;
use coapio::net::TransportErrorKind;
use coapio::proto::Request;
use coapio::{Endpoint, Error};

use common::{free_port, text, udp6_client, Running};
use peers::{
    example_server, last_response, logged, run, separate_response_acked, skip_or_fail, Logged, Proc,
};

const CLIENT: &str = "coap-client-notls";
const SERVER: &str = "coap-server-notls";

// ---- peers: presence ----------------------------------------------------------------------

fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Whether libcoap's tools are installed; if not, says the test is skipped (or fails, with
/// `COAPIO_REQUIRE_PEERS=1`).
fn libcoap_present() -> bool {
    let missing: Vec<&str> = [CLIENT, SERVER]
        .into_iter()
        .filter(|b| !in_path(b))
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!(
        "skipped: libcoap ({}) not installed (install with `apt-get install libcoap3-bin`)",
        missing.join(", ")
    ));
    false
}

// ---- our side -----------------------------------------------------------------------------

/// Our udp6 server, dual-stack on `[::]` (so both `[::1]` and `127.0.0.1` reach it).
fn our_server() -> (Running, u16) {
    example_server("[::]:0")
}

// ---- coap-client against our server ------------------------------------------------------

/// The messages in a libcoap `-v 7` log, each marked sent or received by the log line before.
fn parse_log(log: &str) -> Vec<Logged> {
    let mut incoming = None;
    let mut msgs = Vec::new();
    for line in log.lines() {
        if line.contains(": received ") {
            incoming = Some(true);
        } else if line.contains(": sent ") {
            incoming = Some(false);
        } else if let Some(rest) = line.strip_prefix("v:1 t:") {
            let mut words = rest.split_whitespace();
            let ty = words.next().unwrap_or_default();
            let code = words
                .next()
                .and_then(|c| c.strip_prefix("c:"))
                .unwrap_or_default();
            msgs.push(Logged {
                incoming: incoming.take().unwrap_or(false),
                ty: ty.into(),
                code: code.into(),
            });
        }
    }
    msgs
}

/// What one run of coap-client gave.
#[derive(Debug)]
struct ClientRun {
    /// The messages it received, in order.
    received: Vec<Logged>,
    /// The messages it sent, in order.
    sent: Vec<Logged>,
    payload: Vec<u8>,
    log: String,
}

impl ClientRun {
    fn payload(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The response: the last message received that is not an empty ACK.
    fn response(&self) -> &Logged {
        last_response(&self.received, "coap-client", &self.log)
    }
}

fn coap_client(args: &[&str], uri: &str) -> ClientRun {
    static N: AtomicUsize = AtomicUsize::new(0);
    let out: PathBuf = std::env::temp_dir().join(format!(
        "coapio-libcoap-{}-{}.out",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&out);
    let mut proc = Proc::spawn(
        Command::new(CLIENT)
            .args(["-B", "5", "-v", "7", "-o"])
            .arg(&out)
            .args(args)
            .arg(uri),
    );
    proc.finish(Duration::from_secs(10));
    let log = format!("{}\n{}", proc.stdout(), proc.stderr());
    let payload = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let msgs = parse_log(&proc.stdout());
    let (received, sent) = msgs.into_iter().partition(|m| m.incoming);
    ClientRun {
        received,
        sent,
        payload,
        log,
    }
}

#[test]
fn libcoap_client_uses_every_method_on_our_server_con_and_non() {
    if !libcoap_present() {
        return;
    }
    let (server, port) = our_server();
    let base = format!("coap://[::1]:{port}");
    for non in [false, true] {
        let flags: &[&str] = if non { &["-N"] } else { &[] };
        let reply_type = if non { "NON" } else { "ACK" };
        let with = |more: &[&'static str]| [flags, more].concat();
        let check = |run: &ClientRun, code: &str, payload: Option<&str>| {
            assert_eq!(
                run.response(),
                &logged(true, reply_type, code),
                "{}",
                run.log
            );
            if let Some(p) = payload {
                assert_eq!(run.payload(), p, "{}", run.log);
            }
        };

        let r = coap_client(&with(&[]), &format!("{base}/hello"));
        check(&r, "2.05", Some("Hello, world!"));
        let r = coap_client(
            &with(&["-m", "put", "-e", "put-data"]),
            &format!("{base}/echo"),
        );
        check(&r, "2.04", Some("put-data"));
        let r = coap_client(
            &with(&["-m", "post", "-e", "post-data"]),
            &format!("{base}/echo"),
        );
        check(&r, "2.04", Some("post-data"));

        let item = format!("{base}/item");
        let r = coap_client(&with(&["-m", "put", "-e", reply_type]), &item);
        check(&r, "2.01", None);
        let r = coap_client(&with(&[]), &item);
        check(&r, "2.05", Some(reply_type));
        let r = coap_client(&with(&["-m", "delete"]), &item);
        check(&r, "2.02", None);
        let r = coap_client(&with(&[]), &item);
        check(&r, "4.04", None);

        let r = coap_client(&with(&[]), &format!("{base}/nothing-here"));
        check(&r, "4.04", None);
        assert!(r.log.contains("4.04"), "{}", r.log);
        let r = coap_client(&with(&["-m", "delete"]), &format!("{base}/hello"));
        check(&r, "4.05", None);
    }
    server.stop();
}

#[test]
fn libcoap_client_gets_separate_responses_from_our_server() {
    if !libcoap_present() {
        return;
    }
    let (server, port) = our_server();
    let uri = format!("coap://[::1]:{port}/slow");

    let r = coap_client(&[], &uri);
    assert_eq!(
        r.received,
        [logged(true, "ACK", "0.00"), logged(true, "CON", "2.05")],
        "an empty ACK, then the response in a CON:\n{}",
        r.log
    );
    assert_eq!(
        r.sent,
        [logged(false, "CON", "GET"), logged(false, "ACK", "0.00")],
        "coap-client acknowledges the separate response:\n{}",
        r.log
    );
    assert_eq!(r.payload(), "sorry for the wait");

    let r = coap_client(&["-N"], &uri);
    assert_eq!(r.response(), &logged(true, "NON", "2.05"), "{}", r.log);
    assert!(
        !r.received.iter().any(|m| m.ty == "ACK"),
        "no ACK for a NON request:\n{}",
        r.log
    );
    assert_eq!(r.payload(), "sorry for the wait");
    server.stop();
}

#[test]
fn libcoap_client_reads_well_known_core_over_ipv4() {
    if !libcoap_present() {
        return;
    }
    let (server, port) = our_server();
    let r = coap_client(&[], &format!("coap://127.0.0.1:{port}/.well-known/core"));
    assert_eq!(r.response(), &logged(true, "ACK", "2.05"), "{}", r.log);
    let links = r.payload();
    for path in ["</hello>", "</time>", "</slow>", "</echo>"] {
        assert!(links.contains(path), "{path} missing from {links:?}");
    }
    let r = coap_client(&["-N"], &format!("coap://127.0.0.1:{port}/hello"));
    assert_eq!(r.response(), &logged(true, "NON", "2.05"), "{}", r.log);
    assert_eq!(r.payload(), "Hello, world!");
    server.stop();
}

// ---- our client against coap-server --------------------------------------------------------

/// coap-server on `ip` (`-d` lets PUT and POST create resources, and DELETE remove them),
/// with its log at debug level; returns it once it answers.
fn libcoap_server(client: &Endpoint, ip: &str) -> (Proc, String) {
    let port = free_port(ip);
    let server = Proc::spawn(Command::new(SERVER).args([
        "-v",
        "7",
        "-d",
        "8",
        "-A",
        ip,
        "-p",
        &port.to_string(),
    ]));
    let base = if ip.contains(':') {
        format!("coap://[{ip}]:{port}")
    } else {
        format!("coap://{ip}:{port}")
    };
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match run(client.get(&format!("{base}/"))) {
            Ok(_) => break,
            Err(Error::Network {
                kind: TransportErrorKind::PortUnreachable,
                ..
            }) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "coap-server did not come up on {base}: {e}\n{}{}",
                server.stdout(),
                server.stderr()
            ),
        }
    }
    (server, base)
}

#[test]
fn our_client_uses_every_method_on_libcoap_server_con_and_non() {
    if !libcoap_present() {
        return;
    }
    let client = udp6_client();
    let (server, base) = libcoap_server(&client.ep, "::1");
    run(async {
        for confirmable in [true, false] {
            let what = if confirmable { "con" } else { "non" };
            let send = |uri: String, req: Request| {
                client.ep.request(
                    &uri,
                    if confirmable {
                        req
                    } else {
                        req.non_confirmable()
                    },
                )
            };

            let r = send(format!("{base}/"), Request::new(Code::GET))
                .await
                .unwrap();
            assert_eq!(r.code, Code::CONTENT, "{what}");
            assert!(text(&r).contains("libcoap"), "{what}: {:?}", text(&r));
            let r = send(format!("{base}/time"), Request::new(Code::GET))
                .await
                .unwrap();
            assert_eq!(r.code, Code::CONTENT, "{what}");
            assert!(!r.payload.is_empty());

            // PUT to an existing resource.
            let data = format!("data-{what}");
            let r = send(
                format!("{base}/example_data"),
                Request::new(Code::PUT).with_payload(data.as_str()),
            )
            .await
            .unwrap();
            assert!(
                matches!(r.code, Code::CREATED | Code::CHANGED),
                "{what}: {}",
                r.code
            );
            let r = send(format!("{base}/example_data"), Request::new(Code::GET))
                .await
                .unwrap();
            assert_eq!((r.code, text(&r)), (Code::CONTENT, data), "{what}");

            // POST creates a resource, DELETE removes it.
            let made = format!("{base}/made-by-post-{what}");
            let r = send(
                made.clone(),
                Request::new(Code::POST).with_payload("posted"),
            )
            .await
            .unwrap();
            assert_eq!(r.code, Code::CREATED, "{what}");
            let r = send(made.clone(), Request::new(Code::GET)).await.unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CONTENT, "posted"),
                "{what}"
            );
            let r = send(made.clone(), Request::new(Code::DELETE))
                .await
                .unwrap();
            assert_eq!(r.code, Code::DELETED, "{what}");
            let r = send(made, Request::new(Code::GET)).await.unwrap();
            assert_eq!(r.code, Code::NOT_FOUND, "{what}");

            // An error response with a diagnostic payload.
            let r = send(
                format!("{base}/example_data"),
                Request::new(Code::POST).with_payload("x"),
            )
            .await
            .unwrap();
            assert_eq!(r.code, Code::METHOD_NOT_ALLOWED, "{what}");
        }
    });
    drop(server);
    client.stop();
}

#[test]
fn our_client_gets_separate_responses_from_libcoap_server() {
    if !libcoap_present() {
        return;
    }
    let client = udp6_client();
    let (server, base) = libcoap_server(&client.ep, "::1");
    // libcoap's /async takes its delay in seconds as the bare query: /async?1.
    let start = Instant::now();
    let r = run(client.ep.get(&format!("{base}/async?1"))).unwrap();
    assert_eq!((r.code, text(&r).as_str()), (Code::CONTENT, "done"));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    // The server's log: the empty ACK it sent, the CON response, and our ACK of it.
    let acked = server.wait_for_output(Duration::from_secs(2), |log| {
        separate_response_acked(&parse_log(log))
    });
    assert!(
        acked,
        "expected empty ACK, CON 2.05 and our ACK in the server's log:\n{}",
        server.stdout()
    );

    let start = Instant::now();
    let r = run(client.ep.request(
        &format!("{base}/async?1"),
        Request::new(Code::GET).non_confirmable(),
    ))
    .unwrap();
    assert_eq!((r.code, text(&r).as_str()), (Code::CONTENT, "done"));
    assert!(start.elapsed() >= Duration::from_millis(900));
    drop(server);
    client.stop();
}

#[test]
fn our_client_talks_to_libcoap_server_over_ipv4() {
    if !libcoap_present() {
        return;
    }
    let client = udp6_client();
    let (server, base) = libcoap_server(&client.ep, "127.0.0.1");
    run(async {
        let r = client
            .ep
            .get(&format!("{base}/.well-known/core"))
            .await
            .unwrap();
        assert_eq!(r.code, Code::CONTENT);
        assert!(text(&r).contains("</time>"), "{:?}", text(&r));
        let r = client
            .ep
            .put(&format!("{base}/example_data"), "v4")
            .await
            .unwrap();
        assert!(r.code.is_success(), "{}", r.code);
        let r = client
            .ep
            .get(&format!("{base}/example_data"))
            .await
            .unwrap();
        assert_eq!(text(&r), "v4");
    });
    drop(server);
    client.stop();
}
