//! The lease daemon: answers the plugin on a unix socket, keeps one maintenance thread
//! per lease (renew at T1, rebind at T2, re-acquire at expiry), and persists every lease
//! so that a restarted daemon — even after SIGKILL — resumes renewing all live ones, and
//! releases what an acquisition it was killed in may have left at the server (intents).

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use macvnet_cni::{CniError, NetConf as CniNetConf};
use macvnet_netlink::{netns, NetnsRef};

use crate::client::{self, Extend, Identity, Iface, Timing};
use crate::config::{client_id, prepare_options, NetConf};
use crate::lease::{unix_now, Intent, Lease, Uplink};
use crate::proto::{self, Call, CmdArgs, Reply};
use crate::store::Store;
use crate::DhcpError;

/// Most connections served at once; more are refused (each may wait an acquisition).
const MAX_CONNECTIONS: usize = 512;
/// Maintenance threads look at their namespace at least this often.
const LIVENESS_PERIOD: Duration = Duration::from_secs(30);
/// How long after binding (or a restart) the daemon watches for the runtime putting the
/// leased address on the link, to give it the lease's lifetime.
const ADOPT_WINDOW: Duration = Duration::from_secs(30);
/// The version CNI results travel in between daemon and plugin.
const WIRE_VERSION: &str = "1.1.0";

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `-socketpath` (default /run/cni/dhcp.sock), without the host prefix.
    pub socket_path: PathBuf,
    /// `-pidfile`: must be absolute.
    pub pidfile: Option<PathBuf>,
    /// `-hostprefix`: prepended to the socket path and to every netns path.
    pub host_prefix: String,
    /// `-statedir`: where leases are persisted.
    pub state_dir: PathBuf,
    pub timing: Timing,
    /// Put the lease time on the leased address when it is on the link (`-lifetimes`).
    pub address_lifetimes: bool,
}

#[derive(Debug, Default)]
struct Ctl {
    stop: bool,
    wake: bool,
    renew_requested: u64,
    renew_done: u64,
    /// The step a forced renewal should take (None: whatever is due, else renew).
    renew_step: Option<Step>,
    last_renew: Option<Result<(), String>>,
}

/// A maintenance step (RFC 2131 §4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// From T1: unicast REQUEST to the server that granted the lease.
    Renew,
    /// From T2: broadcast REQUEST to any server.
    Rebind,
    /// At expiry: DISCOVER again, asking for the old address.
    Reacquire,
}

/// What [`Daemon::extend`] achieved.
#[derive(Debug, Clone)]
struct Extended {
    grant: crate::lease::Grant,
    /// "renew", "rebind", "reboot" (INIT-REBOOT) or "acquire".
    method: &'static str,
    /// The lease time is now on the address on the link.
    lifetime_set: bool,
}

/// The step due at `now`, or `Err(when)` the next one is due. `retry_at` overrides T1
/// after a failure.
pub fn plan(lease: &Lease, now: u64, retry_at: Option<u64>) -> Result<Step, u64> {
    let due = retry_at.unwrap_or(lease.renew_at);
    if now < due {
        return Err(due);
    }
    Ok(if now >= lease.expires_at {
        Step::Reacquire
    } else if now >= lease.rebind_at {
        Step::Rebind
    } else {
        Step::Renew
    })
}

/// When to try again after `step` failed at `now` (RFC 2131 §4.4.5: half the time left
/// to the next boundary; at least 2 s here). Renewal retries never sleep past T2, and a
/// renewal that ran into T2 is followed by a rebind at once.
pub fn retry_after_failure(lease: &Lease, step: Step, now: u64) -> u64 {
    if now < lease.rebind_at {
        (now + ((lease.rebind_at - now) / 2).max(2)).min(lease.rebind_at)
    } else if step == Step::Renew {
        now
    } else {
        now + (lease.expires_at.saturating_sub(now) / 2).max(2)
    }
}

#[derive(Debug)]
struct Slot {
    lease: Mutex<Lease>,
    ctl: Mutex<Ctl>,
    cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
pub struct Daemon {
    cfg: DaemonConfig,
    store: Store,
    leases: Mutex<HashMap<String, Arc<Slot>>>,
    op_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder leaves consistent data here (plain fields), so go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What became of a DHCPRELEASE.
enum Released {
    /// Sent, from the interface or from the uplink.
    Sent(&'static str),
    /// Nothing left to send it from (namespace or link gone, no uplink known).
    Unreachable(String),
    /// Sending failed; worth another try later.
    Failed(DhcpError),
}

/// Why a lease can no longer be maintained.
enum Liveness {
    Alive,
    Gone(String),
    /// Could not tell (netlink hiccup): try again later.
    Unknown(String),
}

impl Daemon {
    pub fn new(cfg: DaemonConfig) -> Result<Arc<Daemon>, DhcpError> {
        let store = Store::open(&cfg.state_dir)?;
        Ok(Arc::new(Daemon {
            cfg,
            store,
            leases: Mutex::new(HashMap::new()),
            op_locks: Mutex::new(HashMap::new()),
        }))
    }

