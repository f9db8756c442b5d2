//! Bad input to `macvnet link add`: one clear line on stderr, non-zero exit, nothing created.
#![allow(clippy::unwrap_used)]

mod cli_support;
use cli_support::*;

/// Run a failing `link add`, check the message and that the namespace's links did not change.
fn refused(ns: &str, words: &[&str], expect: &[&str]) {
    let before = link_names(ns);
    let mut args = vec!["-n", ns, "link", "add"];
    args.extend_from_slice(words);
    let e = fail(&args);
    assert!(e.starts_with("macvnet: "), "{e}");
    for x in expect {
        assert!(e.contains(x), "{words:?}: {e:?} lacks {x:?}");
    }
    assert_eq!(link_names(ns), before, "{words:?} left something behind");
}

#[test]
fn bad_link_add_input_leaves_nothing() {
    if !can_run("bad_link_add_input_leaves_nothing") {
        return;
    }
    let (host, _lan) = uplink_pair("err").unwrap();
    let ns = host.name.as_str();
    refused(
        ns,
        &["x0", "link", "eth9", "type", "macvlan"],
        &["parent eth9 not found in namespace", ns],
    );
    refused(
        ns,
        &[
            "x0",
            "link",
            "eth0",
            "type",
            "macvlan",
            "address",
            "02:00:zz:00:00:01",
        ],
        &["invalid MAC"],
    );
    refused(
        ns,
        &[
            "x0",
            "link",
            "eth0",
            "type",
            "macvlan",
            "address",
            "03:00:00:00:00:01",
        ],
        &["unicast"],
    );
    refused(
        ns,
        &["x0", "link", "eth0", "type", "macvlan", "mtu", "9000"],
        &["mtu 9000", "parent eth0's mtu 1500"],
    );
    refused(
        ns,
        &["x0", "link", "eth0", "type", "macvlan", "mode", "turbo"],
        &[
            "unknown mode \"turbo\"",
            "private, vepa, bridge, passthru, source",
        ],
    );
    refused(
        ns,
        &["x0", "link", "eth0", "type", "macvlan", "mode"],
        &["`mode` needs a value"],
    );
    refused(
        ns,
        &["x0", "link", "eth0", "type", "macvlan", "bogus"],
        &["unknown keyword \"bogus\""],
    );
    refused(
        ns,
        &["x0", "link", "eth0", "type", "ipvlan"],
        &["macvlan or macvtap"],
    );
    refused(ns, &["x0", "link", "eth0"], &["missing `type"]);
    refused(ns, &["x0", "type", "macvlan"], &["missing `link PARENT`"]);
    refused(
        ns,
        &["x0", "link", "eth0", "type", "macvlan", "mtu", "big"],
        &["mtu"],
    );
    refused(
        ns,
        &["averyveryverylongname", "link", "eth0", "type", "macvlan"],
        &["invalid interface name"],
    );

    refused(
        ns,
        &["x0", "link", "eth0", "type", "macvlan", "-j"],
        &["must come before the subcommand"],
    );
    // Name taken.
    ok(&[
        "-n", ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    refused(
        ns,
        &["mv0", "link", "eth0", "type", "macvlan", "mode", "bridge"],
        &["mv0 is taken"],
    );
    refused(
        ns,
        &["eth0", "link", "eth0", "type", "macvlan"],
        &["eth0 is taken"],
    );
    // `up` fails after the link exists (MAC already used by a sibling): the link is removed again.
    ok(&[
        "-n",
        ns,
        "link",
        "add",
        "mvm",
        "link",
        "eth0",
        "type",
        "macvlan",
        "mode",
        "bridge",
        "address",
        "02:00:c6:12:00:31",
        "up",
    ]);
    refused(
        ns,
        &[
            "mvn",
            "link",
            "eth0",
            "type",
            "macvlan",
            "mode",
            "bridge",
            "address",
            "02:00:c6:12:00:31",
            "up",
        ],
        &[
            "bringing mvn up",
            "already uses 02:00:c6:12:00:31",
            "removed again",
        ],
    );
    let parent_mac = ip_link(ns, "eth0").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    refused(
        ns,
        &[
            "mvn",
            "link",
            "eth0",
            "type",
            "macvlan",
            "address",
            &parent_mac,
        ],
        &["parent eth0's own MAC"],
    );
    // Passthru on a parent that already has children.
    refused(
        ns,
        &["pt0", "link", "eth0", "type", "macvlan", "mode", "passthru"],
        &["passthru", "mv0"],
    );
}

#[test]
fn second_passthru_child_is_refused() {
    if !can_run("second_passthru_child_is_refused") {
        return;
    }
    let host = TestNs::new("errpt").unwrap();
    let ns = host.name.as_str();
    host.handle().unwrap().add_veth("e1", "e1p", None).unwrap();
    ok(&[
        "-n", ns, "link", "add", "pt0", "link", "e1", "type", "macvlan", "mode", "passthru",
    ]);
    refused(
        ns,
        &["pt1", "link", "e1", "type", "macvlan", "mode", "passthru"],
        &["already has a passthru child pt0"],
    );
    refused(
        ns,
        &["pt1", "link", "e1", "type", "macvlan", "mode", "bridge"],
        &["already has a passthru child pt0"],
    );
}

#[test]
fn missing_namespace_and_json_errors_stay_on_stderr() {
    if !can_run("missing_namespace_and_json_errors_stay_on_stderr") {
        return;
    }
    let e = fail(&["-n", "mvt-no-such-ns", "link", "show"]);
    assert!(e.contains("mvt-no-such-ns not found"), "{e}");
    let (host, _lan) = uplink_pair("errj").unwrap();
    let out = mvn(&[
        "-j", "-n", &host.name, "link", "add", "x0", "link", "eth9", "type", "macvlan",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "JSON mode errors go to stderr only");
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}
