//! A DTLS load generator (pre-shared key): how many handshakes a CoAP-over-DTLS server
//! completes per second, and how many requests per second it answers over one established
//! session with W Confirmable GETs in flight.
//!
//! ```text
//! cargo bench --features dtls --bench dtls_load -- --target 127.0.0.1:5684 --path /hello \
//!     --identity ID --key KEY [--handshakes 2000] [--requests 100000] [--window 64] \
//!     [--seconds 10] [--server-pid PID]
//! ```
//!
//! It speaks through coapio's sans-IO DTLS layer (OpenSSL) and codec over plain UDP sockets,
//! so the generator's own crypto is part of each exchange; pin it to a core of its own
//! (`benches/dtls_load.sh` does). Handshakes are made one after another, each from a new
//! socket (a new remote for the server), and the session is then dropped without a word
//! (as a client that goes away). Requests: one session, W in flight, each with its own
//! message ID and token; a request unanswered for 2 s counts as lost. Loopback only; every run
//! is bounded in count and seconds.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use coapio::dtls::{Dtls, DtlsConfig, DtlsEvent};
use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_time;

struct Args {
    target: SocketAddr,
    path: String,
    identity: String,
    key: String,
    handshakes: u64,
    requests: u64,
    window: usize,
    seconds: u64,
    server_pid: Option<u32>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:5684".parse().unwrap(),
        path: "/hello".into(),
        identity: String::new(),
        key: String::new(),
        handshakes: 2000,
        requests: 100_000,
        window: 64,
        seconds: 10,
        server_pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--bench" {
            continue;
        }
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k} {v}: {e}");
        match k.as_str() {
            "--target" => a.target = v.parse().map_err(|e| bad(&e))?,
            "--path" => a.path = v,
            "--identity" => a.identity = v,
            "--key" => a.key = v,
            "--handshakes" => a.handshakes = v.parse::<u64>().map_err(|e| bad(&e))?.min(1_000_000),
            "--requests" => a.requests = v.parse::<u64>().map_err(|e| bad(&e))?.min(10_000_000),
            "--window" => a.window = v.parse::<usize>().map_err(|e| bad(&e))?.clamp(1, 1024),
            "--seconds" => a.seconds = v.parse::<u64>().map_err(|e| bad(&e))?.clamp(1, 600),
            "--server-pid" => a.server_pid = Some(v.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

/// One client: a socket and its DTLS layer.
struct Client {
    socket: UdpSocket,
    dtls: Dtls,
    buf: Vec<u8>,
}

impl Client {
    fn new(a: &Args) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let config = DtlsConfig::psk_client(a.identity.clone(), a.key.clone());
        Self {
            socket,
            dtls: Dtls::new(config).expect("DTLS"),
            buf: vec![0; 2048],
        }
    }

    /// Sends what the layer has, then takes one datagram (or times out); returns the
    /// plaintexts that came.
    fn turn(&mut self) -> Vec<Vec<u8>> {
        while let Some((to, d)) = self.dtls.poll_transmit() {
            let _ = self.socket.send_to(&d, to);
        }
        let now = Instant::now();
        if let Ok((n, from)) = self.socket.recv_from(&mut self.buf) {
            self.dtls.handle_datagram(now, from, &self.buf[..n]);
        }
        if self.dtls.poll_timeout().is_some_and(|t| t <= now) {
            self.dtls.handle_timeout(now);
        }
        while let Some((to, d)) = self.dtls.poll_transmit() {
            let _ = self.socket.send_to(&d, to);
        }
        std::iter::from_fn(|| self.dtls.poll_plaintext())
            .map(|(_, p)| p)
            .collect()
    }
}

fn get(path: &str, mid: u16, token: u64) -> Vec<u8> {
    let mut m = Message::new(Type::Con, Code::GET, mid);
    m.token = Token::from_slice(&token.to_be_bytes()).unwrap();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        m.options.push(OptionNumber::URI_PATH, seg);
    }
    m.to_bytes().unwrap()
}

fn handshakes(a: &Args) -> (u64, Duration) {
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let mut done = 0;
    while done < a.handshakes && Instant::now() < end {
        let mut c = Client::new(a);
        // The first request opens the session; the handshake is what is timed.
        let _ = c.dtls.send(Instant::now(), a.target, &get(&a.path, 1, 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            c.turn();
            if std::iter::from_fn(|| c.dtls.poll_event())
                .any(|e| matches!(e, DtlsEvent::Connected(_)))
            {
                done += 1;
                break;
            }
        }
    }
    (done, start.elapsed())
}

fn requests(a: &Args) -> (u64, u64, Duration, Vec<Duration>) {
    let mut c = Client::new(a);
    let mut sent: HashMap<u64, (Instant, Vec<u8>, bool)> = HashMap::new();
    let (mut next, mut answered, mut lost) = (0u64, 0u64, 0u64);
    let mut latencies = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    while answered + lost < a.requests && Instant::now() < end {
        while sent.len() < a.window && next < a.requests {
            let d = get(&a.path, next as u16, next);
            let _ = c.dtls.send(Instant::now(), a.target, &d);
            sent.insert(next, (Instant::now(), d, false));
            next += 1;
        }
        for p in c.turn() {
            let Ok(m) = MessageRef::decode(&p) else {
                continue;
            };
            let token = u64::from_be_bytes(m.token.as_bytes().try_into().unwrap_or([0; 8]));
            if let Some((at, _, _)) = sent.remove(&token) {
                answered += 1;
                latencies.push(at.elapsed());
            }
        }
        let now = Instant::now();
        let mut gone = Vec::new();
        for (t, (at, d, again)) in &mut sent {
            if now.duration_since(*at) > Duration::from_secs(2) {
                if *again {
                    gone.push(*t);
                } else {
                    *again = true;
                    *at = now;
                    let _ = c.dtls.send(now, a.target, d);
                }
            }
        }
        for t in gone {
            sent.remove(&t);
            lost += 1;
        }
    }
    (answered, lost, start.elapsed(), latencies)
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cpu0 = a.server_pid.and_then(cpu_time);
    let (done, took) = handshakes(&a);
    let cpu1 = a.server_pid.and_then(cpu_time);
    print!(
        "handshakes={done} seconds={:.2} handshakes/s={:.0}",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64()
    );
    if let (Some(x), Some(y)) = (cpu0, cpu1) {
        print!(
            " server_cpu_per_handshake={:.0}us",
            (y - x).as_micros() as f64 / done.max(1) as f64
        );
    }
    println!();
    let (answered, lost, took, mut lat) = requests(&a);
    let cpu2 = a.server_pid.and_then(cpu_time);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros())
    };
    print!(
        "window={} answered={answered} lost={lost} seconds={:.2} req/s={:.0} p50={}us p99={}us",
        a.window,
        took.as_secs_f64(),
        answered as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    if let (Some(x), Some(y)) = (cpu1, cpu2) {
        print!(
            " server_cpu_per_req={:.1}us",
            (y - x).as_micros() as f64 / answered.max(1) as f64
        );
    }
    println!();
    ExitCode::SUCCESS
}
