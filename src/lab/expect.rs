//! Who should reach whom: the expected ICMP matrix, derived from macvlan mode semantics.
//!
//! Pure functions of the topology (no kernel access), so they are unit-tested. Comments cite
//! drivers/net/macvlan.c behaviour.

use std::net::IpAddr;

use ipnet::IpNet;
use macvnet_netlink::{MacAddr, Mode};
use serde::Serialize;

use super::topo::Topology;

/// What an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The lan end of uplink N (the gateway).
    Gateway(usize),
    /// The parent NIC of uplink N (only when it has an address).
    Parent(usize),
    /// Child N.
    Child(usize),
}

/// Something with an address that can send and answer pings.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// Short name for the matrix (the link name, `name@netns` when names repeat).
    pub label: String,
    pub role: Role,
    /// Logical namespace.
    pub netns: String,
    pub ifname: String,
    pub addr: IpNet,
}

/// An expected matrix cell with the reason, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub reach: bool,
    pub why: String,
}

/// All endpoints: gateways and addressed parents (per uplink), then addressed children.
pub fn endpoints(t: &Topology) -> Vec<Endpoint> {
    let mut v = Vec::new();
    for (i, u) in t.uplinks.iter().enumerate() {
        if let Some(a) = u.lan.address {
            v.push(Endpoint {
                label: u.lan.name.clone(),
                role: Role::Gateway(i),
                netns: u.lan.netns.clone(),
                ifname: u.lan.name.clone(),
                addr: a,
            });
        }
        if let Some(a) = u.parent.address {
            v.push(Endpoint {
                label: u.parent.name.clone(),
                role: Role::Parent(i),
                netns: u.parent.netns.clone(),
                ifname: u.parent.name.clone(),
                addr: a,
            });
        }
    }
    for (i, c) in t.children.iter().enumerate() {
        if let Some(a) = c.address {
            v.push(Endpoint {
                label: c.name.clone(),
                role: Role::Child(i),
                netns: c.netns.clone(),
                ifname: c.name.clone(),
                addr: a,
            });
        }
    }
    let labels: Vec<String> = v.iter().map(|e| e.label.clone()).collect();
    for e in &mut v {
        if labels.iter().filter(|l| **l == e.label).count() > 1 {
            e.label = format!("{}@{}", e.label, e.netns);
        }
    }
    v
}

/// A port on an uplink's L2 segment, as seen by the macvlan driver.
#[derive(Debug, Clone)]
enum Port {
    /// The lan end of the veth (or the switch bridge holding the gateway address).
    Gateway { uplink: usize, mac: Option<MacAddr> },
    /// The parent's own stack.
    Parent { uplink: usize, mac: Option<MacAddr> },
    /// A macvlan/macvtap child (the shim is a bridge-mode macvlan).
    Child {
        uplink: usize,
        mode: Mode,
        tap: bool,
        mac: Option<MacAddr>,
        sources: Vec<MacAddr>,
    },
}

impl Port {
    fn uplink(&self) -> usize {
        match self {
            Port::Gateway { uplink, .. }
            | Port::Parent { uplink, .. }
            | Port::Child { uplink, .. } => *uplink,
        }
    }
    fn mac(&self) -> Option<MacAddr> {
        match self {
            Port::Gateway { mac, .. } | Port::Parent { mac, .. } | Port::Child { mac, .. } => *mac,
        }
    }
}

fn own_port(t: &Topology, e: &Endpoint) -> Port {
    match e.role {
        Role::Gateway(u) => Port::Gateway {
            uplink: u,
            mac: t.uplinks.get(u).and_then(|x| x.lan.mac),
        },
        Role::Parent(u) => Port::Parent {
            uplink: u,
            mac: t.uplinks.get(u).and_then(|x| x.parent.mac),
        },
        Role::Child(i) => match t.children.get(i) {
            Some(c) => Port::Child {
                uplink: c.uplink,
                mode: c.mode,
                tap: c.tap,
                mac: c.mac,
                sources: c.source_macs.clone(),
            },
            None => Port::Parent {
                uplink: usize::MAX,
                mac: None,
            },
        },
    }
}

fn shim_port(uplink: usize) -> Port {
    Port::Child {
        uplink,
        mode: Mode::Bridge,
        tap: false,
        mac: None,
        sources: vec![],
    }
}

