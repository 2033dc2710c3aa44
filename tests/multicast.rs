//! Multicast between hosts (RFC 7252 §8): three network namespaces that this test makes
//! itself, joined by a bridge in a fourth — two servers (`server --multicast eth0`) and a
//! client (`discover`). The client's multicast GET of `/.well-known/core` gets both servers'
//! answers, from their unicast addresses, over IPv6 (`ff02::fd`) and IPv4 (`224.0.1.187`);
//! a GET of a path that does not exist gets no answer at all (no 4.04 to multicast).
//!
//! Needs root (`ip netns add`); without it the test says it is skipped. No traffic leaves the
//! namespaces, which are deleted at the end.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(2)
        .expect("target dir")
        .join("examples")
        .join(name)
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespaces, deleted (with everything in them) when dropped.
struct Hosts {
    prefix: String,
    servers: Vec<Child>,
}

impl Hosts {
    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn make() -> Option<Self> {
        let prefix = format!("coapio{}", std::process::id());
        let hosts = Self {
            prefix,
            servers: Vec::new(),
        };
        let br = hosts.ns("br");
        if !ip(&["netns", "add", &br]) {
            return None;
        }
        let ok = ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &br, "link", "set", "br0", "up"]);
        assert!(ok, "cannot make the bridge");
        for (i, host) in ["s1", "s2", "c"].iter().enumerate() {
            let ns = hosts.ns(host);
            let (v, b) = (
                format!("v{host}{}", std::process::id() % 100_000),
                format!("b{host}{}", std::process::id() % 100_000),
            );
            let steps: Vec<Vec<String>> = vec![
                vec!["netns".into(), "add".into(), ns.clone()],
                vec![
                    "link".into(),
                    "add".into(),
                    v.clone(),
                    "type".into(),
                    "veth".into(),
                    "peer".into(),
                    "name".into(),
                    b.clone(),
                ],
                vec![
                    "link".into(),
                    "set".into(),
                    v.clone(),
                    "netns".into(),
                    ns.clone(),
                ],
                vec![
                    "link".into(),
                    "set".into(),
                    b.clone(),
                    "netns".into(),
                    br.clone(),
                ],
                vec![
                    "-n".into(),
                    br.clone(),
                    "link".into(),
                    "set".into(),
                    b.clone(),
                    "master".into(),
                    "br0".into(),
                ],
                vec![
                    "-n".into(),
                    br.clone(),
                    "link".into(),
                    "set".into(),
                    b.clone(),
                    "up".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    v.clone(),
                    "name".into(),
                    "eth0".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    "lo".into(),
                    "up".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    "eth0".into(),
                    "up".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "addr".into(),
                    "add".into(),
                    format!("10.77.0.{}/24", i + 1),
                    "dev".into(),
                    "eth0".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "route".into(),
                    "add".into(),
                    "224.0.0.0/4".into(),
                    "dev".into(),
                    "eth0".into(),
                ],
            ];
            for step in steps {
                let args: Vec<&str> = step.iter().map(String::as_str).collect();
                assert!(ip(&args), "ip {}", args.join(" "));
            }
        }
        // Link-local addresses need a moment (duplicate address detection).
        std::thread::sleep(Duration::from_secs(2));
        Some(hosts)
    }

    fn serve(&mut self, host: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .arg(example("server"))
            .args(["--bind", "[::]:5683", "--multicast", "eth0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a server");
        self.servers.push(child);
    }

    fn discover(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["30", "ip", "netns", "exec", &self.ns("c")])
            .arg(example("discover"))
            .args(["--interface", "eth0", "--timeout", "6"])
            .args(args)
            .output()
            .expect("run discover")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for host in ["c", "s1", "s2", "br"] {
            ip(&["netns", "del", &self.ns(host)]);
        }
    }
}

#[test]
fn discovery_finds_both_servers_over_ipv6_and_ipv4() {
    let Some(mut hosts) = Hosts::make() else {
        println!("skipped: cannot make network namespaces (needs root and iproute2)");
        return;
    };
    hosts.serve("s1");
    hosts.serve("s2");
    std::thread::sleep(Duration::from_millis(500));

    for (args, family) in [(&[][..], "IPv6"), (&["--ipv4"][..], "IPv4")] {
        let out = hosts.discover(args);
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{family}: both servers answer:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in &lines {
            let (from, rest) = line.split_once(' ').unwrap();
            assert!(rest.starts_with("2.05 Content </"), "{family}: {line}");
            let from: std::net::SocketAddr = from.parse().unwrap();
            assert!(
                !from.ip().is_multicast(),
                "{family}: answered from a unicast address"
            );
        }
        assert_ne!(
            lines[0].split(' ').next(),
            lines[1].split(' ').next(),
            "two servers"
        );
    }
    // No error responses to a multicast request.
    let out = hosts.discover(&["/nothing-here"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "no 4.04 to a multicast request"
    );
}
