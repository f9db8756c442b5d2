//! On-disk store, file-compatible with the reference host-local:
//! `<dataDir>/<network>/<ip>` holds `<id>\r\n<ifname>`, `last_reserved_ip.<N>`
//! holds the last IP handed out from range set N, and every operation runs
//! under flock(LOCK_EX) on `<dataDir>/<network>/lock`.
//!
//! Our additions, invisible to the reference's logic:
//! - Address files are created whole: the content is written to a source file
//!   first, then hard-linked to `<ip>` (link(2) fails with EEXIST, so it is the
//!   same atomic claim as O_EXCL, and a killed ADD never leaves a half file).
//! - The source is kept as `.macvnet-att:<id>:<ifname>` (a marker, same content
//!   as the address files). ADD only scans the directory for a duplicate when the
//!   marker exists, so the common ADD does not read other entries. The reference
//!   ignores it (not an IP name) but its DEL removes it (same content).
//! - Temporary files are `.macvnet-tmp.<pid>.*`; under the lock any such file
//!   belongs to a dead process, and GC removes it.
//! - DEL finds the address files of an attachment with a marker by the marker's
//!   inode while listing, without opening any other entry (see `marker_links`).
//! - Entries without a marker (the reference's) are listed in `.macvnet-foreign`,
//!   kept current by `.macvnet-stamp`, so ADD refuses their attachments a second
//!   address without listing the directory (see `foreign`).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

mod foreign;
pub use foreign::Foreign;

use crate::types::canonical_ip;
use macvnet_cni::validate::validate_network_name;
use macvnet_cni::CniError;

pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";
pub const LINE_BREAK: &str = "\r\n";
pub const LOCK_FILE: &str = "lock";
const MARKER_PREFIX: &str = ".macvnet-att:";
const TEMP_PREFIX: &str = ".macvnet-tmp.";
/// Entries larger than this cannot be `<id>\r\n<ifname>`; never read them whole.
const MAX_ENTRY: u64 = 64 * 1024;
/// How long to wait for another process holding the store lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The network name would not be a single safe path component.
    #[error(transparent)]
    Name(CniError),
    #[error("create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("open lock file {path}: {source}")]
    OpenLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flock {path}: {errno}")]
    Lock { path: PathBuf, errno: Errno },
    #[error("flock {path}: still held by another process after {secs} s")]
    LockTimeout { path: PathBuf, secs: u64 },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reserve {path}: {source}")]
    Reserve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remove {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

thread_local! {
    static SCANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many directory listings this thread has made (tests check that ADD
/// makes none in the common case).
pub fn dir_scans_on_this_thread() -> usize {
    SCANS.with(|c| c.get())
}

/// How many entry files this thread has opened to read (tests check that DEL
/// of an attachment with a marker reads none but the marker).
pub fn entry_reads_on_this_thread() -> usize {
    READS.with(|c| c.get())
}

/// The store of one network: `<dataDir>/<network>`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// What a directory entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// An allocation (file named by an IP address).
    Address(IpAddr),
    /// Our per-attachment marker.
    Marker,
    /// A leftover temporary file of ours.
    Temp,
    /// lock, last_reserved_ip.N, anything else: never touched.
    Other,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
}

/// `<id>\r\n<ifname>` as the reference writes it (id trimmed).
pub fn entry_content(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

fn classify(name: &str) -> EntryKind {
    if name.starts_with(MARKER_PREFIX) {
        EntryKind::Marker
    } else if name.starts_with(TEMP_PREFIX) {
        EntryKind::Temp
    } else if let Ok(ip) = name.parse::<IpAddr>() {
        EntryKind::Address(ip)
    } else {
        EntryKind::Other
    }
}

/// Read a small file; None when missing, unreadable or too large to be an entry.
pub fn read_entry(path: &Path) -> Option<String> {
    READS.with(|c| c.set(c.get() + 1));
    let f = File::open(path).ok()?;
    let mut s = String::new();
    f.take(MAX_ENTRY + 1).read_to_string(&mut s).ok()?;
    if s.len() as u64 > MAX_ENTRY {
        return None;
    }
    Some(s)
}

impl Store {
    /// Create `<dataDir>/<network>` (0755, like the reference) if needed.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, StoreError> {
        validate_network_name(network).map_err(StoreError::Name)?;
        let dir = data_dir.join(network);
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the store lock, waiting at most `timeout`.
    pub fn lock(&self, timeout: Duration) -> Result<Locked<'_>, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        // go-filemutex opens O_CREATE|O_RDONLY with 0750.
        let mut file = OpenOptions::new()
            .read(true)
            .write(false)
            .create(false)
            .custom_flags(libc::O_CREAT | libc::O_CLOEXEC)
            .mode(0o750)
            .open(&path)
            .map_err(|source| StoreError::OpenLock {
                path: path.clone(),
                source,
            })?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(Locked {
                        store: self,
                        _lock: lock,
                    })
                }
                Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::LockTimeout {
                            path,
                            secs: timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(4));
                    file = f;
                }
                Err((_, errno)) => return Err(StoreError::Lock { path, errno }),
            }
        }
    }
}

