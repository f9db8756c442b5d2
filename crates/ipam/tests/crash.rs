//! Crash safety: ADDs killed with SIGKILL at random points leave only whole
//! entries; GC then cleans everything of the dead attachments.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{conf, our_files, snapshot, TempDir};
use macvnet_ipam::host_local::{self, HostLocalConfig};

const CHILD_ENV: &str = "MVT_IPAM_CRASH_CHILD";

fn crash_conf(dir: &std::path::Path) -> String {
    conf(
        dir,
        "k",
        "1.0.0",
        r#","ranges":[[{"subnet":"198.18.128.0/17"}]]"#,
    )
}

/// In the child: allocate until killed (bounded by count and time anyway).
fn child_loop(data_dir: &str, round: &str) {
    let c = crash_conf(std::path::Path::new(data_dir));
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..20_000 {
        if Instant::now() > deadline {
            break;
        }
        let _ = host_local::add(c.as_bytes(), &format!("r{round}-{i}"), "eth0", "");
    }
}

#[test]
fn killed_adds_leave_whole_entries() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (dir, round) = spec.split_once('|').unwrap();
        child_loop(dir, round);
        return;
    }
    let t = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "killed_adds_leave_whole_entries", "--nocapture"])
            .env(CHILD_ENV, format!("{}|{round}", t.path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Vary the kill point between rounds.
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 90));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let dir = t.path.join("k");
    let snap = snapshot(&dir);
    let mut addresses = 0;
    for (name, content) in &snap {
        if name.parse::<std::net::IpAddr>().is_ok() {
            addresses += 1;
            let s = std::str::from_utf8(content).unwrap();
            let (id, ifname) = s
                .split_once("\r\n")
                .unwrap_or_else(|| panic!("torn {name}: {s:?}"));
            assert!(
                id.starts_with('r') && ifname == "eth0",
                "torn {name}: {s:?}"
            );
        }
    }
    assert!(addresses > 0, "children allocated nothing");
    // Still usable after the kills.
    let c = crash_conf(&t.path);
    host_local::add(c.as_bytes(), "after", "eth0", "").unwrap();
    // GC with only "after" valid removes every other entry, markers and temps.
    let parsed = HostLocalConfig::parse(c.as_bytes(), "").unwrap();
    let valid = [macvnet_cni::GcAttachment {
        container_id: "after".into(),
        ifname: "eth0".into(),
    }];
    let rep = host_local::gc_with(&parsed, &valid).unwrap();
    assert_eq!(rep.released.len(), addresses);
    let left: Vec<String> = snapshot(&dir)
        .into_keys()
        .filter(|k| k.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(our_files(&dir), [".macvnet-att:after:eth0"]);
    eprintln!("{addresses} addresses from killed children, all whole");
}
