//! Cluster-wide IPAM: one address pool in etcd shared by every host of an L2 segment (the
//! macvlan case, where host-local on each host would hand out the same address twice).
//!
//! - [`etcd`]: a small synchronous etcd v3 client over the JSON gateway, endpoint failover.
//! - [`config`]: the `ipam` object (`range`, `rangeStart`/`rangeEnd`, `exclude`, `gateway`,
//!   `routes`, `etcd`, `node`, `blocks`).
//! - [`pool`]: address arithmetic and the key layout.
//! - [`store`]: [`Ipam`]: ADD/DEL/CHECK/GC by etcd transactions, per-node blocks.
//! - [`hint`]: the node-local block hint file.
//! - [`plugin`]: [`ClusterPlugin`] for `macvnet_cni::run`.

pub mod config;
pub mod etcd;
pub mod hint;
pub mod plugin;
pub mod pool;
pub mod store;

pub use config::{Config, ConfigError};
pub use plugin::ClusterPlugin;
pub use store::{Attachment, Error, GcReport, Ipam, Record, Usage};
