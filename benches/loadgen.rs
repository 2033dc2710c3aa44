//! A CoAP load generator: keeps W Confirmable GET requests in flight against any CoAP server
//! and reports requests per second and latency percentiles.
//!
//! ```text
//! cargo bench --bench loadgen -- --target 127.0.0.1:5683 --path /hello --window 64 \
//!     [--requests 200000] [--seconds 10] [--server-pid PID] [--sockets K] [--oscore DIR]
//! ```
//!
//! With `--oscore DIR` (build with `--features oscore`; one socket) every request is protected
//! with the OSCORE security context in DIR (aiocoap's format; use a copy, the directory's
//! `sequence.json` is written) and every answer verified; an answer that fails is counted as
//! stray.
//!
//! It speaks through one plain UDP socket and coapio's codec only (no coapio endpoint), so it
//! measures the server. Every request has its own message ID and token; a request unanswered
//! for 2 s is sent again once and then counted as lost. It stops after `--requests` answers or
//! `--seconds`, whichever comes first. With `--server-pid` it also reports the server's CPU
//! time per request, from `/proc/PID/stat` (user + system) before and after.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_time;

struct Args {
    target: SocketAddr,
    path: String,
    window: usize,
    requests: u64,
    seconds: u64,
    server_pid: Option<u32>,
    sockets: usize,
    oscore: Option<std::path::PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:5683".parse().unwrap(),
        path: "/hello".into(),
        window: 1,
        requests: 100_000,
        seconds: 10,
        server_pid: None,
        sockets: 1,
        oscore: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--bench" {
            continue; // what `cargo bench` adds
        }
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k} {v}: {e}");
        match k.as_str() {
            "--target" => a.target = v.parse().map_err(|e| bad(&e))?,
            "--path" => a.path = v,
            "--window" => a.window = v.parse::<usize>().map_err(|e| bad(&e))?.clamp(1, 4096),
            "--requests" => a.requests = v.parse::<u64>().map_err(|e| bad(&e))?.min(10_000_000),
            "--seconds" => a.seconds = v.parse::<u64>().map_err(|e| bad(&e))?.clamp(1, 600),
            "--server-pid" => a.server_pid = Some(v.parse().map_err(|e| bad(&e))?),
            "--sockets" => a.sockets = v.parse::<usize>().map_err(|e| bad(&e))?.clamp(1, 64),
            "--oscore" => a.oscore = Some(v.into()),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

struct InFlight {
    sent: Instant,
    first_sent: Instant,
    retried: bool,
    /// The datagram, for the retry (an OSCORE request is sent again as it was).
    wire: Vec<u8>,
    #[cfg(feature = "oscore")]
    binding: Option<coapio::oscore::RequestBinding>,
}

/// Protects requests and verifies answers with an OSCORE context (feature `oscore`).
#[cfg(feature = "oscore")]
type Security = Option<(
    coapio::oscore::fs::ContextDir,
    coapio::oscore::SecurityContext,
)>;
#[cfg(not(feature = "oscore"))]
type Security = Option<()>;
#[cfg(feature = "oscore")]
type Binding = coapio::oscore::RequestBinding;
#[cfg(not(feature = "oscore"))]
type Binding = ();

/// One socket's share of the load: keeps `window` requests in flight until `requests`
/// answers or `deadline`; returns the latencies (µs), lost and stray counts.
fn run_one(
    target: SocketAddr,
    path: &str,
    window: usize,
    requests: u64,
    deadline: Instant,
    #[allow(unused_mut)] mut security: Security,
) -> Option<(Vec<u32>, u64, u64)> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    let socket = UdpSocket::bind(local).expect("bind");
    socket.connect(target).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");

    let mut template = Message::new(Type::Con, Code::GET, 0);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        template.options.push(OptionNumber::URI_PATH, seg);
    }
    let mut in_flight: HashMap<u16, InFlight> = HashMap::new();
    let mut latencies: Vec<u32> = Vec::with_capacity(requests.min(1 << 22) as usize);
    let (mut next_mid, mut sent, mut lost, mut stray) = (0u16, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 2048];

    // The datagram of request `mid` (protected with OSCORE when there is a context), and what
    // verifies its answer.
    #[allow(unused_variables)]
    let make = |mid: u16, template: &mut Message, security: &mut Security| {
        template.message_id = mid;
        template.token = Token::from_slice(&mid.to_be_bytes()).unwrap_or_default();
        #[cfg(feature = "oscore")]
        if let Some((dir, ctx)) = security.as_mut() {
            // Sequence numbers stored ahead of use, as the library does (RFC 8613 B.1.1).
            if let Some(bound) = ctx.take_persist_request() {
                dir.store_sequence(bound).expect("sequence.json written");
                ctx.confirm_persisted(bound);
            }
            let (p, binding) = ctx
                .protect_request(template.code, &template.options, &template.payload)
                .expect("protectable");
            let msg = Message {
                code: p.code,
                options: p.options,
                payload: p.payload,
                ..template.clone()
            };
            return (msg.to_bytes().expect("encodable"), Some(binding));
        }
        let mut out = Vec::with_capacity(64);
        template.encode(&mut out).expect("encodable");
        (out, None::<Binding>)
    };

    while (latencies.len() as u64) < requests && Instant::now() < deadline {
        while in_flight.len() < window && sent < requests + lost {
            let mid = next_mid;
            next_mid = next_mid.wrapping_add(1);
            if in_flight.contains_key(&mid) {
                break;
            }
            #[allow(unused_variables)]
            let (wire, binding) = make(mid, &mut template, &mut security);
            if socket.send(&wire).is_ok() {
                let now = Instant::now();
                in_flight.insert(
                    mid,
                    InFlight {
                        sent: now,
                        first_sent: now,
                        retried: false,
                        wire,
                        #[cfg(feature = "oscore")]
                        binding,
                    },
                );
                sent += 1;
            }
        }
        match socket.recv(&mut buf) {
            Ok(n) => match MessageRef::decode(&buf[..n]) {
                Ok(m) if m.ty == Type::Ack && m.code.is_response() => {
                    match in_flight.remove(&m.message_id) {
                        #[allow(unused_variables)]
                        Some(f) if verified(&f, &m, &mut security) => {
                            let us = f.first_sent.elapsed().as_micros().min(u128::from(u32::MAX));
                            latencies.push(us as u32);
                        }
                        _ => stray += 1,
                    }
                }
                _ => stray += 1,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                eprintln!("receive failed: {e} (is a server listening on {target}?)");
                return None;
            }
        }
        // Retry once after 2 s, then give up on a request.
        let now = Instant::now();
        let overdue: Vec<u16> = in_flight
            .iter()
            .filter(|(_, f)| now.duration_since(f.sent) > Duration::from_secs(2))
            .map(|(m, _)| *m)
            .collect();
        for mid in overdue {
            let retry = in_flight
                .get(&mid)
                .is_some_and(|f| !f.retried && socket.send(&f.wire).is_ok());
            if retry {
                if let Some(f) = in_flight.get_mut(&mid) {
                    f.retried = true;
                    f.sent = now;
                }
            } else {
                in_flight.remove(&mid);
                lost += 1;
            }
        }
    }
    Some((latencies, lost, stray))
}

