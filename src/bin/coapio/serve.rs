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
//!   modification time and size of what is observed (every `--poll-interval`, 500 ms by
//!   default), not with inotify; a file that disappears ends its observations with 4.04.
//! - `PUT` (create or replace, atomically through a temporary file; a path ending in `/`
//!   makes a directory) and `DELETE` (a file, or an empty directory) only with `--write`;
//!   without it they are answered `4.05 Method Not Allowed`. If-Match and If-None-Match are
//!   honoured.
//! - Paths are confined to DIR: a `.` or `..` segment, or a symbolic link that leads
//!   outside, is answered `4.03 Forbidden`; a segment with `/`, `\` or NUL, or one that is
//!   not UTF-8, `4.00 Bad Request`.
//!
//! The file system is read in the handlers, on the endpoint's thread: a slow disk slows
//! every request.

use std::collections::HashMap;
use std::fs;
use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// Modification time and size: what a change of a file or directory shows in.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = fs::metadata(p).ok()?;
    Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
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

fn fnv(parts: &[&[u8]]) -> [u8; 8] {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
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
            let Ok(s) = std::str::from_utf8(seg) else {
                return Err(error(Code::BAD_REQUEST, "path segment is not UTF-8"));
            };
            if s == "." || s == ".." {
                return Err(error(Code::FORBIDDEN, "path segments . and .. are refused"));
            }
            if s.contains(['/', '\\', '\0']) {
                return Err(error(
                    Code::BAD_REQUEST,
                    "path segment contains /, \\ or NUL",
                ));
            }
            segments.push(s.to_owned());
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
                    _ => break,
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
        let Ok(meta) = fs::metadata(&t.fs) else {
            return error(Code::NOT_FOUND, "no such file or directory");
        };
        let registers = req.options().get_uint(OptionNumber::OBSERVE) == Some(0);
        let response = if meta.is_dir() {
            self.listing(req, t)
        } else if t.slash {
            error(Code::NOT_FOUND, "not a directory")
        } else {
            self.file(req, t, &meta)
        };
        if registers && response.code.is_success() {
            let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            w.insert(req.path(), (t.fs.clone(), stamp(&t.fs)));
        }
        response
    }

    fn listing(&self, req: &ServerRequest, t: &Target) -> Response {
        if req
            .accept()
            .is_some_and(|a| a != ContentFormat::LINK_FORMAT)
        {
            return error(Code::NOT_ACCEPTABLE, "a directory is link-format (40)");
        }
        let entries = match fs::read_dir(&t.fs) {
            Ok(e) => e,
            Err(e) => return error(Code::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let mut links = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: no URI can name it
            };
            if name.starts_with('.') && name.contains(".coapio-") {
                continue; // an upload in progress
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let mut segments: Vec<&[u8]> = t.segments.iter().map(|s| s.as_bytes()).collect();
            segments.push(name.as_bytes());
            let href = path_from_options(segments);
            let link = if meta.is_dir() {
                format!("<{href}/>;ct=40")
            } else {
                let mut head = [0u8; 512];
                let n = fs::File::open(entry.path())
                    .and_then(|mut f| f.read(&mut head))
                    .unwrap_or(0);
                let cf = format_of(&entry.path(), &head[..n]);
                format!("<{href}>;ct={};sz={}", cf.0, meta.len())
            };
            links.push((name, link));
        }
        links.sort();
        let body: Vec<String> = links.into_iter().map(|(_, l)| l).collect();
        let payload = body.join(",");
        Response::new(Code::CONTENT)
            .with_payload(payload.clone())
            .with_content_format(ContentFormat::LINK_FORMAT)
            .with_etag(fnv(&[payload.as_bytes()]))
    }

    fn file(&self, req: &ServerRequest, t: &Target, meta: &fs::Metadata) -> Response {
        let len = meta.len();
        let mut f = match fs::File::open(&t.fs) {
            Ok(f) => f,
            Err(e) => return error(Code::FORBIDDEN, e.to_string()),
        };
        if len <= WHOLE_MAX {
            let mut bytes = Vec::new();
            if let Err(e) = f.read_to_end(&mut bytes) {
                return error(Code::INTERNAL_SERVER_ERROR, e.to_string());
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
        let etag = large_etag(meta);
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
        let mut head = [0u8; 512];
        let n = f.read(&mut head).unwrap_or(0);
        let cf = format_of(&t.fs, &head[..n]);
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

    /// The ETag of what is at `path` now (`None`: nothing is).
    fn current_etag(path: &Path) -> Option<Vec<u8>> {
        let meta = fs::metadata(path).ok()?;
        if meta.is_dir() {
            return Some(Vec::new());
        }
        if meta.len() > WHOLE_MAX {
            return Some(large_etag(&meta).to_vec());
        }
        fs::read(path).ok().map(|b| fnv(&[&b]).to_vec())
    }

    fn put(&self, req: &ServerRequest, t: &Target) -> Response {
        let current = Self::current_etag(&t.fs);
        if req.request.precondition_failed(current.as_deref()) {
            return Response::new(Code::PRECONDITION_FAILED);
        }
        if t.slash || t.segments.is_empty() {
            let existed = t.fs.is_dir();
            return match fs::create_dir_all(&t.fs) {
                Ok(()) if existed => Response::new(Code::CHANGED),
                Ok(()) => Response::new(Code::CREATED),
                Err(e) => error(Code::FORBIDDEN, e.to_string()),
            };
        }
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
        let temp = parent.join(format!(".{name}.coapio-{}.tmp", std::process::id()));
        let written = fs::write(&temp, req.payload()).and_then(|()| fs::rename(&temp, &t.fs));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return error(Code::FORBIDDEN, e.to_string());
        }
        let code = if current.is_some() {
            Code::CHANGED
        } else {
            Code::CREATED
        };
        Response::new(code).with_etag(fnv(&[req.payload()]))
    }

    fn delete(&self, req: &ServerRequest, t: &Target) -> Response {
        if t.segments.is_empty() {
            return error(
                Code::FORBIDDEN,
                "the served directory itself is not deleted",
            );
        }
        let current = Self::current_etag(&t.fs);
        if current.is_none() {
            return error(Code::NOT_FOUND, "no such file or directory");
        }
        if req.request.precondition_failed(current.as_deref()) {
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
