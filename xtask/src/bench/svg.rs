//! A plain-text SVG of the sweep: achieved vs offered rate and p99 latency vs
//! offered rate, log-log, one polyline per system in each panel.

use std::fmt::Write as _;

/// One system's line in a panel.
#[derive(Clone, Debug)]
pub struct Series {
    /// Short key, written as `data-system` on the polyline.
    pub key: String,
    pub label: String,
    pub color: String,
    /// (x, y); points with x or y <= 0 cannot be drawn on log axes and are skipped.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 1000.0;
const PANEL_H: f64 = 420.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Decade range [10^lo, 10^hi] covering all positive values (at least one decade).
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut min, mut max) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    if !min.is_finite() {
        return (0, 1);
    }
    let lo = min.log10().floor() as i32;
    let mut hi = max.log10().ceil() as i32;
    if hi <= lo {
        hi = lo + 1;
    }
    (lo, hi)
}

/// Tick label of 10^e for a rate axis (1, 10, 100, 1k, ... 1M).
fn rate_label(e: i32) -> String {
    match e {
        i32::MIN..=-1 => format!("{}", 10f64.powi(e)),
        0..=2 => format!("{}", 10i64.pow(e as u32)),
        3..=5 => format!("{}k", 10i64.pow(e as u32 - 3)),
        _ => format!("{}M", 10f64.powi(e - 6)),
    }
}

/// Tick label of 10^e microseconds (10 us, 1 ms, 1 s).
fn us_label(e: i32) -> String {
    match e {
        i32::MIN..=2 => format!("{} us", 10f64.powi(e)),
        3..=5 => format!("{} ms", 10i64.pow(e as u32 - 3)),
        _ => format!("{} s", 10f64.powi(e - 6)),
    }
}

struct Axes {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    xr: (i32, i32),
    yr: (i32, i32),
}

impl Axes {
    fn x(&self, v: f64) -> f64 {
        let (lo, hi) = self.xr;
        self.x0 + (v.log10() - f64::from(lo)) / f64::from(hi - lo) * self.w
    }
    fn y(&self, v: f64) -> f64 {
        let (lo, hi) = self.yr;
        self.y0 + self.h - (v.log10() - f64::from(lo)) / f64::from(hi - lo) * self.h
    }
}

#[allow(clippy::too_many_arguments)]
fn panel(
    out: &mut String,
    top: f64,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    ylab: fn(i32) -> String,
    series: &[Series],
    diagonal: bool,
) {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let xr = decades(pts().map(|p| p.0));
    let mut yr = decades(pts().map(|p| p.1));
    if diagonal {
        // Same scale on both axes so "achieved = offered" is the diagonal.
        let r = (xr.0.min(yr.0), xr.1.max(yr.1));
        yr = r;
    }
    let xr = if diagonal { yr } else { xr };
    let a = Axes {
        x0: LEFT,
        y0: top + TOP,
        w: WIDTH - LEFT - RIGHT,
        h: PANEL_H - TOP - BOTTOM,
        xr,
        yr,
    };
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="16" font-weight="bold">{}</text>"#,
        a.x0,
        top + 30.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fcfcfc" stroke="#333"/>"##,
        a.x0, a.y0, a.w, a.h
    );
    // Grid: decades solid, 2x and 5x dotted.
    for e in xr.0..=xr.1 {
        let v = 10f64.powi(e);
        let x = a.x(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ccc"/>"##,
            a.y0,
            a.y0 + a.h
        );
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            a.y0 + a.h + 18.0,
            esc(&rate_label(e))
        );
        if e < xr.1 {
            for m in [2.0, 5.0] {
                let x = a.x(v * m);
                let _ = writeln!(
                    out,
                    r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4" stroke-dasharray="2,3"/>"##,
                    a.y0,
                    a.y0 + a.h
                );
            }
        }
    }
    for e in yr.0..=yr.1 {
        let v = 10f64.powi(e);
        let y = a.y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/>"##,
            a.x0,
            a.x0 + a.w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            a.x0 - 6.0,
            y + 4.0,
            esc(&ylab(e))
        );
        if e < yr.1 {
            for m in [2.0, 5.0] {
                let y = a.y(v * m);
                let _ = writeln!(
                    out,
                    r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4" stroke-dasharray="2,3"/>"##,
                    a.x0,
                    a.x0 + a.w
                );
            }
        }
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text>"#,
        a.x0 + a.w / 2.0,
        a.y0 + a.h + 42.0,
        esc(xlabel)
    );
    let (lx, ly) = (24.0, a.y0 + a.h / 2.0);
    let _ = writeln!(
        out,
        r#"<text x="{lx:.1}" y="{ly:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#,
        esc(ylabel)
    );
    if diagonal {
        let lo = 10f64.powi(xr.0);
        let hi = 10f64.powi(xr.1);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="6,4"><title>achieved = offered</title></line>"##,
            a.x(lo),
            a.y(lo),
            a.x(hi),
            a.y(hi)
        );
    }
    for s in series {
        let drawn: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
            .collect();
        let coords: Vec<String> = drawn
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", a.x(x), a.y(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline data-system="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            esc(&s.key),
            esc(&s.color),
            coords.join(" ")
        );
        for &(x, y) in &drawn {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: {x:.0} -&gt; {y:.0}</title></circle>"#,
                a.x(x),
                a.y(y),
                esc(&s.color),
                esc(&s.label)
            );
        }
    }
    // Legend, right of the plot.
    let lx = a.x0 + a.w + 20.0;
    for (i, s) in series.iter().enumerate() {
        let y = a.y0 + 10.0 + i as f64 * 22.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"/>"#,
            lx + 24.0,
            esc(&s.color)
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            lx + 30.0,
            y + 4.0,
            esc(&s.label)
        );
    }
}

