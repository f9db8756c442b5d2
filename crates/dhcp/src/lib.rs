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
//!   reference); leases whose namespace or link is gone are released and dropped
//!   (periodically, on restart, and on GC).
//! - [`client`]: DHCPv4 exchanges with dhcproto, run on a thread inside the container's
//!   namespace: UDP socket with SO_BINDTODEVICE + SO_BROADCAST to send, AF_PACKET to receive.
//! - [`store`]: one JSON file per lease, replaced atomically (temp, fsync, rename, fsync dir),
//!   and one per acquisition in flight (an intent, [`lease::Intent`]).
//! - [`lifetime`]: the leased address on the link gets the lease's valid/preferred lifetime.
//!
//! # Compatibility with the reference
//! Either half can be swapped for the reference's: our daemon serves the reference plugin
//! (Go `net/rpc` over HTTP CONNECT `/_goRPC_`, gob-encoded `skel.CmdArgs` in and
//! `current.Result` out: [`gob`], [`gorpc`]), and our plugin, answered 404 for its own
//! protocol by a reference daemon, falls back to Go `net/rpc` for `DHCP.Allocate` and
//! `DHCP.Release`. Tested against /usr/lib/cni/dhcp (containernetworking-plugins 1.1.1).
//!
//! Same: the `ipam` keys (`daemonSocketPath`, `provide` with `option`/`value`/`fromArg`,
//! `request` with `option`/`skipDefault`, `priority`; option names of dhcp-options(5) or
//! numbers), the default socket `/run/cni/dhcp.sock`, the client ID
//! `<containerID>/<network>/<ifname>` cut to 254 bytes and sent as option 61 with type 0,
//! the default request list (router, subnet mask), lease defaults (60 min lease, T1 = 50 %,
//! T2 = 85 %), the result (one IP with the router as gateway; option 121 routes, else
//! option 33 routes plus a default route; `priority` as route metric), the daemon flags,
//! systemd socket activation (`LISTEN_FDS=1`), link set up before acquiring and down when
//! a lease is lost, and that a stopped daemon does not release leases. A DHCP server sees
//! the same client from either implementation.
//!
//! Different:
//! - Leases persist in `-statedir`; a daemon restarted even after SIGKILL resumes them (a
//!   stale socket file is replaced; a live one is an error). The reference forgets them.
//! - Nothing stays held at the server by a daemon killed mid-ADD: before each DHCPREQUEST
//!   the daemon fsyncs an intent (client ID, MAC, interface, requested address, server,
//!   xid) and deletes it once the lease file is saved. On start, an intent no lease file
//!   covers is released (DHCPRELEASE with the client ID and the address as ciaddr, which
//!   is what the server matches); so is a saved lease whose link or namespace is gone,
//!   and DEL or GC release an intent they find. A release goes out on the interface, or,
//!   once the failed ADD has deleted that, on its parent (the macvlan's master) in the
//!   daemon's namespace, recorded only when the kernel reports the parent there
//!   (IFLA_LINK_NETNSID); a daemon in another namespace than the parent cannot, and such
//!   a lease expires at the server as with the reference.
//! - Our own JSON protocol (CONNECT [`proto::RPC_PATH`]) carries CHECK (the lease exists
//!   and is unexpired; the reference re-runs Allocate, and does so against a reference
//!   daemon), GC (releases leases not in `cni.dev/valid-attachments`, drops those whose
//!   namespace is gone) and STATUS; the reference has no GC/STATUS. Over Go `net/rpc`
//!   only Allocate and Release exist.
//! - Errors: no answer within the acquisition budget is CNI code 11 (try again later),
//!   daemon unreachable 11 (ADD/DEL) or 50 (STATUS); the reference uses 999. Errors our
//!   daemon returns to the reference plugin are plain strings (code 999 there).
//! - `-lifetimes` (default on): the leased address, once the runtime has put it on the
//!   link, carries the lease's valid/preferred lifetime, refreshed on every renewal.
//! - Renewing without the address on the link uses INIT-REBOOT (broadcast), since the
//!   server's unicast to ciaddr would need ARP for an address no one holds.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod gob;
pub mod gorpc;
pub mod lease;
pub mod lifetime;
pub mod plugin;
pub mod proto;
pub mod store;

pub use error::DhcpError;
pub use plugin::DhcpPlugin;
