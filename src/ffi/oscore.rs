//! OSCORE (RFC 8613) in the C ABI: security contexts added to a configuration, from key
//! material given as bytes or from a directory in aiocoap's format, and the rule that a
//! context's requests are those whose URI matches its pattern. Needs the library built with
//! the `oscore` feature; without it these calls return `COAPIO_RESULT_UNSUPPORTED`.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::base::coapio_result::{self, *};
use super::base::{fail, str_arg};
use super::config::{coapio_config, with_config};
use crate::proto::SecurityId;

/// One OSCORE context of a configuration.
#[derive(Clone)]
pub(crate) struct OscoreEntry {
    /// The URIs whose requests it protects (`None`: it only verifies received requests).
    pattern: Option<String>,
    #[cfg_attr(not(feature = "oscore"), allow(dead_code))]
    source: Source,
    /// Set when a context made from the configuration took it: two contexts with one
    /// sequence number counter would reuse sequence numbers.
    taken: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Source {
    #[cfg(feature = "oscore")]
    Params(crate::oscore::ContextParams),
    #[cfg(feature = "oscore")]
    Dir(std::path::PathBuf),
    #[cfg(not(feature = "oscore"))]
    #[allow(dead_code)]
    None,
}

impl std::fmt::Debug for OscoreEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("OscoreEntry")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

/// The optional URI pattern argument: NULL or a NUL-terminated string.
///
/// # Safety
///
/// `pattern` is NULL or NUL-terminated.
unsafe fn pattern_arg(pattern: *const c_char) -> Result<Option<String>, coapio_result> {
    if pattern.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    unsafe { str_arg(pattern, "uri_pattern") }.map(|p| Some(p.to_owned()))
}

/// Adds an OSCORE security context (RFC 8613) to a configuration: the contexts made from it
/// verify received requests whose OSCORE option names `recipient_id`, and answer them
/// protected; with `uri_pattern` (NULL for none) they protect requests to matching URIs
/// (aiocoap's patterns: a whole URI, or a prefix ending in `*`: `"coap://[::1]:5683*"`
/// matches every URI of that server; the first context added that matches is used).
///
/// The key material is bytes: `sender_id` and `recipient_id` (at most 7 bytes with the
/// default algorithm; may be empty), `master_secret`, `master_salt` (may be empty),
/// `id_context` (NULL for none). `algorithm` is the COSE algorithm: 10 (AES-CCM-16-64-128,
/// also chosen by 0), 30 (AES-CCM-16-128-128) or 1 (A128GCM); HKDF is SHA-256. Sequence
/// numbers are not persisted: use `coapio_config_add_oscore_dir` for a context that lives
/// across restarts. One context (`coapio_context_new`) may be made from a configuration
/// with OSCORE contexts: a second would reuse sequence numbers, and is refused.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn coapio_config_add_oscore(
    config: *mut coapio_config,
    uri_pattern: *const c_char,
    sender_id: *const u8,
    sender_id_len: usize,
    recipient_id: *const u8,
    recipient_id_len: usize,
    master_secret: *const u8,
    master_secret_len: usize,
    master_salt: *const u8,
    master_salt_len: usize,
    id_context: *const u8,
    id_context_len: usize,
    algorithm: i32,
) -> coapio_result {
    with_config(config, |c| {
        #[cfg(feature = "oscore")]
        {
            use super::base::bytes_arg;
            use crate::oscore::{Algorithm, ContextParams, SecurityContext};
            // SAFETY: each buffer holds its length in bytes, the pattern is NULL or
            // NUL-terminated (caller's contract).
            let args = unsafe {
                (
                    pattern_arg(uri_pattern),
                    bytes_arg(sender_id, sender_id_len, "sender_id"),
                    bytes_arg(recipient_id, recipient_id_len, "recipient_id"),
                    bytes_arg(master_secret, master_secret_len, "master_secret"),
                    bytes_arg(master_salt, master_salt_len, "master_salt"),
                    if id_context.is_null() {
                        Ok(None)
                    } else {
                        bytes_arg(id_context, id_context_len, "id_context").map(Some)
                    },
                )
            };
            let (pattern, sender, recipient, secret, salt, id_context) = match args {
                (Ok(p), Ok(s), Ok(r), Ok(k), Ok(salt), Ok(ctx)) => (p, s, r, k, salt, ctx),
                (Err(e), ..)
                | (_, Err(e), ..)
                | (_, _, Err(e), ..)
                | (_, _, _, Err(e), ..)
                | (_, _, _, _, Err(e), _)
                | (.., Err(e)) => return e,
            };
            let algorithm = match algorithm {
                0 => Some(Algorithm::default()),
                id => Algorithm::from_cose(i64::from(id)),
            };
            let Some(algorithm) = algorithm else {
                return fail(
                    COAPIO_RESULT_INVALID_ARGUMENT,
                    "algorithm: 10 (AES-CCM-16-64-128), 30 (AES-CCM-16-128-128) or 1 (A128GCM)",
                );
            };
            let mut params =
                ContextParams::new(sender.to_vec(), recipient.to_vec(), secret.to_vec());
            params.master_salt = salt.to_vec();
            params.id_context = id_context.map(<[u8]>::to_vec);
            params.algorithm = algorithm;
            // Checked now, so that a bad context is refused here rather than later.
            if let Err(e) = SecurityContext::new(params.clone()) {
                return fail(
                    COAPIO_RESULT_INVALID_ARGUMENT,
                    format!("OSCORE context: {e}"),
                );
            }
            c.oscore.push(OscoreEntry {
                pattern,
                source: Source::Params(params),
                taken: Arc::default(),
            });
            COAPIO_RESULT_OK
        }
        #[cfg(not(feature = "oscore"))]
        {
            let _ = (
                c,
                uri_pattern,
                (sender_id, sender_id_len, recipient_id, recipient_id_len),
                (
                    master_secret,
                    master_secret_len,
                    master_salt,
                    master_salt_len,
                ),
                (id_context, id_context_len, algorithm),
            );
            unsupported()
        }
    })
}

