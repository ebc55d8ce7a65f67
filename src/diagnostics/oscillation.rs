//! Oscillating loss: the curves swing up and down instead of settling.
//!
//! Rule (research §1 "Oscillating loss", AT's ζ = 0.03 swings on training
//! accuracy, TDC's direction-change count): on *epoch-level* series — never
//! on mini-batch losses, which are noisy by nature — count trend reversals
//! with a zig-zag filter (a move only counts once it exceeds ζ against the
//! current direction):
//!
//! | series | ζ |
//! |---|---|
//! | training error (1 − acc) | 0.03, or 4/n_train if larger (a swing must move ≥ 4 samples), and ×1.5 on the error's odds |
//! | validation error | 0.03, or 3/n_val if larger (small eval sets), and ×1.5 on the error's odds |
//! | validation loss | ×1.5 (log scale, floored at 5% of the chance-level or first loss) |
//! | training loss, epoch medians (only without accuracies) | ×1.5 (log scale, same floor) |
//!
//! An accuracy's swing has to be large both in samples and relative to the
//! error itself (log-odds, the natural scale of a proportion, with the error
//! clamped to [ζ, 1 − ζ]): overshooting steps multiply the error — a model at
//! 4% error jumps to 9%, back to 5%, to 17% — whereas the epoch-to-epoch
//! noise of a converged model that keeps training at a constant LR with small
//! batches (an RNN at 20% error moving 20% ↔ 25%), or the train-mode noise of
//! heavy dropout, moves the error by a fraction of itself while the trend
//! settles. The factor is the losses' ×1.5, for the same reason.
//!
//! Training swings are not oscillation when validation curves were logged
//! and none of them reversed once: overshooting moves the weights, which the
//! validation curves evaluate on fixed data, so swings the validation curves
//! do not share are train-mode noise (dropout masks, batch statistics) — a
//! note, not a finding.
//!
//! Oscillation = ≥ 3 reversals and ≥ 1 per 10 epochs on a *training* series
//! (training accuracy or loss), with at least 6 evaluations → `warning`. The
//! validation series alone give `info`: an overfit model's decision boundary
//! can wobble away from the training data while training itself is stable
//! — unless the training accuracy is saturated (≥ 99%): then validation loss
//! reversing at more than 3 and ≥ 1 in 3 evaluations counts as the training side, since the
//! training curves can no longer show any swing. Healthy curves are monotone up to noise
//! below ζ, and overfitting's rising validation loss is monotone too, so
//! neither produces reversals. Cyclic / warm-restart LR schedules oscillate by
//! design: with ≥ 2 LR restarts the finding is downgraded to `info`.
//! Accuracies are not scored when every epoch's training loss stays within
//! 10% of the chance-level loss, or every epoch's training accuracy within a
//! tenth of the way from chance to perfect: such a model outputs about the class prior
//! and its accuracy jumps between class shares on argmax flips, without any
//! overshooting (e.g. a saturated sigmoid convnet stuck at chance).

use std::collections::BTreeMap;

use super::context::{Ctx, Named};
use super::stats::{capitalise, fmt_step, reversals_where};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};

const MIN_EVALS: usize = 6;
const MIN_REVERSALS: usize = 3;
/// Training accuracy from which the training curves are saturated.
const SATURATED_ACC: f64 = 0.99;
/// Factor a loss, or an error's odds, has to move by to count as a swing:
/// noise around a settling trend changes them by a fraction of themselves,
/// an overshooting step multiplies them.
const SWING_FACTOR: f64 = 1.5;

/// Whether an error rate moved from `a` to `b` by a swing: at least `zeta`
/// in absolute terms and ×[`SWING_FACTOR`] on its odds, the error clamped to
/// [ζ, 1 − ζ] (errors below one swing's size are as good as zero).
fn error_swing(a: f64, b: f64, zeta: f64) -> bool {
    let logit = |e: f64| {
        let e = e.clamp(zeta, 1.0 - zeta);
        (e / (1.0 - e)).ln()
    };
    (a - b).abs() >= zeta && (logit(a) - logit(b)).abs() >= SWING_FACTOR.ln()
}

/// Whether a log-scale loss moved by a swing (×[`SWING_FACTOR`]).
fn log_swing(a: f64, b: f64) -> bool {
    (a - b).abs() >= SWING_FACTOR.ln()
}

