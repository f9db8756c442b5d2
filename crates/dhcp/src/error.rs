//! The crate's error type: one variant per step, with the context needed to act on it.

use std::path::PathBuf;
use std::time::Duration;

use macvnet_cni::CniError;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("invalid dhcp IPAM config: {0}")]
    Config(String),
    #[error("can not parse option {option:?}: {reason}")]
    Option { option: String, reason: String },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: macvnet_netlink::Error,
    },
    #[error("no DHCP {stage} on {ifname} within {waited:?}")]
    NoAnswer {
        stage: &'static str,
        ifname: String,
        waited: Duration,
    },
    #[error("DHCP server {server} refused the request for {addr} (NAK)")]
    Nak {
        server: std::net::Ipv4Addr,
        addr: std::net::Ipv4Addr,
    },
    #[error("DHCP option Subnet Mask not found in DHCPACK from {server}")]
    NoMask { server: std::net::Ipv4Addr },
    #[error("DHCP message: {0}")]
    Codec(String),
    #[error("error dialing DHCP daemon at {path}: {reason}")]
    Dial { path: PathBuf, reason: String },
    #[error("DHCP daemon at {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
    /// The daemon does not know our protocol (a reference daemon): use Go net/rpc.
    #[error("DHCP daemon at {path} speaks only Go net/rpc")]
    ForeignDaemon { path: PathBuf },
    #[error("lease file {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("network namespace {0} is gone")]
    NetnsGone(String),
    #[error("interface {ifname} not found in {netns}")]
    LinkGone { ifname: String, netns: String },
    #[error("no lease for {0}")]
    NoLease(String),
    #[error("daemon: {0}")]
    Daemon(String),
    /// An error the daemon sent back, passed through with its CNI code.
    #[error("{0}")]
    Remote(CniError),
}

impl DhcpError {
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        DhcpError::Io {
            op: op.into(),
            source,
        }
    }

    pub fn netlink(op: impl Into<String>, source: macvnet_netlink::Error) -> Self {
        DhcpError::Netlink {
            op: op.into(),
            source,
        }
    }

    /// The CNI error code this failure maps to (spec §5 well-known codes).
    pub fn to_cni(&self) -> CniError {
        match self {
            DhcpError::Remote(e) => e.clone(),
            DhcpError::Config(_) | DhcpError::Option { .. } => {
                CniError::invalid_config(self.to_string())
            }
            // No server answered (or it said no): the caller may retry later (spec code 11).
            DhcpError::NoAnswer { .. } | DhcpError::Nak { .. } => {
                CniError::try_again_later(self.to_string())
            }
            DhcpError::Dial { .. } => CniError::try_again_later(self.to_string()),
            DhcpError::NetnsGone(_) => CniError::invalid_netns(self.to_string()),
            DhcpError::NoLease(_) => CniError::unknown_container(self.to_string()),
            DhcpError::Io { .. } | DhcpError::Store { .. } => CniError::io(self.to_string()),
            _ => CniError::internal(self.to_string()),
        }
    }
}

impl From<DhcpError> for CniError {
    fn from(e: DhcpError) -> Self {
        e.to_cni()
    }
}
