//! Regressions found in review: each test failed before its fix (config values that
//! overflowed an Instant, Block1 with Observe, NSTART on re-registration, message ID
//! wrap-around, endless block-wise downloads, timeouts of live observations, CON
//! notifications piling up).
#![allow(
    dead_code,
    unused_variables,
    clippy::field_reassign_with_default,
    clippy::explicit_counter_loop
)]

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::message::{BlockValue, Code, Message, OptionNumber, Type};
use crate::proto::{Config, Endpoint, Event, RecvMeta, Request, Response};

fn ad(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 5683))
}

fn out(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut v = vec![];
    let mut buf = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        v.push((t.destination, buf.clone()));
    }
    v
}

fn evs(ep: &mut Endpoint) -> Vec<Event> {
    let mut v = vec![];
    while let Some(e) = ep.poll_event() {
        v.push(e);
    }
    v
}

/// Runs client `c` (at ca) against server `s` (at sa) until quiet; the server answers every
/// request with `answer`. Returns the client's events.
fn pump(
    c: &mut Endpoint,
    ca: SocketAddr,
    s: &mut Endpoint,
    sa: SocketAddr,
    now: Instant,
    answer: &mut dyn FnMut(&Request) -> Response,
) -> Vec<Event> {
    let mut got = vec![];
    for _ in 0..1000 {
        let mut quiet = true;
        for (_, d) in out(c, now) {
            quiet = false;
            s.handle_datagram(now, &RecvMeta::new(ca), &d);
        }
        for e in evs(s) {
            if let Event::Request { id, request, .. } = e {
                let r = answer(&request);
                s.respond(now, id, r).unwrap();
            }
        }
        for (_, d) in out(s, now) {
            quiet = false;
            c.handle_datagram(now, &RecvMeta::new(sa), &d);
        }
        got.extend(evs(c));
        if quiet {
            break;
        }
    }
    got
}

fn consent(body: &str) -> Response {
    let mut r = Response::content(body);
    r.options.set_uint(OptionNumber::OBSERVE, 0);
    r
}

/// Block1 + Observe: the notifications come under an ID the caller never saw, and the
/// transfer entry stays forever.
#[test]
fn r1_block1_observe_wrong_id_and_transfer_leak() {
    let now = Instant::now();
    let (ca, sa) = (ad(1), ad(2));
    let mut cfg = Config::default();
    cfg.block_size = 16;
    let mut c = Endpoint::new(Arc::new(cfg));
    let mut s = Endpoint::new(Arc::new(Config::default()));
    let mut req = Request::new(Code::FETCH).observe();
    req.options.push(OptionNumber::URI_PATH, "obs");
    req.payload = vec![b'q'; 40];
    let id = c.request(now, sa, req).unwrap();
    let got = pump(&mut c, ca, &mut s, sa, now, &mut |_| consent("v1"));
    eprintln!("user id {id:?}; events {got:?}");
    assert_eq!(s.stats().observers, 1);
    s.notify(now, "/obs");
    let got2 = pump(&mut c, ca, &mut s, sa, now, &mut |_| consent("v2"));
    eprintln!("after notify: {got2:?}; client stats {:?}", c.stats());
    let ids: Vec<_> = got
        .iter()
        .chain(got2.iter())
        .map(|e| match e {
            Event::Notification { id, .. } | Event::Response { id, .. } => *id,
            Event::Failed { id, .. } => *id,
            _ => unreachable!(),
        })
        .collect();
    assert!(
        ids.iter().all(|i| *i == id),
        "events under ids {ids:?}, user id {id:?}"
    );
}

