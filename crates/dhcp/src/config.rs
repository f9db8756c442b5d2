//! The `ipam` section the reference dhcp plugin reads (same keys, same defaults), the
//! DHCP options it turns into, and the client ID the reference derives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::DhcpError;

/// Where the reference daemon listens when `daemonSocketPath` is not set.
pub const DEFAULT_SOCKET_PATH: &str = "/run/cni/dhcp.sock";

/// Option codes (RFC 2132) used by name below.
pub mod code {
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const HOST_NAME: u8 = 12;
    pub const STATIC_ROUTES: u8 = 33;
    pub const CLASS_ID: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const USER_CLASS: u8 = 77;
    pub const CLASSLESS_ROUTES: u8 = 121;
}

/// The options requested when the config does not say `skipDefault` (reference defaults).
pub const DEFAULT_REQUEST: [u8; 2] = [code::ROUTER, code::SUBNET_MASK];

/// The network config as the dhcp IPAM reads it: the network name and the `ipam` object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ipam: Option<IpamConf>,
}

/// `ipam: {"type": "dhcp", ...}` with the reference's keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamConf {
    #[serde(default, rename = "daemonSocketPath")]
    pub daemon_socket_path: String,
    /// Options sent to the server (`{"option", "value"|"fromArg"}`).
    #[serde(default, rename = "provide")]
    pub provide: Vec<ProvideOption>,
    /// Options asked of the server (`{"option", "skipDefault"}`).
    #[serde(default, rename = "request")]
    pub request: Vec<RequestOption>,
    /// Metric put on every returned route (0 = none).
    #[serde(default)]
    pub priority: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProvideOption {
    #[serde(default)]
    pub option: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, rename = "fromArg")]
    pub from_arg: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestOption {
    #[serde(default, rename = "skipDefault")]
    pub skip_default: bool,
    #[serde(default)]
    pub option: String,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, DhcpError> {
        serde_json::from_slice(stdin)
            .map_err(|e| DhcpError::Config(format!("error parsing netconf: {e}")))
    }

    pub fn ipam(&self) -> IpamConf {
        self.ipam.clone().unwrap_or_default()
    }

    /// The daemon socket the plugin dials.
    pub fn socket_path(&self) -> String {
        match &self.ipam {
            Some(i) if !i.daemon_socket_path.is_empty() => i.daemon_socket_path.clone(),
            _ => DEFAULT_SOCKET_PATH.to_string(),
        }
    }
}

/// The options of one lease: what is sent (code → bytes) and what is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOptions {
    /// Sent in every DISCOVER/REQUEST, after (so overriding) the client ID.
    pub provide: BTreeMap<u8, Vec<u8>>,
    /// Parameter request list (option 55), in order; empty = no option 55.
    pub request: Vec<u8>,
}

/// A DHCP option named as dhcp-options(5) does, or by decimal code (reference table).
pub fn parse_option_name(name: &str) -> Result<u8, DhcpError> {
    Ok(match name {
        "dhcp-client-identifier" => code::CLIENT_ID,
        "subnet-mask" => code::SUBNET_MASK,
        "routers" => code::ROUTER,
        "host-name" => code::HOST_NAME,
        "user-class" => code::USER_CLASS,
        "vendor-class-identifier" => code::CLASS_ID,
        other => other.parse::<u8>().map_err(|e| DhcpError::Option {
            option: name.to_string(),
            reason: format!("Can not parse option: {e}"),
        })?,
    })
}

/// CNI_ARGS split as the reference does (`;` then the first `=`), without validation.
fn split_cni_args(raw: &str) -> BTreeMap<&str, &str> {
    raw.split(';')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// The reference's `prepareOptions`: provided values (literal, then from CNI_ARGS) and
/// the request list (defaults router + subnet-mask unless `skipDefault`).
pub fn prepare_options(cni_args: &str, ipam: &IpamConf) -> Result<LeaseOptions, DhcpError> {
    let args = split_cni_args(cni_args);
    let mut opts = LeaseOptions::default();
    for p in &ipam.provide {
        let code = parse_option_name(&p.option)?;
        if !p.value.is_empty() {
            if p.value.len() > 255 {
                return Err(DhcpError::Option {
                    option: p.option.clone(),
                    reason: format!("value too long: {:?}", p.value),
                });
            }
            opts.provide.insert(code, p.value.as_bytes().to_vec());
        }
        if let Some(v) = args.get(p.from_arg.as_str()) {
            if v.len() > 255 {
                return Err(DhcpError::Option {
                    option: p.option.clone(),
                    reason: format!("value from CNI_ARGS {:?} too long", p.from_arg),
                });
            }
            opts.provide.insert(code, v.as_bytes().to_vec());
        }
    }
    let mut skip_default = false;
    for r in &ipam.request {
        skip_default |= r.skip_default;
        if r.option.is_empty() {
            continue;
        }
        let code = parse_option_name(&r.option)?;
        if !opts.request.contains(&code) {
            opts.request.push(code);
        }
    }
    if !skip_default {
        for code in DEFAULT_REQUEST {
            if !opts.request.contains(&code) {
                opts.request.push(code);
            }
        }
    }
    Ok(opts)
}

/// The reference's client ID: `<containerID>/<network>/<ifname>`, cut to 254 bytes
/// (RFC 2132 option length is one octet and a type byte precedes it).
pub fn client_id(container_id: &str, network: &str, ifname: &str) -> String {
    let mut id = format!("{container_id}/{network}/{ifname}");
    if id.len() > 254 {
        let mut cut = 254;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
    }
    id
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_the_references() {
        assert_eq!(client_id("c1", "net", "eth0"), "c1/net/eth0");
        let long = "x".repeat(300);
        assert_eq!(client_id(&long, "n", "eth0").len(), 254);
    }

    #[test]
    fn options_defaults_and_overrides() {
        let conf: NetConf = serde_json::from_str(
            r#"{"name":"n","ipam":{"type":"dhcp","daemonSocketPath":"/tmp/x.sock",
               "provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"},
                          {"option":"60","value":"vc"}],
               "request":[{"option":"121"}]}}"#,
        )
        .unwrap();
        assert_eq!(conf.socket_path(), "/tmp/x.sock");
        let o = prepare_options("IgnoreUnknown=1;K8S_POD_NAME=pod-a", &conf.ipam()).unwrap();
        assert_eq!(o.provide.get(&12).unwrap(), b"pod-a");
        assert_eq!(o.provide.get(&60).unwrap(), b"vc");
        assert_eq!(o.request, vec![121, 3, 1]);

        let skip: IpamConf =
            serde_json::from_str(r#"{"request":[{"skipDefault":true,"option":"subnet-mask"}]}"#)
                .unwrap();
        assert_eq!(prepare_options("", &skip).unwrap().request, vec![1]);
        let bad: IpamConf = serde_json::from_str(r#"{"request":[{"option":"nope"}]}"#).unwrap();
        assert!(prepare_options("", &bad).is_err());
        assert_eq!(NetConf::default().socket_path(), DEFAULT_SOCKET_PATH);
    }
}
