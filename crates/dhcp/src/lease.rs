//! A lease as the daemon keeps it (in memory and on disk) and the CNI result it yields.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::{IpNet, Ipv4Net};
use macvnet_cni::{CniResult, IpConfig, Route};
use serde::{Deserialize, Serialize};

use crate::config::LeaseOptions;

/// Lease time assumed when the ACK carries none (reference default, one hour).
pub const DEFAULT_LEASE_SECS: u32 = 3600;

/// What an ACK granted, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub address: Ipv4Net,
    pub server_id: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    /// Option 121 routes if any (RFC 3442: then 33 and the router are ignored), else
    /// option 33 routes plus a default route via the router (reference order).
    pub routes: Vec<LeaseRoute>,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRoute {
    pub dst: Ipv4Net,
    pub gw: Option<Ipv4Addr>,
    /// Option 121 route without a router: on-link (RT_SCOPE_LINK).
    #[serde(default)]
    pub link_scope: bool,
}

/// One maintained lease. Times are Unix seconds so they survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub client_id: String,
    pub container_id: String,
    pub network: String,
    pub ifname: String,
    /// CNI_NETNS as the plugin sent it (absolute; without the daemon's host prefix).
    pub netns: String,
    /// (st_dev, st_ino) of the namespace at acquisition, so a reused path is noticed.
    pub netns_id: (u64, u64),
    pub mac: String,
    pub grant: Grant,
    pub bound_at: u64,
    pub renew_at: u64,
    pub rebind_at: u64,
    pub expires_at: u64,
    pub options: LeaseOptions,
    #[serde(default)]
    pub priority: u32,
    #[serde(default)]
    pub broadcast: bool,
    /// How the lease was last extended: "renew", "rebind", "reboot", "acquire" ("" = never).
    #[serde(default)]
    pub last_step: String,
    /// The interface's parent in the daemon's namespace, if it is there: a DHCPRELEASE
    /// can still go out through it once the interface itself is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<Uplink>,
}

/// The parent (lower device) of a lease's interface, seen from the daemon's namespace.
/// Recorded only when the kernel says the parent lives there (IFLA_LINK_NETNSID equals
/// the daemon namespace's id), so nothing is ever sent on an unrelated link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink {
    pub index: u32,
    pub name: String,
}

/// An address asked for in a DHCPREQUEST: the server may have ACKed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requested {
    pub address: Ipv4Addr,
    pub server_id: Ipv4Addr,
    pub xid: u32,
}

/// What an acquisition in flight may have obtained from the server. Persisted (fsync'd)
/// before every DHCPREQUEST and removed once the lease is saved, so a daemon killed
/// between the server's ACK and saving the lease finds it on restart and releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// The lease being acquired: who (client ID, container, interface, MAC, options,
    /// uplink), not yet bound.
    pub lease: Lease,
    /// Every REQUEST sent, oldest first (a NAK or timeout starts over with another offer).
    pub requested: Vec<Requested>,
    pub created_at: u64,
}

impl Intent {
    /// Record a REQUEST about to be sent; false when it adds nothing new.
    pub fn add(&mut self, r: Requested) -> bool {
        let known = self
            .requested
            .iter()
            .any(|q| q.address == r.address && q.server_id == r.server_id);
        if !known {
            self.requested.push(r);
        }
        !known
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Lease {
    /// Take a fresh grant: T1/T2/expiry counted from `now`.
    pub fn bind(&mut self, grant: Grant, now: u64) {
        self.bound_at = now;
        self.renew_at = now + u64::from(grant.t1_secs);
        self.rebind_at = now + u64::from(grant.t2_secs);
        self.expires_at = now + u64::from(grant.lease_secs);
        self.grant = grant;
    }

    pub fn address(&self) -> Ipv4Addr {
        self.grant.address.addr()
    }

    /// Seconds of validity left (0 when expired).
    pub fn remaining(&self, now: u64) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(now))
    }

    /// The result the reference returns: one IP with the router as gateway, and the
    /// routes decoded from the ACK (see [`Grant::routes`]).
    pub fn result(&self) -> CniResult {
        let g = &self.grant;
        let mut routes: Vec<Route> = g
            .routes
            .iter()
            .map(|r| {
                let mut route = Route::new(IpNet::V4(r.dst), r.gw.map(IpAddr::V4));
                if r.link_scope {
                    route.scope = Some(253);
                }
                route
            })
            .collect();
        if self.priority != 0 {
            for r in &mut routes {
                r.priority = Some(self.priority);
            }
        }
        CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: IpNet::V4(g.address),
                gateway: g.gateway.map(IpAddr::V4),
            }],
            routes,
            ..CniResult::default()
        }
    }
}
