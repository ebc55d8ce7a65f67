//! Exploding and vanishing gradients, from per-layer gradient norms
//! (`grad_norm/<layer>`, or a global `grad_norm`). Without gradient norms
//! these detectors stay silent.
//!
//! **Exploding** (research §1 "Exploding gradients"; AT treats a NaN gradient
//! as exploding, TDC a sustained ×2-per-check growth):
//! 1. A layer's gradient norm turns NaN/Inf *after having been finite* →
//!    `error`. Gradients that are non-finite from the very first check are not
//!    counted: then the inputs, not the gradients, are broken (NaN data);
//!    nor are any when the training data summary reports missing cells (the
//!    first batch may just have had none of them).
//! 2. A layer's gradient norm (median of 3 consecutive checks, so one noisy
//!    batch cannot do it) grows ≥ 100× above its level at the start, *while
//!    the loss gets worse* and the layer is actually being updated → `error`.
//!    AT's ratio test (‖G₁‖/‖Gₙ‖ ≥ 70) is not used: it misses uniform
//!    blow-ups and fires on unscaled inputs (research pilot). The loss gate
//!    keeps legitimately growing gradients of a learning model (e.g. a frozen
//!    trunk in front of a head that is still learning) out.
//! 3. A layer's gradient norm is ≥ 10× its weight norm at 3 consecutive
//!    checks while the loss improves by < 10% → `error`. Scale-free: one SGD
//!    step with LR 0.1 would move the layer by its whole norm (healthy runs
//!    sit around 0.01–0.1). Catches blow-ups already present at
//!    initialisation, which rule 2 cannot see as growth. Fewer than 3 such
//!    checks suffice when the layer's gradient is exactly 0 at every check
//!    after them (≥ 2): the blow-up killed the layer's units, which a noisy
//!    batch cannot do.
//!
//! **Vanishing** (AT: ‖G₁‖/‖Gₙ‖ < 1e-3): the median gradient norm of the
//! input-side layer is < 1/1000 of the output layer's over the recent half of
//! the checks. `error` if the loss has not improved by 10% and the input
//! layer's updates are starved (update ratio < 1e-4, or not logged);
//! `warning` if only one of the two holds; `info` if the model trains well
//! and the first layer still moves (Adam rescales small gradients).
//! Three orders of magnitude means the first layer learns ~1000× slower than
//! the last one. Layers whose gradient is exactly 0 are dead or frozen, not
//! vanishing, and are left to [`units`](super::units).
//!
//! **Vanishing through the forward pass** (Glorot & Bengio 2010): when the
//! ratio test is silent, a stack of ≥ 3 hidden layers whose activation std
//! falls below 1/100 of the first hidden layer's (recent medians; layers that
//! output exactly 0 or are mostly dead are left to the dead-ReLU rule) while
//! the loss has not improved by 10% → `warning` (`error` if the first
//! layer's updates are < 1e-4). The deep layers then pass on a near-constant
//! signal, and since ∂L/∂W = a_in·δ every layer's gradient — the output
//! layer's included — is tiny, so the input/output ratio looks normal (e.g. a
//! 10-layer tanh convnet initialised at half the Glorot scale).

use std::collections::BTreeMap;

use super::context::{Ctx, LOSS_SPIKE_FACTOR, Layer, Named};
use super::names::Role;
use super::stats::{fmt_num, fmt_step, head_median, median};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};

/// Growth of a gradient norm over its starting level that counts as exploding.
const EXPLODE_GROWTH: f64 = 100.0;
/// ‖g‖/‖w‖ from which one plain SGD step with LR 0.1 would move a layer by
/// its whole norm: the gradient dwarfs the weights.
const GRAD_WEIGHT_RATIO: f64 = 10.0;
/// Input-side / output-side gradient ratio below which gradients vanish (AT β1).
pub(crate) const VANISH_RATIO: f64 = 1e-3;

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    exploding(ctx, out);
    // After a divergence, tiny gradients are units the blow-up saturated or
    // killed — a consequence, not an architecture that cannot pass them.
    if out
        .get(Kind::Divergence)
        .is_some_and(|f| f.severity.is_raised())
        || ctx.loss_spiked()
    {
        out.note("vanishing gradients not judged: the loss diverged or spiked, so small gradients are a consequence of the blow-up");
        return;
    }
    vanishing(ctx, out);
    if out.get(Kind::VanishingGradients).is_none() {
        fading_signal(ctx, out);
    }
}

/// Drop of the activation std from the first hidden layer to a deeper one
/// below which the forward signal has faded (a 100× smaller std is a 10⁴×
/// smaller variance; initialisation schemes aim to keep it constant).
const FADE_RATIO: f64 = 1e-2;

/// Vanishing through the forward pass: the activations' spread shrinks layer
/// by layer until the deep layers pass on (almost) a constant. Every weight
/// gradient is ∂L/∂W = a_in·δ, so all of them are tiny — including the
/// output layer's — and the gradient *ratio* test cannot see it.
fn fading_signal(ctx: &Ctx, out: &mut Diagnosis) {
    let recent = |n: Named| {
        let v = &n.series.values;
        (v.len() >= 6).then(|| median(&v[v.len() / 2..])).flatten()
    };
    let hidden: Vec<(&Layer, f64)> = ctx
        .layers
        .iter()
        .filter(|l| !l.is_output)
        .filter_map(|l| l.get(Role::ActStd).and_then(recent).map(|s| (l, s)))
        .collect();
    if hidden.len() < 3 {
        return;
    }
    let (first, s0) = hidden[0];
    if !(s0.is_finite() && s0 > 0.0) {
        return;
    }
    // Layers that output exactly 0, or whose units are mostly dead, are
    // the dead-ReLU rule's.
    let alive = |l: &Layer, s: f64| {
        s.is_finite()
            && s > 0.0
            && l.get(Role::DeadFrac)
                .and_then(recent)
                .is_none_or(|d| d < 0.5)
    };
    let Some((deep, sd)) = hidden[1..]
        .iter()
        .filter(|(l, s)| alive(l, *s))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .copied()
    else {
        return;
    };
    let ratio = sd / s0;
    if ratio >= FADE_RATIO {
        return;
    }
    let progress = match (ctx.loss_start(), ctx.loss_recent()) {
        (Some(a), Some(b)) if a > 0.0 => 1.0 - b / a,
        _ => return,
    };
    if progress >= 0.1 {
        return;
    }
    let first_update = first.get(Role::UpdateRatio).and_then(recent);
    let starved = first_update.is_some_and(|u| u < 1e-4);
    let mut metrics = BTreeMap::new();
    metrics.insert("act_std_first".into(), s0);
    metrics.insert("act_std_deep".into(), sd);
    metrics.insert("ratio".into(), ratio);
    metrics.insert("loss_progress".into(), progress);
    let key = |l: &Layer| {
        l.get(Role::ActStd)
            .map(|n| n.key.to_string())
            .unwrap_or_default()
    };
    let act = first
        .activation
        .clone()
        .unwrap_or_else(|| "activation".into());
    out.push(Finding {
        kind: Kind::VanishingGradients,
        caused_by: None,
        severity: if starved { Severity::Error } else { Severity::Warning },
        onset_step: first.get(Role::ActStd).and_then(|n| n.series.steps.get(n.series.len() / 2).copied()),
        title: format!("The signal fades through the layers: activation std {} at {} → {} at {}, so every gradient is tiny", fmt_num(s0), first.name, fmt_num(sd), deep.name),
        evidence: Evidence {
            series: vec![key(first), key(deep)],
            layer: Some(deep.name.clone()),
            metrics,
            summary: format!(
                "Median activation std over the recent half: {} = {}, {} = {} ({}× smaller); the training loss fell by {}.",
                first.name,
                fmt_num(s0),
                deep.name,
                fmt_num(sd),
                fmt_ratio(ratio),
                super::stats::fmt_pct(progress.max(0.0))
            ),
            samples: Vec::new(),
        },
        cause: format!(
            "Each {act} layer shrinks its input's spread (weights initialised too small for its fan-in), so the deep layers receive an almost constant signal; since a weight's gradient is its input times the back-propagated error, gradients vanish in every layer and the loss cannot move."
        ),
        fixes: vec![
            "Initialise with the fan-in scaling for the activation: Glorot/Xavier for tanh/sigmoid, He/Kaiming for ReLU.".into(),
            "Add BatchNorm/LayerNorm between layers, or residual connections; or use fewer layers.".into(),
        ],
    });
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Rule 1: NaN/Inf after finite values.
    NonFinite,
    /// Rule 2: ≥ 100× growth while the loss gets worse.
    Growth,
    /// Rule 3: gradient norm ≥ 10× the weight norm while the loss stalls.
    Ratio(f64),
    /// Rule 4: the gradients were huge at the first check and the loss
    /// orders of magnitude above the chance level: the initialisation.
    Init,
    /// Rule 5: one check ≥ 1000× the checks before it, after which the
    /// model is back at the chance level (`None`), or while the training
    /// loss jumped ≥ [`LOSS_JUMP_FACTOR`]× its first value (`Some(jump)`).
    Spike(Option<f64>),
    /// Rule 6: the norm grows at almost every check from the first on while
    /// the loss does not improve: gradients accumulate across steps.
    Accumulating,
}

