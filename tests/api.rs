//! The Rust API as a user meets it, on loopback: the request builder, the one place for the
//! path, lazy futures, timeouts that say where and after how long, host names resolved off
//! the executor, errors with their causes, and handlers that reach their endpoint.

mod common;

use std::error::Error as _;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use coapio::server::{Resource, Site};
use coapio::{Builder, Code, ContentFormat, Endpoint, Error, OptionNumber, Request, Response};
use common::{block_on_within, text, udp6_server};

const LIMIT: Duration = Duration::from_secs(5);

/// A server whose `/echo` answers with what it got: method, Content-Format, Accept, the
/// message type and the payload.
fn echo_server() -> common::Running {
    let describe = |req: coapio::server::ServerRequest| async move {
        let described = format!(
            "{} cf={:?} accept={:?} con={} etag={:?} {}",
            req.method(),
            req.content_format().map(|c| c.0),
            req.accept().map(|c| c.0),
            req.is_confirmable(),
            req.options().get(OptionNumber::ETAG),
            String::from_utf8_lossy(req.payload()),
        );
        Response::content(described)
    };
    let echo = Resource::new()
        .get(describe)
        .put(describe)
        .post(describe)
        .method(Code::FETCH, describe);
    udp6_server("[::1]:0", Site::new().resource("/echo", echo))
}

#[test]
fn the_builder_sets_everything_but_the_path() {
    let server = echo_server();
    let (client, _) = Endpoint::client().unwrap();
    let uri = format!("coap://[::1]:{}/echo", server.port());
    let r = block_on_within(
        LIMIT,
        client
            .put(&uri, "{}")
            .content_format(ContentFormat::JSON)
            .accept(ContentFormat::CBOR)
            .option(OptionNumber::ETAG, [1, 2])
            .non_confirmable()
            .timeout(Duration::from_secs(2)),
    )
    .unwrap();
    assert_eq!(
        text(&r),
        "0.03 PUT cf=Some(50) accept=Some(60) con=false etag=Some([1, 2]) {}"
    );
    // How it arrived: piggybacked, from the server's address.
    let how = r.received().expect("it came from the network");
    assert_eq!(how.source, server.ep.local_addr().unwrap());
    assert_eq!(
        how.ty,
        coapio::Type::Non,
        "a NON request gets a NON response"
    );
    let r = block_on_within(LIMIT, client.method(Code::FETCH, &uri).payload("q")).unwrap();
    assert_eq!(r.received().unwrap().ty, coapio::Type::Ack);
    assert_eq!(
        text(&r),
        "0.05 FETCH cf=None accept=None con=true etag=None q"
    );
    // The future of send() is 'static: it can go to another thread.
    let fut = client.get(&uri).send();
    let r = std::thread::spawn(move || block_on_within(LIMIT, fut))
        .join()
        .unwrap();
    assert!(text(&r.unwrap()).contains(" GET "));
    server.stop();
}

