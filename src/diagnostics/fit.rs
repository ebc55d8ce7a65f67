//! How well the model fits: overfitting, underfitting, slow convergence.
//!
//! All three need a trend, so they wait for [`MIN_EPOCHS`] evaluations and
//! leave a note otherwise. Curves are compared at epoch level (medians of the
//! mini-batch losses per epoch), and levels are medians of the last 3
//! evaluations, so one lucky or unlucky evaluation does not decide.
//!
//! **Overfitting** (research §2, Prechelt's GL on validation *error* and AT's
//! `test_not_well` gap). Validation loss alone is not enough: in healthy runs
//! it drifts up from over-confidence while validation accuracy holds (the
//! research pilot's GL > 5 fired on every healthy run). So, with accuracies:
//! train − val accuracy gap ≥ 0.07 (train acc > 0.9) or ≥ 0.10 (AT), *and*
//! validation loss ≥ 15% above its minimum with the minimum ≥ 3 evaluations
//! back (UP-style persistence); or a memorised training set: train accuracy
//! ≥ 0.99 with a gap ≥ that gap threshold (0.07 at such an accuracy) + one
//! standard error of the validation accuracy (0.05 when the validation size
//! is unknown), or a gap ≥ 0.2 with train accuracy ≥ 0.95 and validation
//! accuracy not improving for 3 evaluations. Relative validation *error* is not used: on small validation
//! sets one sample moves it by 25%+. Without accuracies (e.g. regression):
//! val loss ≥ 20% above its minimum, the minimum ≥ 3 evaluations back, while
//! the training loss kept falling. A rise must stand out of the validation
//! curve's own noise (a converged model's val loss wobbling on its plateau,
//! measured against its luckiest evaluation, is not a rise), and without
//! accuracies it must give back a real share of what validation learned (a
//! near-perfect model's loss creeping up by a sliver of the chance level is
//! over-confidence on its few mistakes). Onset = the best validation epoch, which
//! is also where early stopping should have stopped.
//!
//! **Underfitting** (AT `not_converge`, TDC's chance-level loss): the model
//! cannot fit its own training data. Training accuracy, normalised between
//! chance (majority class) and perfect, is < 0.6 *and* the training loss is
//! still > 50% of the chance-level loss (entropy of the class prior), after
//! the loss did move (≥ 10% down — otherwise it is slow convergence) and
//! has plateaued. Regression has no chance level in the logs, so it only gets
//! the slow-convergence rule. With a structural limit on capacity (a tiny
//! hidden layer, heavy weight decay or dropout) "not converged" is enough,
//! and the loss need not have moved. With a raised class imbalance, a model
//! stuck at the majority class is explained by the imbalance and
//! underfitting is not judged (the chance baseline is ambiguous there); nor
//! while the training accuracy is still recovering fast enough to leave the
//! poor range.
//!
//! **Slow convergence** (AT: no accuracy gain and accuracy below target; DD
//! "loss not decreasing"): after ≥ 5 epochs the training loss has fallen by
//! < 10% from its start and the model is still far from fitting (same
//! accuracy/loss gates as underfitting when available), or it is poor and
//! still improving at a crawl, or its weight updates are tiny (median
//! ‖Δw‖/‖w‖ < 1e-4 early in the run) while it has not converged. Measured
//! from the start of the run, so a plateau after an LR decay is not "slow";
//! skipped during LR warm-up, and when the loss sits > 1.5× above both its
//! first logged value and the chance level (it went the wrong way:
//! instability, not slowness); after an instability (exploding gradients,
//! dead units, a loss spike) or under a logged LR above its optimizer's
//! sensible range, a stall is a note, not slowness (a larger LR, slowness's
//! remedy, would make it worse).
//!
//! Each rule is split in three: `*_signals` measures (no thresholds),
//! `decide_*` applies the thresholds below to those measurements, and
//! `*_finding` words the verdict. The rules in full, with the constants:
//!
//! | verdict | rule |
//! |---|---|
//! | (any) | ≥ [`MIN_EPOCHS`] evaluations, else a note; underfitting / slow convergence also accept ≥ [`MIN_STEPS_NO_EPOCHS`] loss points when no epoch is known, and are not judged during LR warm-up or once the loss went non-finite or diverged |
//! | overfitting, with accuracies | gap ≥ [`GAP_HIGH_ACC`] (train acc > [`HIGH_TRAIN_ACC`]) or ≥ [`GAP_AT`], and val loss ≥ [`GL_LOSS`] above its best, that best ≥ [`STALE_EVALS`] evaluations back, and the rise ≥ [`RISE_NOISE_SIGMAS`] σ of the val loss's own evaluation-to-evaluation noise |
//! | overfitting, memorised | train acc ≥ [`MEMORISED_ACC`] and gap ≥ the gap above + SE of val acc ([`UNKNOWN_VAL_SE`] without a val size); or gap ≥ [`MEMORISED_GAP`], train acc ≥ [`MEMORISED_STALE_ACC`], best val acc ≥ [`STALE_EVALS`] back |
//! | overfitting, no accuracies | val loss ≥ [`GL_LOSS_NO_ACC`] (and ≥ [`GL_LOSS`]) above its best, that best ≥ [`STALE_EVALS`] back, the rise beyond the noise as above and ≥ [`MIN_FIT_GIVEN_BACK`] of the way from the best back to the loss scale, training loss lower now than at the best step |
//! | overfitting `error` | val loss ≥ [`SEVERE_GL_LOSS`] above its best and (with accuracies) gap ≥ [`SEVERE_GAP`]; otherwise `warning` |
//! | poor (can't fit) | normalised train acc < [`POOR_NORM_ACC`] and loss/chance > [`POOR_LOSS_RATIO`]; only one of them known: that one (loss/chance > [`POOR_LOSS_RATIO`] + [`LOSS_ONLY_MARGIN`]). With a capacity limit (hidden layer ≤ [`MIN_HIDDEN_UNITS`] units or fewer than the classes, weight decay ≥ [`HEAVY_WEIGHT_DECAY`], dropout ≥ [`HEAVY_DROPOUT`]) also "unfinished": normalised acc < [`FITTED_NORM_ACC`] or loss/chance > [`FITTED_LOSS_RATIO`] |
//! | still improving | normalised train acc gained ≥ [`LATE_GAIN`] over the last third of the epochs; without accuracy: recent loss < [`STILL_FALLING`] × the loss two thirds in |
//! | not judged poor | a raised class imbalance, or "recovering": the latest normalised acc plus its gain over the recent half reaches [`POOR_NORM_ACC`] ([`FITTED_NORM_ACC`] with a capacity limit) |
//! | slow convergence | not overshot (loss > [`OVERSHOOT`] × max(first loss, chance loss)), and: flat (progress < [`MIN_PROGRESS`] and > [`FLAT_MIN_PROGRESS`], no imbalance) and not known to be fine; or poor, still improving and progress > 0; or tiny updates (early median ‖Δw‖/‖w‖ < [`TINY_UPDATE`] and unfinished, or progress < [`TINY_UPDATE_MAX_PROGRESS`] when that is unknown) |
//! | underfitting | poor, progress ≥ [`MIN_PROGRESS`] or a capacity limit, and not still improving |

use std::collections::BTreeMap;

use super::context::Ctx;
use super::names::Role;
use super::stats::{fmt_num, fmt_pct, fmt_step, median, recent_len};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};

/// Evaluations (epochs) needed before any fit verdict.
pub const MIN_EPOCHS: usize = 5;
/// Normalised training accuracy below which the model "cannot fit".
const POOR_NORM_ACC: f64 = 0.6;
/// Training loss / chance-level loss above which the model "cannot fit".
const POOR_LOSS_RATIO: f64 = 0.5;
/// Validation loss above its best (relative) that counts as "got worse".
/// Healthy runs' over-confidence drift stays below ~6% in the dev set.
const GL_LOSS: f64 = 0.15;
/// Update ratio ‖Δw‖/‖w‖ below which weights "change too slowly" (TDC:
/// log10 < −4; healthy runs sit around 1e-3).
const TINY_UPDATE: f64 = 1e-4;
/// Relative loss decrease below which the loss "has not moved".
const MIN_PROGRESS: f64 = 0.1;

/// Evaluations since the best validation value (counting the best one) from
/// which validation "has stopped improving" (Prechelt's UP, strip of 3).
const STALE_EVALS: usize = 3;
/// Training accuracy above which the tighter [`GAP_HIGH_ACC`] applies: near
/// the top, a few points of gap are already many mistakes.
const HIGH_TRAIN_ACC: f64 = 0.9;
/// Train − val accuracy gap that counts as overfitting for a model above
/// [`HIGH_TRAIN_ACC`].
const GAP_HIGH_ACC: f64 = 0.07;
/// Train − val accuracy gap that counts as overfitting (AT's `test_not_well`).
const GAP_AT: f64 = 0.10;
/// Training accuracy from which the training set counts as memorised.
const MEMORISED_ACC: f64 = 0.99;
/// Standard error of the validation accuracy assumed when the validation
/// set's size is unknown (about a 100-sample set at 50–70%).
const UNKNOWN_VAL_SE: f64 = 0.05;
/// Gap that counts as memorisation without a rising validation loss, when
/// validation accuracy has stalled (twice the AT gap).
const MEMORISED_GAP: f64 = 0.2;
/// Training accuracy needed for the [`MEMORISED_GAP`] rule.
const MEMORISED_STALE_ACC: f64 = 0.95;
/// Validation loss above its best needed without accuracies: the loss is
/// then the only evidence, so it must rise further than [`GL_LOSS`].
const GL_LOSS_NO_ACC: f64 = 0.2;
/// Noise standard deviations by which the validation loss must now stand
/// above its best for the rise to count. "Now" is a median of 3 noisy
/// evaluations (its own spread ≈ 0.7 σ) and the best is the minimum of all
/// of them (≈ 2 σ below the curve's level after 20 evaluations of pure
/// noise), so a plateau that only wobbles lies up to about 3 σ above its
/// best: anything less is the end of a noisy plateau, not a rise.
const RISE_NOISE_SIGMAS: f64 = 3.0;
/// Share of what validation learned (from the loss scale — the chance level,
/// else the step-0 training loss — down to its best) that the validation loss
/// must give back when it is the only evidence: the same share by which a
/// loss counts as having moved at all ([`MIN_PROGRESS`]). A model far below
/// the scale (near-perfect on validation) whose loss creeps up by a
/// hundredth of the scale is growing over-confident on its few mistakes,
/// not losing what it learned.
const MIN_FIT_GIVEN_BACK: f64 = MIN_PROGRESS;
/// Validation loss above its best that makes overfitting an `error`.
const SEVERE_GL_LOSS: f64 = 0.5;
/// Gap that, with [`SEVERE_GL_LOSS`], makes overfitting an `error`.
const SEVERE_GAP: f64 = 0.2;
/// Normalised training accuracy below which a train/val gap is not judged
/// as overfitting (the model has not fitted its training data yet).
const MIN_FIT_FOR_OVERFIT: f64 = 0.5;
/// Parameters per training sample from which the wording blames capacity
/// ("it can memorise the training set").
pub(crate) const MEMORISE_PARAMS_PER_SAMPLE: f64 = 10.0;

/// Loss points that stand in for [`MIN_EPOCHS`] when no epoch is known
/// (about 5 epochs of a small dataset).
const MIN_STEPS_NO_EPOCHS: usize = 200;
/// Extra margin on [`POOR_LOSS_RATIO`] when the loss is the only evidence
/// (no accuracy to confirm it).
const LOSS_ONLY_MARGIN: f64 = 0.1;
/// Normalised training accuracy short of which the model has not converged
/// (less than 90% of the way from chance to perfect).
const FITTED_NORM_ACC: f64 = 0.9;
/// Loss / chance-level loss above which the model has not converged
/// (without accuracy).
const FITTED_LOSS_RATIO: f64 = 0.2;
/// Normalised accuracy gained over the last third of the epochs that counts
/// as "still improving".
const LATE_GAIN: f64 = 0.1;
/// Recent loss below this share of the loss two thirds into the run counts
/// as "still improving" (fell ≥ 10% over the last third).
const STILL_FALLING: f64 = 0.9;
/// Progress above which a loss that did not fall is "flat": one that rose
/// by 50% or more went the wrong way (instability, not slowness).
const FLAT_MIN_PROGRESS: f64 = -0.5;
/// Progress below which tiny updates count as slow when it is unknown
/// whether the model converged (half the way down is progress).
const TINY_UPDATE_MAX_PROGRESS: f64 = 0.5;
/// Recent loss above this multiple of both the first logged loss and the
/// chance level: the optimiser overshot (not slow convergence).
const OVERSHOOT: f64 = 1.5;
/// Hidden-layer width at or below which the model is too small for any task.
const MIN_HIDDEN_UNITS: u64 = 2;
/// Weight decay from which it outweighs the data term (TDC: "overwhelming
/// regularisation").
const HEAVY_WEIGHT_DECAY: f64 = 0.05;
/// Dropout from which most of the signal is removed.
const HEAVY_DROPOUT: f64 = 0.5;
/// Epoch-level accuracies needed to measure the gain over the last third.
const MIN_EVALS_LATE_GAIN: usize = 3;
/// Epoch-level accuracies needed to measure the gain over the recent half.
const MIN_EVALS_RECOVERY: usize = 4;
/// Minimum window (points) of the loss two thirds into the run.
const LATE_LOSS_WINDOW: usize = 5;

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    overfitting(ctx, out);
    under_and_slow(ctx, out);
}

fn finite(points: Vec<(u64, f64)>) -> Vec<(u64, f64)> {
    points.into_iter().filter(|p| p.1.is_finite()).collect()
}

fn tail3(points: &[(u64, f64)]) -> Option<f64> {
    let start = points.len().saturating_sub(3);
    median(&points[start..].iter().map(|p| p.1).collect::<Vec<_>>())
}

/// Standard deviation of the evaluation-to-evaluation noise of `points`:
/// the median absolute second difference, scaled to a normal σ (a second
/// difference of independent noise has variance 6σ²; 1.4826 turns a median
/// absolute deviation into σ). Second differences cancel a steady trend, so
/// a curve that rises or falls smoothly has little noise. 0 with fewer than
/// 3 points.
fn noise_sigma(points: &[(u64, f64)]) -> f64 {
    let d2: Vec<f64> = points
        .windows(3)
        .map(|w| (w[2].1 - 2.0 * w[1].1 + w[0].1).abs())
        .collect();
    median(&d2).map_or(0.0, |m| 1.4826 * m / 6f64.sqrt())
}

