//! Security contexts stored in a directory the way aiocoap's `FilesystemSecurityContext`
//! stores them, so one directory can be handed between coapio and aiocoap (never used by
//! both at once). [`ContextDir::open`] reads the directory into a [`SecurityContext`] with
//! [`ContextParams::persist_step`] set, and [`ContextDir::store_sequence`] is the storage
//! half of its sequence number persistence (RFC 8613 Appendix B.1.1).
//!
//! The directory holds:
//!
//! - `settings.json` and `secret.json`: JSON objects whose keys are merged (either file may
//!   be absent; a key may appear in only one of them). A key ending in `_hex` carries
//!   bytes in hex, one ending in `_ascii` bytes as ASCII text; the others are plain JSON
//!   values. Required: `sender-id`, `recipient-id` and `secret` (bytes). Optional: `salt`
//!   (bytes, empty by default), `id-context` (bytes; absent means no ID Context, while an
//!   empty one is an empty ID Context), `algorithm` (a name of [`Algorithm::from_name`],
//!   `"AES-CCM-16-64-128"` by default), `kdf-hashfun` (`"sha256"`, the default and the
//!   only one supported) and `window` (the replay window size, an integer, 32 by
//!   default). Other keys are ignored, but their `_hex` and `_ascii` values must decode.
//! - `sequence.json`: `{"next-to-send": N, "received": W}`, the first Sender Sequence
//!   Number that may be used, and the replay window, either `"unknown"` or
//!   `{"index": I, "bitfield": B}` (numbers below `I` and `I + k` for each bit `k` set in
//!   `B` were received; both `null` when aiocoap stored an uninitialized window). Absent
//!   for a context never used.
//!
//! ```no_run
//! use coapio::oscore::fs::ContextDir;
//!
//! let (dir, mut ctx) = ContextDir::open("/var/lib/app/oscore/peer")?;
//! // ... after each protect call (and after unprotecting, which may protect nothing but
//! // costs nothing to check):
//! if let Some(bound) = ctx.take_persist_request() {
//!     dir.store_sequence(bound)?;
//!     ctx.confirm_persisted(bound);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from aiocoap
//!
//! - aiocoap persists in growing chunks (10, 20, 40, … up to 10000 numbers); this module
//!   uses the fixed step [`DEFAULT_PERSIST_STEP`], with bounds requested half a step ahead.
//!   Either reads what the other wrote; numbers skipped over are never used.
//! - aiocoap writes `sequence.json` only once the context is used, and the exact replay
//!   window when it is garbage-collected. A [`SecurityContext`] has no hook for replay
//!   window changes and cannot export its window, so [`ContextDir::open`] writes the file at
//!   once with `"received": "unknown"`: after any restart the window is uninitialized and
//!   freshness is recovered with Echo (RFC 8613 Appendix B.1.2), which aiocoap and coapio
//!   both do.
//! - aiocoap takes an advisory lock on a file named `lock` in the directory; this module
//!   does not. Never let two processes use one directory at the same time: they would
//!   reuse sequence numbers, and so nonces.
//! - Values are checked more strictly: bytes without a suffix, a non-integer
//!   `next-to-send` or a window that is no integer are refused rather than converted.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{Map, Value};
use thiserror::Error;

use super::replay::MAX_WINDOW;
use super::{Algorithm, ContextParams, Hkdf, OscoreError, SecurityContext};

/// The step `K` of sequence number persistence (RFC 8613 Appendix B.1.1) that
/// [`ContextDir::open`] sets: `sequence.json` is written (and synced to disk) about once
/// every 500 sequence numbers (a bound is requested when half a step is left), and a crash
/// skips at most 1000 of the 2^40. (aiocoap grows its step from 10 to 10 000; a sync every
/// few dozen messages would cap a busy client at a few thousand requests a second.)
pub const DEFAULT_PERSIST_STEP: u64 = 1000;

const SECRET: &str = "secret.json";
const SETTINGS: &str = "settings.json";
const SEQUENCE: &str = "sequence.json";

/// The default replay window size, aiocoap's and RFC 8613's.
const DEFAULT_WINDOW: u32 = 32;

