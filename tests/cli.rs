//! The `coapio` command-line tool, run as a user runs it: against `coapio serve` on a
//! temporary directory (GET, PUT, DELETE, observe, block-wise both ways, listings, `--write`,
//! path traversal, exit statuses, `--json`, `-o`), against libcoap's `coap-server` and
//! aiocoap's server where they are installed (else the tests say they skipped, or fail under
//! `COAPIO_REQUIRE_PEERS=1`), and in a terminal (`script` gives it a pty) for the progress
//! bar and the observation counter, which must not appear in a pipe.
//!
//! Loopback only; every process is killed when its test ends, and every wait is bounded.

#![cfg(feature = "cli")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};

use common::{free_port, skip_or_fail};
use peers::{python_with, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_coapio");

// ---- helpers --------------------------------------------------------------------------------

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "coapio-cli-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `coapio args…` with `stdin`, failing the test after 30 s.
fn coapio(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run coapio");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    // Read both pipes as the output comes, so that a large one cannot block the child.
    let read = |mut from: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = from.read_to_end(&mut b);
            b
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("coapio {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit status, showing the output when it is another.
fn assert_status(o: &Output, status: i32) {
    assert_eq!(
        o.status.code(),
        Some(status),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// `coapio serve DIR --bind [::1]:0 extra…`, and its base URI once it listens.
fn serve(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg(dir)
        .args(["--bind", "[::1]:0", "--poll-interval", "50"])
        .args(extra);
    let server = Proc::spawn(&mut cmd);
    // The whole line: stderr is unbuffered, so a line may come in pieces.
    let ready = server.wait_for_output(Duration::from_secs(10), |out| {
        out.split("coapio: serving")
            .nth(1)
            .is_some_and(|rest| rest.contains('\n'))
    });
    assert!(ready, "coapio serve did not start:\n{}", server.stderr());
    let err = server.stderr();
    let port = err
        .split(" on [::1]:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {err:?}"));
    (server, format!("coap://[::1]:{port}"))
}

/// Pseudo-random bytes (no RNG crate needed).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

// ---- against coapio serve -------------------------------------------------------------------

#[test]
fn get_text_json_and_a_listing_from_coapio_serve() {
    let dir = TempDir::new("get");
    std::fs::write(dir.path().join("hello.txt"), "Hello, files!\n").unwrap();
    std::fs::write(dir.path().join("data.json"), r#"{"b":1,"a":[true,null]}"#).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let (_server, base) = serve(dir.path(), &[]);

    // In a pipe: stdout is the payload exactly, the code line is on stderr.
    let o = coapio(&["get", &format!("{base}/hello.txt")], b"");
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "Hello, files!\n");
    assert!(stderr(&o).contains("2.05 Content"), "{}", stderr(&o));

    // --pretty renders JSON by its Content-Format, in the server's key order.
    let o = coapio(&["get", "--pretty", &format!("{base}/data.json")], b"");
    assert_status(&o, 0);
    assert_eq!(
        stdout(&o),
        "{\n  \"b\": 1,\n  \"a\": [\n    true,\n    null\n  ]\n}\n"
    );
    let o = coapio(&["get", &format!("{base}/data.json")], b"");
    assert_eq!(stdout(&o), r#"{"b":1,"a":[true,null]}"#, "raw in a pipe");

    // CBOR in diagnostic notation: {"t": 21.5, "ok": true, "raw": h'0102'}.
    let cbor = [
        0xa3, 0x61, b't', 0xf9, 0x4d, 0x60, 0x62, b'o', b'k', 0xf5, 0x63, b'r', b'a', b'w', 0x42,
        1, 2,
    ];
    std::fs::write(dir.path().join("m.cbor"), cbor).unwrap();
    let o = coapio(&["get", "--pretty", &format!("{base}/m.cbor")], b"");
    assert_eq!(
        stdout(&o),
        "{\"t\": 21.5, \"ok\": true, \"raw\": h'0102'}\n"
    );
    std::fs::remove_file(dir.path().join("m.cbor")).unwrap();

    // A directory is a link-format listing, one link per line when rendered.
    let o = coapio(&["get", "--pretty", &format!("{base}/")], b"");
    assert_status(&o, 0);
    assert_eq!(
        stdout(&o),
        "</data.json>;ct=50;sz=23,\n</hello.txt>;ct=0;sz=14,\n</sub/>;ct=40\n"
    );

    // -v shows the options and where the answer came from.
    let o = coapio(&["get", "-v", &format!("{base}/hello.txt")], b"");
    let err = stderr(&o);
    assert!(
        err.contains("Content-Format: text/plain;charset=utf-8 (0)"),
        "{err}"
    );
    assert!(err.contains("ETag: 0x"), "{err}");
    assert!(
        err.contains(&format!("from {}", &base["coap://".len()..])),
        "{err}"
    );
}

#[test]
fn exit_statuses_say_what_happened() {
    let dir = TempDir::new("exit");
    let (_server, base) = serve(dir.path(), &[]);

    let o = coapio(&["get", &format!("{base}/missing")], b"");
    assert_status(&o, 1);
    assert!(stderr(&o).contains("4.04 Not Found"), "{}", stderr(&o));

    // Nothing listens: the ICMP error ends the request at once.
    let closed = free_port("::1");
    let o = coapio(&["get", &format!("coap://[::1]:{closed}/x")], b"");
    assert_status(&o, 3);
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));

    // Something listens and never answers: --timeout.
    let silent = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let o = coapio(
        &["get", "--timeout", "0.5", &format!("coap://[::1]:{port}/x")],
        b"",
    );
    assert_status(&o, 3);
    assert!(
        stderr(&o).contains(&format!("no response from [::1]:{port} after")),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // An observation that got no response at all is no success either.
    let o = coapio(
        &[
            "observe",
            "--duration",
            "0.5",
            &format!("coap://[::1]:{port}/x"),
        ],
        b"",
    );
    assert_status(&o, 3);
    assert!(stderr(&o).contains("no response from"), "{}", stderr(&o));
    // -o FILE and --json are one or the other.
    assert_status(&coapio(&["get", "--json", "-o", "x", &base], b""), 2);
    // With --json a failure before any request is a JSON line too.
    let o = coapio(&["get", "--json", "coap://[::1]:5683/a#frag"], b"");
    assert_status(&o, 2);
    assert!(json_lines(&o)[0]["error"].is_string(), "{}", stdout(&o));
    // Options the URI gives, and reserved numbers, in requests and observations.
    for args in [
        &["observe", "-O", "Uri-Path=x", &base][..],
        &["get", "-O", "128=x", &base],
        &["observe", "-O", "0=x", &base],
        &["get", "-O", "140", &base],
    ] {
        let o = coapio(args, b"");
        assert_status(&o, 2);
    }
    // stdout closed before the response comes (`| head`): no complaint.
    std::fs::write(dir.path().join("hello.txt"), "hello").unwrap();
    let mut child = Command::new(BIN)
        .args(["get", &format!("{base}/hello.txt")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_status(&o, 0);
    assert!(!stderr(&o).contains("pipe"), "{}", stderr(&o));

    // Usage: a malformed URI, a bad option, an unknown flag.
    assert_status(&coapio(&["get", "not a uri"], b""), 2);
    assert_status(&coapio(&["get", "-O", "14=soon", &base], b""), 2);
    let o = coapio(&["get", "-O", "Uri-Path=x", &base], b"");
    assert_status(&o, 2);
    assert!(stderr(&o).contains("the URI gives"), "{}", stderr(&o));
    assert_status(&coapio(&["get", "--no-such-flag", &base], b""), 2);
    assert_status(
        &coapio(&["get", "--content-format", "nonsense", &base], b""),
        2,
    );
    // A local error: the payload file is missing.
    let o = coapio(&["put", "--payload-file", "/nonexistent/file", &base], b"");
    assert_status(&o, 4);

    // --help documents every status, and the README's table says the same.
    let help = stdout(&coapio(&["--help"], b""));
    let table = help
        .split("Exit status:")
        .nth(1)
        .expect("no exit statuses in --help");
    let readme = include_str!("../README.md");
    let mut rows = 0;
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        let (n, meaning) = line.trim().split_once("  ").unwrap();
        assert!(
            readme.contains(&format!("| {n} | {} |", meaning.trim())),
            "README.md lacks exit status {n}: {meaning}"
        );
        rows += 1;
    }
    assert_eq!(rows, 5, "{help}");
}

#[test]
fn put_and_delete_only_with_write() {
    let dir = TempDir::new("write");
    let (read_only, base) = serve(dir.path(), &[]);
    let o = coapio(&["put", "-p", "x", &format!("{base}/new.txt")], b"");
    assert_status(&o, 1);
    assert!(
        stderr(&o).contains("4.05 Method Not Allowed"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("new.txt").exists());
    drop(read_only);

    let (_server, base) = serve(dir.path(), &["--write"]);
    let file = dir.path().join("notes/new.txt");
    let o = coapio(
        &["put", "-p", "first", &format!("{base}/notes/new.txt")],
        b"",
    );
    assert_status(&o, 0);
    assert!(stderr(&o).contains("2.01 Created"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "first");

    // From standard input, replacing it.
    let o = coapio(
        &[
            "put",
            "--payload-file",
            "-",
            &format!("{base}/notes/new.txt"),
        ],
        b"second",
    );
    assert_status(&o, 0);
    assert!(stderr(&o).contains("2.04 Changed"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "second");

    // If-None-Match: only if it does not exist yet.
    let o = coapio(
        &[
            "put",
            "-p",
            "third",
            "-O",
            "If-None-Match",
            &format!("{base}/notes/new.txt"),
        ],
        b"",
    );
    assert_status(&o, 1);
    assert!(stderr(&o).contains("4.12"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "second");

    let o = coapio(&["delete", &format!("{base}/notes")], b"");
    assert_status(&o, 1);
    assert!(
        stderr(&o).contains("4.09"),
        "a directory that is not empty stays"
    );
    let o = coapio(&["delete", &format!("{base}/notes/new.txt")], b"");
    assert_status(&o, 0);
    assert!(stderr(&o).contains("2.02 Deleted"), "{}", stderr(&o));
    assert!(!file.exists());
    assert_status(
        &coapio(&["delete", &format!("{base}/notes/new.txt")], b""),
        1,
    );
}

/// The ETag option of a `--json` response.
fn etag_of(o: &Output) -> String {
    let lines = json_lines(o);
    lines[0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "ETag")
        .unwrap_or_else(|| panic!("no ETag in {}", stdout(o)))["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_put_etag_is_the_one_get_gives() {
    let dir = TempDir::new("etag");
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let big = noise((1 << 20) + 100, 7);
    let big_file = dir.path().join("big-src.bin");
    std::fs::write(&big_file, &big).unwrap();
    let (_server, base) = serve(dir.path(), &["--write"]);
    for (uri, args) in [
        (format!("{base}/small.txt"), vec!["-p", "small"]),
        (
            format!("{base}/big.bin"),
            vec!["-f", big_file.to_str().unwrap()],
        ),
        (format!("{base}/d/"), vec![]),
    ] {
        let put = |extra: &[&str]| {
            let mut a = vec!["put", "--json"];
            a.extend(&args);
            a.extend(extra);
            a.push(&uri);
            coapio(&a, b"")
        };
        let o = put(&[]);
        assert_status(&o, 0);
        let etag = etag_of(&o);
        let g = coapio(&["get", "--json", &uri], b"");
        assert_status(&g, 0);
        assert_eq!(etag_of(&g), etag, "{uri}: GET gives the ETag PUT gave");
        let o = put(&["-O", &format!("If-Match={etag}")]);
        assert_status(&o, 0);
    }
}

#[cfg(unix)]
#[test]
fn fifos_are_never_opened() {
    let dir = TempDir::new("fifo");
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        skip_or_fail("mkfifo is not available");
        return;
    }
    let (_server, base) = serve(dir.path(), &["--write"]);
    let o = coapio(&["get", "-t", "10", &format!("{base}/pipe")], b"");
    assert_status(&o, 1);
    assert!(stderr(&o).contains("4.03"), "{}", stderr(&o));
    let o = coapio(&["get", "-t", "10", &format!("{base}/")], b"");
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "</a.txt>;ct=0;sz=1", "the FIFO is left out");
    let o = coapio(
        &["put", "-t", "10", "-p", "x", &format!("{base}/pipe")],
        b"",
    );
    assert_status(&o, 1);
    assert!(stderr(&o).contains("4.03"), "{}", stderr(&o));
    // The server still answers.
    assert_status(
        &coapio(&["get", "-t", "10", &format!("{base}/a.txt")], b""),
        0,
    );
}

#[test]
fn blockwise_both_ways_and_output_file() {
    let dir = TempDir::new("blocks");
    let out = TempDir::new("blocks-out");
    // Cut into blocks by the library (up to 1 MiB) and by the server from the file (above).
    let small = noise(150_000, 1);
    let large = noise(1_300_000, 2);
    std::fs::write(dir.path().join("small.bin"), &small).unwrap();
    std::fs::write(dir.path().join("large.bin"), &large).unwrap();
    let (_server, base) = serve(dir.path(), &["--write"]);

    for (name, bytes) in [("small.bin", &small), ("large.bin", &large)] {
        let target = out.path().join(name);
        let o = coapio(
            &[
                "get",
                &format!("{base}/{name}"),
                "-o",
                target.to_str().unwrap(),
            ],
            b"",
        );
        assert_status(&o, 0);
        assert!(o.stdout.is_empty(), "the payload went to the file");
        assert!(std::fs::read(&target).unwrap() == *bytes, "{name} differs");
    }
    // An error response does not replace the file; no temporary file stays.
    let target = out.path().join("small.bin");
    let o = coapio(
        &[
            "get",
            &format!("{base}/missing"),
            "-o",
            target.to_str().unwrap(),
        ],
        b"",
    );
    assert_status(&o, 1);
    assert!(std::fs::read(&target).unwrap() == small, "the file stays");
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // --max-size: a local limit, said as such (exit 4), for responses and payloads.
    let o = coapio(
        &["get", "--max-size", "100k", &format!("{base}/small.bin")],
        b"",
    );
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains("larger than 102400 bytes, the most --max-size allows"),
        "{}",
        stderr(&o)
    );
    let o = coapio(
        &["put", "--max-size", "10", "-f", "-", &format!("{base}/x")],
        &[b'x'; 11],
    );
    assert_status(&o, 4);
    assert!(
        stderr(&o).contains("larger than 10 bytes"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("x").exists());
    // Smaller blocks, asked for.
    let o = coapio(&["get", "-b", "256", &format!("{base}/small.bin")], b"");
    assert_status(&o, 0);
    assert!(o.stdout == small);
    assert_status(&coapio(&["get", "-b", "100", &base], b""), 2);

    // Binary in a pipe: the bytes as they came.
    let o = coapio(&["get", &format!("{base}/small.bin")], b"");
    assert!(o.stdout == small);

    // Upload (Block1) from a file.
    let upload = noise(200_000, 3);
    let source = out.path().join("up.bin");
    std::fs::write(&source, &upload).unwrap();
    let o = coapio(
        &[
            "put",
            "-f",
            source.to_str().unwrap(),
            &format!("{base}/up.bin"),
        ],
        b"",
    );
    assert_status(&o, 0);
    assert!(std::fs::read(dir.path().join("up.bin")).unwrap() == upload);
}

#[test]
fn json_output_for_scripts() {
    let dir = TempDir::new("json");
    std::fs::write(dir.path().join("t.txt"), "text").unwrap();
    std::fs::write(dir.path().join("b.bin"), [0xff, 0, 1]).unwrap();
    let (_server, base) = serve(dir.path(), &["--write"]);
    let o = coapio(&["get", "--json", &format!("{base}/t.txt")], b"");
    assert_status(&o, 0);
    let v = &json_lines(&o)[0];
    assert_eq!(v["code"], "2.05");
    assert_eq!(v["name"], "Content");
    assert_eq!(v["payload"], "text");
    assert_eq!(v["content_format"], 0);
    assert_eq!(v["source"], &base["coap://".len()..]);
    let cf = v["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Content-Format")
        .unwrap();
    assert_eq!(cf["number"], 12);

    let o = coapio(&["get", "--json", &format!("{base}/b.bin")], b"");
    assert_eq!(json_lines(&o)[0]["payload_base64"], "/wAB");

    let o = coapio(&["get", "--json", &format!("{base}/none")], b"");
    assert_status(&o, 1);
    assert_eq!(json_lines(&o)[0]["code"], "4.04");
}

#[test]
fn observe_a_file_as_it_changes() {
    let dir = TempDir::new("observe");
    let file = dir.path().join("state.txt");
    std::fs::write(&file, "one").unwrap();
    let (_server, base) = serve(dir.path(), &[]);
    let mut observer = Proc::spawn(Command::new(BIN).args([
        "observe",
        "--json",
        "-A",
        "text",
        "--count",
        "3",
        "--duration",
        "20",
        &format!("{base}/state.txt"),
    ]));
    let seen = |n: usize| {
        observer.wait_for_output(Duration::from_secs(10), |out| {
            out.matches("\"code\":\"2.05\"").count() >= n
        })
    };
    assert!(seen(1), "no first response: {}", observer.stderr());
    for (n, text) in [(2, "two"), (3, "three")] {
        // A different length, so that the change shows even within one mtime tick.
        std::fs::write(&file, text).unwrap();
        assert!(seen(n), "no notification {n}: {}", observer.stdout());
    }
    let status = observer.finish(Duration::from_secs(10));
    assert!(status.success(), "{}", observer.stderr());
    let payloads: Vec<String> = observer
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].to_string())
        .collect();
    assert_eq!(payloads, ["\"one\"", "\"two\"", "\"three\""]);
}

#[test]
fn a_listing_is_notified_when_a_file_in_it_grows() {
    let dir = TempDir::new("observe-dir");
    let file = dir.path().join("log.txt");
    std::fs::write(&file, "a").unwrap();
    let (_server, base) = serve(dir.path(), &[]);
    let mut observer = Proc::spawn(Command::new(BIN).args([
        "observe",
        "--json",
        "--count",
        "2",
        "--duration",
        "20",
        &format!("{base}/"),
    ]));
    assert!(
        observer.wait_for_output(Duration::from_secs(10), |o| o.contains("sz=1")),
        "no first response: {}",
        observer.stderr()
    );
    // The directory's own modification time does not change: its entries' sizes do.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"bc")
        .unwrap();
    let status = observer.finish(Duration::from_secs(10));
    assert!(status.success(), "{}", observer.stderr());
    assert!(observer.stdout().contains("sz=3"), "{}", observer.stdout());
}

#[test]
fn deleting_an_observed_file_ends_the_observation_with_4_04() {
    let dir = TempDir::new("observe-delete");
    let file = dir.path().join("gone.txt");
    std::fs::write(&file, "here").unwrap();
    let (_server, base) = serve(dir.path(), &[]);
    let mut observer = Proc::spawn(Command::new(BIN).args([
        "observe",
        "--duration",
        "20",
        &format!("{base}/gone.txt"),
    ]));
    assert!(
        observer.wait_for_output(Duration::from_secs(10), |o| o.contains("here")),
        "{}",
        observer.stderr()
    );
    std::fs::remove_file(&file).unwrap();
    let status = observer.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", observer.stderr());
    assert!(
        observer.stderr().contains("4.04 Not Found"),
        "{}",
        observer.stderr()
    );
    assert_eq!(observer.stdout(), "here\ndeleted\n");
}

#[test]
fn path_traversal_is_refused() {
    let outer = TempDir::new("traversal");
    std::fs::write(outer.path().join("secret.txt"), "secret").unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ok.txt"), "ok").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outer.path().join("secret.txt"), root.join("link.txt")).unwrap();
    let (_server, base) = serve(&root, &["--write"]);
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();

    // A request with a Uri-Path of "..", as no URI can spell it: sent by hand.
    let ask = |segments: &[&[u8]], code: Code| -> Code {
        let socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut m = Message::new(Type::Con, code, 0x4242);
        m.token = Token::from_slice(&[7, 7]).unwrap();
        for s in segments {
            m.options.push(OptionNumber::URI_PATH, s);
        }
        if code == Code::PUT {
            m.payload = b"pwned".to_vec();
        }
        socket
            .send_to(&m.to_bytes().unwrap(), ("::1", port))
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = socket.recv(&mut buf).expect("no answer");
        MessageRef::decode(&buf[..n]).unwrap().code
    };
    assert_eq!(ask(&[b"..", b"secret.txt"], Code::GET), Code::FORBIDDEN);
    assert_eq!(ask(&[b".", b"ok.txt"], Code::GET), Code::FORBIDDEN);
    assert_eq!(ask(&[b"..", b"x.txt"], Code::PUT), Code::FORBIDDEN);
    assert_eq!(ask(&[b"a/../../secret.txt"], Code::GET), Code::BAD_REQUEST);
    assert_eq!(ask(&[b"ok.txt"], Code::GET), Code::CONTENT, "the control");
    assert!(!outer.path().join("x.txt").exists());

    #[cfg(unix)]
    {
        let o = coapio(&["get", &format!("{base}/link.txt")], b"");
        assert_status(&o, 1);
        assert!(stderr(&o).contains("4.03"), "{}", stderr(&o));
        assert!(!stdout(&o).contains("secret"));
    }
}

#[test]
fn completions_for_the_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let o = coapio(&["completions", shell], b"");
        assert_status(&o, 0);
        let s = stdout(&o);
        assert!(
            s.contains("coapio") && s.contains("discover"),
            "{shell}: {s}"
        );
    }
    assert_status(&coapio(&["completions", "tcsh"], b""), 2);
}

#[test]
fn security_flags_say_what_the_build_lacks() {
    let o = coapio(
        &["get", "--oscore", "/nonexistent", "coap://[::1]:9/x"],
        b"",
    );
    assert_status(&o, 2);
    if cfg!(feature = "oscore") {
        assert!(stderr(&o).contains("/nonexistent"), "{}", stderr(&o));
    } else {
        assert!(stderr(&o).contains("without OSCORE"), "{}", stderr(&o));
    }
    let o = coapio(&["get", "--psk-identity", "me", "coaps://[::1]:9/x"], b"");
    assert_status(&o, 2);
    if !cfg!(feature = "dtls") {
        assert!(stderr(&o).contains("without DTLS"), "{}", stderr(&o));
    } else {
        assert!(stderr(&o).contains("--psk-key"), "{}", stderr(&o));
    }
    let o = coapio(&["get", "coaps://[::1]:9/x"], b"");
    assert_status(&o, 2);
    let expected = if cfg!(feature = "dtls") {
        "needs DTLS credentials: --psk-identity"
    } else {
        "without DTLS"
    };
    assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    let dir = TempDir::new("creds");
    let creds = dir.path().join("creds.json");
    std::fs::write(&creds, r#"{"coap://a/*": {"tlscert": {"certfile": "x"}}}"#).unwrap();
    let o = coapio(
        &[
            "get",
            "--credentials",
            creds.to_str().unwrap(),
            "coap://[::1]:9/x",
        ],
        b"",
    );
    assert_status(&o, 2);
    assert!(stderr(&o).contains("not supported"), "{}", stderr(&o));

    // A credentials file's DTLS key only for the URIs its pattern matches.
    std::fs::write(
        &creds,
        r#"{"coaps://[::1]:9/*": {"dtls": {"psk": "k", "client-identity": "me"}}}"#,
    )
    .unwrap();
    let c = creds.to_str().unwrap();
    let o = coapio(&["get", "--credentials", c, "coaps://[::2]:9/x"], b"");
    assert_status(&o, 2);
    let expected = if cfg!(feature = "dtls") {
        "coaps://[::2]:9/x: no dtls entry of the credentials file is for this URI"
    } else {
        "without DTLS"
    };
    assert!(stderr(&o).contains(expected), "{}", stderr(&o));
}

// ---- in a terminal --------------------------------------------------------------------------

/// Runs `coapio args…` under `script`, which gives it a pseudo-terminal; returns what the
/// terminal got (stdout and stderr together), or `None` if `script` is missing.
fn in_terminal(args: &[&str]) -> Option<String> {
    let which = Command::new("script").arg("--version").output();
    if which.is_err() {
        skip_or_fail("skipped: `script` not installed (install with `apt-get install bsdutils`)");
        return None;
    }
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut p = Proc::spawn(
        Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .env("COLUMNS", "100")
            .env("TERM", "xterm"),
    );
    let status = p.finish(Duration::from_secs(30));
    assert!(status.success(), "{}{}", p.stdout(), p.stderr());
    Some(p.stdout())
}

#[test]
fn progress_bar_and_counter_on_a_terminal_not_in_a_pipe() {
    let dir = TempDir::new("tty");
    let out = TempDir::new("tty-out");
    std::fs::write(dir.path().join("large.bin"), noise(1_500_000, 4)).unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hi").unwrap();
    std::fs::write(dir.path().join("b.bin"), [0xff, 0, 1]).unwrap();
    let (_server, base) = serve(dir.path(), &["--write"]);
    let target = out.path().join("large.bin");
    let uri = format!("{base}/large.bin");
    let Some(screen) = in_terminal(&["get", &uri, "-o", target.to_str().unwrap()]) else {
        return;
    };
    assert!(
        screen.contains("block-wise, received"),
        "no bar: {screen:?}"
    );
    assert!(screen.contains("MiB"), "{screen:?}");
    // The code line comes on the terminal's stdout, coloured.
    assert!(screen.contains("\x1b[1;32m2.05 Content"), "{screen:?}");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 1_500_000);

    // In a pipe: no bar, no escape sequences.
    let o = coapio(&["get", &uri, "-o", target.to_str().unwrap()], b"");
    assert_status(&o, 0);
    assert!(!stderr(&o).contains("block-wise") && !stderr(&o).contains('\x1b'));

    // An upload's bar (Block1, with the total from Size1).
    let put = format!("{base}/uploaded.bin");
    let screen = in_terminal(&["put", "-f", target.to_str().unwrap(), &put]).unwrap();
    assert!(screen.contains("block-wise, sent"), "no bar: {screen:?}");
    assert_eq!(
        std::fs::metadata(dir.path().join("uploaded.bin"))
            .unwrap()
            .len(),
        1_500_000
    );

    // An observation's counter.
    let hello = format!("{base}/hello.txt");
    let screen = in_terminal(&["observe", "--duration", "1", &hello]).unwrap();
    assert!(screen.contains(": 1 response"), "no counter: {screen:?}");
    let o = coapio(&["observe", "--duration", "1", &hello], b"");
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "hi\n");
    assert!(!stderr(&o).contains("observing"), "{}", stderr(&o));

    // Binary: a hex dump on a terminal, the bytes in a pipe.
    let bin = format!("{base}/b.bin");
    let screen = in_terminal(&["get", &bin]).unwrap();
    assert!(
        screen.contains("00000000: ff00 01"),
        "no hex dump: {screen:?}"
    );
    assert_eq!(coapio(&["get", &bin], b"").stdout, [0xff, 0, 1]);
}

// ---- against libcoap and aiocoap ------------------------------------------------------------

const LIBCOAP_SERVER: &str = "coap-server-notls";

fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

#[test]
fn against_libcoap_server() {
    if !in_path(LIBCOAP_SERVER) {
        skip_or_fail(&format!(
            "skipped: libcoap ({LIBCOAP_SERVER}) not installed (install with `apt-get install libcoap3-bin`)"
        ));
        return;
    }
    let port = free_port("::1");
    let _server = Proc::spawn(Command::new(LIBCOAP_SERVER).args([
        "-A",
        "::1",
        "-p",
        &port.to_string(),
        "-d",
        "8",
    ]));
    let base = format!("coap://[::1]:{port}");
    // Until it listens (bounded).
    let end = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let o = coapio(&["get", "--timeout", "2", &format!("{base}/")], b"");
        if o.status.code() != Some(3) || Instant::now() > end {
            break o;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_status(&first, 0);
    assert!(stdout(&first).contains("libcoap"), "{}", stdout(&first));

    let o = coapio(
        &["get", "--pretty", &format!("{base}/.well-known/core")],
        b"",
    );
    assert_status(&o, 0);
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("</time>")),
        "{}",
        stdout(&o)
    );

    // -d lets PUT create resources; a body larger than a block goes as Block1.
    let body = "x".repeat(3000);
    let o = coapio(&["put", "-p", &body, &format!("{base}/created")], b"");
    assert_status(&o, 0);
    let o = coapio(&["get", &format!("{base}/created")], b"");
    assert_status(&o, 0);
    assert_eq!(stdout(&o), body);

    // /time is observable and changes every second.
    let o = coapio(
        &[
            "observe",
            "--count",
            "2",
            "--duration",
            "10",
            "--json",
            &format!("{base}/time"),
        ],
        b"",
    );
    assert_status(&o, 0);
    assert_eq!(json_lines(&o).len(), 2, "{}", stdout(&o));
}

#[test]
fn against_aiocoap_server() {
    let Some(python) = python_with("aiocoap", "python3 -m pip install aiocoap") else {
        return;
    };
    let port = free_port("::1");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiocoap_server.py");
    let server = Proc::spawn(
        Command::new(python)
            .arg(&script)
            .args(["::1", &port.to_string()])
            .env("PYTHONUNBUFFERED", "1"),
    );
    let ready = server.wait_for_output(Duration::from_secs(20), |out| {
        out.lines().any(|l| l == "ready")
    });
    assert!(ready, "aiocoap did not start: {}", server.stderr());
    let base = format!("coap://[::1]:{port}");

    let o = coapio(&["get", &format!("{base}/hello")], b"");
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "Hello from aiocoap");

    let o = coapio(
        &["post", "-p", "ping", "--non", &format!("{base}/echo")],
        b"",
    );
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "ping");
    assert!(stderr(&o).contains("2.04 Changed"));

    let o = coapio(
        &["get", "--pretty", &format!("{base}/.well-known/core")],
        b"",
    );
    assert_status(&o, 0);
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("</hello>")),
        "{}",
        stdout(&o)
    );

    let o = coapio(&["get", &format!("{base}/nothing")], b"");
    assert_status(&o, 1);

    let o = coapio(
        &[
            "observe",
            "--count",
            "3",
            "--duration",
            "10",
            &format!("{base}/clock"),
        ],
        b"",
    );
    assert_status(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
}

