//! The `macvtap` CNI plugin: ADD/DEL/CHECK/STATUS/GC, two ways in one plugin.
//!
//! - **Direct** (`master`, no `deviceID`): the macvtap is created under a temporary name
//!   on the master in the host namespace, moved into the container namespace (keeping its
//!   ifindex, see [`create_direct`]), renamed to `CNI_IFNAME`, then configured like the
//!   macvlan plugin does (optional IPAM). Keys: `master` (default: the default-route interface), `mode`
//!   (`bridge` default, `private`, `vepa`, `passthru`, `source`), `mtu`, `mac`,
//!   `promiscMode`, `owner`, `group`, `bcqueuelen`, `ipam`.
//! - **KubeVirt-compatible** (`deviceID`, as kubevirt/macvtap-cni): `deviceID` names a
//!   macvtap a device plugin created beforehand in the host namespace. ADD moves it into
//!   the container namespace, renames it to `CNI_IFNAME` and applies `mtu`, `mac`,
//!   `promiscMode`, `owner`, `group` (which default to 107:107, KubeVirt's qemu user, as
//!   there). `mode` is optional here and only checked against the device's. The host link
//!   is the one named `deviceID` (older device plugins), else `mvt<hash>`
//!   ([`kubevirt_iface_name`], newer ones).
//!
//! Both: the MAC is config `mac` < `CNI_ARGS` `MAC=` < runtimeConfig `mac`; a txqueuelen
//! of 0 (a macvtap with an empty queue drops every frame) is raised to 1000; the link is
//! set up.
//!
//! **Character device.** Every macvtap has a char device `tapN` (N = its ifindex in the
//! container namespace). After ADD, `<devDir>/tapN` is that device, owned by
//! `owner`/`group` when given: the node devtmpfs made is kept when it is this link's
//! (same major:minor), else the node is made from the major:minor in sysfs
//! ([`nl::tap::ensure_device_node`]). `devDir` is where the container's `/dev` is seen
//! from the plugin: config key `devDir`, overridden by runtimeConfig `devDir` (a runtime
//! that gives each container a private /dev passes its host path there); default `/dev`.
//! A node owned by another namespace's `tapN` is an error, never overwritten. The path is
//! not in the result (the spec has no field for it; `socketPath` means something else):
//! it is `<devDir>/tap<ifindex of CNI_IFNAME>`, also logged at info level.
//!
//! **DEL** removes the link (both flows, as kubevirt's plugin does: its device plugin
//! makes a fresh macvtap for the next allocation) and then the node, when one is still at
//! `<devDir>/tapN` with this link's device number (one we made; devtmpfs removes its own).
//! A gone namespace or link is success.
//!
//! **ADD failure** undoes every step: IPAM release, node removal, and for the link: a
//! created link is deleted; a `deviceID` link is moved back to the host namespace under
//! its old name with its old MTU, MAC, promisc, txqueuelen and up state (kubevirt deletes
//! it; moving back leaves the host as it was before ADD).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use macvnet_cni::{CniError, CniResult, Dns, Interface, Plugin, Request};
use macvnet_netlink::tap::{self, TapLink};
use macvnet_netlink::{
    self as nl, Handle, LinkChange, LinkInfo, LinkKind, MacAddr, MacvlanSpec, Mode, NetnsRef,
};
use serde::Deserialize;

use crate::attach;
use crate::guard::IpamGuard;
use crate::ipam::Ipam;
use crate::PluginError;

/// Keys our macvtap understands in `CNI_ARGS` (besides IgnoreUnknown).
const ARGS_KEYS: &[&str] = &["MAC"];
/// Attempts at a free temporary name (a collision needs the same 32 random bits).
const TEMP_NAME_TRIES: u32 = 3;
/// kubevirt/macvtap-cni's default owner and group of the tap device (qemu in KubeVirt).
pub const KUBEVIRT_QEMU_ID: u32 = 107;
/// What a txqueuelen of 0 is raised to (the kernel's DEFAULT_TX_QUEUE_LEN).
pub const MIN_TXQLEN: u32 = 1000;
/// Default `devDir`.
pub const DEFAULT_DEV_DIR: &str = "/dev";

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
    #[serde(default, rename = "promiscMode")]
    promisc_mode: Option<bool>,
    #[serde(default)]
    owner: Option<u32>,
    #[serde(default)]
    group: Option<u32>,
    #[serde(default)]
    bcqueuelen: Option<u32>,
    #[serde(default, rename = "deviceID")]
    device_id: Option<String>,
    #[serde(default, rename = "devDir")]
    dev_dir: Option<PathBuf>,
}

