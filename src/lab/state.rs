//! The state file of a lab that is (partly) up: which physical namespaces it created.
//!
//! Written before each creation step, so a crash mid-`up` still leaves a complete list of
//! what may exist. Namespaces own every link of a lab (nothing is created in the root
//! namespace), so deleting them is the whole tear-down.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LabError;

/// Default directory of state files; `MACVNET_STATE_DIR` overrides it (tests use their own).
pub const STATE_DIR: &str = "/run/macvnet/labs";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    /// Topology file used for `up`.
    pub file: String,
    /// pid of the `macvnet` that ran `up` (it is part of every physical name).
    pub pid: u32,
    /// Physical namespaces, in creation order, each recorded just before it is created.
    pub namespaces: Vec<NsState>,
    /// True once `up` finished every step.
    pub complete: bool,
    /// Daemons `up` started (dnsmasq), each recorded right after spawning; `down` kills them.
    #[serde(default)]
    pub daemons: Vec<DaemonState>,
    /// DHCP leases of `address = "dhcp"` children; `check` reads their addresses here.
    #[serde(default)]
    pub leases: Vec<LeaseState>,
    /// The network config `up` runs the `cluster` IPAM plugin with (node filled in per call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterState>,
    /// Attachments of `address = "cluster"` children, each recorded before its ADD runs, so
    /// `down` DELs even one whose ADD was interrupted.
    #[serde(default)]
    pub allocations: Vec<AllocState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// The `cluster` plugin binary.
    pub plugin: String,
    pub conf: serde_json::Value,
    /// Physical namespace etcd runs in (where `down` reads what is left).
    pub etcd_netns: String,
    /// Per-host dataDir parent (under the state dir), removed by `down`.
    pub data_dir: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocState {
    /// Logical namespace and link name of the child.
    pub netns: String,
    pub child: String,
    /// Logical host namespace the plugin runs in; the node name.
    pub host: String,
    pub container_id: String,
    /// None until the ADD answered.
    pub address: Option<ipnet::IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: i32,
    /// Physical namespace it runs in.
    pub netns: String,
    /// Its lease file (dnsmasq): also how `down` recognises the process before killing it.
    #[serde(default)]
    pub leasefile: String,
    /// Its data directory (etcd), the mark `down` recognises it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadir: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseState {
    /// Logical namespace and link name of the child.
    pub netns: String,
    pub child: String,
    pub address: ipnet::IpNet,
    pub server: std::net::Ipv4Addr,
    pub client_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NsState {
    pub logical: String,
    pub physical: String,
}

impl LabState {
    /// Physical name of a logical namespace.
    pub fn physical(&self, logical: &str) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|n| n.logical == logical)
            .map(|n| n.physical.as_str())
    }

    /// The topology with each DHCP or cluster child's address filled in.
    pub fn with_leases(&self, t: &super::topo::Topology) -> super::topo::Topology {
        let mut t = t.clone();
        for c in t.children.iter_mut().filter(|c| c.dhcp) {
            if let Some(l) = self
                .leases
                .iter()
                .find(|l| l.netns == c.netns && l.child == c.name)
            {
                c.address = Some(l.address);
            }
        }
        for c in t.children.iter_mut().filter(|c| c.cluster) {
            if let Some(a) = self
                .allocations
                .iter()
                .find(|a| a.netns == c.netns && a.child == c.name)
            {
                c.address = a.address;
            }
        }
        t
    }
}

pub fn state_dir() -> PathBuf {
    std::env::var_os("MACVNET_STATE_DIR").map_or_else(|| PathBuf::from(STATE_DIR), PathBuf::from)
}

pub fn state_path(lab: &str) -> PathBuf {
    state_dir().join(format!("{lab}.json"))
}

fn err(path: &Path, op: &'static str, detail: impl ToString) -> LabError {
    LabError::State {
        path: path.display().to_string(),
        op,
        detail: detail.to_string(),
    }
}

/// Read the state of `lab`; `None` when there is none.
pub fn load(lab: &str) -> Result<Option<LabState>, LabError> {
    let path = state_path(lab);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| err(&path, "decoding", e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(&path, "reading", e)),
    }
}

/// Write atomically (temp file + rename) so a crash never leaves half a file.
pub fn save(st: &LabState) -> Result<(), LabError> {
    let path = state_path(&st.name);
    let dir = state_dir();
    std::fs::create_dir_all(&dir).map_err(|e| err(&dir, "creating directory", e))?;
    let tmp = dir.join(format!(".{}.json.{}", st.name, std::process::id()));
    let text = serde_json::to_string_pretty(st).map_err(|e| err(&path, "encoding", e))?;
    std::fs::write(&tmp, text).map_err(|e| err(&tmp, "writing", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(&path, "renaming into place", e))
}

pub fn remove(lab: &str) -> Result<(), LabError> {
    let path = state_path(lab);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(&path, "removing", e)),
    }
}
