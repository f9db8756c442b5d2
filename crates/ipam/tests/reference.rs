//! Differential tests against the reference host-local (/usr/lib/cni/host-local,
//! containernetworking-plugins v1.1.1): same results, same files byte for byte,
//! each side releases the other's entries, and a mixed concurrent run.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{conf, our_files, reference, run_reference, snapshot, TempDir};
use macvnet_ipam::host_local;

#[derive(Clone, Copy)]
enum Op<'a> {
    Add(&'a str, &'a str, &'a str),
    Del(&'a str, &'a str),
}

/// Our outcome in the reference's JSON terms: Ok(result) or Err(msg).
fn ours(conf: &str, op: Op<'_>) -> Result<serde_json::Value, String> {
    match op {
        Op::Add(id, ifname, args) => host_local::add(conf.as_bytes(), id, ifname, args)
            .map(|r| r.to_json("1.0.0").unwrap())
            .map_err(|e| e.to_string()),
        Op::Del(id, ifname) => host_local::del(conf.as_bytes(), id, ifname, "")
            .map(|_| serde_json::Value::Null)
            .map_err(|e| e.to_string()),
    }
}

/// v1.1.1 prints `"dns": {}`; the cni crate omits an empty dns like newer Go.
fn without_empty_dns(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        if m.get("dns")
            .is_some_and(|d| d.as_object().is_some_and(|o| o.is_empty()))
        {
            m.remove("dns");
        }
    }
    v
}

fn theirs(conf: &str, op: Op<'_>) -> Result<serde_json::Value, String> {
    let r = match op {
        Op::Add(id, ifname, args) => run_reference("ADD", conf, id, ifname, args),
        Op::Del(id, ifname) => run_reference("DEL", conf, id, ifname, ""),
    };
    r.map(without_empty_dns)
        .map_err(|e| e["msg"].as_str().unwrap_or("?").to_string())
}

#[test]
fn same_results_and_files_as_reference() {
    if reference().is_none() {
        return;
    }
    let (a, b) = (TempDir::new("diff-ref"), TempDir::new("diff-ours"));
    let extra = r#","ranges":[[{"subnet":"198.18.0.0/28","rangeStart":"198.18.0.3","rangeEnd":"198.18.0.9"},{"subnet":"198.18.1.0/30"}],[{"subnet":"2001:db8::/124","gateway":"2001:db8::f"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"2001:db8:1::/64","gw":"2001:db8::f"}]"#;
    let (ca, cb) = (
        conf(&a.path, "diffnet", "1.0.0", extra),
        conf(&b.path, "diffnet", "1.0.0", extra),
    );
    let ops = [
        Op::Add("c1", "eth0", ""),
        Op::Add("c2", "eth0", ""),
        Op::Add("c3", "eth0", ""),
        Op::Add("c1", "eth0", ""), // duplicate
        Op::Add("c1", "eth1", ""),
        Op::Del("c2", "eth0"),
        Op::Add("c4", "eth0", "IP=198.18.0.8"),
        Op::Add("c5", "eth0", "IP=198.18.0.8"), // taken
        Op::Add("c5", "eth0", "IP=198.18.0.1"), // outside the range
        Op::Add("c5", "eth0", "IP=198.18.1.1"), // gateway
        Op::Add(
            "c5",
            "eth0",
            "IgnoreUnknown=1;K8S_POD_NAME=p;IP=2001:db8::e",
        ),
        Op::Add("c6", "eth0", "FOO=bar"), // unknown arg
        Op::Add("c6", "eth0", ""),
        Op::Add("c7", "eth0", ""),
        Op::Add("c8", "eth0", ""),
        Op::Add("c9", "eth0", ""),
        Op::Add("c10", "eth0", ""),
        Op::Add("c11", "eth0", ""), // v4 wraps
        Op::Add("c12", "eth0", ""),
        Op::Add("c13", "eth0", ""), // exhausted
        Op::Del("c1", "eth0"),
        Op::Del("nobody", "eth0"),
        Op::Add("c13", "eth0", ""),
    ];
    for (n, op) in ops.iter().enumerate() {
        let (ra, rb) = (theirs(&ca, *op), ours(&cb, *op));
        eprintln!("step {n}: {}", serde_json::to_string(&rb).unwrap());
        assert_eq!(ra, rb, "step {n}: reference vs ours");
        let (sa, sb) = (
            snapshot(&a.path.join("diffnet")),
            snapshot(&b.path.join("diffnet")),
        );
        assert_eq!(sa, sb, "step {n}: store contents differ");
    }
    // Modes of the address files.
    let dir = b.path.join("diffnet");
    let names: Vec<String> = snapshot(&dir).into_keys().collect();
    assert!(names.len() > 10, "{names:?}");
}

