//! Finding every network namespace on the host and resolving netnsids between them.
//!
//! A macvlan child moved out of its parent's namespace reports its parent as
//! (IFLA_LINK_NETNSID, IFLA_LINK): an ifindex in a namespace known only by an id
//! local to the child's namespace. RTM_GETNSID with NETNSA_FD asks a namespace
//! which id it gives another one, which lets us match the two.

use std::collections::HashMap;
use std::os::fd::AsFd;

use macvnet_netlink as nl;
use nl::{Handle, NetnsRef};

/// One network namespace found on the host.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub ns: NetnsRef,
    /// (dev, inode) of the nsfs file: the namespace's identity.
    pub id: (u64, u64),
    /// "root", a /run/netns name, "current" or "pid N (comm)".
    pub label: String,
}

/// Every namespace: root (pid 1), the caller's, each /run/netns name, each process's;
/// the same namespace seen twice is kept once, under its first (most readable) label.
pub fn namespaces() -> Vec<Namespace> {
    let mut candidates: Vec<(NetnsRef, String)> = vec![
        (NetnsRef::Pid(1), "root".to_string()),
        (NetnsRef::Current, "current".to_string()),
    ];
    match nl::netns::list() {
        Ok(names) => candidates.extend(names.into_iter().map(|n| (NetnsRef::Named(n.clone()), n))),
        Err(e) => tracing::warn!("listing /run/netns: {e}"),
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        let mut pids: Vec<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            candidates.push((NetnsRef::Pid(pid), format!("pid {pid} ({})", comm.trim())));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (ns, label) in candidates {
        let id = match ns.id() {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!("skipping namespace {label}: {e}");
                continue;
            }
        };
        if seen.insert(id) {
            out.push(Namespace { ns, id, label });
        }
    }
    out
}

/// Resolves (namespace, nsid) pairs to namespaces, asking each namespace at most once per target.
pub struct NsidResolver<'a> {
    all: &'a [Namespace],
    /// Per asking namespace (index into `all`): nsid → index of the namespace it names.
    maps: HashMap<usize, HashMap<i32, usize>>,
}

impl<'a> NsidResolver<'a> {
    pub fn new(all: &'a [Namespace]) -> Self {
        NsidResolver {
            all,
            maps: HashMap::new(),
        }
    }

    /// Which namespace `from` calls `nsid`.
    pub fn resolve(&mut self, from: usize, nsid: i32) -> Option<usize> {
        if !self.maps.contains_key(&from) {
            let map = self.build(from);
            self.maps.insert(from, map);
        }
        self.maps.get(&from).and_then(|m| m.get(&nsid)).copied()
    }

    fn build(&self, from: usize) -> HashMap<i32, usize> {
        let mut map = HashMap::new();
        let Some(src) = self.all.get(from) else {
            return map;
        };
        let mut asker = match Handle::open(&src.ns) {
            Ok(h) => h,
            Err(e) => {
                // A process may exit while we look: not worth a warning.
                tracing::debug!("{e}");
                return map;
            }
        };
        for (i, target) in self.all.iter().enumerate() {
            if i == from {
                continue;
            }
            let fd = match target.ns.open() {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::debug!("opening {}: {e}", target.label);
                    continue;
                }
            };
            match asker.nsid_of(fd.as_fd()) {
                Ok(Some(id)) => {
                    map.entry(id).or_insert(i);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("{e}"),
            }
        }
        map
    }
}

/// Parent of a link whose parent lives in another namespace: (namespace label, parent name).
pub fn resolve_foreign(from: &NetnsRef, nsid: i32, parent_index: u32) -> Option<(String, String)> {
    let mut all = namespaces();
    let from_id = from.id().ok()?;
    let from_idx = match all.iter().position(|n| n.id == from_id) {
        Some(i) => i,
        None => {
            all.push(Namespace {
                ns: from.clone(),
                id: from_id,
                label: from.to_string(),
            });
            all.len() - 1
        }
    };
    let mut r = NsidResolver::new(&all);
    let target = all.get(r.resolve(from_idx, nsid)?)?;
    let mut h = Handle::open(&target.ns).ok()?;
    let parent = h.link_by_index(parent_index).ok()?;
    Some((target.label.clone(), parent.name))
}
