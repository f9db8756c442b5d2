//! macvtap character devices: finding, creating and opening `/dev/tapN`, and
//! decoding the Ethernet frames read from it.
//!
//! Facts from `drivers/net/tap.c` and `drivers/net/macvtap.c`:
//! - every macvtap link gets a char device named `tap<ifindex>`; its major is the
//!   "macvtap" line of /proc/devices and its minor comes from an IDR (not derivable);
//! - each `open()` of the device adds one queue; a queue starts with
//!   `IFF_TAP|IFF_NO_PI|IFF_VNET_HDR` and a 10-byte vnet header;
//! - `TUNSETIFF` ignores the name and only accepts `IFF_TAP|IFF_NO_PI` plus
//!   `IFF_VNET_HDR`/`IFF_MULTI_QUEUE` (else EINVAL);
//! - `TUNSETOFFLOAD` sets the link-wide offloads; `TUN_F_TSO*`/`TUN_F_UFO` only count with
//!   `TUN_F_CSUM`.
//!
//! Finding the device number robustly: devtmpfs names the node `tap<ifindex>`, but ifindex
//! is per network namespace, so two macvtaps in two namespaces can both be `tap3`; then
//! `/dev/tap3` belongs to whichever came first, and disappears with it. The only place
//! that maps *this* link to its major:minor is sysfs
//! (`/sys/class/net/NAME/macvtap/tapN/dev`), and sysfs shows the network namespace that
//! was current when it was mounted. So [`device_number`] mounts a fresh sysfs on a
//! short-lived thread that has its own (private) mount namespace and has entered the
//! link's network namespace; the thread and its mount namespace then vanish. Nodes are
//! only trusted when their `st_rdev` matches that number.

use std::fmt;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{makedev, mknod, Mode as FileMode, SFlag};
use nix::unistd::{chown, Gid, Uid};

use crate::{Error, Handle, LinkKind, MacAddr, NetnsRef, Result};

/// Size of `struct virtio_net_hdr_mrg_rxbuf`, the header qemu's virtio-net (virtio 1.0) uses.
pub const VNET_HDR_LEN: i32 = 12;
/// The driver's MAX_TAP_QUEUES.
pub const MAX_QUEUES: usize = 256;

nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, libc::ifreq);
nix::ioctl_read_bad!(tun_get_iff, libc::TUNGETIFF, libc::ifreq);
nix::ioctl_write_ptr_bad!(tun_set_vnet_hdr_sz, libc::TUNSETVNETHDRSZ, libc::c_int);
nix::ioctl_read_bad!(tun_get_vnet_hdr_sz, libc::TUNGETVNETHDRSZ, libc::c_int);
nix::ioctl_write_int_bad!(tun_set_offload, libc::TUNSETOFFLOAD);

/// `/dev/tapN`: where devtmpfs puts the char device of the macvtap with ifindex N.
pub fn device_path(index: u32) -> PathBuf {
    PathBuf::from(format!("/dev/tap{index}"))
}

/// A macvtap named by name or by ifindex (in some namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapLink {
    Name(String),
    Index(u32),
}

impl From<&str> for TapLink {
    fn from(s: &str) -> Self {
        TapLink::Name(s.to_string())
    }
}

impl From<String> for TapLink {
    fn from(s: String) -> Self {
        TapLink::Name(s)
    }
}

impl From<u32> for TapLink {
    fn from(i: u32) -> Self {
        TapLink::Index(i)
    }
}

impl fmt::Display for TapLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapLink::Name(n) => f.write_str(n),
            TapLink::Index(i) => write!(f, "ifindex {i}"),
        }
    }
}

/// A macvtap link and its character device number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TapDevice {
    pub name: String,
    pub index: u32,
    pub mac: Option<MacAddr>,
    pub up: bool,
    pub major: u32,
    pub minor: u32,
}

impl TapDevice {
    /// The `dev_t` of the char device.
    pub fn rdev(&self) -> libc::dev_t {
        makedev(u64::from(self.major), u64::from(self.minor))
    }
}

