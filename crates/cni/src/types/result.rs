//! The canonical (1.1.0-shaped) result and its conversion to and from every spec version,
//! following Go's `pkg/types/{020,040,100}` converters.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::serde_util::{empty_none, ip_opt, null_default, zero_none};
use crate::error::CniError;
use crate::version;

/// An interface created or touched by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default)]
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub mac: Option<String>,
    /// 1.1.0 only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_none"
    )]
    pub mtu: Option<u32>,
    /// Netns path for container interfaces; absent for host interfaces.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    #[serde(
        rename = "pciID",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub pci_id: Option<String>,
}

/// An address assigned to an interface (fields in the Go library's output order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into [`CniResult::interfaces`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length, host bits kept ("198.18.0.5/24").
    pub address: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ip_opt"
    )]
    pub gateway: Option<IpAddr>,
}

/// A route; `mtu`, `advmss`, `priority`, `table` and `scope` are 1.1.0 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ip_opt"
    )]
    pub gw: Option<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_none"
    )]
    pub mtu: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_none"
    )]
    pub advmss: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_none"
    )]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only destination and gateway.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    fn strip_1_1(&self) -> Self {
        Self::new(self.dst, self.gw)
    }
}

/// DNS settings (results and network config share the shape).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub nameservers: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub domain: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub search: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The result of ADD, version-independent (the 1.1.0 shape). Serialize it for a
/// given `cniVersion` with [`CniResult::to_json`]; parse any version with
/// [`CniResult::parse`] / [`CniResult::from_json`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// The three result shapes of the spec's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFamily {
    /// 0.1.0, 0.2.0: `ip4`/`ip6`.
    V020,
    /// 0.3.0, 0.3.1, 0.4.0: `interfaces`, `ips[].version`.
    V040,
    /// 1.0.0, 1.1.0.
    V100,
}

impl ResultFamily {
    /// The family of a version string; "" is 0.1.0. Unknown versions → `None`.
    pub fn of(version: &str) -> Option<Self> {
        match version {
            "" | "0.1.0" | "0.2.0" => Some(Self::V020),
            "0.3.0" | "0.3.1" | "0.4.0" => Some(Self::V040),
            "1.0.0" | "1.1.0" => Some(Self::V100),
            _ => None,
        }
    }
}

fn family_or_err(version: &str) -> Result<ResultFamily, CniError> {
    ResultFamily::of(version).ok_or_else(|| {
        CniError::incompatible_version(format!("unsupported CNI result version {version:?}"))
            .with_details(format!(
                "supported versions: {}",
                version::SUPPORTED_VERSIONS.join(", ")
            ))
    })
}

// ---- wire shapes ----

#[derive(Deserialize)]
struct Wire100 {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    interfaces: Vec<Interface>,
    /// 0.3.x/0.4.0 entries also carry `version`, derived from the address and ignored (as Go does).
    #[serde(default, deserialize_with = "null_default")]
    ips: Vec<IpConfig>,
    #[serde(default, deserialize_with = "null_default")]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_default")]
    dns: Dns,
}

/// One version's output shape, serialized in Go's field order.
#[derive(Serialize)]
#[serde(untagged)]
enum Rendered<'a> {
    V100(Out100<'a>),
    V040(Out040<'a>),
    V020(Wire020),
}

#[derive(Serialize)]
struct Out100<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "<[IpConfig]>::is_empty")]
    ips: &'a [IpConfig],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    /// 1.x omits an empty `dns` (Go's custom MarshalJSON).
    #[serde(skip_serializing_if = "Dns::is_empty")]
    dns: &'a Dns,
}

#[derive(Serialize)]
struct Out040<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<Ip040<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    /// Go's 0.3.x/0.4.0 type always emits `dns`, even `{}`.
    dns: &'a Dns,
}

