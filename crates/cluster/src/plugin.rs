//! The CNI face: [`ClusterPlugin`] for `cni::skel::run`, and the error → code mapping.

use macvnet_cni::{CniError, CniResult, IpConfig, Plugin, Request};

use crate::config::{Config, ConfigError};
use crate::store::{Error, Ipam};

/// The `cluster` IPAM plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterPlugin;

impl From<ConfigError> for CniError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Decode(_) => CniError::decoding(e.to_string()),
            _ => CniError::invalid_config(e.to_string()),
        }
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> Self {
        if e.is_unavailable() {
            return CniError::try_again_later(e.to_string());
        }
        match e {
            Error::Hint(_) => CniError::io(e.to_string()),
            Error::NotFound { .. } => CniError::unknown_container(e.to_string()),
            _ => CniError::internal(e.to_string()),
        }
    }
}

fn open(req: &Request) -> Result<Ipam, CniError> {
    let cfg = Config::parse(&req.stdin)?;
    Ok(Ipam::new(cfg)?)
}

/// The result an ADD prints for `ips` (gateway when it lies in the address's range).
pub fn result_for(cfg: &Config, ips: &[ipnet::IpNet]) -> CniResult {
    let mut res = CniResult {
        routes: cfg.routes.clone(),
        ..Default::default()
    };
    for ip in ips {
        let gateway = cfg
            .pool
            .find(ip.addr())
            .and_then(|(_, r)| r.gateway)
            .filter(|g| ip.contains(g));
        res.ips.push(IpConfig {
            interface: None,
            address: *ip,
            gateway,
        });
    }
    res
}

impl Plugin for ClusterPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let ipam = open(req)?;
        let ips = ipam.add(&req.container_id, &req.ifname)?;
        Ok(result_for(&ipam.cfg, &ips))
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let ipam = open(req)?;
        Ok(ipam.del(&req.container_id, &req.ifname)?)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let ipam = open(req)?;
        ipam.check(&req.container_id, &req.ifname)?;
        Ok(())
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let ipam = open(req)?;
        ipam.status()
            .map_err(|e| CniError::not_available(e.to_string()))
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let ipam = open(req)?;
        let valid: Vec<(String, String)> = req
            .config
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let report = ipam.gc(&valid)?;
        tracing::debug!(?report, "gc");
        Ok(())
    }
}
