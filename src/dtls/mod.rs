//! DTLS 1.2 (RFC 6347) for `coaps://` (RFC 7252 §9), as a sans-IO layer between a transport
//! and the protocol core: encrypted datagrams and the time go in; plaintext datagrams for the
//! core, encrypted datagrams for the network and the next deadline come out.
//!
//! ```text
//!   transport ──datagrams──▶ Dtls::handle_datagram ──▶ poll_plaintext ──▶ proto::Endpoint
//!   transport ◀──poll_transmit── Dtls::send ◀──plaintext datagrams── proto::Endpoint
//! ```
//!
//! Each remote has one session (an OpenSSL `SSL` over memory buffers, never a socket), which
//! a client opens on the first datagram it sends there and a server on a ClientHello that
//! carries a valid cookie: a ClientHello without one is answered with a HelloVerifyRequest
//! (RFC 6347 §4.2.1) and leaves no state behind (`DTLSv1_listen`, cookies are an HMAC of
//! the remote's address under a secret drawn at start). Sessions are bounded (count, idle
//! time, half-finished handshakes; the least recently used goes first), handshake flights are
//! retransmitted on OpenSSL's timers, and a peer that starts a new handshake (it restarted)
//! replaces its old session at once.
//!
//! [`DtlsTransport`] puts the layer in front of any transport, which is how the async facade
//! (`Builder::dtls`) uses it.
//!
//! Pre-shared keys (TLS_PSK_WITH_AES_128_CCM_8 and the AES-GCM/CBC PSK suites, a server-side
//! lookup by identity) and X.509 certificates (a CA to verify the peer, optional client
//! certificates). A client verifies the server's chain against its CAs and that the
//! certificate names the URI's host, or carries the server's address for an IP literal (RFC
//! 7252 §9.1.3.3); an endpoint offers the certificate suites only when it can verify (a
//! client) or show (a server) a certificate, so a key alone never lets a certificate pass. A
//! wrong pre-shared key shows as a handshake timeout (DTLS drops what it cannot decrypt). Not
//! there: raw public keys (RFC 7250: Debian's OpenSSL 3.0 has none; 3.2 does).
//!
//! `unsafe` is refused here except in `ossl`, the calls into OpenSSL the `openssl` crate
//! does not bind (as in the transports and the C ABI, a C boundary).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ossl;
mod socket;

pub use socket::{DtlsTransport, SecureRemotes};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::SecurityError;
use log::debug;
use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream,
};

/// The suites with pre-shared keys: CCM_8 first (RFC 7252 §9.1.3.1's mandatory suite), then
/// the AES-GCM and AES-CBC PSK suites peers commonly have.
const PSK_SUITES: &str = "PSK-AES128-CCM8:PSK-AES256-CCM8:PSK-AES128-GCM-SHA256:\
                          PSK-AES256-GCM-SHA384:PSK-AES128-CCM:PSK-AES128-CBC-SHA256";

/// The suites with certificates: ECDHE-ECDSA with CCM_8 first (§9.1.3.3), then the usual AEAD
/// suites. Offered only by an endpoint that can check the peer's certificate (a client with
/// CAs) or show one (a server with a certificate): a client with a key only must never let a
/// server with any certificate pass for the one that knows the key.
const CERT_SUITES: &str = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:\
                           ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:\
                           ECDHE-RSA-AES256-GCM-SHA384";

/// The first retransmission timeout of a handshake flight (RFC 6347 §4.2.4.1: 1 s), doubled
/// up to [`MAX_RTO`]. The layer keeps this timer itself, on the caller's clock, rather than
/// OpenSSL's, which reads the system clock: so the layer stays sans-IO and testable on a
/// virtual clock. A flight is sent again as it was.
const INITIAL_RTO: Duration = Duration::from_secs(1);
const MAX_RTO: Duration = Duration::from_secs(60);

/// Plaintext datagrams kept for a session whose handshake is not done, at most.
const MAX_PENDING: usize = 32;