/// Value of `points` at (or just before) `step`.
fn at_step(points: &[(u64, f64)], step: u64) -> Option<f64> {
    points
        .iter()
        .rev()
        .find(|p| p.0 <= step)
        .or(points.first())
        .map(|p| p.1)
}

// ---------------------------------------------------------------------------
// Overfitting

/// Training accuracy and train − val accuracy gap (medians of the last 3
/// evaluations).
#[derive(Debug, Clone, Copy, PartialEq)]
struct AccGap {
    train: f64,
    gap: f64,
}

/// What the overfitting rule measures.
#[derive(Debug, Clone, PartialEq)]
struct OverfitSignals {
    /// Validation evaluations: the longer of the loss and accuracy curves.
    evals: usize,
    /// Validation loss now (median of the last 3) over its best, − 1; NaN
    /// without validation loss or with a best ≤ 0.
    loss_above_best: f64,
    /// Validation loss now − its best, in standard deviations of the
    /// curve's own evaluation-to-evaluation noise (robust, from second
    /// differences, so a steady trend is not counted as noise); NaN when
    /// unknown, infinite on a noiseless curve that rose.
    loss_rise_noise: f64,
    /// Validation loss now − its best, as a share of the way from the loss
    /// scale (chance level, else step-0 training loss) down to that best:
    /// how much of what validation learned it gave back; NaN when unknown.
    loss_fit_given_back: f64,
    /// Training accuracy normalised between chance (0) and perfect (1);
    /// `None` without accuracies or a chance level.
    train_norm_acc: Option<f64>,
    /// 1 − training loss now / its first value (the step-0 baseline).
    train_loss_fit: Option<f64>,
    /// The validation loss came back down from its peak since the best (now
    /// below best + 70% of the way to that peak): a bump, not a rise.
    loss_receding: bool,
    /// The best validation accuracy is within chance (the majority share)
    /// plus 2 standard errors (5 points when the validation size is
    /// unknown): the model never generalised at all.
    val_acc_at_chance: bool,
    /// The same for the validation error (reported, not judged); NaN when
    /// unknown or the best accuracy is 1.
    error_above_best: f64,
    /// Evaluations from the best validation loss to the latest, both counted
    /// (1: the latest is the best); `None` without validation loss.
    loss_evals_since_best: Option<usize>,
    /// The same for the best validation accuracy.
    acc_evals_since_best: Option<usize>,
    /// Training accuracy and gap, with both accuracies logged.
    acc: Option<AccGap>,
    /// Standard error of the validation accuracy (from the validation set's
    /// size, when known and there is a gap).
    val_acc_se: Option<f64>,
    /// Epoch-level training loss at the best validation-loss step, and now
    /// (median of the last 3).
    train_loss_at_best: Option<f64>,
    train_loss_now: Option<f64>,
    /// Step of the best validation loss, else of the best validation accuracy.
    best_step: Option<u64>,
    /// 1-based epoch of `best_step`.
    best_epoch: Option<usize>,
    /// Whether `best_step` is the validation loss's (else the accuracy's).
    best_is_loss: bool,
    /// For the wording: keys of the series used, training-set size, model
    /// parameters, weight decay and dropout (0 when not logged).
    series: Vec<String>,
    n_train: Option<u64>,
    params: Option<u64>,
    weight_decay: f64,
    dropout: f64,
}

/// Which overfitting rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverfitRule {
    /// Accuracy gap with a rising validation loss.
    GapAndRisingLoss,
    /// (Almost) perfect training accuracy, gap beyond its standard error.
    Memorised,
    /// Large gap with stalled validation accuracy.
    MemorisedStalled,
    /// No accuracies: validation loss rising while the training loss falls.
    RisingLoss,
    /// Training set memorised, validation loss ≥ 50% above its best and
    /// still rising while validation accuracy stays flat.
    ConfidenceLoss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverfitVerdict {
    /// Fewer than [`MIN_EPOCHS`] evaluations: a note, no verdict.
    TooFewEvals,
    Overfitting {
        rule: OverfitRule,
        severe: bool,
    },
}

fn overfitting(ctx: &Ctx, out: &mut Diagnosis) {
    let Some(s) = overfit_signals(ctx) else {
        return;
    };
    // A diverged run's validation loss rises because the model broke, not
    // because it memorised its training set.
    if out
        .get(Kind::Divergence)
        .is_some_and(|f| f.severity.is_raised())
    {
        out.note("overfitting not judged: the training loss diverged, so the validation loss rises with it");
        return;
    }
    match decide_overfit(&s) {
        Some(OverfitVerdict::TooFewEvals) => out.note(format!(
            "not enough data yet for overfitting ({} of {MIN_EPOCHS} evaluations)",
            s.evals
        )),
        Some(OverfitVerdict::Overfitting { severe, .. }) => out.push(overfit_finding(&s, severe)),
        None => {}
    }
}

/// Measures the validation curves against their best; `None` without any
/// validation curve.
fn overfit_signals(ctx: &Ctx) -> Option<OverfitSignals> {
    let vl = ctx
        .val_loss
        .map(|n| finite(ctx.epoch_level(n.series)))
        .unwrap_or_default();
    let va = ctx
        .val_acc
        .map(|n| finite(ctx.epoch_level(n.series)))
        .unwrap_or_default();
    if vl.is_empty() && va.is_empty() {
        return None;
    }
    let ta = ctx
        .train_acc
        .map(|n| finite(ctx.epoch_level(n.series)))
        .unwrap_or_default();
    let tl = ctx
        .train_loss
        .map(|n| finite(ctx.epoch_level(n.series)))
        .unwrap_or_default();

    // The latest epoch with the lowest validation loss (ties: the later one,
    // as early stopping with patience would keep it).
    let best_loss = vl
        .iter()
        .enumerate()
        .rev()
        .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .map(|(i, p)| (i, *p));
    // Relative to the best, floored at 10% of the loss scale (the chance
    // level, else the first training loss): below it the model is nearly
    // perfect on validation, and on a small validation set a near-zero loss
    // doubling from 0.02 to 0.04 is one sample, not a rise.
    // Without a chance level, the step-0 training loss (before any update)
    // stands in for it.
    let first_train = ctx.train_loss.and_then(|l| {
        l.series
            .values
            .iter()
            .copied()
            .find(|v| v.is_finite() && *v > 0.0)
    });
    let scale = ctx
        .chance_loss()
        .or(first_train)
        .or_else(|| vl.first().map(|p| p.1))
        .unwrap_or(0.0);
    let loss_above_best = match (best_loss, tail3(&vl)) {
        (Some((_, (_, min))), Some(now)) if min > 0.0 => (now - min) / min.max(0.1 * scale),
        _ => f64::NAN,
    };
    let loss_rise_noise = match (best_loss, tail3(&vl)) {
        (Some((_, (_, min))), Some(now)) => {
            let sigma = noise_sigma(&vl);
            if sigma > 0.0 {
                (now - min) / sigma
            } else if now > min {
                f64::INFINITY
            } else {
                0.0
            }
        }
        _ => f64::NAN,
    };
    let loss_fit_given_back = match (best_loss, tail3(&vl)) {
        (Some((_, (_, min))), Some(now)) if scale > min => (now - min) / (scale - min),
        _ => f64::NAN,
    };
    let loss_receding = match (best_loss, tail3(&vl)) {
        (Some((i, (_, min))), Some(now)) => {
            let peak = vl[i..].iter().map(|p| p.1).fold(min, f64::max);
            peak > min && now < min + 0.7 * (peak - min)
        }
        _ => false,
    };
    let best_acc = va
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .map(|(i, p)| (i, *p));
    let error_above_best = match (best_acc, tail3(&va)) {
        (Some((_, (_, max))), Some(now)) if max < 1.0 => (1.0 - now) / (1.0 - max) - 1.0,
        _ => f64::NAN,
    };
    let acc = match (tail3(&ta), tail3(&va)) {
        (Some(t), Some(v)) => Some(AccGap {
            train: t,
            gap: t - v,
        }),
        _ => None,
    };
    let n_val = ctx.view.dataset("val").and_then(|d| d.n).unwrap_or(0) as f64;
    let val_acc_se = acc.filter(|_| n_val > 0.0).map(|a| {
        let val_acc = a.train - a.gap;
        (val_acc * (1.0 - val_acc) / n_val).sqrt()
    });
    let best_step = best_loss.map(|(_, p)| p.0).or(best_acc.map(|(_, p)| p.0));
    let model = ctx.view.model.as_ref();
    let val_acc_at_chance = match (best_acc, ctx.chance_acc()) {
        (Some((_, (_, best))), Some(c)) => {
            let margin = if n_val > 0.0 {
                2.0 * (c * (1.0 - c) / n_val).sqrt()
            } else {
                UNKNOWN_VAL_SE
            };
            best <= c + margin.max(0.02)
        }
        _ => false,
    };
    Some(OverfitSignals {
        evals: vl.len().max(va.len()),
        loss_above_best,
        loss_rise_noise,
        loss_fit_given_back,
        train_loss_fit: match (first_train, tail3(&tl)) {
            (Some(f), Some(now)) => Some(1.0 - now / f),
            _ => None,
        },
        train_norm_acc: match (acc, ctx.chance_acc()) {
            (Some(a), Some(c)) if c < 1.0 => Some((a.train - c) / (1.0 - c)),
            _ => None,
        },
        loss_receding,
        val_acc_at_chance,
        error_above_best,
        loss_evals_since_best: best_loss.map(|(i, _)| vl.len() - i),
        acc_evals_since_best: best_acc.map(|(i, _)| va.len() - i),
        acc,
        val_acc_se,
        train_loss_at_best: best_loss.and_then(|(_, (step, _))| at_step(&tl, step)),
        train_loss_now: tail3(&tl),
        best_step,
        best_epoch: best_step
            .and_then(|s| ctx.epoch_ends.iter().position(|e| *e >= s))
            .map(|i| i + 1),
        best_is_loss: best_loss.is_some(),
        series: [ctx.val_loss, ctx.val_acc, ctx.train_acc]
            .iter()
            .flatten()
            .map(|n| n.key.to_string())
            .collect(),
        n_train: ctx.view.dataset("train").and_then(|d| d.n),
        params: model.and_then(|m| m.total_params),
        weight_decay: model
            .and_then(|m| m.optimizer.as_ref())
            .and_then(|o| o.weight_decay)
            .unwrap_or(0.0),
        dropout: ctx
            .view
            .config
            .get("dropout")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0),
    })
}

/// The overfitting rules of the module table, applied to `s`.
fn decide_overfit(s: &OverfitSignals) -> Option<OverfitVerdict> {
    if s.evals < MIN_EPOCHS {
        return Some(OverfitVerdict::TooFewEvals);
    }
    // The best validation epoch lies at least STALE_EVALS evaluations back:
    // validation has stopped improving.
    let stale = |since: Option<usize>| since.is_some_and(|n| n >= STALE_EVALS);
    // A rise within the curve's own noise is the end of a noisy plateau
    // (NaN: noise unknown, not held against the rise).
    let above_noise = s.loss_rise_noise.is_nan() || s.loss_rise_noise >= RISE_NOISE_SIGMAS;
    let loss_rising = stale(s.loss_evals_since_best)
        && s.loss_above_best >= GL_LOSS
        && !s.loss_receding
        && above_noise;
    let rule = if let Some(AccGap { train, gap }) = s.acc {
        // A model must fit its training data before it can overfit it:
        // a gap at a training accuracy less than half-way from chance to
        // perfect is instability or a model that cannot learn.
        // Without a chance level, the training loss's fall from its step-0
        // value tells.
        let fitted = s
            .train_norm_acc
            .or(s.train_loss_fit)
            .is_none_or(|a| a >= MIN_FIT_FOR_OVERFIT);
        if !fitted {
            return None;
        }
        let th = if train > HIGH_TRAIN_ACC {
            GAP_HIGH_ACC
        } else {
            GAP_AT
        };
        // Memorised: (almost) every training sample right, validation well
        // below — by more than the gap threshold plus one standard error of
        // the validation accuracy (small validation sets are coarse).
        let se = s.val_acc_se.unwrap_or(UNKNOWN_VAL_SE);
        if gap >= th && loss_rising {
            OverfitRule::GapAndRisingLoss
        } else if train >= MEMORISED_ACC && gap >= th + se {
            OverfitRule::Memorised
        } else if gap >= MEMORISED_GAP
            && train >= MEMORISED_STALE_ACC
            && stale(s.acc_evals_since_best)
        {
            OverfitRule::MemorisedStalled
        } else if train >= MEMORISED_ACC && loss_rising && s.loss_above_best >= SEVERE_GL_LOSS {
            // Validation accuracy holds, but its loss climbs by half or more
            // and keeps climbing: the training set is memorised and the
            // validation mistakes become ever more confident.
            OverfitRule::ConfidenceLoss
        } else {
            return None;
        }
    } else {
        // No accuracies: the validation loss is the only evidence, and the
        // training loss must show a fit — at most half its step-0 value
        // (a model that has not fitted its training data cannot overfit it).
        s.loss_evals_since_best?;
        let train_falling = match (s.train_loss_at_best, s.train_loss_now) {
            (Some(then), Some(now)) => now < then,
            _ => true,
        };
        let fitted = s.train_loss_fit.is_none_or(|p| p >= MIN_FIT_FOR_OVERFIT);
        // Without an accuracy gap to show the lost generalisation, the loss
        // must give back a real share of what validation learned.
        let gave_back =
            s.loss_fit_given_back.is_nan() || s.loss_fit_given_back >= MIN_FIT_GIVEN_BACK;
        if loss_rising
            && s.loss_above_best >= GL_LOSS_NO_ACC
            && gave_back
            && train_falling
            && fitted
        {
            OverfitRule::RisingLoss
        } else {
            return None;
        }
    };
    let severe = s.loss_above_best >= SEVERE_GL_LOSS && s.acc.is_none_or(|a| a.gap >= SEVERE_GAP);
    Some(OverfitVerdict::Overfitting { rule, severe })
}

