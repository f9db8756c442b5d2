//! host-local IPAM: a drop-in for the reference plugin's ADD/DEL/CHECK plus
//! GC and STATUS (CNI 1.1). Entry points take the request pieces: config bytes
//! (stdin), container ID, ifname and the raw `CNI_ARGS` string.

mod config;
mod dns;
mod range;
pub mod store;

use std::net::IpAddr;

pub use config::{Attachment, ConfigError, HostLocalConfig, DEFAULT_DATA_DIR};
pub use dns::{parse_resolv_conf, read_resolv_conf};
pub use range::{Range, RangeError, RangeIter, RangeSet, RawRange};
pub use store::{Store, StoreError, LOCK_TIMEOUT};

use macvnet_cni::validate::{validate_container_id, validate_interface_name};
use macvnet_cni::CniError;

use crate::types::{CniResult, IpConfig};

#[derive(Debug, thiserror::Error)]
pub enum HostLocalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Container ID or ifname unusable (they end up in file names/contents).
    #[error(transparent)]
    Name(CniError),
    #[error("open {path}: {source}")]
    ResolvConf {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to allocate for range {index}: {source}")]
    Allocate {
        index: usize,
        #[source]
        source: AllocError,
    },
    #[error("failed to allocate all requested IPs:{}", .0.iter().map(|ip| format!(" {ip}")).collect::<String>())]
    RequestedLeft(Vec<IpAddr>),
    #[error("host-local: Failed to find address added by container {0}")]
    NotFound(String),
    #[error("GC request without cni.dev/valid-attachments")]
    NoValidAttachments,
}

/// Why one range set could not give an address (reference messages).
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("requested ip {0} is subnet's gateway")]
    RequestedGateway(IpAddr),
    #[error("requested IP address {ip} is not available in range set {set}")]
    RequestedTaken { ip: IpAddr, set: String },
    #[error("{ip} has been allocated to {id}, duplicate allocation is not allowed")]
    Duplicate { ip: IpAddr, id: String },
    #[error("no IP addresses available in range set: {0}")]
    Exhausted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// STATUS outcome when the plugin cannot serve ADDs.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The config itself is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Store dir cannot be created/locked/written: CNI code 50.
    #[error("store unusable: {0}")]
    Unusable(#[source] StoreError),
    /// Some range set has no free address, so ADD would fail: CNI code 51.
    #[error("no IP addresses available in range set {index}: {set}")]
    Exhausted { index: usize, set: String },
}

fn check_request(id: &str, ifname: &str) -> Result<(), HostLocalError> {
    validate_container_id(id).map_err(HostLocalError::Name)?;
    validate_interface_name(ifname).map_err(HostLocalError::Name)
}

fn open_store(conf: &HostLocalConfig) -> Result<Store, HostLocalError> {
    Ok(Store::open(&conf.data_dir, &conf.name)?)
}

/// ADD: one address per range set (requested ones first), routes, dns.
pub fn add(
    conf_bytes: &[u8],
    container_id: &str,
    ifname: &str,
    cni_args: &str,
) -> Result<CniResult, HostLocalError> {
    check_request(container_id, ifname)?;
    let conf = HostLocalConfig::parse(conf_bytes, cni_args)?;
    let mut result = CniResult::default();
    if let Some(path) = &conf.resolv_conf {
        result.dns = read_resolv_conf(path).map_err(|source| HostLocalError::ResolvConf {
            path: path.clone(),
            source,
        })?;
    }
    let store = open_store(&conf)?;
    let locked = store.lock(LOCK_TIMEOUT)?;
    macvnet_cni::failpoint!("host-local::add::after_lock");

    let mut requested: Vec<IpAddr> = Vec::new();
    for ip in &conf.requested {
        if !requested.contains(ip) {
            requested.push(*ip);
        }
    }
    // Only scan for an existing allocation when our marker or the list of entries
    // written by others says there may be one.
    let hints = conf.ranges.len();
    let foreign = locked.foreign(hints)?;
    let existing =
        if locked.may_hold(container_id, ifname) || foreign.may_hold(container_id, ifname) {
            locked.get_by_id(container_id, ifname)?
        } else {
            Vec::new()
        };
    let source = locked.prepare_source(container_id, ifname)?;
    macvnet_cni::failpoint!("host-local::add::after_source");
    let mut taken: Vec<IpAddr> = Vec::new();

    let outcome = (|| -> Result<(), HostLocalError> {
        for (index, set) in conf.ranges.iter().enumerate() {
            let wanted = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            let got = allocate(
                &locked,
                &source,
                set,
                index,
                container_id,
                wanted,
                &existing,
            )
            .map_err(|source| HostLocalError::Allocate { index, source })?;
            taken.push(got.address.addr());
            result.ips.push(got);
        }
        if !requested.is_empty() {
            return Err(HostLocalError::RequestedLeft(requested.clone()));
        }
        Ok(())
    })();
    macvnet_cni::failpoint!("host-local::add::after_allocate");
    if outcome.is_err() {
        for ip in &taken {
            locked.unreserve(*ip);
        }
        taken.clear();
    }
    // Keep the marker while the attachment holds any address, old or new.
    locked.finish_source(&source, !taken.is_empty() || !existing.is_empty());
    // A failed ADD leaves no file of its own; the next ADD lists the directory.
    if outcome.is_ok() {
        locked.stamp(&foreign, hints);
    }
    outcome?;
    result.routes = conf.routes;
    Ok(result)
}

