//! Unit-level problems: dead ReLUs, saturated sigmoid/tanh layers, weights
//! that never change.
//!
//! All three judge a layer on the *recent half* of its checks and require the
//! condition in both the recent half and the last quarter (median), so a
//! transient state at initialisation or a single odd batch does not count,
//! and a run that recovered is not flagged.
//!
//! - **Dead ReLU** (TDC: alert when > 50% of a layer's units are dead;
//!   `dead_frac` is the unit-level "never active on the batch" share the
//!   research recommends over value-level zero shares): median `dead_frac` ≥
//!   0.5 in a hidden layer → `warning`, ≥ 0.9 → `error`. Without `dead_frac`,
//!   a ReLU layer whose activation mean *and* std are exactly 0 is entirely
//!   dead. No `dead_frac` and no activation statistics → no finding. Units
//!   alive at the first check that died under a peak LR ≥ 0.05 were knocked
//!   out by the updates: the first fix lowers the LR; units dead from the
//!   first check were dead at initialisation: the first fixes are a leaky
//!   activation and He init with zero biases.
//! - **Saturated activations** (TDC/DD: > 50% of units/pre-activations
//!   saturated): median `sat_frac` ≥ 0.5 in a hidden sigmoid/tanh layer →
//!   `warning` (`error` ≥ 0.9). The output layer is skipped: a confident
//!   classifier's output saturates legitimately. Without `sat_frac`, the share
//!   of activation-histogram mass beyond the saturation bounds is used.
//! - **Unchanged weights** (DD "unchanged tensor", TDC "weights untrained"):
//!   a trainable layer whose update ratio ‖Δw‖/‖w‖ is ≤ 1e-10 — far below what
//!   float32 can even represent as a change (ε ≈ 1.2e-7) — at every recent
//!   check, or (without update ratios) whose weight norm is bit-for-bit
//!   constant while the LR has not been decayed to < 1% of its peak, while the run is
//!   numerically healthy (a NaN run also reports 0 updates) → `warning`, or
//!   `error` when no layer changes at all. Layers marked `trainable: false`
//!   are frozen on purpose and skipped. A layer whose logged `grad_norm` is
//!   also zero at every recent check is skipped too (with a note): a layer
//!   the optimizer leaves out still has its gradient computed, so zero
//!   gradient means no signal reaches it (saturated or dead units, e.g. a
//!   tanh stack pinned at ±1 after a blow-up), which is not this fault.

use std::collections::BTreeMap;

use super::context::{Ctx, Layer, Named};
use super::names::Role;
use super::stats::{fmt_num, fmt_pct, fmt_step, median};
use super::{Diagnosis, Evidence, Finding, Hist, Kind, Severity};

/// Share of dead / saturated units from which a layer is flagged (TDC).
const UNIT_SHARE: f64 = 0.5;
/// Share from which it is an error.
const UNIT_SHARE_SEVERE: f64 = 0.9;
/// Peak LR from which units that died during training are blamed on the
/// updates (the same bound the LR checks call high for SGD-style steps).
const DEAD_BY_LR: f64 = 0.05;
/// Update ratio that is "no change" for float32 weights.
const NO_UPDATE: f64 = 1e-10;

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    dead_relu(ctx, out);
    saturated(ctx, out);
    unchanged(ctx, out);
}

/// Median over the recent half and over the last quarter; the smaller of the
/// two (the condition must hold in both). Needs ≥ 2 points in the half.
fn persistent_level(values: &[f64]) -> Option<f64> {
    let half = &values[values.len() / 2..];
    if half.len() < 2 {
        return None;
    }
    let quarter = &values[values.len() - half.len().div_ceil(2)..];
    Some(median(half)?.min(median(quarter)?))
}

fn is_relu(l: &Layer) -> bool {
    // Plain ReLU only: leaky/parametric variants and (G|S)ELU cannot die.
    l.activation
        .as_deref()
        .is_some_and(|a| matches!(a, "relu" | "relu6" | "re_lu"))
}

fn is_saturating(l: &Layer) -> bool {
    l.activation
        .as_deref()
        .is_some_and(|a| a.contains("sigmoid") || a.contains("tanh"))
}

struct Hit<'a> {
    layer: &'a Layer<'a>,
    share: f64,
    onset: Option<u64>,
    /// The condition already held at the layer's first check.
    from_start: bool,
    key: String,
}

/// The evidence of per-layer hits: their series, the worst layer, and each
/// layer's share with `word` ("dead", "saturated").
fn hits_evidence(
    hits: &[Hit],
    worst: &Hit,
    metrics: BTreeMap<String, f64>,
    word: &str,
) -> Evidence {
    Evidence {
        series: hits.iter().map(|h| h.key.clone()).collect(),
        layer: Some(worst.layer.name.clone()),
        metrics,
        summary: hits
            .iter()
            .map(|h| format!("{}: {} {word}", h.layer.name, fmt_pct(h.share)))
            .collect::<Vec<_>>()
            .join("; "),
        samples: Vec::new(),
    }
}

