//! Multicast discovery (RFC 7252 §8, RFC 6690 §4): asks every CoAP server on a link and prints
//! one line per server that answers.
//!
//! ```text
//! cargo run --example discover -- --interface IF [--timeout SECONDS] [--ipv4] [PATH]
//! ```
//!
//! Sends a GET of PATH (default `/.well-known/core`) to `ff02::fd` on interface IF (or to
//! `224.0.1.187` with `--ipv4`), collects answers for `--timeout` seconds (default 6: servers
//! wait up to 5 s of leisure before answering), and prints for each server its unicast
//! address, the response code and the payload.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;

use coapio::message::Code;
use coapio::proto::{Config, Request};
use coapio::Endpoint;

mod common;
use coapio::Report;

fn main() -> ExitCode {
    common::log_to_stderr();
    let (mut interface, mut timeout, mut ipv4, mut path) = (None, 6.0f64, false, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--interface" => interface = args.next(),
            "--timeout" => match args.next().and_then(|t| t.parse().ok()) {
                Some(t) if t > 0.0 && t < 3600.0 => timeout = t,
                _ => {
                    eprintln!("--timeout takes a number of seconds");
                    return ExitCode::from(2);
                }
            },
            "--ipv4" => ipv4 = true,
            p if p.starts_with('/') && path.is_none() => path = Some(p.to_string()),
            _ => {
                eprintln!("usage: discover --interface IF [--timeout SECONDS] [--ipv4] [PATH]");
                return ExitCode::from(2);
            }
        }
    }
    let path = path.unwrap_or_else(|| "/.well-known/core".into());
    let uri = match (&interface, ipv4) {
        (_, true) => format!("coap://224.0.1.187{path}"),
        (Some(i), false) => format!("coap://[ff02::fd%25{i}]{path}"),
        (None, false) => {
            eprintln!("--interface IF is needed for ff02::fd (link-local)");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.multicast_timeout = Duration::from_secs_f64(timeout);
    let (client, driver) = match Endpoint::builder().config(config).build() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot open a socket: {}", Report(&e));
            return ExitCode::FAILURE;
        }
    };
    let result = async_io::block_on(async {
        let collect = async {
            let mut answers = client.multicast(&uri, Request::new(Code::GET));
            let mut n = 0;
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok((from, r)) => {
                        n += 1;
                        println!("{from} {} {}", r.code, String::from_utf8_lossy(&r.payload));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(n)
        };
        match futures::future::select(Box::pin(collect), Box::pin(driver)).await {
            futures::future::Either::Left((r, _)) => r,
            futures::future::Either::Right((io, _)) => Err(format!("socket: {io:?}")),
        }
    });
    match result {
        Ok(n) => {
            eprintln!("{n} servers answered");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{uri}: {e}");
            ExitCode::FAILURE
        }
    }
}
