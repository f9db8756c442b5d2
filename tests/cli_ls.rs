//! `macvnet ls`: children in several namespaces grouped under the right parent.
#![allow(clippy::unwrap_used)]

mod cli_support;
use cli_support::*;
use serde_json::Value;

/// The group whose parent is `parent` in namespace `ns`.
fn group<'a>(groups: &'a Value, parent: &str, ns: &str) -> &'a Value {
    groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["parent"]["name"] == parent && g["parent"]["netns"] == ns)
        .unwrap_or_else(|| panic!("no group for {parent} in {ns}: {groups:#}"))
}

fn children(g: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = g["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["netns"].as_str().unwrap().to_string(),
                c["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ls_groups_children_under_parents_across_namespaces() {
    if !can_run("ls_groups_children_under_parents_across_namespaces") {
        return;
    }
    let (h1, _l1) = uplink_pair("ls1").unwrap();
    let (h2, _l2) = uplink_pair("ls2").unwrap();
    let c1 = TestNs::new("ls-c1").unwrap();
    let c2 = TestNs::new("ls-c2").unwrap();
    let (n1, n2, nc1, nc2) = (
        h1.name.as_str(),
        h2.name.as_str(),
        c1.name.as_str(),
        c2.name.as_str(),
    );

    ok(&[
        "-n", n1, "link", "add", "mva", "link", "eth0", "type", "macvlan", "mode", "bridge", "up",
    ]);
    ok(&["-n", n1, "addr", "add", "198.18.5.11/24", "dev", "mva"]);
    ok(&[
        "-n", n1, "link", "add", "mvb", "link", "eth0", "type", "macvlan", "mode", "bridge",
        "netns", nc1,
    ]);
    ok(&[
        "-n", n1, "link", "add", "mvc", "link", "eth0", "type", "macvlan", "mode", "private",
    ]);
    ok(&["-n", n1, "link", "set", "mvc", "netns", nc2]);
    ok(&[
        "-n", n2, "link", "add", "tap0", "link", "eth0", "type", "macvtap", "mode", "vepa",
        "netns", nc1,
    ]);
    ok(&[
        "-n", n2, "link", "add", "mvd", "link", "eth0", "type", "macvlan", "mode", "source",
    ]);

    let groups = json(&["-j", "ls"]);
    let g1 = group(&groups, "eth0", n1);
    assert_eq!(
        children(g1),
        vec![
            ("mva".to_string(), n1.to_string(), "bridge".to_string()),
            ("mvb".to_string(), nc1.to_string(), "bridge".to_string()),
            ("mvc".to_string(), nc2.to_string(), "private".to_string()),
        ]
    );
    let mva = g1["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mva")
        .unwrap();
    assert_eq!(mva["addrs"][0], "198.18.5.11/24");
    let g2 = group(&groups, "eth0", n2);
    assert_eq!(
        children(g2),
        vec![
            ("mvd".to_string(), n2.to_string(), "source".to_string()),
            ("tap0".to_string(), nc1.to_string(), "vepa".to_string()),
        ]
    );
    let tap = g2["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tap0")
        .unwrap();
    assert_eq!(tap["kind"], "macvtap");
    assert!(tap["tap_device"].as_str().unwrap().starts_with("/dev/tap"));

    // Text: a header per parent, then tree lines with the mode in brackets.
    let text = ok(&["ls"]);
    let lines: Vec<&str> = text.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("eth0") && l.contains(&format!("ns {n1}")))
        .unwrap();
    let tree: Vec<&str> = lines[head + 1..head + 4].to_vec();
    assert!(
        tree[0].starts_with("├─ mva")
            && tree[0].contains("[bridge]")
            && tree[0].contains("198.18.5.11/24"),
        "{text}"
    );
    assert!(
        tree[1].starts_with("├─ mvb") && tree[1].contains(&format!("ns {nc1}")),
        "{text}"
    );
    assert!(
        tree[2].starts_with("└─ mvc")
            && tree[2].contains("[private]")
            && tree[2].contains(&format!("ns {nc2}")),
        "{text}"
    );
    // Columns are aligned: the mode column starts at the same place on every line.
    let col = |l: &str| l.find('[').unwrap();
    assert_eq!(col(tree[0]), col(tree[1]));
    assert_eq!(col(tree[1]), col(tree[2]));

    // SVG picture.
    let dir = std::env::temp_dir().join(format!("mvt-{}-ls-svg", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ls.svg");
    ok(&["ls", "--svg", file.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        svg.contains("<svg") && svg.contains("mvb") && svg.contains(nc1),
        "svg lacks our links"
    );
}

/// Kills the process by pid and reaps it on drop.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ls_finds_children_in_process_namespaces() {
    if !can_run("ls_finds_children_in_process_namespaces") {
        return;
    }
    if std::process::Command::new("unshare")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP ls_finds_children_in_process_namespaces: needs util-linux `unshare`");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let (host, _lan) = uplink_pair("lspid").unwrap();
    let ns = host.name.as_str();
    let child = Child(
        std::process::Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    // Wait (bounded) until the process has its own network namespace.
    let ours = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let path = format!("/proc/{pid}/ns/net");
    let mut moved = false;
    for _ in 0..100 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if std::fs::metadata(&path)
            .map(|m| m.ino() != ours)
            .unwrap_or(false)
            && comm.trim() == "sleep"
        {
            moved = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        moved,
        "unshare --net did not give pid {pid} its own namespace"
    );

    ok(&[
        "-n", ns, "link", "add", "mvp", "link", "eth0", "type", "macvlan", "mode", "vepa",
    ]);
    ok(&["-n", ns, "link", "set", "mvp", "netns", &path]);
    let groups = json(&["-j", "ls"]);
    let g = group(&groups, "eth0", ns);
    let kids = children(g);
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(kids[0].0, "mvp");
    assert_eq!(kids[0].1, format!("pid {pid} (sleep)"));
    // `-n` also takes a path; show resolves the parent back to the named namespace.
    let s = &json(&["-n", &path, "-j", "link", "show", "mvp"])[0];
    assert_eq!(s["parent"], "eth0");
    assert_eq!(s["parent_netns"], ns);
}
