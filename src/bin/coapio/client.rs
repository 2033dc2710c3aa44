//! Every call `coapio` makes into the library's client API, in one place: building the
//! endpoint (transport, security, configuration), sending a request, observing, asking a
//! multicast group. The rest of the tool sees only the types defined here ([`Reply`],
//! [`Failure`], [`Spec`]), so that a change of the library's request API touches this file
//! alone.
//!
//! Block-wise progress: the library's facade reports no progress of a block-wise transfer
//! (it hands over the whole representation), and its core fetches every block of a response
//! by itself once block 0 comes (only a request for a later block gets that block alone), so
//! the tool cannot fetch block by block either. Instead, when a progress bar is wanted, the
//! endpoint runs on a transport wrapped in [`Watch`], which reads the Block1/Block2 and
//! Size1/Size2 options of each datagram that passes and reports them. Under DTLS the
//! datagrams are ciphertext and under OSCORE the block options are sealed: there the tool
//! shows a spinner.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use futures::StreamExt;

use coapio::message::uri::{Scheme, Uri};
use coapio::message::{BlockValue, Code, MessageRef, OptionNumber, Options};
use coapio::proto::{Config, Request, Response};
use coapio::{Builder, Driver, Endpoint, Error, Report};

/// A response as the tool shows it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) code: Code,
    pub(crate) options: Options,
    pub(crate) payload: Vec<u8>,
    /// The server's address (the one the response came from).
    pub(crate) source: Option<SocketAddr>,
    /// Time from sending the request to this response.
    pub(crate) elapsed: Duration,
}

impl Reply {
    fn new(response: Response, started: Instant) -> Self {
        let source = response.received().map(|r| r.source);
        Self {
            code: response.code,
            options: response.options,
            payload: response.payload,
            source,
            elapsed: started.elapsed(),
        }
    }
}

/// Why a request gave no response (or could not be made).
#[derive(Debug)]
pub(crate) enum Failure {
    /// No response: a timeout, a Reset, a network error, a name that does not resolve, a
    /// response that could not be accepted.
    NoResponse(String),
    /// What the user asked for cannot be done: a malformed URI, an unsupported scheme,
    /// security flags this build lacks.
    Usage(String),
    /// A local problem: a socket that cannot be opened, a request the endpoint refused.
    Local(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoResponse(m) | Self::Usage(m) | Self::Local(m) => f.write_str(m),
        }
    }
}

fn failure(uri: &str, e: &Error) -> Failure {
    let text = format!("{uri}: {}", Report(e));
    match e {
        // The body limit is the tool's own (--max-size), not the server's fault.
        Error::BadResponse { reason, .. } if reason.contains("max_body_size") => {
            Failure::Local(format!(
                "{uri}: the response is larger than {} bytes, the most --max-size allows",
                MAX_BODY.load(std::sync::atomic::Ordering::Relaxed)
            ))
        }
        Error::InvalidUri { .. } | Error::InvalidRequest(_) | Error::Unsupported(_) => {
            Failure::Usage(text)
        }
        Error::Refused(_) | Error::Bind { .. } | Error::Io(_) | Error::Stopped => {
            Failure::Local(text)
        }
        _ => Failure::NoResponse(text),
    }
}

/// The largest body this run accepts (`--max-size`), for the messages that name it.
static MAX_BODY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A request: method, options beyond the URI's, payload, message type and time limit.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) method: Code,
    pub(crate) options: Vec<(OptionNumber, Vec<u8>)>,
    pub(crate) payload: Vec<u8>,
    pub(crate) confirmable: bool,
    pub(crate) timeout: Option<Duration>,
}

impl Spec {
    fn request(&self) -> Request {
        let mut r = Request::new(self.method).with_payload(self.payload.clone());
        for (n, v) in &self.options {
            r.options.push(*n, v);
        }
        r.confirmable = self.confirmable;
        r.timeout = self.timeout;
        r
    }
}

