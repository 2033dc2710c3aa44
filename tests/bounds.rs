//! The async facade stays bounded: a slow observation consumer does not make notifications
//! pile up, a handler future that never finishes is dropped, and a flood of datagrams does
//! not starve the other tasks on the driver's executor.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::future::{self, Either};
use futures::{FutureExt, StreamExt};

use coapio::message::Code;
use coapio::proto::Response;
use coapio::server::{get, Site};
use coapio::{Endpoint, TransportKind};

use common::{block_on_within, text, udp6_client, udp6_server, Running};

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn a_slow_observation_consumer_gets_the_newest_notification_and_a_bounded_queue() {
    let counter = Arc::new(AtomicU32::new(0));
    let c = counter.clone();
    let site = Site::new().resource(
        "/n",
        get(move |_req| {
            let n = c.load(Ordering::SeqCst);
            async move { Response::content(format!("{n}")) }
        })
        .obs(),
    );
    let server = udp6_server("[::1]:0", site);
    // The client's driver runs on its own thread: notifications arrive while the consumer
    // does not look.
    let client = udp6_client();
    let uri = format!("coap://[::1]:{}/n", server.port());
    block_on_within(LIMIT, async {
        let mut obs = client.ep.observe(&uri);
        assert_eq!(text(&obs.next().await.unwrap().unwrap()), "0");
        for i in 1..=40 {
            counter.store(i, Ordering::SeqCst);
            server.ep.notify("/n");
            Timer::after(Duration::from_millis(2)).await;
        }
        Timer::after(Duration::from_millis(300)).await;
        let mut queued = Vec::new();
        while let Some(item) = obs.next().now_or_never() {
            queued.push(text(&item.unwrap().unwrap()));
            assert!(queued.len() <= 40, "the stream does not end");
        }
        assert!(
            (1..=4).contains(&queued.len()),
            "{} notifications were queued: {queued:?}",
            queued.len()
        );
        assert_eq!(queued.last().map(String::as_str), Some("40"), "{queued:?}");
        assert!(obs.dropped() >= 30, "only {} dropped", obs.dropped());
    });
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_handler_future_that_never_finishes_is_dropped_and_answered_5_03() {
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let site = Site::new().resource(
        "/never",
        get(move |_req| {
            let guard = SetOnDrop(d.clone());
            async move {
                let _guard = guard;
                future::pending::<()>().await;
                Code::CONTENT
            }
        }),
    );
    let server = Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .bind("[::1]:0".parse().unwrap())
            .site(site)
            .handler_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let client = udp6_client();
    let uri = format!("coap://[::1]:{}/never", server.port());
    let start = Instant::now();
    let r = block_on_within(LIMIT, client.ep.get(&uri)).unwrap();
    assert_eq!(r.code, Code::SERVICE_UNAVAILABLE);
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler's future is still kept"
    );
}

#[test]
fn a_flood_does_not_starve_the_other_tasks_of_the_drivers_executor() {
    // A handler that takes 20 µs of CPU: the server handles fewer requests than the flood
    // brings, so its socket never runs dry.
    let site = Site::new().resource(
        "/hello",
        get(|_req| {
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            async { Response::content("hi") }
        }),
    );
    let (server, driver) = Endpoint::builder()
        .transport(TransportKind::Udp6)
        .bind("[::1]:0".parse().unwrap())
        .site(site)
        .build()
        .unwrap();
    let to = server.local_addr().unwrap();
    let flooding = Arc::new(AtomicBool::new(true));
    let f = flooding.clone();
    // NON GET /hello, as fast as one thread can send, for at most 3 s.
    let flood = std::thread::spawn(move || {
        let sock = UdpSocket::bind("[::1]:0").unwrap();
        let start = Instant::now();
        let mut mid: u16 = 0;
        for _ in 0..50_000_000u64 {
            if !f.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(3) {
                break;
            }
            mid = mid.wrapping_add(1);
            let [hi, lo] = mid.to_be_bytes();
            let _ = sock.send_to(
                &[0x50, 0x01, hi, lo, 0xb5, b'h', b'e', b'l', b'l', b'o'],
                to,
            );
        }
        Instant::now()
    });
    std::thread::sleep(Duration::from_millis(100));
    let ticked = block_on_within(LIMIT, async {
        let ticker = async {
            for _ in 0..10 {
                Timer::after(Duration::from_millis(5)).await;
            }
            Instant::now()
        };
        match future::select(driver, Box::pin(ticker)).await {
            Either::Right((at, _driver)) => at,
            Either::Left((r, _)) => panic!("the driver ended: {r:?}"),
        }
    });
    flooding.store(false, Ordering::Relaxed);
    let flood_ended = flood.join().unwrap();
    assert!(
        ticked < flood_ended,
        "the other task finished only after the flood ended"
    );
    server.shutdown();
}
