//! Divergence: the loss became non-finite, or blew up and stayed up.
//!
//! Rules (research §1 "Divergence / NaN-Inf"):
//! 1. **Non-finite training loss** → `critical`, onset = first NaN/Inf step.
//!    Every tool in the survey treats a NaN/Inf loss as fatal (AT, Keras
//!    `TerminateOnNaN`, Lightning `check_finite`). The cause text separates a
//!    loss that was non-finite from the very first step (bad inputs/labels or
//!    an invalid loss computation, e.g. NaN in the data) from one that grew
//!    first (optimisation diverged, usually the LR).
//! 2. **Non-finite validation loss** with a finite training loss → `error`.
//! 3. **Finite blow-up**: AT's fixed `loss ≥ 1e3` is meaningless across loss
//!    scales, so the reference is scale-free: the chance-level loss (entropy
//!    of the class prior, i.e. what cross-entropy starts at) or, without it,
//!    the loss at the start. The run diverged when the recent median of the
//!    loss is ≥ 4× that reference *and* ≥ 4× the best level reached — the loss
//!    is going up, not slowly coming down from a bad initialisation (with a
//!    known chance level, a loss stuck ≥ 4× above it — at ≥ 90% of its start,
//!    or no longer falling (≥ 80% of the window before) — counts too: the
//!    model is confidently wrong, and coarse per-epoch logging or a bad start
//!    may hide the climb). Medians
//!    over the last 10% of points make a single mini-batch spike irrelevant,
//!    and a warm-up bump that comes back down never reaches the recent window.
//! 4. **Transient blow-up**: the loss (median of 3 consecutive points, or a
//!    single point when the model learned nothing afterwards) reached
//!    ≥ 1000× the chance level (the start without one), even if it came
//!    back down → `error`. Healthy
//!    warm-up bumps and LR-restart spikes are a few × the loss, not 1000×;
//!    a loss that large means the weights were thrown far away (dead ReLUs,
//!    saturated units follow).

use super::context::Ctx;
use super::stats::{fmt_num, fmt_step, head_median, recent_len, tail_median};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};