/// Where the macvtap comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Created on this master (None: the default-route interface).
    Master(Option<String>),
    /// An existing macvtap in the host namespace, named by `deviceID`.
    Device(String),
}

/// A validated macvtap configuration (no kernel lookups yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvtapConf {
    pub source: Source,
    /// Direct: the mode to create (default bridge). deviceID: checked when given.
    pub mode: Option<Mode>,
    /// Requested MTU; 0 leaves it alone.
    pub mtu: u32,
    /// Effective MAC: config < CNI_ARGS `MAC=` < runtimeConfig `mac`.
    pub mac: Option<MacAddr>,
    pub promisc: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub bcqueuelen: Option<u32>,
    /// The container's /dev as seen from the plugin.
    pub dev_dir: PathBuf,
}

/// Mode names in the kernel's spelling; "" is bridge.
pub fn parse_mode(s: &str) -> Result<Mode, PluginError> {
    if s.is_empty() {
        return Ok(Mode::Bridge);
    }
    Mode::from_str(s)
        .map_err(|_| PluginError::InvalidConfig(format!("unknown macvtap mode: {s:?}")))
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

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::InvalidConfig(msg.into())
}

impl MacvtapConf {
    /// Parse and validate the config of `req` (stdin, CNI_ARGS, runtimeConfig).
    pub fn load(req: &Request) -> Result<Self, PluginError> {
        let raw: RawConf =
            serde_json::from_slice(&req.stdin).map_err(|e| PluginError::Decode(e.to_string()))?;
        let device = raw.device_id.filter(|d| !d.is_empty());
        let master = raw.master.filter(|m| !m.is_empty());
        let mode = match raw.mode.as_deref() {
            Some(m) if !m.is_empty() => Some(parse_mode(m)?),
            _ => None,
        };
        let source = match device {
            Some(dev) => {
                if master.is_some() {
                    return Err(invalid(
                        "deviceID and master exclude each other: deviceID names an existing macvtap",
                    ));
                }
                if raw.bcqueuelen.is_some() {
                    return Err(invalid(
                        "bcqueuelen cannot be applied to an existing deviceID macvtap",
                    ));
                }
                Source::Device(dev)
            }
            None => Source::Master(master),
        };
        let mode = match (&source, mode) {
            (Source::Master(_), None) => Some(Mode::Bridge),
            (_, m) => m,
        };
        let mtu = match raw.mtu.unwrap_or(0) {
            m if m < 0 => return Err(invalid(format!("invalid MTU {m}, must not be negative"))),
            m => u32::try_from(m).map_err(|_| invalid(format!("invalid MTU {m}")))?,
        };
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
        let mut dev_dir = raw
            .dev_dir
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DEV_DIR));
        if let Some(d) = req.config.runtime_config::<PathBuf>("devDir")? {
            if !d.as_os_str().is_empty() {
                dev_dir = d;
            }
        }
        if !dev_dir.is_absolute() {
            return Err(invalid(format!(
                "devDir {:?} must be an absolute path",
                dev_dir.display()
            )));
        }
        // kubevirt/macvtap-cni's defaults for its flow; `u32::MAX` would mean "unchanged" to chown.
        let (owner, group) = match source {
            Source::Device(_) => (
                Some(raw.owner.unwrap_or(KUBEVIRT_QEMU_ID)),
                Some(raw.group.unwrap_or(KUBEVIRT_QEMU_ID)),
            ),
            Source::Master(_) => (raw.owner, raw.group),
        };
        if owner == Some(u32::MAX) || group == Some(u32::MAX) {
            return Err(invalid(format!(
                "owner/group {} is not a valid id",
                u32::MAX
            )));
        }
        Ok(MacvtapConf {
            source,
            mode,
            mtu,
            mac,
            promisc: raw.promisc_mode.unwrap_or(false),
            owner,
            group,
            bcqueuelen: raw.bcqueuelen.filter(|q| *q > 0),
            dev_dir,
        })
    }
}