/// Max-Age re-registration ignores NSTART.
#[test]
fn r2_reregistration_bypasses_nstart() {
    let t0 = Instant::now();
    let sa = ad(2);
    let mut c = Endpoint::new(Arc::new(Config::default())); // nstart 1
    let _obs = c.request(t0, sa, Request::get("/o").observe()).unwrap();
    let reg = Message::decode(&out(&mut c, t0)[0].1).unwrap();
    let mut ack = Message::new(Type::Ack, Code::CONTENT, reg.message_id);
    ack.token = reg.token;
    ack.options.push_uint(OptionNumber::OBSERVE, 2);
    ack.options.push_uint(OptionNumber::MAX_AGE, 5);
    c.handle_datagram(t0, &RecvMeta::new(sa), &ack.to_bytes().unwrap());
    assert!(matches!(evs(&mut c)[..], [Event::Notification { .. }]));
    // Another request to the same server: takes the only NSTART slot, never answered.
    let t1 = t0 + Duration::from_secs(6);
    let _other = c.request(t1, sa, Request::get("/slow")).unwrap();
    let o = out(&mut c, t1);
    assert_eq!(o.len(), 1);
    // Max-Age + 2 s passes (before the other request's first retransmission at >= t1+2 s).
    let t2 = t0 + Duration::from_secs(7) + Duration::from_millis(100);
    c.handle_timeout(t2);
    let sent: Vec<Message> = out(&mut c, t2)
        .iter()
        .map(|(_, d)| Message::decode(d).unwrap())
        .collect();
    eprintln!("sent at t2: {sent:?}");
    assert!(
        sent.is_empty(),
        "re-registration sent while NSTART=1 slot is taken by an unacknowledged CON request"
    );
}

/// A server that answers every block request with an empty block 0 and M=1 keeps the client
/// busy forever; the request never ends (its timeout restarts with every block).
#[test]
fn r3_download_empty_more_blocks_never_ends() {
    let mut now = Instant::now();
    let sa = ad(2);
    let mut c = Endpoint::new(Arc::new(Config::default()));
    let id = c
        .request(
            now,
            sa,
            Request::get("/x").with_timeout(Duration::from_secs(5)),
        )
        .unwrap();
    let mut rounds = 0;
    for _ in 0..200 {
        let o = out(&mut c, now);
        if o.is_empty() {
            break;
        }
        for (_, d) in o {
            let m = Message::decode(&d).unwrap();
            let mut r = Message::new(Type::Ack, Code::CONTENT, m.message_id);
            r.token = m.token;
            r.options.push_uint(
                OptionNumber::BLOCK2,
                BlockValue::new(0, true, 0).unwrap().to_uint(),
            );
            c.handle_datagram(now, &RecvMeta::new(sa), &r.to_bytes().unwrap());
            rounds += 1;
        }
        now += Duration::from_secs(1);
        c.handle_timeout(now);
    }
    let e = evs(&mut c);
    eprintln!("rounds {rounds}, events {e:?}, stats {:?}", c.stats());
    assert!(
        !e.is_empty(),
        "request {id:?} with a 5 s timeout still open after {rounds} rounds / 200 s"
    );
}