/// Factor over the reference loss that counts as diverged.
const BLOWUP_FACTOR: f64 = 4.0;
/// Factor over the chance-level loss that counts as a blow-up even if the
/// loss came back down.
const SPIKE_FACTOR: f64 = 1000.0;

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    let Some(train) = ctx.train_loss else {
        if let Some(val) = ctx.val_loss {
            nonfinite_val(ctx, val.key, &val.series.steps, &val.series.values, out);
        }
        return;
    };
    let (steps, values) = (&train.series.steps, &train.series.values);
    if let Some(i) = super::stats::first_nonfinite(values) {
        let bad = values[i];
        let nonfinite = values.iter().filter(|v| !v.is_finite()).count();
        let last_finite = values[..i].iter().rev().find(|v| v.is_finite()).copied();
        let start = head_median(&values[..i], 5);
        let mut metrics = std::collections::BTreeMap::new();
        metrics.insert("nonfinite_points".into(), nonfinite as f64);
        metrics.insert(
            "nonfinite_share".into(),
            nonfinite as f64 / values.len() as f64,
        );
        if let Some(v) = last_finite {
            metrics.insert("last_finite_loss".into(), v);
        }
        if let Some(v) = start {
            metrics.insert("initial_loss".into(), v);
        }
        if let Some(lr) = ctx.current_lr() {
            metrics.insert("lr".into(), lr);
        }
        let what = super::stats::fmt_num(bad);
        let missing = ctx.missing_cells();
        // NaN in the inputs' own statistics (a summary that did not skip
        // NaN cells): the data is broken whatever the optimiser does.
        let nan_stats = ctx.view.datasets.iter().any(|d| {
            [&d.feature_mean, &d.feature_std].iter().any(|v| {
                v.as_ref()
                    .is_some_and(|v| v.iter().any(|x| !x.0.is_finite()))
            })
        });
        let title = if i == 0 {
            format!(
                "Training loss is {what} from the first logged step ({})",
                fmt_step(steps[0])
            )
        } else {
            format!("Training loss became {what} at step {}", fmt_step(steps[i]))
        };
        let grew = matches!((start, last_finite), (Some(s), Some(l)) if l >= BLOWUP_FACTOR * s);
        let cause = if missing > 0 {
            format!(
                "The training data contains {missing} missing (NaN) input values; one NaN input makes the forward pass, the loss and every gradient NaN."
            )
        } else if nan_stats {
            "The training inputs' feature statistics are NaN: the data contains NaN/Inf values, and one NaN input makes the forward pass, the loss and every gradient NaN.".to_string()
        } else if i == 0 {
            "The loss was never finite, so the optimiser is not to blame: NaN/Inf in the inputs or labels, or an invalid loss computation (log or division of values ≤ 0, probabilities outside [0, 1]).".to_string()
        } else if grew {
            format!(
                "The loss grew from {} to {} before becoming {what}: the optimisation diverged, most often because the learning rate is too high for this model and initialisation.",
                fmt_num(start.unwrap_or(f64::NAN)),
                fmt_num(last_finite.unwrap_or(f64::NAN))
            )
        } else {
            "The loss became non-finite abruptly: an overflow in the forward or backward pass (too high a learning rate, exploding gradients, log/exp of extreme values).".to_string()
        };
        let mut fixes = Vec::new();
        if missing > 0 || i == 0 || nan_stats {
            fixes.push("Check the inputs and labels for NaN/Inf (impute or drop missing values, e.g. SimpleImputer fit on the training split).".to_string());
            fixes.push("Compute the loss from logits (CrossEntropyLoss / from_logits=True) and guard log/div/sqrt against values ≤ 0.".to_string());
        }
        if !(missing > 0 || i == 0 || nan_stats) {
            fixes.push(ctx.lower_lr_fix(""));
            fixes.push(
                "Add gradient clipping (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))."
                    .to_string(),
            );
            fixes.push(
                "Add normalisation layers (BatchNorm/LayerNorm) and use He/Glorot initialisation."
                    .to_string(),
            );
            fixes.push("Check the inputs for NaN/Inf and compute the loss from logits (CrossEntropyLoss / from_logits=True).".to_string());
        }
        out.push(Finding {
            kind: Kind::Divergence,
            caused_by: None,
            severity: Severity::Critical,
            onset_step: Some(steps[i]),
            title,
            evidence: Evidence {
                series: vec![train.key.to_string()],
                layer: None,
                metrics,
                summary: format!(
                    "{nonfinite} of {} training-loss points are non-finite{}.",
                    values.len(),
                    last_finite
                        .map(|v| format!("; the last finite value was {}", fmt_num(v)))
                        .unwrap_or_default()
                ),
                samples: Vec::new(),
            },
            cause,
            fixes,
        });
        return;
    }
    if let Some(val) = ctx.val_loss
        && nonfinite_val(ctx, val.key, &val.series.steps, &val.series.values, out)
    {
        return;
    }
    blowup(ctx, train.key, steps, values, out);
}

/// Rule 2. Returns whether a finding was added.
fn nonfinite_val(ctx: &Ctx, key: &str, steps: &[u64], values: &[f64], out: &mut Diagnosis) -> bool {
    let Some(i) = super::stats::first_nonfinite(values) else {
        return false;
    };
    out.push(Finding {
        kind: Kind::Divergence,
        caused_by: None,
        severity: Severity::Error,
        onset_step: Some(steps[i]),
        title: format!("Validation loss became {} at step {}", fmt_num(values[i]), fmt_step(steps[i])),
        evidence: Evidence {
            series: vec![key.to_string()],
            metrics: [("nonfinite_points".to_string(), values.iter().filter(|v| !v.is_finite()).count() as f64)].into(),
            summary: "The validation loss is non-finite while the training loss is finite.".into(),
            ..Default::default()
        },
        cause: "The model produces non-finite outputs on validation data: validation inputs with NaN/Inf or out-of-range values, or a numerically unstable loss (log of 0).".into(),
        fixes: vec![
            "Check the validation inputs for NaN/Inf and apply the same preprocessing as for training.".into(),
            "Compute the loss from logits (CrossEntropyLoss / from_logits=True) instead of log(softmax).".into(),
            ctx.lower_lr_fix(" if the weights are close to overflowing"),
        ],
    });
    true
}

