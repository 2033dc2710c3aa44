//! The deduplication cache: which Confirmable and Non-confirmable messages arrived lately, and
//! what was answered to them (<https://www.rfc-editor.org/rfc/rfc7252#section-4.5>).
//!
//! An entry lives exactly its lifetime (EXCHANGE_LIFETIME for CON, NON_LIFETIME for NON) and is
//! never evicted earlier, however busy the endpoint is: forgetting a message early would let
//! its retransmission run the request a second time. Memory is bounded by a byte budget
//! instead, with a quota per remote so that one remote cannot take the whole cache; when there
//! is no room, [`Dedup::insert`] refuses and the caller declines the new work (see
//! `Endpoint::handle_request`) rather than forgetting old work.
//!
//! The two lifetimes are constant, so entries of each kind expire in the order they were made:
//! one queue per kind keeps expiry exact and O(1) per entry.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What to send again when a duplicate arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Nothing (yet): the request awaits its answer, or there is nothing to repeat.
    Nothing,
    /// The empty ACK with the message's ID.
    EmptyAck,
    /// This datagram (a piggybacked response, or a response to a NON request), in the buffer
    /// it was encoded in (kept as it is: no copy to shrink it).
    Bytes(Vec<u8>),
}

impl Replay {
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Bytes(b) => b.capacity(),
            _ => 0,
        }
    }
}

/// Which lifetime an entry has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// EXCHANGE_LIFETIME: a Confirmable message.
    Exchange,
    /// NON_LIFETIME: a Non-confirmable message.
    Non,
}

#[derive(Debug)]
pub(crate) struct Entry {
    expires: Instant,
    generation: u32,
    /// Bytes reserved for the answer still to come (released when it is set).
    reserved: u32,
    pub(crate) replay: Replay,
    pub(crate) source: Option<IpAddr>,
    pub(crate) ifindex: Option<u32>,
}

impl Entry {
    /// What this entry is charged: its fixed cost, its replay and its reservation.
    fn cost(&self) -> usize {
        ENTRY_COST + self.replay.heap_bytes() + self.reserved as usize
    }
}

pub(crate) type Key = (SocketAddr, u16);

/// What one entry costs besides its replay bytes: the map slot (key, value, control byte,
/// load-factor slack) and its place in an expiry queue.
pub(crate) const ENTRY_COST: usize =
    (size_of::<(Key, Entry)>() + 1) * 8 / 7 + size_of::<(Key, Instant, u32)>();

// The target the design sets for an entry's fixed cost.
const _: () = assert!(ENTRY_COST <= 256);

#[derive(Debug)]
pub(crate) struct Dedup {
    map: HashMap<Key, Entry>,
    /// Expiry order of CON and NON entries: (key, expiry, generation).
    queues: [VecDeque<(Key, Instant, u32)>; 2],
    lifetimes: [Duration; 2],
    /// Bytes charged to each remote with entries.
    per_remote: HashMap<SocketAddr, usize>,
    bytes: usize,
    budget: usize,
    quota: usize,
    generation: u32,
    refused: u64,
}

