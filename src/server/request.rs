//! [`ServerRequest`]: a received request together with where it came from, as a handler
//! sees it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::endpoint::EndpointRef;
use crate::message::{uri, Code, ContentFormat, OptionNumber, Options};
use crate::net::RecvMeta;
use crate::proto::Request;

/// A request as a handler receives it: the request itself and what is known about the
/// datagram it arrived in.
///
/// The accessors read the options of [`ServerRequest::request`]; the fields stay public for
/// anything they do not cover.
///
/// ```
/// use coapio::message::Code;
/// use coapio::net::RecvMeta;
/// use coapio::proto::Request;
/// use coapio::server::ServerRequest;
///
/// let meta = RecvMeta::new("[::1]:40000".parse().unwrap());
/// let req = ServerRequest::new(Request::get("/sensors/temp?unit=C&raw"), meta);
/// assert_eq!(req.method(), Code::GET);
/// assert_eq!(req.path_segments(), ["sensors", "temp"]);
/// assert_eq!(req.query_value("unit").as_deref(), Some("C"));
/// assert_eq!(req.query_value("raw").as_deref(), Some(""));
/// assert_eq!(req.query_value("other"), None);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerRequest {
    /// The request: method, options and payload.
    pub request: Request,
    /// Where the request came from, and the local address and interface it arrived on
    /// where the transport can tell.
    pub meta: RecvMeta,
    /// The endpoint that received it, for [`ServerRequest::endpoint`].
    pub(crate) endpoint: Option<Arc<EndpointRef>>,
}

/// Two requests are equal when what was received is: the endpoint is not compared.
impl PartialEq for ServerRequest {
    fn eq(&self, other: &Self) -> bool {
        self.request == other.request && self.meta == other.meta
    }
}

impl Eq for ServerRequest {}

impl ServerRequest {
    /// Wraps a received request and its metadata.
    pub const fn new(request: Request, meta: RecvMeta) -> Self {
        Self {
            request,
            meta,
            endpoint: None,
        }
    }

    /// The [`Endpoint`](crate::Endpoint) that received the request, for a handler that
    /// notifies observers, sends requests of its own or shuts the endpoint down. `None` for
    /// a request that no async endpoint delivered (one made with [`ServerRequest::new`],
    /// or served through the C ABI), and once the endpoint is gone.
    ///
    /// Every method of the endpoint may be called from a handler (no lock is held while
    /// handlers run), so "notify the observers after a PUT" needs nothing else:
    ///
    /// ```
    /// use coapio::server::{Resource, Site};
    /// use coapio::{Code, Response};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let value = Arc::new(Mutex::new(b"21.5".to_vec()));
    /// let (get_value, put_value) = (value.clone(), value);
    /// let site = Site::new().resource(
    ///     "/setpoint",
    ///     Resource::new()
    ///         .get(move |_req| {
    ///             let now = get_value.lock().unwrap().clone();
    ///             async move { Response::content(now) }
    ///         })
    ///         .put(move |req| {
    ///             *put_value.lock().unwrap() = req.payload().to_vec();
    ///             if let Some(endpoint) = req.endpoint() {
    ///                 endpoint.notify("/setpoint");
    ///             }
    ///             async { Code::CHANGED }
    ///         })
    ///         .obs(),
    /// );
    /// # let _ = site;
    /// ```
    pub fn endpoint(&self) -> Option<crate::Endpoint> {
        self.endpoint.as_ref()?.upgrade()
    }

    /// Returns the method (`GET`, `POST`, …).
    pub const fn method(&self) -> Code {
        self.request.method
    }

    /// Returns the path from the Uri-Path options, percent-encoded where a segment needs it
    /// (a `/` inside a segment is written `%2F`), or `/` when there are none.
    pub fn path(&self) -> String {
        self.request.path()
    }

    /// Returns the decoded path segments, one per Uri-Path option (bytes that are not UTF-8
    /// are replaced by U+FFFD). The root path has no segments; a path ending in `/` ends in
    /// an empty segment.
    pub fn path_segments(&self) -> Vec<String> {
        let mut segments: Vec<String> = self
            .request
            .options
            .get_all(OptionNumber::URI_PATH)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if segments.len() == 1 && segments[0].is_empty() {
            segments.clear();
        }
        segments
    }

