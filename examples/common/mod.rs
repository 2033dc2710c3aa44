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

/// The DTLS flags of the server and client examples: `--psk-identity TEXT --psk-key TEXT`,
/// `--cert FILE --key FILE` (PEM), `--ca FILE` (PEM).
#[derive(Debug, Default)]
pub(crate) struct DtlsFlags {
    psk_identity: Option<String>,
    psk_key: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
}

impl DtlsFlags {
    /// Takes `flag` with its `value` if it is one of these; `false` if it is not.
    pub(crate) fn take(&mut self, flag: &str, value: Option<String>) -> Result<bool, String> {
        let slot = match flag {
            "--psk-identity" => &mut self.psk_identity,
            "--psk-key" => &mut self.psk_key,
            "--cert" => &mut self.cert,
            "--key" => &mut self.key,
            "--ca" => &mut self.ca,
            _ => return Ok(false),
        };
        *slot = Some(value.ok_or_else(|| format!("{flag} needs a value"))?);
        Ok(true)
    }

    /// Whether any DTLS flag was given.
    pub(crate) fn any(&self) -> bool {
        self.psk_identity.is_some()
            || self.psk_key.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.ca.is_some()
    }

    #[cfg(feature = "dtls")]
    fn config(&self, server: bool) -> Result<coapio::dtls::DtlsConfig, String> {
        let read = |f: &String| std::fs::read(f).map_err(|e| format!("{f}: {e}"));
        let mut c = coapio::dtls::DtlsConfig::default();
        c.accept = server;
        match (&self.psk_identity, &self.psk_key) {
            (None, None) => {}
            (Some(identity), Some(key)) => {
                if server {
                    let (identity, key) = (identity.clone(), key.clone());
                    c.psk_lookup = Some(std::sync::Arc::new(move |id: &[u8]| {
                        (id == identity.as_bytes()).then(|| key.clone().into_bytes())
                    }));
                } else {
                    c.psk = Some((identity.clone().into_bytes(), key.clone().into_bytes()));
                }
            }
            _ => return Err("--psk-identity and --psk-key go together".into()),
        }
        match (&self.cert, &self.key) {
            (None, None) => {}
            (Some(cert), Some(key)) => c.certificate = Some((read(cert)?, read(key)?)),
            _ => return Err("--cert and --key go together".into()),
        }
        if let Some(ca) = &self.ca {
            c.trusted_ca = Some(read(ca)?);
        }
        Ok(c)
    }

    /// `builder` with these credentials for `coaps://` requests.
    #[allow(dead_code)]
    pub(crate) fn client(&self, builder: coapio::Builder) -> Result<coapio::Builder, String> {
        #[cfg(feature = "dtls")]
        {
            Ok(builder.dtls(self.config(false)?))
        }
        #[cfg(not(feature = "dtls"))]
        {
            let _ = builder;
            Err("the DTLS flags need the examples built with `--features dtls`".into())
        }
    }

    /// A server of `site` over DTLS on `bind` with these credentials: its endpoint, driver
    /// and address.
    #[allow(dead_code)]
    pub(crate) fn server(
        &self,
        bind: std::net::SocketAddr,
        site: Site,
    ) -> Result<(coapio::Endpoint, coapio::Driver, std::net::SocketAddr), String> {
        #[cfg(feature = "dtls")]
        {
            let (endpoint, driver) = coapio::Endpoint::builder()
                .bind(bind)
                .site(site)
                .dtls(self.config(true)?)
                .build()
                .map_err(|e| e.to_string())?;
            let local = endpoint.local_addr().map_err(|e| e.to_string())?;
            Ok((endpoint, driver, local))
        }
        #[cfg(not(feature = "dtls"))]
        {
            let _ = (bind, site);
            Err("the DTLS flags need the examples built with `--features dtls`".into())
        }
    }
}

/// Adds the OSCORE security context stored in `dir` (aiocoap's format) to `builder`, used
/// for requests to URIs matching `pattern`.
#[allow(dead_code)]
pub(crate) fn oscore_dir(
    builder: coapio::Builder,
    pattern: Option<&str>,
    dir: &str,
) -> Result<coapio::Builder, String> {
    #[cfg(feature = "oscore")]
    {
        builder.oscore_dir(pattern, dir).map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "oscore"))]
    {
        let _ = (builder, pattern, dir);
        Err("OSCORE needs coapio built with `--features oscore`".into())
    }
}

/// Makes `builder` serve only OSCORE-protected requests.
#[allow(dead_code)]
pub(crate) fn require_oscore(builder: coapio::Builder) -> coapio::Builder {
    #[cfg(feature = "oscore")]
    return builder.require_oscore();
    #[cfg(not(feature = "oscore"))]
    builder
}
