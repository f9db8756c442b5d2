//! Link types and operations (implemented on [`crate::Handle`]).

use std::os::fd::BorrowedFd;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoMacVtap, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkLayerType, LinkMessage, MacVlanFlags, MacVlanMacAddressMode, MacVlanMode,
};

use crate::{MacAddr, MacvlanInfo, MacvlanSpec, Mode, SourceMacOp};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Macvlan,
    Macvtap,
    Veth,
    Bridge,
    Loopback,
    /// Any other IFLA_INFO_KIND string, or "device" when the kernel sent none.
    Other(String),
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub lower_up: bool,
    /// IFF_PROMISC as set by the user.
    pub promisc: bool,
    /// Promiscuity counter (IFLA_PROMISCUITY): >0 when anything (a passthru child, a bridge) turned it on.
    pub promiscuity: u32,
    pub txqlen: u32,
    /// Raw IFF_* flags.
    pub flags: u32,
    /// IFLA_LINK: parent ifindex (macvlan, veth peer), in the namespace given by `link_netnsid`.
    pub parent_index: Option<u32>,
    /// IFLA_LINK_NETNSID: the parent/peer lives in another namespace (id relative to this one).
    pub link_netnsid: Option<i32>,
    /// IFLA_MASTER: bridge this link is a port of.
    pub controller: Option<u32>,
    /// Set for macvlan and macvtap.
    pub macvlan: Option<MacvlanInfo>,
    /// Operational state string ("up", "down", "unknown", ...).
    pub oper_state: String,
}

impl LinkInfo {
    /// `/dev/tapN` for a macvtap (N is the ifindex).
    pub fn tap_device(&self) -> Option<String> {
        (self.kind == LinkKind::Macvtap).then(|| format!("/dev/tap{}", self.index))
    }
}

/// A change to a live link; `None` fields are left alone. Applied in one RTM_NEWLINK/SETLINK
/// where the kernel allows it.
#[derive(Debug, Default)]
pub struct LinkChange<'a> {
    pub up: Option<bool>,
    pub promisc: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    pub name: Option<String>,
    pub txqlen: Option<u32>,
    /// Move into another namespace (IFLA_NET_NS_FD).
    pub netns: Option<BorrowedFd<'a>>,
    /// Make a bridge port of this bridge ifindex (Some(0) = release).
    pub controller: Option<u32>,
    /// IPv4 `arp_notify` of the link, set by netlink (IFLA_AF_SPEC) rather than
    /// /proc/sys, whose path walk grows with the number of namespaces on the node.
    pub arp_notify: Option<bool>,
}