#[derive(Serialize)]
struct Ip040<'a> {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: &'a IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct Wire020 {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cni_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<Ip020>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<Ip020>,
    /// Always emitted, even `{}` (Go's 0.2.0 type).
    #[serde(default, deserialize_with = "null_default")]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct Ip020 {
    ip: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ip_opt"
    )]
    gateway: Option<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    routes: Vec<Route>,
}

fn ip_version(addr: &IpNet) -> &'static str {
    match addr {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

fn strip_interface(i: &Interface) -> Interface {
    Interface {
        mtu: None,
        socket_path: None,
        pci_id: None,
        ..i.clone()
    }
}

impl CniResult {
    /// Parse a result of any supported version, taking the version from its own
    /// `cniVersion` (absent → 0.1.0, as Go's `CreateFromBytes`).
    pub fn parse(json: &[u8]) -> Result<Self, CniError> {
        let v = version::decode_version(json)?;
        Self::from_json(&v, json)
    }

    /// Parse a result declared to be `version`. As in Go's creators, the JSON's
    /// own `cniVersion` must belong to the same result family (code 6 if not);
    /// an unknown `version` is code 1.
    pub fn from_json(version: &str, json: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| CniError::decoding(format!("failed to parse result: {e}")))?;
        Self::from_value(version, value)
    }

    /// [`CniResult::from_json`] on an already-decoded JSON value.
    pub fn from_value(version: &str, value: Value) -> Result<Self, CniError> {
        let family = family_or_err(version)?;
        let decode_err = |e: serde_json::Error| {
            CniError::decoding(format!("failed to parse {version} result: {e}"))
        };
        let check_family = |found: Option<&str>| -> Result<(), CniError> {
            let found = found.unwrap_or("");
            let same = match family {
                // Go's 0.2.0 creator accepts a missing version (= 0.1.0).
                ResultFamily::V020 => ResultFamily::of(found) == Some(ResultFamily::V020),
                _ => !found.is_empty() && ResultFamily::of(found) == Some(family),
            };
            if same {
                Ok(())
            } else {
                Err(CniError::decoding(format!(
                    "result of CNI version {version} has mismatched cniVersion {found:?}"
                )))
            }
        };
        match family {
            ResultFamily::V020 => {
                let w: Wire020 = serde_json::from_value(value).map_err(decode_err)?;
                check_family(w.cni_version.as_deref())?;
                let mut out = CniResult {
                    dns: w.dns,
                    ..Default::default()
                };
                for ip in [w.ip4, w.ip6].into_iter().flatten() {
                    out.ips.push(IpConfig {
                        address: ip.ip,
                        gateway: ip.gateway,
                        interface: None,
                    });
                    out.routes.extend(ip.routes);
                }
                Ok(out)
            }
            ResultFamily::V040 | ResultFamily::V100 => {
                let w: Wire100 = serde_json::from_value(value).map_err(decode_err)?;
                check_family(w.cni_version.as_deref())?;
                let mut out = CniResult {
                    interfaces: w.interfaces,
                    ips: w.ips,
                    routes: w.routes,
                    dns: w.dns,
                };
                if family == ResultFamily::V040 {
                    // Older shapes cannot carry 1.1.0 fields; drop any strays.
                    out = out.stripped_to_1_0();
                }
                Ok(out)
            }
        }
    }

    fn stripped_to_1_0(&self) -> Self {
        Self {
            interfaces: self.interfaces.iter().map(strip_interface).collect(),
            ips: self.ips.clone(),
            routes: self.routes.iter().map(Route::strip_1_1).collect(),
            dns: self.dns.clone(),
        }
    }

    /// The result as JSON for `version` (its `cniVersion` is set to `version`; "" means
    /// 0.1.0 as in Go's `Convert`). Fields newer than `version` are dropped:
    /// 1.0.0 and older lose interface `mtu`/`socketPath`/`pciID` and route
    /// `mtu`/`advmss`/`priority`/`table`/`scope` (Go keeps the route ones through 0.3.0–1.0.0
    /// because it shares one route type; the spec for those versions has no such keys).
    /// 0.1.0/0.2.0 keep the first address of each family and the routes of those families
    /// (dst and gw only), and fail (code 999, Go's generic error) with no address at all.
    /// Unknown versions are code 1.
    pub fn to_json(&self, version: &str) -> Result<Value, CniError> {
        let rendered = self.render(version)?;
        serde_json::to_value(&rendered)
            .map_err(|e| CniError::internal(format!("failed to encode result: {e}")))
    }

    fn render(&self, version: &str) -> Result<Rendered<'_>, CniError> {
        let version = if version.is_empty() { "0.1.0" } else { version };
        let family = family_or_err(version)?;
        match family {
            ResultFamily::V100 => {
                let full = version == "1.1.0";
                Ok(Rendered::V100(Out100 {
                    cni_version: version.to_string(),
                    interfaces: if full {
                        self.interfaces.clone()
                    } else {
                        self.interfaces.iter().map(strip_interface).collect()
                    },
                    ips: &self.ips,
                    routes: if full {
                        self.routes.clone()
                    } else {
                        self.routes.iter().map(Route::strip_1_1).collect()
                    },
                    dns: &self.dns,
                }))
            }
            ResultFamily::V040 => Ok(Rendered::V040(Out040 {
                cni_version: version.to_string(),
                interfaces: self.interfaces.iter().map(strip_interface).collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| Ip040 {
                        version: ip_version(&ip.address),
                        interface: ip.interface,
                        address: &ip.address,
                        gateway: ip.gateway,
                    })
                    .collect(),
                routes: self.routes.iter().map(Route::strip_1_1).collect(),
                dns: &self.dns,
            })),
            ResultFamily::V020 => {
                let first = |want: &str| {
                    self.ips
                        .iter()
                        .find(|ip| ip_version(&ip.address) == want)
                        .map(|ip| Ip020 {
                            ip: ip.address,
                            gateway: ip.gateway,
                            routes: Vec::new(),
                        })
                };
                let mut ip4 = first("4");
                let mut ip6 = first("6");
                for r in &self.routes {
                    let slot = match r.dst {
                        IpNet::V4(_) => ip4.as_mut(),
                        IpNet::V6(_) => ip6.as_mut(),
                    };
                    if let Some(slot) = slot {
                        slot.routes.push(r.strip_1_1());
                    }
                }
                if ip4.is_none() && ip6.is_none() {
                    return Err(CniError::internal("cannot convert: no valid IP addresses"));
                }
                Ok(Rendered::V020(Wire020 {
                    cni_version: Some(version.to_string()),
                    ip4,
                    ip6,
                    dns: self.dns.clone(),
                }))
            }
        }
    }

    /// [`CniResult::to_json`] rendered like Go's `PrintTo` (4-space indent).
    pub fn to_string_pretty(&self, version: &str) -> Result<String, CniError> {
        let rendered = self.render(version)?;
        pretty(&rendered).map_err(|e| CniError::internal(format!("failed to encode result: {e}")))
    }

    /// What a reader of this result printed at `version` gets back: the result after a
    /// round trip through that version's JSON (e.g. 0.2.0 keeps one address per family).
    /// Lets an in-process delegate produce exactly what an exec'd one would.
    pub fn as_version(&self, version: &str) -> Result<CniResult, CniError> {
        let v = if version.is_empty() { "0.1.0" } else { version };
        Self::from_value(v, self.to_json(v)?)
    }

    /// Convert a result JSON of any version to `to_version` (parse + [`CniResult::to_json`]).
    pub fn convert(json: &[u8], to_version: &str) -> Result<Value, CniError> {
        Self::parse(json)?.to_json(to_version)
    }
}

/// JSON with 4-space indentation, as the Go library prints results and errors.
pub(crate) fn pretty<T: Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
