//! The C examples (`examples-c/`) built with their Makefile against a freshly built library,
//! and run as a person would run them: the C client against the C server, the C client
//! against libcoap's `coap-server-notls`, libcoap's `coap-client-notls` against the C server,
//! the poll(2) and libuv loops end to end, the Python asyncio embedding, and a short run of
//! the load client. Their outputs are checked, not only their exit codes.
//!
//! The same runs are repeated under AddressSanitizer + UBSan (the `asan` build, linked to the
//! static library; zero reports, leaks included where LeakSanitizer works) and under valgrind
//! (the dynamically linked build, the release library; errors and leaks "definitely" or
//! "possibly lost" fail, "still reachable" does not; `ffi/valgrind.supp` names the one report
//! that is not ours, and why).
//!
//! `make -C examples-c all asan` builds the library with `cargo rustc --crate-type
//! cdylib,staticlib` into `<target>/capi`, its own target directory, so that it never waits for
//! the build lock that this `cargo test` holds.
//!
//! A peer that is missing (make and a C compiler, libcoap's tools, libuv's headers, valgrind,
//! python3) makes the part that needs it print `skipped: …` and pass, unless
//! `COAPIO_REQUIRE_PEERS=1`, as CI sets it, turns the skip into a failure.
#![cfg(feature = "capi")]

mod common;

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples-c");
const LIBCOAP_CLIENT: &str = "coap-client-notls";
const LIBCOAP_SERVER: &str = "coap-server-notls";
const VALGRIND_SUPP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ffi/valgrind.supp");

// ---- peers --------------------------------------------------------------------------------

fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Says that `what` is skipped (or fails, with `COAPIO_REQUIRE_PEERS=1`).
fn skip(what: &str, install: &str) {
    common::skip_or_fail(&format!("skipped: {what} (install with `{install}`)"));
}

/// Whether the programs are installed; if not, says what is skipped.
fn present(programs: &[&str], what: &str, install: &str) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !in_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    skip(
        &format!("{what}: {} not found", missing.join(", ")),
        install,
    );
    false
}

// ---- processes ----------------------------------------------------------------------------

/// A child process whose output is collected as it comes; killed (by its PID) and reaped
/// when dropped.
struct Proc {
    child: Child,
    what: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
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

    /// Waits (at most `limit`) until `pred` holds for stdout.
    fn wait_for_stdout(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if pred(&self.stdout()) {
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
                "{} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                self.what,
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }

    /// Asks the process to stop as a person would, with SIGTERM.
    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: plain syscall on the PID of our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished program did.
struct Ran {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn show(&self) -> String {
        format!(
            "{}: {}\nstdout:\n{}\nstderr:\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts exit status 0 and that stdout contains every one of `needles`.
    fn ok_with(&self, needles: &[&str]) -> &Self {
        assert!(self.status.success(), "{}", self.show());
        self.has(needles)
    }

    fn has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stdout.contains(n), "{n:?} missing\n{}", self.show());
        }
        self
    }
}

fn run(cmd: &mut Command, limit: Duration) -> Ran {
    // cargo test puts target/debug on the library path, where a stale libcoapio.so from a
    // manual `cargo rustc --crate-type cdylib` would shadow the one the examples link to.
    cmd.env_remove("LD_LIBRARY_PATH");
    let mut p = Proc::spawn(cmd);
    let status = p.finish(limit);
    Ran {
        what: p.what.clone(),
        status,
        stdout: p.stdout(),
        stderr: p.stderr(),
    }
}

/// A UDP port that was free a moment ago: bound to port 0, read, dropped.
fn free_port() -> u16 {
    let s = UdpSocket::bind("[::1]:0").expect("bind [::1]:0");
    s.local_addr().unwrap().port()
}

// ---- the build ----------------------------------------------------------------------------

fn capi_dir() -> PathBuf {
    common::target_dir().join("capi")
}

struct Built {
    libuv: bool,
}

/// Builds the library and every example, plain and ASan, once for all tests; `None` when
/// make or a C compiler is missing (after saying so).
fn built() -> Option<&'static Built> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if !in_path("make") || !in_path("cc") {
            return Err("skip".into());
        }
        let started = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ran = run(
            Command::new("make")
                .args(["-C", EXAMPLES, "all", "asan"])
                .arg(format!("CARGO_TARGET_DIR={}", capi_dir().display()))
                .arg(format!("CARGO={cargo}")),
            Duration::from_secs(600),
        );
        if !ran.status.success() {
            return Err(ran.show());
        }
        println!(
            "built the library and the C examples in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Built {
            libuv: Path::new(EXAMPLES).join("build/libuv_loop").exists(),
        })
    });
    match built {
        Ok(b) => Some(b),
        Err(e) if e == "skip" => {
            skip(
                "the C examples: make or cc not found",
                "apt-get install build-essential",
            );
            None
        }
        Err(e) => panic!("make -C examples-c all asan failed:\n{e}"),
    }
}

