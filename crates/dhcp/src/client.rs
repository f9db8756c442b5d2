//! The DHCPv4 client. Every function here runs on a thread that is already inside the
//! container's network namespace (the daemon spawns one per operation with
//! `netns::run_in`), on the interface named by the lease.
//!
//! Sending uses a UDP socket bound to 0.0.0.0:68 with SO_BINDTODEVICE + SO_BROADCAST (the
//! kernel sends a limited broadcast from 0.0.0.0 on a device without an address).
//! Receiving uses an AF_PACKET socket on the interface, because a server answering a
//! client without the broadcast flag unicasts to the offered address, which the IP layer
//! would drop as not ours.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv4Net;
use macvnet_netlink::{Handle, LinkChange};
use nix::sys::socket::{setsockopt, sockopt};

use crate::config::LeaseOptions;
use crate::lease::{Grant, LeaseRoute, Requested, DEFAULT_LEASE_SECS};
use crate::DhcpError;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
const ETH_P_IP: u16 = 0x0800;
/// Shortest lease we act on (a shorter one is treated as this long).
const MIN_LEASE_SECS: u32 = 8;

/// Retransmission and timeouts (the reference daemon's flags).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long one exchange waits for the server's answer (`-timeout`).
    pub timeout: Duration,
    /// Largest back-off between DISCOVER rounds (`-resendmax`).
    pub resend_max: Duration,
    /// Total time an acquisition may take (`-resendtimeout`).
    pub resend_timeout: Duration,
    /// Ask the server to broadcast its answers (`-broadcast`).
    pub broadcast: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: Duration::from_secs(10),
            resend_max: Duration::from_secs(62),
            resend_timeout: Duration::from_secs(208),
            broadcast: false,
        }
    }
}

/// The interface a lease lives on.
#[derive(Debug, Clone)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
}

/// Who is asking: the client ID and the options of the lease.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub client_id: &'a str,
    pub options: &'a LeaseOptions,
}

/// Look up `ifname` in the current namespace; with `bring_up`, set it up if it is down
/// (the reference does before acquiring).
pub fn iface(ifname: &str, bring_up: bool) -> Result<Iface, DhcpError> {
    let mut h = Handle::current().map_err(|e| DhcpError::netlink("opening netlink", e))?;
    let link = h
        .link_by_name(ifname)
        .map_err(|e| DhcpError::netlink(format!("error looking up {ifname:?}"), e))?;
    if bring_up && !link.up {
        let change = LinkChange {
            up: Some(true),
            ..Default::default()
        };
        h.set_link(link.index, &change)
            .map_err(|e| DhcpError::netlink(format!("setting {ifname} up"), e))?;
    }
    let mac = link
        .mac
        .map(|m| m.0)
        .ok_or_else(|| DhcpError::Config(format!("{ifname} has no MAC address")))?;
    Ok(Iface {
        index: link.index,
        name: link.name,
        mac,
    })
}

/// Whether `addr` is configured on the interface (then the RFC renew path works).
pub fn has_address(index: u32, addr: Ipv4Addr) -> bool {
    Handle::current()
        .and_then(|mut h| h.addrs(Some(index)))
        .map(|list| {
            list.iter()
                .any(|a| a.addr.addr() == std::net::IpAddr::V4(addr))
        })
        .unwrap_or(false)
}

/// A random u32 from the kernel (transaction IDs, jitter).
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if ok {
        u32::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or(0)
    }
}

/// Uniform in [-span, span).
fn jitter(span: Duration) -> i128 {
    let ms = span.as_millis().max(1) as i128;
    i128::from(random_u32()) % (2 * ms) - ms
}

