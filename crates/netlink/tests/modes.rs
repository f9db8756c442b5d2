//! macvlan mode semantics proven by traffic on the real kernel.
//!
//! Topology (every namespace made here and deleted by its guard):
//! `host` holds the parent `eth0` (a veth); its peer `up0` sits in `lan` (or, for the hairpin
//! switch, is a port of bridge `br0` there) with the gateway address 198.18.N.1/24. Each
//! macvlan child is created from `host` directly into its own namespace (IFLA_NET_NS_FD),
//! addressed 198.18.N.1x/24 and up. Reachability is checked with in-process ICMP echo.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::testing::{add_macvlan_in, require_root, set_up, uplink_pair, TestNs};
use nl::{icmp, LinkChange, MacAddr, MacvlanSpec, Mode, SourceMacOp};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A reply on a veth takes well under a millisecond once ARP is resolved; 3 tries of 2 s
/// leave room for ARP (and its retries) on a loaded machine.
fn reaches(from: &TestNs, dst: &str) -> bool {
    let r = icmp::ping(&from.ns, ip(dst), 3, Duration::from_secs(2)).unwrap();
    r.replied
}

/// The negative probe: 2 tries of 1 s. Nothing on these paths is slower than ARP's first
/// answer (milliseconds), so silence for 2 s is a real "no path".
fn blocked(from: &TestNs, dst: &str) -> bool {
    let r = icmp::ping(&from.ns, ip(dst), 2, Duration::from_secs(1)).unwrap();
    !r.replied
}

fn up(h: &mut nl::Handle, name: &str) -> u32 {
    let l = h.link_by_name(name).unwrap();
    set_up(h, l.index, true).unwrap();
    l.index
}

fn add_addr(ns: &TestNs, ifname: &str, cidr: &str) {
    let mut h = ns.handle().unwrap();
    let idx = h.link_by_name(ifname).unwrap().index;
    h.add_addr(idx, cidr.parse::<IpNet>().unwrap()).unwrap();
}

/// Creates `name` on `parent` in `host` directly inside `into`, up, with `cidr` on it.
fn child(
    host: &TestNs,
    parent: &str,
    into: &TestNs,
    name: &str,
    mode: Mode,
    cidr: &str,
    tweak: impl FnOnce(&mut MacvlanSpec),
) -> nl::Result<nl::LinkInfo> {
    let info = add_macvlan_in(host, parent, into, name, mode, tweak)?;
    let mut c = into.handle()?;
    c.add_addr(
        info.index,
        cidr.parse::<IpNet>()
            .map_err(|e| nl::Error::Invalid(e.to_string()))?,
    )?;
    c.link_by_name(name)
}

/// [`child`] on `host`'s eth0 without tweaks, which must succeed.
fn plain_child(host: &TestNs, into: &TestNs, name: &str, mode: Mode, cidr: &str) -> nl::LinkInfo {
    child(host, "eth0", into, name, mode, cidr, |_| {}).unwrap()
}

/// Namespaces `<tag>-c1` and `<tag>-c2` holding plain `mode` children mv1 (`cidr1`) and mv2
/// (`cidr2`).
fn two_children(
    host: &TestNs,
    tag: &str,
    mode: Mode,
    cidr1: &str,
    cidr2: &str,
) -> (TestNs, TestNs) {
    let c1 = TestNs::new(&format!("{tag}-c1")).unwrap();
    let c2 = TestNs::new(&format!("{tag}-c2")).unwrap();
    plain_child(host, &c1, "mv1", mode, cidr1);
    plain_child(host, &c2, "mv2", mode, cidr2);
    (c1, c2)
}

/// Root check plus a throwaway macvlan on the fresh uplink: skips (prints why) when the
/// kernel has no macvlan. Returns (host, lan) with the gateway `gw` on lan's up0.
fn setup(test: &str, tag: &str, gw: &str) -> Option<(TestNs, TestNs)> {
    if !require_root(test) {
        return None;
    }
    let (host, lan) = uplink_pair(tag).unwrap();
    let mut h = host.handle().unwrap();
    let parent = h.link_by_name("eth0").unwrap().index;
    let probe = MacvlanSpec {
        name: "mvprobe".into(),
        parent,
        ..Default::default()
    };
    if let Err(e) = h.add_macvlan(&probe) {
        if e.errno() == Some(nix::errno::Errno::EOPNOTSUPP) {
            eprintln!("SKIP {test}: kernel has no macvlan ({e})");
            return None;
        }
        panic!("probe macvlan: {e}");
    }
    let idx = h.link_by_name("mvprobe").unwrap().index;
    h.del_link(idx).unwrap();
    if !gw.is_empty() {
        add_addr(&lan, "up0", gw);
    }
    Some((host, lan))
}

