#![allow(clippy::unwrap_used)]
//! Network config parsing and the error JSON shape.

use macvnet_cni::error::{code, CniError};
use macvnet_cni::types::{GcAttachment, NetConf};
use serde_json::json;

#[test]
fn error_json_shape() {
    let e = CniError::invalid_config("Invalid Configuration")
        .with_details("Network 198.18.0.0/31 too small");
    assert_eq!(
        e.to_json("1.1.0"),
        json!({"cniVersion": "1.1.0", "code": 7, "msg": "Invalid Configuration", "details": "Network 198.18.0.0/31 too small"})
    );
    // details omitted when empty
    assert_eq!(
        CniError::io("x").to_json("0.4.0"),
        json!({"cniVersion": "0.4.0", "code": 5, "msg": "x"})
    );
    let pretty = CniError::io("x").to_string_pretty("1.0.0");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pretty).unwrap()["code"],
        5
    );
    assert!(pretty.contains("\n    \"code\": 5"));
    assert_eq!(
        e.to_string(),
        "Invalid Configuration; Network 198.18.0.0/31 too small"
    );
    assert_eq!(CniError::io("x").to_string(), "x");
    // parse with or without cniVersion
    let back =
        CniError::from_json(br#"{"cniVersion":"1.1.0","code":7,"msg":"m","details":"d"}"#).unwrap();
    assert_eq!(back, CniError::new(7, "m", "d"));
    assert_eq!(
        CniError::from_json(br#"{"code":11,"msg":"later"}"#).unwrap(),
        CniError::try_again_later("later")
    );
}

#[test]
fn constructor_codes() {
    let cases = [
        (CniError::incompatible_version(""), 1),
        (CniError::unsupported_field(""), 2),
        (CniError::unknown_container(""), 3),
        (CniError::invalid_env(""), 4),
        (CniError::io(""), 5),
        (CniError::decoding(""), 6),
        (CniError::invalid_config(""), 7),
        (CniError::invalid_netns(""), 8),
        (CniError::try_again_later(""), 11),
        (CniError::not_available(""), 50),
        (CniError::limited_connectivity(""), 51),
        (CniError::internal(""), 999),
        (CniError::plugin(120, ""), 120),
        (CniError::plugin(7, ""), 107),
    ];
    for (e, c) in cases {
        assert_eq!(e.code, c);
    }
    assert_eq!(code::PLUGIN_NOT_AVAILABLE, 50);
}

#[test]
fn netconf_fields() {
    let raw = br#"{
        "cniVersion": "1.1.0", "name": "net1", "type": "macvlan",
        "master": "veth0", "mode": "bridge", "mtu": 1400,
        "capabilities": {"mac": true, "ips": false},
        "ipam": {"type": "host-local", "subnet": "198.18.0.0/24"},
        "dns": {"nameservers": ["198.18.0.53"]},
        "args": {"cni": {"ips": ["198.18.0.9"]}},
        "RuntimeConfig": {"mac": "02:00:00:00:00:09"},
        "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "198.18.0.9/24"}]},
        "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
    }"#;
    let c = NetConf::parse(raw).unwrap();
    assert_eq!(
        (
            c.cni_version.as_str(),
            c.name.as_str(),
            c.plugin_type.as_str()
        ),
        ("1.1.0", "net1", "macvlan")
    );
    assert!(c.has_capability("mac"));
    assert!(!c.has_capability("ips"));
    assert!(!c.has_capability("nope"));
    assert_eq!(c.ipam_type(), Some("host-local"));
    assert_eq!(c.ipam.as_ref().unwrap().raw["subnet"], "198.18.0.0/24");
    assert_eq!(c.dns.as_ref().unwrap().nameservers, vec!["198.18.0.53"]);
    assert_eq!(c.args_cni("ips").unwrap(), &json!(["198.18.0.9"]));
    assert_eq!(
        c.runtime_config::<String>("mac").unwrap().as_deref(),
        Some("02:00:00:00:00:09")
    );
    assert_eq!(c.runtime_config::<String>("absent").unwrap(), None);
    assert_eq!(c.runtime_config::<u32>("mac").unwrap_err().code, 6);
    assert_eq!(
        c.valid_attachments,
        vec![GcAttachment {
            container_id: "c1".into(),
            ifname: "eth0".into()
        }]
    );
    assert_eq!(c.rest.len(), 3);
    assert_eq!(
        c.rest_field::<String>("master").unwrap().as_deref(),
        Some("veth0")
    );
    assert_eq!(c.rest_field::<u32>("mtu").unwrap(), Some(1400));
    let prev = c.prev_result().unwrap().unwrap();
    assert_eq!(prev.ips[0].address.to_string(), "198.18.0.9/24");

    #[derive(serde::Deserialize)]
    struct Ipam {
        subnet: String,
    }
    assert_eq!(
        c.ipam.as_ref().unwrap().parse_as::<Ipam>().unwrap().subnet,
        "198.18.0.0/24"
    );
}

#[test]
fn netconf_spellings_and_defaults() {
    let c = NetConf::parse(
        br#"{"name":"n","type":"t","runtimeConfig":{"a":1},"RuntimeConfig":{"a":2}}"#,
    )
    .unwrap();
    assert_eq!(c.runtime_config::<u32>("a").unwrap(), Some(1));
    assert_eq!(c.version(), "0.1.0");
    assert!(c.ipam.is_none());
    assert_eq!(c.ipam_type(), None);
    assert!(c.prev_result().unwrap().is_none());
    let c = NetConf::parse(br#"{"name":"n","ipam":{}}"#).unwrap();
    assert_eq!(c.ipam_type(), None);
    for bad in [
        &b"[]"[..],
        b"{",
        br#"{"name":5}"#,
        br#"{"ipam":"x"}"#,
        br#"{"ipam":{"type":1}}"#,
        br#"{"cni.dev/valid-attachments":[{}]}"#,
    ] {
        assert_eq!(
            NetConf::parse(bad).unwrap_err().code,
            6,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn prev_result_versions() {
    // A prevResult without cniVersion takes the config's.
    let c = NetConf::parse(
        br#"{"cniVersion":"0.4.0","name":"n","prevResult":{"ips":[{"version":"4","address":"198.18.0.9/24"}]}}"#,
    )
    .unwrap();
    assert_eq!(c.prev_result().unwrap().unwrap().ips.len(), 1);
    let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"0.2.0","ip4":{"ip":"198.18.0.9/24"}}}"#)
        .unwrap();
    assert_eq!(
        c.prev_result().unwrap().unwrap().ips[0].address.to_string(),
        "198.18.0.9/24"
    );
    let c = NetConf::parse(
        br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"bad"}]}}"#,
    )
    .unwrap();
    let e = c.prev_result().unwrap_err();
    assert_eq!(e.code, 6);
    assert!(e.msg.starts_with("could not parse prevResult"), "{}", e.msg);
}
