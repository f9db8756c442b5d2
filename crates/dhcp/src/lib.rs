//! DHCP IPAM for CNI, compatible with containernetworking/plugins' `dhcp` at the config,
//! socket-path, client-ID and lease-behaviour level, with one addition: leases are
//! persisted, so a restarted daemon (even after SIGKILL) keeps renewing them.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod lease;
pub mod lifetime;
pub mod plugin;
pub mod proto;
pub mod store;

pub use error::DhcpError;
pub use plugin::DhcpPlugin;
