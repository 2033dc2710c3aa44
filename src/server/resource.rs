//! [`Resource`]: the handlers of one path, one per method, and how the resource is described
//! in `/.well-known/core`; [`IntoResponse`], what a handler may return.

use std::collections::BTreeMap;
use std::fmt;
use std::future::{self, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt as _;

use super::link_format::{self, Attrs};
use super::ServerRequest;
use crate::message::Code;
use crate::proto::Response;

/// The future [`Site::handle`](super::Site::handle) returns.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// A stored handler: called with the request and what to name it by if it panics (method
/// and resource path), gives the response's future.
type Handler = Arc<dyn Fn(ServerRequest, (Code, Arc<str>)) -> ResponseFuture + Send + Sync>;

/// Converts what a handler returns into the response that is sent.
///
/// Implemented for [`Response`]; for a bare [`Code`] (an empty response with that code); and
/// for `Result<R, E>` where `R` is itself `IntoResponse` and `E` is displayable: an error
/// becomes `5.00 Internal Server Error` with the error's text as diagnostic payload
/// ([RFC 7252 §5.5.2](https://www.rfc-editor.org/rfc/rfc7252#section-5.5.2): UTF-8 text
/// and no Content-Format option).
///
/// ```
/// use coapio::message::Code;
/// use coapio::proto::Response;
/// use coapio::server::IntoResponse;
///
/// assert_eq!(Code::DELETED.into_response(), Response::new(Code::DELETED));
/// let failed: Result<Response, String> = Err("disk full".into());
/// let resp = failed.into_response();
/// assert_eq!(resp.code, Code::INTERNAL_SERVER_ERROR);
/// assert_eq!(resp.payload, b"disk full");
/// assert_eq!(resp.content_format(), None);
/// ```
pub trait IntoResponse {
    /// Converts `self` into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for Code {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl<R: IntoResponse, E: fmt::Display> IntoResponse for Result<R, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => Response::new(Code::INTERNAL_SERVER_ERROR).with_payload(e.to_string()),
        }
    }
}

/// The handlers of one path, one per method, and the attributes that describe the resource
/// in `/.well-known/core` ([RFC 6690 §3](https://www.rfc-editor.org/rfc/rfc6690#section-3)).
///
/// A resource is built with chained calls and registered on a [`Site`](super::Site). A method
/// without a handler is answered with `4.05 Method Not Allowed`. Cloning is cheap: the
/// handlers are shared.
///
/// ```
/// use coapio::message::{Code, ContentFormat};
/// use coapio::proto::Response;
/// use coapio::server::Resource;
///
/// let temperature = Resource::new()
///     .get(|_req| async { Response::content("22.5") })
///     .put(|_req| async { Code::CHANGED })
///     .rt("temperature-c")
///     .if_("sensor")
///     .ct(ContentFormat::TEXT_PLAIN.0)
///     .obs();
/// assert_eq!(format!("{temperature:?}"),
///     r#"Resource { methods: [GET, PUT], link: ";rt=\"temperature-c\";if=\"sensor\";ct=0;obs" }"#);
/// ```
#[derive(Clone, Default)]
pub struct Resource {
    handlers: BTreeMap<Code, Handler>,
    pub(crate) attrs: Attrs,
    hidden: bool,
    listed_when: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    pub(crate) links: Option<Arc<dyn Fn() -> Vec<String> + Send + Sync>>,
    /// The path it is served at, once a site has it (for log messages).
    pub(crate) path: Arc<str>,
}

impl Resource {
    /// Creates a resource with no handlers and no attributes; it is listed in
    /// `/.well-known/core`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the handler for requests with method `code`, replacing an earlier one.
    ///
    /// The handler is called with the request and returns a future; what the future gives
    /// is turned into the response with [`IntoResponse`]. If the handler, its future or
    /// that conversion panics, the response is `5.00 Internal Server Error` with no
    /// payload, and the panic is logged; it never reaches the caller of
    /// [`Site::handle`](super::Site::handle).
    pub fn method<F, Fut, R>(mut self, code: Code, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        // One box per request: the handler's future, its conversion and the catching of a
        // panic in either.
        let handler: Handler = Arc::new(move |req, (method, path)| {
            let fut = handler(req);
            Box::pin(async move {
                let answer = AssertUnwindSafe(async move { fut.await.into_response() });
                answer.catch_unwind().await.unwrap_or_else(|_| {
                    log::error!("coapio: the {method} handler of {path} panicked");
                    Response::new(Code::INTERNAL_SERVER_ERROR)
                })
            })
        });
        self.handlers.insert(code, handler);
        self
    }

