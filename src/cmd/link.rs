//! `macvnet link`: add, del, set, source, show for macvlan/macvtap children,
//! with iproute2's positional keyword grammar.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use macvnet_netlink as nl;
use nl::{
    Handle, LinkChange, LinkInfo, LinkKind, MacAddr, MacvlanSpec, Mode, NetnsRef, SourceMacOp,
};

use crate::{inventory, output, CmdResult, Global};

const LINK_EXAMPLES: &str = "\
Examples:
  macvnet link add mv0 link eth0 type macvlan mode bridge up
  macvnet link set mv0 mtu 1400 address 02:00:c6:12:00:0b
  macvnet -j link show mv0";

#[derive(Debug, clap::Args)]
#[command(after_help = LINK_EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    cmd: LinkCmd,
}

#[derive(Debug, clap::Subcommand)]
enum LinkCmd {
    /// Create a macvlan or macvtap child of PARENT.
    #[command(
        override_usage = "macvnet link add NAME link PARENT type macvlan|macvtap [mode MODE] [nopromisc] [nodst] \
                          [address MAC] [mtu N] [bcqueuelen N] [bccutoff N] [netns NS] [up]",
        after_help = ADD_HELP
    )]
    Add {
        /// NAME followed by keywords, as in `ip link add`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "NAME KEYWORDS"
        )]
        words: Vec<String>,
    },
    /// Delete a link.
    #[command(after_help = "Examples:\n  macvnet link del mv0\n  macvnet -n ns1 link del mv1")]
    Del { name: String },
    /// Change a live link: up|down, promisc on|off, mtu N, address MAC, name NEW, netns NS.
    #[command(
        override_usage = "macvnet link set NAME [up|down] [promisc on|off] [mtu N] [address MAC] [name NEW] [netns NS]",
        after_help = "Examples:\n  macvnet link set mv0 up\n  macvnet link set mv0 mtu 1400 promisc on\n  \
                      macvnet link set mv0 name web0 netns ns1"
    )]
    Set {
        name: String,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "KEYWORDS"
        )]
        words: Vec<String>,
    },
    /// Edit the source-MAC list of a source-mode child (add, del, flush, set).
    #[command(
        after_help = "Examples:\n  macvnet link add mvs0 link eth0 type macvlan mode source\n  \
                      macvnet link source mvs0 add 02:00:c6:12:00:01 02:00:c6:12:00:02\n  \
                      macvnet link source mvs0 flush"
    )]
    Source {
        name: String,
        /// add, del, flush or set.
        op: String,
        /// MAC addresses (none for flush; none for set clears the list).
        macs: Vec<String>,
    },
    /// Show macvlan/macvtap links (or NAME, whatever its kind), like `ip -d link` but focused.
    #[command(
        after_help = "Examples:\n  macvnet link show\n  macvnet -n ns1 link show mv1\n  macvnet -j link show mv0"
    )]
    Show {
        name: Option<String>,
        /// Show every link, not only macvlan/macvtap.
        #[arg(short, long)]
        all: bool,
    },
}

/// `link add` help: the mode list, the flags and examples.
const ADD_HELP: &str = concat!(
    "Modes (mode MODE):\n",
    "  private   children cannot talk to each other at all, not even through the switch\n",
    "  vepa      kernel default: child-to-child frames go out to the switch and need a hairpin (reflective relay) port\n",
    "  bridge    children talk to each other directly inside the kernel (the usual choice)\n",
    "  passthru  one single child takes over the parent (its MAC, promiscuous mode); for VMs with macvtap\n",
    "  source    the child receives only frames whose source MAC is on its list (see `macvnet link source`)\n",
    "\nFlags: nopromisc (passthru: leave the parent's promiscuous mode alone), nodst (source: do not also\n",
    "deliver to the destination child), bcqueuelen N (length of the broadcast/multicast backlog queue),\n",
    "bccutoff N (alias bclim: a multicast group joined by more than N children is queued as broadcast,\n",
    "smaller groups go straight to their members; -1 turns broadcast queueing off).\n",
    "\nExamples:\n",
    "  macvnet link add mv0 link eth0 type macvlan mode bridge up\n",
    "  macvnet -n ns1 link add mv1 link veth0 type macvlan mode bridge address 02:00:c6:12:00:0b mtu 1400\n",
    "  macvnet link add mvtap0 link eth0 type macvtap mode passthru netns vm1"
);

