//! Line charts as SVG, drawn with plotters. Pure: points in, markup out.
//!
//! Non-finite values are never dropped silently: each one is drawn as a red
//! triangle at the top edge (NaN and ±Inf have no place on the axis) and the
//! line breaks there. A curve spanning more than three decades (a diverging
//! loss) is drawn on a log axis unless told otherwise. Optional: TensorBoard's
//! smoothing over the faint raw curve, a wall-time x axis. Each chart has a
//! `<title>`/`<desc>` and invisible hover columns whose `<title>` reads out
//! the values. Text is escaped by the SVG backend and by [`esc`].

use plotters::prelude::*;

use super::axis::{self, XAxis};
use super::raster::{hex, rgb24};

/// One curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// `(x, value)` sorted by x: the step, or on a time axis
    /// ([`Options::x`]) milliseconds since the start.
    pub points: Vec<(u64, f64)>,
}

impl Line {
    /// The x of the points whose value passes `keep`.
    fn xs_where(&self, keep: impl Fn(f64) -> bool) -> Vec<u64> {
        self.points
            .iter()
            .filter(|p| keep(p.1))
            .map(|p| p.0)
            .collect()
    }
}

/// A vertical rule, e.g. where a finding started.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// The x of the rule: a step, or milliseconds on a time axis.
    pub step: u64,
    pub label: String,
}

/// Line colours in order; the last four only for charts of more than eight
/// lines (the compare page's runs).
const PALETTE: [u32; 12] = [
    0x245fc2, 0xe07b12, 0x2e8b57, 0x7a4bc2, 0x17a2b8, 0xc24b8f, 0x8c6d1f, 0x6a7380, 0x1f3a93,
    0x8a9a1b, 0xe377c2, 0x006d5b,
];

/// How many lines get a colour of their own.
pub const COLOURS: usize = PALETTE.len();

/// The colour of the `i`-th line as `#rrggbb` (for a legend beside the
/// chart).
pub fn line_colour(i: usize) -> String {
    hex(rgb24(PALETTE[i % PALETTE.len()]))
}

/// The colour of the `i`-th line.
fn line_rgb(i: usize) -> RGBColor {
    let [r, g, b] = rgb24(PALETTE[i % PALETTE.len()]);
    RGBColor(r, g, b)
}

const BAD: RGBColor = RGBColor(0xb0, 0x1e, 0x1e);

/// A shaded horizontal band, e.g. the healthy range of a ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub lo: f64,
    pub hi: f64,
    pub label: String,
}

/// Choices beyond the defaults of [`line_chart`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `Some(true)`: a log axis over the positive values (values ≤ 0 are
    /// marked at the bottom edge); `Some(false)`: linear; `None`: log when
    /// every finite value is positive and they span more than three decades.
    pub log_y: Option<bool>,
    /// Drawn behind the curves, and kept in view.
    pub band: Option<Band>,
    /// For screen readers (`<desc>`); the title is the `<title>`.
    pub desc: Option<String>,
    /// TensorBoard's smoothing weight ([`super::smooth::ema`]); above 0 the
    /// smoothed curve is drawn over the faint raw one.
    pub smooth: f64,
    /// What the x values are: steps, or milliseconds since the start.
    pub x: XAxis,
}

/// A line chart, or `None` when there is nothing to draw.
pub fn line_chart(
    title: &str,
    lines: &[Line],
    markers: &[Marker],
    size: (u32, u32),
) -> Option<String> {
    line_chart_with(title, lines, markers, size, &Options::default())
}

/// Hover read-out cells (columns × lines) per chart at most: each is a line
/// of a `<title>`, about 50 bytes.
const HOVER_CELLS: usize = 400;
/// The narrowest hover column in pixels.
const HOVER_PX: i32 = 6;

