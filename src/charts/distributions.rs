//! Histograms over time, as TensorBoard shows them: a distribution chart of
//! nested percentile bands over the steps, and an offset ("ridgeline") view
//! of a few steps' histograms stacked. Non-finite counts, which the
//! histograms keep apart from their bins, are marked in red on both.

use std::fmt::Write;

use plotters::prelude::*;

use super::layers::spread;
use super::svg::{accessible, esc, format_tick, frame, legend, readout};
use crate::diagnostics::fmt_step;

/// TensorBoard's distribution percentiles, in basis points: the minimum,
/// ±1.5σ, ±1σ, ±0.5σ of a normal distribution, the median and the maximum.
pub const BASIS_POINTS: [u32; 9] = [0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10_000];

/// One histogram of one step: `counts[i]` values in `edges[i]..edges[i+1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hist<'a> {
    pub step: u64,
    pub edges: &'a [f64],
    pub counts: &'a [u64],
    pub nonfinite: u64,
}

/// The values at `BASIS_POINTS`, interpolated linearly inside the bin where
/// the cumulative count reaches each; `None` for an empty histogram.
pub fn percentiles(edges: &[f64], counts: &[u64]) -> Option<[f64; 9]> {
    let bins = counts.len().min(edges.len().saturating_sub(1));
    let total: u64 = counts[..bins].iter().sum();
    if total == 0 {
        return None;
    }
    let mut out = [0.0; 9];
    for (o, bp) in out.iter_mut().zip(BASIS_POINTS) {
        let target = total as f64 * f64::from(bp) / 10_000.0;
        let mut before = 0.0;
        *o = edges[bins];
        for i in 0..bins {
            let c = counts[i] as f64;
            if c == 0.0 {
                continue;
            }
            if before + c >= target {
                let f = ((target - before) / c).clamp(0.0, 1.0);
                *o = edges[i] + (edges[i + 1] - edges[i]) * f;
                break;
            }
            before += c;
        }
        if bp == 10_000 {
            // The top edge of the last non-empty bin.
            let last = (0..bins).rev().find(|&i| counts[i] > 0).unwrap_or(0);
            *o = edges[last + 1];
        }
    }
    Some(out)
}

/// "12 non-finite values at 3 steps, first at step 400", or `None`.
pub fn nonfinite_caption(hists: &[Hist]) -> Option<String> {
    let bad: Vec<&Hist> = hists.iter().filter(|h| h.nonfinite > 0).collect();
    let first = bad.first()?;
    let total: u64 = bad.iter().map(|h| h.nonfinite).sum();
    Some(format!(
        "{total} non-finite value{} (NaN/Inf) at {} step{}, first at step {}",
        if total == 1 { "" } else { "s" },
        bad.len(),
        if bad.len() == 1 { "" } else { "s" },
        first.step
    ))
}

const BAD: RGBColor = RGBColor(0xb0, 0x1e, 0x1e);
const BAND: RGBColor = RGBColor(0xe0, 0x7b, 0x12);

/// Hover read-outs of the bands chart at most: one a step, or one for
/// several neighbouring steps.
const HOVER_COLUMNS: usize = 400;

