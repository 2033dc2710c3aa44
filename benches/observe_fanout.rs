//! Notifications per second from a coapio server to 1000 observers (RFC 7641).
//!
//! ```text
//! cargo bench --bench observe_fanout -- [--observers 1000] [--rounds 50]
//! ```
//!
//! The server (udp6 on 127.0.0.1, its driver on a thread of its own) serves an observable
//! `/clock`. Plain UDP sockets (up to 2000 observers each) register OBSERVERS observations,
//! each with its own token (an observer is a remote and a token), then the benchmark calls `Endpoint::notify` ROUNDS
//! times, each time waiting until every observer's notification has arrived (acknowledging
//! the Confirmable ones, every 20th), and reports notifications per second and the time from
//! `notify` to the last notification of a round, and the CPU time of the server's driver
//! thread per notification (from `/proc/TID/stat`; it also takes the ACKs of the Confirmable
//! ones). Loopback only; bounded in rounds and by a 10 s timeout per round.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coapio::message::{encode_empty, Code, Message, MessageRef, OptionNumber, Token, Type};
use coapio::proto::Response;
use coapio::server::{get, Site};
use coapio::Endpoint;

#[path = "support/cpu.rs"]
mod cpu;

#[path = "support/args.rs"]
mod args;
use args::arg;

fn main() -> ExitCode {
    let observers = arg("--observers", 1000).clamp(1, 60_000);
    let rounds = arg("--rounds", 50).clamp(1, 10_000);
    let counter = Arc::new(AtomicU64::new(0));
    let c = counter.clone();
    let site = Site::new().resource(
        "/clock",
        get(move |_req| {
            let n = c.load(Ordering::Relaxed);
            async move { Response::content(n.to_string()) }
        })
        .obs(),
    );
    let mut config = coapio::proto::Config::default();
    config.observer_memory = observers * 1024;
    config.max_observers_per_resource = observers;
    // Every observer's notification is rendered at once: room for all of them (the default,
    // 4096, skips the rest of a change's observers).
    config.max_pending_requests = observers + 4096;
    let (server, driver) = Endpoint::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .site(site)
        .config(config)
        .build()
        .expect("server");
    // The driver's thread tells its ID, for its CPU time (/proc/TID/stat).
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let _ = tid_tx.send(unsafe { libc::gettid() } as u32);
        async_io::block_on(driver)
    });
    let server_tid = tid_rx.recv().expect("driver thread");
    let target = server.local_addr().expect("local address");

    // The observers sit on sockets of up to 2000 each, so that a round's burst of
    // notifications fits the sockets' receive buffers while this thread takes them.
    let sockets: Vec<UdpSocket> = (0..observers.div_ceil(2000))
        .map(|_| {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            sock.connect(target).expect("connect");
            sock.set_nonblocking(true).unwrap();
            let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
            sock
        })
        .collect();
    let socket_of = |i: usize| &sockets[i % sockets.len()];
    let mut buf = [0u8; 2048];
    let token = |i: usize| Token::from_slice(&(i as u32).to_be_bytes()).unwrap();
    // The next datagram from any socket, waiting up to 200 ms for one.
    let recv_any = |buf: &mut [u8]| -> Option<(usize, usize)> {
        let until = Instant::now() + Duration::from_millis(200);
        loop {
            for (k, sock) in sockets.iter().enumerate() {
                if let Ok(n) = sock.recv(buf) {
                    return Some((k, n));
                }
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::yield_now();
        }
    };

    // Register, a window of 64 at a time.
    let mut registered = HashSet::new();
    let mut next = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    while registered.len() < observers && Instant::now() < deadline {
        while next < observers && next - registered.len() < 64 {
            let mut m = Message::new(Type::Con, Code::GET, next as u16);
            m.token = token(next);
            m.options.push_uint(OptionNumber::OBSERVE, 0);
            m.options.push(OptionNumber::URI_PATH, "clock");
            socket_of(next).send(&m.to_bytes().unwrap()).unwrap();
            next += 1;
        }
        if let Some((_, n)) = recv_any(&mut buf) {
            if let Ok(m) = MessageRef::decode(&buf[..n]) {
                if m.options.get(OptionNumber::OBSERVE).is_some() {
                    registered.insert(m.token);
                }
            }
        }
    }
    if registered.len() < observers {
        eprintln!(
            "only {} of {observers} registrations answered",
            registered.len()
        );
        return ExitCode::FAILURE;
    }

    let mut latencies = Vec::with_capacity(rounds);
    let mut total = 0usize;
    let cpu_before = cpu::cpu_time(server_tid);
    let start = Instant::now();
    for round in 1..=rounds {
        counter.store(round as u64, Ordering::Relaxed);
        let t0 = Instant::now();
        server.notify("/clock");
        let want = round.to_string();
        let mut seen = HashSet::with_capacity(observers);
        let round_deadline = t0 + Duration::from_secs(10);
        while seen.len() < observers && Instant::now() < round_deadline {
            let Some((k, n)) = recv_any(&mut buf) else {
                continue;
            };
            let Ok(m) = MessageRef::decode(&buf[..n]) else {
                continue;
            };
            if m.ty == Type::Con {
                let mut ack = Vec::new();
                encode_empty(Type::Ack, m.message_id, &mut ack);
                let _ = sockets[k].send(&ack);
            }
            if m.payload == want.as_bytes() {
                seen.insert(m.token);
            }
        }
        if seen.len() < observers {
            eprintln!(
                "round {round}: only {} of {observers} notifications",
                seen.len()
            );
            return ExitCode::FAILURE;
        }
        total += seen.len();
        latencies.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let cpu_used = cpu_before
        .zip(cpu::cpu_time(server_tid))
        .map(|(b, a)| a.saturating_sub(b));
    latencies.sort_unstable();
    println!(
        "observe_fanout observers={observers} rounds={rounds} notifications={total} seconds={:.2} \
         notifications/s={:.0} round_p50={:.1}ms round_max={:.1}ms server_cpu_per_notification={}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
        cpu_used.map_or("-".into(), |c| format!(
            "{:.1}us",
            c.as_secs_f64() * 1e6 / total.max(1) as f64
        )),
    );
    server.shutdown();
    ExitCode::SUCCESS
}