// ---- multicast discovery, in a network namespace of the test's own ----------------------

/// A network namespace with a veth pair `va`/`vb` (up, so `va` has a link-local address)
/// and a route for IPv4 multicast; deleted when dropped.
struct Netns(String);

impl Netns {
    fn make() -> Option<Self> {
        let name = format!("coapiocli{}", std::process::id());
        if !common::ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Self(name);
        let n = ns.0.as_str();
        let ok = common::ip(&["-n", n, "link", "set", "lo", "up"])
            && common::ip(&[
                "-n", n, "link", "add", "va", "type", "veth", "peer", "name", "vb",
            ])
            && common::ip(&["-n", n, "link", "set", "va", "up"])
            && common::ip(&["-n", n, "link", "set", "vb", "up"])
            && common::ip(&["-n", n, "route", "add", "224.0.0.0/4", "dev", "va"]);
        assert!(ok, "cannot set the namespace {n} up");
        // Until va's link-local address has passed duplicate address detection.
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["-n", n, "-6", "addr", "show", "dev", "va"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("fe80") && !text.contains("tentative") {
                break;
            }
            assert!(
                Instant::now() < end,
                "va has no usable link-local address: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(ns)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, BIN]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        common::ip(&["netns", "del", &self.0]);
    }
}

#[test]
fn discover_finds_coapio_serve_by_multicast() {
    let Some(ns) = Netns::make() else {
        skip_or_fail(
            "skipped: cannot make a network namespace (needs root and iproute2: \
             `apt-get install iproute2`, run as root)",
        );
        return;
    };
    let dir = TempDir::new("discover");
    std::fs::write(dir.path().join("here.txt"), "x").unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let server = Proc::spawn(&mut ns.command(&[
        "serve",
        dir_arg,
        "--bind",
        "[::]:5683",
        "--multicast",
        "va",
    ]));
    assert!(
        server.wait_for_output(Duration::from_secs(10), |o| o.contains("serving")),
        "{}",
        server.stderr()
    );
    // IPv6 (ff02::fd on va) and IPv4 (224.0.1.187) at the same time: each waits for the
    // server's leisure (up to 5 s).
    let mut v6 = Proc::spawn(&mut ns.command(&["discover", "-i", "va", "-t", "7", "/"]));
    let mut v4 = Proc::spawn(&mut ns.command(&["discover", "-t", "7", "/"]));
    for (p, from) in [(&mut v6, "[fe80::"), (&mut v4, "127.0.0.1:5683")] {
        let status = p.finish(Duration::from_secs(20));
        assert!(status.success(), "{}{}", p.stdout(), p.stderr());
        // Each answer: its server and code, then its payload rendered and indented.
        let out = p.stdout();
        let lines: Vec<&str> = out.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(from) && l.ends_with("2.05 Content"))
            .unwrap_or_else(|| panic!("no answer from {from}: {out}{}", p.stderr()));
        assert_eq!(
            lines.get(at + 1).map(|l| l.trim()),
            Some("</here.txt>;ct=0;sz=1"),
            "{out}"
        );
    }
    // A path nobody has: silence (no 4.04 to a multicast request), exit status 3.
    let mut none = Proc::spawn(&mut ns.command(&["discover", "-t", "6", "/nothing"]));
    let status = none.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "{}{}", none.stdout(), none.stderr());
    drop(server);
}