    fn netns_ref(&self, netns: &str) -> NetnsRef {
        NetnsRef::Path(PathBuf::from(format!("{}{}", self.cfg.host_prefix, netns)))
    }

    /// Serializes operations on one client ID (ADD racing DEL of the same attachment).
    fn op_lock(&self, cid: &str) -> Arc<Mutex<()>> {
        lock(&self.op_locks)
            .entry(cid.to_string())
            .or_default()
            .clone()
    }

    fn slot(&self, cid: &str) -> Option<Arc<Slot>> {
        lock(&self.leases).get(cid).cloned()
    }

    /// Run `f` on a thread inside the lease's namespace, with its interface looked up.
    fn in_lease_ns<T: Send>(
        &self,
        lease: &Lease,
        f: impl FnOnce(&Iface) -> Result<T, DhcpError> + Send,
    ) -> Result<T, DhcpError> {
        self.in_lease_ns_up(lease, false, f)
    }

    /// [`Daemon::in_lease_ns`], setting the interface up first when `bring_up`.
    fn in_lease_ns_up<T: Send>(
        &self,
        lease: &Lease,
        bring_up: bool,
        f: impl FnOnce(&Iface) -> Result<T, DhcpError> + Send,
    ) -> Result<T, DhcpError> {
        let ns = self.netns_ref(&lease.netns);
        match ns.id() {
            Ok(id) if id == lease.netns_id => {}
            _ => return Err(DhcpError::NetnsGone(lease.netns.clone())),
        }
        let ifname = lease.ifname.clone();
        let netns_label = lease.netns.clone();
        netns::run_in(&ns, move || {
            let iface = client::iface(&ifname, bring_up).map_err(|e| match e {
                DhcpError::Netlink { ref source, .. } if source.is_not_found() => {
                    DhcpError::LinkGone {
                        ifname: ifname.clone(),
                        netns: netns_label.clone(),
                    }
                }
                other => other,
            })?;
            f(&iface)
        })
        .map_err(|e| {
            if e.is_not_found() {
                DhcpError::NetnsGone(lease.netns.clone())
            } else {
                DhcpError::netlink(format!("entering {}", lease.netns), e)
            }
        })?
    }

    fn liveness(&self, lease: &Lease) -> Liveness {
        match self.in_lease_ns(lease, |_| Ok(())) {
            Ok(()) => Liveness::Alive,
            Err(e @ (DhcpError::NetnsGone(_) | DhcpError::LinkGone { .. })) => {
                Liveness::Gone(e.to_string())
            }
            Err(e) => Liveness::Unknown(e.to_string()),
        }
    }

    /// Load persisted leases: live ones get a maintenance thread, the others are dropped.
    /// Intents left by a daemon killed mid-acquisition are released first: whatever the
    /// server may have ACKed and no lease file covers.
    pub fn restore(self: &Arc<Self>) -> Result<usize, DhcpError> {
        let (leases, bad) = self.store.load_all()?;
        for (path, why) in bad {
            tracing::warn!(path = %path.display(), "dropping unreadable lease file: {why}");
            let _ = std::fs::remove_file(&path);
        }
        let (intents, bad) = self.store.load_intents()?;
        for (path, why) in bad {
            tracing::warn!(path = %path.display(), "dropping unreadable intent file: {why}");
            let _ = std::fs::remove_file(&path);
        }
        for intent in intents {
            let cid = &intent.lease.client_id;
            let saved = leases
                .iter()
                .find(|l| &l.client_id == cid)
                .map(Lease::address);
            tracing::info!(client_id = %cid, "an acquisition was interrupted");
            self.release_intent(&intent, saved);
        }
        let mut resumed = 0;
        for lease in leases {
            match self.liveness(&lease) {
                Liveness::Gone(why) => {
                    tracing::info!(client_id = %lease.client_id, "dropping lease: {why}");
                    self.release_gone(&lease);
                    if let Err(e) = self.store.remove(&lease.client_id) {
                        tracing::warn!("{e}");
                    }
                }
                Liveness::Alive | Liveness::Unknown(_) => {
                    tracing::info!(
                        client_id = %lease.client_id,
                        address = %lease.grant.address,
                        expires_in = lease.expires_at.saturating_sub(unix_now()),
                        "resuming lease"
                    );
                    self.start(lease);
                    resumed += 1;
                }
            }
        }
        Ok(resumed)
    }

    fn start(self: &Arc<Self>, lease: Lease) -> Arc<Slot> {
        let cid = lease.client_id.clone();
        let slot = Arc::new(Slot {
            lease: Mutex::new(lease),
            ctl: Mutex::new(Ctl::default()),
            cv: Condvar::new(),
            thread: Mutex::new(None),
        });
        let (d, s) = (Arc::clone(self), Arc::clone(&slot));
        let handle = std::thread::Builder::new()
            .name("dhcp-lease".into())
            .spawn(move || d.maintain(&s));
        match handle {
            Ok(h) => *lock(&slot.thread) = Some(h),
            Err(e) => tracing::error!(client_id = %cid, "cannot start lease thread: {e}"),
        }
        lock(&self.leases).insert(cid, Arc::clone(&slot));
        slot
    }

