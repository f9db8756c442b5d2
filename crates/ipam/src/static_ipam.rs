//! static IPAM: a drop-in for the reference `static` plugin. Addresses come from
//! the config (`addresses`), `CNI_ARGS` `IP=`/`GATEWAY=`, `args.cni.ips` or
//! runtimeConfig `ips` (the last two replace everything before them).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use macvnet_cni::{CniArgs, CniError, NetConf};

use crate::types::{canonical_ip, multi_address_ok, opt_ip, CniResult, Dns, IpConfig, Route};

#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    #[error("{0}")]
    Decode(#[source] serde_json::Error),
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    /// Malformed or unknown `CNI_ARGS` (reference message).
    #[error(transparent)]
    Args(CniError),
    /// prevResult present but not a valid result.
    #[error(transparent)]
    PrevResult(CniError),
    #[error("the 'ip' field is expected to be in CIDR notation, got: '{0}'")]
    EnvIp(String),
    #[error("invalid gateway address: {0}")]
    EnvGateway(String),
    #[error("an entry in the 'ips' field is NOT in CIDR notation, got: '{0}'")]
    Ips(String),
    #[error("the 'address' field is expected to be in CIDR notation, got: '{0}'")]
    Address(String),
    #[error("CNI version {0} does not support more than 1 address per family")]
    TooManyPerFamily(String),
    #[error("Required prevResult missing")]
    NoPrevResult,
    #[error("static: Failed to match addr {ip} on interface {ifname}")]
    Mismatch { ip: IpAddr, ifname: String },
}

#[derive(Deserialize)]
struct NetRaw {
    #[serde(default, rename = "cniVersion")]
    cni_version: Option<String>,
    #[serde(default)]
    ipam: Option<IpamRaw>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: Option<IpsRaw>,
    #[serde(default)]
    args: Option<ArgsRaw>,
}

#[derive(Deserialize, Default)]
struct IpsRaw {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ArgsRaw {
    #[serde(default)]
    cni: Option<IpsRaw>,
}

#[derive(Deserialize)]
struct IpamRaw {
    #[serde(default)]
    routes: Option<Vec<Route>>,
    #[serde(default)]
    addresses: Option<Vec<AddressRaw>>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Deserialize)]
struct AddressRaw {
    #[serde(default)]
    address: Option<String>,
    #[serde(default, deserialize_with = "opt_ip")]
    gateway: Option<IpAddr>,
}

/// A validated static configuration.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    pub cni_version: String,
    pub addresses: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// Go's `net.ParseCIDR` keeping the host bits (the address as written).
fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse().ok()
}

fn parse_list(list: &[String]) -> Result<Vec<IpConfig>, StaticError> {
    list.iter()
        .map(|s| {
            parse_cidr(s)
                .map(|address| IpConfig {
                    interface: None,
                    address,
                    gateway: None,
                })
                .ok_or_else(|| StaticError::Ips(s.clone()))
        })
        .collect()
}

