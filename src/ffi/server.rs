//! The server side for C: resources with a request callback, the received request, and a
//! responder that answers at once or later (the library sends the empty ACK and a separate
//! response by itself when the answer is slow).

use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Weak};

use futures::channel::oneshot;

use super::base::coapio_result::{self, *};
use super::base::{
    bytes_arg, check_option, fail, guard, guard_void, option_at, option_by_index, str_arg,
    write_content_format, write_slice,
};
use super::context::{coapio_context, ctx_arg, lock, CtxRef, Inner, UserData};
use crate::message::{Code, ContentFormat, OptionNumber, Options};
use crate::proto::Response;
use crate::server::{Resource, ServerRequest, Site};

/// Method mask bit for GET (`coapio_context_add_resource`).
pub const COAPIO_METHOD_MASK_GET: u32 = 1 << 1;
/// Method mask bit for POST.
pub const COAPIO_METHOD_MASK_POST: u32 = 1 << 2;
/// Method mask bit for PUT.
pub const COAPIO_METHOD_MASK_PUT: u32 = 1 << 3;
/// Method mask bit for DELETE.
pub const COAPIO_METHOD_MASK_DELETE: u32 = 1 << 4;
/// Method mask bit for FETCH.
pub const COAPIO_METHOD_MASK_FETCH: u32 = 1 << 5;
/// Method mask bit for PATCH.
pub const COAPIO_METHOD_MASK_PATCH: u32 = 1 << 6;
/// Method mask bit for iPATCH.
pub const COAPIO_METHOD_MASK_IPATCH: u32 = 1 << 7;
/// Every method.
pub const COAPIO_METHOD_MASK_ALL: u32 = 0xfe;

/// A received request, borrowed for the duration of the request callback. Methods:
/// `coapio_incoming_method`, `coapio_incoming_path`, `coapio_incoming_payload`,
/// `coapio_incoming_option`, `coapio_incoming_option_at`, `coapio_incoming_content_format`,
/// `coapio_incoming_remote`, `coapio_incoming_confirmable`.
#[derive(Debug)]
pub struct coapio_incoming {
    request: ServerRequest,
    path: CString,
    remote: CString,
}

/// Answers one received request, now or later, from any thread. Owned by the application
/// from the request callback on; `coapio_responder_respond` consumes it, and
/// `coapio_responder_free` gives up (the client gets 5.00). Methods:
/// `coapio_responder_add_option`, `coapio_responder_respond`, `coapio_responder_free`.
#[derive(Debug)]
pub struct coapio_responder {
    tx: Option<oneshot::Sender<Response>>,
    options: Options,
    inner: Weak<Inner>,
}

/// Called for each request to a resource: read `request` (valid during the call) and answer
/// through `responder` (yours to keep until you answer or free it).
pub type coapio_request_callback = Option<
    extern "C" fn(
        userdata: *mut c_void,
        request: *const coapio_incoming,
        responder: *mut coapio_responder,
    ),
>;

/// The non-NULL form of [`coapio_request_callback`].
type RequestFn = extern "C" fn(*mut c_void, *const coapio_incoming, *mut coapio_responder);

/// A resource as C registered it.
#[derive(Debug, Clone)]
pub(crate) struct CResource {
    path: String,
    methods: u32,
    callback: RequestFn,
    userdata: UserData,
    attrs: Vec<(String, Option<String>)>,
}

/// A request waiting for its C callback.
pub(crate) struct Dispatch {
    callback: RequestFn,
    userdata: UserData,
    incoming: coapio_incoming,
    responder: Box<coapio_responder>,
}

impl Dispatch {
    /// Calls the application's callback, handing it the responder.
    pub(crate) fn call(self) {
        let responder = Box::into_raw(self.responder);
        (self.callback)(self.userdata.0, &self.incoming, responder);
    }
}

