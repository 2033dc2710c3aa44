//! The core under sustained load and over long virtual times: deduplication that holds for
//! EXCHANGE_LIFETIME whatever the rate, message IDs never reused within it, observations that
//! live for hours beside other traffic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::message::{Code, Message, Type};
use crate::proto::{Config, Endpoint, Event, RecvMeta, Response};

fn remote(i: u32) -> SocketAddr {
    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 40000 + (i % 7) as u16))
}

/// A Confirmable POST /x with message ID `mid` and a 4-byte token `token`.
fn post(mid: u16, token: u32) -> [u8; 10] {
    let [m1, m2] = mid.to_be_bytes();
    let [t1, t2, t3, t4] = token.to_be_bytes();
    [0x44, 0x02, m1, m2, t1, t2, t3, t4, 0xB1, b'x']
}

/// 10^6 POSTs from 10^4 remotes in 60 virtual seconds; the ACK of every 100th is lost and the
/// client retransmits it 2 to 50 s later. Every request runs exactly once, and every
/// retransmission gets the very answer the lost ACK carried.
#[test]
fn dedup_holds_for_exchange_lifetime_under_a_million_requests() {
    const REQUESTS: u32 = 1_000_000;
    const REMOTES: u32 = 10_000;
    let per_entry = crate::proto::dedup::ENTRY_COST + 64;
    let config = Config {
        dedup_memory: REQUESTS as usize * per_entry,
        dedup_memory_per_remote: (REQUESTS / REMOTES) as usize * per_entry,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut handler_runs = 0u32;
    // (due, remote, request bytes, the reply that was lost)
    let mut lost: VecDeque<(Instant, SocketAddr, [u8; 10], Vec<u8>)> = VecDeque::new();
    let mut replays = 0u32;
    let step = Duration::from_micros(60);
    for i in 0..REQUESTS {
        let now = start + step * i;
        while lost.front().is_some_and(|(due, ..)| *due <= now) {
            let (_, from, bytes, reply) = lost.pop_front().unwrap();
            ep.handle_datagram(now, &RecvMeta::new(from), &bytes);
            assert!(
                ep.poll_event().is_none(),
                "a retransmission ran the handler"
            );
            let t = ep
                .poll_transmit(now, &mut buf)
                .expect("the answer is replayed");
            assert_eq!((t.destination, &buf), (from, &reply));
            replays += 1;
        }
        let from = remote(i % REMOTES);
        let bytes = post((i / REMOTES) as u16, i);
        ep.handle_datagram(now, &RecvMeta::new(from), &bytes);
        while let Some(ev) = ep.poll_event() {
            let Event::Request { id, .. } = ev else {
                panic!("unexpected {ev:?}")
            };
            handler_runs += 1;
            ep.respond(now, id, Response::new(Code::CHANGED)).unwrap();
        }
        let t = ep
            .poll_transmit(now, &mut buf)
            .expect("a piggybacked answer");
        assert!(ep.poll_transmit(now, &mut buf.clone()).is_none());
        if i % 100 == 0 {
            let m = Message::decode(&buf).unwrap();
            assert_eq!((m.ty, m.code), (Type::Ack, Code::CHANGED), "request {i}");
            // Retransmitted after 2 s, or (every 1000th) near the end of the run.
            let delay = if i % 1000 == 0 { 50 } else { 2 };
            lost.push_back((
                now + Duration::from_secs(delay),
                t.destination,
                bytes,
                buf.clone(),
            ));
            lost.make_contiguous().sort_by_key(|l| l.0);
        }
        if i % 4096 == 0 {
            ep.handle_timeout(now);
        }
    }
    let end = start + step * REQUESTS;
    while let Some((due, from, bytes, reply)) = lost.pop_front() {
        let now = due.max(end);
        ep.handle_datagram(now, &RecvMeta::new(from), &bytes);
        assert!(
            ep.poll_event().is_none(),
            "a retransmission ran the handler"
        );
        let t = ep.poll_transmit(now, &mut buf);
        assert_eq!(t.expect("the answer is replayed").destination, from);
        assert_eq!(buf, reply);
        replays += 1;
    }
    assert_eq!(handler_runs, REQUESTS);
    assert_eq!(replays, REQUESTS / 100);
    let s = ep.stats();
    assert_eq!(
        (s.dedup_entries, s.dedup_refused),
        (REQUESTS as usize, 0),
        "{s:?}"
    );
    assert!(s.dedup_bytes <= REQUESTS as usize * per_entry, "{s:?}");
    // All of it is forgotten once EXCHANGE_LIFETIME has passed.
    let later = end + Duration::from_secs(248);
    ep.handle_timeout(later);
    assert_eq!(ep.stats().dedup_entries, 0);
    assert_eq!(ep.stats().dedup_bytes, 0);
}

/// When the budget (or one remote's quota) is full, a new POST is declined with 5.03 and a
/// Max-Age, nothing old is forgotten, and a GET is still served.
#[test]
fn a_full_dedup_cache_declines_new_posts_and_forgets_nothing() {
    let entry = crate::proto::dedup::ENTRY_COST + 64;
    let config = Config {
        dedup_memory: 1000 * entry,
        dedup_memory_per_remote: 100 * crate::proto::dedup::ENTRY_COST,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = Instant::now();
    let mut buf = Vec::new();
    let hog = remote(1);
    let mut served = 0;
    let mut declined = 0;
    for mid in 0..150u16 {
        ep.handle_datagram(now, &RecvMeta::new(hog), &post(mid, u32::from(mid)));
        if let Some(Event::Request { id, .. }) = ep.poll_event() {
            served += 1;
            ep.respond(now, id, Response::new(Code::CHANGED)).unwrap();
        }
        assert_eq!(ep.poll_transmit(now, &mut buf).unwrap().destination, hog);
        let m = Message::decode(&buf).unwrap();
        if m.code == Code::SERVICE_UNAVAILABLE {
            declined += 1;
            let max_age = m.options.get_uint(crate::message::OptionNumber::MAX_AGE);
            assert!(max_age.is_some_and(|a| (240..=248).contains(&a)), "{m:?}");
        }
    }
    // Each entry costs ENTRY_COST plus its few reply bytes.
    assert!((80..100).contains(&served), "{served}");
    assert_eq!(served + declined, 150);
    // The first POST is still remembered: its retransmission is answered, not run.
    ep.handle_datagram(now, &RecvMeta::new(hog), &post(0, 0));
    assert!(ep.poll_event().is_none());
    // Another remote still has room.
    ep.handle_datagram(now, &RecvMeta::new(remote(2)), &post(0, 7));
    assert!(matches!(ep.poll_event(), Some(Event::Request { .. })));
    // A GET from the hog is served unremembered.
    let mut get = post(500, 500);
    get[1] = 0x01;
    ep.handle_datagram(now, &RecvMeta::new(hog), &get);
    assert!(matches!(ep.poll_event(), Some(Event::Request { .. })));
}

/// A client makes 69 000 NON requests to one server within 70 s, each answered at once:
/// the first 65 536 take every message ID, the rest wait (visible in `stats`) until the first
/// IDs' EXCHANGE_LIFETIME has passed, and no ID is used twice within it (RFC 7252 §4.4).
#[test]
fn message_ids_wait_rather_than_repeat_within_exchange_lifetime() {
    use crate::proto::Request;
    let config = Config {
        nstart: 100_000,
        max_queued_per_remote: 100_000,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let start = Instant::now();
    let server = remote(1);
    let mut sent: Vec<(Instant, u16)> = Vec::new();
    let mut server_mid = 0u16;
    // Sends what the client has to send; the server answers each request at once.
    let mut exchange = |ep: &mut Endpoint, now: Instant, sent: &mut Vec<(Instant, u16)>| {
        let mut buf = Vec::new();
        let mut answers = Vec::new();
        while ep.poll_transmit(now, &mut buf).is_some() {
            let m = Message::decode(&buf).unwrap();
            sent.push((now, m.message_id));
            let mut r = Message::new(Type::Non, Code::CONTENT, server_mid);
            server_mid = server_mid.wrapping_add(1);
            r.token = m.token;
            answers.push(r.to_bytes().unwrap());
        }
        for a in answers {
            ep.handle_datagram(now, &RecvMeta::new(server), &a);
        }
        while ep.poll_event().is_some() {}
    };
    const N: u32 = 69_000;
    for i in 0..N {
        let now = start + Duration::from_millis(u64::from(i));
        ep.request(now, server, Request::get("/x").non_confirmable())
            .unwrap();
        exchange(&mut ep, now, &mut sent);
    }
    assert_eq!(sent.len(), 65_536);
    assert_eq!(ep.stats().waiting_for_message_ids, (N - 65_536) as usize);
    // Time passes; the waiting requests go out as IDs become free.
    let mut t = start + Duration::from_millis(u64::from(N));
    while t < start + Duration::from_secs(400) {
        t += Duration::from_millis(500);
        ep.handle_timeout(t);
        exchange(&mut ep, t, &mut sent);
    }
    assert_eq!(sent.len(), N as usize);
    assert_eq!(ep.stats().waiting_for_message_ids, 0);
    assert_eq!(ep.stats().open_requests, 0);
    let lifetime = Config::default().exchange_lifetime();
    let mut last_use = std::collections::HashMap::new();
    for (at, mid) in sent {
        if let Some(prev) = last_use.insert(mid, at) {
            assert!(
                at - prev >= lifetime,
                "MID {mid} reused after {:?}",
                at - prev
            );
        }
    }
}

/// An observation kept for 24 virtual hours while the client polls the same server once a
/// second (86 400 requests: the client's message IDs wrap around): every poll is answered,
/// notifications keep coming, and cancelling the observation at the moment a poll reuses the
/// observation's first message ID leaves that poll alone.
#[test]
fn an_observation_lives_a_day_beside_polling() {
    use super::sim::{Answer, Link, Sim};
    use crate::proto::Request;
    let mut sim = Sim::new(24, Link::perfect());
    let s = sim.add(Config::default(), Answer::After(Duration::ZERO));
    sim.nodes[s].observable = true;
    let c = sim.add(Config::default(), Answer::Never);
    let obs = sim.request(c, s, Request::get("/obs").observe());
    sim.run(sim.elapsed_plus(Duration::from_millis(500)));
    let first_mid = Message::decode(&sim.tap[0].bytes).unwrap().message_id;
    let mut polls = Vec::new();
    let mut cancelled_at = None;
    for second in 1..=86_400u32 {
        sim.tap.clear();
        let id = sim.request(c, s, Request::get("/poll"));
        polls.push(id);
        sim.run(sim.elapsed_plus(Duration::ZERO));
        let poll_mid = sim
            .tap
            .iter()
            .find_map(|t| {
                Message::decode(&t.bytes)
                    .ok()
                    .filter(|m| m.code == Code::GET)
            })
            .map(|m| m.message_id);
        if cancelled_at.is_none() && poll_mid == Some(first_mid) && second > 60_000 {
            // The poll in flight has the observation's old message ID.
            let now = sim.now;
            sim.nodes[c].ep.cancel(now, obs);
            cancelled_at = Some(second);
        }
        if second % 10 == 0 && cancelled_at.is_none() {
            let now = sim.now;
            sim.nodes[s].ep.notify(now, "/obs");
        }
        sim.run(sim.elapsed_plus(Duration::from_secs(1)));
    }
    assert!(
        cancelled_at.is_some(),
        "the poll never reused the first MID"
    );
    let node = &sim.nodes[c];
    for id in &polls {
        match node.outcomes.get(id).map(Vec::as_slice) {
            Some([super::sim::Outcome::Response(..)]) => {}
            other => panic!("poll {id:?}: {other:?}"),
        }
    }
    let notifications = node.notifications.get(&obs).map_or(0, Vec::len);
    assert!(notifications > 6000, "{notifications}");
    assert_eq!(node.ep.stats().open_requests, 0, "{:?}", node.ep.stats());
}