#[test]
fn bridge_children_talk_parent_cannot() {
    let Some((host, lan)) = setup("modes::bridge", "mbr", "198.18.1.1/24") else {
        return;
    };
    let (c1, c2) = two_children(
        &host,
        "mbr",
        Mode::Bridge,
        "198.18.1.11/24",
        "198.18.1.12/24",
    );
    add_addr(&host, "eth0", "198.18.1.2/24");

    assert!(reaches(&c1, "198.18.1.12"), "bridge: child 1 -> child 2");
    assert!(reaches(&c2, "198.18.1.11"), "bridge: child 2 -> child 1");
    assert!(reaches(&c1, "198.18.1.1"), "bridge: child -> gateway");
    assert!(reaches(&c2, "198.18.1.1"), "bridge: child -> gateway");
    assert!(reaches(&host, "198.18.1.1"), "parent -> gateway");
    // The documented limitation: frames the parent sends go straight out of eth0 (never
    // through the macvlan rx handler), and children's frames are not looped back into the
    // parent's own stack, so parent and children are strangers in both directions.
    assert!(
        blocked(&host, "198.18.1.11"),
        "parent must not reach its bridge child"
    );
    assert!(
        blocked(&c1, "198.18.1.2"),
        "bridge child must not reach its parent"
    );
    let _ = lan;
}

