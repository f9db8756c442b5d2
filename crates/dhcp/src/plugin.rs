//! The plugin side (`ipam: {"type": "dhcp"}`): forwards each CNI command to the daemon.

use std::path::PathBuf;
use std::time::Duration;

use macvnet_cni::{CniError, CniResult, Plugin, Request};

use crate::config::NetConf;
use crate::proto::{self, Call, CmdArgs};
use crate::DhcpError;

/// How long the plugin waits for the daemon: above the daemon's default acquisition
/// budget (208 s, the reference's `-resendtimeout`), so the daemon's error wins.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug, Default, Clone, Copy)]
pub struct DhcpPlugin;

fn cmd_args(req: &Request) -> Result<CmdArgs, CniError> {
    // The daemon may run in another working directory (reference makes it absolute too).
    let netns = match &req.netns {
        Some(p) => std::path::absolute(p)
            .map_err(|e| {
                CniError::invalid_netns(format!("failed to make {p:?} an absolute path: {e}"))
            })?
            .display()
            .to_string(),
        None => String::new(),
    };
    let stdin = String::from_utf8(req.stdin.clone())
        .map_err(|e| CniError::decoding(format!("network config is not UTF-8: {e}")))?;
    Ok(CmdArgs {
        container_id: req.container_id.clone(),
        netns,
        ifname: req.ifname.clone(),
        args: req.args_raw.clone(),
        path: req.path_raw.clone(),
        stdin,
    })
}

fn socket(req: &Request) -> Result<PathBuf, CniError> {
    let conf = NetConf::parse(&req.stdin).map_err(|e| {
        CniError::from(DhcpError::Config(format!(
            "error obtaining socketPath: {e}"
        )))
    })?;
    Ok(PathBuf::from(conf.socket_path()))
}

fn rpc(req: &Request, call: &Call, method: &str) -> Result<serde_json::Value, CniError> {
    let path = socket(req)?;
    let reply = match proto::call(&path, call, CALL_TIMEOUT) {
        Ok(r) => r,
        // A reference daemon: the calls it has, over Go net/rpc (CHECK re-allocates there,
        // as the reference plugin does; it has no GC).
        Err(DhcpError::ForeignDaemon { .. }) => {
            let (go_method, args) = match call {
                Call::Allocate(a) | Call::Check(a) => ("DHCP.Allocate", a),
                Call::Release(a) => ("DHCP.Release", a),
                _ => return Ok(serde_json::Value::Null),
            };
            return crate::gorpc::call(&path, go_method, args, CALL_TIMEOUT)
                .map_err(CniError::from);
        }
        Err(e) => return Err(CniError::from(e)),
    };
    match reply.error {
        Some(mut e) => {
            e.msg = format!("error calling DHCP.{method}: {}", e.msg);
            Err(e)
        }
        None => Ok(reply.result),
    }
}

impl Plugin for DhcpPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        macvnet_cni::failpoint!("dhcp::add::before_call");
        let v = rpc(req, &Call::Allocate(cmd_args(req)?), "Allocate")?;
        macvnet_cni::failpoint!("dhcp::add::after_call");
        CniResult::from_value("1.1.0", v)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        macvnet_cni::failpoint!("dhcp::del::before_call");
        rpc(req, &Call::Release(cmd_args(req)?), "Release").map(|_| ())
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        rpc(req, &Call::Check(cmd_args(req)?), "Check").map(|_| ())
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        rpc(req, &Call::Gc(cmd_args(req)?), "GC").map(|_| ())
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let path = socket(req)?;
        match proto::call(&path, &Call::Status, Duration::from_secs(10)) {
            Ok(r) => match r.error {
                Some(e) => Err(e),
                None => Ok(()),
            },
            Err(DhcpError::ForeignDaemon { .. }) => Ok(()),
            Err(e) => Err(CniError::not_available(e.to_string())),
        }
    }
}
