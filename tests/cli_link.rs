//! `macvnet link` against the real kernel: add in every mode, show, set, move, source lists, del.
#![allow(clippy::unwrap_used)]

mod cli_support;
use cli_support::*;

#[test]
fn add_in_every_mode_and_show() {
    if !can_run("add_in_every_mode_and_show") {
        return;
    }
    let (host, _lan) = uplink_pair("lkmode").unwrap();
    let ns = host.name.as_str();
    for (name, mode) in [
        ("mvp", "private"),
        ("mvv", "vepa"),
        ("mvb", "bridge"),
        ("mvs", "source"),
    ] {
        ok(&[
            "-n", ns, "link", "add", name, "link", "eth0", "type", "macvlan", "mode", mode,
        ]);
        let d = info_data(ns, name);
        assert_eq!(d["mode"], mode, "{name}: {d}");
        let shown = json(&["-n", ns, "-j", "link", "show", name]);
        let s = &shown[0];
        assert_eq!(s["name"], name);
        assert_eq!(s["kind"], "macvlan");
        assert_eq!(s["macvlan"]["mode"], mode);
        assert_eq!(s["parent"], "eth0");
        assert_eq!(s["parent_netns"], ns);
        let text = ok(&["-n", ns, "link", "show", name]);
        assert!(
            text.contains(&format!("{name}@eth0")) && text.contains(&format!("mode {mode}")),
            "{text}"
        );
    }
    // No mode: the kernel default, vepa.
    ok(&[
        "-n", ns, "link", "add", "mvd", "link", "eth0", "type", "macvlan",
    ]);
    assert_eq!(info_data(ns, "mvd")["mode"], "vepa");

    // All options at once, and `up`; -j prints the created link.
    let created = json(&[
        "-n",
        ns,
        "-j",
        "link",
        "add",
        "mvo",
        "link",
        "eth0",
        "type",
        "macvlan",
        "mode",
        "bridge",
        "address",
        "02:00:c6:12:00:0b",
        "mtu",
        "1400",
        "bcqueuelen",
        "200",
        "bccutoff",
        "3",
        "up",
    ]);
    assert_eq!(created["name"], "mvo");
    assert_eq!(created["parent"], "eth0");
    assert_eq!(created["macvlan"]["mode"], "bridge");
    let l = ip_link(ns, "mvo").unwrap();
    assert_eq!(l["address"], "02:00:c6:12:00:0b");
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["linkinfo"]["info_data"]["bcqueuelen"], 200);
    assert!(flags(ns, "mvo").contains(&"UP".to_string()));
    let s = &json(&["-n", ns, "-j", "link", "show", "mvo"])[0];
    assert_eq!(s["macvlan"]["bccutoff"], 3);
    assert_eq!(s["mtu"], 1400);
    assert_eq!(s["up"], true);
    // iproute2's spelling bclim works too.
    ok(&[
        "-n", ns, "link", "add", "mvl", "link", "eth0", "type", "macvlan", "mode", "bridge",
        "bclim", "-1",
    ]);
    assert_eq!(
        json(&["-n", ns, "-j", "link", "show", "mvl"])[0]["macvlan"]["bccutoff"],
        -1
    );

    // macvtap: kind, /dev/tapN.
    ok(&[
        "-n", ns, "link", "add", "mvt0", "link", "eth0", "type", "macvtap", "mode", "bridge",
    ]);
    let l = ip_link(ns, "mvt0").unwrap();
    assert_eq!(l["linkinfo"]["info_kind"], "macvtap");
    let s = &json(&["-n", ns, "-j", "link", "show", "mvt0"])[0];
    assert_eq!(s["kind"], "macvtap");
    assert_eq!(s["tap_device"], format!("/dev/tap{}", l["ifindex"]));
    assert!(ok(&["-n", ns, "link", "show", "mvt0"]).contains("/dev/tap"));

    // Listing shows only macvlan/macvtap unless --all.
    let all: Vec<String> = json(&["-n", ns, "-j", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        all.contains(&"mvb".to_string()) && !all.contains(&"eth0".to_string()),
        "{all:?}"
    );
    assert!(ok(&["-n", ns, "link", "show", "--all"]).contains("eth0"));
}

