#![allow(clippy::unwrap_used)]
//! The macvtap plugin against the real kernel. "The host" is a test namespace holding the
//! master `eth0` (a veth to a `lan` namespace); containers are further test namespaces.
//! Tap device nodes go to a per-container temp dir (a private /dev) except in the tests
//! that exercise the default `/dev`. Those hold `DEV_LOCK` and first push their host
//! namespace's ifindex counter far past what other tests' fresh namespaces use, since
//! devtmpfs names every macvtap's node `tap<ifindex>` whatever its namespace.

mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use macvnet_netlink::tap::{self, Offloads, TapLink, TapQueue};
use macvnet_netlink::testing::TestNs;
use macvnet_netlink::{self as nl, MacAddr, MacvlanSpec, Mode};
use serde_json::{json, Value};

const NET: &str = "mvtapnet";
static DEV_LOCK: Mutex<()> = Mutex::new(());

fn macvtap() -> Impl {
    Impl {
        name: "macvtap",
        plugin: PathBuf::from(env!("CARGO_BIN_EXE_macvtap")),
        cni_path: our_dir().display().to_string(),
    }
}

fn go(lab: &Lab, cmd: &str, c: Option<&TestNs>, conf: &Value) -> Outcome {
    let p = c.map(ns_path);
    run(lab, &macvtap(), &Call::new(cmd, p.as_deref()), conf)
}

fn direct(mode: &str) -> Value {
    json!({"cniVersion": "1.1.0", "name": NET, "type": "macvtap", "master": "eth0", "mode": mode})
}

fn with_prev(mut conf: Value, prev: &Value) -> Value {
    conf["prevResult"] = prev.clone();
    conf
}

/// (major, minor) of `name` in `ns`, and the file at `path`'s (rdev, uid, gid, mode).
fn node_facts(c: &TestNs, name: &str, path: &Path) -> (tap::TapDevice, std::fs::Metadata) {
    let dev = tap::resolve(&c.ns, &TapLink::Name(name.to_string())).unwrap();
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{} is not a char device",
        path.display()
    );
    assert_eq!(
        meta.rdev(),
        dev.rdev(),
        "{} has the wrong device number",
        path.display()
    );
    (dev, meta)
}

/// Push `ns`'s next ifindex to at least `past` (veth pairs made and deleted; bounded).
fn bump_ifindex(ns: &TestNs, past: u32) {
    let mut h = ns.handle().unwrap();
    for _ in 0..1000 {
        h.add_veth("bumpa", "bumpb", None).unwrap();
        let b = h.link_by_name("bumpb").unwrap();
        let a = h.link_by_name("bumpa").unwrap();
        h.del_link(a.index).unwrap();
        if b.index >= past {
            return;
        }
    }
    panic!("ifindex of {} did not reach {past}", ns.name);
}

fn dir_entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A macvtap `name` made "by a device plugin" on the host's eth0, txqueuelen 0.
fn device_plugin_macvtap(lab: &Lab, name: &str) -> nl::LinkInfo {
    let mut h = lab.host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&MacvlanSpec {
        name: name.to_string(),
        parent: eth0.index,
        tap: true,
        mode: Some(Mode::Bridge),
        txqlen: Some(0),
        ..Default::default()
    })
    .unwrap();
    h.link_by_name(name).unwrap()
}

/// A bridge-mode macvlan `mv0` on the host's eth0, inside `peer`, with `addr`, up.
fn peer_macvlan(lab: &Lab, peer: &TestNs, addr: &str) -> nl::LinkInfo {
    let mut h = lab.host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&MacvlanSpec {
        name: "mv0".to_string(),
        parent: eth0.index,
        mode: Some(Mode::Bridge),
        netns: Some(Arc::new(peer.ns.open().unwrap())),
        up: true,
        ..Default::default()
    })
    .unwrap();
    let mut p = peer.handle().unwrap();
    let mv0 = p.link_by_name("mv0").unwrap();
    p.add_addr(mv0.index, addr.parse().unwrap()).unwrap();
    mv0
}

fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip.octets());
    f
}

