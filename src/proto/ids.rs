//! Hash maps keyed by the numbers this endpoint hands out itself ([`RequestId`],
//! [`IncomingId`], leisure slots): a multiplicative hash instead of the keyed SipHash that maps
//! keyed by what remotes choose (addresses, message IDs, tokens) keep.
//!
//! The keys are counters no remote can choose, so there is no flooding of one bucket to fear,
//! and hashing one costs a multiplication.
//!
//! [`RequestId`]: super::RequestId
//! [`IncomingId`]: super::IncomingId

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by a number of this endpoint's own.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one `u64`: consecutive numbers spread over every bucket and over the
/// tag bits hashbrown takes from the top of the hash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the keys here (they hash one u64), but correct for any.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Consecutive keys land in distinct buckets of a small table and differ in the top bits.
    #[test]
    fn consecutive_ids_spread() {
        let hash = |n: u64| {
            let mut h = IdHasher::default();
            h.write_u64(n);
            h.finish()
        };
        let buckets: std::collections::HashSet<u64> = (0..64).map(|n| hash(n) & 63).collect();
        assert!(buckets.len() > 40, "{} buckets of 64", buckets.len());
        let tags: std::collections::HashSet<u64> = (0..64).map(|n| hash(n) >> 57).collect();
        assert!(tags.len() > 30, "{} tags", tags.len());
        let mut map: IdMap<u64, u64> = IdMap::default();
        for n in 0..10_000 {
            map.insert(n, n * 2);
        }
        assert!((0..10_000).all(|n| map[&n] == n * 2));
    }
}