    /// Returns the decoded query items, one per Uri-Query option (bytes that are not UTF-8
    /// are replaced by U+FFFD).
    pub fn query(&self) -> Vec<String> {
        self.request
            .options
            .get_all(OptionNumber::URI_QUERY)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// Returns the value of the first query item `name=value`, or the empty string for a
    /// first matching item that is just `name`; `None` when no item has that name.
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.request
            .options
            .get_all(OptionNumber::URI_QUERY)
            .find_map(|item| {
                let rest = item.strip_prefix(name.as_bytes())?;
                match rest {
                    [] => Some(String::new()),
                    [b'=', value @ ..] => Some(String::from_utf8_lossy(value).into_owned()),
                    _ => None,
                }
            })
    }

    /// Returns the payload (empty when there is none).
    pub fn payload(&self) -> &[u8] {
        &self.request.payload
    }

    /// Returns all options of the request.
    pub const fn options(&self) -> &Options {
        &self.request.options
    }

    /// Returns the address the request came from.
    pub const fn remote(&self) -> SocketAddr {
        self.meta.remote
    }

    /// Returns the Content-Format option: what the payload is.
    pub fn content_format(&self) -> Option<ContentFormat> {
        uint_format(&self.request.options, OptionNumber::CONTENT_FORMAT)
    }

    /// Returns the Accept option: the format the client wants the response in.
    pub fn accept(&self) -> Option<ContentFormat> {
        uint_format(&self.request.options, OptionNumber::ACCEPT)
    }

    /// Returns whether the request was sent Confirmable.
    pub const fn is_confirmable(&self) -> bool {
        self.request.confirmable
    }
}

fn uint_format(options: &Options, number: OptionNumber) -> Option<ContentFormat> {
    options
        .get_uint(number)
        .and_then(|v| u16::try_from(v).ok())
        .map(ContentFormat)
}

/// Builds the path `/a/b` from decoded segments, as [`uri::path_from_options`] does.
pub(crate) fn path_of(segments: &[Vec<u8>]) -> String {
    uri::path_from_options(segments.iter().map(Vec::as_slice))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(req: Request) -> ServerRequest {
        ServerRequest::new(req, RecvMeta::new("192.0.2.1:5683".parse().unwrap()))
    }

    #[test]
    fn accessors() {
        let req = request(
            Request::post("/a%2Fb/c?x=1&y=&z", "hi")
                .with_content_format(ContentFormat::JSON)
                .non_confirmable(),
        );
        assert_eq!(req.method(), Code::POST);
        assert_eq!(req.path(), "/a%2Fb/c");
        assert_eq!(req.path_segments(), ["a/b", "c"]);
        assert_eq!(req.query(), ["x=1", "y=", "z"]);
        assert_eq!(req.query_value("x").as_deref(), Some("1"));
        assert_eq!(req.query_value("y").as_deref(), Some(""));
        assert_eq!(req.query_value("z").as_deref(), Some(""));
        assert_eq!(req.query_value("w"), None);
        assert_eq!(req.payload(), b"hi");
        assert_eq!(req.content_format(), Some(ContentFormat::JSON));
        assert_eq!(req.accept(), None);
        assert!(!req.is_confirmable());
        assert_eq!(req.remote(), "192.0.2.1:5683".parse().unwrap());
        assert_eq!(req.options().len(), 6);
    }

    #[test]
    fn query_value_takes_the_first_item_with_that_name() {
        let req = request(Request::get("/?xx=0&x=1&x=2"));
        assert_eq!(req.query_value("x").as_deref(), Some("1"));
        assert_eq!(req.query_value("xx").as_deref(), Some("0"));
    }

    #[test]
    fn root_and_trailing_slash() {
        let mut root = Request::new(Code::GET);
        assert!(request(root.clone()).path_segments().is_empty());
        root.options.push(OptionNumber::URI_PATH, "");
        let root = request(root);
        assert!(root.path_segments().is_empty());
        assert_eq!(root.path(), "/");

        let trailing = request(Request::get("/a/"));
        assert_eq!(trailing.path_segments(), ["a", ""]);
    }

    #[test]
    fn accept() {
        let mut req = Request::get("/");
        req.options.set_uint(OptionNumber::ACCEPT, 40);
        assert_eq!(request(req).accept(), Some(ContentFormat::LINK_FORMAT));
    }
}
