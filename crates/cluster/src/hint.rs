//! The node's local view of its blocks: which blocks it holds (with the block key's create
//! revision) and which addresses in them it has handed out. Only a hint — etcd is the truth:
//! every allocation still compares the address key and the block key in its transaction. It
//! lets the common ADD be one round trip. Guarded by flock so a node's plugins share it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// Another local process held the claim lock until our deadline.
    #[error("{path} stayed locked by another claim until the deadline")]
    Busy { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One held block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintBlock {
    /// Range id.
    pub range: String,
    pub index: u64,
    /// Create revision of the block key when claimed.
    pub rev: i64,
    /// Offsets inside the block believed taken.
    #[serde(default)]
    pub used: BTreeSet<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hint {
    #[serde(default)]
    pub blocks: Vec<HintBlock>,
}

impl Hint {
    pub fn block_mut(&mut self, range: &str, index: u64) -> Option<&mut HintBlock> {
        self.blocks
            .iter_mut()
            .find(|b| b.range == range && b.index == index)
    }

    pub fn remove(&mut self, range: &str, index: u64) {
        self.blocks
            .retain(|b| !(b.range == range && b.index == index));
    }
}

/// The hint file of one (network, node).
#[derive(Debug, Clone)]
pub struct HintFile {
    path: PathBuf,
}

impl HintFile {
    pub fn new(data_dir: &Path, network: &str, node: &str) -> Self {
        Self {
            path: data_dir.join(network).join(format!("{node}.blocks.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serialize block claims of this node's processes: an exclusive flock on a side file,
    /// polled so the wait ends at `deadline` (the holder is bounded by its own deadline; a
    /// killed holder's lock goes with its process).
    pub fn lock_claims(&self, deadline: Instant) -> Result<Flock<File>, HintError> {
        let path = self.path.with_extension("claim.lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HintError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| HintError::Open {
                path: path.clone(),
                source,
            })?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(l),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(HintError::Busy { path }),
                Err((_, source)) => return Err(HintError::Lock { path, source }),
            }
        }
    }

    /// Run `f` on the hint under an exclusive lock and write back what it leaves.
    /// An unreadable file counts as empty (the next resync refills it from etcd).
    pub fn update<T>(&self, f: impl FnOnce(&mut Hint) -> T) -> Result<T, HintError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HintError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|source| HintError::Open {
                path: self.path.clone(),
                source,
            })?;
        let mut file: Flock<File> =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, source)| HintError::Lock {
                path: self.path.clone(),
                source,
            })?;
        let mut text = String::new();
        let mut hint: Hint = match file.read_to_string(&mut text) {
            Ok(_) => serde_json::from_str(&text).unwrap_or_default(),
            Err(_) => Hint::default(),
        };
        let out = f(&mut hint);
        let bytes = serde_json::to_vec(&hint).unwrap_or_else(|_| b"{}".to_vec());
        let w = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&bytes)
        };
        w(&mut file).map_err(|source| HintError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(out)
    }
}
