//! The ETSI CoAP plugtest resource set (as Californium's PlugtestServer serves it), described in
//! `shared/plugtest-resources.md`.
//!
//! ```text
//! cargo run --example plugtest_server -- [--bind ADDR] [--no-amplification-limit]
//! ```
//!
//! The default bind address is `[::]:5683`. `--no-amplification-limit` answers clients not yet
//! verified in full, however small their requests (RFC 9175 §2.4 limits such answers to three
//! times the request; load generators that neither follow Echo nor block-wise need it off).
//!
//! Complete here: `/test`, `/separate`, `/seg1/seg2/seg3`, `/query`, `/location-query`,
//! `/multi-format`, `/validate`, `/create1`, `/link1`–`/link3`, `/path` and its children,
//! `/.well-known/core` with filtering, the block-wise resources (`/large`, `/large-update`,
//! `/large-create`, `/large-post`: the core does RFC 7959 for them), and the observable ones
//! (`/obs`, `/obs-non`, `/obs-large`: notified every 5 s and, for `/obs*`, at once after a
//! PUT; `/obs` with CON notifications, `/obs-non` with NON ones; a DELETE of `/obs*` ends every
//! observation with a 4.04 notification, a PUT with another Content-Format with 4.06).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coapio::message::{Code, ContentFormat, OptionNumber};
use coapio::proto::Response;
use coapio::server::{get, Resource, ServerRequest, Site};
use coapio::Endpoint;

mod common;

const TEXT: ContentFormat = ContentFormat::TEXT_PLAIN;

fn text(code: Code, body: impl Into<Vec<u8>>) -> Response {
    Response::new(code)
        .with_payload(body)
        .with_content_format(TEXT)
}

fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

fn large_text() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..20 {
        let line = format!("{i:02} This is a large resource for block-wise transfer tests ");
        s.push_str(&format!("{line:-<63}\n"));
    }
    s.into_bytes()
}

fn describe(req: &ServerRequest) -> String {
    format!(
        "Type: {}\nCode: {}\nPath: {}",
        if req.request.confirmable {
            "CON"
        } else {
            "NON"
        },
        req.method(),
        req.path()
    )
}

/// A stored representation: payload, Content-Format and an ETag that changes with it.
#[derive(Clone, Debug)]
struct Stored {
    payload: Vec<u8>,
    format: u32,
    etag: u32,
}

#[derive(Debug)]
struct State {
    validate: Stored,
    create1: Option<Stored>,
    large_update: Stored,
    children: Vec<Option<Stored>>,
    obs: Stored,
    next_etag: u32,
}

