//! `macvnet route`: add, del, show routes of the main table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::RouteSpec;

use crate::{output, CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet -n ns1 route add default via 198.18.0.1
  macvnet -n ns1 route add 198.19.0.0/24 via 198.18.0.1 dev mv0 metric 50
  macvnet -n ns1 route show")]
pub struct Args {
    #[command(subcommand)]
    cmd: RouteCmd,
}

// The words of `add` and `del` (no doc comment: clap would take it as their about text).
#[derive(Debug, clap::Args)]
struct RouteWords {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ROUTE"
    )]
    words: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum RouteCmd {
    /// Add a route.
    #[command(
        override_usage = "macvnet route add (default|CIDR) [via GW] [dev NAME] [metric N]",
        after_help = "Examples:\n  macvnet -n ns1 route add default via 198.18.0.1\n  macvnet -n ns1 route add 198.19.0.0/24 dev mv0 metric 50"
    )]
    Add(RouteWords),
    /// Delete a route.
    #[command(
        override_usage = "macvnet route del (default|CIDR) [via GW] [dev NAME] [metric N]",
        after_help = "Examples:\n  macvnet -n ns1 route del default\n  macvnet -n ns1 route del 198.19.0.0/24"
    )]
    Del(RouteWords),
    /// Show routes of the main table (IPv4 and IPv6).
    #[command(
        after_help = "Examples:\n  macvnet -n ns1 route show\n  macvnet -n ns1 -j route show -4"
    )]
    Show {
        /// Only IPv4.
        #[arg(short = '4', conflicts_with = "v6")]
        v4: bool,
        /// Only IPv6.
        #[arg(short = '6')]
        v6: bool,
    },
}

struct RouteReq {
    dst: Option<IpNet>,
    default: bool,
    via: Option<IpAddr>,
    dev: Option<String>,
    metric: Option<u32>,
}

fn parse_route(cmd: &str, words: &[String], adding: bool) -> anyhow::Result<RouteReq> {
    let mut it = words.iter();
    let mut r = RouteReq {
        dst: None,
        default: false,
        via: None,
        dev: None,
        metric: None,
    };
    let need =
        |kw: &str, it: &mut std::slice::Iter<'_, String>, what: &str| -> anyhow::Result<String> {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{cmd}: `{kw}` needs {what}"))
        };
    let mut have_dst = false;
    while let Some(w) = it.next() {
        match w.as_str() {
            "via" => {
                let v = need("via", &mut it, "a gateway address")?;
                r.via = Some(
                    v.parse()
                        .map_err(|_| anyhow!("{cmd}: invalid gateway {v:?}"))?,
                );
            }
            "dev" => r.dev = Some(need("dev", &mut it, "a link name")?),
            "metric" | "preference" | "priority" => {
                let v = need(w, &mut it, "a number")?;
                r.metric = Some(
                    v.parse()
                        .map_err(|_| anyhow!("{cmd}: `{w}` expects a number, got {v:?}"))?,
                );
            }
            "default" if !have_dst => {
                r.default = true;
                have_dst = true;
            }
            other if !have_dst => {
                r.dst = Some(match other.parse::<IpNet>() {
                    Ok(n) => n.trunc(),
                    Err(_) => match other.parse::<IpAddr>() {
                        Ok(ip) => IpNet::from(ip),
                        Err(_) => bail!("{cmd}: invalid destination {other:?}: expected default or a CIDR like 198.19.0.0/24"),
                    },
                });
                have_dst = true;
            }
            other if super::link::is_option(other) => {
                bail!("{cmd}: {}", super::link::option_hint(other))
            }
            other => bail!("{cmd}: unknown keyword {other:?} (valid: via, dev, metric)"),
        }
    }
    if !have_dst {
        bail!("{cmd}: missing destination (default or a CIDR)");
    }
    // Deleting matches on the destination alone, like `ip route del`.
    if adding && r.via.is_none() && r.dev.is_none() {
        bail!("{cmd}: give `via GW`, `dev NAME` or both");
    }
    Ok(r)
}

