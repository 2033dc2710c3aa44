//! The client side for C: building a request, sending it with a response callback or
//! synchronously, and reading the response.

use std::ffi::{c_char, c_void};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::base::coapio_result::{self, *};
use super::base::{
    bytes_arg, check_option, fail, guard, guard_void, option_at, option_by_index, str_arg,
    write_content_format, write_slice,
};
use super::context::{coapio_context, ctx_arg, lock, Outcome, UserData};
use crate::message::uri::Uri;
use crate::message::{Code, OptionNumber};
use crate::proto::{Request, Response};

/// A request method.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum coapio_method {
    /// GET
    COAPIO_METHOD_GET = 1,
    /// POST
    COAPIO_METHOD_POST = 2,
    /// PUT
    COAPIO_METHOD_PUT = 3,
    /// DELETE
    COAPIO_METHOD_DELETE = 4,
    /// FETCH (RFC 8132)
    COAPIO_METHOD_FETCH = 5,
    /// PATCH (RFC 8132)
    COAPIO_METHOD_PATCH = 6,
    /// iPATCH (RFC 8132)
    COAPIO_METHOD_IPATCH = 7,
}

/// A request being built. Methods: `coapio_request_new`, `coapio_request_free`,
/// `coapio_request_set_payload`, `coapio_request_add_option`,
/// `coapio_request_add_option_uint`, `coapio_request_set_confirmable`,
/// `coapio_request_set_timeout_ms`; sent (and consumed) by `coapio_context_send` or
/// `coapio_request_sync`.
#[derive(Debug)]
pub struct coapio_request {
    /// The URI as given, which OSCORE contexts' patterns match.
    uri: String,
    remote: SocketAddr,
    request: Request,
    /// A `coaps://` request, which goes over DTLS: the URI's host name (`None` for an IP
    /// literal), which the server's certificate must carry.
    secure: Option<Option<String>>,
}

/// A response. Methods: `coapio_response_code`, `coapio_response_payload`,
/// `coapio_response_option`, `coapio_response_option_at`, `coapio_response_content_format`,
/// and `coapio_response_free`
/// for the ones `coapio_request_sync` hands out. One passed to a callback is borrowed for
/// the callback's duration.
#[derive(Debug)]
pub struct coapio_response {
    pub(crate) response: Response,
    /// The source address as text, made on the first `coapio_response_source`.
    source: std::sync::OnceLock<std::ffi::CString>,
}

impl coapio_response {
    pub(crate) fn new(response: Response) -> Self {
        Self {
            response,
            source: std::sync::OnceLock::new(),
        }
    }
}

/// Called once with the outcome of a request: `COAPIO_RESULT_OK` and the response, or the
/// reason it failed and NULL (then `coapio_last_error`, called in the callback, says more:
/// which DTLS alert, why a certificate was rejected). The response is valid only during the
/// call.
pub type coapio_response_callback = Option<
    extern "C" fn(userdata: *mut c_void, result: coapio_result, response: *const coapio_response),
>;

fn resolve(uri: &str) -> Result<(SocketAddr, Uri), coapio_result> {
    let (remote, parsed) = crate::endpoint::resolve(uri)
        .map_err(|e| fail(COAPIO_RESULT_INVALID_URI, format!("{uri}: {e}")))?;
    Ok((remote, parsed))
}

/// Creates a Confirmable request with `method` (a `coapio_method` value; others give
/// `COAPIO_RESULT_INVALID_ARGUMENT`) for `uri` (`coap://host:port/path?query`; host names
/// are resolved now, which may block).
#[no_mangle]
pub extern "C" fn coapio_request_new(
    method: u32,
    uri: *const c_char,
    out: *mut *mut coapio_request,
) -> coapio_result {
    guard(|| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        if !(coapio_method::COAPIO_METHOD_GET as u32..=coapio_method::COAPIO_METHOD_IPATCH as u32)
            .contains(&method)
        {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("{method} is not a coapio_method"),
            );
        }
        // SAFETY: uri is NULL or NUL-terminated (caller's contract).
        let uri = match unsafe { str_arg(uri, "uri") } {
            Ok(u) => u,
            Err(e) => return e,
        };
        let (remote, parsed) = match resolve(uri) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let mut request = Request::new(Code(method as u8));
        parsed.to_options_for(remote, &mut request.options);
        // SAFETY: out is non-NULL and writable.
        let secure =
            (parsed.scheme == crate::message::uri::Scheme::Coaps).then(|| match &parsed.host {
                crate::message::uri::Host::Name(n) => Some(n.clone()),
                crate::message::uri::Host::Ip { .. } => None,
            });
        unsafe {
            *out = Box::into_raw(Box::new(coapio_request {
                uri: uri.to_owned(),
                remote,
                request,
                secure,
            }))
        };
        COAPIO_RESULT_OK
    })
}