// ---- how a program runs: plain, under ASan, under valgrind --------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavor {
    Plain,
    Asan,
    Valgrind,
}

/// `ASAN_OPTIONS` for the ASan runs: leak detection on, unless LeakSanitizer cannot work here
/// (it stops under ptrace, as in some containers and debuggers), which a leaking probe program
/// finds out; then the test says so and checks memory errors only.
fn asan_options() -> &'static str {
    static OPTIONS: OnceLock<&'static str> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let (src, exe) = (dir.join("lsan_probe.c"), dir.join("lsan_probe"));
        std::fs::write(
            &src,
            "#include <stdlib.h>\nint main(void) { void *volatile p = malloc(42); p = 0; \
             (void)p; return 0; }\n",
        )
        .expect("write the LeakSanitizer probe");
        let cc = run(
            Command::new("cc")
                .args(["-fsanitize=address", "-g", "-o"])
                .arg(&exe)
                .arg(&src),
            Duration::from_secs(60),
        );
        assert!(cc.status.success(), "{}", cc.show());
        let probe = run(
            Command::new(&exe).env("ASAN_OPTIONS", "detect_leaks=1"),
            Duration::from_secs(30),
        );
        if probe.stderr.contains("detected memory leaks") {
            "detect_leaks=1"
        } else {
            let why = probe
                .stderr
                .lines()
                .find(|l| l.contains("LeakSanitizer"))
                .unwrap_or("no report for a leak");
            println!(
                "note: LeakSanitizer does not work here ({}); the ASan runs check memory \
                 errors and undefined behaviour, not leaks",
                why.trim()
            );
            "detect_leaks=0"
        }
    })
}

impl Flavor {
    fn command(self, program: &str) -> Command {
        let ex = Path::new(EXAMPLES);
        match self {
            Self::Plain => Command::new(ex.join("build").join(program)),
            Self::Asan => {
                let mut c = Command::new(ex.join("build/asan").join(program));
                c.env("ASAN_OPTIONS", asan_options())
                    .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
                c
            }
            Self::Valgrind => {
                let mut c = Command::new("valgrind");
                c.args([
                    "-q",
                    "--error-exitcode=99",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite,possible",
                    "--show-leak-kinds=definite,possible",
                    &format!("--suppressions={VALGRIND_SUPP}"),
                ])
                .arg(ex.join("build").join(program));
                c
            }
        }
    }

    /// How long a program may take in this flavour.
    fn limit(self) -> Duration {
        match self {
            Self::Plain | Self::Asan => Duration::from_secs(20),
            Self::Valgrind => Duration::from_secs(60),
        }
    }

    /// Asserts that the run had no sanitizer or valgrind report.
    fn clean(self, ran: &Ran) {
        let reports: &[&str] = match self {
            Self::Plain => &[],
            Self::Asan => &["Sanitizer", "runtime error:"],
            Self::Valgrind => &[
                "definitely lost",
                "possibly lost",
                "Invalid read",
                "Invalid write",
                "uninitialised",
            ],
        };
        for r in reports {
            assert!(
                !ran.stderr.contains(r),
                "{self:?} reported {r:?}:\n{}",
                ran.show()
            );
        }
        assert_ne!(
            ran.status.code(),
            Some(99),
            "valgrind errors:\n{}",
            ran.show()
        );
    }

    fn run(self, program: &str, args: &[&str]) -> Ran {
        let ran = run(self.command(program).args(args), self.limit());
        self.clean(&ran);
        ran
    }
}

