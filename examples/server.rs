//! A CoAP server with a few resources.
//!
//! ```text
//! cargo run --example server -- [--bind ADDR] [--transport udp6|simplesocketserver]
//! ```
//!
//! Resources: `/hello` (GET: "Hello, world!"), `/time` (GET: the UTC time; observable,
//! notified every second), `/slow` (GET:
//! answered after 3 s, so the client first gets an empty ACK and then a separate response),
//! `/echo` (POST or PUT: the payload back), and `/.well-known/core`. `--bind` defaults to
//! `[::]:5683`; with port 0 the server prints the port it got.

use std::process::ExitCode;
use std::time::Duration;

use coapio::{Endpoint, TransportKind};

mod common;

fn main() -> ExitCode {
    common::log_to_stderr();
    let mut bind = "[::]:5683".to_string();
    let mut transport = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--bind", Some(v)) => bind = v,
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
                eprintln!("usage: server [--bind ADDR] [--transport udp6|simplesocketserver]");
                return ExitCode::from(2);
            }
        }
    }
    let Ok(addr) = bind.parse() else {
        eprintln!("--bind {bind:?} is not an address like [::]:5683 or 127.0.0.1:5683");
        return ExitCode::from(2);
    };
    let mut builder = Endpoint::builder()
        .bind(addr)
        .site(common::example_site(Duration::from_secs(3)));
    if let Some(t) = transport {
        builder = builder.transport(t);
    }
    let (endpoint, driver) = match builder.build() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot serve on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    common::tick(endpoint.clone());
    match endpoint.local_addr() {
        Ok(a) => println!("listening on {a}"),
        Err(_) => println!("listening on {bind}"),
    }
    match async_io::block_on(driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
