//! Matrices as pictures: a tensor's shape read as rows × columns,
//! block-mean downsampling to a bounded number of cells, and indexed PNG
//! encoding (one byte a cell) for the weight heatmap and the feature maps.
//!
//! A matrix of 1,048,576 values (the record format's limit) drawn as one SVG
//! rect a cell would be tens of megabytes; block means to at most a few
//! hundred cells a side, encoded as a PNG with a palette, stay tens of
//! kilobytes however big the tensor.
//!
//! A block holding any NaN or ±Inf is [`Cell::NonFinite`], as a heatmap
//! cell is ([`super::heatmap::cells`]): downsampling never hides a NaN.

use super::heatmap::Cell;

/// Rows × columns of a tensor of `shape` drawn as a matrix: a vector is one
/// row; a matrix is itself; higher ranks keep the first dimension as rows
/// and flatten the rest into columns (a conv weight `[out, in, kh, kw]` is a
/// row per output channel, as it is a filter per row in memory).
pub fn as_matrix(shape: &[u64]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (1, *n as usize),
        [rows, rest @ ..] => (
            *rows as usize,
            rest.iter().map(|d| *d as usize).product::<usize>(),
        ),
    }
}

/// A matrix of cells, row-major, and how many source values a cell stands
/// for.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
    pub cells: Vec<Cell>,
    /// Source rows and columns per cell (1 × 1 when not downsampled).
    pub block: (usize, usize),
}

impl Grid {
    pub fn get(&self, r: usize, c: usize) -> Cell {
        self.cells[r * self.cols + c]
    }

    /// The smallest and largest finite cell, if any.
    pub fn range(&self) -> Option<(f64, f64)> {
        finite_range(self.cells.iter().filter_map(|c| match c {
            Cell::Value(v) => Some(*v),
            _ => None,
        }))
    }
}

/// The smallest and largest finite value, if any.
pub fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// `values` (row-major `rows × cols`) as at most `max_rows × max_cols`
/// cells: each the mean of a block of `ceil(rows / max_rows)` ×
/// `ceil(cols / max_cols)` values (blocks at the bottom and right edges may
/// be smaller), or [`Cell::NonFinite`] when the block holds a NaN or ±Inf.
/// One pass over the values.
pub fn block_means(
    values: &[f64],
    rows: usize,
    cols: usize,
    max_rows: usize,
    max_cols: usize,
) -> Grid {
    debug_assert_eq!(values.len(), rows * cols);
    let bh = rows.div_ceil(max_rows.max(1)).max(1);
    let bw = cols.div_ceil(max_cols.max(1)).max(1);
    let (out_r, out_c) = (rows.div_ceil(bh), cols.div_ceil(bw));
    let mut sum = vec![0.0f64; out_r * out_c];
    let mut n = vec![0u32; out_r * out_c];
    let mut bad = vec![false; out_r * out_c];
    for (r, row) in values.chunks(cols.max(1)).take(rows).enumerate() {
        let base = (r / bh) * out_c;
        for (c, v) in row.iter().enumerate() {
            let i = base + c / bw;
            if v.is_finite() {
                sum[i] += v;
                n[i] += 1;
            } else {
                bad[i] = true;
            }
        }
    }
    let cells = (0..out_r * out_c)
        .map(|i| {
            if bad[i] {
                Cell::NonFinite
            } else if n[i] == 0 {
                Cell::Empty
            } else {
                Cell::Value(sum[i] / f64::from(n[i]))
            }
        })
        .collect();
    Grid {
        rows: out_r,
        cols: out_c,
        cells,
        block: (bh, bw),
    }
}

/// Counts of the non-finite values: (NaN, +Inf, −Inf).
pub fn nonfinite_counts(values: &[f64]) -> (usize, usize, usize) {
    values.iter().fold((0, 0, 0), |(n, p, m), v| {
        if v.is_nan() {
            (n + 1, p, m)
        } else if *v == f64::INFINITY {
            (n, p + 1, m)
        } else if *v == f64::NEG_INFINITY {
            (n, p, m + 1)
        } else {
            (n, p, m)
        }
    })
}

/// The non-finite counts in words, `"1 NaN, 2 +Inf"`; `None` when there
/// is none.
pub fn nonfinite_text((nan, pos, neg): (usize, usize, usize)) -> Option<String> {
    let parts: Vec<String> = [(nan, "NaN"), (pos, "+Inf"), (neg, "−Inf")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// An 8-bit indexed PNG of `width × height` pixels, row-major palette
/// indices into `palette`.
pub fn indexed_png(width: usize, height: usize, palette: &[[u8; 3]], pixels: &[u8]) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height, "one index a pixel");
    assert!(!palette.is_empty() && palette.len() <= 256);
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(palette.iter().flatten().copied().collect::<Vec<u8>>());
    // Writing to a Vec fails only on inconsistent sizes, checked above.
    let mut w = enc.write_header().expect("a valid PNG header");
    w.write_image_data(pixels)
        .expect("PNG data of the right size");
    w.finish().expect("PNG written to memory");
    out
}

