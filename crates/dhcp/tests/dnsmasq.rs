//! The dhcp plugin and daemon against a real DHCP server (dnsmasq).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A running lab whose dnsmasq hands out T1 = 4 s and T2 = 8 s (its lease minimum is 2
/// minutes, but T1/T2 may be set shorter).
fn short_t1_t2_lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag);
    lab.dnsmasq_extra = vec![
        "--dhcp-option=option:T1,4s".into(),
        "--dhcp-option=option:T2,8s".into(),
    ];
    lab.start_dnsmasq();
    lab.start_daemon(&[]);
    lab
}

/// Moves every timer of container `i`'s persisted lease `secs` into the past.
fn age_stored(lab: &Lab, i: usize, secs: u64) {
    let p = lab
        .state
        .join(macvnet_dhcp::store::file_name(&lab.client_id(i)));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    for k in ["boundAt", "renewAt", "rebindAt", "expiresAt"] {
        v[k] = serde_json::json!(v[k].as_u64().unwrap() - secs);
    }
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// `boundAt` of container `i`'s persisted lease, if there is one.
fn bound_at(lab: &Lab, i: usize) -> Option<u64> {
    Some(lab.stored(i)?["boundAt"].as_u64().unwrap())
}

#[test]
fn lease_obtained_renewed_on_link_and_released() {
    if !can_run("lease_obtained_renewed_on_link_and_released") {
        return;
    }
    let mut lab = Lab::new("dh-basic");
    // dnsmasq's default ping-before-offer delays the OFFER by seconds: still within -timeout.
    lab.ping = true;
    lab.start_dnsmasq();
    lab.start_daemon(&[]);
    let c = lab.add_container("c");
    let (ok, res) = lab.plugin("ADD", c);
    assert!(ok, "{res}\n{}", lab.daemon_log());
    let addr = res["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(
        addr.starts_with("198.18.0.") && addr.ends_with("/24"),
        "{res}"
    );
    assert_eq!(res["ips"][0]["gateway"], SERVER, "{res}");
    assert_eq!(res["routes"][0]["dst"], "0.0.0.0/0", "{res}");
    assert_eq!(res["cniVersion"], "1.0.0");

    // The server holds it under the reference's client ID (type 0 + containerID/net/ifname).
    let server = lab.server_lease_of(&addr).expect("dnsmasq lease entry");
    assert_eq!(server.3, hex_client_id(&lab.client_id(c)));
    let stored = lab.stored(c).expect("persisted lease");
    assert_eq!(stored["grant"]["address"], addr.as_str());
    assert_eq!(stored["grant"]["leaseSecs"], 120);

    // The runtime's main plugin puts the address on the link; a renewal gives it the lease time.
    lab.configure(c, &addr);
    std::thread::sleep(Duration::from_millis(1100));
    let before = lab.stored(c).unwrap()["expiresAt"].as_u64().unwrap();
    let renewed = lab.renew(c).expect("renewal");
    assert_eq!(renewed["grant"]["address"], addr.as_str());
    let after = lab.stored(c).unwrap()["expiresAt"].as_u64().unwrap();
    assert!(
        after > before,
        "expiry did not advance: {before} -> {after}"
    );
    let (valid, preferred) = lab.lifetimes(c, &addr).expect("address on link");
    assert!((100..=120).contains(&valid), "valid_lft {valid}");
    assert!(
        (100..=120).contains(&preferred),
        "preferred_lft {preferred}"
    );
    // Replacing the lifetime keeps what the runtime set: prefix, broadcast, its route.
    let a = lab.addr_json(c, &addr).unwrap();
    assert_eq!(a["prefixlen"], 24, "{a}");
    assert_eq!(a["broadcast"], "198.18.0.255", "{a}");
    let routes = Command::new("ip")
        .args([
            "-n",
            &lab.containers[c].name,
            "route",
            "show",
            "dev",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).contains("198.18.0.0/24"));
    assert!(wait_for(Duration::from_secs(3), || lab
        .server_lease_of(&addr)
        .is_some_and(|l| l.0 > server.0)));

    // CHECK passes while the lease lives; a repeated ADD returns the same lease.
    assert!(lab.plugin("CHECK", c).0);
    assert_eq!(lab.add(c), addr);

    // DEL releases: the server forgets the lease, our state file is gone.
    let (ok, v) = lab.plugin("DEL", c);
    assert!(ok, "{v}");
    lab.assert_released(&addr);
    assert!(lab.stored(c).is_none());
    assert!(!lab.plugin("CHECK", c).0);
    // DEL is idempotent.
    assert!(lab.plugin("DEL", c).0);
}

#[test]
fn renews_at_t1_by_itself() {
    if !can_run("renews_at_t1_by_itself") {
        return;
    }
    let mut lab = short_t1_t2_lab("dh-t1");
    let (c, addr) = lab.configured("c");
    let first = lab.stored(c).unwrap();
    assert_eq!(
        first["renewAt"].as_u64().unwrap() - first["boundAt"].as_u64().unwrap(),
        4,
        "{first}"
    );
    let bound0 = first["boundAt"].as_u64().unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || bound_at(&lab, c)
            .is_some_and(|b| b >= bound0 + 4)),
        "no renewal at T1: {}",
        lab.daemon_log()
    );
    assert!(lab.lifetimes(c, &addr).is_some_and(|(v, _)| v <= 120));
    assert!(lab.plugin("DEL", c).0);
}

