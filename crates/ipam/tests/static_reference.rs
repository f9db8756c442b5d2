//! Differential tests of static against the reference /usr/lib/cni/static.
#![allow(clippy::unwrap_used)]

mod common;

use macvnet_ipam::static_ipam;

const STATIC: &str = "/usr/lib/cni/static";

fn without_empty_dns(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        if m.get("dns")
            .is_some_and(|d| d.as_object().is_some_and(|o| o.is_empty()))
        {
            m.remove("dns");
        }
    }
    v
}

#[test]
fn same_results_and_errors_as_reference() {
    if !std::path::Path::new(STATIC).exists() {
        eprintln!("SKIP: {STATIC} missing");
        return;
    }
    let base =
        r#"{"cniVersion":"1.0.0","name":"s","type":"macvlan","ipam":{"type":"static"IPAM}EXTRA}"#;
    let cases: &[(&str, &str, &str)] = &[
        (
            r#","addresses":[{"address":"198.18.0.5/24","gateway":"198.18.0.1"},{"address":"2001:db8::5/64","gateway":"2001:db8::1"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"198.19.0.0/16","gw":"198.18.0.9"}],"dns":{"nameservers":["198.18.0.53"],"domain":"example.test","search":["a.test"],"options":["ndots:1"]}"#,
            "",
            "",
        ),
        (
            r#","addresses":[{"address":"198.18.0.5/24"}]"#,
            "",
            "IP=198.18.1.5/24,2001:db8:1::5/64;GATEWAY=198.18.1.1,2001:db8:1::1",
        ),
        (
            r#","addresses":[{"address":"198.18.0.5/24"}]"#,
            "",
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=198.18.1.5/24",
        ),
        (
            "",
            r#","args":{"cni":{"ips":["198.18.2.5/24","2001:db8:2::5/64"]}}"#,
            "IP=198.18.1.5/24",
        ),
        (
            "",
            r#","runtimeConfig":{"ips":["198.18.3.5/24"]},"args":{"cni":{"ips":["198.18.2.5/24"]}}"#,
            "",
        ),
        (r#","addresses":[{"address":"198.18.0.5"}]"#, "", ""),
        ("", "", "IP=198.18.1.5"),
        ("", "", "IP=198.18.1.5/24;GATEWAY=nope"),
        ("", r#","runtimeConfig":{"ips":["bad"]}"#, ""),
        ("", "", "FOO=bar"),
        ("", "", ""),
    ];
    for (n, (ipam, extra, args)) in cases.iter().enumerate() {
        let conf = base.replace("IPAM", ipam).replace("EXTRA", extra);
        let theirs = common::run_plugin(STATIC, "ADD", &conf, "c1", "eth0", args)
            .map(without_empty_dns)
            .map_err(|e| e["msg"].as_str().unwrap_or("?").to_string());
        let ours = static_ipam::add(conf.as_bytes(), args)
            .map(|r| r.to_json("1.0.0").unwrap())
            .map_err(|e| e.to_string());
        assert_eq!(theirs, ours, "case {n}: {conf} / {args}");
    }
}
