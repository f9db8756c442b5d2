//! Mixed concurrency (issue #6): 16 workers run 1000 ADDs through OUR macvlan (host-local
//! in-process) while 4 workers run the REFERENCE host-local (200 ADDs) on the same dataDir
//! and network. Asserted: every ADD succeeds, no address is handed out twice (results and
//! store files, each file a distinct owner), the kernel shows each of our addresses on its
//! link. Then DEL of all, again concurrently: ours by our macvlan, the reference's entries
//! half by the reference host-local and half by OUR host-local binary (cross-release).
//! Afterwards the store holds only its bookkeeping (`lock`, `last_reserved_ip.N`, our stamp),
//! no link is left in any
//! namespace, and /var/lib/cni/results has nothing of ours.
//! The reference ADDs are paced by ours so they run alongside the whole of our run.
//! Env: MVT_MIXED_OURS (default 1000), MVT_MIXED_REF (default 200).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::*;
use macvnet_netlink::testing::TestNs;
use serde_json::{json, Value};

const NET: &str = "mvtmixed";
const OUR_WORKERS: usize = 16;
const REF_WORKERS: usize = 4;
const REF_HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const RESULTS_DIR: &str = "/var/lib/cni/results";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One attachment made by the test.
#[derive(Debug, Clone)]
struct Att {
    id: String,
    ifname: String,
    ip: IpAddr,
    /// Index of the container namespace (ours) or None (reference host-local only).
    ctr: Option<usize>,
}

struct Setup {
    lab: Lab,
    data: PathBuf,
    ctrs: Vec<TestNs>,
    prefix: String,
}

impl Setup {
    fn ipam(&self) -> Value {
        json!({"type": "host-local", "dataDir": self.data,
               "ranges": [[{"subnet": "198.18.16.0/20"}]]})
    }

    /// The network config; host-local called directly gets the same (as from a main plugin).
    fn conf(&self) -> Value {
        json!({"cniVersion": "1.0.0", "name": NET, "type": "macvlan",
               "master": "eth0", "ipam": self.ipam()})
    }

    /// Run our macvlan inside the host namespace for a link in container `ctr`.
    fn macvlan(&self, command: &str, id: &str, ifname: &str, ctr: usize) -> Outcome {
        let call = Call::new(command, Some(&ns_path(&self.ctrs[ctr])))
            .id(id)
            .ifname(ifname);
        run_prog(
            &self.lab.host,
            &our_dir().join("macvlan"),
            &our_dir().display().to_string(),
            &call,
            &self.conf(),
        )
    }

    /// Run a host-local binary (ours or the reference) directly.
    fn host_local(&self, program: &Path, command: &str, id: &str) -> Outcome {
        // The reference's skel wants CNI_NETNS on ADD; host-local never enters it.
        let call = Call::new(command, Some(&ns_path(&self.ctrs[0])))
            .id(id)
            .ifname("eth0");
        let cni_path = program.parent().unwrap().display().to_string();
        run_prog(&self.lab.host, program, &cni_path, &call, &self.conf())
    }
}

fn first_ip(out: &Outcome) -> IpAddr {
    let r = out.json();
    let addr = r["ips"][0]["address"].as_str().unwrap();
    addr.split('/').next().unwrap().parse().unwrap()
}

