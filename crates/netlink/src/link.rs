//! Link types and operations (implemented on [`crate::Handle`]).

use std::os::fd::BorrowedFd;

use crate::{MacAddr, MacvlanInfo};

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
}
