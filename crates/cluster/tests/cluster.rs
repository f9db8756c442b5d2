//! The cluster IPAM against real etcd (Debian's etcd-server 3.4): 1 and 3 members on loopback
//! ports, plugin processes run from this test binary (see `plugin_child`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{conf, Etcd, TempDir};
use macvnet_cluster::{ClusterPlugin, Config, Ipam};
use macvnet_cni::skel::{run_with, Env};
use rand::Rng;
use serde_json::{json, Value};

const CHILD: &str = "MVT_CLUSTER_CHILD";

/// When re-executed with MVT_CLUSTER_CHILD set, this test *is* the `cluster` plugin: CNI
/// env and stdin in, result on stdout (after libtest's header line), exit code out.
#[test]
fn plugin_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let code = macvnet_cni::skel::run(&ClusterPlugin, "cluster (test child)");
    let _ = std::io::stdout().flush();
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

fn child(cmd: &str, cid: &str, ifname: &str, stdin: &Value) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["plugin_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_IFNAME", ifname)
        .env("CNI_NETNS", "/proc/1/ns/net")
        .env("CNI_NETNS_OVERRIDE", "1")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    input.write_all(stdin.to_string().as_bytes()).unwrap();
    drop(input);
    c
}

/// The JSON object the child printed (libtest's "running 1 test" comes first).
fn child_json(out: &[u8]) -> Option<Value> {
    let s = String::from_utf8_lossy(out);
    let start = s.find('{')?;
    serde_json::from_str(&s[start..]).ok()
}

/// One CNI call in-process through the skel: (exit code, stdout JSON).
fn call(cmd: &str, cid: &str, ifname: &str, stdin: &Value) -> (i32, Value) {
    let env = Env::new()
        .with("CNI_COMMAND", cmd)
        .with("CNI_CONTAINERID", cid)
        .with("CNI_IFNAME", ifname)
        .with("CNI_NETNS", "/proc/1/ns/net")
        .with("CNI_NETNS_OVERRIDE", "1")
        .with("CNI_PATH", "/nonexistent");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run_with(
        &ClusterPlugin,
        "t",
        &env,
        stdin.to_string().as_bytes(),
        &mut out,
        &mut err,
    );
    let v = serde_json::from_slice(&out).unwrap_or(Value::Null);
    (code, v)
}

fn addr_of(result: &Value) -> IpAddr {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.parse::<ipnet::IpNet>().unwrap().addr()
}

fn ipam(v: &Value) -> Ipam {
    Ipam::new(Config::parse(v.to_string().as_bytes()).unwrap()).unwrap()
}

fn with_gc(v: &Value, valid: &[(&str, &str)]) -> Value {
    let mut v = v.clone();
    v["cni.dev/valid-attachments"] = valid
        .iter()
        .map(|(c, i)| json!({"containerID": c, "ifname": i}))
        .collect();
    v
}

