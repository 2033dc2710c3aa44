//! [`Site`]: the paths a server serves, the resource behind each, and the built-in
//! `/.well-known/core`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{self, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use super::link_format::{self, Attrs, Filter};
use super::request::path_of;
use super::{Resource, ServerRequest};
use crate::message::{uri, Code, ContentFormat, OptionNumber, Options};
use crate::proto::Response;

/// The path of the resource directory of RFC 6690, as a [path key](path_key).
const WELL_KNOWN_CORE: &[u8] = b"\x0b.well-known\x04core";

/// The resources a server serves, by path: the routing table that the endpoint's driver
/// consults for every request it receives.
///
/// A site is built with chained calls; it is cheap to clone (an `Arc` inside) and can be
/// shared between threads.
///
/// # Routing
///
/// Paths are compared segment by segment on the decoded Uri-Path options, so `/a%2Fb` (one
/// segment `a/b`) never matches `/a/b`. A request without Uri-Path, or with one empty
/// Uri-Path, asks for `/`; a trailing slash is an empty last segment, so `/a/` is not
/// `/a`.
///
/// 1. A resource registered with [`Site::resource`] at exactly the request's path answers.
/// 2. Otherwise `/.well-known/core` is answered by the built-in resource directory (see
///    below), unless a subtree was registered at exactly that path.
/// 3. Otherwise the [`Site::subtree`] with the longest path that is a prefix of the
///    request's path answers (a subtree at `/` catches everything).
/// 4. Otherwise the answer is `4.04 Not Found`.
///
/// The resource that answers gives the request to the handler of its method, or answers
/// `4.05 Method Not Allowed`. A handler that panics gives `5.00 Internal Server Error`.
///
/// # `/.well-known/core`
///
/// The built-in resource directory ([RFC 6690](https://www.rfc-editor.org/rfc/rfc6690))
/// answers `GET` (other methods get `4.05`; an Accept option other than 40 gets
/// `4.06 Not Acceptable`) with a `2.05` response in `application/link-format`: the links
/// of all listed resources, sorted by path (segment by segment, so that a parent comes
/// right before its children), each followed by its attributes, separated by
/// `,` — for instance `</sensors/light>;rt="light-lux";if="sensor",</time>;obs`. A
/// resource is listed unless it is [hidden](Resource::hidden) or its
/// [`listed_when`](Resource::listed_when) says no; a resource's
/// [`links`](Resource::links) add further paths. `/.well-known/core` itself is not
/// listed.
///
/// One query item filters the links (RFC 6690 §4.1): `?href=/sensors/*`,
/// `?rt=light-lux`, `?ct=0`, `?if=sensor*`, `?obs`; an attribute matches when its whole
/// value or any one of its space-separated values does, a trailing `*` matches by prefix,
/// and a bare name matches links that have the attribute. When a request carries several
/// query items, only the first filters (libcoap does the same).
///
/// To a request that came by multicast, an empty listing is answered `4.04`, which the
/// protocol core never sends to a multicast request, so the server stays silent as
/// [RFC 7252 §8.2](https://www.rfc-editor.org/rfc/rfc7252#section-8.2) allows when it has
/// nothing useful to say.
///
/// Registering `/.well-known/core` with [`Site::resource`] or [`Site::subtree`] replaces
/// the built-in directory.
///
/// # Examples
///
/// ```
/// use coapio::message::{Code, ContentFormat};
/// use coapio::net::RecvMeta;
/// use coapio::proto::{Request, Response};
/// use coapio::server::{get, Resource, ServerRequest, Site};
///
/// let site = Site::new()
///     .resource("/hello", get(|_req| async { Response::content("Hello, world!") }).rt("greeting"))
///     .subtree("/files", get(|req: ServerRequest| async move {
///         Response::content(format!("file {}", req.path()))
///     }));
///
/// let from = RecvMeta::new("[::1]:40000".parse().unwrap());
/// let ask = |req| async_io::block_on(site.handle(ServerRequest::new(req, from)));
///
/// let resp = ask(Request::get("/hello"));
/// assert_eq!((resp.code, &resp.payload[..]), (Code::CONTENT, &b"Hello, world!"[..]));
/// assert_eq!(ask(Request::get("/files/a/b")).payload, b"file /files/a/b");
/// assert_eq!(ask(Request::delete("/hello")).code, Code::METHOD_NOT_ALLOWED);
/// assert_eq!(ask(Request::get("/nowhere")).code, Code::NOT_FOUND);
///
/// let resp = ask(Request::get("/.well-known/core"));
/// assert_eq!(resp.content_format(), Some(ContentFormat::LINK_FORMAT));
/// assert_eq!(resp.payload, br#"</files>,</hello>;rt="greeting""#);
/// ```
#[derive(Clone, Default)]
pub struct Site {
    inner: Arc<Inner>,
}

#[derive(Clone, Default)]
struct Inner {
    /// Resources registered with `resource`, by [path key](path_key).
    exact: HashMap<Box<[u8]>, Registered>,
    /// Resources registered with `subtree`, by [path key](path_key).
    subtrees: HashMap<Box<[u8]>, Registered>,
    /// The longest key in `subtrees`: no longer prefix of a request's path is looked up
    /// (a path of thousands of empty segments costs one lookup per segment up to here).
    subtree_key_max: usize,
}

