//! `macvnet addr` and `macvnet route` against the real kernel.
#![allow(clippy::unwrap_used)]

mod cli_support;
use std::process::Command;

use cli_support::*;
use serde_json::Value;

fn ip_json(ns: &str, what: &[&str]) -> Vec<Value> {
    let out = Command::new("ip")
        .args(["-j", "-n", ns])
        .args(what)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn addrs_of(ns: &str, dev: &str) -> Vec<String> {
    ip_json(ns, &["addr", "show", "dev", dev])
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn addr_add_show_del() {
    if !can_run("addr_add_show_del") {
        return;
    }
    let (host, _lan) = uplink_pair("addr").unwrap();
    let ns = host.name.as_str();
    ok(&[
        "-n", ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge", "up",
    ]);
    ok(&["-n", ns, "addr", "add", "198.18.0.11/24", "dev", "mv0"]);
    ok(&["-n", ns, "addr", "add", "2001:db8::11/64", "dev", "mv0"]);
    let mut got = addrs_of(ns, "mv0");
    got.sort();
    assert_eq!(got, vec!["198.18.0.11/24", "2001:db8::11/64"]);
    let text = ok(&["-n", ns, "addr", "show", "dev", "mv0"]);
    assert!(
        text.contains("198.18.0.11/24") && text.contains("mv0"),
        "{text}"
    );
    let j = json(&["-n", ns, "-j", "addr", "show", "dev", "mv0"]);
    assert!(j
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["addr"] == "198.18.0.11/24" && a["dev"] == "mv0"));
    let e = fail(&["-n", ns, "addr", "add", "198.18.0.11/24", "dev", "mv0"]);
    assert!(e.contains("already on mv0"), "{e}");
    let e = fail(&["-n", ns, "addr", "add", "198.18.0.300/24", "dev", "mv0"]);
    assert!(e.contains("invalid address"), "{e}");
    let e = fail(&["-n", ns, "addr", "add", "198.18.0.12/24", "dev", "nosuch"]);
    assert!(e.contains("nosuch not found"), "{e}");
    let e = fail(&["-n", ns, "addr", "add", "198.18.0.12/24"]);
    assert!(e.contains("dev NAME"), "{e}");
    ok(&["-n", ns, "addr", "del", "198.18.0.11/24", "dev", "mv0"]);
    assert_eq!(addrs_of(ns, "mv0"), vec!["2001:db8::11/64"]);
    let e = fail(&["-n", ns, "addr", "del", "198.18.0.11/24", "dev", "mv0"]);
    assert!(e.contains("not on mv0"), "{e}");
}

#[test]
fn route_add_show_del() {
    if !can_run("route_add_show_del") {
        return;
    }
    let (host, _lan) = uplink_pair("route").unwrap();
    let ns = host.name.as_str();
    ok(&[
        "-n", ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge", "up",
    ]);
    ok(&["-n", ns, "addr", "add", "198.18.0.11/24", "dev", "mv0"]);
    ok(&["-n", ns, "route", "add", "default", "via", "198.18.0.1"]);
    ok(&[
        "-n",
        ns,
        "route",
        "add",
        "198.19.0.0/24",
        "via",
        "198.18.0.1",
        "dev",
        "mv0",
        "metric",
        "50",
    ]);
    let routes = ip_json(ns, &["route", "show"]);
    assert!(routes
        .iter()
        .any(|r| r["dst"] == "default" && r["gateway"] == "198.18.0.1" && r["dev"] == "mv0"));
    assert!(routes
        .iter()
        .any(|r| r["dst"] == "198.19.0.0/24" && r["metric"] == 50));
    let text = ok(&["-n", ns, "route", "show"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("default via 198.18.0.1 dev mv0")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("198.19.0.0/24 via 198.18.0.1 dev mv0")
                && l.contains("metric 50")),
        "{text}"
    );
    let j = json(&["-n", ns, "-j", "route", "show", "-4"]);
    assert!(j
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "0.0.0.0/0" && r["dev"] == "mv0"));
    let e = fail(&["-n", ns, "route", "add", "default", "via", "198.18.0.1"]);
    assert!(e.contains("already exists"), "{e}");
    let e = fail(&["-n", ns, "route", "add", "198.19.1.0/24"]);
    assert!(e.contains("via GW"), "{e}");
    let e = fail(&[
        "-n",
        ns,
        "route",
        "add",
        "198.19.1.0/24",
        "via",
        "2001:db8::1",
    ]);
    assert!(e.contains("different families"), "{e}");
    ok(&[
        "-n",
        ns,
        "route",
        "del",
        "198.19.0.0/24",
        "via",
        "198.18.0.1",
        "metric",
        "50",
    ]);
    ok(&["-n", ns, "route", "del", "default"]);
    let routes = ip_json(ns, &["route", "show"]);
    assert!(
        !routes
            .iter()
            .any(|r| r["dst"] == "default" || r["dst"] == "198.19.0.0/24"),
        "{routes:?}"
    );
    let e = fail(&["-n", ns, "route", "del", "default"]);
    assert!(e.contains("no such route"), "{e}");
}
