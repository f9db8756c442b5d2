//! The `macvlan` CNI plugin: configuration, ADD/DEL/CHECK/STATUS/GC.
//!
//! ADD creates the child under a temporary name directly in the container namespace
//! (IFLA_NET_NS_FD; the master stays in the namespace the plugin runs in, or in the
//! container with `linkInContainer`), renames it to `CNI_IFNAME`, runs IPAM, then
//! configures it. Every step has its undo ([`crate::guard`]).

use std::path::Path;
use std::sync::Arc;

use macvnet_cni::{CniError, CniResult, Dns, Interface, Plugin, Request};
use macvnet_netlink::{
    self as nl, Handle, LinkChange, LinkKind, MacAddr, MacvlanSpec, Mode, NetnsRef,
};
use serde::Deserialize;

use crate::attach;
use crate::guard::{IpamGuard, LinkGuard};
use crate::ipam::Ipam;
use crate::PluginError;

/// Keys our macvlan understands in `CNI_ARGS` (besides IgnoreUnknown).
const ARGS_KEYS: &[&str] = &["MAC"];
/// Attempts at a free temporary name (a collision needs the same 32 random bits).
const TEMP_NAME_TRIES: u32 = 3;

/// The plugin-specific part of the network config, as JSON gives it.
#[derive(Debug, Default, Deserialize)]
struct RawConf {
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    mtu: Option<i64>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default, rename = "linkInContainer")]
    link_in_container: Option<bool>,
    #[serde(default)]
    bcqueuelen: Option<u32>,
    #[serde(default, rename = "sourceMacs")]
    source_macs: Option<Vec<String>>,
    #[serde(default)]
    nopromisc: Option<bool>,
    #[serde(default)]
    nodst: Option<bool>,
    #[serde(default)]
    bccutoff: Option<i32>,
}

/// Our keys, as the reference spells them (plus ours).
const KEYS: &[&str] = &[
    "master",
    "mode",
    "mtu",
    "mac",
    "linkInContainer",
    "bcqueuelen",
    "sourceMacs",
    "nopromisc",
    "nodst",
    "bccutoff",
];

/// Decode our keys with Go's `encoding/json` matching: the exact key, else one that
/// differs only in ASCII case ("MTU", "Master"), so configs the reference accepts work.
fn decode_raw(stdin: &[u8]) -> Result<RawConf, PluginError> {
    let bad = |e: serde_json::Error| PluginError::Decode(e.to_string());
    let value: serde_json::Value = serde_json::from_slice(stdin).map_err(bad)?;
    let Some(obj) = value.as_object() else {
        return Err(PluginError::Decode("not a JSON object".to_string()));
    };
    let mut picked = serde_json::Map::new();
    for key in KEYS {
        let found = obj
            .get(*key)
            .or_else(|| {
                obj.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null());
        if let Some(v) = found {
            picked.insert((*key).to_string(), v.clone());
        }
    }
    serde_json::from_value(serde_json::Value::Object(picked)).map_err(bad)
}

/// A validated macvlan configuration (no kernel lookups yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanConf {
    /// None: the default-route interface.
    pub master: Option<String>,
    pub mode: Mode,
    /// Requested MTU; 0 inherits the master's.
    pub mtu: i64,
    /// Effective MAC: config < CNI_ARGS `MAC=` < runtimeConfig `mac`.
    pub mac: Option<MacAddr>,
    pub bcqueuelen: Option<u32>,
    pub link_in_container: bool,
    pub source_macs: Vec<MacAddr>,
    pub nopromisc: bool,
    pub nodst: bool,
    pub bccutoff: Option<i32>,
}

/// The reference's mode names plus `source`; "" is bridge.
pub fn parse_mode(s: &str) -> Result<Mode, PluginError> {
    match s {
        "" | "bridge" => Ok(Mode::Bridge),
        "private" => Ok(Mode::Private),
        "vepa" => Ok(Mode::Vepa),
        "passthru" => Ok(Mode::Passthru),
        "source" => Ok(Mode::Source),
        other => Err(PluginError::InvalidConfig(format!(
            "unknown macvlan mode: {other:?}"
        ))),
    }
}

fn parse_mac(s: &str, from_args: bool) -> Result<MacAddr, PluginError> {
    let bad = |why: String| {
        let msg = format!("invalid args {s} for MAC addr: {why}");
        if from_args {
            PluginError::InvalidArgs(msg)
        } else {
            PluginError::InvalidConfig(msg)
        }
    };
    let mac: MacAddr = s
        .parse()
        .map_err(|e: nl::mac::ParseMacError| bad(e.to_string()))?;
    if !mac.is_unicast() || mac.is_zero() {
        return Err(bad("not a unicast address".to_string()));
    }
    Ok(mac)
}