/// A UDP socket on 0.0.0.0:68 that sends through `ifname` only, broadcast allowed.
fn udp_socket(name: &str) -> Result<UdpSocket, DhcpError> {
    let udp_fd = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io("creating UDP socket", name, e))?;
    setsockopt(&udp_fd, sockopt::ReuseAddr, &true).map_err(|e| io("SO_REUSEADDR", name, e))?;
    setsockopt(&udp_fd, sockopt::Broadcast, &true).map_err(|e| io("SO_BROADCAST", name, e))?;
    setsockopt(
        &udp_fd,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(name),
    )
    .map_err(|e| io("SO_BINDTODEVICE", name, e))?;
    let bind =
        nix::sys::socket::SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT));
    nix::sys::socket::bind(udp_fd.as_raw_fd(), &bind)
        .map_err(|e| io("binding 0.0.0.0:68", name, e))?;
    Ok(UdpSocket::from(udp_fd))
}

/// The sockets of one exchange, closed on drop.
struct Conn {
    iface: Iface,
    udp: UdpSocket,
    packet: OwnedFd,
}

fn io(op: &str, ifname: &str, e: impl Into<std::io::Error>) -> DhcpError {
    DhcpError::io(format!("{op} on {ifname}"), e.into())
}

impl Conn {
    fn open(iface: &Iface) -> Result<Conn, DhcpError> {
        let name = iface.name.as_str();
        let udp = udp_socket(name)?;

        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IP.to_be()),
            )
        };
        if raw < 0 {
            return Err(io(
                "creating packet socket",
                name,
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor we own and nothing else refers to it.
        let packet = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = i32::try_from(iface.index).unwrap_or(0);
        // SAFETY: the pointer and length describe `sll`, which lives across the call.
        let rc = unsafe {
            libc::bind(
                packet.as_raw_fd(),
                std::ptr::addr_of!(sll).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io(
                "binding packet socket",
                name,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Conn {
            iface: iface.clone(),
            udp,
            packet,
        })
    }

    fn send(&self, msg: &Message, to: Ipv4Addr) -> Result<(), DhcpError> {
        let bytes = msg
            .to_vec()
            .map_err(|e| DhcpError::Codec(format!("encoding: {e}")))?;
        self.udp
            .send_to(&bytes, SocketAddrV4::new(to, SERVER_PORT))
            .map_err(|e| {
                io(
                    &format!("sending DHCP message to {to}"),
                    &self.iface.name,
                    e,
                )
            })?;
        Ok(())
    }

    /// The next DHCP reply for `xid` to our MAC, or `None` at `deadline`.
    fn recv(&self, xid: u32, deadline: Instant) -> Result<Option<(Message, Ipv4Addr)>, DhcpError> {
        let mut buf = vec![0u8; 2048];
        // Bounded: every turn either returns or waits on a timeout that shrinks to zero.
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            let tv = nix::sys::time::TimeVal::new(
                i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                i64::from(left.subsec_micros()),
            );
            setsockopt(&self.packet, sockopt::ReceiveTimeout, &tv)
                .map_err(|e| io("SO_RCVTIMEO", &self.iface.name, e))?;
            let n = match nix::sys::socket::recv(
                self.packet.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            ) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io("receiving", &self.iface.name, e)),
            };
            let Some((payload, src)) = buf.get(..n).and_then(udp_to_client) else {
                continue;
            };
            let Some(msg) = decode_message(payload) else {
                continue;
            };
            if msg.opcode() == Opcode::BootReply
                && msg.xid() == xid
                && msg.chaddr().get(..6) == Some(&self.iface.mac[..])
            {
                return Ok(Some((msg, src)));
            }
        }
    }
}

/// Options whose length dhcproto 0.15 only `debug_assert!`s (panic in debug builds,
/// misparse in release): Rapid Commit (80) is empty, Client FQDN (81) at least 3 bytes,
/// Client Network Interface (94) 3, the bulk leasequery times (152-155) 4.
fn length_ok(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,
        81 => len >= 3,
        94 => len == 3,
        152..=155 => len == 4,
        _ => true,
    }
}