/// Write ARP requests into the queue until the peer's reply is read back (8 s at most).
fn arp_through(q: &TapQueue, tap_mac: MacAddr, from: Ipv4Addr, to: Ipv4Addr) -> tap::ArpSummary {
    let req = arp_request(tap_mac, from, to);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        assert_eq!(q.send(&req).unwrap(), req.len());
        let resend = Instant::now() + Duration::from_secs(1);
        while Instant::now() < resend {
            let Some(n) = q.recv(&mut buf, Duration::from_millis(200)).unwrap() else {
                continue;
            };
            let s = tap::describe_frame(&buf[..n]);
            seen.push(s.to_string());
            if let Some(a) = s.arp {
                if a.op == 2 && a.target_ip == from && a.sender_ip == to {
                    return a;
                }
            }
        }
    }
    panic!("no ARP reply on the tap fd; saw {seen:?}");
}

#[test]
fn direct_every_mode_in_dev() {
    if !require("direct_every_mode_in_dev", false) {
        return;
    }
    let _dev = DEV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("mtmodes");
    bump_ifindex(&lab.host, 300);
    for (i, mode) in ["private", "vepa", "bridge", "passthru", "source"]
        .into_iter()
        .enumerate()
    {
        let c = lab.container(mode);
        let mac = format!("02:54:00:00:00:{:02x}", i + 1);
        let mut conf = direct(mode);
        conf["mtu"] = json!(1400);
        conf["mac"] = json!(mac);
        conf["owner"] = json!(4242);
        conf["group"] = json!(4343);
        conf["bcqueuelen"] = json!(77);
        let add = go(&lab, "ADD", Some(&c), &conf);
        add.expect_ok();
        let res = add.json();
        assert_eq!(res["interfaces"][0]["name"], "net1");
        assert_eq!(res["interfaces"][0]["mac"], mac.as_str());
        assert_eq!(res["interfaces"][0]["sandbox"], ns_path(&c));
        assert!(res.get("ips").is_none());

        let l = link(&c, "net1").unwrap();
        assert_eq!(l.kind, nl::LinkKind::Macvtap, "{mode}");
        let info = l.macvlan.clone().unwrap();
        assert_eq!(info.mode.to_string(), mode);
        assert!(info.tap);
        // The kernel keeps no broadcast queue length for passthru (no broadcast queue).
        if mode != "passthru" {
            assert_eq!(info.bcqueuelen, Some(77), "{mode}");
        }
        assert_eq!(l.mtu, 1400);
        assert_eq!(l.mac.unwrap().to_string(), mac);
        assert!(l.up);
        assert_ne!(l.txqlen, 0);
        assert_eq!(
            links(&lab.host),
            vec!["eth0".to_string()],
            "{mode}: nothing left in the host"
        );

        let path = PathBuf::from(format!("/dev/tap{}", l.index));
        let (_dev, meta) = node_facts(&c, "net1", &path);
        assert_eq!(
            (meta.uid(), meta.gid()),
            (4242, 4343),
            "{mode}: owner/group of {}",
            path.display()
        );

        go(&lab, "CHECK", Some(&c), &with_prev(conf.clone(), &res)).expect_ok();
        let other = if mode == "bridge" { "vepa" } else { "bridge" };
        let mut wrong = with_prev(conf.clone(), &res);
        wrong["mode"] = json!(other);
        let o = go(&lab, "CHECK", Some(&c), &wrong);
        assert!(!o.ok, "{mode}: CHECK with mode {other} passed");
        assert!(
            o.msg().contains("does not match expected value"),
            "{}",
            o.msg()
        );

        go(&lab, "DEL", Some(&c), &conf).expect_ok();
        assert!(link(&c, "net1").is_none(), "{mode}: link left after DEL");
        // devtmpfs removed its node with the link.
        assert!(!path.exists(), "{mode}: {} left after DEL", path.display());
        go(&lab, "DEL", Some(&c), &conf).expect_ok();
        assert_eq!(links(&lab.host), vec!["eth0".to_string()]);
    }
}

