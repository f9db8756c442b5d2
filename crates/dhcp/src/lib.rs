//! DHCP IPAM for CNI: the `dhcp` plugin and its lease daemon (`dhcp daemon`), a
//! replacement for containernetworking/plugins' `plugins/ipam/dhcp` whose leases survive
//! daemon restarts.
//!
//! - [`cli`]: the binary (`dhcp` in macvnet-plugins, `macvnet-dhcp` here): the plugin, or
//!   with `daemon` the daemon with the reference's Go-style flags (`-socketpath`,
//!   `-pidfile`, `-hostprefix`, `-broadcast`, `-timeout`, `-resendmax`, `-resendtimeout`)
//!   plus `-statedir` (default [`store::DEFAULT_STATE_DIR`]) and `-lifetimes`.
//! - [`plugin`]: ADD/DEL/CHECK/GC/STATUS forwarded to the daemon ([`proto`]).
//! - [`daemon`]: one maintenance thread per lease: renew at T1 (unicast), rebind at T2
//!   (broadcast), re-acquire at expiry, link down when the lease is lost (as the
//!   reference); leases whose namespace or link is gone are dropped (periodically, on
//!   restart, and on GC).
//! - [`client`]: DHCPv4 exchanges with dhcproto, run on a thread inside the container's
//!   namespace: UDP socket with SO_BINDTODEVICE + SO_BROADCAST to send, AF_PACKET to receive.
//! - [`store`]: one JSON file per lease, replaced atomically (temp, fsync, rename, fsync dir).
//! - [`lifetime`]: the leased address on the link gets the lease's valid/preferred lifetime.
//!
//! # Compatibility with the reference
//! Same: the `ipam` keys (`daemonSocketPath`, `provide` with `option`/`value`/`fromArg`,
//! `request` with `option`/`skipDefault`, `priority`; option names of dhcp-options(5) or
//! numbers), the default socket `/run/cni/dhcp.sock`, the client ID
//! `<containerID>/<network>/<ifname>` cut to 254 bytes and sent as option 61 with type 0,
//! the default request list (router, subnet mask), lease defaults (60 min lease, T1 = 50 %,
//! T2 = 85 %), the result (one IP with the router as gateway; option 121 routes, else
//! option 33 routes plus a default route; `priority` as route metric), the daemon flags,
//! systemd socket activation (`LISTEN_FDS=1`), and that a restarted/stopped daemon does
//! not release leases. A server sees the same client either way, so a container's lease
//! carries over between the two implementations.
//!
//! Not the same, on purpose or by necessity:
//! - **Plugin ↔ daemon protocol.** The reference uses Go `net/rpc` over HTTP CONNECT with
//!   gob encoding of Go structs (`skel.CmdArgs`, `current.Result` with `net.IPNet`…). Gob
//!   is a self-describing, Go-type-driven stream; reproducing it byte-for-byte for these
//!   types is out of scope, so ours speaks JSON after a CONNECT to its own path. Mixing
//!   fails cleanly and says why: the reference plugin reports "unexpected HTTP response:
//!   501 macvnet dhcp daemon does not speak Go net/rpc (gob)…", ours reports the
//!   reference daemon's 404 with a hint. Swap both halves together.
//! - Leases persist in `-statedir`; a daemon restarted even after SIGKILL resumes them (a
//!   stale socket file is replaced; a live one is an error).
//! - CHECK verifies the lease exists and is unexpired (the reference re-runs Allocate);
//!   GC releases leases not in `cni.dev/valid-attachments` and STATUS asks the daemon
//!   (the reference has neither).
//! - No answer within the acquisition budget is CNI code 11 (try again later), daemon
//!   unreachable is 11 (ADD/DEL) or 50 (STATUS); the reference uses 999 for all.
//! - Renewing without the address on the link uses INIT-REBOOT (broadcast), since the
//!   server's unicast to ciaddr would need ARP for an address no one holds.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod lease;
pub mod lifetime;
pub mod plugin;
pub mod proto;
pub mod store;

pub use error::DhcpError;
pub use plugin::DhcpPlugin;
