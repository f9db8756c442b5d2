//! sysctl reads and writes inside a namespace (/proc/sys/net is resolved
//! against the network namespace of the thread that opens it).

use crate::{NetnsRef, Result};

/// Write `value` to /proc/sys/`key` (dotted or slashed key) inside `ns`.
pub fn write(ns: &NetnsRef, key: &str, value: &str) -> Result<()> {
    let _ = (ns, key, value);
    todo!()
}

/// Read /proc/sys/`key` inside `ns`, trimmed.
pub fn read(ns: &NetnsRef, key: &str) -> Result<String> {
    let _ = (ns, key);
    todo!()
}
