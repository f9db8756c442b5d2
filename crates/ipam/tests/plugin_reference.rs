//! Whole-plugin differential test: our `HostLocalPlugin`/`StaticPlugin` through
//! the cni skel vs the reference binaries, stdout compared byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use common::{conf, reference, run_raw, snapshot, TempDir};
use macvnet_cni::skel::Env;
use macvnet_ipam::{HostLocalPlugin, StaticPlugin};

fn env(command: &str, id: &str, ifname: &str, args: &str) -> Env {
    Env::new()
        .with("CNI_COMMAND", command)
        .with("CNI_CONTAINERID", id)
        .with("CNI_NETNS", "/var/run/netns/mvt-unused")
        .with("CNI_IFNAME", ifname)
        .with("CNI_PATH", "/usr/lib/cni")
        .with("CNI_ARGS", args)
}

/// (exit status, stdout) of the reference binary.
fn reference_raw(bin: &str, command: &str, conf: &str, id: &str, args: &str) -> (bool, Vec<u8>) {
    run_raw(bin, command, conf, id, "eth0", args)
}

fn ours_raw<P: macvnet_cni::Plugin>(
    p: &P,
    command: &str,
    conf: &str,
    id: &str,
    args: &str,
) -> (bool, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let rc = macvnet_cni::run_with(
        p,
        "test",
        &env(command, id, "eth0", args),
        conf.as_bytes(),
        &mut out,
        &mut err,
    );
    (rc == 0, out)
}

/// Errors: same code and message (our reply also carries cniVersion, per spec).
fn same_error(a: &[u8], b: &[u8]) {
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(a).unwrap(),
        serde_json::from_slice(b).unwrap(),
    );
    assert_eq!(a["code"], b["code"], "{a} vs {b}");
    assert_eq!(a["msg"], b["msg"], "{a} vs {b}");
}

#[test]
fn host_local_plugin_output_is_byte_identical() {
    if reference().is_none() {
        return;
    }
    let t = TempDir::new("plug");
    let rc = t.path.join("resolv.conf");
    std::fs::write(
        &rc,
        "nameserver 198.18.0.53\ndomain example.test\nsearch example.test\n",
    )
    .unwrap();
    for (n, version) in ["0.2.0", "0.3.1", "0.4.0", "1.0.0"].iter().enumerate() {
        let (a, b) = (TempDir::new("plug-ref"), TempDir::new("plug-ours"));
        // 0.2.0 allows one address per family.
        let extra = format!(
            r#","resolvConf":"{}","ranges":[[{{"subnet":"198.18.{n}.0/24"}}],[{{"subnet":"2001:db8:{n}::/64"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]"#,
            rc.display()
        );
        let (ca, cb) = (
            conf(&a.path, "pn", version, &extra),
            conf(&b.path, "pn", version, &extra),
        );
        for (cmd, id, args) in [
            ("ADD", "p1", ""),
            ("ADD", "p2", "IP=198.18.0.50"),
            ("ADD", "p1", ""),
            ("CHECK", "p1", ""),
            ("CHECK", "zz", ""),
            ("DEL", "p1", ""),
            ("DEL", "p1", ""),
            ("ADD", "p3", ""),
        ] {
            if cmd == "CHECK" && *version != "0.4.0" && *version != "1.0.0" {
                continue;
            }
            let (ok_a, out_a) = reference_raw(common::REFERENCE, cmd, &ca, id, args);
            let (ok_b, out_b) = ours_raw(&HostLocalPlugin, cmd, &cb, id, args);
            let ctx = format!(
                "{version} {cmd} {id} {args}:\n{}\nvs\n{}",
                String::from_utf8_lossy(&out_a),
                String::from_utf8_lossy(&out_b)
            );
            assert_eq!(ok_a, ok_b, "{ctx}");
            if ok_a {
                assert_eq!(out_a, out_b, "{ctx}");
            } else {
                same_error(&out_a, &out_b);
            }
            assert_eq!(
                snapshot(&a.path.join("pn")),
                snapshot(&b.path.join("pn")),
                "{ctx}"
            );
        }
    }
}

#[test]
fn static_plugin_output_is_byte_identical() {
    let bin = "/usr/lib/cni/static";
    if !std::path::Path::new(bin).exists() {
        eprintln!("SKIP: {bin} missing");
        return;
    }
    for version in ["0.2.0", "0.3.1", "0.4.0", "1.0.0"] {
        let c = format!(
            r#"{{"cniVersion":"{version}","name":"s","type":"x","ipam":{{"type":"static","addresses":[{{"address":"198.18.0.5/24","gateway":"198.18.0.1"}},{{"address":"2001:db8::5/64"}}],"routes":[{{"dst":"0.0.0.0/0"}}],"dns":{{"nameservers":["198.18.0.53"]}}}}}}"#
        );
        let (ok_a, out_a) = reference_raw(bin, "ADD", &c, "s1", "");
        let (ok_b, out_b) = ours_raw(&StaticPlugin, "ADD", &c, "s1", "");
        assert!(ok_a && ok_b);
        assert_eq!(
            String::from_utf8_lossy(&out_a),
            String::from_utf8_lossy(&out_b),
            "{version}"
        );
    }
}