/// The overfitting finding (`error` when `severe`, else `warning`).
///
/// When the validation curve that locates the best step has not stopped
/// improving — its best is fewer than [`STALE_EVALS`] evaluations back, the
/// rules' own test for "stopped improving", so only the memorisation rules
/// can have fired — there is no point where validation turned: no onset, no
/// rise of the validation loss in the wording, and early stopping (which
/// would stop at about the end anyway) is not offered.
fn overfit_finding(s: &OverfitSignals, severe: bool) -> Finding {
    let gl_loss = s.loss_above_best;
    let since_best = if s.best_is_loss {
        s.loss_evals_since_best
    } else {
        s.acc_evals_since_best
    };
    let best_step = s
        .best_step
        .filter(|_| since_best.is_none_or(|n| n >= STALE_EVALS));
    let gap_v = s.acc.map(|a| a.gap);
    let mut metrics = BTreeMap::new();
    if gl_loss.is_finite() {
        metrics.insert("val_loss_above_best".into(), gl_loss);
    }
    if s.error_above_best.is_finite() {
        metrics.insert("val_error_above_best".into(), s.error_above_best);
    }
    if let Some(a) = s.acc {
        metrics.insert("train_acc".into(), a.train);
        metrics.insert("train_val_gap".into(), a.gap);
    }
    if let Some(step) = s.best_step {
        metrics.insert("best_val_step".into(), step as f64);
    }
    let mut parts = Vec::new();
    if let Some(g) = gap_v {
        parts.push(format!("train/val accuracy gap {:.0} points", g * 100.0));
    }
    // Still improving: a median of the last evaluations a little above the
    // best is noise around the best, not a rise.
    let still_best = best_step.is_none() && s.best_step.is_some();
    if gl_loss.is_finite() && gl_loss > 0.0 && !still_best {
        parts.push(format!(
            "validation loss {} above its best",
            fmt_pct(gl_loss)
        ));
    }
    let (wd, dropout) = (s.weight_decay, s.dropout);
    let cause = match (s.n_train, s.params) {
        _ if s.val_acc_at_chance => "Validation accuracy never rose above the chance level while the training fit improved: what the model learns from the training labels does not carry over at all, as when the training labels are shuffled or misaligned with the inputs (a wrong join, shuffling x and y separately) or validation comes from other classes.".into(),
        (Some(n), Some(p)) if p as f64 > MEMORISE_PARAMS_PER_SAMPLE * n as f64 => format!(
            "The model has {p} parameters for {n} training samples ({:.0} per sample): it can memorise the training set, so training error keeps falling while validation error does not.",
            p as f64 / n as f64
        ),
        _ => "The model fits noise specific to the training set: training error keeps falling while validation error stalls or rises.".into(),
    };
    let mut fixes = Vec::new();
    if s.val_acc_at_chance {
        fixes.push("Check that the training labels go with their inputs: print a few (x, y) pairs, and shuffle inputs and labels together (one permutation for both).".into());
    }
    match (best_step, s.best_epoch) {
        (Some(st), Some(e)) => fixes.push(format!("Stop at step {} (epoch {e}), where validation was best: use early stopping (patience ≈ 3 evaluations) and restore that checkpoint.", fmt_step(st))),
        (Some(st), None) => fixes.push(format!("Stop at step {}, where validation was best: use early stopping and restore that checkpoint.", fmt_step(st))),
        _ if still_best => {}
        _ => fixes.push("Use early stopping on the validation metric and restore the best checkpoint.".into()),
    }
    fixes.push(match s.n_train {
        Some(n) => format!("Get more training data (now {n} samples) or use data augmentation."),
        None => "Get more training data or use data augmentation.".into(),
    });
    fixes.push(if wd > 0.0 || dropout > 0.0 {
        format!(
            "Regularise more: dropout {} → 0.3–0.5, weight decay (L2) {} → {}, or L1.",
            fmt_num(dropout),
            fmt_num(wd),
            fmt_num(if wd > 0.0 { wd * 10.0 } else { 1e-4 })
        )
    } else {
        "Add regularisation: dropout 0.2–0.5, weight decay (L2) 1e-4…1e-3, or L1.".into()
    });
    fixes.push(match s.params {
        Some(p) => format!("Use a smaller model (now {p} parameters)."),
        None => "Use a smaller model.".into(),
    });
    Finding {
        kind: Kind::Overfitting,
        caused_by: None,
        severity: if severe {
            Severity::Error
        } else {
            Severity::Warning
        },
        onset_step: best_step,
        title: format!(
            "Overfitting{}: {}",
            best_step
                .map(|st| format!(" since step {}", fmt_step(st)))
                .unwrap_or_default(),
            parts.join(", ")
        ),
        evidence: Evidence {
            series: s.series.clone(),
            layer: None,
            metrics,
            summary: match s.best_step {
                Some(best) if still_best => format!(
                    "Validation {} has not stopped improving (best at step {}), but {}.",
                    if s.best_is_loss { "loss" } else { "accuracy" },
                    fmt_step(best),
                    parts.join(" and ")
                ),
                _ => format!(
                    "Validation {} was best at step {}; since then {}.",
                    if s.best_is_loss { "loss" } else { "accuracy" },
                    s.best_step.map(fmt_step).unwrap_or_else(|| "?".into()),
                    parts.join(" and ")
                ),
            },
            samples: Vec::new(),
        },
        cause,
        fixes,
    }
}

// ---------------------------------------------------------------------------
// Underfitting and slow convergence

/// The training-loss levels, when the run has a positive start level.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LossLevels {
    /// Median of the first few losses, and of the recent ones.
    start: f64,
    recent: f64,
    /// `1 − recent / start`.
    progress: f64,
    /// `recent` over a positive chance-level loss.
    loss_ratio: Option<f64>,
}

/// Normalised training accuracy now, and its gain over a span of epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AccGain {
    now: f64,
    gain: f64,
}

/// What the underfitting and slow-convergence rules measure.
#[derive(Debug, Clone, PartialEq)]
struct UnderfitSignals {
    /// Non-finite losses, or a raised divergence finding.
    diverged: bool,
    /// Epochs (evaluations) seen, and mini-batch training-loss points.
    epochs: usize,
    loss_points: usize,
    in_warmup: bool,
    /// `None` when the loss has no positive start level.
    levels: Option<LossLevels>,
    /// First finite training loss (before any update).
    first_loss: Option<f64>,
    chance_acc: Option<f64>,
    chance_loss: Option<f64>,
    /// Training accuracy (median of the last 3 evaluations), raw and
    /// normalised between chance and perfect.
    train_acc: Option<f64>,
    norm_acc: Option<f64>,
    /// Normalised accuracy gain over the last third of the epochs (≥
    /// [`MIN_EVALS_LATE_GAIN`] evaluations).
    late_gain: Option<f64>,
    /// Median training loss just before two thirds of the run.
    loss_two_thirds: Option<f64>,
    /// Latest normalised accuracy and its gain over the recent half (≥
    /// [`MIN_EVALS_RECOVERY`] evaluations).
    half_gain: Option<AccGain>,
    /// Structural limits on capacity, as (cause, fix).
    limits: Vec<(String, String)>,
    /// Median update ratio over the run, and early in the run.
    update: Option<f64>,
    early_update: Option<f64>,
    /// A raised class-imbalance finding.
    imbalanced: bool,
    /// The first raised unit-level finding that explains a stall.
    unit_problem: Option<Kind>,
    /// Exploding gradients or dead units were raised, the loss spiked (see
    /// `Ctx::loss_spiked`), or the logged LR is above its optimizer's
    /// sensible range (the `hyperparameters` check): the LR was too high at
    /// some point, so a stall is not slowness and a larger LR is never the
    /// fix.
    unstable: bool,
    /// The LR schedule has annealed the LR to < 5% of its peak: a plateau
    /// then reflects the schedule, not the model's capacity.
    annealed: bool,
    /// A language model (see `Ctx::is_language_model`): its accuracy and
    /// loss have a floor set by the text, so "far from perfect" is no
    /// evidence of underfitting.
    language_model: bool,
    /// For the wording: peak LR (the configured one, not an annealed value), series keys, first loss step, end of
    /// epoch [`MIN_EPOCHS`], narrowest hidden layer.
    lr: Option<f64>,
    series: Vec<String>,
    first_step: Option<u64>,
    min_epochs_end: Option<u64>,
    narrowest: Option<String>,
}

