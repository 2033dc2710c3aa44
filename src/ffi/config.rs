//! `coapio_config`: how a context is made (transport, bind address, transmission parameters).

use std::ffi::c_char;
use std::net::SocketAddr;
use std::time::Duration;

use super::base::coapio_result::{self, *};
use super::base::{bytes_arg, fail, guard, guard_void, str_arg};
use crate::endpoint::TransportKind;
use crate::proto::Config;

/// Which transport a context uses.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum coapio_transport {
    /// The platform's default (udp6 on Linux).
    COAPIO_TRANSPORT_DEFAULT = 0,
    /// One dual-stack socket with PKTINFO, and ICMP errors on Linux (macOS and FreeBSD have
    /// it without ICMP errors; not Windows).
    COAPIO_TRANSPORT_UDP6 = 1,
    /// A connected socket per remote, for clients; it serves only the remotes it sent
    /// requests to (role reversal), and has no bind address.
    COAPIO_TRANSPORT_SIMPLE6 = 2,
    /// A server bound to one concrete address.
    COAPIO_TRANSPORT_SIMPLESOCKETSERVER = 3,
}

/// The settings of a context. Methods: `coapio_config_new`, `coapio_config_free`,
/// `coapio_config_set_bind`, `coapio_config_set_transport`, `coapio_config_set_reuse_port`,
/// `coapio_config_set_ack_timeout_ms`, `coapio_config_set_ack_random_factor`,
/// `coapio_config_set_max_retransmit`, `coapio_config_set_nstart`,
/// `coapio_config_set_token_length`.
#[derive(Clone)]
pub struct coapio_config {
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) transport: Option<TransportKind>,
    pub(crate) reuse_port: bool,
    pub(crate) proto: Config,
    /// DTLS: a PSK identity and key, a certificate chain and key (PEM), trusted CAs (PEM).
    pub(crate) psk: Option<(Vec<u8>, Vec<u8>)>,
    /// More identities a server accepts, with their keys.
    pub(crate) psk_identities: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) psk_hint: Vec<u8>,
    pub(crate) certificate: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) ca: Option<Vec<u8>>,
    /// A server's own lookup of keys by identity, after the ones set.
    pub(crate) psk_lookup: Option<(PskLookupFn, super::context::UserData)>,
    /// How long a DTLS handshake may take (`None`: the DTLS layer's default, 60 s).
    pub(crate) handshake_timeout: Option<Duration>,
    /// OSCORE security contexts (`coapio_config_add_oscore`).
    pub(crate) oscore: Vec<super::oscore::OscoreEntry>,
    /// Whether only OSCORE-protected requests are served.
    pub(crate) require_oscore: bool,
}

impl std::fmt::Debug for coapio_config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("coapio_config")
            .field("bind", &self.bind)
            .field("transport", &self.transport)
            .field("reuse_port", &self.reuse_port)
            .field("proto", &self.proto)
            .field("psk_identity", &self.psk.as_ref().map(|(i, _)| i))
            .field("psk_identities", &self.psk_identities.len())
            .field("certificate", &self.certificate.is_some())
            .field("ca", &self.ca.is_some())
            .field("psk_lookup", &self.psk_lookup.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("oscore", &self.oscore)
            .field("require_oscore", &self.require_oscore)
            .finish()
    }
}

/// Creates a configuration with the defaults: default transport, bound to `[::]:0` (a
/// client; set a bind address to serve), RFC 7252's transmission parameters.
#[no_mangle]
pub extern "C" fn coapio_config_new(out: *mut *mut coapio_config) -> coapio_result {
    guard(|| {
        if out.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "out is NULL");
        }
        let c = Box::new(coapio_config {
            bind: None,
            transport: None,
            reuse_port: false,
            proto: Config::default(),
            psk: None,
            psk_identities: Vec::new(),
            psk_hint: Vec::new(),
            certificate: None,
            ca: None,
            psk_lookup: None,
            handshake_timeout: None,
            oscore: Vec::new(),
            require_oscore: false,
        });
        // SAFETY: out is non-NULL and writable (caller's contract).
        unsafe { *out = Box::into_raw(c) };
        COAPIO_RESULT_OK
    })
}

/// Frees a configuration; NULL is ignored.
#[no_mangle]
pub extern "C" fn coapio_config_free(config: *mut coapio_config) {
    guard_void(|| {
        if !config.is_null() {
            // SAFETY: made by coapio_config_new and freed once (caller's contract).
            drop(unsafe { Box::from_raw(config) });
        }
    });
}