fn allocate(
    locked: &store::Locked<'_>,
    source: &store::Source,
    set: &RangeSet,
    index: usize,
    id: &str,
    wanted: Option<IpAddr>,
    existing: &[IpAddr],
) -> Result<IpConfig, AllocError> {
    if let Some(ip) = wanted {
        // `wanted` was picked because the set contains it.
        let Some(r) = set.range_for(ip) else {
            return Err(AllocError::RequestedTaken {
                ip,
                set: set.to_string(),
            });
        };
        if ip == r.gateway {
            return Err(AllocError::RequestedGateway(ip));
        }
        let taken = || AllocError::RequestedTaken {
            ip,
            set: set.to_string(),
        };
        // Same family as the range's subnet, so the prefix always fits.
        let address = ipnet::IpNet::new(ip, r.subnet.prefix_len()).map_err(|_| taken())?;
        if !locked.reserve(source, ip, index)? {
            return Err(taken());
        }
        return Ok(IpConfig {
            interface: None,
            address,
            gateway: Some(r.gateway),
        });
    }
    if let Some(ip) = existing.iter().find(|ip| set.contains(**ip)) {
        return Err(AllocError::Duplicate {
            ip: *ip,
            id: id.to_string(),
        });
    }
    for (address, gateway) in set.iter_from(locked.last_reserved(index)) {
        if locked.reserve(source, address.addr(), index)? {
            return Ok(IpConfig {
                interface: None,
                address,
                gateway: Some(gateway),
            });
        }
    }
    Err(AllocError::Exhausted(set.to_string()))
}

/// DEL: release every address of (container ID, ifname). Idempotent.
/// Returns the released addresses.
pub fn del(
    conf_bytes: &[u8],
    container_id: &str,
    ifname: &str,
    cni_args: &str,
) -> Result<Vec<IpAddr>, HostLocalError> {
    check_request(container_id, ifname)?;
    let conf = HostLocalConfig::parse(conf_bytes, cni_args)?;
    let store = open_store(&conf)?;
    let locked = store.lock(LOCK_TIMEOUT)?;
    macvnet_cni::failpoint!("host-local::del::after_lock");
    let hints = conf.ranges.len();
    let foreign = locked.foreign_if_current(hints);
    let gone = locked.release_by_id(container_id, ifname, hints >= 2)?;
    // Releasing an entry of the list changes it: the next ADD lists the directory.
    if let Some(f) = foreign.filter(|f| !f.may_hold(container_id, ifname)) {
        locked.stamp(&f, hints);
    }
    Ok(gone)
}

/// CHECK: the attachment holds at least one address (any range), like the reference.
pub fn check(
    conf_bytes: &[u8],
    container_id: &str,
    ifname: &str,
    cni_args: &str,
) -> Result<(), HostLocalError> {
    check_request(container_id, ifname)?;
    let conf = HostLocalConfig::parse(conf_bytes, cni_args)?;
    let store = open_store(&conf)?;
    let locked = store.lock(LOCK_TIMEOUT)?;
    if locked.get_by_id(container_id, ifname)?.is_empty() {
        return Err(HostLocalError::NotFound(container_id.to_string()));
    }
    Ok(())
}

/// What GC removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub released: Vec<IpAddr>,
    /// Markers and leftover temporary files removed.
    pub other_files: usize,
}

