#![allow(clippy::unwrap_used)]
//! Differential tests against the reference Go plugins in /usr/lib/cni
//! (Debian containernetworking-plugins). Skipped when they are not installed.
//! Only `static` and `host-local` (with a private dataDir) are run: neither touches
//! the network; both are given a netns path that does not exist.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use macvnet_cni::delegate::Delegate;
use macvnet_cni::skel::{run_with, Env, Plugin, Request};
use macvnet_cni::types::CniResult;
use macvnet_cni::version::VersionInfo;
use macvnet_cni::CniError;
use serde_json::{json, Value};

const REF_DIR: &str = "/usr/lib/cni";
static N: AtomicU32 = AtomicU32::new(0);

fn reference(name: &str) -> Option<Delegate> {
    let p = Path::new(REF_DIR).join(name);
    if !p.exists() {
        eprintln!(
            "skipping: {} not installed (apt-get install containernetworking-plugins)",
            p.display()
        );
        return None;
    }
    Some(
        Delegate::new(vec![PathBuf::from(REF_DIR)])
            .with_env("CNI_CONTAINERID", "mvt-ctr")
            .with_env("CNI_NETNS", "/run/netns/mvt-nonexistent")
            .with_env("CNI_IFNAME", "eth0")
            .with_env("CNI_PATH", REF_DIR),
    )
}

fn ref_versions(d: &Delegate, name: &str) -> Vec<String> {
    let out = d
        .exec(name, "VERSION", br#"{"cniVersion":"1.0.0"}"#)
        .unwrap();
    let info = VersionInfo::decode(&out).unwrap();
    // Our type re-serializes the reference's reply unchanged.
    assert_eq!(
        serde_json::to_value(&info).unwrap(),
        serde_json::from_slice::<Value>(&out).unwrap()
    );
    info.supported_versions
}

/// Parse with our types, re-serialize at the same version: must equal the reference output.
/// The Debian 1.1.1 plugins vendor an older Go library that printed an empty `"dns": {}`
/// in 1.x results; the current library (and we) omit it. Same meaning; normalize.
fn normalize(version: &str, mut v: Value) -> Value {
    if version.starts_with("1.") && v.get("dns") == Some(&json!({})) {
        v.as_object_mut().unwrap().remove("dns");
    }
    v
}

fn assert_reserializes(version: &str, raw: &[u8]) -> CniResult {
    let want = normalize(version, serde_json::from_slice(raw).unwrap());
    let ours = CniResult::from_json(version, raw).unwrap();
    assert_eq!(ours.to_json(version).unwrap(), want, "version {version}");
    assert_eq!(CniResult::parse(raw).unwrap(), ours);
    ours
}

fn static_conf(version: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "cniVersion": version, "name": "mvt-net", "type": "outer",
        "ipam": {
            "type": "static",
            "addresses": [
                {"address": "198.18.0.5/24", "gateway": "198.18.0.1"},
                {"address": "2001:db8::5/64"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:1::/48", "gw": "2001:db8::1"}],
            "dns": {"nameservers": ["198.18.0.53"], "domain": "example.test", "search": ["a.test"], "options": ["ndots:2"]}
        }
    }))
    .unwrap()
}

#[test]
fn static_results_every_version() {
    let Some(d) = reference("static") else { return };
    let versions = ref_versions(&d, "static");
    assert!(versions.len() >= 6, "{versions:?}");
    let mut outputs = Vec::new();
    for v in &versions {
        let raw = d.exec("static", "ADD", &static_conf(v)).unwrap();
        let ours = assert_reserializes(v, &raw);
        // Byte for byte too: same field order and 4-space indent as the Go library.
        assert_eq!(
            ours.to_string_pretty(v).unwrap(),
            String::from_utf8_lossy(&raw),
            "{v}"
        );
        outputs.push((v.clone(), raw, ours));
    }
    // Converting the newest reference output down gives each older reference output.
    let (newest_v, _, newest) = outputs.last().unwrap();
    for (v, raw, _) in &outputs {
        let want = normalize(v, serde_json::from_slice(raw).unwrap());
        assert_eq!(newest.to_json(v).unwrap(), want, "{newest_v} -> {v}");
    }
}