fn build_site(
    resources: &[CResource],
    inner: &Weak<Inner>,
    dispatch: &Arc<std::sync::Mutex<std::collections::VecDeque<Dispatch>>>,
) -> Site {
    let mut site = Site::new();
    for r in resources {
        let mut res = Resource::new();
        for code in 1u8..=7 {
            if r.methods & (1 << code) == 0 {
                continue;
            }
            let (callback, userdata) = (r.callback, r.userdata);
            let (inner, dispatch) = (inner.clone(), dispatch.clone());
            res = res.method(Code(code), move |request: ServerRequest| {
                let (tx, rx) = oneshot::channel();
                let path = CString::new(request.path()).unwrap_or_default();
                let remote = CString::new(request.meta.remote.to_string()).unwrap_or_default();
                lock(&dispatch).push_back(Dispatch {
                    callback,
                    userdata,
                    incoming: coapio_incoming {
                        request,
                        path,
                        remote,
                    },
                    responder: Box::new(coapio_responder {
                        tx: Some(tx),
                        options: Options::new(),
                        inner: inner.clone(),
                    }),
                });
                async move {
                    rx.await
                        .unwrap_or_else(|_| Response::new(Code::INTERNAL_SERVER_ERROR))
                }
            });
        }
        for (name, value) in &r.attrs {
            res = res.attr(name, value.as_deref());
        }
        site = site.resource(&r.path, res);
    }
    site
}

/// Serves `path` (`"/hello"`): requests with a method in `methods` (a mask of
/// `COAPIO_METHOD_MASK_*`: at least one, nothing else, or `COAPIO_RESULT_INVALID_ARGUMENT`)
/// go to `callback`; others get 4.05. Registering a path again
/// replaces it. `/.well-known/core` lists the resources (see
/// `coapio_context_set_resource_attr`).
///
/// On a simple6 context the resources are served to the remotes it has sockets for, the
/// ones it sent requests to (role reversal: a device that registered with a server answers
/// that server's requests); nobody else can reach them.
#[no_mangle]
pub extern "C" fn coapio_context_add_resource(
    ctx: *mut coapio_context,
    path: *const c_char,
    methods: u32,
    callback: coapio_request_callback,
    userdata: *mut c_void,
) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        // SAFETY: path is NULL or NUL-terminated (caller's contract).
        let path = match unsafe { str_arg(path, "path") } {
            Ok(p) => p,
            Err(e) => return e,
        };
        let Some(callback) = callback else {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "callback is NULL");
        };
        if methods == 0 || methods & !COAPIO_METHOD_MASK_ALL != 0 {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!(
                    "methods {methods:#x} is not a mask of COAPIO_METHOD_MASK_* (at least one, \
                     nothing outside COAPIO_METHOD_MASK_ALL)"
                ),
            );
        }
        let path = match Site::normalize_path(path) {
            Ok(p) => p,
            Err(e) => return fail(COAPIO_RESULT_INVALID_ARGUMENT, e),
        };
        let mut core = lock(&inner.core);
        core.resources.retain(|r| r.path != path);
        core.resources.push(CResource {
            path,
            methods,
            callback,
            userdata: UserData(userdata),
            attrs: Vec::new(),
        });
        core.site = Some(build_site(
            &core.resources,
            &Arc::downgrade(&inner),
            &inner.dispatch,
        ));
        COAPIO_RESULT_OK
    })
}

/// Sets a link attribute of a registered resource for `/.well-known/core` (`"rt"`,
/// `"if"`, `"ct"`, `"sz"`, `"title"`, `"obs"`, ...); `value` NULL gives a bare `;name`.
/// `COAPIO_RESULT_NOT_FOUND` if no resource is registered at `path`.
#[no_mangle]
pub extern "C" fn coapio_context_set_resource_attr(
    ctx: *mut coapio_context,
    path: *const c_char,
    name: *const c_char,
    value: *const c_char,
) -> coapio_result {
    guard(|| {
        let inner = match ctx_arg(ctx) {
            Ok(i) => i,
            Err(e) => return e,
        };
        // SAFETY: NUL-terminated strings or NULL (caller's contract).
        let (path, name) = match unsafe { (str_arg(path, "path"), str_arg(name, "name")) } {
            (Ok(p), Ok(n)) => (p, n),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let value = if value.is_null() {
            None
        } else {
            // SAFETY: as above.
            match unsafe { str_arg(value, "value") } {
                Ok(v) => Some(v.to_string()),
                Err(e) => return e,
            }
        };
        if !Resource::is_attr_name(name) {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("{name:?} is not a link attribute name"),
            );
        }
        let Ok(path) = Site::normalize_path(path) else {
            return fail(COAPIO_RESULT_NOT_FOUND, format!("no resource at {path:?}"));
        };
        let mut core = lock(&inner.core);
        let Some(r) = core.resources.iter_mut().find(|r| r.path == path) else {
            return fail(COAPIO_RESULT_NOT_FOUND, format!("no resource at {path}"));
        };
        r.attrs.retain(|(n, _)| n != name);
        r.attrs.push((name.to_string(), value));
        core.site = Some(build_site(
            &core.resources,
            &Arc::downgrade(&inner),
            &inner.dispatch,
        ));
        COAPIO_RESULT_OK
    })
}

