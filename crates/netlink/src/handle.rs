//! [`Handle`]: one rtnetlink socket in one namespace, with one method per operation.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{DefaultNla, Emitable, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
    LinkProtoInfoBridge,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidHeader, NsidMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use crate::link::{macvlan_linkinfo, parse_link, source_op_linkinfo};
use crate::socket::Socket;
use crate::{
    AddrInfo, Error, LinkChange, LinkInfo, LinkKind, MacAddr, MacvlanSpec, NetnsRef, Result,
    RouteInfo, RouteSpec, SourceMacOp,
};

/// IFLA_BRPORT_MODE: hairpin mode of a bridge port (u8).
const IFLA_BRPORT_MODE: u16 = 4;
/// RT_TABLE_MAIN.
const MAIN_TABLE: u32 = 254;

/// A NETLINK_ROUTE socket bound to one network namespace. Not Sync: one per thread.
pub struct Handle {
    ns: NetnsRef,
    sock: Socket,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle in the caller's current namespace.
    pub fn current() -> Result<Handle> {
        Ok(Handle {
            ns: NetnsRef::Current,
            sock: Socket::new()?,
        })
    }

    /// A handle in `ns`, opened on a short-lived thread (the caller never moves).
    pub fn open(ns: &NetnsRef) -> Result<Handle> {
        Handle::open_with(ns, || crate::netns::run_in(ns, Socket::new))
    }

    /// A handle in `ns`, opened by moving the calling thread there and back
    /// (`netns::run_here`): cheaper than [`Handle::open`] for single-threaded processes.
    pub fn open_here(ns: &NetnsRef) -> Result<Handle> {
        Handle::open_with(ns, || crate::netns::run_here(ns, Socket::new))
    }

    /// A socket stays in the namespace it was created in: `create` makes it inside `ns`.
    fn open_with(ns: &NetnsRef, create: impl FnOnce() -> Result<Result<Socket>>) -> Result<Handle> {
        if *ns == NetnsRef::Current {
            return Handle::current();
        }
        Ok(Handle {
            ns: ns.clone(),
            sock: create()??,
        })
    }

    /// The namespace this handle talks to.
    pub fn netns(&self) -> &NetnsRef {
        &self.ns
    }

