//! `lab up` and `lab down`: create the namespaces and links of a topology, and remove them.

use std::os::fd::AsFd;
use std::sync::Arc;

use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::{Handle, LinkChange, MacvlanSpec, Mode, NetnsRef, RouteSpec};

use super::state::{self, LabState, NsState};
use super::topo::{Iface, Topology, Uplink};
use super::LabError;

/// Prefix of every physical lab namespace: `mvlab-<pid>-<logical>`.
pub const NS_PREFIX: &str = "mvlab-";

/// Physical namespace name for a logical one, carrying our pid so runs never collide.
pub fn physical_name(pid: u32, logical: &str) -> String {
    format!("{NS_PREFIX}{pid}-{logical}")
}

/// Create a host shim: a bridge-mode macvlan `name` on `parent` in the handle's namespace, with
/// `address` and a route per entry of `routes` through it. Returns the shim's ifindex.
pub fn add_shim(
    h: &mut Handle,
    parent: &str,
    name: &str,
    address: IpNet,
    routes: &[IpNet],
) -> nl::Result<u32> {
    let p = h.link_by_name(parent)?;
    let spec = MacvlanSpec {
        name: name.to_string(),
        parent: p.index,
        mode: Some(Mode::Bridge),
        up: true,
        ..Default::default()
    };
    h.add_macvlan(&spec)?;
    let shim = h.link_by_name(name)?;
    h.add_addr(shim.index, address)?;
    for r in routes {
        h.add_route(&RouteSpec::dev(*r, shim.index))?;
    }
    Ok(shim.index)
}

struct Builder<'a> {
    t: &'a Topology,
    st: LabState,
}