#[test]
fn passthru_with_nopromisc_on_its_own_parent() {
    if !can_run("passthru_with_nopromisc_on_its_own_parent") {
        return;
    }
    let host = TestNs::new("lkpt").unwrap();
    let ns = host.name.as_str();
    host.handle().unwrap().add_veth("e1", "e1p", None).unwrap();
    ok(&[
        "-n",
        ns,
        "link",
        "add",
        "pt0",
        "link",
        "e1",
        "type",
        "macvtap",
        "mode",
        "passthru",
        "nopromisc",
    ]);
    let d = info_data(ns, "pt0");
    assert_eq!(d["mode"], "passthru");
    assert_eq!(d["nopromisc"], true);
    let s = &json(&["-n", ns, "-j", "link", "show", "pt0"])[0];
    assert_eq!(s["macvlan"]["nopromisc"], true);
    assert!(ok(&["-n", ns, "link", "show", "pt0"]).contains("nopromisc"));
}

#[test]
fn set_changes_are_visible() {
    if !can_run("set_changes_are_visible") {
        return;
    }
    let (host, _lan) = uplink_pair("lkset").unwrap();
    let ns = host.name.as_str();
    ok(&[
        "-n", ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    assert!(!flags(ns, "mv0").contains(&"UP".to_string()));
    ok(&["-n", ns, "link", "set", "mv0", "up"]);
    assert!(flags(ns, "mv0").contains(&"UP".to_string()));
    ok(&["-n", ns, "link", "set", "mv0", "down"]);
    assert!(!flags(ns, "mv0").contains(&"UP".to_string()));
    ok(&["-n", ns, "link", "set", "mv0", "promisc", "on"]);
    assert!(flags(ns, "mv0").contains(&"PROMISC".to_string()));
    assert!(ok(&["-n", ns, "link", "show", "mv0"]).contains("promisc on"));
    ok(&["-n", ns, "link", "set", "mv0", "promisc", "off"]);
    assert!(!flags(ns, "mv0").contains(&"PROMISC".to_string()));
    ok(&[
        "-n",
        ns,
        "link",
        "set",
        "mv0",
        "mtu",
        "1300",
        "address",
        "02:00:c6:12:00:21",
    ]);
    let l = ip_link(ns, "mv0").unwrap();
    assert_eq!(l["mtu"], 1300);
    assert_eq!(l["address"], "02:00:c6:12:00:21");
    let s = json(&["-n", ns, "-j", "link", "set", "mv0", "name", "web0", "up"]);
    assert_eq!(s["name"], "web0");
    assert!(ip_link(ns, "mv0").is_none());
    assert!(flags(ns, "web0").contains(&"UP".to_string()));
    // Too big an MTU is refused before the kernel is asked, and nothing changes.
    let e = fail(&["-n", ns, "link", "set", "web0", "mtu", "9000"]);
    assert!(e.contains("above parent eth0's mtu 1500"), "{e}");
    assert_eq!(ip_link(ns, "web0").unwrap()["mtu"], 1300);
    let e = fail(&["-n", ns, "link", "set", "web0", "promisc", "maybe"]);
    assert!(e.contains("on or off"), "{e}");
    let e = fail(&["-n", ns, "link", "set", "web0", "sideways"]);
    assert!(e.contains("unknown keyword"), "{e}");
    let e = fail(&["-n", ns, "link", "set", "nosuch", "up"]);
    assert!(e.contains("nosuch not found"), "{e}");
}

#[test]
fn move_between_namespaces_and_create_inside_one() {
    if !can_run("move_between_namespaces_and_create_inside_one") {
        return;
    }
    let (host, _lan) = uplink_pair("lkmv").unwrap();
    let other = TestNs::new("lkmv-c").unwrap();
    let ns = host.name.as_str();
    let ons = other.name.as_str();
    ok(&[
        "-n", ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    ok(&["-n", ns, "link", "set", "mv0", "netns", ons]);
    assert!(ip_link(ns, "mv0").is_none());
    let l = ip_link(ons, "mv0").unwrap();
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge");
    // The parent stays in the host namespace and is found through the netnsid.
    let s = &json(&["-n", ons, "-j", "link", "show", "mv0"])[0];
    assert_eq!(s["parent"], "eth0");
    assert_eq!(s["parent_netns"], ns);
    assert!(s["link_netnsid"].is_i64());

    // `netns NS` on add creates the child directly there.
    ok(&[
        "-n", ns, "link", "add", "mv1", "link", "eth0", "type", "macvlan", "mode", "bridge",
        "netns", ons, "up",
    ]);
    assert!(ip_link(ns, "mv1").is_none());
    assert!(flags(ons, "mv1").contains(&"UP".to_string()));
    // Name taken in the target namespace is caught before creating.
    let e = fail(&[
        "-n", ns, "link", "add", "mv1", "link", "eth0", "type", "macvlan", "netns", ons,
    ]);
    assert!(e.contains("mv1 is taken"), "{e}");
    assert!(ip_link(ns, "mv1").is_none());
    let e = fail(&[
        "-n",
        ns,
        "link",
        "add",
        "mv2",
        "link",
        "eth0",
        "type",
        "macvlan",
        "netns",
        "mvt-no-such-ns",
    ]);
    assert!(e.contains("mvt-no-such-ns not found"), "{e}");
    assert!(ip_link(ns, "mv2").is_none());
}

#[test]
fn source_list_operations() {
    if !can_run("source_list_operations") {
        return;
    }
    let (host, _lan) = uplink_pair("lksrc").unwrap();
    let ns = host.name.as_str();
    ok(&[
        "-n", ns, "link", "add", "ms0", "link", "eth0", "type", "macvlan", "mode", "source",
        "nodst",
    ]);
    assert_eq!(info_data(ns, "ms0")["nodst"], true);
    let macs = |ns: &str| -> Vec<String> {
        let mut v: Vec<String> = info_data(ns, "ms0")["macaddr_data"]
            .as_array()
            .map(|a| a.iter().map(|m| m.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let (a, b, c) = (
        "02:00:c6:12:00:01",
        "02:00:c6:12:00:02",
        "02:00:c6:12:00:03",
    );
    ok(&["-n", ns, "link", "source", "ms0", "add", a, b]);
    assert_eq!(macs(ns), vec![a, b]);
    ok(&["-n", ns, "link", "source", "ms0", "del", a]);
    assert_eq!(macs(ns), vec![b]);
    let listed = json(&["-n", ns, "-j", "link", "source", "ms0", "set", a, c]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(macs(ns), vec![a, c]);
    assert!(ok(&["-n", ns, "link", "show", "ms0"]).contains(c));
    ok(&["-n", ns, "link", "source", "ms0", "flush"]);
    assert!(macs(ns).is_empty());
    let e = fail(&[
        "-n",
        ns,
        "link",
        "source",
        "ms0",
        "add",
        "01:00:5e:00:00:01",
    ]);
    assert!(e.contains("unicast"), "{e}");
    let e = fail(&["-n", ns, "link", "source", "ms0", "shuffle"]);
    assert!(e.contains("add, del, flush or set"), "{e}");
    ok(&[
        "-n", ns, "link", "add", "mb0", "link", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    let e = fail(&["-n", ns, "link", "source", "mb0", "add", a]);
    assert!(e.contains("bridge mode"), "{e}");
}

#[test]
fn del_removes_the_link() {
    if !can_run("del_removes_the_link") {
        return;
    }
    let (host, _lan) = uplink_pair("lkdel").unwrap();
    let ns = host.name.as_str();
    ok(&[
        "-n", ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    assert!(ip_link(ns, "mv0").is_some());
    ok(&["-n", ns, "link", "del", "mv0"]);
    assert!(ip_link(ns, "mv0").is_none());
    assert!(ip_link(ns, "eth0").is_some());
    let e = fail(&["-n", ns, "link", "del", "mv0"]);
    assert!(e.contains("mv0 not found"), "{e}");
}
