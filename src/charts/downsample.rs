//! Min/max-envelope downsampling that never hides a spike or a NaN.
//!
//! The step range is cut into `max_points / 4` equal buckets. Each bucket
//! keeps its first and last point and the points holding its smallest and
//! largest finite value (the M4 rule: a line drawn through them has the same
//! pixels as one drawn through every point), and, for each kind of
//! non-finite value it holds (NaN, +Inf, −Inf), the first and last point of
//! that kind. So every spike survives, every bucket that holds a NaN still
//! shows it, and a run of NaNs keeps its start and end. The output is in
//! step order, at most `max_points` for finite data and never more than
//! `2.5 × max_points`.

use crate::model::Point;

/// Downsamples points sorted by step. Returns them unchanged when there are
/// at most `max_points`.
pub fn downsample(points: &[Point], max_points: usize) -> Vec<Point> {
    if points.len() <= max_points.max(4) {
        return points.to_vec();
    }
    let (origin, width) = buckets(points[0].step, points[points.len() - 1].step, max_points, 1);
    downsample_by_width(points, origin, width)
}

/// Bucket origin and width for steps `first..=last`: at most
/// `max_points / 4` buckets whose width and origin are multiples of `align`.
pub fn buckets(first: u64, last: u64, max_points: usize, align: u64) -> (u64, u64) {
    let n = (max_points / 4).max(1) as u64;
    let origin = first - first % align;
    let span = last - origin + 1;
    let width = span.div_ceil(n).div_ceil(align).saturating_mul(align);
    (origin, width.max(1))
}

/// The envelope of each bucket `(step - origin) / width` of sorted points.
///
/// The envelope is composable: the envelope of envelopes of consecutive
/// pieces equals the envelope of the whole, so the points may be the
/// stored envelopes of whole chunks (see `store::chunk`) mixed with raw
/// points.
pub fn downsample_by_width(points: &[Point], origin: u64, width: u64) -> Vec<Point> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < points.len() {
        let b = (points[start].step - origin) / width;
        let mut end = start + 1;
        while end < points.len() && (points[end].step - origin) / width == b {
            end += 1;
        }
        envelope(&points[start..end], &mut out);
        start = end;
    }
    out
}

/// Appends the envelope of one bucket (non-empty, sorted) to `out`.
pub fn envelope(bucket: &[Point], out: &mut Vec<Point>) {
    keep_envelope(bucket, out)
}

fn keep_envelope(bucket: &[Point], out: &mut Vec<Point>) {
    let mut keep: [Option<usize>; 10] = [None; 10];
    keep[0] = Some(0);
    keep[1] = Some(bucket.len() - 1);
    let (mut min, mut max): (Option<usize>, Option<usize>) = (None, None);
    for (i, p) in bucket.iter().enumerate() {
        let v = p.value;
        if v.is_finite() {
            if min.is_none_or(|m| v < bucket[m].value) {
                min = Some(i);
            }
            if max.is_none_or(|m| v > bucket[m].value) {
                max = Some(i);
            }
        } else {
            let kind = if v.is_nan() {
                0
            } else if v > 0.0 {
                1
            } else {
                2
            };
            let slot = 4 + 2 * kind;
            keep[slot].get_or_insert(i);
            keep[slot + 1] = Some(i);
        }
    }
    keep[2] = min;
    keep[3] = max;
    let mut idx: Vec<usize> = keep.into_iter().flatten().collect();
    idx.sort_unstable();
    idx.dedup();
    out.extend(idx.into_iter().map(|i| bucket[i]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: impl IntoIterator<Item = f64>) -> Vec<Point> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Point {
                step: i as u64,
                value,
                time: None,
            })
            .collect()
    }

    #[test]
    fn short_series_are_returned_whole() {
        let s = series([1.0, 2.0, 3.0]);
        assert_eq!(downsample(&s, 1000), s);
    }

    #[test]
    fn keeps_spikes_and_bounds_and_order() {
        let mut values: Vec<f64> = (0..1_000_000).map(|i| (i as f64 * 0.001).sin()).collect();
        values[123_457] = 1e6;
        values[876_543] = -1e6;
        let s = series(values);
        let d = downsample(&s, 1000);
        assert!(d.len() <= 1000, "{}", d.len());
        assert!(
            d.len() >= 500,
            "every bucket keeps at least two points: {}",
            d.len()
        );
        assert!(d.windows(2).all(|w| w[0].step < w[1].step));
        assert!(d.iter().any(|p| p.step == 123_457 && p.value == 1e6));
        assert!(d.iter().any(|p| p.step == 876_543 && p.value == -1e6));
        assert_eq!(d.first().unwrap().step, 0);
        assert_eq!(d.last().unwrap().step, 999_999);
    }

    #[test]
    fn keeps_every_nonfinite_region() {
        let mut values: Vec<f64> = vec![0.5; 100_000];
        values[10] = f64::NAN;
        values[50_000] = f64::INFINITY;
        values[50_001] = f64::NEG_INFINITY;
        for v in &mut values[90_000..] {
            *v = f64::NAN;
        }
        let d = downsample(&series(values), 100);
        assert!(d.iter().any(|p| p.step == 10 && p.value.is_nan()));
        assert!(
            d.iter()
                .any(|p| p.step == 50_000 && p.value == f64::INFINITY)
        );
        assert!(
            d.iter()
                .any(|p| p.step == 50_001 && p.value == f64::NEG_INFINITY)
        );
        assert!(d.iter().any(|p| p.step == 90_000 && p.value.is_nan()));
        assert!(d.iter().any(|p| p.step == 99_999 && p.value.is_nan()));
        assert!(d.len() <= 250);
    }

    #[test]
    fn envelopes_compose() {
        let mut values: Vec<f64> = (0..50_000).map(|i| ((i * 7919) % 1000) as f64).collect();
        values[777] = f64::NAN;
        values[20_000] = f64::NEG_INFINITY;
        let s = series(values);
        let direct = downsample_by_width(&s, 0, 8192);
        let mut pieces = Vec::new();
        for piece in s.chunks(4096) {
            envelope(piece, &mut pieces);
        }
        assert_eq!(downsample_by_width(&pieces, 0, 8192), direct);
    }

    #[test]
    fn bucket_alignment() {
        assert_eq!(buckets(0, 999_999, 1000, 1), (0, 4000));
        assert_eq!(buckets(5000, 999_999, 1000, 4096), (4096, 4096));
        assert_eq!(buckets(10, 19, 1000, 1), (10, 1));
    }

    #[test]
    fn sparse_steps_use_the_step_range() {
        let s: Vec<Point> = (0..10_000u64)
            .map(|i| Point {
                step: i * i,
                value: i as f64,
                time: None,
            })
            .collect();
        let d = downsample(&s, 40);
        assert!(d.len() <= 40);
        assert_eq!(d.last().unwrap().step, 9_999 * 9_999);
    }
}
