//! Topology files: TOML parsing with line numbers, and validation before anything is created.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;
use macvnet_netlink::{MacAddr, Mode};
use serde::Deserialize;
use toml::Spanned;

use super::LabError;

/// A validated lab topology. Names here are logical (as written in the file).
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub description: String,
    pub netns: Vec<NsDef>,
    pub uplinks: Vec<Uplink>,
    pub children: Vec<Child>,
    /// `[etcd]` + `[pool]`: one address pool for `address = "cluster"` children of every host.
    pub cluster: Option<ClusterDef>,
}

/// Where the lab's etcd runs and the pool the `cluster` IPAM plugin hands out.
#[derive(Debug, Clone)]
pub struct ClusterDef {
    /// Logical namespace etcd runs in, and the address (of a link there) it listens on.
    pub etcd_netns: String,
    pub etcd_address: IpAddr,
    pub range: IpNet,
    pub exclude: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    /// Per-node block size; 0 = no blocks.
    pub blocks: u64,
}

#[derive(Debug, Clone)]
pub struct NsDef {
    pub name: String,
    pub lo_up: bool,
}

/// One interface end: where it lives, its name, optional address and MAC.
#[derive(Debug, Clone)]
pub struct Iface {
    pub netns: String,
    pub name: String,
    pub address: Option<IpNet>,
    pub mac: Option<MacAddr>,
}

/// A Linux bridge in the lan namespace standing for the external switch.
#[derive(Debug, Clone)]
pub struct Switch {
    /// Reflect frames back out of the port they came in on (802.1Qbg VEPA needs it).
    pub hairpin: bool,
    /// Name of the veth end enslaved to the bridge (the bridge itself takes `lan.name`).
    pub port: String,
}

/// Host shim: a bridge-mode macvlan on the parent, in the parent's namespace.
#[derive(Debug, Clone)]
pub struct Shim {
    pub name: String,
    pub address: IpNet,
    pub routes: Vec<IpNet>,
}

/// A veth pair: `lan` (gateway side) and `parent` (the NIC children hang off).
#[derive(Debug, Clone)]
pub struct Uplink {
    pub lan: Iface,
    pub parent: Iface,
    pub switch: Option<Switch>,
    pub shim: Option<Shim>,
    /// dnsmasq serving leases on the lan end.
    pub dhcp: Option<DhcpServe>,
    /// Index of the first uplink on the same switch (its own index unless it shares the
    /// bridge of an earlier uplink): uplinks of one segment are one L2 network.
    pub segment: usize,
}

/// A DHCP server (dnsmasq) on the lan end of an uplink.
#[derive(Debug, Clone)]
pub struct DhcpServe {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    /// Lease time as dnsmasq takes it ("2m", "1h", "infinite").
    pub lease: String,
}

#[derive(Debug, Clone)]
pub struct Child {
    pub name: String,
    /// Index into `Topology::uplinks`.
    pub uplink: usize,
    pub tap: bool,
    pub mode: Mode,
    pub netns: String,
    pub address: Option<IpNet>,
    pub mac: Option<MacAddr>,
    pub source_macs: Vec<MacAddr>,
    pub nopromisc: bool,
    /// `address = "dhcp"`: leased from the uplink's dnsmasq by `up` (then in the state).
    pub dhcp: bool,
    /// `address = "cluster"`: allocated by the `cluster` IPAM plugin from the lab's pool.
    pub cluster: bool,
}

impl Topology {
    pub fn ns(&self, name: &str) -> Option<&NsDef> {
        self.netns.iter().find(|n| n.name == name)
    }
    pub fn lo_up(&self, ns: &str) -> bool {
        self.ns(ns).is_none_or(|n| n.lo_up)
    }
}

