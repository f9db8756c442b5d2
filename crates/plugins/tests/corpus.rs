//! Bad-input corpus: every case in tests/corpus/NNN-*.json (format in tests/corpus/README.md)
//! runs one of our plugin binaries inside a test host namespace (master `eth0`) against a
//! container namespace, and must exit with the expected status and CNI error code while
//! changing nothing: links (and their addresses) of both namespaces, the host-local
//! dataDir and the macvtap devDir (where the plugin makes device nodes; every macvtap
//! case sets it) are compared before and after. /dev itself is not: devtmpfs nodes come and
//! go with other tests' macvtaps, and a macvtap left behind shows up as a link anyway.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use macvnet_netlink::testing::TestNs;
use serde_json::Value;

/// Fake IPAM plugins put on CNI_PATH next to ours.
const FAKES: &[(&str, &str)] = &[
    ("fake-garbage", "cat >/dev/null; echo 'this is not json {'"),
    ("fake-empty", "cat >/dev/null; exit 0"),
    (
        "fake-error11",
        r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"fake ipam is busy"}'; exit 1"#,
    ),
    (
        "fake-huge",
        "cat >/dev/null; head -c 8388608 /dev/zero | tr '\\0' 'a'",
    ),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// Everything a case must not change.
fn state(host: &TestNs, ctr: &TestNs, data: &Path, dev: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, ns) in [("host", host), ("ctr", ctr)] {
        let mut h = ns.handle().unwrap();
        let mut links: Vec<String> = h
            .links()
            .unwrap()
            .into_iter()
            .map(|l| {
                let addrs: Vec<String> = h
                    .addrs(Some(l.index))
                    .unwrap()
                    .into_iter()
                    .filter(|a| a.scope == 0)
                    .map(|a| a.addr.to_string())
                    .collect();
                format!(
                    "{tag} link {} {:?} mtu {} up {} mac {:?} promisc {} addrs {addrs:?}",
                    l.name, l.kind, l.mtu, l.up, l.mac, l.promisc
                )
            })
            .collect();
        links.sort();
        out.extend(links);
    }
    out.extend(tree(data).into_iter().map(|f| format!("data {f}")));
    out.extend(tree(dev).into_iter().map(|f| format!("devDir {f}")));
    out
}

/// Relative paths and contents of every file under `dir`.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                let content = std::fs::read(&p).unwrap_or_default();
                out.push(format!("{rel} {:?}", String::from_utf8_lossy(&content)));
            }
        }
    }
    out.sort();
    out
}

