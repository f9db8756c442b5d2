#![allow(clippy::unwrap_used)]
//! The macvlan plugin against the real kernel, side by side with the reference
//! (/usr/lib/cni/macvlan, v1.1.1) where it applies. "The host" is a test namespace
//! holding the master `eth0` (a veth); containers are further test namespaces.

mod common;

use common::*;
use serde_json::{json, Value};

const NET: &str = "mvtnet";

fn conf(version: &str, data_dir: &std::path::Path, subnet: &str) -> Value {
    let gw = subnet.replace(".0/24", ".254");
    json!({
        "cniVersion": version,
        "name": NET,
        "type": "macvlan",
        "master": "eth0",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "subnet": subnet,
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.19.0.0/16", "gw": gw}]
        }
    })
}

fn l2_conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": NET, "type": "macvlan", "master": "eth0", "mode": "private"})
}

/// With the result of ADD as prevResult.
fn with_prev(mut conf: Value, prev: &Value) -> Value {
    conf["prevResult"] = prev.clone();
    conf
}

#[test]
fn differential_add_check_del_every_version() {
    if !require("differential_add_check_del_every_version", true) {
        return;
    }
    let lab = Lab::new("mvdiff");
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let mut results = Vec::new();
        let mut views = Vec::new();
        for imp in [ours(), reference()] {
            let c = lab.container(imp.name);
            let data = lab.data_dir(&format!("{}-{version}", imp.name));
            let conf = conf(version, &data, "198.18.3.0/24");
            let add = run(&lab, &imp, &Call::new("ADD", Some(&ns_path(&c))), &conf);
            add.expect_ok();
            let res = add.json();
            assert_eq!(res["cniVersion"], version);
            let mac = res["interfaces"][0]["mac"].as_str().unwrap().to_string();
            let l = link(&c, "net1").unwrap();
            assert_eq!(
                l.mac.unwrap().to_string(),
                mac,
                "{} {version}: MAC in result",
                imp.name
            );
            assert_eq!(res["interfaces"][0]["sandbox"], ns_path(&c));
            views.push(view(&c, "net1"));
            // Both announce the address when the link comes up (ours sets it by netlink).
            let arp = macvnet_netlink::sysctl::read(&c.ns, "net.ipv4.conf.net1.arp_notify");
            assert_eq!(
                arp.unwrap().trim(),
                "1",
                "{} {version}: arp_notify",
                imp.name
            );
            assert_eq!(store_ips(&data, NET), vec!["198.18.3.2".to_string()]);
            if version != "0.3.0" && version != "0.3.1" {
                let check = run(
                    &lab,
                    &imp,
                    &Call::new("CHECK", Some(&ns_path(&c))),
                    &with_prev(conf.clone(), &res),
                );
                check.expect_ok();
            }
            let del = run(&lab, &imp, &Call::new("DEL", Some(&ns_path(&c))), &conf);
            del.expect_ok();
            assert!(
                link(&c, "net1").is_none(),
                "{} {version}: link left after DEL",
                imp.name
            );
            assert!(store_ips(&data, NET).is_empty());
            // DEL again: idempotent.
            run(&lab, &imp, &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();
            results.push(normalize(res));
        }
        assert_eq!(results[0], results[1], "result JSON differs at {version}");
        assert_eq!(views[0], views[1], "kernel view differs at {version}");
        let v = &views[0];
        assert_eq!(v.mode.as_deref(), Some("bridge"));
        assert!(v.up);
        assert_eq!(v.addrs, vec!["198.18.3.2/24".to_string()]);
        assert_eq!(links(&lab.host), vec!["eth0".to_string()]);
    }
}

