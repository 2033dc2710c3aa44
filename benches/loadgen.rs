//! A CoAP load generator: keeps W Confirmable GET requests in flight against any CoAP server
//! and reports requests per second and latency percentiles.
//!
//! ```text
//! cargo bench --bench loadgen -- --target 127.0.0.1:5683 --path /hello --window 64 \
//!     [--requests 200000] [--seconds 10] [--server-pid PID] [--sockets K]
//! ```
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
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

struct InFlight {
    sent: Instant,
    first_sent: Instant,
    retried: bool,
}

/// One socket's share of the load: keeps `window` requests in flight until `requests`
/// answers or `deadline`; returns the latencies (µs), lost and stray counts.
fn run_one(
    target: SocketAddr,
    path: &str,
    window: usize,
    requests: u64,
    deadline: Instant,
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
    let mut out = Vec::with_capacity(64);
    let mut buf = [0u8; 2048];

    let send = |mid: u16, out: &mut Vec<u8>, template: &mut Message| {
        template.message_id = mid;
        template.token = Token::from_slice(&mid.to_be_bytes()).unwrap_or_default();
        out.clear();
        template.encode(out).expect("encodable");
        socket.send(out).is_ok()
    };

    while (latencies.len() as u64) < requests && Instant::now() < deadline {
        while in_flight.len() < window && sent < requests + lost {
            let mid = next_mid;
            next_mid = next_mid.wrapping_add(1);
            if in_flight.contains_key(&mid) {
                break;
            }
            if send(mid, &mut out, &mut template) {
                let now = Instant::now();
                in_flight.insert(
                    mid,
                    InFlight {
                        sent: now,
                        first_sent: now,
                        retried: false,
                    },
                );
                sent += 1;
            }
        }
        match socket.recv(&mut buf) {
            Ok(n) => match MessageRef::decode(&buf[..n]) {
                Ok(m) if m.ty == Type::Ack && m.code.is_response() => {
                    if let Some(f) = in_flight.remove(&m.message_id) {
                        let us = f.first_sent.elapsed().as_micros().min(u128::from(u32::MAX));
                        latencies.push(us as u32);
                    } else {
                        stray += 1;
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
            let retry = in_flight.get(&mid).is_some_and(|f| !f.retried);
            if retry && send(mid, &mut out, &mut template) {
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
    let threads: Vec<_> = (0..k)
        .map(|i| {
            let (target, path) = (args.target, args.path.clone());
            let window = (args.window / args.sockets).max(1);
            let requests = args.requests / k + u64::from(i < args.requests % k);
            std::thread::spawn(move || run_one(target, &path, window, requests, deadline))
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
        "loadgen target={} path={} window={} sockets={} answered={} lost={} stray={} seconds={:.2} req/s={:.0} p50={}us p99={}us",
        args.target,
        args.path,
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
