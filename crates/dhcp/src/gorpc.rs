//! Go `net/rpc` (HTTP CONNECT to `/_goRPC_`, then gob) as the reference dhcp plugin and
//! daemon speak it, for the two calls they make: `DHCP.Allocate(skel.CmdArgs) →
//! current.Result` and `DHCP.Release(skel.CmdArgs) → struct{}`. With it our daemon
//! serves the reference plugin and our plugin uses a reference daemon.

use std::io::{BufRead, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::gob::{self, Codec, Def, Val, BYTES, INT, STRING, UINT};
use crate::proto::CmdArgs;
use crate::DhcpError;

pub const RPC_PATH: &str = "/_goRPC_";
pub const CONNECTED: &str = "200 Connected to Go RPC";

/// Go's `net/rpc` request/response headers and `skel.CmdArgs`, as gob types.
fn header_defs(c: &mut Codec, out: &mut Vec<u8>, response: bool) -> i64 {
    if response {
        c.define(
            out,
            &Def::Struct(
                "Response",
                vec![("ServiceMethod", STRING), ("Seq", UINT), ("Error", STRING)],
            ),
        )
    } else {
        c.define(
            out,
            &Def::Struct("Request", vec![("ServiceMethod", STRING), ("Seq", UINT)]),
        )
    }
}

fn cmd_args_def(c: &mut Codec, out: &mut Vec<u8>) -> i64 {
    c.define(
        out,
        &Def::Struct(
            "CmdArgs",
            vec![
                ("ContainerID", STRING),
                ("Netns", STRING),
                ("IfName", STRING),
                ("Args", STRING),
                ("Path", STRING),
                ("StdinData", BYTES),
            ],
        ),
    )
}

/// `current.Result` (types/100) with the fields a DHCP lease fills. Go's gob sends
/// `net.IP`/`net.IPMask` as plain byte slices (seen on the wire from the reference).
fn result_def(c: &mut Codec, out: &mut Vec<u8>) -> i64 {
    let ip = BYTES;
    let ipnet = c.define(
        out,
        &Def::Struct("IPNet", vec![("IP", ip), ("Mask", BYTES)]),
    );
    let ipconf = c.define(
        out,
        &Def::Struct(
            "IPConfig",
            vec![("Interface", INT), ("Address", ipnet), ("Gateway", ip)],
        ),
    );
    let ips = c.define(out, &Def::Slice("[]*types100.IPConfig", ipconf));
    let route = c.define(
        out,
        &Def::Struct(
            "Route",
            vec![
                ("Dst", ipnet),
                ("GW", ip),
                ("MTU", INT),
                ("AdvMSS", INT),
                ("Priority", INT),
                ("Table", INT),
                ("Scope", INT),
            ],
        ),
    );
    let routes = c.define(out, &Def::Slice("[]*types.Route", route));
    c.define(
        out,
        &Def::Struct(
            "Result",
            vec![("CNIVersion", STRING), ("IPs", ips), ("Routes", routes)],
        ),
    )
}

fn ip_bytes(ip: IpAddr) -> Val {
    Val::Bytes(match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    })
}

fn ipnet_val(net: IpNet) -> Val {
    let mask = match net {
        IpNet::V4(n) => n.netmask().octets().to_vec(),
        IpNet::V6(n) => n.netmask().octets().to_vec(),
    };
    Val::Struct(vec![
        ("IP".into(), ip_bytes(net.addr())),
        ("Mask".into(), Val::Bytes(mask)),
    ])
}

