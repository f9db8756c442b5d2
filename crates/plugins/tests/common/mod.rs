//! Test harness: a "host" namespace with the master veth, container namespaces, a temp
//! dir for host-local stores, and a runner for plugin binaries inside the host namespace.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use macvnet_netlink::testing::{self, TestNs};
use macvnet_netlink::{self as nl, LinkInfo};
use serde_json::Value;

pub const REF_DIR: &str = "/usr/lib/cni";
static N: AtomicU32 = AtomicU32::new(0);

/// Our target dir (where cargo put macvlan, host-local, static).
pub fn our_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_macvlan"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn ours() -> Impl {
    Impl {
        name: "ours",
        plugin: PathBuf::from(env!("CARGO_BIN_EXE_macvlan")),
        cni_path: our_dir().display().to_string(),
    }
}

pub fn reference() -> Impl {
    Impl {
        name: "reference",
        plugin: Path::new(REF_DIR).join("macvlan"),
        cni_path: REF_DIR.to_string(),
    }
}

/// Root and the reference installed; else prints why and returns false.
pub fn require(test: &str, need_ref: bool) -> bool {
    if !testing::require_root(test) {
        return false;
    }
    if need_ref && !Path::new(REF_DIR).join("macvlan").exists() {
        eprintln!("SKIP {test}: {REF_DIR}/macvlan not installed");
        return false;
    }
    true
}

/// One implementation under test.
#[derive(Debug, Clone)]
pub struct Impl {
    pub name: &'static str,
    pub plugin: PathBuf,
    pub cni_path: String,
}

/// A temp dir removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mvt-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Host namespace (master `eth0`, veth to `lan`) and a temp dir.
pub struct Lab {
    pub host: TestNs,
    pub lan: TestNs,
    pub dir: TempDir,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let (host, lan) = testing::uplink_pair(tag).unwrap();
        Lab {
            host,
            lan,
            dir: TempDir::new(tag),
        }
    }

    /// A fresh container namespace.
    pub fn container(&self, tag: &str) -> TestNs {
        TestNs::new(tag).unwrap()
    }

    /// A store dir under the temp dir.
    pub fn data_dir(&self, tag: &str) -> PathBuf {
        let d = self.dir.path().join(tag);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

pub fn ns_path(ns: &TestNs) -> String {
    ns.ns.path().display().to_string()
}

/// A plugin run's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
    /// The error code (panics when the run succeeded).
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected failure, got {}", self.stdout);
        self.json()["code"].as_u64().unwrap()
    }
    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or("").to_string()
    }
    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        assert!(self.ok, "plugin failed: {} / {}", self.stdout, self.stderr);
        self
    }
}

/// A plugin invocation.
#[derive(Debug, Clone)]
pub struct Call {
    pub command: String,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub args: String,
    pub extra_env: Vec<(String, String)>,
}

impl Call {
    pub fn new(command: &str, netns: Option<&str>) -> Call {
        Call {
            command: command.to_string(),
            container_id: "mvt-ctr-1".to_string(),
            netns: netns.map(str::to_string),
            ifname: "net1".to_string(),
            args: String::new(),
            extra_env: Vec::new(),
        }
    }
    pub fn id(mut self, id: &str) -> Call {
        self.container_id = id.to_string();
        self
    }
    pub fn ifname(mut self, n: &str) -> Call {
        self.ifname = n.to_string();
        self
    }
    pub fn args(mut self, a: &str) -> Call {
        self.args = a.to_string();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Call {
        self.extra_env.push((k.to_string(), v.to_string()));
        self
    }
}

/// Run `program` inside `host` with the CNI variables of `call` and `conf` on stdin;
/// killed (by pid) after 30 s.
pub fn run_prog(
    host: &TestNs,
    program: &Path,
    cni_path: &str,
    call: &Call,
    conf: &Value,
) -> Outcome {
    let mut cmd = nl::netns::command_in(&host.ns, program.to_str().unwrap()).unwrap();
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", &call.command)
        .env("CNI_CONTAINERID", &call.container_id)
        .env("CNI_IFNAME", &call.ifname)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = &call.netns {
        cmd.env("CNI_NETNS", ns);
    }
    if !call.args.is_empty() {
        cmd.env("CNI_ARGS", &call.args);
    }
    for (k, v) in &call.extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let data = serde_json::to_vec(conf).unwrap();
    // A plugin may exit before reading stdin (bad environment): a broken pipe is fine.
    if let Err(e) = child.stdin.take().unwrap().write_all(&data) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    let (ok, stdout, stderr, _) = finish(
        child,
        Duration::from_secs(30),
        &program.display().to_string(),
    );
    Outcome { ok, stdout, stderr }
}

/// Wait for a plugin, killing it after `limit`: (success, stdout, stderr, killed by a signal).
pub fn finish(
    mut child: std::process::Child,
    limit: Duration,
    what: &str,
) -> (bool, String, String, bool) {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} timed out");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.signal().is_some(),
    )
}