/// Look up a macvtap in `ns` and read its char device number (see the module docs).
pub fn resolve(ns: &NetnsRef, link: &TapLink) -> Result<TapDevice> {
    let mut h = Handle::open(ns)?;
    let info = match link {
        TapLink::Name(n) => h.link_by_name(n)?,
        TapLink::Index(i) => h.link_by_index(*i)?,
    };
    if info.kind != LinkKind::Macvtap {
        return Err(Error::Invalid(format!(
            "{} in {ns} is not a macvtap link (it has no /dev/tapN)",
            info.name
        )));
    }
    let (major, minor) = match device_number(ns, &info.name, info.index) {
        Ok(v) => v,
        // No CAP_SYS_ADMIN for a private sysfs: the process's own /sys may still show
        // the link; trust it only when name, ifindex and MAC all agree.
        Err(e) if matches!(e.errno(), Some(Errno::EPERM | Errno::EACCES)) => {
            match device_number_from_sysfs(Path::new("/sys"), &info.name, info.index, info.mac) {
                Some(v) => v,
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    Ok(TapDevice {
        name: info.name,
        index: info.index,
        mac: info.mac,
        up: info.up,
        major,
        minor,
    })
}

/// major:minor from an already mounted sysfs at `root`, when its `class/net/NAME` has
/// the same ifindex and MAC (so it is this link, not a namesake in another namespace).
pub fn device_number_from_sysfs(
    root: &Path,
    name: &str,
    index: u32,
    mac: Option<MacAddr>,
) -> Option<(u32, u32)> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let base = root.join("class/net").join(name);
    let read = |f: &str| std::fs::read_to_string(base.join(f)).ok();
    if read("ifindex")?.trim() != index.to_string() {
        return None;
    }
    let sys_mac: MacAddr = read("address")?.trim().parse().ok()?;
    if Some(sys_mac) != mac {
        return None;
    }
    parse_dev(read(&format!("macvtap/tap{index}/dev"))?.trim())
}

/// major:minor of the macvtap `name` (ifindex `index`) in `ns`, read from a sysfs mounted
/// privately inside that namespace (needs CAP_SYS_ADMIN).
pub fn device_number(ns: &NetnsRef, name: &str, index: u32) -> Result<(u32, u32)> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::Invalid(format!("invalid link name {name:?}")));
    }
    let op = format!("reading the char device number of {name} in {ns} from sysfs");
    let base = format!("/sys/class/net/{name}");
    let dev_file = format!("{base}/macvtap/tap{index}/dev");
    let index_file = format!("{base}/ifindex");
    let read = crate::netns::run_in(ns, move || -> Result<(String, String)> {
        let io = |step: &str, e: Errno| Error::io(step.to_string(), e.into());
        // This thread alone gets a new mount namespace; it ends with the thread.
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| io("unshare(CLONE_NEWNS)", e))?;
        // Private first, so the sysfs mount below cannot propagate to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| io("making / private", e))?;
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| io("mounting sysfs", e))?;
        let idx = std::fs::read_to_string(&index_file)
            .map_err(|e| Error::io(format!("reading {index_file}"), e))?;
        let dev = std::fs::read_to_string(&dev_file)
            .map_err(|e| Error::io(format!("reading {dev_file}"), e))?;
        Ok((idx, dev))
    });
    let (idx, dev) = match read {
        Ok(Ok(v)) => v,
        Ok(Err(e)) | Err(e) => return Err(retitle(e, &op)),
    };
    if idx.trim() != index.to_string() {
        return Err(Error::Invalid(format!(
            "{op}: {name} has ifindex {} in sysfs, expected {index} (renamed or replaced meanwhile?)",
            idx.trim()
        )));
    }
    parse_dev(dev.trim()).ok_or_else(|| Error::Protocol {
        op,
        detail: format!("unexpected sysfs dev value {:?}", dev.trim()),
    })
}

fn retitle(e: Error, op: &str) -> Error {
    match e {
        Error::Io { op: step, source } => Error::Io {
            op: format!("{op}: {step}"),
            source,
        },
        Error::Invalid(m) => Error::Invalid(format!("{op}: {m}")),
        other => other,
    }
}

/// "MAJ:MIN" → (major, minor).
fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The "macvtap" char major from /proc/devices (None when the driver is not loaded).
pub fn macvtap_major() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/devices").ok()?;
    text.lines()
        .skip_while(|l| !l.starts_with("Character devices"))
        .take_while(|l| !l.starts_with("Block devices"))
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let major = it.next()?.parse().ok()?;
            (it.next()? == "macvtap").then_some(major)
        })
}