/// Frees a request that was not sent; NULL is ignored.
#[no_mangle]
pub extern "C" fn coapio_request_free(request: *mut coapio_request) {
    guard_void(|| {
        if !request.is_null() {
            // SAFETY: made by coapio_request_new, not sent, freed once (caller's contract).
            drop(unsafe { Box::from_raw(request) });
        }
    });
}

fn with_request(
    r: *mut coapio_request,
    f: impl FnOnce(&mut coapio_request) -> coapio_result,
) -> coapio_result {
    guard(|| {
        if r.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "request is NULL");
        }
        // SAFETY: a live request (caller's contract).
        f(unsafe { &mut *r })
    })
}

/// Sets the payload (copied).
#[no_mangle]
pub extern "C" fn coapio_request_set_payload(
    request: *mut coapio_request,
    buf: *const u8,
    len: usize,
) -> coapio_result {
    with_request(request, |r| {
        // SAFETY: buf holds len bytes (caller's contract).
        match unsafe { bytes_arg(buf, len, "buf") } {
            Ok(b) => {
                r.request.payload = b.to_vec();
                COAPIO_RESULT_OK
            }
            Err(e) => e,
        }
    })
}

/// Adds an option with an opaque or string value (copied). `COAPIO_RESULT_INVALID_ARGUMENT`
/// for a value whose length the option does not allow (RFC 7252 §5.10: Uri-Path 0 to 255
/// bytes, ETag 1 to 8, …) and for a second one of an option that is not repeatable.
#[no_mangle]
pub extern "C" fn coapio_request_add_option(
    request: *mut coapio_request,
    number: u16,
    buf: *const u8,
    len: usize,
) -> coapio_result {
    with_request(request, |r| {
        // SAFETY: buf holds len bytes (caller's contract).
        let value = match unsafe { bytes_arg(buf, len, "buf") } {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Err(e) = check_option(&r.request.options, number, value.len()) {
            return e;
        }
        r.request.options.push(OptionNumber(number), value);
        COAPIO_RESULT_OK
    })
}

/// Adds an option with an unsigned integer value (such as Content-Format, 12, or Accept, 17),
/// in its shortest encoding; `COAPIO_RESULT_INVALID_ARGUMENT` when that is longer than the
/// option allows (a Content-Format above 65535), or for a second one of an option that is not
/// repeatable.
#[no_mangle]
pub extern "C" fn coapio_request_add_option_uint(
    request: *mut coapio_request,
    number: u16,
    value: u32,
) -> coapio_result {
    with_request(request, |r| {
        let mut buf = [0; 4];
        let encoded = crate::message::encode_uint(value, &mut buf);
        if let Err(e) = check_option(&r.request.options, number, encoded.len()) {
            return e;
        }
        r.request.options.push(OptionNumber(number), encoded);
        COAPIO_RESULT_OK
    })
}

/// Makes the request Confirmable (true, the default) or Non-confirmable.
#[no_mangle]
pub extern "C" fn coapio_request_set_confirmable(
    request: *mut coapio_request,
    confirmable: bool,
) -> coapio_result {
    with_request(request, |r| {
        r.request.confirmable = confirmable;
        COAPIO_RESULT_OK
    })
}

/// Makes the request an observation (Observe 0, RFC 7641) when `observe` is true: the
/// response callback is then called for every notification (`COAPIO_RESULT_OK`) until
/// `coapio_context_cancel`, a failure, or a final response without Observe.
#[no_mangle]
pub extern "C" fn coapio_request_set_observe(
    request: *mut coapio_request,
    observe: bool,
) -> coapio_result {
    with_request(request, |r| {
        if observe {
            r.request.options.set_uint(OptionNumber::OBSERVE, 0);
        } else {
            r.request.options.remove(OptionNumber::OBSERVE);
        }
        COAPIO_RESULT_OK
    })
}

/// Gives up on the request after `ms` milliseconds without a response
/// (`COAPIO_RESULT_TIMEOUT`); 0 means the message layer's own timeouts only.
#[no_mangle]
pub extern "C" fn coapio_request_set_timeout_ms(
    request: *mut coapio_request,
    ms: u32,
) -> coapio_result {
    with_request(request, |r| {
        r.request.timeout = (ms > 0).then(|| Duration::from_millis(u64::from(ms)));
        COAPIO_RESULT_OK
    })
}

fn take_request(request: *mut coapio_request) -> Result<coapio_request, coapio_result> {
    if request.is_null() {
        return Err(fail(COAPIO_RESULT_NULL_PARAMETER, "request is NULL"));
    }
    // SAFETY: a live request from coapio_request_new, consumed here (caller's contract).
    Ok(*unsafe { Box::from_raw(request) })
}

/// Sends `request` (consumed, also on error). `callback` (may be NULL) is called once from
/// `run`/`process` with the outcome; `out_id` (may be NULL) receives an ID for
/// `coapio_context_cancel`. The request goes on the wire before this returns, unless NSTART
/// requests to the same remote are already outstanding: then it waits in a queue.
#[no_mangle]
pub extern "C" fn coapio_context_send(
    ctx: *mut coapio_context,
    request: *mut coapio_request,
    callback: coapio_response_callback,
    userdata: *mut c_void,
    out_id: *mut u64,
) -> coapio_result {
    guard(|| {
        let request = take_request(request);
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut core = lock(&inner.core);
        if let Err(e) = core.use_scheme(request.remote, request.secure.as_ref()) {
            return e;
        }
        let req = core.secure_for(&request.uri, request.request);
        match core.ep.request(Instant::now(), request.remote, req) {
            Ok(id) => {
                core.open_request(
                    id,
                    request.remote,
                    Outcome::Callback(callback, UserData(userdata)),
                );
                inner.after_call(&mut core);
                if !out_id.is_null() {
                    // SAFETY: out_id is non-NULL and writable (caller's contract).
                    unsafe { *out_id = id.0 };
                }
                COAPIO_RESULT_OK
            }
            Err(e) => fail(COAPIO_RESULT_REFUSED, e.to_string()),
        }
    })
}

/// Cancels a request: its callback will not be called and nothing more is sent for it.
/// `COAPIO_RESULT_NOT_FOUND` if it has already ended.
#[no_mangle]
pub extern "C" fn coapio_context_cancel(ctx: *mut coapio_context, id: u64) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let mut core = lock(&inner.core);
        let id = crate::proto::RequestId(id);
        if core.close_request(id).is_none() {
            return fail(COAPIO_RESULT_NOT_FOUND, "no open request has this ID");
        }
        core.ep.cancel(Instant::now(), id);
        inner.after_call(&mut core);
        COAPIO_RESULT_OK
    })
}

