//! A grouped bar chart as plain SVG: one group per category (a class), one
//! bar per series (a dataset split) in it. Bars are shares of their series'
//! total, so that a training split ten times the size of the validation one
//! still compares class by class; every bar's `<title>` gives the count.

use std::fmt::Write;

use super::svg::{esc, format_value};

/// Bar colours of the series, in order (train blue, validation orange, …).
const COLOURS: [&str; 4] = ["#4b7be0", "#e07b39", "#2e8b57", "#8a5cc2"];

/// One series: its name and a count per category (`None`: not in it).
pub struct BarSeries {
    pub label: String,
    pub counts: Vec<Option<f64>>,
}

/// The chart, or `None` without categories or series.
pub fn grouped_bars(
    title: &str,
    desc: &str,
    categories: &[String],
    series: &[BarSeries],
    width: u32,
) -> Option<String> {
    if categories.is_empty() || series.is_empty() {
        return None;
    }
    let totals: Vec<f64> = series
        .iter()
        .map(|s| s.counts.iter().flatten().filter(|v| v.is_finite()).sum())
        .collect();
    let share = |si: usize, ci: usize| -> Option<f64> {
        let v = series[si].counts.get(ci).copied().flatten()?;
        (totals[si] > 0.0 && v.is_finite()).then(|| v / totals[si])
    };
    let top_share = (0..series.len())
        .flat_map(|si| (0..categories.len()).filter_map(move |ci| share(si, ci)))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    // A round top: the next 5 % (or 1 % under 10 %).
    let unit = if top_share > 0.1 { 0.05 } else { 0.01 };
    let y_max = ((top_share / unit).ceil() * unit).min(1.0);

    let longest = categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(1);
    let rotate = categories.len() > 12 || longest > 8;
    let (left, right, top) = (52.0, 16.0, 44.0);
    let plot_h = 220.0;
    let bottom = if rotate {
        (longest.min(24) as f64 * 5.8 + 18.0).max(40.0)
    } else {
        28.0
    };
    let height = top + plot_h + bottom + 8.0;
    let plot_w = width as f64 - left - right;
    let group_w = plot_w / categories.len() as f64;
    let bar_w = (group_w * 0.8 / series.len() as f64).min(36.0);
    let y = |v: f64| top + plot_h - v / y_max * plot_h;

    let mut s = String::with_capacity(512 * categories.len() + 2048);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11"><title>{t}</title><desc>{d}</desc><rect width="100%" height="100%" fill="white"/><text x="{cx}" y="18" text-anchor="middle" font-size="15">{t}</text>"#,
        cx = width as f64 / 2.0,
        t = esc(title),
        d = esc(desc),
    );
    // Legend.
    let mut lx = left;
    for (i, se) in series.iter().enumerate() {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="26" width="12" height="10" fill="{}"/><text x="{:.1}" y="35">{}</text>"#,
            COLOURS[i % COLOURS.len()],
            lx + 16.0,
            esc(&se.label)
        );
        lx += 16.0 + se.label.chars().count().min(30) as f64 * 6.5 + 18.0;
    }
    // Y grid: 0, ½, top.
    for f in [0.0, 0.5, 1.0] {
        let v = y_max * f;
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e3e6ea\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>",
            left + plot_w,
            left - 5.0,
            yy + 4.0,
            format_value(v * 100.0)
        );
    }
    for (ci, cat) in categories.iter().enumerate() {
        let gx = left + ci as f64 * group_w;
        let x0 = gx + (group_w - bar_w * series.len() as f64) / 2.0;
        let _ = write!(s, "<g><title>class {}</title>", esc(cat));
        for (si, se) in series.iter().enumerate() {
            let x = x0 + si as f64 * bar_w;
            let count = se.counts.get(ci).copied().flatten();
            let sh = share(si, ci);
            let label = match (count, sh) {
                (Some(c), Some(p)) => format!(
                    "class {}, {}: {} ({:.1} %)",
                    cat,
                    se.label,
                    format_value(c),
                    p * 100.0
                ),
                _ => format!("class {}, {}: none", cat, se.label),
            };
            let v = sh.unwrap_or(0.0);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                y(v),
                (bar_w - 1.0).max(1.0),
                (top + plot_h - y(v)).max(0.0),
                COLOURS[si % COLOURS.len()],
                esc(&label)
            );
        }
        s.push_str("</g>");
        let cx = gx + group_w / 2.0;
        let ly = top + plot_h + 14.0;
        let text: String = cat.chars().take(24).collect();
        if rotate {
            let _ = write!(
                s,
                r#"<text x="{cx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-45 {cx:.1} {ly:.1})">{}</text>"#,
                esc(&text)
            );
        } else {
            let _ = write!(
                s,
                r#"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{}</text>"#,
                esc(&text)
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#6a7380\"/></svg>",
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_shares_with_counts_in_titles() {
        let cats = vec!["0".to_string(), "<b>".to_string()];
        let svg = grouped_bars(
            "Class counts",
            "train vs val",
            &cats,
            &[
                BarSeries {
                    label: "train".into(),
                    counts: vec![Some(900.0), Some(100.0)],
                },
                BarSeries {
                    label: "val".into(),
                    counts: vec![Some(50.0), None],
                },
            ],
            900,
        )
        .unwrap();
        assert!(svg.contains("<title>Class counts</title><desc>train vs val</desc>"));
        assert!(svg.contains("class 0, train: 900 (90.0 %)"));
        assert!(svg.contains("class 0, val: 50 (100.0 %)"));
        assert!(svg.contains("class &lt;b&gt;, val: none"));
        assert!(!svg.contains("<b>"));
        assert_eq!(svg.matches("<rect x=").count(), 2 + 4, "legend + bars");
        assert!(grouped_bars("t", "d", &[], &[], 900).is_none());
    }
}
