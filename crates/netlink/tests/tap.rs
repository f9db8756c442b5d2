#![allow(clippy::unwrap_used)]
//! macvtap char devices against the real kernel: frames really cross the tap fd,
//! multiqueue, vnet header and offload ioctls, device nodes in private /dev.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use macvnet_netlink as nl;
use nl::tap::{self, Offloads, TapLink, TapQueue};
use nl::testing::{add_macvlan_in, require_program, require_root, uplink_pair, TestNs};
use nl::{MacAddr, MacvlanSpec, Mode};

/// A macvtap `name` in bridge mode on `eth0` of `host`, up.
fn add_macvtap(host: &TestNs, name: &str) -> nl::LinkInfo {
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&MacvlanSpec {
        name: name.to_string(),
        parent: eth0.index,
        tap: true,
        mode: Some(Mode::Bridge),
        up: true,
        ..Default::default()
    })
    .unwrap();
    h.link_by_name(name).unwrap()
}

/// A bridge-mode macvlan `mv0` on host's eth0, created inside `peer`, with `addr`, up.
fn add_peer_macvlan(host: &TestNs, peer: &TestNs, addr: &str) -> nl::LinkInfo {
    let mv0 = add_macvlan_in(host, "eth0", peer, "mv0", Mode::Bridge, |_| {}).unwrap();
    let mut p = peer.handle().unwrap();
    p.add_addr(mv0.index, addr.parse().unwrap()).unwrap();
    mv0
}

fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip.octets());
    f
}

#[test]
fn arp_request_written_to_the_fd_gets_a_reply_read_from_the_fd() {
    if !require_root("arp_request_written_to_the_fd_gets_a_reply_read_from_the_fd") {
        return;
    }
    let (host, _lan) = uplink_pair("tapx").unwrap();
    let peer = TestNs::new("tapx-peer").unwrap();
    let tap_link = add_macvtap(&host, "mtap0");
    let mv0 = add_peer_macvlan(&host, &peer, "198.18.7.2/24");
    let tap_mac = tap_link.mac.unwrap();
    let (dev, fds) =
        tap::open_link_queues(&host.ns, &"mtap0".into(), 1, false, Offloads::default()).unwrap();
    assert_eq!(dev.index, tap_link.index);
    assert_eq!(dev.mac, Some(tap_mac));
    let q = TapQueue::from(fds.into_iter().next().unwrap());
    // A plain (no vnet header) queue: the driver's default IFF_VNET_HDR is cleared.
    assert_eq!(q.flags().unwrap() & libc::IFF_VNET_HDR, 0);

    let vm_ip = Ipv4Addr::new(198, 18, 7, 10);
    let peer_ip = Ipv4Addr::new(198, 18, 7, 2);
    let s = arp_exchange(&q, 0, tap_mac, vm_ip, peer_ip);
    let a = s.arp.clone().unwrap();
    assert_eq!(s.dst, Some(tap_mac));
    assert_eq!(s.src, mv0.mac);
    assert_eq!(a.sender_ip, peer_ip);
    assert_eq!(Some(a.sender_mac), mv0.mac);
    assert_eq!(a.target_ip, vm_ip);
    assert_eq!(a.target_mac, tap_mac);
    assert!(s.to_string().contains("198.18.7.2 is-at"), "{s}");
    eprintln!("reply on the tap fd: {s}");
    drop(q);

    // Same exchange through a vnet-header queue: 12 header bytes each way.
    let (_dev, fds) =
        tap::open_link_queues(&host.ns, &"mtap0".into(), 1, true, "csum".parse().unwrap()).unwrap();
    let q = TapQueue::from(fds.into_iter().next().unwrap());
    assert_eq!(q.vnet_hdr_len().unwrap(), 12);
    let s = arp_exchange(&q, 12, tap_mac, Ipv4Addr::new(198, 18, 7, 11), peer_ip);
    let a = s.arp.unwrap();
    assert_eq!(a.sender_ip, peer_ip);
    assert_eq!(a.target_ip, Ipv4Addr::new(198, 18, 7, 11));
}

