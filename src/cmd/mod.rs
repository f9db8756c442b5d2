//! One file per subcommand: each has `Args` (clap) and `run(args, global) -> CmdResult`.

pub mod addr;
pub mod bench;
pub mod cni;
pub mod completions;
pub mod doctor;
pub mod ipam;
pub mod lab;
pub mod link;
pub mod ls;
pub mod netns;
pub mod route;
pub mod shim;
pub mod tap;