/// An addressed interface of a namespace (or a shim route), as the routing table sees it.
#[derive(Debug, Clone)]
struct NsPort {
    /// Connected subnet, or a shim route's destination.
    net: IpNet,
    port: Port,
    label: String,
    shim: bool,
}

/// Addressed interfaces of namespace `ns` in creation order (ties in the routing table go to
/// the route inserted first): per uplink the lan end, the parent, its shim; then children.
fn ns_ports(t: &Topology, ns: &str) -> Vec<NsPort> {
    let mut v = Vec::new();
    for (i, u) in t.uplinks.iter().enumerate() {
        if let (true, Some(a)) = (u.lan.netns == ns, u.lan.address) {
            let port = Port::Gateway {
                uplink: i,
                mac: u.lan.mac,
            };
            v.push(NsPort {
                net: a.trunc(),
                port,
                label: u.lan.name.clone(),
                shim: false,
            });
        }
        if u.parent.netns != ns {
            continue;
        }
        if let Some(a) = u.parent.address {
            let port = Port::Parent {
                uplink: i,
                mac: u.parent.mac,
            };
            v.push(NsPort {
                net: a.trunc(),
                port,
                label: u.parent.name.clone(),
                shim: false,
            });
        }
        if let Some(shim) = &u.shim {
            for net in std::iter::once(shim.address.trunc()).chain(shim.routes.iter().copied()) {
                v.push(NsPort {
                    net,
                    port: shim_port(i),
                    label: shim.name.clone(),
                    shim: true,
                });
            }
        }
    }
    for c in t.children.iter().filter(|c| c.netns == ns) {
        if let Some(a) = c.address {
            let port = Port::Child {
                uplink: c.uplink,
                mode: c.mode,
                tap: c.tap,
                mac: c.mac,
                sources: c.source_macs.clone(),
            };
            v.push(NsPort {
                net: a.trunc(),
                port,
                label: c.name.clone(),
                shim: false,
            });
        }
    }
    v
}

/// Longest prefix match; among equal prefixes the first inserted route wins.
fn lpm(ports: &[NsPort], dst: IpAddr) -> Option<&NsPort> {
    let mut best: Option<&NsPort> = None;
    for p in ports.iter().filter(|p| p.net.contains(&dst)) {
        if best.is_none_or(|b| p.net.prefix_len() > b.net.prefix_len()) {
            best = Some(p);
        }
    }
    best
}

/// Probes from a namespace holding several endpoints are bound to the source link
/// (SO_BINDTODEVICE), so they leave and are answered only there.
fn bound(t: &Topology, e: &Endpoint) -> bool {
    endpoints(t).iter().filter(|x| x.netns == e.netns).count() > 1
}

fn own_ns_port(t: &Topology, e: &Endpoint) -> NsPort {
    NsPort {
        net: e.addr.trunc(),
        port: own_port(t, e),
        label: e.label.clone(),
        shim: false,
    }
}

/// Where frames for `e`'s address may land: with IPv4 every interface of the namespace answers
/// ARP for every local address (arp_ignore=0); IPv6 neighbor discovery answers only on the
/// address's own link. A bound socket only hears its own link.
fn receivers(t: &Topology, e: &Endpoint) -> Vec<NsPort> {
    if bound(t, e) || e.addr.addr().is_ipv6() {
        return vec![own_ns_port(t, e)];
    }
    let mut v = ns_ports(t, &e.netns);
    if v.is_empty() {
        v.push(own_ns_port(t, e));
    }
    v
}

const SHIM_WHY: &str = "the host shim (a bridge-mode macvlan) carries parent-namespace traffic";

/// `a` pings `b`: the request leg from `a`'s chosen link to any receiver of `b`, then the
/// kernel's echo reply from `b`'s namespace (unbound: its routing table picks the link) back.
fn round_trip(t: &Topology, a: &Endpoint, b: &Endpoint) -> Result<&'static str, String> {
    let no_route = || "no route: the addresses are in different subnets".to_string();
    let dst = b.addr.addr();
    let out = if bound(t, a) {
        a.addr
            .trunc()
            .contains(&dst)
            .then(|| own_ns_port(t, a))
            .ok_or_else(no_route)?
    } else {
        lpm(&ns_ports(t, &a.netns), dst)
            .cloned()
            .ok_or_else(no_route)?
    };
    let rx = receivers(t, b);
    let Some(hit) = rx.iter().find(|x| l2(t, &out.port, &x.port).is_ok()) else {
        return Err(l2(t, &out.port, &own_port(t, b))
            .err()
            .unwrap_or("unreachable")
            .to_string());
    };
    let ok_why = l2(t, &out.port, &hit.port).unwrap_or("");
    // The reply: the responder's namespace routes it.
    let back = lpm(&ns_ports(t, &b.netns), a.addr.addr())
        .cloned()
        .ok_or_else(no_route)?;
    let arrive = receivers(t, a);
    if !arrive.iter().any(|x| l2(t, &back.port, &x.port).is_ok()) {
        let why = l2(t, &back.port, &own_port(t, a))
            .err()
            .unwrap_or("unreachable");
        return Err(if back.label == b.label {
            why.to_string()
        } else {
            format!(
                "the reply leaves through {}, the first route back to {}: {why}",
                back.label, a.label
            )
        });
    }
    Ok(if out.shim || hit.shim || back.shim {
        SHIM_WHY
    } else {
        ok_why
    })
}

