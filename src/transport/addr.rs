//! Address helpers shared by the transports: IPv4-mapped IPv6 addresses to and from plain
//! IPv4, so that the protocol core sees a remote as the address the user wrote.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// `::ffff:a.b.c.d` → `a.b.c.d`; everything else unchanged.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A socket address with an IPv4-mapped IPv6 address turned into plain IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => {
            SocketAddr::new(canonical_ip(IpAddr::V6(*v6.ip())), v6.port())
        }
        other => other,
    }
}

/// The IPv6 form of an address, IPv4 as `::ffff:a.b.c.d`.
pub(crate) fn to_v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(v6) => v6,
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
    }
}

/// The IPv6 form of an IP address, IPv4 as `::ffff:a.b.c.d`.
#[cfg(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd"))]
pub(crate) fn ip_to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips() {
        let v4: SocketAddr = "127.0.0.2:5683".parse().unwrap();
        let mapped = SocketAddr::V6(to_v6(v4));
        assert_eq!(mapped.to_string(), "[::ffff:127.0.0.2]:5683");
        assert_eq!(canonical(mapped), v4);
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        assert_eq!(SocketAddr::V6(to_v6(v6)), v6);
    }
}
