//! Lab: topology files, bring-up, reachability matrix, tear-down.
//!
//! A lab file (TOML, see examples/README.md) names logical namespaces, veth uplinks (a gateway
//! end and a parent NIC) and macvlan/macvtap children. `up` creates namespaces named
//! `mvlab-<pid>-<logical>`, recording each in a state file before creating it, so `down`
//! removes exactly what exists even after a crash. `check` pings every ordered pair of
//! endpoints and compares with [`expect`].

pub mod build;
pub mod check;
pub mod expect;
pub mod picture;
pub mod state;
pub mod topo;

use macvnet_netlink as nl;

/// Everything that can go wrong in a lab, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("reading {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {msg}")]
    Parse {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{file}:{line}: {msg}")]
    Invalid {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("lab {name}: {step}")]
    Netlink {
        name: String,
        step: String,
        #[source]
        source: nl::Error,
    },
    #[error("lab state {path}: {op}: {detail}")]
    State {
        path: String,
        op: &'static str,
        detail: String,
    },
    #[error("lab {name} is already up (namespaces {namespaces}); run `macvnet lab down` first")]
    AlreadyUp { name: String, namespaces: String },
    #[error("lab {name} is not up (no state file {path}); run `macvnet lab up` first")]
    NotUp { name: String, path: String },
    #[error("lab {name}: {step}")]
    Dhcp {
        name: String,
        step: String,
        #[source]
        source: Box<macvnet_dhcp::DhcpError>,
    },
    #[error("lab {name}: dnsmasq: {detail}")]
    Dnsmasq { name: String, detail: String },
    #[error("lab {name}: etcd: {detail}")]
    Etcd { name: String, detail: String },
    #[error("lab {name}: cluster IPAM: {detail}")]
    Cluster { name: String, detail: String },
    #[error("lab {name} is only partly up (an earlier `up` failed); run `macvnet lab down` and try again")]
    Partial { name: String },
}
