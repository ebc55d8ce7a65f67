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

use crate::store::Point;

/// Downsamples points sorted by step. Returns them unchanged when there are
/// at most `max_points`.
pub fn downsample(points: &[Point], max_points: usize) -> Vec<Point> {
    if points.len() <= max_points.max(4) {
        return points.to_vec();
    }
    let buckets = (max_points / 4).max(1) as u128;
    let first = points[0].step;
    let span = u128::from(points[points.len() - 1].step - first) + 1;
    let bucket_of = |step: u64| (u128::from(step - first) * buckets / span) as u64;

    let mut out = Vec::with_capacity(max_points + 8);
    let mut start = 0;
    while start < points.len() {
        let b = bucket_of(points[start].step);
        let mut end = start + 1;
        while end < points.len() && bucket_of(points[end].step) == b {
            end += 1;
        }
        keep_envelope(&points[start..end], &mut out);
        start = end;
    }
    out
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
