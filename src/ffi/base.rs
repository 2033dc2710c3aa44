//! What every part of the C ABI uses: result codes, the last error message, the panic
//! boundary, argument helpers, and the version and name functions.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of a fallible call. Values are explicit and never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum coapio_result {
    /// Success.
    COAPIO_RESULT_OK = 0,
    /// A pointer argument was NULL.
    COAPIO_RESULT_NULL_PARAMETER = 1,
    /// An argument is out of range or malformed (not UTF-8, an invalid code, ...).
    COAPIO_RESULT_INVALID_ARGUMENT = 2,
    /// A URI could not be parsed or resolved.
    COAPIO_RESULT_INVALID_URI = 3,
    /// A socket error (binding, the poller, ...).
    COAPIO_RESULT_IO = 4,
    /// `run`, `process` or `coapio_request_sync` was called from inside a callback, or a
    /// call that works on a context was made from inside a PSK lookup callback.
    COAPIO_RESULT_REENTRANT = 5,
    /// The request timed out.
    COAPIO_RESULT_TIMEOUT = 6,
    /// The server answered the request with a Reset.
    COAPIO_RESULT_RESET = 7,
    /// The network reported the remote unreachable (an ICMP error).
    COAPIO_RESULT_UNREACHABLE = 8,
    /// The response could not be accepted.
    COAPIO_RESULT_BAD_RESPONSE = 9,
    /// The request was cancelled.
    COAPIO_RESULT_CANCELLED = 10,
    /// The endpoint refused the request (too many queued, no token left).
    COAPIO_RESULT_REFUSED = 11,
    /// The named thing does not exist (an unknown request ID, an absent option).
    COAPIO_RESULT_NOT_FOUND = 12,
    /// An internal error (a caught panic); the message says more. The context the call was
    /// working on is failed from then on (`COAPIO_RESULT_FAILED`).
    COAPIO_RESULT_PANIC = 13,
    /// The context failed earlier (an internal error was caught while it was being worked
    /// on, `COAPIO_RESULT_PANIC`), so its state cannot be trusted: every call on it but
    /// `coapio_context_free` returns this, and no callback of it runs again. Free it.
    COAPIO_RESULT_FAILED = 14,
    /// The library was built without what this needs (DTLS needs the `dtls` feature).
    COAPIO_RESULT_UNSUPPORTED = 15,
    /// A DTLS session could not be made or failed (an unknown PSK identity, a rejected
    /// certificate, a handshake that failed or timed out); `coapio_last_error` says which.
    COAPIO_RESULT_SECURITY = 16,
}

use coapio_result::*;

impl coapio_result {
    /// The result with this value, if there is one.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        const ALL: [coapio_result; 17] = [
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
            COAPIO_RESULT_UNSUPPORTED,
            COAPIO_RESULT_SECURITY,
        ];
        ALL.into_iter().find(|r| *r as u32 == v)
    }
}

/// A short English name of a result code (a `coapio_result` value), as a static
/// NUL-terminated string; `"unknown result"` for a value that is none.
#[no_mangle]
pub extern "C" fn coapio_result_str(result: u32) -> *const c_char {
    let Some(result) = coapio_result::from_u32(result) else {
        return c"unknown result".as_ptr();
    };
    let s: &'static CStr = match result {
        COAPIO_RESULT_OK => c"ok",
        COAPIO_RESULT_NULL_PARAMETER => c"a pointer argument was NULL",
        COAPIO_RESULT_INVALID_ARGUMENT => c"invalid argument",
        COAPIO_RESULT_INVALID_URI => c"invalid URI",
        COAPIO_RESULT_IO => c"socket error",
        COAPIO_RESULT_REENTRANT => c"called from inside a callback",
        COAPIO_RESULT_TIMEOUT => c"request timed out",
        COAPIO_RESULT_RESET => c"request was reset by the server",
        COAPIO_RESULT_UNREACHABLE => c"remote unreachable",
        COAPIO_RESULT_BAD_RESPONSE => c"bad response",
        COAPIO_RESULT_CANCELLED => c"request cancelled",
        COAPIO_RESULT_REFUSED => c"request refused",
        COAPIO_RESULT_NOT_FOUND => c"not found",
        COAPIO_RESULT_PANIC => c"internal error",
        COAPIO_RESULT_FAILED => c"context failed after an internal error",
        COAPIO_RESULT_UNSUPPORTED => c"not supported by this build of the library",
        COAPIO_RESULT_SECURITY => c"DTLS failed (credentials or handshake)",
    };
    s.as_ptr()
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    /// For the last failure of a request that was sent: the remote, and how long after
    /// sending it failed.
    static LAST_FAILURE: std::cell::Cell<Option<(std::net::SocketAddr, std::time::Duration)>> =
        const { std::cell::Cell::new(None) };
}

/// Records the message of the last failure on this thread and returns `result`.
pub(crate) fn fail(result: coapio_result, message: impl Into<String>) -> coapio_result {
    let message = message.into();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    LAST_FAILURE.with(|f| f.set(None));
    result
}