/// A hit when `values` stay at or above `threshold` through the end of the run.
/// An error once most of a layer's units are lost, a warning before.
fn unit_severity(share: f64) -> Severity {
    if share >= UNIT_SHARE_SEVERE {
        Severity::Error
    } else {
        Severity::Warning
    }
}

/// A layer whose logged share (`dead_frac`, `sat_frac`) stays at or above
/// [`UNIT_SHARE`].
fn logged_hit<'a>(layer: &'a Layer<'a>, share: Named<'a>) -> Option<Hit<'a>> {
    persistent_hit(
        layer,
        &share.series.steps,
        &share.series.values,
        UNIT_SHARE,
        share.key,
    )
}

fn persistent_hit<'a>(
    layer: &'a Layer<'a>,
    steps: &[u64],
    values: &[f64],
    threshold: f64,
    key: &str,
) -> Option<Hit<'a>> {
    let share = persistent_level(values).filter(|s| *s >= threshold)?;
    let onset = stays_above_from(steps, values, threshold);
    Some(Hit {
        layer,
        share,
        onset,
        from_start: onset.is_some() && onset == steps.first().copied(),
        key: key.to_string(),
    })
}

/// The first step from which the values stay ≥ `threshold` (scanning back
/// from the end).
fn stays_above_from(steps: &[u64], values: &[f64], threshold: f64) -> Option<u64> {
    let mut onset = None;
    for (s, v) in steps.iter().zip(values).rev() {
        if *v >= threshold {
            onset = Some(*s);
        } else {
            break;
        }
    }
    onset
}

fn dead_relu(ctx: &Ctx, out: &mut Diagnosis) {
    let mut hits: Vec<Hit> = Vec::new();
    for l in ctx.layers.iter().filter(|l| !l.is_output) {
        if let Some(d) = l.get(Role::DeadFrac) {
            hits.extend(logged_hit(l, d));
        } else if is_relu(l)
            && let (Some(m), Some(s)) = (l.get(Role::ActMean), l.get(Role::ActStd))
        {
            let silent: Vec<f64> = m
                .series
                .values
                .iter()
                .zip(&s.series.values)
                .map(|(a, b)| if *a == 0.0 && *b == 0.0 { 1.0 } else { 0.0 })
                .collect();
            hits.extend(persistent_hit(l, &m.series.steps, &silent, 1.0, s.key));
        }
    }
    let Some(worst) = hits.iter().max_by(|a, b| a.share.total_cmp(&b.share)) else {
        dead_by_zero_gradients(ctx, out);
        return;
    };
    let names: Vec<&str> = hits.iter().map(|h| h.layer.name.as_str()).collect();
    let onset = hits.iter().filter_map(|h| h.onset).min();
    let mut metrics = BTreeMap::new();
    metrics.insert("dead_share".into(), worst.share);
    metrics.insert("layers_affected".into(), hits.len() as f64);
    if let Some(lr) = ctx.current_lr() {
        metrics.insert("lr".into(), lr);
    }
    // Units alive at the first check that died under a high LR were knocked
    // out by the updates: lowering the LR is the fix that addresses the
    // cause (a leaky activation would only hide it). Units dead from the
    // first check were dead at initialisation.
    let killed_by_lr =
        ctx.peak_lr().is_some_and(|lr| lr >= DEAD_BY_LR) && hits.iter().any(|h| !h.from_start);
    let cause = if killed_by_lr {
        format!(
            "Too large updates (LR {}) pushed the units' pre-activations negative for every input after training started; a ReLU that never fires gets zero gradient and cannot recover.",
            fmt_num(ctx.peak_lr().unwrap_or(f64::NAN))
        )
    } else if hits.iter().all(|h| h.from_start) {
        "The units never fire from the first check on: their pre-activations are negative for every input from initialisation (e.g. negative bias initialisation or a bad weight scale); a ReLU that never fires gets zero gradient and cannot recover.".into()
    } else {
        "The units' pre-activations are negative for every input (e.g. negative bias initialisation, bad weight scale or a past large update); a ReLU that never fires gets zero gradient and cannot recover.".into()
    };
    let mut fixes = vec![
        "Use LeakyReLU, ELU or SELU so that inactive units still get a gradient.".to_string(),
        "Initialise with He init and zero (or small positive) biases.".into(),
        ctx.lower_lr_fix(" so updates do not knock units out"),
        "Add BatchNorm before the activation.".into(),
    ];
    if killed_by_lr {
        let lower_lr = fixes.remove(2);
        fixes.insert(0, lower_lr);
    }
    out.push(Finding {
        kind: Kind::DeadRelu,
        caused_by: None,
        severity: unit_severity(worst.share),
        onset_step: onset,
        title: format!(
            "{} of the ReLU units in {} never activate{}",
            fmt_pct(worst.share),
            names.join(", "),
            onset
                .map(|s| format!(" (since step {})", fmt_step(s)))
                .unwrap_or_default()
        ),
        evidence: hits_evidence(&hits, worst, metrics, "dead"),
        cause,
        fixes,
    });
}

