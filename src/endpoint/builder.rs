//! Setting an endpoint up: which transport ([`TransportKind`], the platform's default or
//! `COAPIO_TRANSPORT`), its bind address, configuration and site ([`Builder`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_io::Async;

use super::driver::{Driver, Engine};
use super::handle::Endpoint;
use super::shared::{HandleToken, Shared};
use crate::error::Error;
use crate::proto::{self, Config};
use crate::server::Site;
use crate::step::os_seed;
use crate::transport::Transport;

/// Which transport an endpoint uses (see [`transport`](crate::transport)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// One dual-stack socket with PKTINFO, and ICMP errors on Linux (the default there; on
    /// macOS and FreeBSD without ICMP errors: see the transport module's table).
    Udp6,
    /// A connected socket per remote, for clients (the default client elsewhere); with a
    /// site it serves only the remotes it talks to (role reversal).
    Simple6,
    /// A server bound to one concrete address (the default server elsewhere).
    SimpleSocketServer,
}

impl TransportKind {
    /// The kind named by `COAPIO_TRANSPORT` (`udp6`, `simple6`, `simplesocketserver`), if set.
    fn from_env() -> Option<Self> {
        match std::env::var("COAPIO_TRANSPORT").ok()?.as_str() {
            "udp6" => Some(Self::Udp6),
            "simple6" => Some(Self::Simple6),
            "simplesocketserver" => Some(Self::SimpleSocketServer),
            other => {
                log::warn!(
                    "coapio: COAPIO_TRANSPORT={other:?} is not a transport; using the default"
                );
                None
            }
        }
    }

    /// The platform's default: udp6 on Linux; elsewhere simplesocketserver for a server,
    /// simple6 for a client (as aiocoap chooses).
    pub(crate) fn default_for(server: bool) -> Self {
        if cfg!(target_os = "linux") {
            Self::Udp6
        } else if server {
            Self::SimpleSocketServer
        } else {
            Self::Simple6
        }
    }
}

/// Sets up an [`Endpoint`]: transport, bind address, configuration, resources, security,
/// timeouts. [`Endpoint::client`] and [`Endpoint::server`] are its two common cases.
///
/// ```
/// use std::time::Duration;
/// use coapio::server::{get, Site};
/// use coapio::{Builder, Response, TransportKind};
///
/// # fn main() -> Result<(), coapio::Error> {
/// let site = Site::new().resource("/hello", get(|_req| async { Response::content("hi") }));
/// let (server, driver) = Builder::new()
///     .transport(TransportKind::Udp6)
///     .bind("[::1]:0".parse().unwrap())
///     .site(site)
///     .request_timeout(Duration::from_secs(10)) // for its own requests
///     .handler_timeout(Duration::from_secs(5))  // a slow handler is answered 5.03
///     .build()?;
/// # let _ = driver;
/// assert!(server.local_addr()?.port() > 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Builder {
    transport: Option<TransportKind>,
    custom: Option<Box<dyn Transport>>,
    bind: Option<SocketAddr>,
    config: Option<Config>,
    site: Option<Site>,
    reuse_port: bool,
    groups: Vec<(std::net::IpAddr, u32)>,
    handler_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    #[cfg(feature = "dtls")]
    dtls: Option<crate::dtls::DtlsConfig>,
    #[cfg(feature = "oscore")]
    oscore: OscoreContexts,
}

/// The OSCORE contexts a [`Builder`] adds, with the URI patterns their requests match.
#[cfg(feature = "oscore")]
#[derive(Default)]
struct OscoreContexts {
    contexts: Vec<(
        Option<String>,
        crate::oscore::SecurityContext,
        Option<proto::PersistHook>,
    )>,
    required: bool,
}

#[cfg(feature = "oscore")]
impl std::fmt::Debug for OscoreContexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OscoreContexts")
            .field(
                "patterns",
                &self.contexts.iter().map(|c| &c.0).collect::<Vec<_>>(),
            )
            .field("required", &self.required)
            .finish()
    }
}

impl Builder {
    /// A client on the platform's default transport, with the default configuration.
    pub fn new() -> Self {
        Self {
            transport: None,
            custom: None,
            bind: None,
            config: None,
            site: None,
            reuse_port: false,
            groups: Vec::new(),
            handler_timeout: None,
            request_timeout: None,
            #[cfg(feature = "dtls")]
            dtls: None,
            #[cfg(feature = "oscore")]
            oscore: OscoreContexts::default(),
        }
    }