/// A CNI result (JSON, 1.x shape) as a gob `current.Result`.
pub fn result_to_gob(v: &Value) -> Val {
    let mut ips = Vec::new();
    for ip in v["ips"].as_array().into_iter().flatten() {
        let mut f = Vec::new();
        if let Some(i) = ip["interface"].as_i64() {
            f.push(("Interface".into(), Val::Int(i)));
        }
        if let Some(a) = ip["address"].as_str().and_then(|s| s.parse::<IpNet>().ok()) {
            f.push(("Address".into(), ipnet_val(a)));
        }
        if let Some(g) = ip["gateway"]
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            f.push(("Gateway".into(), ip_bytes(g)));
        }
        ips.push(Val::Struct(f));
    }
    let mut routes = Vec::new();
    for r in v["routes"].as_array().into_iter().flatten() {
        let mut f = Vec::new();
        if let Some(d) = r["dst"].as_str().and_then(|s| s.parse::<IpNet>().ok()) {
            f.push(("Dst".into(), ipnet_val(d)));
        }
        if let Some(g) = r["gw"].as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
            f.push(("GW".into(), ip_bytes(g)));
        }
        for (key, name) in [
            ("mtu", "MTU"),
            ("advmss", "AdvMSS"),
            ("priority", "Priority"),
            ("table", "Table"),
            ("scope", "Scope"),
        ] {
            if let Some(n) = r[key].as_i64() {
                f.push((name.into(), Val::Int(n)));
            }
        }
        routes.push(Val::Struct(f));
    }
    Val::Struct(vec![
        ("CNIVersion".into(), Val::Str("1.0.0".into())),
        ("IPs".into(), Val::Slice(ips)),
        ("Routes".into(), Val::Slice(routes)),
    ])
}

/// A Go `net.IP`: 4 or 16 bytes (IPv4 often in its 16-byte mapped form), or text.
fn ip_of(v: Option<&Val>) -> Option<IpAddr> {
    let b = v?.bytes()?;
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => {
            let a = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?);
            Some(a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4))
        }
        _ => std::str::from_utf8(b).ok()?.parse().ok(),
    }
}

fn ipnet_of(v: Option<&Val>) -> Option<IpNet> {
    let v = v?;
    let ip = ip_of(v.field("IP"))?;
    let mask = v.field("Mask")?.bytes()?;
    let mut prefix: u32 = mask.iter().map(|b| b.count_ones()).sum();
    // A 16-byte mask on an IPv4 address counts the 96 mapped-prefix bits too.
    if ip.is_ipv4() && mask.len() == 16 {
        prefix = prefix.saturating_sub(96);
    }
    IpNet::new(ip, u8::try_from(prefix).ok()?).ok()
}

