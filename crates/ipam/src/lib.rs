//! IPAM implementations: host-local (store byte-compatible with the reference
//! containernetworking/plugins host-local) and static.
//!
//! Entry points take the parsed request pieces (config bytes from stdin, container
//! id, ifname, raw `CNI_ARGS`) and return a [`CniResult`]; the plugin binaries
//! print it in the config's `cniVersion`. Errors are per-module enums with the
//! reference's messages; `From<…> for CniError` picks the codes.

mod gojson;
pub mod host_local;
pub mod plugin;
pub mod static_ipam;
pub mod types;

pub use host_local::{HostLocalError, StatusError};
pub use plugin::{HostLocalPlugin, StaticPlugin};
pub use static_ipam::StaticError;
pub use types::{CniResult, Dns, IpConfig, Route};
