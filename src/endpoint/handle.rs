//! The [`Endpoint`] handle: sending requests, notifying observers, shutting down.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::time::Instant;

use std::time::Duration;

use super::builder::Builder;
use super::driver::Driver;
use super::futures::{
    Begun, GroupResponses, Kind, Observation, Resolving, ResponseFuture, Target, Unsent,
};
use super::request::RequestBuilder;
use super::shared::{HandleToken, Shared, Slot};
use crate::error::Error;
use crate::message::uri::{Host, Uri};
use crate::message::{Code, OptionNumber};
use crate::proto::{Request, RequestId};
use crate::server::Site;

/// A handle for sending requests and notifying observers; cheap to clone.
///
/// Requests are futures ([`ResponseFuture`]); dropping one cancels the exchange. A server's
/// [`Driver`] must run on an executor; a client's requests drive the endpoint themselves
/// while no driver runs. Every method may be called from anywhere, handlers and their
/// futures included: none blocks on the endpoint's work.
#[derive(Clone)]
pub struct Endpoint {
    pub(super) shared: Arc<Shared>,
    pub(super) _handle: Arc<HandleToken>,
    pub(super) local: Option<SocketAddr>,
    /// The remotes reached over DTLS, when the endpoint has DTLS (`Builder::dtls`).
    #[cfg(feature = "dtls")]
    pub(super) secure: Option<crate::dtls::SecureRemotes>,
    /// The URI patterns of OSCORE contexts (`Builder::oscore`), in the order added.
    pub(super) oscore: Arc<[(String, crate::proto::SecurityId)]>,
    /// `Builder::request_timeout`: for requests without a timeout of their own.
    pub(super) timeout: Option<Duration>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// An endpoint's handle that does not keep it alive: what its handlers reach it by
/// ([`ServerRequest::endpoint`](crate::server::ServerRequest::endpoint)). The engine holds
/// it, and a strong handle there would make a cycle.
pub(crate) struct EndpointRef {
    shared: Weak<Shared>,
    local: Option<SocketAddr>,
    #[cfg(feature = "dtls")]
    secure: Option<crate::dtls::SecureRemotes>,
    oscore: Arc<[(String, crate::proto::SecurityId)]>,
    timeout: Option<Duration>,
}

impl EndpointRef {
    /// The endpoint, while it exists. Its handle token is its own: the driver does not
    /// count handles that handlers hold, so that an application that drops its handles and
    /// the driver ends the endpoint even while a handler keeps one (see `Driver`'s drop).
    pub(crate) fn upgrade(&self) -> Option<Endpoint> {
        let shared = self.shared.upgrade()?;
        Some(Endpoint {
            shared,
            _handle: Arc::new(HandleToken {
                shared: self.shared.clone(),
                user: false,
            }),
            local: self.local,
            #[cfg(feature = "dtls")]
            secure: self.secure.clone(),
            oscore: self.oscore.clone(),
            timeout: self.timeout,
        })
    }
}

impl fmt::Debug for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointRef")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A handle that does not keep the endpoint alive.
    pub(super) fn downgrade(&self) -> EndpointRef {
        EndpointRef {
            shared: Arc::downgrade(&self.shared),
            local: self.local,
            #[cfg(feature = "dtls")]
            secure: self.secure.clone(),
            oscore: self.oscore.clone(),
            timeout: self.timeout,
        }
    }

    /// A client on the platform's default transport (udp6 on Linux), bound to an ephemeral
    /// port. Run the returned driver on any executor.
    ///
    /// # Errors
    ///
    /// The transport's errors of binding.
    pub fn client() -> Result<(Self, Driver), Error> {
        Builder::new().build()
    }