#[test]
fn daemon_sigkill_restart_keeps_and_renews_leases() {
    if !can_run("daemon_sigkill_restart_keeps_and_renews_leases") {
        return;
    }
    let mut lab = Lab::running("dh-kill");
    let keep = lab.add_container("keep");
    let gone = lab.add_container("gone");
    let addr = lab.add(keep);
    lab.configure(keep, &addr);
    let gone_addr = lab.add(gone);
    assert_ne!(addr, gone_addr);
    let gone_cid = lab.client_id(gone);
    let before = lab.stored(keep).unwrap()["expiresAt"].as_u64().unwrap();

    lab.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    // While it is down, one container goes away.
    lab.containers[gone] = macvnet_netlink::testing::TestNs::new("placeholder").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    lab.start_daemon(&[]);

    let listed = lab.list();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![lab.client_id(keep).as_str()], "{listed}");
    assert!(lab.stored(keep).is_some());
    assert!(!lab
        .state
        .join(macvnet_dhcp::store::file_name(&gone_cid))
        .exists());

    let renewed = lab.renew(keep).expect("renewal after restart");
    assert_eq!(renewed["grant"]["address"], addr.as_str());
    assert!(renewed["expiresAt"].as_u64().unwrap() > before);
    assert!(lab.plugin("DEL", keep).0);
    lab.assert_released(&addr);
}

#[test]
fn survives_a_dnsmasq_restart() {
    if !can_run("survives_a_dnsmasq_restart") {
        return;
    }
    let mut lab = Lab::running("dh-srv");
    let (c, addr) = lab.configured("c");

    lab.dnsmasq.take();
    let err = lab.renew(c).expect_err("renewal with the server down");
    assert!(err.contains("no DHCP ack"), "{err}");
    assert!(
        lab.stored(c).is_some(),
        "lease dropped while the server was down"
    );
    assert!(lab.plugin("CHECK", c).0);

    lab.start_dnsmasq();
    std::thread::sleep(Duration::from_millis(1100));
    let before = lab.stored(c).unwrap()["expiresAt"].as_u64().unwrap();
    let renewed = lab.renew(c).expect("renewal after the server came back");
    assert_eq!(renewed["grant"]["address"], addr.as_str());
    assert!(renewed["expiresAt"].as_u64().unwrap() > before);
    assert!(lab.plugin("DEL", c).0);
}

#[test]
fn twenty_concurrent_adds_get_distinct_leases() {
    if !can_run("twenty_concurrent_adds_get_distinct_leases") {
        return;
    }
    let mut lab = Lab::running("dh-20");
    let ids: Vec<usize> = (0..20)
        .map(|i| lab.add_container(&format!("c{i}")))
        .collect();
    let addrs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|&i| {
                let lab = &lab;
                s.spawn(move || lab.add(i))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut distinct = addrs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "{addrs:?}");
    assert_eq!(lab.server_leases().len(), 20);
    assert_eq!(lab.list().as_array().unwrap().len(), 20);
    std::thread::scope(|s| {
        for &i in &ids {
            let lab = &lab;
            s.spawn(move || assert!(lab.plugin("DEL", i).0));
        }
    });
    assert!(
        wait_for(Duration::from_secs(5), || lab.server_leases().is_empty()),
        "{:?}",
        lab.server_leases()
    );
}

