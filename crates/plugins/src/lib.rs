//! Shared pieces of the CNI plugins: the macvlan plugin, the host-local and static
//! IPAM plugins (wrapping `macvnet-ipam`), and the steps the macvtap plugin will reuse.

pub mod attach;
pub mod error;
pub mod guard;
pub mod ipam;
pub mod macvlan;
pub mod macvtap;
pub mod marker;

pub use error::PluginError;
