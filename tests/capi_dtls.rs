//! DTLS through the C ABI: a context with a pre-shared key sends `coaps://` requests (here
//! with `coapio_request_sync`) to a DTLS server, and a C server context with a key serves
//! `coaps://`; a `coaps://` request without credentials is refused at once. Loopback only.
#![cfg(all(feature = "capi", feature = "dtls"))]

mod common;

use std::ffi::CString;
use std::ptr::null_mut;
use std::time::Duration;

use coapio::dtls::DtlsConfig;
use coapio::ffi::coapio_method::COAPIO_METHOD_GET;
use coapio::ffi::coapio_result::{self, *};
use coapio::ffi::*;
use coapio::Endpoint;

#[track_caller]
fn ok(r: coapio_result) {
    assert_eq!(r, COAPIO_RESULT_OK);
}

fn psk_config(bind: Option<&str>) -> *mut coapio_config {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    if let Some(b) = bind {
        let b = CString::new(b).unwrap();
        ok(coapio_config_set_bind(cfg, b.as_ptr()));
    }
    let (id, key) = (b"c-client", b"c-sesame");
    ok(coapio_config_set_psk(
        cfg,
        id.as_ptr(),
        id.len(),
        key.as_ptr(),
        key.len(),
    ));
    cfg
}

/// A Rust DTLS server on loopback that knows one identity and its key: it and its port.
fn psk_server(identity: &'static [u8], key: &'static [u8]) -> (Endpoint, u16) {
    let server = DtlsConfig::psk_server(move |id: &[u8]| (id == identity).then(|| key.to_vec()));
    let (ep, driver) = Endpoint::builder()
        .bind("[::1]:0".parse().unwrap())
        .site(common::example_site())
        .dtls(server)
        .build()
        .unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let port = ep.local_addr().unwrap().port();
    (ep, port)
}

/// A C server context made from `cfg` (freed) that answers GET /hi with "hi", run by its own
/// loop on a thread: the context, its port and the thread (end it with
/// `coapio_context_stop`).
fn serve_hi(
    cfg: *mut coapio_config,
) -> (
    *mut coapio_context,
    u16,
    std::thread::JoinHandle<coapio_result>,
) {
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    extern "C" fn hi(
        _: *mut std::ffi::c_void,
        _: *const coapio_incoming,
        r: *mut coapio_responder,
    ) {
        coapio_responder_respond(r, 0x45, b"hi".as_ptr(), 2, 0);
    }
    let path = CString::new("/hi").unwrap();
    ok(coapio_context_add_resource(
        ctx,
        path.as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hi),
        null_mut(),
    ));
    let mut port = 0u16;
    ok(coapio_context_local_port(ctx, &mut port));
    struct Ctx(*mut coapio_context);
    // SAFETY: run on one thread, stopped from this one (coapio_context_stop is thread-safe).
    unsafe impl Send for Ctx {}
    let runner = Ctx(ctx);
    let t = std::thread::spawn(move || {
        let runner = runner;
        coapio_context_run(runner.0, 10_000)
    });
    (ctx, port, t)
}

/// GETs `path` from a DTLS server on loopback `port` as a Rust client with a pre-shared key.
fn psk_get(
    port: u16,
    path: &str,
    id: &str,
    key: &str,
) -> Result<coapio::proto::Response, coapio::Error> {
    let (ep, _driver) = Endpoint::builder()
        .dtls(DtlsConfig::psk_client(id, key))
        .build()
        .unwrap();
    common::block_on_within(
        Duration::from_secs(5),
        ep.get(&format!("coaps://[::1]:{port}{path}")),
    )
}

/// GETs `uri` from a context through `coapio_request_sync`: the code and payload.
fn sync_get(ctx: *mut coapio_context, uri: &str) -> Result<(u8, Vec<u8>), coapio_result> {
    let uri = CString::new(uri).unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        COAPIO_METHOD_GET as u32,
        uri.as_ptr(),
        &mut req,
    ));
    let mut resp = null_mut();
    let r = coapio_request_sync(ctx, req, 5000, &mut resp);
    if r != COAPIO_RESULT_OK {
        return Err(r);
    }
    let mut code = 0;
    ok(coapio_response_code(resp, &mut code));
    let (mut buf, mut len) = (std::ptr::null(), 0);
    ok(coapio_response_payload(resp, &mut buf, &mut len));
    // SAFETY: the response's payload, valid until the response is freed.
    let payload = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
    coapio_response_free(resp);
    Ok((code, payload))
}

#[test]
fn a_c_client_gets_over_dtls() {
    let (ep, port) = psk_server(b"c-client", b"c-sesame");
    let cfg = psk_config(None);
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    let (code, payload) = sync_get(ctx, &format!("coaps://[::1]:{port}/hello")).unwrap();
    assert_eq!((code, payload.as_slice()), (0x45, &b"Hello, world!"[..]));
    coapio_context_free(ctx);
    ep.shutdown();
}

