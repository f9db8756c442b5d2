//! host-local allocation and store tests in temp dirs (no root needed).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{conf, our_files, snapshot, TempDir};
use macvnet_ipam::host_local::{self, Attachment, HostLocalConfig, StatusError};

const V4: &str = r#","ranges":[[{"subnet":"198.18.0.0/29"}]]"#;

fn add(c: &str, id: &str) -> Result<String, String> {
    host_local::add(c.as_bytes(), id, "eth0", "")
        .map(|r| {
            r.ips
                .iter()
                .map(|i| i.address.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .map_err(|e| e.to_string())
}

#[test]
fn add_writes_reference_format() {
    let t = TempDir::new("fmt");
    let c = conf(&t.path, "net1", "1.0.0", V4);
    let r = host_local::add(c.as_bytes(), "c1", "eth0", "").unwrap();
    assert_eq!(
        r.to_json("1.0.0").unwrap(),
        serde_json::from_str::<serde_json::Value>(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.2/29","gateway":"198.18.0.1"}]}"#
        )
        .unwrap()
    );
    let dir = t.path.join("net1");
    let snap = snapshot(&dir);
    assert_eq!(snap["198.18.0.2"], b"c1\r\neth0");
    assert_eq!(snap["last_reserved_ip.0"], b"198.18.0.2");
    assert_eq!(snap["lock"], b"");
    assert_eq!(snap.len(), 3);
    let mode = std::fs::metadata(dir.join("198.18.0.2"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(our_files(&dir), [".macvnet-att:c1:eth0"]);
}

#[test]
fn round_robin_duplicate_and_release() {
    let t = TempDir::new("rr");
    let c = conf(&t.path, "net1", "1.0.0", V4);
    assert_eq!(add(&c, "c1").unwrap(), "198.18.0.2/29");
    assert_eq!(add(&c, "c2").unwrap(), "198.18.0.3/29");
    assert_eq!(
        add(&c, "c1").unwrap_err(),
        "failed to allocate for range 0: 198.18.0.2 has been allocated to c1, duplicate allocation is not allowed"
    );
    // A different ifname of the same container is a different attachment.
    let r = host_local::add(c.as_bytes(), "c1", "net1", "").unwrap();
    assert_eq!(r.ips[0].address.to_string(), "198.18.0.4/29");
    let gone = host_local::del(c.as_bytes(), "c1", "eth0", "").unwrap();
    assert_eq!(gone.len(), 1);
    assert!(our_files(&t.path.join("net1"))
        .iter()
        .all(|n| !n.contains("c1:eth0")));
    // DEL is idempotent.
    assert!(host_local::del(c.as_bytes(), "c1", "eth0", "")
        .unwrap()
        .is_empty());
    // Round-robin continues after the last reserved, then wraps to .2.
    assert_eq!(add(&c, "c3").unwrap(), "198.18.0.5/29");
    assert_eq!(add(&c, "c4").unwrap(), "198.18.0.6/29");
    assert_eq!(add(&c, "c5").unwrap(), "198.18.0.2/29");
    assert_eq!(
        add(&c, "c6").unwrap_err(),
        "failed to allocate for range 0: no IP addresses available in range set: 198.18.0.1-198.18.0.6"
    );
    host_local::check(c.as_bytes(), "c5", "eth0", "").unwrap();
    assert_eq!(
        host_local::check(c.as_bytes(), "c6", "eth0", "")
            .unwrap_err()
            .to_string(),
        "host-local: Failed to find address added by container c6"
    );
}

#[test]
fn requested_ips() {
    let t = TempDir::new("req");
    let extra = r#","ranges":[[{"subnet":"198.18.0.0/24"}],[{"subnet":"2001:db8::/64"}]]"#;
    let c = conf(&t.path, "n", "1.0.0", extra);
    let r = host_local::add(c.as_bytes(), "a", "eth0", "IP=198.18.0.77,2001:db8::77").unwrap();
    let got: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
    assert_eq!(got, ["198.18.0.77/24", "2001:db8::77/64"]);
    // Taken.
    let e = host_local::add(c.as_bytes(), "b", "eth0", "IP=198.18.0.77").unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: requested IP address 198.18.0.77 is not available in range set 198.18.0.1-198.18.0.254"
    );
    // Gateway.
    let e = host_local::add(c.as_bytes(), "b", "eth0", "IP=198.18.0.1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: requested ip 198.18.0.1 is subnet's gateway"
    );
    // Outside every range: allocation is rolled back.
    let before = snapshot(&t.path.join("n"));
    let e = host_local::add(c.as_bytes(), "b", "eth0", "IP=198.19.9.9").unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to allocate all requested IPs: 198.19.9.9"
    );
    let after = snapshot(&t.path.join("n"));
    let names = |m: &std::collections::BTreeMap<String, Vec<u8>>| {
        m.keys()
            .filter(|k| !k.starts_with("last_"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&before), names(&after));
    assert!(our_files(&t.path.join("n"))
        .iter()
        .all(|n| !n.contains(":b:")));
    // args.cni.ips and runtimeConfig.ips.
    let c2 = c.replacen(
        r#""type":"macvlan","#,
        r#""type":"macvlan","args":{"cni":{"ips":["198.18.0.88"]}},"runtimeConfig":{"ips":["2001:db8::88/64"]},"#,
        1,
    );
    let r = host_local::add(c2.as_bytes(), "d", "eth0", "").unwrap();
    let got: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
    assert_eq!(got, ["198.18.0.88/24", "2001:db8::88/64"]);
}

#[test]
fn second_set_failure_rolls_back_first() {
    let t = TempDir::new("rb");
    let extra = r#","ranges":[[{"subnet":"198.18.0.0/24"}],[{"subnet":"2001:db8::/120","rangeStart":"2001:db8::5","rangeEnd":"2001:db8::5"}]]"#;
    let c = conf(&t.path, "n", "1.0.0", extra);
    add(&c, "a").unwrap();
    let e = add(&c, "b").unwrap_err();
    assert!(
        e.starts_with("failed to allocate for range 1: no IP addresses available"),
        "{e}"
    );
    let snap = snapshot(&t.path.join("n"));
    assert!(!snap.contains_key("198.18.0.3"), "{:?}", snap.keys());
    assert!(our_files(&t.path.join("n"))
        .iter()
        .all(|n| !n.contains(":b:")));
}

#[test]
fn names_cannot_escape_data_dir() {
    let t = TempDir::new("esc");
    for (net, id, ifname) in [
        ("../evil", "c1", "eth0"),
        ("a/b", "c1", "eth0"),
        ("..", "c1", "eth0"),
        ("net", "../../x", "eth0"),
        ("net", "c/1", "eth0"),
        ("net", "c\u{0}1", "eth0"),
        ("net", "c1", "../x"),
        ("net", "c1", "a/b"),
    ] {
        let c = conf(&t.path, net, "1.0.0", V4);
        assert!(
            host_local::add(c.as_bytes(), id, ifname, "").is_err(),
            "{net} {id} {ifname}"
        );
        assert!(host_local::del(c.as_bytes(), id, ifname, "").is_err());
    }
    assert_eq!(std::fs::read_dir(&t.path).unwrap().count(), 0);
    assert!(!t.path.parent().unwrap().join("evil").exists());
}

#[test]
fn tolerates_garbage_last_reserved_and_old_format() {
    let t = TempDir::new("garb");
    let c = conf(&t.path, "n", "1.0.0", V4);
    let dir = t.path.join("n");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("last_reserved_ip.0"), b"\x00garbage\n").unwrap();
    assert_eq!(add(&c, "a").unwrap(), "198.18.0.2/29");
    // Old-format entry (id only), as older reference versions wrote.
    std::fs::write(dir.join("198.18.0.6"), b"old1").unwrap();
    // DEL of (old1, eth0) finds no new-format entry and falls back to `old1`.
    assert_eq!(
        host_local::del(c.as_bytes(), "old1", "eth0", "")
            .unwrap()
            .len(),
        1
    );
    assert!(!dir.join("198.18.0.6").exists());
}

#[test]
fn gc_releases_invalid_attachments() {
    let t = TempDir::new("gc");
    let c = conf(
        &t.path,
        "n",
        "1.0.0",
        r#","ranges":[[{"subnet":"198.18.0.0/24"}]]"#,
    );
    for id in ["a", "b", "c"] {
        add(&c, id).unwrap();
    }
    let dir = t.path.join("n");
    std::fs::write(dir.join("198.18.0.100"), b"").unwrap(); // killed writer
    std::fs::write(dir.join("198.18.0.101"), b"c").unwrap(); // old format, c valid
    std::fs::write(dir.join("198.18.0.102"), b"z").unwrap(); // old format, z invalid
    std::fs::write(dir.join(".macvnet-tmp.1.att"), b"c1\r").unwrap();
    let gc_conf = c.replacen(
        r#""type":"macvlan","#,
        r#""type":"macvlan","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"c","ifname":"eth0"}],"#,
        1,
    );
    let rep = host_local::gc(gc_conf.as_bytes()).unwrap();
    let mut rel: Vec<String> = rep.released.iter().map(ToString::to_string).collect();
    rel.sort();
    assert_eq!(rel, ["198.18.0.100", "198.18.0.102", "198.18.0.3"]);
    assert_eq!(rep.other_files, 2); // b's marker and the temp file
    let left: Vec<String> = snapshot(&dir).into_keys().collect();
    assert_eq!(
        left,
        [
            "198.18.0.101",
            "198.18.0.2",
            "198.18.0.4",
            "last_reserved_ip.0",
            "lock"
        ]
    );
    // No valid-attachments key: refuse rather than wipe.
    assert!(host_local::gc(c.as_bytes()).is_err());
    // Empty list: everything goes.
    let conf = HostLocalConfig::parse(c.as_bytes(), "").unwrap();
    let rep = host_local::gc_with(&conf, &[] as &[Attachment]).unwrap();
    assert_eq!(rep.released.len(), 3);
}

#[test]
fn status_ok_exhausted_unusable() {
    let t = TempDir::new("st");
    let c = conf(&t.path, "n", "1.0.0", V4);
    host_local::status(c.as_bytes()).unwrap();
    for id in ["a", "b", "c", "d"] {
        add(&c, id).unwrap();
    }
    host_local::status(c.as_bytes()).unwrap();
    add(&c, "e").unwrap();
    let e = host_local::status(c.as_bytes()).unwrap_err();
    assert!(matches!(e, StatusError::Exhausted { index: 0, .. }), "{e}");
    assert_eq!(macvnet_cni::CniError::from(e).code, 51);
    // A huge v6 set is never exhausted and is decided without iterating.
    let c6 = conf(
        &t.path,
        "n6",
        "1.0.0",
        r#","ranges":[[{"subnet":"2001:db8::/64"}]]"#,
    );
    host_local::status(c6.as_bytes()).unwrap();
    // dataDir is a regular file: the store cannot be created.
    let file = t.path.join("plainfile");
    std::fs::write(&file, b"x").unwrap();
    let bad = conf(&file, "n", "1.0.0", V4);
    let e = host_local::status(bad.as_bytes()).unwrap_err();
    assert!(matches!(e, StatusError::Unusable(_)), "{e}");
    assert_eq!(macvnet_cni::CniError::from(e).code, 50);
}

#[test]
fn resolv_conf_and_routes_in_result() {
    let t = TempDir::new("dns");
    let rc = t.path.join("resolv.conf");
    std::fs::write(&rc, "nameserver 198.18.0.53\nsearch example.test\n").unwrap();
    let extra = format!(
        r#","resolvConf":"{}","subnet":"198.18.0.0/24","gateway":"198.18.0.254","routes":[{{"dst":"0.0.0.0/0"}},{{"dst":"198.19.0.0/16","gw":"198.18.0.9"}}]"#,
        rc.display()
    );
    let c = conf(&t.path, "n", "0.4.0", &extra);
    let r = host_local::add(c.as_bytes(), "a", "eth0", "").unwrap();
    assert_eq!(r.to_json("1.0.0").unwrap(), serde_json::from_str::<serde_json::Value>(r#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.1/24","gateway":"198.18.0.254"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"198.19.0.0/16","gw":"198.18.0.9"}],"dns":{"nameservers":["198.18.0.53"],"search":["example.test"]}}"#).unwrap());
    let missing = conf(
        &t.path,
        "n",
        "1.0.0",
        r#","resolvConf":"/nonexistent/mvt","subnet":"198.18.0.0/24""#,
    );
    let e = host_local::add(missing.as_bytes(), "b", "eth0", "").unwrap_err();
    assert!(e.to_string().starts_with("open /nonexistent/mvt"), "{e}");
}

/// 1000 attachments: no ADD but the first lists the directory or reads another
/// entry, so the cost of an ADD does not grow with the store. (How long ADDs take
/// is measured by `bench/hostlocal-deciles.sh`, not asserted here.)
#[test]
fn thousand_adds_stay_flat() {
    let t = TempDir::new("speed");
    let c = conf(
        &t.path,
        "n",
        "1.0.0",
        r#","ranges":[[{"subnet":"198.18.0.0/20"}]]"#,
    );
    add(&c, "c0").unwrap();
    let scans = host_local::store::dir_scans_on_this_thread();
    let reads = host_local::store::entry_reads_on_this_thread();
    for i in 1..1000 {
        add(&c, &format!("c{i}")).unwrap();
    }
    assert_eq!(host_local::store::dir_scans_on_this_thread(), scans);
    // One read per ADD: the probe of its own marker.
    assert_eq!(host_local::store::entry_reads_on_this_thread(), reads + 999);
    assert_eq!(snapshot(&t.path.join("n")).len(), 1002);
}

/// A killed ADD can leave a torn marker or temp file: the next ADD of that
/// attachment replaces the marker whole, and GC removes debris.
#[test]
fn recovers_from_killed_add_debris() {
    let t = TempDir::new("torn");
    let c = conf(&t.path, "n", "1.0.0", V4);
    let dir = t.path.join("n");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".macvnet-att:k1:eth0"), b"k1\r").unwrap();
    std::fs::write(dir.join(".macvnet-tmp.999999.last"), b"198.1").unwrap();
    assert_eq!(add(&c, "k1").unwrap(), "198.18.0.2/29");
    assert_eq!(
        std::fs::read(dir.join("198.18.0.2")).unwrap(),
        b"k1\r\neth0"
    );
    assert_eq!(
        std::fs::read(dir.join(".macvnet-att:k1:eth0")).unwrap(),
        b"k1\r\neth0"
    );
    std::fs::write(dir.join(".macvnet-att:k2:eth0"), b"k").unwrap();
    let conf = HostLocalConfig::parse(c.as_bytes(), "").unwrap();
    let valid = [Attachment {
        container_id: "k1".into(),
        ifname: "eth0".into(),
    }];
    let rep = host_local::gc_with(&conf, &valid).unwrap();
    assert!(rep.released.is_empty());
    assert_eq!(rep.other_files, 2);
    assert_eq!(our_files(&dir), [".macvnet-att:k1:eth0"]);
}

/// IDs too long for a marker name: every ADD scans (still correct), and the
/// temporary source file is removed.
#[test]
fn long_container_id_without_marker() {
    let t = TempDir::new("long");
    let c = conf(&t.path, "n", "1.0.0", V4);
    let id = "a".repeat(250);
    assert_eq!(add(&c, &id).unwrap(), "198.18.0.2/29");
    let dir = t.path.join("n");
    assert!(our_files(&dir).is_empty(), "{:?}", our_files(&dir));
    assert_eq!(
        std::fs::read(dir.join("198.18.0.2")).unwrap(),
        format!("{id}\r\neth0").as_bytes()
    );
    let e = add(&c, &id).unwrap_err();
    assert!(e.contains("duplicate allocation is not allowed"), "{e}");
    assert_eq!(
        host_local::del(c.as_bytes(), &id, "eth0", "")
            .unwrap()
            .len(),
        1
    );
}
