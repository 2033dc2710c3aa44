//! `coaps://` through the async facade (`Builder::dtls`): a DTLS server and client on
//! loopback, block-wise transfers over DTLS, libcoap's client against our DTLS server, and
//! the errors a user sees (no credentials, a wrong key).
#![cfg(feature = "dtls")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::process::Command;
use std::time::Duration;

use coapio::dtls::DtlsConfig;
use coapio::net::{SecurityError, TransportErrorKind};
use coapio::{Endpoint, Error};
use common::{block_on_within, example_site, text};
use peers::{skip_or_fail, Proc};

const LIMIT: Duration = Duration::from_secs(10);

fn dtls_server() -> (Endpoint, u16) {
    let config = DtlsConfig::psk_server(|id: &[u8]| (id == b"me").then(|| b"sesame".to_vec()));
    let (ep, driver) = Endpoint::builder()
        .bind("[::1]:0".parse().unwrap())
        .site(example_site())
        .dtls(config)
        .build()
        .unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let port = ep.local_addr().unwrap().port();
    (ep, port)
}

fn dtls_client(identity: &str, key: &str) -> Endpoint {
    let mut config = DtlsConfig::psk_client(identity, key);
    config.handshake_timeout = Duration::from_secs(3);
    let (ep, driver) = Endpoint::builder().dtls(config).build().unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    ep
}

#[test]
fn get_put_and_blockwise_over_dtls() {
    let (server, port) = dtls_server();
    let client = dtls_client("me", "sesame");
    let base = format!("coaps://[::1]:{port}");
    let r = block_on_within(LIMIT, client.get(&format!("{base}/hello"))).unwrap();
    assert_eq!(text(&r), "Hello, world!");
    // A 5 000-byte body both ways: Block1 up, Block2 down, all over the one session.
    let body = vec![b'x'; 5000];
    let r = block_on_within(LIMIT, client.put(&format!("{base}/echo"), body.clone())).unwrap();
    assert_eq!(r.payload, body);
    // The plain port of the same server is not served: its socket takes DTLS only.
    let plain = Endpoint::client().unwrap().0;
    let r = block_on_within(
        LIMIT,
        plain
            .get(&format!("coap://[::1]:{port}/hello"))
            .timeout(Duration::from_millis(500)),
    );
    assert!(matches!(r.unwrap_err(), Error::Timeout { .. }));
    server.shutdown();
}

#[test]
fn a_wrong_key_fails_with_a_security_error() {
    let (server, port) = dtls_server();
    let client = dtls_client("me", "not-sesame");
    let r = block_on_within(LIMIT, client.get(&format!("coaps://[::1]:{port}/hello")));
    assert!(matches!(
        r.unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::Security(SecurityError::HandshakeTimeout),
            ..
        }
    ));
    let stranger = dtls_client("stranger", "sesame");
    let r = block_on_within(LIMIT, stranger.get(&format!("coaps://[::1]:{port}/hello")));
    assert!(matches!(
        r.unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::Security(SecurityError::UnknownIdentity),
            ..
        }
    ));
    server.shutdown();
}

#[test]
fn coaps_without_credentials_is_refused_at_once() {
    let (client, _driver) = Endpoint::client().unwrap();
    let r = block_on_within(LIMIT, client.get("coaps://[::1]:5684/hello"));
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
}

#[test]
fn libcoap_client_against_our_dtls_server() {
    if Command::new("coap-client-openssl")
        .arg("-h")
        .output()
        .is_err()
    {
        return skip_or_fail(
            "skipped: coap-client-openssl not installed (apt-get install libcoap3-bin)",
        );
    }
    let (server, port) = dtls_server();
    let mut client = Proc::spawn(Command::new("coap-client-openssl").args([
        "-B",
        "10",
        "-u",
        "me",
        "-k",
        "sesame",
        "-m",
        "get",
        &format!("coaps://[::1]:{port}/hello"),
    ]));
    let status = client.finish(Duration::from_secs(15));
    assert!(status.success(), "{}", client.stderr());
    assert_eq!(
        client.stdout().trim(),
        "Hello, world!",
        "{}",
        client.stderr()
    );
    server.shutdown();
}

#[path = "common/pki.rs"]
mod pki;

fn cert_server(config: DtlsConfig) -> (Endpoint, u16) {
    let (ep, driver) = Endpoint::builder()
        .bind("[::1]:0".parse().unwrap())
        .site(example_site())
        .dtls(config)
        .build()
        .unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let port = ep.local_addr().unwrap().port();
    (ep, port)
}

fn client_with(mut config: DtlsConfig) -> Endpoint {
    config.handshake_timeout = Duration::from_secs(3);
    let (ep, driver) = Endpoint::builder().dtls(config).build().unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    ep
}

