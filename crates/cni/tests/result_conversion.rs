#![allow(clippy::unwrap_used)]
//! Result conversion tables: every version pair, expected JSON, round trips.

use macvnet_cni::types::{CniResult, Dns, Interface, IpConfig, Route};
use macvnet_cni::version::SUPPORTED_VERSIONS;
use serde_json::{json, Value};

/// An address entry from text: `address` with prefix, optional `gateway`, interface index.
fn ip_config(address: &str, gateway: Option<&str>, interface: Option<usize>) -> IpConfig {
    IpConfig {
        address: address.parse().unwrap(),
        gateway: gateway.map(|g| g.parse().unwrap()),
        interface,
    }
}

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
            ip_config("198.18.0.5/24", Some("198.18.0.1"), Some(1)),
            ip_config("198.18.1.5/24", None, Some(1)),
            ip_config("2001:db8::5/64", Some("2001:db8::1"), Some(1)),
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

fn with_version(mut v: Value, version: &str) -> Value {
    v["cniVersion"] = json!(version);
    v
}

/// What a result first written as `from` looks like at `to` (information lost on the way stays lost).
fn expected_via(from: &str, to: &str) -> Value {
    match from {
        "1.1.0" => expected(to),
        "1.0.0" | "0.3.0" | "0.3.1" | "0.4.0" => {
            if to == "1.1.0" {
                with_version(expected("1.0.0"), "1.1.0")
            } else {
                expected(to)
            }
        }
        "0.1.0" | "0.2.0" => match to {
            "0.1.0" | "0.2.0" => expected(to),
            "0.3.0" | "0.3.1" | "0.4.0" => json!({
                "cniVersion": to,
                "ips": [
                    {"version": "4", "address": "198.18.0.5/24", "gateway": "198.18.0.1"},
                    {"version": "6", "address": "2001:db8::5/64", "gateway": "2001:db8::1"}
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}],
                "dns": dns_json(),
            }),
            _ => json!({
                "cniVersion": to,
                "ips": [
                    {"address": "198.18.0.5/24", "gateway": "198.18.0.1"},
                    {"address": "2001:db8::5/64", "gateway": "2001:db8::1"}
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}],
                "dns": dns_json(),
            }),
        },
        _ => unreachable!(),
    }
}

#[test]
fn every_version_pair() {
    let mut pairs = 0;
    for from in SUPPORTED_VERSIONS {
        let input = serde_json::to_vec(&expected(from)).unwrap();
        let parsed = CniResult::parse(&input).unwrap();
        for to in SUPPORTED_VERSIONS {
            assert_eq!(
                parsed.to_json(to).unwrap(),
                expected_via(from, to),
                "{from} -> {to}"
            );
            assert_eq!(
                CniResult::convert(&input, to).unwrap(),
                expected_via(from, to),
                "{from} -> {to}"
            );
            pairs += 1;
        }
    }
    assert_eq!(pairs, 49);
}

#[test]
fn round_trip_each_version() {
    for v in SUPPORTED_VERSIONS {
        let bytes = serde_json::to_vec(&expected(v)).unwrap();
        let r = CniResult::from_json(v, &bytes).unwrap();
        assert_eq!(r.to_json(v).unwrap(), expected(v), "{v}");
        let again = CniResult::parse(r.to_string_pretty(v).unwrap().as_bytes()).unwrap();
        assert_eq!(again, r, "{v}");
    }
    assert_eq!(
        CniResult::parse(&serde_json::to_vec(&expected("1.1.0")).unwrap()).unwrap(),
        full_result()
    );
}

#[test]
fn empty_dns_placement() {
    let r = CniResult {
        ips: vec![ip_config("198.18.0.5/24", None, None)],
        ..Default::default()
    };
    // 1.x omits an empty dns; Go's 0.x types always print it.
    assert_eq!(
        r.to_json("1.1.0").unwrap(),
        json!({"cniVersion": "1.1.0", "ips": [{"address": "198.18.0.5/24"}]})
    );
    assert_eq!(
        r.to_json("1.0.0").unwrap(),
        json!({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.5/24"}]})
    );
    assert_eq!(
        r.to_json("0.4.0").unwrap(),
        json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "198.18.0.5/24"}], "dns": {}})
    );
    assert_eq!(
        r.to_json("0.2.0").unwrap(),
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "198.18.0.5/24"}, "dns": {}})
    );
    assert_eq!(
        CniResult::default().to_json("1.1.0").unwrap(),
        json!({"cniVersion": "1.1.0"})
    );
    assert_eq!(
        CniResult::default().to_json("0.3.1").unwrap(),
        json!({"cniVersion": "0.3.1", "dns": {}})
    );
}

