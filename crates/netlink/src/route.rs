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
        RouteSpec { dst, gateway: Some(gateway), oif: None, src: None, metric: None, table: None, scope: None }
    }
    pub fn dev(dst: IpNet, oif: u32) -> Self {
        RouteSpec { dst, gateway: None, oif: Some(oif), src: None, metric: None, table: None, scope: None }
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
