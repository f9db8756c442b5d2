//! The `ipam` object of a network using `"type": "cluster"`.
//!
//! ```json
//! "ipam": {
//!   "type": "cluster",
//!   "range": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.250",
//!   "exclude": ["198.18.0.64/28"], "gateway": "198.18.0.1",
//!   "routes": [{"dst": "0.0.0.0/0"}],
//!   "etcd": {"endpoints": ["http://198.18.1.1:2379"], "prefix": "/macvnet"},
//!   "node": "host-a", "blocks": {"size": 16}
//! }
//! ```
//! `range_start`/`range_end` (whereabouts' spelling) are accepted too; `ipRanges` adds more
//! ranges (one address from each).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::etcd::{ClientConfig, TlsFiles};
use crate::pool::{Pool, Range};
use macvnet_cni::Route;

pub const DEFAULT_PREFIX: &str = "/macvnet/cluster";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/cluster";
pub const DEFAULT_BLOCK_SIZE: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("decoding network config: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("network config has no \"ipam\" object")]
    MissingIpam,
    #[error("ipam: no \"range\" (or \"ipRanges\") given")]
    NoRange,
    #[error("ipam: {0}")]
    Invalid(String),
    #[error("ipam.etcd: no endpoints")]
    NoEndpoints,
    #[error("ipam: node name not given and the hostname is unreadable: {0}")]
    Hostname(String),
}

#[derive(Debug, Deserialize)]
struct NetRaw {
    #[serde(default)]
    name: String,
    ipam: Option<IpamRaw>,
}

#[derive(Debug, Deserialize, Default)]
struct RangeRaw {
    #[serde(default)]
    range: Option<String>,
    #[serde(default, rename = "rangeStart", alias = "range_start")]
    range_start: Option<IpAddr>,
    #[serde(default, rename = "rangeEnd", alias = "range_end")]
    range_end: Option<IpAddr>,
    #[serde(default)]
    exclude: Vec<IpNet>,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BlocksRaw {
    Switch(bool),
    Sized { size: u64 },
}

#[derive(Debug, Deserialize, Default)]
struct EtcdRaw {
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default, rename = "trustedCAFile", alias = "caFile")]
    ca_file: Option<String>,
    #[serde(default, rename = "certFile")]
    cert_file: Option<String>,
    #[serde(default, rename = "keyFile")]
    key_file: Option<String>,
    #[serde(default, rename = "dialTimeoutMs")]
    dial_timeout_ms: Option<u64>,
    #[serde(default, rename = "requestTimeoutMs")]
    request_timeout_ms: Option<u64>,
    #[serde(default, rename = "timeoutMs")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct IpamRaw {
    #[serde(flatten)]
    first: RangeRaw,
    #[serde(default, rename = "ipRanges")]
    ip_ranges: Vec<RangeRaw>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    etcd: EtcdRaw,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    blocks: Option<BlocksRaw>,
    #[serde(default, rename = "dataDir")]
    data_dir: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Network name: the pool's key space is `<prefix>/<name>/`.
    pub network: String,
    pub pool: Pool,
    pub routes: Vec<Route>,
    pub etcd: ClientConfig,
    /// Key prefix, without a trailing '/'.
    pub prefix: String,
    /// Whole-operation limit (every retry and endpoint included).
    pub timeout: Duration,
    pub node: String,
    /// Addresses per node block; `None` allocates straight from the pool.
    pub block_size: Option<u64>,
    /// Where this node keeps its block hint file.
    pub data_dir: PathBuf,
}

fn hostname() -> Result<String, ConfigError> {
    let h = nix::unistd::gethostname().map_err(|e| ConfigError::Hostname(e.to_string()))?;
    h.into_string()
        .map_err(|_| ConfigError::Hostname("not UTF-8".into()))
}

fn check_name(what: &str, s: &str) -> Result<(), ConfigError> {
    if s.is_empty() || s.contains('/') || s.contains('\0') || s == "." || s == ".." {
        return Err(ConfigError::Invalid(format!(
            "{what} {s:?} must be non-empty and contain no '/'"
        )));
    }
    Ok(())
}

impl Config {
    /// Parse a whole network config (stdin of the plugin).
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let net: NetRaw = serde_json::from_slice(bytes).map_err(ConfigError::Decode)?;
        let ipam = net.ipam.ok_or(ConfigError::MissingIpam)?;
        check_name("network name", &net.name)?;