pub(crate) fn with_config(
    config: *mut coapio_config,
    f: impl FnOnce(&mut coapio_config) -> coapio_result,
) -> coapio_result {
    guard(|| {
        if config.is_null() {
            return fail(COAPIO_RESULT_NULL_PARAMETER, "config is NULL");
        }
        // SAFETY: a live config from coapio_config_new (caller's contract).
        f(unsafe { &mut *config })
    })
}

/// Sets the local address to bind, such as `"[::]:5683"` or `"127.0.0.1:0"`.
#[no_mangle]
pub extern "C" fn coapio_config_set_bind(
    config: *mut coapio_config,
    addr: *const c_char,
) -> coapio_result {
    with_config(config, |c| {
        // SAFETY: addr is NULL or a NUL-terminated string (caller's contract).
        let addr = match unsafe { str_arg(addr, "addr") } {
            Ok(a) => a,
            Err(e) => return e,
        };
        match addr.parse() {
            Ok(a) => {
                c.bind = Some(a);
                COAPIO_RESULT_OK
            }
            Err(e) => fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                format!("{addr:?} is not an address like [::]:5683 or 127.0.0.1:5683: {e}"),
            ),
        }
    })
}

/// Chooses the transport (a `coapio_transport` value; others give
/// `COAPIO_RESULT_INVALID_ARGUMENT`).
#[no_mangle]
pub extern "C" fn coapio_config_set_transport(
    config: *mut coapio_config,
    transport: u32,
) -> coapio_result {
    use coapio_transport::*;
    with_config(config, |c| {
        c.transport = match transport {
            t if t == COAPIO_TRANSPORT_DEFAULT as u32 => None,
            t if t == COAPIO_TRANSPORT_UDP6 as u32 => Some(TransportKind::Udp6),
            t if t == COAPIO_TRANSPORT_SIMPLE6 as u32 => Some(TransportKind::Simple6),
            t if t == COAPIO_TRANSPORT_SIMPLESOCKETSERVER as u32 => {
                Some(TransportKind::SimpleSocketServer)
            }
            other => {
                return fail(
                    COAPIO_RESULT_INVALID_ARGUMENT,
                    format!("{other} is not a coapio_transport"),
                )
            }
        };
        COAPIO_RESULT_OK
    })
}

/// Sets `SO_REUSEPORT` (udp6), so that several contexts can share a port.
#[no_mangle]
pub extern "C" fn coapio_config_set_reuse_port(
    config: *mut coapio_config,
    on: bool,
) -> coapio_result {
    with_config(config, |c| {
        c.reuse_port = on;
        COAPIO_RESULT_OK
    })
}

/// Sets ACK_TIMEOUT in milliseconds (1 to 3 600 000; default 2000).
#[no_mangle]
pub extern "C" fn coapio_config_set_ack_timeout_ms(
    config: *mut coapio_config,
    ms: u32,
) -> coapio_result {
    with_config(config, |c| {
        if !(1..=3_600_000).contains(&ms) {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "ack timeout must be 1 to 3600000 ms",
            );
        }
        c.proto.ack_timeout = Duration::from_millis(u64::from(ms));
        COAPIO_RESULT_OK
    })
}

/// Sets ACK_RANDOM_FACTOR (1.0 to 10.0; default 1.5).
#[no_mangle]
pub extern "C" fn coapio_config_set_ack_random_factor(
    config: *mut coapio_config,
    factor: f64,
) -> coapio_result {
    with_config(config, |c| {
        if !(1.0..=10.0).contains(&factor) {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "ack random factor must be 1.0 to 10.0",
            );
        }
        c.proto.ack_random_factor = factor;
        COAPIO_RESULT_OK
    })
}

/// Sets MAX_RETRANSMIT (0 to 20; default 4).
#[no_mangle]
pub extern "C" fn coapio_config_set_max_retransmit(
    config: *mut coapio_config,
    n: u32,
) -> coapio_result {
    with_config(config, |c| {
        if n > 20 {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "max retransmit must be 0 to 20",
            );
        }
        c.proto.max_retransmit = n;
        COAPIO_RESULT_OK
    })
}

