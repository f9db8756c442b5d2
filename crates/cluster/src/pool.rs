//! Address arithmetic: ranges as integer spans, exclusions, blocks, and the key layout.
//!
//! Keys under `<prefix>/<network>/`:
//! - `ips/<range-id>/<ip>`: one per allocated address (value: [`Record`](crate::store::Record)).
//!   `<ip>` is fixed-width (`198.018.000.005`, `2001:0db8:0000:…`) so a block is a key span.
//! - `attachments/<containerID>/<ifname>`: the index for retries, DEL and GC.
//! - `blocks/<range-id>/<index>`: a node's claim on `size` consecutive addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// One allocation range: addresses `first..=last` of `net` minus `exclude` and the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub net: IpNet,
    pub first: u128,
    pub last: u128,
    pub exclude: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    /// Key-safe name: the CIDR with '/' as '_'.
    pub id: String,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Range {
    /// Validate like host-local: start/end inside the subnet; by default skip the network
    /// address and (IPv4) the broadcast address.
    pub fn new(
        net: IpNet,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        exclude: &[IpNet],
        gateway: Option<IpAddr>,
    ) -> Result<Self, String> {
        let net = net.trunc();
        let lo = to_u128(net.network());
        let hi = to_u128(net.broadcast());
        let small = net.max_prefix_len() - net.prefix_len() < 2;
        let (def_first, def_last) = match net {
            _ if small => (lo, hi),
            IpNet::V4(_) => (lo + 1, hi - 1),
            IpNet::V6(_) => (lo + 1, hi),
        };
        let within = |ip: IpAddr, what: &str| -> Result<u128, String> {
            if !net.contains(&ip) {
                return Err(format!("{what} {ip} is outside range {net}"));
            }
            Ok(to_u128(ip))
        };
        let first = match start {
            Some(s) => within(s, "rangeStart")?,
            None => def_first,
        };
        let last = match end {
            Some(e) => within(e, "rangeEnd")?,
            None => def_last,
        };
        if first > last {
            return Err(format!("rangeStart is after rangeEnd in {net}"));
        }
        for x in exclude {
            if x.addr().is_ipv4() != net.addr().is_ipv4() {
                return Err(format!("exclude {x} is not of the family of {net}"));
            }
        }
        if let Some(g) = gateway {
            if g.is_ipv4() != net.addr().is_ipv4() {
                return Err(format!("gateway {g} is not of the family of {net}"));
            }
        }
        Ok(Self {
            id: net.to_string().replace('/', "_"),
            net,
            first,
            last,
            exclude: exclude.to_vec(),
            gateway,
        })
    }

    /// Addresses in `first..=last` (exclusions not subtracted), saturating.
    pub fn span(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    pub fn addr(&self, offset: u128) -> IpAddr {
        let v = self.first.saturating_add(offset);
        match self.net {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX))),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    /// The offset of `ip` in this range, when it lies in `first..=last`.
    pub fn offset(&self, ip: IpAddr) -> Option<u128> {
        if ip.is_ipv4() != self.net.addr().is_ipv4() {
            return None;
        }
        let v = to_u128(ip);
        (self.first..=self.last)
            .contains(&v)
            .then(|| v - self.first)
    }

    /// Never handed out: excluded, or the gateway.
    pub fn reserved(&self, ip: IpAddr) -> bool {
        Some(ip) == self.gateway || self.exclude.iter().any(|x| x.contains(&ip))
    }

    /// Addresses that may be handed out (exact, by walking exclusions' overlap).
    pub fn usable(&self) -> u128 {
        let mut n = self.span();
        // Exclusions may overlap each other; count reserved addresses exactly when small.
        let total_ex: u128 = self
            .exclude
            .iter()
            .map(|x| {
                let a = to_u128(x.network()).max(self.first);
                let b = to_u128(x.broadcast()).min(self.last);
                if a <= b {
                    b - a + 1
                } else {
                    0
                }
            })
            .sum();
        if total_ex <= 1 << 16 {
            let mut seen = 0u128;
            for x in &self.exclude {
                let a = to_u128(x.network()).max(self.first);
                let b = to_u128(x.broadcast()).min(self.last);
                let mut v = a;
                while v <= b {
                    let ip = self.addr(v - self.first);
                    let earlier = self
                        .exclude
                        .iter()
                        .take_while(|y| *y != x)
                        .any(|y| y.contains(&ip));
                    if !earlier {
                        seen += 1;
                    }
                    v += 1;
                }
            }
            n = n.saturating_sub(seen);
        } else {
            n = n.saturating_sub(total_ex);
        }
        if let Some(g) = self.gateway {
            if self.offset(g).is_some() && !self.exclude.iter().any(|x| x.contains(&g)) {
                n = n.saturating_sub(1);
            }
        }
        n
    }

    /// The address with the range's prefix length, as a result reports it.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.net.prefix_len()).unwrap_or(self.net)
    }

    /// How many blocks of `size` cover the range (the last may be short).
    pub fn blocks(&self, size: u64) -> u64 {
        let size = u128::from(size.max(1));
        u64::try_from(self.span().div_ceil(size)).unwrap_or(u64::MAX)
    }

    /// Offsets `lo..=hi` of block `index`.
    pub fn block_offsets(&self, size: u64, index: u64) -> (u128, u128) {
        let size = u128::from(size.max(1));
        let lo = u128::from(index).saturating_mul(size);
        let hi = lo.saturating_add(size - 1).min(self.span() - 1);
        (lo, hi)
    }

    /// The block holding `offset`.
    pub fn block_of(&self, size: u64, offset: u128) -> u64 {
        u64::try_from(offset / u128::from(size.max(1))).unwrap_or(u64::MAX)
    }
}

