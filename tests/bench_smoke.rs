//! `macvnet bench` smoke runs: JSON shape, positive numbers, nothing left behind.
//! No timing assertions: the figures depend on the machine.
#![allow(clippy::unwrap_used)]

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;
use serde_json::Value;

/// True when this build has the `bench` subcommand wired in (prints why not otherwise).
fn bench_wired(test: &str) -> bool {
    let out = Command::new(BIN)
        .args(["bench", "--help"])
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("SKIP {test}: this macvnet build has no `bench` subcommand yet");
        return false;
    }
    true
}

/// Namespaces a bench process with `pid` left behind.
fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("mvbench-{pid}-");
    macvnet_netlink::netns::list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Run `macvnet ARGS`, bounded by `limit`; (pid, exit success, stdout, stderr).
fn run_bounded(args: &[&str], limit: Duration) -> (u32, bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("macvnet {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        pid,
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    x
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn dataplane_quick() {
    if !require_root("dataplane_quick") || !bench_wired("dataplane_quick") {
        return;
    }
    let svg = TempFile(std::env::temp_dir().join(format!("mvt-{}-dp.svg", std::process::id())));
    let (pid, ok, out, err) = run_bounded(
        &[
            "-j",
            "bench",
            "dataplane",
            "--quick",
            "--builtin",
            "--svg",
            svg.0.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(ok, "bench dataplane failed: {err}");
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(!v["machine"]["kernel"].as_str().unwrap().is_empty());
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["case"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "macvlan-bridge",
            "vepa-hairpin",
            "veth-pair",
            "veth-bridge",
            "macvtap"
        ]
    );
    for r in results {
        let case = r["case"].as_str().unwrap();
        positive(&r["udp_gbps"], &format!("{case} udp_gbps"));
        positive(&r["udp_pps"], &format!("{case} udp_pps"));
        positive(&r["rtt_p50_us"], &format!("{case} rtt_p50_us"));
        assert!(r["rtt_samples"].as_u64().unwrap() > 0);
        if case == "macvtap" {
            assert!(r["tcp_gbps"].is_null(), "macvtap has no TCP figure");
            assert!(r["note"].is_string());
        } else {
            positive(&r["tcp_gbps"], &format!("{case} tcp_gbps"));
            assert_eq!(r["tcp_generator"], "builtin");
        }
    }
    let verdict = v["verdict"]["agrees"].as_str().unwrap();
    assert!(["agrees", "partly", "disagrees", "inconclusive"].contains(&verdict));
    let text = std::fs::read_to_string(&svg.0).unwrap();
    assert!(text.starts_with("<svg") && text.contains("macvlan-bridge"));
}

#[test]
fn dataplane_ctrl_c_cleans_up() {
    if !require_root("dataplane_ctrl_c_cleans_up") || !bench_wired("dataplane_ctrl_c_cleans_up") {
        return;
    }
    let mut child = Command::new(BIN)
        .args([
            "bench",
            "dataplane",
            "--builtin",
            "--no-svg",
            "--duration",
            "5",
            "--case",
            "veth-bridge",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until its namespaces exist (the topology is up), then interrupt.
    let end = Instant::now() + Duration::from_secs(20);
    while leftovers(pid).len() < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !leftovers(pid).is_empty(),
        "bench never created its namespaces"
    );
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench did not stop within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.success(),
        "an interrupted bench must not report success"
    );
    assert!(
        leftovers(pid).is_empty(),
        "left behind after SIGINT: {:?}",
        leftovers(pid)
    );
}

#[test]
fn cni_small() {
    if !require_root("cni_small") || !bench_wired("cni_small") {
        return;
    }
    let reference = Path::new("/usr/lib/cni");
    if !reference.join("macvlan").is_file() || !reference.join("host-local").is_file() {
        eprintln!(
            "SKIP cni_small: no reference plugins in /usr/lib/cni (containernetworking-plugins)"
        );
        return;
    }
    let ours = Path::new(BIN).parent().unwrap();
    if !ours.join("macvlan").is_file() || !ours.join("host-local").is_file() {
        eprintln!(
            "SKIP cni_small: our plugins are not built next to {BIN} (cargo build -p macvnet-plugins)"
        );
        return;
    }
    let svg = TempFile(std::env::temp_dir().join(format!("mvt-{}-cni.svg", std::process::id())));
    let (pid, ok, out, err) = run_bounded(
        &[
            "-j",
            "bench",
            "cni",
            "--n",
            "5",
            "--parallel",
            "1,2",
            "--attachments",
            "20",
            "--reference",
            "/usr/lib/cni",
            "--svg",
            svg.0.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert!(ok, "bench cni failed: {err}");
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );
    assert!(
        !std::env::temp_dir()
            .join(format!("mvbench-{pid}-cni"))
            .exists(),
        "host-local temp dir left behind"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    positive(&v["floor_p50_ms"], "floor_p50_ms");
    for side in ["ours", "reference"] {
        let s = &v[side];
        let lat = s["latency"].as_array().unwrap();
        let modes: Vec<&str> = lat.iter().map(|l| l["ipam"].as_str().unwrap()).collect();
        assert_eq!(modes, ["host-local", "l2-only"], "{side}");
        for l in lat {
            for op in ["add", "del"] {
                for p in ["p50_ms", "p90_ms", "p99_ms"] {
                    positive(&l[op][p], &format!("{side} {op} {p}"));
                }
                assert_eq!(l[op]["samples"], 5);
            }
            positive(&l["peak_rss_kib"], &format!("{side} peak_rss_kib"));
        }
        positive(&s["peak_rss_kib"], &format!("{side} peak RSS"));
        let tp = s["throughput"].as_array().unwrap();
        let workers: Vec<u64> = tp.iter().map(|t| t["workers"].as_u64().unwrap()).collect();
        assert_eq!(workers, [1, 2], "{side}");
        for t in tp {
            positive(&t["add_per_s"], &format!("{side} add_per_s"));
            positive(&t["del_per_s"], &format!("{side} del_per_s"));
            assert_eq!(t["failures"], 0, "{side}: {t}");
        }
        assert_eq!(s["attachments"], 20);
        let dec = s["decile_add_p50_ms"].as_array().unwrap();
        assert_eq!(dec.len(), 10);
        for d in dec {
            positive(d, &format!("{side} decile p50"));
        }
        positive(&s["decile_flatness"], &format!("{side} flatness"));
        let dec = s["ipam_decile_add_p50_ms"].as_array().unwrap();
        assert_eq!(dec.len(), 10);
        for d in dec {
            positive(d, &format!("{side} host-local alone decile p50"));
        }
        positive(
            &s["ipam_decile_flatness"],
            &format!("{side} host-local alone flatness"),
        );
        positive(&s["own_peak_rss_kib"], &format!("{side} own peak RSS"));
    }
    // ADD, DEL, RSS (ru_maxrss and own), deciles (host-local alone and through the
    // plugin), throughput.
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 7, "{targets:?}");
    for t in targets {
        assert!(t["met"].is_boolean() && t["value"].is_number(), "{t}");
    }
    let text = std::fs::read_to_string(&svg.0).unwrap();
    assert!(text.starts_with("<svg") && text.contains("polyline"));
}
