//! Put the lease time on the leased address (RTM_NEWADDR + NLM_F_REPLACE with
//! IFA_CACHEINFO), so `ip addr` shows `valid_lft` counting down to the lease's end,
//! as dhclient/systemd-networkd do. Only an address already on the link is touched.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, CacheInfo};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::DhcpError;

fn nl_err(op: &str, e: impl std::fmt::Display) -> DhcpError {
    DhcpError::Daemon(format!("{op}: {e}"))
}

/// Set valid/preferred lifetime of `addr` on `index` to `secs` (in the calling thread's
/// namespace). `Ok(false)` when the address is not on the link.
pub fn refresh(index: u32, addr: Ipv4Net, secs: u32) -> Result<bool, DhcpError> {
    let present = macvnet_netlink::Handle::current()
        .and_then(|mut h| h.addrs(Some(index)))
        .map_err(|e| nl_err("listing addresses", e))?
        .iter()
        .any(|a| a.addr == ipnet::IpNet::V4(addr));
    if !present {
        return Ok(false);
    }
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    let ip: Ipv4Addr = addr.addr();
    msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(ip)));
    // Without IFA_BROADCAST a replace would clear the broadcast address `ip` had set.
    if addr.prefix_len() < 31 {
        msg.attributes
            .push(AddressAttribute::Broadcast(addr.broadcast()));
    }
    let mut info = CacheInfo::default();
    info.ifa_valid = secs;
    info.ifa_preferred = secs;
    msg.attributes.push(AddressAttribute::CacheInfo(info));

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::NewAddress(msg)),
    );
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);

    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err("netlink socket", e))?;
    sock.bind_auto().map_err(|e| nl_err("netlink bind", e))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| nl_err("netlink connect", e))?;
    sock.send(&buf, 0).map_err(|e| nl_err("netlink send", e))?;
    let mut rx = vec![0u8; 8192];
    let n = sock
        .recv(&mut &mut rx[..], 0)
        .map_err(|e| nl_err("netlink recv", e))?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rx.get(..n).unwrap_or(&[]))
        .map_err(|e| nl_err("netlink decode", e))?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => {
            Err(nl_err("replacing address lifetime", e.to_io()))
        }
        _ => Ok(true),
    }
}
