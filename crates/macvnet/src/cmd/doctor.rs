//! `macvnet doctor` (not written yet).

use crate::{CmdResult, Global};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _global: &Global) -> CmdResult {
    anyhow::bail!("doctor: not implemented yet")
}
