#![allow(clippy::unwrap_used)]
//! Delegation to a plugin binary: tiny shell-script plugins in a private temp dir.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use macvnet_cni::delegate::{find_in_path, Delegate};
use macvnet_cni::skel::{run_with, Env, Plugin, Request};
use macvnet_cni::types::CniResult;
use macvnet_cni::CniError;
use serde_json::{json, Value};

static N: AtomicU32 = AtomicU32::new(0);

/// A temp dir removed on drop, named mvt-<pid>-<n>-<tag>.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("mvt-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CONF: &[u8] =
    br#"{"cniVersion":"1.0.0","name":"net1","type":"outer","ipam":{"type":"fake-ipam"}}"#;

#[test]
fn add_parses_result_and_passes_env() {
    let d = TempDir::new("deleg-ok");
    let dir = d.path().display().to_string();
    d.script(
        "fake-ipam",
        &format!(
            r#"cat > "{dir}/stdin"
echo "$CNI_COMMAND|$CNI_CONTAINERID|$CNI_IFNAME|$CNI_NETNS|$CNI_ARGS|$CNI_PATH" > "{dir}/env"
echo 'ipam log line' >&2
printf '%s' '{{"cniVersion":"0.4.0","ips":[{{"version":"4","address":"198.18.0.9/24","gateway":"198.18.0.1"}}],"dns":{{}}}}'"#
        ),
    );
    let del = Delegate::new(vec![d.path().to_path_buf()])
        .with_env("CNI_CONTAINERID", "ctr-9")
        .with_env("CNI_IFNAME", "eth1")
        .with_env("CNI_NETNS", "/run/netns/x")
        .with_env("CNI_ARGS", "A=1")
        .with_env("CNI_PATH", &dir)
        .with_env("CNI_COMMAND", "DEL"); // overridden by the call
    let r = del.add("fake-ipam", CONF).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "198.18.0.9/24");
    assert_eq!(r.ips[0].gateway.unwrap().to_string(), "198.18.0.1");
    assert_eq!(std::fs::read(d.path().join("stdin")).unwrap(), CONF);
    assert_eq!(
        std::fs::read_to_string(d.path().join("env"))
            .unwrap()
            .trim(),
        format!("ADD|ctr-9|eth1|/run/netns/x|A=1|{dir}")
    );
    del.del("fake-ipam", CONF).unwrap();
    assert!(std::fs::read_to_string(d.path().join("env"))
        .unwrap()
        .starts_with("DEL|"));
    for (cmd, f) in [
        (
            "CHECK",
            Delegate::check as fn(&Delegate, &str, &[u8]) -> Result<(), CniError>,
        ),
        ("STATUS", Delegate::status),
        ("GC", Delegate::gc),
    ] {
        f(&del, "fake-ipam", CONF).unwrap();
        assert!(std::fs::read_to_string(d.path().join("env"))
            .unwrap()
            .starts_with(&format!("{cmd}|")));
    }
}

#[test]
fn result_without_version_takes_config_version() {
    let d = TempDir::new("deleg-nover");
    d.script(
        "fake-ipam",
        r#"cat >/dev/null; echo '{"ips":[{"address":"198.18.0.10/24"}]}'"#,
    );
    let r = Delegate::new(vec![d.path().into()])
        .add("fake-ipam", CONF)
        .unwrap();
    assert_eq!(r.ips.len(), 1);
    // Same output under a 0.4.0 config: the ips lack "version" but that is ignored, as in Go.
    let conf040 = br#"{"cniVersion":"0.4.0","name":"n"}"#;
    assert_eq!(
        Delegate::new(vec![d.path().into()])
            .add("fake-ipam", conf040)
            .unwrap(),
        r
    );
}

#[test]
fn error_json_passes_through() {
    let d = TempDir::new("deleg-err");
    d.script(
        "fake-ipam",
        r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":7,"msg":"no free addresses","details":"range 198.18.0.0/30"}'; exit 1"#,
    );
    let e = Delegate::new(vec![d.path().into()])
        .add("fake-ipam", CONF)
        .unwrap_err();
    assert_eq!(
        e,
        CniError::new(7, "no free addresses", "range 198.18.0.0/30")
    );
    let e = Delegate::new(vec![d.path().into()])
        .del("fake-ipam", CONF)
        .unwrap_err();
    assert_eq!(e.code, 7);
}

#[test]
fn failures_without_error_json() {
    let d = TempDir::new("deleg-fail");
    d.script("silent", "exit 3");
    d.script("noisy", "echo 'it broke' >&2; exit 1");
    d.script("garbage", "echo oops; exit 1");
    d.script(
        "badresult",
        "echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"nope\"}]}'",
    );
    let del = Delegate::new(vec![d.path().into()]);
    let e = del.add("silent", CONF).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (0, "netplugin failed with no error message: exit status 3")
    );
    let e = del.add("noisy", CONF).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (0, "netplugin failed: \"it broke\\n\": exit status 1")
    );
    let e = del.add("garbage", CONF).unwrap_err();
    assert_eq!(e.code, 0);
    assert!(
        e.msg
            .starts_with("netplugin failed but error parsing its diagnostic message \"oops\\n\""),
        "{}",
        e.msg
    );
    assert_eq!(del.add("badresult", CONF).unwrap_err().code, 6);
}