/// Layers the model record marks `trainable: false` (requires_grad off).
/// Freezing is often intended (fine-tuning a head on a pretrained trunk), so
/// it is only a problem when the model then cannot fit its training data:
/// `warning` (naming the frozen layers, first fix: unfreeze them) when it is
/// unfinished — short of 90% of the way from chance to perfect training
/// accuracy — and a note otherwise. Not when another layer is found
/// unchanged (`other_unchanged`: that finding comes first).
fn frozen_on_purpose_or_not(ctx: &Ctx, out: &mut Diagnosis, other_unchanged: bool) {
    let mut seen = std::collections::BTreeSet::new();
    let frozen: Vec<&str> = ctx
        .view
        .model
        .iter()
        .flat_map(|m| &m.layers)
        .filter(|l| l.trainable == Some(false))
        .map(|l| l.name.as_str())
        .filter(|n| seen.insert(*n))
        .collect();
    if frozen.is_empty() || other_unchanged || ctx.loss_nonfinite() {
        return;
    }
    let trainable = ctx
        .view
        .model
        .iter()
        .flat_map(|m| &m.layers)
        .filter(|l| l.trainable != Some(false))
        .count();
    let list = frozen.join(", ");
    if ctx.unfinished() != Some(true) {
        out.note(format!(
            "layers {list} are frozen (trainable: false); the model fits its training data, so this looks intended"
        ));
        return;
    }
    let acc = ctx
        .train_acc
        .and_then(|a| ctx.epoch_tail(a.series, 3))
        .map(|a| format!("training accuracy {}", fmt_pct(a)))
        .or_else(|| {
            ctx.loss_recent()
                .map(|l| format!("training loss {}", fmt_num(l)))
        })
        .unwrap_or_default();
    let series: Vec<String> = ctx
        .layers
        .iter()
        .filter(|l| l.trainable == Some(false))
        .filter_map(|l| l.get(Role::UpdateRatio).or(l.get(Role::WeightNorm)))
        .map(|n| n.key.to_string())
        .collect();
    out.push(Finding {
        kind: Kind::UnchangedWeights,
        caused_by: None,
        severity: Severity::Warning,
        onset_step: ctx.train_loss.and_then(|l| l.series.steps.first().copied()),
        title: format!(
            "{} of {} layers are frozen (requires_grad=False) and the model does not fit its training data ({acc})",
            frozen.len(),
            frozen.len() + trainable
        ),
        evidence: Evidence {
            series,
            layer: frozen.first().map(|n| n.to_string()),
            metrics: [
                ("layers_frozen".to_string(), frozen.len() as f64),
                ("layers_trainable".to_string(), trainable as f64),
            ]
            .into(),
            summary: format!("The model record marks {list} as not trainable; their weights never change, and only {trainable} layer(s) learn ({acc})."),
            samples: Vec::new(),
        },
        cause: format!(
            "{list} {} frozen (requires_grad=False): their weights stay at their initial values, so only the remaining layers can fit the data and the model falls short.",
            if frozen.len() == 1 { "is" } else { "are" }
        ),
        fixes: vec![
            format!("Unfreeze {list}: p.requires_grad_(True) for their parameters, and build the optimizer over model.parameters() again."),
            "If the frozen layers are a pretrained trunk, unfreeze its top block(s) with a 10× lower LR than the head.".into(),
            "If they are randomly initialised, freezing them is a bug: train the whole model.".into(),
        ],
    });
}

/// Checks (of the recent half) a zero-gradient verdict needs.
const ZERO_GRAD_CHECKS: usize = 3;