/// "Link not found" as the reference says it, else the kernel's reason.
fn not_found_reason(e: &nl::Error) -> String {
    if e.is_not_found() {
        "Link not found".to_string()
    } else {
        e.to_string()
    }
}

/// The master: by name, or the default-route interface (as the macvlan plugin does).
fn find_master(h: &mut Handle, master: Option<&str>) -> Result<LinkInfo, PluginError> {
    let err = |m: &str, e: nl::Error| PluginError::MasterNotFound {
        master: m.to_string(),
        reason: not_found_reason(&e),
    };
    match master {
        Some(name) => h.link_by_name(name).map_err(|e| err(name, e)),
        None => {
            let index = h
                .default_route_link()
                .map_err(|e| PluginError::netlink("failed to list routes", e))?
                .ok_or(PluginError::NoDefaultRoute)?;
            h.link_by_index(index)
                .map_err(|e| err(&format!("ifindex {index}"), e))
        }
    }
}

/// The host name kubevirt/macvtap-cni's device plugin gives the macvtap for `device_id`
/// (since its "align CNI temp iface naming" change): `mvt` + the low 48 bits of
/// xxhash64(device_id, seed 0) in hex, within IFNAMSIZ.
pub fn kubevirt_iface_name(device_id: &str) -> String {
    let h = twox_hash::XxHash64::oneshot(0, device_id.as_bytes());
    format!("mvt{:012x}", h & 0xffff_ffff_ffff)
}

/// The deviceID macvtap in the host namespace: the link named `device`, else the one
/// named [`kubevirt_iface_name`] (older and newer kubevirt device plugins).
fn find_device(h: &mut Handle, device: &str) -> Result<LinkInfo, PluginError> {
    let hashed = kubevirt_iface_name(device);
    let found = match h.link_by_name(device) {
        Err(e) if e.is_not_found() => h.link_by_name(&hashed),
        other => other,
    };
    let link = found.map_err(|e| {
        invalid(format!(
            "failed to lookup device {device:?} (or {hashed:?}): {}",
            not_found_reason(&e)
        ))
    })?;
    if link.kind != LinkKind::Macvtap {
        return Err(invalid(format!(
            "device {:?} is not a macvtap (kind {:?})",
            link.name, link.kind
        )));
    }
    Ok(link)
}

fn netns_err(path: &Path, source: nl::Error) -> PluginError {
    PluginError::Netns {
        path: path.display().to_string(),
        source,
    }
}

