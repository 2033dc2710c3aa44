//! A CoAP client for the command line.
//!
//! ```text
//! cargo run --example client -- [-m METHOD] [--non] [--payload TEXT] [--timeout SECONDS]
//!     [--observe SECONDS] [--transport udp6|simple6]
//!     [--psk-identity TEXT --psk-key TEXT] [--cert FILE --key FILE] [--ca FILE]
//!     [--oscore DIR] URI
//! ```
//!
//! `--oscore DIR` protects the request with the OSCORE security context in DIR, in aiocoap's
//! format (`settings.json`, `secret.json`, `sequence.json`; build with `--features oscore`).
//!
//! `coaps://` URIs go over DTLS with the pre-shared key or the certificate given, verifying
//! the server's certificate against `--ca` (build with `--features dtls`).
//!
//! Prints the response code on the first line and the payload after it. When the request
//! fails (timeout, reset, unreachable, bad URI) it prints one line saying why on stderr and
//! exits with status 1; bad arguments exit with 2.

use std::io::Write;
use std::process::ExitCode;

use coapio::message::Code;
use coapio::proto::Request;
use coapio::{Endpoint, TransportKind};

mod common;
use coapio::Report;

const USAGE: &str = "usage: client [-m GET|POST|PUT|DELETE] [--non] [--payload TEXT] \
    [--timeout SECONDS] [--observe SECONDS] [--transport udp6|simple6] \
    [--psk-identity TEXT --psk-key TEXT] [--cert FILE --key FILE] [--ca FILE] [--oscore DIR] URI";

fn main() -> ExitCode {
    common::log_to_stderr();
    let mut method = Code::GET;
    let mut confirmable = true;
    let mut payload = Vec::new();
    let mut transport = None;
    let mut timeout = None;
    let mut observe = None;
    let mut uri = None;
    let mut dtls = common::DtlsFlags::default();
    let mut oscore = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-m" | "--method" => {
                method = match args.next().map(|m| m.to_ascii_uppercase()).as_deref() {
                    Some("GET") => Code::GET,
                    Some("POST") => Code::POST,
                    Some("PUT") => Code::PUT,
                    Some("DELETE") => Code::DELETE,
                    Some("FETCH") => Code::FETCH,
                    _ => {
                        eprintln!("-m takes GET, POST, PUT, DELETE or FETCH");
                        return ExitCode::from(2);
                    }
                }
            }
            "--non" => confirmable = false,
            "--oscore" => match args.next() {
                Some(dir) => oscore = Some(dir),
                None => {
                    eprintln!("--oscore needs a directory");
                    return ExitCode::from(2);
                }
            },
            "--payload" => match args.next() {
                Some(p) => payload = p.into_bytes(),
                None => {
                    eprintln!("--payload needs a value");
                    return ExitCode::from(2);
                }
            },
            "--timeout" => match args.next().and_then(|t| t.parse::<f64>().ok()) {
                Some(t) if t > 0.0 && t < 1e6 => {
                    timeout = Some(std::time::Duration::from_secs_f64(t))
                }
                _ => {
                    eprintln!("--timeout takes a positive number of seconds");
                    return ExitCode::from(2);
                }
            },
            "--observe" => match args.next().and_then(|t| t.parse::<f64>().ok()) {
                Some(t) if t > 0.0 && t < 1e6 => {
                    observe = Some(std::time::Duration::from_secs_f64(t))
                }
                _ => {
                    eprintln!("--observe takes a positive number of seconds");
                    return ExitCode::from(2);
                }
            },
            "--transport" => {
                transport = match args.next().as_deref() {
                    Some("udp6") => Some(TransportKind::Udp6),
                    Some("simple6") => Some(TransportKind::Simple6),
                    _ => {
                        eprintln!("--transport takes udp6 or simple6");
                        return ExitCode::from(2);
                    }
                }
            }
            "--psk-identity" | "--psk-key" | "--cert" | "--key" | "--ca" => {
                if let Err(e) = dtls.take(&a, args.next()) {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other if uri.is_none() && !other.starts_with('-') => uri = Some(other.to_string()),
            other => {
                eprintln!("unexpected argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(uri) = uri else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut builder = Endpoint::builder();
    if let Some(t) = transport {
        builder = builder.transport(t);
    }
    if dtls.any() {
        match dtls.client(builder) {
            Ok(b) => builder = b,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(dir) = oscore {
        match common::oscore_dir(builder, Some("*"), &dir) {
            Ok(b) => builder = b,
            Err(e) => {
                eprintln!("--oscore {dir}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let (client, driver) = match builder.build() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot open a socket: {}", Report(&e));
            return ExitCode::FAILURE;
        }
    };
    if let Some(duration) = observe {
        return observe_for(client, driver, &uri, duration);
    }
    let mut request = Request::new(method).with_payload(payload);
    request.confirmable = confirmable;
    request.timeout = timeout;
    let result = async_io::block_on(async {
        let request = Box::pin(client.request(&uri, request));
        match futures::future::select(request, Box::pin(driver)).await {
            futures::future::Either::Left((result, _)) => {
                result.map_err(|e| Report(&e).to_string())
            }
            futures::future::Either::Right((io, _)) => Err(match io {
                Ok(()) => "the endpoint stopped".to_string(),
                Err(e) => format!("socket error: {}", Report(&e)),
            }),
        }
    });
    match result {
        Ok(response) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", response.code);
            if !response.payload.is_empty() {
                let _ = out.write_all(&response.payload);
                let _ = writeln!(out);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{uri}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Observes `uri` for `duration`: prints the first response and every notification (code
/// line, then payload), flushed as they come; then deregisters (by dropping the stream) and
/// exits.
fn observe_for(
    client: Endpoint,
    driver: coapio::Driver,
    uri: &str,
    duration: std::time::Duration,
) -> ExitCode {
    use futures::StreamExt;
    let result = async_io::block_on(async {
        let watch = async {
            let mut stream = client.observe(uri);
            let deadline = async_io::Timer::after(duration);
            futures::pin_mut!(deadline);
            loop {
                match futures::future::select(stream.next(), &mut deadline).await {
                    futures::future::Either::Left((Some(Ok(r)), _)) => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{}", r.code);
                        let _ = out.write_all(&r.payload);
                        let _ = writeln!(out);
                        let _ = out.flush();
                    }
                    futures::future::Either::Left((Some(Err(e)), _)) => {
                        return Err(Report(&e).to_string())
                    }
                    futures::future::Either::Left((None, _)) => return Ok(()),
                    futures::future::Either::Right(_) => return Ok(()),
                }
            }
        };
        match futures::future::select(Box::pin(watch), Box::pin(driver)).await {
            futures::future::Either::Left((r, _)) => r,
            futures::future::Either::Right((io, _)) => Err(match io {
                Ok(()) => "the endpoint stopped".to_string(),
                Err(e) => format!("socket error: {}", Report(&e)),
            }),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{uri}: {e}");
            ExitCode::FAILURE
        }
    }
}
