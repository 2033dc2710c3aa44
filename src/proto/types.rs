//! What goes into and comes out of an [`Endpoint`](super::Endpoint) at the request/response level:
//! [`Request`], [`Response`], [`Event`] and the IDs that name exchanges.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::message::{uri, Code, ContentFormat, MessageRef, OptionNumber, Options, Token, Type};
use crate::net::RecvMeta;
use crate::proto::Failure;

/// Names a request this endpoint sent, from [`Endpoint::request`](super::Endpoint::request) until its
/// [`Event::Response`] or [`Event::Failed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

/// Names a request this endpoint received, from its [`Event::Request`] until
/// [`Endpoint::respond`](super::Endpoint::respond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingId(pub(crate) u64);

/// Names an OSCORE security context added to an endpoint (RFC 8613; feature `oscore`,
/// `Endpoint::add_oscore_context`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecurityId(pub(crate) u32);

/// A request: method, options, payload, and whether it is sent Confirmable.
///
/// Message ID and token are the endpoint's business and are not part of it.
///
/// ```
/// use coapio::proto::Request;
/// use coapio::message::{Code, OptionNumber};
/// let req = Request::get("/sensors/temp?unit=C");
/// assert_eq!(req.method, Code::GET);
/// assert_eq!(req.path(), "/sensors/temp");
/// assert_eq!(req.query(), "unit=C");
/// assert!(req.confirmable);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method (a code of class 0, not 0.00).
    pub method: Code,
    /// The options, Uri-Path and Uri-Query among them.
    pub options: Options,
    /// The payload.
    pub payload: Vec<u8>,
    /// Whether the request is sent Confirmable (retransmitted until acknowledged) rather than
    /// Non-confirmable.
    pub confirmable: bool,
    /// Gives up on the request (with [`Failure::Timeout`](super::Failure::Timeout)) if no response has come
    /// this long after it was made, whatever the message layer's own timeouts say.
    pub timeout: Option<Duration>,
    /// The length of this request's token, 0–8 bytes, instead of
    /// [`Config::token_length`](super::Config::token_length).
    pub token_length: Option<u8>,
    /// The OSCORE security context that protects the request and verifies its response
    /// (RFC 8613; feature `oscore`), if any. Every message of the request (each block, each
    /// repetition) is protected with a sequence number of its own. In a received request:
    /// the context that verified it (`None`: it came unprotected).
    pub oscore: Option<SecurityId>,
}

impl Request {
    /// A Confirmable request with no options and no payload.
    pub const fn new(method: Code) -> Self {
        Self {
            method,
            options: Options::new(),
            payload: Vec::new(),
            confirmable: true,
            timeout: None,
            token_length: None,
            oscore: None,
        }
    }

    /// A request for `method` on `path_and_query` (a relative reference such as
    /// `/a/b?x=1`; it sets Uri-Path and Uri-Query). An unparsable reference is kept as one
    /// path segment per `/`-separated part, undecoded.
    fn with_reference(method: Code, path_and_query: &str) -> Self {
        let mut req = Self::new(method);
        if uri::set_path_and_query(&mut req.options, path_and_query).is_err() {
            let (path, query) = path_and_query
                .split_once('?')
                .unwrap_or((path_and_query, ""));
            for seg in path.split('/').filter(|s| !s.is_empty()) {
                req.options.push(OptionNumber::URI_PATH, seg);
            }
            for item in query.split('&').filter(|s| !s.is_empty()) {
                req.options.push(OptionNumber::URI_QUERY, item);
            }
        }
        req
    }

    /// For a received request: whether it carries an Echo value this endpoint gave its
    /// sender within `Config::echo_lifetime` (RFC 9175 §2.3), so it was made that recently;
    /// the endpoint removes any other Echo before the application sees the request. Answer
    /// [`Response::echo_challenge`] to a request that must be fresh and is not.
    pub fn is_fresh(&self) -> bool {
        self.options.contains(OptionNumber::ECHO)
    }

    /// A GET of `path_and_query` (`/a/b?x=1`).
    pub fn get(path_and_query: &str) -> Self {
        Self::with_reference(Code::GET, path_and_query)
    }

    /// A POST of `payload` to `path_and_query`.
    pub fn post(path_and_query: &str, payload: impl Into<Vec<u8>>) -> Self {
        Self::with_reference(Code::POST, path_and_query).with_payload(payload)
    }

    /// A PUT of `payload` to `path_and_query`.
    pub fn put(path_and_query: &str, payload: impl Into<Vec<u8>>) -> Self {
        Self::with_reference(Code::PUT, path_and_query).with_payload(payload)
    }