/// The context and the resource path of a call about a resource's observers.
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string.
unsafe fn ctx_and_path(
    ctx: *const coapio_context,
    path: *const c_char,
) -> Result<(CtxRef, String), coapio_result> {
    let inner = ctx_arg(ctx)?;
    // SAFETY: the caller's contract.
    let path = unsafe { str_arg(path, "path") }?;
    let path = Site::normalize_path(path).map_err(|e| fail(COAPIO_RESULT_INVALID_ARGUMENT, e))?;
    Ok((inner, path))
}

/// Tells the observers of `path` that its representation changed (RFC 7641): the resource's
/// callback is called again for each observer (from `run`/`process`) and its answer goes out
/// as a notification. A resource is observable when it has the `obs` attribute
/// (`coapio_context_set_resource_attr(ctx, path, "obs", NULL)`). `out_count` (may be NULL)
/// receives the number of observers. `COAPIO_RESULT_NOT_FOUND` when no resource was added at
/// `path` (compared as the resource's path: `"x"` and `"/a/../x"` are `"/x"`). Safe to call from any thread
/// (a sensor's): the callbacks run on the context's thread, at its next round of work.
#[no_mangle]
pub extern "C" fn coapio_context_notify(
    ctx: *const coapio_context,
    path: *const c_char,
    out_count: *mut usize,
) -> coapio_result {
    guard(|| {
        // SAFETY: path is NULL or NUL-terminated (caller's contract).
        let (inner, path) = match unsafe { ctx_and_path(ctx, path) } {
            Ok(x) => x,
            Err(e) => return e,
        };
        let n = {
            let mut core = lock(&inner.core);
            if !core.resources.iter().any(|r| r.path == path) {
                return fail(COAPIO_RESULT_NOT_FOUND, format!("no resource at {path}"));
            }
            core.ep.notify(std::time::Instant::now(), &path)
        };
        if n > 0 {
            inner.notify();
        }
        if !out_count.is_null() {
            // SAFETY: out_count is non-NULL and writable (caller's contract).
            unsafe { *out_count = n };
        }
        COAPIO_RESULT_OK
    })
}

/// Ends every observation of `path` with a final response (RFC 7641 §3.2) of `code` (class
/// × 32 + detail, e.g. 132 for 4.04) carrying `payload` (`len` bytes, NULL for none) and,
/// when `content_format` is not negative, that Content-Format: 4.04 after the resource was
/// deleted, 4.06 after its Content-Format changed, 5.03 on shutdown. The observers are
/// forgotten at once; a client that registers afterwards observes the resource anew.
/// `out_count` (may be NULL) receives how many observations ended. Callable from callbacks.
#[no_mangle]
pub extern "C" fn coapio_context_end_observations(
    ctx: *mut coapio_context,
    path: *const c_char,
    code: u8,
    payload: *const u8,
    len: usize,
    content_format: i32,
    out_count: *mut usize,
) -> coapio_result {
    guard(|| {
        // SAFETY: path is NULL or NUL-terminated (caller's contract).
        let (inner, path) = match unsafe { ctx_and_path(ctx, path) } {
            Ok(x) => x,
            Err(e) => return e,
        };
        // SAFETY: payload holds len bytes (caller's contract).
        let payload = match unsafe { bytes_arg(payload, len, "payload") } {
            Ok(p) => p.to_vec(),
            Err(e) => return e,
        };
        let code = Code(code);
        if !code.is_response() {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("{code} is not a response code"),
            );
        }
        let mut response = Response::new(code).with_payload(payload);
        match u16::try_from(content_format) {
            Ok(cf) => response = response.with_content_format(ContentFormat(cf)),
            Err(_) if content_format < 0 => {}
            Err(_) => {
                return fail(
                    COAPIO_RESULT_INVALID_ARGUMENT,
                    format!("Content-Format {content_format} is above 65535"),
                )
            }
        }
        let n =
            match lock(&inner.core)
                .ep
                .end_observations(std::time::Instant::now(), &path, response)
            {
                Ok(n) => n,
                Err(e) => return fail(COAPIO_RESULT_INVALID_ARGUMENT, e.to_string()),
            };
        if n > 0 {
            inner.notify();
        }
        if !out_count.is_null() {
            // SAFETY: out_count is non-NULL and writable (caller's contract).
            unsafe { *out_count = n };
        }
        COAPIO_RESULT_OK
    })
}