fn hairpin(t: &Topology, uplink: usize) -> bool {
    t.uplinks
        .get(uplink)
        .and_then(|u| u.switch.as_ref())
        .is_some_and(|s| s.hairpin)
}

fn passthru_on(t: &Topology, uplink: usize) -> bool {
    t.children
        .iter()
        .any(|c| c.uplink == uplink && c.mode == Mode::Passthru)
}

/// Does a frame from `s` reach `r`'s stack? Err carries the reason it does not.
fn l2(t: &Topology, s: &Port, r: &Port) -> Result<&'static str, &'static str> {
    let segment = |u: usize| t.uplinks.get(u).map_or(u, |x| x.segment);
    if segment(s.uplink()) != segment(r.uplink()) {
        return Err("different uplinks: separate L2 segments, and nothing routes between them");
    }
    let u = s.uplink();
    // macvtap: the driver hands received frames to /dev/tapN (tap_handle_frame), never to the stack.
    if matches!(r, Port::Child { tap: true, .. }) || matches!(s, Port::Child { tap: true, .. }) {
        return Err(
            "macvtap: frames go to /dev/tapN, not to the network stack, so no ping answers",
        );
    }
    // Source mode: macvlan_handle_frame skips source-mode children in the unicast lookup; they only
    // get copies of frames whose source MAC is on their list (macvlan_forward_source).
    if let Port::Child {
        mode: Mode::Source,
        sources,
        ..
    } = r
    {
        if !s.mac().is_some_and(|m| sources.contains(&m)) {
            return Err("source mode: the sender's MAC is not on the child's source list");
        }
    }
    if let Port::Child {
        mode: Mode::Source,
        sources,
        ..
    } = s
    {
        if !r.mac().is_some_and(|m| sources.contains(&m)) {
            return Err(
                "source mode: the peer's MAC is not on the child's source list (no replies)",
            );
        }
    }
    if s.uplink() != r.uplink() {
        // Uplinks on one shared switch: a frame leaves one parent's wire and arrives on the
        // other's like any frame from the LAN (macvlan_handle_frame looks up the destination
        // MAC), whatever the modes; only a passthru child's parent has no traffic of its own.
        let silent = |p: &Port| matches!(p, Port::Parent { .. }) && passthru_on(t, p.uplink());
        if silent(s) || silent(r) {
            return Err("passthru: the child takes over every frame of the parent, which has no traffic of its own");
        }
        if matches!(s, Port::Gateway { .. }) || matches!(r, Port::Gateway { .. }) {
            return Ok("the gateway is the shared switch itself, on every host's wire");
        }
        return Ok(
            "one shared switch: the frame crosses the bridge from one host's uplink to the other's",
        );
    }
    match (s, r) {
        (Port::Gateway { .. }, Port::Parent { .. })
        | (Port::Parent { .. }, Port::Gateway { .. }) => {
            // Passthru: the child's rx handler takes every frame arriving on the parent.
            if passthru_on(t, u) {
                Err("passthru: the child takes over every frame of the parent, which has no traffic of its own")
            } else {
                Ok("the veth wire between the gateway and the parent")
            }
        }
        (Port::Gateway { .. }, Port::Child { .. }) | (Port::Child { .. }, Port::Gateway { .. }) => {
            Ok("children share the parent's wire: the LAN reaches every child")
        }
        (Port::Parent { .. }, Port::Child { .. }) | (Port::Child { .. }, Port::Parent { .. }) => {
            // Child frames are queued on the lower device (out to the wire); frames the parent sends
            // leave on the wire too: neither passes the other's rx path unless the switch reflects them.
            if hairpin(t, u) {
                Ok("parent and child meet through the hairpin switch")
            } else {
                Err("a macvlan parent and its children never see each other's frames (use a shim)")
            }
        }
        (Port::Child { mode: m1, .. }, Port::Child { mode: m2, .. }) => {
            if *m1 == Mode::Bridge && *m2 == Mode::Bridge {
                // macvlan_queue_xmit: bridge-mode sender, bridge-mode destination → delivered in the kernel.
                Ok("bridge mode: siblings are switched inside the kernel")
            } else if *m1 == Mode::Private || *m2 == Mode::Private {
                // Frames whose source is a private sibling are dropped even when they come back.
                Err("private mode: siblings never talk, not even through a hairpin switch")
            } else if hairpin(t, u) {
                Ok("vepa: sibling traffic goes out and the hairpin switch sends it back")
            } else {
                Err("sibling traffic goes out to the switch, which does not hairpin it back")
            }
        }
        (Port::Gateway { .. }, Port::Gateway { .. })
        | (Port::Parent { .. }, Port::Parent { .. }) => Ok("same port"),
    }
}

