//! `coapio serve DIR`: the files of a directory over CoAP, as aiocoap-fileserver serves
//! them.
//!
//! - `GET` of a file answers its bytes with a Content-Format guessed from the extension (or
//!   text/plain for UTF-8, octet-stream otherwise) and an ETag (a hash of the content; of
//!   size, modification time and inode for files over 1 MiB). A request that carries the
//!   current ETag gets `2.03 Valid` without the bytes. Files up to 1 MiB are cut into blocks
//!   by the library (RFC 7959, with its amplification limit); larger ones are read block
//!   by block from the file as each Block2 request asks, so they are never held whole.
//! - `GET` of a directory answers its entries in link format (RFC 6690),
//!   `</dir/file.txt>;ct=0;sz=12,</dir/sub/>;ct=40`.
//! - Files and directories are observable (RFC 7641). Changes are found by polling the
//!   modification time and size of what is observed, for a directory those of its entries
//!   (every `--poll-interval`, 500 ms by default), not with inotify; a file that disappears
//!   ends its observations with 4.04.
//! - Only regular files and directories are served: a FIFO, a device or a socket is
//!   answered `4.03 Forbidden` and left out of listings (it is never opened).
//! - `PUT` (create or replace, atomically through a temporary file; a path ending in `/`
//!   makes a directory) and `DELETE` (a file, or an empty directory) only with `--write`;
//!   without it they are answered `4.05 Method Not Allowed`. If-Match and If-None-Match are
//!   honoured; a PUT answers the ETag that a GET then gives.
//! - Paths are confined to DIR: a `.` or `..` segment, or a symbolic link that leads
//!   outside, is answered `4.03 Forbidden`; a segment with `/`, `\`, `:` or NUL, or one
//!   that is not UTF-8, `4.00 Bad Request`.
//!
//! The file system is read in the handlers, on the endpoint's thread: a slow disk slows
//! every request.

use std::collections::HashMap;
use std::fs;
use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use clap::Args;

use coapio::message::uri::path_from_options;
use coapio::message::{BlockValue, Code, ContentFormat, OptionNumber};
use coapio::proto::Response;
use coapio::server::{Resource, ServerRequest, Site};
use coapio::Endpoint;

/// Files larger than this are served block by block from the file.
const WHOLE_MAX: u64 = 1 << 20;
/// The largest block (SZX 6: 1024 bytes) of a file served block by block.
const BLOCK_SZX: u8 = 6;

/// `serve`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The directory to serve.
    dir: PathBuf,
    /// The address to listen on.
    #[arg(long, short = 'b', default_value = "[::]:5683", value_name = "ADDR")]
    bind: SocketAddr,
    /// Allow PUT (create, replace) and DELETE.
    #[arg(long)]
    write: bool,
    /// Also answer multicast requests (ff02::fd and 224.0.1.187) on this interface.
    #[arg(long, value_name = "IF")]
    multicast: Option<String>,
    /// How often observed files are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=600_000))]
    poll_interval: u64,
    /// Log every request on stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs the server until it is killed.
pub(crate) fn run(a: ServeArgs) -> ExitCode {
    let root = match fs::canonicalize(&a.dir) {
        Ok(r) if r.is_dir() => r,
        Ok(r) => return crate::fail(2, &format!("{}: not a directory", r.display())),
        Err(e) => return crate::fail(2, &format!("{}: {e}", a.dir.display())),
    };
    let files = Arc::new(Files {
        root: root.clone(),
        write: a.write,
        verbose: a.verbose,
        watched: Mutex::default(),
    });
    let handler = |f: &Arc<Files>, method: Code| {
        let f = f.clone();
        move |req: ServerRequest| {
            let f = f.clone();
            async move { f.answer(method, &req) }
        }
    };
    let mut resource = Resource::new()
        .get(handler(&files, Code::GET))
        .obs()
        .title("coapio serve");
    if a.write {
        resource = resource
            .put(handler(&files, Code::PUT))
            .delete(handler(&files, Code::DELETE));
    }
    let mut builder = Endpoint::builder()
        .bind(a.bind)
        .site(Site::new().subtree("/", resource));
    if let Some(interface) = &a.multicast {
        let Some(index) = coapio::transport::interface_index(interface) else {
            return crate::fail(2, &format!("no network interface named {interface:?}"));
        };
        for group in coapio::transport::ALL_COAP_NODES {
            // ff02::fd and 224.0.1.187; not the site-local ff05::fd.
            if matches!(group, std::net::IpAddr::V6(g) if g.segments()[0] != 0xff02) {
                continue;
            }
            builder = builder.join_multicast(group, index);
        }
    }
    let (ep, driver) = match builder.build() {
        Ok(x) => x,
        Err(e) => return crate::fail(4, &format!("cannot serve on {}: {e}", a.bind)),
    };
    let local = ep
        .local_addr()
        .map_or(a.bind.to_string(), |l| l.to_string());
    eprintln!(
        "coapio: serving {} on {local} ({})",
        root.display(),
        if a.write {
            "read-write"
        } else {
            "read-only; --write allows PUT and DELETE"
        }
    );
    let poll = Duration::from_millis(a.poll_interval);
    let watcher = files.clone();
    let notifier = ep.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(poll);
        watcher.check(&notifier);
    });
    match async_io::block_on(driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(4, &format!("the server stopped: {e}")),
    }
}