#[test]
fn find_rules() {
    let a = TempDir::new("deleg-find-a");
    let b = TempDir::new("deleg-find-b");
    // Not executable in the first dir: skipped.
    std::fs::write(a.path().join("p"), "#!/bin/sh\n").unwrap();
    std::fs::create_dir(a.path().join("dirplugin")).unwrap();
    let pb = b.script("p", "true");
    let paths = vec![
        PathBuf::from("/nonexistent-mvt"),
        a.path().into(),
        b.path().into(),
    ];
    assert_eq!(find_in_path("p", &paths).unwrap(), pb);
    let e = find_in_path("dirplugin", &paths).unwrap_err();
    assert_eq!(e.code, 999);
    let e = find_in_path("nope", &paths[..1]).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (
            999,
            "failed to find plugin \"nope\" in path [/nonexistent-mvt]"
        )
    );
    assert_eq!(
        find_in_path("../p", &paths).unwrap_err().msg,
        "invalid plugin name: ../p"
    );
    assert_eq!(
        find_in_path("", &paths).unwrap_err().msg,
        "no plugin name provided"
    );
    assert_eq!(find_in_path("p", &[]).unwrap_err().msg, "no paths provided");
    // First match wins.
    let pa = a.script("q", "true");
    b.script("q", "true");
    assert_eq!(find_in_path("q", &paths).unwrap(), pa);
}

#[test]
fn timeout_kills_child() {
    let d = TempDir::new("deleg-slow");
    let pidfile = d.path().join("pid");
    // exec: the pid we kill is the sleeping process itself.
    d.script(
        "slow",
        &format!("echo $$ > '{}'; exec sleep 30", pidfile.display()),
    );
    let start = Instant::now();
    let e = Delegate::new(vec![d.path().into()])
        .with_timeout(Duration::from_millis(500))
        .add("slow", CONF)
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(e.msg.contains("timed out"), "{}", e.msg);
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    // Reaped and gone.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still alive"
    );
}

#[test]
fn grandchild_holding_pipes_does_not_hang() {
    let d = TempDir::new("deleg-grandchild");
    let pidfile = d.path().join("pid");
    // The background sleep inherits stdout and keeps it open after the plugin exits.
    d.script(
        "leaky",
        &format!(
            "cat >/dev/null; sleep 20 & echo $! > '{}'; echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"198.18.0.12/24\"}}]}}'",
            pidfile.display()
        ),
    );
    let start = Instant::now();
    let r = Delegate::new(vec![d.path().into()]).add("leaky", CONF);
    let took = start.elapsed();
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    // Clean up the sleeper we caused, by pid.
    let _ = std::process::Command::new("kill").arg(&pid).status();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(r.unwrap().ips[0].address.to_string(), "198.18.0.12/24");
}

/// An outer plugin delegating IPAM, driven through the skel.
struct Outer;

impl Plugin for Outer {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let ipam = req
            .config
            .ipam_type()
            .ok_or_else(|| CniError::invalid_config("no ipam"))?;
        req.delegate().add(ipam, &req.stdin)
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        let ipam = req
            .config
            .ipam_type()
            .ok_or_else(|| CniError::invalid_config("no ipam"))?;
        req.delegate().del(ipam, &req.stdin)
    }
}

#[test]
fn through_skel() {
    let d = TempDir::new("deleg-skel");
    let dir = d.path().display().to_string();
    d.script(
        "fake-ipam",
        r#"cat >/dev/null
if [ "$CNI_COMMAND" = DEL ]; then echo '{"code":7,"msg":"bad ipam config"}'; exit 1; fi
echo "{\"cniVersion\":\"1.1.0\",\"ips\":[{\"address\":\"198.18.0.11/24\"}],\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"198.18.0.1\"}],\"x\":\"$CNI_CONTAINERID\"}""#,
    );
    let env = Env::new()
        .with("CNI_COMMAND", "ADD")
        .with("CNI_CONTAINERID", "ctr-skel")
        .with("CNI_NETNS", "/run/netns/none-mvt")
        .with("CNI_IFNAME", "eth0")
        .with("CNI_PATH", format!("/nonexistent-mvt:{dir}"));
    let conf =
        br#"{"cniVersion":"0.3.1","name":"net1","type":"outer","ipam":{"type":"fake-ipam"}}"#;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run_with(&Outer, "", &env, conf, &mut out, &mut err),
        0,
        "{}",
        String::from_utf8_lossy(&out)
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "cniVersion": "0.3.1",
            "ips": [{"version": "4", "address": "198.18.0.11/24"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}],
            "dns": {}
        })
    );
    let mut out = Vec::new();
    assert_eq!(
        run_with(
            &Outer,
            "",
            &env.clone().with("CNI_COMMAND", "DEL"),
            conf,
            &mut out,
            &mut err
        ),
        1
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"cniVersion": "0.3.1", "code": 7, "msg": "bad ipam config"})
    );
    // IPAM type absent from CNI_PATH.
    let missing =
        br#"{"cniVersion":"1.0.0","name":"net1","type":"outer","ipam":{"type":"no-such-ipam"}}"#;
    let mut out = Vec::new();
    assert_eq!(run_with(&Outer, "", &env, missing, &mut out, &mut err), 1);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["code"], 999);
    assert_eq!(
        v["msg"],
        format!("failed to find plugin \"no-such-ipam\" in path [/nonexistent-mvt {dir}]")
    );
}