/// `bytes` as a `data:` URL of a PNG (base64 has no character to escape in
/// an attribute).
pub fn png_data_url(bytes: &[u8]) -> String {
    use base64::Engine;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `0xrrggbb` as bytes.
pub const fn rgb24(c: u32) -> [u8; 3] {
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

/// Bytes as `#rrggbb`.
pub fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The colour at `t` in 0..=1 on the ramp through `stops` (`0xrrggbb`, two
/// or more, evenly spaced): mixed linearly from the stops either side.
pub fn ramp_rgb(stops: &[u32], t: f64) -> [u8; 3] {
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (rgb24(stops[i]), rgb24(stops[i + 1]));
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// `#rrggbb` as bytes.
pub fn rgb(hex: &str) -> [u8; 3] {
    let h = hex.trim_start_matches('#');
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or(0);
    [byte(0), byte(2), byte(4)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_read_as_matrices() {
        assert_eq!(as_matrix(&[5]), (1, 5));
        assert_eq!(as_matrix(&[2, 3]), (2, 3));
        assert_eq!(as_matrix(&[64, 3, 3, 3]), (64, 27));
        assert_eq!(as_matrix(&[]), (1, 1));
    }

    #[test]
    fn block_means_bound_the_cells_and_keep_nans() {
        // 4 × 6 into at most 2 × 3: blocks of 2 × 2.
        let mut v: Vec<f64> = (0..24).map(f64::from).collect();
        let g = block_means(&v, 4, 6, 2, 3);
        assert_eq!((g.rows, g.cols, g.block), (2, 3, (2, 2)));
        // Top-left block: 0, 1, 6, 7.
        assert_eq!(g.get(0, 0), Cell::Value(3.5));
        assert_eq!(g.get(1, 2), Cell::Value((16.0 + 17.0 + 22.0 + 23.0) / 4.0));
        v[9] = f64::NAN; // row 1, column 3: block (0, 1)
        let g = block_means(&v, 4, 6, 2, 3);
        assert_eq!(g.get(0, 1), Cell::NonFinite, "one NaN marks its block");
        assert_eq!(g.get(0, 0), Cell::Value(3.5));
        // Uneven: 5 × 5 into at most 2 × 2 → blocks of 3, edges smaller.
        let v: Vec<f64> = (0..25).map(f64::from).collect();
        let g = block_means(&v, 5, 5, 2, 2);
        assert_eq!((g.rows, g.cols, g.block), (2, 2, (3, 3)));
        assert_eq!(g.get(1, 1), Cell::Value((18.0 + 19.0 + 23.0 + 24.0) / 4.0));
        // Small matrices are kept as they are.
        let g = block_means(&[1.0, -1.0], 1, 2, 256, 256);
        assert_eq!(g.cells, vec![Cell::Value(1.0), Cell::Value(-1.0)]);
        assert_eq!(g.block, (1, 1));
        // A big one: at most 256 a side.
        let big = vec![0.5; 1000 * 700];
        let g = block_means(&big, 1000, 700, 256, 256);
        assert!(g.rows <= 256 && g.cols <= 256, "{} × {}", g.rows, g.cols);
        assert_eq!(g.range(), Some((0.5, 0.5)));
    }

    #[test]
    fn counts_and_png() {
        let v = [1.0, f64::NAN, f64::INFINITY, f64::NAN, f64::NEG_INFINITY];
        assert_eq!(nonfinite_counts(&v), (2, 1, 1));
        assert_eq!(
            nonfinite_text(nonfinite_counts(&v)).as_deref(),
            Some("2 NaN, 1 +Inf, 1 −Inf")
        );
        assert_eq!(nonfinite_text((0, 0, 0)), None);
        assert_eq!(finite_range(v), Some((1.0, 1.0)));
        assert_eq!(finite_range([f64::NAN]), None);
        let png = indexed_png(2, 1, &[[0, 0, 0], [255, 255, 255]], &[0, 1]);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png_data_url(&png).starts_with("data:image/png;base64,iVBOR"));
        assert_eq!(rgb("#e4007c"), [0xe4, 0x00, 0x7c]);
    }
}