impl StaticConfig {
    /// Reference `LoadIPAMConfig(bytes, envArgs)` for static.
    pub fn parse(bytes: &[u8], cni_args: &str) -> Result<Self, StaticError> {
        let net: NetRaw = crate::gojson::from_slice(bytes, crate::gojson::Shape::StaticNet)
            .map_err(StaticError::Decode)?;
        let ipam = net.ipam.ok_or(StaticError::MissingIpam)?;
        let cni_version = net.cni_version.unwrap_or_default();

        // Config addresses are parsed last (reference order), so GATEWAY= only
        // applies to the addresses given by IP=.
        let mut config_addrs: Vec<AddressRaw> = ipam.addresses.unwrap_or_default();
        let mut env_addrs: Vec<IpConfig> = Vec::new();
        let env = CniArgs::parse(cni_args).map_err(StaticError::Args)?;
        env.check_known(&["IP", "GATEWAY"])
            .map_err(StaticError::Args)?;
        if let Some(ips) = env.get("IP").filter(|v| !v.is_empty()) {
            for item in ips.split(',') {
                let item = item.trim();
                let address =
                    parse_cidr(item).ok_or_else(|| StaticError::EnvIp(item.to_string()))?;
                env_addrs.push(IpConfig {
                    interface: None,
                    address,
                    gateway: None,
                });
            }
        }
        if let Some(gws) = env.get("GATEWAY").filter(|v| !v.is_empty()) {
            for item in gws.split(',') {
                let gw: IpAddr = item
                    .trim()
                    .parse()
                    .map_err(|_| StaticError::EnvGateway(item.to_string()))?;
                let gw = canonical_ip(gw);
                for a in env_addrs.iter_mut().filter(|a| a.address.contains(&gw)) {
                    a.gateway = Some(gw);
                }
            }
        }

        let mut replaced: Option<Vec<IpConfig>> = None;
        let cni_ips = net.args.and_then(|a| a.cni).and_then(|c| c.ips);
        if let Some(list) = cni_ips.filter(|l| !l.is_empty()) {
            replaced = Some(parse_list(&list)?);
        }
        let runtime = net.runtime_config.unwrap_or_default();
        if let Some(list) = runtime.ips.filter(|l| !l.is_empty()) {
            replaced = Some(parse_list(&list)?);
        }

        let addresses = match replaced {
            Some(list) => list,
            None => {
                let mut out = Vec::with_capacity(config_addrs.len() + env_addrs.len());
                for a in config_addrs.drain(..) {
                    let s = a.address.unwrap_or_default();
                    let address = parse_cidr(&s).ok_or(StaticError::Address(s))?;
                    out.push(IpConfig {
                        interface: None,
                        address,
                        gateway: a.gateway,
                    });
                }
                out.extend(env_addrs);
                out
            }
        };

        let v4 = addresses
            .iter()
            .filter(|a| a.address.addr().is_ipv4())
            .count();
        let v6 = addresses.len() - v4;
        if (v4 > 1 || v6 > 1) && !multi_address_ok(&cni_version) {
            return Err(StaticError::TooManyPerFamily(cni_version));
        }
        Ok(StaticConfig {
            cni_version,
            addresses,
            routes: ipam.routes.unwrap_or_default(),
            dns: ipam.dns.unwrap_or_default(),
        })
    }
}

/// ADD: the configured addresses, routes and dns.
pub fn add(conf_bytes: &[u8], cni_args: &str) -> Result<CniResult, StaticError> {
    let conf = StaticConfig::parse(conf_bytes, cni_args)?;
    Ok(CniResult {
        interfaces: Vec::new(),
        ips: conf.addresses,
        routes: conf.routes,
        dns: conf.dns,
    })
}

/// DEL: nothing was allocated.
pub fn del(conf_bytes: &[u8], cni_args: &str) -> Result<(), StaticError> {
    let _ = (conf_bytes, cni_args);
    Ok(())
}

/// CHECK: every configured address found in prevResult has the configured
/// gateway (addresses missing from prevResult pass, as in the reference).
pub fn check(conf_bytes: &[u8], ifname: &str, cni_args: &str) -> Result<(), StaticError> {
    let conf = StaticConfig::parse(conf_bytes, cni_args)?;
    let prev = NetConf::parse(conf_bytes)
        .and_then(|n| n.prev_result())
        .map_err(StaticError::PrevResult)?
        .ok_or(StaticError::NoPrevResult)?;
    for want in &conf.addresses {
        let ip = canonical_ip(want.address.addr());
        let found = prev
            .ips
            .iter()
            .find(|c| canonical_ip(c.address.addr()) == ip);
        if let Some(have) = found {
            match want.gateway {
                None => {}
                Some(g) if Some(g) == have.gateway.map(canonical_ip) => {}
                Some(_) => {
                    return Err(StaticError::Mismatch {
                        ip,
                        ifname: ifname.to_string(),
                    })
                }
            }
        }
    }
    Ok(())
}

