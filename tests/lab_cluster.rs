//! `examples/cluster.toml` end to end, as root: three hosts on one switch, etcd started by
//! `lab up` in the lan namespace, every child addressed by our `cluster` IPAM plugin run in its
//! host's namespace, every child reaching every other; nothing of ours left afterwards
//! (namespaces, etcd, its data, the state). Skips without root, etcd or the plugin bin.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use macvnet_netlink::testing::require_root;

mod lab_support;

use lab_support::{leftovers, text, Lab, BIN};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.toml")
}

fn etcd_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join("etcd").is_file())
}

/// Skip unless root, with etcd and the `cluster` plugin next to the macvnet binary.
fn require(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !etcd_installed() {
        eprintln!("SKIP {test}: etcd not installed (apt-get install etcd-server)");
        return false;
    }
    let plugin = Path::new(BIN).with_file_name("cluster");
    if !plugin.exists() {
        eprintln!(
            "SKIP {test}: {} missing (cargo build --release --workspace)",
            plugin.display()
        );
        return false;
    }
    true
}

fn assert_nothing_left(lab: &Lab) {
    for pid in &lab.pids {
        assert!(leftovers(*pid).is_empty(), "{:?}", leftovers(*pid));
    }
    assert!(lab.our_daemons().is_empty(), "etcd still runs");
    assert!(
        lab.files().is_empty(),
        "left in the state dir: {:?}",
        lab.files()
    );
}

#[test]
fn cluster_lab_runs_with_one_pool() {
    if !require("cluster_lab_runs_with_one_pool") {
        return;
    }
    let mut lab = Lab::new("labcluster", "run", "etcd");
    let f = example();
    let r = lab.run_json(&["lab", "run", f.to_str().unwrap()]);
    assert_eq!(r["mismatches"], 0, "{r}");
    let cells = r["cells"].as_array().unwrap();
    // 1 switch + 3 parents + 6 children.
    assert_eq!(cells.len(), 100);
    for c in cells {
        assert_eq!(c["expected"], c["actual"], "{c}");
        assert!(c.get("error").is_none(), "{c}");
    }
    // Every child has an address from the pool, none twice, and reaches every other child
    // (on its own host and across the switch) and the switch.
    let eps = r["endpoints"].as_array().unwrap();
    let children: Vec<(&str, IpAddr)> = eps
        .iter()
        .filter(|e| e["role"].get("child").is_some())
        .map(|e| {
            let a: ipnet::IpNet = e["addr"].as_str().unwrap().parse().unwrap();
            (e["label"].as_str().unwrap(), a.addr())
        })
        .collect();
    assert_eq!(children.len(), 6, "{eps:?}");
    let pool: ipnet::IpNet = "198.18.0.0/24".parse().unwrap();
    let excluded: ipnet::IpNet = "198.18.0.0/29".parse().unwrap();
    let distinct: HashSet<IpAddr> = children.iter().map(|(_, a)| *a).collect();
    assert_eq!(distinct.len(), 6, "{children:?}");
    for (l, a) in &children {
        assert!(pool.contains(a) && !excluded.contains(a), "{l}: {a}");
    }
    for (from, _) in &children {
        for to in children.iter().map(|(l, _)| *l).chain(["sw0"]) {
            let cell = cells
                .iter()
                .find(|c| c["from"] == *from && c["to"] == to)
                .unwrap();
            assert_eq!(cell["actual"], true, "{cell}");
        }
    }
    assert_nothing_left(&lab);
}

/// up, the state (etcd pid alive, allocations), down; then down again is a no-op.
#[test]
fn cluster_lab_up_down_releases_and_stops_etcd() {
    if !require("cluster_lab_up_down_releases_and_stops_etcd") {
        return;
    }
    let mut lab = Lab::new("labcluster", "updown", "etcd");
    let f = example();
    let f = f.to_str().unwrap();
    let st = lab.run_json(&["lab", "up", f]);
    let daemons = st["daemons"].as_array().unwrap();
    assert_eq!(daemons.len(), 1, "{st}");
    let pid = daemons[0]["pid"].as_i64().unwrap() as i32;
    assert_eq!(lab.our_daemons(), vec![pid]);
    let allocs = st["allocations"].as_array().unwrap();
    assert_eq!(allocs.len(), 6);
    let hosts: HashSet<&str> = allocs.iter().map(|a| a["host"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 3);
    assert!(allocs.iter().all(|a| a["address"].is_string()), "{st}");
    // The plugin kept its records in etcd: `check` works off the state alone.
    let out = lab.run(&["lab", "check", f]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let down = lab.run_json(&["lab", "down", f]);
    // down DELeted every child through the plugin before stopping etcd, and read etcd back.
    assert_eq!(down["cluster_records_left"], 0, "{down}");
    assert_eq!(down["removed"].as_array().unwrap().len(), 10);
    assert_nothing_left(&lab);
    let out = lab.run(&["lab", "down", f]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("nothing to do"));
}

/// Without etcd on PATH, `up` says what to install and creates nothing.
#[test]
fn cluster_lab_without_etcd_says_what_to_install() {
    let mut lab = Lab::new("labcluster", "noetcd", "etcd");
    let f = example();
    let out = lab.run_env(
        &["lab", "up", f.to_str().unwrap()],
        &[("PATH", "/nonexistent")],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("apt-get install etcd-server"), "{err}");
    for pid in &lab.pids {
        assert!(leftovers(*pid).is_empty());
    }
}

#[test]
fn cluster_lab_validates_and_draws() {
    let mut lab = Lab::new("labcluster", "validate", "etcd");
    let f = example();
    let out = lab.run(&["lab", "validate", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid (10 namespaces, 3 uplinks, 6 children)"));
    let out = lab.run(&["lab", "draw", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = text(&out.stdout);
    assert!(svg.contains("<svg") && svg.contains("etcd 198.18.0.1:2379"));
    // One switch, drawn once.
    assert_eq!(svg.matches(">sw0 ").count(), 1, "{svg}");
    for port in ["swp-a", "swp-b", "swp-c"] {
        assert!(svg.contains(port), "{port}");
    }
    // Bad input is refused with the line.
    let bad = lab.dir.join("bad.toml");
    let base = std::fs::read_to_string(&f).unwrap();
    for (from, to, want) in [
        (
            "netns = \"lan\"\naddress = \"198.18.0.1\"",
            "netns = \"nowhere\"\naddress = \"198.18.0.1\"",
            "unknown netns",
        ),
        (
            "range = \"198.18.0.0/24\"",
            "range = \"10.0.0.0/24\"",
            "outside 198.18.0.0/15",
        ),
        (
            "exclude = [\"198.18.0.0/29\"]",
            "exclude = [\"198.18.0.0/31\"]",
            "not excluded",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        std::fs::write(&bad, base.replace(from, to)).unwrap();
        let out = lab.run(&["lab", "validate", bad.to_str().unwrap()]);
        assert!(!out.status.success(), "{to}");
        let err = text(&out.stderr);
        assert!(
            err.contains(want) && err.contains("bad.toml:"),
            "{to}: {err}"
        );
    }
}