/// A gob `current.Result` as CNI result JSON (1.1.0 shape).
pub fn gob_to_result(v: &Val) -> Value {
    let mut ips = Vec::new();
    if let Some(Val::Slice(list)) = v.field("IPs") {
        for ip in list {
            let mut o = json!({});
            if let Some(a) = ipnet_of(ip.field("Address")) {
                o["address"] = json!(a.to_string());
            }
            if let Some(g) = ip_of(ip.field("Gateway")) {
                o["gateway"] = json!(g.to_string());
            }
            if let Some(i) = ip.field("Interface").and_then(Val::int) {
                o["interface"] = json!(i);
            }
            ips.push(o);
        }
    }
    let mut routes = Vec::new();
    if let Some(Val::Slice(list)) = v.field("Routes") {
        for r in list {
            let mut o = json!({});
            if let Some(d) = ipnet_of(r.field("Dst")) {
                o["dst"] = json!(d.to_string());
            }
            if let Some(g) = ip_of(r.field("GW")) {
                o["gw"] = json!(g.to_string());
            }
            for (key, name) in [
                ("mtu", "MTU"),
                ("advmss", "AdvMSS"),
                ("priority", "Priority"),
                ("table", "Table"),
                ("scope", "Scope"),
            ] {
                if let Some(n) = r.field(name).and_then(Val::int) {
                    o[key] = json!(n);
                }
            }
            routes.push(o);
        }
    }
    let mut out = json!({"cniVersion": "1.1.0", "ips": ips, "routes": routes});
    if let Some(dns) = v.field("DNS") {
        let list = |k: &str| -> Vec<String> {
            match dns.field(k) {
                Some(Val::Slice(l)) => l
                    .iter()
                    .filter_map(|s| s.str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut d = json!({});
        if !list("Nameservers").is_empty() {
            d["nameservers"] = json!(list("Nameservers"));
        }
        if let Some(dom) = dns.field("Domain").and_then(Val::str) {
            d["domain"] = json!(dom);
        }
        if !list("Search").is_empty() {
            d["search"] = json!(list("Search"));
        }
        if !list("Options").is_empty() {
            d["options"] = json!(list("Options"));
        }
        out["dns"] = d;
    }
    out
}

fn cmd_args_of(v: &Val) -> CmdArgs {
    let s = |k: &str| v.field(k).and_then(Val::str).unwrap_or("").to_string();
    CmdArgs {
        container_id: s("ContainerID"),
        netns: s("Netns"),
        ifname: s("IfName"),
        args: s("Args"),
        path: s("Path"),
        stdin: v
            .field("StdinData")
            .and_then(Val::bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
    }
}

fn gob_err(e: gob::GobError) -> std::io::Error {
    match e {
        gob::GobError::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// Serve Go net/rpc calls on an accepted stream (after the CONNECT head was read).
/// `handle` maps (method, args) to the result JSON (Allocate) or null (Release).
pub fn serve(
    mut reader: impl BufRead,
    mut w: &UnixStream,
    handle: impl Fn(&str, CmdArgs) -> Result<Value, String>,
) -> std::io::Result<()> {
    w.write_all(format!("HTTP/1.0 {CONNECTED}\n\n").as_bytes())?;
    let mut dec = Codec::default();
    let mut enc = Codec::default();
    // One call per plugin run; a few more are served if the client sends them.
    for _ in 0..16 {
        let req = match dec.read_value(&mut reader) {
            Ok(v) => v,
            Err(gob::GobError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(())
            }
            Err(e) => return Err(gob_err(e)),
        };
        let body = dec.read_value(&mut reader).map_err(gob_err)?;
        let method = req
            .field("ServiceMethod")
            .and_then(Val::str)
            .unwrap_or("")
            .to_string();
        let seq = match req.field("Seq") {
            Some(Val::Uint(u)) => *u,
            _ => 0,
        };
        let outcome = match method.as_str() {
            "DHCP.Allocate" | "DHCP.Release" => handle(&method, cmd_args_of(&body)),
            other => Err(format!("rpc: can't find method {other}")),
        };
        let mut out = Vec::new();
        let resp_id = header_defs(&mut enc, &mut out, true);
        let mut header = vec![("ServiceMethod".to_string(), Val::Str(method.clone()))];
        if seq != 0 {
            header.push(("Seq".into(), Val::Uint(seq)));
        }
        let body_val;
        let body_id;
        match outcome {
            Ok(v) if method == "DHCP.Allocate" => {
                body_id = result_def(&mut enc, &mut out);
                body_val = result_to_gob(&v);
            }
            Ok(_) => {
                body_id = enc.define(&mut out, &Def::Struct("struct {}", vec![]));
                body_val = Val::Struct(vec![]);
            }
            Err(e) => {
                header.push(("Error".into(), Val::Str(e)));
                body_id = enc.define(&mut out, &Def::Struct("struct {}", vec![]));
                body_val = Val::Struct(vec![]);
            }
        }
        enc.value(&mut out, resp_id, &Val::Struct(header))
            .map_err(gob_err)?;
        enc.value(&mut out, body_id, &body_val).map_err(gob_err)?;
        gob::send(&mut w, &out).map_err(gob_err)?;
    }
    Ok(())
}

/// Call a reference (Go net/rpc) daemon: `method` is "DHCP.Allocate" or "DHCP.Release".
pub fn call(
    path: &Path,
    method: &str,
    args: &CmdArgs,
    timeout: Duration,
) -> Result<Value, DhcpError> {
    let dial = |reason: String| DhcpError::Dial {
        path: path.to_path_buf(),
        reason,
    };
    let proto = |reason: String| DhcpError::Protocol {
        path: path.to_path_buf(),
        reason,
    };
    let (mut stream, mut reader) = crate::proto::connect(path, RPC_PATH, "\n", timeout)?;
    let mut status = String::new();
    reader
        .by_ref()
        .take(4096)
        .read_line(&mut status)
        .map_err(|e| dial(e.to_string()))?;
    // Rest of the head, up to the blank line (bounded).
    for _ in 0..64 {
        let mut line = String::new();
        let n = reader
            .by_ref()
            .take(4096)
            .read_line(&mut line)
            .map_err(|e| dial(e.to_string()))?;
        if n == 0 || line.trim().is_empty() {
            break;
        }
    }
    if !status.trim_end().ends_with(CONNECTED) {
        return Err(dial(format!(
            "unexpected HTTP response: {:?}",
            status.trim_end()
        )));
    }
    let mut enc = Codec::default();
    let mut out = Vec::new();
    let req_id = header_defs(&mut enc, &mut out, false);
    let args_id = cmd_args_def(&mut enc, &mut out);
    let header = Val::Struct(vec![("ServiceMethod".into(), Val::Str(method.to_string()))]);
    let body = Val::Struct(vec![
        ("ContainerID".into(), Val::Str(args.container_id.clone())),
        ("Netns".into(), Val::Str(args.netns.clone())),
        ("IfName".into(), Val::Str(args.ifname.clone())),
        ("Args".into(), Val::Str(args.args.clone())),
        ("Path".into(), Val::Str(args.path.clone())),
        (
            "StdinData".into(),
            Val::Bytes(args.stdin.as_bytes().to_vec()),
        ),
    ]);
    enc.value(&mut out, req_id, &header)
        .map_err(|e| proto(e.to_string()))?;
    enc.value(&mut out, args_id, &body)
        .map_err(|e| proto(e.to_string()))?;
    gob::send(&mut stream, &out).map_err(|e| proto(e.to_string()))?;
    let mut dec = Codec::default();
    let resp = dec
        .read_value(&mut reader)
        .map_err(|e| proto(e.to_string()))?;
    let result = dec
        .read_value(&mut reader)
        .map_err(|e| proto(e.to_string()))?;
    if let Some(err) = resp
        .field("Error")
        .and_then(Val::str)
        .filter(|e| !e.is_empty())
    {
        return Err(DhcpError::Remote(macvnet_cni::CniError::internal(format!(
            "error calling {method}: {err}"
        ))));
    }
    Ok(if method == "DHCP.Allocate" {
        gob_to_result(&result)
    } else {
        Value::Null
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn result_survives_gob_both_ways() {
        let v = json!({"cniVersion": "1.1.0",
            "ips": [{"address": "198.18.0.5/24", "gateway": "198.18.0.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1", "priority": 7},
                       {"dst": "198.19.0.0/16", "scope": 253}]});
        let mut c = Codec::default();
        let mut out = Vec::new();
        let id = result_def(&mut c, &mut out);
        c.value(&mut out, id, &result_to_gob(&v)).unwrap();
        let back = Codec::default().read_value(&mut &out[..]).unwrap();
        assert_eq!(gob_to_result(&back), v);
    }

    #[test]
    fn go_ipv4_in_16_bytes() {
        let mut mapped = vec![0u8; 10];
        mapped.extend_from_slice(&[0xff, 0xff, 198, 18, 0, 9]);
        let mut mask = vec![0xffu8; 15];
        mask.push(0);
        let net = Val::Struct(vec![
            ("IP".into(), Val::Bytes(mapped)),
            ("Mask".into(), Val::Bytes(mask)),
        ]);
        assert_eq!(ipnet_of(Some(&net)).unwrap().to_string(), "198.18.0.9/24");
    }
}
