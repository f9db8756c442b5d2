//! Synchronous rtnetlink core for macvlan/macvtap networking.
//!
//! One [`Handle`] is one `NETLINK_ROUTE` socket bound to one network namespace.
//! The socket is opened on a short-lived thread that enters the target
//! namespace, so the caller's thread never changes namespace.
//! This crate knows nothing of CNI, TOML or the command line.

pub mod addr;
pub mod error;
pub mod handle;
pub mod icmp;
pub mod link;
pub mod mac;
pub mod macvlan;
pub mod netns;
pub mod route;
mod socket;
pub mod sysctl;
pub mod tap;
pub mod testing;

pub use addr::AddrInfo;
pub use error::{Error, Result};
pub use handle::Handle;
pub use link::{LinkChange, LinkInfo, LinkKind};
pub use mac::MacAddr;
pub use macvlan::{MacvlanInfo, MacvlanSpec, Mode, SourceMacOp};
pub use netns::NetnsRef;
pub use route::{RouteInfo, RouteSpec};
