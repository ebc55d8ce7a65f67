//! The x axis of the line charts: steps, or wall time since the start of the
//! run. Points go onto the axis as `u64`: the step itself, or milliseconds
//! since `t0` (so one chart type draws both).

use crate::diagnostics::fmt_step;
use crate::model::Point;

/// What the x axis counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XAxis {
    #[default]
    Step,
    /// Wall time since the start (`h:mm:ss`), from the points' timestamps.
    Time,
}

/// Milliseconds since `t0` of a unix time, never negative.
fn millis(t: f64, t0: f64) -> u64 {
    ((t - t0) * 1000.0).round().max(0.0) as u64
}

/// The origin of a time axis: the run's creation, or its first timestamp
/// when that is earlier (an imported run is created after its points were
/// logged).
pub fn time_origin(created_at: f64, series: &[&[Point]]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.iter().filter_map(|p| p.time))
        .filter(|t| t.is_finite())
        .fold(created_at, f64::min)
}

/// `points` (sorted by step) placed on a time axis from `t0`: x is the time
/// in milliseconds. A point without a timestamp takes the time of the
/// previous point that has one (the first ones that of the next), so that
/// nothing — above all no NaN — is dropped. `None` when no point has a
/// time. The result is sorted by x (stable: equal times keep step order).
pub fn by_time(points: &[Point], t0: f64) -> Option<Vec<(u64, f64)>> {
    let first = points
        .iter()
        .find_map(|p| p.time.filter(|t| t.is_finite()))?;
    let mut last = first;
    let mut out: Vec<(u64, f64)> = points
        .iter()
        .map(|p| {
            if let Some(t) = p.time.filter(|t| t.is_finite()) {
                last = t;
            }
            (millis(last, t0), p.value)
        })
        .collect();
    out.sort_by_key(|p| p.0);
    Some(out)
}

/// `points` (sorted by step) on a step axis.
pub fn by_step(points: &[Point]) -> Vec<(u64, f64)> {
    points.iter().map(|p| (p.step, p.value)).collect()
}

/// Where `step` falls on a time axis from `t0`, after the points of one of
/// `series` (each sorted by step): the time of the first point at or after
/// it, in milliseconds. `None` when no series has a timed point there.
pub fn step_to_time(step: u64, series: &[&[Point]], t0: f64) -> Option<u64> {
    series
        .iter()
        .filter_map(|s| {
            let i = s.partition_point(|p| p.step < step);
            s[i..].iter().find_map(|p| p.time.filter(|t| t.is_finite()))
        })
        .map(|t| millis(t, t0))
        .min()
}

/// Tick positions for `lo..=hi` (at most about `target` of them), at round
/// numbers of the axis: 1, 2 or 5 × 10ᵏ steps; on a time axis, round
/// seconds, minutes or hours.
pub fn ticks(lo: u64, hi: u64, target: usize, axis: XAxis) -> Vec<u64> {
    let span = hi.saturating_sub(lo).max(1);
    let want = span.div_ceil(target.max(1) as u64).max(1);
    let step = match axis {
        XAxis::Step => nice(want, &[1, 2, 5]),
        XAxis::Time => {
            // Milliseconds: sub-second ticks by the 1-2-5 rule, then clock units.
            const CLOCK: [u64; 14] = [
                1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
                900_000, 1_800_000, 3_600_000, 7_200_000,
            ];
            if want < 1_000 {
                nice(want, &[1, 2, 5])
            } else if let Some(&s) = CLOCK.iter().find(|&&s| s >= want) {
                s
            } else {
                // Beyond two hours: whole hours, 1-2-5 (3 h, 6 h, … would
                // need a 3-rule; a day is 24 h either way).
                3_600_000 * nice(want.div_ceil(3_600_000), &[1, 2, 5])
            }
        }
    };
    let first = lo.div_ceil(step).checked_mul(step);
    std::iter::successors(first, |t| t.checked_add(step))
        .take_while(|&t| t <= hi)
        .collect()
}

