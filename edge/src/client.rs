//! Who sent a request, as far as the edge can tell: the TCP peer, whether it is a trusted proxy,
//! and the address per-client limits apply to ([`group`]: connection caps and the invalidation
//! rate count an IPv6 /64 as one client).

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;

/// Who sent a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// The peer of the TCP connection.
    pub peer: Option<IpAddr>,
    /// The peer is a configured trusted proxy: its forwarding headers are kept and extended.
    pub trusted: bool,
    /// The client as far as the edge can tell: the peer, or the address a trusted proxy says it
    /// forwarded for (the last in its `X-Forwarded-For`). Per-client limits apply to it.
    pub address: Option<IpAddr>,
}

impl Client {
    /// The client behind `peer`, given the request's fields and the trusted proxies.
    pub fn of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Self {
        let trusted = peer.is_some_and(|ip| trusted.iter().any(|n| n.contains(&ip)));
        let forwarded_for = || forwarded_for(headers.get("x-forwarded-for")?.as_bytes());
        Self {
            peer,
            trusted,
            address: if trusted {
                forwarded_for().or(peer)
            } else {
                peer
            },
        }
    }
}

/// The address an `X-Forwarded-For` value says its sender forwarded for: the last in the list.
pub fn forwarded_for(value: &[u8]) -> Option<IpAddr> {
    let list = std::str::from_utf8(value).ok()?;
    list.rsplit(',').next()?.trim().parse().ok()
}

/// What counts as one client: an IPv4 address, or an IPv6 /64 (one host usually has a whole /64
/// to pick addresses from). IPv4-mapped IPv6 addresses are their IPv4 address.
pub fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_ipv4_address_or_an_ipv6_slash_64_is_one_client() {
        assert_eq!(
            group(ip("2001:db8:1:2::1")),
            group(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(group(ip("2001:db8:1:2::1")), group(ip("2001:db8:1:3::1")));
        assert_eq!(group(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_ne!(group(ip("192.0.2.1")), group(ip("192.0.2.2")));
    }

    #[test]
    fn only_a_trusted_proxy_says_who_it_forwards_for() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 198.51.100.9".parse().expect("value"),
        );
        let proxies = ["10.0.0.0/8".parse().expect("net")];
        let via_proxy = Client::of(Some(ip("10.1.2.3")), &headers, &proxies);
        assert!(via_proxy.trusted);
        assert_eq!(via_proxy.address, Some(ip("198.51.100.9")));
        let direct = Client::of(Some(ip("192.0.2.7")), &headers, &proxies);
        assert!(!direct.trusted);
        assert_eq!(direct.address, Some(ip("192.0.2.7")));
    }
}