fn with_incoming(
    r: *const coapio_incoming,
    f: impl FnOnce(&coapio_incoming) -> coapio_result,
) -> coapio_result {
    guard(|| {
        if r.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "request is NULL");
        }
        // SAFETY: the request passed to the running callback (caller's contract).
        f(unsafe { &*r })
    })
}

/// Writes the request's method code (1 GET, 2 POST, 3 PUT, 4 DELETE, ...).
#[no_mangle]
pub extern "C" fn coapio_incoming_method(
    request: *const coapio_incoming,
    out: *mut u8,
) -> coapio_result {
    with_incoming(request, |r| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        // SAFETY: out is non-NULL and writable.
        unsafe { *out = r.request.method().0 };
        COAPIO_RESULT_OK
    })
}

/// Points `*path` at the request path (`"/a/b"`, NUL-terminated, borrowed) and writes its
/// length to `len`.
#[no_mangle]
pub extern "C" fn coapio_incoming_path(
    request: *const coapio_incoming,
    path: *mut *const c_char,
    len: *mut usize,
) -> coapio_result {
    with_incoming(request, |r| {
        if path.is_null() || len.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "path or len is NULL");
        }
        // SAFETY: both out-pointers are non-NULL.
        unsafe {
            *path = r.path.as_ptr();
            *len = r.path.as_bytes().len();
        }
        COAPIO_RESULT_OK
    })
}

/// Points `*buf`/`*len` at the payload (borrowed).
#[no_mangle]
pub extern "C" fn coapio_incoming_payload(
    request: *const coapio_incoming,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_incoming(request, |r| {
        if buf.is_null() || len.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "buf or len is NULL");
        }
        // SAFETY: both out-pointers are non-NULL.
        unsafe { write_slice(r.request.payload(), buf, len) };
        COAPIO_RESULT_OK
    })
}

/// Points `*buf`/`*len` at the `index`-th option `number` (borrowed);
/// `COAPIO_RESULT_NOT_FOUND` if there is none. Uri-Query is 15.
#[no_mangle]
pub extern "C" fn coapio_incoming_option(
    request: *const coapio_incoming,
    number: u16,
    index: usize,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_incoming(request, |r| {
        option_at(r.request.options(), number, index, buf, len)
    })
}

/// Points `*number`, `*buf` and `*len` at the `index`-th option of the request, in message
/// order (by number; repeated ones in the order they came; values borrowed):
/// `COAPIO_RESULT_NOT_FOUND` past the last, so a loop from 0 visits every option.
#[no_mangle]
pub extern "C" fn coapio_incoming_option_at(
    request: *const coapio_incoming,
    index: usize,
    number: *mut u16,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    with_incoming(request, |r| {
        option_by_index(r.request.options(), index, number, buf, len)
    })
}

/// Writes the request's Content-Format (the format of its payload);
/// `COAPIO_RESULT_NOT_FOUND` if it has none.
#[no_mangle]
pub extern "C" fn coapio_incoming_content_format(
    request: *const coapio_incoming,
    out: *mut u16,
) -> coapio_result {
    with_incoming(request, |r| {
        write_content_format(r.request.content_format(), out)
    })
}

