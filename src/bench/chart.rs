//! Hand-written SVG charts for `macvnet bench`: panels of horizontal bars and line plots in a
//! two-column grid. Monospace text as in `draw.rs`, so widths need no font metrics.

use std::fmt::Write as _;

use crate::draw::xml_escape;

const PANEL_W: f64 = 540.0;
const PANEL_H: f64 = 250.0;
const GAP: f64 = 24.0;
const MARGIN: f64 = 20.0;
const HEAD: f64 = 58.0;
const CHAR_W: f64 = 7.0;

pub const OURS: &str = "#2563eb";
pub const REFERENCE: &str = "#f97316";
/// Colours for cases without an ours/reference meaning.
pub const PALETTE: [&str; 6] = [
    "#2563eb", "#0891b2", "#16a34a", "#a16207", "#9333ea", "#dc2626",
];

/// One bar: label, value (NaN/absent = "n/a"), colour.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub color: &'static str,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    /// Dashed line (e.g. the second mode of the same implementation).
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub enum Panel {
    /// Horizontal bars; `note` is a small line under the title (e.g. "higher is better").
    Bars {
        title: String,
        note: String,
        unit: String,
        bars: Vec<Bar>,
    },
    Lines {
        title: String,
        note: String,
        x_label: String,
        y_label: String,
        series: Vec<Series>,
        /// Clip the x axis here (a long tail would squash the body of a distribution).
        x_max: Option<f64>,
        /// Legend in the lower right instead of the upper right.
        legend_low: bool,
    },
}

/// A whole picture: title, one subtitle line, panels two per row.
pub fn render(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let cols = if panels.len() > 1 { 2.0 } else { 1.0 };
    let rows = panels.len().div_ceil(2).max(1) as f64;
    let w = MARGIN * 2.0 + cols * PANEL_W + (cols - 1.0) * GAP;
    let h = HEAD + rows * (PANEL_H + GAP) + MARGIN;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans Mono, monospace" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{MARGIN}" y="28" font-size="17" font-weight="bold">{}</text>"#,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="46" fill="#4b5563">{}</text>"##,
        xml_escape(subtitle)
    );
    for (i, p) in panels.iter().enumerate() {
        let x = MARGIN + (i % 2) as f64 * (PANEL_W + GAP);
        let y = HEAD + (i / 2) as f64 * (PANEL_H + GAP);
        let _ = writeln!(s, r#"<g transform="translate({x},{y})">"#);
        let _ = writeln!(
            s,
            r##"<rect x="0" y="0" width="{PANEL_W}" height="{PANEL_H}" fill="#f9fafb" stroke="#d1d5db" rx="6"/>"##
        );
        match p {
            Panel::Bars {
                title,
                note,
                unit,
                bars,
            } => bars_panel(&mut s, title, note, unit, bars),
            Panel::Lines {
                title,
                note,
                x_label,
                y_label,
                series,
                x_max,
                legend_low,
            } => lines_panel(
                &mut s,
                title,
                note,
                (x_label, y_label),
                series,
                *x_max,
                *legend_low,
            ),
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

fn head(s: &mut String, title: &str, note: &str) {
    let _ = writeln!(
        s,
        r#"<text x="12" y="20" font-weight="bold" font-size="13">{}</text>"#,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="12" y="36" fill="#6b7280" font-size="11">{}</text>"##,
        xml_escape(note)
    );
}

/// Round `v` up to 1, 2 or 5 × 10^k so axis ticks are readable.
pub fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * e {
            return m * e;
        }
    }
    10.0 * e
}

/// Short number: 3 significant digits, no exponent for the ranges we print.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn bars_panel(s: &mut String, title: &str, note: &str, unit: &str, bars: &[Bar]) {
    head(s, title, note);
    let label_w = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0) as f64
        * CHAR_W
        + 20.0;
    let x0 = label_w.min(PANEL_W / 2.0);
    let right = 90.0;
    let avail = PANEL_W - x0 - right;
    let top = 50.0;
    let n = bars.len().max(1) as f64;
    let slot = ((PANEL_H - top - 16.0) / n).min(36.0);
    let bh = slot * 0.7;
    let max = nice_max(
        bars.iter()
            .filter_map(|b| b.value)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max),
    );
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as f64 * slot;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            x0 - 8.0,
            y + bh * 0.5 + 4.0,
            xml_escape(&b.label)
        );
        match b.value.filter(|v| v.is_finite()) {
            Some(v) => {
                let bw = (v / max * avail).max(1.0);
                let _ = writeln!(
                    s,
                    r#"<rect x="{x0}" y="{y}" width="{bw:.1}" height="{bh:.1}" fill="{}"/>"#,
                    b.color
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}">{} {}</text>"#,
                    x0 + bw + 5.0,
                    y + bh * 0.5 + 4.0,
                    fmt_num(v),
                    xml_escape(unit)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r##"<text x="{x0}" y="{:.1}" fill="#9ca3af">n/a</text>"##,
                    y + bh * 0.5 + 4.0
                );
            }
        }
    }
}