    /// "name" of a link for error messages, or "ifindex N" when it cannot be looked up.
    fn describe(&mut self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(l) => l.name,
            Err(_) => format!("ifindex {index}"),
        }
    }

    /// `ip route`-like text for error messages.
    fn describe_route(&mut self, r: &RouteSpec) -> String {
        let mut s = r.dst.to_string();
        if let Some(gw) = r.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = r.oif {
            s.push_str(&format!(" dev {}", self.describe(oif)));
        }
        if let Some(src) = r.src {
            s.push_str(&format!(" src {src}"));
        }
        if let Some(m) = r.metric {
            s.push_str(&format!(" metric {m}"));
        }
        s
    }

    // ---- links ----

    /// All links in the namespace (one dump).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        let op = format!("listing links in {}", self.ns);
        let replies = self
            .sock
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), &op)?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })
            .collect())
    }

    /// A link by name; `Error::NotFound` when absent.
    pub fn link_by_name(&mut self, name: &str) -> Result<LinkInfo> {
        if name.is_empty() || name.len() > 15 {
            return Err(Error::NotFound {
                op: format!("looking up link {name:?} in {}", self.ns),
            });
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let op = format!("looking up link {name} in {}", self.ns);
        self.get_link(msg, op)
    }

    /// A link by index; `Error::NotFound` when absent.
    pub fn link_by_index(&mut self, index: u32) -> Result<LinkInfo> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let op = format!("looking up link ifindex {index} in {}", self.ns);
        self.get_link(msg, op)
    }

    fn get_link(&mut self, msg: LinkMessage, op: String) -> Result<LinkInfo> {
        match self.sock.get(RouteNetlinkMessage::GetLink(msg), &op) {
            Ok(RouteNetlinkMessage::NewLink(l)) => Ok(parse_link(&l)),
            Ok(other) => Err(Error::Protocol {
                op,
                detail: format!("unexpected reply {other:?}"),
            }),
            Err(e) if matches!(e.errno(), Some(Errno::ENODEV)) => Err(Error::NotFound { op }),
            Err(e) => Err(e),
        }
    }

    /// The id this handle's namespace uses for the namespace `target` (RTM_GETNSID), as
    /// reported in a link's IFLA_LINK_NETNSID; None when it has assigned none.
    pub fn nsid_of(&mut self, target: BorrowedFd<'_>) -> Result<Option<i32>> {
        let op = format!(
            "asking {} for the id of namespace fd {}",
            self.ns,
            target.as_raw_fd()
        );
        let fd = u32::try_from(target.as_raw_fd()).map_err(|_| Error::Invalid(op.clone()))?;
        let mut req = NsidMessage::default();
        req.header = NsidHeader {
            family: AddressFamily::Unspec,
        };
        req.attributes = vec![NsidAttribute::Fd(fd)];
        match self.sock.get(RouteNetlinkMessage::GetNsId(req), &op)? {
            RouteNetlinkMessage::NewNsId(m) => Ok(m
                .attributes
                .iter()
                .find_map(|a| match a {
                    NsidAttribute::Id(id) => Some(*id),
                    _ => None,
                })
                // -1 is NETNSA_NSID_NOT_ASSIGNED.
                .filter(|id| *id >= 0)),
            other => Err(Error::Protocol {
                op,
                detail: format!("unexpected reply {other:?}"),
            }),
        }
    }

    /// Create a macvlan/macvtap child (one RTM_NEWLINK with CREATE|EXCL).
    /// When `spec.netns` is set the link is created directly in that namespace.
    pub fn add_macvlan(&mut self, spec: &MacvlanSpec) -> Result<()> {
        let mut msg = LinkMessage::default();
        if spec.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.clone()));
        msg.attributes.push(LinkAttribute::Link(spec.parent));
        msg.attributes
            .push(LinkAttribute::LinkInfo(macvlan_linkinfo(spec)));
        if let Some(mac) = spec.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(q) = spec.txqlen {
            msg.attributes.push(LinkAttribute::TxQueueLen(q));
        }
        // The fd only has to be valid while the request is sent: spec owns it.
        if let Some(ns) = &spec.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let kind = if spec.tap { "macvtap" } else { "macvlan" };
        let res = self.sock.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "",
        );
        res.map_err(|e| {
            let parent = self.describe(spec.parent);
            retitle(e, format!("creating {kind} {} on {parent}", spec.name))
        })
    }

    /// Create a veth pair; `peer_netns` puts the peer directly into another namespace.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        if let Some(fd) = peer_netns {
            peer_msg
                .attributes
                .push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        let op = format!("creating veth {name} with peer {peer} in {}", self.ns);
        self.sock.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    /// Create a Linux bridge.
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let op = format!("creating bridge {name} in {}", self.ns);
        self.sock.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    /// Delete a link by index.
    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let res = self.sock.ack(RouteNetlinkMessage::DelLink(msg), 0, "");
        res.map_err(|e| {
            let name = self.describe(index);
            retitle(e, format!("deleting link {name} in {}", self.ns))
        })
    }

    /// Apply a change to a live link.
    pub fn set_link(&mut self, index: u32, change: &LinkChange<'_>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let mut what = Vec::new();
        if let Some(up) = change.up {
            msg.header.change_mask |= LinkFlags::Up;
            msg.header.flags.set(LinkFlags::Up, up);
            what.push(if up {
                "up".to_string()
            } else {
                "down".to_string()
            });
        }
        if let Some(p) = change.promisc {
            msg.header.change_mask |= LinkFlags::Promisc;
            msg.header.flags.set(LinkFlags::Promisc, p);
            what.push(format!("promisc {}", if p { "on" } else { "off" }));
        }
        if let Some(mtu) = change.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            what.push(format!("mtu {mtu}"));
        }
        if let Some(mac) = change.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
            what.push(format!("address {mac}"));
        }
        if let Some(name) = &change.name {
            msg.attributes.push(LinkAttribute::IfName(name.clone()));
            what.push(format!("name {name}"));
        }
        if let Some(q) = change.txqlen {
            msg.attributes.push(LinkAttribute::TxQueueLen(q));
            what.push(format!("txqueuelen {q}"));
        }
        if let Some(fd) = change.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
            what.push("netns".to_string());
        }
        if let Some(c) = change.controller {
            msg.attributes.push(LinkAttribute::Controller(c));
            what.push(if c == 0 {
                "nomaster".to_string()
            } else {
                format!("master ifindex {c}")
            });
        }
        if let Some(on) = change.arp_notify {
            msg.attributes
                .push(inet_devconf_attr(IPV4_DEVCONF_ARP_NOTIFY, u32::from(on)));
            what.push(format!("arp_notify {}", u32::from(on)));
        }
        if what.is_empty() {
            return Ok(());
        }
        let res = self.sock.ack(RouteNetlinkMessage::SetLink(msg), 0, "");
        res.map_err(|e| {
            let name = self.describe(index);
            retitle(
                e,
                format!("setting {} on link {name} in {}", what.join(", "), self.ns),
            )
        })
    }

    /// Change a source-mode child's MAC list.
    /// Add and Del send one request per MAC (the kernel takes one IFLA_MACVLAN_MACADDR each).
    pub fn set_source_macs(&mut self, index: u32, op: SourceMacOp, macs: &[MacAddr]) -> Result<()> {
        let link = self.link_by_index(index)?;
        let tap = match link.kind {
            LinkKind::Macvlan => false,
            LinkKind::Macvtap => true,
            _ => {
                return Err(Error::Invalid(format!(
                    "changing source MACs of {}: not a macvlan/macvtap link",
                    link.name
                )))
            }
        };
        let batches: Vec<&[MacAddr]> = match op {
            SourceMacOp::Add | SourceMacOp::Del => macs.chunks(1).collect(),
            SourceMacOp::Flush | SourceMacOp::Set => vec![macs],
        };
        for batch in batches {
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            msg.attributes
                .push(LinkAttribute::LinkInfo(source_op_linkinfo(tap, op, batch)));
            let what = match op {
                SourceMacOp::Add => format!("adding source MAC {}", list_macs(batch)),
                SourceMacOp::Del => format!("deleting source MAC {}", list_macs(batch)),
                SourceMacOp::Flush => "flushing source MACs".to_string(),
                SourceMacOp::Set => format!("setting source MACs [{}]", list_macs(batch)),
            };
            // RTM_NEWLINK without CREATE: RTM_SETLINK ignores IFLA_INFO_DATA.
            let op = format!("{what} on {} in {}", link.name, self.ns);
            self.sock.ack(RouteNetlinkMessage::NewLink(msg), 0, &op)?;
        }
        Ok(())
    }

    /// Turn hairpin on or off on a bridge port (IFLA_BRPORT_MODE via AF_BRIDGE).
    pub fn set_hairpin(&mut self, port_index: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = port_index;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(vec![
            LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![u8::from(on)])),
        ]));
        let res = self.sock.ack(RouteNetlinkMessage::SetLink(msg), 0, "");
        res.map_err(|e| {
            let name = self.describe(port_index);
            retitle(
                e,
                format!(
                    "setting hairpin {} on bridge port {name} in {}",
                    if on { "on" } else { "off" },
                    self.ns
                ),
            )
        })
    }

    /// Hairpin state of a bridge port (AF_BRIDGE dump, IFLA_PROTINFO/IFLA_BRPORT_MODE);
    /// `Error::NotFound` when the link is not a bridge port.
    pub fn hairpin(&mut self, port_index: u32) -> Result<bool> {
        let mut req = LinkMessage::default();
        req.header.interface_family = AddressFamily::Bridge;
        let op = format!("reading hairpin of ifindex {port_index} in {}", self.ns);
        let replies = self.sock.dump(RouteNetlinkMessage::GetLink(req), &op)?;
        for reply in &replies {
            let RouteNetlinkMessage::NewLink(l) = reply else {
                continue;
            };
            if l.header.index != port_index {
                continue;
            }
            for attr in &l.attributes {
                if let LinkAttribute::ProtoInfoBridge(items) = attr {
                    for item in items {
                        if let LinkProtoInfoBridge::Other(nla) = item {
                            if netlink_packet_core::Nla::kind(nla) == IFLA_BRPORT_MODE {
                                let mut v = [0u8; 1];
                                if netlink_packet_core::Nla::value_len(nla) == 1 {
                                    netlink_packet_core::Nla::emit_value(nla, &mut v);
                                }
                                return Ok(v[0] != 0);
                            }
                        }
                    }
                }
            }
        }
        Err(Error::NotFound { op })
    }

    // ---- addresses ----

    pub fn add_addr(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = addr_message(index, addr);
        if let IpNet::V4(v4) = addr {
            // Like iproute2 `brd +`: the all-ones host part, except for /31 and /32.
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        let res = self.sock.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "",
        );
        res.map_err(|e| {
            let name = self.describe(index);
            retitle(e, format!("adding address {addr} to {name} in {}", self.ns))
        })
    }

    pub fn del_addr(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let msg = addr_message(index, addr);
        let res = self.sock.ack(RouteNetlinkMessage::DelAddress(msg), 0, "");
        res.map_err(|e| {
            let name = self.describe(index);
            retitle(
                e,
                format!("deleting address {addr} from {name} in {}", self.ns),
            )
        })
    }

    /// Addresses of one link, or of all links when `index` is None.
    pub fn addrs(&mut self, index: Option<u32>) -> Result<Vec<AddrInfo>> {
        let op = format!("listing addresses in {}", self.ns);
        let replies = self.sock.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            &op,
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => crate::addr::parse_addr(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    /// Wait until no address of link `index` is tentative (IPv6 DAD done), polling
    /// every 50 ms for at most `timeout`, like the CNI reference's SettleAddresses.
    /// An address whose DAD failed is an `Error::Kernel` with EADDRINUSE.
    pub fn settle_addrs(&mut self, index: u32, timeout: std::time::Duration) -> Result<()> {
        let start = std::time::Instant::now();
        loop {
            let addrs = self.addrs(Some(index))?;
            if let Some(bad) = addrs.iter().find(|a| a.dad_failed) {
                let name = self.describe(index);
                return Err(Error::Kernel {
                    op: format!("settling addresses of {name} in {}", self.ns),
                    errno: Errno::EADDRINUSE,
                    ext_ack: Some(format!(
                        "duplicate address detection failed for {}",
                        bad.addr
                    )),
                });
            }
            if !addrs.iter().any(|a| a.tentative) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let name = self.describe(index);
                return Err(Error::Kernel {
                    op: format!("settling addresses of {name} in {}", self.ns),
                    errno: Errno::ETIMEDOUT,
                    ext_ack: Some(format!("addresses still tentative after {:?}", timeout)),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    // ---- routes ----

    pub fn add_route(&mut self, route: &RouteSpec) -> Result<()> {
        let mut msg = route_message(route);
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope =
            RouteScope::from(
                route
                    .scope
                    .unwrap_or(if route.gateway.is_some() { 0 } else { 253 }),
            );
        let res = self.sock.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "",
        );
        res.map_err(|e| {
            let what = self.describe_route(route);
            retitle(e, format!("adding route {what} in {}", self.ns))
        })
    }

    pub fn del_route(&mut self, route: &RouteSpec) -> Result<()> {
        let mut msg = route_message(route);
        // NOWHERE matches any scope on delete, as iproute2 does.
        msg.header.scope = route
            .scope
            .map(RouteScope::from)
            .unwrap_or(RouteScope::NoWhere);
        let res = self.sock.ack(RouteNetlinkMessage::DelRoute(msg), 0, "");
        res.map_err(|e| {
            let what = self.describe_route(route);
            retitle(e, format!("deleting route {what} in {}", self.ns))
        })
    }

    /// Routes of the main table for one family (None = both).
    pub fn routes(&mut self, v6: Option<bool>) -> Result<Vec<RouteInfo>> {
        let mut req = RouteMessage::default();
        req.header.address_family = match v6 {
            None => AddressFamily::Unspec,
            Some(false) => AddressFamily::Inet,
            Some(true) => AddressFamily::Inet6,
        };
        let op = format!("listing routes in {}", self.ns);
        let replies = self.sock.dump(RouteNetlinkMessage::GetRoute(req), &op)?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) if r.header.kind == RouteType::Unicast => {
                    crate::route::parse_route(r)
                }
                _ => None,
            })
            .filter(|r| r.table == MAIN_TABLE)
            .collect())
    }

    /// The link of the IPv4 default route (or IPv6 when no v4 one), as the CNI reference picks `master`.
    pub fn default_route_link(&mut self) -> Result<Option<u32>> {
        for v6 in [false, true] {
            let best = self
                .routes(Some(v6))?
                .into_iter()
                .filter(|r| r.dst.prefix_len() == 0 && r.oif.is_some())
                .min_by_key(|r| r.metric.unwrap_or(0));
            if let Some(r) = best {
                return Ok(r.oif);
            }
        }
        Ok(None)
    }
}

