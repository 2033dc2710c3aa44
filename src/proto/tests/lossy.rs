//! Exchanges over a network that loses, duplicates and reorders datagrams.

use std::time::Duration;

use super::sim::{exactly_one_outcome, Answer, Link, Outcome, Sim};
use crate::proto::{Config, Failure, Request};

/// Checks that every request ended once, that responses echo their own request, and that the
/// server's handler ran exactly once for every request that reached it and never for others.
fn check(
    sim: &Sim,
    c: usize,
    s: usize,
    ids: &[crate::proto::RequestId],
    payloads: &[Vec<u8>],
) -> (usize, usize) {
    let (ok, failed) = exactly_one_outcome(&sim.nodes[c], ids);
    let reached: std::collections::HashSet<Vec<u8>> = sim
        .sent(c, s)
        .iter()
        .map(|(_, m)| m.payload.clone())
        .collect();
    let server = &sim.nodes[s];
    for (id, payload) in ids.iter().zip(payloads) {
        let runs = server.handler_runs.get(payload).copied().unwrap_or(0);
        if !reached.contains(payload) {
            assert_eq!(runs, 0, "the handler ran for a request that was never sent");
        }
        match &sim.nodes[c].outcomes[id][0] {
            Outcome::Response(_, r) => {
                assert_eq!(&r.payload, payload, "response matched to the wrong request");
                assert_eq!(runs, 1, "handler runs for an answered request");
            }
            Outcome::Failed(_, e) => {
                assert_eq!(*e, Failure::Timeout);
                assert!(runs <= 1, "handler ran {runs} times");
            }
        }
    }
    (ok, failed)
}

#[test]
fn thousand_con_requests_at_30_percent_loss() {
    let mut sim = Sim::new(30, Link::lossy(0.3));
    sim.tapping = true;
    let client = Config {
        nstart: 4,
        ..Config::default().with_seed(30)
    };
    let c = sim.add(client, Answer::Never);
    let s = sim.add(
        Config::default().with_seed(31),
        Answer::After(Duration::from_millis(20)),
    );
    let payloads: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let ids: Vec<_> = payloads
        .iter()
        .map(|p| sim.request(c, s, Request::post("/echo", p.clone())))
        .collect();
    sim.run(Duration::from_secs(24 * 3600));
    let (ok, failed) = check(&sim, c, s, &ids, &payloads);
    assert_eq!(ok + failed, 1000);
    // Each try succeeds when the request and its ACK both survive (0.49): five tries fail
    // together with probability 0.51^5 ≈ 3.5 %.
    assert!((5..=80).contains(&failed), "{failed} timeouts");
    let stats = sim.nodes[c].ep.stats();
    assert_eq!((stats.open_requests, stats.remotes), (0, 0), "{stats:?}");
    assert_eq!(sim.nodes[s].ep.stats().pending_incoming, 0);
}

#[test]
fn separate_responses_under_loss() {
    let mut sim = Sim::new(40, Link::lossy(0.2));
    let client = Config {
        nstart: 8,
        ..Config::default().with_seed(40)
    };
    let c = sim.add(client, Answer::Never);
    let s = sim.add(
        Config::default().with_seed(41),
        Answer::After(Duration::from_secs(4)),
    );
    let payloads: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let ids: Vec<_> = payloads
        .iter()
        .map(|p| sim.request(c, s, Request::post("/slow", p.clone())))
        .collect();
    sim.run(Duration::from_secs(24 * 3600));
    let (ok, failed) = check(&sim, c, s, &ids, &payloads);
    assert!(ok > 250, "{ok} answered, {failed} failed");
    let stats = sim.nodes[s].ep.stats();
    assert_eq!((stats.pending_incoming, stats.remotes), (0, 0), "{stats:?}");
}

#[test]
fn duplicate_storm_runs_each_handler_once() {
    let link = Link {
        loss: 0.1,
        duplicate: 0.9,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_secs(3),
    };
    let mut sim = Sim::new(50, link);
    let client = Config {
        nstart: 16,
        ..Config::default().with_seed(50)
    };
    let c = sim.add(client, Answer::Never);
    let s = sim.add(
        Config::default().with_seed(51),
        Answer::After(Duration::from_millis(500)),
    );
    let payloads: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut ids = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let req = Request::post("/storm", p.clone());
        ids.push(sim.request(
            c,
            s,
            if i % 2 == 0 {
                req
            } else {
                req.non_confirmable()
            },
        ));
    }
    sim.run(Duration::from_secs(24 * 3600));
    let (ok, _) = check(&sim, c, s, &ids, &payloads);
    assert!(ok > 400, "{ok}");
}

#[test]
fn many_clients_one_server_under_loss() {
    let mut sim = Sim::new(60, Link::lossy(0.25));
    let s = sim.add(
        Config::default().with_seed(60),
        Answer::After(Duration::from_millis(150)),
    );
    let clients: Vec<usize> = (0..20)
        .map(|i| sim.add(Config::default().with_seed(100 + i), Answer::Never))
        .collect();
    let mut all = Vec::new();
    for &c in &clients {
        for i in 0..20u32 {
            let p = [c as u32, i].map(u32::to_be_bytes).concat();
            let id = sim.request(c, s, Request::post("/x", p.clone()));
            all.push((c, id, p));
        }
    }
    sim.run(Duration::from_secs(24 * 3600));
    for &c in &clients {
        let (ids, payloads): (Vec<_>, Vec<_>) = all
            .iter()
            .filter(|(cc, ..)| *cc == c)
            .map(|(_, id, p)| (*id, p.clone()))
            .unzip();
        check(&sim, c, s, &ids, &payloads);
    }
}
