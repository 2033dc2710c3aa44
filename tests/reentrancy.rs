//! No handle method deadlocks, wherever it is called from: a handler closure (synchronously,
//! while the driver calls it), a handler's future, a `/.well-known/core` listing callback;
//! and a client works whether or not its driver runs.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};

use coapio::message::Code;
use coapio::proto::{Request, Response};
use coapio::server::{get, Resource, Site};
use coapio::{Endpoint, ResponseFuture, TransportKind};

use common::{block_on_within, text, udp6_client};

const LIMIT: Duration = Duration::from_secs(5);

/// The server's own handle and base URI, known once it is built.
type Me = Arc<OnceLock<(Endpoint, String)>>;

/// Calls every method of the handle (futures created are polled once, which sends their
/// requests, and dropped, which cancels them; except one GET of the server's own `/hello`,
/// returned to be awaited).
fn every_handle_call(me: &Me) -> ResponseFuture {
    let (ep, base) = me.get().expect("the server is built");
    let hello = format!("{base}/hello");
    let addr: SocketAddr = ep.local_addr().expect("udp6 has a local address");
    let _ = format!("{ep:?}");
    let _copy = ep.clone();
    ep.notify("/obs");
    ep.notify_confirmable("/obs");
    let _ = ep.get(&hello).now_or_never();
    let _ = ep.put(&hello, "x").now_or_never();
    let _ = ep.post(&hello, "x").now_or_never();
    let _ = ep.delete(&hello).now_or_never();
    let _ = ep.request(&hello, Request::new(Code::GET)).now_or_never();
    let _ = ep.send(addr, Request::get("/hello")).now_or_never();
    let _ = ep.observe(&format!("{base}/obs")).next().now_or_never();
    let _ = ep
        .multicast(&hello, Request::get("/hello"))
        .next()
        .now_or_never();
    ep.get(&hello).send()
}

/// A server whose handlers call into their own endpoint: `/sync` before its future,
/// `/async` inside it, `/listed` from its `/.well-known/core` callbacks, `/stop` shuts the
/// endpoint down from the handler. `/obs` counts its renderings.
fn server() -> (Me, Arc<AtomicUsize>, mpsc::Receiver<std::io::Result<()>>) {
    let me: Me = Arc::new(OnceLock::new());
    let renders = Arc::new(AtomicUsize::new(0));
    let (m1, m2, m3, m4, m5) = (me.clone(), me.clone(), me.clone(), me.clone(), me.clone());
    let r = renders.clone();
    let site = Site::new()
        .resource("/hello", get(|_req| async { Response::content("hello") }))
        .resource(
            "/obs",
            get(move |_req| {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move { Response::content(format!("{n}")) }
            })
            .obs(),
        )
        .resource(
            "/sync",
            Resource::new().put(move |_req| {
                // Synchronously, while the driver calls this closure.
                let own = every_handle_call(&m1);
                async move {
                    let r = own.await.expect("the server's request to itself");
                    Response::new(Code::CHANGED).with_payload(r.payload)
                }
            }),
        )
        .resource(
            "/async",
            Resource::new().put(move |_req| {
                let me = m2.clone();
                async move {
                    let own = every_handle_call(&me);
                    let r = own.await.expect("the server's request to itself");
                    Response::new(Code::CHANGED).with_payload(r.payload)
                }
            }),
        )
        .resource(
            "/listed",
            get(|_req| async { Code::CONTENT })
                .listed_when(move || {
                    drop(every_handle_call(&m3));
                    true
                })
                .links(move || {
                    drop(every_handle_call(&m4));
                    vec!["child".into()]
                }),
        )
        .resource(
            "/stop",
            Resource::new().post(move |_req| {
                m5.get().unwrap().0.shutdown();
                async { Code::CHANGED }
            }),
        );
    let (ep, driver) = Endpoint::builder()
        .transport(TransportKind::Udp6)
        .bind("[::1]:0".parse().unwrap())
        .site(site)
        .build()
        .unwrap();
    let base = format!("coap://[::1]:{}", ep.local_addr().unwrap().port());
    me.set((ep, base)).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(async_io::block_on(driver).map_err(std::io::Error::from));
    });
    (me, renders, rx)
}

