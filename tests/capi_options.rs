//! The C ABI's option vocabulary as a C program uses it: named constants, every option of a
//! request and of a response visited in order, uint values decoded, the request's
//! Content-Format, option lengths checked against RFC 7252's table on the way in, and
//! `coapio_context_notify` of a path with no resource. A server context runs its own loop
//! (mode A) on a thread; the client uses `coapio_request_sync`. Loopback only, bounded.
#![cfg(feature = "capi")]

mod common;

use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;

use coapio::ffi::coapio_method::COAPIO_METHOD_POST;
use coapio::ffi::coapio_result::{self, *};
use coapio::ffi::*;

#[track_caller]
fn ok(r: coapio_result) {
    assert_eq!(r, COAPIO_RESULT_OK);
}

/// Every option of `at(i)` for i = 0, 1, … until NOT_FOUND.
fn all_options(
    at: impl Fn(usize, *mut u16, *mut *const u8, *mut usize) -> coapio_result,
) -> OptionList {
    let mut out = Vec::new();
    for i in 0.. {
        let (mut number, mut buf, mut len) = (0u16, null(), 0usize);
        match at(i, &mut number, &mut buf, &mut len) {
            COAPIO_RESULT_OK => {
                // SAFETY: the library pointed buf at len bytes, valid during this call.
                out.push((
                    number,
                    unsafe { std::slice::from_raw_parts(buf, len) }.to_vec(),
                ));
            }
            COAPIO_RESULT_NOT_FOUND => return out,
            other => panic!("option #{i}: {other:?}"),
        }
    }
    unreachable!()
}

/// Options as (number, value), in message order.
type OptionList = Vec<(u16, Vec<u8>)>;

/// What the server's callback saw: the request's options and Content-Format.
static SEEN: Mutex<Option<(OptionList, Option<u16>)>> = Mutex::new(None);

