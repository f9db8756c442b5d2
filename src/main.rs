//! `macvnet`: understand and operate Linux macvlan/macvtap.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod draw;
mod inventory;
mod lab;
mod output;

/// Options every subcommand understands.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Print JSON instead of text.
    #[arg(short = 'j', long = "json", global = true)]
    pub json: bool,
    /// Operate inside network namespace NS (a name under /run/netns, or a path such as /proc/PID/ns/net), like `ip -n NS`.
    #[arg(short = 'n', long = "netns", global = true, value_name = "NS")]
    pub netns: Option<String>,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    /// The namespace `-n` names: a path when it contains '/', else a name under /run/netns.
    pub fn ns(&self) -> macvnet_netlink::NetnsRef {
        match &self.netns {
            Some(n) if n.contains('/') => macvnet_netlink::NetnsRef::Path(n.into()),
            Some(n) => macvnet_netlink::NetnsRef::Named(n.clone()),
            None => macvnet_netlink::NetnsRef::Current,
        }
    }

    /// How to name the `-n` namespace in messages.
    pub fn ns_label(&self) -> String {
        match &self.netns {
            Some(n) => n.clone(),
            None => "current".to_string(),
        }
    }

    /// A netlink handle in the `-n` namespace (or the current one).
    pub fn handle(&self) -> anyhow::Result<macvnet_netlink::Handle> {
        use anyhow::Context;
        let ns = self.ns();
        if let macvnet_netlink::NetnsRef::Named(n) = &ns {
            // Checked first so a typo reads as "no such namespace", not as an nsfs error.
            let path = std::path::Path::new(macvnet_netlink::netns::NETNS_RUN_DIR).join(n);
            if !path.exists() {
                anyhow::bail!("namespace {n} not found (no {})", path.display());
            }
        }
        macvnet_netlink::Handle::open(&ns)
            .with_context(|| format!("opening netlink in namespace {}", self.ns_label()))
    }
}

/// What every subcommand returns: an exit code, or an error printed as one line.
pub type CmdResult = anyhow::Result<ExitCode>;

#[derive(Debug, Parser)]
#[command(
    name = "macvnet",
    version,
    about = "Understand and operate Linux macvlan and macvtap",
    long_about = "macvnet splits one NIC into many virtual NICs, each with its own MAC (macvlan), or hands \
                  frames to /dev/tapN for VMs (macvtap). It creates and inspects such links in any network \
                  namespace, checks whether this machine supports them, and reproduces the classic \
                  two-namespace bridge-mode experiment as a lab."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, change, delete and show macvlan/macvtap links (iproute2-like grammar).
    Link(cmd::link::Args),
    /// Every macvlan/macvtap on this host, in every namespace, as a tree under each parent.
    Ls(cmd::ls::Args),
    /// Named network namespaces: add, del, list, exec.
    Netns(cmd::netns::Args),
    /// Addresses: add, del, show.
    Addr(cmd::addr::Args),
    /// Routes: add, del, show.
    Route(cmd::route::Args),
    /// Can macvlan/macvtap work here? Kernel support, devices, privileges, CNI dirs.
    Doctor(cmd::doctor::Args),
    /// Build, check and tear down a topology from a TOML file (the seed experiment and more).
    Lab(cmd::lab::Args),
    /// Host shim: a bridge-mode macvlan on the host so the host can reach its macvlan children.
    Shim(cmd::shim::Args),
    /// macvtap char devices: open /dev/tapN for a program or VM, qemu arguments, sniff frames.
    Tap(cmd::tap::Args),
    /// Benchmarks: data plane topologies, and our CNI plugins vs a reference.
    Bench(cmd::bench::Args),
    /// CNI plugins: install macvnet's plugins (macvlan, macvtap, host-local, static, dhcp, cluster) into a plugin dir.
    Cni(cmd::cni::Args),
    /// Cluster-wide IPAM on etcd: show the pool, reclaim a dead node's addresses.
    Ipam(cmd::ipam::Args),
    /// Print a shell completion script.
    Completions(cmd::completions::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.global.verbose);
    let result = match cli.command {
        Command::Link(a) => cmd::link::run(a, &cli.global),
        Command::Ls(a) => cmd::ls::run(a, &cli.global),
        Command::Netns(a) => cmd::netns::run(a, &cli.global),
        Command::Addr(a) => cmd::addr::run(a, &cli.global),
        Command::Route(a) => cmd::route::run(a, &cli.global),
        Command::Doctor(a) => cmd::doctor::run(a, &cli.global),
        Command::Lab(a) => cmd::lab::run(a, &cli.global),
        Command::Shim(a) => cmd::shim::run(a, &cli.global),
        Command::Tap(a) => cmd::tap::run(a, &cli.global),
        Command::Bench(a) => cmd::bench::run(a, &cli.global),
        Command::Cni(a) => cmd::cni::run(a, &cli.global),
        Command::Ipam(a) => cmd::ipam::run(a, &cli.global),
        Command::Completions(a) => cmd::completions::run(a, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("macvnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as clap formats them; usage mistakes become one line on stderr.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for l in lines {
        if l.starts_with("[possible values:") || l.starts_with("tip:") {
            msg.push(' ');
            msg.push_str(l);
        }
    }
    eprintln!("macvnet: {msg} (see macvnet --help)");
    ExitCode::from(2)
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MACVNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
