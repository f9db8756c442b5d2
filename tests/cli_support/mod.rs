//! Shared helpers for the CLI tests: run the built `macvnet`, read what the kernel reports.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::process::{Command, Output};

pub use macvnet_netlink::testing::{require_program, require_root, uplink_pair, TestNs};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_macvnet");

/// True when the test can run (root and `ip` present); prints why not otherwise.
pub fn can_run(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    require_program(
        test,
        "ip",
        "-V",
        "needs iproute2's `ip` to cross-check what the kernel reports",
    )
}

pub fn mvn(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Run `macvnet ARGS`, assert success, return stdout.
pub fn ok(args: &[&str]) -> String {
    let out = mvn(args);
    assert!(
        out.status.success(),
        "macvnet {args:?} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run `macvnet ARGS`, assert failure with exactly one line on stderr, return that line.
pub fn fail(args: &[&str]) -> String {
    let out = mvn(args);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success(),
        "macvnet {args:?} unexpectedly succeeded; stderr: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "macvnet {args:?}: expected one stderr line, got {err:?}"
    );
    lines[0].to_string()
}

pub fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// `ip -j -d -n NS link show` as JSON.
pub fn ip_links(ns: &str) -> Vec<Value> {
    let out = Command::new("ip")
        .args(["-j", "-d", "-n", ns, "link", "show"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip link show in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(v) => v,
        other => panic!("unexpected ip output {other}"),
    }
}

pub fn ip_link(ns: &str, name: &str) -> Option<Value> {
    ip_links(ns).into_iter().find(|l| l["ifname"] == name)
}

pub fn link_names(ns: &str) -> Vec<String> {
    ip_links(ns)
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

/// `info_data` of a macvlan/macvtap as iproute2 reports it.
pub fn info_data(ns: &str, name: &str) -> Value {
    let l = ip_link(ns, name).unwrap_or_else(|| panic!("{name} not in {ns}"));
    l["linkinfo"]["info_data"].clone()
}

pub fn flags(ns: &str, name: &str) -> Vec<String> {
    let l = ip_link(ns, name).unwrap_or_else(|| panic!("{name} not in {ns}"));
    l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}
