//! A weight matrix (a `tensor` record) as a heatmap: rows × columns of the
//! matrix (see [`raster::as_matrix`] for higher ranks), block means when it
//! is bigger than [`MAX_CELLS`] a side, a diverging colour scale centred at
//! 0 (blue negative, white 0, red positive, symmetric around 0 so that the
//! sign is the hue), NaN and ±Inf in [`NONFINITE`] as on the gradient-flow
//! heatmap.
//!
//! The cells are one indexed PNG inside the SVG (title, axes and legend as
//! SVG text), so a 256 × 256 map weighs tens of kilobytes, not megabytes.

use std::fmt::Write;

use super::heatmap::{Cell, EMPTY, HOVER_BLOCKS, HOVER_OPEN, NONFINITE, hover_rect};
use super::raster::{self, Grid, hex};
use super::svg::{esc, format_value, readout};

/// Cells drawn a side at most.
pub const MAX_CELLS: usize = 256;
/// The narrowest drawing: the legend's width.
const MIN_WIDTH: u32 = 560;

/// RdBu (ColorBrewer, 11 classes), negative end first.
const RDBU: [u32; 11] = [
    0x053061, 0x2166ac, 0x4393c3, 0x92c5de, 0xd1e5f0, 0xf7f7f7, 0xfddbc7, 0xf4a582, 0xd6604d,
    0xb2182b, 0x67001f,
];

/// Colour levels of the scale: odd, so that 0 has a level of its own.
const LEVELS: usize = 63;
const NONFINITE_INDEX: u8 = LEVELS as u8;
const EMPTY_INDEX: u8 = LEVELS as u8 + 1;

/// The level (0..LEVELS) of `t` in −1..=1 (clamped); 0 is the middle one.
pub fn level(t: f64) -> usize {
    let t = if t.is_nan() { 0.0 } else { t.clamp(-1.0, 1.0) };
    (((t + 1.0) / 2.0) * (LEVELS - 1) as f64).round() as usize
}

/// The colour of level `i`.
fn level_rgb(i: usize) -> [u8; 3] {
    raster::ramp_rgb(&RDBU, i as f64 / (LEVELS - 1) as f64)
}

fn palette() -> Vec<[u8; 3]> {
    let mut p: Vec<[u8; 3]> = (0..LEVELS).map(level_rgb).collect();
    p.push(raster::rgb(NONFINITE));
    p.push(raster::rgb(EMPTY));
    p
}

/// The colour scale's half-width: the largest |cell|, 1 when every cell is
/// 0 or none is finite.
pub fn limit(grid: &Grid) -> f64 {
    match grid.range() {
        Some((lo, hi)) if lo.abs().max(hi.abs()) > 0.0 => lo.abs().max(hi.abs()),
        _ => 1.0,
    }
}

/// The cells as palette indices, row-major.
pub fn indices(grid: &Grid, limit: f64) -> Vec<u8> {
    grid.cells
        .iter()
        .map(|c| match c {
            Cell::Value(v) => level(v / limit) as u8,
            Cell::NonFinite => NONFINITE_INDEX,
            Cell::Empty => EMPTY_INDEX,
        })
        .collect()
}

/// A drawn weight heatmap and what the page says about it.
#[derive(Debug, Clone)]
pub struct WeightHeatmap {
    pub svg: String,
    /// The matrix drawn: rows × columns of the values.
    pub matrix: (usize, usize),
    /// The cells drawn, and the values a cell stands for.
    pub cells: (usize, usize),
    pub block: (usize, usize),
    /// The smallest and largest finite value.
    pub range: Option<(f64, f64)>,
    /// The colour scale runs from −limit to +limit.
    pub limit: f64,
    /// NaN, +Inf, −Inf counts among the values.
    pub nonfinite: (usize, usize, usize),
}