/// Replace the (empty) op of a kernel error with one built after the fact,
/// so lookups for the message only happen on failure.
fn retitle(e: Error, op: String) -> Error {
    match e {
        Error::Kernel { errno, ext_ack, .. } => Error::Kernel { op, errno, ext_ack },
        Error::Io { source, op: old } => Error::Io {
            op: format!("{op}{old}"),
            source,
        },
        Error::Protocol { detail, .. } => Error::Protocol { op, detail },
        Error::NotFound { .. } => Error::NotFound { op },
        other => other,
    }
}

fn list_macs(macs: &[MacAddr]) -> String {
    macs.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn addr_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

fn route_message(route: &RouteSpec) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let table = route.table.unwrap_or(MAIN_TABLE);
    msg.header.address_family = family_of(route.dst.addr());
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.attributes.push(RouteAttribute::Table(table));
    if route.dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                route.dst.network(),
            )));
    }
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(src) = route.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(m) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    msg
}

/// IFLA_AF_SPEC, and within it AF_INET / IFLA_INET_CONF, from linux/if_link.h.
const IFLA_AF_SPEC: u16 = 26;
const IFLA_INET_CONF: u16 = 1;
/// Index of `arp_notify` in the IPv4 devconf (linux/ip.h, IPV4_DEVCONF_ARP_NOTIFY).
const IPV4_DEVCONF_ARP_NOTIFY: u16 = 22;

/// `IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { id: value } } }`: the set form the kernel
/// takes (nested id/value pairs). netlink-packet-route only models the dump form (a flat
/// array of every value), which would overwrite the whole devconf.
fn inet_devconf_attr(id: u16, value: u32) -> LinkAttribute {
    fn nest(kind: u16, inner: DefaultNla) -> DefaultNla {
        let mut buf = vec![0u8; inner.buffer_len()];
        inner.emit(&mut buf);
        DefaultNla::new(kind, buf)
    }
    let conf = nest(
        IFLA_INET_CONF,
        DefaultNla::new(id, value.to_ne_bytes().to_vec()),
    );
    let inet = nest(u16::from(u8::from(AddressFamily::Inet)), conf);
    LinkAttribute::Other(nest(IFLA_AF_SPEC, inet))
}