/// Writes an ARP request (behind `hdr` zero bytes of vnet header) into the queue until the
/// ARP reply comes back (8 s at most); returns the reply, its vnet header checked and cut off.
fn arp_exchange(
    q: &TapQueue,
    hdr: usize,
    tap_mac: MacAddr,
    from: Ipv4Addr,
    to: Ipv4Addr,
) -> tap::FrameSummary {
    let mut req = vec![0u8; hdr];
    req.extend_from_slice(&arp_request(tap_mac, from, to));
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        assert_eq!(q.send(&req).unwrap(), req.len());
        let resend = Instant::now() + Duration::from_secs(1);
        while Instant::now() < resend {
            let Some(n) = q.recv(&mut buf, Duration::from_millis(200)).unwrap() else {
                continue;
            };
            assert!(n >= hdr, "short read {n}");
            // virtio_net_hdr: flags 0 and gso_type 0 (NONE) for a small ARP frame.
            assert_eq!(&buf[..hdr.min(2)], &[0u8, 0][..hdr.min(2)]);
            let s = tap::describe_frame(&buf[hdr..n]);
            seen.push(s.to_string());
            if let Some(a) = &s.arp {
                if a.op == 2 && a.target_ip == from {
                    return s;
                }
            }
        }
    }
    panic!("no ARP reply on the tap fd; saw {seen:?}");
}

#[test]
fn four_queues_open_concurrently_with_multi_queue_flag() {
    if !require_root("four_queues_open_concurrently_with_multi_queue_flag") {
        return;
    }
    let (host, _lan) = uplink_pair("tapq").unwrap();
    add_macvtap(&host, "mtap0");
    let (_dev, fds) =
        tap::open_link_queues(&host.ns, &"mtap0".into(), 4, true, Offloads::default()).unwrap();
    assert_eq!(fds.len(), 4);
    let mut raw: Vec<i32> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    raw.sort();
    raw.dedup();
    assert_eq!(raw.len(), 4, "four distinct fds");
    for fd in &fds {
        let flags = tap::get_flags(fd.as_fd()).unwrap();
        let want = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
        assert_eq!(flags & want, want, "flags {flags:#x}");
        // Each fd is still an attached queue: TUNGETIFF would fail with ENOLINK otherwise.
        assert_eq!(
            tap::get_vnet_hdr_len(fd.as_fd()).unwrap(),
            tap::VNET_HDR_LEN
        );
    }
    // A single queue does not ask for IFF_MULTI_QUEUE.
    let (_dev, one) =
        tap::open_link_queues(&host.ns, &"mtap0".into(), 1, false, Offloads::default()).unwrap();
    let flags = tap::get_flags(one[0].as_fd()).unwrap();
    assert_eq!(flags & (libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR), 0);
    assert!(
        tap::open_link_queues(&host.ns, &"mtap0".into(), 0, false, Offloads::default()).is_err()
    );
}