/// Ends observation `id` and tells the server: its registration goes out again with Observe
/// 1 (RFC 7641 §3.6, as libcoap's `coap_cancel_observe` does). `*told` (may be NULL) says
/// what follows:
///
/// - `true`: the request's callback is called once more — with the server's answer (a
///   response without Observe) or the failure to get one — and then never again;
/// - `false`: there was nobody to tell (the server had not confirmed the observation yet,
///   or it was not an observation): it is cancelled as by `coapio_context_cancel`, and no
///   callback comes.
///
/// `coapio_context_cancel` ends an observation here only: the server learns of it from the
/// Reset to its next notification. Callable from callbacks.
#[no_mangle]
pub extern "C" fn coapio_context_cancel_observation(
    ctx: *mut coapio_context,
    id: u64,
    told: *mut bool,
) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let mut core = lock(&inner.core);
        let id = crate::proto::RequestId(id);
        if !core.is_open(id) {
            return fail(COAPIO_RESULT_NOT_FOUND, "no open request has this ID");
        }
        let callback_comes = match core.ep.cancel_observation(Instant::now(), id) {
            Ok(true) => true,
            Ok(false) => {
                core.close_request(id);
                false
            }
            // The request ended already: its last event is on its way to the callback.
            Err(_) => true,
        };
        inner.after_call(&mut core);
        if !told.is_null() {
            // SAFETY: told is non-NULL and writable (caller's contract).
            unsafe { *told = callback_comes };
        }
        COAPIO_RESULT_OK
    })
}

