//! A panic caught at the C boundary fails the context it was working on: every later call
//! on it returns `COAPIO_RESULT_FAILED` (and `coapio_context_free` still frees it), and no
//! callback of it runs again, instead of going on with state the panic left half-updated.
//!
//! The panic comes from a realistic place: Rust code the application gave the library, here
//! a `log` logger, which the library calls from inside its own code (`trace!` on every
//! datagram sent). The logger panics only on a thread that armed it, so the tests of this
//! file (its own process: the logger is global) do not disturb one another.
#![cfg(feature = "capi")]

use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::net::{SocketAddr, UdpSocket};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering::SeqCst};
use std::sync::{Mutex, Once};
use std::time::Duration;

use coapio::ffi::coapio_method::COAPIO_METHOD_GET;
use coapio::ffi::coapio_result::{self, *};
use coapio::ffi::*;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Panics at the next datagram sent on a thread that armed it.
struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        ARMED.with(Cell::get)
    }
    fn log(&self, record: &log::Record<'_>) {
        if ARMED.with(Cell::get) && record.args().to_string().starts_with("coapio: sent") {
            ARMED.with(|a| a.set(false));
            panic!("the application's logger panics on purpose");
        }
    }
    fn flush(&self) {}
}

static LOGGER: PanickingLogger = PanickingLogger;

/// Installs the logger (once per process) and makes it panic at the next send on this thread.
fn arm() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
    ARMED.with(|a| a.set(true));
}

#[track_caller]
fn ok(r: coapio_result) {
    assert_eq!(r, COAPIO_RESULT_OK);
}

/// A client context with NSTART 2 and a first retransmission after `ack_timeout_ms`.
fn client(ack_timeout_ms: u32) -> *mut coapio_context {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    ok(coapio_config_set_nstart(cfg, 2));
    ok(coapio_config_set_ack_timeout_ms(cfg, ack_timeout_ms));
    ok(coapio_config_set_ack_random_factor(cfg, 1.0));
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    ctx
}

/// A peer that receives requests and never answers unless told to, and its URI.
fn peer() -> (UdpSocket, String) {
    let peer = UdpSocket::bind("[::1]:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let uri = format!("coap://[::1]:{}/x", peer.local_addr().unwrap().port());
    (peer, uri)
}

fn request(uri: &str) -> *mut coapio_request {
    let uri = CString::new(uri).unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        COAPIO_METHOD_GET as u32,
        uri.as_ptr(),
        &mut req,
    ));
    req
}

fn send(
    ctx: *mut coapio_context,
    uri: &str,
    cb: coapio_response_callback,
    ud: *mut c_void,
) -> coapio_result {
    coapio_context_send(ctx, request(uri), cb, ud, null_mut())
}

/// Every call on a failed context but free returns an error; free then frees it.
fn assert_failed(ctx: *mut coapio_context, uri: &str) {
    assert_eq!(coapio_context_process(ctx), COAPIO_RESULT_FAILED);
    assert_eq!(coapio_context_run(ctx, 10), COAPIO_RESULT_FAILED);
    assert_eq!(send(ctx, uri, None, null_mut()), COAPIO_RESULT_FAILED);
    assert_eq!(coapio_context_cancel(ctx, 1), COAPIO_RESULT_FAILED);
    let mut resp = null_mut();
    assert_eq!(
        coapio_request_sync(ctx, request(uri), 10, &mut resp),
        COAPIO_RESULT_FAILED
    );
    assert!(resp.is_null());
    assert_eq!(coapio_context_stop(ctx), COAPIO_RESULT_FAILED);
    assert_eq!(coapio_context_get_fd(ctx), -1);
    assert_eq!(coapio_context_next_timeout_ms(ctx), -1);
    let mut n = 0;
    assert_eq!(
        coapio_context_notify(ctx, c"/x".as_ptr(), &mut n),
        COAPIO_RESULT_FAILED
    );
    coapio_context_free(ctx);
}

#[test]
fn a_panic_in_send_fails_the_context() {
    let (peer, uri) = peer();
    let ctx = client(2000);
    arm();
    assert_eq!(send(ctx, &uri, None, null_mut()), COAPIO_RESULT_PANIC);
    assert!(!ARMED.with(Cell::get), "the logger did panic");
    let mut buf = [0u8; 1500];
    assert!(peer.recv_from(&mut buf).is_ok(), "the request went out");
    assert_failed(ctx, &uri);
}

#[test]
fn a_panic_in_process_fails_the_context() {
    let (peer, uri) = peer();
    let ctx = client(100);
    ok(send(ctx, &uri, None, null_mut()));
    let mut buf = [0u8; 1500];
    peer.recv_from(&mut buf).unwrap();
    // The retransmission is due in 100 ms; process sends it and the logger panics.
    std::thread::sleep(Duration::from_millis(150));
    arm();
    assert_eq!(coapio_context_process(ctx), COAPIO_RESULT_PANIC);
    assert!(!ARMED.with(Cell::get), "the logger did panic");
    assert_failed(ctx, &uri);
}

/// The userdata of the callback test: the context, its peer's URI, and what was called.
struct Calls {
    ctx: AtomicPtr<coapio_context>,
    uri: String,
    calls: Mutex<Vec<(&'static str, coapio_result)>>,
}

/// The first call sends a request on the context, which panics inside the library; a
/// second call must never come.
extern "C" fn send_and_panic(
    userdata: *mut c_void,
    result: coapio_result,
    _: *const coapio_response,
) {
    // SAFETY: the test passes a live Calls.
    let c = unsafe { &*userdata.cast::<Calls>() };
    c.calls.lock().unwrap().push(("called", result));
    if c.calls.lock().unwrap().len() == 1 {
        arm();
        let r = send(c.ctx.load(SeqCst), &c.uri, None, null_mut());
        c.calls.lock().unwrap().push(("send", r));
    }
}

/// A piggybacked 2.05 ACK for the Confirmable request `req`.
fn ack_for(req: &[u8]) -> Vec<u8> {
    let tkl = usize::from(req[0] & 0x0f);
    let mut ack = vec![0x60 | req[0] & 0x0f, 0x45, req[2], req[3]];
    ack.extend_from_slice(&req[4..4 + tkl]);
    ack
}

#[test]
fn a_panic_inside_a_callback_stops_the_round_and_fails_the_context() {
    let (peer, uri) = peer();
    let ctx = client(2000);
    let c = Calls {
        ctx: AtomicPtr::new(ctx),
        uri: uri.clone(),
        calls: Mutex::new(Vec::new()),
    };
    let ud = (&c as *const Calls).cast_mut().cast();
    ok(send(ctx, &uri, Some(send_and_panic), ud));
    ok(send(ctx, &uri, Some(send_and_panic), ud));
    let mut buf = [0u8; 1500];
    let mut from: Option<SocketAddr> = None;
    let mut reqs = Vec::new();
    for _ in 0..2 {
        let (n, f) = peer.recv_from(&mut buf).unwrap();
        from = Some(f);
        reqs.push(buf[..n].to_vec());
    }
    for req in &reqs {
        peer.send_to(&ack_for(req), from.unwrap()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(coapio_context_process(ctx), COAPIO_RESULT_FAILED);
    assert_eq!(
        *c.calls.lock().unwrap(),
        [("called", COAPIO_RESULT_OK), ("send", COAPIO_RESULT_PANIC)],
        "no callback after the panic"
    );
    assert_failed(ctx, &uri);
}