#[test]
fn no_server_fails_cleanly_within_the_timeout() {
    if !can_run("no_server_fails_cleanly_within_the_timeout") {
        return;
    }
    let mut lab = Lab::new("dh-none");
    lab.start_daemon(&[]);
    let c = lab.add_container("c");
    let t = Instant::now();
    let (ok, v) = lab.plugin("ADD", c);
    let took = t.elapsed();
    assert!(!ok);
    assert_eq!(v["code"], 11, "{v}");
    assert!(
        v["msg"].as_str().unwrap().contains("no DHCP offer on eth0"),
        "{v}"
    );
    // -resendtimeout 8s (+ one -timeout 3s exchange at most).
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(took >= Duration::from_secs(7), "gave up early: {took:?}");
    assert!(lab.stored(c).is_none());
    assert!(lab.list().as_array().unwrap().is_empty());
}

#[test]
fn gc_releases_invalid_attachments_and_gone_namespaces() {
    if !can_run("gc_releases_invalid_attachments_and_gone_namespaces") {
        return;
    }
    let mut lab = Lab::running("dh-gc");
    let a = lab.add_container("a");
    let b = lab.add_container("b");
    let addr_a = lab.add(a);
    let addr_b = lab.add(b);
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": NETWORK, "type": "macvlan",
        "ipam": {"type": "dhcp", "daemonSocketPath": lab.socket},
        "cni.dev/valid-attachments": [{"containerID": lab.container_id(a), "ifname": "eth0"}]
    })
    .to_string();
    let (ok, v) = lab.plugin_with(BIN, "GC", a, &conf);
    assert!(ok, "{v}");
    lab.assert_released(&addr_b);
    assert!(lab.server_lease_of(&addr_a).is_some());
    assert!(lab.stored(b).is_none() && lab.stored(a).is_some());
    // STATUS answers while the daemon runs.
    let st = serde_json::json!({"cniVersion": "1.1.0", "name": NETWORK, "type": "macvlan",
        "ipam": {"type": "dhcp", "daemonSocketPath": lab.socket}})
    .to_string();
    assert!(lab.plugin_with(BIN, "STATUS", a, &st).0);

    // A namespace that disappears is dropped on GC even if listed as valid.
    lab.containers[a] = macvnet_netlink::testing::TestNs::new("placeholder").unwrap();
    let (ok, v) = lab.plugin_with(BIN, "GC", b, &conf);
    assert!(ok, "{v}");
    assert!(lab.list().as_array().unwrap().is_empty(), "{}", lab.list());
}

#[test]
fn provide_and_request_options_reach_the_server() {
    if !can_run("provide_and_request_options_reach_the_server") {
        return;
    }
    let mut lab = Lab::new("dh-opt");
    lab.dnsmasq_extra = vec!["--dhcp-option=121,198.19.0.0/16,198.18.0.2".into()];
    lab.start_dnsmasq();
    lab.start_daemon(&["-broadcast"]);
    let c = lab.add_container("c");
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": NETWORK, "type": "macvlan",
        "ipam": {
            "type": "dhcp", "daemonSocketPath": lab.socket, "priority": 7,
            "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}],
            "request": [{"option": "121"}]
        }
    })
    .to_string();
    let (ok, v) = lab.plugin_args(BIN, "ADD", c, &conf, "IgnoreUnknown=1;K8S_POD_NAME=pod-a");
    assert!(ok, "{v}\n{}", lab.daemon_log());
    let addr = v["ips"][0]["address"].as_str().unwrap();
    // RFC 3442: with option 121 the router option gives no default route.
    assert_eq!(
        v["routes"],
        serde_json::json!([{"dst": "198.19.0.0/16", "gw": "198.18.0.2", "priority": 7}]),
        "{v}"
    );
    assert_eq!(lab.server_hostname(addr).as_deref(), Some("pod-a"));
    assert!(
        lab.plugin_args(BIN, "DEL", c, &conf, "IgnoreUnknown=1;K8S_POD_NAME=pod-a")
            .0
    );
}

#[test]
fn every_extension_method_works_against_dnsmasq() {
    if !can_run("every_extension_method_works_against_dnsmasq") {
        return;
    }
    use macvnet_dhcp::daemon::Step;
    let mut lab = Lab::running("dh-steps");
    let (c, addr) = lab.configured("c");
    // Shortly after the runtime configures it, the address carries the lease's lifetime.
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .lifetimes(c, &addr)
            .is_some_and(|(v, _)| v <= 120)),
        "{:?}\n{}",
        lab.lifetimes(c, &addr),
        lab.daemon_log()
    );
    for (step, method) in [
        (Some(Step::Renew), "renew"),
        (Some(Step::Rebind), "rebind"),
        (Some(Step::Reacquire), "acquire"),
    ] {
        let l = lab
            .renew_step(c, step)
            .unwrap_or_else(|e| panic!("{step:?}: {e}\n{}", lab.daemon_log()));
        assert_eq!(l["lastStep"], method);
        assert_eq!(l["grant"]["address"], addr.as_str(), "{step:?}");
    }
    // Without the address on the link, renewing falls back to INIT-REBOOT.
    let mut h = lab.containers[c].handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.del_addr(eth0.index, addr.parse().unwrap()).unwrap();
    let l = lab.renew(c).unwrap();
    assert_eq!(l["lastStep"], "reboot");
    assert_eq!(l["grant"]["address"], addr.as_str());
    assert!(lab.plugin("DEL", c).0);
    assert!(wait_for(Duration::from_secs(5), || lab
        .server_leases()
        .is_empty()));
}

