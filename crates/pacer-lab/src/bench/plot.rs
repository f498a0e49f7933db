//! A small SVG line chart, written by hand: lines (with point markers), a shaded
//! band, horizontal and vertical rules, axes with round ticks and a legend.
//! (The `plotters` crate would do it, but its last release is from September 2024,
//! and this needs a tenth of it.)

use std::fmt::Write as _;

const WIDTH: f64 = 860.0;
/// The least height; a long legend makes the chart taller.
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const PLOT_BOTTOM: f64 = 420.0;
/// Colours for series, in order.
pub const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// A line through points, in order of x.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// SVG colour.
    pub color: String,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// Draw a small circle at every point.
    pub markers: bool,
    /// Join the points with a line (false: marks only).
    pub joined: bool,
    /// (x, y) points; an infinite y is drawn at the top edge.
    pub points: Vec<(f64, f64)>,
}

/// A shaded band between a low and a high value at each x.
#[derive(Debug, Clone)]
pub struct Band {
    /// Legend text.
    pub label: String,
    /// SVG colour (drawn translucent).
    pub color: String,
    /// (x, low, high); an infinite high (an open top) reaches the top edge.
    pub points: Vec<(f64, f64, f64)>,
}

/// A horizontal (at a y) or vertical (at an x) line across the plot.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Legend text (empty: not in the legend).
    pub label: String,
    /// SVG colour.
    pub color: String,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// Where.
    pub at: f64,
}

/// A chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// Lines.
    pub lines: Vec<Line>,
    /// Bands (drawn under the lines).
    pub bands: Vec<Band>,
    /// Horizontal rules.
    pub hrules: Vec<Rule>,
    /// Vertical rules.
    pub vrules: Vec<Rule>,
    /// Largest y shown (None: from the data); larger values are clipped to it.
    pub y_max: Option<f64>,
    /// Lines of small print under the legend.
    pub notes: Vec<String>,
}

impl Line {
    /// A solid line with markers.
    pub fn new(label: &str, color: &str, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.into(),
            color: color.into(),
            dashed: false,
            markers: true,
            joined: true,
            points,
        }
    }

    /// Marks only, not joined (a legend entry is still drawn).
    pub fn marks(mut self) -> Line {
        self.joined = false;
        self.markers = true;
        self
    }

    /// The same, dashed.
    pub fn dashed(mut self) -> Line {
        self.dashed = true;
        self
    }
}

impl Rule {
    /// A rule.
    pub fn new(label: &str, color: &str, dashed: bool, at: f64) -> Rule {
        Rule {
            label: label.into(),
            color: color.into(),
            dashed,
            at,
        }
    }
}

/// Round tick values covering [lo, hi], about `n` of them (1, 2 or 5 times a power of ten apart).
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut v = Vec::new();
    let mut t = first;
    while t <= hi + step * 1e-9 {
        // Avoid -0 and float dust in labels.
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    v
}

