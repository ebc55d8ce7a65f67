//! Layers × steps heatmaps (gradient norms, dead and saturated fractions) as
//! plain SVG: plotters has no colour legend, and a heatmap is only rects.
//!
//! Rows are layers, input side on top (the caller orders them); columns are
//! equal step bins over the run. A cell is the median of the points in its
//! bin — fed envelope reads (first/last/min/max per bucket), so a few points
//! a column; a cell holding any NaN or ±Inf is drawn in [`NONFINITE`], which
//! no value colour comes near; a bin without points stays [`EMPTY`].

use std::fmt::Write;

use super::raster::{hex, ramp_rgb};
use super::svg::{Marker, esc, format_value, readout};
use crate::diagnostics::fmt_step;

/// Colour of a cell holding NaN or ±Inf.
pub const NONFINITE: &str = "#e4007c";
/// Colour of the rule at a finding's onset (the line charts' red).
const MARKER: &str = "#b01e1e";
/// Colour of a bin with no point.
pub const EMPTY: &str = "#f1f2f4";

/// Viridis, sampled at nine stops (dark violet → yellow): perceptually
/// uniform, readable in grey and by most colour-blind readers.
const VIRIDIS: [u32; 9] = [
    0x440154, 0x472c7a, 0x3b518b, 0x2c718e, 0x21908d, 0x27ad81, 0x5cc863, 0xaadc32, 0xfde725,
];

/// At most this many decades on a log scale: below, everything is "tiny".
const MAX_DECADES: f64 = 12.0;

/// How values map onto the colour ramp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// log10, from `lo` to `hi` (both > 0); values ≤ `lo` (and 0) get the
    /// first colour.
    Log { lo: f64, hi: f64 },
    /// Linear from `lo` to `hi`, clamped.
    Linear { lo: f64, hi: f64 },
}

impl Scale {
    /// A log scale over the positive finite values, at most
    /// [`MAX_DECADES`] wide (the top kept), whole decades.
    pub fn log_of(values: impl IntoIterator<Item = f64>) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Scale::Log { lo: 1e-3, hi: 1.0 };
        }
        let mut top = hi.log10().ceil();
        let mut bottom = lo.log10().floor().max(top - MAX_DECADES);
        if top - bottom < 1.0 {
            bottom -= 0.5;
            top += 0.5;
        }
        Scale::Log {
            lo: 10f64.powf(bottom),
            hi: 10f64.powf(top),
        }
    }

    /// Where `v` (finite) falls on the ramp, 0..=1.
    pub fn position(&self, v: f64) -> f64 {
        let t = match *self {
            Scale::Log { lo, hi } => {
                if v <= lo {
                    0.0
                } else {
                    (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
                }
            }
            Scale::Linear { lo, hi } => (v - lo) / (hi - lo),
        };
        if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) }
    }

    /// The colour of finite `v`, as `#rrggbb`.
    pub fn color(&self, v: f64) -> String {
        ramp(self.position(v))
    }

    /// Legend ticks: (position 0..=1, label).
    fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Log { lo, hi } => {
                let (a, b) = (lo.log10(), hi.log10());
                let span = b - a;
                let step = (span / 6.0).ceil().max(1.0);
                let mut out = Vec::new();
                let mut d = a.ceil();
                while d <= b + 1e-9 {
                    out.push(((d - a) / span, format_value(10f64.powf(d))));
                    d += step;
                }
                out
            }
            Scale::Linear { lo, hi } => (0..=4)
                .map(|i| {
                    let t = i as f64 / 4.0;
                    (t, format_value(lo + (hi - lo) * t))
                })
                .collect(),
        }
    }
}

/// The ramp's colour at `t` in 0..=1, quantised to 64 levels (so that equal
/// neighbours merge into one rect).
pub fn ramp(t: f64) -> String {
    let t = (t.clamp(0.0, 1.0) * 63.0).round() / 63.0;
    hex(ramp_rgb(&VIRIDIS, t))
}

/// One cell of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Empty,
    Value(f64),
    NonFinite,
}

/// One row: a layer and its points, sorted by step.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub points: Vec<(u64, f64)>,
}

/// The step bins: `cols` bins of `width` steps from `first`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bins {
    pub first: u64,
    pub width: u64,
    pub cols: usize,
}

impl Bins {
    /// At most `max_cols` equal bins over `first..=last`.
    pub fn over(first: u64, last: u64, max_cols: usize) -> Bins {
        let span = last.saturating_sub(first) + 1;
        let width = span.div_ceil(max_cols.max(1) as u64).max(1);
        Bins {
            first,
            width,
            cols: span.div_ceil(width) as usize,
        }
    }

