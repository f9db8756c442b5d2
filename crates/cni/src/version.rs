//! CNI spec versions: the supported list, parsing/comparison (Go `pkg/version`
//! semantics) and the VERSION command output.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CniError;

/// The spec version this crate implements.
pub const CURRENT: &str = "1.1.0";

/// Every version whose configs and results this crate handles, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Minimum config version allowed to run CHECK.
pub const CHECK_MIN: &str = "0.4.0";
/// Minimum config version allowed to run GC and STATUS.
pub const GC_STATUS_MIN: &str = "1.1.0";

/// A `major.minor.micro` version; missing parts are 0 and "" is 0.1.0 (Go `ParseVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
}

impl Version {
    /// Parse like Go's `version.ParseVersion`: at most 3 dot-separated numbers.
    /// Errors are code 6 (decoding), as the Go skel reports them.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        if s.is_empty() {
            return Ok(Self {
                major: 0,
                minor: 1,
                micro: 0,
            });
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() >= 4 {
            return Err(CniError::decoding(format!(
                "invalid version {s:?}: too many parts"
            )));
        }
        let mut nums = [0u64; 3];
        for (slot, (part, what)) in nums
            .iter_mut()
            .zip(parts.iter().zip(["major", "minor", "micro"]))
        {
            *slot = parse_part(part).ok_or_else(|| {
                CniError::decoding(format!("failed to convert {what} version part {part:?}"))
            })?;
        }
        let [major, minor, micro] = nums;
        Ok(Self {
            major,
            minor,
            micro,
        })
    }
}

fn parse_part(part: &str) -> Option<u64> {
    let digits = part.strip_prefix('+').unwrap_or(part);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Compare two version strings (Go `GreaterThanOrEqualTo` and friends).
pub fn compare(a: &str, b: &str) -> Result<Ordering, CniError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

/// `a >= b`.
pub fn greater_or_equal(a: &str, b: &str) -> Result<bool, CniError> {
    Ok(compare(a, b)? != Ordering::Less)
}

/// Whether `v` is exactly one of the versions this crate supports.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// The `cniVersion` of a config or result JSON; absent or empty means "0.1.0".
/// Invalid JSON is code 6.
pub fn decode_version(json: &[u8]) -> Result<String, CniError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "cniVersion", default)]
        cni_version: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(json)
        .map_err(|e| CniError::decoding(format!("decoding version from network config: {e}")))?;
    match probe.cni_version {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Ok("0.1.0".to_string()),
    }
}

/// Require the config version to be exactly one of `supported` (Go `Reconciler.Check`):
/// code 1 "incompatible CNI versions" with Go's details text.
pub fn reconcile(config_version: &str, supported: &[&str]) -> Result<(), CniError> {
    if supported.contains(&config_version) {
        return Ok(());
    }
    let list: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
    Err(
        CniError::incompatible_version("incompatible CNI versions").with_details(format!(
            "config is {config_version:?}, plugin supports [{}]",
            list.join(" ")
        )),
    )
}

/// The VERSION command output: `{"cniVersion": ..., "supportedVersions": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// The reply for a VERSION request: echo the request's `cniVersion` (spec §5
    /// "Version"), or [`CURRENT`] when the request carried none.
    pub fn reply(request_version: Option<&str>, supported: &[&str]) -> Self {
        let cni_version = match request_version {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => CURRENT.to_string(),
        };
        Self {
            cni_version,
            supported_versions: supported.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    /// Decode another plugin's VERSION output like Go's `PluginDecoder`: a bare
    /// 0.2.0 reply means 0.1.0 and 0.2.0; otherwise both fields are required (code 6).
    pub fn decode(json: &[u8]) -> Result<Self, CniError> {
        let mut info: VersionInfo = serde_json::from_slice(json)
            .map_err(|e| CniError::decoding(format!("decoding version info: {e}")))?;
        if info.cni_version.is_empty() {
            return Err(CniError::decoding(
                "decoding version info: missing field cniVersion",
            ));
        }
        if info.supported_versions.is_empty() {
            if info.cni_version == "0.2.0" {
                info.supported_versions = vec!["0.1.0".into(), "0.2.0".into()];
            } else {
                return Err(CniError::decoding(
                    "decoding version info: missing field supportedVersions",
                ));
            }
        }
        Ok(info)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare() {
        assert_eq!(
            Version::parse("").unwrap(),
            Version {
                major: 0,
                minor: 1,
                micro: 0
            }
        );
        assert_eq!(
            Version::parse("1").unwrap(),
            Version {
                major: 1,
                minor: 0,
                micro: 0
            }
        );
        assert_eq!(Version::parse("0.3.1").unwrap().to_string(), "0.3.1");
        assert!(Version::parse("1.2.3.4").is_err());
        assert!(Version::parse("a.b").is_err());
        assert!(Version::parse("1..0").is_err());
        assert_eq!(Version::parse("1.2.3.4").unwrap_err().code, 6);
        assert!(greater_or_equal("0.4.0", "0.4.0").unwrap());
        assert!(greater_or_equal("1.0.0", "0.4.0").unwrap());
        assert!(!greater_or_equal("0.3.1", "0.4.0").unwrap());
        assert!(greater_or_equal("0.10.0", "0.4.0").unwrap());
        assert_eq!(compare("1.1.0", "1.0.0").unwrap(), Ordering::Greater);
    }

    #[test]
    fn decode_version_defaults() {
        assert_eq!(decode_version(br#"{"name":"x"}"#).unwrap(), "0.1.0");
        assert_eq!(decode_version(br#"{"cniVersion":""}"#).unwrap(), "0.1.0");
        assert_eq!(
            decode_version(br#"{"cniVersion":"1.0.0"}"#).unwrap(),
            "1.0.0"
        );
        assert_eq!(decode_version(b"nope").unwrap_err().code, 6);
    }

    #[test]
    fn reconcile_details_like_go() {
        let e = reconcile("2.0.0", &["0.4.0", "1.0.0"]).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert_eq!(
            e.details,
            r#"config is "2.0.0", plugin supports ["0.4.0" "1.0.0"]"#
        );
        assert!(reconcile("1.0.0", &["0.4.0", "1.0.0"]).is_ok());
    }

    #[test]
    fn version_info() {
        let r = VersionInfo::reply(Some("0.4.0"), SUPPORTED_VERSIONS);
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(VersionInfo::reply(None, &["1.0.0"]).cni_version, CURRENT);
        let d = VersionInfo::decode(br#"{"cniVersion":"0.2.0"}"#).unwrap();
        assert_eq!(d.supported_versions, vec!["0.1.0", "0.2.0"]);
        assert_eq!(
            VersionInfo::decode(br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            6
        );
    }
}
