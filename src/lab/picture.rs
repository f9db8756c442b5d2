//! A topology as a [`Picture`] for `lab draw`.

use crate::draw::{PicLink, PicNs, Picture};

use super::state::LabState;
use super::topo::Topology;

fn id(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Namespaces with their links; physical names are shown when the lab is up.
pub fn picture(t: &Topology, st: Option<&LabState>) -> Picture {
    let mut nss: Vec<PicNs> = t
        .netns
        .iter()
        .map(|n| {
            let mut label = n.name.clone();
            if let Some(p) = st.and_then(|s| s.physical(&n.name)) {
                label = format!("{label} ({p})");
            }
            if !n.lo_up {
                label.push_str(" [lo down]");
            }
            PicNs {
                label,
                links: vec![],
            }
        })
        .collect();
    if let Some(c) = &t.cluster {
        if let Some(n) = t.netns.iter().position(|n| n.name == c.etcd_netns) {
            if let Some(pn) = nss.get_mut(n) {
                pn.label.push_str(&format!(
                    " [etcd {}:2379, pool {}]",
                    c.etcd_address, c.range
                ));
            }
        }
    }
    let mut push = |ns: &str, l: PicLink| {
        if let Some(i) = t.netns.iter().position(|n| n.name == ns) {
            if let Some(pn) = nss.get_mut(i) {
                pn.links.push(l);
            }
        }
    };
    let leased = st.map(|s| s.with_leases(t));
    let t = leased.as_ref().unwrap_or(t);
    for (i, u) in t.uplinks.iter().enumerate() {
        let lan_id = id(&u.lan.netns, &u.lan.name);
        // An uplink on the switch of an earlier one adds only its port.
        let shared = u.segment != i;
        let mut gw_notes = vec!["gateway".to_string()];
        let peer_of_parent = match &u.switch {
            Some(sw) => {
                gw_notes.push("switch".to_string());
                let port_id = id(&u.lan.netns, &sw.port);
                push(
                    &u.lan.netns,
                    PicLink {
                        id: port_id.clone(),
                        name: sw.port.clone(),
                        kind: "veth".into(),
                        parent: Some(lan_id.clone()),
                        notes: vec![format!("hairpin {}", if sw.hairpin { "on" } else { "off" })],
                        ..Default::default()
                    },
                );
                port_id
            }
            None => lan_id.clone(),
        };
        if !shared {
            push(
                &u.lan.netns,
                PicLink {
                    id: lan_id.clone(),
                    name: u.lan.name.clone(),
                    kind: if u.switch.is_some() {
                        "bridge".into()
                    } else {
                        "veth".into()
                    },
                    mac: u.lan.mac.map(|m| m.to_string()),
                    addrs: u.lan.address.iter().map(|a| a.to_string()).collect(),
                    notes: gw_notes,
                    ..Default::default()
                },
            );
        }
        let parent_id = id(&u.parent.netns, &u.parent.name);
        push(
            &u.parent.netns,
            PicLink {
                id: parent_id.clone(),
                name: u.parent.name.clone(),
                kind: "veth".into(),
                mac: u.parent.mac.map(|m| m.to_string()),
                addrs: u.parent.address.iter().map(|a| a.to_string()).collect(),
                parent: Some(peer_of_parent),
                notes: vec!["parent".into()],
                mode: None,
            },
        );
        if let Some(shim) = &u.shim {
            let mut notes = vec!["host shim".to_string()];
            notes.extend(shim.routes.iter().map(|r| format!("route {r}")));
            push(
                &u.parent.netns,
                PicLink {
                    id: id(&u.parent.netns, &shim.name),
                    name: shim.name.clone(),
                    kind: "macvlan".into(),
                    mode: Some("bridge".into()),
                    addrs: vec![shim.address.to_string()],
                    parent: Some(parent_id),
                    notes,
                    ..Default::default()
                },
            );
        }
    }
    for c in &t.children {
        let Some(u) = t.uplinks.get(c.uplink) else {
            continue;
        };
        let mut notes = Vec::new();
        if c.tap {
            notes.push("frames → /dev/tapN".to_string());
        }
        if c.nopromisc {
            notes.push("nopromisc".to_string());
        }
        if c.cluster {
            notes.push(format!("address from the pool (node {})", u.parent.netns));
        }
        notes.extend(c.source_macs.iter().map(|m| format!("from {m}")));
        push(
            &c.netns,
            PicLink {
                id: id(&c.netns, &c.name),
                name: c.name.clone(),
                kind: if c.tap {
                    "macvtap".into()
                } else {
                    "macvlan".into()
                },
                mode: Some(c.mode.to_string()),
                mac: c.mac.map(|m| m.to_string()),
                addrs: c.address.iter().map(|a| a.to_string()).collect(),
                parent: Some(id(&u.parent.netns, &u.parent.name)),
                notes,
            },
        );
    }
    let title = if t.description.is_empty() {
        format!("lab {}", t.name)
    } else {
        format!("lab {}: {}", t.name, t.description)
    };
    Picture {
        title,
        namespaces: nss,
    }
}
