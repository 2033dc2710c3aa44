//! `coapio_config`: how a context is made (transport, bind address, transmission parameters).

use std::ffi::c_char;
use std::net::SocketAddr;
use std::time::Duration;

use super::base::coapio_result::{self, *};
use super::base::{fail, guard, guard_void, str_arg};
use crate::endpoint::TransportKind;
use crate::proto::Config;

/// Which transport a context uses.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum coapio_transport {
    /// The platform's default (udp6 on Linux).
    COAPIO_TRANSPORT_DEFAULT = 0,
    /// One dual-stack socket with PKTINFO and ICMP errors (Linux).
    COAPIO_TRANSPORT_UDP6 = 1,
    /// A connected socket per remote; client only.
    COAPIO_TRANSPORT_SIMPLE6 = 2,
    /// A server bound to one concrete address.
    COAPIO_TRANSPORT_SIMPLESOCKETSERVER = 3,
}

/// The settings of a context. Methods: `coapio_config_new`, `coapio_config_free`,
/// `coapio_config_set_bind`, `coapio_config_set_transport`, `coapio_config_set_reuse_port`,
/// `coapio_config_set_ack_timeout_ms`, `coapio_config_set_ack_random_factor`,
/// `coapio_config_set_max_retransmit`, `coapio_config_set_nstart`,
/// `coapio_config_set_token_length`.
#[derive(Debug, Clone)]
pub struct coapio_config {
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) transport: Option<TransportKind>,
    pub(crate) reuse_port: bool,
    pub(crate) proto: Config,
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

fn with_config(
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