/// Invisible columns over the bands, one a histogram step (the steps of a
/// column's span when there are more than [`HOVER_COLUMNS`]), each with a
/// `<title>` that reads out the step's median, its ±1σ and min–max ranges
/// and its non-finite count — the hover read-out, without JavaScript.
fn bands_hover(
    rows: &[(u64, [f64; 9])],
    hists: &[Hist],
    (x0, x1): (u64, u64),
    (px, py): (std::ops::Range<i32>, std::ops::Range<i32>),
) -> String {
    let width = f64::from((px.end - px.start).max(1));
    let pixel = |x: f64| f64::from(px.start) + (x - x0 as f64) / (x1 - x0).max(1) as f64 * width;
    let mut steps: Vec<u64> = hists.iter().map(|h| h.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let every = steps.len().div_ceil(HOVER_COLUMNS).max(1);
    let mut out = String::from(r##"<g class="hover" fill="#000" fill-opacity="0">"##);
    for (c, group) in steps.chunks(every).enumerate() {
        let (first, last) = (group[0], group[group.len() - 1]);
        // From halfway to the previous column to halfway to the next.
        let prev = (c > 0).then(|| steps[c * every - 1]);
        let next = steps.get((c + 1) * every).copied();
        let a = prev.map_or(f64::from(px.start), |p| pixel((p + first) as f64 / 2.0));
        let b = next.map_or(f64::from(px.end), |n| pixel((last + n) as f64 / 2.0));
        let mut lines = Vec::new();
        for &step in group {
            let mut text = format!("step {}", fmt_step(step));
            if let Some((_, p)) = rows.iter().find(|r| r.0 == step) {
                text.push_str(&format!(
                    ": median {}, 16–84 % {} – {}, min–max {} – {}",
                    readout(p[4]),
                    readout(p[2]),
                    readout(p[6]),
                    readout(p[0]),
                    readout(p[8])
                ));
            }
            let bad: u64 = hists
                .iter()
                .filter(|h| h.step == step)
                .map(|h| h.nonfinite)
                .sum();
            if bad > 0 {
                text.push_str(&format!(", {bad} NaN/Inf"));
            }
            lines.push(text);
        }
        out.push_str(&format!(
            "<rect x=\"{a:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\"><title>{}</title></rect>",
            py.start,
            (b - a).max(1.0),
            py.end - py.start,
            esc(&lines.join("\n"))
        ));
    }
    out.push_str("</g>");
    out
}

/// The percentile bands of `hists` (sorted by step) over the steps, or
/// `None` when every histogram is empty.
pub fn bands_chart(title: &str, hists: &[Hist], size: (u32, u32)) -> Option<String> {
    let rows: Vec<(u64, [f64; 9])> = hists
        .iter()
        .filter_map(|h| Some((h.step, percentiles(h.edges, h.counts)?)))
        .collect();
    let bad: Vec<u64> = hists
        .iter()
        .filter(|h| h.nonfinite > 0)
        .map(|h| h.step)
        .collect();
    let steps = || rows.iter().map(|r| r.0).chain(bad.iter().copied());
    let (x0, x1) = (steps().min()?, steps().max()?);
    let x1 = x1.max(x0 + 1);
    let (mut y0, mut y1) = rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, r| {
            (a.0.min(r.1[0]), a.1.max(r.1[8]))
        });
    if !y0.is_finite() || !y1.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let (y0, y1, pad) = super::svg::padded(y0, y1);

    let mut svg = String::new();
    let hover;
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = frame(&root, title)
            .build_cartesian_2d(x0..x1, y0..y1)
            .ok()?;
        let tick = (y1 - y0) / 6.0;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0xee, 0xf0, 0xf3))
            .bold_line_style(RGBColor(0xe3, 0xe6, 0xea))
            .x_labels(6)
            .y_labels(6)
            .x_desc("step")
            .y_label_formatter(&|y: &f64| format_tick(*y, tick))
            .label_style(("sans-serif", 11))
            .draw()
            .ok()?;
        // Outermost band first, each inner one drawn over it.
        for (k, (lo, hi)) in [(0, 8), (1, 7), (2, 6), (3, 5)].into_iter().enumerate() {
            let mut outline: Vec<(u64, f64)> = rows.iter().map(|r| (r.0, r.1[hi])).collect();
            outline.extend(rows.iter().rev().map(|r| (r.0, r.1[lo])));
            if rows.len() == 1 {
                // One step: a thin column rather than nothing.
                let (s, p) = rows[0];
                outline = vec![(s, p[lo]), (s + 1, p[lo]), (s + 1, p[hi]), (s, p[hi])];
            }
            let series = chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    BAND.mix(0.18 + 0.14 * k as f64).filled(),
                )))
                .ok()?;
            let label = match k {
                0 => "min–max",
                1 => "±1.5σ (7–93%)",
                2 => "±1σ (16–84%)",
                _ => "±0.5σ (31–69%)",
            };
            let alpha = 0.18 + 0.14 * k as f64;
            series.label(label).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAND.mix(alpha).filled())
            });
        }
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.0, r.1[4])),
                RGBColor(0x8a, 0x3c, 0x00).stroke_width(2),
            ))
            .ok()?
            .label("median")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    RGBColor(0x8a, 0x3c, 0x00).stroke_width(2),
                )
            });
        if !bad.is_empty() {
            chart
                .draw_series(
                    bad.iter()
                        .map(|&x| TriangleMarker::new((x, y1 - pad * 0.5), 5, BAD.filled())),
                )
                .ok()?
                .label("non-finite values")
                .legend(|(x, y)| TriangleMarker::new((x + 9, y), 4, BAD.filled()));
        }
        legend(&mut chart)?;
        hover = bands_hover(
            &rows,
            hists,
            (x0, x1),
            chart.plotting_area().get_pixel_range(),
        );
        root.present().ok()?;
    }
    if let Some(end) = svg.rfind("</svg>") {
        svg.insert_str(end, &hover);
    }
    let desc = format!(
        "Percentile bands (min, 7, 16, 31, 50, 69, 84, 93 %, max) of {} histograms over steps {x0}–{x1}{}",
        rows.len(),
        nonfinite_caption(hists).map_or(String::new(), |c| format!("; {c}"))
    );
    Some(accessible(svg, title, &desc))
}