    /// A DELETE of `path_and_query`.
    pub fn delete(path_and_query: &str) -> Self {
        Self::with_reference(Code::DELETE, path_and_query)
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Protects the request with an OSCORE security context (feature `oscore`).
    pub fn with_oscore(mut self, context: SecurityId) -> Self {
        self.oscore = Some(context);
        self
    }

    /// Makes the request Non-confirmable.
    pub fn non_confirmable(mut self) -> Self {
        self.confirmable = false;
        self
    }

    /// Sets the Content-Format option.
    pub fn with_content_format(mut self, format: ContentFormat) -> Self {
        self.options
            .set_uint(OptionNumber::CONTENT_FORMAT, u32::from(format.0));
        self
    }

    /// Gives up on the request after `timeout` without a response.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Asks for the response in blocks of at most `size` bytes (early negotiation, RFC 7959
    /// §2.4): adds Block2 with block number 0. The endpoint still fetches and reassembles
    /// every block; to get one particular block only, set a Block2 option with a later
    /// block number yourself.
    pub fn with_block_size(mut self, size: usize) -> Self {
        let szx = crate::message::BlockValue::szx_for_size(size);
        self.options.set_uint(OptionNumber::BLOCK2, u32::from(szx));
        self
    }

    /// Makes the request an observation (Observe 0, RFC 7641): its responses come as
    /// [`Event::Notification`]s until it is cancelled.
    pub fn observe(mut self) -> Self {
        self.options.set_uint(OptionNumber::OBSERVE, 0);
        self
    }

    /// Uses a token of `length` bytes (at most 8) for this request.
    pub fn with_token_length(mut self, length: u8) -> Self {
        self.token_length = Some(length.min(8));
        self
    }

    /// Whether the request's preconditions fail for the target resource (RFC 7252 §5.10.8):
    /// `current` is the resource's current ETag (an empty slice for a resource without
    /// one), `None` when it does not exist. A handler of PUT, POST, DELETE (or any method it
    /// makes conditional) answers 4.12 Precondition Failed when this is `true`: the core
    /// passes If-Match and If-None-Match through, since only the application knows its
    /// representations.
    ///
    /// ```
    /// use coapio::proto::Request;
    /// use coapio::message::OptionNumber;
    /// let mut put = Request::put("/x", "v2");
    /// put.options.push(OptionNumber::IF_MATCH, b"e1");
    /// assert!(!put.precondition_failed(Some(b"e1")));
    /// assert!(put.precondition_failed(Some(b"e2")));
    /// assert!(put.precondition_failed(None));
    /// let mut create = Request::put("/y", "v1");
    /// create.options.push(OptionNumber::IF_NONE_MATCH, b"");
    /// assert!(!create.precondition_failed(None));
    /// assert!(create.precondition_failed(Some(b"")));
    /// ```
    pub fn precondition_failed(&self, current: Option<&[u8]>) -> bool {
        let mut if_match = self.options.get_all(OptionNumber::IF_MATCH).peekable();
        if if_match.peek().is_some() {
            // An empty If-Match matches any existing representation.
            let matched = current.is_some_and(|etag| if_match.any(|v| v.is_empty() || v == etag));
            if !matched {
                return true;
            }
        }
        self.options.contains(OptionNumber::IF_NONE_MATCH) && current.is_some()
    }

    /// The path from the Uri-Path options, `/` for none.
    pub fn path(&self) -> String {
        uri::path_from_options(self.options.get_all(OptionNumber::URI_PATH))
    }

    /// The query from the Uri-Query options joined by `&`, empty for none.
    pub fn query(&self) -> String {
        uri::query_from_options(self.options.get_all(OptionNumber::URI_QUERY))
    }
}

/// A response: code, options and payload.
///
/// ```
/// use coapio::proto::Response;
/// use coapio::message::{Code, ContentFormat};
/// let resp = Response::content("22.5 C");
/// assert_eq!(resp.code, Code::CONTENT);
/// assert_eq!(resp.content_format(), Some(ContentFormat::TEXT_PLAIN));
/// ```
#[derive(Clone, Debug)]
pub struct Response {
    /// The response code (class 2, 4 or 5).
    pub code: Code,
    /// The options.
    pub options: Options,
    /// The payload.
    pub payload: Vec<u8>,
    /// How a received response arrived (see [`Response::received`]).
    pub(crate) received: Option<Received>,
}

/// Two responses are equal when their code, options and payload are: how they arrived
/// ([`Response::received`]) is not compared.
impl PartialEq for Response {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.options == other.options && self.payload == other.payload
    }
}

impl Eq for Response {}

