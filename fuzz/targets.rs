//! Fuzz target bodies, shared by the cargo-fuzz binaries (fuzz/fuzz_targets/*.rs) and the
//! CI replay test (crates/plugins/tests/fuzz_replay.rs), which feeds every saved corpus
//! file under fuzz/corpus/<target>/ through the same function. A target must never panic
//! on any input; errors are fine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use macvnet_cni::skel::Command;
use macvnet_cni::{CniArgs, CniError, CniResult, NetConf, Request};

/// A target body.
pub type Target = fn(&[u8]);

/// Every target by name (the directory names under fuzz/corpus/).
pub const TARGETS: &[(&str, Target)] = &[
    ("netconf", netconf),
    ("plugin_conf", plugin_conf),
    ("result", result),
    ("hostlocal_store", hostlocal_store),
    ("dhcp_packet", dhcp_packet),
    ("gob", gob),
];

const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Split at the first NUL: (before, after); no NUL → ("", all).
fn split0(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[], data),
    }
}

/// cni: NetConf, version decoding and reconciling, CNI_ARGS, name validation.
pub fn netconf(data: &[u8]) {
    if let Ok(conf) = NetConf::parse(data) {
        if let Some(ipam) = &conf.ipam {
            let _ = ipam.parse_as::<serde_json::Value>();
        }
        let _ = conf.prev_result();
        let _ = macvnet_cni::version::reconcile(
            &conf.cni_version,
            macvnet_cni::version::SUPPORTED_VERSIONS,
        );
        let _ = macvnet_cni::validate::validate_network_name(&conf.name);
    }
    let _ = macvnet_cni::version::decode_version(data);
    let _ = macvnet_cni::version::VersionInfo::decode(data);
    let _ = CniError::from_json(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(args) = CniArgs::parse(s) {
            let _ = args.check_known(&["IP", "MAC"]);
            let _ = args.to_map();
        }
        let _ = macvnet_cni::version::compare(s, "1.0.0");
        let _ = macvnet_cni::validate::validate_container_id(s);
        let _ = macvnet_cni::validate::validate_interface_name(s);
    }
}

fn request(stdin: &[u8], args: &str) -> Option<Request> {
    let config = NetConf::parse(stdin).ok()?;
    Some(Request {
        command: Command::Add,
        container_id: "fuzz".into(),
        netns: None,
        ifname: "net1".into(),
        args_raw: args.into(),
        path: Vec::new(),
        path_raw: String::new(),
        netns_override: false,
        config,
        stdin: stdin.to_vec(),
    })
}

/// Each plugin's own config: `<CNI_ARGS>\0<stdin>`; pure parsing, no kernel.
pub fn plugin_conf(data: &[u8]) {
    let (args, stdin) = split0(data);
    let args = String::from_utf8_lossy(args);
    if let Some(req) = request(stdin, &args) {
        let _ = macvnet_plugins::macvlan::MacvlanConf::load(&req);
        let _ = macvnet_plugins::macvtap::MacvtapConf::load(&req);
    }
    let _ = macvnet_ipam::host_local::HostLocalConfig::parse(stdin, &args);
    let _ = macvnet_ipam::static_ipam::StaticConfig::parse(stdin, &args);
    if let Ok(conf) = macvnet_dhcp::config::NetConf::parse(stdin) {
        let ipam = conf.ipam();
        let _ = conf.socket_path();
        let _ = macvnet_dhcp::config::prepare_options(&args, &ipam);
    }
    if let Ok(s) = std::str::from_utf8(stdin) {
        let _ = macvnet_dhcp::config::parse_option_name(s);
    }
}

/// Results: parse, print in and convert to every version, delegate output.
pub fn result(data: &[u8]) {
    if let Ok(r) = CniResult::parse(data) {
        for v in VERSIONS {
            let _ = r.to_json(v);
            let _ = r.as_version(v);
        }
    }
    for v in VERSIONS {
        let _ = CniResult::convert(data, v);
        let _ = CniResult::from_json(v, data);
    }
    let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#;
    let _ = macvnet_cni::delegate::parse_delegate_result(conf, data);
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("macvnet-fuzz-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::create_dir_all(&p);
    p
}

/// host-local store files: the input is split on NUL into the content of
/// `last_reserved_ip.0`, then address files 198.18.0.2, .3, ... (ids/ifnames as a
/// killed or foreign writer may leave them). Then ADD, GET-by-id via DEL, and GC run on it.
pub fn hostlocal_store(data: &[u8]) {
    let dir = scratch("store");
    let net = dir.join("fz");
    let _ = std::fs::create_dir_all(&net);
    let mut parts = data.split(|b| *b == 0);
    if let Some(last) = parts.next() {
        let _ = std::fs::write(net.join("last_reserved_ip.0"), last);
    }
    for (i, content) in parts.take(12).enumerate() {
        let _ = std::fs::write(net.join(format!("198.18.0.{}", i + 2)), content);
    }
    let conf = hostlocal_conf(&dir);
    let _ = macvnet_ipam::host_local::add(conf.as_bytes(), "fuzz-a", "eth0", "");
    let _ = macvnet_ipam::host_local::del(conf.as_bytes(), "fuzz-b", "eth0", "");
    let _ = macvnet_ipam::host_local::status(conf.as_bytes());
    let _ = macvnet_ipam::host_local::gc(conf.as_bytes());
    let _ = std::fs::remove_dir_all(&dir);
}

fn hostlocal_conf(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.1.0", "name": "fz", "type": "host-local",
        "cni.dev/valid-attachments": [{"containerID": "fuzz-a", "ifname": "eth0"}],
        "ipam": {"type": "host-local", "dataDir": dir,
                 "ranges": [[{"subnet": "198.18.0.0/28"}]]}
    })
    .to_string()
}

/// DHCP: a received message decoded as the client does, then what an ACK grants.
pub fn dhcp_packet(data: &[u8]) {
    if let Some(msg) = macvnet_dhcp::client::decode_message(data) {
        let _ = macvnet_dhcp::client::grant_of(&msg, std::net::Ipv4Addr::new(198, 18, 0, 1));
    }
}

/// Go gob from a peer (reference plugin or daemon): values, then the result mapping.
pub fn gob(data: &[u8]) {
    let mut codec = macvnet_dhcp::gob::Codec::default();
    let mut r = data;
    for _ in 0..4 {
        match codec.read_value(&mut r) {
            Ok(v) => {
                let _ = macvnet_dhcp::gorpc::gob_to_result(&v);
            }
            Err(_) => break,
        }
    }
}