pub fn run(args: Args, global: &Global) -> CmdResult {
    match args.cmd {
        LinkCmd::Add { words } => add(&words, global),
        LinkCmd::Del { name } => del(&name, global),
        LinkCmd::Set { name, words } => set(&name, &words, global),
        LinkCmd::Source { name, op, macs } => source(&name, &op, &macs, global),
        LinkCmd::Show { name, all } => show(name.as_deref(), all, global),
    }
}

// ---------------------------------------------------------------- parsing

/// Keyword cursor over the trailing words of a command.
struct Words<'a> {
    cmd: &'static str,
    items: &'a [String],
    pos: usize,
}

impl<'a> Words<'a> {
    fn new(cmd: &'static str, items: &'a [String]) -> Self {
        Words { cmd, items, pos: 0 }
    }
    fn next(&mut self) -> Option<&'a str> {
        let w = self.items.get(self.pos)?;
        self.pos += 1;
        Some(w.as_str())
    }
    /// The value after keyword `kw`; `expect` says what it should look like.
    fn value(&mut self, kw: &str, expect: &str) -> anyhow::Result<&'a str> {
        self.next()
            .ok_or_else(|| anyhow!("{}: `{kw}` needs a value ({expect})", self.cmd))
    }
    fn number<T: std::str::FromStr>(&mut self, kw: &str, expect: &str) -> anyhow::Result<T> {
        let v = self.value(kw, expect)?;
        v.parse()
            .map_err(|_| anyhow!("{}: `{kw}` expects {expect}, got {v:?}", self.cmd))
    }
}

fn parse_mac(cmd: &str, s: &str) -> anyhow::Result<MacAddr> {
    let mac: MacAddr = s.parse().map_err(|e| anyhow!("{cmd}: {e}"))?;
    if !mac.is_unicast() || mac.is_zero() {
        bail!("{cmd}: invalid MAC address {s:?}: must be a non-zero unicast address (first octet even)");
    }
    Ok(mac)
}

fn parse_mode(cmd: &str, s: &str) -> anyhow::Result<Mode> {
    s.parse::<Mode>().map_err(|_| {
        anyhow!(
            "{cmd}: unknown mode {s:?}: valid modes are private, vepa, bridge, passthru, source"
        )
    })
}

/// A word that looks like a command-line option rather than a keyword.
pub fn is_option(w: &str) -> bool {
    w.starts_with('-') && w.parse::<i64>().is_err()
}

/// Options after the keywords are swallowed by them; say where they go instead.
pub fn option_hint(w: &str) -> String {
    format!("option {w:?} must come before the subcommand, as in `macvnet -j -n NS link show`")
}

/// Linux interface names: 1..=15 bytes, no '/', ':' or whitespace, not "." or "..".
fn check_ifname(cmd: &str, name: &str) -> anyhow::Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.starts_with('-')
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        bail!("{cmd}: invalid interface name {name:?}: 1 to 15 characters, no '/', ':', spaces or leading '-'");
    }
    Ok(())
}

const ADD_KEYWORDS: &str =
    "name, link, type, mode, nopromisc, nodst, address, mtu, bcqueuelen, bccutoff, bclim, txqueuelen, netns, up";

/// Everything `link add` was asked to do.
#[derive(Debug, Default, PartialEq)]
struct AddReq {
    name: String,
    parent: String,
    tap: bool,
    mode: Option<Mode>,
    nopromisc: bool,
    nodst: bool,
    mac: Option<MacAddr>,
    mtu: Option<u32>,
    txqlen: Option<u32>,
    bcqueuelen: Option<u32>,
    bccutoff: Option<i32>,
    netns: Option<String>,
    up: bool,
}

