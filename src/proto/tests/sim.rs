//! A simulated network of endpoints with a virtual clock.
//!
//! Datagrams travel over a [`Link`] that loses, duplicates and delays them (random delays
//! reorder them); servers answer requests after a configurable delay with an echo of the
//! request's payload. Time jumps from one event to the next, so minutes of protocol time take
//! microseconds, and everything is decided by seeds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::message::Code;
use crate::proto::rng::Rng;
use crate::proto::{
    Config, Endpoint, Event, Failure, IncomingId, RecvMeta, Request, RequestId, Response,
};

/// How the network treats every datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Link {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl Link {
    pub(crate) fn perfect() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        }
    }

    pub(crate) fn lossy(loss: f64) -> Self {
        Self {
            loss,
            duplicate: 0.0,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// How a node answers the requests it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// With an echo of the payload, this long after the request arrived.
    After(Duration),
    /// Not at all.
    Never,
}

/// What became of one of a node's requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Response(Instant, Response),
    Failed(Instant, Failure),
}

pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    pub(crate) ep: Endpoint,
    pub(crate) answer: Answer,
    /// Answer with this many bytes instead of an echo of the request's payload.
    pub(crate) reply_size: Option<usize>,
    /// Consent to observations (answers carry Observe) and answer `n<handler runs>`.
    pub(crate) observable: bool,
    /// Answer with what this returns for the request instead (Observe as `observable` says).
    pub(crate) handler: Option<Handler>,
    /// How often the "handler" ran, by request payload.
    pub(crate) handler_runs: HashMap<Vec<u8>, u32>,
    /// How many of the requests the "handler" saw came protected with OSCORE.
    pub(crate) protected_requests: u32,
    /// Every event of each request, in order (exactly one is expected).
    pub(crate) outcomes: HashMap<RequestId, Vec<Outcome>>,
    /// The notifications of observations, in order.
    pub(crate) notifications: HashMap<RequestId, Vec<Response>>,
    /// The answers to requests sent to multicast groups: when, from whom, what.
    pub(crate) group_responses: HashMap<RequestId, Vec<(Instant, SocketAddr, Response)>>,
    /// When each group request stopped collecting answers.
    pub(crate) group_done: HashMap<RequestId, Instant>,
}

/// A datagram seen on the wire (before loss).
#[derive(Clone, Debug)]
pub(crate) struct Tapped {
    pub(crate) at: Instant,
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) bytes: Vec<u8>,
}

/// An application's answer to a request, as a node's [`Node::handler`].
pub(crate) type Handler = Box<dyn FnMut(&Request) -> Response>;

type InFlight = Reverse<(Instant, u64, SocketAddr, SocketAddr, Vec<u8>)>;

pub(crate) struct Sim {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<Node>,
    pub(crate) link: Link,
    pub(crate) tap: Vec<Tapped>,
    pub(crate) tapping: bool,
    rng: Rng,
    seq: u64,
    wire: BinaryHeap<InFlight>,
    answers: BinaryHeap<Reverse<(Instant, u64, usize, IncomingId)>>,
    answer_bodies: HashMap<(usize, IncomingId), Response>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Multicast groups and the nodes that joined them.
    groups: HashMap<SocketAddr, Vec<usize>>,
}

pub(crate) fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 5683))
}

impl Sim {
    pub(crate) fn new(seed: u64, link: Link) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            nodes: Vec::new(),
            link,
            tap: Vec::new(),
            tapping: true,
            rng: Rng::new(seed ^ 0x5eed),
            seq: 0,
            wire: BinaryHeap::new(),
            answers: BinaryHeap::new(),
            answer_bodies: HashMap::new(),
            by_addr: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// Adds a node at `addr(index)` and returns its index.
    pub(crate) fn add(&mut self, config: Config, answer: Answer) -> usize {
        let i = self.nodes.len();
        let a = addr(i as u16 + 1);
        self.nodes.push(Node {
            addr: a,
            ep: Endpoint::new(Arc::new(config)),
            answer,
            reply_size: None,
            observable: false,
            handler: None,
            handler_runs: HashMap::new(),
            protected_requests: 0,
            outcomes: HashMap::new(),
            notifications: HashMap::new(),
            group_responses: HashMap::new(),
            group_done: HashMap::new(),
        });
        self.by_addr.insert(a, i);
        i
    }

