//! `macvnet netns`: named network namespaces, compatible with `ip netns`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use macvnet_netlink as nl;
use nl::NetnsRef;

use crate::{output, CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet netns add ns1
  macvnet netns exec ns1 -- ip -br addr
  macvnet netns del ns1")]
pub struct Args {
    #[command(subcommand)]
    cmd: NetnsCmd,
}

#[derive(Debug, clap::Subcommand)]
enum NetnsCmd {
    /// Create a namespace bind-mounted on /run/netns/NAME (like `ip netns add`).
    #[command(after_help = "Examples:\n  macvnet netns add ns1\n  macvnet -n ns1 link show --all")]
    Add { name: String },
    /// Delete a named namespace (like `ip netns del`); links inside it go with it.
    #[command(after_help = "Examples:\n  macvnet netns del ns1")]
    Del { name: String },
    /// List named namespaces.
    #[command(
        alias = "ls",
        after_help = "Examples:\n  macvnet netns list\n  macvnet -j netns list"
    )]
    List,
    /// Run a command inside a namespace; its exit code is passed through.
    #[command(
        after_help = "Examples:\n  macvnet netns exec ns1 -- ping -c1 198.18.0.12\n  macvnet netns exec ns1 -- sh -c 'ip -br link'"
    )]
    Exec {
        name: String,
        /// The command and its arguments (put them after `--`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    match args.cmd {
        NetnsCmd::Add { name } => {
            check_name(&name)?;
            match nl::netns::add(&name) {
                Ok(_) => {}
                Err(e) if e.is_exists() => bail!("netns add: namespace {name} already exists"),
                Err(e) => return Err(e).with_context(|| format!("netns add: creating {name}")),
            }
            if global.json {
                output::print_json(&serde_json::json!({ "name": name }))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        NetnsCmd::Del { name } => {
            check_name(&name)?;
            match nl::netns::del(&name, false) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.is_not_found() => bail!("netns del: namespace {name} not found"),
                Err(e) => Err(e).with_context(|| format!("netns del: deleting {name}")),
            }
        }
        NetnsCmd::List => {
            let names = nl::netns::list().context("netns list")?;
            if global.json {
                let v: Vec<_> = names
                    .iter()
                    .map(|n| serde_json::json!({ "name": n }))
                    .collect();
                output::print_json(&v)?;
            } else {
                let mut s = String::new();
                for n in names {
                    s.push_str(&n);
                    s.push('\n');
                }
                output::print_text(&s);
            }
            Ok(ExitCode::SUCCESS)
        }
        NetnsCmd::Exec { name, cmd } => exec(&name, &cmd),
    }
}

/// A name must be a single path component under /run/netns.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("invalid namespace name {name:?}: one path component, no '/'");
    }
    Ok(())
}

fn exec(name: &str, cmd: &[String]) -> CmdResult {
    check_name(name)?;
    let path = std::path::Path::new(nl::netns::NETNS_RUN_DIR).join(name);
    if !path.exists() {
        bail!(
            "netns exec: namespace {name} not found (no {})",
            path.display()
        );
    }
    let Some((prog, rest)) = cmd.split_first() else {
        bail!("netns exec: missing command")
    };
    let mut command = nl::netns::command_in(&NetnsRef::Named(name.to_string()), prog)
        .with_context(|| format!("netns exec: entering {name}"))?;
    command.args(rest);
    let status = command
        .status()
        .with_context(|| format!("netns exec: running {prog}"))?;
    if let Some(code) = status.code() {
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    // Killed by a signal: report it the way shells do.
    use std::os::unix::process::ExitStatusExt;
    let sig = status.signal().unwrap_or(0);
    Ok(ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)))
}