        let mut ranges = Vec::new();
        let raws = std::iter::once(&ipam.first).chain(ipam.ip_ranges.iter());
        for raw in raws {
            let Some(cidr) = &raw.range else { continue };
            let net: IpNet = cidr
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("range {cidr:?}: {e}")))?;
            let r = Range::new(
                net,
                raw.range_start,
                raw.range_end,
                &raw.exclude,
                raw.gateway,
            )
            .map_err(ConfigError::Invalid)?;
            ranges.push(r);
        }
        if ranges.is_empty() {
            return Err(ConfigError::NoRange);
        }
        let pool = Pool::new(ranges).map_err(ConfigError::Invalid)?;

        let e = ipam.etcd;
        if e.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        for ep in &e.endpoints {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "etcd endpoint {ep:?} must start with http:// or https://"
                )));
            }
        }
        let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d).max(1));
        let prefix = e
            .prefix
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string())
            .trim_end_matches('/')
            .to_string();
        if !prefix.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "etcd prefix {prefix:?} must start with '/'"
            )));
        }
        let etcd = ClientConfig {
            endpoints: e.endpoints,
            tls: TlsFiles {
                ca: e.ca_file,
                cert: e.cert_file,
                key: e.key_file,
            },
            dial_timeout: ms(e.dial_timeout_ms, 2000),
            // An election after a leader dies stalls requests for about 3 s.
            request_timeout: ms(e.request_timeout_ms, 5000),
        };
        let node = match ipam.node {
            Some(n) => n,
            None => hostname()?,
        };
        check_name("node", &node)?;
        let block_size = match ipam.blocks {
            None | Some(BlocksRaw::Switch(true)) => Some(DEFAULT_BLOCK_SIZE),
            Some(BlocksRaw::Switch(false)) => None,
            Some(BlocksRaw::Sized { size }) if (1..=1 << 20).contains(&size) => Some(size),
            Some(BlocksRaw::Sized { size }) => {
                return Err(ConfigError::Invalid(format!(
                    "blocks.size {size} out of range 1..=1048576"
                )))
            }
        };
        Ok(Config {
            network: net.name,
            pool,
            routes: ipam.routes,
            etcd,
            prefix,
            timeout: ms(e.timeout_ms, 15000),
            node,
            block_size,
            data_dir: ipam
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        })
    }

    /// Find the `cluster` IPAM in a `.conf` or `.conflist` file's JSON and parse it.
    pub fn from_file_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(ConfigError::Decode)?;
        if let Some(plugins) = v.get("plugins").and_then(|p| p.as_array()) {
            for p in plugins {
                if p.pointer("/ipam/type").and_then(|t| t.as_str()) == Some("cluster") {
                    let mut one = p.clone();
                    one["name"] = v.get("name").cloned().unwrap_or_default();
                    let bytes = serde_json::to_vec(&one).map_err(ConfigError::Decode)?;
                    return Self::parse(&bytes);
                }
            }
            return Err(ConfigError::MissingIpam);
        }
        Self::parse(bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_whereabouts_like_config() {
        let c = Config::parse(
            br#"{"name":"n","ipam":{"type":"cluster","range":"198.18.0.0/24","range_start":"198.18.0.10",
            "exclude":["198.18.0.16/28"],"gateway":"198.18.0.1","etcd":{"endpoints":["http://127.0.0.1:1"]},
            "node":"a","blocks":false}}"#,
        )
        .unwrap();
        assert_eq!(c.block_size, None);
        assert_eq!(c.node, "a");
        assert_eq!(c.pool.ranges.len(), 1);
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        let c = Config::parse(
            br#"{"name":"n","ipam":{"range":"2001:db8::/120","etcd":{"endpoints":["http://x:1"]},"node":"b","blocks":{"size":8}}}"#,
        )
        .unwrap();
        assert_eq!(c.block_size, Some(8));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(
            Config::parse(br#"{"name":"n","ipam":{"etcd":{"endpoints":["http://x:1"]}}}"#).is_err()
        );
        assert!(
            Config::parse(br#"{"name":"n","ipam":{"range":"198.18.0.0/24","node":"a"}}"#).is_err()
        );
        assert!(Config::parse(
            br#"{"name":"n","ipam":{"range":"198.18.0.0/24","node":"a/b","etcd":{"endpoints":["http://x:1"]}}}"#
        )
        .is_err());
        assert!(Config::parse(
            br#"{"name":"n","ipam":{"range":"198.18.0.0/24","rangeStart":"198.19.0.1","node":"a","etcd":{"endpoints":["http://x:1"]}}}"#
        )
        .is_err());
    }
}
