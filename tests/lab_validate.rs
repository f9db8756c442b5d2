//! Broken lab files are refused with the right line before anything is created; `lab draw`
//! writes well-formed SVG naming every namespace and child.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use macvnet_netlink::{netns, testing::is_root};

const BIN: &str = env!("CARGO_BIN_EXE_macvnet");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let d = std::env::temp_dir().join(format!("mvt-{}-labv-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 1-based line of the first line containing `needle` after the first line containing `after`.
fn line_of(text: &str, after: &str, needle: &str) -> usize {
    let start = text.lines().position(|l| l.contains(after)).unwrap();
    start
        + text
            .lines()
            .skip(start)
            .position(|l| l.contains(needle))
            .unwrap()
        + 1
}

/// `lab up` on a broken file: fails, names file:line and the problem, creates nothing.
fn refused(tag: &str, text: &str, line: usize, what: &str) {
    let dir = TmpDir::new(tag);
    let file = dir.0.join(format!("{tag}.toml"));
    std::fs::write(&file, text).unwrap();
    let child = Command::new(BIN)
        .args(["lab", "up", file.to_str().unwrap()])
        .env("MACVNET_STATE_DIR", &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{tag}: accepted");
    let want = format!("{}:{line}:", file.display());
    assert!(err.contains(&want), "{tag}: want {want} in {err}");
    assert!(err.contains(what), "{tag}: want {what:?} in {err}");
    // Nothing created: no state file, no namespace of that process.
    assert!(!dir.0.join("seed.json").exists(), "{tag}: state written");
    if is_root() {
        let prefix = format!("mvlab-{pid}-");
        let left: Vec<String> = netns::list()
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "{tag}: created {left:?}");
    }
}

fn seed() -> String {
    std::fs::read_to_string(examples().join("seed.toml")).unwrap()
}

#[test]
fn unknown_parent() {
    let t = seed().replacen("parent = \"eth0\"\nkind", "parent = \"eth9\"\nkind", 1);
    refused(
        "parent",
        &t,
        line_of(&t, "[[child]]", "eth9"),
        "unknown parent \"eth9\"",
    );
}

#[test]
fn duplicate_address() {
    let t = seed().replace("198.18.0.12/24", "198.18.0.11/24");
    let line = line_of(&t, "name = \"mac2\"", "198.18.0.11/24");
    refused("dupaddr", &t, line, "duplicate address 198.18.0.11");
}

#[test]
fn bad_mode() {
    let t = seed().replacen("mode = \"bridge\"", "mode = \"bridged\"", 1);
    let line = line_of(&t, "[[child]]", "bridged");
    refused(
        "mode",
        &t,
        line,
        "valid modes are private, vepa, bridge, passthru, source",
    );
}

#[test]
fn two_passthru_children() {
    let t = seed().replace("mode = \"bridge\"", "mode = \"passthru\"");
    let line = line_of(&t, "name = \"mac2\"", "passthru");
    refused("passthru", &t, line, "two passthru children");
}

#[test]
fn address_outside_lab_ranges() {
    let t = seed().replace("198.18.0.12/24", "192.168.1.12/24");
    let line = line_of(&t, "name = \"mac2\"", "192.168.1.12");
    refused("range", &t, line, "outside 198.18.0.0/15");
}

#[test]
fn unknown_netns_and_long_name() {
    let t = seed().replace("netns = \"ns2\"", "netns = \"ns7\"");
    refused(
        "netns",
        &t,
        line_of(&t, "[[child]]", "ns7"),
        "unknown netns \"ns7\"",
    );
    let t = seed().replace("\"mac2\"", "\"macvlan-too-long\"");
    refused(
        "long",
        &t,
        line_of(&t, "[[child]]", "macvlan-too-long"),
        "at most 15",
    );
}

/// A minimal XML well-formedness check: balanced tags, quoted attributes, known entities.
fn well_formed(svg: &str) -> Result<usize, String> {
    let mut stack: Vec<String> = vec![];
    let mut elements = 0;
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        check_text(&rest[..i])?;
        let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("stray </{name}>"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        elements += 1;
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body
            .split_whitespace()
            .next()
            .ok_or("empty tag")?
            .to_string();
        if !body.matches('"').count().is_multiple_of(2) {
            return Err(format!("unbalanced quotes in <{body}>"));
        }
        check_text(body)?;
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    Ok(elements)
}

fn check_text(t: &str) -> Result<(), String> {
    for (i, _) in t.match_indices('&') {
        let ent = &t[i..t[i..].find(';').map_or(t.len(), |j| i + j + 1)];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&ent) {
            return Err(format!("bad entity {ent:?}"));
        }
    }
    Ok(())
}

#[test]
fn draw_gives_well_formed_svg() {
    let dir = TmpDir::new("draw");
    for (ex, names) in [
        (
            "seed",
            &[
                "lan", "host", "ns1", "ns2", "mac1", "mac2", "gw0", "eth0", "bridge",
            ][..],
        ),
        (
            "vepa",
            &["br0", "swp0", "va1", "vb2", "hairpin on", "vepa"][..],
        ),
        ("shim", &["shim0", "198.18.7.3/32", "mac1"][..]),
        ("macvtap", &["tap1", "macvtap", "/dev/tapN"][..]),
    ] {
        let out_file = dir.0.join(format!("{ex}.svg"));
        let out = Command::new(BIN)
            .args([
                "lab",
                "draw",
                examples().join(format!("{ex}.toml")).to_str().unwrap(),
                "-o",
            ])
            .arg(&out_file)
            .env("MACVNET_STATE_DIR", &dir.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = std::fs::read_to_string(&out_file).unwrap();
        assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let n = well_formed(&svg).unwrap_or_else(|e| panic!("{ex}: {e}"));
        assert!(n > 10, "{ex}: only {n} elements");
        for name in names {
            assert!(svg.contains(name), "{ex}: {name} missing");
        }
        // Fonts at least 12px.
        for size in svg.split("font-size=\"").skip(1) {
            let v: f64 = size.split('"').next().unwrap().parse().unwrap();
            assert!(v >= 12.0, "{ex}: font-size {v}");
        }
    }
    // Without -o the SVG goes to stdout.
    let out = Command::new(BIN)
        .args([
            "lab",
            "draw",
            examples().join("private.toml").to_str().unwrap(),
        ])
        .env("MACVNET_STATE_DIR", &dir.0)
        .output()
        .unwrap();
    let svg = String::from_utf8(out.stdout).unwrap();
    assert!(well_formed(&svg).is_ok() && svg.contains("priv2"));
}

#[test]
fn well_formed_checker_catches_errors() {
    assert!(well_formed("<a><b/></a>").is_ok());
    assert!(well_formed("<a><b></a>").is_err());
    assert!(well_formed("<a>x & y</a>").is_err());
    assert!(well_formed("<a x=\"1></a>").is_err());
}
