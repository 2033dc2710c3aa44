//! udp6 on a system without IPv6: the test runs itself again with an `LD_PRELOAD` shim
//! (`tests/peers/no_ipv6.c`, built here with the C compiler) that makes every `AF_INET6`
//! `socket()` fail with `EAFNOSUPPORT`, as a kernel booted with `ipv6.disable=1` does. In that
//! process a udp6 server and client must still talk over IPv4, and a warning must say why.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use coapio::message::Code;
use coapio::transport::{Transport, Udp6};

use common::{example_site, text, udp6_client, udp6_server};

/// Set in the child process, which runs the checks under the shim.
const CHILD: &str = "COAPIO_TEST_WITHOUT_IPV6";

#[test]
fn udp6_falls_back_to_ipv4_when_the_system_has_no_ipv6() {
    if std::env::var_os(CHILD).is_some() {
        return without_ipv6();
    }
    let Some(shim) = build_shim() else { return };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "udp6_falls_back_to_ipv4_when_the_system_has_no_ipv6",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("LD_PRELOAD", &shim)
        .output()
        .expect("cannot run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the checks without IPv6 failed:\n{stdout}\n{stderr}"
    );
    // The child printed this after its last check: it ran, under the shim.
    assert!(
        stdout.contains("without IPv6: all checks passed"),
        "{stdout}\n{stderr}"
    );
}

/// Builds the shim into the test's scratch directory; `None` (skipped, or failed with
/// `COAPIO_REQUIRE_PEERS=1`) without a C compiler.
fn build_shim() -> Option<PathBuf> {
    let so = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no_ipv6.so");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/no_ipv6.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    match Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&so)
        .arg(src)
        .arg("-ldl")
        .output()
    {
        Ok(out) if out.status.success() => Some(so),
        Ok(out) => panic!(
            "cannot build the no-IPv6 shim with {cc}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            peers::skip_or_fail(&format!(
                "skipped: the IPv4 fallback test needs a C compiler ({cc}: {e}; install with \
                 `apt-get install gcc`)"
            ));
            None
        }
    }
}

/// Logged records, to check the warning.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// The checks, in the child process under the shim.
fn without_ipv6() {
    log::set_logger(&Recorder).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    // The shim works: no IPv6 socket can be made.
    let e = std::net::UdpSocket::bind("[::1]:0").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EAFNOSUPPORT), "{e}");

    // The transport falls back, binding [::] as 0.0.0.0 and IPv4-mapped as IPv4, and says so.
    let udp6 = Udp6::bind("[::]:0".parse().unwrap()).expect("udp6 without IPv6");
    assert!(udp6.is_ipv4_only());
    assert_eq!(
        Transport::local_addr(&udp6).unwrap().ip(),
        std::net::Ipv4Addr::UNSPECIFIED
    );
    let mapped = Udp6::bind("[::ffff:127.0.0.1]:0".parse().unwrap()).unwrap();
    assert_eq!(
        Transport::local_addr(&mapped).unwrap().ip(),
        std::net::Ipv4Addr::LOCALHOST
    );
    // An IPv6 address cannot be bound: a clear error.
    let e = Udp6::bind("[::1]:0".parse().unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable, "{e}");
    assert!(e.to_string().contains("no IPv6"), "{e}");
    let warned = LOGGED.lock().unwrap().clone();
    assert!(
        warned
            .iter()
            .any(|m| m.contains("no IPv6") && m.contains("IPv4 socket")),
        "no warning about the fallback: {warned:?}"
    );

    // A server on [::] (the default address) and a client, both udp6, talk over IPv4, the
    // reply leaving from the address the request came to (IP_PKTINFO).
    let server = udp6_server("[::]:0", example_site());
    let port = server.port();
    let client = udp6_client();
    let response = peers::run(client.ep.get(&format!("coap://127.0.0.1:{port}/hello")))
        .expect("GET over IPv4 without IPv6");
    assert_eq!(response.code, Code::CONTENT);
    assert_eq!(text(&response), "Hello, world!");
    let response = peers::run(client.ep.get(&format!("coap://127.0.0.2:{port}/hello")))
        .expect("GET to 127.0.0.2");
    assert_eq!(text(&response), "Hello, world!");

    // An IPv6 remote fails at once, with the transport's reason, not by timing out.
    let started = std::time::Instant::now();
    let e = peers::run(client.ep.get(&format!("coap://[::1]:{port}/hello"))).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    assert!(e.to_string().contains("network unreachable"), "{e}");
    client.stop();
    server.stop();
    println!("without IPv6: all checks passed");
}
