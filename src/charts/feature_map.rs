//! Feature maps (`image` records with `shape` `[channels, height, width]`
//! and `values`) as a grid of small grey images, one per channel.
//!
//! Each channel is normalised to its own min/max (activations of different
//! channels differ by orders of magnitude: one scale for all would leave
//! most of them black): min black, max white. A constant channel is
//! mid-grey (no division by zero), a NaN or ±Inf pixel is [`NONFINITE`]
//! magenta. Channels bigger than [`MAX_SIDE`] a side are block-means
//! downsampled first; at most [`MAX_CHANNELS`] are drawn.

use super::heatmap::{Cell, NONFINITE};
use super::raster;

/// Pixels a side a channel is drawn with at most.
pub const MAX_SIDE: usize = 128;
/// Channels drawn at most (the rest are counted).
pub const MAX_CHANNELS: usize = 64;

/// Grey levels (0..GREYS); index GREYS is the non-finite marker.
const GREYS: usize = 255;

/// Each value's place between the channel's finite min (0) and max (1);
/// `None` for NaN and ±Inf; 0.5 for every value of a constant channel.
pub fn normalise(values: &[f64]) -> Vec<Option<f64>> {
    let Some((lo, hi)) = raster::finite_range(values.iter().copied()) else {
        return vec![None; values.len()];
    };
    let span = hi - lo;
    values
        .iter()
        .map(|v| {
            v.is_finite().then(|| {
                if span > 0.0 && span.is_finite() {
                    ((v - lo) / span).clamp(0.0, 1.0)
                } else {
                    0.5
                }
            })
        })
        .collect()
}

/// One drawn channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub index: usize,
    /// The channel as a PNG (`width × height` pixels).
    pub png: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// The channel's finite min and max (of the values as logged).
    pub range: Option<(f64, f64)>,
    /// NaN and ±Inf values in the channel.
    pub nonfinite: usize,
    /// Source pixels a drawn pixel stands for (1 × 1 when not downsampled).
    pub block: (usize, usize),
}

impl Channel {
    pub fn constant(&self) -> bool {
        self.range.is_some_and(|(lo, hi)| lo == hi)
    }
}

/// Channels, height and width of a `[channels, height, width]` feature map
/// (a 2-d `[height, width]` is one channel), or `None` when `len` values do
/// not fill the shape.
pub fn dims(shape: &[u64], len: usize) -> Option<(usize, usize, usize)> {
    let (c, h, w) = match shape {
        [h, w] => (1, *h as usize, *w as usize),
        [c, h, w] => (*c as usize, *h as usize, *w as usize),
        _ => return None,
    };
    (c > 0 && h > 0 && w > 0 && len == c * h * w).then_some((c, h, w))
}

/// The first [`MAX_CHANNELS`] channels of a feature map (see [`dims`]), or
/// `None` when the values do not fill the shape.
pub fn channels(shape: &[u64], values: &[f64]) -> Option<Vec<Channel>> {
    let (_, h, w) = dims(shape, values.len())?;
    let palette = palette();
    Some(
        values
            .chunks(h * w)
            .take(MAX_CHANNELS)
            .enumerate()
            .map(|(index, ch)| draw(index, ch, (h, w), &palette))
            .collect(),
    )
}

/// Channel `index` of a feature map, drawn as on the page, or `None` when
/// there is no such channel or the values do not fill the shape.
pub fn channel(shape: &[u64], values: &[f64], index: usize) -> Option<Channel> {
    let (c, h, w) = dims(shape, values.len())?;
    (index < c).then(|| {
        let ch = &values[index * h * w..(index + 1) * h * w];
        draw(index, ch, (h, w), &palette())
    })
}

/// The grey levels, then the non-finite marker.
fn palette() -> Vec<[u8; 3]> {
    let mut palette: Vec<[u8; 3]> = (0..GREYS)
        .map(|i| {
            let g = (i * 255 / (GREYS - 1)) as u8;
            [g, g, g]
        })
        .collect();
    palette.push(raster::rgb(NONFINITE));
    palette
}

