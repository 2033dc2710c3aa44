//! Echo values and verified remotes (RFC 9175 §2): what a server needs to answer only
//! small messages to addresses it has not seen answer, and to tell that a request is fresh.
//!
//! An Echo value this endpoint gives is 12 bytes: the second it was made (counted from the
//! endpoint's first use) and a 64-bit tag over that second and the remote's address: SipHash
//! (the standard library's) over a 128-bit secret the endpoint takes from the OS when it is
//! made, then the data. Checking one needs no state, so a flood of spoofed
//! requests costs no memory; a value is good for [`Config::echo_lifetime`](super::Config::echo_lifetime) and only
//! from the address it was given to. Remotes that returned a good value (or answered a
//! request of ours, which proves they receive what is sent to their address) are remembered
//! as verified for [`Config::verified_lifetime`](super::Config::verified_lifetime), at most
//! [`Config::max_verified_remotes`](super::Config::max_verified_remotes) of them, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The length of the Echo values this endpoint makes.
pub(crate) const ECHO_LEN: usize = 12;

/// How many times its request's size an answer to an unverified remote may be
/// (RFC 9175 §2.4).
pub(crate) const AMPLIFICATION_FACTOR: usize = 3;

#[derive(Debug)]
pub(crate) struct Freshness {
    /// The secret that keys the tags of Echo values, never sent.
    key: [u64; 2],
    /// The instant Echo times count from: the first time one was made or checked.
    epoch: Option<Instant>,
    lifetime: Duration,
    verified_lifetime: Duration,
    max_verified: usize,
    /// Verified remotes, with when they stop being so.
    verified: HashMap<SocketAddr, Instant>,
    /// The same, in the order they expire; records made stale by a later verification stay
    /// until they reach the front (or a compaction).
    order: VecDeque<(SocketAddr, Instant)>,
}

impl Freshness {
    pub(crate) fn new(
        key: [u64; 2],
        lifetime: Duration,
        verified_lifetime: Duration,
        max_verified: usize,
    ) -> Self {
        Self {
            key,
            epoch: None,
            lifetime,
            verified_lifetime,
            max_verified,
            verified: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn seconds(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        u32::try_from(now.saturating_duration_since(epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn tag(&self, remote: SocketAddr, secs: u32) -> u64 {
        let mut h = DefaultHasher::new();
        h.write_u64(self.key[0]);
        h.write_u64(self.key[1]);
        match remote {
            SocketAddr::V4(a) => {
                h.write_u8(4);
                h.write(&a.ip().to_ipv6_mapped().octets());
            }
            SocketAddr::V6(a) => {
                h.write_u8(6);
                h.write(&a.ip().octets());
            }
        }
        h.write_u16(remote.port());
        h.write_u32(secs);
        h.finish()
    }

    /// A new Echo value for `remote`.
    pub(crate) fn issue(&mut self, now: Instant, remote: SocketAddr) -> [u8; ECHO_LEN] {
        let secs = self.seconds(now);
        let mut value = [0u8; ECHO_LEN];
        value[..4].copy_from_slice(&secs.to_be_bytes());
        value[4..].copy_from_slice(&self.tag(remote, secs).to_be_bytes());
        value
    }

    /// How old `value` is, if this endpoint gave it to `remote` within the Echo lifetime.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        value: &[u8],
    ) -> Option<Duration> {
        let value: &[u8; ECHO_LEN] = value.try_into().ok()?;
        let (secs, tag) = value.split_at(4);
        let secs = u32::from_be_bytes(secs.try_into().ok()?);
        let tag = u64::from_be_bytes(tag.try_into().ok()?);
        let current = self.seconds(now);
        let age = Duration::from_secs(u64::from(current.checked_sub(secs)?));
        (age <= self.lifetime && self.tag(remote, secs) == tag).then_some(age)
    }

    /// Remembers that `remote` receives what is sent to its address.
    pub(crate) fn verify(&mut self, now: Instant, remote: SocketAddr) {
        if self.max_verified == 0 {
            return;
        }
        let until = now + self.verified_lifetime;
        // At most one record a second per remote: a remote that keeps proving itself does
        // not grow the queue.
        if let Some(old) = self.verified.get(&remote) {
            if *old + Duration::from_secs(1) > until {
                return;
            }
        }
        self.verified.insert(remote, until);
        self.order.push_back((remote, until));
        self.purge(now);
        if self.order.len() > 2 * self.verified.len() + 64 {
            let verified = &self.verified;
            self.order
                .retain(|(remote, until)| verified.get(remote) == Some(until));
        }
    }

    /// Whether `remote` was verified within the verified lifetime.
    pub(crate) fn is_verified(&mut self, now: Instant, remote: SocketAddr) -> bool {
        self.purge(now);
        self.verified.get(&remote).is_some_and(|until| *until > now)
    }

    fn purge(&mut self, now: Instant) {
        while let Some(&(remote, until)) = self.order.front() {
            if until > now && self.verified.len() <= self.max_verified {
                break;
            }
            self.order.pop_front();
            if self.verified.get(&remote) == Some(&until) {
                self.verified.remove(&remote);
            }
        }
    }

    /// How many remotes are remembered as verified.
    pub(crate) fn verified_len(&self) -> usize {
        self.verified.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i], 5683))
    }

    #[test]
    fn a_value_is_good_only_for_its_remote_and_lifetime() {
        let mut f = Freshness::new(
            [1, 2],
            Duration::from_secs(30),
            Duration::from_secs(3600),
            10,
        );
        let t0 = Instant::now();
        let v = f.issue(t0, addr(1));
        assert_eq!(f.check(t0, addr(1), &v), Some(Duration::ZERO));
        assert_eq!(
            f.check(t0 + Duration::from_secs(30), addr(1), &v),
            Some(Duration::from_secs(30))
        );
        assert_eq!(f.check(t0 + Duration::from_secs(31), addr(1), &v), None);
        assert_eq!(f.check(t0, addr(2), &v), None, "another remote");
        let mut forged = v;
        forged[11] ^= 1;
        assert_eq!(f.check(t0, addr(1), &forged), None);
        let mut future = v;
        future[3] = 9;
        assert_eq!(f.check(t0, addr(1), &future), None, "a time not yet come");
        assert_eq!(f.check(t0, addr(1), &v[..11]), None);
        assert_eq!(f.check(t0, addr(1), &[]), None);
    }

    #[test]
    fn verified_remotes_are_bounded_and_expire() {
        let mut f = Freshness::new(
            [1, 2],
            Duration::from_secs(30),
            Duration::from_secs(100),
            1000,
        );
        let t0 = Instant::now();
        for i in 0..5000u16 {
            f.verify(t0, addr(i));
        }
        assert_eq!(f.verified_len(), 1000);
        assert!(f.is_verified(t0, addr(4999)));
        assert!(!f.is_verified(t0, addr(0)), "the oldest went first");
        // Re-verifying one remote over and over keeps the queue small.
        for s in 0..10_000u64 {
            f.verify(t0 + Duration::from_millis(s * 10), addr(4999));
        }
        assert!(f.order.len() <= 2 * f.verified.len() + 64 + 1);
        assert!(!f.is_verified(t0 + Duration::from_secs(300), addr(4999)));
        assert_eq!(f.verified_len(), 0);
    }
}
