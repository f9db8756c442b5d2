//! `macvnet doctor` against this machine's real kernel.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Output};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn doctor(args: &[&str]) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_macvnet"))
        .arg("doctor")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

fn json_checks(out: &Output) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor -j is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let arr = v.as_array().unwrap().clone();
    for c in &arr {
        for key in ["check", "status", "detail", "hint"] {
            assert!(
                c.get(key).and_then(|x| x.as_str()).is_some(),
                "{key} missing in {c}"
            );
        }
        let st = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "missing"].contains(&st), "status {st}");
    }
    arr
}

fn status_of<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a str {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// What /proc/config.gz says about a symbol: Some("y"/"m"), Some("n") for "is not set"
/// or missing from the file, None when there is no config to read.
fn kconfig(symbol: &str) -> Option<String> {
    let f = std::fs::File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .ok()?;
    let prefix = format!("{symbol}=");
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .unwrap_or_else(|| "n".to_string()),
    )
}

#[test]
fn json_matches_kernel_config() {
    let (out, _) = doctor(&["-j"]);
    let checks = json_checks(&out);
    if is_root() {
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(status_of(&checks, "cap:CAP_NET_ADMIN"), "ok");
    }
    let Some(macvlan) = kconfig("CONFIG_MACVLAN") else {
        eprintln!("SKIP json_matches_kernel_config: no /proc/config.gz to derive expectations");
        return;
    };
    if macvlan == "y" {
        assert_eq!(status_of(&checks, "kernel:macvlan"), "ok");
    }
    for (feat, sym) in [
        ("dummy", "CONFIG_DUMMY"),
        ("8021q", "CONFIG_VLAN_8021Q"),
        ("ipvlan", "CONFIG_IPVLAN"),
    ] {
        let conf = kconfig(sym).unwrap();
        let st = status_of(&checks, &format!("kernel:{feat}"));
        if conf == "n" {
            assert_ne!(st, "ok", "{feat}: config says not set");
        } else {
            assert_eq!(st, "ok", "{feat}: config says {conf}");
        }
    }
    let tun = status_of(&checks, "dev:/dev/net/tun");
    assert_eq!(tun == "ok", std::path::Path::new("/dev/net/tun").exists());
}

#[test]
fn text_output_has_markers() {
    let (out, _) = doctor(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("kernel:macvlan")).unwrap();
    assert!(
        line.starts_with("[ ok ]") || line.starts_with("[FAIL]") || line.starts_with("[warn]"),
        "{line}"
    );
    if is_root() {
        assert!(text.contains("macvlan can work here."), "{text}");
    }
}

#[test]
fn probe_creates_and_cleans_up() {
    if !is_root() {
        eprintln!("SKIP probe_creates_and_cleans_up: needs root");
        return;
    }
    let (out, pid) = doctor(&["-j", "--probe"]);
    let checks = json_checks(&out);
    let detail = |n: &str| {
        checks
            .iter()
            .find(|c| c["check"] == n)
            .map(|c| c.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        status_of(&checks, "probe:macvlan"),
        "ok",
        "{}",
        detail("probe:macvlan")
    );
    assert_eq!(
        status_of(&checks, "probe:macvtap"),
        "ok",
        "{}",
        detail("probe:macvtap")
    );
    assert!(out.status.success());
    let ns = format!("mvt-doctor-{pid}");
    assert!(
        !std::path::Path::new("/run/netns").join(&ns).exists(),
        "{ns} left behind"
    );
    let list = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(list) = list {
        assert!(
            !String::from_utf8_lossy(&list.stdout).contains(&ns),
            "{ns} still listed"
        );
    }
}

#[test]
fn fails_without_net_admin() {
    if !is_root() {
        eprintln!("SKIP fails_without_net_admin: needs root to drop capabilities");
        return;
    }
    // Same uid, empty bounding set: the exec'd doctor has no capabilities at all.
    let out = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all",
            env!("CARGO_BIN_EXE_macvnet"),
            "doctor",
            "-j",
        ])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP fails_without_net_admin: no setpriv");
        return;
    };
    let checks = json_checks(&out);
    assert_eq!(status_of(&checks, "cap:CAP_NET_ADMIN"), "missing");
    assert_eq!(
        out.status.code(),
        Some(1),
        "macvlan cannot work without CAP_NET_ADMIN"
    );
}