    /// A server for `site` bound to `bind` (`"[::]:5683"`, `"127.0.0.1:0"`, …), which is
    /// also a client. Run the returned driver on any executor.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind [`io::ErrorKind::InvalidInput`] when `bind` is not a socket
    /// address; [`Error::Bind`] when it cannot be bound.
    pub fn server(bind: &str, site: Site) -> Result<(Self, Driver), Error> {
        let addr: SocketAddr = bind.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{bind:?} is not a socket address: {e}"),
            )
        })?;
        Builder::new().bind(addr).site(site).build()
    }

    /// A [`Builder`] for other transports and configurations.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The local address of the transport.
    ///
    /// # Errors
    ///
    /// For transports without one address of their own (simple6).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this transport has no single local address",
            )
        })
    }

    /// Sends `request` to the resource named by `uri` (`coap://host:port/path?query`): the
    /// URI gives the destination and the Uri-* options, `request` the method, other options,
    /// payload and message type. The path and query have one place, the URI: a `request`
    /// that carries Uri-Host, Uri-Port, Uri-Path or Uri-Query options fails with
    /// [`Error::InvalidRequest`] (use [`send`](Self::send) to set them yourself).
    ///
    /// Nothing happens until the future is first polled. A host name is then resolved on a
    /// thread of the `blocking` pool, never on the executor's thread (each request
    /// resolves anew: the system's resolver, or nscd/systemd-resolved, caches); IP literals
    /// need no resolution. A request to a URI that matches the pattern of an OSCORE context
    /// ([`Builder::oscore`]) is protected with it, unless it names a context itself. The
    /// endpoint's [`Builder::request_timeout`] applies unless the request has its own.
    ///
    /// [`get`](Self::get) and its siblings build the request for you.
    pub fn request(&self, uri: &str, request: Request) -> ResponseFuture {
        ResponseFuture::unsent(self, Target::Uri(uri.into()), request, Kind::Unicast)
    }

    /// Sends `request` (with its Uri-* options as they are) to `remote`, when first polled.
    pub fn send(&self, remote: SocketAddr, request: Request) -> ResponseFuture {
        ResponseFuture::unsent(self, Target::Addr(remote), request, Kind::Unicast)
    }

    /// Starts a request: sends it at once to an address, or hands out the resolution of
    /// its host name to run first.
    pub(super) fn begin(&self, unsent: Unsent) -> Begun {
        let Unsent {
            target,
            request,
            kind,
        } = unsent;
        let uri = match target {
            Target::Addr(remote) => {
                return Begun::from(self.begin_at(remote, None, request, kind));
            }
            Target::Uri(uri) => uri,
        };
        let parsed = match Uri::parse(&uri) {
            Ok(parsed) => parsed,
            Err(source) => return Begun::Failed(Error::InvalidUri { uri, source }),
        };
        match destination(&parsed) {
            Ok(Destination::Addr(remote)) => {
                Begun::from(self.begin_at(remote, Some((&uri, &parsed)), request, kind))
            }
            Ok(Destination::Name(name, port)) => {
                let lookup = blocking::unblock(move || lookup(&name, port));
                Begun::Resolving(Box::new(Resolving {
                    lookup,
                    uri,
                    parsed,
                    request,
                    kind,
                }))
            }
            Err(e) => Begun::Failed(e),
        }
    }

    /// Sends a request whose destination is known (`uri`: the URI it was made for).
    pub(super) fn begin_at(
        &self,
        remote: SocketAddr,
        uri: Option<(&str, &Uri)>,
        mut request: Request,
        kind: Kind,
    ) -> Result<(RequestId, SocketAddr), Error> {
        let group = remote.ip().is_multicast();
        let named = || uri.map_or_else(|| remote.to_string(), |(text, _)| text.to_owned());
        match kind {
            Kind::Observe if group => {
                return Err(Error::InvalidRequest(format!(
                    "{}: a multicast group cannot be observed; ask it with multicast()",
                    named()
                )))
            }
            Kind::Group if !group => {
                return Err(Error::InvalidRequest(format!(
                    "{}: not a multicast group; ask a single server with request()",
                    named()
                )))
            }
            _ => {}
        }
        if let Some((text, parsed)) = uri {
            let uri_options = [
                OptionNumber::URI_HOST,
                OptionNumber::URI_PORT,
                OptionNumber::URI_PATH,
                OptionNumber::URI_QUERY,
            ];
            if let Some(n) = uri_options
                .iter()
                .find(|&&n| request.options.get(n).is_some())
            {
                return Err(Error::InvalidRequest(format!(
                    "the request carries a {n} option, but a request made for a URI takes its \
                     host, port, path and query from the URI alone; use send() to set them"
                )));
            }
            self.scheme(remote, parsed)?;
            request = self.secure_for(text, request);
            parsed.to_options_for(remote, &mut request.options);
        }
        if request.timeout.is_none() && kind != Kind::Group {
            request.timeout = self.timeout;
        }
        let mut st = self.shared.lock();
        if st.stopped {
            return Err(Error::Stopped);
        }
        let now = Instant::now();
        let id = st
            .ep
            .request(now, remote, request)
            .map_err(Error::Refused)?;
        st.slots.insert(id, Slot::new(remote, now));
        st.wake_engine();
        Ok((id, remote))
    }

    /// Protects `request` with the first OSCORE context whose pattern matches `uri` (a
    /// whole URI, or a prefix ending in `*`), unless it names one already.
    fn secure_for(&self, uri: &str, mut request: Request) -> Request {
        if request.oscore.is_none() {
            request.oscore = oscore_for(&self.oscore, uri);
        }
        request
    }

    /// Makes `remote` one reached over DTLS for a `coaps://` URI, or says why it cannot be.
    fn scheme(&self, remote: SocketAddr, uri: &Uri) -> Result<(), Error> {
        use crate::message::uri::Scheme;
        match uri.scheme {
            Scheme::Coap => Ok(()),
            #[cfg(feature = "dtls")]
            Scheme::Coaps => match &self.secure {
                Some(secure) => {
                    let name = match &uri.host {
                        Host::Name(n) => Some(n.clone()),
                        Host::Ip { .. } => None,
                    };
                    crate::step::lock(secure).insert(remote, name);
                    Ok(())
                }
                None => Err(Error::Unsupported(
                    "coaps:// needs DTLS credentials: build the endpoint with Builder::dtls".into(),
                )),
            },
            #[cfg(not(feature = "dtls"))]
            Scheme::Coaps => {
                let _ = (remote, &uri.host);
                Err(Error::Unsupported(
                    "coaps:// cannot be used: coapio was built without DTLS support (the `dtls` \
                     feature)"
                        .into(),
                ))
            }
        }
    }

    /// Observes `uri` (GET with Observe 0, RFC 7641): a stream of the resource's
    /// representations, the first response included, until the server ends the observation
    /// (a final response, the stream's last item) or the request fails (an error, then the
    /// end). Dropping the stream cancels the observation.
    ///
    /// A multicast group cannot be observed: the stream yields one error. For a
    /// registration with options (Accept, an ETag) or sent Non-confirmable, use
    /// [`RequestBuilder::observe`]: `client.get(uri).accept(f).observe()`.
    ///
    /// ```
    /// # async fn run(client: coapio::Endpoint) -> Result<(), coapio::Error> {
    /// use futures::StreamExt;
    /// let mut clock = client.observe("coap://[::1]/clock").take(3);
    /// while let Some(tick) = clock.next().await {
    ///     println!("{}", String::from_utf8_lossy(&tick?.payload));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn observe(&self, uri: &str) -> Observation {
        self.get(uri).observe()
    }

    /// Sends `request` to the multicast group of `uri` (such as
    /// `coap://[ff02::fd%25eth0]/.well-known/core`, the zone's `%` written `%25` as in any
    /// URI; RFC 7252 §8.2): a stream of every server's answer, with the server's address,
    /// until `Config::multicast_timeout` (or the request's own timeout) passes; then the
    /// stream ends. Dropping it stops collecting.
    ///
    /// A `uri` that names no multicast group gives a stream of one error.
    ///
    /// ```
    /// # async fn run(client: coapio::Endpoint) -> Result<(), coapio::Error> {
    /// use futures::StreamExt;
    /// use coapio::{Code, Request};
    /// let uri = "coap://[ff02::fd%25eth0]/.well-known/core";
    /// let mut answers = client.multicast(uri, Request::new(Code::GET));
    /// while let Some(answer) = answers.next().await {
    ///     let (server, response) = answer?;
    ///     println!("{server}: {}", String::from_utf8_lossy(&response.payload));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn multicast(&self, uri: &str, request: Request) -> GroupResponses {
        GroupResponses::new(ResponseFuture::unsent(
            self,
            Target::Uri(uri.into()),
            request,
            Kind::Group,
        ))
    }

    /// A GET of `uri`, to await or to set up further ([`RequestBuilder`]).
    pub fn get(&self, uri: &str) -> RequestBuilder {
        RequestBuilder::new(self, Code::GET, uri)
    }

    /// A PUT of `payload` to `uri`.
    pub fn put(&self, uri: &str, payload: impl Into<Vec<u8>>) -> RequestBuilder {
        RequestBuilder::new(self, Code::PUT, uri).payload(payload)
    }

    /// A POST of `payload` to `uri`.
    pub fn post(&self, uri: &str, payload: impl Into<Vec<u8>>) -> RequestBuilder {
        RequestBuilder::new(self, Code::POST, uri).payload(payload)
    }

    /// A DELETE of `uri`.
    pub fn delete(&self, uri: &str) -> RequestBuilder {
        RequestBuilder::new(self, Code::DELETE, uri)
    }

    /// A request with any method (FETCH, PATCH and iPATCH of RFC 8132 among them) to `uri`.
    pub fn method(&self, method: Code, uri: &str) -> RequestBuilder {
        RequestBuilder::new(self, method, uri)
    }

    /// Tells the observers of `path` (RFC 7641) that its representation changed: the
    /// resource's handler runs again for each observer and its answer goes out as a
    /// notification. Returns how many observers there are. The resource must be marked
    /// observable ([`Resource::obs`](crate::server::Resource::obs)). Callable from any
    /// thread, and from handlers ([`ServerRequest::endpoint`](crate::server::ServerRequest::endpoint)).
    ///
    /// ```
    /// use coapio::server::{get, Site};
    /// use coapio::{Endpoint, Response};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    ///
    /// # fn main() -> Result<(), coapio::Error> {
    /// let level = Arc::new(AtomicU32::new(0));
    /// let reading = level.clone();
    /// let site = Site::new().resource(
    ///     "/level",
    ///     get(move |_req| {
    ///         let now = reading.load(Ordering::Relaxed);
    ///         async move { Response::content(now.to_string()) }
    ///     })
    ///     .obs(),
    /// );
    /// let (server, driver) = Endpoint::server("[::1]:0", site)?;
    /// std::thread::spawn(move || async_io::block_on(driver));
    /// // A sensor thread: each change reaches every observer.
    /// level.store(7, Ordering::Relaxed);
    /// let observers = server.notify("/level");
    /// assert_eq!(observers, 0); // nobody observes yet
    /// server.shutdown();
    /// # Ok(()) }
    /// ```
    pub fn notify(&self, path: &str) -> usize {
        let mut st = self.shared.lock();
        let n = st.ep.notify(Instant::now(), path);
        st.wake_engine();
        n
    }

    /// As [`notify`](Self::notify), but every observer gets this change as a Confirmable
    /// notification (it must acknowledge it, or it is removed).
    pub fn notify_confirmable(&self, path: &str) -> usize {
        let mut st = self.shared.lock();
        let n = st
            .ep
            .notify_as(Instant::now(), path, Some(crate::message::Type::Con));
        st.wake_engine();
        n
    }

    /// Ends every observation of `path` with `response`, a final answer without Observe
    /// (RFC 7641 §3.2): 4.04 after the resource was deleted, 4.06 when its Content-Format
    /// changed, 5.03 on shutdown. The observers are forgotten at once, so a client that
    /// registers right afterwards observes the resource anew. Callable from anywhere,
    /// handlers included. Returns how many observations ended.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] with the core's [`WrongCode`](crate::proto::Error::WrongCode) if
    /// the code is not a response code, or [`Encode`](crate::proto::Error::Encode) if the
    /// response cannot be encoded; nothing ends then.
    pub fn end_observations(
        &self,
        path: &str,
        response: crate::proto::Response,
    ) -> Result<usize, Error> {
        let mut st = self.shared.lock();
        let n = st
            .ep
            .end_observations(Instant::now(), path, response)
            .map_err(Error::Refused)?;
        st.wake_engine();
        Ok(n)
    }

    /// What the endpoint has done since it was made: requests and responses sent and
    /// received, retransmissions, timeouts, duplicates, datagrams dropped as malformed or
    /// for lack of room, bytes. Counters that only grow, kept always (an addition each);
    /// [`stats`](Self::stats) says what it holds now (open requests, observers).
    ///
    /// ```
    /// # async_io::block_on(async {
    /// let (client, _driver) = coapio::Endpoint::client()?;
    /// let _ = client.get("coap://127.0.0.1:9/").await; // nothing listens there
    /// let n = client.counters();
    /// assert_eq!((n.requests_sent, n.datagrams_sent, n.responses_received), (1, 1, 0));
    /// # Ok::<_, coapio::Error>(()) }).unwrap();
    /// ```
    pub fn counters(&self) -> crate::proto::Counters {
        self.shared.lock().ep.counters()
    }

    /// What the endpoint holds now: open requests, observers, remotes, cache sizes.
    pub fn stats(&self) -> crate::proto::Stats {
        self.shared.lock().ep.stats()
    }

    /// Stops the driver: it returns `Ok(())` at its next poll, and open requests fail with
    /// [`Error::Stopped`].
    pub fn shutdown(&self) {
        let mut st = self.shared.lock();
        st.stopped = true;
        let driver = st.driver_waker.take();
        st.wake(driver);
        st.wake_all_slots();
    }
}