fn parse_add(words: &[String]) -> anyhow::Result<AddReq> {
    const C: &str = "link add";
    let mut w = Words::new(C, words);
    let mut req = AddReq::default();
    let mut name: Option<String> = None;
    let mut parent: Option<String> = None;
    let mut kind: Option<bool> = None;
    while let Some(word) = w.next() {
        match word {
            "name" | "dev" => name = Some(w.value(word, "an interface name")?.to_string()),
            "link" => parent = Some(w.value("link", "the parent interface")?.to_string()),
            "type" => {
                kind = Some(match w.value("type", "macvlan or macvtap")? {
                    "macvlan" => false,
                    "macvtap" => true,
                    other => bail!("{C}: unsupported type {other:?}: expected macvlan or macvtap"),
                })
            }
            "mode" => {
                let v = w.value("mode", "one of private, vepa, bridge, passthru, source")?;
                req.mode = Some(parse_mode(C, v)?);
            }
            "nopromisc" => req.nopromisc = true,
            "nodst" => req.nodst = true,
            "address" | "mac" => {
                req.mac = Some(parse_mac(
                    C,
                    w.value(word, "a MAC like 02:00:c6:12:00:0b")?,
                )?)
            }
            "mtu" => req.mtu = Some(w.number("mtu", "a number of bytes")?),
            "txqueuelen" | "txqlen" => req.txqlen = Some(w.number(word, "a number of packets")?),
            "bcqueuelen" => req.bcqueuelen = Some(w.number("bcqueuelen", "a number of packets")?),
            "bccutoff" | "bclim" => {
                req.bccutoff = Some(w.number(word, "a number of children, -1 to never queue")?)
            }
            "netns" => req.netns = Some(w.value("netns", "a namespace name")?.to_string()),
            "up" => req.up = true,
            other if is_option(other) => bail!("{C}: {}", option_hint(other)),
            other if name.is_none() && w.pos == 1 => name = Some(other.to_string()),
            other => bail!("{C}: unknown keyword {other:?} (valid: {ADD_KEYWORDS})"),
        }
    }
    req.name = name.ok_or_else(|| {
        anyhow!("{C}: missing NAME (macvnet link add NAME link PARENT type macvlan)")
    })?;
    check_ifname(C, &req.name)?;
    req.parent = parent.ok_or_else(|| anyhow!("{C}: missing `link PARENT`"))?;
    req.tap = kind.ok_or_else(|| anyhow!("{C}: missing `type macvlan` or `type macvtap`"))?;
    if req.nopromisc && req.mode != Some(Mode::Passthru) {
        bail!("{C}: nopromisc only applies to mode passthru");
    }
    if req.nodst && req.mode != Some(Mode::Source) {
        bail!("{C}: nodst only applies to mode source");
    }
    Ok(req)
}

/// Everything `link set` was asked to change.
#[derive(Debug, Default, PartialEq)]
struct SetReq {
    up: Option<bool>,
    promisc: Option<bool>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    name: Option<String>,
    txqlen: Option<u32>,
    netns: Option<String>,
}

fn parse_set(words: &[String]) -> anyhow::Result<SetReq> {
    const C: &str = "link set";
    let mut w = Words::new(C, words);
    let mut req = SetReq::default();
    while let Some(word) = w.next() {
        match word {
            "up" => req.up = Some(true),
            "down" => req.up = Some(false),
            "promisc" => {
                req.promisc = Some(match w.value("promisc", "on or off")? {
                    "on" => true,
                    "off" => false,
                    other => bail!("{C}: `promisc` expects on or off, got {other:?}"),
                })
            }
            "mtu" => req.mtu = Some(w.number("mtu", "a number of bytes")?),
            "address" | "mac" => req.mac = Some(parse_mac(C, w.value(word, "a MAC like 02:00:c6:12:00:0b")?)?),
            "name" => {
                let n = w.value("name", "the new interface name")?;
                check_ifname(C, n)?;
                req.name = Some(n.to_string());
            }
            "txqueuelen" | "txqlen" => req.txqlen = Some(w.number(word, "a number of packets")?),
            "netns" => req.netns = Some(w.value("netns", "a namespace name")?.to_string()),
            other if is_option(other) => bail!("{C}: {}", option_hint(other)),
            other => bail!(
                "{C}: unknown keyword {other:?} (valid: up, down, promisc on|off, mtu, address, name, txqueuelen, netns)"
            ),
        }
    }
    if req == SetReq::default() {
        bail!("{C}: nothing to change (give up, down, promisc on|off, mtu N, address MAC, name NEW or netns NS)");
    }
    Ok(req)
}