extern "C" fn serve(_: *mut c_void, req: *const coapio_incoming, responder: *mut coapio_responder) {
    let options = all_options(|i, n, b, l| coapio_incoming_option_at(req, i, n, b, l));
    let mut format = 0u16;
    let format =
        (coapio_incoming_content_format(req, &mut format) == COAPIO_RESULT_OK).then_some(format);
    *SEEN.lock().unwrap() = Some((options, format));
    ok(coapio_responder_add_option(
        responder,
        COAPIO_OPTION_ETAG,
        [1, 2, 3].as_ptr(),
        3,
    ));
    ok(coapio_responder_add_option(
        responder,
        COAPIO_OPTION_MAX_AGE,
        [0x01, 0x2c].as_ptr(),
        2,
    ));
    // Refused: an ETag has at most 8 bytes.
    assert_eq!(
        coapio_responder_add_option(responder, COAPIO_OPTION_ETAG, [0; 9].as_ptr(), 9),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    let body = b"{}";
    ok(coapio_responder_respond(
        responder,
        COAPIO_CODE_CHANGED,
        body.as_ptr(),
        body.len(),
        i32::from(COAPIO_FORMAT_JSON),
    ));
}

struct Server(*mut coapio_context);
// SAFETY: the context is used by the thread that runs it, and otherwise only through the
// calls documented as thread-safe (stop, notify, wake).
unsafe impl Send for Server {}
// SAFETY: as above.
unsafe impl Sync for Server {}

/// A server context on `[::1]` with one resource at `path`, and its port.
fn server(path: &CString, methods: u32, callback: RequestFn) -> (*mut coapio_context, u16) {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    let bind = CString::new("[::1]:0").unwrap();
    ok(coapio_config_set_bind(cfg, bind.as_ptr()));
    let mut server = null_mut();
    ok(coapio_context_new(cfg, &mut server));
    coapio_config_free(cfg);
    ok(coapio_context_add_resource(
        server,
        path.as_ptr(),
        methods,
        Some(callback),
        null_mut(),
    ));
    let mut port = 0u16;
    ok(coapio_context_local_port(server, &mut port));
    (server, port)
}

type RequestFn = extern "C" fn(*mut c_void, *const coapio_incoming, *mut coapio_responder);

#[test]
fn options_in_order_names_and_length_checks() {
    let path = CString::new("/opts").unwrap();
    let (server, port) = server(&path, COAPIO_METHOD_MASK_POST, serve);

    // notify: OK for the resource, NOT_FOUND for a path with none.
    let mut count = 7usize;
    ok(coapio_context_notify(server, path.as_ptr(), &mut count));
    assert_eq!(count, 0);
    let missing = CString::new("/nothing-here").unwrap();
    assert_eq!(
        coapio_context_notify(server, missing.as_ptr(), null_mut()),
        COAPIO_RESULT_NOT_FOUND
    );

    let running = Server(server);
    let thread = std::thread::spawn(move || {
        let running = running;
        coapio_context_run(running.0, 10_000)
    });

    let mut client = null_mut();
    ok(coapio_context_new(null(), &mut client));
    let uri = CString::new(format!("coap://[::1]:{port}/opts?x=1")).unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        COAPIO_METHOD_POST as u32,
        uri.as_ptr(),
        &mut req,
    ));
    // Refused by RFC 7252's table: a 300-byte Uri-Path, a 9-byte ETag-like If-Match, a
    // Content-Format above 65535; nothing is added.
    assert_eq!(
        coapio_request_add_option(req, COAPIO_OPTION_URI_PATH, [b'a'; 300].as_ptr(), 300),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        coapio_request_add_option(req, COAPIO_OPTION_IF_MATCH, [0; 9].as_ptr(), 9),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        coapio_request_add_option_uint(req, COAPIO_OPTION_CONTENT_FORMAT, 70_000),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    // Accepted.
    ok(coapio_request_add_option_uint(
        req,
        COAPIO_OPTION_CONTENT_FORMAT,
        u32::from(COAPIO_FORMAT_CBOR),
    ));
    // Content-Format is not repeatable: a second one is refused.
    assert_eq!(
        coapio_request_add_option_uint(req, COAPIO_OPTION_CONTENT_FORMAT, 0),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    ok(coapio_request_add_option_uint(
        req,
        COAPIO_OPTION_ACCEPT,
        u32::from(COAPIO_FORMAT_JSON),
    ));
    ok(coapio_request_add_option(
        req,
        COAPIO_OPTION_IF_MATCH,
        [9; 8].as_ptr(),
        8,
    ));
    ok(coapio_request_set_payload(req, [0xa0].as_ptr(), 1));
    let mut resp = null_mut();
    ok(coapio_request_sync(client, req, 5000, &mut resp));
    ok(coapio_context_stop(server));
    ok(thread.join().unwrap());

    // Counters: one exchange, seen from both sides.
    let (mut c, mut s) = (coapio_counters::default(), coapio_counters::default());
    ok(coapio_context_counters(client, &mut c));
    ok(coapio_context_counters(server, &mut s));
    assert_eq!(
        (c.requests_sent, c.responses_received, c.open_requests),
        (1, 1, 0)
    );
    assert_eq!((s.requests_received, s.responses_sent), (1, 1));
    assert_eq!(
        (c.bytes_sent, s.bytes_sent),
        (s.bytes_received, c.bytes_received)
    );
    assert_eq!(
        c.retransmissions + c.timeouts + s.duplicates + s.malformed,
        0
    );
    assert_eq!(
        coapio_context_counters(client, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(c.size, size_of::<coapio_counters>() as u64);
    // A caller's older, smaller struct gets only what it has room for; a size too small for
    // even `size` is refused.
    let mut old = [u64::MAX; 3];
    old[0] = 16;
    ok(coapio_context_counters(client, old.as_mut_ptr().cast()));
    assert_eq!(old, [16, c.datagrams_received, u64::MAX]);
    let mut none = coapio_counters {
        size: 4,
        ..Default::default()
    };
    assert_eq!(
        coapio_context_counters(client, &mut none),
        COAPIO_RESULT_INVALID_ARGUMENT
    );

    // The request's options as the handler saw them, in number order.
    let (options, format) = SEEN.lock().unwrap().take().expect("the handler ran");
    let numbers: Vec<u16> = options.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        [
            COAPIO_OPTION_IF_MATCH,
            COAPIO_OPTION_URI_PATH,
            COAPIO_OPTION_CONTENT_FORMAT,
            COAPIO_OPTION_URI_QUERY,
            COAPIO_OPTION_ACCEPT
        ]
    );
    assert_eq!(options[1].1, b"opts");
    assert_eq!(options[3].1, b"x=1");
    assert_eq!(format, Some(COAPIO_FORMAT_CBOR));

    // The response's options in order, and the uint ones decoded.
    let mut code = 0u8;
    ok(coapio_response_code(resp, &mut code));
    assert_eq!(code, COAPIO_CODE_CHANGED);
    let options = all_options(|i, n, b, l| coapio_response_option_at(resp, i, n, b, l));
    let numbers: Vec<u16> = options.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        [
            COAPIO_OPTION_ETAG,
            COAPIO_OPTION_CONTENT_FORMAT,
            COAPIO_OPTION_MAX_AGE
        ]
    );
    assert_eq!(options[0].1, [1, 2, 3]);
    let mut value = 0u32;
    ok(coapio_option_uint(
        options[2].1.as_ptr(),
        options[2].1.len(),
        &mut value,
    ));
    assert_eq!(value, 300);
    ok(coapio_option_uint(
        options[1].1.as_ptr(),
        options[1].1.len(),
        &mut value,
    ));
    assert_eq!(value, u32::from(COAPIO_FORMAT_JSON));
    // How it arrived: from the server's address, piggybacked on the ACK, with a token.
    let mut source = null();
    ok(coapio_response_source(resp, &mut source));
    // SAFETY: NUL-terminated, valid as long as the response.
    let source = unsafe { std::ffi::CStr::from_ptr(source) }
        .to_str()
        .unwrap();
    assert_eq!(source, format!("[::1]:{port}"));
    let (mut ty, mut mid, mut token, mut token_len) = (9u8, 0u16, null(), 9usize);
    ok(coapio_response_type(resp, &mut ty));
    assert_eq!(ty, COAPIO_TYPE_ACK);
    ok(coapio_response_message_id(resp, &mut mid));
    ok(coapio_response_token(resp, &mut token, &mut token_len));
    assert!((1..=8).contains(&token_len), "{token_len}");
    assert_eq!(
        coapio_response_type(resp, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    coapio_response_free(resp);
    coapio_context_free(client);
    coapio_context_free(server);

    // The uint decoder's edges.
    ok(coapio_option_uint(null(), 0, &mut value));
    assert_eq!(value, 0);
    assert_eq!(
        coapio_option_uint([1; 5].as_ptr(), 5, &mut value),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        coapio_option_uint([1].as_ptr(), 1, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    // Out-pointers and handles checked.
    assert_eq!(
        coapio_response_option_at(null(), 0, null_mut(), null_mut(), null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_incoming_option_at(null(), 0, null_mut(), null_mut(), null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_incoming_content_format(null(), null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
}

/// The reading `/sensor` serves: what the sensor thread last set.
static READING: AtomicU32 = AtomicU32::new(0);

extern "C" fn sensor(_: *mut c_void, _: *const coapio_incoming, responder: *mut coapio_responder) {
    let text = READING.load(SeqCst).to_string();
    ok(coapio_responder_respond(
        responder,
        COAPIO_CODE_CONTENT,
        text.as_ptr(),
        text.len(),
        i32::from(COAPIO_FORMAT_TEXT_PLAIN),
    ));
}

/// A sensor thread reports changes with `coapio_context_notify` while another thread runs
/// the context (mode A): each reaches the observer, with no wake-up channel of the
/// application's own. `coapio_context_wake` from a third thread only makes the loop come
/// round.
#[test]
fn notify_from_a_sensor_thread_reaches_the_observer() {
    let path = CString::new("/sensor").unwrap();
    let (server, port) = server(&path, COAPIO_METHOD_MASK_GET, sensor);
    let obs = CString::new("obs").unwrap();
    ok(coapio_context_set_resource_attr(
        server,
        path.as_ptr(),
        obs.as_ptr(),
        null(),
    ));
    let (runner, sensor_side, waker) = (Server(server), Server(server), Server(server));
    let thread = std::thread::spawn(move || {
        let runner = runner;
        coapio_context_run(runner.0, 10_000)
    });

    let client = common::udp6_client();
    let uri = format!("coap://[::1]:{port}/sensor");
    common::block_on_within(Duration::from_secs(8), async {
        let mut observation = client.ep.observe(&uri);
        let first = observation.next().await.unwrap().unwrap();
        assert_eq!(common::text(&first), "0");
        for reading in [17, 42] {
            READING.store(reading, SeqCst);
            // The path as the resource was added, or as a URI reference naming it.
            let spelling = if reading == 17 { "/sensor" } else { "./sensor" };
            let spelled = CString::new(spelling).unwrap();
            let (s, w, p) = (&sensor_side, &waker, &spelled);
            let mut count = 0usize;
            let c = &mut count;
            std::thread::scope(|scope| {
                scope.spawn(move || ok(coapio_context_notify(s.0, p.as_ptr(), c)));
                scope.spawn(move || ok(coapio_context_wake(w.0)));
            });
            assert_eq!(count, 1);
            let next = observation.next().await.unwrap().unwrap();
            assert_eq!(common::text(&next), reading.to_string());
        }
    });
    ok(coapio_context_stop(server));
    ok(thread.join().unwrap());
    client.stop();
    coapio_context_free(server);
}

/// One call of the observation callback: the result, and for a response its code and
/// whether it carried Observe.
type Call = (coapio_result, Option<(u8, bool)>);

/// What the observation callback got.
static OBSERVED: Mutex<Vec<Call>> = Mutex::new(Vec::new());

extern "C" fn observed(_: *mut c_void, result: coapio_result, resp: *const coapio_response) {
    let got = (!resp.is_null()).then(|| {
        let mut code = 0u8;
        ok(coapio_response_code(resp, &mut code));
        let (mut buf, mut len) = (null(), 0usize);
        let observe = coapio_response_option(resp, COAPIO_OPTION_OBSERVE, 0, &mut buf, &mut len)
            == COAPIO_RESULT_OK;
        (code, observe)
    });
    OBSERVED.lock().unwrap().push((result, got));
}

/// Runs `ctx` until the observation callback has been called `n` times (at most 5 s).
fn run_until_observed(ctx: *mut coapio_context, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while OBSERVED.lock().unwrap().len() < n {
        assert!(std::time::Instant::now() < deadline, "no callback #{n}");
        ok(coapio_context_run(ctx, 50));
    }
}

/// `coapio_context_cancel_observation` sends the registration again with Observe 1: the
/// server forgets the observer, and the callback gets its answer, last.
#[test]
fn cancelling_an_observation_from_c_tells_the_server() {
    let (server, ticker) = common::ticking_clock("[::1]:0", 0);
    let mut client = null_mut();
    ok(coapio_context_new(null(), &mut client));
    let uri = CString::new(format!("coap://[::1]:{}/clock", server.port())).unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        coapio_method::COAPIO_METHOD_GET as u32,
        uri.as_ptr(),
        &mut req,
    ));
    ok(coapio_request_set_observe(req, true));
    let mut id = 0u64;
    ok(coapio_context_send(
        client,
        req,
        Some(observed),
        null_mut(),
        &mut id,
    ));
    run_until_observed(client, 1);
    assert_eq!(server.ep.stats().observers, 1);
    let mut told = false;
    ok(coapio_context_cancel_observation(client, id, &mut told));
    assert!(told, "the server confirmed the observation: it is told");
    run_until_observed(client, 2);
    let calls = OBSERVED.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            (COAPIO_RESULT_OK, Some((COAPIO_CODE_CONTENT, true))),
            (COAPIO_RESULT_OK, Some((COAPIO_CODE_CONTENT, false))),
        ]
    );
    assert_eq!(
        server.ep.stats().observers,
        0,
        "the server forgot the observer"
    );
    assert_eq!(
        coapio_context_cancel_observation(client, id, null_mut()),
        COAPIO_RESULT_NOT_FOUND
    );
    coapio_context_free(client);
    ticker.join().unwrap();
    server.stop();
}

/// A failed request says what failed: the remote and how long it took, besides the code.
#[test]
fn a_failure_names_the_remote_and_how_long_it_took() {
    let closed = common::free_port("::1");
    let mut client = null_mut();
    ok(coapio_context_new(null(), &mut client));
    let uri = CString::new(format!("coap://[::1]:{closed}/x")).unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        coapio_method::COAPIO_METHOD_GET as u32,
        uri.as_ptr(),
        &mut req,
    ));
    let mut resp = null_mut();
    assert_eq!(
        coapio_request_sync(client, req, 5000, &mut resp),
        COAPIO_RESULT_UNREACHABLE
    );
    let mut text = [0 as std::ffi::c_char; 64];
    let mut elapsed = u64::MAX;
    ok(coapio_last_failure(
        text.as_mut_ptr(),
        text.len(),
        &mut elapsed,
    ));
    // SAFETY: NUL-terminated by the library.
    let remote = unsafe { std::ffi::CStr::from_ptr(text.as_ptr()) };
    assert_eq!(remote.to_str().unwrap(), format!("[::1]:{closed}"));
    assert!(elapsed < 5000, "{elapsed}");
    let (mut buf, mut n) = ([0 as std::ffi::c_char; 256], 0usize);
    ok(coapio_last_error(buf.as_mut_ptr(), buf.len(), &mut n));
    // SAFETY: as above.
    let message = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    assert!(
        message.contains(&format!(
            "network error for [::1]:{closed}: port unreachable"
        )),
        "{message}"
    );
    // A call that fails before anything is sent leaves no request failure to describe.
    assert_eq!(
        coapio_context_counters(client, null_mut()),
        COAPIO_RESULT_NULL_PARAMETER
    );
    assert_eq!(
        coapio_last_failure(null_mut(), 0, null_mut()),
        COAPIO_RESULT_NOT_FOUND
    );
    coapio_context_free(client);
}
