//! In-process ICMP echo (v4 and v6) from inside a namespace, no ping binary.
//!
//! A raw socket is used (not the unprivileged ICMP "ping" socket): fresh namespaces have
//! `net.ipv4.ping_group_range` = "1 0" (disabled), and we run as root anyway.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
    SockProtocol, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
};

use crate::{Error, NetnsRef, Result};

/// Outcome of one echo probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PingOutcome {
    pub replied: bool,
    /// Round-trip time of the first reply.
    pub rtt_us: Option<u64>,
    /// Echo requests actually handed to the kernel.
    pub sent: u32,
    /// Why the last request could not be sent (e.g. "network is unreachable (ENETUNREACH)"),
    /// when the kernel refused it. `None` when every request went out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_error: Option<String>,
}

/// Send up to `count` echo requests to `dst` from inside `ns` (raw ICMP socket on a
/// thread in that namespace), waiting at most `timeout` per request; stop at the first reply.
pub fn ping(ns: &NetnsRef, dst: IpAddr, count: u32, timeout: Duration) -> Result<PingOutcome> {
    probe_in(ns, Bind::None, dst, count, timeout)
}

/// Like [`ping`], with the socket bound to source address `src` (it must be an address of
/// the namespace). Useful when several endpoints share one namespace: a destination that is
/// another address of the same namespace is answered locally over `lo` (so it needs lo up),
/// exactly as `ping -I <address>` behaves.
pub fn ping_from(
    ns: &NetnsRef,
    src: Option<IpAddr>,
    dst: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<PingOutcome> {
    let bind = match src {
        Some(ip) => Bind::Addr(ip),
        None => Bind::None,
    };
    probe_in(ns, bind, dst, count, timeout)
}

/// Like [`ping`], with the socket bound to interface `ifname` (SO_BINDTODEVICE): requests
/// leave through that link and only replies arriving on it count, as `ping -I <ifname>`.
/// Note: toward an address of the *same* namespace (a sibling link) the bound device skips
/// the local route, the request goes out on the wire and the sibling's stack drops it as a
/// martian (its source is one of its own namespace's addresses; accept_local=0), so there is
/// no reply. Use [`ping_from`] with the source address for that case.
pub fn ping_via(
    ns: &NetnsRef,
    ifname: Option<&str>,
    dst: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<PingOutcome> {
    let bind = match ifname {
        Some(name) => Bind::Device(name.to_string()),
        None => Bind::None,
    };
    probe_in(ns, bind, dst, count, timeout)
}

enum Bind {
    None,
    Addr(IpAddr),
    Device(String),
}

fn probe_in(
    ns: &NetnsRef,
    bind: Bind,
    dst: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<PingOutcome> {
    if let Bind::Addr(src) = &bind {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(Error::Invalid(format!(
                "ping {dst} from {src}: source and destination families differ"
            )));
        }
    }
    if let Bind::Device(name) = &bind {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(Error::Invalid(format!(
                "ping {dst} via {name:?}: invalid interface name"
            )));
        }
    }
    crate::netns::run_in(ns, move || probe_here(&bind, dst, count, timeout))?
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP6_ECHO_REQUEST: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;
/// Payload after the 8-byte header; recognisable in captures.
const PAYLOAD: &[u8; 16] = b"macvnet-icmp-prb";

/// A per-call identifier: a per-process random base plus a counter, so concurrent probes
/// (threads, or other processes sharing the namespace) do not take each other's replies.
fn next_ident() -> u16 {
    static BASE: OnceLock<u16> = OnceLock::new();
    static COUNTER: AtomicU16 = AtomicU16::new(0);
    let base = *BASE.get_or_init(|| {
        let m = crate::MacAddr::random().0;
        u16::from_be_bytes([m[1], m[2]]) ^ (std::process::id() as u16)
    });
    base.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919))
}

/// RFC 1071 Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(8 + PAYLOAD.len());
    pkt.push(if v6 {
        ICMP6_ECHO_REQUEST
    } else {
        ICMP_ECHO_REQUEST
    });
    pkt.push(0); // code
    pkt.extend_from_slice(&[0, 0]); // checksum
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(PAYLOAD);
    // The kernel fills the ICMPv6 checksum on raw sockets (it needs the pseudo-header).
    if !v6 {
        let c = checksum(&pkt).to_be_bytes();
        pkt[2] = c[0];
        pkt[3] = c[1];
    }
    pkt
}