#[test]
fn ours_alone_1_1_0_and_check_failures() {
    if !require("ours_alone_1_1_0_and_check_failures", false) {
        return;
    }
    let lab = Lab::new("mv110");
    let c = lab.container("c");
    let data = lab.data_dir("d");
    let conf = conf("1.1.0", &data, "198.18.4.0/24");
    let add = run(&lab, &ours(), &Call::new("ADD", Some(&ns_path(&c))), &conf);
    add.expect_ok();
    let res = add.json();
    assert_eq!(res["cniVersion"], "1.1.0");
    assert_eq!(res["ips"][0]["address"], "198.18.4.2/24");
    let v = view(&c, "net1");
    assert!(
        v.routes
            .iter()
            .any(|r| r.starts_with("0.0.0.0/0 via Some(198.18.4.1)")),
        "{:?}",
        v.routes
    );
    assert!(
        v.routes
            .iter()
            .any(|r| r.starts_with("198.19.0.0/16 via Some(198.18.4.254)")),
        "{:?}",
        v.routes
    );
    run(
        &lab,
        &ours(),
        &Call::new("CHECK", Some(&ns_path(&c))),
        &with_prev(conf.clone(), &res),
    )
    .expect_ok();

    // CHECK catches a wrong mode, a wrong MAC, a missing address.
    let mut wrong_mode = with_prev(conf.clone(), &res);
    wrong_mode["mode"] = json!("vepa");
    let o = run(
        &lab,
        &ours(),
        &Call::new("CHECK", Some(&ns_path(&c))),
        &wrong_mode,
    );
    assert!(
        o.msg().contains("does not match expected value: vepa"),
        "{}",
        o.msg()
    );
    let mut bad_mac = res.clone();
    bad_mac["interfaces"][0]["mac"] = json!("02:00:00:00:00:01");
    let o = run(
        &lab,
        &ours(),
        &Call::new("CHECK", Some(&ns_path(&c))),
        &with_prev(conf.clone(), &bad_mac),
    );
    assert!(
        o.msg().contains("doesn't match container Mac"),
        "{}",
        o.msg()
    );
    let mut bad_ip = res.clone();
    bad_ip["ips"][0]["address"] = json!("198.18.4.99/24");
    let o = run(
        &lab,
        &ours(),
        &Call::new("CHECK", Some(&ns_path(&c))),
        &with_prev(conf.clone(), &bad_ip),
    );
    assert!(
        o.msg().contains("Failed to match addr 198.18.4.99/24"),
        "{}",
        o.msg()
    );
    let o = run(
        &lab,
        &ours(),
        &Call::new("CHECK", Some(&ns_path(&c))),
        &conf,
    );
    assert_eq!(o.code(), 7, "{}", o.msg());

    run(&lab, &ours(), &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();
    assert!(link(&c, "net1").is_none());
    // CHECK after DEL: the link is gone.
    let o = run(
        &lab,
        &ours(),
        &Call::new("CHECK", Some(&ns_path(&c))),
        &with_prev(conf.clone(), &res),
    );
    assert!(!o.ok);
}

#[test]
fn l2_only_differential() {
    if !require("l2_only_differential", true) {
        return;
    }
    let lab = Lab::new("mvl2");
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let mut results = Vec::new();
        let mut views = Vec::new();
        for imp in [ours(), reference()] {
            let c = lab.container(imp.name);
            let conf = l2_conf(version);
            let add = run(&lab, &imp, &Call::new("ADD", Some(&ns_path(&c))), &conf);
            add.expect_ok();
            let res = add.json();
            assert!(res.get("ips").is_none());
            views.push(view(&c, "net1"));
            if version != "0.3.1" {
                run(
                    &lab,
                    &imp,
                    &Call::new("CHECK", Some(&ns_path(&c))),
                    &with_prev(conf.clone(), &res),
                )
                .expect_ok();
            }
            run(&lab, &imp, &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();
            assert!(link(&c, "net1").is_none());
            results.push(normalize(res));
        }
        assert_eq!(results[0], results[1], "{version}");
        assert_eq!(views[0], views[1], "{version}");
        assert_eq!(views[0].mode.as_deref(), Some("private"));
        assert!(views[0].up && views[0].addrs.is_empty());
    }
}

#[test]
fn del_without_add_and_gone_netns() {
    if !require("del_without_add_and_gone_netns", true) {
        return;
    }
    let lab = Lab::new("mvdel");
    let c = lab.container("c");
    for imp in [ours(), reference()] {
        let data = lab.data_dir(imp.name);
        let conf = conf("1.0.0", &data, "198.18.3.0/24");
        // Netns exists, link does not.
        run(&lab, &imp, &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();
        // Netns path gone: ours succeeds; the reference (v1.1.1) says "Link not found".
        let gone = format!("/run/netns/mvt-{}-gone", std::process::id());
        let o = run(&lab, &imp, &Call::new("DEL", Some(&gone)), &conf);
        if imp.name == "ours" {
            o.expect_ok();
        } else {
            eprintln!("reference DEL with a gone netns: ok={} {}", o.ok, o.stdout);
        }
        // No netns at all.
        run(&lab, &imp, &Call::new("DEL", None), &conf).expect_ok();
        // Master missing: our DEL does not need it; the reference's (v1.1.1) does.
        let mut no_master = conf.clone();
        no_master["master"] = json!("nosuch0");
        let o = run(
            &lab,
            &imp,
            &Call::new("DEL", Some(&ns_path(&c))),
            &no_master,
        );
        if imp.name == "ours" {
            o.expect_ok();
        } else {
            eprintln!("reference DEL without master: ok={} {}", o.ok, o.stdout);
        }
    }
}

#[test]
fn default_master_from_default_route() {
    if !require("default_master_from_default_route", true) {
        return;
    }
    let lab = Lab::new("mvdef");
    {
        let mut h = lab.host.handle().unwrap();
        let eth0 = h.link_by_name("eth0").unwrap();
        h.add_addr(eth0.index, "198.18.9.1/24".parse().unwrap())
            .unwrap();
        h.add_route(&macvnet_netlink::RouteSpec::via(
            "0.0.0.0/0".parse().unwrap(),
            "198.18.9.254".parse().unwrap(),
        ))
        .unwrap();
    }
    let mut views = Vec::new();
    for imp in [ours(), reference()] {
        let c = lab.container(imp.name);
        let mut conf = l2_conf("1.0.0");
        conf.as_object_mut().unwrap().remove("master");
        run(&lab, &imp, &Call::new("ADD", Some(&ns_path(&c))), &conf).expect_ok();
        let l = link(&c, "net1").unwrap();
        assert!(l.parent_index.is_some());
        views.push(view(&c, "net1"));
        run(&lab, &imp, &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();
    }
    assert_eq!(views[0], views[1]);
}

#[test]
fn mac_from_args_and_runtime_config() {
    if !require("mac_from_args_and_runtime_config", true) {
        return;
    }
    let lab = Lab::new("mvmac");
    for imp in [ours(), reference()] {
        let c = lab.container(imp.name);
        let p = ns_path(&c);
        // CNI_ARGS beats the config's mac.
        let mut conf = l2_conf("1.0.0");
        conf["mac"] = json!("02:11:22:33:44:01");
        let call = Call::new("ADD", Some(&p)).args("IgnoreUnknown=true;MAC=c2:11:22:33:44:55");
        let r = run(&lab, &imp, &call, &conf);
        r.expect_ok();
        assert_eq!(
            r.json()["interfaces"][0]["mac"],
            "c2:11:22:33:44:55",
            "{}",
            imp.name
        );
        assert_eq!(
            link(&c, "net1").unwrap().mac.unwrap().to_string(),
            "c2:11:22:33:44:55"
        );
        run(&lab, &imp, &Call::new("DEL", Some(&p)), &conf).expect_ok();
        // Config mac alone.
        let r = run(&lab, &imp, &Call::new("ADD", Some(&p)), &conf);
        assert_eq!(
            r.expect_ok().json()["interfaces"][0]["mac"],
            "02:11:22:33:44:01"
        );
        run(&lab, &imp, &Call::new("DEL", Some(&p)), &conf).expect_ok();
        // runtimeConfig beats CNI_ARGS, both spellings.
        for key in ["runtimeConfig", "RuntimeConfig"] {
            let mut conf = l2_conf("1.0.0");
            conf[key] = json!({"mac": "c2:11:22:33:44:66"});
            let call = Call::new("ADD", Some(&p)).args("IgnoreUnknown=1;MAC=c2:11:22:33:44:55");
            let r = run(&lab, &imp, &call, &conf);
            assert_eq!(
                r.expect_ok().json()["interfaces"][0]["mac"],
                "c2:11:22:33:44:66",
                "{} {key}",
                imp.name
            );
            assert_eq!(
                link(&c, "net1").unwrap().mac.unwrap().to_string(),
                "c2:11:22:33:44:66"
            );
            run(&lab, &imp, &Call::new("DEL", Some(&p)), &conf).expect_ok();
        }
    }
}

#[test]
fn link_in_container_and_extras() {
    if !require("link_in_container_and_extras", false) {
        return;
    }
    let lab = Lab::new("mvlic");
    let c = lab.container("c");
    // The master lives in the container: a veth from the container to the lan namespace.
    {
        let lan_fd = lab.lan.ns.open().unwrap();
        let mut h = c.handle().unwrap();
        h.add_veth("ceth0", "cup0", Some(std::os::fd::AsFd::as_fd(&lan_fd)))
            .unwrap();
    }
    let p = ns_path(&c);
    // Key case as Go's encoding/json accepts it ("MTU", "Mode").
    let conf = json!({"cniVersion": "1.1.0", "name": NET, "type": "macvlan", "master": "ceth0",
                      "linkInContainer": true, "Mode": "vepa", "MTU": 1400, "bcqueuelen": 333});
    run(&lab, &ours(), &Call::new("ADD", Some(&p)), &conf).expect_ok();
    let l = link(&c, "net1").unwrap();
    let master = link(&c, "ceth0").unwrap();
    assert_eq!(l.parent_index, Some(master.index));
    assert_eq!(l.link_netnsid, None, "parent in the same namespace");
    assert_eq!(l.mtu, 1400);
    let info = l.macvlan.unwrap();
    assert_eq!(info.mode.to_string(), "vepa");
    assert_eq!(info.bcqueuelen, Some(333));
    assert_eq!(links(&lab.host), vec!["eth0".to_string()]);
    run(&lab, &ours(), &Call::new("DEL", Some(&p)), &conf).expect_ok();
    assert!(link(&c, "net1").is_none());

    // Ours beyond the reference: source mode with sourceMacs, nodst; passthru + nopromisc.
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvlan", "master": "eth0",
                      "mode": "source", "sourceMacs": ["02:00:00:00:00:0a", "02:00:00:00:00:0b"],
                      "nodst": true, "bccutoff": 4});
    run(&lab, &ours(), &Call::new("ADD", Some(&p)), &conf).expect_ok();
    let info = link(&c, "net1").unwrap().macvlan.unwrap();
    assert_eq!(info.mode.to_string(), "source");
    assert!(info.nodst);
    assert_eq!(info.source_macs.len(), 2);
    run(&lab, &ours(), &Call::new("DEL", Some(&p)), &conf).expect_ok();
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvlan", "master": "eth0",
                      "mode": "passthru", "nopromisc": true});
    run(&lab, &ours(), &Call::new("ADD", Some(&p)), &conf).expect_ok();
    let info = link(&c, "net1").unwrap().macvlan.unwrap();
    assert_eq!(info.mode.to_string(), "passthru");
    assert!(info.nopromisc);
    run(&lab, &ours(), &Call::new("DEL", Some(&p)), &conf).expect_ok();
    assert!(link(&c, "net1").is_none());
}

