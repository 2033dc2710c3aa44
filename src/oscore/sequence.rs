//! The Sender Sequence Number and its persistence in chunks
//! (<https://www.rfc-editor.org/rfc/rfc8613#appendix-B.1.1>).
//!
//! With a persistence step `K`, numbers may only be used below a *confirmed bound*: a value
//! the caller has written to non-volatile memory and will restore after a restart as the
//! next number to use. When fewer than `K / 2` numbers are left below the bound the caller
//! was last asked to store, a new bound (the next number plus `K`) is requested; until the
//! caller confirms a bound, numbers run out at the old one and protecting fails with
//! [`OscoreError::SequencePersistPending`] instead of using a number a restart could reuse.

use super::cose::MAX_SEQUENCE;
use super::OscoreError;

/// One past the largest usable number: a bound never needs to exceed it.
const LIMIT: u64 = MAX_SEQUENCE + 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SenderSequence {
    /// The next number to use.
    next: u64,
    /// The persistence step; 0 means no persistence (numbers are used freely).
    step: u64,
    /// Numbers below this are covered by what the caller confirmed it stored.
    confirmed: u64,
    /// The largest bound the caller was asked to store.
    requested: u64,
    /// Whether `requested` is yet to be handed out by `take_request`.
    report: bool,
}

impl SenderSequence {
    pub(crate) fn new(step: u64) -> Self {
        let mut s = Self {
            next: 0,
            step,
            confirmed: 0,
            requested: 0,
            report: false,
        };
        s.maybe_request();
        s
    }

    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Moves the next number to `seq`; never backwards, so no number is handed out twice.
    pub(crate) fn set_next(&mut self, seq: u64) {
        self.next = self.next.max(seq);
        self.maybe_request();
    }

    /// Hands out the next number.
    pub(crate) fn allocate(&mut self) -> Result<u64, OscoreError> {
        if self.next > MAX_SEQUENCE {
            return Err(OscoreError::SequenceExhausted);
        }
        if self.step > 0 && self.next >= self.confirmed {
            self.maybe_request();
            return Err(OscoreError::SequencePersistPending);
        }
        let seq = self.next;
        self.next += 1;
        self.maybe_request();
        Ok(seq)
    }

    pub(crate) fn take_request(&mut self) -> Option<u64> {
        if std::mem::take(&mut self.report) {
            Some(self.requested)
        } else {
            None
        }
    }

    pub(crate) fn pending(&self) -> Option<u64> {
        (self.step > 0 && self.requested > self.confirmed).then_some(self.requested)
    }

    pub(crate) fn confirm(&mut self, bound: u64) {
        self.confirmed = self.confirmed.max(bound.min(LIMIT));
        if self.requested <= self.confirmed {
            self.report = false;
        }
        self.maybe_request();
    }

    fn maybe_request(&mut self) {
        if self.step == 0 {
            return;
        }
        let horizon = self.requested.max(self.confirmed);
        if horizon.saturating_sub(self.next) <= self.step / 2 {
            let bound = self.next.saturating_add(self.step).min(LIMIT);
            if bound > horizon {
                self.requested = bound;
                self.report = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_persistence_numbers_run_to_the_limit() {
        let mut s = SenderSequence::new(0);
        assert_eq!(s.take_request(), None);
        assert_eq!(s.allocate(), Ok(0));
        assert_eq!(s.allocate(), Ok(1));
        s.set_next(MAX_SEQUENCE);
        assert_eq!(s.allocate(), Ok(MAX_SEQUENCE));
        assert_eq!(s.allocate(), Err(OscoreError::SequenceExhausted));
        assert_eq!(s.allocate(), Err(OscoreError::SequenceExhausted));
        s.set_next(3);
        assert_eq!(s.allocate(), Err(OscoreError::SequenceExhausted));
    }

    #[test]
    fn numbers_never_pass_the_confirmed_bound() {
        let mut s = SenderSequence::new(10);
        assert_eq!(s.allocate(), Err(OscoreError::SequencePersistPending));
        assert_eq!(s.take_request(), Some(10));
        assert_eq!(s.take_request(), None);
        assert_eq!(s.pending(), Some(10));
        s.confirm(10);
        assert_eq!(s.pending(), None);
        let mut used = Vec::new();
        for _ in 0..5 {
            used.push(s.allocate().unwrap());
        }
        // 5 left of 10: the next bound is asked for ahead of time.
        assert_eq!(s.take_request(), Some(15));
        for _ in 0..5 {
            used.push(s.allocate().unwrap());
        }
        // Not confirmed yet: stop at 10. Half a step from 15, a newer bound is asked for.
        assert_eq!(s.allocate(), Err(OscoreError::SequencePersistPending));
        assert_eq!(s.pending(), Some(20));
        assert_eq!(s.take_request(), Some(20));
        // The caller confirms the older one it stored first: 10 to 14 become usable.
        s.confirm(15);
        assert_eq!(s.pending(), Some(20));
        used.push(s.allocate().unwrap());
        assert_eq!(used, (0..11).collect::<Vec<_>>());
        // A stale confirmation does not lower the bound.
        s.confirm(3);
        assert_eq!(s.allocate(), Ok(11));
    }

    #[test]
    fn restart_resumes_above_every_used_number() {
        let mut s = SenderSequence::new(4);
        let mut stored = s.take_request().unwrap();
        s.confirm(stored);
        let mut used = Vec::new();
        for _ in 0..9 {
            match s.allocate() {
                Ok(n) => used.push(n),
                Err(OscoreError::SequencePersistPending) => {}
                Err(e) => panic!("{e}"),
            }
            if let Some(b) = s.take_request() {
                stored = b;
                s.confirm(b);
            }
        }
        // "Crash": a new context restored from what was stored.
        let mut t = SenderSequence::new(4);
        t.set_next(stored);
        assert!(stored > *used.last().unwrap());
        assert_eq!(t.allocate(), Err(OscoreError::SequencePersistPending));
        let b = t.take_request().unwrap();
        assert_eq!(b, stored + 4);
        t.confirm(b);
        let n = t.allocate().unwrap();
        assert!(!used.contains(&n));
        assert_eq!(n, stored);
    }

    #[test]
    fn bounds_stop_at_the_limit() {
        let mut s = SenderSequence::new(100);
        s.set_next(MAX_SEQUENCE - 10);
        let b = s.take_request().unwrap();
        assert_eq!(b, LIMIT);
        s.confirm(b);
        for _ in 0..11 {
            s.allocate().unwrap();
        }
        assert_eq!(s.allocate(), Err(OscoreError::SequenceExhausted));
        assert_eq!(s.take_request(), None);
    }
}