/// The (ident, seq) of an echo reply in a received datagram, or None for anything else.
/// IPv4 raw sockets deliver the IP header; IPv6 raw sockets deliver only the ICMPv6 message.
fn parse_reply(v6: bool, buf: &[u8]) -> Option<(u16, u16)> {
    let icmp = if v6 {
        buf
    } else {
        let ihl = usize::from(buf.first()? & 0x0f) * 4;
        buf.get(ihl..)?
    };
    let want = if v6 {
        ICMP6_ECHO_REPLY
    } else {
        ICMP_ECHO_REPLY
    };
    if icmp.len() < 8 || icmp.first() != Some(&want) || icmp.get(1) != Some(&0) {
        return None;
    }
    let ident = u16::from_be_bytes([*icmp.get(4)?, *icmp.get(5)?]);
    let seq = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]);
    Some((ident, seq))
}

fn open_socket(bind_to: &Bind, dst: IpAddr) -> Result<OwnedFd> {
    let (family, proto) = match dst {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
        .map_err(|e| Error::io(format!("opening raw ICMP socket to ping {dst}"), e.into()))?;
    match bind_to {
        Bind::None => {}
        Bind::Addr(src) => {
            let r = match SocketAddr::new(*src, 0) {
                SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
                SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
            };
            r.map_err(|e| {
                Error::io(
                    format!("binding ICMP socket to {src} to ping {dst}"),
                    e.into(),
                )
            })?;
        }
        Bind::Device(name) => {
            setsockopt(&fd, sockopt::BindToDevice, &OsString::from(name)).map_err(|e| {
                Error::io(
                    format!("binding ICMP socket to device {name} to ping {dst}"),
                    e.into(),
                )
            })?;
        }
    }
    Ok(fd)
}

fn send_to(fd: &OwnedFd, dst: IpAddr, scope_id: u32, pkt: &[u8]) -> nix::Result<usize> {
    match SocketAddr::new(dst, 0) {
        SocketAddr::V4(a) => sendto(fd.as_raw_fd(), pkt, &SockaddrIn::from(a), MsgFlags::empty()),
        SocketAddr::V6(mut a) => {
            a.set_scope_id(scope_id);
            sendto(
                fd.as_raw_fd(),
                pkt,
                &SockaddrIn6::from(a),
                MsgFlags::empty(),
            )
        }
    }
}

/// Scope for an IPv6 link-local destination: the bound interface (fe80:: is ambiguous
/// without one, and the kernel refuses to send with EINVAL).
fn link_local_scope(bind_to: &Bind, dst: IpAddr) -> Result<u32> {
    let (IpAddr::V6(v6), Bind::Device(name)) = (dst, bind_to) else {
        return Ok(0);
    };
    if v6.segments()[0] & 0xffc0 != 0xfe80 {
        return Ok(0);
    }
    nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| {
        Error::io(
            format!("looking up interface {name} to ping {dst}"),
            e.into(),
        )
    })
}

fn source_ip(addr: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(a) = addr.as_sockaddr_in() {
        return Some(IpAddr::V4(a.ip()));
    }
    addr.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip()))
}

fn errno_text(e: Errno) -> String {
    format!("{} ({e:?})", e.desc().to_lowercase())
}

