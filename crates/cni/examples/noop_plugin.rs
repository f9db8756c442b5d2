//! A minimal plugin on top of the skel: ADD returns the `prevResult` (or an empty
//! result), everything else succeeds. Build: `cargo build -p macvnet-cni --example noop_plugin`.

use std::process::ExitCode;

use macvnet_cni::skel::{run, Plugin, Request};
use macvnet_cni::{CniError, CniResult};

struct Noop;

impl Plugin for Noop {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        Ok(req.prev_result()?.unwrap_or_default())
    }
    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

fn main() -> ExitCode {
    run(&Noop, "CNI noop example plugin")
}
