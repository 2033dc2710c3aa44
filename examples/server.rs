//! A CoAP server with a few resources.
//!
//! ```text
//! cargo run --example server -- [--bind ADDR] [--transport udp6|simplesocketserver|simple6]
//!                                [--register URI [--ep NAME] [--lifetime SECONDS]]
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
//! and on Linux `224.0.1.187`) on interface IF: requests to them are answered from a unicast address after
//! a random leisure, and error responses to them are not sent (RFC 7252 §8.2).
//!
//! `--register URI` registers the server's resources with a CoRE Resource Directory (RFC
//! 9176) as endpoint `--ep NAME` (default `coapio`), with a lifetime of `--lifetime SECONDS`
//! (default 90000, the RFC's), and keeps the registration alive before it runs out. A URI
//! whose path is `/.well-known/rd` makes a simple registration (§5.1: an empty POST, after
//! which the directory fetches `/.well-known/core` from the address the POST came from,
//! repeated within the lifetime); any other URI is the directory's registration resource
//! (§5.3: a POST of the `/.well-known/core` links, then updates to the registration's
//! location, and a new registration if the directory forgot it). With `--transport
//! simple6` the server has no address of its own (no `--bind`): it serves its resources to
//! the directory over the very socket it registered from (role reversal), which is how a
//! device behind a NAT or firewall is reached. It then renews at least every minute: simple6
//! closes a remote's socket after EXCHANGE_LIFETIME (247 s) without a datagram, and NATs
//! forget a mapping sooner, either of which would cut the directory off.
//!
//! `--workers N` runs N endpoints on N threads, each with its own socket on the same port
//! (`SO_REUSEPORT`; Linux and FreeBSD, not macOS, spread clients over them). The kernel spreads clients over the sockets by their address and port and
//! keeps each client on one socket, so the state kept per client (deduplication, block-wise
//! transfers, observations) stays with one worker; observers of `/time` are notified by the
//! worker they registered with.

use std::process::ExitCode;
use std::time::Duration;

use coapio::message::uri::{path_from_options, Uri};
use coapio::message::{Code, ContentFormat, OptionNumber};
use coapio::net::RecvMeta;
use coapio::proto::{Request, Response};
use coapio::server::{get, ServerRequest, Site};
use coapio::{Endpoint, TransportKind};

mod common;
use coapio::Report;