fn spec(cmd: &str, r: &RouteReq, h: &mut nl::Handle, ns: &str) -> anyhow::Result<RouteSpec> {
    let dst = match (r.dst, r.default, r.via) {
        (Some(d), _, _) => d,
        (None, true, Some(IpAddr::V6(_))) => IpNet::V6(ipnet::Ipv6Net::default()),
        (None, _, _) => IpNet::V4(ipnet::Ipv4Net::default()),
    };
    if let Some(gw) = r.via {
        if gw.is_ipv4() != dst.addr().is_ipv4() {
            bail!("{cmd}: gateway {gw} and destination {dst} are of different families");
        }
    }
    let oif = match &r.dev {
        Some(d) => Some(match h.link_by_name(d) {
            Ok(l) => l.index,
            Err(e) if e.is_not_found() => bail!("{cmd}: link {d} not found in namespace {ns}"),
            Err(e) => return Err(e).with_context(|| format!("{cmd}: looking up {d}")),
        }),
        None => None,
    };
    Ok(RouteSpec {
        dst,
        gateway: r.via,
        oif,
        src: None,
        metric: r.metric,
        table: None,
        scope: None,
    })
}

#[derive(serde::Serialize)]
struct RouteView {
    dev: Option<String>,
    #[serde(flatten)]
    info: nl::RouteInfo,
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    let ns = global.ns_label();
    match args.cmd {
        RouteCmd::Add(RouteWords { words }) => {
            const C: &str = "route add";
            let r = parse_route(C, &words, true)?;
            let mut h = global.handle()?;
            let s = spec(C, &r, &mut h, &ns)?;
            match h.add_route(&s) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.is_exists() => bail!("{C}: a route to {} already exists", s.dst),
                Err(e) => Err(e).with_context(|| format!("{C}: adding route to {}", s.dst)),
            }
        }
        RouteCmd::Del(RouteWords { words }) => {
            const C: &str = "route del";
            let r = parse_route(C, &words, false)?;
            let mut h = global.handle()?;
            let s = spec(C, &r, &mut h, &ns)?;
            match h.del_route(&s) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.is_not_found() => bail!("{C}: no such route to {}", s.dst),
                Err(e) => Err(e).with_context(|| format!("{C}: deleting route to {}", s.dst)),
            }
        }
        RouteCmd::Show { v4, v6 } => {
            let fam = if v4 {
                Some(false)
            } else if v6 {
                Some(true)
            } else {
                None
            };
            let mut h = global.handle()?;
            let names: HashMap<u32, String> = h
                .links()
                .context("route show: listing links")?
                .into_iter()
                .map(|l| (l.index, l.name))
                .collect();
            let routes = h.routes(fam).context("route show: listing routes")?;
            let views: Vec<RouteView> = routes
                .into_iter()
                .map(|r| RouteView {
                    dev: r
                        .oif
                        .map(|i| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"))),
                    info: r,
                })
                .collect();
            if global.json {
                output::print_json(&views)?;
            } else {
                let mut s = String::new();
                for v in &views {
                    s.push_str(&describe(v));
                    s.push('\n');
                }
                output::print_text(&s);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One route in `ip route` style.
fn describe(v: &RouteView) -> String {
    let r = &v.info;
    let mut s = if r.dst.prefix_len() == 0 {
        "default".to_string()
    } else {
        r.dst.to_string()
    };
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = &v.dev {
        s.push_str(&format!(" dev {dev}"));
    }
    match r.protocol {
        2 => s.push_str(" proto kernel"),
        3 => s.push_str(" proto boot"),
        4 => s.push_str(" proto static"),
        _ => {}
    }
    if r.scope != 0 {
        s.push_str(&format!(" scope {}", super::addr::scope_name(r.scope)));
    }
    if let Some(src) = r.src {
        s.push_str(&format!(" src {src}"));
    }
    if let Some(m) = r.metric {
        s.push_str(&format!(" metric {m}"));
    }
    s
}
