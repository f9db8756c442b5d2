//! The CNI protocol (spec 1.1.0): types, versions, errors, skel, delegation.
//!
//! Knows nothing of macvlan or netlink; the plugins build on it.

pub mod error;
pub mod types;
pub mod version;

pub use error::CniError;
pub use types::{CniResult, Dns, GcAttachment, Interface, IpConfig, IpamConf, NetConf, Route};
