//! Ranges and range sets: defaults, validation and the allocation iterator,
//! with the reference allocator's rules and error texts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

use crate::types::{canonical_ip, opt_ip};

/// A range as written in the config (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RawRange {
    #[serde(default, deserialize_with = "opt_subnet")]
    pub subnet: Option<IpNet>,
    #[serde(default, rename = "rangeStart", deserialize_with = "opt_ip")]
    pub range_start: Option<IpAddr>,
    #[serde(default, rename = "rangeEnd", deserialize_with = "opt_ip")]
    pub range_end: Option<IpAddr>,
    #[serde(default, deserialize_with = "opt_ip")]
    pub gateway: Option<IpAddr>,
}

/// Go's `types.IPNet`: a CIDR string (host bits kept); null means unset.
fn opt_subnet<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(t) => t
            .parse::<IpNet>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("invalid CIDR address: {t}"))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("IP <nil> not v4 nor v6")]
    NoSubnet,
    #[error("Network {0} too small to allocate from")]
    TooSmall(IpNet),
    #[error("IPNet IP and Mask version mismatch")]
    FamilyMismatch,
    #[error("Network has host bits set. For a subnet mask of length {prefix} the network address is {network}")]
    HostBits { prefix: u8, network: IpAddr },
    #[error("RangeStart {start} not in network {subnet}")]
    StartOutside { start: IpAddr, subnet: IpNet },
    #[error("RangeEnd {end} not in network {subnet}")]
    EndOutside { end: IpAddr, subnet: IpNet },
    #[error("empty range set")]
    EmptySet,
    #[error("mixed address families")]
    MixedFamilies,
    #[error("subnets {0} and {1} overlap")]
    Overlap(String, String),
}

/// A validated range; all bounds inclusive. The gateway is never handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub gateway: IpAddr,
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Next address in the same family, wrapping like Go's `ip.NextIP`.
pub(crate) fn next_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

/// Go's `lastIP`: broadcast-1 for IPv4, the very last address for IPv6.
fn last_ip(subnet: &IpNet) -> IpAddr {
    match subnet {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.broadcast()).wrapping_sub(1))),
        IpNet::V6(n) => IpAddr::V6(n.broadcast()),
    }
}

/// Reference `Range.Contains` with optional bounds (used while defaults are filled).
fn contains_bounded(
    subnet: &IpNet,
    start: Option<IpAddr>,
    end: Option<IpAddr>,
    addr: IpAddr,
) -> bool {
    let addr = canonical_ip(addr);
    if !same_family(addr, subnet.addr()) || !subnet.contains(&addr) {
        return false;
    }
    // Numeric compare like Go's ip.Cmp (which ignores the family).
    if start.is_some_and(|s| to_u128(addr) < to_u128(s)) {
        return false;
    }
    if end.is_some_and(|e| to_u128(addr) > to_u128(e)) {
        return false;
    }
    true
}

impl RawRange {
    /// Reference `Range.Canonicalize`: defaults and validation.
    pub fn canonicalize(&self) -> Result<Range, RangeError> {
        let given = self.subnet.ok_or(RangeError::NoSubnet)?;
        let (max, mapped) = match given {
            IpNet::V4(_) => (32, false),
            IpNet::V6(n) => (128, n.addr().to_ipv4_mapped().is_some()),
        };
        if given.prefix_len() > max - 2 {
            return Err(RangeError::TooSmall(given));
        }
        // Go shortens a v4-mapped address to 4 bytes but keeps the 16-byte mask.
        if mapped {
            return Err(RangeError::FamilyMismatch);
        }
        let network = given.network();
        if given.addr() != network {
            return Err(RangeError::HostBits {
                prefix: given.prefix_len(),
                network,
            });
        }
        let subnet = given;
        let gateway = self.gateway.unwrap_or_else(|| next_ip(network));
        let range_start = match self.range_start {
            Some(s) => {
                if !contains_bounded(&subnet, Some(s), self.range_end, s) {
                    return Err(RangeError::StartOutside { start: s, subnet });
                }
                s
            }
            None => next_ip(network),
        };
        let range_end = match self.range_end {
            Some(e) => {
                if !contains_bounded(&subnet, Some(range_start), Some(e), e) {
                    return Err(RangeError::EndOutside { end: e, subnet });
                }
                e
            }
            None => last_ip(&subnet),
        };
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }
}