/// Looks a server's pre-shared key up by the identity a client presents.
pub type PskLookup = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// How an endpoint secures its datagrams with DTLS.
#[derive(Clone)]
#[non_exhaustive]
pub struct DtlsConfig {
    /// The client's identity and key (for sessions this endpoint opens).
    pub psk: Option<(Vec<u8>, Vec<u8>)>,
    /// The server's keys by identity (for sessions peers open); `None`: this endpoint
    /// accepts no DTLS sessions. Called in the middle of a handshake, while the endpoint
    /// holds its state: answer from what is at hand (a map, a file) and do not call the
    /// endpoint from it, which would wait for itself.
    pub psk_lookup: Option<PskLookup>,
    /// The server's identity hint, sent to clients (may be empty).
    pub psk_hint: Vec<u8>,
    /// This endpoint's X.509 certificate chain and private key (PEM): a server's, or a
    /// client's for servers that ask for one.
    pub certificate: Option<(Vec<u8>, Vec<u8>)>,
    /// The certificate authorities (PEM) the peer's certificate must chain to: a client
    /// verifies the server's certificate against them; a server with them asks for and
    /// verifies clients' certificates. `None`: a client does not verify (as libcoap's `-n`),
    /// a server does not ask.
    pub trusted_ca: Option<Vec<u8>>,
    /// Whether this endpoint accepts sessions that peers open (a server).
    pub accept: bool,
    /// A client accepts a server's certificate without checking it (no CAs needed). Only
    /// for tests and closed networks: anyone with a certificate can then pose as the server.
    pub insecure_skip_verify: bool,
    /// Established sessions kept at most; beyond, the least recently used goes.
    pub max_sessions: usize,
    /// Handshakes in progress at most (a server's, after the cookie round trip).
    pub max_handshakes: usize,
    /// A session unused this long is closed.
    pub idle_timeout: Duration,
    /// A handshake not finished this long is given up.
    pub handshake_timeout: Duration,
    /// The largest datagram DTLS sends (records and handshake fragments fit it).
    pub mtu: u32,
}

impl fmt::Debug for DtlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsConfig")
            .field("psk_identity", &self.psk.as_ref().map(|(i, _)| i))
            .field("server", &self.psk_lookup.is_some())
            .field("max_sessions", &self.max_sessions)
            .field("max_handshakes", &self.max_handshakes)
            .field("idle_timeout", &self.idle_timeout)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl Default for DtlsConfig {
    fn default() -> Self {
        Self {
            psk: None,
            psk_lookup: None,
            psk_hint: Vec::new(),
            certificate: None,
            trusted_ca: None,
            accept: false,
            insecure_skip_verify: false,
            max_sessions: 4096,
            max_handshakes: 256,
            idle_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(60),
            mtu: 1280,
        }
    }
}

impl DtlsConfig {
    /// A client that presents `identity` and `key`.
    pub fn psk_client(identity: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        Self {
            psk: Some((identity.into(), key.into())),
            ..Self::default()
        }
    }

    /// A server that accepts the identities `lookup` knows (see
    /// [`psk_lookup`](Self::psk_lookup) for what it may do).
    pub fn psk_server(lookup: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        Self {
            psk_lookup: Some(Arc::new(lookup)),
            accept: true,
            ..Self::default()
        }
    }

    /// A server with the certificate chain and key `chain_pem`/`key_pem` (PEM).
    pub fn certificate_server(chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            certificate: Some((chain_pem.into(), key_pem.into())),
            accept: true,
            ..Self::default()
        }
    }

    /// A client that verifies servers' certificates against the authorities in `ca_pem`.
    pub fn certificate_client(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            trusted_ca: Some(ca_pem.into()),
            ..Self::default()
        }
    }
}

/// Something about a remote's session the caller has to know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtlsEvent {
    /// The handshake with `remote` completed: datagrams flow.
    Connected(SocketAddr),
    /// The session with `remote` failed or could not be made (a TLS alert, an unknown PSK
    /// identity, a timeout); what waited to be sent to it is dropped.
    Failed {
        /// The remote.
        remote: SocketAddr,
        /// What failed.
        error: SecurityError,
        /// What failed, with all OpenSSL said (for a log).
        reason: String,
    },
    /// The peer closed the session (close_notify) or it was closed for idleness or room.
    Closed(SocketAddr),
}