struct Explosion<'a> {
    layer: Option<String>,
    key: &'a str,
    onset: u64,
    before: f64,
    peak: f64,
    rule: Rule,
}

/// How the loss is doing, for gating rules 2 and 3.
#[derive(Clone, Copy)]
struct LossState<'a> {
    /// The training loss series, if logged.
    train: Option<&'a super::Series>,
    /// The loss got worse (or non-finite) over the run.
    worse: bool,
    /// The loss improved by less than 10% (or got worse), measured from the
    /// start or from the chance level, whichever is lower.
    stalled: bool,
    /// The training data summary reports missing (NaN) cells.
    nan_inputs: bool,
    /// A divergence finding was raised, or the loss spiked and ended worse:
    /// the loss went the wrong way.
    diverged: bool,
    /// Its onset.
    diverged_at: Option<u64>,
    /// The first training loss was ≥ [`INIT_LOSS_FACTOR`]× the chance level
    /// (or, with `init_needs_kill`, the recent loss).
    init_blowup: bool,
    /// The chance level is unknown: rule 4 then needs the layer killed
    /// (gradient exactly 0 over the recent half).
    init_needs_kill: bool,
    /// The recent loss is at (or above) the chance level, or the start when
    /// the chance level is unknown: the model has learned nothing.
    unlearned: bool,
}

/// Growth over the start that counts as exploding when the loss diverged
/// (an order of magnitude while the loss goes the wrong way).
const EXPLODE_GROWTH_DIVERGED: f64 = 10.0;
/// First loss over the chance level from which the initialisation blew the
/// outputs up: orders of magnitude, far beyond any init scheme's spread.
const INIT_LOSS_FACTOR: f64 = 100.0;
/// Gradient at the first check over its recent level for rule 4.
const INIT_GRAD_FACTOR: f64 = 100.0;
/// One check over the checks before it for rule 5: three orders of magnitude.
const SPIKE_FACTOR: f64 = 1000.0;
/// Training loss over its first value, around a rule-5 gradient spike, that
/// confirms the spike without a chance level: two orders of magnitude. A
/// noisy batch of a model that is learning scores a few × the mean loss,
/// never ×100 the untrained model's.
const LOSS_JUMP_FACTOR: f64 = 100.0;
/// Share of checks that keep ≥ 95% of the previous one, and growth, of rule 6.
const ACCUMULATE_SHARE: f64 = 0.9;
const ACCUMULATE_GROWTH: f64 = 10.0;
/// Checks rule 6 needs to call a growth steady.
const ACCUMULATE_MIN_CHECKS: usize = 10;

