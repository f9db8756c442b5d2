//! SVG pictures of parents, children, modes, namespaces and addresses.
//!
//! A generic model ([`Picture`]) that `lab draw` and `ls --svg` fill, and one renderer
//! ([`render_svg`]) that writes a self-contained SVG by hand (no graphviz needed).
//!
//! Layout: a simple left-to-right layered drawing of namespaces. A namespace sits one column
//! right of every namespace holding a parent of one of its links, so uplinks sit left, parents
//! in the middle and children right. Namespaces in one column are stacked in the order of
//! their parents (fewer crossings); links inside a namespace are stacked, parents first.
//! Edges run from a child's box to its parent's box. Text is monospace 13px so widths can be
//! computed without font metrics and labels never overlap.

use std::collections::HashMap;
use std::fmt::Write as _;

/// What to draw: namespaces, each holding links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picture {
    /// Title printed on top (e.g. the lab name); empty for none.
    pub title: String,
    pub namespaces: Vec<PicNs>,
}

/// One network namespace, drawn as a box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PicNs {
    /// Heading of the box, e.g. `ns1 (mvlab-123-ns1)` or `root`.
    pub label: String,
    pub links: Vec<PicLink>,
}

/// One link (interface), drawn as a box inside its namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PicLink {
    /// Unique id within the picture; `parent` of other links refers to it.
    pub id: String,
    /// Interface name.
    pub name: String,
    /// "macvlan", "macvtap", "veth", "bridge", ... (colours the box).
    pub kind: String,
    /// macvlan/macvtap mode ("bridge", "vepa", ...), shown in brackets.
    pub mode: Option<String>,
    pub mac: Option<String>,
    /// Addresses with prefix, one line each.
    pub addrs: Vec<String>,
    /// Id of the link this one hangs off (macvlan parent, veth peer, bridge); draws an edge.
    pub parent: Option<String>,
    /// Extra lines (e.g. "/dev/tap7", "lo down", "hairpin").
    pub notes: Vec<String>,
}

const FONT: f64 = 13.0;
/// Advance of one monospace glyph at [`FONT`] px (DejaVu Sans Mono: 0.602 em), rounded up.
const CHAR_W: f64 = 8.0;
const LINE_H: f64 = 17.0;
const PAD: f64 = 8.0;
const LINK_GAP: f64 = 14.0;
const NS_PAD: f64 = 12.0;
const NS_HEAD: f64 = 26.0;
const COL_GAP: f64 = 90.0;
const ROW_GAP: f64 = 24.0;
const MARGIN: f64 = 20.0;

/// Text lines of one link box (first line is the bold heading).
fn link_lines(l: &PicLink) -> Vec<String> {
    let mut head = l.name.clone();
    let mut kind = l.kind.clone();
    if let Some(m) = &l.mode {
        kind = format!("{kind} [{m}]");
    }
    if !kind.is_empty() {
        head = format!("{head}  {kind}");
    }
    let mut v = vec![head];
    if let Some(mac) = &l.mac {
        v.push(mac.clone());
    }
    v.extend(l.addrs.iter().cloned());
    v.extend(l.notes.iter().cloned());
    v
}

fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

fn fill_for(kind: &str) -> &'static str {
    match kind {
        "macvlan" => "#dbeafe",
        "macvtap" => "#fde68a",
        "veth" => "#e5e7eb",
        "bridge" => "#bbf7d0",
        "loopback" => "#f3f4f6",
        _ => "#ffffff",
    }
}

/// Escape text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