/// Every range of a network, in allocation order (one address from each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub ranges: Vec<Range>,
}

impl Pool {
    pub fn new(ranges: Vec<Range>) -> Result<Self, String> {
        for (i, a) in ranges.iter().enumerate() {
            for b in ranges.iter().skip(i + 1) {
                if a.net.contains(&b.net.network()) || b.net.contains(&a.net.network()) {
                    return Err(format!("ranges {} and {} overlap", a.net, b.net));
                }
            }
        }
        Ok(Self { ranges })
    }

    /// The range an address belongs to.
    pub fn find(&self, ip: IpAddr) -> Option<(usize, &Range)> {
        self.ranges
            .iter()
            .enumerate()
            .find(|(_, r)| r.offset(ip).is_some())
    }
}

/// Fixed-width text so keys sort like addresses.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{:03}.{:03}.{:03}.{:03}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            s.iter()
                .map(|g| format!("{g:04x}"))
                .collect::<Vec<_>>()
                .join(":")
        }
    }
}

/// Inverse of [`ip_key`].
pub fn parse_ip_key(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let mut o = [0u8; 4];
    let mut parts = s.split('.');
    for b in &mut o {
        *b = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(o)))
}

/// Key names for one network.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `<prefix>/<network>`
    pub root: String,
}

impl Keys {
    pub fn new(prefix: &str, network: &str) -> Self {
        Self {
            root: format!("{prefix}/{network}"),
        }
    }
    pub fn ips_prefix(&self, range: &Range) -> String {
        format!("{}/ips/{}/", self.root, range.id)
    }
    pub fn all_ips(&self) -> String {
        format!("{}/ips/", self.root)
    }
    pub fn ip(&self, range: &Range, ip: IpAddr) -> String {
        format!("{}{}", self.ips_prefix(range), ip_key(ip))
    }
    /// `[start, end)` of the ip keys of block `index`.
    pub fn block_span(&self, range: &Range, size: u64, index: u64) -> (String, String) {
        let (lo, hi) = range.block_offsets(size, index);
        let start = self.ip(range, range.addr(lo));
        let end = format!("{}\0", self.ip(range, range.addr(hi)));
        (start, end)
    }
    pub fn attachments(&self) -> String {
        format!("{}/attachments/", self.root)
    }
    pub fn attachment(&self, cid: &str, ifname: &str) -> String {
        format!("{}/attachments/{cid}/{ifname}", self.root)
    }
    pub fn blocks_prefix(&self, range: &Range) -> String {
        format!("{}/blocks/{}/", self.root, range.id)
    }
    pub fn all_blocks(&self) -> String {
        format!("{}/blocks/", self.root)
    }
    pub fn block(&self, range: &Range, index: u64) -> String {
        format!("{}{index:020}", self.blocks_prefix(range))
    }
    /// The block index of a block key of `range`.
    pub fn parse_block(&self, range: &Range, key: &str) -> Option<u64> {
        key.strip_prefix(&self.blocks_prefix(range))?.parse().ok()
    }
    /// The address of an ip key of `range`.
    pub fn parse_ip(&self, range: &Range, key: &str) -> Option<IpAddr> {
        parse_ip_key(key.strip_prefix(&self.ips_prefix(range))?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        Range::new(s.parse().unwrap(), None, None, &[], None).unwrap()
    }

    #[test]
    fn keys_sort_like_addresses() {
        let a: IpAddr = "198.18.0.9".parse().unwrap();
        let b: IpAddr = "198.18.0.10".parse().unwrap();
        assert!(ip_key(a) < ip_key(b));
        assert_eq!(parse_ip_key(&ip_key(a)), Some(a));
        let c: IpAddr = "2001:db8::a".parse().unwrap();
        assert_eq!(parse_ip_key(&ip_key(c)), Some(c));
    }

    #[test]
    fn defaults_skip_network_and_broadcast() {
        let x = r("198.18.0.0/24");
        assert_eq!(x.addr(0), "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(x.span(), 254);
        assert_eq!(x.blocks(16), 16);
        assert_eq!(x.block_offsets(16, 15), (240, 253));
        let y = Range::new(
            "198.18.0.0/24".parse().unwrap(),
            None,
            None,
            &[
                "198.18.0.0/28".parse().unwrap(),
                "198.18.0.8/29".parse().unwrap(),
            ],
            Some("198.18.0.254".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(y.usable(), 254 - 15 - 1);
    }
}
