//! Finding every network namespace on the host and resolving netnsids between them.
//!
//! A macvlan child moved out of its parent's namespace reports its parent as
//! (IFLA_LINK_NETNSID, IFLA_LINK): an ifindex in a namespace known only by an id
//! local to the child's namespace. RTM_GETNSID with NETNSA_FD asks a namespace
//! which id it gives another one, which lets us match the two.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use macvnet_netlink as nl;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::nsid::{NsidAttribute, NsidHeader, NsidMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nl::{Handle, NetnsRef};

/// How long one RTM_GETNSID may take before we give up on it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("opening a netlink socket in namespace {ns}: {source}")]
    Socket { ns: String, source: std::io::Error },
    #[error("entering namespace {ns}: {source}")]
    Enter { ns: String, source: nl::Error },
    #[error("asking namespace {ns} for a netnsid: {source}")]
    Query { ns: String, source: std::io::Error },
    #[error("asking namespace {ns} for a netnsid: bad reply: {detail}")]
    Reply { ns: String, detail: String },
}

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

/// A NETLINK_ROUTE socket living in one namespace, for RTM_GETNSID questions.
pub struct NsidAsker {
    sock: Socket,
    label: String,
    seq: u32,
}

impl NsidAsker {
    pub fn open(ns: &NetnsRef, label: &str) -> Result<Self, InventoryError> {
        let made = nl::netns::run_in(ns, || Socket::new(NETLINK_ROUTE)).map_err(|source| {
            InventoryError::Enter {
                ns: label.to_string(),
                source,
            }
        })?;
        let mut sock = made.map_err(|source| InventoryError::Socket {
            ns: label.to_string(),
            source,
        })?;
        let sock_err = |source| InventoryError::Socket {
            ns: label.to_string(),
            source,
        };
        sock.bind_auto().map_err(sock_err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(sock_err)?;
        let tv = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(
            &sock.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &tv,
        )
        .map_err(|e| sock_err(std::io::Error::from(e)))?;
        Ok(NsidAsker {
            sock,
            label: label.to_string(),
            seq: 0,
        })
    }

    /// The id this socket's namespace gives `target`; None when it has assigned none.
    pub fn nsid_of(&mut self, target: BorrowedFd<'_>) -> Result<Option<i32>, InventoryError> {
        let fd = u32::try_from(target.as_raw_fd()).map_err(|_| InventoryError::Reply {
            ns: self.label.clone(),
            detail: "negative fd".into(),
        })?;
        self.seq = self.seq.wrapping_add(1);
        let mut req = NsidMessage::default();
        req.header = NsidHeader {
            family: AddressFamily::Unspec,
        };
        req.attributes = vec![NsidAttribute::Fd(fd)];
        let mut msg = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(req));
        msg.header.flags = NLM_F_REQUEST;
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        let qerr = |source| InventoryError::Query {
            ns: self.label.clone(),
            source,
        };
        self.sock.send(&buf, 0).map_err(qerr)?;

        // Skip stale replies (other sequence numbers); bounded by the receive timeout and a count.
        for _ in 0..16 {
            let mut rbuf = vec![0u8; 8192];
            let n = self.sock.recv(&mut &mut rbuf[..], 0).map_err(qerr)?;
            let data = rbuf.get(..n).unwrap_or_default();
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data).map_err(|e| {
                InventoryError::Reply {
                    ns: self.label.clone(),
                    detail: e.to_string(),
                }
            })?;
            if reply.header.sequence_number != self.seq {
                continue;
            }
            return match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    let id = m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) => Some(*id),
                        _ => None,
                    });
                    // -1 is NETNSA_NSID_NOT_ASSIGNED.
                    Ok(id.filter(|id| *id >= 0))
                }
                NetlinkPayload::Error(e) => Err(InventoryError::Query {
                    ns: self.label.clone(),
                    source: e
                        .code
                        .map(|c| std::io::Error::from_raw_os_error(-c.get()))
                        .unwrap_or_else(|| std::io::Error::other("unexpected ACK")),
                }),
                other => Err(InventoryError::Reply {
                    ns: self.label.clone(),
                    detail: format!("unexpected {other:?}"),
                }),
            };
        }
        Err(InventoryError::Reply {
            ns: self.label.clone(),
            detail: "no reply with our sequence number".into(),
        })
    }
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
        let mut asker = match NsidAsker::open(&src.ns, &src.label) {
            Ok(a) => a,
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