/// Expected outcome of pinging `b` from `a` (both from [`endpoints`]).
pub fn expect(t: &Topology, a: &Endpoint, b: &Endpoint) -> Expectation {
    let lo = t.lo_up(&a.netns);
    if a.role == b.role || a.netns == b.netns {
        // Local addresses are delivered over lo, whatever link carries them.
        let what = if a.role == b.role {
            "own address"
        } else {
            "same namespace"
        };
        return Expectation {
            reach: lo,
            why: if lo {
                format!("{what}: delivered locally over lo")
            } else {
                format!("{what}: local delivery needs lo, which is down")
            },
        };
    }
    if a.addr.addr().is_ipv4() != b.addr.addr().is_ipv4() {
        return Expectation {
            reach: false,
            why: "different address families".into(),
        };
    }
    match round_trip(t, a, b) {
        Ok(why) => Expectation {
            reach: true,
            why: why.into(),
        },
        Err(why) => Expectation { reach: false, why },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::topo::parse;
    use super::*;

    fn topo(uplink_extra: &str, parent_extra: &str, children: &[(&str, &str, &str)]) -> Topology {
        let mut s =
            String::from("name = \"t\"\n[[netns]]\nname = \"lan\"\n[[netns]]\nname = \"host\"\n");
        for (i, _) in children.iter().enumerate() {
            s += &format!("[[netns]]\nname = \"ns{i}\"\n");
        }
        s += &format!(
            "[[uplink]]\nlan = {{ netns = \"lan\", name = \"gw0\", address = \"198.18.0.1/24\", mac = \"02:00:00:00:00:01\" }}\n\
             parent = {{ netns = \"host\", name = \"eth0\", address = \"198.18.0.2/24\"{parent_extra} }}\n{uplink_extra}\n"
        );
        for (i, (mode, kind, extra)) in children.iter().enumerate() {
            s += &format!(
                "[[child]]\nname = \"c{i}\"\nparent = \"eth0\"\nmode = \"{mode}\"\nkind = \"{kind}\"\n\
                 netns = \"ns{i}\"\naddress = \"198.18.0.{}/24\"\n{extra}\n",
                11 + i
            );
        }
        parse(&s, "t.toml").unwrap()
    }

    /// Matrix as strings "from>to" for the reachable cells.
    fn reach(t: &Topology) -> Vec<String> {
        let eps = endpoints(t);
        let mut v = vec![];
        for a in &eps {
            for b in &eps {
                if expect(t, a, b).reach && a.label != b.label {
                    v.push(format!("{}>{}", a.label, b.label));
                }
            }
        }
        v
    }

    #[test]
    fn bridge_children_reach_each_other_not_parent() {
        let t = topo(
            "",
            "",
            &[("bridge", "macvlan", ""), ("bridge", "macvlan", "")],
        );
        let r = reach(&t);
        for want in ["c0>c1", "c1>c0", "gw0>c0", "c1>gw0", "gw0>eth0", "eth0>gw0"] {
            assert!(r.contains(&want.to_string()), "{want} in {r:?}");
        }
        assert!(!r.contains(&"eth0>c0".to_string()) && !r.contains(&"c0>eth0".to_string()));
    }

    #[test]
    fn private_and_vepa_isolate_siblings_without_hairpin() {
        for mode in ["private", "vepa"] {
            let t = topo("", "", &[(mode, "macvlan", ""), (mode, "macvlan", "")]);
            let r = reach(&t);
            assert!(!r.contains(&"c0>c1".to_string()), "{mode}");
            assert!(r.contains(&"gw0>c1".to_string()), "{mode}");
        }
    }

    #[test]
    fn hairpin_switch_joins_vepa_not_private() {
        let sw = "switch = { hairpin = true }";
        let t = topo(sw, "", &[("vepa", "macvlan", ""), ("vepa", "macvlan", "")]);
        assert!(reach(&t).contains(&"c0>c1".to_string()));
        let t = topo(
            sw,
            "",
            &[("private", "macvlan", ""), ("private", "macvlan", "")],
        );
        assert!(!reach(&t).contains(&"c0>c1".to_string()));
    }

    #[test]
    fn passthru_parent_is_silent() {
        let t = topo("", "", &[("passthru", "macvlan", "")]);
        let r = reach(&t);
        assert!(r.contains(&"gw0>c0".to_string()));
        assert!(!r.contains(&"gw0>eth0".to_string()));
    }

    #[test]
    fn source_mode_filters_by_sender_mac() {
        let t = topo(
            "",
            "",
            &[
                ("source", "macvlan", "source_macs = [\"02:00:00:00:00:01\"]"),
                ("source", "macvlan", "source_macs = [\"02:00:00:00:00:99\"]"),
            ],
        );
        let r = reach(&t);
        assert!(r.contains(&"gw0>c0".to_string()));
        assert!(!r.contains(&"gw0>c1".to_string()));
    }

    #[test]
    fn macvtap_answers_nothing_but_self_with_lo() {
        let t = topo(
            "",
            "",
            &[("bridge", "macvtap", ""), ("bridge", "macvlan", "")],
        );
        let r = reach(&t);
        assert!(!r.iter().any(|c| c.contains("c0")), "{r:?}");
        let eps = endpoints(&t);
        let c0 = eps.iter().find(|e| e.label == "c0").unwrap();
        assert!(expect(&t, c0, c0).reach);
    }

    #[test]
    fn shim_lets_parent_namespace_reach_children() {
        let t = topo(
            "",
            ", shim = { address = \"198.18.0.3/32\", routes = [\"198.18.0.11/32\"] }",
            &[("bridge", "macvlan", ""), ("bridge", "macvlan", "")],
        );
        let r = reach(&t);
        assert!(
            r.contains(&"eth0>c0".to_string()) && r.contains(&"c0>eth0".to_string()),
            "{r:?}"
        );
        // No shim route for c1: the parent's connected route wins and frames leave on the wire.
        assert!(!r.contains(&"eth0>c1".to_string()), "{r:?}");
    }

    #[test]
    fn lo_down_breaks_self_ping_and_subnets_matter() {
        let mut t = topo(
            "",
            "",
            &[("bridge", "macvlan", ""), ("bridge", "macvlan", "")],
        );
        t.netns.iter_mut().for_each(|n| n.lo_up = n.name != "ns0");
        let eps = endpoints(&t);
        let c0 = eps.iter().find(|e| e.label == "c0").unwrap();
        let c1 = eps.iter().find(|e| e.label == "c1").unwrap();
        assert!(!expect(&t, c0, c0).reach);
        assert!(expect(&t, c1, c1).reach);
        let mut far = c1.clone();
        far.addr = "198.18.1.12/24".parse().unwrap();
        assert!(!expect(&t, c0, &far).reach);
    }

    #[test]
    fn shared_namespace_replies_follow_the_first_route() {
        // c1 lives next to the addressed parent: replies to c0 leave through eth0 (inserted
        // first, same prefix) and never reach c0; c1's own bound probes work.
        let mut t = topo(
            "",
            "",
            &[("bridge", "macvlan", ""), ("bridge", "macvlan", "")],
        );
        t.children[1].netns = "host".into();
        let r = reach(&t);
        assert!(!r.contains(&"c0>c1".to_string()), "{r:?}");
        assert!(r.contains(&"c1>c0".to_string()), "{r:?}");
        assert!(
            r.contains(&"gw0>c1".to_string()) && r.contains(&"c1>gw0".to_string()),
            "{r:?}"
        );
        assert!(r.contains(&"eth0>c1".to_string()), "same namespace: {r:?}");
    }
}