/// The heatmap of `values` (row-major, `shape`), or `None` when they do not
/// fill the shape.
pub fn weight_heatmap(
    title: &str,
    shape: &[u64],
    values: &[f64],
    width: u32,
) -> Option<WeightHeatmap> {
    let (rows, cols) = raster::as_matrix(shape);
    if rows == 0 || cols == 0 || values.len() != rows * cols {
        return None;
    }
    let grid = raster::block_means(values, rows, cols, MAX_CELLS, MAX_CELLS);
    let lim = limit(&grid);
    let png = raster::indexed_png(grid.cols, grid.rows, &palette(), &indices(&grid, lim));
    let range = raster::finite_range(values.iter().copied());
    let nonfinite = raster::nonfinite_counts(values);
    let bad = nonfinite.0 + nonfinite.1 + nonfinite.2;

    let (left, right, top) = (64.0, 20.0, 34.0);
    let max_w = width as f64 - left - right;
    let max_h = 520.0;
    let s = (max_w / grid.cols as f64)
        .min(max_h / grid.rows as f64)
        .min(48.0);
    let plot_w = (s * grid.cols as f64).max(28.0);
    let plot_h = (s * grid.rows as f64).max(28.0);
    // As wide as the matrix drawn (a small one is not stretched over the
    // page), but room for the legend.
    let width = ((left + plot_w + right).ceil() as u32).clamp(MIN_WIDTH, width);
    let axis_y = top + plot_h;
    let legend_y = axis_y + 44.0;
    let height = legend_y + 34.0;
    let shape_text = shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" × ");
    let desc = format!(
        "Heatmap of a {shape_text} tensor drawn as {rows} rows by {cols} columns{}; diverging colour scale from {} (blue) through 0 (white) to {} (red); values from {}; {bad} NaN or Inf values in magenta",
        block_note(grid.block, ", each cell the mean of"),
        format_value(-lim),
        format_value(lim),
        range.map_or("none finite".to_string(), |(lo, hi)| format!(
            "{} to {}",
            format_value(lo),
            format_value(hi)
        )),
    );
    let mut s_out = String::with_capacity(png.len() * 4 / 3 + 4096);
    let _ = write!(
        s_out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11"><title>{t}</title><desc>{d}</desc><rect width="100%" height="100%" fill="white"/><text x="{cx}" y="18" text-anchor="middle" font-size="15">{t}</text>"#,
        cx = width as f64 / 2.0,
        t = esc(title),
        d = esc(&desc),
    );
    let _ = write!(
        s_out,
        r#"<image class="cells" x="{left}" y="{top}" width="{plot_w:.1}" height="{plot_h:.1}" preserveAspectRatio="none" style="image-rendering:crisp-edges;image-rendering:pixelated" href="{}"/>"#,
        raster::png_data_url(&png)
    );
    let _ = write!(
        s_out,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w:.1}\" height=\"{plot_h:.1}\" fill=\"none\" stroke=\"#c9ced6\"/>"
    );
    hover(
        &mut s_out,
        values,
        (rows, cols),
        &grid,
        (
            left,
            top,
            plot_w / grid.cols as f64,
            plot_h / grid.rows as f64,
        ),
    );
    // Row and column indices of the source matrix at the corners.
    let _ = write!(
        s_out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" dominant-baseline=\"hanging\">0</text><text x=\"{:.1}\" y=\"{axis_y:.1}\" text-anchor=\"end\">{}</text><text x=\"{left}\" y=\"{:.1}\">0</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        left - 5.0,
        top,
        left - 5.0,
        rows - 1,
        axis_y + 14.0,
        left + plot_w,
        axis_y + 14.0,
        cols - 1,
    );
    let _ = write!(
        s_out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#6a7380">{rows} rows × {cols} columns{}</text>"##,
        left + plot_w / 2.0,
        axis_y + 28.0,
        block_note(grid.block, " · a cell is the mean of")
    );
    // Legend: the diverging ramp with −limit, 0, +limit, and the NaN swatch.
    let lw = (width as f64 - left - 150.0).min(320.0);
    let lx = left;
    s_out.push_str(r#"<defs><linearGradient id="diverging" x1="0" x2="1" y1="0" y2="0">"#);
    for i in 0..=10 {
        let t = i as f64 / 10.0;
        let _ = write!(
            s_out,
            r#"<stop offset="{t}" stop-color="{}"/>"#,
            hex(level_rgb(((LEVELS - 1) as f64 * t).round() as usize))
        );
    }
    let _ = write!(
        s_out,
        "</linearGradient></defs><text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"#1d232b\">{} (colour scale centred at 0)</text><rect x=\"{lx:.1}\" y=\"{legend_y:.1}\" width=\"{lw:.1}\" height=\"10\" fill=\"url(#diverging)\" stroke=\"#c9ced6\"/>",
        legend_y - 4.0,
        if grid.block == (1, 1) {
            "value"
        } else {
            "cell mean"
        },
    );
    for (t, v) in [(0.0, -lim), (0.5, 0.0), (1.0, lim)] {
        let x = lx + t * lw;
        let _ = write!(
            s_out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1d232b\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
            legend_y + 10.0,
            legend_y + 13.0,
            legend_y + 24.0,
            esc(&format_value(v))
        );
    }
    let sx = lx + lw + 28.0;
    let _ = write!(
        s_out,
        "<rect x=\"{sx:.1}\" y=\"{legend_y:.1}\" width=\"12\" height=\"10\" fill=\"{NONFINITE}\"/><text x=\"{:.1}\" y=\"{:.1}\">NaN / Inf: {bad}</text></svg>",
        sx + 16.0,
        legend_y + 9.0,
    );
    Some(WeightHeatmap {
        svg: s_out,
        matrix: (rows, cols),
        cells: (grid.rows, grid.cols),
        block: grid.block,
        range,
        limit: lim,
        nonfinite,
    })
}

