//! Entries we did not write, tracked so that ADD need not list the directory.
//!
//! ADD refuses an attachment that already holds an address. For attachments we
//! allocated, the marker says so. Entries written by others (the reference
//! plugin sharing the store, an older macvnet) have no marker, so we keep the
//! attachments they hold in `.macvnet-foreign`, and in `.macvnet-stamp` how the
//! directory looked when one of our operations last left it: its mtime and
//! ctime in ns, and the `last_reserved_ip.N` contents.
//!
//! Creating or removing an entry moves the directory's times (fine-grained once
//! they have been read, since Linux 6.13 on ext4, xfs, btrfs and tmpfs; to the
//! clock tick before), and every reservation the reference makes rewrites a
//! `last_reserved_ip` file with the address it took. A stamp that still matches
//! therefore means nobody but us changed the store since, and the list is
//! current; otherwise ADD lists the directory once, reading only the entries
//! that are not links of a marker, and renews both files. All under the lock,
//! which the reference takes too.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirEntryExt, MetadataExt};

use super::{
    classify, entry_content, read_entry, EntryKind, Locked, StoreError, LAST_IP_PREFIX, SCANS,
};

pub(super) const STAMP_FILE: &str = ".macvnet-stamp";
pub(super) const FOREIGN_FILE: &str = ".macvnet-foreign";

/// Trimmed contents of the address entries that are not links of a marker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Foreign {
    contents: BTreeSet<String>,
}

impl Foreign {
    /// Whether (id, ifname) may hold an address in an entry without a marker,
    /// matched as `get_by_id` matches: `<id>\r\n<ifname>`, or the old `<id>`.
    pub fn may_hold(&self, id: &str, ifname: &str) -> bool {
        self.contents.contains(&entry_content(id, ifname)) || self.contents.contains(id.trim())
    }

    pub fn len(&self) -> usize {
        self.contents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contents.is_empty()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let raw: Option<Vec<u8>> = bytes
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect();
    String::from_utf8(raw?).ok()
}

impl Locked<'_> {
    /// The stamp for the directory as it is now: its times, the first `hints`
    /// `last_reserved_ip` files, and the size of the foreign list.
    fn stamp_text(&self, hints: usize, foreign: usize) -> Option<String> {
        let meta = fs::symlink_metadata(self.dir()).ok()?;
        let mut s = format!(
            "macvnet-stamp 1\ndir {}.{:09} {}.{:09}\n",
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        for i in 0..hints {
            let hint = match fs::read(self.dir().join(format!("{LAST_IP_PREFIX}{i}"))) {
                Ok(b) => hex(&b),
                Err(e) if e.kind() == ErrorKind::NotFound => "-".to_string(),
                Err(_) => return None,
            };
            s.push_str(&format!("hint {i} {hint}\n"));
        }
        s.push_str(&format!("foreign {foreign}\n"));
        Some(s)
    }

    /// The foreign list when the stamp shows nobody but us changed the store
    /// since we last left it; None otherwise (no stamp, or it no longer matches).
    pub fn foreign_if_current(&self, hints: usize) -> Option<Foreign> {
        let stamp = fs::read_to_string(self.dir().join(STAMP_FILE)).ok()?;
        let count: usize = stamp
            .lines()
            .find_map(|l| l.strip_prefix("foreign "))?
            .parse()
            .ok()?;
        if self.stamp_text(hints, count)? != stamp {
            return None;
        }
        if count == 0 {
            return Some(Foreign::default());
        }
        let list = fs::read_to_string(self.dir().join(FOREIGN_FILE)).ok()?;
        let contents: BTreeSet<String> = list.lines().filter_map(unhex).collect();
        (contents.len() == count).then_some(Foreign { contents })
    }

    /// The foreign list: from the stamp when current, else by listing the
    /// directory (the list is saved; [`Locked::stamp`] makes it current).
    pub fn foreign(&self, hints: usize) -> Result<Foreign, StoreError> {
        if let Some(f) = self.foreign_if_current(hints) {
            return Ok(f);
        }
        let f = self.scan_foreign()?;
        self.save_foreign(&f)?;
        Ok(f)
    }

    /// List the directory and read the address entries that share no inode
    /// with a marker (ours are all hard links of one).
    fn scan_foreign(&self) -> Result<Foreign, StoreError> {
        SCANS.with(|c| c.set(c.get() + 1));
        let rd_err = |source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        };
        let mut markers = HashSet::new();
        let mut addresses = Vec::new();
        for de in fs::read_dir(self.dir()).map_err(rd_err)? {
            let de = de.map_err(rd_err)?;
            let name = de.file_name();
            match name.to_str().map(classify) {
                Some(EntryKind::Marker) => {
                    markers.insert(de.ino());
                }
                Some(EntryKind::Address(_)) => addresses.push((de.ino(), de.path())),
                _ => {}
            }
        }
        let mut contents = BTreeSet::new();
        for (ino, path) in addresses {
            if markers.contains(&ino) {
                continue;
            }
            if let Some(c) = read_entry(&path) {
                contents.insert(c.trim().to_string());
            }
        }
        Ok(Foreign { contents })
    }

    fn save_foreign(&self, f: &Foreign) -> Result<(), StoreError> {
        let path = self.dir().join(FOREIGN_FILE);
        if f.contents.is_empty() {
            return self.remove(&path);
        }
        let list: String = f
            .contents
            .iter()
            .map(|c| hex(c.as_bytes()) + "\n")
            .collect();
        self.write_atomic(&path, &list, "foreign")
    }

    /// List the directory afresh and stamp it (after GC, which changes the list).
    pub fn refresh_foreign(&self, hints: usize) -> Result<(), StoreError> {
        let f = self.scan_foreign()?;
        self.save_foreign(&f)?;
        self.stamp(&f, hints);
        Ok(())
    }

    /// Record the directory as this operation leaves it, with `foreign` as its
    /// list. Call last, after every change of the operation. Best effort: a
    /// stamp that is missing or wrong only costs the next ADD a listing.
    pub fn stamp(&self, foreign: &Foreign, hints: usize) {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let path = self.dir().join(STAMP_FILE);
        // Opened (created the first time) before the directory's times are read:
        // creating it moves them.
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .and_then(|f| {
                let text = self
                    .stamp_text(hints, foreign.len())
                    .ok_or_else(|| std::io::Error::other("cannot read the directory's state"))?;
                f.write_all_at(text.as_bytes(), 0)?;
                f.set_len(text.len() as u64)
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "write store stamp");
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        for s in ["", "abc\r\neth0", "ünï"] {
            assert_eq!(unhex(&hex(s.as_bytes())).as_deref(), Some(s));
        }
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
