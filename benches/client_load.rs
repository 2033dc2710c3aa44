//! coapio's client under load: keeps W Confirmable GETs in flight against any CoAP server
//! through the Rust API (`Endpoint::send` futures, the driver beside them on one thread) and
//! reports requests per second, latency and CPU per request, in the line format of the other
//! load generators (`benches/peers/bare_udp.c`).
//!
//! ```text
//! cargo bench --bench client_load -- --target 127.0.0.1:5683 --path /hello --window 64 \
//!     [--requests 300000] [--seconds 10] [--server-pid PID]
//! ```
//!
//! NSTART is set to the window, so that all W requests go out at once. A client may not use a
//! message ID towards one server twice within EXCHANGE_LIFETIME (247 s), so after 60 000
//! requests the benchmark moves to a new endpoint (a new port), as a real client with this
//! much traffic would spread it over several. It stops after `--requests` answers or
//! `--seconds`; CPU time is the whole process's (user + system, async-io's thread too), and
//! the server's from `/proc/PID/stat`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use coapio::proto::{Config, Request};
use coapio::Endpoint;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_time;

#[path = "support/args.rs"]
mod args;
use args::{arg, value};

fn main() -> ExitCode {
    let Some(target) = value("--target").and_then(|t| t.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: client_load --target ADDR [--path P] [--window W] [--requests N] [--seconds S] [--server-pid PID]");
        return ExitCode::FAILURE;
    };
    let path = value("--path").unwrap_or_else(|| "/hello".into());
    let window = arg("--window", 1).clamp(1, 4096);
    let requests = arg("--requests", 300_000).max(1);
    let seconds = arg("--seconds", 10).max(1) as u64;
    let server_pid = value("--server-pid").and_then(|v| v.parse::<u32>().ok());
    let me = std::process::id();

    let server_before = server_pid.and_then(cpu_time);
    let client_before = cpu_time(me);
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(seconds);
    let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
    let mut failed = 0usize;
    async_io::block_on(async {
        while latencies.len() < requests && Instant::now() < stop_at {
            let mut config = Config::default();
            config.nstart = window;
            let (client, driver) = match Endpoint::builder()
                .bind(
                    if target.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    }
                    .parse()
                    .unwrap(),
                )
                .config(config)
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("client_load: {e}");
                    return;
                }
            };
            let share = (requests - latencies.len()).min(60_000);
            let load = async {
                let mut inflight = FuturesUnordered::new();
                let (mut issued, mut done) = (0usize, 0usize);
                while done < share {
                    while issued < share && inflight.len() < window && Instant::now() < stop_at {
                        let sent = Instant::now();
                        let response = client.send(target, Request::get(&path));
                        inflight.push(async move { (sent, response.await) });
                        issued += 1;
                    }
                    let Some((sent, result)) = inflight.next().await else {
                        break;
                    };
                    done += 1;
                    match result {
                        Ok(r) if r.code.is_success() => latencies.push(sent.elapsed()),
                        Ok(r) => {
                            failed += 1;
                            if failed == 1 {
                                eprintln!("client_load: answered {}", r.code);
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            if failed == 1 {
                                eprintln!("client_load: {e}");
                            }
                        }
                    }
                }
            };
            // The driver runs beside the load on this thread, as a task of a single-threaded
            // executor would; it ends with the load.
            futures::pin_mut!(load);
            let _ = futures::future::select(driver, load).await;
            client.shutdown();
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let answered = latencies.len();
    if answered == 0 {
        eprintln!("no answers from {target}");
        return ExitCode::FAILURE;
    }
    if failed > 0 {
        eprintln!("client_load: failed={failed}");
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((answered as f64 * p) as usize).min(answered - 1)].as_micros();
    let per = |before: Option<Duration>, pid: Option<u32>| match (before, pid.and_then(cpu_time)) {
        (Some(b), Some(a)) => format!("{:.1}us", (a - b).as_secs_f64() * 1e6 / answered as f64),
        _ => "-".into(),
    };
    println!(
        "window={window} answered={answered} seconds={elapsed:.2} req/s={:.0} p50={}us p99={}us server_cpu_per_req={} client_cpu_per_req={}",
        answered as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        per(server_before, server_pid),
        per(client_before, Some(me)),
    );
    ExitCode::SUCCESS
}
