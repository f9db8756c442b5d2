//! Network namespaces: references, `ip netns`-compatible create/delete, and
//! running code or commands inside one without moving the caller's thread.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use crate::{Error, Result};

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
        match self {
            NetnsRef::Current => PathBuf::from("/proc/thread-self/ns/net"),
            NetnsRef::Named(name) => Path::new(NETNS_RUN_DIR).join(name),
            NetnsRef::Path(p) => p.clone(),
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    /// Open the namespace file (O_RDONLY|O_CLOEXEC); fails if it is not an nsfs net namespace.
    pub fn open(&self) -> Result<OwnedFd> {
        let path = self.path();
        let op = || format!("opening network namespace {}", self.label());
        if let NetnsRef::Named(name) = self {
            check_name(name)?;
        }
        let file = File::open(&path).map_err(|e| Error::io(op(), e))?;
        let fd = OwnedFd::from(file);
        let fs = fstatfs(&fd).map_err(|e| Error::io(op(), e.into()))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(Error::Invalid(format!(
                "{}: {} is not a namespace file",
                op(),
                path.display()
            )));
        }
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd we own.
        let kind = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
        if kind < 0 {
            return Err(Error::io(op(), std::io::Error::last_os_error()));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(Error::Invalid(format!(
                "{}: {} is not a network namespace",
                op(),
                path.display()
            )));
        }
        Ok(fd)
    }

    /// (dev, inode) of the namespace, for de-duplication.
    pub fn id(&self) -> Result<(u64, u64)> {
        let meta = fs::metadata(self.path())
            .map_err(|e| Error::io(format!("reading network namespace {}", self.label()), e))?;
        Ok((meta.dev(), meta.ino()))
    }

    /// Human label: "root", a name, a path or "pid 123".
    pub fn label(&self) -> String {
        match self {
            NetnsRef::Current => "root".to_string(),
            NetnsRef::Named(name) => name.clone(),
            NetnsRef::Path(p) => p.display().to_string(),
            NetnsRef::Pid(pid) => format!("pid {pid}"),
        }
    }
}

impl std::fmt::Display for NetnsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A namespace name must be one path component, as `ip netns` requires.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 255
    {
        return Err(Error::Invalid(format!(
            "invalid network namespace name {name:?}"
        )));
    }
    Ok(())
}

fn nix_io(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// Make /run/netns a shared mount point, as iproute2 does, so namespace bind
/// mounts propagate to other mount namespaces (containers, `ip netns exec`).
fn prepare_run_dir() -> Result<()> {
    // Two threads seeing "not a mount point" at once would stack two bind mounts.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let op = format!("preparing {NETNS_RUN_DIR}");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_RUN_DIR)
        .map_err(|e| Error::io(op.clone(), e))?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet; bind it onto itself and try once more.
        Err(Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::io(format!("{op}: bind mount"), nix_io(e)))?;
            shared().map_err(|e| Error::io(format!("{op}: make shared"), nix_io(e)))
        }
        Err(e) => Err(Error::io(format!("{op}: make shared"), nix_io(e))),
    }
}

/// Create a named namespace exactly like `ip netns add NAME`: a fresh netns
/// bind-mounted on /run/netns/NAME (with /run/netns made a shared mount point).
/// Fails with EEXIST-kind error if the name is taken.
pub fn add(name: &str) -> Result<NetnsRef> {
    check_name(name)?;
    prepare_run_dir()?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let op = format!("creating network namespace {name}");
    // O_EXCL: the name is ours or the call fails with EEXIST.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(|e| Error::io(op.clone(), e))?;
    let bind_path = path.clone();
    let res = std::thread::scope(|s| {
        s.spawn(move || -> Result<()> {
            // This thread alone enters the new namespace and then ends.
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(format!("{op}: unshare"), nix_io(e)))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &bind_path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::io(format!("{op}: bind mount"), nix_io(e)))
        })
        .join()
    });
    let res = match res {
        Ok(r) => r,
        Err(_) => Err(Error::Invalid(format!(
            "creating network namespace {name}: worker thread panicked"
        ))),
    };
    if let Err(e) = res {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(NetnsRef::Named(name.to_string()))
}

/// Delete a named namespace like `ip netns del NAME` (umount + unlink). Missing is an error
/// unless `ignore_missing`.
pub fn del(name: &str, ignore_missing: bool) -> Result<()> {
    check_name(name)?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let op = format!("deleting network namespace {name}");
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: the file exists but is not mounted (half-created); still unlink it.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(Errno::ENOENT) if ignore_missing => return Ok(()),
        Err(e) => return Err(Error::io(op, nix_io(e))),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ignore_missing => Ok(()),
        Err(e) => Err(Error::io(op, e)),
    }
}

/// Names under /run/netns, sorted.
pub fn list() -> Result<Vec<String>> {
    let dir = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {NETNS_RUN_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::io(format!("listing {NETNS_RUN_DIR}"), e))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Run `f` on a fresh thread that has entered `ns`; the thread ends afterwards,
/// so no thread is ever left in a foreign namespace.
pub fn run_in<T, F>(ns: &NetnsRef, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    // Opened on the caller's thread, so `Current` means the caller's namespace.
    let fd = ns.open()?;
    let label = ns.label();
    let joined = std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            setns(&fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(format!("entering network namespace {label}"), nix_io(e)))?;
            Ok(f())
        })
        .join()
    });
    match joined {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Run `f` on the calling thread after entering `ns`, then move the thread back home.
/// For short-lived single-threaded processes (the CNI plugins), where a thread costs more
/// than the work: two setns(2) calls instead of a thread. The way back is taken even when
/// `f` panics; if it fails the process aborts, as a thread stranded in a foreign
/// namespace would act there unseen.
pub fn run_here<T>(ns: &NetnsRef, f: impl FnOnce() -> T) -> Result<T> {
    if *ns == NetnsRef::Current {
        return Ok(f());
    }
    let target = ns.open()?;
    let home = NetnsRef::Current.open()?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::io(
            format!("entering network namespace {}", ns.label()),
            nix_io(e),
        )
    })?;
    struct GoHome(OwnedFd);
    impl Drop for GoHome {
        fn drop(&mut self) {
            if let Err(e) = setns(&self.0, CloneFlags::CLONE_NEWNET) {
                eprintln!("fatal: cannot return to the original network namespace: {e}");
                std::process::abort();
            }
        }
    }
    let _home = GoHome(home);
    Ok(f())
}

/// A `std::process::Command` that will enter `ns` (setns in pre_exec) before exec.
pub fn command_in(ns: &NetnsRef, program: &str) -> Result<std::process::Command> {
    let fd = ns.open()?;
    let mut cmd = std::process::Command::new(program);
    // SAFETY: the closure runs in the forked child before exec and only calls
    // setns(2), which is async-signal-safe; it allocates nothing. The fd is
    // owned by the closure, so it stays open until the Command is dropped, and
    // it is O_CLOEXEC so the program does not inherit it.
    unsafe {
        cmd.pre_exec(move || setns(&fd, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
    }
    Ok(cmd)
}