/// The OSCORE context of the first pattern that matches `uri`: a whole URI, or a prefix
/// ending in `*` (aiocoap's credential patterns). Both are compared with scheme and host in
/// lower case and without the scheme's default port, so that `coap://[::1]:5683/x` and
/// `COAP://[::1]/x` are the same URI to a pattern (a request that a pattern was meant for
/// must not go out unprotected for a difference of spelling).
pub(crate) fn oscore_for(
    patterns: &[(String, crate::proto::SecurityId)],
    uri: &str,
) -> Option<crate::proto::SecurityId> {
    let uri = normalized(uri);
    patterns
        .iter()
        .find(|(pattern, _)| match pattern.strip_suffix('*') {
            Some(prefix) => uri.starts_with(&normalized(prefix)),
            None => uri == normalized(pattern),
        })
        .map(|(_, id)| *id)
}

/// `uri` with its scheme and authority in lower case and without the default port.
fn normalized(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut authority = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "coap" => ":5683",
        "coaps" => ":5684",
        _ => "",
    };
    if !default.is_empty() && authority.ends_with(default) {
        authority.truncate(authority.len() - default.len());
    }
    format!("{scheme}://{authority}{tail}")
}

/// Where a parsed URI leads: an address, or a host name still to resolve.
pub(crate) enum Destination {
    Addr(SocketAddr),
    Name(String, u16),
}