/// Whether the answer `m` to `f` is good: with OSCORE, that it verifies.
#[allow(unused_variables)]
fn verified(f: &InFlight, m: &MessageRef<'_>, security: &mut Security) -> bool {
    #[cfg(feature = "oscore")]
    if let (Some((_, ctx)), Some(binding)) = (security.as_mut(), f.binding.as_ref()) {
        let options = m.options.to_owned();
        return ctx
            .unprotect_response(binding, m.code, &options, m.payload)
            .is_ok_and(|plain| plain.code.is_success());
    }
    true
}

/// The OSCORE context of `--oscore DIR`.
fn security(dir: Option<&std::path::Path>) -> Result<Security, String> {
    let Some(dir) = dir else { return Ok(None) };
    #[cfg(feature = "oscore")]
    {
        coapio::oscore::fs::ContextDir::open(dir)
            .map(Some)
            .map_err(|e| format!("--oscore {}: {e}", dir.display()))
    }
    #[cfg(not(feature = "oscore"))]
    Err(format!(
        "--oscore {}: build with --features oscore",
        dir.display()
    ))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cpu_before = args.server_pid.and_then(cpu_time);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    // Several sockets (several source ports) let a server with SO_REUSEPORT workers spread
    // the load; each has its share of the window and of the requests, on a thread of its own.
    let k = args.sockets as u64;
    if args.oscore.is_some() && k > 1 {
        eprintln!("--oscore takes one socket (one security context)");
        return ExitCode::from(2);
    }
    let security = match security(args.oscore.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut security = Some(security);
    let threads: Vec<_> = (0..k)
        .map(|i| {
            let (target, path) = (args.target, args.path.clone());
            let window = (args.window / args.sockets).max(1);
            let requests = args.requests / k + u64::from(i < args.requests % k);
            let security = security.take().flatten();
            std::thread::spawn(move || run_one(target, &path, window, requests, deadline, security))
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut lost, mut stray) = (0u64, 0u64);
    for t in threads {
        match t.join().ok().flatten() {
            Some((l, lo, st)) => {
                latencies.extend(l);
                lost += lo;
                stray += st;
            }
            None => return ExitCode::FAILURE,
        }
    }
    let elapsed = start.elapsed();
    let cpu_after = args.server_pid.and_then(cpu_time);
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let done = latencies.len() as f64;
    print!(
        "loadgen target={} path={}{} window={} sockets={} answered={} lost={} stray={} seconds={:.2} req/s={:.0} p50={}us p99={}us",
        args.target,
        args.path,
        if args.oscore.is_some() { " oscore" } else { "" },
        args.window,
        args.sockets,
        latencies.len(),
        lost,
        stray,
        elapsed.as_secs_f64(),
        done / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let per = (b - a).as_secs_f64() * 1e6 / done.max(1.0);
        print!(" server_cpu_per_req={per:.1}us");
    }
    println!();
    if latencies.is_empty() {
        eprintln!("no answers from {}", args.target);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