/// Points `*addr` at the sender's address as text (`"[::1]:40000"`, NUL-terminated,
/// borrowed).
#[no_mangle]
pub extern "C" fn coapio_incoming_remote(
    request: *const coapio_incoming,
    addr: *mut *const c_char,
) -> coapio_result {
    with_incoming(request, |r| {
        if addr.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "addr is NULL");
        }
        // SAFETY: addr is non-NULL.
        unsafe { *addr = r.remote.as_ptr() };
        COAPIO_RESULT_OK
    })
}

/// Writes whether the request came Confirmable.
#[no_mangle]
pub extern "C" fn coapio_incoming_confirmable(
    request: *const coapio_incoming,
    out: *mut bool,
) -> coapio_result {
    with_incoming(request, |r| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        // SAFETY: out is non-NULL.
        unsafe { *out = r.request.request.confirmable };
        COAPIO_RESULT_OK
    })
}

/// Adds an option to the coming response (copied), such as Location-Path (8) or ETag (4).
#[no_mangle]
pub extern "C" fn coapio_responder_add_option(
    responder: *mut coapio_responder,
    number: u16,
    buf: *const u8,
    len: usize,
) -> coapio_result {
    guard(|| {
        if responder.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "responder is NULL");
        }
        // SAFETY: buf holds len bytes (caller's contract).
        let value = match unsafe { bytes_arg(buf, len, "buf") } {
            Ok(v) => v,
            Err(e) => return e,
        };
        // SAFETY: a live responder (caller's contract).
        let responder = unsafe { &mut *responder };
        if let Err(e) = check_option(&responder.options, number, value.len()) {
            return e;
        }
        responder.options.push(OptionNumber(number), value);
        COAPIO_RESULT_OK
    })
}

/// Answers the request (the responder is consumed, also on error) with `code` (such as
/// `0x45` for 2.05), a payload (copied) and a Content-Format (`content_format` < 0: none).
/// From any thread; the answer goes out at the context's next `run`/`process`, which this
/// wakes. A code that is not a response code gives `COAPIO_RESULT_INVALID_ARGUMENT` and the
/// client gets 5.00.
#[no_mangle]
pub extern "C" fn coapio_responder_respond(
    responder: *mut coapio_responder,
    code: u8,
    payload: *const u8,
    len: usize,
    content_format: i32,
) -> coapio_result {
    guard(|| {
        if responder.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "responder is NULL");
        }
        // SAFETY: a live responder from a request callback, consumed here (caller's contract).
        let mut responder = unsafe { Box::from_raw(responder) };
        // SAFETY: payload holds len bytes (caller's contract).
        let payload = match unsafe { bytes_arg(payload, len, "payload") } {
            Ok(p) => p.to_vec(),
            Err(e) => return e,
        };
        let code = Code(code);
        if !code.is_response() {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("{code} is not a response code"),
            );
        }
        if content_format > i32::from(u16::MAX) {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("Content-Format {content_format} is above 65535"),
            );
        }
        let mut response = Response::new(code).with_payload(payload);
        response.options = std::mem::take(&mut responder.options);
        if let Ok(cf) = u16::try_from(content_format) {
            response = response.with_content_format(ContentFormat(cf));
        }
        let sent = responder
            .tx
            .take()
            .is_some_and(|tx| tx.send(response).is_ok());
        if let Some(inner) = responder.inner.upgrade() {
            inner.notify();
        }
        if sent {
            COAPIO_RESULT_OK
        } else {
            fail(
                COAPIO_RESULT_NOT_FOUND,
                "the context or the exchange is gone",
            )
        }
    })
}

/// Gives up on answering: the client gets 5.00 Internal Server Error. NULL is ignored.
#[no_mangle]
pub extern "C" fn coapio_responder_free(responder: *mut coapio_responder) {
    guard_void(|| {
        if !responder.is_null() {
            // SAFETY: a live responder, freed once (caller's contract).
            let r = unsafe { Box::from_raw(responder) };
            let inner = r.inner.clone();
            drop(r);
            if let Some(inner) = inner.upgrade() {
                inner.notify();
            }
        }
    });
}