/// A DHCP message from the wire; None when malformed (found by fuzzing: fuzz/targets.rs).
pub fn decode_message(payload: &[u8]) -> Option<Message> {
    // Options follow the 236-byte BOOTP header and the 4-byte magic cookie.
    let mut opts = payload.get(240..).unwrap_or_default();
    while let Some((&code, rest)) = opts.split_first() {
        if code == 0 {
            opts = rest;
            continue;
        }
        if code == 255 {
            break;
        }
        let (&len, rest) = rest.split_first()?;
        if !length_ok(code, usize::from(len)) {
            return None;
        }
        opts = rest.get(usize::from(len)..)?;
    }
    Message::decode(&mut Decoder::new(payload)).ok()
}

/// The UDP payload and source of an IPv4 packet to port 68, if that is what `pkt` is.
fn udp_to_client(pkt: &[u8]) -> Option<(&[u8], Ipv4Addr)> {
    let vihl = *pkt.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
    let frag = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]);
    // Fragments (offset or more-fragments bit) are not reassembled here.
    if ihl < 20 || *pkt.get(9)? != 17 || frag & 0x3fff != 0 {
        return None;
    }
    let src = Ipv4Addr::new(*pkt.get(12)?, *pkt.get(13)?, *pkt.get(14)?, *pkt.get(15)?);
    let udp = pkt.get(ihl..total.min(pkt.len()))?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let ulen = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dport != CLIENT_PORT || ulen < 8 {
        return None;
    }
    Some((udp.get(8..ulen.min(udp.len()))?, src))
}

/// An option from raw bytes, typed by dhcproto's own decoder.
fn raw_option(code: u8, data: &[u8]) -> Result<DhcpOption, DhcpError> {
    let len = u8::try_from(data.len())
        .map_err(|_| DhcpError::Codec(format!("option {code} longer than 255 bytes")))?;
    if !length_ok(code, data.len()) {
        return Err(DhcpError::Codec(format!(
            "option {code}: {} bytes is not a valid length",
            data.len()
        )));
    }
    let mut buf = Vec::with_capacity(data.len() + 2);
    buf.push(code);
    buf.push(len);
    buf.extend_from_slice(data);
    DhcpOption::decode(&mut Decoder::new(&buf))
        .map_err(|e| DhcpError::Codec(format!("option {code}: {e}")))
}

/// A client message with the client ID (type 0, as the reference) and the lease's options.
fn message(
    iface: &Iface,
    who: Identity<'_>,
    timing: &Timing,
    xid: u32,
    kind: MessageType,
    ciaddr: Ipv4Addr,
) -> Result<Message, DhcpError> {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, ciaddr, z, z, z, &iface.mac);
    if timing.broadcast && ciaddr.is_unspecified() {
        m.set_flags(Flags::default().set_broadcast());
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut id = Vec::with_capacity(who.client_id.len() + 1);
    id.push(0);
    id.extend_from_slice(who.client_id.as_bytes());
    opts.insert(DhcpOption::ClientIdentifier(id));
    if kind == MessageType::Release {
        // The server knows the client by the ID it was given, a configured one included.
        if let Some(data) = who.options.provide.get(&crate::config::code::CLIENT_ID) {
            opts.insert(raw_option(crate::config::code::CLIENT_ID, data)?);
        }
    } else {
        for (code, data) in &who.options.provide {
            opts.insert(raw_option(*code, data)?);
        }
        if !who.options.request.is_empty() {
            opts.insert(DhcpOption::ParameterRequestList(
                who.options
                    .request
                    .iter()
                    .map(|c| OptionCode::from(*c))
                    .collect(),
            ));
        }
    }
    Ok(m)
}

fn message_type(m: &Message) -> Option<MessageType> {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

fn server_id(m: &Message, src: Ipv4Addr) -> Ipv4Addr {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ if !m.siaddr().is_unspecified() => m.siaddr(),
        _ => src,
    }
}

