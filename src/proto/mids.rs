//! Which message IDs to one remote are still in use: RFC 7252 §4.4 forbids reusing a message
//! ID with the same remote within EXCHANGE_LIFETIME.
//!
//! IDs are handed out in sequence, so the ID after the last one handed out was last used
//! 65 536 IDs ago; it is free again only if fewer than 65 536 IDs were handed out within
//! EXCHANGE_LIFETIME. [`MidLog`] counts them in a few runs per remote (a run collects the
//! IDs of a stretch of time and expires a lifetime after its last use), which costs a few
//! hundred bytes per busy remote instead of a time stamp per ID. A run expires a little later
//! than its oldest ID would, so the count errs on the safe side.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many message IDs there are.
const ID_SPACE: u32 = 1 << 16;

/// How many runs a lifetime is cut into at most (the longer a run, the later its first IDs
/// are released).
const RUNS_PER_LIFETIME: u32 = 16;

/// The message IDs lately handed out to one remote.
#[derive(Debug, Default)]
pub(crate) struct MidLog {
    /// (first use, last use, how many IDs), oldest first.
    runs: VecDeque<(Instant, Instant, u32)>,
    in_use: u32,
}

impl MidLog {
    /// How many IDs handed out within the lifetime (as of the last call).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Forgets the runs whose last use is a lifetime old.
    fn purge(&mut self, now: Instant, lifetime: Duration) {
        while let Some(&(_, last, n)) = self.runs.front() {
            if last + lifetime > now {
                break;
            }
            self.runs.pop_front();
            self.in_use -= n;
        }
    }

    /// Records the use of one more ID, if one is free: `false` when all 65 536 were handed out
    /// within `lifetime`.
    pub(crate) fn take(&mut self, now: Instant, lifetime: Duration) -> bool {
        self.purge(now, lifetime);
        if self.in_use >= ID_SPACE {
            return false;
        }
        self.in_use += 1;
        let span = lifetime / RUNS_PER_LIFETIME;
        match self.runs.back_mut() {
            Some((first, last, n)) if now < *first + span => {
                *last = now;
                *n += 1;
            }
            _ => self.runs.push_back((now, now, 1)),
        }
        true
    }

    /// When the oldest run expires, if any: the earliest an ID can become free.
    pub(crate) fn next_release(&self, lifetime: Duration) -> Option<Instant> {
        self.runs.front().map(|&(_, last, _)| last + lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Duration = Duration::from_secs(247);

    #[test]
    fn all_ids_within_a_lifetime_then_wait() {
        let t0 = Instant::now();
        let mut log = MidLog::default();
        for i in 0..ID_SPACE {
            // Spread over 200 s.
            let now = t0 + Duration::from_micros(u64::from(i) * 3000);
            assert!(log.take(now, LIFE), "{i}");
        }
        let now = t0 + Duration::from_secs(200);
        assert!(!log.take(now, LIFE));
        assert_eq!(log.in_use(), ID_SPACE);
        let free = log.next_release(LIFE).unwrap();
        // Never before the first ID's lifetime has passed, and not much after.
        assert!(free >= t0 + LIFE && free <= t0 + LIFE + LIFE / RUNS_PER_LIFETIME);
        assert!(!log.take(free - Duration::from_millis(1), LIFE));
        assert!(log.take(free, LIFE));
        assert!(log.runs.len() <= RUNS_PER_LIFETIME as usize + 2);
    }
}
