//! Line charts as SVG, drawn with plotters. Pure: points in, markup out.
//!
//! Non-finite values are never dropped silently: each one is drawn as a red
//! triangle at the top edge (NaN and ±Inf have no place on the axis) and the
//! line breaks there. A curve spanning more than three decades (a diverging
//! loss) is drawn on a log axis. Text is escaped by the SVG backend.

use plotters::prelude::*;

/// One curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// Sorted by step.
    pub points: Vec<(u64, f64)>,
}

/// A vertical rule, e.g. where a finding started.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub step: u64,
    pub label: String,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x24, 0x5f, 0xc2),
    RGBColor(0xe0, 0x7b, 0x12),
    RGBColor(0x2e, 0x8b, 0x57),
    RGBColor(0x7a, 0x4b, 0xc2),
    RGBColor(0x17, 0xa2, 0xb8),
    RGBColor(0xc2, 0x4b, 0x8f),
    RGBColor(0x8c, 0x6d, 0x1f),
    RGBColor(0x6a, 0x73, 0x80),
];
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
    /// `Some(true)`: a log axis whenever every finite value is positive;
    /// `None`: log when the values span more than three decades.
    pub log_y: Option<bool>,
    /// Drawn behind the curves, and kept in view.
    pub band: Option<Band>,
    /// For screen readers (`<desc>`); the title is the `<title>`.
    pub desc: Option<String>,
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

/// [`line_chart`] with [`Options`].
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
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let positive = !finite.is_empty() && lo > 0.0;
    let log = match opts.log_y {
        Some(wanted) => wanted && positive,
        None => positive && hi / lo > 1e3,
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

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(58)
            .build_cartesian_2d(x0..x1, y0..y1)
            .ok()?;
        let tick = (y1 - y0) / 6.0;
        let y_fmt = |y: &f64| {
            if log {
                format_value(10f64.powf(*y))
            } else {
                format_tick(*y, tick)
            }
        };
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0xee, 0xf0, 0xf3))
            .bold_line_style(RGBColor(0xe3, 0xe6, 0xea))
            .x_labels(6)
            .y_labels(6)
            .x_desc(if log {
                "step (log-scale values)"
            } else {
                "step"
            })
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
        for (i, line) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut labelled = false;
            for segment in line
                .points
                .split(|p| !p.1.is_finite())
                .filter(|s| !s.is_empty())
            {
                let series = chart
                    .draw_series(LineSeries::new(
                        segment.iter().map(|&(x, v)| (x, t(v))),
                        color.stroke_width(2),
                    ))
                    .ok()?;
                if !labelled {
                    labelled = true;
                    series.label(line.label.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                }
            }
            let bad: Vec<u64> = line
                .points
                .iter()
                .filter(|p| !p.1.is_finite())
                .map(|p| p.0)
                .collect();
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
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xe3, 0xe6, 0xea))
            .label_font(("sans-serif", 11))
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(accessible(
        svg,
        title,
        opts.desc.as_deref().unwrap_or(&describe(lines)),
    ))
}

/// "train/loss, val/loss over steps 0–999".
fn describe(lines: &[Line]) -> String {
    let names: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
    let all = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    format!(
        "{} over steps {}–{}",
        names.join(", "),
        all().min().unwrap_or(0),
        all().max().unwrap_or(0)
    )
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

/// A y range with room around the data: widened to ±1 when flat, then 6 %
/// more on each side; with that margin (where markers sit).
pub(crate) fn padded(mut y0: f64, mut y1: f64) -> (f64, f64, f64) {
    if y1 - y0 < 1e-12 {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let pad = (y1 - y0) * 0.06;
    (y0 - pad, y1 + pad, pad)
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
                desc: None,
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
