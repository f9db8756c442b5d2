//! [`Handle`]: one rtnetlink socket in one namespace, with one method per operation.



use ipnet::IpNet;

use crate::{AddrInfo, LinkChange, LinkInfo, MacAddr, MacvlanSpec, NetnsRef, Result, RouteInfo, RouteSpec, SourceMacOp};

/// A NETLINK_ROUTE socket bound to one network namespace. Not Sync: one per thread.
pub struct Handle {
    ns: NetnsRef,
}

impl Handle {
    /// A handle in the caller's current namespace.
    pub fn current() -> Result<Handle> {
        todo!()
    }

    /// A handle in `ns`, opened on a short-lived thread (the caller never moves).
    pub fn open(ns: &NetnsRef) -> Result<Handle> {
        let _ = ns;
        todo!()
    }

    /// The namespace this handle talks to.
    pub fn netns(&self) -> &NetnsRef {
        &self.ns
    }

    // ---- links ----

    /// All links in the namespace (one dump).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        todo!()
    }
    /// A link by name; `Error::NotFound` when absent.
    pub fn link_by_name(&mut self, name: &str) -> Result<LinkInfo> {
        let _ = name;
        todo!()
    }
    /// A link by index; `Error::NotFound` when absent.
    pub fn link_by_index(&mut self, index: u32) -> Result<LinkInfo> {
        let _ = index;
        todo!()
    }
    /// Create a macvlan/macvtap child (one RTM_NEWLINK with CREATE|EXCL).
    /// When `spec.netns` is set the link is created directly in that namespace.
    pub fn add_macvlan(&mut self, spec: &MacvlanSpec) -> Result<()> {
        let _ = spec;
        todo!()
    }
    /// Create a veth pair; `peer_netns` puts the peer directly into another namespace.
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_netns: Option<std::os::fd::BorrowedFd<'_>>) -> Result<()> {
        let _ = (name, peer, peer_netns);
        todo!()
    }
    /// Create a Linux bridge.
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        let _ = name;
        todo!()
    }
    /// Delete a link by index.
    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let _ = index;
        todo!()
    }
    /// Apply a change to a live link.
    pub fn set_link(&mut self, index: u32, change: &LinkChange<'_>) -> Result<()> {
        let _ = (index, change);
        todo!()
    }
    /// Change a source-mode child's MAC list.
    pub fn set_source_macs(&mut self, index: u32, op: SourceMacOp, macs: &[MacAddr]) -> Result<()> {
        let _ = (index, op, macs);
        todo!()
    }
    /// Turn hairpin on or off on a bridge port (IFLA_BRPORT_MODE via AF_BRIDGE).
    pub fn set_hairpin(&mut self, port_index: u32, on: bool) -> Result<()> {
        let _ = (port_index, on);
        todo!()
    }

    // ---- addresses ----

    pub fn add_addr(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let _ = (index, addr);
        todo!()
    }
    pub fn del_addr(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let _ = (index, addr);
        todo!()
    }
    /// Addresses of one link, or of all links when `index` is None.
    pub fn addrs(&mut self, index: Option<u32>) -> Result<Vec<AddrInfo>> {
        let _ = index;
        todo!()
    }

    // ---- routes ----

    pub fn add_route(&mut self, route: &RouteSpec) -> Result<()> {
        let _ = route;
        todo!()
    }
    pub fn del_route(&mut self, route: &RouteSpec) -> Result<()> {
        let _ = route;
        todo!()
    }
    /// Routes of the main table for one family (None = both).
    pub fn routes(&mut self, v6: Option<bool>) -> Result<Vec<RouteInfo>> {
        let _ = v6;
        todo!()
    }
    /// The link of the IPv4 default route (or IPv6 when no v4 one), as the CNI reference picks `master`.
    pub fn default_route_link(&mut self) -> Result<Option<u32>> {
        todo!()
    }
}
