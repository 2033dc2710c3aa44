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

use std::future::Future;
use std::io::{self, Read};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::future::{self, Either};

use coapio::message::Code;
use coapio::proto::{Request, Response};
use coapio::server::{get, Resource, ServerRequest, Site};
use coapio::{Driver, Endpoint, TransportKind};

/// How long our `/slow` resource takes (past the 100 ms after which an empty ACK goes out).
const SLOW: Duration = Duration::from_millis(300);

// ---- peers: presence, processes -----------------------------------------------------------

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
        let msg = "skipped: aiocoap not installed (install with `python3 -m pip install aiocoap`)";
        if std::env::var("COAPIO_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        println!("{msg}");
    }
    python
}

/// A child process whose output is collected as it comes; killed (by its PID) and reaped
/// when dropped.
struct Proc {
    child: Child,
    what: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Self::try_spawn(cmd).unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    fn try_spawn(cmd: &mut Command) -> io::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{cmd:?}");
        let mut child = cmd.spawn()?;
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Ok(Self {
            child,
            what,
            stdout,
            stderr,
            readers,
        })
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (at most `limit`) until `pred` holds for stdout and stderr together.
    fn wait_for_output(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if pred(&format!("{}{}", self.stdout(), self.stderr())) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `limit`, else the test fails) for the process to exit.
    fn finish(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < end,
                "{} did not finish within {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// A port that was free a moment ago (bound, read, released).
fn free_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- our side -----------------------------------------------------------------------------

fn run<F: Future>(fut: F) -> F::Output {
    let limit = Duration::from_secs(10);
    async_io::block_on(async {
        match future::select(Box::pin(fut), Timer::after(limit)).await {
            Either::Left((out, _)) => out,
            Either::Right(_) => panic!("not done within {limit:?}"),
        }
    })
}

/// An endpoint whose driver runs on a thread of its own; shut down on drop.
struct Running {
    ep: Endpoint,
    done: Option<mpsc::Receiver<io::Result<()>>>,
}

impl Running {
    fn spawn((ep, driver): (Endpoint, Driver)) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(async_io::block_on(driver));
        });
        Self { ep, done: Some(rx) }
    }

    fn stop(mut self) {
        self.ep.shutdown();
        let done = self.done.take().unwrap();
        done.recv_timeout(Duration::from_secs(1))
            .expect("the driver did not end within a second of shutdown")
            .expect("the driver failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ep.shutdown();
    }
}

/// The example server's resources (`examples/common`), and `/item` for DELETE.
fn example_site() -> Site {
    let echo = |req: ServerRequest| async move {
        Response::new(Code::CHANGED).with_payload(req.payload())
    };
    let item = Arc::new(Mutex::new(None::<Vec<u8>>));
    let (on_get, on_put, on_delete) = (item.clone(), item.clone(), item);
    Site::new()
        .resource(
            "/hello",
            get(|_req| async { Response::content("Hello, world!") })
                .title("Greeting")
                .ct(0),
        )
        .resource(
            "/time",
            get(|_req| async { Response::content("12:00:00 UTC") })
                .rt("clock")
                .ct(0),
        )
        .resource(
            "/slow",
            get(|_req| async {
                Timer::after(SLOW).await;
                Response::content("sorry for the wait")
            })
            .title("A slow answer"),
        )
        .resource("/echo", Resource::new().post(echo).put(echo))
        .resource(
            "/item",
            Resource::new()
                .get(move |_req| {
                    let item = on_get.clone();
                    async move {
                        match item.lock().unwrap().clone() {
                            Some(v) => Response::new(Code::CONTENT).with_payload(v),
                            None => Response::new(Code::NOT_FOUND),
                        }
                    }
                })
                .put(move |req| {
                    let item = on_put.clone();
                    async move {
                        let created = item
                            .lock()
                            .unwrap()
                            .replace(req.payload().to_vec())
                            .is_none();
                        if created {
                            Code::CREATED
                        } else {
                            Code::CHANGED
                        }
                    }
                })
                .delete(move |_req| {
                    let item = on_delete.clone();
                    async move {
                        item.lock().unwrap().take();
                        Code::DELETED
                    }
                }),
        )
}

/// Our udp6 server on `[::1]`.
fn our_server() -> (Running, u16) {
    let running = Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .bind("[::1]:0".parse().unwrap())
            .site(example_site())
            .build()
            .expect("cannot start our server"),
    );
    let port = running.ep.local_addr().unwrap().port();
    (running, port)
}

fn our_client() -> Running {
    Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .build()
            .expect("cannot start our client"),
    )
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

// ---- aiocoap's log --------------------------------------------------------------------------

/// One message as aiocoap logged it; `code` is `0.00` for an empty message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    incoming: bool,
    ty: String,
    code: String,
}

fn logged(incoming: bool, ty: &str, code: &str) -> Logged {
    Logged {
        incoming,
        ty: ty.into(),
        code: code.into(),
    }
}

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
        self.received
            .iter()
            .rev()
            .find(|m| m.code != "0.00")
            .unwrap_or_else(|| panic!("aiocoap-client got no response:\n{}", self.log))
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
    let client = our_client();
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
    let client = our_client();
    let start = Instant::now();
    let r = run(client.ep.get(&format!("{base}/slow"))).unwrap();
    assert_eq!(
        (r.code, text(&r).as_str()),
        (Code::CONTENT, "slow and steady")
    );
    assert!(start.elapsed() >= Duration::from_millis(500));
    // The server's log: the empty ACK it sent, the CON response, and our ACK of it.
    let acked = server.wait_for_output(Duration::from_secs(2), |log| {
        let msgs = parse_log(log);
        let response = msgs
            .iter()
            .position(|m| !m.incoming && m.ty == "CON" && m.code == "2.05");
        response.is_some_and(|i| {
            msgs[..i].contains(&logged(false, "ACK", "0.00"))
                && msgs[i..].contains(&logged(true, "ACK", "0.00"))
        })
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
