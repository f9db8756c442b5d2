//! `macvnet tap`: the macvtap char device (/dev/tapN) as a program or VM sees it.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use macvnet_netlink as nl;
use nl::tap::{Offloads, TapLink, TapQueue};

use crate::{CmdResult, Global};

/// First fd number handed to CMD (after stdin, stdout, stderr).
const FIRST_FD: i32 = 3;
/// Upper bound for --queues (qemu and the driver accept more; this keeps fd numbers small).
const MAX_QUEUES: usize = 64;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet tap sniff mtap0 --count 5
  macvnet tap qemu-args mtap0 --queues 2
  macvnet tap open mtap0 --queues 2 --vnet-hdr --offload csum,tso4,tso6 -- \\
      qemu-system-x86_64 -m 1G -nographic disk.img {qemu}")]
pub struct Args {
    #[command(subcommand)]
    cmd: TapCmd,
}

#[derive(Debug, clap::Subcommand)]
enum TapCmd {
    /// Open /dev/tapN (one fd per queue) and run CMD with the fds as 3, 4, ...
    #[command(after_help = "\
In ARGS, {fds} becomes the fd numbers joined by ':' (qemu's fds=3:4), {fd} the first one,
and a lone {qemu} (or {args}) argument becomes the qemu arguments `tap qemu-args` prints.
macvnet replaces itself with CMD, so CMD's exit status is the exit status. CMD runs in the
caller's network namespace; only the link is looked up in the -n namespace.
When /dev/tapN is missing or belongs to a macvtap of another namespace with the same
ifindex, a temporary node for this link's major:minor is made in /dev and removed.

Examples:
  macvnet tap open mtap0 -- sh -c 'echo {fds}; ls -l /proc/self/fd/3'
  macvnet -n vm1 tap open mtap0 --queues 4 --vnet-hdr --offload csum,tso4,tso6,ufo -- \\
      qemu-system-x86_64 -m 1G disk.img {qemu}")]
    Open {
        /// The macvtap link (in the -n namespace).
        name: String,
        /// Number of queues: the device is opened this many times (IFF_MULTI_QUEUE when > 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUES as i64))]
        queues: u16,
        /// Keep the virtio-net header in front of each frame (TUNSETVNETHDRSZ 12), as qemu wants.
        #[arg(long)]
        vnet_hdr: bool,
        /// Offloads the reader handles (TUNSETOFFLOAD): csum,tso4,tso6,ufo; needs --vnet-hdr.
        #[arg(long, value_name = "LIST")]
        offload: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// Print qemu arguments that use the fds `tap open` passes (3, 4, ...).
    #[command(after_help = "\
They go with: macvnet tap open NAME --queues N --vnet-hdr -- qemu-system-x86_64 ... {qemu}
(or paste them in place of {qemu}). vhost=on only when /dev/vhost-net exists.

Examples:
  macvnet tap qemu-args mtap0
  macvnet -n vm1 tap qemu-args mtap0 --queues 4
  macvnet -j tap qemu-args mtap0")]
    QemuArgs {
        /// The macvtap link (in the -n namespace).
        name: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUES as i64))]
        queues: u16,
        /// The qemu netdev id.
        #[arg(long, default_value = "net0")]
        id: String,
    },
    /// Read frames from the tap device and print one line per frame.
    #[command(after_help = "\
The sniffer is one more queue of the device: while a VM has the device open, the driver
spreads frames over all queues, so the sniffer sees (and takes) only its share.
Exit status 1 when --count frames did not arrive before the timeout.

Examples:
  macvnet tap sniff mtap0 --count 1 --timeout 5
  macvnet -n vm1 -j tap sniff mtap0 --timeout 30")]
    Sniff {
        /// The macvtap link (in the -n namespace).
        name: String,
        /// Stop after this many frames.
        #[arg(long, short = 'c')]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, short = 't', default_value_t = 10.0)]
        timeout: f64,
    },
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    match args.cmd {
        TapCmd::Open {
            name,
            queues,
            vnet_hdr,
            offload,
            cmd,
        } => open(
            global,
            &name,
            usize::from(queues),
            vnet_hdr,
            offload.as_deref(),
            &cmd,
        ),
        TapCmd::QemuArgs { name, queues, id } => qemu_args(global, &name, usize::from(queues), &id),
        TapCmd::Sniff {
            name,
            count,
            timeout,
        } => sniff(global, &name, count, timeout),
    }
}