fn lines_panel(
    s: &mut String,
    title: &str,
    note: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    x_max: Option<f64>,
    legend_low: bool,
) {
    head(s, title, note);
    let (x0, x1, y0, y1) = (60.0, PANEL_W - 16.0, PANEL_H - 40.0, 50.0);
    let pts = series
        .iter()
        .flat_map(|se| se.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut xmin, mut xmax, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for (x, y) in pts {
        xmin = xmin.min(*x);
        xmax = xmax.max(*x);
        ymax = ymax.max(*y);
    }
    if !xmin.is_finite() {
        xmin = 0.0;
        xmax = 1.0;
    }
    if xmin > 0.0 && xmin < xmax * 0.5 {
        xmin = 0.0;
    }
    if let Some(m) = x_max.filter(|m| m.is_finite() && *m > xmin) {
        xmax = xmax.min(m);
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    let ymax = nice_max(ymax);
    let sx = |x: f64| x0 + (x - xmin) / (xmax - xmin) * (x1 - x0);
    let sy = |y: f64| y0 - y / ymax * (y0 - y1);
    // Axes, ticks and grid.
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#374151"/>"##
    );
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#374151"/>"##
    );
    for k in 0..=4 {
        let f = f64::from(k) / 4.0;
        let yv = ymax * f;
        let y = sy(yv);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e5e7eb"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"#,
            x0 - 4.0,
            y + 3.0,
            fmt_num(yv)
        );
        let xv = xmin + (xmax - xmin) * f;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
            sx(xv),
            y0 + 14.0,
            fmt_num(xv)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
        (x0 + x1) / 2.0,
        y0 + 30.0,
        xml_escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        xml_escape(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let path: Vec<String> = se
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x <= xmax)
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            se.color
        );
        // Legend, top right, one line per series.
        let ly = if legend_low {
            y0 - 10.0 - (series.len() - 1 - i) as f64 * 15.0
        } else {
            y1 + 4.0 + i as f64 * 15.0
        };
        let lx = x1 - 200.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#,
            lx + 22.0,
            se.color
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 27.0,
            ly + 4.0,
            xml_escape(&se.label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_maxima() {
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(1.3), 2.0);
        assert_eq!(nice_max(43.0), 50.0);
        assert_eq!(nice_max(0.0), 1.0);
    }

    #[test]
    fn renders_well_formed_svg() {
        let svg = render(
            "t <x>",
            "sub",
            &[
                Panel::Bars {
                    title: "a".into(),
                    note: "n".into(),
                    unit: "Gbit/s".into(),
                    bars: vec![
                        Bar {
                            label: "veth".into(),
                            value: Some(3.0),
                            color: OURS,
                        },
                        Bar {
                            label: "tap".into(),
                            value: None,
                            color: REFERENCE,
                        },
                    ],
                },
                Panel::Lines {
                    title: "b".into(),
                    note: String::new(),
                    x_label: "x".into(),
                    y_label: "y".into(),
                    series: vec![Series {
                        label: "s".into(),
                        color: OURS,
                        dashed: true,
                        points: vec![(1.0, 2.0), (2.0, 3.0)],
                    }],
                    x_max: None,
                    legend_low: false,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains("n/a"));
        assert!(svg.contains("polyline"));
    }
}
