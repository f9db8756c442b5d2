//! host-local configuration: the reference's `LoadIPAMConfig` (ranges, legacy
//! single range, runtimeConfig ipRanges/ips, args.cni.ips, `CNI_ARGS` IP=).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::range::{RangeError, RangeSet, RawRange};
use macvnet_cni::{CniArgs, CniError};

use crate::types::{canonical_ip, multi_address_ok, Route};

/// Where the reference keeps its store.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Decode(#[source] serde_json::Error),
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    /// Malformed or unknown `CNI_ARGS` (reference message).
    #[error(transparent)]
    Args(CniError),
    #[error("ARGS: error parsing value of pair \"IP={value}\": invalid IP address {item}")]
    ArgsIp { value: String, item: String },
    #[error("invalid IP address {0}")]
    RequestedIp(String),
    #[error("no IP ranges specified")]
    NoRanges,
    #[error("invalid range set {index}: {source}")]
    RangeSet {
        index: usize,
        #[source]
        source: RangeError,
    },
    #[error("CNI version {0} does not support more than 1 address per family")]
    TooManyPerFamily(String),
    #[error("range set {0} overlaps with {1}")]
    RangeSetsOverlap(usize, usize),
}

/// One (containerID, ifname) pair from `cni.dev/valid-attachments` (GC).
pub type Attachment = macvnet_cni::GcAttachment;

#[derive(Deserialize)]
struct NetRaw {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "cniVersion")]
    cni_version: Option<String>,
    #[serde(default)]
    ipam: Option<IpamRaw>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: Option<RuntimeRaw>,
    #[serde(default)]
    args: Option<ArgsRaw>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize, Default)]
struct RuntimeRaw {
    #[serde(default, rename = "ipRanges")]
    ip_ranges: Option<Vec<Vec<RawRange>>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ArgsRaw {
    #[serde(default)]
    cni: Option<CniArgsRaw>,
}

#[derive(Deserialize)]
struct CniArgsRaw {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct IpamRaw {
    #[serde(flatten)]
    legacy: RawRange,
    #[serde(default)]
    routes: Option<Vec<Route>>,
    #[serde(default, rename = "dataDir")]
    data_dir: Option<String>,
    #[serde(default, rename = "resolvConf")]
    resolv_conf: Option<String>,
    #[serde(default)]
    ranges: Option<Vec<Vec<RawRange>>>,
}

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct HostLocalConfig {
    /// Network name (top-level `name`): the store directory under `data_dir`.
    pub name: String,
    pub cni_version: String,
    /// Range sets in allocation order; index N uses `last_reserved_ip.N`.
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses: CNI_ARGS IP, then args.cni.ips, then runtimeConfig.ips.
    pub requested: Vec<IpAddr>,
    /// `cni.dev/valid-attachments` when present (GC requests).
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// Go's `ip.IP` text form: an address, optionally with a prefix (ignored).
fn parse_ip_arg(s: &str) -> Option<IpAddr> {
    if s.contains('/') {
        s.parse::<ipnet::IpNet>()
            .ok()
            .map(|n| canonical_ip(n.addr()))
    } else {
        s.parse::<IpAddr>().ok().map(canonical_ip)
    }
}

impl HostLocalConfig {
    /// Parse and validate like the reference `LoadIPAMConfig(bytes, envArgs)`.
    /// `cni_args` is the raw `CNI_ARGS` value (`IP=` may hold a comma list).
    pub fn parse(bytes: &[u8], cni_args: &str) -> Result<Self, ConfigError> {
        let net: NetRaw = crate::gojson::from_slice(bytes, crate::gojson::Shape::HostLocalNet)
            .map_err(ConfigError::Decode)?;
        let ipam = net.ipam.ok_or(ConfigError::MissingIpam)?;
        let cni_version = net.cni_version.unwrap_or_default();

        let mut requested = Vec::new();
        let env = CniArgs::parse(cni_args).map_err(ConfigError::Args)?;
        env.check_known(&["IP"]).map_err(ConfigError::Args)?;
        if let Some(value) = env.get("IP").filter(|v| !v.is_empty()) {
            for item in value.split(',').map(str::trim) {
                let ip = parse_ip_arg(item).ok_or_else(|| ConfigError::ArgsIp {
                    value: value.to_string(),
                    item: item.to_string(),
                })?;
                requested.push(ip);
            }
        }
        let cni_ips = net.args.and_then(|a| a.cni).and_then(|c| c.ips);
        let runtime = net.runtime_config.unwrap_or_default();
        for s in cni_ips.iter().flatten().chain(runtime.ips.iter().flatten()) {
            requested.push(parse_ip_arg(s).ok_or_else(|| ConfigError::RequestedIp(s.clone()))?);
        }

        // Order: runtimeConfig ipRanges, legacy single range, then `ranges`.
        let mut raw_sets: Vec<Vec<RawRange>> = runtime.ip_ranges.unwrap_or_default();
        if ipam.legacy.subnet.is_some() {
            raw_sets.push(vec![ipam.legacy.clone()]);
        }
        raw_sets.extend(ipam.ranges.unwrap_or_default());
        if raw_sets.is_empty() {
            return Err(ConfigError::NoRanges);
        }

        let mut ranges = Vec::with_capacity(raw_sets.len());
        let (mut v4, mut v6) = (0, 0);
        for (index, raw) in raw_sets.iter().enumerate() {
            let set = RangeSet::from_raw(raw)
                .map_err(|source| ConfigError::RangeSet { index, source })?;
            if set.is_ipv4() {
                v4 += 1;
            } else {
                v6 += 1;
            }
            ranges.push(set);
        }
        if (v4 > 1 || v6 > 1) && !multi_address_ok(&cni_version) {
            return Err(ConfigError::TooManyPerFamily(cni_version));
        }
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(ConfigError::RangeSetsOverlap(i, j));
                }
            }
        }