fn explosion<'a>(
    layer: Option<&Layer<'a>>,
    g: Named<'a>,
    loss: LossState<'a>,
) -> Option<Explosion<'a>> {
    let (steps, values) = (&g.series.steps, &g.series.values);
    let n = g.series.len();
    let first_finite = values.iter().position(|v| v.is_finite())?;
    let start = head_median(values, 3)?;
    let name = layer.map(|l| l.name.clone());
    // Rule 1: non-finite after finite. With NaN cells in the training data,
    // a batch without them gives finite gradients and the next one NaN:
    // that NaN is the data's (the missing-values rule), not an explosion.
    if !loss.nan_inputs
        && let Some(i) = values[first_finite..]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| i + first_finite)
    {
        let peak = values[..i]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        return Some(Explosion {
            layer: name,
            key: g.key,
            onset: steps[i],
            before: start,
            peak,
            rule: Rule::NonFinite,
        });
    }
    // Rules 2 and 3 only for layers that are actually updated.
    let updated = layer
        .and_then(|l| l.get(Role::UpdateRatio))
        .is_none_or(|u| u.series.values.iter().any(|v| *v > 0.0));
    if !updated || n < 3 {
        return None;
    }
    // Rule 6: steady growth from the first check (before rule 2, which it
    // explains): a gradient that is summed over steps instead of reset.
    if (loss.stalled || loss.worse) && n >= ACCUMULATE_MIN_CHECKS {
        let v: Vec<f64> = values
            .iter()
            .copied()
            .take_while(|x| x.is_finite())
            .collect();
        let first = v.first().copied().unwrap_or(0.0);
        // A sum of gradients changes slowly and mostly upwards: it almost
        // never falls back by more than 5% from one check to the next, where
        // a fresh batch's gradient norm moves by tens of % either way. Nor
        // is a sum ever exactly 0: zeros after a rise are dead units (a
        // zero that "holds" the zero before it is not a held sum).
        let holds = v
            .windows(2)
            .filter(|w| w[1] > 0.0 && w[1] >= 0.95 * w[0])
            .count();
        let pairs = v.len().saturating_sub(1);
        let peak = v.iter().copied().fold(0.0, f64::max);
        if pairs + 1 >= ACCUMULATE_MIN_CHECKS
            && first > 0.0
            && holds as f64 >= ACCUMULATE_SHARE * pairs as f64
            && peak >= ACCUMULATE_GROWTH * first
        {
            return Some(Explosion {
                layer: name,
                key: g.key,
                onset: steps[first_finite],
                before: first,
                peak,
                rule: Rule::Accumulating,
            });
        }
    }
    // Rule 2: sustained growth (median of 3 checks) over the first check
    // while the loss gets worse: ×100, or ×10 when the loss diverged.
    let first = values[first_finite];
    let mut base = if first > 0.0 { first.min(start) } else { start };
    let growth = if loss.diverged {
        // Gradients grow while a model learns, too: the ×10 is counted from
        // their level before the loss diverged.
        if let Some(at) = loss.diverged_at {
            let before: Vec<f64> = steps
                .iter()
                .zip(values)
                .take_while(|(s, _)| **s < at)
                .map(|(_, v)| *v)
                .collect();
            if let Some(m) = median(&before).filter(|m| *m > 0.0) {
                base = base.max(m);
            }
        }
        EXPLODE_GROWTH_DIVERGED
    } else {
        EXPLODE_GROWTH
    };
    if loss.worse && base > 0.0 {
        let mut peak = 0.0f64;
        let mut crossed = None;
        for i in 1..n - 1 {
            let m = median3(values[i - 1], values[i], values[i + 1]);
            if m >= growth * base {
                crossed.get_or_insert(i);
            }
            peak = peak.max(m);
        }
        if let Some(i) = crossed {
            // Onset: where the rise began — the first of the checks up to the
            // crossing that all stay ≥ 3× the start.
            let mut j = i;
            while j > first_finite && values[j - 1].is_finite() && values[j - 1] >= 3.0 * base {
                j -= 1;
            }
            if values[j] < 3.0 * base {
                j = i;
            }
            return Some(Explosion {
                layer: name,
                key: g.key,
                onset: steps[j],
                before: base,
                peak,
                rule: Rule::Growth,
            });
        }
    }
    // Rule 4: huge at the first check, far smaller (or 0: the blow-up killed
    // the units) later, with a first loss orders of magnitude above chance.
    if loss.init_blowup && first > 0.0 && n >= 4 {
        let later = median(&values[n / 2..]).unwrap_or(f64::NAN);
        if later.is_finite()
            && first >= INIT_GRAD_FACTOR * later
            && (!loss.init_needs_kill || values[n / 2..].iter().all(|v| *v == 0.0))
        {
            return Some(Explosion {
                layer: name,
                key: g.key,
                onset: steps[first_finite],
                before: later,
                peak: first,
                rule: Rule::Init,
            });
        }
    }
    // Rule 5: one check three orders of magnitude above every earlier one's
    // median, and either the model back at chance afterwards, or the
    // training loss two orders of magnitude above its first value between
    // the previous check and the next: one update threw the weights away (a
    // noisy batch does none of that). The loss jump is what the spike means
    // where the chance level is unknown and the model relearned something
    // since.
    for i in first_finite + 1..n {
        let before = median(&values[first_finite..i]).unwrap_or(f64::NAN);
        if !(before > 0.0 && values[i].is_finite() && values[i] >= SPIKE_FACTOR * before) {
            continue;
        }
        let jump = if loss.unlearned {
            None
        } else {
            let next = steps.get(i + 1).copied().unwrap_or(u64::MAX);
            match loss_jump(loss.train, steps[i - 1], next) {
                Some(j) if j >= LOSS_JUMP_FACTOR => Some(j),
                _ => continue,
            }
        };
        return Some(Explosion {
            layer: name,
            key: g.key,
            onset: steps[i],
            before,
            peak: values[i],
            rule: Rule::Spike(jump),
        });
    }
    // Rule 3: ‖g‖ ≥ 10‖w‖ at 3 consecutive checks while the loss stalls.
    if loss.stalled
        && let Some(w) = layer.and_then(|l| l.get(Role::WeightNorm))
    {
        // Walk both series together (they share steps when logged together);
        // O(n), no per-point search.
        let (ws, wv) = (&w.series.steps, &w.series.values);
        let mut j = 0;
        let mut run = 0;
        let mut peak_ratio = 0.0f64;
        for i in 0..n {
            while j < ws.len() && ws[j] < steps[i] {
                j += 1;
            }
            let r = match (ws.get(j), wv.get(j)) {
                (Some(&s), Some(&wn)) if s == steps[i] && wn > 0.0 => values[i] / wn,
                _ => f64::NAN,
            };
            // The blow-up may end the only way it can before 3 checks: by
            // killing the layer, whose gradient is exactly 0 from then on
            // (dead units). A noisy batch leaves no such permanent mark.
            let killed = run >= 1 && n - i >= 2 && values[i..].iter().all(|v| *v == 0.0);
            if r >= GRAD_WEIGHT_RATIO {
                run += 1;
                peak_ratio = peak_ratio.max(r);
            } else if !killed {
                run = 0;
                peak_ratio = 0.0;
            }
            if run == 3 || killed {
                // The run of high ratios ends at i (run == 3) or just before
                // the first zero check (killed).
                let last = if killed { i - 1 } else { i };
                let first = last + 1 - run;
                let i = last;
                let peak = values[first..=i].iter().copied().fold(0.0, f64::max);
                return Some(Explosion {
                    layer: name,
                    key: g.key,
                    onset: steps[first],
                    before: start,
                    peak,
                    rule: Rule::Ratio(peak_ratio),
                });
            }
        }
    }
    None
}

/// The first step at which the training loss is ≥ [`LOSS_SPIKE_FACTOR`]×
/// its first finite value (the untrained model's, before any update, which
/// a blow-up in the first steps cannot inflate the way it inflates a start
/// window) or the chance level, whichever is higher.
fn loss_blowup_step(train: Option<&super::Series>, chance: Option<f64>) -> Option<u64> {
    let l = train?;
    let first = l.values.iter().copied().find(|v| v.is_finite())?;
    let base = chance.map_or(first, |c| c.max(first));
    if base.is_nan() || base <= 0.0 {
        return None;
    }
    l.values
        .iter()
        .position(|v| v.is_finite() && *v >= LOSS_SPIKE_FACTOR * base)
        .map(|i| l.steps[i])
}

/// The highest training loss at steps in (`after`, `until`) over the first
/// finite loss (the untrained model's).
fn loss_jump(train: Option<&super::Series>, after: u64, until: u64) -> Option<f64> {
    let l = train?;
    let first = l.values.iter().copied().find(|v| v.is_finite())?;
    if first <= 0.0 {
        return None;
    }
    let peak = l
        .steps
        .iter()
        .zip(&l.values)
        .filter(|(s, v)| **s > after && **s < until && v.is_finite())
        .map(|(_, v)| *v)
        .fold(f64::NAN, f64::max);
    peak.is_finite().then(|| peak / first)
}

fn median3(a: f64, b: f64, c: f64) -> f64 {
    let mut w = [a, b, c];
    w.sort_by(f64::total_cmp);
    w[1]
}