#[test]
fn host_local_results() {
    let Some(d) = reference("host-local") else {
        return;
    };
    let n = N.fetch_add(1, Ordering::SeqCst);
    let data = std::env::temp_dir().join(format!("mvt-{}-{n}-hostlocal", std::process::id()));
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _guard = Cleanup(data.clone());
    for (i, v) in ref_versions(&d, "host-local").iter().enumerate() {
        let conf = serde_json::to_vec(&json!({
            "cniVersion": v, "name": "mvt-net", "type": "outer",
            "ipam": {
                "type": "host-local", "dataDir": data,
                "ranges": [[{"subnet": "198.18.0.0/24"}], [{"subnet": "2001:db8::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
            }
        }))
        .unwrap();
        let d = d
            .clone()
            .with_env("CNI_CONTAINERID", format!("mvt-ctr-{i}"));
        let raw = d.exec("host-local", "ADD", &conf).unwrap();
        let ours = assert_reserializes(v, &raw);
        assert_eq!(ours.ips.len(), 2, "{v}");
        // Delegate::add reads the same shape (host-local moves on to the next address).
        d.del("host-local", &conf).unwrap();
        let again = d.add("host-local", &conf).unwrap();
        assert_eq!((again.ips.len(), &again.routes), (2, &ours.routes), "{v}");
        d.del("host-local", &conf).unwrap();
    }
}

#[test]
fn reference_errors_parse() {
    let Some(d) = reference("static") else { return };
    // The reference prints errors without cniVersion; the code must survive.
    let e = d
        .add(
            "static",
            br#"{"cniVersion":"1.0.0","name":"mvt-net","type":"x"}"#,
        )
        .unwrap_err();
    assert_eq!(e.code, 999);
    assert!(e.msg.contains("ipam"), "{}", e.msg);
    let e = d.check("static", &static_conf("0.3.1")).unwrap_err();
    assert_eq!(
        e,
        CniError::incompatible_version("config version does not allow CHECK")
    );
}

struct Nop;
impl Plugin for Nop {
    fn add(&self, _: &Request) -> Result<CniResult, CniError> {
        Err(CniError::internal("not reached"))
    }
    fn del(&self, _: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

/// The skel's error codes and messages match the reference's for the same inputs.
#[test]
fn skel_errors_match_reference() {
    let Some(d) = reference("static") else { return };
    let good = static_conf("1.0.0");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            "ADD",
            vec![("CNI_NETNS", ""), ("CNI_PATH", "")],
            good.clone(),
        ),
        (
            "ADD",
            vec![("CNI_CONTAINERID", ""), ("CNI_IFNAME", "")],
            good.clone(),
        ),
        ("DEL", vec![("CNI_IFNAME", "")], good.clone()),
        ("CHECK", vec![("CNI_NETNS", "")], good.clone()),
        (
            "ADD",
            vec![("CNI_IFNAME", "way-too-long-ifname")],
            good.clone(),
        ),
        ("FROB", vec![], good.clone()),
        ("ADD", vec![], b"{nope".to_vec()),
        ("ADD", vec![], br#"{"cniVersion":"1.0.0"}"#.to_vec()),
        (
            "ADD",
            vec![],
            br#"{"cniVersion":"1.0.0","name":"bad name"}"#.to_vec(),
        ),
        ("CHECK", vec![], static_conf("0.3.1")),
        ("ADD", vec![], static_conf("9.0.0")),
    ];
    for (cmd, overrides, stdin) in cases {
        let mut dd = d.clone();
        let mut env = Env::new()
            .with("CNI_COMMAND", cmd)
            .with("CNI_CONTAINERID", "mvt-ctr")
            .with("CNI_NETNS", "/run/netns/mvt-nonexistent")
            .with("CNI_IFNAME", "eth0")
            .with("CNI_PATH", REF_DIR);
        for (k, v) in &overrides {
            env.set(*k, *v);
            dd = dd.with_env(*k, *v);
        }
        let theirs = dd.exec("static", cmd, &stdin).unwrap_err();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_with(&Nop, "", &env, &stdin, &mut out, &mut err), 1);
        let ours = CniError::from_json(&out).unwrap();
        assert_eq!(
            ours.code, theirs.code,
            "{cmd} {overrides:?}: {} vs {}",
            ours.msg, theirs.msg
        );
        // JSON syntax errors are worded by each JSON library; compare up to the colon.
        let head = |m: &str| m.split(':').next().unwrap_or("").to_string();
        if ours.code == 6 {
            assert_eq!(head(&ours.msg), head(&theirs.msg));
        } else {
            assert_eq!(ours.msg, theirs.msg, "{cmd} {overrides:?}");
        }
    }
}
