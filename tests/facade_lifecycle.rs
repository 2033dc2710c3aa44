//! The facade's streams and drivers end when they should: a client's driver when its last
//! handle goes, `multicast` and `observe` given the wrong kind of address, and requests from
//! several threads on a driverless client never stall.
mod common;

use std::sync::mpsc;
use std::time::Duration;

use coapio::proto::Response;
use coapio::server::{get, Site};
use coapio::Endpoint;

use common::{block_on_within, text};

const LIMIT: Duration = Duration::from_secs(5);

fn hello_server() -> (Endpoint, String) {
    let site = Site::new().resource("/hello", get(|_req| async { Response::content("hello") }));
    let (ep, driver) = Endpoint::server("[::1]:0", site).unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let base = format!("coap://[::1]:{}", ep.local_addr().unwrap().port());
    (ep, base)
}

/// Driver docs: "completes ... for a client-only endpoint once every handle is dropped and no
/// request is open". Dropping the last handle after the last response must end it.
#[test]
fn client_driver_ends_when_the_last_handle_is_dropped_after_its_requests() {
    let (server, base) = hello_server();
    let (client, driver) = Endpoint::client().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(async_io::block_on(driver));
    });
    let r = block_on_within(LIMIT, client.get(&format!("{base}/hello"))).unwrap();
    assert_eq!(text(&r), "hello");
    std::thread::sleep(Duration::from_millis(200));
    drop(client);
    let ended = rx.recv_timeout(LIMIT);
    server.shutdown();
    assert!(
        ended.is_ok(),
        "the client's driver is still pending {LIMIT:?} after the last handle was dropped"
    );
}

/// Same, with a client that never sent anything: nothing is scheduled, nothing wakes it.
#[test]
fn idle_client_driver_ends_when_its_handle_is_dropped() {
    let (client, driver) = Endpoint::client().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(async_io::block_on(driver));
    });
    std::thread::sleep(Duration::from_millis(200)); // the driver has been polled once
    drop(client);
    assert!(
        rx.recv_timeout(LIMIT).is_ok(),
        "the client's driver is still pending {LIMIT:?} after its only handle was dropped"
    );
}

/// How long after the drop the driver of a client that made one request ends.
#[test]
fn client_driver_end_latency() {
    let (server, base) = hello_server();
    let (client, driver) = Endpoint::client().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(async_io::block_on(driver));
    });
    let r = block_on_within(LIMIT, client.get(&format!("{base}/hello"))).unwrap();
    assert_eq!(text(&r), "hello");
    let t = std::time::Instant::now();
    drop(client);
    let ended = rx.recv_timeout(Duration::from_secs(30));
    server.shutdown();
    assert!(ended.is_ok());
    // Not a timing claim: without the wake-up it ends only when an unrelated timer fires
    // (seconds later), or never.
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "ended only after {:?}",
        t.elapsed()
    );
}

/// Several threads share a client without a driver, each sending one request after another.
/// A request sent while another thread's future is in the middle of a step (so its own
/// try_drive fails) must still go out, also when that other future completes in the same poll.
#[test]
fn driverless_client_requests_from_several_threads_never_stall() {
    let (server, base) = hello_server();
    let (client, _driver) = Endpoint::client().unwrap();
    let uri = format!("{base}/hello");
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (client, uri, stalled) = (client.clone(), uri.clone(), stalled.clone());
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let r = async_io::block_on(async {
                        futures::future::select(
                            Box::pin(client.get(&uri)),
                            async_io::Timer::after(Duration::from_millis(1500)),
                        )
                        .await
                    });
                    if let futures::future::Either::Right(_) = r {
                        stalled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.shutdown();
    let n = stalled.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        n, 0,
        "{n} of 1200 requests got no answer within 1.5 s on loopback"
    );
}

/// `multicast` given a unicast URI: the core makes it an ordinary request, whose answer is
/// an `Event::Response` (slot.result = Some(Ok)). The stream must yield it or end.
#[test]
fn multicast_stream_to_a_unicast_uri_ends() {
    use futures::StreamExt;
    let (server, base) = hello_server();
    let (client, driver) = Endpoint::client().unwrap();
    std::thread::spawn(move || async_io::block_on(driver));
    let stream = client.multicast(
        &format!("{base}/hello"),
        coapio::proto::Request::get("/hello"),
    );
    let got = async_io::block_on(async {
        futures::future::select(
            Box::pin(stream.collect::<Vec<_>>()),
            async_io::Timer::after(Duration::from_secs(3)),
        )
        .await
    });
    server.shutdown();
    client.shutdown();
    match got {
        futures::future::Either::Left((items, _)) => {
            assert!(
                matches!(items.as_slice(), [Err(coapio::Error::InvalidRequest(_))]),
                "{items:?}"
            )
        }
        futures::future::Either::Right(_) => {
            panic!("the GroupResponses stream of a unicast request never ends")
        }
    }
}

/// `observe` of a multicast group is refused at once (nothing is sent): its answers would be
/// group responses, which an observation does not take.
#[test]
fn observing_a_group_is_refused() {
    use futures::StreamExt;
    let (client, _driver) = Endpoint::client().unwrap();
    let obs = client.observe("coap://224.0.1.187/x");
    let got = async_io::block_on(async {
        futures::future::select(
            Box::pin(obs.collect::<Vec<_>>()),
            async_io::Timer::after(Duration::from_secs(3)),
        )
        .await
    });
    client.shutdown();
    match got {
        futures::future::Either::Left((items, _)) => {
            assert!(
                matches!(items.as_slice(), [Err(coapio::Error::InvalidRequest(_))]),
                "{items:?}"
            )
        }
        futures::future::Either::Right(_) => {
            panic!("an Observation of a multicast group never ends")
        }
    }
}

/// A handler may keep its endpoint (`ServerRequest::endpoint`) across an await; when the
/// application then drops every handle and the driver without `shutdown`, in either order,
/// the endpoint still closes: its socket is released, not kept alive by the handler in a
/// cycle.
#[test]
fn a_server_dropped_with_its_driver_closes_though_a_handler_holds_its_endpoint() {
    for driver_first in [true, false] {
        let holding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = holding.clone();
        let site = Site::new().resource(
            "/hold",
            get(move |req: coapio::server::ServerRequest| {
                let endpoint = req.endpoint();
                flag.store(endpoint.is_some(), std::sync::atomic::Ordering::SeqCst);
                async move {
                    let _kept = endpoint;
                    futures::future::pending::<()>().await;
                    Response::content("never")
                }
            }),
        );
        let (server, driver) = Endpoint::server("[::1]:0", site).unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let running = std::thread::spawn(move || {
            // Ends (dropping the driver) when told to.
            async_io::block_on(futures::future::select(driver, stopped));
        });
        let (client, _) = Endpoint::client().unwrap();
        let mut request = client
            .get(&format!("coap://{addr}/hold"))
            .non_confirmable()
            .send();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !holding.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the handler never ran"
            );
            let _ = futures::FutureExt::now_or_never(&mut request);
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(request);
        if driver_first {
            stop.send(()).unwrap();
            running.join().unwrap();
            drop(server);
        } else {
            drop(server);
            stop.send(()).unwrap();
            running.join().unwrap();
        }
        std::net::UdpSocket::bind(addr).unwrap_or_else(|e| {
            panic!("driver first: {driver_first}: the server's socket was not released: {e}")
        });
    }
}
