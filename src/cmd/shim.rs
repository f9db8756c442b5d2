//! `macvnet shim`: a bridge-mode macvlan on the host side so the host reaches its macvlan children.
//!
//! A macvlan parent never sees its children's frames (they leave on the wire). A sibling
//! bridge-mode macvlan in the parent's namespace does, so addressing it and routing the
//! children's addresses through it restores host ↔ child traffic.

use std::process::ExitCode;

use anyhow::Context;
use ipnet::IpNet;
use macvnet_netlink as nl;
use nl::{Handle, LinkKind, NetnsRef};

use crate::lab::build::add_shim;
use crate::{CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  macvnet -n host shim add eth0 --address 198.18.0.3/32 --route 198.18.0.11/32 --route 198.18.0.12/32
  macvnet -n host shim del eth0            # removes shim0 on eth0 (and its routes)
  macvnet -n host shim del --name shim1")]
pub struct Args {
    #[command(subcommand)]
    pub cmd: ShimCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum ShimCmd {
    /// Create a shim on PARENT with an address and routes through it.
    Add {
        /// The macvlan parent (in -n NS, or the current namespace).
        parent: String,
        /// Address of the shim, e.g. 198.18.0.3/32.
        #[arg(long)]
        address: IpNet,
        /// Destination routed through the shim (repeatable), e.g. each child's /32.
        #[arg(long = "route", value_name = "CIDR")]
        routes: Vec<IpNet>,
        #[arg(long, default_value = "shim0")]
        name: String,
    },
    /// Delete a shim (by parent and/or --name; its routes go with it).
    Del {
        parent: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
}

fn netns_of(global: &Global) -> NetnsRef {
    match &global.netns {
        None => NetnsRef::Current,
        Some(n) if n.contains('/') => NetnsRef::Path(n.into()),
        Some(n) => NetnsRef::Named(n.clone()),
    }
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    let ns = netns_of(global);
    let mut h = Handle::open(&ns).with_context(|| format!("opening netlink in {ns}"))?;
    match args.cmd {
        ShimCmd::Add {
            parent,
            address,
            routes,
            name,
        } => {
            if name.len() > 15 {
                anyhow::bail!("shim name {name:?} is longer than 15 bytes");
            }
            let idx = add_shim(&mut h, &parent, &name, address, &routes)
                .with_context(|| format!("adding shim {name} on {parent} in {ns}"))?;
            if global.json {
                crate::output::print_json(&serde_json::json!({
                    "name": name, "index": idx, "parent": parent, "address": address.to_string(),
                    "routes": routes.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                }))?;
            } else {
                println!(
                    "shim {name} on {parent}: {address}, {} route(s) through it",
                    routes.len()
                );
            }
        }
        ShimCmd::Del { parent, name } => {
            let name = name.unwrap_or_else(|| "shim0".to_string());
            let link = h
                .link_by_name(&name)
                .with_context(|| format!("finding shim {name} in {ns}"))?;
            let is_bridge_macvlan = link.kind == LinkKind::Macvlan
                && link
                    .macvlan
                    .as_ref()
                    .is_some_and(|m| m.mode == nl::Mode::Bridge);
            if !is_bridge_macvlan {
                anyhow::bail!(
                    "{name} is not a bridge-mode macvlan; refusing to delete it as a shim"
                );
            }
            if let Some(p) = &parent {
                let pl = h
                    .link_by_name(p)
                    .with_context(|| format!("finding parent {p} in {ns}"))?;
                if link.parent_index != Some(pl.index) || link.link_netnsid.is_some() {
                    anyhow::bail!("{name} is not a shim on {p}");
                }
            }
            h.del_link(link.index)
                .with_context(|| format!("deleting shim {name}"))?;
            if global.json {
                crate::output::print_json(&serde_json::json!({"deleted": name}))?;
            } else {
                println!("shim {name} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