fn exploding(ctx: &Ctx, out: &mut Diagnosis) {
    // Progress from the start, or from the chance level if the start was
    // above it (a loss that blew up in the first steps and fell back to
    // chance has learned nothing).
    let progress = match (ctx.loss_start(), ctx.loss_recent()) {
        (Some(a), Some(b)) if a > 0.0 => {
            let base = ctx
                .chance_loss()
                .filter(|c| *c > 0.0)
                .map_or(a, |c| a.min(c));
            1.0 - b / base
        }
        _ => f64::NAN,
    };
    let worse = ctx.loss_worsened();
    let chance = ctx.chance_loss().filter(|c| *c > 0.0);
    let first_loss = ctx
        .train_loss
        .and_then(|l| l.series.values.iter().copied().find(|v| v.is_finite()));
    // What the first loss is compared with for rule 4: the chance level, or
    // without one the recent loss — which rule 4 then only trusts for a
    // layer whose gradient is exactly 0 later: a killed layer no longer
    // learns, so the loss it sits at is what the network does without it,
    // not a converged model's (whose gradients are small, never exactly 0).
    let init_base = chance.map(|c| (c, "the chance level")).or_else(|| {
        ctx.loss_recent()
            .filter(|r| *r > 0.0)
            .map(|r| (r, "the loss it settled at"))
    });
    let blowup_at = loss_blowup_step(ctx.train_loss.map(|l| l.series), chance);
    let loss = LossState {
        train: ctx.train_loss.map(|l| l.series),
        worse,
        stalled: worse || progress.is_nan() || progress < 0.1,
        nan_inputs: ctx
            .view
            .dataset("train")
            .and_then(|d| d.missing)
            .is_some_and(|m| m > 0),
        // A loss that jumped ≥ 4× above its start and ends worse than it
        // started went the wrong way, whether or not the divergence rule
        // (which judges the loss alone) raised it; the ×10 then counts from
        // the gradients' level before the jump.
        diverged: out
            .get(Kind::Divergence)
            .is_some_and(|f| f.severity.is_raised())
            || (worse && blowup_at.is_some()),
        diverged_at: out
            .get(Kind::Divergence)
            .filter(|f| f.severity.is_raised())
            .and_then(|f| f.onset_step)
            .or(blowup_at.filter(|_| worse)),
        init_blowup: matches!((init_base, first_loss), (Some((c, _)), Some(f)) if f >= INIT_LOSS_FACTOR * c),
        init_needs_kill: chance.is_none(),
        unlearned: match (ctx.loss_recent(), chance.or(ctx.loss_start())) {
            (Some(r), Some(base)) => base > 0.0 && r >= 0.9 * base,
            _ => false,
        },
    };
    let mut found: Vec<Explosion> = ctx
        .layers
        .iter()
        .filter_map(|l| {
            l.get(Role::GradNorm)
                .and_then(|g| explosion(Some(l), g, loss))
        })
        .collect();
    if let Some(g) = ctx.global_grad
        && let Some(e) = explosion(None, g, loss)
    {
        found.push(e);
    }
    let Some(first) = found.iter().min_by_key(|e| e.onset) else {
        return;
    };
    let layers: Vec<&str> = found.iter().filter_map(|e| e.layer.as_deref()).collect();
    let where_ = match &first.layer {
        Some(l) => format!("layer {l}"),
        None => "the model".to_string(),
    };
    let affected = if layers.is_empty() {
        String::new()
    } else {
        format!(" ({})", layers.join(", "))
    };
    let (title, summary) = match first.rule {
        Rule::NonFinite => (
            format!(
                "Gradients of {where_} became non-finite at step {}",
                fmt_step(first.onset)
            ),
            format!(
                "The gradient norm of {where_} went from {} at the start{} to NaN/Inf; {} layer(s) affected{affected}.",
                fmt_num(first.before),
                if first.peak > first.before {
                    format!(" to {}", fmt_num(first.peak))
                } else {
                    String::new()
                },
                found.len(),
            ),
        ),
        Rule::Growth => (
            format!(
                "Gradient norm of {where_} grew ×{:.0} by step {}",
                first.peak / first.before,
                fmt_step(first.onset)
            ),
            format!(
                "The gradient norm of {where_} rose from {} to {} while the loss got worse; {} layer(s) affected{affected}.",
                fmt_num(first.before),
                fmt_num(first.peak),
                found.len()
            ),
        ),
        Rule::Init => (
            if first.before > 0.0 {
                format!(
                    "Gradients of {where_} were {}× their later level at the first step",
                    fmt_ratio(first.before / first.peak)
                )
            } else {
                format!(
                    "Gradients of {where_} were {} at the first step and exactly 0 afterwards",
                    fmt_num(first.peak)
                )
            },
            format!(
                "The gradient norm of {where_} was {} at step {} and {} later; the first training loss was {}× {}; {} layer(s) affected{affected}.",
                fmt_num(first.peak),
                fmt_step(first.onset),
                fmt_num(first.before),
                fmt_num(first_loss.unwrap_or(f64::NAN) / init_base.map_or(f64::NAN, |b| b.0)),
                init_base.map_or("the chance level", |b| b.1),
                found.len()
            ),
        ),
        Rule::Spike(jump) => (
            format!(
                "Gradient norm of {where_} jumped {}× at step {}",
                fmt_ratio(first.before / first.peak),
                fmt_step(first.onset)
            ),
            format!(
                "The gradient norm of {where_} jumped from a median of {} to {} at step {}, {}; {} layer(s) affected{affected}.",
                fmt_num(first.before),
                fmt_num(first.peak),
                fmt_step(first.onset),
                match jump {
                    Some(j) => format!(
                        "while the training loss jumped to {}× its first value",
                        fmt_ratio(1.0 / j)
                    ),
                    None => "and the model then fell back to the chance level".to_string(),
                },
                found.len()
            ),
        ),
        Rule::Accumulating => (
            format!(
                "Gradient norm of {where_} grows at almost every step: ×{:.0} since step {}",
                first.peak / first.before,
                fmt_step(first.onset)
            ),
            format!(
                "The gradient norm of {where_} rose from {} to {}, holding ≥ 95% of its previous value at ≥ {} of the checks, while the loss did not improve; {} layer(s) affected{affected}.",
                fmt_num(first.before),
                fmt_num(first.peak),
                super::stats::fmt_pct(ACCUMULATE_SHARE),
                found.len()
            ),
        ),
        Rule::Ratio(r) => (
            format!(
                "Gradient norm of {where_} is {:.0}× its weight norm from step {}",
                r,
                fmt_step(first.onset)
            ),
            format!(
                "Gradient norm up to {} = {:.0}× the layer's weight norm for 3+ checks while the loss is not improving; {} layer(s) affected{affected}.",
                fmt_num(first.peak),
                r,
                found.len()
            ),
        ),
    };
    let mut metrics = BTreeMap::new();
    metrics.insert("grad_norm_start".into(), first.before);
    metrics.insert("grad_norm_peak".into(), first.peak);
    metrics.insert("layers_affected".into(), found.len() as f64);
    let deep = ctx
        .layers
        .iter()
        .filter(|l| l.get(Role::GradNorm).is_some())
        .count();
    let clip = "Add gradient clipping: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) (Keras: clipnorm=1.0).".to_string();
    let init_fix =
        "Use He (ReLU) or Glorot (tanh/sigmoid) initialisation at the default scale.".to_string();
    let norm_fix =
        "Add BatchNorm/LayerNorm between layers, or residual connections in deep stacks."
            .to_string();
    let (cause, fixes) = match first.rule {
        Rule::Accumulating => (
            "The gradient grows at almost every step from the first one on while the loss does not improve — the signature of gradients summed over steps instead of reset: optimizer.zero_grad() is missing (or comes after backward()), so every step applies the sum of all past gradients.".to_string(),
            vec![
                "Call optimizer.zero_grad() (or model.zero_grad(set_to_none=True)) before every loss.backward(); with gradient accumulation, right after each optimizer.step().".to_string(),
                clip,
            ],
        ),
        Rule::Init => (
            format!(
                "The initial weights are far too large: at the first step, before any update, the loss was {}× {} and the gradients orders of magnitude above their later level; the first updates threw the weights away (units die or saturate afterwards).",
                fmt_num(first_loss.unwrap_or(f64::NAN) / init_base.map_or(f64::NAN, |b| b.0)),
                init_base.map_or("the chance level", |b| b.1)
            ),
            vec![init_fix, clip, norm_fix],
        ),
        Rule::Spike(jump) => (
            format!(
                "One update met a gradient three orders of magnitude above the usual ones{} and threw the weights away: {}. Without clipping, a learning rate this high lets one bad batch do that.",
                ctx.peak_lr().map(|lr| format!(" (LR {})", fmt_num(lr))).unwrap_or_default(),
                if jump.is_some() {
                    "the training loss shot up by orders of magnitude at the same time, and what the model had learned before is lost"
                } else {
                    "the model fell back to the chance level and has not recovered"
                }
            ),
            vec![clip, ctx.lower_lr_fix(""), init_fix],
        ),
        _ if deep >= 6 => (
            format!(
                "Gradients are multiplied layer by layer through {deep} layers; with too large initial weights or learning rate they grow geometrically until they overflow."
            ),
            vec![clip, ctx.lower_lr_fix(""), init_fix, norm_fix],
        ),
        _ => (
            "Too large a learning rate or initial weights: each update overshoots, weights and gradients grow until they overflow.".into(),
            vec![clip, ctx.lower_lr_fix(""), init_fix, norm_fix],
        ),
    };
    out.push(Finding {
        kind: Kind::ExplodingGradients,
        caused_by: None,
        severity: Severity::Error,
        onset_step: Some(first.onset),
        title,
        evidence: Evidence {
            series: found.iter().map(|e| e.key.to_string()).collect(),
            layer: first.layer.clone(),
            metrics,
            summary,
            samples: Vec::new(),
        },
        cause,
        fixes,
    });
}