/// Why [`Dtls::send`] cannot send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtlsError {
    /// This endpoint has no client credentials, so it cannot open a session.
    #[error("no DTLS client credentials (a PSK identity and key, or CAs to verify servers)")]
    NoCredentials,
    /// The credentials cannot be used (no certificate in the PEM text, a key that does not
    /// match, no CA certificate); the text says which.
    #[error("DTLS credentials: {0}")]
    Credentials(String),
    /// OpenSSL refused to set the session up.
    #[error("DTLS: {0}")]
    Tls(String),
}

impl DtlsError {
    /// The kind of transport error a request to the remote fails with.
    pub fn security(&self) -> SecurityError {
        match self {
            Self::NoCredentials | Self::Credentials(_) => SecurityError::NoCredentials,
            Self::Tls(_) => SecurityError::HandshakeFailed {
                alert: None,
                reason: "OpenSSL refused to set the session up",
            },
        }
    }
}

/// OpenSSL's library code for the TLS library (`ERR_LIB_SSL`, which openssl-sys does not
/// export).
const ERR_LIB_SSL: std::ffi::c_int = 20;
/// `SSL_R_CERTIFICATE_VERIFY_FAILED`: the handshake stopped because the peer's certificate
/// did not verify.
const SSL_R_CERTIFICATE_VERIFY_FAILED: std::ffi::c_int = 134;
/// The `unknown_psk_identity` alert (RFC 4279 §2).
const ALERT_UNKNOWN_PSK_IDENTITY: u8 = 115;

/// What a handshake or session failure means for the requests that waited on it, from
/// OpenSSL's error queue and the certificate verification result.
fn classify(e: &openssl::ssl::Error, verify: openssl::x509::X509VerifyResult) -> SecurityError {
    if e.code() == ErrorCode::ZERO_RETURN {
        return SecurityError::HandshakeFailed {
            alert: Some(0),
            reason: "the peer closed the session (close_notify)",
        };
    }
    // Oldest first: the first entry is the cause OpenSSL saw first.
    let errors = e.ssl_error().map_or(&[][..], ErrorStack::errors);
    let ssl = |x: &&openssl::error::Error| x.library_code() == ERR_LIB_SSL;
    // TLS alerts come back as SSL errors with reason codes from SSL_AD_REASON_OFFSET on
    // (SSL_R_SSLV3_ALERT_*, SSL_R_TLSV1_ALERT_*).
    let alert_of = |x: &openssl::error::Error| {
        x.reason_code()
            .checked_sub(openssl_sys::SSL_AD_REASON_OFFSET)
            .and_then(|a| u8::try_from(a).ok())
    };
    // A verification result counts only when it stopped the handshake: a client that skips
    // verification still has one, and fails for other reasons.
    let verify_failed = errors
        .iter()
        .filter(ssl)
        .any(|x| x.reason_code() == SSL_R_CERTIFICATE_VERIFY_FAILED);
    if verify_failed && verify != openssl::x509::X509VerifyResult::OK {
        return SecurityError::CertificateRejected {
            reason: verify.error_string(),
        };
    }
    // The peer's alert if it sent one, else the first SSL error, else the first error.
    let alert = errors
        .iter()
        .filter(ssl)
        .find_map(|x| alert_of(x).map(|a| (a, x)));
    if let Some((a, x)) = alert {
        if a == ALERT_UNKNOWN_PSK_IDENTITY {
            return SecurityError::UnknownIdentity;
        }
        return SecurityError::HandshakeFailed {
            alert: Some(a),
            reason: x.reason().unwrap_or("a TLS alert"),
        };
    }
    match errors.iter().find(ssl).or(errors.first()) {
        Some(x) => SecurityError::HandshakeFailed {
            alert: None,
            reason: x.reason().unwrap_or("unknown OpenSSL error"),
        },
        None => SecurityError::HandshakeFailed {
            alert: None,
            reason: "the connection failed (no reason given)",
        },
    }
}

