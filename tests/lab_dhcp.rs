//! `examples/seed-dhcp.toml` end to end, as root: dnsmasq on the gateway, children leased by
//! `lab up`, the seed matrix, and no namespace or dnsmasq of ours left after `run` or `down`.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use macvnet_netlink::testing::require_root;

mod lab_support;

use lab_support::{leftovers, text, Lab};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed-dhcp.toml")
}

/// Skip unless root with dnsmasq installed.
fn require(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !Path::new("/usr/sbin/dnsmasq").exists() {
        eprintln!("SKIP {test}: dnsmasq not installed (package dnsmasq-base)");
        return false;
    }
    true
}

#[test]
fn seed_dhcp_runs_with_leased_addresses() {
    if !require("seed_dhcp_runs_with_leased_addresses") {
        return;
    }
    let mut lab = Lab::new("labdhcp", "run", "dnsmasq");
    let f = example();
    let r = lab.run_json(&["lab", "run", f.to_str().unwrap()]);
    // The seed's matrix: children reach each other and the gateway, not their parent.
    let names = ["gw0", "eth0", "mac1", "mac2"];
    let want = [
        [true, true, true, true],
        [true, true, false, false],
        [true, false, true, true],
        [true, false, true, true],
    ];
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 16, "{r}");
    for (from, reach) in names.iter().zip(want) {
        for (to, expect) in names.iter().zip(reach) {
            let c = cells
                .iter()
                .find(|c| c["from"] == *from && c["to"] == *to)
                .unwrap();
            assert_eq!(c["expected"], expect, "{from}→{to} expected: {c}");
            assert_eq!(c["actual"], expect, "{from}→{to} actual: {c}");
        }
    }
    let (lo, hi) = (
        Ipv4Addr::new(198, 18, 0, 100),
        Ipv4Addr::new(198, 18, 0, 150),
    );
    let mut leased = vec![];
    for child in ["mac1", "mac2"] {
        let e = r["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["label"] == child)
            .unwrap();
        let a: ipnet::Ipv4Net = e["addr"].as_str().unwrap().parse().unwrap();
        assert!(a.addr() >= lo && a.addr() <= hi, "{child} got {a}");
        assert_eq!(a.prefix_len(), 24, "{child} got {a}");
        leased.push(a.addr());
    }
    assert_ne!(leased[0], leased[1]);
    for pid in &lab.pids {
        assert!(leftovers(*pid).is_empty());
    }
    assert!(lab.our_daemons().is_empty(), "{:?}", lab.our_daemons());
}

#[test]
fn up_then_down_leaves_no_dnsmasq() {
    if !require("up_then_down_leaves_no_dnsmasq") {
        return;
    }
    let mut lab = Lab::new("labdhcp", "updown", "dnsmasq");
    let f = example();
    let f = f.to_str().unwrap();
    let out = lab.run(&["lab", "up", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir.join("seed-dhcp.json")).unwrap())
            .unwrap();
    let daemons = state["daemons"].as_array().unwrap();
    assert_eq!(daemons.len(), 1, "{state}");
    let pid = i32::try_from(daemons[0]["pid"].as_i64().unwrap()).unwrap();
    assert_eq!(lab.our_daemons(), vec![pid]);
    assert_eq!(state["leases"].as_array().unwrap().len(), 2, "{state}");

    let out = lab.run(&["lab", "check", f]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let out = lab.run(&["lab", "down", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(lab.our_daemons().is_empty(), "{:?}", lab.our_daemons());
    for p in &lab.pids {
        assert!(leftovers(*p).is_empty());
    }
    assert!(!lab.dir.join("seed-dhcp.json").exists());
    let left: Vec<_> = std::fs::read_dir(&lab.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left in the state dir: {left:?}");
}
