//! Memory stays bounded by the configuration, whatever the network sends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::message::{Code, Message, OptionNumber, Token, Type};
use crate::proto::{Config, Endpoint, Error, Event, RecvMeta, Request, Response};

fn remote(i: u32) -> SocketAddr {
    SocketAddr::from((
        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        40000 + (i % 1000) as u16,
    ))
}

fn request_bytes(ty: Type, mid: u16) -> Vec<u8> {
    let mut m = Message::new(ty, Code::GET, mid);
    m.token = Token::from_slice(&mid.to_be_bytes()).unwrap();
    m.options.push(OptionNumber::URI_PATH, "x");
    m.to_bytes().unwrap()
}

#[test]
fn dedup_cache_stays_bounded_under_100k_remotes() {
    let budget = 5000 * crate::proto::dedup::ENTRY_COST;
    let config = Config {
        dedup_memory: budget,
        dedup_memory_per_remote: budget,
        max_idle_remotes: 5000,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut max = crate::proto::Stats::default();
    let mut late = std::collections::VecDeque::new();
    for i in 0..100_000u32 {
        // All within one EXCHANGE_LIFETIME, so nothing expires: only the bound can hold.
        let now = start + Duration::from_millis(u64::from(i));
        let ty = if i % 3 == 0 { Type::Non } else { Type::Con };
        ep.handle_datagram(now, &RecvMeta::new(remote(i)), &request_bytes(ty, i as u16));
        let Some(Event::Request { id, .. }) = ep.poll_event() else {
            panic!("request {i} was not delivered")
        };
        // Every seventh is answered 300 ms late, as a separate response.
        if i % 7 == 0 {
            late.push_back((i, id));
        } else {
            ep.respond(now, id, Response::new(Code::CONTENT)).unwrap();
        }
        while late.front().is_some_and(|(j, _)| i - j >= 300) {
            let (_, id) = late.pop_front().unwrap();
            ep.respond(now, id, Response::new(Code::CONTENT)).unwrap();
        }
        ep.handle_timeout(now);
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            // The clients acknowledge separate responses at once.
            let m = Message::decode(&buf).unwrap();
            if m.ty == Type::Con {
                let mut ack = Vec::new();
                crate::message::encode_empty(Type::Ack, m.message_id, &mut ack);
                ep.handle_datagram(now, &RecvMeta::new(t.destination), &ack);
            }
        }
        let s = ep.stats();
        max.dedup_entries = max.dedup_entries.max(s.dedup_entries);
        max.dedup_bytes = max.dedup_bytes.max(s.dedup_bytes);
        max.timers = max.timers.max(s.timers);
        max.remotes = max.remotes.max(s.remotes);
        max.idle_remotes = max.idle_remotes.max(s.idle_remotes);
        max.pending_incoming = max.pending_incoming.max(s.pending_incoming);
    }
    // Full, and within the budget (a replay may add its bytes past the last admission).
    assert!(
        max.dedup_entries > 4000 && max.dedup_entries <= 5000,
        "{max:?}"
    );
    assert!(max.dedup_bytes <= budget + 64, "{max:?}");
    // GETs that found no room were served unremembered (idempotent, RFC 7252 §4.5).
    assert!(ep.stats().dedup_refused > 90_000, "{:?}", ep.stats());
    assert!(max.pending_incoming <= 50, "{max:?}");
    assert!(max.remotes <= 1, "{max:?}");
    assert!(
        max.idle_remotes <= 5000,
        "idle remotes are bounded too: {max:?}"
    );
    assert!(max.timers <= 2 * 50 + 1024 + 1, "{max:?}");
    // A duplicate of a remembered request is still recognized: entries are never evicted
    // before their lifetime.
    let now = start + Duration::from_secs(100);
    let i = 1;
    ep.handle_datagram(
        now,
        &RecvMeta::new(remote(i)),
        &request_bytes(Type::Con, i as u16),
    );
    assert!(ep.poll_event().is_none());
    assert!(
        ep.poll_transmit(now, &mut buf).is_some(),
        "the stored answer is replayed"
    );
    // Everything expires in time.
    let later = start + Duration::from_secs(100_000);
    ep.handle_timeout(later);
    while ep.poll_transmit(later, &mut buf).is_some() {}
    assert_eq!(ep.stats().dedup_entries, 0);
    assert_eq!(ep.stats().idle_remotes, 0);
}

#[test]
fn unanswered_requests_are_bounded_and_overload_gets_503() {
    let config = Config {
        max_pending_requests: 10,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = Instant::now();
    let mut buf = Vec::new();
    let mut delivered = 0;
    for i in 0..50u32 {
        ep.handle_datagram(
            now,
            &RecvMeta::new(remote(i)),
            &request_bytes(Type::Con, i as u16),
        );
        if let Some(Event::Request { .. }) = ep.poll_event() {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 10);
    let mut codes = Vec::new();
    while ep.poll_transmit(now, &mut buf).is_some() {
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.ty, Type::Ack);
        codes.push(m.code);
    }
    assert_eq!(codes, vec![Code::SERVICE_UNAVAILABLE; 40]);
    assert_eq!(ep.stats().pending_incoming, 10);
}

#[test]
fn the_queue_per_remote_is_bounded() {
    let config = Config {
        max_queued_per_remote: 5,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = Instant::now();
    let r = remote(1);
    for _ in 0..6 {
        ep.request(now, r, Request::get("/")).unwrap();
    }
    assert_eq!(
        ep.request(now, r, Request::get("/")),
        Err(Error::QueueFull(5))
    );
    assert!(ep.request(now, remote(2), Request::get("/")).is_ok());
}

#[test]
fn requests_never_answered_are_forgotten_after_their_lifetime() {
    let mut ep = Endpoint::new(Config::default().into());
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut ids = Vec::new();
    for (i, ty) in [Type::Con, Type::Non].into_iter().enumerate() {
        ep.handle_datagram(
            start,
            &RecvMeta::new(remote(i as u32)),
            &request_bytes(ty, 7),
        );
        let Some(Event::Request { id, .. }) = ep.poll_event() else {
            panic!()
        };
        ids.push(id);
    }
    let lifetime = ep.config().exchange_lifetime();
    let mut now = start;
    while let Some(t) = ep.poll_timeout() {
        now = t;
        ep.handle_timeout(now);
        while ep.poll_transmit(now, &mut buf).is_some() {}
    }
    assert_eq!(
        now - start,
        lifetime,
        "the CON request's answer was awaited for EXCHANGE_LIFETIME"
    );
    assert_eq!(ep.stats().pending_incoming, 0);
    for id in ids {
        assert_eq!(
            ep.respond(now, id, Response::new(Code::CONTENT)),
            Err(Error::UnknownExchange)
        );
    }
}

#[test]
fn idle_remotes_stay_within_the_bound_after_responses() {
    let config = Config {
        max_idle_remotes: 1,
        ..Config::default()
    };
    let mut ep = Endpoint::new(config.into());
    let now = Instant::now();
    let mut buf = Vec::new();
    for i in 0..3u32 {
        ep.handle_datagram(
            now,
            &RecvMeta::new(remote(i)),
            &request_bytes(Type::Non, i as u16),
        );
    }
    while let Some(Event::Request { id, .. }) = ep.poll_event() {
        ep.respond(now, id, Response::new(Code::CONTENT)).unwrap();
    }
    while ep.poll_transmit(now, &mut buf).is_some() {}
    assert!(ep.stats().idle_remotes <= 1, "{:?}", ep.stats());
}
