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
//! ≥ 0.99 with a gap ≥ the AT gap + one standard error of the validation
//! accuracy, or a gap ≥ 0.2 with train accuracy ≥ 0.95 and validation
//! accuracy not improving for 3 evaluations. Relative validation *error* is not used: on small validation
//! sets one sample moves it by 25%+. Without accuracies (e.g. regression):
//! val loss ≥ 20% above its minimum, the minimum ≥ 3 evaluations back, while
//! the training loss kept falling. Onset = the best validation epoch, which
//! is also where early stopping should have stopped.
//!
//! **Underfitting** (AT `not_converge`, TDC's chance-level loss): the model
//! cannot fit its own training data. Training accuracy, normalised between
//! chance (majority class) and perfect, is < 0.6 *and* the training loss is
//! still > 50% of the chance-level loss (entropy of the class prior), after
//! the loss did move (≥ 10% down — otherwise it is slow convergence) and
//! has plateaued. Regression has no chance level in the logs, so it only gets
//! the slow-convergence rule. With a raised class imbalance, a model stuck at
//! the majority class is explained by the imbalance and underfitting is not
//! judged (the chance baseline is ambiguous there).
//!
//! **Slow convergence** (AT: no accuracy gain and accuracy below target; DD
//! "loss not decreasing"): after ≥ 5 epochs the training loss has fallen by
//! < 10% from its start and the model is still far from fitting (same
//! accuracy/loss gates as underfitting when available), or it is poor and
//! still improving at a crawl. Measured from the start of the run, so a
//! plateau after an LR decay is not "slow"; skipped during LR warm-up, and
//! when the loss sits > 1.5× above both its first logged value and the
//! chance level (it went the wrong way: instability, not slowness).
//!
//! The overfitting rule is split in three: `overfit_signals` measures (no
//! thresholds), `decide_overfit` applies the thresholds below to those
//! measurements, and `overfit_finding` words the verdict:
//!
//! | verdict | rule |
//! |---|---|
//! | (any) | ≥ [`MIN_EPOCHS`] evaluations, else a note |
//! | overfitting, with accuracies | gap ≥ [`GAP_HIGH_ACC`] (train acc > [`HIGH_TRAIN_ACC`]) or ≥ [`GAP_AT`], and val loss ≥ [`GL_LOSS`] above its best, that best ≥ [`STALE_EVALS`] evaluations back |
//! | overfitting, memorised | train acc ≥ [`MEMORISED_ACC`] and gap ≥ the gap above + SE of val acc ([`UNKNOWN_VAL_SE`] without a val size); or gap ≥ [`MEMORISED_GAP`], train acc ≥ [`MEMORISED_STALE_ACC`], best val acc ≥ [`STALE_EVALS`] back |
//! | overfitting, no accuracies | val loss ≥ [`GL_LOSS_NO_ACC`] (and ≥ [`GL_LOSS`]) above its best, that best ≥ [`STALE_EVALS`] back, training loss lower now than at the best step |
//! | overfitting `error` | val loss ≥ [`SEVERE_GL_LOSS`] above its best and (with accuracies) gap ≥ [`SEVERE_GAP`]; otherwise `warning` |

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
/// Validation loss above its best that makes overfitting an `error`.
const SEVERE_GL_LOSS: f64 = 0.5;
/// Gap that, with [`SEVERE_GL_LOSS`], makes overfitting an `error`.
const SEVERE_GAP: f64 = 0.2;
/// Parameters per training sample from which the wording blames capacity
/// ("it can memorise the training set").
const MEMORISE_PARAMS_PER_SAMPLE: f64 = 10.0;

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
    let loss_above_best = match (best_loss, tail3(&vl)) {
        (Some((_, (_, min))), Some(now)) if min > 0.0 => now / min - 1.0,
        _ => f64::NAN,
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
    Some(OverfitSignals {
        evals: vl.len().max(va.len()),
        loss_above_best,
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
    let loss_rising = stale(s.loss_evals_since_best) && s.loss_above_best >= GL_LOSS;
    let rule = if let Some(AccGap { train, gap }) = s.acc {
        let th = if train > HIGH_TRAIN_ACC {
            GAP_HIGH_ACC
        } else {
            GAP_AT
        };
        // Memorised: (almost) every training sample right, validation well
        // below — by more than the AT gap plus one standard error of the
        // validation accuracy (small validation sets are coarse).
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
        } else {
            return None;
        }
    } else {
        // No accuracies: the validation loss is the only evidence.
        s.loss_evals_since_best?;
        let train_falling = match (s.train_loss_at_best, s.train_loss_now) {
            (Some(then), Some(now)) => now < then,
            _ => true,
        };
        if loss_rising && s.loss_above_best >= GL_LOSS_NO_ACC && train_falling {
            OverfitRule::RisingLoss
        } else {
            return None;
        }
    };
    let severe = s.loss_above_best >= SEVERE_GL_LOSS && s.acc.is_none_or(|a| a.gap >= SEVERE_GAP);
    Some(OverfitVerdict::Overfitting { rule, severe })
}

/// The overfitting finding (`error` when `severe`, else `warning`).
fn overfit_finding(s: &OverfitSignals, severe: bool) -> Finding {
    let gl_loss = s.loss_above_best;
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
    if gl_loss.is_finite() && gl_loss > 0.0 {
        parts.push(format!(
            "validation loss {} above its best",
            fmt_pct(gl_loss)
        ));
    }
    let (wd, dropout) = (s.weight_decay, s.dropout);
    let cause = match (s.n_train, s.params) {
        (Some(n), Some(p)) if p as f64 > MEMORISE_PARAMS_PER_SAMPLE * n as f64 => format!(
            "The model has {p} parameters for {n} training samples ({:.0} per sample): it can memorise the training set, so training error keeps falling while validation error does not.",
            p as f64 / n as f64
        ),
        _ => "The model fits noise specific to the training set: training error keeps falling while validation error stalls or rises.".into(),
    };
    let mut fixes = Vec::new();
    match (s.best_step, s.best_epoch) {
        (Some(st), Some(e)) => fixes.push(format!("Stop at step {} (epoch {e}), where validation was best: use early stopping (patience ≈ 3 evaluations) and restore that checkpoint.", fmt_step(st))),
        (Some(st), None) => fixes.push(format!("Stop at step {}, where validation was best: use early stopping and restore that checkpoint.", fmt_step(st))),
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
        severity: if severe {
            Severity::Error
        } else {
            Severity::Warning
        },
        onset_step: s.best_step,
        title: format!(
            "Overfitting{}: {}",
            s.best_step
                .map(|st| format!(" since step {}", fmt_step(st)))
                .unwrap_or_default(),
            parts.join(", ")
        ),
        evidence: Evidence {
            series: s.series.clone(),
            layer: None,
            metrics,
            summary: format!(
                "Validation {} was best at step {}; since then {}.",
                if s.best_is_loss { "loss" } else { "accuracy" },
                s.best_step.map(fmt_step).unwrap_or_else(|| "?".into()),
                parts.join(" and ")
            ),
        },
        cause,
        fixes,
    }
}

fn under_and_slow(ctx: &Ctx, out: &mut Diagnosis) {
    let Some(train) = ctx.train_loss else { return };
    // A diverging run is not "slow": its loss went the wrong way.
    if ctx.loss_nonfinite()
        || out
            .get(Kind::Divergence)
            .is_some_and(|f| f.severity.is_raised())
    {
        return;
    }
    let epochs = ctx.epochs_seen();
    let enough = epochs >= MIN_EPOCHS || (epochs == 0 && train.series.len() >= 200);
    if !enough {
        out.note(format!("not enough data yet for underfitting or slow convergence ({epochs} of {MIN_EPOCHS} epochs)"));
        return;
    }
    if ctx.in_warmup() {
        out.note("underfitting and slow convergence not judged during LR warm-up");
        return;
    }
    let (Some(start), Some(recent)) = (ctx.loss_start(), ctx.loss_recent()) else {
        return;
    };
    if start <= 0.0 {
        return;
    }
    let progress = 1.0 - recent / start;
    let chance_acc = ctx.chance_acc();
    let ta = ctx
        .train_acc
        .map(|n| finite(ctx.epoch_level(n.series)))
        .unwrap_or_default();
    let norm = |acc: f64| match chance_acc {
        Some(c) if c < 1.0 => (acc - c) / (1.0 - c),
        _ => acc,
    };
    let norm_acc = tail3(&ta).map(norm);
    let loss_ratio = ctx.chance_loss().filter(|c| *c > 0.0).map(|c| recent / c);
    let poor_strict = match (norm_acc, loss_ratio) {
        (Some(a), Some(r)) => Some(a < POOR_NORM_ACC && r > POOR_LOSS_RATIO),
        (Some(a), None) => Some(a < POOR_NORM_ACC),
        (None, Some(r)) => Some(r > POOR_LOSS_RATIO + 0.1),
        (None, None) => None,
    };
    // Not converged: short of 90% of the way from chance to perfect.
    let unfinished = match (norm_acc, loss_ratio) {
        (Some(a), _) => Some(a < 0.9),
        (None, Some(r)) => Some(r > 0.2),
        (None, None) => None,
    };
    // With a structural limit on capacity, "not converged" is enough.
    let limits = capacity_limits(ctx);
    let poor_before_gates = if limits.is_empty() {
        poor_strict
    } else {
        match (poor_strict, unfinished) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (None, None) => None,
            _ => Some(false),
        }
    };
    let poor = poor_before_gates;
    // Still improving: normalised accuracy gained ≥ 0.1 over the last third of
    // the epochs (or the loss fell ≥ 10% over the last third of the steps).
    let late_gain = if ta.len() >= 3 {
        let i = ta.len() - ta.len().div_ceil(3);
        Some(norm(ta[ta.len() - 1].1) - norm(ta[i.saturating_sub(1)].1))
    } else {
        None
    };
    let still_improving = late_gain.map(|g| g >= 0.1).unwrap_or_else(|| {
        let v = &train.series.values;
        let w = recent_len(v.len(), 5);
        let end = (2 * v.len() / 3).max(w);
        median(&v[end - w..end]).is_some_and(|then| recent < 0.9 * then)
    });
    // Recovering: repeating the gain of the recent half once more would lift
    // the model out of "poor" — too early for a verdict (a run in progress on
    // a hard task looks poor for a while).
    let poor_level = if limits.is_empty() {
        POOR_NORM_ACC
    } else {
        0.9
    };
    let recovering = ta.len() >= 4 && {
        let (n, mid) = (ta.len(), ta.len() / 2);
        let gain = norm(ta[n - 1].1) - norm(ta[mid - 1].1);
        norm(ta[n - 1].1) + gain >= poor_level
    };
    let imbalanced = out
        .get(Kind::ClassImbalance)
        .is_some_and(|f| f.severity.is_raised());
    // With imbalanced classes, accuracy near the majority share is explained
    // by the imbalance: "poor" is not judged.
    let poor = if imbalanced || recovering {
        poor.map(|_| false)
    } else {
        poor
    };
    let update = median_update_ratio(ctx);
    let mut metrics = BTreeMap::new();
    metrics.insert("loss_start".into(), start);
    metrics.insert("loss_recent".into(), recent);
    metrics.insert("loss_progress".into(), progress);
    if let Some(a) = norm_acc {
        metrics.insert("train_acc_normalised".into(), a);
    }
    if let Some(a) = tail3(&ta) {
        metrics.insert("train_acc".into(), a);
    }
    if let Some(r) = loss_ratio {
        metrics.insert("loss_over_chance".into(), r);
    }
    if let Some(u) = update {
        metrics.insert("median_update_ratio".into(), u);
    }
    let series: Vec<String> = [ctx.train_loss, ctx.train_acc]
        .iter()
        .flatten()
        .map(|n| n.key.to_string())
        .collect();
    let acc_text = match (tail3(&ta), chance_acc) {
        (Some(a), Some(c)) => format!("training accuracy {} (chance {})", fmt_pct(a), fmt_pct(c)),
        (Some(a), None) => format!("training accuracy {}", fmt_pct(a)),
        _ => match ctx.chance_loss() {
            Some(c) => format!("loss {} vs chance level {}", fmt_num(recent), fmt_num(c)),
            None => format!("loss {}", fmt_num(recent)),
        },
    };
    let lr = ctx.current_lr();
    let flat = progress < MIN_PROGRESS && progress > -0.5 && !imbalanced;
    let early_update = early_update_ratio(ctx);
    let tiny_updates =
        early_update.is_some_and(|u| u < TINY_UPDATE) && unfinished.unwrap_or(progress < 0.5);
    // The loss now sits well above both where the run began (its first
    // step) and the chance level: the optimiser overshot and the model is
    // confidently wrong. That is instability (too high an LR), the opposite
    // of slow convergence, whose remedy (a larger LR) would make it worse.
    // Reference: the first logged loss (computed before any update) — the
    // model's own starting level — and the chance level.
    let first_loss = train.series.values.iter().copied().find(|x| x.is_finite());
    let overshot = first_loss.is_some_and(|f| {
        let base = ctx.chance_loss().map_or(f, |c| c.max(f));
        base > 0.0 && recent > 1.5 * base
    });
    if overshot {
        out.note("slow convergence not judged: the training loss rose well above its first steps and the chance level (instability, not slowness)");
    }
    let slow = !overshot
        && (flat && poor != Some(false)
            || poor == Some(true) && still_improving && progress > 0.0
            || tiny_updates);
    if slow {
        let lr_low = tiny_updates || update.is_some_and(|u| u < TINY_UPDATE);
        // A unit-level problem found earlier explains the stall better than
        // the learning rate (and raising the LR would not help it).
        let raised = |k: Kind| out.get(k).is_some_and(|f| f.severity.is_raised());
        let explained_by = if raised(Kind::DeadRelu) {
            Some((
                "dead_relu",
                "most ReLU units are dead, so almost no gradient flows and the loss cannot move",
            ))
        } else if raised(Kind::VanishingGradients) {
            Some((
                "vanishing_gradients",
                "gradients vanish before reaching the first layers, so they barely change",
            ))
        } else if raised(Kind::UnchangedWeights) {
            Some(("unchanged_weights", "part of the model is never updated"))
        } else if raised(Kind::SaturatedActivations) {
            Some((
                "saturated_activations",
                "saturated units pass almost no gradient",
            ))
        } else {
            None
        };
        let cause = if let Some((kind, why)) = explained_by {
            format!("A consequence of {kind}: {why}.")
        } else if lr_low {
            format!(
                "Weight updates are tiny (median ‖Δw‖/‖w‖ = {}, healthy ≈ 1e-3): the learning rate{} is too low for this optimizer.",
                fmt_num(early_update.or(update).unwrap_or(f64::NAN)),
                lr.map(|l| format!(" ({})", fmt_num(l))).unwrap_or_default()
            )
        } else {
            "The optimisation makes little progress: too low a learning rate, a poor initialisation, or gradients that do not reach the weights (see other findings).".into()
        };
        out.push(Finding {
            kind: Kind::SlowConvergence,
            severity: Severity::Warning,
            onset_step: train.series.steps.first().copied(),
            title: format!("Training is barely progressing after {epochs} epochs: loss {} → {}, {acc_text}", fmt_num(start), fmt_num(recent)),
            evidence: Evidence {
                series: series.clone(),
                layer: None,
                metrics: metrics.clone(),
                summary: format!("The training loss fell by {} from its start; {acc_text}.", fmt_pct(progress.max(0.0))),
            },
            cause,
            fixes: match explained_by {
                Some((kind, _)) => vec![
                    format!("Fix the {kind} finding first; the loss should then start to fall."),
                    "Check the initialisation (He for ReLU, Glorot for tanh/sigmoid), the input normalisation and the labels.".into(),
                ],
                None => vec![
                    match lr {
                        Some(l) => format!("Increase the learning rate ×10: {} → {} (or run an LR range test).", fmt_num(l), fmt_num(l * 10.0)),
                        None => "Increase the learning rate ×10 (or run an LR range test).".into(),
                    },
                    "Use Adam (lr 1e-3) or SGD with momentum 0.9.".into(),
                    "Check the initialisation (He for ReLU, Glorot for tanh/sigmoid), the input normalisation and the labels.".into(),
                ],
            },
        });
    }
    if imbalanced && poor_before_gates == Some(true) {
        out.note("underfitting not judged: with imbalanced classes, accuracy near the majority share is explained by the imbalance");
    }
    if recovering && poor_before_gates == Some(true) {
        out.note("underfitting not judged yet: training accuracy is still rising fast enough to leave the poor range");
    }
    // The loss moved but stopped short, or a structural limit explains why it
    // could not move at all (e.g. weight decay pinning the weights at 0).
    if poor == Some(true) && (progress >= MIN_PROGRESS || !limits.is_empty()) && !still_improving {
        let model = ctx.view.model.as_ref();
        let narrowest = model.and_then(|m| {
            let n = m.layers.len();
            m.layers
                .iter()
                .take(n.saturating_sub(1))
                .filter_map(|l| l.outputs.map(|o| (o, l.name.clone())))
                .min()
        });
        let mut causes: Vec<String> = limits.iter().map(|l| l.0.clone()).collect();
        let mut fixes: Vec<String> = limits.iter().map(|l| l.1.clone()).collect();
        if causes.is_empty() {
            causes.push("the model lacks capacity or is over-regularised for this task".into());
            fixes.push("Increase capacity (wider/more layers) and train longer.".into());
            fixes.push("Reduce regularisation (weight decay, dropout).".into());
        }
        fixes.push("Check the model can overfit a single batch of 16 samples; if not, look for a bug in the model or labels.".into());
        if let Some(l) = lr {
            fixes.push(format!(
                "Try a higher learning rate ({} → {}).",
                fmt_num(l),
                fmt_num(l * 3.0)
            ));
        }
        out.push(Finding {
            kind: Kind::Underfitting,
            severity: Severity::Warning,
            onset_step: ctx.epoch_ends.get(MIN_EPOCHS - 1).copied().or(train
                .series
                .steps
                .first()
                .copied()),
            title: format!(
                "Model underfits: {acc_text} after {epochs} epochs, and it has plateaued"
            ),
            evidence: Evidence {
                series,
                layer: narrowest.map(|n| n.1),
                metrics,
                summary: format!(
                    "The loss fell from {} to {} and stopped improving; {acc_text}.",
                    fmt_num(start),
                    fmt_num(recent)
                ),
            },
            cause: format!(
                "The model cannot fit its own training data: {}.",
                causes.join("; ")
            ),
            fixes,
        });
    }
}