/// `mt` + a hash of (container ID, ifname, attempt): a DEL after a killed ADD finds the
/// link by it, in the host or the container (see [`attach::temp_name`]).
fn temp_name(req: &Request, attempt: u32) -> String {
    attach::temp_name("mt", &req.container_id, &req.ifname, attempt)
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

/// How to undo putting the macvtap into the container.
#[derive(Debug)]
enum Undo {
    /// We created it: delete it.
    Delete,
    /// It was the host's deviceID link: move it back as it was.
    MoveBack { host: OwnedFd, orig: Box<LinkInfo> },
}

/// The macvtap in the container namespace (by ifindex there) and its undo.
#[derive(Debug)]
struct TapGuard {
    handle: Handle,
    index: u32,
    undo: Undo,
    committed: bool,
}

impl TapGuard {
    fn commit(mut self) {
        self.committed = true;
    }

    fn move_back(&mut self, host: &OwnedFd, orig: &LinkInfo) -> Result<(), nl::Error> {
        let index = self.index;
        let h = &mut self.handle;
        h.set_link(
            index,
            &LinkChange {
                up: Some(false),
                ..Default::default()
            },
        )?;
        let restore = LinkChange {
            mtu: Some(orig.mtu),
            mac: orig.mac,
            promisc: Some(orig.promisc),
            txqlen: Some(orig.txqlen),
            ..Default::default()
        };
        if let Err(e) = h.set_link(index, &restore) {
            tracing::warn!("undo: restoring {}: {e}", orig.name);
        }
        h.set_link(
            index,
            &LinkChange {
                name: Some(orig.name.clone()),
                netns: Some(host.as_fd()),
                ..Default::default()
            },
        )?;
        if orig.up {
            let mut hh = Handle::current()?;
            let back = hh.link_by_name(&orig.name)?;
            hh.set_link(
                back.index,
                &LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )?;
        }
        Ok(())
    }
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        match std::mem::replace(&mut self.undo, Undo::Delete) {
            Undo::Delete => {
                if let Err(e) = self.handle.del_link(self.index) {
                    if !e.is_not_found() {
                        tracing::warn!("undo: deleting macvtap ifindex {}: {e}", self.index);
                    }
                }
            }
            Undo::MoveBack { host, orig } => {
                if let Err(e) = self.move_back(&host, &orig) {
                    tracing::warn!("undo: moving {} back to the host: {e}", orig.name);
                }
            }
        }
    }
}

/// A device node we made; removed on drop unless committed.
#[derive(Debug)]
struct NodeGuard {
    path: PathBuf,
    created: bool,
}

impl NodeGuard {
    fn commit(mut self) {
        self.created = false;
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("undo: removing {}: {e}", self.path.display());
            }
        }
    }
}

/// Put a new macvtap on the master into the container namespace under a temporary name.
///
/// Created in the host namespace and then moved: the char device is named after the
/// ifindex, a moved link keeps its ifindex when free, and the host's counter runs far
/// past the small numbers every fresh container namespace hands out. Created directly in
/// the container, every pod's first macvtap would be ifindex 2 and want the same
/// /dev/tap2.
fn create_direct(
    req: &Request,
    conf: &MacvtapConf,
    master: Option<&str>,
    ns: &NetnsRef,
    ns_path: &Path,
    cont: Handle,
) -> Result<(TapGuard, LinkInfo), PluginError> {
    let mut host =
        Handle::current().map_err(|e| PluginError::netlink("failed to open netlink", e))?;
    let master = find_master(&mut host, master)?;
    if conf.mtu > master.mtu {
        return Err(invalid(format!(
            "invalid MTU {}, must be [0, master MTU({})]",
            conf.mtu, master.mtu
        )));
    }
    let ns_fd = ns.open().map_err(|e| netns_err(ns_path, e))?;
    let mut spec = MacvlanSpec {
        name: String::new(),
        parent: master.index,
        tap: true,
        mode: conf.mode,
        mac: conf.mac,
        mtu: Some(conf.mtu).filter(|m| *m > 0),
        bcqueuelen: conf.bcqueuelen,
        ..Default::default()
    };
    let mut tries = 0;
    loop {
        spec.name = temp_name(req, tries);
        match host.add_macvlan(&spec) {
            Ok(()) => break,
            Err(e) if e.is_exists() && tries + 1 < TEMP_NAME_TRIES => tries += 1,
            Err(e) => return Err(PluginError::netlink("failed to create macvtap", e)),
        }
    }
    macvnet_cni::failpoint!("macvtap::add::after_create");
    let created = host.link_by_name(&spec.name).map_err(|e| {
        PluginError::netlink(format!("failed to refetch macvtap {:?}", spec.name), e)
    })?;
    let moved = host.set_link(
        created.index,
        &LinkChange {
            netns: Some(ns_fd.as_fd()),
            ..Default::default()
        },
    );
    if let Err(e) = moved {
        if let Err(d) = host.del_link(created.index) {
            tracing::warn!("undo: deleting macvtap {:?} in the host: {d}", spec.name);
        }
        return Err(PluginError::netlink(
            format!("failed to move macvtap to the netns {}", ns_path.display()),
            e,
        ));
    }
    macvnet_cni::failpoint!("macvtap::add::after_move");
    let mut cont = cont;
    let link = cont.link_by_name(&spec.name).map_err(|e| {
        PluginError::netlink(format!("failed to refetch macvtap {:?}", spec.name), e)
    })?;
    let guard = TapGuard {
        handle: cont,
        index: link.index,
        undo: Undo::Delete,
        committed: false,
    };
    Ok((guard, link))
}

