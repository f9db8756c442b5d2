#![allow(clippy::unwrap_used)]
//! The skel: env table per command, version gates, VERSION, error JSON, limits.

use std::cell::RefCell;

use macvnet_cni::skel::{run_with, Command, Env, Plugin, Request, MAX_STDIN};
use macvnet_cni::types::{CniResult, IpConfig};
use macvnet_cni::version::SUPPORTED_VERSIONS;
use macvnet_cni::CniError;
use serde_json::{json, Value};

#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<Request>>,
    fail: Option<CniError>,
    result: CniResult,
    versions: Option<&'static [&'static str]>,
}

impl Fake {
    fn record(&self, req: &Request) -> Result<(), CniError> {
        self.calls.borrow_mut().push(req.clone());
        match &self.fail {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
    fn last(&self) -> Request {
        self.calls.borrow().last().cloned().unwrap()
    }
}

impl Plugin for Fake {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        self.record(req)?;
        Ok(self.result.clone())
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn supported_versions(&self) -> &[&'static str] {
        self.versions.unwrap_or(SUPPORTED_VERSIONS)
    }
}

fn env(cmd: &str) -> Env {
    Env::new()
        .with("CNI_COMMAND", cmd)
        .with("CNI_CONTAINERID", "ctr-1")
        .with("CNI_NETNS", "/run/netns/does-not-exist-mvt")
        .with("CNI_IFNAME", "eth0")
        .with("CNI_PATH", "/opt/cni/bin::/usr/lib/cni")
}

fn conf(version: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"cniVersion": version, "name": "net1", "type": "fake", "master": "veth0"}),
    )
    .unwrap()
}

struct Out {
    rc: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout not JSON ({e}): {:?}", self.stdout))
    }
    fn err(&self) -> (u64, String) {
        assert_eq!(self.rc, 1, "stdout: {}", self.stdout);
        let v = self.json();
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_string(),
        )
    }
}

fn invoke(p: &Fake, env: &Env, stdin: &[u8]) -> Out {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let rc = run_with(p, "CNI fake plugin v0", env, stdin, &mut out, &mut err);
    Out {
        rc,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

#[test]
fn no_command_prints_about() {
    let p = Fake::default();
    let o = invoke(&p, &Env::new(), b"");
    assert_eq!(o.rc, 0);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        "CNI fake plugin v0\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
    );
    // Without an about string it is a plain missing-variable error.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run_with(&p, "", &Env::new(), b"", &mut out, &mut err), 1);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"cniVersion": "1.1.0", "code": 4, "msg": "required env variables [CNI_COMMAND] missing"})
    );
}

