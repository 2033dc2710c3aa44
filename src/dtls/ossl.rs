//! What the `openssl` crate does not bind for a DTLS server: `DTLSv1_listen`, which answers
//! a ClientHello without a valid cookie with a HelloVerifyRequest and keeps no state
//! (RFC 6347 §4.2.1), and the cookies themselves (an HMAC of the remote's address under a
//! secret drawn once per process).
//!
//! The only `unsafe` of the DTLS layer is here, each block with its `SAFETY` note: like the
//! transports' and the C ABI's, it is a call across a C boundary.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;

use foreign_types_shared::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::hash::MessageDigest;
use openssl::memcmp;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::{Ssl, SslContextBuilder, SslRef, SslStream};

extern "C" {
    fn SSL_CTX_use_psk_identity_hint(ctx: *mut openssl_sys::SSL_CTX, hint: *const c_char) -> c_int;
    fn DTLSv1_listen(s: *mut openssl_sys::SSL, client: *mut c_void) -> c_int;
    fn BIO_ADDR_new() -> *mut c_void;
    fn BIO_ADDR_free(a: *mut c_void);
}

/// The cookie length (an HMAC-SHA256 cut to 16 bytes).
const COOKIE: usize = 16;

/// The HMAC key of the cookies, drawn once per process: `None` if OpenSSL's random
/// generator failed (a server is then refused: predictable cookies would be worthless).
fn secret() -> Option<&'static PKey<openssl::pkey::Private>> {
    static SECRET: OnceLock<Option<PKey<openssl::pkey::Private>>> = OnceLock::new();
    SECRET
        .get_or_init(|| {
            let mut s = [0u8; 32];
            openssl::rand::rand_bytes(&mut s).ok()?;
            PKey::hmac(&s).ok()
        })
        .as_ref()
}

fn remote_index() -> Option<Index<Ssl, SocketAddr>> {
    static INDEX: OnceLock<Option<Index<Ssl, SocketAddr>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Tells the session which remote it is for (the cookie is bound to it).
pub(super) fn set_remote(ssl: &mut SslRef, remote: SocketAddr) {
    if let Some(index) = remote_index() {
        ssl.set_ex_data(index, remote);
    }
}

fn cookie_for(ssl: &SslRef) -> Option<Vec<u8>> {
    let remote = ssl.ex_data(remote_index()?)?;
    let mut signer = Signer::new(MessageDigest::sha256(), secret()?).ok()?;
    match remote {
        SocketAddr::V4(a) => signer.update(&a.ip().to_ipv6_mapped().octets()).ok()?,
        SocketAddr::V6(a) => signer.update(&a.ip().octets()).ok()?,
    }
    signer.update(&remote.port().to_be_bytes()).ok()?;
    let mut mac = signer.sign_to_vec().ok()?;
    mac.truncate(COOKIE);
    Some(mac)
}

/// Sets the identity hint a server sends (RFC 4279 §2).
pub(super) fn psk_identity_hint(b: &mut SslContextBuilder, hint: &[u8]) -> Result<(), ErrorStack> {
    let hint = CString::new(hint).map_err(|_| ErrorStack::get())?;
    // SAFETY: the context is live (the builder owns it); OpenSSL copies the NUL-terminated
    // hint, which lives for the call.
    let rc = unsafe { SSL_CTX_use_psk_identity_hint(b.as_ptr(), hint.as_ptr()) };
    if rc == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// Makes the context's servers answer with cookies and check them.
pub(super) fn cookies(b: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    if secret().is_none() {
        return Err(ErrorStack::get());
    }
    b.set_cookie_generate_cb(|ssl, out| {
        let cookie = cookie_for(ssl).ok_or_else(ErrorStack::get)?;
        let n = cookie.len().min(out.len());
        out[..n].copy_from_slice(&cookie[..n]);
        Ok(n)
    });
    b.set_cookie_verify_cb(|ssl, cookie| {
        cookie_for(ssl).is_some_and(|c| c.len() == cookie.len() && memcmp::eq(&c, cookie))
    });
    Ok(())
}

/// Runs `DTLSv1_listen` on the ClientHello waiting in the stream: `Ok(true)` when it carried
/// a valid cookie (the handshake may go on), `Ok(false)` when a HelloVerifyRequest was
/// written instead (or the datagram was not a usable ClientHello), `Err` when OpenSSL failed.
pub(super) fn listen<S: Read + Write>(stream: &mut SslStream<S>) -> Result<bool, ()> {
    // SAFETY: BIO_ADDR_new allocates an empty address or returns NULL.
    let addr = unsafe { BIO_ADDR_new() };
    if addr.is_null() {
        return Err(());
    }
    // SAFETY: the SSL is live for the call (the stream owns it) and has its BIOs set;
    // DTLSv1_listen writes the peer's address (if its BIO knows it) into `addr`, a valid
    // BIO_ADDR, and reads/writes through the stream's BIO on this thread only.
    let rc = unsafe { DTLSv1_listen(stream.ssl().as_ptr(), addr) };
    // SAFETY: addr came from BIO_ADDR_new and is freed once.
    unsafe { BIO_ADDR_free(addr) };
    // A ClientHello it rejected leaves errors on this thread's queue: they must not be taken
    // for the next session's.
    clear_errors();
    match rc {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(()),
    }
}

/// Empties this thread's OpenSSL error queue, as OpenSSL wants before each I/O call (an
/// error left over from another session would be taken for this one's).
pub(super) fn clear_errors() {
    let _ = ErrorStack::get();
}

/// `DTLSv1_handle_timeout`: retransmits the session's last handshake flight if OpenSSL's
/// timer (system clock) has run out; whether it did.
pub(super) fn handle_timeout<S: Read + Write>(stream: &mut SslStream<S>) -> bool {
    const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;
    // SAFETY: the SSL is live (the stream owns it) with its BIOs set; this control takes no
    // argument and writes through the stream's BIO on this thread only.
    let rc = unsafe {
        openssl_sys::SSL_ctrl(
            stream.ssl().as_ptr(),
            DTLS_CTRL_HANDLE_TIMEOUT,
            0,
            std::ptr::null_mut(),
        )
    };
    rc > 0
}