struct Score {
    key: String,
    what: &'static str,
    reversals: usize,
    evals: usize,
    onset: Option<u64>,
}

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    let mut scores: Vec<Score> = Vec::new();
    let n_train = ctx.view.dataset("train").and_then(|d| d.n).unwrap_or(0) as f64;
    let n_val = ctx.view.dataset("val").and_then(|d| d.n).unwrap_or(0) as f64;
    let mut score = |named: Option<Named>,
                     what: &'static str,
                     transform: &dyn Fn(f64) -> f64,
                     moved: &dyn Fn(f64, f64) -> bool| {
        let Some(n) = named else { return };
        let points = ctx.epoch_level(n.series);
        let values: Vec<f64> = points.iter().map(|p| transform(p.1)).collect();
        let evals = values.iter().filter(|v| v.is_finite()).count();
        let (reversals, first) = reversals_where(&values, moved);
        scores.push(Score {
            key: n.key.to_string(),
            what,
            reversals,
            evals,
            onset: first.and_then(|i| points.get(i)).map(|p| p.0),
        });
    };
    let zeta_train = if n_train > 0.0 {
        0.03f64.max(4.0 / n_train)
    } else {
        0.03
    };
    let zeta_val = if n_val > 0.0 {
        0.03f64.max(3.0 / n_val)
    } else {
        0.03
    };
    // A model whose loss never leaves the chance level outputs (almost) the
    // class prior: tiny logit changes flip its argmax between classes, so
    // its accuracy jumps between class shares while nothing overshoots.
    let at_chance = ctx.chance_loss().filter(|c| *c > 0.0).is_some_and(|c| {
        ctx.train_loss.is_some_and(|n| {
            let e = ctx.epoch_level(n.series);
            e.len() >= MIN_EVALS
                && e.iter()
                    .all(|p| p.1.is_finite() && (p.1 / c - 1.0).abs() <= 0.1)
        })
    });
    // Or its accuracy never left the chance level (within a tenth of the way
    // to perfect) at any evaluation while its loss is not below the chance
    // level: the same argmax flips, when the loss is inflated by train-mode
    // noise such as heavy dropout.
    let loss_not_below_chance = match (ctx.chance_loss(), ctx.loss_recent()) {
        (Some(c), Some(r)) => r >= 0.9 * c,
        _ => false,
    };
    let acc_at_chance = loss_not_below_chance
        && ctx.chance_acc().is_some_and(|c| {
            ctx.train_acc.is_some_and(|n| {
                let e = ctx.epoch_level(n.series);
                e.len() >= MIN_EVALS
                    && e.iter()
                        .all(|p| p.1.is_finite() && p.1 <= c + 0.1 * (1.0 - c))
            })
        });
    if at_chance || acc_at_chance {
        out.note("accuracy swings not judged as oscillation: the training loss stayed at the chance level, so the accuracy only reflects argmax flips of a model that has not learned");
    } else {
        score(ctx.train_acc, "training accuracy", &|a| 1.0 - a, &|a, b| {
            error_swing(a, b, zeta_train)
        });
        score(ctx.val_acc, "validation accuracy", &|a| 1.0 - a, &|a, b| {
            error_swing(a, b, zeta_val)
        });
    }
    // Loss swings are judged on a log scale, floored at 5% of the loss scale
    // (chance level, else the first value): a near-zero loss doubling from
    // 0.004 to 0.008 is one sample, not a swing.
    let first_val = ctx.val_loss.and_then(|n| {
        n.series
            .values
            .iter()
            .copied()
            .find(|v| v.is_finite() && *v > 0.0)
    });
    let val_floor = 0.05 * ctx.chance_loss().or(first_val).unwrap_or(0.0);
    score(
        ctx.val_loss,
        "validation loss",
        &|l| {
            if l > 0.0 && l.is_finite() {
                l.max(val_floor).ln()
            } else {
                f64::NAN
            }
        },
        &log_swing,
    );
    if ctx.train_acc.is_none()
        && let Some(start) = ctx.loss_start().filter(|s| *s > 0.0)
    {
        let floor = 0.05 * ctx.chance_loss().map_or(start, |c| c.min(start));
        score(
            ctx.train_loss,
            "training loss",
            &|l| {
                if l.is_finite() {
                    l.max(floor).ln()
                } else {
                    f64::NAN
                }
            },
            &log_swing,
        );
    }
    let evals = scores.iter().map(|s| s.evals).max().unwrap_or(0);
    if scores.is_empty() {
        return;
    }
    if evals < MIN_EVALS {
        out.note(format!(
            "not enough data yet for oscillating loss ({evals} of {MIN_EVALS} evaluations)"
        ));
        return;
    }
    let hits: Vec<&Score> = scores
        .iter()
        .filter(|s| {
            s.evals >= MIN_EVALS
                && s.reversals >= MIN_REVERSALS
                && s.reversals * 10 >= s.evals.saturating_sub(1)
        })
        .collect();
    // Headline: a training series if one qualifies, then the most reversals
    // per evaluation.
    let Some(best) = hits.iter().max_by_key(|s| {
        (
            s.what.starts_with("training"),
            (s.reversals * 1000) / s.evals.max(1),
        )
    }) else {
        return;
    };
    // Overshooting steps move the weights, and the validation curves are
    // those same weights evaluated on fixed data: when they were logged and
    // neither reversed once, the training swings come from the train-mode
    // forward pass (dropout masks, batch statistics, a running average over
    // the epoch's batches), not from the optimisation.
    let validation: Vec<&Score> = scores
        .iter()
        .filter(|s| s.what.starts_with("validation") && s.evals >= MIN_EVALS)
        .collect();
    if !validation.is_empty() && validation.iter().all(|s| s.reversals == 0) {
        out.note(format!(
            "{} swings ({} reversals in {} evaluations) not judged as oscillation: the validation curves of the same weights improve without a single reversal, so the swings are train-mode noise (dropout, batch statistics)",
            capitalise(best.what),
            best.reversals,
            best.evals
        ));
        return;
    }
    let restarts = ctx.lr_restarts();
    // The training process is what oscillates: swings of validation metrics
    // alone (an unstable decision boundary away from the training data, a
    // small validation set) are reported as info.
    // With the training accuracy saturated (≥ 99%), the training curves
    // cannot show swings any more; validation loss reversing at a large
    // share (more than 3, and ≥ 1 in 3) of the evaluations is then the training's own
    // instability seen where it still shows.
    let saturated = ctx
        .train_acc
        .and_then(|a| ctx.epoch_tail(a.series, 3))
        .is_some_and(|a| a >= SATURATED_ACC);
    let train_side = hits.iter().any(|s| s.what.starts_with("training"))
        || saturated
            && hits.iter().any(|s| {
                s.what == "validation loss"
                    && s.reversals > MIN_REVERSALS
                    && s.reversals * 3 >= s.evals.saturating_sub(1)
            });
    let onset = hits.iter().filter_map(|s| s.onset).min();
    let mut metrics = BTreeMap::new();
    for s in &scores {
        metrics.insert(format!("reversals/{}", s.key), s.reversals as f64);
    }
    metrics.insert("evaluations".into(), best.evals as f64);
    if let Some(lr) = ctx.current_lr() {
        metrics.insert("lr".into(), lr);
    }
    let batch = super::names::setting_f64(&ctx.view.config, super::names::Setting::BatchSize)
        .filter(|b| *b >= 1.0)
        .map(|b| b as u64);
    let mut fixes = vec![ctx.lower_lr_fix("")];
    fixes.push(match batch {
        Some(b) if b < 256 => format!(
            "Increase the batch size ×2 ({b} → {}) to reduce gradient noise.",
            b * 2
        ),
        _ => "Increase the batch size to reduce gradient noise.".into(),
    });
    fixes.push("Use a decaying LR schedule (step decay or cosine) or Adam with default settings; add gradient clipping.".into());
    out.push(Finding {
        kind: Kind::OscillatingLoss,
        caused_by: None,
        severity: if restarts >= 2 || !train_side { Severity::Info } else { Severity::Warning },
        onset_step: onset,
        title: format!(
            "{} swings up and down: {} reversals in {} evaluations{}",
            capitalise(best.what),
            best.reversals,
            best.evals,
            onset.map(|s| format!(" (first at step {})", fmt_step(s))).unwrap_or_default()
        ),
        evidence: Evidence {
            series: hits.iter().map(|s| s.key.clone()).collect(),
            layer: None,
            metrics,
            summary: hits
                .iter()
                .map(|s| format!("{}: {} reversals in {} evaluations", s.what, s.reversals, s.evals))
                .collect::<Vec<_>>()
                .join("; "),
            samples: Vec::new(),
        },
        cause: if restarts >= 2 {
            format!("The LR schedule restarts ({restarts} times); swings after each restart are expected.")
        } else {
            "Steps overshoot the minimum back and forth: the learning rate is too high for this batch size (or the batches are very small and noisy).".into()
        },
        fixes,
    });
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{curve, four_balanced_classes, healthy, noise, view};
    use super::super::{Kind, Series, Severity, diagnose};

    /// The run's `oscillating_loss` finding (there must be one).
    fn oscillation(v: &super::super::RunView) -> super::super::Finding {
        diagnose(v)
            .get(Kind::OscillatingLoss)
            .cloned()
            .expect("oscillation")
    }

    fn with_acc(f: impl Fn(usize) -> f64, n: usize) -> super::super::RunView {
        let mut v = view(&[("train/loss", curve(n * 20, 1, |i| 0.5 + 0.1 * noise(i)))]);
        v.scalars.insert(
            "train/acc".into(),
            Series::from_points((1..=n).map(|e| ((e * 20) as u64, f(e)))),
        );
        v.scalars.insert(
            "epoch".into(),
            Series::from_points((1..=n).map(|e| ((e * 20) as u64, e as f64))),
        );
        v
    }

    #[test]
    fn accuracy_flips_of_a_model_stuck_at_chance_are_not_oscillation() {
        // 4 balanced classes: chance loss ln 4 ≈ 1.386, accuracy ~25%.
        let stuck = |loss: f64| {
            let mut v = with_acc(|e| if e % 3 == 0 { 0.35 } else { 0.23 }, 12);
            v.scalars.insert(
                "train/loss".into(),
                Series::from_points((0..12 * 20).map(|i| (i as u64, loss + 0.02 * noise(i)))),
            );
            v.datasets.push(four_balanced_classes());
            diagnose(&v)
        };
        assert!(stuck(1.38).get(Kind::OscillatingLoss).is_none());
        // The same swings with a loss far from chance are judged as usual.
        let f = stuck(0.6)
            .get(Kind::OscillatingLoss)
            .cloned()
            .expect("oscillating");
        assert_eq!(f.severity, Severity::Warning);
    }

    #[test]
    fn swinging_accuracy_oscillates() {
        let v = with_acc(|e| if e % 4 == 0 { 0.82 } else { 0.95 }, 30);
        let f = oscillation(&v);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.onset_step.is_some());
    }

    #[test]
    fn noisy_but_monotone_accuracy_does_not() {
        let v = with_acc(|e| (0.6 + 0.02 * e as f64).min(0.97) + 0.01 * noise(e), 30);
        assert!(diagnose(&v).get(Kind::OscillatingLoss).is_none());
        assert!(
            diagnose(&healthy(30, 40))
                .get(Kind::OscillatingLoss)
                .is_none()
        );
    }

    #[test]
    fn noise_of_a_converged_small_batch_run_is_not_oscillation() {
        // A small-batch RNN at a constant LR: the accuracy climbs from 0.33
        // and then wanders 0.75 ↔ 0.80 (swings of 5 points, above ζ = 0.03,
        // but the error only moves 20% ↔ 25%, a fraction of itself).
        let acc = |e: usize| {
            if e <= 6 {
                0.33 + 0.08 * e as f64
            } else if e.is_multiple_of(2) {
                0.80
            } else {
                0.75
            }
        };
        let v = with_acc(acc, 20);
        assert!(diagnose(&v).get(Kind::OscillatingLoss).is_none());
        // Heavy dropout: the train-mode accuracy wobbles 0.55 ↔ 0.62 while
        // the validation curve (eval mode) improves steadily.
        let mut v = with_acc(|e| if e % 3 == 0 { 0.62 } else { 0.55 }, 12);
        v.scalars.insert(
            "val/acc".into(),
            Series::from_points((1..=12).map(|e| ((e * 20) as u64, 0.58 + 0.017 * e as f64))),
        );
        assert!(diagnose(&v).get(Kind::OscillatingLoss).is_none());
    }

    #[test]
    fn overshooting_near_convergence_multiplies_the_error() {
        // The same 5-point swings at 4% error (96% ↔ 91%) more than double
        // the error: the steps overshoot.
        let v = with_acc(|e| if e % 3 == 0 { 0.91 } else { 0.96 }, 20);
        let f = oscillation(&v);
        assert_eq!(f.severity, Severity::Warning);
    }

    #[test]
    fn training_swings_the_validation_curves_do_not_share_are_train_mode_noise() {
        // Large swings of the train-mode accuracy (96% ↔ 91%) while the
        // validation accuracy and loss of the same weights improve steadily.
        let ep = |f: &dyn Fn(usize) -> f64| {
            Series::from_points((1..=20).map(|e| ((e * 20) as u64, f(e))))
        };
        let mut v = with_acc(|e| if e % 3 == 0 { 0.91 } else { 0.96 }, 20);
        v.scalars
            .insert("val/acc".into(), ep(&|e| 0.8 + 0.008 * e as f64));
        v.scalars
            .insert("val/loss".into(), ep(&|e| 0.6 * 0.95f64.powi(e as i32)));
        let d = diagnose(&v);
        assert!(d.get(Kind::OscillatingLoss).is_none());
        assert!(d.notes.iter().any(|n| n.contains("train-mode noise")));
        // Validation swinging with them: the weights overshoot.
        v.scalars.insert(
            "val/acc".into(),
            ep(&|e| if e % 3 == 0 { 0.88 } else { 0.95 }),
        );
        let f = oscillation(&v);
        assert_eq!(f.severity, Severity::Warning);
    }

    #[test]
    fn swings_need_both_samples_and_a_relative_change() {
        use super::super::stats::reversals_where;
        use super::error_swing;
        // Relative ×2 but below ζ in absolute terms: one sample's worth.
        assert!(!error_swing(0.01, 0.02, 0.03));
        // 5 points at 20% error: ×1.33 on the odds.
        assert!(!error_swing(0.20, 0.25, 0.03));
        // 5 points at 4% error: ×2.4 on the odds.
        assert!(error_swing(0.04, 0.09, 0.03));
        let zig = [0.04, 0.09, 0.04, 0.09, 0.04, 0.09];
        assert_eq!(
            reversals_where(&zig, &|a, b| error_swing(a, b, 0.03)),
            (4, Some(2))
        );
        let monotone = [0.5, 0.4, 0.45, 0.3, 0.2, 0.22, 0.1];
        assert_eq!(
            reversals_where(&monotone, &|a, b| error_swing(a, b, 0.03)).0,
            0
        );
    }

    #[test]
    fn cyclic_lr_is_only_info() {
        let mut v = with_acc(|e| if e % 4 == 0 { 0.82 } else { 0.95 }, 30);
        v.scalars.insert(
            "lr".into(),
            Series::from_points(curve(600, 1, |i| {
                1e-3 * (1.0 - (i % 100) as f64 / 100.0) + 1e-6
            })),
        );
        assert_eq!(
            diagnose(&v).get(Kind::OscillatingLoss).map(|f| f.severity),
            Some(Severity::Info)
        );
    }

    #[test]
    fn loss_only_runs_use_epoch_medians() {
        let mut v = view(&[(
            "train/loss",
            curve(
                600,
                1,
                |i| if (i / 20) % 3 == 0 { 2.0 } else { 0.5 } * (1.0 + 0.2 * noise(i)),
            ),
        )]);
        v.scalars.insert(
            "epoch".into(),
            Series::from_points((1..=30).map(|e| ((e * 20 - 1) as u64, e as f64))),
        );
        assert!(diagnose(&v).get(Kind::OscillatingLoss).is_some());
        let quiet = view(&[(
            "train/loss",
            curve(600, 1, |i| {
                2.0 * (-(i as f64) / 200.0).exp() * (1.0 + 0.3 * noise(i))
            }),
        )]);
        assert!(diagnose(&quiet).get(Kind::OscillatingLoss).is_none());
    }
}

#[cfg(test)]
mod validation_only {
    use super::super::testutil::{curve, noise, view};
    use super::super::{Kind, Series, Severity, diagnose};

    #[test]
    fn validation_swings_alone_are_info() {
        let mut v = view(&[(
            "train/loss",
            curve(600, 1, |i| {
                0.5 * (-(i as f64) / 300.0).exp() + 0.05 * noise(i).abs()
            }),
        )]);
        let ep = |f: &dyn Fn(usize) -> f64| {
            Series::from_points((1..=30).map(|e| ((e * 20) as u64, f(e))))
        };
        v.scalars.insert("epoch".into(), ep(&|e| e as f64));
        v.scalars.insert(
            "train/acc".into(),
            ep(&|e| (0.8 + 0.01 * e as f64).min(1.0)),
        );
        v.scalars.insert(
            "val/acc".into(),
            ep(&|e| if e % 3 == 0 { 0.85 } else { 0.9 }),
        );
        let f = diagnose(&v)
            .get(Kind::OscillatingLoss)
            .cloned()
            .expect("reported");
        assert_eq!(f.severity, Severity::Info);
    }
}
