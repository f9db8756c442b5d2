//! Result pieces in CNI 1.0 JSON shape (IPAM results: ips, routes, dns).
//!
//! Kept small and local so the IPAM crate does not depend on the exact shape of
//! the cni crate's types; `serde_json::to_value` of an [`IpamResult`] is the 1.0.0
//! result document the reference plugins print.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// One assigned address; `interface` is never set by IPAM plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with the subnet's prefix length (host bits kept).
    pub address: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_ip"
    )]
    pub gateway: Option<IpAddr>,
}

/// A route as the reference's `types.Route` (dst, gw, and the 1.1 extras).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_ip"
    )]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, rename = "advmss", skip_serializing_if = "Option::is_none")]
    pub adv_mss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings; every field is omitted when empty, like the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// An IPAM result in CNI 1.0.0 form. `dns` is always printed (as `{}` when empty),
/// matching the reference plugins' output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

/// Version the results are produced in before conversion to the config's version.
pub const RESULT_VERSION: &str = "1.0.0";

/// Go's `net.IP` JSON: a string, where `""` (or null) means unset.
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

/// Compare two CNI versions "a.b.c"; unparsable is treated as older than anything
/// (the reference's `GreaterThanOrEqualTo` returns false on a parse error).
pub(crate) fn version_at_least(version: &str, min: (u64, u64, u64)) -> bool {
    let mut it = version.split('.').map(|p| p.parse::<u64>());
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => (a, b, c) >= min,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn result_json_shape_matches_reference() {
        let r = IpamResult {
            cni_version: RESULT_VERSION.into(),
            ips: vec![IpConfig {
                address: "198.18.0.2/29".parse().unwrap(),
                gateway: Some("198.18.0.1".parse().unwrap()),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
                mtu: None,
                adv_mss: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Dns::default(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.2/29","gateway":"198.18.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#
        );
    }

    #[test]
    fn versions() {
        assert!(version_at_least("0.3.0", (0, 3, 0)));
        assert!(version_at_least("1.0.0", (0, 3, 0)));
        assert!(!version_at_least("0.2.0", (0, 3, 0)));
        assert!(!version_at_least("", (0, 3, 0)));
    }
}