#[test]
fn private_dev_dir_node_and_frames_cross() {
    if !require("private_dev_dir_node_and_frames_cross", false) {
        return;
    }
    let lab = Lab::new("mtpriv");
    let peer = lab.container("peer");
    let mv0 = peer_macvlan(&lab, &peer, "198.18.7.2/24");
    for key in ["devDir", "runtimeConfig"] {
        let c = lab.container(key);
        let devdir = lab.data_dir(&format!("dev-{key}"));
        let mut conf = direct("bridge");
        conf["owner"] = json!(1001);
        conf["group"] = json!(1002);
        if key == "devDir" {
            conf["devDir"] = json!(devdir);
        } else {
            conf["devDir"] = json!("/nonexistent-is-overridden");
            conf["runtimeConfig"] = json!({"devDir": devdir});
        }
        let add = go(&lab, "ADD", Some(&c), &conf);
        add.expect_ok();
        let res = add.json();
        let l = link(&c, "net1").unwrap();
        let path = devdir.join(format!("tap{}", l.index));
        assert_eq!(dir_entries(&devdir), vec![format!("tap{}", l.index)]);
        let (dev, meta) = node_facts(&c, "net1", &path);
        assert_eq!((meta.uid(), meta.gid()), (1001, 1002));
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        eprintln!("{key}: {} is {}:{}", path.display(), dev.major, dev.minor);
        go(&lab, "CHECK", Some(&c), &with_prev(conf.clone(), &res)).expect_ok();

        // Frames cross: through the node we made, an ARP request out and the peer's reply back.
        let fds = tap::open_queues(&path, 1, false, Offloads::default()).unwrap();
        let q = TapQueue::from(fds.into_iter().next().unwrap());
        let a = arp_through(
            &q,
            l.mac.unwrap(),
            Ipv4Addr::new(198, 18, 7, 10),
            Ipv4Addr::new(198, 18, 7, 2),
        );
        assert_eq!(Some(a.sender_mac), mv0.mac);
        assert_eq!(a.target_mac, l.mac.unwrap());
        drop(q);

        // CHECK notices a node with the wrong owner.
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        let o = go(&lab, "CHECK", Some(&c), &with_prev(conf.clone(), &res));
        assert!(o.msg().contains("is owned by 0:0"), "{}", o.stdout);

        go(&lab, "DEL", Some(&c), &conf).expect_ok();
        assert!(link(&c, "net1").is_none());
        assert!(
            dir_entries(&devdir).is_empty(),
            "node left after DEL: {:?}",
            dir_entries(&devdir)
        );
        go(&lab, "DEL", Some(&c), &conf).expect_ok();
    }
}

#[test]
fn ipam_host_local_address_on_the_macvtap() {
    if !require("ipam_host_local_address_on_the_macvtap", false) {
        return;
    }
    let lab = Lab::new("mtipam");
    let c = lab.container("c");
    let data = lab.data_dir("store");
    let devdir = lab.data_dir("dev");
    let mut conf = direct("vepa");
    conf["devDir"] = json!(devdir);
    conf["ipam"] = json!({"type": "host-local", "dataDir": data, "subnet": "198.18.12.0/24",
                          "routes": [{"dst": "198.19.0.0/16"}]});
    let add = go(&lab, "ADD", Some(&c), &conf);
    add.expect_ok();
    let res = add.json();
    assert_eq!(res["ips"][0]["address"], "198.18.12.2/24");
    assert_eq!(res["ips"][0]["interface"], 0);
    let v = view(&c, "net1");
    assert_eq!(v.kind, "Macvtap");
    assert_eq!(v.addrs, vec!["198.18.12.2/24".to_string()]);
    assert!(
        v.routes
            .iter()
            .any(|r| r.starts_with("198.19.0.0/16 via Some(198.18.12.1)")),
        "{:?}",
        v.routes
    );
    assert_eq!(store_ips(&data, NET), vec!["198.18.12.2".to_string()]);
    go(&lab, "CHECK", Some(&c), &with_prev(conf.clone(), &res)).expect_ok();
    let mut bad_ip = res.clone();
    bad_ip["ips"][0]["address"] = json!("198.18.12.99/24");
    let o = go(&lab, "CHECK", Some(&c), &with_prev(conf.clone(), &bad_ip));
    assert!(o.msg().contains("Failed to match addr"), "{}", o.stdout);
    go(&lab, "DEL", Some(&c), &conf).expect_ok();
    assert!(store_ips(&data, NET).is_empty());
    assert!(link(&c, "net1").is_none());
    assert!(dir_entries(&devdir).is_empty());
    go(&lab, "DEL", Some(&c), &conf).expect_ok();
}