fn vanishing(ctx: &Ctx, out: &mut Diagnosis) {
    // Weight matrices only: a bias's or a normalisation layer's gradient is
    // not back-propagated through the layer's weights, and an embedding's
    // touches only the rows of the batch's tokens.
    let with_grads: Vec<(&Layer, Named)> = ctx
        .layers
        .iter()
        .filter(|l| l.is_weight() && !super::context::looks_like_embedding(&l.name))
        .filter_map(|l| l.get(Role::GradNorm).map(|g| (l, g)))
        .collect();
    if with_grads.len() < 2 {
        return;
    }
    let recent = |g: Named| {
        let v = &g.series.values;
        let half = v.len() / 2;
        (v.len() - half >= 3).then(|| median(&v[half..])).flatten()
    };
    let (first_layer, first_g) = with_grads[0];
    let Some((last_layer, last_g)) = with_grads
        .iter()
        .rev()
        .find(|(l, _)| l.is_output)
        .or(with_grads.last())
        .copied()
    else {
        return;
    };
    if std::ptr::eq(first_layer, last_layer) {
        return;
    }
    let (Some(g1), Some(gn)) = (recent(first_g), recent(last_g)) else {
        return;
    };
    if !(g1 > 0.0 && gn > 0.0) {
        return;
    }
    let ratio = g1 / gn;
    if ratio >= VANISH_RATIO {
        return;
    }
    // The first layer (from the output backwards) where the ratio drops
    // below the threshold: where the signal is lost.
    let lost_at = with_grads
        .iter()
        .rev()
        .find(|(_, g)| recent(*g).is_some_and(|x| x / gn < VANISH_RATIO))
        .map(|(l, _)| l.name.clone());
    let progress = match (ctx.loss_start(), ctx.loss_recent()) {
        (Some(a), Some(b)) if a > 0.0 => 1.0 - b / a,
        _ => f64::NAN,
    };
    // NaN progress (no loss logged) counts as stalled.
    let stalled = progress.is_nan() || progress < 0.1;
    // Does the vanishing gradient starve the input layer? (SGD: tiny updates;
    // Adam rescales small gradients, so its updates may stay healthy.)
    let first_update = first_layer.get(Role::UpdateRatio).and_then(|u| {
        let v = &u.series.values;
        median(&v[v.len() / 2..])
    });
    let starved = first_update.is_none_or(|u| u < 1e-4);
    let half_step = first_g.series.steps.get(first_g.series.len() / 2).copied();
    let acts: Vec<&str> = ctx
        .layers
        .iter()
        .filter_map(|l| l.activation.as_deref())
        .filter(|a| matches!(*a, "sigmoid" | "tanh"))
        .collect();
    let cause = if !acts.is_empty() {
        format!(
            "Back-propagation through {} saturating {} layers multiplies the gradient by derivatives ≤ {} at each layer, so it shrinks geometrically towards the input.",
            acts.len(),
            acts[0],
            if acts[0] == "sigmoid" { "0.25" } else { "1" }
        )
    } else {
        "The gradient shrinks at each layer on its way back to the input (small weights, saturating activations or a very deep plain stack).".into()
    };
    let mut metrics = BTreeMap::new();
    metrics.insert("grad_norm_first".into(), g1);
    metrics.insert("grad_norm_output".into(), gn);
    metrics.insert("ratio".into(), ratio);
    if progress.is_finite() {
        metrics.insert("loss_progress".into(), progress);
    }
    out.push(Finding {
        kind: Kind::VanishingGradients,
        caused_by: None,
        severity: match (stalled, starved) {
            (true, true) => Severity::Error,
            (true, false) | (false, true) => Severity::Warning,
            (false, false) => Severity::Info,
        },
        onset_step: half_step.or(first_g.series.steps.first().copied()),
        title: format!("Gradients vanish towards the input: {} gets {}× less gradient than {}", first_layer.name, fmt_ratio(ratio), last_layer.name),
        evidence: Evidence {
            series: vec![first_g.key.to_string(), last_g.key.to_string()],
            layer: Some(first_layer.name.clone()),
            metrics,
            summary: format!(
                "Median gradient norm over the recent half: {} = {}, {} = {} (ratio {}){}.",
                first_layer.name,
                fmt_num(g1),
                last_layer.name,
                fmt_num(gn),
                fmt_num(ratio),
                lost_at.map(|l| format!("; below 1/1000 of the output from {l} down")).unwrap_or_default()
            ),
            samples: Vec::new(),
        },
        cause,
        fixes: if acts.is_empty() {
            // No saturating activation to replace (e.g. a GELU transformer).
            vec![
                "Add residual connections and normalisation (BatchNorm/LayerNorm; pre-norm in transformers), or use fewer layers.".into(),
                "Initialise at the default fan-in scale (He for ReLU-family, Glorot otherwise); check that no layer's weights were scaled down.".into(),
                "Check that the loss reaches the input layers: no detach(), no frozen layer in between.".into(),
            ]
        } else {
            vec![
                format!("Use ReLU-family activations (ReLU, LeakyReLU, GELU, SELU) instead of the {} {} layers.", acts.len(), acts[0]),
                "Add BatchNorm/LayerNorm, or residual connections; or use fewer layers.".into(),
                "Use He initialisation for ReLU layers (Glorot for tanh).".into(),
            ]
        },
    });
}

