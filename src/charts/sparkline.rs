//! A sparkline: a small inline SVG of one series, for the runs table.
//!
//! Pure, like the rest of `charts/`: points in, markup out. The markup holds
//! numbers only (no label, no key), so nothing in it needs escaping. Gaps
//! where the value is not finite break the line and get a red tick at their
//! step — a diverging run's NaN is the point of looking. A series spanning
//! more than [`LOG_RATIO`] between its smallest and largest (positive) value
//! is drawn on a log scale, so a blow-up does not flatten the rest.

use std::fmt::Write;

use crate::model::Point;

/// Largest / smallest value beyond which a positive series is drawn in log10.
pub const LOG_RATIO: f64 = 100.0;

/// Inner margin, in pixels, so the stroke is not cut at the edges.
const PAD: f64 = 1.5;

/// The SVG of `points` (sorted by step) in `width` × `height` pixels;
/// `None` when there is nothing to draw.
pub fn sparkline(points: &[Point], width: u32, height: u32) -> Option<String> {
    let first = points.first()?.step;
    let last = points.last()?.step;
    let finite: Vec<f64> = points
        .iter()
        .map(|p| p.value)
        .filter(|v| v.is_finite())
        .collect();
    let (w, h) = (f64::from(width), f64::from(height));
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log = lo > 0.0 && hi / lo > LOG_RATIO;
    let scale = |v: f64| if log { v.log10() } else { v };
    let (lo_s, hi_s) = (scale(lo), scale(hi));
    let span = (last - first).max(1) as f64;
    let x = |step: u64| PAD + (step - first) as f64 / span * (w - 2.0 * PAD);
    let y = |v: f64| {
        if hi_s > lo_s {
            PAD + (hi_s - scale(v)) / (hi_s - lo_s) * (h - 2.0 * PAD)
        } else {
            h / 2.0
        }
    };

    let mut line = String::new();
    let mut ticks = String::new();
    let mut pen_down = false;
    let mut last_finite = None;
    for p in points {
        if p.value.is_finite() {
            let cmd = if pen_down { 'L' } else { 'M' };
            let _ = write!(line, "{cmd}{:.1} {:.1}", x(p.step), y(p.value));
            pen_down = true;
            last_finite = Some(*p);
        } else {
            let _ = write!(ticks, "M{:.1} 0V{h}", x(p.step));
            pen_down = false;
        }
    }
    let mut svg = format!(
        "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"loss{}\">",
        if log { " (log scale)" } else { "" }
    );
    if !line.is_empty() {
        let _ = write!(
            svg,
            "<path d=\"{line}\" fill=\"none\" stroke=\"#245fc2\" stroke-width=\"1.2\" stroke-linejoin=\"round\"/>"
        );
    }
    if !ticks.is_empty() {
        let _ = write!(
            svg,
            "<path class=\"nonfinite\" d=\"{ticks}\" stroke=\"#b01e1e\" stroke-width=\"1.5\"/>"
        );
    }
    if let Some(p) = last_finite {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"#245fc2\"/>",
            x(p.step),
            y(p.value)
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                step: i as u64 * 10,
                value: *v,
                time: None,
            })
            .collect()
    }

    #[test]
    fn draws_a_line_within_the_box() {
        let svg = sparkline(&pts(&[2.0, 1.5, 1.0, 0.8]), 100, 20).unwrap();
        assert!(svg.starts_with("<svg class=\"spark\"") && svg.ends_with("</svg>"));
        assert!(svg.contains("width=\"100\" height=\"20\""));
        // Highest value at the top, lowest at the bottom, first and last step at the edges.
        assert!(svg.contains("d=\"M1.5 1.5L"), "{svg}");
        assert!(svg.contains("L98.5 18.5\""), "{svg}");
        assert!(!svg.contains("nonfinite") && !svg.contains("log scale"));
    }

    #[test]
    fn nan_breaks_the_line_and_is_marked() {
        let svg = sparkline(&pts(&[2.0, 1.0, f64::NAN, 1.0, 0.5]), 100, 20).unwrap();
        assert_eq!(
            svg.matches('M').count(),
            2 + 1,
            "two line pieces and one tick: {svg}"
        );
        assert!(
            svg.contains("class=\"nonfinite\" d=\"M50.0 0V20\""),
            "{svg}"
        );
        // Only NaNs: no line, the ticks alone.
        let svg = sparkline(&pts(&[f64::NAN, f64::INFINITY]), 50, 10).unwrap();
        assert!(svg.contains("nonfinite") && !svg.contains("circle"));
    }

    #[test]
    fn blow_ups_go_log_and_flat_lines_sit_in_the_middle() {
        let svg = sparkline(&pts(&[1.0, 0.5, 1e6]), 100, 20).unwrap();
        assert!(svg.contains("log scale"));
        let svg = sparkline(&pts(&[3.0, 3.0]), 100, 20).unwrap();
        assert!(svg.contains("M1.5 10.0L98.5 10.0"), "{svg}");
        assert!(sparkline(&[], 100, 20).is_none());
        // One point: no division by zero.
        assert!(
            sparkline(&pts(&[1.0]), 100, 20)
                .unwrap()
                .contains("M1.5 10.0")
        );
    }
}