/// Rows of the offset view at most.
pub const RIDGE_ROWS: usize = 10;

/// A few of `hists` (sorted by step; at most `max_rows`, evenly spread,
/// first and last kept) stacked with an offset, the oldest at the back (top),
/// as plain SVG; `None` when every histogram is empty.
pub fn ridgeline(title: &str, hists: &[Hist], max_rows: usize, width: u32) -> Option<String> {
    let shown: Vec<&Hist> = spread(
        hists
            .iter()
            .filter(|h| h.counts.iter().any(|&c| c > 0) || h.nonfinite > 0)
            .collect(),
        max_rows,
    );
    // The value range: edges of the non-empty bins.
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut peak: f64 = 0.0;
    for h in &shown {
        let bins = h.counts.len().min(h.edges.len().saturating_sub(1));
        for i in (0..bins).filter(|&i| h.counts[i] > 0) {
            let (a, b) = (h.edges[i], h.edges[i + 1]);
            if a.is_finite() && b.is_finite() && b > a {
                lo = lo.min(a);
                hi = hi.max(b);
                peak = peak.max(h.counts[i] as f64 / (b - a));
            }
        }
    }
    if shown.is_empty() {
        return None;
    }
    if !lo.is_finite() || hi <= lo {
        (lo, hi) = (0.0, 1.0);
    }
    let (left, right) = (78.0, 120.0);
    let gap = 24.0;
    let rise = gap * 2.4;
    let top = 30.0 + rise;
    let n = shown.len();
    let base_of = |i: usize| top + i as f64 * gap;
    let axis_y = base_of(n - 1) + 8.0;
    let height = axis_y + 36.0;
    let plot_w = width as f64 - left - right;
    let x = |v: f64| left + (v - lo) / (hi - lo) * plot_w;

    let mut s = String::with_capacity(2048 + n * 1200);
    let bad = nonfinite_caption(hists);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11"><title>{t}</title><desc>{d}</desc><rect width="100%" height="100%" fill="white"/><text x="{cx}" y="18" text-anchor="middle" font-size="15">{t}</text>"#,
        t = esc(title),
        d = esc(&format!(
            "The histograms of {n} steps stacked, oldest at the top{}",
            bad.map_or(String::new(), |c| format!("; {c}"))
        )),
        cx = width as f64 / 2.0,
    );
    for (i, h) in shown.iter().enumerate() {
        let base = base_of(i);
        let bins = h.counts.len().min(h.edges.len().saturating_sub(1));
        let mut d = format!(
            "M{:.1},{base:.1}",
            x(h.edges.first().copied().unwrap_or(lo).max(lo))
        );
        for j in 0..bins {
            let (a, b) = (h.edges[j], h.edges[j + 1]);
            if !(a.is_finite() && b.is_finite() && b > a) {
                continue;
            }
            let dens = if peak > 0.0 {
                h.counts[j] as f64 / (b - a) / peak
            } else {
                0.0
            };
            let y = base - dens * rise;
            let _ = write!(d, " L{:.1},{y:.1} L{:.1},{y:.1}", x(a), x(b));
        }
        let end = h.edges.get(bins).copied().unwrap_or(hi).min(hi);
        let _ = write!(d, " L{:.1},{base:.1} Z", x(end));
        // Older rows lighter, the newest the strongest.
        let t = if n > 1 {
            i as f64 / (n - 1) as f64
        } else {
            1.0
        };
        let _ = write!(
            s,
            r##"<path d="{d}" fill="{}" fill-opacity="0.85" stroke="#7a3e00" stroke-width="1"/><text x="{:.1}" y="{base:.1}" text-anchor="end" fill="#6a7380">step {}</text>"##,
            mix_orange(t),
            left - 6.0,
            h.step
        );
        if h.nonfinite > 0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{base:.1}" fill="#b01e1e" font-weight="bold">▲ {} NaN/Inf</text>"##,
                left + plot_w + 6.0,
                h.nonfinite
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{left:.1}\" x2=\"{:.1}\" y1=\"{axis_y:.1}\" y2=\"{axis_y:.1}\" stroke=\"#6a7380\"/>",
        left + plot_w
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{axis_y:.1}\" y2=\"{1:.1}\" stroke=\"#6a7380\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(v),
            axis_y + 4.0,
            axis_y + 16.0,
            esc(&format_tick(v, (hi - lo) / 4.0))
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#6a7380\">value</text></svg>",
        left + plot_w / 2.0,
        axis_y + 30.0
    );
    Some(s)
}

