//! Undo guards for ADD: each step that changes state returns a guard whose `Drop`
//! undoes it unless `commit` was called. Undo failures are logged, never raised.

use macvnet_cni::Request;
use macvnet_netlink::Handle;

use crate::ipam::Ipam;
use crate::PluginError;
use macvnet_cni::CniResult;

/// Owns the container-namespace handle and the link created in it; deletes the link
/// on drop unless committed.
#[derive(Debug)]
pub struct LinkGuard {
    handle: Handle,
    index: u32,
    committed: bool,
}

impl LinkGuard {
    pub fn new(handle: Handle, index: u32) -> Self {
        LinkGuard {
            handle,
            index,
            committed: false,
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// The handle in the link's namespace, for the next steps.
    pub fn handle(&mut self) -> &mut Handle {
        &mut self.handle
    }

    /// Keep the link.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = self.handle.del_link(self.index) {
            if !e.is_not_found() {
                tracing::warn!("undo: deleting link ifindex {}: {e}", self.index);
            }
        }
    }
}

/// Calls IPAM DEL on drop unless committed.
#[derive(Debug)]
pub struct IpamGuard<'a> {
    ipam: &'a Ipam,
    req: &'a Request,
    committed: bool,
}

impl<'a> IpamGuard<'a> {
    pub fn new(ipam: &'a Ipam, req: &'a Request) -> Self {
        IpamGuard {
            ipam,
            req,
            committed: false,
        }
    }

    pub fn commit(mut self) {
        self.committed = true;
    }

    /// Run the IPAM ADD with this undo armed before it starts (a killed or timed-out
    /// IPAM may hold an address): on failure its DEL runs unless the IPAM cannot hold
    /// anything of it (see [`Ipam::add`]).
    pub fn add(ipam: &'a Ipam, req: &'a Request) -> Result<(Self, CniResult), PluginError> {
        let guard = IpamGuard::new(ipam, req);
        match ipam.add(req) {
            Ok(r) => Ok((guard, r)),
            Err(failure) => {
                if !failure.may_hold {
                    guard.commit();
                }
                Err(failure.error)
            }
        }
    }
}

impl Drop for IpamGuard<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = self.ipam.del(self.req) {
            tracing::warn!("undo: IPAM {} DEL: {e}", self.ipam.name());
        }
    }
}
