//! The server example's `--register` against aiocoap's resource directory (`aiocoap-rd`,
//! RFC 9176), run as `python -m aiocoap.cli.rd` on loopback:
//!
//! - a simple registration (§5.1) from a server on simple6, which has no address of its
//!   own: the directory fetches `/.well-known/core` from the address the registration came
//!   from, and the server answers over the socket it registered from (role reversal);
//! - a full registration (§5.3) from a server on udp6, with its links in the POST;
//!
//! both with a short lifetime, which they must renew for the directory to keep them.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{example, free_port, text, udp6_client};
use peers::{python_with, run, Proc};

/// Asks the directory `base` for `path` until `pred` holds of the answer's text, for at most
/// `limit`; the last text.
fn lookup(
    client: &coapio::Endpoint,
    base: &str,
    path: &str,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let end = Instant::now() + limit;
    loop {
        let body = run(client.get(&format!("{base}{path}")))
            .map(|r| text(&r))
            .unwrap_or_else(|e| format!("(failed: {e})"));
        if pred(&body) || Instant::now() > end {
            return body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_server_example_registers_with_aiocoap_rd_and_renews() {
    let Some(python) = python_with(
        "aiocoap.cli.rd",
        "python3 -m pip install aiocoap (its aiocoap-rd)",
    ) else {
        return;
    };
    let port = free_port("127.0.0.1");
    let base = format!("coap://127.0.0.1:{port}");
    let rd = Proc::spawn(Command::new(&python).args([
        "-m",
        "aiocoap.cli.rd",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]));
    let client = udp6_client();
    let up = lookup(
        &client.ep,
        &base,
        "/.well-known/core",
        Duration::from_secs(20),
        |b| b.contains("core.rd"),
    );
    assert!(
        up.contains("core.rd"),
        "aiocoap-rd did not come up: {up}\n{}",
        rd.stderr()
    );

    // A lifetime of 4 s, renewed every 3 s.
    let simple = Proc::spawn(Command::new(example("server")).args([
        "--transport",
        "simple6",
        "--register",
        &format!("{base}/.well-known/rd"),
        "--ep",
        "simple-node",
        "--lifetime",
        "4",
    ]));
    let full = Proc::spawn(Command::new(example("server")).args([
        "--bind",
        "127.0.0.1:0",
        "--register",
        &format!("{base}/resourcedirectory/"),
        "--ep",
        "full-node",
        "--lifetime",
        "4",
    ]));
    for (server, name) in [(&simple, "simple"), (&full, "full")] {
        assert!(
            server.wait_for_output(Duration::from_secs(10), |o| o.contains("registered with")),
            "the {name} registration did not happen:\n{}\n{}\n{}",
            server.stdout(),
            server.stderr(),
            rd.stderr()
        );
    }
    let both = |b: &str| b.contains("ep=\"simple-node\"") && b.contains("ep=\"full-node\"");
    let endpoints = lookup(
        &client.ep,
        &base,
        "/endpoint-lookup/",
        Duration::from_secs(5),
        both,
    );
    assert!(both(&endpoints), "{endpoints}");

    // The directory got the simple6 server's links by asking it, over its registration's
    // socket: nothing else can reach a simple6 server.
    let links = lookup(
        &client.ep,
        &base,
        "/resource-lookup/?ep=simple-node",
        Duration::from_secs(5),
        |b| b.contains("/hello>"),
    );
    assert!(
        links.contains("/hello>") && links.contains("/time>"),
        "{links}"
    );
    let links = lookup(
        &client.ep,
        &base,
        "/resource-lookup/?ep=full-node",
        Duration::from_secs(5),
        |b| b.contains("/hello>"),
    );
    assert!(links.contains("/hello>"), "{links}");

    // Within 7 s, a lifetime of 4 s is renewed twice (at 3 and 6 s): the simple registration
    // by registering again (the directory asking for the links each time), the full one by
    // updates to its location (RFC 9176 §5.3.1), not new registrations. (aiocoap-rd keeps a
    // registration 15 s past its lifetime, so its lookup alone would not show a renewal.)
    std::thread::sleep(Duration::from_secs(7));
    let renewals = |p: &Proc, what: &str| p.stdout().matches(what).count();
    assert!(
        renewals(&simple, "registered with") >= 3,
        "the simple registration was not renewed:\n{}{}",
        simple.stdout(),
        simple.stderr()
    );
    assert_eq!(
        (
            renewals(&full, "registered with"),
            renewals(&full, "renewed the registration") >= 2
        ),
        (1, true),
        "the full registration was not updated:\n{}{}",
        full.stdout(),
        full.stderr()
    );
    let endpoints = lookup(
        &client.ep,
        &base,
        "/endpoint-lookup/",
        Duration::from_secs(2),
        both,
    );
    assert!(both(&endpoints), "{endpoints}");
    drop((simple, full));
    client.stop();
}
