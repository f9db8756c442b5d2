//! The plugin network configuration read from stdin (spec §1 and §3 "derived config").

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::result::{CniResult, Dns};
use crate::error::CniError;

/// Keys this type lifts out of the config; everything else lands in [`NetConf::rest`].
const KNOWN_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "capabilities",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "RuntimeConfig",
    "prevResult",
    "cni.dev/valid-attachments",
];

/// A still-valid attachment listed in a GC request (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifname")]
    pub ifname: String,
}

/// The `ipam` object: its `type` plus the whole object for the IPAM plugin to parse.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IpamConf {
    /// `ipam.type` ("" when absent).
    pub plugin_type: String,
    /// The whole `ipam` object, `type` included.
    pub raw: Map<String, Value>,
}

impl IpamConf {
    /// Deserialize the `ipam` object into a plugin's own type (code 6 on mismatch).
    pub fn parse_as<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        serde_json::from_value(Value::Object(self.raw.clone()))
            .map_err(|e| CniError::decoding(format!("failed to parse ipam config: {e}")))
    }
}

/// A plugin's network configuration. Plugin-specific keys stay in `rest`; a plugin
/// may also deserialize its own struct from the same stdin bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetConf {
    /// `cniVersion` as given ("" when absent; see [`NetConf::version`]).
    pub cni_version: String,
    pub name: String,
    /// `type`: the plugin binary name.
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub ipam: Option<IpamConf>,
    pub dns: Option<Dns>,
    /// `args` (conventions: `{"cni": {...}}`), kept raw.
    pub args: Option<Map<String, Value>>,
    /// `runtimeConfig` (also read from the older `RuntimeConfig` spelling); empty if absent.
    pub runtime_config: Map<String, Value>,
    /// `prevResult` as given; parse with [`NetConf::prev_result`].
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC only).
    pub valid_attachments: Vec<GcAttachment>,
    /// Every other top-level key.
    pub rest: Map<String, Value>,
}

fn field<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, CniError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
            CniError::decoding(format!("error decoding network config field {key:?}: {e}"))
        }),
    }
}

impl NetConf {
    /// Parse the stdin bytes. Malformed JSON or a field of the wrong type is code 6.
    pub fn parse(json: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| CniError::decoding(format!("error unmarshall network config: {e}")))?;
        Self::from_value(value)
    }

    /// [`NetConf::parse`] on an already-decoded value (must be an object).
    pub fn from_value(value: Value) -> Result<Self, CniError> {
        let Value::Object(mut obj) = value else {
            return Err(CniError::decoding(
                "error unmarshall network config: not a JSON object",
            ));
        };
        let ipam = field::<Map<String, Value>>(&mut obj, "ipam")?
            .map(|raw| {
                let plugin_type = match raw.get("type") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => {
                        return Err(CniError::decoding(
                            "error decoding network config field \"ipam.type\": not a string",
                        ))
                    }
                };
                Ok(IpamConf { plugin_type, raw })
            })
            .transpose()?;
        let runtime_lower = field::<Map<String, Value>>(&mut obj, "runtimeConfig")?;
        let runtime_upper = field::<Map<String, Value>>(&mut obj, "RuntimeConfig")?;
        let conf = NetConf {
            cni_version: field(&mut obj, "cniVersion")?.unwrap_or_default(),
            name: field(&mut obj, "name")?.unwrap_or_default(),
            plugin_type: field(&mut obj, "type")?.unwrap_or_default(),
            capabilities: field(&mut obj, "capabilities")?.unwrap_or_default(),
            ipam,
            dns: field(&mut obj, "dns")?,
            args: field(&mut obj, "args")?,
            // The spec spelling wins when a runtime sends both.
            runtime_config: runtime_lower.or(runtime_upper).unwrap_or_default(),
            prev_result: obj.remove("prevResult").filter(|v| !v.is_null()),
            valid_attachments: field(&mut obj, "cni.dev/valid-attachments")?.unwrap_or_default(),
            rest: Map::new(),
        };
        debug_assert!(KNOWN_KEYS.iter().all(|k| !obj.contains_key(*k)));
        Ok(NetConf { rest: obj, ..conf })
    }

    /// The effective protocol version: `cniVersion`, or "0.1.0" when absent (spec).
    pub fn version(&self) -> &str {
        if self.cni_version.is_empty() {
            "0.1.0"
        } else {
            &self.cni_version
        }
    }

    /// `ipam.type`, if an `ipam` object with a non-empty type is present.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .map(|i| i.plugin_type.as_str())
            .filter(|t| !t.is_empty())
    }

    /// Whether `capabilities.<key>` is true.
    pub fn has_capability(&self, key: &str) -> bool {
        self.capabilities.get(key).copied().unwrap_or(false)
    }

    /// `runtimeConfig.<key>` decoded into `T`; `Ok(None)` when absent or null, code 6 on mismatch.
    pub fn runtime_config<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        match self.runtime_config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                CniError::decoding(format!("failed to parse runtimeConfig.{key}: {e}"))
            }),
        }
    }

    /// `args.cni.<key>` (the conventions' place for per-attachment args in the config).
    pub fn args_cni(&self, key: &str) -> Option<&Value> {
        self.args.as_ref()?.get("cni")?.get(key)
    }

    /// A plugin-specific key from [`NetConf::rest`] decoded into `T` (code 6 on mismatch).
    pub fn rest_field<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        match self.rest.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| CniError::decoding(format!("failed to parse {key:?}: {e}"))),
        }
    }

    /// `prevResult` parsed into the canonical result. Its own `cniVersion` is used when
    /// set, else the config's (as Go's `ParsePrevResult` injects it). Code 6 on failure.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        let Some(raw) = &self.prev_result else {
            return Ok(None);
        };
        let version = match raw.get("cniVersion") {
            Some(Value::String(v)) if !v.is_empty() => v.clone(),
            _ => self.version().to_string(),
        };
        let mut raw = raw.clone();
        if let Value::Object(obj) = &mut raw {
            obj.insert("cniVersion".into(), Value::String(version.clone()));
        }
        CniResult::from_value(&version, raw)
            .map(Some)
            .map_err(|e| CniError::decoding(format!("could not parse prevResult: {e}")))
    }
}