impl MacvlanConf {
    /// Parse and validate the config of `req` (stdin, CNI_ARGS, runtimeConfig).
    pub fn load(req: &Request) -> Result<Self, PluginError> {
        let raw = decode_raw(&req.stdin)?;
        let mode = parse_mode(raw.mode.as_deref().unwrap_or(""))?;
        let mut mac = match raw.mac.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => Some(parse_mac(m, false)?),
            None => None,
        };
        if !req.args_raw.is_empty() {
            let args = req.args()?;
            args.check_known(ARGS_KEYS)?;
            if let Some(m) = args.get("MAC").filter(|m| !m.is_empty()) {
                mac = Some(parse_mac(m, true)?);
            }
        }
        if let Some(m) = req.config.runtime_config::<String>("mac")? {
            if !m.is_empty() {
                mac = Some(parse_mac(&m, false)?);
            }
        }
        let source_macs = raw
            .source_macs
            .unwrap_or_default()
            .iter()
            .map(|m| {
                m.parse::<MacAddr>().map_err(|e| {
                    PluginError::InvalidConfig(format!("invalid sourceMacs entry {m:?}: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nopromisc = raw.nopromisc.unwrap_or(false);
        let nodst = raw.nodst.unwrap_or(false);
        if !source_macs.is_empty() && mode != Mode::Source {
            return Err(PluginError::InvalidConfig(format!(
                "sourceMacs needs mode \"source\", not {mode:?}",
                mode = mode.as_str()
            )));
        }
        if nodst && mode != Mode::Source {
            return Err(PluginError::InvalidConfig(
                "nodst needs mode \"source\"".to_string(),
            ));
        }
        if nopromisc && mode != Mode::Passthru {
            return Err(PluginError::InvalidConfig(
                "nopromisc needs mode \"passthru\"".to_string(),
            ));
        }
        Ok(MacvlanConf {
            master: raw.master.filter(|m| !m.is_empty()),
            mode,
            mtu: raw.mtu.unwrap_or(0),
            mac,
            bcqueuelen: raw.bcqueuelen.filter(|q| *q > 0),
            link_in_container: raw.link_in_container.unwrap_or(false),
            source_macs,
            nopromisc,
            nodst,
            bccutoff: raw.bccutoff,
        })
    }
}

/// The master as found: ifindex (in the namespace it was looked up in) and MTU.
struct Master {
    index: u32,
    mtu: u32,
}

/// Look the master up with `h`: by name, or the default-route interface.
fn find_master(h: &mut Handle, conf: &MacvlanConf) -> Result<Master, PluginError> {
    let link = match &conf.master {
        Some(name) => h.link_by_name(name).map_err(|e| master_err(name, e))?,
        None => {
            let index = h
                .default_route_link()
                .map_err(|e| PluginError::netlink("failed to list routes", e))?
                .ok_or(PluginError::NoDefaultRoute)?;
            h.link_by_index(index)
                .map_err(|e| master_err(&format!("ifindex {index}"), e))?
        }
    };
    Ok(Master {
        index: link.index,
        mtu: link.mtu,
    })
}

/// "Link not found" as the reference says it, else the kernel's reason.
fn master_err(master: &str, e: nl::Error) -> PluginError {
    let reason = if e.is_not_found() {
        "Link not found".to_string()
    } else {
        e.to_string()
    };
    PluginError::MasterNotFound {
        master: master.to_string(),
        reason,
    }
}

fn netns_err(path: &Path, source: nl::Error) -> PluginError {
    PluginError::Netns {
        path: path.display().to_string(),
        source,
    }
}

/// `mv` + a hash of (container ID, ifname, attempt): a DEL after a killed ADD finds the
/// link by it (see [`attach::temp_name`]); a collision is only EEXIST, retried.
fn temp_name(req: &Request, attempt: u32) -> String {
    attach::temp_name("mv", &req.container_id, &req.ifname, attempt)
}

/// Union of the config's DNS (first) and IPAM's.
fn merge_dns(conf: Option<&Dns>, ipam: &Dns) -> Dns {
    let mut out = conf.cloned().unwrap_or_default();
    let extend = |dst: &mut Vec<String>, src: &[String]| {
        for s in src {
            if !dst.contains(s) {
                dst.push(s.clone());
            }
        }
    };
    extend(&mut out.nameservers, &ipam.nameservers);
    extend(&mut out.search, &ipam.search);
    extend(&mut out.options, &ipam.options);
    if out.domain.is_none() {
        out.domain.clone_from(&ipam.domain);
    }
    out
}

/// ADD.
pub fn add(req: &Request) -> Result<CniResult, PluginError> {
    let conf = MacvlanConf::load(req)?;
    let ns_path = req.netns_path()?;
    let ns = NetnsRef::Path(ns_path.to_path_buf());
    let ns_fd = ns.open().map_err(|e| netns_err(ns_path, e))?;
    // Resolved before any change, so a missing IPAM plugin leaves nothing to undo.
    let ipam = Ipam::resolve(req)?;

    let mut cont = Handle::open_here(&ns).map_err(|e| netns_err(ns_path, e))?;
    let mut host = if conf.link_in_container {
        None
    } else {
        Some(Handle::current().map_err(|e| PluginError::netlink("failed to open netlink", e))?)
    };
    let master = match host.as_mut() {
        Some(h) => find_master(h, &conf)?,
        None => find_master(&mut cont, &conf)?,
    };
    if conf.mtu < 0 || conf.mtu > i64::from(master.mtu) {
        return Err(PluginError::InvalidConfig(format!(
            "invalid MTU {}, must be [0, master MTU({})]",
            conf.mtu, master.mtu
        )));
    }

    let mut spec = MacvlanSpec {
        name: String::new(),
        parent: master.index,
        tap: false,
        mode: Some(conf.mode),
        nopromisc: conf.nopromisc,
        nodst: conf.nodst,
        mac: conf.mac,
        mtu: u32::try_from(conf.mtu).ok().filter(|m| *m > 0),
        txqlen: None,
        bcqueuelen: conf.bcqueuelen,
        bccutoff: conf.bccutoff,
        source_macs: conf.source_macs.clone(),
        netns: None,
        up: false,
    };
    if host.is_some() {
        spec.netns = Some(Arc::new(ns_fd));
    }
    let creator = match host.as_mut() {
        Some(h) => h,
        None => &mut cont,
    };
    let mut tries = 0;
    loop {
        spec.name = temp_name(req, tries);
        match creator.add_macvlan(&spec) {
            Ok(()) => break,
            Err(e) if e.is_exists() && tries + 1 < TEMP_NAME_TRIES => tries += 1,
            Err(e) => return Err(PluginError::netlink("failed to create macvlan", e)),
        }
    }
    drop(host);
    macvnet_cni::failpoint!("macvlan::add::after_create");

    let link = match cont.link_by_name(&spec.name) {
        Ok(l) => l,
        Err(e) => {
            // Not found by name: nothing we can address to undo; report.
            return Err(PluginError::netlink(
                format!("failed to refetch macvlan {:?}", spec.name),
                e,
            ));
        }
    };
    let mut link_guard = LinkGuard::new(cont, link.index);
    let index = link.index;
    let rename = LinkChange {
        name: Some(req.ifname.clone()),
        // With addresses coming, announce them when the link comes up (gratuitous ARP).
        arp_notify: ipam.is_some().then_some(true),
        ..Default::default()
    };
    link_guard.handle().set_link(index, &rename).map_err(|e| {
        if e.is_exists() {
            PluginError::IfnameExists {
                ifname: req.ifname.clone(),
            }
        } else {
            PluginError::netlink(format!("failed to rename macvlan to {:?}", req.ifname), e)
        }
    })?;
    macvnet_cni::failpoint!("macvlan::add::after_rename");

    let mut result = CniResult {
        interfaces: vec![Interface {
            name: req.ifname.clone(),
            mac: link.mac.map(|m| m.to_string()),
            sandbox: Some(ns_path.display().to_string()),
            ..Default::default()
        }],
        ..Default::default()
    };

    let mut ipam_dns = Dns::default();
    let ipam_guard = match &ipam {
        Some(ipam) => {
            // The undo is armed before the ADD; its DEL runs while the link exists, so
            // DHCP can still send its RELEASE.
            let (guard, r) = IpamGuard::add(ipam, req)?;
            macvnet_cni::failpoint!("macvlan::add::after_ipam");
            if r.ips.is_empty() {
                return Err(PluginError::IpamNoIp);
            }
            result.ips = r.ips;
            for ipc in &mut result.ips {
                ipc.interface = Some(0);
            }
            result.routes = r.routes;
            ipam_dns = r.dns;
            if attach::has_ipv6(&result) {
                attach::set_ndisc_notify(&ns, &req.ifname);
            }
            attach::configure(link_guard.handle(), index, &req.ifname, &result)?;
            Some(guard)
        }
        None => {
            attach::link_up(link_guard.handle(), index, &req.ifname)?;
            None
        }
    };
    result.dns = merge_dns(req.config.dns.as_ref(), &ipam_dns);
    macvnet_cni::failpoint!("macvlan::add::after_configure");

    if let Some(g) = ipam_guard {
        g.commit();
    }
    link_guard.commit();
    Ok(result)
}

/// DEL: IPAM first, then the link; a gone namespace or link is success.
pub fn del(req: &Request) -> Result<(), PluginError> {
    if let Some(ipam) = Ipam::resolve(req)? {
        ipam.del(req)?;
    }
    macvnet_cni::failpoint!("macvlan::del::after_ipam");
    let Some(ns_path) = req.netns.as_deref() else {
        return Ok(());
    };
    let ns = NetnsRef::Path(ns_path.to_path_buf());
    let mut h = match Handle::open_here(&ns) {
        Ok(h) => h,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(netns_err(ns_path, e)),
    };
    // An ADD killed before its rename left the link under its temporary name.
    attach::del_temp_links(
        &mut h,
        "mv",
        &req.container_id,
        &req.ifname,
        TEMP_NAME_TRIES,
    );
    let link = match h.link_by_name(&req.ifname) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => {
            return Err(PluginError::netlink(
                format!("failed to lookup {:?}", req.ifname),
                e,
            ))
        }
    };
    let deleted = h.del_link(link.index);
    macvnet_cni::failpoint!("macvlan::del::after_link");
    match deleted {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(PluginError::netlink(
            format!("failed to delete {:?}", req.ifname),
            e,
        )),
    }
}

/// CHECK: IPAM CHECK, then the link, mode, MAC, addresses and routes against prevResult.
pub fn check(req: &Request) -> Result<(), PluginError> {
    let conf = MacvlanConf::load(req)?;
    let ns_path = req.netns_path()?;
    let ns = NetnsRef::Path(ns_path.to_path_buf());
    let mut cont = Handle::open_here(&ns).map_err(|e| netns_err(ns_path, e))?;
    if let Some(ipam) = Ipam::resolve(req)? {
        ipam.check(req)?;
    }
    let prev = req.prev_result()?.ok_or(PluginError::NoPrevResult)?;
    let sandbox = ns_path.display().to_string();
    let intf = prev
        .interfaces
        .iter()
        .find(|i| i.name == req.ifname && i.sandbox.as_deref() == Some(sandbox.as_str()));
    let Some(intf) = intf else {
        let found = prev
            .interfaces
            .iter()
            .find(|i| i.name == req.ifname)
            .and_then(|i| i.sandbox.clone())
            .unwrap_or_default();
        return Err(PluginError::Check(format!(
            "sandbox in prevResult {found} doesn't match configured netns: {sandbox}"
        )));
    };
    if conf.link_in_container {
        find_master(&mut cont, &conf)?;
    } else {
        let mut host =
            Handle::current().map_err(|e| PluginError::netlink("failed to open netlink", e))?;
        find_master(&mut host, &conf)?;
    }

    let link = cont.link_by_name(&intf.name).map_err(|_| {
        PluginError::Check(format!(
            "container Interface name in prevResult: {} not found",
            intf.name
        ))
    })?;
    let Some(info) = link
        .macvlan
        .as_ref()
        .filter(|_| link.kind == LinkKind::Macvlan)
    else {
        return Err(PluginError::Check(format!(
            "error: Container interface {} not of type macvlan",
            link.name
        )));
    };
    if info.mode != conf.mode {
        return Err(PluginError::Check(format!(
            "container macvlan mode {} does not match expected value: {}",
            info.mode, conf.mode
        )));
    }
    if let Some(want) = &intf.mac {
        let have = link.mac.map(|m| m.to_string()).unwrap_or_default();
        if !want.eq_ignore_ascii_case(&have) {
            return Err(PluginError::Check(format!(
                "interface {} Mac {want} doesn't match container Mac: {have}",
                intf.name
            )));
        }
    }
    let mut ips = prev.clone();
    // Addresses of other interfaces are not ours to check.
    let our = prev.interfaces.iter().position(|i| std::ptr::eq(i, intf));
    ips.ips
        .retain(|i| i.interface.is_none() || i.interface == our);
    for i in &mut ips.ips {
        i.interface = Some(0);
    }
    attach::validate_addrs(&mut cont, link.index, &intf.name, &ips)?;
    attach::validate_routes(&mut cont, &prev)?;
    Ok(())
}

/// STATUS: the IPAM plugin's STATUS.
pub fn status(req: &Request) -> Result<(), PluginError> {
    Ipam::status_of(req)
}

/// GC: the IPAM plugin's GC (the links die with their namespaces).
pub fn gc(req: &Request) -> Result<(), PluginError> {
    Ipam::gc_of(req)
}

/// The plugin for [`macvnet_cni::skel::run`].
#[derive(Debug, Default, Clone, Copy)]
pub struct MacvlanPlugin;

impl Plugin for MacvlanPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        Ok(add(req)?)
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        Ok(del(req)?)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        Ok(check(req)?)
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        Ok(status(req)?)
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        Ok(gc(req)?)
    }
}