#[test]
fn a_path_in_the_request_and_in_the_uri_is_refused_not_replaced() {
    let server = echo_server();
    let (client, _) = Endpoint::client().unwrap();
    let uri = format!("coap://[::1]:{}/echo", server.port());
    let e = block_on_within(LIMIT, client.request(&uri, Request::get("/other"))).unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    assert!(e.to_string().contains("Uri-Path"), "{e}");
    let e = block_on_within(
        LIMIT,
        client.get(&uri).option(OptionNumber::URI_QUERY, "x=1"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("Uri-Query"), "{e}");
    // send() takes the options as they are.
    let r = block_on_within(
        LIMIT,
        client.send(server.ep.local_addr().unwrap(), Request::get("/echo")),
    );
    assert!(text(&r.unwrap()).contains(" GET "));
    server.stop();
}

#[test]
fn nothing_is_sent_before_the_first_poll() {
    let peer = UdpSocket::bind("[::1]:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (client, _) = Endpoint::client().unwrap();
    let uri = format!("coap://[::1]:{}/x", peer.local_addr().unwrap().port());
    let unpolled = client.get(&uri).timeout(Duration::from_millis(200));
    let mut buf = [0u8; 64];
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "sent before it was polled"
    );
    let e = block_on_within(LIMIT, unpolled).unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(peer.recv_from(&mut buf).is_ok(), "sent once polled");
}

#[test]
fn timeouts_say_where_and_after_how_long() {
    let silent = UdpSocket::bind("[::1]:0").unwrap();
    let to = silent.local_addr().unwrap();
    // The endpoint's own timeout, for requests without one.
    let (client, _) = Builder::new()
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let e = block_on_within(LIMIT, client.get(&format!("coap://{to}/x"))).unwrap_err();
    let took = start.elapsed();
    match &e {
        Error::Timeout { remote, after } => {
            assert_eq!(*remote, to);
            assert!(
                *after >= Duration::from_millis(300) && *after <= took,
                "{after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("no response from {to} after 3")),
        "{e}"
    );
    // A request's own timeout wins.
    let start = Instant::now();
    let e = block_on_within(
        LIMIT,
        client
            .get(&format!("coap://{to}/x"))
            .timeout(Duration::from_millis(100)),
    )
    .unwrap_err();
    assert!(
        e.is_timeout() && start.elapsed() < Duration::from_millis(290),
        "{e}"
    );
}

#[test]
fn host_names_resolve_and_their_errors_keep_the_cause() {
    let server = echo_server();
    let (client, _) = Endpoint::client().unwrap();
    // "localhost" goes through the system's resolver, on the blocking pool.
    let r = block_on_within(
        LIMIT,
        client.get(&format!("coap://localhost:{}/echo", server.port())),
    );
    match r {
        Ok(r) => assert!(text(&r).contains(" GET ")),
        // Some systems resolve localhost to 127.0.0.1 only, where this server does not
        // listen: then ICMP says so, which is still an answer about the right address.
        Err(Error::Network { remote, .. }) => assert_eq!(remote.port(), server.port()),
        Err(e) => panic!("{e:?}"),
    }
    // .invalid never resolves (RFC 6761).
    let e = block_on_within(LIMIT, client.get("coap://name.invalid/x")).unwrap_err();
    match &e {
        Error::Resolve { host, source } => {
            assert_eq!(host, "name.invalid");
            assert_eq!(e.source().unwrap().to_string(), source.to_string());
            assert!(
                !e.to_string().contains(&source.to_string()),
                "said twice: {e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let e = block_on_within(LIMIT, client.get("coap://[::1/x")).unwrap_err();
    assert!(
        matches!(e, Error::InvalidUri { .. }) && e.source().is_some(),
        "{e:?}"
    );
    server.stop();
}

#[test]
fn bind_errors_name_the_address() {
    let taken = UdpSocket::bind("[::1]:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Builder::new().bind(addr).build().map(|_| ()).unwrap_err();
    assert!(
        matches!(e, Error::Bind { addr: a, .. } if a == addr),
        "{e:?}"
    );
    assert_eq!(e.to_string(), format!("cannot bind {addr}"));
    let cause = e.source().expect("the system's error");
    assert_eq!(
        cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::AddrInUse)
    );
    // `?` into io::Error keeps the kind.
    assert_eq!(
        std::io::Error::from(e).kind(),
        std::io::ErrorKind::AddrInUse
    );
}

#[test]
fn a_handler_reaches_its_endpoint_to_notify_after_a_put() {
    let value = Arc::new(Mutex::new(b"1".to_vec()));
    let (read, write) = (value.clone(), value);
    let site = Site::new().resource(
        "/v",
        Resource::new()
            .get(move |_req| {
                let v = read.lock().unwrap().clone();
                async move { Response::content(v) }
            })
            .put(move |req| {
                *write.lock().unwrap() = req.payload().to_vec();
                let notified = req.endpoint().map(|ep| ep.notify("/v"));
                async move {
                    match notified {
                        Some(1) => Response::new(Code::CHANGED),
                        other => Response::new(Code::INTERNAL_SERVER_ERROR)
                            .with_payload(format!("notified {other:?}")),
                    }
                }
            })
            .obs(),
    );
    let server = udp6_server("[::1]:0", site);
    let (client, _) = Endpoint::client().unwrap();
    let uri = format!("coap://[::1]:{}/v", server.port());
    let got = block_on_within(LIMIT, async {
        let mut observation = client.observe(&uri);
        let first = text(&observation.next().await.unwrap().unwrap());
        let put = client.put(&uri, "2").await.unwrap();
        assert_eq!(put.code, Code::CHANGED, "{}", text(&put));
        let second = text(&observation.next().await.unwrap().unwrap());
        (first, second)
    });
    assert_eq!(got, ("1".to_owned(), "2".to_owned()));
    server.stop();
}

#[test]
fn cancelling_an_observation_tells_the_server() {
    let (server, ticker) = common::ticking_clock("[::1]:0", 0);
    let (client, _) = Endpoint::client().unwrap();
    let uri = format!("coap://[::1]:{}/clock", server.port());
    let answer = block_on_within(LIMIT, async {
        let mut observation = client.observe(&uri);
        observation.next().await.unwrap().unwrap();
        assert_eq!(server.ep.stats().observers, 1);
        observation.cancel().await
    })
    .unwrap()
    .expect("the server answered the deregistration");
    assert_eq!(answer.code, Code::CONTENT);
    assert!(
        !answer.options.contains(OptionNumber::OBSERVE),
        "{answer:?}"
    );
    assert_eq!(
        server.ep.stats().observers,
        0,
        "the server forgot the observer"
    );
    assert_eq!(client.stats().open_requests, 0);
    // Not confirmed yet: nothing to tell.
    let silent = UdpSocket::bind("[::1]:0").unwrap();
    let unconfirmed = client.observe(&format!("coap://{}/x", silent.local_addr().unwrap()));
    assert!(block_on_within(LIMIT, unconfirmed.cancel())
        .unwrap()
        .is_none());
    ticker.join().unwrap();
    server.stop();
}
