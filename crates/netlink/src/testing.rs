//! Shared test guards: namespaces named `mvt-<pid>-<n>-<tag>` that delete
//! themselves (and with them every link inside) on drop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::{netns, Handle, LinkChange, LinkInfo, MacvlanSpec, Mode, NetnsRef, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Prints "SKIP <test>: <reason>" to stderr and returns false when not root.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root (network namespaces and links)");
    false
}

/// Prints "SKIP <test>: <why>" to stderr and returns false when `program arg` cannot be run
/// (the program is missing).
pub fn require_program(test: &str, program: &str, arg: &str, why: &str) -> bool {
    if std::process::Command::new(program)
        .arg(arg)
        .output()
        .is_ok()
    {
        return true;
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// A named test namespace, deleted on drop. Its loopback is up.
#[derive(Debug)]
pub struct TestNs {
    pub name: String,
    pub ns: NetnsRef,
}

impl TestNs {
    /// Creates `mvt-<pid>-<n>-<tag>` and brings `lo` up.
    pub fn new(tag: &str) -> Result<TestNs> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("mvt-{}-{n}-{tag}", std::process::id());
        let ns = netns::add(&name)?;
        let guard = TestNs { name, ns };
        let mut h = guard.handle()?;
        let lo = h.link_by_name("lo")?;
        set_up(&mut h, lo.index, true)?;
        Ok(guard)
    }

    pub fn handle(&self) -> Result<Handle> {
        Handle::open(&self.ns)
    }

    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        netns::run_in(&self.ns, f)
    }
}

/// Sets link `index` administratively up or down, nothing else.
pub fn set_up(h: &mut Handle, index: u32, up: bool) -> Result<()> {
    h.set_link(
        index,
        &LinkChange {
            up: Some(up),
            ..Default::default()
        },
    )
}

/// Creates the macvlan `name` in `mode` on `parent` of `host` directly inside `into`
/// (IFLA_NET_NS_FD), `tweak` adjusting the spec first, and makes sure it is up there.
/// Returns the link as `into` reports it.
pub fn add_macvlan_in(
    host: &TestNs,
    parent: &str,
    into: &TestNs,
    name: &str,
    mode: Mode,
    tweak: impl FnOnce(&mut MacvlanSpec),
) -> Result<LinkInfo> {
    let mut h = host.handle()?;
    let parent = h.link_by_name(parent)?.index;
    let mut spec = MacvlanSpec {
        name: name.into(),
        parent,
        mode: Some(mode),
        netns: Some(Arc::new(into.ns.open()?)),
        up: true,
        ..Default::default()
    };
    tweak(&mut spec);
    h.add_macvlan(&spec)?;
    let mut c = into.handle()?;
    let info = c.link_by_name(name)?;
    if info.up {
        return Ok(info);
    }
    set_up(&mut c, info.index, true)?;
    c.link_by_name(name)
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = netns::del(&self.name, true) {
            eprintln!("cleanup: deleting test namespace {}: {e}", self.name);
        }
    }
}

/// A namespace pair wired by veth: `lan` holds "up0" (peer), `host` holds "eth0" (the parent to put
/// macvlans on), both up. Addresses none. Returns guards (host, lan).
pub fn uplink_pair(tag: &str) -> Result<(TestNs, TestNs)> {
    let host = TestNs::new(tag)?;
    let lan = TestNs::new(&format!("{tag}-lan"))?;
    let lan_fd = lan.ns.open()?;
    let mut h = host.handle()?;
    h.add_veth("eth0", "up0", Some(std::os::fd::AsFd::as_fd(&lan_fd)))?;
    let eth0 = h.link_by_name("eth0")?;
    set_up(&mut h, eth0.index, true)?;
    let mut l = lan.handle()?;
    let up0 = l.link_by_name("up0")?;
    set_up(&mut l, up0.index, true)?;
    Ok((host, lan))
}
