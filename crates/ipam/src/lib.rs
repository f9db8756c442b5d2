//! IPAM implementations: host-local (store byte-compatible with the reference
//! containernetworking/plugins host-local) and static.
//!
//! Entry points take the parsed request pieces (config bytes from stdin, container
//! id, ifname, raw `CNI_ARGS`) and return a result in CNI 1.0 shape; the plugin
//! binaries convert it to the config's `cniVersion` and print it.

pub mod args;
pub mod host_local;
pub mod names;
pub mod static_ipam;
pub mod types;

pub use host_local::HostLocalError;
pub use static_ipam::StaticError;
pub use types::{Dns, IpConfig, IpamResult, Route};