#[test]
fn kubevirt_device_id_flow() {
    if !require("kubevirt_device_id_flow", false) {
        return;
    }
    let lab = Lab::new("mtkv");
    let c = lab.container("c");
    let devdir = lab.data_dir("dev");
    let orig = device_plugin_macvtap(&lab, "dev500");
    assert_eq!(orig.txqlen, 0);
    // As KubeVirt writes it: no master, no mode; owner/group default to qemu's 107.
    let conf = json!({"cniVersion": "0.4.0", "name": NET, "type": "macvtap", "deviceID": "dev500",
                      "mtu": 1400, "promiscMode": true, "devDir": devdir});
    let call =
        Call::new("ADD", Some(&ns_path(&c))).args("IgnoreUnknown=true;MAC=02:54:00:aa:bb:cc");
    let add = run(&lab, &macvtap(), &call, &conf);
    add.expect_ok();
    let res = add.json();
    assert_eq!(res["cniVersion"], "0.4.0");
    assert_eq!(res["interfaces"][0]["mac"], "02:54:00:aa:bb:cc");
    assert!(
        link(&lab.host, "dev500").is_none(),
        "device still in the host"
    );
    let l = link(&c, "net1").unwrap();
    assert_eq!(l.kind, nl::LinkKind::Macvtap);
    assert_eq!(l.macvlan.as_ref().unwrap().mode, Mode::Bridge);
    assert_eq!(l.mtu, 1400);
    assert_eq!(l.mac.unwrap().to_string(), "02:54:00:aa:bb:cc");
    assert!(l.promisc);
    assert!(l.up);
    assert_eq!(l.txqlen, 1000, "txqueuelen 0 raised");
    let path = devdir.join(format!("tap{}", l.index));
    let (_dev, meta) = node_facts(&c, "net1", &path);
    assert_eq!((meta.uid(), meta.gid()), (107, 107));
    go(&lab, "CHECK", Some(&c), &with_prev(conf.clone(), &res)).expect_ok();
    let mut wrong_mode = with_prev(conf.clone(), &res);
    wrong_mode["mode"] = json!("private");
    assert!(!go(&lab, "CHECK", Some(&c), &wrong_mode).ok);
    let mut wrong_mtu = with_prev(conf.clone(), &res);
    wrong_mtu["mtu"] = json!(1300);
    assert!(!go(&lab, "CHECK", Some(&c), &wrong_mtu).ok);

    // DEL removes the link, as kubevirt's plugin does (its device plugin makes a new one).
    go(&lab, "DEL", Some(&c), &conf).expect_ok();
    assert!(link(&c, "net1").is_none());
    assert!(link(&lab.host, "dev500").is_none());
    assert!(dir_entries(&devdir).is_empty());
    go(&lab, "DEL", Some(&c), &conf).expect_ok();

    // A newer kubevirt device plugin names the host link mvt<xxhash64(deviceID)>.
    let hashed =
        macvnet_plugins::macvtap::kubevirt_iface_name("macvtap.network.kubevirt.io/eth0-7");
    device_plugin_macvtap(&lab, &hashed);
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvtap",
                      "deviceID": "macvtap.network.kubevirt.io/eth0-7", "devDir": devdir});
    go(&lab, "ADD", Some(&c), &conf).expect_ok();
    assert!(link(&lab.host, &hashed).is_none());
    assert_eq!(link(&c, "net1").unwrap().kind, nl::LinkKind::Macvtap);
    go(&lab, "DEL", Some(&c), &conf).expect_ok();
    assert!(link(&c, "net1").is_none());
    assert!(dir_entries(&devdir).is_empty());

    // Explicit owner/group win over the defaults; a device in /dev gets them too.
    let _dev = DEV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    bump_ifindex(&lab.host, 300);
    device_plugin_macvtap(&lab, "dev501");
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvtap", "deviceID": "dev501",
                      "owner": 0, "group": 36});
    go(&lab, "ADD", Some(&c), &conf).expect_ok();
    let l = link(&c, "net1").unwrap();
    let path = PathBuf::from(format!("/dev/tap{}", l.index));
    let (_dev, meta) = node_facts(&c, "net1", &path);
    assert_eq!((meta.uid(), meta.gid()), (0, 36));
    go(&lab, "DEL", Some(&c), &conf).expect_ok();
    assert!(link(&c, "net1").is_none());
    assert!(!path.exists());
}

