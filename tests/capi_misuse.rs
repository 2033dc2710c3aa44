//! The C ABI called from Rust the way a careless C program would call it: NULL for every
//! pointer argument, values out of range, calls from inside callbacks, frees at the wrong
//! moment, answers that come too late; and the parts of modes A and B that the C examples do
//! not reach: the readiness of the mode B descriptor, the timeout schedule, answers given
//! from other threads. Loopback only; every wait is bounded.
#![cfg(feature = "capi")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::net::{SocketAddr, UdpSocket};
use std::ptr::{null, null_mut, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use coapio::ffi::coapio_method::COAPIO_METHOD_GET;
use coapio::ffi::coapio_result::{self, *};
use coapio::ffi::coapio_transport::*;
use coapio::ffi::*;

/// The bound on any single wait in these tests.
const LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Leak accounting: bytes allocated and not yet freed, per thread, so that the other tests
// running in parallel do not disturb the count. Every call under test runs on the test's
// own thread (a context spawns none), so what it leaks shows up here.

struct Counting;

thread_local! {
    static NET: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = NET.try_with(|n| n.set(n.get() + delta));
}

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `f` leaves allocated on this thread over `n` runs, after one run to warm up
/// (thread-locals, the last-error string).
fn leaked_by(n: usize, mut f: impl FnMut()) -> isize {
    f();
    let before = NET.with(Cell::get);
    for _ in 0..n {
        f();
    }
    NET.with(Cell::get) - before
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// The message of the last failure on this thread.
fn last_error() -> String {
    let mut buf = [0 as c_char; 1024];
    let mut n = 0;
    let r = coapio_last_error(buf.as_mut_ptr(), buf.len(), &mut n);
    assert_eq!(r, COAPIO_RESULT_OK);
    // SAFETY: coapio_last_error NUL-terminated the buffer.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(s.to_bytes().len(), n);
    s.to_str().expect("the last error is UTF-8").to_owned()
}

#[track_caller]
fn ok(r: coapio_result) {
    assert_eq!(r, COAPIO_RESULT_OK, "last error: {}", last_error());
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A pointer that must not be written: out-pointers keep their value on failure.
fn sentinel<T>() -> *mut T {
    NonNull::dangling().as_ptr()
}

fn config(bind: Option<&str>) -> *mut coapio_config {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    assert!(!cfg.is_null());
    if let Some(b) = bind {
        ok(coapio_config_set_bind(cfg, c(b).as_ptr()));
    }
    cfg
}

fn context(cfg: *const coapio_config) -> *mut coapio_context {
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    assert!(!ctx.is_null());
    ctx
}

/// A context bound to `[::1]` on an ephemeral port (it can serve resources).
fn server_context() -> *mut coapio_context {
    let cfg = config(Some("[::1]:0"));
    let ctx = context(cfg);
    coapio_config_free(cfg);
    ctx
}

fn local_port(ctx: *const coapio_context) -> u16 {
    let mut port = 0;
    ok(coapio_context_local_port(ctx, &mut port));
    assert_ne!(port, 0);
    port
}

fn request(uri: &str) -> *mut coapio_request {
    let mut req = null_mut();
    ok(coapio_request_new(
        COAPIO_METHOD_GET as u32,
        c(uri).as_ptr(),
        &mut req,
    ));
    assert!(!req.is_null());
    req
}

/// A silent peer: a socket that receives and never answers (unless told to).
fn silent_peer() -> (UdpSocket, String) {
    let peer = UdpSocket::bind("[::1]:0").unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let uri = format!("coap://[::1]:{}/silent", peer.local_addr().unwrap().port());
    (peer, uri)
}

/// How many datagrams are waiting at `peer`, read without blocking.
fn drain(peer: &UdpSocket) -> usize {
    peer.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1500];
    let mut n = 0;
    while peer.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    peer.set_nonblocking(false).unwrap();
    n
}

/// A piggybacked 2.05 ACK with payload `hi` for the Confirmable request `req`.
fn ack_for(req: &[u8]) -> Vec<u8> {
    let tkl = usize::from(req[0] & 0x0f);
    let mut ack = vec![0x60 | req[0] & 0x0f, 0x45, req[2], req[3]];
    ack.extend_from_slice(&req[4..4 + tkl]);
    ack.extend_from_slice(b"\xffhi");
    ack
}

/// Whether `fd` becomes readable within `ms` milliseconds (poll(2), as a mode B loop does).
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && p.revents & libc::POLLIN != 0
}

/// Mode B for several contexts on this thread: poll their descriptors and process them until
/// `done` or the limit.
fn drive(ctxs: &[*mut coapio_context], done: impl Fn() -> bool) {
    let start = Instant::now();
    let mut fds: Vec<libc::pollfd> = ctxs
        .iter()
        .map(|&ctx| libc::pollfd {
            fd: coapio_context_get_fd(ctx),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !done() {
        assert!(start.elapsed() < LIMIT, "not done within {LIMIT:?}");
        // SAFETY: valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        for &ctx in ctxs {
            ok(coapio_context_process(ctx));
        }
        for p in &mut fds {
            p.revents = 0;
        }
    }
}

/// A pointer handed to another thread, as the C ABI allows for `coapio_context_stop`,
/// responders, and a context moved to the thread that then uses it alone.
struct Shared<T>(*mut T);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
// SAFETY: see the type's docs; each test keeps to those rules.
unsafe impl<T> Send for Shared<T> {}

impl<T> Shared<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// A server context running mode A (`coapio_context_run`) on its own thread until dropped,
/// which stops it from this thread with `coapio_context_stop`.
struct ServerThread {
    ctx: Shared<coapio_context>,
    port: u16,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<coapio_result>>>,
}

impl ServerThread {
    fn start(ctx: *mut coapio_context) -> Self {
        let port = local_port(ctx);
        let done = Arc::new(AtomicBool::new(false));
        let shared = Shared(ctx);
        let d = done.clone();
        let thread = thread::spawn(move || {
            let mut results = Vec::new();
            while !d.load(SeqCst) {
                results.push(coapio_context_run(shared.get(), 10_000));
            }
            results
        });
        Self {
            ctx: shared,
            port,
            done,
            thread: Some(thread),
        }
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://[::1]:{}{path}", self.port)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.done.store(true, SeqCst);
        let stopped = coapio_context_stop(self.ctx.get());
        let results = self.thread.take().map(|t| t.join());
        coapio_context_free(self.ctx.get());
        if !thread::panicking() {
            assert_eq!(stopped, COAPIO_RESULT_OK);
            for r in results.unwrap().expect("the server thread panicked") {
                assert_eq!(r, COAPIO_RESULT_OK);
            }
        }
    }
}

/// A GET with `coapio_request_sync` from a fresh client context: the code, payload and
/// ETag (option 4) of the response.
fn get(uri: &str) -> (u8, Vec<u8>, Option<Vec<u8>>) {
    let ctx = context(null());
    let mut resp = null_mut();
    ok(coapio_request_sync(ctx, request(uri), 3000, &mut resp));
    let read = response_parts(resp);
    coapio_response_free(resp);
    coapio_context_free(ctx);
    read
}

fn response_parts(resp: *const coapio_response) -> (u8, Vec<u8>, Option<Vec<u8>>) {
    let mut code = 0;
    ok(coapio_response_code(resp, &mut code));
    let (mut buf, mut len) = (null(), 0);
    ok(coapio_response_payload(resp, &mut buf, &mut len));
    let payload = bytes(buf, len);
    let etag = match coapio_response_option(resp, 4, 0, &mut buf, &mut len) {
        COAPIO_RESULT_OK => Some(bytes(buf, len)),
        _ => None,
    };
    (code, payload, etag)
}

fn bytes(buf: *const u8, len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the library pointed buf at len bytes.
    unsafe { std::slice::from_raw_parts(buf, len) }.to_vec()
}

// ---------------------------------------------------------------------------------------
// Callbacks. They never panic (that would abort): they record, and the tests check.

/// Answers 2.05 `hello` with an ETag `e1` and Content-Format 0.
extern "C" fn hello(_: *mut c_void, _: *const coapio_incoming, responder: *mut coapio_responder) {
    let _ = coapio_responder_add_option(responder, 4, b"e1".as_ptr(), 2);
    let _ = coapio_responder_respond(responder, 0x45, b"hello".as_ptr(), 5, 0);
}

/// Results of calls made inside a callback, by name.
#[derive(Default)]
struct Calls(Mutex<Vec<(&'static str, coapio_result)>>);

impl Calls {
    fn push(&self, name: &'static str, r: coapio_result) {
        self.0.lock().unwrap().push((name, r));
    }
    fn take(&self) -> Vec<(&'static str, coapio_result)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What a response callback saw: the result and, with a response, its code and payload.
type Outcome = (coapio_result, Option<(u8, Vec<u8>)>);

/// The outcomes a response callback saw.
#[derive(Default)]
struct Outcomes(Mutex<Vec<Outcome>>);

impl Outcomes {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn take(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn as_userdata(&self) -> *mut c_void {
        (self as *const Self).cast_mut().cast()
    }
}

extern "C" fn record(userdata: *mut c_void, result: coapio_result, resp: *const coapio_response) {
    // SAFETY: the tests pass a live Outcomes.
    let outcomes = unsafe { &*userdata.cast::<Outcomes>() };
    let detail = (!resp.is_null()).then(|| {
        let (code, payload, _) = response_parts(resp);
        (code, payload)
    });
    outcomes.0.lock().unwrap().push((result, detail));
}

fn send(ctx: *mut coapio_context, uri: &str, outcomes: &Outcomes) -> u64 {
    let mut id = 0;
    ok(coapio_context_send(
        ctx,
        request(uri),
        Some(record),
        outcomes.as_userdata(),
        &mut id,
    ));
    id
}

// ---------------------------------------------------------------------------------------
// NULL for every pointer argument.

#[test]
fn null_pointers_are_refused_everywhere() {
    const NULL: coapio_result = COAPIO_RESULT_NULL_PARAMETER;
    let uri = c("coap://[::1]:9/x");

    // mod.rs
    let mut buf = [0 as c_char; 8];
    let mut n = 7usize;
    assert_eq!(coapio_last_error(null_mut(), 8, &mut n), NULL);
    assert_eq!(coapio_last_error(buf.as_mut_ptr(), 8, null_mut()), NULL);
    assert_eq!(n, 7, "out_n is written only on success");

    // config.rs
    coapio_config_free(null_mut());
    assert_eq!(coapio_config_new(null_mut()), NULL);
    let s = c("[::1]:0");
    assert_eq!(coapio_config_set_bind(null_mut(), s.as_ptr()), NULL);
    assert_eq!(
        coapio_config_set_transport(null_mut(), COAPIO_TRANSPORT_UDP6 as u32),
        NULL
    );
    assert_eq!(coapio_config_set_reuse_port(null_mut(), true), NULL);
    assert_eq!(coapio_config_set_ack_timeout_ms(null_mut(), 1000), NULL);
    assert_eq!(coapio_config_set_ack_random_factor(null_mut(), 1.5), NULL);
    assert_eq!(coapio_config_set_max_retransmit(null_mut(), 4), NULL);
    assert_eq!(coapio_config_set_nstart(null_mut(), 1), NULL);
    assert_eq!(coapio_config_set_token_length(null_mut(), 8), NULL);
    let cfg = config(None);
    assert_eq!(coapio_config_set_bind(cfg, null()), NULL);

    // context.rs
    assert_eq!(coapio_context_new(cfg, null_mut()), NULL);
    assert_eq!(coapio_context_new(null(), null_mut()), NULL);
    coapio_context_free(null_mut());
    assert_eq!(coapio_context_run(null_mut(), 0), NULL);
    assert_eq!(coapio_context_stop(null()), NULL);
    assert_eq!(coapio_context_get_fd(null()), -1);
    assert_eq!(coapio_context_get_socket(null()), usize::MAX);
    assert_eq!(coapio_context_next_timeout_ms(null()), -1);
    assert_eq!(coapio_context_process(null_mut()), NULL);
    let mut port = 7u16;
    assert_eq!(coapio_context_local_port(null(), &mut port), NULL);
    let ctx = context(cfg);
    coapio_config_free(cfg);
    // On Unix the socket to watch is the descriptor.
    assert_eq!(
        coapio_context_get_socket(ctx),
        coapio_context_get_fd(ctx) as usize
    );
    assert_eq!(coapio_context_local_port(ctx, null_mut()), NULL);
    assert_eq!(port, 7);

    // client.rs: requests
    let mut req = sentinel();
    assert_eq!(
        coapio_request_new(COAPIO_METHOD_GET as u32, null(), &mut req),
        NULL
    );
    assert_eq!(req, sentinel(), "out is written only on success");
    assert_eq!(
        coapio_request_new(COAPIO_METHOD_GET as u32, uri.as_ptr(), null_mut()),
        NULL
    );
    coapio_request_free(null_mut());
    assert_eq!(
        coapio_request_set_payload(null_mut(), b"x".as_ptr(), 1),
        NULL
    );
    assert_eq!(
        coapio_request_add_option(null_mut(), 11, b"x".as_ptr(), 1),
        NULL
    );
    assert_eq!(coapio_request_add_option_uint(null_mut(), 17, 0), NULL);
    assert_eq!(coapio_request_set_confirmable(null_mut(), false), NULL);
    assert_eq!(coapio_request_set_timeout_ms(null_mut(), 100), NULL);
    let req = request("coap://[::1]:9/x");
    assert_eq!(coapio_request_set_payload(req, null(), 3), NULL);
    assert_eq!(coapio_request_add_option(req, 11, null(), 3), NULL);
    // NULL with length 0 is the empty buffer (an empty Uri-Path; an empty ETag is refused).
    ok(coapio_request_set_payload(req, null(), 0));
    ok(coapio_request_add_option(
        req,
        COAPIO_OPTION_URI_PATH,
        null(),
        0,
    ));
    assert_eq!(
        coapio_request_add_option(req, COAPIO_OPTION_ETAG, null(), 0),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    coapio_request_free(req);

    // client.rs: sending; the request is consumed even when another argument is NULL (the
    // leak test below proves it is freed).
    let mut id = 7u64;
    assert_eq!(
        coapio_context_send(
            null_mut(),
            request("coap://[::1]:9/x"),
            None,
            null_mut(),
            &mut id
        ),
        NULL
    );
    assert_eq!(
        coapio_context_send(ctx, null_mut(), None, null_mut(), &mut id),
        NULL
    );
    assert_eq!(id, 7);
    assert_eq!(coapio_context_cancel(null_mut(), 1), NULL);
    let mut resp = sentinel();
    assert_eq!(
        coapio_request_sync(null_mut(), request("coap://[::1]:9/x"), 10, &mut resp),
        NULL
    );
    assert_eq!(coapio_request_sync(ctx, null_mut(), 10, &mut resp), NULL);
    assert_eq!(
        coapio_request_sync(ctx, request("coap://[::1]:9/x"), 10, null_mut()),
        NULL
    );
    assert_eq!(resp, sentinel());

    // client.rs: responses (the non-NULL response with NULL out-pointers is in
    // `request_sync_against_a_server_thread`).
    coapio_response_free(null_mut());
    let (mut code, mut cf, mut p, mut len) = (7u8, 7u16, null(), 7usize);
    assert_eq!(coapio_response_code(null(), &mut code), NULL);
    assert_eq!(coapio_response_payload(null(), &mut p, &mut len), NULL);
    assert_eq!(coapio_response_option(null(), 4, 0, &mut p, &mut len), NULL);
    assert_eq!(coapio_response_content_format(null(), &mut cf), NULL);
    assert_eq!((code, cf, p, len), (7, 7, null(), 7));

    // server.rs
    let path = c("/r");
    let rt = c("rt");
    assert_eq!(
        coapio_context_add_resource(
            null_mut(),
            path.as_ptr(),
            COAPIO_METHOD_MASK_ALL,
            Some(hello),
            null_mut()
        ),
        NULL
    );
    assert_eq!(
        coapio_context_add_resource(ctx, null(), COAPIO_METHOD_MASK_ALL, Some(hello), null_mut()),
        NULL
    );
    assert_eq!(
        coapio_context_add_resource(ctx, path.as_ptr(), COAPIO_METHOD_MASK_ALL, None, null_mut()),
        NULL
    );
    // A mask with no method, or with bits that name none, is refused.
    for mask in [0, 1, 0x100, COAPIO_METHOD_MASK_GET | 0x8000_0000] {
        assert_eq!(
            coapio_context_add_resource(ctx, path.as_ptr(), mask, Some(hello), null_mut()),
            COAPIO_RESULT_INVALID_ARGUMENT,
            "{mask:#x}"
        );
    }
    ok(coapio_context_add_resource(
        ctx,
        path.as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    assert_eq!(
        coapio_context_set_resource_attr(null_mut(), path.as_ptr(), rt.as_ptr(), null()),
        NULL
    );
    assert_eq!(
        coapio_context_set_resource_attr(ctx, null(), rt.as_ptr(), null()),
        NULL
    );
    assert_eq!(
        coapio_context_set_resource_attr(ctx, path.as_ptr(), null(), null()),
        NULL
    );
    // A NULL value is a bare attribute.
    ok(coapio_context_set_resource_attr(
        ctx,
        path.as_ptr(),
        c("obs").as_ptr(),
        null(),
    ));
    let (mut method, mut s, mut flag) = (7u8, null(), false);
    assert_eq!(coapio_incoming_method(null(), &mut method), NULL);
    assert_eq!(coapio_incoming_path(null(), &mut s, &mut len), NULL);
    assert_eq!(coapio_incoming_payload(null(), &mut p, &mut len), NULL);
    assert_eq!(
        coapio_incoming_option(null(), 11, 0, &mut p, &mut len),
        NULL
    );
    assert_eq!(coapio_incoming_remote(null(), &mut s), NULL);
    assert_eq!(coapio_incoming_confirmable(null(), &mut flag), NULL);
    assert_eq!(
        coapio_responder_add_option(null_mut(), 4, b"x".as_ptr(), 1),
        NULL
    );
    assert_eq!(
        coapio_responder_respond(null_mut(), 0x45, null(), 0, -1),
        NULL
    );
    coapio_responder_free(null_mut());
    assert_eq!((method, s, flag, len), (7, null(), false, 7));

    coapio_context_free(ctx);
}

/// The incoming request and the responder with NULL out-pointers, from inside a request
/// callback; and what the request looks like.
extern "C" fn probe(
    userdata: *mut c_void,
    req: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Calls.
    let calls = unsafe { &*userdata.cast::<Calls>() };
    const OK: coapio_result = COAPIO_RESULT_OK;
    let (mut m, mut s, mut p, mut len, mut flag) = (0u8, null(), null(), 0usize, false);
    calls.push("method out", coapio_incoming_method(req, null_mut()));
    calls.push("path path", coapio_incoming_path(req, null_mut(), &mut len));
    calls.push("path len", coapio_incoming_path(req, &mut s, null_mut()));
    calls.push(
        "payload buf",
        coapio_incoming_payload(req, null_mut(), &mut len),
    );
    calls.push(
        "payload len",
        coapio_incoming_payload(req, &mut p, null_mut()),
    );
    calls.push(
        "option buf",
        coapio_incoming_option(req, 11, 0, null_mut(), &mut len),
    );
    calls.push(
        "option len",
        coapio_incoming_option(req, 11, 0, &mut p, null_mut()),
    );
    calls.push("remote addr", coapio_incoming_remote(req, null_mut()));
    calls.push(
        "confirmable out",
        coapio_incoming_confirmable(req, null_mut()),
    );
    let absent = coapio_incoming_option(req, 2048, 0, &mut p, &mut len);
    let unchanged = p.is_null() && len == 0;
    calls.push("absent option", absent);
    calls.push(
        "absent option leaves out-pointers",
        if unchanged { OK } else { absent },
    );
    // What arrived: GET /probe, Confirmable, from [::1].
    let good = coapio_incoming_method(req, &mut m) == OK
        && m == 1
        && coapio_incoming_path(req, &mut s, &mut len) == OK
        // SAFETY: the library pointed s at a NUL-terminated string of len bytes.
        && unsafe { CStr::from_ptr(s) }.to_bytes() == b"/probe"
        && len == 6
        && coapio_incoming_confirmable(req, &mut flag) == OK
        && flag
        && coapio_incoming_remote(req, &mut s) == OK
        // SAFETY: as above.
        && unsafe { CStr::from_ptr(s) }.to_bytes().starts_with(b"[::1]:");
    calls.push(
        "request as sent",
        if good { OK } else { COAPIO_RESULT_PANIC },
    );
    calls.push(
        "add_option buf",
        coapio_responder_add_option(responder, 4, null(), 1),
    );
    calls.push(
        "add_option empty",
        coapio_responder_add_option(responder, COAPIO_OPTION_IF_NONE_MATCH, null(), 0),
    );
    // Consumed although the payload is NULL: the client gets 5.00.
    calls.push(
        "respond payload",
        coapio_responder_respond(responder, 0x45, null(), 3, -1),
    );
}

#[test]
fn null_pointers_inside_a_request_callback() {
    let calls = Calls::default();
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/probe").as_ptr(),
        COAPIO_METHOD_MASK_ALL,
        Some(probe),
        (&calls as *const Calls).cast_mut().cast(),
    ));
    let server = ServerThread::start(ctx);
    let (code, _, _) = get(&server.uri("/probe"));
    drop(server);
    assert_eq!(
        code, 0xa0,
        "a responder consumed by a failed respond gives 5.00"
    );
    let calls = calls.take();
    let expect = |name: &str| calls.iter().find(|c| c.0 == name).map(|c| c.1);
    for name in [
        "method out",
        "path path",
        "path len",
        "payload buf",
        "payload len",
        "option buf",
        "option len",
        "remote addr",
        "confirmable out",
        "add_option buf",
        "respond payload",
    ] {
        assert_eq!(expect(name), Some(COAPIO_RESULT_NULL_PARAMETER), "{name}");
    }
    assert_eq!(expect("absent option"), Some(COAPIO_RESULT_NOT_FOUND));
    for name in [
        "absent option leaves out-pointers",
        "request as sent",
        "add_option empty",
    ] {
        assert_eq!(expect(name), Some(COAPIO_RESULT_OK), "{name}");
    }
}

/// Parameters documented as "consumed" are freed even when the call fails.
#[test]
fn consumed_parameters_are_freed_on_error() {
    let ctx = context(null());
    let leaked = leaked_by(20, || {
        let mut id = 0;
        let r = coapio_context_send(
            null_mut(),
            request("coap://[::1]:9/x"),
            None,
            null_mut(),
            &mut id,
        );
        assert_eq!(r, COAPIO_RESULT_NULL_PARAMETER);
        let r = coapio_request_sync(ctx, request("coap://[::1]:9/x"), 10, null_mut());
        assert_eq!(r, COAPIO_RESULT_NULL_PARAMETER);
        let r = coapio_request_sync(null_mut(), request("coap://[::1]:9/x"), 10, null_mut());
        assert_eq!(r, COAPIO_RESULT_NULL_PARAMETER);
    });
    coapio_context_free(ctx);
    assert!(leaked.abs() < 256, "{leaked} bytes leaked over 20 rounds");
}

// ---------------------------------------------------------------------------------------
// Names, messages, versions.

#[test]
fn result_str_names_every_value() {
    let all = [
        COAPIO_RESULT_OK,
        COAPIO_RESULT_NULL_PARAMETER,
        COAPIO_RESULT_INVALID_ARGUMENT,
        COAPIO_RESULT_INVALID_URI,
        COAPIO_RESULT_IO,
        COAPIO_RESULT_REENTRANT,
        COAPIO_RESULT_TIMEOUT,
        COAPIO_RESULT_RESET,
        COAPIO_RESULT_UNREACHABLE,
        COAPIO_RESULT_BAD_RESPONSE,
        COAPIO_RESULT_CANCELLED,
        COAPIO_RESULT_REFUSED,
        COAPIO_RESULT_NOT_FOUND,
        COAPIO_RESULT_PANIC,
        COAPIO_RESULT_FAILED,
    ];
    let mut names = Vec::new();
    for (i, r) in all.into_iter().enumerate() {
        assert_eq!(r as u32, i as u32, "values are explicit and dense from 0");
        let p = coapio_result_str(r as u32);
        assert!(!p.is_null());
        // SAFETY: a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
        assert!(!name.is_empty(), "{r:?}");
        assert_eq!(
            p,
            coapio_result_str(r as u32),
            "static, the same pointer each time"
        );
        names.push(name);
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "every name is different");
}

#[test]
fn code_names() {
    let name = |code: u8| {
        // SAFETY: a static NUL-terminated string.
        unsafe { CStr::from_ptr(coapio_code_name(code)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(name(0x00), "Empty");
    assert_eq!(name(0x01), "GET");
    assert_eq!(name(0x07), "iPATCH");
    assert_eq!(name(0x45), "Content");
    assert_eq!(name(0x84), "Not Found");
    assert_eq!(name(0xa0), "Internal Server Error");
    for unregistered in [0x08, 0x1f, 0x20, 0x46, 0x60, 0xff] {
        assert_eq!(name(unregistered), "", "{unregistered:#04x}");
    }
    for code in 0..=255u8 {
        assert_eq!(coapio_code_name(code), coapio_code_name(code), "static");
    }
}

#[test]
fn version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(coapio_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(coapio_version(), coapio_version(), "static");
    let n = |s: &str| s.parse::<u32>().unwrap();
    assert_eq!(
        coapio_version_number(),
        n(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
            + n(env!("CARGO_PKG_VERSION_MINOR")) * 100
            + n(env!("CARGO_PKG_VERSION_PATCH"))
    );
}

#[test]
fn last_error_fills_a_small_buffer() {
    // An error message with a two-byte character near its start: `"ä:1" is not ...`.
    let cfg = config(None);
    assert_eq!(
        coapio_config_set_bind(cfg, c("ä:1").as_ptr()),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    coapio_config_free(cfg);
    let full = last_error();
    assert!(full.starts_with("\"ä:1\""), "{full}");

    let mut n = 99usize;
    let mut buf = [0x55 as c_char; 8];
    assert_eq!(
        coapio_last_error(buf.as_mut_ptr(), 0, &mut n),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!((n, buf[0]), (99, 0x55), "nothing written for len 0");

    for len in 1..=full.len() + 2 {
        let mut buf = vec![0x55 as c_char; len + 1];
        let mut n = 99usize;
        ok(coapio_last_error(buf.as_mut_ptr(), len, &mut n));
        assert!(n < len, "room for the NUL: len {len}, n {n}");
        assert_eq!(buf[n], 0, "NUL-terminated at out_n");
        assert_eq!(buf[len], 0x55, "nothing written past len");
        let got: Vec<u8> = buf[..n].iter().map(|&b| b as u8).collect();
        let got = std::str::from_utf8(&got).expect("cut at a char boundary");
        assert!(full.starts_with(got));
        // As much as fits: at most one character (up to 3 more bytes) is left out.
        assert!(n == full.len() || n + 4 > len, "len {len}, n {n}");
    }
    // "ä" is bytes 1..3: a buffer of 3 holds `"` and the NUL, not half of the "ä".
    let mut buf = [0x55 as c_char; 3];
    ok(coapio_last_error(buf.as_mut_ptr(), 3, &mut n));
    assert_eq!((n, buf[0] as u8, buf[1]), (1, b'"', 0));
    // Reading the message does not clear it.
    assert_eq!(last_error(), full);
}

#[test]
fn last_error_is_per_thread() {
    let cfg = config(None);
    assert_eq!(
        coapio_config_set_nstart(cfg, 0),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    let mine = last_error();
    let theirs = thread::spawn(|| {
        assert_eq!(
            coapio_context_new(null(), null_mut()),
            COAPIO_RESULT_NULL_PARAMETER
        );
        last_error()
    })
    .join()
    .unwrap();
    assert_eq!(theirs, "out is NULL");
    assert_eq!(
        last_error(),
        mine,
        "another thread's failure does not touch this one's"
    );
    coapio_config_free(cfg);
}

// ---------------------------------------------------------------------------------------
// Arguments out of range or malformed.

#[test]
fn config_values_out_of_range() {
    const BAD: coapio_result = COAPIO_RESULT_INVALID_ARGUMENT;
    let cfg = config(None);
    for ms in [0, 3_600_001, u32::MAX] {
        assert_eq!(coapio_config_set_ack_timeout_ms(cfg, ms), BAD, "{ms}");
        assert!(!last_error().is_empty());
    }
    for ms in [1, 2000, 3_600_000] {
        ok(coapio_config_set_ack_timeout_ms(cfg, ms));
    }
    for f in [0.0, 0.999, 10.001, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(coapio_config_set_ack_random_factor(cfg, f), BAD, "{f}");
    }
    for f in [1.0, 1.5, 10.0] {
        ok(coapio_config_set_ack_random_factor(cfg, f));
    }
    assert_eq!(coapio_config_set_max_retransmit(cfg, 21), BAD);
    ok(coapio_config_set_max_retransmit(cfg, 0));
    ok(coapio_config_set_max_retransmit(cfg, 20));
    assert_eq!(coapio_config_set_nstart(cfg, 0), BAD);
    ok(coapio_config_set_nstart(cfg, 1));
    assert_eq!(coapio_config_set_token_length(cfg, 9), BAD);
    ok(coapio_config_set_token_length(cfg, 0));
    ok(coapio_config_set_token_length(cfg, 8));
    for addr in [
        "",
        "nonsense",
        "[::1]",
        "::1:5683",
        "127.0.0.1:65536",
        "[::1]:-1",
    ] {
        assert_eq!(
            coapio_config_set_bind(cfg, c(addr).as_ptr()),
            BAD,
            "{addr:?}"
        );
        assert!(
            last_error().contains("is not an address"),
            "{}",
            last_error()
        );
    }
    let not_utf8 = c"[::1]:\xff";
    assert_eq!(coapio_config_set_bind(cfg, not_utf8.as_ptr()), BAD);
    assert_eq!(last_error(), "addr is not UTF-8");
    // The settings that were accepted still make a working context.
    ok(coapio_config_set_ack_timeout_ms(cfg, 2000));
    ok(coapio_config_set_ack_random_factor(cfg, 1.5));
    let ctx = context(cfg);
    coapio_context_free(ctx);
    coapio_config_free(cfg);
}

#[test]
fn contexts_that_cannot_be_made() {
    // An address that is not this host's.
    let cfg = config(Some("[2001:db8::1]:5683"));
    let mut ctx = sentinel();
    assert_eq!(coapio_context_new(cfg, &mut ctx), COAPIO_RESULT_IO);
    assert_eq!(ctx, sentinel(), "out is written only on success");
    assert!(
        last_error().contains("[2001:db8::1]:5683"),
        "{}",
        last_error()
    );
    coapio_config_free(cfg);
    // simplesocketserver refuses the any-address, with aiocoap's words.
    let cfg = config(None);
    ok(coapio_config_set_transport(
        cfg,
        COAPIO_TRANSPORT_SIMPLESOCKETSERVER as u32,
    ));
    assert_eq!(coapio_context_new(cfg, &mut ctx), COAPIO_RESULT_IO);
    assert_eq!(ctx, sentinel());
    assert!(last_error().contains("any-address"), "{}", last_error());
    coapio_config_free(cfg);
    // A port in use, without SO_REUSEPORT.
    let taken = UdpSocket::bind("[::1]:0").unwrap();
    let cfg = config(Some(&taken.local_addr().unwrap().to_string()));
    assert_eq!(coapio_context_new(cfg, &mut ctx), COAPIO_RESULT_IO);
    assert_eq!(ctx, sentinel());
    coapio_config_free(cfg);
}

#[test]
fn invalid_uris_and_paths() {
    let mut req = sentinel();
    let not_utf8 = c"coap://[::1]/\xff";
    assert_eq!(
        coapio_request_new(COAPIO_METHOD_GET as u32, not_utf8.as_ptr(), &mut req),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(last_error(), "uri is not UTF-8");
    for uri in [
        "",
        "not a uri",
        "coap://",
        "http://[::1]/x",
        "coap://[::1]:65536/x",
        "coap://[::1/x",
        "coap://[::1]/x#fragment",
        "coap://[fe80::1%no-such-interface]/x",
    ] {
        assert_eq!(
            coapio_request_new(COAPIO_METHOD_GET as u32, c(uri).as_ptr(), &mut req),
            COAPIO_RESULT_INVALID_URI,
            "{uri:?}"
        );
        assert!(!last_error().is_empty());
    }
    assert_eq!(req, sentinel(), "out is written only on success");

    let ctx = context(null());
    for path in ["/a?b", "/a#b", "/%zz"] {
        assert_eq!(
            coapio_context_add_resource(
                ctx,
                c(path).as_ptr(),
                COAPIO_METHOD_MASK_GET,
                Some(hello),
                null_mut()
            ),
            COAPIO_RESULT_INVALID_ARGUMENT,
            "{path:?}"
        );
    }
    assert_eq!(
        coapio_context_add_resource(
            ctx,
            c"/\xff".as_ptr(),
            COAPIO_METHOD_MASK_GET,
            Some(hello),
            null_mut()
        ),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    ok(coapio_context_add_resource(
        ctx,
        c("/a").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    assert_eq!(
        coapio_context_set_resource_attr(ctx, c("/a").as_ptr(), c("not a name").as_ptr(), null()),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        coapio_context_set_resource_attr(ctx, c("/a").as_ptr(), c("rt").as_ptr(), c"\xff".as_ptr()),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        coapio_context_set_resource_attr(ctx, c("/b").as_ptr(), c("rt").as_ptr(), c("x").as_ptr()),
        COAPIO_RESULT_NOT_FOUND
    );
    coapio_context_free(ctx);
}

#[test]
fn local_port_of_simple6_is_not_found() {
    let cfg = config(None);
    ok(coapio_config_set_transport(
        cfg,
        COAPIO_TRANSPORT_SIMPLE6 as u32,
    ));
    let ctx = context(cfg);
    coapio_config_free(cfg);
    let mut port = 7u16;
    assert_eq!(
        coapio_context_local_port(ctx, &mut port),
        COAPIO_RESULT_NOT_FOUND
    );
    assert_eq!(port, 7, "out is written only on success");
    coapio_context_free(ctx);
    // udp6 has one.
    let ctx = server_context();
    local_port(ctx);
    coapio_context_free(ctx);
}

#[test]
fn cancel_of_an_unknown_or_ended_request_is_not_found() {
    let (peer, uri) = silent_peer();
    let outcomes = Outcomes::default();
    let ctx = context(null());
    assert_eq!(coapio_context_cancel(ctx, 12345), COAPIO_RESULT_NOT_FOUND);
    let id = send(ctx, &uri, &outcomes);
    ok(coapio_context_cancel(ctx, id));
    assert_eq!(coapio_context_cancel(ctx, id), COAPIO_RESULT_NOT_FOUND);
    ok(coapio_context_run(ctx, 100));
    assert_eq!(
        outcomes.len(),
        0,
        "a cancelled request's callback is not called"
    );
    assert_eq!(
        drain(&peer),
        1,
        "sent once, not retransmitted after the cancel"
    );
    coapio_context_free(ctx);
}

#[test]
fn response_option_absent_is_not_found() {
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/hello").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let server = ServerThread::start(ctx);
    let client = context(null());
    let mut resp = sentinel();
    ok(coapio_request_sync(
        client,
        request(&server.uri("/hello")),
        3000,
        &mut resp,
    ));
    assert_ne!(resp, sentinel());
    let (mut p, mut len) = (sentinel::<u8>().cast_const(), 7usize);
    for (number, index) in [(8u16, 0usize), (4, 1), (2048, 0)] {
        assert_eq!(
            coapio_response_option(resp, number, index, &mut p, &mut len),
            COAPIO_RESULT_NOT_FOUND,
            "option {number} #{index}"
        );
        assert_eq!((p, len), (sentinel::<u8>().cast_const(), 7));
    }
    ok(coapio_response_option(resp, 4, 0, &mut p, &mut len));
    assert_eq!(bytes(p, len), b"e1");
    // The response with NULL out-pointers.
    assert_eq!(
        coapio_response_code(resp, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_response_payload(resp, null_mut(), &mut len),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_response_payload(resp, &mut p, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_response_option(resp, 4, 0, null_mut(), &mut len),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_response_option(resp, 4, 0, &mut p, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_response_content_format(resp, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    coapio_response_free(resp);
    coapio_context_free(client);
}

// ---------------------------------------------------------------------------------------
// Mode A: stop, and reentrancy.

#[test]
fn double_stop_then_run_returns_at_once() {
    let ctx = context(null());
    ok(coapio_context_stop(ctx));
    ok(coapio_context_stop(ctx));
    let start = Instant::now();
    ok(coapio_context_run(ctx, 5000));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // Two stops are one: the next run lasts its timeout.
    let start = Instant::now();
    ok(coapio_context_run(ctx, 150));
    assert!(
        start.elapsed() >= Duration::from_millis(140),
        "{:?}",
        start.elapsed()
    );
    coapio_context_free(ctx);
}

#[test]
fn stop_from_another_thread_ends_an_unlimited_run() {
    let ctx = context(null());
    let shared = Shared(ctx);
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        coapio_context_stop(shared.get())
    });
    let start = Instant::now();
    ok(coapio_context_run(ctx, -1));
    assert!(start.elapsed() < LIMIT);
    assert_eq!(stopper.join().unwrap(), COAPIO_RESULT_OK);
    coapio_context_free(ctx);
}

/// What a callback needs to call back into its own context.
struct Reenter {
    ctx: AtomicPtr<coapio_context>,
    uri: CString,
    calls: Calls,
    /// Whether the response callback stops the context after reentering (mode A).
    stop: AtomicBool,
}

impl Reenter {
    fn new(uri: &str) -> Self {
        Self {
            ctx: AtomicPtr::new(null_mut()),
            uri: c(uri),
            calls: Calls::default(),
            stop: AtomicBool::new(false),
        }
    }

    fn as_userdata(&self) -> *mut c_void {
        (self as *const Self).cast_mut().cast()
    }

    /// Calls run, process and request_sync on the context, as a callback must not.
    fn reenter(&self) {
        let ctx = self.ctx.load(SeqCst);
        self.calls.push("process", coapio_context_process(ctx));
        self.calls.push("run", coapio_context_run(ctx, 0));
        let mut req = null_mut();
        let r = coapio_request_new(COAPIO_METHOD_GET as u32, self.uri.as_ptr(), &mut req);
        let mut resp = sentinel();
        let r = match r {
            COAPIO_RESULT_OK => coapio_request_sync(ctx, req, 100, &mut resp),
            e => e,
        };
        self.calls.push("request_sync", r);
        let written = resp != sentinel();
        self.calls.push(
            "request_sync out",
            if written {
                COAPIO_RESULT_PANIC
            } else {
                COAPIO_RESULT_OK
            },
        );
    }

    fn check(&self) {
        let calls = self.calls.take();
        assert_eq!(
            calls,
            [
                ("process", COAPIO_RESULT_REENTRANT),
                ("run", COAPIO_RESULT_REENTRANT),
                ("request_sync", COAPIO_RESULT_REENTRANT),
                ("request_sync out", COAPIO_RESULT_OK),
            ]
        );
    }
}

extern "C" fn reenter_from_response(
    userdata: *mut c_void,
    _: coapio_result,
    _: *const coapio_response,
) {
    // SAFETY: the test passes a live Reenter.
    let r = unsafe { &*userdata.cast::<Reenter>() };
    r.reenter();
    if r.stop.load(SeqCst) {
        let _ = coapio_context_stop(r.ctx.load(SeqCst));
    }
}

extern "C" fn reenter_from_request(
    userdata: *mut c_void,
    _: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Reenter.
    let r = unsafe { &*userdata.cast::<Reenter>() };
    r.reenter();
    let _ = coapio_responder_respond(responder, 0x45, b"after".as_ptr(), 5, -1);
}

#[test]
fn reentrant_calls_from_a_response_callback() {
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/hello").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let server = ServerThread::start(ctx);
    let uri = server.uri("/hello");

    let client = context(null());
    let reenter = Reenter::new(&uri);
    reenter.ctx.store(client, SeqCst);
    // Mode A: the callback reenters, then stops the run.
    reenter.stop.store(true, SeqCst);
    ok(coapio_context_send(
        client,
        request(&uri),
        Some(reenter_from_response),
        reenter.as_userdata(),
        null_mut(),
    ));
    let start = Instant::now();
    ok(coapio_context_run(client, LIMIT.as_millis() as i32));
    assert!(start.elapsed() < LIMIT, "the callback's stop ended the run");
    reenter.check();
    // Mode B.
    reenter.stop.store(false, SeqCst);
    ok(coapio_context_send(
        client,
        request(&uri),
        Some(reenter_from_response),
        reenter.as_userdata(),
        null_mut(),
    ));
    drive(&[client], || !reenter.calls.0.lock().unwrap().is_empty());
    reenter.check();
    // The context still works, in both modes and synchronously.
    let outcomes = Outcomes::default();
    send(client, &uri, &outcomes);
    drive(&[client], || outcomes.len() == 1);
    assert_eq!(
        outcomes.take(),
        [(COAPIO_RESULT_OK, Some((0x45, b"hello".to_vec())))]
    );
    let mut resp = null_mut();
    ok(coapio_request_sync(client, request(&uri), 3000, &mut resp));
    coapio_response_free(resp);
    coapio_context_free(client);
}

#[test]
fn reentrant_calls_from_a_request_callback() {
    let ctx = server_context();
    let uri = format!("coap://[::1]:{}/reenter", local_port(ctx));
    let reenter = Reenter::new(&uri);
    reenter.ctx.store(ctx, SeqCst);
    ok(coapio_context_add_resource(
        ctx,
        c("/reenter").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(reenter_from_request),
        reenter.as_userdata(),
    ));
    let server = ServerThread::start(ctx);
    let (code, payload, _) = get(&uri);
    assert_eq!((code, payload.as_slice()), (0x45, &b"after"[..]));
    reenter.check();
    // The server's outer run went on: it answers again.
    let (code, _, _) = get(&uri);
    assert_eq!(code, 0x45);
    reenter.check();
    drop(server);
}

// ---------------------------------------------------------------------------------------
// Freeing at the wrong moment.

#[test]
fn free_with_requests_in_flight() {
    let (peer, uri) = silent_peer();
    let outcomes = Outcomes::default();
    let leaked = leaked_by(5, || {
        // NSTART 4, so that all four requests are on the wire, not queued.
        let cfg = config(None);
        ok(coapio_config_set_nstart(cfg, 4));
        let ctx = context(cfg);
        coapio_config_free(cfg);
        for _ in 0..3 {
            send(ctx, &uri, &outcomes);
        }
        let req = request(&uri);
        ok(coapio_request_set_payload(req, b"payload".as_ptr(), 7));
        ok(coapio_request_add_option(req, 15, b"a=1".as_ptr(), 3));
        ok(coapio_context_send(ctx, req, None, null_mut(), null_mut()));
        coapio_context_free(ctx);
    });
    assert!(leaked.abs() < 256, "{leaked} bytes leaked over 5 rounds");
    assert_eq!(drain(&peer), 6 * 4, "every request went out");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(outcomes.len(), 0, "no callback after the free");
}

/// Frees the context named by a Reenter from inside a callback, and counts the calls.
extern "C" fn free_from_response(
    userdata: *mut c_void,
    _: coapio_result,
    _: *const coapio_response,
) {
    // SAFETY: the test passes a live Reenter.
    let r = unsafe { &*userdata.cast::<Reenter>() };
    coapio_context_free(r.ctx.swap(null_mut(), SeqCst));
    r.calls.push("freed", COAPIO_RESULT_OK);
}

extern "C" fn free_from_request(
    userdata: *mut c_void,
    _: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Reenter.
    let r = unsafe { &*userdata.cast::<Reenter>() };
    coapio_context_free(r.ctx.swap(null_mut(), SeqCst));
    r.calls.push("freed", COAPIO_RESULT_OK);
    // The context's state lives until the callback's run returns: the responder still works.
    r.calls.push(
        "respond",
        coapio_responder_respond(responder, 0x45, null(), 0, -1),
    );
}

#[test]
fn free_inside_a_response_callback_in_mode_b() {
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/hello").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let server = ServerThread::start(ctx);
    let uri = server.uri("/hello");
    let free = Reenter::new(&uri);
    let client = context(null());
    free.ctx.store(client, SeqCst);
    ok(coapio_context_send(
        client,
        request(&uri),
        Some(free_from_response),
        free.as_userdata(),
        null_mut(),
    ));
    let fd = coapio_context_get_fd(client);
    let start = Instant::now();
    while !free.ctx.load(SeqCst).is_null() {
        assert!(start.elapsed() < LIMIT);
        readable(fd, 50);
        ok(coapio_context_process(client));
    }
    assert_eq!(free.calls.take(), [("freed", COAPIO_RESULT_OK)]);
    drop(server);
}

#[test]

fn free_inside_a_response_callback_in_mode_a() {
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/hello").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let server = ServerThread::start(ctx);
    let uri = server.uri("/hello");
    let free = Reenter::new(&uri);
    let client = context(null());
    free.ctx.store(client, SeqCst);
    ok(coapio_context_send(
        client,
        request(&uri),
        Some(free_from_response),
        free.as_userdata(),
        null_mut(),
    ));
    let start = Instant::now();
    ok(coapio_context_run(client, 3000));
    assert_eq!(free.calls.take(), [("freed", COAPIO_RESULT_OK)]);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "run went on for {:?} after its context was freed",
        start.elapsed()
    );
}

#[test]
fn free_inside_a_request_callback() {
    let ctx = server_context();
    let uri = format!("coap://[::1]:{}/free", local_port(ctx));
    let free = Reenter::new(&uri);
    free.ctx.store(ctx, SeqCst);
    ok(coapio_context_add_resource(
        ctx,
        c("/free").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(free_from_request),
        free.as_userdata(),
    ));
    let shared = Shared(ctx);
    let server = thread::spawn(move || {
        let start = Instant::now();
        let r = coapio_context_run(shared.get(), 2000);
        (r, start.elapsed())
    });
    let client = context(null());
    let mut resp = null_mut();
    let r = coapio_request_sync(client, request(&uri), 1500, &mut resp);
    if r == COAPIO_RESULT_OK {
        coapio_response_free(resp);
    }
    coapio_context_free(client);
    let (run, _elapsed) = server.join().unwrap();
    assert_eq!(run, COAPIO_RESULT_OK);
    assert_eq!(
        free.calls.take(),
        [("freed", COAPIO_RESULT_OK), ("respond", COAPIO_RESULT_OK)]
    );
}

/// Keeps each responder it is given (as an address in a `Mutex<Vec<usize>>`).
extern "C" fn keep(
    userdata: *mut c_void,
    _: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Mutex<Vec<usize>>.
    let kept = unsafe { &*userdata.cast::<Mutex<Vec<usize>>>() };
    kept.lock().unwrap().push(responder as usize);
}

#[test]
fn responder_answered_after_its_context_was_freed() {
    let kept = Mutex::new(Vec::<usize>::new());
    let server = server_context();
    ok(coapio_context_add_resource(
        server,
        c("/keep").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(keep),
        (&kept as *const Mutex<Vec<usize>>).cast_mut().cast(),
    ));
    let uri = format!("coap://[::1]:{}/keep", local_port(server));
    let client = context(null());
    let outcomes = Outcomes::default();
    for _ in 0..3 {
        send(client, &uri, &outcomes);
    }
    drive(&[server, client], || kept.lock().unwrap().len() == 3);
    coapio_context_free(server);
    let kept = std::mem::take(&mut *kept.lock().unwrap());
    let responder = |i: usize| kept[i] as *mut coapio_responder;
    assert_eq!(
        coapio_responder_respond(responder(0), 0x45, b"late".as_ptr(), 4, -1),
        COAPIO_RESULT_NOT_FOUND
    );
    assert!(last_error().contains("gone"), "{}", last_error());
    // Options can still be added (the responder is the application's), then it is freed.
    ok(coapio_responder_add_option(
        responder(1),
        4,
        b"x".as_ptr(),
        1,
    ));
    coapio_responder_free(responder(1));
    // Consumed even though the code is wrong as well.
    assert_eq!(
        coapio_responder_respond(responder(2), 0x01, null(), 0, -1),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    coapio_context_free(client);
    assert_eq!(outcomes.len(), 0);
}

extern "C" fn give_up(_: *mut c_void, _: *const coapio_incoming, responder: *mut coapio_responder) {
    coapio_responder_free(responder);
}

/// Answers with the code in the request's payload and records the result.
extern "C" fn answer_with_code(
    userdata: *mut c_void,
    req: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Calls.
    let calls = unsafe { &*userdata.cast::<Calls>() };
    let (mut p, mut len) = (null(), 0);
    let _ = coapio_incoming_payload(req, &mut p, &mut len);
    let code = bytes(p, len).first().copied().unwrap_or(0x45);
    calls.push(
        "respond",
        coapio_responder_respond(responder, code, b"x".as_ptr(), 1, 0),
    );
}

#[test]
fn responder_freed_or_answered_wrongly_gives_5_00() {
    let calls = Calls::default();
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/give-up").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(give_up),
        null_mut(),
    ));
    ok(coapio_context_add_resource(
        ctx,
        c("/code").as_ptr(),
        COAPIO_METHOD_MASK_POST,
        Some(answer_with_code),
        (&calls as *const Calls).cast_mut().cast(),
    ));
    let server = ServerThread::start(ctx);
    assert_eq!(get(&server.uri("/give-up")).0, 0xa0);
    let client = context(null());
    // Requests (0.xx), reserved classes (1, 3, 6, 7) and the empty code are no answers.
    for code in [0x00u8, 0x01, 0x07, 0x20, 0x60, 0xc0, 0xe0, 0x45] {
        let mut req = null_mut();
        ok(coapio_request_new(
            coapio_method::COAPIO_METHOD_POST as u32,
            c(&server.uri("/code")).as_ptr(),
            &mut req,
        ));
        ok(coapio_request_set_payload(req, &code, 1));
        let mut resp = null_mut();
        ok(coapio_request_sync(client, req, 3000, &mut resp));
        let (got, _, _) = response_parts(resp);
        coapio_response_free(resp);
        let respond = calls.take();
        if code == 0x45 {
            assert_eq!(
                (got, respond.as_slice()),
                (0x45, &[("respond", COAPIO_RESULT_OK)][..])
            );
        } else {
            assert_eq!(
                (got, respond.as_slice()),
                (0xa0, &[("respond", COAPIO_RESULT_INVALID_ARGUMENT)][..]),
                "code {code:#04x}"
            );
        }
    }
    coapio_context_free(client);
    drop(server);
}

// ---------------------------------------------------------------------------------------
// Mode B: the descriptor and the timeout.

#[test]
fn mode_b_descriptor_wakes_for_timers_and_datagrams() {
    let (peer, uri) = silent_peer();
    let cfg = config(None);
    ok(coapio_config_set_ack_timeout_ms(cfg, 200));
    ok(coapio_config_set_ack_random_factor(cfg, 1.0));
    let ctx = context(cfg);
    coapio_config_free(cfg);
    let fd = coapio_context_get_fd(ctx);
    assert!(fd >= 0);
    assert_eq!(coapio_context_get_fd(ctx), fd, "always the same descriptor");
    assert_eq!(coapio_context_next_timeout_ms(ctx), -1, "nothing to do yet");
    assert!(!readable(fd, 0));

    let outcomes = Outcomes::default();
    send(ctx, &uri, &outcomes);
    let mut buf = [0u8; 1500];
    let (n, client) = peer.recv_from(&mut buf).unwrap();
    let first = buf[..n].to_vec();
    let t = coapio_context_next_timeout_ms(ctx);
    assert!((150..=200).contains(&t), "first retransmission in {t} ms");
    assert!(!readable(fd, 0), "not readable before the deadline");

    // The deadline passes: readable, and process retransmits.
    let start = Instant::now();
    assert!(readable(fd, 2000), "readable when the timeout passes");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    ok(coapio_context_process(ctx));
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(
        buf[..n],
        first[..],
        "the retransmission is the same message"
    );
    let t = coapio_context_next_timeout_ms(ctx);
    assert!((300..=400).contains(&t), "second retransmission in {t} ms");
    assert!(!readable(fd, 0), "process consumed the readiness");

    // A datagram arrives: readable before the next deadline.
    peer.send_to(&ack_for(&first), client).unwrap();
    let start = Instant::now();
    assert!(readable(fd, 2000), "readable when a datagram arrives");
    assert!(
        start.elapsed() < Duration::from_millis(t as u64),
        "{:?}",
        start.elapsed()
    );
    ok(coapio_context_process(ctx));
    assert_eq!(
        outcomes.take(),
        [(COAPIO_RESULT_OK, Some((0x45, b"hi".to_vec())))]
    );
    assert!(!readable(fd, 0));
    coapio_context_free(ctx);
}

#[test]
fn next_timeout_follows_the_retransmission_schedule() {
    let (peer, uri) = silent_peer();
    let cfg = config(None);
    ok(coapio_config_set_ack_timeout_ms(cfg, 100));
    ok(coapio_config_set_ack_random_factor(cfg, 1.0));
    ok(coapio_config_set_max_retransmit(cfg, 2));
    let ctx = context(cfg);
    coapio_config_free(cfg);
    let fd = coapio_context_get_fd(ctx);
    let outcomes = Outcomes::default();
    send(ctx, &uri, &outcomes);
    let mut schedule = vec![coapio_context_next_timeout_ms(ctx)];
    let mut sent = drain(&peer);
    let start = Instant::now();
    while outcomes.len() == 0 {
        assert!(start.elapsed() < LIMIT);
        readable(fd, 1000);
        ok(coapio_context_process(ctx));
        let now_sent = drain(&peer);
        if now_sent > 0 && outcomes.len() == 0 {
            schedule.push(coapio_context_next_timeout_ms(ctx));
        }
        sent += now_sent;
    }
    let total = start.elapsed();
    assert_eq!(
        sent, 3,
        "the request and MAX_RETRANSMIT = 2 retransmissions"
    );
    assert_eq!(outcomes.take(), [(COAPIO_RESULT_TIMEOUT, None)]);
    // ACK_TIMEOUT, doubled at each retransmission (the factor 1.0 removes the randomness).
    assert_eq!(schedule.len(), 3, "{schedule:?}");
    for (t, expected) in schedule.iter().zip([100, 200, 400]) {
        assert!((expected * 3 / 4..=expected).contains(t), "{schedule:?}");
    }
    assert!(
        total >= Duration::from_millis(650),
        "gave up after {total:?}"
    );
    let after = coapio_context_next_timeout_ms(ctx);
    assert!(
        after == -1 || after > 400,
        "no more retransmissions: {after}"
    );
    coapio_context_free(ctx);
}

/// Hands each responder to the test thread (through the channel in a `Deferred`).
struct Deferred {
    tx: Mutex<mpsc::Sender<Shared<coapio_responder>>>,
    handed: AtomicUsize,
}

impl Deferred {
    fn new(tx: mpsc::Sender<Shared<coapio_responder>>) -> Self {
        Self {
            tx: Mutex::new(tx),
            handed: AtomicUsize::new(0),
        }
    }

    fn as_userdata(&self) -> *mut c_void {
        (self as *const Self).cast_mut().cast()
    }
}

extern "C" fn defer(
    userdata: *mut c_void,
    _: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Deferred.
    let d = unsafe { &*userdata.cast::<Deferred>() };
    let _ = d.tx.lock().unwrap().send(Shared(responder));
    d.handed.fetch_add(1, SeqCst);
}

/// Answers responders from `rx` on a thread of its own, after `delay`.
fn answerer(
    rx: mpsc::Receiver<Shared<coapio_responder>>,
    delay: Duration,
) -> JoinHandle<Vec<coapio_result>> {
    thread::spawn(move || {
        let mut results = Vec::new();
        while let Ok(responder) = rx.recv_timeout(LIMIT) {
            thread::sleep(delay);
            let r = responder.get();
            results.push(coapio_responder_add_option(r, 4, b"e2".as_ptr(), 2));
            results.push(coapio_responder_respond(r, 0x45, b"later".as_ptr(), 5, 0));
        }
        results
    })
}

#[test]
fn responder_answered_from_another_thread_in_mode_a() {
    let (tx, rx) = mpsc::channel();
    let deferred = Deferred::new(tx);
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/later").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(defer),
        deferred.as_userdata(),
    ));
    // 150 ms: longer than the empty-ACK delay, so the answer is a separate response.
    let answers = answerer(rx, Duration::from_millis(150));
    let server = ServerThread::start(ctx);
    for _ in 0..2 {
        let (code, payload, etag) = get(&server.uri("/later"));
        assert_eq!(
            (code, payload.as_slice(), etag.as_deref()),
            (0x45, &b"later"[..], Some(&b"e2"[..]))
        );
    }
    drop(server);
    drop(deferred);
    assert_eq!(answers.join().unwrap(), [COAPIO_RESULT_OK; 4]);
}

#[test]
fn responder_answered_from_another_thread_wakes_mode_b() {
    let (tx, rx) = mpsc::channel();
    let deferred = Deferred::new(tx);
    let server = server_context();
    ok(coapio_context_add_resource(
        server,
        c("/later").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(defer),
        deferred.as_userdata(),
    ));
    let uri = format!("coap://[::1]:{}/later", local_port(server));
    let answers = answerer(rx, Duration::from_millis(50));
    // The client: a Non-confirmable request, so the server arms no empty-ACK timer and only
    // the answer can wake it.
    let client = thread::spawn(move || {
        let ctx = context(null());
        let req = request(&uri);
        ok(coapio_request_set_confirmable(req, false));
        let mut resp = null_mut();
        let r = coapio_request_sync(ctx, req, 3000, &mut resp);
        let parts = (r == COAPIO_RESULT_OK).then(|| response_parts(resp));
        coapio_response_free(resp);
        coapio_context_free(ctx);
        (r, parts)
    });
    let fd = coapio_context_get_fd(server);
    let start = Instant::now();
    // Until the request has been handed to the callback (and so to the answering thread).
    while deferred.handed.load(SeqCst) == 0 {
        assert!(start.elapsed() < LIMIT);
        readable(fd, 100);
        ok(coapio_context_process(server));
    }
    // Nothing is due for a long while; the answer, 50 ms from now, wakes the descriptor.
    let next = coapio_context_next_timeout_ms(server);
    assert!(next == -1 || next > 2000, "next timeout {next} ms");
    let waiting = Instant::now();
    assert!(
        readable(fd, 2000),
        "the answer made the descriptor readable"
    );
    let waited = waiting.elapsed();
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    while !client.is_finished() {
        assert!(start.elapsed() < LIMIT);
        ok(coapio_context_process(server));
        readable(fd, 20);
    }
    let (r, parts) = client.join().unwrap();
    assert_eq!(r, COAPIO_RESULT_OK);
    let (code, payload, _) = parts.unwrap();
    assert_eq!((code, payload.as_slice()), (0x45, &b"later"[..]));
    coapio_context_free(server);
    drop(deferred);
    assert_eq!(answers.join().unwrap(), [COAPIO_RESULT_OK; 2]);
}

// ---------------------------------------------------------------------------------------
// coapio_request_sync.

#[test]
fn request_sync_against_a_server_thread() {
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/hello").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let server = ServerThread::start(ctx);
    let client = context(null());
    for _ in 0..3 {
        let mut resp = null_mut();
        ok(coapio_request_sync(
            client,
            request(&server.uri("/hello")),
            3000,
            &mut resp,
        ));
        let (code, payload, etag) = response_parts(resp);
        assert_eq!(
            (code, payload.as_slice(), etag.as_deref()),
            (0x45, &b"hello"[..], Some(&b"e1"[..]))
        );
        let mut cf = 7u16;
        ok(coapio_response_content_format(resp, &mut cf));
        assert_eq!(cf, 0);
        coapio_response_free(resp);
    }
    // Not found, and a method the resource does not take.
    let mut resp = null_mut();
    ok(coapio_request_sync(
        client,
        request(&server.uri("/nothing")),
        3000,
        &mut resp,
    ));
    assert_eq!(response_parts(resp).0, 0x84);
    let mut cf = 7u16;
    assert_eq!(
        coapio_response_content_format(resp, &mut cf),
        COAPIO_RESULT_NOT_FOUND
    );
    assert_eq!(cf, 7);
    coapio_response_free(resp);
    let mut req = null_mut();
    ok(coapio_request_new(
        coapio_method::COAPIO_METHOD_DELETE as u32,
        c(&server.uri("/hello")).as_ptr(),
        &mut req,
    ));
    ok(coapio_request_sync(client, req, 3000, &mut resp));
    assert_eq!(response_parts(resp).0, 0x85);
    coapio_response_free(resp);
    coapio_context_free(client);
    drop(server);
}

#[test]
fn request_sync_times_out() {
    let (peer, uri) = silent_peer();
    let ctx = context(null());
    let mut resp = sentinel();
    let start = Instant::now();
    assert_eq!(
        coapio_request_sync(ctx, request(&uri), 200, &mut resp),
        COAPIO_RESULT_TIMEOUT
    );
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(190)..LIMIT).contains(&took),
        "{took:?}"
    );
    assert_eq!(resp, sentinel());
    // The request was cancelled: nothing more goes out.
    let sent = drain(&peer);
    ok(coapio_context_run(ctx, 100));
    assert_eq!(drain(&peer), 0);
    assert!(sent >= 1);
    coapio_context_free(ctx);
}

#[test]
fn remote_unreachable_is_reported() {
    // A port nobody listens on: the ICMP error ends the request at once.
    let closed: SocketAddr = {
        let s = UdpSocket::bind("[::1]:0").unwrap();
        s.local_addr().unwrap()
    };
    let ctx = context(null());
    let mut resp = sentinel();
    let start = Instant::now();
    let r = coapio_request_sync(ctx, request(&format!("coap://{closed}/x")), 3000, &mut resp);
    assert_eq!(r, COAPIO_RESULT_UNREACHABLE, "{}", last_error());
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(resp, sentinel());
    coapio_context_free(ctx);
}

/// A stop meant for `coapio_context_run` is not the business of `coapio_request_sync`.
#[test]

fn pending_stop_does_not_fail_request_sync() {
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/hello").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let server = ServerThread::start(ctx);
    let client = context(null());
    ok(coapio_context_stop(client));
    let mut resp = null_mut();
    ok(coapio_request_sync(
        client,
        request(&server.uri("/hello")),
        3000,
        &mut resp,
    ));
    coapio_response_free(resp);
    coapio_context_free(client);
    drop(server);
}

/// Answers with the Content-Format 70000, which does not fit in the option.
extern "C" fn too_big_format(
    userdata: *mut c_void,
    _: *const coapio_incoming,
    responder: *mut coapio_responder,
) {
    // SAFETY: the test passes a live Calls.
    let calls = unsafe { &*userdata.cast::<Calls>() };
    calls.push(
        "respond",
        coapio_responder_respond(responder, 0x45, null(), 0, 70_000),
    );
}

#[test]

fn content_format_out_of_range_is_refused() {
    let calls = Calls::default();
    let ctx = server_context();
    ok(coapio_context_add_resource(
        ctx,
        c("/cf").as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(too_big_format),
        (&calls as *const Calls).cast_mut().cast(),
    ));
    let server = ServerThread::start(ctx);
    let (code, _, _) = get(&server.uri("/cf"));
    drop(server);
    assert_eq!(
        (code, calls.take()),
        (0xa0, vec![("respond", COAPIO_RESULT_INVALID_ARGUMENT)])
    );
}

/// Enum arguments arrive from C as plain integers: values that are none of the enum's are
/// refused, never undefined behaviour.
#[test]
fn out_of_range_enum_values_are_refused() {
    for value in [17, 18, u32::MAX] {
        // SAFETY: a static NUL-terminated string.
        let s = unsafe { CStr::from_ptr(coapio_result_str(value)) };
        assert_eq!(s.to_str().unwrap(), "unknown result");
    }
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    assert_eq!(
        coapio_config_set_transport(cfg, 7),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    coapio_config_free(cfg);
    let uri = CString::new("coap://[::1]/x").unwrap();
    let mut req = null_mut();
    for method in [0u32, 8, 0x45] {
        assert_eq!(
            coapio_request_new(method, uri.as_ptr(), &mut req),
            COAPIO_RESULT_INVALID_ARGUMENT
        );
        assert!(req.is_null());
    }
}

/// simple6 has no address of its own; it takes resources, which it serves to the remotes
/// it talks to (role reversal, tested on a socket in tests/role_reversal.rs).
#[test]
fn simple6_refuses_a_bind_address_and_takes_resources() {
    extern "C" fn never(_: *mut c_void, _: *const coapio_incoming, r: *mut coapio_responder) {
        coapio_responder_free(r);
    }
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    ok(coapio_config_set_transport(
        cfg,
        COAPIO_TRANSPORT_SIMPLE6 as u32,
    ));
    let bind = CString::new("[::1]:5699").unwrap();
    ok(coapio_config_set_bind(cfg, bind.as_ptr()));
    let mut ctx = null_mut();
    assert_eq!(
        coapio_context_new(cfg, &mut ctx),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert!(ctx.is_null());
    let mut cfg2 = null_mut();
    ok(coapio_config_new(&mut cfg2));
    ok(coapio_config_set_transport(
        cfg2,
        COAPIO_TRANSPORT_SIMPLE6 as u32,
    ));
    ok(coapio_context_new(cfg2, &mut ctx));
    let path = CString::new("/x").unwrap();
    assert_eq!(
        coapio_context_add_resource(
            ctx,
            path.as_ptr(),
            COAPIO_METHOD_MASK_ALL,
            Some(never),
            null_mut()
        ),
        COAPIO_RESULT_OK
    );
    coapio_context_free(ctx);
    coapio_config_free(cfg);
    coapio_config_free(cfg2);
}

#[test]
fn set_observe_checks_its_request() {
    assert_eq!(
        coapio_request_set_observe(null_mut(), true),
        COAPIO_RESULT_NULL_PARAMETER
    );
    let uri = CString::new("coap://[::1]/x").unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        COAPIO_METHOD_GET as u32,
        uri.as_ptr(),
        &mut req,
    ));
    ok(coapio_request_set_observe(req, true));
    ok(coapio_request_set_observe(req, false));
    coapio_request_free(req);
}

#[test]
fn notify_checks_its_arguments() {
    let path = CString::new("/x").unwrap();
    assert_eq!(
        coapio_context_notify(null_mut(), path.as_ptr(), null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    let ctx = server_context();
    assert_eq!(
        coapio_context_notify(ctx, null(), null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    // No resource at /x yet: NOT_FOUND, as documented.
    let mut n = 99;
    assert_eq!(
        coapio_context_notify(ctx, path.as_ptr(), &mut n),
        COAPIO_RESULT_NOT_FOUND
    );
    assert_eq!(n, 99);
    extern "C" fn unused(_: *mut c_void, _: *const coapio_incoming, r: *mut coapio_responder) {
        coapio_responder_free(r);
    }
    ok(coapio_context_add_resource(
        ctx,
        path.as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(unused),
        null_mut(),
    ));
    ok(coapio_context_notify(ctx, path.as_ptr(), &mut n));
    assert_eq!(n, 0, "nobody observes /x");
    coapio_context_free(ctx);
}

#[test]
fn end_observations_checks_its_arguments() {
    let path = CString::new("/x").unwrap();
    let mut n = 99;
    assert_eq!(
        coapio_context_end_observations(null_mut(), path.as_ptr(), 132, null(), 0, -1, &mut n),
        COAPIO_RESULT_NULL_PARAMETER
    );
    let ctx = server_context();
    assert_eq!(
        coapio_context_end_observations(ctx, null(), 132, null(), 0, -1, &mut n),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_context_end_observations(ctx, path.as_ptr(), 1, null(), 0, -1, &mut n),
        COAPIO_RESULT_INVALID_ARGUMENT,
        "GET is not a response code"
    );
    assert_eq!(
        coapio_context_end_observations(ctx, path.as_ptr(), 132, null(), 0, 70_000, &mut n),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        coapio_context_end_observations(ctx, path.as_ptr(), 132, null(), 5, -1, &mut n),
        COAPIO_RESULT_NULL_PARAMETER,
        "a NULL payload with a length"
    );
    assert_eq!(n, 99, "nothing written on error");
    ok(coapio_context_end_observations(
        ctx,
        path.as_ptr(),
        132,
        null(),
        0,
        -1,
        &mut n,
    ));
    assert_eq!(n, 0, "nobody observes /x");
    coapio_context_free(ctx);
}

#[test]
fn dtls_credentials_check_their_arguments() {
    let (id, key) = (b"me", b"key");
    assert_eq!(
        coapio_config_set_psk(null_mut(), id.as_ptr(), 2, key.as_ptr(), 3),
        COAPIO_RESULT_NULL_PARAMETER
    );
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    assert_eq!(
        coapio_config_set_psk(cfg, null(), 2, key.as_ptr(), 3),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_config_set_psk(cfg, id.as_ptr(), 2, key.as_ptr(), 0),
        COAPIO_RESULT_INVALID_ARGUMENT,
        "an empty key"
    );
    assert_eq!(
        coapio_config_set_certificate(cfg, null(), 5, key.as_ptr(), 3),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_config_set_ca(cfg, null(), 1),
        COAPIO_RESULT_NULL_PARAMETER
    );
    let expected = if cfg!(feature = "dtls") {
        COAPIO_RESULT_OK
    } else {
        COAPIO_RESULT_UNSUPPORTED
    };
    assert_eq!(
        coapio_config_set_psk(cfg, id.as_ptr(), 2, key.as_ptr(), 3),
        expected
    );
    coapio_config_free(cfg);
}

/// OSCORE configuration: bad key material and algorithms are refused when given, a missing
/// context directory when the context is made, and one configuration makes one context with
/// its OSCORE contexts (two would reuse sequence numbers).
#[cfg(feature = "oscore")]
#[test]
fn oscore_configuration_misuse() {
    let secret = [7u8; 16];
    let add = |cfg, sender: &[u8], algorithm| {
        coapio_config_add_oscore(
            cfg,
            null(),
            sender.as_ptr(),
            sender.len(),
            [1u8].as_ptr(),
            1,
            secret.as_ptr(),
            secret.len(),
            null(),
            0,
            null(),
            0,
            algorithm,
        )
    };
    let cfg = config(None);
    assert_eq!(add(cfg, &[], 99), COAPIO_RESULT_INVALID_ARGUMENT);
    assert!(last_error().contains("algorithm"), "{}", last_error());
    assert_eq!(add(cfg, &[0; 9], 10), COAPIO_RESULT_INVALID_ARGUMENT);
    let r = coapio_config_add_oscore(
        cfg,
        null(),
        null(),
        3,
        null(),
        0,
        secret.as_ptr(),
        16,
        null(),
        0,
        null(),
        0,
        0,
    );
    assert_eq!(r, COAPIO_RESULT_NULL_PARAMETER);
    assert_eq!(
        coapio_config_add_oscore(
            null_mut(),
            null(),
            null(),
            0,
            null(),
            0,
            null(),
            0,
            null(),
            0,
            null(),
            0,
            0
        ),
        COAPIO_RESULT_NULL_PARAMETER
    );
    ok(add(cfg, &[], 0));
    ok(coapio_config_require_oscore(cfg, true));
    let first = context(cfg);
    let mut second = sentinel();
    assert_eq!(
        coapio_context_new(cfg, &mut second),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert!(
        last_error().contains("sequence numbers"),
        "{}",
        last_error()
    );
    assert_eq!(second, sentinel(), "no context written on failure");
    coapio_context_free(first);
    coapio_config_free(cfg);

    let cfg = config(None);
    ok(coapio_config_add_oscore_dir(
        cfg,
        c("coap://x*").as_ptr(),
        c("/nonexistent/ctx").as_ptr(),
    ));
    let mut ctx = sentinel();
    assert_eq!(
        coapio_context_new(cfg, &mut ctx),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert!(
        last_error().contains("/nonexistent/ctx"),
        "{}",
        last_error()
    );
    assert_eq!(
        coapio_config_add_oscore_dir(cfg, null(), null()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    coapio_config_free(cfg);
}

/// A configuration whose OSCORE setup failed (its context directory missing) made nothing:
/// once the directory is there, the same configuration makes a context.
#[cfg(feature = "oscore")]
#[test]
fn a_configuration_whose_oscore_setup_failed_can_be_used_again() {
    let dir = std::env::temp_dir().join(format!("coapio-oscore-retry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config(None);
    ok(coapio_config_add_oscore_dir(
        cfg,
        c("coap://x*").as_ptr(),
        c(dir.to_str().unwrap()).as_ptr(),
    ));
    let mut ctx = sentinel();
    assert_eq!(
        coapio_context_new(cfg, &mut ctx),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oscore-ctx/client");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["secret.json", "settings.json"] {
        std::fs::copy(sample.join(f), dir.join(f)).unwrap();
    }
    let ctx = context(cfg);
    assert!(!ctx.is_null());
    coapio_context_free(ctx);
    coapio_config_free(cfg);
    let _ = std::fs::remove_dir_all(&dir);
}
