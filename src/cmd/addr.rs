//! `macvnet addr`: add, del, show addresses (iproute2 grammar: `addr add CIDR dev NAME`).

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::Handle;

use crate::{output, CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet -n ns1 addr add 198.18.0.11/24 dev mv0
  macvnet -n ns1 addr show dev mv0
  macvnet -n ns1 addr del 198.18.0.11/24 dev mv0")]
pub struct Args {
    #[command(subcommand)]
    cmd: AddrCmd,
}

// The words of `add` and `del` (no doc comment: clap would take it as their about text).
#[derive(Debug, clap::Args)]
struct CidrDevWords {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CIDR dev NAME"
    )]
    words: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum AddrCmd {
    /// Add CIDR to a link.
    #[command(
        override_usage = "macvnet addr add CIDR dev NAME",
        after_help = "Examples:\n  macvnet -n ns1 addr add 198.18.0.11/24 dev mv0\n  macvnet -n ns1 addr add 2001:db8::11/64 dev mv0"
    )]
    Add(CidrDevWords),
    /// Remove CIDR from a link.
    #[command(
        override_usage = "macvnet addr del CIDR dev NAME",
        after_help = "Examples:\n  macvnet -n ns1 addr del 198.18.0.11/24 dev mv0"
    )]
    Del(CidrDevWords),
    /// Show addresses of every link, or of one (`dev NAME`).
    #[command(
        override_usage = "macvnet addr show [dev NAME]",
        after_help = "Examples:\n  macvnet -n ns1 addr show\n  macvnet -n ns1 -j addr show dev mv0"
    )]
    Show {
        #[arg(trailing_var_arg = true, value_name = "dev NAME")]
        words: Vec<String>,
    },
}

/// `CIDR dev NAME` in any order; the CIDR is the bare word.
fn parse_cidr_dev(cmd: &str, words: &[String]) -> anyhow::Result<(IpNet, String)> {
    let mut it = words.iter();
    let mut cidr = None;
    let mut dev = None;
    while let Some(w) = it.next() {
        match w.as_str() {
            "dev" => {
                dev = Some(
                    it.next()
                        .ok_or_else(|| anyhow!("{cmd}: `dev` needs a link name"))?
                        .clone(),
                )
            }
            "local" => {
                cidr = Some(parse_cidr(
                    cmd,
                    it.next()
                        .ok_or_else(|| anyhow!("{cmd}: `local` needs an address"))?,
                )?)
            }
            other if cidr.is_none() => cidr = Some(parse_cidr(cmd, other)?),
            other if super::link::is_option(other) => {
                bail!("{cmd}: {}", super::link::option_hint(other))
            }
            other => bail!("{cmd}: unknown keyword {other:?} (expected CIDR dev NAME)"),
        }
    }
    let cidr = cidr.ok_or_else(|| anyhow!("{cmd}: missing address, like 198.18.0.11/24"))?;
    let dev = dev.ok_or_else(|| anyhow!("{cmd}: missing `dev NAME`"))?;
    Ok((cidr, dev))
}

/// An address with prefix; a bare address gets /32 or /128 as in iproute2.
fn parse_cidr(cmd: &str, s: &str) -> anyhow::Result<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => bail!("{cmd}: invalid address {s:?}: expected an address with prefix like 198.18.0.11/24 or 2001:db8::11/64"),
    }
}

fn index_of(h: &mut Handle, cmd: &str, dev: &str, ns: &str) -> anyhow::Result<u32> {
    match h.link_by_name(dev) {
        Ok(l) => Ok(l.index),
        Err(e) if e.is_not_found() => bail!("{cmd}: link {dev} not found in namespace {ns}"),
        Err(e) => Err(e).with_context(|| format!("{cmd}: looking up {dev}")),
    }
}

/// `CIDR dev NAME` of `addr add|del`, resolved in the namespace: (handle, index, cidr, dev).
fn target(
    global: &Global,
    cmd: &str,
    words: &[String],
    ns: &str,
) -> anyhow::Result<(Handle, u32, IpNet, String)> {
    let (cidr, dev) = parse_cidr_dev(cmd, words)?;
    let mut h = global.handle()?;
    let idx = index_of(&mut h, cmd, &dev, ns)?;
    Ok((h, idx, cidr, dev))
}

#[derive(serde::Serialize)]
struct AddrView {
    dev: String,
    #[serde(flatten)]
    info: nl::AddrInfo,
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    let ns = global.ns_label();
    match args.cmd {
        AddrCmd::Add(CidrDevWords { words }) => {
            const C: &str = "addr add";
            let (mut h, idx, cidr, dev) = target(global, C, &words, &ns)?;
            match h.add_addr(idx, cidr) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.is_exists() => bail!("{C}: {cidr} is already on {dev}"),
                Err(e) => Err(e).with_context(|| format!("{C}: adding {cidr} to {dev}")),
            }
        }
        AddrCmd::Del(CidrDevWords { words }) => {
            const C: &str = "addr del";
            let (mut h, idx, cidr, dev) = target(global, C, &words, &ns)?;
            match h.del_addr(idx, cidr) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.is_not_found() => bail!("{C}: {cidr} is not on {dev}"),
                Err(e) => Err(e).with_context(|| format!("{C}: removing {cidr} from {dev}")),
            }
        }
        AddrCmd::Show { words } => {
            const C: &str = "addr show";
            let dev = match words.as_slice() {
                [] => None,
                [kw, name] if kw == "dev" => Some(name.clone()),
                [name] => Some(name.clone()),
                _ => bail!("{C}: expected `dev NAME` or nothing"),
            };
            let mut h = global.handle()?;
            let idx = match &dev {
                Some(d) => Some(index_of(&mut h, C, d, &ns)?),
                None => None,
            };
            let names: HashMap<u32, String> = h
                .links()
                .context("addr show: listing links")?
                .into_iter()
                .map(|l| (l.index, l.name))
                .collect();
            let mut addrs = h.addrs(idx).context("addr show: listing addresses")?;
            addrs.sort_by_key(|a| (a.index, a.addr.addr().is_ipv6()));
            let views: Vec<AddrView> = addrs
                .into_iter()
                .map(|a| AddrView {
                    dev: names
                        .get(&a.index)
                        .cloned()
                        .unwrap_or_else(|| format!("if{}", a.index)),
                    info: a,
                })
                .collect();
            if global.json {
                output::print_json(&views)?;
            } else {
                let mut t = output::Table::new();
                for v in &views {
                    let mut flags = Vec::new();
                    if v.info.tentative {
                        flags.push("tentative");
                    }
                    if v.info.dad_failed {
                        flags.push("dadfailed");
                    }
                    t.push(vec![
                        format!("{}:", v.info.index),
                        v.dev.clone(),
                        v.info.addr.to_string(),
                        format!("scope {}", scope_name(v.info.scope)),
                        flags.join(" "),
                    ]);
                }
                output::print_text(&t.render());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn scope_name(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        other => other.to_string(),
    }
}
