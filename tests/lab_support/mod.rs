//! Shared by the lab tests that start a daemon (dnsmasq, etcd): a private state dir, the
//! macvnet runs made against it, and a guard that cleans up after them.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use macvnet_netlink::netns;

pub const BIN: &str = env!("CARGO_BIN_EXE_macvnet");

/// A private state dir; on drop it kills any `daemon` process whose command line names the
/// dir (by pid) and removes any namespace of the macvnet pids it ran (a safety net: the tests
/// assert none is left first).
pub struct Lab {
    pub dir: PathBuf,
    pub pids: Vec<u32>,
    daemon: &'static str,
}

impl Lab {
    pub fn new(suite: &str, tag: &str, daemon: &'static str) -> Lab {
        let dir = std::env::temp_dir().join(format!("mvt-{}-{suite}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            dir,
            pids: vec![],
            daemon,
        }
    }

    pub fn run_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("MACVNET_STATE_DIR", &self.dir)
            .env_remove("MACVNET_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        self.pids.push(child.id());
        child.wait_with_output().unwrap()
    }

    pub fn run(&mut self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// pids of live (not zombie) daemon processes whose command line names our state dir.
    /// Run macvnet with `-j` first, assert it succeeded, and parse its JSON.
    pub fn run_json(&mut self, args: &[&str]) -> serde_json::Value {
        let out = self.run(&[&["-j"], args].concat());
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn our_daemons(&self) -> Vec<i32> {
        let dir = self.dir.display().to_string();
        let mut found = vec![];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let zombie = std::fs::read_to_string(e.path().join("stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            if cmd.contains(self.daemon) && cmd.contains(&dir) && !zombie {
                found.push(pid);
            }
        }
        found
    }

    /// Files left in the state dir.
    pub fn files(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in self.our_daemons() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for pid in &self.pids {
            for n in leftovers(*pid) {
                let _ = netns::del(&n, true);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Namespaces created by the macvnet process `pid`.
pub fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("mvlab-{pid}-");
    netns::list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
