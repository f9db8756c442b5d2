//! Plugin ↔ daemon protocol over the unix socket.
//!
//! Two protocols share the socket, told apart by the CONNECT path:
//! - `/_goRPC_`: Go `net/rpc` with gob, as the reference plugin sends ([`crate::gorpc`]);
//! - [`RPC_PATH`]: ours, one JSON request line and one JSON reply line, which also carries
//!   CHECK, GC, STATUS and the operator calls. Against a reference daemon (HTTP 404 for
//!   our path) the plugin falls back to Go `net/rpc`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use macvnet_cni::CniError;
use serde::{Deserialize, Serialize};

use crate::DhcpError;

/// Our CONNECT path (the reference's is `/_goRPC_`).
pub const RPC_PATH: &str = "/macvnet-dhcp/v1";
pub const CONNECTED: &str = "200 Connected to macvnet dhcp";
const MAX_HEAD: usize = 4096;
const MAX_BODY: u64 = 8 * 1024 * 1024;

/// `skel.CmdArgs` as the reference sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CmdArgs {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    #[serde(default)]
    pub args: String,
    #[serde(default)]
    pub path: String,
    /// The network config (stdin of the plugin), as text.
    pub stdin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum Call {
    /// ADD: acquire (or return the live) lease.
    Allocate(CmdArgs),
    /// DEL: stop maintaining, DHCPRELEASE, forget.
    Release(CmdArgs),
    /// CHECK: the lease exists and is not expired.
    Check(CmdArgs),
    /// GC: release leases of the network not in `cni.dev/valid-attachments`, and drop
    /// leases whose namespace is gone.
    Gc(CmdArgs),
    /// STATUS: the daemon answers.
    Status,
    /// Renew one lease now and wait for the outcome (tests; operators).
    Renew {
        #[serde(rename = "clientID")]
        client_id: String,
        /// Force this step (default: whatever is due, else renew).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<crate::daemon::Step>,
    },
    /// Every lease the daemon maintains.
    List,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CniError>,
    /// Allocate: the CNI result (1.1.0 shape); Renew/List: lease records.
    #[serde(default)]
    pub result: serde_json::Value,
}

impl Reply {
    pub fn ok(result: serde_json::Value) -> Reply {
        Reply {
            error: None,
            result,
        }
    }

    pub fn err(e: CniError) -> Reply {
        Reply {
            error: Some(e),
            result: serde_json::Value::Null,
        }
    }
}

/// Read an HTTP head (up to the blank line), bounded.
fn read_head(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during handshake",
            ));
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "handshake too long",
            ));
        }
    }
}

/// Dials `path` with `timeout` on reads and writes and sends `CONNECT <rpc_path> HTTP/1.0`
/// ending in `eol` twice (Go's net/rpc client uses "\n"; we use "\r\n"). Returns the stream
/// for writing and a buffered reader on it.
pub(crate) fn connect(
    path: &Path,
    rpc_path: &str,
    eol: &str,
    timeout: Duration,
) -> Result<(UnixStream, BufReader<UnixStream>), DhcpError> {
    let dial = |e: std::io::Error| DhcpError::Dial {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut stream = UnixStream::connect(path).map_err(dial)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(dial)?;
    stream
        .write_all(format!("CONNECT {rpc_path} HTTP/1.0{eol}{eol}").as_bytes())
        .map_err(dial)?;
    let reader = BufReader::new(stream.try_clone().map_err(dial)?);
    Ok((stream, reader))
}

/// Dial the daemon at `path` and make one call; `timeout` bounds the whole exchange's
/// reads and writes (the daemon may take the acquisition timeout to answer).
pub fn call(path: &Path, call: &Call, timeout: Duration) -> Result<Reply, DhcpError> {
    let dial = |reason: String| DhcpError::Dial {
        path: path.to_path_buf(),
        reason,
    };
    let proto = |reason: String| DhcpError::Protocol {
        path: path.to_path_buf(),
        reason,
    };
    let (mut stream, mut reader) = connect(path, RPC_PATH, "\r\n", timeout)?;
    let head = read_head(&mut reader).map_err(|e| dial(e.to_string()))?;
    let status = head.lines().next().unwrap_or("");
    if status.contains(" 404 ") {
        return Err(DhcpError::ForeignDaemon {
            path: path.to_path_buf(),
        });
    }
    if status != format!("HTTP/1.0 {CONNECTED}") {
        return Err(dial(format!("unexpected HTTP response: {status:?}")));
    }
    let mut body = serde_json::to_vec(call).map_err(|e| proto(e.to_string()))?;
    body.push(b'\n');
    stream
        .write_all(&body)
        .map_err(|e| proto(format!("sending: {e}")))?;
    let mut line = String::new();
    reader
        .take(MAX_BODY)
        .read_line(&mut line)
        .map_err(|e| proto(format!("reading reply: {e}")))?;
    serde_json::from_str(&line).map_err(|e| proto(format!("bad reply {line:?}: {e}")))
}

/// What a client asked for.
#[derive(Debug)]
pub enum Incoming {
    /// Our protocol.
    Call(Call),
    /// Go net/rpc (the reference plugin): serve it with [`crate::gorpc::serve`].
    GoRpc(BufReader<UnixStream>),
    /// Something else; it was answered with an error status.
    Refused,
}

/// Server side of the handshake.
pub fn accept(stream: &UnixStream) -> std::io::Result<Incoming> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let head = read_head(&mut reader)?;
    let first = head.lines().next().unwrap_or("");
    if first == format!("CONNECT {} HTTP/1.0", crate::gorpc::RPC_PATH) {
        return Ok(Incoming::GoRpc(reader));
    }
    if first != format!("CONNECT {RPC_PATH} HTTP/1.0") {
        w.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n")?;
        return Ok(Incoming::Refused);
    }
    w.write_all(format!("HTTP/1.0 {CONNECTED}\r\n\r\n").as_bytes())?;
    let mut line = String::new();
    reader.take(MAX_BODY).read_line(&mut line)?;
    match serde_json::from_str::<Call>(&line) {
        Ok(c) => Ok(Incoming::Call(c)),
        Err(e) => {
            send_reply(
                stream,
                &Reply::err(CniError::decoding(format!("bad request: {e}"))),
            )?;
            Ok(Incoming::Refused)
        }
    }
}

pub fn send_reply(mut stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut body = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    body.push(b'\n');
    stream.write_all(&body)
}