#[test]
fn each_side_releases_the_others_entries() {
    if reference().is_none() {
        return;
    }
    let t = TempDir::new("cross");
    let c = conf(
        &t.path,
        "x",
        "1.0.0",
        r#","ranges":[[{"subnet":"198.18.2.0/24"}],[{"subnet":"2001:db8:2::/64"}]]"#,
    );
    let dir = t.path.join("x");
    // Reference ADD, our CHECK and DEL.
    theirs(&c, Op::Add("r1", "eth0", "")).unwrap();
    host_local::check(c.as_bytes(), "r1", "eth0", "").unwrap();
    assert_eq!(
        host_local::del(c.as_bytes(), "r1", "eth0", "")
            .unwrap()
            .len(),
        2
    );
    // Our ADD, reference CHECK and DEL (which also removes our marker: same content).
    ours(&c, Op::Add("o1", "eth0", "")).unwrap();
    assert_eq!(our_files(&dir), [".macvnet-att:o1:eth0"]);
    run_reference("CHECK", &c, "o1", "eth0", "").unwrap();
    theirs(&c, Op::Del("o1", "eth0")).unwrap();
    let left: Vec<String> = snapshot(&dir).into_keys().collect();
    assert_eq!(left, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
    assert!(our_files(&dir).is_empty());
    // Interleaved ADDs continue one round-robin sequence.
    let mut got = Vec::new();
    for i in 0..6 {
        let id = format!("i{i}");
        let r = if i % 2 == 0 {
            ours(&c, Op::Add(&id, "eth0", "")).unwrap()
        } else {
            theirs(&c, Op::Add(&id, "eth0", "")).unwrap()
        };
        got.push(r["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        [
            "198.18.2.4/24",
            "198.18.2.5/24",
            "198.18.2.6/24",
            "198.18.2.7/24",
            "198.18.2.8/24",
            "198.18.2.9/24"
        ]
    );
    // The reference refuses a duplicate of ours (it scans every entry).
    let e = theirs(&c, Op::Add("i0", "eth0", "")).unwrap_err();
    assert!(e.contains("duplicate allocation is not allowed"), "{e}");
}

fn ip_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

/// 8 threads of ours and 4 processes of the reference at a time, 400 ADDs on
/// one dataDir: every address handed out once, files match the results.
#[test]
fn concurrent_mixed_allocations_never_duplicate() {
    if reference().is_none() {
        return;
    }
    let t = TempDir::new("conc");
    let c = conf(
        &t.path,
        "conc",
        "1.0.0",
        r#","ranges":[[{"subnet":"198.18.4.0/22"}]]"#,
    );
    let mut handles = Vec::new();
    for w in 0..12 {
        let c = c.clone();
        handles.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            let (n, ours_side) = if w < 8 { (35, true) } else { (30, false) };
            for i in 0..n {
                let id = format!("w{w}-{i}");
                let r = if ours_side {
                    ours(&c, Op::Add(&id, "eth0", ""))
                } else {
                    theirs(&c, Op::Add(&id, "eth0", ""))
                };
                let r = r.unwrap_or_else(|e| panic!("{id}: {e}"));
                got.push((id, r["ips"][0]["address"].as_str().unwrap().to_string()));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    assert_eq!(all.len(), 8 * 35 + 4 * 30);
    let distinct: BTreeSet<&String> = all.iter().map(|(_, ip)| ip).collect();
    assert_eq!(distinct.len(), 400, "duplicate addresses handed out");
    let files = ip_files(&t.path.join("conc"));
    assert_eq!(files.len(), 400);
    for (id, addr) in &all {
        let ip = addr.split('/').next().unwrap();
        let content = &files.iter().find(|(k, _)| k == ip).unwrap().1;
        assert_eq!(content, format!("{id}\r\neth0").as_bytes(), "{ip}");
    }
}

/// Old-format `<id>`-only entries: with one range set DEL leaves them when a
/// new-format entry matched; with two sets the reference's second pass takes them.
#[test]
fn old_format_release_matches_reference() {
    if reference().is_none() {
        return;
    }
    for extra in [
        r#","ranges":[[{"subnet":"198.18.6.0/24"}]]"#,
        r#","ranges":[[{"subnet":"198.18.6.0/24"}],[{"subnet":"2001:db8:6::/64"}]]"#,
    ] {
        let (a, b) = (TempDir::new("old-ref"), TempDir::new("old-ours"));
        let (ca, cb) = (
            conf(&a.path, "o", "1.0.0", extra),
            conf(&b.path, "o", "1.0.0", extra),
        );
        theirs(&ca, Op::Add("o1", "eth0", "")).unwrap();
        ours(&cb, Op::Add("o1", "eth0", "")).unwrap();
        for d in [&a, &b] {
            std::fs::write(d.path.join("o/198.18.6.200"), b"o1").unwrap();
            std::fs::write(d.path.join("o/198.18.6.201"), b"o2").unwrap();
        }
        theirs(&ca, Op::Del("o1", "eth0")).unwrap();
        ours(&cb, Op::Del("o1", "eth0")).unwrap();
        assert_eq!(
            snapshot(&a.path.join("o")),
            snapshot(&b.path.join("o")),
            "{extra}"
        );
        // Then the id-only fallback.
        theirs(&ca, Op::Del("o2", "eth9")).unwrap();
        ours(&cb, Op::Del("o2", "eth9")).unwrap();
        assert_eq!(
            snapshot(&a.path.join("o")),
            snapshot(&b.path.join("o")),
            "{extra}"
        );
        assert!(!b.path.join("o/198.18.6.201").exists());
    }
}

/// Go matches JSON keys case-insensitively; so do we.
#[test]
fn case_insensitive_keys_like_reference() {
    if reference().is_none() {
        return;
    }
    let (a, b) = (TempDir::new("case-ref"), TempDir::new("case-ours"));
    let mk = |d: &Path| {
        format!(
            r#"{{"cniVersion":"1.0.0","Name":"cs","type":"x","IPAM":{{"type":"host-local","DataDir":"{}","Ranges":[[{{"Subnet":"198.18.7.0/24","RANGESTART":"198.18.7.40"}}]],"Routes":[{{"DST":"0.0.0.0/0","GW":"198.18.7.1"}}]}}}}"#,
            d.display()
        )
    };
    let (ca, cb) = (mk(&a.path), mk(&b.path));
    let ra = theirs(&ca, Op::Add("c1", "eth0", "")).unwrap();
    let rb = ours(&cb, Op::Add("c1", "eth0", "")).unwrap();
    assert_eq!(ra, rb);
    assert_eq!(rb["ips"][0]["address"], "198.18.7.40/24");
    assert_eq!(snapshot(&a.path.join("cs")), snapshot(&b.path.join("cs")));
}

/// Ours refuses a second address to an attachment the reference allocated, as the
/// reference does: found by listing the directory on our first ADD, and from the
/// list of entries without a marker after that; a reference ADD between two of
/// ours makes the next one list the directory again. A quiet store is not listed.
#[test]
fn refuses_duplicates_of_reference_entries() {
    if reference().is_none() {
        return;
    }
    let t = TempDir::new("dup-ref");
    let c = conf(
        &t.path,
        "d",
        "1.0.0",
        r#","ranges":[[{"subnet":"198.18.3.0/24"}]]"#,
    );
    let scans = host_local::store::dir_scans_on_this_thread;
    theirs(&c, Op::Add("r1", "eth0", "")).unwrap();
    let want = theirs(&c, Op::Add("r1", "eth0", "")).unwrap_err();
    assert!(
        want.contains("duplicate allocation is not allowed"),
        "{want}"
    );
    assert_eq!(ours(&c, Op::Add("r1", "eth0", "")).unwrap_err(), want);

    // Ours, then the reference right after one of ours: still refused.
    for i in 0..5 {
        ours(&c, Op::Add(&format!("o{i}"), "eth0", "")).unwrap();
    }
    theirs(&c, Op::Add("r2", "eth0", "")).unwrap();
    let want2 = theirs(&c, Op::Add("r2", "eth0", "")).unwrap_err();
    assert_eq!(ours(&c, Op::Add("r2", "eth0", "")).unwrap_err(), want2);
    // Another interface of the same container is another attachment.
    ours(&c, Op::Add("r2", "eth1", "")).unwrap();

    // Nobody else writing: our ADDs list nothing, also after our DELs and a
    // STATUS (which list the directory themselves, by design, but keep the stamp).
    let before = scans();
    for i in 5..25 {
        ours(&c, Op::Add(&format!("o{i}"), "eth0", "")).unwrap();
    }
    assert_eq!(scans(), before, "an ADD listed a quiet store");
    for i in 0..10 {
        ours(&c, Op::Del(&format!("o{i}"), "eth0")).unwrap();
    }
    host_local::status(c.as_bytes()).unwrap();
    let before = scans();
    ours(&c, Op::Add("o99", "eth0", "")).unwrap();
    assert_eq!(scans(), before, "our DEL or STATUS made the next ADD list");
    // ...and still refuse the reference's attachments, from the list.
    assert_eq!(ours(&c, Op::Add("r1", "eth0", "")).unwrap_err(), want);
    assert_eq!(ours(&c, Op::Add("r2", "eth0", "")).unwrap_err(), want2);

    // Once the reference releases one, ours may give it an address again.
    theirs(&c, Op::Del("r1", "eth0")).unwrap();
    ours(&c, Op::Add("r1", "eth0", "")).unwrap();
    // Ours releasing the reference's r2 is seen as well.
    ours(&c, Op::Del("r2", "eth0")).unwrap();
    ours(&c, Op::Add("r2", "eth0", "")).unwrap();
    // Every attachment holds exactly one address.
    let files = ip_files(&t.path.join("d"));
    let holders: BTreeSet<&[u8]> = files.iter().map(|(_, c)| c.as_slice()).collect();
    assert_eq!(holders.len(), files.len(), "{files:?}");
}