/// What a change shows in: for a file a hash of its modification time and size, for a
/// directory a hash of its entries' names, sizes and modification times (so that a file
/// growing inside changes the listing's stamp as it changes its `sz=`). `None`: nothing is
/// there.
type Stamp = Option<[u8; 8]>;

/// Modification time and size of `m`, as bytes to hash.
fn time_and_size(m: &fs::Metadata) -> [u8; 24] {
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut b = [0u8; 24];
    b[..16].copy_from_slice(&t.to_be_bytes());
    b[16..].copy_from_slice(&m.len().to_be_bytes());
    b
}

fn stamp(p: &Path) -> Stamp {
    let m = fs::metadata(p).ok()?;
    if !m.is_dir() {
        return Some(fnv(&[&time_and_size(&m)]));
    }
    let mut entries: Vec<(std::ffi::OsString, [u8; 24])> = fs::read_dir(p)
        .ok()?
        .flatten()
        .map(|e| {
            // A link's target's size, as the listing shows it (stat only: nothing is opened).
            let m = fs::metadata(e.path()).or_else(|_| e.metadata());
            (e.file_name(), m.map_or([0; 24], |m| time_and_size(&m)))
        })
        .collect();
    entries.sort();
    let mut h = Fnv(FNV_START);
    for (name, ts) in &entries {
        h.write(name.as_encoded_bytes());
        h.write(&[0]);
        h.write(ts);
    }
    Some(h.finish().to_be_bytes())
}

struct Files {
    root: PathBuf,
    write: bool,
    verbose: bool,
    /// Observed resources: CoAP path → file and its stamp when last served.
    watched: Mutex<HashMap<String, (PathBuf, Stamp)>>,
}

/// An error answer with a diagnostic payload.
fn error(code: Code, why: impl Into<String>) -> Response {
    Response::new(code).with_payload(why.into())
}

/// FNV-1a, 64 bits: a stable hash for ETags.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(parts: &[&[u8]]) -> [u8; 8] {
    let mut h = Fnv(FNV_START);
    for p in parts {
        h.write(p);
    }
    h.finish().to_be_bytes()
}

/// The Content-Format of a file, from its extension, else from its first bytes.
fn format_of(path: &Path, head: &[u8]) -> ContentFormat {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("txt" | "text" | "md" | "log" | "csv") => ContentFormat::TEXT_PLAIN,
        Some("json") => ContentFormat::JSON,
        Some("cbor") => ContentFormat::CBOR,
        Some("xml") => ContentFormat::XML,
        Some("wlnk" | "link") => ContentFormat::LINK_FORMAT,
        Some("exi") => ContentFormat::EXI,
        Some("bin") => ContentFormat::OCTET_STREAM,
        _ if std::str::from_utf8(head).is_ok() => ContentFormat::TEXT_PLAIN,
        _ => ContentFormat::OCTET_STREAM,
    }
}

