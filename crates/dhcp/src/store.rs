//! Leases on disk: one JSON file per client ID in the state directory, replaced
//! atomically (temp file, fsync, rename, fsync of the directory), so a daemon killed at
//! any instant finds either the old or the new lease, never a torn one.
//!
//! Next to a lease, `<name>.intent` records an acquisition in flight (see
//! [`crate::lease::Intent`]): written the same way before each DHCPREQUEST, removed once
//! the lease file is in place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::lease::{Intent, Lease};
use crate::DhcpError;

/// Default state directory (next to host-local's /var/lib/cni/networks).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/dhcp";

const SUFFIX: &str = ".lease";
const INTENT_SUFFIX: &str = ".intent";
const TMP_PREFIX: &str = ".tmp-";

/// What [`Store::load_all`] found: parsed leases, and (path, reason) of unreadable files.
pub type Loaded = (Vec<Lease>, Vec<(PathBuf, String)>);
/// What [`Store::load_intents`] found, likewise.
pub type LoadedIntents = (Vec<Intent>, Vec<(PathBuf, String)>);

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// FNV-1a: a stable short digest for over-long file names (std's hasher is not stable).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A file name for a client ID: `[A-Za-z0-9.-]` kept, everything else `_XX` (hex), so
/// distinct IDs never share a name; long ones are cut and suffixed with a digest.
pub fn file_name(client_id: &str) -> String {
    let mut name = stem(client_id);
    name.push_str(SUFFIX);
    name
}

/// The intent file of a client ID: the lease's name with `.intent` for `.lease`.
pub fn intent_file_name(client_id: &str) -> String {
    let mut name = stem(client_id);
    name.push_str(INTENT_SUFFIX);
    name
}

fn stem(client_id: &str) -> String {
    let mut name = String::with_capacity(client_id.len() + 8);
    for b in client_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02x}"));
        }
    }
    if name.starts_with('.') {
        name.replace_range(0..1, "_2e");
    }
    if name.len() > 200 {
        name.truncate(180);
        name.push_str(&format!("~{:016x}", fnv1a(client_id.as_bytes())));
    }
    name
}