#[test]
fn down_to_020_takes_first_of_each_family() {
    let r = CniResult {
        ips: vec![
            ip_config("2001:db8::7/64", None, Some(0)),
            ip_config("198.18.0.7/24", None, Some(0)),
            ip_config("198.18.1.7/24", Some("198.18.1.1"), Some(0)),
        ],
        routes: vec![Route::new(
            "198.19.0.0/16".parse().unwrap(),
            Some("198.18.0.1".parse().unwrap()),
        )],
        ..Default::default()
    };
    assert_eq!(
        r.to_json("0.2.0").unwrap(),
        json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "198.18.0.7/24", "routes": [{"dst": "198.19.0.0/16", "gw": "198.18.0.1"}]},
            "ip6": {"ip": "2001:db8::7/64"},
            "dns": {}
        })
    );
    // Routes of a family with no address are dropped (Go's convertTo02x).
    let v6_only = CniResult {
        ips: vec![r.ips[0].clone()],
        routes: r.routes.clone(),
        ..Default::default()
    };
    assert_eq!(
        v6_only.to_json("0.1.0").unwrap(),
        json!({"cniVersion": "0.1.0", "ip6": {"ip": "2001:db8::7/64"}, "dns": {}})
    );
    // 0.2.0 needs at least one address.
    let e = CniResult::default().to_json("0.2.0").unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (999, "cannot convert: no valid IP addresses")
    );
}

#[test]
fn unknown_versions_are_code_1() {
    let r = full_result();
    for v in ["2.0.0", "1.2.0", "0.5.0", "abc"] {
        assert_eq!(r.to_json(v).unwrap_err().code, 1, "{v}");
        assert_eq!(
            CniResult::from_json(v, br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            1,
            "{v}"
        );
    }
    assert_eq!(
        CniResult::parse(br#"{"cniVersion":"9.9.9"}"#)
            .unwrap_err()
            .code,
        1
    );
}

#[test]
fn parse_details() {
    // 0.1.0 results may omit cniVersion.
    let r = CniResult::parse(br#"{"ip4":{"ip":"198.18.0.5/24"}}"#).unwrap();
    assert_eq!(r.ips.len(), 1);
    // Declared family must match the JSON's own version.
    assert_eq!(
        CniResult::from_json("1.0.0", br#"{"cniVersion":"0.4.0"}"#)
            .unwrap_err()
            .code,
        6
    );
    assert_eq!(
        CniResult::from_json("0.4.0", br#"{"ips":[]}"#)
            .unwrap_err()
            .code,
        6
    );
    assert!(CniResult::from_json("0.3.0", br#"{"cniVersion":"0.4.0"}"#).is_ok());
    // Go-style leniency: nulls, empty strings, zero ints.
    let r = CniResult::parse(
        br#"{"cniVersion":"1.1.0","interfaces":null,"ips":[{"address":"198.18.0.5/24","gateway":""}],
            "routes":[{"dst":"0.0.0.0/0","gw":"","mtu":0,"table":0}],"dns":{"nameservers":null,"domain":""}}"#,
    )
    .unwrap();
    assert_eq!(r.ips[0].gateway, None);
    assert_eq!(r.routes[0].mtu, None);
    assert_eq!(r.routes[0].table, Some(0));
    assert!(r.dns.is_empty());
    // Bad inputs are decoding errors.
    for bad in [
        &br#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.5"}]}"#[..],
        br#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.5/24","gateway":"x"}]}"#,
        br#"{"cniVersion":"1.0.0","routes":[{"gw":"198.18.0.1"}]}"#,
        br#"{"cniVersion":"1.0.0""#,
    ] {
        assert_eq!(
            CniResult::parse(bad).unwrap_err().code,
            6,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // Host bits are kept in addresses.
    let r =
        CniResult::parse(br#"{"cniVersion":"1.0.0","ips":[{"address":"198.18.0.5/24"}]}"#).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "198.18.0.5/24");
}

#[test]
fn pretty_uses_go_indent() {
    let r = CniResult {
        ips: vec![ip_config("198.18.0.5/24", None, None)],
        ..Default::default()
    };
    let s = r.to_string_pretty("1.0.0").unwrap();
    assert!(
        s.contains("\n    \"ips\": [\n        {\n            \"address\""),
        "{s}"
    );
}

#[test]
fn as_version_matches_round_trip() {
    let r = full_result();
    for v in SUPPORTED_VERSIONS {
        let through = r.as_version(v).unwrap();
        let bytes = r.to_string_pretty(v).unwrap();
        assert_eq!(through, CniResult::parse(bytes.as_bytes()).unwrap(), "{v}");
    }
    assert_eq!(r.as_version("1.1.0").unwrap(), r);
    assert_eq!(r.as_version("0.2.0").unwrap().ips.len(), 2);
    assert!(r.as_version("1.0.0").unwrap().interfaces[1].mtu.is_none());
}
