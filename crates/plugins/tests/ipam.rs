#![allow(clippy::unwrap_used)]
//! IPAM dispatch: our own binaries run in-process, others by exec; both paths give the
//! same result JSON and the same store. STATUS and GC delegate to host-local.

mod common;

use std::path::PathBuf;

use common::*;
use macvnet_cni::skel::{Command, Request};
use macvnet_cni::NetConf;
use macvnet_plugins::ipam::Ipam;
use serde_json::{json, Value};

const NET: &str = "mvtipam";

fn request(conf: &Value, cni_path: &str) -> Request {
    let stdin = serde_json::to_vec(conf).unwrap();
    Request {
        command: Command::Add,
        container_id: "mvt-ctr".into(),
        netns: None,
        ifname: "net1".into(),
        args_raw: String::new(),
        path: cni_path.split(':').map(PathBuf::from).collect(),
        path_raw: cni_path.into(),
        netns_override: false,
        config: NetConf::parse(&stdin).unwrap(),
        stdin,
    }
}

#[test]
fn resolve_picks_in_process_only_for_our_binaries() {
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "macvlan",
                      "ipam": {"type": "host-local", "subnet": "198.18.8.0/24"}});
    let ours_dir = our_dir().display().to_string();
    let ipam = Ipam::resolve(&request(&conf, &ours_dir)).unwrap().unwrap();
    assert!(
        ipam.in_process(),
        "our host-local at {}",
        ipam.path().display()
    );
    let mut st = conf.clone();
    st["ipam"]["type"] = json!("static");
    assert!(Ipam::resolve(&request(&st, &ours_dir))
        .unwrap()
        .unwrap()
        .in_process());
    // Our macvlan binary is not an IPAM plugin of that name.
    let link = TempDir::new("ipamlink");
    std::fs::copy(our_dir().join("macvlan"), link.path().join("host-local")).unwrap();
    let ipam = Ipam::resolve(&request(&conf, &link.path().display().to_string()))
        .unwrap()
        .unwrap();
    assert!(!ipam.in_process());
    // A copy of ours elsewhere is still ours.
    std::fs::copy(our_dir().join("host-local"), link.path().join("host-local")).unwrap();
    assert!(
        Ipam::resolve(&request(&conf, &link.path().display().to_string()))
            .unwrap()
            .unwrap()
            .in_process()
    );
    if std::path::Path::new(REF_DIR).join("host-local").exists() {
        let path = format!("{REF_DIR}:{ours_dir}");
        let ipam = Ipam::resolve(&request(&conf, &path)).unwrap().unwrap();
        assert!(
            !ipam.in_process(),
            "the reference's host-local comes first and is exec'd"
        );
    }
    let mut none = conf.clone();
    none.as_object_mut().unwrap().remove("ipam");
    assert!(Ipam::resolve(&request(&none, &ours_dir)).unwrap().is_none());
}

#[test]
fn in_process_and_exec_give_same_result_and_store() {
    if !require("in_process_and_exec_give_same_result_and_store", false) {
        return;
    }
    let lab = Lab::new("mvinproc");
    let mut outs = Vec::new();
    for exec in ["0", "1"] {
        for version in ["0.3.1", "1.0.0", "1.1.0"] {
            let data = lab.data_dir(&format!("e{exec}-{version}"));
            let conf = json!({"cniVersion": version, "name": NET, "type": "macvlan", "master": "eth0",
                "ipam": {"type": "host-local", "dataDir": data,
                         "ranges": [[{"subnet": "198.18.8.0/24"}], [{"subnet": "2001:db8:8::/64"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}});
            let c = lab.container("c");
            let call = Call::new("ADD", Some(&ns_path(&c))).env("MACVNET_IPAM_EXEC", exec);
            let res = run(&lab, &ours(), &call, &conf);
            res.expect_ok();
            // A v6 gateway makes ADD wait out DAD: nothing is tentative when it returns.
            let mut h = c.handle().unwrap();
            let l = h.link_by_name("net1").unwrap();
            let addrs = h.addrs(Some(l.index)).unwrap();
            assert!(addrs
                .iter()
                .any(|a| a.addr.addr().is_ipv6() && a.scope == 0));
            assert!(addrs.iter().all(|a| !a.tentative), "{addrs:?}");
            let files = store_files(&data, NET);
            let del = Call::new("DEL", Some(&ns_path(&c))).env("MACVNET_IPAM_EXEC", exec);
            run(&lab, &ours(), &del, &conf).expect_ok();
            outs.push((
                version,
                normalize(res.json()),
                files,
                store_files(&data, NET),
            ));
        }
    }
    let (a, b) = outs.split_at(3);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "in-process vs exec differ at {}", x.0);
        assert_eq!(x.1["ips"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn status_and_gc_delegate_to_host_local() {
    if !require("status_and_gc_delegate_to_host_local", false) {
        return;
    }
    let lab = Lab::new("mvgc");
    for exec in ["0", "1"] {
        let data = lab.data_dir(&format!("e{exec}"));
        let conf = json!({"cniVersion": "1.1.0", "name": NET, "type": "macvlan", "master": "eth0",
            "ipam": {"type": "host-local", "dataDir": data,
                     "ranges": [[{"subnet": "198.18.9.0/24", "rangeStart": "198.18.9.10", "rangeEnd": "198.18.9.11"}]]}});
        let c1 = lab.container("c1");
        let c2 = lab.container("c2");
        let e = |call: Call| call.env("MACVNET_IPAM_EXEC", exec);
        run(&lab, &ours(), &e(Call::new("STATUS", None)), &conf).expect_ok();
        run(
            &lab,
            &ours(),
            &e(Call::new("ADD", Some(&ns_path(&c1))).id("ctr-a")),
            &conf,
        )
        .expect_ok();
        run(
            &lab,
            &ours(),
            &e(Call::new("ADD", Some(&ns_path(&c2))).id("ctr-b")),
            &conf,
        )
        .expect_ok();
        // Range full: STATUS says 51 (limited connectivity), passed through.
        let st = run(&lab, &ours(), &e(Call::new("STATUS", None)), &conf);
        assert_eq!(st.code(), 51, "exec={exec}: {}", st.stdout);
        assert_eq!(store_ips(&data, NET).len(), 2);
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-a", "ifname": "net1"}]);
        run(&lab, &ours(), &e(Call::new("GC", None)), &gc).expect_ok();
        assert_eq!(
            store_ips(&data, NET),
            vec!["198.18.9.10".to_string()],
            "exec={exec}"
        );
        run(&lab, &ours(), &e(Call::new("STATUS", None)), &conf).expect_ok();
        for (c, id) in [(&c1, "ctr-a"), (&c2, "ctr-b")] {
            run(
                &lab,
                &ours(),
                &e(Call::new("DEL", Some(&ns_path(c))).id(id)),
                &conf,
            )
            .expect_ok();
        }
        assert!(store_ips(&data, NET).is_empty());
    }
}