/// DNS in the result: the config's first, then what IPAM found (host-local resolvConf).
/// The reference keeps only the config's.
#[test]
fn dns_from_config_and_ipam() {
    if !require("dns_from_config_and_ipam", true) {
        return;
    }
    let lab = Lab::new("mvdns");
    let resolv = lab.dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 198.18.0.53\nsearch ipam.example\n").unwrap();
    for imp in [ours(), reference()] {
        let c = lab.container(imp.name);
        let data = lab.data_dir(imp.name);
        let mut conf = conf("1.0.0", &data, "198.18.11.0/24");
        conf["ipam"]["resolvConf"] = json!(resolv);
        conf["dns"] = json!({"nameservers": ["198.18.0.1"], "domain": "conf.example"});
        let r = run(&lab, &imp, &Call::new("ADD", Some(&ns_path(&c))), &conf);
        let dns = r.expect_ok().json()["dns"].clone();
        if imp.name == "ours" {
            assert_eq!(
                dns,
                json!({"nameservers": ["198.18.0.1", "198.18.0.53"], "domain": "conf.example",
                       "search": ["ipam.example"]})
            );
        } else {
            assert_eq!(
                dns,
                json!({"nameservers": ["198.18.0.1"], "domain": "conf.example"})
            );
        }
        run(&lab, &imp, &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();
    }
}

/// Dual stack: arp_notify (set by netlink with the rename) and ndisc_notify (written to
/// /proc/sys only when there is an IPv6 address) are both on; IPv4-only leaves ndisc alone.
#[test]
fn dual_stack_sets_both_announce_sysctls() {
    if !require("dual_stack_sets_both_announce_sysctls", false) {
        return;
    }
    let lab = Lab::new("mvds");
    let data = lab.data_dir("ds");
    let conf = json!({
        "cniVersion": "1.0.0", "name": NET, "type": "macvlan", "master": "eth0",
        "ipam": {"type": "host-local", "dataDir": data,
                 "ranges": [[{"subnet": "198.18.7.0/24"}], [{"subnet": "2001:db8:7::/64"}]]}
    });
    let c = lab.container("ds");
    let add = run(&lab, &ours(), &Call::new("ADD", Some(&ns_path(&c))), &conf);
    add.expect_ok();
    let read = |k: &str| {
        macvnet_netlink::sysctl::read(&c.ns, k)
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("net.ipv4.conf.net1.arp_notify"), "1");
    assert_eq!(read("net.ipv6.conf.net1.ndisc_notify"), "1");
    let v = view(&c, "net1");
    assert!(v.addrs.iter().any(|a| a.starts_with("198.18.7.")), "{v:?}");
    assert!(
        v.addrs.iter().any(|a| a.starts_with("2001:db8:7::")),
        "{v:?}"
    );
    run(&lab, &ours(), &Call::new("DEL", Some(&ns_path(&c))), &conf).expect_ok();

    let v4 = conf_v4_only(&data);
    let c4 = lab.container("v4");
    run(&lab, &ours(), &Call::new("ADD", Some(&ns_path(&c4))), &v4).expect_ok();
    let read4 = |k: &str| {
        macvnet_netlink::sysctl::read(&c4.ns, k)
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read4("net.ipv4.conf.net1.arp_notify"), "1");
    assert_eq!(read4("net.ipv6.conf.net1.ndisc_notify"), "0");
    run(&lab, &ours(), &Call::new("DEL", Some(&ns_path(&c4))), &v4).expect_ok();
    assert!(link(&c4, "net1").is_none());
}

fn conf_v4_only(data: &std::path::Path) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": NET, "type": "macvlan", "master": "eth0",
        "ipam": {"type": "host-local", "dataDir": data, "subnet": "198.18.8.0/24"}
    })
}