/// The destination of `uri`, with an IPv6 zone given by name turned into its index.
pub(crate) fn destination(uri: &Uri) -> Result<Destination, Error> {
    let addr = match &uri.host {
        Host::Name(name) => return Ok(Destination::Name(name.clone(), uri.port)),
        Host::Ip {
            zone: Some(zone), ..
        } if zone.parse::<u32>().is_err() => {
            let index = crate::transport::interface_index(zone).ok_or_else(|| Error::Resolve {
                host: zone.clone(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "no network interface has this name",
                ),
            })?;
            uri.socket_addr().map(|a| match a {
                SocketAddr::V6(mut v6) => {
                    v6.set_scope_id(index);
                    SocketAddr::V6(v6)
                }
                v4 => v4,
            })
        }
        Host::Ip { .. } => uri.socket_addr(),
    };
    addr.map(Destination::Addr).ok_or_else(|| Error::Resolve {
        host: uri.host.to_string(),
        source: io::Error::new(io::ErrorKind::NotFound, "no address"),
    })
}

/// Resolves a host name with the system's resolver (blocking), keeping its error.
pub(crate) fn lookup(name: &str, port: u16) -> Result<SocketAddr, Error> {
    let fail = |source| Error::Resolve {
        host: name.to_owned(),
        source,
    };
    (name, port)
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::NotFound,
                "the name has no address",
            ))
        })
}