/// Datagrams between a session and the network: what OpenSSL reads and what it wrote.
#[derive(Debug, Default)]
struct Wire {
    incoming: VecDeque<Vec<u8>>,
    outgoing: Vec<Vec<u8>>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.incoming.pop_front() {
            Some(d) => {
                // DTLS reads whole datagrams; one larger than the buffer is cut (and fails
                // its record's check).
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Session {
    stream: SslStream<Wire>,
    established: bool,
    /// Plaintext datagrams waiting for the handshake to finish.
    pending: Vec<Vec<u8>>,
    started: Instant,
    last_used: Instant,
    /// The last handshake flight this side sent, while the handshake goes on.
    flight: Vec<Vec<u8>>,
    rto: Duration,
    retransmit_at: Instant,
}

impl Session {
    fn new(stream: SslStream<Wire>, now: Instant) -> Self {
        Self {
            stream,
            established: false,
            pending: Vec::new(),
            started: now,
            last_used: now,
            flight: Vec::new(),
            rto: INITIAL_RTO,
            retransmit_at: now + INITIAL_RTO,
        }
    }
}

/// The DTLS layer of one endpoint: a session per remote.
pub struct Dtls {
    config: DtlsConfig,
    client: Option<SslContext>,
    server: Option<SslContext>,
    sessions: HashMap<SocketAddr, Session>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    plaintext: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<DtlsEvent>,
}

impl fmt::Debug for Dtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dtls")
            .field("config", &self.config)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// How many sessions a [`Dtls`] holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DtlsStats {
    /// Sessions whose handshake completed.
    pub established: usize,
    /// Handshakes in progress.
    pub handshaking: usize,
}

fn psk_copy(dst: &mut [u8], src: &[u8]) -> Result<usize, ErrorStack> {
    if src.len() > dst.len() {
        return Err(ErrorStack::get());
    }
    dst[..src.len()].copy_from_slice(src);
    Ok(src.len())
}

impl Dtls {
    /// Sets up the contexts `config` asks for.
    ///
    /// # Errors
    ///
    /// [`DtlsError::Credentials`] when the credentials cannot be used (the text says why),
    /// [`DtlsError::Tls`] when OpenSSL cannot make a context.
    pub fn new(config: DtlsConfig) -> Result<Self, DtlsError> {
        let tls = |e: ErrorStack| DtlsError::Tls(e.to_string());
        let client = match &config.psk {
            // Sessions of its own need a key or the means to verify servers.
            None if config.trusted_ca.is_none() && !config.insecure_skip_verify => None,
            None => Some(cert_context(&config, false)?.build()),
            Some((identity, key)) => {
                let mut b = cert_context(&config, false)?;
                let (identity, key) = (identity.clone(), key.clone());
                b.set_psk_client_callback(move |_ssl, _hint, id_out, key_out| {
                    // The identity goes out NUL-terminated.
                    if identity.len() >= id_out.len() {
                        return Err(ErrorStack::get());
                    }
                    id_out[..identity.len()].copy_from_slice(&identity);
                    id_out[identity.len()] = 0;
                    psk_copy(key_out, &key)
                });
                Some(b.build())
            }
        };
        let server = match &config.psk_lookup {
            None if !config.accept => None,
            None => {
                let mut b = cert_context(&config, true)?;
                ossl::cookies(&mut b).map_err(tls)?;
                Some(b.build())
            }
            Some(lookup) => {
                let mut b = cert_context(&config, true)?;
                let lookup = lookup.clone();
                b.set_psk_server_callback(move |_ssl, identity, key_out| {
                    match identity.and_then(|id| lookup(id)) {
                        Some(key) => psk_copy(key_out, &key),
                        // An unknown identity: no key, and the handshake fails.
                        None => Ok(0),
                    }
                });
                if !config.psk_hint.is_empty() {
                    ossl::psk_identity_hint(&mut b, &config.psk_hint).map_err(tls)?;
                }
                ossl::cookies(&mut b).map_err(tls)?;
                Some(b.build())
            }
        };
        if client.is_none() && server.is_none() {
            return Err(DtlsError::Credentials(
                "nothing to secure sessions with: a client needs a PSK, or CAs to verify \
                 servers' certificates; a server a PSK lookup or a certificate"
                    .into(),
            ));
        }
        Ok(Self {
            config,
            client,
            server,
            sessions: HashMap::new(),
            transmits: VecDeque::new(),
            plaintext: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Whether there is a session (established or in its handshake) with `remote`.
    pub fn has_session(&self, remote: SocketAddr) -> bool {
        self.sessions.contains_key(&remote)
    }

    /// Counts of what the layer holds.
    pub fn stats(&self) -> DtlsStats {
        let established = self.sessions.values().filter(|s| s.established).count();
        DtlsStats {
            established,
            handshaking: self.sessions.len() - established,
        }
    }

    /// Sends `plaintext` (one CoAP message) to `remote` in its session, opening one (as a
    /// client) if there is none; it goes out once the handshake is done.
    ///
    /// # Errors
    ///
    /// [`DtlsError::NoCredentials`] without client credentials and no session with `remote`;
    /// [`DtlsError::Tls`] if OpenSSL cannot start one.
    pub fn send(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        plaintext: &[u8],
    ) -> Result<(), DtlsError> {
        self.send_to(now, remote, None, plaintext)
    }

    /// As [`Dtls::send`], with the name the server is known by (the URI's host), which its
    /// certificate must carry when this endpoint verifies certificates (RFC 7252 §9.1.3.3);
    /// without a name, the server's address must be in its certificate.
    ///
    /// # Errors
    ///
    /// As [`Dtls::send`].
    pub fn send_to(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        name: Option<&str>,
        plaintext: &[u8],
    ) -> Result<(), DtlsError> {
        if !self.sessions.contains_key(&remote) {
            let ctx = self.client.as_ref().ok_or(DtlsError::NoCredentials)?;
            let mut ssl = Ssl::new(ctx).map_err(|e| DtlsError::Tls(e.to_string()))?;
            ssl.set_connect_state();
            if self.config.trusted_ca.is_some() && !self.config.insecure_skip_verify {
                let param = ssl.param_mut();
                let checked = match name.map(|n| n.parse::<std::net::IpAddr>()) {
                    Some(Ok(ip)) => param.set_ip(ip),
                    Some(Err(_)) => param.set_host(name.unwrap_or_default()),
                    None => param.set_ip(remote.ip()),
                };
                checked.map_err(|e| DtlsError::Tls(e.to_string()))?;
            }
            ssl.set_mtu(self.config.mtu)
                .map_err(|e| DtlsError::Tls(e.to_string()))?;
            let stream =
                SslStream::new(ssl, Wire::default()).map_err(|e| DtlsError::Tls(e.to_string()))?;
            if !self.make_room(now, false) {
                return Err(DtlsError::Tls("no room for a DTLS session".into()));
            }
            self.sessions.insert(remote, Session::new(stream, now));
            debug!("coapio: DTLS handshake with {remote}");
        }
        let Some(s) = self.sessions.get_mut(&remote) else {
            return Ok(());
        };
        s.last_used = now;
        if s.established {
            ossl::clear_errors();
            let _ = s.stream.ssl_write(plaintext);
            self.collect(remote);
        } else {
            // What waits for the handshake is bounded: the core retransmits what matters.
            if s.pending.len() < MAX_PENDING {
                s.pending.push(plaintext.to_vec());
            }
            self.advance(now, remote);
        }
        Ok(())
    }

    /// Takes one datagram that arrived from `remote`.
    pub fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, data: &[u8]) {
        // No DTLS record is shorter than its 13-byte header; an empty datagram would even
        // read as the end of the stream to OpenSSL.
        if data.len() < 13 {
            return;
        }
        // A new ClientHello from a remote with an established session: the peer may have
        // started over (it restarted, or lost its state). The old session goes only once
        // the new ClientHello came back with a valid cookie (RFC 6347 §4.2.8): a forged
        // one cannot end it.
        let restart = self.server.is_some()
            && is_client_hello(data)
            && self.sessions.get(&remote).is_some_and(|s| s.established);
        if restart || !self.sessions.contains_key(&remote) {
            self.accept(now, remote, data);
            return;
        }
        if let Some(s) = self.sessions.get_mut(&remote) {
            s.stream.get_mut().incoming.push_back(data.to_vec());
            s.last_used = now;
        }
        self.advance(now, remote);
    }

    /// A ClientHello from a remote without a session (or starting over): answered with a
    /// HelloVerifyRequest unless it carries a valid cookie, which opens a session (in place
    /// of the remote's old one).
    fn accept(&mut self, now: Instant, remote: SocketAddr, data: &[u8]) {
        let Some(ctx) = self.server.as_ref() else {
            return;
        };
        if !is_client_hello(data) {
            return; // not for a session that exists, and not a start: garbage
        }
        let Ok(mut ssl) = Ssl::new(ctx) else {
            return;
        };
        if ssl.set_mtu(self.config.mtu).is_err() {
            return;
        }
        ossl::set_remote(&mut ssl, remote);
        let Ok(mut stream) = SslStream::new(ssl, Wire::default()) else {
            return;
        };
        stream.get_mut().incoming.push_back(data.to_vec());
        match ossl::listen(&mut stream) {
            Ok(true) => {}
            Ok(false) => {
                // No cookie yet (or a stale one): the HelloVerifyRequest goes out, and
                // nothing is kept.
                for d in stream.get_mut().outgoing.drain(..) {
                    self.transmits.push_back((remote, d));
                }
                return;
            }
            Err(()) => return,
        }
        // The cookie came back from the remote's address: a handshake worth state
        // (`DTLSv1_listen` kept the ClientHello for it).
        if self.sessions.remove(&remote).is_some() {
            debug!("coapio: {remote} starts a new DTLS handshake; old session dropped");
            self.events.push_back(DtlsEvent::Closed(remote));
        }
        if !self.make_room(now, true) {
            return;
        }
        self.sessions.insert(remote, Session::new(stream, now));
        self.advance(now, remote);
    }

    /// Drives `remote`'s session with what it has: handshake steps, then application data.
    fn advance(&mut self, now: Instant, remote: SocketAddr) {
        let Some(s) = self.sessions.get_mut(&remote) else {
            return;
        };
        if !s.established {
            ossl::clear_errors();
            let result = s.stream.do_handshake();
            // A new flight: remember it for retransmission, and restart the timer.
            let flight: Vec<Vec<u8>> = s.stream.get_mut().outgoing.clone();
            if !flight.is_empty() {
                s.flight = flight;
                s.rto = INITIAL_RTO;
                s.retransmit_at = now + INITIAL_RTO;
            }
            match result {
                Ok(()) => {
                    s.established = true;
                    debug!(
                        "coapio: DTLS session with {remote} ({})",
                        s.stream.ssl().current_cipher().map_or("?", |c| c.name())
                    );
                    self.events.push_back(DtlsEvent::Connected(remote));
                    s.flight.clear();
                    let pending = std::mem::take(&mut s.pending);
                    for p in pending {
                        let _ = s.stream.ssl_write(&p);
                    }
                    self.collect(remote);
                    self.trim_sessions(remote);
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {}
                Err(e) => {
                    let verify = s.stream.ssl().verify_result();
                    let error = classify(&e, verify);
                    let mut reason = e
                        .ssl_error()
                        .map_or_else(|| e.to_string(), ToString::to_string);
                    if matches!(error, SecurityError::CertificateRejected { .. }) {
                        reason = format!("certificate rejected: {verify} ({reason})");
                    }
                    self.fail(remote, error, reason);
                    return;
                }
            }
        }
        self.collect(remote);
        let Some(s) = self.sessions.get_mut(&remote) else {
            return;
        };
        if !s.established {
            return;
        }
        let mut buf = [0u8; 2048];
        loop {
            ossl::clear_errors();
            match s.stream.ssl_read(&mut buf) {
                Ok(n) => self.plaintext.push_back((remote, buf[..n].to_vec())),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    debug!("coapio: {remote} closed its DTLS session");
                    self.collect(remote);
                    self.sessions.remove(&remote);
                    self.events.push_back(DtlsEvent::Closed(remote));
                    return;
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => break,
                Err(e) => {
                    // A record that does not decrypt is dropped by DTLS itself; an error here
                    // is fatal (a fatal alert, a protocol violation): the session ends.
                    let error = classify(&e, openssl::x509::X509VerifyResult::OK);
                    let reason = e
                        .ssl_error()
                        .map_or_else(|| e.to_string(), ToString::to_string);
                    self.fail(remote, error, reason);
                    return;
                }
            }
        }
        self.collect(remote);
    }

    /// Moves what `remote`'s session wrote to the transmit queue.
    fn collect(&mut self, remote: SocketAddr) {
        if let Some(s) = self.sessions.get_mut(&remote) {
            for d in s.stream.get_mut().outgoing.drain(..) {
                self.transmits.push_back((remote, d));
            }
        }
    }

    fn fail(&mut self, remote: SocketAddr, error: SecurityError, reason: String) {
        debug!("coapio: DTLS with {remote} failed: {reason}");
        self.collect(remote); // an alert, if OpenSSL wrote one
        self.sessions.remove(&remote);
        self.events.push_back(DtlsEvent::Failed {
            remote,
            error,
            reason,
        });
    }

    /// Makes room for one more handshake (`handshake`, a server's after the cookie round
    /// trip) or session: the least recently used of the same kind goes. A handshake never
    /// pushes an established session out (completing one needs the key, starting one does
    /// not). Returns whether there is room.
    fn make_room(&mut self, now: Instant, handshake: bool) -> bool {
        let _ = now;
        let (limit, of_kind): (usize, fn(&Session) -> bool) = if handshake {
            (self.config.max_handshakes, |s| !s.established)
        } else {
            (self.config.max_sessions, |_| true)
        };
        if limit == 0 {
            return false;
        }
        while self.sessions.values().filter(|s| of_kind(s)).count() >= limit {
            let victim = self
                .sessions
                .iter()
                .filter(|(_, s)| of_kind(s))
                .min_by_key(|(_, s)| s.last_used)
                .map(|(r, _)| *r);
            let Some(victim) = victim else { return false };
            debug!("coapio: DTLS session with {victim} closed to make room");
            self.sessions.remove(&victim);
            self.events.push_back(DtlsEvent::Closed(victim));
        }
        true
    }

    /// Keeps at most `max_sessions` established sessions once `keep` became one: the least
    /// recently used others go.
    fn trim_sessions(&mut self, keep: SocketAddr) {
        loop {
            let established = self.sessions.values().filter(|s| s.established).count();
            if established <= self.config.max_sessions.max(1) {
                return;
            }
            let victim = self
                .sessions
                .iter()
                .filter(|(r, s)| s.established && **r != keep)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(r, _)| *r);
            let Some(victim) = victim else { return };
            debug!("coapio: DTLS session with {victim} closed to make room");
            self.sessions.remove(&victim);
            self.events.push_back(DtlsEvent::Closed(victim));
        }
    }

    /// The next datagram for the network.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next plaintext datagram for the protocol core.
    pub fn poll_plaintext(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.plaintext.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When [`Dtls::handle_timeout`] has work: a handshake to retransmit or give up, a
    /// session to close for idleness.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .map(|s| {
                if s.established {
                    s.last_used + self.config.idle_timeout
                } else {
                    s.retransmit_at
                        .min(s.started + self.config.handshake_timeout)
                }
            })
            .min()
    }

    /// Retransmits handshake flights whose timer ran out, gives up handshakes that took too
    /// long and closes idle sessions.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<SocketAddr> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                if s.established {
                    s.last_used + self.config.idle_timeout <= now
                } else {
                    s.retransmit_at <= now || s.started + self.config.handshake_timeout <= now
                }
            })
            .map(|(r, _)| *r)
            .collect();
        for remote in due {
            let Some(s) = self.sessions.get_mut(&remote) else {
                continue;
            };
            if s.established {
                debug!("coapio: DTLS session with {remote} idle; closed");
                let _ = s.stream.shutdown();
                self.collect(remote);
                self.sessions.remove(&remote);
                self.events.push_back(DtlsEvent::Closed(remote));
            } else if s.started + self.config.handshake_timeout <= now {
                let error = SecurityError::HandshakeTimeout;
                self.fail(remote, error, error.to_string());
            } else {
                // The last flight went unanswered: send it again, and wait twice as long.
                // OpenSSL's own retransmission comes first (fresh record numbers, which a
                // peer that already took the flight answers by repeating its own); its timer
                // runs on the system clock, so when it says "not yet" (a caller's clock
                // ahead of it, as in simulations) the flight goes again as it was.
                debug!("coapio: DTLS handshake flight to {remote} sent again");
                s.rto = (s.rto * 2).min(MAX_RTO);
                s.retransmit_at = now + s.rto;
                ossl::clear_errors();
                if ossl::handle_timeout(&mut s.stream) {
                    s.flight = s.stream.get_mut().outgoing.clone();
                    self.collect(remote);
                } else {
                    for d in &s.flight {
                        self.transmits.push_back((remote, d.clone()));
                    }
                }
            }
        }
    }

    /// Closes the session with `remote` (close_notify), if there is one.
    pub fn close(&mut self, remote: SocketAddr) {
        if let Some(s) = self.sessions.get_mut(&remote) {
            let _ = s.stream.shutdown();
            self.collect(remote);
            self.sessions.remove(&remote);
        }
    }
}