/// One Uri-Path segment as a file name: UTF-8, not `.` or `..`, and one plain name on
/// every platform (no `/`, `\\`, `:` or NUL, so that no segment is a drive, a root or a
/// Windows stream, which `PathBuf::push` would let replace the path).
fn segment(seg: &[u8]) -> Result<String, Response> {
    let Ok(s) = std::str::from_utf8(seg) else {
        return Err(error(Code::BAD_REQUEST, "path segment is not UTF-8"));
    };
    if s == "." || s == ".." {
        return Err(error(Code::FORBIDDEN, "path segments . and .. are refused"));
    }
    if s.contains(['/', '\\', ':', '\0']) {
        return Err(error(
            Code::BAD_REQUEST,
            "path segment contains /, \\, : or NUL",
        ));
    }
    let mut parts = Path::new(s).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) if n == s => Ok(s.to_owned()),
        _ => Err(error(Code::BAD_REQUEST, "path segment is not a file name")),
    }
}

/// What a request's path names.
struct Target {
    /// The file system path.
    fs: PathBuf,
    /// The Uri-Path segments.
    segments: Vec<String>,
    /// Whether the path ends in `/`.
    slash: bool,
}

impl Files {
    fn answer(&self, method: Code, req: &ServerRequest) -> Response {
        let response = match self.target(req) {
            Ok(t) => match method {
                Code::GET => self.get(req, &t),
                Code::PUT if self.write => self.put(req, &t),
                Code::DELETE if self.write => self.delete(req, &t),
                _ => Response::new(Code::METHOD_NOT_ALLOWED),
            },
            Err(r) => r,
        };
        if self.verbose {
            eprintln!(
                "coapio: {} {} from {}: {}",
                method,
                req.path(),
                req.remote(),
                response.code
            );
        }
        response
    }

    /// Maps the request's Uri-Path into the root, refusing what would leave it.
    fn target(&self, req: &ServerRequest) -> Result<Target, Response> {
        let raw: Vec<&[u8]> = req.options().get_all(OptionNumber::URI_PATH).collect();
        let mut segments = Vec::new();
        let mut slash = false;
        for (i, seg) in raw.iter().enumerate() {
            if seg.is_empty() {
                if i + 1 == raw.len() {
                    slash = true;
                    continue;
                }
                return Err(error(Code::BAD_REQUEST, "empty path segment"));
            }
            segments.push(segment(seg)?);
        }
        let mut fs_path = self.root.clone();
        fs_path.extend(&segments);
        // Symbolic links may lead out: what exists of the path must resolve inside the root.
        let mut existing = fs_path.as_path();
        loop {
            match fs::canonicalize(existing) {
                Ok(real) if real.starts_with(&self.root) => break,
                Ok(_) => {
                    return Err(error(
                        Code::FORBIDDEN,
                        "path leads outside the served directory",
                    ))
                }
                Err(_) => match existing.parent() {
                    Some(p) if p.starts_with(&self.root) => existing = p,
                    // Not even the root resolves: fail closed.
                    _ => return Err(error(Code::FORBIDDEN, "the served directory is gone")),
                },
            }
        }
        Ok(Target {
            fs: fs_path,
            segments,
            slash,
        })
    }

    fn get(&self, req: &ServerRequest, t: &Target) -> Response {
        let registers = req.options().get_uint(OptionNumber::OBSERVE) == Some(0);
        // Taken before reading: a change while this is read is still seen by the poller.
        let before = if registers { stamp(&t.fs) } else { None };
        let Ok(meta) = fs::metadata(&t.fs) else {
            return error(Code::NOT_FOUND, "no such file or directory");
        };
        let response = if meta.is_dir() {
            self.listing(req, t)
        } else if t.slash {
            error(Code::NOT_FOUND, "not a directory")
        } else if !meta.is_file() {
            error(Code::FORBIDDEN, "not a regular file")
        } else {
            self.file(req, t)
        };
        if registers && response.code.is_success() {
            // Only the poller advances a stamp, after it notified: a registration (or a
            // notification's re-run) between a change and the next poll must not hide it.
            let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            w.entry(req.path()).or_insert((t.fs.clone(), before));
        }
        response
    }