#[test]
fn certificates_verified_both_ways() {
    let p = pki::pki();
    // The server shows its certificate; the client verifies it against the CA.
    let (server, port) = cert_server(DtlsConfig::certificate_server(
        p.server_cert.clone(),
        p.server_key.clone(),
    ));
    let client = client_with(DtlsConfig::certificate_client(p.ca.clone()));
    let uri = format!("coaps://[::1]:{port}/hello");
    let r = block_on_within(LIMIT, client.get(&uri)).unwrap();
    assert_eq!(text(&r), "Hello, world!");
    // A client that trusts another CA refuses the server.
    let other = pki::pki();
    // (Both test CAs have the same name: the other one's signature does not verify.)
    let doubting = client_with(DtlsConfig::certificate_client(other.ca));
    let e = block_on_within(LIMIT, doubting.get(&uri)).unwrap_err();
    assert!(matches!(
        e,
        Error::Network {
            kind: TransportErrorKind::Security(SecurityError::CertificateRejected {
                reason: "certificate signature failure"
            }),
            ..
        }
    ));
    assert!(
        e.to_string().contains("certificate signature failure"),
        "{e}"
    );
    server.shutdown();
    // A server that asks for client certificates: one signed by its CA gets in, none not.
    let mut strict = DtlsConfig::certificate_server(p.server_cert.clone(), p.server_key.clone());
    strict.trusted_ca = Some(p.ca.clone());
    let (server, port) = cert_server(strict);
    let uri = format!("coaps://[::1]:{port}/hello");
    let mut with_cert = DtlsConfig::certificate_client(p.ca.clone());
    with_cert.certificate = Some((p.client_cert.clone(), p.client_key.clone()));
    let r = block_on_within(LIMIT, client_with(with_cert).get(&uri)).unwrap();
    assert_eq!(text(&r), "Hello, world!");
    // Without one, the server ends the handshake with an alert (handshake_failure in DTLS
    // 1.2: the client cannot tell more).
    let without = client_with(DtlsConfig::certificate_client(p.ca.clone()));
    let e = block_on_within(LIMIT, without.get(&uri)).unwrap_err();
    assert_eq!(alert_of(&e), Some(40), "{e:?}");
    assert!(e.to_string().contains("handshake failure"), "{e}");
    // So does a client that skips verification (its certificate check failed, but that is
    // not what ended the handshake).
    let mut careless = DtlsConfig::certificate_client(pki::pki().ca);
    careless.insecure_skip_verify = true;
    let e = block_on_within(LIMIT, client_with(careless).get(&uri)).unwrap_err();
    assert_eq!(alert_of(&e), Some(40), "{e:?}");
    server.shutdown();
}

/// The alert a failed handshake ended with, if it failed with one.
fn alert_of(e: &Error) -> Option<u8> {
    match e {
        Error::Network {
            kind: TransportErrorKind::Security(SecurityError::HandshakeFailed { alert, .. }),
            ..
        } => *alert,
        _ => None,
    }
}

/// PEM files for libcoap's tools, in a fresh directory under the system's temp dir.
fn pem_files(p: &pki::Pki) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "coapio-dtls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, pem) in [
        ("ca.pem", &p.ca),
        ("server.pem", &p.server_cert),
        ("server.key", &p.server_key),
        ("client.pem", &p.client_cert),
        ("client.key", &p.client_key),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    dir
}

#[test]
fn certificates_with_libcoap_both_ways() {
    for backend in ["openssl", "gnutls"] {
        let (client, server) = (
            format!("coap-client-{backend}"),
            format!("coap-server-{backend}"),
        );
        for tool in [&client, &server] {
            if Command::new(tool).arg("-h").output().is_err() {
                return skip_or_fail(&format!(
                    "skipped: {tool} not installed (apt-get install libcoap3-bin)"
                ));
            }
        }
        certificates_with(&client, &server);
    }
}