/// Rule 3: a finite loss that blew up and stayed up.
fn blowup(ctx: &Ctx, key: &str, steps: &[u64], values: &[f64], out: &mut Diagnosis) {
    let n = values.len();
    if n < 5 {
        return;
    }
    let Some(start) = head_median(values, 3) else {
        return;
    };
    let reference = match ctx.chance_loss() {
        Some(c) => c.min(start),
        None => start,
    };
    let w = recent_len(n, 5);
    let Some(recent) = tail_median(values, w) else {
        return;
    };
    // Best level: the lowest median over consecutive chunks of w points.
    let best = values
        .chunks(w)
        .filter(|c| c.len() * 2 >= w)
        .filter_map(super::stats::median)
        .fold(start, f64::min);
    // Going up: 4× above the best level reached. Or, with a chance level,
    // stuck far above it and not coming down (with coarse per-epoch logging
    // the blow-up may already be inside the first point).
    let rising = recent >= BLOWUP_FACTOR * best;
    // With a chance level: a loss ≥ 4× the loss of predicting the class
    // prior that is no longer coming down is confidently wrong, wherever it
    // started (coarse per-epoch logging may hide the climb, a bad start may
    // have hidden it).
    let previous = (n >= 2 * w)
        .then(|| super::stats::median(&values[n - 2 * w..n - w]))
        .flatten();
    let not_falling = previous.is_none_or(|p| recent >= 0.8 * p);
    // ... and confidently wrong on validation too, when it is logged: a
    // validation loss (eval mode) near the chance level says the weights are
    // merely useless, the training loss being inflated by train-mode noise
    // (heavy dropout), not that the optimisation diverged.
    let val_high = match (ctx.chance_loss(), ctx.val_loss) {
        (Some(c), Some(v)) => ctx.epoch_tail(v.series, 3).is_none_or(|x| x >= 2.0 * c),
        _ => true,
    };
    let stuck_high =
        ctx.chance_loss().is_some() && val_high && (recent >= 0.9 * start || not_falling);
    if !(reference > 0.0 && recent >= BLOWUP_FACTOR * reference && (rising || stuck_high)) {
        spike(ctx, key, steps, values, reference, out);
        return;
    }
    // Onset: the first step after which the loss stays above the threshold
    // most of the time — approximated by the first chunk whose median does.
    let threshold = BLOWUP_FACTOR * reference;
    let onset = values
        .chunks(w.clamp(1, 20))
        .enumerate()
        .filter(|(_, c)| super::stats::median(c).is_some_and(|m| m >= threshold))
        .map(|(ci, c)| ci * w.clamp(1, 20) + c.iter().position(|v| *v >= threshold).unwrap_or(0))
        .next()
        .and_then(|i| steps.get(i).copied());
    out.push(Finding {
        kind: Kind::Divergence,
        caused_by: None,
        severity: Severity::Error,
        onset_step: onset,
        title: format!(
            "Training loss diverged{}: now {} vs {} at the start",
            onset.map(|s| format!(" from step {}", fmt_step(s))).unwrap_or_default(),
            fmt_num(recent),
            fmt_num(start)
        ),
        evidence: Evidence {
            series: vec![key.to_string()],
            layer: None,
            metrics: [
                ("recent_loss".to_string(), recent),
                ("initial_loss".to_string(), start),
                ("best_loss".to_string(), best),
                ("reference_loss".to_string(), reference),
            ]
            .into(),
            summary: format!(
                "Median of the last {w} losses is {} — {:.0}× the reference level {} (chance level or start) and {:.0}× the best level reached.",
                fmt_num(recent),
                recent / reference,
                fmt_num(reference),
                recent / best.max(f64::MIN_POSITIVE)
            ),
            samples: Vec::new(),
        },
        cause: "The optimiser overshoots: each step moves the weights further from a minimum, typically because the learning rate is too high (or momentum too large) for this model and data scale.".into(),
        fixes: vec![
            ctx.lower_lr_fix(""),
            "Add gradient clipping (clip_grad_norm_ 1.0) and a short LR warm-up.".into(),
            "Normalise the inputs and add BatchNorm/LayerNorm; use He/Glorot initialisation.".into(),
        ],
    });
}