    /// Sets the `GET` handler.
    pub fn get<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::GET, handler)
    }

    /// Sets the `POST` handler.
    pub fn post<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::POST, handler)
    }

    /// Sets the `PUT` handler.
    pub fn put<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::PUT, handler)
    }

    /// Sets the `DELETE` handler.
    pub fn delete<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::DELETE, handler)
    }

    /// Sets the `FETCH` handler ([RFC 8132](https://www.rfc-editor.org/rfc/rfc8132)).
    pub fn fetch<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::FETCH, handler)
    }

    /// Sets the `PATCH` handler ([RFC 8132](https://www.rfc-editor.org/rfc/rfc8132)).
    pub fn patch<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::PATCH, handler)
    }

    /// Sets the `iPATCH` handler ([RFC 8132](https://www.rfc-editor.org/rfc/rfc8132)).
    pub fn ipatch<F, Fut, R>(self, handler: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.method(Code::IPATCH, handler)
    }

    /// Adds resource types to the `rt` attribute, a space-separated list
    /// ([RFC 6690 §3.1](https://www.rfc-editor.org/rfc/rfc6690#section-3.1)); `v` may hold
    /// several, separated by spaces, and repeated calls add more.
    pub fn rt(mut self, v: &str) -> Self {
        self.attrs.add_words("rt", v);
        self
    }

    /// Adds interface descriptions to the `if` attribute, a space-separated list
    /// ([RFC 6690 §3.2](https://www.rfc-editor.org/rfc/rfc6690#section-3.2)); repeated
    /// calls add more.
    pub fn if_(mut self, v: &str) -> Self {
        self.attrs.add_words("if", v);
        self
    }

    /// Adds a Content-Format number to the `ct` attribute
    /// ([RFC 7252 §7.2.1](https://www.rfc-editor.org/rfc/rfc7252#section-7.2.1)): one
    /// format is written `ct=0`, several `ct="0 41"`.
    pub fn ct(mut self, v: u16) -> Self {
        self.attrs.add_words("ct", &v.to_string());
        self
    }

    /// Sets the `sz` attribute, the estimated size of the representation in bytes
    /// ([RFC 6690 §3.3](https://www.rfc-editor.org/rfc/rfc6690#section-3.3)).
    pub fn sz(mut self, n: usize) -> Self {
        self.attrs.set("sz", Some(n.to_string()));
        self
    }

    /// Sets the `title` attribute, a human-readable label.
    pub fn title(mut self, t: &str) -> Self {
        self.attrs.set("title", Some(t.to_owned()));
        self
    }

    /// Sets the `obs` flag, which says the resource can be observed
    /// ([RFC 7641 §6](https://www.rfc-editor.org/rfc/rfc7641#section-6)).
    ///
    /// A GET that registers (Observe 0) and is answered with a success then makes the client
    /// an observer: the answer gets an Observe option, and `Endpoint::notify` with the
    /// resource's path sends every observer the current representation (the handler runs
    /// again for each).
    pub fn obs(self) -> Self {
        self.attr("obs", None)
    }

    /// Whether the resource says it can be observed (the `obs` flag).
    pub fn is_observable(&self) -> bool {
        self.attrs.has("obs")
    }

    /// Sets any link attribute: `;name` for `None`, `;name="value"` (or `;name=42` for a
    /// number) otherwise. An earlier value of `name` is replaced, also one set by
    /// [`Resource::rt`], [`Resource::ct`] and the others.
    ///
    /// # Panics
    ///
    /// Panics if `name` is not a link parameter name (RFC 5988 `parmname`: letters, digits
    /// and ``!#$&+-.^_`|~``), since the link-format document would be malformed.
    pub fn attr(mut self, name: &str, value: Option<&str>) -> Self {
        assert!(
            link_format::is_parmname(name),
            "coapio: {name:?} is not a valid link attribute name \
             (use letters, digits and !#$&+-.^_`|~)"
        );
        self.attrs.set(name, value.map(str::to_owned));
        self
    }

    /// Whether `name` can be given to [`Resource::attr`] (RFC 5988 `parmname`).
    pub fn is_attr_name(name: &str) -> bool {
        link_format::is_parmname(name)
    }

    /// Leaves the resource out of `/.well-known/core`. It is still served.
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// Lists the resource in `/.well-known/core` only while `f` returns `true`; `f` is
    /// called for every discovery request.
    ///
    /// The resource is served either way: a handler of a resource that may not exist
    /// answers `4.04 Not Found` itself.
    pub fn listed_when(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.listed_when = Some(Arc::new(f));
        self
    }

    /// Lists more paths in `/.well-known/core`, computed for every discovery request:
    /// typically the children a [`Site::subtree`](super::Site::subtree) resource has created, such as
    /// `/large-create/1`.
    ///
    /// A path that starts with `/` is taken as it is; any other is relative to the
    /// resource's own path (`"1"` under `/large-create` is `/large-create/1`). Each is
    /// listed with this resource's attributes, whether or not the resource itself is
    /// [hidden](Resource::hidden). Paths that are not valid path references are skipped.
    pub fn links(mut self, f: impl Fn() -> Vec<String> + Send + Sync + 'static) -> Self {
        self.links = Some(Arc::new(f));
        self
    }

    /// Whether the resource's own link is in `/.well-known/core` now.
    pub(crate) fn is_listed(&self) -> bool {
        !self.hidden && self.listed_when.as_ref().is_none_or(|f| f())
    }

    /// Answers `request` with the handler for its method, `4.05` without one, `5.00` when
    /// the handler panics.
    pub(crate) fn dispatch(&self, request: ServerRequest) -> ResponseFuture {
        let Some(handler) = self.handlers.get(&request.method()) else {
            return Box::pin(future::ready(Response::new(Code::METHOD_NOT_ALLOWED)));
        };
        let method = request.method();
        let name = (method, self.path.clone());
        match panic::catch_unwind(AssertUnwindSafe(|| handler(request, name))) {
            Ok(fut) => fut,
            Err(_) => {
                log::error!("coapio: the {method} handler of {} panicked", self.path);
                Box::pin(future::ready(Response::new(Code::INTERNAL_SERVER_ERROR)))
            }
        }
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Resource");
        d.field("methods", &Methods(&self.handlers));
        d.field("link", &link_format::debug_attrs(&self.attrs));
        if self.hidden {
            d.field("hidden", &true);
        }
        if self.listed_when.is_some() {
            d.field("listed_when", &Opaque);
        }
        if self.links.is_some() {
            d.field("links", &Opaque);
        }
        d.finish()
    }
}

