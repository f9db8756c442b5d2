//! `macvnet ipam`: inspect and clean the cluster IPAM pool kept in etcd.

use std::process::ExitCode;

use anyhow::Context;
use macvnet_cluster::{Config, Ipam};
use serde_json::json;

use crate::{output, CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet ipam show -c /etc/cni/net.d/10-macvlan.conflist
  macvnet -j ipam show -c net.conf --records
  macvnet ipam gc -c net.conf --node host-b --dead")]
pub struct Args {
    #[command(subcommand)]
    cmd: IpamCmd,
}

#[derive(Debug, clap::Subcommand)]
enum IpamCmd {
    /// The pool of a `cluster` IPAM network: used/free per range, addresses and blocks per node.
    #[command(
        after_help = "Examples:\n  macvnet ipam show -c net.conflist\n  macvnet -j ipam show -c net.conf --records"
    )]
    Show {
        /// CNI network config (.conf or .conflist) whose IPAM is `cluster`.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: std::path::PathBuf,
        /// Also list every allocated address with its container, interface and node.
        #[arg(long)]
        records: bool,
    },
    /// Release garbage of a node: with --dead everything it holds (it is gone for good);
    /// without, only records missing their attachment and its empty blocks.
    #[command(
        after_help = "Examples:\n  macvnet ipam gc -c net.conf --node host-b --dead\n  macvnet ipam gc -c net.conf"
    )]
    Gc {
        /// CNI network config (.conf or .conflist) whose IPAM is `cluster`.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: std::path::PathBuf,
        /// The node to clean (default: the config's `node`, i.e. this host).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// The node will never come back: release all its addresses and blocks.
        #[arg(long)]
        dead: bool,
    },
}

fn open(path: &std::path::Path) -> anyhow::Result<Ipam> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg =
        Config::from_file_json(&bytes).with_context(|| format!("config {}", path.display()))?;
    Ipam::new(cfg).context("opening etcd")
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    match args.cmd {
        IpamCmd::Show { config, records } => show(&open(&config)?, records, global),
        IpamCmd::Gc { config, node, dead } => {
            let ipam = open(&config)?;
            let node = node.unwrap_or_else(|| ipam.cfg.node.clone());
            if dead && node == ipam.cfg.node && !global.json {
                eprintln!("macvnet: note: --dead on this host's own node name {node}");
            }
            let report = if dead {
                ipam.gc_dead(&node)
            } else {
                ipam.gc_idle(&node)
            }
            .with_context(|| format!("ipam gc of node {node}"))?;
            if global.json {
                output::print_json(&json!({"node": node, "dead": dead, "released": report}))?;
            } else {
                output::print_text(&format!(
                    "node {node}: released {} attachments, {} addresses, {} blocks\n",
                    report.attachments, report.records, report.blocks
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(ipam: &Ipam, records: bool, global: &Global) -> CmdResult {
    let usage = ipam.usage().context("ipam show")?;
    let recs = if records {
        let mut r = ipam.records().context("ipam show: records")?;
        r.sort_by_key(|a| a.0);
        Some(r)
    } else {
        None
    };
    if global.json {
        let mut v = serde_json::to_value(&usage).context("encoding")?;
        if let Some(recs) = &recs {
            v["records"] = recs
                .iter()
                .map(|(ip, r)| {
                    json!({"ip": ip, "containerID": r.container_id, "ifname": r.ifname,
                           "node": r.node, "time": r.time})
                })
                .collect();
        }
        output::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = format!("network {}  (etcd {}/)\n", usage.network, usage.prefix);
    let mut t = output::Table::new();
    t.push(
        ["RANGE", "FIRST", "LAST", "USABLE", "USED", "FREE", "BLOCKS"]
            .map(String::from)
            .to_vec(),
    );
    for r in &usage.ranges {
        let blocks = match (r.block_size, r.blocks_total) {
            (Some(size), Some(total)) => format!("{}/{} of {size}", r.blocks_claimed, total),
            _ => format!("off ({} claimed)", r.blocks_claimed),
        };
        t.push(vec![
            r.range.clone(),
            r.first.to_string(),
            r.last.to_string(),
            r.usable.to_string(),
            r.used.to_string(),
            r.free.to_string(),
            blocks,
        ]);
    }
    s.push_str(&t.render());
    if !usage.nodes.is_empty() {
        let mut t = output::Table::new();
        t.push(
            ["NODE", "USED", "ATTACHMENTS", "BLOCKS"]
                .map(String::from)
                .to_vec(),
        );
        for n in &usage.nodes {
            t.push(vec![
                n.node.clone(),
                n.used.to_string(),
                n.attachments.to_string(),
                n.blocks.to_string(),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    if let Some(recs) = &recs {
        let mut t = output::Table::new();
        t.push(
            ["ADDRESS", "NODE", "CONTAINER", "IFNAME"]
                .map(String::from)
                .to_vec(),
        );
        for (ip, r) in recs {
            t.push(vec![
                ip.to_string(),
                r.node.clone(),
                r.container_id.clone(),
                r.ifname.clone(),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    output::print_text(&s);
    Ok(ExitCode::SUCCESS)
}