/// What to say about underfitting and slow convergence.
#[derive(Debug, Clone, Copy, PartialEq)]
enum UnderfitOutcome {
    /// Too few epochs (or steps): a note.
    TooEarly,
    /// LR warm-up: a note.
    Warmup,
    Judged(UnderfitVerdict),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct UnderfitVerdict {
    levels: LossLevels,
    /// The loss overshot (note: slow convergence not judged).
    overshot: bool,
    /// Slow convergence, blaming the LR when `lr_low`.
    slow: Option<Slow>,
    /// Poor, but not judged for the imbalance / a recovery (notes).
    imbalance_note: bool,
    recovering_note: bool,
    /// Poor, but not judged: the LR was annealed / a language model (notes).
    schedule_note: bool,
    language_note: bool,
    /// Slow, but explained by a unit-level finding / by instability (notes).
    explained_by: Option<Kind>,
    unstable_note: bool,
    underfit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slow {
    lr_low: bool,
}

fn under_and_slow(ctx: &Ctx, out: &mut Diagnosis) {
    let Some(s) = underfit_signals(ctx, out) else {
        return;
    };
    match decide_underfit(&s) {
        None => {}
        Some(UnderfitOutcome::TooEarly) => out.note(format!(
            "not enough data yet for underfitting or slow convergence ({} of {MIN_EPOCHS} epochs)",
            s.epochs
        )),
        Some(UnderfitOutcome::Warmup) => {
            out.note("underfitting and slow convergence not judged during LR warm-up")
        }
        Some(UnderfitOutcome::Judged(v)) => {
            if v.overshot {
                out.note("slow convergence not judged: the training loss rose well above its first steps and the chance level (instability, not slowness)");
            }
            if let Some(slow) = v.slow {
                out.push(slow_finding(&s, &v.levels, slow));
            }
            if v.imbalance_note {
                out.note("underfitting not judged: with imbalanced classes, accuracy near the majority share is explained by the imbalance");
            }
            if v.schedule_note {
                out.note("underfitting not judged: the LR schedule annealed the learning rate to < 5% of its peak, so the plateau is the schedule's end, not a limit of the model");
            }
            if v.language_note {
                out.note("underfitting not judged: a language model's loss has a floor set by the text's own entropy, so its distance from perfect says nothing about capacity");
            }
            if let Some(k) = v.explained_by {
                out.note(format!(
                    "slow convergence not raised: explained by {k} (fix that first)"
                ));
            }
            if v.unstable_note {
                out.note("slow convergence not raised: the learning rate was too high at some point (the loss spiked, the gradients exploded, units died, or the logged learning rate is above its sensible range), so the stall is not slowness and a larger learning rate would not help");
            }
            if v.recovering_note {
                out.note("underfitting not judged yet: training accuracy is still rising fast enough to leave the poor range");
            }
            if v.underfit {
                out.push(underfit_finding(&s, &v.levels));
            }
        }
    }
}

/// Measures the training curves (and reads the findings so far); `None`
/// without a training loss.
fn underfit_signals(ctx: &Ctx, out: &Diagnosis) -> Option<UnderfitSignals> {
    let train = ctx.train_loss?;
    let raised = |k: Kind| out.get(k).is_some_and(|f| f.severity.is_raised());
    let levels = match (ctx.loss_start(), ctx.loss_recent()) {
        (Some(start), Some(recent)) if start > 0.0 => Some(LossLevels {
            start,
            recent,
            progress: 1.0 - recent / start,
            loss_ratio: ctx.chance_loss().filter(|c| *c > 0.0).map(|c| recent / c),
        }),
        _ => None,
    };
    let chance_acc = ctx.chance_acc();
    let ta = ctx
        .train_acc
        .map(|n| finite(ctx.epoch_level(n.series)))
        .unwrap_or_default();
    let norm = |acc: f64| match chance_acc {
        Some(c) if c < 1.0 => (acc - c) / (1.0 - c),
        _ => acc,
    };
    let late_gain = (ta.len() >= MIN_EVALS_LATE_GAIN).then(|| {
        let i = ta.len() - ta.len().div_ceil(3);
        norm(ta[ta.len() - 1].1) - norm(ta[i.saturating_sub(1)].1)
    });
    let v = &train.series.values;
    let w = recent_len(v.len(), LATE_LOSS_WINDOW);
    let end = (2 * v.len() / 3).max(w);
    let half_gain = (ta.len() >= MIN_EVALS_RECOVERY).then(|| {
        let (n, mid) = (ta.len(), ta.len() / 2);
        AccGain {
            now: norm(ta[n - 1].1),
            gain: norm(ta[n - 1].1) - norm(ta[mid - 1].1),
        }
    });
    let unit_problem = [
        Kind::DeadRelu,
        Kind::VanishingGradients,
        Kind::UnchangedWeights,
        Kind::SaturatedActivations,
    ]
    .into_iter()
    .find(|k| raised(*k));
    let model = ctx.view.model.as_ref();
    let narrowest = model.and_then(|m| {
        let n = m.layers.len();
        m.layers
            .iter()
            .take(n.saturating_sub(1))
            .filter_map(|l| l.outputs.map(|o| (o, l.name.clone())))
            .min()
    });
    Some(UnderfitSignals {
        // A diverging run is not "slow": its loss went the wrong way.
        diverged: ctx.loss_nonfinite() || raised(Kind::Divergence),
        epochs: ctx.epochs_seen(),
        loss_points: train.series.len(),
        in_warmup: ctx.in_warmup(),
        levels,
        first_loss: v.iter().copied().find(|x| x.is_finite()),
        chance_acc,
        chance_loss: ctx.chance_loss(),
        train_acc: tail3(&ta),
        norm_acc: tail3(&ta).map(norm),
        late_gain,
        loss_two_thirds: median(&v[end - w..end]),
        half_gain,
        limits: capacity_limits(ctx),
        update: median_update_ratio(ctx),
        early_update: early_update_ratio(ctx),
        imbalanced: raised(Kind::ClassImbalance),
        unit_problem,
        unstable: raised(Kind::ExplodingGradients)
            || raised(Kind::DeadRelu)
            || ctx.loss_spiked()
            || lr_above_range(ctx),
        annealed: matches!((ctx.peak_lr(), ctx.current_lr()), (Some(p), Some(c)) if c < 0.05 * p),
        language_model: ctx.is_language_model(),
        lr: ctx.peak_lr(),
        series: [ctx.train_loss, ctx.train_acc]
            .iter()
            .flatten()
            .map(|n| n.key.to_string())
            .collect(),
        first_step: train.series.steps.first().copied(),
        min_epochs_end: ctx.epoch_ends.get(MIN_EPOCHS - 1).copied(),
        narrowest: narrowest.map(|n| n.1),
    })
}

/// The underfitting and slow-convergence rules of the module table.
fn decide_underfit(s: &UnderfitSignals) -> Option<UnderfitOutcome> {
    if s.diverged {
        return None;
    }
    let enough = s.epochs >= MIN_EPOCHS || (s.epochs == 0 && s.loss_points >= MIN_STEPS_NO_EPOCHS);
    if !enough {
        return Some(UnderfitOutcome::TooEarly);
    }
    if s.in_warmup {
        return Some(UnderfitOutcome::Warmup);
    }
    let levels = s.levels?;
    let LossLevels {
        recent,
        progress,
        loss_ratio,
        ..
    } = levels;
    let poor_strict = match (s.norm_acc, loss_ratio) {
        (Some(a), Some(r)) => Some(a < POOR_NORM_ACC && r > POOR_LOSS_RATIO),
        // Without a chance level the raw accuracy cannot be normalised
        // (60% is poor for 2 classes, good for 100): the loss must also
        // have stayed above half its first level.
        (Some(a), None) => Some(a < POOR_NORM_ACC && progress < 1.0 - POOR_LOSS_RATIO),
        (None, Some(r)) => Some(r > POOR_LOSS_RATIO + LOSS_ONLY_MARGIN),
        (None, None) => None,
    };
    // Not converged: short of 90% of the way from chance to perfect.
    let unfinished = match (s.norm_acc, loss_ratio) {
        (Some(a), _) => Some(a < FITTED_NORM_ACC),
        (None, Some(r)) => Some(r > FITTED_LOSS_RATIO),
        (None, None) => None,
    };
    // With a structural limit on capacity, "not converged" is enough.
    let limited = !s.limits.is_empty();
    let poor_before_gates = if !limited {
        poor_strict
    } else {
        match (poor_strict, unfinished) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (None, None) => None,
            _ => Some(false),
        }
    };
    // Still improving: normalised accuracy gained ≥ LATE_GAIN over the last
    // third of the epochs (or the loss fell ≥ 10% over the last third of the
    // steps).
    let still_improving = s.late_gain.map(|g| g >= LATE_GAIN).unwrap_or_else(|| {
        s.loss_two_thirds
            .is_some_and(|then| recent < STILL_FALLING * then)
    });
    // Recovering: repeating the gain of the recent half once more would lift
    // the model out of "poor" — too early for a verdict (a run in progress on
    // a hard task looks poor for a while).
    let poor_level = if !limited {
        POOR_NORM_ACC
    } else {
        FITTED_NORM_ACC
    };
    let recovering = s.half_gain.is_some_and(|h| h.now + h.gain >= poor_level);
    // With imbalanced classes, accuracy near the majority share is explained
    // by the imbalance: "poor" is not judged.
    let poor = if s.imbalanced || recovering {
        poor_before_gates.map(|_| false)
    } else {
        poor_before_gates
    };
    let flat = progress < MIN_PROGRESS && progress > FLAT_MIN_PROGRESS && !s.imbalanced;
    let tiny_updates = s.early_update.is_some_and(|u| u < TINY_UPDATE)
        && unfinished.unwrap_or(progress < TINY_UPDATE_MAX_PROGRESS);
    // The loss now sits well above both where the run began (its first
    // step) and the chance level: the optimiser overshot and the model is
    // confidently wrong. That is instability (too high an LR), the opposite
    // of slow convergence, whose remedy (a larger LR) would make it worse.
    // Reference: the first logged loss (computed before any update) — the
    // model's own starting level — and the chance level.
    let overshot = s.first_loss.is_some_and(|f| {
        let base = s.chance_loss.map_or(f, |c| c.max(f));
        base > 0.0 && recent > OVERSHOOT * base
    });
    let slow_before_gates = !overshot
        && (flat && poor != Some(false)
            || poor == Some(true) && still_improving && progress > 0.0
            || tiny_updates);
    // A unit-level finding explains the stall (its fix comes first), and
    // after an instability the stall is not slowness: both are notes.
    let explained_by = s.unit_problem.filter(|_| slow_before_gates);
    let unstable_note = slow_before_gates && explained_by.is_none() && s.unstable;
    let slow = slow_before_gates && explained_by.is_none() && !s.unstable;
    let lr_low = tiny_updates || s.update.is_some_and(|u| u < TINY_UPDATE);
    // The loss moved but stopped short, or a structural limit explains why it
    // could not move at all (e.g. weight decay pinning the weights at 0).
    let underfit_before_gates =
        poor == Some(true) && (progress >= MIN_PROGRESS || limited) && !still_improving;
    // Without a structural limit, a plateau under an annealed LR and a
    // language model's irreducible loss are no evidence of missing capacity.
    let schedule_note = underfit_before_gates && !limited && s.annealed && !s.language_model;
    let language_note = underfit_before_gates && !limited && s.language_model;
    let underfit = underfit_before_gates && !schedule_note && !language_note;
    Some(UnderfitOutcome::Judged(UnderfitVerdict {
        levels,
        overshot,
        slow: slow.then_some(Slow { lr_low }),
        imbalance_note: s.imbalanced && poor_before_gates == Some(true),
        recovering_note: recovering && poor_before_gates == Some(true),
        schedule_note,
        language_note,
        explained_by,
        unstable_note,
        underfit,
    }))
}

/// The run's LR (peak, for its optimizer, momentum and batch) lies above the
/// sensible range: a loss that then fails to fall was knocked off course
/// (often into dead or saturated units the logs cannot show), not held
/// back — the remedy for slowness, a larger LR, would make it worse.
fn lr_above_range(ctx: &Ctx) -> bool {
    super::architecture::learning_rate(ctx)
        .is_some_and(|p| p.rule == super::architecture::Rule::LrTooHigh)
}

/// The metrics shared by the slow-convergence and underfitting findings.
fn underfit_metrics(s: &UnderfitSignals, l: &LossLevels) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    metrics.insert("loss_start".into(), l.start);
    metrics.insert("loss_recent".into(), l.recent);
    metrics.insert("loss_progress".into(), l.progress);
    if let Some(a) = s.norm_acc {
        metrics.insert("train_acc_normalised".into(), a);
    }
    if let Some(a) = s.train_acc {
        metrics.insert("train_acc".into(), a);
    }
    if let Some(r) = l.loss_ratio {
        metrics.insert("loss_over_chance".into(), r);
    }
    if let Some(u) = s.update {
        metrics.insert("median_update_ratio".into(), u);
    }
    metrics
}

/// "training accuracy 31% (chance 10%)", or the loss against chance.
fn acc_text(s: &UnderfitSignals, l: &LossLevels) -> String {
    match (s.train_acc, s.chance_acc) {
        (Some(a), Some(c)) => format!("training accuracy {} (chance {})", fmt_pct(a), fmt_pct(c)),
        (Some(a), None) => format!("training accuracy {}", fmt_pct(a)),
        _ => match s.chance_loss {
            Some(c) => format!("loss {} vs chance level {}", fmt_num(l.recent), fmt_num(c)),
            None => format!("loss {}", fmt_num(l.recent)),
        },
    }
}

fn slow_finding(s: &UnderfitSignals, l: &LossLevels, slow: Slow) -> Finding {
    let acc_text = acc_text(s, l);
    let (start, recent, progress) = (l.start, l.recent, l.progress);
    let epochs = s.epochs;
    // A unit-level problem found earlier explains the stall better than
    // the learning rate (and raising the LR would not help it).
    let explained_by = s.unit_problem.and_then(|k| match k {
        Kind::DeadRelu => Some((
            "dead_relu",
            "most ReLU units are dead, so almost no gradient flows and the loss cannot move",
        )),
        Kind::VanishingGradients => Some((
            "vanishing_gradients",
            "gradients vanish before reaching the first layers, so they barely change",
        )),
        Kind::UnchangedWeights => Some(("unchanged_weights", "part of the model is never updated")),
        Kind::SaturatedActivations => Some((
            "saturated_activations",
            "saturated units pass almost no gradient",
        )),
        _ => None,
    });
    let cause = if let Some((kind, why)) = explained_by {
        format!("A consequence of {kind}: {why}.")
    } else if slow.lr_low {
        format!(
            "Weight updates are tiny (median ‖Δw‖/‖w‖ = {}, healthy ≈ 1e-3): the learning rate{} is too low for this optimizer.",
            fmt_num(s.early_update.or(s.update).unwrap_or(f64::NAN)),
            s.lr.map(|l| format!(" ({})", fmt_num(l)))
                .unwrap_or_default()
        )
    } else {
        "The optimisation makes little progress: too low a learning rate, a poor initialisation, or gradients that do not reach the weights (see other findings).".into()
    };
    Finding {
        kind: Kind::SlowConvergence,
        caused_by: None,
        severity: Severity::Warning,
        onset_step: s.first_step,
        title: format!("Training is barely progressing after {epochs} epochs: loss {} → {}, {acc_text}", fmt_num(start), fmt_num(recent)),
        evidence: Evidence {
            series: s.series.clone(),
            layer: None,
            metrics: underfit_metrics(s, l),
            summary: format!("The training loss fell by {} from its start; {acc_text}.", fmt_pct(progress.max(0.0))),
            samples: Vec::new(),
        },
        cause,
        fixes: match explained_by {
            Some((kind, _)) => vec![
                format!("Fix the {kind} finding first; the loss should then start to fall."),
                "Check the initialisation (He for ReLU, Glorot for tanh/sigmoid), the input normalisation and the labels.".into(),
            ],
            None => vec![
                match s.lr {
                    Some(l) => format!("Increase the learning rate ×10: {} → {} (or run an LR range test).", fmt_num(l), fmt_num(l * 10.0)),
                    None => "Increase the learning rate ×10 (or run an LR range test).".into(),
                },
                "Use Adam (lr 1e-3) or SGD with momentum 0.9.".into(),
                "Check the initialisation (He for ReLU, Glorot for tanh/sigmoid), the input normalisation and the labels.".into(),
            ],
        },
    }
}

fn underfit_finding(s: &UnderfitSignals, l: &LossLevels) -> Finding {
    let acc_text = acc_text(s, l);
    let mut causes: Vec<String> = s.limits.iter().map(|l| l.0.clone()).collect();
    let mut fixes: Vec<String> = s.limits.iter().map(|l| l.1.clone()).collect();
    if causes.is_empty() {
        causes.push("the model lacks capacity or is over-regularised for this task".into());
        fixes.push("Increase capacity (wider/more layers) and train longer.".into());
        fixes.push("Reduce regularisation (weight decay, dropout).".into());
    }
    fixes.push("Check the model can overfit a single batch of 16 samples; if not, look for a bug in the model or labels.".into());
    if let Some(lr) = s.lr.filter(|_| !s.unstable) {
        fixes.push(format!(
            "Try a higher learning rate ({} → {}).",
            fmt_num(lr),
            fmt_num(lr * 3.0)
        ));
    }
    Finding {
        kind: Kind::Underfitting,
        caused_by: None,
        severity: Severity::Warning,
        onset_step: s.min_epochs_end.or(s.first_step),
        title: format!(
            "Model underfits: {acc_text} after {} epochs, and it has plateaued",
            s.epochs
        ),
        evidence: Evidence {
            series: s.series.clone(),
            layer: s.narrowest.clone(),
            metrics: underfit_metrics(s, l),
            summary: format!(
                "The loss fell from {} to {} and stopped improving; {acc_text}.",
                fmt_num(l.start),
                fmt_num(l.recent)
            ),
            samples: Vec::new(),
        },
        cause: format!(
            "The model cannot fit its own training data: {}.",
            causes.join("; ")
        ),
        fixes,
    }
}

/// Structural limits on what the model can fit, as (cause, fix): a hidden
/// layer of ≤ [`MIN_HIDDEN_UNITS`] units or narrower than the number of
/// classes, weight decay ≥ [`HEAVY_WEIGHT_DECAY`], dropout ≥
/// [`HEAVY_DROPOUT`]. Healthy models are far from all three.
fn capacity_limits(ctx: &Ctx) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let model = ctx.view.model.as_ref();
    let classes = match &ctx.task {
        super::context::Task::Classification { classes, .. } => *classes,
        _ => None,
    };
    if let Some(m) = model {
        let hidden = &m.layers[..m.layers.len().saturating_sub(1)];
        if let Some((w, name)) = hidden
            .iter()
            .filter_map(|l| l.outputs.map(|o| (o, l.name.clone())))
            .min()
            && (w <= MIN_HIDDEN_UNITS || classes.is_some_and(|k| (w as usize) < k))
        {
            out.push((
                format!(
                    "the model is too small: layer {name} has only {w} units{}",
                    classes
                        .map(|k| format!(" for {k} classes"))
                        .unwrap_or_default()
                ),
                format!("Increase capacity: widen {name} ({w} → 64+ units) or add layers."),
            ));
        }
    }
    let wd = model
        .and_then(|m| m.optimizer.as_ref())
        .and_then(|o| o.weight_decay)
        .or_else(|| ctx.view.config.get("weight_decay").and_then(|v| v.as_f64()))
        .unwrap_or(0.0);
    if wd >= HEAVY_WEIGHT_DECAY {
        out.push((
            format!("weight decay {} outweighs the data term", fmt_num(wd)),
            format!(
                "Reduce weight decay: {} → {}.",
                fmt_num(wd),
                fmt_num(wd / 100.0)
            ),
        ));
    }
    let dropout = ctx
        .view
        .config
        .get("dropout")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    if dropout >= HEAVY_DROPOUT {
        out.push((
            format!("dropout {} removes most of the signal", fmt_num(dropout)),
            format!("Reduce dropout: {} → 0.1–0.2.", fmt_num(dropout)),
        ));
    }
    out
}