/// Is `path` a char device node for `rdev`? `Ok(None)` when it does not exist.
fn node_matches(path: &Path, rdev: libc::dev_t) -> Result<Option<bool>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.file_type().is_char_device() && m.rdev() == rdev)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("inspecting {}", path.display()), e)),
    }
}

/// Make sure `dev_dir/tapN` is the char device of the macvtap `link` in `ns` (for a
/// container's private /dev). Creates it (mode 0600, or 0660 when `group` is given) when
/// missing; an existing node with the right device number is kept. `owner`/`group` are
/// applied in both cases. A node with a *different* device number (another namespace's
/// tapN) is an error, never overwritten. Returns the path and whether it was created.
pub fn ensure_device_node(
    ns: &NetnsRef,
    link: impl Into<TapLink>,
    dev_dir: &Path,
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<(PathBuf, bool)> {
    let dev = resolve(ns, &link.into())?;
    let path = dev_dir.join(format!("tap{}", dev.index));
    let created = match node_matches(&path, dev.rdev())? {
        Some(true) => false,
        Some(false) => {
            return Err(Error::Invalid(format!(
                "{} exists but is not char device {}:{} of {} (another namespace's tap{}?)",
                path.display(),
                dev.major,
                dev.minor,
                dev.name,
                dev.index
            )))
        }
        None => {
            let perm = if group.is_some() { 0o660 } else { 0o600 };
            make_node(&path, &dev, perm)?;
            true
        }
    };
    if owner.is_some() || group.is_some() {
        chown(&path, owner.map(Uid::from_raw), group.map(Gid::from_raw)).map_err(|e| {
            Error::io(
                format!("setting owner/group of {}", path.display()),
                e.into(),
            )
        })?;
    }
    Ok((path, created))
}

fn make_node(path: &Path, dev: &TapDevice, perm: u32) -> Result<()> {
    mknod(
        path,
        SFlag::S_IFCHR,
        FileMode::from_bits_truncate(perm),
        dev.rdev(),
    )
    .map_err(|e| {
        Error::io(
            format!(
                "creating char device {} ({}:{}) for {}",
                path.display(),
                dev.major,
                dev.minor,
                dev.name
            ),
            e.into(),
        )
    })?;
    // mknod honours the umask; the mode must be exact.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(perm))
        .map_err(|e| Error::io(format!("setting mode of {}", path.display()), e))
}

/// Link-wide offloads for `TUNSETOFFLOAD` (what the reader of the vnet header accepts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Offloads {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
    pub ufo: bool,
}

impl Offloads {
    /// The TUN_F_* bits.
    pub fn bits(&self) -> libc::c_uint {
        let mut b = 0;
        if self.csum {
            b |= libc::TUN_F_CSUM;
        }
        if self.tso4 {
            b |= libc::TUN_F_TSO4;
        }
        if self.tso6 {
            b |= libc::TUN_F_TSO6;
        }
        if self.ufo {
            b |= libc::TUN_F_UFO;
        }
        b
    }

    pub fn is_empty(&self) -> bool {
        self.bits() == 0
    }

    /// The kernel silently ignores TSO/UFO without checksum offload: say so instead.
    pub fn validate(&self) -> Result<()> {
        if !self.csum && (self.tso4 || self.tso6 || self.ufo) {
            return Err(Error::Invalid(
                "offloads tso4, tso6 and ufo need csum too (the kernel ignores them without it)"
                    .to_string(),
            ));
        }
        Ok(())
    }
}

impl FromStr for Offloads {
    type Err = Error;
    /// "csum,tso4,tso6,ufo" (any subset, comma separated; "" or "none" = no offloads).
    fn from_str(s: &str) -> Result<Self> {
        let mut o = Offloads::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "csum" => o.csum = true,
                "tso4" => o.tso4 = true,
                "tso6" => o.tso6 = true,
                "ufo" => o.ufo = true,
                "none" => {}
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown offload {other:?}: expected csum, tso4, tso6, ufo"
                    )))
                }
            }
        }
        Ok(o)
    }
}