/// Class A/B/C prefix of an option-33 destination (RFC 2132 §5.8: classful).
fn classful(dst: Ipv4Addr) -> Ipv4Net {
    let prefix = match dst.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    };
    Ipv4Net::new(dst, prefix).unwrap_or_else(|_| Ipv4Net::from(dst))
}

/// Decode what an ACK grants (reference semantics for defaults and routes).
pub fn grant_of(ack: &Message, src: Ipv4Addr) -> Result<Grant, DhcpError> {
    let server = server_id(ack, src);
    let opts = ack.opts();
    let mask = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => *m,
        _ => return Err(DhcpError::NoMask { server }),
    };
    let address = Ipv4Net::with_netmask(ack.yiaddr(), mask)
        .map_err(|e| DhcpError::Codec(format!("subnet mask {mask}: {e}")))?;
    let gateway = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(list)) => list.first().copied(),
        _ => None,
    };
    // A lease shorter than a few seconds (or T1/T2 of 0) would have us hammer the
    // server in a loop; keep the timers ordered: 0 < T1 <= T2 <= lease.
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(s)) => (*s).max(MIN_LEASE_SECS),
        _ => DEFAULT_LEASE_SECS,
    };
    let default_t2 = u32::try_from(u64::from(lease_secs) * 85 / 100).unwrap_or(u32::MAX);
    let t1_secs = match opts.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(s)) if *s > 0 && *s <= lease_secs => *s,
        _ => lease_secs / 2,
    };
    let t2_secs = match opts.get(OptionCode::Rebinding) {
        Some(DhcpOption::Rebinding(s)) if *s >= t1_secs && *s <= lease_secs => *s,
        _ => default_t2.max(t1_secs),
    };
    let mut routes = Vec::new();
    if let Some(DhcpOption::ClasslessStaticRoute(list)) = opts.get(OptionCode::ClasslessStaticRoute)
    {
        for (dst, gw) in list {
            routes.push(LeaseRoute {
                dst: *dst,
                gw: (!gw.is_unspecified()).then_some(*gw),
                link_scope: gw.is_unspecified(),
            });
        }
    }
    if routes.is_empty() {
        if let Some(DhcpOption::StaticRoutingTable(list)) = opts.get(OptionCode::StaticRoutingTable)
        {
            for (dst, gw) in list {
                routes.push(LeaseRoute {
                    dst: classful(*dst),
                    gw: Some(*gw),
                    link_scope: false,
                });
            }
        }
        if let Some(gw) = gateway {
            routes.push(LeaseRoute {
                dst: Ipv4Net::default(),
                gw: Some(gw),
                link_scope: false,
            });
        }
    }
    Ok(Grant {
        address,
        server_id: server,
        gateway,
        routes,
        lease_secs,
        t1_secs,
        t2_secs,
    })
}

/// Send `msg` and wait for the ACK/NAK to `xid`; `Ok(None)` when nothing came in time.
fn request_ack(
    conn: &Conn,
    msg: &Message,
    to: Ipv4Addr,
    wait: Duration,
) -> Result<Option<Grant>, DhcpError> {
    conn.send(msg, to)?;
    let deadline = Instant::now() + wait;
    while let Some((reply, src)) = conn.recv(msg.xid(), deadline)? {
        match message_type(&reply) {
            Some(MessageType::Ack) => return grant_of(&reply, src).map(Some),
            Some(MessageType::Nak) => {
                return Err(DhcpError::Nak {
                    server: server_id(&reply, src),
                    addr: match msg.opts().get(OptionCode::RequestedIpAddress) {
                        Some(DhcpOption::RequestedIpAddress(a)) => *a,
                        _ => msg.ciaddr(),
                    },
                })
            }
            _ => continue,
        }
    }
    Ok(None)
}

/// DISCOVER → OFFER → REQUEST → ACK, retried with the reference's back-off (four fast
/// rounds of 2 s ± 1 s, then 4 s doubling up to `resend_max`) until `resend_timeout`.
/// `hint` is put in DISCOVER as the requested address (re-acquiring after expiry).
pub fn acquire(
    iface: &Iface,
    who: Identity<'_>,
    timing: &Timing,
    hint: Option<Ipv4Addr>,
) -> Result<Grant, DhcpError> {
    acquire_with(iface, who, timing, hint, &mut |_| Ok(()))
}

