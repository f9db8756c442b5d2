#![allow(clippy::unwrap_used)]
//! Namespaces: add/list/del, the NetnsRef forms, run_in and command_in.

use macvnet_netlink as nl;
use nl::testing::{require_root, uplink_pair, TestNs};
use nl::{netns, Handle, LinkKind, NetnsRef};

#[test]
fn add_list_del() {
    if !require_root("add_list_del") {
        return;
    }
    let name = format!("mvt-{}-x-adddel", std::process::id());
    let ns = netns::add(&name).unwrap();
    assert!(netns::list().unwrap().contains(&name));
    // A second add of the same name fails with EEXIST.
    let again = netns::add(&name).unwrap_err();
    assert!(again.is_exists(), "{again}");
    // A fresh namespace holds only lo, and it is down (like `ip netns add`).
    let mut h = Handle::open(&ns).unwrap();
    let links = h.links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].kind, LinkKind::Loopback);
    assert!(!links[0].up);
    drop(h);
    netns::del(&name, false).unwrap();
    assert!(!netns::list().unwrap().contains(&name));
    assert!(netns::del(&name, false).is_err());
    netns::del(&name, true).unwrap();
}

#[test]
fn refs_named_path_pid() {
    if !require_root("refs_named_path_pid") {
        return;
    }
    let t = TestNs::new("refs").unwrap();
    let named = NetnsRef::Named(t.name.clone());
    let path = NetnsRef::Path(named.path());
    assert_eq!(named.id().unwrap(), path.id().unwrap());
    assert_ne!(named.id().unwrap(), NetnsRef::Current.id().unwrap());
    assert_eq!(named.label(), t.name);
    assert_eq!(NetnsRef::Pid(7).label(), "pid 7");

    // A process inside the namespace: its /proc/PID/ns/net is the same namespace.
    let mut child = netns::command_in(&named, "sleep")
        .unwrap()
        .arg("5")
        .spawn()
        .unwrap();
    let pid = NetnsRef::Pid(child.id());
    let same = pid.id();
    let mut h = Handle::open(&pid);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(same.unwrap(), named.id().unwrap());
    assert_eq!(h.as_mut().unwrap().links().unwrap().len(), 1);

    // run_in sees the namespace's own loopback index set and inode.
    let inner = netns::run_in(&path, || NetnsRef::Current.id().unwrap()).unwrap();
    assert_eq!(inner, named.id().unwrap());
    // The caller's thread did not move.
    assert_ne!(NetnsRef::Current.id().unwrap(), inner);

    // A missing name is a not-found error, from open and from Handle::open.
    let missing = NetnsRef::Named(format!("mvt-{}-nosuch", std::process::id()));
    assert!(missing.open().unwrap_err().is_not_found());
    assert!(Handle::open(&missing).unwrap_err().is_not_found());
    // Not a namespace file.
    assert!(NetnsRef::Path("/etc/hostname".into()).open().is_err());
    assert!(netns::add("bad/name").is_err());
}

#[test]
fn command_in_runs_inside() {
    if !require_root("command_in_runs_inside") {
        return;
    }
    let (host, _lan) = uplink_pair("cmd").unwrap();
    let out = netns::command_in(&host.ns, "cat")
        .unwrap()
        .arg("/proc/net/dev")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("eth0:"), "{text}");
}

#[test]
fn veth_across_namespaces() {
    if !require_root("veth_across_namespaces") {
        return;
    }
    let (host, lan) = uplink_pair("veth").unwrap();
    let mut h = host.handle().unwrap();
    let mut l = lan.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    let up0 = l.link_by_name("up0").unwrap();
    assert_eq!(eth0.kind, LinkKind::Veth);
    assert_eq!(up0.kind, LinkKind::Veth);
    assert!(eth0.up && up0.up);
    // The peer lives in another namespace: IFLA_LINK is its index there, with a netnsid.
    assert_eq!(eth0.parent_index, Some(up0.index));
    assert!(eth0.link_netnsid.is_some());
    // Nothing leaked into the root namespace.
    let mut root = Handle::current().unwrap();
    assert!(root
        .link_by_name("up0")
        .map(|l| l.kind != LinkKind::Veth || l.index != up0.index)
        .unwrap_or(true));
    // Deleting the lan namespace destroys the pair.
    drop(l);
    drop(lan);
    let mut gone = false;
    for _ in 0..50 {
        if h.link_by_name("eth0")
            .map(|_| false)
            .unwrap_or_else(|e| e.is_not_found())
        {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        gone,
        "eth0 still present after its peer's namespace was deleted"
    );
}