impl State {
    fn etag(&mut self) -> u32 {
        self.next_etag += 1;
        self.next_etag
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server's endpoint, for handlers that end observations (set once it exists).
type Server = Arc<std::sync::OnceLock<Endpoint>>;

/// Ends every observation of `path` with a final `code` (4.04 after a DELETE, 4.06 after a
/// PUT with another Content-Format), before the handler answers: a client that registers
/// afterwards observes the resource anew.
fn end_observations(server: &Server, path: &str, code: Code) {
    if let Some(ep) = server.get() {
        if let Err(e) = ep.end_observations(path, Response::new(code)) {
            eprintln!("ending the observations of {path} failed: {e}");
        }
    }
}

fn stored_response(code: Code, s: &Stored) -> Response {
    let mut r = Response::new(code).with_payload(s.payload.clone());
    r.options.push_uint(OptionNumber::CONTENT_FORMAT, s.format);
    r
}

/// Paths whose observers are to be notified at once (a PUT changed them); the ticker thread
/// of `main` takes them.
type Changes = Arc<Mutex<std::sync::mpsc::Sender<&'static str>>>;

fn site(changes: Changes, server: Server) -> Site {
    let state: Shared = Arc::new(Mutex::new(State {
        validate: Stored {
            payload: b"validate me".to_vec(),
            format: 0,
            etag: 1,
        },
        create1: None,
        large_update: Stored {
            payload: large_text(),
            format: 0,
            etag: 2,
        },
        children: Vec::new(),
        obs: Stored {
            payload: Vec::new(),
            format: 0,
            etag: 3,
        },
        next_etag: 3,
    }));

    let test = Resource::new()
        .get(|req| async move {
            let mut r = text(Code::CONTENT, describe(&req));
            r.options.push_uint(OptionNumber::MAX_AGE, 30);
            r
        })
        .post(|_req| async {
            let mut r = Response::new(Code::CREATED);
            for seg in ["location1", "location2", "location3"] {
                r.options.push(OptionNumber::LOCATION_PATH, seg);
            }
            r
        })
        .put(|req| async move {
            if req.request.options.contains(OptionNumber::IF_NONE_MATCH) {
                Response::new(Code::PRECONDITION_FAILED)
            } else {
                Response::new(Code::CHANGED)
            }
        })
        .delete(|_req| async { Response::new(Code::DELETED) })
        .ct(0);

    let separate = get(|req| async move {
        async_io::Timer::after(Duration::from_secs(1)).await;
        text(
            Code::CONTENT,
            format!("Separate response\n{}", describe(&req)),
        )
    })
    .ct(0);

    let seg = |n: &'static str| get(move |_req| async move { text(Code::CONTENT, n) }).ct(0);

    let query =
        get(|req| async move { text(Code::CONTENT, format!("?{}", req.query().join("&"))) }).ct(0);

    let location_query = Resource::new().post(|_req| async {
        let mut r = Response::new(Code::CREATED);
        r.options.push(OptionNumber::LOCATION_QUERY, "first=1");
        r.options.push(OptionNumber::LOCATION_QUERY, "second=2");
        r
    });

    let multi_format = get(|req| async move {
        match req.accept().map(|f| f.0) {
            None | Some(0) => text(Code::CONTENT, "Status: fine"),
            Some(41) => Response::new(Code::CONTENT)
                .with_payload("<status>fine</status>")
                .with_content_format(ContentFormat::XML),
            Some(50) => Response::new(Code::CONTENT)
                .with_payload(r#"{"status":"fine"}"#)
                .with_content_format(ContentFormat::JSON),
            Some(_) => Response::new(Code::NOT_ACCEPTABLE),
        }
    })
    .ct(0)
    .ct(41)
    .ct(50);

    let s = state.clone();
    let s2 = state.clone();
    let s3 = state.clone();
    let validate = Resource::new()
        .get(move |req| {
            let s = s.clone();
            async move {
                let st = lock(&s).validate.clone();
                let etag = st.etag.to_be_bytes();
                if req
                    .request
                    .options
                    .get_all(OptionNumber::ETAG)
                    .any(|e| e == etag)
                {
                    let mut r = Response::new(Code::VALID);
                    r.options.push(OptionNumber::ETAG, etag);
                    return r;
                }
                let mut r = stored_response(Code::CONTENT, &st);
                r.options.push(OptionNumber::ETAG, etag);
                r
            }
        })
        .put(move |req| {
            let s = s2.clone();
            async move {
                let Some(format) = req.content_format() else {
                    return text(Code::BAD_REQUEST, "Content-Format required");
                };
                let mut st = lock(&s);
                let current = st.validate.etag.to_be_bytes();
                let mut if_match = req
                    .request
                    .options
                    .get_all(OptionNumber::IF_MATCH)
                    .peekable();
                if if_match.peek().is_some() && !if_match.any(|e| e == current) {
                    return Response::new(Code::PRECONDITION_FAILED);
                }
                let etag = st.etag();
                st.validate = Stored {
                    payload: req.payload().to_vec(),
                    format: u32::from(format.0),
                    etag,
                };
                let mut r = Response::new(Code::CHANGED);
                r.options.push(OptionNumber::ETAG, etag.to_be_bytes());
                r
            }
        })
        .delete(move |_req| {
            let s = s3.clone();
            async move {
                let mut st = lock(&s);
                let etag = st.etag();
                st.validate = Stored {
                    payload: b"validate me".to_vec(),
                    format: 0,
                    etag,
                };
                Response::new(Code::DELETED)
            }
        })
        .ct(0);

    let (c1, c2, c3, c4) = (state.clone(), state.clone(), state.clone(), state.clone());
    let create1 = Resource::new()
        .put(move |req| {
            let s = c1.clone();
            async move {
                let mut st = lock(&s);
                let exists = st.create1.is_some();
                if exists && req.request.options.contains(OptionNumber::IF_NONE_MATCH) {
                    return Response::new(Code::PRECONDITION_FAILED);
                }
                let etag = st.etag();
                st.create1 = Some(Stored {
                    payload: req.payload().to_vec(),
                    format: req.content_format().map_or(0, |f| u32::from(f.0)),
                    etag,
                });
                Response::new(if exists { Code::CHANGED } else { Code::CREATED })
            }
        })
        .get(move |_req| {
            let s = c2.clone();
            async move {
                match &lock(&s).create1 {
                    Some(stored) => stored_response(Code::CONTENT, stored),
                    None => Response::new(Code::NOT_FOUND),
                }
            }
        })
        .delete(move |_req| {
            let s = c3.clone();
            async move {
                lock(&s).create1 = None;
                Response::new(Code::DELETED)
            }
        })
        .listed_when(move || lock(&c4).create1.is_some());

    let large = get(|_req| async { text(Code::CONTENT, large_text()) })
        .rt("block")
        .sz(1280)
        .ct(0);

    let (u1, u2) = (state.clone(), state.clone());
    let large_update = Resource::new()
        .get(move |_req| {
            let s = u1.clone();
            async move { stored_response(Code::CONTENT, &lock(&s).large_update) }
        })
        .put(move |req| {
            let s = u2.clone();
            async move {
                let Some(format) = req.content_format() else {
                    return text(Code::BAD_REQUEST, "Content-Format required");
                };
                let mut st = lock(&s);
                let etag = st.etag();
                st.large_update = Stored {
                    payload: req.payload().to_vec(),
                    format: u32::from(format.0),
                    etag,
                };
                Response::new(Code::CHANGED)
            }
        })
        .rt("block");

    let (l1, l2, l3, l4) = (state.clone(), state.clone(), state.clone(), state.clone());
    let large_create = Resource::new()
        .post(move |req| {
            let s = l1.clone();
            async move {
                let Some(format) = req.content_format() else {
                    return text(Code::BAD_REQUEST, "Content-Format required");
                };
                if req.path_segments().len() != 1 {
                    return Response::new(Code::METHOD_NOT_ALLOWED);
                }
                let mut st = lock(&s);
                if st.children.len() >= 1000 {
                    return text(Code::SERVICE_UNAVAILABLE, "too many children");
                }
                let etag = st.etag();
                st.children.push(Some(Stored {
                    payload: req.payload().to_vec(),
                    format: u32::from(format.0),
                    etag,
                }));
                let mut r = Response::new(Code::CREATED);
                r.options.push(OptionNumber::LOCATION_PATH, "large-create");
                r.options
                    .push(OptionNumber::LOCATION_PATH, st.children.len().to_string());
                r
            }
        })
        .get(move |req| {
            let s = l2.clone();
            async move {
                let segs = req.path_segments();
                let st = lock(&s);
                match segs.get(1).and_then(|n| n.parse::<usize>().ok()) {
                    None if segs.len() == 1 => {
                        let links: Vec<String> = st
                            .children
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.is_some())
                            .map(|(i, _)| format!("</large-create/{}>", i + 1))
                            .collect();
                        Response::new(Code::CONTENT)
                            .with_payload(links.join(","))
                            .with_content_format(ContentFormat::LINK_FORMAT)
                    }
                    Some(n) if n >= 1 && segs.len() == 2 => match st.children.get(n - 1) {
                        Some(Some(c)) => stored_response(Code::CONTENT, c),
                        _ => Response::new(Code::NOT_FOUND),
                    },
                    _ => Response::new(Code::NOT_FOUND),
                }
            }
        })
        .delete(move |req| {
            let s = l3.clone();
            async move {
                let segs = req.path_segments();
                let mut st = lock(&s);
                match segs.get(1).and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n >= 1 && segs.len() == 2 => match st.children.get_mut(n - 1) {
                        Some(c @ Some(_)) => {
                            *c = None;
                            Response::new(Code::DELETED)
                        }
                        _ => Response::new(Code::NOT_FOUND),
                    },
                    _ => Response::new(Code::METHOD_NOT_ALLOWED),
                }
            }
        })
        .rt("block")
        .links(move || {
            let st = lock(&l4);
            st.children
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_some())
                .map(|(i, _)| (i + 1).to_string())
                .collect()
        });

