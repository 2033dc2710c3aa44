//! Codec benchmarks: decoding and encoding a typical request and response.
//!
//! A small harness with no dependencies: each case is warmed up, then timed as 15 samples of N
//! iterations each, N chosen so that one sample takes about 75 ms; the median and the minimum
//! nanoseconds per operation are printed. A counting global allocator wrapped around
//! [`System`] counts the heap allocations each case makes per operation.
//!
//! ```text
//! cargo bench --bench codec                      # the four cases
//! cargo bench --bench codec -- --print-cases     # the two datagrams, as hex, for the peers
//! ```
//!
//! Every line has the form
//! `codec/<case>  median <ns> ns  min <ns> ns  allocs/op <n>`, the format the peers in
//! `benches/peers/` (libcoap, aiocoap) print too, so one run compares them side by side. The
//! datagrams below are written out by hand from RFC 7252 §3; the harness asserts that coapio
//! decodes them to the expected fields and encodes the built messages to exactly these bytes,
//! and the peers assert the same of their own encoders against the hex printed here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coapio::message::{Code, Message, MessageRef, OptionNumber, Token, Type};

/// [`System`], counting every allocation (and reallocation) it is asked for.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the wrapper only bumps a counter.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator, that is by `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, that is by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const MESSAGE_ID: u16 = 0x1234;
const TOKEN: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];
const ETAG: [u8; 4] = [0x5e, 0x7a, 0x9c, 0x21];
/// application/octet-stream
const CONTENT_FORMAT: u32 = 42;
const MAX_AGE: u32 = 60;
const PAYLOAD_LEN: usize = 1024;

/// The request: CON GET, MID 0x1234, token de ad be ef, Uri-Path "sensors" and "temperature",
/// Uri-Query "unit=C" (35 bytes).
fn get_datagram() -> Vec<u8> {
    let mut d = vec![0x44, 0x01, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef];
    d.push(0xb7); // delta 11 (Uri-Path), length 7
    d.extend_from_slice(b"sensors");
    d.push(0x0b); // delta 0 (Uri-Path again), length 11
    d.extend_from_slice(b"temperature");
    d.push(0x46); // delta 4 (Uri-Query), length 6
    d.extend_from_slice(b"unit=C");
    d
}

/// The payload of the response: bytes 0, 1, …, 255, 0, 1, … (1 KiB).
fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| i as u8).collect()
}

/// The response: piggybacked ACK 2.05, MID 0x1234, token de ad be ef, ETag 5e 7a 9c 21,
/// Content-Format 42, Max-Age 60, a 1 KiB payload (1042 bytes).
fn response_datagram() -> Vec<u8> {
    let mut d = vec![0x64, 0x45, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef];
    d.push(0x44); // delta 4 (ETag), length 4
    d.extend_from_slice(&ETAG);
    d.extend_from_slice(&[0x81, 0x2a]); // delta 8 (Content-Format), length 1: 42
    d.extend_from_slice(&[0x21, 0x3c]); // delta 2 (Max-Age), length 1: 60
    d.push(0xff);
    d.extend_from_slice(&payload());
    d
}

fn get_message() -> Message {
    let mut m = Message::new(Type::Con, Code::GET, MESSAGE_ID);
    m.token = Token::from_slice(&TOKEN).expect("4-byte token");
    m.options.push(OptionNumber::URI_PATH, "sensors");
    m.options.push(OptionNumber::URI_PATH, "temperature");
    m.options.push(OptionNumber::URI_QUERY, "unit=C");
    m
}

fn response_message() -> Message {
    let mut m = Message::new(Type::Ack, Code::CONTENT, MESSAGE_ID);
    m.token = Token::from_slice(&TOKEN).expect("4-byte token");
    m.options.push(OptionNumber::ETAG, ETAG);
    m.options
        .push_uint(OptionNumber::CONTENT_FORMAT, CONTENT_FORMAT);
    m.options.push_uint(OptionNumber::MAX_AGE, MAX_AGE);
    m.payload = payload();
    m
}