/// Rule 4: a blow-up that came back down. Median of 3 consecutive losses
/// ≥ 1000× the chance level (or the start, whichever is lower; the start
/// alone without a chance level, so a regression loss on unscaled targets,
/// large at the start, is its own yardstick): the weights were thrown far
/// out (AT's `max(loss) ≥ 1e3`, made relative). A single point that high
/// counts when the model learned nothing afterwards (recent loss ≥ 0.9× the
/// reference).
fn spike(ctx: &Ctx, key: &str, steps: &[u64], values: &[f64], reference: f64, out: &mut Diagnosis) {
    // Without a chance level the start is the reference: a loss that starts
    // large (a regression on unscaled targets) is then its own yardstick.
    let chance = ctx.chance_loss().unwrap_or(reference);
    if chance.is_nan() || chance <= 0.0 {
        return;
    }
    let threshold = SPIKE_FACTOR * chance.min(reference);
    // A single point that high counts when the model learned nothing after
    // it (the recent loss is back at the chance level or above): the weights
    // were thrown away, which no noisy batch does.
    let recent_loss = tail_median(values, recent_len(values.len(), 5)).unwrap_or(f64::NAN);
    let unlearned = recent_loss >= 0.9 * chance;
    let single = unlearned
        .then(|| values.iter().position(|v| v.is_finite() && *v >= threshold))
        .flatten();
    let Some(i) = single.or_else(|| {
        (1..values.len().saturating_sub(1)).find(|&i| {
            let mut w = [values[i - 1], values[i], values[i + 1]];
            w.sort_by(f64::total_cmp);
            w[1] >= threshold
        })
    }) else {
        return;
    };
    let i = if single.is_some() {
        i
    } else {
        (i - 1..=i + 1)
            .find(|&j| values[j] >= threshold)
            .unwrap_or(i)
    };
    let peak = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let recent = tail_median(values, recent_len(values.len(), 5)).unwrap_or(f64::NAN);
    out.push(Finding {
        kind: Kind::Divergence,
        caused_by: None,
        severity: Severity::Error,
        onset_step: Some(steps[i]),
        title: format!("Training loss blew up to {} at step {}", fmt_num(peak), fmt_step(steps[i])),
        evidence: Evidence {
            series: vec![key.to_string()],
            layer: None,
            metrics: [("peak_loss".to_string(), peak), ("chance_loss".to_string(), chance), ("recent_loss".to_string(), recent)].into(),
            summary: format!(
                "The loss reached {} — {:.0e}× the chance level {} — and is now {}; weights thrown that far rarely recover (dead units, saturated layers).",
                fmt_num(peak),
                peak / chance,
                fmt_num(chance),
                fmt_num(recent)
            ),
            samples: Vec::new(),
        },
        cause: "An update far too large for the loss surface: the learning rate is too high (or the initialisation too large), so one step threw the weights orders of magnitude away.".into(),
        fixes: vec![
            ctx.lower_lr_fix(""),
            "Add gradient clipping (clip_grad_norm_ 1.0) and a short LR warm-up.".into(),
            "Use He/Glorot initialisation at the default scale and normalise the inputs.".into(),
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{curve, healthy, noise, then_nan, view};
    use super::super::{Kind, Severity, diagnose};

    #[test]
    fn nan_loss_is_critical_with_onset() {
        let v = view(&[(
            "train/loss",
            curve(200, 1, then_nan(120, |i| 2.3 * 1.05f64.powi(i as i32))),
        )]);
        let d = diagnose(&v);
        let f = d.get(Kind::Divergence).expect("divergence");
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.onset_step, Some(120));
        assert!(f.title.contains("NaN at step 120"), "{}", f.title);
        assert!(f.cause.contains("diverged"), "{}", f.cause);
    }

    #[test]
    fn nan_from_the_start_blames_the_data() {
        let v = view(&[("loss", curve(20, 1, |_| f64::NAN))]);
        let f = diagnose(&v)
            .get(Kind::Divergence)
            .cloned()
            .expect("divergence");
        assert!(f.title.contains("first logged step"), "{}", f.title);
        assert!(f.cause.contains("inputs"), "{}", f.cause);
    }

    #[test]
    fn finite_blowup_is_divergence() {
        let v = view(&[(
            "train/loss",
            curve(300, 1, |i| if i < 5 { 1.4 } else { 30.0 + 10.0 * noise(i) }),
        )]);
        let f = diagnose(&v)
            .get(Kind::Divergence)
            .cloned()
            .expect("divergence");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.onset_step.unwrap() <= 10, "{:?}", f.onset_step);
    }

    #[test]
    fn warmup_bump_and_spikes_are_not_divergence() {
        // Loss rises ×2 during warm-up, then falls; plus rare 50× spikes.
        let v = view(&[(
            "train/loss",
            curve(1000, 1, |i| {
                let base = if i < 100 {
                    2.3 * (1.0 + i as f64 / 100.0)
                } else {
                    4.6 * (-(i as f64 - 100.0) / 200.0).exp() + 0.1
                };
                if i % 97 == 0 {
                    base * 50.0
                } else {
                    base * (1.0 + 0.3 * noise(i))
                }
            }),
        )]);
        assert!(diagnose(&v).get(Kind::Divergence).is_none());
        assert!(diagnose(&healthy(10, 30)).get(Kind::Divergence).is_none());
    }

    #[test]
    fn transient_blowup_is_divergence_with_a_chance_level() {
        let mut v = view(&[(
            "train/loss",
            curve(300, 1, |i| {
                if (5..12).contains(&i) {
                    1e6
                } else {
                    1.2 + 0.1 * noise(i)
                }
            }),
        )]);
        // Without a chance level the start (1.2) is the yardstick.
        assert_eq!(
            diagnose(&v)
                .get(Kind::Divergence)
                .and_then(|f| f.onset_step),
            Some(5)
        );
        v.datasets.push(crate::record::DatasetRecord {
            split: "train".into(),
            class_counts: Some(
                [
                    ("0".to_string(), serde_json::json!(50)),
                    ("1".to_string(), serde_json::json!(50)),
                ]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        });
        let f = diagnose(&v).get(Kind::Divergence).cloned().expect("spike");
        assert_eq!(f.onset_step, Some(5));
    }

    #[test]
    fn slow_recovery_from_bad_init_is_not_divergence() {
        // Starts at 50 (bad init, chance level 2.3) and comes down to 10.
        let mut v = view(&[(
            "train/loss",
            curve(500, 1, |i| 10.0 + 40.0 * (-(i as f64) / 100.0).exp()),
        )]);
        v.scalars.insert(
            "train/acc".into(),
            super::super::Series::from_points([(100, 0.2), (200, 0.3)]),
        );
        assert!(diagnose(&v).get(Kind::Divergence).is_none());
    }
}