impl Range {
    pub fn contains(&self, addr: IpAddr) -> bool {
        contains_bounded(
            &self.subnet,
            Some(self.range_start),
            Some(self.range_end),
            addr,
        )
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        if !same_family(self.range_start, other.range_start) {
            return false;
        }
        self.contains(other.range_start)
            || self.contains(other.range_end)
            || other.contains(self.range_start)
            || other.contains(self.range_end)
    }

    /// Addresses in [start, end] minus the gateway when it is inside.
    pub fn usable_count(&self) -> u128 {
        let n = to_u128(self.range_end)
            .saturating_sub(to_u128(self.range_start))
            .saturating_add(1);
        if self.contains(self.gateway) {
            n.saturating_sub(1)
        } else {
            n
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// A list of ranges of one family; one address is allocated per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Reference `RangeSet.Canonicalize`.
    pub fn from_raw(raw: &[RawRange]) -> Result<RangeSet, RangeError> {
        if raw.is_empty() {
            return Err(RangeError::EmptySet);
        }
        let mut out: Vec<Range> = Vec::with_capacity(raw.len());
        for r in raw {
            let r = r.canonicalize()?;
            if let Some(first) = out.first() {
                if !same_family(first.range_start, r.range_start) {
                    return Err(RangeError::MixedFamilies);
                }
            }
            out.push(r);
        }
        for (i, a) in out.iter().enumerate() {
            for b in out.iter().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(RangeError::Overlap(a.to_string(), b.to_string()));
                }
            }
        }
        Ok(RangeSet(out))
    }

    pub fn range_for(&self, addr: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(addr))
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.range_for(addr).is_some()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(|r| r.range_start.is_ipv4())
    }

    /// Candidates in the reference's round-robin order: after `last` when it
    /// lies in the set, else from the first range's start; gateways skipped.
    pub fn iter_from(&self, last: Option<IpAddr>) -> RangeIter<'_> {
        let mut it = RangeIter {
            set: self,
            idx: 0,
            cur: None,
            start: None,
            done: self.0.is_empty(),
        };
        if let Some(last) = last {
            if let Some(i) = self.0.iter().position(|r| r.contains(last)) {
                it.idx = i;
                it.cur = Some(last);
            }
        }
        it
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Yields (address with the subnet's prefix, gateway) once per usable address.
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    start: Option<IpAddr>,
    done: bool,
}