/// The whole figure: achieved vs offered (top), p99 latency vs offered (bottom).
pub fn plot(title: &str, subtitle: &str, achieved: &[Series], latency: &[Series]) -> String {
    let height = 60.0 + 2.0 * PANEL_H;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="24" font-size="18" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="44" font-size="11" fill="#444" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        esc(subtitle)
    );
    panel(
        &mut out,
        50.0,
        "Achieved vs offered (DORA, open loop)",
        "offered DORA exchanges/s (log)",
        "ACKed DORA exchanges/s (log)",
        rate_label,
        achieved,
        true,
    );
    panel(
        &mut out,
        50.0 + PANEL_H,
        "p99 exchange latency vs offered (DISCOVER sent .. ACK received)",
        "offered DORA exchanges/s (log)",
        "p99 latency (log)",
        us_label,
        latency,
        false,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(key: &str, pts: &[(f64, f64)]) -> Series {
        Series {
            key: key.into(),
            label: format!("{key} <label>"),
            color: "#123456".into(),
            points: pts.to_vec(),
        }
    }

    #[test]
    fn one_polyline_per_system_in_each_panel() {
        let a = vec![
            series("ceiling", &[(25e3, 25e3), (50e3, 49e3), (100e3, 60e3)]),
            series("kea", &[(1e3, 1e3), (2e3, 1.9e3)]),
            series("dhcpd", &[(25.0, 24.0), (50.0, 30.0)]),
        ];
        let l = vec![
            series("ceiling", &[(25e3, 80.0), (50e3, 120.0)]),
            series("kea", &[(1e3, 900.0), (2e3, 5000.0)]),
            series("dhcpd", &[(25.0, 40_000.0), (50.0, 0.0)]),
        ];
        let svg = plot("bench", "machine", &a, &l);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        for key in ["ceiling", "kea", "dhcpd"] {
            assert_eq!(
                svg.matches(&format!(r#"<polyline data-system="{key}""#))
                    .count(),
                2,
                "{key}: one line in each panel"
            );
        }
        assert!(svg.contains("&lt;label&gt;"), "labels are escaped");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // The zero latency point is skipped, not drawn at -infinity.
        assert_eq!(svg.matches("<circle").count(), 7 + 5);
    }

    #[test]
    fn axes_cover_the_data_in_whole_decades() {
        assert_eq!(decades([25.0, 180_000.0].into_iter()), (1, 6));
        assert_eq!(decades([1000.0].into_iter()), (3, 4));
        assert_eq!(decades(std::iter::empty()), (0, 1));
        assert_eq!(rate_label(5), "100k");
        assert_eq!(rate_label(6), "1M");
        assert_eq!(us_label(3), "1 ms");
        assert_eq!(us_label(6), "1 s");
    }
}
