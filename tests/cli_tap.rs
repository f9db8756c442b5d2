//! `macvnet tap open|qemu-args|sniff` against the real kernel.
#![allow(clippy::unwrap_used)]

mod cli_support;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;
use macvnet_netlink as nl;
use nl::testing::add_macvlan_in;
use nl::{MacvlanSpec, Mode};

/// host (eth0 uplink) with a bridge-mode macvtap `mtap0`, up, and a peer namespace holding a
/// bridge-mode macvlan `mv0` on the same parent with `peer_addr`.
struct Setup {
    host: TestNs,
    _lan: TestNs,
    peer: TestNs,
    tap: nl::LinkInfo,
}

fn setup(tag: &str, peer_addr: &str) -> Setup {
    let (host, lan) = uplink_pair(tag).unwrap();
    let peer = TestNs::new(&format!("{tag}-peer")).unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&MacvlanSpec {
        name: "mtap0".to_string(),
        parent: eth0.index,
        tap: true,
        mode: Some(Mode::Bridge),
        up: true,
        ..Default::default()
    })
    .unwrap();
    let mv0 = add_macvlan_in(&host, "eth0", &peer, "mv0", Mode::Bridge, |_| {}).unwrap();
    let mut p = peer.handle().unwrap();
    p.add_addr(mv0.index, peer_addr.parse().unwrap()).unwrap();
    let tap = h.link_by_name("mtap0").unwrap();
    Setup {
        host,
        _lan: lan,
        peer,
        tap,
    }
}

/// Pings `dst` from the peer namespace (one echo, `wait` for the reply) until `child` exits,
/// for 15 s at most (then kills it); returns its output.
fn ping_until_exit(mut child: Child, s: &Setup, dst: &str, wait: Duration) -> Output {
    let dst: IpAddr = dst.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let _ = nl::icmp::ping(&s.peer.ns, dst, 1, wait);
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

/// Runs `macvnet [-j] -n HOST tap sniff mtap0 --count COUNT --timeout 10`, waits until it
/// reports it listens, then pings `dst` from the peer namespace (each ping first sends ARP
/// who-has) until the sniffer exits.
fn sniff_while_pinging(
    s: &Setup,
    json: bool,
    count: u32,
    dst: &str,
) -> (Option<i32>, String, String) {
    let count = count.to_string();
    let mut args = vec![
        "-n",
        &s.host.name,
        "tap",
        "sniff",
        "mtap0",
        "--count",
        &count,
        "--timeout",
        "10",
    ];
    if json {
        args.insert(0, "-j");
    }
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    // Bounded: the sniffer prints this line or exits (EOF) within its own timeout.
    err.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("sniffing on mtap0"),
        "sniffer said {first:?}"
    );
    // No reply ever comes (nobody owns dst); the kernel sends ARP requests meanwhile.
    let out = ping_until_exit(child, s, dst, Duration::from_millis(500));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        first + &rest,
    )
}

#[test]
fn sniff_prints_the_arp_request_sent_toward_the_vm() {
    if !can_run("sniff_prints_the_arp_request_sent_toward_the_vm") {
        return;
    }
    let s = setup("tsniff", "198.18.11.2/24");
    let (code, out, err) = sniff_while_pinging(&s, false, 1, "198.18.11.10");
    assert_eq!(code, Some(0), "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("ARP") && lines[0].contains("who-has 198.18.11.10 tell 198.18.11.2"),
        "{out}"
    );
    assert!(lines[0].contains("> ff:ff:ff:ff:ff:ff"), "{out}");

    // -j: one JSON object per line.
    let (code, out, err) = sniff_while_pinging(&s, true, 2, "198.18.11.11");
    assert_eq!(code, Some(0), "stderr: {err}");
    let frames: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 2, "{out}");
    let arp = frames
        .iter()
        .find(|f| f["arp"]["target_ip"] == "198.18.11.11")
        .unwrap_or_else(|| panic!("no ARP for 198.18.11.11 in {out}"));
    assert_eq!(arp["proto"], "ARP");
    assert_eq!(arp["arp"]["op"], 1);
    assert_eq!(arp["arp"]["sender_ip"], "198.18.11.2");
    assert_eq!(arp["dst"], "ff:ff:ff:ff:ff:ff");
}

