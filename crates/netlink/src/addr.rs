//! Addresses (implemented on [`crate::Handle`]).

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddrInfo {
    pub index: u32,
    /// Address with prefix length, e.g. 198.18.0.11/24.
    pub addr: IpNet,
    /// RT_SCOPE_*: 0 universe (global), 253 link, 254 host.
    pub scope: u8,
    /// IFA_F_TENTATIVE: IPv6 DAD still running.
    pub tentative: bool,
    /// IFA_F_DADFAILED.
    pub dad_failed: bool,
}

/// Decode an RTM_NEWADDR reply; None for families other than v4/v6 or bad prefixes.
pub(crate) fn parse_addr(msg: &netlink_packet_route::address::AddressMessage) -> Option<AddrInfo> {
    use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
    let mut local = None;
    let mut address = None;
    let mut flags = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Flags(f) => flags = Some(*f),
            _ => {}
        }
    }
    // IFA_LOCAL is our own address on point-to-point links; IFA_ADDRESS otherwise.
    let ip = local.or(address)?;
    let addr = IpNet::new(ip, msg.header.prefix_len).ok()?;
    let (tentative, dad_failed) = match flags {
        Some(f) => (
            f.contains(AddressFlags::Tentative),
            f.contains(AddressFlags::Dadfailed),
        ),
        None => (
            msg.header.flags.contains(AddressHeaderFlags::Tentative),
            msg.header.flags.contains(AddressHeaderFlags::Dadfailed),
        ),
    };
    Some(AddrInfo {
        index: msg.header.index,
        addr,
        scope: u8::from(msg.header.scope),
        tentative,
        dad_failed,
    })
}