/// As [`fail`], for a request that was sent to `remote` and failed `after` that long.
pub(crate) fn fail_request(
    result: coapio_result,
    message: impl Into<String>,
    sent: Option<(std::net::SocketAddr, std::time::Duration)>,
) -> coapio_result {
    let result = fail(result, message);
    LAST_FAILURE.with(|f| f.set(sent));
    result
}

/// After a request failed — in its callback, or after `coapio_request_sync` returned the
/// failure — writes the address it was sent to (`"[::1]:5683"`, NUL-terminated, cut to
/// `len` bytes) to `remote` and how long after it was sent it failed to `elapsed_ms`: the
/// server that is unreachable, the time a timeout took. `COAPIO_RESULT_NOT_FOUND` when the
/// last failure on this thread was not of a request that went out (an invalid URI, a
/// refused call). Either pointer may be NULL.
#[no_mangle]
pub extern "C" fn coapio_last_failure(
    remote: *mut c_char,
    len: usize,
    elapsed_ms: *mut u64,
) -> coapio_result {
    guard(|| {
        let Some((addr, after)) = LAST_FAILURE.with(std::cell::Cell::get) else {
            return COAPIO_RESULT_NOT_FOUND;
        };
        if !remote.is_null() && len > 0 {
            let text = addr.to_string();
            let n = text.len().min(len - 1);
            // SAFETY: remote holds `len` bytes (caller's contract), n + 1 <= len; the text
            // is ASCII, so any cut is at a character boundary.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), remote.cast::<u8>(), n);
                *remote.add(n) = 0;
            }
        }
        if !elapsed_ms.is_null() {
            // SAFETY: non-NULL and writable (caller's contract).
            unsafe { *elapsed_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX) };
        }
        COAPIO_RESULT_OK
    })
}

/// Copies the message of the last failed call on this thread into `buf` (at most `len` bytes,
/// NUL-terminated, cut if longer) and writes its length without the NUL to `out_n`.
#[no_mangle]
pub extern "C" fn coapio_last_error(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> coapio_result {
    guard(|| {
        if buf.is_null() || out_n.is_null() {
            return COAPIO_RESULT_NULL_PARAMETER;
        }
        if len == 0 {
            return COAPIO_RESULT_INVALID_ARGUMENT;
        }
        LAST_ERROR.with(|e| {
            let e = e.borrow();
            let mut n = e.len().min(len - 1);
            while !e.is_char_boundary(n) {
                n -= 1;
            }
            // SAFETY: buf holds `len` bytes (caller's contract), n + 1 <= len.
            unsafe {
                std::ptr::copy_nonoverlapping(e.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
                *out_n = n;
            }
        });
        COAPIO_RESULT_OK
    })
}

/// Runs `f` inside a panic boundary: a panic becomes `COAPIO_RESULT_PANIC`. A context that
/// `f` was working on (through [`ctx_arg`](super::context::ctx_arg)) is marked failed as the
/// panic unwinds.
pub(crate) fn guard(f: impl FnOnce() -> coapio_result) -> coapio_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => fail(COAPIO_RESULT_PANIC, "internal error (a panic was caught)"),
    }
}

/// Runs `f` inside a panic boundary for functions without a result.
pub(crate) fn guard_void(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
///
/// `s` is NULL or points to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn str_arg<'a>(s: *const c_char, what: &str) -> Result<&'a str, coapio_result> {
    if s.is_null() {
        return Err(fail(
            COAPIO_RESULT_NULL_PARAMETER,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| {
        fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            format!("{what} is not UTF-8"),
        )
    })
}

/// Reads a byte buffer argument; NULL with length 0 is the empty buffer.
///
/// # Safety
///
/// `buf` is NULL or points to `len` readable bytes that stay valid during the call.
pub(crate) unsafe fn bytes_arg<'a>(
    buf: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], coapio_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(fail(
            COAPIO_RESULT_NULL_PARAMETER,
            format!("{what} is NULL with length {len}"),
        ));
    }
    // SAFETY: non-NULL with `len` readable bytes (caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(buf, len) })
}

/// Writes a borrowed byte slice to the out-pointers `buf`/`len`.
///
/// # Safety
///
/// Both pointers are valid for writes (checked non-NULL by the caller).
pub(crate) unsafe fn write_slice(data: &[u8], buf: *mut *const u8, len: *mut usize) {
    // SAFETY: caller's contract.
    unsafe {
        *buf = data.as_ptr();
        *len = data.len();
    }
}