/// Sets NSTART, the outstanding requests per remote (at least 1; default 1).
#[no_mangle]
pub extern "C" fn coapio_config_set_nstart(config: *mut coapio_config, n: u32) -> coapio_result {
    with_config(config, |c| {
        if n == 0 {
            return fail(COAPIO_RESULT_INVALID_ARGUMENT, "nstart must be at least 1");
        }
        c.proto.nstart = n as usize;
        COAPIO_RESULT_OK
    })
}

/// Sets the token length of new requests (0 to 8 bytes; default 8).
#[no_mangle]
pub extern "C" fn coapio_config_set_token_length(
    config: *mut coapio_config,
    n: u32,
) -> coapio_result {
    with_config(config, |c| {
        if n > 8 {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "token length must be 0 to 8",
            );
        }
        c.proto.token_length = n as usize;
        COAPIO_RESULT_OK
    })
}

/// Sets a pre-shared key for DTLS (`coaps://`, RFC 7252 §9.1.3.1): the context presents
/// `identity` (`identity_len` bytes) with `key` (`key_len` bytes) in `coaps://` requests,
/// and, when it has a bind address (`coapio_config_set_bind`), accepts that identity with
/// that key and takes DTLS only on its socket. Needs the library built with the
/// `dtls` feature (`COAPIO_RESULT_UNSUPPORTED` otherwise).
#[no_mangle]
pub extern "C" fn coapio_config_set_psk(
    config: *mut coapio_config,
    identity: *const u8,
    identity_len: usize,
    key: *const u8,
    key_len: usize,
) -> coapio_result {
    with_config(config, |c| {
        // SAFETY: identity and key hold their lengths in bytes (caller's contract).
        match unsafe { psk_args(identity, identity_len, key, key_len) } {
            Ok(psk) => {
                c.psk = Some(psk);
                COAPIO_RESULT_OK
            }
            Err(e) => e,
        }
    })
}

/// Adds an identity a server context (one with a bind address) accepts, with its pre-shared
/// key, beside the one of `coapio_config_set_psk`: each client is looked up by the identity
/// it presents. At most 1024 identities. Needs the `dtls` feature.
#[no_mangle]
pub extern "C" fn coapio_config_add_psk_identity(
    config: *mut coapio_config,
    identity: *const u8,
    identity_len: usize,
    key: *const u8,
    key_len: usize,
) -> coapio_result {
    with_config(config, |c| {
        if c.psk_identities.len() >= 1024 {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "at most 1024 PSK identities",
            );
        }
        // SAFETY: identity and key hold their lengths in bytes (caller's contract).
        match unsafe { psk_args(identity, identity_len, key, key_len) } {
            Ok((identity, key)) => {
                c.psk_identities.retain(|(i, _)| *i != identity);
                c.psk_identities.push((identity, key));
                COAPIO_RESULT_OK
            }
            Err(e) => e,
        }
    })
}

/// Looks up the pre-shared key of a client's `identity` (`identity_len` bytes, not
/// NUL-terminated) for a server context: writes the key to `key` (room for `key_cap` bytes,
/// 256) and returns its length, or returns 0 for an identity the server does not know (the
/// client then gets the unknown_psk_identity alert). `identity` and `key` are valid only
/// during the call.
///
/// Called in the middle of a handshake from `run`, `process` or `coapio_request_sync`, on
/// the thread that calls them, with the context's state held. It must answer from what it
/// has at hand: calls that work on a context (`send`, `cancel`, `notify`,
/// `coapio_request_sync`, ...) return `COAPIO_RESULT_REENTRANT` from inside it. Every
/// context made from the config shares the callback and `userdata`: contexts run on
/// different threads may call it at the same time, and `userdata` must outlive them all.
pub type coapio_psk_lookup_callback = Option<
    extern "C" fn(
        userdata: *mut std::ffi::c_void,
        identity: *const u8,
        identity_len: usize,
        key: *mut u8,
        key_cap: usize,
    ) -> usize,
>;

pub(crate) type PskLookupFn =
    extern "C" fn(*mut std::ffi::c_void, *const u8, usize, *mut u8, usize) -> usize;

/// The room a lookup callback gets for a key (the longest key `coapio_config_set_psk` takes).
#[cfg(feature = "dtls")]
const PSK_KEY_MAX: usize = 256;

