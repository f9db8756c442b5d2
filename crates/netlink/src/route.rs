//! Routes (implemented on [`crate::Handle`]).

use std::net::IpAddr;

use ipnet::IpNet;

/// A route to add or delete. Default routes have dst 0.0.0.0/0 or ::/0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output interface ifindex.
    pub oif: Option<u32>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    /// None = main table.
    pub table: Option<u32>,
    /// None: link scope when no gateway, universe otherwise.
    pub scope: Option<u8>,
}

impl RouteSpec {
    pub fn via(dst: IpNet, gateway: IpAddr) -> Self {
        RouteSpec {
            dst,
            gateway: Some(gateway),
            oif: None,
            src: None,
            metric: None,
            table: None,
            scope: None,
        }
    }
    pub fn dev(dst: IpNet, oif: u32) -> Self {
        RouteSpec {
            dst,
            gateway: None,
            oif: Some(oif),
            src: None,
            metric: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteInfo {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    pub table: u32,
    pub scope: u8,
    /// RTPROT_*: 2 kernel (connected), 3 boot (user), 4 static...
    pub protocol: u8,
}

fn route_ip(a: &netlink_packet_route::route::RouteAddress) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteAddress;
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Decode an RTM_NEWROUTE reply; None for families other than v4/v6.
pub(crate) fn parse_route(msg: &netlink_packet_route::route::RouteMessage) -> Option<RouteInfo> {
    use netlink_packet_route::route::RouteAttribute;
    use netlink_packet_route::AddressFamily;
    let unspecified: IpAddr = match msg.header.address_family {
        AddressFamily::Inet => std::net::Ipv4Addr::UNSPECIFIED.into(),
        AddressFamily::Inet6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        _ => return None,
    };
    let mut dst = None;
    let mut info = RouteInfo {
        dst: IpNet::new(unspecified, 0).ok()?,
        gateway: None,
        oif: None,
        src: None,
        metric: None,
        table: u32::from(msg.header.table),
        scope: u8::from(msg.header.scope),
        protocol: u8::from(msg.header.protocol),
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_ip(a),
            RouteAttribute::Gateway(a) => info.gateway = route_ip(a),
            RouteAttribute::PrefSource(a) => info.src = route_ip(a),
            RouteAttribute::Oif(i) => info.oif = Some(*i),
            RouteAttribute::Priority(p) => info.metric = Some(*p),
            RouteAttribute::Table(t) => info.table = *t,
            _ => {}
        }
    }
    info.dst = IpNet::new(
        dst.unwrap_or(unspecified),
        msg.header.destination_prefix_length,
    )
    .ok()?;
    Some(info)
}