pub fn run(lab: &Lab, imp: &Impl, call: &Call, conf: &Value) -> Outcome {
    run_prog(&lab.host, &imp.plugin, &imp.cni_path, call, conf)
}

/// Result JSON with per-run values replaced: MACs, sandbox paths; `dns: {}` dropped
/// (the reference's older Go library printed it; both mean "no DNS").
pub fn normalize(mut v: Value) -> Value {
    if let Some(ifs) = v.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifs {
            if let Some(o) = i.as_object_mut() {
                if o.contains_key("mac") {
                    o.insert("mac".into(), Value::String("MAC".into()));
                }
                if o.contains_key("sandbox") {
                    o.insert("sandbox".into(), Value::String("SANDBOX".into()));
                }
            }
        }
    }
    if v.get("dns") == Some(&serde_json::json!({})) {
        v.as_object_mut().unwrap().remove("dns");
    }
    v
}

/// The kernel's view of a link, in terms comparable across namespaces.
#[derive(Debug, PartialEq, Eq)]
pub struct LinkView {
    pub kind: String,
    pub mode: Option<String>,
    pub mtu: u32,
    pub up: bool,
    pub bcqueuelen: Option<u32>,
    pub addrs: Vec<String>,
    pub routes: Vec<String>,
}

pub fn link(ns: &TestNs, name: &str) -> Option<LinkInfo> {
    let mut h = ns.handle().unwrap();
    match h.link_by_name(name) {
        Ok(l) => Some(l),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("{e}"),
    }
}

pub fn view(ns: &TestNs, name: &str) -> LinkView {
    let mut h = ns.handle().unwrap();
    let l = h.link_by_name(name).unwrap();
    let mut addrs: Vec<String> = h
        .addrs(Some(l.index))
        .unwrap()
        .into_iter()
        .filter(|a| a.scope == 0)
        .map(|a| a.addr.to_string())
        .collect();
    addrs.sort();
    let mut routes: Vec<String> = h
        .routes(None)
        .unwrap()
        .into_iter()
        // v6 kernel routes (fe80::/64, multicast) depend on timing; v4 connected ones do not.
        .filter(|r| r.oif == Some(l.index) && !(r.dst.addr().is_ipv6() && r.protocol == 2))
        .map(|r| {
            format!(
                "{} via {:?} scope {} metric {:?}",
                r.dst, r.gateway, r.scope, r.metric
            )
        })
        .collect();
    routes.sort();
    LinkView {
        kind: format!("{:?}", l.kind),
        mode: l.macvlan.as_ref().map(|m| m.mode.to_string()),
        mtu: l.mtu,
        up: l.up,
        bcqueuelen: l.macvlan.as_ref().and_then(|m| m.bcqueuelen),
        addrs,
        routes,
    }
}

/// Names of the links in `ns` other than lo.
pub fn links(ns: &TestNs) -> Vec<String> {
    let mut h = ns.handle().unwrap();
    h.links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo")
        .collect()
}

/// Files a host-local store keeps once used, which hold no allocation: the lock, the
/// round-robin hints, and our stamp and list of entries written by others.
pub fn is_store_bookkeeping(name: &str) -> bool {
    name == "lock"
        || name.starts_with("last_reserved_ip.")
        || name == ".macvnet-stamp"
        || name == ".macvnet-foreign"
}

/// Address files in a host-local store (`<dir>/<network>/<ip>`).
pub fn store_ips(data_dir: &Path, network: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data_dir.join(network))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every file of a store with its content (for byte comparisons); the directory
/// times our stamp records read `dir <times>`.
pub fn store_files(data_dir: &Path, network: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(data_dir.join(network))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let mut content = std::fs::read_to_string(e.path()).unwrap_or_default();
                    if name == ".macvnet-stamp" {
                        content = content
                            .lines()
                            .map(|l| {
                                if l.starts_with("dir ") {
                                    "dir <times>"
                                } else {
                                    l
                                }
                            })
                            .map(|l| format!("{l}\n"))
                            .collect();
                    }
                    (name, content)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
