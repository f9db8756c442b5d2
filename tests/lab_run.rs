//! `macvnet lab` end to end, as root, on the real kernel: every example passes `lab run`, the
//! seed matrix cell by cell, refusal of a second `up`, idempotent `down`, and clean tear-down
//! after a failed or killed `up`. Each test has its own state dir (MACVNET_STATE_DIR), and every
//! namespace is named after the pid of the macvnet process that created it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use macvnet_netlink::{netns, testing::require_root};

mod lab_support;
use lab_support::{leftovers, text, BIN};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A private state dir; on drop it also removes any namespace of the macvnet pids it ran
/// (a safety net: the tests assert that none is left before that).
struct Lab {
    dir: PathBuf,
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("mvt-{}-lab-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            dir,
            pids: Default::default(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("MACVNET_STATE_DIR", &self.dir)
            .env_remove("MACVNET_LOG");
        c
    }

    /// Run macvnet; returns (pid, output).
    fn run(&self, args: &[&str]) -> (u32, Output) {
        let child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.pids.borrow_mut().push(pid);
        (pid, child.wait_with_output().unwrap())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in self.pids.borrow().iter() {
            for n in leftovers(*pid) {
                let _ = netns::del(&n, true);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_example(name: &str) {
    if !require_root(&format!("lab example {name}")) {
        return;
    }
    let lab = Lab::new(name);
    let file = examples().join(format!("{name}.toml"));
    let t = Instant::now();
    let (pid, out) = lab.run(&["-j", "lab", "run", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mismatches"], 0, "{stdout}");
    let cells = report["cells"].as_array().unwrap();
    let n = report["endpoints"].as_array().unwrap().len();
    assert_eq!(cells.len(), n * n);
    assert!(
        cells.iter().all(|c| c["expected"] == c["actual"]),
        "{stdout}"
    );
    assert!(
        leftovers(pid).is_empty(),
        "{name} left {:?}",
        leftovers(pid)
    );
    assert!(!lab
        .dir
        .join(format!("{}.json", report["lab"].as_str().unwrap()))
        .exists());
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{name} took {:?}",
        t.elapsed()
    );
}

#[test]
fn example_seed() {
    run_example("seed");
}
#[test]
fn example_seed_lo_down() {
    run_example("seed-lo-down");
}
#[test]
fn example_seed_v6() {
    run_example("seed-v6");
}
#[test]
fn example_private() {
    run_example("private");
}
#[test]
fn example_vepa() {
    run_example("vepa");
}
#[test]
fn example_passthru() {
    run_example("passthru");
}
#[test]
fn example_source() {
    run_example("source");
}
#[test]
fn example_macvtap() {
    run_example("macvtap");
}
#[test]
fn example_shim() {
    run_example("shim");
}

/// up, check -j (asserted cell by cell), up again (refused), down, down again (nothing to do).
#[test]
fn seed_matrix_cell_by_cell() {
    if !require_root("seed_matrix_cell_by_cell") {
        return;
    }
    let lab = Lab::new("matrix");
    let file = examples().join("seed.toml");
    let f = file.to_str().unwrap();
    let t = Instant::now();
    let (pid, out) = lab.run(&["lab", "up", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(leftovers(pid).len(), 4, "lan, host, ns1, ns2");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir.join("seed.json")).unwrap()).unwrap();
    assert_eq!(state["complete"], true);
    assert_eq!(state["pid"], pid);

    let (_, again) = lab.run(&["lab", "up", f]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already up"),
        "{}",
        text(&again.stderr)
    );

    let (_, out) = lab.run(&["-j", "lab", "check", f]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The seed tutorial: children reach each other and the gateway, the parent reaches the
    // gateway but not its children, everyone reaches itself (lo is up).
    let want = [
        (
            "gw0",
            ["gw0", "eth0", "mac1", "mac2"],
            [true, true, true, true],
        ),
        (
            "eth0",
            ["gw0", "eth0", "mac1", "mac2"],
            [true, true, false, false],
        ),
        (
            "mac1",
            ["gw0", "eth0", "mac1", "mac2"],
            [true, false, true, true],
        ),
        (
            "mac2",
            ["gw0", "eth0", "mac1", "mac2"],
            [true, false, true, true],
        ),
    ];
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 16);
    for (from, tos, reach) in want {
        for (to, expect) in tos.iter().zip(reach) {
            let c = cells
                .iter()
                .find(|c| c["from"] == from && c["to"] == *to)
                .unwrap();
            assert_eq!(c["expected"], expect, "{from}→{to} expected: {c}");
            assert_eq!(c["actual"], expect, "{from}→{to} actual: {c}");
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "up + check took {:?}",
        t.elapsed()
    );

    let (_, out) = lab.run(&["lab", "down", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(leftovers(pid).is_empty());
    assert!(!lab.dir.join("seed.json").exists());
    let (_, out) = lab.run(&["lab", "down", f]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("nothing to do"),
        "{}",
        text(&out.stdout)
    );
    let (_, out) = lab.run(&["lab", "check", f]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not up"),
        "{}",
        text(&out.stderr)
    );
}

/// Both gateways in one namespace: probes from there are bound to their link (ping_via), and
/// each gateway still reaches only its own segment.
#[test]
fn shared_namespace_probes_are_bound() {
    if !require_root("shared_namespace_probes_are_bound") {
        return;
    }
    let lab = Lab::new("shared");
    let text_in = std::fs::read_to_string(examples().join("vepa.toml")).unwrap();
    let shared = text_in
        .replace("name = \"vepa\"", "name = \"vepa-shared\"")
        .replace(
            "netns = \"lan2\", name = \"gw1\"",
            "netns = \"lan\", name = \"gw1\"",
        );
    assert!(shared.contains("vepa-shared") && !shared.contains("\"lan2\", name"));
    let file = lab.dir.join("vepa-shared.toml");
    std::fs::write(&file, shared).unwrap();
    let (pid, out) = lab.run(&["-j", "lab", "run", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cell = |from: &str, to: &str| {
        let cells = r["cells"].as_array().unwrap();
        let c = cells
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .unwrap();
        (
            c["expected"].as_bool().unwrap(),
            c["actual"].as_bool().unwrap(),
        )
    };
    assert_eq!(cell("gw1", "vb1"), (true, true));
    assert_eq!(cell("br0", "va2"), (true, true));
    assert_eq!(cell("gw1", "va1"), (false, false));
    assert_eq!(cell("gw1", "br0"), (true, true), "same namespace: local");
    assert!(leftovers(pid).is_empty());
}

/// A runtime conflict (two children with one MAC: the kernel says EADDRINUSE) fails `up` half
/// way; the state lists what exists and `down` removes all of it.
#[test]
fn partial_up_then_down_leaves_nothing() {
    if !require_root("partial_up_then_down_leaves_nothing") {
        return;
    }
    let lab = Lab::new("partial");
    let seed = std::fs::read_to_string(examples().join("seed.toml")).unwrap();
    let broken = seed
        .replace("name = \"seed\"", "name = \"dupmac\"")
        .replace(
            "netns = \"ns1\"\n",
            "netns = \"ns1\"\nmac = \"02:00:c6:12:00:aa\"\n",
        )
        .replace(
            "netns = \"ns2\"\n",
            "netns = \"ns2\"\nmac = \"02:00:c6:12:00:aa\"\n",
        );
    let file = lab.dir.join("dupmac.toml");
    std::fs::write(&file, broken).unwrap();
    let f = file.to_str().unwrap();
    let (pid, out) = lab.run(&["lab", "up", f]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("mac2") && err.contains("EADDRINUSE"), "{err}");
    assert_eq!(
        leftovers(pid).len(),
        4,
        "everything up to the failure exists"
    );
    let state = std::fs::read_to_string(lab.dir.join("dupmac.json")).unwrap();
    assert!(state.contains("\"complete\": false"), "{state}");

    let (_, out) = lab.run(&["lab", "check", f]);
    assert!(!out.status.success(), "check refuses a partial lab");
    let (_, out) = lab.run(&["lab", "down", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(leftovers(pid).is_empty(), "{:?}", leftovers(pid));
    assert!(!lab.dir.join("dupmac.json").exists());
}

/// SIGKILL during `up`: whatever got created is in the state file, so `down` cleans it.
#[test]
fn killed_up_then_down_leaves_nothing() {
    if !require_root("killed_up_then_down_leaves_nothing") {
        return;
    }
    let lab = Lab::new("killed");
    let file = examples().join("vepa.toml");
    let f = file.to_str().unwrap();
    let mut child = lab
        .cmd(&["lab", "up", f])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    lab.pids.borrow_mut().push(pid);
    // Wait until the state lists two namespaces (each is recorded just before it is created),
    // then kill: up is mid-way (five more namespaces, the uplinks and children to go).
    let state_file = lab.dir.join("vepa.json");
    let recorded = || -> usize {
        std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["namespaces"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let t = Instant::now();
    while recorded() < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::yield_now();
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        state.contains("\"complete\": false"),
        "killed after up finished: {state}"
    );
    assert!(
        !leftovers(pid).is_empty(),
        "nothing created before the kill"
    );
    let (_, out) = lab.run(&["lab", "down", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(leftovers(pid).is_empty(), "{:?}", leftovers(pid));
    assert!(!lab.dir.join("vepa.json").exists());
}
