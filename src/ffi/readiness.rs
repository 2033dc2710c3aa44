//! What makes the thing mode B hands out readable, per platform.
//!
//! On Unix that is the context's poller (epoll, kqueue), holding the transport's descriptor
//! and a [`DeadlineTimer`] armed to the protocol core's next deadline: a timerfd on Linux and
//! Android (added to the epoll set like any descriptor), a kqueue timer (`EVFILT_TIMER`) on
//! macOS and the BSDs, where the timer lives inside the kqueue. Either way the timer is
//! one-shot: [`DeadlineTimer::set`] (re)arms it, and [`DeadlineTimer::consume`] takes a fired
//! timer's readiness off the descriptor.
//!
//! On Windows a poller (an I/O completion port) is nothing a C event loop can wait on, but
//! every loop there can wait on a socket (`select`, `WSAPoll`, libuv's `uv_poll_init_socket`,
//! GLib's socket sources): mode B hands out the transport's own socket. Deadlines do not make
//! it readable (there is no timer to put in it; the loop waits with
//! `coapio_context_next_timeout_ms` as its timeout), and a wake-up from another thread (a
//! responder answering, `coapio_context_stop`, a handler future) rings a [`Bell`]: an empty
//! datagram from a loopback socket of the context's own to the transport's socket, which the
//! transport drops (simple6 takes datagrams only from its remotes; the core ignores a
//! datagram too short for a CoAP header). No thread is started on any platform.

use std::io;
use std::time::Duration;

use polling::Poller;

/// The poller key of the timer's events (the transport's is 0).
#[cfg(unix)]
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

        pub(crate) fn set(&self, _poller: &Poller, after: Duration) -> bool {
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
            let r = unsafe {
                libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            r == 0
        }

        /// A timerfd stays readable until it is read: a wait that saw it took nothing.
        pub(crate) fn collected(&self, _events: &polling::Events) -> bool {
            false
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

    use std::sync::atomic::{AtomicBool, Ordering};

    use polling::os::kqueue::{PollerKqueueExt, Timer};
    use polling::{Events, PollMode, Poller};

    use super::TIMER_KEY;

    /// Whether the timer was ever added to the kqueue: it is added at its first deadline
    /// (a timer "disarmed" by a far-off deadline is refused by XNU, whose nanoseconds
    /// overflow, and may fire at once on FreeBSD).
    pub(crate) struct DeadlineTimer(AtomicBool);

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
        pub(crate) fn new(_poller: &Poller) -> io::Result<Self> {
            Ok(Self(AtomicBool::new(false)))
        }

        /// Called with the context's `armed` lock held, so never twice at once.
        pub(crate) fn set(&self, poller: &Poller, after: Duration) -> bool {
            let mut result = if self.0.load(Ordering::SeqCst) {
                poller.modify_filter(timer(after), TIMER_KEY, PollMode::Oneshot)
            } else {
                poller.add_filter(timer(after), TIMER_KEY, PollMode::Oneshot)
            };
            // polling keeps the source registered when the first kevent failed: from then on
            // it is modified, not added.
            if matches!(&result, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
                result = poller.modify_filter(timer(after), TIMER_KEY, PollMode::Oneshot);
            }
            match result {
                Ok(()) => {
                    self.0.store(true, Ordering::SeqCst);
                    true
                }
                Err(e) => {
                    log::warn!("coapio: cannot set the context's kqueue timer: {e}");
                    false
                }
            }
        }

        /// A fired one-shot kqueue timer is gone once a `kevent` took it, whichever wait
        /// that was.
        pub(crate) fn collected(&self, events: &Events) -> bool {
            events.iter().any(|e| e.key == TIMER_KEY)
        }

        /// A fired kqueue timer stays pending in the kqueue until a `kevent` takes it:
        /// taken here, with the poller's other events (level-triggered, they come back).
        pub(crate) fn consume(&self, poller: &Poller) -> bool {
            let mut events = Events::new();
            let _ = poller.wait(&mut events, Some(Duration::ZERO));
            self.collected(&events)
        }

        pub(crate) fn remove(&self, poller: &Poller) {
            if self.0.load(Ordering::SeqCst) {
                let _ = poller.delete_filter(timer(Duration::ZERO));
            }
        }
    }
}

/// Windows: no timer in the readiness source (see the module documentation); mode A waits
/// with a timeout.
#[cfg(windows)]
mod imp {
    use std::io;
    use std::time::Duration;

    use polling::Poller;

    pub(crate) struct DeadlineTimer;

    impl DeadlineTimer {
        pub(crate) fn new(_poller: &Poller) -> io::Result<Self> {
            Ok(Self)
        }

        pub(crate) fn set(&self, _poller: &Poller, _after: Duration) -> bool {
            true
        }

        pub(crate) fn collected(&self, _events: &polling::Events) -> bool {
            false
        }

        /// Nothing to consume: a deadline is due when its time has come.
        pub(crate) fn consume(&self, _poller: &Poller) -> bool {
            true
        }

        pub(crate) fn remove(&self, _poller: &Poller) {}
    }
}

/// Windows: wakes a mode-B loop waiting on the transport's socket (see the module
/// documentation). Rung at most once until [`Bell::reset`], so that a burst of wake-ups
/// sends one datagram.
#[cfg(windows)]
pub(crate) struct Bell {
    socket: std::net::UdpSocket,
    to: std::net::SocketAddr,
    rung: std::sync::atomic::AtomicBool,
}

#[cfg(windows)]
impl Bell {
    /// A bell for the socket `target` (the transport's), reached over loopback.
    pub(crate) fn new(target: std::os::windows::io::BorrowedSocket<'_>) -> io::Result<Self> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let local = socket2::SockRef::from(&target)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("the transport's socket has no IP address"))?;
        let loopback = |ip: IpAddr| match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        let to = match local {
            SocketAddr::V6(v6) if !v6.ip().is_unspecified() => SocketAddr::V6(v6),
            other => SocketAddr::new(loopback(other.ip()), other.port()),
        };
        let from = SocketAddr::new(
            if to.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            },
            0,
        );
        let socket = std::net::UdpSocket::bind(from)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            to,
            rung: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Makes the transport's socket readable, unless that is done and not yet consumed.
    pub(crate) fn ring(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.rung.swap(true, SeqCst) && self.socket.send_to(&[], self.to).is_err() {
            // Not rung: the next wake-up tries again.
            self.rung.store(false, SeqCst);
        }
    }

    /// Called before the transport's socket is read: a wake-up after this rings again.
    pub(crate) fn reset(&self) {
        self.rung.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Called at the end of a `process`: a wake-up that rang during it may have had its
    /// datagram read (and dropped) by it, after the work it announced was looked at; ring
    /// again so that the loop comes back (at worst once for nothing).
    pub(crate) fn ring_again_if_rung(&self) {
        if self.rung.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.ring();
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
    /// was set for; whether that worked.
    pub(crate) fn set(&self, poller: &Poller, after: Duration) -> bool {
        self.0.set(poller, after.max(Duration::from_nanos(1)))
    }

    /// Whether a wait on the poller that returned `events` took the timer's firing (a kqueue
    /// timer is gone then, and has to be set again); a timerfd stays until
    /// [`consume`](Self::consume)d.
    pub(crate) fn collected(&self, events: &polling::Events) -> bool {
        self.0.collected(events)
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
