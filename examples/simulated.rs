//! Two sans-IO endpoints, a client and a server, exchanging requests over a simulated lossy
//! link with a virtual clock. Every datagram is printed as it goes over the wire (or is lost).
//!
//! ```text
//! cargo run --example simulated -- [--loss 0.3] [--requests 8] [--seed 1] [--slow]
//! ```
//!
//! `--slow` makes the server answer after 3 s, so the answers become separate responses. No
//! socket is opened: this is the protocol core alone, driven by hand, exactly as a transport
//! or the C ABI drives it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coapio::message::{Code, Message};
use coapio::proto::{Config, Endpoint, Event, IncomingId, RecvMeta, Request, Response};

struct Args {
    loss: f64,
    requests: u32,
    seed: u64,
    slow: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        loss: 0.3,
        requests: 8,
        seed: 1,
        slow: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--loss" => {
                args.loss = value("--loss")?
                    .parse()
                    .map_err(|e| format!("--loss: {e}"))?;
                if !(0.0..=1.0).contains(&args.loss) {
                    return Err("--loss must be between 0 and 1".into());
                }
            }
            "--requests" => {
                args.requests = value("--requests")?
                    .parse()
                    .map_err(|e| format!("--requests: {e}"))?;
                args.requests = args.requests.min(10_000);
            }
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--slow" => args.slow = true,
            "-h" | "--help" => {
                return Err("usage: simulated [--loss P] [--requests N] [--seed S] [--slow]".into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

/// A tiny deterministic generator for the link's losses and delays.
struct XorShift(u64);

impl XorShift {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn describe(bytes: &[u8]) -> String {
    match Message::decode(bytes) {
        Ok(m) => {
            let path: Vec<_> = m
                .options
                .get_all(coapio::message::OptionNumber::URI_PATH)
                .map(String::from_utf8_lossy)
                .collect();
            let mut s = format!("{:?} {} MID {:5} {:?}", m.ty, m.code, m.message_id, m.token);
            if !path.is_empty() {
                s += &format!(" /{}", path.join("/"));
            }
            if !m.payload.is_empty() {
                s += &format!(" {:?}", String::from_utf8_lossy(&m.payload));
            }
            s
        }
        Err(e) => format!("malformed: {e}"),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let client_addr: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
    let server_addr: SocketAddr = "[2001:db8::2]:5683".parse().unwrap();
    let start = Instant::now();
    let mut now = start;
    let config = |seed| {
        let mut c = Config::default().with_seed(seed);
        c.nstart = 2;
        Arc::new(c)
    };
    let mut client = Endpoint::new(config(args.seed));
    let mut server = Endpoint::new(config(args.seed + 1));
    let mut rng = XorShift(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let answer_delay = if args.slow {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(20)
    };

    println!(
        "client {client_addr} -> server {server_addr}, {} requests, {:.0}% loss each way\n",
        args.requests,
        args.loss * 100.0
    );
    let mut names = BTreeMap::new();
    for i in 0..args.requests {
        let req = Request::post("/echo", format!("hello #{i}"));
        match client.request(now, server_addr, req) {
            Ok(id) => {
                names.insert(id, i);
            }
            Err(e) => {
                eprintln!("request {i} refused: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    // The wire: (arrival, sequence, to_server, bytes), and the server's pending answers.
    let mut wire: Vec<(Instant, u64, bool, Vec<u8>)> = Vec::new();
    let mut answers: Vec<(Instant, IncomingId, Vec<u8>)> = Vec::new();
    let (mut seq, mut ok, mut failed) = (0u64, 0u32, 0u32);
    let mut last_activity = start;
    let mut buf = Vec::new();
    let limit = start + Duration::from_secs(3600);
    loop {
        // Everything both endpoints have to say now.
        for to_server in [true, false] {
            let ep = if to_server { &mut client } else { &mut server };
            while let Some(t) = ep.poll_transmit(now, &mut buf) {
                last_activity = now;
                let lost = rng.next_f64() < args.loss;
                let arrow = if to_server { "c->s" } else { "s->c" };
                println!(
                    "{:8.3}s {arrow} {}{}",
                    (now - start).as_secs_f64(),
                    describe(&buf[..t.size]),
                    if lost { "   ✗ lost" } else { "" }
                );
                if !lost {
                    let delay = Duration::from_millis(5 + (rng.next_f64() * 50.0) as u64);
                    seq += 1;
                    wire.push((now + delay, seq, to_server, buf.clone()));
                }
            }
        }
        while let Some(ev) = server.poll_event() {
            if let Event::Request { id, request, .. } = ev {
                answers.push((now + answer_delay, id, request.payload));
            }
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                Event::Response { id, response } => {
                    ok += 1;
                    println!(
                        "          request {} answered: {} {:?}",
                        names[&id],
                        response.code,
                        String::from_utf8_lossy(&response.payload)
                    );
                }
                Event::Failed { id, error } => {
                    failed += 1;
                    println!("          request {} failed: {error}", names[&id]);
                }
                _ => {}
            }
        }
        // Jump to the next thing that happens.
        let next = wire
            .iter()
            .map(|w| w.0)
            .chain(answers.iter().map(|a| a.0))
            .chain(client.poll_timeout())
            .chain(server.poll_timeout())
            .min();
        let Some(next) = next.filter(|n| *n <= limit) else {
            break;
        };
        now = now.max(next);
        wire.sort_by_key(|w| (w.0, w.1));
        while wire.first().is_some_and(|w| w.0 <= now) {
            let (_, _, to_server, bytes) = wire.remove(0);
            if to_server {
                server.handle_datagram(now, &RecvMeta::new(client_addr), &bytes);
            } else {
                client.handle_datagram(now, &RecvMeta::new(server_addr), &bytes);
            }
        }
        answers.sort_by_key(|a| a.0);
        while answers.first().is_some_and(|a| a.0 <= now) {
            let (_, id, payload) = answers.remove(0);
            let resp = Response::new(Code::CONTENT).with_payload(payload);
            if let Err(e) = server.respond(now, id, resp) {
                eprintln!("respond: {e}");
            }
        }
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    println!(
        "\n{ok} answered, {failed} failed; the last datagram went at {:.3} s of virtual time",
        (last_activity - start).as_secs_f64()
    );
    if ok + failed == args.requests {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} requests never ended", args.requests - ok - failed);
        ExitCode::FAILURE
    }
}