/// Fails early with "namespace X not found" for a mistyped -n name.
fn check_ns(global: &Global) -> anyhow::Result<nl::NetnsRef> {
    if let nl::NetnsRef::Named(n) = global.ns() {
        let path = std::path::Path::new(nl::netns::NETNS_RUN_DIR).join(&n);
        if !path.exists() {
            bail!("namespace {n} not found (no {})", path.display());
        }
    }
    Ok(global.ns())
}

fn resolve(global: &Global, name: &str) -> anyhow::Result<nl::tap::TapDevice> {
    let ns = check_ns(global)?;
    nl::tap::resolve(&ns, &TapLink::Name(name.to_string()))
        .with_context(|| format!("finding macvtap {name} in namespace {}", global.ns_label()))
}

/// The qemu arguments for `n` queues on fds 3.. (vhost only when /dev/vhost-net exists).
fn qemu_arg_list(id: &str, n: usize, mac: Option<nl::MacAddr>) -> Vec<String> {
    let fds = fd_list(n);
    let vhost = if std::path::Path::new("/dev/vhost-net").exists() {
        "on"
    } else {
        "off"
    };
    let netdev = if n == 1 {
        format!("tap,id={id},fd={fds},vhost={vhost}")
    } else {
        format!("tap,id={id},fds={fds},vhost={vhost}")
    };
    let mut device = format!("virtio-net-pci,netdev={id}");
    if let Some(mac) = mac {
        device.push_str(&format!(",mac={mac}"));
    }
    if n > 1 {
        // One vector per rx and tx queue, plus config and control.
        device.push_str(&format!(",mq=on,vectors={}", 2 * n + 2));
    }
    vec!["-netdev".into(), netdev, "-device".into(), device]
}