fn lifecycle(blocks: Value) {
    let Some(etcd) = Etcd::start(1) else { return };
    let dir = TempDir::new("data");
    let eps = etcd.endpoints();
    let mut a = conf(
        "n1",
        "198.18.0.0/28",
        &eps,
        "host-a",
        &dir.0,
        blocks.clone(),
        5000,
    );
    a["ipam"]["exclude"] = json!(["198.18.0.8/31"]);
    a["ipam"]["gateway"] = json!("198.18.0.1");
    a["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let mut b = a.clone();
    b["ipam"]["node"] = json!("host-b");

    // ADD, and ADD again (a retry after a lost reply) gives the same address.
    let (code, r1) = call("ADD", "c1", "eth0", &a);
    assert_eq!(code, 0, "{r1}");
    assert_eq!(r1["ips"][0]["gateway"], "198.18.0.1");
    assert_eq!(r1["routes"][0]["dst"], "0.0.0.0/0");
    assert!(r1["ips"][0]["address"].as_str().unwrap().ends_with("/28"));
    let (_, again) = call("ADD", "c1", "eth0", &a);
    assert_eq!(addr_of(&again), addr_of(&r1));
    // Same container, other interface: another address.
    let (_, r2) = call("ADD", "c1", "net1", &a);
    assert_ne!(addr_of(&r2), addr_of(&r1));
    assert_eq!(call("CHECK", "c1", "eth0", &a).0, 0);
    assert_ne!(call("CHECK", "nope", "eth0", &a).0, 0);

    // Fill the pool from two nodes: .2-.14 minus .8,.9 excluded and the gateway .1 = 11.
    let mut seen: HashSet<IpAddr> = [addr_of(&r1), addr_of(&r2)].into();
    for i in 0..9 {
        let conf = if i % 2 == 0 { &b } else { &a };
        let (code, r) = call("ADD", &format!("f{i}"), "eth0", conf);
        assert_eq!(code, 0, "{r}");
        let ip = addr_of(&r);
        assert!(seen.insert(ip), "duplicate {ip}");
        let s = ip.to_string();
        assert!(
            ![
                "198.18.0.1",
                "198.18.0.8",
                "198.18.0.9",
                "198.18.0.0",
                "198.18.0.15"
            ]
            .contains(&s.as_str()),
            "{s}"
        );
    }
    let (code, full) = call("ADD", "over", "eth0", &a);
    assert_eq!(code, 1);
    assert_eq!(full["code"], 999, "{full}");
    // A retried ADD of an existing attachment still answers while the pool is full.
    assert_eq!(
        addr_of(&call("ADD", "f0", "eth0", &b).1),
        addr_of(&call("ADD", "f0", "eth0", &b).1)
    );

    let usage = ipam(&a).usage().unwrap();
    assert_eq!(usage.ranges[0].usable, 11);
    assert_eq!(usage.ranges[0].used, 11);
    assert_eq!(usage.ranges[0].free, 0);

    // DEL is idempotent and frees the address.
    assert_eq!(call("DEL", "f1", "eth0", &a).0, 0);
    assert_eq!(call("DEL", "f1", "eth0", &a).0, 0);
    assert_eq!(call("DEL", "never", "eth0", &a).0, 0);
    assert_eq!(call("ADD", "over", "eth0", &a).0, 0);

    // GC on host-a keeps the valid ones and never touches host-b's records.
    let gc = with_gc(&a, &[("c1", "eth0")]);
    assert_eq!(call("GC", "", "", &gc).0, 0);
    let recs = ipam(&a).records().unwrap();
    let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
    for (_, r) in &recs {
        by_node
            .entry(r.node.clone())
            .or_default()
            .push(format!("{}/{}", r.container_id, r.ifname));
    }
    assert_eq!(
        by_node.get("host-a").cloned().unwrap_or_default(),
        vec!["c1/eth0".to_string()]
    );
    assert_eq!(by_node.get("host-b").map(Vec::len), Some(5), "{by_node:?}");
    assert_eq!(call("CHECK", "c1", "eth0", &a).0, 0);

    // host-b is gone for good: everything of it goes, host-a's stays.
    let rep = ipam(&a).gc_dead("host-b").unwrap();
    assert_eq!(rep.attachments, 5);
    let recs = ipam(&a).records().unwrap();
    assert_eq!(recs.len(), 1);
    let usage = ipam(&a).usage().unwrap();
    assert!(usage.nodes.iter().all(|n| n.node != "host-b"), "{usage:?}");
    assert_eq!(call("DEL", "c1", "eth0", &a).0, 0);
    assert_eq!(call("GC", "", "", &with_gc(&a, &[])).0, 0);
    let usage = ipam(&a).usage().unwrap();
    assert_eq!(usage.ranges[0].used, 0);
    assert_eq!(usage.ranges[0].blocks_claimed, 0, "{usage:?}");
    assert_eq!(call("STATUS", "", "", &a).0, 0);
}

#[test]
fn lifecycle_with_blocks() {
    lifecycle(json!({"size": 4}));
}

#[test]
fn lifecycle_without_blocks() {
    lifecycle(json!(false));
}

#[test]
fn ipv6_and_two_ranges() {
    let Some(etcd) = Etcd::start(1) else { return };
    let dir = TempDir::new("data");
    let mut c = conf(
        "n6",
        "198.18.1.0/24",
        &etcd.endpoints(),
        "h",
        &dir.0,
        json!({"size": 8}),
        5000,
    );
    c["ipam"]["ipRanges"] = json!([{"range": "2001:db8:1::/64", "rangeStart": "2001:db8:1::100"}]);
    let (code, r) = call("ADD", "c", "eth0", &c);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ips"].as_array().unwrap().len(), 2);
    let v6: ipnet::IpNet = r["ips"][1]["address"].as_str().unwrap().parse().unwrap();
    assert!(v6.addr() >= "2001:db8:1::100".parse::<IpAddr>().unwrap());
    assert_eq!(v6.prefix_len(), 64);
    assert_eq!(call("DEL", "c", "eth0", &c).0, 0);
    assert!(ipam(&c).records().unwrap().is_empty());
    // DEL alone gave both blocks back (no GC needed).
    let u = ipam(&c).usage().unwrap();
    assert!(u.ranges.iter().all(|r| r.blocks_claimed == 0), "{u:?}");
}

/// etcd fully down: code 11 within the timeout, nothing written.
#[test]
fn etcd_down_is_try_again_later() {
    let Some(mut etcd) = Etcd::start(1) else {
        return;
    };
    let dir = TempDir::new("data");
    let eps = etcd.endpoints();
    let c = conf(
        "down",
        "198.18.2.0/24",
        &eps,
        "h",
        &dir.0,
        json!({"size": 16}),
        1500,
    );
    etcd.kill(0);
    for cmd in ["ADD", "DEL", "CHECK"] {
        let t0 = Instant::now();
        let ch = child(cmd, "c1", "eth0", &c);
        let out = ch.wait_with_output().unwrap();
        let took = t0.elapsed();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let v = child_json(&out.stdout).unwrap();
        assert_eq!(v["code"], 11, "{cmd}: {v}");
        assert!(
            took < Duration::from_millis(1500 + 1500),
            "{cmd} took {took:?}"
        );
        assert!(
            took >= Duration::from_millis(1000),
            "{cmd} gave up early: {took:?}"
        );
    }
    // A black hole (nothing accepts) for an endpoint: the dial limit holds as well.
    let mut c2 = c.clone();
    c2["ipam"]["etcd"]["endpoints"] = json!([format!("http://127.0.0.1:{}", common::free_port())]);
    let (code, v) = call("ADD", "c2", "eth0", &c2);
    assert_eq!((code, v["code"].as_u64()), (1, Some(11)));
    // STATUS says "not available".
    assert_eq!(call("STATUS", "", "", &c).1["code"], 50);
    // Back up: the failed ADDs left nothing, and allocation works again.
    etcd.restart(0);
    let check = ipam(&c);
    assert!(check.records().unwrap().is_empty());
    assert_eq!(check.usage().unwrap().nodes.len(), 0);
    let (code, r) = call("ADD", "c1", "eth0", &c);
    assert_eq!(code, 0, "{r}");
    assert_eq!(call("DEL", "c1", "eth0", &c).0, 0);
}

/// 3 hosts × 16 workers, one etcd member (the leader) killed mid-run, plugin processes
/// SIGKILLed at random: no address twice; after DEL + GC nothing is left.
fn stress(total: usize, procs_per_node: usize, range: &str, blocks: Value) {
    let Some(mut etcd) = Etcd::start(3) else {
        return;
    };
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new("node")).collect();
    let eps = etcd.endpoints();
    let confs: Vec<Value> = (0..3)
        .map(|n| {
            conf(
                "stress",
                range,
                &eps,
                &format!("h{n}"),
                &dirs[n].0,
                blocks.clone(),
                20000,
            )
        })
        .collect();
    let results: Arc<Mutex<Vec<(String, IpAddr)>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let killed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Exactly `total` ADDs: the process ones first, the rest spread over the 48 workers.
    let in_process = total - 3 * procs_per_node;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (n, node_conf) in confs.iter().enumerate() {
            for w in 0..16 {
                let conf = node_conf.clone();
                let (results, attempted, errors, killed, done) = (
                    results.clone(),
                    attempted.clone(),
                    errors.clone(),
                    killed.clone(),
                    done.clone(),
                );
                s.spawn(move || {
                    let ipam = ipam(&conf);
                    // Plugin processes (half of them SIGKILLed) spread over the node's
                    // workers and interleaved with the in-process ADDs.
                    let procs = procs_per_node / 16 + usize::from(w < procs_per_node % 16);
                    let g = n * 16 + w;
                    let mine = in_process / 48 + usize::from(g < in_process % 48);
                    let all = mine + procs;
                    for k in 0..all {
                        let cid = format!("n{n}w{w}k{k}");
                        attempted.lock().unwrap().push((n, cid.clone()));
                        let is_proc = k * procs / all != (k + 1) * procs / all;
                        if is_proc {
                            let mut ch = child("ADD", &cid, "eth0", &conf);
                            if rand::thread_rng().gen_bool(0.5) {
                                std::thread::sleep(Duration::from_millis(
                                    rand::thread_rng().gen_range(0..40),
                                ));
                                let _ = ch.kill();
                                let _ = ch.wait();
                                killed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            } else {
                                let out = ch.wait_with_output().unwrap();
                                match child_json(&out.stdout) {
                                    Some(v) if out.status.success() => {
                                        results.lock().unwrap().push((cid, addr_of(&v)))
                                    }
                                    other => {
                                        errors.lock().unwrap().push(format!("{cid}: {other:?}"))
                                    }
                                }
                            }
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            continue;
                        }
                        match ipam.add(&cid, "eth0") {
                            Ok(ips) => results.lock().unwrap().push((cid, ips[0].addr())),
                            Err(e) => errors.lock().unwrap().push(format!("{cid}: {e}")),
                        }
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        }
        // Kill the leader once a third of the work is done.
        let deadline = Instant::now() + Duration::from_secs(120);
        while done.load(std::sync::atomic::Ordering::SeqCst) < total / 3
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let leader = etcd.leader().unwrap_or(0);
        eprintln!(
            "killing etcd member {leader} (leader) after {:?}",
            t0.elapsed()
        );
        etcd.kill(leader);
    });
    let took = t0.elapsed();
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} ADDs failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let results = results.lock().unwrap().clone();
    let mut seen: HashMap<IpAddr, String> = HashMap::new();
    for (cid, ip) in &results {
        if let Some(other) = seen.insert(*ip, cid.clone()) {
            panic!("{ip} given to {other} and {cid}");
        }
    }
    eprintln!(
        "{} ADDs ok ({} plugin processes killed) in {took:?}, {} distinct addresses",
        results.len(),
        killed.load(std::sync::atomic::Ordering::SeqCst),
        seen.len()
    );
    // etcd agrees: one record per address, each naming an attachment we made.
    let check = ipam(&confs[0]);
    let recs = check.records().unwrap();
    let ours: HashMap<&String, &IpAddr> = results.iter().map(|(c, ip)| (c, ip)).collect();
    for (ip, rec) in &recs {
        if let Some(want) = ours.get(&rec.container_id) {
            assert_eq!(*want, ip, "record of {} disagrees", rec.container_id);
        }
    }
    assert!(recs.len() >= results.len());

    // The runtime DELs every container it tried (killed ADDs included), then GCs each node.
    // First a round of DEL processes, half of them SIGKILLed at random (the runtime would
    // call DEL again), then DEL for everything.
    let attempted = attempted.lock().unwrap().clone();
    let mut del_killed = 0;
    for (n, cid) in attempted.iter().step_by(attempted.len() / 24 + 1) {
        let mut ch = child("DEL", cid, "eth0", &confs[*n]);
        if rand::thread_rng().gen_bool(0.5) {
            std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..30)));
            let _ = ch.kill();
            del_killed += 1;
        }
        let _ = ch.wait();
    }
    eprintln!("{del_killed} DEL processes killed");
    std::thread::scope(|s| {
        for chunk in attempted.chunks(attempted.len().div_ceil(24).max(1)) {
            let confs = &confs;
            s.spawn(move || {
                let ipams: Vec<Ipam> = confs.iter().map(ipam).collect();
                for (n, cid) in chunk {
                    ipams[*n].del(cid, "eth0").unwrap();
                }
            });
        }
    });
    for c in &confs {
        assert_eq!(call("GC", "", "", &with_gc(c, &[])).0, 0);
    }
    let usage = check.usage().unwrap();
    assert_eq!(usage.ranges[0].used, 0, "{usage:?}");
    assert_eq!(usage.ranges[0].blocks_claimed, 0, "{usage:?}");
    assert!(check.records().unwrap().is_empty());
    let atts = check
        .client()
        .get_prefix(
            &check.keys().attachments(),
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
    assert!(atts.is_empty(), "{} attachments leaked", atts.len());
}

