//! A CoAP server with a few resources.
//!
//! ```text
//! cargo run --example server -- [--bind ADDR] [--transport udp6|simplesocketserver]
//! ```
//!
//! Resources: `/hello` (GET: "Hello, world!"), `/time` (GET: the UTC time; observable,
//! notified every second), `/slow` (GET:
//! answered after 3 s, so the client first gets an empty ACK and then a separate response),
//! `/echo` (POST or PUT: the payload back), `/worker` (which worker answered), and
//! `/.well-known/core`. `--bind` defaults to `[::]:5683`; with port 0 the server prints the
//! port it got.
//!
//! `--psk-identity TEXT --psk-key TEXT` and/or `--cert FILE --key FILE` (PEM; `--ca FILE` to
//! ask for and verify client certificates) also serve the resources over DTLS (`coaps://`;
//! build with `--features dtls`) on `--bind-dtls ADDR`, by default the `--bind` address with
//! its port + 1, as libcoap's server does.
//!
//! `--oscore DIR` serves every resource only to requests protected with the OSCORE security
//! context in DIR, in aiocoap's format (`settings.json`, `secret.json`, `sequence.json`; build
//! with `--features oscore`); unprotected requests get 4.01.
//!
//! `--multicast IF` (repeatable) joins the All-CoAP-Nodes groups (`ff02::fd`, `ff05::fd`,
//! `224.0.1.187`) on interface IF: requests to them are answered from a unicast address after
//! a random leisure, and error responses to them are not sent (RFC 7252 §8.2).
//!
//! `--workers N` runs N endpoints on N threads, each with its own socket on the same port
//! (`SO_REUSEPORT`). The kernel spreads clients over the sockets by their address and port and
//! keeps each client on one socket, so the state kept per client (deduplication, block-wise
//! transfers, observations) stays with one worker; observers of `/time` are notified by the
//! worker they registered with.

use std::process::ExitCode;
use std::time::Duration;

use coapio::proto::Response;
use coapio::server::get;
use coapio::{Endpoint, TransportKind};

mod common;

fn main() -> ExitCode {
    common::log_to_stderr();
    let mut bind = "[::]:5683".to_string();
    let mut transport = None;
    let mut workers = 1usize;
    let mut multicast: Vec<String> = Vec::new();
    let mut dtls = common::DtlsFlags::default();
    let mut bind_dtls = None;
    let mut oscore = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--bind", Some(v)) => bind = v,
            ("--multicast", Some(v)) => multicast.push(v),
            ("--bind-dtls", Some(v)) => bind_dtls = Some(v),
            ("--oscore", Some(v)) => oscore = Some(v),
            (flag @ ("--psk-identity" | "--psk-key" | "--cert" | "--key" | "--ca"), v) => {
                if let Err(e) = dtls.take(flag, v) {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
            ("--workers", Some(v)) => match v.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => workers = n,
                _ => {
                    eprintln!("--workers takes a number from 1 to 64");
                    return ExitCode::from(2);
                }
            },
            ("--transport", Some(v)) => {
                transport = Some(match v.as_str() {
                    "udp6" => TransportKind::Udp6,
                    "simplesocketserver" => TransportKind::SimpleSocketServer,
                    _ => {
                        eprintln!("--transport: udp6 or simplesocketserver");
                        return ExitCode::from(2);
                    }
                })
            }
            _ => {
                eprintln!(
                    "usage: server [--bind ADDR] [--workers N] [--multicast IF]... [--transport udp6|simplesocketserver] [--psk-identity TEXT --psk-key TEXT] [--cert FILE --key FILE] [--ca FILE] [--bind-dtls ADDR] [--oscore DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Ok(addr) = bind.parse() else {
        eprintln!("--bind {bind:?} is not an address like [::]:5683 or 127.0.0.1:5683");
        return ExitCode::from(2);
    };
    if oscore.is_some() && workers > 1 {
        eprintln!("--oscore serves with one worker: a security context's sequence numbers and replay window are one process's");
        return ExitCode::from(2);
    }
    let mut addr: std::net::SocketAddr = addr;
    let mut drivers = Vec::new();
    for worker in 0..workers {
        let site = common::example_site(Duration::from_secs(3)).resource(
            "/worker",
            get(move |_req| async move { Response::content(format!("worker {worker}")) }),
        );
        let mut builder = Endpoint::builder()
            .bind(addr)
            .site(site)
            .reuse_port(workers > 1);
        for interface in &multicast {
            let Some(index) = coapio::transport::interface_index(interface) else {
                eprintln!("--multicast {interface}: no such network interface");
                return ExitCode::from(2);
            };
            for group in coapio::transport::ALL_COAP_NODES {
                builder = builder.join_multicast(group, index);
            }
        }
        if let Some(t) = transport {
            builder = builder.transport(t);
        }
        if let Some(dir) = &oscore {
            match common::oscore_dir(builder, None, dir) {
                Ok(b) => builder = common::require_oscore(b),
                Err(e) => {
                    eprintln!("--oscore {dir}: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        let (endpoint, driver) = match builder.build() {
            Ok(x) => x,
            Err(e) => {
                eprintln!("cannot serve on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        common::tick(endpoint.clone());
        if let Ok(local) = endpoint.local_addr() {
            // The next workers share the port the first one got.
            addr.set_port(local.port());
        }
        drivers.push(driver);
    }
    if workers > 1 {
        println!("listening on {addr} ({workers} workers)");
    } else {
        println!("listening on {addr}");
    }
    if dtls.any() {
        let dtls_addr = match bind_dtls.as_deref().map(str::parse) {
            None => {
                let mut a = addr;
                a.set_port(addr.port().wrapping_add(1));
                a
            }
            Some(Ok(a)) => a,
            Some(Err(_)) => {
                eprintln!("--bind-dtls takes an address like [::]:5684");
                return ExitCode::from(2);
            }
        };
        let site = common::example_site(Duration::from_secs(3));
        match dtls.server(dtls_addr, site) {
            Ok((endpoint, driver, local)) => {
                println!("listening for coaps on {local}");
                common::tick(endpoint);
                drivers.insert(0, driver);
            }
            Err(e) => {
                eprintln!("cannot serve coaps on {dtls_addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let last = drivers.pop().expect("at least one worker");
    for driver in drivers {
        std::thread::spawn(move || {
            if let Err(e) = async_io::block_on(driver) {
                eprintln!("a worker failed: {e}");
            }
        });
    }
    let driver = last;
    match async_io::block_on(driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