/// Sets a server context's lookup of pre-shared keys by identity (see
/// `coapio_psk_lookup_callback`), asked for identities that `coapio_config_set_psk` and
/// `coapio_config_add_psk_identity` did not set; NULL removes it. `userdata` is passed to
/// it unchanged. Only a context with a bind address (a server) asks it. Needs the `dtls`
/// feature.
#[no_mangle]
pub extern "C" fn coapio_config_set_psk_lookup(
    config: *mut coapio_config,
    callback: coapio_psk_lookup_callback,
    userdata: *mut std::ffi::c_void,
) -> coapio_result {
    with_config(config, |c| {
        if !cfg!(feature = "dtls") {
            return unsupported();
        }
        c.psk_lookup = callback.map(|f| (f, super::context::UserData(userdata)));
        COAPIO_RESULT_OK
    })
}

/// Asks the application's lookup for `identity`'s key, with calls into the library refused
/// meanwhile.
#[cfg(feature = "dtls")]
fn ask_lookup(
    f: PskLookupFn,
    userdata: super::context::UserData,
    identity: &[u8],
) -> Option<Vec<u8>> {
    let mut key = [0u8; PSK_KEY_MAX];
    // A panic must not unwind into OpenSSL (it would abort): it refuses the identity.
    let n = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::context::in_psk_lookup(|| {
            f(
                userdata.0,
                identity.as_ptr(),
                identity.len(),
                key.as_mut_ptr(),
                key.len(),
            )
        })
    }))
    .unwrap_or(0);
    let found = match n {
        0 => None,
        n if n > key.len() => {
            log::warn!(
                "coapio: the PSK lookup callback returned {n} bytes for a \
                 {PSK_KEY_MAX}-byte buffer; identity refused"
            );
            None
        }
        n => Some(key[..n].to_vec()),
    };
    for b in &mut key {
        // SAFETY: a valid &mut u8; volatile so the clearing is not optimised away.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    found
}

/// A PSK identity and key from C: checked lengths (identity ≤ 128 bytes, key 1 to 256),
/// copied; `COAPIO_RESULT_UNSUPPORTED` without the `dtls` feature.
///
/// # Safety
///
/// `identity` and `key` are NULL or hold their lengths in bytes.
unsafe fn psk_args(
    identity: *const u8,
    identity_len: usize,
    key: *const u8,
    key_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), coapio_result> {
    if identity_len > 128 || key_len > 256 || key_len == 0 {
        return Err(fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            "a PSK identity takes at most 128 bytes and a key 1 to 256",
        ));
    }
    // SAFETY: the caller's contract.
    let identity = unsafe { bytes_arg(identity, identity_len, "identity") }?.to_vec();
    // SAFETY: the caller's contract.
    let key = unsafe { bytes_arg(key, key_len, "key") }?.to_vec();
    if !cfg!(feature = "dtls") {
        return Err(unsupported());
    }
    Ok((identity, key))
}

/// Sets the PSK identity hint a server context sends to clients (RFC 4279 §2; `len` bytes,
/// at most 128, no NUL). Needs the `dtls` feature.
#[no_mangle]
pub extern "C" fn coapio_config_set_psk_hint(
    config: *mut coapio_config,
    hint: *const u8,
    len: usize,
) -> coapio_result {
    with_config(config, |c| {
        if len > 128 {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "a PSK hint takes at most 128 bytes",
            );
        }
        // SAFETY: hint holds len bytes (caller's contract).
        let hint = match unsafe { bytes_arg(hint, len, "hint") } {
            Ok(h) => h.to_vec(),
            Err(e) => return e,
        };
        if hint.contains(&0) {
            return fail(COAPIO_RESULT_INVALID_ARGUMENT, "a PSK hint has no NUL byte");
        }
        if !cfg!(feature = "dtls") {
            return unsupported();
        }
        c.psk_hint = hint;
        COAPIO_RESULT_OK
    })
}

