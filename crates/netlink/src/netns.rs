//! Network namespaces: references, `ip netns`-compatible create/delete, and
//! running code or commands inside one without moving the caller's thread.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::Result;

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A network namespace, named the ways users name one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetnsRef {
    /// The namespace of the calling thread (`/proc/thread-self/ns/net`).
    Current,
    /// A named namespace under /run/netns (as `ip netns add NAME`).
    Named(String),
    /// Any nsfs path (a bind mount, `/proc/PID/ns/net`, CNI_NETNS).
    Path(PathBuf),
    /// The namespace of a process.
    Pid(u32),
}

impl NetnsRef {
    /// The filesystem path that names this namespace.
    pub fn path(&self) -> PathBuf {
        todo!()
    }
    /// Open the namespace file (O_RDONLY|O_CLOEXEC); fails if it is not an nsfs net namespace.
    pub fn open(&self) -> Result<OwnedFd> {
        todo!()
    }
    /// (dev, inode) of the namespace, for de-duplication.
    pub fn id(&self) -> Result<(u64, u64)> {
        todo!()
    }
    /// Human label: "root", a name, a path or "pid 123".
    pub fn label(&self) -> String {
        todo!()
    }
}

impl std::fmt::Display for NetnsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// Create a named namespace exactly like `ip netns add NAME`: a fresh netns
/// bind-mounted on /run/netns/NAME (with /run/netns made a shared mount point).
/// Fails with EEXIST-kind error if the name is taken.
pub fn add(name: &str) -> Result<NetnsRef> {
    let _ = name;
    todo!()
}

/// Delete a named namespace like `ip netns del NAME` (umount + unlink). Missing is an error
/// unless `ignore_missing`.
pub fn del(name: &str, ignore_missing: bool) -> Result<()> {
    let _ = (name, ignore_missing);
    todo!()
}

/// Names under /run/netns, sorted.
pub fn list() -> Result<Vec<String>> {
    todo!()
}

/// Run `f` on a fresh thread that has entered `ns`; the thread ends afterwards,
/// so no thread is ever left in a foreign namespace.
pub fn run_in<T, F>(ns: &NetnsRef, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let _ = (ns, f);
    todo!()
}

/// A `std::process::Command` that will enter `ns` (setns in pre_exec) before exec.
pub fn command_in(ns: &NetnsRef, program: &str) -> Result<std::process::Command> {
    let _ = (ns, program);
    todo!()
}
