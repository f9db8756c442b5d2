//! `macvnet completions`: shell completion scripts via clap_complete.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::{CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  macvnet completions bash > /etc/bash_completion.d/macvnet
  macvnet completions zsh > \"${fpath[1]}/_macvnet\"
  macvnet completions fish > ~/.config/fish/completions/macvnet.fish")]
pub struct Args {
    /// Shell to generate for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn run(args: Args, _global: &Global) -> CmdResult {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "macvnet", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
