//! The DTLS server (the `server` example with a pre-shared key, a process of its own on
//! loopback) under hostile traffic: 10 000 ClientHellos from distinct remotes (each gets a
//! stateless HelloVerifyRequest), 20 000 garbage datagrams, 600 handshakes left half done after
//! the cookie round trip; then a legitimate client still gets through. The server's resident
//! memory may grow by less than 64 MB; the numbers are printed
//! (`cargo test --features dtls --test dtls_robustness -- --nocapture`).
#![cfg(feature = "dtls")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coapio::dtls::{Dtls, DtlsConfig};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The n-th distinct loopback remote's socket (127.1.x.y).
fn remote(n: u32) -> UdpSocket {
    let ip = Ipv4Addr::new(
        127,
        1 + (n / 62_500) as u8,
        (n / 250 % 250) as u8,
        (n % 250 + 1) as u8,
    );
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn client_config() -> DtlsConfig {
    DtlsConfig::psk_client("robust", "key-0123456789")
}

#[test]
fn hostile_traffic_costs_bounded_memory_and_a_client_still_gets_through() {
    let exe = std::env::current_exe().unwrap();
    let server_bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/server");
    let mut child = Server(
        Command::new(server_bin)
            .args(["--bind", "127.0.0.1:0", "--bind-dtls", "127.0.0.1:0"])
            .args(["--psk-identity", "robust", "--psk-key", "key-0123456789"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the server example (cargo test builds it)"),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut dtls_addr = None;
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(a) = line.trim().strip_prefix("listening for coaps on ") {
            dtls_addr = Some(a.parse::<SocketAddr>().unwrap());
            break;
        }
    }
    let target = dtls_addr.expect("the server listens for coaps");
    let pid = child.0.id();
    let start_rss = rss_kb(pid);
    let now = Instant::now();
    // A real ClientHello (without a cookie), made by our own client layer.
    let mut maker = Dtls::new(client_config()).unwrap();
    maker.send(now, target, b"x").unwrap();
    let (_, hello) = maker.poll_transmit().unwrap();

    // 1. ClientHellos from 10 000 remotes, in windows; each gets a HelloVerifyRequest.
    let t = Instant::now();
    let mut verified = 0;
    for window in 0..100u32 {
        let socks: Vec<UdpSocket> = (0..100).map(|i| remote(window * 100 + i)).collect();
        for s in &socks {
            s.send_to(&hello, target).unwrap();
        }
        let mut buf = [0u8; 2048];
        for s in &socks {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                verified += usize::from(n > 13 && buf[13] == 3);
            }
        }
    }
    let after_hellos = rss_kb(pid);
    eprintln!(
        "[10 000 ClientHellos] {verified} HelloVerifyRequests in {:.1} s; RSS {start_rss} -> {after_hellos} kB",
        t.elapsed().as_secs_f64()
    );
    assert!(verified >= 9_900, "{verified}");

    // 2. 20 000 garbage datagrams, half of them looking like DTLS records.
    let t = Instant::now();
    let g = remote(20_000);
    let mut x = 0x1234_5678u32;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let len = 1 + (x % 400) as usize;
        let mut d: Vec<u8> = (0..len).map(|k| (x >> (k % 24)) as u8).collect();
        if i % 2 == 0 {
            d[0] = 20 + (x % 6) as u8;
        }
        let _ = g.send_to(&d, target);
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    eprintln!(
        "[20 000 garbage datagrams] in {:.1} s; RSS {} kB",
        t.elapsed().as_secs_f64(),
        rss_kb(pid)
    );

    // 3. 600 handshakes past the cookie round trip, then abandoned.
    let t = Instant::now();
    let mut half = 0;
    for i in 0..600u32 {
        let s = remote(30_000 + i);
        let mut c = Dtls::new(client_config()).unwrap();
        c.send(now, target, b"x").unwrap();
        let mut buf = [0u8; 2048];
        let mut answers = 0;
        for _ in 0..2 {
            while let Some((_, d)) = c.poll_transmit() {
                s.send_to(&d, target).unwrap();
            }
            match s.recv_from(&mut buf) {
                Ok((n, _)) => {
                    answers += 1;
                    c.handle_datagram(now, target, &buf[..n]);
                }
                Err(_) => break,
            }
        }
        // A HelloVerifyRequest, then the server's flight after the cookie came back: the
        // server holds a handshake for this remote now.
        half += usize::from(answers == 2);
    }
    let after_half = rss_kb(pid);
    eprintln!(
        "[600 half-finished handshakes] {half} got past the cookie in {:.1} s; RSS {after_half} kB",
        t.elapsed().as_secs_f64()
    );

    // 4. A legitimate client still gets through.
    let (client, _driver) = coapio::Endpoint::builder()
        .dtls(client_config())
        .build()
        .unwrap();
    let r = common::block_on_within(
        Duration::from_secs(10),
        client.get(&format!("coaps://{target}/hello")),
    )
    .unwrap();
    assert_eq!(common::text(&r), "Hello, world!");
    let end_rss = rss_kb(pid);
    eprintln!("[afterwards] a client's GET answered; RSS {start_rss} -> {end_rss} kB");
    assert!(
        end_rss.saturating_sub(start_rss) < 64 * 1024,
        "RSS grew by {} kB",
        end_rss - start_rss
    );
}
