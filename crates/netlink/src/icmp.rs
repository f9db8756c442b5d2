//! In-process ICMP echo (v4 and v6) from inside a namespace, no ping binary.

use std::net::IpAddr;
use std::time::Duration;

use crate::{NetnsRef, Result};

/// Outcome of one echo probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PingOutcome {
    pub replied: bool,
    /// Round-trip time of the first reply.
    pub rtt_us: Option<u64>,
}

/// Send up to `count` echo requests to `dst` from inside `ns` (raw ICMP socket on a
/// thread in that namespace), waiting at most `timeout` per request; stop at the first reply.
pub fn ping(ns: &NetnsRef, dst: IpAddr, count: u32, timeout: Duration) -> Result<PingOutcome> {
    let _ = (ns, dst, count, timeout);
    todo!()
}