/// Sets this context's X.509 certificate chain and private key for DTLS (PEM texts of
/// `cert_len` and `key_len` bytes): a server's, or a client's for servers that ask for one.
/// Checked when the context is made. Needs the `dtls` feature.
#[no_mangle]
pub extern "C" fn coapio_config_set_certificate(
    config: *mut coapio_config,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> coapio_result {
    with_config(config, |c| {
        // SAFETY: cert_pem and key_pem hold their lengths in bytes (caller's contract).
        let pems = unsafe {
            pem_arg(cert_pem, cert_len, "cert_pem")
                .and_then(|cert| Ok((cert, pem_arg(key_pem, key_len, "key_pem")?)))
        };
        match pems {
            Ok(pems) => {
                c.certificate = Some(pems);
                COAPIO_RESULT_OK
            }
            Err(e) => e,
        }
    })
}

/// Sets the certificate authorities (a PEM text of `len` bytes, at most 1 MiB) a DTLS peer's
/// certificate must chain to: a client verifies servers against them (and that the
/// certificate names the URI's host, or carries the address of an IP literal); a server asks
/// for and verifies client certificates. Without CAs a client uses pre-shared keys only.
/// Needs the `dtls` feature.
#[no_mangle]
pub extern "C" fn coapio_config_set_ca(
    config: *mut coapio_config,
    ca_pem: *const u8,
    len: usize,
) -> coapio_result {
    with_config(config, |c| {
        // SAFETY: ca_pem holds len bytes (caller's contract).
        match unsafe { pem_arg(ca_pem, len, "ca_pem") } {
            Ok(ca) => {
                c.ca = Some(ca);
                COAPIO_RESULT_OK
            }
            Err(e) => e,
        }
    })
}

/// Sets how long a DTLS handshake may take before the requests waiting on it fail with
/// `COAPIO_RESULT_SECURITY` (100 to 3 600 000 ms; default 60 000). With a pre-shared key a
/// wrong key shows only this way: DTLS drops what it cannot decrypt. Needs the `dtls`
/// feature.
#[no_mangle]
pub extern "C" fn coapio_config_set_dtls_handshake_timeout_ms(
    config: *mut coapio_config,
    ms: u32,
) -> coapio_result {
    with_config(config, |c| {
        if !(100..=3_600_000).contains(&ms) {
            return fail(
                COAPIO_RESULT_INVALID_ARGUMENT,
                "the DTLS handshake timeout must be 100 to 3600000 ms",
            );
        }
        if !cfg!(feature = "dtls") {
            return unsupported();
        }
        c.handshake_timeout = Some(Duration::from_millis(u64::from(ms)));
        COAPIO_RESULT_OK
    })
}

/// The longest PEM text taken (certificate chains and CA sets are far shorter).
const PEM_MAX: usize = 1 << 20;

/// A PEM text from C: at most [`PEM_MAX`] bytes, copied; `COAPIO_RESULT_UNSUPPORTED` without
/// the `dtls` feature.
///
/// # Safety
///
/// `pem` is NULL or holds `len` bytes.
unsafe fn pem_arg(pem: *const u8, len: usize, name: &str) -> Result<Vec<u8>, coapio_result> {
    if len > PEM_MAX {
        return Err(fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            "a PEM text takes at most 1 MiB",
        ));
    }
    // SAFETY: the caller's contract.
    let pem = unsafe { bytes_arg(pem, len, name) }?.to_vec();
    if !cfg!(feature = "dtls") {
        return Err(unsupported());
    }
    Ok(pem)
}

fn unsupported() -> coapio_result {
    fail(
        COAPIO_RESULT_UNSUPPORTED,
        "DTLS needs the library built with the `dtls` feature",
    )
}

impl coapio_config {
    /// Whether any DTLS credential is set.
    #[cfg(feature = "dtls")]
    pub(crate) fn has_dtls(&self) -> bool {
        self.psk.is_some()
            || !self.psk_identities.is_empty()
            || self.psk_lookup.is_some()
            || self.certificate.is_some()
            || self.ca.is_some()
    }

    /// The DTLS layer's configuration, for a server or a client context.
    #[cfg(feature = "dtls")]
    pub(crate) fn dtls(&self, server: bool) -> crate::dtls::DtlsConfig {
        let mut d = crate::dtls::DtlsConfig {
            accept: server,
            ..Default::default()
        };
        if server
            && (self.psk.is_some() || !self.psk_identities.is_empty() || self.psk_lookup.is_some())
        {
            let known: Vec<(Vec<u8>, Vec<u8>)> = self
                .psk
                .iter()
                .chain(&self.psk_identities)
                .cloned()
                .collect();
            let asked = self.psk_lookup;
            d.psk_lookup = Some(std::sync::Arc::new(move |id: &[u8]| {
                known
                    .iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, k)| k.clone())
                    .or_else(|| asked.and_then(|(f, ud)| ask_lookup(f, ud, id)))
            }));
            d.psk_hint = self.psk_hint.clone();
        }
        d.psk = self.psk.clone();
        d.certificate = self.certificate.clone();
        d.trusted_ca = self.ca.clone();
        if let Some(t) = self.handshake_timeout {
            d.handshake_timeout = t;
        }
        d
    }
}