/// Move the host's deviceID macvtap into the container namespace under a temporary name.
fn move_device(
    req: &Request,
    conf: &MacvtapConf,
    device: &str,
    ns: &NetnsRef,
    ns_path: &Path,
    cont: Handle,
) -> Result<(TapGuard, LinkInfo), PluginError> {
    let mut host =
        Handle::current().map_err(|e| PluginError::netlink("failed to open netlink", e))?;
    let orig = find_device(&mut host, device)?;
    if let (Some(want), Some(info)) = (conf.mode, orig.macvlan.as_ref()) {
        if info.mode != want {
            return Err(invalid(format!(
                "device {device:?} has mode {}, config says {want}",
                info.mode
            )));
        }
    }
    let host_fd = NetnsRef::Current
        .open()
        .map_err(|e| PluginError::netlink("failed to open the host netns", e))?;
    let ns_fd = ns.open().map_err(|e| netns_err(ns_path, e))?;
    let mut cont = cont;
    let mut tries = 0;
    let name = loop {
        let name = temp_name(req, tries);
        // One RTM_SETLINK moves and renames (the name applies in the target namespace).
        let change = LinkChange {
            name: Some(name.clone()),
            netns: Some(ns_fd.as_fd()),
            ..Default::default()
        };
        match host.set_link(orig.index, &change) {
            Ok(()) => break name,
            Err(e) if e.is_exists() && tries + 1 < TEMP_NAME_TRIES => tries += 1,
            Err(e) => {
                return Err(PluginError::netlink(
                    format!(
                        "failed to move {device:?} to the netns {}",
                        ns_path.display()
                    ),
                    e,
                ))
            }
        }
    };
    let link = match cont.link_by_name(&name) {
        Ok(l) => l,
        Err(e) => {
            return Err(PluginError::netlink(
                format!("failed to refetch macvtap {name:?}"),
                e,
            ))
        }
    };
    let guard = TapGuard {
        handle: cont,
        index: link.index,
        undo: Undo::MoveBack {
            host: host_fd,
            orig: Box::new(orig),
        },
        committed: false,
    };
    Ok((guard, link))
}