/// Sends `request` (consumed, also on error) and runs the context until its response comes
/// or `timeout_ms` passes (`COAPIO_RESULT_TIMEOUT`, and the request is cancelled). On
/// success `*out` is a response the caller frees with `coapio_response_free`. Other
/// callbacks may run meanwhile. Not from inside a callback (`COAPIO_RESULT_REENTRANT`).
#[no_mangle]
pub extern "C" fn coapio_request_sync(
    ctx: *mut coapio_context,
    request: *mut coapio_request,
    timeout_ms: u32,
    out: *mut *mut coapio_response,
) -> coapio_result {
    guard(|| {
        let request = take_request(request);
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => return e,
        };
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        if inner.in_callback() {
            return fail(
                COAPIO_RESULT_REENTRANT,
                "coapio_request_sync called from inside a callback",
            );
        }
        let slot = Arc::new(Mutex::new(None));
        let id = {
            let mut core = lock(&inner.core);
            if let Err(e) = core.use_scheme(request.remote, request.secure.as_ref()) {
                return e;
            }
            let req = core.secure_for(&request.uri, request.request);
            match core.ep.request(Instant::now(), request.remote, req) {
                Ok(id) => {
                    core.open_request(id, request.remote, Outcome::Sync(slot.clone()));
                    inner.after_call(&mut core);
                    id
                }
                Err(e) => return fail(COAPIO_RESULT_REFUSED, e.to_string()),
            }
        };
        let sent = Instant::now();
        let limit = sent + Duration::from_millis(u64::from(timeout_ms));
        if let Err(e) = inner.run_until(Some(limit), false, || lock(&slot).is_some()) {
            return e;
        }
        let result = lock(&slot).take();
        match result {
            Some(Ok(response)) => {
                // SAFETY: out is non-NULL and writable (caller's contract).
                unsafe { *out = Box::into_raw(Box::new(coapio_response::new(response))) };
                COAPIO_RESULT_OK
            }
            Some(Err(f)) => f.record(),
            None => {
                let mut core = lock(&inner.core);
                core.close_request(id);
                core.ep.cancel(Instant::now(), id);
                inner.after_call(&mut core);
                super::base::fail_request(
                    COAPIO_RESULT_TIMEOUT,
                    format!("no response from {} within {timeout_ms} ms", request.remote),
                    Some((request.remote, sent.elapsed())),
                )
            }
        }
    })
}

/// Frees a response from `coapio_request_sync`; NULL is ignored. Never free one that was
/// passed to a callback.
#[no_mangle]
pub extern "C" fn coapio_response_free(response: *mut coapio_response) {
    guard_void(|| {
        if !response.is_null() {
            // SAFETY: made by coapio_request_sync, freed once (caller's contract).
            drop(unsafe { Box::from_raw(response) });
        }
    });
}

fn with_response(
    r: *const coapio_response,
    f: impl FnOnce(&Response) -> coapio_result,
) -> coapio_result {
    with_response_object(r, |r| f(&r.response))
}

fn with_response_object(
    r: *const coapio_response,
    f: impl FnOnce(&coapio_response) -> coapio_result,
) -> coapio_result {
    guard(|| {
        if r.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "response is NULL");
        }
        // SAFETY: a live response (caller's contract).
        f(unsafe { &*r })
    })
}

/// How the response arrived, or NOT_FOUND (a response the library made, which none given
/// to the application is).
fn received(r: &Response) -> Result<&crate::proto::Received, coapio_result> {
    r.received().ok_or_else(|| {
        fail(
            COAPIO_RESULT_NOT_FOUND,
            "the response did not come from the network",
        )
    })
}