    /// Adds an OSCORE security context (RFC 8613; feature `oscore`). Received requests
    /// whose OSCORE option names its Recipient ID are verified with it and answered
    /// protected; with a `uri_pattern`, requests to matching URIs are protected with it
    /// (aiocoap's patterns: a whole URI such as `coap://[::1]/secret`, or a prefix ending
    /// in `*` such as `coap://example.com/*`; the first context added that matches is used).
    ///
    /// `persist` stores the sequence number ahead of its use (RFC 8613 Appendix B.1.1); it
    /// runs under the endpoint's lock, so it should be quick.
    #[cfg(feature = "oscore")]
    pub fn oscore(
        mut self,
        uri_pattern: Option<&str>,
        context: crate::oscore::SecurityContext,
        persist: Option<proto::PersistHook>,
    ) -> Self {
        self.oscore
            .contexts
            .push((uri_pattern.map(str::to_owned), context, persist));
        self
    }

    /// Adds the OSCORE security context stored in `dir` the way aiocoap stores one
    /// (`settings.json`, `secret.json`, `sequence.json`; [`fs`](crate::oscore::fs)), as
    /// [`oscore`](Self::oscore) does, with its sequence numbers persisted to
    /// `sequence.json`. A directory must be used by one process at a time.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidData`] when the directory cannot be read or its context is
    /// invalid.
    #[cfg(feature = "oscore")]
    pub fn oscore_dir(
        self,
        uri_pattern: Option<&str>,
        dir: impl AsRef<std::path::Path>,
    ) -> io::Result<Self> {
        let (store, context) = crate::oscore::fs::ContextDir::open(dir.as_ref())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let persist: proto::PersistHook = Box::new(move |bound| store.store_sequence(bound));
        Ok(self.oscore(uri_pattern, context, Some(persist)))
    }

    /// Serves only requests protected with OSCORE: an unprotected one is answered 4.01
    /// Unauthorized ("OSCORE required") without reaching the site (feature `oscore`).
    #[cfg(feature = "oscore")]
    pub fn require_oscore(mut self) -> Self {
        self.oscore.required = true;
        self
    }

    /// Secures datagrams with DTLS (`coaps://`, RFC 7252 §9; feature `dtls`): a server
    /// built with a site takes DTLS only on its socket (bind it to 5684, coaps' port); a
    /// client sends `coaps://` requests over DTLS and `coap://` ones plain.
    #[cfg(feature = "dtls")]
    pub fn dtls(mut self, config: crate::dtls::DtlsConfig) -> Self {
        self.dtls = Some(config);
        self
    }

    /// Joins a multicast group on the interface with index `ifindex` (0: the system's
    /// choice) when the endpoint is built (udp6 only); see
    /// [`ALL_COAP_NODES`](crate::transport::ALL_COAP_NODES) and [`interface_index`](crate::transport::interface_index).
    pub fn join_multicast(mut self, group: std::net::IpAddr, ifindex: u32) -> Self {
        self.groups.push((group, ifindex));
        self
    }

    /// Chooses the transport (else `COAPIO_TRANSPORT`, else the platform's default).
    pub fn transport(mut self, kind: TransportKind) -> Self {
        self.transport = Some(kind);
        self
    }

    /// Uses a transport of the caller's own (an in-memory one for tests, for instance).
    pub fn custom_transport(mut self, transport: Box<dyn Transport>) -> Self {
        self.custom = Some(transport);
        self
    }

    /// The address to bind (default `[::]:0`, or `[::]:5683` with a site).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// The protocol configuration. Its seed is replaced by one from the OS unless it is set
    /// (non-zero).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Serves these resources.
    pub fn site(mut self, site: Site) -> Self {
        self.site = Some(site);
        self
    }