#[test]
fn add_failures_leave_nothing() {
    if !require("add_failures_leave_nothing", false) {
        return;
    }
    let lab = Lab::new("mtfail");
    let c = lab.container("c");
    let devdir = lab.data_dir("dev");
    let data = lab.data_dir("store");
    let clean = |what: &str| {
        assert_eq!(
            links(&c),
            Vec::<String>::new(),
            "{what}: container not empty"
        );
        assert_eq!(
            links(&lab.host),
            vec!["eth0".to_string()],
            "{what}: host not as before"
        );
        assert!(
            dir_entries(&devdir).is_empty(),
            "{what}: node left: {:?}",
            dir_entries(&devdir)
        );
        assert!(store_ips(&data, NET).is_empty(), "{what}: address left");
    };
    let mut base = direct("bridge");
    base["devDir"] = json!(devdir);

    // IPAM fails after the link, its rename and its node exist.
    let mut conf = base.clone();
    conf["ipam"] = json!({"type": "host-local", "dataDir": data, "subnet": "198.18.300.0/24"});
    let o = go(&lab, "ADD", Some(&c), &conf);
    assert!(!o.ok);
    eprintln!("IPAM failure: {}", o.stdout);
    clean("IPAM error");

    // IPAM fails on the address step: IPAM ran, must be released.
    let mut conf = base.clone();
    conf["ipam"] = json!({"type": "host-local", "dataDir": data, "subnet": "198.18.13.0/24",
                          "routes": [{"dst": "198.19.0.0/16", "gw": "198.20.0.1"}]});
    let o = go(&lab, "ADD", Some(&c), &conf);
    assert!(!o.ok, "route via an unreachable gateway must fail");
    clean("route error");

    // No such IPAM plugin: refused before anything is made.
    let mut conf = base.clone();
    conf["ipam"] = json!({"type": "nosuch-ipam"});
    assert!(!go(&lab, "ADD", Some(&c), &conf).ok);
    clean("missing IPAM plugin");

    // Bad master, bad deviceID, too big an MTU: code 7.
    let mut conf = base.clone();
    conf["master"] = json!("nosuch0");
    assert_eq!(go(&lab, "ADD", Some(&c), &conf).code(), 7);
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvtap", "deviceID": "nosuchdev", "devDir": devdir});
    let o = go(&lab, "ADD", Some(&c), &conf);
    assert_eq!(o.code(), 7, "{}", o.stdout);
    assert!(o.msg().contains("nosuchdev"), "{}", o.msg());
    let mut conf = base.clone();
    conf["mtu"] = json!(9000);
    assert_eq!(go(&lab, "ADD", Some(&c), &conf).code(), 7);
    clean("config errors");

    // CNI_IFNAME taken in the container.
    {
        let lan_fd = lab.lan.ns.open().unwrap();
        let mut h = c.handle().unwrap();
        h.add_veth("net1", "cpeer", Some(std::os::fd::AsFd::as_fd(&lan_fd)))
            .unwrap();
    }
    let o = go(&lab, "ADD", Some(&c), &base);
    assert!(!o.ok);
    assert_eq!(links(&c), vec!["net1".to_string()]);
    assert_eq!(link(&c, "net1").unwrap().kind, nl::LinkKind::Veth);
    {
        let mut h = c.handle().unwrap();
        let l = h.link_by_name("net1").unwrap();
        h.del_link(l.index).unwrap();
    }
    clean("ifname taken");

    // The device node path holds something else: never overwritten, ADD fails cleanly.
    // The macvtap will get the container's next ifindex; fill a range of names.
    let mut squat = Vec::new();
    for n in 1..64 {
        let p = devdir.join(format!("tap{n}"));
        std::fs::write(&p, b"not a device").unwrap();
        squat.push(p);
    }
    let o = go(&lab, "ADD", Some(&c), &base);
    assert!(!o.ok, "ADD over a squatted node succeeded");
    assert!(o.msg().contains("not char device"), "{}", o.msg());
    for p in &squat {
        assert_eq!(std::fs::read(p).unwrap(), b"not a device");
        std::fs::remove_file(p).unwrap();
    }
    clean("node squatted");

    // deviceID + IPAM failure: the device goes back to the host as it was.
    let orig = device_plugin_macvtap(&lab, "dev600");
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvtap", "deviceID": "dev600",
                      "mtu": 1300, "promiscMode": true, "mac": "02:54:00:00:06:00", "devDir": devdir,
                      "ipam": {"type": "host-local", "dataDir": data, "subnet": "198.18.300.0/24"}});
    let o = go(&lab, "ADD", Some(&c), &conf);
    assert!(!o.ok);
    let back = link(&lab.host, "dev600").expect("device back in the host");
    assert_eq!(back.kind, nl::LinkKind::Macvtap);
    assert_eq!(back.mtu, orig.mtu);
    assert_eq!(back.mac, orig.mac);
    assert_eq!(back.txqlen, orig.txqlen);
    assert_eq!(back.promisc, orig.promisc);
    assert_eq!(back.up, orig.up);
    assert_eq!(links(&c), Vec::<String>::new());
    assert!(dir_entries(&devdir).is_empty());
    let mut h = lab.host.handle().unwrap();
    h.del_link(back.index).unwrap();
    clean("deviceID + IPAM error");
}