#[test]
fn vnet_header_and_offload_ioctls() {
    if !require_root("vnet_header_and_offload_ioctls") {
        return;
    }
    let (host, _lan) = uplink_pair("tapv").unwrap();
    add_macvtap(&host, "mtap0");
    let all: Offloads = "csum,tso4,tso6,ufo".parse().unwrap();
    let (_dev, fds) = tap::open_link_queues(&host.ns, &"mtap0".into(), 2, true, all).unwrap();
    for fd in &fds {
        assert_eq!(tap::get_vnet_hdr_len(fd.as_fd()).unwrap(), 12);
    }
    let q = &fds[0];
    tap::set_vnet_hdr_len(q.as_fd(), 16).unwrap();
    assert_eq!(tap::get_vnet_hdr_len(q.as_fd()).unwrap(), 16);
    // Smaller than struct virtio_net_hdr: refused by the driver.
    assert_eq!(
        tap::set_vnet_hdr_len(q.as_fd(), 4).unwrap_err(),
        nix::errno::Errno::EINVAL
    );
    tap::set_offload(q.as_fd(), Offloads::default()).unwrap();
    tap::set_offload(q.as_fd(), "csum".parse().unwrap()).unwrap();
    // Flags the macvtap driver does not support are refused (IFF_TUN instead of IFF_TAP).
    assert_eq!(
        tap::set_flags(q.as_fd(), libc::IFF_TUN | libc::IFF_NO_PI).unwrap_err(),
        nix::errno::Errno::EINVAL
    );
    // Our own validation: offloads without the vnet header, or TSO without csum.
    assert!(tap::open_link_queues(&host.ns, &"mtap0".into(), 1, false, all).is_err());
    let tso: Offloads = "tso4".parse().unwrap();
    assert!(tap::open_link_queues(&host.ns, &"mtap0".into(), 1, true, tso).is_err());
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("mvt-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unique high ifindex so /dev/tapN cannot collide with another namespace's macvtap.
fn unique_index(n: u32) -> u32 {
    1_000_000 + (std::process::id() % 100_000) * 10 + n
}

/// A bridge-mode macvtap `name` on `ns`'s eth0 with ifindex `index`, made by
/// `ip link add ... index N` (our netlink API does not pick the ifindex).
fn ip_add_macvtap(ns: &TestNs, name: &str, index: u32) {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "link", "add", "link", "eth0", "name", name])
        .args([
            "index",
            &index.to_string(),
            "type",
            "macvtap",
            "mode",
            "bridge",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unshares the calling thread's mount namespace and makes every mount in it private, so
/// nothing mounted afterwards reaches the host.
fn private_mount_ns() {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
}

#[test]
fn device_node_in_a_fake_private_dev_has_the_right_number_and_owner() {
    if !require_root("device_node_in_a_fake_private_dev_has_the_right_number_and_owner") {
        return;
    }
    if !require_program(
        "device_node_in_a_fake_private_dev_has_the_right_number_and_owner",
        "ip",
        "-V",
        "needs iproute2 `ip` to pick the ifindex",
    ) {
        return;
    }
    let (host, _lan) = uplink_pair("tapn").unwrap();
    let index = unique_index(1);
    ip_add_macvtap(&host, "mtap0", index);

    let (major, minor) = tap::device_number(&host.ns, "mtap0", index).unwrap();
    assert_eq!(
        Some(major),
        tap::macvtap_major(),
        "major from /proc/devices"
    );
    // devtmpfs made /dev/tapN in the root /dev although the link lives in another netns.
    let dev_path = tap::device_path(index);
    assert_eq!(dev_path, PathBuf::from(format!("/dev/tap{index}")));
    let m = std::fs::metadata(&dev_path).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(
        (
            nix::sys::stat::major(m.rdev()),
            nix::sys::stat::minor(m.rdev())
        ),
        (u64::from(major), u64::from(minor))
    );

    // The fallback reader: the host's /sys does not show the test namespace's mtap0...
    let mac = host.handle().unwrap().link_by_name("mtap0").unwrap().mac;
    assert_eq!(
        tap::device_number_from_sysfs(Path::new("/sys"), "mtap0", index, mac),
        None
    );
    // ...a sysfs mounted inside that namespace does, and only with the right MAC.
    let (hit, wrong_mac) = host
        .run(|| {
            use nix::mount::{mount, MsFlags};
            private_mount_ns();
            mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .unwrap();
            (
                tap::device_number_from_sysfs(Path::new("/sys"), "mtap0", index, mac),
                tap::device_number_from_sysfs(
                    Path::new("/sys"),
                    "mtap0",
                    index,
                    Some(MacAddr([2, 0, 0, 0, 0, 9])),
                ),
            )
        })
        .unwrap();
    assert_eq!(hit, Some((major, minor)));
    assert_eq!(wrong_mac, None);

    let dir = TempDir::new("fakedev");
    let (path, created) =
        tap::ensure_device_node(&host.ns, "mtap0", &dir.0, Some(4242), Some(4343)).unwrap();
    assert!(created);
    assert_eq!(path, dir.0.join(format!("tap{index}")));
    let n = std::fs::metadata(&path).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), m.rdev());
    assert_eq!((n.uid(), n.gid()), (4242, 4343));
    assert_eq!(n.permissions().mode() & 0o777, 0o660);
    // Again, by index: kept, not re-created; owner changes apply.
    let (path2, created) = tap::ensure_device_node(&host.ns, index, &dir.0, Some(7), None).unwrap();
    assert_eq!((path2.as_path(), created), (path.as_path(), false));
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 7);
    // A node with another device number is never overwritten.
    std::fs::remove_file(&path).unwrap();
    nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let err = tap::ensure_device_node(&host.ns, "mtap0", &dir.0, None, None).unwrap_err();
    assert!(err.to_string().contains("not char device"), "{err}");
    // Not a macvtap: a clear error.
    let err = tap::ensure_device_node(&host.ns, "eth0", &dir.0, None, None).unwrap_err();
    assert!(err.to_string().contains("not a macvtap"), "{err}");
}

