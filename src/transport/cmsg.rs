//! Control messages (ancillary data) of `recvmsg`/`sendmsg`: a correctly aligned buffer, an
//! iterator over the messages a `recvmsg` returned, and the `IPV6_PKTINFO` (or, on an IPv4
//! socket, `IP_PKTINFO`) a `sendmsg` carries.

use std::mem;
#[cfg(target_os = "linux")]
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;

/// A control-message buffer aligned for `cmsghdr`.
#[repr(C, align(8))]
pub(crate) struct CmsgBuf(pub(crate) [u8; 256]);

impl CmsgBuf {
    pub(crate) const fn new() -> Self {
        Self([0; 256])
    }
}

/// A control-message buffer for one `IPV6_PKTINFO` (received or sent), aligned for `cmsghdr`.
#[repr(C, align(8))]
pub(crate) struct SmallCmsgBuf(pub(crate) [u8; 64]);

impl SmallCmsgBuf {
    pub(crate) const fn new() -> Self {
        Self([0; 64])
    }
}

/// One received control message: level, type and data.
#[derive(Debug)]
pub(crate) struct Cmsg<'a> {
    pub(crate) level: libc::c_int,
    pub(crate) ty: libc::c_int,
    pub(crate) data: &'a [u8],
}

impl Cmsg<'_> {
    /// Reads the data as a `T` (unaligned), if it is long enough.
    pub(crate) fn read<T: Copy>(&self) -> Option<T> {
        if self.data.len() < size_of::<T>() {
            return None;
        }
        // SAFETY: the data holds at least size_of::<T>() bytes, read_unaligned needs no
        // alignment, and every `T` used here is a plain C struct valid for any bit pattern.
        Some(unsafe { std::ptr::read_unaligned(self.data.as_ptr().cast::<T>()) })
    }
}

/// The control messages of a `msghdr` that `recvmsg` filled in, walked in place.
///
/// # Safety
///
/// `hdr.msg_control` must point to a buffer of at least `hdr.msg_controllen` bytes that
/// `recvmsg` wrote, and stay valid and unmodified while the result is used.
// msg_controllen is usize on glibc and u32 elsewhere: the cast is needed off glibc.
#[allow(clippy::unnecessary_cast)]
pub(crate) unsafe fn received(hdr: &libc::msghdr) -> Cmsgs<'_> {
    let ok =
        !hdr.msg_control.is_null() && (hdr.msg_controllen as usize) >= size_of::<libc::cmsghdr>();
    Cmsgs {
        hdr,
        // SAFETY: hdr describes a valid control buffer (caller's contract).
        next: if ok {
            unsafe { libc::CMSG_FIRSTHDR(hdr) }
        } else {
            std::ptr::null_mut()
        },
    }
}

/// The iterator of [`received`].
pub(crate) struct Cmsgs<'a> {
    hdr: &'a libc::msghdr,
    next: *mut libc::cmsghdr,
}

impl<'a> Iterator for Cmsgs<'a> {
    type Item = Cmsg<'a>;

    // msg_controllen is usize on glibc and u32 elsewhere: the casts are needed off glibc.
    #[allow(clippy::unnecessary_cast)]
    fn next(&mut self) -> Option<Cmsg<'a>> {
        let cmsg = self.next;
        if cmsg.is_null() {
            return None;
        }
        let end = self.hdr.msg_control as usize + self.hdr.msg_controllen as usize;
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR only return headers that start inside the buffer
        // (the contract of `received`).
        let c = unsafe { &*cmsg };
        // SAFETY: as above; CMSG_DATA points just past the header.
        let data = unsafe { libc::CMSG_DATA(cmsg) } as usize;
        let header_len = data - cmsg as usize;
        let len = (c.cmsg_len as usize).saturating_sub(header_len);
        if data + len > end {
            self.next = std::ptr::null_mut();
            return None;
        }
        // SAFETY: hdr and cmsg are valid as above.
        self.next = unsafe { libc::CMSG_NXTHDR(self.hdr, cmsg) };
        // SAFETY: [data, data + len) lies inside the control buffer, checked just above, which
        // lives as long as 'a.
        let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
        Some(Cmsg {
            level: c.cmsg_level,
            ty: c.cmsg_type,
            data: bytes,
        })
    }
}

/// Writes one `IPV6_PKTINFO` control message into `buf` and returns its length (for
/// `msg_controllen`).
pub(crate) fn pktinfo6(buf: &mut SmallCmsgBuf, addr: Ipv6Addr, ifindex: u32) -> usize {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    write_one(buf, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
}

/// Writes one `IP_PKTINFO` control message choosing the source address `addr` (the IPv4
/// socket's counterpart of [`pktinfo6`]) into `buf` and returns its length.
#[cfg(target_os = "linux")]
pub(crate) fn pktinfo4(buf: &mut SmallCmsgBuf, addr: Ipv4Addr) -> usize {
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    write_one(buf, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
}

/// Writes one control message of `level` and `ty` carrying `value` into `buf` and returns
/// its length (for `msg_controllen`).
fn write_one<T: Copy>(
    buf: &mut SmallCmsgBuf,
    level: libc::c_int,
    ty: libc::c_int,
    value: T,
) -> usize {
    let data_len = size_of::<T>() as u32;
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe { (libc::CMSG_SPACE(data_len), libc::CMSG_LEN(data_len)) };
    let space = space as usize;
    assert!(space <= buf.0.len());
    let mut hdr: libc::msghdr = unsafe_zeroed_msghdr();
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = space as _;
    // SAFETY: the buffer is aligned for cmsghdr and holds `space` bytes, enough for one header
    // with `data_len` bytes of data; we write only inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = ty;
        (*cmsg).cmsg_len = len as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), value);
    }
    space
}

/// A `msghdr` with every field zero (null pointers, zero lengths).
pub(crate) fn unsafe_zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one control message `write` puts in a buffer, read back through the iterator:
    /// its level, type and data as `T`.
    fn one_message<T: Copy>(write: impl FnOnce(&mut SmallCmsgBuf) -> usize) -> (i32, i32, T) {
        let mut buf = SmallCmsgBuf::new();
        let len = write(&mut buf);
        let mut hdr = unsafe_zeroed_msghdr();
        hdr.msg_control = buf.0.as_mut_ptr().cast();
        hdr.msg_controllen = len as _;
        // SAFETY: hdr points at `buf`, which `write` filled and which outlives `msgs`.
        let msgs: Vec<_> = unsafe { received(&hdr) }.collect();
        assert_eq!(msgs.len(), 1);
        (msgs[0].level, msgs[0].ty, msgs[0].read().unwrap())
    }

    #[test]
    fn pktinfo_round_trips_through_the_iterator() {
        let addr: Ipv6Addr = "fe80::1".parse().unwrap();
        let (level, ty, info) = one_message::<libc::in6_pktinfo>(|b| pktinfo6(b, addr, 7));
        assert_eq!((level, ty), (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO));
        assert_eq!(Ipv6Addr::from(info.ipi6_addr.s6_addr), addr);
        assert_eq!(info.ipi6_ifindex, 7);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn pktinfo4_round_trips_through_the_iterator() {
        let addr = Ipv4Addr::new(127, 0, 0, 2);
        let (level, ty, info) = one_message::<libc::in_pktinfo>(|b| pktinfo4(b, addr));
        assert_eq!((level, ty), (libc::IPPROTO_IP, libc::IP_PKTINFO));
        assert_eq!(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)), addr);
        assert_eq!(info.ipi_ifindex, 0);
    }
}