/// What a block of a block-wise transfer tells about its progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockProgress {
    /// `true` for an upload (Block1 of a request sent), `false` for a download (Block2).
    pub(crate) upload: bool,
    /// Bytes transferred up to the end of this block.
    pub(crate) done: u64,
    /// The whole body's size, when a Size1/Size2 option said it.
    pub(crate) total: Option<u64>,
}

/// Called for every block that passes (on the thread that drives the endpoint).
pub(crate) type ProgressHook = Arc<dyn Fn(BlockProgress) + Send + Sync>;

/// Security material, as the flags give it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Security {
    pub(crate) psk_identity: Option<String>,
    pub(crate) psk_key: Option<String>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) oscore: Option<PathBuf>,
    pub(crate) credentials: Option<PathBuf>,
}

impl Security {
    fn dtls_wanted(&self) -> bool {
        self.psk_identity.is_some()
            || self.psk_key.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.ca.is_some()
    }
}

/// Settings of the endpoint other than the defaults.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuning {
    /// How long a multicast request collects answers.
    pub(crate) multicast_timeout: Option<Duration>,
    /// The block size of uploads and the one asked for in downloads (16 to 1024, a power
    /// of two).
    pub(crate) block_size: Option<usize>,
    /// The largest request or response body (`--max-size`).
    pub(crate) max_body_size: Option<usize>,
}

/// An endpoint for the tool's requests, with its driver.
pub(crate) struct Client {
    ep: Endpoint,
    driver: Option<Driver>,
    /// Whether DTLS credentials were given (`coaps://` needs them).
    dtls: bool,
    /// The URI patterns the DTLS key is for, when it came from a credentials file only
    /// (`None`: the flags gave it, for every URI).
    dtls_patterns: Option<Vec<String>>,
    /// Whether block progress is watched (else the caller shows a spinner).
    pub(crate) watching: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("watching", &self.watching)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a client endpoint with `security`; with `progress`, on a watched transport
    /// (when no DTLS is used, which would hide the blocks); with the `tuning` asked for.
    pub(crate) fn open(
        security: &Security,
        progress: Option<ProgressHook>,
        tuning: Tuning,
    ) -> Result<Self, Failure> {
        let mut builder = Endpoint::builder();
        if tuning != Tuning::default() {
            let mut config = Config::default();
            if let Some(t) = tuning.multicast_timeout {
                config.multicast_timeout = t;
            }
            if let Some(size) = tuning.block_size {
                config.block_size = size;
            }
            if let Some(max) = tuning.max_body_size {
                config.max_body_size = max;
                MAX_BODY.store(max, std::sync::atomic::Ordering::Relaxed);
            }
            builder = builder.config(config);
        }
        let mut dtls = security.dtls_wanted();
        let mut oscore = security.oscore.is_some();
        let mut dtls_patterns = None;
        if let Some(file) = &security.credentials {
            let creds = crate::credentials::load(file).map_err(Failure::Usage)?;
            if creds.dtls.is_some() {
                if !dtls {
                    dtls_patterns = Some(creds.dtls_patterns.clone());
                }
                dtls = true;
            }
            if !creds.oscore.is_empty() {
                oscore = true;
            }
            builder = apply_credentials(builder, &creds)?;
        }
        if security.dtls_wanted() {
            builder = with_dtls(builder, security)?;
        }
        if let Some(dir) = &security.oscore {
            builder = with_oscore(builder, Some("*"), dir)?;
        }
        let mut watching = false;
        if let Some(hook) = progress.filter(|_| !dtls && !oscore) {
            if let Some(t) = watched_transport(hook) {
                builder = builder.custom_transport(t);
                watching = true;
            }
        }
        let (ep, driver) = builder
            .build()
            .map_err(|e| Failure::Local(format!("cannot open a socket: {}", Report(&e))))?;
        Ok(Self {
            ep,
            driver: Some(driver),
            dtls,
            dtls_patterns,
            watching,
        })
    }