impl Iterator for RangeIter<'_> {
    type Item = (IpNet, IpAddr);

    fn next(&mut self) -> Option<Self::Item> {
        // Each call advances at least one address and stops on returning to the
        // start, so this loop ends within one pass over the set.
        while !self.done {
            let r = self.set.0.get(self.idx)?;
            let cur = match self.cur {
                None => {
                    self.start = Some(r.range_start);
                    r.range_start
                }
                Some(c) => {
                    let n = if c == r.range_end {
                        self.idx = (self.idx + 1) % self.set.0.len();
                        self.set.0.get(self.idx)?.range_start
                    } else {
                        next_ip(c)
                    };
                    match self.start {
                        None => self.start = Some(n),
                        Some(s) if s == n => {
                            self.done = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                    n
                }
            };
            self.cur = Some(cur);
            let r = self.set.0.get(self.idx)?;
            if cur == r.gateway {
                continue;
            }
            let net = IpNet::new(cur, r.subnet.prefix_len()).ok()?;
            return Some((net, r.gateway));
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(subnet: &str) -> RawRange {
        RawRange {
            subnet: Some(subnet.parse().unwrap()),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_v4_v6() {
        let r = raw("198.18.0.0/24").canonicalize().unwrap();
        assert_eq!(r.range_start, ip("198.18.0.1"));
        assert_eq!(r.range_end, ip("198.18.0.254"));
        assert_eq!(r.gateway, ip("198.18.0.1"));
        let r = raw("2001:db8::/120").canonicalize().unwrap();
        assert_eq!(r.range_start, ip("2001:db8::1"));
        assert_eq!(r.range_end, ip("2001:db8::ff"));
        assert_eq!(r.gateway, ip("2001:db8::1"));
    }

    #[test]
    fn validation_messages() {
        assert_eq!(
            raw("198.18.0.0/31").canonicalize().unwrap_err().to_string(),
            "Network 198.18.0.0/31 too small to allocate from"
        );
        assert_eq!(
            raw("198.18.0.5/24").canonicalize().unwrap_err().to_string(),
            "Network has host bits set. For a subnet mask of length 24 the network address is 198.18.0.0"
        );
        let mut r = raw("198.18.0.0/24");
        r.range_start = Some(ip("198.18.1.1"));
        assert_eq!(
            r.canonicalize().unwrap_err().to_string(),
            "RangeStart 198.18.1.1 not in network 198.18.0.0/24"
        );
        let mut r = raw("198.18.0.0/24");
        r.range_start = Some(ip("198.18.0.50"));
        r.range_end = Some(ip("198.18.0.40"));
        assert!(matches!(
            r.canonicalize(),
            Err(RangeError::StartOutside { .. })
        ));
        assert_eq!(
            RawRange::default().canonicalize().unwrap_err().to_string(),
            "IP <nil> not v4 nor v6"
        );
        assert_eq!(
            RangeSet::from_raw(&[raw("198.18.0.0/24"), raw("2001:db8::/64")])
                .unwrap_err()
                .to_string(),
            "mixed address families"
        );
        assert_eq!(
            RangeSet::from_raw(&[raw("198.18.0.0/24"), raw("198.18.0.0/25")])
                .unwrap_err()
                .to_string(),
            "subnets 198.18.0.1-198.18.0.254 and 198.18.0.1-198.18.0.126 overlap"
        );
        assert_eq!(RangeSet::from_raw(&[]).unwrap_err(), RangeError::EmptySet);
    }

    #[test]
    fn iterator_order_skips_gateway_and_wraps() {
        let set = RangeSet::from_raw(&[raw("198.18.0.0/29"), raw("198.18.1.0/30")]).unwrap();
        let all: Vec<String> = set.iter_from(None).map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            all,
            [
                "198.18.0.2/29",
                "198.18.0.3/29",
                "198.18.0.4/29",
                "198.18.0.5/29",
                "198.18.0.6/29",
                "198.18.1.2/30"
            ]
        );
        let from: Vec<String> = set
            .iter_from(Some(ip("198.18.0.5")))
            .map(|(n, _)| n.addr().to_string())
            .collect();
        assert_eq!(
            from,
            [
                "198.18.0.6",
                "198.18.1.2",
                "198.18.0.2",
                "198.18.0.3",
                "198.18.0.4",
                "198.18.0.5"
            ]
        );
        // last reserved outside the set: start over at the first range.
        assert_eq!(
            set.iter_from(Some(ip("198.18.9.9")))
                .next()
                .unwrap()
                .0
                .to_string(),
            "198.18.0.2/29"
        );
    }

    #[test]
    fn iterator_only_gateway_is_empty() {
        let mut r = raw("198.18.0.0/24");
        r.range_start = Some(ip("198.18.0.1"));
        r.range_end = Some(ip("198.18.0.1"));
        let set = RangeSet::from_raw(&[r]).unwrap();
        assert_eq!(set.iter_from(None).count(), 0);
        assert_eq!(set.iter_from(Some(ip("198.18.0.1"))).count(), 0);
    }
}
