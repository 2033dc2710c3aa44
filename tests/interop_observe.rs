//! Observing (RFC 7641) with our client against libcoap's `coap-server-notls`, whose `/time`
//! resource is observable and changes every second.
//!
//! Without libcoap this test says it is skipped, unless `COAPIO_REQUIRE_PEERS=1`.

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;

use coapio::message::{Code, OptionNumber};

use common::{block_on_within, free_port, udp6_client};
use peers::{skip_or_fail, Proc};

#[test]
fn our_client_observes_libcoaps_clock() {
    if Command::new("coap-server-notls")
        .arg("-h")
        .output()
        .is_err()
    {
        skip_or_fail(
            "skipped: libcoap not installed (install with `apt-get install libcoap3-bin`)",
        );
        return;
    }
    let port = free_port("127.0.0.1");
    let _server = Proc::spawn(Command::new("coap-server-notls").args([
        "-A",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let client = udp6_client();
    let uri = format!("coap://127.0.0.1:{port}/time");
    let notes = block_on_within(Duration::from_secs(10), async {
        let mut stream = client.ep.observe(&uri);
        let mut notes = Vec::new();
        while notes.len() < 3 {
            match stream.next().await {
                Some(Ok(r)) => notes.push(r),
                other => panic!("observation ended: {other:?}"),
            }
        }
        notes
    });
    let seqs: Vec<u32> = notes
        .iter()
        .map(|r| {
            r.options
                .get_uint(OptionNumber::OBSERVE)
                .expect("an Observe option")
        })
        .collect();
    assert!(notes
        .iter()
        .all(|r| r.code == Code::CONTENT && !r.payload.is_empty()));
    assert!(
        seqs.windows(2).all(|w| w[0] != w[1]),
        "each notification is a new one: {seqs:?}"
    );
    client.stop();
}

#[test]
fn libcoaps_client_observes_our_server() {
    if Command::new("coap-client-notls")
        .arg("-h")
        .output()
        .is_err()
    {
        skip_or_fail(
            "skipped: libcoap not installed (install with `apt-get install libcoap3-bin`)",
        );
        return;
    }
    // Notified ten times a second, 25 times.
    let (server, ticker) = common::ticking_clock("127.0.0.1:0", 25);
    let port = server.port();
    // -s 2: observe for 2 s; libcoap prints every representation.
    let out = Command::new("coap-client-notls")
        .args([
            "-s",
            "2",
            "-m",
            "get",
            &format!("coap://127.0.0.1:{port}/clock"),
        ])
        .output()
        .expect("run coap-client-notls");
    let text = String::from_utf8_lossy(&out.stdout);
    let ticks: Vec<u32> = text
        .split("tick ")
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    assert!(ticks.len() >= 5, "notifications seen by libcoap: {text:?}");
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    let _ = ticker.join();
    server.stop();
}
