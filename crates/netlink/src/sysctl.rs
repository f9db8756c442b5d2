//! sysctl reads and writes inside a namespace (/proc/sys/net is resolved
//! against the network namespace of the thread that opens it).

use std::path::PathBuf;

use crate::{Error, NetnsRef, Result};

/// `/proc/sys/...` for a dotted (`net.ipv4.conf.eth0.arp_notify`) or slashed
/// (`net/ipv4/conf/eth0.1/arp_notify`) key. Interface names containing dots need the slashed form.
pub fn key_path(key: &str) -> Result<PathBuf> {
    let trimmed = key
        .trim()
        .trim_start_matches("/proc/sys/")
        .trim_start_matches('/');
    let rel = if trimmed.contains('/') {
        trimmed.to_string()
    } else {
        trimmed.replace('.', "/")
    };
    let bad = rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || rel.contains('\0');
    if bad {
        return Err(Error::Invalid(format!("invalid sysctl key {key:?}")));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// Write `value` to /proc/sys/`key` (dotted or slashed key) inside `ns`.
pub fn write(ns: &NetnsRef, key: &str, value: &str) -> Result<()> {
    let path = key_path(key)?;
    let op = format!("writing sysctl {key}={value} in {ns}");
    crate::netns::run_in(ns, || std::fs::write(&path, value.as_bytes()))?
        .map_err(|e| Error::io(op, e))
}

/// Read /proc/sys/`key` inside `ns`, trimmed.
pub fn read(ns: &NetnsRef, key: &str) -> Result<String> {
    let path = key_path(key)?;
    let op = format!("reading sysctl {key} in {ns}");
    let text = crate::netns::run_in(ns, || std::fs::read_to_string(&path))?
        .map_err(|e| Error::io(op, e))?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            key_path("net.ipv4.conf.eth0.arp_notify").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/arp_notify")
        );
        assert_eq!(
            key_path("net/ipv4/conf/eth0.1/arp_notify").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.1/arp_notify")
        );
        assert!(key_path("net/../../etc/passwd").is_err());
        assert!(key_path("").is_err());
    }
}
