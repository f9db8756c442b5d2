//! `CNI_ARGS` (`K=V;K2=V2`) with Go `types.LoadArgs` semantics: every pair must be
//! exactly `K=V`; keys a plugin does not know are an error unless `IgnoreUnknown`
//! is "1"/"true" (case-insensitive). Errors are code 4 (the variable is invalid);
//! Go reports them as a generic error (999), with the same messages.

use std::collections::BTreeMap;

use crate::error::CniError;

/// The key that makes unknown keys acceptable.
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

/// Parsed `CNI_ARGS`; a later duplicate key overrides an earlier one (as in Go).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
    ignore_unknown: bool,
}

/// Go's `UnmarshallableBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl CniArgs {
    /// Parse the raw variable; "" is empty.
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        let mut out = Self::default();
        if raw.is_empty() {
            return Ok(out);
        }
        for pair in raw.split(';') {
            let mut kv = pair.split('=');
            let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
                return Err(CniError::invalid_env(format!(
                    "ARGS: invalid pair {pair:?}"
                )));
            };
            if k == IGNORE_UNKNOWN {
                out.ignore_unknown = parse_bool(v).ok_or_else(|| {
                    CniError::invalid_env(format!(
                        "ARGS: error parsing value of pair {pair:?}: boolean unmarshal error: invalid input {}",
                        v.to_ascii_lowercase()
                    ))
                })?;
            }
            out.pairs.push((k.to_string(), v.to_string()));
        }
        Ok(out)
    }

    /// The value of `key` (last occurrence wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `IgnoreUnknown` was set true.
    pub fn ignore_unknown(&self) -> bool {
        self.ignore_unknown
    }

    /// Pairs in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// All pairs as a map (last occurrence wins).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.pairs.iter().cloned().collect()
    }

    /// Fail (code 4, Go's message) when a key outside `known` (and `IgnoreUnknown`) is
    /// present, unless `IgnoreUnknown` is true.
    pub fn check_known(&self, known: &[&str]) -> Result<(), CniError> {
        if self.ignore_unknown {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != IGNORE_UNKNOWN && !known.contains(&k.as_str()))
            .map(|(k, v)| format!("{:?}", format!("{k}={v}")))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(CniError::invalid_env(format!(
                "ARGS: unknown args [{}]",
                unknown.join(" ")
            )))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_pairs() {
        let a = CniArgs::parse(
            "K8S_POD_NAME=p;MAC=02:00:00:00:00:01;IP=198.18.0.9;MAC=02:00:00:00:00:02",
        )
        .unwrap();
        assert_eq!(a.get("K8S_POD_NAME"), Some("p"));
        assert_eq!(a.get("MAC"), Some("02:00:00:00:00:02"));
        assert_eq!(a.get("nope"), None);
        assert!(!a.ignore_unknown());
        assert_eq!(a.to_map().len(), 3);
        assert!(CniArgs::parse("").unwrap().is_empty());
        assert_eq!(CniArgs::parse("A=").unwrap().get("A"), Some(""));
    }

    #[test]
    fn invalid_pairs() {
        for bad in ["A", "A=1=2", "A=1;", ";A=1", "A=1;;B=2"] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, 4, "{bad}");
            assert!(e.msg.starts_with("ARGS: invalid pair"), "{}", e.msg);
        }
        let e = CniArgs::parse("IgnoreUnknown=maybe").unwrap_err();
        assert_eq!(e.code, 4);
    }

    #[test]
    fn ignore_unknown_semantics() {
        let a = CniArgs::parse("IP=198.18.0.9;FOO=bar").unwrap();
        let e = a.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.msg, r#"ARGS: unknown args ["FOO=bar"]"#);
        assert!(a.check_known(&["IP", "FOO"]).is_ok());
        for t in ["1", "true", "True", "TRUE"] {
            let a = CniArgs::parse(&format!("IgnoreUnknown={t};FOO=bar")).unwrap();
            assert!(a.ignore_unknown());
            assert!(a.check_known(&["IP"]).is_ok());
        }
        let a = CniArgs::parse("IgnoreUnknown=0;FOO=bar").unwrap();
        assert!(a.check_known(&[]).is_err());
        // IgnoreUnknown itself is always known.
        assert!(CniArgs::parse("IgnoreUnknown=false")
            .unwrap()
            .check_known(&[])
            .is_ok());
    }
}