// ---- security: DTLS with libcoap, OSCORE with aiocoap ---------------------------------------

/// A pre-shared key libcoap's server is given, and the identity we present.
#[cfg(feature = "dtls")]
const PSK: (&str, &str) = ("coapio", "sesame-0123456789");

#[cfg(feature = "dtls")]
#[test]
fn dtls_psk_against_libcoap_server() {
    let tool = "coap-server-openssl";
    if !in_path(tool) {
        skip_or_fail(&format!(
            "skipped: libcoap ({tool}) not installed (install with `apt-get install libcoap3-bin`)"
        ));
        return;
    }
    let port = free_port("127.0.0.1");
    let _server = Proc::spawn(Command::new(tool).args([
        "-A",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-k",
        PSK.1,
    ]));
    // libcoap listens for DTLS on its port + 1.
    let uri = format!("coaps://127.0.0.1:{}/", port + 1);
    let end = Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = coapio(
            &[
                "get",
                "--psk-identity",
                PSK.0,
                "--psk-key",
                PSK.1,
                "-t",
                "5",
                &uri,
            ],
            b"",
        );
        if o.status.success() || Instant::now() > end {
            break o;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_status(&o, 0);
    assert!(stdout(&o).contains("libcoap"), "{}", stdout(&o));

    // The same key from an aiocoap credentials file.
    let dir = TempDir::new("dtls-creds");
    let creds = dir.path().join("creds.json");
    let write_creds = |pattern: &str| {
        std::fs::write(
            &creds,
            format!(
                r#"{{"{pattern}": {{"dtls": {{"psk": {{"ascii": "{}"}}, "client-identity": {{"ascii": "{}"}}}}}}}}"#,
                PSK.1, PSK.0
            ),
        )
        .unwrap();
    };
    // Patterns are compared with the URI as aiocoap compares them: the port is part of it,
    // and a key is never offered to a URI its pattern does not match.
    write_creds("coaps://127.0.0.1/*");
    let o = coapio(
        &[
            "get",
            "--credentials",
            creds.to_str().unwrap(),
            "-t",
            "5",
            &uri,
        ],
        b"",
    );
    assert_status(&o, 2);
    assert!(stderr(&o).contains("no dtls entry"), "{}", stderr(&o));
    write_creds(&format!("{uri}*"));
    let o = coapio(
        &[
            "get",
            "--credentials",
            creds.to_str().unwrap(),
            "-t",
            "5",
            &uri,
        ],
        b"",
    );
    assert_status(&o, 0);

    // A wrong key: no response (the handshake fails), exit status 3.
    let o = coapio(
        &[
            "get",
            "--psk-identity",
            PSK.0,
            "--psk-key",
            "wrong",
            "-t",
            "5",
            &uri,
        ],
        b"",
    );
    assert_status(&o, 3);
}

#[cfg(feature = "oscore")]
#[test]
fn oscore_against_aiocoap_server() {
    let Some(python) = python_with(
        "aiocoap.oscore, cbor2, cryptography",
        "python3 -m pip install 'aiocoap[oscore]'",
    ) else {
        return;
    };
    // Both sides write their sequence numbers: copies of the sample contexts.
    let ctx = TempDir::new("oscore");
    for side in ["client", "server"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers/oscore-ctx")
            .join(side);
        std::fs::create_dir_all(ctx.path().join(side)).unwrap();
        for f in ["settings.json", "secret.json"] {
            std::fs::copy(from.join(f), ctx.path().join(side).join(f)).unwrap();
        }
    }
    let port = free_port("127.0.0.1");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oscore_server.py");
    let server = Proc::spawn(
        Command::new(python)
            .arg(&script)
            .args(["127.0.0.1", &port.to_string()])
            .arg(ctx.path().join("server"))
            .env("PYTHONUNBUFFERED", "1"),
    );
    assert!(
        server.wait_for_output(Duration::from_secs(30), |o| o.contains("ready")),
        "aiocoap did not start: {}",
        server.stderr()
    );
    let uri = format!("coap://127.0.0.1:{port}/hello");
    let client = ctx.path().join("client");
    let o = coapio(&["get", "--oscore", client.to_str().unwrap(), &uri], b"");
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "Hello, OSCORE");
    // Without the context the resource refuses.
    let o = coapio(&["get", &uri], b"");
    assert_status(&o, 1);
    // Through a credentials file (basedir relative to the current directory, as aiocoap).
    let creds = ctx.path().join("creds.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"coap://127.0.0.1:{port}/*": {{"oscore": {{"basedir": "{}"}}}}}}"#,
            client.display()
        ),
    )
    .unwrap();
    let o = coapio(
        &["get", "--credentials", creds.to_str().unwrap(), &uri],
        b"",
    );
    assert_status(&o, 0);
    assert_eq!(stdout(&o), "Hello, OSCORE");
}