    /// Refuses a `coaps://` URI without DTLS credentials, in the tool's words.
    fn check_scheme(&self, uri: &str) -> Result<(), Failure> {
        let secure = Uri::parse(uri).is_ok_and(|u| u.scheme == Scheme::Coaps);
        if secure && self.dtls {
            // A credentials file's key goes only where its patterns say.
            return match &self.dtls_patterns {
                Some(patterns) if !patterns.iter().any(|p| crate::credentials::matches(p, uri)) => {
                    Err(Failure::Usage(format!(
                        "{uri}: no dtls entry of the credentials file is for this URI \
                         (its patterns: {})",
                        patterns.join(", ")
                    )))
                }
                _ => Ok(()),
            };
        }
        if !secure {
            return Ok(());
        }
        Err(Failure::Usage(if cfg!(feature = "dtls") {
            format!(
                "{uri}: coaps:// needs DTLS credentials: --psk-identity and --psk-key, \
                 --cert and --key, --ca, or --credentials"
            )
        } else {
            format!(
                "{uri}: coapio was built without DTLS support: coaps:// needs \
                 `cargo install --path . --features cli,dtls`"
            )
        }))
    }

    /// Sends `spec` to `uri` and waits for the response.
    pub(crate) fn request(&mut self, uri: &str, spec: &Spec) -> Result<Reply, Failure> {
        self.check_scheme(uri)?;
        let started = Instant::now();
        let fut = self.ep.request(uri, spec.request());
        let response = self.drive(fut)?;
        response
            .map(|r| Reply::new(r, started))
            .map_err(|e| failure(uri, &e))
    }

    /// Observes `uri` until `each` returns `false`, the server ends the observation, the
    /// request fails, or `duration` passes. `each` gets every response (the first one
    /// included). Returns why it ended.
    pub(crate) fn observe(
        &mut self,
        uri: &str,
        spec: &Spec,
        duration: Option<Duration>,
        mut each: impl FnMut(Reply) -> bool,
    ) -> Result<ObserveEnd, Failure> {
        let started = Instant::now();
        self.check_scheme(uri)?;
        let mut registration = self.ep.get(uri);
        for (n, v) in &spec.options {
            registration = registration.option(*n, v);
        }
        if !spec.confirmable {
            registration = registration.non_confirmable();
        }
        let mut stream = registration.observe();
        let ep_uri = uri.to_owned();
        let watch = async move {
            let deadline = match duration {
                Some(d) => Either::Left(async_io::Timer::after(d)),
                None => Either::Right(future::pending::<Instant>()),
            };
            futures::pin_mut!(deadline);
            loop {
                match future::select(stream.next(), &mut deadline).await {
                    Either::Left((Some(Ok(r)), _)) => {
                        let last = !r.options.contains(OptionNumber::OBSERVE);
                        if !each(Reply::new(r, started)) {
                            return Ok(ObserveEnd::Enough);
                        }
                        if last {
                            return Ok(ObserveEnd::ServerEnded);
                        }
                    }
                    Either::Left((Some(Err(e)), _)) => return Err(failure(&ep_uri, &e)),
                    Either::Left((None, _)) => return Ok(ObserveEnd::ServerEnded),
                    Either::Right(_) => return Ok(ObserveEnd::Duration),
                }
            }
        };
        self.drive(watch)?
    }

    /// Sends `spec` to the multicast group in `uri` and gives `each` every answer with its
    /// server's address until the group's time is up. Returns how many answered.
    pub(crate) fn multicast(
        &mut self,
        uri: &str,
        spec: &Spec,
        mut each: impl FnMut(Reply),
    ) -> Result<usize, Failure> {
        let started = Instant::now();
        let mut answers = self.ep.multicast(uri, spec.request());
        let owned = uri.to_owned();
        let collect = async move {
            let mut n = 0;
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok((_, r)) => {
                        n += 1;
                        each(Reply::new(r, started));
                    }
                    Err(e) => return Err(failure(&owned, &e)),
                }
            }
            Ok(n)
        };
        self.drive(collect)?
    }

    /// Runs `fut` while the endpoint's driver runs beside it.
    fn drive<F: std::future::Future>(&mut self, fut: F) -> Result<F::Output, Failure> {
        let Some(driver) = self.driver.as_mut() else {
            return Ok(async_io::block_on(fut));
        };
        async_io::block_on(async {
            futures::pin_mut!(fut);
            match future::select(fut, driver).await {
                Either::Left((out, _)) => Ok(out),
                Either::Right((io, _)) => Err(match io {
                    Ok(()) => Failure::Local("the endpoint stopped".into()),
                    Err(e) => Failure::NoResponse(format!("socket error: {}", Report(&e))),
                }),
            }
        })
    }
}