/// [`acquire`], calling `before_request` with what each DHCPREQUEST asks for before it is
/// sent (the daemon persists it there: once sent, the server may ACK it at any time). An
/// error from it aborts the acquisition before that REQUEST.
pub fn acquire_with(
    iface: &Iface,
    who: Identity<'_>,
    timing: &Timing,
    hint: Option<Ipv4Addr>,
    before_request: &mut dyn FnMut(Requested) -> Result<(), DhcpError>,
) -> Result<Grant, DhcpError> {
    let conn = Conn::open(iface)?;
    let started = Instant::now();
    let deadline = started + timing.resend_timeout;
    let mut fast_left = 4u32;
    let mut base = Duration::from_secs(4);
    let mut stage = "offer";
    let mut last_err: Option<DhcpError> = None;
    // Retransmissions keep the xid, so a late OFFER (a server that pings the address
    // first, or is busy) still matches; a NAK starts a new transaction.
    let mut xid = random_u32();
    // Bounded by `deadline`: every path either returns or sleeps towards it.
    loop {
        let mut discover = message(
            iface,
            who,
            timing,
            xid,
            MessageType::Discover,
            Ipv4Addr::UNSPECIFIED,
        )?;
        if let Some(ip) = hint {
            discover
                .opts_mut()
                .insert(DhcpOption::RequestedIpAddress(ip));
        }
        conn.send(&discover, Ipv4Addr::BROADCAST)?;
        let wait_until = (Instant::now() + timing.timeout).min(deadline);
        let mut offer = None;
        while let Some((reply, src)) = conn.recv(xid, wait_until)? {
            if message_type(&reply) == Some(MessageType::Offer) {
                offer = Some((reply, src));
                break;
            }
        }
        if let Some((offer, src)) = offer {
            stage = "ack";
            let mut req = message(
                iface,
                who,
                timing,
                xid,
                MessageType::Request,
                Ipv4Addr::UNSPECIFIED,
            )?;
            let server = server_id(&offer, src);
            req.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
            req.opts_mut().insert(DhcpOption::ServerIdentifier(server));
            before_request(Requested {
                address: offer.yiaddr(),
                server_id: server,
                xid,
            })?;
            let wait = timing
                .timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            match request_ack(&conn, &req, Ipv4Addr::BROADCAST, wait) {
                Ok(Some(grant)) => return Ok(grant),
                Ok(None) => {}
                Err(e @ DhcpError::Nak { .. }) => {
                    tracing::info!(ifname = %iface.name, "{e}; starting over");
                    last_err = Some(e);
                    xid = random_u32();
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(last_err.unwrap_or(DhcpError::NoAnswer {
                stage,
                ifname: iface.name.clone(),
                waited: now - started,
            }));
        }
        let pause = if fast_left > 0 {
            fast_left -= 1;
            Duration::from_secs(2)
        } else {
            let b = base;
            if base < timing.resend_max {
                base = (base * 2).min(timing.resend_max);
            }
            b
        };
        let ms = (pause.as_millis() as i128 + jitter(Duration::from_secs(1))).max(100);
        let pause = Duration::from_millis(u64::try_from(ms).unwrap_or(100));
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// How a bound client extends its lease (RFC 2131 §4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extend {
    /// At T1: REQUEST with ciaddr, unicast to the server.
    Renew,
    /// At T2: REQUEST with ciaddr, broadcast to any server.
    Rebind,
    /// INIT-REBOOT: REQUEST for the address as option 50 from 0.0.0.0, broadcast. Used
    /// when the address is not on the interface (the server's unicast reply to ciaddr
    /// would need ARP for an address nobody answers for).
    Reboot,
}

/// One REQUEST/ACK exchange extending the lease for `addr` held from `server`.
pub fn extend(
    iface: &Iface,
    who: Identity<'_>,
    timing: &Timing,
    how: Extend,
    addr: Ipv4Addr,
    server: Ipv4Addr,
) -> Result<Grant, DhcpError> {
    let conn = Conn::open(iface)?;
    let xid = random_u32();
    let (ciaddr, to) = match how {
        Extend::Renew => (addr, server),
        Extend::Rebind => (addr, Ipv4Addr::BROADCAST),
        Extend::Reboot => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
    };
    let mut req = message(iface, who, timing, xid, MessageType::Request, ciaddr)?;
    if how == Extend::Reboot {
        req.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    }
    let res = match request_ack(&conn, &req, to, timing.timeout) {
        // No route to the server from here: fall back to broadcast.
        Err(DhcpError::Io { .. }) if how == Extend::Renew => {
            request_ack(&conn, &req, Ipv4Addr::BROADCAST, timing.timeout)
        }
        other => other,
    };
    match res? {
        Some(g) => Ok(g),
        None => Err(DhcpError::NoAnswer {
            stage: "ack",
            ifname: iface.name.clone(),
            waited: timing.timeout,
        }),
    }
}

/// DHCPRELEASE for `addr` (best effort: a release has no answer).
pub fn release(
    iface: &Iface,
    who: Identity<'_>,
    addr: Ipv4Addr,
    server: Ipv4Addr,
) -> Result<(), DhcpError> {
    let conn = Conn::open(iface)?;
    let timing = Timing::default();
    let mut msg = message(
        iface,
        who,
        &timing,
        random_u32(),
        MessageType::Release,
        addr,
    )?;
    msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    // Unicast needs our address on the link (the kernel would send from 0.0.0.0).
    if has_address(iface.index, addr) && conn.send(&msg, server).is_ok() {
        return Ok(());
    }
    conn.send(&msg, Ipv4Addr::BROADCAST)
}

/// DHCPRELEASE for `addr` sent through `uplink` (a link of the calling thread's
/// namespace) on behalf of a client whose own interface is gone: a limited broadcast
/// carrying the client's ID, hardware address and `addr` as ciaddr, which is all a
/// server matches a release on (RFC 2131 §4.4.6; dnsmasq: client ID, then ciaddr).
pub fn release_via(
    uplink: &str,
    client_mac: [u8; 6],
    who: Identity<'_>,
    addr: Ipv4Addr,
    server: Ipv4Addr,
) -> Result<(), DhcpError> {
    let udp = udp_socket(uplink)?;
    let iface = Iface {
        index: 0,
        name: uplink.to_string(),
        mac: client_mac,
    };
    let mut msg = message(
        &iface,
        who,
        &Timing::default(),
        random_u32(),
        MessageType::Release,
        addr,
    )?;
    msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    let bytes = msg
        .to_vec()
        .map_err(|e| DhcpError::Codec(format!("encoding: {e}")))?;
    udp.send_to(&bytes, SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT))
        .map_err(|e| io("sending DHCPRELEASE", uplink, e))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp_to_port_68_only() {
        let mut pkt = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 255, 255, 255, 255,
        ];
        pkt.extend_from_slice(&[0, 67, 0, 68, 0, 11, 0, 0, b'a', b'b', b'c']);
        let total = pkt.len() as u16;
        pkt[2..4].copy_from_slice(&total.to_be_bytes());
        let (payload, src) = udp_to_client(&pkt).unwrap();
        assert_eq!(payload, b"abc");
        assert_eq!(src, Ipv4Addr::new(198, 18, 0, 1));
        pkt[23] = 67;
        assert!(udp_to_client(&pkt).is_none());
        assert!(udp_to_client(&pkt[..10]).is_none());
    }

    #[test]
    fn messages_carry_client_id_options_and_broadcast_flag() {
        let iface = Iface {
            index: 2,
            name: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
        };
        let mut options = LeaseOptions::default();
        options.provide.insert(12, b"pod-a".to_vec());
        options.request = vec![121, 3, 1];
        let who = Identity {
            client_id: "c/n/eth0",
            options: &options,
        };
        let mut timing = Timing::default();
        let z = Ipv4Addr::UNSPECIFIED;
        let m = message(&iface, who, &timing, 7, MessageType::Discover, z).unwrap();
        assert!(!m.flags().broadcast());
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(b"\0c/n/eth0".to_vec()))
        );
        assert_eq!(
            m.opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("pod-a".into()))
        );
        assert!(m.opts().get(OptionCode::ParameterRequestList).is_some());
        timing.broadcast = true;
        let m = message(&iface, who, &timing, 7, MessageType::Discover, z).unwrap();
        assert!(m.flags().broadcast());
        // A renewing client has an address: unicast replies, no flag (RFC 2131 §4.1).
        let renew = message(
            &iface,
            who,
            &timing,
            7,
            MessageType::Request,
            Ipv4Addr::new(198, 18, 0, 5),
        )
        .unwrap();
        assert!(!renew.flags().broadcast());
        let rel = message(&iface, who, &timing, 7, MessageType::Release, z).unwrap();
        assert!(rel.opts().get(OptionCode::Hostname).is_none());
        // A configured client ID is the one the server knows: the release carries it too.
        options.provide.insert(61, b"\x01own".to_vec());
        let who = Identity {
            client_id: "c/n/eth0",
            options: &options,
        };
        let rel = message(&iface, who, &timing, 7, MessageType::Release, z).unwrap();
        assert_eq!(
            rel.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(b"\x01own".to_vec()))
        );
    }

    #[test]
    fn ack_decoding_follows_the_reference() {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut ack = Message::new(z, Ipv4Addr::new(198, 18, 0, 50), z, z, &[2, 0, 0, 0, 0, 1]);
        ack.set_opcode(Opcode::BootReply);
        let o = ack.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(198, 18, 0, 1)]));
        o.insert(DhcpOption::AddressLeaseTime(120));
        o.insert(DhcpOption::StaticRoutingTable(vec![(
            Ipv4Addr::new(10, 0, 0, 0),
            Ipv4Addr::new(198, 18, 0, 2),
        )]));
        let g = grant_of(&ack, Ipv4Addr::new(198, 18, 0, 1)).unwrap();
        assert_eq!(g.address.to_string(), "198.18.0.50/24");
        assert_eq!((g.lease_secs, g.t1_secs, g.t2_secs), (120, 60, 102));
        assert_eq!(g.server_id, Ipv4Addr::new(198, 18, 0, 1));
        let dsts: Vec<String> = g.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, ["10.0.0.0/8", "0.0.0.0/0"]);

        ack.opts_mut()
            .insert(DhcpOption::ClasslessStaticRoute(vec![(
                "198.19.0.0/16".parse().unwrap(),
                Ipv4Addr::UNSPECIFIED,
            )]));
        let g = grant_of(&ack, Ipv4Addr::new(198, 18, 0, 1)).unwrap();
        assert_eq!(g.routes.len(), 1);
        assert!(g.routes[0].link_scope);

        // Nonsense timers are put in order instead of renewing in a tight loop.
        ack.opts_mut().insert(DhcpOption::AddressLeaseTime(0));
        ack.opts_mut().insert(DhcpOption::Renewal(0));
        ack.opts_mut().insert(DhcpOption::Rebinding(1000));
        let g = grant_of(&ack, Ipv4Addr::new(198, 18, 0, 1)).unwrap();
        assert_eq!((g.lease_secs, g.t1_secs, g.t2_secs), (8, 4, 6));

        ack.opts_mut().remove(OptionCode::SubnetMask);
        assert!(matches!(grant_of(&ack, z), Err(DhcpError::NoMask { .. })));
    }
}