fn panics(f: impl FnOnce()) -> Option<String> {
    catch_unwind(AssertUnwindSafe(f)).err().map(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn r4_config_durations_overflow() {
    let now = Instant::now();
    let sa = ad(2);
    let mut results = vec![];
    // empty_ack_delay: any CON request from the network.
    let mut cfg = Config::default();
    cfg.empty_ack_delay = Duration::MAX;
    eprintln!("validate(empty_ack_delay=MAX) = {:?}", cfg.validate());
    results.push((
        "empty_ack_delay=MAX, CON request received",
        panics(|| {
            let mut s = Endpoint::new(Arc::new(cfg));
            let mut m = Message::new(Type::Con, Code::GET, 7);
            m.options.push(OptionNumber::URI_PATH, "x");
            s.handle_datagram(now, &RecvMeta::new(sa), &m.to_bytes().unwrap());
        }),
    ));
    // separate_timeout: an empty ACK from the network.
    let mut cfg = Config::default();
    cfg.separate_timeout = Duration::MAX;
    results.push((
        "separate_timeout=MAX, empty ACK received",
        panics(|| {
            let mut c = Endpoint::new(Arc::new(cfg));
            c.request(now, sa, Request::get("/x")).unwrap();
            let m = Message::decode(&out(&mut c, now)[0].1).unwrap();
            let ack = Message::new(Type::Ack, Code::EMPTY, m.message_id);
            c.handle_datagram(now, &RecvMeta::new(sa), &ack.to_bytes().unwrap());
        }),
    ));
    let mut cfg = Config::default();
    cfg.non_timeout = Duration::MAX;
    results.push((
        "non_timeout=MAX, NON request",
        panics(|| {
            let mut c = Endpoint::new(Arc::new(cfg));
            c.request(now, sa, Request::get("/x").non_confirmable())
                .unwrap();
        }),
    ));
    results.push((
        "Request::with_timeout(MAX)",
        panics(|| {
            let mut c = Endpoint::new(Arc::new(Config::default()));
            c.request(now, sa, Request::get("/x").with_timeout(Duration::MAX))
                .unwrap();
        }),
    ));
    let mut cfg = Config::default();
    cfg.observer_memory = usize::MAX;
    cfg.max_observers_per_resource = usize::MAX;
    results.push((
        "observer_memory=usize::MAX, NON notification",
        panics(|| {
            let ca = ad(1);
            let mut s = Endpoint::new(Arc::new(cfg));
            let mut c = Endpoint::new(Arc::new(Config::default()));
            c.request(now, sa, Request::get("/o").observe()).unwrap();
            pump(&mut c, ca, &mut s, sa, now, &mut |_| consent("a"));
            s.notify(now, "/o");
            pump(&mut c, ca, &mut s, sa, now, &mut |_| consent("b"));
        }),
    ));
    for (what, p) in &results {
        eprintln!("{what}: {p:?}");
    }
    assert!(results.iter().all(|(_, p)| p.is_none()));
}

/// Message-ID wrap: a new CON separate response overwrites the outgoing entry of one still
/// in flight; the peer's use count leaks and the peer is "active" forever.
#[test]
fn r5_mid_wrap_overwrites_outgoing() {
    let mut now = Instant::now();
    let (ca, sa) = (ad(1), ad(2));
    let mut s = Endpoint::new(Arc::new(Config::default()));
    let meta = RecvMeta::new(ca);
    // CON request answered late -> separate CON response, never acknowledged.
    let con = |mid: u16| {
        let mut m = Message::new(Type::Con, Code::GET, mid);
        m.options.push(OptionNumber::URI_PATH, "x");
        m.to_bytes().unwrap()
    };
    s.handle_datagram(now, &meta, &con(1));
    let Event::Request { id, .. } = evs(&mut s).remove(0) else {
        panic!()
    };
    now += Duration::from_millis(200);
    s.handle_timeout(now); // empty ACK
    s.respond(now, id, Response::content("late")).unwrap();
    let sep = out(&mut s, now);
    let first_mid = Message::decode(&sep.last().unwrap().1).unwrap().message_id;
    // 65534 NON requests (MIDs 2 to 65535: the client's IDs stay unique, as they must within
    // EXCHANGE_LIFETIME) answered with NON responses: the MID counter nearly wraps.
    for i in 0..65534u32 {
        let mut m = Message::new(Type::Non, Code::GET, (i + 2) as u16);
        m.options.push(OptionNumber::URI_PATH, "n");
        s.handle_datagram(now, &meta, &m.to_bytes().unwrap());
        for e in evs(&mut s) {
            if let Event::Request { id, .. } = e {
                s.respond(now, id, Response::content("n")).unwrap();
            }
        }
        out(&mut s, now);
    }
    // Another late CON answer: its MID is the one still in flight.
    s.handle_datagram(now, &meta, &con(0));
    let Event::Request { id, .. } = evs(&mut s).remove(0) else {
        panic!()
    };
    now += Duration::from_millis(200);
    s.handle_timeout(now);
    s.respond(now, id, Response::content("late2")).unwrap();
    let sep2 = out(&mut s, now);
    let second_mid = Message::decode(&sep2.last().unwrap().1).unwrap().message_id;
    eprintln!("first separate MID {first_mid}, second {second_mid}");
    // Let everything time out.
    for _ in 0..400 {
        now += Duration::from_secs(1);
        s.handle_timeout(now);
        out(&mut s, now);
    }
    eprintln!("stats after 400 s: {:?}", s.stats());
    assert_eq!(s.stats().remotes, 0, "peer still counted active");
}

/// Request::timeout ends an observation that is receiving notifications.
#[test]
fn r6_overall_timeout_kills_live_observation() {
    let t0 = Instant::now();
    let sa = ad(2);
    let mut c = Endpoint::new(Arc::new(Config::default()));
    let id = c
        .request(
            t0,
            sa,
            Request::get("/o")
                .observe()
                .with_timeout(Duration::from_secs(10)),
        )
        .unwrap();
    let reg = Message::decode(&out(&mut c, t0)[0].1).unwrap();
    let mut seq = 2;
    let mut got = vec![];
    for k in 0..5u64 {
        let now = t0 + Duration::from_secs(4 * k);
        let mut n = Message::new(
            if k == 0 { Type::Ack } else { Type::Non },
            Code::CONTENT,
            if k == 0 {
                reg.message_id
            } else {
                100 + k as u16
            },
        );
        n.token = reg.token;
        n.options.push_uint(OptionNumber::OBSERVE, seq);
        seq += 1;
        c.handle_datagram(now, &RecvMeta::new(sa), &n.to_bytes().unwrap());
        c.handle_timeout(now);
        got.extend(evs(&mut c));
    }
    eprintln!("{id:?}: {got:?}");
    assert!(!got.iter().any(|e| matches!(e, Event::Failed { .. })));
}

/// CON notifications: several in flight to one observer at once (RFC 7641 §4.5.2).
#[test]
fn r7_many_con_notifications_in_flight() {
    let now = Instant::now();
    let (ca, sa) = (ad(1), ad(2));
    let mut cfg = Config::default();
    cfg.notification_type = Type::Con;
    let mut s = Endpoint::new(Arc::new(cfg));
    let mut c = Endpoint::new(Arc::new(Config::default()));
    c.request(now, sa, Request::get("/o").observe()).unwrap();
    pump(&mut c, ca, &mut s, sa, now, &mut |_| consent("a"));
    for i in 0..50 {
        s.notify(now, "/o");
        for e in evs(&mut s) {
            if let Event::Request { id, .. } = e {
                s.respond(now, id, consent(&format!("{i}"))).unwrap();
            }
        }
        out(&mut s, now); // lost
    }
    // One notification is retransmitted, not fifty: let the retransmission timers run.
    let mut retransmitted = 0;
    while let Some(next) = s.poll_timeout() {
        if next > now + Duration::from_secs(10) {
            break;
        }
        s.handle_timeout(next);
        retransmitted += out(&mut s, next).len();
    }
    assert!(
        retransmitted <= 3,
        "{retransmitted} retransmissions within 10 s"
    );
    assert_eq!(s.stats().remotes, 1);
}

/// A request answered at once and a request acknowledged at once leave no timer behind
/// (issue 12): `poll_timeout` was the empty-ACK delay or the retransmission time of work
/// already done, a wake-up for nothing that also moved the driver's timer at every request.
#[test]
fn work_done_at_once_leaves_no_wake_up_behind() {
    let t0 = Instant::now();
    let (client, server) = (ad(1), ad(2));
    let mut s = Endpoint::new(Arc::new(Config::default()));
    let mut c = Endpoint::new(Arc::new(Config::default()));
    for round in 0..3u16 {
        let now = t0 + Duration::from_millis(u64::from(round));
        let id = c.request(now, server, Request::get("/a")).unwrap();
        assert!(
            c.poll_timeout().is_some(),
            "the request is retransmitted if lost"
        );
        for (_, wire) in out(&mut c, now) {
            s.handle_datagram(now, &RecvMeta::new(client), &wire);
        }
        let incoming = evs(&mut s)
            .into_iter()
            .find_map(|e| match e {
                Event::Request { id, .. } => Some(id),
                _ => None,
            })
            .expect("the request arrives");
        assert!(
            s.poll_timeout().is_some(),
            "its empty ACK is due if not answered"
        );
        s.respond(now, incoming, Response::content("hi")).unwrap();
        assert_eq!(
            s.poll_timeout(),
            None,
            "answered: nothing left to wake up for"
        );
        for (_, wire) in out(&mut s, now) {
            c.handle_datagram(now, &RecvMeta::new(server), &wire);
        }
        assert!(evs(&mut c)
            .iter()
            .any(|e| matches!(e, Event::Response { id: got, .. } if *got == id)));
        assert_eq!(
            c.poll_timeout(),
            None,
            "acknowledged: nothing to retransmit"
        );
    }
}
