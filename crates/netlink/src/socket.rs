//! The netlink socket: send a request, collect its ACK or dump, check sequence numbers.

use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{
    ErrorMessage, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlaBuffer,
    NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket as SysSocket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::{Error, Result};

/// Large enough for any rtnetlink dump datagram (the kernel sizes them at most 32 KiB
/// unless the first message needs more; bigger ones are handled by peeking).
const RECV_BUF: usize = 64 * 1024;
/// No reply within this time is treated as a failure, so nothing waits forever.
const RECV_TIMEOUT: Duration = Duration::from_secs(15);
/// A dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is retried this many times.
const DUMP_RETRIES: usize = 5;
/// NLMSGERR_ATTR_MSG: the extended-ack text.
const NLMSGERR_ATTR_MSG: u16 = 1;

pub(crate) struct Socket {
    sock: SysSocket,
    seq: u32,
    port: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// A NETLINK_ROUTE socket in the calling thread's network namespace.
    pub(crate) fn new() -> Result<Socket> {
        let op = "opening rtnetlink socket";
        let mut sock = SysSocket::new(NETLINK_ROUTE).map_err(|e| Error::io(op, e))?;
        let addr = sock.bind_auto().map_err(|e| Error::io(op, e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io(op, e))?;
        // Best effort: old kernels lack these options, and they only improve errors.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_netlink_get_strict_chk(true);
        let tv = TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
        setsockopt(&sock.as_fd(), sockopt::ReceiveTimeout, &tv)
            .map_err(|e| Error::io(op, std::io::Error::from(e)))?;
        Ok(Socket {
            sock,
            seq: 0,
            port: addr.port_number(),
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Send a request that expects only an ACK.
    pub(crate) fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<()> {
        let seq = self.send(msg, flags | NLM_F_REQUEST | NLM_F_ACK, op)?;
        self.collect(seq, op).map(|_| ())
    }

    /// Send a request that expects one reply (e.g. RTM_GETLINK on an index).
    pub(crate) fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &str,
    ) -> Result<RouteNetlinkMessage> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK, op)?;
        let replies = self.collect(seq, op)?;
        replies.into_iter().next().ok_or_else(|| Error::Protocol {
            op: op.to_string(),
            detail: "no reply to a get request".into(),
        })
    }

    /// Send a dump request and collect every reply until NLMSG_DONE.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut last = None;
        for _ in 0..DUMP_RETRIES {
            let seq = self.send(msg.clone(), NLM_F_REQUEST | NLM_F_DUMP, op)?;
            match self.collect(seq, op) {
                Err(Error::Kernel {
                    errno: Errno::EINTR,
                    ..
                }) => last = Some(Errno::EINTR),
                other => return other,
            }
        }
        Err(Error::Kernel {
            op: op.to_string(),
            errno: last.unwrap_or(Errno::EINTR),
            ext_ack: Some("dump kept being interrupted by concurrent changes".into()),
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        let sent = self
            .sock
            .send(&out, 0)
            .map_err(|e| Error::io(format!("{op}: sending request"), e))?;
        if sent != out.len() {
            return Err(Error::Protocol {
                op: op.to_string(),
                detail: format!("short send {sent} of {}", out.len()),
            });
        }
        Ok(self.seq)
    }

    /// Read datagrams until the request `seq` is finished: an ACK/error for
    /// plain requests, NLMSG_DONE (or an error) for dumps. Messages with other
    /// sequence numbers are stale replies and are dropped.
    fn collect(&mut self, seq: u32, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv_datagram(op)?;
            let mut offset = 0usize;
            while offset < self.buf.len() {
                let rest = self.buf.get(offset..).unwrap_or_default();
                let nlbuf = NetlinkBuffer::new_checked(rest).map_err(|e| Error::Protocol {
                    op: op.to_string(),
                    detail: format!("bad netlink header: {e}"),
                })?;
                let len = nlbuf.length() as usize;
                let msg_seq = nlbuf.sequence_number();
                let msg_port = nlbuf.port_number();
                let msg_flags = nlbuf.flags();
                let msg_type = nlbuf.message_type();
                let raw = rest.get(..len).unwrap_or(rest);
                offset += align4(len.max(16));
                if msg_seq != seq || (msg_port != 0 && msg_port != self.port) {
                    tracing::debug!(msg_seq, seq, "dropping stale netlink reply");
                    continue;
                }
                if msg_flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let parsed =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map_err(|e| {
                        Error::Protocol {
                            op: op.to_string(),
                            detail: format!("cannot decode message type {msg_type}: {e}"),
                        }
                    })?;
                match parsed.payload {
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(out),
                            Some(code) => Err(kernel_error(op, code.get(), &err, msg_flags)),
                        };
                    }
                    NetlinkPayload::Done(done) => {
                        if done.code < 0 {
                            let ext = ext_ack_text(&done.extended_ack);
                            return Err(Error::Kernel {
                                op: op.to_string(),
                                errno: Errno::from_raw(done.code.saturating_neg()),
                                ext_ack: ext,
                            });
                        }
                        if interrupted {
                            return Err(Error::Kernel {
                                op: op.to_string(),
                                errno: Errno::EINTR,
                                ext_ack: None,
                            });
                        }
                        return Ok(out);
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(Error::Protocol {
                            op: op.to_string(),
                            detail: "netlink overrun".into(),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    fn recv_datagram(&mut self, op: &str) -> Result<()> {
        let map = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                Error::io(
                    format!(
                        "{op}: no reply from the kernel within {}s",
                        RECV_TIMEOUT.as_secs()
                    ),
                    e,
                )
            } else {
                Error::io(format!("{op}: receiving reply"), e)
            }
        };
        loop {
            self.buf.clear();
            // Peek first so an oversized datagram is never truncated.
            let want = match self
                .sock
                .recv(&mut self.buf, libc::MSG_PEEK | libc::MSG_TRUNC)
            {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(map(e)),
            };
            self.buf.clear();
            if want > self.buf.capacity() {
                self.buf.reserve(want);
            }
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(map(e)),
            }
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn kernel_error(op: &str, code: i32, err: &ErrorMessage, flags: u16) -> Error {
    let errno = Errno::from_raw(code.saturating_abs());
    let mut ext_ack = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // Payload after the error code: the request's header, plus its body unless capped,
        // then the ext-ack TLVs.
        let req_len = err
            .header
            .get(0..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_ne_bytes(b) as usize)
            .unwrap_or(16);
        let skip = if flags & NLM_F_CAPPED != 0 {
            16
        } else {
            align4(req_len)
        };
        if let Some(tlvs) = err.header.get(skip..) {
            ext_ack = ext_ack_text(tlvs);
        }
    }
    Error::Kernel {
        op: op.to_string(),
        errno,
        ext_ack,
    }
}

fn ext_ack_text(tlvs: &[u8]) -> Option<String> {
    for nla in NlasIterator::new(tlvs) {
        let Ok(nla) = nla else { break };
        let nla: NlaBuffer<&[u8]> = nla;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let text = nla.value();
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            let s = String::from_utf8_lossy(text).trim().to_string();
            if !s.is_empty() {
                return Some(s);
            }
        }
    }
    None
}
