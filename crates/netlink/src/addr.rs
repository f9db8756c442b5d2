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
