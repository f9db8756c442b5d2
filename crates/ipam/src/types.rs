//! Result types come from the cni crate; helpers for Go-compatible decoding.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

pub use macvnet_cni::types::{CniResult, Dns, IpConfig, Route};

/// Go's `net.IP` JSON: a string, where `""` (or null) means unset; canonical.
pub(crate) fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => t
            .parse::<IpAddr>()
            .map(|ip| Some(canonical_ip(ip)))
            .map_err(|_| serde::de::Error::custom(format!("invalid IP address: {t}"))),
    }
}

/// Go's `canonicalizeIP`: an IPv4-mapped IPv6 address is the IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// More than one address per family needs cniVersion >= 0.3.0; an unparsable
/// version counts as older (Go's `GreaterThanOrEqualTo` returns false on error).
pub(crate) fn multi_address_ok(cni_version: &str) -> bool {
    macvnet_cni::version::greater_or_equal(cni_version, "0.3.0").unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(multi_address_ok("0.3.0"));
        assert!(multi_address_ok("1.0.0"));
        assert!(!multi_address_ok("0.2.0"));
        assert!(!multi_address_ok(""));
        assert_eq!(
            canonical_ip("::ffff:198.18.0.1".parse().unwrap_or(IpAddr::V4(0.into()))).to_string(),
            "198.18.0.1"
        );
    }
}