/// The smallest `m × 10ᵏ ≥ want` with `m` one of `mantissas`.
fn nice(want: u64, mantissas: &[u64]) -> u64 {
    let mut scale = 1u64;
    loop {
        for &m in mantissas {
            if m.saturating_mul(scale) >= want {
                return m.saturating_mul(scale);
            }
        }
        scale = scale.saturating_mul(10);
    }
}

/// A tick or read-out label: the step with thousands separated, or the time
/// as `h:mm:ss` (with tenths below a second's precision when `fine`).
pub fn label(x: u64, axis: XAxis, fine: bool) -> String {
    match axis {
        XAxis::Step => fmt_step(x),
        XAxis::Time => {
            let s = x / 1000;
            let clock = format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
            if fine {
                format!("{clock}.{}", x % 1000 / 100)
            } else {
                clock
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_on_a_time_axis_keep_every_value() {
        let pts = [
            Point::new(0, 1.0, None),
            Point::new(1, 2.0, Some(100.5)),
            Point::new(2, f64::NAN, None),
            Point::new(3, 4.0, Some(102.0)),
        ];
        let t = by_time(&pts, 100.0).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], (500, 1.0), "before the first time: that time");
        assert_eq!(t[1], (500, 2.0));
        assert_eq!(t[2].0, 500);
        assert!(t[2].1.is_nan(), "the NaN stays, at the previous time");
        assert_eq!(t[3], (2000, 4.0));
        assert!(by_time(&[Point::new(0, 1.0, None)], 0.0).is_none());
        // A clock that went back: sorted by time, nothing lost.
        let back = by_time(
            &[
                Point::new(0, 1.0, Some(10.0)),
                Point::new(1, 2.0, Some(9.0)),
            ],
            9.0,
        )
        .unwrap();
        assert_eq!(back, [(0, 2.0), (1000, 1.0)]);
        assert_eq!(by_step(&pts[..2]), [(0, 1.0), (1, 2.0)]);
    }

    #[test]
    fn origins_and_onsets_in_time() {
        let a = [
            Point::new(0, 1.0, Some(50.0)),
            Point::new(10, 1.0, Some(60.0)),
        ];
        let b = [Point::new(5, 1.0, None), Point::new(20, 1.0, Some(70.0))];
        assert_eq!(
            time_origin(100.0, &[&a, &b]),
            50.0,
            "imported: the first point"
        );
        assert_eq!(time_origin(10.0, &[&a]), 10.0, "live: the run's creation");
        assert_eq!(step_to_time(7, &[&a, &b], 50.0), Some(10_000));
        assert_eq!(step_to_time(0, &[&a], 50.0), Some(0));
        assert_eq!(step_to_time(99, &[&a, &b], 50.0), None);
    }

    #[test]
    fn round_ticks() {
        assert_eq!(
            ticks(0, 1000, 6, XAxis::Step),
            [0, 200, 400, 600, 800, 1000]
        );
        assert_eq!(ticks(3, 9, 6, XAxis::Step), [3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(ticks(0, 0, 6, XAxis::Step), [0]);
        // 34 s: every 10 s; 2 h: every 30 min; 3 days: every 20 h.
        assert_eq!(
            ticks(0, 34_000, 6, XAxis::Time),
            [0, 10_000, 20_000, 30_000]
        );
        assert_eq!(ticks(0, 7_200_000, 6, XAxis::Time).len(), 5);
        assert_eq!(ticks(0, 7_200_000, 6, XAxis::Time)[1], 1_800_000);
        let days = ticks(0, 3 * 86_400_000, 6, XAxis::Time);
        assert!(
            days.len() <= 7 && days[1].is_multiple_of(3_600_000),
            "{days:?}"
        );
        assert_eq!(ticks(0, 900, 6, XAxis::Time), [0, 200, 400, 600, 800]);
        assert!(
            ticks(u64::MAX - 10, u64::MAX, 6, XAxis::Step).len() <= 7,
            "no overflow"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(label(1_234_567, XAxis::Step, false), "1,234,567");
        assert_eq!(label(999, XAxis::Step, false), "999");
        assert_eq!(label(3_723_000, XAxis::Time, false), "1:02:03");
        assert_eq!(label(1_250, XAxis::Time, true), "0:00:01.2");
        assert_eq!(label(90_000_000, XAxis::Time, false), "25:00:00");
    }
}