    /// Opens `path` for reading if it is a regular file inside the root: never a FIFO, a
    /// device or a socket (which could block the endpoint's thread or never end), and
    /// never through a link that leads out. Symbolic links inside the root are followed.
    fn open_regular(&self, path: &Path) -> std::io::Result<fs::File> {
        use std::io::{Error, ErrorKind};
        let real = fs::canonicalize(path)?;
        if !real.starts_with(&self.root) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "leads outside the served directory",
            ));
        }
        let not_regular = || Error::new(ErrorKind::PermissionDenied, "not a regular file");
        if !fs::metadata(&real)?.is_file() {
            return Err(not_regular());
        }
        let mut options = fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            libc::O_NONBLOCK | libc::O_NOFOLLOW,
        );
        let f = options.open(&real)?;
        if !f.metadata()?.is_file() {
            return Err(not_regular());
        }
        Ok(f)
    }

    /// The first bytes of a regular file, to guess its Content-Format from.
    fn head(&self, path: &Path) -> Option<Vec<u8>> {
        let mut head = Vec::new();
        let f = self.open_regular(path).ok()?;
        f.take(512).read_to_end(&mut head).ok()?;
        Some(head)
    }

    /// A directory's listing in link format: its subdirectories and regular files (what
    /// is neither, or leads out of the root, is left out).
    fn listing_payload(&self, t: &Target) -> std::io::Result<String> {
        let mut links = Vec::new();
        for entry in fs::read_dir(&t.fs)?.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: no URI can name it
            };
            if name.starts_with('.') && name.contains(".coapio-") {
                continue; // an upload in progress
            }
            let path = entry.path();
            let inside = fs::canonicalize(&path).is_ok_and(|r| r.starts_with(&self.root));
            let Some(meta) = fs::metadata(&path).ok().filter(|_| inside) else {
                continue;
            };
            let mut segments: Vec<&[u8]> = t.segments.iter().map(|s| s.as_bytes()).collect();
            segments.push(name.as_bytes());
            let href = path_from_options(segments);
            let link = if meta.is_dir() {
                format!("<{href}/>;ct=40")
            } else if meta.is_file() {
                let Some(head) = self.head(&path) else {
                    continue;
                };
                let cf = format_of(&path, &head);
                format!("<{href}>;ct={};sz={}", cf.0, meta.len())
            } else {
                continue;
            };
            links.push((name, link));
        }
        links.sort();
        let body: Vec<String> = links.into_iter().map(|(_, l)| l).collect();
        Ok(body.join(","))
    }

    fn listing(&self, req: &ServerRequest, t: &Target) -> Response {
        if req
            .accept()
            .is_some_and(|a| a != ContentFormat::LINK_FORMAT)
        {
            return error(Code::NOT_ACCEPTABLE, "a directory is link-format (40)");
        }
        let payload = match self.listing_payload(t) {
            Ok(p) => p,
            Err(e) => return error(Code::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let etag = fnv(&[payload.as_bytes()]);
        if req.options().get_all(OptionNumber::ETAG).any(|e| e == etag) {
            return Response::new(Code::VALID).with_etag(etag);
        }
        Response::new(Code::CONTENT)
            .with_payload(payload)
            .with_content_format(ContentFormat::LINK_FORMAT)
            .with_etag(etag)
    }

    fn file(&self, req: &ServerRequest, t: &Target) -> Response {
        let mut f = match self.open_regular(&t.fs) {
            Ok(f) => f,
            Err(e) => return error(Code::FORBIDDEN, e.to_string()),
        };
        let meta = match f.metadata() {
            Ok(m) => m,
            Err(e) => return error(Code::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let len = meta.len();
        if len <= WHOLE_MAX {
            let mut bytes = Vec::new();
            if let Err(e) = (&mut f).take(WHOLE_MAX + 1).read_to_end(&mut bytes) {
                return error(Code::INTERNAL_SERVER_ERROR, e.to_string());
            }
            if bytes.len() as u64 > WHOLE_MAX {
                return error(Code::SERVICE_UNAVAILABLE, "the file is changing");
            }
            let cf = format_of(&t.fs, &bytes[..bytes.len().min(512)]);
            if req.accept().is_some_and(|a| a != cf) {
                return error(Code::NOT_ACCEPTABLE, format!("the file is {cf}"));
            }
            let etag = fnv(&[&bytes]);
            if req.options().get_all(OptionNumber::ETAG).any(|e| e == etag) {
                return Response::new(Code::VALID).with_etag(etag);
            }
            return Response::new(Code::CONTENT)
                .with_payload(bytes)
                .with_content_format(cf)
                .with_etag(etag);
        }
        // Large: this block only, read from the file.
        let etag = large_etag(&meta);
        if req.options().get_all(OptionNumber::ETAG).any(|e| e == etag) {
            return Response::new(Code::VALID).with_etag(etag);
        }
        let asked = req
            .options()
            .get(OptionNumber::BLOCK2)
            .map(BlockValue::from_bytes);
        let (num, szx) = match asked {
            None => (0, BLOCK_SZX),
            Some(Err(_)) => return error(Code::BAD_OPTION, "malformed Block2"),
            Some(Ok(b)) if b.szx() > BLOCK_SZX => (b.num() << (b.szx() - BLOCK_SZX), BLOCK_SZX),
            Some(Ok(b)) => (b.num(), b.szx()),
        };
        let size = 16u64 << szx;
        let offset = u64::from(num) * size;
        if offset >= len {
            return error(Code::BAD_OPTION, "Block2 past the end of the file");
        }
        let mut head = Vec::new();
        if let Err(e) = (&mut f).take(512).read_to_end(&mut head) {
            return error(Code::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let cf = format_of(&t.fs, &head);
        if req.accept().is_some_and(|a| a != cf) {
            return error(Code::NOT_ACCEPTABLE, format!("the file is {cf}"));
        }
        let mut block = Vec::new();
        let read = f
            .seek(SeekFrom::Start(offset))
            .and_then(|_| (&mut f).take(size).read_to_end(&mut block));
        if let Err(e) = read {
            return error(Code::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let more = offset + (block.len() as u64) < len;
        let Ok(value) = BlockValue::new(num, more, szx) else {
            return error(Code::BAD_OPTION, "block number out of range");
        };
        let mut r = Response::new(Code::CONTENT)
            .with_payload(block)
            .with_content_format(cf)
            .with_etag(etag);
        r.options.set_uint(OptionNumber::BLOCK2, value.to_uint());
        r.options
            .set_uint(OptionNumber::SIZE2, u32::try_from(len).unwrap_or(u32::MAX));
        r
    }

    /// The ETag that a GET of what `t` names gives now (`Ok(None)`: nothing is there), the
    /// same function GET uses. What is neither a directory nor a regular file is refused.
    fn current_etag(&self, t: &Target) -> Result<Option<[u8; 8]>, Response> {
        let Ok(meta) = fs::metadata(&t.fs) else {
            return Ok(None);
        };
        if meta.is_dir() {
            return self
                .listing_payload(t)
                .map(|p| Some(fnv(&[p.as_bytes()])))
                .map_err(|e| error(Code::INTERNAL_SERVER_ERROR, e.to_string()));
        }
        let refuse = |e: std::io::Error| error(Code::FORBIDDEN, e.to_string());
        let f = self.open_regular(&t.fs).map_err(refuse)?;
        let meta = f.metadata().map_err(refuse)?;
        if meta.len() > WHOLE_MAX {
            return Ok(Some(large_etag(&meta)));
        }
        let mut bytes = Vec::new();
        f.take(WHOLE_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(Code::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(Some(fnv(&[&bytes])))
    }

    fn put(&self, req: &ServerRequest, t: &Target) -> Response {
        let current = match self.current_etag(t) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if req
            .request
            .precondition_failed(current.as_ref().map(|e| &e[..]))
        {
            return Response::new(Code::PRECONDITION_FAILED);
        }
        let code = if current.is_some() {
            Code::CHANGED
        } else {
            Code::CREATED
        };
        if t.slash || t.segments.is_empty() {
            if let Err(e) = fs::create_dir_all(&t.fs) {
                return error(Code::FORBIDDEN, e.to_string());
            }
        } else {
            if t.fs.is_dir() {
                return error(
                    Code::BAD_REQUEST,
                    "a directory: PUT with a trailing / makes one",
                );
            }
            let (Some(parent), Some(name)) = (t.fs.parent(), t.segments.last()) else {
                return error(Code::BAD_REQUEST, "no file name");
            };
            if let Err(e) = fs::create_dir_all(parent) {
                return error(Code::FORBIDDEN, e.to_string());
            }
            if let Err(e) = replace(parent, name, &t.fs, req.payload()) {
                return error(Code::FORBIDDEN, e.to_string());
            }
        }
        // The ETag a GET now gives, so that If-Match with it works.
        match self.current_etag(t) {
            Ok(Some(etag)) => Response::new(code).with_etag(etag),
            _ => Response::new(code),
        }
    }

    fn delete(&self, req: &ServerRequest, t: &Target) -> Response {
        if t.segments.is_empty() {
            return error(
                Code::FORBIDDEN,
                "the served directory itself is not deleted",
            );
        }
        let current = match self.current_etag(t) {
            Ok(Some(c)) => c,
            Ok(None) => return error(Code::NOT_FOUND, "no such file or directory"),
            Err(r) => return r,
        };
        if req.request.precondition_failed(Some(&current[..])) {
            return Response::new(Code::PRECONDITION_FAILED);
        }
        let removed = if t.fs.is_dir() {
            fs::remove_dir(&t.fs)
        } else {
            fs::remove_file(&t.fs)
        };
        match removed {
            Ok(()) => Response::new(Code::DELETED),
            Err(_) if t.fs.is_dir() => error(Code::CONFLICT, "the directory is not empty"),
            Err(e) => error(Code::FORBIDDEN, e.to_string()),
        }
    }

    /// Notifies the observers of what changed since it was last served; ends the
    /// observations of what is gone.
    fn check(&self, ep: &Endpoint) {
        let changed: Vec<(String, Stamp)> = {
            let w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            w.iter()
                .filter_map(|(path, (fs_path, old))| {
                    let now = stamp(fs_path);
                    (now != *old).then(|| (path.clone(), now))
                })
                .collect()
        };
        for (path, now) in changed {
            let keep = match now {
                Some(_) => ep.notify(&path) > 0,
                None => {
                    let gone = error(Code::NOT_FOUND, "deleted");
                    let _ = ep.end_observations(&path, gone);
                    false
                }
            };
            let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            if keep {
                if let Some(entry) = w.get_mut(&path) {
                    entry.1 = now;
                }
            } else {
                w.remove(&path);
            }
        }
    }
}

/// Writes `payload` to a new temporary file next to `target` (created, never opened
/// through a link, under a name not known in advance) and renames it over `target`.
pub(crate) fn replace(
    parent: &Path,
    name: &str,
    target: &Path,
    payload: &[u8],
) -> std::io::Result<()> {
    use std::hash::BuildHasher;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = std::collections::hash_map::RandomState::new().hash_one((n, SystemTime::now()));
    let temp = parent.join(format!(
        ".{name}.coapio-{}-{n}-{random:016x}.tmp",
        std::process::id()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    // Created here, or the open fails: only then is it ours to remove.
    let mut f = options.open(&temp)?;
    let written = f
        .write_all(payload)
        .and_then(|()| fs::rename(&temp, target));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// The ETag of a file served block by block: size, modification time and inode.
fn large_etag(meta: &fs::Metadata) -> [u8; 8] {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    fnv(&[
        &meta.len().to_be_bytes(),
        &modified.to_be_bytes(),
        &inode.to_be_bytes(),
    ])
}

/// Sets the ETag of a response.
trait WithEtag {
    fn with_etag(self, etag: [u8; 8]) -> Self;
}

impl WithEtag for Response {
    fn with_etag(mut self, etag: [u8; 8]) -> Self {
        self.options.set(OptionNumber::ETAG, etag);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_plain_names() {
        assert_eq!(segment(b"notes.txt").ok(), Some("notes.txt".to_owned()));
        assert_eq!(segment("é x".as_bytes()).ok(), Some("é x".to_owned()));
        for bad in [
            &b"C:x"[..],
            b"C:",
            b"a\\b",
            b"\\\\srv",
            b"a/b",
            b"x\0",
            b"a:stream",
        ] {
            let r = segment(bad).expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(r.code, Code::BAD_REQUEST);
        }
        for bad in [&b"."[..], b".."] {
            assert_eq!(segment(bad).unwrap_err().code, Code::FORBIDDEN);
        }
        assert_eq!(segment(&[0xff]).unwrap_err().code, Code::BAD_REQUEST);
    }
}