/// Fold macvlan or macvtap info attributes (same layout, two Rust types) into [`MacvlanInfo`].
macro_rules! fold_macvlan {
    ($items:expr, $T:ident, $tap:expr) => {{
        let mut info = MacvlanInfo {
            tap: $tap,
            mode: Mode::Vepa,
            nopromisc: false,
            nodst: false,
            bcqueuelen: None,
            bcqueuelen_used: None,
            bccutoff: None,
            source_macs: Vec::new(),
        };
        for item in $items {
            match item {
                $T::Mode(m) => match Mode::from_kernel(u32::from(*m)) {
                    Some(m) => info.mode = m,
                    None => tracing::warn!("unknown macvlan mode {}", u32::from(*m)),
                },
                $T::Flags(f) => {
                    info.nopromisc = f.contains(MacVlanFlags::NoPromisc);
                    info.nodst = f.contains(MacVlanFlags::NoDst);
                }
                $T::BcQueueLen(v) => info.bcqueuelen = Some(*v),
                $T::BcQueueLenUsed(v) => info.bcqueuelen_used = Some(*v),
                $T::BcCutoff(v) => info.bccutoff = Some(*v),
                $T::MacAddrData(list) => {
                    for a in list {
                        if let $T::MacAddr(m) = a {
                            info.source_macs.push(MacAddr(*m));
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }};
}

/// The IFLA_INFO_DATA items for creating a macvlan/macvtap from `spec`.
macro_rules! build_macvlan {
    ($spec:expr, $T:ident) => {{
        let spec: &MacvlanSpec = $spec;
        let mut v = Vec::new();
        if let Some(mode) = spec.mode {
            v.push($T::Mode(MacVlanMode::from(mode.to_kernel())));
        }
        let mut flags = MacVlanFlags::empty();
        if spec.nopromisc {
            flags |= MacVlanFlags::NoPromisc;
        }
        if spec.nodst {
            flags |= MacVlanFlags::NoDst;
        }
        if !flags.is_empty() {
            v.push($T::Flags(flags));
        }
        if let Some(q) = spec.bcqueuelen {
            v.push($T::BcQueueLen(q));
        }
        if let Some(c) = spec.bccutoff {
            v.push($T::BcCutoff(c));
        }
        if !spec.source_macs.is_empty() {
            v.push($T::MacAddrMode(MacVlanMacAddressMode::Set));
            v.push($T::MacAddrData(
                spec.source_macs.iter().map(|m| $T::MacAddr(m.0)).collect(),
            ));
        }
        v
    }};
}

/// The IFLA_INFO_DATA items for one source-MAC list change.
macro_rules! build_source_op {
    ($op:expr, $macs:expr, $T:ident) => {{
        let macs: &[MacAddr] = $macs;
        let mode = match $op {
            SourceMacOp::Add => MacVlanMacAddressMode::Add,
            SourceMacOp::Del => MacVlanMacAddressMode::Del,
            SourceMacOp::Flush => MacVlanMacAddressMode::Flush,
            SourceMacOp::Set => MacVlanMacAddressMode::Set,
        };
        let mut v = vec![$T::MacAddrMode(mode)];
        match $op {
            SourceMacOp::Add | SourceMacOp::Del => {
                if let Some(m) = macs.first() {
                    v.push($T::MacAddr(m.0));
                }
            }
            SourceMacOp::Set => v.push($T::MacAddrData(
                macs.iter().map(|m| $T::MacAddr(m.0)).collect(),
            )),
            SourceMacOp::Flush => {}
        }
        v
    }};
}

/// IFLA_LINKINFO for a macvlan/macvtap child.
pub(crate) fn macvlan_linkinfo(spec: &MacvlanSpec) -> Vec<NlLinkInfo> {
    if spec.tap {
        vec![
            NlLinkInfo::Kind(InfoKind::MacVtap),
            NlLinkInfo::Data(InfoData::MacVtap(build_macvlan!(spec, InfoMacVtap))),
        ]
    } else {
        vec![
            NlLinkInfo::Kind(InfoKind::MacVlan),
            NlLinkInfo::Data(InfoData::MacVlan(build_macvlan!(spec, InfoMacVlan))),
        ]
    }
}

/// IFLA_LINKINFO for one source-MAC change (`macs` holds at most one MAC for add/del).
pub(crate) fn source_op_linkinfo(tap: bool, op: SourceMacOp, macs: &[MacAddr]) -> Vec<NlLinkInfo> {
    if tap {
        vec![
            NlLinkInfo::Kind(InfoKind::MacVtap),
            NlLinkInfo::Data(InfoData::MacVtap(build_source_op!(op, macs, InfoMacVtap))),
        ]
    } else {
        vec![
            NlLinkInfo::Kind(InfoKind::MacVlan),
            NlLinkInfo::Data(InfoData::MacVlan(build_source_op!(op, macs, InfoMacVlan))),
        ]
    }
}

/// Decode an RTM_NEWLINK reply.
pub(crate) fn parse_link(msg: &LinkMessage) -> LinkInfo {
    let flags = msg.header.flags;
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        kind: LinkKind::Other("device".to_string()),
        mac: None,
        mtu: 0,
        up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
        promisc: flags.contains(LinkFlags::Promisc),
        promiscuity: 0,
        txqlen: 0,
        flags: flags.bits(),
        parent_index: None,
        link_netnsid: None,
        controller: None,
        macvlan: None,
        oper_state: "unknown".to_string(),
    };
    if msg.header.link_layer_type == LinkLayerType::Loopback {
        info.kind = LinkKind::Loopback;
    }
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Address(a) => info.mac = MacAddr::from_slice(a),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::TxQueueLen(q) => info.txqlen = *q,
            LinkAttribute::Promiscuity(p) => info.promiscuity = *p,
            LinkAttribute::Link(l) => info.parent_index = Some(*l),
            LinkAttribute::LinkNetNsId(id) => info.link_netnsid = Some(*id),
            LinkAttribute::Controller(c) => info.controller = Some(*c),
            LinkAttribute::OperState(s) => info.oper_state = s.to_string().to_lowercase(),
            LinkAttribute::LinkInfo(items) => {
                for item in items {
                    match item {
                        NlLinkInfo::Kind(k) => info.kind = kind_of(k),
                        NlLinkInfo::Data(InfoData::MacVlan(v)) => {
                            info.macvlan = Some(fold_macvlan!(v, InfoMacVlan, false))
                        }
                        NlLinkInfo::Data(InfoData::MacVtap(v)) => {
                            info.macvlan = Some(fold_macvlan!(v, InfoMacVtap, true))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // A child with no IFLA_INFO_DATA (not expected) still reports as macvlan with defaults.
    if info.macvlan.is_none() && matches!(info.kind, LinkKind::Macvlan | LinkKind::Macvtap) {
        let empty: Vec<InfoMacVlan> = Vec::new();
        info.macvlan = Some(fold_macvlan!(
            &empty,
            InfoMacVlan,
            info.kind == LinkKind::Macvtap
        ));
    }
    info
}

fn kind_of(k: &InfoKind) -> LinkKind {
    match k {
        InfoKind::MacVlan => LinkKind::Macvlan,
        InfoKind::MacVtap => LinkKind::Macvtap,
        InfoKind::Veth => LinkKind::Veth,
        InfoKind::Bridge => LinkKind::Bridge,
        InfoKind::Other(s) => LinkKind::Other(s.clone()),
        other => LinkKind::Other(other.to_string()),
    }
}