/// [`line_chart`] with [`Options`]. Every point's x is in the unit of
/// `opts.x` (so are the markers'), lines sorted by x.
pub fn line_chart_with(
    title: &str,
    lines: &[Line],
    markers: &[Marker],
    size: (u32, u32),
    opts: &Options,
) -> Option<String> {
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let (x0, x1) = (all().map(|p| p.0).min()?, all().map(|p| p.0).max()?);
    let finite: Vec<f64> = all().map(|p| p.1).filter(|v| v.is_finite()).collect();
    let bounds = |vs: &mut dyn Iterator<Item = f64>| {
        vs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
    };
    let (lo, hi) = bounds(&mut finite.iter().copied());
    let log = match opts.log_y {
        Some(wanted) => wanted && finite.iter().any(|&v| v > 0.0),
        None => !finite.is_empty() && lo > 0.0 && hi / lo > 1e3,
    };
    // On a log axis only the positive values have a place.
    let on_axis = move |v: f64| v.is_finite() && (!log || v > 0.0);
    let (lo, hi) = if log {
        bounds(&mut finite.iter().copied().filter(|&v| v > 0.0))
    } else {
        (lo, hi)
    };
    let t = |v: f64| if log { v.log10() } else { v };
    let (mut y0, mut y1) = if finite.is_empty() {
        (0.0, 1.0)
    } else {
        (t(lo), t(hi))
    };
    if let Some(b) = &opts.band
        && (!log || b.lo > 0.0)
    {
        y0 = y0.min(t(b.lo));
        y1 = y1.max(t(b.hi));
    }
    let (y0, y1, pad) = padded(y0, y1);
    let x1 = x1.max(x0 + 1);
    let smoothed: Vec<Option<Vec<f64>>> = lines
        .iter()
        .map(|l| {
            (opts.smooth > 0.0).then(|| {
                let values: Vec<f64> = l.points.iter().map(|p| p.1).collect();
                super::smooth::ema(&values, opts.smooth)
            })
        })
        .collect();
    let x_ticks = axis::ticks(x0, x1, 6, opts.x);
    let fine = opts.x == XAxis::Time && x_ticks.windows(2).any(|w| w[1] - w[0] < 1000);

    let mut svg = String::new();
    let hover;
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = frame(&root, title)
            .build_cartesian_2d((x0..x1).with_key_points(x_ticks), y0..y1)
            .ok()?;
        let tick = (y1 - y0) / 6.0;
        let y_fmt = |y: &f64| {
            if log {
                format_value(10f64.powf(*y))
            } else {
                format_tick(*y, tick)
            }
        };
        let x_fmt = |x: &u64| axis::label(*x, opts.x, fine);
        let x_name = match opts.x {
            XAxis::Step => "step",
            XAxis::Time => "time since start (h:mm:ss)",
        };
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0xee, 0xf0, 0xf3))
            .bold_line_style(RGBColor(0xe3, 0xe6, 0xea))
            .y_labels(6)
            .x_desc(if log {
                format!("{x_name} (log-scale values)")
            } else {
                x_name.to_string()
            })
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style(("sans-serif", 11))
            .draw()
            .ok()?;

        if let Some(b) = &opts.band
            && (!log || b.lo > 0.0)
        {
            let band = RGBColor(0x2e, 0x8b, 0x57);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, t(b.lo)), (x1, t(b.hi))],
                    band.mix(0.12).filled(),
                )))
                .ok()?
                .label(b.label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], band.mix(0.25).filled())
                });
        }

        let mut any_bad = false;
        let mut any_off = false;
        for (i, (line, smooth)) in lines.iter().zip(&smoothed).enumerate() {
            let color = line_rgb(i);
            // The raw curve: faint under a smoothed one.
            let raw_style = if smooth.is_some() {
                color.mix(0.3).stroke_width(1)
            } else {
                color.stroke_width(2)
            };
            let mut curves = vec![(line.points.clone(), raw_style, smooth.is_none())];
            if let Some(values) = smooth {
                let points = line.points.iter().zip(values).map(|(p, v)| (p.0, *v));
                curves.push((points.collect(), color.stroke_width(2), true));
            }
            let mut named = false;
            for (points, style, legend) in curves {
                let mut labelled = !legend;
                for segment in points.split(|p| !on_axis(p.1)).filter(|s| !s.is_empty()) {
                    let series = chart
                        .draw_series(LineSeries::new(
                            segment.iter().map(|&(x, v)| (x, t(v))),
                            style,
                        ))
                        .ok()?;
                    if !labelled {
                        labelled = true;
                        named = true;
                        series.label(line.label.as_str()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                    }
                }
            }
            // A line with points but none on the axis (every value NaN)
            // is still named in the legend, beside its NaN markers.
            if !named && !line.points.is_empty() {
                chart
                    .draw_series(std::iter::empty::<PathElement<(u64, f64)>>())
                    .ok()?
                    .label(line.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            let bad = line.xs_where(|v| !v.is_finite());
            if !bad.is_empty() {
                let series = chart
                    .draw_series(
                        bad.iter()
                            .map(|&x| TriangleMarker::new((x, y1 - pad * 0.5), 4, BAD.filled())),
                    )
                    .ok()?;
                if !any_bad {
                    any_bad = true;
                    series
                        .label("NaN / Inf")
                        .legend(|(x, y)| TriangleMarker::new((x + 9, y), 4, BAD.filled()));
                }
            }
            // Values a log axis cannot show: hollow circles at the bottom.
            let off = line.xs_where(|v| log && v.is_finite() && v <= 0.0);
            if !off.is_empty() {
                let series = chart
                    .draw_series(
                        off.iter()
                            .map(|&x| Circle::new((x, y0 + pad * 0.5), 3, color.stroke_width(1))),
                    )
                    .ok()?;
                if !any_off {
                    any_off = true;
                    series
                        .label("≤ 0 (off the log axis)")
                        .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.stroke_width(1)));
                }
            }
        }
        for (i, m) in markers
            .iter()
            .filter(|m| (x0..=x1).contains(&m.step))
            .enumerate()
        {
            chart
                .draw_series(LineSeries::new(
                    vec![(m.step, y0), (m.step, y1)],
                    BAD.mix(0.55).stroke_width(1),
                ))
                .ok()?;
            chart
                .draw_series(std::iter::once(Text::new(
                    m.label.clone(),
                    // Stagger the labels so that close onsets stay legible.
                    (m.step, y1 - pad * (1.6 + 1.5 * (i % 4) as f64)),
                    ("sans-serif", 11).into_font().color(&BAD),
                )))
                .ok()?;
        }
        legend(&mut chart)?;
        hover = hover_columns(
            lines,
            &smoothed,
            (x0, x1),
            chart.plotting_area().get_pixel_range(),
            opts.x,
        );
        root.present().ok()?;
    }
    if let Some(end) = svg.rfind("</svg>") {
        svg.insert_str(end, &hover);
    }
    let desc = match &opts.desc {
        Some(d) => d.clone(),
        None => {
            let mut d = describe(lines, opts.x);
            if opts.smooth > 0.0 {
                d.push_str(&format!(
                    "; smoothed (exponential moving average, weight {})",
                    opts.smooth
                ));
            }
            d
        }
    };
    Some(accessible(svg, title, &desc))
}

