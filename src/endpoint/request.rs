//! [`RequestBuilder`]: a request being set up — timeout, message type, options, payload —
//! before it is sent by awaiting it, or turned into a [`ResponseFuture`] or an
//! [`Observation`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::futures::{FutState, Kind, Observation, ResponseFuture, Target};
use super::handle::Endpoint;
use crate::message::{Code, ContentFormat, OptionNumber};
use crate::proto::Request;

/// A request to a URI, set up with chained calls; a future that sends it when first polled
/// and gives its response (as [`ResponseFuture`] does, which [`send`](Self::send) turns it
/// into). It owns what it needs, so it can be spawned. Settings made after the first poll
/// have no effect.
///
/// Made by [`Endpoint::get`], [`put`](Endpoint::put), [`post`](Endpoint::post),
/// [`delete`](Endpoint::delete) and [`method`](Endpoint::method). The URI is the one place
/// for the host, port, path and query; the builder sets everything else.
///
/// ```
/// # async_io::block_on(async {
/// use std::time::Duration;
/// use coapio::{ContentFormat, Endpoint, OptionNumber, Response};
/// use coapio::server::{put, Site};
///
/// let site = Site::new().resource("/config", put(|req| async move {
///     assert_eq!(req.content_format(), Some(ContentFormat::JSON));
///     Response::new(coapio::Code::CHANGED)
/// }));
/// let (server, driver) = Endpoint::server("[::1]:0", site)?;
/// let uri = format!("coap://[::1]:{}/config", server.local_addr()?.port());
/// std::thread::spawn(move || async_io::block_on(driver));
/// let (client, _) = Endpoint::client()?;
/// let response = client
///     .put(&uri, r#"{"interval":5}"#)
///     .content_format(ContentFormat::JSON)
///     .option(OptionNumber::IF_MATCH, b"")
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!(response.code, coapio::Code::CHANGED);
/// server.shutdown();
/// # Ok::<_, coapio::Error>(()) }).unwrap();
/// ```
#[must_use = "futures do nothing unless polled: a request is sent only when awaited"]
#[derive(Debug)]
pub struct RequestBuilder {
    inner: ResponseFuture,
}

impl RequestBuilder {
    pub(super) fn new(endpoint: &Endpoint, method: Code, uri: &str) -> Self {
        Self {
            inner: ResponseFuture::unsent(
                endpoint,
                Target::Uri(uri.to_owned()),
                Request::new(method),
                Kind::Unicast,
            ),
        }
    }

    /// Applies `f` to the request while it is not sent.
    fn with(mut self, f: impl FnOnce(&mut Request)) -> Self {
        if let FutState::Unsent(_, unsent) = &mut self.inner.state {
            f(&mut unsent.request);
        }
        self
    }

    /// Gives up if no response has come this long after the request was sent (as
    /// [`Error::Timeout`](crate::Error::Timeout)), whatever the message layer's own
    /// retransmission timeouts are; instead of the endpoint's
    /// [`request_timeout`](crate::Builder::request_timeout).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|r| r.timeout = Some(timeout))
    }

    /// Sends the request Non-confirmable: once, without retransmissions.
    pub fn non_confirmable(self) -> Self {
        self.with(|r| r.confirmable = false)
    }

    /// Adds an option (repeatable options may be added several times). Uri-Host, Uri-Port,
    /// Uri-Path and Uri-Query come from the URI: adding them makes the request fail with
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest).
    pub fn option(self, number: OptionNumber, value: impl AsRef<[u8]>) -> Self {
        self.with(|r| r.options.push(number, value))
    }

    /// Adds an option with an unsigned integer value, in its shortest encoding.
    pub fn option_uint(self, number: OptionNumber, value: u32) -> Self {
        self.with(|r| r.options.push_uint(number, value))
    }

    /// Sets the payload.
    pub fn payload(self, payload: impl Into<Vec<u8>>) -> Self {
        self.with(|r| r.payload = payload.into())
    }

    /// Sets the Content-Format option: what the payload is.
    pub fn content_format(self, format: ContentFormat) -> Self {
        self.with(|r| {
            r.options
                .set_uint(OptionNumber::CONTENT_FORMAT, format.0.into())
        })
    }

    /// Sets the Accept option: the format the response should be in.
    pub fn accept(self, format: ContentFormat) -> Self {
        self.with(|r| r.options.set_uint(OptionNumber::ACCEPT, format.0.into()))
    }

    /// Asks for the response's body in blocks of at most `size` bytes (16 to 1024, a power
    /// of two; a Block2 option in the request, RFC 7959 §2.4), instead of the server's
    /// choice. Uploads use `Config::block_size`.
    pub fn block_size(self, size: usize) -> Self {
        let szx = crate::message::BlockValue::szx_for_size(size);
        self.with(|r| r.options.set_uint(OptionNumber::BLOCK2, u32::from(szx)))
    }

    /// Protects the request with this OSCORE context (feature `oscore`) instead of the one
    /// whose pattern matches the URI.
    pub fn oscore(self, context: crate::proto::SecurityId) -> Self {
        self.with(|r| r.oscore = Some(context))
    }

    /// The request as it stands (its method, options and payload; the URI's options are
    /// added when it is sent), or `None` once it has been sent.
    pub fn request(&self) -> Option<&Request> {
        match &self.inner.state {
            FutState::Unsent(_, unsent) => Some(&unsent.request),
            _ => None,
        }
    }

    /// The future of the response, for code that names its type. Nothing is sent before it
    /// is first polled.
    pub fn send(self) -> ResponseFuture {
        self.inner
    }

    /// Observes the resource (the request gets Observe 0; RFC 7641): see
    /// [`Endpoint::observe`].
    pub fn observe(mut self) -> Observation {
        if let FutState::Unsent(_, unsent) = &mut self.inner.state {
            unsent.kind = Kind::Observe;
            unsent.request =
                std::mem::replace(&mut unsent.request, Request::new(Code::GET)).observe();
        }
        Observation::new(self.inner)
    }
}

impl Future for RequestBuilder {
    type Output = <ResponseFuture as Future>::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}