/// Checks that the hand-written datagrams and coapio agree, both ways.
fn check_cases(get: &[u8], response: &[u8]) {
    let mut buf = Vec::new();
    get_message().encode(&mut buf).expect("encode GET");
    assert_eq!(
        buf, get,
        "coapio's encoding of the GET differs from the case bytes"
    );
    buf.clear();
    response_message()
        .encode(&mut buf)
        .expect("encode response");
    assert_eq!(
        buf, response,
        "coapio's encoding of the response differs from the case bytes"
    );

    let m = MessageRef::decode(get).expect("decode GET");
    assert_eq!(
        (m.ty, m.code, m.message_id),
        (Type::Con, Code::GET, MESSAGE_ID)
    );
    assert_eq!(m.token.as_bytes(), TOKEN);
    let path: Vec<_> = m.options.get_all(OptionNumber::URI_PATH).collect();
    assert_eq!(path, [&b"sensors"[..], b"temperature"]);
    assert_eq!(m.options.get(OptionNumber::URI_QUERY), Some(&b"unit=C"[..]));
    assert!(m.payload.is_empty());

    let m = MessageRef::decode(response).expect("decode response");
    assert_eq!(
        (m.ty, m.code, m.message_id),
        (Type::Ack, Code::CONTENT, MESSAGE_ID)
    );
    assert_eq!(m.options.get(OptionNumber::ETAG), Some(&ETAG[..]));
    assert_eq!(
        m.options.get_uint(OptionNumber::CONTENT_FORMAT),
        Some(CONTENT_FORMAT)
    );
    assert_eq!(m.options.get_uint(OptionNumber::MAX_AGE), Some(MAX_AGE));
    assert_eq!(m.payload, payload());
}

/// Decodes and reads every field and every option, so that nothing can be optimized away.
/// The peers do the same work with their own APIs.
#[inline(always)]
fn decode_and_touch(data: &[u8]) -> usize {
    let m = MessageRef::decode(black_box(data)).expect("valid datagram");
    let mut acc = m.ty as usize + usize::from(m.code.0) + usize::from(m.message_id);
    acc += m.token.len();
    for (number, value) in m.options.iter() {
        acc += usize::from(number.0) + value.len();
    }
    acc + m.payload.len()
}

const SAMPLES: usize = 15;
const SAMPLE_TARGET: Duration = Duration::from_millis(75);

/// Times `op` and prints one line: median and minimum ns/op over the samples, allocations/op.
fn bench(name: &str, mut op: impl FnMut()) {
    // Warm up for ~100 ms and estimate the cost of one iteration meanwhile.
    let start = Instant::now();
    let mut warm = 0u64;
    while start.elapsed() < Duration::from_millis(100) {
        for _ in 0..100 {
            op();
        }
        warm += 100;
    }
    let per_iter = start.elapsed().as_secs_f64() / warm as f64;
    let iters = ((SAMPLE_TARGET.as_secs_f64() / per_iter) as u64).max(1);

    // Allocations, counted over one sample's worth of iterations after the warm-up.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..iters {
        op();
    }
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;

    let mut ns = [0f64; SAMPLES];
    for sample in &mut ns {
        let t = Instant::now();
        for _ in 0..iters {
            op();
        }
        *sample = t.elapsed().as_nanos() as f64 / iters as f64;
    }
    ns.sort_by(f64::total_cmp);
    let allocs_per_op = if allocs % iters == 0 {
        format!("{}", allocs / iters)
    } else {
        format!("{:.3}", allocs as f64 / iters as f64)
    };
    println!(
        "codec/{name}  median {:.1} ns  min {:.1} ns  allocs/op {allocs_per_op}",
        ns[SAMPLES / 2],
        ns[0],
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let get = get_datagram();
    let response = response_datagram();
    check_cases(&get, &response);

    // `cargo bench` passes `--bench`; anything else that is not ours is ignored as well.
    if std::env::args().any(|a| a == "--print-cases") {
        println!("get {}", hex(&get));
        println!("response {}", hex(&response));
        return;
    }

    bench("decode_get", || {
        black_box(decode_and_touch(&get));
    });

    let msg = get_message();
    let mut buf = Vec::with_capacity(2048);
    bench("encode_get", || {
        buf.clear();
        black_box(&msg).encode(&mut buf).expect("encodable");
        black_box(&buf);
    });

    bench("decode_response", || {
        black_box(decode_and_touch(&response));
    });

    let msg = response_message();
    bench("encode_response", || {
        buf.clear();
        black_box(&msg).encode(&mut buf).expect("encodable");
        black_box(&buf);
    });
}