/// A resource and its path as a link target.
#[derive(Clone)]
struct Registered {
    href: String,
    resource: Resource,
}

/// What answers a request.
enum Route<'a> {
    Resource(&'a Resource),
    WellKnownCore,
    NotFound,
}

impl Site {
    /// Creates a site with no resources; it serves only `/.well-known/core`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `resource` at exactly `path` (`"/a/b"`), replacing a resource registered
    /// there before.
    ///
    /// `path` is a path reference as in a URI: segments are separated by `/` and may be
    /// percent-encoded (`"/a%2Fb"` is the one segment `a/b`); `.` and `..` are resolved,
    /// and `""` is the same as `"/"`.
    ///
    /// # Panics
    ///
    /// Panics if `path` is not a valid path reference or contains a query (`?`) or a
    /// fragment (`#`).
    pub fn resource(mut self, path: &str, resource: Resource) -> Self {
        let (key, registered) = register(path, resource);
        Arc::make_mut(&mut self.inner).exact.insert(key, registered);
        self
    }

    /// Serves `resource` at `path` and at every path below it (`/a/b` also answers
    /// `/a/b/c/d`), replacing a subtree registered there before: for resources whose
    /// children come and go, such as `/large-create/<id>`.
    ///
    /// The handlers see the full request path in [`ServerRequest::path_segments`]. When
    /// several subtrees contain a path, the one with the longest path answers; a
    /// [`Site::resource`] at exactly the path beats every subtree.
    ///
    /// # Panics
    ///
    /// As [`Site::resource`].
    pub fn subtree(mut self, path: &str, resource: Resource) -> Self {
        let (key, registered) = register(path, resource);
        let inner = Arc::make_mut(&mut self.inner);
        inner.subtree_key_max = inner.subtree_key_max.max(key.len());
        inner.subtrees.insert(key, registered);
        self
    }

    /// Checks a path as [`Site::resource`] would, without panicking: the error says what is
    /// wrong with it.
    ///
    /// # Errors
    ///
    /// The reason `path` is not a valid path reference.
    pub fn check_path(path: &str) -> Result<(), String> {
        parse_path(path).map(|_| ())
    }

    /// The path as the site keys it and as a request for it carries it: decoded and encoded
    /// again, `.` and `..` resolved, `""` and `"x"` written `"/"` and `"/x"`
    /// (`ServerRequest::path` gives the same for a request). For the C ABI, whose resources
    /// are found again by the path a caller passes.
    #[cfg(feature = "capi")]
    pub(crate) fn normalize_path(path: &str) -> Result<String, String> {
        parse_path(path).map(|segments| path_of(&segments))
    }

    /// Answers one request.
    ///
    /// The future owns what it needs (`'static`) and is `Send`; the driver runs it next to
    /// other requests. Neither this call nor the future panics: a panicking or failing
    /// handler gives `5.00 Internal Server Error` (see [`Resource::method`] and
    /// [`IntoResponse`](super::IntoResponse)).
    ///
    /// # Caveats
    ///
    /// The [`Resource::listed_when`] and [`Resource::links`] closures of the whole site run
    /// inside this call, synchronously, for a request to `/.well-known/core`.
    pub fn handle(
        &self,
        request: ServerRequest,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + 'static>> {
        let response = match self.route(&request.request.options) {
            Route::Resource(resource) => {
                let registers = request.request.options.get_uint(OptionNumber::OBSERVE) == Some(0);
                let fut = resource.dispatch(request);
                if !(registers && resource.is_observable()) {
                    return fut;
                }
                // An observable resource consents to the registration by answering a
                // success with Observe; the endpoint numbers it and keeps the observer.
                return Box::pin(async move {
                    let mut response = fut.await;
                    if response.code.is_success() {
                        response.options.set_uint(OptionNumber::OBSERVE, 0);
                    }
                    response
                });
            }
            Route::NotFound => Response::new(Code::NOT_FOUND),
            Route::WellKnownCore => {
                match panic::catch_unwind(AssertUnwindSafe(|| self.well_known_core(&request))) {
                    Ok(response) => response,
                    Err(_) => {
                        log::error!("coapio: a listed_when or links closure panicked");
                        Response::new(Code::INTERNAL_SERVER_ERROR)
                    }
                }
            }
        };
        Box::pin(future::ready(response))
    }