/// Invisible columns over the plot, each with a `<title>` that reads out,
/// for every line, the point nearest the column's middle (or the column's
/// first NaN/Inf: it is never hidden), its x and its smoothed value — the
/// hover read-out, without JavaScript.
fn hover_columns(
    lines: &[Line],
    smoothed: &[Option<Vec<f64>>],
    (x0, x1): (u64, u64),
    (px, py): (std::ops::Range<i32>, std::ops::Range<i32>),
    axis: XAxis,
) -> String {
    let width = (px.end - px.start).max(1);
    let budget = (HOVER_CELLS / lines.len().max(1)).max(20) as i32;
    let cols = (width / HOVER_PX).clamp(1, budget);
    let x_at = |pixel: i32| {
        let f = f64::from(pixel - px.start) / f64::from(width);
        x0 as f64 + f * (x1 - x0) as f64
    };
    let mut out = String::from("<g class=\"hover\" fill=\"#000\" fill-opacity=\"0\">");
    for c in 0..cols {
        let (a, b) = (
            px.start + width * c / cols,
            px.start + width * (c + 1) / cols,
        );
        let (xa, xb, mid) = (x_at(a), x_at(b), x_at((a + b) / 2));
        let last = c + 1 == cols;
        let mut text = Vec::new();
        for (line, smooth) in lines.iter().zip(smoothed) {
            let pts = &line.points;
            let from = pts.partition_point(|p| (p.0 as f64) < xa);
            let to = if last {
                pts.len()
            } else {
                pts.partition_point(|p| (p.0 as f64) < xb)
            };
            if from >= to {
                continue;
            }
            let i = (from..to)
                .find(|&i| !pts[i].1.is_finite())
                .unwrap_or_else(|| {
                    (from..to)
                        .min_by(|&i, &j| {
                            let d = |k: usize| (pts[k].0 as f64 - mid).abs();
                            d(i).total_cmp(&d(j))
                        })
                        .unwrap_or(from)
                });
            let mut entry = format!(
                "{}: {} at {}{}",
                line.label,
                readout(pts[i].1),
                if axis == XAxis::Step { "step " } else { "" },
                axis::label(pts[i].0, axis, false),
            );
            if let Some(s) = smooth.as_ref().and_then(|s| s.get(i))
                && s.is_finite()
            {
                entry.push_str(&format!(", smoothed {}", readout(*s)));
            }
            text.push(entry);
        }
        if text.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "<rect x=\"{a}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            py.start,
            b - a,
            py.end - py.start,
            esc(&text.join("\n"))
        ));
    }
    out.push_str("</g>");
    out
}

