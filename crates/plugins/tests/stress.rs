//! Stress: W workers (default 16), each with its own container namespace, run C ADD/DEL
//! cycles (default 30; scripts/stress runs 1000) of macvlan (even workers) and macvtap (odd
//! workers) on one master and one host-local network; 1% of the ADDs are SIGKILLed at a
//! random delay. Then GC. Asserted: every un-killed ADD and every DEL succeeds, no address
//! is held by two live attachments at once (and the kernel shows the address on the link),
//! and afterwards no link, store entry or device node is left.
//! Env: MVT_STRESS_WORKERS, MVT_STRESS_CYCLES, MVT_STRESS_KILL_PERMILLE (default 10),
//! MVT_CRASH_SEED.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use macvnet_netlink::testing::TestNs;
use serde_json::{json, Value};

const NET: &str = "mvtstress";

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

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

#[derive(Default)]
struct Counts {
    adds: AtomicU64,
    dels: AtomicU64,
    kills: AtomicU64,
    kills_after_done: AtomicU64,
    duplicates: AtomicU64,
}

struct Shared {
    host: TestNs,
    data: PathBuf,
    dev: PathBuf,
    /// Address → the attachment holding it, between its ADD and the start of its DEL.
    held: Mutex<HashMap<IpAddr, String>>,
    counts: Counts,
}

impl Shared {
    fn conf(&self, plugin: &str, version: &str) -> Value {
        let ipam = json!({"type": "host-local", "dataDir": self.data,
                          "ranges": [[{"subnet": "198.18.8.0/24"}]]});
        match plugin {
            "macvtap" => json!({"cniVersion": version, "name": NET, "type": "macvtap",
                                "master": "eth0", "devDir": self.dev, "ipam": ipam}),
            _ => json!({"cniVersion": version, "name": NET, "type": "macvlan",
                        "master": "eth0", "ipam": ipam}),
        }
    }

    fn spawn(&self, plugin: &str, command: &str, id: &str, ctr: Option<&TestNs>) -> Child {
        let bin = our_dir().join(plugin);
        let mut cmd =
            macvnet_netlink::netns::command_in(&self.host.ns, bin.to_str().unwrap()).unwrap();
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", our_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ctr) = ctr {
            cmd.env("CNI_NETNS", ns_path(ctr));
        }
        let mut conf = self.conf(plugin, if command == "GC" { "1.1.0" } else { "1.0.0" });
        if command == "GC" {
            conf["cni.dev/valid-attachments"] = json!([]);
        }
        let mut child = cmd.spawn().unwrap();
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(&conf).unwrap());
        child
    }
}

/// Wait (60 s bound); (success, stdout, stderr, killed by a signal).
fn finish(child: Child) -> (bool, String, String, bool) {
    common::finish(child, Duration::from_secs(60), "plugin")
}

