//! IPAM dispatch: run `ipam.type` found on `CNI_PATH`, in-process when that file is one
//! of our own IPAM binaries (its ELF note says so, see [`crate::marker`]), else by exec.
//! The in-process path calls the very `Plugin` impls our `host-local`/`static` binaries
//! run, so results, errors and stores are identical either way.
//!
//! `MACVNET_IPAM_EXEC=1` in the environment forces exec (tests compare both paths).

use std::path::PathBuf;

use macvnet_cni::delegate::Delegate;
use macvnet_cni::{CniResult, Plugin, Request};
use macvnet_ipam::{HostLocalPlugin, StaticPlugin};

use crate::PluginError;

/// Environment variable forcing the exec path.
pub const FORCE_EXEC_ENV: &str = "MACVNET_IPAM_EXEC";

/// IPAM plugins we can run in-process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    HostLocal,
    Static,
}

impl Builtin {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "host-local" => Some(Builtin::HostLocal),
            "static" => Some(Builtin::Static),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::HostLocal => "host-local",
            Builtin::Static => "static",
        }
    }

    /// The plugin's own entry points, exactly what its binary runs.
    fn plugin(self) -> &'static dyn Plugin {
        match self {
            Builtin::HostLocal => &HostLocalPlugin,
            Builtin::Static => &StaticPlugin,
        }
    }
}

/// How a resolved IPAM plugin runs.
#[derive(Debug, Clone)]
enum Runner {
    InProcess(Builtin),
    Exec(Delegate),
}

/// A failed IPAM ADD (see [`Ipam::add`]).
#[derive(Debug)]
pub struct IpamAddFailure {
    pub error: PluginError,
    pub may_hold: bool,
}

/// The IPAM plugin of one request.
#[derive(Debug, Clone)]
pub struct Ipam {
    plugin: String,
    path: PathBuf,
    runner: Runner,
}

impl Ipam {
    /// Resolve `ipam.type` of `req` on CNI_PATH; `Ok(None)` without an IPAM type.
    /// A plugin missing from CNI_PATH is the delegate's error (code 999, Go's message).
    pub fn resolve(req: &Request) -> Result<Option<Ipam>, PluginError> {
        let Some(plugin) = req.config.ipam_type() else {
            return Ok(None);
        };
        let delegate = req.delegate();
        let path = delegate.find(plugin)?;
        let forced = std::env::var_os(FORCE_EXEC_ENV).is_some_and(|v| v == "1");
        let builtin = Builtin::from_name(plugin)
            .filter(|_| !forced)
            .filter(|b| crate::marker::read_note(&path) == Some(crate::marker::expected(b.name())));
        let runner = match builtin {
            Some(b) => Runner::InProcess(b),
            None => Runner::Exec(delegate),
        };
        tracing::debug!(plugin, path = %path.display(), in_process = matches!(runner, Runner::InProcess(_)), "IPAM");
        Ok(Some(Ipam {
            plugin: plugin.to_string(),
            path,
            runner,
        }))
    }

    pub fn name(&self) -> &str {
        &self.plugin
    }

    /// Where the plugin was found on CNI_PATH.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn in_process(&self) -> bool {
        matches!(self.runner, Runner::InProcess(_))
    }

    /// ADD; on failure, whether the IPAM may hold something of it (its DEL must undo).
    /// Our in-process host-local and static roll back their own partial work. An exec'd
    /// plugin that refused with an error of its own did too, as the reference assumes
    /// (its DEL could release what the attachment held before: the address host-local
    /// refuses to duplicate); one that died, hung or printed nothing may hold anything.
    /// DHCP is undone always: its daemon may still complete a lease for a client that
    /// gave up, and its DEL releases only a lease.
    pub fn add(&self, req: &Request) -> Result<CniResult, IpamAddFailure> {
        match &self.runner {
            Runner::InProcess(b) => b.plugin().add(req).map_err(|e| IpamAddFailure {
                error: e.into(),
                may_hold: false,
            }),
            Runner::Exec(d) => {
                d.add_or_failure(&self.plugin, &req.stdin)
                    .map_err(|f| IpamAddFailure {
                        error: f.error.into(),
                        may_hold: f.may_hold || self.plugin == "dhcp",
                    })
            }
        }
    }

    pub fn del(&self, req: &Request) -> Result<(), PluginError> {
        match &self.runner {
            Runner::InProcess(b) => Ok(b.plugin().del(req)?),
            Runner::Exec(d) => Ok(d.del(&self.plugin, &req.stdin)?),
        }
    }

    pub fn check(&self, req: &Request) -> Result<(), PluginError> {
        match &self.runner {
            Runner::InProcess(b) => Ok(b.plugin().check(req)?),
            Runner::Exec(d) => Ok(d.check(&self.plugin, &req.stdin)?),
        }
    }

    /// STATUS of a main plugin: its IPAM's STATUS; ready when it has no IPAM.
    pub fn status_of(req: &Request) -> Result<(), PluginError> {
        Ipam::resolve(req)?.map_or(Ok(()), |ipam| ipam.status(req))
    }

    /// GC of a main plugin: its IPAM's GC (links die with their namespaces).
    pub fn gc_of(req: &Request) -> Result<(), PluginError> {
        Ipam::resolve(req)?.map_or(Ok(()), |ipam| ipam.gc(req))
    }

    pub fn status(&self, req: &Request) -> Result<(), PluginError> {
        match &self.runner {
            Runner::InProcess(b) => Ok(b.plugin().status(req)?),
            Runner::Exec(d) => Ok(d.status(&self.plugin, &req.stdin)?),
        }
    }

    pub fn gc(&self, req: &Request) -> Result<(), PluginError> {
        match &self.runner {
            Runner::InProcess(b) => Ok(b.plugin().gc(req)?),
            Runner::Exec(d) => Ok(d.gc(&self.plugin, &req.stdin)?),
        }
    }
}