impl fmt::Display for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.csum, "csum"),
            (self.tso4, "tso4"),
            (self.tso6, "tso6"),
            (self.ufo, "ufo"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Open `path` (a macvtap char device) `n` times: one queue per fd. Each fd gets
/// `TUNSETIFF` IFF_TAP|IFF_NO_PI, plus IFF_VNET_HDR when `vnet_hdr` and IFF_MULTI_QUEUE
/// when n > 1; with `vnet_hdr` also `TUNSETVNETHDRSZ` [`VNET_HDR_LEN`] and `TUNSETOFFLOAD`.
/// Without `vnet_hdr` the frames are plain Ethernet (the driver's default would prepend
/// a header). The fds are blocking and close-on-exec.
pub fn open_queues(
    path: &Path,
    n: usize,
    vnet_hdr: bool,
    offloads: Offloads,
) -> Result<Vec<OwnedFd>> {
    if n == 0 || n > MAX_QUEUES {
        return Err(Error::Invalid(format!(
            "queue count {n} out of range 1..={MAX_QUEUES}"
        )));
    }
    offloads.validate()?;
    if !vnet_hdr && !offloads.is_empty() {
        return Err(Error::Invalid(format!(
            "offloads {offloads} need the vnet header (the reader must learn about partial checksums and GSO)"
        )));
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if n > 1 {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let mut fds = Vec::with_capacity(n);
    for q in 0..n {
        let what = |step: &str| format!("{step} on {} (queue {q})", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(what("opening"), e))?;
        let fd = OwnedFd::from(file);
        match set_flags(fd.as_fd(), flags) {
            Ok(()) => {}
            // Kernels before IFF_MULTI_QUEUE refuse the flag; every open is a queue anyway.
            Err(Errno::EINVAL) if flags & libc::IFF_MULTI_QUEUE != 0 => {
                set_flags(fd.as_fd(), flags & !libc::IFF_MULTI_QUEUE)
                    .map_err(|e| Error::io(what("TUNSETIFF"), e.into()))?;
            }
            Err(e) => return Err(Error::io(what("TUNSETIFF"), e.into())),
        }
        if vnet_hdr {
            set_vnet_hdr_len(fd.as_fd(), VNET_HDR_LEN)
                .map_err(|e| Error::io(what("TUNSETVNETHDRSZ"), e.into()))?;
            set_offload(fd.as_fd(), offloads)
                .map_err(|e| Error::io(what("TUNSETOFFLOAD"), e.into()))?;
        }
        fds.push(fd);
    }
    Ok(fds)
}

/// Open the macvtap `link` in `ns` `n` times (see [`open_queues`]). Uses `/dev/tapN` when
/// it is this link's node; otherwise (missing, or another namespace's tapN) opens a
/// temporary node `/dev/.macvnet-tapN-PID`, removed again before returning.
pub fn open_link_queues(
    ns: &NetnsRef,
    link: &TapLink,
    n: usize,
    vnet_hdr: bool,
    offloads: Offloads,
) -> Result<(TapDevice, Vec<OwnedFd>)> {
    let dev = resolve(ns, link)?;
    let path = device_path(dev.index);
    if node_matches(&path, dev.rdev())? == Some(true) {
        let fds = open_queues(&path, n, vnet_hdr, offloads)?;
        return Ok((dev, fds));
    }
    tracing::info!(
        "{} is missing or not {}:{}; using a temporary node",
        path.display(),
        dev.major,
        dev.minor
    );
    let tmp = PathBuf::from(format!(
        "/dev/.macvnet-tap{}-{}",
        dev.index,
        std::process::id()
    ));
    // A leftover from a crashed run of this same pid cannot be in use.
    let _ = std::fs::remove_file(&tmp);
    make_node(&tmp, &dev, 0o600)?;
    let res = open_queues(&tmp, n, vnet_hdr, offloads);
    if let Err(e) = std::fs::remove_file(&tmp) {
        tracing::warn!("removing temporary node {}: {e}", tmp.display());
    }
    Ok((dev, res?))
}

fn ifreq_with_flags(flags: libc::c_int) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a char array and a union of integers/arrays);
    // all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // TUN flags fit in the 16-bit ifr_flags.
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    req
}

/// `TUNSETIFF` with `flags` (the macvtap driver ignores the name).
pub fn set_flags(fd: BorrowedFd<'_>, flags: libc::c_int) -> std::result::Result<(), Errno> {
    let req = ifreq_with_flags(flags);
    // SAFETY: the fd is valid for the borrow; the kernel reads one ifreq from &req.
    unsafe { tun_set_iff(fd.as_raw_fd(), &req) }.map(drop)
}

/// `TUNGETIFF`: the queue's IFF_* flags.
pub fn get_flags(fd: BorrowedFd<'_>) -> std::result::Result<libc::c_int, Errno> {
    get_iff(fd).map(|(_, f)| f)
}

/// `TUNGETIFF`: the name of the link the queue belongs to (as the kernel sees it now)
/// and the queue's IFF_* flags. ENOLINK when the link is gone.
pub fn get_iff(fd: BorrowedFd<'_>) -> std::result::Result<(String, libc::c_int), Errno> {
    let mut req = ifreq_with_flags(0);
    // SAFETY: the fd is valid for the borrow; the kernel writes one ifreq into &mut req.
    unsafe { tun_get_iff(fd.as_raw_fd(), &mut req) }?;
    // SAFETY: TUNGETIFF fills ifr_flags; every bit pattern is a valid c_short.
    let f = unsafe { req.ifr_ifru.ifru_flags };
    // c_char is i8 or u8 by target; the bytes are the same.
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    // The flags are a bit set: keep the 16 bits as they are.
    Ok((
        String::from_utf8_lossy(&bytes).into_owned(),
        libc::c_int::from(f as u16),
    ))
}

/// `TUNSETVNETHDRSZ`.
pub fn set_vnet_hdr_len(fd: BorrowedFd<'_>, len: i32) -> std::result::Result<(), Errno> {
    // SAFETY: the fd is valid for the borrow; the kernel reads one int from &len.
    unsafe { tun_set_vnet_hdr_sz(fd.as_raw_fd(), &len) }.map(drop)
}

/// `TUNGETVNETHDRSZ`.
pub fn get_vnet_hdr_len(fd: BorrowedFd<'_>) -> std::result::Result<i32, Errno> {
    let mut len: libc::c_int = 0;
    // SAFETY: the fd is valid for the borrow; the kernel writes one int into &mut len.
    unsafe { tun_get_vnet_hdr_sz(fd.as_raw_fd(), &mut len) }?;
    Ok(len)
}

/// `TUNSETOFFLOAD` (link-wide).
pub fn set_offload(fd: BorrowedFd<'_>, offloads: Offloads) -> std::result::Result<(), Errno> {
    // TUN_F_* bits are small; the ioctl takes them by value.
    let bits = offloads.bits() as libc::c_int;
    // SAFETY: the fd is valid for the borrow; the argument is passed by value.
    unsafe { tun_set_offload(fd.as_raw_fd(), bits) }.map(drop)
}

/// One queue of a macvtap: frames in and out.
#[derive(Debug)]
pub struct TapQueue {
    pub fd: OwnedFd,
}

impl From<OwnedFd> for TapQueue {
    fn from(fd: OwnedFd) -> Self {
        TapQueue { fd }
    }
}

impl AsFd for TapQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl TapQueue {
    pub fn flags(&self) -> Result<libc::c_int> {
        get_flags(self.fd.as_fd()).map_err(|e| Error::io("TUNGETIFF", e.into()))
    }

    pub fn vnet_hdr_len(&self) -> Result<i32> {
        get_vnet_hdr_len(self.fd.as_fd()).map_err(|e| Error::io("TUNGETVNETHDRSZ", e.into()))
    }

    /// Write one frame (with the vnet header first when the queue has IFF_VNET_HDR).
    pub fn send(&self, frame: &[u8]) -> Result<usize> {
        nix::unistd::write(&self.fd, frame)
            .map_err(|e| Error::io("writing a frame to the tap queue", e.into()))
    }

    /// Read one frame into `buf`, waiting at most `timeout`; `Ok(None)` on timeout.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Round up so a sub-millisecond remainder does not spin.
            let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(Error::io("waiting for a frame on the tap queue", e.into())),
            }
            match nix::unistd::read(&self.fd, buf) {
                // A tap read never returns an empty frame; 0 means the queue is gone.
                Ok(0) => {
                    return Err(Error::io(
                        "reading a frame from the tap queue",
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    ))
                }
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => return Err(Error::io("reading a frame from the tap queue", e.into())),
            }
        }
    }
}

