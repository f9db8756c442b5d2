//! Against the reference (containernetworking/plugins `/usr/lib/cni/dhcp`): same results
//! and client ID on the server for the same network config; and each side's plugin
//! fails cleanly (not hangs, not misbehaves) against the other side's daemon, because
//! the reference's plugin↔daemon protocol is Go net/rpc with gob encoding.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const REF: &str = "/usr/lib/cni/dhcp";

fn have_reference(test: &str) -> bool {
    if !Path::new(REF).exists() {
        eprintln!("SKIP {test}: {REF} missing (containernetworking-plugins)");
        return false;
    }
    true
}

/// The reference daemon on `socket`, killed by pid on drop.
fn start_reference_daemon(lab: &Lab, socket: &Path) -> Proc {
    let log = std::fs::File::create(lab.tmp.path().join("ref-daemon.log")).unwrap();
    let child = Command::new(REF)
        .args(["daemon", "-socketpath"])
        .arg(socket)
        .args(["-timeout", "5s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || socket.exists()));
    Proc {
        child,
        name: "reference dhcp daemon".into(),
    }
}

fn conf_for(socket: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": NETWORK, "type": "macvlan",
        "ipam": {"type": "dhcp", "daemonSocketPath": socket}
    })
    .to_string()
}

/// The result with the leased address replaced, for comparing two leases' shapes. An
/// empty `dns` is dropped: libcni before 1.2 printed `"dns":{}` in 1.0.0 results, newer
/// libcni (and the cni crate) omit it.
fn shape(v: &serde_json::Value) -> String {
    let mut v = v.clone();
    if v["dns"] == serde_json::json!({}) {
        v.as_object_mut().unwrap().remove("dns");
    }
    let addr = v["ips"][0]["address"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    v.to_string().replace(&addr, "ADDR")
}

#[test]
fn same_result_and_client_id_as_the_reference() {
    if !can_run("same_result_and_client_id_as_the_reference")
        || !have_reference("same_result_and_client_id_as_the_reference")
    {
        return;
    }
    let mut lab = Lab::new("dh-ref");
    lab.start_dnsmasq();
    lab.start_daemon(&[]);
    let ref_sock = lab.tmp.path().join("ref.sock");
    let _ref_daemon = start_reference_daemon(&lab, &ref_sock);
    let theirs = lab.add_container("theirs");
    let ours = lab.add_container("ours");

    let (ok, r) = lab.plugin_with(REF, "ADD", theirs, &conf_for(&ref_sock));
    assert!(
        ok,
        "reference ADD: {r}\n{}",
        std::fs::read_to_string(lab.tmp.path().join("ref-daemon.log")).unwrap_or_default()
    );
    let (ok, o) = lab.plugin("ADD", ours);
    assert!(ok, "our ADD: {o}");
    assert_eq!(shape(&o), shape(&r), "ours {o}\nreference {r}");

    // dnsmasq sees both clients under the same client-ID scheme.
    let ra = r["ips"][0]["address"].as_str().unwrap();
    let oa = o["ips"][0]["address"].as_str().unwrap();
    assert_eq!(
        lab.server_lease_of(ra).unwrap().3,
        hex_client_id(&lab.client_id(theirs))
    );
    assert_eq!(
        lab.server_lease_of(oa).unwrap().3,
        hex_client_id(&lab.client_id(ours))
    );

    assert!(lab.plugin_with(REF, "DEL", theirs, &conf_for(&ref_sock)).0);
    assert!(lab.plugin("DEL", ours).0);
    assert!(
        wait_for(Duration::from_secs(5), || lab.server_leases().is_empty()),
        "{:?}",
        lab.server_leases()
    );
}

#[test]
fn reference_plugin_with_our_daemon_and_ours_with_the_reference_daemon() {
    let test = "reference_plugin_with_our_daemon_and_ours_with_the_reference_daemon";
    if !can_run(test) || !have_reference(test) {
        return;
    }
    let mut lab = Lab::new("dh-x");
    lab.start_dnsmasq();
    lab.start_daemon(&[]);
    let ref_sock = lab.tmp.path().join("ref.sock");
    let _ref_daemon = start_reference_daemon(&lab, &ref_sock);
    let a = lab.add_container("a");
    let b = lab.add_container("b");

    // Reference plugin → our daemon (Go net/rpc + gob): a persisted, maintained lease.
    let (ok, ra) = lab.plugin_with(REF, "ADD", a, &lab.conf());
    assert!(ok, "{ra}\n{}", lab.daemon_log());
    let addr_a = ra["ips"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(ra["ips"][0]["gateway"], SERVER, "{ra}");
    assert_eq!(ra["routes"][0]["dst"], "0.0.0.0/0", "{ra}");
    assert_eq!(lab.stored(a).unwrap()["grant"]["address"], addr_a.as_str());
    assert!(lab.renew(a).is_ok());
    // Our plugin sees the same lease (same client ID).
    let (ok, oa) = lab.plugin("ADD", a);
    assert!(ok, "{oa}");
    assert_eq!(oa["ips"][0]["address"], addr_a.as_str());
    assert!(lab.plugin_with(REF, "DEL", a, &lab.conf()).0);
    assert!(wait_for(Duration::from_secs(5), || lab
        .server_lease_of(&addr_a)
        .is_none()));
    assert!(lab.stored(a).is_none());
    // An unknown method gets Go's error text.
    let (ok, _) = lab.plugin_with(REF, "DEL", a, &lab.conf());
    assert!(ok, "DEL twice");

    // Our plugin → reference daemon: it falls back to Go net/rpc.
    let (ok, rb) = lab.plugin_with(BIN, "ADD", b, &conf_for(&ref_sock));
    assert!(ok, "{rb}");
    let addr_b = rb["ips"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(
        shape(&rb),
        shape(&ra),
        "ours via reference daemon {rb}\nreference via ours {ra}"
    );
    assert_eq!(
        lab.server_lease_of(&addr_b).unwrap().3,
        hex_client_id(&lab.client_id(b))
    );
    assert!(lab.plugin_with(BIN, "DEL", b, &conf_for(&ref_sock)).0);
    assert!(wait_for(Duration::from_secs(5), || lab
        .server_lease_of(&addr_b)
        .is_none()));

    // No daemon at all: a clean "try again later".
    let none = lab.tmp.path().join("none.sock");
    let (ok, v) = lab.plugin_with(BIN, "ADD", b, &conf_for(&none));
    assert!(!ok);
    assert_eq!(v["code"], 11, "{v}");
    assert!(
        v["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("error dialing DHCP daemon"),
        "{v}"
    );
}