fn main() -> ExitCode {
    common::log_to_stderr();
    let mut bind = "[::]:5683".to_string();
    let mut transport = None;
    let mut workers = 1usize;
    let mut multicast: Vec<String> = Vec::new();
    let mut dtls = common::DtlsFlags::default();
    let mut bind_dtls = None;
    let mut oscore = None;
    let mut register = None;
    let mut ep_name = "coapio".to_string();
    let mut lifetime = 90_000u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--bind", Some(v)) => bind = v,
            ("--multicast", Some(v)) => multicast.push(v),
            ("--bind-dtls", Some(v)) => bind_dtls = Some(v),
            ("--oscore", Some(v)) => oscore = Some(v),
            ("--register", Some(v)) => match Uri::parse(&v) {
                Ok(uri) => register = Some(uri),
                Err(e) => {
                    eprintln!("--register {v:?}: {e}");
                    return ExitCode::from(2);
                }
            },
            ("--ep", Some(v)) => ep_name = v,
            ("--lifetime", Some(v)) => match v.parse::<u32>() {
                Ok(n) if n >= 2 => lifetime = n,
                _ => {
                    eprintln!("--lifetime takes a number of seconds, at least 2");
                    return ExitCode::from(2);
                }
            },
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
                    "simple6" => TransportKind::Simple6,
                    _ => {
                        eprintln!("--transport: udp6, simplesocketserver or simple6");
                        return ExitCode::from(2);
                    }
                })
            }
            _ => {
                eprintln!(
                    "usage: server [--bind ADDR] [--workers N] [--multicast IF]... [--transport udp6|simplesocketserver|simple6] [--register URI [--ep NAME] [--lifetime SECONDS]] [--psk-identity TEXT --psk-key TEXT] [--cert FILE --key FILE] [--ca FILE] [--bind-dtls ADDR] [--oscore DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Ok(addr) = bind.parse() else {
        eprintln!("--bind {bind:?} is not an address like [::]:5683 or 127.0.0.1:5683");
        return ExitCode::from(2);
    };
    let simple6 = transport == Some(TransportKind::Simple6);
    if simple6 && (workers > 1 || !multicast.is_empty() || bind != "[::]:5683") {
        eprintln!(
            "--transport simple6 has no address of its own: no --bind, --workers or --multicast"
        );
        return ExitCode::from(2);
    }
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
            .site(site.clone())
            .reuse_port(workers > 1);
        if !simple6 {
            builder = builder.bind(addr);
        }
        for interface in &multicast {
            let Some(index) = coapio::transport::interface_index(interface) else {
                eprintln!("--multicast {interface}: no such network interface");
                return ExitCode::from(2);
            };
            for group in coapio::transport::ALL_COAP_NODES {
                // udp6 joins IPv4 groups on Linux only (its socket is IPv6).
                if group.is_ipv4() && !cfg!(target_os = "linux") {
                    continue;
                }
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
                eprintln!("cannot serve: {}", Report(&e));
                return ExitCode::FAILURE;
            }
        };
        common::tick(endpoint.clone());
        if let Ok(local) = endpoint.local_addr() {
            // The next workers share the port the first one got.
            addr.set_port(local.port());
        }
        if worker == 0 {
            if let Some(uri) = register.take() {
                let (endpoint, ep_name) = (endpoint.clone(), ep_name.clone());
                std::thread::spawn(move || {
                    async_io::block_on(keep_registered(
                        endpoint, site, uri, ep_name, lifetime, simple6,
                    ))
                });
            }
        }
        drivers.push(driver);
    }
    if simple6 {
        println!("serving over simple6 (no address of its own)");
    } else if workers > 1 {
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
                eprintln!("a worker failed: {}", Report(&e));
            }
        });
    }
    let driver = last;
    match async_io::block_on(driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {}", Report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Registers with the resource directory at `rd` and keeps the registration alive for the
/// life of the process (see the module documentation), retrying after failures; at least
/// every minute when `keepalive` (simple6).
async fn keep_registered(
    endpoint: Endpoint,
    site: Site,
    rd: Uri,
    ep: String,
    lifetime: u32,
    keepalive: bool,
) {
    let simple = rd.path == [".well-known", "rd"];
    // Refreshed at three quarters of the lifetime; after a failure, tried again after 5 s,
    // then less often, but always within half the lifetime.
    let lifetime_ms = u64::from(lifetime) * 1000;
    let mut refresh = Duration::from_millis(lifetime_ms * 3 / 4);
    if keepalive {
        refresh = refresh.min(Duration::from_secs(60));
    }
    let retry_max = Duration::from_millis(lifetime_ms / 2).min(Duration::from_secs(300));
    let mut retry = Duration::from_secs(5).min(retry_max);
    let mut location: Option<Uri> = None;
    loop {
        let outcome = match &location {
            // An update (§5.3.1): an empty POST to the registration.
            Some(registration) => {
                let request = Request::new(Code::POST);
                match endpoint.request(&registration.to_string(), request).await {
                    Ok(r) if r.code == Code::CHANGED => {
                        println!("renewed the registration at {registration}");
                        Ok(())
                    }
                    // The directory forgot us: register anew.
                    Ok(r) if r.code == Code::NOT_FOUND => {
                        location = None;
                        continue;
                    }
                    Ok(r) => Err(format!("update answered {}", r.code)),
                    Err(e) => Err(Report(&e).to_string()),
                }
            }
            None => {
                let mut uri = rd.clone();
                uri.query.push(format!("ep={ep}"));
                uri.query.push(format!("lt={lifetime}"));
                let mut request = Request::new(Code::POST);
                if !simple {
                    request.payload = links(&site).await;
                    request.options.set_uint(
                        OptionNumber::CONTENT_FORMAT,
                        ContentFormat::LINK_FORMAT.0.into(),
                    );
                }
                match endpoint.request(&uri.to_string(), request).await {
                    Ok(r) if simple && r.code.is_success() => {
                        println!("registered with {rd} (simple registration) as {ep}");
                        Ok(())
                    }
                    Ok(r) if r.code == Code::CREATED => {
                        let mut at = rd.clone();
                        at.path = r
                            .options
                            .get_all(OptionNumber::LOCATION_PATH)
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect();
                        at.query.clear();
                        println!(
                            "registered with {rd} as {ep} at {}",
                            path_from_options(r.options.get_all(OptionNumber::LOCATION_PATH))
                        );
                        location = Some(at);
                        Ok(())
                    }
                    Ok(r) => Err(format!("registration answered {}", r.code)),
                    Err(e) => Err(Report(&e).to_string()),
                }
            }
        };
        let wait = match outcome {
            Ok(()) => {
                retry = Duration::from_secs(5).min(retry_max);
                refresh
            }
            Err(e) => {
                eprintln!("registration with {rd}: {e}; trying again in {retry:?}");
                let wait = retry;
                retry = (retry * 2).min(retry_max);
                wait
            }
        };
        async_io::Timer::after(wait).await;
    }
}

/// The site's `/.well-known/core` links, as it serves them.
async fn links(site: &Site) -> Vec<u8> {
    let meta = RecvMeta::new(std::net::SocketAddr::from(([0u16; 8], 0)));
    let request = ServerRequest::new(Request::get("/.well-known/core"), meta);
    site.handle(request).await.payload
}