// ---- frame decoding ----

/// ARP (Ethernet/IPv4) in a frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArpSummary {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

/// ICMP / ICMPv6 type and code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IcmpSummary {
    #[serde(rename = "type")]
    pub kind: u8,
    pub code: u8,
    /// "echo request", "neighbor solicitation"... empty when unknown.
    pub name: String,
    /// Target address of an IPv6 neighbor solicitation/advertisement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Ipv6Addr>,
}

/// IPv4/IPv6 header facts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IpSummary {
    pub version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol / final IPv6 next header.
    pub proto: u8,
    pub proto_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
}

/// What a frame read from a tap queue is, one line's worth (`Display` is tcpdump-like).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FrameSummary {
    pub len: usize,
    pub src: Option<MacAddr>,
    pub dst: Option<MacAddr>,
    /// 802.1Q VLAN id when the frame is tagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub ethertype: Option<u16>,
    /// "ARP", "IPv4", "IPv6" or "0xNNNN".
    pub proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp: Option<ArpSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpSummary>,
    /// The frame ended before a header it announced.
    pub truncated: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn mac_at(b: &[u8], at: usize) -> Option<MacAddr> {
    MacAddr::from_slice(b.get(at..at + 6)?)
}

fn v4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(s))
}

fn v6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

