//! Block-wise transfers (RFC 7959) against libcoap on loopback, both ways: libcoap's
//! `coap-client-notls -b SIZE` against our server for GET (Block2), PUT (Block1) and POST
//! (Block1 then Block2) at every block size from 16 to 1024 bytes, and our client uploading
//! to and downloading from `coap-server-notls`.
//!
//! Without libcoap these tests say they are skipped, unless `COAPIO_REQUIRE_PEERS=1`.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::process::Command;
use std::sync::{Arc, Mutex};

use coapio::message::{Code, ContentFormat};
use coapio::proto::{Request, Response};
use coapio::server::{get, Resource, Site};

use common::{free_port, udp6_client, udp6_server};
use peers::{run, skip_or_fail, Proc};

fn libcoap_present() -> bool {
    let ok = Command::new("coap-client-notls").arg("-h").output().is_ok()
        && Command::new("coap-server-notls").arg("-h").output().is_ok();
    if !ok {
        skip_or_fail(
            "skipped: libcoap not installed (install with `apt-get install libcoap3-bin`)",
        );
    }
    ok
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

fn site() -> Site {
    let store = Arc::new(Mutex::new(Vec::new()));
    let (put, get_store) = (store.clone(), store);
    Site::new()
        .resource(
            "/large",
            get(|_req| async { Response::content(pattern(5000)) }),
        )
        .resource(
            "/store",
            Resource::new()
                .put(move |req| {
                    let s = put.clone();
                    async move {
                        *s.lock().unwrap() = req.payload().to_vec();
                        Response::new(Code::CHANGED)
                    }
                })
                .get(move |_req| {
                    let s = get_store.clone();
                    async move { Response::content(s.lock().unwrap().clone()) }
                }),
        )
        .resource(
            "/upper",
            Resource::new().post(|req| async move {
                Response::new(Code::CHANGED)
                    .with_payload(req.payload().to_ascii_uppercase())
                    .with_content_format(ContentFormat::TEXT_PLAIN)
            }),
        )
}

/// Runs coap-client and returns the payload it printed (it ends it with a newline).
fn coap_client(args: &[&str]) -> Vec<u8> {
    let out = Command::new("coap-client-notls")
        .args(["-B", "10"])
        .args(args)
        .output()
        .expect("run coap-client-notls");
    let mut payload = out.stdout;
    if payload.last() == Some(&b'\n') {
        payload.pop();
    }
    payload
}

/// Compares bodies without printing kilobytes on failure.
fn same(got: &[u8], want: &[u8], what: &str) {
    let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{what}: got {} bytes, want {}; first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn libcoap_client_against_our_server_at_every_block_size() {
    if !libcoap_present() {
        return;
    }
    let server = udp6_server("127.0.0.1:0", site());
    let base = format!("coap://127.0.0.1:{}", server.port());
    let dir = std::env::temp_dir().join(format!("coapio-block-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let upload = dir.join("upload.txt");
    std::fs::write(&upload, pattern(3000)).unwrap();
    let upload = upload.to_str().unwrap();
    for size in ["16", "32", "64", "128", "256", "512", "1024"] {
        let got = coap_client(&["-b", size, "-m", "get", &format!("{base}/large")]);
        same(
            &got,
            &pattern(5000),
            &format!("GET /large with {size}-byte blocks"),
        );
        coap_client(&[
            "-b",
            size,
            "-m",
            "put",
            "-f",
            upload,
            &format!("{base}/store"),
        ]);
        let got = coap_client(&["-b", size, "-m", "get", &format!("{base}/store")]);
        same(
            &got,
            &pattern(3000),
            &format!("PUT then GET /store with {size}-byte blocks"),
        );
        let got = coap_client(&[
            "-b",
            size,
            "-m",
            "post",
            "-f",
            upload,
            &format!("{base}/upper"),
        ]);
        let upper = pattern(3000).to_ascii_uppercase();
        same(
            &got,
            &upper,
            &format!("POST /upper with {size}-byte blocks"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    server.stop();
}

#[test]
fn our_client_uploads_to_and_downloads_from_libcoap() {
    if !libcoap_present() {
        return;
    }
    let port = free_port("127.0.0.1");
    let _server = Proc::spawn(Command::new("coap-server-notls").args([
        "-A",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-d",
        "10",
    ]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = udp6_client();
    let uri = format!("coap://127.0.0.1:{port}/coapio-large");
    let body = pattern(6000);
    let put = run(client
        .ep
        .request(&uri, Request::new(Code::PUT).with_payload(body.clone())))
    .unwrap();
    assert!(
        put.code == Code::CREATED || put.code == Code::CHANGED,
        "{}",
        put.code
    );
    let got = run(client.ep.get(&uri)).unwrap();
    assert_eq!(got.code, Code::CONTENT);
    same(&got.payload, &body, "GET of what we PUT");
    // Early negotiation: small blocks asked for, the same representation assembled.
    let small = run(client
        .ep
        .request(&uri, Request::new(Code::GET).with_block_size(64)))
    .unwrap();
    same(&small.payload, &body, "GET with 64-byte blocks");
    client.stop();
}