/// CI size: 1000 ADDs, 3 × 12 of them through plugin processes. Opt-in larger runs:
/// `MVT_CLUSTER_TOTAL=3000 MVT_CLUSTER_PROCS=333 cargo test -p macvnet-cluster --test cluster three_hosts_1000`
/// (PROCS plugin processes per host; the rest in-process).
#[test]
fn three_hosts_1000_adds_leader_killed() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let total = env("MVT_CLUSTER_TOTAL", 1000);
    let procs = env("MVT_CLUSTER_PROCS", 12).min(total / 3);
    // A /20 holds 4094: room for up to ~3500 ADDs with blocks of 16 over 3 hosts.
    let range = if total > 1500 {
        "198.18.32.0/20"
    } else {
        "198.18.8.0/21"
    };
    stress(total, procs, range, json!({"size": 16}));
}

/// Without blocks, and dense: 480 ADDs fill a /23 (510 addresses) to 94 %.
#[test]
fn three_hosts_no_blocks_dense() {
    stress(480, 4, "198.18.16.0/23", json!(false));
}

/// Blocks, dense: every block gets claimed, the last addresses are borrowed.
#[test]
fn three_hosts_blocks_dense() {
    stress(500, 4, "198.18.18.0/23", json!({"size": 16}));
}

/// https endpoints with a private CA and client certificates (`trustedCAFile`, `certFile`,
/// `keyFile`); without the client certificate etcd refuses the handshake.
#[test]
fn tls_with_client_certificates() {
    let Some(certs) = common::Certs::make() else {
        return;
    };
    let Some(etcd) = Etcd::start_with(1, Some(&certs)) else {
        return;
    };
    let dir = TempDir::new("data");
    let mut c = conf(
        "tls",
        "198.18.3.0/24",
        &etcd.endpoints(),
        "h",
        &dir.0,
        json!({"size": 4}),
        3000,
    );
    c["ipam"]["etcd"]["trustedCAFile"] = json!(certs.ca());
    c["ipam"]["etcd"]["certFile"] = json!(certs.path("client.crt"));
    c["ipam"]["etcd"]["keyFile"] = json!(certs.path("client.key"));
    let (code, r) = call("ADD", "c1", "eth0", &c);
    assert_eq!(code, 0, "{r}");
    assert_eq!(call("DEL", "c1", "eth0", &c).0, 0);
    assert!(ipam(&c).records().unwrap().is_empty());
    // No client certificate: refused; no CA: the server is not trusted. Both come back as
    // "try again later" once the (short) timeout runs out.
    let mut no_cert = c.clone();
    no_cert["ipam"]["etcd"]["certFile"] = Value::Null;
    no_cert["ipam"]["etcd"]["keyFile"] = Value::Null;
    no_cert["ipam"]["etcd"]["timeoutMs"] = json!(500);
    assert_ne!(call("ADD", "c2", "eth0", &no_cert).0, 0);
    let mut no_ca = c.clone();
    no_ca["ipam"]["etcd"]["trustedCAFile"] = Value::Null;
    no_ca["ipam"]["etcd"]["timeoutMs"] = json!(500);
    assert_ne!(call("ADD", "c3", "eth0", &no_ca).0, 0);
    // A key without its certificate is a config error.
    let mut half = c.clone();
    half["ipam"]["etcd"]["certFile"] = Value::Null;
    assert_ne!(call("ADD", "c4", "eth0", &half).0, 0);
}