    /// Stop the maintenance thread of `slot`, which releases the lease, and forget it.
    fn stop_and_release(&self, cid: &str, slot: &Arc<Slot>) {
        {
            let mut c = lock(&slot.ctl);
            c.stop = true;
            slot.cv.notify_all();
        }
        if let Some(h) = lock(&slot.thread).take() {
            let _ = h.join();
        }
        lock(&self.leases).remove(cid);
        if let Err(e) = self.store.remove(cid) {
            tracing::warn!("{e}");
        }
    }

    /// Drop a lease whose namespace or link is gone (no DHCPRELEASE possible).
    fn drop_lease(&self, cid: &str) {
        lock(&self.leases).remove(cid);
        if let Err(e) = self.store.remove(cid) {
            tracing::warn!("{e}");
        }
    }

    /// The interface's MAC, and its parent when the kernel says that lives in the
    /// daemon's own namespace (the link's IFLA_LINK_NETNSID is the id the interface's
    /// namespace gives ours).
    fn probe(&self, lease: &Lease) -> Result<(String, Option<Uplink>), DhcpError> {
        let home = match NetnsRef::Current.open() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!("opening the daemon's namespace: {e}");
                None
            }
        };
        let home = home.as_ref();
        let (mac, parent) = self.in_lease_ns(lease, move |iface| {
            let mac = macvnet_netlink::MacAddr(iface.mac).to_string();
            let parent = (|| {
                let mut h = macvnet_netlink::Handle::current().ok()?;
                let link = h.link_by_index(iface.index).ok()?;
                let (index, id) = (link.parent_index?, link.link_netnsid?);
                let ours = h.nsid_of(home?.as_fd()).ok()??;
                (ours == id).then_some(index)
            })();
            Ok((mac, parent))
        })?;
        let uplink = parent.and_then(|index| {
            let mut h = macvnet_netlink::Handle::current().ok()?;
            let link = h.link_by_index(index).ok()?;
            Some(Uplink {
                index,
                name: link.name,
            })
        });
        Ok((mac, uplink))
    }

    /// DHCPRELEASE for `addr` of `lease`'s client: from its interface, or, once that or
    /// its namespace is gone, through the uplink recorded for it.
    fn release_addr(
        &self,
        lease: &Lease,
        addr: std::net::Ipv4Addr,
        server: std::net::Ipv4Addr,
    ) -> Released {
        let r = self.in_lease_ns(lease, |iface| {
            client::release(iface, Self::identity(lease), addr, server)
        });
        let gone = match r {
            Ok(()) => return Released::Sent("interface"),
            Err(e @ (DhcpError::NetnsGone(_) | DhcpError::LinkGone { .. })) => e,
            Err(e) => return Released::Failed(e),
        };
        let Some(up) = &lease.uplink else {
            return Released::Unreachable(format!("{gone}, no uplink in the daemon's namespace"));
        };
        // Only the very link recorded: an index reused by another link is not it.
        let same = macvnet_netlink::Handle::current()
            .and_then(|mut h| h.link_by_index(up.index))
            .is_ok_and(|l| l.name == up.name);
        if !same {
            return Released::Unreachable(format!("{gone}, uplink {} gone too", up.name));
        }
        let mac = match lease.mac.parse::<macvnet_netlink::MacAddr>() {
            Ok(m) => m.0,
            Err(e) => return Released::Unreachable(format!("{gone}, MAC {:?}: {e}", lease.mac)),
        };
        match client::release_via(&up.name, mac, Self::identity(lease), addr, server) {
            Ok(()) => Released::Sent("uplink"),
            Err(e) => Released::Failed(e),
        }
    }

    /// Release a lease whose namespace or link is gone, if it has not expired (the
    /// container went away without DEL; its address would sit unused at the server).
    fn release_gone(&self, lease: &Lease) {
        if lease.expires_at <= unix_now() {
            return;
        }
        match self.release_addr(lease, lease.address(), lease.grant.server_id) {
            Released::Sent(via) => {
                tracing::info!(client_id = %lease.client_id, address = %lease.grant.address, via, "released lease")
            }
            Released::Unreachable(why) => {
                tracing::info!(client_id = %lease.client_id, "cannot release: {why}")
            }
            Released::Failed(e) => {
                tracing::warn!(client_id = %lease.client_id, "failed to release DHCP lease: {e}")
            }
        }
    }