/// A `netns NS` argument: a name under /run/netns, or a path.
fn target_ns(s: &str) -> NetnsRef {
    if s.contains('/') {
        NetnsRef::Path(s.into())
    } else {
        NetnsRef::Named(s.to_string())
    }
}

fn open_ns(cmd: &str, s: &str) -> anyhow::Result<(NetnsRef, Handle)> {
    let ns = target_ns(s);
    if let NetnsRef::Named(n) = &ns {
        let path = std::path::Path::new(nl::netns::NETNS_RUN_DIR).join(n);
        if !path.exists() {
            bail!("{cmd}: namespace {n} not found (no {})", path.display());
        }
    }
    let h = Handle::open(&ns).with_context(|| format!("{cmd}: opening namespace {s}"))?;
    Ok((ns, h))
}

fn lookup(h: &mut Handle, cmd: &str, name: &str, ns_label: &str) -> anyhow::Result<LinkInfo> {
    match h.link_by_name(name) {
        Ok(l) => Ok(l),
        Err(e) if e.is_not_found() => bail!("{cmd}: link {name} not found in namespace {ns_label}"),
        Err(e) => Err(e).with_context(|| format!("{cmd}: looking up {name}")),
    }
}

/// Fail when `name` already exists in the namespace of `h`.
fn ensure_free(h: &mut Handle, cmd: &str, name: &str, ns_label: &str) -> anyhow::Result<()> {
    match h.link_by_name(name) {
        Ok(l) => bail!(
            "{cmd}: name {name} is taken in namespace {ns_label} (ifindex {})",
            l.index
        ),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{cmd}: checking whether {name} exists")),
    }
}

// ---------------------------------------------------------------- add