fn ethertype_name(t: u16) -> String {
    match t {
        0x0806 => "ARP".to_string(),
        0x0800 => "IPv4".to_string(),
        0x86dd => "IPv6".to_string(),
        0x88cc => "LLDP".to_string(),
        t if t < 0x0600 => "802.3".to_string(),
        t => format!("0x{t:04x}"),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".to_string(),
        2 => "IGMP".to_string(),
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        58 => "ICMPv6".to_string(),
        132 => "SCTP".to_string(),
        p => format!("proto {p}"),
    }
}

fn icmp4_name(t: u8) -> &'static str {
    match t {
        0 => "echo reply",
        3 => "destination unreachable",
        5 => "redirect",
        8 => "echo request",
        11 => "time exceeded",
        _ => "",
    }
}

fn icmp6_name(t: u8) -> &'static str {
    match t {
        1 => "destination unreachable",
        2 => "packet too big",
        3 => "time exceeded",
        128 => "echo request",
        129 => "echo reply",
        130 => "multicast listener query",
        131 | 143 => "multicast listener report",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        _ => "",
    }
}

/// Summarize an Ethernet frame (no vnet header in front). Never panics on short input.
pub fn describe_frame(frame: &[u8]) -> FrameSummary {
    let mut s = FrameSummary {
        len: frame.len(),
        src: mac_at(frame, 6),
        dst: mac_at(frame, 0),
        vlan: None,
        ethertype: None,
        proto: String::new(),
        arp: None,
        ip: None,
        truncated: false,
    };
    let mut off = 12;
    let mut etype = match be16(frame, off) {
        Some(t) => t,
        None => {
            s.truncated = true;
            s.proto = "truncated".to_string();
            return s;
        }
    };
    off += 2;
    if etype == 0x8100 || etype == 0x88a8 {
        match (be16(frame, off), be16(frame, off + 2)) {
            (Some(tci), Some(inner)) => {
                s.vlan = Some(tci & 0x0fff);
                etype = inner;
                off += 4;
            }
            _ => {
                s.truncated = true;
            }
        }
    }
    s.ethertype = Some(etype);
    s.proto = ethertype_name(etype);
    let payload = frame.get(off..).unwrap_or(&[]);
    match etype {
        0x0806 => {
            s.arp = decode_arp(payload);
            s.truncated |= s.arp.is_none();
        }
        0x0800 => {
            s.ip = decode_ipv4(payload);
            s.truncated |= s.ip.is_none();
        }
        0x86dd => {
            s.ip = decode_ipv6(payload);
            s.truncated |= s.ip.is_none();
        }
        _ => {}
    }
    s
}

