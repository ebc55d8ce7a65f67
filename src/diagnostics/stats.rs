//! Small robust statistics used by the detectors. Everything here is O(n) in
//! the slice it is given (medians use selection, not sorting), ignores
//! non-finite values where a statistic needs numbers, and returns `None`
//! instead of panicking on empty input.

/// Median of the finite values of `values`, or `None` if there are none.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut buf: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    median_in_place(&mut buf)
}

/// Median of `buf` (all values must be finite); reorders `buf`.
pub(crate) fn median_in_place(buf: &mut [f64]) -> Option<f64> {
    if buf.is_empty() {
        return None;
    }
    let len = buf.len();
    let mid = len / 2;
    let (lower, m, _) = buf.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if len % 2 == 1 {
        Some(m)
    } else {
        let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((below + m) / 2.0)
    }
}

/// Median of the first `k` finite values.
pub(crate) fn head_median(values: &[f64], k: usize) -> Option<f64> {
    let buf: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .take(k)
        .collect();
    let mut buf = buf;
    median_in_place(&mut buf)
}

/// Median of the last `k` values (non-finite ones skipped).
pub(crate) fn tail_median(values: &[f64], k: usize) -> Option<f64> {
    let start = values.len().saturating_sub(k);
    median(&values[start..])
}

/// Size of a "recent" window: the last 10% of the points, at least `min`.
pub(crate) fn recent_len(n: usize, min: usize) -> usize {
    (n / 10).max(min).min(n)
}

/// Index of the first non-finite value.
pub(crate) fn first_nonfinite(values: &[f64]) -> Option<usize> {
    values.iter().position(|v| !v.is_finite())
}

/// The reversal count of [`reversals_from`] alone.
#[cfg(test)]
pub(crate) fn reversals(values: &[f64], zeta: f64) -> usize {
    reversals_from(values, zeta).0
}

/// Number of trend reversals of amplitude ≥ `zeta` (a zig-zag filter), and
/// the index (into `values`) of the first one: [`reversals_where`] with an
/// absolute threshold.
#[cfg(test)]
pub(crate) fn reversals_from(values: &[f64], zeta: f64) -> (usize, Option<usize>) {
    reversals_where(values, &|a, b| (a - b).abs() >= zeta)
}

/// Number of trend reversals of a zig-zag filter, and the index (into
/// `values`) of the first one. `moved(from, to)` says whether a move from
/// the running extreme `from` against the current direction to `to` is large
/// enough to count (an absolute threshold, a factor on a log scale, or both),
/// so noise smaller than that is ignored. Non-finite values are skipped.
/// Monotone series give 0, however noisy.
pub(crate) fn reversals_where(
    values: &[f64],
    moved: &dyn Fn(f64, f64) -> bool,
) -> (usize, Option<usize>) {
    let mut it = values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| v.is_finite());
    let Some((_, first)) = it.next() else {
        return (0, None);
    };
    let (mut hi, mut lo) = (first, first);
    // 0 = no direction yet, 1 = rising, -1 = falling.
    let mut dir = 0i8;
    let (mut count, mut first_at) = (0, None);
    for (i, v) in it {
        match dir {
            1 if v > hi => hi = v,
            -1 if v < lo => lo = v,
            1 | -1 => {
                let from = if dir == 1 { hi } else { lo };
                if moved(from, v) {
                    count += 1;
                    first_at.get_or_insert(i);
                    dir = -dir;
                    (hi, lo) = (v, v);
                }
            }
            _ => {
                hi = hi.max(v);
                lo = lo.min(v);
                if moved(lo, v) {
                    (dir, hi) = (1, v);
                } else if moved(hi, v) {
                    (dir, lo) = (-1, v);
                }
            }
        }
    }
    (count, first_at)
}

/// `1240` → `"1,240"`.
pub(crate) fn fmt_step(step: u64) -> String {
    let digits = step.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short human rendering of a number: 3 significant digits, scientific
/// notation outside [1e-3, 1e5), and the wire names for non-finite values.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return crate::record::nonfinite_name(v).to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        // `1.00e-4` → `1e-4`, `8.47e30` stays.
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let m = mantissa.trim_end_matches('0').trim_end_matches('.');
                format!("{m}e{exp}")
            }
            None => s,
        }
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 5) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// A percentage with no decimals: `0.734` → `"73%"`.
pub(crate) fn fmt_pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// `s` with its first letter upper-case.
pub fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_nonfinite_and_handle_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, f64::INFINITY]), None);
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(head_median(&[f64::NAN, 5.0, 1.0, 9.0, 100.0], 3), Some(5.0));
        assert_eq!(tail_median(&[100.0, 1.0, 2.0, 3.0], 3), Some(2.0));
        assert_eq!(tail_median(&[1.0], 10), Some(1.0));
    }

    #[test]
    fn reversals_ignore_small_noise() {
        assert_eq!(reversals(&[], 0.1), 0);
        assert_eq!(reversals(&[1.0], 0.1), 0);
        let noisy_down: Vec<f64> = (0..100)
            .map(|i| 1.0 - i as f64 * 0.01 + if i % 2 == 0 { 0.02 } else { 0.0 })
            .collect();
        assert_eq!(reversals(&noisy_down, 0.05), 0);
        assert_eq!(reversals(&[0.0, 1.0, 0.0, 1.0, 0.0], 0.5), 3);
        assert_eq!(reversals(&[0.0, 1.0, f64::NAN, 0.0], 0.5), 1);
        assert_eq!(
            reversals_from(&[0.0, 0.1, 1.0, 1.1, 0.0], 0.5),
            (1, Some(4))
        );
    }

    #[test]
    fn formatting() {
        for (step, text) in [
            (0, "0"),
            (999, "999"),
            (1240, "1,240"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(fmt_step(step), text);
        }
        for (v, text) in [
            (0.001, "0.001"),
            (0.5, "0.5"),
            (2.3456, "2.35"),
            (1e-5, "1e-5"),
            (5.67e-6, "5.67e-6"),
            (8.47e30, "8.47e30"),
            (f64::NAN, "NaN"),
            (123.0, "123"),
        ] {
            assert_eq!(fmt_num(v), text, "{v}");
        }
        assert_eq!(fmt_pct(0.734), "73%");
    }
}