/// A DTLS record of epoch 0 carrying a ClientHello (content type 22, handshake type 1).
fn is_client_hello(data: &[u8]) -> bool {
    data.len() > 25 && data[0] == 22 && data[3] == 0 && data[4] == 0 && data[13] == 1
}

fn base_context() -> Result<SslContextBuilder, ErrorStack> {
    let mut b = SslContext::builder(SslMethod::dtls())?;
    // Memory buffers have no path MTU to ask: the session's MTU is set instead.
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
    Ok(b)
}

/// A context for a server (`serve`) or a client with the credentials of `config`, offering
/// only the suites those credentials can make safe.
fn cert_context(config: &DtlsConfig, serve: bool) -> Result<SslContextBuilder, DtlsError> {
    use openssl::pkey::PKey;
    use openssl::ssl::SslVerifyMode;
    use openssl::x509::X509;
    let tls = |e: ErrorStack| DtlsError::Tls(e.to_string());
    let creds = |what: &str, e: ErrorStack| DtlsError::Credentials(format!("{what}: {e}"));
    let mut b = base_context().map_err(tls)?;
    let psk = if serve {
        config.psk_lookup.is_some()
    } else {
        config.psk.is_some()
    };
    let certs = if serve {
        config.certificate.is_some()
    } else {
        config.trusted_ca.is_some() || config.insecure_skip_verify
    };
    let suites: Vec<&str> = [(psk, PSK_SUITES), (certs, CERT_SUITES)]
        .into_iter()
        .filter_map(|(on, s)| on.then_some(s))
        .collect();
    if suites.is_empty() {
        return Err(DtlsError::Credentials(if serve {
            "a server needs a PSK lookup or a certificate".into()
        } else {
            "a client needs a PSK, or CAs to verify servers' certificates".into()
        }));
    }
    b.set_cipher_list(&suites.join(":")).map_err(tls)?;
    if let Some((chain, key)) = &config.certificate {
        let mut certs = X509::stack_from_pem(chain)
            .map_err(|e| creds("the certificate chain", e))?
            .into_iter();
        let leaf = certs.next().ok_or_else(|| {
            DtlsError::Credentials("no certificate in the certificate chain's PEM text".into())
        })?;
        b.set_certificate(&leaf)
            .map_err(|e| creds("the certificate", e))?;
        for c in certs {
            b.add_extra_chain_cert(c)
                .map_err(|e| creds("the chain", e))?;
        }
        let key = PKey::private_key_from_pem(key).map_err(|e| creds("the private key", e))?;
        b.set_private_key(&key)
            .map_err(|e| creds("the private key does not match the certificate", e))?;
        b.check_private_key()
            .map_err(|e| creds("the private key does not match the certificate", e))?;
    }
    match &config.trusted_ca {
        Some(ca) => {
            let cas = X509::stack_from_pem(ca).map_err(|e| creds("the CAs", e))?;
            if cas.is_empty() {
                return Err(DtlsError::Credentials(
                    "no CA certificate in the CAs' PEM text".into(),
                ));
            }
            for c in cas {
                b.cert_store_mut()
                    .add_cert(c)
                    .map_err(|e| creds("a CA certificate", e))?;
            }
            let mode = if serve {
                SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
            } else {
                SslVerifyMode::PEER
            };
            b.set_verify(mode);
        }
        None => b.set_verify(SslVerifyMode::NONE),
    }
    if !serve && config.insecure_skip_verify {
        // As documented: no check at all, also where CAs are given.
        b.set_verify(SslVerifyMode::NONE);
    }
    Ok(b)
}

#[cfg(test)]
mod tests;