impl Dedup {
    /// A cache of at most `budget` bytes, `quota` of them for any one remote.
    pub(crate) fn new(
        budget: usize,
        quota: usize,
        exchange_lifetime: Duration,
        non_lifetime: Duration,
    ) -> Self {
        Self {
            map: HashMap::new(),
            queues: [VecDeque::new(), VecDeque::new()],
            lifetimes: [exchange_lifetime, non_lifetime],
            per_remote: HashMap::new(),
            bytes: 0,
            budget,
            quota: quota.min(budget),
            generation: 0,
            refused: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes in use (entries and their replay datagrams).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many messages found no room since the endpoint started.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    /// The live entry for `key`, if any.
    pub(crate) fn get(&self, now: Instant, key: &Key) -> Option<&Entry> {
        self.map.get(key).filter(|e| e.expires > now)
    }

    /// Whether an entry for a message from `remote`, with `reserve` bytes for its answer,
    /// would fit now.
    #[cfg(test)]
    pub(crate) fn has_room(&self, remote: SocketAddr, reserve: usize) -> bool {
        let used = self.per_remote.get(&remote).copied().unwrap_or(0);
        let cost = ENTRY_COST + reserve;
        self.bytes + cost <= self.budget && used + cost <= self.quota
    }

    /// When room is expected: when the oldest entry expires if the whole cache is full, else
    /// (a remote's own quota is full, and its entries are not kept in order) a lifetime from
    /// now at the latest. A hint for Max-Age in a 5.03 that declines work.
    pub(crate) fn room_at(&self, now: Instant, reserve: usize) -> Instant {
        if self.bytes + ENTRY_COST + reserve > self.budget {
            return self
                .queues
                .iter()
                .filter_map(|q| q.front().map(|(_, at, _)| *at))
                .min()
                .unwrap_or(now);
        }
        now + self.lifetimes[0]
    }

    /// Remembers `key` for its lifetime, with `reserve` bytes set aside for the answer to
    /// replay (so that the budget holds once it is set); returns `false`, remembering
    /// nothing, when the budget or the remote's quota has no room. An entry for `key` that
    /// is still there is replaced (and gone even if the new one finds no room; callers
    /// insert only keys without a live entry).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        key: Key,
        lifetime: Lifetime,
        replay: Replay,
        reserve: usize,
        source: Option<IpAddr>,
        ifindex: Option<u32>,
    ) -> bool {
        // An entry still there for `key` (expired, not yet purged) gives its bytes back
        // before the new one is weighed. The maps are only read until the entry fits, so a
        // refused message (a flood against a full cache) grows nothing.
        let old = self.map.get(&key).map_or(0, Entry::cost);
        let charged = self.per_remote.get(&key.0).copied().unwrap_or(0);
        debug_assert!(charged >= old && self.bytes >= old, "dedup bytes drift");
        let used = charged.saturating_sub(old);
        let need = ENTRY_COST + reserve;
        if self.bytes - old + need > self.budget || used + need > self.quota {
            if old != 0 {
                self.map.remove(&key);
                self.charge(key.0, -(old as isize));
            }
            self.refused += 1;
            return false;
        }
        self.generation = self.generation.wrapping_add(1);
        let which = lifetime as usize;
        let entry = Entry {
            expires: now + self.lifetimes[which],
            generation: self.generation,
            reserved: reserve.min(u32::MAX as usize) as u32,
            replay,
            source,
            ifindex,
        };
        let cost = entry.cost();
        self.queues[which].push_back((key, entry.expires, entry.generation));
        self.map.insert(key, entry);
        self.charge(key.0, cost as isize - old as isize);
        true
    }

    /// Sets what a duplicate of `key` gets, if `key` is remembered.
    pub(crate) fn set_replay(&mut self, now: Instant, key: &Key, replay: Replay) {
        let Some(entry) = self.map.get_mut(key).filter(|e| e.expires > now) else {
            return;
        };
        // The reservation made room for this answer: it is released as the answer is charged.
        let delta = replay.heap_bytes() as isize
            - entry.replay.heap_bytes() as isize
            - entry.reserved as isize;
        entry.reserved = 0;
        entry.replay = replay;
        self.charge(key.0, delta);
    }

    fn charge(&mut self, remote: SocketAddr, delta: isize) {
        debug_assert!(
            self.bytes.checked_add_signed(delta).is_some(),
            "dedup bytes drift"
        );
        self.bytes = self.bytes.saturating_add_signed(delta);
        match self.per_remote.entry(remote) {
            MapEntry::Occupied(mut o) => {
                let v = o.get().saturating_add_signed(delta);
                if v == 0 {
                    o.remove();
                } else {
                    *o.get_mut() = v;
                }
            }
            MapEntry::Vacant(v) => {
                if delta > 0 {
                    v.insert(delta as usize);
                }
            }
        }
    }

    /// Drops the entries that have expired by `now`.
    pub(crate) fn purge(&mut self, now: Instant) {
        for which in 0..2 {
            while let Some(&(key, expires, generation)) = self.queues[which].front() {
                if expires > now {
                    break;
                }
                self.queues[which].pop_front();
                if self
                    .map
                    .get(&key)
                    .is_some_and(|e| e.generation == generation)
                {
                    if let Some(e) = self.map.remove(&key) {
                        self.charge(key.0, -(e.cost() as isize));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Key {
        (
            SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 5683)),
            i as u16,
        )
    }

    const LIFE: Duration = Duration::from_secs(10);

    #[test]
    fn entries_live_their_lifetime_and_the_budget_refuses() {
        let now = Instant::now();
        let mut d = Dedup::new(100 * ENTRY_COST, usize::MAX, LIFE, LIFE / 2);
        for i in 0..100 {
            assert!(d.insert(
                now,
                key(i),
                Lifetime::Exchange,
                Replay::Nothing,
                0,
                None,
                None
            ));
        }
        // Full: the 101st is refused, and nothing old was forgotten.
        assert!(!d.insert(
            now,
            key(100),
            Lifetime::Exchange,
            Replay::Nothing,
            0,
            None,
            None
        ));
        assert_eq!(d.refused(), 1);
        assert!((0..100).all(|i| d.get(now, &key(i)).is_some()));
        assert!(d
            .get(now + LIFE - Duration::from_millis(1), &key(0))
            .is_some());
        assert!(d.get(now + LIFE, &key(0)).is_none());
        d.purge(now + LIFE);
        assert_eq!((d.len(), d.bytes()), (0, 0));
        assert!(d.per_remote.is_empty());
    }

    #[test]
    fn an_expired_entry_left_in_place_is_given_back_whether_or_not_its_successor_fits() {
        let now = Instant::now();
        let later = now + LIFE + Duration::from_secs(1);
        let mut d = Dedup::new(2 * ENTRY_COST + 100, usize::MAX, LIFE, LIFE);
        let replay = Replay::Bytes(vec![0; 100]);
        assert!(d.insert(now, key(1), Lifetime::Exchange, replay, 0, None, None));
        assert_eq!(d.bytes(), ENTRY_COST + 100);
        // Not purged: the new entry for the same key replaces it and is charged alone.
        assert!(d.insert(
            later,
            key(1),
            Lifetime::Exchange,
            Replay::Nothing,
            0,
            None,
            None
        ));
        assert_eq!(d.bytes(), ENTRY_COST);
        // Expired again, and the successor (too large a reservation) is refused: the old
        // entry is gone all the same, and nothing is left charged.
        let last = later + LIFE + Duration::from_secs(1);
        assert!(!d.insert(
            last,
            key(1),
            Lifetime::Exchange,
            Replay::Nothing,
            1000,
            None,
            None
        ));
        assert_eq!((d.len(), d.bytes()), (0, 0));
        assert!(d.per_remote.is_empty());
        // A refusal of a new remote leaves no trace in the maps either.
        assert!(!d.insert(
            last,
            key(2),
            Lifetime::Exchange,
            Replay::Nothing,
            1000,
            None,
            None
        ));
        assert!(d.per_remote.is_empty() && d.map.is_empty());
        d.purge(last + LIFE * 2);
        assert_eq!(d.bytes(), 0);
    }

    #[test]
    fn quota_per_remote() {
        let now = Instant::now();
        let mut d = Dedup::new(1000 * ENTRY_COST, 3 * ENTRY_COST, LIFE, LIFE);
        let remote = key(0).0;
        for mid in 0..3 {
            assert!(d.insert(
                now,
                (remote, mid),
                Lifetime::Non,
                Replay::Nothing,
                0,
                None,
                None
            ));
        }
        assert!(!d.has_room(remote, 0));
        assert!(!d.insert(
            now,
            (remote, 9),
            Lifetime::Non,
            Replay::Nothing,
            0,
            None,
            None
        ));
        assert!(d.insert(now, key(7), Lifetime::Non, Replay::Nothing, 0, None, None));
    }

    #[test]
    fn two_lifetimes_expire_in_order_and_replays_are_charged() {
        let now = Instant::now();
        let mut d = Dedup::new(usize::MAX, usize::MAX, LIFE, LIFE / 2);
        assert!(d.insert(
            now,
            key(1),
            Lifetime::Exchange,
            Replay::Nothing,
            0,
            None,
            None
        ));
        assert!(d.insert(now, key(2), Lifetime::Non, Replay::Nothing, 0, None, None));
        d.set_replay(now, &key(1), Replay::Bytes(vec![0; 100]));
        assert_eq!(d.bytes(), 2 * ENTRY_COST + 100);
        d.purge(now + LIFE / 2);
        assert!(d.get(now, &key(2)).is_none());
        assert_eq!(d.get(now, &key(1)).unwrap().replay.heap_bytes(), 100);
        // Re-inserting replaces (the old queue record is stale and ignored).
        assert!(d.insert(
            now + LIFE / 2,
            key(1),
            Lifetime::Exchange,
            Replay::EmptyAck,
            0,
            None,
            None
        ));
        d.purge(now + LIFE);
        assert_eq!(d.get(now + LIFE, &key(1)).unwrap().replay, Replay::EmptyAck);
        assert_eq!(d.bytes(), ENTRY_COST);
    }
}