#[test]
fn del_without_add_gone_netns_and_status_gc() {
    if !require("del_without_add_gone_netns_and_status_gc", false) {
        return;
    }
    let lab = Lab::new("mtdel");
    let c = lab.container("c");
    let data = lab.data_dir("store");
    let devdir = lab.data_dir("dev");
    let mut conf = direct("bridge");
    conf["devDir"] = json!(devdir);
    conf["ipam"] = json!({"type": "host-local", "dataDir": data,
                          "ranges": [[{"subnet": "198.18.14.0/24", "rangeStart": "198.18.14.10", "rangeEnd": "198.18.14.11"}]]});
    go(&lab, "DEL", Some(&c), &conf).expect_ok();
    let gone = format!("/run/netns/mvt-{}-gone", std::process::id());
    run(&lab, &macvtap(), &Call::new("DEL", Some(&gone)), &conf).expect_ok();
    go(&lab, "DEL", None, &conf).expect_ok();

    go(&lab, "STATUS", None, &conf).expect_ok();
    let c2 = lab.container("c2");
    // Each container its own /dev, as a runtime passes it.
    let dev_b = lab.data_dir("dev-b");
    let mut conf_b = conf.clone();
    conf_b["runtimeConfig"] = json!({"devDir": dev_b});
    run(
        &lab,
        &macvtap(),
        &Call::new("ADD", Some(&ns_path(&c))).id("ctr-a"),
        &conf,
    )
    .expect_ok();
    run(
        &lab,
        &macvtap(),
        &Call::new("ADD", Some(&ns_path(&c2))).id("ctr-b"),
        &conf_b,
    )
    .expect_ok();
    assert_eq!(dir_entries(&devdir).len(), 1);
    assert_eq!(dir_entries(&dev_b).len(), 1);
    let st = go(&lab, "STATUS", None, &conf);
    assert_eq!(st.code(), 51, "range full: {}", st.stdout);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-a", "ifname": "net1"}]);
    go(&lab, "GC", None, &gc).expect_ok();
    assert_eq!(store_ips(&data, NET), vec!["198.18.14.10".to_string()]);
    let mut bad = conf.clone();
    bad["ipam"] = json!({"type": "nosuch-ipam"});
    assert!(!go(&lab, "STATUS", None, &bad).ok);
    for (ns, id, conf) in [(&c, "ctr-a", &conf), (&c2, "ctr-b", &conf_b)] {
        run(
            &lab,
            &macvtap(),
            &Call::new("DEL", Some(&ns_path(ns))).id(id),
            conf,
        )
        .expect_ok();
    }
    assert!(store_ips(&data, NET).is_empty());
    assert!(dir_entries(&devdir).is_empty());
    assert!(dir_entries(&dev_b).is_empty());
    // DEL with CNI_ARGS that ADD would refuse still removes the link.
    let mut l2 = direct("bridge");
    l2["devDir"] = json!(devdir);
    go(&lab, "ADD", Some(&c), &l2).expect_ok();
    let del = Call::new("DEL", Some(&ns_path(&c))).args("MAC=zz");
    run(&lab, &macvtap(), &del, &l2).expect_ok();
    assert!(link(&c, "net1").is_none());
    // It looked for the node in /dev, so ours in devDir stays: remove it by hand.
    for n in dir_entries(&devdir) {
        std::fs::remove_file(devdir.join(n)).unwrap();
    }

    let v = run(
        &lab,
        &macvtap(),
        &Call::new("VERSION", None),
        &json!({"cniVersion": "1.1.0"}),
    );
    assert!(v.expect_ok().json()["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.1.0")));
}