fn decode_arp(p: &[u8]) -> Option<ArpSummary> {
    // Ethernet hardware (1), IPv4 protocol, 6- and 4-byte addresses.
    if be16(p, 0)? != 1 || be16(p, 2)? != 0x0800 || *p.get(4)? != 6 || *p.get(5)? != 4 {
        return None;
    }
    Some(ArpSummary {
        op: be16(p, 6)?,
        sender_mac: mac_at(p, 8)?,
        sender_ip: v4_at(p, 14)?,
        target_mac: mac_at(p, 18)?,
        target_ip: v4_at(p, 24)?,
    })
}

fn decode_l4(ip: &mut IpSummary, l4: &[u8], v6: bool) {
    match ip.proto {
        1 | 58 => {
            if let (Some(&t), Some(&c)) = (l4.first(), l4.get(1)) {
                let name = if v6 { icmp6_name(t) } else { icmp4_name(t) };
                // NS/NA carry the address they are about after 4 reserved bytes.
                let target = if v6 && (t == 135 || t == 136) {
                    v6_at(l4, 8)
                } else {
                    None
                };
                ip.icmp = Some(IcmpSummary {
                    kind: t,
                    code: c,
                    name: name.to_string(),
                    target,
                });
            }
        }
        6 | 17 | 132 => {
            ip.sport = be16(l4, 0);
            ip.dport = be16(l4, 2);
        }
        _ => {}
    }
}

fn decode_ipv4(p: &[u8]) -> Option<IpSummary> {
    let vihl = *p.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let proto = *p.get(9)?;
    let mut ip = IpSummary {
        version: 4,
        src: IpAddr::V4(v4_at(p, 12)?),
        dst: IpAddr::V4(v4_at(p, 16)?),
        proto,
        proto_name: proto_name(proto),
        icmp: None,
        sport: None,
        dport: None,
    };
    // Only the first fragment carries the transport header.
    let frag_off = be16(p, 6)? & 0x1fff;
    if frag_off == 0 {
        decode_l4(&mut ip, p.get(ihl..).unwrap_or(&[]), false);
    }
    Some(ip)
}

fn decode_ipv6(p: &[u8]) -> Option<IpSummary> {
    if *p.first()? >> 4 != 6 {
        return None;
    }
    let mut next = *p.get(6)?;
    let src = v6_at(p, 8)?;
    let dst = v6_at(p, 24)?;
    let mut off = 40;
    // Skip hop-by-hop, routing, fragment and destination options (bounded: 8 headers).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let n = *p.get(off)?;
                let len = (usize::from(*p.get(off + 1)?) + 1) * 8;
                next = n;
                off += len;
            }
            44 => {
                next = *p.get(off)?;
                off += 8;
            }
            _ => break,
        }
    }
    let mut ip = IpSummary {
        version: 6,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        proto: next,
        proto_name: proto_name(next),
        icmp: None,
        sport: None,
        dport: None,
    };
    decode_l4(&mut ip, p.get(off..).unwrap_or(&[]), true);
    Some(ip)
}