    /// Release every address `intent` requested except `keep` (a saved lease's), then
    /// delete the intent; it stays when a release failed, for DEL or GC to try again.
    /// A release costs nothing when the server never ACKed.
    fn release_intent(&self, intent: &Intent, keep: Option<std::net::Ipv4Addr>) {
        let cid = &intent.lease.client_id;
        let mut retry = false;
        for r in &intent.requested {
            if Some(r.address) == keep {
                continue;
            }
            match self.release_addr(&intent.lease, r.address, r.server_id) {
                Released::Sent(via) => tracing::info!(
                    client_id = %cid, address = %r.address, via,
                    "released what an unfinished acquisition requested"
                ),
                Released::Unreachable(why) => {
                    tracing::warn!(client_id = %cid, address = %r.address, "cannot release: {why}")
                }
                Released::Failed(e) => {
                    tracing::warn!(client_id = %cid, address = %r.address, "release failed: {e}");
                    retry = true;
                }
            }
        }
        if !retry {
            if let Err(e) = self.store.remove_intent(cid) {
                tracing::warn!("{e}");
            }
        }
    }

    fn identity<'a>(lease: &'a Lease) -> Identity<'a> {
        Identity {
            client_id: &lease.client_id,
            options: &lease.options,
        }
    }

    fn timing_for(&self, lease: &Lease) -> Timing {
        Timing {
            broadcast: lease.broadcast,
            ..self.cfg.timing
        }
    }

    /// One extension attempt on the lease's interface. Renew/rebind use ciaddr when the
    /// address is on the link; without it (no one would answer the server's ARP for
    /// ciaddr) they fall back to INIT-REBOOT. Re-acquiring asks for the old address.
    fn extend(&self, lease: &Lease, step: Step) -> Result<Extended, DhcpError> {
        let timing = self.timing_for(lease);
        let addr = lease.address();
        let server = lease.grant.server_id;
        let lifetimes = self.cfg.address_lifetimes;
        self.in_lease_ns(lease, move |iface| {
            let who = Self::identity(lease);
            let on_link = client::has_address(iface.index, addr);
            let (grant, method) = match step {
                Step::Reacquire => {
                    // One acquisition round only: a stop request must not wait minutes.
                    let short = Timing {
                        resend_timeout: timing.timeout,
                        ..timing
                    };
                    (client::acquire(iface, who, &short, Some(addr))?, "acquire")
                }
                _ if !on_link => (
                    client::extend(iface, who, &timing, Extend::Reboot, addr, server)?,
                    "reboot",
                ),
                Step::Renew => (
                    client::extend(iface, who, &timing, Extend::Renew, addr, server)?,
                    "renew",
                ),
                Step::Rebind => (
                    client::extend(iface, who, &timing, Extend::Rebind, addr, server)?,
                    "rebind",
                ),
            };
            let lifetime_set = lifetimes
                && grant.address == lease.grant.address
                && crate::lifetime::refresh(iface.index, grant.address, grant.lease_secs)
                    .unwrap_or_else(|e| {
                        tracing::warn!(ifname = %iface.name, "address lifetime: {e}");
                        false
                    });
            Ok(Extended {
                grant,
                method,
                lifetime_set,
            })
        })
    }

    /// Give the leased address the time left on the lease, once the runtime's main plugin
    /// has put it on the link. `true` when done.
    fn adopt_address(&self, lease: &Lease) -> bool {
        let left = u32::try_from(lease.remaining(unix_now()).as_secs()).unwrap_or(u32::MAX);
        let addr = lease.grant.address;
        self.in_lease_ns(lease, move |iface| {
            crate::lifetime::refresh(iface.index, addr, left)
        })
        .unwrap_or(false)
    }

    fn maintain(&self, slot: &Arc<Slot>) {
        let mut retry_at: Option<u64> = None;
        let cid = lock(&slot.lease).client_id.clone();
        // Watch for the address appearing on the link for a while after binding/restart.
        let mut adopt_until = self
            .cfg
            .address_lifetimes
            .then(|| Instant::now() + ADOPT_WINDOW);
        // Ends on stop, or when the lease is gone/lost; every wait is bounded.
        loop {
            let lease = lock(&slot.lease).clone();
            let now = unix_now();
            let due = retry_at.unwrap_or(lease.renew_at);
            let (stop, forced) = {
                let mut c = lock(&slot.ctl);
                if !c.stop && !c.wake && c.renew_requested == c.renew_done && now < due {
                    let mut wait = Duration::from_secs(due - now).min(LIVENESS_PERIOD);
                    if adopt_until.is_some() {
                        wait = wait.min(Duration::from_secs(1));
                    }
                    c = slot
                        .cv
                        .wait_timeout(c, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                c.wake = false;
                let forced = (c.renew_requested > c.renew_done).then(|| c.renew_step);
                (c.stop, forced)
            };
            if stop {
                match self.release_addr(&lease, lease.address(), lease.grant.server_id) {
                    Released::Sent(via) => {
                        tracing::info!(client_id = %cid, address = %lease.grant.address, via, "released lease")
                    }
                    Released::Unreachable(why) => {
                        tracing::warn!(client_id = %cid, "failed to release DHCP lease: {why}")
                    }
                    Released::Failed(e) => {
                        tracing::warn!(client_id = %cid, "failed to release DHCP lease: {e}")
                    }
                }
                return;
            }
            match self.liveness(&lease) {
                Liveness::Gone(why) => {
                    tracing::info!(client_id = %cid, "{why}, terminating lease maintenance");
                    self.release_gone(&lease);
                    self.drop_lease(&cid);
                    self.finish_renew(slot, Err(why));
                    return;
                }
                Liveness::Unknown(why) => {
                    tracing::debug!(client_id = %cid, "liveness unknown: {why}")
                }
                Liveness::Alive => {}
            }
            if let Some(until) = adopt_until {
                if self.adopt_address(&lease) {
                    tracing::info!(client_id = %cid, address = %lease.grant.address, "address on the link now expires with the lease");
                    adopt_until = None;
                } else if Instant::now() >= until {
                    adopt_until = None;
                }
            }
            let now = unix_now();
            let step = match (forced, plan(&lease, now, retry_at)) {
                (Some(Some(step)), _) => step,
                (Some(None), Ok(step)) => step,
                (Some(None), Err(_)) => Step::Renew,
                (None, Ok(step)) => step,
                (None, Err(_)) => continue,
            };
            let outcome = match self.extend(&lease, step) {
                Ok(ext) if ext.grant.address == lease.grant.address => {
                    let mut l = lock(&slot.lease);
                    l.bind(ext.grant, unix_now());
                    l.last_step = ext.method.to_string();
                    let saved = self.store.save(&l);
                    tracing::info!(
                        client_id = %cid, address = %l.grant.address, method = ext.method,
                        lifetime_set = ext.lifetime_set, "lease extended, expiration in {}s",
                        l.expires_at.saturating_sub(unix_now())
                    );
                    if ext.lifetime_set {
                        adopt_until = None;
                    }
                    retry_at = None;
                    saved.map_err(|e| e.to_string())
                }
                Ok(ext) => {
                    // A different address: the container's one is stale (reference: link down).
                    let why = format!(
                        "server moved {} to {}",
                        lease.grant.address, ext.grant.address
                    );
                    tracing::warn!(client_id = %cid, "{why}; bringing interface down");
                    self.lose(&lease);
                    self.finish_renew(slot, Err(why));
                    return;
                }
                Err(e) => {
                    let now = unix_now();
                    if now >= lease.expires_at && forced.is_none() {
                        tracing::warn!(client_id = %cid, "lease expired ({e}), bringing interface down");
                        self.lose(&lease);
                        self.finish_renew(slot, Err(e.to_string()));
                        return;
                    }
                    let next = retry_after_failure(&lease, step, now);
                    tracing::warn!(client_id = %cid, ?step, "extending the lease failed: {e}; next try in {}s", next.saturating_sub(now));
                    retry_at = Some(next);
                    Err(e.to_string())
                }
            };
            if forced.is_some() {
                self.finish_renew(slot, outcome);
            }
        }
    }

    fn finish_renew(&self, slot: &Slot, outcome: Result<(), String>) {
        let mut c = lock(&slot.ctl);
        c.renew_done = c.renew_requested;
        c.last_renew = Some(outcome);
        slot.cv.notify_all();
    }

    /// The lease is lost: set the link down (as the reference does) and forget it.
    fn lose(&self, lease: &Lease) {
        let r = self.in_lease_ns(lease, |iface| {
            let mut h = macvnet_netlink::Handle::current()
                .map_err(|e| DhcpError::netlink("opening netlink", e))?;
            let change = macvnet_netlink::LinkChange {
                up: Some(false),
                ..Default::default()
            };
            h.set_link(iface.index, &change)
                .map_err(|e| DhcpError::netlink(format!("setting {} down", iface.name), e))
        });
        if let Err(e) = r {
            tracing::warn!(client_id = %lease.client_id, "{e}");
        }
        self.drop_lease(&lease.client_id);
    }

    fn result_json(lease: &Lease) -> Result<serde_json::Value, DhcpError> {
        lease
            .result()
            .to_json(WIRE_VERSION)
            .map_err(DhcpError::Remote)
    }

    pub fn allocate(self: &Arc<Self>, args: &CmdArgs) -> Result<serde_json::Value, DhcpError> {
        let conf = NetConf::parse(args.stdin.as_bytes())?;
        let ipam = conf.ipam();
        let options = prepare_options(&args.args, &ipam)?;
        let cid = client_id(&args.container_id, &conf.name, &args.ifname);
        let op = self.op_lock(&cid);
        let _held = lock(&op);
        let ns = self.netns_ref(&args.netns);
        let netns_id = ns
            .id()
            .map_err(|_| DhcpError::NetnsGone(args.netns.clone()))?;
        if let Some(slot) = self.slot(&cid) {
            let l = lock(&slot.lease).clone();
            if l.netns_id == netns_id && l.ifname == args.ifname && l.expires_at > unix_now() {
                let mut c = lock(&slot.ctl);
                c.wake = true;
                slot.cv.notify_all();
                return Self::result_json(&l);
            }
            self.stop_and_release(&cid, &slot);
        }
        let mut lease = Lease {
            client_id: cid.clone(),
            container_id: args.container_id.clone(),
            network: conf.name.clone(),
            ifname: args.ifname.clone(),
            netns: args.netns.clone(),
            netns_id,
            mac: String::new(),
            grant: crate::lease::Grant {
                address: ipnet::Ipv4Net::default(),
                server_id: std::net::Ipv4Addr::UNSPECIFIED,
                gateway: None,
                routes: Vec::new(),
                lease_secs: 0,
                t1_secs: 0,
                t2_secs: 0,
            },
            bound_at: 0,
            renew_at: 0,
            rebind_at: 0,
            expires_at: 0,
            options,
            priority: ipam.priority,
            broadcast: self.cfg.timing.broadcast,
            last_step: String::new(),
            uplink: None,
        };
        tracing::info!(client_id = %cid, "acquiring lease");
        (lease.mac, lease.uplink) = self.probe(&lease)?;
        // A DEL or GC that failed to release an earlier attempt's intent: this one replaces it.
        if let Ok(Some(old)) = self.store.load_intent(&cid) {
            self.release_intent(&old, None);
        }
        let mut intent = Intent {
            lease: lease.clone(),
            requested: Vec::new(),
            created_at: unix_now(),
        };
        let timing = self.timing_for(&lease);
        let acquired = {
            let (l, intent, store) = (&lease, &mut intent, &self.store);
            self.in_lease_ns_up(l, true, move |iface| {
                // Persisted before each REQUEST: from then on the server may hold a lease.
                client::acquire_with(iface, Self::identity(l), &timing, None, &mut |r| {
                    if intent.add(r) {
                        store.save_intent(intent)?;
                    }
                    Ok(())
                })
            })
        };
        let grant = match acquired {
            Ok(g) => g,
            Err(e) => {
                if !intent.requested.is_empty() {
                    self.release_intent(&intent, None);
                }
                return Err(e);
            }
        };
        lease.bind(grant, unix_now());
        macvnet_cni::failpoint!("dhcp::daemon::after_acquire");
        if let Err(e) = self.store.save(&lease) {
            if let Released::Failed(r) =
                self.release_addr(&lease, lease.address(), lease.grant.server_id)
            {
                tracing::warn!(client_id = %cid, "release failed: {r}");
            }
            self.release_intent(&intent, Some(lease.address()));
            return Err(e);
        }
        // The lease file now covers what the intent did (restore drops an intent whose
        // address a lease file holds, should we die right here).
        if let Err(e) = self.store.remove_intent(&cid) {
            tracing::warn!("{e}");
        }
        macvnet_cni::failpoint!("dhcp::daemon::after_save");
        tracing::info!(client_id = %cid, address = %lease.grant.address, "lease acquired, expiration in {}s", lease.grant.lease_secs);
        let result = Self::result_json(&lease);
        self.start(lease);
        result
    }

    pub fn release(&self, args: &CmdArgs) -> Result<(), DhcpError> {
        let conf = NetConf::parse(args.stdin.as_bytes())?;
        let cid = client_id(&args.container_id, &conf.name, &args.ifname);
        let op = self.op_lock(&cid);
        let _held = lock(&op);
        if let Some(slot) = self.slot(&cid) {
            self.stop_and_release(&cid, &slot);
        } else {
            // An acquisition that died (or whose release failed) after a REQUEST.
            match self.store.load_intent(&cid) {
                Ok(Some(intent)) => self.release_intent(&intent, None),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("{e}");
                    self.store.remove_intent(&cid)?;
                }
            }
            self.store.remove(&cid)?;
        }
        macvnet_cni::failpoint!("dhcp::daemon::after_release");
        Ok(())
    }

    pub fn check(&self, args: &CmdArgs) -> Result<(), DhcpError> {
        let conf = NetConf::parse(args.stdin.as_bytes())?;
        let cid = client_id(&args.container_id, &conf.name, &args.ifname);
        let slot = self
            .slot(&cid)
            .ok_or_else(|| DhcpError::NoLease(cid.clone()))?;
        let l = lock(&slot.lease).clone();
        if l.expires_at <= unix_now() {
            return Err(DhcpError::NoLease(format!("{cid} (expired)")));
        }
        match self.liveness(&l) {
            Liveness::Gone(why) => Err(DhcpError::Daemon(why)),
            _ => Ok(()),
        }
    }

    pub fn gc(&self, args: &CmdArgs) -> Result<usize, DhcpError> {
        let conf = CniNetConf::parse(args.stdin.as_bytes()).map_err(DhcpError::Remote)?;
        let valid: BTreeSet<(String, String)> = conf
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let all: Vec<(String, Arc<Slot>)> = lock(&self.leases)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut n = 0;
        for (cid, slot) in all {
            let l = lock(&slot.lease).clone();
            let op = self.op_lock(&cid);
            let _held = lock(&op);
            if let Liveness::Gone(why) = self.liveness(&l) {
                tracing::info!(client_id = %cid, "GC: {why}");
                {
                    let mut c = lock(&slot.ctl);
                    c.stop = true;
                    slot.cv.notify_all();
                }
                if let Some(h) = lock(&slot.thread).take() {
                    let _ = h.join();
                }
                self.drop_lease(&cid);
                n += 1;
            } else if l.network == conf.name
                && !valid.contains(&(l.container_id.clone(), l.ifname.clone()))
            {
                tracing::info!(client_id = %cid, "GC: not a valid attachment, releasing");
                self.stop_and_release(&cid, &slot);
                n += 1;
            }
        }
        // Intents of attachments the runtime no longer has, unless being acquired now.
        let (intents, _) = self.store.load_intents()?;
        for intent in intents {
            let l = &intent.lease;
            if l.network != conf.name || valid.contains(&(l.container_id.clone(), l.ifname.clone()))
            {
                continue;
            }
            let op = self.op_lock(&l.client_id);
            let Ok(_held) = op.try_lock() else { continue };
            tracing::info!(client_id = %l.client_id, "GC: releasing an unfinished acquisition");
            self.release_intent(&intent, None);
            n += 1;
        }
        Ok(n)
    }

    /// Renew `cid` now and wait for the outcome (bounded by the exchange timeout).
    pub fn renew_now(&self, cid: &str, step: Option<Step>) -> Result<serde_json::Value, DhcpError> {
        let slot = self
            .slot(cid)
            .ok_or_else(|| DhcpError::NoLease(cid.to_string()))?;
        let deadline = Instant::now() + self.cfg.timing.timeout * 3 + Duration::from_secs(5);
        let mut c = lock(&slot.ctl);
        c.renew_requested += 1;
        c.renew_step = step;
        let want = c.renew_requested;
        slot.cv.notify_all();
        while c.renew_done < want {
            let now = Instant::now();
            if now >= deadline {
                return Err(DhcpError::Daemon(format!(
                    "renewal of {cid} did not finish in time"
                )));
            }
            c = slot
                .cv
                .wait_timeout(c, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        match c.last_renew.clone() {
            Some(Err(e)) => Err(DhcpError::Daemon(format!("renewal of {cid} failed: {e}"))),
            _ => {
                drop(c);
                let l = lock(&slot.lease).clone();
                serde_json::to_value(&l).map_err(|e| DhcpError::Daemon(e.to_string()))
            }
        }
    }

    pub fn list(&self) -> serde_json::Value {
        let mut leases: Vec<Lease> = lock(&self.leases)
            .values()
            .map(|s| lock(&s.lease).clone())
            .collect();
        leases.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        serde_json::to_value(leases).unwrap_or_default()
    }

    fn handle(self: &Arc<Self>, call: Call) -> Reply {
        let r: Result<serde_json::Value, DhcpError> = match call {
            Call::Allocate(a) => self.allocate(&a),
            Call::Release(a) => self.release(&a).map(|()| serde_json::Value::Null),
            Call::Check(a) => self.check(&a).map(|()| serde_json::Value::Null),
            Call::Gc(a) => self.gc(&a).map(|n| serde_json::json!({ "dropped": n })),
            Call::Status => Ok(serde_json::json!({ "leases": lock(&self.leases).len() })),
            Call::Renew { client_id, step } => self.renew_now(&client_id, step),
            Call::List => Ok(self.list()),
        };
        match r {
            Ok(v) => Reply::ok(v),
            Err(e) => {
                tracing::warn!("{e}");
                Reply::err(CniError::from(e))
            }
        }
    }

    fn serve_conn(self: &Arc<Self>, stream: UnixStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        match proto::accept(&stream) {
            Ok(proto::Incoming::Call(call)) => {
                let reply = self.handle(call);
                if let Err(e) = proto::send_reply(&stream, &reply) {
                    tracing::warn!("sending reply: {e}");
                }
            }
            Ok(proto::Incoming::GoRpc(reader)) => {
                let r = crate::gorpc::serve(reader, &stream, |method, args| {
                    let r = match method {
                        "DHCP.Allocate" => self.allocate(&args),
                        _ => self.release(&args).map(|()| serde_json::Value::Null),
                    };
                    r.map_err(|e| {
                        tracing::warn!("{method}: {e}");
                        e.to_string()
                    })
                });
                if let Err(e) = r {
                    tracing::debug!("Go net/rpc connection: {e}");
                }
            }
            Ok(proto::Incoming::Refused) => tracing::debug!("refused an unknown client"),
            Err(e) => tracing::debug!("bad connection: {e}"),
        }
    }

    /// Accept connections forever, one thread each.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) -> Result<(), DhcpError> {
        let active = Arc::new(AtomicUsize::new(0));
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::SeqCst);
                let _ = proto::send_reply(
                    &stream,
                    &Reply::err(CniError::try_again_later("DHCP daemon busy")),
                );
                continue;
            }
            let (d, a) = (Arc::clone(self), Arc::clone(&active));
            let spawned = std::thread::Builder::new()
                .name("dhcp-conn".into())
                .spawn(move || {
                    d.serve_conn(stream);
                    a.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                active.fetch_sub(1, Ordering::SeqCst);
                tracing::error!("cannot spawn connection thread: {e}");
            }
        }
        Ok(())
    }
}

