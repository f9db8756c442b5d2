#![allow(clippy::unwrap_used)]
//! macvlan/macvtap creation and read-back against the real kernel.

use std::sync::Arc;

use macvnet_netlink as nl;
use nix::errno::Errno;
use nl::testing::{require_root, uplink_pair, TestNs};
use nl::{Error, LinkKind, MacAddr, MacvlanSpec, Mode, SourceMacOp};

fn spec(name: &str, parent: u32) -> MacvlanSpec {
    MacvlanSpec {
        name: name.to_string(),
        parent,
        ..Default::default()
    }
}

#[test]
fn five_modes_read_back() {
    if !require_root("five_modes_read_back") {
        return;
    }
    let (host, _lan) = uplink_pair("modes").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    // passthru must be the parent's only child, so it goes first and alone.
    let order = [
        Mode::Passthru,
        Mode::Private,
        Mode::Vepa,
        Mode::Bridge,
        Mode::Source,
    ];
    for (i, mode) in order.into_iter().enumerate() {
        let name = format!("mv{i}");
        h.add_macvlan(&MacvlanSpec {
            mode: Some(mode),
            up: true,
            ..spec(&name, eth0.index)
        })
        .unwrap();
        let l = h.link_by_name(&name).unwrap();
        assert_eq!(l.kind, LinkKind::Macvlan);
        assert_eq!(l.parent_index, Some(eth0.index));
        assert!(l.up, "{name} should be up");
        let info = l.macvlan.unwrap();
        assert!(!info.tap);
        assert_eq!(info.mode, mode);
        if mode == Mode::Passthru {
            h.del_link(l.index).unwrap();
            assert!(h.link_by_name(&name).unwrap_err().is_not_found());
        }
    }
    // Kernel default mode is vepa.
    h.add_macvlan(&spec("mvdef", eth0.index)).unwrap();
    assert_eq!(
        h.link_by_name("mvdef").unwrap().macvlan.unwrap().mode,
        Mode::Vepa
    );
    // A dump reports the same children.
    let all = h.links().unwrap();
    assert_eq!(
        all.iter().filter(|l| l.kind == LinkKind::Macvlan).count(),
        5
    );
}