#[test]
fn sniff_without_traffic_times_out_with_status_1() {
    if !can_run("sniff_without_traffic_times_out_with_status_1") {
        return;
    }
    let (host, _lan) = uplink_pair("tquiet").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    // Down: the driver delivers nothing, so the timeout is certain.
    h.add_macvlan(&MacvlanSpec {
        name: "mtap0".into(),
        parent: eth0.index,
        tap: true,
        mode: Some(Mode::Bridge),
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    let out = mvn(&[
        "-n",
        &host.name,
        "tap",
        "sniff",
        "mtap0",
        "--count",
        "1",
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(8));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is down"), "{err}");
    assert!(err.contains("0 of 1 frame"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn open_passes_the_queue_fds_and_the_exit_status() {
    if !can_run("open_passes_the_queue_fds_and_the_exit_status") {
        return;
    }
    let s = setup("topen", "198.18.12.2/24");
    let host = s.host.name.clone();
    let out = ok(&[
        "-n",
        &host,
        "tap",
        "open",
        "mtap0",
        "--queues",
        "2",
        "--vnet-hdr",
        "--offload",
        "csum,tso4,tso6",
        "--",
        "sh",
        "-c",
        "echo {fds} {fd}; readlink /proc/$$/fd/3; readlink /proc/$$/fd/4",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"3:4 3"), "{out}");
    // Both fds are open in the child and are the macvtap char device (a /dev node).
    let tap_node = format!("tap{}", s.tap.index);
    for l in &lines[1..] {
        assert!(l.starts_with("/dev/") && l.contains(&tap_node), "{out}");
    }
    assert_eq!(lines.len(), 3, "{out}");

    // CMD's exit status is macvnet's.
    let st = mvn(&[
        "-n", &host, "tap", "open", "mtap0", "--", "sh", "-c", "exit 7",
    ]);
    assert_eq!(st.status.code(), Some(7));

    // {qemu} expands to the same arguments `tap qemu-args` prints.
    let printed = ok(&["-n", &host, "tap", "qemu-args", "mtap0", "--queues", "2"]);
    let expanded = ok(&[
        "-n", &host, "tap", "open", "mtap0", "--queues", "2", "--", "echo", "{qemu}",
    ]);
    assert_eq!(expanded.trim(), printed.trim());
}

#[test]
fn open_in_a_private_empty_dev_uses_a_temporary_node() {
    if !can_run("open_in_a_private_empty_dev_uses_a_temporary_node") {
        return;
    }
    let test = "open_in_a_private_empty_dev_uses_a_temporary_node";
    if !require_program(test, "unshare", "--version", "needs unshare(1)") {
        return;
    }
    let s = setup("tpriv", "198.18.13.2/24");
    // A child in its own mount namespace (private propagation) with an empty tmpfs on /dev.
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs none /dev && \
         exec {BIN} -n {} tap open mtap0 -- sh -c 'readlink /proc/$$/fd/3; ls -A /dev | wc -l'",
        s.host.name
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let want = format!("/dev/.macvnet-tap{}-", s.tap.index);
    assert!(
        lines[0].starts_with(&want) && lines[0].ends_with("(deleted)"),
        "{stdout}"
    );
    assert_eq!(lines[1].trim(), "0", "the temporary node is gone: {stdout}");
}

#[test]
fn qemu_args_match_the_link() {
    if !can_run("qemu_args_match_the_link") {
        return;
    }
    let s = setup("tqemu", "198.18.14.2/24");
    let host = s.host.name.clone();
    let mac = ip_link(&host, "mtap0").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let vhost = if std::path::Path::new("/dev/vhost-net").exists() {
        "on"
    } else {
        "off"
    };
    let out = Command::new(BIN)
        .args(["-n", &host, "tap", "qemu-args", "mtap0", "--queues", "4"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!(
            "-netdev tap,id=net0,fds=3:4:5:6,vhost={vhost} -device \
             virtio-net-pci,netdev=net0,mac={mac},mq=on,vectors=10"
        )
    );
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains("tap open mtap0 --queues 4") && note.contains("{qemu}"),
        "{note}"
    );
    let j = json(&["-j", "-n", &host, "tap", "qemu-args", "mtap0"]);
    assert_eq!(j["ifindex"], s.tap.index);
    assert_eq!(j["mac"], mac.as_str());
    assert_eq!(j["fds"], serde_json::json!([3]));
    assert_eq!(j["args"][1], format!("tap,id=net0,fd=3,vhost={vhost}"));
    assert_eq!(
        j["args"][3],
        format!("virtio-net-pci,netdev=net0,mac={mac}")
    );
}

#[test]
fn tap_errors_are_one_line() {
    if !can_run("tap_errors_are_one_line") {
        return;
    }
    let s = setup("terr", "198.18.15.2/24");
    let host = s.host.name.clone();
    let cases: [(&[&str], &str); 7] = [
        (
            &["-n", &host, "tap", "sniff", "eth0", "--timeout", "1"],
            "not a macvtap",
        ),
        (&["-n", &host, "tap", "qemu-args", "nosuch0"], "not found"),
        (
            &["-n", "mvt-no-such-ns", "tap", "qemu-args", "mtap0"],
            "namespace mvt-no-such-ns not found",
        ),
        (
            &[
                "-n",
                &host,
                "tap",
                "open",
                "mtap0",
                "--offload",
                "csum",
                "--",
                "true",
            ],
            "needs --vnet-hdr",
        ),
        (
            &[
                "-n",
                &host,
                "tap",
                "open",
                "mtap0",
                "--vnet-hdr",
                "--offload",
                "tso4",
                "--",
                "true",
            ],
            "need csum",
        ),
        (
            &[
                "-n",
                &host,
                "tap",
                "open",
                "mtap0",
                "--",
                "/nonexistent/mvt-prog",
            ],
            "running /nonexistent/mvt-prog",
        ),
        (
            &[
                "-n", &host, "tap", "open", "mtap0", "--queues", "0", "--", "true",
            ],
            "0",
        ),
    ];
    for (args, want) in cases {
        let e = fail(args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn the_command_reads_frames_from_the_inherited_fd() {
    if !can_run("the_command_reads_frames_from_the_inherited_fd") {
        return;
    }
    let test = "the_command_reads_frames_from_the_inherited_fd";
    if !require_program(test, "dd", "--version", "needs dd and od") {
        return;
    }
    let s = setup("tread", "198.18.16.2/24");
    // One read(2) on fd 3 returns one whole frame; od prints its bytes.
    let child = Command::new(BIN)
        .args(["-n", &s.host.name, "tap", "open", "mtap0", "--"])
        .args([
            "sh",
            "-c",
            "timeout 10 dd bs=65536 count=1 <&{fd} 2>/dev/null | od -An -v -tx1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ping_until_exit(child, &s, "198.18.16.10", Duration::from_millis(300));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes: Vec<u8> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let f = nl::tap::describe_frame(&bytes);
    let arp = f.arp.unwrap_or_else(|| panic!("not ARP: {bytes:02x?}"));
    assert_eq!(arp.op, 1);
    assert_eq!(arp.target_ip.to_string(), "198.18.16.10");
    assert_eq!(arp.sender_ip.to_string(), "198.18.16.2");
}
