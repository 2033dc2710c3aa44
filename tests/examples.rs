//! The example programs as a user runs them: the server prints its port, the client prints
//! the code and the payload, and fails with one line and a non-zero status.
//!
//! `cargo test` builds the examples; this test runs those binaries (next to the test's own).

mod common;
use common::example;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Kills the child (by its PID) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(args: &[&str]) -> Output {
    let mut child = Command::new(example("client"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the client example");
    // Bounded: the client gives up by itself; this is a guard against a hang.
    for _ in 0..200 {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("client example did not exit within 10 s");
}

#[test]
fn server_and_client_examples() {
    let server_bin = example("server");
    if !server_bin.exists() {
        panic!(
            "{} missing: run `cargo test` (it builds the examples)",
            server_bin.display()
        );
    }
    let mut server = Guard(
        Command::new(server_bin)
            .args(["--bind", "[::1]:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the server example"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server prints where it listens");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_string();

    let out = client(&[&format!("coap://{addr}/hello")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2.05 Content\nHello, world!\n"
    );

    let out = client(&[
        "-m",
        "PUT",
        "--payload",
        "abc",
        &format!("coap://{addr}/echo"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2.04 Changed\nabc\n");

    let out = client(&["--non", &format!("coap://{addr}/nothing")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4.04 Not Found\n");

    // Failures: one line on stderr, status 1.
    let closed = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (args, says) in [
        (vec![format!("coap://{closed}/hello")], "port unreachable"),
        (vec!["coap://[::1/x".to_string()], "invalid URI"),
        (
            vec![
                "--timeout".into(),
                "0.3".into(),
                "--non".into(),
                format!("coap://{addr}/slow"),
            ],
            "no response from [::1]:",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = client(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = client(&["-m", "NOPE", "coap://[::1]/x"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Runs the plugtest server on a free loopback port, once it listens; it ends with the guard.
fn plugtest_server() -> (Guard, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Guard(
        Command::new(example("plugtest_server"))
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the plugtest server"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (server, port)
}

/// The plugtest server's block-wise and observable resources, as libcoap's client sees them.
#[test]
fn plugtest_server_blockwise_and_observe() {
    if Command::new("coap-client-notls")
        .arg("-h")
        .output()
        .is_err()
    {
        common::skip_or_fail(
            "skipped: libcoap not installed (install with `apt-get install libcoap3-bin`)",
        );
        return;
    }
    let (_server, port) = plugtest_server();
    let base = format!("coap://127.0.0.1:{port}");
    let coap = |args: &[&str]| {
        let out = Command::new("coap-client-notls")
            .args(["-B", "10"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // /large: 20 lines of 64 characters, whatever the block size.
    for size in ["16", "64", "1024"] {
        let body = coap(&["-b", size, "-m", "get", &format!("{base}/large")]);
        assert_eq!(body.trim_end().len(), 1279, "block size {size}");
    }
    // /obs: registration, a CON notification after a PUT, a final 4.04 after a DELETE.
    let observer = std::thread::spawn({
        let uri = format!("{base}/obs");
        move || {
            let out = Command::new("coap-client-notls")
                .args(["-v", "7", "-s", "3", "-m", "get", &uri])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    coap(&[
        "-m",
        "put",
        "-t",
        "0",
        "-e",
        "changed",
        &format!("{base}/obs"),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    coap(&["-m", "delete", &format!("{base}/obs")]);
    let log = observer.join().unwrap();
    let received: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("c:2.05") || l.contains("c:4.04"))
        .collect();
    assert!(
        received
            .iter()
            .any(|l| l.contains("t:CON c:2.05") && l.contains("changed")),
        "{log}"
    );
    assert!(received.iter().any(|l| l.contains("t:CON c:4.04")), "{log}");
}

/// `server --workers 2`: two endpoints share the port (SO_REUSEPORT); clients are spread over
/// them, and each client stays with one.
#[test]
fn server_workers_share_a_port() {
    use coapio::message::{Code, Message, MessageRef, OptionNumber, Type};
    let mut server = Guard(
        Command::new(example("server"))
            .args(["--bind", "127.0.0.1:0", "--workers", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the server example"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|l| l.strip_suffix(" (2 workers)"))
        .expect(&line)
        .parse()
        .unwrap();
    let ask = |sock: &std::net::UdpSocket, mid: u16| -> String {
        let mut m = Message::new(Type::Con, Code::GET, mid);
        m.options.push(OptionNumber::URI_PATH, "worker");
        sock.send(&m.to_bytes().unwrap()).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("an answer within a second");
        String::from_utf8_lossy(MessageRef::decode(&buf[..n]).unwrap().payload).into_owned()
    };
    let mut seen = std::collections::HashSet::new();
    for i in 0..16u16 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let first = ask(&sock, i * 2);
        assert_eq!(
            ask(&sock, i * 2 + 1),
            first,
            "a client stays with its worker"
        );
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "both workers answered: {seen:?}");
}

/// A PUT with another Content-Format ends the observations of /obs with 4.06, and a client
/// that registers right afterwards observes the resource (no window in which it is refused).
#[test]
fn plugtest_server_ends_observations_and_accepts_new_ones_at_once() {
    use coapio::message::{Code, ContentFormat, OptionNumber};
    use coapio::proto::Request;
    use futures::StreamExt;
    let (_server, port) = plugtest_server();
    let uri = format!("coap://127.0.0.1:{port}/obs");
    let (ep, driver) = coapio::Endpoint::client().unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    async_io::block_on(async {
        let mut first = ep.observe(&uri);
        let registered = first.next().await.unwrap().unwrap();
        assert_eq!(registered.code, Code::CONTENT);
        assert!(registered.options.contains(OptionNumber::OBSERVE));
        let put = Request::put("/", "{}").with_content_format(ContentFormat::JSON);
        let changed = ep.request(&uri, put).await.unwrap();
        assert_eq!(changed.code, Code::CHANGED);
        // Right away, a second observer registers and is accepted.
        let mut second = ep.observe(&uri);
        let answer = second.next().await.unwrap().unwrap();
        assert_eq!(answer.code, Code::CONTENT, "{answer:?}");
        assert!(answer.options.contains(OptionNumber::OBSERVE));
        // The first observation ended with 4.06 (its stream may first show notifications
        // sent before the change).
        let mut last = None;
        while let Some(item) = first.next().await {
            last = Some(item.unwrap());
        }
        assert_eq!(last.unwrap().code, Code::NOT_ACCEPTABLE);
    });
}

/// The server example also serves over DTLS with `--psk-identity/--psk-key`, and the client
/// example reaches it with a `coaps://` URI and the same key; a wrong key fails with one line.
#[cfg(feature = "dtls")]
#[test]
fn server_and_client_examples_over_dtls() {
    let mut server = Guard(
        Command::new(example("server"))
            .args(["--bind", "127.0.0.1:0", "--bind-dtls", "127.0.0.1:0"])
            .args(["--psk-identity", "demo", "--psk-key", "sesame"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the server example"),
    );
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let mut coaps = None;
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(a) = line.trim().strip_prefix("listening for coaps on ") {
            coaps = Some(a.to_string());
            break;
        }
    }
    let coaps = coaps.expect("the server says where it listens for coaps");
    let uri = format!("coaps://{coaps}/hello");
    let ok = client(&["--psk-identity", "demo", "--psk-key", "sesame", &uri]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "2.05 Content\nHello, world!\n"
    );
    let wrong = client(&[
        "--psk-identity",
        "demo",
        "--psk-key",
        "wrong",
        "--timeout",
        "5",
        &uri,
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&wrong.stderr).lines().count(), 1);
}