#[test]
fn env_table_per_command() {
    let required: &[(&str, &[&str])] = &[
        (
            "ADD",
            &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        ),
        (
            "CHECK",
            &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        ),
        ("DEL", &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
        ("GC", &["CNI_PATH"]),
        ("STATUS", &["CNI_PATH"]),
        ("VERSION", &[]),
    ];
    let all = [
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_PATH",
        "CNI_ARGS",
    ];
    for (cmd, req) in required {
        for var in all {
            let mut e = env(cmd);
            e.remove(var);
            let o = invoke(&Fake::default(), &e, &conf("1.1.0"));
            if req.contains(&var) {
                assert_eq!(
                    o.err(),
                    (4, format!("required env variables [{var}] missing")),
                    "{cmd} without {var}"
                );
            } else {
                assert_eq!(o.rc, 0, "{cmd} without {var}: {}", o.stdout);
            }
            // Empty counts as missing.
            let o = invoke(&Fake::default(), &env(cmd).with(var, ""), &conf("1.1.0"));
            assert_eq!(o.rc != 0, req.contains(&var), "{cmd} with empty {var}");
        }
        let o = invoke(
            &Fake::default(),
            &Env::new().with("CNI_COMMAND", *cmd),
            &conf("1.1.0"),
        );
        if req.is_empty() {
            assert_eq!(o.rc, 0);
        } else {
            assert_eq!(
                o.err(),
                (
                    4,
                    format!("required env variables [{}] missing", req.join(","))
                ),
                "{cmd}"
            );
        }
    }
}

#[test]
fn env_values_validated() {
    let o = invoke(
        &Fake::default(),
        &env("ADD").with("CNI_CONTAINERID", "bad/id"),
        &conf("1.0.0"),
    );
    assert_eq!(o.err(), (4, "invalid characters in containerID".into()));
    assert_eq!(o.json()["details"], "bad/id");
    let o = invoke(
        &Fake::default(),
        &env("DEL").with("CNI_IFNAME", "much-too-long-name"),
        &conf("1.0.0"),
    );
    assert_eq!(o.err(), (4, "interface name is too long".into()));
    let o = invoke(
        &Fake::default(),
        &env("ADD").with("CNI_IFNAME", "a:b"),
        &conf("1.0.0"),
    );
    assert_eq!(o.err().0, 4);
    // Not validated where not required (GC does not use them).
    let o = invoke(
        &Fake::default(),
        &env("GC").with("CNI_CONTAINERID", "bad/id"),
        &conf("1.1.0"),
    );
    assert_eq!(o.rc, 0, "{}", o.stdout);
    let o = invoke(&Fake::default(), &env("FROB"), &conf("1.1.0"));
    assert_eq!(o.err(), (4, "unknown CNI_COMMAND: FROB".into()));
}

#[test]
fn add_writes_result_in_config_version() {
    let p = Fake {
        result: CniResult {
            ips: vec![IpConfig {
                address: "198.18.0.5/24".parse().unwrap(),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    for v in SUPPORTED_VERSIONS {
        let o = invoke(
            &p,
            &env("ADD").with("CNI_ARGS", "IgnoreUnknown=1;K=V"),
            &conf(v),
        );
        assert_eq!(o.rc, 0, "{v}: {}", o.stdout);
        assert_eq!(o.json(), p.result.to_json(v).unwrap());
        assert!(
            o.stdout.starts_with("{\n    \""),
            "Go-style indent: {}",
            o.stdout
        );
    }
    // No cniVersion in the config: 0.1.0.
    let o = invoke(&p, &env("ADD"), br#"{"name":"net1","type":"fake"}"#);
    assert_eq!(o.json()["cniVersion"], "0.1.0");

    let req = p.last();
    assert_eq!(req.command, Command::Add);
    assert_eq!(req.container_id, "ctr-1");
    assert_eq!(req.ifname, "eth0");
    assert_eq!(
        req.netns.as_deref().unwrap().to_str().unwrap(),
        "/run/netns/does-not-exist-mvt"
    );
    assert_eq!(req.path.len(), 2);
    assert_eq!(req.path_raw, "/opt/cni/bin::/usr/lib/cni");
    let calls = p.calls.borrow();
    let with_args = &calls[0];
    assert_eq!(with_args.args().unwrap().get("K"), Some("V"));
    assert_eq!(with_args.config.rest["master"], "veth0");
    assert_eq!(with_args.stdin, conf("0.1.0"));
}

#[test]
fn add_result_conversion_failure() {
    // An empty result cannot be expressed in 0.2.0.
    let o = invoke(&Fake::default(), &env("ADD"), &conf("0.2.0"));
    assert_eq!(
        o.err(),
        (999, "cannot convert: no valid IP addresses".into())
    );
}

#[test]
fn del_without_netns() {
    let p = Fake::default();
    let mut e = env("DEL");
    e.remove("CNI_NETNS");
    let o = invoke(&p, &e, &conf("1.0.0"));
    assert_eq!((o.rc, o.stdout.as_str()), (0, ""));
    assert!(p.last().netns.is_none());
    assert_eq!(p.last().netns_path().unwrap_err().code, 4);
}

#[test]
fn version_command() {
    let p = Fake::default();
    let e = Env::new().with("CNI_COMMAND", "VERSION");
    let o = invoke(&p, &e, br#"{"cniVersion":"0.4.0"}"#);
    assert_eq!(o.rc, 0);
    assert_eq!(
        o.json(),
        json!({"cniVersion": "0.4.0", "supportedVersions": SUPPORTED_VERSIONS})
    );
    let o = invoke(&p, &e, b"");
    assert_eq!(o.json()["cniVersion"], "1.1.0");
    let o = invoke(&p, &e, b"garbage");
    assert_eq!(o.json()["cniVersion"], "1.1.0");
    let limited = Fake {
        versions: Some(&["0.4.0", "1.0.0"]),
        ..Default::default()
    };
    let o = invoke(&limited, &e, b"");
    assert_eq!(o.json()["supportedVersions"], json!(["0.4.0", "1.0.0"]));
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn check_needs_0_4_0() {
    let p = Fake::default();
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
        let o = invoke(&p, &env("CHECK"), &conf(v));
        assert_eq!(
            o.err(),
            (1, "config version does not allow CHECK".into()),
            "{v}"
        );
        assert_eq!(o.json()["cniVersion"], v);
    }
    assert!(p.calls.borrow().is_empty());
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        assert_eq!(invoke(&p, &env("CHECK"), &conf(v)).rc, 0, "{v}");
    }
    assert_eq!(p.calls.borrow().len(), 3);
    let old = Fake {
        versions: Some(&["0.3.1", "0.4.0"]),
        ..Default::default()
    };
    let o = invoke(&old, &env("CHECK"), &conf("1.0.0"));
    assert_eq!(o.err(), (1, "plugin version does not allow CHECK".into()));
}

#[test]
fn gc_and_status_need_1_1_0() {
    for cmd in ["GC", "STATUS"] {
        let p = Fake::default();
        for v in ["0.4.0", "1.0.0"] {
            let o = invoke(&p, &env(cmd), &conf(v));
            assert_eq!(
                o.err(),
                (1, format!("config version does not allow {cmd}")),
                "{cmd} {v}"
            );
        }
        let o = invoke(&p, &env(cmd), &conf("1.1.0"));
        assert_eq!((o.rc, o.stdout.as_str()), (0, ""));
        let old = Fake {
            versions: Some(&["0.4.0", "1.0.0"]),
            ..Default::default()
        };
        let o = invoke(&old, &env(cmd), &conf("1.1.0"));
        assert_eq!(o.err(), (1, format!("plugin version does not allow {cmd}")));
    }
    let p = Fake::default();
    let gc = br#"{"cniVersion":"1.1.0","name":"net1","type":"fake",
        "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"net1"}]}"#;
    let o = invoke(
        &p,
        &Env::new().with("CNI_COMMAND", "GC").with("CNI_PATH", "/x"),
        gc,
    );
    assert_eq!(o.rc, 0, "{}", o.stdout);
    let req = p.last();
    assert_eq!(req.command, Command::Gc);
    assert_eq!(req.config.valid_attachments.len(), 2);
    assert_eq!(req.config.valid_attachments[1].ifname, "net1");
    assert_eq!(req.container_id, "");
}

#[test]
fn config_errors() {
    let p = Fake::default();
    let o = invoke(&p, &env("ADD"), b"{not json");
    assert_eq!(o.err().0, 6);
    assert!(o.err().1.starts_with("error unmarshall network config"));
    assert_eq!(
        invoke(&p, &env("ADD"), br#"{"cniVersion":"1.0.0"}"#).err(),
        (7, "missing network name".into())
    );
    let o = invoke(
        &p,
        &env("DEL"),
        br#"{"cniVersion":"1.0.0","name":"bad name"}"#,
    );
    assert_eq!(
        o.err(),
        (7, "invalid characters found in network name".into())
    );
    assert_eq!(o.json()["details"], "bad name");
    let o = invoke(&p, &env("ADD"), &conf("2.0.0"));
    assert_eq!(o.err(), (1, "incompatible CNI versions".into()));
    assert_eq!(
        o.json()["details"],
        r#"config is "2.0.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
    );
    assert_eq!(invoke(&p, &env("CHECK"), &conf("x.y")).err().0, 6);
    let o = invoke(
        &p,
        &env("ADD"),
        br#"{"cniVersion":"1.0.0","name":"n","ipam":"nope"}"#,
    );
    assert_eq!(o.err().0, 6);
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn huge_stdin_refused() {
    let p = Fake::default();
    let mut big = b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"pad\":\"".to_vec();
    big.resize(MAX_STDIN + 10, b'a');
    big.extend_from_slice(b"\"}");
    let o = invoke(&p, &env("ADD"), &big);
    assert_eq!(o.err().0, 6);
    assert!(p.calls.borrow().is_empty());
    // Exactly at the limit is fine.
    let mut ok = b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"pad\":\"".to_vec();
    ok.resize(MAX_STDIN - 2, b'a');
    ok.extend_from_slice(b"\"}");
    assert_eq!(ok.len(), MAX_STDIN);
    assert_eq!(invoke(&p, &env("DEL"), &ok).rc, 0);
}

#[test]
fn plugin_errors_pass_through() {
    let p = Fake {
        fail: Some(CniError::plugin(117, "boom").with_details("more")),
        ..Default::default()
    };
    let o = invoke(&p, &env("DEL"), &conf("0.4.0"));
    assert_eq!(o.rc, 1);
    assert_eq!(
        o.json(),
        json!({"cniVersion": "0.4.0", "code": 117, "msg": "boom", "details": "more"})
    );
    let o = invoke(&p, &env("ADD"), &conf("1.1.0"));
    assert_eq!(o.json()["code"], 117);
}

#[test]
fn own_netns_refused() {
    let p = Fake::default();
    for cmd in ["ADD", "DEL"] {
        let o = invoke(
            &p,
            &env(cmd).with("CNI_NETNS", "/proc/self/ns/net"),
            &conf("1.0.0"),
        );
        assert_eq!(
            o.err(),
            (
                8,
                "plugin's netns and netns from CNI_NETNS should not be the same".into()
            ),
            "{cmd}"
        );
    }
    assert!(p.calls.borrow().is_empty());
    for ov in ["1", "true", "TRUE"] {
        let e = env("DEL")
            .with("CNI_NETNS", "/proc/self/ns/net")
            .with("CNI_NETNS_OVERRIDE", ov);
        assert_eq!(invoke(&p, &e, &conf("1.0.0")).rc, 0);
        assert!(p.last().netns_override);
    }
}
