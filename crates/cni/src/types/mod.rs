//! Spec types: network configuration and results for every version.

mod config;
mod result;
mod serde_util;

pub use config::{GcAttachment, IpamConf, NetConf};
pub(crate) use result::pretty;
pub use result::{CniResult, Dns, Interface, IpConfig, ResultFamily, Route};
