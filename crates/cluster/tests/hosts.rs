//! Issue #11's cluster scenario with real hosts: three host namespaces whose veth uplinks are
//! ports of one bridge in a "lan" namespace, where a 3-member etcd listens on the bridge's
//! addresses. Every plugin process runs inside its host's namespace (node = host name): a few
//! ADDs take the full path (our `macvlan` plugin on the host's uplink, ipam `cluster`, a
//! container namespace of that host) and ping across hosts; the rest are `cluster` IPAM-only
//! processes. Needs root, etcd, and the release plugin bins next to this test's target dir
//! (`cargo build --release --workspace`, as scripts/test does); otherwise it skips.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Etcd, TempDir};
use macvnet_cluster::{Config, Ipam};
use macvnet_netlink as nl;
use nl::testing::{require_root, set_up, TestNs};
use nl::{Handle, LinkChange};
use rand::Rng;
use serde_json::{json, Value};

const HOSTS: usize = 3;
const WORKERS: usize = 16;
/// Containers per host that get a real macvlan through the full plugin path.
const FULL_PATH: usize = 4;
const ETCD_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 64, 1),
    Ipv4Addr::new(198, 18, 64, 2),
    Ipv4Addr::new(198, 18, 64, 3),
];
/// The shared segment: etcd on .1-.3, host uplinks on .11-.13, children from the rest.
const SUBNET_PREFIX: u8 = 21;
const POOL: &str = "198.18.64.0/21";

/// The `macvlan` and `cluster` plugin bins of this build (target/<profile>/), if built.
fn plugin_dir(test: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.to_path_buf();
    if ["macvlan", "cluster"].iter().all(|b| dir.join(b).exists()) {
        return Some(dir);
    }
    eprintln!(
        "SKIP {test}: plugin bins macvlan/cluster not in {} (cargo build --release --workspace)",
        dir.display()
    );
    None
}

/// lan (bridge br0 holding the etcd addresses), hosts h0..h2 (uplink eth0 = a br0 port), and
/// FULL_PATH + 1 container namespaces per host (the last for a killed macvlan ADD). Dropping it deletes every namespace.
struct Segment {
    // Field order: containers and hosts go first, the lan (with the bridge) last.
    containers: Vec<Vec<TestNs>>,
    hosts: Vec<TestNs>,
    lan: TestNs,
}

fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 64, 11 + i as u8)
}

impl Segment {
    fn build() -> Segment {
        let lan = TestNs::new("lan").unwrap();
        let mut l = lan.handle().unwrap();
        l.add_bridge("br0").unwrap();
        let br = l.link_by_name("br0").unwrap();
        set_up(&mut l, br.index, true).unwrap();
        for ip in ETCD_IPS {
            l.add_addr(br.index, format!("{ip}/{SUBNET_PREFIX}").parse().unwrap())
                .unwrap();
        }
        let lan_fd = lan.ns.open().unwrap();
        let mut hosts = Vec::new();
        let mut containers = Vec::new();
        for i in 0..HOSTS {
            let host = TestNs::new(&format!("h{i}")).unwrap();
            let mut h = host.handle().unwrap();
            let port = format!("p{i}");
            h.add_veth("eth0", &port, Some(lan_fd.as_fd())).unwrap();
            let eth0 = h.link_by_name("eth0").unwrap();
            h.add_addr(
                eth0.index,
                format!("{}/{SUBNET_PREFIX}", host_ip(i)).parse().unwrap(),
            )
            .unwrap();
            set_up(&mut h, eth0.index, true).unwrap();
            let p = l.link_by_name(&port).unwrap();
            l.set_link(
                p.index,
                &LinkChange {
                    controller: Some(br.index),
                    up: Some(true),
                    ..Default::default()
                },
            )
            .unwrap();
            hosts.push(host);
            containers.push(
                (0..=FULL_PATH)
                    .map(|k| TestNs::new(&format!("h{i}c{k}")).unwrap())
                    .collect(),
            );
        }
        Segment {
            containers,
            hosts,
            lan,
        }
    }
}

fn links(ns: &TestNs) -> Vec<String> {
    let mut h = ns.handle().unwrap();
    let mut v: Vec<String> = h.links().unwrap().into_iter().map(|l| l.name).collect();
    v.sort();
    v
}