struct LinkBox {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// Layout decisions: a column per namespace, the drawing order of namespaces (column by
/// column), and the order of links inside each namespace.
struct Layout {
    ns_col: Vec<usize>,
    ns_order: Vec<usize>,
    link_order: Vec<Vec<usize>>,
}

/// Column of a namespace = 1 + the largest column of a namespace holding a parent of one of
/// its links (longest path), so every edge between namespaces points right. Within a column,
/// namespaces are sorted by the mean position of their parents (barycenter) to avoid crossings.
fn layout(p: &Picture) -> Layout {
    let n = p.namespaces.len();
    let ns_of: HashMap<&str, usize> = p
        .namespaces
        .iter()
        .enumerate()
        .flat_map(|(i, ns)| ns.links.iter().map(move |l| (l.id.as_str(), i)))
        .collect();
    let link_by_id: HashMap<&str, &PicLink> = p
        .namespaces
        .iter()
        .flat_map(|ns| ns.links.iter())
        .map(|l| (l.id.as_str(), l))
        .collect();
    let cross_parent = |i: usize, l: &PicLink| -> Option<usize> {
        l.parent
            .as_deref()
            .and_then(|pid| ns_of.get(pid).copied())
            .filter(|j| *j != i)
    };
    let mut ns_col = vec![0usize; n];
    // Relaxation bounded by the namespace count, so parent cycles cannot loop forever.
    for _ in 0..n {
        let mut changed = false;
        for (i, ns) in p.namespaces.iter().enumerate() {
            for l in &ns.links {
                if let Some(j) = cross_parent(i, l) {
                    let want = ns_col.get(j).copied().unwrap_or(0) + 1;
                    if let Some(c) = ns_col.get_mut(i) {
                        if want > *c && want < n {
                            *c = want;
                            changed = true;
                        }
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut rank: HashMap<&str, f64> = HashMap::new();
    let mut link_order: Vec<Vec<usize>> = vec![vec![]; n];
    let mut ns_order = Vec::with_capacity(n);
    let ncols = ns_col.iter().copied().max().map_or(0, |m| m + 1);
    for c in 0..ncols {
        // Barycenter of the parents' ranks; namespaces without outside parents keep file order.
        let mut members: Vec<(usize, f64)> = (0..n)
            .filter(|i| ns_col.get(*i) == Some(&c))
            .map(|i| {
                let ranks: Vec<f64> = p.namespaces.get(i).map_or(vec![], |ns| {
                    ns.links
                        .iter()
                        .filter(|l| cross_parent(i, l).is_some())
                        .filter_map(|l| l.parent.as_deref().and_then(|pid| rank.get(pid).copied()))
                        .collect()
                });
                let key = if ranks.is_empty() {
                    f64::MAX
                } else {
                    ranks.iter().sum::<f64>() / ranks.len() as f64
                };
                (i, key)
            })
            .collect();
        members.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (pos, (i, _)) in members.iter().enumerate() {
            let Some(links) = p.namespaces.get(*i).map(|ns| &ns.links) else {
                continue;
            };
            // Links whose parent is in this namespace go right after it; others by parent rank.
            let lkey = |l: &PicLink| -> f64 {
                let mut cur = l;
                for depth in 0..=links.len() {
                    let step = depth as f64 * 1e-3;
                    match cur.parent.as_deref() {
                        Some(pid) if ns_of.get(pid) == Some(i) => match link_by_id.get(pid) {
                            Some(pl) => cur = pl,
                            None => return -1.0 + step,
                        },
                        Some(pid) => return rank.get(pid).copied().unwrap_or(-1.0) + step,
                        None => return -1.0 + step,
                    }
                }
                -1.0
            };
            let mut idx: Vec<(usize, f64)> = links
                .iter()
                .enumerate()
                .map(|(k, l)| (k, lkey(l)))
                .collect();
            idx.sort_by(|a, b| a.1.total_cmp(&b.1));
            for (k, (li, _)) in idx.iter().enumerate() {
                if let Some(l) = links.get(*li) {
                    rank.insert(l.id.as_str(), (pos * 1000 + k) as f64);
                }
            }
            if let Some(slot) = link_order.get_mut(*i) {
                *slot = idx.into_iter().map(|(k, _)| k).collect();
            }
        }
        ns_order.extend(members.into_iter().map(|(i, _)| i));
    }
    Layout {
        ns_col,
        ns_order,
        link_order,
    }
}

/// Render `p` as a standalone SVG document (UTF-8, well-formed XML).
pub fn render_svg(p: &Picture) -> String {
    let lay = layout(p);
    let ns_col = &lay.ns_col;
    let ncols = ns_col.iter().copied().max().map_or(0, |m| m + 1);

    // Sizes: each link box, each namespace box.
    let mut ns_sizes = Vec::new();
    for (i, n) in p.namespaces.iter().enumerate() {
        let order = lay.link_order.get(i).cloned().unwrap_or_default();
        let links: Vec<&PicLink> = order.iter().filter_map(|k| n.links.get(*k)).collect();
        let mut w = text_w(&n.label) + 2.0 * NS_PAD;
        let mut h = NS_HEAD;
        let mut boxes = Vec::new();
        for l in links {
            let lines = link_lines(l);
            let bw = lines.iter().map(|s| text_w(s)).fold(0.0, f64::max) + 2.0 * PAD;
            let bh = lines.len() as f64 * LINE_H + 2.0 * PAD - 4.0;
            w = w.max(bw + 2.0 * NS_PAD);
            boxes.push((l, lines, bw, bh));
            h += bh + LINK_GAP;
        }
        if boxes.is_empty() {
            h += LINE_H;
        }
        h += NS_PAD;
        ns_sizes.push((w, h, boxes));
    }

    // Column widths and x positions.
    let top = MARGIN + if p.title.is_empty() { 0.0 } else { 30.0 };
    let mut col_w = vec![0.0f64; ncols];
    for (i, (w, _, _)) in ns_sizes.iter().enumerate() {
        if let Some(c) = ns_col.get(i).and_then(|c| col_w.get_mut(*c)) {
            *c = c.max(*w);
        }
    }
    let mut col_x = Vec::with_capacity(ncols);
    let mut x = MARGIN;
    for w in &col_w {
        col_x.push(x);
        x += w + COL_GAP;
    }
    let mut width = x - COL_GAP + MARGIN;
    let mut col_y = vec![top; ncols];

    let mut body = String::new();
    let mut placed: HashMap<String, LinkBox> = HashMap::new();
    for &i in &lay.ns_order {
        let (Some(n), Some((w, h, boxes))) = (p.namespaces.get(i), ns_sizes.get(i)) else {
            continue;
        };
        let c = ns_col.get(i).copied().unwrap_or(0);
        let (Some(&nx), Some(cw), Some(ny)) = (col_x.get(c), col_w.get(c), col_y.get_mut(c)) else {
            continue;
        };
        let y0 = *ny;
        *ny += h + ROW_GAP;
        let _ = writeln!(
            body,
            r##"<g class="ns"><rect x="{nx:.0}" y="{y0:.0}" width="{cw:.0}" height="{h:.0}" rx="10" fill="#f9fafb" stroke="#6b7280" stroke-dasharray="6 3"/>"##
        );
        let _ = writeln!(
            body,
            r#"<text x="{:.0}" y="{:.0}" font-weight="bold">{}</text>"#,
            nx + NS_PAD,
            y0 + 18.0,
            xml_escape(&n.label)
        );
        let mut ly = y0 + NS_HEAD;
        if boxes.is_empty() {
            let _ = writeln!(
                body,
                r##"<text x="{:.0}" y="{:.0}" fill="#6b7280">(no links)</text>"##,
                nx + NS_PAD,
                ly + 13.0
            );
        }
        let _ = w;
        for (l, lines, bw, bh) in boxes {
            let lx = nx + NS_PAD;
            let _ = writeln!(
                body,
                r##"<g class="link"><rect x="{lx:.0}" y="{ly:.0}" width="{bw:.0}" height="{bh:.0}" rx="5" fill="{}" stroke="#374151"/>"##,
                fill_for(&l.kind)
            );
            for (k, line) in lines.iter().enumerate() {
                let weight = if k == 0 { r#" font-weight="bold""# } else { "" };
                let _ = writeln!(
                    body,
                    r#"<text x="{:.0}" y="{:.0}"{weight}>{}</text>"#,
                    lx + PAD,
                    ly + PAD + 9.0 + k as f64 * LINE_H,
                    xml_escape(line)
                );
            }
            body.push_str("</g>\n");
            placed.insert(
                l.id.clone(),
                LinkBox {
                    x: lx,
                    y: ly,
                    w: *bw,
                    h: *bh,
                },
            );
            ly += bh + LINK_GAP;
        }
        body.push_str("</g>\n");
    }
    let mut height = col_y.iter().copied().fold(top, f64::max) - ROW_GAP + MARGIN;

    // Edges child → parent, drawn after boxes but under nothing important (thin, semi-transparent).
    let mut edges = String::new();
    let mut legend_needed = false;
    for l in p.namespaces.iter().flat_map(|n| n.links.iter()) {
        let (Some(pid), Some(cb)) = (l.parent.as_deref(), placed.get(&l.id)) else {
            continue;
        };
        let Some(pb) = placed.get(pid) else { continue };
        legend_needed = true;
        let (cy, py) = (cb.y + cb.h / 2.0, pb.y + pb.h / 2.0);
        let d = if pb.x + pb.w < cb.x {
            // Parent left of child: right edge of parent to left edge of child.
            let (x1, x2) = (pb.x + pb.w, cb.x);
            let mx = (x1 + x2) / 2.0;
            format!("M{x1:.0},{py:.0} C{mx:.0},{py:.0} {mx:.0},{cy:.0} {x2:.0},{cy:.0}")
        } else if cb.x + cb.w < pb.x {
            let (x1, x2) = (cb.x + cb.w, pb.x);
            let mx = (x1 + x2) / 2.0;
            format!("M{x1:.0},{cy:.0} C{mx:.0},{cy:.0} {mx:.0},{py:.0} {x2:.0},{py:.0}")
        } else {
            // Same column: bow out to the left of both boxes.
            let x1 = cb.x;
            let x2 = pb.x;
            let bx = x1.min(x2) - 30.0;
            format!("M{x1:.0},{cy:.0} C{bx:.0},{cy:.0} {bx:.0},{py:.0} {x2:.0},{py:.0}")
        };
        let dash = if l.kind == "veth" {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let _ = writeln!(
            edges,
            r##"<path d="{d}" fill="none" stroke="#1d4ed8" stroke-width="1.6"{dash} marker-end="url(#arrow)"/>"##
        );
    }

    // Legend: kind colours.
    let mut kinds: Vec<&str> = p
        .namespaces
        .iter()
        .flat_map(|n| n.links.iter())
        .map(|l| l.kind.as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut legend = String::new();
    let ly = height;
    let mut lx = MARGIN;
    for k in kinds.iter().filter(|k| !k.is_empty()) {
        let _ = writeln!(
            legend,
            r##"<rect x="{lx:.0}" y="{ly:.0}" width="14" height="14" fill="{}" stroke="#374151"/><text x="{:.0}" y="{:.0}">{}</text>"##,
            fill_for(k),
            lx + 20.0,
            ly + 12.0,
            xml_escape(k)
        );
        lx += 20.0 + text_w(k) + 24.0;
    }
    if legend_needed {
        let _ = writeln!(
            legend,
            r##"<path d="M{lx:.0},{:.0} L{:.0},{:.0}" stroke="#1d4ed8" stroke-width="1.6" marker-end="url(#arrow)"/><text x="{:.0}" y="{:.0}">parent → child (dashed: veth peer)</text>"##,
            ly + 7.0,
            lx + 30.0,
            ly + 7.0,
            lx + 38.0,
            ly + 12.0
        );
        lx += 38.0 + text_w("parent → child (dashed: veth peer)");
    }
    if !legend.is_empty() {
        height += 24.0;
        width = width.max(lx + MARGIN);
    }
    let title_w = text_w(&p.title) * 1.25 + 2.0 * MARGIN;
    width = width.max(title_w).max(200.0);
    height = height.max(80.0);

    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}">"#
    );
    s.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#1d4ed8\"/></marker></defs>\n",
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    if !p.title.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{MARGIN:.0}" y="{:.0}" font-size="16" font-weight="bold">{}</text>"#,
            MARGIN + 14.0,
            xml_escape(&p.title)
        );
    }
    s.push_str(&body);
    s.push_str(&edges);
    s.push_str(&legend);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn link(id: &str, kind: &str, parent: Option<&str>) -> PicLink {
        PicLink {
            id: id.into(),
            name: id.into(),
            kind: kind.into(),
            mode: (kind == "macvlan").then(|| "bridge".to_string()),
            mac: Some("02:00:00:00:00:01".into()),
            addrs: vec!["198.18.0.11/24".into()],
            parent: parent.map(String::from),
            notes: vec![],
        }
    }

    #[test]
    fn escapes_and_contains_names() {
        let p = Picture {
            title: "a <lab> & more".into(),
            namespaces: vec![
                PicNs {
                    label: "host".into(),
                    links: vec![link("eth0", "veth", None)],
                },
                PicNs {
                    label: "ns1".into(),
                    links: vec![link("mac1", "macvlan", Some("eth0"))],
                },
                PicNs {
                    label: "empty".into(),
                    links: vec![],
                },
            ],
        };
        let svg = render_svg(&p);
        assert!(svg.contains("a &lt;lab&gt; &amp; more"));
        assert!(svg.contains(">ns1<") && svg.contains("mac1  macvlan [bridge]"));
        assert!(svg.contains("marker-end"));
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn cycles_do_not_hang() {
        let p = Picture {
            title: String::new(),
            namespaces: vec![PicNs {
                label: "x".into(),
                links: vec![link("a", "veth", Some("b")), link("b", "veth", Some("a"))],
            }],
        };
        let svg = render_svg(&p);
        assert!(svg.contains("</svg>"));
    }
}