#[test]
fn a_c_server_serves_over_dtls() {
    // A C server context with a key and one resource, run by its own loop on a thread.
    let cfg = psk_config(Some("[::1]:0"));
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    extern "C" fn hello(
        _: *mut std::ffi::c_void,
        _: *const coapio_incoming,
        r: *mut coapio_responder,
    ) {
        let body = b"hello from C over DTLS";
        coapio_responder_respond(r, 0x45, body.as_ptr(), body.len(), 0);
    }
    let path = CString::new("/hello").unwrap();
    ok(coapio_context_add_resource(
        ctx,
        path.as_ptr(),
        COAPIO_METHOD_MASK_GET,
        Some(hello),
        null_mut(),
    ));
    let mut port = 0u16;
    ok(coapio_context_local_port(ctx, &mut port));
    struct Ctx(*mut coapio_context);
    // SAFETY: the context is used by the runner thread and stopped from here, which the C
    // ABI allows (coapio_context_stop is thread-safe).
    unsafe impl Send for Ctx {}
    let runner = Ctx(ctx);
    let t = std::thread::spawn(move || {
        let runner = runner;
        coapio_context_run(runner.0, 10_000)
    });
    let r = psk_get(port, "/hello", "c-client", "c-sesame").unwrap();
    assert_eq!(r.payload, b"hello from C over DTLS");
    coapio_context_stop(ctx);
    t.join().unwrap();
    coapio_context_free(ctx);
}

