//! The C ABI's callbacks when an earlier callback of the same round changes things: a
//! request cancelled, or the context freed, inside a callback while more events of that
//! round are pending. No callback may run for what is gone (its userdata may be freed).
//! Loopback only; every wait is bounded.
#![cfg(feature = "capi")]

use std::ffi::{c_void, CString};
use std::net::{SocketAddr, UdpSocket};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use coapio::ffi::coapio_method::COAPIO_METHOD_GET;
use coapio::ffi::coapio_result::{self, *};
use coapio::ffi::*;
use coapio::message::{Code, Message, OptionNumber, Type};

/// The bound on any single wait in these tests.
const LIMIT: Duration = Duration::from_secs(5);

#[track_caller]
fn ok(r: coapio_result) {
    assert_eq!(r, COAPIO_RESULT_OK);
}

/// A client context (udp6, the default on Linux) with NSTART 2, so that two requests to
/// one peer are on the wire together.
fn client() -> *mut coapio_context {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    ok(coapio_config_set_nstart(cfg, 2));
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    ctx
}

/// A peer that receives requests and answers only as the test says, and its URI.
fn peer() -> (UdpSocket, String) {
    let peer = UdpSocket::bind("[::1]:0").unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let uri = format!("coap://[::1]:{}/x", peer.local_addr().unwrap().port());
    (peer, uri)
}

/// The next request at `peer`, and where it came from.
fn receive(peer: &UdpSocket) -> (Message, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (n, from) = peer.recv_from(&mut buf).expect("no request arrived");
    (Message::decode(&buf[..n]).unwrap(), from)
}

/// A 2.05 for `request`: a piggybacked ACK, or a NON with message ID `mid`; with `observe`,
/// an Observe option carrying it.
fn answer(request: &Message, ty: Type, mid: u16, observe: Option<u32>) -> Vec<u8> {
    let mid = if ty == Type::Ack {
        request.message_id
    } else {
        mid
    };
    let mut m = Message::new(ty, Code::CONTENT, mid);
    m.token = request.token;
    if let Some(seq) = observe {
        m.options.push_uint(OptionNumber::OBSERVE, seq);
    }
    m.payload = b"hi".to_vec();
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// What the first callback does before it returns.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Cancels the request `SameRound::other`.
    Cancel,
    /// Frees the context.
    Free,
}