/// Points `*addr` at the address the response came from, as text (`"[::1]:5683"`,
/// NUL-terminated, valid as long as the response): for a request to a multicast group, the
/// server that sent this answer.
#[no_mangle]
pub extern "C" fn coapio_response_source(
    response: *const coapio_response,
    addr: *mut *const c_char,
) -> coapio_result {
    with_response_object(response, |r| {
        if addr.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "addr is NULL");
        }
        let source = match received(&r.response) {
            Ok(got) => got.source,
            Err(e) => return e,
        };
        let text = r
            .source
            .get_or_init(|| std::ffi::CString::new(source.to_string()).unwrap_or_default());
        // SAFETY: addr is non-NULL.
        unsafe { *addr = text.as_ptr() };
        COAPIO_RESULT_OK
    })
}

/// Writes the type of the message the response came in (`COAPIO_TYPE_ACK` for a
/// piggybacked response, `_CON` or `_NON` for a separate one or a notification); for a
/// response put together from blocks, the last block's.
#[no_mangle]
pub extern "C" fn coapio_response_type(
    response: *const coapio_response,
    out: *mut u8,
) -> coapio_result {
    write_received(response, out, |got| got.ty as u8)
}

/// Points `*buf`/`*len` at the response's token (0 to 8 bytes, borrowed from the
/// response).
#[no_mangle]
pub extern "C" fn coapio_response_token(
    response: *const coapio_response,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_response(response, |r| {
        if buf.is_null() || len.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "buf or len is NULL");
        }
        match received(r) {
            // SAFETY: both out-pointers are non-NULL; the token lives as long as the response.
            Ok(got) => unsafe { write_slice(got.token.as_bytes(), buf, len) },
            Err(e) => return e,
        }
        COAPIO_RESULT_OK
    })
}

/// Writes the message ID of the message the response came in.
#[no_mangle]
pub extern "C" fn coapio_response_message_id(
    response: *const coapio_response,
    out: *mut u16,
) -> coapio_result {
    write_received(response, out, |got| got.message_id)
}

/// Writes `field` of how the response arrived to `*out`.
fn write_received<T>(
    response: *const coapio_response,
    out: *mut T,
    field: impl FnOnce(&crate::proto::Received) -> T,
) -> coapio_result {
    with_response(response, |r| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        match received(r) {
            // SAFETY: out is non-NULL and writable (caller's contract).
            Ok(got) => unsafe { *out = field(got) },
            Err(e) => return e,
        }
        COAPIO_RESULT_OK
    })
}

/// Writes the response code (`0x45` is 2.05; class = code >> 5, detail = code & 31).
#[no_mangle]
pub extern "C" fn coapio_response_code(
    response: *const coapio_response,
    out: *mut u8,
) -> coapio_result {
    with_response(response, |r| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        // SAFETY: out is non-NULL and writable.
        unsafe { *out = r.code.0 };
        COAPIO_RESULT_OK
    })
}

/// Points `*buf`/`*len` at the payload (borrowed from the response).
#[no_mangle]
pub extern "C" fn coapio_response_payload(
    response: *const coapio_response,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_response(response, |r| {
        if buf.is_null() || len.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "buf or len is NULL");
        }
        // SAFETY: both out-pointers are non-NULL.
        unsafe { write_slice(&r.payload, buf, len) };
        COAPIO_RESULT_OK
    })
}

/// Points `*buf`/`*len` at the value of the `index`-th option `number` (borrowed);
/// `COAPIO_RESULT_NOT_FOUND` if there is none.
#[no_mangle]
pub extern "C" fn coapio_response_option(
    response: *const coapio_response,
    number: u16,
    index: usize,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_response(response, |r| option_at(&r.options, number, index, buf, len))
}

/// Points `*number`, `*buf` and `*len` at the `index`-th option of the response, in message
/// order (by number; repeated ones in the order they came; values borrowed):
/// `COAPIO_RESULT_NOT_FOUND` past the last, so a loop from 0 visits every option.
#[no_mangle]
pub extern "C" fn coapio_response_option_at(
    response: *const coapio_response,
    index: usize,
    number: *mut u16,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_response(response, |r| {
        option_by_index(&r.options, index, number, buf, len)
    })
}

/// Writes the Content-Format; `COAPIO_RESULT_NOT_FOUND` if the response has none.
#[no_mangle]
pub extern "C" fn coapio_response_content_format(
    response: *const coapio_response,
    out: *mut u16,
) -> coapio_result {
    with_response(response, |r| write_content_format(r.content_format(), out))
}