    fn col(&self, step: u64) -> Option<usize> {
        let c = (step.checked_sub(self.first)? / self.width) as usize;
        (c < self.cols).then_some(c)
    }
}

/// The cells of a row: each bin's median, or non-finite when the bin holds
/// a NaN or ±Inf.
pub fn cells(points: &[(u64, f64)], bins: &Bins) -> Vec<Cell> {
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); bins.cols];
    let mut bad = vec![false; bins.cols];
    for &(step, v) in points {
        let Some(c) = bins.col(step) else { continue };
        if v.is_finite() {
            values[c].push(v);
        } else {
            bad[c] = true;
        }
    }
    values
        .into_iter()
        .zip(bad)
        .map(|(mut vs, bad)| {
            if bad {
                Cell::NonFinite
            } else if vs.is_empty() {
                Cell::Empty
            } else {
                vs.sort_by(f64::total_cmp);
                let n = vs.len();
                Cell::Value(if n % 2 == 1 {
                    vs[n / 2]
                } else {
                    (vs[n / 2 - 1] + vs[n / 2]) / 2.0
                })
            }
        })
        .collect()
}

/// What to draw.
pub struct Heatmap<'a> {
    pub title: &'a str,
    /// A sentence for screen readers (`<desc>`).
    pub desc: &'a str,
    /// The legend's caption, e.g. `‖∇w‖ (log)`.
    pub legend: &'a str,
    pub rows: &'a [Row],
    /// `None`: a log scale over the cells' values.
    pub scale: Option<Scale>,
    pub max_cols: usize,
    /// The columns, when the caller's reads are bucketed (e.g. chunk-aligned
    /// envelopes); `None`: at most `max_cols` equal bins over the steps.
    pub bins: Option<Bins>,
    pub width: u32,
}

/// The heatmap's SVG, or `None` without any point.
pub fn heatmap(h: &Heatmap) -> Option<String> {
    heatmap_marked(h, &[])
}