/// Channel `index` (its `h × w` values) as a picture.
fn draw(index: usize, ch: &[f64], (h, w): (usize, usize), palette: &[[u8; 3]]) -> Channel {
    let grid = raster::block_means(ch, h, w, MAX_SIDE, MAX_SIDE);
    let cells: Vec<f64> = grid
        .cells
        .iter()
        .map(|c| match c {
            Cell::Value(v) => *v,
            _ => f64::NAN,
        })
        .collect();
    let pixels: Vec<u8> = normalise(&cells)
        .into_iter()
        .map(|t| match t {
            Some(t) => (t * (GREYS - 1) as f64).round() as u8,
            None => GREYS as u8,
        })
        .collect();
    let (n, p, m) = raster::nonfinite_counts(ch);
    Channel {
        index,
        png: raster::indexed_png(grid.cols, grid.rows, palette, &pixels),
        width: grid.cols,
        height: grid.rows,
        range: raster::finite_range(ch.iter().copied()),
        nonfinite: n + p + m,
        block: grid.block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_channel_to_its_own_range() {
        assert_eq!(
            normalise(&[2.0, 4.0, 3.0]),
            vec![Some(0.0), Some(1.0), Some(0.5)]
        );
        // Constant: mid-grey, not 0/0.
        assert_eq!(normalise(&[7.0, 7.0]), vec![Some(0.5), Some(0.5)]);
        // Non-finite: a marker; the others scale without them.
        assert_eq!(
            normalise(&[f64::NAN, -1.0, f64::INFINITY, 1.0]),
            vec![None, Some(0.0), None, Some(1.0)]
        );
        assert_eq!(normalise(&[f64::NAN]), vec![None]);
        assert!(normalise(&[]).is_empty());
        // A span too wide for f64 is not a NaN either.
        assert!(
            normalise(&[-f64::MAX, f64::MAX])
                .iter()
                .all(|t| t.is_some_and(|t| t.is_finite()))
        );
    }

    #[test]
    fn one_image_per_channel() {
        // The record format's example: 2 channels of 2 × 2, a NaN and an Inf.
        let v = [0.1, 0.0, 0.7, 0.3, f64::NAN, 0.5, 0.2, f64::INFINITY];
        let ch = channels(&[2, 2, 2], &v).unwrap();
        assert_eq!(ch.len(), 2);
        assert_eq!((ch[0].width, ch[0].height, ch[0].nonfinite), (2, 2, 0));
        assert_eq!(ch[0].range, Some((0.0, 0.7)));
        assert_eq!(ch[1].nonfinite, 2);
        assert_eq!(ch[1].range, Some((0.2, 0.5)));
        assert!(ch[1].png.starts_with(b"\x89PNG"));
        // A constant channel.
        let c = channels(&[1, 2, 2], &[3.0; 4]).unwrap();
        assert!(c[0].constant());
        // Big channels are downsampled, many channels cut.
        let big = vec![1.0; 2 * 300 * 200];
        let c = channels(&[2, 300, 200], &big).unwrap();
        assert!(c[0].width <= MAX_SIDE && c[0].height <= MAX_SIDE);
        assert_eq!(c[0].block, (3, 2));
        let many = vec![0.0; 100 * 4];
        assert_eq!(channels(&[100, 2, 2], &many).unwrap().len(), MAX_CHANNELS);
        assert_eq!(channels(&[3, 4], &[0.0; 12]).unwrap().len(), 1);
        assert!(channels(&[2, 2, 2], &[0.0; 7]).is_none());
        // One channel alone is the page's.
        assert_eq!(channel(&[2, 2, 2], &v, 1).as_ref(), Some(&ch[1]));
        assert!(channel(&[2, 2, 2], &v, 2).is_none());
        assert_eq!(channel(&[100, 2, 2], &many, 99).unwrap().index, 99);
        assert_eq!(dims(&[3, 4], 12), Some((1, 3, 4)));
    }
}