    /// Finds what answers a request for the path in the Uri-Path `options`, reading them in
    /// place (a path key of up to 256 bytes is built on the stack).
    fn route(&self, options: &Options) -> Route<'_> {
        let path = || options.get_all(OptionNumber::URI_PATH);
        // A lone empty Uri-Path is the root, as no Uri-Path is (RFC 7252 section 6.5).
        let root = path().nth(1).is_none() && path().next().is_some_and(<[u8]>::is_empty);
        let total: usize = if root {
            0
        } else {
            path().map(|s| 1 + s.len()).sum()
        };
        let mut stack = [0; 256];
        let mut heap = Vec::new();
        let buf = if total <= stack.len() {
            &mut stack[..total]
        } else {
            heap.resize(total, 0);
            &mut heap[..]
        };
        // A segment longer than 255 bytes is in no registered path: only the subtrees above
        // it can answer.
        let mut len = 0;
        let mut complete = true;
        for segment in path().take_while(|_| !root) {
            let Ok(n) = u8::try_from(segment.len()) else {
                complete = false;
                break;
            };
            buf[len] = n;
            buf[len + 1..len + 1 + segment.len()].copy_from_slice(segment);
            len += 1 + segment.len();
        }
        let key = &buf[..len];
        if complete {
            if let Some(r) = self.inner.exact.get(key) {
                return Route::Resource(&r.resource);
            }
            if key == WELL_KNOWN_CORE && !self.inner.subtrees.contains_key(key) {
                return Route::WellKnownCore;
            }
        }
        // The subtree with the longest path that holds this one: the keys of the path's
        // leading segments are prefixes of its key.
        let mut found = None;
        let mut at = 0;
        while !self.inner.subtrees.is_empty() && at <= self.inner.subtree_key_max {
            found = self.inner.subtrees.get(&key[..at]).or(found);
            if at == len {
                break;
            }
            at += 1 + usize::from(key[at]);
        }
        found.map_or(Route::NotFound, |r| Route::Resource(&r.resource))
    }

    /// Answers a request to the built-in `/.well-known/core`.
    fn well_known_core(&self, request: &ServerRequest) -> Response {
        if request.method() != Code::GET {
            return Response::new(Code::METHOD_NOT_ALLOWED);
        }
        if request
            .accept()
            .is_some_and(|f| f != ContentFormat::LINK_FORMAT)
        {
            return Response::new(Code::NOT_ACCEPTABLE);
        }
        let filter = Filter::from_query(request.options().get_all(OptionNumber::URI_QUERY));
        let links = self.links();
        let body = link_format::render(
            links
                .iter()
                .filter(|(href, attrs)| filter.matches(href, attrs))
                .map(|(href, attrs)| (href.as_str(), *attrs)),
        );
        if body.is_empty() && request.meta.is_multicast() {
            return Response::new(Code::NOT_FOUND);
        }
        Response::new(Code::CONTENT)
            .with_content_format(ContentFormat::LINK_FORMAT)
            .with_payload(body)
    }

    /// Collects the links to list as `(href, attributes)`, sorted by path segment by
    /// segment (so a parent comes right before its children); where two claim one path,
    /// the resource that serves it wins.
    fn links(&self) -> Vec<(String, &Attrs)> {
        let inner = &*self.inner;
        // Resources in path order, exact ones first: the closures run in that order, and
        // where two list one child, the same one wins every time.
        let exact = sorted_by_path(&inner.exact);
        let subtrees = sorted_by_path(&inner.subtrees);
        let mut links = BTreeMap::new();
        let mut add = |key: &[u8], href: String, attrs| {
            if key != WELL_KNOWN_CORE {
                links.entry(key_segments(key)).or_insert((href, attrs));
            }
        };
        for &(key, r) in &exact {
            if r.resource.is_listed() {
                add(key, r.href.clone(), &r.resource.attrs);
            }
        }
        for &(key, r) in &subtrees {
            if !inner.exact.contains_key(key) && r.resource.is_listed() {
                add(key, r.href.clone(), &r.resource.attrs);
            }
        }
        for (_, r) in exact.into_iter().chain(subtrees) {
            let Some(children) = &r.resource.links else {
                continue;
            };
            for child in children() {
                match child_segments(&r.href, &child) {
                    Some(segments) if !inner.exact.contains_key(&*path_key(&segments)) => {
                        add(&path_key(&segments), path_of(&segments), &r.resource.attrs);
                    }
                    Some(_) => {}
                    None => log::warn!(
                        "coapio: not listing {child:?} from the links of {}: \
                         not a valid path",
                        r.href
                    ),
                }
            }
        }
        links.into_values().collect()
    }
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Site")
            .field(
                "resources",
                &self
                    .inner
                    .exact
                    .values()
                    .map(|r| (&r.href, &r.resource))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field(
                "subtrees",
                &self
                    .inner
                    .subtrees
                    .values()
                    .map(|r| (&r.href, &r.resource))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

/// Parses a registration path into its key and the entry to store.
fn register(path: &str, mut resource: Resource) -> (Box<[u8]>, Registered) {
    let segments = parse_path(path).unwrap_or_else(|e| panic!("coapio: {e}"));
    let href = path_of(&segments);
    resource.path = href.as_str().into();
    (path_key(&segments), Registered { href, resource })
}

/// A path as one byte string, by which a site finds its resources: each decoded segment
/// behind its length in one byte. The segments of a valid path are at most 255 bytes long
/// (RFC 7252's Uri-Path length, which [`parse_path`] checks), so no two paths share a key,
/// and the key of a path's leading segments is a prefix of its key.
fn path_key(segments: &[Vec<u8>]) -> Box<[u8]> {
    let mut key = Vec::with_capacity(segments.iter().map(|s| 1 + s.len()).sum());
    for segment in segments {
        let len = u8::try_from(segment.len()).expect("a checked path segment fits a byte");
        key.push(len);
        key.extend_from_slice(segment);
    }
    key.into()
}

/// The entries of `map` in path order (segment by segment, so a parent comes right before
/// its children).
fn sorted_by_path<V>(map: &HashMap<Box<[u8]>, V>) -> Vec<(&[u8], &V)> {
    let mut entries: Vec<_> = map.iter().map(|(k, v)| (&**k, v)).collect();
    entries.sort_by_cached_key(|(key, _)| key_segments(key));
    entries
}

/// The segments of a [path key](path_key).
fn key_segments(mut key: &[u8]) -> Vec<Vec<u8>> {
    let mut segments = Vec::new();
    while let Some((&len, rest)) = key.split_first() {
        let (segment, rest) = rest.split_at(usize::from(len).min(rest.len()));
        segments.push(segment.to_vec());
        key = rest;
    }
    segments
}

/// Parses a path reference into decoded segments.
fn parse_path(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut options = Options::new();
    uri::set_path_and_query(&mut options, path)
        .map_err(|e| format!("invalid resource path {path:?}: {e}"))?;
    if options.contains(OptionNumber::URI_QUERY) || path.contains('?') {
        return Err(format!(
            "invalid resource path {path:?}: a resource path cannot have a query ('?')"
        ));
    }
    Ok(options
        .get_all(OptionNumber::URI_PATH)
        .map(<[u8]>::to_vec)
        .collect())
}

/// Resolves a path from [`Resource::links`]: as is when it starts with `/`, else relative
/// to `base`.
fn child_segments(base: &str, child: &str) -> Option<Vec<Vec<u8>>> {
    if child.starts_with('/') {
        parse_path(child).ok()
    } else {
        parse_path(&format!("{}/{child}", base.trim_end_matches('/'))).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::net::RecvMeta;
    use crate::proto::Request;
    use crate::server::{delete, get, post, put};

    fn meta() -> RecvMeta {
        RecvMeta::new("[2001:db8::1]:40000".parse().unwrap())
    }

    fn call(site: &Site, request: Request) -> Response {
        async_io::block_on(site.handle(ServerRequest::new(request, meta())))
    }

    fn text(resp: &Response) -> &str {
        std::str::from_utf8(&resp.payload).unwrap()
    }

    /// A resource that answers GET with its name.
    fn named(name: &'static str) -> Resource {
        get(move |_req| async move { Response::content(name) })
    }

    fn discover(site: &Site, query: &str) -> String {
        let resp = call(site, Request::get(&format!("/.well-known/core{query}")));
        assert_eq!(resp.code, Code::CONTENT, "{query}");
        assert_eq!(resp.content_format(), Some(ContentFormat::LINK_FORMAT));
        String::from_utf8(resp.payload).unwrap()
    }

    #[test]
    fn site_is_send_sync_and_the_future_is_send() {
        fn send_sync<T: Send + Sync + 'static>(_: &T) {}
        fn send<T: Send + 'static>(_: &T) {}
        let site = Site::new();
        send_sync(&site);
        send(&site.handle(ServerRequest::new(Request::get("/"), meta())));
    }

    #[test]
    fn exact_paths() {
        let site = Site::new()
            .resource("/", named("root"))
            .resource("/a", named("a"))
            .resource("/a/b", named("a/b"))
            .resource("a/c", named("a/c"));
        assert_eq!(text(&call(&site, Request::get("/"))), "root");
        assert_eq!(text(&call(&site, Request::new(Code::GET))), "root");
        assert_eq!(text(&call(&site, Request::get("/a"))), "a");
        assert_eq!(text(&call(&site, Request::get("/a/b"))), "a/b");
        assert_eq!(text(&call(&site, Request::get("/a/c"))), "a/c");
        assert_eq!(text(&call(&site, Request::get("/a/./b/../b"))), "a/b");
        for missing in ["/a/", "/a/b/c", "/b", "/A"] {
            let resp = call(&site, Request::get(missing));
            assert_eq!(resp.code, Code::NOT_FOUND, "{missing}");
            assert!(resp.payload.is_empty());
            assert!(resp.options.is_empty());
        }
    }

    #[test]
    fn a_lone_empty_uri_path_is_the_root() {
        let site = Site::new().resource("/", named("root"));
        let mut req = Request::new(Code::GET);
        req.options.push(OptionNumber::URI_PATH, "");
        assert_eq!(text(&call(&site, req)), "root");
    }

    #[test]
    fn trailing_slash_is_its_own_path() {
        let site = Site::new()
            .resource("/dir/", named("dir/"))
            .resource("/dir", named("dir"));
        assert_eq!(text(&call(&site, Request::get("/dir/"))), "dir/");
        assert_eq!(text(&call(&site, Request::get("/dir"))), "dir");
    }

    #[test]
    fn percent_encoded_segments() {
        let site = Site::new()
            .resource("/a%2Fb", named("one segment"))
            .resource("/a/b", named("two segments"))
            .resource("/caf%C3%A9", named("unicode"));
        assert_eq!(text(&call(&site, Request::get("/a%2Fb"))), "one segment");
        assert_eq!(text(&call(&site, Request::get("/a/b"))), "two segments");
        assert_eq!(text(&call(&site, Request::get("/café"))), "unicode");
        let mut raw = Request::new(Code::GET);
        raw.options.push(OptionNumber::URI_PATH, "a/b");
        assert_eq!(text(&call(&site, raw)), "one segment");
        let mut bad_utf8 = Request::new(Code::GET);
        bad_utf8.options.push(OptionNumber::URI_PATH, [0xff]);
        assert_eq!(call(&site, bad_utf8).code, Code::NOT_FOUND);
        assert_eq!(discover(&site, ""), "</a/b>,</a%2Fb>,</caf%C3%A9>");
    }

    #[test]
    fn subtrees() {
        let site = Site::new()
            .subtree("/", named("catch-all"))
            .subtree("/large-create", named("create"))
            .subtree("/large-create/x", named("deeper"))
            .resource("/large-create/exact", named("exact"))
            .resource("/large-create/x", named("exact x"));
        let got = |path| text(&call(&site, Request::get(path))).to_owned();
        assert_eq!(got("/large-create"), "create");
        assert_eq!(got("/large-create/"), "create");
        assert_eq!(got("/large-create/1"), "create");
        assert_eq!(got("/large-create/1/2"), "create");
        assert_eq!(got("/large-create/exact"), "exact");
        assert_eq!(got("/large-create/exact/1"), "create");
        assert_eq!(got("/large-create/x"), "exact x");
        assert_eq!(got("/large-create/x/1"), "deeper");
        assert_eq!(got("/large-createx"), "catch-all");
        assert_eq!(got("/"), "catch-all");
        assert_eq!(got("/other/path"), "catch-all");
    }

    #[test]
    fn long_paths_and_segments_beyond_a_path_key() {
        // A path whose key does not fit the stack buffer, and a segment longer than any
        // registered path can have (Uri-Path is at most 255 bytes, but a datagram may
        // carry more): the first routes exactly, the second only to a subtree above it.
        let long: String = (0..40).map(|i| format!("/segment{i}")).collect();
        let site = Site::new()
            .resource(&long, named("long"))
            .subtree("/files", named("files"))
            .resource("/x", named("x"));
        let got = |req: Request| text(&call(&site, req)).to_owned();
        assert_eq!(got(Request::get(&long)), "long");
        let mut beyond = Request::get("/files");
        beyond.options.push(OptionNumber::URI_PATH, [b'a'; 300]);
        beyond.options.push(OptionNumber::URI_PATH, "deeper");
        assert_eq!(got(beyond), "files");
        let mut unrouted = Request::new(Code::GET);
        unrouted.options.push(OptionNumber::URI_PATH, [b'x'; 256]);
        assert_eq!(call(&site, unrouted).code, Code::NOT_FOUND);
    }

    #[test]
    fn thousands_of_empty_segments_route_to_the_subtree_above() {
        let site = Site::new()
            .subtree("/", named("catch-all"))
            .subtree("/a", named("a"));
        let mut empty = Request::new(Code::GET);
        for _ in 0..20_000 {
            empty.options.push(OptionNumber::URI_PATH, "");
        }
        assert_eq!(text(&call(&site, empty.clone())), "catch-all");
        let mut under_a = Request::get("/a");
        under_a.options.push(OptionNumber::URI_PATH, "");
        assert_eq!(text(&call(&site, under_a)), "a");
    }

    #[test]
    fn a_child_listed_twice_takes_the_first_resource_in_path_order() {
        // Registered in many orders (and kept in a hash map), the same parent wins.
        for n in 0..8 {
            let mut site = Site::new();
            for i in (0..8).map(|k| (k + n) % 8) {
                site = site.resource(
                    &format!("/p{i}"),
                    named("p")
                        .rt(&format!("from-p{i}"))
                        .links(|| vec!["/x".into()]),
                );
            }
            let body = discover(&site, "?href=/x");
            assert_eq!(body, r#"</x>;rt="from-p0""#);
        }
    }

    #[test]
    fn path_keys_round_trip_and_keep_prefixes() {
        let segments = [b"a".to_vec(), Vec::new(), vec![0xff; 255]];
        let key = path_key(&segments);
        assert_eq!(key_segments(&key), segments);
        assert!(key.starts_with(&path_key(&segments[..2])));
        assert_eq!(
            &*path_key(&[b".well-known".to_vec(), b"core".to_vec()]),
            WELL_KNOWN_CORE
        );
    }

    #[test]
    fn subtree_handlers_see_the_full_path() {
        let site =
            Site::new().subtree(
                "/files",
                get(|req: ServerRequest| async move {
                    Response::content(req.path_segments().join("|"))
                }),
            );
        assert_eq!(
            text(&call(&site, Request::get("/files/a%2Fb/c"))),
            "files|a/b|c"
        );
    }

    #[test]
    fn later_registration_replaces() {
        let site = Site::new()
            .resource("/x", named("first"))
            .resource("/x", named("second"));
        assert_eq!(text(&call(&site, Request::get("/x"))), "second");
    }

    #[test]
    fn clones_share_nothing_mutable() {
        let base = Site::new().resource("/a", named("a"));
        let more = base.clone().resource("/b", named("b"));
        assert_eq!(call(&base, Request::get("/b")).code, Code::NOT_FOUND);
        assert_eq!(call(&more, Request::get("/a")).code, Code::CONTENT);
        assert_eq!(call(&more, Request::get("/b")).code, Code::CONTENT);
    }

    #[test]
    fn methods() {
        let site = Site::new().resource(
            "/r",
            Resource::new()
                .get(|_req| async { Response::content("get") })
                .post(|req: ServerRequest| async move {
                    Response::new(Code::CREATED).with_payload(req.payload().to_vec())
                })
                .put(|_req| async { Code::CHANGED })
                .delete(|_req| async { Code::DELETED })
                .fetch(|_req| async { Response::content("fetch") })
                .patch(|_req| async { Code::CHANGED })
                .ipatch(|_req| async { Code::CHANGED })
                .method(Code(0x1f), |_req| async { Code::VALID }),
        );
        assert_eq!(text(&call(&site, Request::get("/r"))), "get");
        let created = call(&site, Request::post("/r", "body"));
        assert_eq!(
            (created.code, &created.payload[..]),
            (Code::CREATED, &b"body"[..])
        );
        assert_eq!(call(&site, Request::put("/r", "")).code, Code::CHANGED);
        assert_eq!(call(&site, Request::delete("/r")).code, Code::DELETED);
        for (method, code) in [
            (Code::FETCH, Code::CONTENT),
            (Code::PATCH, Code::CHANGED),
            (Code::IPATCH, Code::CHANGED),
            (Code(0x1f), Code::VALID),
        ] {
            let mut req = Request::new(method);
            uri::set_path_and_query(&mut req.options, "/r").unwrap();
            assert_eq!(call(&site, req).code, code);
        }
    }

    #[test]
    fn method_without_handler_is_4_05_with_no_body() {
        let site = Site::new()
            .resource("/ro", named("ro"))
            .subtree("/tree", post(|_req| async { Code::CREATED }))
            .resource("/nothing", Resource::new());
        for (method, path) in [
            (Request::put("/ro", "x"), "/ro"),
            (Request::get("/tree/1"), "/tree/1"),
            (Request::get("/nothing"), "/nothing"),
        ] {
            let resp = call(&site, method);
            assert_eq!(resp.code, Code::METHOD_NOT_ALLOWED, "{path}");
            assert!(resp.payload.is_empty());
            assert!(resp.options.is_empty());
        }
    }

    #[test]
    fn shortcuts() {
        let site = Site::new()
            .resource("/g", get(|_req| async { Code::CONTENT }))
            .resource("/p", post(|_req| async { Code::CREATED }))
            .resource("/u", put(|_req| async { Code::CHANGED }))
            .resource("/d", delete(|_req| async { Code::DELETED }));
        assert_eq!(call(&site, Request::get("/g")).code, Code::CONTENT);
        assert_eq!(call(&site, Request::post("/p", "")).code, Code::CREATED);
        assert_eq!(call(&site, Request::put("/u", "")).code, Code::CHANGED);
        assert_eq!(call(&site, Request::delete("/d")).code, Code::DELETED);
        assert_eq!(
            call(&site, Request::get("/d")).code,
            Code::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn failing_handler_is_5_00_with_the_error_text() {
        let site = Site::new().resource(
            "/fail",
            get(|_req| async { Err::<Response, _>("sensor offline") }),
        );
        let resp = call(&site, Request::get("/fail"));
        assert_eq!(resp.code, Code::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.payload, b"sensor offline");
        assert_eq!(resp.content_format(), None);
    }

    #[test]
    fn panicking_handlers_are_5_00_with_no_detail() {
        fn panic_now(_req: ServerRequest) -> future::Ready<Response> {
            panic!("secret detail in the call")
        }
        let site = Site::new()
            .resource("/call", get(panic_now))
            .resource(
                "/body",
                get(|_req| async {
                    if true {
                        panic!("secret detail in the future");
                    }
                    Response::content("unreachable")
                }),
            )
            .resource("/ok", named("ok"));
        for path in ["/call", "/body"] {
            let resp = call(&site, Request::get(path));
            assert_eq!(resp.code, Code::INTERNAL_SERVER_ERROR, "{path}");
            assert!(resp.payload.is_empty());
            assert!(resp.options.is_empty());
        }
        // The site keeps working.
        assert_eq!(text(&call(&site, Request::get("/ok"))), "ok");
        assert_eq!(
            call(&site, Request::get("/call")).code,
            Code::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn panic_in_into_response_is_5_00() {
        struct Bad;
        impl crate::server::IntoResponse for Bad {
            fn into_response(self) -> Response {
                panic!("bad conversion")
            }
        }
        let site = Site::new().resource("/bad", get(|_req| async { Bad }));
        assert_eq!(
            call(&site, Request::get("/bad")).code,
            Code::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn handlers_can_await() {
        let site = Site::new().resource(
            "/slow",
            get(|_req| async {
                async_io::Timer::after(std::time::Duration::from_millis(5)).await;
                Response::content("done")
            }),
        );
        assert_eq!(text(&call(&site, Request::get("/slow"))), "done");
    }

    #[test]
    fn well_known_core_lists_sorted_links_with_attributes() {
        // After RFC 6690 §5 and RFC 7252 §7.2.1.
        let site = Site::new()
            .resource(
                "/sensors/temp",
                named("t").rt("temperature-c").if_("sensor").ct(0).ct(41),
            )
            .resource(
                "/sensors/light",
                named("l").rt("light-lux").if_("sensor").ct(0),
            )
            .resource("/sensors", named("s").ct(40).title("Sensor Index"))
            .resource("/firmware/v2.1", named("f").rt("firmware").sz(262_144))
            .resource(
                "/time",
                named("t")
                    .obs()
                    .attr("x-private", Some("a \"quoted\" word")),
            )
            .resource("/hidden", named("h").hidden());
        assert_eq!(
            discover(&site, ""),
            concat!(
                r#"</firmware/v2.1>;rt="firmware";sz=262144,"#,
                r#"</sensors>;ct=40;title="Sensor Index","#,
                r#"</sensors/light>;rt="light-lux";if="sensor";ct=0,"#,
                r#"</sensors/temp>;rt="temperature-c";if="sensor";ct="0 41","#,
                r#"</time>;obs;x-private="a \"quoted\" word""#,
            )
        );
        // Served all the same.
        assert_eq!(text(&call(&site, Request::get("/hidden"))), "h");
    }

    #[test]
    fn well_known_core_filters() {
        let site = Site::new()
            .resource(
                "/sensors/temp",
                named("t").rt("temperature-c").if_("sensor").ct(0).ct(41),
            )
            .resource(
                "/sensors/light",
                named("l").rt("light-lux").if_("sensor").ct(0),
            )
            .resource(
                "/actuators/led",
                named("a").rt("light-lux actuator").if_("core.a"),
            )
            .resource("/time", named("t").obs().title("Clock"));
        let temp = r#"</sensors/temp>;rt="temperature-c";if="sensor";ct="0 41""#;
        let light = r#"</sensors/light>;rt="light-lux";if="sensor";ct=0"#;
        let led = r#"</actuators/led>;rt="light-lux actuator";if="core.a""#;
        let time = r#"</time>;obs;title="Clock""#;

        // RFC 6690 §5: GET /.well-known/core?rt=light-lux
        assert_eq!(discover(&site, "?rt=light-lux"), format!("{led},{light}"));
        assert_eq!(discover(&site, "?rt=actuator"), led);
        assert_eq!(discover(&site, "?rt=temperature*"), temp);
        assert_eq!(discover(&site, "?href=/sensors/temp"), temp);
        assert_eq!(
            discover(&site, "?href=/sensors*"),
            format!("{light},{temp}")
        );
        assert_eq!(discover(&site, "?href=/sensors"), "");
        assert_eq!(discover(&site, "?if=sensor"), format!("{light},{temp}"));
        assert_eq!(discover(&site, "?if=core*"), led);
        assert_eq!(discover(&site, "?ct=41"), temp);
        assert_eq!(discover(&site, "?ct=0"), format!("{light},{temp}"));
        assert_eq!(discover(&site, "?obs"), time);
        assert_eq!(discover(&site, "?title=Clock"), time);
        assert_eq!(discover(&site, "?rt=nothing"), "");
        assert_eq!(discover(&site, "?sz"), "");
        // Only the first query item filters.
        assert_eq!(discover(&site, "?obs&rt=light-lux"), time);
        assert_eq!(
            discover(&site, "?rt=light-lux&obs"),
            format!("{led},{light}")
        );
    }

    #[test]
    fn well_known_core_methods_and_accept() {
        let site = Site::new().resource("/a", named("a"));
        for req in [
            Request::post("/.well-known/core", "x"),
            Request::delete("/.well-known/core"),
        ] {
            let resp = call(&site, req);
            assert_eq!(resp.code, Code::METHOD_NOT_ALLOWED);
            assert!(resp.payload.is_empty());
        }
        let mut json = Request::get("/.well-known/core");
        json.options.set_uint(OptionNumber::ACCEPT, 50);
        assert_eq!(call(&site, json).code, Code::NOT_ACCEPTABLE);
        let mut link_format = Request::get("/.well-known/core");
        link_format.options.set_uint(OptionNumber::ACCEPT, 40);
        assert_eq!(call(&site, link_format).payload, b"</a>");
    }

    #[test]
    fn well_known_core_of_an_empty_site() {
        assert_eq!(discover(&Site::new(), ""), "");
    }

    #[test]
    fn empty_listing_to_multicast_is_4_04() {
        let site = Site::new().resource("/a", named("a").rt("x"));
        let group = RecvMeta::new("[2001:db8::1]:40000".parse().unwrap())
            .with_local("ff02::fd".parse().unwrap(), Some(1));
        let ask = |query: &str| {
            let req = Request::get(&format!("/.well-known/core{query}")).non_confirmable();
            async_io::block_on(site.handle(ServerRequest::new(req, group)))
        };
        assert_eq!(ask("?rt=y").code, Code::NOT_FOUND);
        let found = ask("?rt=x");
        assert_eq!(
            (found.code, &found.payload[..]),
            (Code::CONTENT, &br#"</a>;rt="x""#[..])
        );
    }

    #[test]
    fn user_registered_well_known_core_wins() {
        let own = Site::new()
            .resource("/a", named("a"))
            .resource("/.well-known/core", named("mine"));
        assert_eq!(text(&call(&own, Request::get("/.well-known/core"))), "mine");

        let tree = Site::new().subtree("/.well-known/core", named("tree"));
        assert_eq!(
            text(&call(&tree, Request::get("/.well-known/core"))),
            "tree"
        );

        // A subtree above it, or a catch-all, does not hide the built-in directory.
        let above = Site::new()
            .subtree("/", named("catch-all"))
            .subtree("/.well-known", named("wk"));
        assert_eq!(discover(&above, ""), "</>,</.well-known>");
        assert_eq!(
            text(&call(&above, Request::get("/.well-known/other"))),
            "wk"
        );
    }

    #[test]
    fn dynamic_listing() {
        let exists = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&exists);
        let site = Site::new()
            .resource(
                "/create1",
                named("c").listed_when(move || flag.load(Ordering::SeqCst)),
            )
            .resource("/static", named("s"));
        assert_eq!(discover(&site, ""), "</static>");
        exists.store(true, Ordering::SeqCst);
        assert_eq!(discover(&site, ""), "</create1>,</static>");
        // Not listed is not unserved.
        exists.store(false, Ordering::SeqCst);
        assert_eq!(text(&call(&site, Request::get("/create1"))), "c");
    }

    #[test]
    fn subtree_links() {
        let created = Arc::new(Mutex::new(Vec::<String>::new()));
        let list = Arc::clone(&created);
        let site = Site::new()
            .subtree(
                "/large-create",
                post(|_req| async { Code::CREATED })
                    .ct(0)
                    .hidden()
                    .links(move || list.lock().unwrap().clone()),
            )
            .resource("/large-create/fixed", named("fixed").title("Fixed"));
        assert_eq!(
            discover(&site, ""),
            r#"</large-create/fixed>;title="Fixed""#
        );
        created.lock().unwrap().extend([
            "2".to_owned(),
            "/large-create/1".to_owned(),
            "fixed".to_owned(),
            "with space".to_owned(),
            "a%2Fb".to_owned(),
        ]);
        assert_eq!(
            discover(&site, ""),
            concat!(
                "</large-create/1>;ct=0,</large-create/2>;ct=0,",
                "</large-create/a%2Fb>;ct=0,",
                r#"</large-create/fixed>;title="Fixed""#,
            )
        );
        assert_eq!(
            discover(&site, "?href=/large-create/1"),
            "</large-create/1>;ct=0"
        );
    }

    #[test]
    fn panicking_listing_closure_is_5_00() {
        let site = Site::new().resource("/p", named("p").listed_when(|| panic!("listing")));
        let resp = call(&site, Request::get("/.well-known/core"));
        assert_eq!(resp.code, Code::INTERNAL_SERVER_ERROR);
        assert!(resp.payload.is_empty());
        assert_eq!(text(&call(&site, Request::get("/p"))), "p");
    }

    #[test]
    fn well_known_core_is_never_listed() {
        let wkc = || vec!["/.well-known/core".to_owned()];
        let own = Site::new()
            .resource("/.well-known/core", named("mine"))
            .subtree("/.well-known", named("wk").links(wkc))
            .resource("/x", named("x").links(wkc));
        let hrefs: Vec<String> = own.links().into_iter().map(|(href, _)| href).collect();
        assert_eq!(hrefs, ["/.well-known", "/x"]);
        let builtin = Site::new().resource("/x", named("x").links(wkc));
        assert_eq!(discover(&builtin, ""), "</x>");
    }

    #[test]
    #[should_panic(expected = "cannot have a query")]
    fn registering_a_query_panics() {
        let _ = Site::new().resource("/a?b", Resource::new());
    }

    #[test]
    #[should_panic(expected = "invalid resource path")]
    fn registering_an_invalid_path_panics() {
        let _ = Site::new().resource("/a b", Resource::new());
    }

    #[test]
    fn debug() {
        let site = Site::new()
            .resource("/a", named("a").rt("x").hidden())
            .subtree("/t", Resource::new().links(Vec::new).listed_when(|| true));
        assert_eq!(
            format!("{site:?}"),
            concat!(
                r#"Site { resources: {"/a": Resource { methods: [GET], link: ";rt=\"x\"", hidden: true }}, "#,
                r#"subtrees: {"/t": Resource { methods: [], link: "", listed_when: Fn, links: Fn }} }"#
            )
        );
    }
}