/// A committed transaction whose reply was lost: the retry finds the attachment (no blocks:
/// the allocation; blocks: the block claim, then the allocation) and returns the same address,
/// with exactly one record.
#[test]
fn lost_replies_are_retried_safely() {
    let Some(etcd) = Etcd::start(1) else { return };
    let proxy = common::LossyProxy::start(&etcd.endpoints()[0]);
    let dir = TempDir::new("data");
    for (net, blocks) in [("lost1", json!(false)), ("lost2", json!({"size": 4}))] {
        let c = conf(
            net,
            "198.18.4.0/24",
            std::slice::from_ref(&proxy.url),
            "h",
            &dir.0,
            blocks,
            5000,
        );
        let direct = conf(
            net,
            "198.18.4.0/24",
            &etcd.endpoints(),
            "h",
            &dir.0,
            json!(false),
            5000,
        );
        proxy.drops.store(2, std::sync::atomic::Ordering::SeqCst);
        let (code, r) = call("ADD", "c1", "eth0", &c);
        assert_eq!(code, 0, "{r}");
        assert_eq!(
            proxy.drops.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{net}: no reply was lost"
        );
        let recs = ipam(&direct).records().unwrap();
        assert_eq!(recs.len(), 1, "{net}: {recs:?}");
        assert_eq!(recs[0].0, addr_of(&r));
        assert_eq!(recs[0].1.container_id, "c1");
        // The next ADD on the node uses the adopted block.
        let (_, r2) = call("ADD", "c2", "eth0", &c);
        assert_ne!(addr_of(&r2), addr_of(&r));
        for cid in ["c1", "c2"] {
            assert_eq!(call("DEL", cid, "eth0", &c).0, 0);
        }
        assert_eq!(call("GC", "", "", &with_gc(&c, &[])).0, 0);
        let u = ipam(&direct).usage().unwrap();
        assert_eq!(
            (u.ranges[0].used, u.ranges[0].blocks_claimed),
            (0, 0),
            "{net}: {u:?}"
        );
    }
}