#[test]
fn macvtap_kind_and_tap_device() {
    if !require_root("macvtap_kind_and_tap_device") {
        return;
    }
    let (host, _lan) = uplink_pair("tap").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    h.add_macvlan(&MacvlanSpec {
        tap: true,
        mode: Some(Mode::Bridge),
        ..spec("mvt0", eth0.index)
    })
    .unwrap();
    let l = h.link_by_name("mvt0").unwrap();
    assert_eq!(l.kind, LinkKind::Macvtap);
    let info = l.macvlan.clone().unwrap();
    assert!(info.tap);
    assert_eq!(info.mode, Mode::Bridge);
    let dev = l.tap_device().unwrap();
    assert_eq!(dev, format!("/dev/tap{}", l.index));
    // devtmpfs is shared by all namespaces; udev-less systems get the node from devtmpfs.
    let mut seen = false;
    for _ in 0..50 {
        if std::path::Path::new(&dev).exists() {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen, "{dev} did not appear");
}

#[test]
fn flags_and_broadcast_queue() {
    if !require_root("flags_and_broadcast_queue") {
        return;
    }
    let (host, _lan) = uplink_pair("flags").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    let before = h.link_by_name("eth0").unwrap().promiscuity;

    // passthru + nopromisc: the parent's promiscuity counter is not raised.
    h.add_macvlan(&MacvlanSpec {
        mode: Some(Mode::Passthru),
        nopromisc: true,
        up: true,
        ..spec("pt0", eth0.index)
    })
    .unwrap();
    let pt = h.link_by_name("pt0").unwrap();
    let info = pt.macvlan.unwrap();
    assert_eq!(info.mode, Mode::Passthru);
    assert!(info.nopromisc);
    assert_eq!(h.link_by_name("eth0").unwrap().promiscuity, before);
    h.del_link(pt.index).unwrap();

    // passthru without nopromisc raises it.
    h.add_macvlan(&MacvlanSpec {
        mode: Some(Mode::Passthru),
        up: true,
        ..spec("pt1", eth0.index)
    })
    .unwrap();
    assert!(!h.link_by_name("pt1").unwrap().macvlan.unwrap().nopromisc);
    assert!(h.link_by_name("eth0").unwrap().promiscuity > before);
    let pt1 = h.link_by_name("pt1").unwrap().index;
    h.del_link(pt1).unwrap();

    // nodst (source mode), bcqueuelen, bccutoff.
    h.add_macvlan(&MacvlanSpec {
        mode: Some(Mode::Source),
        nodst: true,
        bcqueuelen: Some(2000),
        bccutoff: Some(4),
        ..spec("src0", eth0.index)
    })
    .unwrap();
    let info = h.link_by_name("src0").unwrap().macvlan.unwrap();
    assert_eq!(info.mode, Mode::Source);
    assert!(info.nodst);
    assert!(!info.nopromisc);
    assert_eq!(info.bcqueuelen, Some(2000));
    // The port's used queue length is the max over its children.
    assert!(info.bcqueuelen_used.unwrap() >= 2000, "{info:?}");
    // bccutoff exists since kernel 5.19; this kernel reports it back.
    assert_eq!(info.bccutoff, Some(4));
}

#[test]
fn source_mac_list() {
    if !require_root("source_mac_list") {
        return;
    }
    let (host, _lan) = uplink_pair("srcmac").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    let a: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    let b: MacAddr = "02:00:00:00:00:0b".parse().unwrap();
    let c: MacAddr = "02:00:00:00:00:0c".parse().unwrap();
    h.add_macvlan(&MacvlanSpec {
        mode: Some(Mode::Source),
        source_macs: vec![a, b],
        ..spec("src0", eth0.index)
    })
    .unwrap();
    let idx = h.link_by_name("src0").unwrap().index;
    let read = |h: &mut nl::Handle| {
        let mut v = h.link_by_index(idx).unwrap().macvlan.unwrap().source_macs;
        v.sort();
        v
    };
    assert_eq!(read(&mut h), vec![a, b]);
    // The dump agrees with the single get.
    let dumped = h
        .links()
        .unwrap()
        .into_iter()
        .find(|l| l.index == idx)
        .unwrap();
    let mut dm = dumped.macvlan.unwrap().source_macs;
    dm.sort();
    assert_eq!(dm, vec![a, b]);

    h.set_source_macs(idx, SourceMacOp::Add, &[c]).unwrap();
    assert_eq!(read(&mut h), vec![a, b, c]);
    h.set_source_macs(idx, SourceMacOp::Del, &[a, b]).unwrap();
    assert_eq!(read(&mut h), vec![c]);
    h.set_source_macs(idx, SourceMacOp::Set, &[a, b]).unwrap();
    assert_eq!(read(&mut h), vec![a, b]);
    h.set_source_macs(idx, SourceMacOp::Flush, &[]).unwrap();
    assert_eq!(read(&mut h), Vec::<MacAddr>::new());

    // Same operations on a macvtap child.
    h.add_macvlan(&MacvlanSpec {
        tap: true,
        mode: Some(Mode::Source),
        ..spec("srct0", eth0.index)
    })
    .unwrap();
    let t = h.link_by_name("srct0").unwrap().index;
    h.set_source_macs(t, SourceMacOp::Add, &[a, c]).unwrap();
    let mut v = h.link_by_index(t).unwrap().macvlan.unwrap().source_macs;
    v.sort();
    assert_eq!(v, vec![a, c]);
    // Not a macvlan: refused before anything is sent.
    assert!(h
        .set_source_macs(eth0.index, SourceMacOp::Flush, &[])
        .is_err());
}

#[test]
fn create_directly_in_other_namespace() {
    if !require_root("create_directly_in_other_namespace") {
        return;
    }
    let (host, _lan) = uplink_pair("into").unwrap();
    let cont = TestNs::new("into-c").unwrap();
    let fd = Arc::new(cont.ns.open().unwrap());
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    let mac: MacAddr = "02:12:34:56:78:9a".parse().unwrap();
    h.add_macvlan(&MacvlanSpec {
        mode: Some(Mode::Bridge),
        mac: Some(mac),
        mtu: Some(1400),
        txqlen: Some(123),
        netns: Some(fd),
        up: true,
        ..spec("mvc0", eth0.index)
    })
    .unwrap();
    // Not in the host namespace...
    assert!(h.link_by_name("mvc0").unwrap_err().is_not_found());
    // ...but inside the container, with its parent in another namespace.
    let mut c = cont.handle().unwrap();
    let l = c.link_by_name("mvc0").unwrap();
    assert_eq!(l.kind, LinkKind::Macvlan);
    assert_eq!(l.mac, Some(mac));
    assert_eq!(l.mtu, 1400);
    assert_eq!(l.txqlen, 123);
    assert!(l.up);
    assert_eq!(l.parent_index, Some(eth0.index));
    assert!(l.link_netnsid.is_some());
    assert_eq!(l.macvlan.unwrap().mode, Mode::Bridge);
}

#[test]
fn errors_name_op_and_errno() {
    if !require_root("errors_name_op_and_errno") {
        return;
    }
    let (host, _lan) = uplink_pair("err").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();

    // Missing parent.
    let e = h.add_macvlan(&spec("mvx", 9999)).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            Error::Kernel {
                errno: Errno::ENODEV,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        text.starts_with("creating macvlan mvx on ifindex 9999: "),
        "{text}"
    );
    assert!(text.contains("(ENODEV)"), "{text}");
    assert!(e.is_not_found());

    // Duplicate name.
    h.add_macvlan(&spec("mvd", eth0.index)).unwrap();
    let e = h.add_macvlan(&spec("mvd", eth0.index)).unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(
        e.to_string().starts_with("creating macvlan mvd on eth0: "),
        "{e}"
    );
    let d = h.link_by_name("mvd").unwrap().index;
    h.del_link(d).unwrap();

    // A second passthru child on the same parent is refused.
    h.add_macvlan(&MacvlanSpec {
        mode: Some(Mode::Passthru),
        ..spec("pt0", eth0.index)
    })
    .unwrap();
    let e = h
        .add_macvlan(&MacvlanSpec {
            mode: Some(Mode::Passthru),
            ..spec("pt1", eth0.index)
        })
        .unwrap_err();
    assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
    assert!(
        e.to_string().contains("creating macvlan pt1 on eth0"),
        "{e}"
    );
    eprintln!("second passthru: {e}");
    // ...and so is any other mode next to a passthru child.
    assert!(h
        .add_macvlan(&MacvlanSpec {
            mode: Some(Mode::Bridge),
            ..spec("br1", eth0.index)
        })
        .is_err());

    // Deleting a missing link.
    let e = h.del_link(9999).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(h.link_by_index(9999).unwrap_err().is_not_found());
}

#[test]
fn large_dump_spans_datagrams() {
    if !require_root("large_dump_spans_datagrams") {
        return;
    }
    let (host, _lan) = uplink_pair("many").unwrap();
    let mut h = host.handle().unwrap();
    let eth0 = h.link_by_name("eth0").unwrap();
    // ~1.5 KiB per link message: 120 children need several 32 KiB dump datagrams.
    for i in 0..120 {
        h.add_macvlan(&MacvlanSpec {
            mode: Some(Mode::Bridge),
            ..spec(&format!("m{i}"), eth0.index)
        })
        .unwrap();
    }
    let links = h.links().unwrap();
    assert_eq!(
        links.iter().filter(|l| l.kind == LinkKind::Macvlan).count(),
        120
    );
    let mut names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), links.len(), "duplicate links in dump");
    // The socket is still in step after the dump.
    assert_eq!(
        h.link_by_name("m119").unwrap().parent_index,
        Some(eth0.index)
    );
}