/// From pale to full orange.
fn mix_orange(t: f64) -> String {
    let (a, b) = ((0xfb, 0xe3, 0xc6), (0xe0, 0x7b, 0x12));
    let m = |p: i32, q: i32| (p as f64 + (q - p) as f64 * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram() {
        let p = percentiles(&[0.0, 1.0, 2.0, 3.0, 4.0], &[1, 1, 1, 1]).unwrap();
        assert_eq!(p[0], 0.0);
        assert_eq!(p[4], 2.0);
        assert_eq!(p[8], 4.0);
        assert!((p[2] - 0.6348).abs() < 1e-9, "{}", p[2]);
        assert!((p[6] - 3.3652).abs() < 1e-9, "{}", p[6]);
        // Empty bins at the ends are not part of the range.
        let p = percentiles(&[0.0, 1.0, 2.0, 3.0], &[0, 5, 0]).unwrap();
        assert_eq!((p[0], p[4], p[8]), (1.0, 1.5, 2.0));
        // Skewed: most of the mass in the first bin.
        let p = percentiles(&[-1.0, 0.0, 1.0], &[9, 1]).unwrap();
        assert!(p[4] < 0.0 && p[7] > -0.5 && p[8] == 1.0);
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "monotone: {p:?}");
        assert!(percentiles(&[0.0, 1.0], &[0]).is_none());
        assert!(percentiles(&[], &[]).is_none());
    }

    fn hists(data: &[(u64, Vec<u64>, u64)]) -> Vec<(u64, Vec<f64>, Vec<u64>, u64)> {
        data.iter()
            .map(|(s, c, n)| {
                let edges = (0..=c.len()).map(|i| i as f64 / 10.0 - 0.5).collect();
                (*s, edges, c.clone(), *n)
            })
            .collect()
    }

    fn borrowed(owned: &[(u64, Vec<f64>, Vec<u64>, u64)]) -> Vec<Hist<'_>> {
        owned
            .iter()
            .map(|(s, e, c, n)| Hist {
                step: *s,
                edges: e,
                counts: c,
                nonfinite: *n,
            })
            .collect()
    }

    #[test]
    fn bands_ridges_and_nonfinite_marks() {
        let owned = hists(&[
            (0, vec![0, 2, 8, 2, 0], 0),
            (100, vec![1, 3, 6, 3, 1], 0),
            (200, vec![0, 1, 4, 1, 0], 7),
        ]);
        let hs = borrowed(&owned);
        assert_eq!(
            nonfinite_caption(&hs).unwrap(),
            "7 non-finite values (NaN/Inf) at 1 step, first at step 200"
        );
        let svg = bands_chart("weights/<fc1>", &hs, (800, 300)).unwrap();
        assert!(svg.contains("<title>weights/&lt;fc1&gt;</title>"));
        assert!(!svg.contains("<fc1>"));
        assert!(svg.contains("±1σ (16–84%)") && svg.contains("median"));
        assert!(svg.contains("non-finite values"));
        assert!(svg.matches("<polygon").count() >= 4, "four nested bands");
        // Hover: one read-out a step, the median and ranges, the NaN count.
        let hover = svg.split(r#"<g class="hover""#).nth(1).unwrap();
        assert_eq!(hover.matches("<title>").count(), 3);
        assert!(hover.contains(
            "<title>step 0: median -0.25, 16–84 % -0.3048 – -0.1952, min–max -0.4 – -0.1</title>"
        ));
        assert!(
            hover.contains("<title>step 200: median -0.25, ")
                && hover.contains(", 7 NaN/Inf</title>")
        );
        // Many steps: at most HOVER_COLUMNS read-outs, every step named.
        let many = hists(
            &(0..1000)
                .map(|i| (i * 10, vec![1, 2, 1], 0))
                .collect::<Vec<_>>(),
        );
        let hs_many = borrowed(&many);
        let svg = bands_chart("w", &hs_many, (800, 300)).unwrap();
        let hover = svg.split(r#"<g class="hover""#).nth(1).unwrap();
        assert!(hover.matches("<title>").count() <= HOVER_COLUMNS);
        assert!(hover.contains("step 9,990: median"));
        let ridge = ridgeline("weights/<fc1>", &hs, RIDGE_ROWS, 800).unwrap();
        assert!(ridge.contains("<title>weights/&lt;fc1&gt;</title>"));
        assert_eq!(ridge.matches("<path").count(), 3);
        assert!(ridge.contains("step 200") && ridge.contains("7 NaN/Inf"));
        assert!(ridgeline("x", &[], RIDGE_ROWS, 800).is_none());
        assert!(bands_chart("x", &[], (800, 300)).is_none());
    }
}
