//! Heap allocations per request of a coapio server and of a coapio client, counted by a
//! counting global allocator.
//!
//! ```text
//! cargo bench --bench server_alloc -- [--requests 200000] [--window 64]
//! ```
//!
//! **Server:** an endpoint on udp6 (127.0.0.1) serving `/hello` ("Hello, world!"), its driver
//! on a thread of its own (`async_io::block_on`), as the example server runs it. A plain UDP
//! socket keeps WINDOW Confirmable GETs in flight, each with its own message ID and token, and
//! builds them by patching a template, so that it allocates nothing itself while counting.
//! Every 65 536 requests it moves to a new socket, so that no message ID is used twice from
//! one remote (the server remembers them for EXCHANGE_LIFETIME).
//!
//! **Client:** a coapio client endpoint keeps WINDOW requests in flight (`Endpoint::send`
//! futures in a `FuturesUnordered`, its driver beside them on the same thread) against a plain UDP responder thread that answers every
//! Confirmable GET with a piggybacked 2.05; counted as the server is.
//!
//! The first tenth of the requests warms up (caches, buffers, maps grow); the rest is counted.
//! Prints one line per side: requests, allocations per request, bytes allocated per request
//! (the allocator's count, everything the process did during the counted requests).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coapio::message::{Code, Message, MessageRef, OptionNumber, Type};
use coapio::proto::{Config, Request, Response};
use coapio::server::{get, Site};
use coapio::Endpoint;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "support/args.rs"]
mod args;
use args::arg;

fn counters() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

fn report(side: &str, window: usize, counted: u64, start: (u64, u64), seconds: f64) {
    let (allocs, bytes) = counters();
    let per = |n: u64| n as f64 / counted.max(1) as f64;
    println!(
        "{side:<7} window={window} requests={counted} seconds={seconds:.2} allocs/req={:.2} bytes/req={:.0}",
        per(allocs - start.0),
        per(bytes - start.1),
    );
}

/// Loads the server at `target` with `requests` GETs of /hello, `window` in flight; counts
/// what is allocated after the warm-up. Returns whether every request was answered.
fn load_server(target: SocketAddr, requests: usize, window: usize) -> bool {
    let mut template = Message::new(Type::Con, Code::GET, 0);
    template.token = coapio::message::Token::from_slice(&[0; 4]).unwrap();
    template.options.push(OptionNumber::URI_PATH, "hello");
    let mut wire = template.to_bytes().unwrap();
    let warmup = requests / 10;
    let mut buf = [0u8; 2048];
    let mut sock: Option<UdpSocket> = None;
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut start = counters();
    let mut t0 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered < requests && Instant::now() < deadline {
        // A new socket at every 65 536th request, once the old one's requests are answered.
        if sent % 65_536 == 0 && answered == sent && sent < requests {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.connect(target).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            sock = Some(s);
        }
        let s = sock.as_ref().expect("a socket");
        while sent < requests
            && sent - answered < window
            && (sent % 65_536 != 0 || sent == answered)
        {
            let mid = (sent % 65_536) as u16;
            wire[2..4].copy_from_slice(&mid.to_be_bytes());
            wire[4..8].copy_from_slice(&(sent as u32).to_be_bytes());
            s.send(&wire).expect("send");
            sent += 1;
            if sent % 65_536 == 0 {
                break;
            }
        }
        let Ok(n) = s.recv(&mut buf) else {
            eprintln!("server: no answer within 2 s ({answered} of {sent} answered)");
            return false;
        };
        let Ok(m) = MessageRef::decode(&buf[..n]) else {
            continue;
        };
        if m.ty == Type::Ack && m.code == Code::CONTENT {
            answered += 1;
            if answered == warmup {
                start = counters();
                t0 = Instant::now();
            }
        }
    }
    report(
        "server",
        window,
        (answered - warmup) as u64,
        start,
        t0.elapsed().as_secs_f64(),
    );
    answered == requests
}

/// A plain UDP responder: every Confirmable request gets a piggybacked 2.05 "Hello".
fn responder(sock: UdpSocket) {
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 64];
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        if n < 4 || buf[0] >> 6 != 1 || (buf[0] >> 4) & 3 != 0 {
            continue;
        }
        let tkl = usize::from(buf[0] & 0x0f);
        if tkl > 8 || n < 4 + tkl {
            continue;
        }
        out[0] = 0x60 | buf[0] & 0x0f; // ACK, same token length
        out[1] = 0x45; // 2.05
        out[2..4].copy_from_slice(&buf[2..4]);
        out[4..4 + tkl].copy_from_slice(&buf[4..4 + tkl]);
        let body = b"\xffHello";
        out[4 + tkl..4 + tkl + body.len()].copy_from_slice(body);
        let _ = sock.send_to(&out[..4 + tkl + body.len()], from);
    }
}

/// Loads the plain responder with a coapio client. Returns whether every request succeeded.
fn load_client(requests: usize, window: usize) -> bool {
    use futures::stream::{FuturesUnordered, StreamExt};
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = sock.local_addr().unwrap();
    std::thread::spawn(move || responder(sock));
    let warmup = requests / 10;
    async_io::block_on(async {
        let mut answered = 0usize;
        let mut sent = 0usize;
        let mut start = counters();
        let mut t0 = Instant::now();
        while sent < requests {
            // A new endpoint (a new port) per 60 000 requests: message IDs are not reused.
            let mut config = Config::default();
            config.nstart = window;
            let (client, driver) = Endpoint::builder()
                .bind("127.0.0.1:0".parse().unwrap())
                .config(config)
                .build()
                .expect("client");
            let batch = (requests - sent).min(60_000);
            let until = sent + batch;
            let load = async {
                let mut inflight = FuturesUnordered::new();
                let mut issued = 0usize;
                while answered < until {
                    while issued < batch && inflight.len() < window {
                        inflight.push(client.send(target, Request::get("/hello")));
                        issued += 1;
                    }
                    match inflight.next().await {
                        Some(Ok(r)) if r.code == Code::CONTENT => {
                            answered += 1;
                            if answered == warmup {
                                start = counters();
                                t0 = Instant::now();
                            }
                        }
                        Some(other) => {
                            eprintln!("client: a request failed: {other:?}");
                            return false;
                        }
                        None => break,
                    }
                }
                true
            };
            // The driver beside the load on this thread; it ends with the load.
            futures::pin_mut!(load);
            match futures::future::select(driver, load).await {
                futures::future::Either::Right((true, _)) => {}
                _ => return false,
            }
            sent += batch;
            client.shutdown();
        }
        report(
            "client",
            window,
            (answered - warmup) as u64,
            start,
            t0.elapsed().as_secs_f64(),
        );
        true
    })
}

fn main() -> ExitCode {
    let requests = arg("--requests", 200_000).clamp(1000, 10_000_000);
    let window = arg("--window", 64).clamp(1, 1024);
    let site = Site::new().resource(
        "/hello",
        get(|_req| async { Response::content("Hello, world!") }),
    );
    let (server, driver) = Endpoint::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .site(site)
        .build()
        .expect("server");
    std::thread::spawn(move || async_io::block_on(driver));
    let target = server.local_addr().expect("local address");
    let ok = load_server(target, requests, window) && load_client(requests, window);
    server.shutdown();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
