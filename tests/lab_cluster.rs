//! `examples/cluster.toml` end to end, as root: three hosts on one switch, etcd started by
//! `lab up` in the lan namespace, every child addressed by our `cluster` IPAM plugin run in its
//! host's namespace, every child reaching every other; nothing of ours left afterwards
//! (namespaces, etcd, its data, the state). Skips without root, etcd or the plugin bin.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use macvnet_netlink::{netns, testing::require_root};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_macvnet");

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

/// A private state dir; on drop it kills any etcd of ours (by pid) and removes any namespace
/// of the macvnet pids it ran (a safety net: the tests assert none is left first).
struct Lab {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("mvt-{}-labcluster-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab { dir, pids: vec![] }
    }

    fn run_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("MACVNET_STATE_DIR", &self.dir)
            .env_remove("MACVNET_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        self.pids.push(child.id());
        child.wait_with_output().unwrap()
    }

    fn run(&mut self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// pids of etcd processes whose command line names our state dir (not zombies).
    fn our_etcds(&self) -> Vec<i32> {
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
            if cmd.contains("etcd") && cmd.contains(&dir) && !zombie {
                found.push(pid);
            }
        }
        found
    }

    /// Files left in the state dir.
    fn files(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in self.our_etcds() {
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

fn assert_nothing_left(lab: &Lab) {
    for pid in &lab.pids {
        assert!(leftovers(*pid).is_empty(), "{:?}", leftovers(*pid));
    }
    assert!(lab.our_etcds().is_empty(), "etcd still runs");
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
    let mut lab = Lab::new("run");
    let f = example();
    let out = lab.run(&["-j", "lab", "run", f.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let mut lab = Lab::new("updown");
    let f = example();
    let f = f.to_str().unwrap();
    let out = lab.run(&["-j", "lab", "up", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    let daemons = st["daemons"].as_array().unwrap();
    assert_eq!(daemons.len(), 1, "{st}");
    let pid = daemons[0]["pid"].as_i64().unwrap() as i32;
    assert_eq!(lab.our_etcds(), vec![pid]);
    let allocs = st["allocations"].as_array().unwrap();
    assert_eq!(allocs.len(), 6);
    let hosts: HashSet<&str> = allocs.iter().map(|a| a["host"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 3);
    assert!(allocs.iter().all(|a| a["address"].is_string()), "{st}");
    // The plugin kept its records in etcd: `check` works off the state alone.
    let out = lab.run(&["lab", "check", f]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = lab.run(&["-j", "lab", "down", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let down: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let mut lab = Lab::new("noetcd");
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
    let mut lab = Lab::new("validate");
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
