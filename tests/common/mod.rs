//! What the integration tests share about our side: an endpoint whose driver runs on a
//! thread, udp6 servers and clients, the test server's resources, and small helpers.
//!
//! What only the interop tests need (peer processes, their logs) is in `peers.rs`, included
//! as `mod peers`.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::future::IntoFuture;
use std::io;
use std::net::UdpSocket;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_io::Timer;
use futures::future::{self, Either};

use coapio::message::Code;
use coapio::proto::Response;
use coapio::server::{get, Resource, ServerRequest, Site};
use coapio::{Driver, Endpoint, TransportKind};

/// How long the `/slow` resource takes: well past the default `empty_ack_delay` (100 ms)
/// after which an empty ACK goes out.
pub(crate) const SLOW: Duration = Duration::from_millis(300);

/// Runs `fut` to completion on this thread, failing the test if it takes longer than `limit`.
pub(crate) fn block_on_within<F: IntoFuture>(limit: Duration, fut: F) -> F::Output {
    async_io::block_on(async {
        match future::select(Box::pin(fut.into_future()), Timer::after(limit)).await {
            Either::Left((out, _)) => out,
            Either::Right(_) => panic!("not done within {limit:?}"),
        }
    })
}

/// An endpoint whose driver runs on a thread of its own; shut down on drop.
pub(crate) struct Running {
    pub(crate) ep: Endpoint,
    done: Option<mpsc::Receiver<Result<(), coapio::Error>>>,
}

impl Running {
    pub(crate) fn spawn((ep, driver): (Endpoint, Driver)) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(async_io::block_on(driver));
        });
        Self { ep, done: Some(rx) }
    }

    pub(crate) fn port(&self) -> u16 {
        self.ep.local_addr().unwrap().port()
    }

    /// Shuts the endpoint down and checks that its driver ends, cleanly, within a second.
    pub(crate) fn stop(mut self) {
        self.ep.shutdown();
        let done = self.done.take().unwrap();
        done.recv_timeout(Duration::from_secs(1))
            .expect("the driver did not end within a second of shutdown")
            .expect("the driver failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ep.shutdown();
    }
}

/// Our udp6 server on `bind`, serving `site`.
pub(crate) fn udp6_server(bind: &str, site: Site) -> Running {
    Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .bind(bind.parse().unwrap())
            .site(site)
            .build()
            .expect("cannot start the udp6 server"),
    )
}

/// Our udp6 client.
pub(crate) fn udp6_client() -> Running {
    Running::spawn(
        Endpoint::builder()
            .transport(TransportKind::Udp6)
            .build()
            .expect("cannot start the udp6 client"),
    )
}

/// The example server's resources (`examples/common`: `/hello`, `/time`, `/slow`, `/echo`),
/// and `/item`, which PUT creates or changes, GET reads and DELETE removes.
pub(crate) fn example_site() -> Site {
    let echo = |req: ServerRequest| async move {
        Response::new(Code::CHANGED).with_payload(req.payload())
    };
    let item = Arc::new(Mutex::new(None::<Vec<u8>>));
    let (on_get, on_put, on_delete) = (item.clone(), item.clone(), item);
    Site::new()
        .resource(
            "/hello",
            get(|_req| async { Response::content("Hello, world!") })
                .title("Greeting")
                .ct(0),
        )
        .resource(
            "/time",
            get(|_req| async { Response::content("12:00:00 UTC") })
                .rt("clock")
                .ct(0),
        )
        .resource(
            "/slow",
            get(|_req| async {
                Timer::after(SLOW).await;
                Response::content("sorry for the wait")
            })
            .title("A slow answer"),
        )
        .resource("/echo", Resource::new().post(echo).put(echo))
        .resource(
            "/item",
            Resource::new()
                .get(move |_req| {
                    let item = on_get.clone();
                    async move {
                        match item.lock().unwrap().clone() {
                            Some(v) => Response::new(Code::CONTENT).with_payload(v),
                            None => Response::new(Code::NOT_FOUND),
                        }
                    }
                })
                .put(move |req| {
                    let item = on_put.clone();
                    async move {
                        let created = item
                            .lock()
                            .unwrap()
                            .replace(req.payload().to_vec())
                            .is_none();
                        if created {
                            Code::CREATED
                        } else {
                            Code::CHANGED
                        }
                    }
                })
                .delete(move |_req| {
                    let item = on_delete.clone();
                    async move {
                        item.lock().unwrap().take();
                        Code::DELETED
                    }
                }),
        )
}

/// A port that was free a moment ago (bound, read and released): nothing listens on it.
pub(crate) fn free_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Says a test is skipped because something it needs is missing (`msg` says what, and how
/// to install it), or fails it if `COAPIO_REQUIRE_PEERS=1`, as CI sets it.
///
/// The message goes straight to the process's stderr, past the test harness's capture of
/// `print!`/`eprint!`, so that `cargo test` shows it although the test passes.
pub(crate) fn skip_or_fail(msg: &str) {
    if std::env::var("COAPIO_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{msg} (COAPIO_REQUIRE_PEERS=1 makes a skip a failure)");
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    use std::io::Write;
    let _ = writeln!(io::stderr(), "\n*** {test}: {msg}");
}

/// The path of the example program `name`, which `cargo test` builds next to the tests.
pub(crate) fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("examples").join(name)
}

/// A response's payload as text.
pub(crate) fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

/// A site with an observable `/clock` ("tick N") and the counter N it shows.
pub(crate) fn clock_site() -> (Site, Arc<std::sync::atomic::AtomicU32>) {
    use std::sync::atomic::{AtomicU32, Ordering};
    let counter = Arc::new(AtomicU32::new(0));
    let c = counter.clone();
    let site = Site::new().resource(
        "/clock",
        get(move |_req| {
            let n = c.load(Ordering::SeqCst);
            async move { Response::content(format!("tick {n}")) }
        })
        .obs(),
    );
    (site, counter)
}

/// Moves `counter` up and notifies `ep`'s observers of `/clock` every 100 ms, `ticks` times,
/// on a thread of its own.
pub(crate) fn tick(
    ep: Endpoint,
    counter: Arc<std::sync::atomic::AtomicU32>,
    ticks: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..ticks {
            std::thread::sleep(Duration::from_millis(100));
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ep.notify("/clock");
        }
    })
}

/// Our udp6 server on `bind` with an observable `/clock` ("tick N"), whose value goes up and
/// whose observers are notified every 100 ms, `ticks` times (a bounded thread, joined by the
/// caller through the returned handle).
pub(crate) fn ticking_clock(bind: &str, ticks: usize) -> (Running, std::thread::JoinHandle<()>) {
    let (site, counter) = clock_site();
    let server = udp6_server(bind, site);
    let ticker = tick(server.ep.clone(), counter, ticks);
    (server, ticker)
}

/// The target directory of this test run (`<target>/debug/deps/<test>-…` → `<target>`).
pub(crate) fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("the target directory")
        .to_path_buf()
}

/// Runs `ip ARGS` (iproute2) quietly; whether it succeeded.
pub(crate) fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
