//! Benchmark for the cluster IPAM (run by bench/cluster.sh against a real etcd).
//!
//! 1. ADD latency through plugin processes: `cluster` (blocks on/off) vs `host-local`,
//!    sequential, p50/p90/p99.
//! 2. Allocation throughput: 3 simulated hosts × 16 workers, in-process allocators (one etcd
//!    client each, as separate plugin processes would have), with and without blocks; also
//!    etcd round trips per ADD.
//!
//! Usage: cluster_bench --endpoints URL[,URL] --cluster BIN --host-local BIN [--n 200] [--total 3000]
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use macvnet_cluster::{Config, Ipam};
use serde_json::{json, Value};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn conf(net: &str, range: &str, eps: &[String], node: &str, dir: &str, blocks: &Value) -> Value {
    json!({"cniVersion": "1.1.0", "name": net, "type": "macvlan", "ipam": {
        "type": "cluster", "range": range,
        "etcd": {"endpoints": eps, "prefix": "/bench"},
        "node": node, "dataDir": dir, "blocks": blocks}})
}

fn host_local_conf(net: &str, range: &str, dir: &str) -> Value {
    // 1.0.0: the reference plugins predate 1.1.0.
    json!({"cniVersion": "1.0.0", "name": net, "type": "macvlan", "ipam": {
        "type": "host-local", "ranges": [[{"subnet": range}]], "dataDir": dir}})
}

fn exec(bin: &str, cmd: &str, cid: &str, stdin: &Value) -> Duration {
    let t0 = Instant::now();
    let mut c = Command::new(bin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", "/proc/1/ns/net")
        .env("CNI_NETNS_OVERRIDE", "1")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{bin} {cmd}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn latency(label: &str, bin: &str, c: &Value, n: usize) {
    // Warm-up (first block claim, page cache).
    for i in 0..5 {
        exec(bin, "ADD", &format!("warm{i}"), c);
    }
    let mut v: Vec<Duration> = (0..n)
        .map(|i| exec(bin, "ADD", &format!("lat{i}"), c))
        .collect();
    let mut d: Vec<Duration> = (0..n)
        .map(|i| exec(bin, "DEL", &format!("lat{i}"), c))
        .collect();
    for i in 0..5 {
        exec(bin, "DEL", &format!("warm{i}"), c);
    }
    println!(
        "| {label} | {n} | {:.2} | {:.2} | {:.2} | {:.2} |",
        pct(&mut v, 0.5),
        pct(&mut v, 0.9),
        pct(&mut v, 0.99),
        pct(&mut d, 0.5)
    );
}

fn throughput(label: &str, eps: &[String], dir: &str, blocks: &Value, range: &str, total: usize) {
    let net = format!("tp{}", std::process::id());
    let confs: Vec<Config> = (0..3)
        .map(|n| {
            let c = conf(&net, range, eps, &format!("h{n}"), dir, blocks);
            Config::parse(c.to_string().as_bytes()).unwrap()
        })
        .collect();
    let per = total / 48;
    let t0 = Instant::now();
    let calls: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..48)
            .map(|w| {
                let cfg = confs[w % 3].clone();
                s.spawn(move || {
                    let ipam = Ipam::new(cfg).unwrap();
                    for k in 0..per {
                        ipam.add(&format!("w{w}k{k}"), "eth0").unwrap();
                    }
                    ipam.client().calls()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let took = t0.elapsed();
    let n = per * 48;
    // Clean up: the whole network's keys and the hint files.
    let ipam = Ipam::new(confs[0].clone()).unwrap();
    ipam.client()
        .delete_prefix(
            &format!("{}/", ipam.keys().root),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
    let _ = std::fs::remove_dir_all(format!("{dir}/{net}"));
    println!(
        "| {label} | {range} | {n} | {:.2} | {:.0} | {:.2} |",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        calls as f64 / n as f64
    );
}

fn main() {
    let eps: Vec<String> = arg("--endpoints")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    let cluster = arg("--cluster").unwrap();
    let host_local = arg("--host-local");
    let reference = arg("--reference");
    let dir = arg("--dir").unwrap_or_else(|| "/dev/shm/macvnet-cluster-bench".into());
    let n: usize = arg("--n").and_then(|s| s.parse().ok()).unwrap_or(200);
    let total: usize = arg("--total").and_then(|s| s.parse().ok()).unwrap_or(3000);
    std::fs::create_dir_all(&dir).unwrap();

    println!(
        "ADD latency, sequential plugin processes ({} etcd members)\n",
        eps.len()
    );
    println!("| plugin | ADDs | p50 ms | p90 ms | p99 ms | DEL p50 ms |");
    println!("|---|---|---|---|---|---|");
    let b = json!({"size": 16});
    latency(
        "cluster, blocks 16",
        &cluster,
        &conf("lat1", "198.18.64.0/20", &eps, "h0", &dir, &b),
        n,
    );
    latency(
        "cluster, no blocks",
        &cluster,
        &conf("lat2", "198.18.80.0/20", &eps, "h0", &dir, &json!(false)),
        n,
    );
    if let Some(hl) = &host_local {
        latency(
            "host-local (macvnet)",
            hl,
            &host_local_conf("lat3", "198.18.96.0/20", &dir),
            n,
        );
    }
    if let Some(r) = &reference {
        latency(
            "host-local (reference Go)",
            r,
            &host_local_conf("lat4", "198.18.112.0/20", &dir),
            n,
        );
    }
    println!("\nAllocation throughput, 3 hosts x 16 workers, in-process allocators\n");
    println!("| mode | pool | ADDs | seconds | ADDs/s | etcd round trips per ADD |");
    println!("|---|---|---|---|---|---|");
    let b64 = json!({"size": 64});
    let off = json!(false);
    // Sparse: the pool ends up less than a fifth full.
    throughput("blocks 16", &eps, &dir, &b, "198.18.0.0/18", total);
    throughput("blocks 64", &eps, &dir, &b64, "198.18.0.0/18", total);
    throughput("no blocks", &eps, &dir, &off, "198.18.0.0/18", total);
    // Dense: 960 ADDs fill a /22 (1022 addresses) to 94 %.
    throughput("blocks 16", &eps, &dir, &b, "198.18.0.0/22", 960);
    throughput("no blocks", &eps, &dir, &off, "198.18.0.0/22", 960);
    let _ = std::fs::remove_dir_all(&dir);
}
