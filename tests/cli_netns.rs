//! `macvnet netns add|list|exec|del` against the real kernel.
#![allow(clippy::unwrap_used)]

mod cli_support;
use std::os::unix::fs::MetadataExt;

use cli_support::*;

/// Deletes the namespace on drop in case an assertion fails before `netns del`.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = macvnet_netlink::netns::del(&self.0, true);
    }
}

#[test]
fn add_list_exec_del() {
    if !can_run("add_list_exec_del") {
        return;
    }
    let name = format!("mvt-{}-cli-ns", std::process::id());
    let _guard = Cleanup(name.clone());
    ok(&["netns", "add", &name]);
    let e = fail(&["netns", "add", &name]);
    assert!(e.contains("already exists"), "{e}");
    assert!(ok(&["netns", "list"]).lines().any(|l| l == name));
    let listed = json(&["-j", "netns", "list"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["name"] == name.as_str()));

    // exec runs inside the namespace: its /proc/self/ns/net is the bind-mounted one.
    let want = std::fs::metadata(format!("/run/netns/{name}"))
        .unwrap()
        .ino();
    let out = ok(&[
        "netns",
        "exec",
        &name,
        "--",
        "stat",
        "-L",
        "-c",
        "%i",
        "/proc/self/ns/net",
    ]);
    assert_eq!(out.trim(), want.to_string());
    // Only loopback inside a fresh namespace.
    let out = ok(&["netns", "exec", &name, "--", "ip", "-o", "link"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    // The exit code is passed through.
    let st = mvn(&["netns", "exec", &name, "--", "sh", "-c", "exit 7"]);
    assert_eq!(st.status.code(), Some(7));
    let e = fail(&["netns", "exec", "mvt-no-such-ns", "--", "true"]);
    assert!(e.contains("not found"), "{e}");

    ok(&["netns", "del", &name]);
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    assert!(!ok(&["netns", "list"]).lines().any(|l| l == name));
    let e = fail(&["netns", "del", &name]);
    assert!(e.contains("not found"), "{e}");
    let e = fail(&["netns", "add", "a/b"]);
    assert!(e.contains("invalid namespace name"), "{e}");
}