#[test]
fn coaps_without_credentials_is_refused() {
    let mut ctx = null_mut();
    ok(coapio_context_new(std::ptr::null(), &mut ctx));
    assert_eq!(
        sync_get(ctx, "coaps://[::1]:5684/hello").unwrap_err(),
        COAPIO_RESULT_INVALID_URI
    );
    coapio_context_free(ctx);
    // Bad credentials are refused when the context is made.
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    let junk = b"not a certificate";
    ok(coapio_config_set_certificate(
        cfg,
        junk.as_ptr(),
        junk.len(),
        junk.as_ptr(),
        junk.len(),
    ));
    assert_eq!(
        coapio_context_new(cfg, &mut ctx),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    coapio_config_free(cfg);
}

/// A context bound with DTLS credentials takes DTLS only on its socket: a plain `coap://`
/// request from it fails at once instead of waiting for a timeout.
#[test]
fn a_bound_dtls_context_refuses_plain_requests_at_once() {
    let peer = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let uri = format!("coap://[::1]:{}/x", peer.local_addr().unwrap().port());
    let cfg = psk_config(Some("[::1]:0"));
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    let started = std::time::Instant::now();
    assert_eq!(sync_get(ctx, &uri).unwrap_err(), COAPIO_RESULT_SECURITY);
    assert!(started.elapsed() < Duration::from_secs(2));
    coapio_context_free(ctx);
}

/// A C server context accepts several identities, each with its own key.
#[test]
fn a_c_server_accepts_several_identities() {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    let bind = CString::new("[::1]:0").unwrap();
    ok(coapio_config_set_bind(cfg, bind.as_ptr()));
    for (id, key) in [("alice", "alice-key"), ("bob", "bob-key")] {
        ok(coapio_config_add_psk_identity(
            cfg,
            id.as_ptr(),
            id.len(),
            key.as_ptr(),
            key.len(),
        ));
    }
    let hint = b"coapio";
    ok(coapio_config_set_psk_hint(cfg, hint.as_ptr(), hint.len()));
    let (ctx, port, t) = serve_hi(cfg);
    for (id, key) in [("alice", "alice-key"), ("bob", "bob-key")] {
        assert_eq!(
            psk_get(port, "/hi", id, key).unwrap().payload,
            b"hi",
            "{id}"
        );
    }
    coapio_context_stop(ctx);
    t.join().unwrap();
    coapio_context_free(ctx);
}

/// The last error on this thread, as `coapio_last_error` gives it.
fn last_error() -> String {
    let mut buf = [0u8; 256];
    let mut n = 0;
    ok(coapio_last_error(
        buf.as_mut_ptr().cast(),
        buf.len(),
        &mut n,
    ));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A failed handshake says what failed: `COAPIO_RESULT_SECURITY`, and `coapio_last_error`
/// names the cause after `coapio_request_sync` and inside a callback.
#[test]
fn a_failed_handshake_says_why() {
    let (ep, port) = psk_server(b"someone", b"k");
    let uri = format!("coaps://[::1]:{port}/hello");
    let cfg = psk_config(None); // "c-client", which this server does not know
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    assert_eq!(sync_get(ctx, &uri).unwrap_err(), COAPIO_RESULT_SECURITY);
    assert!(last_error().contains("PSK identity"), "{}", last_error());

    static SEEN: std::sync::Mutex<Option<(coapio_result, String)>> = std::sync::Mutex::new(None);
    extern "C" fn done(_: *mut std::ffi::c_void, r: coapio_result, resp: *const coapio_response) {
        assert!(resp.is_null());
        *SEEN.lock().unwrap() = Some((r, last_error()));
    }
    let c_uri = CString::new(uri).unwrap();
    let mut req = null_mut();
    ok(coapio_request_new(
        COAPIO_METHOD_GET as u32,
        c_uri.as_ptr(),
        &mut req,
    ));
    ok(coapio_context_send(
        ctx,
        req,
        Some(done),
        null_mut(),
        null_mut(),
    ));
    let started = std::time::Instant::now();
    while SEEN.lock().unwrap().is_none() && started.elapsed() < Duration::from_secs(5) {
        ok(coapio_context_run(ctx, 100));
    }
    let (r, text) = SEEN.lock().unwrap().take().expect("the callback ran");
    assert_eq!(r, COAPIO_RESULT_SECURITY);
    assert!(text.contains("does not know this PSK identity"), "{text}");
    coapio_context_free(ctx);
    ep.shutdown();
}

/// With a wrong pre-shared key nothing comes back (DTLS drops what it cannot decrypt): the
/// request fails when the handshake timeout set from C runs out, and says so.
#[test]
fn a_wrong_key_fails_after_the_handshake_timeout() {
    let (ep, port) = psk_server(b"c-client", b"another-key");
    let cfg = psk_config(None);
    assert_eq!(
        coapio_config_set_dtls_handshake_timeout_ms(cfg, 99),
        COAPIO_RESULT_INVALID_ARGUMENT
    );
    ok(coapio_config_set_dtls_handshake_timeout_ms(cfg, 500));
    let mut ctx = null_mut();
    ok(coapio_context_new(cfg, &mut ctx));
    coapio_config_free(cfg);
    let started = std::time::Instant::now();
    let r = sync_get(ctx, &format!("coaps://[::1]:{port}/hello"));
    assert_eq!(r.unwrap_err(), COAPIO_RESULT_SECURITY);
    assert!(last_error().contains("timed out"), "{}", last_error());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    coapio_context_free(ctx);
    ep.shutdown();
}

/// The server context this test's lookup tries to call back into.
static LOOKUP_CTX: std::sync::atomic::AtomicPtr<coapio_context> =
    std::sync::atomic::AtomicPtr::new(null_mut());
/// What a call on the context from inside the lookup returned.
static LOOKUP_REENTRY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A lookup that knows every identity "dyn-N" with the key "key-N", and no other.
extern "C" fn dyn_lookup(
    userdata: *mut std::ffi::c_void,
    identity: *const u8,
    identity_len: usize,
    key: *mut u8,
    key_cap: usize,
) -> usize {
    assert_eq!(userdata as usize, 0x5eed);
    // A call on the context from here is refused, not a deadlock.
    let mut port = 0u16;
    let r = coapio_context_local_port(
        LOOKUP_CTX.load(std::sync::atomic::Ordering::SeqCst),
        &mut port,
    );
    LOOKUP_REENTRY.store(r as u32, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the library passes identity_len readable bytes and key_cap writable ones.
    let id = unsafe { std::slice::from_raw_parts(identity, identity_len) };
    let Some(n) = id.strip_prefix(b"dyn-") else {
        return 0;
    };
    let k = [b"key-", n].concat();
    if k.len() > key_cap {
        return 0;
    }
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(k.as_ptr(), key, k.len()) };
    k.len()
}

/// A C server context looks keys up through its callback, after the identities it was
/// given; an identity neither knows is refused with unknown_psk_identity.
#[test]
fn a_c_server_looks_keys_up_through_a_callback() {
    let mut cfg = null_mut();
    ok(coapio_config_new(&mut cfg));
    let bind = CString::new("[::1]:0").unwrap();
    ok(coapio_config_set_bind(cfg, bind.as_ptr()));
    let (id, key) = (b"fixed", b"fixed-key");
    ok(coapio_config_add_psk_identity(
        cfg,
        id.as_ptr(),
        id.len(),
        key.as_ptr(),
        key.len(),
    ));
    ok(coapio_config_set_psk_lookup(
        cfg,
        Some(dyn_lookup),
        0x5eed as *mut _,
    ));
    let (ctx, mut port, t) = serve_hi(cfg);
    LOOKUP_CTX.store(ctx, std::sync::atomic::Ordering::SeqCst);
    let get = |id: &str, key: &str| psk_get(port, "/hi", id, key);
    assert_eq!(get("fixed", "fixed-key").unwrap().payload, b"hi");
    assert_eq!(get("dyn-7", "key-7").unwrap().payload, b"hi");
    assert_eq!(get("dyn-42", "key-42").unwrap().payload, b"hi");
    assert_eq!(
        LOOKUP_REENTRY.load(std::sync::atomic::Ordering::SeqCst),
        COAPIO_RESULT_REENTRANT as u32
    );
    assert!(matches!(
        get("stranger", "key-7").unwrap_err(),
        coapio::Error::Network {
            kind: coapio::net::TransportErrorKind::Security(
                coapio::net::SecurityError::UnknownIdentity
            ),
            ..
        }
    ));
    coapio_context_stop(ctx);
    ok(t.join().unwrap());
    // After the lookup, calls work again on this thread.
    ok(coapio_context_local_port(ctx, &mut port));
    coapio_context_free(ctx);
}
