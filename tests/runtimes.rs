//! The same small client ↔ server exchange under every executor the facade promises to work
//! with: `async_io::block_on`, smol, async-std, and tokio (current-thread and multi-thread).
//! Readiness comes from async-io's reactor thread, so none of them needs a driver of its own.

use std::time::Duration;

use coapio::message::Code;
use coapio::proto::{Request, Response};
use coapio::server::{get, Resource, Site};
use coapio::{Driver, Endpoint, TransportKind};

/// The bound on each runtime's whole exchange.
const LIMIT: Duration = Duration::from_secs(10);

fn site() -> Site {
    Site::new()
        .resource(
            "/hello",
            get(|_req| async { Response::content("Hello, world!") }),
        )
        .resource(
            "/echo",
            Resource::new()
                .put(|req| async move { Response::new(Code::CHANGED).with_payload(req.payload()) }),
        )
        .resource(
            "/slow",
            get(|_req| async {
                async_io::Timer::after(Duration::from_millis(150)).await;
                Response::content("late")
            }),
        )
}

/// A server on `[::1]` and a client, both udp6; and the server's base URI.
fn pair() -> ((Endpoint, Driver), (Endpoint, Driver), String) {
    let server = Endpoint::builder()
        .transport(TransportKind::Udp6)
        .bind("[::1]:0".parse().unwrap())
        .site(site())
        .build()
        .expect("cannot start the server");
    let client = Endpoint::builder()
        .transport(TransportKind::Udp6)
        .build()
        .expect("cannot start the client");
    let base = format!("coap://[::1]:{}", server.0.local_addr().unwrap().port());
    (server, client, base)
}

/// A few GETs (one of them answered separately, one non-confirmable) and a PUT; then both
/// endpoints are shut down.
async fn exchange(client: &Endpoint, server: &Endpoint, base: &str) {
    for _ in 0..3 {
        let r = client.get(&format!("{base}/hello")).await.unwrap();
        assert_eq!(
            (r.code, r.payload.as_slice()),
            (Code::CONTENT, &b"Hello, world!"[..])
        );
    }
    let r = client
        .request(
            &format!("{base}/hello"),
            Request::new(Code::GET).non_confirmable(),
        )
        .await
        .unwrap();
    assert_eq!(r.code, Code::CONTENT);
    let r = client.get(&format!("{base}/slow")).await.unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CONTENT, &b"late"[..])
    );
    let r = client
        .put(&format!("{base}/echo"), "put payload")
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CHANGED, &b"put payload"[..])
    );
    client.shutdown();
    server.shutdown();
}

/// Runs `fut`, failing the test after [`LIMIT`] (a timer of async-io's, so it works under any
/// executor).
async fn within_limit<F: std::future::IntoFuture>(fut: F) -> F::Output {
    use futures::future::{select, Either};
    match select(Box::pin(fut.into_future()), async_io::Timer::after(LIMIT)).await {
        Either::Left((out, _)) => out,
        Either::Right(_) => panic!("not done within {LIMIT:?}"),
    }
}

#[test]
fn async_io_block_on() {
    let ((server, server_driver), (client, client_driver), base) = pair();
    let (drivers, ()) = async_io::block_on(within_limit(futures::future::join(
        futures::future::join(server_driver, client_driver),
        exchange(&client, &server, &base),
    )));
    drivers.0.unwrap();
    drivers.1.unwrap();
}

#[test]
fn smol() {
    let ((server, server_driver), (client, client_driver), base) = pair();
    smol::block_on(within_limit(async {
        smol::spawn(server_driver).detach();
        let client_task = smol::spawn(client_driver);
        exchange(&client, &server, &base).await;
        client_task.await.unwrap();
    }));
}

#[test]
fn async_std() {
    let ((server, server_driver), (client, client_driver), base) = pair();
    async_std::task::block_on(within_limit(async {
        let server_task = async_std::task::spawn(server_driver);
        let client_task = async_std::task::spawn(client_driver);
        exchange(&client, &server, &base).await;
        server_task.await.unwrap();
        client_task.await.unwrap();
    }));
}

#[test]
fn tokio_current_thread() {
    let ((server, server_driver), (client, client_driver), base) = pair();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server_task = tokio::spawn(server_driver);
        let client_task = tokio::spawn(client_driver);
        tokio::time::timeout(LIMIT, exchange(&client, &server, &base))
            .await
            .expect("exchange timed out");
        server_task.await.unwrap().unwrap();
        client_task.await.unwrap().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_multi_thread() {
    let ((server, server_driver), (client, client_driver), base) = pair();
    let server_task = tokio::spawn(server_driver);
    let client_task = tokio::spawn(client_driver);
    // The exchange itself on another worker than this test's task, too.
    let exchange_task = tokio::spawn(async move { exchange(&client, &server, &base).await });
    tokio::time::timeout(LIMIT, exchange_task)
        .await
        .expect("exchange timed out")
        .unwrap();
    tokio::time::timeout(LIMIT, server_task)
        .await
        .expect("server driver did not end")
        .unwrap()
        .unwrap();
    tokio::time::timeout(LIMIT, client_task)
        .await
        .expect("client driver did not end")
        .unwrap()
        .unwrap();
}