    let large_post = Resource::new()
        .post(|req| async move { text(Code::CHANGED, req.payload().to_ascii_uppercase()) })
        .rt("block");

    let obs = |path: &'static str, name: &'static str| {
        let (g, p) = (state.clone(), state.clone());
        let changes = changes.clone();
        let deleted = changes.clone();
        let (server_put, server_delete) = (server.clone(), server.clone());
        Resource::new()
            .get(move |_req| {
                let s = g.clone();
                async move {
                    let st = lock(&s);
                    let mut r = if st.obs.payload.is_empty() {
                        text(Code::CONTENT, clock())
                    } else {
                        stored_response(Code::CONTENT, &st.obs)
                    };
                    r.options.push_uint(OptionNumber::MAX_AGE, 5);
                    r
                }
            })
            .put(move |req| {
                let s = p.clone();
                let changes = changes.clone();
                let server = server_put.clone();
                async move {
                    let Some(format) = req.content_format() else {
                        return text(Code::BAD_REQUEST, "Content-Format required");
                    };
                    let mut st = lock(&s);
                    let etag = st.etag();
                    let format = u32::from(format.0);
                    if format != st.obs.format {
                        end_observations(&server, path, Code::NOT_ACCEPTABLE);
                    }
                    st.obs = Stored {
                        payload: req.payload().to_vec(),
                        format,
                        etag,
                    };
                    let _ = changes.lock().map(|tx| tx.send(path));
                    Response::new(Code::CHANGED)
                }
            })
            .delete(move |_req| {
                // Every observation ends with a 4.04; the resource stays (the plugtests go on
                // using it) and can be observed again at once.
                let deleted = deleted.clone();
                let server = server_delete.clone();
                async move {
                    end_observations(&server, path, Code::NOT_FOUND);
                    let _ = deleted.lock().map(|tx| tx.send(path));
                    Response::new(Code::DELETED)
                }
            })
            .rt("observe")
            .obs()
            .ct(0)
            .title(name)
    };

