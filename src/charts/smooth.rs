//! TensorBoard's smoothing: a debiased exponential moving average.
//!
//! As in TensorBoard's `line_chart_v2/data_transformer.ts` (see
//! `shared/research/trackers.md`): with weight `w` clamped to `[0, 1]`,
//! start with `last = 0, n = 0`; for each value `y` in x order, a
//! non-finite `y` is output unchanged (and does not enter the average),
//! otherwise `last = last·w + (1 − w)·y`, `n += 1` and the output is
//! `last / (1 − wⁿ)` (divisor 1 when `w = 1`). A constant series is left as
//! it is (the division would add rounding noise). Like TensorBoard it runs
//! over the points drawn — here the min/max envelope of each bucket, so a
//! spike pulls the smoothed curve as much as it would in TensorBoard's
//! sample, and never more than its bucket's share.

/// TensorBoard's default weight.
pub const DEFAULT_WEIGHT: f64 = 0.6;

/// The largest weight accepted from a query: at `1` nothing moves.
pub const MAX_WEIGHT: f64 = 0.999;

/// The debiased EMA of `values` with weight `w` (0 leaves them as they are).
pub fn ema(values: &[f64], w: f64) -> Vec<f64> {
    let w = if w.is_nan() { 0.0 } else { w.clamp(0.0, 1.0) };
    let mut finite = values.iter().filter(|v| v.is_finite());
    let constant = match finite.next() {
        None => true,
        Some(first) => finite.all(|v| v == first),
    };
    if w == 0.0 || constant {
        return values.to_vec();
    }
    let mut last = 0.0;
    let mut n = 0i32;
    values
        .iter()
        .map(|&y| {
            if !y.is_finite() {
                return y;
            }
            last = last * w + (1.0 - w) * y;
            n = n.saturating_add(1);
            let debias = if w == 1.0 { 1.0 } else { 1.0 - w.powi(n) };
            last / debias
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debiased_the_first_point_is_the_first_value() {
        let s = ema(&[5.0, 1.0, 1.0], 0.6);
        assert_eq!(s[0], 5.0);
        // (0.6·0.4·5 + 0.4·1) / (1 − 0.36) = 2.5
        assert!((s[1] - 2.5).abs() < 1e-12, "{}", s[1]);
        assert!(s[2] < s[1] && s[2] > 1.0);
    }

    #[test]
    fn constant_series_stay_constant_and_zero_is_off() {
        assert_eq!(ema(&[0.3; 50], 0.9), vec![0.3; 50]);
        let with_nan = [0.3, f64::NAN, 0.3];
        let out = ema(&with_nan, 0.9);
        assert_eq!((out[0], out[2]), (0.3, 0.3));
        assert!(out[1].is_nan());
        let v = [1.0, 4.0, 2.0];
        assert_eq!(ema(&v, 0.0), v);
        assert_eq!(ema(&v, f64::NAN), v);
        assert!(ema(&[], 0.6).is_empty());
    }

    #[test]
    fn non_finite_values_stay_and_do_not_poison_the_average() {
        let v = [1.0, f64::NAN, f64::INFINITY, 3.0, f64::NEG_INFINITY, 3.0];
        let s = ema(&v, 0.5);
        assert!(s[1].is_nan());
        assert_eq!(s[2], f64::INFINITY);
        assert_eq!(s[4], f64::NEG_INFINITY);
        // The same as smoothing the finite values alone.
        let finite = ema(&[1.0, 3.0, 3.0], 0.5);
        assert_eq!([s[0], s[3], s[5]], [finite[0], finite[1], finite[2]]);
        assert!(
            s.iter()
                .filter(|v| v.is_finite())
                .all(|v| (1.0..=3.0).contains(v))
        );
    }

    #[test]
    fn weights_are_clamped() {
        let v = [1.0, 2.0, 3.0];
        assert_eq!(ema(&v, -1.0), v);
        // w = 1: the divisor is 1 and the average never moves off zero,
        // as in TensorBoard (whose slider stops below 1).
        assert_eq!(ema(&v, 2.0), vec![0.0; 3]);
    }
}
