//! Crash safety of ADD: the plugin is SIGKILLed mid-ADD (at a random delay, and — with the
//! `failpoints` build — at every named step), then the runtime's DEL and GC run, and the
//! node must be clean: no link left in the container or host namespace (besides the
//! master), no address file, marker or temp file in the host-local store, no device node
//! in devDir and no stale /dev/tap* node.
//!
//! Failpoints: the binaries are built by this test with `cargo build -p macvnet-plugins
//! --bins --features failpoints --target-dir <target>/failpoints` (debug profile without
//! debuginfo, cached by cargo: the first CI run pays ~70 s of CPU, later runs ~1 s; set
//! MVT_FAILPOINT_BIN_DIR to use prebuilt ones, or MVT_NO_FAILPOINT_BUILD=1 to skip). A failpoint named by env MACVNET_FAILPOINT
//! raises SIGKILL there; `macvnet_cni::failpoints::ALL` lists every name.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use macvnet_netlink::testing::TestNs;
use serde_json::{json, Value};

const NET: &str = "mvtcrash";

/// A tiny xorshift: the seed is printed so a failure can be replayed (MVT_CRASH_SEED).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("MVT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

struct Rig {
    lab: Lab,
    ctr: TestNs,
    data: PathBuf,
    dev: PathBuf,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let lab = Lab::new(tag);
        let ctr = lab.container(&format!("{tag}c"));
        let data = lab.data_dir("data");
        let dev = lab.data_dir("dev");
        Rig {
            lab,
            ctr,
            data,
            dev,
        }
    }

    /// The network config each plugin gets (the IPAM plugins get the macvlan one).
    fn conf(&self, plugin: &str, version: &str) -> Value {
        let ipam = json!({"type": "host-local", "dataDir": self.data,
                          "ranges": [[{"subnet": "198.18.7.0/24"}]]});
        // IPv4 only: an IPv6 address makes ADD wait ~2 s for DAD, and kills would mostly
        // land in that wait instead of between the steps.
        match plugin {
            "macvtap" => json!({"cniVersion": version, "name": NET, "type": "macvtap",
                                "master": "eth0", "devDir": self.dev, "ipam": ipam}),
            _ => json!({"cniVersion": version, "name": NET, "type": "macvlan",
                        "master": "eth0", "ipam": ipam}),
        }
    }

    fn spawn(
        &self,
        bin: &Path,
        command: &str,
        id: &str,
        conf: &Value,
        extra: &[(&str, &str)],
    ) -> Child {
        let mut cmd =
            macvnet_netlink::netns::command_in(&self.lab.host.ns, bin.to_str().unwrap()).unwrap();
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", ns_path(&self.ctr))
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", bin.parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let data = serde_json::to_vec(conf).unwrap();
        let _ = child.stdin.take().unwrap().write_all(&data);
        child
    }

    /// Run to the end (30 s bound); (success, stdout, stderr, killed by a signal).
    fn finish(&self, child: Child) -> (bool, String, String, bool) {
        common::finish(child, Duration::from_secs(30), "plugin")
    }

    fn run(&self, bin: &Path, command: &str, id: &str, conf: &Value) -> (bool, String, String) {
        let (ok, out, err, _) = self.finish(self.spawn(bin, command, id, conf, &[]));
        (ok, out, err)
    }

    /// The runtime's cleanup: DEL (must succeed), then GC with no valid attachment.
    fn del_and_gc(&self, bin: &Path, plugin: &str, id: &str) {
        let (ok, out, err) = self.run(bin, "DEL", id, &self.conf(plugin, "1.0.0"));
        assert!(ok, "{plugin} DEL of {id} failed: {out} {err}");
        let mut gc = self.conf(plugin, "1.1.0");
        gc["cni.dev/valid-attachments"] = json!([]);
        let (ok, out, err) = self.run(bin, "GC", "", &gc);
        assert!(ok, "{plugin} GC failed: {out} {err}");
    }

    /// What must be empty after DEL + GC (empty Vec = clean).
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for l in links(&self.ctr) {
            left.push(format!("container link {l}"));
        }
        for l in links(&self.lab.host) {
            if l != "eth0" {
                left.push(format!("host link {l}"));
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.data.join(NET)) {
            for e in rd.filter_map(|e| e.ok()) {
                let n = e.file_name().to_string_lossy().into_owned();
                if !is_store_bookkeeping(&n) {
                    let content = std::fs::read_to_string(e.path()).unwrap_or_default();
                    left.push(format!("store file {n} {content:?}"));
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.dev) {
            for e in rd.filter_map(|e| e.ok()) {
                left.push(format!("devDir node {}", e.file_name().to_string_lossy()));
            }
        }
        left
    }

    /// Leftovers, allowing 3 s for the kernel to finish deleting.
    fn assert_clean(&self, what: &str) {
        let first = self.leftovers();
        let mut left = first.clone();
        for _ in 0..30 {
            if left.is_empty() {
                if !first.is_empty() {
                    eprintln!("after {what}: gone after a wait: {first:?}");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = self.leftovers();
        }
        panic!("after {what}: left behind {left:#?}");
    }
}

const PLUGINS: &[&str] = &["macvlan", "macvtap", "host-local"];

/// How long a whole ADD takes for `plugin`, to spread the kills over: the fastest of 5,
/// since a busy machine only ever makes an ADD slower (a median of 3 once came out 3×
/// too long and put half the kills after the end).
fn add_duration(rig: &Rig, bin_dir: &Path, plugin: &str) -> Duration {
    let bin = bin_dir.join(plugin);
    let mut times = Vec::new();
    for i in 0..5 {
        let id = format!("mvt-time-{plugin}-{i}");
        let t = Instant::now();
        let (ok, out, err) = rig.run(&bin, "ADD", &id, &rig.conf(plugin, "1.0.0"));
        times.push(t.elapsed());
        assert!(ok, "{plugin} ADD failed: {out} {err}");
        rig.del_and_gc(&bin, plugin, &id);
        rig.assert_clean(&format!("a full ADD/DEL of {plugin}"));
    }
    times.sort();
    times[0]
}

#[test]
fn sigkill_at_random_delay_during_add_leaves_nothing() {
    if !require("sigkill_at_random_delay_during_add_leaves_nothing", false) {
        return;
    }
    let trials: u64 = std::env::var("MVT_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rig = Rig::new("crash");
    let dir = our_dir();
    let durs: Vec<Duration> = PLUGINS
        .iter()
        .map(|p| add_duration(&rig, &dir, p))
        .collect();
    let seed = seed();
    eprintln!("seed {seed} (MVT_CRASH_SEED), ADD takes {durs:?} for {PLUGINS:?}");
    let mut rng = Rng(seed);
    let (mut killed, mut completed) = (0, 0);
    for trial in 0..trials {
        let k = (trial % PLUGINS.len() as u64) as usize;
        let plugin = PLUGINS[k];
        let bin = dir.join(plugin);
        let id = format!("mvt-crash-{trial}");
        // Uniform over [0, the fastest full ADD]: most kills land inside ADD.
        let span = durs[k].as_micros() as u64;
        let delay = Duration::from_micros(rng.below(span));
        let child = rig.spawn(&bin, "ADD", &id, &rig.conf(plugin, "1.0.0"), &[]);
        std::thread::sleep(delay);
        let mut child = child;
        let _ = child.kill();
        let (ok, _, _, signaled) = rig.finish(child);
        if signaled {
            killed += 1;
        } else if ok {
            completed += 1;
        }
        rig.del_and_gc(&bin, plugin, &id);
        rig.assert_clean(&format!(
            "trial {trial}: {plugin} ADD killed after {delay:?} (seed {seed})"
        ));
    }
    eprintln!("{trials} trials: {killed} killed mid-ADD, {completed} finished first; 0 leaks");
    // Not vacuous: a good share of the kills hit a running ADD (119-140 of 200 seen).
    assert!(
        killed > trials / 3,
        "too few kills landed inside ADD: {killed}"
    );
}

/// Failpoint binaries: built once into `<target>/failpoints` (or MVT_FAILPOINT_BIN_DIR).
fn failpoint_bins() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("MVT_FAILPOINT_BIN_DIR") {
        return Some(PathBuf::from(d));
    }
    if std::env::var_os("MVT_NO_FAILPOINT_BUILD").is_some() {
        return None;
    }
    // our_dir() is <target>/<profile>; build next to it, always the debug profile (the
    // cheapest build: no LTO), cached by cargo across runs.
    let ours = our_dir();
    let target = ours.parent().unwrap().join("failpoints");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t = Instant::now();
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "-p",
            "macvnet-plugins",
            "--bins",
            "--features",
            "failpoints",
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        // No debuginfo: about 70 s of CPU for the whole tree (2.5 min wall on a busy 2-core VM).
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .stdout(Stdio::null());
    let out = cmd.output().unwrap();
    if !out.status.success() {
        panic!(
            "building the failpoint binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("failpoint binaries built in {:?}", t.elapsed());
    Some(target.join("debug"))
}

/// Every ADD/DEL step of each plugin: killed there, then DEL + GC leave nothing.
#[test]
fn sigkill_at_every_failpoint_leaves_nothing() {
    if !require("sigkill_at_every_failpoint_leaves_nothing", false) {
        return;
    }
    let Some(bins) = failpoint_bins() else {
        eprintln!("SKIP sigkill_at_every_failpoint_leaves_nothing: MVT_NO_FAILPOINT_BUILD set");
        return;
    };
    let rig = Rig::new("fpoint");
    let mut covered = 0;
    for (point, plugins, command) in FAILPOINTS {
        for plugin in *plugins {
            let bin = bins.join(plugin);
            let id = format!("mvt-fp-{covered}");
            let hit_log = rig.lab.dir.path().join(format!("hits-{covered}"));
            let conf = rig.conf(plugin, "1.0.0");
            if *command == "DEL" {
                let (ok, out, err) = rig.run(&bin, "ADD", &id, &conf);
                assert!(ok, "{plugin} ADD before DEL failpoint failed: {out} {err}");
            }
            let child = rig.spawn(
                &bin,
                command,
                &id,
                &conf,
                &[
                    ("MACVNET_FAILPOINT", point),
                    ("MACVNET_FAILPOINT_LOG", hit_log.to_str().unwrap()),
                ],
            );
            let (_, out, err, signaled) = rig.finish(child);
            let hits = std::fs::read_to_string(&hit_log).unwrap_or_default();
            assert!(
                signaled && hits.lines().any(|l| l == *point),
                "{plugin} {command} never reached failpoint {point} (hits {hits:?}): {out} {err}"
            );
            rig.del_and_gc(&bin, plugin, &id);
            rig.assert_clean(&format!("{plugin} {command} killed at {point}"));
            covered += 1;
        }
    }
    eprintln!(
        "{covered} failpoint kills (of {} points), 0 leaks",
        FAILPOINTS.len()
    );
}

/// (failpoint, plugins that pass it, command). Must name every point in
/// `macvnet_cni::failpoints::ALL` except the dhcp ones (tests in crates/dhcp).
const FAILPOINTS: &[(&str, &[&str], &str)] = &[
    ("macvlan::add::after_create", &["macvlan"], "ADD"),
    ("macvlan::add::after_rename", &["macvlan"], "ADD"),
    ("macvlan::add::after_ipam", &["macvlan"], "ADD"),
    ("macvlan::add::after_configure", &["macvlan"], "ADD"),
    ("macvlan::del::after_ipam", &["macvlan"], "DEL"),
    ("macvlan::del::after_link", &["macvlan"], "DEL"),
    ("macvtap::add::after_create", &["macvtap"], "ADD"),
    ("macvtap::add::after_move", &["macvtap"], "ADD"),
    ("macvtap::add::after_rename", &["macvtap"], "ADD"),
    ("macvtap::add::after_node", &["macvtap"], "ADD"),
    ("macvtap::add::after_ipam", &["macvtap"], "ADD"),
    ("macvtap::add::after_configure", &["macvtap"], "ADD"),
    ("macvtap::del::after_ipam", &["macvtap"], "DEL"),
    ("macvtap::del::after_link", &["macvtap"], "DEL"),
    // host-local alone, and inside macvlan/macvtap (in-process IPAM: the link is left too).
    (
        "host-local::add::after_lock",
        &["host-local", "macvlan"],
        "ADD",
    ),
    (
        "host-local::add::after_source",
        &["host-local", "macvtap"],
        "ADD",
    ),
    (
        "host-local::add::after_reserve",
        &["host-local", "macvlan"],
        "ADD",
    ),
    (
        "host-local::add::after_allocate",
        &["host-local", "macvtap"],
        "ADD",
    ),
    (
        "host-local::del::after_lock",
        &["host-local", "macvlan"],
        "DEL",
    ),
    (
        "host-local::del::after_release",
        &["host-local", "macvtap"],
        "DEL",
    ),
];

#[test]
fn every_failpoint_is_exercised() {
    for p in macvnet_cni::failpoints::ALL {
        let here = FAILPOINTS.iter().any(|(n, _, _)| n == p);
        assert!(
            here || p.starts_with("dhcp::"),
            "failpoint {p} is not exercised by crash.rs"
        );
    }
}

/// A process started by a test, SIGKILLed (by pid) and reaped on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// DHCP: dnsmasq in the LAN namespace, our daemon (failpoint build) in the host one; the
/// macvlan plugin with `ipam: dhcp`. Each dhcp failpoint kills the plugin or the daemon
/// there; then the daemon is (re)started, DEL and GC run, and no link, no lease or intent
/// file in the daemon's state dir, and no lease of the test's client at the server
/// (dnsmasq's lease file) are left. A daemon killed between the server's ACK and saving
/// the lease finds its intent on restart and releases it through the macvlan's parent
/// (the link itself is gone by then: the failed ADD deleted it).
#[test]
fn sigkill_at_every_dhcp_failpoint_leaves_nothing() {
    if !require("sigkill_at_every_dhcp_failpoint_leaves_nothing", false) {
        return;
    }
    if !Path::new("/usr/sbin/dnsmasq").exists() {
        eprintln!("SKIP sigkill_at_every_dhcp_failpoint_leaves_nothing: dnsmasq not installed");
        return;
    }
    let Some(bins) = failpoint_bins() else {
        eprintln!(
            "SKIP sigkill_at_every_dhcp_failpoint_leaves_nothing: MVT_NO_FAILPOINT_BUILD set"
        );
        return;
    };
    let rig = Rig::new("fpdhcp");
    let tmp = rig.lab.dir.path().to_path_buf();
    {
        let mut l = rig.lab.lan.handle().unwrap();
        let up0 = l.link_by_name("up0").unwrap();
        l.add_addr(up0.index, "198.18.9.1/24".parse().unwrap())
            .unwrap();
    }
    let leasefile = tmp.join("dnsmasq.leases");
    let mut dns = macvnet_netlink::netns::command_in(&rig.lab.lan.ns, "/usr/sbin/dnsmasq").unwrap();
    dns.args([
        "--keep-in-foreground",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=up0",
        "--bind-interfaces",
        "--user=root",
        "--group=root",
        "--pid-file",
        "--dhcp-authoritative",
        "--no-ping",
        "--dhcp-range=198.18.9.50,198.18.9.150,255.255.255.0,2m",
    ])
    .arg(format!("--dhcp-leasefile={}", leasefile.display()))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _dnsmasq = Proc(dns.spawn().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let socket = tmp.join("dhcp.sock");
    let state = tmp.join("dhcp-state");
    let start_daemon = |failpoint: Option<(&str, &Path)>| -> Proc {
        let mut cmd = macvnet_netlink::netns::command_in(
            &rig.lab.host.ns,
            bins.join("dhcp").to_str().unwrap(),
        )
        .unwrap();
        cmd.arg("daemon")
            .arg("-socketpath")
            .arg(&socket)
            .arg(format!("-statedir={}", state.display()))
            .arg(format!("-pidfile={}", tmp.join("dhcp.pid").display()))
            .args(["-timeout", "5s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((p, log)) = failpoint {
            cmd.env("MACVNET_FAILPOINT", p)
                .env("MACVNET_FAILPOINT_LOG", log);
        }
        let child = Proc(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if macvnet_dhcp::proto::call(
                &socket,
                &macvnet_dhcp::proto::Call::Status,
                Duration::from_secs(2),
            )
            .is_ok()
            {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dhcp daemon did not come up");
    };
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvlan", "master": "eth0",
                      "ipam": {"type": "dhcp", "daemonSocketPath": socket}});
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    let macvlan = bins.join("macvlan");
    let lease_files = || -> Vec<String> {
        std::fs::read_dir(&state)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let points = [
        ("dhcp::add::before_call", "ADD", false),
        ("dhcp::add::after_call", "ADD", false),
        ("dhcp::del::before_call", "DEL", false),
        ("dhcp::daemon::after_acquire", "ADD", true),
        ("dhcp::daemon::after_save", "ADD", true),
        ("dhcp::daemon::after_release", "DEL", true),
    ];
    for p in macvnet_cni::failpoints::ALL {
        if p.starts_with("dhcp::") {
            assert!(points.iter().any(|(n, _, _)| n == p), "{p} not exercised");
        }
    }
    for (n, (point, command, in_daemon)) in points.iter().enumerate() {
        let id = format!("mvt-fpd-{n}");
        let log = tmp.join(format!("dhcp-hits-{n}"));
        let mut daemon = Some(start_daemon(in_daemon.then_some((*point, log.as_path()))));
        if *command == "DEL" {
            let (ok, out, err) = rig.run(&macvlan, "ADD", &id, &conf);
            assert!(ok, "ADD before {point} failed: {out} {err}");
        }
        let extra: Vec<(&str, &str)> = if *in_daemon {
            Vec::new()
        } else {
            vec![
                ("MACVNET_FAILPOINT", point),
                ("MACVNET_FAILPOINT_LOG", log.to_str().unwrap()),
            ]
        };
        let (ok, out, err, signaled) = rig.finish(rig.spawn(&macvlan, command, &id, &conf, &extra));
        if *in_daemon {
            // The daemon died there; the plugin failed (ADD) or reported unreachable (DEL).
            let d = daemon.take().unwrap();
            let mut child = d;
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            use std::os::unix::process::ExitStatusExt;
            let status = child.0.try_wait().unwrap();
            assert!(
                status.and_then(|s| s.signal()) == Some(9),
                "daemon not killed at {point}: {status:?}; plugin {ok} {out} {err}"
            );
            assert!(
                *command == "DEL" || !ok,
                "ADD succeeded with the daemon killed at {point}"
            );
            daemon = Some(start_daemon(None));
        } else {
            // The dhcp IPAM runs as its own process: it dies, macvlan reports that and undoes.
            assert!(
                signaled || (!ok && out.contains("signal: 9")),
                "plugin not killed at {point}: {ok} {out} {err}"
            );
        }
        let hits = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            hits.lines().any(|l| l == *point),
            "{point} not reached: {hits:?}"
        );
        let (ok, out, err) = rig.run(&macvlan, "DEL", &id, &conf);
        assert!(ok, "DEL after {point} failed: {out} {err}");
        let (ok, out, err) = rig.run(&macvlan, "GC", "", &gc);
        assert!(ok, "GC after {point} failed: {out} {err}");
        rig.assert_clean(&format!("{command} killed at {point}"));
        let files = lease_files();
        assert!(
            files.is_empty(),
            "after {point}: lease files left {files:?}"
        );
        // dnsmasq rewrites its lease file on every change; a released lease is gone from
        // it. The release may still be on its way: allow 3 s.
        let cid: String = id.bytes().map(|b| format!(":{b:02x}")).collect();
        let held = || {
            std::fs::read_to_string(&leasefile)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&cid))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while !held().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = held();
        assert!(
            left.is_empty(),
            "after {point}: the server still holds {left:?}"
        );
        drop(daemon);
    }
    eprintln!(
        "{} dhcp failpoint kills, 0 links, 0 lease/intent files and 0 server leases left",
        points.len()
    );
}
