//! The CNI protocol (spec 1.1.0): types, versions, errors, skel, delegation.
//!
//! Knows nothing of macvlan or netlink; the plugins build on it.

pub mod args;
pub mod delegate;
pub mod error;
pub mod skel;
pub mod types;
pub mod validate;
pub mod version;

pub use args::CniArgs;
pub use delegate::Delegate;
pub use skel::{run, run_with, Command, Env, Plugin, Request};

pub use error::CniError;
pub use types::{CniResult, Dns, GcAttachment, Interface, IpConfig, IpamConf, NetConf, Route};