impl Store {
    /// Open (creating, mode 0700) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, DhcpError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| DhcpError::io(format!("creating state directory {}", dir.display()), e))?;
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, client_id: &str) -> PathBuf {
        self.dir.join(file_name(client_id))
    }

    pub fn intent_path_for(&self, client_id: &str) -> PathBuf {
        self.dir.join(intent_file_name(client_id))
    }

    /// Write `lease` atomically and durably.
    pub fn save(&self, lease: &Lease) -> Result<(), DhcpError> {
        let name = file_name(&lease.client_id);
        self.write_atomic(&name, lease)
    }

    /// Write `intent` atomically and durably (before the DHCPREQUEST it covers is sent).
    pub fn save_intent(&self, intent: &Intent) -> Result<(), DhcpError> {
        let name = intent_file_name(&intent.lease.client_id);
        self.write_atomic(&name, intent)
    }

    /// Temp file, fsync, rename over `name`, fsync of the directory.
    fn write_atomic(&self, name: &str, value: &impl serde::Serialize) -> Result<(), DhcpError> {
        let path = self.dir.join(name);
        let err = |reason: String| DhcpError::Store {
            path: path.clone(),
            reason,
        };
        let mut text = serde_json::to_vec_pretty(value).map_err(|e| err(e.to_string()))?;
        text.push(b'\n');
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}-{name}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // The rename is durable only once the directory entry is.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(format!("writing: {e}"))
        })
    }

    /// Remove the lease of `client_id` (absent is fine).
    pub fn remove(&self, client_id: &str) -> Result<(), DhcpError> {
        self.remove_path(self.path_for(client_id))
    }

    /// Remove the intent of `client_id` (absent is fine).
    pub fn remove_intent(&self, client_id: &str) -> Result<(), DhcpError> {
        self.remove_path(self.intent_path_for(client_id))
    }

    fn remove_path(&self, path: PathBuf) -> Result<(), DhcpError> {
        match fs::remove_file(&path) {
            Ok(()) => {
                let _ = File::open(&self.dir).and_then(|d| d.sync_all());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DhcpError::Store {
                path,
                reason: format!("removing: {e}"),
            }),
        }
    }

    /// The intent of `client_id`, if one is on disk.
    pub fn load_intent(&self, client_id: &str) -> Result<Option<Intent>, DhcpError> {
        read_json(self.intent_path_for(client_id))
    }

    /// Every intent file: parsed intents, and the paths of files that did not parse.
    pub fn load_intents(&self) -> Result<LoadedIntents, DhcpError> {
        let mut intents = Vec::new();
        let mut bad = Vec::new();
        for path in self.files(INTENT_SUFFIX)? {
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Intent>(&b).map_err(|e| e.to_string()))
            {
                Ok(i) => intents.push(i),
                Err(e) => bad.push((path, e)),
            }
        }
        intents.sort_by(|a, b| a.lease.client_id.cmp(&b.lease.client_id));
        Ok((intents, bad))
    }

    /// The files in the state directory ending in `suffix`.
    fn files(&self, suffix: &str) -> Result<Vec<PathBuf>, DhcpError> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| DhcpError::io(format!("listing {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry =
                entry.map_err(|e| DhcpError::io(format!("listing {}", self.dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(TMP_PREFIX) && name.ends_with(suffix) {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    pub fn load(&self, client_id: &str) -> Result<Option<Lease>, DhcpError> {
        read_json(self.path_for(client_id))
    }

    /// Every lease file: parsed leases, and the paths of files that did not parse.
    /// Temp files left by a crash mid-write are deleted.
    pub fn load_all(&self) -> Result<Loaded, DhcpError> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| DhcpError::io(format!("listing {}", self.dir.display()), e))?;
        let mut leases = Vec::new();
        let mut bad = Vec::new();
        for entry in rd {
            let entry =
                entry.map_err(|e| DhcpError::io(format!("listing {}", self.dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Lease>(&b).map_err(|e| e.to_string()))
            {
                Ok(l) => leases.push(l),
                Err(e) => bad.push((path, e)),
            }
        }
        leases.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok((leases, bad))
    }
}

/// `path` parsed, or None when it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<Option<T>, DhcpError> {
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DhcpError::Store {
                path,
                reason: format!("parsing: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DhcpError::Store {
            path,
            reason: format!("reading: {e}"),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_safe() {
        assert_eq!(file_name("c1/net/eth0"), "c1_2fnet_2feth0.lease");
        assert_ne!(file_name("a_b"), file_name("a/b"));
        assert_eq!(file_name("..x"), "_2e.x.lease");
        let long = "y".repeat(254);
        let n = file_name(&long);
        assert!(n.len() < 255, "{}", n.len());
        assert_ne!(n, file_name(&format!("{}z", "y".repeat(253))));
        assert_eq!(intent_file_name("c1/net/eth0"), "c1_2fnet_2feth0.intent");
    }

    #[test]
    fn intents_are_saved_listed_and_removed_apart_from_leases() {
        let dir = std::env::temp_dir().join(format!("mvt-{}-store-intent", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "clientId": "c/n/eth0", "containerId": "c", "network": "n", "ifname": "eth0",
            "netns": "/x", "netnsId": [0, 0], "mac": "02:00:00:00:00:01",
            "grant": {"address": "0.0.0.0/0", "serverId": "0.0.0.0", "gateway": null,
                      "routes": [], "leaseSecs": 0, "t1Secs": 0, "t2Secs": 0},
            "boundAt": 0, "renewAt": 0, "rebindAt": 0, "expiresAt": 0,
            "options": {"provide": {}, "request": []},
            "uplink": {"index": 3, "name": "eth0"}
        }))
        .unwrap();
        let mut intent = Intent {
            lease: lease.clone(),
            requested: Vec::new(),
            created_at: 1,
        };
        let r = crate::lease::Requested {
            address: std::net::Ipv4Addr::new(198, 18, 0, 9),
            server_id: std::net::Ipv4Addr::new(198, 18, 0, 1),
            xid: 5,
        };
        assert!(intent.add(r));
        assert!(!intent.add(crate::lease::Requested { xid: 6, ..r }));
        store.save_intent(&intent).unwrap();
        assert_eq!(store.load_intent("c/n/eth0").unwrap(), Some(intent.clone()));
        // Intents are not leases, and the other way round.
        assert!(store.load_all().unwrap().0.is_empty());
        store.save(&lease).unwrap();
        assert_eq!(store.load_all().unwrap().0, vec![lease]);
        assert_eq!(store.load_intents().unwrap().0, vec![intent]);
        store.remove_intent("c/n/eth0").unwrap();
        store.remove_intent("c/n/eth0").unwrap();
        assert!(store.load_intents().unwrap().0.is_empty());
        assert_eq!(store.load_all().unwrap().0.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