/// Median over layers of the median update ratio in the first third of the
/// run (the LR's peak for decaying schedules). Layers that never move are
/// left to the unchanged-weights rule.
fn early_update_ratio(ctx: &Ctx) -> Option<f64> {
    let per_layer: Vec<f64> = ctx
        .layers
        .iter()
        .filter_map(|l| l.get(Role::UpdateRatio))
        .filter(|u| u.series.values.iter().any(|v| *v > 0.0))
        .filter_map(|u| {
            let v = &u.series.values;
            median(&v[..v.len().div_ceil(3)])
        })
        .collect();
    median(&per_layer)
}

/// Median over layers of each layer's median update ratio.
fn median_update_ratio(ctx: &Ctx) -> Option<f64> {
    let per_layer: Vec<f64> = ctx
        .layers
        .iter()
        .filter_map(|l| l.get(Role::UpdateRatio))
        .filter_map(|u| median(&u.series.values))
        .collect();
    median(&per_layer)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{
        balanced_classes, curve, epochs, four_balanced_classes, healthy, noise, view,
    };
    use super::super::{Kind, RunView, Series, diagnose};

    fn run(
        n: usize,
        train_acc: impl Fn(usize) -> f64,
        val_acc: impl Fn(usize) -> f64,
        val_loss: impl Fn(usize) -> f64,
        loss: impl Fn(f64) -> f64,
    ) -> RunView {
        let spe = 20;
        let mut v = view(&[(
            "train/loss",
            curve(n * spe, 1, |i| {
                loss(i as f64 / (n * spe) as f64) * (1.0 + 0.2 * noise(i))
            }),
        )]);
        epochs(&mut v, "epoch", n, spe, |e| e as f64);
        epochs(&mut v, "train/acc", n, spe, train_acc);
        epochs(&mut v, "val/acc", n, spe, val_acc);
        epochs(&mut v, "val/loss", n, spe, val_loss);
        v
    }

    #[test]
    fn confidently_wrong_validation_is_overfitting_though_its_accuracy_holds() {
        // 10 classes. Training accuracy perfect from epoch 6; validation
        // accuracy flat at 95%; validation loss at its best (0.15) at epoch 6,
        // then climbing steadily to 0.45: the few validation mistakes get
        // ever more confident.
        let rising = |e: usize| 0.15 + 0.02 * (e.saturating_sub(6)) as f64;
        let mk = |val_loss: &dyn Fn(usize) -> f64| {
            let mut v = run(
                20,
                |e| (0.6 + 0.08 * e as f64).min(1.0),
                |e| (0.55 + 0.08 * e as f64).min(0.95),
                |e| {
                    if e < 6 {
                        2.0 - 0.3 * e as f64
                    } else {
                        val_loss(e)
                    }
                },
                |t| 0.02 + 2.28 * (-t * 8.0).exp(),
            );
            v.datasets.push(balanced_classes(10));
            diagnose(&v)
        };
        let d = mk(&rising);
        let f = d.get(Kind::Overfitting).expect("overfitting");
        assert!(f.severity.is_raised());
        assert_eq!(f.onset_step, Some(120), "the best validation epoch");
        // A drift of 0.15 → 0.17 is within a few samples' worth of a loss
        // whose chance level is 2.3: not a rise.
        let drift = |e: usize| 0.15 + 0.0015 * (e.saturating_sub(6)) as f64;
        assert!(mk(&drift).get(Kind::Overfitting).is_none());
        // A rise that went back down is a bump.
        let bump = |e: usize| if (8..12).contains(&e) { 0.4 } else { 0.15 };
        assert!(mk(&bump).get(Kind::Overfitting).is_none());
    }

    #[test]
    fn validation_at_chance_while_training_fits_names_the_labels() {
        // Shuffled training labels: training accuracy climbs by memorising,
        // validation accuracy stays at the chance level (25%, 4 classes).
        let mut v = run(
            30,
            |e| (0.25 + 0.03 * e as f64).min(1.0),
            |e| 0.25 + 0.01 * noise(e),
            |e| 1.39 + 0.05 * e as f64,
            |t| 0.05 + 1.34 * (1.0 - t),
        );
        v.datasets.push(four_balanced_classes());
        let f = diagnose(&v)
            .get(Kind::Overfitting)
            .cloned()
            .expect("overfitting");
        assert!(f.cause.contains("labels"), "{}", f.cause);
        assert!(f.fixes[0].contains("labels"), "{:?}", f.fixes);
    }

    #[test]
    fn a_plateau_under_an_annealed_lr_is_not_underfitting() {
        // A language model: an embedding of 16 tokens in, 16 classes out.
        // Cosine schedule from 3e-3 to ~0; the loss flattens at the text's
        // entropy, far from perfect accuracy.
        let lm = |annealed: bool, language_model: bool| {
            let n = 12;
            let spe = 40;
            let mut v = run(
                n,
                |e| (0.2 + 0.05 * e as f64).min(0.5),
                |e| (0.2 + 0.05 * e as f64).min(0.5),
                |e| (2.7 - 0.2 * e as f64).max(1.6),
                |t| 1.6 + 1.1 * (-t * 10.0).exp(),
            );
            let total = (n * spe) as f64;
            v.scalars.insert(
                "lr".into(),
                Series::from_points((0..n * spe).map(|i| {
                    let t = i as f64 / total;
                    let lr = if annealed {
                        3e-3 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                    } else {
                        3e-3
                    };
                    (i as u64, lr)
                })),
            );
            let (first, first_in) = if language_model {
                ("embed", "Embedding")
            } else {
                ("fc1", "Linear")
            };
            v.model = Some(crate::record::ModelRecord {
                layers: vec![
                    crate::record::Layer {
                        name: first.into(),
                        kind: Some(first_in.into()),
                        inputs: Some(16),
                        outputs: Some(32),
                        ..Default::default()
                    },
                    crate::record::Layer {
                        name: "head".into(),
                        kind: Some("Linear".into()),
                        inputs: Some(32),
                        outputs: Some(16),
                        ..Default::default()
                    },
                ],
                loss: Some("cross_entropy".into()),
                ..Default::default()
            });
            diagnose(&v)
        };
        // The plain classifier on a constant LR that plateaus far from
        // chance-normalised perfection underfits ...
        let d = lm(false, false);
        let f = d.get(Kind::Underfitting).expect("underfitting");
        // ... and its LR fix quotes the LR it trained with.
        assert!(
            f.fixes.iter().any(|x| x.contains("0.003 → 0.009")),
            "{:?}",
            f.fixes
        );
        // The same plateau under an annealed LR, or of a language model, is
        // not judged (and says why).
        for (annealed, language_model) in [(true, false), (false, true), (true, true)] {
            let d = lm(annealed, language_model);
            assert!(d.get(Kind::Underfitting).is_none(), "{:#?}", d.findings);
            assert!(
                d.notes
                    .iter()
                    .any(|n| n.starts_with("underfitting not judged")),
                "{:?}",
                d.notes
            );
        }
    }

    #[test]
    fn classic_overfitting() {
        let v = run(
            40,
            |e| (0.5 + e as f64 * 0.05).min(1.0),
            |e| (0.4 + e as f64 * 0.02).min(0.55),
            |e| 1.2 + ((e as f64 - 5.0).max(0.0)) * 0.05,
            |t| 1.4 * (-t * 8.0).exp(),
        );
        let d = diagnose(&v);
        let f = d.get(Kind::Overfitting).expect("overfitting");
        assert_eq!(f.onset_step, Some(100));
        assert!(f.fixes[0].contains("step 100"), "{}", f.fixes[0]);
        assert!(d.get(Kind::Underfitting).is_none());
    }

    #[test]
    fn overconfident_val_loss_alone_is_not_overfitting() {
        // Val loss drifts up 15% but accuracies stay close.
        let v = run(
            30,
            |e| 0.9 + 0.003 * e as f64,
            |e| 0.88 + 0.002 * e as f64,
            |e| 0.1 + 0.0005 * e as f64,
            |t| 1.0 * (-t * 6.0).exp(),
        );
        assert!(diagnose(&v).get(Kind::Overfitting).is_none());
    }

    #[test]
    fn regression_overfitting_needs_rising_val_loss() {
        let mk = |rise: f64| {
            let mut v = view(&[(
                "train/loss",
                curve(400, 1, |i| 1.0 * (-(i as f64) / 100.0).exp() + 0.05),
            )]);
            epochs(&mut v, "val/loss", 20, 20, |e| {
                0.5 + if e > 5 {
                    rise * (e - 5) as f64
                } else {
                    -0.01 * e as f64
                }
            });
            v
        };
        assert!(diagnose(&mk(0.05)).get(Kind::Overfitting).is_some());
        assert!(diagnose(&mk(0.001)).get(Kind::Overfitting).is_none());
    }

    /// A converged model's validation loss wobbling on its plateau (a lucky
    /// low evaluation late in the run, the last ones back at the plateau's
    /// level) is not overfitting; the same plateau followed by a climb well
    /// beyond that wobble is.
    #[test]
    fn noisy_validation_plateau_is_not_overfitting() {
        // Deterministic ±0.08 wobble around 0.55 from epoch 6, one dip to
        // 0.42 at epoch 17 of 20: 35% "above its best", within its noise.
        let wobble = [
            0.0, 0.07, -0.03, 0.08, -0.05, 0.04, -0.06, 0.0, 0.06, -0.04, 0.05,
        ];
        let mk = |climb: f64| {
            let mut v = view(&[(
                "train/loss",
                curve(400, 1, |i| 1.3 * (-(i as f64) / 80.0).exp() + 0.2),
            )]);
            epochs(&mut v, "val/loss", 20, 20, |e| match e {
                1..=5 => 1.3 - 0.15 * e as f64,
                17 if climb == 0.0 => 0.42,
                _ if e > 17 => 0.55 + climb * (e - 17) as f64 + wobble[e % wobble.len()] * 0.1,
                _ => 0.55 + wobble[e % wobble.len()],
            });
            v
        };
        let d = diagnose(&mk(0.0));
        assert!(d.get(Kind::Overfitting).is_none(), "{:#?}", d.findings);
        // The plateau then climbing by 0.25 an evaluation: far above the
        // wobble, and a third of what validation learned given back.
        let d = diagnose(&mk(0.25));
        assert!(d.get(Kind::Overfitting).is_some(), "{:#?}", d.notes);
    }

    /// Without accuracies, a near-perfect validation loss creeping up by a
    /// sliver of the loss scale (over-confidence on its few mistakes) is
    /// not overfitting, though it is steady and relative to its tiny best
    /// large; a climb that gives back a real share of the fit is.
    #[test]
    fn near_perfect_validation_creeping_up_is_not_overfitting() {
        let mk = |slope: f64| {
            let mut v = view(&[(
                "train/loss",
                curve(400, 1, |i| 0.9 * (-(i as f64) / 40.0).exp() + 0.01),
            )]);
            epochs(&mut v, "val/loss", 20, 20, |e| {
                if e <= 7 {
                    0.35 * (-(e as f64 - 1.0) / 1.5).exp() + 0.08 - 0.0005 * e as f64
                } else {
                    0.0765 + slope * (e - 7) as f64
                }
            });
            v
        };
        // 0.002 an evaluation: 25% above a best of 0.078 (floored at a tenth
        // of the 0.91 scale), 3% of the way back to that scale.
        let d = diagnose(&mk(0.002));
        assert!(d.get(Kind::Overfitting).is_none(), "{:#?}", d.findings);
        // 0.01 an evaluation: 0.13 back up, 16% of the way to the scale.
        let d = diagnose(&mk(0.01));
        assert!(d.get(Kind::Overfitting).is_some(), "{:#?}", d.notes);
    }

    #[test]
    fn too_few_epochs_gives_a_note() {
        let v = run(3, |_| 1.0, |_| 0.3, |e| e as f64, |_| 1.0);
        let d = diagnose(&v);
        assert!(d.get(Kind::Overfitting).is_none());
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("not enough data yet for overfitting")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn flat_loss_near_chance_is_slow_convergence() {
        let v = run(20, |_| 0.1, |_| 0.1, |_| 2.3, |_| 2.3);
        let d = diagnose(&v);
        assert!(d.get(Kind::SlowConvergence).is_some(), "{:#?}", d);
    }

    /// A loss stuck at chance under an LR far above its optimizer's range
    /// (SGD at 2 with momentum 0.9: an effective step of 20) was knocked off
    /// course, not held back: a note, not slow convergence, whose fix (a
    /// larger LR) would make it worse. The same stall at a sensible LR is
    /// slow.
    #[test]
    fn a_stall_under_too_high_an_lr_is_not_slow() {
        let at = |lr: f64| {
            let mut v = run(20, |_| 0.1, |_| 0.1, |_| 2.3, |_| 2.3);
            v.config = serde_json::json!({ "opt": "sgd", "lr": lr, "momentum": 0.9 });
            v.scalars
                .insert("lr".into(), Series::from_points(curve(400, 1, |_| lr)));
            diagnose(&v)
        };
        let d = at(2.0);
        assert!(d.get(Kind::SlowConvergence).is_none(), "{:#?}", d.findings);
        assert!(
            d.notes
                .iter()
                .any(|n| n
                    .starts_with("slow convergence not raised: the learning rate was too high")),
            "{:?}",
            d.notes
        );
        let d = at(0.01);
        assert!(d.get(Kind::SlowConvergence).is_some(), "{:#?}", d.findings);
    }

    #[test]
    fn plateau_at_poor_accuracy_is_underfitting() {
        let mut v = run(
            25,
            |e| (0.2 + 0.05 * e as f64).min(0.45),
            |e| (0.2 + 0.05 * e as f64).min(0.43),
            |_| 1.2,
            |t| 1.1 + 0.3 * (-t * 10.0).exp(),
        );
        v.datasets.push(four_balanced_classes());
        let d = diagnose(&v);
        assert!(d.get(Kind::Underfitting).is_some(), "{:#?}", d);
    }

    #[test]
    fn tiny_updates_are_slow_convergence() {
        // Loss moves 15% but weights barely change: LR far too low.
        let mut v = run(
            20,
            |e| 0.3 + 0.01 * e as f64,
            |e| 0.3 + 0.01 * e as f64,
            |_| 0.6,
            |t| 0.69 - 0.1 * t,
        );
        v.scalars.insert(
            "update_ratio/fc1".into(),
            Series::from_points(curve(80, 5, |_| 2e-6)),
        );
        v.scalars.insert(
            "update_ratio/head".into(),
            Series::from_points(curve(80, 5, |_| 8e-6)),
        );
        let f = diagnose(&v)
            .get(Kind::SlowConvergence)
            .cloned()
            .expect("slow");
        assert!(f.cause.contains("learning rate"), "{}", f.cause);
        // Healthy update sizes with a decaying LR are not slow.
        let mut h = healthy(20, 40);
        h.scalars.insert(
            "update_ratio/fc1".into(),
            Series::from_points(curve(160, 5, |i| 3e-3 * (-(i as f64) / 30.0).exp())),
        );
        assert!(diagnose(&h).get(Kind::SlowConvergence).is_none());
    }

    #[test]
    fn loss_that_jumped_above_chance_is_not_slow() {
        // First steps near chance (ln 10), then the loss jumps to ~6 and
        // bounces there: flat at epoch level, but it went the wrong way.
        let mut v = RunView::default();
        let spe = 20;
        v.scalars.insert(
            "train/loss".into(),
            Series::from_points((0..15 * spe).map(|i| {
                (
                    i as u64,
                    if i < 5 {
                        2.3
                    } else {
                        6.0 + (i % 7) as f64 * 0.1
                    },
                )
            })),
        );
        epochs(&mut v, "train/acc", 15, spe, |_| 0.15);
        epochs(&mut v, "epoch", 15, spe, |e| e as f64);
        let d = diagnose(&v);
        assert!(d.get(Kind::SlowConvergence).is_none(), "{:#?}", d.findings);
        // Same flat loss that began there (e.g. a bad init and a tiny LR) is slow.
        let mut w = RunView::default();
        w.scalars.insert(
            "train/loss".into(),
            Series::from_points((0..15 * spe).map(|i| (i as u64, 6.0 + (i % 7) as f64 * 0.1))),
        );
        epochs(&mut w, "train/acc", 15, spe, |_| 0.15);
        epochs(&mut w, "epoch", 15, spe, |e| e as f64);
        assert!(
            diagnose(&w).get(Kind::SlowConvergence).is_some(),
            "{:#?}",
            diagnose(&w).findings
        );
    }

    #[test]
    fn bottleneck_model_underfits_even_at_moderate_accuracy() {
        use crate::record::{Layer, ModelRecord};
        let layer = |name: &str, out: u64| Layer {
            name: name.into(),
            outputs: Some(out),
            activation: Some("relu".into()),
            ..Default::default()
        };
        let mk = |width: u64| {
            let mut v = run(
                25,
                |e| (0.5 + 0.03 * e as f64).min(0.75),
                |e| (0.5 + 0.03 * e as f64).min(0.73),
                |_| 0.9,
                |t| 0.5 + 1.8 * (-t * 6.0).exp(),
            );
            v.model = Some(ModelRecord {
                layers: vec![layer("fc1", width), layer("head", 10)],
                loss: Some("cross_entropy".into()),
                ..Default::default()
            });
            v
        };
        let f = diagnose(&mk(2))
            .get(Kind::Underfitting)
            .cloned()
            .expect("underfitting");
        assert!(f.cause.contains("fc1 has only 2 units"), "{}", f.cause);
        assert!(diagnose(&mk(64)).get(Kind::Underfitting).is_none());
    }

    #[test]
    fn healthy_runs_fit_well() {
        let d = diagnose(&healthy(30, 40));
        for k in [Kind::Overfitting, Kind::Underfitting, Kind::SlowConvergence] {
            assert!(d.get(k).is_none(), "{k}: {:#?}", d);
        }
    }
}

/// The overfitting rule in its three parts: measuring, deciding, wording.
#[cfg(test)]
mod overfit_tests {
    use super::super::DatasetRecord;
    use super::super::testutil::{curve, epochs, view};
    use super::*;

    /// Signals where the gap-and-rising-loss rule clearly fires.
    fn sig() -> OverfitSignals {
        OverfitSignals {
            evals: 10,
            loss_above_best: 0.3,
            loss_rise_noise: 10.0,
            loss_fit_given_back: 0.3,
            train_norm_acc: None,
            train_loss_fit: None,
            loss_receding: false,
            val_acc_at_chance: false,
            error_above_best: 0.2,
            loss_evals_since_best: Some(5),
            acc_evals_since_best: Some(5),
            acc: Some(AccGap {
                train: 0.95,
                gap: 0.12,
            }),
            val_acc_se: Some(0.03),
            train_loss_at_best: Some(0.5),
            train_loss_now: Some(0.3),
            best_step: Some(100),
            best_epoch: Some(5),
            best_is_loss: true,
            series: vec!["val/loss".into(), "val/acc".into(), "train/acc".into()],
            n_train: Some(200),
            params: Some(5000),
            weight_decay: 0.0,
            dropout: 0.0,
        }
    }

    /// Validation loss not rising: only the memorisation rules can fire.
    fn flat_loss(train: f64, gap: f64) -> OverfitSignals {
        OverfitSignals {
            loss_above_best: 0.0,
            acc: Some(AccGap { train, gap }),
            ..sig()
        }
    }

    /// No accuracies: only the rising-loss rule can fire.
    fn no_acc(loss_above_best: f64) -> OverfitSignals {
        OverfitSignals {
            loss_above_best,
            acc: None,
            acc_evals_since_best: None,
            val_acc_se: None,
            ..sig()
        }
    }

    fn rule(s: &OverfitSignals) -> Option<OverfitRule> {
        match decide_overfit(s) {
            Some(OverfitVerdict::Overfitting { rule, .. }) => Some(rule),
            Some(OverfitVerdict::TooFewEvals) => panic!("too few evaluations"),
            None => None,
        }
    }

    fn severe(s: &OverfitSignals) -> bool {
        match decide_overfit(s) {
            Some(OverfitVerdict::Overfitting { severe, .. }) => severe,
            v => panic!("not overfitting: {v:?}"),
        }
    }

    #[test]
    fn waits_for_min_epochs() {
        let few = OverfitSignals {
            evals: MIN_EPOCHS - 1,
            ..sig()
        };
        assert_eq!(decide_overfit(&few), Some(OverfitVerdict::TooFewEvals));
        let enough = OverfitSignals {
            evals: MIN_EPOCHS,
            ..sig()
        };
        assert_eq!(rule(&enough), Some(OverfitRule::GapAndRisingLoss));
    }

    #[test]
    fn gap_threshold_depends_on_training_accuracy() {
        let gap = |train: f64, gap: f64| {
            rule(&OverfitSignals {
                acc: Some(AccGap { train, gap }),
                ..sig()
            })
        };
        // Above HIGH_TRAIN_ACC the tighter gap applies.
        assert_eq!(gap(0.95, GAP_HIGH_ACC), Some(OverfitRule::GapAndRisingLoss));
        assert_eq!(gap(0.95, GAP_HIGH_ACC.next_down()), None);
        // At HIGH_TRAIN_ACC (not above) it is the AT gap.
        assert_eq!(
            gap(HIGH_TRAIN_ACC.next_up(), GAP_HIGH_ACC),
            Some(OverfitRule::GapAndRisingLoss)
        );
        assert_eq!(gap(HIGH_TRAIN_ACC, GAP_HIGH_ACC), None);
        assert_eq!(
            gap(HIGH_TRAIN_ACC, GAP_AT),
            Some(OverfitRule::GapAndRisingLoss)
        );
        assert_eq!(gap(HIGH_TRAIN_ACC, GAP_AT.next_down()), None);
    }

    #[test]
    fn gap_needs_a_rising_and_stale_validation_loss() {
        let gl = |loss_above_best: f64| {
            rule(&OverfitSignals {
                loss_above_best,
                ..sig()
            })
        };
        assert_eq!(gl(GL_LOSS), Some(OverfitRule::GapAndRisingLoss));
        assert_eq!(gl(GL_LOSS.next_down()), None);
        assert_eq!(gl(f64::NAN), None);
        let since = |loss_evals_since_best: Option<usize>| {
            rule(&OverfitSignals {
                loss_evals_since_best,
                ..sig()
            })
        };
        assert_eq!(
            since(Some(STALE_EVALS)),
            Some(OverfitRule::GapAndRisingLoss)
        );
        assert_eq!(since(Some(STALE_EVALS - 1)), None);
        assert_eq!(since(None), None);
    }

    #[test]
    fn memorised_gap_beyond_its_standard_error() {
        // train ≥ MEMORISED_ACC > HIGH_TRAIN_ACC: the threshold is GAP_HIGH_ACC + SE.
        let se = 0.03;
        assert_eq!(
            rule(&flat_loss(MEMORISED_ACC, GAP_HIGH_ACC + se)),
            Some(OverfitRule::Memorised)
        );
        assert_eq!(
            rule(&flat_loss(MEMORISED_ACC, (GAP_HIGH_ACC + se).next_down())),
            None
        );
        assert_eq!(rule(&flat_loss(MEMORISED_ACC.next_down(), 0.15)), None);
        // Unknown validation size: UNKNOWN_VAL_SE.
        let unknown = |gap: f64| {
            rule(&OverfitSignals {
                val_acc_se: None,
                ..flat_loss(1.0, gap)
            })
        };
        assert_eq!(
            unknown(GAP_HIGH_ACC + UNKNOWN_VAL_SE),
            Some(OverfitRule::Memorised)
        );
        assert_eq!(unknown((GAP_HIGH_ACC + UNKNOWN_VAL_SE).next_down()), None);
    }

    #[test]
    fn memorised_large_gap_with_stalled_validation_accuracy() {
        let train = 0.96; // below MEMORISED_ACC
        assert_eq!(
            rule(&flat_loss(train, MEMORISED_GAP)),
            Some(OverfitRule::MemorisedStalled)
        );
        assert_eq!(rule(&flat_loss(train, MEMORISED_GAP.next_down())), None);
        assert_eq!(
            rule(&flat_loss(MEMORISED_STALE_ACC, 0.3)),
            Some(OverfitRule::MemorisedStalled)
        );
        assert_eq!(rule(&flat_loss(MEMORISED_STALE_ACC.next_down(), 0.3)), None);
        let since = |acc_evals_since_best: Option<usize>| {
            rule(&OverfitSignals {
                acc_evals_since_best,
                ..flat_loss(train, 0.3)
            })
        };
        assert_eq!(
            since(Some(STALE_EVALS)),
            Some(OverfitRule::MemorisedStalled)
        );
        assert_eq!(since(Some(STALE_EVALS - 1)), None);
    }

    #[test]
    fn without_accuracies_the_loss_must_rise_further_while_training_falls() {
        assert_eq!(rule(&no_acc(GL_LOSS_NO_ACC)), Some(OverfitRule::RisingLoss));
        assert_eq!(rule(&no_acc(GL_LOSS_NO_ACC.next_down())), None);
        let stale = OverfitSignals {
            loss_evals_since_best: Some(STALE_EVALS - 1),
            ..no_acc(1.0)
        };
        assert_eq!(rule(&stale), None);
        // Training loss not lower than at the best step: not overfitting.
        let flat_train = OverfitSignals {
            train_loss_now: Some(0.5),
            ..no_acc(1.0)
        };
        assert_eq!(rule(&flat_train), None);
        // Unknown training loss counts as falling.
        let unknown = OverfitSignals {
            train_loss_at_best: None,
            ..no_acc(1.0)
        };
        assert_eq!(rule(&unknown), Some(OverfitRule::RisingLoss));
        // Neither validation loss nor accuracies: nothing to judge.
        let nothing = OverfitSignals {
            loss_evals_since_best: None,
            ..no_acc(1.0)
        };
        assert_eq!(decide_overfit(&nothing), None);
    }

    #[test]
    fn a_rise_within_the_validation_noise_does_not_count() {
        // With accuracies: the gap alone (below the memorisation rules)
        // needs the loss to rise beyond its noise.
        let noisy = OverfitSignals {
            loss_rise_noise: RISE_NOISE_SIGMAS.next_down(),
            ..sig()
        };
        assert_eq!(rule(&noisy), None);
        let above = OverfitSignals {
            loss_rise_noise: RISE_NOISE_SIGMAS,
            ..sig()
        };
        assert_eq!(rule(&above), Some(OverfitRule::GapAndRisingLoss));
        // Without accuracies, likewise; unknown noise is not held against it.
        let noisy = OverfitSignals {
            loss_rise_noise: 1.5,
            ..no_acc(0.35)
        };
        assert_eq!(rule(&noisy), None);
        let unknown = OverfitSignals {
            loss_rise_noise: f64::NAN,
            ..no_acc(0.35)
        };
        assert_eq!(rule(&unknown), Some(OverfitRule::RisingLoss));
        // A memorised training set does not need the loss at all.
        let memorised = OverfitSignals {
            loss_rise_noise: 0.5,
            ..flat_loss(1.0, 0.2)
        };
        assert_eq!(rule(&memorised), Some(OverfitRule::Memorised));
    }

    #[test]
    fn without_accuracies_the_loss_must_give_back_part_of_the_fit() {
        let creep = OverfitSignals {
            loss_fit_given_back: MIN_FIT_GIVEN_BACK.next_down(),
            ..no_acc(0.3)
        };
        assert_eq!(rule(&creep), None);
        let back = OverfitSignals {
            loss_fit_given_back: MIN_FIT_GIVEN_BACK,
            ..no_acc(0.3)
        };
        assert_eq!(rule(&back), Some(OverfitRule::RisingLoss));
        // Unknown scale: not held against it.
        let unknown = OverfitSignals {
            loss_fit_given_back: f64::NAN,
            ..no_acc(0.3)
        };
        assert_eq!(rule(&unknown), Some(OverfitRule::RisingLoss));
        // With accuracies the gap shows the lost generalisation instead.
        let gap = OverfitSignals {
            loss_fit_given_back: 0.01,
            ..sig()
        };
        assert_eq!(rule(&gap), Some(OverfitRule::GapAndRisingLoss));
    }

    #[test]
    fn noise_sigma_ignores_a_steady_trend() {
        let line = curve(10, 1, |i| 1.0 + 0.1 * i as f64);
        assert!(noise_sigma(&line) < 1e-12);
        // Alternating ±a around a trend: second differences of 4a.
        let zigzag = curve(10, 1, |i| {
            1.0 - 0.05 * i as f64 + if i % 2 == 0 { 0.02 } else { -0.02 }
        });
        let want = 1.4826 * 0.08 / 6f64.sqrt();
        assert!((noise_sigma(&zigzag) - want).abs() < 1e-9);
        assert_eq!(noise_sigma(&line[..2]), 0.0);
    }

    #[test]
    fn severity() {
        let s = |loss_above_best: f64, gap: f64| OverfitSignals {
            loss_above_best,
            acc: Some(AccGap { train: 0.95, gap }),
            ..sig()
        };
        assert!(severe(&s(SEVERE_GL_LOSS, SEVERE_GAP)));
        assert!(!severe(&s(SEVERE_GL_LOSS.next_down(), SEVERE_GAP)));
        assert!(!severe(&s(SEVERE_GL_LOSS, SEVERE_GAP.next_down())));
        // Without accuracies the loss alone decides.
        assert!(severe(&no_acc(SEVERE_GL_LOSS)));
        assert!(!severe(&no_acc(SEVERE_GL_LOSS.next_down())));
    }

    #[test]
    fn signals_measure_the_validation_curves() {
        let mut v = view(&[("train/loss", curve(800, 1, |i| 2.0 - i as f64 / 800.0))]);
        epochs(&mut v, "epoch", 40, 20, |e| e as f64);
        epochs(&mut v, "train/acc", 40, 20, |e| {
            (0.5 + e as f64 * 0.05).min(1.0)
        });
        epochs(&mut v, "val/acc", 40, 20, |e| {
            (0.4 + e as f64 * 0.02).min(0.55)
        });
        epochs(&mut v, "val/loss", 40, 20, |e| {
            1.2 + ((e as f64 - 5.0).max(0.0)) * 0.05
        });
        v.datasets.push(DatasetRecord {
            split: "val".into(),
            n: Some(100),
            ..Default::default()
        });
        let s = overfit_signals(&Ctx::new(&v)).expect("signals");
        assert_eq!(s.evals, 40);
        // Best loss: the last of the tied minima (epoch 5, step 100).
        assert_eq!(s.best_step, Some(100));
        assert_eq!(s.best_epoch, Some(5));
        assert!(s.best_is_loss);
        assert_eq!(s.loss_evals_since_best, Some(36));
        assert!((s.loss_above_best - (2.9 / 1.2 - 1.0)).abs() < 1e-9);
        // Best accuracy: the last of the maxima, the latest evaluation.
        assert_eq!(s.acc_evals_since_best, Some(1));
        let a = s.acc.expect("gap");
        assert_eq!(a.train, 1.0);
        assert!((a.gap - 0.45).abs() < 1e-9);
        let se = s.val_acc_se.expect("se");
        assert!((se - (0.55f64 * 0.45 / 100.0).sqrt()).abs() < 1e-9, "{se}");
        assert!(s.train_loss_now.unwrap() < s.train_loss_at_best.unwrap());
        assert_eq!(s.series, ["val/loss", "val/acc", "train/acc"]);
        assert_eq!(s.n_train, None);
        // No validation curve: nothing to measure.
        let bare = view(&[("train/loss", curve(100, 1, |_| 1.0))]);
        assert_eq!(overfit_signals(&Ctx::new(&bare)), None);
    }

    #[test]
    fn wording_with_everything_known() {
        let f = overfit_finding(&sig(), false);
        assert_eq!(f.kind, Kind::Overfitting);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.onset_step, Some(100));
        assert_eq!(
            f.title,
            "Overfitting since step 100: train/val accuracy gap 12 points, validation loss 30% above its best"
        );
        assert_eq!(
            f.evidence.summary,
            "Validation loss was best at step 100; since then train/val accuracy gap 12 points and validation loss 30% above its best."
        );
        assert_eq!(f.evidence.series, ["val/loss", "val/acc", "train/acc"]);
        assert_eq!(f.evidence.metrics.len(), 5);
        assert_eq!(f.evidence.metrics["best_val_step"], 100.0);
        assert_eq!(
            f.cause,
            "The model has 5000 parameters for 200 training samples (25 per sample): it can memorise the training set, so training error keeps falling while validation error does not."
        );
        assert_eq!(
            f.fixes,
            [
                "Stop at step 100 (epoch 5), where validation was best: use early stopping (patience ≈ 3 evaluations) and restore that checkpoint.",
                "Get more training data (now 200 samples) or use data augmentation.",
                "Add regularisation: dropout 0.2–0.5, weight decay (L2) 1e-4…1e-3, or L1.",
                "Use a smaller model (now 5000 parameters).",
            ]
        );
        assert_eq!(overfit_finding(&sig(), true).severity, Severity::Error);
    }

    #[test]
    fn wording_with_little_known() {
        let s = OverfitSignals {
            loss_above_best: f64::NAN,
            error_above_best: f64::NAN,
            best_epoch: None,
            best_is_loss: false,
            n_train: None,
            params: None,
            weight_decay: 1e-3,
            dropout: 0.0,
            ..sig()
        };
        let f = overfit_finding(&s, false);
        assert_eq!(
            f.title,
            "Overfitting since step 100: train/val accuracy gap 12 points"
        );
        assert_eq!(
            f.evidence.summary,
            "Validation accuracy was best at step 100; since then train/val accuracy gap 12 points."
        );
        assert!(!f.evidence.metrics.contains_key("val_loss_above_best"));
        assert!(f.cause.starts_with("The model fits noise"), "{}", f.cause);
        assert_eq!(
            f.fixes,
            [
                "Stop at step 100, where validation was best: use early stopping and restore that checkpoint.",
                "Get more training data or use data augmentation.",
                "Regularise more: dropout 0 → 0.3–0.5, weight decay (L2) 0.001 → 0.01, or L1.",
                "Use a smaller model.",
            ]
        );
        let none = overfit_finding(
            &OverfitSignals {
                best_step: None,
                acc: None,
                dropout: 0.2,
                weight_decay: 0.0,
                ..s
            },
            false,
        );
        assert_eq!(none.title, "Overfitting: ");
        assert_eq!(none.onset_step, None);
        assert_eq!(
            none.fixes[0],
            "Use early stopping on the validation metric and restore the best checkpoint."
        );
        assert_eq!(
            none.fixes[2],
            "Regularise more: dropout 0.2 → 0.3–0.5, weight decay (L2) 0 → 1e-4, or L1."
        );
    }

    #[test]
    fn memorised_while_validation_still_improves_has_no_early_stopping() {
        // Training set memorised, validation loss best at the latest
        // evaluation (the median of the last three a hair above it): there
        // is no step to stop at.
        let s = OverfitSignals {
            loss_above_best: 0.004,
            loss_evals_since_best: Some(1),
            acc: Some(AccGap {
                train: 1.0,
                gap: 0.2,
            }),
            best_step: Some(290),
            best_epoch: Some(30),
            ..sig()
        };
        assert_eq!(rule(&s), Some(OverfitRule::Memorised));
        let f = overfit_finding(&s, false);
        assert_eq!(f.onset_step, None);
        assert_eq!(f.title, "Overfitting: train/val accuracy gap 20 points");
        assert_eq!(
            f.evidence.summary,
            "Validation loss has not stopped improving (best at step 290), but train/val accuracy gap 20 points."
        );
        assert_eq!(
            f.fixes[0],
            "Get more training data (now 200 samples) or use data augmentation."
        );
        assert!(
            f.fixes.iter().all(|x| !x.contains("early stopping")),
            "{:?}",
            f.fixes
        );
        assert_eq!(f.evidence.metrics["best_val_step"], 290.0);
        // Best at the evaluation before the latest: still improving.
        let f = overfit_finding(
            &OverfitSignals {
                loss_evals_since_best: Some(2),
                ..s.clone()
            },
            false,
        );
        assert_eq!(f.onset_step, None);
        assert_eq!(f.title, "Overfitting: train/val accuracy gap 20 points");
        // Three evaluations from the best (it counted): validation has
        // stopped improving, and stopping there is the fix again.
        let f = overfit_finding(
            &OverfitSignals {
                loss_evals_since_best: Some(3),
                ..s
            },
            false,
        );
        assert_eq!(f.onset_step, Some(290));
        assert!(f.fixes[0].starts_with("Stop at step 290 (epoch 30)"));
    }

    #[test]
    fn wording_blames_capacity_from_ten_parameters_per_sample() {
        let cause = |params: u64| {
            overfit_finding(
                &OverfitSignals {
                    params: Some(params),
                    ..sig()
                },
                false,
            )
            .cause
        };
        assert!(cause(2000).starts_with("The model fits noise"));
        assert!(cause(2001).starts_with("The model has 2001 parameters"));
    }
}