/// Structural limits on what the model can fit, as (cause, fix): a hidden
/// layer of ≤ 2 units or narrower than the number of classes, weight decay
/// ≥ 0.05 (TDC: "overwhelming regularisation"), dropout ≥ 0.5. Healthy
/// models are far from all three.
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
            && (w <= 2 || classes.is_some_and(|k| (w as usize) < k))
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
    if wd >= 0.05 {
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
    if dropout >= 0.5 {
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
    use super::super::testutil::{curve, four_balanced_classes, healthy, noise, view};
    use super::super::{Kind, RunView, Series, diagnose};

    fn epochs(v: &mut RunView, key: &str, n: usize, spe: usize, f: impl Fn(usize) -> f64) {
        v.scalars.insert(
            key.into(),
            Series::from_points((1..=n).map(|e| ((e * spe) as u64, f(e)))),
        );
    }

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
    use super::super::testutil::{curve, view};
    use super::super::{DatasetRecord, RunView, Series};
    use super::*;

    /// Signals where the gap-and-rising-loss rule clearly fires.
    fn sig() -> OverfitSignals {
        OverfitSignals {
            evals: 10,
            loss_above_best: 0.3,
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

    fn epochs(v: &mut RunView, key: &str, n: usize, f: impl Fn(usize) -> f64) {
        v.scalars.insert(
            key.into(),
            Series::from_points((1..=n).map(|e| ((e * 20) as u64, f(e)))),
        );
    }

    #[test]
    fn signals_measure_the_validation_curves() {
        let mut v = view(&[("train/loss", curve(800, 1, |i| 2.0 - i as f64 / 800.0))]);
        epochs(&mut v, "epoch", 40, |e| e as f64);
        epochs(&mut v, "train/acc", 40, |e| {
            (0.5 + e as f64 * 0.05).min(1.0)
        });
        epochs(&mut v, "val/acc", 40, |e| (0.4 + e as f64 * 0.02).min(0.55));
        epochs(&mut v, "val/loss", 40, |e| {
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
