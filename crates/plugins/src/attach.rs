//! Steps shared by the macvlan and macvtap plugins once the link sits in the container
//! namespace: announce sysctls, addresses, link up, DAD settle, routes; and the CHECK
//! counterparts.

use std::net::IpAddr;
use std::time::Duration;

use macvnet_cni::CniResult;
use macvnet_netlink::{self as nl, Handle, LinkChange, NetnsRef, RouteSpec};

use crate::PluginError;

/// How long IPv6 DAD may take before ADD fails (the reference's dadSettleTimeout).
pub const DAD_SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// ndisc_notify = 1 for `ifname` in `ns`, so a moved or re-addressed container announces
/// itself (unsolicited NA when the link comes up). IPv6 has no netlink knob for it, so this
/// writes /proc/sys: called only when the result holds IPv6 addresses, since that path walk
/// grows with the node's namespace count. Its IPv4 twin, arp_notify, rides on the rename
/// (`LinkChange::arp_notify`). Failures are logged and ignored, as the reference does.
pub fn set_ndisc_notify(ns: &NetnsRef, ifname: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify");
    match nl::netns::run_here(ns, || std::fs::write(&path, b"1")) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("sysctl {path}: {e}"),
        Err(e) => tracing::debug!("sysctl {path}: {e}"),
    }
}

/// Whether `result` holds an IPv6 address (then ndisc_notify is worth setting).
pub fn has_ipv6(result: &CniResult) -> bool {
    result.ips.iter().any(|ip| ip.address.addr().is_ipv6())
}

/// Set a link up.
pub fn link_up(h: &mut Handle, index: u32, ifname: &str) -> Result<(), PluginError> {
    let up = LinkChange {
        up: Some(true),
        ..Default::default()
    };
    h.set_link(index, &up)
        .map_err(|e| PluginError::netlink(format!("failed to set {ifname:?} UP"), e))
}

/// The reference's `ConfigureIface` for the addresses of `result` on interface 0:
/// addresses, link up, DAD settle when a v6 gateway needs it, then routes (a route's
/// missing gateway is the first gateway of its family).
pub fn configure(
    h: &mut Handle,
    index: u32,
    ifname: &str,
    result: &CniResult,
) -> Result<(), PluginError> {
    let mut v4gw: Option<IpAddr> = None;
    let mut v6gw: Option<IpAddr> = None;
    for ipc in &result.ips {
        if ipc.interface != Some(0) {
            continue;
        }
        h.add_addr(index, ipc.address).map_err(|e| {
            PluginError::netlink(
                format!("failed to add IP addr {} to {ifname:?}", ipc.address),
                e,
            )
        })?;
        match ipc.gateway {
            Some(g @ IpAddr::V4(_)) if v4gw.is_none() => v4gw = Some(g),
            Some(g @ IpAddr::V6(_)) if v6gw.is_none() => v6gw = Some(g),
            _ => {}
        }
    }
    link_up(h, index, ifname)?;
    if v6gw.is_some() {
        // A v6 gateway route needs a non-tentative source address.
        h.settle_addrs(index, DAD_SETTLE_TIMEOUT).map_err(|e| {
            PluginError::netlink(format!("failed to settle addresses for {ifname:?}"), e)
        })?;
    }
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.addr().is_ipv4() { v4gw } else { v6gw });
        let spec = RouteSpec {
            dst: r.dst,
            gateway: gw,
            oif: Some(index),
            src: None,
            metric: r.priority,
            table: r.table,
            // The reference sends RT_SCOPE_UNIVERSE unless the result names a scope.
            scope: Some(r.scope.unwrap_or(0)),
        };
        h.add_route(&spec).map_err(|e| {
            let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
            PluginError::netlink(
                format!("failed to add route '{}{via} dev {ifname}'", r.dst),
                e,
            )
        })?;
    }
    Ok(())
}

/// CHECK: every address of `result` meant for interface 0 is on the link.
pub fn validate_addrs(
    h: &mut Handle,
    index: u32,
    ifname: &str,
    result: &CniResult,
) -> Result<(), PluginError> {
    let have = h
        .addrs(Some(index))
        .map_err(|e| PluginError::netlink(format!("failed to list addresses of {ifname}"), e))?;
    for ipc in result
        .ips
        .iter()
        .filter(|i| i.interface.is_none_or(|n| n == 0))
    {
        if !have.iter().any(|a| a.addr == ipc.address) {
            return Err(PluginError::Check(format!(
                "Failed to match addr {} on interface {ifname}",
                ipc.address
            )));
        }
    }
    Ok(())
}

/// CHECK: every route of `result` exists (same destination; same gateway when given).
pub fn validate_routes(h: &mut Handle, result: &CniResult) -> Result<(), PluginError> {
    if result.routes.is_empty() {
        return Ok(());
    }
    let have = h
        .routes(None)
        .map_err(|e| PluginError::netlink("failed to list routes", e))?;
    for r in &result.routes {
        let found = have
            .iter()
            .any(|x| x.dst == r.dst.trunc() && r.gw.is_none_or(|g| x.gateway == Some(g)));
        if !found {
            let via = r.gw.map(|g| g.to_string()).unwrap_or_default();
            return Err(PluginError::Check(format!(
                "Failed to match route {} to {via}",
                r.dst
            )));
        }
    }
    Ok(())
}

/// The temporary name an ADD of (container ID, ifname) gives its link before the rename:
/// `prefix` + 13 hex digits of a hash of both, so the DEL that follows a killed ADD can find
/// a link that never got its final name (`attempt` varies it on EEXIST).
pub fn temp_name(prefix: &str, container_id: &str, ifname: &str, attempt: u32) -> String {
    let key = format!("{container_id}\0{ifname}\0{attempt}");
    let h = twox_hash::XxHash64::oneshot(0, key.as_bytes());
    format!("{prefix}{:013x}", h & ((1 << 52) - 1))
}

/// DEL after a killed ADD: delete the links in `h`'s namespace still under one of this
/// attachment's temporary names (`tries` attempts). Failures are logged: DEL goes on.
pub fn del_temp_links(h: &mut Handle, prefix: &str, container_id: &str, ifname: &str, tries: u32) {
    for attempt in 0..tries {
        let name = temp_name(prefix, container_id, ifname, attempt);
        match h.link_by_name(&name) {
            Ok(l) if matches!(l.kind, nl::LinkKind::Macvlan | nl::LinkKind::Macvtap) => {
                tracing::info!("deleting {name:?}, left by a killed ADD");
                if let Err(e) = h.del_link(l.index) {
                    if !e.is_not_found() {
                        tracing::warn!("deleting {name:?}: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!("looking up {name:?}: {e}"),
        }
    }
}