impl Builder<'_> {
    fn nl<T>(&self, step: impl FnOnce() -> String, r: nl::Result<T>) -> Result<T, LabError> {
        r.map_err(|source| LabError::Netlink {
            name: self.t.name.clone(),
            step: step(),
            source,
        })
    }

    fn ns(&self, logical: &str) -> Result<NetnsRef, LabError> {
        self.st
            .physical(logical)
            .map(|p| NetnsRef::Named(p.to_string()))
            .ok_or_else(|| LabError::Partial {
                name: self.t.name.clone(),
            })
    }

    fn handle(&self, logical: &str) -> Result<Handle, LabError> {
        let ns = self.ns(logical)?;
        self.nl(
            || format!("opening netlink in netns {logical}"),
            Handle::open(&ns),
        )
    }

    fn set(
        &self,
        h: &mut Handle,
        ns: &str,
        name: &str,
        change: LinkChange<'_>,
    ) -> Result<(), LabError> {
        let idx = self
            .nl(|| format!("finding {name} in {ns}"), h.link_by_name(name))?
            .index;
        self.nl(
            || format!("changing {name} in {ns}"),
            h.set_link(idx, &change),
        )
    }

    fn addr(&self, h: &mut Handle, ns: &str, name: &str, a: Option<IpNet>) -> Result<(), LabError> {
        let Some(a) = a else { return Ok(()) };
        let idx = self
            .nl(|| format!("finding {name} in {ns}"), h.link_by_name(name))?
            .index;
        self.nl(
            || format!("adding {a} to {name} in {ns}"),
            h.add_addr(idx, a),
        )
    }

    /// One end of an uplink: its MAC and address when given, then up.
    fn finish_end(&self, h: &mut Handle, ns: &str, end: &Iface) -> Result<(), LabError> {
        if let Some(mac) = end.mac {
            self.set(
                h,
                ns,
                &end.name,
                LinkChange {
                    mac: Some(mac),
                    ..Default::default()
                },
            )?;
        }
        self.addr(h, ns, &end.name, end.address)?;
        self.set(
            h,
            ns,
            &end.name,
            LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
    }

    fn namespaces(&mut self) -> Result<(), LabError> {
        for n in &self.t.netns {
            let physical = physical_name(self.st.pid, &n.name);
            // Record first: a crash right after `add` must still be cleanable.
            self.st.namespaces.push(NsState {
                logical: n.name.clone(),
                physical: physical.clone(),
            });
            state::save(&self.st)?;
            let ns = self.nl(
                || format!("creating netns {physical}"),
                nl::netns::add(&physical),
            )?;
            // IPv6 addresses are usable at once (no DAD wait); links created later inherit it.
            if let Err(e) = nl::sysctl::write(&ns, "net/ipv6/conf/default/accept_dad", "0") {
                tracing::debug!(netns = %physical, error = %e, "disabling DAD (no IPv6?)");
            }
            if n.lo_up {
                let mut h = self.handle(&n.name)?;
                self.set(
                    &mut h,
                    &n.name,
                    "lo",
                    LinkChange {
                        up: Some(true),
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(())
    }

    fn uplink(&self, u: &Uplink) -> Result<(), LabError> {
        let (lan_ns, host_ns) = (&u.lan.netns, &u.parent.netns);
        let mut lan = self.handle(lan_ns)?;
        let host_fd = self.nl(
            || format!("opening netns {host_ns}"),
            self.ns(host_ns)?.open(),
        )?;
        match &u.switch {
            Some(sw) => {
                // The lan name is a bridge standing for the external switch; the veth is its port.
                self.nl(
                    || format!("creating bridge {} in {lan_ns}", u.lan.name),
                    lan.add_bridge(&u.lan.name),
                )?;
                let step = || format!("creating veth {} / {}", sw.port, u.parent.name);
                self.nl(
                    step,
                    lan.add_veth(&sw.port, &u.parent.name, Some(host_fd.as_fd())),
                )?;
                let br = self.nl(
                    || format!("finding {}", u.lan.name),
                    lan.link_by_name(&u.lan.name),
                )?;
                let port = self.nl(
                    || format!("finding {}", sw.port),
                    lan.link_by_name(&sw.port),
                )?;
                let change = LinkChange {
                    controller: Some(br.index),
                    up: Some(true),
                    ..Default::default()
                };
                self.nl(
                    || format!("enslaving {} to {}", sw.port, u.lan.name),
                    lan.set_link(port.index, &change),
                )?;
                let step = || format!("setting hairpin on {}", sw.port);
                self.nl(step, lan.set_hairpin(port.index, sw.hairpin))?;
            }
            None => {
                let step = || format!("creating veth {} / {}", u.lan.name, u.parent.name);
                self.nl(
                    step,
                    lan.add_veth(&u.lan.name, &u.parent.name, Some(host_fd.as_fd())),
                )?;
            }
        }
        self.finish_end(&mut lan, lan_ns, &u.lan)?;

        let mut host = self.handle(host_ns)?;
        self.finish_end(&mut host, host_ns, &u.parent)?;
        if let Some(shim) = &u.shim {
            let step = || {
                format!(
                    "adding shim {} on {} in {host_ns}",
                    shim.name, u.parent.name
                )
            };
            self.nl(
                step,
                add_shim(
                    &mut host,
                    &u.parent.name,
                    &shim.name,
                    shim.address,
                    &shim.routes,
                ),
            )?;
        }
        Ok(())
    }

    fn children(&self) -> Result<(), LabError> {
        for c in &self.t.children {
            let Some(u) = self.t.uplinks.get(c.uplink) else {
                continue;
            };
            let host_ns = &u.parent.netns;
            let mut host = self.handle(host_ns)?;
            let parent = self.nl(
                || format!("finding parent {}", u.parent.name),
                host.link_by_name(&u.parent.name),
            )?;
            // Created directly inside the child's namespace (IFLA_NET_NS_FD), like the CNI plugin.
            let netns = if c.netns == *host_ns {
                None
            } else {
                let fd = self.nl(
                    || format!("opening netns {}", c.netns),
                    self.ns(&c.netns)?.open(),
                )?;
                Some(Arc::new(fd))
            };
            let spec = MacvlanSpec {
                name: c.name.clone(),
                parent: parent.index,
                tap: c.tap,
                mode: Some(c.mode),
                nopromisc: c.nopromisc,
                mac: c.mac,
                source_macs: c.source_macs.clone(),
                netns,
                up: true,
                ..Default::default()
            };
            let kind = if c.tap { "macvtap" } else { "macvlan" };
            let step = || {
                format!(
                    "creating {kind} {} ({}) on {} into {}",
                    c.name, c.mode, u.parent.name, c.netns
                )
            };
            self.nl(step, host.add_macvlan(&spec))?;
            let mut h = self.handle(&c.netns)?;
            self.addr(&mut h, &c.netns, &c.name, c.address)?;
            self.set(
                &mut h,
                &c.netns,
                &c.name,
                LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )?;
        }
        Ok(())
    }
}

/// Live lab namespaces of a state (those still under /run/netns).
pub fn live_namespaces(st: &LabState) -> Vec<String> {
    let present = nl::netns::list().unwrap_or_default();
    st.namespaces
        .iter()
        .filter(|n| present.contains(&n.physical))
        .map(|n| n.physical.clone())
        .collect()
}

/// Bring a lab up. On failure the state file stays, listing what may exist, for `down`.
pub fn up(t: &Topology, file: &str) -> Result<LabState, LabError> {
    if let Some(old) = state::load(&t.name)? {
        let live = live_namespaces(&old);
        if !live.is_empty() {
            return Err(LabError::AlreadyUp {
                name: t.name.clone(),
                namespaces: live.join(", "),
            });
        }
        tracing::info!(lab = %t.name, "removing stale state (no live namespaces)");
    }
    let st = LabState {
        name: t.name.clone(),
        file: file.to_string(),
        pid: std::process::id(),
        namespaces: vec![],
        complete: false,
    };
    state::save(&st)?;
    let mut b = Builder { t, st };
    b.namespaces()?;
    for u in &t.uplinks {
        b.uplink(u)?;
    }
    b.children()?;
    b.st.complete = true;
    state::save(&b.st)?;
    Ok(b.st)
}

/// What `down` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct DownReport {
    pub lab: String,
    /// Namespaces deleted.
    pub removed: Vec<String>,
    /// Nothing was up.
    pub nothing_to_do: bool,
}

/// Remove exactly what the state lists (namespaces take their links with them). Idempotent.
pub fn down(lab: &str) -> Result<DownReport, LabError> {
    let Some(st) = state::load(lab)? else {
        return Ok(DownReport {
            lab: lab.to_string(),
            removed: vec![],
            nothing_to_do: true,
        });
    };
    let live = live_namespaces(&st);
    let mut first_err = None;
    for n in st.namespaces.iter().rev() {
        // Never delete anything a lab could not have created, whatever the state file says.
        if !n.physical.starts_with(NS_PREFIX) {
            tracing::warn!(netns = %n.physical, "state lists a namespace that is not a lab's; leaving it");
            continue;
        }
        if let Err(source) = nl::netns::del(&n.physical, true) {
            tracing::warn!(netns = %n.physical, error = %source, "deleting lab namespace");
            first_err.get_or_insert(LabError::Netlink {
                name: lab.to_string(),
                step: format!("deleting netns {}", n.physical),
                source,
            });
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    state::remove(lab)?;
    Ok(DownReport {
        lab: lab.to_string(),
        nothing_to_do: live.is_empty(),
        removed: live,
    })
}