/// ADD.
pub fn add(req: &Request) -> Result<CniResult, PluginError> {
    let conf = MacvtapConf::load(req)?;
    let ns_path = req.netns_path()?;
    let ns = NetnsRef::Path(ns_path.to_path_buf());
    // Resolved before any change, so a missing IPAM plugin leaves nothing to undo.
    let ipam = Ipam::resolve(req)?;
    let cont = Handle::open_here(&ns).map_err(|e| netns_err(ns_path, e))?;

    let (mut guard, link) = match &conf.source {
        Source::Master(m) => create_direct(req, &conf, m.as_deref(), &ns, ns_path, cont)?,
        Source::Device(d) => move_device(req, &conf, d, &ns, ns_path, cont)?,
    };
    let index = guard.index;

    // Rename first: a taken CNI_IFNAME fails before anything else is changed.
    guard
        .handle
        .set_link(
            index,
            &LinkChange {
                name: Some(req.ifname.clone()),
                arp_notify: ipam.is_some().then_some(true),
                ..Default::default()
            },
        )
        .map_err(|e| {
            PluginError::netlink(format!("failed to rename macvtap to {:?}", req.ifname), e)
        })?;
    macvnet_cni::failpoint!("macvtap::add::after_rename");

    // The direct flow set MTU and MAC at creation; setting them again is harmless.
    let change = LinkChange {
        mtu: Some(conf.mtu).filter(|m| *m > 0 && *m != link.mtu),
        mac: conf.mac.filter(|m| Some(*m) != link.mac),
        promisc: conf.promisc.then_some(true),
        txqlen: (link.txqlen == 0).then_some(MIN_TXQLEN),
        ..Default::default()
    };
    guard.handle.set_link(index, &change).map_err(|e| {
        PluginError::netlink(format!("failed to configure macvtap {:?}", req.ifname), e)
    })?;

    let (node_path, created) = tap::ensure_device_node(
        &ns,
        TapLink::Index(index),
        &conf.dev_dir,
        conf.owner,
        conf.group,
    )
    .map_err(|e| {
        PluginError::netlink(
            format!("failed to set up the tap device of {:?}", req.ifname),
            e,
        )
    })?;
    let node_guard = NodeGuard {
        path: node_path.clone(),
        created,
    };
    macvnet_cni::failpoint!("macvtap::add::after_node");
    tracing::info!(ifname = %req.ifname, device = %node_path.display(), created, "macvtap device");

    let link = guard.handle.link_by_index(index).map_err(|e| {
        PluginError::netlink(format!("failed to refetch macvtap {:?}", req.ifname), e)
    })?;
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
            let (g, r) = IpamGuard::add(ipam, req)?;
            macvnet_cni::failpoint!("macvtap::add::after_ipam");
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
            attach::configure(&mut guard.handle, index, &req.ifname, &result)?;
            Some(g)
        }
        None => {
            attach::link_up(&mut guard.handle, index, &req.ifname)?;
            None
        }
    };
    result.dns = merge_dns(req.config.dns.as_ref(), &ipam_dns);
    macvnet_cni::failpoint!("macvtap::add::after_configure");

    if let Some(g) = ipam_guard {
        g.commit();
    }
    node_guard.commit();
    guard.commit();
    Ok(result)
}

/// Is `path` a char device node with device number `rdev`?
fn node_is(path: &Path, rdev: u64) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == rdev)
        .unwrap_or(false)
}

/// DEL: IPAM first, then the link, then a node of ours; a gone namespace or link is success.
pub fn del(req: &Request) -> Result<(), PluginError> {
    // DEL only needs devDir; a config ADD would refuse must not block the cleanup.
    let dev_dir = match MacvtapConf::load(req) {
        Ok(c) => c.dev_dir,
        Err(e) => {
            tracing::warn!(
                "DEL with a config ADD would refuse ({e}); looking for nodes in {DEFAULT_DEV_DIR}"
            );
            PathBuf::from(DEFAULT_DEV_DIR)
        }
    };
    if let Some(ipam) = Ipam::resolve(req)? {
        ipam.del(req)?;
    }
    macvnet_cni::failpoint!("macvtap::del::after_ipam");
    // An ADD killed between creating the macvtap in the host and moving it left it here.
    match Handle::current() {
        Ok(mut host) => attach::del_temp_links(
            &mut host,
            "mt",
            &req.container_id,
            &req.ifname,
            TEMP_NAME_TRIES,
        ),
        Err(e) => tracing::warn!("opening netlink in the host namespace: {e}"),
    }
    let Some(ns_path) = req.netns.as_deref() else {
        return Ok(());
    };
    let ns = NetnsRef::Path(ns_path.to_path_buf());
    let mut h = match Handle::open_here(&ns) {
        Ok(h) => h,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(netns_err(ns_path, e)),
    };
    // ... or in the container, killed before the rename.
    attach::del_temp_links(
        &mut h,
        "mt",
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
    // The device number must be read while the link exists.
    let node = if link.kind == LinkKind::Macvtap {
        match tap::resolve(&ns, &TapLink::Index(link.index)) {
            Ok(dev) => Some((dev_dir.join(format!("tap{}", dev.index)), dev.rdev())),
            Err(e) => {
                tracing::warn!("reading the device number of {:?}: {e}", req.ifname);
                None
            }
        }
    } else {
        None
    };
    if let Some((path, rdev)) = node {
        // Before the link: a DEL killed in between still finds the link, and with it the
        // node's number, next time (removing a devtmpfs node early is harmless).
        if node_is(&path, rdev) {
            std::fs::remove_file(&path).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(PluginError::netlink(
                        format!("failed to remove {}", path.display()),
                        nl::Error::Io {
                            op: "remove".to_string(),
                            source: e,
                        },
                    ))
                }
            })?;
        }
    }
    let deleted = h.del_link(link.index);
    macvnet_cni::failpoint!("macvtap::del::after_link");
    match deleted {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(PluginError::netlink(
                format!("failed to delete {:?}", req.ifname),
                e,
            ))
        }
    }
    Ok(())
}