/// Why an observation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObserveEnd {
    /// The caller had enough (`--count`).
    Enough,
    /// `--duration` passed.
    Duration,
    /// The server sent a final response, or the stream ended.
    ServerEnded,
}

/// Checks that `uri` is a CoAP URI the tool can use, with a message a person can act on.
pub(crate) fn check_uri(uri: &str) -> Result<(), String> {
    Uri::parse(uri).map(|_| ()).map_err(|e| {
        let hint = if uri.contains("://") {
            ""
        } else {
            " (a URI such as coap://[::1]/hello)"
        };
        format!("{uri}: invalid URI: {e}{hint}")
    })
}

#[cfg(feature = "dtls")]
fn with_dtls(builder: Builder, s: &Security) -> Result<Builder, Failure> {
    let read =
        |f: &PathBuf| std::fs::read(f).map_err(|e| Failure::Usage(format!("{}: {e}", f.display())));
    let mut c = coapio::dtls::DtlsConfig::default();
    match (&s.psk_identity, &s.psk_key) {
        (None, None) => {}
        (Some(identity), Some(key)) => {
            c.psk = Some((identity.clone().into_bytes(), key.clone().into_bytes()));
        }
        _ => {
            return Err(Failure::Usage(
                "--psk-identity and --psk-key go together".into(),
            ))
        }
    }
    match (&s.cert, &s.key) {
        (None, None) => {}
        (Some(cert), Some(key)) => c.certificate = Some((read(cert)?, read(key)?)),
        _ => return Err(Failure::Usage("--cert and --key go together".into())),
    }
    if let Some(ca) = &s.ca {
        c.trusted_ca = Some(read(ca)?);
    }
    Ok(builder.dtls(c))
}

#[cfg(not(feature = "dtls"))]
fn with_dtls(_builder: Builder, _s: &Security) -> Result<Builder, Failure> {
    Err(Failure::Usage(
        "coapio was built without DTLS support: --psk-identity, --psk-key, --cert, --key and \
         --ca need `cargo install --path . --features cli,dtls`"
            .into(),
    ))
}

#[cfg(feature = "oscore")]
fn with_oscore(builder: Builder, pattern: Option<&str>, dir: &Path) -> Result<Builder, Failure> {
    builder
        .oscore_dir(pattern, dir)
        .map_err(|e| Failure::Usage(format!("OSCORE context {}: {e}", dir.display())))
}

#[cfg(not(feature = "oscore"))]
fn with_oscore(_builder: Builder, _pattern: Option<&str>, _dir: &Path) -> Result<Builder, Failure> {
    Err(Failure::Usage(
        "coapio was built without OSCORE support: --oscore and OSCORE credentials need \
         `cargo install --path . --features cli,oscore`"
            .into(),
    ))
}

/// Adds what a credentials file holds: its first DTLS pre-shared key, and an OSCORE
/// context directory for each of its URI patterns.
fn apply_credentials(
    mut builder: Builder,
    creds: &crate::credentials::Credentials,
) -> Result<Builder, Failure> {
    if let Some((identity, key)) = &creds.dtls {
        builder = with_psk(builder, identity, key)?;
    }
    for (pattern, dir) in &creds.oscore {
        builder = with_oscore(builder, Some(pattern), dir)?;
    }
    Ok(builder)
}

#[cfg(feature = "dtls")]
fn with_psk(builder: Builder, identity: &[u8], key: &[u8]) -> Result<Builder, Failure> {
    Ok(builder.dtls(coapio::dtls::DtlsConfig::psk_client(identity, key)))
}