#[test]
fn sigterm_cleans_socket_and_pidfile_but_keeps_leases() {
    if !can_run("sigterm_cleans_socket_and_pidfile_but_keeps_leases") {
        return;
    }
    let mut lab = Lab::running("dh-term");
    let pidfile = lab.tmp.path().join("dhcp.pid");
    let pid = lab.daemon.as_ref().unwrap().pid();
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    let c = lab.add_container("c");
    let addr = lab.add(c);
    lab.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let status = lab.daemon.as_mut().unwrap().child.try_wait().unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!lab.socket.exists() && !pidfile.exists());
    assert!(lab.stored(c).is_some());
    // The server still holds the lease (no release on shutdown, as the reference).
    assert!(lab.server_lease_of(&addr).is_some());
    lab.start_daemon(&[]);
    assert_eq!(lab.add(c), addr, "ADD after restart returns the kept lease");
    assert!(lab.plugin("DEL", c).0);
}

#[test]
fn rebinds_at_t2_after_a_failed_renewal() {
    if !can_run("rebinds_at_t2_after_a_failed_renewal") {
        return;
    }
    let mut lab = short_t1_t2_lab("dh-t2");
    let (c, _addr) = lab.configured("c");
    let bound0 = bound_at(&lab, c).unwrap();
    // The server goes away: the renewal at T1 (4 s) gets no answer (3 s timeout); the
    // retry falls at T2 (8 s), less than 2 s later, so the next attempt is a rebind.
    lab.dnsmasq.take();
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .daemon_log()
            .contains("extending the lease failed")),
        "{}",
        lab.daemon_log()
    );
    // Back before T2: the next attempt, at T2, is a broadcast rebind.
    lab.start_dnsmasq();
    assert!(
        wait_for(Duration::from_secs(10), || bound_at(&lab, c)
            .is_some_and(|b| b > bound0)),
        "{}",
        lab.daemon_log()
    );
    let s = lab.stored(c).unwrap();
    assert_eq!(s["lastStep"], "rebind", "{s}");
    assert!(s["boundAt"].as_u64().unwrap() >= bound0 + 8 - 1, "{s}");
    assert!(lab.plugin("DEL", c).0);
}

#[test]
fn lease_expired_while_the_daemon_was_down() {
    if !can_run("lease_expired_while_the_daemon_was_down") {
        return;
    }
    let mut lab = Lab::running("dh-exp");
    let again = lab.add_container("again");
    let lost = lab.add_container("lost");
    let addr = lab.add(again);
    lab.configure(again, &addr);
    let lost_addr = lab.add(lost);
    lab.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    // Age both persisted leases past their expiry.
    for i in [again, lost] {
        age_stored(&lab, i, 1000);
    }
    // `lost`: the server forgot it and hands the address to someone else meanwhile.
    let _ = lost_addr;

    // Server up: the expired lease is acquired again, same address.
    lab.start_daemon(&[]);
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .stored(again)
            .is_some_and(|s| s["lastStep"] == "acquire")),
        "{}",
        lab.daemon_log()
    );
    assert_eq!(
        lab.stored(again).unwrap()["grant"]["address"],
        addr.as_str()
    );
    assert!(lab.stored(lost).is_some_and(|s| s["lastStep"] == "acquire"));

    // Server down and lease expired: link down, lease dropped (reference behaviour).
    lab.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    lab.dnsmasq.take();
    age_stored(&lab, lost, 1000);
    lab.start_daemon(&[]);
    assert!(
        wait_for(Duration::from_secs(15), || lab.stored(lost).is_none()),
        "{}",
        lab.daemon_log()
    );
    let mut h = lab.containers[lost].handle().unwrap();
    assert!(!h.link_by_name("eth0").unwrap().up, "link left up");
    assert!(lab.stored(again).is_some());
    assert!(lab.plugin("DEL", again).0);
}