/// Drawn cells a side of a hover block: the fewest that keep a `rows ×
/// cols` grid of cells to at most [`HOVER_BLOCKS`] blocks.
fn hover_side(rows: usize, cols: usize) -> usize {
    (1..)
        .find(|k| rows.div_ceil(*k) * cols.div_ceil(*k) <= HOVER_BLOCKS)
        .expect("a block as big as the grid fits")
}

/// `"row 3"` or `"rows 0–3"` (`[from, to)` of the matrix).
fn index_text(one: &str, (from, to): (usize, usize)) -> String {
    if to - from == 1 {
        format!("{one} {from}")
    } else {
        format!("{one}s {from}–{}", to - 1)
    }
}

/// Invisible squares of cells over the heatmap, at most [`HOVER_BLOCKS`],
/// each with a `<title>` that reads out the rows and columns of the matrix
/// it covers, the range of their values (not of the cell means) and their
/// NaN and Inf counts — the hover read-out, without JavaScript. One pass
/// over the values.
fn hover(
    s: &mut String,
    values: &[f64],
    (rows, cols): (usize, usize),
    grid: &Grid,
    (left, top, cell_w, cell_h): (f64, f64, f64, f64),
) {
    let k = hover_side(grid.rows, grid.cols);
    // Values a block spans, down and across.
    let (down, across) = (k * grid.block.0, k * grid.block.1);
    s.push_str(HOVER_OPEN);
    for r0 in (0..rows).step_by(down) {
        let r1 = (r0 + down).min(rows);
        for c0 in (0..cols).step_by(across) {
            let c1 = (c0 + across).min(cols);
            let part = || (r0..r1).map(move |r| &values[r * cols + c0..r * cols + c1]);
            let mut text = format!(
                "{}, {}: ",
                index_text("row", (r0, r1)),
                index_text("col", (c0, c1))
            );
            let range = raster::finite_range(part().flatten().copied());
            if let Some((lo, hi)) = range {
                text.push_str(&readout(lo));
                if hi > lo {
                    text.push_str(" – ");
                    text.push_str(&readout(hi));
                }
            }
            let bad = part()
                .map(raster::nonfinite_counts)
                .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
            if let Some(bad) = raster::nonfinite_text(bad) {
                text.push_str(if range.is_some() { ", " } else { "" });
                text.push_str(&bad);
            }
            // The drawn cells the block covers.
            let (cr, cc) = (r0 / grid.block.0, c0 / grid.block.1);
            let (nr, nc) = ((grid.rows - cr).min(k), (grid.cols - cc).min(k));
            hover_rect(
                s,
                (
                    left + cc as f64 * cell_w,
                    top + cr as f64 * cell_h,
                    nc as f64 * cell_w,
                    nr as f64 * cell_h,
                ),
                &text,
            );
        }
    }
    s.push_str("</g>");
}