/// The userdata of the tests: the context, what to cancel, and what the callbacks saw.
struct SameRound {
    ctx: AtomicPtr<coapio_context>,
    other: AtomicU64,
    then: Then,
    calls: Mutex<Vec<(&'static str, coapio_result)>>,
}

impl SameRound {
    fn new(ctx: *mut coapio_context, then: Then) -> Self {
        Self {
            ctx: AtomicPtr::new(ctx),
            other: AtomicU64::new(0),
            then,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn as_userdata(&self) -> *mut c_void {
        (self as *const Self).cast_mut().cast()
    }

    fn send(&self, uri: &str, observe: bool) -> u64 {
        let uri = CString::new(uri).unwrap();
        let mut req = null_mut();
        ok(coapio_request_new(
            COAPIO_METHOD_GET as u32,
            uri.as_ptr(),
            &mut req,
        ));
        ok(coapio_request_set_observe(req, observe));
        let mut id = 0;
        ok(coapio_context_send(
            self.ctx.load(SeqCst),
            req,
            Some(act),
            self.as_userdata(),
            &mut id,
        ));
        id
    }

    /// Processes the context once, when both answers are waiting at its socket.
    fn process_once(&self) {
        let ctx = self.ctx.load(SeqCst);
        assert!(readable(coapio_context_get_fd(ctx), 2000));
        // Both datagrams were sent before the first became readable; give the second a
        // moment on loopback so that one round reads both.
        std::thread::sleep(Duration::from_millis(50));
        ok(coapio_context_process(ctx));
    }

    fn calls(&self) -> Vec<(&'static str, coapio_result)> {
        self.calls.lock().unwrap().clone()
    }
}

/// Records each call; the first one then cancels `other` or frees the context.
extern "C" fn act(userdata: *mut c_void, result: coapio_result, _: *const coapio_response) {
    // SAFETY: the tests pass a SameRound that outlives the context's callbacks.
    let s = unsafe { &*userdata.cast::<SameRound>() };
    let first = s.calls.lock().unwrap().is_empty();
    s.calls.lock().unwrap().push(("called", result));
    if !first {
        return;
    }
    match s.then {
        Then::Cancel => {
            let r = coapio_context_cancel(s.ctx.load(SeqCst), s.other.load(SeqCst));
            s.calls.lock().unwrap().push(("cancel", r));
        }
        Then::Free => {
            coapio_context_free(s.ctx.swap(null_mut(), SeqCst));
            s.calls.lock().unwrap().push(("freed", COAPIO_RESULT_OK));
        }
    }
}

/// Two requests whose responses arrive together; the first's callback does `then`.
fn two_responses_in_one_round(then: Then) -> SameRound {
    let (peer, uri) = peer();
    let s = SameRound::new(client(), then);
    s.send(&uri, false);
    let (a, from) = receive(&peer);
    let b_id = s.send(&uri, false);
    let (b, _) = receive(&peer);
    s.other.store(b_id, SeqCst);
    peer.send_to(&answer(&a, Type::Ack, 0, None), from).unwrap();
    peer.send_to(&answer(&b, Type::Ack, 0, None), from).unwrap();
    s.process_once();
    s
}

/// An observation whose first response and a notification arrive together; the callback
/// for the first does `then` (cancelling the observation itself).
fn two_notifications_in_one_round(then: Then) -> SameRound {
    let (peer, uri) = peer();
    let s = SameRound::new(client(), then);
    let id = s.send(&uri, true);
    s.other.store(id, SeqCst);
    let (req, from) = receive(&peer);
    assert!(req.options.get(OptionNumber::OBSERVE).is_some());
    peer.send_to(&answer(&req, Type::Ack, 0, Some(1)), from)
        .unwrap();
    peer.send_to(&answer(&req, Type::Non, 0x7001, Some(2)), from)
        .unwrap();
    s.process_once();
    s
}

/// Processes the context (if not freed) a little longer: no callback may come late.
fn settle_and_free(s: &SameRound) {
    let ctx = s.ctx.swap(null_mut(), SeqCst);
    if !ctx.is_null() {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            readable(coapio_context_get_fd(ctx), 20);
            ok(coapio_context_process(ctx));
        }
        coapio_context_free(ctx);
    }
}

#[test]
fn request_cancelled_in_an_earlier_callback_of_the_round_is_not_called() {
    let s = two_responses_in_one_round(Then::Cancel);
    settle_and_free(&s);
    assert_eq!(
        s.calls(),
        [("called", COAPIO_RESULT_OK), ("cancel", COAPIO_RESULT_OK)],
        "B was cancelled (its response had arrived, but it was open) and never called"
    );
}

#[test]
fn observation_cancelled_in_its_callback_gets_no_pending_notification() {
    let s = two_notifications_in_one_round(Then::Cancel);
    settle_and_free(&s);
    assert_eq!(
        s.calls(),
        [("called", COAPIO_RESULT_OK), ("cancel", COAPIO_RESULT_OK)]
    );
}

#[test]
fn no_callback_after_the_context_was_freed_in_an_earlier_one() {
    let s = two_responses_in_one_round(Then::Free);
    settle_and_free(&s);
    assert_eq!(
        s.calls(),
        [("called", COAPIO_RESULT_OK), ("freed", COAPIO_RESULT_OK)]
    );
}

#[test]
fn no_notification_after_the_context_was_freed_in_a_callback() {
    let s = two_notifications_in_one_round(Then::Free);
    settle_and_free(&s);
    assert_eq!(
        s.calls(),
        [("called", COAPIO_RESULT_OK), ("freed", COAPIO_RESULT_OK)]
    );
}