fn worker(sh: &Shared, w: u64, cycles: u64, kill_permille: u64, seed: u64) {
    let ctr = TestNs::new(&format!("st{w}")).unwrap();
    let plugin = if w.is_multiple_of(2) {
        "macvlan"
    } else {
        "macvtap"
    };
    let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for c in 0..cycles {
        let id = format!("mvt-st-{w}-{c}");
        let child = sh.spawn(plugin, "ADD", &id, Some(&ctr));
        let mut holding = None;
        if rng.below(1000) < kill_permille {
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            let mut child = child;
            let _ = child.kill();
            let (_, _, _, signaled) = finish(child);
            if signaled {
                sh.counts.kills.fetch_add(1, Ordering::Relaxed);
            } else {
                sh.counts.kills_after_done.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let (ok, out, err, _) = finish(child);
            assert!(ok, "{plugin} ADD {id} failed: {out} {err}");
            sh.counts.adds.fetch_add(1, Ordering::Relaxed);
            let r: Value = serde_json::from_str(&out).unwrap();
            let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
            let ip: IpAddr = addr.split('/').next().unwrap().parse().unwrap();
            // The kernel shows it on the container's link.
            let mut h = ctr.handle().unwrap();
            let l = h.link_by_name("net1").unwrap();
            let on_link = h
                .addrs(Some(l.index))
                .unwrap()
                .iter()
                .any(|a| a.addr.addr() == ip);
            assert!(on_link, "{id}: {ip} not on net1");
            let mut held = sh.held.lock().unwrap();
            if let Some(other) = held.insert(ip, id.clone()) {
                sh.counts.duplicates.fetch_add(1, Ordering::Relaxed);
                eprintln!("DUPLICATE {ip}: {id} and {other}");
            }
            holding = Some(ip);
        }
        // No longer counted as held once its DEL starts (DEL releases before the link goes).
        if let Some(ip) = holding {
            sh.held.lock().unwrap().remove(&ip);
        }
        let (ok, out, err, _) = finish(sh.spawn(plugin, "DEL", &id, Some(&ctr)));
        assert!(ok, "{plugin} DEL {id} failed: {out} {err}");
        sh.counts.dels.fetch_add(1, Ordering::Relaxed);
        let left: Vec<String> = links(&ctr);
        assert!(left.is_empty(), "{id}: links left after DEL: {left:?}");
    }
}

fn store_entries(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join(NET))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !is_store_bookkeeping(n))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn stress_add_del_with_kills_then_gc_leaves_nothing() {
    if !require("stress_add_del_with_kills_then_gc_leaves_nothing", false) {
        return;
    }
    let workers = env_u64("MVT_STRESS_WORKERS", 16);
    let cycles = env_u64("MVT_STRESS_CYCLES", 30);
    let kill_permille = env_u64("MVT_STRESS_KILL_PERMILLE", 10);
    let seed = env_u64(
        "MVT_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    let lab = Lab::new("stress");
    let sh = Shared {
        data: lab.data_dir("data"),
        dev: lab.data_dir("dev"),
        host: lab.host,
        held: Mutex::new(HashMap::new()),
        counts: Counts::default(),
    };
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let sh = &sh;
                s.spawn(move || worker(sh, w, cycles, kill_permille, seed))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let elapsed = t.elapsed();
    let before_gc = store_entries(&sh.data);
    for plugin in ["macvlan", "macvtap"] {
        let (ok, out, err, _) = finish(sh.spawn(plugin, "GC", "", None));
        assert!(ok, "{plugin} GC failed: {out} {err}");
    }
    let after_gc = store_entries(&sh.data);
    let host_links: Vec<String> = links(&sh.host)
        .into_iter()
        .filter(|l| l != "eth0")
        .collect();
    let nodes: Vec<String> = std::fs::read_dir(&sh.dev)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let c = &sh.counts;
    if !before_gc.is_empty() {
        // Temp/marker files of killed ADDs are GC's to remove; an address file here would
        // be one DEL missed (still released by GC).
        eprintln!(
            "store entries after every DEL, before GC: {:?}",
            &before_gc[..before_gc.len().min(10)]
        );
    }
    eprintln!(
        "stress: {workers} workers x {cycles} cycles in {elapsed:?} (seed {seed}): {} ADD ok, {} DEL ok, \
         {} killed mid-ADD ({} more finished before the kill), {} duplicates; \
         store entries before GC {}, after GC {}; host links left {}; device nodes left {}",
        c.adds.load(Ordering::Relaxed),
        c.dels.load(Ordering::Relaxed),
        c.kills.load(Ordering::Relaxed),
        c.kills_after_done.load(Ordering::Relaxed),
        c.duplicates.load(Ordering::Relaxed),
        before_gc.len(),
        after_gc.len(),
        host_links.len(),
        nodes.len(),
    );
    assert_eq!(
        c.duplicates.load(Ordering::Relaxed),
        0,
        "duplicate addresses"
    );
    assert!(after_gc.is_empty(), "store entries after GC: {after_gc:?}");
    assert!(host_links.is_empty(), "host links left: {host_links:?}");
    assert!(nodes.is_empty(), "device nodes left: {nodes:?}");
    assert_eq!(
        c.dels.load(Ordering::Relaxed),
        workers * cycles,
        "every cycle ran its DEL"
    );
}