#[test]
fn handle_methods_called_from_handlers_and_link_callbacks_do_not_deadlock() {
    let (me, renders, _done) = server();
    let base = me.get().unwrap().1.clone();
    let client = udp6_client();
    block_on_within(LIMIT, async {
        let mut obs = client.ep.observe(&format!("{base}/obs"));
        let first = obs.next().await.unwrap().unwrap();
        assert_eq!(text(&first), "0");

        for path in ["/sync", "/async"] {
            let before = renders.load(Ordering::SeqCst);
            let r = client.ep.put(&format!("{base}{path}"), "x").await.unwrap();
            assert_eq!(
                (r.code, text(&r).as_str()),
                (Code::CHANGED, "hello"),
                "{path}"
            );
            // The handler's `notify` reached the observer: a rendering made after the PUT
            // arrives (earlier ones may still be queued before it).
            loop {
                let n = obs.next().await.unwrap().unwrap();
                if text(&n).parse::<usize>().unwrap() >= before {
                    break;
                }
            }
        }

        let r = client
            .ep
            .get(&format!("{base}/.well-known/core"))
            .await
            .unwrap();
        assert_eq!(r.code, Code::CONTENT);
        assert!(text(&r).contains("</listed/child>"), "{}", text(&r));
    });
    me.get().unwrap().0.shutdown();
}

#[test]
fn shutdown_from_a_handler_ends_the_driver() {
    let (me, _, done) = server();
    let base = me.get().unwrap().1.clone();
    let client = udp6_client();
    let stop = client.ep.request(
        &format!("{base}/stop"),
        Request::new(Code::POST).non_confirmable(),
    );
    // Driven by the client's own thread; the answer may or may not come before the server
    // stops, so it is not awaited.
    block_on_within(LIMIT, async {
        let wait = async_io::Timer::after(Duration::from_millis(300));
        let _ = futures::future::select(stop, wait).await;
    });
    done.recv_timeout(LIMIT)
        .expect("the driver did not end after shutdown from a handler")
        .expect("the driver failed");
}

/// A server on its own thread that answers `/hello`.
fn hello_server() -> (Endpoint, String) {
    let site = Site::new().resource("/hello", get(|_req| async { Response::content("hello") }));
    let (ep, driver) = Endpoint::server("[::1]:0", site).unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let base = format!("coap://[::1]:{}", ep.local_addr().unwrap().port());
    (ep, base)
}

#[test]
fn a_client_whose_driver_never_runs_drives_itself() {
    let (server, base) = hello_server();
    let (client, driver) = Endpoint::client().unwrap();
    let uri = format!("{base}/hello");
    let r = block_on_within(LIMIT, client.get(&uri)).unwrap();
    assert_eq!(text(&r), "hello");
    // Several at once, one of them driving for all.
    let (a, b, c) = block_on_within(LIMIT, async {
        futures::future::join3(client.get(&uri), client.get(&uri), client.get(&uri)).await
    });
    for r in [a, b, c] {
        assert_eq!(text(&r.unwrap()), "hello");
    }
    // From several threads at once.
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let r = block_on_within(LIMIT, client.get(&uri)).unwrap();
                    assert_eq!(text(&r), "hello");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(driver);
    // A dropped driver changes nothing.
    let r = block_on_within(LIMIT, client.get(&uri)).unwrap();
    assert_eq!(text(&r), "hello");
    server.shutdown();
}

#[test]
fn an_observation_without_a_driver_gets_its_notifications() {
    let (server, ticker) = common::ticking_clock("[::1]:0", 3);
    let (client, _) = Endpoint::client().unwrap();
    let uri = format!("coap://[::1]:{}/clock", server.port());
    let got: Vec<String> = block_on_within(LIMIT, async {
        client
            .observe(&uri)
            .take(3)
            .map(|r| text(&r.unwrap()))
            .collect()
            .await
    });
    assert_eq!(got.len(), 3, "{got:?}");
    ticker.join().unwrap();
}

#[test]
fn a_driver_started_late_takes_over() {
    let (server, base) = hello_server();
    let (client, driver) = Endpoint::client().unwrap();
    let uri = format!("{base}/hello");
    let r = block_on_within(LIMIT, client.get(&uri)).unwrap();
    assert_eq!(text(&r), "hello");
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(async_io::block_on(driver));
    });
    let r = block_on_within(LIMIT, client.get(&uri)).unwrap();
    assert_eq!(text(&r), "hello");
    client.shutdown();
    done.recv_timeout(LIMIT).unwrap().unwrap();
    server.shutdown();
}