/// One attachment the runtime asked for.
#[derive(Clone, Debug)]
struct Att {
    host: usize,
    cid: String,
    /// Some(container ns path): through macvlan; None: IPAM only.
    netns: Option<String>,
    /// SIGKILL its ADD process at a random moment.
    kill: bool,
}

struct Env<'a> {
    seg: &'a Segment,
    bins: PathBuf,
    confs: Vec<Value>,
}

impl Env<'_> {
    /// A plugin process for `a` inside its host's namespace, stdin written and closed.
    fn spawn(&self, cmd: &str, a: &Att, conf: &Value) -> Child {
        let (prog, netns) = match &a.netns {
            Some(p) => ("macvlan", p.clone()),
            // IPAM only: any namespace but the host's own will do for CNI_NETNS.
            None => ("cluster", self.seg.lan.ns.path().display().to_string()),
        };
        let bin = self.bins.join(prog);
        let mut c =
            nl::netns::command_in(&self.seg.hosts[a.host].ns, &bin.to_string_lossy()).unwrap();
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", &a.cid)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", netns)
            .env("CNI_PATH", &self.bins)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        let mut input = ch.stdin.take().unwrap();
        let _ = input.write_all(conf.to_string().as_bytes());
        drop(input);
        ch
    }

    /// Run a CNI command to the end: Ok(stdout JSON) on exit 0, Err(description) otherwise.
    fn call(&self, cmd: &str, a: &Att, conf: &Value) -> Result<Value, String> {
        let out = self.spawn(cmd, a, conf).wait_with_output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() {
            Ok(v)
        } else {
            Err(format!(
                "{cmd} {}: {:?} {v} {}",
                a.cid,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

fn addr_of(result: &Value) -> Option<ipnet::IpNet> {
    result["ips"][0]["address"].as_str()?.parse().ok()
}

fn conf(endpoints: &[String], host: usize, data: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "hosts",
        "type": "macvlan",
        "master": "eth0",
        "mode": "bridge",
        "ipam": {
            "type": "cluster",
            "range": POOL,
            "exclude": ["198.18.64.0/28"],
            "etcd": {"endpoints": endpoints, "prefix": "/mvt-hosts", "timeoutMs": 20000,
                     "dialTimeoutMs": 1000, "requestTimeoutMs": 5000},
            "node": format!("h{host}"),
            "dataDir": data,
            "blocks": {"size": 16},
        }
    })
}

fn with_gc(v: &Value, valid: &[&Att]) -> Value {
    let mut v = v.clone();
    v["cni.dev/valid-attachments"] = valid
        .iter()
        .map(|a| json!({"containerID": a.cid, "ifname": "eth0"}))
        .collect();
    v
}

/// 3 hosts × 16 parallel workers, 1000 ADDs (15 of them real macvlans), random SIGKILLs of
/// IPAM processes and of one macvlan ADD per host, the etcd leader killed after a third: no address twice, cross-host pings,
/// GC with the valid list leaves exactly the live attachments, DEL + GC leaves nothing.
#[test]
fn three_host_namespaces_on_one_bridge() {
    let test = "three_host_namespaces_on_one_bridge";
    if !require_root(test) || common::etcd_bin().is_none() {
        return;
    }
    let Some(bins) = plugin_dir(test) else { return };
    let total = std::env::var("MVT_HOSTS_TOTAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize);
    let t_all = Instant::now();
    let seg = Segment::build();
    let Some(mut etcd) = Etcd::start_in(&seg.lan.ns, &ETCD_IPS) else {
        return;
    };
    let dirs: Vec<TempDir> = (0..HOSTS).map(|i| TempDir::new(&format!("h{i}"))).collect();
    let eps = etcd.endpoints();
    let env = Env {
        seg: &seg,
        bins,
        confs: (0..HOSTS).map(|i| conf(&eps, i, &dirs[i].0)).collect(),
    };

    // Work list: per host and worker, the first FULL_PATH + 1 workers start with a macvlan ADD.
    let mut plan: Vec<Vec<Vec<Att>>> = vec![vec![Vec::new(); WORKERS]; HOSTS];
    for (i, host_plan) in plan.iter_mut().enumerate() {
        let share = total / HOSTS + usize::from(i < total % HOSTS);
        for n in 0..share {
            let w = n % WORKERS;
            let k = n / WORKERS;
            // Worker FULL_PATH's first macvlan ADD (in the host's spare container) is killed.
            let netns = (k == 0 && w <= FULL_PATH)
                .then(|| seg.containers[i][w].ns.path().display().to_string());
            let kill =
                netns.is_none() && rand::thread_rng().gen_bool(0.04) || (k == 0 && w == FULL_PATH);
            host_plan[w].push(Att {
                host: i,
                cid: format!("h{i}w{w}k{k}"),
                netns,
                kill,
            });
        }
    }
    let attempted: Vec<Att> = plan.iter().flatten().flatten().cloned().collect();
    assert_eq!(attempted.len(), total);

    let results: Mutex<Vec<(Att, ipnet::IpNet)>> = Mutex::default();
    let errors: Mutex<Vec<String>> = Mutex::default();
    let killed = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for host_plan in &plan {
            for work in host_plan {
                let (env, results, errors, killed, done) =
                    (&env, &results, &errors, &killed, &done);
                s.spawn(move || {
                    for a in work {
                        let conf = &env.confs[a.host];
                        // About 4 % of the IPAM-only processes and one macvlan ADD per host
                        // die by SIGKILL at a random moment.
                        if a.kill {
                            let mut ch = env.spawn("ADD", a, conf);
                            let ms = rand::thread_rng().gen_range(0..40);
                            std::thread::sleep(Duration::from_millis(ms));
                            let _ = ch.kill();
                            let _ = ch.wait();
                            killed.fetch_add(1, Ordering::SeqCst);
                        } else {
                            match env.call("ADD", a, conf) {
                                Ok(v) => match addr_of(&v) {
                                    Some(ip) => results.lock().unwrap().push((a.clone(), ip)),
                                    None => errors.lock().unwrap().push(format!("{}: {v}", a.cid)),
                                },
                                Err(e) => errors.lock().unwrap().push(e),
                            }
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        }
        // One member (the leader) dies a third of the way in; two keep the quorum.
        let deadline = Instant::now() + Duration::from_secs(120);
        while done.load(Ordering::SeqCst) < total / 3 && Instant::now() < deadline {
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
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} ADDs failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let results = results.into_inner().unwrap();
    let killed = killed.into_inner();
    assert_eq!(results.len() + killed, total);
    let mut owner: HashMap<IpAddr, &str> = HashMap::new();
    for (a, ip) in &results {
        assert_eq!(ip.prefix_len(), SUBNET_PREFIX, "{ip}");
        assert!(
            ip.addr() > IpAddr::V4(Ipv4Addr::new(198, 18, 64, 15)),
            "{ip}"
        );
        if let Some(other) = owner.insert(ip.addr(), &a.cid) {
            panic!("{ip} given to {other} and {}", a.cid);
        }
    }
    eprintln!(
        "{} ADDs ok, {killed} plugin processes SIGKILLed, in {took:?}",
        results.len()
    );

    // The macvlan children: the kernel shows each with its address, and each reaches a child
    // on every other host over the shared bridge.
    let full: Vec<(&Att, IpAddr)> = results
        .iter()
        .filter(|(a, _)| a.netns.is_some())
        .map(|(a, ip)| (a, ip.addr()))
        .collect();
    assert_eq!(full.len(), HOSTS * FULL_PATH);
    for (a, ip) in &full {
        let ns = nl::NetnsRef::Path(PathBuf::from(a.netns.as_ref().unwrap()));
        let mut h = Handle::open(&ns).unwrap();
        let eth0 = h.link_by_name("eth0").unwrap();
        assert!(eth0.up, "{}", a.cid);
        let addrs = h.addrs(Some(eth0.index)).unwrap();
        assert!(
            addrs.iter().any(|x| x.addr.addr() == *ip),
            "{}: {ip} not on eth0: {addrs:?}",
            a.cid
        );
    }
    let pings: Vec<(&Att, &Att, IpAddr)> = full
        .iter()
        .flat_map(|(a, _)| {
            full.iter()
                .filter(move |(b, _)| b.host != a.host)
                .map(move |(b, ip)| (*a, *b, *ip))
        })
        .collect();
    let failed: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = pings
            .iter()
            .map(|(a, b, ip)| {
                s.spawn(move || {
                    let ns = nl::NetnsRef::Path(PathBuf::from(a.netns.as_ref().unwrap()));
                    let o = nl::icmp::ping(&ns, *ip, 3, Duration::from_millis(500));
                    (!o.is_ok_and(|o| o.replied)).then(|| format!("{} → {} ({ip})", a.cid, b.cid))
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    assert!(!pings.is_empty());
    assert!(failed.is_empty(), "no reply across hosts: {failed:?}");
    eprintln!("{} cross-host pings answered", pings.len());

    // etcd agrees with the results; killed ADDs may have left records of their own.
    let check = Ipam::new(Config::parse(env.confs[0].to_string().as_bytes()).unwrap()).unwrap();
    let records = || etcd.reach(|| check.records().unwrap());
    let recs = records();
    let by_cid: HashMap<&str, IpAddr> = results
        .iter()
        .map(|(a, ip)| (a.cid.as_str(), ip.addr()))
        .collect();
    for (ip, rec) in &recs {
        if let Some(want) = by_cid.get(rec.container_id.as_str()) {
            assert_eq!(want, ip, "record of {} disagrees", rec.container_id);
        }
    }
    let leaked = recs.len() - results.len();

    // GC per node with the live attachments as the valid list: exactly those stay.
    for (i, c) in env.confs.iter().enumerate() {
        let valid: Vec<&Att> = results
            .iter()
            .map(|(a, _)| a)
            .filter(|a| a.host == i)
            .collect();
        let gc = Att {
            host: i,
            cid: String::new(),
            netns: None,
            kill: false,
        };
        env.call("GC", &gc, &with_gc(c, &valid)).unwrap();
    }
    let live: HashSet<(String, IpAddr)> = records()
        .into_iter()
        .map(|(ip, r)| (r.container_id, ip))
        .collect();
    let want: HashSet<(String, IpAddr)> = results
        .iter()
        .map(|(a, ip)| (a.cid.clone(), ip.addr()))
        .collect();
    assert_eq!(live, want, "GC with the valid list");
    eprintln!("GC removed {leaked} records of killed ADDs");

    let half_made = seg
        .containers
        .iter()
        .filter(|cs| links(&cs[FULL_PATH]).len() > 1)
        .count();
    eprintln!("{half_made} of {HOSTS} killed macvlan ADDs left a link behind (DEL must remove it)");

    // The runtime DELs everything it tried (killed ADDs too), 16 at a time per host.
    let del_errors: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..HOSTS * WORKERS)
            .map(|g| {
                let (env, attempted) = (&env, &attempted);
                s.spawn(move || {
                    attempted
                        .iter()
                        .filter(|a| a.host == g / WORKERS)
                        .skip(g % WORKERS)
                        .step_by(WORKERS)
                        .filter_map(|a| env.call("DEL", a, &env.confs[a.host]).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(del_errors.is_empty(), "{del_errors:?}");
    for (i, c) in env.confs.iter().enumerate() {
        let gc = Att {
            host: i,
            cid: String::new(),
            netns: None,
            kill: false,
        };
        env.call("GC", &gc, &with_gc(c, &[])).unwrap();
    }
    assert!(records().is_empty());
    let (usage, atts) = etcd.reach(|| {
        let atts = check
            .client()
            .get_prefix(
                &check.keys().attachments(),
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap();
        (check.usage().unwrap(), atts)
    });
    assert_eq!(usage.ranges[0].used, 0, "{usage:?}");
    assert_eq!(usage.ranges[0].blocks_claimed, 0, "{usage:?}");
    assert!(atts.is_empty(), "{} attachment keys leaked", atts.len());
    for (i, cs) in seg.containers.iter().enumerate() {
        assert_eq!(links(&seg.hosts[i]), ["eth0", "lo"]);
        for c in cs {
            assert_eq!(links(c), ["lo"], "{}", c.name);
        }
    }
    eprintln!("whole test {:?}", t_all.elapsed());
}
