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
use coapio::net::TransportErrorKind;
use coapio::{Endpoint, RequestError};
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
        plain.request(
            &format!("coap://[::1]:{port}/hello"),
            coapio::proto::Request::get("/hello").with_timeout(Duration::from_millis(500)),
        ),
    );
    assert_eq!(r.unwrap_err(), RequestError::Timeout);
    server.shutdown();
}

#[test]
fn a_wrong_key_fails_with_a_security_error() {
    let (server, port) = dtls_server();
    let client = dtls_client("me", "not-sesame");
    let r = block_on_within(LIMIT, client.get(&format!("coaps://[::1]:{port}/hello")));
    assert_eq!(
        r.unwrap_err(),
        RequestError::Transport(TransportErrorKind::Security)
    );
    server.shutdown();
}

#[test]
fn coaps_without_credentials_is_refused_at_once() {
    let (client, _driver) = Endpoint::client().unwrap();
    let r = block_on_within(LIMIT, client.get("coaps://[::1]:5684/hello"));
    assert!(matches!(r, Err(RequestError::Resolve(_))), "{r:?}");
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