/// Why a security context directory could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ContextDirError {
    /// A file or the directory could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A file is not JSON, or not the JSON structure expected (an object at the top).
    #[error("{}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A required key is in none of the files (`sender-id`, `recipient-id`, `secret`;
    /// `next-to-send`, `received`, `index`, `bitfield` in `sequence.json`).
    #[error("required key {0:?} is missing")]
    MissingKey(&'static str),
    /// A key (after its `_hex` or `_ascii` suffix is removed) appears twice: in both
    /// `settings.json` and `secret.json`, or with both suffixes.
    #[error("key {0:?} is present more than once in settings.json and secret.json")]
    DuplicateKey(String),
    /// A value has the wrong type or cannot be decoded (bad hex, non-ASCII text, bytes
    /// without a suffix, a negative sequence number, …).
    #[error("bad value for {key:?}: {message}")]
    BadValue {
        /// The key as written in the file.
        key: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A well-formed value this implementation does not support: an AEAD algorithm other
    /// than those of [`Algorithm`], a `kdf-hashfun` other than `sha256`.
    #[error("unsupported {key}: {value:?}")]
    Unsupported {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// The parameters read make no security context (an ID too long for the algorithm,
    /// equal Sender and Recipient IDs, an empty secret, …).
    #[error("the stored parameters make no usable security context: {0}")]
    Context(#[from] OscoreError),
}

/// A security context stored the way aiocoap stores one (a directory with settings.json,
/// secret.json, sequence.json).
///
/// It remembers the highest bound it stored and never stores a lower one, so
/// [`store_sequence`](Self::store_sequence) may be called from several threads.
#[derive(Debug)]
pub struct ContextDir {
    path: PathBuf,
    /// The highest `next-to-send` this directory holds (read or written).
    stored: Mutex<u64>,
}

impl ContextDir {
    /// Reads the directory: the context, with its sequence number restored from
    /// sequence.json (never lower than stored) and, when the replay window was not stored
    /// ("unknown", or index and bitfield `null`), the window left uninitialized so the
    /// first request is verified fresh with Echo (RFC 8613 Appendix B.1.2). A window stored
    /// as index and bitfield (by aiocoap at a clean shutdown) is restored; one too wide for
    /// this implementation to read (a bitfield over 64 bits) is treated as unknown.
    /// Without sequence.json the context is new: sequence number 0, replay window
    /// initialized and empty, as aiocoap does.
    ///
    /// The context's [`persist_step`](ContextParams::persist_step) is
    /// [`DEFAULT_PERSIST_STEP`]. Before returning, `open` stores the context's first bound
    /// and confirms it, so the context can protect at once: sequence.json then exists
    /// (which tells a later restart that the context was used) and says
    /// `"received": "unknown"`, because the window is not persisted from now on. Later
    /// bounds come from [`SecurityContext::take_persist_request`]; store each with
    /// [`store_sequence`](Self::store_sequence).
    ///
    /// # Errors
    ///
    /// Any [`ContextDirError`]; an unreadable sequence.json is refused (aiocoap refuses it
    /// too) rather than risking reused sequence numbers.
    pub fn open(path: impl AsRef<Path>) -> Result<(Self, SecurityContext), ContextDirError> {
        let path = path.as_ref().to_path_buf();
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContextDirError::Io {
                    source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
                    path,
                })
            }
            Err(source) => return Err(ContextDirError::Io { path, source }),
        }
        let mut params = read_params(&path)?;
        params.persist_step = DEFAULT_PERSIST_STEP;
        let window_size = params.replay_window;
        let stored = read_sequence(&path.join(SEQUENCE))?;
        let mut ctx = SecurityContext::new(params)?;
        let next = match stored {
            None => 0,
            Some(stored) => {
                ctx.set_sender_sequence(stored.next);
                match stored.window {
                    StoredWindow::Unknown => ctx.replay_window_uninitialized(),
                    StoredWindow::Known { index, bitfield } => {
                        restore_window(&mut ctx, window_size, index, bitfield)
                    }
                }
                stored.next
            }
        };
        let dir = Self {
            stored: Mutex::new(next),
            path,
        };
        let bound = ctx.take_persist_request().unwrap_or(next);
        dir.store_sequence(bound)
            .map_err(|source| ContextDirError::Io {
                path: dir.path.join(SEQUENCE),
                source,
            })?;
        ctx.confirm_persisted(bound);
        Ok((dir, ctx))
    }

    /// Stores `bound` as the next sequence number to send (atomically: write a temporary
    /// file in the same directory and rename), with "received": "unknown". Called from the
    /// persistence hook; after it returns Ok the caller calls confirm_persisted(bound).
    ///
    /// A bound lower than one stored before (or read at [`open`](Self::open)) leaves the
    /// higher one in place. The file is written as aiocoap writes it (mode 0600 on Unix,
    /// flushed to disk before the rename), so aiocoap can continue from it.
    ///
    /// # Errors
    ///
    /// The I/O error; the file then still holds the previous bound.
    pub fn store_sequence(&self, bound: u64) -> io::Result<()> {
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let next = bound.max(*stored);
        let data = serde_json::json!({"next-to-send": next, "received": "unknown"});
        let bytes = serde_json::to_vec(&data).map_err(io::Error::other)?;
        write_atomically(&self.path, SEQUENCE, &bytes)?;
        *stored = next;
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

// ---- settings.json and secret.json ---------------------------------------------------

/// A value after its key's suffix was applied.
enum Datum {
    Bytes(Vec<u8>),
    Json(Value),
}

/// Merged data by key without suffix: the key as written, and the value.
type Data = BTreeMap<String, (String, Datum)>;

fn read_params(dir: &Path) -> Result<ContextParams, ContextDirError> {
    let mut data = Data::new();
    for name in [SECRET, SETTINGS] {
        let Some(object) = read_object(&dir.join(name))? else {
            continue;
        };
        for (key, value) in object {
            let (name, datum) = if let Some(name) = key.strip_suffix("_hex") {
                let bytes = value
                    .as_str()
                    .ok_or("not a string")
                    .and_then(|s| unhex(s).ok_or("not an even number of hex digits"))
                    .map_err(|m| bad(&key, m))?;
                (name, Datum::Bytes(bytes))
            } else if let Some(name) = key.strip_suffix("_ascii") {
                let bytes = value
                    .as_str()
                    .ok_or("not a string")
                    .and_then(|s| s.is_ascii().then_some(s).ok_or("not ASCII"))
                    .map_err(|m| bad(&key, m))?;
                (name, Datum::Bytes(bytes.as_bytes().to_vec()))
            } else {
                (key.as_str(), Datum::Json(value))
            };
            if data.contains_key(name) {
                return Err(ContextDirError::DuplicateKey(name.to_owned()));
            }
            data.insert(name.to_owned(), (key.clone(), datum));
        }
    }

    let mut params = ContextParams::new(
        required_bytes(&mut data, "sender-id")?,
        required_bytes(&mut data, "recipient-id")?,
        required_bytes(&mut data, "secret")?,
    );
    if let Some(salt) = bytes(&mut data, "salt")? {
        params.master_salt = salt;
    }
    params.id_context = bytes(&mut data, "id-context")?;
    if let Some(name) = string(&mut data, "algorithm")? {
        params.algorithm =
            Algorithm::from_name(&name).ok_or_else(|| unsupported("algorithm", name))?;
    }
    if let Some(name) = string(&mut data, "kdf-hashfun")? {
        params.hkdf = Hkdf::from_name(&name).ok_or_else(|| unsupported("kdf-hashfun", name))?;
    }
    params.replay_window = match data.remove("window") {
        None => DEFAULT_WINDOW,
        Some((key, Datum::Json(Value::Number(n)))) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_WINDOW).contains(n))
            .ok_or_else(|| bad(&key, "not an integer from 1 to 4096"))?,
        Some((key, _)) => return Err(bad(&key, "not an integer")),
    };
    Ok(params)
}