/// Underfitting and slow convergence in their three parts: measuring,
/// deciding, wording.
#[cfg(test)]
mod underfit_tests {
    use super::super::Diagnosis;
    use super::super::testutil::{curve, epochs, four_balanced_classes, view};
    use super::*;

    fn levels(progress: f64, recent: f64, loss_ratio: Option<f64>) -> LossLevels {
        LossLevels {
            start: 2.0,
            recent,
            progress,
            loss_ratio,
        }
    }

    /// A model that fits well: nothing fires.
    fn fine() -> UnderfitSignals {
        UnderfitSignals {
            diverged: false,
            epochs: 20,
            loss_points: 400,
            in_warmup: false,
            levels: Some(levels(0.8, 0.4, Some(0.2))),
            first_loss: Some(2.3),
            chance_acc: Some(0.1),
            chance_loss: Some(2.3),
            train_acc: Some(0.95),
            norm_acc: Some(0.95),
            late_gain: Some(0.0),
            loss_two_thirds: Some(0.4),
            half_gain: Some(AccGain {
                now: 0.95,
                gain: 0.0,
            }),
            limits: Vec::new(),
            update: Some(1e-3),
            early_update: Some(1e-3),
            imbalanced: false,
            unit_problem: None,
            unstable: false,
            annealed: false,
            language_model: false,
            lr: Some(1e-3),
            series: vec!["train/loss".into(), "train/acc".into()],
            first_step: Some(0),
            min_epochs_end: Some(100),
            narrowest: Some("fc1".into()),
        }
    }