/// Writes the methods of a handler map as `[GET, PUT]`.
struct Methods<'a>(&'a BTreeMap<Code, Handler>);

impl fmt::Debug for Methods<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|&code| MethodName(code)))
            .finish()
    }
}

/// Writes a method by its name (`GET`), or its number (`0.09`) when it has none.
struct MethodName(Code);

impl fmt::Debug for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Stands for a stored closure in `Debug` output.
struct Opaque;

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fn")
    }
}

/// Creates a resource with a `GET` handler: `Resource::new().get(handler)`.
///
/// ```
/// use coapio::proto::Response;
/// use coapio::server::{get, Site};
/// let site = Site::new().resource("/hello", get(|_req| async { Response::content("Hello") }));
/// ```
pub fn get<F, Fut, R>(handler: F) -> Resource
where
    F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Resource::new().get(handler)
}

/// Creates a resource with a `POST` handler: `Resource::new().post(handler)`.
pub fn post<F, Fut, R>(handler: F) -> Resource
where
    F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Resource::new().post(handler)
}

/// Creates a resource with a `PUT` handler: `Resource::new().put(handler)`.
pub fn put<F, Fut, R>(handler: F) -> Resource
where
    F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Resource::new().put(handler)
}

/// Creates a resource with a `DELETE` handler: `Resource::new().delete(handler)`.
pub fn delete<F, Fut, R>(handler: F) -> Resource
where
    F: Fn(ServerRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Resource::new().delete(handler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::RecvMeta;
    use crate::proto::Request;

    fn dispatch(resource: &Resource, request: Request) -> Response {
        let meta = RecvMeta::new("[::1]:1".parse().unwrap());
        async_io::block_on(resource.dispatch(ServerRequest::new(request, meta)))
    }

    #[test]
    fn into_response() {
        let resp = Response::content("x");
        assert_eq!(resp.clone().into_response(), resp);
        assert_eq!(Code::VALID.into_response(), Response::new(Code::VALID));
        assert_eq!(
            Ok::<_, String>(Code::CHANGED).into_response().code,
            Code::CHANGED
        );
        let err = Err::<Code, _>(std::io::Error::other("no space left")).into_response();
        assert_eq!(err.code, Code::INTERNAL_SERVER_ERROR);
        assert_eq!(err.payload, b"no space left");
        assert!(err.content_format().is_none());
    }

    #[test]
    fn dispatch_by_method() {
        let r =
            get(|_req| async { Code::CONTENT }).method(Code::POST, |_req| async { Code::CREATED });
        assert_eq!(dispatch(&r, Request::get("/")).code, Code::CONTENT);
        assert_eq!(dispatch(&r, Request::post("/", "")).code, Code::CREATED);
        let not_allowed = dispatch(&r, Request::put("/", "x"));
        assert_eq!(not_allowed, Response::new(Code::METHOD_NOT_ALLOWED));
        // A later handler for the same method replaces the earlier one.
        let r = r.get(|_req| async { Code::VALID });
        assert_eq!(dispatch(&r, Request::get("/")).code, Code::VALID);
    }

    #[test]
    fn clones_share_handlers() {
        let r = get(|_req| async { Code::CONTENT }).rt("a");
        let c = r.clone().rt("b");
        assert_eq!(dispatch(&c, Request::get("/")).code, Code::CONTENT);
        assert_eq!(r.attrs.get("rt"), Some("a"));
        assert_eq!(c.attrs.get("rt"), Some("a b"));
    }

    #[test]
    fn listing() {
        assert!(Resource::new().is_listed());
        assert!(!Resource::new().hidden().is_listed());
        assert!(!Resource::new().listed_when(|| false).is_listed());
        assert!(Resource::new().listed_when(|| true).is_listed());
        assert!(!Resource::new().listed_when(|| true).hidden().is_listed());
    }

    #[test]
    fn attributes() {
        let r = Resource::new()
            .rt("a b")
            .rt("b c")
            .if_("sensor")
            .ct(0)
            .ct(41)
            .ct(0)
            .sz(1280)
            .title("T")
            .title("Title")
            .obs()
            .attr("anchor", Some("/x"))
            .attr("exp", None);
        assert_eq!(
            link_format::debug_attrs(&r.attrs),
            r#";rt="a b c";if="sensor";ct="0 41";sz=1280;title="Title";obs;anchor="/x";exp"#
        );
        let r = r.attr("ct", Some("50")).attr("rt", None);
        assert_eq!(r.attrs.get("ct"), Some("50"));
        assert_eq!(r.attrs.get("rt"), None);
    }

    #[test]
    #[should_panic(expected = "not a valid link attribute name")]
    fn invalid_attribute_name_panics() {
        let _ = Resource::new().attr("a b", None);
    }

    #[test]
    fn debug() {
        let r = Resource::new()
            .method(Code(0x09), |_req| async { Code::CONTENT })
            .ipatch(|_req| async { Code::CHANGED });
        assert_eq!(
            format!("{r:?}"),
            r#"Resource { methods: [iPATCH, 0.09], link: "" }"#
        );
    }
}
