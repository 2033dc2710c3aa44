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

use std::future::Future;
use std::io::{self, Read};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::future::{self, Either};

use coapio::message::Code;
use coapio::net::TransportErrorKind;
use coapio::proto::{Request, Response};
use coapio::server::{get, Resource, ServerRequest, Site};
use coapio::{Driver, Endpoint, RequestError, TransportKind};

const CLIENT: &str = "coap-client-notls";
const SERVER: &str = "coap-server-notls";
/// How long our `/slow` resource takes (past the 100 ms after which an empty ACK goes out).
const SLOW: Duration = Duration::from_millis(300);

// ---- peers: presence, processes -----------------------------------------------------------

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
    let msg = format!(
        "skipped: libcoap ({}) not installed (install with `apt-get install libcoap3-bin`)",
        missing.join(", ")
    );
    if std::env::var("COAPIO_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    println!("{msg}");
    false
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
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Self {
            child,
            what,
            stdout,
            stderr,
            readers,
        }
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

/// Our udp6 server, dual-stack on `[::]` (so both `[::1]` and `127.0.0.1` reach it).
fn our_server() -> (Running, u16) {
    let running = Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .bind("[::]:0".parse().unwrap())
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

// ---- coap-client against our server ------------------------------------------------------

/// One message as coap-client logged it.
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
        self.received
            .iter()
            .rev()
            .find(|m| m.code != "0.00")
            .unwrap_or_else(|| panic!("coap-client got no response:\n{}", self.log))
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
            Err(RequestError::Transport(TransportErrorKind::PortUnreachable))
                if Instant::now() < end =>
            {
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

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

#[test]
fn our_client_uses_every_method_on_libcoap_server_con_and_non() {
    if !libcoap_present() {
        return;
    }
    let client = our_client();
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
    let client = our_client();
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
    let client = our_client();
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