#[cfg(not(feature = "dtls"))]
fn with_psk(_builder: Builder, _identity: &[u8], _key: &[u8]) -> Result<Builder, Failure> {
    Err(Failure::Usage(
        "coapio was built without DTLS support: the credentials file's DTLS keys need \
         `cargo install --path . --features cli,dtls`"
            .into(),
    ))
}

// ---- block progress: a transport that watches the datagrams passing --------------------------

/// The platform's default client transport, wrapped in [`Watch`]; `None` where it cannot
/// be opened here (the builder then opens its own, without progress).
fn watched_transport(hook: ProgressHook) -> Option<Box<dyn coapio::transport::Transport>> {
    if std::env::var_os("COAPIO_TRANSPORT").is_some() {
        return None; // the user chose a transport: let the builder open it
    }
    #[cfg(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd"))]
    let inner: Box<dyn coapio::transport::Transport> =
        Box::new(coapio::transport::Udp6::bind(SocketAddr::from(([0u16; 8], 0))).ok()?);
    #[cfg(not(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd")))]
    let inner: Box<dyn coapio::transport::Transport> =
        Box::new(coapio::transport::Simple6::new().ok()?);
    Some(Box::new(Watch { inner, hook }))
}

/// A transport that passes everything on to `inner` and reports the block options of the
/// requests it sends (Block1) and the responses it receives (Block2).
struct Watch {
    inner: Box<dyn coapio::transport::Transport>,
    hook: ProgressHook,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Watch {
    fn look(&self, datagram: &[u8], sent: bool) {
        let Ok(m) = MessageRef::decode(datagram) else {
            return;
        };
        let (block, size) = if sent && m.code.is_request() {
            (OptionNumber::BLOCK1, OptionNumber::SIZE1)
        } else if !sent && m.code.is_response() {
            (OptionNumber::BLOCK2, OptionNumber::SIZE2)
        } else {
            return;
        };
        let Some(b) = m
            .options
            .get(block)
            .and_then(|v| BlockValue::from_bytes(v).ok())
        else {
            return;
        };
        (self.hook)(BlockProgress {
            upload: sent,
            done: (b.offset() + m.payload.len()) as u64,
            total: m.options.get_uint(size).map(u64::from),
        });
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Watch {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for Watch {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.inner.as_socket()
    }
}

impl coapio::transport::Transport for Watch {
    fn capabilities(&self) -> coapio::transport::Capabilities {
        self.inner.capabilities()
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, coapio::net::RecvMeta)> {
        let (n, meta) = self.inner.try_recv(buf)?;
        self.look(&buf[..n], false);
        Ok((n, meta))
    }
    fn try_send(&self, transmit: &coapio::net::Transmit, contents: &[u8]) -> std::io::Result<()> {
        self.inner.try_send(transmit, contents)?;
        self.look(contents, true);
        Ok(())
    }
    fn try_recv_batch(&self, batch: &mut coapio::transport::RecvBatch) -> std::io::Result<usize> {
        let n = self.inner.try_recv_batch(batch)?;
        let mut i = 0;
        while let Some((datagram, _)) = batch.get(i) {
            self.look(datagram, false);
            i += 1;
        }
        Ok(n)
    }
    fn try_send_batch(
        &self,
        batch: &coapio::transport::SendBatch,
        from: usize,
    ) -> std::io::Result<usize> {
        let sent = self.inner.try_send_batch(batch, from)?;
        for i in from..from + sent {
            if let Some((_, contents)) = batch.get(i) {
                self.look(contents, true);
            }
        }
        Ok(sent)
    }
    fn try_recv_error(&self) -> std::io::Result<Option<coapio::net::TransportError>> {
        self.inner.try_recv_error()
    }
    fn set_in_use(&self, remote: SocketAddr, in_use: bool) {
        self.inner.set_in_use(remote, in_use);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn handle_timeout(&self, now: Instant) {
        self.inner.handle_timeout(now);
    }
    fn join_multicast(&self, group: std::net::IpAddr, ifindex: u32) -> std::io::Result<()> {
        self.inner.join_multicast(group, ifindex)
    }
}