// ---- raw file shape ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    netns: Vec<RawNs>,
    #[serde(default)]
    uplink: Vec<RawUplink>,
    #[serde(default)]
    child: Vec<RawChild>,
    etcd: Option<RawEtcd>,
    pool: Option<RawPool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    netns: Spanned<String>,
    address: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    range: Spanned<String>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    blocks: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNs {
    name: Spanned<String>,
    lo: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIface {
    netns: Spanned<String>,
    name: Spanned<String>,
    address: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    shim: Option<Spanned<RawShim>>,
    dhcp: Option<Spanned<RawDhcp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDhcp {
    range: Spanned<String>,
    lease: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShim {
    name: Option<Spanned<String>>,
    address: Spanned<String>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    #[serde(default)]
    hairpin: bool,
    port: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    lan: RawIface,
    parent: RawIface,
    switch: Option<RawSwitch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChild {
    name: Spanned<String>,
    parent: Spanned<String>,
    kind: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    netns: Spanned<String>,
    address: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    source_macs: Vec<Spanned<String>>,
    #[serde(default)]
    nopromisc: bool,
}

/// Read and validate a topology file.
pub fn load(path: &Path) -> Result<Topology, LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
        file: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse and validate topology text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Topology, LabError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| LabError::Parse {
        file: file.to_string(),
        line: e.span().map_or(0, |s| line_of(text, s.start)),
        msg: e.message().to_string(),
    })?;
    Validator {
        text,
        file,
        seen_names: HashMap::new(),
        seen_addrs: HashMap::new(),
    }
    .run(raw)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
        + 1
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    /// (netns, link name) → line of first use.
    seen_names: HashMap<(String, String), usize>,
    /// IP → line of first use.
    seen_addrs: HashMap<IpAddr, usize>,
}

/// The safety rule: labs use only documentation/benchmark ranges.
pub fn allowed_net(net: &IpNet) -> bool {
    const V4: &str = "198.18.0.0/15";
    const V6: &str = "2001:db8::/32";
    [V4, V6]
        .iter()
        .filter_map(|s| s.parse::<IpNet>().ok())
        .any(|allowed| allowed.contains(net))
}

impl Validator<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Result<T, LabError> {
        Err(LabError::Invalid {
            file: self.file.to_string(),
            line: line_of(self.text, span.start),
            msg: msg.into(),
        })
    }

    fn ident(&self, s: &Spanned<String>, what: &str) -> Result<String, LabError> {
        let v = s.get_ref();
        let ok = !v.is_empty()
            && v.len() <= 32
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return self.err(
                s.span(),
                format!("{what} {v:?}: use 1-32 letters, digits, '-' or '_'"),
            );
        }
        Ok(v.clone())
    }

    fn link_name(&self, s: &Spanned<String>) -> Result<String, LabError> {
        let v = s.get_ref();
        if v.len() > 15 {
            return self.err(
                s.span(),
                format!(
                    "link name {v:?} is {} bytes; the kernel allows at most 15 (IFNAMSIZ-1)",
                    v.len()
                ),
            );
        }
        if v.is_empty()
            || v == "."
            || v == ".."
            || v == "lo"
            || v.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return self.err(s.span(), format!("bad link name {v:?}"));
        }
        Ok(v.clone())
    }

    fn netns_ref(&self, s: &Spanned<String>, known: &[NsDef]) -> Result<String, LabError> {
        let v = s.get_ref();
        if !known.iter().any(|n| &n.name == v) {
            let names: Vec<&str> = known.iter().map(|n| n.name.as_str()).collect();
            return self.err(
                s.span(),
                format!(
                    "unknown netns {v:?}: declare it with [[netns]] (known: {})",
                    names.join(", ")
                ),
            );
        }
        Ok(v.clone())
    }

    fn claim_name(&mut self, ns: &str, s: &Spanned<String>) -> Result<String, LabError> {
        let name = self.link_name(s)?;
        let line = line_of(self.text, s.span().start);
        if let Some(first) = self.seen_names.insert((ns.to_string(), name.clone()), line) {
            return self.err(
                s.span(),
                format!(
                    "duplicate link name {name:?} in netns {ns:?} (first used on line {first})"
                ),
            );
        }
        Ok(name)
    }

    fn net(&self, s: &Spanned<String>) -> Result<IpNet, LabError> {
        let v = s.get_ref();
        let net: IpNet = v.parse().map_err(|_| LabError::Invalid {
            file: self.file.to_string(),
            line: line_of(self.text, s.span().start),
            msg: format!("bad address {v:?}: expected ADDRESS/PREFIX like 198.18.0.11/24"),
        })?;
        if !allowed_net(&net.trunc()) {
            return self.err(
                s.span(),
                format!(
                    "address {v} is outside 198.18.0.0/15 and 2001:db8::/32; labs use only these \
                     ranges so they can never collide with real networks"
                ),
            );
        }
        Ok(net)
    }

    fn address(&mut self, s: &Option<Spanned<String>>) -> Result<Option<IpNet>, LabError> {
        let Some(s) = s else { return Ok(None) };
        let net = self.net(s)?;
        let line = line_of(self.text, s.span().start);
        if let Some(first) = self.seen_addrs.insert(net.addr(), line) {
            return self.err(
                s.span(),
                format!(
                    "duplicate address {} (first used on line {first})",
                    net.addr()
                ),
            );
        }
        Ok(Some(net))
    }

    fn mac(&self, s: &Spanned<String>) -> Result<MacAddr, LabError> {
        let m: MacAddr = s.get_ref().parse().map_err(|e| LabError::Invalid {
            file: self.file.to_string(),
            line: line_of(self.text, s.span().start),
            msg: format!("{e}"),
        })?;
        if !m.is_unicast() || m.is_zero() {
            return self.err(
                s.span(),
                format!("MAC {m} must be a non-zero unicast address"),
            );
        }
        Ok(m)
    }

    fn iface(&mut self, r: &RawIface, known: &[NsDef]) -> Result<Iface, LabError> {
        let netns = self.netns_ref(&r.netns, known)?;
        let name = self.claim_name(&netns, &r.name)?;
        let address = self.address(&r.address)?;
        let mac = r.mac.as_ref().map(|m| self.mac(m)).transpose()?;
        Ok(Iface {
            netns,
            name,
            address,
            mac,
        })
    }

    /// `dhcp = { range = "A,B", lease = "2m" }` on a lan end with an IPv4 address whose
    /// subnet holds the range.
    fn dhcp_serve(
        &self,
        d: &Spanned<RawDhcp>,
        lan_addr: Option<IpNet>,
    ) -> Result<DhcpServe, LabError> {
        let r = d.get_ref();
        let Some(IpNet::V4(net)) = lan_addr else {
            return self.err(
                d.span(),
                "a DHCP server needs an IPv4 address on the lan end (dnsmasq binds to it)",
            );
        };
        let range = r.range.get_ref();
        let parsed = range.split_once(',').and_then(|(a, b)| {
            Some((
                a.trim().parse::<Ipv4Addr>().ok()?,
                b.trim().parse::<Ipv4Addr>().ok()?,
            ))
        });
        let Some((start, end)) = parsed else {
            return self.err(
                r.range.span(),
                format!("dhcp range {range:?}: expected \"FIRST,LAST\" like \"198.18.0.100,198.18.0.150\""),
            );
        };
        let net = net.trunc();
        if start > end || !net.contains(&start) || !net.contains(&end) {
            return self.err(
                r.range.span(),
                format!("dhcp range {range:?} must be ascending and inside the lan subnet {net}"),
            );
        }
        let lease = r.lease.as_ref().map_or("2m", |l| l.get_ref().as_str());
        let digits = lease.trim_end_matches(['s', 'm', 'h', 'd', 'w']);
        let ok = lease == "infinite"
            || (!digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && lease.len() - digits.len() <= 1);
        if !ok {
            let span = r.lease.as_ref().map_or(d.span(), |l| l.span());
            return self.err(
                span,
                format!(
                    "dhcp lease {lease:?}: expected a time like \"2m\", \"1h\" or \"infinite\""
                ),
            );
        }
        Ok(DhcpServe {
            start,
            end,
            lease: lease.to_string(),
        })
    }

    /// Two addressed links in one namespace on overlapping subnets make results depend on
    /// timing (every link answers ARP for every local address, and equal routes tie), so a
    /// lab refuses them. Shims are the deliberate exception (they carry their own routes).
    fn shared_subnets(&self, uplinks: &[Uplink], children: &[Child]) -> Result<(), LabError> {
        let mut addressed: Vec<(&str, &str, IpNet)> = Vec::new();
        for u in uplinks {
            for i in [&u.lan, &u.parent] {
                if let Some(a) = i.address {
                    addressed.push((&i.netns, &i.name, a));
                }
            }
        }
        for c in children {
            if let Some(a) = c.address {
                addressed.push((&c.netns, &c.name, a));
            }
        }
        for (k, (ns, name, a)) in addressed.iter().enumerate() {
            for (ns2, name2, b) in addressed.iter().skip(k + 1) {
                if ns == ns2 && (a.trunc().contains(&b.addr()) || b.trunc().contains(&a.addr())) {
                    let line = self.seen_addrs.get(&b.addr()).copied().unwrap_or(0);
                    return Err(LabError::Invalid {
                        file: self.file.to_string(),
                        line,
                        msg: format!(
                            "{name2} ({b}) and {name} ({a}) share netns {ns} and a subnet: which \
                             link answers then depends on timing (ARP flux); use another \
                             namespace or subnet (or a shim)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// `[etcd]` and `[pool]`: both or neither; etcd on an address of its namespace that every
    /// host running the plugin can reach on-link; the pool inside the lab ranges, and every
    /// static address inside it excluded (or the gateway), so nothing is handed out twice.
    fn cluster(
        &mut self,
        raw: &RawFile,
        known: &[NsDef],
        uplinks: &[Uplink],
        children: &[Child],
    ) -> Result<Option<ClusterDef>, LabError> {
        let (e, p) = match (&raw.etcd, &raw.pool) {
            (None, None) => return Ok(None),
            (Some(e), Some(p)) => (e, p),
            (Some(e), None) => {
                return self.err(e.netns.span(), "[etcd] needs a [pool] section as well")
            }
            (None, Some(p)) => {
                return self.err(p.range.span(), "[pool] needs an [etcd] section as well")
            }
        };
        let etcd_netns = self.netns_ref(&e.netns, known)?;
        let etcd_address: IpAddr = e.address.get_ref().parse().or_else(|_| {
            self.err(
                e.address.span(),
                format!(
                    "etcd address {:?}: expected a plain address like 198.18.0.1 (no prefix)",
                    e.address.get_ref()
                ),
            )
        })?;
        // Every address the lab puts on a link: (netns, address).
        let mut statics: Vec<(&str, IpNet)> = Vec::new();
        for u in uplinks {
            for end in [&u.lan, &u.parent] {
                if let Some(a) = end.address {
                    statics.push((&end.netns, a));
                }
            }
            if let Some(sh) = &u.shim {
                statics.push((&u.parent.netns, sh.address));
            }
        }
        for c in children {
            if let Some(a) = c.address {
                statics.push((&c.netns, a));
            }
        }
        if !statics
            .iter()
            .any(|(ns, a)| *ns == etcd_netns && a.addr() == etcd_address)
        {
            return self.err(
                e.address.span(),
                format!(
                    "etcd address {etcd_address} is not on any link of netns {etcd_netns:?}: give it \
                     to the switch (lan end) or another link there"
                ),
            );
        }
        let range = self.net(&p.range)?;
        if range.trunc() != range {
            return self.err(
                p.range.span(),
                format!("pool range {range}: give the network, {}", range.trunc()),
            );
        }
        let mut exclude = Vec::new();
        for x in &p.exclude {
            let net = self.net(x)?;
            if !range.contains(&net) {
                return self.err(
                    x.span(),
                    format!("exclude {net} is outside the pool {range}"),
                );
            }
            exclude.push(net);
        }
        let gateway = match &p.gateway {
            None => None,
            Some(g) => {
                let ip: IpAddr = g
                    .get_ref()
                    .parse()
                    .or_else(|_| self.err(g.span(), format!("bad gateway {:?}", g.get_ref())))?;
                if !range.contains(&ip) {
                    return self.err(
                        g.span(),
                        format!("gateway {ip} is outside the pool {range}"),
                    );
                }
                Some(ip)
            }
        };
        for (_, a) in &statics {
            let ip = a.addr();
            let taken = gateway == Some(ip) || exclude.iter().any(|x| x.contains(&ip));
            if range.contains(&ip) && !taken {
                let line = self.seen_addrs.get(&ip).copied().unwrap_or(0);
                return Err(LabError::Invalid {
                    file: self.file.to_string(),
                    line: line_of(self.text, p.range.span().start),
                    msg: format!(
                        "{ip} (line {line}) is inside the pool {range} but not excluded: the \
                         plugin could hand it to a child as well; add it to exclude"
                    ),
                });
            }
        }
        // The plugin runs in each cluster child's host namespace and dials etcd there.
        for c in children.iter().filter(|c| c.cluster) {
            let Some(u) = uplinks.get(c.uplink) else {
                continue;
            };
            let host = &u.parent.netns;
            let on_link = statics
                .iter()
                .any(|(ns, a)| ns == host && a.trunc().contains(&etcd_address));
            if !on_link && *host != etcd_netns {
                return self.err(
                    e.address.span(),
                    format!(
                        "host netns {host:?} runs the cluster plugin for {} but has no address on \
                         etcd's subnet: give its parent an address next to {etcd_address}",
                        c.name
                    ),
                );
            }
        }
        let blocks = p.blocks.as_ref().map_or(16, |b| *b.get_ref());
        if blocks > 1 << 20 {
            let span = p.blocks.as_ref().map(|b| b.span()).unwrap_or_default();
            return self.err(
                span,
                format!("blocks = {blocks}: at most 1048576 (0: no blocks)"),
            );
        }
        Ok(Some(ClusterDef {
            etcd_netns,
            etcd_address,
            range,
            exclude,
            gateway,
            blocks,
        }))
    }

    fn run(mut self, raw: RawFile) -> Result<Topology, LabError> {
        let name = self.ident(&raw.name, "lab name")?;
        let mut netns: Vec<NsDef> = Vec::new();
        let mut ns_lines: HashMap<String, usize> = HashMap::new();
        for n in &raw.netns {
            let nm = self.ident(&n.name, "netns name")?;
            let line = line_of(self.text, n.name.span().start);
            if let Some(first) = ns_lines.insert(nm.clone(), line) {
                return self.err(
                    n.name.span(),
                    format!("duplicate netns {nm:?} (first declared on line {first})"),
                );
            }
            let lo_up = match n.lo.as_ref().map(|l| l.get_ref().as_str()) {
                None | Some("up") => true,
                Some("down") => false,
                Some(other) => {
                    let span = n.lo.as_ref().map(|l| l.span()).unwrap_or_default();
                    return self.err(span, format!("lo = {other:?}: expected \"up\" or \"down\""));
                }
            };
            netns.push(NsDef { name: nm, lo_up });
        }

        let mut uplinks = Vec::new();
        for (i, u) in raw.uplink.iter().enumerate() {
            if let Some(shim) = &u.lan.shim {
                return self.err(
                    shim.span(),
                    "a shim belongs on the parent, not on the lan side",
                );
            }
            if let Some(d) = &u.parent.dhcp {
                return self.err(
                    d.span(),
                    "a DHCP server belongs on the lan side, not on the parent",
                );
            }
            // Several uplinks may name one switch (same lan netns and bridge name): the first
            // creates the bridge and carries its address; the others only add their port.
            let segment = uplinks
                .iter()
                .position(|o: &Uplink| {
                    o.switch.is_some()
                        && u.switch.is_some()
                        && o.lan.netns == *u.lan.netns.get_ref()
                        && o.lan.name == *u.lan.name.get_ref()
                })
                .unwrap_or(i);
            let lan = if segment == i {
                self.iface(&u.lan, &netns)?
            } else {
                if u.lan.address.is_some() || u.lan.mac.is_some() || u.lan.dhcp.is_some() {
                    return self.err(
                        u.lan.name.span(),
                        format!(
                            "switch {:?} is shared with an earlier uplink: give its address, mac \
                             and dhcp only on the first uplink that names it",
                            u.lan.name.get_ref()
                        ),
                    );
                }
                Iface {
                    netns: self.netns_ref(&u.lan.netns, &netns)?,
                    name: u.lan.name.get_ref().clone(),
                    address: None,
                    mac: None,
                }
            };
            let dhcp = u
                .lan
                .dhcp
                .as_ref()
                .map(|d| self.dhcp_serve(d, lan.address))
                .transpose()?;
            let switch = match &u.switch {
                None => None,
                Some(s) => {
                    let port = match &s.port {
                        Some(p) => self.claim_name(&lan.netns, p)?,
                        None => {
                            let p = Spanned::new(u.lan.name.span(), format!("swp{i}"));
                            self.claim_name(&lan.netns, &p)?
                        }
                    };
                    Some(Switch {
                        hairpin: s.hairpin,
                        port,
                    })
                }
            };
            let parent = self.iface(&u.parent, &netns)?;
            if parent.netns == lan.netns {
                return self.err(
                    u.parent.netns.span(),
                    "the parent and the lan side of an uplink must be in different namespaces",
                );
            }
            let shim = match &u.parent.shim {
                None => None,
                Some(s) => {
                    let rs = s.get_ref();
                    let default_name = Spanned::new(s.span(), "shim0".to_string());
                    let nm =
                        self.claim_name(&parent.netns, rs.name.as_ref().unwrap_or(&default_name))?;
                    let address = self.address(&Some(rs.address.clone()))?.ok_or_else(|| {
                        LabError::Invalid {
                            file: self.file.to_string(),
                            line: line_of(self.text, s.span().start),
                            msg: "shim needs an address".into(),
                        }
                    })?;
                    let routes = rs
                        .routes
                        .iter()
                        .map(|r| self.net(r))
                        .collect::<Result<_, _>>()?;
                    Some(Shim {
                        name: nm,
                        address,
                        routes,
                    })
                }
            };
            uplinks.push(Uplink {
                lan,
                parent,
                switch,
                shim,
                dhcp,
                segment,
            });
        }

        let mut children: Vec<Child> = Vec::new();
        for c in &raw.child {
            let p = c.parent.get_ref();
            // "eth0" or "host/eth0" when two parents share a name.
            let (pns, pname) = match p.split_once('/') {
                Some((a, b)) => (Some(a), b),
                None => (None, p.as_str()),
            };
            let matches: Vec<usize> = uplinks
                .iter()
                .enumerate()
                .filter(|(_, u)| u.parent.name == pname && pns.is_none_or(|n| n == u.parent.netns))
                .map(|(i, _)| i)
                .collect();
            let uplink = match matches.as_slice() {
                [one] => *one,
                [] => {
                    let known: Vec<String> = uplinks
                        .iter()
                        .map(|u| format!("{}/{}", u.parent.netns, u.parent.name))
                        .collect();
                    return self.err(
                        c.parent.span(),
                        format!(
                            "unknown parent {p:?}: parents are the `parent` ends of [[uplink]] (known: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
                _ => {
                    return self.err(
                        c.parent.span(),
                        format!("parent {p:?} is ambiguous: write NETNS/NAME"),
                    )
                }
            };
            let tap = match c.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("macvlan") => false,
                Some("macvtap") => true,
                Some(other) => {
                    let span = c.kind.as_ref().map(|k| k.span()).unwrap_or_default();
                    return self.err(span, format!("kind {other:?}: expected macvlan or macvtap"));
                }
            };
            let mode = match &c.mode {
                // The kernel's default when no mode is given.
                None => Mode::Vepa,
                Some(m) => m.get_ref().parse::<Mode>().or_else(|_| {
                    self.err(
                        m.span(),
                        format!(
                            "bad mode {:?}: valid modes are private, vepa, bridge, passthru, source",
                            m.get_ref()
                        ),
                    )
                })?,
            };
            let ns = self.netns_ref(&c.netns, &netns)?;
            let name = self.claim_name(&ns, &c.name)?;
            let dhcp = c.address.as_ref().is_some_and(|a| a.get_ref() == "dhcp");
            let cluster = c.address.as_ref().is_some_and(|a| a.get_ref() == "cluster");
            let address = if cluster {
                let span = c.address.as_ref().map(|a| a.span()).unwrap_or_default();
                if raw.pool.is_none() || raw.etcd.is_none() {
                    return self.err(
                        span,
                        "address = \"cluster\" needs the lab's [etcd] and [pool] sections",
                    );
                }
                if tap {
                    return self.err(span, "address = \"cluster\" needs kind = \"macvlan\"");
                }
                None
            } else if dhcp {
                let span = c.address.as_ref().map(|a| a.span()).unwrap_or_default();
                if uplinks.get(uplink).is_none_or(|u| u.dhcp.is_none()) {
                    return self.err(
                        span,
                        format!(
                            "address = \"dhcp\" needs a DHCP server on parent {p:?}'s uplink: \
                             add dhcp = {{ range = \"A,B\" }} to its lan end"
                        ),
                    );
                }
                if tap {
                    return self.err(span, "address = \"dhcp\" needs kind = \"macvlan\"");
                }
                None
            } else {
                self.address(&c.address)?
            };
            let mac = c.mac.as_ref().map(|m| self.mac(m)).transpose()?;
            if !c.source_macs.is_empty() && mode != Mode::Source {
                let span = c.source_macs.first().map(|s| s.span()).unwrap_or_default();
                return self.err(span, "source_macs only make sense with mode = \"source\"");
            }
            let source_macs = c
                .source_macs
                .iter()
                .map(|m| self.mac(m))
                .collect::<Result<_, _>>()?;
            let mode_span = c.mode.as_ref().map_or(c.name.span(), |m| m.span());
            if c.nopromisc && mode != Mode::Passthru {
                return self.err(mode_span, "nopromisc only applies to mode = \"passthru\"");
            }
            // The kernel allows a passthru child only alone on its parent.
            let siblings: Vec<&Child> = children.iter().filter(|o| o.uplink == uplink).collect();
            if mode == Mode::Passthru && !siblings.is_empty()
                || siblings.iter().any(|o| o.mode == Mode::Passthru)
            {
                let two =
                    mode == Mode::Passthru && siblings.iter().any(|o| o.mode == Mode::Passthru);
                return self.err(
                    mode_span,
                    if two {
                        format!("two passthru children on parent {p:?}: passthru allows exactly one child")
                    } else {
                        format!("parent {p:?} has a passthru child, which must be its only child")
                    },
                );
            }
            if mode == Mode::Passthru && uplinks.get(uplink).is_some_and(|u| u.shim.is_some()) {
                return self.err(mode_span, "a passthru parent cannot also carry a shim");
            }
            children.push(Child {
                name,
                uplink,
                tap,
                mode,
                netns: ns,
                address,
                mac,
                source_macs,
                nopromisc: c.nopromisc,
                dhcp,
                cluster,
            });
        }
        self.shared_subnets(&uplinks, &children)?;
        let cluster = self.cluster(&raw, &netns, &uplinks, &children)?;
        Ok(Topology {
            name,
            description: raw.description,
            netns,
            uplinks,
            children,
            cluster,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEED: &str = r#"name = "seed"
[[netns]]
name = "lan"
[[netns]]
name = "host"
[[netns]]
name = "ns1"
[[netns]]
name = "ns2"
[[uplink]]
lan = { netns = "lan", name = "gw0", address = "198.18.0.1/24" }
parent = { netns = "host", name = "eth0" }
[[child]]
name = "mac1"
parent = "eth0"
mode = "bridge"
netns = "ns1"
address = "198.18.0.11/24"
[[child]]
name = "mac2"
parent = "eth0"
mode = "bridge"
netns = "ns2"
address = "198.18.0.12/24"
"#;

    fn line_err(text: &str) -> (usize, String) {
        match parse(text, "t.toml") {
            Err(LabError::Invalid { line, msg, .. }) | Err(LabError::Parse { line, msg, .. }) => {
                (line, msg)
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn seed_parses() {
        let t = parse(SEED, "seed.toml").unwrap();
        assert_eq!(t.children.len(), 2);
        assert_eq!(t.children[1].mode, Mode::Bridge);
        assert!(t.lo_up("ns1"));
    }

    #[test]
    fn dhcp_children_need_a_dhcp_uplink() {
        let dhcp = SEED.replace("\"198.18.0.11/24\"", "\"dhcp\"");
        let (l, m) = line_err(&dhcp);
        assert_eq!(l, 18);
        assert!(m.contains("needs a DHCP server"), "{m}");
        let served = dhcp.replace(
            "address = \"198.18.0.1/24\" }",
            "address = \"198.18.0.1/24\", dhcp = { range = \"198.18.0.100,198.18.0.150\" } }",
        );
        let t = parse(&served, "t.toml").unwrap();
        assert!(t.children[0].dhcp && t.children[0].address.is_none());
        let d = t.uplinks[0].dhcp.as_ref().unwrap();
        assert_eq!(
            (d.start.octets()[3], d.end.octets()[3], d.lease.as_str()),
            (100, 150, "2m")
        );
        let (_, m) = line_err(&served.replace("198.18.0.150", "198.18.1.150"));
        assert!(m.contains("inside the lan subnet"), "{m}");
        let (_, m) = line_err(&served.replace("150\" }", "150\", lease = \"soon\" }"));
        assert!(m.contains("dhcp lease"), "{m}");
    }

    #[test]
    fn errors_carry_lines() {
        let (l, m) = line_err(&SEED.replace(
            "parent = \"eth0\"\nmode = \"bridge\"\nnetns = \"ns2\"",
            "parent = \"eth9\"\nmode = \"bridge\"\nnetns = \"ns2\"",
        ));
        assert_eq!(l, 21, "{m}");
        assert!(m.contains("unknown parent"), "{m}");
        let (l, m) = line_err(&SEED.replace("198.18.0.12/24", "198.18.0.11/24"));
        assert_eq!(l, 24);
        assert!(
            m.contains("duplicate address") && m.contains("line 18"),
            "{m}"
        );
        let (l, m) = line_err(&SEED.replacen("mode = \"bridge\"", "mode = \"bridgy\"", 1));
        assert_eq!(l, 16);
        assert!(m.contains("private, vepa, bridge, passthru, source"), "{m}");
        let (l, m) = line_err(&SEED.replace("\"bridge\"", "\"passthru\""));
        assert_eq!(l, 22);
        assert!(m.contains("two passthru"), "{m}");
        let (l, m) = line_err(&SEED.replace("198.18.0.12/24", "10.0.0.12/24"));
        assert_eq!(l, 24);
        assert!(m.contains("outside"), "{m}");
        let (l, m) = line_err(&SEED.replace("\"mac2\"", "\"a-very-long-name0\""));
        assert_eq!(l, 20);
        assert!(m.contains("15"), "{m}");
        let (l, m) = line_err(&SEED.replace("netns = \"ns2\"", "netns = \"ns3\""));
        assert_eq!(l, 23);
        assert!(m.contains("unknown netns"), "{m}");
        let (l, m) = line_err(
            &SEED
                .replace("\"mac2\"", "\"mac1\"")
                .replace("\"ns2\"\naddress", "\"ns1\"\naddress"),
        );
        assert_eq!(l, 20);
        assert!(m.contains("duplicate link name"), "{m}");
        let (l, m) =
            line_err(&SEED.replace("netns = \"ns2\"\naddress", "netns = \"ns1\"\naddress"));
        assert_eq!(l, 24);
        assert!(m.contains("ARP flux"), "{m}");
        let (_, m) = line_err(&SEED.replace("198.18.0.12/24", "198.18.0.12/8"));
        assert!(m.contains("outside"), "{m}");
        let (l, _) = line_err(&format!("{SEED}bogus = 1\n"));
        assert!(l > 0);
    }

    const CLUSTER: &str = include_str!("../../examples/cluster.toml");

    #[test]
    fn cluster_example_parses() {
        let t = parse(CLUSTER, "cluster.toml").unwrap();
        assert_eq!(
            t.uplinks.iter().map(|u| u.segment).collect::<Vec<_>>(),
            [0, 0, 0]
        );
        assert!(t.uplinks[1].lan.address.is_none());
        assert_eq!(t.uplinks[2].switch.as_ref().unwrap().port, "swp-c");
        let c = t.cluster.as_ref().unwrap();
        assert_eq!(c.etcd_address.to_string(), "198.18.0.1");
        assert_eq!(
            (c.range.to_string().as_str(), c.blocks),
            ("198.18.0.0/24", 4)
        );
        assert!(t.children.iter().all(|c| c.cluster && c.address.is_none()));
    }

    #[test]
    fn cluster_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "lan = { netns = \"lan\", name = \"sw0\" }\nswitch = { port = \"swp-b\" }",
                "lan = { netns = \"lan\", name = \"sw0\", address = \"198.18.0.9/24\" }\nswitch = { port = \"swp-b\" }",
                "shared with an earlier uplink",
            ),
            // Without `switch` the same lan name is simply a duplicate link.
            (
                "switch = { port = \"swp-b\" }\n",
                "",
                "duplicate link name",
            ),
            ("[pool]", "[poolx]", "unknown field"),
            ("address = \"198.18.0.1\"      #", "address = \"198.18.0.7\"      #", "not on any link"),
            ("[etcd]\nnetns = \"lan\"", "[etcd]\nnetns = \"b1\"", "not on any link"),
            ("[etcd]\nnetns = \"lan\"", "[etcd]\nnetns = \"nowhere\"", "unknown netns"),
            ("range = \"198.18.0.0/24\"", "range = \"198.18.0.5/24\"", "give the network"),
            ("exclude = [\"198.18.0.0/29\"]", "exclude = [\"198.18.2.0/29\"]", "outside the pool"),
            ("exclude = [\"198.18.0.0/29\"]", "exclude = [\"198.18.0.0/30\"]", "198.18.0.4 (line"),
            ("gateway = \"198.18.0.1\"", "gateway = \"198.18.1.1\"", "outside the pool"),
            (
                "parent = { netns = \"host-c\", name = \"eth0\", address = \"198.18.0.4/24\" }",
                "parent = { netns = \"host-c\", name = \"eth0\" }",
                "no address on etcd's subnet",
            ),
            (
                "netns = \"c2\"\naddress = \"cluster\"",
                "netns = \"c2\"\naddress = \"cluster\"\nkind = \"macvtap\"",
                "needs kind = \"macvlan\"",
            ),
        ];
        for (from, to, want) in cases {
            assert!(CLUSTER.contains(from), "{from}");
            let (l, m) = line_err(&CLUSTER.replacen(from, to, 1));
            assert!(l > 0 && m.contains(want), "{to}: line {l}: {m}");
        }
        // [etcd] alone, and cluster children without the sections.
        let start = CLUSTER.find("[pool]").unwrap();
        let end = CLUSTER.find("[[child]]").unwrap();
        let no_pool = format!("{}{}", &CLUSTER[..start], &CLUSTER[end..]);
        let (_, m) = line_err(&no_pool);
        assert!(m.contains("needs the lab's [etcd] and [pool]"), "{m}");
        let (_, m) = line_err(&CLUSTER[..start]);
        assert!(m.contains("[etcd] needs a [pool]"), "{m}");
    }

    #[test]
    fn shared_switch_expectations() {
        use crate::lab::expect::{endpoints, expect};
        let mut t = parse(CLUSTER, "cluster.toml").unwrap();
        for (i, c) in t.children.iter_mut().enumerate() {
            c.address = Some(format!("198.18.0.{}/24", 20 + i).parse().unwrap());
        }
        let eps = endpoints(&t);
        let ep = |l: &str| eps.iter().find(|e| e.label == l).unwrap();
        let reach = |a: &str, b: &str| expect(&t, ep(a), ep(b)).reach;
        assert!(reach("mac1@a1", "mac1@b1"));
        assert!(reach("mac1@c1", "mac2@a2"));
        assert!(reach("mac1@a1", "mac2@a2"));
        assert!(reach("eth0@host-a", "mac1@b1"));
        assert!(reach("sw0", "mac2@c2"));
        assert!(!reach("eth0@host-a", "mac1@a1"));
        // The same lab with three switches: hosts no longer meet.
        let apart = CLUSTER
            .replacen(
                "lan = { netns = \"lan\", name = \"sw0\" }",
                "lan = { netns = \"lan\", name = \"sw1\" }",
                1,
            )
            .replacen(
                "lan = { netns = \"lan\", name = \"sw0\" }",
                "lan = { netns = \"lan\", name = \"sw2\" }",
                1,
            );
        let mut t2 = parse(&apart, "apart.toml").unwrap();
        assert_eq!(
            t2.uplinks.iter().map(|u| u.segment).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        for (i, c) in t2.children.iter_mut().enumerate() {
            c.address = Some(format!("198.18.0.{}/24", 20 + i).parse().unwrap());
        }
        let eps2 = endpoints(&t2);
        let ep2 = |l: &str| eps2.iter().find(|e| e.label == l).unwrap();
        assert!(!expect(&t2, ep2("mac1@a1"), ep2("mac1@b1")).reach);
    }
}