/// "3:4:5" for n = 3.
fn fd_list(n: usize) -> String {
    (0..n)
        .map(|i| (FIRST_FD as usize + i).to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn qemu_args(global: &Global, name: &str, n: usize, id: &str) -> CmdResult {
    let dev = resolve(global, name)?;
    let args = qemu_arg_list(id, n, dev.mac);
    let open_cmd = format!(
        "macvnet{} tap open {name} --queues {n} --vnet-hdr -- qemu-system-x86_64 ... {{qemu}}",
        global
            .netns
            .as_deref()
            .map(|ns| format!(" -n {ns}"))
            .unwrap_or_default()
    );
    if global.json {
        crate::output::print_json(&serde_json::json!({
            "link": dev.name,
            "ifindex": dev.index,
            "mac": dev.mac,
            "queues": n,
            "fds": (0..n).map(|i| FIRST_FD as usize + i).collect::<Vec<_>>(),
            "vhost": std::path::Path::new("/dev/vhost-net").exists(),
            "args": args,
            "use_with": open_cmd,
        }))?;
    } else {
        crate::output::print_text(&format!("{}\n", args.join(" ")));
        eprintln!("# use with: {open_cmd}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Replace `{fds}` and `{fd}` inside arguments, and a lone `{qemu}`/`{args}` argument by
/// the qemu argument list.
fn substitute(cmd: &[String], n: usize, qemu: &[String]) -> Vec<String> {
    let fds = fd_list(n);
    let first = FIRST_FD.to_string();
    let mut out = Vec::with_capacity(cmd.len() + qemu.len());
    for a in cmd {
        if a == "{qemu}" || a == "{args}" {
            out.extend(qemu.iter().cloned());
        } else {
            out.push(a.replace("{fds}", &fds).replace("{fd}", &first));
        }
    }
    out
}

fn open(
    global: &Global,
    name: &str,
    n: usize,
    vnet_hdr: bool,
    offload: Option<&str>,
    cmd: &[String],
) -> CmdResult {
    let offloads: Offloads = match offload {
        Some(s) => s.parse().context("tap open: --offload")?,
        None => Offloads::default(),
    };
    offloads.validate().context("tap open: --offload")?;
    if !offloads.is_empty() && !vnet_hdr {
        bail!("tap open: --offload {offloads} needs --vnet-hdr (offloaded frames carry a virtio-net header)");
    }
    if cmd.is_empty() {
        bail!("tap open: missing command after --");
    }
    let ns = check_ns(global)?;
    let (dev, fds) =
        nl::tap::open_link_queues(&ns, &TapLink::Name(name.to_string()), n, vnet_hdr, offloads)
            .with_context(|| {
                format!(
                    "tap open: opening {n} queue(s) of {name} in namespace {}",
                    global.ns_label()
                )
            })?;
    let argv = substitute(cmd, n, &qemu_arg_list("net0", n, dev.mac));
    let Some((prog, rest)) = argv.split_first() else {
        bail!("tap open: missing command after --");
    };
    tracing::info!(
        "tap open: {} ({}:{}) queues on fds {} for {prog}",
        dev.name,
        dev.major,
        dev.minor,
        fd_list(n)
    );
    place_fds(fds).context("tap open: passing the tap fds")?;
    let err = std::process::Command::new(prog).args(rest).exec();
    Err(anyhow::Error::new(err).context(format!("tap open: running {prog}")))
}

/// Put the queue fds on 3, 4, ... without close-on-exec, for the exec that follows.
fn place_fds(fds: Vec<OwnedFd>) -> anyhow::Result<()> {
    let n = i32::try_from(fds.len()).context("too many fds")?;
    // First move every fd above the target range so no dup2 below overwrites one of them.
    let mut high = Vec::with_capacity(fds.len());
    for fd in &fds {
        let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(FIRST_FD + n))
            .context("duplicating a tap fd")?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this new fd; nothing else owns it.
        high.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
    }
    drop(fds);
    for (i, fd) in high.iter().enumerate() {
        let target = FIRST_FD + i32::try_from(i).context("too many fds")?;
        // SAFETY: dup2 onto a fixed number: whatever was open there is one of our own
        // close-on-exec fds that is not used after this point (we exec next); the copy
        // has close-on-exec cleared, which is what CMD inheriting it needs.
        let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
        if r < 0 {
            return Err(std::io::Error::last_os_error()).context(format!("dup2 to fd {target}"));
        }
    }
    // The high copies are close-on-exec; the fixed ones must outlive this function.
    drop(high);
    Ok(())
}

fn sniff(global: &Global, name: &str, count: Option<u64>, timeout: f64) -> CmdResult {
    if !timeout.is_finite() || timeout <= 0.0 || timeout > 86_400.0 {
        bail!("tap sniff: --timeout must be between 0 and 86400 seconds");
    }
    if count == Some(0) {
        bail!("tap sniff: --count must be at least 1");
    }
    let ns = check_ns(global)?;
    let (dev, fds) = nl::tap::open_link_queues(
        &ns,
        &TapLink::Name(name.to_string()),
        1,
        false,
        Offloads::default(),
    )
    .with_context(|| {
        format!(
            "tap sniff: opening {name} in namespace {}",
            global.ns_label()
        )
    })?;
    let Some(fd) = fds.into_iter().next() else {
        bail!("tap sniff: no queue opened");
    };
    let q = TapQueue::from(fd);
    if !dev.up {
        eprintln!("macvnet: warning: {name} is down; the driver delivers no frames until it is up");
    }
    eprintln!(
        "sniffing on {name} (ifindex {}, char {}:{}){}",
        dev.index,
        dev.major,
        dev.minor,
        count.map(|c| format!(", {c} frame(s)")).unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let mut buf = vec![0u8; 65536 + 64];
    let mut seen: u64 = 0;
    let mut out = std::io::stdout().lock();
    while count.is_none_or(|c| seen < c) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(len) = q.recv(&mut buf, left).context("tap sniff")? else {
            break;
        };
        let frame = buf.get(..len).unwrap_or(&[]);
        let s = nl::tap::describe_frame(frame);
        let line = if global.json {
            serde_json::to_string(&s).context("encoding JSON")?
        } else {
            s.to_string()
        };
        // A closed pipe (`| head`) ends the sniffer quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        seen += 1;
    }
    match count {
        Some(c) if seen < c => {
            eprintln!("macvnet: tap sniff: {seen} of {c} frame(s) before the {timeout}s timeout");
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn qemu_arguments() {
        let mac: nl::MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let one = qemu_arg_list("net0", 1, Some(mac));
        assert_eq!(one[0], "-netdev");
        assert!(one[1].starts_with("tap,id=net0,fd=3,vhost="), "{}", one[1]);
        assert_eq!(one[3], "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01");
        let four = qemu_arg_list("n1", 4, Some(mac));
        assert!(four[1].starts_with("tap,id=n1,fds=3:4:5:6,vhost="));
        assert!(four[3].ends_with(",mq=on,vectors=10"), "{}", four[3]);
    }

    #[test]
    fn placeholders() {
        let q = vec!["-netdev".to_string(), "x".to_string()];
        let cmd: Vec<String> = ["sh", "-c", "echo {fds} {fd}", "{qemu}", "a{fds}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            substitute(&cmd, 2, &q),
            ["sh", "-c", "echo 3:4 3", "-netdev", "x", "a3:4"]
        );
    }
}