/// `"{lead} R × C values"` when a cell is the mean of a block of R × C
/// values; nothing when cells are single values.
fn block_note((r, c): (usize, usize), lead: &str) -> String {
    if (r, c) == (1, 1) {
        String::new()
    } else {
        format!("{lead} {r} × {c} values")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_centred_at_zero() {
        assert_eq!(level(0.0), LEVELS / 2);
        assert_eq!(level(-1.0), 0);
        assert_eq!(level(1.0), LEVELS - 1);
        assert_eq!(level(5.0), LEVELS - 1, "clamped");
        assert_eq!(level(f64::NAN), LEVELS / 2);
        // Symmetric: ±t are as far from the middle.
        assert_eq!(LEVELS / 2 - level(-0.3), level(0.3) - LEVELS / 2);
        assert_eq!(hex(level_rgb(LEVELS / 2)), "#f7f7f7", "0 is white");
        let blue = level_rgb(0);
        let red = level_rgb(LEVELS - 1);
        assert!(blue[2] > blue[0] && red[0] > red[2]);
        // The NaN colour is none of the scale's.
        let p = palette();
        assert!(!p[..LEVELS].contains(&raster::rgb(NONFINITE)));
    }

    #[test]
    fn draws_a_bounded_heatmap() {
        let v = [0.5, -0.25, 1.0, 0.0, 2.0, f64::NAN];
        let h = weight_heatmap("weights/<fc1>", &[2, 3], &v, 900).unwrap();
        assert_eq!((h.matrix, h.cells, h.block), ((2, 3), (2, 3), (1, 1)));
        assert_eq!(h.range, Some((-0.25, 2.0)));
        assert_eq!(h.limit, 2.0);
        assert_eq!(h.nonfinite, (1, 0, 0));
        assert!(h.svg.contains("<title>weights/&lt;fc1&gt;</title>"));
        assert!(h.svg.contains("<desc>Heatmap of a 2 × 3 tensor"));
        assert!(h.svg.contains("NaN / Inf: 1"));
        assert!(h.svg.contains("href=\"data:image/png;base64,"));
        assert!(!h.svg.contains("<fc1>"));
        // A read-out a value: its row, column and value; the NaN counted.
        let hover = h.svg.split(HOVER_OPEN).nth(1).unwrap();
        assert_eq!(hover.matches("<title>").count(), 6);
        assert!(hover.contains("<title>row 0, col 0: 0.5</title>"));
        assert!(hover.contains("<title>row 1, col 2: 1 NaN</title>"));

        // 1000 × 600 → at most 256 a side.
        let big: Vec<f64> = (0..600_000).map(|i| (i % 7) as f64 - 3.0).collect();
        let h = weight_heatmap("w", &[1000, 600], &big, 900).unwrap();
        assert!(h.cells.0 <= MAX_CELLS && h.cells.1 <= MAX_CELLS);
        assert_eq!(h.block, (4, 3));
        assert!(h.svg.len() < 200_000, "{} bytes", h.svg.len());
        assert!(h.svg.contains("mean of 4 × 3 values"));
        // Read-outs of 10 × 10 cells, the range of the values they stand for.
        let hover = h.svg.split(HOVER_OPEN).nth(1).unwrap();
        assert_eq!(hover.matches("<title>").count(), 25 * 20);
        assert!(hover.contains("<title>rows 0–39, cols 0–29: -3 – 3</title>"));
        assert!(hover.contains("<title>rows 960–999, cols 570–599: -3 – 3</title>"));
        let mut v = big.clone();
        v[999 * 600 + 599] = f64::INFINITY;
        v[0] = f64::NEG_INFINITY;
        let h = weight_heatmap("w", &[1000, 600], &v, 900).unwrap();
        assert!(
            h.svg
                .contains("<title>rows 960–999, cols 570–599: -3 – 3, 1 +Inf</title>")
        );
        assert!(
            h.svg
                .contains("<title>rows 0–39, cols 0–29: -3 – 3, 1 −Inf</title>")
        );
        // A vector: one row, a block of columns each.
        let row: Vec<f64> = (0..1000).map(f64::from).collect();
        let h = weight_heatmap("b", &[1000], &row, 900).unwrap();
        assert!(h.svg.contains("<title>row 0, cols 0–3: 0 – 3</title>"));
        assert!(hover_side(256, 256) == 11 && hover_side(1, 256) == 1);
        assert_eq!(hover_side(256, 3), 2);
        // Conv weights: a row per output channel.
        let conv = vec![0.1; 8 * 3 * 3 * 3];
        assert_eq!(
            weight_heatmap("c", &[8, 3, 3, 3], &conv, 900)
                .unwrap()
                .matrix,
            (8, 27)
        );
        // All zero: a scale of ±1, every cell white.
        let z = weight_heatmap("z", &[2, 2], &[0.0; 4], 900).unwrap();
        assert_eq!(z.limit, 1.0);
        assert!(weight_heatmap("bad", &[2, 2], &[1.0], 900).is_none());
    }
}