fn fmt_ratio(r: f64) -> String {
    let inv = 1.0 / r;
    if inv >= 1e5 {
        format!("{:.0e}", inv)
    } else {
        format!("{inv:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{
        balanced_classes, curve, four_balanced_classes, healthy, noise, then_nan, view,
    };
    use super::super::{Kind, diagnose};

    #[test]
    fn nan_gradient_after_finite_is_exploding() {
        let v = view(&[
            (
                "train/loss",
                curve(100, 1, then_nan(12, |i| 2.3 * 3f64.powi(i as i32))),
            ),
            (
                "grad_norm/fc1",
                curve(20, 5, then_nan(3, |i| 0.3 * 1e4f64.powi(i as i32))),
            ),
            ("grad_norm/head", curve(20, 5, then_nan(3, |_| 0.3))),
        ]);
        let d = diagnose(&v);
        let f = d.get(Kind::ExplodingGradients).expect("exploding");
        assert_eq!(f.onset_step, Some(15));
        assert!(d.get(Kind::Divergence).is_some());
    }

    /// A learning rate too high for SGD: one update meets a gradient
    /// ×10⁵ while the loss shoots from 1.8 to 460, the blow-up kills most
    /// units (gradients exactly 0 from then on), and the loss settles back
    /// below its start. Logged like a plain script: the loss and
    /// per-parameter gradient norms, no model record (so no chance level),
    /// no update ratios or weight norms.
    fn spike_with_loss_jump(loss_peak: f64) -> super::super::RunView {
        let grad = |scale: f64| move |i: usize| [0.87, 8.7e4, 135.0, 0.0, 0.0][i] * scale;
        view(&[
            (
                "train/loss",
                curve(50, 1, move |i| match i {
                    7..=9 => loss_peak,
                    0..=6 => 1.8 + 0.3 * noise(i),
                    _ => 1.3 + 0.1 * noise(i),
                }),
            ),
            ("grad_norm/fc1.weight", curve(5, 10, grad(1.0))),
            ("grad_norm/fc1.bias", curve(5, 10, grad(0.4))),
            ("grad_norm/fc2.weight", curve(5, 10, grad(2.5))),
            (
                "grad_norm/head.bias",
                curve(5, 10, |i| 0.5 + 0.1 * noise(i)),
            ),
        ])
    }

    #[test]
    fn gradient_spike_while_the_loss_jumps_is_exploding_without_chance_level() {
        let d = diagnose(&spike_with_loss_jump(460.0));
        let f = d.get(Kind::ExplodingGradients).expect("exploding");
        assert!(f.severity.is_raised());
        assert_eq!(f.onset_step, Some(10));
        assert!(
            f.evidence.summary.contains("training loss jumped"),
            "{}",
            f.evidence.summary
        );
    }

    #[test]
    fn gradient_spike_without_a_loss_jump_is_not_exploding() {
        // The same gradients with the loss only a few × its start around
        // the spike: one odd batch, no evidence the weights were thrown away.
        let d = diagnose(&spike_with_loss_jump(6.0));
        assert!(
            d.get(Kind::ExplodingGradients)
                .is_none_or(|f| !f.severity.is_raised()),
            "{:?}",
            d.get(Kind::ExplodingGradients).map(|f| &f.title)
        );
    }

    /// LR far too high for SGD on an LSTM: the first updates throw the loss
    /// from 1.4 to ~75, and it never gets back below ~7× its start; only the
    /// global gradient norm is logged, which rises ×~40 (the output layer's
    /// share; the recurrent weights' burst is diluted in the global norm).
    fn blown_loss_with_global_norm(loss_after: f64) -> super::super::RunView {
        view(&[
            (
                "train/loss",
                curve(230, 1, move |i| match i {
                    0 => 1.42,
                    _ => loss_after + 65.0 * (-(i as f64) / 30.0).exp() * (1.0 + 0.2 * noise(i)),
                }),
            ),
            (
                "grad_norm",
                curve(230, 1, |i| match i {
                    0 => 0.31,
                    1..=9 => [1.5, 7.1, 12.9, 73.0, 8.8, 3.9, 2.3, 4.2, 3.3][i - 1],
                    _ => 2.5 * (1.0 + 0.3 * noise(i)),
                }),
            ),
        ])
    }

    #[test]
    fn gradients_rising_tenfold_while_the_loss_blows_up_and_stays_worse_explode() {
        let d = diagnose(&blown_loss_with_global_norm(10.0));
        let f = d.get(Kind::ExplodingGradients).expect("exploding");
        assert!(f.severity.is_raised());
        assert!(f.onset_step.is_some_and(|s| s <= 5), "{:?}", f.onset_step);
    }

    #[test]
    fn gradients_rising_tenfold_while_the_loss_recovers_are_not_exploding() {
        // The same burst, but the loss comes back below its start: ×10 is not
        // enough growth when the loss did not end worse.
        let d = diagnose(&blown_loss_with_global_norm(1.0));
        assert!(
            d.get(Kind::ExplodingGradients)
                .is_none_or(|f| !f.severity.is_raised()),
            "{:?}",
            d.get(Kind::ExplodingGradients).map(|f| &f.title)
        );
    }

    /// Weights initialised far too large, logged as loss + per-parameter
    /// gradient norms only (no model record, so no chance level): the first
    /// loss is ~130× where the model settles, and after the first update
    /// every weight gradient is exactly 0 (the blow-up killed the units) —
    /// or, in the control, merely small.
    fn huge_init(killed: bool) -> super::super::RunView {
        let grad = move |g0: f64| {
            move |i: usize| match i {
                0 => g0,
                _ if killed => 0.0,
                _ => g0 * 1e-3 * (1.0 + 0.3 * noise(i)),
            }
        };
        view(&[
            (
                "train/loss",
                curve(250, 1, |i| match i {
                    0..=4 => [309.0, 1827.0, 250.0, 92.7, 19.2][i],
                    _ => 2.3 + 10.0 * (-(i as f64)).exp() + 0.01 * noise(i),
                }),
            ),
            ("grad_norm/features.0.weight", curve(25, 10, grad(29.6))),
            ("grad_norm/features.2.weight", curve(25, 10, grad(88.3))),
            (
                "grad_norm/features.6.bias",
                curve(25, 10, |i| 0.15 + 0.03 * noise(i)),
            ),
        ])
    }

    #[test]
    fn a_huge_first_loss_and_gradient_that_kill_the_layers_explode_without_chance_level() {
        let d = diagnose(&huge_init(true));
        let f = d.get(Kind::ExplodingGradients).expect("exploding");
        assert!(f.severity.is_raised());
        assert_eq!(f.onset_step, Some(0));
        assert!(
            f.evidence.summary.contains("the loss it settled at"),
            "{}",
            f.evidence.summary
        );
        assert!(f.title.contains("exactly 0 afterwards"), "{}", f.title);
    }

    #[test]
    fn a_huge_first_loss_without_killed_layers_needs_the_chance_level() {
        // Gradients that shrink ×1000 but stay alive: the recent loss is no
        // stand-in for the chance level, so rule 4 stays silent.
        let d = diagnose(&huge_init(false));
        assert!(
            d.get(Kind::ExplodingGradients)
                .is_none_or(|f| !f.severity.is_raised()),
            "{:?}",
            d.get(Kind::ExplodingGradients).map(|f| &f.title)
        );
    }

    #[test]
    fn nan_gradients_from_the_start_are_not_exploding() {
        let v = view(&[
            ("train/loss", curve(20, 1, |_| f64::NAN)),
            ("grad_norm/fc1", curve(4, 5, |_| f64::NAN)),
        ]);
        assert!(diagnose(&v).get(Kind::ExplodingGradients).is_none());
    }

    #[test]
    fn nan_gradients_after_a_clean_first_batch_of_nan_data_are_not_exploding() {
        let run = |missing: u64| {
            let mut v = view(&[
                (
                    "train/loss",
                    curve(40, 1, |i| if i < 5 { 3.0 } else { f64::NAN }),
                ),
                (
                    "grad_norm/fc1",
                    curve(8, 5, |i| if i == 0 { 0.8 } else { f64::NAN }),
                ),
            ]);
            v.datasets.push(crate::record::DatasetRecord {
                split: "train".into(),
                missing: Some(missing),
                ..Default::default()
            });
            diagnose(&v)
        };
        assert!(run(40).get(Kind::ExplodingGradients).is_none());
        // Clean data: the same NaN after finite gradients is rule 1.
        assert!(run(0).get(Kind::ExplodingGradients).is_some());
    }

    #[test]
    fn one_blow_up_that_kills_the_layer_is_exploding() {
        let run = |after: f64| {
            diagnose(&view(&[
                (
                    "train/loss",
                    curve(200, 1, |i| if i == 0 { 2500.0 } else { 1.386 }),
                ),
                (
                    "grad_norm/conv2",
                    curve(40, 5, move |i| if i == 0 { 2000.0 } else { after }),
                ),
                ("weight_norm/conv2", curve(40, 5, |_| 17.0)),
                (
                    "update_ratio/conv2",
                    curve(40, 5, |i| if i == 0 { 5.0 } else { 0.0 }),
                ),
            ]))
        };
        // ‖g‖ = 118‖w‖ once, then no gradient ever again: the units died.
        assert!(run(0.0).get(Kind::ExplodingGradients).is_some());
        // One large batch followed by ordinary gradients is noise.
        assert!(run(0.5).get(Kind::ExplodingGradients).is_none());
    }

    #[test]
    fn a_loss_back_at_chance_after_a_blow_up_has_not_progressed() {
        // The first steps blew the loss up; it fell back to ln 4, not below.
        let mut v = view(&[
            (
                "train/loss",
                curve(200, 1, |i| if i < 5 { 2500.0 } else { 1.386 }),
            ),
            (
                "grad_norm/conv2",
                curve(40, 5, |i| if i == 0 { 2000.0 } else { 0.0 }),
            ),
            ("weight_norm/conv2", curve(40, 5, |_| 17.0)),
            (
                "update_ratio/conv2",
                curve(40, 5, |i| if i == 0 { 5.0 } else { 0.0 }),
            ),
        ]);
        v.datasets.push(four_balanced_classes());
        assert!(diagnose(&v).get(Kind::ExplodingGradients).is_some());
    }

    #[test]
    fn an_initialisation_that_blows_the_loss_up_is_exploding_and_causes_the_rest() {
        // A convnet for 10 classes whose first loss is 300 — over 100× the
        // chance level ln 10 — with gradients of ~200 at step 0 that are
        // exactly 0 from the next check on (the units died).
        let mut v = view(&[
            (
                "train/loss",
                curve(300, 1, |i| {
                    if i < 3 {
                        300.0
                    } else {
                        2.303 + 0.01 * noise(i)
                    }
                }),
            ),
            (
                "grad_norm/features.0",
                curve(30, 10, |i| if i == 0 { 30.0 } else { 0.0 }),
            ),
            (
                "grad_norm/features.2",
                curve(30, 10, |i| if i == 0 { 90.0 } else { 0.0 }),
            ),
            (
                "grad_norm/features.6",
                curve(30, 10, |i| if i == 0 { 200.0 } else { 0.0 }),
            ),
        ]);
        v.datasets.push(balanced_classes(10));
        let d = diagnose(&v);
        let f = d.get(Kind::ExplodingGradients).expect("exploding");
        assert_eq!(f.onset_step, Some(0));
        assert!(f.cause.contains("initial weights"), "{}", f.cause);
        assert!(f.fixes[0].contains("initialisation"), "{:?}", f.fixes);
        // Its consequences name it.
        let dead = d.get(Kind::DeadRelu).expect("dead network");
        assert_eq!(dead.caused_by, Some(Kind::ExplodingGradients));
        // A first loss at the chance level with the same gradients is not an
        // initialisation blow-up (a large first gradient alone is common).
        let mut calm = v.clone();
        calm.scalars.insert(
            "train/loss".into(),
            super::super::Series::from_points(curve(300, 1, |i| 2.3 - i as f64 / 200.0)),
        );
        assert!(diagnose(&calm).get(Kind::ExplodingGradients).is_none());
    }

    #[test]
    fn one_gradient_three_orders_above_the_rest_then_chance_is_exploding() {
        // An LSTM (4 classes, chance ln 4): the recurrent weight's gradient
        // sits around 0.2, jumps to 400 at step 150, and the model then falls
        // back to chance. With SGD at lr 1.
        let run = |after: fn(usize) -> f64| {
            let mut v = view(&[
                (
                    "train/loss",
                    curve(400, 1, move |i| {
                        if i < 150 {
                            1.386 - i as f64 / 400.0
                        } else {
                            after(i)
                        }
                    }),
                ),
                (
                    "grad_norm/rnn.weight_hh_l0",
                    curve(80, 5, |i| {
                        if i == 30 {
                            400.0
                        } else {
                            0.2 * (1.0 + 0.3 * noise(i))
                        }
                    }),
                ),
                (
                    "grad_norm/fc.weight",
                    curve(80, 5, |i| 0.5 * (1.0 + 0.3 * noise(i))),
                ),
                ("lr", curve(400, 1, |_| 1.0)),
            ]);
            v.datasets.push(four_balanced_classes());
            diagnose(&v)
        };
        let d = run(|i| 1.386 + 0.01 * noise(i));
        let f = d.get(Kind::ExplodingGradients).expect("exploding");
        assert_eq!(f.onset_step, Some(150));
        assert!(f.fixes[0].contains("clip"), "{:?}", f.fixes);
        assert!(
            d.findings
                .iter()
                .flat_map(|f| &f.fixes)
                .all(|x| !super::super::raises_lr(x)),
            "{:#?}",
            d.findings
        );
        // The same jump in a model that keeps learning is one odd batch.
        assert!(
            run(|i| 1.0 - i as f64 / 1000.0)
                .get(Kind::ExplodingGradients)
                .is_none()
        );
    }

    #[test]
    fn gradients_summed_over_steps_name_the_missing_zero_grad() {
        // Without zero_grad() the gradient is the running sum: its norm keeps
        // (almost) every check's value and grows ×50 while the loss stalls.
        let v = view(&[
            (
                "train/loss",
                curve(300, 1, |i| 2.3 + 0.05 * noise(i) + i as f64 / 300.0),
            ),
            (
                "grad_norm/0",
                curve(30, 10, |i| 1.0 + 1.7 * i as f64 + 0.01 * noise(i)),
            ),
            (
                "grad_norm/2",
                curve(30, 10, |i| 1.2 * (1.0 + 0.3 * noise(i))),
            ),
        ]);
        let f = diagnose(&v)
            .get(Kind::ExplodingGradients)
            .cloned()
            .expect("exploding");
        assert!(f.cause.contains("zero_grad"), "{}", f.cause);
        assert!(f.fixes[0].contains("zero_grad"), "{:?}", f.fixes);
        assert_eq!(f.onset_step, Some(0));
    }

    #[test]
    fn a_rise_then_exact_zeros_is_not_a_missing_zero_grad() {
        // The digits demo at lr 1.5: the gradient rises for four checks, then
        // every unit is dead and the gradient is exactly 0 for good. Zeros
        // "hold" the zeros before them, but a sum of gradients is never 0.
        let grad = |i: usize| match i {
            0 => 0.15,
            1 => 0.83,
            2 => 1.05,
            3 => 0.30,
            4 => 2.8,
            _ => 0.0,
        };
        let v = view(&[
            (
                "train/loss",
                curve(
                    1290,
                    1,
                    |i| if i < 10 { 2.3 } else { 2.303 + 0.01 * noise(i) },
                ),
            ),
            ("grad_norm/0", curve(258, 5, grad)),
            ("grad_norm/2", curve(258, 5, grad)),
        ]);
        let d = diagnose(&v);
        assert!(
            d.findings.iter().all(|f| !f.cause.contains("zero_grad")
                && f.fixes.iter().all(|x| !x.contains("zero_grad"))),
            "{:#?}",
            d.findings
        );
    }

    #[test]
    fn per_parameter_names_compare_weights_only() {
        // `p.grad.norm()` for every parameter: biases and LayerNorm scales
        // have tiny gradients of their own; they are not the input side of a
        // vanishing gradient, nor is the embedding table (sparse rows).
        let mut series = vec![(
            "train/loss",
            curve(300, 1, |i| 2.3 * (-(i as f64) / 150.0).exp() + 0.1),
        )];
        for (name, g) in [
            ("grad_norm/embed.weight", 1e-7),
            ("grad_norm/encoder.layers.0.linear1.weight", 0.3),
            ("grad_norm/encoder.layers.0.linear1.bias", 1e-6),
            ("grad_norm/encoder.layers.0.norm1.weight", 1e-6),
            ("grad_norm/encoder.layers.1.linear1.weight", 0.4),
            ("grad_norm/head.weight", 0.8),
            ("grad_norm/head.bias", 0.1),
        ] {
            series.push((name, curve(60, 5, move |i| g * (1.0 + 0.2 * noise(i)))));
        }
        let d = diagnose(&view(&series));
        assert!(
            d.get(Kind::VanishingGradients).is_none(),
            "{:#?}",
            d.findings
        );
        // A real vanishing gradient in the weights of a GELU model: the fix
        // does not ask to replace sigmoid/tanh layers it does not have.
        let mut series = vec![("train/loss", curve(300, 1, |i| 2.3 + 0.01 * noise(i)))];
        for (name, g) in [
            ("grad_norm/encoder.layers.0.linear1.weight", 1e-6),
            ("grad_norm/encoder.layers.1.linear1.weight", 1e-3),
            ("grad_norm/head.weight", 0.8),
        ] {
            series.push((name, curve(60, 5, move |i| g * (1.0 + 0.2 * noise(i)))));
        }
        let f = diagnose(&view(&series))
            .get(Kind::VanishingGradients)
            .cloned()
            .expect("vanishing");
        assert_eq!(
            f.evidence.layer.as_deref(),
            Some("encoder.layers.0.linear1.weight")
        );
        assert!(
            f.fixes.iter().all(|x| !x.contains("sigmoid")),
            "{:?}",
            f.fixes
        );
    }

    #[test]
    fn growing_gradients_with_improving_loss_are_fine() {
        // A frozen trunk's gradient grows ×600 while the head learns.
        let v = view(&[
            ("train/loss", curve(400, 1, |i| 2.3 - i as f64 / 800.0)),
            (
                "grad_norm/fc1",
                curve(80, 5, |i| 0.25 * (1.0 + i as f64 * 7.0)),
            ),
            ("grad_norm/head", curve(80, 5, |_| 0.25)),
        ]);
        assert!(diagnose(&v).get(Kind::ExplodingGradients).is_none());
    }

    #[test]
    fn growing_gradients_with_worsening_loss_explode() {
        let v = view(&[
            ("train/loss", curve(400, 1, |i| 2.3 + i as f64 / 10.0)),
            (
                "grad_norm/fc1",
                curve(80, 5, |i| 0.25 * 1.2f64.powi(i as i32)),
            ),
        ]);
        assert!(diagnose(&v).get(Kind::ExplodingGradients).is_some());
    }

    #[test]
    fn gradients_dwarfing_weights_explode_only_while_the_loss_stalls() {
        let mk = |loss: fn(usize) -> f64| {
            view(&[
                ("train/loss", curve(300, 1, loss)),
                (
                    "grad_norm/fc1",
                    curve(60, 5, |i| 400.0 * (1.0 + 0.1 * noise(i))),
                ),
                ("weight_norm/fc1", curve(60, 5, |_| 30.0)),
            ])
        };
        let stuck = mk(|i| 50.0 + 5.0 * noise(i));
        let f = diagnose(&stuck)
            .get(Kind::ExplodingGradients)
            .cloned()
            .expect("exploding");
        assert_eq!(f.onset_step, Some(0));
        assert!(f.title.contains("× its weight norm"), "{}", f.title);
        // Same gradients, but the loss falls steadily: a large-scale problem
        // that trains, not an explosion.
        let learning = mk(|i| 50.0 * (-(i as f64) / 60.0).exp());
        assert!(diagnose(&learning).get(Kind::ExplodingGradients).is_none());
    }

    #[test]
    fn vanishing_ratio() {
        let series = super::super::testutil::vanishing_grads(&[
            "grad_norm/fc1",
            "grad_norm/fc2",
            "grad_norm/fc3",
            "grad_norm/head",
        ]);
        let d = diagnose(&view(&series));
        let f = d.get(Kind::VanishingGradients).expect("vanishing");
        assert_eq!(f.evidence.layer.as_deref(), Some("fc1"));
        assert!(f.severity >= super::super::Severity::Error);
    }

    #[test]
    fn signal_fading_through_a_deep_stack_is_vanishing() {
        let stack = |loss: fn(usize) -> f64, std_at: fn(usize) -> f64| {
            let mut series = vec![
                ("train/loss", curve(300, 1, loss)),
                ("grad_norm/head", curve(60, 5, |_| 1e-3)),
            ];
            let names = [
                "act_std/conv1",
                "act_std/conv2",
                "act_std/conv3",
                "act_std/conv4",
                "act_std/fc1",
            ];
            for (d, name) in names.iter().enumerate() {
                series.push((
                    name,
                    curve(60, 5, move |i| std_at(d) * (1.0 + 0.1 * noise(i))),
                ));
            }
            diagnose(&view(&series))
        };
        let flat = |i: usize| 2.3 + 0.01 * noise(i);
        // Std shrinks ×4 per layer: 0.4 → 0.0016 at fc1, loss stuck.
        let d = stack(flat, |d| 0.4 * 4f64.powi(-(d as i32)));
        let f = d.get(Kind::VanishingGradients).expect("fading signal");
        assert_eq!(f.evidence.layer.as_deref(), Some("fc1"));
        // Same stack while the loss falls: not judged.
        let falling = |i: usize| 2.3 * (-(i as f64) / 150.0).exp();
        assert!(
            stack(falling, |d| 0.4 * 4f64.powi(-(d as i32)))
                .get(Kind::VanishingGradients)
                .is_none()
        );
        // Healthy spreads (deeper layers as wide or wider) with a stuck loss.
        assert!(
            stack(flat, |d| 0.8 + 0.2 * d as f64)
                .get(Kind::VanishingGradients)
                .is_none()
        );
        // A layer that outputs exactly 0 is dead, not faded.
        assert!(
            stack(flat, |d| if d == 4 { 0.0 } else { 0.5 })
                .get(Kind::VanishingGradients)
                .is_none()
        );
    }

    #[test]
    fn shrinking_gradients_near_convergence_are_not_vanishing() {
        let mut v = healthy(10, 50);
        for name in ["grad_norm/fc1", "grad_norm/fc2", "grad_norm/head"] {
            v.scalars.insert(
                name.into(),
                super::super::Series::from_points(curve(100, 5, |i| {
                    0.5 * (-(i as f64) / 20.0).exp()
                })),
            );
        }
        let d = diagnose(&v);
        assert!(d.get(Kind::VanishingGradients).is_none());
        assert!(d.get(Kind::ExplodingGradients).is_none());
        // Zero gradients everywhere (dead network) are not "vanishing".
        let z = view(&[
            ("grad_norm/fc1", curve(20, 5, |_| 0.0)),
            ("grad_norm/head", curve(20, 5, |_| 0.0)),
        ]);
        assert!(diagnose(&z).get(Kind::VanishingGradients).is_none());
    }
}
