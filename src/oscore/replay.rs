//! The server's replay window: the anti-replay sliding window of DTLS (RFC 6347 §4.1.2.6),
//! the default of RFC 8613 [§7.4](https://www.rfc-editor.org/rfc/rfc8613#section-7.4), with
//! the uninitialized state of
//! [Appendix B.1.2](https://www.rfc-editor.org/rfc/rfc8613#appendix-B.1.2).

/// The largest window a context may be configured with.
pub(crate) const MAX_WINDOW: u32 = 4096;

/// Sequence numbers seen, as a ring of bits indexed by number modulo the window size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReplayWindow {
    /// After a restart without the window's state: nothing can be checked
    /// (RFC 8613 Appendix B.1.2).
    Uninitialized { size: u32 },
    /// Checking.
    Active(Active),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Active {
    size: u32,
    /// Numbers below this are rejected outright.
    floor: u64,
    /// The highest number accepted, if any.
    top: Option<u64>,
    /// Bit `n % size` says whether `n` was accepted, for `n` in `(top - size, top]`.
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// A window that has seen nothing: every number is fresh (a new security context,
    /// RFC 8613 §3.2.2).
    pub(crate) fn new(size: u32) -> Self {
        Self::Active(Active::new(size, 0))
    }

    pub(crate) fn size(&self) -> u32 {
        match self {
            Self::Uninitialized { size } => *size,
            Self::Active(a) => a.size,
        }
    }

    /// Forgets everything and accepts nothing until [`init_from`](Self::init_from).
    pub(crate) fn uninitialize(&mut self) {
        *self = Self::Uninitialized { size: self.size() };
    }

    /// Starts afresh at `seq`, which counts as accepted: it and every lower number are
    /// rejected from now on, every higher one is fresh.
    pub(crate) fn init_from(&mut self, seq: u64) {
        let mut a = Active::new(self.size(), seq);
        a.accept(seq);
        *self = Self::Active(a);
    }

    pub(crate) fn is_initialized(&self) -> bool {
        matches!(self, Self::Active(_))
    }

    /// Accepts `seq` if it was not seen before and is not too old; `false` for a replay (or
    /// when uninitialized, where nothing is accepted).
    pub(crate) fn check_and_accept(&mut self, seq: u64) -> bool {
        match self {
            Self::Uninitialized { .. } => false,
            Self::Active(a) => {
                if a.is_fresh(seq) {
                    a.accept(seq);
                    true
                } else {
                    false
                }
            }
        }
    }
}

impl Active {
    fn new(size: u32, floor: u64) -> Self {
        let size = size.clamp(1, MAX_WINDOW);
        Self {
            size,
            floor,
            top: None,
            bits: vec![0; size.div_ceil(64) as usize],
        }
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let i = seq % u64::from(self.size);
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, m) = self.slot(seq);
        self.bits.get(w).is_some_and(|b| b & m != 0)
    }

    fn set(&mut self, seq: u64, on: bool) {
        let (w, m) = self.slot(seq);
        if let Some(b) = self.bits.get_mut(w) {
            if on {
                *b |= m;
            } else {
                *b &= !m;
            }
        }
    }

    fn is_fresh(&self, seq: u64) -> bool {
        if seq < self.floor {
            return false;
        }
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) if top - seq >= u64::from(self.size) => false,
            Some(_) => !self.is_set(seq),
        }
    }

    fn accept(&mut self, seq: u64) {
        match self.top {
            Some(top) if seq <= top => {}
            top => {
                // Slide: the slots of the numbers passed over now stand for numbers not
                // seen yet. At most `size` of them need clearing.
                let from = top.map_or(0, |t| t + 1);
                let first = from.max(seq.saturating_sub(u64::from(self.size) - 1));
                for n in first..seq {
                    self.set(n, false);
                }
                self.top = Some(seq);
            }
        }
        self.set(seq, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::new(32);
        for s in 0..100 {
            assert!(w.check_and_accept(s), "{s}");
            assert!(!w.check_and_accept(s), "{s}");
        }
    }

    #[test]
    fn sliding() {
        let mut w = ReplayWindow::new(32);
        assert!(w.check_and_accept(5));
        assert!(w.check_and_accept(3));
        assert!(!w.check_and_accept(3));
        assert!(w.check_and_accept(1000));
        // Within the window below the top: accepted once.
        assert!(w.check_and_accept(990));
        assert!(!w.check_and_accept(990));
        assert!(w.check_and_accept(969));
        // Below the window: rejected though never seen.
        assert!(!w.check_and_accept(968));
        assert!(!w.check_and_accept(5));
        assert!(!w.check_and_accept(6));
        // Slot reuse: 1000 + 32 shares 1000's slot and is fresh; 1000 stays rejected.
        assert!(w.check_and_accept(1032));
        assert!(!w.check_and_accept(1000));
        assert!(w.check_and_accept(1031));
        // Numbers the slide passed over were cleared, not inherited.
        assert!(w.check_and_accept(1010));
        assert!(!w.check_and_accept(1010));
    }

    #[test]
    fn slide_by_less_than_window_clears_only_passed_slots() {
        let mut w = ReplayWindow::new(8);
        for s in [0, 1, 2, 3] {
            assert!(w.check_and_accept(s));
        }
        assert!(w.check_and_accept(6));
        assert!(!w.check_and_accept(2));
        assert!(w.check_and_accept(4));
        assert!(w.check_and_accept(5));
        assert!(w.check_and_accept(10));
        // 2 is now outside (10 - 2 >= 8); 3 is inside and was seen.
        assert!(!w.check_and_accept(2));
        assert!(!w.check_and_accept(3));
        assert!(w.check_and_accept(7));
    }

    #[test]
    fn uninitialized_then_initialized() {
        let mut w = ReplayWindow::new(32);
        assert!(w.check_and_accept(50));
        w.uninitialize();
        assert!(!w.is_initialized());
        assert!(!w.check_and_accept(51));
        w.init_from(60);
        assert!(w.is_initialized());
        assert!(!w.check_and_accept(60));
        assert!(!w.check_and_accept(59));
        assert!(!w.check_and_accept(40));
        assert!(w.check_and_accept(61));
        assert!(w.check_and_accept(100));
        assert!(!w.check_and_accept(60));
    }

    #[test]
    fn huge_numbers_and_tiny_windows() {
        let mut w = ReplayWindow::new(1);
        assert!(w.check_and_accept(u64::MAX - 1));
        assert!(!w.check_and_accept(u64::MAX - 2));
        assert!(w.check_and_accept(u64::MAX));
        assert!(!w.check_and_accept(u64::MAX));
        let mut w = ReplayWindow::new(100);
        assert!(w.check_and_accept(64));
        assert!(w.check_and_accept(99));
        assert!(w.check_and_accept(0));
        assert!(!w.check_and_accept(0));
    }
}
