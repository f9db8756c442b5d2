//! The plugins' error type and the single place that maps errors to CNI codes.
//!
//! Codes chosen where the reference plugin answers 999 for everything:
//! - bad JSON field types: 6; invalid values in the config (mode, mtu, mac, master
//!   that does not exist, no default route to pick a master from): 7;
//! - bad `CNI_ARGS` (unknown key, bad `MAC=`): 4;
//! - `CNI_NETNS` that cannot be opened on ADD/CHECK: 3 (the container is gone);
//! - IPAM plugin errors (exec'd or in-process, where macvnet-ipam picks the codes): passed through;
//! - kernel refusals and other runtime failures: 999, with the reference's message text.

use macvnet_cni::error::code;
use macvnet_cni::CniError;
use macvnet_netlink as nl;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A field of the network config has the wrong JSON type.
    #[error("failed to load netconf: {0}")]
    Decode(String),
    /// A field of the network config has a value we cannot use.
    #[error("{0}")]
    InvalidConfig(String),
    /// `CNI_ARGS` holds a value we cannot use.
    #[error("{0}")]
    InvalidArgs(String),
    /// No `master` given and no default route to take it from.
    #[error("no default route interface found")]
    NoDefaultRoute,
    /// The master link does not exist where it was looked up.
    #[error("failed to lookup master {master:?}: {reason}")]
    MasterNotFound { master: String, reason: String },
    /// `CNI_NETNS` cannot be opened.
    #[error("failed to open netns {path:?}: {source}")]
    Netns {
        path: String,
        #[source]
        source: nl::Error,
    },
    /// `CNI_IFNAME` is taken in the container namespace.
    #[error("failed to rename macvlan to {ifname:?}: file exists")]
    IfnameExists { ifname: String },
    /// A netlink step failed; `step` is the reference's wording ("failed to create macvlan").
    #[error("{step}: {source}")]
    Netlink {
        step: String,
        #[source]
        source: nl::Error,
    },
    /// IPAM succeeded without giving an address.
    #[error("IPAM plugin returned missing IP config")]
    IpamNoIp,
    /// CHECK found the container's state differs from prevResult (reference messages).
    #[error("{0}")]
    Check(String),
    /// CHECK without prevResult.
    #[error("required prevResult missing")]
    NoPrevResult,
    /// An error that already is a CNI error (skel helpers, delegated IPAM): passed through.
    #[error("{0}")]
    Cni(CniError),
}

impl PluginError {
    pub fn netlink(step: impl Into<String>, source: nl::Error) -> Self {
        PluginError::Netlink {
            step: step.into(),
            source,
        }
    }
}

impl From<CniError> for PluginError {
    fn from(e: CniError) -> Self {
        PluginError::Cni(e)
    }
}

impl From<PluginError> for CniError {
    fn from(e: PluginError) -> Self {
        let msg = e.to_string();
        let code = match &e {
            PluginError::Decode(_) => code::DECODING_FAILURE,
            PluginError::InvalidConfig(_)
            | PluginError::NoDefaultRoute
            | PluginError::MasterNotFound { .. }
            | PluginError::NoPrevResult => code::INVALID_NETWORK_CONFIG,
            PluginError::InvalidArgs(_) => code::INVALID_ENV,
            PluginError::Netns { .. } => code::UNKNOWN_CONTAINER,
            PluginError::IfnameExists { .. }
            | PluginError::Netlink { .. }
            | PluginError::IpamNoIp
            | PluginError::Check(_) => code::INTERNAL,
            PluginError::Cni(c) => return c.clone(),
        };
        CniError::new(code, msg, "")
    }
}