/// A daemon SIGKILLed between the server's ACK and saving the lease leaves an intent; on
/// restart it releases it: from the interface when that is still there, else through
/// the macvlan's parent in the daemon's namespace (the failed ADD deleted the link). A
/// saved lease whose container went away meanwhile is released the same way.
#[test]
fn interrupted_acquisitions_are_released_on_restart() {
    if !can_run("interrupted_acquisitions_are_released_on_restart") {
        return;
    }
    let mut lab = Lab::new("dh-intent");
    lab.daemon_in_host = true;
    lab.start_dnsmasq();
    lab.start_daemon(&[]);
    let on_link = lab.add_container("onlink");
    let no_link = lab.add_container("nolink");
    let gone = lab.add_container("gone");
    let keep = lab.add_container("keep");
    let addrs: Vec<String> = [on_link, no_link, gone, keep]
        .iter()
        .map(|&i| lab.add(i))
        .collect();
    // The parent is in the daemon's namespace: recorded for releasing without the link.
    assert_eq!(
        lab.stored(no_link).unwrap()["uplink"]["name"],
        "eth0",
        "{}",
        lab.stored(no_link).unwrap()
    );
    assert_eq!(lab.server_leases().len(), 4);

    lab.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    lab.lease_to_intent(on_link);
    lab.lease_to_intent(no_link);
    let mut h = lab.containers[no_link].handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.del_link(eth0.index).unwrap();
    drop(h);
    lab.containers[gone] = macvnet_netlink::testing::TestNs::new("placeholder").unwrap();

    let t = Instant::now();
    lab.start_daemon(&[]);
    let startup = t.elapsed();
    for (i, addr) in addrs.iter().enumerate().take(3) {
        assert!(
            wait_for(Duration::from_secs(5), || lab
                .server_lease_of(addr)
                .is_none()),
            "container {i}: dnsmasq still has {addr}: {:?}\n{}",
            lab.server_leases(),
            lab.daemon_log()
        );
    }
    assert!(lab.server_lease_of(&addrs[3]).is_some());
    let files = lab.state_files();
    assert_eq!(
        files,
        vec![macvnet_dhcp::store::file_name(&lab.client_id(keep))],
        "{}",
        lab.daemon_log()
    );
    let log = lab.daemon_log();
    assert!(log.contains("via=\"interface\""), "{log}");
    assert!(log.contains("via=\"uplink\""), "{log}");
    // Releasing is a send each, no waiting: the daemon answers as soon as without intents.
    eprintln!("daemon answering {startup:?} after start, 2 intents and 1 gone lease released");
    assert!(startup < Duration::from_secs(3), "startup took {startup:?}");
    assert!(lab.plugin("DEL", keep).0);
    assert!(wait_for(Duration::from_secs(5), || lab
        .server_leases()
        .is_empty()));
}

/// Container `i` ADDed, the daemon SIGKILLed and restarted, and then (while it runs) its
/// lease turned into an intent: what a release that failed leaves. Returns the address.
fn intent_while_running(lab: &mut Lab, c: usize) -> String {
    let addr = lab.add(c);
    lab.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    let path = lab
        .state
        .join(macvnet_dhcp::store::file_name(&lab.client_id(c)));
    let lease = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    lab.start_daemon(&[]);
    assert!(lab.server_lease_of(&addr).is_some());
    std::fs::write(&path, lease).unwrap();
    lab.lease_to_intent(c);
    addr
}

/// DEL of an attachment whose acquisition left an intent (no lease) releases it.
#[test]
fn del_releases_an_intent() {
    if !can_run("del_releases_an_intent") {
        return;
    }
    let mut lab = Lab::running("dh-intdel");
    let c = lab.add_container("c");
    let addr = intent_while_running(&mut lab, c);
    assert!(!lab.plugin("CHECK", c).0, "an intent is no lease");
    let (ok, v) = lab.plugin("DEL", c);
    assert!(ok, "{v}");
    lab.assert_released(&addr);
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
}

/// GC releases the intent of an attachment not in `cni.dev/valid-attachments`.
#[test]
fn gc_releases_an_intent() {
    if !can_run("gc_releases_an_intent") {
        return;
    }
    let mut lab = Lab::running("dh-intgc");
    let c = lab.add_container("c");
    let addr = intent_while_running(&mut lab, c);
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": NETWORK, "type": "macvlan",
        "ipam": {"type": "dhcp", "daemonSocketPath": lab.socket},
        "cni.dev/valid-attachments": []
    })
    .to_string();
    let (ok, v) = lab.plugin_with(BIN, "GC", c, &conf);
    assert!(ok, "{v}");
    lab.assert_released(&addr);
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
}
