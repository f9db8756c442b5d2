//! `macvnet_cni::Plugin` implementations, so the `host-local` and `static`
//! binaries are one call: `macvnet_cni::run(&HostLocalPlugin, about)`.

use macvnet_cni::{CniError, CniResult, Plugin, Request};

use crate::{host_local, static_ipam};

/// host-local: ADD/DEL/CHECK like the reference, plus GC and STATUS.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostLocalPlugin;

impl Plugin for HostLocalPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        Ok(host_local::add(
            &req.stdin,
            &req.container_id,
            &req.ifname,
            &req.args_raw,
        )?)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        host_local::del(&req.stdin, &req.container_id, &req.ifname, &req.args_raw)?;
        Ok(())
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        Ok(host_local::check(
            &req.stdin,
            &req.container_id,
            &req.ifname,
            &req.args_raw,
        )?)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        Ok(host_local::status(&req.stdin)?)
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let conf = host_local::HostLocalConfig::parse(&req.stdin, "")
            .map_err(host_local::HostLocalError::from)?;
        let report = host_local::gc_with(&conf, &req.config.valid_attachments)?;
        tracing::debug!(released = report.released.len(), "host-local GC");
        Ok(())
    }
}

/// static: ADD/CHECK like the reference; DEL, GC and STATUS have nothing to do.
#[derive(Debug, Default, Clone, Copy)]
pub struct StaticPlugin;

impl Plugin for StaticPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        Ok(static_ipam::add(&req.stdin, &req.args_raw)?)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        Ok(static_ipam::del(&req.stdin, &req.args_raw)?)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        Ok(static_ipam::check(&req.stdin, &req.ifname, &req.args_raw)?)
    }
}
