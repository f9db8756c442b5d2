//! `macvnet shim add/del` on the real kernel: the parent namespace cannot reach a bridge-mode
//! child through the parent, can through the shim, and cannot again after `shim del`.
#![allow(clippy::unwrap_used)]

mod cli_support;

use std::time::Duration;

use cli_support::{mvn, ok, require_root, uplink_pair, TestNs};
use macvnet_netlink::testing::add_macvlan_in;
use macvnet_netlink::{icmp, LinkKind, Mode};

fn reach(ns: &TestNs, dst: &str) -> bool {
    icmp::ping(&ns.ns, dst.parse().unwrap(), 2, Duration::from_millis(300))
        .unwrap()
        .replied
}

#[test]
fn shim_restores_host_to_child_traffic() {
    if !require_root("shim_restores_host_to_child_traffic") {
        return;
    }
    let (host, _lan) = uplink_pair("shim").unwrap();
    let c1 = TestNs::new("shimc1").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_addr(eth0.index, "198.18.9.2/24".parse().unwrap())
        .unwrap();
    let mac1 = add_macvlan_in(&host, "eth0", &c1, "mac1", Mode::Bridge, |_| {}).unwrap();
    let mut hc = c1.handle().unwrap();
    hc.add_addr(mac1.index, "198.18.9.11/24".parse().unwrap())
        .unwrap();

    assert!(
        !reach(&host, "198.18.9.11"),
        "the parent must not reach its child without a shim"
    );

    ok(&[
        "-n",
        &host.name,
        "shim",
        "add",
        "eth0",
        "--address",
        "198.18.9.3/32",
        "--route",
        "198.18.9.11/32",
    ]);
    let shim = h.link_by_name("shim0").unwrap();
    assert_eq!(shim.kind, LinkKind::Macvlan);
    assert_eq!(shim.macvlan.as_ref().unwrap().mode, Mode::Bridge);
    assert_eq!(shim.parent_index, Some(eth0.index));
    let routes = h.routes(Some(false)).unwrap();
    assert!(routes
        .iter()
        .any(|r| r.dst.to_string() == "198.18.9.11/32" && r.oif == Some(shim.index)));

    assert!(reach(&host, "198.18.9.11"), "host → child through the shim");
    assert!(
        reach(&c1, "198.18.9.2"),
        "child → host address through the shim"
    );

    // eth0 is not a shim: refused.
    let out = mvn(&["-n", &host.name, "shim", "del", "--name", "eth0"]);
    assert!(!out.status.success());
    ok(&["-n", &host.name, "shim", "del", "eth0"]);
    assert!(h.link_by_name("shim0").unwrap_err().is_not_found());
    assert!(
        !reach(&host, "198.18.9.11"),
        "back to the macvlan limitation"
    );
}
