#![allow(clippy::unwrap_used)]
//! Result conversion tables: every version pair, expected JSON, round trips.

use macvnet_cni::types::{CniResult, Dns, Interface, IpConfig, Route};
use macvnet_cni::version::SUPPORTED_VERSIONS;
use serde_json::{json, Value};

fn full_result() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "host0".into(),
                mac: Some("02:00:00:00:00:01".into()),
                ..Default::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("02:00:00:00:00:02".into()),
                mtu: Some(1400),
                sandbox: Some("/run/netns/x".into()),
                socket_path: Some("/run/sock".into()),
                pci_id: Some("0000:00:01.0".into()),
            },
        ],
        ips: vec![
            IpConfig {
                address: "198.18.0.5/24".parse().unwrap(),
                gateway: Some("198.18.0.1".parse().unwrap()),
                interface: Some(1),
            },
            IpConfig {
                address: "198.18.1.5/24".parse().unwrap(),
                gateway: None,
                interface: Some(1),
            },
            IpConfig {
                address: "2001:db8::5/64".parse().unwrap(),
                gateway: Some("2001:db8::1".parse().unwrap()),
                interface: Some(1),
            },
        ],
        routes: vec![
            Route {
                mtu: Some(1300),
                advmss: Some(1200),
                priority: Some(10),
                table: Some(100),
                scope: Some(0),
                ..Route::new("0.0.0.0/0".parse().unwrap(), None)
            },
            Route::new(
                "2001:db8:1::/48".parse().unwrap(),
                Some("2001:db8::1".parse().unwrap()),
            ),
        ],
        dns: Dns {
            nameservers: vec!["198.18.0.53".into()],
            domain: Some("example.test".into()),
            search: vec!["a.test".into()],
            options: vec!["ndots:2".into()],
        },
    }
}

fn dns_json() -> Value {
    json!({"nameservers": ["198.18.0.53"], "domain": "example.test", "search": ["a.test"], "options": ["ndots:2"]})
}

fn expected(version: &str) -> Value {
    match version {
        "1.1.0" => json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "host0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "mtu": 1400, "sandbox": "/run/netns/x", "socketPath": "/run/sock", "pciID": "0000:00:01.0"}
            ],
            "ips": [
                {"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 1},
                {"address": "198.18.1.5/24", "interface": 1},
                {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 1}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "mtu": 1300, "advmss": 1200, "priority": 10, "table": 100, "scope": 0},
                {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}
            ],
            "dns": dns_json(),
        }),
        "1.0.0" => json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "host0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 1},
                {"address": "198.18.1.5/24", "interface": 1},
                {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 1}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}],
            "dns": dns_json(),
        }),
        "0.3.0" | "0.3.1" | "0.4.0" => json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "host0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"version": "4", "address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 1},
                {"version": "4", "address": "198.18.1.5/24", "interface": 1},
                {"version": "6", "address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 1}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}],
            "dns": dns_json(),
        }),
        "0.1.0" | "0.2.0" => json!({
            "cniVersion": version,
            "ip4": {"ip": "198.18.0.5/24", "gateway": "198.18.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "2001:db8::5/64", "gateway": "2001:db8::1", "routes": [{"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}]},
            "dns": dns_json(),
        }),
        _ => unreachable!(),
    }
}

#[test]
fn canonical_to_every_version() {
    let r = full_result();
    for v in SUPPORTED_VERSIONS {
        assert_eq!(r.to_json(v).unwrap(), expected(v), "version {v}");
    }
    // "" means 0.1.0, as Go's Convert.
    assert_eq!(r.to_json("").unwrap(), expected("0.1.0"));
}