fn add(words: &[String], global: &Global) -> CmdResult {
    const C: &str = "link add";
    let req = parse_add(words)?;
    let here = global.ns_label();
    let mut h = global.handle()?;

    let parent = match h.link_by_name(&req.parent) {
        Ok(p) => p,
        Err(e) if e.is_not_found() => {
            bail!("{C}: parent {} not found in namespace {here}", req.parent)
        }
        Err(e) => return Err(e).with_context(|| format!("{C}: looking up parent {}", req.parent)),
    };
    if let Some(mtu) = req.mtu {
        if mtu > parent.mtu {
            bail!("{C}: mtu {mtu} is above parent {}'s mtu {}; a child's MTU cannot exceed its parent's", parent.name, parent.mtu);
        }
    }
    if req.mac.is_some() && req.mac == parent.mac && req.mode != Some(Mode::Passthru) {
        bail!(
            "{C}: address {} is the parent {}'s own MAC; a child needs a MAC of its own",
            parent.mac.map(|m| m.to_string()).unwrap_or_default(),
            parent.name
        );
    }
    check_passthru(&mut h, &parent, req.mode, C)?;

    // Where the child will live: `netns NS`, else the -n namespace.
    let mut target = match &req.netns {
        Some(ns) => Some(open_ns(C, ns)?),
        None => None,
    };
    let target_label = req.netns.clone().unwrap_or_else(|| here.clone());
    match target.as_mut() {
        Some((_, th)) => ensure_free(th, C, &req.name, &target_label)?,
        None => ensure_free(&mut h, C, &req.name, &target_label)?,
    }
    let ns_fd = match &target {
        Some((ns, _)) => {
            Some(Arc::new(ns.open().with_context(|| {
                format!("{C}: opening namespace {target_label}")
            })?))
        }
        None => None,
    };

    let spec = MacvlanSpec {
        name: req.name.clone(),
        parent: parent.index,
        tap: req.tap,
        mode: req.mode,
        nopromisc: req.nopromisc,
        nodst: req.nodst,
        mac: req.mac,
        mtu: req.mtu,
        txqlen: req.txqlen,
        bcqueuelen: req.bcqueuelen,
        bccutoff: req.bccutoff,
        source_macs: Vec::new(),
        netns: ns_fd,
        // Brought up as a second step so a failure there can be rolled back.
        up: false,
    };
    let kind = if req.tap { "macvtap" } else { "macvlan" };
    if let Err(e) = h.add_macvlan(&spec) {
        let hint = kernel_hint(&e, &req, &parent);
        return Err(anyhow!(
            "{C}: creating {kind} {} on {}: {e}{hint}",
            req.name,
            parent.name
        ));
    }

    let th = match target.as_mut() {
        Some((_, th)) => th,
        None => &mut h,
    };
    let created = lookup(th, C, &req.name, &target_label)?;
    if req.up {
        let change = LinkChange {
            up: Some(true),
            ..Default::default()
        };
        if let Err(e) = th.set_link(created.index, &change) {
            // Leave nothing half-made behind.
            if let Err(de) = th.del_link(created.index) {
                tracing::warn!("rollback: deleting {} failed: {de}", req.name);
            }
            let hint = match (e.errno(), req.mac) {
                (Some(nix::errno::Errno::EADDRINUSE), Some(mac)) => {
                    format!("; another child of {} already uses {mac}", parent.name)
                }
                _ => String::new(),
            };
            return Err(anyhow!(
                "{C}: bringing {} up: {e}{hint} (the link was removed again)",
                req.name
            ));
        }
    }
    if global.json {
        let link = lookup(th, C, &req.name, &target_label)?;
        let ns = target
            .as_ref()
            .map(|(ns, _)| ns.clone())
            .unwrap_or_else(|| global.ns());
        let shown = Shown::new(link, Some(parent.name.clone()), Some(here.clone()), &ns);
        output::print_json(&shown)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A parent with a passthru child takes no other child, and a passthru child needs a childless parent.
fn check_passthru(
    h: &mut Handle,
    parent: &LinkInfo,
    mode: Option<Mode>,
    cmd: &str,
) -> anyhow::Result<()> {
    let links = h.links().with_context(|| format!("{cmd}: listing links"))?;
    let children: Vec<&LinkInfo> = links
        .iter()
        .filter(|l| {
            l.macvlan.is_some() && l.link_netnsid.is_none() && l.parent_index == Some(parent.index)
        })
        .collect();
    if let Some(pt) = children
        .iter()
        .find(|l| l.macvlan.as_ref().is_some_and(|m| m.mode == Mode::Passthru))
    {
        bail!(
            "{cmd}: parent {} already has a passthru child {}; a passthru child takes over the parent, so no other child fits",
            parent.name,
            pt.name
        );
    }
    if mode == Some(Mode::Passthru) {
        if let Some(c) = children.first() {
            bail!(
                "{cmd}: mode passthru needs a parent without children, but {} already has {}",
                parent.name,
                c.name
            );
        }
    }
    Ok(())
}

/// A short explanation for kernel refusals whose errno alone is cryptic.
fn kernel_hint(e: &nl::Error, req: &AddReq, parent: &LinkInfo) -> String {
    use nix::errno::Errno;
    match e.errno() {
        Some(Errno::EINVAL) if req.mode == Some(Mode::Passthru) => {
            format!(" (passthru needs a parent with no other children, possibly in another namespace; {} has some)", parent.name)
        }
        Some(Errno::EINVAL) if req.mtu.is_some() => {
            format!(" (parent {} has mtu {})", parent.name, parent.mtu)
        }
        Some(Errno::EINVAL) => format!(
            " (a parent with a passthru child takes no other child; check `macvnet ls` for {})",
            parent.name
        ),
        Some(Errno::EBUSY) => format!(
            " ({} is busy: another child may already use this MAC or mode)",
            parent.name
        ),
        Some(Errno::EADDRINUSE) => {
            " (another child of this parent already uses that MAC)".to_string()
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------- del / set / source

fn del(name: &str, global: &Global) -> CmdResult {
    const C: &str = "link del";
    let mut h = global.handle()?;
    let link = lookup(&mut h, C, name, &global.ns_label())?;
    h.del_link(link.index)
        .with_context(|| format!("{C}: deleting {name}"))?;
    Ok(ExitCode::SUCCESS)
}

fn set(name: &str, words: &[String], global: &Global) -> CmdResult {
    const C: &str = "link set";
    let req = parse_set(words)?;
    let here = global.ns_label();
    let mut h = global.handle()?;
    let link = lookup(&mut h, C, name, &here)?;

    if let (Some(mtu), Some(pi), None) = (req.mtu, link.parent_index, link.link_netnsid) {
        if link.macvlan.is_some() {
            if let Ok(p) = h.link_by_index(pi) {
                if mtu > p.mtu {
                    bail!("{C}: mtu {mtu} is above parent {}'s mtu {}; a child's MTU cannot exceed its parent's", p.name, p.mtu);
                }
            }
        }
    }
    let mut target = match &req.netns {
        Some(ns) => Some(open_ns(C, ns)?),
        None => None,
    };
    if let Some(new) = &req.name {
        if new != name {
            ensure_free(&mut h, C, new, &here)?;
        }
    }
    if let Some((_, th)) = target.as_mut() {
        let final_name = req.name.as_deref().unwrap_or(name);
        ensure_free(th, C, final_name, req.netns.as_deref().unwrap_or("?"))?;
    }
    let ns_fd = match &target {
        Some((ns, _)) => {
            Some(ns.open().with_context(|| format!("{C}: opening namespace"))).transpose()?
        }
        None => None,
    };
    use std::os::fd::AsFd;
    let change = LinkChange {
        up: req.up,
        promisc: req.promisc,
        mtu: req.mtu,
        mac: req.mac,
        name: req.name.clone(),
        txqlen: req.txqlen,
        netns: ns_fd.as_ref().map(|f| f.as_fd()),
        controller: None,
        arp_notify: None,
    };
    h.set_link(link.index, &change)
        .with_context(|| format!("{C}: changing {name}"))?;
    if global.json {
        let final_name = req.name.as_deref().unwrap_or(name);
        let (ns, th) = match target.as_mut() {
            Some((ns, th)) => (ns.clone(), th),
            None => (global.ns(), &mut h),
        };
        let now = lookup(th, C, final_name, &ns.to_string())?;
        let parent = parent_of(th, &now);
        output::print_json(&Shown::new(
            now,
            parent.as_ref().map(|p| p.0.clone()),
            parent.map(|p| p.1),
            &ns,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn source(name: &str, op: &str, macs: &[String], global: &Global) -> CmdResult {
    const C: &str = "link source";
    let op: SourceMacOp = op.parse().map_err(|e| anyhow!("{C}: {e}"))?;
    let macs = macs
        .iter()
        .map(|m| parse_mac(C, m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match op {
        SourceMacOp::Add | SourceMacOp::Del if macs.is_empty() => {
            bail!("{C}: add and del need at least one MAC")
        }
        SourceMacOp::Flush if !macs.is_empty() => bail!("{C}: flush takes no MACs"),
        _ => {}
    }
    let mut h = global.handle()?;
    let link = lookup(&mut h, C, name, &global.ns_label())?;
    match &link.macvlan {
        Some(m) if m.mode == Mode::Source => {}
        Some(m) => bail!(
            "{C}: {name} is in {} mode; source MAC lists only apply to mode source",
            m.mode
        ),
        None => bail!("{C}: {name} is not a macvlan/macvtap link"),
    }
    h.set_source_macs(link.index, op, &macs)
        .with_context(|| format!("{C}: updating {name}"))?;
    if global.json {
        let now = lookup(&mut h, C, name, &global.ns_label())?;
        let list = now.macvlan.map(|m| m.source_macs).unwrap_or_default();
        output::print_json(&list)?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- show

/// A link plus where its parent is, as `link show -j` prints it.
#[derive(Debug, serde::Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub link: LinkInfo,
    /// Parent name, or "ifN" when its namespace could not be resolved.
    pub parent: Option<String>,
    /// Namespace of the parent (label), when known.
    pub parent_netns: Option<String>,
    /// Namespace of this link (label).
    pub netns: String,
    /// /dev/tapN for macvtap.
    pub tap_device: Option<String>,
}

impl Shown {
    fn new(
        link: LinkInfo,
        parent: Option<String>,
        parent_netns: Option<String>,
        ns: &NetnsRef,
    ) -> Self {
        let tap_device = link.tap_device();
        Shown {
            link,
            parent,
            parent_netns,
            netns: ns_label(ns),
            tap_device,
        }
    }
}

fn ns_label(ns: &NetnsRef) -> String {
    match ns {
        NetnsRef::Current => "current".to_string(),
        other => other.to_string(),
    }
}

/// Parent (name, namespace label) of a link: same namespace, or resolved through its netnsid.
fn parent_of(h: &mut Handle, link: &LinkInfo) -> Option<(String, String)> {
    let pi = link.parent_index?;
    if pi == 0 || pi == link.index {
        return None;
    }
    match link.link_netnsid {
        None => h
            .link_by_index(pi)
            .ok()
            .map(|p| (p.name, ns_label(h.netns()))),
        Some(id) => match inventory::resolve_foreign(h.netns(), id, pi) {
            Some((ns, name)) => Some((name, ns)),
            None => Some((format!("if{pi}"), format!("nsid {id}"))),
        },
    }
}

fn show(name: Option<&str>, all: bool, global: &Global) -> CmdResult {
    const C: &str = "link show";
    let mut h = global.handle()?;
    let links = match name {
        Some(n) => vec![lookup(&mut h, C, n, &global.ns_label())?],
        None => {
            let mut v = h.links().with_context(|| format!("{C}: listing links"))?;
            if !all {
                v.retain(|l| l.macvlan.is_some());
            }
            v
        }
    };
    let ns = global.ns();
    let mut shown = Vec::new();
    for l in links {
        let parent = if l.macvlan.is_some() || l.parent_index.is_some() {
            parent_of(&mut h, &l)
        } else {
            None
        };
        let (pn, pns) = match parent {
            Some((n, s)) => (Some(n), Some(s)),
            None => (None, None),
        };
        shown.push(Shown::new(l, pn, pns, &ns));
    }
    if global.json {
        output::print_json(&shown)?;
    } else {
        let mut text = String::new();
        for s in &shown {
            text.push_str(&describe(s));
        }
        if shown.is_empty() {
            text.push_str("no macvlan/macvtap links (use --all to see every link)\n");
        }
        output::print_text(&text);
    }
    Ok(ExitCode::SUCCESS)
}

fn kind_name(k: &LinkKind) -> String {
    match k {
        LinkKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The text form of one link: a header line and indented detail lines.
fn describe(s: &Shown) -> String {
    let l = &s.link;
    let mut out = String::new();
    let at = match (&s.parent, &s.parent_netns) {
        (Some(p), Some(ns)) if ns != &s.netns => format!("@{p} (in {ns})"),
        (Some(p), _) => format!("@{p}"),
        _ => String::new(),
    };
    let state = if l.up { "UP" } else { "DOWN" };
    let mut head = format!("{}: {}{}  {}", l.index, l.name, at, kind_name(&l.kind));
    if let Some(m) = &l.macvlan {
        head.push_str(&format!("  mode {}", m.mode));
        if m.nopromisc {
            head.push_str("  nopromisc");
        }
        if m.nodst {
            head.push_str("  nodst");
        }
    }
    head.push_str(&format!("  state {state}"));
    if l.up && !l.lower_up {
        head.push_str(" (no carrier)");
    }
    out.push_str(&head);
    out.push('\n');
    let mac = l
        .mac
        .map(|m| m.to_string())
        .unwrap_or_else(|| "-".to_string());
    out.push_str(&format!(
        "    link/ether {mac}  mtu {}  promisc {}{}  txqlen {}\n",
        l.mtu,
        if l.promisc { "on" } else { "off" },
        if l.promiscuity > 0 && !l.promisc {
            format!(" (promiscuity {})", l.promiscuity)
        } else {
            String::new()
        },
        l.txqlen
    ));
    if let Some(m) = &l.macvlan {
        let mut bc = Vec::new();
        if let Some(q) = m.bcqueuelen {
            match m.bcqueuelen_used {
                Some(u) if u != q => bc.push(format!("bcqueuelen {q} (used {u})")),
                _ => bc.push(format!("bcqueuelen {q}")),
            }
        }
        if let Some(c) = m.bccutoff {
            bc.push(format!("bccutoff {c}"));
        }
        if !bc.is_empty() {
            out.push_str(&format!("    {}\n", bc.join("  ")));
        }
        if m.mode == Mode::Source {
            let list: Vec<String> = m.source_macs.iter().map(|m| m.to_string()).collect();
            let list = if list.is_empty() {
                "(none)".to_string()
            } else {
                list.join(" ")
            };
            out.push_str(&format!("    source macs: {list}\n"));
        }
    }
    if let Some(tap) = &s.tap_device {
        out.push_str(&format!("    tap {tap}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_full_add() {
        let r = parse_add(&w(
            "mv0 link eth0 type macvtap mode passthru nopromisc address 02:00:00:00:00:01 mtu 1400 bcqueuelen 10 bclim -1 netns ns1 up",
        ))
        .unwrap();
        assert_eq!(r.name, "mv0");
        assert_eq!(r.parent, "eth0");
        assert!(r.tap && r.nopromisc && r.up);
        assert_eq!(r.mode, Some(Mode::Passthru));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.bcqueuelen, Some(10));
        assert_eq!(r.bccutoff, Some(-1));
        assert_eq!(r.netns.as_deref(), Some("ns1"));
    }

    #[test]
    fn iproute2_order_works() {
        let r = parse_add(&w("link eth0 name mv0 type macvlan mode bridge")).unwrap();
        assert_eq!((r.name.as_str(), r.parent.as_str()), ("mv0", "eth0"));
    }

    #[test]
    fn add_errors_are_clear() {
        for (words, want) in [
            ("mode", "`mode` needs a value"),
            ("mode fast", "private, vepa, bridge, passthru, source"),
            ("frobnicate", "unknown keyword \"frobnicate\""),
            ("address 01:00:5e:00:00:01", "unicast"),
        ] {
            let e = parse_add(&w(&format!("mv0 link eth0 type macvlan {words}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{words}: {e}");
        }
        assert!(parse_add(&w("mv0 type macvlan")).is_err());
        assert!(parse_add(&w("mv0 link eth0")).is_err());
        assert!(parse_add(&w("waytoolongname1234 link eth0 type macvlan")).is_err());
    }

    #[test]
    fn parses_set() {
        let r = parse_set(&w("down promisc on mtu 1300 name x0 netns ns2")).unwrap();
        assert_eq!(r.up, Some(false));
        assert_eq!(r.promisc, Some(true));
        assert_eq!(r.mtu, Some(1300));
        assert!(parse_set(&w("promisc maybe")).is_err());
        assert!(parse_set(&[]).is_err());
    }
}