/// Names in /var/lib/cni/results mentioning `prefix` (the runtime's cache, which plugins
/// must not write; checked so a regression there shows).
fn results_of(prefix: &str) -> Vec<String> {
    std::fs::read_dir(RESULTS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Store entries other than its bookkeeping (`lock`, `last_reserved_ip.N`, our stamp).
fn foreign_entries(data: &Path) -> Vec<String> {
    store_files(data, NET)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !is_store_bookkeeping(n))
        .collect()
}

#[test]
fn mixed_ours_and_reference_host_local_through_macvlan() {
    let test = "mixed_ours_and_reference_host_local_through_macvlan";
    if !require(test, false) {
        return;
    }
    if !Path::new(REF_HOST_LOCAL).exists() {
        eprintln!("SKIP {test}: {REF_HOST_LOCAL} not installed");
        return;
    }
    let n_ours = env_usize("MVT_MIXED_OURS", 1000);
    let n_ref = env_usize("MVT_MIXED_REF", 200);
    let lab = Lab::new("mixed");
    let data = lab.data_dir("data");
    let ctrs: Vec<TestNs> = (0..OUR_WORKERS)
        .map(|w| lab.container(&format!("mx{w}")))
        .collect();
    let setup = Setup {
        lab,
        data,
        ctrs,
        prefix: format!("mvt-{}-mx", std::process::id()),
    };
    let st = &setup;
    let reference_bin = PathBuf::from(REF_HOST_LOCAL);
    let our_host_local = our_dir().join("host-local");
    assert!(results_of(&st.prefix).is_empty());

    // Phase 1: concurrent ADDs, all workers released together.
    let t0 = Instant::now();
    let barrier = Barrier::new(OUR_WORKERS + REF_WORKERS);
    // Our finished ADDs: the reference's ADD k waits for k/n_ref of ours, so its run
    // spans ours instead of racing ahead (bounded wait).
    let our_adds = AtomicUsize::new(0);
    // When each side's last worker finished.
    let (mut ours_done, mut ref_done) = (Duration::ZERO, Duration::ZERO);
    let mut atts: Vec<Att> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for w in 0..OUR_WORKERS {
            let (barrier, our_adds) = (&barrier, &our_adds);
            // Worker w takes ADDs w, w+16, ...: n_ours in all.
            let mine: Vec<usize> = (w..n_ours).step_by(OUR_WORKERS).collect();
            handles.push(s.spawn(move || {
                barrier.wait();
                let got = mine
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let id = format!("{}-o{k}", st.prefix);
                        let ifname = format!("n{i}");
                        let out = st.macvlan("ADD", &id, &ifname, w);
                        assert!(out.ok, "our ADD {id} failed: {} {}", out.stdout, out.stderr);
                        our_adds.fetch_add(1, Ordering::Relaxed);
                        Att {
                            ip: first_ip(&out),
                            id,
                            ifname,
                            ctr: Some(w),
                        }
                    })
                    .collect::<Vec<_>>();
                (true, t0.elapsed(), got)
            }));
        }
        for r in 0..REF_WORKERS {
            let (barrier, bin, our_adds) = (&barrier, &reference_bin, &our_adds);
            let mine: Vec<usize> = (r..n_ref).step_by(REF_WORKERS).collect();
            handles.push(s.spawn(move || {
                barrier.wait();
                let got = mine
                    .iter()
                    .map(|k| {
                        let due = k * n_ours / n_ref.max(1);
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while our_adds.load(Ordering::Relaxed) < due && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        let id = format!("{}-r{k}", st.prefix);
                        let out = st.host_local(bin, "ADD", &id);
                        assert!(
                            out.ok,
                            "reference ADD {id} failed: {} {}",
                            out.stdout, out.stderr
                        );
                        Att {
                            ip: first_ip(&out),
                            id,
                            ifname: "eth0".into(),
                            ctr: None,
                        }
                    })
                    .collect::<Vec<_>>();
                (false, t0.elapsed(), got)
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            let (ours, done, got) = h.join().unwrap();
            let last = if ours { &mut ours_done } else { &mut ref_done };
            *last = (*last).max(done);
            all.extend(got);
        }
        all
    });
    let add_time = t0.elapsed();
    atts.sort_by_key(|a| a.ip);
    let ours_count = atts.iter().filter(|a| a.ctr.is_some()).count();
    assert_eq!(ours_count, n_ours, "our ADDs");
    assert_eq!(atts.len(), n_ours + n_ref, "all ADDs");

    // No address twice in the results.
    let mut by_ip: HashMap<IpAddr, Vec<&str>> = HashMap::new();
    for a in &atts {
        by_ip.entry(a.ip).or_default().push(&a.id);
    }
    let dups: Vec<_> = by_ip.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(dups.is_empty(), "duplicate addresses in results: {dups:?}");

    // The store: one file per address, each holding its result's owner, owners distinct.
    let files: BTreeMap<String, String> = store_files(&st.data, NET)
        .into_iter()
        .filter(|(n, _)| n.parse::<IpAddr>().is_ok())
        .collect();
    assert_eq!(files.len(), atts.len(), "address files in the store");
    let owners: BTreeSet<&String> = files.values().collect();
    assert_eq!(owners.len(), files.len(), "store files with the same owner");
    for a in &atts {
        let content = files.get(&a.ip.to_string());
        let want = format!("{}\r\n{}", a.id, a.ifname);
        assert_eq!(content, Some(&want), "store file of {}", a.ip);
    }

    // The kernel: each of our addresses on its link, in its container (all of them).
    let mut checked = 0;
    for (w, ctr) in st.ctrs.iter().enumerate() {
        let mut h = ctr.handle().unwrap();
        let names: HashMap<u32, String> = h
            .links()
            .unwrap()
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        let on: BTreeSet<(String, IpAddr)> = h
            .addrs(None)
            .unwrap()
            .into_iter()
            .filter_map(|a| Some((names.get(&a.index)?.clone(), a.addr.addr())))
            .collect();
        for a in atts.iter().filter(|a| a.ctr == Some(w)) {
            assert!(
                on.contains(&(a.ifname.clone(), a.ip)),
                "{}: {} not on {} in {}",
                a.id,
                a.ip,
                a.ifname,
                ctr.name
            );
            checked += 1;
        }
    }
    assert_eq!(checked, n_ours);

    // Ours refuses a second address to attachments the reference allocated while ours
    // ran (found through the list of entries without our marker): by our host-local
    // binary, and by our macvlan, which then deletes its link again.
    let ref_sample: Vec<&Att> = atts.iter().filter(|a| a.ctr.is_none()).take(10).collect();
    for a in &ref_sample {
        let out = st.host_local(&our_host_local, "ADD", &a.id);
        assert!(
            !out.ok && out.stdout.contains("duplicate allocation is not allowed"),
            "our host-local ADD of the reference's {}: {} {}",
            a.id,
            out.stdout,
            out.stderr
        );
    }
    if let Some(a) = ref_sample.first() {
        let out = st.macvlan("ADD", &a.id, &a.ifname, 0);
        assert!(
            !out.ok && out.stdout.contains("duplicate allocation is not allowed"),
            "our macvlan ADD of the reference's {}: {}",
            a.id,
            out.stdout
        );
        assert!(
            !links(&st.ctrs[0]).contains(&a.ifname),
            "refused macvlan ADD left {}",
            a.ifname
        );
    }
    assert_eq!(
        store_ips(&st.data, NET).len(),
        atts.len(),
        "a refused ADD took an address"
    );

    // Phase 2: DEL of all, concurrently. Reference entries alternate between the
    // reference's DEL and our host-local's DEL.
    let t1 = Instant::now();
    let ref_atts: Vec<&Att> = atts.iter().filter(|a| a.ctr.is_none()).collect();
    let by_ref = ref_atts.len().div_ceil(2);
    let by_our_hl = ref_atts.len() / 2;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for w in 0..OUR_WORKERS {
            let mine: Vec<&Att> = atts.iter().filter(|a| a.ctr == Some(w)).collect();
            handles.push(s.spawn(move || {
                for a in mine {
                    let out = st.macvlan("DEL", &a.id, &a.ifname, w);
                    assert!(
                        out.ok,
                        "our DEL {} failed: {} {}",
                        a.id, out.stdout, out.stderr
                    );
                }
            }));
        }
        for r in 0..REF_WORKERS {
            let mine: Vec<(usize, &Att)> = ref_atts
                .iter()
                .enumerate()
                .skip(r)
                .step_by(REF_WORKERS)
                .map(|(k, a)| (k, *a))
                .collect();
            let (rbin, obin) = (&reference_bin, &our_host_local);
            handles.push(s.spawn(move || {
                for (k, a) in mine {
                    let (who, bin) = if k % 2 == 0 {
                        ("reference", rbin)
                    } else {
                        ("our host-local", obin)
                    };
                    let out = st.host_local(bin, "DEL", &a.id);
                    assert!(
                        out.ok,
                        "{who} DEL {} failed: {} {}",
                        a.id, out.stdout, out.stderr
                    );
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    let del_time = t1.elapsed();

    let left = foreign_entries(&st.data);
    let ctr_links: Vec<(String, Vec<String>)> = st
        .ctrs
        .iter()
        .map(|c| (c.name.clone(), links(c)))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let host_links: Vec<String> = links(&st.lab.host)
        .into_iter()
        .filter(|l| l != "eth0")
        .collect();
    let results = results_of(&st.prefix);
    eprintln!(
        "mixed: {n_ours} ADDs by our macvlan ({OUR_WORKERS} workers) and {n_ref} by the reference \
         host-local ({REF_WORKERS} workers) in {add_time:?} (reference done at {ref_done:?}, ours at \
         {ours_done:?}); {} distinct addresses, {} store files, \
         {checked} checked on their links; DEL in {del_time:?}: {n_ours} by our macvlan, \
         {by_ref} reference entries by the reference, {by_our_hl} by our host-local; \
         store entries left {}, container links left {}, host links left {}, results left {}",
        by_ip.len(),
        files.len(),
        left.len(),
        ctr_links.len(),
        host_links.len(),
        results.len(),
    );
    assert!(left.is_empty(), "store entries after DEL: {left:?}");
    assert!(ctr_links.is_empty(), "links left: {ctr_links:?}");
    assert!(host_links.is_empty(), "host links left: {host_links:?}");
    assert!(results.is_empty(), "{RESULTS_DIR} entries: {results:?}");
}