/// 999 with the reference's message, except `CNI_ARGS`/prevResult errors which
/// keep the cni crate's code.
impl From<StaticError> for CniError {
    fn from(e: StaticError) -> Self {
        match e {
            StaticError::Args(c) | StaticError::PrevResult(c) => c,
            other => CniError::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The result for cniVersion 1.0.0 in Go's field order (an empty dns is
    /// omitted by the cni crate, like newer Go libraries; v1.1.1 printed `{}`).
    fn add_json(conf: &str, args: &str) -> String {
        let v = add(conf.as_bytes(), args)
            .unwrap()
            .to_json("1.0.0")
            .unwrap();
        let mut out = String::from("{");
        for k in ["cniVersion", "ips", "routes", "dns"] {
            if let Some(x) = v.get(k) {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(&format!("{k:?}:{x}"));
            }
        }
        out.push('}');
        out
    }

    #[test]
    fn config_addresses_and_env() {
        let conf = r#"{"cniVersion":"1.0.0","name":"s","ipam":{"type":"static",
            "addresses":[{"address":"198.18.0.5/24","gateway":"198.18.0.1"},{"address":"2001:db8::5/64"}],
            "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["198.18.0.53"]}}}"#;
        assert_eq!(
            add_json(conf, ""),
            r#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.5/24","gateway":"198.18.0.1"},{"address":"2001:db8::5/64"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["198.18.0.53"]}}"#
        );
        let out = add_json(conf, "IP=198.18.1.5/24,198.18.2.5/24;GATEWAY=198.18.2.1");
        assert!(
            out.contains(
                r#"{"address":"198.18.1.5/24"},{"address":"198.18.2.5/24","gateway":"198.18.2.1"}"#
            ),
            "{out}"
        );
    }

    #[test]
    fn args_and_runtime_replace() {
        let conf = r#"{"cniVersion":"1.0.0","name":"s","ipam":{"addresses":[{"address":"198.18.0.5/24"}]},
            "args":{"cni":{"ips":["198.18.7.7/24"]}},"runtimeConfig":{"ips":["198.18.8.8/24"]}}"#;
        assert_eq!(
            add_json(conf, "IP=198.18.1.1/24"),
            r#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.8.8/24"}]}"#
        );
    }

    #[test]
    fn errors() {
        let e = |c: &str, a: &str| add(c.as_bytes(), a).unwrap_err().to_string();
        assert_eq!(e(r#"{"name":"s"}"#, ""), "IPAM config missing 'ipam' key");
        assert_eq!(
            e(
                r#"{"name":"s","ipam":{"addresses":[{"address":"198.18.0.5"}]}}"#,
                ""
            ),
            "the 'address' field is expected to be in CIDR notation, got: '198.18.0.5'"
        );
        assert_eq!(
            e(r#"{"name":"s","ipam":{}}"#, "IP=198.18.0.5"),
            "the 'ip' field is expected to be in CIDR notation, got: '198.18.0.5'"
        );
        assert_eq!(
            e(r#"{"name":"s","ipam":{}}"#, "IP=198.18.0.5/24;GATEWAY=x"),
            "invalid gateway address: x"
        );
        assert_eq!(
            e(
                r#"{"name":"s","ipam":{},"runtimeConfig":{"ips":["bad"]}}"#,
                ""
            ),
            "an entry in the 'ips' field is NOT in CIDR notation, got: 'bad'"
        );
        assert_eq!(
            e(
                r#"{"cniVersion":"0.2.0","name":"s","ipam":{"addresses":[{"address":"198.18.0.5/24"},{"address":"198.18.1.5/24"}]}}"#,
                ""
            ),
            "CNI version 0.2.0 does not support more than 1 address per family"
        );
        assert!(e(r#"{"name":"s","ipam":{}}"#, "FOO=1").starts_with("ARGS: unknown args"));
    }

    #[test]
    fn check_prev_result() {
        let conf = |gw: &str| {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"s","ipam":{{"addresses":[{{"address":"198.18.0.5/24","gateway":"{gw}"}}]}},
                "prevResult":{{"cniVersion":"1.0.0","ips":[{{"address":"198.18.0.5/24","gateway":"198.18.0.1"}}]}}}}"#
            )
        };
        assert!(check(conf("198.18.0.1").as_bytes(), "eth0", "").is_ok());
        assert_eq!(
            check(conf("198.18.0.2").as_bytes(), "eth0", "")
                .unwrap_err()
                .to_string(),
            "static: Failed to match addr 198.18.0.5 on interface eth0"
        );
        assert!(matches!(
            check(br#"{"name":"s","ipam":{}}"#, "eth0", ""),
            Err(StaticError::NoPrevResult)
        ));
    }
}