/// A dead network from its gradients alone: every weight layer's gradient
/// norm (or the global norm) is exactly 0 at every check of the recent half.
///
/// Exact zeros on *every* layer are evidence by themselves: a layer's weight
/// gradient is its input times the back-propagated error, so the output
/// layer's is 0 only when its inputs are all 0 — every unit below it is dead
/// — or the loss is (almost) exactly 0 (ruled out: the recent loss must not
/// be below 10% of the run's median loss, nor 1/1000 of its first value). A vanishing gradient is small, never exactly
/// 0 on every layer, and a frozen layer logs no gradient at all.
fn dead_by_zero_gradients(ctx: &Ctx, out: &mut Diagnosis) {
    let weights: Vec<(&str, &[u64], &[f64], &str)> = ctx
        .layers
        .iter()
        .filter(|l| l.is_weight() && l.trainable != Some(false))
        .filter_map(|l| l.get(Role::GradNorm))
        .map(|g| {
            (
                g.key,
                g.series.steps.as_slice(),
                g.series.values.as_slice(),
                g.key,
            )
        })
        .collect();
    let series: Vec<(&str, &[u64], &[f64], &str)> = if weights.len() >= 2 {
        weights
    } else if let Some(g) = ctx.global_grad {
        vec![(
            g.key,
            g.series.steps.as_slice(),
            g.series.values.as_slice(),
            g.key,
        )]
    } else {
        return;
    };
    let zero = |v: &f64| *v == 0.0;
    let all_dead = series.iter().all(|(_, _, v, _)| {
        let half = &v[v.len() / 2..];
        half.len() >= ZERO_GRAD_CHECKS && half.iter().all(zero)
    });
    if !all_dead {
        return;
    }
    // A dead network's loss is stuck; a perfect fit's (the other way to get
    // zero gradients) falls far below its own typical level. The whole
    // run's median is the reference: a blow-up at the start must not make
    // a stuck loss look like a fallen one.
    let reference = ctx
        .train_loss
        .and_then(|l| super::stats::median(&l.series.values));
    let first = ctx
        .train_loss
        .and_then(|l| l.series.values.iter().copied().find(|v| v.is_finite()));
    if let Some(recent) = ctx.loss_recent()
        && (reference.is_some_and(|r| recent < 0.1 * r)
            || first.is_some_and(|f| recent < 1e-3 * f)
            || recent <= 0.0)
    {
        return;
    }
    // From which step every series stays at 0, and whether the layers had a
    // gradient at their first check (alive, then killed by the updates).
    let onset = series
        .iter()
        .filter_map(|(_, st, v, _)| {
            let flags: Vec<f64> = v.iter().map(|x| if zero(x) { 1.0 } else { 0.0 }).collect();
            stays_above_from(st, &flags, 1.0)
        })
        .max();
    let alive_at_start = series
        .iter()
        .any(|(_, _, v, _)| v.first().is_some_and(|x| *x != 0.0));
    let spiked = ctx.loss_spiked();
    let mut metrics = BTreeMap::new();
    metrics.insert("layers_with_zero_gradient".into(), series.len() as f64);
    if let Some(lr) = ctx.peak_lr() {
        metrics.insert("lr".into(), lr);
    }
    let cause = if alive_at_start {
        format!(
            "The gradients were non-zero at first and are exactly 0 on every layer since step {}{}: an update pushed the units' pre-activations below zero for every input, and a unit that never fires gets no gradient and cannot recover.",
            onset.map(fmt_step).unwrap_or_else(|| "?".into()),
            if spiked {
                ", after the loss spiked"
            } else {
                ""
            }
        )
    } else {
        "Every layer's gradient is exactly 0 from the first check on: the units never fire, from initialisation (negative biases or a bad weight scale); a unit that never fires gets no gradient.".into()
    };
    let mut fixes = vec![
        "Use LeakyReLU, ELU or SELU so that inactive units still get a gradient.".to_string(),
        "Initialise with He init and zero (or small positive) biases.".into(),
        "Add BatchNorm before the activation.".into(),
    ];
    if alive_at_start {
        fixes.insert(
            0,
            ctx.lower_lr_fix(" so updates do not knock the units out"),
        );
        fixes.insert(
            1,
            "Add gradient clipping (clip_grad_norm_ 1.0) and a short LR warm-up.".into(),
        );
    }
    out.push(Finding {
        kind: Kind::DeadRelu,
        caused_by: None,
        severity: Severity::Error,
        onset_step: onset,
        title: format!(
            "Every weight gradient is exactly 0{}: the network is dead",
            onset
                .map(|s| format!(" since step {}", fmt_step(s)))
                .unwrap_or_default()
        ),
        evidence: Evidence {
            series: series.iter().map(|(k, _, _, _)| k.to_string()).collect(),
            layer: None,
            metrics,
            summary: format!(
                "{} gradient series are exactly 0 at every check of the recent half{}.",
                series.len(),
                if alive_at_start {
                    ", after being non-zero at the start"
                } else {
                    ""
                }
            ),
            samples: Vec::new(),
        },
        cause,
        fixes,
    });
}

/// Share of histogram mass in bins whose centre lies in the saturated range
/// of `act` (tanh: |x| > 0.95, sigmoid: x < 0.05 or x > 0.95). Bin centres
/// rather than interpolation: a saturated layer piles its mass against the
/// bound, at the edge of the outermost bins.
fn hist_saturation(h: &Hist, act: &str) -> Option<f64> {
    let total: u64 = h.counts.iter().sum();
    if total == 0 || h.edges.len() != h.counts.len() + 1 {
        return None;
    }
    let saturated = |x: f64| {
        if act.contains("sigmoid") {
            !(0.05..=0.95).contains(&x)
        } else {
            x.abs() > 0.95
        }
    };
    let mass: u64 = h
        .counts
        .iter()
        .enumerate()
        .filter(|(i, _)| saturated((h.edges[*i] + h.edges[*i + 1]) / 2.0))
        .map(|(_, c)| *c)
        .sum();
    Some(mass as f64 / total as f64)
}