/// The store while its lock is held; dropping it unlocks.
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Flock<File>,
}

/// A file holding `<id>\r\n<ifname>` that address files are hard-linked from.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    /// We created (or replaced) it in this operation.
    pub created: bool,
    /// It is a temporary (no marker possible) and must be removed at the end.
    pub temporary: bool,
}

impl Locked<'_> {
    fn dir(&self) -> &Path {
        &self.store.dir
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        self.dir()
            .join(format!("{TEMP_PREFIX}{}.{what}", std::process::id()))
    }

    /// The marker for (id, ifname), None when the name would be too long.
    pub fn marker_path(&self, id: &str, ifname: &str) -> Option<PathBuf> {
        let name = format!("{MARKER_PREFIX}{}:{ifname}", id.trim());
        (name.len() <= 255).then(|| self.dir().join(name))
    }

    /// Whether (id, ifname) may hold addresses written by us; when false the
    /// duplicate scan can be skipped.
    pub fn may_hold(&self, id: &str, ifname: &str) -> bool {
        match self.marker_path(id, ifname) {
            Some(m) => m.symlink_metadata().is_ok(),
            None => true,
        }
    }

    /// Write `content` to a fresh temp file and rename it onto `dest`.
    fn write_atomic(&self, dest: &Path, content: &str, what: &str) -> Result<(), StoreError> {
        let tmp = self.temp_path(what);
        let werr = |source| StoreError::Write {
            path: tmp.clone(),
            source,
        };
        // A same-named leftover belongs to a dead process (we hold the lock).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(werr(e)),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr)?;
        if let Err(e) = f.write_all(content.as_bytes()) {
            let _ = fs::remove_file(&tmp);
            return Err(werr(e));
        }
        drop(f);
        fs::rename(&tmp, dest).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            StoreError::Write {
                path: dest.to_path_buf(),
                source,
            }
        })
    }

    /// Overwrite a hint file (`last_reserved_ip.N`) in place: pwrite at 0, then cut to length.
    /// No rename and no truncation to zero: ext4 flushes a file replaced either way
    /// (auto_da_alloc), which cost ~1 ms per ADD. A torn hint is harmless: an
    /// unparsable one reads as none, a wrong one only moves the round-robin start.
    fn overwrite_hint(&self, dest: &Path, content: &str) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let werr = |source| StoreError::Write {
            path: dest.to_path_buf(),
            source,
        };
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(dest)
            .map_err(werr)?;
        f.write_all_at(content.as_bytes(), 0).map_err(werr)?;
        f.set_len(content.len() as u64).map_err(werr)
    }

    /// Create `path` exclusively (0600) with `content`; removed again on failure.
    fn write_new(&self, path: &Path, content: &str) -> Result<(), StoreError> {
        let werr = |source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(werr)?;
        if let Err(e) = f.write_all(content.as_bytes()) {
            let _ = fs::remove_file(path);
            return Err(werr(e));
        }
        Ok(())
    }

    /// Make sure a source file with the entry content exists.
    pub fn prepare_source(&self, id: &str, ifname: &str) -> Result<Source, StoreError> {
        let content = entry_content(id, ifname);
        match self.marker_path(id, ifname) {
            Some(marker) => {
                if read_entry(&marker).as_deref() == Some(content.as_str()) {
                    return Ok(Source {
                        path: marker,
                        created: false,
                        temporary: false,
                    });
                }
                if marker.symlink_metadata().is_ok() {
                    // A torn marker from a killed ADD: replace it whole.
                    self.write_atomic(&marker, &content, "att")?;
                } else {
                    // Address files are linked from it only after this write
                    // completes, so a torn marker never becomes an allocation.
                    self.write_new(&marker, &content)?;
                }
                Ok(Source {
                    path: marker,
                    created: true,
                    temporary: false,
                })
            }
            None => {
                let tmp = self.temp_path("src");
                self.write_atomic(&tmp, &content, "src0")?;
                Ok(Source {
                    path: tmp,
                    created: true,
                    temporary: true,
                })
            }
        }
    }

    /// Remove a source we created when it ended up unused, or a temporary one.
    pub fn finish_source(&self, source: &Source, used: bool) {
        if source.temporary || (source.created && !used) {
            if let Err(e) = fs::remove_file(&source.path) {
                tracing::warn!(path = %source.path.display(), error = %e, "remove source file");
            }
        }
    }

    pub fn address_path(&self, ip: IpAddr) -> PathBuf {
        self.dir().join(ip.to_string())
    }

    /// Claim `ip` for the source's attachment. Ok(false) when already taken.
    /// On success records it as `last_reserved_ip.<range_id>`.
    pub fn reserve(
        &self,
        source: &Source,
        ip: IpAddr,
        range_id: usize,
    ) -> Result<bool, StoreError> {
        let path = self.address_path(ip);
        match fs::hard_link(&source.path, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(source) => return Err(StoreError::Reserve { path, source }),
        }
        macvnet_cni::failpoint!("host-local::add::after_reserve");
        let last = self.dir().join(format!("{LAST_IP_PREFIX}{range_id}"));
        if let Err(e) = self.overwrite_hint(&last, &ip.to_string()) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(true)
    }

    /// Undo a reservation made in this operation.
    pub fn unreserve(&self, ip: IpAddr) {
        let path = self.address_path(ip);
        if let Err(e) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "roll back reservation");
        }
    }

    /// The reference parses the file as-is (no trimming); garbage means none.
    pub fn last_reserved(&self, range_id: usize) -> Option<IpAddr> {
        let path = self.dir().join(format!("{LAST_IP_PREFIX}{range_id}"));
        match fs::read(&path) {
            Ok(data) => std::str::from_utf8(&data)
                .ok()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .map(canonical_ip),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Error retrieving last reserved ip");
                None
            }
        }
    }

    /// All top-level entries with their kind.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        SCANS.with(|c| c.set(c.get() + 1));
        let rd_err = |source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        };
        let mut out = Vec::new();
        for de in fs::read_dir(self.dir()).map_err(rd_err)? {
            let de = de.map_err(rd_err)?;
            let Ok(ft) = de.file_type() else { continue };
            if !ft.is_file() {
                continue;
            }
            let name = de.file_name();
            let Some(name) = name.to_str() else { continue };
            out.push(Entry {
                path: de.path(),
                kind: classify(name),
            });
        }
        Ok(out)
    }

    /// Addresses whose file holds (id, ifname) or the old `<id>`-only format.
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        let key = entry_content(id, ifname);
        let old = id.trim();
        let mut out = Vec::new();
        for e in self.entries()? {
            let EntryKind::Address(ip) = e.kind else {
                continue;
            };
            if let Some(c) = read_entry(&e.path) {
                let c = c.trim();
                if c == key || c == old {
                    out.push(canonical_ip(ip));
                }
            }
        }
        Ok(out)
    }

    /// The marker of (id, ifname) and the address files hard-linked from it,
    /// found by inode while listing: no other entry is opened. None (the caller
    /// reads every entry instead) when there is no marker with the entry content,
    /// it has no links, or the links found do not account for its link count.
    /// Relies on what ADD guarantees: with the marker present, the attachment's
    /// address files are all links of it (the reference refuses to ADD an
    /// attachment that holds an address, and we link every address we reserve).
    fn marker_links(&self, id: &str, ifname: &str) -> Option<(PathBuf, Vec<Entry>)> {
        let marker = self.marker_path(id, ifname)?;
        let meta = marker.symlink_metadata().ok()?;
        if !meta.is_file() || meta.nlink() < 2 {
            return None;
        }
        if read_entry(&marker)? != entry_content(id, ifname) {
            return None;
        }
        let want = usize::try_from(meta.nlink() - 1).ok()?;
        let marker_name = marker.file_name()?;
        SCANS.with(|c| c.set(c.get() + 1));
        let mut found = Vec::new();
        for de in fs::read_dir(self.dir()).ok()? {
            let de = de.ok()?;
            if de.ino() != meta.ino() || de.file_name() == marker_name {
                continue;
            }
            let kind = classify(de.file_name().to_str()?);
            if !matches!(kind, EntryKind::Address(_)) {
                return None;
            }
            // d_ino need not be st_ino on every filesystem (overlayfs): confirm.
            let path = de.path();
            let m = path.symlink_metadata().ok()?;
            if m.ino() != meta.ino() || m.dev() != meta.dev() {
                return None;
            }
            found.push(Entry { path, kind });
            if found.len() == want {
                return Some((marker, found));
            }
        }
        None
    }

    /// Release by (id, ifname): files holding `<id>\r\n<ifname>`, and the
    /// old-format `<id>` files when none matched (reference) or when
    /// `old_too` (the reference repeats the release per range set, so with two
    /// or more sets its second pass takes old-format files as well).
    /// Returns the released addresses.
    pub fn release_by_id(
        &self,
        id: &str,
        ifname: &str,
        old_too: bool,
    ) -> Result<Vec<IpAddr>, StoreError> {
        // Our attachments: the marker's links, no entry read. Old-format files
        // are left then (an address matched), as below, unless `old_too`.
        if !old_too {
            if let Some((marker, linked)) = self.marker_links(id, ifname) {
                let mut gone = Vec::with_capacity(linked.len());
                for e in linked {
                    self.remove(&e.path)?;
                    macvnet_cni::failpoint!("host-local::del::after_release");
                    if let EntryKind::Address(ip) = e.kind {
                        gone.push(canonical_ip(ip));
                    }
                }
                // Last, so a DEL killed before here still finds the rest by it.
                self.remove(&marker)?;
                return Ok(gone);
            }
        }
        let key = entry_content(id, ifname);
        let old = id.trim();
        let mut new_match = Vec::new();
        let mut old_match = Vec::new();
        for e in self.entries()? {
            if matches!(e.kind, EntryKind::Other) {
                continue;
            }
            let Some(c) = read_entry(&e.path) else {
                continue;
            };
            let c = c.trim();
            if c == key {
                new_match.push(e);
            } else if c == old {
                old_match.push(e);
            }
        }
        let mut gone = Vec::new();
        let take_old = old_too
            || !new_match
                .iter()
                .any(|e| matches!(e.kind, EntryKind::Address(_)));
        let mut victims = new_match;
        if take_old {
            victims.extend(old_match);
        }
        for e in victims {
            self.remove(&e.path)?;
            macvnet_cni::failpoint!("host-local::del::after_release");
            if let EntryKind::Address(ip) = e.kind {
                gone.push(canonical_ip(ip));
            }
        }
        Ok(gone)
    }

    /// Remove a file; a missing one is fine.
    pub fn remove(&self, path: &Path) -> Result<(), StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Check the directory is writable: create and remove a probe file.
    pub fn probe_writable(&self) -> Result<(), StoreError> {
        let tmp = self.temp_path("probe");
        self.write_atomic(&tmp, "", "probe0")?;
        self.remove(&tmp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("mvt-{}-store-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Reserve `ips` for (id, ifname) the way ADD does: marker, then links.
    fn attach(l: &Locked<'_>, id: &str, ifname: &str, ips: &[&str]) {
        let src = l.prepare_source(id, ifname).unwrap();
        for (n, a) in ips.iter().enumerate() {
            assert!(l.reserve(&src, ip(a), n).unwrap());
        }
        l.finish_source(&src, true);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn del_with_marker_reads_no_other_entry() {
        let t = Tmp::new("fast");
        let store = Store::open(&t.0, "n").unwrap();
        let l = store.lock(LOCK_TIMEOUT).unwrap();
        for i in 0..200 {
            attach(&l, &format!("c{i}"), "eth0", &[&format!("198.18.1.{i}")]);
        }
        attach(&l, "me", "eth0", &["198.18.2.1", "2001:db8::1"]);
        // A reference-written entry and an old-format one of the same id.
        fs::write(store.dir().join("198.18.2.2"), "other\r\neth0").unwrap();
        fs::write(store.dir().join("198.18.2.3"), "me").unwrap();
        let before = names(store.dir());
        let reads = entry_reads_on_this_thread();
        let mut gone = l.release_by_id("me", "eth0", false).unwrap();
        gone.sort();
        assert_eq!(gone, [ip("198.18.2.1"), ip("2001:db8::1")]);
        // Only the marker was read.
        assert_eq!(entry_reads_on_this_thread() - reads, 1);
        let after = names(store.dir());
        let removed: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
        assert_eq!(
            removed,
            [".macvnet-att:me:eth0", "198.18.2.1", "2001:db8::1"]
        );
        // The old-format file stays when an address matched, as on the slow path.
        assert!(store.dir().join("198.18.2.3").exists());
        // Then, none left in the new format, the reference's id-only fallback.
        assert_eq!(
            l.release_by_id("me", "eth0", false).unwrap(),
            [ip("198.18.2.3")]
        );
        assert!(l.release_by_id("me", "eth0", false).unwrap().is_empty());
    }

    #[test]
    fn del_falls_back_to_reading_when_marker_does_not_account() {
        let t = Tmp::new("slow");
        let store = Store::open(&t.0, "n").unwrap();
        let l = store.lock(LOCK_TIMEOUT).unwrap();
        attach(&l, "a", "eth0", &["198.18.3.1", "198.18.3.2"]);
        // A DEL killed after its first removal: the marker counts one link.
        fs::remove_file(store.dir().join("198.18.3.1")).unwrap();
        // A reference-written attachment (no marker) and a stray link of "b"'s marker.
        fs::write(store.dir().join("198.18.3.9"), "r\r\neth0").unwrap();
        attach(&l, "b", "eth0", &["198.18.3.5"]);
        fs::hard_link(
            store.dir().join(".macvnet-att:b:eth0"),
            store.dir().join("stray"),
        )
        .unwrap();

        assert_eq!(
            l.release_by_id("a", "eth0", false).unwrap(),
            [ip("198.18.3.2")]
        );
        let reads = entry_reads_on_this_thread();
        assert_eq!(
            l.release_by_id("r", "eth0", false).unwrap(),
            [ip("198.18.3.9")]
        );
        assert!(
            entry_reads_on_this_thread() - reads > 1,
            "no marker: read all"
        );
        // Links not all addresses: the slow path, same outcome; "stray" (Other) stays.
        assert_eq!(
            l.release_by_id("b", "eth0", false).unwrap(),
            [ip("198.18.3.5")]
        );
        assert_eq!(
            names(store.dir()),
            ["last_reserved_ip.0", "last_reserved_ip.1", "lock", "stray"]
        );
    }
}
