//! Parallel coordinates of runs' hyperparameters against a metric, as plain
//! SVG (plotters has no parallel axes): one vertical axis per parameter and
//! the metric's axis last; one polyline per run, coloured by its metric
//! (best dark, worst light, the best drawn on top). Numeric axes go log when
//! the values span two decades or more; strings, booleans and lists get a
//! categorical axis with a tick per value. A run without a parameter breaks
//! its line at that axis. Every label is escaped; each run's line carries a
//! `<title>` (its name and metric) for a hover read-out without JavaScript.

use std::fmt::Write;

use super::heatmap::ramp;
use super::svg::{accessible, esc, format_value};

/// How an axis places values.
#[derive(Debug, Clone, PartialEq)]
pub enum AxisKind {
    /// `lo..=hi`, on log10 when `log` (then both > 0).
    Numeric { lo: f64, hi: f64, log: bool },
    /// One tick per value, in this order, top to bottom.
    Categorical { categories: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub label: String,
    pub kind: AxisKind,
}

/// A numeric axis over `values` (finite): log when all are positive and
/// the largest is at least 100 times the smallest.
pub fn numeric_axis(label: &str, values: impl IntoIterator<Item = f64>) -> Axis {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    Axis {
        label: label.to_string(),
        kind: AxisKind::Numeric {
            lo,
            hi,
            log: lo > 0.0 && hi / lo >= 100.0,
        },
    }
}

/// Where a run sits on one axis.
#[derive(Debug, Clone, PartialEq)]
pub enum Coord {
    Number(f64),
    /// An index into the axis's categories.
    Category(usize),
    Missing,
}

/// One run.
#[derive(Debug, Clone, PartialEq)]
pub struct Polyline {
    pub label: String,
    /// One per parameter axis (the metric's axis takes `metric`).
    pub coords: Vec<Coord>,
    /// Finite.
    pub metric: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    pub title: String,
    pub desc: String,
    /// The parameters' axes.
    pub axes: Vec<Axis>,
    /// The last axis (numeric).
    pub metric: Axis,
    pub lines: Vec<Polyline>,
    /// Which end of the metric is good (drawn dark and on top).
    pub lower_is_better: bool,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 380.0;
const TOP: f64 = 58.0;
const BOTTOM: f64 = 330.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 110.0;
/// The lightest colour used for the worst run: viridis' last stretch is too
/// pale on white.
const WORST_T: f64 = 0.85;
/// Axis labels longer than this are cut (the whole label is its `<title>`).
const LABEL_CHARS: usize = 16;
/// Categorical axes show at most this many tick labels (every k-th).
const MAX_CATEGORY_LABELS: usize = 12;

/// 0 (bottom) ..= 1 (top) on `axis`.
fn position(axis: &Axis, c: &Coord) -> Option<f64> {
    match (&axis.kind, c) {
        (AxisKind::Numeric { lo, hi, log }, Coord::Number(v)) => {
            let (a, b, x) = if *log {
                (lo.log10(), hi.log10(), v.max(*lo).log10())
            } else {
                (*lo, *hi, *v)
            };
            Some(if b - a > 0.0 {
                ((x - a) / (b - a)).clamp(0.0, 1.0)
            } else {
                0.5
            })
        }
        (AxisKind::Categorical { categories }, Coord::Category(i)) if *i < categories.len() => {
            Some(1.0 - (*i as f64 + 0.5) / categories.len() as f64)
        }
        _ => None,
    }
}

fn y_of(t: f64) -> f64 {
    BOTTOM - t * (BOTTOM - TOP)
}

/// Tick (position, label) pairs of a numeric axis.
fn numeric_ticks(lo: f64, hi: f64, log: bool) -> Vec<(f64, String)> {
    if hi - lo <= 0.0 {
        return vec![(0.5, format_value(lo))];
    }
    if log {
        let (a, b) = (lo.log10(), hi.log10());
        let mut out = vec![(0.0, format_value(lo))];
        let step = ((b - a) / 5.0).ceil().max(1.0);
        let mut d = a.ceil();
        while d < b {
            let t = (d - a) / (b - a);
            if t > 0.08 && t < 0.92 {
                out.push((t, format_value(10f64.powf(d))));
            }
            d += step;
        }
        out.push((1.0, format_value(hi)));
        out
    } else {
        // Round values (1, 2 or 5 times a power of ten) about a quarter of
        // the range apart; an end is labelled too unless a tick is near it.
        let raw = (hi - lo) / 4.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let t = |v: f64| (v - lo) / (hi - lo);
        let mut out = Vec::new();
        let mut v = (lo / step).ceil() * step;
        while v <= hi + step * 1e-9 {
            // A tick at zero computed as k·step comes out as ±1e-17.
            let v0 = if v.abs() < step * 1e-9 { 0.0 } else { v };
            out.push((t(v0).clamp(0.0, 1.0), format_value(v0)));
            v += step;
        }
        for (end, at) in [(lo, 0.0), (hi, 1.0)] {
            if out.iter().all(|(p, _)| (p - at).abs() > 0.08) {
                out.push((at, format_value(end)));
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() <= LABEL_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(LABEL_CHARS - 1).collect();
        format!("{head}…")
    }
}

/// Where the metric `v` falls on the colour ramp: 0 for the best.
fn goodness(p: &Parallel, v: f64) -> f64 {
    let t = position(&p.metric, &Coord::Number(v)).unwrap_or(0.5);
    let t = if p.lower_is_better { t } else { 1.0 - t };
    t * WORST_T
}

/// The chart, or `None` without a run to draw.
pub fn parallel(p: &Parallel) -> Option<String> {
    if p.lines.is_empty() {
        return None;
    }
    let axes: Vec<&Axis> = p.axes.iter().chain(std::iter::once(&p.metric)).collect();
    let gap = if axes.len() > 1 {
        (WIDTH - LEFT - RIGHT) / (axes.len() - 1) as f64
    } else {
        0.0
    };
    let x_of = |i: usize| {
        if axes.len() > 1 {
            LEFT + gap * i as f64
        } else {
            WIDTH / 2.0
        }
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" class="parallel">"#
    );
    let _ = write!(
        s,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/><text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"##,
        WIDTH / 2.0,
        esc(&p.title)
    );

    // Runs, worst first so that the best end up on top.
    let mut order: Vec<&Polyline> = p.lines.iter().collect();
    order.sort_by(|a, b| goodness(p, b.metric).total_cmp(&goodness(p, a.metric)));
    for line in order {
        let colour = ramp(goodness(p, line.metric));
        let _ = write!(
            s,
            r#"<g class="run" stroke="{colour}"><title>{}: {}</title>"#,
            esc(&line.label),
            format_value(line.metric)
        );
        let coords = line
            .coords
            .iter()
            .cloned()
            .chain(std::iter::once(Coord::Number(line.metric)));
        let mut segment: Vec<(f64, f64)> = Vec::new();
        let flush = |segment: &mut Vec<(f64, f64)>, s: &mut String| {
            if segment.len() == 1 {
                let (x, y) = segment[0];
                let _ = write!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/>"#
                );
            } else if segment.len() > 1 {
                s.push_str(
                    r#"<polyline fill="none" stroke-width="1.6" stroke-opacity="0.85" points=""#,
                );
                for (x, y) in segment.iter() {
                    let _ = write!(s, "{x:.1},{y:.1} ");
                }
                s.push_str(r#""/>"#);
            }
            segment.clear();
        };
        for (i, c) in coords.enumerate() {
            match axes.get(i).and_then(|a| position(a, &c)) {
                Some(t) => segment.push((x_of(i), y_of(t))),
                None => flush(&mut segment, &mut s),
            }
        }
        flush(&mut segment, &mut s);
        s.push_str("</g>");
    }

    // Axes over the lines, with their ticks and labels.
    for (i, axis) in axes.iter().enumerate() {
        let x = x_of(i);
        let is_metric = i == axes.len() - 1;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#1d232b" stroke-width="{}"/>"##,
            if is_metric { 2 } else { 1 }
        );
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="12" font-weight="{}"><title>{}</title>{}</text>"#,
            TOP - 14.0,
            if is_metric { 700 } else { 600 },
            esc(&axis.label),
            esc(&cut(&axis.label))
        );
        let ticks: Vec<(f64, String)> = match &axis.kind {
            AxisKind::Numeric { lo, hi, log } => {
                if *log {
                    let _ = write!(
                        s,
                        r##"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="10" fill="#6a7380">log scale</text>"##,
                        BOTTOM + 14.0
                    );
                }
                numeric_ticks(*lo, *hi, *log)
            }
            AxisKind::Categorical { categories } => {
                let every = categories.len().div_ceil(MAX_CATEGORY_LABELS).max(1);
                categories
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % every == 0)
                    .map(|(k, c)| (position(axis, &Coord::Category(k)).unwrap_or(0.5), cut(c)))
                    .collect()
            }
        };
        // The metric's labels go right of its axis, where no line comes.
        let (dir, anchor) = if is_metric {
            (1.0, "start")
        } else {
            (-1.0, "end")
        };
        for (t, label) in ticks {
            let y = y_of(t);
            let _ = write!(
                s,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{x:.1}" y2="{y:.1}" stroke="#1d232b"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="10" fill="#1d232b" paint-order="stroke" stroke="#fff" stroke-width="3">{}</text>"##,
                x + 4.0 * dir,
                x + 6.0 * dir,
                y + 3.5,
                esc(&label)
            );
        }
    }