    /// A poor model on a plateau after the loss moved: underfitting.
    fn poor() -> UnderfitSignals {
        UnderfitSignals {
            levels: Some(levels(0.3, 1.4, Some(0.8))),
            train_acc: Some(0.37),
            norm_acc: Some(0.3),
            loss_two_thirds: Some(1.4),
            half_gain: Some(AccGain {
                now: 0.3,
                gain: 0.0,
            }),
            ..fine()
        }
    }

    /// No accuracy and no chance level (regression): only the loss.
    fn loss_only(progress: f64) -> UnderfitSignals {
        UnderfitSignals {
            levels: Some(levels(progress, 1.0, None)),
            chance_acc: None,
            chance_loss: None,
            train_acc: None,
            norm_acc: None,
            late_gain: None,
            loss_two_thirds: Some(1.0),
            half_gain: None,
            ..fine()
        }
    }

    fn limited(s: UnderfitSignals) -> UnderfitSignals {
        UnderfitSignals {
            limits: vec![("a limit".into(), "Lift the limit.".into())],
            ..s
        }
    }

    fn verdict(s: &UnderfitSignals) -> UnderfitVerdict {
        match decide_underfit(s) {
            Some(UnderfitOutcome::Judged(v)) => v,
            o => panic!("not judged: {o:?}"),
        }
    }

    fn underfit(s: &UnderfitSignals) -> bool {
        verdict(s).underfit
    }

    fn slow(s: &UnderfitSignals) -> bool {
        verdict(s).slow.is_some()
    }

    #[test]
    fn gates() {
        let judged =
            |s: UnderfitSignals| matches!(decide_underfit(&s), Some(UnderfitOutcome::Judged(_)));
        let early = |s: UnderfitSignals| decide_underfit(&s) == Some(UnderfitOutcome::TooEarly);
        assert!(early(UnderfitSignals {
            epochs: MIN_EPOCHS - 1,
            loss_points: 10_000,
            ..fine()
        }));
        assert!(judged(UnderfitSignals {
            epochs: MIN_EPOCHS,
            ..fine()
        }));
        // Without epochs, enough loss points stand in.
        assert!(early(UnderfitSignals {
            epochs: 0,
            loss_points: MIN_STEPS_NO_EPOCHS - 1,
            ..fine()
        }));
        assert!(judged(UnderfitSignals {
            epochs: 0,
            loss_points: MIN_STEPS_NO_EPOCHS,
            ..fine()
        }));
        // Warm-up is judged after "too early".
        let warm = UnderfitSignals {
            in_warmup: true,
            ..fine()
        };
        assert_eq!(decide_underfit(&warm), Some(UnderfitOutcome::Warmup));
        assert!(early(UnderfitSignals { epochs: 1, ..warm }));
        // Diverged runs and runs without a positive start level: silence.
        let diverged = UnderfitSignals {
            diverged: true,
            epochs: 1,
            ..fine()
        };
        assert_eq!(decide_underfit(&diverged), None);
        let no_levels = UnderfitSignals {
            levels: None,
            ..fine()
        };
        assert_eq!(decide_underfit(&no_levels), None);
    }

    #[test]
    fn a_model_that_fits_gets_no_verdict() {
        let v = verdict(&fine());
        assert!(!v.overshot && v.slow.is_none() && !v.underfit);
        assert!(!v.imbalance_note && !v.recovering_note);
        assert!(underfit(&poor()));
        assert!(!slow(&poor()));
    }