struct Ctx {
    vars: Vec<(&'static str, String)>,
}

impl Ctx {
    fn subst(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (k, v) in &self.vars {
            s = s.replace(k, v);
        }
        s
    }
}

/// The stdin bytes of a case.
fn stdin_of(case: &Value, ctx: &Ctx) -> Vec<u8> {
    if let Some(gen) = case.get("stdin_gen").and_then(Value::as_str) {
        let (kind, n) = gen.split_once(':').unwrap();
        let n: usize = n.parse().unwrap();
        return match kind {
            "pad" => {
                let mut conf = case["stdin"].clone();
                conf["pad"] = Value::String("a".repeat(n));
                ctx.subst(&conf.to_string()).into_bytes()
            }
            "nest" => format!(
                r#"{{"cniVersion":"1.0.0","name":"mvtcorpus","type":"macvlan","x":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
            .into_bytes(),
            other => panic!("unknown stdin_gen {other}"),
        };
    }
    match &case["stdin"] {
        Value::String(s) => ctx.subst(s).into_bytes(),
        v => ctx.subst(&v.to_string()).into_bytes(),
    }
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_case(host: &TestNs, plugin: &Path, env: &[(String, Option<String>)], stdin: Vec<u8>) -> Ran {
    let mut cmd = macvnet_netlink::netns::command_in(&host.ns, plugin.to_str().unwrap()).unwrap();
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().unwrap();
    // A plugin may stop reading early (bad env, too large): write from a thread.
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let rd = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out_t = rd(Box::new(stdout));
    let err_t = rd(Box::new(stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} timed out", plugin.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = writer.join();
    Ran {
        code: status.code(),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

#[test]
fn bad_input_corpus_changes_nothing() {
    if !require("bad_input_corpus_changes_nothing", false) {
        return;
    }
    let lab = Lab::new("corpus");
    let ctr = lab.container("corpusc");
    let data = lab.data_dir("data");
    let dev = lab.data_dir("dev");
    let fakes = lab.data_dir("fakes");
    for (name, body) in FAKES {
        let p = fakes.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The store of the network exists, as after any earlier ADD (so a CHECK creating it is not counted).
    std::fs::create_dir_all(data.join("mvtcorpus")).unwrap();
    std::fs::write(data.join("mvtcorpus/lock"), "").unwrap();
    let notns = lab.dir.path().join("not-a-netns");
    std::fs::write(&notns, "plain file").unwrap();
    let ctx = Ctx {
        vars: vec![
            ("@DATA@", data.display().to_string()),
            ("@DEV@", dev.display().to_string()),
            ("@NETNS@", ns_path(&ctr)),
            ("@NOTNS@", notns.display().to_string()),
            (
                "@GONE@",
                format!("/run/netns/mvt-{}-gone", std::process::id()),
            ),
            (
                "@CNI_PATH@",
                format!("{}:{}", our_dir().display(), fakes.display()),
            ),
        ],
    };
    let only = std::env::var("MVT_CORPUS_ONLY").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.ends_with(".json")
                && n.as_bytes().first().is_some_and(u8::is_ascii_digit)
                && only.as_deref().is_none_or(|o| n.contains(o))
        })
        .collect();
    files.sort();
    assert!(
        only.is_some() || files.len() >= 60,
        "corpus has {} cases",
        files.len()
    );
    let escape = Path::new("/tmp/mvt-escape");
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let case: Value = serde_json::from_slice(&std::fs::read(f).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let plugin = our_dir().join(case["plugin"].as_str().unwrap());
        let mut env: Vec<(String, Option<String>)> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "mvt-corpus-ctr"),
            ("CNI_NETNS", "@NETNS@"),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", "@CNI_PATH@"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Some(ctx.subst(v))))
        .collect();
        for (k, v) in case["env"].as_object().unwrap() {
            let v = v.as_str().map(|s| ctx.subst(s));
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v,
                None => env.push((k.clone(), v)),
            }
        }
        let before = state(&lab.host, &ctr, &data, &dev);
        let ran = run_case(&lab.host, &plugin, &env, stdin_of(&case, &ctx));
        let expect = &case["expect"];
        // Entries a case documents as allowed to change (prefix match), dropped from both sides.
        let allowed: Vec<&str> = expect["may_change"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let keep = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .filter(|l| !allowed.iter().any(|a| l.starts_with(a)))
                .collect()
        };
        let before = keep(before);
        let after = keep(state(&lab.host, &ctr, &data, &dev));
        // Clean what an allowed change left, so later cases start from the same state.
        for a in &allowed {
            if let Some(rel) = a.strip_prefix("data ") {
                let _ = std::fs::remove_file(data.join(rel));
            }
        }
        let want_exit = expect["exit"].as_i64().unwrap() as i32;
        let got: Value = serde_json::from_str(&ran.stdout).unwrap_or(Value::Null);
        let code = got["code"].as_u64();
        let msg = got["msg"].as_str().unwrap_or("").to_string();
        let mut why = Vec::new();
        if ran.code != Some(want_exit) {
            why.push(format!("exit {:?}, want {want_exit}", ran.code));
        }
        if code != expect["code"].as_u64() {
            why.push(format!("code {code:?}, want {}", expect["code"]));
        }
        if let Some(m) = expect.get("msg_contains").and_then(Value::as_str) {
            if !msg.contains(m) {
                why.push(format!("msg {msg:?} lacks {m:?}"));
            }
        }
        if before != after {
            why.push(format!(
                "state changed:\n  before {before:#?}\n  after {after:#?}"
            ));
        }
        if escape.exists() {
            why.push("wrote outside dataDir (/tmp/mvt-escape)".into());
            let _ = std::fs::remove_dir_all(escape);
        }
        if why.is_empty() {
            eprintln!("ok   {name}: code {code:?} {msg:?}");
        } else {
            eprintln!(
                "FAIL {name}: {}\n  stdout {:?}\n  stderr {:?}",
                why.join("; "),
                ran.stdout,
                ran.stderr.chars().take(600).collect::<String>()
            );
            failures.push(name);
        }
    }
    eprintln!("corpus: {} cases, {} failed", files.len(), failures.len());
    assert!(failures.is_empty(), "failed cases: {failures:?}");
}