impl fmt::Display for FrameSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mac = |m: Option<MacAddr>| m.map(|m| m.to_string()).unwrap_or_else(|| "?".into());
        write!(f, "{} > {}", mac(self.src), mac(self.dst))?;
        if let Some(v) = self.vlan {
            write!(f, " vlan {v}")?;
        }
        match self.ethertype {
            Some(t) => write!(f, " {} (0x{t:04x}) len {}", self.proto, self.len)?,
            None => write!(f, " len {}", self.len)?,
        }
        if let Some(a) = &self.arp {
            match a.op {
                1 => write!(f, ": who-has {} tell {}", a.target_ip, a.sender_ip)?,
                2 => write!(f, ": {} is-at {}", a.sender_ip, a.sender_mac)?,
                op => write!(f, ": op {op} {} > {}", a.sender_ip, a.target_ip)?,
            }
        }
        if let Some(ip) = &self.ip {
            write!(f, ": {}", ip.src)?;
            if let Some(p) = ip.sport {
                write!(f, ".{p}")?;
            }
            write!(f, " > {}", ip.dst)?;
            if let Some(p) = ip.dport {
                write!(f, ".{p}")?;
            }
            write!(f, " {}", ip.proto_name)?;
            if let Some(i) = &ip.icmp {
                if i.name.is_empty() {
                    write!(f, " type {} code {}", i.kind, i.code)?;
                } else {
                    write!(f, " {}", i.name)?;
                }
                if let Some(t) = i.target {
                    write!(f, " {t}")?;
                }
            }
        }
        if self.truncated {
            f.write_str(" [truncated]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eth(dst: [u8; 6], src: [u8; 6], etype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&dst);
        v.extend_from_slice(&src);
        v.extend_from_slice(&etype.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn arp_request_and_reply() {
        let a = [2, 0, 0, 0, 0, 1];
        let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
        p.extend_from_slice(&a);
        p.extend_from_slice(&[198, 18, 0, 1]);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&[198, 18, 0, 2]);
        let f = eth([0xff; 6], a, 0x0806, &p);
        let s = describe_frame(&f);
        assert_eq!(s.proto, "ARP");
        let arp = s.arp.clone().unwrap();
        assert_eq!(arp.op, 1);
        assert_eq!(arp.target_ip, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(
            s.to_string(),
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP (0x0806) len 42: who-has 198.18.0.2 tell 198.18.0.1"
        );
        p[7] = 2;
        let s = describe_frame(&eth(a, a, 0x0806, &p));
        assert!(s
            .to_string()
            .ends_with("198.18.0.1 is-at 02:00:00:00:00:01"));
    }

    #[test]
    fn ipv4_icmp_and_udp() {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        ip.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
        let s = describe_frame(&eth([2; 6], [4; 6], 0x0800, &ip));
        let i = s.ip.clone().unwrap();
        assert_eq!(i.icmp.unwrap().name, "echo request");
        assert!(s
            .to_string()
            .ends_with(": 198.18.0.1 > 198.18.0.2 ICMP echo request"));
        ip[9] = 17;
        ip[20..24].copy_from_slice(&[0x14, 0xe9, 0, 53]);
        let s = describe_frame(&eth([2; 6], [4; 6], 0x0800, &ip));
        assert!(
            s.to_string()
                .ends_with(": 198.18.0.1.5353 > 198.18.0.2.53 UDP"),
            "{s}"
        );
    }

    #[test]
    fn ipv6_ns_behind_hop_by_hop_and_vlan() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        let tgt: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut ip = vec![0x60, 0, 0, 0, 0, 32, 0, 255];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]); // hop-by-hop, 8 bytes
        ip.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&tgt.octets());
        let mut vl = vec![0x00, 0x0a, 0x86, 0xdd];
        vl.extend_from_slice(&ip);
        let s = describe_frame(&eth([0x33; 6], [2; 6], 0x8100, &vl));
        assert_eq!(s.vlan, Some(10));
        let i = s.ip.clone().unwrap();
        assert_eq!(i.proto, 58);
        assert_eq!(i.icmp.clone().unwrap().target, Some(tgt));
        assert!(
            s.to_string()
                .contains("ICMPv6 neighbor solicitation 2001:db8::2"),
            "{s}"
        );
    }

    #[test]
    fn short_and_garbage_frames_do_not_panic() {
        for n in 0..80 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = describe_frame(&junk).to_string();
            for et in [0x0806u16, 0x0800, 0x86dd, 0x8100] {
                let mut f = vec![0u8; 12];
                f.extend_from_slice(&et.to_be_bytes());
                f.extend_from_slice(&junk);
                let _ = describe_frame(&f).to_string();
            }
        }
        assert!(describe_frame(&[1, 2, 3]).truncated);
    }

    #[test]
    fn offloads_parse_and_validate() {
        let o: Offloads = "csum,tso4,tso6,ufo".parse().unwrap();
        assert_eq!(
            o.bits(),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_UFO
        );
        assert_eq!(o.to_string(), "csum,tso4,tso6,ufo");
        assert!("tso4".parse::<Offloads>().unwrap().validate().is_err());
        assert!("gro".parse::<Offloads>().is_err());
        assert_eq!(parse_dev("246:3"), Some((246, 3)));
        assert_eq!(parse_dev("x"), None);
    }
}