    #[test]
    fn poor_needs_low_accuracy_and_high_loss() {
        let acc = |norm_acc: f64| {
            underfit(&UnderfitSignals {
                norm_acc: Some(norm_acc),
                ..poor()
            })
        };
        assert!(acc(POOR_NORM_ACC.next_down()));
        assert!(!acc(POOR_NORM_ACC));
        let ratio = |r: f64| {
            underfit(&UnderfitSignals {
                levels: Some(levels(0.3, 1.4, Some(r))),
                ..poor()
            })
        };
        assert!(ratio(POOR_LOSS_RATIO.next_up()));
        assert!(!ratio(POOR_LOSS_RATIO));
        // Accuracy alone.
        let acc_only = |norm_acc: f64| {
            underfit(&UnderfitSignals {
                levels: Some(levels(0.3, 1.4, None)),
                norm_acc: Some(norm_acc),
                ..poor()
            })
        };
        assert!(acc_only(POOR_NORM_ACC.next_down()));
        assert!(!acc_only(POOR_NORM_ACC));
        // The loss alone needs the extra margin.
        let loss_alone = |r: f64| {
            underfit(&UnderfitSignals {
                levels: Some(levels(0.3, 1.0, Some(r))),
                ..loss_only(0.3)
            })
        };
        assert!(loss_alone((POOR_LOSS_RATIO + LOSS_ONLY_MARGIN).next_up()));
        assert!(!loss_alone(POOR_LOSS_RATIO + LOSS_ONLY_MARGIN));
        // Neither: never underfitting (regression).
        assert!(!underfit(&loss_only(0.3)));
    }

    #[test]
    fn a_capacity_limit_makes_unfinished_enough() {
        let acc = |norm_acc: f64| {
            underfit(&limited(UnderfitSignals {
                levels: Some(levels(0.3, 1.0, Some(0.3))),
                norm_acc: Some(norm_acc),
                half_gain: None,
                ..poor()
            }))
        };
        assert!(acc(FITTED_NORM_ACC.next_down()));
        assert!(!acc(FITTED_NORM_ACC));
        let ratio = |r: f64| {
            underfit(&limited(UnderfitSignals {
                levels: Some(levels(0.3, 1.0, Some(r))),
                ..loss_only(0.3)
            }))
        };
        assert!(ratio(FITTED_LOSS_RATIO.next_up()));
        assert!(!ratio(FITTED_LOSS_RATIO));
        // Unknown either way: nothing to judge.
        assert!(!underfit(&limited(loss_only(0.3))));
    }

    #[test]
    fn underfitting_needs_the_loss_to_have_moved_unless_limited() {
        let moved = |progress: f64| UnderfitSignals {
            levels: Some(levels(progress, 1.4, Some(0.8))),
            ..poor()
        };
        assert!(underfit(&moved(MIN_PROGRESS)));
        let stuck = moved(MIN_PROGRESS.next_down());
        assert!(!underfit(&stuck));
        // A poor model whose loss did not move converges slowly.
        assert!(slow(&stuck));
        assert!(underfit(&limited(moved(0.0))));
    }

    #[test]
    fn still_improving_is_slow_not_underfitting() {
        let gain = |late_gain: f64| UnderfitSignals {
            late_gain: Some(late_gain),
            ..poor()
        };
        let improving = gain(LATE_GAIN);
        assert!(!underfit(&improving) && slow(&improving));
        let plateau = gain(LATE_GAIN.next_down());
        assert!(underfit(&plateau) && !slow(&plateau));
        // Without accuracies: the loss two thirds in.
        let falling = |recent: f64| UnderfitSignals {
            late_gain: None,
            levels: Some(levels(0.3, recent, Some(0.8))),
            loss_two_thirds: Some(1.0),
            ..poor()
        };
        assert!(!underfit(&falling(STILL_FALLING.next_down())));
        assert!(underfit(&falling(STILL_FALLING)));
        // Improving but progress ≤ 0 (and not flat): not slow either.
        let backwards = UnderfitSignals {
            levels: Some(levels(FLAT_MIN_PROGRESS, 1.4, Some(0.8))),
            ..improving
        };
        assert!(!slow(&backwards) && !underfit(&backwards));
    }

    #[test]
    fn recovering_is_not_judged_yet() {
        let at = |now: f64| UnderfitSignals {
            half_gain: Some(AccGain { now, gain: 0.0 }),
            ..poor()
        };
        let v = verdict(&at(POOR_NORM_ACC));
        assert!(!v.underfit && v.recovering_note);
        let v = verdict(&at(POOR_NORM_ACC.next_down()));
        assert!(v.underfit && !v.recovering_note);
        // The gain counts once more.
        let v = verdict(&UnderfitSignals {
            half_gain: Some(AccGain {
                now: 0.3,
                gain: 0.3,
            }),
            ..poor()
        });
        assert!(!v.underfit && v.recovering_note);
        // With a capacity limit the target is FITTED_NORM_ACC.
        assert!(!underfit(&limited(at(FITTED_NORM_ACC))));
        assert!(underfit(&limited(at(FITTED_NORM_ACC.next_down()))));
        // A model that is not poor gets no note.
        assert!(!verdict(&fine()).recovering_note);
    }

    #[test]
    fn imbalance_explains_a_poor_accuracy() {
        let v = verdict(&UnderfitSignals {
            imbalanced: true,
            ..poor()
        });
        assert!(!v.underfit && v.imbalance_note && v.slow.is_none());
        // Not flat either.
        let flat = UnderfitSignals {
            imbalanced: true,
            ..loss_only(0.0)
        };
        assert!(!slow(&flat));
        assert!(
            !verdict(&UnderfitSignals {
                imbalanced: true,
                ..fine()
            })
            .imbalance_note
        );
    }

    #[test]
    fn a_flat_loss_is_slow_unless_known_fine() {
        assert!(slow(&loss_only(MIN_PROGRESS.next_down())));
        assert!(!slow(&loss_only(MIN_PROGRESS)));
        assert!(slow(&loss_only(FLAT_MIN_PROGRESS.next_up())));
        assert!(!slow(&loss_only(FLAT_MIN_PROGRESS)));
        // Flat but fitting well: not slow.
        let fitted = UnderfitSignals {
            levels: Some(levels(0.0, 0.4, Some(0.2))),
            ..fine()
        };
        assert!(!slow(&fitted));
    }

    #[test]
    fn tiny_updates_are_slow_and_blame_the_lr() {
        let tiny = |early: f64, s: UnderfitSignals| {
            verdict(&UnderfitSignals {
                early_update: Some(early),
                ..s
            })
            .slow
        };
        let unfinished = UnderfitSignals {
            norm_acc: Some(FITTED_NORM_ACC.next_down()),
            ..fine()
        };
        assert_eq!(
            tiny(TINY_UPDATE.next_down(), unfinished.clone()),
            Some(Slow { lr_low: true })
        );
        assert_eq!(tiny(TINY_UPDATE, unfinished), None);
        let finished = UnderfitSignals {
            norm_acc: Some(FITTED_NORM_ACC),
            ..fine()
        };
        assert_eq!(tiny(TINY_UPDATE.next_down(), finished), None);
        // Unknown whether it converged: the progress decides.
        assert_eq!(
            tiny(1e-6, loss_only(TINY_UPDATE_MAX_PROGRESS.next_down())),
            Some(Slow { lr_low: true })
        );
        assert_eq!(tiny(1e-6, loss_only(TINY_UPDATE_MAX_PROGRESS)), None);
        // A flat loss blames the LR when the median update is tiny.
        let update = |u: f64| {
            verdict(&UnderfitSignals {
                update: Some(u),
                ..loss_only(0.0)
            })
            .slow
        };
        assert_eq!(update(TINY_UPDATE.next_down()), Some(Slow { lr_low: true }));
        assert_eq!(update(TINY_UPDATE), Some(Slow { lr_low: false }));
    }

    #[test]
    fn an_overshot_loss_is_not_slow() {
        let at = |recent: f64, first: f64, chance: Option<f64>| {
            verdict(&UnderfitSignals {
                levels: Some(levels(0.0, recent, None)),
                first_loss: Some(first),
                chance_loss: chance,
                ..loss_only(0.0)
            })
        };
        // Base: the larger of the first loss and the chance level.
        let v = at((OVERSHOOT * 2.0).next_up(), 2.0, Some(1.0));
        assert!(v.overshot && v.slow.is_none());
        let v = at(OVERSHOOT * 2.0, 2.0, Some(1.0));
        assert!(!v.overshot && v.slow.is_some());
        assert!(
            at((OVERSHOOT * 2.0).next_up(), 1.0, Some(2.0))
                .slow
                .is_none()
        );
        assert!(at(OVERSHOOT * 2.0, 1.0, Some(2.0)).slow.is_some());
        // Without a chance level, the first loss alone.
        assert!(at((OVERSHOOT * 2.0).next_up(), 2.0, None).overshot);
        assert!(!at(OVERSHOOT * 2.0, 2.0, None).overshot);
    }

    #[test]
    fn signals_measure_the_training_curves() {
        let mut v = view(&[(
            "train/loss",
            curve(500, 1, |i| 1.1 + 0.3 * (-(i as f64) / 50.0).exp()),
        )]);
        epochs(&mut v, "epoch", 25, 20, |e| e as f64);
        epochs(&mut v, "train/acc", 25, 20, |e| {
            (0.2 + 0.05 * e as f64).min(0.45)
        });
        v.datasets.push(four_balanced_classes());
        v.config = serde_json::json!({ "dropout": 0.6 });
        let mut out = Diagnosis::default();
        let s = underfit_signals(&Ctx::new(&v), &out).expect("signals");
        assert!(!s.diverged && !s.in_warmup && !s.imbalanced);
        assert_eq!((s.epochs, s.loss_points), (25, 500));
        let l = s.levels.expect("levels");
        assert!((l.progress - (1.0 - l.recent / l.start)).abs() < 1e-12);
        assert!((l.loss_ratio.unwrap() - l.recent / 4f64.ln()).abs() < 1e-12);
        assert_eq!(s.chance_acc, Some(0.25));
        assert_eq!(s.train_acc, Some(0.45));
        assert!((s.norm_acc.unwrap() - (0.45 - 0.25) / 0.75).abs() < 1e-12);
        assert!(s.late_gain.unwrap().abs() < 1e-12);
        let h = s.half_gain.expect("half");
        assert!(h.gain.abs() < 1e-12);
        assert_eq!(s.first_loss, Some(1.1 + 0.3));
        assert_eq!(s.limits.len(), 1);
        assert_eq!(s.series, ["train/loss", "train/acc"]);
        assert_eq!(s.min_epochs_end, Some(100));
        assert_eq!(s.first_step, Some(0));
        // Findings so far: imbalance, unit-level problems (first in order),
        // divergence.
        let raised = |kind: Kind| Finding {
            kind,
            caused_by: None,
            severity: Severity::Warning,
            onset_step: None,
            title: String::new(),
            evidence: Evidence::default(),
            cause: String::new(),
            fixes: Vec::new(),
        };
        out.push(raised(Kind::ClassImbalance));
        out.push(raised(Kind::SaturatedActivations));
        out.push(raised(Kind::VanishingGradients));
        let s = underfit_signals(&Ctx::new(&v), &out).expect("signals");
        assert!(s.imbalanced && !s.diverged);
        assert_eq!(s.unit_problem, Some(Kind::VanishingGradients));
        out.push(raised(Kind::Divergence));
        assert!(underfit_signals(&Ctx::new(&v), &out).unwrap().diverged);
        assert_eq!(underfit_signals(&Ctx::new(&view(&[])), &out), None);
    }

    #[test]
    fn slow_wording() {
        let s = loss_only(0.05);
        let l = s.levels.unwrap();
        let f = slow_finding(&s, &l, Slow { lr_low: false });
        assert_eq!(f.kind, Kind::SlowConvergence);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.onset_step, Some(0));
        assert_eq!(
            f.title,
            "Training is barely progressing after 20 epochs: loss 2 → 1, loss 1"
        );
        assert_eq!(
            f.evidence.summary,
            "The training loss fell by 5% from its start; loss 1."
        );
        assert!(
            f.cause
                .starts_with("The optimisation makes little progress")
        );
        assert_eq!(
            f.fixes[0],
            "Increase the learning rate ×10: 0.001 → 0.01 (or run an LR range test)."
        );
        assert_eq!(f.fixes.len(), 3);
        let f = slow_finding(
            &UnderfitSignals {
                early_update: Some(5e-6),
                lr: None,
                ..s.clone()
            },
            &l,
            Slow { lr_low: true },
        );
        assert_eq!(
            f.cause,
            "Weight updates are tiny (median ‖Δw‖/‖w‖ = 5e-6, healthy ≈ 1e-3): the learning rate is too low for this optimizer."
        );
        assert_eq!(
            f.fixes[0],
            "Increase the learning rate ×10 (or run an LR range test)."
        );
        let f = slow_finding(
            &UnderfitSignals {
                unit_problem: Some(Kind::DeadRelu),
                ..s
            },
            &l,
            Slow { lr_low: true },
        );
        assert!(
            f.cause.starts_with("A consequence of dead_relu: "),
            "{}",
            f.cause
        );
        assert_eq!(
            f.fixes[0],
            "Fix the dead_relu finding first; the loss should then start to fall."
        );
        assert_eq!(f.fixes.len(), 2);
    }

    #[test]
    fn underfit_wording() {
        let s = poor();
        let f = underfit_finding(&s, &s.levels.unwrap());
        assert_eq!(f.kind, Kind::Underfitting);
        assert_eq!(f.onset_step, Some(100));
        assert_eq!(
            f.title,
            "Model underfits: training accuracy 37% (chance 10%) after 20 epochs, and it has plateaued"
        );
        assert_eq!(
            f.evidence.summary,
            "The loss fell from 2 to 1.4 and stopped improving; training accuracy 37% (chance 10%)."
        );
        assert_eq!(f.evidence.layer.as_deref(), Some("fc1"));
        assert_eq!(f.evidence.metrics["loss_over_chance"], 0.8);
        assert_eq!(
            f.cause,
            "The model cannot fit its own training data: the model lacks capacity or is over-regularised for this task."
        );
        assert_eq!(f.fixes.len(), 4);
        assert_eq!(f.fixes[3], "Try a higher learning rate (0.001 → 0.003).");
        let s = limited(UnderfitSignals {
            lr: None,
            min_epochs_end: None,
            train_acc: None,
            ..poor()
        });
        let f = underfit_finding(&s, &s.levels.unwrap());
        assert_eq!(f.onset_step, Some(0));
        assert!(
            f.title
                .starts_with("Model underfits: loss 1.4 vs chance level 2.3 after")
        );
        assert_eq!(
            f.cause,
            "The model cannot fit its own training data: a limit."
        );
        assert_eq!(f.fixes.len(), 2);
        assert_eq!(f.fixes[0], "Lift the limit.");
    }
}