/// CHECK: IPAM CHECK, then the link, mode, MAC, MTU, promisc, device node, addresses and
/// routes against config and prevResult.
pub fn check(req: &Request) -> Result<(), PluginError> {
    let conf = MacvtapConf::load(req)?;
    let ns_path = req.netns_path()?;
    let ns = NetnsRef::Path(ns_path.to_path_buf());
    let mut cont = Handle::open_here(&ns).map_err(|e| netns_err(ns_path, e))?;
    if let Some(ipam) = Ipam::resolve(req)? {
        ipam.check(req)?;
    }
    let prev = req.prev_result()?.ok_or(PluginError::NoPrevResult)?;
    let sandbox = ns_path.display().to_string();
    let Some(pos) = prev
        .interfaces
        .iter()
        .position(|i| i.name == req.ifname && i.sandbox.as_deref() == Some(sandbox.as_str()))
    else {
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
    let intf = prev.interfaces.get(pos).ok_or(PluginError::NoPrevResult)?;
    if let Source::Master(m) = &conf.source {
        let mut host =
            Handle::current().map_err(|e| PluginError::netlink("failed to open netlink", e))?;
        find_master(&mut host, m.as_deref())?;
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
        .filter(|_| link.kind == LinkKind::Macvtap)
    else {
        return Err(PluginError::Check(format!(
            "error: Container interface {} not of type macvtap",
            link.name
        )));
    };
    if let Some(want) = conf.mode {
        if info.mode != want {
            return Err(PluginError::Check(format!(
                "container macvtap mode {} does not match expected value: {want}",
                info.mode
            )));
        }
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
    if conf.mtu > 0 && link.mtu != conf.mtu {
        return Err(PluginError::Check(format!(
            "interface {} MTU {} doesn't match configured MTU {}",
            intf.name, link.mtu, conf.mtu
        )));
    }
    if conf.promisc && !link.promisc {
        return Err(PluginError::Check(format!(
            "interface {} is not in promiscuous mode",
            intf.name
        )));
    }
    check_node(&ns, &conf, &link)?;
    let mut ips = prev.clone();
    // Addresses of other interfaces are not ours to check.
    ips.ips
        .retain(|i| i.interface.is_none() || i.interface == Some(pos));
    for i in &mut ips.ips {
        i.interface = Some(0);
    }
    attach::validate_addrs(&mut cont, link.index, &intf.name, &ips)?;
    attach::validate_routes(&mut cont, &prev)?;
    Ok(())
}

/// CHECK: `<devDir>/tapN` is this link's char device, with the configured owner/group.
fn check_node(ns: &NetnsRef, conf: &MacvtapConf, link: &LinkInfo) -> Result<(), PluginError> {
    let dev = tap::resolve(ns, &TapLink::Index(link.index)).map_err(|e| {
        PluginError::netlink(
            format!("failed to read the device number of {}", link.name),
            e,
        )
    })?;
    let path = conf.dev_dir.join(format!("tap{}", dev.index));
    let meta = std::fs::symlink_metadata(&path).map_err(|e| {
        PluginError::Check(format!(
            "tap device {} of {}: {e}",
            path.display(),
            link.name
        ))
    })?;
    if !meta.file_type().is_char_device() || meta.rdev() != dev.rdev() {
        return Err(PluginError::Check(format!(
            "{} is not char device {}:{} of {}",
            path.display(),
            dev.major,
            dev.minor,
            link.name
        )));
    }
    if conf.owner.is_some_and(|o| o != meta.uid()) || conf.group.is_some_and(|g| g != meta.gid()) {
        return Err(PluginError::Check(format!(
            "{} is owned by {}:{}, configured {}:{}",
            path.display(),
            meta.uid(),
            meta.gid(),
            conf.owner
                .map(|o| o.to_string())
                .unwrap_or_else(|| "-".into()),
            conf.group
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
        )));
    }
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
pub struct MacvtapPlugin;

impl Plugin for MacvtapPlugin {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use macvnet_cni::skel::Command;

    fn req(conf: serde_json::Value, args: &str) -> Request {
        let stdin = serde_json::to_vec(&conf).unwrap();
        Request {
            command: Command::Add,
            container_id: "c".into(),
            netns: None,
            ifname: "net1".into(),
            args_raw: args.into(),
            path: Vec::new(),
            path_raw: String::new(),
            netns_override: false,
            config: macvnet_cni::NetConf::parse(&stdin).unwrap(),
            stdin,
        }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "macvtap"})
    }

    #[test]
    fn kubevirt_names() {
        // XXH64("") = 0xef46db3751d8e999, the reference implementation's vector.
        assert_eq!(kubevirt_iface_name(""), "mvtdb3751d8e999");
        let n = kubevirt_iface_name("a-very-long-device-id-that-would-overflow-ifname");
        assert_eq!(n.len(), 15);
        assert_eq!(
            n,
            kubevirt_iface_name("a-very-long-device-id-that-would-overflow-ifname")
        );
    }

    #[test]
    fn direct_defaults() {
        let mut c = base();
        c["master"] = "eth0".into();
        let conf = MacvtapConf::load(&req(c, "")).unwrap();
        assert_eq!(conf.source, Source::Master(Some("eth0".into())));
        assert_eq!(conf.mode, Some(Mode::Bridge));
        assert_eq!((conf.owner, conf.group), (None, None));
        assert_eq!(conf.dev_dir, PathBuf::from("/dev"));
    }

    #[test]
    fn device_defaults_and_overrides() {
        let mut c = base();
        c["deviceID"] = "dev500".into();
        c["mtu"] = 1400.into();
        c["promiscMode"] = true.into();
        c["devDir"] = "/tmp/x".into();
        c["runtimeConfig"] =
            serde_json::json!({"devDir": "/run/c1/dev", "mac": "02:00:00:00:00:09"});
        let conf = MacvtapConf::load(&req(c, "MAC=02:00:00:00:00:08")).unwrap();
        assert_eq!(conf.source, Source::Device("dev500".into()));
        assert_eq!(conf.mode, None);
        assert_eq!((conf.owner, conf.group), (Some(107), Some(107)));
        assert_eq!(conf.mtu, 1400);
        assert!(conf.promisc);
        assert_eq!(conf.dev_dir, PathBuf::from("/run/c1/dev"));
        assert_eq!(conf.mac.unwrap().to_string(), "02:00:00:00:00:09");
    }

    #[test]
    fn rejects() {
        let code = |c: serde_json::Value, args: &str| {
            CniError::from(MacvtapConf::load(&req(c, args)).unwrap_err()).code
        };
        let mut c = base();
        c["mode"] = "bogus".into();
        assert_eq!(code(c, ""), 7);
        let mut c = base();
        c["deviceID"] = "d".into();
        c["master"] = "eth0".into();
        assert_eq!(code(c, ""), 7);
        let mut c = base();
        c["owner"] = (-1).into();
        assert_eq!(code(c, ""), 6);
        let mut c = base();
        c["devDir"] = "dev".into();
        assert_eq!(code(c, ""), 7);
        assert_eq!(code(base(), "MAC=zz"), 4);
        assert_eq!(code(base(), "FOO=1"), 4);
        let mut c = base();
        c["mtu"] = (-5).into();
        assert_eq!(code(c, ""), 7);
    }
}