/// The listening socket: systemd's (LISTEN_FDS=1) or a fresh one at `path`. A stale
/// socket file (left by a killed daemon) is replaced; a live one is an error.
pub fn listener(path: &Path) -> Result<UnixListener, DhcpError> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if pid_ok {
        match std::env::var("LISTEN_FDS").as_deref() {
            Ok("1") => {
                // SAFETY: systemd passes the listening socket as fd 3 (sd_listen_fds(3))
                // and nothing else in this process owns fd 3.
                return Ok(unsafe { UnixListener::from_raw_fd(3) });
            }
            Ok(n) if n != "0" => {
                return Err(DhcpError::Daemon(format!(
                    "Too many ({n}) FDs passed through socket activation"
                )))
            }
            _ => {}
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| DhcpError::io(format!("creating {}", dir.display()), e))?;
    }
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(DhcpError::Daemon(format!(
                    "another daemon is listening on {}",
                    path.display()
                )))
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "removing stale socket");
                let _ = std::fs::remove_file(path);
            }
        }
    }
    UnixListener::bind(path)
        .map_err(|e| DhcpError::io(format!("listening on {}", path.display()), e))
}

/// The whole daemon: pidfile, restore, signals, serve.
pub fn run(cfg: DaemonConfig) -> Result<(), DhcpError> {
    use nix::sys::signal::{SigSet, Signal};
    // Block the stop signals before any thread exists, so only the waiter sees them.
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGINT);
    sigs.thread_block()
        .map_err(|e| DhcpError::io("blocking signals", e.into()))?;

    if let Some(p) = &cfg.pidfile {
        if !p.is_absolute() {
            return Err(DhcpError::Daemon(format!(
                "Error writing pidfile {:?}: path not absolute",
                p.display().to_string()
            )));
        }
        std::fs::write(p, std::process::id().to_string())
            .map_err(|e| DhcpError::io(format!("Error writing pidfile {}", p.display()), e))?;
    }
    let sock = PathBuf::from(format!("{}{}", cfg.host_prefix, cfg.socket_path.display()));
    let listener = listener(&sock)?;
    let daemon = Daemon::new(cfg.clone())?;
    let resumed = daemon.restore()?;
    tracing::info!(socket = %sock.display(), state_dir = %cfg.state_dir.display(), resumed, "DHCP daemon ready");

    let pidfile = cfg.pidfile.clone();
    let sock_for_exit = sock.clone();
    std::thread::Builder::new()
        .name("dhcp-signals".into())
        .spawn(move || {
            let sig = sigs.wait().map(|s| s.as_str()).unwrap_or("signal");
            tracing::info!("{sig}: exiting; leases stay on disk for the next start");
            let _ = std::fs::remove_file(&sock_for_exit);
            if let Some(p) = pidfile {
                let _ = std::fs::remove_file(p);
            }
            std::process::exit(0);
        })
        .map_err(|e| DhcpError::io("spawning the signal thread", e))?;
    daemon.serve(listener)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lease(bound: u64) -> Lease {
        let grant = crate::lease::Grant {
            address: "198.18.0.5/24".parse().unwrap(),
            server_id: std::net::Ipv4Addr::new(198, 18, 0, 1),
            gateway: None,
            routes: Vec::new(),
            lease_secs: 120,
            t1_secs: 60,
            t2_secs: 105,
        };
        let mut l: Lease = serde_json::from_value(serde_json::json!({
            "clientId": "c/n/eth0", "containerId": "c", "network": "n", "ifname": "eth0",
            "netns": "/x", "netnsId": [0, 0], "mac": "", "grant": grant,
            "boundAt": 0, "renewAt": 0, "rebindAt": 0, "expiresAt": 0, "options": {"provide": {}, "request": []}
        }))
        .unwrap();
        l.bind(grant, bound);
        l
    }

    #[test]
    fn schedule_follows_rfc_2131() {
        let l = lease(1000);
        assert_eq!(plan(&l, 1000, None), Err(1060));
        assert_eq!(plan(&l, 1060, None), Ok(Step::Renew));
        assert_eq!(plan(&l, 1105, None), Ok(Step::Rebind));
        assert_eq!(plan(&l, 1120, None), Ok(Step::Reacquire));
        assert_eq!(plan(&l, 1070, Some(1080)), Err(1080));
        // Renewal failures retry at half the way to T2, never past it.
        assert_eq!(retry_after_failure(&l, Step::Renew, 1063), 1084);
        assert_eq!(retry_after_failure(&l, Step::Renew, 1104), 1105);
        // A renewal that ran into T2 rebinds at once; rebinding waits half the rest.
        assert_eq!(retry_after_failure(&l, Step::Renew, 1106), 1106);
        assert_eq!(retry_after_failure(&l, Step::Rebind, 1108), 1114);
        assert_eq!(retry_after_failure(&l, Step::Rebind, 1119), 1121);
    }
}