/// A value for the read-out: four significant digits, or the name of a
/// non-finite value.
pub fn readout(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// "train/loss, val/loss over steps 0–999".
fn describe(lines: &[Line], axis: XAxis) -> String {
    let names: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
    let all = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (lo, hi) = (all().min().unwrap_or(0), all().max().unwrap_or(0));
    match axis {
        XAxis::Step => format!("{} over steps {lo}–{hi}", names.join(", ")),
        XAxis::Time => format!(
            "{} over time {}–{} since the start",
            names.join(", "),
            axis::label(lo, axis, false),
            axis::label(hi, axis, false)
        ),
    }
}

/// Gives plotters' markup a `<title>` and `<desc>` (escaped) as its first
/// children and `role="img"`, for screen readers.
pub fn accessible(svg: String, title: &str, desc: &str) -> String {
    let Some(end) = svg.find('>') else { return svg };
    let (open, rest) = svg.split_at(end);
    let open = open.trim_end_matches('/');
    format!(
        "{open} role=\"img\"><title>{}</title><desc>{}</desc>{}",
        esc(title),
        esc(desc),
        &rest[1..]
    )
}

/// Escapes text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick label with enough decimals to tell ticks `tick` apart.
pub fn format_tick(v: f64, tick: f64) -> String {
    // A tick at zero computed as lo + k·step comes out as ±1e-17.
    let v = if tick.is_finite() && v.abs() < tick.abs() * 1e-6 {
        0.0
    } else {
        v
    };
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) || !tick.is_finite() || tick <= 0.0 {
        return format_value(v);
    }
    let decimals = (1.0 - tick.log10().floor()).clamp(0.0, 8.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A short label for an axis value.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A y range with room around the data: when flat, widened by half the
/// value each way (±1 around zero: a constant learning rate of 0.01 stays
/// readable, not a line at "0" between ±1), then 6 % more on each side;
/// with that margin (where markers sit).
pub(crate) fn padded(mut y0: f64, mut y1: f64) -> (f64, f64, f64) {
    if y1 - y0 < 1e-12 {
        let w = if y0.abs() > 1e-12 {
            y0.abs() * 0.5
        } else {
            1.0
        };
        y0 -= w;
        y1 += w;
    }
    let pad = (y1 - y0) * 0.06;
    (y0 - pad, y1 + pad, pad)
}

/// A line chart's frame: its caption, margin and the axes' label areas.
pub(crate) fn frame<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(58);
    builder
}

/// The series' legend, in the top-right corner on a translucent box.
pub(crate) fn legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> Option<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xe3, 0xe6, 0xea))
        .label_font(("sans-serif", 11))
        .draw()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, values: &[f64]) -> Line {
        Line {
            label: label.into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64 * 10, *v))
                .collect(),
        }
    }

    #[test]
    fn draws_lines_legend_markers_and_nonfinite_points() {
        let svg = line_chart(
            "loss",
            &[
                line("train/loss", &[2.3, 1.5, 1.0, f64::NAN, f64::NAN]),
                line("val/<loss>", &[2.4, 1.7, 1.3, 1.2, 1.1]),
            ],
            &[Marker {
                step: 30,
                label: "divergence".into(),
            }],
            (600, 300),
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("train/loss"));
        assert!(svg.contains("val/&lt;loss&gt;"), "labels are escaped");
        assert!(svg.contains("NaN / Inf"));
        assert!(svg.contains("divergence"));
        assert!(
            svg.matches("<polyline").count() >= 3,
            "two curves and the marker"
        );
    }

    #[test]
    fn a_line_of_nan_only_is_still_named_in_the_legend() {
        let svg = line_chart(
            "val/loss",
            &[
                line("healthy", &[1.0, 0.8, 0.6]),
                line("diverged <run>", &[f64::NAN, f64::NAN]),
                line("no points", &[]),
            ],
            &[],
            (600, 300),
        )
        .unwrap();
        assert!(svg.contains(">\ndiverged &lt;run&gt;\n</text>"), "{svg}");
        assert!(svg.contains("NaN / Inf"));
        assert!(
            !svg.contains(">\nno points\n</text>"),
            "an empty line has no entry"
        );
    }

    #[test]
    fn a_diverging_curve_gets_a_log_axis_and_empty_input_no_chart() {
        let svg = line_chart(
            "loss",
            &[line("train/loss", &[2.0, 50.0, 1e6, 1e30])],
            &[],
            (600, 300),
        )
        .unwrap();
        assert!(svg.contains("log-scale"));
        assert!(line_chart("x", &[], &[], (600, 300)).is_none());
        assert!(line_chart("x", &[line("a", &[f64::NAN])], &[], (600, 300)).is_some());
    }

    #[test]
    fn bands_log_axes_and_titles() {
        let svg = line_chart_with(
            "Update ratio <per layer>",
            &[line("update_ratio/<b>", &[1e-3, 2e-3, 5e-4])],
            &[],
            (600, 300),
            &Options {
                log_y: Some(true),
                band: Some(Band {
                    lo: 1e-4,
                    hi: 1e-2,
                    label: "healthy 1e-4..1e-2".into(),
                }),
                ..Options::default()
            },
        )
        .unwrap();
        assert!(svg.contains("log-scale"), "forced log axis");
        assert!(svg.contains("healthy 1e-4..1e-2"));
        assert!(svg.contains("<title>Update ratio &lt;per layer&gt;</title>"));
        assert!(svg.contains("<desc>update_ratio/&lt;b&gt; over steps 0–20</desc>"));
        assert!(!svg.contains("<b>"));
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn log_axes_with_values_at_or_below_zero_do_not_panic() {
        let log = Options {
            log_y: Some(true),
            ..Options::default()
        };
        // Zero and negatives: off the axis, marked at the bottom edge.
        let svg = line_chart_with(
            "acc",
            &[line("val/acc", &[0.0, -0.5, 0.1, 0.5, f64::NAN, 0.9])],
            &[],
            (600, 300),
            &log,
        )
        .unwrap();
        assert!(svg.contains("log-scale") && svg.contains("off the log axis"));
        assert!(svg.contains("NaN / Inf"));
        // Nothing positive: a linear axis, no log-scale claim.
        for values in [&[0.0, -1.0, -2.0][..], &[0.0][..], &[f64::NAN, -1.0][..]] {
            let svg = line_chart_with("x", &[line("x", values)], &[], (600, 300), &log).unwrap();
            assert!(!svg.contains("log-scale"), "{values:?}");
        }
        // Forced linear over a diverging curve.
        let svg = line_chart_with(
            "loss",
            &[line("train/loss", &[2.0, 50.0, 1e6, 1e30])],
            &[],
            (600, 300),
            &Options {
                log_y: Some(false),
                ..Options::default()
            },
        )
        .unwrap();
        assert!(!svg.contains("log-scale"));
    }

    #[test]
    fn smoothing_draws_a_second_curve_and_the_read_out_names_it() {
        let values: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 1.0 } else { 3.0 })
            .collect();
        let lines = [line("train/<loss>", &values)];
        let raw = line_chart_with("loss", &lines, &[], (600, 300), &Options::default()).unwrap();
        let smoothed = line_chart_with(
            "loss",
            &lines,
            &[],
            (600, 300),
            &Options {
                smooth: 0.6,
                ..Options::default()
            },
        )
        .unwrap();
        let curves = |svg: &str| svg.matches("<polyline").count();
        assert_eq!(
            curves(&smoothed),
            curves(&raw) + 1,
            "the smoothed curve over the raw one"
        );
        assert!(smoothed.contains("weight 0.6"), "the description says so");
        // Hover columns: invisible rects whose titles read out step and value.
        let hover = &smoothed[smoothed.find("<g class=\"hover\"").unwrap()..];
        assert!(hover.contains("fill-opacity=\"0\""));
        assert!(hover.contains("<title>train/&lt;loss&gt;: 1 at step 0, smoothed 1</title>"));
        assert!(hover.contains("at step 390"), "the last point has a column");
        assert!(!raw.contains("smoothed"));
    }

    #[test]
    fn the_read_out_shows_non_finite_values_and_times() {
        let mut values = vec![0.5; 300];
        values[150] = f64::NAN;
        let svg = line_chart_with(
            "loss",
            &[Line {
                label: "train/loss".into(),
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as u64 * 1000, *v))
                    .collect(),
            }],
            &[Marker {
                step: 150_000,
                label: "divergence".into(),
            }],
            (600, 300),
            &Options {
                x: XAxis::Time,
                ..Options::default()
            },
        )
        .unwrap();
        assert!(
            svg.contains("train/loss: NaN at 0:02:30"),
            "never hidden by its column"
        );
        assert!(svg.contains("time since start (h:mm:ss)"));
        assert!(svg.contains("\n0:04:00\n"), "clock ticks");
        assert!(svg.contains("over time 0:00:00–0:04:59"));
        assert_eq!(readout(0.000123456), "1.235e-4");
        assert_eq!(readout(2.0), "2");
        assert_eq!(readout(0.45231), "0.4523");
        assert_eq!(readout(1234.56), "1235");
        assert_eq!(readout(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn a_flat_curve_keeps_its_scale() {
        let (y0, y1, _) = padded(0.01, 0.01);
        assert!(y0 > 0.0 && y1 < 0.02, "{y0}..{y1}");
        let (y0, y1, _) = padded(0.0, 0.0);
        assert!(y0 < -1.0 && y1 > 1.0);
        let svg = line_chart("lr", &[line("lr", &[0.01; 5])], &[], (600, 300)).unwrap();
        assert!(svg.contains("\n0.01\n") && !svg.contains("\n-0.5\n"));
    }

    #[test]
    fn value_labels() {
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(1e30), "1e30");
        assert_eq!(format_value(1234.0), "1234");
        assert_eq!(format_tick(0.0995, 0.0005), "0.0995");
        assert_eq!(format_tick(0.1, 0.0005), "0.1");
        assert_eq!(format_tick(250.0, 50.0), "250");
        assert_eq!(format_tick(-1.3e-17, 0.05), "0", "rounding noise at zero");
    }
}