fn required_bytes(data: &mut Data, name: &'static str) -> Result<Vec<u8>, ContextDirError> {
    bytes(data, name)?.ok_or(ContextDirError::MissingKey(name))
}

fn bytes(data: &mut Data, name: &str) -> Result<Option<Vec<u8>>, ContextDirError> {
    match data.remove(name) {
        None => Ok(None),
        Some((_, Datum::Bytes(b))) => Ok(Some(b)),
        Some((key, Datum::Json(_))) => Err(bad(&key, "bytes need a key ending in _hex or _ascii")),
    }
}

fn string(data: &mut Data, name: &str) -> Result<Option<String>, ContextDirError> {
    match data.remove(name) {
        None => Ok(None),
        Some((_, Datum::Json(Value::String(s)))) => Ok(Some(s)),
        Some((key, _)) => Err(bad(&key, "not a string (and without a suffix)")),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(((digit(p[0])? << 4) | digit(p[1])?) as u8))
        .collect()
}

// ---- sequence.json --------------------------------------------------------------------

struct Stored {
    next: u64,
    window: StoredWindow,
}

enum StoredWindow {
    Unknown,
    Known { index: u64, bitfield: u64 },
}

fn read_sequence(path: &Path) -> Result<Option<Stored>, ContextDirError> {
    let Some(mut object) = read_object(path)? else {
        return Ok(None);
    };
    let next = match object.remove("next-to-send") {
        None => return Err(ContextDirError::MissingKey("next-to-send")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("next-to-send", "not a non-negative integer"))?,
    };
    let window = match object.remove("received") {
        None => return Err(ContextDirError::MissingKey("received")),
        Some(Value::String(s)) if s == "unknown" => StoredWindow::Unknown,
        Some(Value::Object(mut w)) => {
            let index = w
                .remove("index")
                .ok_or(ContextDirError::MissingKey("index"))?;
            let bitfield = w
                .remove("bitfield")
                .ok_or(ContextDirError::MissingKey("bitfield"))?;
            // An integer beyond u64 (aiocoap's bitfield is as wide as its window), which
            // serde_json reads as a float.
            let too_wide = bitfield
                .as_f64()
                .is_some_and(|f| f.is_finite() && f >= 2f64.powi(64));
            match (index.as_u64(), bitfield.as_u64()) {
                (Some(index), Some(bitfield)) => StoredWindow::Known { index, bitfield },
                // Too wide to restore here: as good as unknown.
                (Some(_), None) if too_wide => StoredWindow::Unknown,
                // How aiocoap stores an uninitialized window at a clean shutdown.
                (None, None) if index.is_null() && bitfield.is_null() => StoredWindow::Unknown,
                (None, _) => return Err(bad("index", "not a non-negative integer")),
                (Some(_), None) => return Err(bad("bitfield", "not a non-negative integer")),
            }
        }
        Some(_) => {
            return Err(bad(
                "received",
                "neither \"unknown\" nor an object with index and bitfield",
            ))
        }
    };
    Ok(Some(Stored { next, window }))
}

/// Restores aiocoap's window: numbers below `index` and `index + k` for each bit `k` set
/// (bits at or above the window size mean nothing to aiocoap and are ignored).
fn restore_window(ctx: &mut SecurityContext, size: u32, index: u64, bitfield: u64) {
    if index > 0 {
        // Initializing from `index - 1` rejects it and everything below.
        ctx.replay_window_uninitialized();
        ctx.init_replay_window(index - 1);
    }
    for k in 0..u64::from(size).min(64) {
        if (bitfield >> k) & 1 == 1 {
            if let Some(seq) = index.checked_add(k) {
                ctx.init_replay_window(seq);
            }
        }
    }
}

