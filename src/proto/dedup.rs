//! The deduplication cache: which Confirmable and Non-confirmable messages arrived lately, and
//! what was answered to them (<https://www.rfc-editor.org/rfc/rfc7252#section-4.5>).
//!
//! Entries live for EXCHANGE_LIFETIME (CON) or NON_LIFETIME (NON) and the cache holds at most
//! `capacity` of them: when full, the oldest entry goes first. Memory is therefore bounded by
//! the count, whatever the number of remotes.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// What to send again when a duplicate arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Nothing (yet): the request awaits its answer, or there is nothing to repeat.
    Nothing,
    /// The empty ACK with the message's ID.
    EmptyAck,
    /// This datagram (a piggybacked response, or a response to a NON request).
    Bytes(Vec<u8>),
}

#[derive(Debug)]
pub(crate) struct Entry {
    expires: Instant,
    generation: u64,
    pub(crate) replay: Replay,
    pub(crate) source: Option<IpAddr>,
    pub(crate) ifindex: Option<u32>,
}

pub(crate) type Key = (SocketAddr, u16);

#[derive(Debug)]
pub(crate) struct Dedup {
    map: HashMap<Key, Entry>,
    order: VecDeque<(Key, Instant, u64)>,
    capacity: usize,
    generation: u64,
}

impl Dedup {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            generation: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The live entry for `key`, if any.
    pub(crate) fn get_mut(&mut self, now: Instant, key: &Key) -> Option<&mut Entry> {
        self.map.get_mut(key).filter(|e| e.expires > now)
    }

    /// Remembers `key` until `expires`, evicting the oldest entries beyond the capacity.
    pub(crate) fn insert(
        &mut self,
        key: Key,
        expires: Instant,
        replay: Replay,
        source: Option<IpAddr>,
        ifindex: Option<u32>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        self.map.insert(
            key,
            Entry {
                expires,
                generation,
                replay,
                source,
                ifindex,
            },
        );
        self.order.push_back((key, expires, generation));
        while self.map.len() > self.capacity || self.order.len() > 2 * self.capacity {
            self.pop_front();
        }
    }

    /// Drops the entries that have expired by `now` (oldest first; an entry stuck behind a
    /// longer-lived one goes when that one does, and is ignored by lookups meanwhile).
    pub(crate) fn purge(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, exp, _)| *exp <= now) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((key, _, generation)) = self.order.pop_front() {
            if self
                .map
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(i: u32) -> Key {
        (
            SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 5683)),
            i as u16,
        )
    }

    #[test]
    fn bounded_and_expiring() {
        let now = Instant::now();
        let mut d = Dedup::new(100);
        for i in 0..1000 {
            d.insert(
                key(i),
                now + Duration::from_secs(10),
                Replay::Nothing,
                None,
                None,
            );
            assert!(d.len() <= 100);
        }
        assert!(d.get_mut(now, &key(999)).is_some());
        assert!(d.get_mut(now, &key(0)).is_none());
        assert!(d
            .get_mut(now + Duration::from_secs(10), &key(999))
            .is_none());
        d.purge(now + Duration::from_secs(10));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn reinsert_survives_stale_order_record() {
        let now = Instant::now();
        let mut d = Dedup::new(10);
        d.insert(
            key(1),
            now + Duration::from_secs(1),
            Replay::Nothing,
            None,
            None,
        );
        d.insert(
            key(1),
            now + Duration::from_secs(5),
            Replay::EmptyAck,
            None,
            None,
        );
        d.purge(now + Duration::from_secs(2));
        assert_eq!(d.get_mut(now, &key(1)).unwrap().replay, Replay::EmptyAck);
    }
}
