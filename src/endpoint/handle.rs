//! The [`Endpoint`] handle: sending requests, notifying observers, shutting down.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use super::builder::Builder;
use super::driver::Driver;
use super::futures::{GroupResponses, Observation, ResponseFuture};
use super::shared::{HandleToken, Shared, Slot};
use crate::error::RequestError;
use crate::message::uri::{Host, Uri};
use crate::message::{Code, OptionNumber};
use crate::proto::Request;
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
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A client on the platform's default transport (udp6 on Linux), bound to an ephemeral
    /// port. Run the returned driver on any executor.
    ///
    /// # Errors
    ///
    /// The transport's errors of binding.
    pub fn client() -> io::Result<(Self, Driver)> {
        Builder::new().build()
    }

    /// A server for `site` bound to `bind` (`"[::]:5683"`, `"127.0.0.1:0"`, …), which is
    /// also a client. Run the returned driver on any executor.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] when `bind` is not a socket address; the transport's
    /// errors of binding.
    pub fn server(bind: &str, site: Site) -> io::Result<(Self, Driver)> {
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
    /// payload and message type. Host names are resolved by the system (this blocks while it
    /// does; IP literals do not).
    ///
    /// A request to a URI that matches the pattern of an OSCORE context
    /// ([`Builder::oscore`]) is protected with it, unless it names a context itself.
    pub fn request(&self, uri: &str, request: Request) -> ResponseFuture {
        let request = self.secure_for(uri, request);
        self.request_to(resolve(uri), request)
    }

    /// Protects `request` with the first OSCORE context whose pattern matches `uri` (a
    /// whole URI, or a prefix ending in `*`), unless it names one already.
    fn secure_for(&self, uri: &str, mut request: Request) -> Request {
        if request.oscore.is_none() {
            request.oscore = oscore_for(&self.oscore, uri);
        }
        request
    }

    /// Sends `request` to a resolved URI (or fails with the resolution's error).
    fn request_to(
        &self,
        resolved: Result<(SocketAddr, Uri), RequestError>,
        mut request: Request,
    ) -> ResponseFuture {
        match resolved {
            Ok((remote, parsed)) => {
                if let Err(e) = self.scheme(remote, &parsed) {
                    return ResponseFuture::failed(&self.shared, e);
                }
                for n in [
                    OptionNumber::URI_HOST,
                    OptionNumber::URI_PORT,
                    OptionNumber::URI_PATH,
                    OptionNumber::URI_QUERY,
                ] {
                    request.options.remove(n);
                }
                parsed.to_options_for(remote, &mut request.options);
                self.send(remote, request)
            }
            Err(e) => ResponseFuture::failed(&self.shared, e),
        }
    }

    /// Makes `remote` one reached over DTLS for a `coaps://` URI, or says why it cannot be.
    fn scheme(&self, remote: SocketAddr, uri: &Uri) -> Result<(), RequestError> {
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
                None => Err(RequestError::Resolve(
                    "coaps:// needs DTLS credentials: build the endpoint with Builder::dtls".into(),
                )),
            },
            #[cfg(not(feature = "dtls"))]
            Scheme::Coaps => {
                let _ = (remote, &uri.host);
                Err(RequestError::Resolve(
                    "coaps:// needs coapio built with the `dtls` feature".into(),
                ))
            }
        }
    }

    /// Sends `request` (with its Uri-Path and Uri-Query options as they are) to `remote`.
    pub fn send(&self, remote: SocketAddr, request: Request) -> ResponseFuture {
        let mut st = self.shared.lock();
        if st.stopped {
            drop(st);
            return ResponseFuture::failed(&self.shared, RequestError::Stopped);
        }
        match st.ep.request(Instant::now(), remote, request) {
            Ok(id) => {
                st.slots.insert(id, Slot::default());
                st.wake_engine();
                ResponseFuture::waiting(&self.shared, id)
            }
            Err(e) => {
                drop(st);
                ResponseFuture::failed(&self.shared, RequestError::Refused(e))
            }
        }
    }

    /// Observes `uri` (GET with Observe 0, RFC 7641): a stream of the resource's
    /// representations, the first response included, until the server ends the observation
    /// (a final response, the stream's last item) or the request fails (an error, then the
    /// end). Dropping the stream cancels the observation.
    ///
    /// A multicast group cannot be observed: the stream yields one error.
    pub fn observe(&self, uri: &str) -> Observation {
        let inner = match resolve(uri) {
            Ok((remote, _)) if remote.ip().is_multicast() => ResponseFuture::failed(
                &self.shared,
                RequestError::Resolve(format!(
                    "{uri}: a multicast group cannot be observed; ask it with multicast()"
                )),
            ),
            resolved => {
                let request = self.secure_for(uri, Request::new(Code::GET).observe());
                self.request_to(resolved, request)
            }
        };
        Observation {
            inner,
            ended: false,
            dropped: 0,
        }
    }

    /// Sends `request` to the multicast group of `uri` (such as
    /// `coap://[ff02::fd%eth0]/.well-known/core`; RFC 7252 §8.2): a stream of every server's
    /// answer, with the server's address, until `Config::multicast_timeout` (or the request's
    /// own timeout) passes; then the stream ends. Dropping it stops collecting.
    ///
    /// A `uri` that names no multicast group gives a stream of one error.
    pub fn multicast(&self, uri: &str, request: Request) -> GroupResponses {
        let inner = match resolve(uri) {
            Ok((remote, _)) if !remote.ip().is_multicast() => ResponseFuture::failed(
                &self.shared,
                RequestError::Resolve(format!(
                    "{uri}: not a multicast group; ask a single server with request()"
                )),
            ),
            resolved => self.request_to(resolved, request),
        };
        GroupResponses {
            inner,
            ended: false,
            dropped: 0,
        }
    }

    /// GETs `uri`.
    pub fn get(&self, uri: &str) -> ResponseFuture {
        self.request(uri, Request::new(Code::GET))
    }

    /// PUTs `payload` to `uri`.
    pub fn put(&self, uri: &str, payload: impl Into<Vec<u8>>) -> ResponseFuture {
        self.request(uri, Request::new(Code::PUT).with_payload(payload))
    }

    /// POSTs `payload` to `uri`.
    pub fn post(&self, uri: &str, payload: impl Into<Vec<u8>>) -> ResponseFuture {
        self.request(uri, Request::new(Code::POST).with_payload(payload))
    }

    /// DELETEs `uri`.
    pub fn delete(&self, uri: &str) -> ResponseFuture {
        self.request(uri, Request::new(Code::DELETE))
    }

    /// Tells the observers of `path` (RFC 7641) that its representation changed: the
    /// resource's handler runs again for each observer and its answer goes out as a
    /// notification. Returns how many observers there are. The resource must be marked
    /// observable ([`crate::server::Resource::obs`]).
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
    /// [`crate::Error::WrongCode`] if the code is not a response code,
    /// [`crate::Error::Encode`] if the response cannot be encoded; nothing ends then.
    pub fn end_observations(
        &self,
        path: &str,
        response: crate::proto::Response,
    ) -> Result<usize, crate::Error> {
        let mut st = self.shared.lock();
        let n = st.ep.end_observations(Instant::now(), path, response)?;
        st.wake_engine();
        Ok(n)
    }

    /// Stops the driver: it returns `Ok(())` at its next poll, and open requests fail with
    /// [`RequestError::Stopped`].
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

/// The destination and parsed form of a request URI.
pub(crate) fn resolve(uri: &str) -> Result<(SocketAddr, Uri), RequestError> {
    let parsed = Uri::parse(uri).map_err(RequestError::InvalidUri)?;
    let remote = match &parsed.host {
        Host::Ip {
            zone: Some(zone), ..
        } if zone.parse::<u32>().is_err() => {
            let index = crate::transport::interface_index(zone).ok_or_else(|| {
                RequestError::Resolve(format!("no network interface named {zone:?}"))
            })?;
            parsed.socket_addr().map(|a| match a {
                SocketAddr::V6(mut v6) => {
                    v6.set_scope_id(index);
                    SocketAddr::V6(v6)
                }
                v4 => v4,
            })
        }
        Host::Ip { .. } => parsed.socket_addr(),
        Host::Name(name) => (name.as_str(), parsed.port)
            .to_socket_addrs()
            .map_err(|e| RequestError::Resolve(format!("{name}: {e}")))?
            .next(),
    };
    let remote = remote.ok_or_else(|| RequestError::Resolve(format!("{uri}: no address")))?;
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