// ---- Files -----------------------------------------------------------------------------

/// The file's top-level JSON object, `None` when there is no file.
fn read_object(path: &Path) -> Result<Option<Map<String, Value>>, ContextDirError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ContextDirError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(_) => Err(ContextDirError::Json {
            path: path.to_path_buf(),
            message: "the top level is not a JSON object".into(),
        }),
        Err(e) => Err(ContextDirError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Replaces `dir/name` with `bytes`: a new temporary file in `dir`, flushed to disk, then
/// renamed over the old one, so a crash leaves either the old or the new content.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".sequence-{}-{n}.json", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => break (tmp, file),
            // Left over by an earlier process with the same ID: try the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let result = written.and_then(|()| fs::rename(&tmp, dir.join(name)));
    match result {
        Err(_) => {
            let _ = fs::remove_file(&tmp);
        }
        // Make the rename durable too, where directories can be synced (best effort: not
        // every file system can).
        #[cfg(unix)]
        Ok(()) => {
            let _ = fs::File::open(dir).and_then(|d| d.sync_all());
        }
        #[cfg(not(unix))]
        Ok(()) => {}
    }
    result
}

fn bad(key: &str, message: &str) -> ContextDirError {
    ContextDirError::BadValue {
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

fn unsupported(key: &str, value: String) -> ContextDirError {
    ContextDirError::Unsupported {
        key: key.to_owned(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Code, Options};

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oscore-ctx");

    // RFC 8613 C.1 (as in src/oscore/tests.rs): the client's view.
    const C1_CLIENT_SENDER_KEY: &str = "f0910ed7295e6ad4b54fc793154302ff";
    const C1_CLIENT_RECIPIENT_KEY: &str = "ffb14e093c94c9cac9471648b4f98710";
    const C1_COMMON_IV: &str = "4622d4dd6d944168eefb54987c";

    fn h(s: &str) -> Vec<u8> {
        unhex(s).unwrap()
    }

    /// A directory under the system's temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "coapio-oscore-fs-{}-{name}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        /// A copy of a sample directory of tests/peers/oscore-ctx.
        fn sample(which: &str) -> Self {
            let dir = Self::new(which);
            for name in [SETTINGS, SECRET] {
                fs::copy(Path::new(SAMPLES).join(which).join(name), dir.0.join(name)).unwrap();
            }
            dir
        }

        fn write(&self, name: &str, content: impl AsRef<[u8]>) -> &Self {
            fs::write(self.0.join(name), content).unwrap();
            self
        }

        fn read(&self, name: &str) -> Value {
            serde_json::from_slice(&fs::read(self.0.join(name)).unwrap()).unwrap()
        }

        fn open(&self) -> Result<(ContextDir, SecurityContext), ContextDirError> {
            ContextDir::open(&self.0)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A directory with these two files (`None`: no such file).
    fn dir_with(secret: Option<&str>, settings: Option<&str>) -> TempDir {
        let dir = TempDir::new("custom");
        if let Some(s) = secret {
            dir.write(SECRET, s);
        }
        if let Some(s) = settings {
            dir.write(SETTINGS, s);
        }
        dir
    }

    fn open_err(secret: Option<&str>, settings: Option<&str>) -> ContextDirError {
        dir_with(secret, settings).open().unwrap_err()
    }

    const SECRET_C1: &str =
        r#"{"secret_hex": "0102030405060708090a0b0c0d0e0f10", "salt_hex": "9e7ca92223786340"}"#;

    /// The RFC 8613 C.1 client, without persistence, its next sequence number `seq`.
    fn c1_client(seq: u64) -> SecurityContext {
        let mut p = ContextParams::new([], [1], h("0102030405060708090a0b0c0d0e0f10"));
        p.master_salt = h("9e7ca92223786340");
        let mut c = SecurityContext::new(p).unwrap();
        c.set_sender_sequence(seq);
        c
    }

    /// Sends the server a request with sequence number `seq`: Ok when accepted.
    fn deliver(server: &mut SecurityContext, seq: u64) -> Result<(), OscoreError> {
        let (p, _) = c1_client(seq)
            .protect_request(Code::GET, &Options::new(), b"")
            .unwrap();
        server
            .unprotect_request(p.code, &p.options, &p.payload)
            .map(|_| ())
    }

    fn stored_next(dir: &TempDir) -> u64 {
        dir.read(SEQUENCE)["next-to-send"].as_u64().unwrap()
    }

    #[test]
    fn sample_dirs_give_the_c1_keys() {
        let cdir = TempDir::sample("client");
        let (client_dir, mut client) = cdir.open().unwrap();
        assert_eq!(client_dir.path(), cdir.0);
        assert_eq!(client.sender_id(), b"");
        assert_eq!(client.recipient_id(), [1]);
        assert_eq!(client.id_context(), None);
        assert_eq!(client.algorithm(), Algorithm::AesCcm16_64_128);
        assert_eq!(client.sender_key(), h(C1_CLIENT_SENDER_KEY));
        assert_eq!(client.recipient_key(), h(C1_CLIENT_RECIPIENT_KEY));
        assert_eq!(client.common_iv(), h(C1_COMMON_IV));

        let sdir = TempDir::sample("server");
        let (_, mut server) = sdir.open().unwrap();
        assert_eq!(server.sender_key(), h(C1_CLIENT_RECIPIENT_KEY));
        assert_eq!(server.recipient_key(), h(C1_CLIENT_SENDER_KEY));
        assert_eq!(server.common_iv(), h(C1_COMMON_IV));

        // A new context: number 0, window initialized and empty, the first bound stored at
        // once and confirmed, so protecting works without waiting.
        for (dir, ctx) in [(&cdir, &client), (&sdir, &server)] {
            assert_eq!(ctx.sender_sequence(), 0);
            assert!(ctx.replay_window_initialized());
            assert_eq!(ctx.pending_persist(), None);
            assert_eq!(
                dir.read(SEQUENCE),
                serde_json::json!({"next-to-send": DEFAULT_PERSIST_STEP, "received": "unknown"})
            );
        }
        let (p, binding) = client
            .protect_request(Code::GET, &Options::new(), b"")
            .unwrap();
        let (_, theirs) = server
            .unprotect_request(p.code, &p.options, &p.payload)
            .unwrap();
        let r = server
            .protect_response(&theirs, Code::CONTENT, &Options::new(), b"hi", false)
            .unwrap();
        let plain = client
            .unprotect_response(&binding, r.code, &r.options, &r.payload)
            .unwrap();
        assert_eq!(plain.payload, b"hi");
        // The sample directories are left as they were.
        assert!(!Path::new(SAMPLES).join("client").join(SEQUENCE).exists());
    }

    #[test]
    fn ascii_and_hex_give_the_same_bytes() {
        let hex = dir_with(
            Some(SECRET_C1),
            Some(r#"{"sender-id_hex": "4142", "recipient-id_hex": "", "id-context_hex": "00FF"}"#),
        );
        let ascii = dir_with(
            Some(SECRET_C1),
            Some(
                r#"{"sender-id_ascii": "AB", "recipient-id_ascii": "", "id-context_hex": "00ff"}"#,
            ),
        );
        let (_, a) = hex.open().unwrap();
        let (_, b) = ascii.open().unwrap();
        assert_eq!(a.sender_id(), b"AB");
        assert_eq!(b.sender_id(), b"AB");
        assert_eq!(a.recipient_id(), b"");
        assert_eq!(a.id_context(), Some(&[0, 0xff][..]));
        assert_eq!(a.sender_key(), b.sender_key());
        assert_eq!(a.common_iv(), b.common_iv());
        // The secret may come as ASCII too; an empty ID Context is one.
        let (_, c) = dir_with(
            None,
            Some(
                r#"{"sender-id_hex": "01", "recipient-id_hex": "02", "secret_ascii": "s3cret",
                    "id-context_hex": "", "algorithm": "A128GCM", "window": 64,
                    "kdf-hashfun": "sha256", "comment": [1, {"x": null}]}"#,
            ),
        )
        .open()
        .unwrap();
        assert_eq!(c.id_context(), Some(&[][..]));
        assert_eq!(c.algorithm(), Algorithm::A128Gcm);
        let err = open_err(
            Some(r#"{"secret_ascii": "café"}"#),
            Some(r#"{"sender-id_hex": "01", "recipient-id_hex": "02"}"#),
        );
        assert!(
            matches!(&err, ContextDirError::BadValue { key, .. } if key == "secret_ascii"),
            "{err}"
        );
    }

    #[test]
    fn a_key_in_both_files_is_refused() {
        let err = open_err(
            Some(SECRET_C1),
            Some(r#"{"sender-id_hex": "", "recipient-id_hex": "01", "salt_ascii": "x"}"#),
        );
        assert!(
            matches!(&err, ContextDirError::DuplicateKey(k) if k == "salt"),
            "{err}"
        );
        // Also with two suffixes in one file.
        let err = open_err(
            None,
            Some(r#"{"sender-id_hex": "", "sender-id_ascii": "", "recipient-id_hex": "01"}"#),
        );
        assert!(
            matches!(&err, ContextDirError::DuplicateKey(k) if k == "sender-id"),
            "{err}"
        );
        // Everything in one file is fine.
        let settings = r#"{"sender-id_hex": "", "recipient-id_hex": "01",
            "secret_hex": "0102030405060708090a0b0c0d0e0f10", "salt_hex": "9e7ca92223786340"}"#;
        let (_, c) = dir_with(None, Some(settings)).open().unwrap();
        assert_eq!(c.sender_key(), h(C1_CLIENT_SENDER_KEY));
        let (_, c) = dir_with(Some(settings), None).open().unwrap();
        assert_eq!(c.sender_key(), h(C1_CLIENT_SENDER_KEY));
    }

    #[test]
    fn missing_keys_are_refused() {
        let ids = r#"{"sender-id_hex": "", "recipient-id_hex": "01"}"#;
        let err = open_err(None, Some(ids));
        assert!(
            matches!(err, ContextDirError::MissingKey("secret")),
            "{err}"
        );
        let err = open_err(Some(r#"{"salt_hex": "00"}"#), Some(ids));
        assert!(
            matches!(err, ContextDirError::MissingKey("secret")),
            "{err}"
        );
        let err = open_err(Some(SECRET_C1), Some(r#"{"sender-id_hex": ""}"#));
        assert!(
            matches!(err, ContextDirError::MissingKey("recipient-id")),
            "{err}"
        );
        let err = open_err(None, None);
        assert!(
            matches!(err, ContextDirError::MissingKey("sender-id")),
            "{err}"
        );
        let err =
            ContextDir::open(std::env::temp_dir().join("coapio-no-such-dir-4711")).unwrap_err();
        assert!(matches!(err, ContextDirError::Io { .. }), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let ids = r#""sender-id_hex": "", "recipient-id_hex": "01""#;
        for (secret, key) in [
            (r#"{"secret_hex": "0102030"}"#, "secret_hex"),
            (r#"{"secret_hex": "01020g"}"#, "secret_hex"),
            (r#"{"secret_hex": "01 02"}"#, "secret_hex"),
            (r#"{"secret_hex": "0é"}"#, "secret_hex"),
            (r#"{"secret_hex": 1234}"#, "secret_hex"),
            (r#"{"secret_hex": null}"#, "secret_hex"),
            (r#"{"secret_ascii": ["x"]}"#, "secret_ascii"),
            (r#"{"secret": "0102"}"#, "secret"),
            (r#"{"secret_hex": "01", "other_hex": "zz"}"#, "other_hex"),
        ] {
            let err = open_err(Some(secret), Some(&format!("{{{ids}}}")));
            assert!(
                matches!(&err, ContextDirError::BadValue { key: k, .. } if k == key),
                "{secret}: {err}"
            );
        }
        for (extra, key) in [
            (r#""algorithm": 10"#, "algorithm"),
            (r#""algorithm_ascii": "A128GCM""#, "algorithm_ascii"),
            (r#""kdf-hashfun": null"#, "kdf-hashfun"),
            (r#""window": "32""#, "window"),
            (r#""window": 32.5"#, "window"),
            (r#""window": 0"#, "window"),
            (r#""window": -1"#, "window"),
            (r#""window": 4097"#, "window"),
            (r#""window": 99999999999999999999999"#, "window"),
        ] {
            let err = open_err(Some(SECRET_C1), Some(&format!("{{{ids}, {extra}}}")));
            assert!(
                matches!(&err, ContextDirError::BadValue { key: k, .. } if k == key),
                "{extra}: {err}"
            );
        }
        // Parameters that make no context.
        for settings in [
            r#"{"sender-id_hex": "01", "recipient-id_hex": "01"}"#,
            r#"{"sender-id_hex": "0102030405060708", "recipient-id_hex": "01"}"#,
        ] {
            let err = open_err(Some(SECRET_C1), Some(settings));
            assert!(
                matches!(err, ContextDirError::Context(_)),
                "{settings}: {err}"
            );
        }
        let err = open_err(Some(r#"{"secret_hex": ""}"#), Some(&format!("{{{ids}}}")));
        assert!(matches!(err, ContextDirError::Context(_)), "{err}");
    }

    #[test]
    fn unknown_algorithms_are_unsupported() {
        let ids = r#""sender-id_hex": "", "recipient-id_hex": "01""#;
        for (extra, key, value) in [
            (r#""algorithm": "A256GCM""#, "algorithm", "A256GCM"),
            (
                r#""algorithm": "ChaCha20/Poly1305""#,
                "algorithm",
                "ChaCha20/Poly1305",
            ),
            (
                r#""algorithm": "no such thing""#,
                "algorithm",
                "no such thing",
            ),
            (r#""kdf-hashfun": "sha512""#, "kdf-hashfun", "sha512"),
            (r#""kdf-hashfun": "sha384""#, "kdf-hashfun", "sha384"),
        ] {
            let err = open_err(Some(SECRET_C1), Some(&format!("{{{ids}, {extra}}}")));
            assert!(
                matches!(&err, ContextDirError::Unsupported { key: k, value: v }
                    if k == key && v == value),
                "{extra}: {err}"
            );
            assert!(err.to_string().contains(value));
        }
    }

    #[test]
    fn sequence_is_restored_and_never_lowered() {
        let dir = TempDir::sample("client");
        dir.write(SEQUENCE, r#"{"next-to-send": 500, "received": "unknown"}"#);
        let (cdir, mut c) = dir.open().unwrap();
        assert_eq!(c.sender_sequence(), 500);
        assert_eq!(stored_next(&dir), 500 + DEFAULT_PERSIST_STEP);
        let (p, _) = c.protect_request(Code::GET, &Options::new(), b"").unwrap();
        assert_eq!(
            p.options.get(crate::message::OptionNumber::OSCORE).unwrap()[1..3],
            [0x01, 0xf4]
        );
        // A lower bound leaves the higher one in place.
        cdir.store_sequence(7).unwrap();
        assert_eq!(stored_next(&dir), 500 + DEFAULT_PERSIST_STEP);

        // Use numbers with the persistence hook, then "crash" (no clean shutdown) and
        // reopen: the context resumes above every number used.
        let mut used = Vec::new();
        for _ in 0..250 {
            match c.protect_request(Code::GET, &Options::new(), b"") {
                Ok(_) => used.push(c.sender_sequence() - 1),
                Err(e) => panic!("{e}"),
            }
            if let Some(bound) = c.take_persist_request() {
                cdir.store_sequence(bound).unwrap();
                c.confirm_persisted(bound);
            }
        }
        let last = *used.last().unwrap();
        drop((cdir, c));
        let (_, c) = dir.open().unwrap();
        assert!(
            c.sender_sequence() > last,
            "{} <= {last}",
            c.sender_sequence()
        );
        assert!(stored_next(&dir) >= c.sender_sequence());

        // Beyond the last usable number: kept (nothing more can be sent), never lowered.
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 18446744073709551615, "received": "unknown"}"#,
        );
        let (_, mut c) = dir.open().unwrap();
        assert_eq!(c.sender_sequence(), u64::MAX);
        assert_eq!(stored_next(&dir), u64::MAX);
        assert_eq!(
            c.protect_request(Code::GET, &Options::new(), b"")
                .unwrap_err(),
            OscoreError::SequenceExhausted
        );
    }

    #[test]
    fn unknown_window_is_uninitialized() {
        let dir = TempDir::sample("server");
        dir.write(SEQUENCE, r#"{"next-to-send": 0, "received": "unknown"}"#);
        let (_, mut s) = dir.open().unwrap();
        assert!(!s.replay_window_initialized());
        assert!(matches!(
            deliver(&mut s, 5),
            Err(OscoreError::ReplayWindowUninitialized(_))
        ));
        // A bitfield too wide to hold here counts as unknown.
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 3, "received": {"index": 0, "bitfield": 36893488147419103232}}"#,
        );
        let (_, s) = dir.open().unwrap();
        assert!(!s.replay_window_initialized());
        assert_eq!(s.sender_sequence(), 3);
    }

    /// sequence.json files written by aiocoap 0.4.17 (FilesystemSecurityContext on copies
    /// of tests/peers/oscore-ctx, requests protected by the client and verified by the
    /// server in one process, the contexts then garbage-collected).
    #[test]
    fn reads_what_aiocoap_wrote() {
        // The client while in use (first chunk persisted), and after 7 requests.
        let dir = TempDir::sample("client");
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 10, "received": {"index": 0, "bitfield": 0}}"#,
        );
        let (_, c) = dir.open().unwrap();
        assert_eq!(c.sender_sequence(), 10);
        assert!(c.replay_window_initialized());
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 7, "received": {"index": 0, "bitfield": 0}}"#,
        );
        assert_eq!(dir.open().unwrap().1.sender_sequence(), 7);

        // An uninitialized window (from "unknown") stored at a clean shutdown.
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 4321, "received": {"index": null, "bitfield": null}}"#,
        );
        let (_, c) = dir.open().unwrap();
        assert_eq!(c.sender_sequence(), 4321);
        assert!(!c.replay_window_initialized());

        // The server after receiving 0, 1, 2, 5 and 6.
        let dir = TempDir::sample("server");
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 0, "received": {"index": 0, "bitfield": 103}}"#,
        );
        let (_, mut s) = dir.open().unwrap();
        assert!(s.replay_window_initialized());
        for seq in [0, 1, 2, 5, 6] {
            assert_eq!(deliver(&mut s, seq), Err(OscoreError::Replay), "{seq}");
        }
        for seq in [3, 4, 7, 100] {
            assert_eq!(deliver(&mut s, seq), Ok(()), "{seq}");
        }

        // The server after receiving 0 to 40 but 20 and 35 (window 32: slid to index 9).
        dir.write(
            SEQUENCE,
            r#"{"next-to-send": 0, "received": {"index": 9, "bitfield": 4227856383}}"#,
        );
        let (_, mut s) = dir.open().unwrap();
        for seq in [0, 8, 9, 19, 21, 34, 36, 40] {
            assert_eq!(deliver(&mut s, seq), Err(OscoreError::Replay), "{seq}");
        }
        for seq in [20, 35, 41] {
            assert_eq!(deliver(&mut s, seq), Ok(()), "{seq}");
        }
    }

    #[test]
    fn store_sequence_round_trip() {
        let dir = TempDir::sample("client");
        let (cdir, _) = dir.open().unwrap();
        cdir.store_sequence(1234).unwrap();
        let text = fs::read_to_string(dir.0.join(SEQUENCE)).unwrap();
        assert_eq!(text, r#"{"next-to-send":1234,"received":"unknown"}"#);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.0.join(SEQUENCE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(cdir);
        let (cdir, c) = dir.open().unwrap();
        assert_eq!(c.sender_sequence(), 1234);
        assert!(!c.replay_window_initialized());
        assert_eq!(stored_next(&dir), 1234 + DEFAULT_PERSIST_STEP);
        cdir.store_sequence(5000).unwrap();
        assert_eq!(stored_next(&dir), 5000);
        // No temporary files are left behind.
        let mut names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [SECRET, SEQUENCE, SETTINGS]);
        // A directory that cannot be written: an error, the old content stays.
        let gone = TempDir::new("gone");
        let (gdir, _) = {
            gone.write(SECRET, SECRET_C1).write(
                SETTINGS,
                r#"{"sender-id_hex": "", "recipient-id_hex": "01"}"#,
            );
            gone.open().unwrap()
        };
        fs::remove_dir_all(&gone.0).unwrap();
        assert!(gdir.store_sequence(5000).is_err());
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let deep = "[".repeat(100_000);
        let mut shapes: Vec<Vec<u8>> = [
            "",
            " ",
            "{",
            "}",
            "null",
            "true",
            "0",
            "-1",
            "1e999",
            "\"unknown\"",
            "[]",
            "[{}]",
            "{}",
            "{\"next-to-send\": 1}",
            "{\"received\": \"unknown\"}",
            "{\"next-to-send\": -1, \"received\": \"unknown\"}",
            "{\"next-to-send\": 1.5, \"received\": \"unknown\"}",
            "{\"next-to-send\": \"1\", \"received\": \"unknown\"}",
            "{\"next-to-send\": null, \"received\": \"unknown\"}",
            "{\"next-to-send\": 99999999999999999999999, \"received\": \"unknown\"}",
            "{\"next-to-send\": 1, \"received\": \"Unknown\"}",
            "{\"next-to-send\": 1, \"received\": null}",
            "{\"next-to-send\": 1, \"received\": []}",
            "{\"next-to-send\": 1, \"received\": {}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 0}}",
            "{\"next-to-send\": 1, \"received\": {\"bitfield\": 0}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": -1, \"bitfield\": 0}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 0, \"bitfield\": -3}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 0, \"bitfield\": 1.5}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 0, \"bitfield\": \"7\"}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 1e99, \"bitfield\": 0}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": null, \"bitfield\": 0}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 0, \"bitfield\": null}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": null}}",
            "{\"next-to-send\": 1, \"received\": {\"index\": 1e99, \"bitfield\": 1e99}}",
            "{\"next-to-send\": 1, \"received\": \"unknown\"",
            "{\"next-to-send\": 1, \"received\": \"unknown\"} x",
            "{\"next-to-send\": 1, \"received\": \"unknown\",}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        shapes.push(deep.into_bytes());
        shapes.push(b"{\"next-to-send\": 1, \"received\": \"unkn\xffown\"}".to_vec());
        shapes.push(vec![0xff, 0xfe, 0x00, 0x7b]);
        shapes.push(vec![0; 1000]);

        for shape in &shapes {
            let show = String::from_utf8_lossy(&shape[..shape.len().min(60)]).into_owned();
            // As sequence.json, with good settings.
            let dir = TempDir::sample("server");
            dir.write(SEQUENCE, shape);
            assert!(dir.open().is_err(), "sequence.json {show}");
            // The refused file is left as it was.
            assert_eq!(fs::read(dir.0.join(SEQUENCE)).unwrap(), *shape);
            // As settings.json and as secret.json.
            let dir = TempDir::sample("server");
            dir.write(SETTINGS, shape);
            assert!(dir.open().is_err(), "settings.json {show}");
            let dir = TempDir::sample("server");
            dir.write(SECRET, shape);
            assert!(dir.open().is_err(), "secret.json {show}");
        }
        // Well-formed settings with values of every type, under every key.
        let values = [
            "null",
            "true",
            "-1",
            "0",
            "1.5",
            "1e400",
            "\"\"",
            "\"zz\"",
            "[]",
            "{}",
            "[1, 2]",
            "{\"a\": 1}",
            "18446744073709551616",
        ];
        let keys = [
            "sender-id_hex",
            "recipient-id_ascii",
            "secret_hex",
            "salt_hex",
            "id-context_ascii",
            "algorithm",
            "kdf-hashfun",
            "window",
            "sender-id",
            "x_hex",
            "_hex",
        ];
        for key in keys {
            for value in values {
                let dir = TempDir::sample("server");
                let mut settings = dir.read(SETTINGS);
                let secret = dir.read(SECRET);
                settings
                    .as_object_mut()
                    .unwrap()
                    .retain(|k, _| !k.starts_with(key));
                let value: Value = serde_json::from_str(value).unwrap_or(Value::Null);
                settings[key] = value;
                dir.write(SETTINGS, settings.to_string());
                if secret.get(key).is_some() {
                    assert!(dir.open().is_err());
                    continue;
                }
                // Whatever it does, it must not panic; most are errors.
                let _ = dir.open();
            }
        }
        // A directory where a file should be, and a file where the directory should be.
        let dir = TempDir::sample("server");
        fs::create_dir(dir.0.join(SEQUENCE)).unwrap();
        assert!(matches!(dir.open(), Err(ContextDirError::Io { .. })));
        let dir = TempDir::sample("server");
        assert!(matches!(
            ContextDir::open(dir.0.join(SETTINGS)),
            Err(ContextDirError::Io { .. })
        ));
    }
}