/// GC with the config's `cni.dev/valid-attachments`.
pub fn gc(conf_bytes: &[u8]) -> Result<GcReport, HostLocalError> {
    let conf = HostLocalConfig::parse(conf_bytes, "")?;
    let valid = conf
        .valid_attachments
        .clone()
        .ok_or(HostLocalError::NoValidAttachments)?;
    gc_with(&conf, &valid)
}

/// Release every entry whose (containerID, ifname) is not in `valid`; old
/// `<id>`-only entries stay while any attachment of that container is valid.
/// Entries with unreadable or garbage content (a killed writer) are released.
pub fn gc_with(conf: &HostLocalConfig, valid: &[Attachment]) -> Result<GcReport, HostLocalError> {
    let store = open_store(conf)?;
    let locked = store.lock(LOCK_TIMEOUT)?;
    let keep = |content: &str| -> bool {
        let c = content.trim();
        match c.split_once(store::LINE_BREAK) {
            Some((id, ifname)) => valid
                .iter()
                .any(|a| a.container_id.trim() == id && a.ifname == ifname),
            None => !c.is_empty() && valid.iter().any(|a| a.container_id.trim() == c),
        }
    };
    let mut report = GcReport::default();
    for e in locked.entries()? {
        let drop_it = match e.kind {
            store::EntryKind::Other => false,
            store::EntryKind::Temp => true,
            store::EntryKind::Address(_) | store::EntryKind::Marker => {
                !store::read_entry(&e.path).is_some_and(|c| keep(&c))
            }
        };
        if !drop_it {
            continue;
        }
        locked.remove(&e.path)?;
        match e.kind {
            store::EntryKind::Address(ip) => report.released.push(ip),
            _ => report.other_files += 1,
        }
    }
    locked.refresh_foreign(conf.ranges.len())?;
    Ok(report)
}

/// STATUS: Ok when the store is usable and every range set has a free address.
pub fn status(conf_bytes: &[u8]) -> Result<(), StatusError> {
    let conf = HostLocalConfig::parse(conf_bytes, "")?;
    let store = Store::open(&conf.data_dir, &conf.name).map_err(StatusError::Unusable)?;
    let locked = store.lock(LOCK_TIMEOUT).map_err(StatusError::Unusable)?;
    let foreign = locked.foreign_if_current(conf.ranges.len());
    locked.probe_writable().map_err(StatusError::Unusable)?;
    if let Some(f) = foreign {
        locked.stamp(&f, conf.ranges.len());
    }
    let entries = locked.entries().map_err(StatusError::Unusable)?;
    for (index, set) in conf.ranges.iter().enumerate() {
        let used = entries
            .iter()
            .filter(|e| matches!(e.kind, store::EntryKind::Address(ip) if set.contains(ip)))
            .count() as u128;
        let usable: u128 = set.0.iter().map(Range::usable_count).sum();
        // More usable addresses than files in the set: one is surely free.
        if usable > used {
            continue;
        }
        // Small set: look for a free address (bounded by the file count).
        let free = set
            .iter_from(None)
            .any(|(a, _)| locked.address_path(a.addr()).symlink_metadata().is_err());
        if !free {
            return Err(StatusError::Exhausted {
                index,
                set: set.to_string(),
            });
        }
    }
    Ok(())
}

/// CNI codes as the reference reports them: its errors are plain Go errors, so
/// 999 with the same message; validation and `CNI_ARGS` keep the cni crate's code.
impl From<HostLocalError> for CniError {
    fn from(e: HostLocalError) -> Self {
        match e {
            HostLocalError::Name(c)
            | HostLocalError::Config(ConfigError::Args(c))
            | HostLocalError::Store(StoreError::Name(c)) => c,
            other => CniError::internal(other.to_string()),
        }
    }
}

/// STATUS: exhausted → 51, store unusable → 50 (as the macvnet plugins define them).
impl From<StatusError> for CniError {
    fn from(e: StatusError) -> Self {
        match e {
            StatusError::Config(c) => HostLocalError::Config(c).into(),
            StatusError::Unusable(StoreError::Name(c)) => c,
            e @ StatusError::Unusable(_) => CniError::new(
                macvnet_cni::error::code::PLUGIN_NOT_AVAILABLE,
                e.to_string(),
                "",
            ),
            e @ StatusError::Exhausted { .. } => CniError::new(
                macvnet_cni::error::code::LIMITED_CONNECTIVITY,
                e.to_string(),
                "",
            ),
        }
    }
}
