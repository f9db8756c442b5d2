//! The dhcp IPAM as a main plugin calls it: the reference macvlan plugin, and ours (from
//! macvnet-plugins, when built into the same target dir), exec `dhcp` from CNI_PATH.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

const REF_MACVLAN: &str = "/usr/lib/cni/macvlan";

/// Our macvlan plugin next to this test's target dir (`cargo build -p macvnet-plugins`).
fn our_macvlan() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("macvlan");
    p.exists().then_some(p)
}

/// CNI_PATH dir holding `dhcp` → our binary.
fn cni_bin(lab: &Lab) -> PathBuf {
    let dir = lab.tmp.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("dhcp");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, &link).unwrap();
    }
    dir
}

/// Run a main plugin in the host namespace (where the master `eth0` is).
fn run_main(lab: &Lab, plugin: &Path, cmd: &str, i: usize) -> (bool, Value) {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": NETWORK, "type": "macvlan",
        "master": "eth0", "mode": "bridge",
        "ipam": {"type": "dhcp", "daemonSocketPath": lab.socket}
    })
    .to_string();
    let mut c = macvnet_netlink::netns::command_in(&lab.host.ns, plugin.to_str().unwrap()).unwrap();
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", lab.container_id(i))
        .env("CNI_NETNS", lab.netns_path(i))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_bin(lab));
    exchange(c, &conf, &format!("{cmd}:"))
}

/// An empty container namespace (the main plugin creates its `eth0`).
fn bare_container(lab: &mut Lab, tag: &str) -> usize {
    lab.containers
        .push(macvnet_netlink::testing::TestNs::new(tag).unwrap());
    lab.containers.len() - 1
}

fn has_link(lab: &Lab, i: usize) -> bool {
    lab.containers[i]
        .handle()
        .unwrap()
        .link_by_name("eth0")
        .is_ok()
}

fn main_plugin_round_trip(plugin: &Path, tag: &str) {
    let mut lab = Lab::running(tag);
    let c = bare_container(&mut lab, "c");
    let (ok, v) = run_main(&lab, plugin, "ADD", c);
    assert!(ok, "{v}\n{}", lab.daemon_log());
    let addr = v["ips"][0]["address"].as_str().unwrap().to_string();
    // The main plugin put the address on the link; the daemon gave it the lease time.
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .lifetimes(c, &addr)
            .is_some_and(|(valid, _)| valid <= 120)),
        "{:?}\n{}",
        lab.lifetimes(c, &addr),
        lab.daemon_log()
    );
    assert!(lab.server_lease_of(&addr).is_some());
    let (ok, v) = run_main(&lab, plugin, "DEL", c);
    assert!(ok, "{v}");
    assert!(!has_link(&lab, c));
    assert!(wait_for(Duration::from_secs(5), || lab
        .server_lease_of(&addr)
        .is_none()));
    assert!(lab.stored(c).is_none());
}

#[test]
fn reference_macvlan_with_our_dhcp() {
    let test = "reference_macvlan_with_our_dhcp";
    if !can_run(test) {
        return;
    }
    if !Path::new(REF_MACVLAN).exists() {
        eprintln!("SKIP {test}: {REF_MACVLAN} missing");
        return;
    }
    main_plugin_round_trip(Path::new(REF_MACVLAN), "dh-refmv");
}

#[test]
fn our_macvlan_with_our_dhcp() {
    let test = "our_macvlan_with_our_dhcp";
    if !can_run(test) {
        return;
    }
    let Some(mv) = our_macvlan() else {
        eprintln!("SKIP {test}: build macvnet-plugins into this target dir first");
        return;
    };
    main_plugin_round_trip(&mv, "dh-ourmv");
}

#[test]
fn no_server_add_fails_and_our_macvlan_removes_its_link() {
    let test = "no_server_add_fails_and_our_macvlan_removes_its_link";
    if !can_run(test) {
        return;
    }
    let Some(mv) = our_macvlan() else {
        eprintln!("SKIP {test}: build macvnet-plugins into this target dir first");
        return;
    };
    let mut lab = Lab::new("dh-mvnone");
    lab.start_daemon(&[]);
    let c = bare_container(&mut lab, "c");
    let (ok, v) = run_main(&lab, &mv, "ADD", c);
    assert!(!ok);
    assert_eq!(v["code"], 11, "{v}");
    assert!(
        !has_link(&lab, c),
        "macvlan left behind after the IPAM failure"
    );
    let mut h = lab.host.handle().unwrap();
    let left: Vec<String> = h
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo" && n != "eth0")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