/// Checks an option before it goes into `options`: a value at most what a CoAP option can
/// carry, and, for an option in RFC 7252's table (or a later registry entry), a length within
/// that option's bounds and no second one of an option that is not repeatable (a 300-byte
/// Uri-Path, a 9-byte ETag or a second Content-Format is refused here, as it is inside a URI).
pub(crate) fn check_option(
    options: &crate::message::Options,
    number: u16,
    len: usize,
) -> Result<(), coapio_result> {
    if len > 65804 {
        return Err(fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            "an option value has at most 65804 bytes",
        ));
    }
    let number = crate::message::OptionNumber(number);
    let Some(info) = number.info() else {
        return Ok(());
    };
    if !info.len_ok(len) {
        return Err(fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            format!(
                "option {} ({}) takes {} to {} bytes, not {len}",
                number.0, info.name, info.min_len, info.max_len
            ),
        ));
    }
    if !info.repeatable && options.contains(number) {
        return Err(fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            format!(
                "option {} ({}) is not repeatable, and there is one already",
                number.0, info.name
            ),
        ));
    }
    Ok(())
}

/// Writes a message's Content-Format to `*out`; `COAPIO_RESULT_NOT_FOUND` when it has none.
pub(crate) fn write_content_format(
    format: Option<crate::message::ContentFormat>,
    out: *mut u16,
) -> coapio_result {
    if out.is_null() {
        return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
    }
    match format {
        Some(f) => {
            // SAFETY: out is non-NULL (checked above) and writable (caller's contract).
            unsafe { *out = f.0 };
            COAPIO_RESULT_OK
        }
        None => fail(COAPIO_RESULT_NOT_FOUND, "no Content-Format"),
    }
}

/// Points `*number`, `*buf` and `*len` at the `index`-th of `options` in message order (by
/// number, repeated ones in the order they came); `COAPIO_RESULT_NOT_FOUND` past the last.
pub(crate) fn option_by_index(
    options: &crate::message::Options,
    index: usize,
    number: *mut u16,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    if number.is_null() || buf.is_null() || len.is_null() {
        return fail(COAPIO_RESULT_NULL_PARAMETER, "number, buf or len is NULL");
    }
    match options.iter().nth(index) {
        Some((n, v)) => {
            // SAFETY: the out-pointers are non-NULL (checked above) and writable (caller's
            // contract).
            unsafe {
                *number = n.0;
                write_slice(v, buf, len);
            }
            COAPIO_RESULT_OK
        }
        None => fail(
            COAPIO_RESULT_NOT_FOUND,
            format!("no option #{index} (there are {})", options.len()),
        ),
    }
}

/// Decodes an unsigned integer option value (RFC 7252 §3.2: big-endian, 0 to 4 bytes,
/// leading zeros allowed), such as one `coapio_response_option` points at, into `*out`.
/// `COAPIO_RESULT_INVALID_ARGUMENT` for a value longer than 4 bytes.
#[no_mangle]
pub extern "C" fn coapio_option_uint(buf: *const u8, len: usize, out: *mut u32) -> coapio_result {
    guard(|| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        // SAFETY: buf holds len bytes (caller's contract).
        let value = match unsafe { bytes_arg(buf, len, "buf") } {
            Ok(v) => v,
            Err(e) => return e,
        };
        match crate::message::decode_uint(value) {
            Some(v) => {
                // SAFETY: out is non-NULL and writable (caller's contract).
                unsafe { *out = v };
                COAPIO_RESULT_OK
            }
            None => fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("an unsigned integer option has at most 4 bytes, not {len}"),
            ),
        }
    })
}

/// Points `*buf`/`*len` at the `index`-th value of option `number` in `options`, for the
/// option accessors of responses and received requests.
pub(crate) fn option_at(
    options: &crate::message::Options,
    number: u16,
    index: usize,
    buf: *mut *const u8,
    len: *mut usize,
) -> coapio_result {
    if buf.is_null() || len.is_null() {
        return fail(COAPIO_RESULT_NULL_PARAMETER, "buf or len is NULL");
    }
    match options
        .get_all(crate::message::OptionNumber(number))
        .nth(index)
    {
        Some(v) => {
            // SAFETY: both out-pointers are non-NULL (checked above) and writable (caller's
            // contract).
            unsafe { write_slice(v, buf, len) };
            COAPIO_RESULT_OK
        }
        None => fail(
            COAPIO_RESULT_NOT_FOUND,
            format!("no option {number} #{index}"),
        ),
    }
}

/// The version of the library as `MAJOR * 10000 + MINOR * 100 + PATCH` (compare with
/// `COAPIO_VERSION_NUMBER` from the header).
#[no_mangle]
pub extern "C" fn coapio_version_number() -> u32 {
    let p = |s: &str| s.parse::<u32>().unwrap_or(0);
    p(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + p(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + p(env!("CARGO_PKG_VERSION_PATCH"))
}

/// The version of the library as a static string, such as `"0.1.0"`.
#[no_mangle]
pub extern "C" fn coapio_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The registered name of a CoAP code (`"Content"` for 2.05), or `""` for an unregistered
/// one; a static string.
#[no_mangle]
pub extern "C" fn coapio_code_name(code: u8) -> *const c_char {
    // Static C strings: nothing is allocated (valgrind finds nothing "possibly lost").
    crate::message::Code(code).c_name().unwrap_or(c"").as_ptr()
}