fn certificates_with(libcoap_client: &str, libcoap_server: &str) {
    let p = pki::pki();
    let dir = pem_files(&p);
    let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
    // libcoap's client, verifying our server's certificate against the CA.
    let (server, port) = cert_server(DtlsConfig::certificate_server(
        p.server_cert.clone(),
        p.server_key.clone(),
    ));
    let mut client = Proc::spawn(Command::new(libcoap_client).args([
        "-B",
        "10",
        "-C",
        &file("ca.pem"),
        "-c",
        &file("client.pem"),
        "-j",
        &file("client.key"),
        "-m",
        "get",
        &format!("coaps://[::1]:{port}/hello"),
    ]));
    let status = client.finish(Duration::from_secs(15));
    assert!(status.success(), "{libcoap_client}: {}", client.stderr());
    assert_eq!(
        client.stdout().trim(),
        "Hello, world!",
        "{libcoap_client}: {}",
        client.stderr()
    );
    server.shutdown();
    // Our client, verifying libcoap's server (which asks for our certificate too).
    let plain = common::free_port("127.0.0.1");
    let _libcoap = Proc::spawn(Command::new(libcoap_server).args([
        "-A",
        "127.0.0.1",
        "-p",
        &plain.to_string(),
        "-c",
        &file("server.pem"),
        "-j",
        &file("server.key"),
        "-C",
        &file("ca.pem"),
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let mut config = DtlsConfig::certificate_client(p.ca.clone());
    config.certificate = Some((p.client_cert.clone(), p.client_key.clone()));
    let ours = client_with(config);
    let r = block_on_within(
        LIMIT,
        ours.get(&format!("coaps://127.0.0.1:{}/time", plain + 1)),
    )
    .unwrap_or_else(|e| panic!("{libcoap_server}: {e}"));
    assert_eq!(
        r.code,
        coapio::message::Code::CONTENT,
        "{libcoap_server}: {r:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A DTLS server with an observable `/clock` notified every 100 ms, `ticks` times.
fn ticking_dtls_server(ticks: usize) -> (Endpoint, u16) {
    let (site, counter) = common::clock_site();
    let config = DtlsConfig::psk_server(|id: &[u8]| (id == b"me").then(|| b"sesame".to_vec()));
    let (ep, driver) = Endpoint::builder()
        .bind("[::1]:0".parse().unwrap())
        .site(site)
        .dtls(config)
        .build()
        .unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let port = ep.local_addr().unwrap().port();
    common::tick(ep.clone(), counter, ticks);
    (ep, port)
}

#[test]
fn observe_over_dtls() {
    use futures::StreamExt;
    let (server, port) = ticking_dtls_server(30);
    let client = dtls_client("me", "sesame");
    let got = block_on_within(LIMIT, async {
        let mut obs = client.observe(&format!("coaps://[::1]:{port}/clock"));
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(text(&obs.next().await.unwrap().unwrap()));
        }
        got
    });
    assert!(got.iter().all(|t| t.starts_with("tick ")), "{got:?}");
    assert_ne!(got[0], got[3], "notifications came: {got:?}");
    server.shutdown();
}

#[test]
fn libcoap_observes_our_dtls_server() {
    if Command::new("coap-client-openssl")
        .arg("-h")
        .output()
        .is_err()
    {
        return skip_or_fail(
            "skipped: coap-client-openssl not installed (apt-get install libcoap3-bin)",
        );
    }
    let (server, port) = ticking_dtls_server(40);
    let mut client = Proc::spawn(Command::new("coap-client-openssl").args([
        "-u",
        "me",
        "-k",
        "sesame",
        "-s",
        "2",
        "-m",
        "get",
        &format!("coaps://[::1]:{port}/clock"),
    ]));
    client.finish(Duration::from_secs(10));
    // libcoap prints each notification's payload without a line break.
    let out = client.stdout();
    let ticks = out.matches("tick ").count();
    assert!(ticks >= 5, "{out:?} / {}", client.stderr());
    server.shutdown();
}

/// A client with a pre-shared key only never takes a server with any certificate for the one
/// that knows the key (it offers PSK suites only); a client that verifies certificates checks
/// the server's name or address too (RFC 7252 §9.1.3.3).
#[test]
fn clients_accept_only_servers_they_can_verify() {
    let p = pki::pki();
    let (server, port) = cert_server(DtlsConfig::certificate_server(
        p.server_cert.clone(),
        p.server_key.clone(),
    ));
    let uri = format!("coaps://[::1]:{port}/hello");
    let psk_only = dtls_client("me", "sesame");
    assert!(matches!(
        block_on_within(LIMIT, psk_only.get(&uri)).unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::Security(_),
            ..
        }
    ));
    server.shutdown();
    // A certificate of the right CA, but not for this address (the client's own, no SAN).
    let (impostor, port) = cert_server(DtlsConfig::certificate_server(
        p.client_cert.clone(),
        p.client_key.clone(),
    ));
    let verifying = client_with(DtlsConfig::certificate_client(p.ca.clone()));
    assert!(matches!(
        block_on_within(LIMIT, verifying.get(&format!("coaps://[::1]:{port}/hello"))).unwrap_err(),
        Error::Network {
            kind: TransportErrorKind::Security(SecurityError::CertificateRejected {
                reason: "IP address mismatch"
            }),
            ..
        }
    ));
    impostor.shutdown();
}

/// Credentials that cannot work are refused when the endpoint is built, saying why.
#[test]
fn unusable_credentials_are_refused_with_a_reason() {
    let p = pki::pki();
    let build =
        |c: DtlsConfig| chain(&Endpoint::builder().dtls(c).build().map(|_| ()).unwrap_err());
    let e = build(DtlsConfig::certificate_client(b"not PEM".to_vec()));
    assert!(e.to_string().contains("no CA certificate"), "{e}");
    let mut no_ca = DtlsConfig::default();
    no_ca.certificate = Some((p.client_cert.clone(), p.client_key.clone()));
    let e = build(no_ca);
    assert!(e.to_string().contains("CAs to verify"), "{e}");
    let mismatched = DtlsConfig::certificate_server(p.server_cert.clone(), p.client_key.clone());
    let e = Endpoint::builder()
        .bind("[::1]:0".parse().unwrap())
        .site(example_site())
        .dtls(mismatched)
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::Credentials(_)), "{e:?}");
    let e = chain(&e);
    assert!(e.contains("does not match"), "{e}");
}

/// An error and its sources, as a report shows them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