fn tick_label(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if (v * 10.0).fract().abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Escapes text for SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)))
            .chain(self.vrules.iter().map(|r| r.at))
            .filter(|x| x.is_finite());
        let hi = xs.fold(0.0f64, f64::max);
        (0.0, if hi > 0.0 { hi * 1.03 } else { 1.0 })
    }

    fn y_range(&self) -> (f64, f64) {
        let ys = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.2)))
            .chain(self.hrules.iter().map(|r| r.at))
            .filter(|y| y.is_finite());
        let data_hi = ys.fold(0.0f64, f64::max);
        let hi = match self.y_max {
            Some(m) if m > 0.0 => data_hi.min(m),
            _ => data_hi,
        };
        (0.0, if hi > 0.0 { hi * 1.08 } else { 1.0 })
    }

    /// Whether some finite value lies above the y range (and is drawn clipped);
    /// infinite ones are meant to be drawn at the top edge.
    pub fn clipped(&self) -> bool {
        let (_, hi) = self.y_range();
        let over = |y: f64| y.is_finite() && y > hi;
        self.lines
            .iter()
            .any(|l| l.points.iter().any(|p| over(p.1)))
            || self
                .bands
                .iter()
                .any(|b| b.points.iter().any(|p| over(p.2)))
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let (x0, x1) = self.x_range();
        let (y0, y1) = self.y_range();
        let right = WIDTH - RIGHT;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (right - LEFT);
        let sy = |y: f64| {
            let y = y.clamp(y0, y1);
            PLOT_BOTTOM - (y - y0) / (y1 - y0) * (PLOT_BOTTOM - TOP)
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            WIDTH / 2.0,
            esc(&self.title)
        );
        // Grid and ticks.
        for t in ticks(x0, x1, 10) {
            let x = sx(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{PLOT_BOTTOM}" stroke="#e6e6e6"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                PLOT_BOTTOM + 16.0,
                tick_label(t)
            );
        }
        for t in ticks(y0, y1, 8) {
            let y = sy(t);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e6e6e6"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                y + 4.0,
                tick_label(t)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            right - LEFT,
            PLOT_BOTTOM - TOP
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (LEFT + right) / 2.0,
            PLOT_BOTTOM + 34.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
            (TOP + PLOT_BOTTOM) / 2.0,
            esc(&self.y_label)
        );
        // Bands, then rules, then lines on top.
        for b in &self.bands {
            if b.points.is_empty() {
                continue;
            }
            let mut pts: Vec<String> = b
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.2)))
                .collect();
            pts.extend(
                b.points
                    .iter()
                    .rev()
                    .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1))),
            );
            let _ = writeln!(
                s,
                r#"<polygon points="{}" fill="{}" fill-opacity="0.18" stroke="none"/>"#,
                pts.join(" "),
                b.color
            );
        }
        let dash = |d: bool| if d { r#" stroke-dasharray="6 4""# } else { "" };
        for r in &self.hrules {
            if r.at.is_finite() && r.at <= y1 {
                let y = sy(r.at);
                let _ = writeln!(
                    s,
                    r#"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="{}" stroke-width="1.5"{}/>"#,
                    r.color,
                    dash(r.dashed)
                );
            }
        }
        for r in &self.vrules {
            if r.at.is_finite() && r.at <= x1 {
                let x = sx(r.at);
                let _ = writeln!(
                    s,
                    r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{PLOT_BOTTOM}" stroke="{}" stroke-width="1"{}/>"#,
                    r.color,
                    dash(r.dashed)
                );
            }
        }
        for l in &self.lines {
            if l.points.is_empty() {
                continue;
            }
            let pts: Vec<String> = l
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
                .collect();
            if l.joined {
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
                    pts.join(" "),
                    l.color,
                    dash(l.dashed)
                );
            }
            if l.markers {
                // A lone point gets a bigger mark: there is no line to see.
                let r = if l.points.len() == 1 { 5.0 } else { 2.5 };
                for p in &l.points {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{}"/>"#,
                        sx(p.0),
                        sy(p.1),
                        l.color
                    );
                }
            }
        }
        // Legend: one row per entry, two columns.
        let mut entries: Vec<(String, String, &'static str)> = Vec::new();
        for l in &self.lines {
            entries.push((
                l.label.clone(),
                l.color.clone(),
                match (l.joined, l.dashed) {
                    (false, _) => "mark",
                    (true, true) => "dash",
                    (true, false) => "line",
                },
            ));
        }
        for b in &self.bands {
            entries.push((b.label.clone(), b.color.clone(), "band"));
        }
        for r in self.hrules.iter().chain(&self.vrules) {
            entries.push((
                r.label.clone(),
                r.color.clone(),
                if r.dashed { "dash" } else { "line" },
            ));
        }
        let mut ly = PLOT_BOTTOM + 58.0;
        for (i, (label, color, kind)) in entries.iter().filter(|e| !e.0.is_empty()).enumerate() {
            let x = if i % 2 == 0 {
                LEFT
            } else {
                LEFT + (right - LEFT) / 2.0
            };
            if i > 0 && i % 2 == 0 {
                ly += 18.0;
            }
            match *kind {
                "mark" => {
                    let _ = write!(
                        s,
                        r#"<circle cx="{}" cy="{}" r="4" fill="{color}"/>"#,
                        x + 12.0,
                        ly - 4.0
                    );
                }
                "band" => {
                    let _ = write!(
                        s,
                        r#"<rect x="{x}" y="{}" width="24" height="10" fill="{color}" fill-opacity="0.25"/>"#,
                        ly - 9.0
                    );
                }
                k => {
                    let _ = write!(
                        s,
                        r#"<line x1="{x}" y1="{0}" x2="{1}" y2="{0}" stroke="{color}" stroke-width="2"{2}/>"#,
                        ly - 4.0,
                        x + 24.0,
                        dash(k == "dash")
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{ly}">{}</text>"#,
                x + 30.0,
                esc(label)
            );
        }
        let mut notes = self.notes.clone();
        if self.clipped() {
            notes.push(format!(
                "values above {} are drawn at the top edge",
                tick_label(y1)
            ));
        }
        for n in notes {
            ly += 16.0;
            let _ = writeln!(
                s,
                r##"<text x="{LEFT}" y="{ly}" font-size="11" fill="#555">{}</text>"##,
                esc(&n)
            );
        }
        s.push_str("</svg>\n");
        // Room for every legend row and note.
        let height = HEIGHT.max(ly + 14.0);
        if height > HEIGHT {
            let head = format!(r#"height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}""#);
            let tall = format!(r#"height="{height}" viewBox="0 0 {WIDTH} {height}""#);
            s = s.replacen(&head, &tall, 1);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ticks() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 1.0, 4), vec![0.0, 0.5, 1.0]);
        assert_eq!(
            ticks(0.0, 37.0, 8),
            vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]
        );
        assert_eq!(ticks(5.0, 5.0, 4), vec![5.0]);
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(0.25), "0.25");
    }

    #[test]
    fn chart_has_its_parts() {
        let c = Chart {
            title: "a <b> & c".into(),
            x_label: "elapsed (s)".into(),
            y_label: "total (s)".into(),
            lines: vec![
                Line::new(
                    "Pacer",
                    PALETTE[0],
                    vec![(1.0, 10.0), (2.0, 9.0), (3.0, 100.0)],
                ),
                Line::new("naive", PALETTE[1], vec![(1.0, 12.0)]).dashed(),
            ],
            bands: vec![Band {
                label: "band".into(),
                color: PALETTE[0].into(),
                points: vec![(1.0, 8.0, 12.0), (2.0, 8.5, 9.5)],
            }],
            hrules: vec![Rule::new("actual", "#000", false, 9.5)],
            vrules: vec![Rule::new("", "#999", true, 1.5)],
            y_max: Some(20.0),
            notes: vec!["note".into()],
        };
        let svg = c.to_svg();
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert!(svg.contains("stroke-dasharray"));
        assert!(c.clipped());
        assert!(svg.contains("drawn at the top edge"));
        // Legend: four labelled entries (the unlabelled rule is left out).
        for l in ["Pacer", "naive", "band", "actual"] {
            assert!(svg.contains(&format!(">{l}</text>")), "{l}");
        }
        // Nothing outside the canvas.
        for cap in svg.split("cy=\"").skip(1) {
            let v: f64 = cap.split('"').next().unwrap().parse().unwrap();
            assert!((TOP..=PLOT_BOTTOM).contains(&v), "{v}");
        }
    }

    #[test]
    fn marks_and_open_tops_reach_the_top_edge() {
        let c = Chart {
            lines: vec![
                Line::new("p", PALETTE[0], vec![(1.0, 10.0), (2.0, 12.0)]),
                Line::new("never", PALETTE[1], vec![(3.0, f64::INFINITY)]).marks(),
            ],
            bands: vec![Band {
                label: "band".into(),
                color: PALETTE[0].into(),
                points: vec![(1.0, 8.0, 12.0), (3.0, 9.0, f64::INFINITY)],
            }],
            ..Chart::default()
        };
        let svg = c.to_svg();
        // One joined line; the marks are circles only.
        assert_eq!(svg.matches("<polyline").count(), 1);
        // The infinite ones at the top edge; not reported as clipped.
        assert!(svg.contains(&format!("cy=\"{TOP:.1}\"")), "{svg}");
        assert!(!c.clipped());
        assert!(svg.contains(">never</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(
            svg.contains(&format!(r#"height="{HEIGHT}""#)),
            "a short legend: the usual height"
        );
        // A long legend makes room for itself.
        let mut long = c.clone();
        for i in 0..8 {
            long.lines
                .push(Line::new(&format!("l{i}"), PALETTE[2], vec![(1.0, 1.0)]));
        }
        long.notes = vec!["a".into(), "b".into()];
        let svg = long.to_svg();
        let h: f64 = svg
            .split("height=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let last: f64 = svg
            .rsplit("y=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(h > HEIGHT && last < h, "{h} {last}");
    }

    #[test]
    fn empty_chart_is_still_valid() {
        let svg = Chart::default().to_svg();
        assert!(svg.contains("</svg>"));
        assert!(!Chart::default().clipped());
    }
}
