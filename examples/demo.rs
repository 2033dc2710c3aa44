//! The README's first command: a server and a client in one process, talking CoAP over
//! loopback, with what happens printed.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The server binds `[::1]` on a free port and serves the example resources; the client GETs
//! `/hello` and `/time`, POSTs to `/echo` (Confirmable, then Non-confirmable), GETs the slow
//! resource (which arrives as a separate response after an empty ACK), a path that does not
//! exist, and `/.well-known/core`, and asks a closed port (which fails at once: the ICMP
//! error is read from the socket's error queue, no retransmissions are waited out).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use coapio::message::Code;
use coapio::proto::Request;
use coapio::Endpoint;

mod common;
use coapio::Report;

fn main() -> ExitCode {
    common::log_to_stderr();
    let site = common::example_site(Duration::from_millis(500));
    let (server, server_driver) = match Endpoint::server("[::1]:0", site) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}", Report(&e));
            return ExitCode::FAILURE;
        }
    };
    let (client, client_driver) = match Endpoint::client() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot open a client socket: {}", Report(&e));
            return ExitCode::FAILURE;
        }
    };
    let port = server.local_addr().map_or(0, |a| a.port());
    println!("server listening on [::1]:{port}\n");
    let base = format!("coap://[::1]:{port}");
    let closed = std::net::UdpSocket::bind("[::1]:0")
        .and_then(|s| s.local_addr())
        .map_or(1, |a| a.port());

    let demo = async {
        let mut failures = 0;
        let steps: Vec<(&str, String, Request)> = vec![
            ("GET", format!("{base}/hello"), Request::new(Code::GET)),
            ("GET", format!("{base}/time"), Request::new(Code::GET)),
            (
                "POST",
                format!("{base}/echo"),
                Request::new(Code::POST).with_payload("ping"),
            ),
            (
                "POST NON",
                format!("{base}/echo"),
                Request::new(Code::POST)
                    .with_payload("ping")
                    .non_confirmable(),
            ),
            ("GET", format!("{base}/slow"), Request::new(Code::GET)),
            (
                "GET",
                format!("{base}/nothing-here"),
                Request::new(Code::GET),
            ),
            (
                "GET",
                format!("{base}/.well-known/core"),
                Request::new(Code::GET),
            ),
            (
                "GET",
                format!("coap://[::1]:{closed}/hello"),
                Request::new(Code::GET),
            ),
        ];
        for (label, uri, request) in steps {
            let start = Instant::now();
            let result = client.request(&uri, request).await;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(r) => println!(
                    "{label:8} {uri}\n         -> {} {:?}  ({ms:.1} ms)\n",
                    r.code,
                    String::from_utf8_lossy(&r.payload)
                ),
                Err(e) => {
                    println!("{label:8} {uri}\n         -> failed: {e}  ({ms:.1} ms)\n");
                    if !uri.contains(&format!(":{closed}/")) {
                        failures += 1;
                    }
                }
            }
        }
        server.shutdown();
        client.shutdown();
        failures
    };
    let (drivers, failures) = async_io::block_on(futures::future::join(
        futures::future::join(server_driver, client_driver),
        demo,
    ));
    if let Err(e) = drivers.0.and(drivers.1) {
        eprintln!("socket error: {}", Report(&e));
        return ExitCode::FAILURE;
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