// ---- the C server, and libcoap's ----------------------------------------------------------

struct CServer {
    proc: Proc,
    port: u16,
    flavor: Flavor,
}

impl CServer {
    fn start(flavor: Flavor) -> Self {
        // --exit-after: a bound in case the test itself dies without killing it.
        let proc = Proc::spawn(
            flavor
                .command("server")
                .args(["[::1]:0", "--exit-after", "180"])
                .env_remove("LD_LIBRARY_PATH"),
        );
        let listening = proc.wait_for_stdout(flavor.limit(), |o| {
            o.lines().any(|l| l.starts_with("listening on "))
        });
        assert!(
            listening,
            "the C server did not say where it listens:\n{}\n{}",
            proc.stdout(),
            proc.stderr()
        );
        let out = proc.stdout();
        let line = out
            .lines()
            .find(|l| l.starts_with("listening on "))
            .unwrap();
        assert!(line.starts_with("listening on [::1]:"), "{line}");
        let port: u16 = line.rsplit(':').next().unwrap().parse().expect(line);
        assert_ne!(port, 0, "port 0 is replaced by the port the server got");
        Self { proc, port, flavor }
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://[::1]:{}{path}", self.port)
    }

    /// SIGTERM, then the server must exit 0 having said so (and, under ASan or valgrind,
    /// reported nothing, leaks included).
    fn stop(mut self) -> String {
        self.proc.terminate();
        let status = self.proc.finish(self.flavor.limit());
        let ran = Ran {
            what: self.proc.what.clone(),
            status,
            stdout: self.proc.stdout(),
            stderr: self.proc.stderr(),
        };
        self.flavor.clean(&ran);
        ran.ok_with(&["stopping on a signal", "served; the counter is"]);
        ran.stdout
    }
}

/// libcoap's example server on [::1], once it answers a CoAP ping.
fn libcoap_server() -> (Proc, u16) {
    let port = free_port();
    let server =
        Proc::spawn(Command::new(LIBCOAP_SERVER).args(["-A", "::1", "-p", &port.to_string()]));
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        // CON, empty, message ID 0x1234: a CoAP ping; the answer is a Reset.
        let _ = sock.send_to(&[0x40, 0x00, 0x12, 0x34], ("::1", port));
        let mut buf = [0u8; 16];
        if let Ok((4, _)) = sock.recv_from(&mut buf) {
            assert_eq!(buf[..4], [0x70, 0x00, 0x12, 0x34]);
            return (server, port);
        }
        assert!(
            Instant::now() < end,
            "coap-server-notls does not answer on port {port}:\n{}",
            server.stderr()
        );
    }
}

// ---- the runs -----------------------------------------------------------------------------

