//! Trusted reverse proxies (spec coordinator §5.2 row 4): which TCP peers may assert a user
//! identity in a header, and which client address a request really came from.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A CIDR entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR entry {entry:?}")]
pub struct InvalidCidr {
    pub entry: String,
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let entry = raw.trim();
        let invalid = || InvalidCidr {
            entry: if entry.is_empty() {
                "<empty>".into()
            } else {
                entry.to_owned()
            },
        };
        let (addr, prefix) = match entry.rsplit_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let network = canonical(parse_ip(addr).ok_or_else(invalid)?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            Some(_) => return Err(invalid()),
        };
        Ok(Self { network, prefix })
    }
}

/// Parses `CRABBOX_TRUSTED_PROXY_CIDRS`: comma-separated entries, none empty.
pub fn parse_cidrs(value: &str) -> Result<Vec<Cidr>, InvalidCidr> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value.split(',').map(str::parse).collect()
}

/// Parses an address, accepting IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as IPv4 and `[v6]`.
pub fn parse_ip(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    let raw = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    raw.parse::<IpAddr>().ok().map(canonical)
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(peer))
}

/// The client address of a request: when the TCP peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` entry that is *not* itself a trusted proxy (entries to the left of it
/// were supplied by the client and cannot be believed); otherwise the peer itself.
pub fn source_ip(peer: IpAddr, x_forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    x_forwarded_for
        .unwrap_or("")
        .split(',')
        .filter_map(parse_ip)
        .rev()
        .find(|ip| !is_trusted(*ip, trusted))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        parse_ip(s).unwrap()
    }

    #[test]
    fn parses_cidrs() {
        let cidrs = parse_cidrs("10.0.0.0/8, 192.168.1.7 ,fd00::/8").unwrap();
        assert_eq!(cidrs.len(), 3);
        assert!(cidrs[0].contains(ip("10.200.3.4")));
        assert!(!cidrs[0].contains(ip("11.0.0.1")));
        assert!(cidrs[1].contains(ip("192.168.1.7")));
        assert!(!cidrs[1].contains(ip("192.168.1.8")));
        assert!(cidrs[2].contains(ip("fd12::1")));
        assert!(!cidrs[2].contains(ip("10.0.0.1")));
        assert!(cidrs[0].contains(ip("::ffff:10.1.2.3")), "mapped v4 is v4");
        assert!(parse_cidrs("").unwrap().is_empty());
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn rejects_bad_cidrs() {
        for bad in [
            "::ffff:172.16.0.0/108",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/x",
            "nope",
            "::/129",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let err = parse_cidrs("10.0.0.0/8,,").unwrap_err();
        assert_eq!(err.entry, "<empty>");
    }

    #[test]
    fn source_ip_is_the_rightmost_untrusted_hop() {
        let trusted = parse_cidrs("10.0.0.0/8").unwrap();
        let proxy = ip("10.0.0.2");
        assert_eq!(
            source_ip(proxy, Some("6.6.6.6, 203.0.113.9, 10.0.0.5"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(source_ip(proxy, Some("garbage, 10.0.0.9"), &trusted), proxy);
        assert_eq!(source_ip(proxy, None, &trusted), proxy);
        // An untrusted peer's X-Forwarded-For is ignored.
        assert_eq!(
            source_ip(ip("198.51.100.1"), Some("203.0.113.9"), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            source_ip(ip("::ffff:10.0.0.2"), Some("[2001:db8::7]"), &trusted),
            ip("2001:db8::7")
        );
    }
}