fn saturated(ctx: &Ctx, out: &mut Diagnosis) {
    let mut hits: Vec<Hit> = Vec::new();
    for l in ctx.layers.iter().filter(|l| !l.is_output) {
        if let Some(s) = l.get(Role::SatFrac) {
            hits.extend(logged_hit(l, s));
        } else if is_saturating(l) {
            let key = format!("activations/{}", l.name);
            let Some(hs) = ctx.view.histograms.get(&key) else {
                continue;
            };
            let act = l.activation.as_deref().unwrap_or("tanh");
            let shares: Vec<f64> = hs
                .iter()
                .map(|h| hist_saturation(h, act).unwrap_or(f64::NAN))
                .collect();
            let steps: Vec<u64> = hs.iter().map(|h| h.step).collect();
            hits.extend(persistent_hit(l, &steps, &shares, UNIT_SHARE, &key));
        }
    }
    let Some(worst) = hits.iter().max_by(|a, b| a.share.total_cmp(&b.share)) else {
        return;
    };
    let names: Vec<&str> = hits.iter().map(|h| h.layer.name.as_str()).collect();
    let onset = hits.iter().filter_map(|h| h.onset).min();
    let act = worst
        .layer
        .activation
        .clone()
        .unwrap_or_else(|| "sigmoid/tanh".into());
    let mut metrics = BTreeMap::new();
    metrics.insert("saturated_share".into(), worst.share);
    metrics.insert("layers_affected".into(), hits.len() as f64);
    let scale = ctx.input_scale();
    let unscaled = scale.is_some_and(|(m, s)| m > 3.0 || s > 3.0);
    if let Some((m, s)) = scale {
        metrics.insert("input_max_abs_mean".into(), m);
        metrics.insert("input_max_std".into(), s);
    }
    let cause = if unscaled {
        format!(
            "The inputs are not normalised (feature means up to {}, std up to {}), so the first layer's pre-activations are large and {act} outputs sit at ±1 where its derivative is ~0.",
            fmt_num(scale.map(|x| x.0).unwrap_or(f64::NAN)),
            fmt_num(scale.map(|x| x.1).unwrap_or(f64::NAN))
        )
    } else {
        format!(
            "Pre-activations are too large (weight scale, learning rate or input scale), so {act} outputs sit at their bounds where the derivative is ~0 and learning stalls."
        )
    };
    let mut fixes = Vec::new();
    if unscaled {
        fixes.push("Standardise the inputs (StandardScaler fit on the training split) or scale them to [0, 1].".into());
    }
    fixes.extend([
        "Use Glorot/LeCun initialisation for tanh/sigmoid layers.".to_string(),
        "Add BatchNorm/LayerNorm before the activation.".to_string(),
        "Switch hidden layers to a ReLU-family activation.".to_string(),
        ctx.lower_lr_fix(""),
    ]);
    out.push(Finding {
        kind: Kind::SaturatedActivations,
        caused_by: None,
        severity: unit_severity(worst.share),
        onset_step: onset,
        title: format!(
            "{} of the {act} outputs in {} are saturated",
            fmt_pct(worst.share),
            names.join(", ")
        ),
        evidence: hits_evidence(&hits, worst, metrics, "saturated"),
        cause,
        fixes,
    });
}

/// The logged LR has decayed below 1% of its peak: weight norms may then
/// look constant (to the logged precision) on purpose.
fn lr_decayed(ctx: &Ctx) -> bool {
    let (Some(peak), Some(now)) = (ctx.peak_lr(), ctx.current_lr()) else {
        return false;
    };
    now < 0.01 * peak
}

/// The layer's logged weight-gradient norm is (numerically) zero at every
/// check of the recent half. A layer left out of the optimizer still gets its
/// gradient computed (`requires_grad` is on; only `step()` skips it), so its
/// `grad_norm` stays non-zero; a layer whose gradient is zero does not move
/// under any optimizer: its units are saturated or dead (or every layer
/// above is), which the saturation/dead-unit/vanishing rules report.
/// Without a logged gradient norm nothing is assumed.
fn receives_no_gradient(l: &Layer) -> bool {
    let Some(g) = l.get(Role::GradNorm) else {
        return false;
    };
    let v = &g.series.values;
    if v.len() < 6 {
        return false;
    }
    v[v.len() / 2..]
        .iter()
        .all(|x| x.is_finite() && x.abs() <= NO_UPDATE)
}