/// The probe itself, in the calling thread's namespace.
fn probe_here(bind_to: &Bind, dst: IpAddr, count: u32, timeout: Duration) -> Result<PingOutcome> {
    let v6 = dst.is_ipv6();
    let fd = open_socket(bind_to, dst)?;
    let scope_id = link_local_scope(bind_to, dst)?;
    let ident = next_ident();
    let mut out = PingOutcome {
        replied: false,
        rtt_us: None,
        sent: 0,
        send_error: None,
    };
    // Send time per sequence number, so a late reply to an earlier request still counts.
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut buf = [0u8; 2048];

    for seq in 1..=count.min(u32::from(u16::MAX)) {
        let seq16 = seq as u16;
        let pkt = echo_request(v6, ident, seq16);
        sent_at.push(Instant::now());
        match send_to(&fd, dst, scope_id, &pkt) {
            Ok(_) => out.sent += 1,
            // Unreachable, no source address yet (DAD)...: this try failed, wait it out anyway
            // so that `count` tries span `count * timeout` like ping does.
            Err(e) => out.send_error = Some(errno_text(e)),
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Round up so a sub-millisecond remainder does not spin.
            let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("waiting for ICMP echo reply from {dst}"),
                        e.into(),
                    ))
                }
            }
            let (n, from) = match recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) {
                Ok(r) => r,
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("receiving ICMP echo reply from {dst}"),
                        e.into(),
                    ))
                }
            };
            let Some(data) = buf.get(..n) else { continue };
            let Some((rid, rseq)) = parse_reply(v6, data) else {
                continue;
            };
            if rid != ident || rseq == 0 || from.as_ref().and_then(source_ip) != Some(dst) {
                continue;
            }
            if let Some(t0) = sent_at.get(usize::from(rseq) - 1) {
                out.replied = true;
                out.rtt_us = Some(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checksum_known_vector() {
        // Echo request id=1 seq=1 with no payload: 08 00 f7 fd 00 01 00 01.
        let pkt = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&pkt), 0xf7fd);
        // Odd length pads with a zero byte.
        assert_eq!(checksum(&[0x01]), !0x0100);
        let req = echo_request(false, 0x1234, 7);
        assert_eq!(
            checksum(&req),
            0,
            "a packet with its checksum filled sums to zero"
        );
    }

    #[test]
    fn parses_only_echo_replies() {
        let mut reply = echo_request(true, 0xabcd, 3);
        assert_eq!(parse_reply(true, &reply), None, "a request is not a reply");
        reply[0] = ICMP6_ECHO_REPLY;
        assert_eq!(parse_reply(true, &reply), Some((0xabcd, 3)));
        let mut v4 = vec![0x45u8; 1];
        v4.extend_from_slice(&[0; 19]);
        let mut icmp = echo_request(false, 9, 2);
        icmp[0] = ICMP_ECHO_REPLY;
        v4.extend_from_slice(&icmp);
        assert_eq!(parse_reply(false, &v4), Some((9, 2)));
        assert_eq!(parse_reply(false, &v4[..22]), None, "truncated");
        assert_eq!(parse_reply(false, &[]), None);
    }

    #[test]
    fn idents_differ() {
        let a = next_ident();
        let b = next_ident();
        assert_ne!(a, b);
    }

    fn lo_up(t: &crate::testing::TestNs, up: bool) {
        let mut h = t.handle().unwrap();
        let lo = h.link_by_name("lo").unwrap();
        h.set_link(
            lo.index,
            &crate::LinkChange {
                up: Some(up),
                ..Default::default()
            },
        )
        .unwrap();
    }

    #[test]
    fn ping_loopback_v4() {
        if !crate::testing::require_root("icmp::ping_loopback_v4") {
            return;
        }
        let t = crate::testing::TestNs::new("icmp4").unwrap();
        let lo4: IpAddr = "127.0.0.1".parse().unwrap();
        lo_up(&t, true);
        let r = ping(&t.ns, lo4, 3, Duration::from_secs(1)).unwrap();
        assert!(r.replied, "{r:?}");
        assert!(r.rtt_us.is_some());
        assert_eq!(r.sent, 1, "stops at the first reply");
        let r = ping_via(&t.ns, Some("lo"), lo4, 1, Duration::from_secs(1)).unwrap();
        assert!(r.replied, "bound to lo: {r:?}");
        let r = ping_from(&t.ns, Some(lo4), lo4, 1, Duration::from_secs(1)).unwrap();
        assert!(r.replied, "bound to 127.0.0.1: {r:?}");

        lo_up(&t, false);
        let started = Instant::now();
        let r = ping(&t.ns, lo4, 2, Duration::from_millis(300)).unwrap();
        assert!(!r.replied, "{r:?}");
        assert_eq!(r.rtt_us, None);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(3),
            "bounded wait: {took:?}"
        );
    }

    #[test]
    fn ping_loopback_v6() {
        if !crate::testing::require_root("icmp::ping_loopback_v6") {
            return;
        }
        let t = crate::testing::TestNs::new("icmp6").unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        lo_up(&t, true);
        let r = ping(&t.ns, lo6, 3, Duration::from_secs(1)).unwrap();
        assert!(r.replied, "{r:?}");
        assert!(r.rtt_us.is_some());
        lo_up(&t, false);
        let r = ping(&t.ns, lo6, 1, Duration::from_millis(300)).unwrap();
        assert!(!r.replied, "{r:?}");
    }

    #[test]
    fn bad_arguments_rejected() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(matches!(
            ping_from(
                &NetnsRef::Current,
                Some(src),
                dst,
                1,
                Duration::from_millis(10)
            ),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            ping_via(
                &NetnsRef::Current,
                Some("a-name-far-too-long"),
                dst,
                1,
                Duration::from_millis(10)
            ),
            Err(Error::Invalid(_))
        ));
    }
}
