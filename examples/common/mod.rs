//! What the examples share: a logger and the example server's resources.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coapio::message::Code;
use coapio::proto::Response;
use coapio::server::{get, Resource, Site};

/// Prints coapio's log to stderr when `RUST_LOG` asks for debug or trace (a few lines instead
/// of a logger dependency): `RUST_LOG=coapio=trace` shows every datagram.
pub(crate) fn log_to_stderr() {
    struct Stderr(log::LevelFilter);
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= self.0
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                eprintln!("[{}] {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("RUST_LOG").unwrap_or_default() {
        v if v.contains("trace") => log::LevelFilter::Trace,
        v if v.contains("debug") => log::LevelFilter::Debug,
        _ => return,
    };
    if log::set_logger(Box::leak(Box::new(Stderr(level)))).is_ok() {
        log::set_max_level(level);
    }
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02} UTC")
}

/// The example server's resources: `/hello`, `/time` (observable: see `tick`), `/slow`
/// (answers after `slow`),
/// `/echo`, and `/large` (1 MiB of text, served block-wise).
pub(crate) fn example_site(slow: Duration) -> Site {
    let large: std::sync::Arc<Vec<u8>> = std::sync::Arc::new(
        (0..1 << 20)
            .map(|i| {
                if i % 64 == 63 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect(),
    );
    Site::new()
        .resource(
            "/large",
            get(move |_req| {
                let large = large.clone();
                async move { Response::content(large.to_vec()) }
            })
            .rt("block")
            .sz(1 << 20),
        )
        .resource(
            "/hello",
            get(|_req| async { Response::content("Hello, world!") })
                .title("Greeting")
                .ct(0),
        )
        .resource(
            "/time",
            get(|_req| async {
                let mut r = Response::content(utc_now());
                r.options
                    .set_uint(coapio::message::OptionNumber::MAX_AGE, 1);
                r
            })
            .rt("clock")
            .ct(0)
            .obs(),
        )
        .resource(
            "/slow",
            get(move |_req| async move {
                async_io::Timer::after(slow).await;
                Response::content("sorry for the wait")
            })
            .title("A slow answer"),
        )
        .resource(
            "/echo",
            Resource::new()
                .post(|req| async move { Response::new(Code::CHANGED).with_payload(req.payload()) })
                .put(|req| async move { Response::new(Code::CHANGED).with_payload(req.payload()) }),
        )
}

/// Notifies the observers of `/time` once a second, for the life of the process.
pub(crate) fn tick(endpoint: coapio::Endpoint) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        endpoint.notify("/time");
    });
}

/// `builder` with DTLS client credentials (needs the `dtls` feature).
#[allow(dead_code)]
pub(crate) fn with_psk_client(
    builder: coapio::Builder,
    identity: String,
    key: String,
) -> Result<coapio::Builder, String> {
    #[cfg(feature = "dtls")]
    {
        Ok(builder.dtls(coapio::dtls::DtlsConfig::psk_client(identity, key)))
    }
    #[cfg(not(feature = "dtls"))]
    {
        let _ = (builder, identity, key);
        Err("--psk-identity/--psk-key need coapio built with `--features dtls`".into())
    }
}

/// A server of `site` over DTLS on `bind`, accepting `identity` with `key`: its endpoint,
/// driver and address (needs the `dtls` feature).
#[allow(dead_code)]
pub(crate) fn psk_server(
    bind: std::net::SocketAddr,
    site: Site,
    identity: String,
    key: String,
) -> Result<(coapio::Endpoint, coapio::Driver, std::net::SocketAddr), String> {
    #[cfg(feature = "dtls")]
    {
        let config = coapio::dtls::DtlsConfig::psk_server(move |id: &[u8]| {
            (id == identity.as_bytes()).then(|| key.clone().into_bytes())
        });
        let (endpoint, driver) = coapio::Endpoint::builder()
            .bind(bind)
            .site(site)
            .dtls(config)
            .build()
            .map_err(|e| e.to_string())?;
        let local = endpoint.local_addr().map_err(|e| e.to_string())?;
        Ok((endpoint, driver, local))
    }
    #[cfg(not(feature = "dtls"))]
    {
        let _ = (bind, site, identity, key);
        Err("--psk-identity/--psk-key need coapio built with `--features dtls`".into())
    }
}
