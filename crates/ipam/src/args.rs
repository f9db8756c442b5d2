//! `CNI_ARGS` parsing with the reference's `types.LoadArgs` rules:
//! `K=V;K=V`, keys matched exactly against the plugin's known keys, unknown keys
//! refused unless `IgnoreUnknown=1|true`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("ARGS: invalid pair {0:?}")]
    InvalidPair(String),
    #[error("ARGS: error parsing value of pair {pair:?}: boolean unmarshal error: invalid input {value}")]
    InvalidBool { pair: String, value: String },
    #[error("ARGS: unknown args [{}]", .0.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(" "))]
    Unknown(Vec<String>),
    #[error("ARGS: error parsing value of pair {pair:?}: {reason}")]
    InvalidValue { pair: String, reason: String },
}

/// Known keys → values (last one wins). `known` excludes `IgnoreUnknown`, which
/// is always accepted.
pub fn load(args: &str, known: &[&str]) -> Result<BTreeMap<String, String>, ArgsError> {
    let mut out = BTreeMap::new();
    if args.is_empty() {
        return Ok(out);
    }
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in args.split(';') {
        let mut kv = pair.split('=');
        let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
            return Err(ArgsError::InvalidPair(pair.to_string()));
        };
        if k == "IgnoreUnknown" {
            ignore_unknown = match v.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(ArgsError::InvalidBool {
                        pair: pair.to_string(),
                        value: v.to_ascii_lowercase(),
                    })
                }
            };
        } else if known.contains(&k) {
            out.insert(k.to_string(), v.to_string());
        } else {
            unknown.push(pair.to_string());
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(ArgsError::Unknown(unknown));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn load_rules() {
        assert!(load("", &["IP"]).unwrap().is_empty());
        let m = load("IP=198.18.0.9;IgnoreUnknown=1;K8S_POD_NAME=x", &["IP"]).unwrap();
        assert_eq!(m.get("IP").map(String::as_str), Some("198.18.0.9"));
        assert_eq!(
            load("IP=1;FOO=2", &["IP"]).unwrap_err().to_string(),
            r#"ARGS: unknown args ["FOO=2"]"#
        );
        assert!(matches!(
            load("IP", &["IP"]),
            Err(ArgsError::InvalidPair(_))
        ));
        assert!(matches!(
            load("IP=a=b", &["IP"]),
            Err(ArgsError::InvalidPair(_))
        ));
        assert!(matches!(
            load("IgnoreUnknown=yes", &["IP"]),
            Err(ArgsError::InvalidBool { .. })
        ));
        // Keys are case-sensitive like Go's FieldByName.
        assert!(load("ip=1", &["IP"]).is_err());
    }
}