/// The destination and parsed form of a request URI, resolving a host name on this thread
/// (for the C ABI, whose calls block as libcoap's do).
#[cfg(feature = "capi")]
pub(crate) fn resolve(uri: &str) -> Result<(SocketAddr, Uri), Error> {
    let parsed = Uri::parse(uri).map_err(|source| Error::InvalidUri {
        uri: uri.to_owned(),
        source,
    })?;
    let remote = match destination(&parsed)? {
        Destination::Addr(remote) => remote,
        Destination::Name(name, port) => lookup(&name, port)?,
    };
    Ok((remote, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SecurityId;

    #[test]
    fn oscore_patterns_match_however_the_uri_is_spelled() {
        let patterns = [
            ("coap://[::1]/secret".to_owned(), SecurityId(0)),
            ("coap://Example.COM:5683/*".to_owned(), SecurityId(1)),
            ("coap://[::1]:5700*".to_owned(), SecurityId(2)),
        ];
        let find = |uri| oscore_for(&patterns, uri);
        assert_eq!(find("coap://[::1]:5683/secret"), Some(SecurityId(0)));
        assert_eq!(find("COAP://[::1]/secret"), Some(SecurityId(0)));
        assert_eq!(find("coap://[::1]/secret/more"), None, "a whole URI");
        assert_eq!(find("coap://example.com/a?b"), Some(SecurityId(1)));
        assert_eq!(find("coap://EXAMPLE.com:5683/"), Some(SecurityId(1)));
        assert_eq!(find("coap://example.com:5690/a"), None, "another port");
        assert_eq!(find("coap://[::1]:5700/x"), Some(SecurityId(2)));
        assert_eq!(find("coaps://[::1]/secret"), None, "another scheme");
    }
}