fn unchanged(ctx: &Ctx, out: &mut Diagnosis) {
    let mut checked = 0;
    let mut frozen: Vec<(&Layer, Option<u64>, String)> = Vec::new();
    let mut starved: Vec<&str> = Vec::new();
    for l in ctx.layers.iter().filter(|l| l.trainable != Some(false)) {
        // A layer whose weights went non-finite "does not change" for
        // numerical reasons; that is divergence, not this.
        if let Some(w) = l.get(Role::WeightNorm)
            && w.series.values.iter().any(|v| !v.is_finite())
        {
            continue;
        }
        let signal: Option<(Vec<f64>, &[u64], &str)> = if let Some(u) = l.get(Role::UpdateRatio) {
            Some((
                u.series
                    .values
                    .iter()
                    .map(|v| {
                        if v.is_finite() && v.abs() <= NO_UPDATE {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                &u.series.steps,
                u.key,
            ))
        } else if let Some(w) = l.get(Role::WeightNorm)
            && !lr_decayed(ctx)
        {
            let v = &w.series.values;
            let same: Vec<f64> = (0..v.len())
                .map(|i| if i > 0 && v[i] == v[i - 1] { 1.0 } else { 0.0 })
                .collect();
            Some((same, &w.series.steps, w.key))
        } else {
            None
        };
        let Some((flags, steps, key)) = signal else {
            continue;
        };
        if flags.len() < 6 {
            continue;
        }
        checked += 1;
        // Every check of the recent half shows no change.
        let half = &flags[flags.len() / 2..];
        if half.iter().all(|f| *f == 1.0) {
            if receives_no_gradient(l) {
                starved.push(l.name.as_str());
                continue;
            }
            frozen.push((l, stays_above_from(steps, &flags, 1.0), key.to_string()));
        }
    }
    frozen_on_purpose_or_not(ctx, out, !frozen.is_empty());
    if !starved.is_empty() {
        out.note(format!(
            "unchanged weights not raised for {}: no gradient reaches {} (saturated or dead units upstream), so the optimizer has nothing to apply",
            starved.join(", "),
            if starved.len() == 1 { "it" } else { "them" }
        ));
    }
    if frozen.is_empty() {
        return;
    }
    if ctx.loss_nonfinite() {
        out.note("unchanged weights not judged: the loss is non-finite, so zero updates are a consequence of divergence");
        return;
    }
    let all = frozen.len() == checked;
    let names: Vec<&str> = frozen.iter().map(|(l, _, _)| l.name.as_str()).collect();
    let onset = frozen.iter().filter_map(|(_, s, _)| *s).min();
    let lr_zero = ctx
        .lr
        .is_some_and(|lr| lr.series.values.iter().rev().take(5).all(|v| *v == 0.0));
    let cause = if lr_zero {
        "The learning rate is 0, so the optimizer never moves the weights.".to_string()
    } else if all {
        "No layer's weights change: the optimizer is not stepping (optimizer.step() missing or called before backward(), zero_grad after backward) or the learning rate is 0.".to_string()
    } else {
        format!(
            "{} {} trainable but never updated while other layers learn: the optimizer was most likely built over only part of the model's parameters (e.g. a stale or partial parameter list), or requires_grad is off for them.",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        )
    };
    out.push(Finding {
        kind: Kind::UnchangedWeights,
        caused_by: None,
        severity: if all { Severity::Error } else { Severity::Warning },
        onset_step: onset,
        title: if all {
            format!("No weights have changed{}", onset.map(|s| format!(" since step {}", fmt_step(s))).unwrap_or_default())
        } else {
            format!("Weights of {} have not changed{}", names.join(", "), onset.map(|s| format!(" since step {}", fmt_step(s))).unwrap_or_default())
        },
        evidence: Evidence {
            series: frozen.iter().map(|(_, _, k)| k.clone()).collect(),
            layer: frozen.first().map(|(l, _, _)| l.name.clone()),
            metrics: [("layers_unchanged".to_string(), frozen.len() as f64), ("layers_checked".to_string(), checked as f64)].into(),
            summary: format!("{} of {checked} layers show no weight change (update ratio ≤ 1e-10 or identical weight norm) at every recent check.", frozen.len()),
            samples: Vec::new(),
        },
        cause,
        fixes: vec![
            "Build the optimizer over all trainable parameters: torch.optim.Adam(model.parameters(), ...) after the model is fully constructed (and after moving it to the device).".into(),
            "Check requires_grad on these layers and the order zero_grad() → backward() → step().".into(),
            "Make sure the learning rate (and its schedule) is not 0.".into(),
            "If the layers are frozen on purpose, log them with trainable: false.".into(),
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{curve, healthy, noise, view};
    use super::super::{Kind, RunView, Severity, diagnose};
    use crate::record::{Layer as L, ModelRecord};

    fn with_model(mut v: RunView, layers: &[(&str, &str)]) -> RunView {
        v.model = Some(ModelRecord {
            layers: layers
                .iter()
                .map(|(n, a)| L {
                    name: (*n).into(),
                    activation: Some((*a).into()),
                    trainable: Some(true),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        v
    }

    /// PyTorch parameter names, as `p.grad.norm()` over `named_parameters()`
    /// logs them: `<module>.weight` and `<module>.bias` for each layer.
    fn per_parameter_grads(
        layers: &[&str],
        weight: impl Fn(usize) -> f64 + Copy,
        bias: impl Fn(usize) -> f64 + Copy,
    ) -> Vec<(String, Vec<(u64, f64)>)> {
        layers
            .iter()
            .flat_map(|l| {
                [
                    (format!("grad_norm/{l}.weight"), curve(60, 5, weight)),
                    (format!("grad_norm/{l}.bias"), curve(60, 5, bias)),
                ]
            })
            .collect()
    }

    #[test]
    fn exact_zero_gradients_on_every_weight_layer_are_a_dead_network() {
        // The loss spiked at step 10 and sits at chance (ln 10) since; every
        // weight gradient is exactly 0 from then on. The output layer's bias
        // still gets a gradient (softmax − one-hot), so biases do not count.
        let run = |weight_after: f64| {
            let mut series = per_parameter_grads(
                &["0", "2", "4"],
                move |i| if i < 2 { 0.8 } else { weight_after },
                |i| if i < 2 { 0.3 } else { 0.05 },
            );
            series.push((
                "train/loss".into(),
                curve(300, 1, |i| match i {
                    0..10 => 2.3,
                    10..12 => 80.0,
                    _ => 2.302 + 0.01 * noise(i),
                }),
            ));
            series.push(("lr".into(), curve(300, 1, |_| 1.5)));
            let refs: Vec<(&str, Vec<(u64, f64)>)> = series
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            diagnose(&view(&refs))
        };
        let d = run(0.0);
        let f = d.get(Kind::DeadRelu).expect("a dead network");
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.onset_step, Some(10));
        // Alive at first, then killed by an update: lower the LR, first.
        assert!(f.fixes[0].contains("1.5 → 0.15"), "{:?}", f.fixes);
        assert!(d.get(Kind::SlowConvergence).is_none(), "{:#?}", d.findings);
        assert!(
            d.findings
                .iter()
                .flat_map(|f| &f.fixes)
                .all(|x| !x.contains("Increase the learning rate")),
            "{:#?}",
            d.findings
        );
        // Tiny but non-zero gradients are not a dead network.
        assert!(run(1e-6).get(Kind::DeadRelu).is_none());
    }

    #[test]
    fn dead_layers_are_found_and_healthy_sparsity_is_not() {
        let v = view(&[
            (
                "dead_frac/fc1",
                curve(50, 5, |i| if i < 5 { 0.1 } else { 1.0 }),
            ),
            ("dead_frac/fc2", curve(50, 5, |i| 0.05 * (1.0 + noise(i)))),
        ]);
        let d = diagnose(&v);
        let f = d.get(Kind::DeadRelu).expect("dead relu");
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.onset_step, Some(25));
        assert_eq!(f.evidence.layer.as_deref(), Some("fc1"));
        let ok = view(&[("dead_frac/fc1", curve(50, 5, |i| 0.3 + 0.1 * noise(i)))]);
        assert!(diagnose(&ok).get(Kind::DeadRelu).is_none());
        // Recovered: dead at the start only.
        let rec = view(&[(
            "dead_frac/fc1",
            curve(50, 5, |i| if i < 20 { 0.9 } else { 0.05 }),
        )]);
        assert!(diagnose(&rec).get(Kind::DeadRelu).is_none());
    }

    #[test]
    fn units_killed_under_a_high_lr_get_the_lr_fix_first() {
        let lr = || curve(50, 5, |_| 1.5);
        let killed = view(&[
            (
                "dead_frac/fc1",
                curve(50, 5, |i| if i < 3 { 0.1 } else { 1.0 }),
            ),
            ("dead_frac/head", curve(50, 5, |_| 0.1)),
            ("lr", lr()),
        ]);
        let f = diagnose(&killed);
        let f = f.get(Kind::DeadRelu).unwrap_or_else(|| panic!("{:?}", f));
        assert!(
            f.fixes[0].starts_with("Lower the learning rate"),
            "{:?}",
            f.fixes
        );
        assert!(f.cause.contains("after training started"), "{}", f.cause);
        // Dead from the first check: initialisation, whatever the LR.
        let born = view(&[
            ("dead_frac/fc1", curve(50, 5, |_| 1.0)),
            ("dead_frac/head", curve(50, 5, |_| 0.1)),
            ("lr", lr()),
        ]);
        let f = diagnose(&born);
        let f = f.get(Kind::DeadRelu).unwrap_or_else(|| panic!("{:?}", f));
        assert!(f.fixes[0].starts_with("Use LeakyReLU"), "{:?}", f.fixes);
        assert!(f.cause.contains("from initialisation"), "{}", f.cause);
        // Died during training under a small LR: not blamed on the LR.
        let small = view(&[
            (
                "dead_frac/fc1",
                curve(50, 5, |i| if i < 3 { 0.1 } else { 1.0 }),
            ),
            ("dead_frac/head", curve(50, 5, |_| 0.1)),
            ("lr", curve(50, 5, |_| 0.001)),
        ]);
        let f = diagnose(&small);
        let f = f.get(Kind::DeadRelu).expect("dead relu");
        assert!(f.fixes[0].starts_with("Use LeakyReLU"), "{:?}", f.fixes);
    }

    #[test]
    fn dead_relu_from_activation_stats_only_for_relu_layers() {
        let base = view(&[
            ("act_mean/fc1", curve(20, 5, |_| 0.0)),
            ("act_std/fc1", curve(20, 5, |_| 0.0)),
            ("act_mean/head", curve(20, 5, |_| 0.1)),
        ]);
        assert!(
            diagnose(&base).get(Kind::DeadRelu).is_none(),
            "activation unknown"
        );
        let v = with_model(base, &[("fc1", "relu"), ("head", "none")]);
        assert!(diagnose(&v).get(Kind::DeadRelu).is_some());
    }

    #[test]
    fn saturation() {
        let v = view(&[
            ("sat_frac/fc1", curve(40, 5, |i| 0.95 + 0.01 * noise(i))),
            ("sat_frac/fc2", curve(40, 5, |_| 0.02)),
        ]);
        assert!(diagnose(&v).get(Kind::SaturatedActivations).is_some());
        let ok = view(&[("sat_frac/fc1", curve(40, 5, |i| 0.04 + 0.01 * noise(i)))]);
        assert!(diagnose(&ok).get(Kind::SaturatedActivations).is_none());
    }

    #[test]
    fn saturation_from_histograms() {
        let mut v = with_model(view(&[]), &[("fc1", "tanh"), ("head", "none")]);
        let hist = |step, sat: bool| super::Hist {
            step,
            edges: (0..=40).map(|i| -1.0 + 0.05 * i as f64).collect(),
            counts: (0..40)
                .map(|i| {
                    if sat {
                        if i == 0 || i == 39 { 50 } else { 1 }
                    } else if (10..30).contains(&i) {
                        10
                    } else {
                        0
                    }
                })
                .collect(),
            nonfinite: 0,
        };
        v.histograms.insert(
            "activations/fc1".into(),
            (0..10).map(|i| hist(i * 10, true)).collect(),
        );
        let f = diagnose(&v)
            .get(Kind::SaturatedActivations)
            .cloned()
            .expect("saturated");
        assert!(
            f.evidence.metrics["saturated_share"] > 0.7,
            "{:?}",
            f.evidence
        );
        v.histograms.insert(
            "activations/fc1".into(),
            (0..10).map(|i| hist(i * 10, false)).collect(),
        );
        assert!(diagnose(&v).get(Kind::SaturatedActivations).is_none());
    }

    #[test]
    fn partially_frozen_model_and_healthy_schedules() {
        let v = view(&[
            ("train/loss", curve(200, 1, |i| 2.3 - i as f64 / 400.0)),
            ("update_ratio/fc1", curve(40, 5, |_| 0.0)),
            (
                "update_ratio/head",
                curve(40, 5, |i| 1e-3 / (1.0 + i as f64)),
            ),
        ]);
        let f = diagnose(&v)
            .get(Kind::UnchangedWeights)
            .cloned()
            .expect("unchanged");
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.contains("fc1"), "{}", f.title);
        // Cosine decay to tiny (but non-zero) updates is not "unchanged".
        let mut h = healthy(10, 50);
        h.scalars.insert(
            "update_ratio/fc1".into(),
            super::super::Series::from_points(curve(100, 5, |i| {
                1e-3 * (1.0 + (i as f64 / 100.0 * std::f64::consts::PI).cos()) + 1e-9
            })),
        );
        assert!(diagnose(&h).get(Kind::UnchangedWeights).is_none());
        // Intentionally frozen layers are fine.
        let frozen = with_model(
            view(&[("update_ratio/fc1", curve(40, 5, |_| 0.0))]),
            &[("fc1", "relu")],
        );
        let mut frozen = frozen;
        if let Some(m) = frozen.model.as_mut() {
            m.layers[0].trainable = Some(false);
        }
        assert!(diagnose(&frozen).get(Kind::UnchangedWeights).is_none());
    }

    #[test]
    fn zero_gradient_layers_are_starved_not_left_out_of_the_optimizer() {
        // Left out of the optimizer: the gradient is computed but not applied.
        let omitted = view(&[
            ("train/loss", curve(200, 1, |i| 2.3 - i as f64 / 400.0)),
            ("update_ratio/conv1", curve(40, 5, |_| 0.0)),
            ("grad_norm/conv1", curve(40, 5, |i| 0.5 + i as f64 * 0.1)),
            (
                "update_ratio/head",
                curve(40, 5, |i| 1e-3 / (1.0 + i as f64)),
            ),
            ("grad_norm/head", curve(40, 5, |_| 0.3)),
        ]);
        let f = diagnose(&omitted)
            .get(Kind::UnchangedWeights)
            .cloned()
            .expect("unchanged");
        assert!(f.title.contains("conv1"), "{}", f.title);
        // Saturated after a blow-up: the layer moved, then no gradient reaches it.
        let starved = view(&[
            (
                "train/loss",
                curve(200, 1, |i| if i < 5 { 1.4 } else { 150.0 }),
            ),
            (
                "update_ratio/conv1",
                curve(40, 5, |i| if i < 2 { 0.2 } else { 0.0 }),
            ),
            (
                "grad_norm/conv1",
                curve(40, 5, |i| if i < 2 { 0.2 } else { 0.0 }),
            ),
            ("update_ratio/head", curve(40, 5, |_| 0.1)),
            ("grad_norm/head", curve(40, 5, |_| 6.0)),
        ]);
        let d = diagnose(&starved);
        assert!(d.get(Kind::UnchangedWeights).is_none());
        assert!(d.notes.iter().any(|n| n.contains("conv1")), "{:?}", d.notes);
    }

    #[test]
    fn nan_runs_do_not_report_unchanged_weights() {
        let v = view(&[
            (
                "train/loss",
                curve(50, 1, |i| if i < 3 { 2.0 } else { f64::NAN }),
            ),
            ("update_ratio/fc1", curve(10, 5, |_| 0.0)),
        ]);
        assert!(diagnose(&v).get(Kind::UnchangedWeights).is_none());
    }
}