/// The C client against the C server, then libcoap's client against the same server.
fn c_server_with_c_and_libcoap_clients(f: Flavor, libcoap: bool) {
    let server = CServer::start(f);

    let hello = server.uri("/hello");
    f.run("client", &[&hello]).ok_with(&[&format!(
        "GET {hello}\n2.05 Content (Content-Format 0, 13 bytes)\nHello, world!\n"
    )]);
    let counter = server.uri("/counter");
    f.run("client", &[&counter, "41"]).ok_with(&[
        &format!("GET {counter}\n2.05 Content (Content-Format 0, 1 bytes)\n0\n"),
        &format!(
            "PUT {counter} with payload \"41\"\n2.04 Changed (Content-Format 0, 2 bytes)\n41\n"
        ),
    ]);
    let later = f.run("client", &[&server.uri("/later")]);
    later.ok_with(&["2.05 Content", "Answered later, after "]);
    let ms: u64 = later
        .stdout
        .split("after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", later.show()));
    assert!(ms >= 500, "/later answered after {ms} ms");
    f.run("client", &[&server.uri("/.well-known/core")])
        .ok_with(&[
            "2.05 Content (Content-Format 40,",
            "</counter>;rt=\"counter\";if=\"core.rp\";ct=0",
            "</hello>;rt=\"greeting\";title=\"Hello, world\";ct=0",
            "</later>;rt=\"delayed\"",
        ]);
    // An error response is a response: printed, status 0.
    f.run("client", &[&counter, "abc"])
        .ok_with(&["4.00 Bad Request", "PUT a number, such as 42"]);
    // A block-wise (Block1) PUT of 5000 bytes to a path the server does not have: the library
    // answers 4.04 itself. Under valgrind this once reported "uninitialised value" in the
    // server's shape_blockwise (ffi/README.md, "valgrind").
    let (missing, payload) = (server.uri("/missing"), "x".repeat(5000));
    let ran = f.run("client", &[&missing, &payload]);
    ran.ok_with(&[&format!(
        "GET {missing}\n4.04 Not Found (0 bytes)\nPUT {missing} with payload \"{payload}\"\n\
         4.04 Not Found (0 bytes)\n"
    )]);

    if f != Flavor::Valgrind {
        // The load client, briefly: 200 requests, 8 in flight.
        f.run("bench_client", &[&hello, "8", "5", "200"])
            .ok_with(&["window=8 ", "answered=200 failed=0 unanswered=0"]);
        // Failures: one line on stderr, status 1; bad usage, status 2.
        let closed = free_port();
        let ran = f.run("client", &[&format!("coap://[::1]:{closed}/x")]);
        assert_eq!(ran.status.code(), Some(1), "{}", ran.show());
        assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.show());
        assert!(ran.stderr.contains("remote unreachable"), "{}", ran.show());
        let ran = f.run("client", &["coap://[::1/x"]);
        assert_eq!(ran.status.code(), Some(1), "{}", ran.show());
        assert!(ran.stderr.contains("invalid URI"), "{}", ran.show());
        assert_eq!(f.run("client", &[]).status.code(), Some(2));
    }

    if libcoap {
        let client = |args: &[&str], path: &str| {
            run(
                Command::new(LIBCOAP_CLIENT)
                    .args(["-B", "10"])
                    .args(args)
                    .arg(server.uri(path)),
                Duration::from_secs(20),
            )
        };
        // coap-client exits 0 whatever happened: the payload it prints is what counts.
        client(&[], "/hello").ok_with(&["Hello, world!"]);
        client(&["-m", "post"], "/counter").ok_with(&["42"]);
        client(&["-m", "put", "-e", "17"], "/counter").ok_with(&["17"]);
        client(&[], "/counter").ok_with(&["17"]);
        client(&[], "/.well-known/core").ok_with(&[
            "</counter>;rt=\"counter\";if=\"core.rp\";ct=0",
            "</later>;rt=\"delayed\"",
        ]);
        // A separate response: the empty ACK first, then the answer in a CON.
        let r = client(&["-v", "7"], "/later");
        r.ok_with(&["Answered later"]);
        let ack = r
            .stdout
            .find("t:ACK c:0.00")
            .unwrap_or_else(|| panic!("no empty ACK\n{}", r.show()));
        let con = r
            .stdout
            .find("t:CON c:2.05")
            .unwrap_or_else(|| panic!("no CON 2.05\n{}", r.show()));
        assert!(ack < con, "the empty ACK comes first\n{}", r.show());
        // A method the resource does not take: 4.05 from the library.
        let r = client(&["-m", "delete"], "/counter");
        assert!(r.stderr.contains("4.05"), "{}", r.show());
    }

    let log = server.stop();
    for line in [
        "GET /hello from [::1]:",
        "PUT /counter from [::1]:",
        "/later is due",
    ] {
        assert!(
            log.contains(line),
            "{line:?} missing from the server's log:\n{log}"
        );
    }
    if libcoap {
        assert!(log.contains("POST /counter from"), "{log}");
        assert!(log.contains("served; the counter is 17"), "{log}");
    }
}

/// The C client against libcoap's server: its index, and its clock read and set.
fn c_client_with_libcoap_server(f: Flavor) {
    let (_server, port) = libcoap_server();
    let base = format!("coap://[::1]:{port}");
    f.run("client", &[&format!("{base}/")])
        .ok_with(&["2.05 Content", "This is a test server made with libcoap"]);
    let time = f.run("client", &[&format!("{base}/time"), "1000"]);
    time.ok_with(&[
        "2.05 Content",
        &format!("PUT {base}/time with payload \"1000\"\n2.04 Changed"),
    ]);
    // The clock's text, such as "Nov 22 04:17:36".
    let clock = time.stdout.lines().nth(2).unwrap_or("");
    assert!(
        clock.len() >= 15 && clock.matches(':').count() == 2,
        "{}",
        time.show()
    );
}

