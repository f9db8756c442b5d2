//! Shared test helpers: temp dirs with a Drop guard, reference plugin runner.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `/tmp/mvt-<pid>-<n>-<tag>`, removed on drop (success or panic).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(format!("/tmp/mvt-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub const REFERENCE: &str = "/usr/lib/cni/host-local";

/// The reference binary, or None (and a printed reason) when it is missing.
pub fn reference() -> Option<&'static str> {
    if Path::new(REFERENCE).exists() {
        Some(REFERENCE)
    } else {
        eprintln!("SKIP: {REFERENCE} missing (apt-get install containernetworking-plugins)");
        None
    }
}

/// Run the reference host-local; Ok(stdout JSON) on exit 0, Err(error JSON) otherwise.
pub fn run_reference(
    command: &str,
    conf: &str,
    id: &str,
    ifname: &str,
    args: &str,
) -> Result<serde_json::Value, serde_json::Value> {
    run_plugin(REFERENCE, command, conf, id, ifname, args)
}

/// Run a reference plugin binary with the CNI environment and `conf` on stdin.
pub fn run_plugin(
    bin: &str,
    command: &str,
    conf: &str,
    id: &str,
    ifname: &str,
    args: &str,
) -> Result<serde_json::Value, serde_json::Value> {
    let (ok, stdout) = run_raw(bin, command, conf, id, ifname, args);
    let v: serde_json::Value = if stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&stdout).unwrap()
    };
    if ok {
        Ok(v)
    } else {
        Err(v)
    }
}

/// [`run_plugin`] without parsing: (exit status success, stdout bytes); stderr is dropped.
pub fn run_raw(
    bin: &str,
    command: &str,
    conf: &str,
    id: &str,
    ifname: &str,
    args: &str,
) -> (bool, Vec<u8>) {
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        // host-local never opens the netns, but skel requires the variable for ADD.
        .env("CNI_NETNS", "/var/run/netns/mvt-unused")
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), out.stdout)
}

/// Every file in `dir` → bytes, skipping our own marker files.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.starts_with(".macvnet-") {
            continue;
        }
        out.insert(name, std::fs::read(e.path()).unwrap());
    }
    out
}

/// Names of our per-attachment helper files (markers, temps) in `dir`; the
/// store-wide `.macvnet-stamp` and `.macvnet-foreign` stay like `lock` does.
pub fn our_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".macvnet-") && n != ".macvnet-stamp" && n != ".macvnet-foreign")
        .collect();
    v.sort();
    v
}

pub fn conf(data_dir: &Path, name: &str, cni_version: &str, ipam_extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"{cni_version}","name":"{name}","type":"macvlan","ipam":{{"type":"host-local","dataDir":"{}"{ipam_extra}}}}}"#,
        data_dir.display()
    )
}