        let data_dir = match ipam.data_dir.as_deref() {
            None | Some("") => PathBuf::from(DEFAULT_DATA_DIR),
            Some(d) => PathBuf::from(d),
        };
        let resolv_conf = ipam
            .resolv_conf
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Ok(HostLocalConfig {
            name: net.name.unwrap_or_default(),
            cni_version,
            ranges,
            routes: ipam.routes.unwrap_or_default(),
            data_dir,
            resolv_conf,
            requested,
            valid_attachments: net.valid_attachments,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(json: &str, args: &str) -> Result<HostLocalConfig, ConfigError> {
        HostLocalConfig::parse(json.as_bytes(), args)
    }

    #[test]
    fn ranges_order_and_defaults() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ipRanges":[[{"subnet":"198.18.3.0/24"}]],"ips":["198.18.1.7"]},
                "args":{"cni":{"ips":["2001:db8::9/64"]}},
                "ipam":{"type":"host-local","subnet":"198.18.1.0/24","gateway":"198.18.1.254",
                "ranges":[[{"subnet":"2001:db8::/64","rangeStart":"2001:db8::10","rangeEnd":"2001:db8::20"}]],
                "routes":[{"dst":"0.0.0.0/0","gw":"198.18.1.254"}]}}"#,
            "IgnoreUnknown=1;IP=198.18.3.5,198.18.3.6;K8S=x",
        )
        .unwrap();
        assert_eq!(c.name, "n");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let sets: Vec<String> = c.ranges.iter().map(ToString::to_string).collect();
        assert_eq!(
            sets,
            [
                "198.18.3.1-198.18.3.254",
                "198.18.1.1-198.18.1.254",
                "2001:db8::10-2001:db8::20"
            ]
        );
        assert_eq!(c.ranges[1].0[0].gateway.to_string(), "198.18.1.254");
        let req: Vec<String> = c.requested.iter().map(ToString::to_string).collect();
        assert_eq!(
            req,
            ["198.18.3.5", "198.18.3.6", "2001:db8::9", "198.18.1.7"]
        );
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn errors_like_reference() {
        let e = |j: &str| parse(j, "").unwrap_err().to_string();
        assert_eq!(e(r#"{"name":"n"}"#), "IPAM config missing 'ipam' key");
        assert_eq!(e(r#"{"name":"n","ipam":{}}"#), "no IP ranges specified");
        assert_eq!(
            e(r#"{"name":"n","ipam":{"ranges":[[]]}}"#),
            "invalid range set 0: empty range set"
        );
        assert_eq!(
            e(
                r#"{"name":"n","cniVersion":"0.3.1","ipam":{"ranges":[[{"subnet":"198.18.0.0/24"}],[{"subnet":"198.18.0.0/16"}]]}}"#
            ),
            "range set 0 overlaps with 1"
        );
        assert_eq!(
            e(
                r#"{"name":"n","cniVersion":"0.2.0","ipam":{"ranges":[[{"subnet":"198.18.0.0/24"}],[{"subnet":"198.18.1.0/24"}]]}}"#
            ),
            "CNI version 0.2.0 does not support more than 1 address per family"
        );
        assert_eq!(
            e(
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"198.18.0.0/24"},{"subnet":"2001:db8::/64"}]]}}"#
            ),
            "invalid range set 0: mixed address families"
        );
        assert!(parse(r#"{"name":"n","ipam":{"subnet":"198.18.0.0/24"}}"#, "IP=x").is_err());
        assert!(parse(r#"{"name":"n","ipam":{"subnet":"198.18.0.0/24"}}"#, "FOO=1").is_err());
        assert!(parse(r#"{"name":"n","ipam":{"subnet":"nope"}}"#, "").is_err());
    }
}