/// How a received response arrived: from which address, in which message. For a response
/// put together from blocks (RFC 7959), the message of its last block (each block is an
/// exchange of its own, with a token of its own; a notification's later blocks come in
/// ACKs); for one protected with OSCORE, the outer message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The address it came from: the server's (for a request to a multicast group, the one
    /// server that sent this answer).
    pub source: SocketAddr,
    /// The message type: ACK for a piggybacked response, CON or NON for a separate one or a
    /// notification.
    pub ty: Type,
    /// The token of the message (the one this endpoint chose for the exchange it answers).
    pub token: Token,
    /// The message ID of the message.
    pub message_id: u16,
}

impl Received {
    pub(crate) const fn of(source: SocketAddr, m: &MessageRef<'_>) -> Self {
        Self {
            source,
            ty: m.ty,
            token: m.token,
            message_id: m.message_id,
        }
    }
}

impl Response {
    /// A response with `code` and nothing else.
    pub const fn new(code: Code) -> Self {
        Self {
            code,
            options: Options::new(),
            payload: Vec::new(),
            received: None,
        }
    }

    /// For a response that came from the network: where from, and in which message. `None`
    /// for one made here.
    pub const fn received(&self) -> Option<&Received> {
        self.received.as_ref()
    }

    /// A response with what a received message carries.
    pub(crate) fn of_message(source: SocketAddr, m: &MessageRef<'_>) -> Self {
        Self {
            code: m.code,
            options: m.options.to_owned(),
            payload: m.payload.to_vec(),
            received: Some(Received::of(source, m)),
        }
    }

    /// A 2.05 Content response with a text/plain payload.
    pub fn content(text: impl Into<Vec<u8>>) -> Self {
        Self::new(Code::CONTENT)
            .with_payload(text)
            .with_content_format(ContentFormat::TEXT_PLAIN)
    }

    /// The answer that asks the client to prove its request fresh (RFC 9175 §2.3): the
    /// endpoint sends it as 4.01 Unauthorized with a new Echo value, and the client sends its
    /// request again with that value, which makes it [fresh](Request::is_fresh). For
    /// state-changing requests that must not be replayed or delayed:
    ///
    /// ```
    /// use coapio::proto::{Request, Response};
    /// fn open_door(request: &Request) -> Response {
    ///     if !request.is_fresh() {
    ///         return Response::echo_challenge();
    ///     }
    ///     Response::new(coapio::message::Code::CHANGED)
    /// }
    /// # assert_eq!(open_door(&Request::post("/door", "open")).code, coapio::message::Code::UNAUTHORIZED);
    /// ```
    pub fn echo_challenge() -> Self {
        let mut response = Self::new(Code::UNAUTHORIZED);
        // An empty Echo is not a valid one: it marks the answer for the endpoint to fill.
        response.options.push(OptionNumber::ECHO, []);
        response
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the Content-Format option.
    pub fn with_content_format(mut self, format: ContentFormat) -> Self {
        self.options
            .set_uint(OptionNumber::CONTENT_FORMAT, u32::from(format.0));
        self
    }

    /// The Content-Format option, if present.
    pub fn content_format(&self) -> Option<ContentFormat> {
        self.options
            .get_uint(OptionNumber::CONTENT_FORMAT)
            .and_then(|v| u16::try_from(v).ok())
            .map(ContentFormat)
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)
    }
}

/// Something the application has to know about, from [`Endpoint::poll_event`](super::Endpoint::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A request arrived; answer it with [`Endpoint::respond`](super::Endpoint::respond).
    Request {
        /// Names the exchange for `respond`.
        id: IncomingId,
        /// Where it came from and arrived.
        meta: RecvMeta,
        /// The request.
        request: Request,
    },
    /// The response to one of this endpoint's requests.
    Response {
        /// The request it answers.
        id: RequestId,
        /// The response.
        response: Response,
    },
    /// A notification of an observation (a request made with Observe 0, RFC 7641): the
    /// request stays open for more until it is cancelled, fails, or a final
    /// [`Event::Response`] (without Observe) ends it. Notifications older than the last one
    /// delivered are dropped.
    Notification {
        /// The observation's request.
        id: RequestId,
        /// The representation.
        response: Response,
    },
    /// A response to a request sent to a multicast group (RFC 7252 §8.2): one per answering
    /// server; more may follow until [`Event::GroupDone`].
    GroupResponse {
        /// The request.
        id: RequestId,
        /// The server that answered (its unicast address).
        from: SocketAddr,
        /// Its response.
        response: Response,
    },
    /// A request to a multicast group has stopped collecting responses
    /// ([`Config::multicast_timeout`](super::Config::multicast_timeout) or its own timeout passed).
    GroupDone {
        /// The request.
        id: RequestId,
    },
    /// One of this endpoint's requests ended without a response.
    Failed {
        /// The request.
        id: RequestId,
        /// Why.
        error: Failure,
    },
}
