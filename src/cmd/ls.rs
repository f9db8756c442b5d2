//! `macvnet ls`: every macvlan/macvtap on the host, in every namespace, as a tree under each parent.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use macvnet_netlink as nl;
use nl::{AddrInfo, Handle, LinkInfo, LinkKind};

use crate::inventory::{self, Namespace, NsidResolver};
use crate::output::{self, Table};
use crate::{CmdResult, Global};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Namespaces searched: the root namespace (pid 1), every name under /run/netns and every process's
namespace (/proc/*/ns/net), each once. A child moved into another namespace is shown under its
parent, wherever that parent lives.

Examples:
  macvnet ls
  macvnet -j ls
  macvnet ls --svg hosts.svg")]
pub struct Args {
    /// Also draw the inventory as an SVG picture into FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
}

/// Where a child's parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ParentKey {
    /// (namespace index, ifindex)
    Known(usize, u32),
    /// The child's namespace, the nsid it reported, the ifindex: a namespace we could not match.
    Unresolved(usize, i32, u32),
}

#[derive(Debug, serde::Serialize)]
pub struct ParentView {
    pub name: Option<String>,
    pub index: u32,
    /// Namespace label, or "nsid N from NS" when it could not be resolved.
    pub netns: String,
    pub kind: Option<String>,
    pub mac: Option<nl::MacAddr>,
    pub mtu: Option<u32>,
    pub up: Option<bool>,
}

#[derive(Debug, serde::Serialize)]
pub struct ChildView {
    pub name: String,
    pub index: u32,
    pub kind: String,
    pub mode: nl::Mode,
    pub nopromisc: bool,
    pub nodst: bool,
    pub mac: Option<nl::MacAddr>,
    pub mtu: u32,
    pub up: bool,
    pub addrs: Vec<String>,
    pub netns: String,
    pub tap_device: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Group {
    pub parent: ParentView,
    pub children: Vec<ChildView>,
}

/// Links and addresses of one namespace.
struct Dump {
    links: Vec<LinkInfo>,
    addrs: Vec<AddrInfo>,
}

pub fn run(args: Args, global: &Global) -> CmdResult {
    let all = inventory::namespaces();
    let groups = collect(&all);
    if let Some(path) = &args.svg {
        let svg = crate::draw::render_svg(&picture(&groups));
        std::fs::write(path, svg)
            .with_context(|| format!("ls --svg: writing {}", path.display()))?;
    }
    if global.json {
        output::print_json(&groups)?;
    } else {
        output::print_text(&render(&groups, all.len()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Dump every namespace and group its macvlan/macvtap children under their parents.
pub fn collect(all: &[Namespace]) -> Vec<Group> {
    let dumps: Vec<Option<Dump>> = all.iter().map(dump).collect();
    let mut resolver = NsidResolver::new(all);
    let mut grouped: BTreeMap<ParentKey, Vec<(usize, &LinkInfo)>> = BTreeMap::new();
    for (i, d) in dumps.iter().enumerate() {
        let Some(d) = d else { continue };
        for l in d.links.iter().filter(|l| l.macvlan.is_some()) {
            let pi = l.parent_index.unwrap_or(0);
            let key = match l.link_netnsid {
                None => ParentKey::Known(i, pi),
                Some(id) => match resolver.resolve(i, id) {
                    Some(j) => ParentKey::Known(j, pi),
                    None => ParentKey::Unresolved(i, id, pi),
                },
            };
            grouped.entry(key).or_default().push((i, l));
        }
    }
    let label = |i: usize| {
        all.get(i)
            .map(|n| n.label.clone())
            .unwrap_or_else(|| "?".to_string())
    };
    let mut out = Vec::new();
    for (key, mut kids) in grouped {
        // Children beside their parent first, then the others by namespace name.
        let home = match key {
            ParentKey::Known(j, _) => Some(j),
            ParentKey::Unresolved(..) => None,
        };
        kids.sort_by_key(|(i, l)| (Some(*i) != home, label(*i), l.index));
        let parent = match key {
            ParentKey::Known(j, pi) => {
                let p = dumps
                    .get(j)
                    .and_then(|d| d.as_ref())
                    .and_then(|d| d.links.iter().find(|l| l.index == pi));
                ParentView {
                    name: p.map(|p| p.name.clone()),
                    index: pi,
                    netns: label(j),
                    kind: p.map(|p| kind_name(&p.kind)),
                    mac: p.and_then(|p| p.mac),
                    mtu: p.map(|p| p.mtu),
                    up: p.map(|p| p.up),
                }
            }
            ParentKey::Unresolved(i, id, pi) => ParentView {
                name: None,
                index: pi,
                netns: format!("nsid {id} from {}", label(i)),
                kind: None,
                mac: None,
                mtu: None,
                up: None,
            },
        };
        let children = kids
            .into_iter()
            .filter_map(|(i, l)| {
                let m = l.macvlan.as_ref()?;
                let addrs = dumps
                    .get(i)
                    .and_then(|d| d.as_ref())
                    .map(|d| {
                        d.addrs
                            .iter()
                            // Link-local v6 is on every link and only adds noise here.
                            .filter(|a| a.index == l.index && a.scope != 253)
                            .map(|a| a.addr.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                Some(ChildView {
                    name: l.name.clone(),
                    index: l.index,
                    kind: kind_name(&l.kind),
                    mode: m.mode,
                    nopromisc: m.nopromisc,
                    nodst: m.nodst,
                    mac: l.mac,
                    mtu: l.mtu,
                    up: l.up,
                    addrs,
                    netns: label(i),
                    tap_device: l.tap_device(),
                })
            })
            .collect();
        out.push(Group { parent, children });
    }
    out
}

fn dump(ns: &Namespace) -> Option<Dump> {
    let mut h = match Handle::open(&ns.ns) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!("skipping namespace {}: {e}", ns.label);
            return None;
        }
    };
    let links = match h.links() {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("listing links in {}: {e}", ns.label);
            return None;
        }
    };
    // Addresses only matter where there are children to show them on.
    let addrs = if links.iter().any(|l| l.macvlan.is_some()) {
        h.addrs(None).unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Dump { links, addrs })
}

fn kind_name(k: &LinkKind) -> String {
    match k {
        LinkKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The tree: a header line per parent, then its children with ├─/└─, columns aligned across all groups.
pub fn render(groups: &[Group], namespaces: usize) -> String {
    if groups.is_empty() {
        return format!("no macvlan or macvtap links in {namespaces} namespaces\n");
    }
    let mut rows = Table::new();
    for g in groups {
        let n = g.children.len();
        for (k, c) in g.children.iter().enumerate() {
            let glyph = if k + 1 == n { "└─" } else { "├─" };
            let mut mode = format!("[{}]", c.mode);
            if c.nopromisc {
                mode.push_str(" nopromisc");
            }
            if c.nodst {
                mode.push_str(" nodst");
            }
            rows.push(vec![
                format!("{glyph} {}", c.name),
                mode,
                c.kind.clone(),
                c.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                if c.addrs.is_empty() {
                    "-".into()
                } else {
                    c.addrs.join(",")
                },
                format!("ns {}", c.netns),
                if c.up { "up".into() } else { "down".into() },
                c.tap_device.clone().unwrap_or_default(),
            ]);
        }
    }
    let widths = rows.widths();
    let mut lines = rows.render_rows(&widths).into_iter();
    let mut out = String::new();
    for g in groups {
        let p = &g.parent;
        let head = match &p.name {
            Some(name) => {
                let mut s = format!(
                    "{name}  ({} ifindex {}, ns {}",
                    p.kind.as_deref().unwrap_or("?"),
                    p.index,
                    p.netns
                );
                if let Some(mac) = p.mac {
                    s.push_str(&format!(", {mac}"));
                }
                if let Some(mtu) = p.mtu {
                    s.push_str(&format!(", mtu {mtu}"));
                }
                if p.up == Some(false) {
                    s.push_str(", down");
                }
                s.push(')');
                s
            }
            None => format!("ifindex {} in another namespace ({})", p.index, p.netns),
        };
        out.push_str(&head);
        out.push('\n');
        for _ in &g.children {
            if let Some(line) = lines.next() {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

/// The inventory as a picture: one box per namespace, parents and children inside, edges child → parent.
pub fn picture(groups: &[Group]) -> crate::draw::Picture {
    use crate::draw::{PicLink, PicNs, Picture};
    let mut nss: Vec<PicNs> = Vec::new();
    let mut put = |ns: &str, link: PicLink| match nss.iter_mut().find(|n| n.label == ns) {
        Some(n) => {
            if !n.links.iter().any(|l| l.id == link.id) {
                n.links.push(link);
            }
        }
        None => nss.push(PicNs {
            label: ns.to_string(),
            links: vec![link],
        }),
    };
    for g in groups {
        let p = &g.parent;
        let pid = format!("{}/{}", p.netns, p.index);
        put(
            &p.netns,
            PicLink {
                id: pid.clone(),
                name: p.name.clone().unwrap_or_else(|| format!("if{}", p.index)),
                kind: p.kind.clone().unwrap_or_else(|| "device".into()),
                mac: p.mac.map(|m| m.to_string()),
                ..Default::default()
            },
        );
        for c in &g.children {
            let mut notes = Vec::new();
            if let Some(t) = &c.tap_device {
                notes.push(t.clone());
            }
            if !c.up {
                notes.push("down".into());
            }
            put(
                &c.netns,
                PicLink {
                    id: format!("{}/{}", c.netns, c.index),
                    name: c.name.clone(),
                    kind: c.kind.clone(),
                    mode: Some(c.mode.to_string()),
                    mac: c.mac.map(|m| m.to_string()),
                    addrs: c.addrs.clone(),
                    parent: Some(pid.clone()),
                    notes,
                },
            );
        }
    }
    Picture {
        title: "macvnet ls".into(),
        namespaces: nss,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn child(name: &str, mode: nl::Mode, ns: &str, tap: bool) -> ChildView {
        ChildView {
            name: name.into(),
            index: 7,
            kind: if tap {
                "macvtap".into()
            } else {
                "macvlan".into()
            },
            mode,
            nopromisc: false,
            nodst: false,
            mac: Some("02:00:c6:12:00:01".parse().unwrap()),
            mtu: 1500,
            up: true,
            addrs: vec!["198.18.0.11/24".into()],
            netns: ns.into(),
            tap_device: tap.then(|| "/dev/tap7".into()),
        }
    }

    #[test]
    fn tree_has_glyphs_aligned_columns_and_unresolved_parents() {
        let groups = vec![
            Group {
                parent: ParentView {
                    name: Some("eth0".into()),
                    index: 2,
                    netns: "root".into(),
                    kind: Some("veth".into()),
                    mac: None,
                    mtu: Some(1500),
                    up: Some(true),
                },
                children: vec![
                    child("mv0", nl::Mode::Bridge, "ns1", false),
                    child("a-longer-name", nl::Mode::Passthru, "root", true),
                ],
            },
            Group {
                parent: ParentView {
                    name: None,
                    index: 9,
                    netns: "nsid 3 from ns2".into(),
                    kind: None,
                    mac: None,
                    mtu: None,
                    up: None,
                },
                children: vec![child("x", nl::Mode::Vepa, "ns2", false)],
            },
        ];
        let text = render(&groups, 4);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].starts_with("eth0  (veth ifindex 2, ns root"),
            "{text}"
        );
        assert!(lines[1].starts_with("├─ mv0 "), "{text}");
        assert!(
            lines[2].starts_with("└─ a-longer-name  [passthru]") && lines[2].ends_with("/dev/tap7"),
            "{text}"
        );
        assert_eq!(lines[3], "ifindex 9 in another namespace (nsid 3 from ns2)");
        assert!(lines[4].starts_with("└─ x "), "{text}");
        let col = |l: &str| l.chars().position(|c| c == '[').unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
        assert_eq!(col(lines[2]), col(lines[4]));
        assert_eq!(
            render(&[], 3),
            "no macvlan or macvtap links in 3 namespaces\n"
        );
        let pic = picture(&groups);
        assert_eq!(pic.namespaces.len(), 4);
    }
}