/// [`heatmap`] with vertical rules at `markers` (steps), e.g. where a
/// finding started, each labelled on a white tab at the top of the plot.
pub fn heatmap_marked(h: &Heatmap, markers: &[Marker]) -> Option<String> {
    let all = || h.rows.iter().flat_map(|r| r.points.iter());
    let first = all().map(|p| p.0).min()?;
    let last = all().map(|p| p.0).max()?;
    let bins = h
        .bins
        .unwrap_or_else(|| Bins::over(first, last, h.max_cols));
    let grid: Vec<Vec<Cell>> = h.rows.iter().map(|r| cells(&r.points, &bins)).collect();
    let scale = h.scale.unwrap_or_else(|| {
        Scale::log_of(grid.iter().flatten().filter_map(|c| match c {
            Cell::Value(v) => Some(*v),
            _ => None,
        }))
    });

    let n = h.rows.len();
    let longest = h
        .rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    let left = (longest as f64 * 6.2 + 14.0).clamp(50.0, 190.0);
    let right = 14.0;
    let top = 34.0;
    let row_h = (320.0 / n as f64).clamp(5.0, 26.0);
    let plot_w = h.width as f64 - left - right;
    let plot_h = row_h * n as f64;
    let col_w = plot_w / bins.cols as f64;
    let axis_y = top + plot_h;
    let legend_y = axis_y + 40.0;
    let height = legend_y + 34.0;
    let mut s = String::with_capacity(64 * n * 8 + 4096);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" role="img" font-family="sans-serif" font-size="11"><title>{title}</title><desc>{desc}</desc><rect width="100%" height="100%" fill="white"/><text x="{cx}" y="18" text-anchor="middle" font-size="15">{title}</text>"#,
        w = h.width,
        cx = h.width as f64 / 2.0,
        title = esc(h.title),
        desc = esc(h.desc),
    );
    // Label every k-th row so that labels never overlap.
    let every = (11.0 / row_h).ceil().max(1.0) as usize;
    for (i, (row, cells)) in h.rows.iter().zip(&grid).enumerate() {
        let y = top + i as f64 * row_h;
        let _ = write!(s, "<g><title>{}</title>", esc(&row.label));
        let mut c = 0;
        while c < cells.len() {
            let fill = fill_of(cells[c], &scale);
            let mut end = c + 1;
            while end < cells.len() && fill_of(cells[end], &scale) == fill {
                end += 1;
            }
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
                left + c as f64 * col_w,
                y,
                (end - c) as f64 * col_w + 0.3,
                row_h + 0.3,
            );
            c = end;
        }
        s.push_str("</g>");
        if i % every == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" dominant-baseline="middle" font-size="{}">{}</text>"#,
                left - 5.0,
                y + row_h / 2.0,
                if row_h < 11.0 { 10 } else { 11 },
                esc(&row.label)
            );
        }
    }
    let _ = write!(
        s,
        "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{plot_w:.1}\" height=\"{plot_h:.1}\" fill=\"none\" stroke=\"#c9ced6\"/>"
    );
    hover_blocks(&mut s, h.rows, &grid, &bins, (left, top, col_w, row_h));
    let end = bins.first as f64 + (bins.cols as u64 * bins.width) as f64;
    for (i, m) in markers
        .iter()
        .filter(|m| (bins.first as f64..end).contains(&(m.step as f64)))
        .enumerate()
    {
        let x = left + (m.step - bins.first) as f64 / bins.width as f64 * col_w;
        // Staggered like the line charts' labels, as far as the rows allow.
        let y = top + 2.0 + 13.0 * (i % 3) as f64;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top:.1}\" y2=\"{axis_y:.1}\" stroke=\"#fff\" stroke-width=\"3\" opacity=\"0.7\"/><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top:.1}\" y2=\"{axis_y:.1}\" stroke=\"{MARKER}\" stroke-width=\"1.5\"/>"
        );
        if y + 12.0 <= axis_y {
            let w = m.label.chars().count() as f64 * 6.0 + 6.0;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"12\" fill=\"#fff\" opacity=\"0.85\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{MARKER}\">{}</text>",
                x + 2.0,
                x + 5.0,
                y + 9.5,
                esc(&m.label)
            );
        }
    }
    // Step axis: about six ticks at bin starts.
    let ticks = 6.min(bins.cols);
    for t in 0..=ticks {
        let col = (t * bins.cols).checked_div(ticks).unwrap_or(0);
        let x = left + col as f64 * col_w;
        let step = bins.first + col as u64 * bins.width;
        let anchor = match t {
            0 => "start",
            t if t == ticks => "end",
            _ => "middle",
        };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{axis_y:.1}\" y2=\"{:.1}\" stroke=\"#6a7380\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{step}</text>",
            axis_y + 4.0,
            axis_y + 16.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#6a7380">step (input side on top; {} steps a column)</text>"##,
        left + plot_w / 2.0,
        axis_y + 30.0,
        bins.width
    );
    // Legend: the ramp, its ticks, the non-finite and empty swatches.
    let lw = (plot_w * 0.45).min(320.0);
    let lx = left;
    let _ = write!(
        s,
        r#"<defs><linearGradient id="ramp" x1="0" x2="1" y1="0" y2="0">"#
    );
    for i in 0..=8 {
        let t = i as f64 / 8.0;
        let _ = write!(s, r#"<stop offset="{t}" stop-color="{}"/>"#, ramp(t));
    }
    let _ = write!(
        s,
        "</linearGradient></defs><text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"#1d232b\">{}</text><rect x=\"{lx:.1}\" y=\"{legend_y:.1}\" width=\"{lw:.1}\" height=\"10\" fill=\"url(#ramp)\"/>",
        legend_y - 4.0,
        esc(h.legend)
    );
    for (t, label) in scale.ticks() {
        let x = lx + t * lw;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1d232b\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
            legend_y + 10.0,
            legend_y + 13.0,
            legend_y + 24.0,
            esc(&label)
        );
    }
    let sx = lx + lw + 24.0;
    let _ = write!(
        s,
        "<rect x=\"{sx:.1}\" y=\"{legend_y:.1}\" width=\"12\" height=\"10\" fill=\"{NONFINITE}\"/><text x=\"{:.1}\" y=\"{:.1}\">NaN / Inf</text><rect x=\"{:.1}\" y=\"{legend_y:.1}\" width=\"12\" height=\"10\" fill=\"{EMPTY}\" stroke=\"#c9ced6\"/><text x=\"{:.1}\" y=\"{:.1}\">no data</text></svg>",
        sx + 16.0,
        legend_y + 9.0,
        sx + 90.0,
        sx + 106.0,
        legend_y + 9.0
    );
    Some(s)
}

fn fill_of(c: Cell, scale: &Scale) -> String {
    match c {
        Cell::Empty => EMPTY.to_string(),
        Cell::NonFinite => NONFINITE.to_string(),
        Cell::Value(v) => scale.color(v),
    }
}

