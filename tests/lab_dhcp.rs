//! `examples/seed-dhcp.toml` end to end, as root: dnsmasq on the gateway, children leased by
//! `lab up`, the seed matrix, and no namespace or dnsmasq of ours left after `run` or `down`.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use macvnet_netlink::{netns, testing::require_root};

const BIN: &str = env!("CARGO_BIN_EXE_macvnet");

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

/// A private state dir; on drop it kills any dnsmasq of ours (by pid) and removes any
/// namespace of the macvnet pids it ran (a safety net: the tests assert none is left first).
struct Lab {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("mvt-{}-labdhcp-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab { dir, pids: vec![] }
    }

    fn run(&mut self, args: &[&str]) -> Output {
        let child = Command::new(BIN)
            .args(args)
            .env("MACVNET_STATE_DIR", &self.dir)
            .env_remove("MACVNET_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.pids.push(child.id());
        child.wait_with_output().unwrap()
    }

    /// pids of dnsmasq processes whose command line names our state dir.
    fn our_dnsmasqs(&self) -> Vec<i32> {
        let dir = self.dir.display().to_string();
        let mut found = vec![];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let zombie = std::fs::read_to_string(e.path().join("stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            if cmd.contains("dnsmasq") && cmd.contains(&dir) && !zombie {
                found.push(pid);
            }
        }
        found
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in self.our_dnsmasqs() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for pid in &self.pids {
            for n in leftovers(*pid) {
                let _ = netns::del(&n, true);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Namespaces created by the macvnet process `pid`.
fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("mvlab-{pid}-");
    netns::list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn seed_dhcp_runs_with_leased_addresses() {
    if !require("seed_dhcp_runs_with_leased_addresses") {
        return;
    }
    let mut lab = Lab::new("run");
    let f = example();
    let out = lab.run(&["-j", "lab", "run", f.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    assert!(lab.our_dnsmasqs().is_empty(), "{:?}", lab.our_dnsmasqs());
}

#[test]
fn up_then_down_leaves_no_dnsmasq() {
    if !require("up_then_down_leaves_no_dnsmasq") {
        return;
    }
    let mut lab = Lab::new("updown");
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
    assert_eq!(lab.our_dnsmasqs(), vec![pid]);
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
    assert!(lab.our_dnsmasqs().is_empty(), "{:?}", lab.our_dnsmasqs());
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