/// Adds the OSCORE security context stored in directory `dir` the way aiocoap stores one
/// (`settings.json`, `secret.json` and `sequence.json`, into which its sequence numbers are
/// persisted ahead of use, RFC 8613 Appendix B.1.1), as `coapio_config_add_oscore` adds one.
/// The directory is read when a context is made from the configuration
/// (`coapio_context_new` fails with `COAPIO_RESULT_INVALID_ARGUMENT` if it cannot be); it
/// must be used by one process at a time.
#[no_mangle]
pub extern "C" fn coapio_config_add_oscore_dir(
    config: *mut coapio_config,
    uri_pattern: *const c_char,
    dir: *const c_char,
) -> coapio_result {
    with_config(config, |c| {
        // SAFETY: NULL or NUL-terminated strings (caller's contract).
        let args = unsafe { (pattern_arg(uri_pattern), str_arg(dir, "dir")) };
        let (pattern, dir) = match args {
            (Ok(p), Ok(d)) => (p, d),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        #[cfg(feature = "oscore")]
        {
            c.oscore.push(OscoreEntry {
                pattern,
                source: Source::Dir(dir.into()),
                taken: Arc::default(),
            });
            COAPIO_RESULT_OK
        }
        #[cfg(not(feature = "oscore"))]
        {
            let _ = (c, pattern, dir);
            unsupported()
        }
    })
}

/// Makes the contexts made from `config` serve only OSCORE-protected requests (`on`
/// nonzero): an unprotected one is answered 4.01 Unauthorized ("OSCORE required") and no
/// handler runs.
#[no_mangle]
pub extern "C" fn coapio_config_require_oscore(
    config: *mut coapio_config,
    on: bool,
) -> coapio_result {
    with_config(config, |c| {
        #[cfg(feature = "oscore")]
        {
            c.require_oscore = on;
            COAPIO_RESULT_OK
        }
        #[cfg(not(feature = "oscore"))]
        {
            let _ = (c, on);
            unsupported()
        }
    })
}

#[cfg(not(feature = "oscore"))]
fn unsupported() -> coapio_result {
    fail(
        COAPIO_RESULT_UNSUPPORTED,
        "OSCORE needs the library built with the `oscore` feature",
    )
}

/// Adds the configuration's OSCORE contexts to a new context's core; returns the URI
/// patterns of those that protect requests.
pub(crate) fn install(
    config: &coapio_config,
    ep: &mut crate::proto::Endpoint,
) -> Result<Vec<(String, SecurityId)>, coapio_result> {
    // Take every entry; if another context holds any of them, give back the ones taken here.
    let was_taken: Vec<bool> = config
        .oscore
        .iter()
        .map(|e| e.taken.swap(true, Ordering::SeqCst))
        .collect();
    if was_taken.iter().any(|t| *t) {
        for (e, _) in config.oscore.iter().zip(&was_taken).filter(|(_, t)| !**t) {
            e.taken.store(false, Ordering::SeqCst);
        }
        return Err(fail(
            COAPIO_RESULT_INVALID_ARGUMENT,
            "this configuration's OSCORE contexts are in use by another context: one context per configuration (two would reuse sequence numbers)",
        ));
    }
    let result = install_contexts(config, ep);
    if result.is_err() {
        // Nothing was made: the configuration may be used again.
        for e in &config.oscore {
            e.taken.store(false, Ordering::SeqCst);
        }
    }
    result
}

fn install_contexts(
    config: &coapio_config,
    ep: &mut crate::proto::Endpoint,
) -> Result<Vec<(String, SecurityId)>, coapio_result> {
    #[cfg_attr(not(feature = "oscore"), allow(unused_mut))]
    let mut patterns = Vec::new();
    #[cfg(feature = "oscore")]
    {
        use crate::oscore::fs::ContextDir;
        use crate::oscore::SecurityContext;
        for entry in &config.oscore {
            let (context, persist) = match &entry.source {
                Source::Params(p) => match SecurityContext::new(p.clone()) {
                    Ok(c) => (c, None),
                    Err(e) => {
                        return Err(fail(COAPIO_RESULT_INVALID_ARGUMENT, format!("OSCORE: {e}")))
                    }
                },
                Source::Dir(dir) => match ContextDir::open(dir) {
                    Ok((store, c)) => {
                        let hook: crate::proto::PersistHook =
                            Box::new(move |bound| store.store_sequence(bound));
                        (c, Some(hook))
                    }
                    Err(e) => {
                        return Err(fail(
                            COAPIO_RESULT_INVALID_ARGUMENT,
                            format!("OSCORE context directory {}: {e}", dir.display()),
                        ))
                    }
                },
            };
            let id = ep.add_oscore_context(context, persist);
            if let Some(p) = &entry.pattern {
                patterns.push((p.clone(), id));
            }
        }
        ep.require_oscore(config.require_oscore);
    }
    #[cfg(not(feature = "oscore"))]
    let _ = (config, ep);
    Ok(patterns)
}