    let obs_large = get(|_req| async {
        let mut body = large_text();
        body.extend_from_slice(clock().as_bytes());
        text(Code::CONTENT, body)
    })
    .rt("observe")
    .obs();

    let path = get(|_req| async {
        Response::new(Code::CONTENT)
            .with_payload("</path/sub1>,</path/sub2>,</path/sub3>")
            .with_content_format(ContentFormat::LINK_FORMAT)
    })
    .ct(40);

    Site::new()
        .resource("/test", test)
        .resource("/separate", separate)
        .resource("/seg1", seg("seg1"))
        .resource("/seg1/seg2", seg("seg2"))
        .resource("/seg1/seg2/seg3", seg("seg3"))
        .resource("/query", query)
        .resource("/location-query", location_query)
        .resource("/multi-format", multi_format)
        .resource("/validate", validate)
        .resource("/create1", create1)
        .resource("/large", large)
        .resource("/large-update", large_update)
        .subtree("/large-create", large_create)
        .resource("/large-post", large_post)
        .resource("/obs", obs("/obs", "observable, notified every 5 s"))
        .resource(
            "/obs-non",
            obs("/obs-non", "observable, notified every 5 s"),
        )
        .resource("/obs-large", obs_large)
        .resource("/link1", Resource::new().rt("Type1 Type2").if_("If1"))
        .resource("/link2", Resource::new().rt("Type2 Type3").if_("If2"))
        .resource("/link3", Resource::new().rt("Type1 Type3").if_("foo"))
        .resource("/path", path)
        .resource("/path/sub1", seg("sub1"))
        .resource("/path/sub2", seg("sub2"))
        .resource("/path/sub3", seg("sub3"))
}

fn main() -> ExitCode {
    common::log_to_stderr();
    let mut bind = "[::]:5683".to_string();
    let mut config = coapio::proto::Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bind" => match args.next() {
                Some(v) => bind = v,
                None => {
                    eprintln!("--bind needs an address");
                    return ExitCode::from(2);
                }
            },
            "--no-amplification-limit" => config.amplification_mitigation = false,
            _ => {
                eprintln!("usage: plugtest_server [--bind ADDR] [--no-amplification-limit]");
                return ExitCode::from(2);
            }
        }
    }
    let bind_addr: std::net::SocketAddr = match bind.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{bind:?} is not a socket address: {e}");
            return ExitCode::from(2);
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let server = Server::default();
    let (endpoint, driver) = match Endpoint::builder()
        .bind(bind_addr)
        .config(config)
        .site(site(Arc::new(Mutex::new(tx)), server.clone()))
        .build()
    {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot serve on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = server.set(endpoint.clone());
    // The observable resources change every 5 s; a PUT notifies its observers at once.
    let notifier = endpoint.clone();
    std::thread::spawn(move || loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            // /obs notifies Confirmable, /obs-non and /obs-large Non-confirmable.
            Ok("/obs") => {
                notifier.notify_confirmable("/obs");
            }
            Ok(path) => {
                notifier.notify(path);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                notifier.notify_confirmable("/obs");
                notifier.notify("/obs-non");
                notifier.notify("/obs-large");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    });
    match endpoint.local_addr() {
        Ok(a) => println!("plugtest server listening on {a}"),
        Err(_) => println!("plugtest server listening on {bind}"),
    }
    match async_io::block_on(driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
