//! What the interop tests share about the peers they run: the skip-or-fail rule, a child
//! process guard, patience with our side, and the messages read from a peer's log.
//!
//! Included by the interop tests only, next to `mod common;`, as
//! `#[path = "common/peers.rs"] mod peers;`.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{block_on_within, example_site, udp6_server, Running};

pub(crate) use crate::common::skip_or_fail;

/// The real path of a Python interpreter that can run `import {modules}`, probed once per
/// test binary and module list; if there is none, says the test is skipped with `install` as
/// the way to get it (or fails, with `COAPIO_REQUIRE_PEERS=1`).
///
/// The real path, not `python3`: a version manager's `python3` may be a shell script that
/// forks the interpreter, which killing by PID would leave running.
pub(crate) fn python_with(modules: &str, install: &str) -> Option<std::path::PathBuf> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static FOUND: OnceLock<Mutex<HashMap<String, Option<std::path::PathBuf>>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    let python = {
        let mut found = found.lock().unwrap();
        found
            .entry(modules.to_owned())
            .or_insert_with(|| {
                let code = format!("import sys, {modules}; print(sys.executable)");
                let mut probe =
                    Proc::try_spawn(Command::new("python3").args(["-c", &code])).ok()?;
                let status = probe.finish(Duration::from_secs(30));
                let path = probe.stdout().trim().to_owned();
                (status.success() && !path.is_empty()).then(|| std::path::PathBuf::from(path))
            })
            .clone()
    };
    if python.is_none() {
        skip_or_fail(&format!(
            "skipped: python3 with {modules} not installed (install with `{install}`)"
        ));
    }
    python
}

/// Runs `fut` to completion on this thread, failing the test after 10 seconds.
pub(crate) fn run<F: std::future::IntoFuture>(fut: F) -> F::Output {
    block_on_within(Duration::from_secs(10), fut)
}

/// Our udp6 server on `bind`, serving the example site; and its port.
pub(crate) fn example_server(bind: &str) -> (Running, u16) {
    let running = udp6_server(bind, example_site());
    let port = running.port();
    (running, port)
}

/// A child process whose output is collected as it comes; killed (by its PID) and reaped
/// when dropped.
pub(crate) struct Proc {
    child: Child,
    what: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        Self::try_spawn(cmd).unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    pub(crate) fn try_spawn(cmd: &mut Command) -> io::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{cmd:?}");
        let mut child = cmd.spawn()?;
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Ok(Self {
            child,
            what,
            stdout,
            stderr,
            readers,
        })
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (at most `limit`) until `pred` holds for stdout and stderr together.
    pub(crate) fn wait_for_output(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if pred(&format!("{}{}", self.stdout(), self.stderr())) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `limit`, else the test fails) for the process to exit.
    pub(crate) fn finish(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < end,
                "{} did not finish within {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// One message as a peer logged it; `code` is `0.00` for an empty message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    pub(crate) incoming: bool,
    pub(crate) ty: String,
    pub(crate) code: String,
}

pub(crate) fn logged(incoming: bool, ty: &str, code: &str) -> Logged {
    Logged {
        incoming,
        ty: ty.into(),
        code: code.into(),
    }
}

/// The response a peer's client got: the last message `received` that is not an empty ACK;
/// if there is none, the test fails with `who` and the client's `log`.
pub(crate) fn last_response<'a>(received: &'a [Logged], who: &str, log: &str) -> &'a Logged {
    received
        .iter()
        .rev()
        .find(|m| m.code != "0.00")
        .unwrap_or_else(|| panic!("{who} got no response:\n{log}"))
}

/// Whether a peer server's log shows a separate response acknowledged: the empty ACK it sent,
/// then its CON 2.05 response, and after that our ACK of it.
pub(crate) fn separate_response_acked(msgs: &[Logged]) -> bool {
    let response = msgs
        .iter()
        .position(|m| !m.incoming && m.ty == "CON" && m.code == "2.05");
    response.is_some_and(|i| {
        msgs[..i].contains(&logged(false, "ACK", "0.00"))
            && msgs[i..].contains(&logged(true, "ACK", "0.00"))
    })
}
