//! The deadline timer in a context's poller: what makes the descriptor of mode B readable
//! when the protocol core's next deadline comes. A timerfd on Linux and Android (added to the
//! epoll set like any descriptor); a kqueue timer (`EVFILT_TIMER`) on macOS and the BSDs,
//! where the poller is a kqueue and the timer lives inside it.
//!
//! Either way the timer is one-shot: [`DeadlineTimer::set`] (re)arms it, and
//! [`DeadlineTimer::consume`] takes a fired timer's readiness off the descriptor.

use std::io;
use std::time::Duration;

use polling::Poller;

/// The poller key of the timer's events (the transport's is 0).
pub(crate) const TIMER_KEY: usize = 1;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use polling::{Event, PollMode, Poller};

    use super::TIMER_KEY;

    pub(crate) struct DeadlineTimer(OwnedFd);

    impl DeadlineTimer {
        pub(crate) fn new(poller: &Poller) -> io::Result<Self> {
            // SAFETY: plain syscall; the returned descriptor is checked and then owned.
            let fd = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            let timer = Self(unsafe { OwnedFd::from_raw_fd(fd) });
            // SAFETY: the timerfd is deleted from the poller (`remove`) before it is closed:
            // the context's drop removes it, and the context owns both.
            unsafe {
                poller.add_with_mode(
                    timer.0.as_raw_fd(),
                    Event::readable(TIMER_KEY),
                    PollMode::Level,
                )?;
            }
            Ok(timer)
        }

        pub(crate) fn set(&self, _poller: &Poller, after: Duration) {
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_nsec: after.subsec_nanos() as libc::c_long,
                },
            };
            // SAFETY: a valid timerfd and a valid itimerspec; the old value is not asked for.
            unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        }

        pub(crate) fn consume(&self, _poller: &Poller) -> bool {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a local buffer from a non-blocking timerfd.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            n == 8
        }

        pub(crate) fn remove(&self, poller: &Poller) {
            let _ = poller.delete(&self.0);
        }
    }
}

#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
))]
mod imp {
    use std::io;
    use std::time::Duration;

    use polling::os::kqueue::{PollerKqueueExt, Timer};
    use polling::{Events, PollMode, Poller};

    use super::TIMER_KEY;

    pub(crate) struct DeadlineTimer;

    /// The timer, `after` from now: in whole milliseconds, rounded up, since some kernels
    /// (OpenBSD, DragonFly) count in them and would otherwise fire early.
    fn timer(after: Duration) -> Timer {
        let ms = after.as_nanos().div_ceil(1_000_000).max(1);
        Timer {
            id: TIMER_KEY,
            timeout: Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)),
        }
    }

    impl DeadlineTimer {
        pub(crate) fn new(poller: &Poller) -> io::Result<Self> {
            // Added disarmed (a deadline far off) so that `set` only modifies it.
            poller.add_filter(
                timer(Duration::from_secs(1 << 40)),
                TIMER_KEY,
                PollMode::Oneshot,
            )?;
            Ok(Self)
        }

        pub(crate) fn set(&self, poller: &Poller, after: Duration) {
            let _ = poller.modify_filter(timer(after), TIMER_KEY, PollMode::Oneshot);
        }

        /// A fired kqueue timer stays pending in the kqueue until a `kevent` takes it:
        /// taken here, with the poller's other events (level-triggered, they come back).
        pub(crate) fn consume(&self, poller: &Poller) -> bool {
            let mut events = Events::new();
            let _ = poller.wait(&mut events, Some(Duration::ZERO));
            let fired = events.iter().any(|e| e.key == TIMER_KEY);
            fired
        }

        pub(crate) fn remove(&self, poller: &Poller) {
            let _ = poller.delete_filter(timer(Duration::ZERO));
        }
    }
}

/// The deadline timer (see the module documentation).
pub(crate) struct DeadlineTimer(imp::DeadlineTimer);

impl DeadlineTimer {
    /// Creates the timer, disarmed, in `poller`, with the key [`TIMER_KEY`].
    pub(crate) fn new(poller: &Poller) -> io::Result<Self> {
        imp::DeadlineTimer::new(poller).map(Self)
    }

    /// Arms the timer to fire `after` from now (at least a nanosecond), replacing what it
    /// was set for.
    pub(crate) fn set(&self, poller: &Poller, after: Duration) {
        self.0.set(poller, after.max(Duration::from_nanos(1)));
    }

    /// Takes the readiness of a timer that fired off the poller's descriptor; whether it had
    /// fired (it is disarmed then).
    pub(crate) fn consume(&self, poller: &Poller) -> bool {
        self.0.consume(poller)
    }

    /// Takes the timer out of `poller`, before either goes away.
    pub(crate) fn remove(&self, poller: &Poller) {
        self.0.remove(poller);
    }
}