/// Hover read-outs at most (the line charts' columns are as many): a row's
/// columns are grouped into blocks so that a deep model's heatmap stays
/// light. The weight heatmap keeps to it too.
pub const HOVER_BLOCKS: usize = 600;

/// Opens the layer of hover read-outs: invisible rects drawn over the cells.
pub const HOVER_OPEN: &str = r##"<g class="hover" fill="#000" fill-opacity="0">"##;

/// One hover read-out: an invisible rect at `x, y, width, height` whose
/// `<title>` is `text` (escaped here).
pub fn hover_rect(s: &mut String, (x, y, w, h): (f64, f64, f64, f64), text: &str) {
    let _ = write!(
        s,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}"><title>{}</title></rect>"#,
        esc(text)
    );
}

/// Invisible blocks over the cells, each with a `<title>` that reads out
/// its layer, its steps and the range of its cells' values (or that a cell
/// holds NaN or Inf) — the hover read-out, without JavaScript.
fn hover_blocks(
    s: &mut String,
    rows: &[Row],
    grid: &[Vec<Cell>],
    bins: &Bins,
    (left, top, col_w, row_h): (f64, f64, f64, f64),
) {
    let per_row = (HOVER_BLOCKS / rows.len().max(1)).clamp(1, bins.cols.max(1));
    let span = bins.cols.div_ceil(per_row);
    s.push_str(HOVER_OPEN);
    for (i, (row, cells)) in rows.iter().zip(grid).enumerate() {
        for start in (0..cells.len()).step_by(span.max(1)) {
            let block = &cells[start..(start + span).min(cells.len())];
            let (mut lo, mut hi, mut bad) = (f64::INFINITY, f64::NEG_INFINITY, false);
            for c in block {
                match c {
                    Cell::Value(v) => {
                        lo = lo.min(*v);
                        hi = hi.max(*v);
                    }
                    Cell::NonFinite => bad = true,
                    Cell::Empty => {}
                }
            }
            if !bad && lo > hi {
                continue;
            }
            let from = bins.first + start as u64 * bins.width;
            let to = from + block.len() as u64 * bins.width - 1;
            let mut text = format!("{}, steps {}–{}: ", row.label, fmt_step(from), fmt_step(to));
            if lo <= hi {
                text.push_str(&readout(lo));
                if hi > lo {
                    text.push_str(" – ");
                    text.push_str(&readout(hi));
                }
            }
            if bad {
                text.push_str(if lo <= hi { ", and NaN/Inf" } else { "NaN/Inf" });
            }
            hover_rect(
                s,
                (
                    left + start as f64 * col_w,
                    top + i as f64 * row_h,
                    block.len() as f64 * col_w,
                    row_h,
                ),
                &text,
            );
        }
    }
    s.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_scales() {
        let log = Scale::log_of([1e-6, 3e-3, 0.5]);
        assert_eq!(log, Scale::Log { lo: 1e-6, hi: 1.0 });
        assert_eq!(log.position(1e-6), 0.0);
        assert_eq!(log.position(0.0), 0.0, "zero is the bottom of a log scale");
        assert!((log.position(1e-3) - 0.5).abs() < 1e-12);
        assert_eq!(log.position(10.0), 1.0);
        assert_eq!(log.color(1e-9), "#440154");
        assert_eq!(log.color(1.0), "#fde725");
        let lin = Scale::Linear { lo: 0.0, hi: 1.0 };
        assert!((lin.position(0.25) - 0.25).abs() < 1e-12);
        assert_eq!(lin.position(-1.0), 0.0);
        // A huge range keeps the top twelve decades.
        assert_eq!(
            Scale::log_of([1e-30, 1e2]),
            Scale::Log { lo: 1e-10, hi: 1e2 }
        );
        // No positive values: a default range, never NaN.
        assert!(matches!(Scale::log_of([0.0]), Scale::Log { .. }));
    }

    #[test]
    fn bins_and_cells() {
        let bins = Bins::over(0, 99, 10);
        assert_eq!((bins.width, bins.cols), (10, 10));
        assert_eq!(Bins::over(0, 4, 10).cols, 5);
        let mut pts: Vec<(u64, f64)> = (0..100).map(|s| (s, s as f64)).collect();
        pts[35].1 = f64::NAN;
        pts.retain(|p| !(60..70).contains(&p.0));
        let c = cells(&pts, &bins);
        assert_eq!(c[0], Cell::Value(4.5));
        assert_eq!(c[3], Cell::NonFinite, "one NaN marks the whole cell");
        assert_eq!(c[6], Cell::Empty);
        assert_eq!(c[9], Cell::Value(94.5));
    }

    #[test]
    fn onsets_are_marked_on_the_step_axis() {
        let rows = vec![Row {
            label: "fc1".into(),
            points: (0..100).map(|s| (s, 0.5)).collect(),
        }];
        let h = Heatmap {
            title: "Dead units",
            desc: "",
            legend: "fraction",
            rows: &rows,
            scale: Some(Scale::Linear { lo: 0.0, hi: 1.0 }),
            max_cols: 50,
            bins: None,
            width: 800,
        };
        let marker = |step: u64, label: &str| Marker {
            step,
            label: label.into(),
        };
        let plain = heatmap(&h).unwrap();
        assert!(!plain.contains(MARKER));
        let svg = heatmap_marked(&h, &[marker(40, "<dead_relu>"), marker(5000, "later")]).unwrap();
        assert!(svg.contains(MARKER) && svg.contains("&lt;dead_relu&gt;"));
        assert!(!svg.contains("later"), "outside the steps drawn");
        assert!(!svg.contains("<dead_relu>"));
    }

    #[test]
    fn draws_rows_legend_and_escapes() {
        let rows = vec![
            Row {
                label: "fc1".into(),
                points: (0..50).map(|s| (s, 1e-2)).collect(),
            },
            Row {
                label: "<script>alert(1)</script>".into(),
                points: (0..50)
                    .map(|s| (s, if s == 20 { f64::INFINITY } else { 1e-6 }))
                    .collect(),
            },
        ];
        let svg = heatmap(&Heatmap {
            title: "Gradient norm",
            desc: "per layer",
            legend: "‖∇w‖",
            rows: &rows,
            scale: None,
            max_cols: 25,
            bins: None,
            width: 800,
        })
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>Gradient norm</title><desc>per layer</desc>"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains(NONFINITE), "the Inf cell");
        assert!(svg.contains("1e-6") || svg.contains("0.000001"), "{svg}");
        // Equal neighbours merge: a constant row is one rect, the one with
        // an Inf three.
        let first = svg.split("<g>").nth(1).unwrap();
        assert_eq!(first.matches("<rect").count(), 1);
        let second = svg.split("<g>").nth(2).unwrap();
        assert_eq!(
            second
                .split("</g>")
                .next()
                .unwrap()
                .matches("<rect")
                .count(),
            3
        );
        let empty: Vec<Row> = vec![];
        assert!(
            heatmap(&Heatmap {
                rows: &empty,
                ..Heatmap {
                    title: "",
                    desc: "",
                    legend: "",
                    rows: &rows,
                    scale: None,
                    max_cols: 10,
                    bins: None,
                    width: 400
                }
            })
            .is_none()
        );
    }

    #[test]
    fn hover_reads_out_layer_steps_and_values_in_bounded_blocks() {
        let row = |label: &str, f: &dyn Fn(u64) -> f64| Row {
            label: label.into(),
            points: (0..100).map(|i| (i * 10, f(i))).collect(),
        };
        let rows = vec![
            row("fc<1>", &|i| if i == 50 { f64::NAN } else { 0.5 }),
            row("fc2", &|i| 1.0 + i as f64),
        ];
        let draw = |rows: &[Row]| {
            heatmap(&Heatmap {
                title: "g",
                desc: "",
                legend: "",
                rows,
                scale: None,
                max_cols: 100,
                bins: None,
                width: 900,
            })
            .unwrap()
        };
        let svg = draw(&rows);
        let hover = svg.split(r#"<g class="hover""#).nth(1).unwrap();
        let hover = hover.split("</g>").next().unwrap();
        // Few rows: one block a column, each naming its layer (escaped).
        assert_eq!(hover.matches("<title>").count(), 200);
        assert!(hover.contains("<title>fc&lt;1&gt;, steps 500–509: NaN/Inf</title>"));
        assert!(hover.contains("<title>fc&lt;1&gt;, steps 0–9: 0.5</title>"));
        assert!(hover.contains("<title>fc2, steps 990–999: 100</title>"));
        // A deep model: blocks of several columns with the range of values.
        let deep: Vec<Row> = (0..64)
            .map(|l| row(&format!("l{l}"), &|i| 1.0 + i as f64))
            .collect();
        let svg = draw(&deep);
        let titles = svg
            .split(r#"<g class="hover""#)
            .nth(1)
            .unwrap()
            .matches("<title>")
            .count();
        assert!(titles <= HOVER_BLOCKS + 64, "{titles}");
        assert!(svg.contains("<title>l0, steps 0–119: 1 – 12</title>"));
    }
}