    // The colour scale beside the metric's axis: best dark, worst light.
    let x = x_of(axes.len() - 1) + 50.0;
    let (top_t, bottom_t) = if p.lower_is_better {
        (WORST_T, 0.0)
    } else {
        (0.0, WORST_T)
    };
    s.push_str(r#"<defs><linearGradient id="pc-ramp" x1="0" y1="0" x2="0" y2="1">"#);
    for k in 0..=8 {
        let f = k as f64 / 8.0;
        let _ = write!(
            s,
            r#"<stop offset="{f:.3}" stop-color="{}"/>"#,
            ramp(top_t + (bottom_t - top_t) * f)
        );
    }
    s.push_str("</linearGradient></defs>");
    let _ = write!(
        s,
        r##"<rect x="{x:.1}" y="{TOP}" width="10" height="{}" fill="url(#pc-ramp)"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#6a7380">best</text><text x="{:.1}" y="{:.1}" font-size="10" fill="#6a7380">worst</text>"##,
        BOTTOM - TOP,
        x + 14.0,
        if p.lower_is_better { BOTTOM } else { TOP + 8.0 },
        x + 14.0,
        if p.lower_is_better { TOP + 8.0 } else { BOTTOM },
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#6a7380">{} runs · a line per run, coloured by {}</text>"##,
        WIDTH / 2.0,
        HEIGHT - 16.0,
        p.lines.len(),
        esc(&p.metric.label)
    );
    s.push_str("</svg>");
    Some(accessible(s, &p.title, &p.desc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: Vec<Polyline>) -> Parallel {
        Parallel {
            title: "Hyperparameters <of> \"x\"".into(),
            desc: "lr and opt against best val loss".into(),
            axes: vec![
                numeric_axis("lr", [1e-4, 1e-2]),
                Axis {
                    label: "\"><svg onload=alert(1)>".into(),
                    kind: AxisKind::Categorical {
                        categories: vec!["adam".into(), "<script>".into()],
                    },
                },
            ],
            metric: numeric_axis("best val/loss", [0.2, 0.9]),
            lines,
            lower_is_better: true,
        }
    }

    #[test]
    fn a_line_per_run_escaped_labels_and_a_log_axis() {
        let svg = parallel(&chart(vec![
            Polyline {
                label: "<script>alert(1)</script>".into(),
                coords: vec![Coord::Number(1e-4), Coord::Category(0)],
                metric: 0.2,
            },
            Polyline {
                label: "b".into(),
                coords: vec![Coord::Number(1e-2), Coord::Category(1)],
                metric: 0.9,
            },
        ]))
        .unwrap();
        assert_eq!(svg.matches(r#"<g class="run""#).count(), 2);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("<title>Hyperparameters &lt;of&gt; &quot;x&quot;</title>"));
        assert!(svg.contains("<desc>lr and opt"));
        assert!(!svg.contains("<script>") && !svg.contains("<svg onload"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;: 0.2"));
        assert!(
            svg.contains(">log scale</text>"),
            "1e-4..1e-2 spans two decades"
        );
        // The best run (0.2) is drawn last, on top, in the darkest colour.
        let best = svg.rfind("&lt;script&gt;alert(1)").unwrap();
        assert!(best > svg.find("<title>b: 0.9").unwrap());
        assert!(svg.contains(&format!(r#"stroke="{}""#, ramp(0.0))));
        assert!(parallel(&chart(vec![])).is_none());
    }

    #[test]
    fn linear_ticks_are_round_and_the_ends_labelled() {
        let labels = |lo, hi| -> Vec<String> {
            numeric_ticks(lo, hi, false)
                .into_iter()
                .map(|(_, l)| l)
                .collect()
        };
        assert_eq!(labels(8.0, 150.0), ["8", "50", "100", "150"]);
        assert_eq!(labels(0.0, 1e-4), ["0", "5e-5", "1e-4"]);
        assert_eq!(labels(16.0, 32.0), ["16", "20", "25", "30", "32"]);
        let ticks = numeric_ticks(-1.0, 1.0, false);
        assert!(
            ticks
                .iter()
                .any(|(t, l)| l == "0" && (*t - 0.5).abs() < 1e-9)
        );
        assert!(ticks.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(ticks.iter().all(|(t, _)| (0.0..=1.0).contains(t)));
    }

    #[test]
    fn missing_values_break_the_line_and_positions_stay_on_the_axis() {
        let svg = parallel(&chart(vec![Polyline {
            label: "a".into(),
            coords: vec![Coord::Missing, Coord::Category(1)],
            metric: 0.5,
        }]))
        .unwrap();
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "opt to the metric only"
        );
        let c = chart(vec![]);
        assert_eq!(position(&c.axes[0], &Coord::Number(1e-3)), Some(0.5));
        assert_eq!(position(&c.axes[1], &Coord::Category(0)), Some(0.75));
        assert_eq!(position(&c.axes[1], &Coord::Missing), None);
        let flat = numeric_axis("x", [3.0, 3.0]);
        assert_eq!(position(&flat, &Coord::Number(3.0)), Some(0.5));
        assert!(matches!(
            numeric_axis("x", [0.0, 1e6]).kind,
            AxisKind::Numeric { log: false, .. }
        ));
    }
}