/// Runs `f` on a thread with its own mount namespace where /dev is an empty tmpfs.
fn in_private_dev<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use nix::mount::{mount, MsFlags};
    std::thread::scope(|s| {
        s.spawn(|| {
            // Private first: nothing mounted below may reach the host.
            private_mount_ns();
            mount(
                Some("tmpfs"),
                "/dev",
                Some("tmpfs"),
                MsFlags::MS_NOSUID,
                Some("mode=755"),
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn private_dev_gets_a_node_that_opens() {
    if !require_root("private_dev_gets_a_node_that_opens") {
        return;
    }
    let (host, _lan) = uplink_pair("tapp").unwrap();
    let link = add_macvtap(&host, "mtap0");
    let (path, created, flags, empty_before, tmp_left) = in_private_dev(|| {
        let empty_before = std::fs::read_dir("/dev").unwrap().count() == 0;
        // The CLI path: /dev/tapN is missing, a temporary node is used and removed.
        let (_dev, fds) = tap::open_link_queues(
            &host.ns,
            &TapLink::Name("mtap0".into()),
            2,
            false,
            Offloads::default(),
        )
        .unwrap();
        assert_eq!(fds.len(), 2);
        let tmp_left = std::fs::read_dir("/dev").unwrap().count();
        drop(fds);
        let (path, created) =
            tap::ensure_device_node(&host.ns, "mtap0", Path::new("/dev"), None, None).unwrap();
        let q = tap::open_queues(&path, 1, false, Offloads::default()).unwrap();
        let flags = tap::get_flags(q[0].as_fd()).unwrap();
        (path, created, flags, empty_before, tmp_left)
    });
    assert!(empty_before, "the private /dev starts empty");
    assert_eq!(tmp_left, 0, "the temporary node was removed");
    assert!(created);
    assert_eq!(path, tap::device_path(link.index));
    assert_eq!(flags & libc::IFF_TAP, libc::IFF_TAP);
    // The host's /dev never saw the private node's mount.
    let root_dev = std::fs::read_dir("/dev").unwrap().count();
    assert!(root_dev > 0);
}

#[test]
fn same_ifindex_in_two_namespaces_opens_the_right_device() {
    if !require_root("same_ifindex_in_two_namespaces_opens_the_right_device") {
        return;
    }
    if !require_program(
        "same_ifindex_in_two_namespaces_opens_the_right_device",
        "ip",
        "-V",
        "needs iproute2 `ip` to pick the ifindex",
    ) {
        return;
    }
    let (a, _alan) = uplink_pair("tapca").unwrap();
    let (b, _blan) = uplink_pair("tapcb").unwrap();
    let index = unique_index(2);
    for (ns, name) in [(&a, "mtapa"), (&b, "mtapb")] {
        ip_add_macvtap(ns, name, index);
    }
    let da = tap::resolve(&a.ns, &"mtapa".into()).unwrap();
    let db = tap::resolve(&b.ns, &"mtapb".into()).unwrap();
    assert_eq!((da.index, db.index), (index, index));
    assert_ne!(da.minor, db.minor, "two devices, two minors");
    // devtmpfs kept the first tapN; it is not b's device.
    let m = std::fs::metadata(tap::device_path(index)).unwrap();
    assert_eq!(m.rdev(), da.rdev());
    // Opening b's link still reaches b's device (TUNGETIFF names the link).
    let (_d, fds) =
        tap::open_link_queues(&b.ns, &"mtapb".into(), 2, false, Offloads::default()).unwrap();
    for fd in &fds {
        assert_eq!(tap::get_iff(fd.as_fd()).unwrap().0, "mtapb");
    }
    let (_d, fds) =
        tap::open_link_queues(&a.ns, &"mtapa".into(), 1, false, Offloads::default()).unwrap();
    assert_eq!(tap::get_iff(fds[0].as_fd()).unwrap().0, "mtapa");
}