fn loops(f: Flavor, built: &Built) {
    f.run("poll_loop", &[]).ok_with(&[
        "client: GET /hello -> 2.05 Content \"Hello from the poll loop\"",
        "client: POST /echo \"ping\" -> 2.04 Changed \"ping\"",
        "app: 300 ms have passed, answering /slow",
        "client: GET /slow -> 2.05 Content \"Slow, but here\"",
        "all 3 requests answered",
    ]);
    if built.libuv {
        f.run("libuv_loop", &[]).ok_with(&[
            "client: GET /hello -> 2.05 Content \"Hello from libuv\"",
            "client: POST /echo \"ping\" -> 2.04 Changed \"ping\"",
            "app: the uv timer fired after 300 ms, answering /slow",
            "client: GET /slow -> 2.05 Content \"Slow, but here\"",
            "all 3 requests answered",
        ]);
    } else if f == Flavor::Plain {
        skip("libuv_loop: uv.h not found", "apt-get install libuv1-dev");
    }
    // Observe (RFC 7641): a server and a client context in one program.
    f.run("observe", &["4"]).ok_with(&[
        "notification 0: Observe 2, counter 0",
        "notification 1: Observe 3, counter ",
        "notification 4: Observe 6, counter ",
        "deregistered: the server answered Content without Observe",
        "the server has 0 observers now",
        "done: 4 notifications after the first response",
    ]);
    // DTLS (coaps://, a pre-shared key): a server and a client context in one program.
    f.run("dtls", &[]).ok_with(&[
        "client: GET coaps://[::1]:",
        "-> ok \"only for those with the key\"",
        "stranger with a wrong key: DTLS failed (credentials or handshake) (network error for [::1]:",
        "DTLS: the handshake timed out",
        "done: DTLS works from C",
    ]);
    // OSCORE (RFC 8613): a server requiring it and a client protecting its requests.
    f.run("oscore", &[]).ok_with(&[
        "client with OSCORE: GET coap://[::1]:",
        "-> ok 2.05 \"sealed end to end\"",
        "client without OSCORE: ok 4.01 \"OSCORE required\"",
        "done: OSCORE works from C",
    ]);
}

fn python_embedding() {
    if !present(
        &["python3"],
        "the asyncio embedding",
        "apt-get install python3",
    ) {
        return;
    }
    let lib = capi_dir().join("release/libcoapio.so");
    run(
        Command::new("python3")
            .arg(Path::new(EXAMPLES).join("asyncio_embed.py"))
            .arg(&lib),
        Duration::from_secs(30),
    )
    .ok_with(&[
        "both contexts are driven by asyncio (add_reader + call_later)",
        "client: GET /hello -> 2.05 Content \"Hello from asyncio\"",
        "server: GET /slow, asyncio will answer in 300 ms",
        "client: GET /slow -> 2.05 Content \"Answered by an asyncio timer\"",
        "both responses came through asyncio",
    ]);
}

fn all_runs(f: Flavor, built: &Built) {
    let started = Instant::now();
    let libcoap = present(
        &[LIBCOAP_CLIENT, LIBCOAP_SERVER],
        "the runs with libcoap",
        "apt-get install libcoap3-bin",
    );
    c_server_with_c_and_libcoap_clients(f, libcoap);
    if libcoap {
        c_client_with_libcoap_server(f);
    }
    loops(f, built);
    println!(
        "{f:?}: the C examples ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn c_examples_run_against_each_other_libcoap_and_python() {
    let Some(built) = built() else { return };
    all_runs(Flavor::Plain, built);
    python_embedding();
}

#[test]
fn c_examples_under_asan() {
    let Some(built) = built() else { return };
    all_runs(Flavor::Asan, built);
}

#[test]
fn c_examples_under_valgrind() {
    let Some(built) = built() else { return };
    if !present(
        &["valgrind"],
        "the valgrind runs",
        "apt-get install valgrind",
    ) {
        return;
    }
    all_runs(Flavor::Valgrind, built);
}
