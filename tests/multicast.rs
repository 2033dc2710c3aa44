//! Multicast between hosts (RFC 7252 §8): three network namespaces that this test makes
//! itself, joined by a bridge in a fourth — two servers (`server --multicast eth0`) and a
//! client (`discover`). The client's multicast GET of `/.well-known/core` gets both servers'
//! answers, from their unicast addresses, over IPv6 (`ff02::fd`) and IPv4 (`224.0.1.187`);
//! a GET of a path that does not exist gets no answer at all (no 4.04 to multicast).
//!
//! Needs root (`ip netns add`); without it the test says it is skipped. No traffic leaves the
//! namespaces, which are deleted at the end.

mod common;
use common::example;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The namespaces, deleted (with everything in them) when dropped.
struct Hosts {
    prefix: String,
    servers: Vec<Child>,
}

impl Hosts {
    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// `tag` tells apart the hosts of tests that run at the same time.
    fn make(tag: char) -> Option<Self> {
        let prefix = format!("coapio{}{tag}", std::process::id());
        let hosts = Self {
            prefix,
            servers: Vec::new(),
        };
        let br = hosts.ns("br");
        if !common::ip(&["netns", "add", &br]) {
            return None;
        }
        let ok = common::ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])
            && common::ip(&["-n", &br, "link", "set", "br0", "up"]);
        assert!(ok, "cannot make the bridge");
        for (i, host) in ["s1", "s2", "c"].iter().enumerate() {
            let ns = hosts.ns(host);
            let id = std::process::id() % 100_000;
            let (v, b) = (format!("v{host}{id}{tag}"), format!("b{host}{id}{tag}"));
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
                assert!(common::ip(&args), "ip {}", args.join(" "));
            }
        }
        // Link-local addresses need a moment (duplicate address detection).
        std::thread::sleep(Duration::from_secs(2));
        Some(hosts)
    }

    fn serve(&mut self, host: &str) {
        let server = example("server");
        self.spawn(
            host,
            &[
                server.to_str().unwrap(),
                "--bind",
                "[::]:5683",
                "--multicast",
                "eth0",
            ],
        );
    }

    /// Starts `command` in namespace `host`; it is killed when the hosts are dropped.
    fn spawn(&mut self, host: &str, command: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a server");
        self.servers.push(child);
    }

    /// Runs `command` in namespace `host`, for at most 30 s.
    fn run(&self, host: &str, command: &[&str]) -> Output {
        Command::new("timeout")
            .args(["30", "ip", "netns", "exec", &self.ns(host)])
            .args(command)
            .output()
            .expect("run a command in a namespace")
    }

    fn stop_servers(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.servers.clear();
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
            common::ip(&["netns", "del", &self.ns(host)]);
        }
    }
}

#[test]
fn discovery_finds_both_servers_over_ipv6_and_ipv4() {
    let Some(mut hosts) = Hosts::make('a') else {
        common::skip_or_fail(
            "skipped: cannot make network namespaces (run as root, with `apt-get install iproute2`)",
        );
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

#[test]
fn libcoap_and_coapio_find_each_other_by_multicast() {
    if Command::new("coap-client-notls")
        .arg("-h")
        .output()
        .is_err()
    {
        common::skip_or_fail(
            "skipped: libcoap not installed (install with `apt-get install libcoap3-bin`)",
        );
        return;
    }
    let Some(mut hosts) = Hosts::make('b') else {
        common::skip_or_fail(
            "skipped: cannot make network namespaces (run as root, with `apt-get install iproute2`)",
        );
        return;
    };
    // libcoap's client asks the IPv4 group; our server answers.
    hosts.serve("s1");
    std::thread::sleep(Duration::from_millis(500));
    let out = hosts.run(
        "c",
        &[
            "coap-client-notls",
            "-N",
            "-B",
            "7",
            "-m",
            "get",
            "coap://224.0.1.187/hello",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Hello, world!"),
        "libcoap's multicast GET got: {text:?}"
    );
    hosts.stop_servers();
    // Our client asks the group; libcoap's server, joined to it, answers.
    hosts.spawn(
        "s1",
        &["coap-server-notls", "-g", "224.0.1.187", "-G", "eth0"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = hosts.discover(&["--ipv4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].starts_with("10.77.0.1:5683 2.05 Content </>"),
        "{text}"
    );
}
