//! The CNI protocol (spec 1.1.0): types, versions, errors, skel, delegation.
//!
//! Knows nothing of macvlan or netlink; the plugins build on it.
//!
//! - [`types`]: [`NetConf`] (stdin config) and [`CniResult`], the 1.1.0-shaped result that
//!   converts to and from every version 0.1.0 … 1.1.0.
//! - [`error`]: [`CniError`] `{code, msg, details}` and the spec's codes.
//! - [`skel`]: [`Plugin`] + [`run`]: env/stdin → [`Request`] → stdout, Go skel rules.
//! - [`delegate`]: run an IPAM plugin found on `CNI_PATH`.
//! - [`args`], [`validate`], [`version`].
//!
//! ```no_run
//! use macvnet_cni::{run, CniError, CniResult, Plugin, Request};
//!
//! struct MyPlugin;
//! impl Plugin for MyPlugin {
//!     fn add(&self, req: &Request) -> Result<CniResult, CniError> {
//!         let ipam = req.config.ipam_type().ok_or_else(|| CniError::invalid_config("ipam missing"))?;
//!         let result = req.delegate().add(ipam, &req.stdin)?;
//!         Ok(result) // printed in the config's cniVersion by the skel
//!     }
//!     fn del(&self, req: &Request) -> Result<(), CniError> {
//!         match req.config.ipam_type() {
//!             Some(ipam) => req.delegate().del(ipam, &req.stdin),
//!             None => Ok(()),
//!         }
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     run(&MyPlugin, "CNI my-plugin v0.1")
//! }
//! ```

pub mod args;
pub mod delegate;
pub mod error;
pub mod failpoints;
pub mod skel;
pub mod types;
pub mod validate;
pub mod version;

pub use args::CniArgs;
pub use delegate::Delegate;
pub use skel::{run, run_with, Command, Env, Plugin, Request};

pub use error::CniError;
pub use types::{CniResult, Dns, GcAttachment, Interface, IpConfig, IpamConf, NetConf, Route};