    /// Drops a handler's future that has not answered within `timeout` and answers its
    /// request `5.03 Service Unavailable` instead, if the request can still be answered.
    ///
    /// A handler's future is dropped in any case when the protocol core forgets its
    /// exchange and its answer could no longer be sent: after EXCHANGE_LIFETIME (247 s by
    /// default) for a Confirmable request, NON_LIFETIME (145 s) for a Non-confirmable one
    /// (see [`Config::exchange_lifetime`]); a longer `timeout` has no effect.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = Some(timeout);
        self
    }

    /// Gives up on every request that has no timeout of its own
    /// ([`RequestBuilder::timeout`](crate::RequestBuilder::timeout)) if no response has come
    /// this long after it was sent, with [`Error::Timeout`]. Without it, a request ends when
    /// the message layer gives up (about 93 s for a Confirmable request with the default
    /// transmission parameters, RFC 7252 §4.8.2). Requests to multicast groups keep
    /// `Config::multicast_timeout`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Sets `SO_REUSEPORT` (udp6), so that several endpoints can share the port.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Creates the endpoint and its driver.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] naming the address when the transport cannot be bound (for
    /// simplesocketserver, also on an any-address); [`Error::Unsupported`] for simple6 with
    /// a [`bind`](Self::bind) address (it has no address of its own); [`Error::Io`] when a
    /// multicast group cannot be joined or DTLS cannot be set up.
    ///
    /// simple6 with a [`site`](Self::site) serves the requests of the remotes it has talked
    /// to, over the sockets it opened for them (role reversal: a device behind simple6 that
    /// registered with a server answers that server's requests); nobody else can reach it.
    pub fn build(self) -> Result<(Endpoint, Driver), Error> {
        let server = self.site.is_some();
        let transport: Box<dyn Transport> = match self.custom {
            Some(t) => t,
            None => {
                let from_env = self
                    .transport
                    .is_none()
                    .then(TransportKind::from_env)
                    .flatten();
                let kind = self
                    .transport
                    .or(from_env)
                    .unwrap_or_else(|| TransportKind::default_for(server));
                let chosen = if from_env.is_some() {
                    "simple6 (COAPIO_TRANSPORT)"
                } else {
                    "simple6"
                };
                if let (TransportKind::Simple6, Some(addr)) = (kind, self.bind) {
                    return Err(Error::Unsupported(format!(
                        "{chosen} cannot bind {addr}: it opens one socket per remote, on a \
                             port of the system's choosing; use udp6 or simplesocketserver to \
                             serve on a known address"
                    )));
                }
                if kind == TransportKind::Simple6 && server && from_env.is_some() {
                    log::warn!(
                        "coapio: COAPIO_TRANSPORT=simple6: this server is reachable only by the \
                         remotes it sends requests to (role reversal)"
                    );
                }
                let default_port = if server { 5683 } else { 0 };
                let bind = self
                    .bind
                    .unwrap_or_else(|| SocketAddr::from(([0u16; 8], default_port)));
                open_transport(kind, bind, self.reuse_port).map_err(|e| Error::Bind {
                    addr: bind,
                    source: e,
                })?
            }
        };
        for (group, ifindex) in &self.groups {
            transport.join_multicast(*group, *ifindex).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot join {group} on interface {ifindex}: {e}"),
                )
            })?;
        }
        #[cfg(feature = "dtls")]
        let (transport, secure) = match self.dtls {
            Some(dtls) => {
                let dtls = crate::dtls::Dtls::new(dtls).map_err(Error::Credentials)?;
                let t = crate::dtls::DtlsTransport::new(transport, dtls, !server);
                let secure = t.secure_remotes();
                (Box::new(t) as Box<dyn Transport>, Some(secure))
            }
            None => (transport, None),
        };
        let mut config = self.config.unwrap_or_default();
        // DTLS verifies the remote's address in its handshake (RFC 9175 §2.4 asks no more).
        #[cfg(feature = "dtls")]
        if secure.is_some() {
            config.amplification_mitigation = false;
        }
        if config.seed == 0 {
            config.seed = os_seed();
        }
        #[allow(unused_mut)]
        let mut ep = proto::Endpoint::new(Arc::new(config));
        #[allow(unused_mut)]
        let mut oscore_patterns = Vec::new();
        #[cfg(feature = "oscore")]
        {
            for (pattern, context, persist) in self.oscore.contexts {
                let id = ep.add_oscore_context(context, persist);
                if let Some(pattern) = pattern {
                    oscore_patterns.push((pattern, id));
                }
            }
            ep.require_oscore(self.oscore.required);
        }
        // From the core's own (sanitized) configuration: when it forgets an exchange.
        let cap = |lifetime: Duration| self.handler_timeout.map_or(lifetime, |t| t.min(lifetime));
        let lifetimes = [
            cap(ep.config().exchange_lifetime()),
            cap(ep.config().non_lifetime()),
        ];
        let local = transport.local_addr().ok();
        let io = Async::new(crate::transport::Io(transport))?;
        let server = self.site.is_some();
        let site = self.site;
        let shared = Shared::new(ep, |waker| Engine::new(io, site, lifetimes, waker));
        let handle = Arc::new(HandleToken {
            shared: Arc::downgrade(&shared),
            user: true,
        });
        let driver = Driver {
            shared: shared.clone(),
            handles: Arc::downgrade(&handle),
            server,
            polled: false,
        };
        let endpoint = Endpoint {
            shared,
            _handle: handle,
            local,
            #[cfg(feature = "dtls")]
            secure,
            oscore: oscore_patterns.into(),
            timeout: self.request_timeout,
        };
        if server {
            endpoint.shared.engine().me = Some(Arc::new(endpoint.downgrade()));
        }
        Ok((endpoint, driver))
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn open_transport(
    kind: TransportKind,
    bind: SocketAddr,
    reuse_port: bool,
) -> io::Result<Box<dyn Transport>> {
    Ok(match kind {
        TransportKind::Udp6 => crate::transport::open_udp6(bind, reuse_port)?,
        // With a site, simple6 serves the requests of the remotes it has sockets for (role
        // reversal), which needs nothing of it at opening.
        TransportKind::Simple6 => Box::new(crate::transport::Simple6::new()?),
        TransportKind::SimpleSocketServer => Box::new(crate::transport::SimpleServer::bind(bind)?),
    })
}