    /// Makes node `i` a member of the multicast group `group`.
    pub(crate) fn join(&mut self, i: usize, group: SocketAddr) {
        self.groups.entry(group).or_default().push(i);
    }

    /// The virtual time since the start plus `d`, for `run` limits relative to now.
    pub(crate) fn elapsed_plus(&self, d: Duration) -> Duration {
        self.now - self.start + d
    }

    /// Sends a request from node `from` to node `to`.
    pub(crate) fn request(&mut self, from: usize, to: usize, req: Request) -> RequestId {
        let remote = self.nodes[to].addr;
        let now = self.now;
        self.nodes[from]
            .ep
            .request(now, remote, req)
            .expect("request")
    }

    /// Puts a datagram on the wire as if `from` had sent it (it is subject to the link).
    pub(crate) fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.send(from, to, bytes);
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if self.tapping {
            self.tap.push(Tapped {
                at: self.now,
                from,
                to,
                bytes: bytes.clone(),
            });
        }
        let copies = if self.rng.next_f64() < self.link.duplicate {
            2 + (self.rng.next_u64() % 3) as usize
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.next_f64() < self.link.loss {
                continue;
            }
            let spread = self.link.max_delay.saturating_sub(self.link.min_delay);
            let delay = self.link.min_delay + spread.mul_f64(self.rng.next_f64());
            self.seq += 1;
            self.wire.push(Reverse((
                self.now + delay,
                self.seq,
                from,
                to,
                bytes.clone(),
            )));
        }
    }

    /// Hands out everything the endpoints have to send or report at the current instant.
    fn flush(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut progress = false;
            for i in 0..self.nodes.len() {
                let now = self.now;
                while let Some(t) = self.nodes[i].ep.poll_transmit(now, &mut buf) {
                    assert_eq!(t.size, buf.len());
                    let from = self.nodes[i].addr;
                    self.send(from, t.destination, buf.clone());
                    progress = true;
                }
                while let Some(ev) = self.nodes[i].ep.poll_event() {
                    progress = true;
                    self.on_event(i, ev);
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn on_event(&mut self, i: usize, ev: Event) {
        let now = self.now;
        let node = &mut self.nodes[i];
        match ev {
            Event::Request { id, request, .. } => {
                node.protected_requests += u32::from(request.oscore.is_some());
                *node
                    .handler_runs
                    .entry(request.payload.clone())
                    .or_default() += 1;
                if let Answer::After(d) = node.answer {
                    let runs: u32 = node.handler_runs.values().sum();
                    let mut resp = if let Some(handler) = node.handler.as_mut() {
                        handler(&request)
                    } else {
                        let body = match node.reply_size {
                            Some(n) => (0..n).map(|i| (i % 251) as u8).collect(),
                            None if node.observable => format!("n{runs}").into_bytes(),
                            None => request.payload,
                        };
                        Response::new(Code::CONTENT).with_payload(body)
                    };
                    if node.observable {
                        resp.options
                            .set_uint(crate::message::OptionNumber::OBSERVE, 0);
                    }
                    self.answer_bodies.insert((i, id), resp);
                    self.seq += 1;
                    self.answers.push(Reverse((now + d, self.seq, i, id)));
                }
            }
            Event::Response { id, response } => {
                node.outcomes
                    .entry(id)
                    .or_default()
                    .push(Outcome::Response(now, response));
            }
            Event::Notification { id, response } => {
                node.notifications.entry(id).or_default().push(response);
            }
            Event::GroupResponse { id, from, response } => {
                node.group_responses
                    .entry(id)
                    .or_default()
                    .push((now, from, response));
            }
            Event::GroupDone { id } => {
                node.group_done.insert(id, now);
            }
            Event::Failed { id, error } => {
                node.outcomes
                    .entry(id)
                    .or_default()
                    .push(Outcome::Failed(now, error));
            }
        }
    }

    /// Runs until nothing is left to do or `limit` of virtual time has passed since the start.
    pub(crate) fn run(&mut self, limit: Duration) {
        let end = self.start + limit;
        loop {
            self.flush();
            let next = [
                self.wire.peek().map(|Reverse(w)| w.0),
                self.answers.peek().map(|Reverse(a)| a.0),
            ]
            .into_iter()
            .chain(self.nodes.iter().map(|n| n.ep.poll_timeout()))
            .flatten()
            .min();
            let Some(next) = next else { return };
            if next > end {
                return;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Processes everything due at `self.now`.
    fn step(&mut self) {
        let now = self.now;
        while self.wire.peek().is_some_and(|Reverse(w)| w.0 <= now) {
            let Some(Reverse((_, _, from, to, bytes))) = self.wire.pop() else {
                break;
            };
            if let Some(&i) = self.by_addr.get(&to) {
                self.nodes[i]
                    .ep
                    .handle_datagram(now, &RecvMeta::new(from), &bytes);
            }
            for &i in self.groups.get(&to).map(Vec::as_slice).unwrap_or(&[]) {
                let meta = RecvMeta::new(from).with_local(to.ip(), Some(1));
                self.nodes[i].ep.handle_datagram(now, &meta, &bytes);
            }
        }
        while self.answers.peek().is_some_and(|Reverse(a)| a.0 <= now) {
            let Some(Reverse((_, _, i, id))) = self.answers.pop() else {
                break;
            };
            if let Some(resp) = self.answer_bodies.remove(&(i, id)) {
                self.nodes[i].ep.respond(now, id, resp).expect("respond");
            }
        }
        for n in &mut self.nodes {
            if n.ep.poll_timeout().is_some_and(|t| t <= now) {
                n.ep.handle_timeout(now);
            }
        }
    }

    /// The datagrams node `from` sent to the address `to`, decoded.
    pub(crate) fn sent_to(&self, from: usize, to: SocketAddr) -> Vec<crate::message::Message> {
        let f = self.nodes[from].addr;
        self.tap
            .iter()
            .filter(|d| d.from == f && d.to == to)
            .map(|d| crate::message::Message::decode(&d.bytes).expect("endpoint sent garbage"))
            .collect()
    }

    /// The datagrams node `from` sent to node `to`, decoded.
    pub(crate) fn sent(&self, from: usize, to: usize) -> Vec<(Duration, crate::message::Message)> {
        let (f, t) = (self.nodes[from].addr, self.nodes[to].addr);
        self.tap
            .iter()
            .filter(|d| d.from == f && d.to == t)
            .map(|d| {
                (
                    d.at - self.start,
                    crate::message::Message::decode(&d.bytes).expect("endpoint sent garbage"),
                )
            })
            .collect()
    }
}

/// Checks the invariant every scenario relies on: each request of `client` ended in exactly
/// one event; returns (responses, failures).
pub(crate) fn exactly_one_outcome(node: &Node, ids: &[RequestId]) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    for id in ids {
        let outcomes = node.outcomes.get(id).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(
            outcomes.len(),
            1,
            "request {id:?} ended {} times: {outcomes:?}",
            outcomes.len()
        );
        match &outcomes[0] {
            Outcome::Response(..) => ok += 1,
            Outcome::Failed(..) => failed += 1,
        }
    }
    assert_eq!(
        node.outcomes.len(),
        ids.len(),
        "events for unknown requests"
    );
    (ok, failed)
}