#[test]
fn bridge_children_talk_ipv6() {
    let Some((host, _lan)) = setup("modes::bridge_v6", "mb6", "") else {
        return;
    };
    let (c1, c2) = two_children(
        &host,
        "mb6",
        Mode::Bridge,
        "2001:db8:1::11/64",
        "2001:db8:1::12/64",
    );
    // IPv6 addresses are tentative until DAD finishes (about a second); sending from one fails.
    for ns in [&c1, &c2] {
        let mut h = ns.handle().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.addrs(None).unwrap().iter().any(|a| a.tentative) {
            assert!(Instant::now() < deadline, "DAD did not finish in 10 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!h.addrs(None).unwrap().iter().any(|a| a.dad_failed));
    }
    assert!(reaches(&c1, "2001:db8:1::12"));
    assert!(reaches(&c2, "2001:db8:1::11"));
    // Link-local needs an interface: ping_via supplies it.
    let ll2 = c2
        .handle()
        .unwrap()
        .addrs(None)
        .unwrap()
        .into_iter()
        .find(|a| a.scope == 253)
        .unwrap();
    let r = icmp::ping_via(
        &c1.ns,
        Some("mv1"),
        ll2.addr.addr(),
        3,
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(r.replied, "link-local {} via mv1: {r:?}", ll2.addr);
}

/// Turns `lan` into a hairpin switch: bridge br0 with up0 as its port, hairpin on, gateway on br0.
fn make_hairpin_switch(lan: &TestNs, gw: &str) {
    let mut l = lan.handle().unwrap();
    l.add_bridge("br0").unwrap();
    let br = up(&mut l, "br0");
    let port = l.link_by_name("up0").unwrap().index;
    l.set_link(
        port,
        &LinkChange {
            controller: Some(br),
            ..Default::default()
        },
    )
    .unwrap();
    l.set_hairpin(port, true).unwrap();
    assert!(l.hairpin(port).unwrap(), "hairpin reads back on");
    add_addr(lan, "br0", gw);
}

#[test]
fn private_children_isolated_even_through_hairpin() {
    let Some((host, lan)) = setup("modes::private", "mpr", "198.18.2.1/24") else {
        return;
    };
    let (c1, c2) = two_children(
        &host,
        "mpr",
        Mode::Private,
        "198.18.2.11/24",
        "198.18.2.12/24",
    );
    assert!(reaches(&c1, "198.18.2.1"), "private: child -> gateway");
    assert!(reaches(&c2, "198.18.2.1"), "private: child -> gateway");
    assert!(
        blocked(&c1, "198.18.2.12"),
        "private: children must not reach each other"
    );

    // Unlike vepa, private stays isolated when the switch reflects frames: a broadcast that
    // comes back with a private sibling's source MAC is handed only to that sibling
    // (macvlan_handle_frame), so ARP between siblings never resolves.
    let mut l = lan.handle().unwrap();
    let up0 = l.link_by_name("up0").unwrap().index;
    l.del_addr(up0, "198.18.2.1/24".parse().unwrap()).unwrap();
    make_hairpin_switch(&lan, "198.18.2.1/24");
    assert!(
        reaches(&c1, "198.18.2.1"),
        "private: child -> gateway on the switch"
    );
    assert!(
        blocked(&c1, "198.18.2.12"),
        "private: isolated even through a hairpin switch"
    );
}

#[test]
fn vepa_needs_a_hairpin_switch() {
    let Some((host, lan)) = setup("modes::vepa", "mve", "198.18.3.1/24") else {
        return;
    };
    let (c1, _c2) = two_children(&host, "mve", Mode::Vepa, "198.18.3.11/24", "198.18.3.12/24");
    assert!(reaches(&c1, "198.18.3.1"), "vepa: child -> gateway");
    // Plain veth uplink: all child traffic leaves through eth0 and nothing sends it back.
    assert!(
        blocked(&c1, "198.18.3.12"),
        "vepa without hairpin: children must not meet"
    );
    let _ = lan;
}

#[test]
fn vepa_through_hairpin_switch() {
    let Some((host, lan)) = setup("modes::vepa_hairpin", "mvh", "") else {
        return;
    };
    make_hairpin_switch(&lan, "198.18.4.1/24");
    let (c1, c2) = two_children(&host, "mvh", Mode::Vepa, "198.18.4.11/24", "198.18.4.12/24");
    // The bridge sends frames back out of the port they came in on (hairpin), eth0 receives
    // them and macvlan delivers by destination MAC: vepa children meet via the switch.
    assert!(
        reaches(&c1, "198.18.4.12"),
        "vepa + hairpin: child 1 -> child 2"
    );
    assert!(
        reaches(&c2, "198.18.4.11"),
        "vepa + hairpin: child 2 -> child 1"
    );
    assert!(
        reaches(&c1, "198.18.4.1"),
        "vepa + hairpin: child -> gateway on br0"
    );

    // And hairpin is what makes it work: with it off the bridge never sends a frame back
    // out of its ingress port, so even with ARP entries cached the children lose each other.
    let mut l = lan.handle().unwrap();
    let port = l.link_by_name("up0").unwrap().index;
    l.set_hairpin(port, false).unwrap();
    assert!(!l.hairpin(port).unwrap());
    assert!(
        reaches(&c1, "198.18.4.1"),
        "vepa, hairpin off: gateway still reachable"
    );
    assert!(
        blocked(&c1, "198.18.4.12"),
        "vepa with hairpin off: children must not meet"
    );
}

#[test]
fn passthru_one_child_and_promiscuity() {
    let Some((host, _lan)) = setup("modes::passthru", "mpt", "198.18.5.1/24") else {
        return;
    };
    let c1 = TestNs::new("mpt-c1").unwrap();
    let c2 = TestNs::new("mpt-c2").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    assert_eq!(eth0.promiscuity, 0, "fresh veth is not promiscuous");

    child(
        &host,
        "eth0",
        &c1,
        "mv1",
        Mode::Passthru,
        "198.18.5.11/24",
        |s| s.nopromisc = true,
    )
    .unwrap();
    assert!(reaches(&c1, "198.18.5.1"), "passthru child -> gateway");
    let e = h.link_by_name("eth0").unwrap();
    assert_eq!(e.promiscuity, 0, "nopromisc: parent promiscuity stays 0");
    assert!(!e.promisc);

    // A passthru port takes exactly one child: a second passthru (or any) child fails.
    let second = child(
        &host,
        "eth0",
        &c2,
        "mv2",
        Mode::Passthru,
        "198.18.5.12/24",
        |_| {},
    );
    let err = second.expect_err("second passthru child on one parent must fail");
    assert!(
        err.errno().is_some(),
        "kernel refusal, not a local error: {err}"
    );
    let other = child(
        &host,
        "eth0",
        &c2,
        "mv2",
        Mode::Bridge,
        "198.18.5.12/24",
        |_| {},
    );
    assert!(other.is_err(), "no bridge child beside a passthru one");

    // Without nopromisc, opening the passthru child raises the parent's promiscuity counter.
    // IFF_PROMISC in the reported flags stays off: dev_get_flags() shows only the promisc the
    // user asked for (gflags), not the counter's effect; `ip link` shows "promiscuity 1".
    let mut c = c1.handle().unwrap();
    let idx = c.link_by_name("mv1").unwrap().index;
    c.del_link(idx).unwrap();
    plain_child(&host, &c1, "mv1", Mode::Passthru, "198.18.5.11/24");
    let e = h.link_by_name("eth0").unwrap();
    assert_eq!(
        e.promiscuity, 1,
        "passthru without nopromisc: parent promiscuity 1"
    );
    assert!(!e.promisc, "IFF_PROMISC reports only the user's setting");
    assert!(reaches(&c1, "198.18.5.1"), "passthru child -> gateway");
    // Bringing the child down drops the counter again (macvlan_stop).
    let mut c = c1.handle().unwrap();
    let idx = c.link_by_name("mv1").unwrap().index;
    set_up(&mut c, idx, false).unwrap();
    assert_eq!(h.link_by_name("eth0").unwrap().promiscuity, 0);
}

#[test]
fn source_mode_receives_only_from_listed_macs() {
    let Some((host, lan)) = setup("modes::source", "msr", "") else {
        return;
    };
    // Two senders on the lan side with known MACs: bridge-mode macvlans on up0, each in its
    // own namespace so each ping leaves from exactly one of them.
    let s1 = TestNs::new("msr-s1").unwrap();
    let s2 = TestNs::new("msr-s2").unwrap();
    let m1: MacAddr = "02:00:5e:10:00:01".parse().unwrap();
    let m2: MacAddr = "02:00:5e:10:00:02".parse().unwrap();
    child(
        &lan,
        "up0",
        &s1,
        "snd1",
        Mode::Bridge,
        "198.18.6.21/24",
        |s| s.mac = Some(m1),
    )
    .unwrap();
    child(
        &lan,
        "up0",
        &s2,
        "snd2",
        Mode::Bridge,
        "198.18.6.22/24",
        |s| s.mac = Some(m2),
    )
    .unwrap();

    let c = TestNs::new("msr-c").unwrap();
    let info = child(
        &host,
        "eth0",
        &c,
        "src0",
        Mode::Source,
        "198.18.6.10/24",
        |s| s.source_macs = vec![m1],
    )
    .unwrap();
    assert_eq!(info.macvlan.as_ref().unwrap().source_macs, vec![m1]);

    // Kernel behaviour (drivers/net/macvlan.c): for every frame arriving on the parent,
    // macvlan_forward_source() hands a copy to each source-mode child whose list holds the
    // frame's *source* MAC (PACKET_HOST when addressed to the child's MAC). Otherwise a
    // source-mode child gets nothing: broadcasts from outside go only to private/vepa/
    // bridge/passthru children, and a unicast lookup that lands on a source-mode child
    // returns RX_HANDLER_PASS (the parent keeps the frame and drops it as not its own).
    // So the listed sender's ARP request and echo request reach the child; the unlisted
    // sender's never do, even though it knows nothing more or less than the other.
    assert!(
        reaches(&s1, "198.18.6.10"),
        "listed MAC reaches the source-mode child"
    );
    assert!(
        blocked(&s2, "198.18.6.10"),
        "unlisted MAC must not reach the source-mode child"
    );

    // The list is live: add s2, and it gets through; remove s1, and it no longer does
    // (s1's ARP entry for the child is still valid, so this is the unicast path failing).
    let mut h = c.handle().unwrap();
    h.set_source_macs(info.index, SourceMacOp::Add, &[m2])
        .unwrap();
    assert!(
        reaches(&s2, "198.18.6.10"),
        "newly listed MAC reaches the child"
    );
    h.set_source_macs(info.index, SourceMacOp::Del, &[m1])
        .unwrap();
    assert_eq!(
        h.link_by_name("src0").unwrap().macvlan.unwrap().source_macs,
        vec![m2]
    );
    assert!(blocked(&s1, "198.18.6.10"), "removed MAC is cut off");
}

#[test]
fn promisc_flag_set_and_cleared() {
    let Some((host, _lan)) = setup("modes::promisc", "mpm", "") else {
        return;
    };
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap().index;
    assert_eq!(h.link_by_index(eth0).unwrap().promiscuity, 0);
    let c1 = TestNs::new("mpm-c1").unwrap();
    let info = plain_child(&host, &c1, "mv1", Mode::Bridge, "198.18.7.11/24");
    assert!(!info.promisc);
    // A non-passthru child adds its MAC to the parent's unicast list (dev_uc_add); veth has no
    // unicast filter (no IFF_UNICAST_FLT), so the core puts it in promiscuous mode instead.
    let base = h.link_by_index(eth0).unwrap();
    assert_eq!(
        base.promiscuity, 1,
        "veth parent of an up child: uc_promisc"
    );
    assert!(!base.promisc, "that is not the user's IFF_PROMISC");

    let mut c = c1.handle().unwrap();
    for (idx, handle, what, before) in [
        (info.index, &mut c, "macvlan child", 0),
        (eth0, &mut h, "parent", base.promiscuity),
    ] {
        handle
            .set_link(
                idx,
                &LinkChange {
                    promisc: Some(true),
                    ..Default::default()
                },
            )
            .unwrap();
        let l = handle.link_by_index(idx).unwrap();
        assert!(l.promisc, "{what}: IFF_PROMISC after promisc on");
        assert_ne!(l.flags & libc::IFF_PROMISC as u32, 0);
        assert_eq!(
            l.promiscuity,
            before + 1,
            "{what}: promiscuity counter raised by one"
        );
        handle
            .set_link(
                idx,
                &LinkChange {
                    promisc: Some(false),
                    ..Default::default()
                },
            )
            .unwrap();
        let l = handle.link_by_index(idx).unwrap();
        assert!(!l.promisc, "{what}: IFF_PROMISC cleared");
        assert_eq!(l.flags & libc::IFF_PROMISC as u32, 0);
        assert_eq!(l.promiscuity, before, "{what}: counter back");
    }
    // The child gone, the parent's unicast list is empty and uc_promisc is dropped.
    c.del_link(info.index).unwrap();
    assert_eq!(
        h.link_by_index(eth0).unwrap().promiscuity,
        0,
        "parent back to 0"
    );
}

/// Two bridge children sharing one namespace, the way the lab probes them: `ping_from` with
/// the source address reaches the sibling (locally, over lo), `ping_via` with the source
/// link does not (the request leaves on the wire and the sibling drops its own namespace's
/// source address as a martian); both reach the gateway.
#[test]
fn shared_namespace_probes() {
    let Some((host, _lan)) = setup("modes::shared_ns", "msh", "198.18.8.1/24") else {
        return;
    };
    let sh = TestNs::new("msh-sh").unwrap();
    plain_child(&host, &sh, "mv1", Mode::Bridge, "198.18.8.11/24");
    plain_child(&host, &sh, "mv2", Mode::Bridge, "198.18.8.12/24");
    let t = Duration::from_secs(1);
    let from = |src: &str, dst: &str, n| {
        icmp::ping_from(&sh.ns, Some(ip(src)), ip(dst), n, t)
            .unwrap()
            .replied
    };
    let via = |dev: &str, dst: &str, n| {
        icmp::ping_via(&sh.ns, Some(dev), ip(dst), n, t)
            .unwrap()
            .replied
    };
    assert!(via("mv1", "198.18.8.1", 3), "via mv1 -> gateway");
    assert!(via("mv2", "198.18.8.1", 3), "via mv2 -> gateway");
    assert!(from("198.18.8.12", "198.18.8.1", 3), "from .12 -> gateway");
    assert!(
        from("198.18.8.11", "198.18.8.12", 3),
        "from .11 -> sibling over lo"
    );
    assert!(
        !via("mv1", "198.18.8.12", 2),
        "via mv1 -> sibling: martian, no reply"
    );
    // With lo down the local path is gone too.
    let mut h = sh.handle().unwrap();
    let lo = h.link_by_name("lo").unwrap().index;
    set_up(&mut h, lo, false).unwrap();
    assert!(
        !from("198.18.8.11", "198.18.8.12", 2),
        "lo down: sibling unreachable"
    );
    assert!(
        !from("198.18.8.11", "198.18.8.11", 2),
        "lo down: self unreachable"
    );
}
