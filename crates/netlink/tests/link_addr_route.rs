#![allow(clippy::unwrap_used)]
//! set_link changes, moving links, bridges and hairpin, addresses, routes, sysctl.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::testing::{require_root, uplink_pair, TestNs};
use nl::{sysctl, Error, LinkChange, LinkKind, MacAddr, MacvlanSpec, Mode, NetnsRef, RouteSpec};

fn spec(name: &str, parent: u32) -> MacvlanSpec {
    MacvlanSpec {
        name: name.to_string(),
        parent,
        mode: Some(Mode::Bridge),
        ..Default::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn set_link_changes() {
    if !require_root("set_link_changes") {
        return;
    }
    let (host, _lan) = uplink_pair("set").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&spec("mv0", eth0.index)).unwrap();
    let idx = h.link_by_name("mv0").unwrap().index;
    assert!(!h.link_by_index(idx).unwrap().up);

    h.set_link(
        idx,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(h.link_by_index(idx).unwrap().up);
    h.set_link(
        idx,
        &LinkChange {
            up: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!h.link_by_index(idx).unwrap().up);

    h.set_link(
        idx,
        &LinkChange {
            mtu: Some(1280),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.link_by_index(idx).unwrap().mtu, 1280);
    // A macvlan cannot exceed its parent's MTU (1500 on the veth).
    let e = h
        .set_link(
            idx,
            &LinkChange {
                mtu: Some(9000),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("mv0") && text.contains("mtu 9000"), "{text}");
    eprintln!("mtu above parent: {text}");
    assert_eq!(h.link_by_index(idx).unwrap().mtu, 1280);

    let mac: MacAddr = "02:aa:bb:cc:dd:ee".parse().unwrap();
    h.set_link(
        idx,
        &LinkChange {
            mac: Some(mac),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.link_by_index(idx).unwrap().mac, Some(mac));

    h.set_link(
        idx,
        &LinkChange {
            txqlen: Some(77),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.link_by_index(idx).unwrap().txqlen, 77);

    h.set_link(
        idx,
        &LinkChange {
            name: Some("renamed0".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.link_by_index(idx).unwrap().name, "renamed0");
    assert!(h.link_by_name("mv0").unwrap_err().is_not_found());

    // Several changes in one request, up included.
    h.set_link(
        idx,
        &LinkChange {
            up: Some(true),
            promisc: Some(true),
            mtu: Some(1300),
            ..Default::default()
        },
    )
    .unwrap();
    let l = h.link_by_index(idx).unwrap();
    assert!(l.up && l.promisc && l.mtu == 1300);
    assert!(l.flags & libc::IFF_PROMISC as u32 != 0);
    assert!(l.promiscuity >= 1);
    h.set_link(
        idx,
        &LinkChange {
            promisc: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let l = h.link_by_index(idx).unwrap();
    assert!(!l.promisc && l.up);

    // Nothing to change is a no-op.
    h.set_link(idx, &LinkChange::default()).unwrap();
}

#[test]
fn move_link_to_other_namespace() {
    if !require_root("move_link_to_other_namespace") {
        return;
    }
    let (host, _lan) = uplink_pair("move").unwrap();
    let other = TestNs::new("move-o").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&spec("mvm", eth0.index)).unwrap();
    let idx = h.link_by_name("mvm").unwrap().index;
    let fd = other.ns.open().unwrap();
    h.set_link(
        idx,
        &LinkChange {
            netns: Some(std::os::fd::AsFd::as_fd(&fd)),
            name: Some("eth1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(h.link_by_name("mvm").unwrap_err().is_not_found());
    let mut o = other.handle().unwrap();
    let moved = o.link_by_name("eth1").unwrap();
    assert_eq!(moved.kind, LinkKind::Macvlan);
    assert!(moved.link_netnsid.is_some());
    // And back up in its new home.
    o.set_link(
        moved.index,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(o.link_by_name("eth1").unwrap().up);
}

#[test]
fn bridge_port_and_hairpin() {
    if !require_root("bridge_port_and_hairpin") {
        return;
    }
    let (host, _lan) = uplink_pair("brg").unwrap();
    let mut h = host.handle().unwrap();
    h.add_bridge("br0").unwrap();
    let br = h.link_by_name("br0").unwrap();
    assert_eq!(br.kind, LinkKind::Bridge);
    let eth0 = h.link_by_name("eth0").unwrap();
    h.set_link(
        eth0.index,
        &LinkChange {
            controller: Some(br.index),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.link_by_name("eth0").unwrap().controller, Some(br.index));
    assert!(!h.hairpin(eth0.index).unwrap());
    h.set_hairpin(eth0.index, true).unwrap();
    assert!(h.hairpin(eth0.index).unwrap());

    // Cross-check with iproute2 when it is installed.
    match nl::netns::command_in(&host.ns, "ip")
        .unwrap()
        .args(["-d", "-j", "link", "show", "eth0"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("\"hairpin\":true"), "{text}");
        }
        _ => eprintln!("note: ip not available, skipping the iproute2 cross-check"),
    }
    h.set_hairpin(eth0.index, false).unwrap();
    assert!(!h.hairpin(eth0.index).unwrap());

    // Release from the bridge; hairpin is then unknown.
    h.set_link(
        eth0.index,
        &LinkChange {
            controller: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.link_by_name("eth0").unwrap().controller, None);
    assert!(h.hairpin(eth0.index).unwrap_err().is_not_found());
    // Hairpin on a non-port fails with a kernel error naming the port.
    let e = h.set_hairpin(eth0.index, true).unwrap_err();
    assert!(e.to_string().contains("eth0"), "{e}");
}

#[test]
fn addresses_v4_v6() {
    if !require_root("addresses_v4_v6") {
        return;
    }
    let (host, _lan) = uplink_pair("addr").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    let v4 = net("198.18.0.11/24");
    let v6 = net("2001:db8:1::11/64");
    h.add_addr(eth0.index, v4).unwrap();
    h.add_addr(eth0.index, v6).unwrap();
    let e = h.add_addr(eth0.index, v4).unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(
        e.to_string().contains("198.18.0.11/24") && e.to_string().contains("eth0"),
        "{e}"
    );

    let mine = h.addrs(Some(eth0.index)).unwrap();
    let a4 = mine.iter().find(|a| a.addr == v4).unwrap();
    assert_eq!(a4.scope, 0);
    assert!(!a4.tentative);
    let a6 = mine.iter().find(|a| a.addr == v6).unwrap();
    assert_eq!(a6.index, eth0.index);
    eprintln!("fresh v6 tentative: {}", a6.tentative);
    // Link-local v6 appears too once the carrier is seen (linkwatch is asynchronous).
    let mut ll = false;
    for _ in 0..50 {
        let now = h.addrs(Some(eth0.index)).unwrap();
        if now
            .iter()
            .any(|a| matches!(a.addr, IpNet::V6(n) if n.addr().segments()[0] == 0xfe80))
        {
            ll = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ll, "no fe80:: address on eth0");
    // All-links view includes loopback's 127.0.0.1.
    let all = h.addrs(None).unwrap();
    assert!(all.iter().any(|a| a.addr == net("127.0.0.1/8")));

    // Broadcast as `brd +` would set it.
    if let Ok(out) = nl::netns::command_in(&host.ns, "ip")
        .unwrap()
        .args(["-4", "-j", "addr", "show", "eth0"])
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("\"broadcast\":\"198.18.0.255\""), "{text}");
        }
    }

    // DAD runs on the fresh v6 address (the veth has carrier), then settles.
    h.settle_addrs(eth0.index, std::time::Duration::from_secs(10))
        .unwrap();
    let settled = h.addrs(Some(eth0.index)).unwrap();
    assert!(
        settled.iter().all(|a| !a.tentative && !a.dad_failed),
        "{settled:?}"
    );

    h.del_addr(eth0.index, v4).unwrap();
    h.del_addr(eth0.index, v6).unwrap();
    let mine = h.addrs(Some(eth0.index)).unwrap();
    assert!(!mine.iter().any(|a| a.addr == v4 || a.addr == v6));
    let e = h.del_addr(eth0.index, v4).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn routes_connected_and_default() {
    if !require_root("routes_connected_and_default") {
        return;
    }
    let (host, _lan) = uplink_pair("route").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    assert_eq!(h.default_route_link().unwrap(), None);
    h.add_addr(eth0.index, net("198.18.0.11/24")).unwrap();
    h.add_addr(eth0.index, net("2001:db8:1::11/64")).unwrap();

    // The kernel's connected route.
    let v4 = h.routes(Some(false)).unwrap();
    let conn = v4.iter().find(|r| r.dst == net("198.18.0.0/24")).unwrap();
    assert_eq!(conn.oif, Some(eth0.index));
    assert_eq!(conn.protocol, 2);
    assert_eq!(conn.scope, 253);
    assert_eq!(conn.table, 254);

    // A user connected route and a default route via a gateway.
    let extra = RouteSpec {
        metric: Some(50),
        ..RouteSpec::dev(net("198.19.5.0/24"), eth0.index)
    };
    h.add_route(&extra).unwrap();
    let gw: IpAddr = "198.18.0.1".parse().unwrap();
    let dflt = RouteSpec {
        oif: Some(eth0.index),
        ..RouteSpec::via(net("0.0.0.0/0"), gw)
    };
    h.add_route(&dflt).unwrap();
    let gw6: IpAddr = "2001:db8:1::1".parse().unwrap();
    h.add_route(&RouteSpec::via(net("::/0"), gw6)).unwrap();
    let e = h.add_route(&dflt).unwrap_err();
    assert!(e.is_exists(), "{e}");

    let v4 = h.routes(Some(false)).unwrap();
    let r = v4.iter().find(|r| r.dst == net("198.19.5.0/24")).unwrap();
    assert_eq!(
        (r.oif, r.metric, r.scope, r.protocol, r.gateway),
        (Some(eth0.index), Some(50), 253, 3, None)
    );
    let d = v4.iter().find(|r| r.dst.prefix_len() == 0).unwrap();
    assert_eq!(d.gateway, Some(gw));
    assert_eq!(d.oif, Some(eth0.index));
    assert_eq!(d.scope, 0);
    let v6 = h.routes(Some(true)).unwrap();
    assert!(v6
        .iter()
        .any(|r| r.dst == net("::/0") && r.gateway == Some(gw6)));
    let both = h.routes(None).unwrap();
    assert!(both.len() > v4.len());
    assert_eq!(h.default_route_link().unwrap(), Some(eth0.index));

    h.del_route(&dflt).unwrap();
    h.del_route(&extra).unwrap();
    h.del_route(&RouteSpec::via(net("::/0"), gw6)).unwrap();
    let v4 = h.routes(Some(false)).unwrap();
    assert!(!v4
        .iter()
        .any(|r| r.dst.prefix_len() == 0 || r.dst == net("198.19.5.0/24")));
    assert_eq!(h.default_route_link().unwrap(), None);
    let e = h.del_route(&dflt).unwrap_err();
    assert!(e.errno().is_some(), "{e}");
    assert!(
        e.to_string()
            .starts_with("deleting route 0.0.0.0/0 via 198.18.0.1 dev eth0 in mvt-"),
        "{e}"
    );
    // Gateway unreachable: no connected route covers it.
    let e = h
        .add_route(&RouteSpec::via(
            net("198.19.9.0/24"),
            "198.19.200.1".parse().unwrap(),
        ))
        .unwrap_err();
    eprintln!("unreachable gateway: {e}");
    assert!(matches!(e, Error::Kernel { .. }));
}

#[test]
fn sysctl_in_namespace() {
    if !require_root("sysctl_in_namespace") {
        return;
    }
    let (host, _lan) = uplink_pair("sysctl").unwrap();
    let root_before = sysctl::read(&NetnsRef::Current, "net.ipv4.conf.default.arp_notify").unwrap();
    let key = "net.ipv4.conf.eth0.arp_notify";
    assert_eq!(sysctl::read(&host.ns, key).unwrap(), "0");
    sysctl::write(&host.ns, key, "1").unwrap();
    assert_eq!(sysctl::read(&host.ns, key).unwrap(), "1");
    sysctl::write(&host.ns, "net/ipv4/conf/default/arp_notify", "1").unwrap();
    assert_eq!(
        sysctl::read(&host.ns, "net.ipv4.conf.default.arp_notify").unwrap(),
        "1"
    );
    // The root namespace did not change (its eth0, if any, is not ours to read).
    assert_eq!(
        sysctl::read(&NetnsRef::Current, "net.ipv4.conf.default.arp_notify").unwrap(),
        root_before
    );
    // Missing key.
    let e = sysctl::read(&host.ns, "net.ipv4.conf.nosuch0.arp_notify").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("nosuch0"), "{e}");
}

#[test]
fn macvlan_in_other_ns_keeps_arc_fd() {
    if !require_root("macvlan_in_other_ns_keeps_arc_fd") {
        return;
    }
    // The spec's Arc<OwnedFd> can be shared between several creations.
    let (host, _lan) = uplink_pair("arc").unwrap();
    let c = TestNs::new("arc-c").unwrap();
    let fd = Arc::new(c.ns.open().unwrap());
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    for n in ["a0", "a1"] {
        h.add_macvlan(&MacvlanSpec {
            netns: Some(fd.clone()),
            ..spec(n, eth0.index)
        })
        .unwrap();
    }
    let names: Vec<String> = c
        .handle()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(
        names.contains(&"a0".to_string()) && names.contains(&"a1".to_string()),
        "{names:?}"
    );
}

#[test]
fn duplicate_v6_fails_dad() {
    if !require_root("duplicate_v6_fails_dad") {
        return;
    }
    let (host, lan) = uplink_pair("dad").unwrap();
    let mut h = host.handle().unwrap();
    let mut l = lan.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap().index;
    let up0 = l.link_by_name("up0").unwrap().index;
    let dup = net("2001:db8:2::99/64");
    l.add_addr(up0, dup).unwrap();
    l.settle_addrs(up0, std::time::Duration::from_secs(10))
        .unwrap();
    h.add_addr(eth0, dup).unwrap();
    let e = h
        .settle_addrs(eth0, std::time::Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(e.errno(), Some(nix::errno::Errno::EADDRINUSE), "{e}");
    assert!(e.to_string().contains("2001:db8:2::99"), "{e}");
    let a = h
        .addrs(Some(eth0))
        .unwrap()
        .into_iter()
        .find(|a| a.addr == dup)
        .unwrap();
    assert!(a.dad_failed && a.tentative, "{a:?}");
}
